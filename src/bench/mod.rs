//! The benchmark harness: `sonoguide bench` and `sonoguide hfr`.
//!
//! `bench` measures what GPU beamformers are compared on, the way the
//! `mach` project reports it (<https://forest-neurotech.github.io/mach/benchmarks.html>,
//! and the paper, arXiv:2604.06257):
//!
//! - the *kernel* time: the delay-and-sum pass alone, median over
//!   repetitions, from GPU timestamps ([`crate::gpu::timing`]); mach
//!   likewise excludes transfers, compilation, data reshaping and
//!   demodulation. Our reshaping pass (`das_layout`) and the transmit
//!   table (`das_transmit`, once per geometry) are reported beside it, and
//!   the wall time of layout + das from submission to completion too;
//! - *throughput* in points per second, points = pixels × receive channels
//!   × frames (× transmits, one per frame in PWI_disk: 63 001 × 128 × 32 =
//!   2.58 × 10⁸), divided by the kernel time;
//! - the *Mach factor*: the acoustic time of the data (round trip to the
//!   deepest pixel, 2 × 35 mm / 1480 m/s = 47.3 µs per frame, 1.51 ms for
//!   the 32 frames) divided by the kernel time; above 1 the beamformer
//!   keeps up with sound.
//!
//! Beside it: the CPU twin (`reference::das`, one thread, f64) on the same
//! demodulated data, every stage of the chain, and sweeps of pixels,
//! channels, waves and frames on synthetic data (`sim::point_echoes`).
//!
//! `hfr` streams batches of frames through upload → demodulate → das →
//! detect with several batches in flight ([`hfr`]).

mod hfr;
pub mod measure;
mod progress;
pub mod report;
pub mod roofline;
pub mod tune;
pub mod workload;

use std::path::PathBuf;

use clap::Args;
use thiserror::Error;

use crate::gpu::{GpuContext, GpuError};
use crate::pipeline::das::DasTiling;
use crate::pipeline::{Beamformer, FNumber, Interp, PipelineError};
use measure::{median, Prepared};
use report::{BenchReport, Measurement, Stage};
use workload::{SynthShape, Workload};

pub use hfr::{hfr, HfrArgs, HfrReport};

#[derive(Debug, Error)]
pub enum BenchError {
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Output(String),
}

