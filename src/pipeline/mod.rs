//! One module per GPU stage (host mirror of its uniforms, pipeline,
//! dispatch), and [`Beamformer`], which records a whole frame's stages into
//! one command buffer: channel data go up once, each stage reads the
//! previous stage's buffer, and only what the caller asks for comes back.

pub mod das;
pub mod demodulate;
pub mod detect;
pub mod scan_convert;
pub mod simulate;

use thiserror::Error;

use crate::acquisition::{Acquisition, AcquisitionError, ChannelData, PixelGrid, Samples};
use crate::gpu::{GpuContext, GpuError};

pub use das::{Apodization, DasSettings, FNumber, Interp, Transmit};
pub use demodulate::DemodSettings;
pub use detect::DetectSettings;
pub use scan_convert::DisplayGrid;

#[derive(Debug, Error)]
pub enum PipelineError {
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error(transparent)]
    Acquisition(#[from] AcquisitionError),
    #[error("{0}")]
    Settings(String),
}

/// How a binding is used, for building explicit layouts.
#[derive(Clone, Copy)]
pub(crate) enum Binding {
    Uniform,
    /// A uniform bound at a dynamic offset: one buffer of parameter blocks,
    /// written once, for a pass's many dispatches.
    UniformDynamic,
    Read,
    ReadWrite,
}

/// A bind group layout and pipeline layout for `bindings` (binding i = slot i).
pub(crate) fn layout(
    device: &wgpu::Device,
    stage: &str,
    bindings: &[Binding],
) -> (wgpu::BindGroupLayout, wgpu::PipelineLayout) {
    let entries: Vec<wgpu::BindGroupLayoutEntry> = bindings
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupLayoutEntry {
            binding: i as u32,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: match b {
                    Binding::Uniform | Binding::UniformDynamic => wgpu::BufferBindingType::Uniform,
                    Binding::Read => wgpu::BufferBindingType::Storage { read_only: true },
                    Binding::ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                },
                has_dynamic_offset: matches!(b, Binding::UniformDynamic),
                min_binding_size: None,
            },
            count: None,
        })
        .collect();
    let label = format!("sonoguide.{stage}");
    let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(&label),
        entries: &entries,
    });
    let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(&label),
        bind_group_layouts: &[Some(&bgl)],
        immediate_size: 0,
    });
    (bgl, pl)
}

pub(crate) fn compute_pipeline(
    device: &wgpu::Device,
    stage: &str,
    module: &wgpu::ShaderModule,
    layout: &wgpu::PipelineLayout,
    entry: &str,
) -> wgpu::ComputePipeline {
    specialised_pipeline(device, stage, module, layout, entry, &[], true)
}

/// Pipelines (or sets of them) specialised by a key, made on first use and
/// kept: a stage's specialisations are few (DAS's variants and tilings,
/// demodulation's section counts, the simulator's segment counts), and
/// lavapipe compiles each at creation.
pub(crate) struct Specialisations<K, V> {
    stage: &'static str,
    made: std::sync::Mutex<Vec<(K, V)>>,
}

impl<K: PartialEq, V: Clone> Specialisations<K, V> {
    pub(crate) fn new(stage: &'static str) -> Self {
        Specialisations {
            stage,
            made: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The value for `key`, made by `make` the first time it is asked for.
    pub(crate) fn get(&self, key: K, make: impl FnOnce() -> V) -> Result<V, PipelineError> {
        let mut made = self.made.lock().map_err(|_| {
            PipelineError::Settings(format!("{} pipeline cache poisoned", self.stage))
        })?;
        if let Some((_, v)) = made.iter().find(|(k, _)| *k == key) {
            return Ok(v.clone());
        }
        let v = make();
        made.push((key, v.clone()));
        Ok(v)
    }
}

/// A pipeline with its pipeline-overridable constants set (`constants`)
/// and, where the entry point writes all its workgroup memory before
/// reading it, without WebGPU's zeroing of it.
pub(crate) fn specialised_pipeline(
    device: &wgpu::Device,
    stage: &str,
    module: &wgpu::ShaderModule,
    layout: &wgpu::PipelineLayout,
    entry: &str,
    constants: &[(&str, f64)],
    zero_initialize_workgroup_memory: bool,
) -> wgpu::ComputePipeline {
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(&format!("sonoguide.{stage}.{entry}")),
        layout: Some(layout),
        module,
        entry_point: Some(entry),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants,
            zero_initialize_workgroup_memory,
        },
        cache: None,
    })
}

pub(crate) fn bind_group(
    device: &wgpu::Device,
    stage: &str,
    layout: &wgpu::BindGroupLayout,
    buffers: &[&wgpu::Buffer],
) -> wgpu::BindGroup {
    let entries: Vec<wgpu::BindGroupEntry> = buffers
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupEntry {
            binding: i as u32,
            resource: b.as_entire_binding(),
        })
        .collect();
    device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(&format!("sonoguide.{stage}")),
        layout,
        entries: &entries,
    })
}

