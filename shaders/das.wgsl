// das: delay-and-sum of RF or IQ channel data onto a list of pixels, with
// coherent compounding over waves and many frames per dispatch.
// CPU twin: src/reference/das.rs. Host: src/pipeline/das.rs.
// Measurements behind every choice below: BENCHMARKS.md ("DAS kernel").
//
// Three entry points, recorded in this order by the host:
//
// 1. `das_layout` copies the channel data, [frame][wave][element][sample],
//    into rows with the frames contiguous: [wave][element][sample][frame],
//    complex, frames padded to a whole block. One row (a sample of one
//    trace, FRAMES_PER_BLOCK frames) is then ROW_VEC4 vec4 loads instead of
//    2·FRAMES_PER_BLOCK scalar gathers.
// 2. `das_transmit` computes, once per (wave, pixel), the transmit distance
//    (MUST's virtual-element search or the analytic wavefront) and the
//    normalisation of that wave's sum, so that neither is repeated for each
//    block of frames.
// 3. `das` beamforms. One invocation owns PIXELS_PER_INVOCATION consecutive
//    pixels and one block of frames. Neighbouring pixels (along a grid row)
//    have nearly the same delay to an element, so their interpolation taps
//    fall in a window of a few rows: the invocation loads that window once
//    and each pixel selects its taps from it. Loads, not arithmetic, bound
//    this kernel on every adapter we measured (on lavapipe each load is a
//    scalar loop over the SIMD lanes), and sharing the window cuts them by
//    the number of pixels per invocation divided by about 3.
//
// The arithmetic of one (pixel, element, frame) is the old single-pixel
// kernel's, in the same order, so the CPU twin (which loops over pixels one
// by one) still mirrors it.

//!import shared/acquisition.wgsl

// Interpolation, pixels per invocation and vec4 per row are specialised at
// pipeline creation (pipeline-overridable constants) so that unused taps,
// pixel slots and row parts compile away. The host sets INTERP from
// DasParams.interp; the two always agree.
override INTERP: u32 = 1u;
override PIXELS_PER_INVOCATION: u32 = 8u;
override ROW_VEC4: u32 = 4u;

const INTERP_NEAREST: u32 = 0u;
const INTERP_LINEAR: u32 = 1u;
const INTERP_CUBIC: u32 = 2u;

const APOD_BOXCAR: u32 = 0u;
const APOD_HANN: u32 = 1u;
const APOD_TUKEY: u32 = 2u;

const TRANSMIT_ANALYTIC: u32 = 0u;
const TRANSMIT_MUST: u32 = 1u;

const FLAG_IQ: u32 = 1u;
const FLAG_NORMALIZE: u32 = 2u;

const TAU: f32 = 6.283185307179586;

// Keep in sync with MAX_ELEMENTS and MAX_WAVES in src/pipeline/das.rs.
// Elements and waves are read by every invocation at the same index, which
// is what uniform buffers are for; their size has to be fixed.
const MAX_ELEMENTS: u32 = 1024u;
const MAX_WAVES: u32 = 256u;

// Keep in sync with DasParams in src/pipeline/das.rs.
struct DasParams {
    n_pixels: u32,
    n_elements: u32,
    n_waves: u32,
    n_samples: u32,
    n_frames: u32,
    interp: u32,
    apodization: u32,
    flags: u32,
    // Sampling frequency (Hz), time of sample 0 (s), 1/c (s/m), modulation
    // frequency of IQ data (Hz; 0 for RF).
    fs: f32,
    t0: f32,
    inv_c: f32,
    f_mod: f32,
    // tan of the receive cone's half angle, 1/(2F); 0 opens the whole array.
    aperture: f32,
    // Tukey taper fraction in [0, 1].
    tukey: f32,
    // TRANSMIT_ANALYTIC (UFF wavefront) or TRANSMIT_MUST (virtual elements).
    transmit: u32,
    _pad0: u32,
}

// Bindings are numbered apart across the three entry points (each has its
// own bind group layout; see Das::new).
@group(0) @binding(0) var<uniform> params: DasParams;

