//! The image chain of the display: the scene's [`Renderer`] (simulate →
//! demodulate → das → detect → scan_convert, recorded with one GPU timer
//! scope per stage and no readback, its simulation spread over screen
//! frames when asked), plus what the display adds: the scatterers built
//! off the frame thread, and a rebuild when the depth changes.

use crate::gpu::GpuContext;
use crate::scene::render::{frame_info, needle_at, tissue_at, FrameInfo, Renderer, View};
use crate::scene::{FramePoses, Scene};
use crate::sim::Scatterer;

pub use crate::scene::render::STAGES;

/// A frame's scatterers (image frame) and landmarks, ready for the GPU.
pub struct Prepared {
    /// The tissue's, unless the kept ones do ([`Renderer::tissue_kept`]).
    pub tissue: Option<Vec<Scatterer>>,
    /// The needle's.
    pub needle: Vec<Scatterer>,
    pub info: FrameInfo,
    pub poses: FramePoses,
    /// CPU time it took (wall clock on the worker thread).
    pub seconds: f64,
}

pub struct ImageChain {
    pub renderer: Renderer,
    height_px: usize,
    /// Dynamic range the detect stage compresses to; the display's own
    /// dynamic range and gain act on this in the composite.
    pub range_db: f64,
}

impl ImageChain {
    pub fn new(
        ctx: &GpuContext,
        scene: &Scene,
        height_px: usize,
        range_db: f64,
    ) -> Result<ImageChain, String> {
        Ok(ImageChain {
            renderer: Renderer::try_new(ctx, scene, height_px, range_db)?,
            height_px,
            range_db,
        })
    }

    pub fn view(&self) -> &View {
        &self.renderer.view
    }

    /// The scene's geometry changed (depth): new plans, same pipelines.
    pub fn rebuild(&mut self, scene: &Scene) -> Result<(), String> {
        self.renderer.replan(scene, self.height_px)
    }

    /// The CPU half of a frame: the scatterers for the tools at `poses`
    /// (the tissue's only when `kept_tissue`, the count of those kept, is
    /// `None`) and where the landmarks fall. Runs on a worker thread in
    /// the display (tens of milliseconds in release, seconds in a debug
    /// build), so it takes the scene and rebuilds the view rather than
    /// borrowing them.
    pub fn prepare(
        scene: Scene,
        height_px: usize,
        poses: FramePoses,
        frame: usize,
        kept_tissue: Option<usize>,
    ) -> Prepared {
        let t = std::time::Instant::now();
        let view = View::new(&scene, height_px);
        let tissue = kept_tissue
            .is_none()
            .then(|| tissue_at(&scene, &view, &poses.probe));
        let needle = needle_at(&scene, &poses);
        let count = tissue.as_ref().map_or(kept_tissue.unwrap_or(0), Vec::len) + needle.len();
        let info = frame_info(&scene, &view, &poses, frame, count);
        Prepared {
            tissue,
            needle,
            info,
            poses,
            seconds: t.elapsed().as_secs_f64(),
        }
    }

    pub fn height_px(&self) -> usize {
        self.height_px
    }
}
