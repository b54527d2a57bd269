//! `bench --roofline`: the adapter's own limits, measured in the same run
//! as the DAS kernel, and where the kernel stands against them.
//!
//! Three kernels (`shaders/roofline.wgsl`): vec4 loads from a working set
//! small enough to stay in the caches (das's rows are mostly cache hits:
//! neighbouring pixels read overlapping rows), vec4 loads of a buffer read
//! once (memory), and f32 fused multiply-adds. The DAS kernel's needs per
//! point follow from its tiling ([`das_needs`]); dividing the measured
//! rates by them gives the throughput the kernel could reach if nothing
//! else cost anything, and which of the two resources binds first. Each
//! kernel's result is checked against the host's own sum, so a rate cannot
//! come from work the compiler dropped.

use bytemuck::{Pod, Zeroable};
use serde::Serialize;

use super::measure::{median, time_pass};
use super::BenchError;
use crate::gpu::timing::{Fallback, GpuTimer, TimeSource};
use crate::gpu::GpuContext;
use crate::pipeline::das::DasTiling;
use crate::pipeline::{bind_group, layout, specialised_pipeline, Binding, Interp};

const STAGE: &str = "roofline";
const WORKGROUP: u32 = 64;

/// Host mirror of `RooflineParams` (roofline.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct RooflineParams {
    pub iterations: u32,
    pub mask: u32,
    pub stride: u32,
    pub one: f32,
}

/// How much each measurement does.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// Invocations per dispatch (a multiple of 64, at most 65 535 workgroups).
    pub invocations: u32,
    /// vec4 per window: what one invocation of das loads per element.
    pub window_vec4: u32,
    /// The cached loads' working set, in windows (a power of two).
    pub cached_windows: u32,
    pub cached_iterations: u32,
    /// The streamed buffer, in windows (a power of two), each read once.
    pub stream_windows: u32,
    /// At most 2^16 (the chains and their sum stay exact in f32).
    pub fma_iterations: u32,
}

impl Sizes {
    /// A GPU gets about a million invocations (several per SM slot), a
    /// working set of at most 64 KiB (an L1 on any GPU, and all the more an
    /// L2) and a streamed buffer of up to 128 MiB (larger than the L2 of
    /// an H100); a CPU adapter a hundredth of the work; `quick`, enough to
    /// check. Windows of `window_vec4` vec4 ([`das_window_vec4`]).
    pub fn for_adapter(ctx: &GpuContext, window_vec4: u32, quick: bool) -> Sizes {
        let cpu = ctx.info.device_type == wgpu::DeviceType::Cpu;
        Sizes::new(cpu, ctx.max_binding(), window_vec4, quick)
    }

    /// [`Sizes::for_adapter`] for a CPU adapter or not, whose storage
    /// bindings hold `max_binding` bytes.
    pub fn new(cpu: bool, max_binding: u64, window_vec4: u32, quick: bool) -> Sizes {
        let window_vec4 = window_vec4.clamp(1, 128);
        // 4 096 vec4 = 64 KiB, in a power of two of whole windows.
        let cached_windows = 1u32 << (4096 / window_vec4).max(1).ilog2();
        if quick {
            return Sizes {
                invocations: 4096,
                window_vec4,
                cached_windows,
                cached_iterations: 16,
                stream_windows: 1 << 12,
                fma_iterations: 4,
            };
        }
        let (invocations, cached_iterations, fma_iterations) = if cpu {
            (1 << 14, (256 / window_vec4).max(4), 64)
        } else {
            (1 << 20, (1024 / window_vec4).max(4), 512)
        };
        // The streamed buffer within a binding: 128 MiB or the limit.
        let max_vec4 = (max_binding.min(128 << 20) / 16) as u32;
        Sizes {
            invocations,
            window_vec4,
            cached_windows,
            cached_iterations,
            stream_windows: 1 << (max_vec4 / window_vec4).max(1).ilog2(),
            fma_iterations,
        }
    }

    fn stream_vec4(&self) -> u32 {
        self.stream_windows * self.window_vec4
    }

    /// The streamed loads' invocations and iterations: each window once.
    fn stream_grid(&self) -> (u32, u32) {
        let n = self.invocations.min(self.stream_windows);
        (n, self.stream_windows / n)
    }

