//! The display's render path (src/render/), headless on the test adapter:
//! where the geometry lands (2D needle tip, 3D image plane) and golden
//! images of both approaches.

mod common;

use std::path::{Path, PathBuf};

use glam::{DQuat, DVec3};
use sonoguide::gpu::timing::GpuTimer;
use sonoguide::gpu::GpuContext;
use sonoguide::render::{
    self, clip_to_target, image_plane_corners, plane_matrix, Display, Layout, Offscreen,
    PoseSource, Scripted, ToolPoses, FAST, HEADLESS_FORMAT,
};
use sonoguide::scene::pose::Pose;
use sonoguide::scene::Scene;

fn scene_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenes")
        .join(name)
}

fn display(ctx: &GpuContext, scene: &str) -> Display {
    display_with(ctx, scene, Box::new(Scripted))
}

fn display_with(ctx: &GpuContext, scene: &str, source: Box<dyn PoseSource>) -> Display {
    let mut d = Display::new(ctx, &scene_path(scene), FAST, HEADLESS_FORMAT, source).unwrap();
    d.controls.paused = true;
    d.controls.hide_timings = true;
    d
}

/// The GPU and a display of `scene` without anatomy (so nothing covers
/// the geometry under test), or `None` to skip.
fn geometry_display(scene: &str, source: Box<dyn PoseSource>) -> Option<(GpuContext, Display)> {
    let ctx = common::gpu()?;
    let mut d = display_with(&ctx, scene, source);
    d.controls.anatomy = false;
    Some((ctx, d))
}

const SIZE: (u32, u32) = (640, 360);

/// Show a synthetic display image (grey, alpha per pixel) instead of the
/// chain's, and render one frame of `size`.
fn render_synthetic(
    ctx: &GpuContext,
    d: &mut Display,
    size: (u32, u32),
    pixel: impl Fn(usize, usize) -> u32,
) -> Vec<u32> {
    let g = d.view().display.clone();
    let img: Vec<u32> = (0..g.height)
        .flat_map(|r| (0..g.width).map(move |c| (r, c)))
        .map(|(r, c)| pixel(c, r))
        .collect();
    let buf = ctx.storage_from("test.image", &img).unwrap();
    let poses = d.scene.scripted(d.time);
    d.show_image(ctx, buf, poses);
    let target = Offscreen::new(ctx, size, HEADLESS_FORMAT);
    let cmd = d.frame(ctx, &target.view, size).unwrap();
    ctx.queue.submit([cmd]);
    d.finish(ctx).unwrap();
    target.read(ctx).unwrap()
}

fn rgb(p: u32) -> [u8; 3] {
    [p as u8, (p >> 8) as u8, (p >> 16) as u8]
}

/// Centroid of the pixels in `region` (x0, y0, x1, y1) that `pick` selects.
fn centroid(
    px: &[u32],
    width: u32,
    region: [u32; 4],
    pick: impl Fn([u8; 3]) -> bool,
) -> Option<[f64; 2]> {
    let (mut sx, mut sy, mut n) = (0.0, 0.0, 0.0);
    for y in region[1]..region[3] {
        for x in region[0]..region[2] {
            if pick(rgb(px[(y * width + x) as usize])) {
                sx += x as f64 + 0.5;
                sy += y as f64 + 0.5;
                n += 1.0;
            }
        }
    }
    (n > 0.0).then(|| [sx / n, sy / n])
}

const GREY: u32 = 0xff00_0000;

