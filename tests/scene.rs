//! Scene files: both hip approaches load and are anatomically sane, and
//! bad scene files (unknown field, missing units, target outside the body,
//! needle shorter than the path) give errors with line numbers.

mod common;

use std::path::Path;

use glam::DVec3;
use sonoguide::scene::{Approach, Scene};

fn scenes_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenes")
}

fn base() -> String {
    std::fs::read_to_string(scenes_dir().join("hip-anterior-longitudinal.toml")).unwrap()
}

fn parse(text: &str) -> Result<Scene, String> {
    Scene::parse(text, Path::new("test.toml")).map_err(|e| e.to_string())
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).expect(needle) + 1
}

#[test]
fn both_approaches_load_with_sane_geometry() {
    for (file, approach) in [
        (
            "hip-anterior-longitudinal.toml",
            Approach::AnteriorLongitudinal,
        ),
        ("hip-anterolateral.toml", Approach::Anterolateral),
    ] {
        let s = Scene::load(&scenes_dir().join(file)).unwrap();
        assert_eq!(s.approach, approach);
        // The femoral head is 45–50 mm across.
        assert!((0.045..=0.050).contains(&(2.0 * s.hip.head_radius)));
        // Target in soft tissue under the skin, within reach of the needle.
        assert!(!s.hip.is_bone(s.target) && s.target.z > -s.hip.skin_depth);
        assert!((s.target - s.entry).length() < s.needle.length);
        // The needle reaches the target at the end of the trajectory.
        let (_, needle, inserted) = s.poses_at(s.duration);
        assert!(
            (s.tip_of(&needle) - s.target).length() < 2e-3,
            "tip {:?} target {:?}",
            s.tip_of(&needle),
            s.target
        );
        assert!((inserted - (s.target - s.entry).length()).abs() < 1e-9);
        // The path keeps clear of the femoral vessels and nerve.
        for t in &s.hip.tubes {
            let closest = (0..=50)
                .map(|i| t.distance(s.entry.lerp(s.target, i as f64 / 50.0)) - t.radius)
                .fold(1.0, f64::min);
            assert!(closest > 0.005, "{file}: path {closest} m from {}", t.name);
        }
        // The probe sits on the skin, looking into the body.
        let (probe, _, _) = s.poses_at(0.0);
        let apex_z = s.acquisition.probe.apex_z();
        let apex = probe.apply(DVec3::new(0.0, 0.0, apex_z));
        assert!(
            (apex.z + s.hip.skin_depth).abs() < 1.5e-3,
            "{file}: probe face at z = {}",
            apex.z
        );
        assert!(probe.rotate(DVec3::Z).z > 0.9);
        // A tracker reporting the scripted poses sees the same length of
        // shaft in the body (the entry lies on the skin under the probe,
        // to within the tremor and the skin's flattening).
        for t in [0.3 * s.duration, s.duration] {
            let scripted = s.scripted(t);
            let tracked = s.tracked(t, scripted.probe, scripted.needle);
            assert!(
                (tracked.inserted - scripted.inserted).abs() < 2e-3,
                "{file} at {t} s: tracked {} mm, scripted {} mm",
                tracked.inserted * 1e3,
                scripted.inserted * 1e3
            );
        }
        // Pulled back out of the skin, nothing is inserted.
        let end = s.scripted(s.duration);
        let back = sonoguide::scene::pose::Pose {
            translation: end.needle.translation - end.needle.rotate(DVec3::Z) * 0.2,
            ..end.needle
        };
        assert_eq!(s.tracked(s.duration, end.probe, back).inserted, 0.0);
    }
}

#[test]
fn unknown_field_names_its_line() {
    let text = base().replace("gauge = 22", "gauge = 22\ncolour = \"red\"");
    let e = parse(&text).unwrap_err();
    assert!(
        e.contains(&format!("test.toml:{}", line_of(&text, "colour"))) && e.contains("colour"),
        "{e}"
    );
}

#[test]
fn missing_units_is_an_error() {
    let text = base().replace("units = \"mm\"", "");
    let e = parse(&text).unwrap_err();
    assert!(e.contains("units") && e.contains("test.toml:"), "{e}");
    let text = base().replace("units = \"mm\"", "units = \"cm\"");
    let e = parse(&text).unwrap_err();
    assert!(
        e.contains(&format!("test.toml:{}", line_of(&text, "units = \"cm\"")))
            && e.contains("expected \"mm\""),
        "{e}"
    );
}

#[test]
fn target_outside_the_body_is_an_error() {
    let text = base().replace(
        "avoid_margin = 5",
        "avoid_margin = 5\ntarget = [10.0, -15.0, -70.0]",
    );
    let e = parse(&text).unwrap_err();
    assert!(
        e.contains(&format!("test.toml:{}", line_of(&text, "target = ")))
            && e.contains("outside the body"),
        "{e}"
    );
    let text = base().replace(
        "avoid_margin = 5",
        "avoid_margin = 5\ntarget = [0.0, 0.0, 0.0]",
    );
    assert!(parse(&text).unwrap_err().contains("inside bone"));
}

