//! MUST's 8-bit log compression (`bmode`), bit-for-bit with MATLAB MUST.
//!
//! MATLAB MUST (`bmode.m`, 2020/06):
//!
//! ```text
//! I = abs(IQ);                                % real envelope
//! I = 20*log10(I/max(I,[],'all')) + DR;
//! I = uint8(255*I/DR);                        % 8-bit log-compressed image
//! ```
//!
//! with `assert(DR>0)`. MATLAB's `uint8` rounds half away from zero and
//! saturates (negative and −Inf → 0, > 255 → 255, NaN → 0), so pixels at or
//! below −DR dB are 0, and the maximum is 255.
//!
//! pymust 0.1.9 (`bmode.py`) computes the same expression for `DR >= 1` but
//! clips to [0, 255] and then casts with `astype(np.uint8)`, which
//! **truncates**: pymust's pixels are one grey level lower than MATLAB's
//! wherever the fractional part is ≥ 0.5. For `DR < 1` pymust instead
//! returns `255·(I/max)^DR` (a power law MATLAB MUST does not have).
//! [`pymust_bmode_u8`] reproduces that variant.
//!
//! The normalisation is by the maximum over the *whole* array handed to
//! `bmode` (for `bmode_PWI_disk.mat`, all 32 frames at once), so callers
//! pass every frame that shares the normalisation in one slice.

use std::fmt;

/// A dynamic range `bmode` cannot use.
#[derive(Debug, Clone, PartialEq)]
pub enum BmodeError {
    /// MATLAB MUST asserts `DR > 0`; NaN and infinities are refused too.
    BadDynamicRange(f64),
}

impl fmt::Display for BmodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BmodeError::BadDynamicRange(dr) => {
                write!(
                    f,
                    "the dynamic range DR (in dB) must be finite and > 0, got {dr}"
                )
            }
        }
    }
}

impl std::error::Error for BmodeError {}

/// MATLAB's double → uint8 conversion: round half away from zero, saturate
/// to [0, 255], NaN → 0.
pub fn matlab_uint8(x: f64) -> u8 {
    if x.is_nan() || x <= 0.0 {
        0
    } else if x >= 255.0 {
        255
    } else {
        // f64::round is half-away-from-zero, like MATLAB's round.
        x.round() as u8
    }
}

/// Largest finite-or-infinite, non-NaN value (MATLAB's `max` omits NaN).
fn max_omit_nan(v: &[f32]) -> f64 {
    v.iter().fold(f64::NAN, |m, &x| {
        let x = x as f64;
        if x.is_nan() || x <= m {
            m
        } else {
            x
        }
    })
}

/// MATLAB MUST `bmode(IQ, DR)` applied to a precomputed envelope `|IQ|`:
/// `uint8(255·(20·log10(I/max(I)) + DR)/DR)`, evaluated in f64 in MATLAB's
/// order, normalised by the maximum of the whole slice.
///
/// An all-zero envelope gives 0/0 = NaN and therefore all zeros, as in
/// MATLAB.
pub fn must_bmode_u8(envelope: &[f32], dynamic_range_db: f64) -> Result<Vec<u8>, BmodeError> {
    let dr = dynamic_range_db;
    if !(dr.is_finite() && dr > 0.0) {
        return Err(BmodeError::BadDynamicRange(dr));
    }
    let mx = max_omit_nan(envelope);
    Ok(envelope
        .iter()
        .map(|&e| {
            let db = 20.0 * (e as f64 / mx).log10() + dr;
            matlab_uint8(255.0 * db / dr)
        })
        .collect())
}

