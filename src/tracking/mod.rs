//! Pose sources: where the probe and the needle are at an image's time.
//!
//! Three sources sit behind one trait, [`PoseSource`]:
//! - [`ScriptedSource`]: a scene's scripted insertion (always tracked);
//! - [`RecordedSource`]: a recording (PLUS sequence metafile, ours or
//!   PLUS's), poses interpolated between recorded samples;
//! - [`endpoint::Endpoint`]: live OpenIGTLink TRANSFORM / POSITION /
//!   STATUS messages from a PLUS Server, 3D Slicer or any other peer,
//!   as client or server.
//!
//! Each tool's samples keep their timestamps ([`ToolTrack`]); a query at
//! image time `t` interpolates between the samples around `t` (linear
//! position, slerp rotation) and a watchdog marks the tool lost when its
//! newest valid sample is older than the timeout, or when the tracker
//! said it is invalid (PLUS `…TransformStatus = INVALID`, OpenIGTLink 3
//! `TransformValid = false` metadata, a STATUS other than OK).
//!
//! The real-time display calls, per frame: `let t = source.now();
//! let p = source.poses_at(t);` and draws each tool by its
//! [`ToolState`]. `scene.tracked(t, probe, needle)` turns the poses into
//! the [`FramePoses`] the renderer takes; [`frame_poses`] does that and
//! keeps a lost needle out of the image.
//!
//! [`run`] is the headless frame loop behind `sonoguide run`,
//! `serve-images` and `replay`.

pub mod command;
pub mod endpoint;
pub mod igtl;
pub mod run;

use std::collections::VecDeque;
use std::path::PathBuf;

use crate::scene::pose::Pose;
use crate::scene::{FramePoses, Scene};

#[derive(Debug, thiserror::Error)]
pub enum TrackingError {
    #[error("--tracking `{0}`: expected igtl://HOST:PORT (connect to a PLUS Server or other OpenIGTLink server), igtl-server://HOST:PORT (listen for OpenIGTLink clients), scripted, or a recording FILE.mha / FILE.nrrd")]
    BadUrl(String),
    #[error("--tracking `{}`: no such recording; check the path (or use igtl://HOST:PORT, igtl-server://HOST:PORT or scripted)", .0.display())]
    NoRecording(PathBuf),
    #[error("{addr}: cannot listen for OpenIGTLink clients: {source}; {}", bind_hint(.source, .flags))]
    Bind {
        addr: String,
        source: std::io::Error,
        /// The flags that set the port and the address, for the hint
        /// (see [`TrackingError::bind_flags`]); `None`: no flag is named.
        flags: Option<(&'static str, &'static str)>,
    },
    #[error("{0}")]
    Recording(#[from] crate::io::metafile::MetafileError),
    #[error("{path}: {what}")]
    Output { path: PathBuf, what: String },
    /// A frame's PNG (the error names its file already).
    #[error("{0}")]
    Png(#[from] crate::io::png::PngError),
    #[error("rendering frame {frame}: {what}")]
    Render { frame: usize, what: String },
    #[error("{0}")]
    Gpu(#[from] crate::gpu::GpuError),
    #[error("{0}")]
    Scene(#[from] crate::scene::SceneError),
    #[error("{0}")]
    Invalid(String),
}

/// What to do about a server that cannot listen: a port in use (or
/// privileged) wants another port, anything else (an unknown host, an
/// address not of this machine) another address. `flags`: the flags that
/// set the port and the address, which differ between commands.
fn bind_hint(e: &std::io::Error, flags: &Option<(&'static str, &'static str)>) -> String {
    let with = |flag: Option<&str>| flag.map(|f| format!(" with {f}")).unwrap_or_default();
    match e.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "is another server on that port? choose another{}",
            with(flags.map(|f| f.0))
        ),
        std::io::ErrorKind::PermissionDenied => format!(
            "ports below 1024 need privileges: choose another{}",
            with(flags.map(|f| f.0))
        ),
        _ => format!(
            "expected an address of this machine{} (127.0.0.1: this machine only, 0.0.0.0: every network)",
            with(flags.map(|f| f.1))
        ),
    }
}

impl TrackingError {
    /// Name the flags that set a server's port and address in a
    /// [`TrackingError::Bind`] hint: each command has its own.
    pub fn bind_flags(self, port: &'static str, addr: &'static str) -> TrackingError {
        match self {
            TrackingError::Bind {
                addr: a, source, ..
            } => TrackingError::Bind {
                addr: a,
                source,
                flags: Some((port, addr)),
            },
            e => e,
        }
    }
}

/// PLUS names of the tools, configurable for trackers that call them
/// otherwise (e.g. `StylusToTracker`).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolNames {
    pub probe: String,
    pub needle: String,
}

impl Default for ToolNames {
    fn default() -> Self {
        ToolNames {
            probe: "ProbeToReference".into(),
            needle: "NeedleToReference".into(),
        }
    }
}

/// Whether a tool's pose can be trusted at the queried time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolState {
    /// A valid sample at or around the time, younger than the timeout.
    Tracked,
    /// Seen before, but the newest valid sample is older than the timeout
    /// or the tracker reported the tool invalid.
    Lost,
    /// Never seen: the pose is the scene's default.
    Missing,
}

