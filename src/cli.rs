//! The `sonoguide` command. `main.rs` only calls [`main`]; everything the
//! user can type is parsed and checked here, and every failure becomes one
//! message and a non-zero exit code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};

use crate::acquisition::{ChannelData, PixelGrid, ProbeKind};
use crate::gpu::GpuContext;
use crate::io;
use crate::pipeline::{
    Apodization, BeamformRequest, Beamformer, DasSettings, DemodSettings, DetectSettings,
    DisplayGrid, FNumber, Interp, Transmit,
};
use crate::reference::filter::FiltfiltConvention;

#[derive(Parser, Debug)]
#[command(
    name = "sonoguide",
    version,
    about = "GPU ultrasound imaging engine: channel data to B-mode with WGSL compute shaders"
)]
pub struct Cli {
    /// GPU backends to search: vulkan, gl, metal, dx12 (comma list). Default: WGPU_BACKEND, else all.
    #[arg(long, global = true)]
    pub backend: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Beamform a UFF (.uff/.h5) or MUST (.mat) dataset to IQ, envelope and a B-mode PNG.
    Beamform(BeamformArgs),
    /// Print what a dataset holds (probe, waves, sampling) without beamforming.
    Info { input: PathBuf },
    /// List the GPU adapters wgpu can see, and the one sonoguide would choose.
    Adapters,
    /// Render a scene's scripted needle insertion as B-mode PNGs with a JSON of landmark pixels per frame.
    Render {
        /// Scene file (TOML), e.g. scenes/hip-anterior-longitudinal.toml.
        scene: PathBuf,
        /// Frames over the insertion (skin to target).
        #[arg(long, default_value_t = 5)]
        frames: usize,
        /// Output folder (created if missing).
        #[arg(long, default_value = "render")]
        out: PathBuf,
        /// PNG height in pixels.
        #[arg(long, default_value_t = 480)]
        height: usize,
        /// Dynamic range of the B-mode, dB.
        #[arg(long, default_value_t = 60.0)]
        dynamic_range: f64,
        /// Also write frame_NNNN_labels.png: the tissue under every pixel.
        #[arg(long)]
        labels: bool,
    },
    /// Simulate RF channel data on the GPU (PyMUST simus physics) from a phantom scene, or for
    /// the acquisition of an existing file and a scatterer list; writes UFF.
    Simulate(crate::sim::command::SimulateArgs),
    /// Image quality as PICMUS measures it: FWHM and peak position of point targets, CNR and
    /// contrast of cysts, on an envelope or on channel data beamformed first.
    Metrics(crate::metrics::MetricsArgs),
    /// Benchmark the DAS kernel and the whole chain on mach's PWI_disk workload (sweeps with --sweep).
    Bench(crate::bench::BenchArgs),
    /// Stream frames through upload → demodulate → das → detect; report sustained frames/s and latency.
    Hfr(crate::bench::HfrArgs),
    /// The real-time display (the default): B-mode composited with the 3D needle and probe, in a
    /// window, or headless to a PNG when there is no display.
    View(ViewArgs),
    /// Render B-mode frames headless from tracked poses (OpenIGTLink from a PLUS Server, a
    /// recording, or the scripted insertion); send them as OpenIGTLink IMAGE messages, write
    /// PNGs and record the session. Set RUST_LOG=info to see connections and tool states.
    Run(crate::tracking::command::RunArgs),
    /// Serve B-mode frames as OpenIGTLink IMAGE messages (and the needle tip TRANSFORM) to
    /// clients such as 3D Slicer; poses from --tracking (default: the scripted insertion).
    ServeImages(crate::tracking::command::ServeArgs),
    /// Replay a PLUS sequence file (.mha/.nrrd, ours or PLUS's): render its poses, send/write
    /// the frames, and compare them with the recorded ones.
    Replay(crate::tracking::command::ReplayArgs),
    /// Simulate point targets and speckle, beamform them on the GPU and write a PNG.
    Demo {
        #[arg(long, default_value = "sonoguide-demo.png")]
        png: PathBuf,
    },
}

