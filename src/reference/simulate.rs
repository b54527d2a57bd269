//! CPU twin of `shaders/simulate.wgsl`: the same passes (transmit per
//! (wave, scatterer), receive per (scatterer, element), resolve per sample),
//! the same f32 arithmetic and the same 64-bit fixed-point sums, so the two
//! agree to rounding of the transcendental functions. The receive sums are
//! exact integers, so the scatterers are split over threads and their
//! accumulators added without changing the result.

use crate::pipeline::simulate::{SimPlan, SimulateParams, FLAG_CONVEX, FLAG_ELEVATION};

const PI: f32 = std::f32::consts::PI;
const TAU: f32 = std::f32::consts::TAU;
const EPS: f32 = f32::EPSILON;
const MAX_SEGMENTS: usize = crate::sim::MAX_SEGMENTS;
/// Invocations per transmit workgroup (`WG` in simulate.wgsl).
pub const WG: usize = 32;

type C = [f32; 2];

fn cmul(a: C, b: C) -> C {
    [a[0] * b[0] - a[1] * b[1], a[0] * b[1] + a[1] * b[0]]
}
fn conj(a: C) -> C {
    [a[0], -a[1]]
}
fn cdiv(a: C, b: C) -> C {
    let d = b[0] * b[0] + b[1] * b[1];
    [
        (a[0] * b[0] + a[1] * b[1]) / d,
        (a[1] * b[0] - a[0] * b[1]) / d,
    ]
}
fn csqrt(a: C) -> C {
    let m = a[0].hypot(a[1]);
    let re = (0.5 * (m + a[0])).max(0.0).sqrt();
    let mut im = (0.5 * (m - a[0])).max(0.0).sqrt();
    if a[1] < 0.0 {
        im = -im;
    }
    [re, im]
}
fn cexp(a: C) -> C {
    let m = a[0].exp();
    [m * a[1].cos(), m * a[1].sin()]
}
fn expj(p: f32) -> C {
    [p.cos(), p.sin()]
}
fn add(a: C, b: C) -> C {
    [a[0] + b[0], a[1] + b[1]]
}
fn scale(s: f32, a: C) -> C {
    [s * a[0], s * a[1]]
}
fn dot(a: C, b: C) -> f32 {
    a[0] * b[0] + a[1] * b[1]
}
fn cabs(a: C) -> f32 {
    a[0].hypot(a[1])
}
/// WGSL `fract`: x - floor(x).
fn fract(x: f32) -> f32 {
    x - x.floor()
}
fn sinc(x: f32) -> f32 {
    let a = x.abs();
    if a < 1e-4 {
        1.0 - a * a / 6.0
    } else {
        a.sin() / a
    }
}

const MGBM_A: [C; 4] = [
    [0.187, 0.275],
    [0.288, -1.954],
    [0.187, -0.275],
    [0.288, 1.954],
];
const MGBM_B: [C; 4] = [
    [4.558, -25.59],
    [8.598, -7.924],
    [4.558, 25.59],
    [8.598, 7.924],
];

struct Twin<'a> {
    p: &'a SimulateParams,
    tables: &'a [[f32; 4]],
}

struct Path {
    r: f32,
    amp: f32,
    theta: f32,
}