/// One tool at one image time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ToolPose {
    /// Interpolated when tracked, else the last known pose (or the scene
    /// default when missing).
    pub pose: Pose,
    /// The time the pose stands for, on the source's clock: the image time
    /// when interpolated, the sample's own stamp when held.
    pub timestamp: Option<f64>,
    pub state: ToolState,
}

/// Both tools at an image time `time`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackedPoses {
    pub time: f64,
    pub probe: ToolPose,
    pub needle: ToolPose,
}

/// Where the tools are. Implemented by the scripted, recorded and
/// OpenIGTLink sources; `Send` so that a display thread can own one.
pub trait PoseSource: Send {
    /// The probe and needle at image time `t` (seconds on the source's
    /// clock, see [`PoseSource::now`]).
    fn poses_at(&mut self, t: f64) -> TrackedPoses;
    /// The current time on the source's clock: Unix time for live
    /// OpenIGTLink (PLUS and pyigtl stamp messages with it), recording time
    /// advancing at real speed from the first sample for recordings, scene
    /// time (looping) for scripted insertions.
    fn now(&self) -> f64;
    /// For logs.
    fn describe(&self) -> String;
}

/// One timestamped sample of a tool; `pose: None` when the tracker
/// reported it invalid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// On the source's clock (the sender's stamp for OpenIGTLink).
    pub time: f64,
    /// Local Unix time when it arrived (the watchdog's clock for live
    /// sources; equal to `time` for recordings).
    pub received: f64,
    pub pose: Option<Pose>,
}

/// Seconds a sample may go back in time before it counts as a clock reset.
pub const CLOCK_RESET: f64 = 1.0;

/// A tool's recent samples, in time order, bounded.
#[derive(Debug, Clone)]
pub struct ToolTrack {
    samples: VecDeque<Sample>,
    capacity: usize,
}

impl ToolTrack {
    pub fn new(capacity: usize) -> ToolTrack {
        ToolTrack {
            samples: VecDeque::new(),
            capacity: capacity.max(2),
        }
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.samples.iter()
    }

    /// Add a sample. One slightly older than the newest is dropped
    /// (trackers stamp in order; a late one would only bend the
    /// interpolation back); one more than [`CLOCK_RESET`] older means the
    /// sender's clock restarted (a PLUS Server restarted): the history is
    /// cleared rather than every new sample refused.
    pub fn push(&mut self, s: Sample) -> bool {
        if let Some(b) = self.samples.back() {
            if s.time < b.time - CLOCK_RESET {
                log::warn!("tool samples went back {:.1} s in time: the sender's clock restarted; history cleared", b.time - s.time);
                self.samples.clear();
            } else if s.time < b.time {
                return false;
            }
        }
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(s);
        true
    }

    /// The newest valid sample.
    pub fn last_valid(&self) -> Option<&Sample> {
        self.samples.iter().rev().find(|s| s.pose.is_some())
    }

