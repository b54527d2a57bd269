//! Host side of `shaders/das.wgsl`: uniforms, element and wave tables,
//! the three passes (frame-contiguous layout, transmit table, beamforming)
//! and their specialisation. CPU twin: `reference::das`.
//!
//! The work is split so that what depends only on the geometry (pixels,
//! probe, waves: [`DasGeometry`]) is computed once and reused for every
//! batch of frames, and what depends on the data ([`DasTarget`]: the
//! channel buffer, the frame-contiguous copy of it and the image) is
//! recorded per batch. [`Das::encode`] does both for one-off use;
//! streaming (`sonoguide hfr`) keeps the geometry and the targets.
//!
//! Why the kernel is shaped as it is, with the measurements: BENCHMARKS.md.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use bytemuck::{Pod, Zeroable};

use super::{specialised_pipeline, GpuChannels, PipelineError, Specialisations};
use crate::acquisition::{fnumber, transmit, Acquisition, Wavefront};
use crate::gpu::{dispatch_size, shaders, GpuContext};

pub const STAGE: &str = "das";
/// The largest block of frames one invocation beamforms (2 × the largest
/// `ROW_VEC4` in das.wgsl).
pub const FRAMES_PER_THREAD: usize = 16;
const WORKGROUP: u32 = 64;
/// Values one `das_range` invocation folds (RANGE_CHUNK in das.wgsl).
const RANGE_CHUNK: u32 = 16;
/// Keep in sync with MAX_ELEMENTS and MAX_WAVES in das.wgsl (the sizes of
/// the uniform arrays).
pub const MAX_ELEMENTS: usize = 1024;
pub const MAX_WAVES: usize = 256;

/// The most pixels one beamforming dispatch takes on this adapter: one
/// dimension of workgroups, after padding (`pad_runs` adds at most a
/// quarter) and a last invocation's pixel slots (at most 8).
pub fn max_pixels(ctx: &GpuContext) -> usize {
    let max_groups = ctx.device.limits().max_compute_workgroups_per_dimension as usize;
    (max_groups * WORKGROUP as usize).saturating_sub(8) * 4 / 5
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Interp {
    Nearest = 0,
    Linear = 1,
    Cubic = 2,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Apodization {
    Boxcar,
    Hann,
    /// Tukey window with this taper fraction (0 = boxcar, 1 = Hann).
    Tukey(f32),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FNumber {
    /// Receive cone of half-angle atan(1/(2F)) about each element's normal.
    Fixed(f64),
    /// MUST's rule from the element width and the bandwidth.
    Auto,
    /// Every element receives every pixel.
    Full,
}

/// How the transmit time of a pixel is computed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transmit {
    /// UFF's analytic wavefront (plane, diverging, focused).
    Analytic,
    /// MUST's `dasmtx`: earliest arrival over 4N spline-interpolated
    /// virtual elements (equal inside the insonified zone, edge wave outside).
    Must,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DasSettings {
    pub interp: Interp,
    pub apodization: Apodization,
    pub fnumber: FNumber,
    /// Divide each wave's sum by its sum of receive weights.
    pub normalize: bool,
    pub transmit: Transmit,
}

impl Default for DasSettings {
    /// What MUST's `dasmtx` does when given only the data and the grid.
    fn default() -> Self {
        DasSettings {
            interp: Interp::Linear,
            apodization: Apodization::Boxcar,
            fnumber: FNumber::Auto,
            normalize: false,
            transmit: Transmit::Must,
        }
    }
}

/// Keep in sync with `DasParams` in das.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct DasParams {
    pub n_pixels: u32,
    pub n_elements: u32,
    pub n_waves: u32,
    pub n_samples: u32,
    pub n_frames: u32,
    pub interp: u32,
    pub apodization: u32,
    pub flags: u32,
    pub fs: f32,
    pub t0: f32,
    pub inv_c: f32,
    pub f_mod: f32,
    pub aperture: f32,
    pub tukey: f32,
    pub transmit: u32,
    pub _pad0: u32,
}

/// Keep in sync with `Element` in shaders/shared/acquisition.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct GpuElement {
    pub position: [f32; 4],
    pub normal: [f32; 4],
}

/// Keep in sync with `Wave` in shaders/shared/acquisition.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct GpuWave {
    pub geometry: [f32; 4],
    pub kind: u32,
    pub delay: f32,
    pub table_start: u32,
    pub table_len: u32,
}

const _: () = assert!(std::mem::size_of::<DasParams>() == 64);
const _: () = assert!(std::mem::size_of::<GpuElement>() == 32);
const _: () = assert!(std::mem::size_of::<GpuWave>() == 32);

pub const FLAG_IQ: u32 = 1;
pub const FLAG_NORMALIZE: u32 = 2;

/// Everything the kernel (and its CPU twin) needs, resolved from the
/// acquisition and the settings.
#[derive(Debug, Clone)]
pub struct DasPlan {
    pub params: DasParams,
    pub elements: Vec<GpuElement>,
    pub waves: Vec<GpuWave>,
    /// MUST virtual elements (x, y, z, delay·c), all waves back to back.
    pub tx_table: Vec<[f32; 4]>,
    pub fnumber: f64,
}