#[test]
fn needle_tip_lands_on_the_pixel_the_calibration_predicts() {
    let Some((ctx, mut d)) = geometry_display("hip-anterior-longitudinal.toml", Box::new(Scripted))
    else {
        return;
    };
    let size = SIZE;
    let scene = d.scene.clone();
    let poses = scene.scripted(d.time);
    // Prediction, from the poses and calibrations alone: the tip in the
    // image frame, then the display grid's pixel of it.
    let image_to_ref = poses.probe.then(&scene.image_to_probe);
    let tip = image_to_ref.inverse().apply(scene.tip_of(&poses.needle));
    let g = d.view().display.clone();
    let (col, row) = ((tip.x - g.x0) / g.dx, (tip.z - g.z0) / g.dz);
    assert!(
        col > 0.0 && row > 0.0 && col < g.width as f64 && row < g.height as f64,
        "the tip should be in the image at t = {}",
        d.time
    );
    let layout = Layout::new(size, (g.width, g.height));
    let expect = layout.image_px_to_target([col, row]);

    // A black image with one white pixel where the tip is: the image quad
    // and the overlay must agree on where that pixel goes.
    let (c0, r0) = (col.round() as usize, row.round() as usize);
    let px = render_synthetic(&ctx, &mut d, size, |c, r| {
        if (c, r) == (c0, r0) {
            0xffff_ffff
        } else {
            GREY
        }
    });
    let panel = [size.0 / 2 + 1, 0, size.0, size.1];
    let found = centroid(&px, size.0, panel, |[r, g, b]| {
        r >= 250 && g >= 250 && b <= 5
    })
    .expect("tip marker (TIP_COLOR) drawn in the 2D view");
    assert!(
        (found[0] - expect[0] as f64).abs() <= 1.0 && (found[1] - expect[1] as f64).abs() <= 1.0,
        "tip marker at {found:?}, calibration predicts {expect:?}"
    );

    // The white pixel is hidden under the tip disc; render again with the
    // tip out of the way (needle withdrawn).
    // (A 3 × 3 block centred on it: the panel shows the image at about
    // half size, and one log-compressed pixel would be sampled away.)
    d.time = 0.0;
    let px = render_synthetic(&ctx, &mut d, size, |c, r| {
        if c.abs_diff(c0) <= 1 && r.abs_diff(r0) <= 1 {
            0xffff_ffff
        } else {
            GREY
        }
    });
    let blob_at = layout.image_px_to_target([c0 as f64, r0 as f64]);
    // Search a window around it: the depth scale and readouts are grey too.
    let (bx, by) = (blob_at[0] as u32, blob_at[1] as u32);
    let near = [bx - 8, by - 8, bx + 9, by + 9];
    let blob = centroid(&px, size.0, near, |[r, g, b]| r > 100 && r == g && g == b);
    if blob.is_none() {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("needle-tip-blob.png");
        sonoguide::io::png::write_rgba(&out, size.0 as usize, size.1 as usize, &px).unwrap();
        panic!(
            "the white pixel is not visible near {blob_at:?}; see {}",
            out.display()
        );
    }
    let blob = blob.unwrap();
    assert!(
        (blob[0] - blob_at[0] as f64).abs() <= 1.0 && (blob[1] - blob_at[1] as f64).abs() <= 1.0,
        "image pixel ({c0}, {r0}) drawn at {blob:?}, layout says {blob_at:?}"
    );
}

#[test]
fn image_plane_corners_follow_probe_pose_and_calibration() {
    let Some((ctx, mut d)) = geometry_display("hip-anterolateral.toml", Box::new(Scripted)) else {
        return;
    };
    let size = SIZE;
    // A calibration that is not the identity: 2 mm and 3° off.
    d.scene.image_to_probe = Pose {
        translation: DVec3::new(0.002, 0.001, -0.001),
        rotation: DQuat::from_rotation_y(3f64.to_radians()),
    };
    let scene = d.scene.clone();
    let probe = scene.scripted(d.time).probe;
    let g = d.view().display.clone();
    let corners = image_plane_corners(&scene, d.view(), &probe);
    let (x1, z1) = (
        g.x0 + (g.width - 1) as f64 * g.dx,
        g.z0 + (g.height - 1) as f64 * g.dz,
    );
    for (c, (x, z)) in corners
        .iter()
        .zip([(g.x0, g.z0), (x1, g.z0), (g.x0, z1), (x1, z1)])
    {
        // Image → probe (calibration) → reference (tracked pose), by hand.
        let in_probe = scene.image_to_probe.rotation * DVec3::new(x, 0.0, z)
            + scene.image_to_probe.translation;
        let expect = probe.rotation * in_probe + probe.translation;
        assert!((*c - expect).length() < 1e-9, "corner {c:?} vs {expect:?}");
    }
    let m = plane_matrix(&corners);
    for (uv, c) in [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0)]
        .iter()
        .zip(&corners)
    {
        assert!((m.transform_point3(DVec3::new(uv.0, uv.1, 0.0)) - *c).length() < 1e-9);
    }

    // Rendered: an all-white opaque image; its deep corners (the shallow
    // ones sit inside the probe's housing) land where the camera projects
    // the corners, ±1.5 px.
    let px = render_synthetic(&ctx, &mut d, size, |_, _| 0xffff_ffff);
    let layout = Layout::new(size, (g.width, g.height));
    let vp = d
        .camera
        .view_proj(layout.view_3d[2] as f64 / layout.view_3d[3] as f64);
    let proj: Vec<[f32; 2]> = corners
        .iter()
        .map(|c| clip_to_target(&layout, vp, *c))
        .collect();
    let centre = [
        proj.iter().map(|p| p[0]).sum::<f32>() / 4.0,
        proj.iter().map(|p| p[1]).sum::<f32>() / 4.0,
    ];
    let white: Vec<[f32; 2]> = (0..size.1)
        .flat_map(|y| (0..size.0 / 2).map(move |x| (x, y)))
        .filter(|&(x, y)| rgb(px[(y * size.0 + x) as usize]).iter().all(|&v| v >= 250))
        .map(|(x, y)| [x as f32 + 0.5, y as f32 + 0.5])
        .collect();
    assert!(
        white.len() > 1000,
        "the image plane is visible in the 3D view"
    );
    for &k in &[2usize, 3] {
        let dir = [proj[k][0] - centre[0], proj[k][1] - centre[1]];
        let far = white
            .iter()
            .copied()
            .max_by(|a, b| {
                (a[0] * dir[0] + a[1] * dir[1]).total_cmp(&(b[0] * dir[0] + b[1] * dir[1]))
            })
            .unwrap();
        let err = ((far[0] - proj[k][0]).powi(2) + (far[1] - proj[k][1]).powi(2)).sqrt();
        assert!(
            err <= 1.5,
            "corner {k}: drawn at {far:?}, projected at {:?} ({err:.2} px)",
            proj[k]
        );
    }
}