impl BenchError {
    pub(crate) fn gpu(msg: impl Into<String>) -> BenchError {
        BenchError::Gpu(GpuError::Readback {
            label: "bench".into(),
            message: msg.into(),
        })
    }
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// `pwi-disk` (mach's reference workload: PWI_disk.mat, 251 × 251 pixels, 128 channels,
    /// 32 frames, linear interpolation, F-number 1) or `synthetic` (see --size, --channels, ...).
    #[arg(long, default_value = "pwi-disk")]
    pub workload: String,
    /// PWI_disk.mat (default: ../shared/data/must/PWI_disk.mat next to the project).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Write the results as JSON (adapter, backend, points, median_kernel_s, median_wall_s,
    /// points_per_s, mach_factor, cpu_points_per_s, and the details).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write one CSV row per measured configuration.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Write an SVG plot of throughput against problem size (use with --sweep).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Also sweep pixels, channels, waves and frames on synthetic data.
    #[arg(long)]
    pub sweep: bool,
    /// Small sizes and few repetitions (CI: checks that everything runs, times nothing useful).
    #[arg(long)]
    pub quick: bool,
    /// Timed repetitions per configuration (default 20, 3 with --quick).
    #[arg(long)]
    pub repeat: Option<usize>,
    /// Skip the CPU twin.
    #[arg(long)]
    pub no_cpu: bool,
    /// Skip the per-stage timing of the whole chain.
    #[arg(long)]
    pub no_stages: bool,
    /// DAS tiling: pixels per invocation, 1, 2, 4 or 8 (default: 8 on CPU adapters, 4 on GPUs).
    #[arg(long)]
    pub pixels_per_invocation: Option<u32>,
    /// DAS tiling: vec4 per row, 1, 2, 4 or 8 (2 to 16 frames per block; default: by frame count).
    #[arg(long)]
    pub row_vec4: Option<u32>,
    /// DAS tiling: window span 2, 4 or 6 (default: chosen from the geometry).
    #[arg(long)]
    pub window_span: Option<u32>,
    /// DAS tiling: threads sharing each invocation's element loop, 1, 2, 4
    /// or 8 (more than 1 needs --pixels-per-invocation 1; default 1).
    #[arg(long)]
    pub element_split: Option<u32>,
    /// DAS rows stored as f16 pairs (scaled by a power of two): half the
    /// bytes per tap, 11-bit samples (default: f32, the twin's precision).
    #[arg(long)]
    pub f16_rows: bool,
    /// Time every DAS tiling on this adapter and workload (pixels per
    /// invocation, rows, element split; f32 and f16 rows) in rounds within
    /// this run, check each image against the default tiling's, list them,
    /// and measure with the fastest correct one (among f16 rows with
    /// --f16-rows, else f32); likewise demodulation's chunk length. Not
    /// with the tiling flags above or --demod-chunk.
    #[arg(long)]
    pub tune: bool,
    /// Also measure the adapter itself in this run (cached and streamed
    /// vec4 loads, f32 FMAs) and place the DAS kernel against it: the
    /// bytes and FMAs it needs per point, its share of each rate, and the
    /// throughput those rates allow.
    #[arg(long)]
    pub roofline: bool,
    /// Demodulation: extended samples per chunk of a trace, one invocation
    /// each (0: whole traces; default: whole on CPU adapters, chunks for
    /// about 32 768 invocations on GPUs).
    #[arg(long)]
    pub demod_chunk: Option<usize>,
    /// Synthetic workload: pixels NXxNZ.
    #[arg(long, default_value = "251x251")]
    pub size: String,
    /// Synthetic workload: receive channels.
    #[arg(long, default_value_t = 128)]
    pub channels: usize,
    /// Synthetic workload: plane waves per frame.
    #[arg(long, default_value_t = 1)]
    pub waves: usize,
    /// Synthetic workload: frames.
    #[arg(long, default_value_t = 32)]
    pub frames: usize,
}

/// `NXxNZ`, e.g. `256x256`.
pub fn parse_size(s: &str, what: &str) -> Result<(usize, usize), BenchError> {
    let bad = || BenchError::Input(format!("{what} `{s}`: expected NXxNZ, e.g. 256x256"));
    let (a, b) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let nx: usize = a.trim().parse().map_err(|_| bad())?;
    let nz: usize = b.trim().parse().map_err(|_| bad())?;
    if nx == 0 || nz == 0 || nx > 8192 || nz > 8192 {
        return Err(BenchError::Input(format!(
            "{what} `{s}`: each size must be 1 to 8192"
        )));
    }
    Ok((nx, nz))
}

/// The machine, for the report: CPU model and logical CPUs.
pub fn host_description() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let n = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!("{model}, {n} logical CPUs, {}", std::env::consts::OS)
}

fn device_type_name(t: wgpu::DeviceType) -> &'static str {
    match t {
        wgpu::DeviceType::Cpu => "cpu (software)",
        wgpu::DeviceType::DiscreteGpu => "discrete GPU",
        wgpu::DeviceType::IntegratedGpu => "integrated GPU",
        wgpu::DeviceType::VirtualGpu => "virtual GPU",
        wgpu::DeviceType::Other => "other",
    }
}

