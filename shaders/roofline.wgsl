// roofline: what this adapter itself can do, measured the way das uses it
// (`sonoguide bench --roofline`, host and checks in src/bench/roofline.rs).
//
// `loads` reads as das reads its rows: each iteration, a window of
// WINDOW_VEC4 consecutive vec4 (the rows one invocation loads for one
// element: taps plus span, as stored), neighbouring invocations reading
// neighbouring windows, moving on by `stride` windows per iteration and
// wrapping inside a working set of `mask + 1` windows. A small working
// set, read over and over, gives the rate the caches serve (das's rows are
// mostly cache hits: neighbouring pixels read overlapping rows); a large
// one, each window read once, the rate of memory. `fmas` issues f32 fused
// multiply-adds in independent chains, so that issue, not latency, bounds
// it.
//
// Each invocation folds what it read or computed into one word, which the
// host compares with its own sum: the compiler cannot drop the work, and a
// wrong rate cannot come from a kernel that did not do it.

override WINDOW_VEC4: u32 = 8u;
// Steps of each FMA chain per loop iteration (fmas).
const UNROLL: u32 = 4u;

struct RooflineParams {
    iterations: u32,
    // Working set in windows, minus one (a power of two).
    mask: u32,
    // Windows between an invocation's reads in successive iterations.
    stride: u32,
    // 1.0 at run time, unknown to the compiler (the FMA chains' factor
    // and addend).
    one: f32,
}

@group(0) @binding(0) var<uniform> params: RooflineParams;
@group(0) @binding(1) var<storage, read> data: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> sums: array<u32>;

@compute @workgroup_size(64)
fn loads(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    var acc = vec4<u32>(0u);
    var at = i;
    for (var k = 0u; k < params.iterations; k++) {
        let first = (at & params.mask) * WINDOW_VEC4;
        for (var j = 0u; j < WINDOW_VEC4; j++) {
            acc += data[first + j];
        }
        at += params.stride;
    }
    sums[i] = acc.x + acc.y + acc.z + acc.w;
}

@compute @workgroup_size(64)
fn fmas(@builtin(global_invocation_id) gid: vec3<u32>) {
    let m = vec4<f32>(params.one);
    // Eight chains of vec4, each taking UNROLL steps an iteration: 32
    // independent FMAs cover the latency on a GPU and on a CPU adapter
    // (where each component is a SIMD register), and 128 per iteration
    // make the loop's own cost small (fewer chains or steps read up to
    // 1.5x slower on lavapipe).
    // Chain j starts at j and gains 1 per step: exact in f32 while below
    // 2^24, so the host knows the sum.
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(1.0);
    var a2 = vec4<f32>(2.0);
    var a3 = vec4<f32>(3.0);
    var a4 = vec4<f32>(4.0);
    var a5 = vec4<f32>(5.0);
    var a6 = vec4<f32>(6.0);
    var a7 = vec4<f32>(7.0);
    for (var k = 0u; k < params.iterations; k++) {
        for (var u = 0u; u < UNROLL; u++) {
            a0 = fma(a0, m, m);
            a1 = fma(a1, m, m);
            a2 = fma(a2, m, m);
            a3 = fma(a3, m, m);
            a4 = fma(a4, m, m);
            a5 = fma(a5, m, m);
            a6 = fma(a6, m, m);
            a7 = fma(a7, m, m);
        }
    }
    let s = (a0 + a1) + (a2 + a3) + (a4 + a5) + (a6 + a7);
    sums[gid.x] = u32(s.x + s.y + s.z + s.w);
}
