//! Butterworth design, zero-phase filtering and I/Q demodulation, reproducing
//! MUST's `rf2iq` (pymust 0.1.9 and MATLAB MUST) numerically.
//!
//! # Why this module exists
//!
//! sonoguide's images are judged against MUST/PyMUST, whose demodulation is
//!
//! ```text
//! IQ = 2 · filtfilt(butter(5, Wn), RF · exp(−j2π·fc·(t0 + k/fs)))
//! Wn = fc·bandwidth/100/fs          (bandwidth in %; MUST default min(2fc/fs, 0.5))
//! ```
//!
//! pymust calls `scipy.signal.butter` and `scipy.signal.filtfilt`; MATLAB
//! MUST calls MATLAB's `butter` and `filtfilt`. The f64 functions here are
//! ports of the scipy code paths (same pole formula, same bilinear transform,
//! same pole/zero pairing for second-order sections, same steady-state
//! initial conditions and odd padding) so that they agree with scipy to
//! round-off, and therefore with pymust's `rf2iq` to round-off.
//!
//! # scipy vs MATLAB `filtfilt`
//!
//! Both pad the signal at each end with an odd (point-symmetric) reflection,
//! start the forward pass from the step-response steady state `zi` scaled by
//! the first padded sample, and the backward pass from `zi` scaled by the
//! last forward output. The steady state is the same vector in both (scipy
//! solves `(I − Aᵀ) zi = b[1:] − a[1:]·b[0]`; MATLAB solves the same system
//! written as a sparse matrix). They differ only in the pad length:
//!
//! * scipy: `padlen = 3·max(len(a), len(b))` = 3·(order+1) = **18** for
//!   order 5; raises if `len(x) <= padlen`.
//! * MATLAB: `nfact = max(1, 3·(nfilt−1))` with `nfilt = max(len(a),len(b))`,
//!   i.e. 3·order = **15** for order 5; errors if `len(x) <= nfact`.
//!
//! The pad length changes the result near both ends of the trace: on
//! `PWI_disk` (Wn = 0.1125) the two differ by up to 5e-3 of the peak at the
//! last sample, by more than 1e-4 within ~40 samples of either end, by less
//! than 1e-6 beyond ~80 samples and by ~5e-11 mid-trace. So MATLAB MUST and
//! pymust IQ differ at the trace ends. (MATLAB's `butter`
//! goes through a state-space bilinear transform instead of zpk, which
//! changes the coefficients only at round-off level.)
//!
//! Checked end to end on `PWI_disk.mat`: MATLAB-padded `filtfilt` (15) →
//! pymust `dasmtx(..., 'nearest')` with the automatic F-number (1.12485) →
//! MATLAB-rounded `bmode(IQ, 30)` reproduces MATLAB MUST's
//! `bmode_PWI_disk.mat` on all 251·251·32 pixels; with scipy's padding (18)
//! 40 pixels (0.002 %) differ by one grey level.
//!
//! # The f32 GPU twin
//!
//! [`demodulate_trace_f32`] is written the way the WGSL compute shader will
//! be: one invocation per trace, plain sequential loops, f32 signal path,
//! cascaded second-order sections (SOS) in transposed direct form II. SOS
//! rather than the (b, a) direct form because a 5th-order direct form puts
//! all five poles (|p| up to ~0.9 for Wn ≈ 0.11) in one recursion whose
//! coefficients (e.g. a = [1, −3.86, 6.06, −4.82, 1.94, −0.32]) nearly cancel;
//! rounding them and the states to f32 moves the poles and the DC gain
//! visibly. Cascaded biquads keep each pole pair's sensitivity local. The
//! measured errors against the f64 reference are in the tests.

use std::f64::consts::PI;
use std::fmt;

/// Why a filter could not be designed or applied.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterError {
    /// Butterworth order must be at least 1.
    ZeroOrder,
    /// Normalised cut-off outside the open interval (0, 1) that a digital
    /// Butterworth design needs (scipy raises, MATLAB errors).
    CutoffOutOfRange(f64),
    /// MUST's bandwidth must lie in ]0, 200[ %.
    BandwidthOutOfRange(f64),
    /// fs, fc or t0 is not a finite number (or fs/fc not positive).
    BadParameter(&'static str),
    /// `a[0]` is zero, or the coefficient vectors are empty.
    BadCoefficients,
    /// The trace is too short for the edge padding (scipy: "The length of the
    /// input vector x must be greater than padlen").
    TooShort { len: usize, padlen: usize },
    /// A buffer handed to the f32 twin has the wrong length.
    BufferSize {
        what: &'static str,
        len: usize,
        needed: usize,
    },
    /// The steady-state system is singular (a filter with a pole at z = 1).
    Singular,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FilterError::ZeroOrder => write!(f, "Butterworth order must be at least 1"),
            FilterError::CutoffOutOfRange(wn) => write!(
                f,
                "normalised cut-off Wn = {wn} is outside (0, 1); check fs, fc and bandwidth"
            ),
            FilterError::BandwidthOutOfRange(b) => {
                write!(f, "bandwidth {b} % is outside MUST's interval ]0, 200[")
            }
            FilterError::BadParameter(what) => write!(f, "invalid demodulation parameter: {what}"),
            FilterError::BadCoefficients => {
                write!(f, "filter coefficients are empty or a[0] is zero")
            }
            FilterError::TooShort { len, padlen } => write!(
                f,
                "the length of the input vector ({len}) must be greater than padlen, which is {padlen}"
            ),
            FilterError::BufferSize { what, len, needed } => {
                write!(f, "{what} has length {len}, expected {needed}")
            }
            FilterError::Singular => write!(f, "steady-state system for zi is singular"),
        }
    }
}

impl std::error::Error for FilterError {}

// ---------------------------------------------------------------------------
// Minimal complex arithmetic with numpy's operation order, so that pole
// positions match scipy's to the last bit or two.
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
struct C64 {
    re: f64,
    im: f64,
}

impl C64 {
    const fn new(re: f64, im: f64) -> Self {
        C64 { re, im }
    }
    fn add(self, o: C64) -> C64 {
        C64::new(self.re + o.re, self.im + o.im)
    }
    fn sub(self, o: C64) -> C64 {
        C64::new(self.re - o.re, self.im - o.im)
    }
    fn mul(self, o: C64) -> C64 {
        C64::new(
            self.re * o.re - self.im * o.im,
            self.re * o.im + self.im * o.re,
        )
    }
    fn neg(self) -> C64 {
        C64::new(-self.re, -self.im)
    }
    fn conj(self) -> C64 {
        C64::new(self.re, -self.im)
    }
    fn abs(self) -> f64 {
        self.re.hypot(self.im)
    }
    fn is_real(self) -> bool {
        self.im == 0.0
    }
    /// numpy's complex division (Smith's algorithm, as in its ufunc loop).
    fn div(self, o: C64) -> C64 {
        let (ar, ai, br, bi) = (self.re, self.im, o.re, o.im);
        if br.abs() >= bi.abs() {
            if br == 0.0 && bi == 0.0 {
                return C64::new(ar / br.abs(), ai / br.abs());
            }
            let rat = bi / br;
            let scl = 1.0 / (br + bi * rat);
            C64::new((ar + ai * rat) * scl, (ai - ar * rat) * scl)
        } else {
            let rat = br / bi;
            let scl = 1.0 / (bi + br * rat);
            C64::new((ar * rat + ai) * scl, (ai * rat - ar) * scl)
        }
    }
}

/// Zeros, poles and gain of the digital Butterworth low-pass, built exactly
/// as scipy's `iirfilter(N, Wn, btype='low', ftype='butter', output='zpk')`.
fn butter_zpk(order: usize, wn: f64) -> Result<(Vec<f64>, Vec<C64>, f64), FilterError> {
    if order == 0 {
        return Err(FilterError::ZeroOrder);
    }
    // `!(wn > 0 && wn < 1)` also rejects NaN.
    if !(wn > 0.0 && wn < 1.0) {
        return Err(FilterError::CutoffOutOfRange(wn));
    }
    let n = order as f64;
    // buttap: p = -exp(1j*pi*m/(2N)), m = -N+1, -N+3, ..., N-1. numpy divides
    // the complex 1j*pi*m by 2N through its complex-division loop, i.e. it
    // multiplies by 1/(2N); reproduce that rounding.
    let inv_2n = 1.0 / (2.0 * n);
    let mut p: Vec<C64> = (0..order)
        .map(|i| {
            let m = -n + 1.0 + 2.0 * i as f64;
            let theta = (PI * m) * inv_2n;
            C64::new(-theta.cos(), -theta.sin())
        })
        .collect();
    // Pre-warp with fs = 2 (normalised frequency), then lp2lp_zpk.
    let fs = 2.0;
    let warped = 2.0 * fs * (PI * wn / fs).tan();
    for q in p.iter_mut() {
        *q = C64::new(warped * q.re, warped * q.im);
    }
    let k_analog = warped.powf(n);
    // bilinear_zpk with fs = 2: the N analog zeros at infinity land on z = -1.
    let fs2 = C64::new(2.0 * fs, 0.0);
    let mut den = C64::new(1.0, 0.0);
    for q in &p {
        den = den.mul(fs2.sub(*q));
    }
    let k = k_analog * C64::new(1.0, 0.0).div(den).re;
    for q in p.iter_mut() {
        *q = fs2.add(*q).div(fs2.sub(*q));
    }
    let z = vec![-1.0; order];
    Ok((z, p, k))
}

