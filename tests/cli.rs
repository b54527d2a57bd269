//! The `sonoguide` command as a user meets it: outputs of a good run, and
//! for each class of bad input (truncated file, wrong shape, missing field,
//! NaN, zero sampling rate, pixel file of the wrong shape) a message that
//! names the file and the field, exit status 2, and no output written.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use glam::DVec3;
use sonoguide::acquisition::{ProbeKind, Samples};
use sonoguide::io::mat::{write_mat, MatValue};
use sonoguide::io::npy;
use sonoguide::sim::{point_echoes, Scatterer};

fn sonoguide(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sonoguide"))
        .args(args)
        .output()
        .expect("run sonoguide")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// A small MUST dataset: 32-element linear array, one 0° plane wave, two
/// frames, point targets. `param` fields can be replaced or removed.
fn must_vars(edit: impl FnOnce(&mut Vec<(String, MatValue)>)) -> Vec<(&'static str, MatValue)> {
    let acq = {
        let mut a = common::small_linear(32);
        a.waves.truncate(1);
        a
    };
    let scat = [
        Scatterer {
            position: DVec3::new(0.0, 0.0, 0.01),
            amplitude: 1.0,
        },
        Scatterer {
            position: DVec3::new(-0.002, 0.0, 0.015),
            amplitude: 0.5,
        },
    ];
    let data = point_echoes(&acq, &scat, 400, 2);
    let Samples::Rf(rf) = data.data else {
        unreachable!()
    };
    let mut param: Vec<(String, MatValue)> = vec![
        ("fs".into(), MatValue::scalar(acq.sampling_frequency)),
        ("fc".into(), MatValue::scalar(acq.center_frequency)),
        ("pitch".into(), MatValue::scalar(0.3e-3)),
        ("width".into(), MatValue::scalar(0.27e-3)),
        ("c".into(), MatValue::scalar(acq.sound_speed)),
        ("t0".into(), MatValue::scalar(acq.initial_time)),
        ("bandwidth".into(), MatValue::scalar(70.0)),
        ("Nelements".into(), MatValue::scalar(32.0)),
        ("TXdelay".into(), MatValue::row(vec![0.0; 32])),
    ];
    edit(&mut param);
    vec![
        // Our [frame][channel][sample] is MATLAB's column-major [sample, channel, frame].
        (
            "RF",
            MatValue::F64 {
                dims: vec![400, 32, 2],
                data: rf.iter().map(|v| *v as f64 * 1e3).collect(),
            },
        ),
        ("param", MatValue::Struct(param)),
    ]
}

fn set(param: &mut Vec<(String, MatValue)>, name: &str, v: MatValue) {
    match param.iter_mut().find(|(n, _)| n == name) {
        Some(slot) => slot.1 = v,
        None => param.push((name.into(), v)),
    }
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Run `beamform` on `input` asking for every output; expect failure with
/// every `needles` in the message and no output files.
fn expect_failure(dir: &Path, input: &Path, extra: &[&str], needles: &[&str]) {
    let png = dir.join("out.png");
    let npy_out = dir.join("out.npy");
    let mut args = vec![
        "beamform",
        path_str(input),
        "--png",
        path_str(&png),
        "--save-npy",
        path_str(&npy_out),
    ];
    args.extend_from_slice(extra);
    let o = sonoguide(&args);
    let msg = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "exit status for {needles:?}: {:?}\n{msg}",
        o.status
    );
    assert!(
        !msg.contains("panicked"),
        "panic instead of an error:\n{msg}"
    );
    for n in needles {
        assert!(msg.contains(n), "message lacks `{n}`:\n{msg}");
    }
    assert!(
        !png.exists() && !npy_out.exists(),
        "output written despite the error"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().contains("out"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn good_must_file_gives_every_output() {
    if common::gpu().is_none() {
        return;
    }
    let d = tmp();
    let input = d.path().join("small.mat");
    write_mat(&input, &must_vars(|_| {})).unwrap();
    let (png, iq, env, bm) = (
        d.path().join("b.png"),
        d.path().join("iq.npy"),
        d.path().join("env.npy"),
        d.path().join("bm.npy"),
    );
    let o = sonoguide(&[
        "beamform",
        path_str(&input),
        "--grid",
        "-0.005:0.005:40,0.005:0.02:60",
        "--interp",
        "nearest",
        "--save-npy",
        path_str(&iq),
        "--save-envelope",
        path_str(&env),
        "--save-bmode",
        path_str(&bm),
        "--png",
        path_str(&png),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("adapter:"), "the adapter is printed");
    let iq = npy::read_npy(&iq).unwrap();
    assert_eq!(iq.shape, vec![2, 60, 40]);
    assert_eq!(iq.dtype, npy::NpyDtype::C64);
    let env = npy::read_npy(&env).unwrap();
    assert_eq!(
        (env.shape.clone(), env.dtype),
        (vec![2, 60, 40], npy::NpyDtype::F32)
    );
    // The point at (0, 10 mm) is the brightest pixel.
    let e = env.to_f32().unwrap();
    let (i, _) = e[..2400]
        .iter()
        .enumerate()
        .fold((0, 0.0f32), |a, (i, &v)| if v > a.1 { (i, v) } else { a });
    let (row, col) = (i / 40, i % 40);
    assert!(
        (col as i32 - 20).abs() <= 1 && (row as f64 * 0.015 / 59.0 + 0.005 - 0.01).abs() < 3e-4,
        "peak at row {row} col {col}"
    );
    assert_eq!(npy::read_npy(&bm).unwrap().dtype, npy::NpyDtype::U8);
    let img = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()))
        .read_info()
        .unwrap();
    assert_eq!((img.info().width, img.info().height), (40, 60));
}

#[test]
fn polar_pixel_file_is_scan_converted() {
    if common::gpu().is_none() {
        return;
    }
    let acq = common::small_convex(32);
    let ProbeKind::Convex { center, radius } = acq.probe.kind else {
        unreachable!()
    };
    let data = point_echoes(
        &acq,
        &[Scatterer {
            position: DVec3::new(0.0, 0.0, 0.015),
            amplitude: 1.0,
        }],
        800,
        1,
    );
    let d = tmp();
    let input = d.path().join("convex.uff");
    sonoguide::io::uff::write_uff(&input, &data).unwrap();
    // An impolgrid-like layout: rows = radius, cols = angle, as a point list.
    let (nr, na) = (48, 32);
    let mut pts = Vec::new();
    for r in 0..nr {
        for a in 0..na {
            let rr = radius + 0.001 + 0.03 * r as f64 / (nr - 1) as f64;
            let th = -0.4 + 0.8 * a as f64 / (na - 1) as f64;
            pts.extend([
                (center[0] + rr * th.sin()) as f32,
                (center[1] + rr * th.cos()) as f32,
            ]);
        }
    }
    let pixels = d.path().join("pixels.npy");
    npy::write_npy_f32(&pixels, &[nr, na, 2], &pts).unwrap();
    let png = d.path().join("sector.png");
    let o = sonoguide(&[
        "beamform",
        path_str(&input),
        "--pixels",
        path_str(&pixels),
        "--png",
        path_str(&png),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()))
        .read_info()
        .unwrap();
    let (w, h) = (dec.info().width as usize, dec.info().height as usize);
    assert_eq!(
        dec.info().color_type,
        png::ColorType::Rgba,
        "a scan-converted sector has transparency"
    );
    let mut buf = vec![0; dec.output_buffer_size().unwrap()];
    dec.next_frame(&mut buf).unwrap();
    let alpha: Vec<u8> = buf.chunks_exact(4).map(|p| p[3]).collect();
    // Top corners lie outside the sector (transparent), the centre inside.
    assert_eq!(alpha[0], 0);
    assert_eq!(alpha[w - 1], 0);
    assert_eq!(alpha[(h / 2) * w + w / 2], 255);
}

#[test]
fn truncated_files_are_refused() {
    let d = tmp();
    let full = d.path().join("full.mat");
    write_mat(&full, &must_vars(|_| {})).unwrap();
    let bytes = std::fs::read(&full).unwrap();
    let cut = d.path().join("cut.mat");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    expect_failure(d.path(), &cut, &[], &["cut.mat", "truncated"]);

    let uff = d.path().join("full.uff");
    let mut acq = common::small_linear(16);
    acq.waves.truncate(2);
    sonoguide::io::uff::write_uff(&uff, &point_echoes(&acq, &[], 300, 1)).unwrap();
    let bytes = std::fs::read(&uff).unwrap();
    let cut = d.path().join("cut.uff");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    expect_failure(d.path(), &cut, &[], &["cut.uff", "HDF5"]);
}

#[test]
fn wrong_shape_is_refused() {
    let d = tmp();
    let input = d.path().join("shape.mat");
    write_mat(
        &input,
        &must_vars(|p| set(p, "Nelements", MatValue::scalar(64.0))),
    )
    .unwrap();
    expect_failure(
        d.path(),
        &input,
        &[],
        &["shape.mat", "param.Nelements", "64", "32"],
    );
    let input = d.path().join("tx.mat");
    write_mat(
        &input,
        &must_vars(|p| set(p, "TXdelay", MatValue::row(vec![0.0; 5]))),
    )
    .unwrap();
    expect_failure(
        d.path(),
        &input,
        &[],
        &["tx.mat", "param.TXdelay", "one per element"],
    );
}

#[test]
fn missing_field_is_refused() {
    let d = tmp();
    let input = d.path().join("nofs.mat");
    write_mat(&input, &must_vars(|p| p.retain(|(n, _)| n != "fs"))).unwrap();
    expect_failure(d.path(), &input, &[], &["nofs.mat", "param.fs", "missing"]);
    let input = d.path().join("norf.mat");
    let vars: Vec<_> = must_vars(|_| {})
        .into_iter()
        .filter(|(n, _)| *n != "RF")
        .collect();
    write_mat(&input, &vars).unwrap();
    expect_failure(d.path(), &input, &[], &["norf.mat", "RF", "missing"]);
}

#[test]
fn nan_parameter_is_refused() {
    let d = tmp();
    let input = d.path().join("nan.mat");
    write_mat(
        &input,
        &must_vars(|p| set(p, "c", MatValue::scalar(f64::NAN))),
    )
    .unwrap();
    expect_failure(d.path(), &input, &[], &["nan.mat", "param.c", "NaN"]);
}

#[test]
fn zero_sampling_rate_is_refused() {
    let d = tmp();
    let input = d.path().join("fs0.mat");
    write_mat(&input, &must_vars(|p| set(p, "fs", MatValue::scalar(0.0)))).unwrap();
    expect_failure(
        d.path(),
        &input,
        &[],
        &["fs0.mat", "param.fs", "is 0", "sampling frequency"],
    );
}

#[test]
fn pixel_file_of_the_wrong_shape_is_refused() {
    let d = tmp();
    let input = d.path().join("ok.mat");
    write_mat(&input, &must_vars(|_| {})).unwrap();
    let pixels = d.path().join("pix.npy");
    npy::write_npy_f32(&pixels, &[4, 5, 3], &[0.01; 60]).unwrap();
    expect_failure(
        d.path(),
        &input,
        &["--pixels", path_str(&pixels)],
        &["pix.npy", "shape [4, 5, 3]", "[rows, cols, 2]"],
    );
    let nan = d.path().join("nan.npy");
    npy::write_npy_f32(
        &nan,
        &[2, 2, 2],
        &[0.01, f32::NAN, 0.0, 0.01, 0.0, 0.01, 0.0, 0.01],
    )
    .unwrap();
    expect_failure(
        d.path(),
        &input,
        &["--pixels", path_str(&nan)],
        &["nan.npy", "NaN"],
    );
}

#[test]
fn bad_options_and_missing_files_are_refused() {
    let d = tmp();
    let input = d.path().join("ok.mat");
    write_mat(&input, &must_vars(|_| {})).unwrap();
    expect_failure(
        d.path(),
        &input,
        &["--interp", "sinc"],
        &["--interp", "nearest, linear or cubic"],
    );
    expect_failure(d.path(), &input, &["--fnumber", "-1"], &["--fnumber"]);
    expect_failure(d.path(), &input, &["--grid", "0:1"], &["--grid"]);
    expect_failure(
        d.path(),
        &PathBuf::from("/nonexistent/x.uff"),
        &[],
        &["/nonexistent/x.uff", "no such file"],
    );
    let o = sonoguide(&[
        "beamform",
        path_str(&input),
        "--png",
        "/nonexistent-dir/b.png",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("/nonexistent-dir"), "{}", stderr(&o));
}

/// Outputs that would overwrite the input or each other, or that name a
/// directory, are refused before any work, with nothing written; a link is
/// written through and a device written into, not replaced.
#[test]
fn outputs_never_replace_what_they_should_not() {
    let d = tmp();
    let input = d.path().join("ok.mat");
    write_mat(&input, &must_vars(|_| {})).unwrap();
    let before = std::fs::read(&input).unwrap();
    // The input as an output (under another spelling of its path).
    let same = d.path().join(".").join("ok.mat");
    expect_failure(
        d.path(),
        &input,
        &["--save-envelope", path_str(&same)],
        &["--save-envelope", "is the input"],
    );
    assert_eq!(std::fs::read(&input).unwrap(), before);
    // Two outputs into one file.
    let twice = d.path().join("twice.npy");
    expect_failure(
        d.path(),
        &input,
        &[
            "--save-envelope",
            path_str(&twice),
            "--save-bmode",
            path_str(&twice),
        ],
        &["--save-bmode and --save-envelope are the same file"],
    );
    // An output that is a directory: refused before the others are written.
    let dir_out = d.path().join("a_dir");
    std::fs::create_dir(&dir_out).unwrap();
    let env = d.path().join("env.npy");
    expect_failure(
        d.path(),
        &input,
        &[
            "--save-envelope",
            path_str(&env),
            "--save-bmode",
            path_str(&dir_out),
        ],
        &["--save-bmode", "is a directory"],
    );
    assert!(!env.exists(), "an output written before the refusal");
    // Bad selections.
    expect_failure(d.path(), &input, &["--waves", "0,0"], &["named twice"]);
    expect_failure(d.path(), &input, &["--repeat", "0"], &["--repeat 0"]);
    let ints = d.path().join("ints.npy");
    npy::write_npy(
        &ints,
        &npy::NpyArray {
            shape: vec![1, 2, 2],
            dtype: npy::NpyDtype::I32,
            fortran_order: false,
            data: [0i32, 10, 0, 20]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        },
    )
    .unwrap();
    expect_failure(
        d.path(),
        &input,
        &["--pixels", path_str(&ints)],
        &["ints.npy", "expected float32 or float64"],
    );
    if common::gpu().is_none() {
        return;
    }
    // Through a link to the file it names; into a device without replacing it.
    #[cfg(unix)]
    {
        let target = d.path().join("target.png");
        std::fs::write(&target, "old").unwrap();
        let link = d.path().join("link.png");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let o = sonoguide(&[
            "beamform",
            path_str(&input),
            "--grid",
            "-0.005:0.005:8,0.005:0.02:8",
            "--png",
            path_str(&link),
            "--save-bmode",
            "/dev/null",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(std::fs::read(&target).unwrap().starts_with(b"\x89PNG"));
        assert!(!std::fs::metadata("/dev/null").unwrap().is_file());
    }
}

/// A UFF another process holds an exclusive lock on (HDF5's own, leaked
/// into a child spawned while it was written: how the tests once failed
/// with "unable to lock file") is still read; sonoguide takes no HDF5 locks.
#[test]
fn a_locked_uff_is_read() {
    let d = tmp();
    let input = d.path().join("locked.uff");
    let acq = common::small_convex(8);
    let data = point_echoes(
        &acq,
        &[Scatterer {
            position: DVec3::new(0.0, 0.0, 0.015),
            amplitude: 1.0,
        }],
        200,
        1,
    );
    sonoguide::io::uff::write_uff(&input, &data).unwrap();
    let held = std::fs::File::open(&input).unwrap();
    held.lock().unwrap();
    let o = sonoguide(&["info", path_str(&input)]);
    assert!(o.status.success(), "{}", stderr(&o));
    held.unlock().unwrap();
}

#[test]
fn a_wrong_backend_variable_is_named() {
    let o = Command::new(env!("CARGO_BIN_EXE_sonoguide"))
        .arg("adapters")
        .env("WGPU_BACKEND", "vulkna")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("WGPU_BACKEND=vulkna"), "{}", stderr(&o));
}

#[test]
fn no_adapter_names_the_package_to_install() {
    // Vulkan only, with the loader pointed at a driver that does not exist.
    let o = Command::new(env!("CARGO_BIN_EXE_sonoguide"))
        .args(["--backend", "vulkan", "adapters"])
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .output()
        .unwrap();
    let msg = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{msg}");
    assert!(
        msg.contains("no GPU adapter") && msg.contains("mesa-vulkan-drivers"),
        "{msg}"
    );
    let o = sonoguide(&["--backend", "vulkun", "adapters"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unknown backend `vulkun`"),
        "{}",
        stderr(&o)
    );
}
