//! Host side of `shaders/simulate.wgsl`: scatterers → RF channel data on the
//! GPU, left in a [`GpuChannels`] buffer laid out `[frame][wave][channel][sample]`
//! so that a frame goes simulate → demodulate → das without a trip to the
//! CPU. CPU twin: `reference::simulate`.
//!
//! [`SimPlan`] resolves an [`Acquisition`] and [`SimSettings`] into the
//! shader's uniforms and tables (element geometry, per-element firing times,
//! the pulse spectrum); [`Simulate::encode`] records the dispatches.
//!
//! Units of the RF: the continuous-time form of simus's sum,
//! `2 Re ∫₀^∞ conj(S(f)) e^{j2πft} df`. PyMUST's `simus` returns the same
//! signal times `df / fs`, where `df` is the frequency step it picks from
//! the scene's largest distance, so its scale changes from scene to scene.

use bytemuck::{Pod, Zeroable};

use super::{layout, specialised_pipeline, Binding, GpuChannels, PipelineError, Specialisations};
use crate::acquisition::{transmit, Acquisition, ChannelData, ProbeKind, Samples, Wavefront};
use crate::gpu::timing::{FrameTimings, GpuTimer};
use crate::gpu::{dispatch_size, shaders, GpuContext};
use crate::sim::{Baffle, Pulse, Scatterer, SimSettings, MAX_SEGMENTS};

pub const STAGE: &str = "simulate";
/// The timer scopes of a simulation's phases ([`Simulate::step`],
/// [`Simulate::finish`]): the bound-only transmit pass (several batches
/// sharing one region of taps only), the transmits and receives, and the
/// resolve.
pub const PHASES: [&str; 4] = [
    "simulate.bound",
    "simulate.transmit",
    "simulate.receive",
    "simulate.resolve",
];
const WORKGROUP: u32 = 64;
/// Scatterers per `receive_tiled` workgroup (`TILE` in simulate.wgsl;
/// one workgroup) and the samples of a trace it sums in workgroup memory
/// (`WINDOW`).
pub const RECEIVE_TILE: u32 = WORKGROUP;
pub const RECEIVE_WINDOW: u32 = 512;

/// How receive adds the echoes into the traces (the same bits either
/// way): `receive` or `receive_tiled` in simulate.wgsl.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Receive {
    /// One invocation per (pair of neighbouring scatterers, element), an
    /// atomic per sample.
    Direct,
    /// A workgroup per (tile of neighbouring scatterers, element), summed
    /// in workgroup memory first.
    Tiled,
}

impl Receive {
    /// `Direct` on a CPU adapter, where `Tiled` measured 1.3–1.4× slower
    /// (lavapipe: its barriers keep live values in memory, and its lanes
    /// run in step over loops of different lengths); `Tiled` on a GPU,
    /// whose atomics into memory shared by every workgroup are what the
    /// tiles save (not measured on a GPU yet; `sonoguide simulate
    /// --receive` compares them).
    pub fn for_adapter(device_type: wgpu::DeviceType) -> Receive {
        if device_type == wgpu::DeviceType::Cpu {
            Receive::Direct
        } else {
            Receive::Tiled
        }
    }

    /// `direct` or `tiled`; anything else (`auto`): the adapter's.
    pub fn parse(s: &str) -> Option<Receive> {
        [Receive::Direct, Receive::Tiled]
            .into_iter()
            .find(|r| r.name() == s)
    }

    pub fn name(self) -> &'static str {
        match self {
            Receive::Direct => "direct",
            Receive::Tiled => "tiled",
        }
    }

    fn entry(self) -> &'static str {
        match self {
            Receive::Direct => "receive",
            Receive::Tiled => "receive_tiled",
        }
    }
}

/// Most frequencies of the per-scatterer transmit spectrum (`MAX_FREQ` in
/// simulate.wgsl: a window of about 500 periods).
pub const MAX_FREQ: usize = 1024;
/// Loop iterations one receive invocation may run: lavapipe stops an
/// invocation after 65 535 in all, so long windows with many waves are
/// dispatched in groups of waves.
const RECEIVE_ITERATIONS: usize = 40_000;
/// The same limit for transmit on a software adapter, with a margin.
const SOFTWARE_LOOP_LIMIT: usize = 60_000;
/// Longest taper at a cut end of the transmit window, periods of fc.
pub const MAX_TAPER: f64 = 2.0;
/// Baseband taps per period of the centre frequency. The taps are read with
/// linear interpolation; at 8 per period the band edge (±fc·B/2 about fc)
/// loses at most 2 %, and the average loss is compensated in the spectrum.
pub const TAPS_PER_PERIOD: f64 = 8.0;
/// Cap on |elevation response of an element / that of the reference
/// element|, which only binds next to an elevation null of the reference.
pub const ELEVATION_RATIO_CAP: f32 = 8.0;
/// Pulse extent: where its envelope stays above this fraction of its peak.
pub const PULSE_THRESHOLD: f64 = 1e-3;

pub const FLAG_ELEVATION: u32 = 1;
pub const FLAG_CONVEX: u32 = 2;
pub const FLAG_WRITE_TAPS: u32 = 4;
pub const FLAG_BASE_KEEP: u32 = 8;
pub const FLAG_BASE_ADD: u32 = 16;

/// A simulation as one layer of a sum (the RF is linear in the
/// scatterers): the display simulates the tissue once while the probe
/// stays put and adds each image's needle to it.
#[derive(Clone)]
pub enum Base {
    /// A simulation of its own.
    None,
    /// Keep the noise-free sum in the job's buffers ([`SimBuffers::base`])
    /// instead of writing frames.
    Keep,
    /// Add this kept sum (another job's [`SimBuffers::base`]) before the
    /// noise, whose level follows the peak of the total.
    Add(wgpu::Buffer),
}

/// Keep in sync with `SimulateParams` in simulate.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq)]
pub struct SimulateParams {
    pub n_elements: u32,
    pub n_segments: u32,
    pub n_waves: u32,
    pub n_samples: u32,
    pub batch_start: u32,
    pub batch_len: u32,
    pub n_freq: u32,
    pub n_taps: u32,
    pub flags: u32,
    pub baffle: u32,
    pub n_frames: u32,
    pub noise_seed: u32,
    pub off_waves: u32,
    pub off_fire: u32,
    pub off_spectrum: u32,
    pub wave_start: u32,
    pub fs: f32,
    pub t0: f32,
    pub inv_c: f32,
    pub fc: f32,
    pub kc: f32,
    pub f_step: f32,
    pub fs_taps: f32,
    pub tap0: f32,
    pub alpha: f32,
    pub seg_len: f32,
    pub small_d: f32,
    pub baffle_b: f32,
    pub inv_height2: f32,
    pub inv_focus: f32,
    pub width_2d: f32,
    pub rx_cap: f32,
    pub noise_level: f32,
    pub z_min: f32,
    pub convex_x: f32,
    pub convex_z: f32,
    pub convex_r2: f32,
    pub pulse_lo: f32,
    pub pulse_hi: f32,
    pub wave_end: u32,
}

const _: () = assert!(std::mem::size_of::<SimulateParams>() == 160);

