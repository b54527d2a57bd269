//! The measurements: the DAS kernel alone (GPU timestamps and wall time),
//! every stage of the pipeline, and the CPU twin on the same data.

use std::time::Instant;

use super::workload::Workload;
use super::BenchError;
use crate::acquisition::{PixelGrid, Samples};
use crate::gpu::timing::{Fallback, GpuTimer, TimeSource};
use crate::gpu::GpuContext;
use crate::pipeline::das::{DasGeometry, DasPlan, DasTarget};
use crate::pipeline::demodulate::DemodPlan;
use crate::pipeline::{Beamformer, DetectSettings, DisplayGrid, GpuChannels};
use crate::render::compositor::{Compositor, DrawList, ImageUniform};
use crate::render::Offscreen;

pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        0.5 * (s[n / 2 - 1] + s[n / 2])
    }
}

/// Channel data demodulated and resident on the GPU, with the DAS geometry
/// prepared: what every repetition reuses.
pub struct Prepared {
    pub channels: GpuChannels,
    pub plan: DasPlan,
    pub pixels: Vec<[f32; 2]>,
    pub geometry: DasGeometry,
    pub target: DasTarget,
}

fn encoder(ctx: &GpuContext, label: &str) -> wgpu::CommandEncoder {
    ctx.device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) })
}

