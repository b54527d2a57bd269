//! The OpenIGTLink wire format: the 58-byte header, the version-2
//! extended header and metadata (OpenIGTLink 3), the CRC-64 of the body,
//! and the bodies sonoguide reads (TRANSFORM, POSITION, STATUS) and writes
//! (IMAGE, TRANSFORM, STATUS).
//!
//! Everything is big-endian. Decoding is strict and bounded: a header is
//! checked before any body byte is read, and a body is allocated only when
//! its declared size is within [`body_limit`] for its type, because the
//! size field is the one thing a broken or hostile peer controls that
//! could make us allocate gigabytes.

// Matrices are indexed as matrices (row r, column c): clearer here than
// iterator chains.
#![allow(clippy::needless_range_loop)]

use std::fmt::Write as _;

use crate::scene::pose::Pose;

pub const HEADER_SIZE: usize = 58;
/// Size of the version-2 extended header at the start of a body.
pub const EXT_HEADER_SIZE: usize = 12;
/// The largest IMAGE body accepted or sent: a 4096 × 4096 uint8 frame and
/// its headers; far above any B-mode, far below what would hurt.
pub const MAX_IMAGE_BODY: u64 = 16 << 20;
/// The largest body of every other type (a TRANSFORM is 48 bytes, a STATUS
/// a few hundred; metadata of a few KiB is normal in OpenIGTLink 3).
pub const MAX_SMALL_BODY: u64 = 64 << 10;
/// Types we do not read are skipped by their body size, up to this much;
/// past it the stream is closed rather than read for minutes.
pub const MAX_SKIPPED_BODY: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum IgtlError {
    #[error("header version {0}: expected 1 (OpenIGTLink 1–2) or 2 (OpenIGTLink 3); the stream is probably not OpenIGTLink or is out of step")]
    Version(u16),
    #[error("header {field} field {text:?} is not NUL-padded printable ASCII; the stream is probably not OpenIGTLink or is out of step")]
    Field { field: &'static str, text: String },
    #[error("{kind} `{device}` declares a body of {size} bytes, over the {limit}-byte limit for {kind}; closing the connection (the stream cannot be resynchronised without reading it)")]
    TooLarge {
        kind: String,
        device: String,
        size: u64,
        limit: u64,
    },
    #[error("{kind} `{device}`: body CRC {got:#018x} differs from the header's {want:#018x}; message dropped (the sender's data were corrupted)")]
    Crc {
        kind: String,
        device: String,
        got: u64,
        want: u64,
    },
    #[error("{kind} `{device}`: {what}")]
    Body {
        kind: String,
        device: String,
        what: String,
    },
}

/// The ECMA-182 CRC-64 (polynomial 0x42F0E1EBA9EA3693, MSB first, no
/// reflection, zero initial value and xor-out) that OpenIGTLink uses.
pub fn crc64(data: &[u8]) -> u64 {
    static TABLE: std::sync::OnceLock<[u64; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u64; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = (i as u64) << 56;
            for _ in 0..8 {
                c = if c & (1 << 63) != 0 {
                    (c << 1) ^ 0x42F0_E1EB_A9EA_3693
                } else {
                    c << 1
                };
            }
            *e = c;
        }
        t
    });
    data.iter().fold(0u64, |crc, b| {
        table[((crc >> 56) as u8 ^ b) as usize] ^ (crc << 8)
    })
}

/// A decoded message header.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub version: u16,
    /// Message type, e.g. `TRANSFORM`.
    pub kind: String,
    pub device: String,
    /// Seconds (Unix time for PLUS and pyigtl); 0 when the sender set none.
    pub timestamp: f64,
    pub body_size: u64,
    pub crc: u64,
}

