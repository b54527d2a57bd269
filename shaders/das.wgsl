// das: delay-and-sum of RF or IQ channel data onto a list of pixels, with
// coherent compounding over waves and many frames per dispatch.
// CPU twin: src/reference/das.rs. Host: src/pipeline/das.rs.
// The measurements behind every choice below: BENCHMARKS.md ("The DAS
// kernel: what was done and what each step measured").
//
// Three entry points, recorded in this order by the host:
//
// 1. `das_layout` copies the channel data, [frame][wave][element][sample],
//    into rows with the frames contiguous: [wave][element][sample][frame],
//    complex, frames padded to a whole block. One row (a sample of one
//    trace, 2·ROW_VEC4 frames) is then ROW_VEC4 vec4 loads instead of
//    4·ROW_VEC4 scalar ones.
// 2. `das_transmit` computes, once per (wave, pixel), the transmit distance
//    (MUST's virtual-element search or the analytic wavefront), the first
//    and last element that contribute and the normalisation of the wave's
//    sum, so that none of it is repeated for each block of frames.
// 3. `das` beamforms. One invocation owns PIXELS_PER_INVOCATION consecutive
//    pixels and one block of frames. Neighbouring pixels (along a grid row)
//    have nearly the same delay to an element, so their interpolation taps
//    fall in a window of a few rows: the invocation loads that window once
//    and each pixel weights its rows. Loads, not arithmetic, bound this
//    kernel on lavapipe (each storage load is a scalar loop over the SIMD
//    lanes), and sharing the window cuts them about threefold with 8
//    pixels.
//
// The arithmetic of one (pixel, element, frame) is the original
// single-pixel kernel's, so the CPU twin, which loops over pixels one by
// one, still mirrors it; only the order of the sum differs.

//!import shared/acquisition.wgsl

// Interpolation, apodization, aperture kind, pixels per invocation and
// vec4 per row are specialised at pipeline creation (pipeline-overridable
// constants) so that unused taps, windows, pixel slots and row parts
// compile away: lavapipe executes both sides of every branch that is not
// constant (measured: the runtime apodization switch alone was 17 % of the
// kernel). The host sets INTERP, APODIZATION and APERTURE_CONE from
// DasParams (interp, apodization, aperture > 0); they always agree.
override INTERP: u32 = 1u;
override APODIZATION: u32 = 0u;
override APERTURE_CONE: bool = true;
override PIXELS_PER_INVOCATION: u32 = 8u;
// How far (in rows) the first taps of an invocation's pixels may spread
// and still share one window: 2, 4 or 6 (the host picks it from the
// geometry, Das::prepare).
override WINDOW_SPAN: u32 = 2u;
override ROW_VEC4: u32 = 4u;
// Rows stored as f16 pairs (pack_f16x2) instead of f32: half the bytes
// per tap, for a GPU whose beamforming is bound by moving the rows (the
// issue's "f16 storage where precision allows"). The samples are scaled
// by a power of two (das_range) so that the peak sits just under 2^14:
// f16's 11-bit significand is kept for every sample down to 2^-14, 168 dB
// under the peak, and das undoes the scale exactly. Needs ROW_VEC4 >= 2
// (one 16-byte unit then holds 4 frames).
override ROW_F16: bool = false;
// Threads that share one invocation's element loop (1, 2, 4 or 8; more
// than 1 only with one pixel per invocation): each takes every
// ELEMENT_SPLIT-th element and the parts are summed through workgroup
// memory. On a GPU the element loop is a chain of dependent loads (tap,
// then rows), and a small image has too few pixels to hide it: the H200
// took ~170 µs whatever the size below 6.5e4 pixels. Splitting the loop
// shortens the chain and multiplies the threads.
override ELEMENT_SPLIT: u32 = 1u;

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

// ---- das_range and das_layout -------------------------------------------

// [frame][wave][element][sample], interleaved (re, im) when FLAG_IQ is set.
@group(0) @binding(1) var<storage, read> channels: array<f32>;
// [wave][element][sample][frame] complex in 16-byte units: with f32 rows a
// unit is two frames (re, im, re, im), with f16 rows four frames, each a
// pack_f16x2 (re, im).
@group(0) @binding(2) var<storage, read_write> rows_out: array<vec4<u32>>;
// [0]: bits of the largest |sample| (f16 rows only; cleared by the host
// before das_range). Non-negative floats order as their bits.
@group(0) @binding(12) var<storage, read_write> row_range: array<atomic<u32>>;

var<workgroup> range_wg: atomic<u32>;

// Values of `channels` one das_range invocation folds before its atomics.
const RANGE_CHUNK: u32 = 16u;

