//! `sonoguide bench --tune`: every DAS tiling the adapter can run, timed
//! on the workload in one process, and the fastest one taken.
//!
//! The defaults ([`DasTiling::for_adapter`]) were measured on lavapipe and
//! one H200; another card (or another workload shape) may prefer another
//! tiling. Timing each tiling in a process of its own (as
//! `scripts/gpu_bench.sh` did) pays a start, a data load and a pipeline
//! build per point, and compares runs minutes apart on a machine whose
//! clocks drift. Here the channel data are uploaded and demodulated once,
//! every candidate beamforms them, the candidates take turns in rounds
//! (forward, then backward, so none always runs first or last), and each
//! image is checked against the adapter's default f32 image: a tiling that
//! beamforms faster but wrong is listed and never chosen.

use serde::Serialize;

use super::measure::{self, median, Prepared};
use super::progress::Progress;
use super::workload::Workload;
use super::BenchError;
use crate::gpu::GpuContext;
use crate::pipeline::das::DasTiling;
use crate::pipeline::demodulate::DemodPlan;
use crate::pipeline::{Beamformer, GpuChannels};

/// max |image − the default f32 image| / its peak that a tiling may reach
/// and still be chosen: f32 rows sum the same terms in another order
/// (element split) or with delays shared across pixels, a few ulps of the
/// peak; f16 rows keep 11 bits per sample (under 1e-3 of the peak,
/// `tests/gpu_vs_cpu.rs`).
pub const F32_TOLERANCE: f64 = 1e-4;
pub const F16_TOLERANCE: f64 = 2e-3;

/// One candidate: the adapter's default tiling with rows in f32 or f16,
/// or a forced tiling (which says its rows' precision itself).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Candidate {
    Default { f16_rows: bool },
    Forced(DasTiling),
}

/// What one candidate measured.
#[derive(Debug, Clone, Serialize)]
pub struct TuneRow {
    /// `k` pixels per invocation, `r` vec4 per row (2 frames each), `w`
    /// window span, `s` threads per element loop, rows precision; e.g.
    /// `k1 r4 w0 s1 f32`. `(default)` marks the adapter's own choice.
    pub tiling: String,
    pub pixels_per_invocation: u32,
    pub row_vec4: u32,
    pub window_span: u32,
    pub element_split: u32,
    /// "f32" or "f16".
    pub rows: String,
    pub default: bool,
    /// Median kernel time over every round (NaN when it could not run).
    pub median_kernel_s: f64,
    pub runs: usize,
    pub points_per_s: f64,
    /// The default tiling's median (same rows precision) / this one's:
    /// above 1, faster than the default.
    pub speedup: f64,
    /// max |image − the default f32 image| / its peak.
    pub max_rel_err: f64,
    /// Why it did not run, or why it may not be chosen; empty otherwise.
    pub note: String,
    #[serde(skip)]
    pub effective: Option<DasTiling>,
}

impl TuneRow {
    /// A row before its times are in, for tiling `t`.
    fn new(
        t: DasTiling,
        default: bool,
        max_rel_err: f64,
        note: String,
        effective: Option<DasTiling>,
    ) -> TuneRow {
        TuneRow {
            tiling: format!("{}{}", label(&t), if default { " (default)" } else { "" }),
            pixels_per_invocation: t.pixels_per_invocation,
            row_vec4: t.row_vec4,
            window_span: t.window_span,
            element_split: t.element_split,
            rows: if t.f16_rows { "f16" } else { "f32" }.into(),
            default,
            median_kernel_s: f64::NAN,
            runs: 0,
            points_per_s: f64::NAN,
            speedup: f64::NAN,
            max_rel_err,
            note,
            effective,
        }
    }

    fn usable(&self) -> bool {
        self.note.is_empty() && self.median_kernel_s.is_finite()
    }
}

/// Compact label of an effective tiling.
pub fn label(t: &DasTiling) -> String {
    format!(
        "k{} r{} w{} s{} {}",
        t.pixels_per_invocation,
        t.row_vec4,
        t.window_span,
        t.element_split,
        if t.f16_rows { "f16" } else { "f32" }
    )
}

