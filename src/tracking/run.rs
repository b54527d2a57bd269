//! The headless frame loop behind `sonoguide run`, `serve-images` and
//! `replay`: poses from a [`PoseSource`] (or a recording's frames), one
//! GPU-rendered B-mode frame per step, then out as OpenIGTLink IMAGE and
//! needle-tip TRANSFORM messages, PNG + JSON files and a PLUS sequence
//! recording. A frame that fails to render is logged and skipped; the loop
//! only stops after many failures in a row.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use glam::DVec3;
use log::{info, warn};
use serde::Serialize;

use super::endpoint::Endpoint;
use super::igtl::{Content, Image, Message};
use super::{frame_poses, PoseSource, ToolNames, ToolPose, ToolState, TrackedPoses, TrackingError};
use crate::gpu::GpuContext;
use crate::io::metafile::{FrameTransform, RecordedFrame, Recording};
use crate::pipeline::DisplayGrid;
use crate::scene::pose::Pose;
use crate::scene::render::{FrameInfo, Renderer};
use crate::scene::Scene;

/// Defaults that keep a frame well under a second on lavapipe (software
/// Vulkan on 2 cores): the scenes' 6 scatterers/mm³ take minutes a frame
/// there. A GPU takes the scene's own density (`--density 6`).
pub const DEFAULT_HEIGHT: usize = 120;
pub const DEFAULT_DENSITY_PER_MM3: f64 = 0.05;

/// One rendered frame and what it was rendered from.
pub struct Frame {
    pub index: usize,
    /// Grey levels, row-major `width × height`, 0 outside the sector.
    pub grey: Vec<u8>,
    pub rgba: Vec<u32>,
    pub info: FrameInfo,
    pub tracked: TrackedPoses,
    /// Pixel (column, row, 0) → reference, mm, corner origin (what IMAGE
    /// carries, and PLUS's `ImageToReference`).
    pub image_to_reference: [[f64; 4]; 4],
}

/// The per-frame JSON next to each PNG: the renderer's landmarks plus the
/// tracking state.
#[derive(Serialize)]
struct FrameJson<'a> {
    #[serde(flatten)]
    info: &'a FrameInfo,
    probe_state: ToolState,
    needle_state: ToolState,
    probe_timestamp: Option<f64>,
    needle_timestamp: Option<f64>,
    image_to_reference_mm: [[f64; 4]; 4],
}

/// A scene renderer on the GPU for tracked poses.
pub struct Headless {
    pub ctx: GpuContext,
    pub scene: Scene,
    pub renderer: Renderer,
}

impl Headless {
    /// `density_per_mm3` overrides the scene's speckle density, `waves`
    /// keeps that many of the scene's transmits (evenly spread; one is
    /// the centre wave).
    pub fn new(
        ctx: GpuContext,
        mut scene: Scene,
        height: usize,
        dynamic_range: f64,
        density_per_mm3: Option<f64>,
        waves: Option<usize>,
    ) -> Headless {
        if let Some(d) = density_per_mm3 {
            scene.scatterer_density = d * 1e9;
        }
        if let Some(n) = waves {
            let all = std::mem::take(&mut scene.acquisition.waves);
            let n = n.clamp(1, all.len());
            scene.acquisition.waves = if n == 1 {
                vec![all[all.len() / 2].clone()]
            } else {
                (0..n)
                    .map(|i| all[i * (all.len() - 1) / (n - 1)].clone())
                    .collect()
            };
        }
        let renderer = Renderer::new(&ctx, &scene, height, dynamic_range);
        Headless {
            ctx,
            scene,
            renderer,
        }
    }

    pub fn size(&self) -> (usize, usize) {
        (
            self.renderer.view.display.width,
            self.renderer.view.display.height,
        )
    }

    pub fn image_to_reference(&self, probe: &Pose) -> [[f64; 4]; 4] {
        image_to_reference(&self.scene, &self.renderer.view.display, probe)
    }