// Frames per row in the frame-contiguous layout: n_frames rounded up to a
// whole block of 2·ROW_VEC4.
fn frames_padded() -> u32 {
    let fb = 2u * ROW_VEC4;
    return (params.n_frames + fb - 1u) / fb * fb;
}

// ---- das_layout ---------------------------------------------------------

// [frame][wave][element][sample], interleaved (re, im) when FLAG_IQ is set.
@group(0) @binding(1) var<storage, read> channels: array<f32>;
// [wave][element][sample][frame] complex: vec4 = two frames (re, im, re, im).
@group(0) @binding(2) var<storage, read_write> rows_out: array<vec4<f32>>;

// One invocation per (wave, element, sample): gathers its frames (strided)
// and writes them as one contiguous row. Padding frames are zero.
@compute @workgroup_size(64)
fn das_layout(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * 64u;
    let n_rows = params.n_waves * params.n_elements * params.n_samples;
    if (t >= n_rows) {
        return;
    }
    let iq = (params.flags & FLAG_IQ) != 0u;
    let half = frames_padded() / 2u;
    for (var q = 0u; q < half; q++) {
        var v = vec4<f32>(0.0);
        let f = 2u * q;
        if (f < params.n_frames) {
            let k = f * n_rows + t;
            v = vec4<f32>(select(vec2<f32>(channels[k], 0.0), vec2<f32>(channels[2u * k], channels[2u * k + 1u]), iq), 0.0, 0.0);
        }
        if (f + 1u < params.n_frames) {
            let k = (f + 1u) * n_rows + t;
            v = vec4<f32>(v.xy, select(vec2<f32>(channels[k], 0.0), vec2<f32>(channels[2u * k], channels[2u * k + 1u]), iq));
        }
        rows_out[t * half + q] = v;
    }
}

// ---- das_transmit and das ------------------------------------------------

@group(0) @binding(3) var<uniform> elements: array<Element, MAX_ELEMENTS>;
@group(0) @binding(4) var<uniform> waves: array<Wave, MAX_WAVES>;
// (x, z) in metres.
@group(0) @binding(5) var<storage, read> pixels: array<vec2<f32>>;
// das_transmit: MUST's virtual transmit elements (x, y, z, delay·c), Wave.table_start.. .
@group(0) @binding(6) var<storage, read> tx_table: array<vec4<f32>>;
// das_transmit: [wave][pixel] (transmit distance in metres, scale of the wave's sum).
@group(0) @binding(7) var<storage, read_write> tx_out: array<vec2<f32>>;
// das: the output of das_transmit.
@group(0) @binding(8) var<storage, read> tx: array<vec2<f32>>;
// das: the output of das_layout.
@group(0) @binding(9) var<storage, read> rows: array<vec4<f32>>;
// das: [frame][pixel] complex.
@group(0) @binding(10) var<storage, read_write> image: array<vec2<f32>>;

// MUST's dasmtx transmit distance: the earliest arrival over the wave's
// virtual elements, in MUST time (so the wave's UFF delay is not applied).
// Equal to transmit_distance() − c·delay inside the insonified zone; it
// differs on the flanks, where MUST follows the edge wave.
//
// Along the array, delay + distance is unimodal for the plane and diverging
// waves MUST makes (a convex delay profile plus a convex distance), so a
// binary search on its discrete slope finds the same minimum as MUST's
// exhaustive one in log2(4N) steps instead of 4N (measured: 4.7 s → 1.1 s
// for L11 on lavapipe); the parity tests against PyMUST guard the claim.
fn must_arrival(i: u32, p: vec3<f32>) -> f32 {
    let v = tx_table[i];
    return v.w + distance(p, v.xyz);
}

fn must_transmit_distance(w: Wave, p: vec3<f32>) -> f32 {
    var lo = w.table_start;
    var hi = w.table_start + w.table_len - 1u;
    while (lo < hi) {
        let mid = (lo + hi) / 2u;
        if (must_arrival(mid, p) <= must_arrival(mid + 1u, p)) {
            hi = mid;
        } else {
            lo = mid + 1u;
        }
    }
    return must_arrival(lo, p);
}