/// Compare with `tests/golden/NAME.png` with a perceptual tolerance. A
/// pixel misses only when both tests fail: (1) its luma is more than 24
/// levels from the golden's at the same place and at every neighbour (text
/// and edges may move by a pixel across drivers); (2) the 7 × 7 local mean
/// of luma differs by more than 24 (a different speckle realisation, e.g.
/// after a change in the scatterer generator, moves single bright spots but
/// not the local brightness; a missing needle, mesh, label or image does).
/// At most 0.5 % of pixels may miss. On failure `-actual` and `-difference`
/// PNGs are written beside the golden; `SONOGUIDE_BLESS=1` re-blesses.
///
/// The goldens were set on Mesa lavapipe: "llvmpipe (LLVM 15.0.6, 256
/// bits)", Mesa 22.3.6, Vulkan backend (CI's adapter).
fn check_golden(name: &str, size: (u32, u32), px: &[u32]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let path = dir.join(format!("{name}.png"));
    let (w, h) = (size.0 as usize, size.1 as usize);
    if std::env::var("SONOGUIDE_BLESS").is_ok_and(|v| v == "1") || !path.exists() {
        sonoguide::io::png::write_rgba(&path, w, h, px).unwrap();
        eprintln!("blessed {}", path.display());
        return;
    }
    let golden = read_png(&path);
    assert_eq!(
        golden.len(),
        px.len(),
        "{}: size changed; re-bless with SONOGUIDE_BLESS=1",
        path.display()
    );
    let luma = |img: &[u32]| -> Vec<f32> {
        img.iter()
            .map(|&p| {
                0.299 * (p & 255) as f32
                    + 0.587 * ((p >> 8) & 255) as f32
                    + 0.114 * ((p >> 16) & 255) as f32
            })
            .collect()
    };
    let (a, g) = (luma(px), luma(&golden));
    let window = |y: usize, x: usize, r: usize| {
        (y.saturating_sub(r)..(y + r + 1).min(h)).flat_map(move |yy| {
            (x.saturating_sub(r)..(x + r + 1).min(w)).map(move |xx| yy * w + xx)
        })
    };
    let mean = |img: &[f32], y: usize, x: usize| {
        let (s, n) = window(y, x, 3).fold((0.0, 0.0), |(s, n), i| (s + img[i], n + 1.0));
        s / n
    };
    let mut diff = vec![0u32; w * h];
    let mut bad = 0usize;
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let near = window(y, x, 1)
                .map(|j| (a[i] - g[j]).abs())
                .fold(f32::INFINITY, f32::min);
            if near > 24.0 && (mean(&a, y, x) - mean(&g, y, x)).abs() > 24.0 {
                bad += 1;
                diff[i] = 0xff00_00ff;
            } else {
                diff[i] = 0xff00_0000 | ((g[i] as u32 / 3) * 0x010101);
            }
        }
    }
    let frac = bad as f64 / (w * h) as f64;
    if frac > 0.005 {
        sonoguide::io::png::write_rgba(&dir.join(format!("{name}-actual.png")), w, h, px).unwrap();
        sonoguide::io::png::write_rgba(&dir.join(format!("{name}-difference.png")), w, h, &diff)
            .unwrap();
        panic!("{name}: {:.2} % of pixels differ from {} (tolerance 0.5 %); see {name}-actual.png and {name}-difference.png; SONOGUIDE_BLESS=1 re-blesses", frac * 100.0, path.display());
    }
}

