//! Host side of `shaders/demodulate.wgsl`. CPU twin: `reference::demodulate`.

use bytemuck::{Pod, Zeroable};

use super::{bind_group, compute_pipeline, layout, Binding, GpuChannels, PipelineError};
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
    pub _pad0: u32,
}

/// Keep in sync with `Section` in demodulate.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct GpuSection {
    pub b: [f32; 4],
    pub a: [f32; 4],
}

const _: () = assert!(std::mem::size_of::<DemodulateParams>() == 32);
const _: () = assert!(std::mem::size_of::<GpuSection>() == 32);

/// The resolved filter and mixing constants (MUST's `rf2iq`).
#[derive(Debug, Clone)]
pub struct DemodPlan {
    pub params: DemodParams,
    pub fc: f64,
    pub sections: Vec<GpuSection>,
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
        Ok(DemodPlan {
            params,
            fc,
            sections,
        })
    }

    pub fn uniform(&self, traces: usize, samples: usize) -> DemodulateParams {
        DemodulateParams {
            n_traces: traces as u32,
            n_samples: samples as u32,
            pad: self.params.padlen as u32,
            n_sections: self.sections.len() as u32,
            phase0: self.params.phase0,
            phase_step: self.params.phase_step,
            scale: 2.0,
            _pad0: 0,
        }
    }
}

pub struct Demodulate {
    layout: wgpu::BindGroupLayout,
    pipeline: wgpu::ComputePipeline,
}

impl Demodulate {
    pub fn new(device: &wgpu::Device) -> Demodulate {
        let module = shaders::module(device, STAGE);
        use Binding::*;
        let (bgl, pl) = layout(device, STAGE, &[Uniform, Read, Read, ReadWrite, ReadWrite]);
        Demodulate {
            pipeline: compute_pipeline(device, STAGE, &module, &pl, "demodulate"),
            layout: bgl,
        }
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
        let traces = rf.traces();
        let params = plan.uniform(traces, rf.samples);
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
            traces,
            iq: GpuChannels {
                buffer: iq,
                iq: true,
                ..rf.clone()
            },
        })
    }

    /// Record the demodulation bound in `target`.
    pub fn record(&self, enc: &mut wgpu::CommandEncoder, target: &DemodTarget) {
        let (gx, gy) = dispatch_size(target.traces as u32, WORKGROUP);
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("sonoguide.demodulate"),
            timestamp_writes: None,
        });
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &target.group, &[]);
        pass.dispatch_workgroups(gx, gy, 1);
    }
}

/// A demodulation bound to its RF input and IQ output ([`Demodulate::bind`]).
pub struct DemodTarget {
    /// The RF buffer it reads.
    pub rf: wgpu::Buffer,
    group: wgpu::BindGroup,
    traces: usize,
    /// Where it writes.
    pub iq: GpuChannels,
}