fn window(u: f32) -> f32 {
    if (params.apodization == APOD_HANN) {
        return 0.5 + 0.5 * cos(3.141592653589793 * u);
    }
    if (params.apodization == APOD_TUKEY) {
        let a = params.tukey;
        let flat = 1.0 - a;
        if (u <= flat || a <= 0.0) {
            return 1.0;
        }
        return 0.5 + 0.5 * cos(3.141592653589793 * (u - flat) / a);
    }
    return 1.0;
}

// Receive weight of element e for a pixel at offset d from it.
fn receive_weight(d: vec3<f32>, normal: vec3<f32>, e: u32) -> f32 {
    if (params.aperture > 0.0) {
        let along = dot(d, normal);
        let across = length(d - along * normal);
        // MUST's rule |x - x_e| <= z / (2F), measured from the element normal.
        if (along <= 0.0 || across > along * params.aperture) {
            return 0.0;
        }
        return window(across / (along * params.aperture));
    }
    let n = max(f32(params.n_elements) - 1.0, 1.0);
    return window(abs(2.0 * f32(e) / n - 1.0));
}

// What one pixel takes from one element: `row` is the first tap's sample
// (−1: nothing, outside the aperture or the record), `c` the tap weights and
// `rot` the receive weight times the phase rotation back to RF.
struct Tap {
    row: i32,
    c: vec4<f32>,
    rot: vec2<f32>,
    weight: f32,
}

// The delay, taps and weight of element e for pixel p; `t` is the pixel's
// transmit distance and wave scale (das_transmit), `wave_delay` the UFF
// delay to subtract (0 with MUST's transmit, whose table includes it).
fn tap(p: vec3<f32>, t: vec2<f32>, wave_delay: f32, e: u32) -> Tap {
    var out = Tap(-1, vec4<f32>(0.0), vec2<f32>(0.0), 0.0);
    let el = elements[e];
    let d = p - el.position.xyz;
    let weight = receive_weight(d, el.normal.xyz, e);
    if (weight <= 0.0) {
        return out;
    }
    let tau = (t.x + length(d)) * params.inv_c - wave_delay;
    let s = (tau - params.t0) * params.fs;
    let ns = i32(params.n_samples);
    if (INTERP == INTERP_NEAREST) {
        // MUST rounds the fractional index (half away from zero).
        let i0 = i32(floor(s + 0.5));
        if (s < 0.0 || i0 > ns - 1) {
            return out;
        }
        out.row = i0;
        out.c = vec4<f32>(1.0, 0.0, 0.0, 0.0);
    } else if (INTERP == INTERP_LINEAR) {
        if (s < 0.0 || s > f32(ns) - 2.0) {
            return out;
        }
        let i0 = i32(floor(s));
        let f = s - f32(i0);
        out.row = i0;
        out.c = vec4<f32>(1.0 - f, f, 0.0, 0.0);
    } else {
        // Cubic convolution (Keys, a = -0.5) over samples i-1 .. i+2.
        let fl = floor(s);
        if (fl < 1.0 || fl > f32(ns) - 3.0) {
            return out;
        }
        let f = s - fl;
        let f2 = f * f;
        let f3 = f2 * f;
        out.row = i32(fl) - 1;
        out.c = vec4<f32>(
            -0.5 * f3 + f2 - 0.5 * f,
            1.5 * f3 - 2.5 * f2 + 1.0,
            -1.5 * f3 + 2.0 * f2 + 0.5 * f,
            0.5 * f3 - 0.5 * f2,
        );
    }
    // IQ data were mixed down with exp(-j 2π f_mod t): turn the phase back
    // at this pixel's delay.
    var rot = vec2<f32>(weight, 0.0);
    if ((params.flags & FLAG_IQ) != 0u) {
        let phase = TAU * fract(params.f_mod * tau);
        rot = weight * vec2<f32>(cos(phase), sin(phase));
    }
    out.rot = rot * t.y;
    out.weight = weight;
    return out;
}

