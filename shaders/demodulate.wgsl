// demodulate: RF to IQ, the way MUST's rf2iq does it: mix down with
// exp(-j 2π fc t) at absolute time t = t0 + k/fs, low-pass with a
// Butterworth filter run forward and backward (filtfilt, odd padding,
// steady-state initial conditions), times 2.
// CPU twin: src/reference/demodulate.rs. Host: src/pipeline/demodulate.rs.
//
// An IIR filter is sequential along time. On a CPU adapter one invocation
// owns one trace (frames × waves × channels of them fill its SIMD lanes).
// A GPU wants tens of thousands of threads and short dependent loops: a
// display's 384 long traces ran demodulation at 2.5 ms on an H200, ten
// times its beamforming. So a trace may be cut into chunks, one invocation
// each: a chunk starts its filter `warmup` samples early, from the steady
// state of that sample, and by its first output the start's error has
// decayed below 1e-9 (warmup is set from the filter's slowest pole). One
// chunk per trace is the sequential filter exactly. Forward and backward
// passes are two dispatches: a backward chunk reads forward output from
// the next chunk.
// The filter runs as cascaded second-order sections: the single 5th-order
// polynomial form loses about three digits in f32 at MUST's cut-offs.

// Keep in sync with MAX_SECTIONS in src/reference/demodulate.rs.
const MAX_SECTIONS: u32 = 8u;
// The filter's sections, specialised at pipeline creation (the host sets
// it from the plan; params.n_sections agrees). With the count constant the
// loops over sections unroll, and the states and coefficients, copied
// from `sections` once per invocation, stay in registers: with a runtime
// count the arrays were indexed dynamically (memory, lane by lane on
// lavapipe) and the coefficients reloaded every sample. Measured on
// lavapipe, PWI_disk: 68 ms -> 40 ms (constant count) -> 28 ms (hoisted).
override N_SECTIONS: u32 = 1u;

// Keep in sync with DemodulateParams in src/pipeline/demodulate.rs.
struct DemodulateParams {
    n_traces: u32,
    n_samples: u32,
    // Odd-extension length at each end (scipy: 3 × filter length).
    pad: u32,
    n_sections: u32,
    // Mixing phase in units of 2^-32 cycle: fract(fc·t0) and fract(fc/fs).
    // u32 arithmetic wraps, so phase0 + k·step is exact modulo one cycle
    // (f32 would lose 1e-4 cycle by k ≈ 5000).
    phase0: u32,
    phase_step: u32,
    // Output scale (2 in MUST: the negative-frequency half is removed).
    scale: f32,
    // Extended samples per chunk (>= n + 2·pad: one chunk per trace), and
    // how many chunks each trace has.
    chunk: u32,
    n_chunks: u32,
    // Samples a chunk's filter runs before its first output.
    warmup: u32,
    // 1: `rf` holds int16 pairs (scanners' RF, half the upload), each
    // sample worth rf_scale × its integer; 0: f32.
    rf_i16: u32,
    rf_scale: f32,
}

// Keep in sync with GpuSection in src/pipeline/demodulate.rs.
struct Section {
    // b0, b1, b2, unused.
    b: vec4<f32>,
    // a1, a2 (a0 = 1), steady-state initial state for a unit step (zi0, zi1).
    a: vec4<f32>,
}

@group(0) @binding(0) var<uniform> params: DemodulateParams;
@group(0) @binding(1) var<storage, read> sections: array<Section>;
// [trace][sample] real: f32 bits, or int16 pairs (see rf_i16).
@group(0) @binding(2) var<storage, read> rf: array<u32>;
// [trace][pad + sample + pad] complex: the forward pass.
@group(0) @binding(3) var<storage, read_write> scratch: array<vec2<f32>>;
// [trace][sample] complex.
@group(0) @binding(4) var<storage, read_write> iq: array<vec2<f32>>;

const TAU: f32 = 6.283185307179586;

// RF sample i of the whole buffer.
fn sample(i: u32) -> f32 {
    if (params.rf_i16 != 0u) {
        // Sample 2j in the low half of word j: shift it up, then an
        // arithmetic shift down extends its sign.
        let word = rf[i / 2u];
        let high = select(word << 16u, word, (i & 1u) == 1u);
        return f32(bitcast<i32>(high) >> 16u) * params.rf_scale;
    }
    return bitcast<f32>(rf[i]);
}

