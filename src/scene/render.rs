//! `sonoguide render`: a scene's scripted insertion as beamformed,
//! scan-converted B-mode PNGs, each with a JSON of where things are in its
//! pixels (needle tip and entry, target, femoral head cortex).

use std::path::Path;
use std::sync::Mutex;

use glam::DVec3;
use serde::Serialize;

use super::anatomy::{hip_scatterers, BeamOrigin, Slab};
use super::needle::needle_scatterers;
use super::pose::Pose;
use super::{FramePoses, Scene};
use crate::acquisition::{PixelGrid, ProbeKind};
use crate::gpu::timing::GpuTimer;
use crate::gpu::GpuContext;
use crate::pipeline::das::{DasGeometry, DasPlan, DasTarget};
use crate::pipeline::demodulate::{DemodPlan, DemodTarget};
use crate::pipeline::detect::DetectTarget;
use crate::pipeline::scan_convert::ScanTarget;
use crate::pipeline::simulate::{in_gpu_order, Base, SimBuffers, SimJob, SimPlan, Simulate};
use crate::pipeline::{
    Apodization, Beamformer, DasSettings, DemodSettings, DetectSettings, DisplayGrid, GpuChannels,
    PipelineError, Transmit,
};
use crate::sim::{Elevation, Scatterer, SimSettings};

/// Half thickness of the slab of tissue simulated around the image plane:
/// a little more than the elevation beam of a 13 mm tall element focused
/// at 60 mm at 3.5 MHz (about 3 mm wide).
pub const HALF_SLAB: f64 = 0.002;
/// The needle is kept further out of plane than the tissue, beyond half the
/// widest elevation beam (the 13 mm element, near the skin), so that the
/// simulator's elevation beam, not this cut, decides how it fades as it
/// leaves the plane.
pub const NEEDLE_SLAB: f64 = 0.012;

/// Where a frame's landmarks land in its PNG, `[column, row]` pixels.
#[derive(Debug, Clone, Serialize)]
pub struct FrameInfo {
    pub frame: usize,
    pub time_s: f64,
    pub mm_per_px: f64,
    pub width_px: usize,
    pub height_px: usize,
    pub needle_tip_px: Option<[f64; 2]>,
    pub needle_entry_px: Option<[f64; 2]>,
    pub needle_in_plane: bool,
    /// Distance of the tip from the image plane, mm (signed, elevation).
    pub needle_tip_elevation_mm: f64,
    pub needle_inserted_mm: f64,
    pub target_px: Option<[f64; 2]>,
    pub femoral_head_cortex_px: Option<[f64; 2]>,
    pub scatterers: usize,
    pub probe_to_reference: [f64; 7],
    pub needle_to_reference: [f64; 7],
}

fn pose_array(p: &Pose) -> [f64; 7] {
    let t = p.translation * 1e3;
    [
        t.x,
        t.y,
        t.z,
        p.rotation.w,
        p.rotation.x,
        p.rotation.y,
        p.rotation.z,
    ]
}

/// The imaging geometry of a scene: the polar grid, its display, and the
/// image→pixel map.
pub struct View {
    pub grid: PixelGrid,
    pub display: DisplayGrid,
}

impl View {
    pub fn new(scene: &Scene, height_px: usize) -> View {
        let probe = &scene.acquisition.probe;
        let grid = match probe.kind {
            ProbeKind::Convex { radius, center } => {
                let a = probe.elements[probe.len() - 1].azimuth;
                let lambda = scene.acquisition.sound_speed / scene.acquisition.center_frequency;
                let nr = ((scene.depth / (lambda / 2.0)) as usize).clamp(128, 1024);
                PixelGrid::Polar {
                    origin: center,
                    radius: (radius, radius + scene.depth),
                    angle: (-a, a),
                    nr,
                    na: 2 * probe.len(),
                }
            }
            _ => {
                let half = probe.elements[probe.len() - 1].position.x;
                let lambda = scene.acquisition.sound_speed / scene.acquisition.center_frequency;
                let nz = ((scene.depth / (lambda / 2.0)) as usize).clamp(128, 1024);
                // A rectangle under the array, as a polar grid is needed for
                // scan conversion only on curved probes.
                PixelGrid::Cartesian {
                    x: (-half, half),
                    z: (0.0, scene.depth),
                    nx: 2 * probe.len(),
                    nz,
                }
            }
        };
        let display = match &grid {
            PixelGrid::Polar { .. } => DisplayGrid::covering(&grid, height_px).expect("polar grid"),
            PixelGrid::Cartesian { x, z, nx, nz } => DisplayGrid {
                width: *nx,
                height: *nz,
                x0: x.0,
                z0: z.0,
                dx: (x.1 - x.0) / (*nx - 1) as f64,
                dz: (z.1 - z.0) / (*nz - 1) as f64,
            },
            PixelGrid::List { .. } => unreachable!(),
        };
        View { grid, display }
    }