/// Everything the kernels (and the CPU twin) need.
#[derive(Debug, Clone)]
pub struct SimPlan {
    /// Batch fields and `FLAG_WRITE_TAPS` are set per dispatch.
    pub params: SimulateParams,
    /// Elements (2 rows each), waves (3 rows each), firing times (one row
    /// per wave and element), spectrum (one row per frequency).
    pub tables: Vec<[f32; 4]>,
    /// The acquisition of the output: RF, with the settings' fc and bandwidth.
    pub acquisition: Acquisition,
    pub samples: usize,
    pub frames: usize,
    /// Window kinds per wave (0: first arrival, 1: focused wavefront).
    pub wave_kinds: Vec<u32>,
    /// Extent of the two-way pulse about its centre, seconds.
    pub pulse_extent: (f64, f64),
}

/// simus's spectra at frequency `f` (Hz): the transmit pulse (a windowed
/// sine, or the FFT of a measured waveform) and the pulse-echo probe
/// response (a generalized normal window whose -6 dB width is the
/// bandwidth). The pulse-echo spectrum is `pulse · probe²`, `probe` being
/// the one-way (square-root) response.
pub struct Spectra<'a> {
    fc: f64,
    bandwidth: f64,
    pulse: &'a Pulse,
    /// FT of a measured waveform at fc, for its scaling.
    waveform_fc: [f64; 2],
}

