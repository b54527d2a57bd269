//! `sonoguide simulate`: a phantom scene, or an existing acquisition and a
//! scatterer file, to UFF channel data. `cli.rs` only dispatches here.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use glam::DVec3;

use super::phantom::PhantomScene;
use super::{Baffle, Elevation, Noise, Pulse, Scatterer, SimSettings};
use crate::cli::CliError;
use crate::gpu::timing::{Fallback, GpuTimer};
use crate::gpu::GpuContext;
use crate::io;
use crate::pipeline::simulate::{to_rows, Receive, SimPlan, Simulate};

#[derive(Args, Debug, Clone)]
pub struct SimulateArgs {
    /// Phantom scene (TOML), e.g. scenes/phantom-picmus.toml.
    #[arg(
        required_unless_present = "acquisition",
        conflicts_with = "acquisition"
    )]
    pub scene: Option<PathBuf>,
    /// Simulate exactly the acquisition of this UFF (or MUST .mat) file: its probe, waves,
    /// sampling frequency, initial time, sound speed and number of samples.
    #[arg(long, requires = "scatterers")]
    pub acquisition: Option<PathBuf>,
    /// Scatterers for --acquisition: float32 little-endian [n, 4] = x, y, z, amplitude (metres),
    /// raw (any extension) or .npy (float32 or float64).
    #[arg(long, requires = "acquisition")]
    pub scatterers: Option<PathBuf>,
    /// Output UFF file (written atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Pulse-echo -6 dB bandwidth, percent [default: the scene's or the file's; 75 if the file has none].
    #[arg(long)]
    pub bandwidth: Option<f64>,
    /// Centre frequency, Hz [default: the scene's or the file's].
    #[arg(long)]
    pub center_frequency: Option<f64>,
    /// Element height, metres; turns on the 3-D elevation model [default: the scene's; for
    /// --acquisition none, i.e. simus's 2-D model that ignores y].
    #[arg(long)]
    pub element_height: Option<f64>,
    /// Elevation focus, metres [default: the scene's; for --acquisition unfocused].
    #[arg(long)]
    pub elevation_focus: Option<f64>,
    /// Attenuation, dB/cm/MHz [default: the scene's; for --acquisition 0].
    #[arg(long)]
    pub attenuation: Option<f64>,
    /// Baffle: soft, rigid, or an impedance ratio > 0 [default: soft].
    #[arg(long)]
    pub baffle: Option<String>,
    /// Cycles of the transmitted sine [default: 1].
    #[arg(long)]
    pub cycles: Option<f64>,
    /// Segments per element [default: ceil(width / shortest wavelength)].
    #[arg(long)]
    pub segments: Option<usize>,
    /// Transmit arrivals kept after the wavefront, periods of fc, or `all` (every edge wave and
    /// grating lobe, as simus) [default: all; 4 is 6–7× faster on 128 elements and drops that clutter].
    #[arg(long)]
    pub tx_window: Option<String>,
    /// Add white Gaussian noise of this RMS relative to the peak |RF|, dB (e.g. -50) [default: none].
    #[arg(long, allow_hyphen_values = true)]
    pub noise: Option<f64>,
    /// Seed of the noise (the scene's phantom has its own seed) [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Frames to write (they differ only by their noise) [default: 1].
    #[arg(long)]
    pub frames: Option<usize>,
    /// Run the CPU twin (reference::simulate, on every core) instead of the GPU stage.
    #[arg(long)]
    pub cpu: bool,
    /// Also write the scene's scatterers as float32 [n, 4] (x, y, z, amplitude).
    #[arg(long)]
    pub save_scatterers: Option<PathBuf>,
    /// Simulate N times and report the median time (the first run compiles the pipelines
    /// and is not counted when N > 1).
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// How the GPU adds the echoes into the traces: `direct` (an atomic per sample) or `tiled`
    /// (neighbouring scatterers summed in workgroup memory first); the same RF either way.
    /// `auto`: direct on a CPU adapter, tiled on a GPU.
    #[arg(long, value_parser = ["auto", "direct", "tiled"], default_value = "auto")]
    pub receive: String,
}

fn fail(msg: impl Into<String>) -> CliError {
    CliError(msg.into())
}