/// Upload, demodulate and prepare `w` (not timed).
pub fn prepare(ctx: &GpuContext, bf: &Beamformer, w: &Workload) -> Result<Prepared, BenchError> {
    w.data
        .validate()
        .map_err(|e| BenchError::Input(format!("{}: {e}", w.source)))?;
    let acq = &w.data.acquisition;
    let raw = GpuChannels::upload(ctx, &w.data)?;
    let mut enc = encoder(ctx, "sonoguide.bench.prepare");
    let (channels, f_mod) = match (&w.demod, raw.iq) {
        (Some(s), false) => {
            let plan = DemodPlan::new(acq, s)?;
            (bf.demodulate.encode(ctx, &mut enc, &raw, &plan)?, plan.fc)
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
    let pixels = w.grid.positions_f32();
    let plan = DasPlan::new(acq, &w.das, f_mod, pixels.len(), channels.frames)?;
    prepare_das(ctx, bf, enc, channels, plan, pixels)
}

impl Prepared {
    /// The same channel data and pixels, prepared again with `bf`'s DAS
    /// settings as they are now (another tiling, say).
    pub fn again(&self, ctx: &GpuContext, bf: &Beamformer) -> Result<Prepared, BenchError> {
        let enc = encoder(ctx, "sonoguide.bench.prepare");
        prepare_das(
            ctx,
            bf,
            enc,
            self.channels.clone(),
            self.plan.clone(),
            self.pixels.clone(),
        )
    }
}

/// Record the DAS geometry for `channels` after what `enc` holds, make
/// its target, and run it all.
fn prepare_das(
    ctx: &GpuContext,
    bf: &Beamformer,
    mut enc: wgpu::CommandEncoder,
    channels: GpuChannels,
    plan: DasPlan,
    pixels: Vec<[f32; 2]>,
) -> Result<Prepared, BenchError> {
    let geometry = bf.das.prepare(
        ctx,
        &mut enc,
        &plan,
        &pixels,
        channels.samples,
        channels.frames,
        channels.iq,
    )?;
    let target = bf.das.target(ctx, &geometry, &channels)?;
    ctx.queue.submit([enc.finish()]);
    ctx.wait()?;
    ctx.take_error("bench: prepare")?;
    Ok(Prepared {
        channels,
        plan,
        pixels,
        geometry,
        target,
    })
}

/// Repeated runs of the DAS kernel on prepared data.
#[derive(Debug, Clone)]
pub struct KernelTimes {
    pub source: TimeSource,
    /// The `das` pass (beamforming proper), per repetition.
    pub kernel_s: Vec<f64>,
    /// The `das_layout` pass (frame-contiguous copy), per repetition.
    pub layout_s: Vec<f64>,
    /// Host clock from submission of layout + das to completion.
    pub wall_s: Vec<f64>,
    /// CPU time of this process per run of layout + das (Linux): on a
    /// software adapter the work itself in core-seconds, which other load
    /// on the machine inflates much less than elapsed time.
    pub process_cpu_s: Option<f64>,
}

/// User + system CPU seconds of this process so far (Linux; `None` elsewhere).
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    // Linux reports clock ticks of USER_HZ = 100 on every mainstream architecture.
    Some((utime + stime) / 100.0)
}

/// `warmup` untimed runs (lavapipe compiles a pipeline at its first
/// dispatch), then `repeat` timed ones, each also on the host clock.
pub fn time_kernel(
    ctx: &GpuContext,
    bf: &Beamformer,
    p: &Prepared,
    warmup: usize,
    repeat: usize,
) -> Result<KernelTimes, BenchError> {
    time_runs(ctx, bf, p, warmup, repeat, true)
}

/// One pass recorded by `record`, `warmup` times untimed, then `repeat`
/// times each in a submission of its own, timed as `label` (GPU
/// timestamps where the adapter has them).
pub fn time_pass(
    ctx: &GpuContext,
    label: &str,
    warmup: usize,
    repeat: usize,
    record: impl Fn(&mut wgpu::CommandEncoder),
) -> Result<Vec<f64>, BenchError> {
    for _ in 0..warmup {
        let mut enc = encoder(ctx, "sonoguide.bench.warmup");
        record(&mut enc);
        ctx.queue.submit([enc.finish()]);
        ctx.wait()?;
    }
    let mut timer = GpuTimer::new(ctx, Fallback::Stall);
    let mut out = Vec::with_capacity(repeat);
    for r in 0..repeat {
        let mut enc = encoder(ctx, "sonoguide.bench.pass");
        timer.begin_frame(r as u64);
        timer.scope(ctx, &mut enc, label, |enc| record(enc));
        timer.finish(ctx, &mut enc);
        ctx.queue.submit([enc.finish()]);
        timer.submitted();
        for f in timer.wait(ctx)? {
            out.extend(f.get(label));
        }
    }
    ctx.take_error(label)?;
    Ok(out)
}

/// [`time_kernel`]; without `wall` no host-clock runs (`wall_s` and
/// `process_cpu_s` stay empty): half the submissions, for tuning.
pub fn time_runs(
    ctx: &GpuContext,
    bf: &Beamformer,
    p: &Prepared,
    warmup: usize,
    repeat: usize,
    wall: bool,
) -> Result<KernelTimes, BenchError> {
    let record = |enc: &mut wgpu::CommandEncoder| bf.das.record(ctx, enc, &p.geometry, &p.target);
    for _ in 0..warmup {
        let mut enc = encoder(ctx, "sonoguide.bench.warmup");
        record(&mut enc)?;
        ctx.queue.submit([enc.finish()]);
        ctx.wait()?;
    }
    let mut timer = GpuTimer::new(ctx, Fallback::Stall);
    let mut out = KernelTimes {
        source: timer.source().unwrap_or(TimeSource::Wall),
        kernel_s: Vec::new(),
        layout_s: Vec::new(),
        wall_s: Vec::new(),
        process_cpu_s: None,
    };
    let cpu0 = process_cpu_seconds();
    for r in 0..repeat {
        if wall {
            // Wall time: the same two passes, submitted alone, on the host clock.
            let mut enc = encoder(ctx, "sonoguide.bench.wall");
            record(&mut enc)?;
            let t = Instant::now();
            ctx.queue.submit([enc.finish()]);
            ctx.wait()?;
            out.wall_s.push(t.elapsed().as_secs_f64());
        }

        let mut enc = encoder(ctx, "sonoguide.bench.kernel");
        timer.begin_frame(r as u64);
        timer.scope(ctx, &mut enc, "das_layout", |enc| {
            bf.das.record_layout(ctx, enc, &p.geometry, &p.target)
        })?;
        timer.scope(ctx, &mut enc, "das", |enc| {
            bf.das.record_beamform(ctx, enc, &p.geometry, &p.target)
        })?;
        timer.finish(ctx, &mut enc);
        ctx.queue.submit([enc.finish()]);
        timer.submitted();
        for f in timer.wait(ctx)? {
            out.source = f.source;
            out.kernel_s.extend(f.get("das"));
            out.layout_s.extend(f.get("das_layout"));
        }
    }
    // Two submissions of layout + das per repetition.
    if wall {
        out.process_cpu_s = cpu0
            .zip(process_cpu_seconds())
            .map(|(a, b)| (b - a) / (2 * repeat) as f64);
    }
    ctx.take_error("bench: das")?;
    Ok(out)
}

/// Median seconds per stage of the whole chain, in order.
pub type StageTimes = Vec<(String, f64)>;

/// The display target the composite stage draws into (the issue's
/// 1280 × 720 screen).
pub const COMPOSITE_SIZE: (u32, u32) = (1280, 720);

/// The whole chain, stage by stage: upload (host staging write + GPU copy),
/// demodulate, das (transmit table, layout, beamforming), detect,
/// scan_convert, composite (the display's render pass drawing the
/// scan-converted image full screen into a 1280 × 720 offscreen target),
/// readback (GPU copy + host map). `repeat` runs after one warm-up; medians.
pub fn time_stages(
    ctx: &GpuContext,
    bf: &Beamformer,
    w: &Workload,
    repeat: usize,
) -> Result<(StageTimes, TimeSource), BenchError> {
    let acq = &w.data.acquisition;
    let mut bytes: Vec<u8> = match &w.data.data {
        Samples::Rf(v) => bytemuck::cast_slice(v).to_vec(),
        Samples::Iq(v) => bytemuck::cast_slice(v).to_vec(),
    };
    let size = (bytes.len() as u64).next_multiple_of(4).max(4);
    bytes.resize(size as usize, 0);
    let pixels = w.grid.positions_f32();
    let n_img = pixels.len() * w.data.frames;
    // PWI_disk's grid is Cartesian and needs no scan conversion; the stage
    // is timed anyway, on a polar layout with the same rows and columns,
    // so that the table shows what a convex or phased probe would pay.
    let polar = match &w.grid {
        PixelGrid::Polar { .. } => w.grid.clone(),
        g => PixelGrid::Polar {
            origin: [0.0, -0.02],
            radius: (0.021, 0.06),
            angle: (-0.6, 0.6),
            nr: g.rows(),
            na: g.cols(),
        },
    };
    let display = DisplayGrid::covering(&polar, polar.rows().max(64)).ok_or_else(|| {
        BenchError::Input("scan conversion: no display grid for this image".into())
    })?;
    let mut compositor = Compositor::new(ctx, wgpu::TextureFormat::Rgba8Unorm);
    let screen = Offscreen::new(ctx, COMPOSITE_SIZE, wgpu::TextureFormat::Rgba8Unorm);
    // The image's (u, v) in [0, 1]² onto the whole target.
    let full_screen = glam::Mat4::from_cols(
        glam::Vec4::new(2.0, 0.0, 0.0, 0.0),
        glam::Vec4::new(0.0, -2.0, 0.0, 0.0),
        glam::Vec4::Z,
        glam::Vec4::new(-1.0, 1.0, 0.0, 1.0),
    );
    let draw = DrawList {
        image_2d: Some(ImageUniform {
            clip_from_uv: full_screen.to_cols_array_2d(),
            width: display.width as u32,
            height: display.height as u32,
            chain_range_db: DetectSettings::default().dynamic_range_db as f32,
            gain_db: 0.0,
            range_db: DetectSettings::default().dynamic_range_db as f32,
            dim: 0.0,
            opacity: 1.0,
            _pad0: 0.0,
            tgc: [0.0; 4],
        }),
        ..Default::default()
    };
    let mut runs: Vec<Vec<(String, f64)>> = Vec::new();
    let mut source = TimeSource::Wall;
    for r in 0..repeat + 1 {
        let mut host: Vec<(String, f64)> = Vec::new();
        // Timestamps wherever the adapter has them, software ones included
        // since the timer follows each marker with a second on CPU adapters
        // (lavapipe takes a timestamp when the next flushing command runs;
        // before that, das read 37 µs and detect 117 ms here, and the
        // lavapipe tables in BENCHMARKS.md up to 2026-11-30 were measured
        // on the host clock around each stage submitted alone).
        let mut timer = GpuTimer::new(ctx, Fallback::Stall);
        timer.begin_frame(r as u64);
        // Upload: the host writes into a mapped staging buffer, the GPU copies.
        let t = Instant::now();
        let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("sonoguide.bench.staging"),
            size,
            usage: wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: true,
        });
        staging
            .slice(..)
            .get_mapped_range_mut()
            .map_err(|e| BenchError::gpu(format!("staging buffer: {e:?}")))?
            .copy_from_slice(&bytes);
        staging.unmap();
        let rf = ctx.storage("sonoguide.channels", size)?;
        host.push(("upload".into(), t.elapsed().as_secs_f64()));
        let raw = GpuChannels {
            buffer: rf,
            iq: w.data.is_iq(),
            encoding: crate::pipeline::Encoding::F32,
            frames: w.data.frames,
            waves: w.data.waves,
            channels: w.data.channels,
            samples: w.data.samples,
        };
        let mut enc = encoder(ctx, "sonoguide.bench.stages");
        timer.scope(ctx, &mut enc, "upload", |enc| {
            enc.copy_buffer_to_buffer(&staging, 0, &raw.buffer, 0, size)
        });
        let (channels, f_mod) = match (&w.demod, raw.iq) {
            (Some(s), false) => {
                let plan = DemodPlan::new(acq, s)?;
                (
                    timer.scope(ctx, &mut enc, "demodulate", |enc| {
                        bf.demodulate.encode(ctx, enc, &raw, &plan)
                    })?,
                    plan.fc,
                )
            }
            _ => (
                raw,
                if w.data.is_iq() {
                    acq.modulation_frequency
                } else {
                    0.0
                },
            ),
        };
        let plan = DasPlan::new(acq, &w.das, f_mod, pixels.len(), channels.frames)?;
        let geom = timer.scope(ctx, &mut enc, "das_transmit", |enc| {
            bf.das.prepare(
                ctx,
                enc,
                &plan,
                &pixels,
                channels.samples,
                channels.frames,
                channels.iq,
            )
        })?;
        let target = bf.das.target(ctx, &geom, &channels)?;
        timer.scope(ctx, &mut enc, "das_layout", |enc| {
            bf.das.record_layout(ctx, enc, &geom, &target)
        })?;
        timer.scope(ctx, &mut enc, "das", |enc| {
            bf.das.record_beamform(ctx, enc, &geom, &target)
        })?;
        let det = timer.scope(ctx, &mut enc, "detect", |enc| {
            bf.detect
                .encode(ctx, enc, &target.image, n_img, &DetectSettings::default())
        })?;
        let disp = timer.scope(ctx, &mut enc, "scan_convert", |enc| {
            bf.scan_convert
                .encode(ctx, enc, &det.grey, &polar, &display, 0)
        })?;
        compositor.set_image(ctx, &disp);
        timer.scope(ctx, &mut enc, "composite", |enc| {
            compositor.encode(ctx, enc, &screen.view, COMPOSITE_SIZE, &draw)
        });
        let grey_bytes = (n_img * 4) as u64;
        let readback = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("sonoguide.bench.readback"),
            size: grey_bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        timer.scope(ctx, &mut enc, "readback", |enc| {
            enc.copy_buffer_to_buffer(&det.grey, 0, &readback, 0, grey_bytes)
        });
        timer.finish(ctx, &mut enc);
        ctx.queue.submit([enc.finish()]);
        timer.submitted();
        ctx.wait()?;
        // The host half of the readback: map and copy out.
        let t = Instant::now();
        let slice = readback.slice(..);
        slice.map_async(wgpu::MapMode::Read, |_| {});
        ctx.wait()?;
        let grey: Vec<f32> = bytemuck::cast_slice(
            &slice
                .get_mapped_range()
                .map_err(|e| BenchError::gpu(format!("readback: {e:?}")))?[..],
        )
        .to_vec();
        readback.unmap();
        host.push(("readback".into(), t.elapsed().as_secs_f64()));
        drop((grey, disp));
        ctx.take_error("bench: stages")?;
        let mut run: Vec<(String, f64)> = Vec::new();
        for f in timer.wait(ctx)? {
            source = f.source;
            run.extend(f.scopes);
        }
        // Host time of upload and readback adds to the GPU copies.
        for (label, t) in host {
            match run.iter_mut().find(|(l, _)| *l == label) {
                Some(e) => e.1 += t,
                None => run.push((label, t)),
            }
        }
        if r > 0 {
            runs.push(run);
        }
    }
    Ok((label_medians(&runs), source))
}