impl<'a> Spectra<'a> {
    pub fn new(s: &'a SimSettings) -> Spectra<'a> {
        let mut sp = Spectra {
            fc: s.center_frequency,
            bandwidth: s.bandwidth,
            pulse: &s.pulse,
            waveform_fc: [1.0, 0.0],
        };
        if let Pulse::Waveform { .. } = s.pulse {
            sp.waveform_fc = sp.waveform_ft(s.center_frequency);
        }
        sp
    }

    fn waveform_ft(&self, f: f64) -> [f64; 2] {
        let Pulse::Waveform {
            sampling_frequency,
            origin,
            samples,
        } = self.pulse
        else {
            return [0.0, 0.0];
        };
        let (mut re, mut im) = (0.0, 0.0);
        for (k, v) in samples.iter().enumerate() {
            let t = (k as f64 - origin) / sampling_frequency;
            let ph = -2.0 * std::f64::consts::PI * f * t;
            re += v * ph.cos();
            im += v * ph.sin();
        }
        [re / sampling_frequency, im / sampling_frequency]
    }

    /// The transmit pulse spectrum (complex).
    pub fn pulse(&self, f: f64) -> [f64; 2] {
        let w = 2.0 * std::f64::consts::PI * f;
        let wc = 2.0 * std::f64::consts::PI * self.fc;
        match self.pulse {
            Pulse::Cycles(n) => {
                // simus: 1j·(sinc(T(w - wc)/2) - sinc(T(w + wc)/2)), T = n/fc.
                let t = n / self.fc;
                let sinc = |x: f64| {
                    let a = x.abs() + 1e-16;
                    a.sin() / a
                };
                [0.0, sinc(t * (w - wc) / 2.0) - sinc(t * (w + wc) / 2.0)]
            }
            Pulse::Waveform { .. } => {
                // -2 fc · FT: a unit one-cycle sine centred on its origin
                // gives simus's 1-cycle spectrum.
                let ft = self.waveform_ft(f);
                [-2.0 * self.fc * ft[0], -2.0 * self.fc * ft[1]]
            }
        }
    }

    /// The pulse-echo (two-way) probe response, real and positive.
    pub fn probe_squared(&self, f: f64) -> f64 {
        let w = 2.0 * std::f64::consts::PI * f;
        let wc = 2.0 * std::f64::consts::PI * self.fc;
        let wb = self.bandwidth * wc;
        let p = 126f64.ln() / (2.0 * wc / wb).ln();
        (-((w - wc).abs() / (wb / 2.0 / 2f64.ln().powf(1.0 / p))).powf(p)).exp()
    }

    /// pulse · probe²: the pulse-echo spectrum of a unit reflector.
    pub fn two_way(&self, f: f64) -> [f64; 2] {
        let p = self.pulse(f);
        let g = self.probe_squared(f);
        [p[0] * g, p[1] * g]
    }

    /// simus's band: frequencies in [0, 2fc] where the one-way spectrum
    /// |pulse · probe| is above -60 dB of its maximum (contiguous range).
    pub fn band(&self) -> (f64, f64) {
        let n = 2048;
        let one_way: Vec<f64> = (0..=n)
            .map(|i| {
                let f = 2.0 * self.fc * i as f64 / n as f64;
                let p = self.pulse(f);
                p[0].hypot(p[1]) * self.probe_squared(f).sqrt()
            })
            .collect();
        let max = one_way.iter().copied().fold(0.0, f64::max);
        let keep: Vec<usize> = (0..=n).filter(|&i| one_way[i] > 1e-3 * max).collect();
        let (a, b) = (
            keep.first().copied().unwrap_or(0),
            keep.last().copied().unwrap_or(n),
        );
        // One grid step of slack on each side.
        let df = 2.0 * self.fc / n as f64;
        (
            (a as f64 * 2.0 * self.fc / n as f64 - df).max(0.0),
            (b as f64 * 2.0 * self.fc / n as f64 + df).min(2.0 * self.fc),
        )
    }

    /// Where the envelope of the pulse-echo pulse stays above
    /// `PULSE_THRESHOLD` of its peak: (first, last) time about the echo's
    /// nominal time, seconds.
    pub fn extent(&self) -> (f64, f64) {
        let (f0, f1) = self.band();
        let nf = 512;
        let spec: Vec<(f64, [f64; 2])> = (0..nf)
            .map(|i| {
                let f = f0 + (f1 - f0) * (i as f64 + 0.5) / nf as f64;
                let h = self.two_way(f);
                (f - self.fc, [h[0], -h[1]])
            })
            .collect();
        let period = 1.0 / self.fc;
        let step = period / 8.0;
        let n_u = 480; // ±60 periods
        let env: Vec<f64> = (-(n_u as i64)..=n_u as i64)
            .map(|i| {
                let u = i as f64 * step;
                let (mut re, mut im) = (0.0, 0.0);
                for (df, h) in &spec {
                    let ph = 2.0 * std::f64::consts::PI * df * u;
                    let (s, c) = ph.sin_cos();
                    re += h[0] * c - h[1] * s;
                    im += h[0] * s + h[1] * c;
                }
                re.hypot(im)
            })
            .collect();
        let max = env.iter().copied().fold(0.0, f64::max);
        let above: Vec<usize> = (0..env.len())
            .filter(|&i| env[i] >= PULSE_THRESHOLD * max)
            .collect();
        let first = above.first().copied().unwrap_or(n_u) as f64 - n_u as f64;
        let last = above.last().copied().unwrap_or(n_u) as f64 - n_u as f64;
        ((first - 1.0) * step, (last + 1.0) * step)
    }
}

fn settings_error(e: impl std::fmt::Display) -> PipelineError {
    PipelineError::Settings(format!("simulation: {e}"))
}

impl SimPlan {
    /// Resolve `acq` (probe, waves, sampling, sound speed) and the physics
    /// in `s` for `samples` samples per trace.
    pub fn new(
        acq: &Acquisition,
        samples: usize,
        s: &SimSettings,
    ) -> Result<SimPlan, PipelineError> {
        let mut check = acq.clone();
        // The simulator writes RF; the input may have been IQ.
        check.modulation_frequency = 0.0;
        check.center_frequency = s.center_frequency;
        check.validate()?;
        s.validate(acq.probe.len()).map_err(settings_error)?;
        if samples < 2 {
            return Err(settings_error(format!(
                "`samples` is {samples}, expected at least 2"
            )));
        }
        let n_el = acq.probe.len();
        let n_w = acq.waves.len();
        let c = acq.sound_speed;
        let fc = s.center_frequency;
        let lambda_min = s.lambda_min(c);
        let width = acq.probe.element_width();
        let segments = s
            .segments
            .unwrap_or_else(|| ((width / lambda_min).ceil() as usize).clamp(1, MAX_SEGMENTS));
        let seg_len = if segments > 0 {
            width / segments as f64
        } else {
            0.0
        };

        let spectra = Spectra::new(s);
        let pulse_extent = spectra.extent();
        let period = 1.0 / fc;
        let window = if s.tx_window.is_finite() {
            s.tx_window * period
        } else {
            // Every arrival: an element fires at most `spread` after another
            // and is at most the array's extent farther from any point.
            let fires: Vec<f64> = acq
                .waves
                .iter()
                .flat_map(|w| transmit::must_delays(&acq.probe, w, c))
                .collect();
            let spread = fires.iter().copied().fold(f64::NEG_INFINITY, f64::max)
                - fires.iter().copied().fold(f64::INFINITY, f64::min);
            let el = &acq.probe.elements;
            let extent = el
                .iter()
                .flat_map(|a| el.iter().map(move |b| (a.position - b.position).length()))
                .fold(0.0, f64::max);
            spread + extent / c + 2.0 * period
        };
        let taper = (0.5 * window).min(MAX_TAPER * period);
        let wave_kinds: Vec<u32> = acq
            .waves
            .iter()
            .map(|w| matches!(w.wavefront, Wavefront::Focused { .. }) as u32)
            .collect();
        let lo = if wave_kinds.contains(&1) {
            -window
        } else {
            0.0
        };
        let hi = window;
        let tap_step = period / TAPS_PER_PERIOD;
        let tap0 = lo + pulse_extent.0 - tap_step;
        let span = (hi + pulse_extent.1 + tap_step) - tap0;
        let n_taps = (span / tap_step).ceil() as usize + 1;
        // The spectrum is sampled every F, which makes the taps periodic in
        // 1/F: keep 1/F longer than the taps plus two periods.
        let n_freq = ((2.0 * fc * span + 4.0) / 8.0).ceil() as usize * 8;
        if n_freq > MAX_FREQ {
            return Err(settings_error(format!(
                "the pulse lasts {:.1} periods to -60 dB and the transmit window is {:.0} periods; the simulator holds at most {} periods (raise `bandwidth`, shorten `pulse`, or lower `tx_window`)",
                (pulse_extent.1 - pulse_extent.0) / period,
                window / period,
                MAX_FREQ / 2 - 2
            )));
        }
        let f_step = 2.0 * fc / n_freq as f64;
        let fs_taps = TAPS_PER_PERIOD * fc;
        let (band_lo, band_hi) = spectra.band();
        let spectrum: Vec<[f32; 4]> = (0..n_freq)
            .map(|n| {
                let f = n as f64 * f_step;
                if f < band_lo || f > band_hi || n == 0 {
                    return [0.0; 4];
                }
                let h = spectra.two_way(f);
                // Linear interpolation of the taps attenuates by sinc² of
                // the baseband frequency on average; undo it here.
                let x = (f - fc) / fs_taps;
                let sinc = if x.abs() < 1e-12 {
                    1.0
                } else {
                    (std::f64::consts::PI * x).sin() / (std::f64::consts::PI * x)
                };
                let g = 2.0 * f_step / (sinc * sinc);
                [(h[0] * g) as f32, (-h[1] * g) as f32, 0.0, 0.0]
            })
            .collect();

        // Tables: elements, waves, firing times, spectrum.
        let mut tables: Vec<[f32; 4]> =
            Vec::with_capacity(2 * n_el + 3 * n_w + n_w * n_el + n_freq);
        for e in &acq.probe.elements {
            let (sa, ca) = e.azimuth.sin_cos();
            tables.push([
                e.position.x as f32,
                e.position.y as f32,
                e.position.z as f32,
                e.azimuth as f32,
            ]);
            tables.push([ca as f32, 0.0, -sa as f32, e.width as f32]);
        }
        let off_waves = tables.len();
        for (w, kind) in acq.waves.iter().zip(&wave_kinds) {
            let focus = match w.wavefront {
                Wavefront::Focused { focus } => [
                    focus.x as f32,
                    focus.y as f32,
                    focus.z as f32,
                    focus.length() as f32,
                ],
                _ => [0.0; 4],
            };
            tables.push(focus);
            let (wlo, tlo) = if *kind == 1 {
                (-window, taper)
            } else {
                (0.0, 0.0)
            };
            tables.push([*kind as f32, w.delay as f32, wlo as f32, hi as f32]);
            tables.push([tlo as f32, taper as f32, 0.0, 0.0]);
        }
        let off_fire = tables.len();
        for w in &acq.waves {
            let fire = transmit::must_delays(&acq.probe, w, c);
            for (e, t) in fire.iter().enumerate() {
                let apod = s.tx_apodization.as_ref().map(|a| a[e]).unwrap_or(1.0);
                tables.push([*t as f32, apod as f32, 0.0, 0.0]);
            }
        }
        let off_spectrum = tables.len();
        tables.extend(spectrum);

        let mut flags = 0;
        let (inv_height2, inv_focus) = match s.elevation {
            Some(el) => {
                flags |= FLAG_ELEVATION;
                (
                    1.0 / (el.height * el.height),
                    el.focus.map(|f| 1.0 / f).unwrap_or(0.0),
                )
            }
            None => (0.0, 0.0),
        };
        let (convex_x, convex_z, convex_r2) = match acq.probe.kind {
            ProbeKind::Convex { radius, center } => {
                flags |= FLAG_CONVEX;
                (center[0], center[1], radius * radius)
            }
            _ => (0.0, 0.0, 0.0),
        };
        let (baffle, baffle_b) = match s.baffle {
            Baffle::Soft => (0, 0.0),
            Baffle::Rigid => (1, 0.0),
            Baffle::Impedance(b) => (2, b),
        };
        let z_min = acq
            .probe
            .elements
            .iter()
            .map(|e| e.position.z)
            .fold(f64::INFINITY, f64::min);
        let (noise_level, noise_seed) = match s.noise {
            Some(n) => (
                10f64.powf(n.level_db / 20.0),
                (n.seed ^ (n.seed >> 32)) as u32,
            ),
            None => (0.0, 0),
        };
        let params = SimulateParams {
            n_elements: n_el as u32,
            n_segments: segments as u32,
            n_waves: n_w as u32,
            n_samples: samples as u32,
            batch_start: 0,
            batch_len: 0,
            n_freq: n_freq as u32,
            n_taps: n_taps as u32,
            flags,
            baffle,
            n_frames: s.frames as u32,
            noise_seed,
            off_waves: off_waves as u32,
            off_fire: off_fire as u32,
            off_spectrum: off_spectrum as u32,
            wave_start: 0,
            fs: acq.sampling_frequency as f32,
            t0: acq.initial_time as f32,
            inv_c: (1.0 / c) as f32,
            fc: fc as f32,
            kc: (2.0 * std::f64::consts::PI * fc / c) as f32,
            f_step: f_step as f32,
            fs_taps: fs_taps as f32,
            tap0: tap0 as f32,
            alpha: (s.attenuation / 8.69 * 1e-4) as f32,
            seg_len: seg_len as f32,
            small_d: (c / fc / 2.0) as f32,
            baffle_b: baffle_b as f32,
            inv_height2: inv_height2 as f32,
            inv_focus: inv_focus as f32,
            width_2d: width as f32,
            rx_cap: ELEVATION_RATIO_CAP,
            noise_level: noise_level as f32,
            z_min: z_min as f32,
            convex_x: convex_x as f32,
            convex_z: convex_z as f32,
            convex_r2: convex_r2 as f32,
            pulse_lo: pulse_extent.0 as f32,
            pulse_hi: pulse_extent.1 as f32,
            wave_end: n_w as u32,
        };
        let mut out = acq.clone();
        out.modulation_frequency = 0.0;
        out.center_frequency = fc;
        out.bandwidth = s.bandwidth;
        Ok(SimPlan {
            params,
            tables,
            acquisition: out,
            samples,
            frames: s.frames,
            wave_kinds,
            pulse_extent,
        })
    }