    /// Render frame `index` (it seeds the speckle) for `tracked`.
    pub fn frame(&self, index: usize, tracked: &TrackedPoses) -> Result<Frame, TrackingError> {
        let fail = |what: String| TrackingError::Render { frame: index, what };
        let poses = frame_poses(&self.scene, tracked);
        let mut enc = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("sonoguide.tracking.frame"),
            });
        let (buffer, info) = self
            .renderer
            .encode(&self.ctx, &mut enc, &self.scene, &poses, index)
            .map_err(fail)?;
        self.ctx.queue.submit([enc.finish()]);
        self.ctx
            .take_error("tracking frame")
            .map_err(|e| fail(e.to_string()))?;
        let (w, h) = self.size();
        let rgba: Vec<u32> = self
            .ctx
            .read_buffer(&buffer, w * h)
            .map_err(|e| fail(e.to_string()))?;
        let grey = rgba
            .iter()
            .map(|p| if p >> 24 == 0 { 0 } else { (p & 255) as u8 })
            .collect();
        Ok(Frame {
            index,
            grey,
            rgba,
            info,
            tracked: *tracked,
            image_to_reference: self.image_to_reference(&poses.probe),
        })
    }

    /// The needle tip in the reference frame, oriented as the needle.
    pub fn tip_pose(&self, needle: &Pose) -> Pose {
        Pose {
            translation: self.scene.tip_of(needle),
            rotation: (needle.rotation * self.scene.needle_tip_to_needle.rotation).normalize(),
        }
    }
}

/// Display pixel → reference (mm) for a probe pose: probe pose ∘
/// image→probe calibration ∘ pixel scaling. Columns: +x along the array by
/// `dx`, rows: +z deeper by `dz`, slices: x × z (= −y) by 1 mm, so that the
/// axes are right-handed. What IMAGE carries and PLUS calls
/// `ImageToReference`; the display can use it for the frames it sends.
pub fn image_to_reference(scene: &Scene, d: &DisplayGrid, probe: &Pose) -> [[f64; 4]; 4] {
    let image_to_ref = probe.then(&scene.image_to_probe);
    let i = image_to_ref.rotate(DVec3::X) * d.dx * 1e3;
    let j = image_to_ref.rotate(DVec3::Z) * d.dz * 1e3;
    let k = image_to_ref.rotate(-DVec3::Y);
    let o = image_to_ref.apply(DVec3::new(d.x0, 0.0, d.z0)) * 1e3;
    let mut m = [[0.0; 4]; 4];
    for r in 0..3 {
        m[r] = [i[r], j[r], k[r], o[r]];
    }
    m[3][3] = 1.0;
    m
}

/// The IMAGE message of a frame: `grey` row-major `width × height`, with
/// its pixel → reference matrix and, as OpenIGTLink 3 metadata, the frame
/// index and the tools' states.
pub fn image_message(
    device: &str,
    index: usize,
    tracked: &TrackedPoses,
    names: &ToolNames,
    size: (usize, usize),
    ijk_to_world: [[f64; 4]; 4],
    grey: Vec<u8>,
) -> Message {
    let meta = |s: &str, st: ToolState| (format!("{s}TransformStatus"), status(st).to_string());
    Message {
        kind: "IMAGE".into(),
        device: device.into(),
        timestamp: tracked.time,
        metadata: vec![
            ("FrameIndex".into(), index.to_string()),
            meta(&names.probe, tracked.probe.state),
            meta(&names.needle, tracked.needle.state),
        ],
        content: Content::Image(Image {
            size: [size.0 as u16, size.1 as u16, 1],
            ijk_to_world,
            pixels: grey,
        }),
    }
}

fn status(s: ToolState) -> &'static str {
    match s {
        ToolState::Tracked => "OK",
        _ => "INVALID",
    }
}

/// What to do with each frame.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    /// `frame_NNNN.png` + `frame_NNNN.json` per frame.
    pub out_dir: Option<PathBuf>,
    /// A PLUS sequence file (`.mha` / `.nrrd`) written at the end.
    pub record: Option<PathBuf>,
    /// Store the frames' pixels in the recording, not only the poses.
    pub record_images: bool,
    /// IMAGE device name (PLUS and SlicerIGT use `Image_Reference`).
    pub image_device: String,
    /// Needle tip TRANSFORM device name.
    pub tip_device: String,
    pub names: ToolNames,
}

impl Outputs {
    /// Refuse unusable paths before any work, so that nothing is half done.
    pub fn check(&self) -> Result<(), TrackingError> {
        if let Some(d) = &self.out_dir {
            std::fs::create_dir_all(d).map_err(|e| TrackingError::Output {
                path: d.clone(),
                what: format!("cannot create the output folder: {e}"),
            })?;
        }
        if let Some(p) = &self.record {
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            if !matches!(ext, "mha" | "nrrd") {
                return Err(TrackingError::Output {
                    path: p.clone(),
                    what: format!(
                        "extension `.{ext}`: expected .mha or .nrrd (a PLUS sequence file)"
                    ),
                });
            }
            let dir = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !dir.is_dir() {
                return Err(TrackingError::Output {
                    path: p.clone(),
                    what: format!("the directory {} does not exist", dir.display()),
                });
            }
        }
        Ok(())
    }
}

