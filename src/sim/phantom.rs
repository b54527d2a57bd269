//! Phantom scenes: a probe, a transmit sequence, a medium and the objects
//! to simulate, read from TOML (see `scenes/phantom-*.toml`).
//!
//! As the hip scenes (`crate::scene`), files state `units = "mm"`: lengths
//! in millimetres, angles in degrees, frequencies in MHz, times in µs, sound
//! speed in m/s, attenuation in dB/cm/MHz. Unknown fields are errors, and
//! every error names the line and the field.
//!
//! Objects:
//! - `[[speckle]]`: random scatterers filling a box (`x`, `z`, `y`) or a
//!   sector about the convex probe's centre (`radius`, `angle`), `density`
//!   scatterers per resolution cell (default 10), Rayleigh amplitudes of
//!   mean `amplitude`. A resolution cell is λ laterally by c / (2 B fc)
//!   axially (the pulse-echo resolution), in the image plane.
//! - `[[inclusion]]`: a cylinder along y (centre x, z; radius) whose speckle
//!   amplitudes are multiplied by `gain`: 0 is anechoic, > 1 hyperechoic.
//! - `[[point]]`: point targets of one amplitude.
//!
//! Generation is deterministic: one [`Rng`] seeded by `scene.seed`, drawn
//! object by object in file order.
//!
//! The other sections: `[probe]` (a `preset` such as "L11-5v" or "C5-2v",
//! or `kind`, `elements`, `pitch`, `element_width`, `radius`,
//! `center_frequency`, `bandwidth`; `element_height` and `elevation_focus`
//! turn on the 3-D elevation model; `baffle`, `segments`), `[pulse]`
//! (`cycles`, or a measured `waveform` with `waveform_rate`),
//! `[transmit]` (`kind` plane, diverging or focused; `angles`;
//! `source_distance`, `focus_depth`, `window`), `[acquisition]`
//! (`sampling_frequency`, `depth` or `samples`, `initial_time`, `frames`),
//! `[medium]` (`sound_speed`, `attenuation`), `[noise]` (`level` dB re the
//! peak, `seed`) and `[image]` (a Cartesian `x`, `z` or a polar `radius`,
//! `angle` grid and `pixels` = [columns, rows]) for `sonoguide metrics`.

use std::ops::Range;
use std::path::Path;

use glam::DVec3;
use serde::Deserialize;
use toml::Spanned;

use super::{Baffle, Elevation, Noise, Pulse, Rng, Scatterer, SimSettings, DEFAULT_TX_WINDOW};
use crate::acquisition::{Acquisition, PixelGrid, Probe, ProbeKind, Wave, Wavefront};

pub type PhantomError = crate::io::toml_file::TomlFileError;