fn read_png(path: &Path) -> Vec<u32> {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    assert_eq!(
        info.color_type,
        png::ColorType::Rgba,
        "{}: expected RGBA",
        path.display()
    );
    bytemuck::cast_slice::<u8, u32>(&buf[..info.buffer_size()]).to_vec()
}

/// The scripted insertion with the probe's tracking lost.
struct ProbeLost;

impl PoseSource for ProbeLost {
    fn poses(&mut self, scene: &Scene, time: f64) -> ToolPoses {
        ToolPoses {
            poses: scene.scripted(time),
            probe_tracked: false,
            needle_tracked: true,
        }
    }
}

#[test]
fn lost_tracking_is_shown_and_the_image_greyed() {
    let Some((ctx, mut d)) =
        geometry_display("hip-anterior-longitudinal.toml", Box::new(ProbeLost))
    else {
        return;
    };
    let px = render_synthetic(&ctx, &mut d, SIZE, |_, _| 0xff80_8080);
    // The banner (red text) in the 3D view.
    let red = px
        .iter()
        .enumerate()
        .filter(|(i, p)| (*i as u32 % SIZE.0) < SIZE.0 / 2 && rgb(**p) == [255, 64, 51])
        .count();
    assert!(red > 50, "no PROBE TRACKING LOST banner ({red} red pixels)");
    // The 2D image is tinted (grey levels shown warm), not grey.
    let layout = Layout::new(SIZE, (d.view().display.width, d.view().display.height));
    let c = layout.image_px_to_target([
        d.view().display.width as f64 / 2.0,
        d.view().display.height as f64 * 0.8,
    ]);
    let [r, g, b] = rgb(px[(c[1] as u32 * SIZE.0 + c[0] as u32) as usize]);
    assert!(
        r > b + 10 && g > b,
        "image not greyed-out/tinted while tracking is lost: {:?}",
        [r, g, b]
    );
}

#[test]
fn golden_composites_of_both_approaches() {
    let Some(ctx) = common::gpu() else { return };
    let size = SIZE;
    for (scene, name) in [
        (
            "hip-anterior-longitudinal.toml",
            "display-anterior-longitudinal",
        ),
        ("hip-anterolateral.toml", "display-anterolateral"),
    ] {
        let mut d = display(&ctx, scene);
        let px = render::render_frame(&ctx, &mut d, size).unwrap();
        assert!(d.info().is_some(), "{name}: the chain produced an image");
        check_golden(name, size, &px);
    }
}

/// A headless render draws the image it made, with that image's timings:
/// its second frame (the one that shows them) composites only, even where
/// the preset runs the chain every frame, as a GPU runs `quality`.
/// (Before, that frame made a second image, which kept the tissue, and
/// `view --headless` printed its times as those of the tissue simulated.)
#[test]
fn a_headless_render_makes_one_image() {
    let Some(ctx) = common::gpu() else { return };
    let unpaced = FAST.on_adapter(wgpu::DeviceType::DiscreteGpu);
    let mut d = Display::new(
        &ctx,
        &scene_path("hip-anterolateral.toml"),
        unpaced,
        HEADLESS_FORMAT,
        Box::new(Scripted),
    )
    .unwrap();
    d.controls.paused = true;
    render::render_frame(&ctx, &mut d, SIZE).unwrap();
    assert_eq!((d.images, d.tissue_images), (1, 1));
}