    /// The pose at `t`: interpolated between the two samples around it,
    /// held from the newest at or before `t` past the end, the first before
    /// the start. `age` is how old the newest valid sample is on the
    /// watchdog's clock; past `timeout` the tool is lost.
    pub fn at(&self, t: f64, age: f64, timeout: f64, fallback: Pose) -> ToolPose {
        // The first sample after t.
        let i = self.samples.partition_point(|s| s.time <= t);
        // What a lost tool holds: the newest valid sample at or before t
        // (the first valid one when t precedes them all).
        let before = self
            .samples
            .range(..i)
            .rev()
            .find(|s| s.pose.is_some())
            .or_else(|| self.samples.iter().find(|s| s.pose.is_some()));
        let Some(last) = before else {
            let state = if self.samples.is_empty() {
                ToolState::Missing
            } else {
                ToolState::Lost
            };
            return ToolPose {
                pose: fallback,
                timestamp: None,
                state,
            };
        };
        let held = ToolPose {
            pose: last.pose.expect("valid"),
            timestamp: Some(last.time),
            state: ToolState::Lost,
        };
        if age > timeout {
            return held;
        }
        let pose = if i == 0 {
            let first = self.samples[0];
            first.pose.map(|p| (p, first.time))
        } else if i == self.samples.len() {
            let s = self.samples[i - 1];
            s.pose.map(|p| (p, s.time))
        } else {
            let (a, b) = (self.samples[i - 1], self.samples[i]);
            match (a.pose, b.pose) {
                (Some(pa), Some(pb)) => {
                    let f = if b.time > a.time {
                        (t - a.time) / (b.time - a.time)
                    } else {
                        1.0
                    };
                    Some((pa.lerp(&pb, f), t))
                }
                // An invalid sample on either side: the tracker did not see
                // the tool over this interval.
                _ => None,
            }
        };
        match pose {
            Some((pose, time)) => ToolPose {
                pose,
                timestamp: Some(time),
                state: ToolState::Tracked,
            },
            None => held,
        }
    }
}

/// The frame a renderer should draw for `poses`: the scene's default
/// probe placement while the probe was never seen, and no needle in the
/// image while it is lost or missing (the simulator only knows where the
/// needle is through the tracker; drawing a stale pose would show a needle
/// where there may be none).
pub fn frame_poses(scene: &Scene, poses: &TrackedPoses) -> FramePoses {
    let mut f = scene.tracked(poses.time, poses.probe.pose, poses.needle.pose);
    if poses.needle.state != ToolState::Tracked {
        f.inserted = 0.0;
    }
    f
}

/// Round-trip a pose through the row-major millimetre matrix that
/// recordings store, so that a frame rendered live and the same frame
/// replayed from its recording see bit-identical poses.
pub fn canonical(p: &Pose) -> Pose {
    Pose::from_matrix_mm(&p.to_matrix_mm()).unwrap_or(*p)
}

/// A clock that starts at its first reading, so that a source made before
/// a slow start-up (GPU, shader compilation) begins at its own zero.
#[derive(Debug, Default)]
struct LazyClock(std::cell::Cell<Option<std::time::Instant>>);

impl LazyClock {
    fn elapsed(&self) -> f64 {
        let start = self.0.get().unwrap_or_else(|| {
            let now = std::time::Instant::now();
            self.0.set(Some(now));
            now
        });
        start.elapsed().as_secs_f64()
    }
}

/// The scene's scripted insertion as a pose source.
pub struct ScriptedSource {
    scene: Scene,
    clock: LazyClock,
}

impl ScriptedSource {
    pub fn new(scene: Scene) -> ScriptedSource {
        ScriptedSource {
            scene,
            clock: LazyClock::default(),
        }
    }
}

impl PoseSource for ScriptedSource {
    fn poses_at(&mut self, t: f64) -> TrackedPoses {
        let f = self.scene.scripted(t);
        let tool = |pose| ToolPose {
            pose,
            timestamp: Some(t),
            state: ToolState::Tracked,
        };
        TrackedPoses {
            time: t,
            probe: tool(f.probe),
            needle: tool(f.needle),
        }
    }

    /// The insertion replays in a loop (skin to target, then again), so
    /// that a stream served to a viewer keeps moving.
    fn now(&self) -> f64 {
        self.clock.elapsed() % self.scene.duration
    }

    fn describe(&self) -> String {
        format!("scripted insertion of {}", self.scene.name)
    }
}