#[test]
fn needle_shorter_than_the_path_is_an_error() {
    let text = base().replace("length = 89", "length = 40");
    let e = parse(&text).unwrap_err();
    assert!(
        e.contains(&format!("test.toml:{}", line_of(&text, "length = 40")))
            && e.contains("shorter than the path"),
        "{e}"
    );
}

#[test]
fn other_bad_values_are_errors() {
    for (from, to, needle) in [
        ("sound_speed", "sound_speed", ""),
        (
            "kind = \"convex\"",
            "kind = \"helical\"",
            "expected \"convex\" or \"linear\"",
        ),
        ("gauge = 22", "gauge = 24", "gauge 24"),
        ("elements = 128", "elements = 0", "probe.elements is 0"),
        ("depth = 95", "depth = -95", "probe.depth"),
        (
            "kind = \"anterior-longitudinal\"",
            "kind = \"posterior\"",
            "approach.kind",
        ),
        (
            "\"femoral_nerve\"]",
            "\"sciatic_nerve\"]",
            "unknown structure `sciatic_nerve`",
        ),
    ] {
        if needle.is_empty() {
            continue;
        }
        let text = base().replacen(from, to, 1);
        let e = parse(&text).unwrap_err();
        assert!(e.contains(needle) && e.contains("test.toml:"), "{to}: {e}");
    }
    let text = base().replace(
        "model = \"C5-2v\"",
        "model = \"C5-2v\"\nsound_speed = -1540",
    );
    assert!(parse(&text).unwrap_err().contains("sound_speed"));
}

/// Every number a scene sets is checked, and its error points at its own
/// line (not at the section's first key) and names the field and the range.
#[test]
fn numbers_out_of_range_are_errors_on_their_own_line() {
    for (from, to, field) in [
        (
            "element_width = 0.46",
            "element_width = 0.6",
            "probe.element_width",
        ),
        (
            "element_height = 13.0",
            "element_height = 0",
            "probe.element_height",
        ),
        ("bandwidth = 79 ", "bandwidth = 250 ", "probe.bandwidth"),
        ("depth = 95", "depth = 5000", "probe.depth"),
        ("waves = 7 ", "waves = 0 ", "probe.waves"),
        (
            "wave_spread = 30 ",
            "wave_spread = 120 ",
            "probe.wave_spread",
        ),
        (
            "scatterer_density = 4 ",
            "scatterer_density = -4 ",
            "probe.scatterer_density",
        ),
        ("bevel = 30", "bevel = 0", "needle.bevel"),
        (
            "avoid_margin = 5",
            "avoid_margin = -5",
            "approach.avoid_margin",
        ),
        ("duration = 4.0 ", "duration = -1.0 ", "trajectory.duration"),
        ("tremor = 0.25 ", "tremor = nan ", "trajectory.tremor"),
        (
            "tremor_angle = 0.3 ",
            "tremor_angle = 45.0 ",
            "trajectory.tremor_angle",
        ),
    ] {
        let text = base().replacen(from, to, 1);
        assert_ne!(text, base(), "{from} not in the scene");
        let e = parse(&text).unwrap_err();
        let at = format!("test.toml:{}:", line_of(&text, to.trim()));
        assert!(
            e.contains(&at) && e.contains(field) && e.contains("expected"),
            "{to}: {e}"
        );
    }
    // The edges of the ranges are scenes.
    for (from, to) in [
        ("scatterer_density = 4 ", "scatterer_density = 0 "),
        ("tremor = 0.25 ", "tremor = 0 "),
        ("wave_spread = 30 ", "wave_spread = 0 "),
        ("element_width = 0.46", "element_width = 0.508"),
    ] {
        parse(&base().replacen(from, to, 1)).unwrap_or_else(|e| panic!("{to}: {e}"));
    }
}

