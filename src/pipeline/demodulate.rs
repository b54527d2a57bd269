//! Host side of `shaders/demodulate.wgsl`. CPU twin: `reference::demodulate`.

use bytemuck::{Pod, Zeroable};

use super::{bind_group, compute_pipeline, layout, Binding, GpuChannels, PipelineError};
use crate::acquisition::Acquisition;
use crate::gpu::{dispatch_size, shaders, GpuContext};
use crate::reference::filter;

pub const STAGE: &str = "demodulate";
const WORKGROUP: u32 = 64;
/// Keep in sync with MAX_SECTIONS in demodulate.wgsl.
pub const MAX_SECTIONS: usize = 8;

/// RF → IQ settings. Unset fields come from the acquisition, as MUST's
/// `rf2iq(RF, param)` takes them from `param`.
#[derive(Debug, Clone, PartialEq)]
pub struct DemodSettings {
    /// Mixing frequency, Hz (default: the acquisition's centre frequency).
    pub fc: Option<f64>,
    /// Low-pass bandwidth in percent of fc (default: the acquisition's
    /// fractional bandwidth, as MUST's `param.bandwidth`).
    pub bandwidth_pct: Option<f64>,
    /// Butterworth order (MUST: 5).
    pub order: usize,
}

impl Default for DemodSettings {
    fn default() -> Self {
        DemodSettings { fc: None, bandwidth_pct: None, order: 5 }
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
    pub phase0: f32,
    pub phase_step: f32,
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

/// The resolved filter and mixing constants.
#[derive(Debug, Clone)]
pub struct DemodPlan {
    pub fc: f64,
    pub wn: f64,
    pub sections: Vec<GpuSection>,
    /// Odd-extension length, scipy's `3 · max(len(a), len(b))`.
    pub pad: usize,
    pub phase0: f64,
    pub phase_step: f64,
}

impl DemodPlan {
    pub fn new(acq: &Acquisition, s: &DemodSettings) -> Result<DemodPlan, PipelineError> {
        let fc = s.fc.unwrap_or(acq.center_frequency);
        let bw = s.bandwidth_pct.unwrap_or(acq.bandwidth * 100.0);
        let fs = acq.sampling_frequency;
        if !(fc.is_finite() && fc > 0.0) {
            return Err(PipelineError::Settings(format!("demodulation frequency {fc} Hz: expected a positive frequency")));
        }
        // MUST: Wn = bandwidth·fc/100/fs, normalised to Nyquist.
        let wn = bw * fc / 100.0 / fs;
        if !(wn > 0.0 && wn < 1.0) {
            return Err(PipelineError::Settings(format!(
                "demodulation low-pass Wn = bandwidth·fc/100/fs = {bw}·{fc}/100/{fs} = {wn:.4}: expected 0 < Wn < 1; set --bandwidth (percent)"
            )));
        }
        if s.order == 0 || s.order.div_ceil(2) > MAX_SECTIONS {
            return Err(PipelineError::Settings(format!("filter order {}: expected 1..={}", s.order, 2 * MAX_SECTIONS)));
        }
        let sos = filter::butter_lowpass_sos(s.order, wn);
        let zi = filter::sosfilt_zi(&sos);
        let sections = sos
            .iter()
            .zip(&zi)
            .map(|(c, z)| GpuSection {
                b: [c[0] as f32, c[1] as f32, c[2] as f32, 0.0],
                a: [c[4] as f32, c[5] as f32, z[0] as f32, z[1] as f32],
            })
            .collect();
        let phase0 = (fc * acq.initial_time).rem_euclid(1.0);
        Ok(DemodPlan { fc, wn, sections, pad: 3 * (s.order + 1), phase0, phase_step: fc / fs })
    }

    pub fn params(&self, traces: usize, samples: usize) -> DemodulateParams {
        DemodulateParams {
            n_traces: traces as u32,
            n_samples: samples as u32,
            pad: self.pad as u32,
            n_sections: self.sections.len() as u32,
            phase0: self.phase0 as f32,
            phase_step: self.phase_step as f32,
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
        Demodulate { pipeline: compute_pipeline(device, STAGE, &module, &pl, "demodulate"), layout: bgl }
    }

    /// Record RF → IQ for every trace; returns the IQ channel data.
    pub fn encode(&self, ctx: &GpuContext, enc: &mut wgpu::CommandEncoder, rf: &GpuChannels, plan: &DemodPlan) -> Result<GpuChannels, PipelineError> {
        if rf.iq {
            return Err(PipelineError::Settings("demodulate takes RF; these channel data are already IQ".into()));
        }
        if rf.samples <= plan.pad + 1 {
            return Err(PipelineError::Settings(format!(
                "{} samples per trace is too short for the demodulation filter (needs more than {})",
                rf.samples,
                plan.pad + 1
            )));
        }
        let traces = rf.traces();
        let params = plan.params(traces, rf.samples);
        let uniform = ctx.uniform_from("sonoguide.demodulate.params", &params);
        let sections = ctx.storage_from("sonoguide.demodulate.sections", &plan.sections)?;
        let scratch = ctx.storage("sonoguide.demodulate.scratch", (traces * (rf.samples + 2 * plan.pad) * 8) as u64)?;
        let iq = ctx.storage("sonoguide.demodulate.iq", (traces * rf.samples * 8) as u64)?;
        let bg = bind_group(&ctx.device, STAGE, &self.layout, &[&uniform, &sections, &rf.buffer, &scratch, &iq]);
        let (gx, gy) = dispatch_size(traces as u32, WORKGROUP);
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("sonoguide.demodulate"), timestamp_writes: None });
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &bg, &[]);
        pass.dispatch_workgroups(gx, gy, 1);
        drop(pass);
        Ok(GpuChannels { buffer: iq, iq: true, frames: rf.frames, waves: rf.waves, channels: rf.channels, samples: rf.samples })
    }
}