/// A frame of many scopes (a simulation of many batches) is timed whole:
/// past the 32nd scope, the query set's segments are resolved as they fill
/// and reused. Before, scopes past the 32nd went untimed and `simulate`'s
/// phases summed a quarter of its run.
#[test]
fn a_frame_of_many_scopes_is_timed_whole() {
    let Some(ctx) = common::gpu() else { return };
    if !ctx.has_timestamps() {
        eprintln!("SKIPPED: no timestamp queries");
        return;
    }
    let mut timer = GpuTimer::new(&ctx, sonoguide::gpu::timing::Fallback::Skip);
    let buffer = ctx.storage("test.clear", 16 << 20).unwrap();
    let n = 100;
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    timer.begin_frame(7);
    for k in 0..n {
        // Every tenth scope clears 16 MiB; the others are empty.
        let label = if k % 10 == 9 { "busy" } else { "idle" };
        timer.scope(&ctx, &mut enc, label, |enc| {
            if label == "busy" {
                enc.clear_buffer(&buffer, 0, None);
            }
        });
    }
    timer.finish(&ctx, &mut enc);
    let t = std::time::Instant::now();
    ctx.queue.submit([enc.finish()]);
    timer.submitted();
    let frames = timer.wait(&ctx).unwrap();
    let host = t.elapsed().as_secs_f64();
    let f = &frames[0];
    assert_eq!((f.frame, f.scopes.len(), f.untimed), (7, n, 0));
    let busy: Vec<f64> = f
        .scopes
        .iter()
        .filter(|(l, _)| l == "busy")
        .map(|(_, t)| *t)
        .collect();
    assert_eq!(busy.len(), 10);
    // Every busy scope, in every segment, is timed like the others (the
    // first clear also touches the memory: left out), and all the scopes
    // together fit in the submission's host time.
    let mut sorted = busy[1..].to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    assert!(
        busy[1..]
            .iter()
            .all(|t| *t > median / 4.0 && *t < median * 4.0),
        "{busy:?}"
    );
    let sum: f64 = f.scopes.iter().map(|(_, t)| t).sum();
    assert!(sum <= host * 1.05 + 1e-3, "scopes {sum} s, host {host} s");
}

/// On a software adapter, the per-stage timestamps of the display's frame
/// loop (the window's status line) agree with the host clock. lavapipe
/// takes a timestamp when the next command that flushes it runs, so
/// without the timer's trailing markers (`gpu::timing`) `das` read
/// 0.04–0.2 ms here while the host clock reads ~40 ms. Skipped on GPUs,
/// where a host-clock stage time is mostly submission overhead.
#[test]
fn frame_loop_stage_times_agree_with_the_host_clock() {
    let Some(ctx) = common::gpu() else { return };
    if ctx.info.device_type != wgpu::DeviceType::Cpu || !ctx.has_timestamps() {
        eprintln!("SKIPPED: this checks a software adapter's timestamps");
        return;
    }
    let path = scene_path("hip-anterolateral.toml");
    let mut d = Display::new(&ctx, &path, FAST, HEADLESS_FORMAT, Box::new(Scripted)).unwrap();
    d.controls.paused = true;
    let target = Offscreen::new(&ctx, SIZE, HEADLESS_FORMAT);
    // The window's loop: the simulation spread over frames, then a frame
    // with the rest of the chain and the composite.
    let mut frames = 0;
    let das = loop {
        let cmd = d.frame(&ctx, &target.view, SIZE).unwrap();
        ctx.queue.submit([cmd]);
        d.finish(&ctx).unwrap();
        if let Some((_, t)) = d.stage_times.iter().find(|(l, _)| l == "das") {
            break *t;
        }
        frames += 1;
        assert!(frames < 500, "no image after {frames} frames");
    };
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("wall.png");
    let (_, times) = render::render_headless(&ctx, &path, FAST, SIZE, &png, true).unwrap();
    let wall = times[0]
        .stage_times
        .iter()
        .find(|(l, _)| l == "das")
        .expect("das timed on the host clock")
        .1;
    assert!(
        das > 0.3 * wall && das < 3.0 * wall,
        "das: {:.2} ms from timestamps in the frame loop, {:.2} ms on the host clock",
        das * 1e3,
        wall * 1e3
    );
}

#[test]
fn a_tracker_plugs_in_as_a_pose_source() {
    // The tracking module's scripted source stands in for a live tracker:
    // the display sees the scene's tools, tracked, at the tracker's time.
    let scene = Scene::load(&scene_path("hip-anterolateral.toml")).unwrap();
    let mut source = render::Tracked(Box::new(sonoguide::tracking::ScriptedSource::new(
        scene.clone(),
    )));
    let got = source.poses(&scene, 0.0);
    assert!(got.probe_tracked && got.needle_tracked);
    let want = scene.scripted(got.poses.time);
    assert!((got.poses.probe.translation - want.probe.translation).length() < 1e-9);
    assert!((scene.tip_of(&got.poses.needle) - scene.tip_of(&want.needle)).length() < 1e-9);
}