impl DasPlan {
    /// `f_mod`: modulation frequency of the data handed to the kernel (0 for RF).
    pub fn new(
        acq: &Acquisition,
        s: &DasSettings,
        f_mod: f64,
        n_pixels: usize,
        n_frames: usize,
    ) -> Result<DasPlan, PipelineError> {
        let fnumber = match s.fnumber {
            FNumber::Fixed(f) if f.is_finite() && f > 0.0 => f,
            FNumber::Fixed(f) => {
                return Err(PipelineError::Settings(format!(
                    "--fnumber {f}: expected a positive number or `auto`"
                )))
            }
            FNumber::Auto => fnumber::must_auto_fnumber(
                acq.probe.element_width(),
                acq.center_frequency,
                acq.bandwidth * 100.0,
                acq.sound_speed,
            ),
            FNumber::Full => 0.0,
        };
        let (apodization, tukey) = match s.apodization {
            Apodization::Boxcar => (0, 0.0),
            Apodization::Hann => (1, 0.0),
            Apodization::Tukey(a) if (0.0..=1.0).contains(&a) => (2, a),
            Apodization::Tukey(a) => {
                return Err(PipelineError::Settings(format!(
                    "tukey:{a}: the taper fraction must be in [0, 1]"
                )))
            }
        };
        // FLAG_IQ follows the data at dispatch time (`Das::encode`).
        let mut flags = 0;
        if s.normalize {
            flags |= FLAG_NORMALIZE;
        }
        let params = DasParams {
            n_pixels: n_pixels as u32,
            n_elements: acq.probe.len() as u32,
            n_waves: acq.waves.len() as u32,
            n_samples: 0,
            n_frames: n_frames as u32,
            interp: s.interp as u32,
            apodization,
            flags,
            fs: acq.sampling_frequency as f32,
            t0: acq.initial_time as f32,
            inv_c: (1.0 / acq.sound_speed) as f32,
            f_mod: f_mod as f32,
            aperture: if fnumber > 0.0 {
                (1.0 / (2.0 * fnumber)) as f32
            } else {
                0.0
            },
            tukey,
            transmit: match s.transmit {
                Transmit::Analytic => 0,
                Transmit::Must => 1,
            },
            _pad0: 0,
        };
        let elements = acq
            .probe
            .elements
            .iter()
            .map(|e| {
                let n = e.normal();
                GpuElement {
                    position: [
                        e.position.x as f32,
                        e.position.y as f32,
                        e.position.z as f32,
                        0.0,
                    ],
                    normal: [n.x as f32, n.y as f32, n.z as f32, 0.0],
                }
            })
            .collect();
        let mut tx_table: Vec<[f32; 4]> = Vec::new();
        let waves = acq
            .waves
            .iter()
            .map(|w| {
                let table_start = tx_table.len() as u32;
                if s.transmit == Transmit::Must {
                    let v = transmit::must_virtual_elements(&acq.probe, w, acq.sound_speed);
                    tx_table.extend(v.iter().map(|e| e.map(|x| x as f32)));
                }
                let table_len = tx_table.len() as u32 - table_start;
                let (geometry, kind) = match w.wavefront {
                    Wavefront::Plane { azimuth } => {
                        ([azimuth.sin() as f32, 0.0, azimuth.cos() as f32, 0.0], 0)
                    }
                    Wavefront::Diverging { source } => (
                        [
                            source.x as f32,
                            source.y as f32,
                            source.z as f32,
                            source.length() as f32,
                        ],
                        1,
                    ),
                    Wavefront::Focused { focus } => (
                        [
                            focus.x as f32,
                            focus.y as f32,
                            focus.z as f32,
                            focus.length() as f32,
                        ],
                        2,
                    ),
                };
                GpuWave {
                    geometry,
                    kind,
                    delay: w.delay as f32,
                    table_start,
                    table_len,
                }
            })
            .collect();
        Ok(DasPlan {
            params,
            elements,
            waves,
            tx_table,
            fnumber,
        })
    }
}

/// How the `das` entry point is specialised (pipeline-overridable constants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DasTiling {
    /// Consecutive pixels one invocation beamforms, sharing the rows they
    /// read: 1, 2, 4 or 8.
    pub pixels_per_invocation: u32,
    /// vec4 per row (2 frames each): 1, 2, 4 or 8.
    pub row_vec4: u32,
    /// How far apart (in samples) the first taps of an invocation's pixels
    /// may be and still share one window of rows: 2, 4 or 6; 0 when forced
    /// tilings leave it to [`choose_tiling`].
    pub window_span: u32,
    /// Rows stored as f16 pairs, scaled by a power of two (`ROW_F16` in
    /// das.wgsl): half the bytes per tap. Needs `row_vec4` ≥ 2.
    pub f16_rows: bool,
    /// Threads sharing one invocation's element loop (`ELEMENT_SPLIT`):
    /// 1, 2, 4 or 8; more than 1 needs one pixel per invocation.
    pub element_split: u32,
}

impl DasTiling {
    /// What measured best on the adapter's kind (BENCHMARKS.md): on a CPU
    /// adapter (lavapipe), 8 pixels per invocation; on GPUs, where 8 pixels
    /// per thread leaves too few threads for small images, 4. Rows as long
    /// as the frames allow, up to 16 frames on a CPU adapter and 8 on GPUs.
    pub fn for_adapter(device_type: wgpu::DeviceType, frames: usize) -> DasTiling {
        let cpu = device_type == wgpu::DeviceType::Cpu;
        // On a GPU, one pixel per invocation: every tiling measured on an
        // H200 (PWI_disk, scripts/gpu_bench.sh; BENCHMARKS.md) ran fastest
        // at 1 pixel and 8 frames per block, 7.0e11 points/s against
        // 5.1e11 at the 4 pixels reasoned before: a GPU has the threads,
        // and sharing delays across pixels costs it registers.
        let pixels_per_invocation = if cpu { 8 } else { 1 };
        // On a CPU adapter, 16 frames per block halves the delay work per
        // frame again (measured on PWI_disk: 287 → 241 ms of CPU per run);
        // on GPUs longer rows mean fewer threads, so 8.
        let row_vec4 = Self::row_vec4_for(frames).min(if cpu { 8 } else { 4 });
        DasTiling {
            pixels_per_invocation,
            row_vec4,
            window_span: 2,
            f16_rows: false,
            element_split: 1,
        }
    }

