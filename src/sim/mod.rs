//! Channel data from scatterers.
//!
//! - [`SimSettings`]: the transducer and medium physics a simulation needs
//!   beyond an [`Acquisition`] (pulse, bandwidth, element height and
//!   elevation focus, baffle, attenuation, noise): what a UFF file lacks.
//! - The GPU stage is `pipeline::simulate` (`shaders/simulate.wgsl`), its
//!   CPU twin `reference::simulate`; both follow PyMUST's `simus`.
//! - [`phantom`]: scene files (TOML) and the phantoms they describe.
//! - [`point_echoes`]: the older analytic generator (a Gaussian pulse at the
//!   exact two-way time), kept for tests that need exact timing and for the
//!   built-in demo.

pub mod command;
pub mod phantom;

use glam::DVec3;

use crate::acquisition::{Acquisition, ChannelData, Samples};

/// A point reflector at (x, y, z) metres with a reflection amplitude.
#[derive(Debug, Clone, Copy)]
pub struct Scatterer {
    pub position: DVec3,
    pub amplitude: f64,
}

/// RF channel data for `frames` identical frames: every (wave, element,
/// scatterer) adds a pulse of centre frequency `acq.center_frequency` and
/// fractional bandwidth `acq.bandwidth` centred on the UFF two-way time,
/// scaled by 1/r on receive. The same time convention as the beamformer,
/// so a point scatterer focuses where it is.
pub fn point_echoes(
    acq: &Acquisition,
    scatterers: &[Scatterer],
    samples: usize,
    frames: usize,
) -> ChannelData {
    let fc = acq.center_frequency;
    // Gaussian envelope whose spectrum has the requested -6 dB fractional
    // bandwidth: sigma_f = B·fc / (2·sqrt(2 ln 2)), sigma_t = 1/(2π sigma_f).
    let sigma_f = acq.bandwidth.max(0.05) * fc / (2.0 * (2.0 * std::f64::consts::LN_2).sqrt());
    let sigma_t = 1.0 / (2.0 * std::f64::consts::PI * sigma_f);
    let n_el = acq.probe.len();
    let n_w = acq.waves.len();
    let mut rf = vec![0f32; frames * n_w * n_el * samples];
    for (w, wave) in acq.waves.iter().enumerate() {
        for (e, el) in acq.probe.elements.iter().enumerate() {
            let trace = &mut rf[(w * n_el + e) * samples..(w * n_el + e + 1) * samples];
            for s in scatterers {
                let r = (s.position - el.position).length();
                let tau = (wave.wavefront.transmit_distance(s.position) + r) / acq.sound_speed
                    - wave.delay;
                let centre = (tau - acq.initial_time) * acq.sampling_frequency;
                let half = (4.0 * sigma_t * acq.sampling_frequency).ceil() as i64;
                let k0 = (centre.floor() as i64 - half).max(0);
                let k1 = (centre.ceil() as i64 + half).min(samples as i64 - 1);
                for k in k0..=k1 {
                    let dt = (k as f64 - centre) / acq.sampling_frequency;
                    let v = s.amplitude / r.max(1e-4)
                        * (-0.5 * (dt / sigma_t).powi(2)).exp()
                        * (2.0 * std::f64::consts::PI * fc * dt).cos();
                    trace[k as usize] += v as f32;
                }
            }
        }
    }
    let one = n_w * n_el * samples;
    for f in 1..frames {
        rf.copy_within(0..one, f * one);
    }
    ChannelData {
        acquisition: acq.clone(),
        frames,
        waves: n_w,
        channels: n_el,
        samples,
        data: Samples::Rf(rf),
    }
}

/// A small xorshift generator: deterministic speckle without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn normal(&mut self) -> f64 {
        let u1 = self.next_f64().max(1e-300);
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// A demo phantom: speckle in a box with an anechoic cyst, and a column of
/// bright points.
pub fn demo_phantom(seed: u64, x: (f64, f64), z: (f64, f64), n_speckle: usize) -> Vec<Scatterer> {
    let mut rng = Rng::new(seed);
    let cyst = DVec3::new(
        0.5 * (x.0 + x.1) - 0.25 * (x.1 - x.0),
        0.0,
        0.5 * (z.0 + z.1),
    );
    let cyst_r = 0.12 * (z.1 - z.0);
    let mut out = Vec::with_capacity(n_speckle + 8);
    while out.len() < n_speckle {
        let p = DVec3::new(
            x.0 + (x.1 - x.0) * rng.next_f64(),
            0.0,
            z.0 + (z.1 - z.0) * rng.next_f64(),
        );
        if (p - cyst).length() < cyst_r {
            continue;
        }
        out.push(Scatterer {
            position: p,
            amplitude: rng.normal(),
        });
    }
    let xc = 0.5 * (x.0 + x.1) + 0.2 * (x.1 - x.0);
    for i in 1..=5 {
        out.push(Scatterer {
            position: DVec3::new(xc, 0.0, z.0 + (z.1 - z.0) * i as f64 / 6.0),
            amplitude: 30.0,
        });
    }
    out
}