#[test]
fn every_control_acts_and_the_frame_still_renders() {
    use sonoguide::render::Action;
    let Some(ctx) = common::gpu() else { return };
    let mut d = display(&ctx, "hip-anterior-longitudinal.toml");
    let depth = d.scene.depth;
    // Deeper than the scene's file records: nothing to do, and said so.
    assert!(d.notice().is_none());
    d.apply(&ctx, Action::Depth(1.0)).unwrap();
    assert_eq!(d.scene.depth, depth);
    assert!(
        d.notice().is_some_and(|n| n.contains("deepest")),
        "{:?}",
        d.notice()
    );
    for a in [
        Action::Gain(3.0),
        Action::Range(-5.0),
        Action::TgcBand(2),
        Action::Tgc(6.0),
        Action::Freeze,
        Action::Step,
        Action::ResetCamera,
        Action::Anatomy,
        Action::Help,
        Action::Depth(-2.0),
    ] {
        d.apply(&ctx, a).unwrap();
    }
    let c = &d.controls;
    assert_eq!(
        (c.gain_db, c.range_db, c.tgc, c.frozen, c.anatomy, c.help),
        (3.0, 55.0, [0.0, 0.0, 6.0, 0.0], true, false, true)
    );
    assert!(
        (d.scene.depth - (depth - 0.02)).abs() < 1e-9,
        "depth control"
    );
    // Frozen, but the depth change asks for a new image: it comes.
    let px = render::render_frame(&ctx, &mut d, SIZE).unwrap();
    assert!(d.info().is_some());
    // The help overlay: its keys are written in a colour nothing else uses.
    let keys = px
        .iter()
        .filter(|p| rgb(**p) == [255, 230, 128] || rgb(**p) == [255, 229, 127])
        .count();
    assert!(keys > 200, "help overlay's key names ({keys} px)");
    d.apply(&ctx, Action::SwitchApproach).unwrap();
    assert!(
        d.scene_path.ends_with("scenes/hip-anterolateral.toml"),
        "{}",
        d.scene_path.display()
    );
    assert!(d.info().is_none(), "a new approach starts without an image");
    d.apply(&ctx, Action::Quit).unwrap();
    assert!(d.quit);
}

/// The switch-approach key finds the other approach beside the current
/// scene, wherever that is, and the built-in one otherwise: from a copy of
/// the scenes in another folder it once looked for `../scenes/` and failed.
#[test]
fn the_other_approach_is_found_beside_the_scene_or_built_in() {
    use sonoguide::render::other_approach;
    use sonoguide::scene::Approach;
    let dir = tempfile::tempdir().unwrap();
    let lateral = dir.path().join("hip-anterolateral.toml");
    std::fs::copy(scene_path("hip-anterolateral.toml"), &lateral).unwrap();
    let longitudinal = dir.path().join("hip-anterior-longitudinal.toml");
    // No copy of the other approach beside it: the built-in one.
    let other = other_approach(&lateral, Approach::Anterolateral);
    assert_eq!(other, Path::new("scenes/hip-anterior-longitudinal.toml"));
    let scene = Scene::load(&other).unwrap();
    assert_eq!(scene.approach, Approach::AnteriorLongitudinal);
    // A copy beside it is taken, whatever the folder is called.
    std::fs::copy(scene_path("hip-anterior-longitudinal.toml"), &longitudinal).unwrap();
    assert_eq!(
        other_approach(&lateral, Approach::Anterolateral),
        longitudinal
    );
    assert_eq!(
        other_approach(&longitudinal, Approach::AnteriorLongitudinal),
        lateral
    );
    // A scene of any name switches by its approach.
    let mine = dir.path().join("my-patient.toml");
    assert_eq!(
        other_approach(&mine, Approach::AnteriorLongitudinal),
        lateral
    );
}

