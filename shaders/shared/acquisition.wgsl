// Probe elements and transmitted waves as the GPU sees them.
// Keep in sync with src/pipeline/das.rs (GpuElement, GpuWave); the layout
// test in tests/shaders.rs compares the two.

struct Element {
    // x, y, z in metres; w unused.
    position: vec4<f32>,
    // Unit normal (sin azimuth, 0, cos azimuth); w unused. The receive
    // aperture is a cone about this normal, not about global z, so convex
    // probes keep their flanks.
    normal: vec4<f32>,
}

const WAVE_PLANE: u32 = 0u;
const WAVE_DIVERGING: u32 = 1u;
const WAVE_FOCUSED: u32 = 2u;

struct Wave {
    // Plane: (sin azimuth, 0, cos azimuth, 0).
    // Diverging / focused: source or focus (x, y, z) and its distance to the origin.
    geometry: vec4<f32>,
    kind: u32,
    // UFF wave.delay in seconds (minus the time the wavefront passes the origin).
    delay: f32,
    // This wave's rows of the MUST virtual-element table (see das.wgsl).
    table_start: u32,
    table_len: u32,
}

// The UFF transmit distance t_tx(p)·c (see src/acquisition/mod.rs).
fn transmit_distance(w: Wave, p: vec3<f32>) -> f32 {
    if (w.kind == WAVE_PLANE) {
        return dot(p, w.geometry.xyz);
    }
    let r = distance(p, w.geometry.xyz);
    if (w.kind == WAVE_DIVERGING) {
        return r - w.geometry.w;
    }
    // Focused: the wave converges before the focus and diverges after it.
    return w.geometry.w + select(-r, r, p.z >= w.geometry.z);
}
