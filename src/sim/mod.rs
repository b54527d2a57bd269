//! Channel data from scatterers. For now: analytic point echoes (a
//! Gaussian-windowed pulse at the exact two-way time), used by the tests to
//! make their own data and by the built-in demo. The physical simulator
//! (impulse responses, directivity, attenuation) comes with its own stage.

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
pub fn point_echoes(acq: &Acquisition, scatterers: &[Scatterer], samples: usize, frames: usize) -> ChannelData {
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
                let tau = (wave.wavefront.transmit_distance(s.position) + r) / acq.sound_speed - wave.delay;
                let centre = (tau - acq.initial_time) * acq.sampling_frequency;
                let half = (4.0 * sigma_t * acq.sampling_frequency).ceil() as i64;
                let k0 = (centre.floor() as i64 - half).max(0);
                let k1 = (centre.ceil() as i64 + half).min(samples as i64 - 1);
                for k in k0..=k1 {
                    let dt = (k as f64 - centre) / acq.sampling_frequency;
                    let v = s.amplitude / r.max(1e-4) * (-0.5 * (dt / sigma_t).powi(2)).exp() * (2.0 * std::f64::consts::PI * fc * dt).cos();
                    trace[k as usize] += v as f32;
                }
            }
        }
    }
    let one = n_w * n_el * samples;
    for f in 1..frames {
        rf.copy_within(0..one, f * one);
    }
    ChannelData { acquisition: acq.clone(), frames, waves: n_w, channels: n_el, samples, data: Samples::Rf(rf) }
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
    let cyst = DVec3::new(0.5 * (x.0 + x.1) - 0.25 * (x.1 - x.0), 0.0, 0.5 * (z.0 + z.1));
    let cyst_r = 0.12 * (z.1 - z.0);
    let mut out = Vec::with_capacity(n_speckle + 8);
    while out.len() < n_speckle {
        let p = DVec3::new(x.0 + (x.1 - x.0) * rng.next_f64(), 0.0, z.0 + (z.1 - z.0) * rng.next_f64());
        if (p - cyst).length() < cyst_r {
            continue;
        }
        out.push(Scatterer { position: p, amplitude: rng.normal() });
    }
    let xc = 0.5 * (x.0 + x.1) + 0.2 * (x.1 - x.0);
    for i in 1..=5 {
        out.push(Scatterer { position: DVec3::new(xc, 0.0, z.0 + (z.1 - z.0) * i as f64 / 6.0), amplitude: 30.0 });
    }
    out
}