/// Every tiling `das.wgsl` can be specialised on for `frames` frames: the
/// two defaults first, then pixels per invocation {1, 2, 4, 8} × rows of
/// 1 to 8 vec4 (no longer than the frames need; f16 rows at least 2) ×
/// element loops split {1, 2, 4, 8} ways (one pixel per invocation only),
/// in f32 and f16. The window span is left to the geometry.
pub fn candidates(frames: usize) -> Vec<Candidate> {
    let r_max = DasTiling::row_vec4_for(frames);
    let mut out = vec![
        Candidate::Default { f16_rows: false },
        Candidate::Default { f16_rows: true },
    ];
    for f16_rows in [false, true] {
        for k in [1, 2, 4, 8] {
            for r in [1, 2, 4, 8] {
                let allowed = if f16_rows {
                    r >= 2 && r <= r_max.max(2)
                } else {
                    r <= r_max
                };
                if !allowed {
                    continue;
                }
                for s in [1, 2, 4, 8] {
                    if s > 1 && k != 1 {
                        continue;
                    }
                    out.push(Candidate::Forced(DasTiling {
                        pixels_per_invocation: k,
                        row_vec4: r,
                        window_span: 0,
                        f16_rows,
                        element_split: s,
                    }));
                }
            }
        }
    }
    out
}

/// Set `bf`'s DAS up as `c` asks.
fn apply(bf: &Beamformer, c: &Candidate) -> Result<(), BenchError> {
    match *c {
        Candidate::Default { f16_rows } => {
            bf.das.set_tiling(None)?;
            bf.das.set_f16_rows(f16_rows);
        }
        Candidate::Forced(t) => {
            bf.das.set_tiling(Some(t))?;
            bf.das.set_f16_rows(false);
        }
    }
    Ok(())
}

/// Apply `c` and beamform `base` with it.
fn prepare_with(
    ctx: &GpuContext,
    bf: &Beamformer,
    base: &Prepared,
    c: &Candidate,
) -> Result<Prepared, BenchError> {
    apply(bf, c)?;
    base.again(ctx, bf)
}