#[derive(Args, Debug, Clone)]
pub struct ViewArgs {
    /// Scene file (TOML).
    #[arg(default_value = crate::render::SCENES[0])]
    pub scene: PathBuf,
    /// Quality preset: `auto` (`quality` on a discrete GPU, `fast`
    /// elsewhere), `fast` (interactive on software Vulkan) or `quality`
    /// (128 channels × 3 waves, dense speckle).
    #[arg(long, default_value = "auto")]
    pub preset: String,
    /// Keep the tissue's simulated RF, and simulate only the needle, while
    /// the probe stays within this many mm of where the tissue was
    /// simulated (rotation counted at 20 mm per radian); -1: simulate
    /// the tissue for every image [default: 0.5].
    #[arg(long, allow_hyphen_values = true)]
    pub tissue_tolerance: Option<f64>,
    /// Once the probe has moved past the tolerance, simulate the tissue
    /// again behind the images over this many frames, each image adding
    /// its needle to the tissue kept until then; 0: the image simulates
    /// its tissue and waits for it [default: 8].
    #[arg(long)]
    pub renew_frames: Option<usize>,
    /// The simulator's receive: `direct` (an atomic per sample into the
    /// traces), `tiled` (neighbouring scatterers summed in workgroup
    /// memory first) or `auto` (direct on a CPU adapter, tiled on a GPU);
    /// the same image either way.
    #[arg(long, value_parser = ["auto", "direct", "tiled"], default_value = "auto")]
    pub receive: String,
    /// Render once, without a window, to this PNG.
    #[arg(long)]
    pub headless: Option<PathBuf>,
    /// Window (or PNG) size, WIDTHxHEIGHT.
    #[arg(long, default_value = "1280x720")]
    pub size: String,
    /// Quit after this many frames (0: run until closed). With --headless:
    /// run the frame loop for this many frames and write the last.
    #[arg(long, default_value_t = 0)]
    pub frames: u64,
    /// Print frames per second and stage times every N frames (0: never).
    #[arg(long, default_value_t = 0)]
    pub progress: u64,
    /// Start frozen: the image chain runs once, then only the composite
    /// (measures the compositor alone; F unfreezes).
    #[arg(long)]
    pub frozen: bool,
    /// Headless: time each stage on the host clock (submit, wait) instead of
    /// GPU timestamps, run the chain twice (the first compiles the pipelines)
    /// and report the second.
    #[arg(long, requires = "headless")]
    pub wall_clock: bool,
    /// Take the probe and needle poses from OpenIGTLink: igtl://HOST:PORT (client of a PLUS
    /// Server) or igtl-server://HOST:PORT (listen) [default: the scene's scripted insertion].
    #[arg(long, conflicts_with = "headless")]
    pub tracking: Option<String>,
    /// With --tracking: a tool silent for this long is shown as lost, seconds.
    #[arg(long, default_value_t = 0.5)]
    pub tracking_timeout: f64,
    /// Inject a fault to check the window's recovery: device-lost@FRAME,
    /// surface-lost@FRAME, surface-broken@FRAME, resize=WIDTHxHEIGHT@FRAME
    /// or minimize=MILLISECONDS@FRAME (repeatable).
    #[arg(long, conflicts_with = "headless")]
    pub fault: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct BeamformArgs {
    /// Channel data: USTB UFF (.uff, .h5, .hdf5) or MUST/PyMUST .mat (RF + param).
    pub input: PathBuf,
    /// Pixel positions: .npy float32/float64 [rows, cols, 2] of (x, z) in metres.
    #[arg(long, conflicts_with_all = ["grid", "polar"])]
    pub pixels: Option<PathBuf>,
    /// Cartesian grid x0:x1:nx,z0:z1:nz in metres (end points included).
    #[arg(long, conflicts_with = "polar", allow_hyphen_values = true)]
    pub grid: Option<String>,
    /// Polar grid r0:r1:nr,a0:a1:na (radius in metres, angle in degrees from +z) about the
    /// convex probe's centre of curvature (the origin for flat probes).
    #[arg(long, allow_hyphen_values = true)]
    pub polar: Option<String>,
    /// Receive F-number, `auto` (MUST's rule from element width and bandwidth) or `full` (whole aperture).
    #[arg(long, default_value = "auto", allow_hyphen_values = true)]
    pub fnumber: String,
    /// Receive apodization: boxcar, hann or tukey:A (A = taper fraction 0..1).
    #[arg(long, default_value = "boxcar")]
    pub apodization: String,
    /// Divide each wave's sum by the sum of its receive weights.
    #[arg(long)]
    pub normalize: bool,
    /// Transmit time: `must` (MUST's dasmtx: earliest arrival over virtual elements, edge waves
    /// on the flanks) or `analytic` (UFF wavefront; cheaper, equal inside the insonified zone).
    #[arg(long, default_value = "must")]
    pub transmit: String,
    /// Interpolation between samples: nearest, linear or cubic.
    #[arg(long, default_value = "linear")]
    pub interp: String,
    /// Frames to beamform: `all` or the first N.
    #[arg(long, default_value = "all")]
    pub frames: String,
    /// Waves to compound: `all` or a comma list of 0-based indices.
    #[arg(long, default_value = "all")]
    pub waves: String,
    /// Dynamic range of the B-mode, dB.
    #[arg(long, default_value_t = 40.0)]
    pub dynamic_range: f64,
    /// Gain applied to the envelope before compression, dB (matters with --reference).
    #[arg(long, default_value_t = 0.0)]
    pub gain: f64,
    /// Fixed 0 dB envelope level instead of the maximum over all frames.
    #[arg(long)]
    pub reference: Option<f64>,
    /// RF demodulation low-pass bandwidth in percent of fc (default: the file's bandwidth).
    #[arg(long)]
    pub bandwidth: Option<f64>,
    /// Padding convention of the demodulation filtfilt: `scipy` (PyMUST) or `matlab` (MATLAB MUST).
    /// Default: matlab for .mat input, scipy otherwise.
    #[arg(long)]
    pub filtfilt: Option<String>,
    /// Write the beamformed IQ (complex64 [frames, rows, cols], coherent sum over waves, before detection).
    #[arg(long)]
    pub save_npy: Option<PathBuf>,
    /// Write the envelope (float32 [frames, rows, cols]).
    #[arg(long)]
    pub save_envelope: Option<PathBuf>,
    /// Write the B-mode grey levels (uint8 [frames, rows, cols]) as MUST's bmode would.
    #[arg(long)]
    pub save_bmode: Option<PathBuf>,
    /// Write the B-mode of the first frame as PNG (scan converted for polar grids).
    #[arg(long)]
    pub png: Option<PathBuf>,
    /// Run the whole chain this many times and report the median (the first
    /// run compiles the pipelines and is not counted when N > 1).
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
}

/// A user-facing failure: the message says what was wrong and what to do.
#[derive(Debug)]
pub struct CliError(pub String);

impl<E: std::error::Error> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError(e.to_string())
    }
}