fn text_field(bytes: &[u8], field: &'static str) -> Result<String, IgtlError> {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    let (text, pad) = bytes.split_at(end);
    // Printable ASCII then NUL padding; anything else means we are not
    // looking at a header.
    if text.iter().any(|b| !(0x20..0x7f).contains(b)) || pad.iter().any(|b| *b != 0) {
        return Err(IgtlError::Field {
            field,
            text: String::from_utf8_lossy(bytes).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(text).trim_end().to_string())
}

fn put_text(out: &mut Vec<u8>, s: &str, n: usize) {
    let b = s.as_bytes();
    let k = b.len().min(n);
    out.extend_from_slice(&b[..k]);
    out.resize(out.len() + n - k, 0);
}

/// OpenIGTLink timestamps: seconds in the upper 32 bits, the fraction of a
/// second (× 2³²) in the lower.
pub fn timestamp_to_u64(t: f64) -> u64 {
    if !(t.is_finite() && t > 0.0) {
        return 0;
    }
    let s = t.floor();
    let frac = ((t - s) * 4_294_967_296.0).round().min(4_294_967_295.0);
    ((s as u64) << 32) | frac as u64
}

pub fn timestamp_from_u64(v: u64) -> f64 {
    (v >> 32) as f64 + (v & 0xffff_ffff) as f64 / 4_294_967_296.0
}

impl Header {
    /// Parse and check the 58 header bytes (the body is not yet read).
    pub fn decode(b: &[u8; HEADER_SIZE]) -> Result<Header, IgtlError> {
        let version = u16::from_be_bytes([b[0], b[1]]);
        if !(1..=2).contains(&version) {
            return Err(IgtlError::Version(version));
        }
        let kind = text_field(&b[2..14], "type")?;
        if kind.is_empty() {
            return Err(IgtlError::Field {
                field: "type",
                text: String::new(),
            });
        }
        let device = text_field(&b[14..34], "device name")?;
        let u64_at = |i: usize| u64::from_be_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Ok(Header {
            version,
            kind,
            device,
            timestamp: timestamp_from_u64(u64_at(34)),
            body_size: u64_at(42),
            crc: u64_at(50),
        })
    }

    /// Refuse bodies over the limit for this type, before allocating.
    pub fn check_size(&self) -> Result<(), IgtlError> {
        let limit = body_limit(&self.kind);
        if self.body_size > limit {
            return Err(IgtlError::TooLarge {
                kind: self.kind.clone(),
                device: self.device.clone(),
                size: self.body_size,
                limit,
            });
        }
        Ok(())
    }
}

/// The largest body accepted for a message type.
pub fn body_limit(kind: &str) -> u64 {
    match kind {
        "IMAGE" => MAX_IMAGE_BODY,
        k if is_read(k) => MAX_SMALL_BODY,
        _ => MAX_SKIPPED_BODY,
    }
}

/// Types whose bodies sonoguide decodes; the rest are skipped.
pub fn is_read(kind: &str) -> bool {
    matches!(
        kind,
        "TRANSFORM"
            | "POSITION"
            | "STATUS"
            | "GET_STATUS"
            | "STT_TDATA"
            | "STP_TDATA"
            | "GET_CAPABIL"
    )
}

/// STATUS codes (OpenIGTLink's `IGTL_STATUS_*`) that matter here.
pub const STATUS_OK: u16 = 1;

/// A decoded message body.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// A rigid transform (row-major 4×4, mm) as sent; validity decided by
    /// the caller with [`Pose::from_matrix_mm`].
    Transform([[f64; 4]; 4]),
    /// POSITION: a point (mm) and, when sent, an orientation quaternion.
    Position {
        position: [f64; 3],
        quaternion: Option<[f64; 4]>,
    },
    Status {
        code: u16,
        subcode: i64,
        error_name: String,
        message: String,
    },
    Image(Image),
    /// A type we do not read (or a query such as GET_STATUS): nothing to do.
    Other,
}

/// A 2D or 3D image with its IJK → world (mm, corner-origin) matrix, as
/// OpenIGTLink's IMAGE carries it (the wire form has the origin at the
/// image centre; [`Image::encode`] and [`Image::decode`] convert).
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// Columns, rows, slices.
    pub size: [u16; 3],
    /// IJK → world, row-major, mm; its columns are the axes scaled by the
    /// spacing, its translation the centre of voxel (0, 0, 0).
    pub ijk_to_world: [[f64; 4]; 4],
    /// uint8, i fastest.
    pub pixels: Vec<u8>,
}

const IMAGE_HEADER_SIZE: usize = 72;