/// Read scatterers: `.npy` [n, 4] of float32/float64, else raw float32 LE [n, 4].
pub fn read_scatterers(path: &Path) -> Result<Vec<Scatterer>, CliError> {
    let is_npy = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.eq_ignore_ascii_case("npy"))
        .unwrap_or(false);
    let values: Vec<f64> = if is_npy {
        let arr = io::npy::read_npy(path)
            .map_err(|e| fail(format!("--scatterers {}: {e}", path.display())))?;
        if arr.shape.len() != 2 || arr.shape[1] != 4 {
            return Err(fail(format!(
                "--scatterers {}: shape {:?}, expected [n, 4] = x, y, z, amplitude",
                path.display(),
                arr.shape
            )));
        }
        arr.to_f64().map_err(|e| {
            fail(format!(
                "--scatterers {}: {e}; expected float32 or float64",
                path.display()
            ))
        })?
    } else {
        let bytes = std::fs::read(path)
            .map_err(|e| fail(format!("--scatterers {}: {e}", path.display())))?;
        if bytes.len() % 16 != 0 {
            return Err(fail(format!(
                "--scatterers {}: {} bytes is not a whole number of rows of 4 float32 (16 bytes); expected float32 LE [n, 4]",
                path.display(),
                bytes.len()
            )));
        }
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
            .collect()
    };
    if values.is_empty() {
        return Err(fail(format!(
            "--scatterers {}: no scatterers in the file",
            path.display()
        )));
    }
    let scatterers: Vec<Scatterer> = values
        .chunks_exact(4)
        .map(|v| Scatterer {
            position: DVec3::new(v[0], v[1], v[2]),
            amplitude: v[3],
        })
        .collect();
    super::validate_scatterers(&scatterers)
        .map_err(|e| fail(format!("--scatterers {}: {e}", path.display())))?;
    Ok(scatterers)
}

pub fn write_scatterers(path: &Path, scatterers: &[Scatterer]) -> Result<(), CliError> {
    let bytes: Vec<u8> = to_rows(scatterers)
        .iter()
        .flatten()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(path, bytes).map_err(|e| fail(format!("{}: {e}", path.display())))
}

/// Apply the physics options on top of `s`.
fn apply_options(a: &SimulateArgs, s: &mut SimSettings) -> Result<(), CliError> {
    if let Some(b) = a.bandwidth {
        if !(b.is_finite() && b > 0.0 && b < 200.0) {
            return Err(fail(format!(
                "--bandwidth {b}: expected a percentage between 0 and 200"
            )));
        }
        s.bandwidth = b / 100.0;
    }
    if let Some(f) = a.center_frequency {
        if !(f.is_finite() && f > 0.0) {
            return Err(fail(format!(
                "--center-frequency {f}: expected a positive frequency in Hz"
            )));
        }
        s.center_frequency = f;
    }
    if let Some(h) = a.element_height {
        if !(h.is_finite() && h > 0.0) {
            return Err(fail(format!(
                "--element-height {h}: expected a positive height in metres"
            )));
        }
        s.elevation = Some(Elevation {
            height: h,
            focus: s.elevation.and_then(|e| e.focus),
        });
    }
    if let Some(f) = a.elevation_focus {
        if !(f.is_finite() && f > 0.0) {
            return Err(fail(format!(
                "--elevation-focus {f}: expected a positive distance in metres"
            )));
        }
        match &mut s.elevation {
            Some(e) => e.focus = Some(f),
            None => {
                return Err(fail(
                    "--elevation-focus needs an element height (--element-height)",
                ))
            }
        }
    }
    if let Some(v) = a.attenuation {
        if !(v.is_finite() && v >= 0.0) {
            return Err(fail(format!("--attenuation {v}: expected >= 0 dB/cm/MHz")));
        }
        s.attenuation = v;
    }
    if let Some(b) = &a.baffle {
        s.baffle = match b.as_str() {
            "soft" => Baffle::Soft,
            "rigid" => Baffle::Rigid,
            other => match other.parse::<f64>() {
                Ok(v) if v.is_finite() && v > 0.0 => Baffle::Impedance(v),
                _ => {
                    return Err(fail(format!(
                        "--baffle `{other}`: expected soft, rigid or a positive impedance ratio"
                    )))
                }
            },
        };
    }
    if let Some(c) = a.cycles {
        if !(c.is_finite() && c > 0.0) {
            return Err(fail(format!(
                "--cycles {c}: expected a positive number of cycles"
            )));
        }
        s.pulse = Pulse::Cycles(c);
    }
    if let Some(m) = a.segments {
        s.segments = Some(m);
    }
    if let Some(w) = &a.tx_window {
        s.tx_window = match w.as_str() {
            "all" => f64::INFINITY,
            v => match v.parse::<f64>() {
                Ok(x) if x > 0.0 && x.is_finite() => x,
                _ => {
                    return Err(fail(format!(
                        "--tx-window `{v}`: expected a positive number of periods or `all`"
                    )))
                }
            },
        };
    }
    if let Some(level) = a.noise {
        s.noise = Some(Noise {
            level_db: level,
            seed: a.seed.unwrap_or(0),
        });
    } else if let (Some(seed), Some(n)) = (a.seed, s.noise.as_mut()) {
        n.seed = seed;
    }
    if let Some(f) = a.frames {
        s.frames = f;
    }
    Ok(())
}