/// Sends, writes and records frames; logs tool state changes.
pub struct Sink<'a> {
    pub outputs: Outputs,
    pub endpoints: Vec<&'a Endpoint>,
    recording: Option<Recording>,
    last: Option<(ToolState, ToolState)>,
    lost_since: [Option<f64>; 2],
}

impl<'a> Sink<'a> {
    pub fn new(outputs: Outputs, endpoints: Vec<&'a Endpoint>, headless: &Headless) -> Sink<'a> {
        let (w, h) = headless.size();
        let d = &headless.renderer.view.display;
        let recording = outputs.record.as_ref().map(|p| {
            let (w, h) = if outputs.record_images {
                (w, h)
            } else {
                (0, 0)
            };
            let mut r = Recording::new(p, w, h, Some([d.dx * 1e3, d.dz * 1e3]));
            r.fields
                .push(("SonoguideScene".into(), headless.scene.name.clone()));
            r
        });
        Sink {
            outputs,
            endpoints,
            recording,
            last: None,
            lost_since: [None, None],
        }
    }

    fn log_states(&mut self, t: &TrackedPoses) {
        let now = (t.probe.state, t.needle.state);
        let names = [
            self.outputs.names.probe.clone(),
            self.outputs.names.needle.clone(),
        ];
        let before = self.last.map(|(p, n)| [p, n]);
        for (k, (tool, state)) in [(0, (&t.probe, now.0)), (1, (&t.needle, now.1))] {
            let prev = before.map(|b| b[k]);
            if prev == Some(state) {
                continue;
            }
            match state {
                ToolState::Lost => {
                    self.lost_since[k] = Some(t.time);
                    let consequence = if k == 1 {
                        "the needle is not drawn while lost"
                    } else {
                        "the image stays where the probe was last seen"
                    };
                    warn!(
                        "{} lost at t = {:.3} s (last valid pose stamped {}); {consequence}",
                        names[k],
                        t.time,
                        tool.timestamp
                            .map(|s| format!("{s:.3} s"))
                            .unwrap_or("never".into())
                    );
                }
                ToolState::Tracked if prev == Some(ToolState::Lost) => {
                    let gap = self.lost_since[k]
                        .take()
                        .map(|s| format!(" after {:.2} s", t.time - s))
                        .unwrap_or_default();
                    warn!("{} tracked again{gap}", names[k]);
                }
                ToolState::Tracked => info!("{} tracked", names[k]),
                ToolState::Missing => info!("{} not seen yet", names[k]),
            }
        }
        self.last = Some(now);
    }

    /// Send, write and record one frame. `recorded` are the matrices the
    /// frame was rendered from (what a replay will read back).
    pub fn frame(
        &mut self,
        headless: &Headless,
        f: &Frame,
        recorded: [[[f64; 4]; 4]; 2],
    ) -> Result<(), TrackingError> {
        self.log_states(&f.tracked);
        let (w, h) = headless.size();
        let t = f.tracked.time;
        if !self.endpoints.is_empty() {
            let image = image_message(
                &self.outputs.image_device,
                f.index,
                &f.tracked,
                &self.outputs.names,
                (w, h),
                f.image_to_reference,
                f.grey.clone(),
            );
            let needle = Pose::from_matrix_mm(&recorded[1]).unwrap_or(f.tracked.needle.pose);
            let mut tip =
                Message::transform(&self.outputs.tip_device, t, &headless.tip_pose(&needle));
            tip.metadata.push((
                "TransformValid".into(),
                (f.tracked.needle.state == ToolState::Tracked).to_string(),
            ));
            tip.metadata
                .push(("FrameIndex".into(), f.index.to_string()));
            for e in &self.endpoints {
                e.publish(image.clone());
                e.publish(tip.clone());
            }
        }
        if let Some(dir) = &self.outputs.out_dir {
            let png = dir.join(format!("frame_{:04}.png", f.index));
            // The PNG error names the file already.
            crate::io::png::write_rgba(&png, w, h, &f.rgba)?;
            let json = FrameJson {
                info: &f.info,
                probe_state: f.tracked.probe.state,
                needle_state: f.tracked.needle.state,
                probe_timestamp: f.tracked.probe.timestamp,
                needle_timestamp: f.tracked.needle.timestamp,
                image_to_reference_mm: f.image_to_reference,
            };
            let text = serde_json::to_string_pretty(&json)
                .map_err(|e| TrackingError::Invalid(e.to_string()))?;
            write_atomic(
                &dir.join(format!("frame_{:04}.json", f.index)),
                text.as_bytes(),
            )?;
        }
        if let Some(rec) = &mut self.recording {
            let n = &self.outputs.names;
            let probe_pose = Pose::from_matrix_mm(&recorded[0]).unwrap_or(f.tracked.probe.pose);
            let image_to_probe = headless.image_to_reference(&Pose::IDENTITY);
            rec.frames.push(RecordedFrame {
                timestamp: t,
                transforms: vec![
                    FrameTransform {
                        name: n.probe.clone(),
                        matrix: recorded[0],
                        valid: f.tracked.probe.state == ToolState::Tracked,
                    },
                    FrameTransform {
                        name: n.needle.clone(),
                        matrix: recorded[1],
                        valid: f.tracked.needle.state == ToolState::Tracked,
                    },
                    FrameTransform {
                        name: "ImageToProbe".into(),
                        matrix: image_to_probe,
                        valid: true,
                    },
                    FrameTransform {
                        name: "ImageToReference".into(),
                        matrix: headless.image_to_reference(&probe_pose),
                        valid: f.tracked.probe.state == ToolState::Tracked,
                    },
                ],
                fields: vec![("FrameIndex".into(), f.index.to_string())],
                image: rec.has_images().then(|| f.grey.clone()),
            });
        }
        Ok(())
    }

    /// After `err` ended a run: write the frames recorded so far all the
    /// same (a live session cannot be made again) and say so in the error.
    pub fn salvage(self, err: TrackingError) -> TrackingError {
        let Some(r) = self.recording.filter(|r| !r.frames.is_empty()) else {
            return err;
        };
        let n = r.frames.len();
        match r.write(&r.path) {
            Ok(()) => TrackingError::Invalid(format!(
                "{err}; the {n} frame(s) recorded before it were written to {}",
                r.path.display()
            )),
            Err(w) => TrackingError::Invalid(format!(
                "{err}; the {n} frame(s) recorded before it could not be written either: {w}"
            )),
        }
    }

    /// Write the recording (if any).
    pub fn finish(self) -> Result<Option<PathBuf>, TrackingError> {
        match self.recording {
            Some(r) => {
                r.write(&r.path)?;
                Ok(Some(r.path))
            }
            None => Ok(None),
        }
    }
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrackingError> {
    crate::io::output::write_atomic(path, |w| w.write_all(bytes)).map_err(|e| {
        TrackingError::Output {
            path: path.to_path_buf(),
            what: e.to_string(),
        }
    })
}

/// When the live loop stops.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    pub frames: Option<usize>,
    pub duration: Option<f64>,
    /// Frames per second at most.
    pub fps: f64,
    /// Set by someone else (standard input, a signal) to end the loop
    /// cleanly, before the next frame (the recording is still written).
    pub stop: Vec<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

/// The live loop: poses from `source` at the current time, rendered,
/// sent and written, until a limit. Returns the frames made.
pub fn live(
    headless: &Headless,
    source: &mut dyn PoseSource,
    sink: &mut Sink,
    limits: Limits,
) -> Result<usize, TrackingError> {
    let start = Instant::now();
    let period = if limits.fps > 0.0 {
        Duration::from_secs_f64(1.0 / limits.fps)
    } else {
        Duration::ZERO
    };
    let mut index = 0;
    let mut failures = 0;
    let mut last_report = Instant::now();
    info!(
        "rendering {} ({}×{} px) from {}",
        headless.scene.name,
        headless.size().0,
        headless.size().1,
        source.describe()
    );
    loop {
        let stopped = limits
            .stop
            .iter()
            .any(|s| s.load(std::sync::atomic::Ordering::Relaxed));
        if stopped
            || limits.frames.is_some_and(|n| index >= n)
            || limits
                .duration
                .is_some_and(|d| start.elapsed().as_secs_f64() >= d)
        {
            break;
        }
        let begun = Instant::now();
        let t = source.now();
        let mut tracked = source.poses_at(t);
        // Render from the poses as a recording stores them (row-major mm
        // matrices), so that a replay of the recording is bit-exact.
        let recorded = [
            tracked.probe.pose.to_matrix_mm(),
            tracked.needle.pose.to_matrix_mm(),
        ];
        for (tool, m) in [&mut tracked.probe, &mut tracked.needle]
            .into_iter()
            .zip(&recorded)
        {
            tool.pose = Pose::from_matrix_mm(m).unwrap_or(tool.pose);
        }
        match headless.frame(index, &tracked) {
            Ok(f) => {
                failures = 0;
                sink.frame(headless, &f, recorded)?;
            }
            Err(e) => {
                failures += 1;
                warn!("{e}; frame skipped");
                if failures >= 20 {
                    return Err(e);
                }
            }
        }
        index += 1;
        if last_report.elapsed() > Duration::from_secs(5) {
            info!(
                "frame {index}: {:.1} frames/s",
                index as f64 / start.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        if let Some(rest) = period.checked_sub(begun.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    Ok(index)
}

/// The poses of frame `k` of a recording exactly as stored: each tool's
/// matrix (whatever its status, so that a lost tool is held where it was
/// recorded) and its status. A tool the recording lacks is missing.
pub fn recorded_poses(
    rec: &Recording,
    k: usize,
    names: &ToolNames,
    reference_to_scene: Option<&Pose>,
    fallback_probe: Pose,
) -> TrackedPoses {
    let f = &rec.frames[k];
    let tool = |name: &str, fallback: Pose| match f.transforms.iter().find(|t| t.name == name) {
        Some(tr) => {
            let pose = tr
                .rigid()
                .map(|p| reference_to_scene.map(|r| r.then(&p)).unwrap_or(p));
            match pose {
                Some(p) => ToolPose {
                    pose: p,
                    timestamp: Some(f.timestamp),
                    state: if tr.valid {
                        ToolState::Tracked
                    } else {
                        ToolState::Lost
                    },
                },
                None => ToolPose {
                    pose: fallback,
                    timestamp: None,
                    state: ToolState::Lost,
                },
            }
        }
        None => ToolPose {
            pose: fallback,
            timestamp: None,
            state: ToolState::Missing,
        },
    };
    TrackedPoses {
        time: f.timestamp,
        probe: tool(&names.probe, fallback_probe),
        needle: tool(&names.needle, Pose::IDENTITY),
    }
}

/// How a replayed frame compares with the recorded one.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Comparison {
    /// Frames replayed (fewer than recorded when stopped by a signal).
    pub frames: usize,
    pub compared: usize,
    pub identical: usize,
    pub max_abs_diff: u8,
}

/// Replay a recording: frame `k` rendered from its recorded poses with
/// index `FrameIndex` (ours) or `k`, sent and written as live frames, and
/// compared with the recorded pixels when the recording has them.
pub fn replay(
    headless: &Headless,
    rec: &Recording,
    names: &ToolNames,
    reference_to_scene: Option<&Pose>,
    sink: &mut Sink,
    fps: f64,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<Comparison, TrackingError> {
    let mut cmp = Comparison::default();
    let size = headless.size();
    if rec.has_images() && (rec.width, rec.height) != size {
        warn!("{}: recorded frames are {}×{}, the renderer makes {}×{}: frames are not compared (replay with the recording's --height)", rec.path.display(), rec.width, rec.height, size.0, size.1);
    }
    let fallback = headless.scene.probe_to_reference;
    let period = if fps > 0.0 {
        Duration::from_secs_f64(1.0 / fps)
    } else {
        Duration::ZERO
    };
    for k in 0..rec.frames.len() {
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        let begun = Instant::now();
        let tracked = recorded_poses(rec, k, names, reference_to_scene, fallback);
        let index = rec.frames[k]
            .fields
            .iter()
            .find(|(n, _)| n == "FrameIndex")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(k);
        let f = headless.frame(index, &tracked)?;
        sink.frame(
            headless,
            &f,
            [
                tracked.probe.pose.to_matrix_mm(),
                tracked.needle.pose.to_matrix_mm(),
            ],
        )?;
        cmp.frames += 1;
        if let (Some(img), true) = (&rec.frames[k].image, (rec.width, rec.height) == size) {
            cmp.compared += 1;
            let d = img
                .iter()
                .zip(&f.grey)
                .map(|(a, b)| a.abs_diff(*b))
                .max()
                .unwrap_or(0);
            cmp.identical += (d == 0) as usize;
            cmp.max_abs_diff = cmp.max_abs_diff.max(d);
        }
        if let Some(rest) = period.checked_sub(begun.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    Ok(cmp)
}
