//! Host side of `shaders/das.wgsl`: uniforms, element and wave tables,
//! dispatch. CPU twin: `reference::das`.

use bytemuck::{Pod, Zeroable};

use super::{bind_group, compute_pipeline, layout, Binding, GpuChannels, PipelineError};
use crate::acquisition::{fnumber, transmit, Acquisition, Wavefront};
use crate::gpu::{shaders, GpuContext};

pub const STAGE: &str = "das";
/// Keep in sync with FRAMES_PER_THREAD in das.wgsl.
pub const FRAMES_PER_THREAD: usize = 8;
const WORKGROUP: u32 = 64;

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
        DasSettings { interp: Interp::Linear, apodization: Apodization::Boxcar, fnumber: FNumber::Auto, normalize: false, transmit: Transmit::Must }
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
    pub fn new(acq: &Acquisition, s: &DasSettings, f_mod: f64, n_pixels: usize, n_frames: usize) -> Result<DasPlan, PipelineError> {
        let fnumber = match s.fnumber {
            FNumber::Fixed(f) if f.is_finite() && f > 0.0 => f,
            FNumber::Fixed(f) => return Err(PipelineError::Settings(format!("--fnumber {f}: expected a positive number or `auto`"))),
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
            Apodization::Tukey(a) => return Err(PipelineError::Settings(format!("tukey:{a}: the taper fraction must be in [0, 1]"))),
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
            aperture: if fnumber > 0.0 { (1.0 / (2.0 * fnumber)) as f32 } else { 0.0 },
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
                    position: [e.position.x as f32, e.position.y as f32, e.position.z as f32, 0.0],
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
                    Wavefront::Plane { azimuth } => ([azimuth.sin() as f32, 0.0, azimuth.cos() as f32, 0.0], 0),
                    Wavefront::Diverging { source } => ([source.x as f32, source.y as f32, source.z as f32, source.length() as f32], 1),
                    Wavefront::Focused { focus } => ([focus.x as f32, focus.y as f32, focus.z as f32, focus.length() as f32], 2),
                };
                GpuWave { geometry, kind, delay: w.delay as f32, table_start, table_len }
            })
            .collect();
        Ok(DasPlan { params, elements, waves, tx_table, fnumber })
    }
}

pub struct Das {
    layout: wgpu::BindGroupLayout,
    pipeline: wgpu::ComputePipeline,
}

impl Das {
    pub fn new(device: &wgpu::Device) -> Das {
        let module = shaders::module(device, STAGE);
        use Binding::*;
        let (bgl, pl) = layout(device, STAGE, &[Uniform, Read, Read, Read, Read, ReadWrite, Read]);
        let pipeline = compute_pipeline(device, STAGE, &module, &pl, "das");
        Das { layout: bgl, pipeline }
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
        let mut params = plan.params;
        params.n_samples = channels.samples as u32;
        params.n_frames = channels.frames as u32;
        if channels.iq {
            params.flags |= FLAG_IQ;
        }
        let groups = (pixels.len() as u32).div_ceil(WORKGROUP);
        if groups > ctx.device.limits().max_compute_workgroups_per_dimension {
            return Err(PipelineError::Settings(format!("{} pixels is more than one dispatch can hold; split the grid", pixels.len())));
        }
        let uniform = ctx.uniform_from("sonoguide.das.params", &params);
        let elements = ctx.storage_from("sonoguide.das.elements", &plan.elements)?;
        let waves = ctx.storage_from("sonoguide.das.waves", &plan.waves)?;
        let pix = ctx.storage_from("sonoguide.das.pixels", pixels)?;
        let image = ctx.storage("sonoguide.das.image", (pixels.len() * channels.frames * 8) as u64)?;
        let table = ctx.storage_from("sonoguide.das.tx_table", if plan.tx_table.is_empty() { &[[0f32; 4]] } else { &plan.tx_table[..] })?;
        let bg = bind_group(&ctx.device, STAGE, &self.layout, &[&uniform, &elements, &waves, &pix, &channels.buffer, &image, &table]);
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("sonoguide.das"), timestamp_writes: None });
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &bg, &[]);
        pass.dispatch_workgroups(groups, channels.frames.div_ceil(FRAMES_PER_THREAD) as u32, 1);
        drop(pass);
        Ok(image)
    }
}