fn fail(msg: impl Into<String>) -> CliError {
    CliError(msg.into())
}

pub fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
    }
}

pub fn run(cli: Cli) -> Result<(), CliError> {
    let default = || Command::View(ViewArgs::defaults());
    match cli.command.unwrap_or_else(default) {
        Command::View(args) => view(&args, cli.backend.as_deref()),
        Command::Beamform(args) => beamform(&args, cli.backend.as_deref()),
        Command::Info { input } => {
            let data = load(&input)?;
            print!("{}", describe(&input, &data));
            Ok(())
        }
        Command::Adapters => adapters(cli.backend.as_deref()),
        Command::Demo { png } => demo(&png, cli.backend.as_deref()),
        Command::Bench(args) => crate::bench::bench(&args, cli.backend.as_deref())
            .map(|_| ())
            .map_err(CliError::from),
        Command::Hfr(args) => crate::bench::hfr(&args, cli.backend.as_deref())
            .map(|_| ())
            .map_err(CliError::from),
        Command::Simulate(args) => crate::sim::command::run(&args, cli.backend.as_deref()),
        Command::Metrics(args) => crate::metrics::run(&args, cli.backend.as_deref()),
        Command::Run(args) => crate::tracking::command::run(&args, None, cli.backend.as_deref()),
        Command::ServeImages(args) => {
            crate::tracking::command::serve(&args, cli.backend.as_deref())
        }
        Command::Replay(args) => crate::tracking::command::replay(&args, cli.backend.as_deref()),
        Command::Render {
            scene,
            frames,
            out,
            height,
            dynamic_range,
            labels,
        } => render(
            &scene,
            frames,
            &out,
            height,
            dynamic_range,
            labels,
            cli.backend.as_deref(),
        ),
    }
}

#[derive(Parser, Debug)]
struct ViewOnly {
    #[command(flatten)]
    args: ViewArgs,
}

impl ViewArgs {
    /// `sonoguide view` with nothing given: the defaults stay in the
    /// attributes above, in one place.
    fn defaults() -> ViewArgs {
        ViewOnly::parse_from(["view"]).args
    }
}