// The largest |sample| of the batch into row_range[0]: a fold per invocation,
// one workgroup atomic each, one global atomic per workgroup.
@compute @workgroup_size(64)
fn das_range(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    if (li == 0u) {
        atomicStore(&range_wg, 0u);
    }
    workgroupBarrier();
    let t = gid.x + gid.y * nwg.x * 64u;
    // The batch's values (the buffer may be larger: kept between batches).
    let n = params.n_frames * params.n_waves * params.n_elements * params.n_samples * select(1u, 2u, (params.flags & FLAG_IQ) != 0u);
    var m = 0.0;
    for (var k = 0u; k < RANGE_CHUNK; k++) {
        let i = t * RANGE_CHUNK + k;
        if (i < n) {
            m = max(m, abs(channels[i]));
        }
    }
    atomicMax(&range_wg, bitcast<u32>(m));
    workgroupBarrier();
    if (li == 0u) {
        atomicMax(&row_range[0], atomicLoad(&range_wg));
    }
}

// The power of two f16 rows are scaled by: the peak into [2^13, 2^14).
// 0 for f32 rows, silence, or a peak that is not finite (inf and NaN then
// pass through unscaled, as in f32).
fn row_shift() -> i32 {
    if (!ROW_F16) {
        return 0;
    }
    let bits = atomicLoad(&row_range[0]);
    let e = i32((bits >> 23u) & 0xffu);
    if (bits == 0u || e == 255) {
        return 0;
    }
    return 13 - (e - 127);
}

// f16 by hand rather than pack2x16float/unpack2x16float: those need a
// downlevel capability (SHADER_F16_IN_F32) that some adapters lack, and a
// module using them would then fail to build for f32 rows too. Shifting
// the f16 bits into an f32's place and scaling by 2^±112 converts exactly
// (the exponent biases differ by 112); rounding is to nearest, ties to
// even. The rows hold |x| < 2^14, so nothing overflows; values under
// f16's smallest normal (2^-14, 168 dB below the peak) may flush to zero.
// Data that are not finite get no scale and are not kept as infinities or
// NaNs (WGSL lets an implementation assume there are none: lavapipe's
// f32 path did not propagate an infinite sample either).
fn pack_f16x2(v: vec2<f32>) -> u32 {
    // 2^-112: the f16 exponent in the f32's place.
    let b = bitcast<vec2<u32>>(abs(v) * 1.925929944387236e-34);
    let h = (b + vec2<u32>(0xfffu) + ((b >> vec2<u32>(13u)) & vec2<u32>(1u))) >> vec2<u32>(13u);
    let s = (bitcast<vec2<u32>>(v) >> vec2<u32>(16u)) & vec2<u32>(0x8000u);
    let w = (h & vec2<u32>(0x7fffu)) | s;
    return w.x | (w.y << 16u);
}

fn unpack_f16x2(u: u32) -> vec2<f32> {
    let h = vec2<u32>(u & 0xffffu, u >> 16u);
    // 2^112.
    let m = bitcast<vec2<f32>>((h & vec2<u32>(0x7fffu)) << vec2<u32>(13u)) * 5.192296858534828e33;
    return select(m, -m, (h & vec2<u32>(0x8000u)) != vec2<u32>(0u));
}

// Frames per 16-byte unit of a row.
fn frames_per_unit() -> u32 {
    return select(2u, 4u, ROW_F16);
}

fn channel_sample(f: u32, t: u32, n_rows: u32, iq: bool) -> vec2<f32> {
    if (f >= params.n_frames) {
        return vec2<f32>(0.0);
    }
    let k = f * n_rows + t;
    if (iq) {
        return vec2<f32>(channels[2u * k], channels[2u * k + 1u]);
    }
    return vec2<f32>(channels[k], 0.0);
}

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
    let fu = frames_per_unit();
    let units = frames_padded() / fu;
    let shift = row_shift();
    for (var q = 0u; q < units; q++) {
        let f = fu * q;
        let a = channel_sample(f, t, n_rows, iq);
        let b = channel_sample(f + 1u, t, n_rows, iq);
        if (ROW_F16) {
            let c = channel_sample(f + 2u, t, n_rows, iq);
            let d = channel_sample(f + 3u, t, n_rows, iq);
            let s = vec2<i32>(shift);
            rows_out[t * units + q] = vec4<u32>(
                pack_f16x2(ldexp(a, s)),
                pack_f16x2(ldexp(b, s)),
                pack_f16x2(ldexp(c, s)),
                pack_f16x2(ldexp(d, s)),
            );
        } else {
            rows_out[t * units + q] = bitcast<vec4<u32>>(vec4<f32>(a, b));
        }
    }
}

// ---- das_transmit and das ------------------------------------------------

