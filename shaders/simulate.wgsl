// simulate: RF channel data from point scatterers, with the physics of
// PyMUST's simus (pulse, probe response, element directivity and baffle,
// 1/r spreading, frequency-dependent attenuation, elevation focusing),
// written into [wave][channel][sample] traces in UFF time.
// CPU twin: src/reference/simulate.rs. Host: src/pipeline/simulate.rs.
//
// The echo of scatterer s on element e for one wave is the sum, over the
// transmitting elements e', of the two-way pulse delayed by
// fire(e') + |s - e'|/c + |s - e|/c. Summing that directly is
// O(elements^2) per scatterer. It splits instead:
//
// transmit (one workgroup per wave and scatterer): the field that reaches
//   the scatterer, sum over e' of weight(e') x pulse(t - arrival(e')), is
//   built in the frequency domain on a window around the wavefront (N_f
//   frequencies, like simus but only over the window: ~40 instead of ~1000
//   for the default window) and written as a complex baseband waveform on
//   taps. Arrivals more than `window` after the wavefront (edge waves, and
//   transmit grating lobes from far elements) are tapered out; a window as
//   long as the aperture keeps them all, at a cost that grows with it.
// receive (one invocation per scatterer and element, looping over the
//   waves): delays that waveform by |s - e|/c, weights it by the element's
//   directivity, spreading, attenuation and elevation response, and adds it
//   into the traces.
// peak, resolve: fixed point to f32, optional noise, frames.
//
// Summing without races: receive adds into 64-bit fixed-point accumulators
// (u32 words with a carry; positive and negative parts apart) with atomicAdd. WGSL has no float atomics. A
// gather per output sample would need the scatterers binned by arrival for
// every (wave, element) trace, a sort per trace each frame; tiles in
// workgroup memory would still need atomics inside the tile. Integer
// addition is associative, so the result does not depend on the order in
// which invocations land: two runs give identical bits, and the CPU twin
// can split the sum over threads. The unit is 2^-(42 - e) where 2^e bounds
// every single contribution (transmit's per-scatterer bound), so one
// contribution is < 2^43 units and 2^20 coherent contributions at the bound
// still fit in 63 bits. The positive and negative parts are summed apart
// so that a contribution below 2^32 units costs one atomic, not two.
// Measured on lavapipe (2 cores, 2000 scatterers of the C5-2v reference ×
// 128 channels × 5 waves): 2.0 s in all, 1.6 s with the atomic adds
// replaced by a (wrong) register sum, so any race-free scheme could save at
// most a quarter, before paying for its own binning. Summing groups of 8
// neighbouring scatterers in an invocation first cut the atomics eightfold
// but made receive 2.5 times slower there (the group's state spills).

// Keep in sync with MAX_SEGMENTS in src/sim/mod.rs.
const MAX_SEGMENTS: u32 = 8u;
// Segments per element and frequencies per transmit invocation
// (ceil(n_freq / WG)), specialised at pipeline creation; the host sets them
// from the plan (params.n_segments and params.n_freq agree). With constant
// counts the per-segment and per-frequency loops unroll and their arrays
// (receive's distances, weights and carrier phasors, transmit's spectrum
// block) stay in registers; indexed by a runtime count they lived in
// memory, lane by lane on lavapipe (local memory on NVIDIA). Measured on
// lavapipe (hip scene, `fast`, 2 segments): receive 1 100 -> 790 ms;
// transmit unchanged there.
override N_SEGMENTS: u32 = 1u;
override FREQ_BLOCK: u32 = 1u;
const PI: f32 = 3.14159265358979;
const TAU: f32 = 6.283185307179586;
// float32 epsilon, as simus uses it for the angle and the baffle floor.
const EPS: f32 = 1.1920929e-7;

const FLAG_ELEVATION: u32 = 1u;
const FLAG_CONVEX: u32 = 2u;
const FLAG_WRITE_TAPS: u32 = 4u;
// Resolve: keep the noise-free sum in `base` instead of writing frames
// (a background, such as the display's tissue, that later runs add to).
const FLAG_BASE_KEEP: u32 = 8u;
// Peak and resolve: add `base` (a kept background) to the sum.
const FLAG_BASE_ADD: u32 = 16u;

const BAFFLE_SOFT: u32 = 0u;
const BAFFLE_RIGID: u32 = 1u;
const BAFFLE_IMPEDANCE: u32 = 2u;

const WAVE_FIRST_ARRIVAL: u32 = 0u;
const WAVE_FOCUSED: u32 = 1u;

// Keep in sync with SimulateParams in src/pipeline/simulate.rs.
struct SimulateParams {
    n_elements: u32,
    n_segments: u32,
    n_waves: u32,
    n_samples: u32,
    batch_start: u32,
    batch_len: u32,
    n_freq: u32,
    n_taps: u32,
    flags: u32,
    baffle: u32,
    n_frames: u32,
    noise_seed: u32,
    // Offsets (in vec4) of the sections of `tables`.
    off_waves: u32,
    off_fire: u32,
    off_spectrum: u32,
    // Waves [wave_start, wave_end) of this receive dispatch.
    wave_start: u32,
    fs: f32,
    t0: f32,
    inv_c: f32,
    fc: f32,
    // 2π fc / c: the directivity uses the centre frequency only (simus).
    kc: f32,
    // Frequency step F of the transmit spectrum; f_n = n F, F·N_f/2 = fc.
    f_step: f32,
    // Baseband taps: rate and the time of tap 0 relative to the window centre.
    fs_taps: f32,
    tap0: f32,
    // Attenuation, Np per (Hz · m): dB/cm/MHz / 8.69 · 1e-4 (simus).
    alpha: f32,
    seg_len: f32,
    // Distances are floored at λ/2 (simus).
    small_d: f32,
    baffle_b: f32,
    // Elevation: 1/height², 1/focus (0: unfocused).
    inv_height2: f32,
    inv_focus: f32,
    // 2-D model: the element width that simus's 2-D scaling multiplies by.
    width_2d: f32,
    // Largest |elevation ratio| of an element against the reference element.
    rx_cap: f32,
    noise_level: f32,
    // Scatterers below this depth are behind the array.
    z_min: f32,
    // Convex probe: scatterers inside the circle are behind the array.
    convex_x: f32,
    convex_z: f32,
    convex_r2: f32,
    // Extent of the two-way pulse about its nominal time (s).
    pulse_lo: f32,
    pulse_hi: f32,
    wave_end: u32,
}

