//! MUST's automatic receive F-number, with a faithful port of the bounded
//! Brent minimiser it relies on.
//!
//! # Why a port and not any minimiser
//!
//! With `param.fnumber = []` (MATLAB) / `None` (pymust), `dasmtx` picks the
//! F-number from the element directivity ("So you think you can DAS?",
//! Perrot et al. 2021):
//!
//! ```text
//! λmin  = c / (fc · (1 + bandwidth/200))
//! α     = argmin_{θ ∈ [0, π/2]} | cos θ · sinc(width/λmin · sin θ) − 0.71 |
//! F     = 1 / (2 tan α)
//! ```
//!
//! minimised with `scipy.optimize.fminbound(f, 0, π/2, xtol=π/100)` in
//! pymust and `fminbnd` with `TolX = π/100` in MATLAB. That tolerance is
//! coarse (α is only located to ~0.01 rad, ~5 % in F), so the F-number MUST
//! uses is the point where *this particular* algorithm stops, not the root of
//! the equation. Reproducing MUST's aperture therefore needs the same
//! golden-section/parabolic steps and the same stopping rule, evaluation for
//! evaluation. [`fminbound`] is a line-by-line port of scipy's
//! `_minimize_scalar_bounded`; [`fminbnd_matlab`] is the same
//! Forsythe–Malcolm–Moler `fmin` algorithm with MATLAB's `sqrt(eps)` instead
//! of scipy's `sqrt(2.2e-16)` in the tolerance (the only difference between
//! the two codes that can change the iterates).

use std::f64::consts::PI;

/// Bounded Brent minimisation shared by the scipy and MATLAB variants.
/// Returns the final iterate and the number of function evaluations.
fn brent_bounded(
    f: &impl Fn(f64) -> f64,
    x1: f64,
    x2: f64,
    xatol: f64,
    maxfun: usize,
    sqrt_eps: f64,
) -> (f64, usize) {
    let golden_mean = 0.5 * (3.0 - 5.0f64.sqrt());
    let (mut a, mut b) = (x1, x2);
    let mut fulc = a + golden_mean * (b - a);
    let (mut nfc, mut xf) = (fulc, fulc);
    let mut rat = 0.0f64;
    let mut e = 0.0f64;
    let mut fx = f(xf);
    let mut num = 1usize;
    let (mut ffulc, mut fnfc) = (fx, fx);
    let mut xm = 0.5 * (a + b);
    let mut tol1 = sqrt_eps * xf.abs() + xatol / 3.0;
    let mut tol2 = 2.0 * tol1;

    while (xf - xm).abs() > (tol2 - 0.5 * (b - a)) {
        let mut golden = true;
        // Parabolic fit through the three best points, if the last steps moved.
        if e.abs() > tol1 {
            golden = false;
            let mut r = (xf - nfc) * (fx - ffulc);
            let mut q = (xf - fulc) * (fx - fnfc);
            let mut p = (xf - fulc) * q - (xf - nfc) * r;
            q = 2.0 * (q - r);
            if q > 0.0 {
                p = -p;
            }
            q = q.abs();
            r = e;
            e = rat;
            if p.abs() < (0.5 * q * r).abs() && p > q * (a - xf) && p < q * (b - xf) {
                rat = (p + 0.0) / q;
                let x = xf + rat;
                // Never evaluate within tol2 of the bounds.
                if (x - a) < tol2 || (b - x) < tol2 {
                    let si = sign(xm - xf) + if xm - xf == 0.0 { 1.0 } else { 0.0 };
                    rat = tol1 * si;
                }
            } else {
                golden = true;
            }
        }
        if golden {
            e = if xf >= xm { a - xf } else { b - xf };
            rat = golden_mean * e;
        }
        // Never step by less than tol1.
        let si = sign(rat) + if rat == 0.0 { 1.0 } else { 0.0 };
        let x = xf + si * rat.abs().max(tol1);
        let fu = f(x);
        num += 1;

        if fu <= fx {
            if x >= xf {
                a = xf;
            } else {
                b = xf;
            }
            fulc = nfc;
            ffulc = fnfc;
            nfc = xf;
            fnfc = fx;
            xf = x;
            fx = fu;
        } else {
            if x < xf {
                a = x;
            } else {
                b = x;
            }
            if fu <= fnfc || nfc == xf {
                fulc = nfc;
                ffulc = fnfc;
                nfc = x;
                fnfc = fu;
            } else if fu <= ffulc || fulc == xf || fulc == nfc {
                fulc = x;
                ffulc = fu;
            }
        }
        xm = 0.5 * (a + b);
        tol1 = sqrt_eps * xf.abs() + xatol / 3.0;
        tol2 = 2.0 * tol1;
        if num >= maxfun {
            break;
        }
    }
    (xf, num)
}