    fn cached_vec4(&self) -> u32 {
        self.cached_windows * self.window_vec4
    }
}

/// The adapter's rates, from the median of the timed runs.
#[derive(Clone, Debug, Serialize)]
pub struct Roofline {
    /// vec4 loads from `cached_working_set_bytes`, read over and over.
    pub cached_bytes_per_s: f64,
    pub cached_working_set_bytes: u64,
    /// vec4 loads of `stream_bytes`, each read once.
    pub stream_bytes_per_s: f64,
    pub stream_bytes: u64,
    /// f32 fused multiply-adds (one FMA = 2 flops).
    pub fma_per_s: f64,
    pub time_source: String,
}

/// What the DAS kernel does per point (pixel × channel × frame).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct DasNeeds {
    /// Bytes of rows requested: each pixel reads `taps` rows (one pixel per
    /// invocation), or its share of a window of `taps + span` rows shared
    /// by `k` pixels; a row holds a complex sample per frame, 8 bytes in
    /// f32, 4 in f16. A GPU serves lanes that read the same row together,
    /// so its caches may move less than this (`loads` reads windows that
    /// do not overlap: the worst case).
    pub row_bytes_per_point: f64,
    /// Fused multiply-adds: a real weight on each row of the window (2 per
    /// frame and row) and the complex rotate-and-add (4 per frame).
    pub fma_per_point: f64,
}

/// Rows in one invocation's window for one element: the taps, and the
/// span as `Das` specialises it (none for one pixel, at least 2 otherwise).
fn window_rows(tiling: &DasTiling, interp: Interp) -> u32 {
    let taps = match interp {
        Interp::Nearest => 1,
        Interp::Linear => 2,
        Interp::Cubic => 4,
    };
    let span = if tiling.pixels_per_invocation <= 1 {
        0
    } else {
        tiling.window_span.max(2)
    };
    taps + span
}

/// vec4 one invocation of das loads per element: its window's rows as
/// stored (f16 rows take half the vec4 of f32 rows).
pub fn das_window_vec4(tiling: &DasTiling, interp: Interp) -> u32 {
    let row = if tiling.f16_rows {
        (tiling.row_vec4 / 2).max(1)
    } else {
        tiling.row_vec4
    };
    window_rows(tiling, interp) * row
}

/// [`DasNeeds`] of the kernel specialised for `tiling` and `interp`.
pub fn das_needs(tiling: &DasTiling, interp: Interp) -> DasNeeds {
    let rows = window_rows(tiling, interp) as f64;
    let k = tiling.pixels_per_invocation.max(1) as f64;
    let row_bytes = if tiling.f16_rows { 4.0 } else { 8.0 };
    DasNeeds {
        row_bytes_per_point: row_bytes * rows / k,
        fma_per_point: 2.0 * rows + 4.0,
    }
}

/// The DAS kernel placed against the adapter's rates.
#[derive(Clone, Debug, Serialize)]
pub struct DasOnRoofline {
    pub tiling: String,
    pub needs: DasNeeds,
    pub points_per_s: f64,
    /// Row loads at `points_per_s` as a share of the cached load rate.
    pub cached_share: f64,
    /// FMAs at `points_per_s` as a share of the FMA rate.
    pub fma_share: f64,
    /// The points/s the rates allow with these needs, and what binds.
    pub ceiling_points_per_s: f64,
    pub bound_by: String,
}

impl Roofline {
    pub fn place(&self, tiling: &DasTiling, interp: Interp, points_per_s: f64) -> DasOnRoofline {
        let needs = das_needs(tiling, interp);
        let by_loads = self.cached_bytes_per_s / needs.row_bytes_per_point;
        let by_fma = self.fma_per_s / needs.fma_per_point;
        DasOnRoofline {
            tiling: super::tune::label(tiling),
            needs,
            points_per_s,
            cached_share: points_per_s * needs.row_bytes_per_point / self.cached_bytes_per_s,
            fma_share: points_per_s * needs.fma_per_point / self.fma_per_s,
            ceiling_points_per_s: by_loads.min(by_fma),
            bound_by: if by_loads <= by_fma {
                "cached loads"
            } else {
                "FMA"
            }
            .into(),
        }
    }
}