    /// The shortest row (in vec4) that holds `frames` frames, at most 8.
    pub fn row_vec4_for(frames: usize) -> u32 {
        match frames {
            0..=2 => 1,
            3..=4 => 2,
            5..=8 => 4,
            _ => 8,
        }
    }

    pub fn validate(&self) -> Result<(), PipelineError> {
        if ![1, 2, 4, 8].contains(&self.pixels_per_invocation) {
            return Err(PipelineError::Settings(format!(
                "pixels per invocation {}: expected 1, 2, 4 or 8",
                self.pixels_per_invocation
            )));
        }
        if ![1, 2, 4, 8].contains(&self.row_vec4) {
            return Err(PipelineError::Settings(format!(
                "row length {} vec4: expected 1, 2, 4 or 8",
                self.row_vec4
            )));
        }
        if ![1, 2, 4, 8].contains(&self.element_split)
            || (self.element_split > 1 && self.pixels_per_invocation != 1)
        {
            return Err(PipelineError::Settings(format!(
                "element split {} with {} pixels per invocation: expected 1, 2, 4 or 8, and more than 1 only with 1 pixel per invocation",
                self.element_split, self.pixels_per_invocation
            )));
        }
        if self.f16_rows && self.row_vec4 < 2 {
            return Err(PipelineError::Settings(format!(
                "f16 rows need at least 2 vec4 per row (4 frames), not {}",
                self.row_vec4
            )));
        }
        if ![0, 2, 4, 6].contains(&self.window_span) {
            return Err(PipelineError::Settings(format!(
                "window span {}: expected 2, 4 or 6 (0: chosen from the geometry)",
                self.window_span
            )));
        }
        Ok(())
    }

    pub fn frames_per_block(&self) -> usize {
        2 * self.row_vec4 as usize
    }

    /// `frames` rounded up to a whole block (the row length in frames).
    pub fn frames_padded(&self, frames: usize) -> usize {
        frames.div_ceil(self.frames_per_block()) * self.frames_per_block()
    }

    /// Bytes of one complex sample in the rows.
    pub fn row_sample_bytes(&self) -> usize {
        if self.f16_rows {
            4
        } else {
            8
        }
    }
}

/// The settings das.wgsl is specialised on (its pipeline-overridable
/// constants besides the tiling), read from the uniforms so they agree.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Variant {
    interp: u32,
    apodization: u32,
    cone: bool,
}

impl Variant {
    fn of(p: &DasParams) -> Variant {
        Variant {
            interp: p.interp,
            apodization: p.apodization,
            cone: p.aperture > 0.0,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Entry {
    Layout,
    Transmit,
    Das,
    Range,
}

impl Entry {
    fn name(self) -> &'static str {
        match self {
            Entry::Range => "das_range",
            Entry::Layout => "das_layout",
            Entry::Transmit => "das_transmit",
            Entry::Das => "das",
        }
    }
}

/// A bind group layout with explicit binding numbers (the three entry
/// points of das.wgsl number their bindings apart).
fn bind_layout(
    device: &wgpu::Device,
    label: &str,
    bindings: &[(u32, wgpu::BufferBindingType)],
) -> wgpu::BindGroupLayout {
    let entries: Vec<wgpu::BindGroupLayoutEntry> = bindings
        .iter()
        .map(|(i, ty)| wgpu::BindGroupLayoutEntry {
            binding: *i,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: *ty,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        })
        .collect();
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(label),
        entries: &entries,
    })
}

/// One pass of `entry` (labelled `sonoguide.das.layout` for `das_layout`,
/// and so on): `groups` workgroups.
fn dispatch(
    enc: &mut wgpu::CommandEncoder,
    entry: Entry,
    pipeline: &wgpu::ComputePipeline,
    group: &wgpu::BindGroup,
    groups: (u32, u32),
) {
    let label = format!("sonoguide.{}", entry.name().replace('_', "."));
    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some(&label),
        timestamp_writes: None,
    });
    pass.set_pipeline(pipeline);
    pass.set_bind_group(0, group, &[]);
    pass.dispatch_workgroups(groups.0, groups.1, 1);
}

/// A uniform buffer holding a fixed-size table (das.wgsl's uniform arrays).
fn uniform_table(device: &wgpu::Device, label: &str, bytes: &[u8]) -> wgpu::Buffer {
    use wgpu::util::DeviceExt;
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: bytes,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
    })
}

fn bind(
    device: &wgpu::Device,
    label: &str,
    layout: &wgpu::BindGroupLayout,
    buffers: &[(u32, &wgpu::Buffer)],
) -> wgpu::BindGroup {
    let entries: Vec<wgpu::BindGroupEntry> = buffers
        .iter()
        .map(|(i, b)| wgpu::BindGroupEntry {
            binding: *i,
            resource: b.as_entire_binding(),
        })
        .collect();
    device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(label),
        layout,
        entries: &entries,
    })
}