/// Time every candidate on `base`'s data: `rounds` rounds of `repeat`
/// runs each, every candidate once a round. `points` makes throughput.
/// Rows come back fastest first (those that could not run last); `bf` is
/// left on the adapter's defaults.
pub fn tune(
    ctx: &GpuContext,
    bf: &Beamformer,
    base: &Prepared,
    points: f64,
    rounds: usize,
    repeat: usize,
) -> Result<Vec<TuneRow>, BenchError> {
    let frames = base.channels.frames;
    let reference = {
        let p = prepare_with(ctx, bf, base, &Candidate::Default { f16_rows: false })?;
        measure::time_kernel(ctx, bf, &p, 2, 1)?;
        measure::read_image(ctx, &p)?
    };
    let peak = reference
        .iter()
        .map(|c| (c[0] as f64).hypot(c[1] as f64))
        .fold(0.0, f64::max);
    let cands = candidates(frames);
    let mut rows: Vec<TuneRow> = Vec::with_capacity(cands.len());
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); cands.len()];
    let mut live: Vec<bool> = vec![true; cands.len()];
    let mut bar = Progress::new(rounds * cands.len());
    for round in 0..rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..cands.len()).collect()
        } else {
            (0..cands.len()).rev().collect()
        };
        for i in order {
            if !live[i] {
                bar.inc();
                continue;
            }
            let c = &cands[i];
            let default = matches!(c, Candidate::Default { .. });
            bar.step(&match c {
                Candidate::Forced(t) => label(t),
                Candidate::Default { .. } => "default".into(),
            });
            let run = || -> Result<(Prepared, measure::KernelTimes), BenchError> {
                let p = prepare_with(ctx, bf, base, c)?;
                // The first round builds the pipeline: warm it up more.
                let k =
                    measure::time_runs(ctx, bf, &p, if round == 0 { 2 } else { 1 }, repeat, false)?;
                Ok((p, k))
            };
            match run() {
                Ok((p, k)) => {
                    times[i].extend(k.kernel_s);
                    if round == 0 {
                        let t = p.geometry.tiling;
                        let err = measure::read_image(ctx, &p).map(|img| {
                            img.iter()
                                .zip(&reference)
                                .map(|(a, b)| ((a[0] - b[0]) as f64).hypot((a[1] - b[1]) as f64))
                                .fold(0.0, f64::max)
                                / peak
                        })?;
                        let tol = if t.f16_rows {
                            F16_TOLERANCE
                        } else {
                            F32_TOLERANCE
                        };
                        // Forced tilings that the geometry made equal to
                        // one already listed are timed once.
                        let same = rows
                            .iter()
                            .find(|r| r.effective == Some(t) && r.note.is_empty())
                            .filter(|_| !default);
                        let duplicate = same.is_some();
                        let note = if let Some(r) = same {
                            format!("timed as {}", r.tiling)
                        } else if err.is_nan() || err > tol {
                            format!("wrong: error {err:.1e} above {tol:.0e}")
                        } else {
                            String::new()
                        };
                        if duplicate {
                            live[i] = false;
                        }
                        rows.push(TuneRow::new(t, default, err, note, Some(t)));
                    }
                }
                Err(e) => {
                    live[i] = false;
                    // A failed build or dispatch leaves its error behind.
                    let _ = ctx.take_error("bench --tune");
                    if round == 0 {
                        // The tiling asked for (the default's before the geometry shaped it).
                        let asked = match *c {
                            Candidate::Forced(t) => t,
                            Candidate::Default { f16_rows } => DasTiling {
                                f16_rows,
                                ..bf.das.default_tiling(frames)
                            },
                        };
                        let note = format!("could not run: {e}");
                        rows.push(TuneRow::new(asked, default, f64::NAN, note, None));
                    }
                }
            }
            bar.inc();
        }
    }
    bar.finish();
    // Round 0 pushed the rows in candidate order; match times to them.
    let order: Vec<usize> = (0..cands.len()).collect();
    for (row, i) in rows.iter_mut().zip(order) {
        if row.note.starts_with("timed as") {
            continue;
        }
        row.runs = times[i].len();
        if row.runs > 0 {
            row.median_kernel_s = median(&times[i]);
            row.points_per_s = points / row.median_kernel_s;
        }
    }
    for f16 in [false, true] {
        let base_s = rows
            .iter()
            .find(|r| r.default && (r.rows == "f16") == f16)
            .map(|r| r.median_kernel_s)
            .unwrap_or(f64::NAN);
        for r in rows.iter_mut().filter(|r| (r.rows == "f16") == f16) {
            r.speedup = base_s / r.median_kernel_s;
        }
    }
    rows.sort_by(|a, b| fastest_first(a.median_kernel_s, b.median_kernel_s));
    bf.das.set_tiling(None)?;
    bf.das.set_f16_rows(false);
    Ok(rows)
}

/// Shorter times first; those that could not be timed (NaN) last.
fn fastest_first(a: f64, b: f64) -> std::cmp::Ordering {
    b.is_finite().cmp(&a.is_finite()).then(a.total_cmp(&b))
}

/// `--tune` (bench and hfr): time every tiling on `p` and every
/// demodulation chunk length on `w`'s RF in `rounds` rounds of `repeat`
/// runs, and leave `bf` on the fastest correct ones: the tiling among
/// f16 rows (`f16`) or f32 rows, else the default at that precision.
/// `who` starts the lines that say what was chosen.
#[allow(clippy::too_many_arguments)]
pub fn tune_and_apply(
    ctx: &GpuContext,
    bf: &Beamformer,
    p: &Prepared,
    w: &Workload,
    rounds: usize,
    repeat: usize,
    f16: bool,
    who: &str,
) -> Result<(Vec<TuneRow>, Vec<DemodRow>), BenchError> {
    let rows = tune(ctx, bf, p, w.points(), rounds, repeat)?;
    let chosen = match best(&rows, f16).and_then(|b| b.effective.map(|t| (b, t))) {
        Some((b, t)) => {
            eprintln!(
                "{who}: tuned das: {} of {} tilings timed, fastest correct with {} rows: {} ({:.2}× the default)",
                rows.iter().filter(|r| r.median_kernel_s.is_finite()).count(),
                rows.len(),
                if f16 { "f16" } else { "f32" },
                b.tiling,
                b.speedup
            );
            Candidate::Forced(t)
        }
        None => {
            eprintln!("{who}: tuned das: no tiling ran correctly; the default it is");
            Candidate::Default { f16_rows: f16 }
        }
    };
    apply(bf, &chosen)?;
    let demod = tune_demod(ctx, bf, w, rounds, repeat)?;
    if let Some(b) = best_demod(&demod) {
        eprintln!(
            "{who}: tuned demodulation: chunks of {} samples, {} invocations ({:.2}× the default)",
            b.chunk, b.invocations, b.speedup
        );
        bf.demodulate.set_chunk(Some(b.chunk));
    }
    Ok((rows, demod))
}