/// The display keeps the tissue's RF while the probe is held and simulates
/// only the needle (`Tissue::Kept`): the image equals one simulated whole
/// (grey levels within 1, f32 rounding of the summed RF), for the image
/// that simulated the tissue (here spread over steps, as on lavapipe) and
/// for one that reused it with the needle further in; a probe moved past
/// the tolerance does not reuse it.
#[test]
fn a_held_probe_keeps_the_tissue_and_the_image_is_the_same() {
    use sonoguide::scene::render::{needle_at, tissue_at, Renderer, Tissue};
    let Some(ctx) = common::gpu() else { return };
    let mut scene = render::load_scene(Path::new(render::SCENES[0]), &FAST).unwrap();
    // Sparse speckle: the bone's and the needle's scatterers remain.
    scene.scatterer_density = 0.005e9;
    let r = Renderer::try_new(&ctx, &scene, 160, 60.0).unwrap();
    let at = |s: f64| scene.scripted(s * scene.duration);
    let (a, mut b) = (at(0.7), at(1.0));
    // The probe held where it was; the needle went on.
    b.probe = a.probe;
    let tissue = tissue_at(&scene, &r.view, &a.probe);
    let image = |tissue: Tissue, needle: &[sonoguide::sim::Scatterer], batch, units| {
        let mut job = Some(r.start(&ctx, tissue, needle, batch).unwrap());
        let rf = loop {
            let mut enc = ctx.device.create_command_encoder(&Default::default());
            let rf = r.step(&ctx, &mut enc, &mut GpuTimer::off(), &mut job, units);
            ctx.queue.submit([enc.finish()]);
            if let Some(rf) = rf {
                break rf;
            }
        };
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        let out = r.finish(&ctx, &mut enc, &mut GpuTimer::off(), rf).unwrap();
        ctx.queue.submit([enc.finish()]);
        let g = &r.view.display;
        ctx.read_buffer::<u32>(&out, g.width * g.height).unwrap()
    };
    let whole = |needle: &[sonoguide::sim::Scatterer]| {
        let all: Vec<_> = tissue.iter().chain(needle).copied().collect();
        image(Tissue::None, &all, None, usize::MAX)
    };
    let same = |x: &[u32], y: &[u32], what: &str| {
        let differ = x.iter().zip(y).filter(|(p, q)| p != q).count();
        let most = x
            .iter()
            .zip(y)
            .map(|(p, q)| (*p as u8).abs_diff(*q as u8))
            .max()
            .unwrap();
        eprintln!(
            "{what}: {differ} of {} pixels differ, by at most {most} grey levels",
            x.len()
        );
        assert!(
            most <= 1 && differ * 1000 <= x.len(),
            "{what}: {differ} pixels differ, by up to {most}"
        );
    };
    let (na, nb) = (needle_at(&scene, &a), needle_at(&scene, &b));
    assert!(!na.is_empty() && nb.len() > na.len(), "the needle goes in");
    assert_eq!(r.tissue_kept(&a.probe, 1.0), None, "nothing kept yet");
    let first = image(Tissue::New(&tissue, a.probe), &na, Some(2000), 1);
    same(&first, &whole(&na), "tissue simulated, in steps");
    assert_eq!(r.tissue_kept(&a.probe, 0.0), Some(tissue.len()));
    let mut moved = a.probe;
    moved.translation.x += 2.0 * render::TISSUE_TOLERANCE;
    assert_eq!(r.tissue_kept(&moved, render::TISSUE_TOLERANCE), None);
    let second = image(Tissue::Kept, &nb, None, usize::MAX);
    same(&second, &whole(&nb), "tissue kept, needle further in");
    assert!(first != second, "the needle moved in the image");

    // The probe moved: its tissue is renewed behind the images, a unit a
    // step. Until the last unit, images add their needle to the old
    // tissue; from then on, to the new.
    let moved_tissue = tissue_at(&scene, &r.view, &moved);
    r.renew(
        &ctx,
        &moved_tissue,
        moved,
        Some(moved_tissue.len().div_ceil(4)),
    )
    .unwrap();
    let mut steps = 0;
    loop {
        assert!(r.renewing());
        assert_eq!(
            r.tissue_kept(&moved, 0.0),
            None,
            "renewed before its last unit"
        );
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        let done = r.step_renewal(&ctx, &mut enc, &mut GpuTimer::off(), 1);
        ctx.queue.submit([enc.finish()]);
        steps += 1;
        if done {
            break;
        }
        if steps == 1 {
            let during = image(Tissue::Kept, &nb, None, usize::MAX);
            same(&during, &second, "old tissue while the new is simulated");
        }
    }
    // 4 batches keeping their own taps: two units of transmits, two of
    // receives.
    assert_eq!(steps, 4, "units of the renewal");
    assert!(!r.renewing());
    assert_eq!(r.tissue_kept(&moved, 0.0), Some(moved_tissue.len()));
    let renewed = image(Tissue::Kept, &nb, None, usize::MAX);
    let all: Vec<_> = moved_tissue.iter().chain(&nb).copied().collect();
    same(
        &renewed,
        &image(Tissue::None, &all, None, usize::MAX),
        "renewed tissue",
    );
    assert!(renewed != second, "the tissue moved in the image");
}

/// The scripted needle going in under a probe held at one pose, then
/// moved by `moved` (shared with the test) metres along x.
struct HeldProbe(std::sync::Arc<std::sync::Mutex<f64>>);