/// `sonoguide view` (and the default command): the window, or the same
/// view headless to a PNG when there is no display.
fn view(args: &ViewArgs, backend: Option<&str>) -> Result<(), CliError> {
    use crate::render::window::{run as run_window, WindowError, WindowOptions};
    let mut preset = crate::render::Preset::parse(&args.preset).map_err(fail)?;
    if let Some(mm) = args.tissue_tolerance {
        if !(mm.is_finite() && (mm >= 0.0 || mm == -1.0)) {
            return Err(fail(format!(
                "--tissue-tolerance {mm}: expected a distance in mm (0 or more), or -1 to simulate the tissue for every image"
            )));
        }
        preset.tissue_tolerance = mm * 1e-3;
    }
    if let Some(n) = args.renew_frames {
        preset.renew_frames = n;
    }
    preset.receive = crate::pipeline::simulate::Receive::parse(&args.receive);
    let size = args
        .size
        .split_once('x')
        .and_then(|(w, h)| Some((w.trim().parse::<u32>().ok()?, h.trim().parse::<u32>().ok()?)))
        .filter(|(w, h)| (64..=8192).contains(w) && (64..=8192).contains(h))
        .ok_or_else(|| {
            fail(format!(
                "--size {}: expected WIDTHxHEIGHT, e.g. 1280x720 (64 to 8192 each)",
                args.size
            ))
        })?;
    if !crate::scene::available(&args.scene) {
        let names: Vec<&str> = crate::scene::BUILTIN.iter().map(|(n, _)| *n).collect();
        return Err(fail(format!(
            "{}: no such scene file (give a path to a scene TOML, or one of the built-in scenes: {})",
            args.scene.display(),
            names.join(", ")
        )));
    }
    if let Some(url) = &args.tracking {
        if crate::tracking::endpoint::Mode::parse(url).is_none() {
            return Err(fail(format!("--tracking {url}: expected igtl://HOST:PORT (a PLUS Server) or igtl-server://HOST:PORT (listen)")));
        }
    }
    if !(args.tracking_timeout.is_finite() && args.tracking_timeout > 0.0) {
        return Err(fail(format!(
            "--tracking-timeout {}: expected a positive number of seconds",
            args.tracking_timeout
        )));
    }
    let faults = args
        .fault
        .iter()
        .map(|f| crate::render::window::Fault::parse(f))
        .collect::<Result<Vec<_>, _>>()
        .map_err(fail)?;
    // The headless frame is read back whole: its size against the adapter's
    // largest buffer, before any work.
    let fits = |ctx: &GpuContext| -> Result<(), CliError> {
        let bytes = size.0 as u64 * size.1 as u64 * 4;
        // (It passes through a storage binding, the tighter limit.)
        let limits = ctx.device.limits();
        let max = limits
            .max_buffer_size
            .min(limits.max_storage_buffer_binding_size);
        if bytes > max {
            return Err(fail(format!(
                "--size {}: a {}x{} frame is {bytes} bytes to read back, over this adapter's largest buffer ({max} bytes); give a smaller --size",
                args.size, size.0, size.1
            )));
        }
        Ok(())
    };
    let headless = |png: &Path| -> Result<(), CliError> {
        let ctx = GpuContext::new(backend)?;
        eprintln!("{}", ctx.describe());
        fits(&ctx)?;
        let (d, images) =
            crate::render::render_headless(&ctx, &args.scene, preset, size, png, args.wall_clock)
                .map_err(fail)?;
        let scatterers = d.info().map(|i| i.scatterers).unwrap_or(0);
        println!(
            "wrote {} ({}x{}, {} preset, {} receive, {scatterers} scatterers)",
            png.display(),
            size.0,
            size.1,
            d.preset.name,
            d.receive().name(),
        );
        for image in images {
            let mut times = vec![format!(
                "scatterers (CPU, worker thread) {:.1} ms, recording the chain (CPU) {:.1} ms",
                image.prepare_s * 1e3,
                image.record_s * 1e3
            )];
            times.extend(
                image
                    .stage_times
                    .iter()
                    .map(|(l, t)| format!("{l} {:.1} ms", t * 1e3)),
            );
            println!(
                "  image, {} ({}): {}",
                image.what,
                d.time_source,
                times.join(", ")
            );
        }
        Ok(())
    };
    let summary = |s: &crate::render::window::RunSummary| {
        let per_s = |n: u64| n as f64 / s.seconds.max(1e-9);
        println!(
            "{} frames in {:.1} s: {:.1} frames/s, {} B-mode images ({:.1} images/s; {} with the tissue simulated, the rest its needle only; {} tissue renewals behind the images)",
            s.frames,
            s.seconds,
            per_s(s.frames),
            s.images,
            per_s(s.images),
            s.tissue_images,
            s.renewals
        );
    };
    if let Some(png) = &args.headless {
        check_outputs(
            &[("scene", Some(&args.scene))],
            &[("--headless", Some(png))],
        )?;
        if args.frames == 0 {
            return headless(png);
        }
        if args.wall_clock {
            return Err(fail("--wall-clock times the stages of one frame; leave out --frames, or --wall-clock to run the frame loop".to_string()));
        }
        let ctx = GpuContext::new(backend)?;
        eprintln!("{}", ctx.describe());
        fits(&ctx)?;
        let s = crate::render::run_headless(
            &ctx,
            &args.scene,
            preset,
            size,
            png,
            args.frames,
            args.progress,
        )
        .map_err(fail)?;
        summary(&s);
        println!("wrote {} (the last frame)", png.display());
        return Ok(());
    }
    let opts = WindowOptions {
        scene: args.scene.clone(),
        preset,
        backend: backend.map(String::from),
        size,
        frames: (args.frames > 0).then_some(args.frames),
        progress_every: args.progress,
        frozen: args.frozen,
        tracking: args.tracking.clone(),
        tracking_timeout: args.tracking_timeout,
        faults,
    };
    match run_window(opts) {
        Ok(s) => {
            if s.frames > 0 {
                summary(&s);
            }
            Ok(())
        }
        Err(WindowError::NoDisplay(why)) if args.tracking.is_some() => Err(fail(format!("no display ({why}): --tracking drives the window; for tracked frames without one, use `sonoguide run --tracking ...`"))),
        Err(WindowError::NoDisplay(why)) => {
            let png = PathBuf::from("sonoguide-view.png");
            eprintln!("no display ({why}): rendering the same view headless to {}", png.display());
            headless(&png)
        }
        Err(WindowError::Failed(e)) => Err(fail(e)),
    }
}

