//! Reader for USTB UFF channel data (`uff.channel_data` in an HDF5 file).
//!
//! The Ultrasound File Format of the USTB toolbox stores a MATLAB object tree
//! in HDF5: every UFF object is a group whose `class` attribute names its
//! MATLAB class (`uff.channel_data`, `uff.linear_array`, `uff.wave`, ...),
//! and every numeric property is a dataset. What this reader relies on:
//!
//! * MATLAB writes column-major, so HDF5 dimensions are MATLAB's reversed.
//!   `channel_data.data` is MATLAB `[time, channel, wave, frame]`, hence HDF5
//!   `[frame][wave][channel][time]`, with MATLAB's trailing singleton
//!   dimensions dropped: `[wave][channel][time]` for one frame and
//!   `[channel][time]` for one wave of one frame. pyuff-ustb transposes on
//!   write and produces the same layout. That row-major layout is exactly
//!   sonoguide's `[frame][wave][channel][sample]`, so samples are copied
//!   without reordering.
//! * Complex (IQ) data is a *group* `data` (attribute `complex = 1`) holding
//!   two datasets `real` and `imag` of equal shape. A compound dataset with
//!   float members `r`/`i` or `real`/`imag` (h5py's complex) is read too.
//!   Samples of any integer or float type are converted to `f32`.
//! * Scalars may be stored with shape `()`, `(1,)` or `(1, 1)` (MATLAB).
//! * `probe.geometry` is MATLAB `[N × 7]` = HDF5 `[7][N]`, rows
//!   x, y, z, theta, phi, width, height; USTB pads missing columns with
//!   zeros, so 3 to 7 rows are accepted, as is the transposed `[N][k]` when
//!   the orientation is unambiguous.
//! * `sequence` holds one `uff.wave` group per transmit, `sequence_0001`,
//!   `sequence_0002`, ...; a single wave is written as the fields of
//!   `sequence` itself. `wavefront` is USTB's enumeration (0 plane,
//!   1 spherical, 2 photoacoustic); `source` is a `uff.point` in spherical
//!   coordinates (distance, azimuth, elevation), at infinite distance for a
//!   plane wave steered at `source.azimuth`. A spherical source behind the
//!   plane z = 0 is a diverging wave, otherwise a focused one (USTB's rule).
//!
//! Every error names the file, the HDF5 path and what was expected.

use std::path::Path;

use glam::DVec3;
use hdf5::types::{FixedAscii, FixedUnicode, TypeDescriptor, VarLenAscii, VarLenUnicode};
use hdf5::{Dataset, File, Group, Location, LocationType};

use super::output::TempFile;
use crate::acquisition::{
    Acquisition, AcquisitionError, ChannelData, Element, Probe, ProbeKind, Samples, Wave, Wavefront,
};

/// A UFF file that cannot be read as channel data.
#[derive(Debug, thiserror::Error)]
pub enum UffError {
    #[error("{file}: cannot open: {detail}")]
    Open { file: String, detail: String },
    #[error("{file}: not a readable HDF5 file (truncated or corrupt?): {detail}")]
    NotHdf5 { file: String, detail: String },
    #[error(
        "{file}: no top-level group has class \"uff.channel_data\" (top-level members: {found})"
    )]
    NoChannelData { file: String, found: String },
    #[error("{file}: {path} is missing, expected {expected}")]
    Missing {
        file: String,
        path: String,
        expected: String,
    },
    #[error("{file}: {path} {problem}")]
    Invalid {
        file: String,
        path: String,
        problem: String,
    },
    #[error("{file}: {path}: HDF5 read failed, the file may be corrupt ({detail})")]
    Hdf5 {
        file: String,
        path: String,
        detail: String,
    },
    #[error("{file}: cannot write: {detail}")]
    Write { file: String, detail: String },
    #[error("{file}: {path}: HDF5 write failed ({detail})")]
    Hdf5Write {
        file: String,
        path: String,
        detail: String,
    },
    #[error("{file}: {group}: {source}")]
    Acquisition {
        file: String,
        group: String,
        #[source]
        source: AcquisitionError,
    },
}

/// Read the first top-level group whose `class` attribute is
/// `uff.channel_data` (commonly `/channel_data`).
pub fn read_uff(path: &Path) -> Result<ChannelData, UffError> {
    let ctx = Ctx::new(path);
    let file = ctx.open()?;
    let names = file.member_names().map_err(|e| ctx.hdf5("/", e))?;
    for name in &names {
        let is_group = matches!(file.loc_type_by_name(name), Ok(LocationType::Group));
        if !is_group {
            continue;
        }
        let group = file
            .group(name)
            .map_err(|e| ctx.hdf5(&format!("/{name}"), e))?;
        if class_of(&group).as_deref() == Some("uff.channel_data") {
            return ctx.channel_data(&group, &format!("/{name}"));
        }
    }
    // A hand-written file may lack the class attributes: accept a group
    // named `channel_data` that carries no class at all.
    if matches!(
        file.loc_type_by_name("channel_data"),
        Ok(LocationType::Group)
    ) {
        let group = file
            .group("channel_data")
            .map_err(|e| ctx.hdf5("/channel_data", e))?;
        if group.attr("class").is_err() {
            return ctx.channel_data(&group, "/channel_data");
        }
    }
    let found = if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    };
    Err(UffError::NoChannelData {
        file: ctx.file,
        found,
    })
}

/// Read the `uff.channel_data` group at `group` (e.g. `"/channel_data"`).
pub fn read_uff_dataset(path: &Path, group: &str) -> Result<ChannelData, UffError> {
    let ctx = Ctx::new(path);
    let file = ctx.open()?;
    let gpath = format!("/{}", group.trim_matches('/'));
    let root: &Group = &file;
    let g = ctx.group(
        root,
        "",
        gpath.trim_start_matches('/'),
        "a uff.channel_data group",
    )?;
    if let Some(class) = class_of(&g) {
        if class != "uff.channel_data" {
            return Err(ctx.invalid(
                &gpath,
                format!("has class \"{class}\", expected \"uff.channel_data\""),
            ));
        }
    }
    ctx.channel_data(&g, &gpath)
}

/// The file name carried into every message, and the readers that map HDF5
/// failures onto [`UffError`].
struct Ctx {
    file: String,
    path: std::path::PathBuf,
}

impl Ctx {
    fn new(path: &Path) -> Ctx {
        Ctx {
            file: path.display().to_string(),
            path: path.to_path_buf(),
        }
    }

    fn open(&self) -> Result<File, UffError> {
        // The library prints its error stack to stderr unless told not to
        // (hdf5-metno silences it at start-up; make sure).
        hdf5::silence_errors(true);
        match std::fs::metadata(&self.path) {
            Err(e) => {
                return Err(UffError::Open {
                    file: self.file.clone(),
                    detail: e.to_string(),
                })
            }
            Ok(m) if m.is_dir() => {
                return Err(UffError::Open {
                    file: self.file.clone(),
                    detail: "is a directory".into(),
                })
            }
            Ok(_) => {}
        }
        File::open(&self.path).map_err(|e| UffError::NotHdf5 {
            file: self.file.clone(),
            detail: e.to_string(),
        })
    }

    fn hdf5(&self, path: &str, e: hdf5::Error) -> UffError {
        UffError::Hdf5 {
            file: self.file.clone(),
            path: path.to_string(),
            detail: e.to_string(),
        }
    }

    fn invalid(&self, path: &str, problem: impl Into<String>) -> UffError {
        UffError::Invalid {
            file: self.file.clone(),
            path: path.to_string(),
            problem: problem.into(),
        }
    }

    fn missing(&self, path: &str, expected: impl Into<String>) -> UffError {
        UffError::Missing {
            file: self.file.clone(),
            path: path.to_string(),
            expected: expected.into(),
        }
    }

    /// What `name` is inside `parent`, or `None` when there is no such link.
    fn kind(&self, parent: &Group, name: &str) -> Option<LocationType> {
        if !parent.link_exists(name) {
            return None;
        }
        // A dangling link exists but has no object behind it: report it as
        // missing, which is what it is to a reader.
        parent.loc_type_by_name(name).ok()
    }

    fn group(
        &self,
        parent: &Group,
        ppath: &str,
        name: &str,
        expected: &str,
    ) -> Result<Group, UffError> {
        let path = format!("{ppath}/{name}");
        match self.kind(parent, name) {
            None => Err(self.missing(&path, expected)),
            Some(LocationType::Group) => parent.group(name).map_err(|e| self.hdf5(&path, e)),
            Some(_) => Err(self.invalid(
                &path,
                format!("is a dataset, expected {expected} (an HDF5 group)"),
            )),
        }
    }

    fn opt_group(
        &self,
        parent: &Group,
        ppath: &str,
        name: &str,
        expected: &str,
    ) -> Result<Option<Group>, UffError> {
        if self.kind(parent, name).is_none() {
            return Ok(None);
        }
        self.group(parent, ppath, name, expected).map(Some)
    }

    fn dataset(
        &self,
        parent: &Group,
        ppath: &str,
        name: &str,
        expected: &str,
    ) -> Result<Dataset, UffError> {
        let path = format!("{ppath}/{name}");
        match self.kind(parent, name) {
            None => Err(self.missing(&path, expected)),
            Some(LocationType::Dataset) => parent.dataset(name).map_err(|e| self.hdf5(&path, e)),
            Some(_) => Err(self.invalid(
                &path,
                format!("is a group, expected {expected} (an HDF5 dataset)"),
            )),
        }
    }

    /// A numeric scalar stored with shape `()`, `(1,)` or `(1, 1)`, or
    /// `None` when the dataset is absent.
    fn opt_scalar(
        &self,
        parent: &Group,
        ppath: &str,
        name: &str,
        expected: &str,
    ) -> Result<Option<f64>, UffError> {
        if self.kind(parent, name).is_none() {
            return Ok(None);
        }
        let path = format!("{ppath}/{name}");
        let ds = self.dataset(parent, ppath, name, expected)?;
        self.ensure_numeric(&ds, &path, expected)?;
        let shape = ds.shape();
        let v: Vec<f64> = ds.read_raw().map_err(|e| self.hdf5(&path, e))?;
        if v.len() != 1 {
            return Err(self.invalid(
                &path,
                format!("has shape {shape:?}, expected a single value: {expected}"),
            ));
        }
        Ok(Some(v[0]))
    }

    fn scalar(
        &self,
        parent: &Group,
        ppath: &str,
        name: &str,
        expected: &str,
    ) -> Result<f64, UffError> {
        match self.opt_scalar(parent, ppath, name, expected)? {
            Some(v) => Ok(v),
            None => Err(self.missing(&format!("{ppath}/{name}"), expected)),
        }
    }

