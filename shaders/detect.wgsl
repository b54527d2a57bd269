// detect: envelope, gain and log compression of beamformed IQ to grey levels.
// CPU twin: src/reference/detect.rs. Host: src/pipeline/detect.rs.
//
// Two entry points run in order on the same bindings: `envelope`, which
// also reduces the envelopes to their maximum (the reference level: MUST
// normalises by the maximum over all frames, so it has to be a reduction),
// and `compress`.

// Keep in sync with DetectParams in src/pipeline/detect.rs.
struct DetectParams {
    n: u32,
    // 1: use `reference` as 0 dB instead of the measured maximum.
    fixed_reference: u32,
    // Linear amplitude gain applied to the envelope.
    gain: f32,
    dynamic_range_db: f32,
    reference: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: DetectParams;
@group(0) @binding(1) var<storage, read> iq: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> env: array<f32>;
// Bits of the largest envelope: non-negative floats order like their bits.
@group(0) @binding(3) var<storage, read_write> max_bits: atomic<u32>;
// Grey levels 0..255 (integral values), as MATLAB's uint8(255*(dB+DR)/DR).
@group(0) @binding(4) var<storage, read_write> grey: array<f32>;

// Envelopes one `envelope` invocation computes: a workgroup covers a tile
// of 256 × ENVELOPE_PER_INVOCATION samples, invocation lid taking samples
// lid, lid + 256, ... (neighbouring invocations read neighbouring samples).
// Folding the maximum in registers first leaves one tree reduction (eight
// barriers) per 4 096 samples instead of per 256: on lavapipe a barrier
// splits the shader into pieces that every invocation runs in turn.
// Keep in sync with ENVELOPE_PER_INVOCATION in src/pipeline/detect.rs.
const ENVELOPE_PER_INVOCATION: u32 = 16u;

var<workgroup> partial: array<u32, 256>;

// Envelope (gain × |IQ|) and, folded in the same pass, its maximum over
// all samples (the bits of the largest into `max_bits`).
@compute @workgroup_size(256)
fn envelope(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let tile = (wid.x + wid.y * nwg.x) * 256u * ENVELOPE_PER_INVOCATION;
    var v = 0u;
    for (var k = 0u; k < ENVELOPE_PER_INVOCATION; k++) {
        let i = tile + k * 256u + lid;
        if (i < params.n) {
            let e = params.gain * length(iq[i]);
            env[i] = e;
            // NaN or negative never wins.
            if (e > 0.0) {
                v = max(v, bitcast<u32>(e));
            }
        }
    }
    partial[lid] = v;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            partial[lid] = max(partial[lid], partial[lid + stride]);
        }
        workgroupBarrier();
    }
    if (lid == 0u && partial[0] != 0u) {
        atomicMax(&max_bits, partial[0]);
    }
}

@compute @workgroup_size(256)
fn compress(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= params.n) {
        return;
    }
    var reference = params.reference;
    if (params.fixed_reference == 0u) {
        reference = bitcast<f32>(atomicLoad(&max_bits));
    }
    let e = env[i];
    if (!(e > 0.0) || !(reference > 0.0)) {
        grey[i] = 0.0;
        return;
    }
    let db = 20.0 * log2(e / reference) * 0.30102999566398120;
    let level = 255.0 * (db + params.dynamic_range_db) / params.dynamic_range_db;
    // MATLAB's uint8(): round half away from zero, then saturate.
    grey[i] = clamp(floor(level + 0.5), 0.0, 255.0);
}
