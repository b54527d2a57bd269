//! MUST's transmit-time rule, for bit-for-bit agreement with `dasmtx`.
//!
//! UFF's analytic transmit time (`Wavefront::transmit_distance`) is exact
//! inside the insonified zone. MUST's `dasmtx` instead takes, for every
//! pixel, the earliest arrival from 4N "virtual elements" interpolated
//! along the array with cubic splines:
//!
//! ```text
//! T_tx(p) = min_i (delay_i + |p − e_i| / c)      (MUST time)
//! ```
//!
//! Inside the zone the two agree (Huygens); outside it MUST follows the
//! edge wave from the end element, and images differ by up to ~1 dB there.
//! The per-element MUST delays come from the wavefront: the time at which
//! it passes element e, `t_tx(e)/c − wave.delay`.

use glam::DVec3;

use super::{Probe, Wave};

/// Values of the not-a-knot cubic spline through `y` at unit spacing,
/// evaluated at `at` (in index units): scipy's `interp1d(kind='cubic')`,
/// which MUST's Python port uses (MATLAB's `spline` is the same).
pub fn spline_not_a_knot(y: &[f64], at: &[f64]) -> Vec<f64> {
    let n = y.len();
    if n < 4 {
        // Too few knots for not-a-knot: fall back to linear interpolation
        // (scipy would refuse; MUST never has fewer than 4 elements here).
        return at
            .iter()
            .map(|&t| {
                if n == 1 {
                    return y[0];
                }
                let i = (t.floor() as usize).min(n - 2);
                y[i] + (y[i + 1] - y[i]) * (t - i as f64)
            })
            .collect();
    }
    // Second derivatives m: interior rows m[i-1] + 4 m[i] + m[i+1] = 6 Δ²y,
    // end rows m0 − 2m1 + m2 = 0 (third derivative continuous at knot 1).
    let mut a = vec![vec![0.0f64; n]; n];
    let mut b = vec![0.0f64; n];
    a[0][0] = 1.0;
    a[0][1] = -2.0;
    a[0][2] = 1.0;
    a[n - 1][n - 3] = 1.0;
    a[n - 1][n - 2] = -2.0;
    a[n - 1][n - 1] = 1.0;
    for i in 1..n - 1 {
        a[i][i - 1] = 1.0;
        a[i][i] = 4.0;
        a[i][i + 1] = 1.0;
        b[i] = 6.0 * (y[i + 1] - 2.0 * y[i] + y[i - 1]);
    }
    let m = solve(a, b);
    at.iter()
        .map(|&t| {
            let i = (t.floor().max(0.0) as usize).min(n - 2);
            let u = t - i as f64;
            let v = 1.0 - u;
            v * y[i] + u * y[i + 1] + ((v * v * v - v) * m[i] + (u * u * u - u) * m[i + 1]) / 6.0
        })
        .collect()
}

/// Gaussian elimination with partial pivoting (n ≤ a few hundred).
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for col in 0..n {
        let piv = (col..n)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .unwrap_or(col);
        a.swap(col, piv);
        b.swap(col, piv);
        let d = a[col][col];
        if d == 0.0 {
            continue;
        }
        let (above, below) = a.split_at_mut(col + 1);
        let pivot = &above[col];
        for (i, r) in below.iter_mut().enumerate() {
            let f = r[col] / d;
            if f != 0.0 {
                for (x, p) in r[col..n].iter_mut().zip(&pivot[col..n]) {
                    *x -= f * p;
                }
                b[col + 1 + i] -= f * b[col];
            }
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = if a[row][row] != 0.0 {
            (b[row] - s) / a[row][row]
        } else {
            0.0
        };
    }
    x
}

/// MUST's per-element transmit delays (seconds, MUST time) for `wave`.
pub fn must_delays(probe: &Probe, wave: &Wave, c: f64) -> Vec<f64> {
    probe
        .elements
        .iter()
        .map(|e| wave.wavefront.transmit_distance(e.position) / c - wave.delay)
        .collect()
}

/// MUST's 4N virtual transmit elements: (x, y, z, delay·c) in metres.
pub fn must_virtual_elements(probe: &Probe, wave: &Wave, c: f64) -> Vec<[f64; 4]> {
    let n = probe.len();
    let delays = must_delays(probe, wave, c);
    if n < 2 {
        let p: DVec3 = probe
            .elements
            .first()
            .map(|e| e.position)
            .unwrap_or_default();
        return vec![[p.x, p.y, p.z, delays.first().copied().unwrap_or(0.0) * c]];
    }
    let m = 4 * n;
    let at: Vec<f64> = (0..m)
        .map(|i| (n - 1) as f64 * i as f64 / (m - 1) as f64)
        .collect();
    let col = |f: &dyn Fn(usize) -> f64| spline_not_a_knot(&(0..n).map(f).collect::<Vec<_>>(), &at);
    let x = col(&|e| probe.elements[e].position.x);
    let y = col(&|e| probe.elements[e].position.y);
    let z = col(&|e| probe.elements[e].position.z);
    let d = spline_not_a_knot(&delays, &at);
    (0..m).map(|i| [x[i], y[i], z[i], d[i] * c]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spline_reproduces_cubics_and_knots() {
        // Not-a-knot splines are exact for cubic polynomials.
        let f = |t: f64| 0.3 * t * t * t - 2.0 * t * t + t - 5.0;
        let y: Vec<f64> = (0..9).map(|i| f(i as f64)).collect();
        let at = [0.0, 0.37, 2.5, 4.0, 7.9, 8.0];
        for (t, v) in at.iter().zip(spline_not_a_knot(&y, &at)) {
            assert!((v - f(*t)).abs() < 1e-9, "{t}: {v} vs {}", f(*t));
        }
    }

    #[test]
    fn virtual_elements_of_a_plane_wave_are_on_the_array() {
        let probe = Probe::linear(8, 1e-3, 1e-3, 1e-3);
        let a = 0.2f64;
        let wave = Wave {
            wavefront: super::super::Wavefront::Plane { azimuth: a },
            delay: -(3.5e-3 * a.sin()) / 1540.0,
        };
        let v = must_virtual_elements(&probe, &wave, 1540.0);
        assert_eq!(v.len(), 32);
        assert!((v[0][0] + 3.5e-3).abs() < 1e-15 && (v[31][0] - 3.5e-3).abs() < 1e-15);
        // MUST delays are >= 0 with the first element (for a > 0) at 0.
        assert!(v[0][3].abs() < 1e-12 && v.iter().all(|e| e[3] >= -1e-12));
    }
}
