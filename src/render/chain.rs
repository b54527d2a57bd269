//! The image chain of the display: simulate → demodulate → das → detect →
//! scan_convert, recorded into the frame's encoder with one GPU timer scope
//! per stage and no readback.
//!
//! This is `scene::render::Renderer::encode` taken apart (that one records
//! the whole chain in one call and cannot be timed per stage), with the
//! plans built once per geometry instead of once per frame: the display
//! re-records the chain many times per second.

use std::sync::OnceLock;

use crate::gpu::timing::GpuTimer;
use crate::gpu::GpuContext;
use crate::pipeline::das::{DasGeometry, DasPlan};
use crate::pipeline::demodulate::DemodPlan;
use crate::pipeline::simulate::{GpuScatterers, SimJob, SimPlan, Simulate};
use crate::pipeline::{Apodization, Beamformer, DasSettings, DemodSettings, DetectSettings, GpuChannels, PipelineError, Transmit};
use crate::scene::render::{samples, scatterers_at, sim_settings, FrameInfo, View};
use crate::scene::{FramePoses, Scene};
use crate::sim::Scatterer;

/// Stage names, in the order a frame runs them (timer labels).
pub const STAGES: [&str; 5] = ["simulate", "demodulate", "das", "detect", "scan_convert"];

/// A frame's scatterers (image frame) and landmarks, ready for the GPU.
pub struct Prepared {
    pub scatterers: Vec<Scatterer>,
    pub info: FrameInfo,
    pub poses: FramePoses,
    /// CPU time it took (wall clock on the worker thread).
    pub seconds: f64,
}

struct Plans {
    view: View,
    sim: SimPlan,
    demod: DemodPlan,
    das: DasPlan,
    pixels: Vec<[f32; 2]>,
    /// DAS's per-geometry work (tiling choice, padded pixel tables,
    /// transmit delays computed on the GPU), done by the first frame and
    /// reused: the grid and the acquisition are the same every frame.
    /// Recording it per frame cost ~260 ms of the frame thread's CPU on
    /// lavapipe's host (measured with `record (CPU)` in the status line).
    das_geometry: OnceLock<DasGeometry>,
}

pub struct ImageChain {
    plans: Plans,
    height_px: usize,
    /// Dynamic range the detect stage compresses to; the display's own
    /// dynamic range and gain act on this in the composite.
    pub range_db: f64,
    beamformer: Beamformer,
    simulator: Simulate,
}

fn das_settings() -> DasSettings {
    // As scene::render::Renderer: Hann receive apodization (a boxcar's
    // sidelobes fill bone shadows with clutter under diverging waves).
    DasSettings { apodization: Apodization::Hann, transmit: Transmit::Analytic, ..Default::default() }
}

impl Plans {
    fn new(scene: &Scene, height_px: usize) -> Result<Plans, String> {
        let view = View::new(scene, height_px);
        let sim = SimPlan::new(&scene.acquisition, samples(scene), &sim_settings(scene)).map_err(|e| e.to_string())?;
        let demod = DemodPlan::new(&sim.acquisition, &DemodSettings::default()).map_err(|e| e.to_string())?;
        let pixels = view.grid.positions_f32();
        let das = DasPlan::new(&sim.acquisition, &das_settings(), demod.fc, pixels.len(), 1).map_err(|e| e.to_string())?;
        Ok(Plans { view, sim, demod, das, pixels, das_geometry: OnceLock::new() })
    }
}

impl ImageChain {
    pub fn new(ctx: &GpuContext, scene: &Scene, height_px: usize, range_db: f64) -> Result<ImageChain, String> {
        Ok(ImageChain { plans: Plans::new(scene, height_px)?, height_px, range_db, beamformer: Beamformer::new(ctx), simulator: Simulate::new(&ctx.device) })
    }

    pub fn view(&self) -> &View {
        &self.plans.view
    }

    /// The scene's geometry changed (depth): new plans, same pipelines.
    pub fn rebuild(&mut self, scene: &Scene) -> Result<(), String> {
        self.plans = Plans::new(scene, self.height_px)?;
        Ok(())
    }

