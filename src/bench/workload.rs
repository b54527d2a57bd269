//! The data a benchmark beamforms: the public PWI_disk reference workload,
//! or synthetic channel data from `sim::point_echoes` sized at will.

use std::path::{Path, PathBuf};

use glam::DVec3;

use super::BenchError;
use crate::acquisition::{Acquisition, ChannelData, PixelGrid, Probe, Wave, Wavefront};
use crate::pipeline::{Apodization, DasSettings, DemodSettings, FNumber, Interp, Transmit};
use crate::reference::filter::FiltfiltConvention;
use crate::sim::{point_echoes, Rng, Scatterer};

/// A beamforming job: channel data, pixels and settings.
#[derive(Debug, Clone)]
pub struct Workload {
    /// `pwi-disk`, or `synthetic` with its shape.
    pub name: String,
    /// The file read, or the simulator.
    pub source: String,
    pub data: ChannelData,
    pub grid: PixelGrid,
    pub das: DasSettings,
    /// RF → IQ before beamforming (`None` for IQ data).
    pub demod: Option<DemodSettings>,
}

impl Workload {
    pub fn pixels(&self) -> usize {
        self.grid.len()
    }

    /// Pixels × receive channels × transmits × frames: the `mach` project's
    /// "points" (voxels × channels × frames; it has one transmit per frame).
    pub fn points(&self) -> f64 {
        self.grid.len() as f64
            * self.data.channels as f64
            * self.data.waves as f64
            * self.data.frames as f64
    }

    /// The acoustic time of the data: every transmit of every frame waits
    /// for the round trip to the deepest pixel, 2·z_max/c. mach's "Mach 1"
    /// for PWI_disk: 2 × 35 mm / 1480 m/s × 32 frames = 1.51 ms.
    pub fn acoustic_time_s(&self) -> f64 {
        let z_max = self
            .grid
            .positions()
            .iter()
            .map(|p| p[1])
            .fold(0.0, f64::max);
        2.0 * z_max / self.data.acquisition.sound_speed
            * (self.data.frames * self.data.waves) as f64
    }

    pub fn describe(&self) -> String {
        format!(
            "{}: {} × {} pixels, {} channels, {} wave(s), {} frames, {} samples ({}), {}",
            self.name,
            self.grid.rows(),
            self.grid.cols(),
            self.data.channels,
            self.data.waves,
            self.data.frames,
            self.data.samples,
            if self.data.is_iq() { "IQ" } else { "RF" },
            self.source
        )
    }
}

/// Where PWI_disk.mat is looked for when `--data` is not given: the shared
/// reference data next to the project (CI has it).
pub fn default_pwi_disk() -> Option<PathBuf> {
    let candidates = [
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/must/PWI_disk.mat"),
        PathBuf::from("../shared/data/must/PWI_disk.mat"),
    ];
    candidates.into_iter().find(|p| p.exists())
}

/// The reference workload exactly as mach reports it
/// (<https://forest-neurotech.github.io/mach/benchmarks.html>): PyMUST's
/// rotating-disk data, 251 × 251 pixels (x −12.5…12.5 mm, z 10…35 mm,
/// 0.1 mm), all 128 receive elements, all 32 frames, linear
/// interpolation, F-number 1. The RF is demodulated as MATLAB MUST's
/// `rf2iq` does (the parity tests check it), which mach counts as
/// pre-processing, outside the kernel.
pub fn pwi_disk(path: &Path, quick: bool) -> Result<Workload, BenchError> {
    if !path.exists() {
        return Err(BenchError::Input(format!(
            "{}: no such file (PWI_disk.mat from PyMUST's examples/data; pass --data PATH)",
            path.display()
        )));
    }
    let mut data = crate::io::must::read_must(path)
        .map_err(|e| BenchError::Input(format!("{}: {e}", path.display())))?;
    let (n, frames) = if quick { (63, 4) } else { (251, data.frames) };
    data.truncate_frames(frames);
    Ok(Workload {
        name: if quick {
            "pwi-disk (quick: 63 × 63 pixels, 4 frames)".into()
        } else {
            "pwi-disk".into()
        },
        source: path.display().to_string(),
        data,
        grid: PixelGrid::Cartesian {
            x: (-12.5e-3, 12.5e-3),
            z: (10e-3, 35e-3),
            nx: n,
            nz: n,
        },
        das: reference_das(),
        demod: Some(DemodSettings {
            convention: FiltfiltConvention::Matlab,
            ..Default::default()
        }),
    })
}