impl Twin<'_> {
    fn elevation(&self) -> bool {
        self.p.flags & FLAG_ELEVATION != 0
    }

    fn mgbm(&self, k: f32, rm: f32, y: f32) -> C {
        let p = self.p;
        let alpha_im = 0.5 * (p.inv_focus - 1.0 / rm);
        let gamma_im = y * y / (2.0 * rm);
        let yr = y / rm;
        let beta2 = -yr * yr;
        let mut out = [0.0f32; 2];
        for n in 0..4 {
            let den = add([0.0, k * alpha_im], scale(p.inv_height2, MGBM_B[n]));
            let tmp = cdiv([1.0, 0.0], den);
            let arg = add(scale(k * k * beta2 * 0.25, tmp), [0.0, k * gamma_im]);
            out = add(out, cmul(MGBM_A[n], cmul(csqrt(scale(PI, tmp)), cexp(arg))));
        }
        out
    }

    fn wavenumber(&self, n: u32) -> f32 {
        TAU * n as f32 * self.p.f_step * self.p.inv_c
    }

    fn ls_index(&self, i: u32) -> u32 {
        let h = self.p.n_freq / 2;
        let d = self.p.n_freq / 8;
        h + i * d - d
    }

    fn path(&self, s: [f32; 4], e: u32, m: u32) -> Path {
        let p = self.p;
        let el = self.tables[2 * e as usize];
        let tg = self.tables[2 * e as usize + 1];
        let offset = (m as f32 + 0.5 - 0.5 * p.n_segments as f32) * p.seg_len;
        let sp = [
            el[0] + offset * tg[0],
            el[1] + offset * tg[1],
            el[2] + offset * tg[2],
        ];
        let dx = s[0] - sp[0];
        let dz = s[2] - sp[2];
        let d2 = dx * dx + dz * dz;
        let mut r = if self.elevation() {
            (d2 + s[1] * s[1]).sqrt()
        } else {
            d2.sqrt()
        };
        r = r.max(p.small_d);
        let theta = ((dx + EPS) / (d2.sqrt() + EPS)).clamp(-1.0, 1.0).asin() - el[3];
        let ct = theta.cos();
        let mut obliquity = ct;
        if p.baffle == 1 {
            obliquity = 1.0;
        } else if p.baffle == 2 {
            obliquity = ct / (ct + p.baffle_b);
        }
        if theta.abs() >= 0.5 * PI {
            obliquity = EPS;
        }
        let directivity = sinc(p.kc * p.seg_len * 0.5 * theta.sin());
        let mut amp = obliquity * directivity / p.n_segments as f32;
        if self.elevation() {
            amp /= r;
        } else {
            amp /= r.sqrt();
        }
        Path { r, amp, theta }
    }

    fn behind_array(&self, s: [f32; 4]) -> bool {
        let p = self.p;
        if s[2] < p.z_min {
            return true;
        }
        if p.flags & FLAG_CONVEX != 0 {
            let dx = s[0] - p.convex_x;
            let dz = s[2] - p.convex_z;
            return dx * dx + dz * dz <= p.convex_r2;
        }
        false
    }

    fn fire(&self, w: u32, e: u32) -> [f32; 2] {
        let v = self.tables[(self.p.off_fire + w * self.p.n_elements + e) as usize];
        [v[0], v[1]]
    }

    fn wave(&self, w: u32, i: u32) -> [f32; 4] {
        self.tables[(self.p.off_waves + 3 * w + i) as usize]
    }

    fn spectrum(&self, n: u32) -> C {
        let v = self.tables[(self.p.off_spectrum + n) as usize];
        [v[0], v[1]]
    }
}

fn window_weight(d: f32, lo: f32, hi: f32, taper_lo: f32, taper_hi: f32) -> f32 {
    if d < lo || d > hi {
        return 0.0;
    }
    if taper_hi > 0.0 && d > hi - taper_hi {
        return 0.5 + 0.5 * (PI * (d - (hi - taper_hi)) / taper_hi).cos();
    }
    if taper_lo > 0.0 && d < lo + taper_lo {
        return 0.5 + 0.5 * (PI * ((lo + taper_lo) - d) / taper_lo).cos();
    }
    1.0
}

/// What transmit leaves for one (wave, scatterer): the window centre and
/// the baseband taps; `None` when the scatterer contributes nothing.
pub struct TransmitEcho {
    pub tc: f32,
    /// First and last tap written (the others are zero).
    pub j_lo: u32,
    pub j_hi: u32,
    pub taps: Vec<C>,
}