fn wave_delay_of(w: u32) -> f32 {
    return select(waves[w].delay, 0.0, params.transmit == TRANSMIT_MUST);
}

fn pixel_position(i: u32) -> vec3<f32> {
    let q = pixels[min(i, params.n_pixels - 1u)];
    return vec3<f32>(q.x, 0.0, q.y);
}

// One invocation per (wave, pixel).
@compute @workgroup_size(64)
fn das_transmit(@builtin(global_invocation_id) gid: vec3<u32>) {
    let pix = gid.x;
    let w = gid.y;
    if (pix >= params.n_pixels || w >= params.n_waves) {
        return;
    }
    let p = pixel_position(pix);
    let wave = waves[w];
    var t_tx: f32;
    if (params.transmit == TRANSMIT_MUST) {
        t_tx = must_transmit_distance(wave, p);
    } else {
        t_tx = transmit_distance(wave, p);
    }
    // Normalisation: the sum of the receive weights of the elements that
    // contribute, exactly as `das` decides it (same function).
    var scale = 1.0;
    if ((params.flags & FLAG_NORMALIZE) != 0u) {
        var weight_sum = 0.0;
        let wd = wave_delay_of(w);
        for (var e = 0u; e < params.n_elements; e++) {
            let t = tap(p, vec2<f32>(t_tx, 1.0), wd, e);
            if (t.row >= 0) {
                weight_sum += t.weight;
            }
        }
        if (weight_sum > 0.0) {
            scale = 1.0 / weight_sum;
        }
    }
    tx_out[w * params.n_pixels + pix] = vec2<f32>(t_tx, scale);
}

// FRAMES_PER_BLOCK = 2·ROW_VEC4 frames of one sample, complex.
struct Row {
    a: vec4<f32>,
    b: vec4<f32>,
    c: vec4<f32>,
    d: vec4<f32>,
}

const ZERO_ROW = Row(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));

fn load_row(i: u32) -> Row {
    var r = ZERO_ROW;
    r.a = rows[i];
    if (ROW_VEC4 > 1u) {
        r.b = rows[i + 1u];
    }
    if (ROW_VEC4 > 2u) {
        r.c = rows[i + 2u];
        r.d = rows[i + 3u];
    }
    return r;
}

// Row j of the window for a pixel whose first tap is `d` rows above the
// window's first row (0, 1 or 2). Selects, not branches: every SIMD lane
// takes the same path.
fn pick(r0: Row, r1: Row, r2: Row, d: i32) -> Row {
    return select_row(select_row(r0, r1, d == 1), r2, d == 2);
}

fn select_row(x: Row, y: Row, c: bool) -> Row {
    return Row(select(x.a, y.a, c), select(x.b, y.b, c), select(x.c, y.c, c), select(x.d, y.d, c));
}

fn mad_row(acc: Row, c: f32, r: Row) -> Row {
    return Row(acc.a + c * r.a, acc.b + c * r.b, acc.c + c * r.c, acc.d + c * r.d);
}

// acc += rot · v for complex pairs (re, im, re, im).
fn rotate_add(acc: ptr<function, Row>, v: Row, rot: vec2<f32>) {
    let m = vec4<f32>(-rot.y, rot.y, -rot.y, rot.y);
    (*acc).a += v.a * rot.x + v.a.yxwz * m;
    if (ROW_VEC4 > 1u) {
        (*acc).b += v.b * rot.x + v.b.yxwz * m;
    }
    if (ROW_VEC4 > 2u) {
        (*acc).c += v.c * rot.x + v.c.yxwz * m;
        (*acc).d += v.d * rot.x + v.d.yxwz * m;
    }
}

fn n_taps() -> u32 {
    if (INTERP == INTERP_NEAREST) {
        return 1u;
    }
    if (INTERP == INTERP_LINEAR) {
        return 2u;
    }
    return 4u;
}