    /// Image-frame (x, z) → PNG pixel [column, row].
    pub fn to_px(&self, x: f64, z: f64) -> [f64; 2] {
        [
            (x - self.display.x0) / self.display.dx,
            (z - self.display.z0) / self.display.dz,
        ]
    }

    /// Whether the image point is inside the imaged region.
    pub fn contains(&self, x: f64, z: f64) -> bool {
        match &self.grid {
            PixelGrid::Polar {
                origin,
                radius,
                angle,
                ..
            } => {
                let (dx, dz) = (x - origin[0], z - origin[1]);
                let r = (dx * dx + dz * dz).sqrt();
                let a = dx.atan2(dz);
                r >= radius.0
                    && r <= radius.1
                    && a >= angle.0.min(angle.1)
                    && a <= angle.0.max(angle.1)
            }
            PixelGrid::Cartesian { x: xs, z: zs, .. } => {
                x >= xs.0 && x <= xs.1 && z >= zs.0 && z <= zs.1
            }
            PixelGrid::List { .. } => false,
        }
    }
}

/// Everything frame `frame` of a scripted run of `frames` needs:
/// scatterers in the image frame and the info.
pub fn frame_scatterers(
    scene: &Scene,
    view: &View,
    frame: usize,
    frames: usize,
) -> (Vec<Scatterer>, FrameInfo) {
    scatterers_at(
        scene,
        view,
        &scene.scripted(scene.frame_time(frame, frames)),
        frame,
    )
}

/// Scatterers (image frame) and landmarks for the tools at `poses`;
/// `frame` numbers the frame in its info. The speckle is fixed to the
/// tissue and the needle's echoes to the needle, so the same poses give
/// the same scatterers in any frame: the tissue's ([`tissue_at`], which
/// depend on the probe only), then the needle's ([`needle_at`]).
pub fn scatterers_at(
    scene: &Scene,
    view: &View,
    poses: &FramePoses,
    frame: usize,
) -> (Vec<Scatterer>, FrameInfo) {
    let mut scat = tissue_at(scene, view, &poses.probe);
    scat.extend(needle_at(scene, poses));
    let info = frame_info(scene, view, poses, frame, scat.len());
    (scat, info)
}

/// The tissue's and bone's scatterers (image frame) under the probe at
/// `probe`: everything but the needle, which does not shadow them.
pub fn tissue_at(scene: &Scene, view: &View, probe: &Pose) -> Vec<Scatterer> {
    let image_to_ref = probe.then(&scene.image_to_probe);
    let beams_ref = scene.beam_origin(probe);
    let (x0, x1, z0, z1) = bounds(&view.grid);
    let slab = Slab {
        image_to_patient: image_to_ref,
        x: (x0, x1),
        z: (z0, z1),
        half_y: HALF_SLAB,
    };
    let hip = hip_under_probe(scene, &image_to_ref);
    let mut scat = hip_scatterers(&hip, &slab, beams_ref, scene.scatterer_density, scene.seed);
    // Keep only what lies in the imaged region (plus a margin for pulses
    // arriving from just outside).
    scat.retain(|s| {
        view.contains(s.position.x, s.position.z) || near(view, s.position.x, s.position.z)
    });
    // Ordered here, on the display's worker thread, not at upload.
    in_gpu_order(scat)
}

/// The needle's scatterers (image frame) for the tools at `poses`.
pub fn needle_at(scene: &Scene, poses: &FramePoses) -> Vec<Scatterer> {
    let ref_to_image = poses.probe.then(&scene.image_to_probe).inverse();
    let beams_ref = scene.beam_origin(&poses.probe);
    let needle_pose = poses.needle;
    let tip_ref = scene.tip_of(&needle_pose);
    let dir_ref = needle_pose.rotate(DVec3::Z);
    let tip = ref_to_image.apply(tip_ref);
    let dir = ref_to_image.rotate(dir_ref);
    let beams_img = match beams_ref {
        BeamOrigin::Point(o) => BeamOrigin::Point(ref_to_image.apply(o)),
        BeamOrigin::Parallel(d) => BeamOrigin::Parallel(ref_to_image.rotate(d)),
    };
    in_gpu_order(needle_scatterers(
        &scene.needle,
        tip,
        dir,
        poses.inserted,
        beams_img,
        NEEDLE_SLAB,
        scene.seed,
    ))
}

