//! `sonoguide run`, `serve-images` and `replay`: arguments and checks.
//! `cli.rs` only dispatches here.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use log::info;

use super::endpoint::{Endpoint, EndpointConfig, Mode};
use super::run::{self, Headless, Limits, Outputs, Sink};
use super::{PoseSource, RecordedSource, ScriptedSource, ToolNames, TrackingError};
use crate::cli::CliError;
use crate::gpu::GpuContext;
use crate::io::metafile::Recording;
use crate::scene::pose::Pose;
use crate::scene::Scene;

/// How frames are made and where they go (shared by the three commands).
#[derive(Args, Debug, Clone)]
pub struct FrameArgs {
    /// Scene file (TOML): anatomy, probe, needle and the default probe placement.
    #[arg(long, default_value = "scenes/hip-anterior-longitudinal.toml")]
    pub scene: PathBuf,
    /// Image height in pixels (small by default: software GPUs take ~0.5 s a frame at 120).
    #[arg(long, default_value_t = run::DEFAULT_HEIGHT)]
    pub height: usize,
    /// Speckle scatterers per mm³ (the scenes use 6; 0.05 keeps software GPUs interactive).
    #[arg(long, default_value_t = run::DEFAULT_DENSITY_PER_MM3)]
    pub density: f64,
    /// Transmitted waves per frame, taken evenly from the scene's (1: the centre wave; cost grows with it).
    #[arg(long, default_value_t = 1)]
    pub waves: usize,
    /// Dynamic range of the B-mode, dB.
    #[arg(long, default_value_t = 60.0)]
    pub dynamic_range: f64,
    /// PLUS transform name of the probe.
    #[arg(long, default_value = "ProbeToReference")]
    pub probe_transform: String,
    /// PLUS transform name of the needle.
    #[arg(long, default_value = "NeedleToReference")]
    pub needle_transform: String,
    /// Also serve IMAGE and needle-tip TRANSFORM messages to OpenIGTLink clients (e.g. 3D Slicer) on this port.
    #[arg(long)]
    pub serve_port: Option<u16>,
    /// Address the servers listen on; anything but loopback exposes them to the network.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// Write frame_NNNN.png and frame_NNNN.json (landmarks, tool states, image-to-reference matrix) here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Record the session as a PLUS sequence file (.mha or .nrrd), written when the run ends.
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Store the frames' pixels in the recording too (default: poses only).
    #[arg(long)]
    pub record_images: bool,
    /// OpenIGTLink device name of the IMAGE messages.
    #[arg(long, default_value = "Image_Reference")]
    pub image_device: String,
    /// OpenIGTLink device name of the needle tip TRANSFORM.
    #[arg(long, default_value = "NeedleTipToReference")]
    pub tip_device: String,
    /// OpenIGTLink header version to send before a peer has spoken: 1 (OpenIGTLink 1–2) or 2 (OpenIGTLink 3, with metadata).
    #[arg(long, default_value_t = 2)]
    pub igtl_version: u16,
    /// Frames per second at most.
    #[arg(long, default_value_t = 10.0)]
    pub fps: f64,
}

#[derive(Args, Debug, Clone)]
#[command(
    after_help = "Ctrl-C (SIGINT) or SIGTERM stops the run after the frame being made: the recording is written, and the exit status is 0. A second Ctrl-C or SIGTERM ends the process at once, with status 130 and no recording."
)]
pub struct RunArgs {
    /// Pose source: igtl://HOST:PORT (client of a PLUS Server), igtl-server://HOST:PORT
    /// (listen for OpenIGTLink clients), `scripted` (the scene's insertion), or a recording FILE.mha/.nrrd.
    #[arg(long, default_value = "scripted")]
    pub tracking: String,
    /// A tool whose newest valid pose is older than this is lost, seconds.
    #[arg(long, default_value_t = 0.5)]
    pub timeout: f64,
    /// With igtl://: do not send IMAGE and tip TRANSFORM messages back to the tracking server
    /// (a PLUS Server has no use for them; 3D Slicer as a server does).
    #[arg(long)]
    pub no_images_to_tracker: bool,
    /// Stop after this many frames.
    #[arg(long)]
    pub frames: Option<usize>,
    /// Stop after this many seconds.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Stop cleanly (writing the recording) when standard input reaches its end or reads a
    /// line `q`: for runs driven by another program.
    #[arg(long)]
    pub stdin_control: bool,
    #[command(flatten)]
    pub frame: FrameArgs,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Port to serve IMAGE messages on (OpenIGTLink's usual port is 18944).
    #[arg(long, default_value_t = 18944)]
    pub port: u16,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Args, Debug, Clone)]