/// pymust 0.1.9 `bmode(IQ, DR)` on a precomputed envelope: the same formula
/// for `DR >= 1` but truncated to uint8 (`np.clip` then `astype(np.uint8)`),
/// and `255·(I/max)^DR` for `0 < DR < 1`. NaN pixels become 0 (numpy's cast
/// of NaN is platform-defined; 0 on x86-64).
pub fn pymust_bmode_u8(envelope: &[f32], dynamic_range_db: f64) -> Result<Vec<u8>, BmodeError> {
    let dr = dynamic_range_db;
    if !(dr.is_finite() && dr > 0.0) {
        return Err(BmodeError::BadDynamicRange(dr));
    }
    // np.max propagates NaN; a NaN maximum makes every pixel NaN → 0.
    let mx = if envelope.iter().any(|v| v.is_nan()) {
        f64::NAN
    } else {
        max_omit_nan(envelope)
    };
    Ok(envelope
        .iter()
        .map(|&e| {
            let v = if dr >= 1.0 {
                let db = 20.0 * (e as f64 / mx).log10() + dr;
                255.0 * db / dr
            } else {
                (e as f64 / mx).powf(dr) * 255.0
            };
            if v.is_nan() {
                0
            } else {
                v.clamp(0.0, 255.0) as u8
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uint8_rounds_half_away_and_saturates() {
        assert_eq!(matlab_uint8(0.5), 1);
        assert_eq!(matlab_uint8(1.5), 2);
        assert_eq!(matlab_uint8(2.5), 3);
        assert_eq!(matlab_uint8(2.4999999999), 2);
        assert_eq!(matlab_uint8(254.5), 255);
        assert_eq!(matlab_uint8(300.0), 255);
        assert_eq!(matlab_uint8(f64::INFINITY), 255);
        assert_eq!(matlab_uint8(-0.4), 0);
        assert_eq!(matlab_uint8(-3.0), 0);
        assert_eq!(matlab_uint8(f64::NEG_INFINITY), 0);
        assert_eq!(matlab_uint8(f64::NAN), 0);
    }

    /// Envelope and reference pixels. MATLAB values from the formula with
    /// round-half-away; pymust values from pymust.bmode(envelope + 0j, DR)
    /// (pymust 0.1.9, numpy 2.4).
    const ENV: [f32; 10] = [
        1.0,
        0.5,
        0.1,
        0.031622776,
        0.01,
        0.0,
        0.75,
        0.2,
        0.05,
        0.0316,
    ];
    const MATLAB_30: [u8; 10] = [255, 204, 85, 0, 0, 0, 234, 136, 34, 0];
    const PYMUST_30: [u8; 10] = [255, 203, 85, 0, 0, 0, 233, 136, 33, 0];
    // 0.1f32 is slightly above 0.1, so this pixel is 127.5000003: MATLAB 128, pymust 127.
    const MATLAB_40: [u8; 10] = [255, 217, 128, 64, 0, 0, 239, 166, 89, 64];
    const PYMUST_40: [u8; 10] = [255, 216, 127, 63, 0, 0, 239, 165, 89, 63];
    const PYMUST_GAMMA: [u8; 10] = [255, 180, 80, 45, 25, 0, 220, 114, 57, 45];

    #[test]
    fn bmode_matches_references() {
        // 30 dB, as bmode_PWI_disk.mat
        let m = must_bmode_u8(&ENV, 30.0).unwrap();
        let p = pymust_bmode_u8(&ENV, 30.0).unwrap();
        assert_eq!(m, MATLAB_30);
        assert_eq!(p, PYMUST_30);
        assert_eq!(must_bmode_u8(&ENV, 40.0).unwrap(), MATLAB_40);
        assert_eq!(pymust_bmode_u8(&ENV, 40.0).unwrap(), PYMUST_40);
        assert_eq!(pymust_bmode_u8(&ENV, 0.5).unwrap(), PYMUST_GAMMA);
        // Normalisation is by the global maximum: scaling changes nothing.
        let scaled: Vec<f32> = ENV.iter().map(|v| v * 1234.5).collect();
        assert_eq!(must_bmode_u8(&scaled, 30.0).unwrap(), MATLAB_30);
    }

    #[test]
    fn bmode_edge_cases() {
        assert_eq!(must_bmode_u8(&[0.0, 0.0], 30.0).unwrap(), vec![0, 0]);
        assert_eq!(
            must_bmode_u8(&[f32::NAN, 1.0, 0.5], 6.0).unwrap()[..2],
            [0, 255]
        );
        assert!(must_bmode_u8(&[], 30.0).unwrap().is_empty());
        assert!(matches!(
            must_bmode_u8(&ENV, 0.0),
            Err(BmodeError::BadDynamicRange(_))
        ));
        assert!(matches!(
            must_bmode_u8(&ENV, f64::NAN),
            Err(BmodeError::BadDynamicRange(_))
        ));
        assert!(matches!(
            pymust_bmode_u8(&ENV, -1.0),
            Err(BmodeError::BadDynamicRange(_))
        ));
    }
}