/// Where the landmarks of the tools at `poses` fall, for a frame of
/// `scatterers` scatterers.
pub fn frame_info(
    scene: &Scene,
    view: &View,
    poses: &FramePoses,
    frame: usize,
    scatterers: usize,
) -> FrameInfo {
    let FramePoses {
        time: t,
        probe,
        needle: needle_pose,
        inserted,
    } = *poses;
    let image_to_ref = probe.then(&scene.image_to_probe);
    let ref_to_image = image_to_ref.inverse();
    let tip = ref_to_image.apply(scene.tip_of(&needle_pose));
    let dir = ref_to_image.rotate(needle_pose.rotate(DVec3::Z));
    // Landmarks in pixels.
    let px = |p: DVec3| view.contains(p.x, p.z).then(|| view.to_px(p.x, p.z));
    let target = ref_to_image.apply(scene.target);
    // Where the shaft enters the image: its first point inside the imaged
    // region, walking from the skin toward the tip.
    let entry = if inserted > 0.0 {
        (0..=2000)
            .map(|i| tip - dir * (inserted * (1.0 - i as f64 / 2000.0)))
            .find(|p| view.contains(p.x, p.z))
    } else {
        None
    };
    let cortex = cortex_under_centre(scene, view, &image_to_ref);
    let lambda = scene.acquisition.sound_speed / scene.acquisition.center_frequency;
    let half_beam = 0.5 * elevation_beam_width(scene, tip.z, lambda);
    FrameInfo {
        frame,
        time_s: t,
        mm_per_px: view.display.dx * 1e3,
        width_px: view.display.width,
        height_px: view.display.height,
        needle_tip_px: if inserted > 0.0 { px(tip) } else { None },
        needle_entry_px: entry.map(|p| view.to_px(p.x, p.z)),
        needle_in_plane: tip.y.abs() <= half_beam && entry.is_some_and(|e| e.y.abs() <= half_beam),
        needle_tip_elevation_mm: tip.y * 1e3,
        needle_inserted_mm: inserted * 1e3,
        target_px: px(target),
        femoral_head_cortex_px: cortex.map(|p| view.to_px(p.x, p.z)),
        scatterers,
        probe_to_reference: pose_array(&probe),
        needle_to_reference: pose_array(&needle_pose),
    }
}

/// Elevation beam width (−6 dB) at depth z: the element height focused by
/// its lens, about λ·F_elev near the focus and the aperture far from it.
pub fn elevation_beam_width(scene: &Scene, z: f64, lambda: f64) -> f64 {
    let h = scene.acquisition.probe.elements[0].height.max(1e-3);
    let focus = ELEVATION_FOCUS;
    let focal = 1.02 * lambda * focus / h;
    let geometric = h * ((z - focus).abs() / focus);
    focal.max(geometric).min(h)
}

fn near(view: &View, x: f64, z: f64) -> bool {
    let m = 0.002;
    [(-m, 0.0), (m, 0.0), (0.0, -m), (0.0, m)]
        .iter()
        .any(|(a, b)| view.contains(x + a, z + b))
}

fn bounds(grid: &PixelGrid) -> (f64, f64, f64, f64) {
    let pts = grid.positions();
    pts.iter().fold(
        (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ),
        |(a, b, c, d), p| (a.min(p[0]), b.max(p[0]), c.min(p[1]), d.max(p[1])),
    )
}

/// The first cortex point on the probe's centre line: the femoral head's,
/// or at the head–neck junction (where the longitudinal approach centres
/// the probe) the neck's, whichever bone the beam meets first.
pub fn cortex_under_centre(scene: &Scene, view: &View, image_to_ref: &Pose) -> Option<DVec3> {
    let apex = scene.acquisition.probe.apex_z();
    let mut z = apex;
    while z < apex + scene.depth {
        let p = image_to_ref.apply(DVec3::new(0.0, 0.0, z));
        if scene.hip.is_bone(p) {
            return view.contains(0.0, z).then_some(DVec3::new(0.0, 0.0, z));
        }
        z += 0.00005;
    }
    None
}

/// The scene's hip with the skin flattened under this probe pose.
fn hip_under_probe(scene: &Scene, image_to_ref: &Pose) -> super::anatomy::Hip {
    let apex = scene.acquisition.probe.apex_z();
    scene.hip.under_probe(
        image_to_ref.apply(DVec3::new(0.0, 0.0, apex)),
        image_to_ref.rotate(DVec3::Z),
    )
}

