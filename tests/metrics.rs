//! PICMUS image-quality metrics: exact answers on synthetic images, an
//! independent (numpy) implementation on PyMUST's reference image, errors,
//! and the `sonoguide metrics` command.

mod common;

use sonoguide::acquisition::PixelGrid;
use sonoguide::metrics::{cyst, evaluate, fwhm_6db, point_target, EnvelopeImage, MetricsError};

/// A Gaussian point-spread function: -6 dB full width = 2σ·sqrt(2 ln 2)·sqrt(ln(10^0.3)/ln 2).
fn gaussian_image(grid: &PixelGrid, centre: [f64; 2], sx: f64, sz: f64) -> EnvelopeImage {
    let env = grid
        .positions()
        .iter()
        .map(|p| {
            (-((p[0] - centre[0]).powi(2) / (2.0 * sx * sx)
                + (p[1] - centre[1]).powi(2) / (2.0 * sz * sz)))
                .exp()
        })
        .collect();
    EnvelopeImage::from_grid(grid, env).unwrap()
}

/// -6 dB (amplitude 10^-0.3) full width of exp(-x²/2σ²).
fn gaussian_fwhm(sigma: f64) -> f64 {
    2.0 * sigma * (2.0 * 0.3 * std::f64::consts::LN_10).sqrt()
}

#[test]
fn gaussian_point_on_a_cartesian_grid() {
    let grid = PixelGrid::Cartesian {
        x: (-5e-3, 5e-3),
        z: (10e-3, 20e-3),
        nx: 101,
        nz: 201,
    };
    // Off the pixel centres in both directions.
    let centre = [0.37e-3, 15.21e-3];
    let (sx, sz) = (0.3e-3, 0.12e-3);
    let img = gaussian_image(&grid, centre, sx, sz);
    let m = point_target(&img, [0.0, 15e-3], 1e-3).unwrap();
    // log of a Gaussian is a parabola: the refined peak is exact.
    assert!(m.peak_error.is_finite());
    assert!(
        (m.peak[0] - centre[0]).abs() < 1e-7 && (m.peak[1] - centre[1]).abs() < 1e-7,
        "peak {:?} vs {centre:?}",
        m.peak
    );
    assert!((m.peak_error - (centre[0].hypot(centre[1] - 15e-3))).abs() < 1e-7);
    // PICMUS's width is quantised to a tenth of a pixel at each end and the
    // dB profile is interpolated linearly: within 0.2 pixel + 1 %.
    let (ex, ez) = (gaussian_fwhm(sx), gaussian_fwhm(sz));
    let (px, pz) = (0.1e-3, 0.05e-3);
    assert!(
        (m.fwhm_lateral - ex).abs() <= 0.2 * px + 0.01 * ex,
        "lateral {} vs {ex}",
        m.fwhm_lateral
    );
    assert!(
        (m.fwhm_axial - ez).abs() <= 0.2 * pz + 0.01 * ez,
        "axial {} vs {ez}",
        m.fwhm_axial
    );
    assert!(m.peak_db.abs() < 1e-9);
}

#[test]
fn gaussian_point_on_a_polar_grid() {
    // Lateral widths are measured along the arc through the peak.
    let grid = PixelGrid::Polar {
        origin: [0.0, -40e-3],
        radius: (60e-3, 80e-3),
        angle: (-0.1, 0.1),
        nr: 401,
        na: 301,
    };
    let centre = [1.1e-3, 30.05e-3];
    let img = gaussian_image(&grid, centre, 0.5e-3, 0.2e-3);
    let m = point_target(&img, centre, 1.5e-3).unwrap();
    assert!(m.peak_error < 2e-6, "peak error {}", m.peak_error);
    let (ex, ez) = (gaussian_fwhm(0.5e-3), gaussian_fwhm(0.2e-3));
    assert!(
        (m.fwhm_lateral - ex).abs() / ex < 0.03,
        "lateral {} vs {ex}",
        m.fwhm_lateral
    );
    assert!(
        (m.fwhm_axial - ez).abs() / ez < 0.03,
        "axial {} vs {ez}",
        m.fwhm_axial
    );
}