    pub fn n_waves(&self) -> usize {
        self.params.n_waves as usize
    }

    pub fn n_elements(&self) -> usize {
        self.params.n_elements as usize
    }

    pub fn n_taps(&self) -> usize {
        self.params.n_taps as usize
    }

    /// Loop iterations of one transmit invocation (the longest: the taps
    /// and spectrum loops dominate).
    pub fn transmit_iterations(&self) -> usize {
        let wg = crate::reference::simulate::WG;
        let (nf, nt) = (self.params.n_freq as usize, self.params.n_taps as usize);
        let arrivals = (self.params.n_elements * self.params.n_segments) as usize;
        nt.div_ceil(wg) * (nf + 1)
            + arrivals * (nf.div_ceil(wg) + 1)
            + 4 * arrivals.div_ceil(wg)
            + 1000
    }

    /// The transmit window, periods of fc.
    pub fn window_periods(&self) -> f64 {
        let t = &self.tables[self.params.off_waves as usize + 1];
        t[3] as f64 * self.params.fc as f64
    }

    /// Waves per receive dispatch (see `RECEIVE_ITERATIONS`).
    pub fn wave_group(&self) -> usize {
        let samples = (self.params.n_taps as f64 * self.params.fs as f64
            / self.params.fs_taps as f64)
            .ceil() as usize
            + 2;
        let flush = (RECEIVE_WINDOW / RECEIVE_TILE) as usize;
        (RECEIVE_ITERATIONS / (samples * (self.params.n_segments as usize + 1) + 8 + flush))
            .clamp(1, self.n_waves().max(1))
    }

    /// Samples of one frame: waves × channels × samples.
    pub fn frame_len(&self) -> usize {
        self.n_waves() * self.n_elements() * self.samples
    }

    /// Wrap simulated samples (`[frame][wave][channel][sample]`) as channel data.
    pub fn channel_data(&self, rf: Vec<f32>) -> ChannelData {
        ChannelData {
            acquisition: self.acquisition.clone(),
            frames: self.frames,
            waves: self.n_waves(),
            channels: self.n_elements(),
            samples: self.samples,
            data: Samples::Rf(rf),
        }
    }
}

/// Scatterers resident on the GPU: `count` rows of (x, y, z, amplitude) f32.
pub struct GpuScatterers {
    pub buffer: wgpu::Buffer,
    pub count: usize,
}

impl GpuScatterers {
    /// Check (finite positions and amplitudes) and upload.
    pub fn upload(
        ctx: &GpuContext,
        scatterers: &[Scatterer],
    ) -> Result<GpuScatterers, PipelineError> {
        crate::sim::validate_scatterers(scatterers).map_err(settings_error)?;
        Ok(GpuScatterers {
            buffer: ctx.storage_from("sonoguide.simulate.scatterers", &gpu_rows(scatterers))?,
            count: scatterers.len(),
        })
    }
}

/// Scatterers as the shader reads them, in the order receive wants them:
/// along a Z-order curve over (x, z), so that neighbours in the list (a
/// direct receive's pair, a tiled receive's `RECEIVE_TILE`) lie close
/// together and their echoes on an element cover nearly the same samples
/// of its trace. The RF does not depend on the order (integer sums).
/// Scatterers already in that order ([`in_gpu_order`]) are not sorted again.
pub fn gpu_rows(scatterers: &[Scatterer]) -> Vec<[f32; 4]> {
    let rows = to_rows(scatterers);
    let keys = z_order_keys(&rows);
    if keys.is_sorted() {
        return rows;
    }
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| keys[i]);
    order.into_iter().map(|i| rows[i]).collect()
}

/// `scatterers` in the order [`gpu_rows`] uploads them, so that it finds
/// nothing to sort: the display orders its scatterers on the worker
/// thread that builds them (5.4 ms for 42 000) rather than on the frame
/// thread that uploads them.
pub fn in_gpu_order(scatterers: Vec<Scatterer>) -> Vec<Scatterer> {
    let keys = z_order_keys(&to_rows(&scatterers));
    if keys.is_sorted() {
        return scatterers;
    }
    let mut keyed: Vec<(u32, Scatterer)> = keys.into_iter().zip(scatterers).collect();
    keyed.sort_by_key(|(k, _)| *k);
    keyed.into_iter().map(|(_, s)| s).collect()
}

/// Z-order keys of the rows over (x, z), 16 bits an axis across their extent.
fn z_order_keys(rows: &[[f32; 4]]) -> Vec<u32> {
    let (mut lo, mut hi) = ([f32::MAX; 2], [f32::MIN; 2]);
    for r in rows {
        for (a, v) in [r[0], r[2]].into_iter().enumerate() {
            lo[a] = lo[a].min(v);
            hi[a] = hi[a].max(v);
        }
    }
    let cell = |a: usize, v: f32| {
        let span = (hi[a] - lo[a]).max(f32::MIN_POSITIVE);
        ((v - lo[a]) / span * 65535.0) as u32
    };
    let spread = |v: u32| {
        let mut v = v & 0xffff;
        v = (v | (v << 8)) & 0x00ff_00ff;
        v = (v | (v << 4)) & 0x0f0f_0f0f;
        v = (v | (v << 2)) & 0x3333_3333;
        (v | (v << 1)) & 0x5555_5555
    };
    rows.iter()
        .map(|r| spread(cell(0, r[0])) | (spread(cell(1, r[2])) << 1))
        .collect()
}

/// Scatterers as the shader reads them.
pub fn to_rows(scatterers: &[Scatterer]) -> Vec<[f32; 4]> {
    scatterers
        .iter()
        .map(|s| {
            [
                s.position.x as f32,
                s.position.y as f32,
                s.position.z as f32,
                s.amplitude as f32,
            ]
        })
        .collect()
}

/// The GPU memory of a simulation. [`Simulate::begin`] allocates it for
/// one run; a loop that simulates frame after frame (the display) keeps it
/// and hands it back to [`Simulate::begin_in`], which only grows what is
/// too small and writes the scatterers and the dispatch parameters with
/// queue writes: nothing is allocated per frame.
pub struct SimBuffers {
    tables: wgpu::Buffer,
    heads: wgpu::Buffer,
    taps: wgpu::Buffer,
    state: wgpu::Buffer,
    acc: wgpu::Buffer,
    rf: wgpu::Buffer,
    /// Every dispatch's parameters, one aligned block each (dynamic offsets).
    params: wgpu::Buffer,
    scatterers: wgpu::Buffer,
    /// A kept sum ([`Base::Keep`]): one frame, noise-free; grown on first use.
    base: wgpu::Buffer,
}