/// The tissue under every display pixel of a frame (RGBA8), for checking
/// the anatomy against the B-mode: the same poses, no speckle.
pub fn label_image(scene: &Scene, view: &View, frame: usize, frames: usize) -> Vec<u32> {
    use super::anatomy::Tissue;
    let (probe, _, _) = scene.poses_at(scene.frame_time(frame, frames));
    let image_to_ref = probe.then(&scene.image_to_probe);
    let hip = hip_under_probe(scene, &image_to_ref);
    let d = &view.display;
    let mut out = vec![0u32; d.width * d.height];
    for row in 0..d.height {
        for col in 0..d.width {
            let (x, z) = (d.x0 + col as f64 * d.dx, d.z0 + row as f64 * d.dz);
            if !view.contains(x, z) {
                continue;
            }
            let rgb: [u32; 3] = match hip.tissue(image_to_ref.apply(DVec3::new(x, 0.0, z))) {
                Tissue::Skin => [230, 200, 180],
                Tissue::Fat => [240, 220, 120],
                Tissue::Muscle => [190, 60, 60],
                Tissue::Capsule => [90, 160, 230],
                Tissue::Recess => [40, 40, 160],
                Tissue::Bone => [250, 250, 250],
                Tissue::VesselLumen => [200, 0, 0],
                Tissue::VesselWall => [255, 120, 120],
                Tissue::Nerve => [250, 240, 0],
            };
            out[row * d.width + col] = rgb[0] | (rgb[1] << 8) | (rgb[2] << 16) | (255 << 24);
        }
    }
    out
}

/// How the scene's channel data are simulated: the GPU simulator with
/// element directivity (without it, grating lobes of the 0.5 mm-pitch
/// convex array fill bone shadows), elevation focusing (so a needle that
/// leaves the plane fades) and tissue attenuation; transmit arrivals are
/// kept for a few periods only (a hip frame is 6–7× cheaper, and the scene
/// has no cyst whose grating-lobe fill matters).
pub fn sim_settings(scene: &Scene) -> SimSettings {
    let mut s = SimSettings::for_acquisition(&scene.acquisition);
    let height = scene.acquisition.probe.elements[0].height;
    s.elevation = Some(Elevation {
        height,
        focus: Some(ELEVATION_FOCUS),
    });
    s.attenuation = 0.5;
    s.tx_window = crate::sim::FAST_TX_WINDOW;
    s
}

/// Elevation lens focus of the scene probes (C5-2v-like), metres.
pub const ELEVATION_FOCUS: f64 = 0.06;

/// Samples per trace covering the scene's depth.
pub fn samples(scene: &Scene) -> usize {
    let acq = &scene.acquisition;
    let r_max = scene.depth + acq.probe.apex_z() + 0.01;
    ((2.0 * r_max / acq.sound_speed + 2e-6) * acq.sampling_frequency) as usize
}

/// One rendered frame: its landmarks and the display image.
pub struct Rendered {
    pub info: FrameInfo,
    /// Grey levels 0..255 of the display, row-major, `NaN` outside the
    /// imaged sector.
    pub grey: Vec<f32>,
    pub rgba: Vec<u32>,
}

/// Stage names of a frame, in the order they run (timer labels).
pub const STAGES: [&str; 5] = ["simulate", "demodulate", "das", "detect", "scan_convert"];

/// The per-geometry plans of a frame: the view, each stage's plan, and the
/// DAS pixel positions.
type Plans = (View, SimPlan, DemodPlan, DasPlan, Vec<[f32; 2]>);

/// Long-lived state for rendering frames of one scene: the pipelines, and
/// the plans of every stage, built once because the acquisition and the
/// grid are the same every frame.
pub struct Renderer {
    pub view: View,
    beamformer: Beamformer,
    simulator: Simulate,
    plan: SimPlan,
    demod: DemodPlan,
    das: DasPlan,
    pixels: Vec<[f32; 2]>,
    detect: DetectSettings,
    /// The simulation's buffers between frames (taken by a running job).
    sim_buffers: Mutex<Option<SimBuffers>>,
    /// The rest of the chain bound to them, built by the first frame.
    targets: Mutex<Option<Targets>>,
    /// The tissue's RF, kept for the images that add their needle to it.
    tissue: Mutex<Option<KeptTissue>>,
    /// A new tissue layer being simulated behind the images
    /// ([`Renderer::renew`]), and the buffers the next one will use (the
    /// layer it replaced).
    renewal: Mutex<Option<Renewal>>,
    spare: Mutex<Option<SimBuffers>>,
}

/// Where an image's simulation starts. The RF is linear in the
/// scatterers, and the tissue's depend on the probe only ([`tissue_at`]):
/// while the probe stays put, an image need only simulate its needle.
pub enum Tissue<'a> {
    /// The image's scatterers are all there is.
    None,
    /// Simulate these tissue scatterers, seen from the probe at this pose,
    /// keep their RF for later images, and add the image's own.
    New(&'a [Scatterer], Pose),
    /// Add the image's own scatterers to the tissue kept by an earlier one.
    Kept,
}

/// The tissue's noise-free RF ([`Base::Keep`]) and where the probe was.
struct KeptTissue {
    probe: Pose,
    scatterers: usize,
    buffers: SimBuffers,
}

