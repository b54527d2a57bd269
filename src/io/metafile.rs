//! PLUS sequence files: tracked ultrasound recordings as a MetaImage
//! (`.mha`, header + `ElementDataFile = LOCAL` + pixels) or NRRD (`.nrrd`,
//! header + blank line + pixels) with per-frame fields such as
//! `Seq_Frame0000_ProbeToReferenceTransform = 16 numbers` (row-major, mm),
//! `…TransformStatus = OK|INVALID`, `…Timestamp`, `…ImageStatus`.
//!
//! We write what PLUS's `vtkPlusMetaImageSequenceIO` / `…NrrdSequenceIO`
//! read: uint8 B-mode frames `W × H × N` in MF orientation (columns along
//! the array, rows going deeper), or pose-only files with `DimSize = 0 0 N`
//! and no pixel data. We read those and PLUS's own recordings, including
//! zlib-compressed MetaImage data (`CompressedData = True`), gzip NRRD and
//! detached pixel files; frames whose pixels are not 8-bit single-channel
//! keep their poses and lose their images (with a log line).
//!
//! Matrices are written with Rust's shortest round-trip float format, so a
//! pose read back is bit-identical to the one written.

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use crate::scene::pose::Pose;

#[derive(Debug, thiserror::Error)]
pub enum MetafileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {what}")]
    Field {
        path: PathBuf,
        line: usize,
        what: String,
    },
    #[error("{path}: {what}")]
    Invalid { path: PathBuf, what: String },
}

/// A transform of one frame: `name` is PLUS's `FromToTo` without the
/// `Transform` suffix, e.g. `ProbeToReference`.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameTransform {
    pub name: String,
    /// Row-major, mm (may include pixel scaling, as PLUS's `ImageToProbe`).
    pub matrix: [[f64; 4]; 4],
    /// The `…TransformStatus` is OK (or absent).
    pub valid: bool,
}

impl FrameTransform {
    pub fn new(name: &str, pose: &Pose, valid: bool) -> FrameTransform {
        FrameTransform {
            name: name.into(),
            matrix: pose.to_matrix_mm(),
            valid,
        }
    }

    /// The rigid pose of the matrix, whatever the status.
    pub fn rigid(&self) -> Option<Pose> {
        Pose::from_matrix_mm(&self.matrix).ok()
    }

    /// The pose when the status is OK and the matrix rigid.
    pub fn pose(&self) -> Option<Pose> {
        self.rigid().filter(|_| self.valid)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecordedFrame {
    pub timestamp: f64,
    pub transforms: Vec<FrameTransform>,
    /// Other per-frame fields (name without the `Seq_FrameNNNN_` prefix).
    pub fields: Vec<(String, String)>,
    /// `width × height` grey levels, row-major, when the frame has a valid
    /// image.
    pub image: Option<Vec<u8>>,
}

/// A whole recording.
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    pub path: PathBuf,
    /// 0 × 0 for pose-only recordings.
    pub width: usize,
    pub height: usize,
    /// mm per pixel (column, row), when known.
    pub spacing: Option<[f64; 2]>,
    /// Global header fields other than the ones this module manages.
    pub fields: Vec<(String, String)>,
    pub frames: Vec<RecordedFrame>,
}

/// Header lines a file may have before we stop reading: PLUS writes about
/// ten per frame, so this allows recordings of ~400 000 frames while
/// refusing to read a binary file as text for ever.
const MAX_HEADER_BYTES: usize = 256 << 20;

impl Recording {
    pub fn new(path: &Path, width: usize, height: usize, spacing: Option<[f64; 2]>) -> Recording {
        Recording {
            path: path.to_path_buf(),
            width,
            height,
            spacing,
            fields: Vec::new(),
            frames: Vec::new(),
        }
    }

    /// Transform names present in any frame, in first-seen order.
    pub fn transform_names(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for f in &self.frames {
            for t in &f.transforms {
                if !out.contains(&t.name.as_str()) {
                    out.push(&t.name);
                }
            }
        }
        out
    }

    pub fn has_images(&self) -> bool {
        self.width > 0 && self.height > 0
    }

