//! CPU twin of `shaders/demodulate.wgsl`: one trace at a time, the f32
//! signal path of the shader (u32 phase accumulator, odd extension of the
//! mixed signal, cascaded second-order sections in transposed direct form
//! II, forward then backward, ×2). `reference::filter` holds the f64
//! scipy/MATLAB-exact filtfilt both are checked against.

use super::filter::{DemodParams, FilterError, PHASE_UNIT};

/// RF·exp(−j2π·cycles(k)) in f32, with the phase from the u32 accumulator.
#[inline]
fn mix_f32(rf: f32, k: usize, phase0: u32, step: u32) -> [f32; 2] {
    let ph = phase0.wrapping_add((k as u32).wrapping_mul(step));
    let cycles = (ph as i32) as f32 * PHASE_UNIT;
    let ang = cycles * std::f32::consts::TAU;
    [rf * ang.cos(), -(rf * ang.sin())]
}

/// Sample i of the odd-extended mixed signal (i in 0..n + 2·pad), computed on
/// the fly so the shader needs no buffer for the extension.
#[inline]
pub(crate) fn ext_sample_f32(rf: &[f32], i: usize, pad: usize, phase0: u32, step: u32) -> [f32; 2] {
    let n = rf.len();
    let m = |k: usize| mix_f32(rf[k], k, phase0, step);
    if i < pad {
        let e = m(0);
        let v = m(pad - i);
        [2.0 * e[0] - v[0], 2.0 * e[1] - v[1]]
    } else if i < pad + n {
        m(i - pad)
    } else {
        let e = m(n - 1);
        let v = m(n - 2 - (i - pad - n));
        [2.0 * e[0] - v[0], 2.0 * e[1] - v[1]]
    }
}

/// One sample through the cascade of biquads (scipy `sosfilt` order of
/// operations, transposed direct form II), real and imaginary in lockstep.
#[inline]
fn sos_step_f32(coef: &[[f32; 6]], state: &mut [[[f32; 2]; 2]], x: [f32; 2]) -> [f32; 2] {
    let mut v = x;
    for (c, s) in coef.iter().zip(state.iter_mut()) {
        let mut y = [0.0f32; 2];
        for j in 0..2 {
            y[j] = c[0] * v[j] + s[0][j];
            s[0][j] = c[1] * v[j] - c[4] * y[j] + s[1][j];
            s[1][j] = c[2] * v[j] - c[5] * y[j];
        }
        v = y;
    }
    v
}

/// Most sections the shader supports (order ≤ 16, as `MAX_SECTIONS` in
/// `pipeline::demodulate`); the state lives in a private array of this size.
pub const MAX_SECTIONS: usize = 8;

/// CPU twin of the demodulation shader for one trace: mix to baseband, odd
/// extension of the *mixed* signal by `padlen`, forward SOS pass from
/// `zi·ext[0]` into `scratch`, backward pass from `zi·scratch[last]`, output
/// ×2. f32 throughout the signal path; coefficients are rounded to f32 as
/// they would be in a uniform buffer.
///
/// `out.len()` must equal `rf.len()`, `scratch.len()` must be at least
/// `rf.len() + 2·padlen`, and `rf.len() > padlen` (scipy's rule).
pub fn demodulate_trace_f32(
    rf: &[f32],
    out: &mut [[f32; 2]],
    scratch: &mut [[f32; 2]],
    p: &DemodParams,
) -> Result<(), FilterError> {
    let n = rf.len();
    let pad = p.padlen;
    let n_ext = n + 2 * pad;
    if n <= pad || n < 2 {
        return Err(FilterError::TooShort {
            len: n,
            padlen: pad,
        });
    }
    if out.len() != n {
        return Err(FilterError::BufferSize {
            what: "out",
            len: out.len(),
            needed: n,
        });
    }
    if scratch.len() < n_ext {
        return Err(FilterError::BufferSize {
            what: "scratch",
            len: scratch.len(),
            needed: n_ext,
        });
    }
    let ns = p.sos.len();
    if ns == 0 || ns > MAX_SECTIONS || p.zi.len() != ns {
        return Err(FilterError::BadCoefficients);
    }
    let mut coef = [[0.0f32; 6]; MAX_SECTIONS];
    let mut zi = [[0.0f32; 2]; MAX_SECTIONS];
    for s in 0..ns {
        coef[s] = p.sos[s].map(|v| v as f32);
        zi[s] = p.zi[s].map(|v| v as f32);
    }
    let coef = &coef[..ns];

    // Forward pass over the extended signal.
    let mut state = [[[0.0f32; 2]; 2]; MAX_SECTIONS];
    let x0 = ext_sample_f32(rf, 0, pad, p.phase0, p.phase_step);
    for s in 0..ns {
        for r in 0..2 {
            state[s][r] = [zi[s][r] * x0[0], zi[s][r] * x0[1]];
        }
    }
    for (i, slot) in scratch.iter_mut().enumerate().take(n_ext) {
        let x = ext_sample_f32(rf, i, pad, p.phase0, p.phase_step);
        *slot = sos_step_f32(coef, &mut state[..ns], x);
    }

    // Backward pass; the samples below `pad` would only be discarded, so
    // the loop stops at the first output sample.
    let y0 = scratch[n_ext - 1];
    for s in 0..ns {
        for r in 0..2 {
            state[s][r] = [zi[s][r] * y0[0], zi[s][r] * y0[1]];
        }
    }
    let mut i = n_ext;
    while i > pad {
        i -= 1;
        let y = sos_step_f32(coef, &mut state[..ns], scratch[i]);
        if i < pad + n {
            out[i - pad] = [2.0 * y[0], 2.0 * y[1]];
        }
    }
    Ok(())
}

/// Demodulates `n_traces` traces of `n_samples` stored trace after trace
/// (`rf[t·n_samples + k]`), one [`demodulate_trace_f32`] per trace as the
/// shader's invocations would. Output has the same layout.
pub fn demodulate(
    rf: &[f32],
    n_traces: usize,
    n_samples: usize,
    p: &DemodParams,
) -> Result<Vec<[f32; 2]>, FilterError> {
    let total = n_traces
        .checked_mul(n_samples)
        .ok_or(FilterError::BadParameter("n_traces·n_samples overflows"))?;
    if n_traces > 0 && (n_samples <= p.padlen || n_samples < 2) {
        return Err(FilterError::TooShort {
            len: n_samples,
            padlen: p.padlen,
        });
    }
    if rf.len() != total {
        return Err(FilterError::BufferSize {
            what: "rf",
            len: rf.len(),
            needed: total,
        });
    }
    if total == 0 {
        return Ok(Vec::new());
    }
    let mut out = vec![[0.0f32; 2]; total];
    let mut scratch = vec![[0.0f32; 2]; p.scratch_len(n_samples)];
    for (src, dst) in rf
        .chunks_exact(n_samples)
        .zip(out.chunks_exact_mut(n_samples))
    {
        demodulate_trace_f32(src, dst, &mut scratch, p)?;
    }
    Ok(out)
}