/// The fastest usable row with rows in f16 (`f16`) or f32.
pub fn best(rows: &[TuneRow], f16: bool) -> Option<&TuneRow> {
    rows.iter()
        .filter(|r| r.usable() && (r.rows == "f16") == f16)
        .min_by(|a, b| a.median_kernel_s.total_cmp(&b.median_kernel_s))
}

/// One demodulation chunk length timed on the workload's RF.
#[derive(Debug, Clone, Serialize)]
pub struct DemodRow {
    /// Extended samples per chunk; the whole (extended) trace for one chunk.
    pub chunk: usize,
    pub chunks_per_trace: usize,
    /// Traces × chunks: the invocations of each of the two passes.
    pub invocations: usize,
    /// The adapter's own choice (`Demodulate::chunk_for`).
    pub default: bool,
    pub median_s: f64,
    pub runs: usize,
    /// The default's median / this one's.
    pub speedup: f64,
    /// max |IQ − whole traces' IQ| / its peak.
    pub max_rel_err: f64,
    pub note: String,
}

/// Chunks warm up from the filter's state at zero: the error they leave
/// is below 1e-9 of a sample after `warmup` samples (`warmup_of`), far
/// under f32's rounding; this allows for that rounding.
pub const DEMOD_TOLERANCE: f64 = 1e-5;