@group(0) @binding(0) var<uniform> params: SimulateParams;
// Elements (2 vec4 each): (x, y, z, normal angle), (tangent xyz, width);
// waves (3 vec4 each, see wave_*); fire times (one vec4 per wave and
// element: fire time s, apodization); spectrum (one vec4 per frequency:
// conj(pulse · probe²) · compensation · 2F).
@group(0) @binding(1) var<storage, read> tables: array<vec4<f32>>;
// (x, y, z, amplitude), metres.
@group(0) @binding(2) var<storage, read> scatterers: array<vec4<f32>>;
// [wave][scatterer of the batch]: (window centre s, valid, first and last
// tap written), then [scatterer of the batch] × 2: the receive elevation
// reference.
@group(0) @binding(3) var<storage, read_write> heads: array<vec4<f32>>;
// [wave][scatterer of the batch][tap]: the complex baseband transmit
// waveform as (tap j, tap j + 1), each tap stored twice, so that receive's
// linear interpolation between two taps is one aligned 16-byte load
// instead of two 8-byte ones (measured on lavapipe: one load for both
// taps made receive 21 % faster; the bits do not change).
@group(0) @binding(4) var<storage, read_write> taps: array<vec4<f32>>;
// [0]: bits of the largest contribution bound; [1]: bits of the peak |RF|.
@group(0) @binding(5) var<storage, read_write> state: array<atomic<u32>>;
// The 64-bit sums, four words a sample (positive low, high; negative low,
// high), [wave][element][sample] as the frames.
@group(0) @binding(6) var<storage, read_write> acc: array<atomic<u32>>;
// [frame][wave][element][sample].
@group(0) @binding(7) var<storage, read_write> rf: array<f32>;
// [wave][element][sample]: a kept background's noise-free RF (see
// FLAG_BASE_KEEP and FLAG_BASE_ADD). Its own scatterers' fixed-point unit
// was set by their own bound, so it is kept as f32, not as accumulators:
// background + foreground then differs from one run over both by f32
// rounding of the sum (tests/simulate.rs measures it).
@group(0) @binding(8) var<storage, read_write> base: array<f32>;