/// The median of each label's time over `runs` (each a list of labelled
/// times: a run's stages, a batch's scopes), the labels in the order they
/// first appear.
pub fn label_medians(runs: &[Vec<(String, f64)>]) -> Vec<(String, f64)> {
    let mut order: Vec<&str> = Vec::new();
    for (l, _) in runs.iter().flatten() {
        if !order.contains(&l.as_str()) {
            order.push(l);
        }
    }
    order
        .into_iter()
        .map(|l| {
            let v: Vec<f64> = runs
                .iter()
                .filter_map(|r| r.iter().find(|(x, _)| x == l).map(|(_, t)| *t))
                .collect();
            (l.to_string(), median(&v))
        })
        .collect()
}

/// The GPU image of `p` read back, `[frame][pixel]` complex.
pub fn read_image(ctx: &GpuContext, p: &Prepared) -> Result<Vec<[f32; 2]>, BenchError> {
    Ok(ctx.read_buffer(&p.target.image, p.pixels.len() * p.channels.frames)?)
}

/// The CPU twin on the same (demodulated) channel data; seconds and image.
pub fn time_cpu(ctx: &GpuContext, p: &Prepared) -> Result<(f64, Vec<[f64; 2]>), BenchError> {
    let n = p.channels.traces() * p.channels.samples;
    let host: Vec<f32> = if p.channels.iq {
        let v: Vec<[f32; 2]> = ctx.read_buffer(&p.channels.buffer, n)?;
        v.iter().flat_map(|c| [c[0], c[1]]).collect()
    } else {
        ctx.read_buffer(&p.channels.buffer, n)?
    };
    let t = Instant::now();
    let img = crate::reference::das::das(
        &p.plan,
        &host,
        p.channels.iq,
        p.channels.samples,
        p.channels.frames,
        &p.pixels,
        None,
    );
    Ok((t.elapsed().as_secs_f64(), img))
}

/// max |gpu − cpu| / max |cpu|.
pub fn relative_error(gpu: &[[f32; 2]], cpu: &[[f64; 2]]) -> f64 {
    let peak = cpu.iter().map(|c| c[0].hypot(c[1])).fold(0.0, f64::max);
    if peak == 0.0 {
        return f64::NAN;
    }
    gpu.iter()
        .zip(cpu)
        .map(|(g, c)| (g[0] as f64 - c[0]).hypot(g[1] as f64 - c[1]))
        .fold(0.0, f64::max)
        / peak
}
