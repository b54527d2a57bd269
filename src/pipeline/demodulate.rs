//! Host side of `shaders/demodulate.wgsl`. CPU twin: `reference::demodulate`.

use std::sync::Mutex;

use bytemuck::{Pod, Zeroable};

use super::{
    bind_group, layout, specialised_pipeline, Binding, Encoding, GpuChannels, PipelineError,
    Specialisations,
};
use crate::acquisition::Acquisition;
use crate::gpu::{dispatch_size, shaders, GpuContext};
use crate::reference::filter::{DemodParams, FiltfiltConvention};

pub use crate::reference::demodulate::MAX_SECTIONS;

pub const STAGE: &str = "demodulate";
const WORKGROUP: u32 = 64;

/// RF → IQ settings. Unset fields come from the acquisition, as MUST's
/// `rf2iq(RF, param)` takes them from `param`.
#[derive(Debug, Clone, PartialEq)]
pub struct DemodSettings {
    /// Mixing frequency, Hz (default: the acquisition's centre frequency).
    pub fc: Option<f64>,
    /// Low-pass bandwidth in percent of fc (default: the acquisition's
    /// fractional bandwidth, as MUST's `param.bandwidth`).
    pub bandwidth_pct: Option<f64>,
    /// Padding of the forward-backward filter: scipy's (PyMUST) or
    /// MATLAB's (MATLAB MUST). They differ only near the trace ends.
    pub convention: FiltfiltConvention,
}

impl Default for DemodSettings {
    fn default() -> Self {
        DemodSettings {
            fc: None,
            bandwidth_pct: None,
            convention: FiltfiltConvention::Scipy,
        }
    }
}

/// Keep in sync with `DemodulateParams` in demodulate.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct DemodulateParams {
    pub n_traces: u32,
    pub n_samples: u32,
    pub pad: u32,
    pub n_sections: u32,
    pub phase0: u32,
    pub phase_step: u32,
    pub scale: f32,
    pub chunk: u32,
    pub n_chunks: u32,
    pub warmup: u32,
    /// 1: the RF is int16 pairs ([`Encoding::I16`]), each × `rf_scale`.
    pub rf_i16: u32,
    pub rf_scale: f32,
}

/// Keep in sync with `Section` in demodulate.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct GpuSection {
    pub b: [f32; 4],
    pub a: [f32; 4],
}

const _: () = assert!(std::mem::size_of::<DemodulateParams>() == 48);
const _: () = assert!(std::mem::size_of::<GpuSection>() == 32);

/// The resolved filter and mixing constants (MUST's `rf2iq`).
#[derive(Debug, Clone)]
pub struct DemodPlan {
    pub params: DemodParams,
    pub fc: f64,
    pub sections: Vec<GpuSection>,
    /// Samples after which the filter has forgotten its start to 1e-9
    /// (from its slowest pole): how early a chunk of a trace starts.
    pub warmup: usize,
}

/// Relative size a start's error decays to over a chunk's warm-up.
const WARMUP_DECAY: f64 = 1e-9;

/// Samples for the slowest pole of `sos` (rows b0 b1 b2 a0 a1 a2, a0 = 1)
/// to decay to [`WARMUP_DECAY`], plus a margin for the polynomial factor of
/// repeated poles; `None` if a pole is on or outside the unit circle.
fn warmup_of(sos: &[[f64; 6]]) -> Option<usize> {
    let mut r: f64 = 0.0;
    for c in sos {
        let (a1, a2) = (c[4], c[5]);
        let disc = a1 * a1 - 4.0 * a2;
        // Roots of z² + a1·z + a2: a conjugate pair of radius √a2, or two real ones.
        let radius = if disc < 0.0 {
            a2.sqrt()
        } else {
            ((-a1 + disc.sqrt()) / 2.0)
                .abs()
                .max(((-a1 - disc.sqrt()) / 2.0).abs())
        };
        r = r.max(radius);
    }
    if r.is_nan() || r >= 1.0 {
        return None;
    }
    if r <= 0.0 {
        return Some(8);
    }
    Some((WARMUP_DECAY.ln() / r.ln()).ceil() as usize + 8 * sos.len())
}

impl DemodPlan {
    pub fn new(acq: &Acquisition, s: &DemodSettings) -> Result<DemodPlan, PipelineError> {
        let fc = s.fc.unwrap_or(acq.center_frequency);
        let bw = s.bandwidth_pct.unwrap_or(acq.bandwidth * 100.0);
        let params = DemodParams::must(acq.sampling_frequency, fc, acq.initial_time, Some(bw), s.convention).map_err(|e| {
            PipelineError::Settings(format!(
                "demodulation (fc {fc} Hz, bandwidth {bw} %, fs {} Hz): {e}; set --bandwidth (percent of fc)",
                acq.sampling_frequency
            ))
        })?;
        let sections = params
            .sos
            .iter()
            .zip(&params.zi)
            .map(|(c, z)| GpuSection {
                b: [c[0] as f32, c[1] as f32, c[2] as f32, 0.0],
                a: [c[4] as f32, c[5] as f32, z[0] as f32, z[1] as f32],
            })
            .collect();
        let warmup = warmup_of(&params.sos).unwrap_or(usize::MAX);
        Ok(DemodPlan {
            params,
            fc,
            sections,
            warmup,
        })
    }