#[command(
    after_help = "Ctrl-C (SIGINT) or SIGTERM stops the replay after the frame being made: what was made is written, and the exit status is 0. A second Ctrl-C or SIGTERM ends the process at once, with status 130."
)]
pub struct ReplayArgs {
    /// A PLUS sequence file (.mha / .nrrd): ours, or a PLUS recording with --probe-transform etc.
    pub file: PathBuf,
    /// Map the recording's reference frame into the scene: 16 numbers, row-major, mm.
    #[arg(long, allow_hyphen_values = true)]
    pub reference_to_scene: Option<String>,
    /// Replay only this many frames (after --skip).
    #[arg(long)]
    pub frames: Option<usize>,
    /// Skip this many frames at the start of the recording.
    #[arg(long, default_value_t = 0)]
    pub skip: usize,
    /// Fail unless every recorded frame is reproduced bit-exactly (needs --record-images recordings and the same --height/--density).
    #[arg(long)]
    pub check: bool,
    #[command(flatten)]
    pub frame: FrameArgs,
}

fn fail(msg: impl Into<String>) -> CliError {
    CliError(msg.into())
}

fn outputs(a: &FrameArgs) -> Outputs {
    Outputs {
        out_dir: a.out.clone(),
        record: a.record.clone(),
        record_images: a.record_images,
        image_device: a.image_device.clone(),
        tip_device: a.tip_device.clone(),
        names: ToolNames {
            probe: a.probe_transform.clone(),
            needle: a.needle_transform.clone(),
        },
    }
}

fn check(a: &FrameArgs) -> Result<(), CliError> {
    if !(16..=2048).contains(&a.height) {
        return Err(fail(format!(
            "--height {}: expected 16 to 2048 pixels",
            a.height
        )));
    }
    if !(a.density.is_finite() && a.density > 0.0 && a.density <= 50.0) {
        return Err(fail(format!(
            "--density {}: expected 0 < scatterers/mm³ <= 50",
            a.density
        )));
    }
    if !(1..=64).contains(&a.waves) {
        return Err(fail(format!("--waves {}: expected 1 to 64", a.waves)));
    }
    if !(a.fps.is_finite() && a.fps >= 0.0) {
        return Err(fail(format!(
            "--fps {}: expected a non-negative number (0: as fast as possible)",
            a.fps
        )));
    }
    if !(1..=2).contains(&a.igtl_version) {
        return Err(fail(format!(
            "--igtl-version {}: expected 1 or 2",
            a.igtl_version
        )));
    }
    for (flag, v) in [
        ("--image-device", &a.image_device),
        ("--tip-device", &a.tip_device),
        ("--probe-transform", &a.probe_transform),
        ("--needle-transform", &a.needle_transform),
    ] {
        if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(fail(format!("{flag} `{v}`: expected 1 to 20 printable ASCII characters without spaces (an OpenIGTLink device name)")));
        }
    }
    outputs(a).check()?;
    Ok(())
}

fn endpoint_config(a: &FrameArgs, timeout: f64) -> EndpointConfig {
    EndpointConfig {
        names: ToolNames {
            probe: a.probe_transform.clone(),
            needle: a.needle_transform.clone(),
        },
        timeout,
        send_version: a.igtl_version,
        ..Default::default()
    }
}