/// Coefficients of `prod (x - r)` by repeated convolution, as `np.poly`.
fn poly_complex(roots: &[C64]) -> Vec<C64> {
    let mut a = vec![C64::new(1.0, 0.0)];
    for r in roots {
        let mr = r.neg();
        let mut next = vec![C64::new(0.0, 0.0); a.len() + 1];
        next[0] = a[0];
        for i in 1..a.len() {
            next[i] = a[i].add(a[i - 1].mul(mr));
        }
        next[a.len()] = a[a.len() - 1].mul(mr);
        a = next;
    }
    a
}

fn poly_real(roots: &[f64]) -> Vec<f64> {
    let mut a = vec![1.0];
    for r in roots {
        let mr = -r;
        let mut next = vec![0.0; a.len() + 1];
        next[0] = a[0];
        for i in 1..a.len() {
            next[i] = a[i] + a[i - 1] * mr;
        }
        next[a.len()] = a[a.len() - 1] * mr;
        a = next;
    }
    a
}

/// `scipy.signal.butter(order, wn)`: digital Butterworth low-pass as
/// transfer-function coefficients `(b, a)`, `wn` normalised to Nyquist.
///
/// Built from zeros/poles/gain with scipy's exact formulas (prewarped
/// bilinear transform with fs = 2), then expanded with `np.poly`'s
/// convolution order; agrees with scipy to a few ulps.
pub fn try_butter_lowpass_ba(order: usize, wn: f64) -> Result<(Vec<f64>, Vec<f64>), FilterError> {
    let (z, p, k) = butter_zpk(order, wn)?;
    let b = poly_real(&z).into_iter().map(|c| k * c).collect();
    // The poles come in exact conjugate pairs, so np.poly keeps the real part.
    let a = poly_complex(&p).into_iter().map(|c| c.re).collect();
    Ok((b, a))
}

/// [`try_butter_lowpass_ba`] for callers that have already validated
/// `order ≥ 1` and `0 < wn < 1`: returns empty vectors otherwise.
pub fn butter_lowpass_ba(order: usize, wn: f64) -> (Vec<f64>, Vec<f64>) {
    try_butter_lowpass_ba(order, wn).unwrap_or_default()
}