// Add the share of a pixel whose taps lie in the window w0..w5 (rows lo,
// lo + 1, ...) and return its tap marked done (row −1); a pixel outside
// the window, or done, adds zero (selects, not branches: see `pick`).
fn accumulate(acc: ptr<function, Row>, t: Tap, lo: i32, w0: Row, w1: Row, w2: Row, w3: Row, w4: Row, w5: Row) -> Tap {
    let d = t.row - lo;
    let here = t.row >= 0 && d <= 2;
    var v = ZERO_ROW;
    v = mad_row(v, t.c.x, pick(w0, w1, w2, d));
    if (n_taps() > 1u) {
        v = mad_row(v, t.c.y, pick(w1, w2, w3, d));
    }
    if (n_taps() > 2u) {
        v = mad_row(v, t.c.z, pick(w2, w3, w4, d));
        v = mad_row(v, t.c.w, pick(w3, w4, w5, d));
    }
    rotate_add(acc, v, select(vec2<f32>(0.0), t.rot, here));
    var out = t;
    out.row = select(t.row, -1, here);
    return out;
}

fn store(pix: u32, f0: u32, acc: Row) {
    if (pix >= params.n_pixels) {
        return;
    }
    store_pair(pix, f0, acc.a);
    if (ROW_VEC4 > 1u) {
        store_pair(pix, f0 + 2u, acc.b);
    }
    if (ROW_VEC4 > 2u) {
        store_pair(pix, f0 + 4u, acc.c);
        store_pair(pix, f0 + 6u, acc.d);
    }
}

fn store_pair(pix: u32, f: u32, v: vec4<f32>) {
    let np = params.n_pixels;
    if (f < params.n_frames) {
        image[f * np + pix] = v.xy;
    }
    if (f + 1u < params.n_frames) {
        image[(f + 1u) * np + pix] = v.zw;
    }
}

fn lowest(lo: i32, t: Tap) -> i32 {
    return select(lo, min(lo, t.row), t.row >= 0);
}