/// A tissue layer simulated a few units per frame while the images go on
/// adding their needles to the layer it will replace.
struct Renewal {
    job: SimJob,
    probe: Pose,
    scatterers: usize,
}

/// GPU timer label of a frame's share of a tissue renewal.
pub const RENEW_STAGE: &str = "renew";

/// An image's simulation being recorded ([`Renderer::start`]).
pub struct RenderJob {
    /// The tissue's, when new: recorded first.
    tissue: Option<(SimJob, Pose, usize)>,
    /// The image's own, added to the tissue's.
    image: SimJob,
}

/// The chain after the simulation, bound once to the simulation's RF
/// buffer and recorded every frame: no allocation, no bind group, and
/// DAS's per-geometry work (tiling choice, padded pixel tables, transmit
/// delays computed on the GPU; ~260 ms of CPU on lavapipe's host when it
/// was redone per frame) done once.
struct Targets {
    demod: DemodTarget,
    das_geometry: DasGeometry,
    das: DasTarget,
    detect: DetectTarget,
    scan: ScanTarget,
}

impl Renderer {
    pub fn new(ctx: &GpuContext, scene: &Scene, height_px: usize, dynamic_range: f64) -> Renderer {
        Renderer::try_new(ctx, scene, height_px, dynamic_range)
            .expect("scene acquisition validated on load")
    }

    /// The simulator (its receive kernel can be chosen).
    pub fn simulator(&self) -> &Simulate {
        &self.simulator
    }

    pub fn try_new(
        ctx: &GpuContext,
        scene: &Scene,
        height_px: usize,
        dynamic_range: f64,
    ) -> Result<Renderer, String> {
        let (view, plan, demod, das, pixels) = Self::plans(scene, height_px)?;
        let detect = DetectSettings {
            dynamic_range_db: dynamic_range,
            ..Default::default()
        };
        let beamformer = Beamformer::new(ctx);
        // A B-mode display of at most ~60 dB cannot tell f16 rows (image
        // within 1e-3 of its peak) from f32, and they halve DAS's reads.
        beamformer.das.set_f16_rows(true);
        Ok(Renderer {
            view,
            beamformer,
            simulator: Simulate::new(ctx),
            plan,
            demod,
            das,
            pixels,
            detect,
            sim_buffers: Mutex::new(None),
            targets: Mutex::new(None),
            tissue: Mutex::new(None),
            renewal: Mutex::new(None),
            spare: Mutex::new(None),
        })
    }

    /// The scene's geometry changed (depth): new plans, same pipelines.
    pub fn replan(&mut self, scene: &Scene, height_px: usize) -> Result<(), String> {
        (self.view, self.plan, self.demod, self.das, self.pixels) = Self::plans(scene, height_px)?;
        *self
            .sim_buffers
            .get_mut()
            .unwrap_or_else(|e| e.into_inner()) = None;
        *self.targets.get_mut().unwrap_or_else(|e| e.into_inner()) = None;
        *self.tissue.get_mut().unwrap_or_else(|e| e.into_inner()) = None;
        *self.renewal.get_mut().unwrap_or_else(|e| e.into_inner()) = None;
        *self.spare.get_mut().unwrap_or_else(|e| e.into_inner()) = None;
        Ok(())
    }

    fn plans(scene: &Scene, height_px: usize) -> Result<Plans, String> {
        let view = View::new(scene, height_px);
        let plan = SimPlan::new(&scene.acquisition, samples(scene), &sim_settings(scene))
            .map_err(|e| e.to_string())?;
        let demod = DemodPlan::new(&plan.acquisition, &DemodSettings::default())
            .map_err(|e| e.to_string())?;
        let pixels = view.grid.positions_f32();
        // Hann across the receive aperture: a boxcar's −13 dB sidelobes
        // fill bone shadows and cysts with clutter when the transmit is
        // unfocused (diverging waves), as on scanners without it.
        let settings = DasSettings {
            apodization: Apodization::Hann,
            transmit: Transmit::Analytic,
            ..Default::default()
        };
        let das = DasPlan::new(&plan.acquisition, &settings, demod.fc, pixels.len(), 1)
            .map_err(|e| e.to_string())?;
        Ok((view, plan, demod, das, pixels))
    }

    /// Record frame `f` of `frames` into `enc`: scatterers for the poses at
    /// that time go up, and simulate → demodulate → das → detect →
    /// scan convert run without a trip back to the CPU. The display RGBA8
    /// (`u32` per pixel, row-major, `view.display` sized, alpha 0 outside
    /// the sector) is left in the returned buffer.
    pub fn encode_frame(
        &self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        scene: &Scene,
        f: usize,
        frames: usize,
    ) -> Result<(wgpu::Buffer, FrameInfo), String> {
        self.encode(
            ctx,
            enc,
            scene,
            &scene.scripted(scene.frame_time(f, frames)),
            f,
        )
    }