/// The receive elevation reference of one scatterer (see `heads` in the shader).
#[derive(Clone, Copy)]
pub struct RxReference {
    pub weighted_conj: [C; 3],
    pub inv_den: f32,
}

/// The transmit pass for one (wave, scatterer): returns the echo (if any),
/// the receive reference (written by wave 0 in the shader) and the
/// contribution bound that the shader `atomicMax`es.
pub fn transmit(
    plan: &SimPlan,
    w: u32,
    sc: [f32; 4],
) -> (Option<TransmitEcho>, Option<RxReference>, f32) {
    let t = Twin {
        p: &plan.params,
        tables: &plan.tables,
    };
    let p = t.p;
    let elevation = t.elevation();
    let finite = sc.iter().all(|v| v.abs() < 1e30);
    if !finite || t.behind_array(sc) || sc[3] == 0.0 {
        return (None, None, 0.0);
    }
    let (ne, ns) = (p.n_elements, p.n_segments);
    let mut t_first = 1e30f32;
    let mut t_last = -1e30f32;
    let mut e_tx = 0u32;
    let mut rm_tx = 0.0f32;
    let mut rm_rx = 1e30f32;
    for e in 0..ne {
        let fa = t.fire(w, e);
        let mut rm = 0.0f32;
        for m in 0..ns {
            let pa = t.path(sc, e, m);
            rm += pa.r;
            if fa[1] != 0.0 && pa.theta.abs() < 0.5 * PI {
                let tt = fa[0] + pa.r * p.inv_c;
                if tt < t_first {
                    t_first = tt;
                    e_tx = e;
                }
                t_last = t_last.max(tt);
            }
        }
        rm /= ns as f32;
        if e == e_tx && t_first < 1e29 {
            rm_tx = rm;
        }
        rm_rx = rm_rx.min(rm);
    }
    if t_first > 1e29 {
        return (None, None, 0.0);
    }
    let rx = if elevation {
        let mut r3 = [[0.0f32; 2]; 3];
        let mut den = 0.0f32;
        for i in 0..3 {
            let n = t.ls_index(i);
            let s0 = t.spectrum(n);
            let mr = t.mgbm(t.wavenumber(n), rm_rx, sc[1]);
            r3[i as usize] = scale(dot(s0, s0), conj(mr));
            den += dot(s0, s0) * dot(mr, mr);
        }
        RxReference {
            weighted_conj: r3,
            inv_den: 1.0 / den.max(1e-30),
        }
    } else {
        RxReference {
            weighted_conj: [[0.0; 2]; 3],
            inv_den: 0.0,
        }
    };

    let (wa, wb, wc) = (t.wave(w, 0), t.wave(w, 1), t.wave(w, 2));
    let mut tc = t_first;
    if wb[0] as u32 == 1 {
        let sign = if sc[2] >= wa[2] { 1.0 } else { -1.0 };
        let dist =
            ((sc[0] - wa[0]).powi(2) + (sc[1] - wa[1]).powi(2) + (sc[2] - wa[2]).powi(2)).sqrt();
        let t_wave = (wa[3] + sign * dist) * p.inv_c - wb[1];
        tc = t_wave.clamp(t_first, t_last);
    }

    let mut ref_tx = [[0.0f32; 2]; 3];
    let mut ls_w = [0.0f32; 3];
    let mut ref_den = 0.0f32;
    if elevation {
        for i in 0..3 {
            let n = t.ls_index(i);
            let s0 = t.spectrum(n);
            ls_w[i as usize] = dot(s0, s0);
            ref_tx[i as usize] = t.mgbm(t.wavenumber(n), rm_tx, sc[1]);
            ref_den += ls_w[i as usize] * dot(ref_tx[i as usize], ref_tx[i as usize]);
        }
    }

    // Pass 2 as the workgroup runs it: arrivals staged in order (weight,
    // α r, 2π d), then every invocation li sums its block of frequencies,
    // starting each arrival's phasor with an exponential at the block start.
    let nf = p.n_freq as usize;
    let mut staged: Vec<[f32; 4]> = Vec::with_capacity((ne * ns) as usize);
    let mut d_first = 1e30f32;
    let mut d_last = -1e30f32;
    for a in 0..ne * ns {
        let e = a / ns;
        let pa = t.path(sc, e, a % ns);
        let fa = t.fire(w, e);
        let d = fa[0] + pa.r * p.inv_c - tc;
        let wt = window_weight(d, wb[2], wb[3], wc[0], wc[1]);
        if fa[1] == 0.0 || wt == 0.0 {
            staged.push([0.0; 4]);
            continue;
        }
        let mut ratio = [1.0f32, 0.0];
        if elevation {
            let mut rm = 0.0f32;
            for mm in 0..ns {
                rm += t.path(sc, e, mm).r;
            }
            rm /= ns as f32;
            let mut num = [0.0f32; 2];
            for i in 0..3 {
                num = add(
                    num,
                    scale(
                        ls_w[i as usize],
                        cmul(
                            t.mgbm(t.wavenumber(t.ls_index(i)), rm, sc[1]),
                            conj(ref_tx[i as usize]),
                        ),
                    ),
                );
            }
            ratio = scale(1.0 / ref_den.max(1e-30), num);
            let mag = cabs(ratio);
            if mag > p.rx_cap {
                ratio = scale(p.rx_cap / mag, ratio);
            }
        }
        d_first = d_first.min(d);
        d_last = d_last.max(d);
        let c = scale(fa[1] * wt * pa.amp, conj(ratio));
        staged.push([c[0], c[1], p.alpha * pa.r, TAU * d]);
    }
    let block = nf.div_ceil(WG);
    let mut kq = vec![[0.0f32; 2]; nf];
    let mut partial = [0.0f32; WG];
    for (li, part) in partial.iter_mut().enumerate() {
        let f_lo = (li * block).min(nf);
        let f_hi = (f_lo + block).min(nf);
        let mut q = vec![[0.0f32; 2]; f_hi - f_lo];
        for v in &staged {
            if v[0] == 0.0 && v[1] == 0.0 {
                continue;
            }
            let g = [v[2], v[3]];
            let mut z = cmul([v[0], v[1]], cexp(scale(-(f_lo as f32 * p.f_step), g)));
            let step = cexp(scale(-p.f_step, g));
            for qn in q.iter_mut() {
                *qn = add(*qn, z);
                z = cmul(z, step);
            }
        }
        for n in f_lo..f_hi {
            let mut k = t.spectrum(n as u32);
            let mut v = [0.0f32; 2];
            if k[0] != 0.0 || k[1] != 0.0 {
                if elevation {
                    let kw = t.wavenumber(n as u32);
                    k = cmul(
                        k,
                        conj(cmul(t.mgbm(kw, rm_tx, sc[1]), t.mgbm(kw, rm_rx, sc[1]))),
                    );
                }
                k = scale((-p.alpha * (n as f32 * p.f_step - p.fc) * rm_rx).exp(), k);
                v = cmul(q[n - f_lo], k);
            }
            kq[n] = v;
            *part += cabs(v);
        }
    }
    // Invocation 0's sum of the partials, in order.
    let mut bound = partial[0];
    for p in &partial[1..] {
        bound += p;
    }
    let reach = if elevation {
        p.rx_cap / p.small_d
    } else {
        p.width_2d / p.small_d.sqrt()
    };
    let bound = sc[3].abs() * bound * reach;
    if d_last < d_first {
        return (None, Some(rx), bound);
    }
    let last = (p.n_taps - 1) as f32;
    let j_lo = ((d_first + p.pulse_lo - p.tap0) * p.fs_taps)
        .floor()
        .clamp(0.0, last) as u32;
    let j_hi = ((d_last + p.pulse_hi - p.tap0) * p.fs_taps)
        .ceil()
        .clamp(j_lo as f32, last) as u32;

    let mut taps = vec![[0.0f32; 2]; p.n_taps as usize];
    for j in j_lo..=j_hi {
        let u = p.tap0 + j as f32 / p.fs_taps;
        let mut rot = expj(-TAU * fract(p.fc * u));
        let step = expj(TAU * p.f_step * u);
        let mut s = [0.0f32; 2];
        for v in &kq {
            s = add(s, cmul(*v, rot));
            rot = cmul(rot, step);
        }
        taps[j as usize] = s;
    }
    (
        Some(TransmitEcho {
            tc,
            j_lo,
            j_hi,
            taps,
        }),
        Some(rx),
        bound,
    )
}