impl Image {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(IMAGE_HEADER_SIZE + self.pixels.len());
        b.extend_from_slice(&1u16.to_be_bytes()); // image header version
        b.push(1); // components
        b.push(3); // uint8
        b.push(2); // little endian (irrelevant for bytes; what the C library sends on x86)
        b.push(1); // RAS: the tracker's reference frame is taken as the world
        for s in self.size {
            b.extend_from_slice(&s.to_be_bytes());
        }
        let m = &self.ijk_to_world;
        // The wire's translation is the centre of the image.
        let half = [
            (self.size[0] as f64 - 1.0) / 2.0,
            (self.size[1] as f64 - 1.0) / 2.0,
            (self.size[2] as f64 - 1.0) / 2.0,
        ];
        let centre: Vec<f64> = (0..3)
            .map(|r| m[r][3] + (0..3).map(|c| m[r][c] * half[c]).sum::<f64>())
            .collect();
        for c in 0..3 {
            for r in 0..3 {
                b.extend_from_slice(&(m[r][c] as f32).to_be_bytes());
            }
        }
        for v in &centre {
            b.extend_from_slice(&(*v as f32).to_be_bytes());
        }
        for _ in 0..3 {
            b.extend_from_slice(&0u16.to_be_bytes());
        }
        for s in self.size {
            b.extend_from_slice(&s.to_be_bytes());
        }
        b.extend_from_slice(&self.pixels);
        b
    }

    fn decode(c: &[u8]) -> Result<Image, String> {
        if c.len() < IMAGE_HEADER_SIZE {
            return Err(format!(
                "{} bytes, shorter than the {IMAGE_HEADER_SIZE}-byte image header",
                c.len()
            ));
        }
        if c[2] != 1 || c[3] != 3 {
            return Err(format!(
                "{} components of scalar type {}: only 1-component uint8 (type 3) is read",
                c[2], c[3]
            ));
        }
        let u16_at = |i: usize| u16::from_be_bytes([c[i], c[i + 1]]);
        let f_at = |i: usize| f32::from_be_bytes(c[i..i + 4].try_into().expect("4 bytes")) as f64;
        let size = [u16_at(6), u16_at(8), u16_at(10)];
        let n = size.iter().map(|s| *s as usize).product::<usize>();
        if [u16_at(60), u16_at(62), u16_at(64)] != [0, 0, 0]
            || [u16_at(66), u16_at(68), u16_at(70)] != size
        {
            return Err("a sub-volume update: only whole images are read".into());
        }
        if c.len() != IMAGE_HEADER_SIZE + n {
            return Err(format!(
                "{} pixel bytes for a {}×{}×{} image",
                c.len() - IMAGE_HEADER_SIZE,
                size[0],
                size[1],
                size[2]
            ));
        }
        let mut m = [[0.0; 4]; 4];
        for col in 0..3 {
            for r in 0..3 {
                m[r][col] = f_at(12 + (col * 3 + r) * 4);
            }
        }
        let half = [
            (size[0] as f64 - 1.0) / 2.0,
            (size[1] as f64 - 1.0) / 2.0,
            (size[2] as f64 - 1.0) / 2.0,
        ];
        for r in 0..3 {
            m[r][3] = f_at(48 + r * 4) - (0..3).map(|col| m[r][col] * half[col]).sum::<f64>();
        }
        m[3][3] = 1.0;
        Ok(Image {
            size,
            ijk_to_world: m,
            pixels: c[IMAGE_HEADER_SIZE..].to_vec(),
        })
    }
}

/// One message, decoded or to be sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub kind: String,
    pub device: String,
    pub timestamp: f64,
    /// OpenIGTLink 3 metadata (key, value), in order.
    pub metadata: Vec<(String, String)>,
    pub content: Content,
}

fn be_f32s(c: &[u8]) -> Vec<f64> {
    c.chunks_exact(4)
        .map(|w| f32::from_be_bytes(w.try_into().expect("4 bytes")) as f64)
        .collect()
}

impl Message {
    pub fn transform(device: &str, timestamp: f64, pose: &Pose) -> Message {
        Message {
            kind: "TRANSFORM".into(),
            device: device.into(),
            timestamp,
            metadata: Vec::new(),
            content: Content::Transform(pose.to_matrix_mm()),
        }
    }

