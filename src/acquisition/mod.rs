//! The physics vocabulary: probes, transmitted waves, channel data and the
//! pixel sets they are beamformed onto.
//!
//! Units inside the engine are metres, seconds and hertz; x is lateral
//! (element 0 → N−1), y elevation, z depth into the body.
//!
//! # Time zero (the one place it is written down)
//!
//! sonoguide follows UFF/USTB. Sample `k` of every channel of a wave is at
//! time `initial_time + k / fs`, and a pixel `p` is seen by element `e` at
//!
//! ```text
//! tau(p, e) = (t_tx(p) + |p - e|) / c - wave.delay
//! ```
//!
//! where `t_tx(p)` is a *distance* that depends only on the wavefront
//! (see [`Wavefront::transmit_distance`]): zero at the origin for plane and
//! diverging waves, so `-wave.delay` is the time at which the wavefront
//! passes the origin.
//!
//! MUST/PyMUST instead put `t = 0` at the instant the element with zero
//! transmit delay fires (all `TXdelay >= 0`, `min = 0`) and sample `k` at
//! `param.t0 + k / fs`. The two agree when
//!
//! ```text
//! initial_time = param.t0
//! wave.delay   = -(MUST time at which the wavefront passes the origin)
//!   plane wave at angle θ on a linear array:  -((N-1)/2 · pitch · |sin θ|) / c
//!   diverging wave from a virtual source s:   -(|s| - min_e |e - s|) / c
//! ```
//!
//! which is what [`Wave::from_must_delays`] computes and what the reference
//! UFF files in `../shared/data/pymust-sim` hold. Inside the insonified zone
//! the analytic transmit time equals MUST's `dasmtx` (minimum over virtual
//! elements of delay + distance); outside it MUST follows an edge wave and
//! the two differ.
//!
//! The demodulation phase and the beamformer's phase rotation both use this
//! absolute time (`exp(∓j2π f_mod tau)`), as MUST's `rf2iq` and `dasmtx` do.

pub mod fnumber;
pub mod grid;
pub mod transmit;

use glam::DVec3;
use thiserror::Error;

pub use grid::PixelGrid;

/// An acquisition that cannot be beamformed, with the field that is wrong.
#[derive(Debug, Error)]
pub enum AcquisitionError {
    #[error("field `{field}`: {problem}")]
    Invalid { field: String, problem: String },
}

fn invalid(field: &str, problem: impl Into<String>) -> AcquisitionError {
    AcquisitionError::Invalid {
        field: field.to_string(),
        problem: problem.into(),
    }
}

/// How the element positions were laid out. The beamformer only needs the
/// elements; the kind is kept for defaults (grids, scan conversion) and for
/// writing files back.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeKind {
    Linear,
    /// Elements on an arc of `radius` about `center` (x, z). MUST puts the
    /// chord through the end elements at z = 0 (centre at (0, -h)); USTB's
    /// curvilinear array puts the apex at z = 0 (centre at (0, -R)).
    Convex {
        radius: f64,
        center: [f64; 2],
    },
    /// A small-footprint array steered electronically; geometry like linear.
    Phased,
    /// Explicit element geometry with no known pattern.
    Generic,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Element {
    pub position: DVec3,
    /// Angle of the element normal from +z, positive toward +x (UFF `theta`).
    pub azimuth: f64,
    pub width: f64,
    pub height: f64,
}

impl Element {
    pub fn normal(&self) -> DVec3 {
        DVec3::new(self.azimuth.sin(), 0.0, self.azimuth.cos())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub name: String,
    pub kind: ProbeKind,
    pub elements: Vec<Element>,
}

impl Probe {
    /// Depth of the probe face on the centre line (the deepest element
    /// position: a convex array's apex, 0 for a linear array): where the
    /// image's depth scale and the skin start.
    pub fn apex_z(&self) -> f64 {
        self.elements
            .iter()
            .map(|e| e.position.z)
            .fold(0.0, f64::max)
    }

    /// Linear array centred on x = 0, faces at z = 0, normals along +z.
    pub fn linear(n: usize, pitch: f64, width: f64, height: f64) -> Probe {
        let elements = (0..n)
            .map(|e| Element {
                position: DVec3::new((e as f64 - (n as f64 - 1.0) / 2.0) * pitch, 0.0, 0.0),
                azimuth: 0.0,
                width,
                height,
            })
            .collect();
        Probe {
            name: "linear".into(),
            kind: ProbeKind::Linear,
            elements,
        }
    }