    /// As [`Renderer::encode_frame`], for the tools at `poses` (tracked or
    /// scripted); `frame` numbers the frame in its info.
    pub fn encode(
        &self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        scene: &Scene,
        poses: &FramePoses,
        frame: usize,
    ) -> Result<(wgpu::Buffer, FrameInfo), String> {
        let (scat, info) = scatterers_at(scene, &self.view, poses, frame);
        let timer = &mut GpuTimer::off();
        let mut job = Some(self.start(ctx, Tissue::None, &scat, None)?);
        let rf = self
            .step(ctx, enc, timer, &mut job, usize::MAX)
            .ok_or("render: the simulation has batches left")?;
        Ok((self.finish(ctx, enc, timer, rf)?, info))
    }

    /// Upload a frame's scatterers (a queue write into the buffers kept
    /// from the last frame) and start its simulation on `tissue`, to be
    /// recorded `batch` scatterers at a time by [`Renderer::step`].
    pub fn start(
        &self,
        ctx: &GpuContext,
        tissue: Tissue,
        scatterers: &[Scatterer],
        batch: Option<usize>,
    ) -> Result<RenderJob, String> {
        let sim = &self.simulator;
        let (tissue, base) = match tissue {
            Tissue::None => (None, Base::None),
            Tissue::New(t, probe) => {
                // The kept tissue's buffers, for the new tissue: until it
                // is recorded, nothing is kept.
                let kept = self.tissue.lock().ok().and_then(|mut k| k.take());
                let buffers = match kept {
                    Some(k) => k.buffers,
                    None => SimBuffers::new(ctx, &self.plan).map_err(|e| e.to_string())?,
                };
                let job = sim
                    .begin_in(ctx, &self.plan, buffers, t, batch, Base::Keep)
                    .map_err(|e| e.to_string())?;
                let base = Base::Add(job.base());
                (Some((job, probe, t.len())), base)
            }
            Tissue::Kept => {
                let kept = self.tissue.lock().ok();
                let base = kept
                    .as_ref()
                    .and_then(|k| k.as_ref())
                    .map(|k| k.buffers.base())
                    .ok_or("render: no tissue kept to add the image to; simulate it first")?;
                (None, Base::Add(base))
            }
        };
        let buffers = self.take_buffers(ctx, &self.sim_buffers)?;
        let image = sim
            .begin_in(ctx, &self.plan, buffers, scatterers, batch, base)
            .map_err(|e| e.to_string())?;
        Ok(RenderJob { tissue, image })
    }

    /// The tissue scatterers kept for the probe at `probe`, if it is
    /// within `tolerance` ([`Pose::moved_from`]) of where they were
    /// simulated: their count.
    pub fn tissue_kept(&self, probe: &Pose, tolerance: f64) -> Option<usize> {
        let kept = self.tissue.lock().ok()?;
        let k = kept.as_ref()?;
        (probe.moved_from(&k.probe) <= tolerance).then_some(k.scatterers)
    }

    /// The count of the tissue scatterers kept, wherever the probe is now.
    pub fn tissue_any(&self) -> Option<usize> {
        self.tissue.lock().ok()?.as_ref().map(|k| k.scatterers)
    }

    /// Start simulating `tissue` (seen from the probe at `probe`) as the
    /// next kept layer, `batch` scatterers a batch, to be recorded by
    /// [`Renderer::step_renewal`] while images go on with the layer kept
    /// now. Call it between images: its buffers are the ones the layer
    /// before last was kept in, which an image still being recorded could
    /// be adding. Replaces a renewal in progress.
    pub fn renew(
        &self,
        ctx: &GpuContext,
        tissue: &[Scatterer],
        probe: Pose,
        batch: Option<usize>,
    ) -> Result<(), String> {
        let buffers = self.take_buffers(ctx, &self.spare)?;
        let job = self
            .simulator
            .begin_in(ctx, &self.plan, buffers, tissue, batch, Base::Keep)
            .map_err(|e| e.to_string())?;
        if let Ok(mut r) = self.renewal.lock() {
            *r = Some(Renewal {
                job,
                probe,
                scatterers: tissue.len(),
            });
        }
        Ok(())
    }

    /// Whether a tissue renewal is being recorded.
    pub fn renewing(&self) -> bool {
        self.renewal.lock().is_ok_and(|r| r.is_some())
    }