impl SimBuffers {
    /// Buffers for `plan` (its tables written); the per-batch ones start
    /// small and grow in [`Simulate::begin_in`].
    pub fn new(ctx: &GpuContext, plan: &SimPlan) -> Result<SimBuffers, PipelineError> {
        let (traces, ns) = (plan.n_waves() * plan.n_elements(), plan.samples);
        Ok(SimBuffers {
            tables: ctx.storage_from("sonoguide.simulate.tables", &plan.tables)?,
            heads: ctx.storage("sonoguide.simulate.heads", 16)?,
            taps: ctx.storage("sonoguide.simulate.taps", 16)?,
            state: ctx.storage("sonoguide.simulate.state", 16)?,
            acc: ctx.storage("sonoguide.simulate.accumulators", (traces * ns * 16) as u64)?,
            rf: ctx.storage(
                "sonoguide.simulate.rf",
                (plan.frames * traces * ns * 4) as u64,
            )?,
            params: uniform_blocks(ctx, 1),
            scatterers: ctx.storage("sonoguide.simulate.scatterers", 16)?,
            base: ctx.storage("sonoguide.simulate.base", 16)?,
        })
    }

    /// The sum a [`Base::Keep`] run left here, for [`Base::Add`].
    pub fn base(&self) -> wgpu::Buffer {
        self.base.clone()
    }

    /// The RF every simulation of `plan` in these buffers writes.
    pub fn channels(&self, plan: &SimPlan) -> GpuChannels {
        GpuChannels {
            buffer: self.rf.clone(),
            iq: false,
            encoding: super::Encoding::F32,
            frames: plan.frames,
            waves: plan.n_waves(),
            channels: plan.n_elements(),
            samples: plan.samples,
        }
    }
}

/// Bytes between parameter blocks: the adapter's dynamic-offset alignment.
fn block_stride(ctx: &GpuContext) -> u64 {
    let align = ctx.device.limits().min_uniform_buffer_offset_alignment as u64;
    (std::mem::size_of::<SimulateParams>() as u64).next_multiple_of(align)
}

fn uniform_blocks(ctx: &GpuContext, blocks: usize) -> wgpu::Buffer {
    ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("sonoguide.simulate.params"),
        size: blocks as u64 * block_stride(ctx),
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// How a buffer is bound: whole, or a region at a time ([`region_of`]),
/// which lets the whole be as large as a buffer rather than a binding.
#[derive(Clone, Copy)]
enum Bound {
    Whole,
    InRegions,
}

/// Replace `buffer` by a larger storage buffer when it holds fewer than
/// `bytes` (its contents are not kept: every use rewrites them).
fn grow(
    ctx: &GpuContext,
    buffer: &mut wgpu::Buffer,
    label: &str,
    bytes: u64,
    bound: Bound,
) -> Result<(), PipelineError> {
    if buffer.size() < bytes {
        *buffer = match bound {
            Bound::Whole => ctx.storage(label, bytes)?,
            Bound::InRegions => ctx.storage_regions(label, bytes)?,
        };
    }
    Ok(())
}

/// Region `region` of `size` bytes of `buffer`.
fn region_of(buffer: &wgpu::Buffer, region: u64, size: u64) -> wgpu::BindingResource<'_> {
    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer,
        offset: region * size,
        size: wgpu::BufferSize::new(size),
    })
}

fn compute_pass<'e>(enc: &'e mut wgpu::CommandEncoder, label: &str) -> wgpu::ComputePass<'e> {
    enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some(label),
        timestamp_writes: None,
    })
}

/// The entry points specialised for a plan and an accumulator layout
/// ([`Simulate::specialised`]).
#[derive(Clone)]
struct Specialised {
    transmit: wgpu::ComputePipeline,
    receive: wgpu::ComputePipeline,
    peak: wgpu::ComputePipeline,
    resolve: wgpu::ComputePipeline,
}

/// Bytes of one tap in the taps buffer: the complex tap and its successor
/// (`taps` in simulate.wgsl), so that receive interpolates from one load.
const TAP_BYTES: u64 = 16;

/// The most memory the taps of a simulation in several batches may take
/// for each batch to keep its own ([`SimJob::own_taps`]); past it they
/// share one region and a bound-only transmit pass runs first.
const OWN_TAPS_MAX_BYTES: u64 = 1 << 30;

/// Invocations of a transmit workgroup (`WG` in simulate.wgsl), which
/// share a scatterer's frequencies.
pub const TRANSMIT_WORKGROUP: u32 = 32;

/// A simulation being recorded batch by batch ([`Simulate::begin`]).
pub struct SimJob {
    buffers: SimBuffers,
    pipelines: Specialised,
    /// The receive kernel `pipelines` holds.
    receive: Receive,
    /// Bind the scatterers (the buffers' own, or an uploaded set, which
    /// the groups keep alive) and the parameter blocks: one group, or one
    /// per batch when each batch keeps its heads and taps
    /// ([`SimJob::own_taps`]).
    groups: Vec<wgpu::BindGroup>,
    stride: u32,
    n: usize,
    batch: usize,
    n_batches: usize,
    /// Transmit-and-receive parameter blocks per batch: 1 + wave groups.
    per_batch: usize,
    /// [`Base::Keep`]: the resolve keeps the sum and writes no frames.
    keep: bool,
    /// Accumulators cleared (the first step's work).
    started: bool,
    /// The next batch whose bound-only transmit pass is to be recorded,
    /// or (`own_taps`) whose transmit is.
    next_bound: usize,
    /// The next batch to record in full (transmit with taps, receive), or
    /// (`own_taps`) whose receive is.
    next: usize,
}

/// Bound-only transmit batches recorded for one unit of a step's budget.
/// Measured on lavapipe (hip scene, 128 elements, 1 wave, batches of
/// 300): a bound-only batch costs ~20 ms, a full one ~80 ms, so four
/// bound batches weigh about one full batch and no screen frame carries
/// the whole bound pass (it was a 0.7 s stall at 9 000 scatterers).
pub const BOUND_BATCHES_PER_UNIT: usize = 4;

/// Batches that keep their own taps, recorded per unit: two transmits, or
/// two receives. On lavapipe (same scene, batches of 300) a transmit costs
/// ~24 ms and a receive ~36 ms, so no unit outweighs a full batch and
/// the bound-only units before; one batch per unit took 64 screen frames
/// per image against 40 and halved the images per second in the window.
pub const OWN_TAPS_BATCHES_PER_UNIT: usize = 2;

impl SimJob {
    /// Each batch writes its heads and taps into a region of its own (a
    /// bind group per batch), so every transmit runs before the first
    /// receive and leaves the bound complete: no bound-only pass.
    /// Otherwise the batches share one region, each transmit is followed
    /// by its receive, and with several batches the bound-only pass runs
    /// first.
    fn own_taps(&self) -> bool {
        self.groups.len() > 1
    }

    /// Where this job keeps its sum ([`Base::Keep`]), for [`Base::Add`].
    pub fn base(&self) -> wgpu::Buffer {
        self.buffers.base()
    }

    /// Units of work recorded and in all: one per full batch, plus one per
    /// [`BOUND_BATCHES_PER_UNIT`] batches of the bound-only pass (there is
    /// none when everything fits one batch); with `own_taps`, one per
    /// [`OWN_TAPS_BATCHES_PER_UNIT`] transmits and as many receives.
    pub fn progress(&self) -> (usize, usize) {
        if self.own_taps() {
            let units = |b: usize| b.div_ceil(OWN_TAPS_BATCHES_PER_UNIT);
            return (
                units(self.next_bound) + units(self.next),
                2 * units(self.n_batches),
            );
        }
        let bound_units = |b: usize| {
            if self.n_batches > 1 {
                b.div_ceil(BOUND_BATCHES_PER_UNIT)
            } else {
                0
            }
        };
        (
            bound_units(self.next_bound) + self.next,
            bound_units(self.n_batches) + self.n_batches,
        )
    }
}