// One invocation: pixels p0 .. p0 + PIXELS_PER_INVOCATION − 1, frames of
// block gid.y. The pixel slots are written out (WGSL has no unrolling, and
// lavapipe keeps private arrays in memory: measured 2.5× slower as a loop);
// slots beyond PIXELS_PER_INVOCATION are constant-false and compile away.
@compute @workgroup_size(64)
fn das(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p0 = gid.x * PIXELS_PER_INVOCATION;
    let f0 = gid.y * 2u * ROW_VEC4;
    if (p0 >= params.n_pixels || f0 >= params.n_frames) {
        return;
    }
    let K = PIXELS_PER_INVOCATION;
    let np = params.n_pixels;
    // Pixels past the end repeat the last one and are not stored.
    let q0 = pixel_position(p0);
    let q1 = pixel_position(p0 + 1u);
    let q2 = pixel_position(p0 + 2u);
    let q3 = pixel_position(p0 + 3u);
    let q4 = pixel_position(p0 + 4u);
    let q5 = pixel_position(p0 + 5u);
    let q6 = pixel_position(p0 + 6u);
    let q7 = pixel_position(p0 + 7u);
    let last = np - 1u;
    // Row stride in vec4: one sample of one trace, all frames.
    let stride = frames_padded() / 2u;
    let block = gid.y * ROW_VEC4;

    var a0 = ZERO_ROW;
    var a1 = ZERO_ROW;
    var a2 = ZERO_ROW;
    var a3 = ZERO_ROW;
    var a4 = ZERO_ROW;
    var a5 = ZERO_ROW;
    var a6 = ZERO_ROW;
    var a7 = ZERO_ROW;
    for (var w = 0u; w < params.n_waves; w++) {
        let wd = wave_delay_of(w);
        let tw = w * np;
        let x0 = tx[tw + min(p0, last)];
        var x1 = x0;
        var x2 = x0;
        var x3 = x0;
        var x4 = x0;
        var x5 = x0;
        var x6 = x0;
        var x7 = x0;
        if (K > 1u) {
            x1 = tx[tw + min(p0 + 1u, last)];
        }
        if (K > 2u) {
            x2 = tx[tw + min(p0 + 2u, last)];
            x3 = tx[tw + min(p0 + 3u, last)];
        }
        if (K > 4u) {
            x4 = tx[tw + min(p0 + 4u, last)];
            x5 = tx[tw + min(p0 + 5u, last)];
            x6 = tx[tw + min(p0 + 6u, last)];
            x7 = tx[tw + min(p0 + 7u, last)];
        }
        for (var e = 0u; e < params.n_elements; e++) {
            let none = Tap(-1, vec4<f32>(0.0), vec2<f32>(0.0), 0.0);
            var t0 = tap(q0, x0, wd, e);
            var t1 = none;
            var t2 = none;
            var t3 = none;
            var t4 = none;
            var t5 = none;
            var t6 = none;
            var t7 = none;
            if (K > 1u) {
                t1 = tap(q1, x1, wd, e);
            }
            if (K > 2u) {
                t2 = tap(q2, x2, wd, e);
                t3 = tap(q3, x3, wd, e);
            }
            if (K > 4u) {
                t4 = tap(q4, x4, wd, e);
                t5 = tap(q5, x5, wd, e);
                t6 = tap(q6, x6, wd, e);
                t7 = tap(q7, x7, wd, e);
            }
            let base = (w * params.n_elements + e) * params.n_samples * stride + block;
            // Usually one window holds every pixel's taps; when the pixels
            // are too far apart, further windows take the rest. A loop, not
            // a separate slow path: lavapipe predicates both sides of a
            // branch, and a rarely taken path full of loads measured 40 %
            // of the kernel (BENCHMARKS.md).
            loop {
                let hi = max(max(max(t0.row, t1.row), max(t2.row, t3.row)), max(max(t4.row, t5.row), max(t6.row, t7.row)));
                if (hi < 0) {
                    // No pixel (left) takes this element.
                    break;
                }
                var lo = hi;
                lo = lowest(lo, t0);
                lo = lowest(lo, t1);
                lo = lowest(lo, t2);
                lo = lowest(lo, t3);
                lo = lowest(lo, t4);
                lo = lowest(lo, t5);
                lo = lowest(lo, t6);
                lo = lowest(lo, t7);
                // The window: rows lo .. lo + taps + 1, those some pixel uses.
                let i = base + u32(lo) * stride;
                let n = i32(n_taps()) + min(hi - lo, 2);
                let w0 = load_row(i);
                var w1 = ZERO_ROW;
                var w2 = ZERO_ROW;
                var w3 = ZERO_ROW;
                var w4 = ZERO_ROW;
                var w5 = ZERO_ROW;
                if (n > 1) {
                    w1 = load_row(i + stride);
                }
                if (n > 2) {
                    w2 = load_row(i + 2u * stride);
                }
                if (n > 3) {
                    w3 = load_row(i + 3u * stride);
                }
                if (n > 4) {
                    w4 = load_row(i + 4u * stride);
                }
                if (n > 5) {
                    w5 = load_row(i + 5u * stride);
                }
                t0 = accumulate(&a0, t0, lo, w0, w1, w2, w3, w4, w5);
                t1 = accumulate(&a1, t1, lo, w0, w1, w2, w3, w4, w5);
                t2 = accumulate(&a2, t2, lo, w0, w1, w2, w3, w4, w5);
                t3 = accumulate(&a3, t3, lo, w0, w1, w2, w3, w4, w5);
                t4 = accumulate(&a4, t4, lo, w0, w1, w2, w3, w4, w5);
                t5 = accumulate(&a5, t5, lo, w0, w1, w2, w3, w4, w5);
                t6 = accumulate(&a6, t6, lo, w0, w1, w2, w3, w4, w5);
                t7 = accumulate(&a7, t7, lo, w0, w1, w2, w3, w4, w5);
            }
        }
    }
    store(p0, f0, a0);
    if (K > 1u) {
        store(p0 + 1u, f0, a1);
    }
    if (K > 2u) {
        store(p0 + 2u, f0, a2);
        store(p0 + 3u, f0, a3);
    }
    if (K > 4u) {
        store(p0 + 4u, f0, a4);
        store(p0 + 5u, f0, a5);
        store(p0 + 6u, f0, a6);
        store(p0 + 7u, f0, a7);
    }
}