/// The fixed-point scale: `2^shift` units per RF unit for a largest
/// per-scatterer contribution bound `bound` (bits of the f32, as the shader
/// keeps it).
pub fn shift_of_bound(bound: f32) -> i32 {
    let e = ((bound.to_bits() >> 23) & 0xff) as i32 - 127;
    42 - e
}

/// 2^e for e in the normal range, exactly.
fn exp2i(e: i32) -> f32 {
    f32::from_bits(((e.clamp(-126, 127) + 127) as u32) << 23)
}

/// WGSL `ldexp`, in two exact steps so that neither power of two overflows.
fn ldexp(v: f32, e: i32) -> f32 {
    let h = e / 2;
    v * exp2i(h) * exp2i(e - h)
}

/// The shader's rounding of one add to a 64-bit integer (the shader keeps
/// the positive and negative sums apart; their difference is this sum).
pub fn to_fixed(v: f32, shift: i32) -> i64 {
    let x = ldexp(v, shift);
    let a = x.abs();
    let m = if a < 4294967040.0 {
        a.round_ties_even() as i64
    } else {
        let h = (a * 2.328_306_4e-10).floor();
        ((h as i64) << 32) + (a - h * 4294967296.0) as i64
    };
    if x < 0.0 {
        -m
    } else {
        m
    }
}

