//! CPU twin of `shaders/scan_convert.wgsl`.

use crate::pipeline::scan_convert::ScanConvertParams;

/// RGBA8 display pixels from a `[frame][radius][angle]` (or `[frame][z][x]`)
/// grey-level image.
pub fn scan_convert(p: &ScanConvertParams, polar: &[f32]) -> Vec<u32> {
    let (nr, na) = (p.n_radius as usize, p.n_angle as usize);
    let at = |r: usize, a: usize| polar[(p.frame as usize * nr + r) * na + a] as f64;
    let mut out = vec![0u32; (p.width * p.height) as usize];
    for row in 0..p.height as usize {
        for col in 0..p.width as usize {
            let x = p.x0 as f64 + col as f64 * p.dx as f64;
            let z = p.z0 as f64 + row as f64 * p.dz as f64;
            let (dx, dz) = (x - p.origin[0] as f64, z - p.origin[1] as f64);
            let (fr, fa) = if p.cartesian == 1 {
                (
                    (z - p.radius0 as f64) / p.radius_step as f64,
                    (x - p.angle0 as f64) / p.angle_step as f64,
                )
            } else {
                (
                    ((dx * dx + dz * dz).sqrt() - p.radius0 as f64) / p.radius_step as f64,
                    (dx.atan2(dz) - p.angle0 as f64) / p.angle_step as f64,
                )
            };
            if !(fr >= 0.0 && fr <= (nr - 1) as f64 && fa >= 0.0 && fa <= (na - 1) as f64) {
                continue;
            }
            let r0 = (fr as usize).min(nr - 2);
            let a0 = (fa as usize).min(na - 2);
            let (tr, ta) = (fr - r0 as f64, fa - a0 as f64);
            let top = at(r0, a0) + (at(r0, a0 + 1) - at(r0, a0)) * ta;
            let bottom = at(r0 + 1, a0) + (at(r0 + 1, a0 + 1) - at(r0 + 1, a0)) * ta;
            let g = (top + (bottom - top) * tr + 0.5).floor().clamp(0.0, 255.0) as u32;
            out[row * p.width as usize + col] = g | (g << 8) | (g << 16) | (255 << 24);
        }
    }
    out
}
