// composite: the display's render pass. The 3D view (probe and needle meshes
// with simple lighting, translucent anatomy, the live B-mode as a plane in
// the probe's image plane) and the 2D view (the same B-mode as a scanner
// shows it, with overlays) are drawn into one colour target.
// Host: src/render/compositor.rs. No CPU twin: the geometry that decides
// where things land is tested on the host side (tests/render.rs), the pixels
// by golden images.
//
// Three pipelines share this file:
//   vs_mesh / fs_mesh       lit triangles, world coordinates (metres)
//   vs_image / fs_image     the B-mode quad: 3D plane or 2D panel
//   vs_overlay / fs_overlay flat-coloured 2D triangles in target pixels

// Keep in sync with FrameUniform in src/render/compositor.rs.
struct FrameUniform {
    view_proj: mat4x4<f32>,
    // xyz: direction toward the light (world), w: ambient term.
    light: vec4<f32>,
    // Target size in pixels (overlays are given in pixels).
    target_size: vec2<f32>,
    _pad0: f32,
    _pad1: f32,
}

// Keep in sync with ImageUniform in src/render/compositor.rs.
struct ImageUniform {
    // Unit square (u along the image columns, v along the rows, both 0..1
    // from the first to the last pixel centre) to clip space.
    clip_from_uv: mat4x4<f32>,
    // Display image size in pixels.
    width: u32,
    height: u32,
    // Dynamic range (dB) the image chain compressed to.
    chain_range_db: f32,
    // Display controls: gain added to every pixel (dB), dynamic range shown.
    gain_db: f32,
    range_db: f32,
    // 1 when the tracking of the probe is lost: the image is greyed.
    dim: f32,
    // Opacity of the plane inside the sector.
    opacity: f32,
    _pad0: f32,
    // Time-gain compensation, dB, at the centres of four depth bands.
    tgc: vec4<f32>,
}

@group(0) @binding(0) var<uniform> frame: FrameUniform;

// ---- meshes

struct MeshIn {
    @location(0) position: vec3<f32>,
    @location(1) normal: vec3<f32>,
    @location(2) color: vec4<f32>,
}

struct MeshOut {
    @builtin(position) clip: vec4<f32>,
    @location(0) normal: vec3<f32>,
    @location(1) color: vec4<f32>,
}

@vertex
fn vs_mesh(v: MeshIn) -> MeshOut {
    var o: MeshOut;
    o.clip = frame.view_proj * vec4<f32>(v.position, 1.0);
    o.normal = v.normal;
    o.color = v.color;
    return o;
}

@fragment
fn fs_mesh(v: MeshOut) -> @location(0) vec4<f32> {
    // Two-sided Lambert: open surfaces (the bevel, tubes seen from inside)
    // are lit from either side.
    let n = normalize(v.normal);
    let diffuse = abs(dot(n, normalize(frame.light.xyz)));
    let shade = frame.light.w + (1.0 - frame.light.w) * diffuse;
    return vec4<f32>(v.color.rgb * shade, v.color.a);
}

// ---- the B-mode image

@group(1) @binding(0) var<uniform> image: ImageUniform;
// RGBA8 packed per pixel as scan_convert writes it: grey in the low three
// bytes, alpha (0 outside the sector) in the top one.
@group(1) @binding(1) var<storage, read> pixels: array<u32>;

struct ImageOut {
    @builtin(position) clip: vec4<f32>,
    @location(0) uv: vec2<f32>,
}

@vertex
fn vs_image(@builtin(vertex_index) i: u32) -> ImageOut {
    // Two triangles over the unit square.
    var corners = array<vec2<f32>, 6>(
        vec2<f32>(0.0, 0.0), vec2<f32>(1.0, 0.0), vec2<f32>(0.0, 1.0),
        vec2<f32>(1.0, 0.0), vec2<f32>(1.0, 1.0), vec2<f32>(0.0, 1.0),
    );
    let uv = corners[i];
    var o: ImageOut;
    o.clip = image.clip_from_uv * vec4<f32>(uv, 0.0, 1.0);
    o.uv = uv;
    return o;
}

// Grey (0..255) and alpha (0..1) of pixel (col, row).
fn texel(col: i32, row: i32) -> vec2<f32> {
    let c = clamp(col, 0, i32(image.width) - 1);
    let r = clamp(row, 0, i32(image.height) - 1);
    let p = pixels[u32(r) * image.width + u32(c)];
    return vec2<f32>(f32(p & 255u), f32(p >> 24u) / 255.0);
}

// TGC in dB at a fraction `v` of the displayed depth: linear between the
// centres of the four bands, flat beyond the outer ones.
fn tgc_at(v: f32) -> f32 {
    let x = clamp(v * 4.0 - 0.5, 0.0, 3.0);
    let i = min(u32(floor(x)), 2u);
    let t = x - f32(i);
    return mix(image.tgc[i], image.tgc[i + 1u], t);
}

@fragment
fn fs_image(v: ImageOut) -> @location(0) vec4<f32> {
    // Bilinear by hand: the image lives in a storage buffer (no copy into a
    // texture with padded rows). Alpha is interpolated too, so the sector
    // edge is smooth and weights of outside pixels are renormalised away.
    let p = v.uv * vec2<f32>(f32(image.width - 1u), f32(image.height - 1u));
    let f = floor(p);
    let t = p - f;
    let c = i32(f.x);
    let r = i32(f.y);
    let a = texel(c, r);
    let b = texel(c + 1, r);
    let d = texel(c, r + 1);
    let e = texel(c + 1, r + 1);
    let w = vec4<f32>((1.0 - t.x) * (1.0 - t.y) * a.y, t.x * (1.0 - t.y) * b.y, (1.0 - t.x) * t.y * d.y, t.x * t.y * e.y);
    let alpha = w.x + w.y + w.z + w.w;
    if (alpha < 0.5) {
        discard;
    }
    let grey = (w.x * a.x + w.y * b.x + w.z * d.x + w.w * e.x) / alpha;
    // Back to dB below the frame's maximum, then the display's own gain,
    // TGC and dynamic range: these controls act at display rate, even on a
    // frozen image.
    let db = grey / 255.0 * image.chain_range_db - image.chain_range_db + image.gain_db + tgc_at(v.uv.y);
    var level = clamp((db + image.range_db) / image.range_db, 0.0, 1.0);
    var rgb = vec3<f32>(level);
    if (image.dim > 0.5) {
        rgb = vec3<f32>(0.25 + 0.35 * level) * vec3<f32>(1.0, 0.9, 0.8);
    }
    return vec4<f32>(rgb, image.opacity);
}

// ---- 2D overlays

struct OverlayIn {
    @location(0) position: vec2<f32>,
    @location(1) color: vec4<f32>,
}

struct OverlayOut {
    @builtin(position) clip: vec4<f32>,
    @location(0) color: vec4<f32>,
}

@vertex
fn vs_overlay(v: OverlayIn) -> OverlayOut {
    var o: OverlayOut;
    let ndc = v.position / frame.target_size * 2.0 - 1.0;
    o.clip = vec4<f32>(ndc.x, -ndc.y, 0.0, 1.0);
    o.color = v.color;
    return o;
}

@fragment
fn fs_overlay(v: OverlayOut) -> @location(0) vec4<f32> {
    return v.color;
}