/// mach's beamforming settings: linear interpolation, F-number 1, boxcar
/// apodization, MUST's transmit delays, no normalisation.
fn reference_das() -> DasSettings {
    DasSettings {
        interp: Interp::Linear,
        apodization: Apodization::Boxcar,
        fnumber: FNumber::Fixed(1.0),
        normalize: false,
        transmit: Transmit::Must,
    }
}

/// Any file's channel data with the reference workload's settings (MUST's
/// `rf2iq` for RF, linear interpolation, F-number 1) on `grid`.
pub fn from_file(data: ChannelData, path: &Path, grid: PixelGrid) -> Workload {
    let is_mat = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.eq_ignore_ascii_case("mat"))
        .unwrap_or(false);
    Workload {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
        source: path.display().to_string(),
        data,
        grid,
        das: reference_das(),
        demod: Some(DemodSettings {
            convention: if is_mat {
                FiltfiltConvention::Matlab
            } else {
                FiltfiltConvention::Scipy
            },
            ..Default::default()
        }),
    }
}

/// The shape of a synthetic workload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SynthShape {
    /// Pixels along x and along z.
    pub nx: usize,
    pub nz: usize,
    pub channels: usize,
    pub waves: usize,
    pub frames: usize,
}

impl SynthShape {
    pub fn points(&self) -> f64 {
        (self.nx * self.nz * self.channels * self.waves * self.frames) as f64
    }
}

/// Synthetic plane-wave data: a linear array of `channels` elements
/// (0.3 mm pitch, 5.2 MHz, sampled at 4 fc), `waves` plane waves over
/// ±10°, point scatterers and speckle in x ±12.5 mm, z 5…35 mm, beamformed
/// on the same kind of grid as PWI_disk, with PWI_disk's settings.
pub fn synthetic(shape: SynthShape) -> Result<Workload, BenchError> {
    if shape.nx == 0 || shape.nz == 0 || shape.channels < 2 || shape.waves == 0 || shape.frames == 0
    {
        return Err(BenchError::Input(format!(
            "synthetic workload {shape:?}: every size must be positive (and 2 channels or more)"
        )));
    }
    let pitch = 0.3e-3;
    let c = 1540.0;
    let fc = 5.2e6;
    let half = (shape.channels as f64 - 1.0) / 2.0 * pitch;
    let waves = (0..shape.waves)
        .map(|i| {
            let deg = if shape.waves == 1 {
                0.0
            } else {
                -10.0 + 20.0 * i as f64 / (shape.waves - 1) as f64
            };
            let a = deg.to_radians();
            Wave {
                wavefront: Wavefront::Plane { azimuth: a },
                delay: -(half * a.sin().abs()) / c,
            }
        })
        .collect();
    let acq = Acquisition {
        probe: Probe::linear(shape.channels, pitch, 0.27e-3, 5e-3),
        waves,
        sampling_frequency: 4.0 * fc,
        initial_time: 0.0,
        modulation_frequency: 0.0,
        center_frequency: fc,
        bandwidth: 0.7,
        sound_speed: c,
        prf: 10e3,
    };
    let mut rng = Rng::new(17);
    let mut scat: Vec<Scatterer> = (0..200)
        .map(|_| Scatterer {
            position: DVec3::new(
                -0.0125 + 0.025 * rng.next_f64(),
                0.0,
                0.005 + 0.03 * rng.next_f64(),
            ),
            amplitude: rng.normal(),
        })
        .collect();
    scat.extend((1..=5).map(|i| Scatterer {
        position: DVec3::new(0.0, 0.0, 0.005 * i as f64 + 0.005),
        amplitude: 20.0,
    }));
    // Deep enough for the deepest pixel seen from the farthest element.
    let t_max = (0.035 + (0.035f64.powi(2) + (half + 0.0125).powi(2)).sqrt()) / c + 2e-6;
    let samples = (t_max * acq.sampling_frequency).ceil() as usize;
    let data = point_echoes(&acq, &scat, samples, shape.frames);
    Ok(Workload {
        name: format!(
            "synthetic {}×{} px, {} ch, {} wave(s), {} frames",
            shape.nx, shape.nz, shape.channels, shape.waves, shape.frames
        ),
        source: "sim::point_echoes".into(),
        data,
        grid: PixelGrid::Cartesian {
            x: (-12.5e-3, 12.5e-3),
            z: (10e-3, 35e-3),
            nx: shape.nx,
            nz: shape.nz,
        },
        das: reference_das(),
        demod: Some(DemodSettings::default()),
    })
}
