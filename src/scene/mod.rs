//! Scene files: the hip anatomy, the probe, the needle, the approach and
//! a scripted insertion, shared by the renderer, the tests and (later) the
//! display and the benchmarks.
//!
//! Files are TOML with `units = "mm"` stated in `[scene]`: lengths in
//! millimetres, angles in degrees, times in seconds, frequencies in MHz.
//! Unknown fields are errors, and every error names the line.

pub mod anatomy;
pub mod needle;
pub mod pose;
pub mod render;

use std::ops::Range;
use std::path::Path;

use glam::DVec3;
use serde::Deserialize;
use toml::Spanned;

use crate::acquisition::{Acquisition, Probe, ProbeKind, Wave};
use anatomy::{BeamOrigin, Hip};
use needle::Needle;
use pose::{Pose, PoseSample, Tremor};

pub type SceneError = crate::io::toml_file::TomlFileError;

/// The sections only a hip scene has (both kinds have `[scene]` and
/// `[probe]`): how a phantom scene's reader tells a hip scene given to it.
pub const SECTIONS: [&str; 4] = ["anatomy", "needle", "approach", "trajectory"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SceneFile {
    pub scene: SceneSection,
    pub probe: ProbeSection,
    #[serde(default)]
    pub anatomy: AnatomySection,
    pub needle: NeedleSection,
    pub approach: Spanned<ApproachSection>,
    #[serde(default)]
    pub trajectory: TrajectorySection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SceneSection {
    pub name: String,
    /// Must be "mm": lengths in mm, angles in degrees, times in s, frequencies in MHz.
    pub units: Spanned<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default = "default_seed")]
    pub seed: u64,
}

fn default_seed() -> u64 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSection {
    /// A name for the record (e.g. "C5-2v").
    pub model: String,
    /// "convex" or "linear".
    pub kind: Spanned<String>,
    pub elements: Spanned<usize>,
    pub pitch: Spanned<f64>,
    /// Radius of curvature (convex only).
    #[serde(default)]
    pub radius: Option<Spanned<f64>>,
    pub element_width: Spanned<f64>,
    #[serde(default = "default_height")]
    pub element_height: Spanned<f64>,
    pub center_frequency: Spanned<f64>,
    /// Pulse-echo fractional bandwidth, percent.
    pub bandwidth: Spanned<f64>,
    /// Imaging depth below the probe face.
    pub depth: Spanned<f64>,
    /// Transmitted waves per frame (diverging for convex, plane for linear).
    #[serde(default = "default_waves")]
    pub waves: Spanned<usize>,
    /// Angle between the outermost waves (degrees).
    #[serde(default = "default_spread")]
    pub wave_spread: Spanned<f64>,
    #[serde(default = "default_c")]
    pub sound_speed: Spanned<f64>,
    /// Speckle scatterers per cubic millimetre.
    #[serde(default = "default_density")]
    pub scatterer_density: Spanned<f64>,
}