#[test]
fn fwhm_of_a_triangle_profile() {
    // 0 dB at the centre falling 3 dB per unit: -6 dB at ±2 (exactly on the 10× grid).
    let pos: Vec<f64> = (0..11).map(|i| i as f64 * 0.5).collect();
    let db: Vec<f64> = pos.iter().map(|x| -3.0 * (x - 2.5f64).abs()).collect();
    assert!((fwhm_6db(&pos, &db) - 4.0).abs() < 0.03);
}

#[test]
fn cyst_cnr_and_contrast_follow_the_picmus_formula() {
    // Inside the cyst dB alternates -20 / -22, outside 0 / -2: means -21 and
    // -1, sample variances n/(n-1), so CNR = 20 log10(20 / sqrt(mean of the two)).
    let grid = PixelGrid::Cartesian {
        x: (-10e-3, 10e-3),
        z: (0.0, 20e-3),
        nx: 201,
        nz: 201,
    };
    let c = [0.0, 10e-3];
    let r = 4e-3;
    let env: Vec<f64> = grid
        .positions()
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let d = (p[0] - c[0]).hypot(p[1] - c[1]);
            let db = if d <= r { -20.0 } else { 0.0 } - if i % 2 == 0 { 0.0 } else { 2.0 };
            10f64.powf(db / 20.0)
        })
        .collect();
    let img = EnvelopeImage::from_grid(&grid, env).unwrap();
    let m = cyst(&img, c, r, 0.5e-3).unwrap();
    let var = |n: usize| n as f64 / (n as f64 - 1.0);
    // Alternation by pixel index: the mean over an odd count is off by 1/n.
    let expect =
        20.0 * ((m.contrast_db).abs() / ((var(m.inside) + var(m.outside)) / 2.0).sqrt()).log10();
    assert!(
        (m.contrast_db + 20.0).abs() < 0.02,
        "contrast {}",
        m.contrast_db
    );
    assert!(
        (m.cnr_db - expect).abs() < 0.01 && (m.cnr_db - 26.02).abs() < 0.05,
        "CNR {} (expected about {expect})",
        m.cnr_db
    );
    // Regions: inside r - padding, outside [r + padding, 1.2 sqrt(r_in² + r_out²)].
    let area = |a: f64| std::f64::consts::PI * a * a / (0.1e-3 * 0.1e-3);
    let (ri, ro): (f64, f64) = (3.5e-3, 4.5e-3);
    let rf = 1.2 * (ri * ri + ro * ro).sqrt();
    assert!((m.inside as f64 - area(ri)).abs() / area(ri) < 0.02);
    assert!((m.outside as f64 - (area(rf) - area(ro))).abs() / (area(rf) - area(ro)) < 0.02);
}

#[test]
fn metrics_refuse_bad_input_with_reasons() {
    let grid = PixelGrid::Cartesian {
        x: (-1e-3, 1e-3),
        z: (1e-3, 3e-3),
        nx: 21,
        nz: 21,
    };
    let img = gaussian_image(&grid, [0.0, 2e-3], 0.2e-3, 0.2e-3);
    assert!(matches!(
        point_target(&img, [5e-3, 2e-3], 0.5e-3),
        Err(MetricsError::NoPixels { .. })
    ));
    assert!(matches!(
        cyst(&img, [0.0, 2e-3], 0.05e-3, 0.0),
        Err(MetricsError::FewPixels { .. })
    ));
    let e =
        EnvelopeImage::new(2, 2, vec![[0.0, 0.0]; 4], vec![1.0, f64::NAN, 1.0, 1.0]).unwrap_err();
    assert!(e.to_string().contains("pixel 1"), "{e}");
    let e = EnvelopeImage::new(2, 3, vec![[0.0, 0.0]; 4], vec![1.0; 4]).unwrap_err();
    assert!(e.to_string().contains("2 × 3"), "{e}");
}

