// das: delay-and-sum of RF or IQ channel data onto a list of pixels, with
// coherent compounding over waves and several frames per invocation.
// CPU twin: src/reference/das.rs. Host: src/pipeline/das.rs.
//
// One invocation owns one pixel and up to FRAMES_PER_THREAD frames: the
// delay, aperture weight and phase rotation of each (wave, element) are
// computed once and reused for every frame, which is where the time goes
// when many frames share one geometry.

//!import shared/acquisition.wgsl

const FRAMES_PER_THREAD: u32 = 8u;

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

@group(0) @binding(0) var<uniform> params: DasParams;
@group(0) @binding(1) var<storage, read> elements: array<Element>;
@group(0) @binding(2) var<storage, read> waves: array<Wave>;
// (x, z) in metres.
@group(0) @binding(3) var<storage, read> pixels: array<vec2<f32>>;
// [frame][wave][element][sample], interleaved (re, im) when FLAG_IQ is set.
@group(0) @binding(4) var<storage, read> channels: array<f32>;
// [frame][pixel] complex.
@group(0) @binding(5) var<storage, read_write> image: array<vec2<f32>>;
// MUST's virtual transmit elements (x, y, z, delay·c), Wave.table_start.. .
@group(0) @binding(6) var<storage, read> tx_table: array<vec4<f32>>;

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

fn sample_at(k: u32) -> vec2<f32> {
    if ((params.flags & FLAG_IQ) != 0u) {
        return vec2<f32>(channels[2u * k], channels[2u * k + 1u]);
    }
    return vec2<f32>(channels[k], 0.0);
}

@compute @workgroup_size(64)
fn das(@builtin(global_invocation_id) gid: vec3<u32>) {
    let pix = gid.x;
    let f0 = gid.y * FRAMES_PER_THREAD;
    if (pix >= params.n_pixels || f0 >= params.n_frames) {
        return;
    }
    let nf = min(FRAMES_PER_THREAD, params.n_frames - f0);
    let p = vec3<f32>(pixels[pix].x, 0.0, pixels[pix].y);
    let ns = params.n_samples;
    let frame_stride = params.n_waves * params.n_elements * ns;
    let iq = (params.flags & FLAG_IQ) != 0u;

    var acc: array<vec2<f32>, FRAMES_PER_THREAD>;
    for (var w = 0u; w < params.n_waves; w++) {
        let wave = waves[w];
        var t_tx: f32;
        var wave_delay: f32;
        if (params.transmit == TRANSMIT_MUST) {
            t_tx = must_transmit_distance(wave, p);
            wave_delay = 0.0;
        } else {
            t_tx = transmit_distance(wave, p);
            wave_delay = wave.delay;
        }
        var wave_acc: array<vec2<f32>, FRAMES_PER_THREAD>;
        var weight_sum = 0.0;
        for (var e = 0u; e < params.n_elements; e++) {
            let el = elements[e];
            let d = p - el.position.xyz;
            let weight = receive_weight(d, el.normal.xyz, e);
            if (weight <= 0.0) {
                continue;
            }
            let tau = (t_tx + length(d)) * params.inv_c - wave_delay;
            let s = (tau - params.t0) * params.fs;

            // Interpolation taps: up to four samples from index i0.
            var i0: i32;
            var c = vec4<f32>(0.0);
            var taps = 1u;
            if (params.interp == INTERP_NEAREST) {
                // MUST rounds the fractional index (half away from zero).
                i0 = i32(floor(s + 0.5));
                if (s < 0.0 || i0 > i32(ns) - 1) {
                    continue;
                }
                c.x = 1.0;
            } else if (params.interp == INTERP_LINEAR) {
                if (s < 0.0 || s > f32(ns) - 2.0) {
                    continue;
                }
                i0 = i32(floor(s));
                let f = s - f32(i0);
                c = vec4<f32>(1.0 - f, f, 0.0, 0.0);
                taps = 2u;
            } else {
                // Cubic convolution (Keys, a = -0.5) over samples i-1 .. i+2.
                let fl = floor(s);
                if (fl < 1.0 || fl > f32(ns) - 3.0) {
                    continue;
                }
                let f = s - fl;
                i0 = i32(fl) - 1;
                let f2 = f * f;
                let f3 = f2 * f;
                c = vec4<f32>(
                    -0.5 * f3 + f2 - 0.5 * f,
                    1.5 * f3 - 2.5 * f2 + 1.0,
                    -1.5 * f3 + 2.0 * f2 + 0.5 * f,
                    0.5 * f3 - 0.5 * f2,
                );
                taps = 4u;
            }

            // IQ data were mixed down with exp(-j 2π f_mod t): turn the phase
            // back at this pixel's delay.
            var rot = vec2<f32>(weight, 0.0);
            if (iq) {
                let phase = TAU * fract(params.f_mod * tau);
                rot = weight * vec2<f32>(cos(phase), sin(phase));
            }
            weight_sum += weight;

            let base = (w * params.n_elements + e) * ns + u32(i0);
            // Constant trip count so the accumulators stay in registers;
            // `f < nf` is uniform, so skipped frames cost a compare.
            for (var f = 0u; f < FRAMES_PER_THREAD; f++) {
                if (f >= nf) {
                    break;
                }
                let k = base + (f0 + f) * frame_stride;
                var v = c.x * sample_at(k);
                if (taps > 1u) {
                    v += c.y * sample_at(k + 1u);
                }
                if (taps > 2u) {
                    v += c.z * sample_at(k + 2u) + c.w * sample_at(k + 3u);
                }
                wave_acc[f] += vec2<f32>(v.x * rot.x - v.y * rot.y, v.x * rot.y + v.y * rot.x);
            }
        }
        var scale = 1.0;
        if ((params.flags & FLAG_NORMALIZE) != 0u && weight_sum > 0.0) {
            scale = 1.0 / weight_sum;
        }
        for (var f = 0u; f < nf; f++) {
            acc[f] += scale * wave_acc[f];
        }
    }
    for (var f = 0u; f < nf; f++) {
        image[(f0 + f) * params.n_pixels + pix] = acc[f];
    }
}