    fn ensure_numeric(&self, ds: &Dataset, path: &str, expected: &str) -> Result<(), UffError> {
        let td = ds
            .dtype()
            .and_then(|t| t.to_descriptor())
            .map_err(|e| self.hdf5(path, e))?;
        match td {
            TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) | TypeDescriptor::Float(_) => {
                Ok(())
            }
            other => Err(self.invalid(
                path,
                format!("has HDF5 type {other}, expected numbers: {expected}"),
            )),
        }
    }

    fn channel_data(&self, cd: &Group, base: &str) -> Result<ChannelData, UffError> {
        let fs_path = format!("{base}/sampling_frequency");
        let fs = self.scalar(
            cd,
            base,
            "sampling_frequency",
            "the sampling frequency in Hz",
        )?;
        if !fs.is_finite() || fs <= 0.0 {
            return Err(self.invalid(
                &fs_path,
                format!("is {fs}, expected a positive sampling frequency in Hz"),
            ));
        }

        let t0 = self.scalar(
            cd,
            base,
            "initial_time",
            "the time of the first sample in s",
        )?;
        if !t0.is_finite() {
            return Err(self.invalid(
                &format!("{base}/initial_time"),
                format!("is {t0}, expected a finite time in s"),
            ));
        }

        let fmod_path = format!("{base}/modulation_frequency");
        let fmod = self
            .opt_scalar(
                cd,
                base,
                "modulation_frequency",
                "the demodulation frequency in Hz (0 for RF)",
            )?
            .unwrap_or(0.0);
        if !fmod.is_finite() {
            return Err(self.invalid(
                &fmod_path,
                format!("is {fmod}, expected a finite frequency in Hz (0 for RF)"),
            ));
        }

        let prf_name = if cd.link_exists("PRF") { "PRF" } else { "prf" };
        let prf = self
            .opt_scalar(cd, base, prf_name, "the pulse repetition frequency in Hz")?
            .unwrap_or(0.0);
        if !prf.is_finite() || prf < 0.0 {
            return Err(self.invalid(
                &format!("{base}/{prf_name}"),
                format!("is {prf}, expected a non-negative pulse repetition frequency in Hz"),
            ));
        }

        let probe = self.probe(cd, base)?;
        let (waves, wave_speed) = self.sequence(cd, base)?;

        // The reference sound speed; USTB's waves carry one too, used only
        // when the channel data lacks it.
        let c_path = format!("{base}/sound_speed");
        let c =
            match self.opt_scalar(cd, base, "sound_speed", "the reference sound speed in m/s")? {
                Some(c) => c,
                None => match wave_speed {
                    Some(c) => c,
                    None => return Err(self.missing(&c_path, "the reference sound speed in m/s")),
                },
            };
        if !c.is_finite() || c <= 0.0 {
            return Err(self.invalid(
                &c_path,
                format!("is {c}, expected a positive sound speed in m/s"),
            ));
        }

        let (fc, bandwidth) = self.pulse(cd, base, fmod)?;

        let (layout, dims) = self.layout(cd, base)?;
        let [frames, nwaves, channels, samples] = dims;
        let dpath = format!("{base}/data");
        let is_iq = !matches!(layout, Layout::Real(_));
        if is_iq && !cd.link_exists("modulation_frequency") {
            return Err(self.missing(
                &fmod_path,
                "the demodulation frequency in Hz of the IQ data",
            ));
        }
        if !is_iq && fmod != 0.0 {
            return Err(self.invalid(
                &fmod_path,
                format!("is {fmod} but {dpath} is real (RF), expected 0 for RF or complex (real/imag) IQ data"),
            ));
        }
        if channels != probe.len() {
            let hint = if samples == probe.len() {
                " (the data look transposed: time and channel dimensions swapped)"
            } else {
                ""
            };
            return Err(self.invalid(
                &dpath,
                format!(
                    "has {channels} channels (HDF5 dimension [..][channel][time]) but {base}/probe has {} elements, expected one channel per element{hint}",
                    probe.len()
                ),
            ));
        }
        if nwaves != waves.len() {
            return Err(self.invalid(
                &dpath,
                format!(
                    "holds {nwaves} waves (HDF5 dimension [..][wave][channel][time]) but {base}/sequence describes {}, expected one wave per sequence entry",
                    waves.len()
                ),
            ));
        }
        if samples < 2 {
            return Err(self.invalid(
                &dpath,
                format!("has {samples} samples per trace, expected at least 2"),
            ));
        }

        let data = self.read_samples(layout, base, dims)?;

        let acquisition = Acquisition {
            probe,
            waves,
            sampling_frequency: fs,
            initial_time: t0,
            modulation_frequency: fmod,
            center_frequency: fc,
            bandwidth,
            sound_speed: c,
            prf,
        };
        let cd = ChannelData {
            acquisition,
            frames,
            waves: nwaves,
            channels,
            samples,
            data,
        };
        cd.validate().map_err(|source| UffError::Acquisition {
            file: self.file.clone(),
            group: base.to_string(),
            source,
        })?;
        Ok(cd)
    }

    /// Centre frequency and fractional bandwidth from `pulse`, the centre
    /// frequency falling back to the modulation frequency.
    fn pulse(&self, cd: &Group, base: &str, fmod: f64) -> Result<(f64, f64), UffError> {
        let ppath = format!("{base}/pulse");
        let pulse = self.opt_group(cd, base, "pulse", "a uff.pulse group")?;
        let (fc, bw) = match &pulse {
            Some(p) => (
                self.opt_scalar(
                    p,
                    &ppath,
                    "center_frequency",
                    "the transducer centre frequency in Hz",
                )?,
                self.opt_scalar(
                    p,
                    &ppath,
                    "fractional_bandwidth",
                    "the fractional bandwidth (0.77 for 77 %)",
                )?,
            ),
            None => (None, None),
        };
        let fc_path = format!("{ppath}/center_frequency");
        if let Some(f) = fc {
            if !f.is_finite() || f < 0.0 {
                return Err(self.invalid(
                    &fc_path,
                    format!("is {f}, expected a positive centre frequency in Hz"),
                ));
            }
        }
        let fc = match fc {
            Some(f) if f > 0.0 => f,
            _ if fmod > 0.0 => fmod,
            Some(f) => {
                return Err(self.invalid(
                    &fc_path,
                    format!("is {f} and {base}/modulation_frequency is {fmod}, expected a positive transducer centre frequency in Hz"),
                ))
            }
            None => {
                return Err(self.missing(
                    &fc_path,
                    format!("the transducer centre frequency in Hz ({base}/modulation_frequency is {fmod}, no fallback)"),
                ))
            }
        };
        let bw_path = format!("{ppath}/fractional_bandwidth");
        let bw = bw.unwrap_or(0.0);
        if !bw.is_finite() || bw < 0.0 {
            return Err(self.invalid(
                &bw_path,
                format!("is {bw}, expected a non-negative fraction (0.77 for 77 %)"),
            ));
        }
        if bw > 2.0 {
            return Err(self.invalid(
                &bw_path,
                format!("is {bw}, expected a fraction (0.77 for 77 %); a percentage is not UFF"),
            ));
        }
        Ok((fc, bw))
    }

    fn probe(&self, cd: &Group, base: &str) -> Result<Probe, UffError> {
        let ppath = format!("{base}/probe");
        let g = self.group(cd, base, "probe", "a uff.probe group")?;
        let class = class_of(&g).unwrap_or_else(|| "uff.probe".to_string());
        let n_field = self.opt_scalar(&g, &ppath, "N", "the number of elements")?;
        let n_field = match n_field {
            None => None,
            Some(n) if n.is_finite() && n >= 1.0 && n.fract() == 0.0 && n <= 1e6 => {
                Some(n as usize)
            }
            Some(n) => {
                return Err(self.invalid(
                    &format!("{ppath}/N"),
                    format!("is {n}, expected a whole number of elements from 1 to 1000000"),
                ))
            }
        };
        let geometry = self.geometry(&g, &ppath, n_field)?;
        // The probe's own name when it carries one (USTB's `name`, a char
        // array), else its class.
        let name = char_dataset(&g, "name")
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| class.strip_prefix("uff.").unwrap_or(&class).to_string());

        let positive = |field: &str, expected: &str| -> Result<f64, UffError> {
            let v = self.scalar(&g, &ppath, field, expected)?;
            if !v.is_finite() || v <= 0.0 {
                return Err(self.invalid(
                    &format!("{ppath}/{field}"),
                    format!("is {v}, expected {expected}"),
                ));
            }
            Ok(v)
        };
        // USTB's defaults: width = pitch, height = 10 × width.
        let width_height = |pitch: f64| -> Result<(f64, f64), UffError> {
            let w = self
                .opt_scalar(&g, &ppath, "element_width", "the element width in m")?
                .unwrap_or(pitch);
            let h = self
                .opt_scalar(&g, &ppath, "element_height", "the element height in m")?
                .unwrap_or(10.0 * w);
            for (field, v) in [("element_width", w), ("element_height", h)] {
                if !v.is_finite() || v < 0.0 {
                    return Err(self.invalid(
                        &format!("{ppath}/{field}"),
                        format!("is {v}, expected a size in m"),
                    ));
                }
            }
            Ok((w, h))
        };
        let need_n = || -> Result<usize, UffError> {
            n_field.ok_or_else(|| {
                self.missing(
                    &format!("{ppath}/N"),
                    "the number of elements (there is no geometry)",
                )
            })
        };

        let mut probe = match (class.as_str(), geometry) {
            ("uff.linear_array", Some(elements)) => Probe { name, kind: ProbeKind::Linear, elements },
            ("uff.linear_array", None) => {
                let n = need_n()?;
                let pitch = positive("pitch", "the element pitch in m")?;
                let (w, h) = width_height(pitch)?;
                let mut p = Probe::linear(n, pitch, w, h);
                p.name = name;
                p
            }
            ("uff.curvilinear_array", Some(elements)) => {
                let mut p = Probe { name, kind: ProbeKind::Generic, elements };
                p.detect_convex();
                if !matches!(p.kind, ProbeKind::Convex { .. }) {
                    // Not an arc the fit recognises: take USTB's own convention.
                    let radius = positive("radius", "the radius of curvature in m")?;
                    p.kind = ProbeKind::Convex { radius, center: [0.0, -radius] };
                }
                p
            }
            ("uff.curvilinear_array", None) => {
                let n = need_n()?;
                let pitch = positive("pitch", "the element pitch (chord) in m")?;
                let radius = positive("radius", "the radius of curvature in m")?;
                if pitch > 2.0 * radius {
                    return Err(self.invalid(
                        &format!("{ppath}/pitch"),
                        format!(
                            "is {pitch}, larger than the diameter {}: expected a chord between neighbours",
                            2.0 * radius
                        ),
                    ));
                }
                let (w, h) = width_height(pitch)?;
                let mut p = Probe::convex_ustb(n, pitch, radius, w, h);
                p.name = name;
                p
            }
            ("uff.matrix_array" | "uff.curvilinear_matrix_array", Some(elements)) => {
                Probe { name, kind: ProbeKind::Generic, elements }
            }
            (_, Some(elements)) => {
                let mut p = Probe { name, kind: ProbeKind::Generic, elements };
                p.detect_convex();
                p
            }
            (_, None) => {
                return Err(self.missing(
                    &format!("{ppath}/geometry"),
                    format!("the element geometry [7][N] (x, y, z, theta, phi, width, height) of this {class}"),
                ))
            }
        };
        if probe.name.is_empty() {
            probe.name = "probe".into();
        }
        if let Some(n) = n_field {
            if n != probe.len() {
                return Err(self.invalid(
                    &format!("{ppath}/N"),
                    format!(
                        "is {n} but {ppath}/geometry has {} elements, expected them to agree",
                        probe.len()
                    ),
                ));
            }
        }
        Ok(probe)
    }

    /// `probe/geometry` as elements, or `None` when the probe has none.
    fn geometry(
        &self,
        g: &Group,
        ppath: &str,
        n_field: Option<usize>,
    ) -> Result<Option<Vec<Element>>, UffError> {
        let gpath = format!("{ppath}/geometry");
        if self.kind(g, "geometry").is_none() {
            return Ok(None);
        }
        let expected = "element geometry [7][N]: x, y, z, theta, phi, width, height";
        let ds = self.dataset(g, ppath, "geometry", expected)?;
        self.ensure_numeric(&ds, &gpath, expected)?;
        let shape = ds.shape();
        let raw: Vec<f64> = ds.read_raw().map_err(|e| self.hdf5(&gpath, e))?;
        if raw.is_empty() {
            return Ok(None);
        }
        let (a, b) = match shape.as_slice() {
            [a, b] => (*a, *b),
            // A single element written by a numpy user.
            [k] if (3..=7).contains(k) => (*k, 1),
            _ => {
                return Err(
                    self.invalid(&gpath, format!("has shape {shape:?}, expected {expected}"))
                )
            }
        };
        let rows_ok = |k: usize| (3..=7).contains(&k);
        // `transposed`: HDF5 [N][k] rather than USTB's [k][N].
        let transposed = match (rows_ok(a), rows_ok(b)) {
            (true, false) => false,
            (false, true) => true,
            (true, true) if a == b => false,
            (true, true) => {
                let by_n = n_field.map(|n| (b == n, a == n));
                match by_n {
                    Some((true, false)) => false,
                    Some((false, true)) => true,
                    _ if a == 7 => false,
                    _ if b == 7 => true,
                    _ => {
                        return Err(self.invalid(
                            &gpath,
                            format!("has shape {shape:?}, which could be either [k][N] or [N][k]: expected {expected}"),
                        ))
                    }
                }
            }
            (false, false) => {
                return Err(
                    self.invalid(&gpath, format!("has shape {shape:?}, expected {expected}"))
                )
            }
        };
        let (k, n) = if transposed { (b, a) } else { (a, b) };
        let at = |row: usize, e: usize| -> f64 {
            if row >= k {
                0.0
            } else if transposed {
                raw[e * k + row]
            } else {
                raw[row * n + e]
            }
        };
        let mut elements = Vec::with_capacity(n);
        for e in 0..n {
            let v: [f64; 7] = std::array::from_fn(|r| at(r, e));
            if v.iter().any(|x| !x.is_finite()) {
                return Err(self.invalid(
                    &gpath,
                    format!("element {e} has a non-finite value {v:?}, expected finite metres and radians"),
                ));
            }
            elements.push(Element {
                position: DVec3::new(v[0], v[1], v[2]),
                azimuth: v[3],
                width: v[5],
                height: v[6],
            });
        }
        Ok(Some(elements))
    }

    /// The waves of `sequence`, and the first wave's sound speed if any.
    fn sequence(&self, cd: &Group, base: &str) -> Result<(Vec<Wave>, Option<f64>), UffError> {
        let spath = format!("{base}/sequence");
        let g = self.group(
            cd,
            base,
            "sequence",
            "a group of uff.wave (sequence_0001, ...)",
        )?;
        let names = g.member_names().map_err(|e| self.hdf5(&spath, e))?;
        let mut entries: Vec<(usize, String)> = names
            .iter()
            .filter_map(|m| {
                let digits = m.strip_prefix("sequence_")?;
                if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                    return None;
                }
                Some((digits.parse().ok()?, m.clone()))
            })
            .collect();
        entries.sort();

        if entries.is_empty() {
            if g.link_exists("source") || g.link_exists("wavefront") {
                // A sequence of one wave: USTB writes its fields in place.
                let (wave, c) = self.wave(&g, &spath)?;
                return Ok((vec![wave], c));
            }
            return Err(self.missing(
                &format!("{spath}/sequence_0001"),
                "at least one uff.wave in the sequence",
            ));
        }
        for (i, (index, name)) in entries.iter().enumerate() {
            if *index != i + 1 {
                return Err(self.invalid(
                    &format!("{spath}/{name}"),
                    format!("is entry {} of the sequence, expected sequence_{:04}: the numbering must run 1, 2, 3, ... without gaps", i + 1, i + 1),
                ));
            }
        }
        if let Some(size) = size_attr(&g) {
            let count = size.iter().fold(1u64, |a, &d| a.saturating_mul(d));
            if count != entries.len() as u64 {
                return Err(self.invalid(
                    &spath,
                    format!("has attribute size = {size:?} ({count} waves) but {} sequence_NNNN groups, expected them to agree", entries.len()),
                ));
            }
        }
        let mut waves = Vec::with_capacity(entries.len());
        let mut speed = None;
        for (_, name) in &entries {
            let wpath = format!("{spath}/{name}");
            let wg = self.group(&g, &spath, name, "a uff.wave group")?;
            let (wave, c) = self.wave(&wg, &wpath)?;
            speed = speed.or(c);
            waves.push(wave);
        }
        Ok((waves, speed))
    }

    fn wave(&self, g: &Group, wpath: &str) -> Result<(Wave, Option<f64>), UffError> {
        let src_path = format!("{wpath}/source");
        let src = self.group(
            g,
            wpath,
            "source",
            "a uff.point (distance, azimuth, elevation)",
        )?;
        let azimuth = self.scalar(&src, &src_path, "azimuth", "the source azimuth in rad")?;
        let distance = self.scalar(
            &src,
            &src_path,
            "distance",
            "the source distance in m (inf for a plane wave)",
        )?;
        let elevation = self
            .opt_scalar(&src, &src_path, "elevation", "the source elevation in rad")?
            .unwrap_or(0.0);
        for (field, v) in [("azimuth", azimuth), ("elevation", elevation)] {
            if !v.is_finite() {
                return Err(self.invalid(
                    &format!("{src_path}/{field}"),
                    format!("is {v}, expected a finite angle in rad"),
                ));
            }
        }
        if distance.is_nan() || distance < 0.0 {
            return Err(self.invalid(
                &format!("{src_path}/distance"),
                format!(
                    "is {distance}, expected a non-negative distance in m (inf for a plane wave)"
                ),
            ));
        }

        let wf_path = format!("{wpath}/wavefront");
        let wavefront = self.opt_scalar(
            g,
            wpath,
            "wavefront",
            "the USTB wavefront (0 plane, 1 spherical)",
        )?;
        let plane = match wavefront {
            Some(0.0) => true,
            Some(1.0) => false,
            Some(2.0) => {
                return Err(self.invalid(&wf_path, "is 2 (photoacoustic), expected 0 (plane) or 1 (spherical): photoacoustic data cannot be beamformed here"))
            }
            Some(v) => return Err(self.invalid(&wf_path, format!("is {v}, expected 0 (plane) or 1 (spherical)"))),
            // USTB marks a plane wave by an infinitely distant source.
            None => distance.is_infinite(),
        };

        let wavefront = if plane {
            if elevation != 0.0 {
                return Err(self.invalid(
                    &format!("{src_path}/elevation"),
                    format!("is {elevation}, expected 0: plane waves steered in elevation are not supported"),
                ));
            }
            Wavefront::Plane { azimuth }
        } else {
            if !distance.is_finite() {
                return Err(self.invalid(
                    &format!("{src_path}/distance"),
                    format!("is {distance} for a spherical wave ({wf_path} = 1), expected a finite distance in m"),
                ));
            }
            let p = DVec3::new(
                distance * azimuth.sin() * elevation.cos(),
                distance * elevation.sin(),
                distance * azimuth.cos() * elevation.cos(),
            );
            // USTB: a source behind z = 0 diverges, anything else converges.
            if p.z < 0.0 {
                Wavefront::Diverging { source: p }
            } else {
                Wavefront::Focused { focus: p }
            }
        };

        let delay = self
            .opt_scalar(g, wpath, "delay", "the wave delay in s")?
            .unwrap_or(0.0);
        if !delay.is_finite() {
            return Err(self.invalid(
                &format!("{wpath}/delay"),
                format!("is {delay}, expected a finite delay in s"),
            ));
        }
        let c = self.opt_scalar(g, wpath, "sound_speed", "the reference sound speed in m/s")?;
        Ok((Wave { wavefront, delay }, c))
    }

    /// Where the samples are and their shape (frames, waves, channels,
    /// samples), found without reading them.
    fn layout(&self, cd: &Group, base: &str) -> Result<(Layout, [usize; 4]), UffError> {
        let dpath = format!("{base}/data");
        let expected =
            "channel data [frame][wave][channel][time]: a float dataset (RF) or a group with real and imag (IQ)";
        match self.kind(cd, "data") {
            None => Err(self.missing(&dpath, expected)),
            Some(LocationType::Group) => {
                let g = cd.group("data").map_err(|e| self.hdf5(&dpath, e))?;
                let re_expected = "the real part of the IQ data";
                let im_expected = "the imaginary part of the IQ data";
                let re = self.dataset(&g, &dpath, "real", re_expected)?;
                let im = self.dataset(&g, &dpath, "imag", im_expected)?;
                let (re_path, im_path) = (format!("{dpath}/real"), format!("{dpath}/imag"));
                self.ensure_numeric(&re, &re_path, re_expected)?;
                self.ensure_numeric(&im, &im_path, im_expected)?;
                let shape = re.shape();
                if im.shape() != shape {
                    return Err(self.invalid(
                        &im_path,
                        format!(
                            "has shape {:?} but {re_path} has {shape:?}, expected equal shapes",
                            im.shape()
                        ),
                    ));
                }
                let dims = self.dims(&re_path, &shape)?;
                Ok((Layout::Split { re, im }, dims))
            }
            Some(LocationType::Dataset) => {
                let ds = cd.dataset("data").map_err(|e| self.hdf5(&dpath, e))?;
                let dims = self.dims(&dpath, &ds.shape())?;
                let td = ds
                    .dtype()
                    .and_then(|t| t.to_descriptor())
                    .map_err(|e| self.hdf5(&dpath, e))?;
                match &td {
                    TypeDescriptor::Integer(_)
                    | TypeDescriptor::Unsigned(_)
                    | TypeDescriptor::Float(_) => Ok((Layout::Real(ds), dims)),
                    TypeDescriptor::Compound(c) => {
                        let names: Vec<&str> = c.fields.iter().map(|f| f.name.as_str()).collect();
                        match names.as_slice() {
                            ["r", "i"] => Ok((Layout::CompoundRI(ds), dims)),
                            ["real", "imag"] => Ok((Layout::CompoundRealImag(ds), dims)),
                            _ => Err(self.invalid(
                                &dpath,
                                format!("is a compound dataset with members {names:?}, expected {expected} (or a compound r, i)"),
                            )),
                        }
                    }
                    other => Err(self.invalid(
                        &dpath,
                        format!("has HDF5 type {other}, expected {expected}"),
                    )),
                }
            }
            Some(_) => Err(self.invalid(
                &dpath,
                format!("is neither a dataset nor a group, expected {expected}"),
            )),
        }
    }

    /// Read the samples, converted to `f32`, in HDF5 (= sonoguide) order.
    fn read_samples(
        &self,
        layout: Layout,
        base: &str,
        dims: [usize; 4],
    ) -> Result<Samples, UffError> {
        let dpath = format!("{base}/data");
        let total = dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|&n| n.checked_mul(8).is_some_and(|b| b <= isize::MAX as usize))
            .ok_or_else(|| {
                self.invalid(
                    &dpath,
                    format!("has dimensions {dims:?}, too large to hold in memory"),
                )
            })?;
        let count = |n: usize| -> Result<(), UffError> {
            if n == total {
                Ok(())
            } else {
                Err(self.invalid(&dpath, format!("read {n} samples, expected {total}")))
            }
        };
        match layout {
            Layout::Real(ds) => {
                let v: Vec<f32> = ds.read_raw().map_err(|e| self.hdf5(&dpath, e))?;
                count(v.len())?;
                Ok(Samples::Rf(v))
            }
            Layout::CompoundRI(ds) => {
                let v = ds
                    .read_raw::<ComplexRI>()
                    .map_err(|e| self.hdf5(&dpath, e))?;
                count(v.len())?;
                Ok(Samples::Iq(v.into_iter().map(|c| [c.r, c.i]).collect()))
            }
            Layout::CompoundRealImag(ds) => {
                let v = ds
                    .read_raw::<ComplexRealImag>()
                    .map_err(|e| self.hdf5(&dpath, e))?;
                count(v.len())?;
                Ok(Samples::Iq(
                    v.into_iter().map(|c| [c.real, c.imag]).collect(),
                ))
            }
            Layout::Split { re, im } => {
                // One part at a time, to keep the peak memory at 1.5 × the result.
                let real: Vec<f32> = re
                    .read_raw()
                    .map_err(|e| self.hdf5(&format!("{dpath}/real"), e))?;
                count(real.len())?;
                let mut iq: Vec<[f32; 2]> = real.iter().map(|&r| [r, 0.0]).collect();
                drop(real);
                let imag: Vec<f32> = im
                    .read_raw()
                    .map_err(|e| self.hdf5(&format!("{dpath}/imag"), e))?;
                count(imag.len())?;
                for (s, i) in iq.iter_mut().zip(imag) {
                    s[1] = i;
                }
                Ok(Samples::Iq(iq))
            }
        }
    }

    /// (frames, waves, channels, samples) from the HDF5 shape.
    fn dims(&self, path: &str, shape: &[usize]) -> Result<[usize; 4], UffError> {
        let d = match *shape {
            [c, t] => [1, 1, c, t],
            [w, c, t] => [1, w, c, t],
            [f, w, c, t] => [f, w, c, t],
            _ => {
                return Err(self.invalid(
                    path,
                    format!("has shape {shape:?}, expected 2 to 4 HDF5 dimensions [frame][wave][channel][time] (MATLAB time × channel × wave × frame)"),
                ))
            }
        };
        if d.contains(&0) {
            return Err(self.invalid(
                path,
                format!("has shape {shape:?} with an empty dimension, expected samples"),
            ));
        }
        Ok(d)
    }
}