pub struct Simulate {
    layout: wgpu::BindGroupLayout,
    pipeline_layout: wgpu::PipelineLayout,
    module: wgpu::ShaderModule,
    /// The entry points by (`N_SEGMENTS`, `FREQ_BLOCK`, receive kernel),
    /// made on first use.
    specialised: Specialisations<(u32, u32, Receive), Specialised>,
    /// [`Simulate::set_receive`]; [`Receive::for_adapter`] until then.
    receive: std::sync::Mutex<Receive>,
    /// Bytes of taps a simulation in several batches may keep for all of
    /// them (`u64::MAX`: a buffer's worth, up to [`OWN_TAPS_MAX_BYTES`]);
    /// [`Simulate::set_taps_budget`].
    taps_budget: std::sync::atomic::AtomicU64,
}

impl Simulate {
    pub fn new(ctx: &GpuContext) -> Simulate {
        let device = &ctx.device;
        let module = shaders::module(device, STAGE);
        use Binding::*;
        let (bgl, pl) = layout(
            device,
            STAGE,
            &[
                UniformDynamic,
                Read,
                Read,
                ReadWrite,
                ReadWrite,
                ReadWrite,
                ReadWrite,
                ReadWrite,
                ReadWrite,
            ],
        );
        Simulate {
            layout: bgl,
            pipeline_layout: pl,
            module,
            specialised: Specialisations::new(STAGE),
            receive: std::sync::Mutex::new(Receive::for_adapter(ctx.info.device_type)),
            taps_budget: std::sync::atomic::AtomicU64::new(u64::MAX),
        }
    }

    /// Make the pipelines `plan` runs now rather than at its first job:
    /// lavapipe compiles at creation (~0.3 s for the pair, which held a
    /// display's first image frame for 0.4 s).
    pub fn prepare(&self, device: &wgpu::Device, plan: &SimPlan) -> Result<(), PipelineError> {
        self.specialised(device, plan, self.receive()).map(|_| ())
    }

    /// The entry points for `plan`'s segment count and frequency block (a
    /// plan's settings give one set; the display uses one per approach)
    /// and the receive kernel set now.
    fn specialised(
        &self,
        device: &wgpu::Device,
        plan: &SimPlan,
        receive: Receive,
    ) -> Result<Specialised, PipelineError> {
        let segments = plan.params.n_segments;
        let block = plan.params.n_freq.div_ceil(TRANSMIT_WORKGROUP);
        if !(1..=MAX_SEGMENTS as u32).contains(&segments)
            || block > MAX_FREQ as u32 / TRANSMIT_WORKGROUP
        {
            return Err(PipelineError::Settings(format!(
                "simulation plan with {segments} segments per element and {} frequencies; the shader runs 1 to {MAX_SEGMENTS} segments and up to {MAX_FREQ} frequencies",
                plan.params.n_freq
            )));
        }
        self.specialised.get((segments, block, receive), || {
            let constants = [
                ("N_SEGMENTS", segments as f64),
                ("FREQ_BLOCK", block as f64),
            ];
            let make = |entry: &str, zero_workgroup_memory: bool| {
                specialised_pipeline(
                    device,
                    STAGE,
                    &self.module,
                    &self.pipeline_layout,
                    entry,
                    &constants,
                    zero_workgroup_memory,
                )
            };
            Specialised {
                // transmit writes every word of workgroup memory before
                // reading it; zeroing its ~5 KB per workgroup (the WebGPU
                // default; 12 KB when it was measured) would cost more
                // than the rest of transmit on lavapipe.
                transmit: make("transmit", false),
                // receive_tiled's window starts zeroed.
                receive: make(receive.entry(), true),
                peak: make("peak", true),
                resolve: make("resolve", true),
            }
        })
    }

    /// The receive kernel of the jobs begun from now on (the bits are the
    /// same either way; tested).
    pub fn set_receive(&self, receive: Receive) {
        *self.receive.lock().unwrap_or_else(|e| e.into_inner()) = receive;
    }