/// An error naming the transforms a recording has when it has neither
/// tool, so that the user can map the names.
pub fn check_tools(
    rec: &crate::io::metafile::Recording,
    names: &ToolNames,
) -> Result<(), TrackingError> {
    let known: Vec<&str> = rec.transform_names();
    if known.contains(&names.probe.as_str()) || known.contains(&names.needle.as_str()) {
        return Ok(());
    }
    Err(TrackingError::Invalid(format!(
        "{}: no frame has a {}Transform or {}Transform; the recording has {}; name the tools with --probe-transform / --needle-transform",
        rec.path.display(),
        names.probe,
        names.needle,
        if known.is_empty() { "no transforms".to_string() } else { known.iter().map(|k| format!("{k}Transform")).collect::<Vec<_>>().join(", ") }
    )))
}

/// A recording's poses as a source. Samples are the recording's frames;
/// the watchdog runs on recording time.
pub struct RecordedSource {
    pub probe: ToolTrack,
    pub needle: ToolTrack,
    fallback_probe: Pose,
    timeout: f64,
    clock: LazyClock,
    first: f64,
    name: String,
}

impl RecordedSource {
    /// `reference_to_scene` maps the recording's reference frame into the
    /// scene's patient frame (identity for our own recordings).
    pub fn new(
        rec: &crate::io::metafile::Recording,
        names: &ToolNames,
        reference_to_scene: Pose,
        fallback_probe: Pose,
        timeout: f64,
    ) -> Result<RecordedSource, TrackingError> {
        let track = |name: &str| {
            let mut t = ToolTrack::new(rec.frames.len());
            for f in &rec.frames {
                if let Some(tr) = f.transforms.iter().find(|t| t.name == name) {
                    let pose = tr.pose().map(|p| reference_to_scene.then(&p));
                    t.push(Sample {
                        time: f.timestamp,
                        received: f.timestamp,
                        pose,
                    });
                }
            }
            t
        };
        check_tools(rec, names)?;
        let (probe, needle) = (track(&names.probe), track(&names.needle));
        let first = rec.frames.first().map(|f| f.timestamp).unwrap_or(0.0);
        Ok(RecordedSource {
            probe,
            needle,
            fallback_probe,
            timeout,
            clock: LazyClock::default(),
            first,
            name: rec.path.display().to_string(),
        })
    }
}

impl PoseSource for RecordedSource {
    fn poses_at(&mut self, t: f64) -> TrackedPoses {
        // Lost when no valid sample lies within the timeout before t (a gap
        // in the recording, INVALID frames, or t past its end); before the
        // first sample, by how far t precedes it.
        let tool = |tr: &ToolTrack, fallback: Pose| {
            let recent = tr
                .samples()
                .filter(|s| s.pose.is_some() && s.time <= t)
                .last();
            let first = tr.samples().find(|s| s.pose.is_some());
            let age = recent
                .or(first)
                .map(|s| (t - s.time).abs())
                .unwrap_or(f64::INFINITY);
            tr.at(t, age, self.timeout, fallback)
        };
        let probe = tool(&self.probe, self.fallback_probe);
        let needle = tool(&self.needle, Pose::IDENTITY);
        TrackedPoses {
            time: t,
            probe,
            needle,
        }
    }

    fn now(&self) -> f64 {
        self.first + self.clock.elapsed()
    }