/// Where the samples of `data` live.
enum Layout {
    /// RF: one numeric dataset.
    Real(Dataset),
    /// IQ as USTB writes it: a group with `real` and `imag`.
    Split {
        re: Dataset,
        im: Dataset,
    },
    /// IQ as h5py writes numpy complex: compound `r`, `i`.
    CompoundRI(Dataset),
    CompoundRealImag(Dataset),
}

#[derive(hdf5::H5Type, Clone, Copy)]
#[repr(C)]
struct ComplexRI {
    r: f32,
    i: f32,
}

#[derive(hdf5::H5Type, Clone, Copy)]
#[repr(C)]
struct ComplexRealImag {
    real: f32,
    imag: f32,
}

/// The `class` attribute of a UFF object, whatever string type the writer
/// used (pyuff-ustb: variable-length UTF-8; MATLAB: fixed-length ASCII).
fn class_of(loc: &Location) -> Option<String> {
    string_attr(loc, "class")
}

fn string_attr(loc: &Location, name: &str) -> Option<String> {
    let attr = loc.attr(name).ok()?;
    let td = attr.dtype().ok()?.to_descriptor().ok()?;
    let s = match td {
        TypeDescriptor::VarLenUnicode => attr
            .read_raw::<VarLenUnicode>()
            .ok()?
            .first()?
            .as_str()
            .to_string(),
        TypeDescriptor::VarLenAscii => attr
            .read_raw::<VarLenAscii>()
            .ok()?
            .first()?
            .as_str()
            .to_string(),
        TypeDescriptor::FixedAscii(_) => attr
            .read_raw::<FixedAscii<1024>>()
            .ok()?
            .first()?
            .as_str()
            .to_string(),
        TypeDescriptor::FixedUnicode(_) => attr
            .read_raw::<FixedUnicode<1024>>()
            .ok()?
            .first()?
            .as_str()
            .to_string(),
        // MATLAB char arrays stored as numbers.
        TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) => attr
            .read_raw::<u32>()
            .ok()?
            .into_iter()
            .filter_map(char::from_u32)
            .collect(),
        _ => return None,
    };
    Some(s.trim_end_matches(['\0', ' ']).to_string())
}

/// A MATLAB char array stored as integers (pyuff-ustb: uint16 `(n, 1)`),
/// or `None` when `name` is absent or not such an array.
fn char_dataset(g: &Group, name: &str) -> Option<String> {
    if !g.link_exists(name) || !matches!(g.loc_type_by_name(name), Ok(LocationType::Dataset)) {
        return None;
    }
    let ds = g.dataset(name).ok()?;
    let td = ds.dtype().ok()?.to_descriptor().ok()?;
    if !matches!(td, TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_)) || ds.size() > 4096 {
        return None;
    }
    let units: Vec<u16> = ds.read_raw().ok()?;
    Some(String::from_utf16_lossy(&units))
}

