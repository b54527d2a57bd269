//! The needle as the scanner sees it: a specular tube whose echo depends on
//! the angle between the beam and the shaft, with the reverberation tail
//! (comet) that ringing between its walls draws below it, and a bright tip.

use glam::DVec3;

use super::anatomy::BeamOrigin;
use crate::sim::{Rng, Scatterer};

/// A spinal needle: gauge → outer diameter (Stubs' table), length.
#[derive(Debug, Clone)]
pub struct Needle {
    pub gauge: u32,
    pub outer_diameter: f64,
    pub length: f64,
    /// Bevel angle (degrees), for the tip's shape.
    pub bevel_deg: f64,
}

impl Needle {
    pub fn new(gauge: u32, length: f64, bevel_deg: f64) -> Result<Needle, String> {
        let od_mm = match gauge {
            18 => 1.27,
            19 => 1.07,
            20 => 0.91,
            21 => 0.82,
            22 => 0.72,
            23 => 0.64,
            25 => 0.51,
            27 => 0.41,
            g => {
                return Err(format!(
                    "gauge {g}: expected one of 18, 19, 20, 21, 22, 23, 25, 27"
                ))
            }
        };
        Ok(Needle {
            gauge,
            outer_diameter: od_mm * 1e-3,
            length,
            bevel_deg,
        })
    }
}

/// Scatterers of the part of the needle inside the slab, in the image
/// frame. `tip` and `direction` (unit, pointing to the tip) are in the
/// image frame; `inserted` is the length inside the body.
pub fn needle_scatterers(
    needle: &Needle,
    tip: DVec3,
    direction: DVec3,
    inserted: f64,
    beams: BeamOrigin,
    half_y: f64,
    seed: u64,
) -> Vec<Scatterer> {
    let mut rng = Rng::new(seed ^ 0x6e65_6564);
    let mut out = Vec::new();
    let step = 0.00008;
    let n = (inserted.min(needle.length) / step) as usize;
    let r = needle.outer_diameter / 2.0;
    // The in-plane normal of the shaft, to place its two walls.
    let side = DVec3::Y.cross(direction).normalize_or_zero();
    for i in 0..n {
        // Random places along the shaft, not a regular comb: a comb of
        // scatterers λ/5 apart is a perfect mirror in the simulator, whose
        // echo misses the aperture at all but one angle, while a real shaft
        // is rough enough to send some back at every angle. The angle law
        // below then sets how much.
        let c = tip - direction * ((i as f64 + rng.next_f64()) * step);
        if c.y.abs() > half_y + r {
            continue;
        }
        let beam = match beams {
            BeamOrigin::Point(o) => (c - o).normalize(),
            BeamOrigin::Parallel(d) => d,
        };
        // Specular: the echo comes back when the beam meets the shaft near
        // normal incidence; sin of the beam–shaft angle is cos of incidence.
        let cos_inc = (1.0 - beam.dot(direction).powi(2)).max(0.0).sqrt();
        // Steel in tissue reflects most of the incident energy: at normal
        // incidence the shaft stands about 25 dB above muscle speckle
        // (`anatomy::REFERENCE_DENSITY`), as on a scanner.
        let a = 16.0 * cos_inc.powi(3);
        if a < 1e-3 {
            continue;
        }
        for (wall, gain) in [(-1.0, 1.0), (1.0, 0.6)] {
            let p = c + side * (wall * r);
            out.push(Scatterer {
                position: p,
                amplitude: a * gain * (0.85 + 0.15 * rng.next_f64()),
            });
        }
        // Reverberation: echoes ringing inside the lumen arrive later, as
        // fainter copies spaced by the wall-to-wall path along the beam.
        if i % 3 == 0 {
            for k in 1..=6 {
                let p = c + beam * (k as f64 * 2.0 * r);
                out.push(Scatterer {
                    position: p,
                    amplitude: a * 0.55f64.powi(k) * (0.8 + 0.4 * rng.next_f64()),
                });
            }
        }
    }
    // The bevel: a bright, angle-independent point cluster at the tip.
    for k in 0..12 {
        let p = tip - direction * (k as f64 * 0.00006) + side * ((rng.next_f64() - 0.5) * r);
        if p.y.abs() <= half_y + r {
            out.push(Scatterer {
                position: p,
                amplitude: 1.0,
            });
        }
    }
    out
}