/// The excitation each element sends.
#[derive(Debug, Clone, PartialEq)]
pub enum Pulse {
    /// A windowed sine of this many cycles at the centre frequency (simus's
    /// `TXnow`; 1 by default).
    Cycles(f64),
    /// A measured excitation, sampled at `sampling_frequency` (Hz); time zero
    /// is sample `origin` (a fractional index). Its spectrum is scaled so
    /// that a one-cycle sine of unit amplitude gives the same echoes as
    /// `Cycles(1.0)`.
    Waveform {
        sampling_frequency: f64,
        origin: f64,
        samples: Vec<f64>,
    },
}

/// The elevation (y) model of the elements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Elevation {
    /// Element height, metres.
    pub height: f64,
    /// Elevation (lens) focus, metres; `None` is an unfocused element.
    pub focus: Option<f64>,
}

/// What the element face is mounted in, which sets its obliquity factor
/// (simus's `param.baffle`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Baffle {
    /// cos θ (the default).
    Soft,
    /// 1.
    Rigid,
    /// cos θ / (cos θ + b): a baffle of impedance ratio b > 0.
    Impedance(f64),
}

/// Additive white Gaussian noise on every sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Noise {
    /// RMS of the noise relative to the largest |RF| of the noise-free data, dB.
    pub level_db: f64,
    pub seed: u64,
}

/// The physics of a simulation beyond the acquisition geometry. Defaults
/// are simus's: 1-cycle pulse, soft baffle, no attenuation, 2-D (no
/// elevation), element splitting ceil(width / λmin).
#[derive(Debug, Clone, PartialEq)]
pub struct SimSettings {
    /// Transducer centre frequency, Hz.
    pub center_frequency: f64,
    /// Pulse-echo -6 dB fractional bandwidth (0.75 for 75 %).
    pub bandwidth: f64,
    pub pulse: Pulse,
    /// `None`: the 2-D model of simus (y ignored, 1/√r spreading).
    pub elevation: Option<Elevation>,
    pub baffle: Baffle,
    /// dB/cm/MHz, linear in frequency.
    pub attenuation: f64,
    /// Segments per element for the far-field model; `None`: ceil(width / λmin).
    pub segments: Option<usize>,
    /// Transmit apodization per element (the same for every wave); `None`: 1.
    pub tx_apodization: Option<Vec<f64>>,
    /// Transmit arrivals kept after the wavefront, in periods of the centre
    /// frequency (see `shaders/simulate.wgsl`); the last 2 periods (at
    /// most half) are tapered. Infinity keeps every arrival (edge waves and
    /// transmit grating lobes included), as simus does, at a cost that
    /// grows with the aperture.
    pub tx_window: f64,
    pub noise: Option<Noise>,
    /// Identical frames to write (they differ only by their noise).
    pub frames: usize,
}

/// Default bandwidth of simus when a file gives none.
pub const DEFAULT_BANDWIDTH: f64 = 0.75;
/// Default transmit window: every arrival, as simus, so that a simulation
/// with default settings is the one that matches PyMUST (edge waves and the
/// transmit grating lobes of steered waves included). A few periods
/// (`FAST_TX_WINDOW`) is 6–7× faster on 128 elements but drops that clutter,
/// which brightens cysts by 1.2–1.4 dB of CNR (BENCHMARKS.md).
pub const DEFAULT_TX_WINDOW: f64 = f64::INFINITY;
/// The window the hip scenes and the display use: speed over grating-lobe
/// clutter, periods of fc.
pub const FAST_TX_WINDOW: f64 = 4.0;

impl SimSettings {
    /// simus's defaults for an acquisition: its centre frequency, and its
    /// bandwidth when the file has a usable one.
    pub fn for_acquisition(acq: &Acquisition) -> SimSettings {
        let bw = if acq.bandwidth > 0.0 && acq.bandwidth < 2.0 {
            acq.bandwidth
        } else {
            DEFAULT_BANDWIDTH
        };
        SimSettings {
            center_frequency: acq.center_frequency,
            bandwidth: bw,
            pulse: Pulse::Cycles(1.0),
            elevation: None,
            baffle: Baffle::Soft,
            attenuation: 0.0,
            segments: None,
            tx_apodization: None,
            tx_window: DEFAULT_TX_WINDOW,
            noise: None,
            frames: 1,
        }
    }