impl PoseSource for HeldProbe {
    fn poses(&mut self, scene: &Scene, time: f64) -> ToolPoses {
        let mut poses = scene.scripted(time);
        poses.probe = scene.scripted(0.0).probe;
        poses.probe.translation.x += *self.0.lock().unwrap();
        ToolPoses {
            poses,
            probe_tracked: true,
            needle_tracked: true,
        }
    }
}

/// A display of the scripted needle under a [`HeldProbe`] (moved through
/// `moved`), its chain run every frame in one piece (no pacing), headless.
struct HeldProbeRun {
    d: Display,
    moved: std::sync::Arc<std::sync::Mutex<f64>>,
    target: Offscreen,
}

impl HeldProbeRun {
    fn new(ctx: &GpuContext, renew_frames: usize) -> HeldProbeRun {
        let moved = std::sync::Arc::new(std::sync::Mutex::new(0.0));
        let mut d = display_with(
            ctx,
            "hip-anterior-longitudinal.toml",
            Box::new(HeldProbe(moved.clone())),
        );
        d.preset = render::Preset {
            min_interval: std::time::Duration::ZERO,
            refresh: std::time::Duration::ZERO,
            sim_batch: None,
            renew_frames,
            ..d.preset
        };
        d.controls.paused = false;
        d.wait_prepared = true;
        let target = Offscreen::new(ctx, SIZE, HEADLESS_FORMAT);
        HeldProbeRun { d, moved, target }
    }

    /// The probe moved past the tolerance.
    fn move_probe(&self) {
        *self.moved.lock().unwrap() = 2.0 * render::TISSUE_TOLERANCE;
    }

    fn frame(&mut self, ctx: &GpuContext) {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let cmd = self.d.frame(ctx, &self.target.view, SIZE).unwrap();
        ctx.queue.submit([cmd]);
        self.d.finish(ctx).unwrap();
    }
}

/// The display keeps the tissue while the probe is held: of the images a
/// moving needle makes, only the first simulates the tissue, and (without
/// `renew_frames`) a probe moved past the tolerance makes the next one
/// simulate it again.
#[test]
fn the_display_simulates_the_tissue_again_only_when_the_probe_moves() {
    let Some(ctx) = common::gpu() else { return };
    let mut run = HeldProbeRun::new(&ctx, 0);
    for _ in 0..4 {
        run.frame(&ctx);
    }
    assert!(run.d.images >= 3, "{} images", run.d.images);
    assert_eq!(run.d.tissue_images, 1, "{} images", run.d.images);
    run.move_probe();
    let before = run.d.images;
    while run.d.images < before + 2 {
        run.frame(&ctx);
    }
    assert_eq!(run.d.tissue_images, 2);
}

/// With `renew_frames`, a probe moved past the tolerance renews the tissue
/// behind the images: every frame still delivers an image (its needle on
/// the old tissue), and the new tissue takes over after its frames.
#[test]
fn a_moved_probe_renews_the_tissue_behind_the_images() {
    let Some(ctx) = common::gpu() else { return };
    let mut run = HeldProbeRun::new(&ctx, 4);
    for _ in 0..3 {
        run.frame(&ctx);
    }
    assert_eq!(
        run.d.tissue_images, 1,
        "the first image simulates its tissue"
    );
    run.move_probe();
    let before = run.d.images;
    let mut frames = 0;
    while run.d.renewals < 1 {
        run.frame(&ctx);
        assert!(run.d.renewing() || run.d.renewals == 1);
        frames += 1;
        assert!(frames <= 60, "no renewal after {frames} frames");
    }
    // The worker builds the scatterers while frames go on; then 4 units.
    assert!(frames >= 4, "renewed in {frames} frames");
    assert_eq!(run.d.images - before, frames, "an image every frame");
    // Renewed where the probe is now: held there, no renewal follows, and
    // no image simulated its tissue after the first.
    for _ in 0..8 {
        run.frame(&ctx);
    }
    assert_eq!((run.d.tissue_images, run.d.renewals), (1, 1));

    // The probe moves again and the depth changes while its renewal is
    // under way: the plans change, the renewal and the kept tissue go, and
    // the next image simulates its tissue itself.
    *run.moved.lock().unwrap() = 4.0 * render::TISSUE_TOLERANCE;
    run.frame(&ctx);
    run.frame(&ctx);
    assert!(run.d.renewing());
    run.d
        .apply(&ctx, sonoguide::render::Action::Depth(-1.0))
        .unwrap();
    assert!(!run.d.renewing());
    let before = run.d.images;
    while run.d.images < before + 2 {
        run.frame(&ctx);
    }
    assert_eq!((run.d.tissue_images, run.d.renewals), (2, 1));
}