    /// Read a `.mha`, `.mhd` or `.nrrd` sequence file.
    pub fn read(path: &Path) -> Result<Recording, MetafileError> {
        let io = |source| MetafileError::Io {
            path: path.to_path_buf(),
            source,
        };
        let bytes = std::fs::read(path).map_err(io)?;
        let nrrd = bytes.starts_with(b"NRRD");
        let (items, data_at) = if nrrd {
            header_nrrd(path, &bytes)?
        } else {
            header_mha(path, &bytes)?
        };
        parse(path, &bytes, items, data_at, nrrd)
    }

    /// Write as MetaImage (`.mha`) or NRRD (`.nrrd`) by extension, into a
    /// temporary file renamed into place so that a failure leaves nothing
    /// half-written.
    pub fn write(&self, path: &Path) -> Result<(), MetafileError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let nrrd = match ext.as_str() {
            "mha" => false,
            "nrrd" => true,
            e => {
                return Err(MetafileError::Invalid {
                    path: path.to_path_buf(),
                    what: format!("extension `.{e}`: expected .mha (MetaImage) or .nrrd"),
                })
            }
        };
        let n = self.frames.len();
        for (i, f) in self.frames.iter().enumerate() {
            if let Some(img) = &f.image {
                if img.len() != self.width * self.height {
                    return Err(MetafileError::Invalid {
                        path: path.to_path_buf(),
                        what: format!(
                            "frame {i} has {} pixels, expected {} × {}",
                            img.len(),
                            self.width,
                            self.height
                        ),
                    });
                }
            }
        }
        let (w, h) = if self.has_images() {
            (self.width, self.height)
        } else {
            (0, 0)
        };
        let mut s = String::new();
        let sp = self.spacing.unwrap_or([1.0, 1.0]);
        if nrrd {
            s.push_str("NRRD0004\n# Complete NRRD file format specification at:\n# http://teem.sourceforge.net/nrrd/format.html\n");
            let _ = writeln!(s, "type: uint8\ndimension: 3\nsizes: {w} {h} {n}\nkinds: domain domain list\nendian: little\nencoding: raw");
            let _ = writeln!(
                s,
                "space dimension: 2\nspace directions: ({},0) (0,{}) none\nspace origin: (0,0)",
                sp[0], sp[1]
            );
        } else {
            let _ = writeln!(s, "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\nCompressedData = False");
            let _ = writeln!(s, "DimSize = {w} {h} {n}\nKinds = domain domain list\nElementSpacing = {} {} 1\nElementType = MET_UCHAR\nElementNumberOfChannels = 1", sp[0], sp[1]);
            let _ = writeln!(s, "TransformMatrix = 1 0 0 0 1 0 0 0 1\nOffset = 0 0 0\nCenterOfRotation = 0 0 0\nAnatomicalOrientation = RAI");
        }
        let kv = |s: &mut String, k: &str, v: &str| {
            let _ = if nrrd {
                writeln!(s, "{k}:={v}")
            } else {
                writeln!(s, "{k} = {v}")
            };
        };
        if self.has_images() {
            kv(
                &mut s,
                if nrrd {
                    "ultrasound image orientation"
                } else {
                    "UltrasoundImageOrientation"
                },
                "MF",
            );
            kv(
                &mut s,
                if nrrd {
                    "ultrasound image type"
                } else {
                    "UltrasoundImageType"
                },
                "BRIGHTNESS",
            );
        }
        for (k, v) in &self.fields {
            kv(&mut s, k, v);
        }
        for (i, f) in self.frames.iter().enumerate() {
            let p = format!("Seq_Frame{i:04}_");
            kv(&mut s, &format!("{p}FrameNumber"), &i.to_string());
            for t in &f.transforms {
                let m: Vec<String> = t.matrix.iter().flatten().map(|v| format!("{v}")).collect();
                kv(&mut s, &format!("{p}{}Transform", t.name), &m.join(" "));
                kv(
                    &mut s,
                    &format!("{p}{}TransformStatus", t.name),
                    if t.valid { "OK" } else { "INVALID" },
                );
            }
            for (k, v) in &f.fields {
                kv(&mut s, &format!("{p}{k}"), v);
            }
            kv(
                &mut s,
                &format!("{p}Timestamp"),
                &format!("{}", f.timestamp),
            );
            kv(
                &mut s,
                &format!("{p}UnfilteredTimestamp"),
                &format!("{}", f.timestamp),
            );
            if self.has_images() {
                kv(
                    &mut s,
                    &format!("{p}ImageStatus"),
                    if f.image.is_some() { "OK" } else { "INVALID" },
                );
            }
        }
        if nrrd {
            s.push('\n');
        } else {
            s.push_str("ElementDataFile = LOCAL\n");
        }
        let mut bytes = s.into_bytes();
        if self.has_images() {
            let blank = vec![0u8; w * h];
            for f in &self.frames {
                bytes.extend_from_slice(f.image.as_deref().unwrap_or(&blank));
            }
        }
        super::output::write_atomic(path, |w| w.write_all(&bytes)).map_err(|source| {
            MetafileError::Io {
                path: path.to_path_buf(),
                source,
            }
        })
    }
}