@group(0) @binding(3) var<uniform> elements: array<Element, MAX_ELEMENTS>;
@group(0) @binding(4) var<uniform> waves: array<Wave, MAX_WAVES>;
// (x, z) in metres.
@group(0) @binding(5) var<storage, read> pixels: array<vec2<f32>>;
// das_transmit: MUST's virtual transmit elements (x, y, z, delay·c), Wave.table_start.. .
@group(0) @binding(6) var<storage, read> tx_table: array<vec4<f32>>;
// das_transmit: [wave][pixel] (transmit distance in metres, scale of the
// wave's sum, first and last element that contribute).
@group(0) @binding(7) var<storage, read_write> tx_out: array<vec4<f32>>;
// das: the output of das_transmit.
@group(0) @binding(8) var<storage, read> tx: array<vec4<f32>>;
// das: the output of das_layout (16-byte units, see rows_out).
@group(0) @binding(9) var<storage, read> rows: array<vec4<u32>>;
// das: [frame][pixel] complex.
@group(0) @binding(10) var<storage, read_write> image: array<vec2<f32>>;
// das: for each pixel of `pixels`, its index in the image (0xffffffff:
// padding). The host pads runs of neighbouring pixels (grid rows) to whole
// invocations so that no invocation straddles two rows (Das::prepare).
@group(0) @binding(11) var<storage, read> out_index: array<u32>;