    /// Phased array: the geometry of a linear array, kept apart for defaults.
    pub fn phased(n: usize, pitch: f64, width: f64, height: f64) -> Probe {
        let mut p = Probe::linear(n, pitch, width, height);
        p.kind = ProbeKind::Phased;
        p.name = "phased".into();
        p
    }

    /// MUST's convex array: `pitch` is the chord between neighbours, the end
    /// elements lie on z = 0 and the centre of curvature is at (0, -h).
    pub fn convex_must(n: usize, pitch: f64, radius: f64, width: f64, height: f64) -> Probe {
        let step = 2.0 * (pitch / (2.0 * radius)).asin();
        let half = (n as f64 - 1.0) / 2.0 * step;
        let h = radius * half.cos();
        Self::convex_about(n, step, radius, [0.0, -h], width, height)
    }

    /// USTB's `uff.curvilinear_array`: the apex (the arc at θ = 0) at z = 0,
    /// centre of curvature at (0, -R). USTB also reads `pitch` as the chord.
    pub fn convex_ustb(n: usize, pitch: f64, radius: f64, width: f64, height: f64) -> Probe {
        let step = 2.0 * (pitch / (2.0 * radius)).asin();
        Self::convex_about(n, step, radius, [0.0, -radius], width, height)
    }

    fn convex_about(
        n: usize,
        step: f64,
        radius: f64,
        center: [f64; 2],
        width: f64,
        height: f64,
    ) -> Probe {
        let elements = (0..n)
            .map(|e| {
                let theta = (e as f64 - (n as f64 - 1.0) / 2.0) * step;
                Element {
                    position: DVec3::new(
                        center[0] + radius * theta.sin(),
                        0.0,
                        center[1] + radius * theta.cos(),
                    ),
                    azimuth: theta,
                    width,
                    height,
                }
            })
            .collect();
        Probe {
            name: "convex".into(),
            kind: ProbeKind::Convex { radius, center },
            elements,
        }
    }

    pub fn len(&self) -> usize {
        self.elements.len()
    }

    pub fn is_empty(&self) -> bool {
        self.elements.is_empty()
    }

    /// Mean element width (MUST's `param.width`), used by the automatic F-number.
    pub fn element_width(&self) -> f64 {
        self.elements.iter().map(|e| e.width).sum::<f64>() / self.len().max(1) as f64
    }

    /// Distance between the first two elements (MUST's `param.pitch`).
    pub fn pitch(&self) -> f64 {
        if self.len() < 2 {
            return 0.0;
        }
        (self.elements[1].position - self.elements[0].position).length()
    }

    /// Recognise a convex arc in explicit geometry (UFF generic probes carry
    /// no radius): fit the circle through the first, middle and last element
    /// and accept it when every element lies on it and faces away from it.
    pub fn detect_convex(&mut self) {
        if self.kind != ProbeKind::Generic || self.len() < 2 {
            return;
        }
        // Flat first: three collinear elements have no circumcentre.
        if self
            .elements
            .iter()
            .all(|e| e.position.z.abs() < 1e-9 && e.azimuth.abs() < 1e-9)
        {
            self.kind = ProbeKind::Linear;
            return;
        }
        if self.len() < 3 {
            return;
        }
        let n = self.len();
        let a = self.elements[0].position;
        let b = self.elements[n / 2].position;
        let c = self.elements[n - 1].position;
        let Some(center) = circumcentre([a.x, a.z], [b.x, b.z], [c.x, c.z]) else {
            return;
        };
        let radius = ((a.x - center[0]).powi(2) + (a.z - center[1]).powi(2)).sqrt();
        let on_arc = self.elements.iter().all(|e| {
            let r =
                ((e.position.x - center[0]).powi(2) + (e.position.z - center[1]).powi(2)).sqrt();
            let facing = (e.position.x - center[0]).atan2(e.position.z - center[1]);
            (r - radius).abs() < 1e-6 * radius.max(1e-3) && (facing - e.azimuth).abs() < 1e-3
        });
        if on_arc && radius.is_finite() {
            self.kind = ProbeKind::Convex { radius, center };
        }
    }