    /// Decode a body whose header has been read, checked and CRC-verified.
    pub fn decode(h: &Header, body: &[u8]) -> Result<Message, IgtlError> {
        let bad = |what: String| IgtlError::Body {
            kind: h.kind.clone(),
            device: h.device.clone(),
            what,
        };
        let (content, metadata) = if h.version >= 2 {
            split_v2(body).map_err(bad)?
        } else {
            (body, Vec::new())
        };
        let c = content;
        let content = match h.kind.as_str() {
            "TRANSFORM" => {
                if c.len() != 48 {
                    return Err(bad(format!("{} content bytes, expected 48 (12 float32: rotation columns then translation)", c.len())));
                }
                let v = be_f32s(c);
                let mut m = [[0.0; 4]; 4];
                for r in 0..3 {
                    m[r] = [v[r], v[3 + r], v[6 + r], v[9 + r]];
                }
                m[3] = [0.0, 0.0, 0.0, 1.0];
                Content::Transform(m)
            }
            "POSITION" => {
                let v = be_f32s(c);
                let quaternion = match c.len() {
                    12 => None,
                    // Three components: w is implied by unit length.
                    24 => Some([v[3], v[4], v[5], (1.0 - v[3] * v[3] - v[4] * v[4] - v[5] * v[5]).max(0.0).sqrt()]),
                    28 => Some([v[3], v[4], v[5], v[6]]),
                    n => return Err(bad(format!("{n} content bytes, expected 12, 24 or 28 (position, then a 3- or 4-component quaternion)"))),
                };
                Content::Position {
                    position: [v[0], v[1], v[2]],
                    quaternion,
                }
            }
            "STATUS" => {
                if c.len() < 30 {
                    return Err(bad(format!(
                        "{} content bytes, shorter than the 30-byte status header",
                        c.len()
                    )));
                }
                let code = u16::from_be_bytes([c[0], c[1]]);
                let subcode = i64::from_be_bytes(c[2..10].try_into().expect("8 bytes"));
                let name_end = c[10..30].iter().position(|b| *b == 0).unwrap_or(20);
                let error_name = String::from_utf8_lossy(&c[10..10 + name_end]).into_owned();
                let msg = &c[30..];
                let msg_end = msg.iter().position(|b| *b == 0).unwrap_or(msg.len());
                Content::Status {
                    code,
                    subcode,
                    error_name,
                    message: String::from_utf8_lossy(&msg[..msg_end]).into_owned(),
                }
            }
            "IMAGE" => Content::Image(Image::decode(c).map_err(bad)?),
            _ => Content::Other,
        };
        Ok(Message {
            kind: h.kind.clone(),
            device: h.device.clone(),
            timestamp: h.timestamp,
            metadata,
            content,
        })
    }

    fn content_bytes(&self) -> Vec<u8> {
        match &self.content {
            Content::Transform(m) => {
                let mut b = Vec::with_capacity(48);
                for c in 0..4 {
                    for r in 0..3 {
                        b.extend_from_slice(&(m[r][c] as f32).to_be_bytes());
                    }
                }
                b
            }
            Content::Position {
                position,
                quaternion,
            } => {
                let mut b = Vec::with_capacity(28);
                for v in position.iter().chain(quaternion.iter().flatten()) {
                    b.extend_from_slice(&(*v as f32).to_be_bytes());
                }
                b
            }
            Content::Status {
                code,
                subcode,
                error_name,
                message,
            } => {
                let mut b = Vec::with_capacity(31 + message.len());
                b.extend_from_slice(&code.to_be_bytes());
                b.extend_from_slice(&subcode.to_be_bytes());
                put_text(&mut b, error_name, 20);
                b.extend_from_slice(message.as_bytes());
                b.push(0);
                b
            }
            Content::Image(img) => img.encode(),
            Content::Other => Vec::new(),
        }
    }