    /// Check every field; the error names it.
    pub fn validate(&self, n_elements: usize) -> Result<(), SimError> {
        let positive = |field: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(SimError::invalid(
                    field,
                    format!("is {v}, expected a positive finite number"),
                ))
            }
        };
        positive("center_frequency", self.center_frequency)?;
        if !(self.bandwidth.is_finite() && self.bandwidth > 0.0 && self.bandwidth < 2.0) {
            return Err(SimError::invalid(
                "bandwidth",
                format!(
                    "is {} %, expected between 0 and 200 %",
                    self.bandwidth * 100.0
                ),
            ));
        }
        match &self.pulse {
            Pulse::Cycles(n) => positive("pulse.cycles", *n)?,
            Pulse::Waveform {
                sampling_frequency,
                origin,
                samples,
            } => {
                positive("pulse.waveform_rate", *sampling_frequency)?;
                if samples.is_empty()
                    || samples.iter().any(|v| !v.is_finite())
                    || samples.iter().all(|v| *v == 0.0)
                {
                    return Err(SimError::invalid(
                        "pulse.waveform",
                        "expected a non-empty list of finite samples, not all zero",
                    ));
                }
                if !origin.is_finite() {
                    return Err(SimError::invalid(
                        "pulse.waveform_origin",
                        format!("is {origin}, expected a sample index"),
                    ));
                }
            }
        }
        if let Some(el) = &self.elevation {
            positive("element_height", el.height)?;
            if let Some(f) = el.focus {
                positive("elevation_focus", f)?;
            }
        }
        if let Baffle::Impedance(b) = self.baffle {
            positive("baffle", b)?;
        }
        if !(self.attenuation.is_finite() && self.attenuation >= 0.0) {
            return Err(SimError::invalid(
                "attenuation",
                format!("is {} dB/cm/MHz, expected >= 0", self.attenuation),
            ));
        }
        if let Some(m) = self.segments {
            if m == 0 || m > MAX_SEGMENTS {
                return Err(SimError::invalid(
                    "segments",
                    format!("is {m}, expected 1 to {MAX_SEGMENTS}"),
                ));
            }
        }
        if let Some(a) = &self.tx_apodization {
            if a.len() != n_elements {
                return Err(SimError::invalid(
                    "tx_apodization",
                    format!(
                        "has {} values, the probe has {n_elements} elements",
                        a.len()
                    ),
                ));
            }
            if a.iter().any(|v| !v.is_finite()) {
                return Err(SimError::invalid(
                    "tx_apodization",
                    "contains NaN or infinite weights",
                ));
            }
        }
        // NaN fails `> 0`; infinity is allowed.
        if self.tx_window.is_nan() || self.tx_window <= 0.0 {
            return Err(SimError::invalid(
                "tx_window",
                format!(
                    "is {} periods, expected a positive number (or infinity: every arrival)",
                    self.tx_window
                ),
            ));
        }
        if let Some(n) = &self.noise {
            if !n.level_db.is_finite() {
                return Err(SimError::invalid(
                    "noise.level",
                    format!("is {} dB, expected a finite level", n.level_db),
                ));
            }
        }
        if self.frames == 0 {
            return Err(SimError::invalid("frames", "is 0, expected at least 1"));
        }
        Ok(())
    }

    /// Shortest wavelength in the band (simus's λmin), metres.
    pub fn lambda_min(&self, c: f64) -> f64 {
        c / (self.center_frequency * (1.0 + self.bandwidth / 2.0))
    }
}

/// Most segments per element the shader keeps (`MAX_SEGMENTS` in simulate.wgsl).
pub const MAX_SEGMENTS: usize = 8;

/// A simulation that cannot run, with the field that is wrong.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("`{field}` {problem}")]
    Invalid { field: String, problem: String },
}

impl SimError {
    pub fn invalid(field: &str, problem: impl Into<String>) -> SimError {
        SimError::Invalid {
            field: field.to_string(),
            problem: problem.into(),
        }
    }
}

/// Check scatterers before they reach the GPU: every coordinate and
/// amplitude finite. The error gives the first bad index.
pub fn validate_scatterers(scatterers: &[Scatterer]) -> Result<(), SimError> {
    for (i, s) in scatterers.iter().enumerate() {
        let v = [s.position.x, s.position.y, s.position.z, s.amplitude];
        if v.iter().any(|x| !x.is_finite() || x.abs() > 1e30) {
            return Err(SimError::invalid(
                &format!("scatterers[{i}]"),
                format!(
                    "is (x {}, y {}, z {}, amplitude {}): expected finite numbers",
                    v[0], v[1], v[2], v[3]
                ),
            ));
        }
    }
    Ok(())
}
