// scan_convert: a polar (radius, angle) image, or a Cartesian (z, x) one, to
// a Cartesian display image, bilinear, transparent outside the imaged region.
// Linear probes go through here too, so that every display is RGBA8 with the
// same meaning of alpha.
// CPU twin: src/reference/scan_convert.rs. Host: src/pipeline/scan_convert.rs.
//
// r32float is not filterable without an extra feature, so the image stays in
// a storage buffer and the interpolation is written out here.

// Keep in sync with ScanConvertParams in src/pipeline/scan_convert.rs.
struct ScanConvertParams {
    // Polar input: rows = radius, cols = angle (from +z toward +x) about origin.
    n_radius: u32,
    n_angle: u32,
    // Cartesian output, row-major, rows = z.
    width: u32,
    height: u32,
    origin: vec2<f32>,
    radius0: f32,
    radius_step: f32,
    angle0: f32,
    angle_step: f32,
    x0: f32,
    dx: f32,
    z0: f32,
    dz: f32,
    // Which frame of the input to convert.
    frame: u32,
    // 1: the input rows are z (radius0/radius_step) and its columns x
    // (angle0/angle_step), not radius and angle.
    cartesian: u32,
}

@group(0) @binding(0) var<uniform> params: ScanConvertParams;
// Grey levels 0..255, [frame][radius][angle].
@group(0) @binding(1) var<storage, read> polar: array<f32>;
// RGBA8 packed (grey, grey, grey, alpha); alpha 0 outside the sector.
@group(0) @binding(2) var<storage, read_write> display: array<u32>;

fn at(r: u32, a: u32) -> f32 {
    return polar[(params.frame * params.n_radius + r) * params.n_angle + a];
}

@compute @workgroup_size(8, 8)
fn scan_convert(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= params.width || gid.y >= params.height) {
        return;
    }
    let x = params.x0 + f32(gid.x) * params.dx;
    let z = params.z0 + f32(gid.y) * params.dz;
    let d = vec2<f32>(x, z) - params.origin;
    var fr = (length(d) - params.radius0) / params.radius_step;
    var fa = (atan2(d.x, d.y) - params.angle0) / params.angle_step;
    if (params.cartesian == 1u) {
        fr = (z - params.radius0) / params.radius_step;
        fa = (x - params.angle0) / params.angle_step;
    }
    let out = gid.y * params.width + gid.x;
    let max_r = f32(params.n_radius - 1u);
    let max_a = f32(params.n_angle - 1u);
    if (!(fr >= 0.0 && fr <= max_r && fa >= 0.0 && fa <= max_a)) {
        display[out] = 0u;
        return;
    }
    let r0 = min(u32(fr), params.n_radius - 2u);
    let a0 = min(u32(fa), params.n_angle - 2u);
    let tr = fr - f32(r0);
    let ta = fa - f32(a0);
    let top = mix(at(r0, a0), at(r0, a0 + 1u), ta);
    let bottom = mix(at(r0 + 1u, a0), at(r0 + 1u, a0 + 1u), ta);
    let g = u32(clamp(floor(mix(top, bottom, tr) + 0.5), 0.0, 255.0));
    display[out] = g | (g << 8u) | (g << 16u) | (255u << 24u);
}