    /// Record up to `units` more units of the tissue renewal (timed as
    /// [`RENEW_STAGE`]); once its last is recorded, also its resolve, and
    /// make it the kept layer from the next image on. True when it was.
    pub fn step_renewal(
        &self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        timer: &mut GpuTimer,
        units: usize,
    ) -> bool {
        let Ok(mut renewal) = self.renewal.lock() else {
            return false;
        };
        if renewal.is_none() {
            return false;
        }
        let (sim, plan) = (&self.simulator, &self.plan);
        // One scope for the whole share: the timer's scopes do not nest.
        let done = timer.scope(ctx, enc, RENEW_STAGE, |enc| {
            let off = &mut GpuTimer::off();
            let r = renewal.as_mut()?;
            if !sim.step(ctx, enc, off, plan, &mut r.job, units) {
                return None;
            }
            let r = renewal.take()?;
            let buffers = sim.finish(ctx, enc, off, plan, r.job).1;
            Some((buffers, r.probe, r.scatterers))
        });
        let Some((buffers, probe, scatterers)) = done else {
            return false;
        };
        let old = self.tissue.lock().ok().and_then(|mut k| {
            k.replace(KeptTissue {
                probe,
                scatterers,
                buffers,
            })
        });
        if let (Some(old), Ok(mut spare)) = (old, self.spare.lock()) {
            *spare = Some(old.buffers);
        }
        true
    }

    /// The simulation's buffers kept in `slot` (the images', or the
    /// renewals' spare), or new ones.
    fn take_buffers(
        &self,
        ctx: &GpuContext,
        slot: &Mutex<Option<SimBuffers>>,
    ) -> Result<SimBuffers, String> {
        match slot.lock().ok().and_then(|mut b| b.take()) {
            Some(b) => Ok(b),
            None => SimBuffers::new(ctx, &self.plan).map_err(|e| e.to_string()),
        }
    }

    /// Record up to `units` more units of the simulation in `job`
    /// ([`SimJob::progress`]), the new tissue's first; once the last is
    /// recorded, also its resolve, and hand back the RF (taking the job).
    /// A spread simulation (`units` < `usize::MAX`) ends the tissue's in
    /// a step of its own.
    pub fn step(
        &self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        timer: &mut GpuTimer,
        job: &mut Option<RenderJob>,
        units: usize,
    ) -> Option<GpuChannels> {
        // Timed per phase (`simulate::PHASES`); the display sums them
        // into its `simulate` stage.
        let sim = &self.plan;
        let j = job.as_mut()?;
        if let Some((t, _, _)) = j.tissue.as_mut() {
            if !self.simulator.step(ctx, enc, timer, sim, t, units) {
                return None;
            }
            let (t, probe, scatterers) = j.tissue.take()?;
            let (_, buffers) = self.simulator.finish(ctx, enc, timer, sim, t);
            if let Ok(mut kept) = self.tissue.lock() {
                *kept = Some(KeptTissue {
                    probe,
                    scatterers,
                    buffers,
                });
            }
            if units != usize::MAX {
                return None;
            }
        }
        if !self
            .simulator
            .step(ctx, enc, timer, sim, &mut j.image, units)
        {
            return None;
        }
        let (rf, buffers) = self
            .simulator
            .finish(ctx, enc, timer, sim, job.take()?.image);
        if let Ok(mut kept) = self.sim_buffers.lock() {
            *kept = Some(buffers);
        }
        Some(rf)
    }

    /// Record the rest of the frame on simulated RF: demodulate, das,
    /// detect, scan convert. Returns the display buffer (the same buffer
    /// every frame while `rf` is).
    pub fn finish(
        &self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        timer: &mut GpuTimer,
        rf: GpuChannels,
    ) -> Result<wgpu::Buffer, String> {
        let bf = &self.beamformer;
        let mut targets = self
            .targets
            .lock()
            .map_err(|_| "render: a frame panicked while recording".to_string())?;
        if targets.as_ref().is_none_or(|t| t.demod.rf != rf.buffer) {
            *targets = Some(self.bind(ctx, enc, &rf).map_err(|e| e.to_string())?);
        }
        let t = targets.as_ref().expect("bound above");
        timer.scope(ctx, enc, STAGES[1], |enc| {
            bf.demodulate.record(enc, &t.demod)
        });
        timer
            .scope(ctx, enc, STAGES[2], |enc| {
                bf.das.record(ctx, enc, &t.das_geometry, &t.das)
            })
            .map_err(|e| e.to_string())?;
        timer.scope(ctx, enc, STAGES[3], |enc| bf.detect.record(enc, &t.detect));
        timer.scope(ctx, enc, STAGES[4], |enc| {
            bf.scan_convert.record(enc, &t.scan)
        });
        Ok(t.scan.display.clone())
    }

