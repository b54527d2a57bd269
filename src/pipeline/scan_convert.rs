//! Host side of `shaders/scan_convert.wgsl`. CPU twin: `reference::scan_convert`.

use bytemuck::{Pod, Zeroable};

use super::{bind_group, compute_pipeline, layout, Binding, PipelineError};
use crate::acquisition::PixelGrid;
use crate::gpu::{shaders, GpuContext};

pub const STAGE: &str = "scan_convert";

/// The Cartesian display image: `width × height` pixels starting at
/// (x0, z0) with steps (dx, dz), metres.
#[derive(Debug, Clone, PartialEq)]
pub struct DisplayGrid {
    pub width: usize,
    pub height: usize,
    pub x0: f64,
    pub z0: f64,
    pub dx: f64,
    pub dz: f64,
}

impl DisplayGrid {
    /// The bounding box of a polar grid, sampled at square pixels with
    /// `height` rows.
    pub fn covering(polar: &PixelGrid, height: usize) -> Option<DisplayGrid> {
        let PixelGrid::Polar { .. } = polar else {
            return None;
        };
        let pts = polar.positions();
        let (mut x0, mut x1, mut z0, mut z1) = (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        );
        for p in &pts {
            x0 = x0.min(p[0]);
            x1 = x1.max(p[0]);
            z0 = z0.min(p[1]);
            z1 = z1.max(p[1]);
        }
        let height = height.max(2);
        let d = (z1 - z0) / (height - 1) as f64;
        if d.is_nan() || d <= 0.0 {
            return None;
        }
        let width = (((x1 - x0) / d).round() as usize + 1).max(2);
        Some(DisplayGrid {
            width,
            height,
            x0,
            z0,
            dx: d,
            dz: d,
        })
    }
}

/// Keep in sync with `ScanConvertParams` in scan_convert.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct ScanConvertParams {
    pub n_radius: u32,
    pub n_angle: u32,
    pub width: u32,
    pub height: u32,
    pub origin: [f32; 2],
    pub radius0: f32,
    pub radius_step: f32,
    pub angle0: f32,
    pub angle_step: f32,
    pub x0: f32,
    pub dx: f32,
    pub z0: f32,
    pub dz: f32,
    pub frame: u32,
    /// 1 when the input is a Cartesian grid (rows z, columns x).
    pub cartesian: u32,
}

const _: () = assert!(std::mem::size_of::<ScanConvertParams>() == 64);

impl ScanConvertParams {
    /// Parameters converting `input` (a polar grid, or a Cartesian one for
    /// linear probes) onto `out`.
    pub fn new(
        input: &PixelGrid,
        out: &DisplayGrid,
        frame: usize,
    ) -> Result<ScanConvertParams, PipelineError> {
        // (rows, cols, origin, row axis, column axis, cartesian)
        let (nr, na, origin, rows, cols, cartesian) = match input {
            PixelGrid::Polar {
                origin,
                radius,
                angle,
                nr,
                na,
            } => (*nr, *na, *origin, *radius, *angle, 0),
            PixelGrid::Cartesian { x, z, nx, nz } => (*nz, *nx, [0.0, 0.0], *z, *x, 1),
            PixelGrid::List { .. } => {
                return Err(PipelineError::Settings(
                    "scan conversion needs a polar or Cartesian pixel grid, not a pixel list"
                        .into(),
                ))
            }
        };
        if nr < 2 || na < 2 || out.width == 0 || out.height == 0 {
            return Err(PipelineError::Settings(
                "scan conversion needs at least 2 × 2 input pixels and a non-empty display".into(),
            ));
        }
        Ok(ScanConvertParams {
            n_radius: nr as u32,
            n_angle: na as u32,
            width: out.width as u32,
            height: out.height as u32,
            origin: [origin[0] as f32, origin[1] as f32],
            radius0: rows.0 as f32,
            radius_step: ((rows.1 - rows.0) / (nr - 1) as f64) as f32,
            angle0: cols.0 as f32,
            angle_step: ((cols.1 - cols.0) / (na - 1) as f64) as f32,
            x0: out.x0 as f32,
            dx: out.dx as f32,
            z0: out.z0 as f32,
            dz: out.dz as f32,
            frame: frame as u32,
            cartesian,
        })
    }
}

pub struct ScanConvert {
    layout: wgpu::BindGroupLayout,
    pipeline: wgpu::ComputePipeline,
}

impl ScanConvert {
    pub fn new(device: &wgpu::Device) -> ScanConvert {
        let module = shaders::module(device, STAGE);
        use Binding::*;
        let (bgl, pl) = layout(device, STAGE, &[Uniform, Read, ReadWrite]);
        ScanConvert {
            pipeline: compute_pipeline(device, STAGE, &module, &pl, "scan_convert"),
            layout: bgl,
        }
    }

    /// Record the conversion of frame `frame` of the grey-level buffer
    /// `grey` (laid out on `polar`); returns the RGBA8 display buffer.
    pub fn encode(
        &self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        grey: &wgpu::Buffer,
        polar: &PixelGrid,
        out: &DisplayGrid,
        frame: usize,
    ) -> Result<wgpu::Buffer, PipelineError> {
        let target = self.bind(ctx, grey, polar, out, frame)?;
        self.record(enc, &target);
        Ok(target.display)
    }

    /// Allocate the display buffer and bind it to `grey`, for recording
    /// every frame ([`ScanConvert::record`]).
    pub fn bind(
        &self,
        ctx: &GpuContext,
        grey: &wgpu::Buffer,
        polar: &PixelGrid,
        out: &DisplayGrid,
        frame: usize,
    ) -> Result<ScanTarget, PipelineError> {
        let params = ScanConvertParams::new(polar, out, frame)?;
        let uniform = ctx.uniform_from("sonoguide.scan_convert.params", &params);
        let display = ctx.storage(
            "sonoguide.scan_convert.display",
            (out.width * out.height * 4) as u64,
        )?;
        let group = bind_group(
            &ctx.device,
            STAGE,
            &self.layout,
            &[&uniform, grey, &display],
        );
        Ok(ScanTarget {
            group,
            size: (out.width as u32, out.height as u32),
            display,
        })
    }

    /// Record the conversion bound in `target`.
    pub fn record(&self, enc: &mut wgpu::CommandEncoder, target: &ScanTarget) {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("sonoguide.scan_convert"),
            timestamp_writes: None,
        });
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &target.group, &[]);
        pass.dispatch_workgroups(target.size.0.div_ceil(8), target.size.1.div_ceil(8), 1);
    }
}

/// A scan conversion bound to its input and display buffer ([`ScanConvert::bind`]).
pub struct ScanTarget {
    group: wgpu::BindGroup,
    size: (u32, u32),
    /// The RGBA8 display it writes (row-major, `u32` per pixel).
    pub display: wgpu::Buffer,
}