fn default_height() -> Spanned<f64> {
    Spanned::new(0..0, 13.0)
}
fn default_waves() -> Spanned<usize> {
    Spanned::new(0..0, 3)
}
fn default_spread() -> Spanned<f64> {
    Spanned::new(0..0, 20.0)
}
fn default_c() -> Spanned<f64> {
    Spanned::new(0..0, 1540.0)
}
fn default_density() -> Spanned<f64> {
    Spanned::new(0..0, 6.0)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnatomySection {
    /// Fill the anterior recess with anechoic fluid (and widen it).
    #[serde(default)]
    pub effusion: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeedleSection {
    pub gauge: Spanned<u32>,
    pub length: Spanned<f64>,
    #[serde(default = "default_bevel")]
    pub bevel: Spanned<f64>,
}

fn default_bevel() -> Spanned<f64> {
    Spanned::new(0..0, 30.0)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproachSection {
    /// "anterior-longitudinal" or "anterolateral".
    pub kind: Spanned<String>,
    /// Needle entry on the skin, patient frame (mm); default from the approach.
    /// A list, not `[f64; 3]`: toml drops a fixed-size array's extra entries
    /// unseen, so the length is checked in [`Scene::parse`].
    #[serde(default)]
    pub entry: Option<Spanned<Vec<f64>>>,
    /// Needle target, patient frame (mm); default from the approach.
    #[serde(default)]
    pub target: Option<Spanned<Vec<f64>>>,
    /// Structures the path must keep away from, and by how much (mm).
    #[serde(default)]
    pub avoid: Vec<String>,
    #[serde(default = "default_margin")]
    pub avoid_margin: Spanned<f64>,
}

fn default_margin() -> Spanned<f64> {
    Spanned::new(0..0, 5.0)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrajectorySection {
    /// Seconds from skin to target.
    #[serde(default = "default_duration")]
    pub duration: Spanned<f64>,
    /// Tremor amplitude (mm) and angle (degrees), both tools.
    #[serde(default = "default_tremor")]
    pub tremor: Spanned<f64>,
    #[serde(default = "default_tremor_angle")]
    pub tremor_angle: Spanned<f64>,
}

impl Default for TrajectorySection {
    fn default() -> Self {
        TrajectorySection {
            duration: default_duration(),
            tremor: default_tremor(),
            tremor_angle: default_tremor_angle(),
        }
    }
}

fn default_duration() -> Spanned<f64> {
    Spanned::new(0..0, 4.0)
}
fn default_tremor() -> Spanned<f64> {
    Spanned::new(0..0, 0.25)
}
fn default_tremor_angle() -> Spanned<f64> {
    Spanned::new(0..0, 0.3)
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Approach {
    AnteriorLongitudinal,
    Anterolateral,
}

/// Where the tools are for one frame: probe and needle (`ProbeToReference`,
/// `NeedleToReference`) and the length of shaft in the body.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FramePoses {
    pub time: f64,
    pub probe: Pose,
    pub needle: Pose,
    pub inserted: f64,
}

/// A scene resolved into the engine's terms (metres, radians, seconds).
#[derive(Debug, Clone)]
pub struct Scene {
    pub name: String,
    pub seed: u64,
    pub approach: Approach,
    pub hip: Hip,
    pub acquisition: Acquisition,
    pub depth: f64,
    pub scatterer_density: f64,
    pub needle: Needle,
    /// Probe frame (= MUST image frame: x along the array, z depth, origin
    /// at the chord centre) to patient, before tremor.
    pub probe_to_reference: Pose,
    /// Image plane to probe frame: identity here, kept explicit because a
    /// tracked system calibrates it.
    pub image_to_probe: Pose,
    /// Needle frame: origin at the hub, +z along the shaft to the tip.
    pub needle_tip_to_needle: Pose,
    pub entry: DVec3,
    pub target: DVec3,
    pub duration: f64,
    pub tremor: (f64, f64),
}

/// The hip scenes, built into the binary under their path in the
/// repository, so that `sonoguide` (the view on the first) runs from any
/// directory. A file at that path, when there is one, wins: edits to the
/// scenes take effect without a rebuild.
pub const BUILTIN: [(&str, &str); 2] = [
    (
        "scenes/hip-anterior-longitudinal.toml",
        include_str!("../../scenes/hip-anterior-longitudinal.toml"),
    ),
    (
        "scenes/hip-anterolateral.toml",
        include_str!("../../scenes/hip-anterolateral.toml"),
    ),
];

/// The built-in text for `path`, when no file is there and it names one.
pub fn builtin(path: &Path) -> Option<&'static str> {
    if path.exists() {
        return None;
    }
    BUILTIN
        .iter()
        .find(|(name, _)| path == Path::new(name))
        .map(|(_, text)| *text)
}

/// Whether [`Scene::load`] can find `path` (a file, or a built-in scene).
pub fn available(path: &Path) -> bool {
    path.exists() || builtin(path).is_some()
}

impl Scene {
    pub fn load(path: &Path) -> Result<Scene, SceneError> {
        if let Some(text) = builtin(path) {
            return Scene::parse(text, path);
        }
        let text = crate::io::toml_file::read(path)?;
        Scene::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Scene, SceneError> {
        let file: SceneFile = crate::io::toml_file::parse(text, path).map_err(|e| {
            // A phantom scene fails on its first section as an unknown
            // field, which does not say that the file is of the wrong kind.
            match crate::io::toml_file::other_kind(text, &SECTIONS, &crate::sim::phantom::SECTIONS)
            {
                Some(section) => SceneError::WrongKind {
                    file: path.to_path_buf(),
                    found: "phantom",
                    section,
                    wanted: "view, render, run, serve-images and replay take a hip scene such as scenes/hip-anterior-longitudinal.toml",
                },
                None => e,
            }
        })?;
        let bad = |span: Range<usize>, message: String| {
            crate::io::toml_file::invalid(path, text, span, message)
        };
        let s = &file.scene;
        if s.units.get_ref() != "mm" {
            return Err(bad(s.units.span(), format!("units = \"{}\": expected \"mm\" (lengths in mm, angles in degrees, times in s, frequencies in MHz)", s.units.get_ref())));
        }
        let p = &file.probe;
        // A number of `what` within [lo, hi] (`expected` says so).
        let within = |v: &Spanned<f64>, what: &str, lo: f64, hi: f64, expected: &str| {
            let x = *v.get_ref();
            if x.is_finite() && (lo..=hi).contains(&x) {
                Ok(x)
            } else {
                Err(bad(v.span(), format!("{what} is {x}: expected {expected}")))
            }
        };
        let positive = |v: &Spanned<f64>, what: &str| {
            within(v, what, f64::MIN_POSITIVE, f64::MAX, "a positive number")
        };
        // A point of the patient frame, mm to m. Every coordinate finite: a
        // NaN passes every comparison below and the needle vanishes.
        let position = |v: &Spanned<Vec<f64>>, what: &str| match v.get_ref().as_slice() {
            &[x, y, z] if [x, y, z].iter().all(|c| c.is_finite()) => Ok(DVec3::new(x, y, z) * 1e-3),
            p => Err(bad(
                v.span(),
                format!(
                    "{what} is {}: expected [x, y, z], 3 finite numbers (mm)",
                    crate::io::toml_file::list(p)
                ),
            )),
        };
        let c = positive(&p.sound_speed, "probe.sound_speed (m/s)")?;
        let fc = positive(&p.center_frequency, "probe.center_frequency (MHz)")? * 1e6;
        let pitch = positive(&p.pitch, "probe.pitch (mm)")? * 1e-3;
        let depth = within(
            &p.depth,
            "probe.depth (mm)",
            f64::MIN_POSITIVE,
            300.0,
            "a depth above 0 and up to 300 mm",
        )? * 1e-3;
        let n = *p.elements.get_ref();
        if !(2..=4096).contains(&n) {
            return Err(bad(
                p.elements.span(),
                format!("probe.elements is {n}: expected 2 to 4096 elements"),
            ));
        }
        let bandwidth = *p.bandwidth.get_ref();
        if !(bandwidth > 0.0 && bandwidth < 200.0) {
            return Err(bad(
                p.bandwidth.span(),
                format!("probe.bandwidth {bandwidth} %: expected 0 < bandwidth < 200"),
            ));
        }
        let n_waves = *p.waves.get_ref();
        if n_waves == 0 || n_waves > 64 {
            return Err(bad(
                p.waves.span(),
                format!("probe.waves is {n_waves}: expected 1 to 64"),
            ));
        }
        let width = within(
            &p.element_width,
            "probe.element_width (mm)",
            f64::MIN_POSITIVE,
            pitch * 1e3,
            &format!("a positive width up to the pitch, {} mm", pitch * 1e3),
        )? * 1e-3;
        let height = positive(&p.element_height, "probe.element_height (mm)")? * 1e-3;
        let spread = within(
            &p.wave_spread,
            "probe.wave_spread (degrees)",
            0.0,
            90.0,
            "0 to 90 degrees between the outermost waves",
        )?;
        // Beyond this the display's few thousand scatterers per image
        // become millions (the presets set their own).
        let density = within(
            &p.scatterer_density,
            "probe.scatterer_density (per mm³)",
            0.0,
            50.0,
            "0 to 50 scatterers per cubic millimetre",
        )?;
        let probe = match p.kind.get_ref().as_str() {
            "convex" => {
                let r = p.radius.as_ref().ok_or_else(|| {
                    bad(p.kind.span(), "a convex probe needs `radius` (mm)".into())
                })?;
                let radius = positive(r, "probe.radius (mm)")? * 1e-3;
                Probe::convex_must(n, pitch, radius, width, height)
            }
            "linear" => Probe::linear(n, pitch, width, height),
            k => {
                return Err(bad(
                    p.kind.span(),
                    format!("probe.kind = \"{k}\": expected \"convex\" or \"linear\""),
                ))
            }
        };
        let waves = scene_waves(&probe, n_waves, spread.to_radians(), c);
        let acquisition = Acquisition {
            probe,
            waves,
            sampling_frequency: 4.0 * fc,
            initial_time: 0.0,
            modulation_frequency: 0.0,
            center_frequency: fc,
            bandwidth: bandwidth / 100.0,
            sound_speed: c,
            prf: 0.0,
        };

        let gauge = *file.needle.gauge.get_ref();
        let needle = Needle::new(
            gauge,
            positive(&file.needle.length, "needle.length (mm)")? * 1e-3,
            within(
                &file.needle.bevel,
                "needle.bevel (degrees)",
                5.0,
                90.0,
                "a bevel angle of 5 to 90 degrees",
            )?,
        )
        .map_err(|m| bad(file.needle.gauge.span(), format!("needle.{m}")))?;

        let ap = file.approach.get_ref();
        let approach = match ap.kind.get_ref().as_str() {
            "anterior-longitudinal" => Approach::AnteriorLongitudinal,
            "anterolateral" => Approach::Anterolateral,
            k => return Err(bad(ap.kind.span(), format!("approach.kind = \"{k}\": expected \"anterior-longitudinal\" or \"anterolateral\""))),
        };
        let hip = Hip::new(file.anatomy.effusion);
        let (probe_to_reference, default_entry, default_target) =
            place(&hip, approach, &acquisition.probe);
        let entry = match &ap.entry {
            Some(v) => position(v, "approach.entry")?,
            None => default_entry,
        };
        let target = match &ap.target {
            Some(v) => position(v, "approach.target")?,
            None => default_target,
        };
        let target_span = ap
            .target
            .as_ref()
            .map(|t| t.span())
            .unwrap_or(ap.kind.span());
        let entry_span = ap
            .entry
            .as_ref()
            .map(|t| t.span())
            .unwrap_or(ap.kind.span());
        if target.z < -hip.skin_depth + 0.002 || hip.is_bone(target) {
            return Err(bad(target_span, format!("approach.target {:?} mm is outside the body or inside bone: it must lie in soft tissue below the skin (skin at z = {} mm)", (target * 1e3).to_array(), -hip.skin_depth * 1e3)));
        }
        if (entry.z + hip.skin_depth).abs() > 0.003 {
            return Err(bad(
                entry_span,
                format!(
                    "approach.entry z = {:.1} mm: the needle enters at the skin, z = {} mm",
                    entry.z * 1e3,
                    -hip.skin_depth * 1e3
                ),
            ));
        }
        let path = (target - entry).length();
        if path > needle.length - 0.005 {
            return Err(bad(
                file.needle.length.span(),
                format!("needle.length {:.0} mm is shorter than the path from entry to target ({:.1} mm) plus 5 mm outside the skin", needle.length * 1e3, path * 1e3),
            ));
        }
        let margin_mm = within(
            &ap.avoid_margin,
            "approach.avoid_margin (mm)",
            0.0,
            50.0,
            "0 to 50 mm",
        )?;
        let margin = margin_mm * 1e-3;
        for name in &ap.avoid {
            let tube = hip.tubes.iter().find(|t| t.name == name).ok_or_else(|| {
                bad(
                    file.approach.span(),
                    format!(
                        "approach.avoid: unknown structure `{name}`; known: {}",
                        hip.tubes
                            .iter()
                            .map(|t| t.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?;
            let closest = (0..=100)
                .map(|i| tube.distance(entry.lerp(target, i as f64 / 100.0)) - tube.radius)
                .fold(f64::INFINITY, f64::min);
            if closest < margin {
                return Err(bad(file.approach.span(), format!("the needle path passes {:.1} mm from the {name}, closer than avoid_margin = {margin_mm} mm", closest * 1e3)));
            }
        }
        let t = &file.trajectory;
        let duration = positive(&t.duration, "trajectory.duration (s)")?;
        let tremor = within(&t.tremor, "trajectory.tremor (mm)", 0.0, 10.0, "0 to 10 mm")?;
        let tremor_angle = within(
            &t.tremor_angle,
            "trajectory.tremor_angle (degrees)",
            0.0,
            10.0,
            "0 to 10 degrees",
        )?;
        Ok(Scene {
            name: s.name.clone(),
            seed: s.seed,
            approach,
            hip,
            acquisition,
            depth,
            scatterer_density: density * 1e9,
            needle,
            probe_to_reference,
            image_to_probe: Pose::IDENTITY,
            needle_tip_to_needle: Pose {
                translation: DVec3::new(0.0, 0.0, 0.0),
                rotation: glam::DQuat::IDENTITY,
            },
            entry,
            target,
            duration,
            tremor: (tremor * 1e-3, tremor_angle.to_radians()),
        })
    }

    /// Probe and needle poses at time `t` (the needle tip advancing from
    /// the skin to the target over `duration`), with tremor on both.
    pub fn poses_at(&self, t: f64) -> (Pose, Pose, f64) {
        let frac = (t / self.duration).clamp(0.0, 1.0);
        let dir = (self.target - self.entry).normalize();
        let path = (self.target - self.entry).length();
        // Ease in and out: a hand slows near the target.
        let s = frac * frac * (3.0 - 2.0 * frac);
        let tip = self.entry + dir * (path * s);
        let hub = tip - dir * self.needle.length;
        // Needle frame: z along the shaft toward the tip, origin at the hub.
        let any = if dir.y.abs() < 0.9 {
            DVec3::Y
        } else {
            DVec3::X
        };
        let x = any.cross(dir).normalize();
        let y = dir.cross(x);
        let needle = Pose::from_axes(hub, x, y, dir);
        let probe_tremor = Tremor::new(
            self.tremor.0 * 0.5,
            self.tremor.1 * 0.5,
            self.seed ^ 0x70726f62,
        );
        let needle_tremor = Tremor::new(self.tremor.0, self.tremor.1, self.seed ^ 0x6e656564);
        let probe = self.probe_to_reference.then(&probe_tremor.at(t));
        let needle = needle.then(&needle_tremor.at(t));
        (probe, needle, path * s)
    }

    /// The scripted insertion at time `t`, as a frame's poses.
    pub fn scripted(&self, t: f64) -> FramePoses {
        let (probe, needle, inserted) = self.poses_at(t);
        FramePoses {
            time: t,
            probe,
            needle,
            inserted,
        }
    }

    /// Poses from a tracker at time `t`. How much of the shaft is in the
    /// body is where the patient's skin plane (the plane the entry lies on,
    /// unflattened, as needles enter beside the probe) cuts it.
    pub fn tracked(&self, t: f64, probe: Pose, needle: Pose) -> FramePoses {
        let inward = DVec3::Z;
        let tip = self.tip_of(&needle);
        let dir = needle.rotate(DVec3::Z);
        let depth = tip.z + self.hip.skin_depth;
        let along = dir.dot(inward);
        let inserted = if depth <= 0.0 || along <= 1e-6 {
            0.0
        } else {
            (depth / along).min(self.needle.length)
        };
        FramePoses {
            time: t,
            probe,
            needle,
            inserted,
        }
    }

    /// The recordable pose stream of a run of `frames` frames.
    pub fn pose_samples(&self, frames: usize) -> Vec<PoseSample> {
        let mut out = Vec::new();
        for f in 0..frames {
            let t = self.frame_time(f, frames);
            let (p, n, _) = self.poses_at(t);
            out.push(PoseSample {
                time: t,
                tool: "ProbeToReference".into(),
                pose: p,
            });
            out.push(PoseSample {
                time: t,
                tool: "NeedleToReference".into(),
                pose: n,
            });
        }
        out
    }

    pub fn frame_time(&self, f: usize, frames: usize) -> f64 {
        if frames <= 1 {
            self.duration
        } else {
            self.duration * f as f64 / (frames - 1) as f64
        }
    }

    /// Tip position (reference frame) from a needle pose: the tip is
    /// `length` along the needle's z from the hub.
    pub fn tip_of(&self, needle_pose: &Pose) -> DVec3 {
        needle_pose.apply(DVec3::new(0.0, 0.0, self.needle.length))
    }

    pub fn beam_origin(&self, probe: &Pose) -> BeamOrigin {
        match self.acquisition.probe.kind {
            ProbeKind::Convex { center, .. } => {
                BeamOrigin::Point(probe.apply(DVec3::new(center[0], 0.0, center[1])))
            }
            _ => BeamOrigin::Parallel(probe.rotate(DVec3::Z)),
        }
    }
}

/// Waves for a scene: diverging waves from virtual sources on an arc behind
/// a convex array (as the C5-2v reference data), plane waves on a linear one.
fn scene_waves(probe: &Probe, n: usize, spread: f64, c: f64) -> Vec<Wave> {
    let tilts: Vec<f64> = (0..n)
        .map(|i| {
            if n == 1 {
                0.0
            } else {
                -spread / 2.0 + spread * i as f64 / (n - 1) as f64
            }
        })
        .collect();
    match probe.kind {
        ProbeKind::Convex { radius, center } => tilts
            .iter()
            .map(|t| {
                let h = -center[1];
                let vs = DVec3::new(-radius * t.sin(), 0.0, (radius - h) - radius * t.cos());
                Wave::from_must_delays(probe, &vec![0.0; probe.len()], c, Some(vs))
                    .expect("virtual source wave")
            })
            .collect(),
        _ => {
            let half = probe.elements.last().map(|e| e.position.x).unwrap_or(0.0);
            tilts
                .iter()
                .map(|a| Wave {
                    wavefront: crate::acquisition::Wavefront::Plane { azimuth: *a },
                    delay: -(half * a.sin().abs()) / c,
                })
                .collect()
        }
    }
}

/// Where a sonographer puts the probe for an approach, and the default
/// needle entry and target.
fn place(hip: &Hip, approach: Approach, probe: &Probe) -> (Pose, DVec3, DVec3) {
    let skin = -hip.skin_depth;
    let apex_z = probe.apex_z();
    let half_len = probe.elements.last().map(|e| e.position.x).unwrap_or(0.0);
    match approach {
        Approach::AnteriorLongitudinal => {
            // Along the femoral neck, oblique sagittal: image left toward the
            // head (superomedial), right toward the neck (inferolateral).
            let n = hip.neck_axis;
            let u = DVec3::new(n.x, n.y, 0.0).normalize();
            let d = DVec3::Z;
            let e = d.cross(u);
            let junction = n * hip.junction;
            let contact = DVec3::new(junction.x, junction.y, skin);
            let probe_pose = Pose::from_axes(contact - d * apex_z, u, e, d);
            // Target: the anterior recess at the head–neck junction, half
            // way between the cortex and the capsule.
            let s = hip.junction + 0.008;
            let anterior = (DVec3::new(0.0, 0.0, -1.0) - n * (-n.z)).normalize();
            let target = n * s + anterior * (hip.neck_radius + hip.recess_depth * 0.5);
            // In plane from the inferior end, 12 mm beyond the probe's end.
            let entry = contact + u * (half_len + 0.012);
            (probe_pose, DVec3::new(entry.x, entry.y, skin), target)
        }
        Approach::Anterolateral => {
            // Transverse over the femoral head, probe tilted 20° medially
            // from anterolateral; the needle comes from lateral.
            let tilt = 20f64.to_radians();
            let d = DVec3::new(-tilt.sin(), 0.0, tilt.cos());
            let u = DVec3::new(tilt.cos(), 0.0, tilt.sin());
            let e = d.cross(u);
            let over = DVec3::new(0.014, 0.0, skin);
            let probe_pose = Pose::from_axes(over - d * apex_z, u, e, d);
            // Far enough lateral that the shaft crosses the beams obliquely
            // (a steep needle along the beam returns no specular echo).
            let entry = DVec3::new(over.x + half_len * tilt.cos() + 0.030, 0.0, skin);
            // Resting on the anterolateral head, where the needle meets it.
            let dir = (DVec3::ZERO - entry).normalize();
            let t = hip
                .first_bone_hit(entry, dir, 1.0)
                .unwrap_or(entry.length() - hip.head_radius);
            let target = entry + dir * (t - 0.0006);
            (probe_pose, entry, target)
        }
    }
}