/// numpy's `sign`: −1, 0 or 1 (NaN stays NaN).
fn sign(v: f64) -> f64 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        v
    }
}

/// `scipy.optimize.fminbound(f, a, b, xtol, maxfun)` (scipy's default
/// `maxfun` is 500): Brent's bounded minimiser, returning the same iterate
/// as scipy's `res.x` for the same inputs. Bounds in the wrong order are
/// swapped; non-finite bounds return NaN instead of raising.
pub fn fminbound(f: impl Fn(f64) -> f64, a: f64, b: f64, xtol: f64, maxfun: usize) -> f64 {
    if !(a.is_finite() && b.is_finite()) {
        return f64::NAN;
    }
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    // scipy hard-codes sqrt(2.2e-16) rather than sqrt(machine eps).
    brent_bounded(&f, lo, hi, xtol, maxfun.max(1), 2.2e-16f64.sqrt()).0
}

/// MATLAB's `fminbnd(f, a, b, optimset('TolX', xtol))`: the same algorithm
/// with `sqrt(eps)` = 2^-26 in the tolerance and MATLAB's default
/// `MaxFunEvals` = 500. Differs from [`fminbound`] only when a step of
/// length `tol1` is taken, and then by ~1e-10 · |x|.
pub fn fminbnd_matlab(f: impl Fn(f64) -> f64, a: f64, b: f64, xtol: f64) -> f64 {
    if !(a.is_finite() && b.is_finite()) {
        return f64::NAN;
    }
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    brent_bounded(&f, lo, hi, xtol, 500, f64::EPSILON.sqrt()).0
}

/// numpy's normalised sinc, evaluated as numpy does (`y = π·x; sin(y)/y`,
/// with x = 0 replaced by 1e-20).
fn np_sinc(x: f64) -> f64 {
    let y = PI * if x == 0.0 { 1.0e-20 } else { x };
    y.sin() / y
}

/// The objective pymust's `dasmtx` minimises (with `RXangle = 0`).
fn directivity_gap(width_over_lambda: f64) -> impl Fn(f64) -> f64 {
    move |th: f64| (th.cos() * np_sinc(width_over_lambda * th.sin()) - 0.71).abs()
}

fn lambda_min(fc_hz: f64, bandwidth_pct: f64, c_m_s: f64) -> f64 {
    c_m_s / (fc_hz * (1.0 + bandwidth_pct / 200.0))
}

/// MUST's automatic F-number as pymust computes it (scipy `fminbound`,
/// xtol = π/100): `1/(2·tan α)`. Returns NaN for non-physical inputs
/// (non-positive width, frequency or speed, or bandwidth outside ]0, 200[,
/// which `dasmtx` rejects).
pub fn must_auto_fnumber(element_width_m: f64, fc_hz: f64, bandwidth_pct: f64, c_m_s: f64) -> f64 {
    if !valid(element_width_m, fc_hz, bandwidth_pct, c_m_s) {
        return f64::NAN;
    }
    let f = directivity_gap(element_width_m / lambda_min(fc_hz, bandwidth_pct, c_m_s));
    let alpha = fminbound(f, 0.0, PI / 2.0, PI / 100.0, 500);
    1.0 / 2.0 / alpha.tan()
}

/// The same F-number as MATLAB MUST computes it (`fminbnd`, TolX = π/100).
pub fn must_auto_fnumber_matlab(
    element_width_m: f64,
    fc_hz: f64,
    bandwidth_pct: f64,
    c_m_s: f64,
) -> f64 {
    if !valid(element_width_m, fc_hz, bandwidth_pct, c_m_s) {
        return f64::NAN;
    }
    let f = directivity_gap(element_width_m / lambda_min(fc_hz, bandwidth_pct, c_m_s));
    let alpha = fminbnd_matlab(f, 0.0, PI / 2.0, PI / 100.0);
    1.0 / 2.0 / alpha.tan()
}

