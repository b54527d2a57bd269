//! The data a benchmark beamforms: the public PWI_disk reference workload,
//! or synthetic channel data from `sim::point_echoes` sized at will.

use std::path::{Path, PathBuf};

use glam::DVec3;

use super::BenchError;
use crate::acquisition::{Acquisition, ChannelData, PixelGrid, Probe, Samples, Wave, Wavefront};
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

    /// The same job on `frames` frames, the data's own looped (frame f is
    /// frame f mod the data's count), as a stream replays them.
    pub fn looped(&self, frames: usize) -> Workload {
        fn take<T: Copy>(v: &[T], per: usize, have: usize, frames: usize) -> Vec<T> {
            (0..frames)
                .flat_map(|f| v[(f % have) * per..(f % have + 1) * per].iter().copied())
                .collect()
        }
        let d = &self.data;
        let per = d.waves * d.channels * d.samples;
        let data = match &d.data {
            Samples::Rf(v) => Samples::Rf(take(v, per, d.frames, frames)),
            Samples::Iq(v) => Samples::Iq(take(v, per, d.frames, frames)),
        };
        Workload {
            name: self.name.clone(),
            source: self.source.clone(),
            data: ChannelData {
                acquisition: d.acquisition.clone(),
                frames,
                waves: d.waves,
                channels: d.channels,
                samples: d.samples,
                data,
            },
            grid: self.grid.clone(),
            das: self.das.clone(),
            demod: self.demod.clone(),
        }
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
    // Its errors name the file already.
    let mut data =
        crate::io::must::read_must(path).map_err(|e| BenchError::Input(e.to_string()))?;
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
/// on the same kind of grid as PWI_disk, with PWI_disk's settings. The
/// traces hold the samples the beamformer reads ([`recording_window`]), as
/// a scanner records from a start depth (PWI_disk starts at 9.95 µs).
pub fn synthetic(shape: SynthShape) -> Result<Workload, BenchError> {
    let fnumber = reference_das().fnumber;
    synthetic_recorded(shape, |acq, grid| {
        recording_window(acq, grid, fnumber, RECORDING_MARGIN)
    })
}

/// Time recorded before the earliest echo the beamformer reads and after
/// the latest. It covers the pulse (±4 σ of its envelope: ±0.4 µs at 5.2
/// MHz and 70 % bandwidth) and the start of the demodulation filter, whose
/// odd padding sees a trace begin inside echoes of shallower scatterers.
/// Beamformed images against traces recorded from t = 0 (test
/// `the_recording_window_keeps_the_image`, 1 and 3 waves): 0.9 of the
/// peak at no margin, 6 × 10⁻⁴ at 1 µs, 5 × 10⁻⁵ at 2 µs, 1 × 10⁻⁶ at
/// 3 µs and beyond (f32's floor).
pub const RECORDING_MARGIN: f64 = 3e-6;

/// The samples a beamformer reads from each trace of `acq` for `grid`:
/// from the earliest echo of any pixel on any element inside the
/// F-number's receive aperture to the latest, widened by `margin` seconds
/// either side, from a whole sample (and not before t = 0). Returns the
/// initial time and the sample count. For a flat array along x, the
/// aperture rule of [`FNumber::Fixed`] (|x − x_e| ≤ z / 2F); `Auto` and
/// `Full` count every element.
pub fn recording_window(
    acq: &Acquisition,
    grid: &PixelGrid,
    fnumber: FNumber,
    margin: f64,
) -> (f64, usize) {
    let c = acq.sound_speed;
    let half_aperture = |z: f64| match fnumber {
        FNumber::Fixed(f) if f > 0.0 => z / (2.0 * f),
        _ => f64::INFINITY,
    };
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for p in grid.positions() {
        let p = DVec3::new(p[0], 0.0, p[1]);
        let (mut near, mut far) = (f64::INFINITY, 0.0f64);
        for e in &acq.probe.elements {
            if (p.x - e.position.x).abs() <= half_aperture(p.z - e.position.z) * (1.0 + 1e-9) {
                let r = (p - e.position).length();
                (near, far) = (near.min(r), far.max(r));
            }
        }
        if near > far {
            continue;
        }
        for w in &acq.waves {
            let t = w.wavefront.transmit_distance(p) / c - w.delay;
            lo = lo.min(t + near / c);
            hi = hi.max(t + far / c);
        }
    }
    let fs = acq.sampling_frequency;
    let first = ((lo - margin) * fs).floor().max(0.0);
    let last = ((hi + margin) * fs).ceil();
    (first / fs, (last - first).max(0.0) as usize + 1)
}

/// [`synthetic`] recording `window(acquisition, grid)`: (initial time, samples).
fn synthetic_recorded(
    shape: SynthShape,
    window: impl FnOnce(&Acquisition, &PixelGrid) -> (f64, usize),
) -> Result<Workload, BenchError> {
    if shape.nx == 0 || shape.nz == 0 || shape.channels < 2 || shape.waves == 0 || shape.frames == 0
    {
        let SynthShape {
            nx,
            nz,
            channels,
            waves,
            frames,
        } = shape;
        return Err(BenchError::Input(format!(
            "synthetic workload of {nx}x{nz} pixels, {channels} channels, {waves} waves, {frames} frames: expected at least 1 pixel each way, 2 channels, 1 wave and 1 frame (--size, --channels, --waves, --frames/--batch)"
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
    let mut acq = Acquisition {
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
    let grid = PixelGrid::Cartesian {
        x: (-12.5e-3, 12.5e-3),
        z: (10e-3, 35e-3),
        nx: shape.nx,
        nz: shape.nz,
    };
    let (t0, samples) = window(&acq, &grid);
    acq.initial_time = t0;
    let data = point_echoes(&acq, &scat, samples, shape.frames);
    Ok(Workload {
        name: format!(
            "synthetic {}×{} px, {} ch, {} wave(s), {} frames",
            shape.nx, shape.nz, shape.channels, shape.waves, shape.frames
        ),
        source: "sim::point_echoes".into(),
        data,
        grid,
        das: reference_das(),
        demod: Some(DemodSettings::default()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acquisition::Samples;
    use crate::pipeline::{das::DasPlan, demodulate::DemodPlan};
    use crate::reference::{das::das, demodulate::demodulate};

    #[test]
    fn non_finite_channel_data_are_refused_with_where() {
        let mut w = synthetic(SynthShape {
            nx: 4,
            nz: 4,
            channels: 8,
            waves: 2,
            frames: 2,
        })
        .unwrap();
        w.data.validate().unwrap();
        let (s, c, wave, f) = (5, 3, 1, 1);
        let i = ((f * 2 + wave) * 8 + c) * w.data.samples + s;
        let Samples::Rf(rf) = &mut w.data.data else {
            panic!("synthetic data are RF")
        };
        rf[i] = f32::NAN;
        let e = w.data.validate().unwrap_err().to_string();
        assert!(
            e.contains("data") && e.contains("sample 5 of channel 3, wave 1, frame 1"),
            "{e}"
        );
    }

    /// Envelope of `w` beamformed by the CPU twins (demodulate, DAS).
    fn image(w: &Workload) -> Vec<f64> {
        let d = &w.data;
        let plan = DemodPlan::new(&d.acquisition, w.demod.as_ref().unwrap()).unwrap();
        let Samples::Rf(rf) = &d.data else {
            panic!("synthetic data are RF")
        };
        let iq = demodulate(rf, d.frames * d.waves * d.channels, d.samples, &plan.params).unwrap();
        let flat: Vec<f32> = iq.iter().flat_map(|c| [c[0], c[1]]).collect();
        let pixels = w.grid.positions_f32();
        let das_plan =
            DasPlan::new(&d.acquisition, &w.das, plan.fc, pixels.len(), d.frames).unwrap();
        das(&das_plan, &flat, true, d.samples, d.frames, &pixels, None)
            .iter()
            .map(|c| c[0].hypot(c[1]))
            .collect()
    }

    fn worst(a: &[f64], b: &[f64]) -> f64 {
        let peak = b.iter().cloned().fold(0.0, f64::max);
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
            / peak
    }

    #[test]
    fn the_recording_window_keeps_the_image() {
        let aperture = reference_das().fnumber;
        // 1 wave, as hfr streams it, and 3 steered ones, whose earliest and
        // latest echoes come from different waves and corners.
        for waves in [1, 3] {
            let shape = SynthShape {
                nx: 24,
                nz: 24,
                channels: 128,
                waves,
                frames: 1,
            };
            // Reference: every sample from t = 0 to well past the echo of
            // the deepest pixel on the farthest element.
            let full = synthetic_recorded(shape, |acq, grid| {
                let (t0, n) = recording_window(acq, grid, FNumber::Full, 10e-6);
                (0.0, n + (t0 * acq.sampling_frequency).round() as usize)
            })
            .unwrap();
            let reference = image(&full);
            let windowed = synthetic(shape).unwrap();
            let t0 = windowed.data.acquisition.initial_time;
            // The shallowest pixel (10 mm) is ~13 µs away.
            assert!(t0 > 9e-6 && t0 < 11e-6, "t0 {t0}");
            let err = worst(&image(&windowed), &reference);
            eprintln!(
                "{waves} wave(s): t0 {:.2} µs, {} samples (from t = 0: {}), image error {err:.1e} of the peak",
                t0 * 1e6,
                windowed.data.samples,
                full.data.samples
            );
            assert!(err < 1e-5, "windowed image differs by {err:e} of the peak");
            // The test sees a window that cuts 1 µs into the echoes it
            // needs, at the start or at the end.
            let cut = RECORDING_MARGIN + 1e-6;
            for (cut_start, cut_end) in [(cut, 0.0), (0.0, cut)] {
                let short = synthetic_recorded(shape, |acq, grid| {
                    let fs = acq.sampling_frequency;
                    let (t0, n) = recording_window(acq, grid, aperture, RECORDING_MARGIN);
                    let drop = ((cut_start + cut_end) * fs) as usize;
                    (t0 + (cut_start * fs).round() / fs, n - drop)
                })
                .unwrap();
                let err = worst(&image(&short), &reference);
                eprintln!(
                    "  cut {cut_start:e} s at the start, {cut_end:e} s at the end: {err:.1e}"
                );
                assert!(err > 1e-4, "a window 1 µs short went unnoticed ({err:e})");
            }
        }
    }
}