    fn describe(&self) -> String {
        format!("recording {}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glam::{DQuat, DVec3};

    fn at_x(x: f64) -> Pose {
        Pose {
            translation: DVec3::new(x, 0.0, 0.0),
            rotation: DQuat::from_rotation_z(x),
        }
    }

    #[test]
    fn interpolates_holds_and_times_out() {
        let mut tr = ToolTrack::new(4);
        for (i, x) in [0.0, 0.1, 0.2].iter().enumerate() {
            assert!(tr.push(Sample {
                time: i as f64,
                received: i as f64,
                pose: Some(at_x(*x))
            }));
        }
        // Out of order: dropped.
        assert!(!tr.push(Sample {
            time: 1.5,
            received: 3.0,
            pose: Some(at_x(9.0))
        }));
        let p = tr.at(1.5, 0.0, 1.0, Pose::IDENTITY);
        assert_eq!(p.state, ToolState::Tracked);
        assert!(
            (p.pose.translation.x - 0.15).abs() < 1e-12
                && (p.pose.rotation.to_scaled_axis().z - 0.15).abs() < 1e-9
        );
        assert_eq!(p.timestamp, Some(1.5));
        // Past the end: held, still tracked while young.
        let p = tr.at(2.4, 0.4, 1.0, Pose::IDENTITY);
        assert_eq!((p.state, p.timestamp), (ToolState::Tracked, Some(2.0)));
        // Older than the timeout: lost, last pose kept.
        let p = tr.at(3.5, 1.5, 1.0, Pose::IDENTITY);
        assert_eq!((p.state, p.pose.translation.x), (ToolState::Lost, 0.2));
        // An invalid sample: lost over the interval it bounds.
        tr.push(Sample {
            time: 3.0,
            received: 3.0,
            pose: None,
        });
        assert_eq!(tr.at(2.5, 0.0, 1.0, Pose::IDENTITY).state, ToolState::Lost);
        // Bounded: the oldest went.
        tr.push(Sample {
            time: 4.0,
            received: 4.0,
            pose: Some(at_x(0.4)),
        });
        assert_eq!(tr.len(), 4);
        // A sender whose clock restarted is followed, not ignored.
        assert!(tr.push(Sample {
            time: 0.1,
            received: 5.0,
            pose: Some(at_x(0.7))
        }));
        assert_eq!(
            (
                tr.len(),
                tr.at(0.1, 0.0, 1.0, Pose::IDENTITY).pose.translation.x
            ),
            (1, 0.7)
        );
        assert_eq!(
            ToolTrack::new(3).at(0.0, 0.0, 1.0, at_x(1.0)).state,
            ToolState::Missing
        );
    }

    #[test]
    fn a_lost_needle_is_not_drawn_and_a_tracked_one_is() {
        let scene = Scene::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("scenes/hip-anterior-longitudinal.toml"),
        )
        .unwrap();
        let mut src = ScriptedSource::new(scene.clone());
        let mut p = src.poses_at(scene.duration);
        assert!(frame_poses(&scene, &p).inserted > 0.03);
        p.needle.state = ToolState::Lost;
        assert_eq!(frame_poses(&scene, &p).inserted, 0.0);
        assert!(src.now() < scene.duration);
    }

    #[test]
    fn canonical_is_a_fixed_point_of_the_recorded_form() {
        let p = Pose {
            translation: DVec3::new(0.0123, -0.0456, 0.0789),
            rotation: DQuat::from_euler(glam::EulerRot::XYZ, 0.3, -1.1, 2.0),
        };
        let c = canonical(&p);
        let text: Vec<String> = p
            .to_matrix_mm()
            .iter()
            .flatten()
            .map(|v| format!("{v}"))
            .collect();
        let parsed: Vec<f64> = text.iter().map(|s| s.parse().unwrap()).collect();
        let mut m = [[0.0; 4]; 4];
        for (i, v) in parsed.iter().enumerate() {
            m[i / 4][i % 4] = *v;
        }
        assert_eq!(Pose::from_matrix_mm(&m).unwrap(), c);
        assert!(Pose::from_matrix_mm(&[
            [2.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0]
        ])
        .unwrap_err()
        .contains("not a rotation"));
    }

    #[test]
    fn a_server_that_cannot_listen_is_told_which_flag_to_change() {
        let bind = |kind| TrackingError::Bind {
            addr: "x:1".into(),
            source: std::io::Error::from(kind),
            flags: None,
        };
        let in_use = bind(std::io::ErrorKind::AddrInUse);
        assert!(in_use.to_string().ends_with("choose another"), "{in_use}");
        let e = in_use.bind_flags("--serve-port", "--bind").to_string();
        assert!(e.ends_with("choose another with --serve-port"), "{e}");
        let e = bind(std::io::ErrorKind::AddrNotAvailable)
            .bind_flags("--serve-port", "--bind")
            .to_string();
        assert!(e.contains("address of this machine with --bind"), "{e}");
        // Other errors pass through.
        let e = TrackingError::Invalid("x".into()).bind_flags("--port", "--bind");
        assert_eq!(e.to_string(), "x");
    }
}