    /// Bind the chain and run it once on silence (the simulation's RF
    /// buffers, zeroed), so that the first image does not pay for it in a
    /// frame loop: the pipelines compile (lavapipe compiles at creation:
    /// ~0.5 s for DAS's variant, which made the first image's last frame
    /// the longest of a window run; the simulation's, made here too) and
    /// DAS's geometry is prepared. Waits.
    pub fn warm_up(&self, ctx: &GpuContext) -> Result<(), String> {
        self.simulator
            .prepare(&ctx.device, &self.plan)
            .map_err(|e| e.to_string())?;
        let buffers = self.take_buffers(ctx, &self.sim_buffers)?;
        let rf = buffers.channels(&self.plan);
        if let Ok(mut kept) = self.sim_buffers.lock() {
            *kept = Some(buffers);
        }
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("sonoguide.render.warm_up"),
            });
        self.finish(ctx, &mut enc, &mut GpuTimer::off(), rf)?;
        ctx.queue.submit([enc.finish()]);
        ctx.wait().map_err(|e| e.to_string())?;
        ctx.take_error("render warm-up").map_err(|e| e.to_string())
    }

    /// Allocate and bind the chain after the simulation to `rf`.
    fn bind(
        &self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        rf: &GpuChannels,
    ) -> Result<Targets, PipelineError> {
        let bf = &self.beamformer;
        let demod = bf.demodulate.bind(ctx, rf, &self.demod)?;
        let iq = &demod.iq;
        let das_geometry = bf.das.prepare(
            ctx,
            enc,
            &self.das,
            &self.pixels,
            iq.samples,
            iq.frames,
            iq.iq,
        )?;
        let das = bf.das.target(ctx, &das_geometry, iq)?;
        let detect = bf
            .detect
            .bind(ctx, &das.image, self.pixels.len(), &self.detect)?;
        let scan = bf.scan_convert.bind(
            ctx,
            &detect.out.grey,
            &self.view.grid,
            &self.view.display,
            0,
        )?;
        Ok(Targets {
            demod,
            das_geometry,
            das,
            detect,
            scan,
        })
    }

    /// One frame, read back: what `sonoguide render` writes.
    pub fn frame(
        &self,
        ctx: &GpuContext,
        scene: &Scene,
        f: usize,
        frames: usize,
    ) -> Result<Rendered, String> {
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("sonoguide.render"),
            });
        let (buffer, info) = self.encode_frame(ctx, &mut enc, scene, f, frames)?;
        ctx.queue.submit([enc.finish()]);
        ctx.take_error("render").map_err(|e| e.to_string())?;
        let n = self.view.display.width * self.view.display.height;
        let rgba: Vec<u32> = ctx.read_buffer(&buffer, n).map_err(|e| e.to_string())?;
        let grey = rgba
            .iter()
            .map(|p| {
                if p >> 24 == 0 {
                    f32::NAN
                } else {
                    (p & 255) as f32
                }
            })
            .collect();
        Ok(Rendered { info, grey, rgba })
    }
}

/// Render `frames` frames of `scene` into `out_dir` (PNG + JSON each, and
/// the recorded poses). Returns the frame infos.
pub fn render(
    ctx: &GpuContext,
    scene: &Scene,
    frames: usize,
    out_dir: &Path,
    height_px: usize,
    dynamic_range: f64,
    labels: bool,
) -> Result<Vec<FrameInfo>, String> {
    let r = Renderer::new(ctx, scene, height_px, dynamic_range);
    let (w, h) = (r.view.display.width, r.view.display.height);
    let mut infos = Vec::new();
    for f in 0..frames {
        let t = std::time::Instant::now();
        let frame = r.frame(ctx, scene, f, frames)?;
        // A frame of a whole hip scene takes minutes on a software
        // adapter: say each one as it lands.
        eprintln!(
            "frame {}/{frames}: {} scatterers, {:.1} s",
            f + 1,
            frame.info.scatterers,
            t.elapsed().as_secs_f64()
        );
        crate::io::png::write_rgba(
            &out_dir.join(format!("frame_{f:04}.png")),
            w,
            h,
            &frame.rgba,
        )
        .map_err(|e| e.to_string())?;
        if labels {
            let l = label_image(scene, &r.view, f, frames);
            crate::io::png::write_rgba(&out_dir.join(format!("frame_{f:04}_labels.png")), w, h, &l)
                .map_err(|e| e.to_string())?;
        }
        let json = serde_json::to_string_pretty(&frame.info).map_err(|e| e.to_string())?;
        write_atomic(&out_dir.join(format!("frame_{f:04}.json")), json.as_bytes())?;
        infos.push(frame.info);
    }
    write_atomic(
        &out_dir.join("poses.txt"),
        super::pose::write_poses(&scene.pose_samples(frames)).as_bytes(),
    )?;
    Ok(infos)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    crate::io::output::write_atomic(path, |w| w.write_all(bytes))
        .map_err(|e| format!("{}: {e}", path.display()))
}