/// The pixel list padded for invocations of `k` pixels, and for each padded
/// pixel its index in the image (`u32::MAX`: padding, not stored).
///
/// An invocation shares rows between its pixels, which pays when their
/// delays are close: neighbours along a grid row. Where the list jumps (a
/// step more than 4× the median step: the next grid row, or the next
/// angle's ray) a new run starts, and each run is padded to a whole number
/// of invocations by repeating its last pixel, so that no invocation
/// straddles two rows. PWI_disk's 251-pixel rows become 256. If padding
/// would add more than a quarter (a list without row structure), the list
/// is only padded at its end.
pub fn pad_runs(pixels: &[[f32; 2]], k: usize) -> (Vec<[f32; 2]>, Vec<u32>) {
    let n = pixels.len();
    let plain = |pixels: &[[f32; 2]]| {
        let mut p = pixels.to_vec();
        let mut idx: Vec<u32> = (0..n as u32).collect();
        while !p.len().is_multiple_of(k.max(1)) {
            p.push(pixels[n - 1]);
            idx.push(u32::MAX);
        }
        (p, idx)
    };
    if k <= 1 || n < 2 {
        return plain(pixels);
    }
    let step = |i: usize| {
        let (a, b) = (pixels[i], pixels[i + 1]);
        ((a[0] - b[0]) as f64).hypot((a[1] - b[1]) as f64)
    };
    let mut steps: Vec<f64> = (0..n - 1).map(step).filter(|s| *s > 0.0).collect();
    if steps.is_empty() {
        return plain(pixels);
    }
    steps.sort_by(f64::total_cmp);
    let jump = 4.0 * steps[steps.len() / 2];
    let mut p = Vec::with_capacity(n + n / 4);
    let mut idx = Vec::with_capacity(n + n / 4);
    for (i, q) in pixels.iter().enumerate() {
        p.push(*q);
        idx.push(i as u32);
        let end_of_run = i + 1 == n || step(i) > jump;
        if end_of_run {
            while !p.len().is_multiple_of(k) {
                p.push(*q);
                idx.push(u32::MAX);
            }
        }
    }
    if p.len() > n + n / 4 {
        return plain(pixels);
    }
    (p, idx)
}