/// The same measures computed during development by an independent numpy
/// implementation of the PICMUS definitions, on PyMUST's reference image of
/// `L11-5v_pw7` (mm and dB, rounded as printed there).
#[test]
fn picmus_measures_of_the_pymust_reference_image() {
    let Some(dir) = common::shared_data("pymust-sim/L11-5v_pw7") else {
        return;
    };
    let x = common::read_f32(&dir.join("ref/grid_x.f32"));
    let z = common::read_f32(&dir.join("ref/grid_z.f32"));
    let env = common::read_f32(&dir.join("ref/envelope.f32"));
    let grid = PixelGrid::List {
        rows: 256,
        cols: 256,
        points: x
            .iter()
            .zip(&z)
            .map(|(a, b)| [*a as f64, *b as f64])
            .collect(),
    };
    let img = EnvelopeImage::from_grid(&grid, env.iter().map(|v| *v as f64).collect()).unwrap();
    let points = [[8e-3, 8e-3], [8e-3, 20e-3], [-9e-3, 12e-3]];
    // numpy: (axial, lateral) mm and peak error mm.
    let numpy = [
        (0.155, 0.394, 0.016),
        (0.270, 0.460, 0.007),
        (0.258, 0.459, 0.024),
    ];
    let padding = 1540.0 / 7.6e6 * 2.1433979870685445;
    let cysts = [([-4e-3, 22e-3], 3.5e-3), ([2e-3, 28e-3], 2.5e-3)];
    let (pm, cm) = evaluate(&img, &points, &cysts, 1e-3, padding).unwrap();
    for (m, (ax, lat, err)) in pm.iter().zip(numpy) {
        assert!(
            (m.fwhm_axial * 1e3 - ax).abs() < 2e-3 && (m.fwhm_lateral * 1e3 - lat).abs() < 2e-3,
            "{:?}: {} {} vs numpy {ax} {lat}",
            m.target,
            m.fwhm_axial * 1e3,
            m.fwhm_lateral * 1e3
        );
        assert!(
            (m.peak_error * 1e3 - err).abs() < 2e-3,
            "{:?}: peak error {} vs numpy {err}",
            m.target,
            m.peak_error * 1e3
        );
    }
    // numpy: CNR 8.32 dB, contrast -16.96 dB (cyst); -0.95 dB, 5.86 dB (disk).
    assert!(
        (cm[0].cnr_db - 8.32).abs() < 0.01 && (cm[0].contrast_db + 16.96).abs() < 0.01,
        "{:?}",
        cm[0]
    );
    assert!(
        (cm[1].cnr_db + 0.95).abs() < 0.01 && (cm[1].contrast_db - 5.86).abs() < 0.01,
        "{:?}",
        cm[1]
    );
}

