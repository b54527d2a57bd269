//! Host side of `shaders/detect.wgsl`. CPU twin: `reference::detect`.

use bytemuck::{Pod, Zeroable};

use super::{bind_group, compute_pipeline, layout, Binding, PipelineError};
use crate::gpu::{dispatch_size, shaders, GpuContext};

pub const STAGE: &str = "detect";
const WORKGROUP: u32 = 256;
/// Samples one `envelope` invocation folds (ENVELOPE_PER_INVOCATION in detect.wgsl).
pub const ENVELOPE_PER_INVOCATION: usize = 16;

#[derive(Debug, Clone, PartialEq)]
pub struct DetectSettings {
    pub gain_db: f64,
    pub dynamic_range_db: f64,
    /// 0 dB level; `None` normalises by the largest envelope of all frames
    /// (MUST's `bmode`).
    pub reference: Option<f64>,
}

impl Default for DetectSettings {
    fn default() -> Self {
        DetectSettings {
            gain_db: 0.0,
            dynamic_range_db: 40.0,
            reference: None,
        }
    }
}

impl DetectSettings {
    pub fn params(&self, n: usize) -> Result<DetectParams, PipelineError> {
        if !(self.dynamic_range_db.is_finite() && self.dynamic_range_db > 0.0) {
            return Err(PipelineError::Settings(format!(
                "--dynamic-range {}: expected a positive number of dB",
                self.dynamic_range_db
            )));
        }
        if !self.gain_db.is_finite() {
            return Err(PipelineError::Settings(format!(
                "--gain {}: expected a finite number of dB",
                self.gain_db
            )));
        }
        Ok(DetectParams {
            n: n as u32,
            fixed_reference: self.reference.is_some() as u32,
            gain: 10f64.powf(self.gain_db / 20.0) as f32,
            dynamic_range_db: self.dynamic_range_db as f32,
            reference: self.reference.unwrap_or(0.0) as f32,
            _pad0: 0,
            _pad1: 0,
            _pad2: 0,
        })
    }
}

/// Keep in sync with `DetectParams` in detect.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct DetectParams {
    pub n: u32,
    pub fixed_reference: u32,
    pub gain: f32,
    pub dynamic_range_db: f32,
    pub reference: f32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub _pad2: u32,
}

const _: () = assert!(std::mem::size_of::<DetectParams>() == 32);

pub struct Detected {
    pub envelope: wgpu::Buffer,
    pub grey: wgpu::Buffer,
    pub max_bits: wgpu::Buffer,
}

pub struct Detect {
    layout: wgpu::BindGroupLayout,
    envelope: wgpu::ComputePipeline,
    compress: wgpu::ComputePipeline,
}

impl Detect {
    pub fn new(device: &wgpu::Device) -> Detect {
        let module = shaders::module(device, STAGE);
        use Binding::*;
        let (bgl, pl) = layout(
            device,
            STAGE,
            &[Uniform, Read, ReadWrite, ReadWrite, ReadWrite],
        );
        Detect {
            envelope: compute_pipeline(device, STAGE, &module, &pl, "envelope"),
            compress: compute_pipeline(device, STAGE, &module, &pl, "compress"),
            layout: bgl,
        }
    }

    /// Record envelope (and its maximum) → compress over `n` complex samples.
    pub fn encode(
        &self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        iq: &wgpu::Buffer,
        n: usize,
        s: &DetectSettings,
    ) -> Result<Detected, PipelineError> {
        let target = self.bind(ctx, iq, n, s)?;
        self.record(enc, &target);
        Ok(target.out)
    }

    /// Allocate the outputs and bind them to `iq`, for recording every
    /// frame ([`Detect::record`]).
    pub fn bind(
        &self,
        ctx: &GpuContext,
        iq: &wgpu::Buffer,
        n: usize,
        s: &DetectSettings,
    ) -> Result<DetectTarget, PipelineError> {
        let params = s.params(n)?;
        let uniform = ctx.uniform_from("sonoguide.detect.params", &params);
        let envelope = ctx.storage("sonoguide.detect.envelope", (n * 4) as u64)?;
        let grey = ctx.storage("sonoguide.detect.grey", (n * 4) as u64)?;
        let max_bits = ctx.storage("sonoguide.detect.max", 4)?;
        let group = bind_group(
            &ctx.device,
            STAGE,
            &self.layout,
            &[&uniform, iq, &envelope, &max_bits, &grey],
        );
        Ok(DetectTarget {
            group,
            n,
            out: Detected {
                envelope,
                grey,
                max_bits,
            },
        })
    }

    /// Record the detection bound in `target` (its running maximum reset
    /// first, so each record normalises to its own frame).
    pub fn record(&self, enc: &mut wgpu::CommandEncoder, target: &DetectTarget) {
        enc.clear_buffer(&target.out.max_bits, 0, None);
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("sonoguide.detect"),
            timestamp_writes: None,
        });
        pass.set_bind_group(0, &target.group, &[]);
        let tiles = target.n.div_ceil(ENVELOPE_PER_INVOCATION) as u32;
        for (p, n) in [(&self.envelope, tiles), (&self.compress, target.n as u32)] {
            let (gx, gy) = dispatch_size(n, WORKGROUP);
            pass.set_pipeline(p);
            pass.dispatch_workgroups(gx, gy, 1);
        }
    }
}

/// A detection bound to its IQ input and outputs ([`Detect::bind`]).
pub struct DetectTarget {
    group: wgpu::BindGroup,
    n: usize,
    /// Where it writes.
    pub out: Detected,
}