/// Time demodulation of `w`'s RF cut into chunks of several lengths: whole
/// traces, the adapter's default, chunks giving from 2 048 to 131 072
/// invocations, and chunks of 64 to 512 samples (none shorter than the
/// filter's warm-up), in `rounds` rounds of `repeat` runs; each checked
/// against whole traces. Empty for IQ data (nothing to demodulate). Rows
/// come back fastest first; `bf` is left on the adapter's chunks.
pub fn tune_demod(
    ctx: &GpuContext,
    bf: &Beamformer,
    w: &Workload,
    rounds: usize,
    repeat: usize,
) -> Result<Vec<DemodRow>, BenchError> {
    let (Some(settings), false) = (&w.demod, w.data.is_iq()) else {
        return Ok(Vec::new());
    };
    let plan = DemodPlan::new(&w.data.acquisition, settings)?;
    let rf = GpuChannels::upload(ctx, &w.data)?;
    let (traces, samples) = (rf.traces(), rf.samples);
    let len = plan.extended_len(samples);
    let floor = plan.warmup.max(32);
    let default = bf.demodulate.chunk_for(&plan, traces, samples);
    let mut chunks = vec![default, len];
    for target in [2_048usize, 8_192, 32_768, 131_072] {
        chunks.push(len.div_ceil(target.div_ceil(traces)).max(floor).min(len));
    }
    chunks.extend(
        [64, 128, 256, 512]
            .into_iter()
            .filter(|c| *c >= floor && *c < len),
    );
    let mut seen = Vec::new();
    chunks.retain(|c| {
        let new = !seen.contains(c);
        seen.push(*c);
        new
    });
    let run_with =
        |chunk: usize| -> Result<(crate::pipeline::demodulate::DemodTarget, usize), BenchError> {
            bf.demodulate.set_chunk(Some(chunk));
            let target = bf.demodulate.bind(ctx, &rf, &plan)?;
            Ok((target, chunk))
        };
    let reference: Vec<[f32; 2]> = {
        let (t, _) = run_with(len)?;
        measure::time_pass(ctx, "demodulate", 1, 1, |enc| bf.demodulate.record(enc, &t))?;
        ctx.read_buffer(&t.iq.buffer, traces * samples)?
    };
    let peak = reference
        .iter()
        .map(|c| (c[0] as f64).hypot(c[1] as f64))
        .fold(0.0, f64::max);
    let mut rows: Vec<DemodRow> = chunks
        .iter()
        .map(|&c| DemodRow {
            chunk: c,
            chunks_per_trace: len.div_ceil(c),
            invocations: traces * len.div_ceil(c),
            default: c == default,
            median_s: f64::NAN,
            runs: 0,
            speedup: f64::NAN,
            max_rel_err: f64::NAN,
            note: String::new(),
        })
        .collect();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); rows.len()];
    for round in 0..rounds {
        for i in 0..rows.len() {
            let i = if round % 2 == 0 {
                i
            } else {
                rows.len() - 1 - i
            };
            if !rows[i].note.is_empty() {
                continue;
            }
            let run = || -> Result<(Vec<f64>, f64), BenchError> {
                let (t, _) = run_with(rows[i].chunk)?;
                let s = measure::time_pass(
                    ctx,
                    "demodulate",
                    if round == 0 { 2 } else { 1 },
                    repeat,
                    |enc| bf.demodulate.record(enc, &t),
                )?;
                let err = if round == 0 {
                    let iq: Vec<[f32; 2]> = ctx.read_buffer(&t.iq.buffer, traces * samples)?;
                    iq.iter()
                        .zip(&reference)
                        .map(|(a, b)| ((a[0] - b[0]) as f64).hypot((a[1] - b[1]) as f64))
                        .fold(0.0, f64::max)
                        / peak
                } else {
                    rows[i].max_rel_err
                };
                Ok((s, err))
            };
            match run() {
                Ok((s, err)) => {
                    times[i].extend(s);
                    rows[i].max_rel_err = err;
                    if err.is_nan() || err > DEMOD_TOLERANCE {
                        rows[i].note =
                            format!("wrong: error {err:.1e} above {DEMOD_TOLERANCE:.0e}");
                    }
                }
                Err(e) => {
                    let _ = ctx.take_error("bench --tune: demodulate");
                    rows[i].note = format!("could not run: {e}");
                }
            }
        }
    }
    bf.demodulate.set_chunk(None);
    for (r, t) in rows.iter_mut().zip(&times) {
        r.runs = t.len();
        if !t.is_empty() {
            r.median_s = median(t);
        }
    }
    let base = rows
        .iter()
        .find(|r| r.default)
        .map_or(f64::NAN, |r| r.median_s);
    for r in rows.iter_mut() {
        r.speedup = base / r.median_s;
    }
    rows.sort_by(|a, b| fastest_first(a.median_s, b.median_s));
    Ok(rows)
}

/// The fastest correct chunk length.
pub fn best_demod(rows: &[DemodRow]) -> Option<&DemodRow> {
    rows.iter()
        .filter(|r| r.note.is_empty() && r.median_s.is_finite())
        .min_by(|a, b| a.median_s.total_cmp(&b.median_s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_valid_and_distinct() {
        for frames in [1, 2, 4, 8, 32] {
            let c = candidates(frames);
            for x in &c {
                if let Candidate::Forced(t) = x {
                    t.validate().unwrap();
                    assert!(
                        t.frames_per_block() <= 2 * DasTiling::row_vec4_for(frames).max(2) as usize
                    );
                }
            }
            for (i, a) in c.iter().enumerate() {
                assert!(!c[i + 1..].contains(a), "{a:?} twice");
            }
        }
        // 32 frames: f32 rows 1-8 vec4 (k = 1: 4 splits; k = 2, 4, 8: 1),
        // f16 rows 2-8: (4 + 3) × 4 + (3 + 3) × 3, the two defaults.
        assert_eq!(candidates(32).len(), 2 + 4 * 4 + 3 * 4 + 3 * 4 + 3 * 3);
    }
}