/// The GPU and the renderer of `scene` (loaded by the caller, which
/// checks its arguments against it before the GPU starts).
fn headless(a: &FrameArgs, scene: &Scene, backend: Option<&str>) -> Result<Headless, CliError> {
    let ctx = GpuContext::new(backend)?;
    eprintln!("adapter: {}", ctx.describe());
    Ok(Headless::new(
        ctx,
        scene.clone(),
        a.height,
        a.dynamic_range,
        Some(a.density),
        Some(a.waves),
    ))
}

/// The image server on `--bind`:`port`; `port_flag` set the port.
fn server(
    a: &FrameArgs,
    port: u16,
    port_flag: &'static str,
    timeout: f64,
    fallback: Pose,
) -> Result<Endpoint, CliError> {
    let e = Endpoint::start(
        Mode::Server(format!("{}:{port}", a.bind)),
        endpoint_config(a, timeout),
        fallback,
    )
    .map_err(|e| e.bind_flags(port_flag, "--bind"))?;
    eprintln!(
        "serving OpenIGTLink images on {}",
        e.local_addr.map(|x| x.to_string()).unwrap_or_default()
    );
    Ok(e)
}

/// `sonoguide run` (and `serve-images` with `serve_port`).
pub fn run(a: &RunArgs, serve_port: Option<u16>, backend: Option<&str>) -> Result<(), CliError> {
    check(&a.frame)?;
    // A recording replayed as the pose source must not be recorded over.
    crate::cli::check_outputs(
        &[(
            "--tracking recording",
            Some(std::path::Path::new(&a.tracking)),
        )],
        &[("--record", a.frame.record.as_deref())],
    )?;
    if a.frames == Some(0) {
        return Err(fail(
            "--frames 0: expected 1 frame or more (leave it out to run until --duration, the end of the poses or Ctrl-C)",
        ));
    }
    if let Some(d) = a.duration.filter(|d| !(d.is_finite() && *d > 0.0)) {
        return Err(fail(format!(
            "--duration {d}: expected a positive number of seconds"
        )));
    }
    if !(a.timeout.is_finite() && a.timeout > 0.0) {
        return Err(fail(format!(
            "--timeout {}: expected a positive number of seconds",
            a.timeout
        )));
    }
    // Everything the user typed is checked before the GPU starts.
    let names = ToolNames {
        probe: a.frame.probe_transform.clone(),
        needle: a.frame.needle_transform.clone(),
    };
    let scene = Scene::load(&a.frame.scene)?;
    let fallback = scene.probe_to_reference;
    let mut live_endpoint: Option<Endpoint> = None;
    let mut other: Option<Box<dyn PoseSource>> = None;
    match a.tracking.as_str() {
        "scripted" => other = Some(Box::new(ScriptedSource::new(scene.clone()))),
        url if url.contains("://") => {
            let mode = Mode::parse(url).ok_or_else(|| TrackingError::BadUrl(url.into()))?;
            live_endpoint = Some(
                Endpoint::start(mode, endpoint_config(&a.frame, a.timeout), fallback).map_err(
                    |e| e.bind_flags("--tracking igtl-server://HOST:PORT", "--tracking"),
                )?,
            );
        }
        file => {
            let path = std::path::Path::new(file);
            if !path.exists() {
                // A name that looks like a recording is a wrong path, not
                // a wrong kind of source.
                let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
                return Err(
                    if ext.eq_ignore_ascii_case("mha") || ext.eq_ignore_ascii_case("nrrd") {
                        TrackingError::NoRecording(path.into())
                    } else {
                        TrackingError::BadUrl(file.into())
                    }
                    .into(),
                );
            }
            let rec = Recording::read(path)?;
            other = Some(Box::new(RecordedSource::new(
                &rec,
                &names,
                Pose::IDENTITY,
                fallback,
                a.timeout,
            )?));
        }
    }
    // serve-images' own --port comes first.
    let image_server = match (serve_port, a.frame.serve_port) {
        (Some(p), _) => Some(server(&a.frame, p, "--port", a.timeout, fallback)?),
        (None, Some(p)) => Some(server(&a.frame, p, "--serve-port", a.timeout, fallback)?),
        (None, None) => None,
    };
    let h = headless(&a.frame, &scene, backend)?;
    let mut endpoints: Vec<&Endpoint> = Vec::new();
    endpoints.extend(
        live_endpoint
            .as_ref()
            .filter(|e| !(a.no_images_to_tracker && matches!(e.mode, Mode::Client(_)))),
    );
    endpoints.extend(image_server.as_ref());
    let mut sink = Sink::new(outputs(&a.frame), endpoints, &h);
    // Registered only now: a Ctrl-C while the GPU starts has nothing to
    // save and still ends the process at once.
    let signalled = stop_on_signals()?;
    let mut stop = vec![signalled.clone()];
    stop.extend(a.stdin_control.then(|| {
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let f = flag.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            while std::io::stdin()
                .read_line(&mut line)
                .map(|n| n > 0)
                .unwrap_or(false)
                && line.trim() != "q"
            {
                line.clear();
            }
            f.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        flag
    }));
    let limits = Limits {
        frames: a.frames,
        duration: a.duration,
        fps: a.frame.fps,
        stop,
    };
    let mut igtl_source = live_endpoint.as_ref().map(|e| e.source());
    let source: &mut dyn PoseSource = match (&mut igtl_source, &mut other) {
        (Some(e), _) => e,
        (None, Some(o)) => o.as_mut(),
        (None, None) => unreachable!("a source was chosen above"),
    };
    // An error after some frames (a full disk, a GPU lost) keeps the
    // recording of those frames.
    let n = match run::live(&h, source, &mut sink, limits) {
        Ok(n) => n,
        Err(e) => return Err(sink.salvage(e).into()),
    };
    if signalled.load(std::sync::atomic::Ordering::SeqCst) {
        eprintln!("stopped by a signal (Ctrl-C or SIGTERM) after {n} frames");
    }
    // Let the last frames leave the queues before the sockets close.
    std::thread::sleep(Duration::from_millis(200));
    if let Some(p) = sink.finish()? {
        eprintln!("recorded {n} frames into {}", p.display());
    }
    for e in live_endpoint.iter().chain(image_server.iter()) {
        let s = e.stats();
        info!("{:?}: {} connection(s), {} message(s) in, {} rejected, {} sent, {} dropped for slow readers", e.mode, s.connections, s.messages, s.rejected, s.sent, s.dropped_out);
    }
    eprintln!("made {n} frames of {}", scene.name);
    Ok(())
}