/// The shader's fixed point to f32.
pub fn from_fixed(sum: i64, shift: i32) -> f32 {
    let hi = (sum >> 32) as i32;
    let lo = sum as u32;
    if (hi == 0 && lo < 0x8000_0000) || (hi == -1 && lo >= 0x8000_0000) {
        return ldexp(lo as i32 as f32, -shift);
    }
    ldexp(hi as f32 * 4294967296.0 + lo as f32, -shift)
}

/// One scatterer's receive path on one element (`Receiver` in the shader).
pub struct Receiver {
    r: [f32; MAX_SEGMENTS],
    c: [C; MAX_SEGMENTS],
    r_lo: f32,
    r_hi: f32,
}

/// The shader's `receiver`: `None` when the scatterer contributes nothing.
pub fn receiver(
    plan: &SimPlan,
    sc: [f32; 4],
    e: u32,
    rx: &Option<RxReference>,
) -> Option<Receiver> {
    let rx = rx.as_ref()?;
    let t = Twin {
        p: &plan.params,
        tables: &plan.tables,
    };
    let p = t.p;
    let ns = (p.n_segments as usize).min(MAX_SEGMENTS);
    let mut out = Receiver {
        r: [0.0; MAX_SEGMENTS],
        c: [[0.0; 2]; MAX_SEGMENTS],
        r_lo: 1e30,
        r_hi: 0.0,
    };
    let mut rm = 0.0f32;
    for m in 0..ns {
        let pa = t.path(sc, e, m as u32);
        out.r[m] = pa.r;
        rm += pa.r;
        out.r_lo = out.r_lo.min(pa.r);
        out.r_hi = out.r_hi.max(pa.r);
        out.c[m] = [sc[3] * pa.amp * (-p.alpha * p.fc * pa.r).exp(), 0.0];
    }
    rm /= ns as f32;
    let mut ratio;
    if t.elevation() {
        let num = add(
            add(
                cmul(
                    t.mgbm(t.wavenumber(t.ls_index(0)), rm, sc[1]),
                    rx.weighted_conj[0],
                ),
                cmul(
                    t.mgbm(t.wavenumber(t.ls_index(1)), rm, sc[1]),
                    rx.weighted_conj[1],
                ),
            ),
            cmul(
                t.mgbm(t.wavenumber(t.ls_index(2)), rm, sc[1]),
                rx.weighted_conj[2],
            ),
        );
        ratio = scale(rx.inv_den, num);
        let mag = cabs(ratio);
        if mag > p.rx_cap {
            ratio = scale(p.rx_cap / mag, ratio);
        }
    } else {
        ratio = [p.width_2d, 0.0];
    }
    for cm in out.c.iter_mut().take(ns) {
        *cm = cmul(*cm, conj(ratio));
    }
    Some(out)
}