/// The DAS tiling, row precision and demodulation chunks the arguments force.
fn stage_overrides(args: &BenchArgs, bf: &Beamformer, frames: usize) -> Result<(), BenchError> {
    bf.das.set_f16_rows(args.f16_rows);
    bf.demodulate.set_chunk(
        args.demod_chunk
            .map(|c| if c == 0 { usize::MAX } else { c }),
    );
    if args.pixels_per_invocation.is_none()
        && args.row_vec4.is_none()
        && args.window_span.is_none()
        && args.element_split.is_none()
    {
        return Ok(bf.das.set_tiling(None)?);
    }
    let d = bf.das.default_tiling(frames);
    let t = DasTiling {
        pixels_per_invocation: args
            .pixels_per_invocation
            .unwrap_or(d.pixels_per_invocation),
        row_vec4: args.row_vec4.unwrap_or(d.row_vec4),
        window_span: args.window_span.unwrap_or(0),
        f16_rows: false,
        element_split: args.element_split.unwrap_or(d.element_split),
    };
    Ok(bf.das.set_tiling(Some(t))?)
}

fn reference_workload(args: &BenchArgs) -> Result<Workload, BenchError> {
    match args.workload.as_str() {
        "pwi-disk" | "pwi_disk" | "PWI_disk" => {
            let path = args.data.clone().or_else(workload::default_pwi_disk);
            match path {
                Some(p) => workload::pwi_disk(&p, args.quick),
                None if args.quick => {
                    eprintln!("bench: PWI_disk.mat not found (pass --data); --quick falls back to synthetic data");
                    workload::synthetic(SynthShape { nx: 63, nz: 63, channels: 64, waves: 1, frames: 4 })
                }
                None => Err(BenchError::Input(
                    "PWI_disk.mat not found at ../shared/data/must/PWI_disk.mat: pass --data PATH/PWI_disk.mat (PyMUST's examples/data) or use --workload synthetic".into(),
                )),
            }
        }
        "synthetic" | "sim" => {
            let (nx, nz) = parse_size(&args.size, "--size")?;
            let shape = if args.quick {
                SynthShape {
                    nx: nx.min(63),
                    nz: nz.min(63),
                    channels: args.channels.min(64),
                    waves: args.waves.min(2),
                    frames: args.frames.min(4),
                }
            } else {
                SynthShape {
                    nx,
                    nz,
                    channels: args.channels,
                    waves: args.waves,
                    frames: args.frames,
                }
            };
            workload::synthetic(shape)
        }
        other => Err(BenchError::Input(format!(
            "--workload `{other}`: expected pwi-disk or synthetic"
        ))),
    }
}

/// The sweeps: one quantity varied at a time around a base shape.
fn sweep_shapes(quick: bool) -> Vec<(&'static str, SynthShape)> {
    let (base, pixels, channels, waves, frames): (
        SynthShape,
        Vec<usize>,
        Vec<usize>,
        Vec<usize>,
        Vec<usize>,
    ) = if quick {
        (
            SynthShape {
                nx: 24,
                nz: 24,
                channels: 16,
                waves: 1,
                frames: 2,
            },
            vec![16, 32],
            vec![8, 16],
            vec![1, 2],
            vec![1, 4],
        )
    } else {
        (
            SynthShape {
                nx: 128,
                nz: 128,
                channels: 128,
                waves: 1,
                frames: 8,
            },
            vec![32, 64, 128, 256, 512],
            vec![16, 32, 64, 128, 256],
            vec![1, 2, 4, 8, 16],
            vec![1, 2, 4, 8, 16, 32, 64],
        )
    };
    let mut out = Vec::new();
    out.extend(pixels.into_iter().map(|n| {
        (
            "pixels",
            SynthShape {
                nx: n,
                nz: n,
                ..base
            },
        )
    }));
    out.extend(channels.into_iter().map(|c| {
        (
            "channels",
            SynthShape {
                channels: c,
                ..base
            },
        )
    }));
    out.extend(
        waves
            .into_iter()
            .map(|w| ("waves", SynthShape { waves: w, ..base })),
    );
    out.extend(
        frames
            .into_iter()
            .map(|f| ("frames", SynthShape { frames: f, ..base })),
    );
    out
}

