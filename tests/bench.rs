//! `sonoguide bench --quick` and `sonoguide hfr` end to end on whatever
//! adapter is present (lavapipe in CI): the commands run, and what they
//! write has the fields other tools read, with positive values. Nothing
//! here asserts a speed: CI machines share their cores.

use std::path::Path;
use std::process::Command;

use sonoguide::gpu::GpuContext;

/// Without an adapter: skip on a developer machine, fail under CI.
fn have_gpu() -> bool {
    match GpuContext::new(None) {
        Ok(_) => true,
        Err(e) if std::env::var("CI").is_err() => {
            eprintln!("SKIPPED: no GPU adapter ({e})");
            false
        }
        Err(e) => panic!("CI must have a GPU adapter (lavapipe): {e}"),
    }
}

fn run(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sonoguide"))
        .args(args)
        .output()
        .expect("run sonoguide");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "sonoguide {} failed:\n{text}",
        args.join(" ")
    );
    text
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

fn positive(v: &serde_json::Value, field: &str) -> f64 {
    let x = v[field]
        .as_f64()
        .unwrap_or_else(|| panic!("field `{field}` missing or not a number in {v}"));
    assert!(
        x.is_finite() && x > 0.0,
        "field `{field}` = {x}, expected a positive number"
    );
    x
}

#[test]
fn bench_quick_writes_json_csv_and_plot() {
    if !have_gpu() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (j, c, p) = (
        dir.path().join("bench.json"),
        dir.path().join("bench.csv"),
        dir.path().join("bench.svg"),
    );
    let text = run(&[
        "bench",
        "--workload",
        "pwi-disk",
        "--quick",
        "--sweep",
        "--json",
        j.to_str().unwrap(),
        "--csv",
        c.to_str().unwrap(),
        "--plot",
        p.to_str().unwrap(),
    ]);
    assert!(
        text.contains("das kernel"),
        "no table on the terminal:\n{text}"
    );
    let v = json(&j);
    for field in ["adapter", "backend"] {
        assert!(
            v[field].as_str().map(|s| !s.is_empty()).unwrap_or(false),
            "field `{field}` missing or empty in {v}"
        );
    }
    for field in [
        "points",
        "median_kernel_s",
        "median_wall_s",
        "points_per_s",
        "mach_factor",
        "cpu_points_per_s",
    ] {
        positive(&v, field);
    }
    // The definitions, on the numbers written.
    let ratio =
        positive(&v, "points") / positive(&v, "median_kernel_s") / positive(&v, "points_per_s");
    assert!(
        (ratio - 1.0).abs() < 1e-9,
        "points_per_s is not points / median_kernel_s"
    );
    let mach = positive(&v, "acoustic_time_s")
        / positive(&v, "median_kernel_s")
        / positive(&v, "mach_factor");
    assert!(
        (mach - 1.0).abs() < 1e-9,
        "mach_factor is not acoustic time / kernel time"
    );
    // f32 rows unless asked (the twin's precision).
    assert_eq!(v["rows"].as_str(), Some("f32"), "{v}");
    // The GPU and the CPU twin agree on the image they timed.
    let err = positive(&v, "max_rel_err_vs_cpu");
    assert!(err < 1e-3, "GPU vs CPU twin: {err:e}");
    let stages: Vec<&str> = v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["stage"].as_str())
        .collect();
    for s in [
        "upload",
        "demodulate",
        "das",
        "detect",
        "scan_convert",
        "composite",
        "readback",
    ] {
        assert!(stages.contains(&s), "stage {s} missing from {stages:?}");
    }
    let sweeps = v["sweeps"].as_array().unwrap();
    for series in ["pixels", "channels", "waves", "frames"] {
        assert!(
            sweeps.iter().any(|m| m["series"] == series),
            "sweep {series} missing"
        );
    }
    let csv = std::fs::read_to_string(&c).unwrap();
    assert_eq!(
        csv.lines().count(),
        2 + sweeps.len(),
        "CSV: a header, the reference and one row per sweep point"
    );
    assert!(csv.starts_with("series,workload,adapter,backend,pixels,channels,waves,frames"));
    let svg = std::fs::read_to_string(&p).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("polyline"),
        "plot is not an SVG with lines"
    );
}

#[test]
fn hfr_streams_and_reports() {
    if !have_gpu() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("hfr.json");
    let stream = |extra: &[&str]| {
        let mut args = vec![
            "hfr",
            "--size",
            "32x24",
            "--channels",
            "16",
            "--frames",
            "12",
            "--batch",
            "2",
            "--buffers",
            "2",
            "--readback",
            "--json",
            j.to_str().unwrap(),
        ];
        args.extend(extra);
        run(&args);
        let v = json(&j);
        assert_eq!(v["frames"].as_u64(), Some(12), "{v}");
        assert_eq!(v["frames_dropped"].as_u64(), Some(0), "{v}");
        for field in [
            "sustained_fps",
            "latency_p50_s",
            "latency_p99_s",
            "mach_factor",
            "upload_host_p50_s",
            "upload_bytes_per_s",
            "upload_bytes_per_frame",
        ] {
            positive(&v, field);
        }
        v
    };
    let v = stream(&[]);
    // hfr beamforms from f16 rows unless told --f32-rows, and streams f32
    // samples unless told --int16, which halves the bytes per frame.
    assert_eq!(v["rows"].as_str(), Some("f16"), "{v}");
    assert_eq!(v["samples"].as_str(), Some("f32"), "{v}");
    let i = stream(&["--int16"]);
    assert_eq!(i["samples"].as_str(), Some("int16"), "{i}");
    assert_eq!(
        2 * i["upload_bytes_per_frame"].as_u64().unwrap(),
        v["upload_bytes_per_frame"].as_u64().unwrap()
    );
}

#[test]
fn bad_input_is_refused_with_the_flag_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_sonoguide"))
        .args(["bench", "--workload", "nope"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--workload"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_sonoguide"))
        .args(["hfr", "--size", "12"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--size"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_sonoguide"))
        .args(["bench", "--json", "/no/such/dir/x.json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("/no/such/dir"),
        "{err}"
    );
}