/// How channel samples are stored in a GPU buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Encoding {
    #[default]
    F32,
    /// RF as scanners stream it: two's-complement int16, two samples per
    /// 32-bit word (the earlier in the low half), each worth `scale` ×
    /// its integer. Half the bytes of f32 to upload; demodulate reads it.
    I16 { scale: f32 },
}

/// RF quantised to int16 for [`Encoding::I16`]; returns the integers and
/// the scale that restores the values. RF that is int16 already (a
/// scanner's, as PWI_disk.mat stores it) keeps its integers: scale 1,
/// lossless. Otherwise the peak |x| maps to 32 767 (quantisation noise
/// ~100 dB below it, far under any display's range).
pub fn quantize_i16(rf: &[f32]) -> (Vec<i16>, f32) {
    if rf.iter().all(|v| v.fract() == 0.0 && v.abs() <= 32767.0) {
        return (rf.iter().map(|&v| v as i16).collect(), 1.0);
    }
    let peak = rf
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f32, |m, v| m.max(v.abs()));
    let scale = if peak > 0.0 { peak / 32767.0 } else { 1.0 };
    let ints = rf
        .iter()
        .map(|v| (v / scale).round().clamp(-32767.0, 32767.0) as i16)
        .collect();
    (ints, scale)
}

/// Channel data resident on the GPU.
#[derive(Clone)]
pub struct GpuChannels {
    pub buffer: wgpu::Buffer,
    pub iq: bool,
    /// How the samples are stored (RF may be int16).
    pub encoding: Encoding,
    pub frames: usize,
    pub waves: usize,
    pub channels: usize,
    pub samples: usize,
}

impl GpuChannels {
    pub fn upload(ctx: &GpuContext, data: &ChannelData) -> Result<GpuChannels, GpuError> {
        let buffer = match &data.data {
            Samples::Rf(v) => ctx.storage_from("sonoguide.channels", v)?,
            Samples::Iq(v) => ctx.storage_from("sonoguide.channels", v)?,
        };
        Ok(GpuChannels {
            buffer,
            iq: data.is_iq(),
            encoding: Encoding::F32,
            frames: data.frames,
            waves: data.waves,
            channels: data.channels,
            samples: data.samples,
        })
    }

    pub fn traces(&self) -> usize {
        self.frames * self.waves * self.channels
    }
}

/// What to compute and what to bring back.
#[derive(Debug, Clone)]
pub struct BeamformRequest {
    pub das: DasSettings,
    /// Demodulation for RF input; ignored for IQ input. `None` beamforms
    /// the RF itself (the "IQ" then holds the real RF sum).
    pub demodulate: Option<DemodSettings>,
    pub detect: DetectSettings,
    pub read_iq: bool,
    pub read_envelope: bool,
    pub read_grey: bool,
    /// Scan convert the first frame: the polar layout of the pixels (a
    /// `PixelGrid::Polar`) and the Cartesian display to fill.
    pub display: Option<(PixelGrid, DisplayGrid)>,
}