    /// The whole message on the wire with header `version` (1: no extended
    /// header, metadata dropped; 2: extended header and metadata).
    pub fn encode(&self, version: u16, message_id: u32) -> Vec<u8> {
        let content = self.content_bytes();
        let mut body = Vec::with_capacity(content.len() + 64);
        if version >= 2 {
            let mut meta_header = Vec::new();
            let mut meta_body = Vec::new();
            meta_header.extend_from_slice(&(self.metadata.len() as u16).to_be_bytes());
            for (k, v) in &self.metadata {
                meta_header.extend_from_slice(&(k.len() as u16).to_be_bytes());
                meta_header.extend_from_slice(&3u16.to_be_bytes()); // US-ASCII
                meta_header.extend_from_slice(&(v.len() as u32).to_be_bytes());
                meta_body.extend_from_slice(k.as_bytes());
                meta_body.extend_from_slice(v.as_bytes());
            }
            body.extend_from_slice(&(EXT_HEADER_SIZE as u16).to_be_bytes());
            body.extend_from_slice(&(meta_header.len() as u16).to_be_bytes());
            body.extend_from_slice(&(meta_body.len() as u32).to_be_bytes());
            body.extend_from_slice(&message_id.to_be_bytes());
            body.extend_from_slice(&content);
            body.extend_from_slice(&meta_header);
            body.extend_from_slice(&meta_body);
        } else {
            body = content;
        }
        let mut out = Vec::with_capacity(HEADER_SIZE + body.len());
        out.extend_from_slice(&version.to_be_bytes());
        put_text(&mut out, &self.kind, 12);
        put_text(&mut out, &self.device, 20);
        out.extend_from_slice(&timestamp_to_u64(self.timestamp).to_be_bytes());
        out.extend_from_slice(&(body.len() as u64).to_be_bytes());
        out.extend_from_slice(&crc64(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A one-line description for logs.
    pub fn describe(&self) -> String {
        let mut s = format!("{} `{}`", self.kind, self.device);
        if let Content::Status {
            code,
            error_name,
            message,
            ..
        } = &self.content
        {
            let _ = write!(s, " code {code} {error_name} {message:?}");
        }
        s
    }
}

/// OpenIGTLink 3 metadata: (key, value) pairs in order.
pub type Metadata = Vec<(String, String)>;

/// Split a version-2 body into its content and metadata.
fn split_v2(body: &[u8]) -> Result<(&[u8], Metadata), String> {
    if body.len() < EXT_HEADER_SIZE {
        return Err(format!("{} body bytes, shorter than the {EXT_HEADER_SIZE}-byte extended header of a version-2 message", body.len()));
    }
    let ext = u16::from_be_bytes([body[0], body[1]]) as usize;
    let meta_header = u16::from_be_bytes([body[2], body[3]]) as usize;
    let meta_size = u32::from_be_bytes(body[4..8].try_into().expect("4 bytes")) as usize;
    if ext < EXT_HEADER_SIZE || ext + meta_header + meta_size > body.len() {
        return Err(format!("extended header of {ext} bytes and metadata of {meta_header} + {meta_size} bytes do not fit in a {}-byte body", body.len()));
    }
    let content = &body[ext..body.len() - meta_header - meta_size];
    let mh = &body[body.len() - meta_header - meta_size..body.len() - meta_size];
    let mb = &body[body.len() - meta_size..];
    let mut metadata = Vec::new();
    if meta_header >= 2 {
        let count = u16::from_be_bytes([mh[0], mh[1]]) as usize;
        if 2 + count * 8 > mh.len() {
            return Err(format!(
                "metadata header of {} bytes cannot index {count} entries",
                mh.len()
            ));
        }
        let mut at = 0usize;
        for i in 0..count {
            let e = &mh[2 + i * 8..10 + i * 8];
            let k = u16::from_be_bytes([e[0], e[1]]) as usize;
            let v = u32::from_be_bytes(e[4..8].try_into().expect("4 bytes")) as usize;
            if at + k + v > mb.len() {
                return Err(format!(
                    "metadata entry {i} runs past the {}-byte metadata",
                    mb.len()
                ));
            }
            let key = String::from_utf8_lossy(&mb[at..at + k]).into_owned();
            let value = String::from_utf8_lossy(&mb[at + k..at + k + v]).into_owned();
            at += k + v;
            metadata.push((key, value));
        }
    }
    Ok((content, metadata))
}

#[cfg(test)]
mod tests {
    use super::*;
    use glam::{DQuat, DVec3};

    #[test]
    fn crc_matches_the_ecma_182_check_value() {
        // CRC-64/ECMA-182 of "123456789" (the catalogued check value).
        assert_eq!(crc64(b"123456789"), 0x6C40_DF5F_0B49_7347);
        assert_eq!(crc64(b""), 0);
    }

    #[test]
    fn transform_status_position_round_trip_in_both_versions() {
        let pose = Pose {
            translation: DVec3::new(0.01, -0.02, 0.03),
            rotation: DQuat::from_rotation_y(0.4) * DQuat::from_rotation_x(-0.2),
        };
        for version in [1u16, 2] {
            let mut m = Message::transform("NeedleToReference", 1_700_000_000.25, &pose);
            m.metadata.push(("TransformValid".into(), "true".into()));
            let bytes = m.encode(version, 7);
            let h = Header::decode(bytes[..HEADER_SIZE].try_into().unwrap()).unwrap();
            assert_eq!(
                (h.version, h.kind.as_str(), h.device.as_str()),
                (version, "TRANSFORM", "NeedleToReference")
            );
            assert_eq!(h.body_size as usize, bytes.len() - HEADER_SIZE);
            assert_eq!(h.crc, crc64(&bytes[HEADER_SIZE..]));
            assert!((h.timestamp - 1_700_000_000.25).abs() < 1e-6);
            let back = Message::decode(&h, &bytes[HEADER_SIZE..]).unwrap();
            assert_eq!(
                back.meta("TransformValid"),
                if version == 2 { Some("true") } else { None }
            );
            let Content::Transform(t) = back.content else {
                panic!()
            };
            let p = Pose::from_matrix_mm(&t).unwrap();
            assert!(
                (p.translation - pose.translation).length() < 1e-8
                    && p.rotation.dot(pose.rotation).abs() > 1.0 - 1e-12
            );
        }
        let s = Message {
            kind: "STATUS".into(),
            device: "Tracker".into(),
            timestamp: 0.0,
            metadata: vec![],
            content: Content::Status {
                code: 7,
                subcode: -3,
                error_name: "TIMEOUT".into(),
                message: "lost".into(),
            },
        };
        let b = s.encode(2, 0);
        let h = Header::decode(b[..HEADER_SIZE].try_into().unwrap()).unwrap();
        assert_eq!(
            Message::decode(&h, &b[HEADER_SIZE..]).unwrap().content,
            s.content
        );
        let p = Message {
            kind: "POSITION".into(),
            device: "Stylus".into(),
            timestamp: 0.0,
            metadata: vec![],
            content: Content::Position {
                position: [1.0, 2.0, 3.0],
                quaternion: Some([0.0, 0.0, 0.0, 1.0]),
            },
        };
        let b = p.encode(1, 0);
        let h = Header::decode(b[..HEADER_SIZE].try_into().unwrap()).unwrap();
        assert_eq!(
            Message::decode(&h, &b[HEADER_SIZE..]).unwrap().content,
            p.content
        );
    }

    #[test]
    fn image_centre_origin_round_trip() {
        let mut m = [[0.0; 4]; 4];
        m[0] = [0.3, 0.0, 0.0, -10.0];
        m[1] = [0.0, 0.0, -1.0, 5.0];
        m[2] = [0.0, 0.3, 0.0, 20.0];
        m[3][3] = 1.0;
        let img = Image {
            size: [4, 3, 1],
            ijk_to_world: m,
            pixels: (0..12).collect(),
        };
        let msg = Message {
            kind: "IMAGE".into(),
            device: "Image_Reference".into(),
            timestamp: 1.0,
            metadata: vec![],
            content: Content::Image(img.clone()),
        };
        let b = msg.encode(2, 1);
        let h = Header::decode(b[..HEADER_SIZE].try_into().unwrap()).unwrap();
        let Content::Image(back) = Message::decode(&h, &b[HEADER_SIZE..]).unwrap().content else {
            panic!()
        };
        assert_eq!(back.size, img.size);
        assert_eq!(back.pixels, img.pixels);
        for r in 0..4 {
            for c in 0..4 {
                assert!((back.ijk_to_world[r][c] - m[r][c]).abs() < 1e-5, "{r} {c}");
            }
        }
        // The wire carries the centre: column 1.5, row 1 of the image.
        let f = |i: usize| {
            f32::from_be_bytes(
                b[HEADER_SIZE + EXT_HEADER_SIZE + i..HEADER_SIZE + EXT_HEADER_SIZE + i + 4]
                    .try_into()
                    .unwrap(),
            )
        };
        assert!((f(48) - (-10.0 + 0.45)).abs() < 1e-5 && (f(56) - (20.0 + 0.3)).abs() < 1e-5);
    }

    #[test]
    fn bad_headers_are_refused_before_the_body() {
        let good = Message::transform("Probe", 0.0, &Pose::IDENTITY).encode(1, 0);
        let mut h: [u8; HEADER_SIZE] = good[..HEADER_SIZE].try_into().unwrap();
        h[1] = 9;
        assert!(matches!(Header::decode(&h), Err(IgtlError::Version(9))));
        let mut h: [u8; HEADER_SIZE] = good[..HEADER_SIZE].try_into().unwrap();
        h[5] = 0xff;
        assert!(Header::decode(&h)
            .unwrap_err()
            .to_string()
            .contains("type field"));
        let mut h: [u8; HEADER_SIZE] = good[..HEADER_SIZE].try_into().unwrap();
        h[42..50].copy_from_slice(&(4u64 << 30).to_be_bytes());
        let e = Header::decode(&h)
            .unwrap()
            .check_size()
            .unwrap_err()
            .to_string();
        assert!(e.contains("4294967296") && e.contains("limit"), "{e}");
        let hd = Header::decode(good[..HEADER_SIZE].try_into().unwrap()).unwrap();
        assert!(Message::decode(&hd, &good[HEADER_SIZE..HEADER_SIZE + 40])
            .unwrap_err()
            .to_string()
            .contains("expected 48"));
    }
}