fn mixed(trace: u32, k: u32) -> vec2<f32> {
    let ph = params.phase0 + k * params.phase_step;
    // As i32 the phase is centred on zero: cos/sin see [-π, π).
    let cycles = f32(bitcast<i32>(ph)) * 2.3283064365386963e-10;
    let v = sample(trace * params.n_samples + k);
    let phase = -TAU * cycles;
    return v * vec2<f32>(cos(phase), sin(phase));
}

// Sample i of the odd extension 2·x[0] − x[pad − i] | x | 2·x[n−1] − x[...].
fn extended(trace: u32, i: u32) -> vec2<f32> {
    let n = params.n_samples;
    let p = params.pad;
    if (i < p) {
        return 2.0 * mixed(trace, 0u) - mixed(trace, p - i);
    }
    if (i < p + n) {
        return mixed(trace, i - p);
    }
    return 2.0 * mixed(trace, n - 1u) - mixed(trace, n - 2u - (i - p - n));
}

// The filter's N_SECTIONS sections and their states (transposed direct
// form II: one complex pair per section).
struct Cascade {
    sec: array<Section, MAX_SECTIONS>,
    z1: array<vec2<f32>, MAX_SECTIONS>,
    z2: array<vec2<f32>, MAX_SECTIONS>,
}

// The sections, states at the steady state of input x (scipy's initial
// conditions, at a trace's start or a chunk's warm-up).
fn steady(x: vec2<f32>) -> Cascade {
    var c: Cascade;
    for (var s = 0u; s < N_SECTIONS; s++) {
        c.sec[s] = sections[s];
        c.z1[s] = c.sec[s].a.z * x;
        c.z2[s] = c.sec[s].a.w * x;
    }
    return c;
}

// One sample through the cascade of sections (scipy's sosfilt order of
// operations), updating their states.
fn cascade(x: vec2<f32>, c: ptr<function, Cascade>) -> vec2<f32> {
    var v = x;
    for (var s = 0u; s < N_SECTIONS; s++) {
        let sec = (*c).sec[s];
        let y = sec.b.x * v + (*c).z1[s];
        (*c).z1[s] = sec.b.y * v - sec.a.x * y + (*c).z2[s];
        (*c).z2[s] = sec.b.z * v - sec.a.y * y;
        v = y;
    }
    return v;
}

// The (trace, chunk) of an invocation; neighbouring invocations take
// neighbouring traces. None past the end.
struct Work {
    trace: u32,
    chunk: u32,
    ok: bool,
}

fn work(gid: vec3<u32>, nwg: vec3<u32>) -> Work {
    let id = gid.x + gid.y * nwg.x * 64u;
    let ok = id < params.n_traces * params.n_chunks;
    return Work(id % params.n_traces, id / params.n_traces, ok);
}

// Forward pass of one chunk [lo, hi) of the extended trace into scratch.
@compute @workgroup_size(64)
fn demodulate_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let w = work(gid, nwg);
    let len = params.n_samples + 2u * params.pad;
    let lo = w.chunk * params.chunk;
    if (!w.ok || lo >= len) {
        return;
    }
    let hi = min(lo + params.chunk, len);
    let base = w.trace * len;
    // From the steady state of the first sample filtered: the trace's own
    // start (scipy's initial conditions) or the warm-up's.
    let start = lo - min(lo, params.warmup);
    var c = steady(extended(w.trace, start));
    for (var i = start; i < hi; i++) {
        let y = cascade(extended(w.trace, i), &c);
        if (i >= lo) {
            scratch[base + i] = y;
        }
    }
}

// Backward pass of one chunk over the forward output, from its last sample
// down; the leading pad would only be discarded, so it stops at the first
// output.
@compute @workgroup_size(64)
fn demodulate_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let w = work(gid, nwg);
    let n = params.n_samples;
    let p = params.pad;
    let len = n + 2u * p;
    let lo = max(w.chunk * params.chunk, p);
    let hi = min(w.chunk * params.chunk + params.chunk, len);
    if (!w.ok || lo >= hi) {
        return;
    }
    let base = w.trace * len;
    let top = min(hi - 1u + params.warmup, len - 1u);
    var c = steady(scratch[base + top]);
    for (var j = 0u; j <= top - lo; j++) {
        let i = top - j;
        let v = cascade(scratch[base + i], &c);
        if (i < hi && i < p + n) {
            iq[w.trace * n + (i - p)] = params.scale * v;
        }
    }
}