// The pixel list as the kernels see it (padded; params.n_pixels counts the
// image's pixels).
fn n_padded() -> u32 {
    return arrayLength(&pixels);
}

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
    if (APODIZATION == APOD_HANN) {
        return 0.5 + 0.5 * cos(3.141592653589793 * u);
    }
    if (APODIZATION == APOD_TUKEY) {
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
    if (APERTURE_CONE) {
        let along = dot(d, normal);
        let a = d - along * normal;
        let reach = along * params.aperture;
        // MUST's rule |x - x_e| <= z / (2F), measured from the element
        // normal; compared squared, so that the boxcar needs no sqrt.
        if (along <= 0.0 || dot(a, a) > reach * reach) {
            return 0.0;
        }
        if (APODIZATION == APOD_BOXCAR) {
            return 1.0;
        }
        return window(length(a) / reach);
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
    let q = pixels[min(i, n_padded() - 1u)];
    return vec3<f32>(q.x, 0.0, q.y);
}

// One invocation per (wave, pixel).
@compute @workgroup_size(64)
fn das_transmit(@builtin(global_invocation_id) gid: vec3<u32>) {
    let pix = gid.x;
    let w = gid.y;
    if (pix >= n_padded() || w >= params.n_waves) {
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
    // The elements that contribute, decided as `das` decides (same
    // function): the first and the last, so that `das` loops over those
    // only (outside the receive aperture a pixel takes nothing: about half
    // of the (pixel, element) pairs of PWI_disk), and the sum of their
    // weights for the normalisation.
    let wd = wave_delay_of(w);
    var weight_sum = 0.0;
    var first = params.n_elements;
    var last = 0u;
    for (var e = 0u; e < params.n_elements; e++) {
        let t = tap(p, vec2<f32>(t_tx, 1.0), wd, e);
        if (t.row >= 0) {
            weight_sum += t.weight;
            first = min(first, e);
            last = max(last, e);
        }
    }
    var scale = 1.0;
    if ((params.flags & FLAG_NORMALIZE) != 0u && weight_sum > 0.0) {
        scale = 1.0 / weight_sum;
    }
    tx_out[w * n_padded() + pix] = vec4<f32>(t_tx, scale, f32(first), f32(last));
}

// FRAMES_PER_BLOCK = 2·ROW_VEC4 frames of one sample, complex: part k
// holds frames 2k and 2k + 1 as (re, im, re, im). Parts past ROW_VEC4
// stay zero and compile away.
struct Row {
    a: vec4<f32>,
    b: vec4<f32>,
    c: vec4<f32>,
    d: vec4<f32>,
    e: vec4<f32>,
    f: vec4<f32>,
    g: vec4<f32>,
    h: vec4<f32>,
}

const ZERO_ROW = Row(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));

// Four frames (two parts) from one unit of f16 pairs.
fn unpack_parts(u: vec4<u32>) -> array<vec4<f32>, 2> {
    return array<vec4<f32>, 2>(
        vec4<f32>(unpack_f16x2(u.x), unpack_f16x2(u.y)),
        vec4<f32>(unpack_f16x2(u.z), unpack_f16x2(u.w)),
    );
}

// The row starting at unit i.
fn load_row(i: u32) -> Row {
    var r = ZERO_ROW;
    if (ROW_F16) {
        // ROW_VEC4 >= 2: parts in pairs, one unit each.
        let ab = unpack_parts(rows[i]);
        r.a = ab[0];
        r.b = ab[1];
        if (ROW_VEC4 > 2u) {
            let cd = unpack_parts(rows[i + 1u]);
            r.c = cd[0];
            r.d = cd[1];
        }
        if (ROW_VEC4 > 4u) {
            let ef = unpack_parts(rows[i + 2u]);
            r.e = ef[0];
            r.f = ef[1];
            let gh = unpack_parts(rows[i + 3u]);
            r.g = gh[0];
            r.h = gh[1];
        }
        return r;
    }
    r.a = bitcast<vec4<f32>>(rows[i + 0u]);
    if (ROW_VEC4 > 1u) {
        r.b = bitcast<vec4<f32>>(rows[i + 1u]);
    }
    if (ROW_VEC4 > 2u) {
        r.c = bitcast<vec4<f32>>(rows[i + 2u]);
    }
    if (ROW_VEC4 > 3u) {
        r.d = bitcast<vec4<f32>>(rows[i + 3u]);
    }
    if (ROW_VEC4 > 4u) {
        r.e = bitcast<vec4<f32>>(rows[i + 4u]);
    }
    if (ROW_VEC4 > 5u) {
        r.f = bitcast<vec4<f32>>(rows[i + 5u]);
    }
    if (ROW_VEC4 > 6u) {
        r.g = bitcast<vec4<f32>>(rows[i + 6u]);
    }
    if (ROW_VEC4 > 7u) {
        r.h = bitcast<vec4<f32>>(rows[i + 7u]);
    }
    return r;
}

fn mad_row(acc: Row, c: f32, x: Row) -> Row {
    var r = acc;
    r.a = acc.a + c * x.a;
    if (ROW_VEC4 > 1u) {
        r.b = acc.b + c * x.b;
    }
    if (ROW_VEC4 > 2u) {
        r.c = acc.c + c * x.c;
    }
    if (ROW_VEC4 > 3u) {
        r.d = acc.d + c * x.d;
    }
    if (ROW_VEC4 > 4u) {
        r.e = acc.e + c * x.e;
    }
    if (ROW_VEC4 > 5u) {
        r.f = acc.f + c * x.f;
    }
    if (ROW_VEC4 > 6u) {
        r.g = acc.g + c * x.g;
    }
    if (ROW_VEC4 > 7u) {
        r.h = acc.h + c * x.h;
    }
    return r;
}

fn add_rows(x: Row, y: Row) -> Row {
    return mad_row(x, 1.0, y);
}

// acc + rot · v for complex pairs (re, im, re, im).
fn rotate_add(acc: Row, v: Row, rot: vec2<f32>) -> Row {
    let m = vec4<f32>(-rot.y, rot.y, -rot.y, rot.y);
    var out = acc;
    out.a += v.a * rot.x + v.a.yxwz * m;
    if (ROW_VEC4 > 1u) {
        out.b += v.b * rot.x + v.b.yxwz * m;
    }
    if (ROW_VEC4 > 2u) {
        out.c += v.c * rot.x + v.c.yxwz * m;
    }
    if (ROW_VEC4 > 3u) {
        out.d += v.d * rot.x + v.d.yxwz * m;
    }
    if (ROW_VEC4 > 4u) {
        out.e += v.e * rot.x + v.e.yxwz * m;
    }
    if (ROW_VEC4 > 5u) {
        out.f += v.f * rot.x + v.f.yxwz * m;
    }
    if (ROW_VEC4 > 6u) {
        out.g += v.g * rot.x + v.g.yxwz * m;
    }
    if (ROW_VEC4 > 7u) {
        out.h += v.h * rot.x + v.h.yxwz * m;
    }
    return out;
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

// Up to taps + WINDOW_SPAN consecutive rows of one trace (rows past
// that stay zero and compile away).
struct Window {
    r0: Row,
    r1: Row,
    r2: Row,
    r3: Row,
    r4: Row,
    r5: Row,
    r6: Row,
    r7: Row,
    r8: Row,
    r9: Row,
}

fn window_rows() -> u32 {
    return n_taps() + WINDOW_SPAN;
}

// A pixel's accumulator after a window, and its tap (row −1 once added).
struct Added {
    acc: Row,
    tap: Tap,
}

// The weight of window row j for a tap `d` rows above the window start.
fn row_weight(t: Tap, d: i32, j: i32) -> f32 {
    var w = select(0.0, t.c.x, d == j);
    if (n_taps() > 1u) {
        w += select(0.0, t.c.y, d + 1 == j);
    }
    if (n_taps() > 2u) {
        w += select(0.0, t.c.z, d + 2 == j) + select(0.0, t.c.w, d + 3 == j);
    }
    return w;
}

// Add the share of a pixel whose taps lie in the window (rows lo, lo + 1,
// ...) and mark its tap done; a pixel outside the window, or done, adds
// zero. Each window row gets a scalar weight and one multiply-add per vec4,
// not a select per tap: every SIMD lane does the same work (lavapipe runs
// both sides of a branch). Values, not pointers, in and out: naga's SPIR-V
// writer rejects pointers into struct members.
fn accumulate(acc: Row, t: Tap, lo: i32, win: Window) -> Added {
    let d = t.row - lo;
    let here = t.row >= 0 && d <= i32(WINDOW_SPAN);
    var v = mad_row(ZERO_ROW, row_weight(t, d, 0), win.r0);
    if (window_rows() > 1u) {
        v = mad_row(v, row_weight(t, d, 1), win.r1);
    }
    if (window_rows() > 2u) {
        v = mad_row(v, row_weight(t, d, 2), win.r2);
    }
    if (window_rows() > 3u) {
        v = mad_row(v, row_weight(t, d, 3), win.r3);
    }
    if (window_rows() > 4u) {
        v = mad_row(v, row_weight(t, d, 4), win.r4);
    }
    if (window_rows() > 5u) {
        v = mad_row(v, row_weight(t, d, 5), win.r5);
    }
    if (window_rows() > 6u) {
        v = mad_row(v, row_weight(t, d, 6), win.r6);
    }
    if (window_rows() > 7u) {
        v = mad_row(v, row_weight(t, d, 7), win.r7);
    }
    if (window_rows() > 8u) {
        v = mad_row(v, row_weight(t, d, 8), win.r8);
    }
    if (window_rows() > 9u) {
        v = mad_row(v, row_weight(t, d, 9), win.r9);
    }
    var done = t;
    done.row = select(t.row, -1, here);
    return Added(rotate_add(acc, v, select(vec2<f32>(0.0), t.rot, here)), done);
}

fn store(p: u32, f0: u32, acc: Row) {
    if (p >= n_padded()) {
        return;
    }
    let pix = out_index[p];
    if (pix >= params.n_pixels) {
        return;
    }
    store_pair(pix, f0 + 0u, acc.a);
    if (ROW_VEC4 > 1u) {
        store_pair(pix, f0 + 2u, acc.b);
    }
    if (ROW_VEC4 > 2u) {
        store_pair(pix, f0 + 4u, acc.c);
    }
    if (ROW_VEC4 > 3u) {
        store_pair(pix, f0 + 6u, acc.d);
    }
    if (ROW_VEC4 > 4u) {
        store_pair(pix, f0 + 8u, acc.e);
    }
    if (ROW_VEC4 > 5u) {
        store_pair(pix, f0 + 10u, acc.f);
    }
    if (ROW_VEC4 > 6u) {
        store_pair(pix, f0 + 12u, acc.g);
    }
    if (ROW_VEC4 > 7u) {
        store_pair(pix, f0 + 14u, acc.h);
    }
}

fn store_pair(pix: u32, f: u32, v_scaled: vec4<f32>) {
    // f16 rows were scaled by 2^row_shift(); exact to undo.
    let v = ldexp(v_scaled, vec4<i32>(-row_shift()));
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

// The first row of the window for these taps (the lowest pending one), or
// −1 when none is pending.
fn window_start(t0: Tap, t1: Tap, t2: Tap, t3: Tap, t4: Tap, t5: Tap, t6: Tap, t7: Tap) -> i32 {
    let hi = max(max(max(t0.row, t1.row), max(t2.row, t3.row)), max(max(t4.row, t5.row), max(t6.row, t7.row)));
    var lo = hi;
    lo = lowest(lo, t0);
    lo = lowest(lo, t1);
    lo = lowest(lo, t2);
    lo = lowest(lo, t3);
    lo = lowest(lo, t4);
    lo = lowest(lo, t5);
    lo = lowest(lo, t6);
    lo = lowest(lo, t7);
    return lo;
}

// The highest first-tap row among the pending taps within reach of `lo`.
fn window_top(lo: i32, t: Tap, top: i32) -> i32 {
    return select(top, max(top, t.row), t.row >= 0 && t.row - lo <= i32(WINDOW_SPAN));
}

// The taps of the 8 pixel slots for element e of wave w (slots beyond
// PIXELS_PER_INVOCATION stay empty).
struct Taps8 {
    t0: Tap,
    t1: Tap,
    t2: Tap,
    t3: Tap,
    t4: Tap,
    t5: Tap,
    t6: Tap,
    t7: Tap,
}

fn taps8(q0: vec3<f32>, q1: vec3<f32>, q2: vec3<f32>, q3: vec3<f32>, q4: vec3<f32>, q5: vec3<f32>, q6: vec3<f32>, q7: vec3<f32>, x0: vec2<f32>, x1: vec2<f32>, x2: vec2<f32>, x3: vec2<f32>, x4: vec2<f32>, x5: vec2<f32>, x6: vec2<f32>, x7: vec2<f32>, wd: f32, e: u32) -> Taps8 {
    let none = Tap(-1, vec4<f32>(0.0), vec2<f32>(0.0), 0.0);
    var t = Taps8(none, none, none, none, none, none, none, none);
    let K = PIXELS_PER_INVOCATION;
    t.t0 = tap(q0, x0, wd, e);
    if (K > 1u) {
        t.t1 = tap(q1, x1, wd, e);
    }
    if (K > 2u) {
        t.t2 = tap(q2, x2, wd, e);
        t.t3 = tap(q3, x3, wd, e);
    }
    if (K > 4u) {
        t.t4 = tap(q4, x4, wd, e);
        t.t5 = tap(q5, x5, wd, e);
        t.t6 = tap(q6, x6, wd, e);
        t.t7 = tap(q7, x7, wd, e);
    }
    return t;
}

fn window_start8(t: Taps8) -> i32 {
    return window_start(t.t0, t.t1, t.t2, t.t3, t.t4, t.t5, t.t6, t.t7);
}

fn any_pending(t: Taps8) -> bool {
    return max(max(max(t.t0.row, t.t1.row), max(t.t2.row, t.t3.row)), max(max(t.t4.row, t.t5.row), max(t.t6.row, t.t7.row))) >= 0;
}

// Accumulators of the 8 pixel slots.
struct Acc8 {
    a0: Row,
    a1: Row,
    a2: Row,
    a3: Row,
    a4: Row,
    a5: Row,
    a6: Row,
    a7: Row,
}

// Load the window at `lo` (the rows the taps within reach use) and add
// every tap it holds; returns the taps with those marked done.
fn add_window(acc: ptr<function, Acc8>, t: Taps8, lo: i32, base: u32, stride: u32) -> Taps8 {
    var top = lo;
    top = window_top(lo, t.t0, top);
    top = window_top(lo, t.t1, top);
    top = window_top(lo, t.t2, top);
    top = window_top(lo, t.t3, top);
    top = window_top(lo, t.t4, top);
    top = window_top(lo, t.t5, top);
    top = window_top(lo, t.t6, top);
    top = window_top(lo, t.t7, top);
    // Rows lo .. top + taps − 1: at most taps + WINDOW_SPAN.
    let n = i32(n_taps()) + top - lo;
    let i = base + u32(lo) * stride;
    var win: Window;
    win.r0 = load_row(i);
    if (window_rows() > 1u && n > 1) {
        win.r1 = load_row(i + 1u * stride);
    }
    if (window_rows() > 2u && n > 2) {
        win.r2 = load_row(i + 2u * stride);
    }
    if (window_rows() > 3u && n > 3) {
        win.r3 = load_row(i + 3u * stride);
    }
    if (window_rows() > 4u && n > 4) {
        win.r4 = load_row(i + 4u * stride);
    }
    if (window_rows() > 5u && n > 5) {
        win.r5 = load_row(i + 5u * stride);
    }
    if (window_rows() > 6u && n > 6) {
        win.r6 = load_row(i + 6u * stride);
    }
    if (window_rows() > 7u && n > 7) {
        win.r7 = load_row(i + 7u * stride);
    }
    if (window_rows() > 8u && n > 8) {
        win.r8 = load_row(i + 8u * stride);
    }
    if (window_rows() > 9u && n > 9) {
        win.r9 = load_row(i + 9u * stride);
    }
    var a = *acc;
    var out = t;
    var r = accumulate(a.a0, t.t0, lo, win);
    a.a0 = r.acc;
    out.t0 = r.tap;
    r = accumulate(a.a1, t.t1, lo, win);
    a.a1 = r.acc;
    out.t1 = r.tap;
    r = accumulate(a.a2, t.t2, lo, win);
    a.a2 = r.acc;
    out.t2 = r.tap;
    r = accumulate(a.a3, t.t3, lo, win);
    a.a3 = r.acc;
    out.t3 = r.tap;
    r = accumulate(a.a4, t.t4, lo, win);
    a.a4 = r.acc;
    out.t4 = r.tap;
    r = accumulate(a.a5, t.t5, lo, win);
    a.a5 = r.acc;
    out.t5 = r.tap;
    r = accumulate(a.a6, t.t6, lo, win);
    a.a6 = r.acc;
    out.t6 = r.tap;
    r = accumulate(a.a7, t.t7, lo, win);
    a.a7 = r.acc;
    out.t7 = r.tap;
    *acc = a;
    return out;
}

// The elements an invocation's pixels take (das_transmit), widened by one
// on each side: the two passes are compiled apart and may round a tie at
// the aperture's edge differently, and the kernel's own test decides
// there. Empty (x > y) when no pixel takes any element.
fn elements_of(x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>, x4: vec4<f32>, x5: vec4<f32>, x6: vec4<f32>, x7: vec4<f32>) -> vec2<u32> {
    let K = PIXELS_PER_INVOCATION;
    var lo = x0.z;
    var hi = x0.w;
    if (K > 1u) {
        lo = min(lo, x1.z);
        hi = max(hi, x1.w);
    }
    if (K > 2u) {
        lo = min(lo, min(x2.z, x3.z));
        hi = max(hi, max(x2.w, x3.w));
    }
    if (K > 4u) {
        lo = min(lo, min(min(x4.z, x5.z), min(x6.z, x7.z)));
        hi = max(hi, max(max(x4.w, x5.w), max(x6.w, x7.w)));
    }
    if (lo > hi) {
        return vec2<u32>(1u, 0u);
    }
    return vec2<u32>(u32(max(lo - 1.0, 0.0)), min(u32(hi) + 1u, params.n_elements - 1u));
}

// One invocation: pixels p0 .. p0 + PIXELS_PER_INVOCATION − 1 of the
// padded list, frames of block wid.y. The pixel slots are written out
// (WGSL has no unrolling, and lavapipe keeps private arrays indexed in
// loops in memory: measured 2.5× slower as a loop); slots beyond
// PIXELS_PER_INVOCATION are constant-false and compile away.
//
// Per element, one window (taps + WINDOW_SPAN rows) serves every pixel
// whose first tap is within WINDOW_SPAN rows of the lowest. Pixels further
// apart (an invocation
// across a sharp change of delay) are left for a second pass after the
// main loop, which runs only in invocations that need it. Not a branch in
// the main loop: lavapipe predicates both sides of a branch, so a rarely
// taken slow path full of loads costs on every element (measured: 40 % of
// the kernel), while a loop that no SIMD lane enters costs one test.
// The second pass: the taps the first left out, pixel by pixel, each
// loading its own rows. Written as loops over the slots (one copy of
// `tap`, kept small: every copy is compiled for every variant, and
// lavapipe compiles at pipeline creation) into a separate array, so that
// the first pass keeps its accumulators in registers. A function of its
// own because naga's SPIR-V zeroes a function's variables at its entry,
// wherever they are declared: here `extra`, `x` and `rows_of` (1.3 KB of
// private memory) are zeroed only by the invocations that need them, not
// by every invocation of `das`.
fn second_pass(acc: ptr<function, Acc8>, p0: u32, q0: vec3<f32>, q1: vec3<f32>, q2: vec3<f32>, q3: vec3<f32>, q4: vec3<f32>, q5: vec3<f32>, q6: vec3<f32>, q7: vec3<f32>, stride: u32, block: u32) {
    let np = n_padded();
    let last = np - 1u;
    var extra: array<Row, 8>;
    let q = array<vec3<f32>, 8>(q0, q1, q2, q3, q4, q5, q6, q7);
    for (var w = 0u; w < params.n_waves; w++) {
        let wd = wave_delay_of(w);
        let tw = w * np;
        var x: array<vec4<f32>, 8>;
        for (var k = 0u; k < 8u; k++) {
            x[k] = tx[tw + min(p0 + k, last)];
        }
        let range = elements_of(x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]);
        for (var e = range.x; e <= range.y; e++) {
            // The first pass's window: rows from the lowest first tap.
            var rows_of: array<i32, 8>;
            var first = -1;
            for (var k = 0u; k < PIXELS_PER_INVOCATION; k++) {
                let r = tap(q[k], x[k].xy, wd, e).row;
                rows_of[k] = r;
                if (r >= 0 && (first < 0 || r < first)) {
                    first = r;
                }
            }
            let base = (w * params.n_elements + e) * params.n_samples * stride + block;
            for (var k = 0u; k < PIXELS_PER_INVOCATION; k++) {
                if (rows_of[k] - first > i32(WINDOW_SPAN) && first >= 0) {
                    let t = tap(q[k], x[k].xy, wd, e);
                    let i = base + u32(t.row) * stride;
                    var v = mad_row(ZERO_ROW, t.c.x, load_row(i));
                    if (n_taps() > 1u) {
                        v = mad_row(v, t.c.y, load_row(i + stride));
                    }
                    if (n_taps() > 2u) {
                        v = mad_row(v, t.c.z, load_row(i + 2u * stride));
                        v = mad_row(v, t.c.w, load_row(i + 3u * stride));
                    }
                    extra[k] = rotate_add(extra[k], v, t.rot);
                }
            }
        }
    }
    var a = *acc;
    a.a0 = add_rows(a.a0, extra[0]);
    a.a1 = add_rows(a.a1, extra[1]);
    a.a2 = add_rows(a.a2, extra[2]);
    a.a3 = add_rows(a.a3, extra[3]);
    a.a4 = add_rows(a.a4, extra[4]);
    a.a5 = add_rows(a.a5, extra[5]);
    a.a6 = add_rows(a.a6, extra[6]);
    a.a7 = add_rows(a.a7, extra[7]);
    *acc = a;
}

// Partial sums of the split element loop (ELEMENT_SPLIT > 1). One row
// otherwise: 8 KB of workgroup memory that an unsplit kernel never
// touches would still count against how many workgroups a GPU keeps
// resident, wherever its compiler does not drop it.
var<workgroup> split_acc: array<Row, select(1u, 64u, ELEMENT_SPLIT > 1u)>;

@compute @workgroup_size(64)
fn das(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    // A workgroup holds 64 / ELEMENT_SPLIT invocations, each on
    // ELEMENT_SPLIT threads: thread `part` of invocation `slot`. Lanes of
    // one part take consecutive invocations (neighbouring pixels read
    // neighbouring rows).
    let slots = 64u / ELEMENT_SPLIT;
    let part = li / slots;
    let p0 = (wid.x * slots + li % slots) * PIXELS_PER_INVOCATION;
    let f0 = wid.y * 2u * ROW_VEC4;
    let np = n_padded();
    // Only a whole workgroup leaves early. An invocation past the last
    // pixel runs on the last one and stores nothing (store() checks), so
    // that every thread reaches the barrier of the split.
    if (f0 >= params.n_frames) {
        return;
    }
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
    // Row stride in units: one sample of one trace, all frames.
    let stride = frames_padded() / frames_per_unit();
    let block = wid.y * 2u * ROW_VEC4 / frames_per_unit();

    var acc = Acc8(ZERO_ROW, ZERO_ROW, ZERO_ROW, ZERO_ROW, ZERO_ROW, ZERO_ROW, ZERO_ROW, ZERO_ROW);
    var missed = false;
    for (var w = 0u; w < params.n_waves; w++) {
        let wd = wave_delay_of(w);
        let tw = w * np;
        let x0 = tx[tw + min(p0, last)];
        let x1 = tx[tw + min(p0 + 1u, last)];
        let x2 = tx[tw + min(p0 + 2u, last)];
        let x3 = tx[tw + min(p0 + 3u, last)];
        let x4 = tx[tw + min(p0 + 4u, last)];
        let x5 = tx[tw + min(p0 + 5u, last)];
        let x6 = tx[tw + min(p0 + 6u, last)];
        let x7 = tx[tw + min(p0 + 7u, last)];
        let range = elements_of(x0, x1, x2, x3, x4, x5, x6, x7);
        for (var e = range.x + part; e <= range.y; e += ELEMENT_SPLIT) {
            let t = taps8(q0, q1, q2, q3, q4, q5, q6, q7, x0.xy, x1.xy, x2.xy, x3.xy, x4.xy, x5.xy, x6.xy, x7.xy, wd, e);
            let lo = window_start8(t);
            if (lo < 0) {
                // No pixel of this invocation takes this element.
                continue;
            }
            let base = (w * params.n_elements + e) * params.n_samples * stride + block;
            let rest = add_window(&acc, t, lo, base, stride);
            missed = missed || any_pending(rest);
        }
    }
    // The taps the first pass left out ([`second_pass`]). One pixel's taps
    // are all in its window (no span): a compile-time false for it.
    if (PIXELS_PER_INVOCATION > 1u && missed) {
        second_pass(&acc, p0, q0, q1, q2, q3, q4, q5, q6, q7, stride, block);
    }
    if (ELEMENT_SPLIT > 1u) {
        // One pixel per invocation: its parts summed in part order.
        split_acc[li] = acc.a0;
        workgroupBarrier();
        if (part != 0u) {
            return;
        }
        var sum = split_acc[li];
        for (var j = 1u; j < ELEMENT_SPLIT; j++) {
            sum = add_rows(sum, split_acc[li + j * slots]);
        }
        acc.a0 = sum;
    }
    let K = PIXELS_PER_INVOCATION;
    store(p0, f0, acc.a0);
    if (K > 1u) {
        store(p0 + 1u, f0, acc.a1);
    }
    if (K > 2u) {
        store(p0 + 2u, f0, acc.a2);
        store(p0 + 3u, f0, acc.a3);
    }
    if (K > 4u) {
        store(p0 + 4u, f0, acc.a4);
        store(p0 + 5u, f0, acc.a5);
        store(p0 + 6u, f0, acc.a6);
        store(p0 + 7u, f0, acc.a7);
    }
}