/// (key, value, line number) of the header, and where the pixels start
/// (`None`: in a detached file named by the header).
type Items = Vec<(String, String, usize)>;

fn header_lines(path: &Path, bytes: &[u8]) -> Result<Vec<(usize, usize)>, MetafileError> {
    // (start, end) of each line up to the cap; lines are split on '\n'.
    let mut out = Vec::new();
    let mut start = 0;
    for (i, b) in bytes.iter().enumerate().take(MAX_HEADER_BYTES) {
        if *b == b'\n' {
            out.push((start, i));
            start = i + 1;
        }
    }
    if out.is_empty() {
        return Err(MetafileError::Invalid {
            path: path.to_path_buf(),
            what: "no header lines: not a sequence metafile".into(),
        });
    }
    Ok(out)
}

fn line_text(
    path: &Path,
    bytes: &[u8],
    (a, b): (usize, usize),
    n: usize,
) -> Result<String, MetafileError> {
    std::str::from_utf8(&bytes[a..b])
        .map(|s| s.trim_end_matches('\r').to_string())
        .map_err(|_| MetafileError::Field {
            path: path.to_path_buf(),
            line: n,
            what:
                "header line is not text (is `ElementDataFile = LOCAL` missing before the pixels?)"
                    .into(),
        })
}

fn header_mha(path: &Path, bytes: &[u8]) -> Result<(Items, Option<usize>), MetafileError> {
    let mut items = Vec::new();
    for (i, span) in header_lines(path, bytes)?.into_iter().enumerate() {
        let text = line_text(path, bytes, span, i + 1)?;
        if text.trim().is_empty() {
            continue;
        }
        let (k, v) = text.split_once('=').ok_or_else(|| MetafileError::Field {
            path: path.to_path_buf(),
            line: i + 1,
            what: format!("`{text}`: expected `Name = value`"),
        })?;
        let (k, v) = (k.trim().to_string(), v.trim().to_string());
        if i == 0 && (k != "ObjectType" || v != "Image") {
            return Err(MetafileError::Field {
                path: path.to_path_buf(),
                line: 1,
                what: format!("`{text}`: a MetaImage sequence starts with `ObjectType = Image`"),
            });
        }
        if k == "ElementDataFile" {
            let at = (v == "LOCAL").then_some(span.1 + 1);
            items.push((k, v, i + 1));
            return Ok((items, at));
        }
        items.push((k, v, i + 1));
    }
    Err(MetafileError::Invalid { path: path.to_path_buf(), what: "no `ElementDataFile` line: the header must end with `ElementDataFile = LOCAL` (or a pixel file name)".into() })
}

fn header_nrrd(path: &Path, bytes: &[u8]) -> Result<(Items, Option<usize>), MetafileError> {
    let mut items: Items = Vec::new();
    for (i, span) in header_lines(path, bytes)?.into_iter().enumerate() {
        let text = line_text(path, bytes, span, i + 1)?;
        if i == 0 {
            if !text.starts_with("NRRD000") {
                return Err(MetafileError::Field {
                    path: path.to_path_buf(),
                    line: 1,
                    what: format!("`{text}`: expected a NRRD magic line such as NRRD0004"),
                });
            }
            continue;
        }
        if text.is_empty() {
            let detached = items
                .iter()
                .any(|(k, _, _)| k == "data file" || k == "datafile");
            return Ok((items, (!detached).then_some(span.1 + 1)));
        }
        if text.starts_with('#') {
            continue;
        }
        let (k, v) = if let Some((k, v)) = text.split_once(":=") {
            (k, v)
        } else {
            text.split_once(':').ok_or_else(|| MetafileError::Field {
                path: path.to_path_buf(),
                line: i + 1,
                what: format!("`{text}`: expected `field: value` or `key:=value`"),
            })?
        };
        items.push((k.trim().to_string(), v.trim().to_string(), i + 1));
    }
    Err(MetafileError::Invalid {
        path: path.to_path_buf(),
        what: "no blank line ending the NRRD header".into(),
    })
}