fn sonoguide(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_sonoguide"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn cli_metrics_on_an_envelope_file() {
    let dir = tempfile::tempdir().unwrap();
    let grid = PixelGrid::Cartesian {
        x: (-5e-3, 5e-3),
        z: (10e-3, 20e-3),
        nx: 101,
        nz: 101,
    };
    let img = gaussian_image(&grid, [0.0, 15e-3], 0.3e-3, 0.15e-3);
    let env: Vec<f32> = img.envelope.iter().map(|v| *v as f32 + 1e-4).collect();
    let env_path = dir.path().join("env.npy");
    sonoguide::io::npy::write_npy_f32(&env_path, &[1, 101, 101], &env).unwrap();
    let json = dir.path().join("m.json");
    let o = sonoguide(&[
        "metrics",
        env_path.to_str().unwrap(),
        "--grid",
        "-0.005:0.005:101,0.01:0.02:101",
        "--point",
        "0,0.015",
        "--cyst",
        "0.002,0.013,0.001",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("FWHM") && out.contains("CNR"), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let lat = v["points"][0]["fwhm_lateral"].as_f64().unwrap();
    assert!(
        (lat - gaussian_fwhm(0.3e-3)).abs() / gaussian_fwhm(0.3e-3) < 0.02,
        "{lat}"
    );
    // An envelope of zeros, and one of another shape, are refused.
    let odd = [
        ("zero.npy", vec![1, 101, 101], "zero everywhere"),
        ("four_d.npy", vec![1, 1, 101, 101], "expected [rows, cols]"),
        ("wrong.npy", vec![101, 101, 1], "expected [rows, cols]"),
    ];
    for (name, shape, want) in odd {
        let p = dir.path().join(name);
        let values = if name == "zero.npy" {
            vec![0.0f32; env.len()]
        } else {
            env.clone()
        };
        sonoguide::io::npy::write_npy_f32(&p, &shape, &values).unwrap();
        let o = sonoguide(&[
            "metrics",
            p.to_str().unwrap(),
            "--grid",
            "-0.005:0.005:101,0.01:0.02:101",
            "--point",
            "0,0.015",
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.code() == Some(2) && err.contains(want),
            "{name}: {err}"
        );
    }
    // Bad input: no targets, a point outside, a malformed cyst, no grid.
    let o = sonoguide(&[
        "metrics",
        env_path.to_str().unwrap(),
        "--grid",
        "-0.005:0.005:101,0.01:0.02:101",
    ]);
    assert!(
        o.status.code() == Some(2)
            && String::from_utf8_lossy(&o.stderr).contains("nothing to measure")
    );
    let o = sonoguide(&[
        "metrics",
        env_path.to_str().unwrap(),
        "--grid",
        "-0.005:0.005:101,0.01:0.02:101",
        "--point",
        "0.5,0.015",
    ]);
    assert!(
        o.status.code() == Some(2)
            && String::from_utf8_lossy(&o.stderr).contains("inside the image"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = sonoguide(&[
        "metrics",
        env_path.to_str().unwrap(),
        "--grid",
        "-0.005:0.005:101,0.01:0.02:101",
        "--cyst",
        "0,0.015",
    ]);
    assert!(o.status.code() == Some(2) && String::from_utf8_lossy(&o.stderr).contains("--cyst"));
    let o = sonoguide(&["metrics", env_path.to_str().unwrap(), "--point", "0,0.015"]);
    assert!(
        o.status.code() == Some(2)
            && String::from_utf8_lossy(&o.stderr).contains("pixel positions")
    );
}

#[test]
fn cli_metrics_beamforms_channel_data_of_a_scene() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let scene = dir.path().join("p.toml");
    std::fs::write(
        &scene,
        r#"
[scene]
name = "one point"
units = "mm"
[probe]
kind = "linear"
elements = 48
pitch = 0.3
element_width = 0.27
center_frequency = 5
bandwidth = 70
[transmit]
kind = "plane"
angles = [-5, 0, 5]
[acquisition]
depth = 14
[[point]]
positions = [[0.4, 10]]
amplitude = 1
[image]
x = [-2, 2]
z = [8, 12]
pixels = [81, 81]
"#,
    )
    .unwrap();
    let uff = dir.path().join("p.uff");
    let o = sonoguide(&[
        "simulate",
        scene.to_str().unwrap(),
        "--out",
        uff.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json = dir.path().join("m.json");
    let o = sonoguide(&[
        "metrics",
        uff.to_str().unwrap(),
        "--scene",
        scene.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let err = v["points"][0]["peak_error"].as_f64().unwrap();
    let lambda = 1540.0 / 5e6;
    eprintln!(
        "simulated point at (0.4, 10) mm: peak {:?}, error {:.4} mm",
        v["points"][0]["peak"],
        err * 1e3
    );
    assert!(
        err < lambda / 4.0,
        "peak {:.3} mm from the point",
        err * 1e3
    );
}