/// The linear-probe option renders end to end: its rectangle goes through
/// the same scan conversion as the convex sector and fills the display,
/// with the femoral head's cortex under the centre line. Sparse and small,
/// to stay cheap on lavapipe.
#[test]
fn linear_probe_option_renders() {
    let Some(ctx) = common::gpu() else { return };
    let text = base()
        .replace("kind = \"convex\"", "kind = \"linear\"")
        .replace("elements = 128", "elements = 64")
        .replace("pitch = 0.508", "pitch = 0.6")
        .replace("depth = 95", "depth = 60")
        .replace("waves = 7 ", "waves = 1 ")
        .replace("scatterer_density = 4 ", "scatterer_density = 0.05 ");
    let s = parse(&text).unwrap();
    assert!(matches!(
        s.acquisition.probe.kind,
        sonoguide::acquisition::ProbeKind::Linear
    ));
    let r = sonoguide::scene::render::Renderer::new(&ctx, &s, 120, 60.0);
    let out = r.frame(&ctx, &s, 0, 1).unwrap();
    // Frame after frame, the renderer records into the buffers it bound for
    // the first (nothing allocated per frame): another frame's image, then
    // this one's again, bit for bit.
    let other = r.frame(&ctx, &s, 1, 3).unwrap();
    assert!(other.rgba != out.rgba, "a later frame shows something else");
    assert!(
        r.frame(&ctx, &s, 0, 1).unwrap().rgba == out.rgba,
        "the same frame twice differs"
    );
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    let (a, _) = r.encode_frame(&ctx, &mut enc, &s, 0, 1).unwrap();
    let (b, _) = r.encode_frame(&ctx, &mut enc, &s, 1, 3).unwrap();
    ctx.queue.submit([enc.finish()]);
    assert!(a == b, "each frame lands in the same display buffer");
    let (w, h) = (r.view.display.width, r.view.display.height);
    assert_eq!(out.rgba.len(), w * h);
    let inside = out.rgba.iter().filter(|p| *p >> 24 == 255).count();
    assert_eq!(inside, w * h, "a linear probe's image is its whole display");
    let lit = out.grey.iter().filter(|g| **g > 0.0).count();
    assert!(
        lit > w * h / 10,
        "only {lit} of {} pixels above the floor",
        w * h
    );
    let cortex = out
        .info
        .femoral_head_cortex_px
        .expect("the cortex lies under the centre line within 60 mm");
    // The cortex row is brighter than the speckle above it.
    let row = cortex[1].round() as usize;
    let col = cortex[0].round() as usize;
    let band = |r0: usize, r1: usize| {
        (r0..r1)
            .map(|r| out.grey[r * w + col])
            .fold(0.0f32, f32::max)
    };
    assert!(
        band(row.saturating_sub(2), row + 3) > band(row.saturating_sub(20), row.saturating_sub(8)),
        "cortex at row {row} not brighter than the tissue above"
    );
}

/// The approach's points are checked like its numbers: a NaN or an infinity
/// (which pass every comparison after and make the needle vanish) and a
/// list of the wrong length (toml drops a fixed-size array's extra entries
/// unseen) are errors on their own line naming the field and the length.
#[test]
fn non_finite_or_wrong_length_points_are_errors() {
    for field in ["target", "entry"] {
        for value in [
            "[nan, 0, 0]",
            "[10, inf, -20]",
            "[10, 0, -inf]",
            "[10, 0]",
            "[10, 0, -20, 4]",
            "[]",
        ] {
            let to = format!("{field} = {value}");
            let text = base().replace("avoid_margin = 5", &format!("avoid_margin = 5\n{to}"));
            // Not `unwrap_err`: its message would be the whole scene.
            let Err(e) = parse(&text) else {
                panic!("{to}: accepted")
            };
            let at = format!("test.toml:{}:", line_of(&text, &to));
            assert!(
                e.contains(&at)
                    && e.contains(&format!("approach.{field} is "))
                    && e.contains("expected [x, y, z], 3 finite numbers"),
                "{to}: {e}"
            );
        }
    }
}

/// A phantom scene given where a hip scene goes, and the other way round,
/// says which kind the file is and which kind is wanted (not serde's
/// "unknown field `acquisition`"), from the library and the command line.
#[test]
fn a_scene_of_the_other_kind_says_so() {
    let phantom = scenes_dir().join("phantom-picmus.toml");
    let e = Scene::load(&phantom).unwrap_err().to_string();
    assert!(
        e.contains("phantom-picmus.toml is a phantom scene (it has [transmit])")
            && e.contains("take a hip scene such as scenes/hip-anterior-longitudinal.toml"),
        "{e}"
    );
    let hip = scenes_dir().join("hip-anterior-longitudinal.toml");
    let e = sonoguide::sim::phantom::PhantomScene::load(&hip)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("hip-anterior-longitudinal.toml is a hip scene (it has [anatomy])")
            && e.contains("simulate and metrics take a phantom scene"),
        "{e}"
    );
    // A hip scene with a stray phantom section is a hip scene with an
    // unknown field, reported as one at its line.
    let text = base() + "\n[acquisition]\ndepth = 50\n";
    let e = parse(&text).unwrap_err();
    assert!(
        e.contains(&format!("test.toml:{}:", line_of(&text, "[acquisition]")))
            && e.contains("unknown field `acquisition`"),
        "{e}"
    );
    // The commands fail before they start a GPU: no adapter needed.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = |args: &[&std::ffi::OsStr]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_sonoguide"))
            .args(args)
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (ok, err) = run(&[
        "render".as_ref(),
        phantom.as_os_str(),
        "--frames".as_ref(),
        "1".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    assert!(!ok && err.contains("is a phantom scene"), "{err}");
    let (ok, err) = run(&[
        "simulate".as_ref(),
        hip.as_os_str(),
        "--out".as_ref(),
        dir.path().join("x.uff").as_os_str(),
    ]);
    assert!(!ok && err.contains("is a hip scene"), "{err}");
}