fn parse(
    path: &Path,
    bytes: &[u8],
    items: Items,
    data_at: Option<usize>,
    nrrd: bool,
) -> Result<Recording, MetafileError> {
    let field = |line: usize, what: String| MetafileError::Field {
        path: path.to_path_buf(),
        line,
        what,
    };
    let find = |k: &str| items.iter().find(|(key, _, _)| key.eq_ignore_ascii_case(k));
    let (size_key, type_key) = if nrrd {
        ("sizes", "type")
    } else {
        ("DimSize", "ElementType")
    };
    let (_, sizes, size_line) = find(size_key).ok_or_else(|| MetafileError::Invalid { path: path.to_path_buf(), what: format!("no `{size_key}` field: expected the frame size and count, e.g. `{size_key} = 640 480 100`") })?;
    let dims: Vec<usize> = sizes
        .split_whitespace()
        .map(|v| v.parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| {
            field(
                *size_line,
                format!("{size_key} `{sizes}`: expected whole numbers"),
            )
        })?;
    let (width, height, count) = match dims.as_slice() {
        [w, h, n] => (*w, *h, *n),
        [w, h, 1, n] => (*w, *h, *n),
        [w, h] => (*w, *h, 1),
        _ => {
            return Err(field(
                *size_line,
                format!(
                    "{size_key} `{sizes}`: expected W H N (2D frames; 3D volumes are not read)"
                ),
            ))
        }
    };
    let (width, height) = if width == 0 || height == 0 {
        (0, 0)
    } else {
        (width, height)
    };
    // Per-frame fields.
    let mut frames: Vec<RecordedFrame> = Vec::new();
    let mut statuses: Vec<Vec<(String, String)>> = Vec::new();
    let mut fields = Vec::new();
    let mut spacing = None;
    for (k, v, line) in &items {
        let Some(rest) = k.strip_prefix("Seq_Frame") else {
            match k.as_str() {
                "ElementSpacing" => {
                    let s: Vec<f64> = v
                        .split_whitespace()
                        .filter_map(|x| x.parse().ok())
                        .collect();
                    if s.len() >= 2 {
                        spacing = Some([s[0], s[1]]);
                    }
                }
                "ObjectType"
                | "NDims"
                | "BinaryData"
                | "BinaryDataByteOrderMSB"
                | "ElementByteOrderMSB"
                | "CompressedData"
                | "CompressedDataSize"
                | "DimSize"
                | "Kinds"
                | "ElementType"
                | "ElementNumberOfChannels"
                | "TransformMatrix"
                | "Offset"
                | "CenterOfRotation"
                | "AnatomicalOrientation"
                | "ElementDataFile"
                | "UltrasoundImageOrientation"
                | "UltrasoundImageType" => {}
                _ if nrrd => {}
                _ => fields.push((k.clone(), v.clone())),
            }
            continue;
        };
        let (num, name) = rest
            .split_once('_')
            .ok_or_else(|| field(*line, format!("`{k}`: expected Seq_FrameNNNN_Field")))?;
        let i: usize = num.parse().map_err(|_| {
            field(
                *line,
                format!("`{k}`: frame number `{num}` is not a whole number"),
            )
        })?;
        if i >= count.max(1) + 1_000_000 || i > 10_000_000 {
            return Err(field(
                *line,
                format!("`{k}`: frame {i} is far past the {count} frames the header declares"),
            ));
        }
        while frames.len() <= i {
            frames.push(RecordedFrame {
                timestamp: f64::NAN,
                transforms: Vec::new(),
                fields: Vec::new(),
                image: None,
            });
            statuses.push(Vec::new());
        }
        let f = &mut frames[i];
        if name == "Timestamp" {
            f.timestamp = v
                .parse::<f64>()
                .ok()
                .filter(|t| t.is_finite())
                .ok_or_else(|| field(*line, format!("{k} `{v}`: expected a time in seconds")))?;
        } else if let Some(t) = name.strip_suffix("TransformStatus") {
            statuses[i].push((t.to_string(), v.clone()));
        } else if let Some(t) = name.strip_suffix("Transform") {
            let vals: Vec<f64> = v
                .split_whitespace()
                .map(|x| x.parse::<f64>())
                .collect::<Result<_, _>>()
                .map_err(|_| field(*line, format!("{k}: `{v}` is not 16 numbers")))?;
            if vals.len() != 16 {
                return Err(field(
                    *line,
                    format!(
                        "{k}: {} numbers, expected 16 (a row-major 4×4 matrix in mm)",
                        vals.len()
                    ),
                ));
            }
            let mut m = [[0.0; 4]; 4];
            for (j, x) in vals.iter().enumerate() {
                m[j / 4][j % 4] = *x;
            }
            f.transforms.push(FrameTransform {
                name: t.to_string(),
                matrix: m,
                valid: true,
            });
        } else {
            f.fields.push((name.to_string(), v.clone()));
        }
    }
    for (i, (f, st)) in frames.iter_mut().zip(&statuses).enumerate() {
        if f.timestamp.is_nan() {
            f.timestamp = i as f64;
            log::warn!(
                "{}: frame {i} has no Timestamp; using {i} s",
                path.display()
            );
        }
        for (name, status) in st {
            if let Some(t) = f.transforms.iter_mut().find(|t| &t.name == name) {
                t.valid = status.eq_ignore_ascii_case("OK");
            }
        }
    }
    // Frames the per-frame fields do not name are padded below, so the
    // declared count is an allocation: bound it before making it. Without
    // images such a frame would hold nothing at all; with images, the
    // pixel data (at most 8 GiB, checked in read_pixels) bound the count.
    let per_frame = (width * height).max(1);
    if count > frames.len() && (width == 0 || count.saturating_mul(per_frame) > 8 << 30) {
        return Err(field(
            *size_line,
            if width == 0 {
                format!(
                    "{size_key} `{sizes}` declares {count} frames without images, but the per-frame fields name {}: a pose-only file names every frame",
                    frames.len()
                )
            } else {
                format!("{size_key} `{sizes}`: over 8 GiB of pixel data")
            },
        ));
    }
    if frames.len() < count {
        frames.resize(
            count,
            RecordedFrame {
                timestamp: 0.0,
                transforms: Vec::new(),
                fields: Vec::new(),
                image: None,
            },
        );
    }
    if frames.len() > count {
        return Err(MetafileError::Invalid {
            path: path.to_path_buf(),
            what: format!(
                "per-frame fields name {} frames but {size_key} declares {count}",
                frames.len()
            ),
        });
    }
    let mut rec = Recording {
        path: path.to_path_buf(),
        width,
        height,
        spacing,
        fields,
        frames,
    };
    if rec.has_images() {
        let elem = find(type_key).map(|(_, v, _)| v.as_str()).unwrap_or("");
        let channels = find("ElementNumberOfChannels")
            .map(|(_, v, _)| v.as_str())
            .unwrap_or("1");
        if !matches!(
            elem,
            "MET_UCHAR" | "uint8" | "unsigned char" | "uchar" | "uint8_t"
        ) || channels != "1"
        {
            log::warn!("{}: {type_key} `{elem}` with {channels} channel(s): only 8-bit single-channel B-mode frames are read; replaying the poses without the recorded images", path.display());
            rec.width = 0;
            rec.height = 0;
            return Ok(rec);
        }
        read_pixels(path, bytes, &items, data_at, nrrd, &mut rec)?;
    }
    Ok(rec)
}