/// The `size` attribute of a UFF array (MATLAB `size(object)`).
fn size_attr(loc: &Location) -> Option<Vec<u64>> {
    let attr = loc.attr("size").ok()?;
    let v: Vec<f64> = attr.read_raw().ok()?;
    if v.is_empty() || v.iter().any(|x| !x.is_finite() || *x < 0.0) {
        return None;
    }
    Some(v.into_iter().map(|x| x as u64).collect())
}

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

/// Write `data` as `/channel_data` of a new UFF file at `path`, in the layout
/// pyuff-ustb writes (and [`read_uff`], pyuff-ustb and USTB read):
///
/// * every group carries `class`, `name`, `array` and `size`, every numeric
///   dataset `class = "single"`, `name`, `complex` and `imaginary`, as
///   pyuff-ustb's `write_object` does; strings are variable-length UTF-8;
/// * `data` is HDF5 `[frame][wave][channel][sample]` (MATLAB's transpose),
///   without the frame dimension when there is one frame; IQ data is a group
///   of `real` and `imag` float32 datasets;
/// * a linear probe on a regular grid is a `uff.linear_array` (geometry, `N`,
///   `pitch`, element size); any other probe is a generic `uff.probe` with
///   explicit `geometry` `[7][N]`, whose kind the reader recovers with
///   [`Probe::detect_convex`] (a convex arc is recognised; a phased array
///   is not told apart from other flat ones). The probe's name goes into a
///   `name` char dataset, USTB's own field;
/// * `sequence` holds `sequence_0001`, ... (`array = 1`, `size = [1, n]`),
///   except that a single wave is written in place of the sequence, as USTB
///   does: pyuff-ustb decides list or object from `size`, and reads a
///   one-entry list as the group itself.
///
/// The file appears whole or not at all: it is written to a temporary file
/// in the same directory and renamed over `path`; on any error the
/// temporary is removed and an existing `path` is left untouched. Data the
/// format cannot carry faithfully (a diverging source in front of the
/// array, RF data with a modulation frequency, ...) is refused up front.
pub fn write_uff(path: &Path, data: &ChannelData) -> Result<(), UffError> {
    let w = Out {
        file: path.display().to_string(),
    };
    w.check(data)?;
    hdf5::silence_errors(true);
    let tmp = TempFile::beside(path).map_err(|e| w.io(e))?;
    let file = File::create(tmp.path()).map_err(|e| w.h5("/", e))?;
    w.channel_data(&file, data)?;
    file.close().map_err(|e| w.h5("/", e))?;
    tmp.commit().map_err(|e| w.io(e))
}

/// The target file named in every message, and the HDF5 writing helpers.
struct Out {
    file: String,
}

const CD: &str = "/channel_data";

impl Out {
    fn io(&self, e: std::io::Error) -> UffError {
        UffError::Write {
            file: self.file.clone(),
            detail: e.to_string(),
        }
    }

    fn h5(&self, path: &str, e: hdf5::Error) -> UffError {
        UffError::Hdf5Write {
            file: self.file.clone(),
            path: path.to_string(),
            detail: e.to_string(),
        }
    }

    fn refuse(&self, path: &str, problem: impl Into<String>) -> UffError {
        UffError::Invalid {
            file: self.file.clone(),
            path: path.to_string(),
            problem: problem.into(),
        }
    }

    /// Refuse what the readers would reject or read back as something else.
    fn check(&self, cd: &ChannelData) -> Result<(), UffError> {
        cd.validate().map_err(|source| UffError::Acquisition {
            file: self.file.clone(),
            group: CD.to_string(),
            source,
        })?;
        let a = &cd.acquisition;
        if !cd.is_iq() && a.modulation_frequency != 0.0 {
            return Err(self.refuse(
                &format!("{CD}/modulation_frequency"),
                format!(
                    "is {} for RF data, expected 0 (only IQ data is demodulated)",
                    a.modulation_frequency
                ),
            ));
        }
        if !(0.0..=2.0).contains(&a.bandwidth) {
            return Err(self.refuse(
                &format!("{CD}/pulse/fractional_bandwidth"),
                format!(
                    "would be {}, expected a fraction from 0 to 2 (0.77 for 77 %)",
                    a.bandwidth
                ),
            ));
        }
        if !a.prf.is_finite() || a.prf < 0.0 {
            return Err(self.refuse(
                &format!("{CD}/PRF"),
                format!("would be {}, expected a non-negative rate in Hz", a.prf),
            ));
        }
        if let Some(e) = a
            .probe
            .elements
            .iter()
            .position(|e| !(e.width.is_finite() && e.height.is_finite()))
        {
            return Err(self.refuse(
                &format!("{CD}/probe/geometry"),
                format!("element {e} has a non-finite width or height"),
            ));
        }
        for (i, wave) in a.waves.iter().enumerate() {
            self.check_wave(&wave_path(i, a.waves.len()), &wave.wavefront)?;
        }
        Ok(())
    }

    /// USTB tells diverging from focused by the side of z = 0 the source is
    /// on; a wave on the wrong side would come back as the other kind.
    fn check_wave(&self, wpath: &str, wavefront: &Wavefront) -> Result<(), UffError> {
        let problem = match *wavefront {
            Wavefront::Diverging { source } if source.z >= 0.0 => format!(
                "is a diverging wave from z = {} m: UFF makes a spherical wave diverging only when its source is behind the array (z < 0), so it would read back as focused",
                source.z
            ),
            Wavefront::Focused { focus } if focus.z < 0.0 => format!(
                "is a focused wave on z = {} m: UFF makes a spherical wave with its source behind the array (z < 0) diverging, so it would read back as diverging",
                focus.z
            ),
            _ => return Ok(()),
        };
        Err(self.refuse(&format!("{wpath}/source"), problem))
    }

    fn channel_data(&self, file: &File, cd: &ChannelData) -> Result<(), UffError> {
        let a = &cd.acquisition;
        let g = self.object(file, "", "channel_data", "uff.channel_data")?;
        self.scalar(&g, CD, "sampling_frequency", a.sampling_frequency)?;
        self.scalar(&g, CD, "initial_time", a.initial_time)?;
        self.scalar(&g, CD, "sound_speed", a.sound_speed)?;
        self.scalar(&g, CD, "modulation_frequency", a.modulation_frequency)?;
        self.scalar(&g, CD, "PRF", a.prf)?;
        self.integer(&g, CD, "N_active_elements", cd.channels as i64)?;
        self.probe(&g, &a.probe)?;
        self.pulse(&g, a)?;
        self.sequence(&g, &a.waves, a.sound_speed)?;
        self.samples(&g, cd)
    }

    fn probe(&self, cd: &Group, probe: &Probe) -> Result<(), UffError> {
        let ppath = format!("{CD}/probe");
        let regular = regular_linear(probe);
        let class = if regular.is_some() {
            "uff.linear_array"
        } else {
            "uff.probe"
        };
        let g = self.object(cd, CD, "probe", class)?;
        if let Some((pitch, width, height)) = regular {
            self.integer(&g, &ppath, "N", probe.len() as i64)?;
            self.scalar(&g, &ppath, "pitch", pitch)?;
            self.scalar(&g, &ppath, "element_width", width)?;
            self.scalar(&g, &ppath, "element_height", height)?;
        }
        let n = probe.len();
        let mut geometry = vec![0.0f64; 7 * n];
        for (e, el) in probe.elements.iter().enumerate() {
            // Rows x, y, z, theta, phi, width, height; phi (elevation tilt) is 0.
            for (row, v) in [
                el.position.x,
                el.position.y,
                el.position.z,
                el.azimuth,
                0.0,
                el.width,
                el.height,
            ]
            .into_iter()
            .enumerate()
            {
                geometry[row * n + e] = v;
            }
        }
        self.numeric(&g, &ppath, "geometry", &[7, n], &geometry)?;
        self.point(&g, &ppath, "origin", [0.0; 3])?;
        if !probe.name.is_empty() {
            self.chars(&g, &ppath, "name", &probe.name)?;
        }
        Ok(())
    }

    fn pulse(&self, cd: &Group, a: &Acquisition) -> Result<(), UffError> {
        let ppath = format!("{CD}/pulse");
        let g = self.object(cd, CD, "pulse", "uff.pulse")?;
        self.scalar(&g, &ppath, "center_frequency", a.center_frequency)?;
        self.scalar(&g, &ppath, "fractional_bandwidth", a.bandwidth)?;
        self.scalar(&g, &ppath, "phase", 0.0)?;
        // The transmitted waveform is not known here; a [0] placeholder as
        // in the reference files keeps pyuff-ustb's compulsory fields set.
        self.numeric(&g, &ppath, "waveform", &[1], &[0.0f64])
    }

    fn sequence(&self, cd: &Group, waves: &[Wave], c: f64) -> Result<(), UffError> {
        let spath = format!("{CD}/sequence");
        if let [wave] = waves {
            let g = self.object(cd, CD, "sequence", "uff.wave")?;
            return self.wave(&g, &spath, wave, c);
        }
        let g = self.group(cd, &spath, "sequence")?;
        self.object_attrs(&g, &spath, "sequence", "uff.wave", [1, waves.len() as i64])?;
        for (i, wave) in waves.iter().enumerate() {
            let name = format!("sequence_{:04}", i + 1);
            let wg = self.object(&g, &spath, &name, "uff.wave")?;
            self.wave(&wg, &format!("{spath}/{name}"), wave, c)?;
        }
        Ok(())
    }

    fn wave(&self, g: &Group, wpath: &str, wave: &Wave, c: f64) -> Result<(), UffError> {
        let (kind, source): (i64, [f64; 3]) = match wave.wavefront {
            Wavefront::Plane { azimuth } => (0, [azimuth, f64::INFINITY, 0.0]),
            Wavefront::Diverging { source: p } | Wavefront::Focused { focus: p } => {
                (1, spherical(p))
            }
        };
        // USTB's enumeration: a (1, 1) int64 tagged with its enum class.
        let ds = g
            .new_dataset::<i64>()
            .shape([1, 1])
            .create("wavefront")
            .and_then(|ds| ds.write_raw(&[kind][..]).map(|_| ds))
            .map_err(|e| self.h5(&format!("{wpath}/wavefront"), e))?;
        self.tag(
            &ds,
            &format!("{wpath}/wavefront"),
            "uff.wavefront",
            "wavefront",
        )?;
        self.point(g, wpath, "source", source)?;
        self.point(g, wpath, "origin", [0.0; 3])?;
        self.scalar(g, wpath, "delay", wave.delay)?;
        self.scalar(g, wpath, "sound_speed", c)
    }

    /// A `uff.point` from (azimuth, distance, elevation).
    fn point(
        &self,
        parent: &Group,
        ppath: &str,
        name: &str,
        [azimuth, distance, elevation]: [f64; 3],
    ) -> Result<(), UffError> {
        let path = format!("{ppath}/{name}");
        let g = self.object(parent, ppath, name, "uff.point")?;
        self.scalar(&g, &path, "azimuth", azimuth)?;
        self.scalar(&g, &path, "distance", distance)?;
        self.scalar(&g, &path, "elevation", elevation)
    }

    fn samples(&self, cd: &Group, data: &ChannelData) -> Result<(), UffError> {
        let mut shape = vec![data.frames, data.waves, data.channels, data.samples];
        if data.frames == 1 {
            shape.remove(0);
        }
        let dpath = format!("{CD}/data");
        match &data.data {
            Samples::Rf(v) => self.numeric(cd, CD, "data", &shape, v),
            Samples::Iq(v) => {
                let g = self.group(cd, &dpath, "data")?;
                self.tag(&g, &dpath, "single", "data")?;
                self.flags(&g, &dpath, &[("complex", 1), ("imaginary", 0)])?;
                // One part at a time, to keep the peak memory at 1.5 × the data.
                let real: Vec<f32> = v.iter().map(|s| s[0]).collect();
                self.part(&g, &dpath, "real", &shape, &real, 0)?;
                drop(real);
                let imag: Vec<f32> = v.iter().map(|s| s[1]).collect();
                self.part(&g, &dpath, "imag", &shape, &imag, 1)
            }
        }
    }

    /// `real` or `imag` of complex data: pyuff-ustb names both `data`.
    fn part(
        &self,
        g: &Group,
        dpath: &str,
        name: &str,
        shape: &[usize],
        v: &[f32],
        imaginary: i64,
    ) -> Result<(), UffError> {
        let path = format!("{dpath}/{name}");
        let ds = self.dataset(g, &path, name, shape, v)?;
        self.tag(&ds, &path, "single", "data")?;
        self.flags(&ds, &path, &[("imaginary", imaginary)])
    }

    fn group(&self, parent: &Group, path: &str, name: &str) -> Result<Group, UffError> {
        parent.create_group(name).map_err(|e| self.h5(path, e))
    }