/// The shader's `sample_range`: samples [k0, k1] of one echo (k1 < k0: none).
fn sample_range(p: &SimulateParams, rx: &Receiver, echo: &TransmitEcho) -> (i32, i32) {
    let first = (echo.tc + rx.r_lo * p.inv_c + p.tap0 + echo.j_lo as f32 / p.fs_taps - p.t0) * p.fs;
    let last = (echo.tc + rx.r_hi * p.inv_c + p.tap0 + echo.j_hi as f32 / p.fs_taps - p.t0) * p.fs;
    let k0 = first.ceil().clamp(0.0, p.n_samples as f32) as i32;
    let k1 = last.floor().clamp(-1.0, p.n_samples as f32 - 1.0) as i32;
    (k0, k1)
}

/// The shader's `echo`: one scatterer's samples k0..=k1 on one trace,
/// handed to `sink(k, v)` in order.
fn echo_samples(
    p: &SimulateParams,
    rx: &Receiver,
    echo: &TransmitEcho,
    k0: u32,
    k1: u32,
    mut sink: impl FnMut(u32, f32),
) {
    let ns = (p.n_segments as usize).min(MAX_SEGMENTS);
    let (j_lo, j_hi) = (echo.j_lo as f32, echo.j_hi as f32);
    let rot = expj(TAU * fract(p.fc / p.fs));
    let mut x0 = [0.0f32; MAX_SEGMENTS];
    let mut ph = [[0.0f32; 2]; MAX_SEGMENTS];
    for m in 0..ns {
        let u = (k0 as f32 / p.fs + p.t0) - echo.tc - rx.r[m] * p.inv_c;
        x0[m] = (u - p.tap0) * p.fs_taps;
        ph[m] = expj(TAU * fract(p.fc * u));
    }
    let taps_per_sample = p.fs_taps / p.fs;
    for k in k0..=k1 {
        let mut v = 0.0f32;
        for m in 0..ns {
            let x = x0[m] + (k - k0) as f32 * taps_per_sample;
            let i = x.floor();
            if i >= j_lo && i < j_hi {
                let j = i as usize;
                let f = x - i;
                let a = echo.taps[j];
                let b = echo.taps[j + 1];
                // WGSL mix(a, b, f) = a·(1 - f) + b·f.
                let tap = [a[0] * (1.0 - f) + b[0] * f, a[1] * (1.0 - f) + b[1] * f];
                let z = cmul(rx.c[m], tap);
                v += z[0] * ph[m][0] - z[1] * ph[m][1];
            }
            ph[m] = cmul(ph[m], rot);
        }
        sink(k, v);
    }
}