    /// Extended samples per trace (the odd padding at both ends included).
    pub fn extended_len(&self, samples: usize) -> usize {
        samples + 2 * self.params.padlen
    }

    /// The uniforms for `traces` traces of `samples`, cut into chunks of
    /// `chunk` extended samples (at least the whole trace: one chunk).
    pub fn uniform(&self, traces: usize, samples: usize, chunk: usize) -> DemodulateParams {
        let len = self.extended_len(samples);
        let chunk = chunk.clamp(1, len);
        DemodulateParams {
            n_traces: traces as u32,
            n_samples: samples as u32,
            pad: self.params.padlen as u32,
            n_sections: self.sections.len() as u32,
            phase0: self.params.phase0,
            phase_step: self.params.phase_step,
            scale: 2.0,
            chunk: chunk as u32,
            n_chunks: len.div_ceil(chunk) as u32,
            warmup: self.warmup.min(len) as u32,
            rf_i16: 0,
            rf_scale: 1.0,
        }
    }
}

/// Invocations a GPU should get at least before traces are cut into chunks.
const GPU_INVOCATIONS: usize = 32_768;

pub struct Demodulate {
    layout: wgpu::BindGroupLayout,
    pipeline_layout: wgpu::PipelineLayout,
    module: wgpu::ShaderModule,
    /// Forward and backward pipelines by section count (`N_SECTIONS`).
    pipelines: Specialisations<usize, Pipelines>,
    device_type: wgpu::DeviceType,
    /// Forced chunk length (tests, benchmarks); `None`: [`Demodulate::chunk_for`].
    chunk: Mutex<Option<usize>>,
}

/// The two passes of one specialisation.
#[derive(Clone)]
struct Pipelines {
    forward: wgpu::ComputePipeline,
    backward: wgpu::ComputePipeline,
}

impl Demodulate {
    pub fn new(device: &wgpu::Device) -> Demodulate {
        let module = shaders::module(device, STAGE);
        use Binding::*;
        let (bgl, pl) = layout(device, STAGE, &[Uniform, Read, Read, ReadWrite, ReadWrite]);
        Demodulate {
            layout: bgl,
            pipeline_layout: pl,
            module,
            pipelines: Specialisations::new(STAGE),
            device_type: device.adapter_info().device_type,
            chunk: Mutex::new(None),
        }
    }

    /// The passes for a filter of `sections` sections, made on first use
    /// (MUST's filters are 3 sections: one pair in practice).
    fn pipelines(
        &self,
        device: &wgpu::Device,
        sections: usize,
    ) -> Result<Pipelines, PipelineError> {
        self.pipelines.get(sections, || {
            let constants = [("N_SECTIONS", sections as f64)];
            let make = |entry: &str| {
                specialised_pipeline(
                    device,
                    STAGE,
                    &self.module,
                    &self.pipeline_layout,
                    entry,
                    &constants,
                    true,
                )
            };
            Pipelines {
                forward: make("demodulate_forward"),
                backward: make("demodulate_backward"),
            }
        })
    }

    /// Force the chunk length in extended samples (`None`: the adapter's).
    pub fn set_chunk(&self, chunk: Option<usize>) {
        if let Ok(mut c) = self.chunk.lock() {
            *c = chunk;
        }
    }

    /// The chunk length for `traces` traces: whole traces on a CPU adapter
    /// (its SIMD lanes are full with a few hundred traces, and chunks only
    /// add warm-up work), and on a GPU whose traces alone give enough
    /// invocations; otherwise chunks for about [`GPU_INVOCATIONS`], each at
    /// least the warm-up long, so that warming up at most doubles the work
    /// while the longest loop shrinks (MUST's 5th-order Butterworth at its
    /// usual cut-offs, slowest pole ~0.75, warms up in 94 samples: a
    /// display's 384 traces are cut into chunks of 94, PWI_disk's 4 096
    /// traces of 400 into 5). Not yet measured on a GPU: `sonoguide bench
    /// --tune` times whole traces and other lengths against it. On
    /// lavapipe chunks of 128 made PWI_disk's demodulation 2.4× slower.
    pub fn chunk_for(&self, plan: &DemodPlan, traces: usize, samples: usize) -> usize {
        let len = plan.extended_len(samples);
        if let Some(c) = self.chunk.lock().ok().and_then(|c| *c) {
            return c.clamp(1, len);
        }
        if self.device_type == wgpu::DeviceType::Cpu || traces >= GPU_INVOCATIONS {
            return len;
        }
        let chunks = GPU_INVOCATIONS.div_ceil(traces.max(1));
        len.div_ceil(chunks).max(plan.warmup).max(32).min(len)
    }