pub fn run(a: &SimulateArgs, backend: Option<&str>) -> Result<(), CliError> {
    crate::cli::check_outputs(
        &[
            ("scene", a.scene.as_deref()),
            ("--acquisition", a.acquisition.as_deref()),
            ("--scatterers", a.scatterers.as_deref()),
        ],
        &[
            ("--out", Some(&a.out)),
            ("--save-scatterers", a.save_scatterers.as_deref()),
        ],
    )?;
    let (acq, samples, mut settings, scatterers) = match (&a.scene, &a.acquisition, &a.scatterers) {
        (Some(scene), _, _) => {
            let s = PhantomScene::load(scene)?;
            let scat = s.phantom.scatterers();
            if scat.is_empty() {
                return Err(fail(format!("{}: the phantom produced no scatterers (every speckle scatterer is inside an anechoic inclusion?)", scene.display())));
            }
            eprintln!(
                "scene {}: {} scatterers, {} waves, {} samples",
                s.name,
                scat.len(),
                s.acquisition.waves.len(),
                s.samples
            );
            (s.acquisition, s.samples, s.settings, scat)
        }
        (None, Some(acq_path), Some(scat_path)) => {
            let data = crate::cli::load(acq_path)?;
            let scat = read_scatterers(scat_path)?;
            let settings = SimSettings::for_acquisition(&data.acquisition);
            (data.acquisition, data.samples, settings, scat)
        }
        _ => {
            return Err(fail(
                "give a scene file, or --acquisition FILE with --scatterers FILE",
            ))
        }
    };
    apply_options(a, &mut settings)?;
    if let Some(p) = &a.save_scatterers {
        write_scatterers(p, &scatterers)?;
    }
    let plan = SimPlan::new(&acq, samples, &settings).map_err(|e| fail(e.to_string()))?;
    let echoes = scatterers.len() * plan.n_elements() * plan.n_waves();
    let mut times = Vec::new();
    let mut phase_times = Vec::new();
    let mut data = None;
    let runs = a.repeat.max(1) + (a.repeat > 1) as usize;
    if a.cpu {
        let rows = to_rows(&scatterers);
        for _ in 0..runs {
            let t = Instant::now();
            data = Some(plan.channel_data(crate::reference::simulate::simulate(&plan, &rows, 0)));
            times.push(t.elapsed().as_secs_f64());
        }
        eprintln!(
            "device: CPU twin ({} threads)",
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        );
    } else {
        let ctx = GpuContext::new(backend)?;
        eprintln!("adapter: {}", ctx.describe());
        let sim = Simulate::new(&ctx);
        if let Some(receive) = Receive::parse(&a.receive) {
            sim.set_receive(receive);
        }
        eprintln!("receive: {}", sim.receive().name());
        // Per phase where the adapter has timestamp queries (without
        // them, timing a phase would mean waiting after each).
        let mut timer = GpuTimer::new(&ctx, Fallback::Skip);
        for _ in 0..runs {
            let t = Instant::now();
            let (d, phases) = sim.run_timed(&ctx, &plan, &scatterers, &mut timer)?;
            data = Some(d);
            times.push(t.elapsed().as_secs_f64());
            phase_times.extend(phases);
        }
    }
    if phase_times.len() > 1 {
        phase_times.remove(0);
    }
    if times.len() > 1 {
        times.remove(0);
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    eprintln!(
        "simulated {} scatterers × {} channels × {} waves ({} samples) in {:.1} ms{}: {:.3e} scatterer-echoes/s",
        scatterers.len(),
        plan.n_elements(),
        plan.n_waves(),
        samples,
        median * 1e3,
        if times.len() > 1 { format!(" (median of {})", times.len()) } else { String::new() },
        echoes as f64 / median
    );
    // The median of each phase over the runs, as of the whole above.
    let mut phases = Vec::new();
    for phase in crate::pipeline::simulate::PHASES {
        let mut t: Vec<f64> = phase_times.iter().filter_map(|f| f.get(phase)).collect();
        if !t.is_empty() {
            t.sort_by(f64::total_cmp);
            phases.push(format!("{phase} {:.1} ms", t[t.len() / 2] * 1e3));
        }
    }
    if !phases.is_empty() {
        let untimed = phase_times.iter().map(|f| f.untimed).max().unwrap_or(0);
        eprintln!(
            "phases (GPU timestamps): {}{}",
            phases.join(", "),
            if untimed > 0 {
                format!(" ({untimed} batch passes past the timer's capacity untimed: the phases cover part of the run)")
            } else {
                String::new()
            }
        );
    }
    let data = data.expect("at least one run");
    io::uff::write_uff(&a.out, &data)?;
    eprintln!("wrote {}", a.out.display());
    Ok(())
}