/// One invocation's sum of `loads` (roofline.wgsl) with windows of
/// `window_vec4` vec4, over data whose word j holds j: a vec4 at v sums to
/// 16 v + 6.
fn loads_sum(i: u32, p: &RooflineParams, window_vec4: u32) -> u32 {
    let mut acc = 0u32;
    let mut at = i;
    for _ in 0..p.iterations {
        let first = (at & p.mask).wrapping_mul(window_vec4);
        for j in 0..window_vec4 {
            acc = acc.wrapping_add(first.wrapping_add(j).wrapping_mul(16).wrapping_add(6));
        }
        at = at.wrapping_add(p.stride);
    }
    acc
}

/// `UNROLL` in roofline.wgsl: steps of each FMA chain per iteration.
pub const FMA_UNROLL: u32 = 4;

/// FMAs per invocation and iteration of `fmas`: eight chains of vec4.
const FMA_PER_ITERATION: f64 = 32.0 * FMA_UNROLL as f64;

/// Every invocation's sum of `fmas`: chains 0 to 7 of 4 lanes, chain j
/// from j, plus one per step.
fn fmas_sum(p: &RooflineParams) -> u32 {
    4 * (28 + 8 * FMA_UNROLL * p.iterations)
}

/// Time the three kernels (`warmup` untimed runs, then `repeat`), check
/// their results, and return the rates.
pub fn measure(
    ctx: &GpuContext,
    sizes: Sizes,
    warmup: usize,
    repeat: usize,
) -> Result<Roofline, BenchError> {
    let powers = [
        sizes.invocations,
        sizes.cached_windows,
        sizes.stream_windows,
    ];
    if sizes.fma_iterations > 1 << 16 || !powers.iter().all(|n| n.is_power_of_two()) {
        return Err(BenchError::Input(format!(
            "roofline sizes {sizes:?}: at most 2^16 FMA iterations, and powers of two of invocations and windows"
        )));
    }
    let r = sizes.window_vec4;
    let device = &ctx.device;
    let module = crate::gpu::shaders::module(device, STAGE);
    let (bgl, pl) = layout(
        device,
        STAGE,
        &[Binding::Uniform, Binding::Read, Binding::ReadWrite],
    );
    let words = (sizes.stream_vec4().max(sizes.cached_vec4()) as usize) * 4;
    let data: Vec<u32> = (0..words as u32).collect();
    let data = ctx.storage_from("sonoguide.roofline.data", &data)?;
    let sums = ctx.storage("sonoguide.roofline.sums", sizes.invocations as u64 * 4)?;
    let n = sizes.invocations;
    let source = GpuTimer::new(ctx, Fallback::Stall)
        .source()
        .unwrap_or(TimeSource::Wall);

    // One kernel with its parameters on `n` invocations: the median time,
    // after checking the last run's sums against `expect`.
    let run = |entry: &str, params: RooflineParams, n: u32, expect: &dyn Fn(u32) -> u32| {
        let pipeline = specialised_pipeline(
            device,
            STAGE,
            &module,
            &pl,
            entry,
            &[("WINDOW_VEC4", r as f64)],
            true,
        );
        let uniform = ctx.uniform_from("sonoguide.roofline.params", &params);
        let group = bind_group(device, STAGE, &bgl, &[&uniform, &data, &sums]);
        let label = format!("{STAGE}.{entry}");
        let times = time_pass(ctx, &label, warmup, repeat, |enc| {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(&label),
                timestamp_writes: None,
            });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &group, &[]);
            pass.dispatch_workgroups(n.div_ceil(WORKGROUP), 1, 1);
        })?;
        let got: Vec<u32> = ctx.read_buffer(&sums, n as usize)?;
        if let Some((i, g)) = got
            .iter()
            .enumerate()
            .find(|(i, g)| **g != expect(*i as u32))
        {
            return Err(BenchError::gpu(format!(
                "{label}: invocation {i} summed {g}, expected {}: the adapter's result is wrong, so its time means nothing",
                expect(i as u32)
            )));
        }
        Ok(median(&times))
    };

    let cached = RooflineParams {
        iterations: sizes.cached_iterations,
        mask: sizes.cached_windows - 1,
        stride: WORKGROUP,
        one: 1.0,
    };
    let cached_s = run("loads", cached, n, &|i| loads_sum(i, &cached, r))?;
    let (stream_n, stream_iterations) = sizes.stream_grid();
    let stream = RooflineParams {
        iterations: stream_iterations,
        mask: sizes.stream_windows - 1,
        stride: stream_n,
        one: 1.0,
    };
    let stream_s = run("loads", stream, stream_n, &|i| loads_sum(i, &stream, r))?;
    let fma = RooflineParams {
        iterations: sizes.fma_iterations,
        mask: 0,
        stride: 0,
        one: 1.0,
    };
    let fma_s = run("fmas", fma, n, &|_| fmas_sum(&fma))?;

    let window_bytes = r as f64 * 16.0;
    Ok(Roofline {
        cached_bytes_per_s: n as f64 * sizes.cached_iterations as f64 * window_bytes / cached_s,
        cached_working_set_bytes: sizes.cached_vec4() as u64 * 16,
        stream_bytes_per_s: sizes.stream_windows as f64 * window_bytes / stream_s,
        stream_bytes: sizes.stream_vec4() as u64 * 16,
        fma_per_s: n as f64 * sizes.fma_iterations as f64 * FMA_PER_ITERATION / fma_s,
        time_source: source.name().into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn das_needs_follow_the_tiling() {
        let t = |k, span, f16| DasTiling {
            pixels_per_invocation: k,
            row_vec4: 4,
            window_span: span,
            f16_rows: f16,
            element_split: 1,
        };
        // One pixel: its two linear taps, 8 bytes each in f32.
        let one = das_needs(&t(1, 2, false), Interp::Linear);
        assert_eq!((one.row_bytes_per_point, one.fma_per_point), (16.0, 8.0));
        // Eight pixels share a window of 2 + 2 rows: half a row each.
        let eight = das_needs(&t(8, 2, true), Interp::Linear);
        assert_eq!(
            (eight.row_bytes_per_point, eight.fma_per_point),
            (2.0, 12.0)
        );
    }

    /// Whatever the window and the binding limit: buffers within the
    /// binding, a 64 KiB working set at most, powers of two where the
    /// shader masks, and the streamed buffer read exactly once.
    #[test]
    fn sizes_fit_the_adapter() {
        for cpu in [true, false] {
            for quick in [true, false] {
                for limit in [16u64 << 20, 128 << 20, 2 << 30] {
                    for window in 1..=128 {
                        let z = Sizes::new(cpu, limit, window, quick);
                        let what = format!("{z:?} (limit {limit})");
                        assert!(z.stream_vec4() as u64 * 16 <= limit, "{what}");
                        assert!(z.cached_vec4() <= 4096 && z.cached_windows >= 1, "{what}");
                        assert!(z.invocations.div_ceil(WORKGROUP) <= 65_535, "{what}");
                        for p in [z.invocations, z.cached_windows, z.stream_windows] {
                            assert!(p.is_power_of_two(), "{what}");
                        }
                        let (n, it) = z.stream_grid();
                        assert_eq!(n * it, z.stream_windows, "{what}");
                        assert!(z.fma_iterations <= 1 << 16, "{what}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_host_sums_wrap_as_the_shader_does() {
        let p = RooflineParams {
            iterations: 3,
            mask: 7,
            stride: 5,
            one: 1.0,
        };
        // Invocation 2 reads rows 2, 7, 12 & 7 = 4: vec4s 2, 7, 4 in rows
        // of one, 4 5, 14 15, 8 9 in rows of two.
        assert_eq!(
            loads_sum(2, &p, 1),
            (16 * 2 + 6) + (16 * 7 + 6) + (16 * 4 + 6)
        );
        let two: u32 = [4, 5, 14, 15, 8, 9].iter().map(|v| 16 * v + 6).sum();
        assert_eq!(loads_sum(2, &p, 2), two);
        assert_eq!(fmas_sum(&p), 4 * (28 + 8 * 4 * 3));
    }
}