/// Ctrl-C (SIGINT) and SIGTERM set the returned flag, which ends the frame
/// loop before its next frame as --stdin-control's `q` does, so that the
/// recording is written; the default action would lose it. A second one
/// (the flag already set) exits at once with 130 (128 + SIGINT), for a
/// stop that hangs.
fn stop_on_signals() -> Result<std::sync::Arc<std::sync::atomic::AtomicBool>, CliError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        // The shutdown first, so that it sees the flag as the previous
        // signal left it.
        signal_hook::flag::register_conditional_shutdown(sig, 130, flag.clone())
            .and_then(|_| signal_hook::flag::register(sig, flag.clone()))
            .map_err(|e| fail(format!("cannot handle Ctrl-C and SIGTERM: {e}")))?;
    }
    Ok(flag)
}

/// `sonoguide serve-images`.
pub fn serve(a: &ServeArgs, backend: Option<&str>) -> Result<(), CliError> {
    run(&a.run, Some(a.port), backend)
}

fn parse_matrix(s: &str) -> Result<Pose, CliError> {
    let v: Vec<f64> = s
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|x| !x.is_empty())
        .map(|x| x.parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| fail(format!("--reference-to-scene `{s}`: expected 16 numbers")))?;
    if v.len() != 16 {
        return Err(fail(format!(
            "--reference-to-scene: {} numbers, expected 16 (a row-major 4×4 rigid transform in mm)",
            v.len()
        )));
    }
    let mut m = [[0.0; 4]; 4];
    for (i, x) in v.iter().enumerate() {
        m[i / 4][i % 4] = *x;
    }
    Pose::from_matrix_mm(&m).map_err(|e| fail(format!("--reference-to-scene: {e}")))
}