/// Pixels per invocation and window span for this geometry, from a sample
/// of the delays (`reference::das::first_tap`, analytic transmit).
///
/// An invocation beamforms its pixels from one window of rows only when
/// their first taps, element by element, are at most `window_span` apart;
/// otherwise the kernel's slow second pass takes the rest (correct, but it
/// repeats the whole element loop). So: the smallest span in {2, 4, 6}
/// that covers every element of 99 % of the sampled invocations (with
/// `shrink`, of {2, 4}); if none does and `shrink` allows, half as many
/// pixels per invocation. A wider window costs one multiply-add per extra
/// row; fewer pixels per invocation share less. PWI_disk (6.7 MHz, 0.1 mm
/// pixels) gets 8 pixels and span 2; 20.8 MHz data on the same grid need
/// span 6 at 8 pixels, and get 4 pixels and span 2.
pub fn choose_tiling(
    plan: &DasPlan,
    pixels: &[[f32; 2]],
    samples: usize,
    start: DasTiling,
    shrink: bool,
) -> DasTiling {
    use crate::reference::das::{first_tap, transmit_distance};
    let mut k = start.pixels_per_invocation.max(1);
    loop {
        if k == 1 {
            // One pixel needs no span (see `Das::pipeline`).
            return DasTiling {
                pixels_per_invocation: 1,
                window_span: 0,
                ..start
            };
        }
        let (padded, _) = pad_runs(pixels, k as usize);
        let n_inv = padded.len() / k as usize;
        let step = (n_inv / 128).max(1);
        let waves = plan.waves.len().min(4);
        let mut worst: Vec<i64> = Vec::new();
        for inv in (0..n_inv).step_by(step) {
            let mut span = 0;
            for w in 0..waves {
                let wave = &plan.waves[w];
                let pts: Vec<([f64; 3], f64)> = (0..k as usize)
                    .map(|j| {
                        let q = padded[inv * k as usize + j];
                        let pos = [q[0] as f64, 0.0, q[1] as f64];
                        (
                            pos,
                            transmit_distance(wave.kind, wave.geometry.map(|v| v as f64), pos),
                        )
                    })
                    .collect();
                for e in 0..plan.elements.len() {
                    let rows = pts.iter().filter_map(|(pos, t)| {
                        first_tap(plan, samples, *pos, *t, wave.delay as f64, e)
                    });
                    let (lo, hi) =
                        rows.fold((i64::MAX, i64::MIN), |(lo, hi), r| (lo.min(r), hi.max(r)));
                    if hi >= lo {
                        span = span.max(hi - lo);
                    }
                }
            }
            worst.push(span);
        }
        worst.sort_unstable();
        let p99 = worst
            .get((worst.len() * 99 / 100).min(worst.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0);
        // Chosen freely, a span of 6 is not taken: its window's extra rows
        // cost more than sharing among half as many pixels saves
        // (lavapipe, synthetic 20.8 MHz data on 256 × 256 pixels, f16
        // rows: 8 pixels and span 6 121 ms, 4 pixels and span 2 89 ms; at
        // span 4 the two were even, 198 / 190 ms on 384 × 384).
        let widest = if shrink { 4 } else { 6 };
        if let Some(s) = [2, 4, 6].into_iter().find(|s| *s <= widest && p99 <= *s) {
            return DasTiling {
                pixels_per_invocation: k,
                window_span: s as u32,
                ..start
            };
        }
        if !shrink {
            return DasTiling {
                pixels_per_invocation: k,
                window_span: 6,
                ..start
            };
        }
        k /= 2;
    }
}

/// The geometry of a beamforming job on the GPU: everything that does not
/// change from one batch of frames to the next. Made by [`Das::prepare`].
pub struct DasGeometry {
    pub params: DasParams,
    pub tiling: DasTiling,
    pub n_pixels: usize,
    pub samples: usize,
    pub frames: usize,
    pub iq: bool,
    /// Pixels as the kernels see them: runs of neighbours padded to whole
    /// invocations ([`pad_runs`]).
    pub n_padded: usize,
    uniform: wgpu::Buffer,
    elements: wgpu::Buffer,
    waves: wgpu::Buffer,
    pixels: wgpu::Buffer,
    out_index: wgpu::Buffer,
    /// [wave][pixel] (transmit distance, wave scale, first and last element), written by das_transmit.
    pub tx: wgpu::Buffer,
}

/// One channel buffer's beamforming: the frame-contiguous copy of it and
/// the `[frame][pixel]` complex image. Made by [`Das::target`].
pub struct DasTarget {
    pub image: wgpu::Buffer,
    pub rows: wgpu::Buffer,
    /// The batch's largest |sample| (f16 rows' scale; das_range).
    range: wgpu::Buffer,
    layout_bg: wgpu::BindGroup,
    range_bg: wgpu::BindGroup,
    das_bg: wgpu::BindGroup,
}

pub struct Das {
    module: wgpu::ShaderModule,
    layouts: [(wgpu::BindGroupLayout, wgpu::PipelineLayout); 4],
    pipelines: Specialisations<(Entry, Variant, DasTiling), wgpu::ComputePipeline>,
    device_type: wgpu::DeviceType,
    /// Set by benchmarks to compare tilings; `None`: [`DasTiling::for_adapter`].
    tiling: Mutex<Option<DasTiling>>,
    /// Store rows as f16 whatever the tiling ([`Das::set_f16_rows`]).
    f16_rows: AtomicBool,
}

impl Das {
    pub fn new(device: &wgpu::Device) -> Das {
        use wgpu::BufferBindingType::{Storage, Uniform};
        let module = shaders::module(device, STAGE);
        let ro = Storage { read_only: true };
        let rw = Storage { read_only: false };
        // In `Entry` order.
        let specs: [(&str, Vec<(u32, wgpu::BufferBindingType)>); 4] = [
            (
                "sonoguide.das.layout",
                vec![(0, Uniform), (1, ro), (2, rw), (12, rw)],
            ),
            (
                "sonoguide.das.transmit",
                vec![
                    (0, Uniform),
                    (3, Uniform),
                    (4, Uniform),
                    (5, ro),
                    (6, ro),
                    (7, rw),
                ],
            ),
            (
                "sonoguide.das",
                vec![
                    (0, Uniform),
                    (3, Uniform),
                    (4, Uniform),
                    (5, ro),
                    (8, ro),
                    (9, ro),
                    (10, rw),
                    (11, ro),
                    (12, rw),
                ],
            ),
            ("sonoguide.das.range", vec![(0, Uniform), (1, ro), (12, rw)]),
        ];
        let layouts = specs.map(|(label, b)| {
            let bgl = bind_layout(device, label, &b);
            let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(label),
                bind_group_layouts: &[Some(&bgl)],
                immediate_size: 0,
            });
            (bgl, pl)
        });
        Das {
            module,
            layouts,
            pipelines: Specialisations::new(STAGE),
            device_type: device.adapter_info().device_type,
            tiling: Mutex::new(None),
            f16_rows: AtomicBool::new(false),
        }
    }

    /// Store the rows as f16 pairs (`DasTiling::f16_rows`) from the next
    /// [`Das::prepare`] on: half the bytes per tap, at 11 bits per sample.
    /// The relative error of the image stays under 1e-3 of its peak (-60
    /// dB; tests/gpu_vs_cpu.rs), so a B-mode display cannot tell, while
    /// f32 keeps the CPU twin's 2e-4 for quantitative work. Rows get at
    /// least 2 vec4 (4 frames).
    pub fn set_f16_rows(&self, on: bool) {
        self.f16_rows.store(on, Ordering::Relaxed);
    }

    /// Force a tiling (benchmarks); `None` returns to the adapter's default.
    pub fn set_tiling(&self, tiling: Option<DasTiling>) -> Result<(), PipelineError> {
        if let Some(t) = &tiling {
            t.validate()?;
        }
        *self
            .tiling
            .lock()
            .map_err(|_| PipelineError::Settings("das tiling lock poisoned".into()))? = tiling;
        Ok(())
    }

    /// The adapter's tiling for `frames` frames, ignoring any forced one.
    pub fn default_tiling(&self, frames: usize) -> DasTiling {
        DasTiling::for_adapter(self.device_type, frames)
    }

    fn pipeline(
        &self,
        device: &wgpu::Device,
        entry: Entry,
        params: &DasParams,
        tiling: DasTiling,
    ) -> Result<wgpu::ComputePipeline, PipelineError> {
        let v = Variant::of(params);
        self.pipelines.get((entry, v, tiling), || {
            let constants = [
                ("INTERP", v.interp as f64),
                ("APODIZATION", v.apodization as f64),
                ("APERTURE_CONE", if v.cone { 1.0 } else { 0.0 }),
                ("PIXELS_PER_INVOCATION", tiling.pixels_per_invocation as f64),
                ("ROW_VEC4", tiling.row_vec4 as f64),
                // One pixel's taps are one window of `taps` rows: no span. (A
                // span of 2 kept two more rows of the row type in registers
                // and multiplied them by zero weights: 4 rows where 2 do.)
                (
                    "WINDOW_SPAN",
                    if tiling.pixels_per_invocation == 1 {
                        0.0
                    } else {
                        tiling.window_span.max(2) as f64
                    },
                ),
                ("ROW_F16", if tiling.f16_rows { 1.0 } else { 0.0 }),
                ("ELEMENT_SPLIT", tiling.element_split as f64),
            ];
            let layout = &self.layouts[entry as usize].1;
            specialised_pipeline(
                device,
                STAGE,
                &self.module,
                layout,
                entry.name(),
                &constants,
                false,
            )
        })
    }

    /// Upload the geometry and record `das_transmit` (transmit distances and
    /// wave scales for every pixel). `samples`, `frames` and `iq` describe
    /// the channel data that will be beamformed with it.
    #[allow(clippy::too_many_arguments)]
    pub fn prepare(
        &self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        plan: &DasPlan,
        pixels: &[[f32; 2]],
        samples: usize,
        frames: usize,
        iq: bool,
    ) -> Result<DasGeometry, PipelineError> {
        let n_el = plan.elements.len();
        let n_w = plan.waves.len();
        if n_el == 0 || n_el > MAX_ELEMENTS {
            return Err(PipelineError::Settings(format!(
                "probe.elements: {n_el} elements; the GPU beamformer takes 1 to {MAX_ELEMENTS}"
            )));
        }
        if n_w == 0 || n_w > MAX_WAVES {
            return Err(PipelineError::Settings(format!("waves: {n_w} waves; the GPU beamformer takes 1 to {MAX_WAVES} per job (select fewer with --waves)")));
        }
        if pixels.is_empty() || frames == 0 || samples < 2 {
            return Err(PipelineError::Settings(format!(
                "das: nothing to beamform ({} pixels, {frames} frames, {samples} samples)",
                pixels.len()
            )));
        }
        let forced = self.tiling.lock().ok().and_then(|t| *t);
        let mut tiling = match forced {
            Some(t) if t.window_span != 0 => t,
            Some(t) => choose_tiling(plan, pixels, samples, t, false),
            None => choose_tiling(
                plan,
                pixels,
                samples,
                DasTiling::for_adapter(self.device_type, frames),
                true,
            ),
        };
        if self.f16_rows.load(Ordering::Relaxed) {
            tiling.f16_rows = true;
            tiling.row_vec4 = tiling.row_vec4.max(2);
        }
        tiling.validate()?;
        if pixels.len() > max_pixels(ctx) {
            return Err(PipelineError::Settings(format!(
                "{} pixels is more than one dispatch can hold on this adapter (at most {}); split the grid",
                pixels.len(),
                max_pixels(ctx)
            )));
        }
        let mut params = plan.params;
        params.n_pixels = pixels.len() as u32;
        params.n_samples = samples as u32;
        params.n_frames = frames as u32;
        if iq {
            params.flags |= FLAG_IQ;
        } else {
            params.flags &= !FLAG_IQ;
        }
        let mut el = plan.elements.clone();
        el.resize(MAX_ELEMENTS, GpuElement::zeroed());
        let mut wv = plan.waves.clone();
        wv.resize(MAX_WAVES, GpuWave::zeroed());
        let uniform = ctx.uniform_from("sonoguide.das.params", &params);
        let elements = uniform_table(
            &ctx.device,
            "sonoguide.das.elements",
            bytemuck::cast_slice(&el),
        );
        let waves = uniform_table(
            &ctx.device,
            "sonoguide.das.waves",
            bytemuck::cast_slice(&wv),
        );
        let (padded, index) = pad_runs(pixels, tiling.pixels_per_invocation as usize);
        let pix = ctx.storage_from("sonoguide.das.pixels", &padded)?;
        let out_index = ctx.storage_from("sonoguide.das.out_index", &index)?;
        let table = ctx.storage_from(
            "sonoguide.das.tx_table",
            if plan.tx_table.is_empty() {
                &[[0f32; 4]]
            } else {
                &plan.tx_table[..]
            },
        )?;
        let tx = ctx.storage("sonoguide.das.tx", (n_w * padded.len() * 16) as u64)?;
        let transmit_bg = bind(
            &ctx.device,
            "sonoguide.das.transmit",
            &self.layouts[Entry::Transmit as usize].0,
            &[
                (0, &uniform),
                (3, &elements),
                (4, &waves),
                (5, &pix),
                (6, &table),
                (7, &tx),
            ],
        );
        let pipeline = self.pipeline(&ctx.device, Entry::Transmit, &params, tiling)?;
        let groups = ((padded.len() as u32).div_ceil(WORKGROUP), n_w as u32);
        dispatch(enc, Entry::Transmit, &pipeline, &transmit_bg, groups);
        Ok(DasGeometry {
            params,
            tiling,
            n_pixels: pixels.len(),
            n_padded: padded.len(),
            samples,
            frames,
            iq,
            uniform,
            elements,
            waves,
            pixels: pix,
            out_index,
            tx,
        })
    }

    /// The buffers and bind groups that beamform `channels` with `geom`.
    pub fn target(
        &self,
        ctx: &GpuContext,
        geom: &DasGeometry,
        channels: &GpuChannels,
    ) -> Result<DasTarget, PipelineError> {
        Self::check_shape(geom, channels)?;
        let padded = geom.tiling.frames_padded(geom.frames);
        let rows = ctx.storage(
            "sonoguide.das.rows",
            (channels.waves
                * channels.channels
                * channels.samples
                * padded
                * geom.tiling.row_sample_bytes()) as u64,
        )?;
        let image = ctx.storage(
            "sonoguide.das.image",
            (geom.n_pixels * geom.frames * 8) as u64,
        )?;
        let range = ctx.storage("sonoguide.das.range", 16)?;
        Ok(self.bind_target(ctx, geom, channels, rows, range, image))
    }

    fn check_shape(geom: &DasGeometry, channels: &GpuChannels) -> Result<(), PipelineError> {
        if channels.encoding != crate::pipeline::Encoding::F32 {
            return Err(PipelineError::Settings(
                "das: these channel data are int16 RF; das reads f32 samples: demodulate them first (int16 streams are demodulated)".into(),
            ));
        }
        if channels.samples != geom.samples
            || channels.frames != geom.frames
            || channels.iq != geom.iq
            || channels.waves != geom.params.n_waves as usize
            || channels.channels != geom.params.n_elements as usize
        {
            return Err(PipelineError::Settings(format!(
                "das: channel data ({} frames × {} waves × {} channels × {} samples, {}) do not match the prepared geometry ({} × {} × {} × {}, {})",
                channels.frames,
                channels.waves,
                channels.channels,
                channels.samples,
                if channels.iq { "IQ" } else { "RF" },
                geom.frames,
                geom.params.n_waves,
                geom.params.n_elements,
                geom.samples,
                if geom.iq { "IQ" } else { "RF" },
            )));
        }
        Ok(())
    }

    fn bind_target(
        &self,
        ctx: &GpuContext,
        geom: &DasGeometry,
        channels: &GpuChannels,
        rows: wgpu::Buffer,
        range: wgpu::Buffer,
        image: wgpu::Buffer,
    ) -> DasTarget {
        let layout_bg = bind(
            &ctx.device,
            "sonoguide.das.layout",
            &self.layouts[Entry::Layout as usize].0,
            &[
                (0, &geom.uniform),
                (1, &channels.buffer),
                (2, &rows),
                (12, &range),
            ],
        );
        let range_bg = bind(
            &ctx.device,
            "sonoguide.das.range",
            &self.layouts[Entry::Range as usize].0,
            &[(0, &geom.uniform), (1, &channels.buffer), (12, &range)],
        );
        let das_bg = bind(
            &ctx.device,
            "sonoguide.das",
            &self.layouts[Entry::Das as usize].0,
            &[
                (0, &geom.uniform),
                (3, &geom.elements),
                (4, &geom.waves),
                (5, &geom.pixels),
                (8, &geom.tx),
                (9, &rows),
                (10, &image),
                (11, &geom.out_index),
                (12, &range),
            ],
        );
        DasTarget {
            image,
            rows,
            range,
            layout_bg,
            range_bg,
            das_bg,
        }
    }

    /// Rebind `old`'s buffers to new channel data of the same shape
    /// (streaming: no allocation, so no zero-fill, per batch).
    pub fn retarget(
        &self,
        ctx: &GpuContext,
        geom: &DasGeometry,
        channels: &GpuChannels,
        old: DasTarget,
    ) -> Result<DasTarget, PipelineError> {
        Self::check_shape(geom, channels)?;
        let DasTarget {
            image, rows, range, ..
        } = old;
        Ok(self.bind_target(ctx, geom, channels, rows, range, image))
    }

    /// Record the layout and beamforming passes of one batch.
    pub fn record(
        &self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        geom: &DasGeometry,
        target: &DasTarget,
    ) -> Result<(), PipelineError> {
        self.record_layout(ctx, enc, geom, target)?;
        self.record_beamform(ctx, enc, geom, target)
    }

    /// Record `das_layout`: the channel data into frame-contiguous rows.
    pub fn record_layout(
        &self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        geom: &DasGeometry,
        target: &DasTarget,
    ) -> Result<(), PipelineError> {
        if geom.tiling.f16_rows {
            // The scale of the f16 rows: the batch's peak, found afresh.
            let range = self.pipeline(&ctx.device, Entry::Range, &geom.params, geom.tiling)?;
            let p = &geom.params;
            let values =
                p.n_frames * p.n_waves * p.n_elements * p.n_samples * if geom.iq { 2 } else { 1 };
            enc.clear_buffer(&target.range, 0, None);
            let groups = dispatch_size(values.div_ceil(RANGE_CHUNK), WORKGROUP);
            dispatch(enc, Entry::Range, &range, &target.range_bg, groups);
        }
        let layout = self.pipeline(&ctx.device, Entry::Layout, &geom.params, geom.tiling)?;
        let traces = geom.params.n_waves * geom.params.n_elements * geom.params.n_samples;
        let groups = dispatch_size(traces, WORKGROUP);
        dispatch(enc, Entry::Layout, &layout, &target.layout_bg, groups);
        Ok(())
    }

    /// Record `das`: the beamforming proper (the kernel benchmarks time).
    pub fn record_beamform(
        &self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        geom: &DasGeometry,
        target: &DasTarget,
    ) -> Result<(), PipelineError> {
        let t = geom.tiling;
        let das = self.pipeline(&ctx.device, Entry::Das, &geom.params, t)?;
        let invocations = (geom.n_padded as u32).div_ceil(t.pixels_per_invocation);
        let blocks = geom.frames.div_ceil(t.frames_per_block()) as u32;
        // A workgroup holds WORKGROUP / element_split invocations.
        let per_group = WORKGROUP / t.element_split.max(1);
        let groups = (invocations.div_ceil(per_group), blocks);
        dispatch(enc, Entry::Das, &das, &target.das_bg, groups);
        Ok(())
    }

    /// Record the beamforming of `channels` onto `pixels`; returns the
    /// `[frame][pixel]` complex image buffer.
    pub fn encode(
        &self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        channels: &GpuChannels,
        plan: &DasPlan,
        pixels: &[[f32; 2]],
    ) -> Result<wgpu::Buffer, PipelineError> {
        let geom = self.prepare(
            ctx,
            enc,
            plan,
            pixels,
            channels.samples,
            channels.frames,
            channels.iq,
        )?;
        let target = self.target(ctx, &geom, channels)?;
        self.record(ctx, enc, &geom, &target)?;
        Ok(target.image)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_runs_pads_each_grid_row_to_whole_invocations() {
        // 3 rows of 15 pixels, 0.1 mm apart; rows 1 mm apart.
        let pixels: Vec<[f32; 2]> = (0..3)
            .flat_map(|r| (0..15).map(move |c| [c as f32 * 1e-4, r as f32 * 1e-3]))
            .collect();
        let (p, idx) = pad_runs(&pixels, 4);
        assert_eq!(p.len(), 3 * 16);
        assert_eq!(idx.iter().filter(|i| **i != u32::MAX).count(), 45);
        for (k, i) in idx.iter().enumerate() {
            if *i != u32::MAX {
                assert_eq!(p[k], pixels[*i as usize]);
            }
        }
        // Every invocation of 4 holds pixels of one row only.
        for inv in p.chunks(4) {
            assert!(inv.iter().all(|q| q[1] == inv[0][1]), "{inv:?}");
        }
    }

    #[test]
    fn pad_runs_leaves_lists_without_rows_alone() {
        let mut rng = crate::sim::Rng::new(1);
        let pixels: Vec<[f32; 2]> = (0..101)
            .map(|_| [rng.next_f64() as f32 * 0.02, rng.next_f64() as f32 * 0.03])
            .collect();
        let (p, idx) = pad_runs(&pixels, 8);
        assert_eq!(p.len(), 104, "only padded at the end");
        assert_eq!(&idx[..101], &(0..101).collect::<Vec<u32>>()[..]);
        let (p1, _) = pad_runs(&pixels, 1);
        assert_eq!(p1, pixels);
    }

    /// The slow second pass (pixels of one invocation too far apart for a
    /// shared window) gives the same image as the CPU twin: scattered pixels
    /// in random order force it for nearly every invocation.
    #[test]
    fn scattered_pixels_match_the_cpu_twin() {
        let ctx = match GpuContext::new(None) {
            Ok(c) => c,
            Err(e) if std::env::var("CI").is_err() => {
                eprintln!("SKIPPED: no GPU adapter ({e})");
                return;
            }
            Err(e) => panic!("CI must have a GPU adapter: {e}"),
        };
        let probe = crate::acquisition::Probe::linear(32, 0.3e-3, 0.27e-3, 5e-3);
        let c = 1540.0;
        let acq = Acquisition {
            probe,
            waves: vec![crate::acquisition::Wave {
                wavefront: Wavefront::Plane { azimuth: 0.1 },
                delay: -(15.5 * 0.3e-3 * 0.1f64.sin()) / c,
            }],
            sampling_frequency: 20e6,
            initial_time: 0.0,
            modulation_frequency: 0.0,
            center_frequency: 5e6,
            bandwidth: 0.6,
            sound_speed: c,
            prf: 0.0,
        };
        let scat = [crate::sim::Scatterer {
            position: glam::DVec3::new(0.001, 0.0, 0.012),
            amplitude: 1.0,
        }];
        let data = crate::sim::point_echoes(&acq, &scat, 600, 3);
        let mut rng = crate::sim::Rng::new(9);
        let pixels: Vec<[f32; 2]> = (0..500)
            .map(|_| {
                [
                    (rng.next_f64() * 0.01 - 0.005) as f32,
                    (0.006 + rng.next_f64() * 0.012) as f32,
                ]
            })
            .collect();
        let s = DasSettings {
            fnumber: FNumber::Fixed(1.0),
            transmit: Transmit::Analytic,
            ..Default::default()
        };
        let plan = DasPlan::new(&acq, &s, 0.0, pixels.len(), data.frames).unwrap();
        let das = Das::new(&ctx.device);
        das.set_tiling(Some(DasTiling {
            pixels_per_invocation: 8,
            row_vec4: 1,
            window_span: 2,
            f16_rows: false,
            element_split: 1,
        }))
        .unwrap();
        let up = GpuChannels::upload(&ctx, &data).unwrap();
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        let img = das.encode(&ctx, &mut enc, &up, &plan, &pixels).unwrap();
        ctx.queue.submit([enc.finish()]);
        let gpu: Vec<[f32; 2]> = ctx.read_buffer(&img, pixels.len() * data.frames).unwrap();
        let crate::acquisition::Samples::Rf(rf) = &data.data else {
            unreachable!()
        };
        let cpu =
            crate::reference::das::das(&plan, rf, false, data.samples, data.frames, &pixels, None);
        let peak = cpu.iter().map(|c| c[0].hypot(c[1])).fold(0.0, f64::max);
        assert!(peak > 0.0);
        let err = gpu
            .iter()
            .zip(&cpu)
            .map(|(g, c)| (g[0] as f64 - c[0]).hypot(g[1] as f64 - c[1]))
            .fold(0.0, f64::max)
            / peak;
        assert!(err < 2e-4, "scattered pixels: relative error {err:e}");
    }
}