/// The receive pass for one scatterer (its transmit echoes per wave and
/// receive reference) on element `e`, all waves, adding into `acc`
/// (`[wave][element][sample]`), as one invocation of the shader.
pub fn receive(
    plan: &SimPlan,
    sc: [f32; 4],
    tx: &(Vec<Option<TransmitEcho>>, Option<RxReference>),
    e: u32,
    shift: i32,
    acc: &mut [i64],
) {
    let p = &plan.params;
    let (ne, ns) = (p.n_elements as usize, p.n_samples as usize);
    let Some(rx) = receiver(plan, sc, e, &tx.1) else {
        return;
    };
    for (w, echo) in tx.0.iter().enumerate() {
        let Some(echo) = echo else { continue };
        let (k0, k1) = sample_range(p, &rx, echo);
        if k1 < k0 {
            continue;
        }
        let trace = (w * ne + e as usize) * ns;
        echo_samples(p, &rx, echo, k0 as u32, k1 as u32, |k, v| {
            let a = &mut acc[trace + k as usize];
            *a = a.wrapping_add(to_fixed(v, shift));
        });
    }
}

fn pcg(v: u32) -> u32 {
    let s = v.wrapping_mul(747796405).wrapping_add(2891336453);
    let word = ((s >> ((s >> 28) + 4)) ^ s).wrapping_mul(277803737);
    (word >> 22) ^ word
}

/// The shader's standard normal value for sample `i`.
pub fn gaussian(i: u32, seed: u32) -> f32 {
    let a = pcg(i ^ seed);
    let b = pcg(a ^ 0x9e37_79b9);
    let u1 = ((a >> 8) as f32 + 0.5) * 5.960_464_5e-8;
    let u2 = (b >> 8) as f32 * 5.960_464_5e-8;
    (-2.0 * u1.ln()).sqrt() * (TAU * u2).cos()
}

/// Simulate on the CPU: RF `[frame][wave][channel][sample]`, as the GPU
/// stage writes it. `threads` = 0 uses every core.
pub fn simulate(plan: &SimPlan, scatterers: &[[f32; 4]], threads: usize) -> Vec<f32> {
    let p = plan.params;
    let nw = p.n_waves as usize;
    let ne = p.n_elements as usize;
    let n = plan.frame_len();
    // Transmit for every (wave, scatterer) first: receive needs the global bound.
    let mut bound = 0.0f32;
    let mut tx: Vec<(Vec<Option<TransmitEcho>>, Option<RxReference>)> =
        Vec::with_capacity(scatterers.len());
    for sc in scatterers {
        let mut echoes = Vec::with_capacity(nw);
        let mut rx_ref = None;
        for w in 0..nw {
            let (echo, rx, b) = transmit(plan, w as u32, *sc);
            if w == 0 {
                rx_ref = rx;
            }
            bound = bound.max(b);
            echoes.push(echo);
        }
        tx.push((echoes, rx_ref));
    }
    let shift = shift_of_bound(bound);
    let threads = if threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        threads
    };
    let chunk = scatterers.len().div_ceil(threads.max(1)).max(1);
    let mut acc = vec![0i64; n];
    std::thread::scope(|scope| {
        let handles: Vec<_> = scatterers
            .chunks(chunk)
            .zip(tx.chunks(chunk))
            .map(|(sc, tx)| {
                scope.spawn(move || {
                    let mut local = vec![0i64; n];
                    for (s, t) in sc.iter().zip(tx) {
                        for e in 0..ne {
                            receive(plan, *s, t, e as u32, shift, &mut local);
                        }
                    }
                    local
                })
            })
            .collect();
        for h in handles {
            let local = h.join().expect("simulate worker panicked");
            for (a, b) in acc.iter_mut().zip(local) {
                *a = a.wrapping_add(b);
            }
        }
    });
    let values: Vec<f32> = acc.iter().map(|s| from_fixed(*s, shift)).collect();
    let mut sigma = 0.0f32;
    if p.noise_level > 0.0 {
        let peak = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        sigma = p.noise_level * peak;
    }
    let mut out = Vec::with_capacity(n * plan.frames);
    for f in 0..plan.frames {
        for (i, v) in values.iter().enumerate() {
            let mut x = *v;
            if sigma > 0.0 {
                x += sigma * gaussian((f * n + i) as u32, p.noise_seed);
            }
            out.push(x);
        }
    }
    out
}