impl Default for BeamformRequest {
    fn default() -> Self {
        BeamformRequest {
            das: DasSettings::default(),
            demodulate: Some(DemodSettings::default()),
            detect: DetectSettings::default(),
            read_iq: true,
            read_envelope: true,
            read_grey: true,
            display: None,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct BeamformOutput {
    pub frames: usize,
    pub rows: usize,
    pub cols: usize,
    /// `[frame][row][col]` complex, the coherent sum over waves.
    pub iq: Option<Vec<[f32; 2]>>,
    pub envelope: Option<Vec<f32>>,
    /// Grey levels 0..255, `[frame][row][col]`.
    pub grey: Option<Vec<f32>>,
    /// Scan-converted RGBA8 of the display frame, `[row][col]`.
    pub display: Option<Vec<u32>>,
    pub display_size: (usize, usize),
    /// The F-number actually used (after `auto`).
    pub fnumber: f64,
}

/// The GPU buffers one recorded beamforming leaves behind.
pub struct Encoded {
    /// `[frame][pixel]` complex, compounded over waves.
    pub image: wgpu::Buffer,
    pub detected: detect::Detected,
    /// Scan-converted RGBA8 display (`u32` per pixel, alpha 0 outside the
    /// sector), with its width and height.
    pub display: Option<(wgpu::Buffer, usize, usize)>,
    /// Pixels × frames.
    pub n: usize,
    pub frames: usize,
    pub fnumber: f64,
}

/// The long-lived pipelines of the beamforming chain.
pub struct Beamformer {
    pub demodulate: demodulate::Demodulate,
    pub das: das::Das,
    pub detect: detect::Detect,
    pub scan_convert: scan_convert::ScanConvert,
}

impl Beamformer {
    pub fn new(ctx: &GpuContext) -> Beamformer {
        Beamformer {
            demodulate: demodulate::Demodulate::new(&ctx.device),
            das: das::Das::new(&ctx.device),
            detect: detect::Detect::new(&ctx.device),
            scan_convert: scan_convert::ScanConvert::new(&ctx.device),
        }
    }

    /// Record (demodulate) → das → detect → (scan convert) of channel data
    /// already on the GPU into `enc`, reading nothing back: the display
    /// loop and `run` share this.
    pub fn encode(
        &self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        raw: GpuChannels,
        acq: &Acquisition,
        grid: &PixelGrid,
        req: &BeamformRequest,
    ) -> Result<Encoded, PipelineError> {
        grid.validate("pixels")?;
        let (channels, f_mod) = match (&req.demodulate, raw.iq) {
            (Some(settings), false) => {
                let plan = demodulate::DemodPlan::new(acq, settings)?;
                let iq = self.demodulate.encode(ctx, enc, &raw, &plan)?;
                (iq, plan.fc)
            }
            _ => {
                let f = if raw.iq {
                    acq.modulation_frequency
                } else {
                    0.0
                };
                (raw, f)
            }
        };
        let pixels = grid.positions_f32();
        let plan = das::DasPlan::new(acq, &req.das, f_mod, pixels.len(), channels.frames)?;
        let image = self.das.encode(ctx, enc, &channels, &plan, &pixels)?;
        let n = pixels.len() * channels.frames;
        let detected = self.detect.encode(ctx, enc, &image, n, &req.detect)?;
        let mut display = None;
        if let Some((polar, dg)) = &req.display {
            if polar.len() != grid.len() {
                return Err(PipelineError::Settings(format!(
                    "scan conversion: polar layout has {} pixels, the image {}",
                    polar.len(),
                    grid.len()
                )));
            }
            display = Some((
                self.scan_convert
                    .encode(ctx, enc, &detected.grey, polar, dg, 0)?,
                dg.width,
                dg.height,
            ));
        }
        Ok(Encoded {
            image,
            detected,
            display,
            n,
            frames: channels.frames,
            fnumber: plan.fnumber,
        })
    }

    /// Channel data → (demodulate) → das → detect → (scan convert), in one
    /// submission; reads back what `req` asks for.
    pub fn run(
        &self,
        ctx: &GpuContext,
        data: &ChannelData,
        grid: &PixelGrid,
        req: &BeamformRequest,
    ) -> Result<BeamformOutput, PipelineError> {
        data.validate()?;
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("sonoguide.frame"),
            });
        let raw = GpuChannels::upload(ctx, data)?;
        let Encoded {
            image,
            detected,
            display,
            n,
            frames,
            fnumber,
        } = self.encode(ctx, &mut enc, raw, &data.acquisition, grid, req)?;
        ctx.queue.submit([enc.finish()]);
        ctx.take_error("beamform")?;
        let mut out = BeamformOutput {
            frames,
            rows: grid.rows(),
            cols: grid.cols(),
            fnumber,
            ..Default::default()
        };
        if req.read_iq {
            out.iq = Some(ctx.read_buffer(&image, n)?);
        }
        if req.read_envelope {
            out.envelope = Some(ctx.read_buffer(&detected.envelope, n)?);
        }
        if req.read_grey {
            out.grey = Some(ctx.read_buffer(&detected.grey, n)?);
        }
        if let Some((buf, w, h)) = display {
            out.display = Some(ctx.read_buffer(&buf, w * h)?);
            out.display_size = (w, h);
        }
        ctx.take_error("readback")?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::quantize_i16;

    /// A scanner's int16 RF streams as it is; other RF takes the full range.
    #[test]
    fn quantize_keeps_integers_and_scales_the_rest() {
        let ints = [0.0, -2667.0, 12.0, 32767.0, -32767.0];
        assert_eq!(
            quantize_i16(&ints),
            (vec![0, -2667, 12, 32767, -32767], 1.0)
        );
        let rf = [1e-8f32, -3e-8, 0.5e-8];
        let (q, scale) = quantize_i16(&rf);
        assert_eq!(q[1], -32767);
        for (v, i) in rf.iter().zip(&q) {
            assert!((v - *i as f32 * scale).abs() <= 0.5 * scale);
        }
        // Integers out of range are scaled, not wrapped.
        let (q, scale) = quantize_i16(&[40000.0, -1.0]);
        assert_eq!(q[0], 32767);
        assert!(scale > 1.0);
    }
}