    pub fn validate(&self) -> Result<(), AcquisitionError> {
        if self.is_empty() {
            return Err(invalid("probe.geometry", "the probe has no elements"));
        }
        for (i, e) in self.elements.iter().enumerate() {
            let v = [e.position.x, e.position.y, e.position.z, e.azimuth];
            if v.iter().any(|x| !x.is_finite()) {
                return Err(invalid(
                    "probe.geometry",
                    format!("element {i} has a non-finite position or angle"),
                ));
            }
        }
        Ok(())
    }
}

fn circumcentre(a: [f64; 2], b: [f64; 2], c: [f64; 2]) -> Option<[f64; 2]> {
    let d = 2.0 * (a[0] * (b[1] - c[1]) + b[0] * (c[1] - a[1]) + c[0] * (a[1] - b[1]));
    if d.abs() < 1e-18 {
        return None;
    }
    let a2 = a[0] * a[0] + a[1] * a[1];
    let b2 = b[0] * b[0] + b[1] * b[1];
    let c2 = c[0] * c[0] + c[1] * c[1];
    Some([
        (a2 * (b[1] - c[1]) + b2 * (c[1] - a[1]) + c2 * (a[1] - b[1])) / d,
        (a2 * (c[0] - b[0]) + b2 * (a[0] - c[0]) + c2 * (b[0] - a[0])) / d,
    ])
}

/// The shape of a transmitted wavefront, in UFF terms.
#[derive(Debug, Clone, PartialEq)]
pub enum Wavefront {
    /// Plane wave travelling at `azimuth` from +z (positive toward +x).
    Plane { azimuth: f64 },
    /// Spherical wave from a virtual source behind the array (z < 0).
    Diverging { source: DVec3 },
    /// Spherical wave converging on a focus in front of the array (z > 0).
    Focused { focus: DVec3 },
}

impl Wavefront {
    /// The UFF transmit distance `t_tx(p)·c` to pixel `p`: the wavefront's
    /// travel relative to its passage through the origin.
    pub fn transmit_distance(&self, p: DVec3) -> f64 {
        match *self {
            Wavefront::Plane { azimuth } => p.x * azimuth.sin() + p.z * azimuth.cos(),
            Wavefront::Diverging { source } => (p - source).length() - source.length(),
            Wavefront::Focused { focus } => {
                let sign = if p.z >= focus.z { 1.0 } else { -1.0 };
                focus.length() + sign * (p - focus).length()
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Wave {
    pub wavefront: Wavefront,
    /// UFF `wave.delay` in seconds: minus the time at which the wavefront
    /// passes the origin (see the module docs).
    pub delay: f64,
}

impl Wave {
    /// A wave from MUST's per-element transmit delays (`TXdelay`, seconds,
    /// `min = 0`). Recognises a plane wave (delays linear in x on a flat
    /// array) and a diverging wave (from `virtual_source` when given).
    pub fn from_must_delays(
        probe: &Probe,
        delays: &[f64],
        c: f64,
        virtual_source: Option<DVec3>,
    ) -> Result<Wave, AcquisitionError> {
        if delays.len() != probe.len() {
            return Err(invalid(
                "TXdelay",
                format!(
                    "has {} values, the probe has {} elements",
                    delays.len(),
                    probe.len()
                ),
            ));
        }
        if delays.iter().any(|d| !d.is_finite()) {
            return Err(invalid("TXdelay", "contains NaN or infinite delays"));
        }
        if let Some(source) = virtual_source {
            let min = probe
                .elements
                .iter()
                .map(|e| (e.position - source).length())
                .fold(f64::INFINITY, f64::min);
            return Ok(Wave {
                wavefront: Wavefront::Diverging { source },
                delay: -(source.length() - min) / c,
            });
        }
        let flat = probe.elements.iter().all(|e| e.position.z.abs() < 1e-12);
        if !flat {
            if delays.iter().all(|d| *d == 0.0) {
                // All elements fire together on an arc: a diverging wave from
                // the centre of curvature.
                if let ProbeKind::Convex { center, .. } = probe.kind {
                    let source = DVec3::new(center[0], 0.0, center[1]);
                    return Self::from_must_delays(probe, delays, c, Some(source));
                }
            }
            return Err(invalid(
                "TXdelay",
                "cannot tell the wavefront of these delays on a curved array; give the virtual source",
            ));
        }
        // Least-squares line through (x_e, delay_e).
        let n = probe.len() as f64;
        let mx = probe.elements.iter().map(|e| e.position.x).sum::<f64>() / n;
        let md = delays.iter().sum::<f64>() / n;
        let (mut sxx, mut sxd) = (0.0, 0.0);
        for (e, d) in probe.elements.iter().zip(delays) {
            sxx += (e.position.x - mx).powi(2);
            sxd += (e.position.x - mx) * (d - md);
        }
        let slope = if sxx > 0.0 { sxd / sxx } else { 0.0 };
        let residual = probe
            .elements
            .iter()
            .zip(delays)
            .map(|(e, d)| (md + slope * (e.position.x - mx) - d).abs())
            .fold(0.0, f64::max);
        if residual > 1e-9 {
            return Err(invalid(
                "TXdelay",
                format!("delays are not a plane wave (off a line by {:.3e} s); focused MUST sequences need a focus", residual),
            ));
        }
        let sin = (slope * c).clamp(-1.0, 1.0);
        // MUST time at which the wavefront passes x = 0: the delay line at x = 0.
        let t_origin = md - slope * mx;
        Ok(Wave {
            wavefront: Wavefront::Plane {
                azimuth: sin.asin(),
            },
            delay: -t_origin,
        })
    }
}

/// Everything about how channel data were recorded, except the samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Acquisition {
    pub probe: Probe,
    pub waves: Vec<Wave>,
    pub sampling_frequency: f64,
    /// Time of sample 0, seconds (UFF `initial_time`, MUST `t0`).
    pub initial_time: f64,
    /// 0 for RF; the demodulation frequency for IQ data.
    pub modulation_frequency: f64,
    /// Transducer centre frequency (UFF `pulse.center_frequency`, MUST `fc`).
    pub center_frequency: f64,
    /// Pulse-echo fractional bandwidth as a fraction (0.77 for 77 %).
    pub bandwidth: f64,
    pub sound_speed: f64,
    /// Pulse repetition frequency between frames, Hz (0 if unknown).
    pub prf: f64,
}

impl Acquisition {
    /// Check the numbers a beamformer divides by or indexes with; the error
    /// names the field so the user can fix the file.
    pub fn validate(&self) -> Result<(), AcquisitionError> {
        self.probe.validate()?;
        let positive = [
            ("sampling_frequency", self.sampling_frequency),
            ("sound_speed", self.sound_speed),
            ("center_frequency", self.center_frequency),
        ];
        for (field, v) in positive {
            if !v.is_finite() || v <= 0.0 {
                return Err(invalid(
                    field,
                    format!("is {v}, expected a positive finite number"),
                ));
            }
        }
        for (field, v) in [
            ("initial_time", self.initial_time),
            ("modulation_frequency", self.modulation_frequency),
            ("bandwidth", self.bandwidth),
        ] {
            if !v.is_finite() {
                return Err(invalid(field, format!("is {v}, expected a finite number")));
            }
        }
        if self.waves.is_empty() {
            return Err(invalid("sequence", "no transmitted waves"));
        }
        for (i, w) in self.waves.iter().enumerate() {
            let ok = w.delay.is_finite()
                && match w.wavefront {
                    Wavefront::Plane { azimuth } => azimuth.is_finite(),
                    Wavefront::Diverging { source } => source.is_finite(),
                    Wavefront::Focused { focus } => focus.is_finite(),
                };
            if !ok {
                return Err(invalid(
                    &format!("sequence[{i}]"),
                    "wave has a non-finite angle, source or delay",
                ));
            }
        }
        Ok(())
    }

    /// Shortest wavelength in the pulse band, as MUST's automatic F-number uses.
    pub fn lambda_min(&self) -> f64 {
        self.sound_speed / (self.center_frequency * (1.0 + self.bandwidth / 2.0))
    }
}

/// Channel samples, laid out `[frame][wave][channel][sample]` with the
/// sample index fastest: one trace per (frame, wave, channel).
#[derive(Debug, Clone, PartialEq)]
pub enum Samples {
    Rf(Vec<f32>),
    Iq(Vec<[f32; 2]>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChannelData {
    pub acquisition: Acquisition,
    pub frames: usize,
    pub waves: usize,
    pub channels: usize,
    pub samples: usize,
    pub data: Samples,
}

impl ChannelData {
    pub fn is_iq(&self) -> bool {
        matches!(self.data, Samples::Iq(_))
    }

    pub fn traces(&self) -> usize {
        self.frames * self.waves * self.channels
    }

    pub fn validate(&self) -> Result<(), AcquisitionError> {
        self.acquisition.validate()?;
        if self.waves != self.acquisition.waves.len() {
            return Err(invalid(
                "sequence",
                format!(
                    "{} waves described, data hold {}",
                    self.acquisition.waves.len(),
                    self.waves
                ),
            ));
        }
        if self.channels != self.acquisition.probe.len() {
            return Err(invalid(
                "data",
                format!(
                    "{} channels, the probe has {} elements",
                    self.channels,
                    self.acquisition.probe.len()
                ),
            ));
        }
        if self.samples < 2 || self.frames == 0 {
            return Err(invalid(
                "data",
                format!(
                    "{} frames of {} samples: nothing to beamform",
                    self.frames, self.samples
                ),
            ));
        }
        let n = self.traces() * self.samples;
        let have = match &self.data {
            Samples::Rf(v) => v.len(),
            Samples::Iq(v) => v.len(),
        };
        if have != n {
            return Err(invalid(
                "data",
                format!("holds {have} samples, shape needs {n}"),
            ));
        }
        // One NaN would spread through every pixel it reaches (the
        // demodulation filter carries it along the whole trace) and the
        // B-mode would come out blank, with nothing said.
        let bad = match &self.data {
            Samples::Rf(v) => v.iter().position(|x| !x.is_finite()),
            Samples::Iq(v) => v
                .iter()
                .position(|c| !(c[0].is_finite() && c[1].is_finite())),
        };
        if let Some(i) = bad {
            let (s, t) = (i % self.samples, i / self.samples);
            let (c, t) = (t % self.channels, t / self.channels);
            let (w, f) = (t % self.waves, t / self.waves);
            return Err(invalid(
                "data",
                format!("sample {s} of channel {c}, wave {w}, frame {f} is not a finite number (NaN or infinite): expected finite channel data"),
            ));
        }
        Ok(())
    }

    /// Keep only the listed waves, in that order (the CLI's `--waves`).
    pub fn select_waves(&mut self, keep: &[usize]) -> Result<(), AcquisitionError> {
        if let Some(bad) = keep.iter().find(|&&w| w >= self.waves) {
            return Err(invalid(
                "waves",
                format!(
                    "wave {bad} asked for, the data hold {} (0-based)",
                    self.waves
                ),
            ));
        }
        let trace = self.channels * self.samples;
        let nw = self.waves;
        let ranges: Vec<std::ops::Range<usize>> = (0..self.frames)
            .flat_map(|f| {
                keep.iter()
                    .map(move |&w| (f * nw + w) * trace..(f * nw + w + 1) * trace)
            })
            .collect();
        self.data = match &self.data {
            Samples::Rf(v) => Samples::Rf(
                ranges
                    .iter()
                    .flat_map(|r| v[r.clone()].iter().copied())
                    .collect(),
            ),
            Samples::Iq(v) => Samples::Iq(
                ranges
                    .iter()
                    .flat_map(|r| v[r.clone()].iter().copied())
                    .collect(),
            ),
        };
        self.acquisition.waves = keep
            .iter()
            .map(|&w| self.acquisition.waves[w].clone())
            .collect();
        self.waves = keep.len();
        Ok(())
    }

    /// Keep only the first `n` frames (the CLI's `--frames N`).
    pub fn truncate_frames(&mut self, n: usize) {
        if n >= self.frames {
            return;
        }
        let keep = n * self.waves * self.channels * self.samples;
        match &mut self.data {
            Samples::Rf(v) => v.truncate(keep),
            Samples::Iq(v) => v.truncate(keep),
        }
        self.frames = n;
    }
}