    pub fn receive(&self) -> Receive {
        *self.receive.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Cap the taps a simulation in several batches keeps for all of them
    /// (`None`: as much as one buffer holds, up to
    /// [`OWN_TAPS_MAX_BYTES`]). Past it the batches share
    /// one region and a bound-only transmit pass runs first; the bits are
    /// the same either way (tests force both).
    pub fn set_taps_budget(&self, bytes: Option<u64>) {
        self.taps_budget.store(
            bytes.unwrap_or(u64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Scatterers per batch: the transmit taps of a batch must fit one
    /// storage binding.
    pub fn batch_size(ctx: &GpuContext, plan: &SimPlan, n: usize) -> usize {
        let per = ((plan.n_waves() * plan.n_taps()) as u64 * TAP_BYTES).max(1);
        let fit = (ctx.max_binding() / per).max(1) as usize;
        n.clamp(1, fit.min(1 << 22))
    }

    /// Record the simulation of `scatterers` into a new RF buffer.
    pub fn encode(
        &self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        plan: &SimPlan,
        scatterers: &GpuScatterers,
    ) -> Result<GpuChannels, PipelineError> {
        self.encode_timed(ctx, enc, &mut GpuTimer::off(), plan, scatterers)
    }

    /// [`Simulate::encode`], each phase in a scope of `timer` ([`PHASES`]).
    pub fn encode_timed(
        &self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        timer: &mut GpuTimer,
        plan: &SimPlan,
        scatterers: &GpuScatterers,
    ) -> Result<GpuChannels, PipelineError> {
        let mut job = self.begin(ctx, plan, scatterers, None)?;
        self.step(ctx, enc, timer, plan, &mut job, usize::MAX);
        Ok(self.finish(ctx, enc, timer, plan, job).0)
    }

    /// Allocate a simulation that can be recorded a few batches at a time
    /// ([`Simulate::step`]) over several submissions, then resolved
    /// ([`Simulate::finish`]): the display spreads a frame's simulation
    /// over many screen frames so that, on a one-queue adapter (lavapipe),
    /// the composite is not stuck behind seconds of simulation. `batch`
    /// caps the scatterers per batch (`None`: as many as a binding holds).
    /// The fixed-point sums make the result identical to [`Simulate::encode`].
    pub fn begin(
        &self,
        ctx: &GpuContext,
        plan: &SimPlan,
        scatterers: &GpuScatterers,
        batch: Option<usize>,
    ) -> Result<SimJob, PipelineError> {
        let buffers = SimBuffers::new(ctx, plan)?;
        let bound = (scatterers.count > 0).then(|| scatterers.buffer.clone());
        self.job(
            ctx,
            plan,
            buffers,
            (bound, scatterers.count),
            batch,
            Base::None,
        )
    }

    /// As [`Simulate::begin`], in `buffers` kept from an earlier run of the
    /// same plan: the scatterers (checked) go up by a queue write, and
    /// only buffers too small for this run are replaced. `base` makes the
    /// run one layer of a sum ([`Base`]).
    pub fn begin_in(
        &self,
        ctx: &GpuContext,
        plan: &SimPlan,
        mut buffers: SimBuffers,
        scatterers: &[Scatterer],
        batch: Option<usize>,
        base: Base,
    ) -> Result<SimJob, PipelineError> {
        crate::sim::validate_scatterers(scatterers).map_err(settings_error)?;
        let rows = gpu_rows(scatterers);
        grow(
            ctx,
            &mut buffers.scatterers,
            "sonoguide.simulate.scatterers",
            (rows.len() * 16) as u64,
            Bound::Whole,
        )?;
        if !rows.is_empty() {
            ctx.queue
                .write_buffer(&buffers.scatterers, 0, bytemuck::cast_slice(&rows));
        }
        self.job(ctx, plan, buffers, (None, scatterers.len()), batch, base)
    }

    /// `scatterers`: their buffer (`None`: the buffers' own) and count.
    fn job(
        &self,
        ctx: &GpuContext,
        plan: &SimPlan,
        mut buffers: SimBuffers,
        (scatterers, n): (Option<wgpu::Buffer>, usize),
        batch: Option<usize>,
        base: Base,
    ) -> Result<SimJob, PipelineError> {
        let nw = plan.n_waves();
        let frame_bytes = (plan.frame_len() * 4) as u64;
        let resolve_flags = match &base {
            Base::None => 0,
            Base::Keep => {
                grow(
                    ctx,
                    &mut buffers.base,
                    "sonoguide.simulate.base",
                    frame_bytes,
                    Bound::Whole,
                )?;
                FLAG_BASE_KEEP
            }
            Base::Add(b) => {
                if b.size() < frame_bytes {
                    return Err(PipelineError::Settings(format!(
                        "simulation: the kept sum to add holds {} bytes, this plan's frame {frame_bytes}: keep it from a run of the same plan",
                        b.size()
                    )));
                }
                FLAG_BASE_ADD
            }
        };
        if ctx.info.device_type == wgpu::DeviceType::Cpu
            && plan.transmit_iterations() > SOFTWARE_LOOP_LIMIT
        {
            return Err(PipelineError::Settings(format!(
                "simulation: a transmit window of {:.0} periods needs {} loop iterations per invocation; software Vulkan (lavapipe) stops an invocation after 65 535. Lower `tx_window`.",
                plan.window_periods(),
                plan.transmit_iterations()
            )));
        }
        let batch = Self::batch_size(ctx, plan, n).min(batch.unwrap_or(usize::MAX).max(1));
        let n_batches = n.div_ceil(batch).max(1);
        // A batch's heads and taps, in regions aligned for binding at an offset.
        let align = ctx.device.limits().min_storage_buffer_offset_alignment as u64;
        let heads_region = (((nw + 2) * batch * 16) as u64).next_multiple_of(align);
        let taps_region = ((nw * batch * plan.n_taps()) as u64 * TAP_BYTES).next_multiple_of(align);
        // Batches that all fit keep their own taps (the display's paced
        // preset cuts ~9 000 scatterers into batches of 300 to spread the
        // work over screen frames, and a `quality` tissue of ~42 000 is two
        // batches on lavapipe, whose bindings stop at 128 MiB); only a
        // simulation whose taps exceed a buffer, or OWN_TAPS_MAX_BYTES,
        // pays for the bound-only pass.
        let budget = ctx
            .max_buffer()
            .min(OWN_TAPS_MAX_BYTES)
            .min(self.taps_budget.load(std::sync::atomic::Ordering::Relaxed));
        let own_taps = n_batches > 1 && taps_region * n_batches as u64 <= budget;
        let regions = if own_taps { n_batches as u64 } else { 1 };
        grow(
            ctx,
            &mut buffers.heads,
            "sonoguide.simulate.heads",
            heads_region * regions,
            Bound::InRegions,
        )?;
        grow(
            ctx,
            &mut buffers.taps,
            "sonoguide.simulate.taps",
            taps_region * regions,
            Bound::InRegions,
        )?;

        // Every dispatch's parameters, written once: the bound-only pass's
        // (one per batch), each batch's transmit and receive groups, and
        // the resolve's. The passes pick theirs by dynamic offset.
        let groups = nw.div_ceil(plan.wave_group());
        let per_batch = 1 + groups;
        let stride = block_stride(ctx);
        let blocks = n_batches * (1 + per_batch) + 1;
        let mut bytes = vec![0u8; blocks * stride as usize];
        let mut put = |i: usize, p: SimulateParams| {
            bytes[i * stride as usize..][..std::mem::size_of::<SimulateParams>()]
                .copy_from_slice(bytemuck::bytes_of(&p));
        };
        for b in 0..n_batches {
            let mut p = plan.params;
            p.batch_start = (b * batch) as u32;
            p.batch_len = n.saturating_sub(b * batch).min(batch) as u32;
            put(b, p);
            p.flags |= FLAG_WRITE_TAPS;
            put(n_batches + b * per_batch, p);
            for g in 0..groups {
                let mut pw = p;
                pw.wave_start = (g * plan.wave_group()) as u32;
                pw.wave_end = ((g + 1) * plan.wave_group()).min(nw) as u32;
                put(n_batches + b * per_batch + 1 + g, pw);
            }
        }
        let mut resolve = plan.params;
        resolve.flags |= resolve_flags;
        put(blocks - 1, resolve);
        if buffers.params.size() < bytes.len() as u64 {
            buffers.params = uniform_blocks(ctx, blocks);
        }
        ctx.queue.write_buffer(&buffers.params, 0, &bytes);

        let scatterers = scatterers.unwrap_or_else(|| buffers.scatterers.clone());
        let base_buffer = match &base {
            Base::Add(b) => b.clone(),
            _ => buffers.base.clone(),
        };
        let params = wgpu::BufferBinding {
            buffer: &buffers.params,
            offset: 0,
            size: wgpu::BufferSize::new(std::mem::size_of::<SimulateParams>() as u64),
        };
        let group = |region: u64| {
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(params.clone()),
            }];
            for (i, resource) in [
                buffers.tables.as_entire_binding(),
                scatterers.as_entire_binding(),
                region_of(&buffers.heads, region, heads_region),
                region_of(&buffers.taps, region, taps_region),
                buffers.state.as_entire_binding(),
                buffers.acc.as_entire_binding(),
                buffers.rf.as_entire_binding(),
                base_buffer.as_entire_binding(),
            ]
            .into_iter()
            .enumerate()
            {
                entries.push(wgpu::BindGroupEntry {
                    binding: i as u32 + 1,
                    resource,
                });
            }
            ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("sonoguide.simulate"),
                layout: &self.layout,
                entries: &entries,
            })
        };
        let groups = (0..regions).map(group).collect();
        let receive = self.receive();
        Ok(SimJob {
            pipelines: self.specialised(&ctx.device, plan, receive)?,
            receive,
            buffers,
            groups,
            stride: stride as u32,
            n,
            batch,
            n_batches,
            per_batch,
            keep: matches!(base, Base::Keep),
            started: false,
            next_bound: 0,
            next: 0,
        })
    }