/// The sections only a phantom scene has (both kinds have `[scene]` and
/// `[probe]`): how a hip scene's reader tells a phantom scene given to it.
pub const SECTIONS: [&str; 9] = [
    "pulse",
    "transmit",
    "acquisition",
    "medium",
    "noise",
    "image",
    "speckle",
    "inclusion",
    "point",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    scene: SceneSection,
    probe: Spanned<ProbeSection>,
    #[serde(default)]
    pulse: Option<Spanned<PulseSection>>,
    transmit: Spanned<TransmitSection>,
    #[serde(default)]
    acquisition: Option<Spanned<AcquisitionSection>>,
    #[serde(default)]
    medium: Option<Spanned<MediumSection>>,
    #[serde(default)]
    noise: Option<Spanned<NoiseSection>>,
    #[serde(default)]
    image: Option<Spanned<ImageSection>>,
    #[serde(default)]
    speckle: Vec<Spanned<SpeckleSection>>,
    #[serde(default)]
    inclusion: Vec<Spanned<InclusionSection>>,
    #[serde(default)]
    point: Vec<Spanned<PointSection>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SceneSection {
    name: String,
    units: Spanned<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    seed: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeSection {
    preset: Option<Spanned<String>>,
    kind: Option<Spanned<String>>,
    elements: Option<Spanned<i64>>,
    pitch: Option<Spanned<f64>>,
    element_width: Option<Spanned<f64>>,
    element_height: Option<Spanned<f64>>,
    elevation_focus: Option<Spanned<f64>>,
    radius: Option<Spanned<f64>>,
    center_frequency: Option<Spanned<f64>>,
    bandwidth: Option<Spanned<f64>>,
    baffle: Option<Spanned<toml::Value>>,
    segments: Option<Spanned<i64>>,
    /// false: the 2-D model even when the preset has an element height.
    elevation: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PulseSection {
    cycles: Option<Spanned<f64>>,
    waveform: Option<Spanned<Vec<f64>>>,
    /// MHz.
    waveform_rate: Option<Spanned<f64>>,
    /// Sample index of time zero (default: the middle sample).
    waveform_origin: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransmitSection {
    kind: Spanned<String>,
    /// Degrees: plane-wave steering, diverging-wave tilt, focused-beam direction.
    angles: Spanned<Vec<f64>>,
    /// Diverging: distance of the virtual source behind the array's apex (mm).
    source_distance: Option<Spanned<f64>>,
    /// Focused: focal distance from the apex (mm).
    focus_depth: Option<Spanned<f64>>,
    /// Transmit window in periods (see `shaders/simulate.wgsl`); `inf`
    /// keeps every arrival, as simus.
    window: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AcquisitionSection {
    /// MHz (default 4 × centre frequency).
    sampling_frequency: Option<Spanned<f64>>,
    /// mm: record until the echoes from this depth have arrived.
    depth: Option<Spanned<f64>>,
    samples: Option<Spanned<i64>>,
    /// µs.
    initial_time: Option<Spanned<f64>>,
    frames: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MediumSection {
    sound_speed: Option<Spanned<f64>>,
    attenuation: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoiseSection {
    level: Spanned<f64>,
    #[serde(default)]
    seed: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageSection {
    // Lists, not `[f64; 2]`: toml drops a fixed-size array's extra entries
    // unseen, so `parse` checks the lengths (and names the field).
    x: Option<Spanned<Vec<f64>>>,
    z: Option<Spanned<Vec<f64>>>,
    radius: Option<Spanned<Vec<f64>>>,
    angle: Option<Spanned<Vec<f64>>>,
    /// [columns, rows].
    pixels: Spanned<Vec<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpeckleSection {
    // Lists, as in `ImageSection`.
    x: Option<Spanned<Vec<f64>>>,
    z: Option<Spanned<Vec<f64>>>,
    radius: Option<Spanned<Vec<f64>>>,
    angle: Option<Spanned<Vec<f64>>>,
    y: Option<Spanned<Vec<f64>>>,
    density: Option<Spanned<f64>>,
    count: Option<Spanned<i64>>,
    amplitude: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InclusionSection {
    /// [x, z]; a list, as in `ImageSection`.
    center: Spanned<Vec<f64>>,
    radius: Spanned<f64>,
    gain: Spanned<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PointSection {
    positions: Spanned<Vec<Vec<f64>>>,
    amplitude: Option<Spanned<f64>>,
}

/// A region of speckle.
#[derive(Debug, Clone, PartialEq)]
pub enum Region {
    /// x, z, y ranges (m).
    Box {
        x: (f64, f64),
        z: (f64, f64),
        y: (f64, f64),
    },
    /// Radius and angle (rad, from +z toward +x) about `origin` (x, z), y range.
    Sector {
        origin: [f64; 2],
        radius: (f64, f64),
        angle: (f64, f64),
        y: (f64, f64),
    },
}

impl Region {
    /// Area in the image plane, m².
    pub fn area(&self) -> f64 {
        match *self {
            Region::Box { x, z, .. } => (x.1 - x.0) * (z.1 - z.0),
            Region::Sector { radius, angle, .. } => {
                0.5 * (angle.1 - angle.0) * (radius.1 * radius.1 - radius.0 * radius.0)
            }
        }
    }

    fn sample(&self, rng: &mut Rng) -> DVec3 {
        let lerp = |r: (f64, f64), u: f64| r.0 + (r.1 - r.0) * u;
        match *self {
            Region::Box { x, z, y } => DVec3::new(
                lerp(x, rng.next_f64()),
                lerp(y, rng.next_f64()),
                lerp(z, rng.next_f64()),
            ),
            Region::Sector {
                origin,
                radius,
                angle,
                y,
            } => {
                // Uniform in area: r² uniform.
                let r = (radius.0 * radius.0
                    + (radius.1 * radius.1 - radius.0 * radius.0) * rng.next_f64())
                .sqrt();
                let a = lerp(angle, rng.next_f64());
                DVec3::new(
                    origin[0] + r * a.sin(),
                    lerp(y, rng.next_f64()),
                    origin[1] + r * a.cos(),
                )
            }
        }
    }
}

/// What the scene holds, in engine units (m, s, Hz).
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Speckle {
        region: Region,
        count: usize,
        amplitude: f64,
    },
    /// A cylinder along y through (x, z).
    Inclusion {
        center: [f64; 2],
        radius: f64,
        gain: f64,
    },
    Points {
        positions: Vec<DVec3>,
        amplitude: f64,
    },
}

/// A phantom: objects drawn in order from one seed.
#[derive(Debug, Clone, PartialEq)]
pub struct Phantom {
    pub seed: u64,
    pub objects: Vec<Object>,
}

impl Phantom {
    /// The scatterers, deterministically. Speckle first (each region in
    /// turn), then every inclusion scales the speckle inside it (gain 0
    /// removes it), then the point targets.
    pub fn scatterers(&self) -> Vec<Scatterer> {
        let mut rng = Rng::new(self.seed);
        let mut speckle: Vec<Scatterer> = Vec::new();
        for o in &self.objects {
            if let Object::Speckle {
                region,
                count,
                amplitude,
            } = o
            {
                speckle.reserve(*count);
                for _ in 0..*count {
                    let position = region.sample(&mut rng);
                    // Rayleigh of mean `amplitude`: sigma = mean / sqrt(π/2).
                    let u = rng.next_f64().max(1e-300);
                    let a =
                        amplitude / (std::f64::consts::PI / 2.0).sqrt() * (-2.0 * u.ln()).sqrt();
                    speckle.push(Scatterer {
                        position,
                        amplitude: a,
                    });
                }
            }
        }
        for o in &self.objects {
            if let Object::Inclusion {
                center,
                radius,
                gain,
            } = o
            {
                for s in speckle.iter_mut() {
                    let (dx, dz) = (s.position.x - center[0], s.position.z - center[1]);
                    if dx * dx + dz * dz <= radius * radius {
                        s.amplitude *= gain;
                    }
                }
            }
        }
        let mut out: Vec<Scatterer> = speckle.into_iter().filter(|s| s.amplitude != 0.0).collect();
        for o in &self.objects {
            if let Object::Points {
                positions,
                amplitude,
            } = o
            {
                out.extend(positions.iter().map(|p| Scatterer {
                    position: *p,
                    amplitude: *amplitude,
                }));
            }
        }
        out
    }

    pub fn points(&self) -> Vec<DVec3> {
        self.objects
            .iter()
            .flat_map(|o| match o {
                Object::Points { positions, .. } => positions.clone(),
                _ => Vec::new(),
            })
            .collect()
    }

    /// (centre x, z; radius; gain) of every inclusion.
    pub fn inclusions(&self) -> Vec<([f64; 2], f64, f64)> {
        self.objects
            .iter()
            .filter_map(|o| match o {
                Object::Inclusion {
                    center,
                    radius,
                    gain,
                } => Some((*center, *radius, *gain)),
                _ => None,
            })
            .collect()
    }
}

/// A phantom scene: everything `sonoguide simulate SCENE.toml` needs.
#[derive(Debug, Clone)]
pub struct PhantomScene {
    pub name: String,
    pub description: String,
    pub acquisition: Acquisition,
    pub samples: usize,
    pub settings: SimSettings,
    pub phantom: Phantom,
    /// The `[image]` grid, if the file gives one.
    pub image: Option<PixelGrid>,
}

/// Probe presets (PyMUST's `getparam`, Verasonics probes). Lengths m, Hz.
struct Preset {
    kind: &'static str,
    elements: usize,
    pitch: f64,
    width: f64,
    height: f64,
    focus: f64,
    radius: f64,
    fc: f64,
    bandwidth: f64,
}

fn preset(name: &str) -> Option<Preset> {
    let p = |kind, elements, pitch, width, height, focus, radius, fc, bandwidth| Preset {
        kind,
        elements,
        pitch,
        width,
        height,
        focus,
        radius,
        fc,
        bandwidth,
    };
    Some(match name.to_uppercase().as_str() {
        "L11-5V" => p(
            "linear", 128, 0.3e-3, 0.27e-3, 5e-3, 18e-3, 0.0, 7.6e6, 77.0,
        ),
        "L12-3V" => p(
            "linear", 192, 0.2e-3, 0.17e-3, 5e-3, 20e-3, 0.0, 7.54e6, 93.0,
        ),
        "C5-2V" => p(
            "convex", 128, 0.508e-3, 0.46e-3, 13.5e-3, 60e-3, 49.57e-3, 3.57e6, 79.0,
        ),
        "P4-2V" => p(
            "phased", 64, 0.3e-3, 0.25e-3, 14e-3, 60e-3, 0.0, 2.72e6, 74.0,
        ),
        _ => return None,
    })
}

/// Resolution cell area in the image plane, m²: λ by c / (2 B fc).
pub fn resolution_cell(c: f64, fc: f64, bandwidth: f64) -> f64 {
    (c / fc) * (c / (2.0 * bandwidth * fc))
}

impl PhantomScene {
    pub fn load(path: &Path) -> Result<PhantomScene, PhantomError> {
        let text = crate::io::toml_file::read(path)?;
        PhantomScene::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<PhantomScene, PhantomError> {
        let file: File = crate::io::toml_file::parse(text, path).map_err(|e| {
            // A hip scene fails on its first section as an unknown field,
            // which does not say that the file is of the wrong kind.
            match crate::io::toml_file::other_kind(text, &SECTIONS, &crate::scene::SECTIONS) {
                Some(section) => PhantomError::WrongKind {
                    file: path.to_path_buf(),
                    found: "hip",
                    section,
                    wanted: "simulate and metrics take a phantom scene such as scenes/phantom-picmus.toml",
                },
                None => e,
            }
        })?;
        let list = crate::io::toml_file::list::<f64>;
        let bad = |span: Range<usize>, message: String| {
            crate::io::toml_file::invalid(path, text, span, message)
        };
        let positive = |v: &Spanned<f64>, what: &str| -> Result<f64, PhantomError> {
            let x = *v.get_ref();
            if x.is_finite() && x > 0.0 {
                Ok(x)
            } else {
                Err(bad(
                    v.span(),
                    format!("{what} is {x}: expected a positive number"),
                ))
            }
        };
        let finite = |v: &Spanned<f64>, what: &str| -> Result<f64, PhantomError> {
            let x = *v.get_ref();
            if x.is_finite() {
                Ok(x)
            } else {
                Err(bad(
                    v.span(),
                    format!("{what} is {x}: expected a finite number"),
                ))
            }
        };
        let range = |v: &Spanned<Vec<f64>>, what: &str| -> Result<(f64, f64), PhantomError> {
            match *v.get_ref().as_slice() {
                [a, b] if a.is_finite() && b.is_finite() && a < b => Ok((a * 1e-3, b * 1e-3)),
                ref p => Err(bad(
                    v.span(),
                    format!(
                        "{what} is {}: expected 2 numbers [low, high] with low < high (mm)",
                        list(p)
                    ),
                )),
            }
        };
        let degrees = |v: &Spanned<Vec<f64>>, what: &str| -> Result<(f64, f64), PhantomError> {
            match *v.get_ref().as_slice() {
                [a, b] if a.is_finite() && b.is_finite() && a < b && a > -180.0 && b < 180.0 => {
                    Ok((a.to_radians(), b.to_radians()))
                }
                ref p => Err(bad(v.span(), format!("{what} is {}: expected 2 numbers [low, high], degrees from +z, low < high, within ±180", list(p)))),
            }
        };
        let s = &file.scene;
        if s.units.get_ref() != "mm" {
            return Err(bad(s.units.span(), format!("scene.units = \"{}\": expected \"mm\" (lengths in mm, angles in degrees, frequencies in MHz)", s.units.get_ref())));
        }

        // ---- medium
        let (mut c, mut attenuation) = (1540.0, 0.0);
        if let Some(m) = &file.medium {
            if let Some(v) = &m.get_ref().sound_speed {
                c = positive(v, "medium.sound_speed (m/s)")?;
            }
            if let Some(v) = &m.get_ref().attenuation {
                attenuation = *v.get_ref();
                if !(attenuation.is_finite() && attenuation >= 0.0) {
                    return Err(bad(
                        v.span(),
                        format!("medium.attenuation is {attenuation}: expected >= 0 dB/cm/MHz"),
                    ));
                }
            }
        }

        // ---- probe
        let ps = file.probe.get_ref();
        let probe_span = file.probe.span();
        let pre = match &ps.preset {
            Some(name) => Some(preset(name.get_ref()).ok_or_else(|| {
                bad(
                    name.span(),
                    format!(
                        "probe.preset = \"{}\": expected one of L11-5v, L12-3v, C5-2v, P4-2v",
                        name.get_ref()
                    ),
                )
            })?),
            None => None,
        };
        let need = |v: &Option<Spanned<f64>>,
                    from: Option<f64>,
                    what: &str,
                    unit: f64|
         -> Result<f64, PhantomError> {
            match v {
                Some(v) => Ok(positive(v, what)? * unit),
                None => from.ok_or_else(|| {
                    bad(
                        probe_span.clone(),
                        format!("{what} is missing (or give a probe.preset)"),
                    )
                }),
            }
        };
        let kind = match &ps.kind {
            Some(k) => k.get_ref().clone(),
            None => pre.as_ref().map(|p| p.kind.to_string()).ok_or_else(|| {
                bad(
                    probe_span.clone(),
                    "probe.kind is missing: linear, convex or phased".into(),
                )
            })?,
        };
        let n = match &ps.elements {
            Some(v) => {
                let n = *v.get_ref();
                if !(1..=4096).contains(&n) {
                    return Err(bad(
                        v.span(),
                        format!("probe.elements is {n}: expected 1 to 4096 elements"),
                    ));
                }
                n as usize
            }
            None => pre
                .as_ref()
                .map(|p| p.elements)
                .ok_or_else(|| bad(probe_span.clone(), "probe.elements is missing".into()))?,
        };
        let pitch = need(
            &ps.pitch,
            pre.as_ref().map(|p| p.pitch),
            "probe.pitch (mm)",
            1e-3,
        )?;
        let width = need(
            &ps.element_width,
            pre.as_ref().map(|p| p.width),
            "probe.element_width (mm)",
            1e-3,
        )?;
        if width > pitch * 1.0001 {
            return Err(bad(
                ps.element_width
                    .as_ref()
                    .map(|v| v.span())
                    .unwrap_or(probe_span.clone()),
                format!(
                    "probe.element_width {} mm is wider than the pitch {} mm",
                    width * 1e3,
                    pitch * 1e3
                ),
            ));
        }
        let fc = need(
            &ps.center_frequency,
            pre.as_ref().map(|p| p.fc),
            "probe.center_frequency (MHz)",
            1e6,
        )?;
        let bandwidth_pct = need(
            &ps.bandwidth,
            pre.as_ref().map(|p| p.bandwidth),
            "probe.bandwidth (%)",
            1.0,
        )?;
        if bandwidth_pct >= 200.0 {
            return Err(bad(
                ps.bandwidth
                    .as_ref()
                    .map(|v| v.span())
                    .unwrap_or(probe_span.clone()),
                format!("probe.bandwidth is {bandwidth_pct} %: expected below 200 %"),
            ));
        }
        let height = match &ps.element_height {
            Some(v) => Some(positive(v, "probe.element_height (mm)")? * 1e-3),
            None => pre.as_ref().map(|p| p.height),
        };
        let focus = match &ps.elevation_focus {
            Some(v) => Some(positive(v, "probe.elevation_focus (mm)")? * 1e-3),
            None => pre.as_ref().map(|p| p.focus),
        };
        let elevation = match (ps.elevation.unwrap_or(true), height) {
            (true, Some(h)) => Some(Elevation { height: h, focus }),
            _ => None,
        };
        let probe = match kind.as_str() {
            "linear" => Probe::linear(n, pitch, width, height.unwrap_or(0.0)),
            "phased" => Probe::phased(n, pitch, width, height.unwrap_or(0.0)),
            "convex" => {
                let radius = need(
                    &ps.radius,
                    pre.as_ref().map(|p| p.radius).filter(|r| *r > 0.0),
                    "probe.radius (mm)",
                    1e-3,
                )?;
                if pitch >= 2.0 * radius
                    || (n as f64 - 1.0) * 2.0 * (pitch / (2.0 * radius)).asin()
                        >= std::f64::consts::PI
                {
                    return Err(bad(
                        probe_span.clone(),
                        format!(
                            "probe.radius {} mm is too small for {n} elements at pitch {} mm",
                            radius * 1e3,
                            pitch * 1e3
                        ),
                    ));
                }
                Probe::convex_must(n, pitch, radius, width, height.unwrap_or(0.0))
            }
            k => {
                return Err(bad(
                    ps.kind
                        .as_ref()
                        .map(|v| v.span())
                        .unwrap_or(probe_span.clone()),
                    format!("probe.kind = \"{k}\": expected \"linear\", \"convex\" or \"phased\""),
                ))
            }
        };
        let baffle = match &ps.baffle {
            None => Baffle::Soft,
            Some(v) => match v.get_ref() {
                toml::Value::String(s) if s == "soft" => Baffle::Soft,
                toml::Value::String(s) if s == "rigid" => Baffle::Rigid,
                toml::Value::Float(b) if *b > 0.0 && b.is_finite() => Baffle::Impedance(*b),
                toml::Value::Integer(b) if *b > 0 => Baffle::Impedance(*b as f64),
                other => return Err(bad(v.span(), format!("probe.baffle = {other}: expected \"soft\", \"rigid\" or a positive impedance ratio"))),
            },
        };
        let segments = match &ps.segments {
            Some(v) => {
                let m = *v.get_ref();
                if !(1..=super::MAX_SEGMENTS as i64).contains(&m) {
                    return Err(bad(
                        v.span(),
                        format!(
                            "probe.segments is {m}: expected 1 to {}",
                            super::MAX_SEGMENTS
                        ),
                    ));
                }
                Some(m as usize)
            }
            None => None,
        };

        // ---- pulse
        let pulse =
            match &file.pulse {
                None => Pulse::Cycles(1.0),
                Some(p) => {
                    let pp = p.get_ref();
                    match (&pp.cycles, &pp.waveform) {
                        (Some(c), None) => Pulse::Cycles(positive(c, "pulse.cycles")?),
                        (None, Some(w)) => {
                            let rate = pp.waveform_rate.as_ref().ok_or_else(|| {
                                bad(
                                    w.span(),
                                    "pulse.waveform needs pulse.waveform_rate (MHz)".into(),
                                )
                            })?;
                            let rate = positive(rate, "pulse.waveform_rate (MHz)")? * 1e6;
                            let samples = w.get_ref().clone();
                            if samples.is_empty()
                                || samples.iter().any(|v| !v.is_finite())
                                || samples.iter().all(|v| *v == 0.0)
                            {
                                return Err(bad(
                                w.span(),
                                "pulse.waveform: expected a list of finite samples, not all zero"
                                    .into(),
                            ));
                            }
                            let origin = pp
                                .waveform_origin
                                .unwrap_or((samples.len() as f64 - 1.0) / 2.0);
                            Pulse::Waveform {
                                sampling_frequency: rate,
                                origin,
                                samples,
                            }
                        }
                        _ => return Err(bad(
                            p.span(),
                            "[pulse]: give either `cycles` or `waveform` (with `waveform_rate`)"
                                .into(),
                        )),
                    }
                }
            };

        // ---- transmit
        let ts = file.transmit.get_ref();
        let angles = ts.angles.get_ref();
        if angles.is_empty()
            || angles.len() > 256
            || angles.iter().any(|a| !a.is_finite() || a.abs() >= 90.0)
        {
            return Err(bad(
                ts.angles.span(),
                "transmit.angles: expected 1 to 256 angles in degrees, each between -90 and 90"
                    .into(),
            ));
        }
        let apex_z = probe
            .elements
            .iter()
            .map(|e| e.position.z)
            .fold(f64::NEG_INFINITY, f64::max);
        let aperture = probe.elements.last().map(|e| e.position.x).unwrap_or(0.0)
            - probe.elements.first().map(|e| e.position.x).unwrap_or(0.0);
        let apex = DVec3::new(0.0, 0.0, apex_z);
        let wavefronts: Vec<Wavefront> = match ts.kind.get_ref().as_str() {
            "plane" => angles
                .iter()
                .map(|a| Wavefront::Plane {
                    azimuth: a.to_radians(),
                })
                .collect(),
            "diverging" => {
                let d = match (&ts.source_distance, &probe.kind) {
                    (Some(v), _) => positive(v, "transmit.source_distance (mm)")? * 1e-3,
                    (None, ProbeKind::Convex { radius, .. }) => *radius,
                    (None, _) => aperture.max(pitch),
                };
                angles
                    .iter()
                    .map(|a| {
                        let t = a.to_radians();
                        Wavefront::Diverging {
                            source: apex - d * DVec3::new(t.sin(), 0.0, t.cos()),
                        }
                    })
                    .collect()
            }
            "focused" => {
                let v = ts.focus_depth.as_ref().ok_or_else(|| {
                    bad(
                        ts.kind.span(),
                        "transmit.kind = \"focused\" needs transmit.focus_depth (mm)".into(),
                    )
                })?;
                let d = positive(v, "transmit.focus_depth (mm)")? * 1e-3;
                angles
                    .iter()
                    .map(|a| {
                        let t = a.to_radians();
                        Wavefront::Focused {
                            focus: apex + d * DVec3::new(t.sin(), 0.0, t.cos()),
                        }
                    })
                    .collect()
            }
            k => {
                return Err(bad(
                    ts.kind.span(),
                    format!(
                        "transmit.kind = \"{k}\": expected \"plane\", \"diverging\" or \"focused\""
                    ),
                ))
            }
        };
        // MUST's time zero: the first element fires at t = 0.
        let waves: Vec<Wave> = wavefronts
            .into_iter()
            .map(|wf| {
                let first = probe
                    .elements
                    .iter()
                    .map(|e| wf.transmit_distance(e.position))
                    .fold(f64::INFINITY, f64::min);
                Wave {
                    wavefront: wf,
                    delay: first / c,
                }
            })
            .collect();
        let tx_window = match &ts.window {
            Some(v) => positive(v, "transmit.window (periods)")?,
            None => DEFAULT_TX_WINDOW,
        };

        // ---- acquisition
        let acq_s = file.acquisition.as_ref().map(|a| a.get_ref());
        let fs = match acq_s.and_then(|a| a.sampling_frequency.as_ref()) {
            Some(v) => positive(v, "acquisition.sampling_frequency (MHz)")? * 1e6,
            None => 4.0 * fc,
        };
        let t0 = match acq_s.and_then(|a| a.initial_time.as_ref()) {
            Some(v) => finite(v, "acquisition.initial_time (µs)")? * 1e-6,
            None => 0.0,
        };
        let frames = match acq_s.and_then(|a| a.frames.as_ref()) {
            Some(v) => {
                let f = *v.get_ref();
                if !(1..=1024).contains(&f) {
                    return Err(bad(
                        v.span(),
                        format!("acquisition.frames is {f}: expected 1 to 1024"),
                    ));
                }
                f as usize
            }
            None => 1,
        };
        let mut acquisition = Acquisition {
            probe,
            waves,
            sampling_frequency: fs,
            initial_time: t0,
            modulation_frequency: 0.0,
            center_frequency: fc,
            bandwidth: bandwidth_pct / 100.0,
            sound_speed: c,
            prf: 0.0,
        };
        acquisition.probe.name = pre
            .as_ref()
            .and(ps.preset.as_ref())
            .map(|p| p.get_ref().clone())
            .unwrap_or(kind.clone());
        let samples = match (
            acq_s.and_then(|a| a.samples.as_ref()),
            acq_s.and_then(|a| a.depth.as_ref()),
        ) {
            (Some(v), _) => {
                let n = *v.get_ref();
                if !(2..=1 << 20).contains(&n) {
                    return Err(bad(
                        v.span(),
                        format!("acquisition.samples is {n}: expected 2 to 1048576"),
                    ));
                }
                n as usize
            }
            (None, Some(v)) => {
                samples_for_depth(&acquisition, positive(v, "acquisition.depth (mm)")? * 1e-3)
            }
            (None, None) => {
                return Err(bad(
                    file.transmit.span(),
                    "[acquisition] needs `depth` (mm) or `samples`".into(),
                ))
            }
        };

        // ---- noise
        let noise = match &file.noise {
            Some(n) => Some(Noise {
                level_db: finite(&n.get_ref().level, "noise.level (dB)")?,
                seed: n.get_ref().seed,
            }),
            None => None,
        };

        let settings = SimSettings {
            center_frequency: fc,
            bandwidth: bandwidth_pct / 100.0,
            pulse,
            elevation,
            baffle,
            attenuation,
            segments,
            tx_apodization: None,
            tx_window,
            noise,
            frames,
        };
        settings
            .validate(acquisition.probe.len())
            .map_err(|e| bad(probe_span.clone(), e.to_string()))?;

        // ---- objects
        let centre = match acquisition.probe.kind {
            ProbeKind::Convex { center, .. } => center,
            _ => [0.0, 0.0],
        };
        let cell = resolution_cell(c, fc, bandwidth_pct / 100.0);
        let mut objects = Vec::new();
        for sp in &file.speckle {
            let s = sp.get_ref();
            let y = match &s.y {
                Some(v) => range(v, "speckle.y")?,
                None => (0.0, 0.0),
            };
            let region = match (&s.x, &s.z, &s.radius, &s.angle) {
                (Some(x), Some(z), None, None) => Region::Box { x: range(x, "speckle.x")?, z: range(z, "speckle.z")?, y },
                (None, None, Some(r), Some(a)) => {
                    let (r0, r1) = range(r, "speckle.radius")?;
                    if r0 < 0.0 {
                        return Err(bad(r.span(), "speckle.radius: expected radii >= 0".into()));
                    }
                    Region::Sector { origin: centre, radius: (r0, r1), angle: degrees(a, "speckle.angle")?, y }
                }
                _ => return Err(bad(sp.span(), "[[speckle]]: give `x` and `z` (a box) or `radius` and `angle` (a sector about the probe's centre)".into())),
            };
            let count = match (&s.count, &s.density) {
                (Some(v), None) => {
                    let n = *v.get_ref();
                    if !(1..=50_000_000).contains(&n) {
                        return Err(bad(
                            v.span(),
                            format!("speckle.count is {n}: expected 1 to 50 000 000"),
                        ));
                    }
                    n as usize
                }
                (None, d) => {
                    let density = match d {
                        Some(v) => positive(v, "speckle.density (scatterers per resolution cell)")?,
                        None => 10.0,
                    };
                    let n = (density * region.area() / cell).ceil();
                    if !(1.0..=50e6).contains(&n) {
                        return Err(bad(sp.span(), format!("[[speckle]]: {n} scatterers (density × area / cell); expected 1 to 50 000 000")));
                    }
                    n as usize
                }
                (Some(v), Some(_)) => {
                    return Err(bad(
                        v.span(),
                        "[[speckle]]: give `count` or `density`, not both".into(),
                    ))
                }
            };
            let amplitude = match &s.amplitude {
                Some(v) => positive(v, "speckle.amplitude")?,
                None => 1.0,
            };
            objects.push(Object::Speckle {
                region,
                count,
                amplitude,
            });
        }
        for inc in &file.inclusion {
            let i = inc.get_ref();
            let (x, z) = match *i.center.get_ref().as_slice() {
                [x, z] if x.is_finite() && z.is_finite() => (x, z),
                ref p => {
                    return Err(bad(
                        i.center.span(),
                        format!(
                            "inclusion.center is {}: expected [x, z], 2 finite numbers (mm)",
                            list(p)
                        ),
                    ))
                }
            };
            let gain = *i.gain.get_ref();
            if !(gain.is_finite() && gain >= 0.0) {
                return Err(bad(
                    i.gain.span(),
                    format!(
                        "inclusion.gain is {gain}: expected >= 0 (0 anechoic, > 1 hyperechoic)"
                    ),
                ));
            }
            objects.push(Object::Inclusion {
                center: [x * 1e-3, z * 1e-3],
                radius: positive(&i.radius, "inclusion.radius (mm)")? * 1e-3,
                gain,
            });
        }
        for pt in &file.point {
            let p = pt.get_ref();
            let mut positions = Vec::new();
            for v in p.positions.get_ref() {
                let q = match v.as_slice() {
                    [x, z] => DVec3::new(*x, 0.0, *z),
                    [x, y, z] => DVec3::new(*x, *y, *z),
                    _ => {
                        return Err(bad(
                            p.positions.span(),
                            format!(
                                "point.positions: {} is not [x, z] or [x, y, z] (mm)",
                                list(v)
                            ),
                        ))
                    }
                };
                if !q.is_finite() {
                    return Err(bad(
                        p.positions.span(),
                        format!("point.positions: {} is not finite", list(v)),
                    ));
                }
                positions.push(q * 1e-3);
            }
            let amplitude = match &p.amplitude {
                Some(v) => finite(v, "point.amplitude")?,
                None => 1.0,
            };
            objects.push(Object::Points {
                positions,
                amplitude,
            });
        }
        let phantom = Phantom {
            seed: s.seed,
            objects,
        };
        let has_scatterers = phantom.objects.iter().any(|o| match o {
            Object::Speckle { count, .. } => *count > 0,
            Object::Points { positions, .. } => !positions.is_empty(),
            Object::Inclusion { .. } => false,
        });
        if !has_scatterers {
            return Err(bad(
                0..0,
                "the phantom is empty: add [[speckle]] or [[point]] objects".into(),
            ));
        }

        // ---- image
        let image = match &file.image {
            None => None,
            Some(im) => {
                let i = im.get_ref();
                let (cols, rows) = match *i.pixels.get_ref().as_slice() {
                    [cols, rows] if (1..=8192).contains(&cols) && (1..=8192).contains(&rows) => {
                        (cols, rows)
                    }
                    ref p => return Err(bad(i.pixels.span(), format!("image.pixels is {}: expected 2 numbers [columns, rows], each 1 to 8192", crate::io::toml_file::list(p)))),
                };
                Some(match (&i.x, &i.z, &i.radius, &i.angle) {
                    (Some(x), Some(z), None, None) => PixelGrid::Cartesian { x: range(x, "image.x")?, z: range(z, "image.z")?, nx: cols as usize, nz: rows as usize },
                    (None, None, Some(r), Some(a)) => {
                        PixelGrid::Polar { origin: centre, radius: range(r, "image.radius")?, angle: degrees(a, "image.angle")?, nr: rows as usize, na: cols as usize }
                    }
                    _ => return Err(bad(im.span(), "[image]: give `x` and `z` (Cartesian) or `radius` and `angle` (polar about the probe's centre)".into())),
                })
            }
        };
        Ok(PhantomScene {
            name: s.name.clone(),
            description: s.description.clone(),
            acquisition,
            samples,
            settings,
            phantom,
            image,
        })
    }
}

/// Samples to record the echoes of everything down to `depth` (m below the
/// apex), with the pulse tail: the last element to fire, plus the longest
/// path to that depth and back, plus 8 periods.
pub fn samples_for_depth(acq: &Acquisition, depth: f64) -> usize {
    let c = acq.sound_speed;
    let apex = acq
        .probe
        .elements
        .iter()
        .map(|e| e.position.z)
        .fold(f64::NEG_INFINITY, f64::max);
    let xs = acq.probe.elements.iter().map(|e| e.position.x);
    let half = xs.clone().fold(0.0f64, |m, x| m.max(x.abs()));
    let deep = apex + depth;
    let path = deep + (deep * deep + 4.0 * half * half).sqrt();
    let last_fire = acq
        .waves
        .iter()
        .flat_map(|w| crate::acquisition::transmit::must_delays(&acq.probe, w, c))
        .fold(0.0f64, f64::max);
    let t_end = last_fire + path / c + 8.0 / acq.center_frequency;
    (((t_end - acq.initial_time) * acq.sampling_frequency)
        .ceil()
        .max(2.0)) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    const PICMUS: &str = include_str!("../../scenes/phantom-picmus.toml");

    fn parse_err(text: &str) -> String {
        match PhantomScene::parse(text, Path::new("test.toml")) {
            Ok(_) => panic!("accepted a bad scene"),
            Err(e) => e.to_string(),
        }
    }

    /// Every fixed-length list names its field and its length when it has
    /// another (toml drops a fixed-size array's extra entries unseen), at its
    /// own line; the non-finite ones too.
    #[test]
    fn lists_of_the_wrong_length_or_not_finite_are_errors() {
        PhantomScene::parse(PICMUS, Path::new("test.toml")).unwrap();
        for (from, to, expected) in [
            (
                "x = [-18, 18]\nz = [5, 48]\ny",
                "x = [-10, 10, 3]\nz = [5, 48]\ny",
                "speckle.x is [-10, 10, 3]: expected 2 numbers",
            ),
            (
                "z = [5, 48]\ny = [-1, 1]",
                "z = [5, 48]\ny = [-1]",
                "speckle.y is [-1]: expected 2 numbers",
            ),
            (
                "z = [5, 48]\ny = [-1, 1]",
                "z = [5, 48]\ny = [-1, nan]",
                "speckle.y is [-1, NaN]: expected 2 numbers",
            ),
            (
                "center = [-9, 17]",
                "center = [-9, 17, 3, 4]",
                "inclusion.center is [-9, 17, 3, 4]: expected [x, z], 2 finite numbers",
            ),
            (
                "center = [-9, 17]",
                "center = [-9, inf]",
                "inclusion.center is [-9, inf]: expected [x, z], 2 finite numbers",
            ),
            (
                "x = [-18, 18]\nz = [5, 48]\npixels",
                "x = [-18, 18, 20]\nz = [5, 48]\npixels",
                "image.x is [-18, 18, 20]: expected 2 numbers",
            ),
            (
                "pixels = [361, 431]",
                "pixels = [361, 431, 3]",
                "image.pixels is [361, 431, 3]: expected 2 numbers",
            ),
            (
                "positions = [[0, 9], ",
                "positions = [[0, 9, 1, 2], ",
                "point.positions: [0, 9, 1, 2] is not [x, z] or [x, y, z]",
            ),
            (
                "pixels = [361, 431]",
                "pixels = [361]",
                "image.pixels is [361]: expected 2 numbers",
            ),
        ] {
            let text = PICMUS.replacen(from, to, 1);
            assert_ne!(text, PICMUS, "{from} not in the scene");
            let e = parse_err(&text);
            let changed = to.lines().find(|l| !from.contains(*l)).unwrap();
            let line = text.lines().position(|l| l.starts_with(changed)).unwrap() + 1;
            assert!(
                e.contains(&format!("test.toml:{line}:")) && e.contains(expected),
                "{to}: {e}"
            );
        }
        // Sector regions and polar images (the convex scene) too.
        let convex = include_str!("../../scenes/phantom-convex-cyst.toml");
        let e = parse_err(&convex.replacen("angle = [", "angle = [0, ", 1));
        assert!(
            e.contains("speckle.angle is [0, ") && e.contains("expected 2 numbers"),
            "{e}"
        );
        let e = parse_err(&convex.replacen("radius = [", "radius = [1, ", 1));
        assert!(
            e.contains("speckle.radius is [1, ") && e.contains("expected 2 numbers"),
            "{e}"
        );
        let e = parse_err(&convex.replacen("angle = [-37, 37]", "angle = [-37, 37, 1]", 1));
        assert!(
            e.contains("image.angle is [-37, 37, 1]: expected 2 numbers"),
            "{e}"
        );
    }
}