fn invocation(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

// ---- complex arithmetic (x + jy as vec2)

fn cmul(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}

fn conj(a: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(a.x, -a.y);
}

fn cdiv(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    let d = b.x * b.x + b.y * b.y;
    return vec2<f32>(a.x * b.x + a.y * b.y, a.y * b.x - a.x * b.y) / d;
}

// Principal square root (numpy's branch).
fn csqrt(a: vec2<f32>) -> vec2<f32> {
    let m = length(a);
    let re = sqrt(max(0.5 * (m + a.x), 0.0));
    var im = sqrt(max(0.5 * (m - a.x), 0.0));
    if (a.y < 0.0) {
        im = -im;
    }
    return vec2<f32>(re, im);
}

fn cexp(a: vec2<f32>) -> vec2<f32> {
    return exp(a.x) * vec2<f32>(cos(a.y), sin(a.y));
}

fn expj(phase: f32) -> vec2<f32> {
    return vec2<f32>(cos(phase), sin(phase));
}

// sin(x)/x, as simus's mysinc (unnormalised).
fn sinc(x: f32) -> f32 {
    let a = abs(x);
    if (a < 1e-4) {
        return 1.0 - a * a / 6.0;
    }
    return sin(a) / a;
}

// ---- elevation: simus's multi-Gaussian beam (MGBM, 4 terms) for an element
// of height H focused at Rf, at wavenumber k, mean distance rm and elevation y.

const MGBM_A = array<vec2<f32>, 4>(
    vec2<f32>(0.187, 0.275), vec2<f32>(0.288, -1.954), vec2<f32>(0.187, -0.275), vec2<f32>(0.288, 1.954));
const MGBM_B = array<vec2<f32>, 4>(
    vec2<f32>(4.558, -25.59), vec2<f32>(8.598, -7.924), vec2<f32>(4.558, 25.59), vec2<f32>(8.598, 7.924));

fn mgbm(k: f32, rm: f32, y: f32) -> vec2<f32> {
    // alpha = j/2 (1/Rf - 1/rm); gamma = j y²/(2 rm); beta2 = -(y/rm)².
    let alpha_im = 0.5 * (params.inv_focus - 1.0 / rm);
    let gamma_im = y * y / (2.0 * rm);
    let yr = y / rm;
    let beta2 = -yr * yr;
    var out = vec2<f32>(0.0, 0.0);
    for (var n = 0u; n < 4u; n++) {
        let den = vec2<f32>(0.0, k * alpha_im) + MGBM_B[n] * params.inv_height2;
        let tmp = cdiv(vec2<f32>(1.0, 0.0), den);
        let arg = (k * k * beta2 * 0.25) * tmp + vec2<f32>(0.0, k * gamma_im);
        out += cmul(MGBM_A[n], cmul(csqrt(PI * tmp), cexp(arg)));
    }
    return out;
}

fn wavenumber(n: u32) -> f32 {
    return TAU * f32(n) * params.f_step * params.inv_c;
}

// The three frequencies (0.75, 1, 1.25 fc) at which an element's elevation
// response is matched to the reference element's by least squares.
fn ls_index(i: u32) -> u32 {
    let h = params.n_freq / 2u;
    let d = params.n_freq / 8u;
    return h + i * d - d;
}

// ---- geometry

struct Path {
    r: f32,
    // Directivity × obliquity / spreading / segments; no attenuation.
    amp: f32,
    // Angle from the element normal, radians.
    theta: f32,
}

fn path(p: vec3<f32>, e: u32, m: u32) -> Path {
    let el = tables[2u * e];
    let tg = tables[2u * e + 1u];
    let offset = (f32(m) + 0.5 - 0.5 * f32(params.n_segments)) * params.seg_len;
    let sp = el.xyz + offset * tg.xyz;
    let dx = p.x - sp.x;
    let dz = p.z - sp.z;
    let d2 = dx * dx + dz * dz;
    var r: f32;
    if ((params.flags & FLAG_ELEVATION) != 0u) {
        r = sqrt(d2 + p.y * p.y);
    } else {
        r = sqrt(d2);
    }
    r = max(r, params.small_d);
    let theta = asin(clamp((dx + EPS) / (sqrt(d2) + EPS), -1.0, 1.0)) - el.w;
    let ct = cos(theta);
    var obliquity = ct;
    if (params.baffle == BAFFLE_RIGID) {
        obliquity = 1.0;
    } else if (params.baffle == BAFFLE_IMPEDANCE) {
        obliquity = ct / (ct + params.baffle_b);
    }
    if (abs(theta) >= 0.5 * PI) {
        obliquity = EPS;
    }
    let directivity = sinc(params.kc * params.seg_len * 0.5 * sin(theta));
    var amp = obliquity * directivity / f32(params.n_segments);
    if ((params.flags & FLAG_ELEVATION) != 0u) {
        amp = amp / r;
    } else {
        amp = amp / sqrt(r);
    }
    return Path(r, amp, theta);
}

fn behind_array(p: vec3<f32>) -> bool {
    if (p.z < params.z_min) {
        return true;
    }
    if ((params.flags & FLAG_CONVEX) != 0u) {
        let dx = p.x - params.convex_x;
        let dz = p.z - params.convex_z;
        return dx * dx + dz * dz <= params.convex_r2;
    }
    return false;
}

fn is_finite4(v: vec4<f32>) -> bool {
    // NaN fails every comparison; ±inf fails the bound.
    return all(abs(v) < vec4<f32>(1e30));
}

fn fire(w: u32, e: u32) -> vec2<f32> {
    return tables[params.off_fire + w * params.n_elements + e].xy;
}

// Wave w: (focus xyz, |focus|), (kind, delay, window lo, window hi),
// (taper lo, taper hi, 0, 0); kind is a u32 stored as its float value.
fn wave_a(w: u32) -> vec4<f32> {
    return tables[params.off_waves + 3u * w];
}
fn wave_b(w: u32) -> vec4<f32> {
    return tables[params.off_waves + 3u * w + 1u];
}
fn wave_c(w: u32) -> vec4<f32> {
    return tables[params.off_waves + 3u * w + 2u];
}

fn spectrum(n: u32) -> vec2<f32> {
    return tables[params.off_spectrum + n].xy;
}

// Weight of an arrival d seconds after the window centre: 1 inside, a
// raised cosine over the taper at a cut end, 0 outside.
fn window_weight(d: f32, lo: f32, hi: f32, taper_lo: f32, taper_hi: f32) -> f32 {
    if (d < lo || d > hi) {
        return 0.0;
    }
    if (taper_hi > 0.0 && d > hi - taper_hi) {
        return 0.5 + 0.5 * cos(PI * (d - (hi - taper_hi)) / taper_hi);
    }
    if (taper_lo > 0.0 && d < lo + taper_lo) {
        return 0.5 + 0.5 * cos(PI * ((lo + taper_lo) - d) / taper_lo);
    }
    return 1.0;
}

// ---- transmit: one workgroup per (wave, scatterer of the batch)
//
// The 32 invocations share the work: elements for the first arrival, the
// arrivals' weights, blocks of frequencies for the spectrum, taps for the
// waveform. One invocation per scatterer would leave a GPU's other lanes
// idle through long loops, and lavapipe stops an invocation after 65 535
// loop iterations in all, which a long window exceeds. 32 (one NVIDIA
// warp): on lavapipe, transmit for 2000 scatterers × 5 waves took 2.6 s
// with 64 invocations, 1.5 s with 32 and 1.0 s with 16 (barriers are
// coroutine switches there; a loaded machine), but 16 would half-fill a
// warp and overrun lavapipe's loop limit for the longest windows; one
// invocation per workgroup made the whole C5-2v simulation 23 s instead
// of 19 s.

const WG: u32 = 32u;
// Arrivals staged in workgroup memory at a time; more are done in chunks.
const MAX_ARRIVALS: u32 = 256u;
// Frequencies of the transmit spectrum (so at most 32 per invocation).
const MAX_FREQ: u32 = 1024u;
const MAX_BLOCK: u32 = 32u;

var<workgroup> red_a: array<f32, WG>;
var<workgroup> red_b: array<f32, WG>;
var<workgroup> red_c: array<f32, WG>;
var<workgroup> red_i: array<u32, WG>;

// What invocation 0 reduces from the per-invocation partials (in
// invocation order: one barrier before and one uniform load after, where a
// tree would take a barrier per level; lavapipe pays for every barrier).
struct Reduced {
    a: f32,
    b: f32,
    c: f32,
    i: u32,
}
var<workgroup> reduced: Reduced;
// (weight re, im; α r; 2π d) of staged arrivals.
var<workgroup> arrivals: array<vec4<f32>, MAX_ARRIVALS>;
// A chunk's arrivals in rows of WG (row k, bit li: arrival k·WG + li of
// the chunk), marked where non-zero. Pass 2 compacts the non-zero ones,
// in arrival order, before summing them: every invocation sums every
// staged arrival, and on lavapipe the loop over them cost as much with
// the arithmetic of every one skipped as in full (684 vs 694 ms of
// transmit, hip scene, `fast`), while most arrivals lie outside the
// transmit window. Needs WG = 32 (one bit per invocation).
const ROWS: u32 = MAX_ARRIVALS / WG;
var<workgroup> nonzero_rows: array<atomic<u32>, ROWS>;
// K(f_n) Q(f_n), sized by the plan's frequencies (FREQ_BLOCK · WG ≥
// n_freq), not by MAX_FREQ: a GPU fits as many workgroups on a
// multiprocessor as their workgroup memory allows, and at MAX_FREQ this
// array alone took 8 KB where the hip scenes' ~40 frequencies need
// 512 bytes (13 KB a workgroup in all before, ~5 KB now).
var<workgroup> kq: array<vec2<f32>, FREQ_BLOCK * WG>;

fn zero_heads(li: u32, w: u32, head: u32, rx_head: u32) {
    if (li == 0u) {
        heads[head] = vec4<f32>(0.0);
        if (w == 0u) {
            heads[rx_head] = vec4<f32>(0.0);
            heads[rx_head + 1u] = vec4<f32>(0.0);
        }
    }
}

@compute @workgroup_size(32)
fn transmit(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let id = wid.x + wid.y * nwg.x;
    let nb = params.batch_len;
    if (id >= nb * params.n_waves) {
        return;
    }
    let w = id / nb;
    let sb = id % nb;
    let sc = scatterers[params.batch_start + sb];
    let p = sc.xyz;
    let head = w * nb + sb;
    let rx_head = params.n_waves * nb + 2u * sb;
    let elevation = (params.flags & FLAG_ELEVATION) != 0u;
    if (!is_finite4(sc) || behind_array(p) || sc.w == 0.0) {
        zero_heads(li, w, head, rx_head);
        return;
    }
    let ne = params.n_elements;
    let ns = N_SEGMENTS;

    // Pass 1: the first arrival (window centre) and its element (the
    // transmit reference; the lowest index on ties), the last arrival, and
    // the nearest element's mean distance (the receive reference).
    var t_first = 1e30;
    var t_last = -1e30;
    var e_first = 0xffffffffu;
    var rm_near = 1e30;
    for (var e = li; e < ne; e += WG) {
        let fa = fire(w, e);
        var rm = 0.0;
        for (var m = 0u; m < ns; m++) {
            let pa = path(p, e, m);
            rm += pa.r;
            if (fa.y != 0.0 && abs(pa.theta) < 0.5 * PI) {
                let t = fa.x + pa.r * params.inv_c;
                if (t < t_first) {
                    t_first = t;
                    e_first = e;
                }
                t_last = max(t_last, t);
            }
        }
        rm_near = min(rm_near, rm / f32(ns));
    }
    red_a[li] = t_first;
    red_i[li] = e_first;
    red_b[li] = t_last;
    red_c[li] = rm_near;
    // Cleared for pass 2's first chunk (each chunk clears them for the next).
    if (li < ROWS) {
        atomicStore(&nonzero_rows[li], 0u);
    }
    workgroupBarrier();
    if (li == 0u) {
        var r = Reduced(red_a[0], red_b[0], red_c[0], red_i[0]);
        for (var k = 1u; k < WG; k++) {
            if (red_a[k] < r.a || (red_a[k] == r.a && red_i[k] < r.i)) {
                r.a = red_a[k];
                r.i = red_i[k];
            }
            r.b = max(r.b, red_b[k]);
            r.c = min(r.c, red_c[k]);
        }
        reduced = r;
    }
    let first = workgroupUniformLoad(&reduced);
    let tf = first.a;
    if (tf > 1e29) {
        // No element faces the scatterer.
        zero_heads(li, w, head, rx_head);
        return;
    }
    let e_tx = first.i;
    let tl = first.b;
    let rm_rx = first.c;
    var rm_tx = 0.0;
    for (var m = 0u; m < ns; m++) {
        rm_tx += path(p, e_tx, m).r;
    }
    rm_tx /= f32(ns);

    if (w == 0u && li == 0u) {
        if (elevation) {
            // Receive reference: weighted conj(M_ref) at the three
            // frequencies and 1 / sum of weights · |M_ref|².
            var den = 0.0;
            var r3: array<vec2<f32>, 3>;
            for (var i = 0u; i < 3u; i++) {
                let n = ls_index(i);
                let s0 = spectrum(n);
                let mr = mgbm(wavenumber(n), rm_rx, p.y);
                r3[i] = dot(s0, s0) * conj(mr);
                den += dot(s0, s0) * dot(mr, mr);
            }
            heads[rx_head] = vec4<f32>(r3[0], r3[1]);
            heads[rx_head + 1u] = vec4<f32>(r3[2], 1.0 / max(den, 1e-30), 1.0);
        } else {
            heads[rx_head] = vec4<f32>(0.0);
            heads[rx_head + 1u] = vec4<f32>(0.0, 0.0, 0.0, 1.0);
        }
    }
    let wa = wave_a(w);
    let wb = wave_b(w);
    let wc = wave_c(w);
    var tc = tf;
    if (u32(wb.x) == WAVE_FOCUSED) {
        // Beyond the focus the geometric wavefront is the *last* arrival;
        // centre the window on it.
        let sign = select(-1.0, 1.0, p.z >= wa.z);
        let t_wave = (wa.w + sign * distance(p, wa.xyz)) * params.inv_c - wb.y;
        tc = clamp(t_wave, tf, tl);
    }

    // Elevation references of the transmit reference at the three frequencies.
    var ref_tx: array<vec2<f32>, 3>;
    var ls_w: array<f32, 3>;
    var ref_den = 0.0;
    if (elevation) {
        for (var i = 0u; i < 3u; i++) {
            let n = ls_index(i);
            let s0 = spectrum(n);
            ls_w[i] = dot(s0, s0);
            ref_tx[i] = mgbm(wavenumber(n), rm_tx, p.y);
            ref_den += ls_w[i] * dot(ref_tx[i], ref_tx[i]);
        }
    }

    // Pass 2: the transmit spectrum Q(f_n) = sum over arrivals in the window
    // of weight · exp(-(α r + j2π d) f_n), d = arrival - tc, f_n = n F.
    // Arrivals are staged in chunks; each invocation sums its block of
    // frequencies, in arrival order.
    let nf = params.n_freq;
    let f_lo = min(li * FREQ_BLOCK, nf);
    let f_hi = min(f_lo + FREQ_BLOCK, nf);
    // q[b] is Q(f_lo + b); entries at or past f_hi are summed but unused.
    var q: array<vec2<f32>, MAX_BLOCK>;
    for (var b = 0u; b < FREQ_BLOCK; b++) {
        q[b] = vec2<f32>(0.0);
    }
    var d_first = 1e30;
    var d_last = -1e30;
    let n_arr = ne * ns;
    for (var a0 = 0u; a0 < n_arr; a0 += MAX_ARRIVALS) {
        let a1 = min(a0 + MAX_ARRIVALS, n_arr);
        // This invocation's arrivals (row k: arrival a0 + k·WG + li),
        // kept until they are compacted.
        var mine: array<vec4<f32>, ROWS>;
        for (var k = 0u; k < ROWS; k++) {
            let a = a0 + k * WG + li;
            mine[k] = vec4<f32>(0.0);
            if (a >= a1) {
                continue;
            }
            let e = a / ns;
            let pa = path(p, e, a % ns);
            let fa = fire(w, e);
            let d = fa.x + pa.r * params.inv_c - tc;
            let wt = window_weight(d, wb.z, wb.w, wc.x, wc.y);
            var staged = vec4<f32>(0.0);
            if (fa.y != 0.0 && wt != 0.0) {
                var ratio = vec2<f32>(1.0, 0.0);
                if (elevation) {
                    // This element's elevation response against the reference's.
                    var rm = 0.0;
                    for (var mm = 0u; mm < ns; mm++) {
                        rm += path(p, e, mm).r;
                    }
                    rm /= f32(ns);
                    var num = vec2<f32>(0.0);
                    for (var i = 0u; i < 3u; i++) {
                        num += ls_w[i] * cmul(mgbm(wavenumber(ls_index(i)), rm, p.y), conj(ref_tx[i]));
                    }
                    ratio = num / max(ref_den, 1e-30);
                    let mag = length(ratio);
                    if (mag > params.rx_cap) {
                        ratio *= params.rx_cap / mag;
                    }
                }
                d_first = min(d_first, d);
                d_last = max(d_last, d);
                // conj: simus takes the conjugate spectrum before its inverse FFT.
                staged = vec4<f32>(fa.y * wt * pa.amp * conj(ratio), params.alpha * pa.r, TAU * d);
            }
            mine[k] = staged;
            if (staged.x != 0.0 || staged.y != 0.0) {
                atomicOr(&nonzero_rows[k], 1u << li);
            }
        }
        workgroupBarrier();
        // The non-zero arrivals to the front of `arrivals`, in arrival
        // order: an arrival's place is the count of marks before it.
        var total = 0u;
        for (var k = 0u; k < ROWS; k++) {
            let row = atomicLoad(&nonzero_rows[k]);
            if ((row & (1u << li)) != 0u) {
                arrivals[total + countOneBits(row & ((1u << li) - 1u))] = mine[k];
            }
            total += countOneBits(row);
        }
        workgroupBarrier();
        if (li < ROWS) {
            atomicStore(&nonzero_rows[li], 0u);
        }
        for (var a = 0u; a < total; a++) {
            let v = arrivals[a];
            var z = cmul(v.xy, cexp(-(f32(f_lo) * params.f_step) * v.zw));
            let step = cexp(-params.f_step * v.zw);
            for (var b = 0u; b < FREQ_BLOCK; b++) {
                q[b] += z;
                z = cmul(z, step);
            }
        }
        workgroupBarrier();
    }

    // K(f_n): pulse, probe, the elevation responses of the two reference
    // elements and the receive reference's attenuation slope about fc.
    var bound = 0.0;
    for (var b = 0u; b < FREQ_BLOCK; b++) {
        let n = f_lo + b;
        if (n >= f_hi) {
            break;
        }
        var k = spectrum(n);
        var v = vec2<f32>(0.0);
        if (k.x != 0.0 || k.y != 0.0) {
            if (elevation) {
                let kw = wavenumber(n);
                k = cmul(k, conj(cmul(mgbm(kw, rm_tx, p.y), mgbm(kw, rm_rx, p.y))));
            }
            k *= exp(-params.alpha * (f32(n) * params.f_step - params.fc) * rm_rx);
            v = cmul(q[b], k);
        }
        kq[n] = v;
        bound += length(v);
    }
    red_a[li] = d_first;
    red_b[li] = d_last;
    red_c[li] = bound;
    // Every invocation reads kq below: the barrier in the uniform load
    // orders those writes too.
    workgroupBarrier();
    if (li == 0u) {
        var r = Reduced(red_a[0], red_b[0], red_c[0], 0u);
        for (var k = 1u; k < WG; k++) {
            r.a = min(r.a, red_a[k]);
            r.b = max(r.b, red_b[k]);
            r.c += red_c[k];
        }
        reduced = r;
        var reach = params.rx_cap / params.small_d;
        if (!elevation) {
            reach = params.width_2d / sqrt(params.small_d);
        }
        atomicMax(&state[0], bitcast<u32>(abs(sc.w) * r.c * reach));
    }
    let second = workgroupUniformLoad(&reduced);
    let df = second.a;
    let dl = second.b;
    if (dl < df) {
        // Every arrival fell outside the window.
        if (li == 0u) {
            heads[head] = vec4<f32>(0.0);
        }
        return;
    }
    // Taps that can be non-zero: the arrivals' span widened by the pulse.
    let j_lo = u32(clamp(floor((df + params.pulse_lo - params.tap0) * params.fs_taps), 0.0, f32(params.n_taps - 1u)));
    let j_hi = u32(clamp(ceil((dl + params.pulse_hi - params.tap0) * params.fs_taps), f32(j_lo), f32(params.n_taps - 1u)));
    if (li == 0u) {
        heads[head] = vec4<f32>(tc, 1.0, f32(j_lo), f32(j_hi));
    }
    if ((params.flags & FLAG_WRITE_TAPS) == 0u) {
        return;
    }

    // Taps: P(u_j) = sum_n K Q e^{j2π (f_n - fc) u_j}, u_j = tap0 + j / fs_taps.
    let base = head * params.n_taps;
    for (var j = j_lo + li; j <= j_hi; j += WG) {
        let u = params.tap0 + f32(j) / params.fs_taps;
        // f_0 - fc = -fc; the step is F. Phases stay small: |u| is at most
        // the window.
        var rot = expj(-TAU * fract(params.fc * u));
        let step = expj(TAU * params.f_step * u);
        var s = vec2<f32>(0.0);
        for (var n = 0u; n < nf; n++) {
            s += cmul(kq[n], rot);
            rot = cmul(rot, step);
        }
        taps[base + j].x = s.x;
        taps[base + j].y = s.y;
        if (j > j_lo) {
            taps[base + j - 1u].z = s.x;
            taps[base + j - 1u].w = s.y;
        }
    }
}

// ---- receive: the echoes, added into the traces
//
// Two kernels sum the same echoes in two orders (the same bits: integer
// sums). `receive`: one invocation per (pair of scatterers of the batch,
// element), each sample of the pair added into the trace with an atomic.
// `receive_tiled`: one workgroup per (tile of TILE scatterers of the
// batch, element); the tile's echoes are summed in workgroup memory
// first, over a window of its trace, and the window then added into the
// trace, one sum per sample (see there). `Simulate` picks one per
// adapter.

fn shift_of_bound() -> i32 {
    // Bound in [2^e, 2^(e+1)): scale by 2^(42 - e) so |x| < 2^43.
    let bits = atomicLoad(&state[0]);
    let e = i32((bits >> 23u) & 0xffu) - 127;
    return 42 - e;
}

// The first of the four words of sample k of element e's trace for wave w
// (positive low, high; negative low, high).
fn acc_slot(w: u32, e: u32, k: u32) -> u32 {
    return 4u * ((w * params.n_elements + e) * params.n_samples + k);
}

// v · 2^shift, rounded, as its magnitude's 64-bit words and its sign.
struct Fixed {
    lo: u32,
    hi: u32,
    negative: bool,
}

fn to_fixed(v: f32, shift: i32) -> Fixed {
    let x = ldexp(v, shift);
    let a = abs(x);
    if (a < 4294967040.0) {
        return Fixed(u32(round(a)), 0u, x < 0.0);
    }
    // a >= 2^32 is a multiple of 2^9: both words are exact.
    let h = floor(a * 2.3283064365386963e-10);
    return Fixed(u32(a - h * 4294967296.0), u32(h), x < 0.0);
}

// A 64-bit two's complement sum of fixed-point values.
fn plus(s: vec2<u32>, f: Fixed) -> vec2<u32> {
    if (f.negative) {
        return vec2<u32>(s.x - f.lo, s.y - f.hi - select(0u, 1u, s.x < f.lo));
    }
    let lo = s.x + f.lo;
    return vec2<u32>(lo, s.y + f.hi + select(0u, 1u, lo < s.x));
}

// A sum as a magnitude and a sign.
fn as_fixed(s: vec2<u32>) -> Fixed {
    if ((s.y & 0x80000000u) == 0u) {
        return Fixed(s.x, s.y, false);
    }
    let lo = ~s.x + 1u;
    return Fixed(lo, ~s.y + select(0u, 1u, lo == 0u), true);
}

// Add f into the sample at `slot`: its magnitude into the positive or the
// negative 64-bit sum, so the high word is only touched on a carry or for
// contributions of 2^32 units and more: one atomic per sample instead of
// two for two's complement.
fn add_to_trace(slot: u32, f: Fixed) {
    if (f.lo == 0u && f.hi == 0u) {
        return;
    }
    let word = slot + select(0u, 2u, f.negative);
    let old = atomicAdd(&acc[word], f.lo);
    let hi = f.hi + select(0u, 1u, old + f.lo < old);
    if (hi != 0u) {
        atomicAdd(&acc[word + 1u], hi);
    }
}

// One scatterer's echo on one element, whatever the wave: per segment its
// distance and complex weight (amplitude, directivity, spreading,
// attenuation at fc, elevation response against the reference's), and
// the nearest and farthest segment.
struct Echo {
    r: array<f32, MAX_SEGMENTS>,
    c: array<vec2<f32>, MAX_SEGMENTS>,
    r_lo: f32,
    r_hi: f32,
}

// The echo of scatterer sb of the batch on element e; `ref0`, `ref1`: its
// receive elevation reference (transmit's heads).
fn echo_of(sb: u32, e: u32, ref0: vec4<f32>, ref1: vec4<f32>) -> Echo {
    let sc = scatterers[params.batch_start + sb];
    let p = sc.xyz;
    let ns = N_SEGMENTS;
    var echo: Echo;
    echo.r_lo = 1e30;
    echo.r_hi = 0.0;
    var rm = 0.0;
    for (var m = 0u; m < ns; m++) {
        let pa = path(p, e, m);
        echo.r[m] = pa.r;
        rm += pa.r;
        echo.r_lo = min(echo.r_lo, pa.r);
        echo.r_hi = max(echo.r_hi, pa.r);
        echo.c[m] = vec2<f32>(sc.w * pa.amp * exp(-params.alpha * params.fc * pa.r), 0.0);
    }
    rm /= f32(ns);
    var ratio = vec2<f32>(1.0, 0.0);
    if ((params.flags & FLAG_ELEVATION) != 0u) {
        let num = cmul(mgbm(wavenumber(ls_index(0u)), rm, p.y), ref0.xy)
            + cmul(mgbm(wavenumber(ls_index(1u)), rm, p.y), ref0.zw)
            + cmul(mgbm(wavenumber(ls_index(2u)), rm, p.y), ref1.xy);
        ratio = num * ref1.z;
        let mag = length(ratio);
        if (mag > params.rx_cap) {
            ratio *= params.rx_cap / mag;
        }
    } else {
        ratio = vec2<f32>(params.width_2d, 0.0);
    }
    for (var m = 0u; m < ns; m++) {
        echo.c[m] = cmul(echo.c[m], conj(ratio));
    }
    return echo;
}

// The samples k0..=k1 of one wave's echo (x, y; none when y < x): those
// whose time minus (tc + r/c) falls on the written taps of some segment.
// `head`: the wave's transmit head (window centre tc, valid, taps).
fn echo_samples(head: vec4<f32>, echo: Echo) -> vec2<u32> {
    if (head.y == 0.0) {
        return vec2<u32>(1u, 0u);
    }
    let first = (head.x + echo.r_lo * params.inv_c + params.tap0 + head.z / params.fs_taps - params.t0) * params.fs;
    let last = (head.x + echo.r_hi * params.inv_c + params.tap0 + head.w / params.fs_taps - params.t0) * params.fs;
    let k0 = u32(max(ceil(first), 0.0));
    let k1f = min(floor(last), f32(params.n_samples) - 1.0);
    if (k1f < f32(k0)) {
        return vec2<u32>(1u, 0u);
    }
    return vec2<u32>(k0, u32(k1f));
}

// A walk along one wave's echo, sample by sample: per segment the tap
// position (in taps) and the carrier phasor exp(j2π fc u) at the current
// sample, where u is its time from the window centre minus r/c.
struct Walk {
    x0: array<f32, MAX_SEGMENTS>,
    ph: array<vec2<f32>, MAX_SEGMENTS>,
    // Samples walked.
    i: u32,
}

fn walk_from(echo: Echo, head: vec4<f32>, k0: u32) -> Walk {
    var walk: Walk;
    walk.i = 0u;
    for (var m = 0u; m < N_SEGMENTS; m++) {
        let u = (f32(k0) / params.fs + params.t0) - head.x - echo.r[m] * params.inv_c;
        walk.x0[m] = (u - params.tap0) * params.fs_taps;
        walk.ph[m] = expj(TAU * fract(params.fc * u));
    }
    return walk;
}

// The echo's value at the walk's sample (the RF: the real part of the
// taps, interpolated, times the weights and the carrier), then one sample on.
// `taps0`: the wave's and scatterer's first tap; `head`: as for echo_samples.
fn walk_step(walk: ptr<function, Walk>, echo: Echo, taps0: u32, head: vec4<f32>) -> f32 {
    let rot = expj(TAU * fract(params.fc / params.fs));
    let taps_per_sample = params.fs_taps / params.fs;
    var v = 0.0;
    let step = f32((*walk).i) * taps_per_sample;
    (*walk).i += 1u;
    for (var m = 0u; m < N_SEGMENTS; m++) {
        let x = (*walk).x0[m] + step;
        let i = floor(x);
        if (i >= head.z && i < head.w) {
            let pair = taps[taps0 + u32(i)];
            let z = cmul(echo.c[m], mix(pair.xy, pair.zw, x - i));
            v += z.x * (*walk).ph[m].x - z.y * (*walk).ph[m].y;
        }
        (*walk).ph[m] = cmul((*walk).ph[m], rot);
    }
    return v;
}

// One invocation per (pair of scatterers of the batch, element), looping
// over the waves; every sample goes into the trace with an atomic.
// Neighbouring invocations are one pair's elements: their loops are as
// long as each other (CPU lanes run in step). The two scatterers are
// neighbours in space (`gpu_rows`), so their echoes on an element cover
// nearly the same samples, and each sample takes one atomic for both
// (their fixed-point values summed first, exactly). Measured on lavapipe
// against one scatterer per invocation: the hip `fast` image's receive
// 754-783 -> 584-638 ms, the same bits. Written out for the two rather
// than as arrays over a count: lavapipe keeps arrays of structs in
// memory, and 2 or 4 scatterers so made were slower than one.
@compute @workgroup_size(64)
fn receive(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = invocation(gid, nwg);
    let ne = params.n_elements;
    let nb = params.batch_len;
    if (id >= (nb + 1u) / 2u * ne) {
        return;
    }
    let sa = 2u * (id / ne);
    let sb = sa + 1u;
    let e = id % ne;
    let head_a = params.n_waves * nb + 2u * sa;
    let ref_a = heads[head_a + 1u];
    let valid_a = ref_a.w != 0.0;
    var ref_b = vec4<f32>(0.0);
    if (sb < nb) {
        ref_b = heads[head_a + 3u];
    }
    let valid_b = ref_b.w != 0.0;
    var echo_a: Echo;
    var echo_b: Echo;
    if (valid_a) {
        echo_a = echo_of(sa, e, heads[head_a], ref_a);
    }
    if (valid_b) {
        echo_b = echo_of(sb, e, heads[head_a + 2u], ref_b);
    }
    let shift = shift_of_bound();
    for (var w = params.wave_start; w < params.wave_end; w++) {
        var hd_a = vec4<f32>(0.0);
        var hd_b = vec4<f32>(0.0);
        if (valid_a) {
            hd_a = heads[w * nb + sa];
        }
        if (valid_b) {
            hd_b = heads[w * nb + sb];
        }
        let ks_a = echo_samples(hd_a, echo_a);
        let ks_b = echo_samples(hd_b, echo_b);
        var walk_a = walk_from(echo_a, hd_a, ks_a.x);
        var walk_b = walk_from(echo_b, hd_b, ks_b.x);
        let taps_a = (w * nb + sa) * params.n_taps;
        let taps_b = taps_a + params.n_taps;
        var k0 = min(ks_a.x, ks_b.x);
        var k1 = max(ks_a.y, ks_b.y);
        if (ks_a.y < ks_a.x) {
            k0 = ks_b.x;
            k1 = ks_b.y;
        } else if (ks_b.y < ks_b.x) {
            k0 = ks_a.x;
            k1 = ks_a.y;
        }
        for (var k = k0; k <= k1; k++) {
            var sum = vec2<u32>(0u);
            if (k >= ks_a.x && k <= ks_a.y) {
                sum = plus(sum, to_fixed(walk_step(&walk_a, echo_a, taps_a, hd_a), shift));
            }
            if (k >= ks_b.x && k <= ks_b.y) {
                sum = plus(sum, to_fixed(walk_step(&walk_b, echo_b, taps_b, hd_b), shift));
            }
            add_to_trace(acc_slot(w, e, k), as_fixed(sum));
        }
    }
}

// receive_tiled: the invocations of a workgroup are TILE neighbouring
// scatterers of the batch (the host sorts them along a space-filling
// curve, `gpu_rows`) echoing on one element. Their echoes reach it within
// a short stretch of its trace, so they are summed first in workgroup
// memory over a window of WINDOW samples (atomics there are cheap on a
// GPU), and the window then goes into the trace, one 64-bit sum per
// sample, neighbouring invocations on neighbouring words: a GPU serves a
// warp's atomics per cache line, and a workgroup's few hundred replace
// thousands on words that other workgroups' echoes also hit. A sample
// past the window (a tile spread wider than it) goes into the trace
// directly. On lavapipe (a point-target phantom, 10 513 scatterers, 128
// channels, 3 waves) the atomics into the traces were about a third of
// the simulation, but the simulation with `receive_tiled` took 1.3-1.4×
// as long as with `receive`: its barriers keep every live value in memory
// there, and a CPU's lanes are different scatterers whose loops differ in
// length.

const TILE: u32 = 64u;
const WINDOW: u32 = 512u;
// Per sample of the window: positive low, high; negative low, high words.
var<workgroup> window_sums: array<atomic<u32>, 4u * WINDOW>;
// The samples the tile's echoes of this wave reach on this element.
var<workgroup> window_first: atomic<u32>;
var<workgroup> window_last: atomic<u32>;

fn add_to_window(s: u32, f: Fixed) {
    if (f.lo == 0u && f.hi == 0u) {
        return;
    }
    let word = 4u * s + select(0u, 2u, f.negative);
    let old = atomicAdd(&window_sums[word], f.lo);
    let hi = f.hi + select(0u, 1u, old + f.lo < old);
    if (hi != 0u) {
        atomicAdd(&window_sums[word + 1u], hi);
    }
}

// Sample s of the window as one 64-bit sum (positive minus negative: the
// difference of the trace's two sums is what resolve reads), as a
// magnitude and a sign; the window's words are zeroed for the next wave.
fn take_from_window(s: u32) -> Fixed {
    let p_lo = atomicLoad(&window_sums[4u * s]);
    let p_hi = atomicLoad(&window_sums[4u * s + 1u]);
    let n_lo = atomicLoad(&window_sums[4u * s + 2u]);
    let n_hi = atomicLoad(&window_sums[4u * s + 3u]);
    if ((p_lo | p_hi | n_lo | n_hi) == 0u) {
        return Fixed(0u, 0u, false);
    }
    for (var i = 0u; i < 4u; i++) {
        atomicStore(&window_sums[4u * s + i], 0u);
    }
    return as_fixed(plus(vec2<u32>(p_lo, p_hi), Fixed(n_lo, n_hi, true)));
}

@compute @workgroup_size(64)
fn receive_tiled(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let ne = params.n_elements;
    let nb = params.batch_len;
    let g = wid.x + wid.y * nwg.x;
    if (g >= (nb + TILE - 1u) / TILE * ne) {
        return;
    }
    // Neighbouring workgroups: one tile on neighbouring elements (they
    // read the same taps).
    let e = g % ne;
    let sb = (g / ne) * TILE + li;
    // window_sums starts zeroed (zero_workgroup_memory) and is zeroed
    // again as it is read.
    if (li == 0u) {
        atomicStore(&window_first, 0xffffffffu);
    }
    var valid = sb < nb;
    var echo: Echo;
    if (valid) {
        let rx_head = params.n_waves * nb + 2u * sb;
        let ref1 = heads[rx_head + 1u];
        valid = ref1.w != 0.0;
        if (valid) {
            echo = echo_of(sb, e, heads[rx_head], ref1);
        }
    }
    workgroupBarrier();
    let shift = shift_of_bound();
    for (var w = params.wave_start; w < params.wave_end; w++) {
        var head = vec4<f32>(0.0);
        var ks = vec2<u32>(1u, 0u);
        if (valid) {
            head = heads[w * nb + sb];
            ks = echo_samples(head, echo);
            if (ks.y >= ks.x) {
                atomicMin(&window_first, ks.x);
                atomicMax(&window_last, ks.y);
            }
        }
        workgroupBarrier();
        let first = atomicLoad(&window_first);
        let last = atomicLoad(&window_last);
        if (ks.y >= ks.x) {
            var walk = walk_from(echo, head, ks.x);
            let taps0 = (w * nb + sb) * params.n_taps;
            for (var k = ks.x; k <= ks.y; k++) {
                let f = to_fixed(walk_step(&walk, echo, taps0, head), shift);
                if (k - first < WINDOW) {
                    add_to_window(k - first, f);
                } else {
                    add_to_trace(acc_slot(w, e, k), f);
                }
            }
        }
        workgroupBarrier();
        // Every invocation has read first and last: reset for the next wave.
        if (li == 0u) {
            atomicStore(&window_first, 0xffffffffu);
            atomicStore(&window_last, 0u);
        }
        if (last >= first) {
            for (var s = li; s < min(last - first + 1u, WINDOW); s += TILE) {
                add_to_trace(acc_slot(w, e, first + s), take_from_window(s));
            }
        }
        workgroupBarrier();
    }
}

// ---- resolve: fixed point to f32, noise, frames

fn fixed_value(i: u32, shift: i32) -> f32 {
    // positive - negative, as 64-bit words with a borrow.
    // i is [wave][element][sample], as the frames and the sums.
    let a = 4u * i;
    let p = vec2<u32>(atomicLoad(&acc[a]), atomicLoad(&acc[a + 1u]));
    let s = plus(p, Fixed(atomicLoad(&acc[a + 2u]), atomicLoad(&acc[a + 3u]), true));
    let lo = s.x;
    let hi = bitcast<i32>(s.y);
    if ((hi == 0 && lo < 0x80000000u) || (hi == -1 && lo >= 0x80000000u)) {
        return ldexp(f32(bitcast<i32>(lo)), -shift);
    }
    return ldexp(f32(hi) * 4294967296.0 + f32(lo), -shift);
}

// Sample i of the sum: this run's accumulators, plus the kept background.
fn summed_value(i: u32, shift: i32) -> f32 {
    var v = fixed_value(i, shift);
    if ((params.flags & FLAG_BASE_ADD) != 0u) {
        v += base[i];
    }
    return v;
}

@compute @workgroup_size(64)
fn peak(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = invocation(gid, nwg);
    if (i >= params.n_waves * params.n_elements * params.n_samples) {
        return;
    }
    atomicMax(&state[1], bitcast<u32>(abs(summed_value(i, shift_of_bound()))));
}

fn pcg(v: u32) -> u32 {
    let s = v * 747796405u + 2891336453u;
    let word = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
    return (word >> 22u) ^ word;
}

// A standard normal value for sample `i` (Box-Muller on two hashed uniforms).
fn gaussian(i: u32) -> f32 {
    let a = pcg(i ^ params.noise_seed);
    let b = pcg(a ^ 0x9e3779b9u);
    let u1 = (f32(a >> 8u) + 0.5) * 5.9604645e-8;
    let u2 = f32(b >> 8u) * 5.9604645e-8;
    return sqrt(-2.0 * log(u1)) * cos(TAU * u2);
}

@compute @workgroup_size(64)
fn resolve(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = invocation(gid, nwg);
    let n = params.n_waves * params.n_elements * params.n_samples;
    if (i >= n) {
        return;
    }
    let v = summed_value(i, shift_of_bound());
    if ((params.flags & FLAG_BASE_KEEP) != 0u) {
        base[i] = v;
        return;
    }
    let sigma = params.noise_level * bitcast<f32>(atomicLoad(&state[1]));
    for (var f = 0u; f < params.n_frames; f++) {
        var x = v;
        if (sigma > 0.0) {
            x += sigma * gaussian(f * n + i);
        }
        rf[f * n + i] = x;
    }
}
