//! CPU twin of `shaders/das.wgsl`: the same arithmetic per (pixel, wave,
//! element, frame), in f64, from the same [`DasPlan`]. Tests compare the
//! two; benchmarks time them side by side.
//!
//! The shader's execution plan is not mirrored: it beamforms several
//! neighbouring pixels per invocation from shared rows of frame-contiguous
//! data, precomputes transmit distances per (wave, pixel) and loops only
//! over the elements that contribute. None of that changes what is summed,
//! only the order, so the twin keeps the plain loops (pixel, wave, element,
//! frame) that make it easy to check by eye. [`first_tap`] is the one
//! piece the GPU host also uses: it samples delays to choose the kernel's
//! tiling (`pipeline::das::choose_tiling`).

use crate::pipeline::das::{DasPlan, FLAG_IQ, FLAG_NORMALIZE};

fn window(apodization: u32, tukey: f64, u: f64) -> f64 {
    match apodization {
        1 => 0.5 + 0.5 * (std::f64::consts::PI * u).cos(),
        2 => {
            let flat = 1.0 - tukey;
            if u <= flat || tukey <= 0.0 {
                1.0
            } else {
                0.5 + 0.5 * (std::f64::consts::PI * (u - flat) / tukey).cos()
            }
        }
        _ => 1.0,
    }
}

fn receive_weight(plan: &DasPlan, d: [f64; 3], normal: [f64; 3], e: usize) -> f64 {
    let p = &plan.params;
    if p.aperture > 0.0 {
        let along = d[0] * normal[0] + d[1] * normal[1] + d[2] * normal[2];
        let a = [
            d[0] - along * normal[0],
            d[1] - along * normal[1],
            d[2] - along * normal[2],
        ];
        let across = (a[0] * a[0] + a[1] * a[1] + a[2] * a[2]).sqrt();
        let ap = p.aperture as f64;
        if along <= 0.0 || across > along * ap {
            return 0.0;
        }
        return window(p.apodization, p.tukey as f64, across / (along * ap));
    }
    let n = (p.n_elements as f64 - 1.0).max(1.0);
    window(
        p.apodization,
        p.tukey as f64,
        (2.0 * e as f64 / n - 1.0).abs(),
    )
}

/// The transmit distance (metres) of wave `w` at `pos` and the delay to
/// subtract (seconds): MUST's earliest arrival over the virtual elements
/// (delay already in it), or the analytic wavefront and the wave's delay.
pub fn transmit(plan: &DasPlan, w: usize, pos: [f64; 3]) -> (f64, f64) {
    let wave = &plan.waves[w];
    if plan.params.transmit == 1 {
        let rows =
            &plan.tx_table[wave.table_start as usize..(wave.table_start + wave.table_len) as usize];
        let best = rows.iter().fold(f64::INFINITY, |b, v| {
            let d = ((pos[0] - v[0] as f64).powi(2)
                + (pos[1] - v[1] as f64).powi(2)
                + (pos[2] - v[2] as f64).powi(2))
            .sqrt();
            b.min(v[3] as f64 + d)
        });
        (best, 0.0)
    } else {
        (
            transmit_distance(wave.kind, wave.geometry.map(|v| v as f64), pos),
            wave.delay as f64,
        )
    }
}

/// The sample of the first interpolation tap element `e` takes for a pixel
/// at `pos` with transmit distance `t_tx`, or `None` when the element does
/// not contribute (outside the receive aperture or the record): the
/// kernel's `tap` without the weights.
pub fn first_tap(
    plan: &DasPlan,
    n_samples: usize,
    pos: [f64; 3],
    t_tx: f64,
    wave_delay: f64,
    e: usize,
) -> Option<i64> {
    let p = &plan.params;
    let (d, normal) = element_offset(plan, e, pos);
    if receive_weight(plan, d, normal, e) <= 0.0 {
        return None;
    }
    let r = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
    let tau = (t_tx + r) / (1.0 / p.inv_c as f64) - wave_delay;
    let s = (tau - p.t0 as f64) * p.fs as f64;
    let ns = n_samples as f64;
    match p.interp {
        0 => {
            let i = (s + 0.5).floor();
            (s >= 0.0 && i <= ns - 1.0).then_some(i as i64)
        }
        1 => (s >= 0.0 && s <= ns - 2.0).then(|| s.floor() as i64),
        _ => {
            let fl = s.floor();
            (fl >= 1.0 && fl <= ns - 3.0).then_some(fl as i64 - 1)
        }
    }
}

/// The analytic (UFF) transmit distance of a wave of `kind` with `geometry` g.
pub fn transmit_distance(kind: u32, g: [f64; 4], p: [f64; 3]) -> f64 {
    match kind {
        0 => p[0] * g[0] + p[1] * g[1] + p[2] * g[2],
        _ => {
            let r = ((p[0] - g[0]).powi(2) + (p[1] - g[1]).powi(2) + (p[2] - g[2]).powi(2)).sqrt();
            if kind == 1 {
                r - g[3]
            } else {
                g[3] + if p[2] >= g[2] { r } else { -r }
            }
        }
    }
}