fn read_pixels(
    path: &Path,
    bytes: &[u8],
    items: &Items,
    data_at: Option<usize>,
    nrrd: bool,
    rec: &mut Recording,
) -> Result<(), MetafileError> {
    let find = |k: &str| {
        items
            .iter()
            .find(|(key, _, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v, _)| v.as_str())
    };
    let frame = rec.width * rec.height;
    let want = frame
        .checked_mul(rec.frames.len())
        .filter(|n| *n <= 8 << 30)
        .ok_or_else(|| MetafileError::Invalid {
            path: path.to_path_buf(),
            what: "pixel data over 8 GiB".into(),
        })?;
    let detached;
    let raw: &[u8] = match data_at {
        Some(at) => &bytes[at.min(bytes.len())..],
        None => {
            let name = find("ElementDataFile")
                .or_else(|| find("data file"))
                .or_else(|| find("datafile"))
                .unwrap_or("");
            let p = path.parent().unwrap_or(Path::new(".")).join(name);
            detached = std::fs::read(&p).map_err(|source| MetafileError::Io {
                path: p.clone(),
                source,
            })?;
            &detached
        }
    };
    let compressed = if nrrd {
        find("encoding").is_some_and(|e| e == "gzip" || e == "gz")
    } else {
        find("CompressedData").is_some_and(|v| v.eq_ignore_ascii_case("true"))
    };
    if nrrd && !matches!(find("encoding"), Some("raw") | Some("gzip") | Some("gz")) {
        return Err(MetafileError::Invalid {
            path: path.to_path_buf(),
            what: format!(
                "encoding `{}`: expected raw or gzip",
                find("encoding").unwrap_or("")
            ),
        });
    }
    let data = if compressed {
        let mut out = Vec::with_capacity(want);
        let res = if nrrd {
            flate2::read::GzDecoder::new(raw)
                .take(want as u64 + 1)
                .read_to_end(&mut out)
        } else {
            flate2::read::ZlibDecoder::new(raw)
                .take(want as u64 + 1)
                .read_to_end(&mut out)
        };
        res.map_err(|e| MetafileError::Invalid {
            path: path.to_path_buf(),
            what: format!("compressed pixel data: {e}"),
        })?;
        out
    } else {
        raw.to_vec()
    };
    if data.len() < want {
        return Err(MetafileError::Invalid {
            path: path.to_path_buf(),
            what: format!(
                "{} bytes of pixel data, expected {want} ({} frames of {} × {})",
                data.len(),
                rec.frames.len(),
                rec.width,
                rec.height
            ),
        });
    }
    // ImageStatus (MetaImage) or Status (NRRD) other than OK: no image.
    for (i, f) in rec.frames.iter_mut().enumerate() {
        let status = f
            .fields
            .iter()
            .position(|(k, _)| k == "ImageStatus" || k == "Status");
        let ok = status
            .map(|j| f.fields[j].1.eq_ignore_ascii_case("OK"))
            .unwrap_or(true);
        if let Some(j) = status {
            f.fields.remove(j);
        }
        if ok {
            f.image = Some(data[i * frame..(i + 1) * frame].to_vec());
        }
    }
    if let Some(o) =
        find("UltrasoundImageOrientation").or_else(|| find("ultrasound image orientation"))
    {
        if o != "MF" {
            log::warn!("{}: UltrasoundImageOrientation = {o}: frames are used as stored (sonoguide writes MF)", path.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use glam::{DQuat, DVec3};

    fn sample(dir: &Path, ext: &str, images: bool) -> Recording {
        let mut r = Recording::new(
            &dir.join(format!("r.{ext}")),
            if images { 3 } else { 0 },
            if images { 2 } else { 0 },
            Some([0.25, 0.5]),
        );
        for i in 0..3 {
            let p = Pose {
                translation: DVec3::new(0.001 * i as f64, 0.02, -0.0301),
                rotation: DQuat::from_rotation_x(0.1 * i as f64 + 0.123456789),
            };
            let valid = i != 1;
            r.frames.push(RecordedFrame {
                timestamp: 10.0 + i as f64 / 3.0,
                transforms: vec![
                    FrameTransform::new("ProbeToReference", &p, true),
                    FrameTransform::new("NeedleToReference", &p, valid),
                ],
                fields: vec![("ImageToReferenceTransformStatus".into(), "OK".into())],
                image: images.then(|| (0..6).map(|k| (k * 40 + i) as u8).collect()),
            });
        }
        r
    }

    #[test]
    fn mha_and_nrrd_round_trip_bit_exact() {
        let dir = tempfile::tempdir().unwrap();
        for ext in ["mha", "nrrd"] {
            for images in [true, false] {
                let r = sample(dir.path(), ext, images);
                r.write(&r.path).unwrap();
                let back = Recording::read(&r.path).unwrap();
                assert_eq!(
                    (back.width, back.height, back.frames.len()),
                    (r.width, r.height, 3),
                    "{ext} {images}"
                );
                for (a, b) in r.frames.iter().zip(&back.frames) {
                    assert_eq!(a.timestamp, b.timestamp);
                    assert_eq!(a.image, b.image);
                    assert_eq!(a.transforms, b.transforms);
                }
                assert!(
                    back.frames[1].transforms[1].pose().is_none()
                        && back.frames[1].transforms[1].rigid().is_some()
                );
            }
        }
    }

    #[test]
    fn reads_compressed_plus_files_and_names_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let pixels: Vec<u8> = (0..2 * 2 * 2).collect();
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut z, &pixels).unwrap();
        let comp = z.finish().unwrap();
        let m = "1 0 0 10 0 1 0 20 0 0 1 30 0 0 0 1";
        let head = format!(
            "ObjectType = Image\nNDims = 3\nBinaryData = True\nCompressedData = True\nCompressedDataSize = {}\nDimSize = 2 2 2\nElementType = MET_UCHAR\nUltrasoundImageOrientation = MF\n\
             Seq_Frame0000_StylusToTrackerTransform = {m}\nSeq_Frame0000_StylusToTrackerTransformStatus = OK\nSeq_Frame0000_Timestamp = 1.5\nSeq_Frame0000_ImageStatus = OK\n\
             Seq_Frame0001_StylusToTrackerTransform = {m}\nSeq_Frame0001_StylusToTrackerTransformStatus = INVALID\nSeq_Frame0001_Timestamp = 1.6\nSeq_Frame0001_ImageStatus = INVALID\nElementDataFile = LOCAL\n",
            comp.len()
        );
        let p = dir.path().join("plus.mha");
        std::fs::write(&p, [head.as_bytes(), &comp].concat()).unwrap();
        let r = Recording::read(&p).unwrap();
        assert_eq!(r.transform_names(), vec!["StylusToTracker"]);
        assert_eq!(r.frames[0].image.as_deref(), Some(&pixels[..4]));
        assert!(r.frames[1].image.is_none() && r.frames[1].transforms[0].pose().is_none());
        assert!(
            (r.frames[0].transforms[0].pose().unwrap().translation - DVec3::new(0.01, 0.02, 0.03))
                .length()
                < 1e-12
        );
        let bad = head.replace("= 1.6", "= soon");
        std::fs::write(&p, [bad.as_bytes(), &comp].concat()).unwrap();
        let e = Recording::read(&p).unwrap_err().to_string();
        assert!(e.contains("plus.mha:15") && e.contains("Timestamp"), "{e}");
        std::fs::write(
            &p,
            "ObjectType = Image\nDimSize = 2 2 2\nElementType = MET_UCHAR\n",
        )
        .unwrap();
        assert!(Recording::read(&p)
            .unwrap_err()
            .to_string()
            .contains("ElementDataFile"));
        std::fs::write(&p, "ObjectType = Image\nDimSize = 2 2 2\nElementType = MET_UCHAR\nElementDataFile = LOCAL\nabc").unwrap();
        assert!(Recording::read(&p)
            .unwrap_err()
            .to_string()
            .contains("expected 8"));
        // A declared frame count no file could hold is refused, not
        // allocated (it once aborted the process).
        for (dims, want) in [
            ("0 0 99999999999", "pose-only file names every frame"),
            ("100000 100000 99999", "over 8 GiB"),
        ] {
            std::fs::write(
                &p,
                format!("ObjectType = Image\nDimSize = {dims}\nElementType = MET_UCHAR\nElementDataFile = LOCAL\n"),
            )
            .unwrap();
            let e = Recording::read(&p).unwrap_err().to_string();
            assert!(e.contains("DimSize") && e.contains(want), "{e}");
        }
    }
}