    /// The CPU half of a frame: the scatterers for the tools at `poses`
    /// and where the landmarks fall. Runs on a worker thread in the display
    /// (tens of milliseconds in release, seconds in a debug build), so it
    /// takes the scene and rebuilds the view rather than borrowing them.
    pub fn prepare(scene: Scene, height_px: usize, poses: FramePoses, frame: usize) -> Prepared {
        let t = std::time::Instant::now();
        let view = View::new(&scene, height_px);
        let (scatterers, info) = scatterers_at(&scene, &view, &poses, frame);
        Prepared { scatterers, info, poses, seconds: t.elapsed().as_secs_f64() }
    }

    pub fn height_px(&self) -> usize {
        self.height_px
    }

    /// Record the GPU half of a frame. Returns the display buffer (RGBA8
    /// per `u32`, `view().display` sized, alpha 0 outside the sector).
    pub fn encode(&self, ctx: &GpuContext, enc: &mut wgpu::CommandEncoder, timer: &mut GpuTimer, prepared: &Prepared) -> Result<wgpu::Buffer, String> {
        let mut job = Some(self.start(ctx, prepared, None)?);
        let rf = self.step(ctx, enc, timer, &mut job, usize::MAX).expect("every batch recorded");
        self.finish(ctx, enc, timer, rf)
    }

    /// Upload a frame's scatterers and allocate its simulation, to be
    /// recorded `batch` scatterers at a time by [`ImageChain::step`].
    pub fn start(&self, ctx: &GpuContext, prepared: &Prepared, batch: Option<usize>) -> Result<SimJob, String> {
        let gpu = GpuScatterers::upload(ctx, &prepared.scatterers).map_err(|e| e.to_string())?;
        self.simulator.begin(ctx, &self.plans.sim, &gpu, batch).map_err(|e| e.to_string())
    }

    /// Record up to `batches` more batches of the simulation in `job`;
    /// once the last is recorded, also its resolve, and hand back the RF
    /// (taking the job).
    pub fn step(&self, ctx: &GpuContext, enc: &mut wgpu::CommandEncoder, timer: &mut GpuTimer, job: &mut Option<SimJob>, batches: usize) -> Option<GpuChannels> {
        let sim = &self.plans.sim;
        timer.scope(ctx, enc, STAGES[0], |enc| {
            let j = job.as_mut()?;
            if !self.simulator.step(ctx, enc, sim, j, batches) {
                return None;
            }
            Some(self.simulator.finish(ctx, enc, sim, job.take()?))
        })
    }

    /// Record the rest of the chain on simulated RF: demodulate, das,
    /// detect, scan convert.
    pub fn finish(&self, ctx: &GpuContext, enc: &mut wgpu::CommandEncoder, timer: &mut GpuTimer, rf: GpuChannels) -> Result<wgpu::Buffer, String> {
        let p = &self.plans;
        let bf = &self.beamformer;
        let iq = timer.scope(ctx, enc, STAGES[1], |enc| bf.demodulate.encode(ctx, enc, &rf, &p.demod)).map_err(|e| e.to_string())?;
        let image = timer
            .scope(ctx, enc, STAGES[2], |enc| -> Result<wgpu::Buffer, PipelineError> {
                let geom = match p.das_geometry.get() {
                    Some(g) => g,
                    None => {
                        let g = bf.das.prepare(ctx, enc, &p.das, &p.pixels, iq.samples, iq.frames, iq.iq)?;
                        p.das_geometry.get_or_init(|| g)
                    }
                };
                let target = bf.das.target(ctx, geom, &iq)?;
                bf.das.record(ctx, enc, geom, &target)?;
                Ok(target.image)
            })
            .map_err(|e| e.to_string())?;
        let detect = DetectSettings { dynamic_range_db: self.range_db, ..Default::default() };
        let detected = timer.scope(ctx, enc, STAGES[3], |enc| bf.detect.encode(ctx, enc, &image, p.pixels.len(), &detect)).map_err(|e| e.to_string())?;
        timer.scope(ctx, enc, STAGES[4], |enc| bf.scan_convert.encode(ctx, enc, &detected.grey, &p.view.grid, &p.view.display, 0)).map_err(|e| e.to_string())
    }
}