fn valid(width: f64, fc: f64, bw: f64, c: f64) -> bool {
    width.is_finite()
        && width > 0.0
        && fc.is_finite()
        && fc > 0.0
        && c.is_finite()
        && c > 0.0
        && bw > 0.0
        && bw < 200.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// scipy.optimize.fminbound(f, a, b, xtol=...) (scipy 1.17.1): x and nfev.
    #[test]
    fn fminbound_matches_scipy() {
        type Case = (
            &'static str,
            Box<dyn Fn(f64) -> f64>,
            f64,
            f64,
            f64,
            f64,
            usize,
        );
        let cases: [Case; 5] = [
            (
                "quad",
                Box::new(|x: f64| (x - 1.3).powi(2)),
                0.0,
                3.0,
                1e-5,
                1.3,
                6,
            ),
            (
                "cos",
                Box::new(|x: f64| x.cos()),
                3.0,
                4.0,
                1e-8,
                3.141592654027715,
                9,
            ),
            (
                "abs",
                Box::new(|x: f64| (x - 0.2).abs()),
                0.0,
                1.0,
                1e-5,
                0.19999935430555424,
                18,
            ),
            (
                "edge",
                Box::new(|x: f64| x),
                0.0,
                1.0,
                1e-5,
                5.9608609865491405e-06,
                25,
            ),
            (
                "quart",
                Box::new(|x: f64| (x - 2.0).powi(4) + 0.1 * x),
                -1.0,
                5.0,
                1e-10,
                1.707598225517862,
                16,
            ),
        ];
        for (name, f, a, b, xtol, want, nfev) in cases {
            let (x, n) = brent_bounded(&f, a, b, xtol, 500, 2.2e-16f64.sqrt());
            assert!(
                (x - want).abs() <= 1e-12 * want.abs().max(1e-3),
                "{name}: {x} vs {want}"
            );
            assert_eq!(n, nfev, "{name}: evaluations");
            assert_eq!(fminbound(&f, a, b, xtol, 500), x);
        }
        // maxfun stops early, as scipy's flag=1 exit.
        let (_, n) = brent_bounded(&|x: f64| x, 0.0, 1.0, 1e-5, 5, 2.2e-16f64.sqrt());
        assert_eq!(n, 5);
        assert!(fminbound(|x| x, f64::NAN, 1.0, 1e-5, 500).is_nan());
    }

    /// pymust.dasmtx's automatic F-number, computed with pymust 0.1.9's
    /// formula and scipy 1.17.1 (alpha, F, nfev).
    #[test]
    fn auto_fnumber_matches_pymust() {
        let cases = [
            // L11-5v: width 0.27 mm, fc 7.6 MHz, 77 %
            (
                0.27e-3,
                7.6e6,
                77.0,
                1540.0,
                0.22917609550159337,
                2.1433979870685445,
            ),
            // C5-2v (pymust.getparam): width 0.46 mm, fc 3.57 MHz, 79 %
            (
                0.46e-3,
                3.57e6,
                79.0,
                1540.0,
                0.28115660964439304,
                1.7312600380405487,
            ),
            // PWI_disk: width 0.262 mm, fc 5 MHz, 15 %, c 1480
            (
                0.262e-3,
                5e6,
                15.0,
                1480.0,
                0.41827423290560767,
                1.1248487475247932,
            ),
            // P4-2v, L12-3v (pymust.getparam)
            (
                0.25e-3,
                2.72e6,
                74.0,
                1540.0,
                0.565075717679715,
                0.7885900767221067,
            ),
            (
                0.17e-3,
                7.54e6,
                93.0,
                1540.0,
                0.3407817339790223,
                1.409973182601559,
            ),
        ];
        for (w, fc, bw, c, alpha, fnum) in cases {
            let f = directivity_gap(w / lambda_min(fc, bw, c));
            let a = fminbound(&f, 0.0, PI / 2.0, PI / 100.0, 500);
            assert!((a - alpha).abs() < 1e-13, "alpha {a} vs {alpha}");
            let got = must_auto_fnumber(w, fc, bw, c);
            assert!((got - fnum).abs() < 1e-12 * fnum, "F {got} vs {fnum}");
            // MATLAB's fminbnd takes the same steps here.
            let m = must_auto_fnumber_matlab(w, fc, bw, c);
            assert!((m - fnum).abs() < 1e-9 * fnum, "MATLAB F {m} vs {fnum}");
        }
        assert!(must_auto_fnumber(0.0, 5e6, 15.0, 1480.0).is_nan());
        assert!(must_auto_fnumber(0.262e-3, 5e6, 200.0, 1480.0).is_nan());
    }

    #[test]
    fn numpy_sinc() {
        assert_eq!(np_sinc(0.0), 1.0);
        assert!((np_sinc(0.5) - 2.0 / PI).abs() < 1e-16);
        assert!(np_sinc(1.0).abs() < 1e-16);
    }
}