/// Beamform `channels` (`[frame][wave][element][sample]`, interleaved
/// complex when `iq`) onto `pixels`; returns `[frame][pixel]` complex.
/// `pixel_subset` limits the work to some pixels (others stay zero) so
/// tests can check a large image at a sample of points.
pub fn das(
    plan: &DasPlan,
    channels: &[f32],
    iq: bool,
    n_samples: usize,
    n_frames: usize,
    pixels: &[[f32; 2]],
    pixel_subset: Option<&[usize]>,
) -> Vec<[f64; 2]> {
    let p = &plan.params;
    let mut flags = p.flags;
    if iq {
        flags |= FLAG_IQ;
    }
    let ne = p.n_elements as usize;
    let nw = p.n_waves as usize;
    let ns = n_samples;
    let frame_stride = nw * ne * ns;
    let np = pixels.len();
    let mut image = vec![[0.0f64; 2]; n_frames * np];
    let sample_at = |k: usize| -> [f64; 2] {
        if flags & FLAG_IQ != 0 {
            [channels[2 * k] as f64, channels[2 * k + 1] as f64]
        } else {
            [channels[k] as f64, 0.0]
        }
    };
    let all: Vec<usize>;
    let pix_list = match pixel_subset {
        Some(s) => s,
        None => {
            all = (0..np).collect();
            &all
        }
    };
    for &pix in pix_list {
        let pos = [pixels[pix][0] as f64, 0.0, pixels[pix][1] as f64];
        let mut acc = vec![[0.0f64; 2]; n_frames];
        for w in 0..nw {
            let (t_tx, wave_delay) = transmit(plan, w, pos);
            let mut wave_acc = vec![[0.0f64; 2]; n_frames];
            let mut weight_sum = 0.0;
            for e in 0..ne {
                let (d, normal) = element_offset(plan, e, pos);
                let weight = receive_weight(plan, d, normal, e);
                if weight <= 0.0 {
                    continue;
                }
                let r = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
                let tau = (t_tx + r) / (1.0 / p.inv_c as f64) - wave_delay;
                let s = (tau - p.t0 as f64) * p.fs as f64;
                let (i0, c, taps): (i64, [f64; 4], usize) = match p.interp {
                    0 => {
                        let i = (s + 0.5).floor() as i64;
                        if s < 0.0 || i > ns as i64 - 1 {
                            continue;
                        }
                        (i, [1.0, 0.0, 0.0, 0.0], 1)
                    }
                    1 => {
                        if s < 0.0 || s > ns as f64 - 2.0 {
                            continue;
                        }
                        let i = s.floor();
                        let f = s - i;
                        (i as i64, [1.0 - f, f, 0.0, 0.0], 2)
                    }
                    _ => {
                        let fl = s.floor();
                        if fl < 1.0 || fl > ns as f64 - 3.0 {
                            continue;
                        }
                        let f = s - fl;
                        let (f2, f3) = (f * f, f * f * f);
                        (
                            fl as i64 - 1,
                            [
                                -0.5 * f3 + f2 - 0.5 * f,
                                1.5 * f3 - 2.5 * f2 + 1.0,
                                -1.5 * f3 + 2.0 * f2 + 0.5 * f,
                                0.5 * f3 - 0.5 * f2,
                            ],
                            4,
                        )
                    }
                };
                let rot = if flags & FLAG_IQ != 0 {
                    let phase = 2.0 * std::f64::consts::PI * (p.f_mod as f64 * tau);
                    [weight * phase.cos(), weight * phase.sin()]
                } else {
                    [weight, 0.0]
                };
                weight_sum += weight;
                let base = (w * ne + e) * ns + i0 as usize;
                for (f, wa) in wave_acc.iter_mut().enumerate() {
                    let k = base + f * frame_stride;
                    let mut v = [0.0, 0.0];
                    for (t, ct) in c.iter().enumerate().take(taps) {
                        let x = sample_at(k + t);
                        v[0] += ct * x[0];
                        v[1] += ct * x[1];
                    }
                    wa[0] += v[0] * rot[0] - v[1] * rot[1];
                    wa[1] += v[0] * rot[1] + v[1] * rot[0];
                }
            }
            let scale = if flags & FLAG_NORMALIZE != 0 && weight_sum > 0.0 {
                1.0 / weight_sum
            } else {
                1.0
            };
            for (a, wa) in acc.iter_mut().zip(&wave_acc) {
                a[0] += scale * wa[0];
                a[1] += scale * wa[1];
            }
        }
        for (f, a) in acc.iter().enumerate() {
            image[f * np + pix] = *a;
        }
    }
    image
}

/// From element `e` to `pos`, and the element's normal, in f64.
fn element_offset(plan: &DasPlan, e: usize, pos: [f64; 3]) -> ([f64; 3], [f64; 3]) {
    let el = &plan.elements[e];
    let d = [0, 1, 2].map(|i| pos[i] - el.position[i] as f64);
    (d, [0, 1, 2].map(|i| el.normal[i] as f64))
}