    /// Record up to `units` more units of `job` ([`SimJob::progress`]);
    /// true once every batch is recorded. The first call clears the
    /// accumulators. Every contribution's bound (the fixed-point unit) must
    /// be known before the first receive: with several batches that keep
    /// their own taps, every transmit is recorded before the first receive
    /// ([`OWN_TAPS_BATCHES_PER_UNIT`] a unit); when they share one region, a bound-only transmit
    /// pass over all of them comes first, [`BOUND_BATCHES_PER_UNIT`]
    /// batches a unit, then each batch's transmit and receive (a unit).
    /// The dispatch order does not depend on `units`, so neither do the
    /// bits, and the bound is the same in both schemes.
    pub fn step(
        &self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        timer: &mut GpuTimer,
        plan: &SimPlan,
        job: &mut SimJob,
        units: usize,
    ) -> bool {
        let (n, batch, n_batches) = (job.n, job.batch, job.n_batches);
        let len = |b: usize| n.saturating_sub(b * batch).min(batch) as u32;
        let offset = |block: usize| [block as u32 * job.stride];
        // Batch b's transmit (taps written) parameter block; its receive
        // groups' follow it. Blocks 0..n_batches are the bound-only pass's.
        let full = |b: usize| n_batches + b * job.per_batch;
        if !job.started {
            enc.clear_buffer(&job.buffers.state, 0, None);
            enc.clear_buffer(&job.buffers.acc, 0, None);
            job.started = true;
        }
        if n == 0 {
            job.next_bound = n_batches;
            job.next = n_batches;
            return true;
        }
        // Each phase in a pass and a timer scope of its own
        // (PHASES): where a frame's simulation time goes.
        let mut units = units;
        let group = |b: usize| &job.groups[b.min(job.groups.len() - 1)];
        // transmit: one workgroup per (wave, scatterer); receive: one
        // invocation per (scatterer, element), by groups of waves.
        let transmit = |pass: &mut wgpu::ComputePass, b: usize, block: usize| {
            pass.set_bind_group(0, group(b), &offset(block));
            let (gx, gy) = dispatch_size(len(b) * plan.params.n_waves, 1);
            pass.dispatch_workgroups(gx, gy, 1);
        };
        let invocations = |b: usize| match job.receive {
            Receive::Direct => len(b).div_ceil(2) * plan.params.n_elements,
            Receive::Tiled => len(b).div_ceil(RECEIVE_TILE) * RECEIVE_TILE * plan.params.n_elements,
        };
        let receive = |pass: &mut wgpu::ComputePass, b: usize| {
            for g in 1..job.per_batch {
                pass.set_bind_group(0, group(b), &offset(full(b) + g));
                let (gx, gy) = dispatch_size(invocations(b), WORKGROUP);
                pass.dispatch_workgroups(gx, gy, 1);
            }
        };
        let own_taps = job.own_taps();
        if n_batches == 1 {
            // One batch: its own transmit gives the bound.
            job.next_bound = n_batches;
        }
        // Transmits from batch `job.next_bound` on, `per_unit` batches a
        // unit while units last, in one pass timed as `phase`; `block(b)`
        // is batch b's parameter block (taps written, or the bound only).
        let mut transmits = |phase: &str, per_unit: usize, block: &dyn Fn(usize) -> usize| {
            if job.next_bound >= n_batches || units == 0 {
                return;
            }
            timer.scope(ctx, enc, phase, |enc| {
                let mut pass = compute_pass(enc, &format!("sonoguide.{phase}"));
                pass.set_pipeline(&job.pipelines.transmit);
                while job.next_bound < n_batches && units > 0 {
                    let end = (job.next_bound + per_unit).min(n_batches);
                    for b in job.next_bound..end {
                        transmit(&mut pass, b, block(b));
                    }
                    job.next_bound = end;
                    units -= 1;
                }
            });
        };
        if own_taps {
            // Every transmit (taps written, bounds taken), then every receive.
            transmits(PHASES[1], OWN_TAPS_BATCHES_PER_UNIT, &full);
            let end = job
                .next
                .saturating_add(units.saturating_mul(OWN_TAPS_BATCHES_PER_UNIT))
                .min(n_batches);
            if job.next < end {
                timer.scope(ctx, enc, PHASES[2], |enc| {
                    let mut pass = compute_pass(enc, "sonoguide.simulate.receive");
                    pass.set_pipeline(&job.pipelines.receive);
                    for b in job.next..end {
                        receive(&mut pass, b);
                    }
                });
            }
            job.next = end;
            return end == n_batches;
        }
        transmits(PHASES[0], BOUND_BATCHES_PER_UNIT, &|b| b);
        let end = job.next.saturating_add(units).min(n_batches);
        for b in job.next..end {
            timer.scope(ctx, enc, PHASES[1], |enc| {
                let mut pass = compute_pass(enc, "sonoguide.simulate.transmit");
                pass.set_pipeline(&job.pipelines.transmit);
                transmit(&mut pass, b, full(b));
            });
            timer.scope(ctx, enc, PHASES[2], |enc| {
                let mut pass = compute_pass(enc, "sonoguide.simulate.receive");
                pass.set_pipeline(&job.pipelines.receive);
                receive(&mut pass, b);
            });
        }
        job.next = end;
        end == n_batches
    }

    /// Record the end of `job` (noise, then the accumulators to RF) once
    /// every batch is recorded; returns its channel data, in the job's RF
    /// buffer, and the buffers for the next run.
    pub fn finish(
        &self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        timer: &mut GpuTimer,
        plan: &SimPlan,
        job: SimJob,
    ) -> (GpuChannels, SimBuffers) {
        debug_assert!(
            job.started && job.next == job.n_batches,
            "finish before every batch was recorded"
        );
        let (nw, ne, ns) = (plan.n_waves(), plan.n_elements(), plan.samples);
        timer.scope(ctx, enc, PHASES[3], |enc| {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("sonoguide.simulate.resolve"),
                timestamp_writes: None,
            });
            let last = job.n_batches * (1 + job.per_batch);
            pass.set_bind_group(0, &job.groups[0], &[last as u32 * job.stride]);
            let (gx, gy) = dispatch_size((nw * ne * ns) as u32, WORKGROUP);
            if plan.params.noise_level > 0.0 && !job.keep {
                pass.set_pipeline(&job.pipelines.peak);
                pass.dispatch_workgroups(gx, gy, 1);
            }
            pass.set_pipeline(&job.pipelines.resolve);
            pass.dispatch_workgroups(gx, gy, 1);
        });
        (job.buffers.channels(plan), job.buffers)
    }

    /// Simulate on the GPU and read the channel data back.
    pub fn run(
        &self,
        ctx: &GpuContext,
        plan: &SimPlan,
        scatterers: &[Scatterer],
    ) -> Result<ChannelData, PipelineError> {
        Ok(self
            .run_timed(ctx, plan, scatterers, &mut GpuTimer::off())?
            .0)
    }

    /// [`Simulate::run`], with the time of each phase ([`PHASES`]) where
    /// `timer` has a source (`None` otherwise).
    pub fn run_timed(
        &self,
        ctx: &GpuContext,
        plan: &SimPlan,
        scatterers: &[Scatterer],
        timer: &mut GpuTimer,
    ) -> Result<(ChannelData, Option<FrameTimings>), PipelineError> {
        let gpu = GpuScatterers::upload(ctx, scatterers)?;
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("sonoguide.simulate"),
            });
        timer.begin_frame(0);
        let channels = self.encode_timed(ctx, &mut enc, timer, plan, &gpu)?;
        timer.finish(ctx, &mut enc);
        ctx.queue.submit([enc.finish()]);
        timer.submitted();
        ctx.take_error(STAGE)?;
        let rf: Vec<f32> = ctx.read_buffer(&channels.buffer, plan.frames * plan.frame_len())?;
        ctx.take_error("simulate readback")?;
        let phases = match timer.source() {
            Some(_) => timer.wait(ctx)?.into_iter().next(),
            None => None,
        };
        Ok((plan.channel_data(rf), phases))
    }
}