/// Read channel data by extension (and by content for unknown extensions).
pub fn load(path: &Path) -> Result<ChannelData, CliError> {
    if !path.exists() {
        return Err(fail(format!("{}: no such file", path.display())));
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_lowercase();
    match ext.as_str() {
        "mat" => Ok(io::must::read_must(path)?),
        "uff" | "h5" | "hdf5" => Ok(io::uff::read_uff(path)?),
        _ => {
            let mut head = [0u8; 8];
            use std::io::Read;
            let n = std::fs::File::open(path)
                .and_then(|mut f| f.read(&mut head))
                .map_err(|e| fail(format!("{}: {e}", path.display())))?;
            if n >= 8 && &head == b"\x89HDF\r\n\x1a\n" {
                Ok(io::uff::read_uff(path)?)
            } else if n >= 6 && &head[..6] == b"MATLAB" {
                Ok(io::must::read_must(path)?)
            } else {
                Err(fail(format!(
                    "{}: not a UFF (HDF5) or MATLAB .mat file; expected .uff, .h5 or .mat",
                    path.display()
                )))
            }
        }
    }
}

pub fn describe(path: &Path, d: &ChannelData) -> String {
    let a = &d.acquisition;
    let kind = match &a.probe.kind {
        ProbeKind::Linear => "linear".to_string(),
        ProbeKind::Phased => "phased".to_string(),
        ProbeKind::Convex { radius, center } => format!(
            "convex, R = {:.2} mm, centre ({:.2}, {:.2}) mm",
            radius * 1e3,
            center[0] * 1e3,
            center[1] * 1e3
        ),
        ProbeKind::Generic => "generic".to_string(),
    };
    format!(
        "{}\n  probe: {} elements, {kind}, pitch {:.3} mm, width {:.3} mm\n  data: {} frames × {} waves × {} channels × {} samples, {}\n  fs {:.3} MHz, fc {:.3} MHz, bandwidth {:.0} %, c {} m/s, t0 {:.3} µs{}\n  waves: {}\n",
        path.display(),
        a.probe.len(),
        a.probe.pitch() * 1e3,
        a.probe.element_width() * 1e3,
        d.frames,
        d.waves,
        d.channels,
        d.samples,
        if d.is_iq() { format!("IQ at {:.3} MHz", a.modulation_frequency * 1e-6) } else { "RF".to_string() },
        a.sampling_frequency * 1e-6,
        a.center_frequency * 1e-6,
        a.bandwidth * 100.0,
        a.sound_speed,
        a.initial_time * 1e6,
        if a.prf > 0.0 { format!(", PRF {} Hz", a.prf) } else { String::new() },
        a.waves
            .iter()
            .map(|w| match &w.wavefront {
                crate::acquisition::Wavefront::Plane { azimuth } => format!("plane {:.1}°", azimuth.to_degrees()),
                crate::acquisition::Wavefront::Diverging { source } => format!("diverging from ({:.1}, {:.1}) mm", source.x * 1e3, source.z * 1e3),
                crate::acquisition::Wavefront::Focused { focus } => format!("focused at ({:.1}, {:.1}) mm", focus.x * 1e3, focus.z * 1e3),
            })
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn parse_range(s: &str, what: &str) -> Result<(f64, f64, usize), CliError> {
    let parts: Vec<&str> = s.split(':').collect();
    let bad = || {
        fail(format!(
            "{what} `{s}`: expected start:end:count, e.g. -0.0125:0.0125:251"
        ))
    };
    if parts.len() != 3 {
        return Err(bad());
    }
    let a: f64 = parts[0].trim().parse().map_err(|_| bad())?;
    let b: f64 = parts[1].trim().parse().map_err(|_| bad())?;
    let n: usize = parts[2].trim().parse().map_err(|_| bad())?;
    if !a.is_finite() || !b.is_finite() || n == 0 {
        return Err(bad());
    }
    if n > 8192 {
        return Err(fail(format!(
            "{what} `{s}`: {n} points along one axis is more than 8192"
        )));
    }
    Ok((a, b, n))
}

/// The pixel grid from `--pixels`, `--grid`, `--polar` or the default.
pub fn pixel_grid(args: &BeamformArgs, data: &ChannelData) -> Result<PixelGrid, CliError> {
    if let Some(path) = &args.pixels {
        return read_pixels(path);
    }
    if let Some(g) = &args.grid {
        let (xs, zs) = g.split_once(',').ok_or_else(|| {
            fail(format!(
                "--grid `{g}`: expected x0:x1:nx,z0:z1:nz in metres"
            ))
        })?;
        let (x0, x1, nx) = parse_range(xs, "--grid x")?;
        let (z0, z1, nz) = parse_range(zs, "--grid z")?;
        return Ok(PixelGrid::Cartesian {
            x: (x0, x1),
            z: (z0, z1),
            nx,
            nz,
        });
    }
    if let Some(g) = &args.polar {
        let (rs, as_) = g.split_once(',').ok_or_else(|| {
            fail(format!(
                "--polar `{g}`: expected r0:r1:nr,a0:a1:na (metres, degrees)"
            ))
        })?;
        let (r0, r1, nr) = parse_range(rs, "--polar radius")?;
        let (a0, a1, na) = parse_range(as_, "--polar angle")?;
        let origin = match data.acquisition.probe.kind {
            ProbeKind::Convex { center, .. } => center,
            _ => [0.0, 0.0],
        };
        return Ok(PixelGrid::Polar {
            origin,
            radius: (r0, r1),
            angle: (a0.to_radians(), a1.to_radians()),
            nr,
            na,
        });
    }
    Ok(PixelGrid::default_for(&data.acquisition, data.samples))
}

/// `--pixels FILE.npy`: float32/float64 [rows, cols, 2] of (x, z) metres.
pub fn read_pixels(path: &Path) -> Result<PixelGrid, CliError> {
    let arr =
        io::npy::read_npy(path).map_err(|e| fail(format!("--pixels {}: {e}", path.display())))?;
    let shape = arr.shape.clone();
    let (rows, cols) = match shape.as_slice() {
        [r, c, 2] => (*r, *c),
        [n, 2] => (1, *n),
        other => {
            return Err(fail(format!(
            "--pixels {}: array has shape {other:?}, expected [rows, cols, 2] of (x, z) in metres",
            path.display()
        )))
        }
    };
    // Integers (or complex numbers) are no positions in metres: refused by
    // type, not converted.
    if !matches!(arr.dtype, io::npy::NpyDtype::F32 | io::npy::NpyDtype::F64) {
        return Err(fail(format!(
            "--pixels {}: dtype {:?}: expected float32 or float64 positions in metres",
            path.display(),
            arr.dtype
        )));
    }
    let v = arr
        .to_f64()
        .map_err(|e| fail(format!("--pixels {}: {e}", path.display())))?;
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(fail(format!(
            "--pixels {}: value {i} is {}, expected finite positions in metres",
            path.display(),
            v[i]
        )));
    }
    let points = v.chunks_exact(2).map(|c| [c[0], c[1]]).collect();
    Ok(PixelGrid::List { rows, cols, points })
}

fn parse_settings(
    args: &BeamformArgs,
) -> Result<(DasSettings, DetectSettings, DemodSettings), CliError> {
    let fnumber = match args.fnumber.as_str() {
        "auto" => FNumber::Auto,
        "full" | "0" => FNumber::Full,
        s => match s.parse::<f64>() {
            Ok(f) if f.is_finite() && f > 0.0 => FNumber::Fixed(f),
            _ => {
                return Err(fail(format!(
                    "--fnumber `{s}`: expected a positive number, `auto`, or `full` (also 0) for the whole aperture"
                )))
            }
        },
    };
    let apodization = match args.apodization.as_str() {
        "boxcar" | "rect" | "none" => Apodization::Boxcar,
        "hann" | "hanning" => Apodization::Hann,
        s if s.starts_with("tukey") => {
            let a = match s.strip_prefix("tukey").unwrap_or("") {
                "" => 0.5,
                rest => rest
                    .strip_prefix(':')
                    .and_then(|v| v.parse::<f32>().ok())
                    .filter(|a| (0.0..=1.0).contains(a))
                    .ok_or_else(|| {
                        fail(format!(
                            "--apodization `{s}`: expected tukey:A with 0 <= A <= 1"
                        ))
                    })?,
            };
            Apodization::Tukey(a)
        }
        s => {
            return Err(fail(format!(
                "--apodization `{s}`: expected boxcar, hann or tukey:A"
            )))
        }
    };
    let interp = match args.interp.as_str() {
        "nearest" => Interp::Nearest,
        "linear" => Interp::Linear,
        "cubic" => Interp::Cubic,
        s => {
            return Err(fail(format!(
                "--interp `{s}`: expected nearest, linear or cubic"
            )))
        }
    };
    let transmit = match args.transmit.as_str() {
        "must" => Transmit::Must,
        "analytic" | "uff" => Transmit::Analytic,
        s => return Err(fail(format!("--transmit `{s}`: expected must or analytic"))),
    };
    if !(args.dynamic_range.is_finite() && args.dynamic_range > 0.0) {
        return Err(fail(format!(
            "--dynamic-range {}: expected a positive number of dB",
            args.dynamic_range
        )));
    }
    if let Some(r) = args.reference {
        if !(r.is_finite() && r > 0.0) {
            return Err(fail(format!(
                "--reference {r}: expected a positive envelope level"
            )));
        }
    }
    let is_mat = args
        .input
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.eq_ignore_ascii_case("mat"))
        .unwrap_or(false);
    let convention = match args.filtfilt.as_deref() {
        None if is_mat => FiltfiltConvention::Matlab,
        None | Some("scipy") => FiltfiltConvention::Scipy,
        Some("matlab") => FiltfiltConvention::Matlab,
        Some(s) => return Err(fail(format!("--filtfilt `{s}`: expected scipy or matlab"))),
    };
    if let Some(b) = args.bandwidth {
        if !(b.is_finite() && b > 0.0) {
            return Err(fail(format!(
                "--bandwidth {b}: expected a positive percentage"
            )));
        }
    }
    Ok((
        DasSettings {
            interp,
            apodization,
            fnumber,
            normalize: args.normalize,
            transmit,
        },
        DetectSettings {
            gain_db: args.gain,
            dynamic_range_db: args.dynamic_range,
            reference: args.reference,
        },
        DemodSettings {
            bandwidth_pct: args.bandwidth,
            convention,
            ..Default::default()
        },
    ))
}

fn select(args: &BeamformArgs, data: &mut ChannelData) -> Result<(), CliError> {
    if args.frames != "all" {
        let n: usize = args.frames.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
            fail(format!(
                "--frames `{}`: expected `all` or a positive count",
                args.frames
            ))
        })?;
        if n > data.frames {
            return Err(fail(format!(
                "--frames {n}: the file holds {} frames",
                data.frames
            )));
        }
        data.truncate_frames(n);
    }
    if args.waves != "all" {
        let keep: Vec<usize> = args
            .waves
            .split(',')
            .map(|w| w.trim().parse::<usize>())
            .collect::<Result<_, _>>()
            .map_err(|_| {
                fail(format!(
                    "--waves `{}`: expected `all` or a comma list of 0-based indices",
                    args.waves
                ))
            })?;
        if let Some(w) = keep
            .iter()
            .enumerate()
            .find(|(i, w)| keep[..*i].contains(w))
        {
            return Err(fail(format!(
                "--waves `{}`: wave {} is named twice; each wave may be compounded once",
                args.waves, w.1
            )));
        }
        data.select_waves(&keep)?;
    }
    Ok(())
}