/// scipy's `_cplxreal`: one representative (positive imaginary part) of each
/// conjugate pair, averaged with its partner, followed by the real values.
fn cplxreal(z: &[C64]) -> (Vec<C64>, Vec<C64>) {
    let tol = 100.0 * f64::EPSILON;
    let mut zs: Vec<C64> = z.to_vec();
    // np.lexsort((abs(imag), real)): by real part, then |imag|; stable.
    zs.sort_by(|a, b| {
        a.re.partial_cmp(&b.re)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(
                a.im.abs()
                    .partial_cmp(&b.im.abs())
                    .unwrap_or(std::cmp::Ordering::Equal),
            )
    });
    let mut real = Vec::new();
    let mut pos = Vec::new();
    let mut neg = Vec::new();
    for c in zs {
        if c.im.abs() <= tol * c.abs() {
            real.push(C64::new(c.re, 0.0));
        } else if c.im > 0.0 {
            pos.push(c);
        } else {
            neg.push(c);
        }
    }
    // Runs of (nearly) equal real part are ordered by |imag| in both halves.
    let sort_runs = |v: &mut Vec<C64>| {
        let mut start = 0;
        while start < v.len() {
            let mut stop = start + 1;
            while stop < v.len() && (v[stop].re - v[stop - 1].re) <= tol * v[stop - 1].abs() {
                stop += 1;
            }
            v[start..stop].sort_by(|a, b| {
                a.im.abs()
                    .partial_cmp(&b.im.abs())
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
            start = stop;
        }
    };
    sort_runs(&mut pos);
    sort_runs(&mut neg);
    let pairs = pos
        .iter()
        .zip(neg.iter())
        .map(|(p, n)| {
            let s = p.add(n.conj());
            C64::new(s.re * 0.5, s.im * 0.5)
        })
        .collect();
    (pairs, real)
}

/// np.argmin(|1 - |p||): the pole closest to the unit circle, first on ties.
fn idx_worst(p: &[C64]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, q) in p.iter().enumerate() {
        let d = (1.0 - q.abs()).abs();
        if best.is_none_or(|(_, bd)| d < bd) {
            best = Some((i, d));
        }
    }
    best.map(|(i, _)| i)
}

#[derive(Clone, Copy, PartialEq)]
enum Which {
    Real,
    Complex,
    Any,
}

/// scipy's `_nearest_real_complex_idx`.
fn nearest_idx(fro: &[C64], to: C64, which: Which) -> Option<usize> {
    let mut order: Vec<usize> = (0..fro.len()).collect();
    order.sort_by(|&i, &j| {
        fro[i]
            .sub(to)
            .abs()
            .partial_cmp(&fro[j].sub(to).abs())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    order.into_iter().find(|&i| match which {
        Which::Any => true,
        Which::Real => fro[i].is_real(),
        Which::Complex => !fro[i].is_real(),
    })
}

/// scipy's `_single_zpksos(z, p, 1)`: coefficients right-aligned in b and a.
fn single_zpksos(z: &[C64], p: &[C64]) -> [f64; 6] {
    let mut sos = [0.0; 6];
    let b: Vec<f64> = poly_complex(z).into_iter().map(|c| c.re).collect();
    let a: Vec<f64> = poly_complex(p).into_iter().map(|c| c.re).collect();
    sos[3 - b.len()..3].copy_from_slice(&b);
    sos[6 - a.len()..6].copy_from_slice(&a);
    sos
}

/// scipy's `zpk2sos(z, p, k, pairing='nearest')` for a digital filter.
fn zpk2sos_nearest(z: &[f64], p: &[C64], k: f64) -> Vec<[f64; 6]> {
    let mut z: Vec<C64> = z.iter().map(|&r| C64::new(r, 0.0)).collect();
    let mut p: Vec<C64> = p.to_vec();
    while p.len() < z.len() {
        p.push(C64::new(0.0, 0.0));
    }
    while z.len() < p.len() {
        z.push(C64::new(0.0, 0.0));
    }
    let n_sections = p.len().max(z.len()).div_ceil(2);
    if p.len() % 2 == 1 {
        p.push(C64::new(0.0, 0.0));
        z.push(C64::new(0.0, 0.0));
    }
    let (zc, zr) = cplxreal(&z);
    let mut z: Vec<C64> = zc.into_iter().chain(zr).collect();
    let (pc, pr) = cplxreal(&p);
    let mut p: Vec<C64> = pc.into_iter().chain(pr).collect();

    let mut sos = vec![[0.0; 6]; n_sections];
    // Poles closest to the unit circle go last, where the signal has already
    // been attenuated by the gentler sections.
    for si in (0..n_sections).rev() {
        let Some(i1) = idx_worst(&p) else { break };
        let p1 = p.remove(i1);
        let n_real_p = p.iter().filter(|q| q.is_real()).count();
        let n_real_z = z.iter().filter(|q| q.is_real()).count();
        if p1.is_real() && n_real_p == 0 {
            // Last remaining real pole.
            let z1 = nearest_idx(&z, p1, Which::Real).map(|i| z.remove(i));
            let z1 = z1.unwrap_or(C64::new(0.0, 0.0));
            sos[si] = single_zpksos(&[z1, C64::new(0.0, 0.0)], &[p1, C64::new(0.0, 0.0)]);
        } else if p.len() + 1 == z.len() && !p1.is_real() && n_real_p == 1 && n_real_z == 1 {
            // One real pole and one real zero left: pair p1 with a complex zero.
            let z1 = nearest_idx(&z, p1, Which::Complex).map(|i| z.remove(i));
            let z1 = z1.unwrap_or(C64::new(0.0, 0.0));
            sos[si] = single_zpksos(&[z1, z1.conj()], &[p1, p1.conj()]);
        } else {
            let p2 = if p1.is_real() {
                let reals: Vec<usize> = (0..p.len()).filter(|&i| p[i].is_real()).collect();
                let sub: Vec<C64> = reals.iter().map(|&i| p[i]).collect();
                match idx_worst(&sub) {
                    Some(j) => p.remove(reals[j]),
                    None => C64::new(0.0, 0.0),
                }
            } else {
                p1.conj()
            };
            if let Some(i) = nearest_idx(&z, p1, Which::Any) {
                let z1 = z.remove(i);
                if !z1.is_real() {
                    sos[si] = single_zpksos(&[z1, z1.conj()], &[p1, p2]);
                } else if let Some(j) = nearest_idx(&z, p1, Which::Real) {
                    let z2 = z.remove(j);
                    sos[si] = single_zpksos(&[z1, z2], &[p1, p2]);
                } else {
                    sos[si] = single_zpksos(&[z1], &[p1, p2]);
                }
            } else {
                sos[si] = single_zpksos(&[], &[p1, p2]);
            }
        }
    }
    if let Some(first) = sos.first_mut() {
        for c in first.iter_mut().take(3) {
            *c *= k;
        }
    }
    sos
}

/// `scipy.signal.butter(order, wn, output='sos')`: rows `[b0, b1, b2, 1, a1, a2]`,
/// with scipy's 'nearest' pole/zero pairing and section order (poles closest
/// to the unit circle last, gain in the first section).
pub fn try_butter_lowpass_sos(order: usize, wn: f64) -> Result<Vec<[f64; 6]>, FilterError> {
    let (z, p, k) = butter_zpk(order, wn)?;
    Ok(zpk2sos_nearest(&z, &p, k))
}

/// [`try_butter_lowpass_sos`] for callers that have already validated
/// `order ≥ 1` and `0 < wn < 1`: returns no sections otherwise.
pub fn butter_lowpass_sos(order: usize, wn: f64) -> Vec<[f64; 6]> {
    try_butter_lowpass_sos(order, wn).unwrap_or_default()
}

/// `scipy.signal.lfilter_zi(b, a)`: the state of a transposed direct form II
/// filter in steady state for a unit step, i.e. the solution of
/// `(I − Aᵀ) zi = b[1:] − a[1:]·b[0]` (companion matrix A).
///
/// scipy solves with LAPACK `gesv` (LU with partial pivoting); this solves the
/// same system with the same pivoting so the result matches to round-off.
pub fn try_lfilter_zi(b: &[f64], a: &[f64]) -> Result<Vec<f64>, FilterError> {
    let (b, a) = normalize_ba(b, a)?;
    let n = b.len();
    if n < 2 {
        return Ok(Vec::new());
    }
    let m = n - 1;
    // I - companion(a).T
    let mut mat = vec![vec![0.0; m]; m];
    for (i, row) in mat.iter_mut().enumerate() {
        row[0] = a[i + 1];
        if i + 1 < m {
            row[i + 1] = -1.0;
        }
    }
    for (i, row) in mat.iter_mut().enumerate() {
        row[i] += 1.0;
    }
    let rhs: Vec<f64> = (1..n).map(|i| b[i] - a[i] * b[0]).collect();
    solve_partial_pivot(mat, rhs)
}

/// [`try_lfilter_zi`] that returns an empty vector for coefficients scipy
/// would reject (empty, all-zero `a`, or a pole at z = 1).
pub fn lfilter_zi(b: &[f64], a: &[f64]) -> Vec<f64> {
    try_lfilter_zi(b, a).unwrap_or_default()
}

/// Pads (b, a) to a common length and divides by a[0], as scipy does.
fn normalize_ba(b: &[f64], a: &[f64]) -> Result<(Vec<f64>, Vec<f64>), FilterError> {
    let first_nz = a.iter().position(|&v| v != 0.0);
    let Some(start) = first_nz else {
        return Err(FilterError::BadCoefficients);
    };
    if b.is_empty() {
        return Err(FilterError::BadCoefficients);
    }
    let mut a: Vec<f64> = a[start..].to_vec();
    let mut b = b.to_vec();
    if a[0] != 1.0 {
        let a0 = a[0];
        b.iter_mut().for_each(|v| *v /= a0);
        a.iter_mut().for_each(|v| *v /= a0);
    }
    let n = a.len().max(b.len());
    a.resize(n, 0.0);
    b.resize(n, 0.0);
    Ok((b, a))
}

fn solve_partial_pivot(mut m: Vec<Vec<f64>>, mut rhs: Vec<f64>) -> Result<Vec<f64>, FilterError> {
    let n = rhs.len();
    for col in 0..n {
        let mut piv = col;
        for r in col + 1..n {
            if m[r][col].abs() > m[piv][col].abs() {
                piv = r;
            }
        }
        if m[piv][col] == 0.0 || !m[piv][col].is_finite() {
            return Err(FilterError::Singular);
        }
        m.swap(col, piv);
        rhs.swap(col, piv);
        let (upper, lower) = m.split_at_mut(col + 1);
        let prow = &upper[col];
        let (rhs_upper, rhs_lower) = rhs.split_at_mut(col + 1);
        for (row, rv) in lower.iter_mut().zip(rhs_lower.iter_mut()) {
            let f = row[col] / prow[col];
            if f != 0.0 {
                for (x, pv) in row[col..].iter_mut().zip(&prow[col..]) {
                    *x -= f * pv;
                }
                *rv -= f * rhs_upper[col];
            }
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        let mut s = rhs[r];
        for c in r + 1..n {
            s -= m[r][c] * x[c];
        }
        x[r] = s / m[r][r];
    }
    Ok(x)
}

/// `scipy.signal.sosfilt_zi(sos)`: each section's `lfilter_zi`, scaled by
/// the DC gain of the sections before it, so the cascade starts in steady
/// state for a unit step.
pub fn try_sosfilt_zi(sos: &[[f64; 6]]) -> Result<Vec<[f64; 2]>, FilterError> {
    let mut scale = 1.0;
    let mut out = Vec::with_capacity(sos.len());
    for s in sos {
        let zi = try_lfilter_zi(&s[..3], &s[3..])?;
        out.push([scale * zi[0], scale * zi[1]]);
        scale *= (s[0] + s[1] + s[2]) / (s[3] + s[4] + s[5]);
    }
    Ok(out)
}

/// [`try_sosfilt_zi`] that returns an empty vector if any section is
/// rejected (never for a Butterworth design from [`butter_lowpass_sos`]).
pub fn sosfilt_zi(sos: &[[f64; 6]]) -> Vec<[f64; 2]> {
    try_sosfilt_zi(sos).unwrap_or_default()
}

/// Which `filtfilt` to reproduce; they differ only in the pad length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FiltfiltConvention {
    /// scipy (pymust): padlen = 3·max(len(a), len(b)).
    Scipy,
    /// MATLAB (MATLAB MUST): nfact = max(1, 3·(max(len(a), len(b)) − 1)).
    Matlab,
}

impl FiltfiltConvention {
    /// Pad length for a filter with `ntaps = max(len(a), len(b))` taps
    /// (order + 1 for a Butterworth design).
    pub fn padlen(self, ntaps: usize) -> usize {
        match self {
            FiltfiltConvention::Scipy => 3 * ntaps,
            FiltfiltConvention::Matlab => (3 * ntaps.saturating_sub(1)).max(1),
        }
    }
}

/// Transposed direct form II, scipy's `lfilter` operation order, applied to
/// the real and imaginary parts (coefficients are real). `z` is updated.
fn lfilter_tdf2_complex(b: &[f64], a: &[f64], x: &[[f64; 2]], z: &mut [[f64; 2]]) -> Vec<[f64; 2]> {
    let n = b.len();
    let mut y = Vec::with_capacity(x.len());
    for xn in x {
        let mut yn = [0.0; 2];
        for c in 0..2 {
            let xv = xn[c];
            let yv = if n > 1 {
                z[0][c] + b[0] * xv
            } else {
                b[0] * xv
            };
            for i in 0..n.saturating_sub(2) {
                z[i][c] = z[i + 1][c] + b[i + 1] * xv - a[i + 1] * yv;
            }
            if n > 1 {
                z[n - 2][c] = b[n - 1] * xv - a[n - 1] * yv;
            }
            yn[c] = yv;
        }
        y.push(yn);
    }
    y
}

/// Odd extension of `x` by `pad` samples at each end (scipy's `odd_ext`).
fn odd_ext<T: Copy>(x: &[T], pad: usize, lin: impl Fn(T, T) -> T) -> Vec<T> {
    let n = x.len();
    let mut ext = Vec::with_capacity(n + 2 * pad);
    for i in 0..pad {
        ext.push(lin(x[0], x[pad - i]));
    }
    ext.extend_from_slice(x);
    for j in 0..pad {
        ext.push(lin(x[n - 1], x[n - 2 - j]));
    }
    ext
}

/// Zero-phase filtering with an explicit pad length (odd padding,
/// steady-state initial conditions): the common body of scipy's and MATLAB's
/// `filtfilt`.
pub fn filtfilt_ba_complex_padlen(
    b: &[f64],
    a: &[f64],
    x: &[[f64; 2]],
    padlen: usize,
) -> Result<Vec<[f64; 2]>, FilterError> {
    let (b, a) = normalize_ba(b, a)?;
    if x.len() <= padlen {
        return Err(FilterError::TooShort {
            len: x.len(),
            padlen,
        });
    }
    let zi = try_lfilter_zi(&b, &a)?;
    let ext = odd_ext(x, padlen, |e, v| [2.0 * e[0] - v[0], 2.0 * e[1] - v[1]]);
    let x0 = ext[0];
    let mut z: Vec<[f64; 2]> = zi.iter().map(|&s| [s * x0[0], s * x0[1]]).collect();
    let mut y = lfilter_tdf2_complex(&b, &a, &ext, &mut z);
    y.reverse();
    let y0 = y[0];
    let mut z: Vec<[f64; 2]> = zi.iter().map(|&s| [s * y0[0], s * y0[1]]).collect();
    let mut y = lfilter_tdf2_complex(&b, &a, &y, &mut z);
    y.reverse();
    Ok(y[padlen..padlen + x.len()].to_vec())
}

/// `scipy.signal.filtfilt(b, a, x)` with its defaults (padtype='odd',
/// padlen = 3·max(len(a), len(b)), method='pad') on complex samples `[re, im]`.
/// Like scipy, refuses signals with `len(x) <= padlen`.
pub fn filtfilt_ba_complex(
    b: &[f64],
    a: &[f64],
    x: &[[f64; 2]],
) -> Result<Vec<[f64; 2]>, FilterError> {
    let padlen = FiltfiltConvention::Scipy.padlen(b.len().max(a.len()));
    filtfilt_ba_complex_padlen(b, a, x, padlen)
}

/// MATLAB's `filtfilt(b, a, x)`: identical to scipy's except that the pad
/// (MATLAB's `nfact`) is `3·(nfilt − 1)` samples (15 for a 5th-order
/// Butterworth instead of scipy's 18). MATLAB's zi (a sparse solve of the
/// same steady-state system) and odd reflection `2·x(1) − x(nfact+1:−1:2)`
/// are the same as scipy's. Errors when `len(x) <= nfact`, as MATLAB does.
pub fn filtfilt_ba_complex_matlab(
    b: &[f64],
    a: &[f64],
    x: &[[f64; 2]],
) -> Result<Vec<[f64; 2]>, FilterError> {
    let padlen = FiltfiltConvention::Matlab.padlen(b.len().max(a.len()));
    filtfilt_ba_complex_padlen(b, a, x, padlen)
}

/// MUST's normalised cut-off: `min(2·fc/fs, 0.5)` without a bandwidth,
/// otherwise `fc·B/100/fs` (B in %, within ]0, 200[), evaluated in the same
/// order as `rf2iq` so the f64 value is bit-identical. Values ≥ 1 are
/// rejected (MUST accepts Wn = 1 but `butter` then fails).
pub fn must_wn(fs: f64, fc: f64, bandwidth_pct: Option<f64>) -> Result<f64, FilterError> {
    if !(fs.is_finite() && fs > 0.0) {
        return Err(FilterError::BadParameter("fs must be finite and > 0"));
    }
    if !(fc.is_finite() && fc > 0.0) {
        return Err(FilterError::BadParameter("fc must be finite and > 0"));
    }
    let wn = match bandwidth_pct {
        None => (2.0 * fc / fs).min(0.5),
        Some(bw) => {
            if !(bw > 0.0 && bw < 200.0) {
                return Err(FilterError::BandwidthOutOfRange(bw));
            }
            fc * bw / 100.0 / fs
        }
    };
    if !(wn > 0.0 && wn < 1.0) {
        return Err(FilterError::CutoffOutOfRange(wn));
    }
    Ok(wn)
}

/// f64 reference of MUST's `rf2iq` for one trace, with a given `filtfilt`
/// convention: `2·filtfilt(butter(5, Wn), RF·exp(−j2π·fc·t))`,
/// `t = k/fs + t0` (pymust evaluates `np.arange(nl)/Fs + t0` and the phase
/// as `(−2π·fc)·t`; this does the same).
pub fn rf2iq_trace(
    rf: &[f64],
    fs: f64,
    fc: f64,
    t0: f64,
    bandwidth_pct: Option<f64>,
    convention: FiltfiltConvention,
) -> Result<Vec<[f64; 2]>, FilterError> {
    if !t0.is_finite() {
        return Err(FilterError::BadParameter("t0 must be finite"));
    }
    let wn = must_wn(fs, fc, bandwidth_pct)?;
    let (b, a) = try_butter_lowpass_ba(5, wn)?;
    let w = -2.0 * PI * fc;
    let mixed: Vec<[f64; 2]> = rf
        .iter()
        .enumerate()
        .map(|(k, &v)| {
            let t = k as f64 / fs + t0;
            let th = w * t;
            [th.cos() * v, th.sin() * v]
        })
        .collect();
    let padlen = convention.padlen(b.len().max(a.len()));
    let y = filtfilt_ba_complex_padlen(&b, &a, &mixed, padlen)?;
    Ok(y.into_iter().map(|v| [2.0 * v[0], 2.0 * v[1]]).collect())
}

// ---------------------------------------------------------------------------
// f32 twin of the demodulation compute shader.
// ---------------------------------------------------------------------------

/// 2^-32: one unit of the u32 phase accumulator, in cycles.
pub(crate) const PHASE_UNIT: f32 = 1.0 / 4_294_967_296.0;

/// Everything the demodulation shader needs, computed on the host in f64.
///
/// The phase is carried as a u32 fixed-point fraction of a cycle
/// (2^-32 cycle units) rather than as an f32 number of cycles: the mixing
/// phase of sample k is `fract(fc·t0) + k·fract(fc/fs)` cycles. In f32,
/// `(fc/fs)·k` at k ≈ 2500 is ~625 cycles, whose ulp is 6e-5 cycle, and the
/// f32 rounding of fc/fs itself (up to 3e-8 absolute) is multiplied by k:
/// each costs up to ~3e-5–8e-5 cycle at k = 2500 (measured: 1.6e-5 for
/// fc/fs = 0.25, 3.6e-5 for 0.24999997) and grows linearly with k, so the
/// 1e-4 budget is gone by k ≈ 5000. With u32 wrapping arithmetic,
/// `phase0 + k·step` is exact modulo one cycle; the only errors are the
/// rounding of `step` to 2^-32 (≤ 2^-33 per sample, 3e-7 cycle at
/// k = 2500) and the final conversion to f32 (2^-25 cycle). WGSL's u32
/// `*` and `+` wrap, so the shader does exactly this. Reinterpreting the
/// accumulator as i32 centres the phase in [−½, ½) cycle, so the argument of
/// `cos`/`sin` stays in [−π, π), where WGSL's precision guarantee applies.
#[derive(Clone, Debug, PartialEq)]
pub struct DemodParams {
    /// Sampling frequency (Hz).
    pub fs: f64,
    /// Demodulation (centre) frequency (Hz).
    pub fc: f64,
    /// Time of sample 0 (s).
    pub t0: f64,
    /// Butterworth low-pass as second-order sections `[b0, b1, b2, 1, a1, a2]`.
    pub sos: Vec<[f64; 6]>,
    /// `sosfilt_zi(sos)`: steady-state section states for a unit step.
    pub zi: Vec<[f64; 2]>,
    /// Odd-extension length at each end (18 scipy, 15 MATLAB for order 5).
    pub padlen: usize,
    /// `fract(fc·t0)` in units of 2^-32 cycle.
    pub phase0: u32,
    /// `fract(fc/fs)` in units of 2^-32 cycle.
    pub phase_step: u32,
}

/// Round a fraction of a cycle to the u32 accumulator (mod 1 cycle).
fn cycles_to_u32(c: f64) -> u32 {
    let f = c.rem_euclid(1.0);
    // Rounding may give exactly 2^32, which wraps to 0 (the same phase).
    ((f * 4_294_967_296.0).round() as u64 & 0xFFFF_FFFF) as u32
}

impl DemodParams {
    /// Parameters of MUST's `rf2iq` (5th-order Butterworth, Wn from
    /// [`must_wn`]) for the given `filtfilt` convention.
    pub fn must(
        fs: f64,
        fc: f64,
        t0: f64,
        bandwidth_pct: Option<f64>,
        convention: FiltfiltConvention,
    ) -> Result<Self, FilterError> {
        if !t0.is_finite() {
            return Err(FilterError::BadParameter("t0 must be finite"));
        }
        let wn = must_wn(fs, fc, bandwidth_pct)?;
        let order = 5;
        let sos = try_butter_lowpass_sos(order, wn)?;
        let zi = try_sosfilt_zi(&sos)?;
        Ok(DemodParams {
            fs,
            fc,
            t0,
            sos,
            zi,
            padlen: convention.padlen(order + 1),
            phase0: cycles_to_u32(fc * t0),
            phase_step: cycles_to_u32(fc / fs),
        })
    }

    /// Length of the per-trace scratch buffer [`demodulate_trace_f32`] needs.
    pub fn scratch_len(&self, n_samples: usize) -> usize {
        n_samples + 2 * self.padlen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::demodulate::{demodulate, demodulate_trace_f32, ext_sample_f32};

    /// Largest |got − want| divided by the largest |want| of the vector.
    fn rel_err(got: &[f64], want: &[f64]) -> f64 {
        assert_eq!(got.len(), want.len());
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        got.iter()
            .zip(want)
            .fold(0.0f64, |m, (g, w)| m.max((g - w).abs()))
            / scale
    }

    // --- deterministic test signals, generated identically by py/gen.py ---

    fn lcg(seed: u64, n: usize) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (s >> 11) as f64 / 9007199254740992.0
            })
            .collect()
    }

    fn test_signal(n: usize, seed: u64) -> Vec<[f64; 2]> {
        let u = lcg(seed, 2 * n);
        (0..n)
            .map(|k| {
                let kf = k as f64;
                let g = ((kf - 0.5 * n as f64) / (0.2 * n as f64)).powi(2);
                [
                    (0.3 * kf).sin() * (-g).exp() + 0.2 * (u[2 * k] - 0.5),
                    0.5 * (0.11 * kf).cos() + 0.2 * (u[2 * k + 1] - 0.5),
                ]
            })
            .collect()
    }

    /// Gaussian-windowed tone bursts (amplitude 1/(1+j)) plus uniform noise.
    fn rf_pulses(
        n: usize,
        fs: f64,
        fc: f64,
        seed: u64,
        sigma: f64,
        spacing: f64,
        first: f64,
    ) -> Vec<f64> {
        let u = lcg(seed, n);
        (0..n)
            .map(|k| {
                let kf = k as f64;
                let mut v = 0.0;
                let mut j = 0usize;
                while first + spacing * (j as f64) < (n as f64) + 4.0 * sigma {
                    let c = first + spacing * j as f64;
                    v += (1.0 / (1 + j) as f64)
                        * (-((kf - c) / sigma).powi(2)).exp()
                        * (2.0 * PI * fc * kf / fs + 0.7 * j as f64).sin();
                    j += 1;
                }
                v + 0.02 * (u[k] - 0.5)
            })
            .collect()
    }

    // --- scipy.signal.butter(N, Wn) (scipy 1.17.1) ---

    #[rustfmt::skip]
    const BUTTER_BA: &[(usize, f64, &[f64], &[f64])] = &[
        (5, 0.1125, &[0.00010213196630180958, 0.0005106598315090479, 0.0010213196630180959, 0.0010213196630180959, 0.0005106598315090479, 0.00010213196630180958], &[1.0, -3.857951703555177, 6.05716121257731, -4.822223955877041, 1.9425540012384257, -0.31627133146186026]),
        (5, 0.5, &[0.052786404500042045, 0.2639320225002102, 0.5278640450004204, 0.5278640450004204, 0.2639320225002102, 0.052786404500042045], &[1.0, -4.163336342344337e-16, 0.6334368540005048, -1.318605337420283e-16, 0.0557280900008412, -3.093530431865843e-18]),
        (5, 0.1975, &[0.0012155730317676605, 0.006077865158838303, 0.012155730317676606, 0.012155730317676606, 0.006077865158838303, 0.0012155730317676605], &[1.0, -3.0005384067415584, 3.8611498413593903, -2.5948787600130068, 0.9020332446168823, -0.12886758220514266]),
        (2, 0.3, &[0.13110643991662593, 0.26221287983325187, 0.13110643991662593], &[1.0, -0.7477891782585034, 0.27221493792500717]),
        (3, 0.05, &[0.0004165461390757476, 0.0012496384172272427, 0.0012496384172272427, 0.0004165461390757476], &[1.0, -2.686157396548143, 2.4196551109664717, -0.7301653453057226]),
        (4, 0.7, &[0.27541328807230425, 1.101653152289217, 1.6524797284338255, 1.101653152289217, 0.27541328807230425], &[1.0, 1.5703988512281715, 1.2756133249832795, 0.48440336833508557, 0.07619706461033238]),
        (8, 0.2, &[2.395964410377617e-05, 0.00019167715283020936, 0.0006708700349057328, 0.0013417400698114655, 0.001677175087264332, 0.0013417400698114655, 0.0006708700349057328, 0.00019167715283020936, 2.395964410377617e-05], &[1.0, -4.784514894995809, 10.445041065534665, -13.457719890241556, 11.12933103916398, -6.025260397297651, 2.0792738030118767, -0.4172171569897821, 0.03720010070484524]),
        (1, 0.4, &[0.4208077798377318, 0.4208077798377318], &[1.0, -0.15838444032453627]),
        (5, 0.02, &[2.768871412401303e-08, 1.3844357062006514e-07, 2.768871412401303e-07, 2.768871412401303e-07, 1.3844357062006514e-07, 2.768871412401303e-08], &[1.0, -4.796681599817806, 9.20724237509201, -8.84036968250099, 4.245786473289919, -0.8159766800242779]),
        (5, 0.95, &[0.7753165952469472, 3.8765829762347357, 7.753165952469471, 7.753165952469471, 3.8765829762347357, 0.7753165952469472], &[1.0, 4.491830965077046, 8.094055417826645, 7.31208128015038, 3.3110475619883974, 0.6011158228598382]),
    ];

    #[test]
    fn butter_ba_matches_scipy() {
        let mut worst = 0.0f64;
        for &(n, wn, b_ref, a_ref) in BUTTER_BA {
            let (b, a) = try_butter_lowpass_ba(n, wn).unwrap();
            let e = rel_err(&b, b_ref).max(rel_err(&a, a_ref));
            assert!(e < 1e-13, "butter({n}, {wn}): rel err {e:e}");
            worst = worst.max(e);
        }
        println!("butter ba worst relative error vs scipy: {worst:e}");
    }

    // --- scipy.signal.butter(N, Wn, output='sos') and sosfilt_zi(sos) ---

    type SosRef = (usize, f64, &'static [[f64; 6]], &'static [[f64; 2]]);
    #[rustfmt::skip]
    const BUTTER_SOS: &[SosRef] = &[
        (5, 0.1125, &[[0.00010213196630180958, 0.00020426393260361916, 0.00010213196630180958, 1.0, -0.696961182528478, 0.0], [1.0, 2.0, 1.0, 1.0, -1.4659072633832146, 0.5624822008634834], [1.0, 1.0, 0.0, 1.0, -1.6950832576434844, 0.8067564607988841]], &[[0.0012459721103174495, 0.00010213196630180958], [0.05448849750108057, -0.030058990467542797], [0.9441633984223002, -0.8067564607988841]]),
        (5, 0.5, &[[0.052786404500042045, 0.10557280900008409, 0.052786404500042045, 1.0, -5.551115123125783e-17, 0.0], [1.0, 2.0, 1.0, 1.0, -1.3877787807814457e-16, 0.10557280900008409], [1.0, 1.0, 0.0, 1.0, -2.2204460492503136e-16, 0.5278640450004206]], &[[0.15835921350012613, 0.052786404500042045], [0.552786404500042, 0.13049516849970555], [0.2360679774997898, -0.5278640450004206]]),
        (5, 0.95, &[[0.7753165952469472, 0.7753165952469472, 0.0, 1.0, 0.8540806854634665, 0.0], [1.0, 2.0, 1.0, 1.0, 1.75346181416047, 0.7753189362384402], [1.0, 2.0, 1.0, 1.0, 1.8842884654531094, 0.9077763581958654]], &[[0.06101873937538666, 0.0], [0.11168087128990992, 0.10132041831765096], [0.0519837940877563, 0.040239847716378264]]),
        (2, 0.3, &[[0.13110643991662593, 0.26221287983325187, 0.13110643991662593, 1.0, -0.7477891782585034, 0.27221493792500717]], &[[0.868893560083374, -0.14110849800838124]]),
        (3, 0.05, &[[0.0004165461390757476, 0.0008330922781514952, 0.0004165461390757476, 1.0, -0.8540806854634666, 0.0], [1.0, 1.0, 0.0, 1.0, -1.8320767110846765, 0.8549137777416177]], &[[0.011001987189394848, 0.0004165461390757476], [0.988581466671527, -0.8549137777416155]]),
        (4, 0.7, &[[0.27541328807230425, 0.5508265761446085, 0.27541328807230425, 1.0, 0.672740911191527, 0.1445351998331209], [1.0, 2.0, 1.0, 1.0, 0.8976579400366445, 0.5271869046315973]], &[[0.3307979230947561, 0.1877944295251949], [0.3937887888329395, 0.0790243065354631]]),
        (8, 0.2, &[[2.395964410377617e-05, 4.791928820755234e-05, 2.395964410377617e-05, 1.0, -1.0263514742610553, 0.26864019099379005], [1.0, 2.0, 1.0, 1.0, -1.0868584613628944, 0.343430940165366], [1.0, 2.0, 1.0, 1.0, -1.2197253651240232, 0.5076634651740437], [1.0, 2.0, 1.0, 1.0, -1.4515795942478362, 0.794251053241888]], &[[0.00037159561619678035, -8.230239657196366e-05], [0.005771205292456689, -0.0017223011141075564], [0.0795011041957558, -0.037323684519534196], [0.9143321352514883, -0.708583188493376]]),
        (1, 0.4, &[[0.4208077798377318, 0.4208077798377318, 0.0, 1.0, -0.15838444032453627, 0.0]], &[[0.579192220162268, 0.0]]),
        (6, 0.9, &[[0.5432977372266496, 1.0865954744532993, 0.5432977372266496, 1.0, 1.464868193951245, 0.5402535694278694], [1.0, 2.0, 1.0, 1.0, 1.561018075800718, 0.641351538057563], [1.0, 2.0, 1.0, 1.0, 1.7612492291001696, 0.8518870318675977]], &[[0.17986462357664448, 0.15260669052678524], [0.18012170443864803, 0.1438397362574865], [0.09671593475805822, 0.051397033374344106]]),
    ];

    #[test]
    fn butter_sos_and_sosfilt_zi_match_scipy() {
        let (mut worst_sos, mut worst_zi) = (0.0f64, 0.0f64);
        for &(n, wn, sos_ref, zi_ref) in BUTTER_SOS {
            let sos = try_butter_lowpass_sos(n, wn).unwrap();
            assert_eq!(sos.len(), sos_ref.len(), "butter({n}, {wn}) sections");
            for (s, r) in sos.iter().zip(sos_ref) {
                let e = rel_err(s, r);
                assert!(e < 1e-13, "butter({n}, {wn}, sos): {s:?} vs {r:?}");
                worst_sos = worst_sos.max(e);
            }
            let zi = try_sosfilt_zi(&sos).unwrap();
            let flat: Vec<f64> = zi.iter().flatten().copied().collect();
            let flat_ref: Vec<f64> = zi_ref.iter().flatten().copied().collect();
            let e = rel_err(&flat, &flat_ref);
            assert!(e < 1e-12, "sosfilt_zi({n}, {wn}): {zi:?} vs {zi_ref:?}");
            worst_zi = worst_zi.max(e);
        }
        println!("sos worst rel err {worst_sos:e}, sosfilt_zi worst rel err {worst_zi:e}");
    }

    // --- scipy.signal.lfilter_zi(b, a) for b, a = scipy.signal.butter(N, Wn) ---

    type ZiRef = (&'static str, &'static [f64], &'static [f64], &'static [f64]);
    #[rustfmt::skip]
    const LFILTER_ZI: &[ZiRef] = &[
        ("butter(5, 0.1125)", BUTTER_BA[0].2, BUTTER_BA[0].3, &[0.9998978680337064, -2.8585644953530114, 3.1975753975613306, -1.6256698779787682, 0.3163734634281647]),
        ("butter(5, 0.5)", BUTTER_BA[1].2, BUTTER_BA[1].3, &[0.9472135954999579, 0.6832815729997472, 0.7888543819998316, 0.26099033699941104, 0.052786404500042045]),
        ("butter(8, 0.2)", BUTTER_BA[6].2, BUTTER_BA[6].3, &[0.999976040355776, -3.784730531792288, 6.6596396637062165, -6.799421966603535, 4.328231897471842, -1.6983702398948963, 0.3802326930818253, -0.037176141060736995]),
        ("butter(5, 0.02)", &[2.768871412401303e-08, 1.3844357062006514e-07, 2.768871412401303e-07, 2.768871412401303e-07, 1.3844357062006514e-07, 2.768871412401303e-08], &[1.0, -4.796681599817806, 9.20724237509201, -8.84036968250099, 4.245786473289919, -0.8159766800242779], &[0.9999999683879331, -3.796681751054369, 5.41056031102724, -3.429809613677003, 0.8159767045116277]),
        ("butter(5, 0.0375)", &[5.894198446837664e-07, 2.947099223418832e-06, 5.894198446837664e-06, 5.894198446837664e-06, 2.947099223418832e-06, 5.894198446837664e-07], &[1.0, -4.618823779702807, 8.546934383637812, -7.9196790761328035, 3.6744147715629456, -0.6828274379301159], &[0.9999994105604316, -3.6188273161504987, 4.928101173120289, -2.9915837970547567, 0.6828280273364928]),
    ];

    #[test]
    fn lfilter_zi_matches_scipy() {
        // The system is ill-conditioned for small Wn (cond ≈ 1e7 at Wn = 0.0375,
        // 3e8 at 0.02); scipy's LAPACK answer is itself only that accurate
        // (about 2e-11 and 7e-11 relative to the exact solution), and ours
        // differs from it at that level.
        let mut worst = 0.0f64;
        for &(name, b, a, zi_ref) in LFILTER_ZI {
            let zi = try_lfilter_zi(b, a).unwrap();
            let e = rel_err(&zi, zi_ref);
            assert!(e < 1e-10, "lfilter_zi({name}): {e:e}");
            worst = worst.max(e);
        }
        println!("lfilter_zi worst rel err {worst:e}");
        // a[0] != 1 is normalised away; an all-zero a is refused.
        let zi = try_lfilter_zi(&[2.0, 1.0], &[2.0, -1.0]).unwrap();
        assert!((zi[0] - try_lfilter_zi(&[1.0, 0.5], &[1.0, -0.5]).unwrap()[0]).abs() < 1e-15);
        assert_eq!(
            try_lfilter_zi(&[1.0], &[0.0, 0.0]),
            Err(FilterError::BadCoefficients)
        );
    }

    // --- scipy.signal.filtfilt(b, a, x[, padlen=15]) on test_signal(n, 12345) ---

    type FfRef = (usize, &'static [usize], &'static [[f64; 2]], f64);
    #[rustfmt::skip]
    const FILTFILT_SCIPY: &[FfRef] = &[
        (300, &[0, 1, 2, 100, 150, 298, 299], &[[-0.07718934329808376, 0.45008262717402736], [-0.05532964511400206, 0.4519991411247735], [-0.0348226607048363, 0.45191964718536054], [-0.4248283238053951, 0.017449877537681867], [0.7022763749283825, -0.3445513035618301], [0.02166478921895108, 0.09078496053692349], [0.022028174242203352, 0.04036022206401739]], 64.21044504471892),
        (19, &[0, 1, 2, 6, 9, 17, 18], &[[-0.0737946221909017, 0.44808870187273964], [0.01913507593341329, 0.44873049541672133], [0.10465109517956127, 0.4475335061725018], [0.27531244261273874, 0.39387323047799194], [0.1952209141382246, 0.2843075320596152], [-0.0649796142166058, -0.2075873378624297], [-0.056760129926960105, -0.2764183761506621]], 2.34505717442437),
    ];
    /// scipy.signal.filtfilt(b, a, x, padlen=15), i.e. MATLAB's convention.
    #[rustfmt::skip]
    const FILTFILT_MATLAB: &[FfRef] = &[
        (300, &[0, 1, 2, 100, 150, 298, 299], &[[-0.0782193234037523, 0.4460417026704919], [-0.05722201135789273, 0.4483145721704389], [-0.037184916747925845, 0.448943260783757], [-0.424828358256837, 0.017449926567870255], [0.7022763748903118, -0.3445513051013556], [0.02361914782259072, 0.07904132957392751], [0.02380137091694006, 0.030355696647710245]], 64.20087064560684),
        (19, &[0, 1, 2, 6, 9, 17, 18], &[[-0.07413916276631746, 0.4422385476220547], [0.019132088287582328, 0.4441175588900894], [0.10520753119659763, 0.4448500478621308], [0.2793778962142697, 0.40044592471933743], [0.1993104024175411, 0.2911356315004864], [-0.07990270843972361, -0.22713919681192793], [-0.07047901313942556, -0.2934892444259135]], 2.4075853942894256),
        (16, &[0, 1, 2, 5, 8, 14, 15], &[[-0.08778869099216259, 0.44517485051324224], [0.025683517227643313, 0.45049774848084145], [0.13285154790898918, 0.4546303842412197], [0.36035042995177285, 0.4359125376069602], [0.3929985963241507, 0.33633291866868814], [0.10700825155916667, -0.08252603152812002], [0.0581297730659534, -0.15957913352017966]], 2.9949979301249483),
    ];

    type Filtfilt = fn(&[f64], &[f64], &[[f64; 2]]) -> Result<Vec<[f64; 2]>, FilterError>;
    fn check_filtfilt(table: &[FfRef], f: Filtfilt) -> f64 {
        let (b, a) = try_butter_lowpass_ba(5, 0.1125).unwrap();
        let mut worst = 0.0f64;
        for &(n, idx, vals, sumsq) in table {
            let y = f(&b, &a, &test_signal(n, 12345)).unwrap();
            assert_eq!(y.len(), n);
            for (&i, v) in idx.iter().zip(vals) {
                let e = ((y[i][0] - v[0]).powi(2) + (y[i][1] - v[1]).powi(2)).sqrt();
                assert!(e < 1e-12, "n={n} sample {i}: {:?} vs {v:?}", y[i]);
                worst = worst.max(e);
            }
            let s: f64 = y.iter().map(|v| v[0] * v[0] + v[1] * v[1]).sum();
            assert!(
                (s - sumsq).abs() < 1e-12 * sumsq,
                "n={n}: sum |y|^2 {s} vs {sumsq}"
            );
        }
        worst
    }

    #[test]
    fn filtfilt_matches_scipy() {
        let w = check_filtfilt(FILTFILT_SCIPY, filtfilt_ba_complex);
        println!("filtfilt (scipy) worst abs err {w:e}");
        // scipy: "The length of the input vector x must be greater than padlen, which is 18."
        let (b, a) = try_butter_lowpass_ba(5, 0.1125).unwrap();
        for n in [16, 18] {
            let err = filtfilt_ba_complex(&b, &a, &test_signal(n, 12345)).unwrap_err();
            assert_eq!(err, FilterError::TooShort { len: n, padlen: 18 });
        }
    }

    #[test]
    fn filtfilt_matlab_convention() {
        let w = check_filtfilt(FILTFILT_MATLAB, filtfilt_ba_complex_matlab);
        println!("filtfilt (MATLAB padding) worst abs err {w:e}");
        let (b, a) = try_butter_lowpass_ba(5, 0.1125).unwrap();
        let err = filtfilt_ba_complex_matlab(&b, &a, &test_signal(15, 12345)).unwrap_err();
        assert_eq!(
            err,
            FilterError::TooShort {
                len: 15,
                padlen: 15
            }
        );
    }

    // --- pymust.rf2iq(RF, param) on rf_pulses(...) ---

    const C5_FS: f64 = 14.28e6;
    const C5_FC: f64 = 3.57e6;
    const C5_T0: f64 = 1.234e-6;
    fn c5_rf() -> Vec<f64> {
        rf_pulses(2326, C5_FS, C5_FC, 777, 8.0, 400.0, 200.0)
    }
    #[rustfmt::skip]
    const C5_IDX: [usize; 7] = [0, 5, 200, 777, 1200, 2000, 2325];
    #[rustfmt::skip]
    const C5_IQ: [[f64; 2]; 7] = [
        [0.011812428879573032, 0.008006156244297152],
        [-0.009536028180275137, -0.000985472028834705],
        [-0.5557843918767569, 0.8267896890654834],
        [-0.0022574950029885556, -0.0005932954156168675],
        [-0.00378369172409917, 0.0022358574164483705],
        [0.0001315598348024603, 0.0006154725559211021],
        [-0.006487505749364302, 0.009747050754609096],
    ];
    const C5_PEAK: f64 = 0.9962316398302231;

    const PWI_FS: f64 = 20e6 / 3.0;
    const PWI_FC: f64 = 5e6;
    const PWI_T0: f64 = 9.95e-6;
    fn pwi_rf() -> Vec<f64> {
        rf_pulses(334, PWI_FS, PWI_FC, 999, 3.0, 60.0, 30.0)
    }
    #[rustfmt::skip]
    const PWI_IDX: [usize; 7] = [0, 3, 30, 100, 167, 300, 333];
    #[rustfmt::skip]
    const PWI_IQ: [[f64; 2]; 7] = [
        [-0.008645292020940672, 0.00935864971256099],
        [0.0012106774645179541, 0.0016046410241078262],
        [0.551058148731605, -0.0006029235363489456],
        [-0.0065457202439081425, -0.008798170154120447],
        [-0.001495497511775713, -0.010054334464417163],
        [0.003326212785077493, -0.0019259360302444615],
        [-0.10108565036490479, -0.003114246159599723],
    ];
    const PWI_PEAK: f64 = 0.5510584785667437;

    fn peak(v: &[[f64; 2]]) -> f64 {
        v.iter().fold(0.0f64, |m, c| m.max(c[0].hypot(c[1])))
    }

    #[test]
    fn rf2iq_trace_matches_pymust() {
        let cases = [
            (
                c5_rf(),
                C5_FS,
                C5_FC,
                C5_T0,
                79.0,
                &C5_IDX[..],
                &C5_IQ[..],
                C5_PEAK,
            ),
            (
                pwi_rf(),
                PWI_FS,
                PWI_FC,
                PWI_T0,
                15.0,
                &PWI_IDX[..],
                &PWI_IQ[..],
                PWI_PEAK,
            ),
        ];
        for (rf, fs, fc, t0, bw, idx, want, pk) in cases {
            let iq = rf2iq_trace(&rf, fs, fc, t0, Some(bw), FiltfiltConvention::Scipy).unwrap();
            assert!((peak(&iq) - pk).abs() < 1e-12 * pk);
            for (&i, w) in idx.iter().zip(want) {
                let e = (iq[i][0] - w[0]).hypot(iq[i][1] - w[1]);
                // The mixing phase reaches ~3800 rad, whose ulp is 5e-13.
                assert!(e < 1e-11 * pk, "fs={fs} sample {i}: {:?} vs {w:?}", iq[i]);
            }
        }
    }

    #[test]
    fn infallible_wrappers() {
        assert_eq!(
            butter_lowpass_sos(5, 0.1125),
            try_butter_lowpass_sos(5, 0.1125).unwrap()
        );
        assert_eq!(
            butter_lowpass_ba(5, 0.1125),
            try_butter_lowpass_ba(5, 0.1125).unwrap()
        );
        assert!(butter_lowpass_sos(5, 1.5).is_empty());
        assert_eq!(butter_lowpass_ba(0, 0.5), (vec![], vec![]));
        let sos = butter_lowpass_sos(5, 0.1125);
        assert_eq!(sosfilt_zi(&sos), try_sosfilt_zi(&sos).unwrap());
        assert!(lfilter_zi(&[1.0], &[0.0]).is_empty());
        // A pole at z = 1 has no steady state.
        assert!(lfilter_zi(&[1.0, 0.0], &[1.0, -1.0]).is_empty());
    }

    #[test]
    fn must_wn_rule() {
        // PWI_disk: 15 % of 5 MHz at fs = 20/3 MHz.
        assert_eq!(
            must_wn(PWI_FS, PWI_FC, Some(15.0)).unwrap(),
            5e6 * 15.0 / 100.0 / (20e6 / 3.0)
        );
        assert!((must_wn(PWI_FS, PWI_FC, Some(15.0)).unwrap() - 0.1125).abs() < 1e-15);
        // No bandwidth: min(2 fc/fs, 0.5).
        assert_eq!(must_wn(C5_FS, C5_FC, None).unwrap(), 0.5);
        assert_eq!(must_wn(40e6, 5e6, None).unwrap(), 0.25);
        assert!(matches!(
            must_wn(C5_FS, C5_FC, Some(0.0)),
            Err(FilterError::BandwidthOutOfRange(_))
        ));
        assert!(matches!(
            must_wn(C5_FS, C5_FC, Some(200.0)),
            Err(FilterError::BandwidthOutOfRange(_))
        ));
        // 150 % of 5 MHz at 6.67 MHz: Wn = 1.125.
        assert!(matches!(
            must_wn(PWI_FS, PWI_FC, Some(150.0)),
            Err(FilterError::CutoffOutOfRange(_))
        ));
        assert!(matches!(
            must_wn(f64::NAN, PWI_FC, None),
            Err(FilterError::BadParameter(_))
        ));
        assert!(matches!(
            try_butter_lowpass_ba(5, 1.0),
            Err(FilterError::CutoffOutOfRange(_))
        ));
        assert!(matches!(
            try_butter_lowpass_sos(0, 0.5),
            Err(FilterError::ZeroOrder)
        ));
    }

    /// f64 phase (cycles, in [-0.5, 0.5)) of sample k as MUST computes it.
    fn true_cycles(fc: f64, fs: f64, t0: f64, k: usize) -> f64 {
        let c = (fc * t0).rem_euclid(1.0) + (fc / fs * k as f64).rem_euclid(1.0);
        (c + 0.5).rem_euclid(1.0) - 0.5
    }

    fn wrap(d: f64) -> f64 {
        (d + 0.5).rem_euclid(1.0) - 0.5
    }

    #[test]
    fn phase_accumulator_precision() {
        // fc/fs = 0.25 (C5-2v) and 0.75 (PWI_disk, fs = 20/3 MHz, not exact),
        // plus an awkward ratio; up to k = 2500 and well beyond.
        let cases = [
            (C5_FC, C5_FS, C5_T0),
            (PWI_FC, PWI_FS, PWI_T0),
            (7.6e6, 30.4e6 * 1.0000001, 3.3e-6),
        ];
        for (fc, fs, t0) in cases {
            let p = DemodParams::must(fs, fc, t0, Some(50.0), FiltfiltConvention::Scipy).unwrap();
            let (mut worst_acc, mut worst_naive) = (0.0f64, 0.0f64);
            for k in (0..20_000usize).step_by(7).chain([2500, 2325, 19_999]) {
                let want = true_cycles(fc, fs, t0, k);
                let ph = p.phase0.wrapping_add((k as u32).wrapping_mul(p.phase_step));
                let got = ((ph as i32) as f32 * PHASE_UNIT) as f64;
                let e = wrap(got - want).abs();
                if k <= 2500 {
                    worst_acc = worst_acc.max(e);
                    // Naive f32: fract(fract(fc·t0) + (fc/fs)·k) in f32.
                    let naive =
                        ((fc * t0).rem_euclid(1.0) as f32 + (fc / fs) as f32 * k as f32).fract();
                    worst_naive = worst_naive.max(wrap(naive as f64 - want).abs());
                }
                assert!(
                    e < 2e-6,
                    "fc/fs={} k={k}: phase error {e:e} cycles",
                    fc / fs
                );
            }
            println!(
                "fc/fs = {:.9}: u32 accumulator max phase error {worst_acc:.2e} cycles (k <= 2500); naive f32 {worst_naive:.2e}",
                fc / fs
            );
        }
    }

    /// f64 reference of the shader: the same mixing and filtfilt as pymust,
    /// from f32 RF.
    fn reference_iq(rf: &[f32], fs: f64, fc: f64, t0: f64, bw: f64) -> Vec<[f64; 2]> {
        let rf64: Vec<f64> = rf.iter().map(|&v| v as f64).collect();
        rf2iq_trace(&rf64, fs, fc, t0, Some(bw), FiltfiltConvention::Scipy).unwrap()
    }

    fn max_err_rel_peak(got: &[[f32; 2]], want: &[[f64; 2]]) -> f64 {
        let pk = peak(want);
        got.iter().zip(want).fold(0.0f64, |m, (g, w)| {
            m.max((g[0] as f64 - w[0]).hypot(g[1] as f64 - w[1]))
        }) / pk
    }

    /// Direct-form (b, a) f32 filtfilt with the same extension and initial
    /// conditions, only to measure why the shader uses sections.
    fn demodulate_trace_direct_f32(
        rf: &[f32],
        p: &DemodParams,
        b: &[f64],
        a: &[f64],
    ) -> Vec<[f32; 2]> {
        let n = rf.len();
        let pad = p.padlen;
        let bf: Vec<f32> = b.iter().map(|&v| v as f32).collect();
        let af: Vec<f32> = a.iter().map(|&v| v as f32).collect();
        let zi: Vec<f32> = try_lfilter_zi(b, a)
            .unwrap()
            .iter()
            .map(|&v| v as f32)
            .collect();
        let m = bf.len();
        let run = |x: &[[f32; 2]]| -> Vec<[f32; 2]> {
            let mut z: Vec<[f32; 2]> = zi.iter().map(|&s| [s * x[0][0], s * x[0][1]]).collect();
            x.iter()
                .map(|xn| {
                    let mut y = [0.0f32; 2];
                    for c in 0..2 {
                        y[c] = z[0][c] + bf[0] * xn[c];
                        for i in 0..m - 2 {
                            z[i][c] = z[i + 1][c] + bf[i + 1] * xn[c] - af[i + 1] * y[c];
                        }
                        z[m - 2][c] = bf[m - 1] * xn[c] - af[m - 1] * y[c];
                    }
                    y
                })
                .collect()
        };
        let ext: Vec<[f32; 2]> = (0..n + 2 * pad)
            .map(|i| ext_sample_f32(rf, i, pad, p.phase0, p.phase_step))
            .collect();
        let mut y = run(&ext);
        y.reverse();
        let mut y = run(&y);
        y.reverse();
        y[pad..pad + n]
            .iter()
            .map(|v| [2.0 * v[0], 2.0 * v[1]])
            .collect()
    }

    #[test]
    fn f32_sos_twin_matches_f64_reference() {
        let cases = [
            (
                "C5-2v-like 3.57/14.28 MHz, 2326 samples, B 79 %",
                c5_rf(),
                C5_FS,
                C5_FC,
                C5_T0,
                79.0,
            ),
            (
                "PWI-like 5/6.67 MHz, 334 samples, B 15 %",
                pwi_rf(),
                PWI_FS,
                PWI_FC,
                PWI_T0,
                15.0,
            ),
            (
                "C5-2v-like, narrow band B 15 % (Wn 0.0375)",
                c5_rf(),
                C5_FS,
                C5_FC,
                C5_T0,
                15.0,
            ),
        ];
        for (name, rf64, fs, fc, t0, bw) in cases {
            let rf: Vec<f32> = rf64.iter().map(|&v| v as f32).collect();
            let p = DemodParams::must(fs, fc, t0, Some(bw), FiltfiltConvention::Scipy).unwrap();
            let want = reference_iq(&rf, fs, fc, t0, bw);
            let mut out = vec![[0.0f32; 2]; rf.len()];
            let mut scratch = vec![[0.0f32; 2]; p.scratch_len(rf.len())];
            demodulate_trace_f32(&rf, &mut out, &mut scratch, &p).unwrap();
            let e_sos = max_err_rel_peak(&out, &want);
            let (b, a) = try_butter_lowpass_ba(5, must_wn(fs, fc, Some(bw)).unwrap()).unwrap();
            let e_direct = max_err_rel_peak(&demodulate_trace_direct_f32(&rf, &p, &b, &a), &want);
            println!(
                "{name}: f32 SOS max err {e_sos:.2e} of peak; f32 direct form (b,a) {e_direct:.2e}"
            );
            assert!(e_sos < 1e-4, "{name}: {e_sos:e}");
        }
    }

    #[test]
    fn demodulate_loops_over_traces_and_checks_sizes() {
        let p = DemodParams::must(
            PWI_FS,
            PWI_FC,
            PWI_T0,
            Some(15.0),
            FiltfiltConvention::Scipy,
        )
        .unwrap();
        assert_eq!(p.padlen, 18);
        let a: Vec<f32> = pwi_rf().iter().map(|&v| v as f32).collect();
        let b: Vec<f32> = a.iter().rev().map(|&v| 0.5 * v).collect();
        let both: Vec<f32> = a.iter().chain(&b).copied().collect();
        let iq = demodulate(&both, 2, a.len(), &p).unwrap();
        let one = demodulate(&b, 1, b.len(), &p).unwrap();
        assert_eq!(&iq[a.len()..], &one[..]);
        assert!(matches!(
            demodulate(&both, 3, a.len(), &p),
            Err(FilterError::BufferSize { .. })
        ));
        assert_eq!(demodulate(&[], 0, 0, &p), Ok(Vec::new()));
        assert!(matches!(
            demodulate(&[], 1, 0, &p),
            Err(FilterError::TooShort { .. })
        ));
        assert!(matches!(
            demodulate(&both[..36], 2, 18, &p),
            Err(FilterError::TooShort { .. })
        ));
        let mut out = vec![[0.0f32; 2]; a.len()];
        let mut scratch = vec![[0.0f32; 2]; a.len()];
        assert!(matches!(
            demodulate_trace_f32(&a, &mut out, &mut scratch, &p),
            Err(FilterError::BufferSize {
                what: "scratch",
                ..
            })
        ));
        let m = DemodParams::must(
            PWI_FS,
            PWI_FC,
            PWI_T0,
            Some(15.0),
            FiltfiltConvention::Matlab,
        )
        .unwrap();
        assert_eq!(m.padlen, 15);
    }

    #[test]
    fn f32_twin_with_matlab_padding_matches_matlab_filtfilt() {
        let rf: Vec<f32> = pwi_rf().iter().map(|&v| v as f32).collect();
        let p = DemodParams::must(
            PWI_FS,
            PWI_FC,
            PWI_T0,
            Some(15.0),
            FiltfiltConvention::Matlab,
        )
        .unwrap();
        let rf64: Vec<f64> = rf.iter().map(|&v| v as f64).collect();
        let want = rf2iq_trace(
            &rf64,
            PWI_FS,
            PWI_FC,
            PWI_T0,
            Some(15.0),
            FiltfiltConvention::Matlab,
        )
        .unwrap();
        let got = demodulate(&rf, 1, rf.len(), &p).unwrap();
        let e = max_err_rel_peak(&got, &want);
        assert!(e < 1e-4, "{e:e}");
        // And the two conventions really differ at the ends.
        let scipy = rf2iq_trace(
            &rf64,
            PWI_FS,
            PWI_FC,
            PWI_T0,
            Some(15.0),
            FiltfiltConvention::Scipy,
        )
        .unwrap();
        let d = (scipy[0][0] - want[0][0]).hypot(scipy[0][1] - want[0][1]) / peak(&want);
        println!("PWI-like: |IQ_scipy − IQ_matlab| at sample 0 = {d:.2e} of peak");
        assert!(d > 1e-4);
    }
}