    /// Record RF → IQ for every trace; returns the IQ channel data.
    pub fn encode(
        &self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        rf: &GpuChannels,
        plan: &DemodPlan,
    ) -> Result<GpuChannels, PipelineError> {
        let target = self.bind(ctx, rf, plan)?;
        self.record(enc, &target);
        Ok(target.iq)
    }

    /// Allocate the IQ output and bind it to `rf`: a loop that demodulates
    /// the same RF buffer frame after frame binds once and records
    /// [`Demodulate::record`] every frame.
    pub fn bind(
        &self,
        ctx: &GpuContext,
        rf: &GpuChannels,
        plan: &DemodPlan,
    ) -> Result<DemodTarget, PipelineError> {
        if rf.iq {
            return Err(PipelineError::Settings(
                "demodulate takes RF; these channel data are already IQ".into(),
            ));
        }
        if rf.samples <= plan.params.padlen + 1 {
            return Err(PipelineError::Settings(format!(
                "{} samples per trace is too short for the demodulation filter (needs more than {})",
                rf.samples,
                plan.params.padlen + 1
            )));
        }
        let n_sections = plan.sections.len();
        if n_sections == 0 || n_sections > MAX_SECTIONS {
            return Err(PipelineError::Settings(format!(
                "demodulation filter of {n_sections} second-order sections; the shader runs 1 to {MAX_SECTIONS} (filter order up to {})",
                2 * MAX_SECTIONS
            )));
        }
        let pipelines = self.pipelines(&ctx.device, n_sections)?;
        let traces = rf.traces();
        let mut params = plan.uniform(traces, rf.samples, self.chunk_for(plan, traces, rf.samples));
        if let Encoding::I16 { scale } = rf.encoding {
            if !(scale.is_finite() && scale > 0.0) {
                return Err(PipelineError::Settings(format!(
                    "demodulate: int16 RF with a scale of {scale}; expected a positive finite scale"
                )));
            }
            params.rf_i16 = 1;
            params.rf_scale = scale;
        }
        let uniform = ctx.uniform_from("sonoguide.demodulate.params", &params);
        let sections = ctx.storage_from("sonoguide.demodulate.sections", &plan.sections)?;
        let scratch = ctx.storage(
            "sonoguide.demodulate.scratch",
            (traces * (rf.samples + 2 * plan.params.padlen) * 8) as u64,
        )?;
        let iq = ctx.storage("sonoguide.demodulate.iq", (traces * rf.samples * 8) as u64)?;
        let group = bind_group(
            &ctx.device,
            STAGE,
            &self.layout,
            &[&uniform, &sections, &rf.buffer, &scratch, &iq],
        );
        Ok(DemodTarget {
            rf: rf.buffer.clone(),
            group,
            pipelines,
            invocations: traces * params.n_chunks as usize,
            iq: GpuChannels {
                buffer: iq,
                iq: true,
                encoding: Encoding::F32,
                ..rf.clone()
            },
        })
    }

    /// Record the demodulation bound in `target`.
    pub fn record(&self, enc: &mut wgpu::CommandEncoder, target: &DemodTarget) {
        let (gx, gy) = dispatch_size(target.invocations as u32, WORKGROUP);
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("sonoguide.demodulate"),
            timestamp_writes: None,
        });
        pass.set_bind_group(0, &target.group, &[]);
        // Two dispatches: the backward chunks read the forward output of
        // their neighbours (a compute pass orders dispatches' storage use).
        pass.set_pipeline(&target.pipelines.forward);
        pass.dispatch_workgroups(gx, gy, 1);
        pass.set_pipeline(&target.pipelines.backward);
        pass.dispatch_workgroups(gx, gy, 1);
    }
}

/// A demodulation bound to its RF input and IQ output ([`Demodulate::bind`]).
pub struct DemodTarget {
    /// The RF buffer it reads.
    pub rf: wgpu::Buffer,
    group: wgpu::BindGroup,
    /// Specialised for the plan's section count.
    pipelines: Pipelines,
    /// Traces × chunks.
    invocations: usize,
    /// Where it writes.
    pub iq: GpuChannels,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_follows_the_slowest_pole() {
        // One section with poles 0.5 and 0.9 (z² − 1.4 z + 0.45): 0.9^n
        // reaches 1e-9 at n = 197, plus the margin of 8 per section.
        let sos = [[1.0, 0.0, 0.0, 1.0, -1.4, 0.45]];
        assert_eq!(warmup_of(&sos), Some(197 + 8));
        // A conjugate pair of radius 0.8 (a2 = 0.64): 93 samples.
        let pair = [[1.0, 0.0, 0.0, 1.0, -0.8, 0.64]];
        assert_eq!(warmup_of(&pair), Some(93 + 8));
        // The slowest section decides.
        assert_eq!(warmup_of(&[pair[0], sos[0]]), Some(197 + 16));
        // A pole on the unit circle never forgets: no chunks.
        assert_eq!(warmup_of(&[[1.0, 0.0, 0.0, 1.0, -1.0, 0.0]]), None);
    }
}