fn measurement(series: &str, w: &Workload, k: &measure::KernelTimes, p: &Prepared) -> Measurement {
    let kernel = median(&k.kernel_s);
    Measurement {
        series: series.into(),
        tiling: tune::label(&p.geometry.tiling),
        workload: w.name.clone(),
        pixels: w.pixels(),
        channels: w.data.channels,
        waves: w.data.waves,
        frames: w.data.frames,
        samples: w.data.samples,
        points: w.points(),
        median_kernel_s: kernel,
        median_layout_s: median(&k.layout_s),
        median_wall_s: median(&k.wall_s),
        points_per_s: w.points() / kernel,
        mach_factor: w.acoustic_time_s() / kernel,
        process_cpu_s: k.process_cpu_s,
    }
}

/// `sonoguide bench`.
pub fn bench(args: &BenchArgs, backend: Option<&str>) -> Result<BenchReport, BenchError> {
    crate::io::output::check_outputs(
        &[("--data", args.data.as_deref())],
        &[
            ("--json", args.json.as_deref()),
            ("--csv", args.csv.as_deref()),
            ("--plot", args.plot.as_deref()),
        ],
    )
    .map_err(BenchError::Output)?;
    if args.repeat == Some(0) {
        return Err(BenchError::Input(
            "--repeat 0: expected at least one timed repetition".into(),
        ));
    }
    if args.tune
        && (args.pixels_per_invocation.is_some()
            || args.row_vec4.is_some()
            || args.window_span.is_some()
            || args.element_split.is_some()
            || args.demod_chunk.is_some())
    {
        return Err(BenchError::Input(
            "--tune searches the DAS tiling and the demodulation chunks itself: drop --pixels-per-invocation, --row-vec4, --window-span, --element-split and --demod-chunk (--f16-rows chooses among f16 rows)".into(),
        ));
    }
    let repeat = args.repeat.unwrap_or(if args.quick { 3 } else { 20 });
    let w = reference_workload(args)?;
    let ctx = GpuContext::new(backend)?;
    eprintln!("adapter: {}", ctx.describe());
    eprintln!("workload: {}", w.describe());
    let bf = Beamformer::new(&ctx);
    stage_overrides(args, &bf, w.data.frames)?;

    let mut p: Prepared = measure::prepare(&ctx, &bf, &w)?;
    let (tuning, demod_tuning) = if args.tune {
        let rounds = if args.quick { 1 } else { 3 };
        let rows = tune::tune_and_apply(
            &ctx,
            &bf,
            &p,
            &w,
            rounds,
            (repeat / rounds).max(1),
            args.f16_rows,
            "bench",
        )?;
        // The kernel, stages and CPU twin that follow use what was chosen.
        p = p.again(&ctx, &bf)?;
        rows
    } else {
        (Vec::new(), Vec::new())
    };
    let k = measure::time_kernel(&ctx, &bf, &p, 2, repeat)?;
    let m = measurement("reference", &w, &k, &p);
    eprintln!(
        "das kernel: median {:.3} ms over {} runs ({}) = {} points/s, Mach {:.3}",
        m.median_kernel_s * 1e3,
        k.kernel_s.len(),
        k.source.name(),
        report::sci(m.points_per_s),
        m.mach_factor
    );

    let roofline = if args.roofline {
        eprintln!("roofline: the adapter's cached and streamed loads and FMAs ...");
        let window = roofline::das_window_vec4(&p.geometry.tiling, w.das.interp);
        let sizes = roofline::Sizes::for_adapter(&ctx, window, args.quick);
        let r = roofline::measure(&ctx, sizes, 2, repeat)?;
        let das = r.place(&p.geometry.tiling, w.das.interp, m.points_per_s);
        Some(report::RooflineReport { adapter: r, das })
    } else {
        None
    };

    let (cpu_s, err) = if args.no_cpu {
        (None, None)
    } else {
        eprintln!("CPU twin: beamforming the same data on one thread (f64) ...");
        let (t, cpu_img) = measure::time_cpu(&ctx, &p)?;
        let gpu_img = measure::read_image(&ctx, &p)?;
        (Some(t), Some(measure::relative_error(&gpu_img, &cpu_img)))
    };

    let (stages, stage_source) = if args.no_stages {
        (Vec::new(), "skipped".to_string())
    } else {
        let (st, src) = measure::time_stages(&ctx, &bf, &w, repeat.min(10))?;
        (
            st.into_iter()
                .map(|(stage, median_s)| Stage { stage, median_s })
                .collect(),
            src.name().to_string(),
        )
    };

    let mut sweeps = Vec::new();
    if args.sweep {
        let shapes = sweep_shapes(args.quick);
        let mut bar = progress::Progress::new(shapes.len());
        for (series, shape) in shapes {
            bar.step(&format!(
                "{series}: {}×{} px, {} ch, {} waves, {} frames",
                shape.nx, shape.nz, shape.channels, shape.waves, shape.frames
            ));
            // A point the adapter cannot hold (a buffer over its binding
            // limit, say) is reported and skipped; the sweep goes on.
            let point = || -> Result<Measurement, BenchError> {
                let sw = workload::synthetic(shape)?;
                stage_overrides(args, &bf, sw.data.frames)?;
                let sp = measure::prepare(&ctx, &bf, &sw)?;
                let sk = measure::time_kernel(
                    &ctx,
                    &bf,
                    &sp,
                    2,
                    repeat.min(if args.quick { 2 } else { 7 }),
                )?;
                Ok(measurement(series, &sw, &sk, &sp))
            };
            match point() {
                Ok(m) => sweeps.push(m),
                Err(e) => {
                    bar.finish();
                    eprintln!("sweep {series} {shape:?}: skipped ({e})");
                }
            }
            bar.inc();
        }
        bar.finish();
    }

    let info = &ctx.info;
    let fnumber = match w.das.fnumber {
        FNumber::Fixed(f) => f,
        FNumber::Auto => p.plan.fnumber,
        FNumber::Full => 0.0,
    };
    let t = p.geometry.tiling;
    let report = BenchReport {
        adapter: info.name.clone(),
        backend: format!("{:?}", info.backend).to_lowercase(),
        points: m.points,
        median_kernel_s: m.median_kernel_s,
        median_wall_s: m.median_wall_s,
        points_per_s: m.points_per_s,
        mach_factor: m.mach_factor,
        cpu_points_per_s: cpu_s.map(|t| m.points / t),
        device_type: device_type_name(info.device_type).into(),
        driver: format!("{} {}", info.driver, info.driver_info)
            .trim()
            .to_string(),
        time_source: k.source.name().into(),
        workload: w.name.clone(),
        source: w.source.clone(),
        pixels: m.pixels,
        channels: m.channels,
        waves: m.waves,
        frames: m.frames,
        samples: m.samples,
        interpolation: match w.das.interp {
            Interp::Nearest => "nearest",
            Interp::Linear => "linear",
            Interp::Cubic => "cubic",
        }
        .into(),
        fnumber,
        acoustic_time_s: w.acoustic_time_s(),
        median_layout_s: m.median_layout_s,
        kernel_s: k.kernel_s.clone(),
        min_kernel_s: k.kernel_s.iter().copied().fold(f64::INFINITY, f64::min),
        process_cpu_s: k.process_cpu_s,
        wall_s: k.wall_s.clone(),
        tiling: format!(
            "{} pixels per invocation, {} frames per block, window span {}{}{}",
            t.pixels_per_invocation,
            t.frames_per_block(),
            t.window_span,
            if t.element_split > 1 {
                format!(", element loop split {} ways", t.element_split)
            } else {
                String::new()
            },
            if t.f16_rows { ", f16 rows" } else { "" }
        ),
        tiling_label: tune::label(&t),
        rows: if t.f16_rows { "f16" } else { "f32" }.into(),
        cpu_s,
        gpu_over_cpu: cpu_s.map(|c| c / m.median_kernel_s),
        max_rel_err_vs_cpu: err,
        stages,
        stage_time_source: stage_source,
        sweeps,
        tuning,
        demod_tuning,
        roofline,
        host: host_description(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    println!("{}", report.table());
    if let Some(path) = &args.json {
        report.write_json(path)?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.csv {
        report.write_csv(path)?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.plot {
        report.write_svg(path)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(report)
}