    /// A group for a UFF object of class `class`, one object (not an array).
    fn object(
        &self,
        parent: &Group,
        ppath: &str,
        name: &str,
        class: &str,
    ) -> Result<Group, UffError> {
        let path = format!("{ppath}/{name}");
        let g = self.group(parent, &path, name)?;
        self.object_attrs(&g, &path, name, class, [1, 1])?;
        Ok(g)
    }

    fn object_attrs(
        &self,
        g: &Group,
        path: &str,
        name: &str,
        class: &str,
        size: [i64; 2],
    ) -> Result<(), UffError> {
        self.tag(g, path, class, name)?;
        let array = i64::from(size != [1, 1]);
        let r = g
            .new_attr::<i64>()
            .shape([1])
            .create("array")
            .and_then(|a| a.write_raw(&[array][..]));
        r.and_then(|_| {
            g.new_attr::<i64>()
                .shape([2])
                .create("size")
                .and_then(|a| a.write_raw(&size[..]))
        })
        .map_err(|e| self.h5(path, e))
    }

    /// The `class` and `name` attributes every UFF object carries.
    fn tag(&self, loc: &Location, path: &str, class: &str, name: &str) -> Result<(), UffError> {
        for (attr, value) in [("class", class), ("name", name)] {
            let s: VarLenUnicode = value
                .parse()
                .map_err(|e| self.h5(path, hdf5::Error::from(format!("{e}"))))?;
            let a = loc
                .new_attr::<VarLenUnicode>()
                .create(attr)
                .map_err(|e| self.h5(path, e))?;
            a.write_scalar(&s).map_err(|e| self.h5(path, e))?;
        }
        Ok(())
    }

    /// pyuff-ustb's `complex`/`imaginary` markers: int64 arrays of one.
    fn flags(&self, loc: &Location, path: &str, flags: &[(&str, i64)]) -> Result<(), UffError> {
        for &(attr, v) in flags {
            let a = loc
                .new_attr::<i64>()
                .shape([1])
                .create(attr)
                .map_err(|e| self.h5(path, e))?;
            a.write_raw(&[v][..]).map_err(|e| self.h5(path, e))?;
        }
        Ok(())
    }

    fn dataset<T: hdf5::H5Type>(
        &self,
        g: &Group,
        path: &str,
        name: &str,
        shape: &[usize],
        v: &[T],
    ) -> Result<Dataset, UffError> {
        let ds = g
            .new_dataset::<T>()
            .shape(shape.to_vec())
            .create(name)
            .map_err(|e| self.h5(path, e))?;
        ds.write_raw(v).map_err(|e| self.h5(path, e))?;
        Ok(ds)
    }

    /// A real numeric array with pyuff-ustb's attributes.
    fn numeric<T: hdf5::H5Type>(
        &self,
        g: &Group,
        ppath: &str,
        name: &str,
        shape: &[usize],
        v: &[T],
    ) -> Result<(), UffError> {
        let path = format!("{ppath}/{name}");
        let ds = self.dataset(g, &path, name, shape, v)?;
        self.tag(&ds, &path, "single", name)?;
        self.flags(&ds, &path, &[("complex", 0), ("imaginary", 0)])
    }

    /// A scalar of shape `()`, as pyuff-ustb writes Python numbers.
    fn scalar(&self, g: &Group, ppath: &str, name: &str, v: f64) -> Result<(), UffError> {
        self.numeric(g, ppath, name, &[], &[v])
    }

    fn integer(&self, g: &Group, ppath: &str, name: &str, v: i64) -> Result<(), UffError> {
        self.numeric(g, ppath, name, &[], &[v])
    }

    /// A MATLAB char array as pyuff-ustb stores strings: uint16 `(n, 1)`.
    fn chars(&self, g: &Group, ppath: &str, name: &str, s: &str) -> Result<(), UffError> {
        let path = format!("{ppath}/{name}");
        let units: Vec<u16> = s.encode_utf16().collect();
        let ds = self.dataset(g, &path, name, &[units.len(), 1], &units)?;
        self.tag(&ds, &path, "char", name)
    }
}

/// HDF5 path of wave `i` of `n` as [`write_uff`] lays them out.
fn wave_path(i: usize, n: usize) -> String {
    if n == 1 {
        format!("{CD}/sequence")
    } else {
        format!("{CD}/sequence/sequence_{:04}", i + 1)
    }
}

/// (azimuth, distance, elevation) of `p`, the inverse of the reader's
/// `(d sin az cos el, d sin el, d cos az cos el)`.
fn spherical(p: DVec3) -> [f64; 3] {
    let distance = p.length();
    let elevation = if distance > 0.0 {
        (p.y / distance).clamp(-1.0, 1.0).asin()
    } else {
        0.0
    };
    [p.x.atan2(p.z), distance, elevation]
}