/// The polar description of a grid, if it has one: a polar grid itself, or
/// a point list laid out on one about the convex probe's centre.
pub fn polar_of(grid: &PixelGrid, data: &ChannelData) -> Option<PixelGrid> {
    match grid {
        PixelGrid::Polar { .. } => Some(grid.clone()),
        PixelGrid::List { .. } => match data.acquisition.probe.kind {
            ProbeKind::Convex { center, .. } => grid.as_polar_about(center),
            _ => grid.as_polar_about([0.0, 0.0]),
        },
        PixelGrid::Cartesian { .. } => None,
    }
}

/// [`io::output::check_outputs`], as a command's error.
pub fn check_outputs(
    inputs: &[(&str, Option<&Path>)],
    outputs: &[(&str, Option<&Path>)],
) -> Result<(), CliError> {
    io::output::check_outputs(inputs, outputs).map_err(fail)
}

fn beamform(args: &BeamformArgs, backend: Option<&str>) -> Result<(), CliError> {
    if args.repeat == 0 {
        return Err(fail("--repeat 0: expected at least one run"));
    }
    let (das, detect, demod) = parse_settings(args)?;
    // Check every output path before any work, so that nothing is half done.
    check_outputs(
        &[("input", Some(&args.input))],
        &[
            ("--save-npy", args.save_npy.as_deref()),
            ("--save-envelope", args.save_envelope.as_deref()),
            ("--save-bmode", args.save_bmode.as_deref()),
            ("--png", args.png.as_deref()),
        ],
    )?;
    let mut data = load(&args.input)?;
    select(args, &mut data)?;
    let grid = pixel_grid(args, &data)?;
    grid.validate("pixels").map_err(|e| fail(format!("{e}")))?;
    // The demodulation filter from the file's bandwidth, checked before
    // the GPU starts (the chain would refuse it only after).
    if !data.is_iq() {
        crate::pipeline::demodulate::DemodPlan::new(&data.acquisition, &demod)
            .map_err(|e| fail(format!("{}: {e}", args.input.display())))?;
    }
    let ctx = GpuContext::new(backend)?;
    eprintln!("adapter: {}", ctx.describe());
    let polar = polar_of(&grid, &data);
    let display = match (&args.png, &polar) {
        (Some(_), Some(p)) => {
            DisplayGrid::covering(p, grid.rows().max(256)).map(|d| (p.clone(), d))
        }
        _ => None,
    };
    let req = BeamformRequest {
        das,
        demodulate: Some(demod),
        detect,
        read_iq: args.save_npy.is_some(),
        read_envelope: args.save_envelope.is_some(),
        read_grey: true,
        display,
    };
    let bf = Beamformer::new(&ctx);
    let mut times = Vec::new();
    let mut out = None;
    for _ in 0..args.repeat.max(1) + (args.repeat > 1) as usize {
        let t = Instant::now();
        out = Some(bf.run(&ctx, &data, &grid, &req)?);
        times.push(t.elapsed().as_secs_f64());
    }
    let out = out.expect("at least one run");
    if times.len() > 1 {
        times.remove(0);
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    eprintln!(
        "beamformed {} frame(s) × {} × {} pixels from {} waves × {} channels in {:.1} ms{} (F-number {:.4})",
        out.frames,
        out.rows,
        out.cols,
        data.waves,
        data.channels,
        median * 1e3,
        if times.len() > 1 { format!(" (median of {} warm runs, upload to readback)", times.len()) } else { String::new() },
        out.fnumber
    );
    let shape = [out.frames, out.rows, out.cols];
    if let (Some(p), Some(iq)) = (&args.save_npy, &out.iq) {
        io::npy::write_npy_c64(p, &shape, iq)?;
        eprintln!("wrote {} (IQ, complex64 {shape:?})", p.display());
    }
    if let (Some(p), Some(env)) = (&args.save_envelope, &out.envelope) {
        io::npy::write_npy_f32(p, &shape, env)?;
        eprintln!("wrote {} (envelope, float32 {shape:?})", p.display());
    }
    let grey = out.grey.as_deref().unwrap_or(&[]);
    if let Some(p) = &args.save_bmode {
        let bytes: Vec<u8> = grey.iter().map(|g| *g as u8).collect();
        io::npy::write_npy_u8(p, &shape, &bytes)?;
        eprintln!("wrote {} (B-mode, uint8 {shape:?})", p.display());
    }
    if let Some(p) = &args.png {
        match &out.display {
            Some(rgba) => io::png::write_rgba(p, out.display_size.0, out.display_size.1, rgba)?,
            None => {
                let first: Vec<u8> = grey[..out.rows * out.cols]
                    .iter()
                    .map(|g| *g as u8)
                    .collect();
                io::png::write_grey(p, out.cols, out.rows, &first)?;
            }
        }
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}

fn render(
    scene: &Path,
    frames: usize,
    out: &Path,
    height: usize,
    dynamic_range: f64,
    labels: bool,
    backend: Option<&str>,
) -> Result<(), CliError> {
    if frames == 0 || frames > 10_000 {
        return Err(fail(format!("--frames {frames}: expected 1 to 10000")));
    }
    if !(16..=4096).contains(&height) {
        return Err(fail(format!(
            "--height {height}: expected 16 to 4096 pixels"
        )));
    }
    // The settings the renderer checks, checked before the output folder
    // is made, so that a refused run leaves nothing behind.
    crate::pipeline::DetectSettings {
        dynamic_range_db: dynamic_range,
        ..Default::default()
    }
    .params(1)
    .map_err(|e| fail(e.to_string()))?;
    let scene = crate::scene::Scene::load(scene)?;
    std::fs::create_dir_all(out).map_err(|e| {
        fail(format!(
            "{}: cannot create the output folder: {e}",
            out.display()
        ))
    })?;
    let ctx = GpuContext::new(backend)?;
    eprintln!("adapter: {}", ctx.describe());
    let t = Instant::now();
    let infos =
        crate::scene::render::render(&ctx, &scene, frames, out, height, dynamic_range, labels)
            .map_err(fail)?;
    eprintln!(
        "rendered {} frames of {} ({} scatterers in the last) in {:.1} s into {}",
        infos.len(),
        scene.name,
        infos.last().map(|i| i.scatterers).unwrap_or(0),
        t.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

fn adapters(backend: Option<&str>) -> Result<(), CliError> {
    let backends = crate::gpu::backends_to_search(backend)?;
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends;
    let instance = wgpu::Instance::new(desc);
    for a in pollster::block_on(instance.enumerate_adapters(backends)) {
        let i = a.get_info();
        println!(
            "{:?}\t{:?}\t{}\t{} {}",
            i.backend, i.device_type, i.name, i.driver, i.driver_info
        );
    }
    let ctx = GpuContext::new(backend)?;
    println!("chosen: {}", ctx.describe());
    Ok(())
}

/// The built-in demo: a linear array, three plane waves, point targets and
/// speckle with a cyst, beamformed on the GPU.
fn demo(png: &Path, backend: Option<&str>) -> Result<(), CliError> {
    check_outputs(&[], &[("--png", Some(png))])?;
    use crate::acquisition::{Acquisition, Probe, Wave, Wavefront};
    let probe = Probe::linear(128, 0.3e-3, 0.27e-3, 5e-3);
    let c = 1540.0;
    let half = 63.5 * 0.3e-3;
    let waves = [-8.0f64, 0.0, 8.0]
        .iter()
        .map(|deg| {
            let a = deg.to_radians();
            Wave {
                wavefront: Wavefront::Plane { azimuth: a },
                delay: -(half * a.sin().abs()) / c,
            }
        })
        .collect();
    let acq = Acquisition {
        probe,
        waves,
        sampling_frequency: 4.0 * 5.2e6,
        initial_time: 0.0,
        modulation_frequency: 0.0,
        center_frequency: 5.2e6,
        bandwidth: 0.7,
        sound_speed: c,
        prf: 5000.0,
    };
    let scat = crate::sim::demo_phantom(7, (-0.015, 0.015), (0.005, 0.04), 20000);
    let data = crate::sim::point_echoes(&acq, &scat, 1200, 1);
    let grid = PixelGrid::Cartesian {
        x: (-0.018, 0.018),
        z: (0.003, 0.042),
        nx: 300,
        nz: 325,
    };
    let ctx = GpuContext::new(backend)?;
    eprintln!("adapter: {}", ctx.describe());
    let bf = Beamformer::new(&ctx);
    let req = BeamformRequest {
        read_iq: false,
        read_envelope: false,
        ..Default::default()
    };
    let t = Instant::now();
    let out = bf.run(&ctx, &data, &grid, &req)?;
    eprintln!(
        "demo: 3 plane waves × 128 channels onto 300 × 325 pixels in {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let grey: Vec<u8> = out
        .grey
        .unwrap_or_default()
        .iter()
        .map(|g| *g as u8)
        .collect();
    io::png::write_grey(png, out.cols, out.rows, &grey)?;
    eprintln!(
        "wrote {} (try `sonoguide beamform FILE.uff --png out.png` on your own data)",
        png.display()
    );
    Ok(())
}