/// `sonoguide replay`.
pub fn replay(a: &ReplayArgs, backend: Option<&str>) -> Result<(), CliError> {
    check(&a.frame)?;
    // Recording over the file being replayed would lose it.
    crate::cli::check_outputs(
        &[("recording replayed", Some(&a.file))],
        &[("--record", a.frame.record.as_deref())],
    )?;
    if a.frames == Some(0) {
        return Err(fail(
            "--frames 0: expected 1 frame or more (leave it out to replay them all)",
        ));
    }
    let reference_to_scene = a
        .reference_to_scene
        .as_deref()
        .map(parse_matrix)
        .transpose()?;
    let mut rec = Recording::read(&a.file)?;
    if a.skip >= rec.frames.len() {
        return Err(fail(format!(
            "--skip {}: {} has {} frames",
            a.skip,
            a.file.display(),
            rec.frames.len()
        )));
    }
    rec.frames.drain(..a.skip);
    rec.frames.truncate(a.frames.unwrap_or(usize::MAX));
    let names = ToolNames {
        probe: a.frame.probe_transform.clone(),
        needle: a.frame.needle_transform.clone(),
    };
    super::check_tools(&rec, &names)?;
    if a.check && !rec.has_images() {
        return Err(fail(format!(
            "--check: {} holds poses only; record with --record-images to compare frames",
            a.file.display()
        )));
    }
    let scene = Scene::load(&a.frame.scene)?;
    if a.check {
        // Frames of another size cannot be compared: refuse before the
        // GPU starts rather than compare none.
        let display = crate::scene::render::View::new(&scene, a.frame.height).display;
        if (display.width, display.height) != (rec.width, rec.height) {
            return Err(fail(format!(
                "--check: the images in {} are {}×{} px, but {} at --height {} makes {}×{}: --check needs the recording's size (replay with the scene and --height it was recorded with)",
                a.file.display(),
                rec.width,
                rec.height,
                a.frame.scene.display(),
                a.frame.height,
                display.width,
                display.height
            )));
        }
    }
    let h = headless(&a.frame, &scene, backend)?;
    let image_server = a
        .frame
        .serve_port
        .map(|p| server(&a.frame, p, "--serve-port", 0.5, scene.probe_to_reference))
        .transpose()?;
    let mut sink = Sink::new(outputs(&a.frame), image_server.iter().collect(), &h);
    // As in `run`: Ctrl-C or SIGTERM ends the replay after the frame being
    // made, and what was made is written.
    let signalled = stop_on_signals()?;
    let cmp = match run::replay(
        &h,
        &rec,
        &names,
        reference_to_scene.as_ref(),
        &mut sink,
        a.frame.fps,
        &signalled,
    ) {
        Ok(c) => c,
        Err(e) => return Err(sink.salvage(e).into()),
    };
    if signalled.load(std::sync::atomic::Ordering::SeqCst) {
        eprintln!(
            "stopped by a signal (Ctrl-C or SIGTERM) after {} of {} frames",
            cmp.frames,
            rec.frames.len()
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    sink.finish()?;
    eprintln!(
        "replayed {} frames of {} from {}",
        rec.frames.len(),
        scene.name,
        a.file.display()
    );
    if cmp.compared > 0 {
        eprintln!(
            "{} of {} recorded frames reproduced bit-exactly (largest grey-level difference {})",
            cmp.identical, cmp.compared, cmp.max_abs_diff
        );
    }
    if a.check && (cmp.compared == 0 || cmp.identical != cmp.compared) {
        return Err(fail(format!(
            "--check: {} of {} frames differ from the recording (largest grey-level difference {}); same adapter, --height and --density as the recording?",
            cmp.compared - cmp.identical,
            cmp.compared,
            cmp.max_abs_diff
        )));
    }
    Ok(())
}