/// (pitch, width, height) when the probe is exactly what USTB's
/// `uff.linear_array` would rebuild from those three numbers and `N`;
/// USTB recomputes the geometry of a linear array, so anything else must be
/// written as a generic probe to keep its elements.
fn regular_linear(probe: &Probe) -> Option<(f64, f64, f64)> {
    if probe.kind != ProbeKind::Linear || probe.is_empty() {
        return None;
    }
    let first = &probe.elements[0];
    let pitch = probe.pitch();
    let rebuilt = Probe::linear(probe.len(), pitch, first.width, first.height);
    let tol = 1e-9 * pitch.max(1e-9);
    let same = probe.elements.iter().zip(&rebuilt.elements).all(|(a, b)| {
        (a.position - b.position).abs().max_element() <= tol
            && a.azimuth == 0.0
            && a.width == b.width
            && a.height == b.height
    });
    same.then_some((pitch, first.width, first.height))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdf5::H5Type;
    use std::path::PathBuf;

    /// `../shared/data/pymust-sim` beside the project, if present.
    fn pymust_sim() -> Option<PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/pymust-sim");
        if dir.is_dir() {
            Some(dir)
        } else {
            eprintln!("skipping: reference data {} not present", dir.display());
            None
        }
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1e-30)
    }

    /// Equal to the 6 significant digits h5dump prints.
    fn near(a: f32, b: f64) -> bool {
        close(a as f64, b, 1e-5)
    }

    fn rf(cd: &ChannelData) -> &[f32] {
        match &cd.data {
            Samples::Rf(v) => v,
            Samples::Iq(_) => panic!("expected RF"),
        }
    }

    fn iq(cd: &ChannelData) -> &[[f32; 2]] {
        match &cd.data {
            Samples::Iq(v) => v,
            Samples::Rf(_) => panic!("expected IQ"),
        }
    }

    /// Index of (frame, wave, channel, sample).
    fn at(cd: &ChannelData, f: usize, w: usize, c: usize, s: usize) -> usize {
        ((f * cd.waves + w) * cd.channels + c) * cd.samples + s
    }

    #[test]
    fn reads_l11_plane_waves() {
        let Some(dir) = pymust_sim() else { return };
        for kind in ["rf", "iq"] {
            let path = dir.join(format!("L11-5v_pw7/L11-5v_pw7_{kind}.uff"));
            let cd = read_uff(&path).unwrap();
            assert_eq!(
                (cd.frames, cd.waves, cd.channels, cd.samples),
                (1, 7, 128, 2058)
            );
            let a = &cd.acquisition;
            assert_eq!(a.probe.kind, ProbeKind::Linear);
            assert_eq!(a.probe.len(), 128);
            assert!(close(a.probe.elements[0].position.x, -0.01905, 1e-5));
            assert!(close(a.probe.pitch(), 0.0003, 1e-6));
            assert!(close(a.probe.elements[0].width, 0.00027, 1e-5));
            assert_eq!(a.sampling_frequency, 30.4e6);
            assert_eq!(a.initial_time, 0.0);
            assert_eq!(a.sound_speed, 1540.0);
            assert_eq!(a.center_frequency, 7.6e6);
            assert!(close(a.bandwidth, 0.77, 1e-12));
            assert_eq!(a.prf, 1000.0);
            assert_eq!(a.waves.len(), 7);
            match a.waves[0].wavefront {
                Wavefront::Plane { azimuth } => {
                    assert!(close(azimuth, -0.20944, 1e-5), "{azimuth}")
                }
                ref w => panic!("wave 0 is {w:?}"),
            }
            assert!(
                close(a.waves[0].delay, -2.57189e-06, 1e-5),
                "{}",
                a.waves[0].delay
            );
            match a.waves[3].wavefront {
                Wavefront::Plane { azimuth } => assert!(azimuth.abs() < 1e-12),
                ref w => panic!("wave 3 is {w:?}"),
            }
            // Samples cross-checked with h5dump.
            if kind == "rf" {
                assert!(!cd.is_iq());
                assert_eq!(a.modulation_frequency, 0.0);
                let v = rf(&cd);
                assert!(
                    near(v[at(&cd, 0, 0, 0, 0)], 0.932459),
                    "{}",
                    v[at(&cd, 0, 0, 0, 0)]
                );
                assert!(
                    near(v[at(&cd, 0, 0, 0, 1)], -0.585642),
                    "{}",
                    v[at(&cd, 0, 0, 0, 1)]
                );
                assert!(
                    near(v[at(&cd, 0, 0, 1, 1)], 1.49261),
                    "{}",
                    v[at(&cd, 0, 0, 1, 1)]
                );
                assert!(
                    near(v[at(&cd, 0, 3, 64, 1000)], 218.816),
                    "{}",
                    v[at(&cd, 0, 3, 64, 1000)]
                );
                assert!(
                    near(v[at(&cd, 0, 3, 64, 1002)], 57.2133),
                    "{}",
                    v[at(&cd, 0, 3, 64, 1002)]
                );
            } else {
                assert!(cd.is_iq());
                assert_eq!(a.modulation_frequency, 7.6e6);
                let v = iq(&cd);
                assert!(
                    near(v[at(&cd, 0, 0, 0, 0)][0], 1.86389),
                    "{}",
                    v[at(&cd, 0, 0, 0, 0)][0]
                );
                assert!(
                    near(v[at(&cd, 0, 3, 64, 1000)][0], 7842.55)
                        && near(v[at(&cd, 0, 3, 64, 1000)][1], -3282.7),
                    "{:?}",
                    v[at(&cd, 0, 3, 64, 1000)]
                );
                assert!(
                    near(v[at(&cd, 0, 3, 64, 1001)][0], 3941.83)
                        && near(v[at(&cd, 0, 3, 64, 1001)][1], -11848.8),
                    "{:?}",
                    v[at(&cd, 0, 3, 64, 1001)]
                );
                assert!(
                    near(v[at(&cd, 0, 4, 127, 2001)][0], 0.0116222)
                        && near(v[at(&cd, 0, 4, 127, 2001)][1], -0.0685845),
                    "{:?}",
                    v[at(&cd, 0, 4, 127, 2001)]
                );
            }
        }
    }

    #[test]
    fn reads_c5_diverging_waves() {
        let Some(dir) = pymust_sim() else { return };
        for kind in ["rf", "iq"] {
            let path = dir.join(format!("C5-2v_dw5/C5-2v_dw5_{kind}.uff"));
            let cd = read_uff_dataset(&path, "/channel_data").unwrap();
            assert_eq!(
                (cd.frames, cd.waves, cd.channels, cd.samples),
                (1, 5, 128, 2326)
            );
            let a = &cd.acquisition;
            match a.probe.kind {
                ProbeKind::Convex { radius, center } => {
                    assert!(close(radius, 0.04957, 1e-4), "{radius}");
                    assert!(center[0].abs() < 1e-9, "{center:?}");
                    assert!(close(center[1], -0.03944, 1e-3), "{center:?}");
                }
                ref k => panic!("probe is {k:?}"),
            }
            let e0 = &a.probe.elements[0];
            assert!(close(e0.position.x, -0.030029, 1e-5));
            assert!(close(e0.azimuth, -0.650759, 1e-6));
            assert!(close(e0.width, 0.00046, 1e-5));
            assert_eq!(a.sampling_frequency, 14.28e6);
            assert_eq!(a.center_frequency, 3.57e6);
            assert!(close(a.bandwidth, 0.79, 1e-12));
            match a.waves[0].wavefront {
                Wavefront::Diverging { source } => {
                    assert!(close(source.x, 0.01695, 1e-3), "{source}");
                    assert!(source.y.abs() < 1e-12);
                    assert!(close(source.z, -0.03645, 1e-3), "{source}");
                }
                ref w => panic!("wave 0 is {w:?}"),
            }
            assert!(close(a.waves[0].delay, -9.5833e-07, 1e-4));
            assert!(a
                .waves
                .iter()
                .all(|w| matches!(w.wavefront, Wavefront::Diverging { .. })));
            if kind == "rf" {
                let v = rf(&cd);
                assert!(
                    near(v[at(&cd, 0, 3, 64, 1000)], -540.288),
                    "{}",
                    v[at(&cd, 0, 3, 64, 1000)]
                );
                assert!(
                    near(v[at(&cd, 0, 4, 127, 2001)], 0.390234),
                    "{}",
                    v[at(&cd, 0, 4, 127, 2001)]
                );
            } else {
                assert_eq!(a.modulation_frequency, 3.57e6);
                let v = iq(&cd);
                assert!(
                    near(v[at(&cd, 0, 3, 64, 1000)][0], -32573.4)
                        && near(v[at(&cd, 0, 3, 64, 1000)][1], 3639.83),
                    "{:?}",
                    v[at(&cd, 0, 3, 64, 1000)]
                );
                assert!(
                    near(v[at(&cd, 0, 4, 127, 2000)][0], 1789.59)
                        && near(v[at(&cd, 0, 4, 127, 2000)][1], -1568.03),
                    "{:?}",
                    v[at(&cd, 0, 4, 127, 2000)]
                );
            }
        }
    }

    // ---- files written here -------------------------------------------

    /// How to lay out a synthetic UFF file.
    #[derive(Clone)]
    struct Spec {
        n: usize,
        waves: usize,
        /// `Some(f)`: 4-D data with `f` frames; `None`: 3-D (2-D for 1 wave).
        frames: Option<usize>,
        samples: usize,
        iq: bool,
        /// MATLAB style: (1, 1) scalars, fixed-length ASCII class strings,
        /// a single wave written in place, int16 samples.
        matlab: bool,
    }

    impl Default for Spec {
        fn default() -> Self {
            Spec {
                n: 4,
                waves: 3,
                frames: None,
                samples: 16,
                iq: false,
                matlab: false,
            }
        }
    }

    fn sample_value(f: usize, w: usize, c: usize, t: usize) -> f32 {
        (f * 1000 + w * 100 + c * 10 + t) as f32
    }

    fn set_class(loc: &Location, class: &str, matlab: bool) {
        if matlab {
            let s = FixedAscii::<32>::from_ascii(class.as_bytes()).unwrap();
            loc.new_attr::<FixedAscii<32>>()
                .create("class")
                .unwrap()
                .write_scalar(&s)
                .unwrap();
        } else {
            let s: VarLenUnicode = class.parse().unwrap();
            loc.new_attr::<VarLenUnicode>()
                .create("class")
                .unwrap()
                .write_scalar(&s)
                .unwrap();
        }
    }

    fn put_scalar(g: &Group, name: &str, v: f64, matlab: bool) {
        if g.link_exists(name) {
            g.unlink(name).unwrap();
        }
        if matlab {
            g.new_dataset::<f64>()
                .shape(vec![1usize, 1])
                .create(name)
                .unwrap()
                .write_raw(&[v][..])
                .unwrap();
        } else {
            g.new_dataset::<f64>()
                .create(name)
                .unwrap()
                .write_scalar(&v)
                .unwrap();
        }
    }

    fn put_array<T: H5Type>(g: &Group, name: &str, shape: &[usize], v: &[T]) {
        if g.link_exists(name) {
            g.unlink(name).unwrap();
        }
        g.new_dataset::<T>()
            .shape(shape.to_vec())
            .create(name)
            .unwrap()
            .write_raw(v)
            .unwrap();
    }

    fn write_wave(g: &Group, i: usize, n_waves: usize, matlab: bool) {
        set_class(g, "uff.wave", matlab);
        let src = g.create_group("source").unwrap();
        set_class(&src, "uff.point", matlab);
        let angle = (i as f64 - (n_waves as f64 - 1.0) / 2.0) * 0.1;
        put_scalar(&src, "azimuth", angle, matlab);
        put_scalar(&src, "distance", f64::INFINITY, matlab);
        put_scalar(&src, "elevation", 0.0, matlab);
        put_scalar(g, "wavefront", 0.0, matlab);
        put_scalar(g, "delay", -1e-6 * i as f64, matlab);
        put_scalar(g, "sound_speed", 1540.0, matlab);
    }

    /// Write a small valid file, then let `tweak` damage `/channel_data`.
    fn write_spec(path: &Path, spec: &Spec, tweak: impl FnOnce(&Group)) {
        let file = File::create(path).unwrap();
        let m = spec.matlab;
        let cd = file.create_group("channel_data").unwrap();
        set_class(&cd, "uff.channel_data", m);
        put_scalar(&cd, "sampling_frequency", 20e6, m);
        put_scalar(&cd, "initial_time", 1e-6, m);
        put_scalar(&cd, "sound_speed", 1540.0, m);
        put_scalar(
            &cd,
            "modulation_frequency",
            if spec.iq { 5e6 } else { 0.0 },
            m,
        );
        put_scalar(&cd, "PRF", 2000.0, m);

        let probe = cd.create_group("probe").unwrap();
        set_class(&probe, "uff.linear_array", m);
        put_scalar(&probe, "N", spec.n as f64, m);
        put_scalar(&probe, "pitch", 3e-4, m);
        let mut geometry = vec![0.0f64; 7 * spec.n];
        for e in 0..spec.n {
            geometry[e] = (e as f64 - (spec.n as f64 - 1.0) / 2.0) * 3e-4;
            geometry[5 * spec.n + e] = 2.7e-4;
            geometry[6 * spec.n + e] = 5e-3;
        }
        put_array(&probe, "geometry", &[7, spec.n], &geometry);

        let pulse = cd.create_group("pulse").unwrap();
        set_class(&pulse, "uff.pulse", m);
        put_scalar(&pulse, "center_frequency", 5e6, m);
        put_scalar(&pulse, "fractional_bandwidth", 0.6, m);

        let seq = cd.create_group("sequence").unwrap();
        if m && spec.waves == 1 {
            write_wave(&seq, 0, 1, m);
        } else {
            set_class(&seq, "uff.wave", m);
            for i in 0..spec.waves {
                let w = seq.create_group(&format!("sequence_{:04}", i + 1)).unwrap();
                write_wave(&w, i, spec.waves, m);
            }
        }

        let frames = spec.frames.unwrap_or(1);
        let mut values = Vec::new();
        for f in 0..frames {
            for w in 0..spec.waves {
                for c in 0..spec.n {
                    for t in 0..spec.samples {
                        values.push(sample_value(f, w, c, t));
                    }
                }
            }
        }
        let shape: Vec<usize> = match spec.frames {
            Some(f) => vec![f, spec.waves, spec.n, spec.samples],
            None if spec.waves == 1 => vec![spec.n, spec.samples],
            None => vec![spec.waves, spec.n, spec.samples],
        };
        if spec.iq {
            let g = cd.create_group("data").unwrap();
            set_class(&g, "single", m);
            put_array(&g, "real", &shape, &values);
            let imag: Vec<f32> = values.iter().map(|v| -v).collect();
            put_array(&g, "imag", &shape, &imag);
        } else if m {
            let ints: Vec<i16> = values.iter().map(|&v| v as i16).collect();
            put_array(&cd, "data", &shape, &ints);
        } else {
            put_array(&cd, "data", &shape, &values);
        }
        tweak(&cd);
    }

    fn read_spec(
        spec: &Spec,
        tweak: impl FnOnce(&Group),
    ) -> (tempfile::TempDir, Result<ChannelData, UffError>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.uff");
        write_spec(&path, spec, tweak);
        let r = read_uff(&path);
        (dir, r)
    }

    /// The error message of reading a damaged file; must name `field`.
    fn error_of(spec: &Spec, tweak: impl FnOnce(&Group), field: &str) -> String {
        let (_dir, r) = read_spec(spec, tweak);
        let msg = r.expect_err("the damaged file was accepted").to_string();
        eprintln!("{msg}");
        assert!(msg.contains(field), "error does not name {field}: {msg}");
        assert!(
            msg.contains("test.uff"),
            "error does not name the file: {msg}"
        );
        msg
    }

    #[test]
    fn synthetic_file_round_trips() {
        let spec = Spec::default();
        let (_dir, r) = read_spec(&spec, |_| {});
        let cd = r.unwrap();
        assert_eq!(
            (cd.frames, cd.waves, cd.channels, cd.samples),
            (1, 3, 4, 16)
        );
        let v = rf(&cd);
        assert_eq!(v[at(&cd, 0, 2, 3, 5)], sample_value(0, 2, 3, 5));
        let a = &cd.acquisition;
        assert_eq!(a.initial_time, 1e-6);
        assert_eq!(a.prf, 2000.0);
        assert_eq!(a.waves[2].delay, -2e-6);
        assert_eq!(a.waves[0].wavefront, Wavefront::Plane { azimuth: -0.1 });
        assert_eq!(a.probe.kind, ProbeKind::Linear);
    }

    #[test]
    fn reads_multi_frame_iq() {
        let spec = Spec {
            frames: Some(3),
            iq: true,
            ..Spec::default()
        };
        let (_dir, r) = read_spec(&spec, |_| {});
        let cd = r.unwrap();
        assert_eq!(
            (cd.frames, cd.waves, cd.channels, cd.samples),
            (3, 3, 4, 16)
        );
        let v = iq(&cd);
        for (f, w, c, t) in [(0, 0, 0, 0), (2, 1, 3, 15), (1, 2, 0, 7)] {
            let x = sample_value(f, w, c, t);
            assert_eq!(v[at(&cd, f, w, c, t)], [x, -x]);
        }
        assert_eq!(cd.acquisition.modulation_frequency, 5e6);
    }

    #[test]
    fn reads_matlab_style_single_wave() {
        // (1, 1) scalars, fixed-length ASCII classes, int16 samples,
        // one wave written in place of the sequence, 2-D data.
        let spec = Spec {
            waves: 1,
            matlab: true,
            ..Spec::default()
        };
        let (_dir, r) = read_spec(&spec, |_| {});
        let cd = r.unwrap();
        assert_eq!(
            (cd.frames, cd.waves, cd.channels, cd.samples),
            (1, 1, 4, 16)
        );
        assert_eq!(rf(&cd)[at(&cd, 0, 0, 2, 9)], sample_value(0, 0, 2, 9));
        assert_eq!(cd.acquisition.sampling_frequency, 20e6);
        assert_eq!(cd.acquisition.probe.kind, ProbeKind::Linear);
        assert_eq!(
            cd.acquisition.waves[0].wavefront,
            Wavefront::Plane { azimuth: 0.0 }
        );
    }

    #[test]
    fn reads_matlab_style_multi_frame() {
        let spec = Spec {
            frames: Some(2),
            matlab: true,
            ..Spec::default()
        };
        let (_dir, r) = read_spec(&spec, |_| {});
        let cd = r.unwrap();
        assert_eq!(
            (cd.frames, cd.waves, cd.channels, cd.samples),
            (2, 3, 4, 16)
        );
        assert_eq!(rf(&cd)[at(&cd, 1, 2, 3, 4)], sample_value(1, 2, 3, 4));
    }

    #[test]
    fn transposed_geometry_is_accepted() {
        let spec = Spec::default();
        let (_dir, r) = read_spec(&spec, |cd| {
            let probe = cd.group("probe").unwrap();
            let mut g = vec![0.0f64; 4 * 7];
            for e in 0..4 {
                g[e * 7] = e as f64 * 1e-3;
                g[e * 7 + 5] = 2e-4;
            }
            put_array(&probe, "geometry", &[4, 7], &g);
        });
        let cd = r.unwrap();
        assert_eq!(cd.acquisition.probe.elements[3].position.x, 3e-3);
        assert_eq!(cd.acquisition.probe.elements[3].width, 2e-4);
    }

    #[test]
    fn curvilinear_array_without_geometry_uses_ustb_convention() {
        let spec = Spec::default();
        let (_dir, r) = read_spec(&spec, |cd| {
            let probe = cd.group("probe").unwrap();
            probe.unlink("geometry").unwrap();
            probe.delete_attr("class").unwrap();
            set_class(&probe, "uff.curvilinear_array", false);
            put_scalar(&probe, "radius", 0.06, false);
            put_scalar(&probe, "pitch", 5e-4, false);
        });
        let cd = r.unwrap();
        let p = &cd.acquisition.probe;
        assert_eq!(
            p.kind,
            ProbeKind::Convex {
                radius: 0.06,
                center: [0.0, -0.06]
            }
        );
        assert!(close(p.pitch(), 5e-4, 1e-9));
        // USTB's default element width is the pitch.
        assert_eq!(p.elements[0].width, 5e-4);
    }

    #[test]
    fn spherical_waves_are_diverging_or_focused() {
        let spec = Spec {
            waves: 2,
            ..Spec::default()
        };
        let (_dir, r) = read_spec(&spec, |cd| {
            for (name, az) in [
                ("sequence_0001", std::f64::consts::PI),
                ("sequence_0002", 0.0),
            ] {
                let w = cd.group(&format!("sequence/{name}")).unwrap();
                put_scalar(&w, "wavefront", 1.0, false);
                let src = w.group("source").unwrap();
                put_scalar(&src, "azimuth", az, false);
                put_scalar(&src, "distance", 0.02, false);
            }
        });
        let cd = r.unwrap();
        match cd.acquisition.waves[0].wavefront {
            Wavefront::Diverging { source } => {
                assert!(close(source.z, -0.02, 1e-12) && source.x.abs() < 1e-15)
            }
            ref w => panic!("{w:?}"),
        }
        assert_eq!(
            cd.acquisition.waves[1].wavefront,
            Wavefront::Focused {
                focus: DVec3::new(0.0, 0.0, 0.02)
            }
        );
    }

    #[test]
    fn missing_sampling_frequency() {
        let msg = error_of(
            &Spec::default(),
            |cd| cd.unlink("sampling_frequency").unwrap(),
            "/channel_data/sampling_frequency",
        );
        assert!(msg.contains("missing"), "{msg}");
    }

    #[test]
    fn zero_sampling_frequency() {
        let msg = error_of(
            &Spec::default(),
            |cd| put_scalar(cd, "sampling_frequency", 0.0, false),
            "/channel_data/sampling_frequency",
        );
        assert!(
            msg.contains("is 0, expected a positive sampling frequency"),
            "{msg}"
        );
        error_of(
            &Spec::default(),
            |cd| put_scalar(cd, "sampling_frequency", f64::INFINITY, false),
            "/channel_data/sampling_frequency",
        );
    }

    #[test]
    fn nan_and_negative_sound_speed() {
        let msg = error_of(
            &Spec::default(),
            |cd| put_scalar(cd, "sound_speed", f64::NAN, false),
            "/channel_data/sound_speed",
        );
        assert!(msg.contains("NaN"), "{msg}");
        error_of(
            &Spec::default(),
            |cd| put_scalar(cd, "sound_speed", -1540.0, false),
            "/channel_data/sound_speed",
        );
    }

    #[test]
    fn data_shape_inconsistent_with_probe() {
        let msg = error_of(
            &Spec::default(),
            |cd| put_array(cd, "data", &[3, 5, 16], &vec![0.0f32; 3 * 5 * 16]),
            "/channel_data/data",
        );
        assert!(
            msg.contains("/channel_data/probe")
                && msg.contains("5 channels")
                && msg.contains("4 elements"),
            "{msg}"
        );
    }

    #[test]
    fn data_shape_inconsistent_with_sequence() {
        let msg = error_of(
            &Spec::default(),
            |cd| put_array(cd, "data", &[5, 4, 16], &vec![0.0f32; 5 * 4 * 16]),
            "/channel_data/data",
        );
        assert!(
            msg.contains("/channel_data/sequence")
                && msg.contains("5 waves")
                && msg.contains("describes 3"),
            "{msg}"
        );
    }

    #[test]
    fn bad_data_rank() {
        error_of(
            &Spec::default(),
            |cd| put_array(cd, "data", &[64], &vec![0.0f32; 64]),
            "/channel_data/data",
        );
    }

    #[test]
    fn real_imag_shape_mismatch() {
        let spec = Spec {
            iq: true,
            ..Spec::default()
        };
        let msg = error_of(
            &spec,
            |cd| {
                let g = cd.group("data").unwrap();
                put_array(&g, "imag", &[3, 4, 15], &vec![0.0f32; 3 * 4 * 15]);
            },
            "/channel_data/data/imag",
        );
        assert!(msg.contains("/channel_data/data/real"), "{msg}");
        error_of(
            &spec,
            |cd| cd.group("data").unwrap().unlink("imag").unwrap(),
            "/channel_data/data/imag",
        );
    }

    #[test]
    fn missing_groups_and_fields() {
        let s = Spec::default();
        error_of(&s, |cd| cd.unlink("probe").unwrap(), "/channel_data/probe");
        error_of(
            &s,
            |cd| cd.unlink("sequence").unwrap(),
            "/channel_data/sequence",
        );
        error_of(&s, |cd| cd.unlink("data").unwrap(), "/channel_data/data");
        error_of(
            &s,
            |cd| cd.unlink("initial_time").unwrap(),
            "/channel_data/initial_time",
        );
        error_of(
            &s,
            |cd| cd.unlink("sequence/sequence_0002/source").unwrap(),
            "/channel_data/sequence/sequence_0002/source",
        );
        error_of(
            &s,
            |cd| cd.unlink("sequence/sequence_0002").unwrap(),
            "/channel_data/sequence/sequence_0003",
        );
        // Neither a pulse nor a modulation frequency: no centre frequency.
        error_of(
            &s,
            |cd| cd.unlink("pulse").unwrap(),
            "/channel_data/pulse/center_frequency",
        );
        error_of(
            &s,
            |cd| {
                let p = cd.group("probe").unwrap();
                p.unlink("geometry").unwrap();
                p.unlink("pitch").unwrap();
            },
            "/channel_data/probe/pitch",
        );
    }

    #[test]
    fn bad_values_name_their_field() {
        let s = Spec::default();
        error_of(
            &s,
            |cd| put_scalar(&cd.group("probe").unwrap(), "N", 5.0, false),
            "/channel_data/probe/N",
        );
        error_of(
            &s,
            |cd| {
                put_scalar(
                    &cd.group("sequence/sequence_0001").unwrap(),
                    "wavefront",
                    2.0,
                    false,
                )
            },
            "/channel_data/sequence/sequence_0001/wavefront",
        );
        error_of(
            &s,
            |cd| {
                put_scalar(
                    &cd.group("sequence/sequence_0001").unwrap(),
                    "delay",
                    f64::NAN,
                    false,
                )
            },
            "/channel_data/sequence/sequence_0001/delay",
        );
        error_of(
            &s,
            |cd| {
                put_scalar(
                    &cd.group("pulse").unwrap(),
                    "fractional_bandwidth",
                    77.0,
                    false,
                )
            },
            "/channel_data/pulse/fractional_bandwidth",
        );
        error_of(
            &s,
            |cd| put_array(cd, "sampling_frequency", &[2], &[1.0f64, 2.0]),
            "/channel_data/sampling_frequency",
        );
        error_of(
            &s,
            |cd| {
                let p = cd.group("probe").unwrap();
                let mut g = vec![0.0f64; 7 * 4];
                g[2] = f64::NAN;
                put_array(&p, "geometry", &[7, 4], &g);
            },
            "/channel_data/probe/geometry",
        );
    }

    #[test]
    fn pulse_falls_back_to_modulation_frequency() {
        let spec = Spec {
            iq: true,
            ..Spec::default()
        };
        let (_dir, r) = read_spec(&spec, |cd| cd.unlink("pulse").unwrap());
        let cd = r.unwrap();
        assert_eq!(cd.acquisition.center_frequency, 5e6);
        assert_eq!(cd.acquisition.bandwidth, 0.0);
    }

    #[test]
    fn truncated_and_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        // The head of a real file; a written one when the reference is absent.
        let full = dir.path().join("full.uff");
        write_spec(
            &full,
            &Spec {
                samples: 4096,
                ..Spec::default()
            },
            |_| {},
        );
        let bytes = std::fs::read(&full).unwrap();
        let path = dir.path().join("test.uff");
        std::fs::write(&path, &bytes[..1000]).unwrap();
        let msg = read_uff(&path).unwrap_err().to_string();
        eprintln!("{msg}");
        assert!(
            msg.contains("test.uff") && msg.contains("not a readable HDF5 file"),
            "{msg}"
        );
        if let Some(sim) = pymust_sim() {
            let real = std::fs::read(sim.join("L11-5v_pw7/L11-5v_pw7_rf.uff")).unwrap();
            std::fs::write(&path, &real[..1000]).unwrap();
            let msg = read_uff(&path).unwrap_err().to_string();
            eprintln!("{msg}");
            assert!(
                msg.contains("test.uff") && msg.contains("not a readable HDF5 file"),
                "{msg}"
            );
            // Cut inside the samples: the header reads, the data do not.
            std::fs::write(&path, &real[..real.len() / 2]).unwrap();
            let msg = read_uff(&path).unwrap_err().to_string();
            eprintln!("{msg}");
            assert!(msg.contains("test.uff"), "{msg}");
        }
        std::fs::write(&path, b"not hdf5 at all").unwrap();
        let msg = read_uff(&path).unwrap_err().to_string();
        eprintln!("{msg}");
        assert!(msg.contains("not a readable HDF5 file"), "{msg}");
        let msg = read_uff(&dir.path().join("absent.uff"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("absent.uff") && msg.contains("cannot open"),
            "{msg}"
        );
    }

    #[test]
    fn reads_float64_rf_and_compound_iq() {
        let (_dir, r) = read_spec(&Spec::default(), |cd| {
            let v: Vec<f64> = (0..3 * 4 * 16).map(|i| i as f64 + 0.5).collect();
            put_array(cd, "data", &[3, 4, 16], &v);
        });
        let cd = r.unwrap();
        assert_eq!(rf(&cd)[at(&cd, 0, 2, 1, 3)], (2 * 64 + 16 + 3) as f32 + 0.5);

        // h5py stores numpy complex as a compound of `r` and `i`.
        let (_dir, r) = read_spec(&Spec::default(), |cd| {
            put_scalar(cd, "modulation_frequency", 5e6, false);
            let v: Vec<ComplexRI> = (0..3 * 4 * 16)
                .map(|i| ComplexRI {
                    r: i as f32,
                    i: -(i as f32),
                })
                .collect();
            put_array(cd, "data", &[3, 4, 16], &v);
        });
        let cd = r.unwrap();
        assert_eq!(
            iq(&cd)[at(&cd, 0, 1, 2, 3)],
            [(64 + 32 + 3) as f32, -((64 + 32 + 3) as f32)]
        );
    }

    #[test]
    fn rf_with_modulation_frequency_is_refused() {
        error_of(
            &Spec::default(),
            |cd| put_scalar(cd, "modulation_frequency", 5e6, false),
            "/channel_data/modulation_frequency",
        );
    }

    #[test]
    fn channel_data_without_class_attributes() {
        let (_dir, r) = read_spec(&Spec::default(), |cd| cd.delete_attr("class").unwrap());
        assert_eq!(r.unwrap().waves, 3);
    }

    #[test]
    fn no_channel_data_group() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.uff");
        let f = File::create(&path).unwrap();
        let g = f.create_group("scan").unwrap();
        set_class(&g, "uff.linear_scan", false);
        drop(g);
        drop(f);
        let msg = read_uff(&path).unwrap_err().to_string();
        eprintln!("{msg}");
        assert!(
            msg.contains("uff.channel_data") && msg.contains("scan"),
            "{msg}"
        );
        let msg = read_uff_dataset(&path, "/scan").unwrap_err().to_string();
        assert!(
            msg.contains("/scan") && msg.contains("uff.linear_scan"),
            "{msg}"
        );
        let msg = read_uff_dataset(&path, "/channel_data")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("/channel_data is missing"), "{msg}");
    }

    // ---- the public writer ------------------------------------------------

    /// Samples that differ everywhere and are not round in binary.
    fn ramp(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (i as f32 * 0.37).sin() * 1e3 + i as f32 * 1e-3)
            .collect()
    }

    fn acquisition(probe: Probe, waves: Vec<Wave>, fmod: f64) -> Acquisition {
        Acquisition {
            probe,
            waves,
            sampling_frequency: 20.8e6,
            initial_time: -1.3e-6,
            modulation_frequency: fmod,
            center_frequency: 5.2e6,
            bandwidth: 0.67,
            sound_speed: 1540.0,
            prf: 2500.0,
        }
    }

    fn channel_data(
        acquisition: Acquisition,
        frames: usize,
        samples: usize,
        iq: bool,
    ) -> ChannelData {
        let (waves, channels) = (acquisition.waves.len(), acquisition.probe.len());
        let n = frames * waves * channels * samples;
        let v = ramp(2 * n);
        let data = if iq {
            Samples::Iq(v.chunks(2).map(|c| [c[0], c[1]]).collect())
        } else {
            Samples::Rf(v[..n].to_vec())
        };
        ChannelData {
            acquisition,
            frames,
            waves,
            channels,
            samples,
            data,
        }
    }

    fn plane_waves(n: usize) -> Vec<Wave> {
        (0..n)
            .map(|i| Wave {
                wavefront: Wavefront::Plane {
                    azimuth: (i as f64 - 1.0) * 0.0873,
                },
                delay: -(i as f64) * 3.1e-7,
            })
            .collect()
    }

    fn linear_probe() -> Probe {
        Probe::linear(8, 3e-4, 2.7e-4, 5e-3)
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// Write `cd`, check nothing but the file is left, read it back.
    fn round_trip(cd: &ChannelData) -> (tempfile::TempDir, PathBuf, ChannelData) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.uff");
        super::write_uff(&path, cd).unwrap();
        assert_eq!(listing(dir.path()), ["out.uff"]);
        let back = read_uff(&path).unwrap();
        (dir, path, back)
    }

    /// `back` equals `cd` in every field and sample, except what goes
    /// through trigonometry on the way: a convex probe's radius and centre
    /// (fitted to the written geometry) and spherical sources (written as
    /// distance and angles), which must agree to well under a nanometre.
    fn assert_round_trip(back: &ChannelData, cd: &ChannelData) {
        let mut back = back.clone();
        if let (
            ProbeKind::Convex {
                radius: r,
                center: c,
            },
            ProbeKind::Convex {
                radius: r0,
                center: c0,
            },
        ) = (&back.acquisition.probe.kind, &cd.acquisition.probe.kind)
        {
            let err = (r - r0)
                .abs()
                .max((c[0] - c0[0]).abs())
                .max((c[1] - c0[1]).abs());
            assert!(err < 1e-12, "convex fit off by {err} m");
            back.acquisition.probe.kind = cd.acquisition.probe.kind.clone();
        }
        for (b, w) in back.acquisition.waves.iter_mut().zip(&cd.acquisition.waves) {
            let (p, q) = match (&b.wavefront, &w.wavefront) {
                (Wavefront::Diverging { source: p }, Wavefront::Diverging { source: q }) => {
                    (*p, *q)
                }
                (Wavefront::Focused { focus: p }, Wavefront::Focused { focus: q }) => (*p, *q),
                _ => continue,
            };
            assert!((p - q).length() < 1e-15, "source {p} read back for {q}");
            b.wavefront = w.wavefront.clone();
        }
        assert_eq!(back, *cd);
    }

    fn attr_i64(loc: &Location, name: &str) -> Vec<i64> {
        loc.attr(name).unwrap().read_raw().unwrap()
    }

    /// The attributes pyuff-ustb puts on every group (a UFF object).
    fn assert_object(g: &Group, class: &str, name: &str, size: [i64; 2]) {
        assert_eq!(class_of(g).as_deref(), Some(class), "{}", g.name());
        assert_eq!(
            string_attr(g, "name").as_deref(),
            Some(name),
            "{}",
            g.name()
        );
        assert_eq!(
            attr_i64(g, "array"),
            [i64::from(size != [1, 1])],
            "{}",
            g.name()
        );
        assert_eq!(attr_i64(g, "size"), size, "{}", g.name());
    }

    /// ... and on every real numeric dataset.
    fn assert_numeric(ds: &Dataset, name: &str, shape: &[usize]) {
        assert_eq!(class_of(ds).as_deref(), Some("single"), "{}", ds.name());
        assert_eq!(
            string_attr(ds, "name").as_deref(),
            Some(name),
            "{}",
            ds.name()
        );
        assert_eq!(
            (attr_i64(ds, "complex"), attr_i64(ds, "imaginary")),
            (vec![0], vec![0]),
            "{}",
            ds.name()
        );
        assert_eq!(ds.shape(), shape, "{}", ds.name());
    }

    #[test]
    fn writes_rf_linear_plane_waves() {
        let cd = channel_data(
            acquisition(linear_probe(), plane_waves(3), 0.0),
            1,
            32,
            false,
        );
        let (_dir, path, back) = round_trip(&cd);
        assert_eq!(back, cd);

        let f = File::open(&path).unwrap();
        let g = f.group("channel_data").unwrap();
        assert_object(&g, "uff.channel_data", "channel_data", [1, 1]);
        // One frame: the frame dimension is dropped, as pyuff-ustb does.
        assert_numeric(&g.dataset("data").unwrap(), "data", &[3, 8, 32]);
        assert_eq!(
            g.dataset("data")
                .unwrap()
                .dtype()
                .unwrap()
                .to_descriptor()
                .unwrap(),
            TypeDescriptor::Float(hdf5::types::FloatSize::U4)
        );
        for name in [
            "sampling_frequency",
            "initial_time",
            "sound_speed",
            "modulation_frequency",
            "PRF",
        ] {
            assert_numeric(&g.dataset(name).unwrap(), name, &[]);
        }
        let n = g.dataset("N_active_elements").unwrap();
        assert_numeric(&n, "N_active_elements", &[]);
        assert_eq!(n.read_scalar::<i64>().unwrap(), 8);

        let probe = g.group("probe").unwrap();
        assert_object(&probe, "uff.linear_array", "probe", [1, 1]);
        assert_numeric(&probe.dataset("geometry").unwrap(), "geometry", &[7, 8]);
        assert_eq!(probe.dataset("N").unwrap().read_scalar::<i64>().unwrap(), 8);
        assert!(close(
            probe
                .dataset("pitch")
                .unwrap()
                .read_scalar::<f64>()
                .unwrap(),
            3e-4,
            1e-12
        ));
        assert_object(
            &probe.group("origin").unwrap(),
            "uff.point",
            "origin",
            [1, 1],
        );
        let pulse = g.group("pulse").unwrap();
        assert_object(&pulse, "uff.pulse", "pulse", [1, 1]);
        assert_numeric(
            &pulse.dataset("fractional_bandwidth").unwrap(),
            "fractional_bandwidth",
            &[],
        );
        assert_numeric(&pulse.dataset("waveform").unwrap(), "waveform", &[1]);

        let seq = g.group("sequence").unwrap();
        assert_object(&seq, "uff.wave", "sequence", [1, 3]);
        let w = seq.group("sequence_0002").unwrap();
        assert_object(&w, "uff.wave", "sequence_0002", [1, 1]);
        let wf = w.dataset("wavefront").unwrap();
        assert_eq!(
            (wf.shape(), wf.read_raw::<i64>().unwrap()),
            (vec![1, 1], vec![0])
        );
        assert_eq!(class_of(&wf).as_deref(), Some("uff.wavefront"));
        let src = w.group("source").unwrap();
        assert_object(&src, "uff.point", "source", [1, 1]);
        assert_numeric(&src.dataset("distance").unwrap(), "distance", &[]);
        assert_eq!(
            src.dataset("distance")
                .unwrap()
                .read_scalar::<f64>()
                .unwrap(),
            f64::INFINITY
        );
    }

    #[test]
    fn writes_iq_convex_diverging_waves() {
        let probe = Probe::convex_must(16, 4.6e-4, 0.0496, 4.1e-4, 1.4e-2);
        let waves = (0..5)
            .map(|i| Wave {
                wavefront: Wavefront::Diverging {
                    source: DVec3::new((i as f64 - 2.0) * 8.5e-3, 0.0, -0.0364),
                },
                delay: -9.58e-7 + i as f64 * 1e-9,
            })
            .collect();
        let cd = channel_data(acquisition(probe, waves, 3.57e6), 1, 24, true);
        let (_dir, path, back) = round_trip(&cd);
        assert!(matches!(
            back.acquisition.probe.kind,
            ProbeKind::Convex { .. }
        ));
        assert_round_trip(&back, &cd);

        let f = File::open(&path).unwrap();
        let g = f.group("channel_data").unwrap();
        assert_object(&g.group("probe").unwrap(), "uff.probe", "probe", [1, 1]);
        let data = g.group("data").unwrap();
        assert_eq!(class_of(&data).as_deref(), Some("single"));
        assert_eq!(string_attr(&data, "name").as_deref(), Some("data"));
        assert_eq!(
            (attr_i64(&data, "complex"), attr_i64(&data, "imaginary")),
            (vec![1], vec![0])
        );
        for (part, imaginary) in [("real", 0), ("imag", 1)] {
            let ds = data.dataset(part).unwrap();
            assert_eq!(ds.shape(), [5, 16, 24]);
            assert_eq!(string_attr(&ds, "name").as_deref(), Some("data"));
            assert_eq!(attr_i64(&ds, "imaginary"), [imaginary]);
        }
        let wf = g.dataset("sequence/sequence_0005/wavefront").unwrap();
        assert_eq!(wf.read_raw::<i64>().unwrap(), [1]);
    }

    #[test]
    fn writes_focused_waves() {
        let foci = [
            (-5e-3, 0.0, 0.03),
            (0.0, 0.0, 0.03),
            (5e-3, 0.0, 0.03),
            (2e-3, 1e-3, 0.02),
            (0.0, 0.0, 0.0),
        ];
        let waves = foci
            .iter()
            .map(|&(x, y, z)| Wave {
                wavefront: Wavefront::Focused {
                    focus: DVec3::new(x, y, z),
                },
                delay: 1.7e-5,
            })
            .collect();
        let cd = channel_data(acquisition(linear_probe(), waves, 0.0), 1, 16, false);
        let (_dir, _path, back) = round_trip(&cd);
        assert_round_trip(&back, &cd);
    }

    #[test]
    fn writes_multi_frame() {
        let cd = channel_data(
            acquisition(linear_probe(), plane_waves(2), 5.2e6),
            3,
            20,
            true,
        );
        let (_dir, path, back) = round_trip(&cd);
        assert_eq!(back, cd);
        let f = File::open(&path).unwrap();
        assert_eq!(
            f.dataset("channel_data/data/real").unwrap().shape(),
            [3, 2, 8, 20]
        );
        let rf = channel_data(
            acquisition(linear_probe(), plane_waves(2), 0.0),
            3,
            20,
            false,
        );
        let (_dir, _path, back) = round_trip(&rf);
        assert_eq!(back, rf);
    }

    /// One wave goes in place of the sequence, as USTB writes it: pyuff-ustb
    /// would read a one-entry list as the sequence group itself.
    #[test]
    fn writes_a_single_wave_in_place() {
        let cd = channel_data(
            acquisition(linear_probe(), plane_waves(1), 0.0),
            1,
            16,
            false,
        );
        let (_dir, path, back) = round_trip(&cd);
        assert_eq!(back, cd);
        let f = File::open(&path).unwrap();
        let seq = f.group("channel_data/sequence").unwrap();
        assert_object(&seq, "uff.wave", "sequence", [1, 1]);
        assert!(seq.link_exists("wavefront") && !seq.link_exists("sequence_0001"));
        assert_eq!(f.dataset("channel_data/data").unwrap().shape(), [1, 8, 16]);
    }

    /// USTB rebuilds a linear array from N and pitch, so an irregular one
    /// is written as a generic probe: its elements survive exactly, and its
    /// kind is whatever [`Probe::detect_convex`] makes of explicit geometry.
    #[test]
    fn irregular_and_phased_probes_are_generic() {
        let mut irregular = linear_probe();
        irregular.elements[3].position.x += 1e-5;
        irregular.elements[5].width = 1e-4;
        for probe in [irregular, Probe::phased(8, 2e-4, 1.8e-4, 5e-3)] {
            let cd = channel_data(
                acquisition(probe.clone(), plane_waves(2), 0.0),
                1,
                16,
                false,
            );
            let (_dir, path, back) = round_trip(&cd);
            let f = File::open(&path).unwrap();
            assert_eq!(
                class_of(&f.group("channel_data/probe").unwrap()).as_deref(),
                Some("uff.probe")
            );
            let mut expected = cd.clone();
            expected.acquisition.probe.kind = ProbeKind::Generic;
            expected.acquisition.probe.detect_convex();
            assert_eq!(back, expected);
        }
    }

    #[test]
    fn write_errors_leave_nothing_behind() {
        let cd = channel_data(
            acquisition(linear_probe(), plane_waves(3), 0.0),
            1,
            16,
            false,
        );
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent/out.uff");
        let msg = super::write_uff(&missing, &cd).unwrap_err().to_string();
        eprintln!("{msg}");
        assert!(
            msg.contains("absent/out.uff") && msg.contains("cannot write"),
            "{msg}"
        );
        assert!(listing(dir.path()).is_empty());

        // A refused acquisition leaves an existing file as it was.
        let path = dir.path().join("out.uff");
        super::write_uff(&path, &cd).unwrap();
        let mut bad = cd.clone();
        bad.acquisition.waves[1].wavefront = Wavefront::Diverging {
            source: DVec3::new(0.0, 0.0, 0.01),
        };
        let msg = super::write_uff(&path, &bad).unwrap_err().to_string();
        eprintln!("{msg}");
        assert!(
            msg.contains("out.uff") && msg.contains("/channel_data/sequence/sequence_0002/source"),
            "{msg}"
        );
        let mut bad = cd.clone();
        bad.acquisition.modulation_frequency = 5e6;
        let msg = super::write_uff(&path, &bad).unwrap_err().to_string();
        assert!(msg.contains("/channel_data/modulation_frequency"), "{msg}");
        let mut bad = cd.clone();
        bad.acquisition.bandwidth = 67.0;
        let msg = super::write_uff(&path, &bad).unwrap_err().to_string();
        assert!(
            msg.contains("/channel_data/pulse/fractional_bandwidth"),
            "{msg}"
        );
        let mut bad = cd.clone();
        bad.samples = 15;
        let msg = super::write_uff(&path, &bad).unwrap_err().to_string();
        assert!(msg.contains("out.uff") && msg.contains("data"), "{msg}");
        assert_eq!(read_uff(&path).unwrap(), cd);

        // A directory in the way: the rename fails and the temporary goes.
        let sub = dir.path().join("sub.uff");
        std::fs::create_dir(&sub).unwrap();
        let msg = super::write_uff(&sub, &cd).unwrap_err().to_string();
        assert!(msg.contains("sub.uff"), "{msg}");
        assert_eq!(listing(dir.path()), ["out.uff", "sub.uff"]);

        // Overwriting replaces the file whole.
        let multi = channel_data(
            acquisition(linear_probe(), plane_waves(2), 0.0),
            3,
            16,
            false,
        );
        super::write_uff(&path, &multi).unwrap();
        assert_eq!(read_uff(&path).unwrap(), multi);
        assert_eq!(listing(dir.path()), ["out.uff", "sub.uff"]);
    }
}
