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
        "--roofline",
    ]);
    assert!(
        text.contains("das kernel"),
        "no table on the terminal:\n{text}"
    );
    assert!(
        text.contains("roofline (this adapter") && text.contains("f32 fused multiply-adds"),
        "no roofline on the terminal:\n{text}"
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
    // The roofline: the adapter's rates (each kernel's sums were checked
    // against the host's, or the run would have failed), and the DAS
    // kernel placed against them by its needs per point.
    let roof = &v["roofline"];
    let (cached, fma) = (
        positive(&roof["adapter"], "cached_bytes_per_s"),
        positive(&roof["adapter"], "fma_per_s"),
    );
    positive(&roof["adapter"], "stream_bytes_per_s");
    let das = &roof["das"];
    let (bytes, fmas) = (
        positive(&das["needs"], "row_bytes_per_point"),
        positive(&das["needs"], "fma_per_point"),
    );
    let pts = positive(&v, "points_per_s");
    assert_eq!(positive(das, "points_per_s"), pts);
    assert!((positive(das, "cached_share") * cached / (pts * bytes) - 1.0).abs() < 1e-9);
    assert!((positive(das, "fma_share") * fma / (pts * fmas) - 1.0).abs() < 1e-9);
    let ceiling = (cached / bytes).min(fma / fmas);
    assert!((positive(das, "ceiling_points_per_s") / ceiling - 1.0).abs() < 1e-9);
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
    // The chain's das, timed inside one submission (timestamps where the
    // adapter has them, software ones included), is the kernel timed
    // alone: lavapipe's late timestamps once put das at 37 µs of 127 ms.
    let stage_das = v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == "das")
        .map(|s| positive(s, "median_s"))
        .unwrap();
    let kernel = positive(&v, "median_kernel_s");
    assert!(
        stage_das > kernel / 3.0 && stage_das < kernel * 3.0,
        "das in the chain {stage_das:e} s, alone {kernel:e} s ({})",
        v["stage_time_source"]
    );
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
    assert_eq!(v["tuned"].as_bool(), Some(false), "{v}");
    assert_eq!(v["stages"].as_array().map(|a| a.len()), Some(0), "{v}");
    // --stages: each stage's median GPU time per batch, where the adapter
    // has timestamps (lavapipe has).
    let s = stream(&["--stages"]);
    let stages: Vec<(&str, f64)> = s["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["stage"].as_str().unwrap(),
                t["median_s"].as_f64().unwrap(),
            )
        })
        .collect();
    if GpuContext::new(None).unwrap().has_timestamps() {
        let names: Vec<&str> = stages.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["copy", "demodulate", "das", "detect"], "{s}");
        assert!(stages.iter().all(|(_, t)| *t > 0.0 && t.is_finite()), "{s}");
    } else {
        assert!(stages.is_empty(), "{s}");
    }
    // --tune streams with a tiling it timed, at the rows' precision.
    let t = stream(&["--tune", "--f32-rows"]);
    assert_eq!(t["tuned"].as_bool(), Some(true), "{t}");
    assert_eq!(t["rows"].as_str(), Some("f32"), "{t}");
    assert!(t["tiling"].as_str().unwrap().ends_with(" f32"), "{t}");
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
    // Sizes past what the beamformer or the adapter holds are refused
    // before anything is made (100 000 channels once grew to 24 GB; an
    // 8192² grid failed after 50 s with advice hfr has no flag for).
    for (args, want) in [
        (
            vec!["hfr", "--channels", "100000"],
            "--channels 100000: expected 1 to",
        ),
        (vec!["hfr", "--waves", "0"], "--waves 0"),
        (vec!["hfr", "--frames", "0"], "--frames 0"),
        (vec!["hfr", "--size", "8192x8192"], "give a smaller --size"),
        (
            vec!["bench", "--json", "/tmp", "--workload", "pwi-disk"],
            "is a directory",
        ),
    ] {
        if want.contains("smaller") && !have_gpu() {
            continue;
        }
        let t = std::time::Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_sonoguide"))
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code() == Some(2) && err.contains(want),
            "{args:?}: {err}"
        );
        assert!(
            t.elapsed().as_secs() < 20,
            "{args:?} refused only after work"
        );
    }
    // --tune chooses the tiling itself.
    let out = Command::new(env!("CARGO_BIN_EXE_sonoguide"))
        .args(["bench", "--quick", "--tune", "--row-vec4", "2"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--tune") && err.contains("--row-vec4"),
        "{err}"
    );
}

/// Every tiling `bench --tune` can choose beamforms the image the default
/// tiling does (f32 rows to 1e-4 of its peak, f16 rows to 2e-3), on an
/// image with two plane waves whose rows the tilings cut differently; each
/// is timed, and the best is the fastest usable row.
#[test]
fn every_tiling_beamforms_the_default_image() {
    use sonoguide::bench::tune;
    use sonoguide::bench::workload::{synthetic, SynthShape};
    if !have_gpu() {
        return;
    }
    let ctx = GpuContext::new(None).unwrap();
    let bf = sonoguide::pipeline::Beamformer::new(&ctx);
    let w = synthetic(SynthShape {
        nx: 24,
        nz: 20,
        channels: 16,
        waves: 2,
        frames: 6,
    })
    .unwrap();
    let p = sonoguide::bench::measure::prepare(&ctx, &bf, &w).unwrap();
    let rows = tune::tune(&ctx, &bf, &p, w.points(), 1, 1).unwrap();
    // 6 frames: rows of 1 to 4 vec4 in f32, 2 to 4 in f16.
    assert_eq!(rows.len(), tune::candidates(6).len());
    assert_eq!(rows.len(), 2 + 3 * 4 + 3 * 3 + 2 * 4 + 2 * 3);
    let mut seen = Vec::new();
    for r in &rows {
        assert!(
            !r.note.starts_with("could not") && !r.note.starts_with("wrong"),
            "{r:?}"
        );
        let tol = if r.rows == "f16" { 2e-3 } else { 1e-4 };
        assert!(r.max_rel_err <= tol, "{r:?}");
        if r.note.is_empty() {
            assert!(r.median_kernel_s > 0.0 && r.runs == 1, "{r:?}");
            assert!(!seen.contains(&r.effective), "{r:?} timed twice");
            seen.push(r.effective);
        } else {
            assert!(r.note.starts_with("timed as") && r.runs == 0, "{r:?}");
        }
    }
    // Every kind of tiling was timed: shared delays, split element loops, f16.
    assert!(seen.iter().flatten().any(|t| t.pixels_per_invocation == 8));
    assert!(seen.iter().flatten().any(|t| t.element_split == 8));
    assert!(seen.iter().flatten().any(|t| t.f16_rows));
    for f16 in [false, true] {
        let b = tune::best(&rows, f16).unwrap();
        let fastest = rows
            .iter()
            .filter(|r| r.note.is_empty() && (r.rows == "f16") == f16)
            .map(|r| r.median_kernel_s)
            .fold(f64::INFINITY, f64::min);
        assert_eq!(b.median_kernel_s, fastest);
    }
}

/// Every demodulation chunk length `--tune` times demodulates the RF as
/// whole traces do (to 1e-5 of the peak), the default among them.
#[test]
fn every_demodulation_chunk_matches_whole_traces() {
    use sonoguide::bench::tune;
    use sonoguide::bench::workload::{synthetic, SynthShape};
    if !have_gpu() {
        return;
    }
    let ctx = GpuContext::new(None).unwrap();
    let bf = sonoguide::pipeline::Beamformer::new(&ctx);
    let w = synthetic(SynthShape {
        nx: 8,
        nz: 8,
        channels: 16,
        waves: 1,
        frames: 2,
    })
    .unwrap();
    let rows = tune::tune_demod(&ctx, &bf, &w, 1, 1).unwrap();
    assert!(rows.len() >= 3, "{rows:?}");
    assert_eq!(rows.iter().filter(|r| r.default).count(), 1, "{rows:?}");
    // Whole traces, and chunks that need warming up.
    assert!(rows.iter().any(|r| r.chunks_per_trace == 1));
    assert!(rows.iter().any(|r| r.chunks_per_trace > 2));
    for r in &rows {
        assert!(
            r.note.is_empty() && r.runs == 1 && r.median_s > 0.0,
            "{r:?}"
        );
        assert!(r.max_rel_err <= tune::DEMOD_TOLERANCE, "{r:?}");
    }
    assert_eq!(
        tune::best_demod(&rows).unwrap().median_s,
        rows.iter()
            .map(|r| r.median_s)
            .fold(f64::INFINITY, f64::min)
    );
}

/// `bench --tune` lists the tilings in its JSON and CSV and measures with
/// the one it reports as fastest.
#[test]
fn bench_tune_measures_with_the_fastest_tiling() {
    if !have_gpu() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (j, c) = (dir.path().join("t.json"), dir.path().join("t.csv"));
    let text = run(&[
        "bench",
        "--workload",
        "synthetic",
        "--quick",
        "--tune",
        "--no-cpu",
        "--no-stages",
        "--json",
        j.to_str().unwrap(),
        "--csv",
        c.to_str().unwrap(),
    ]);
    assert!(text.contains("tuning (k pixels per invocation"), "{text}");
    let v = json(&j);
    let tuning = v["tuning"].as_array().unwrap();
    assert!(tuning.len() > 10, "{}", tuning.len());
    let fastest = tuning
        .iter()
        .filter(|r| r["note"] == "" && r["rows"] == "f32")
        .min_by(|a, b| {
            a["median_kernel_s"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["median_kernel_s"].as_f64().unwrap())
        })
        .unwrap();
    let label = fastest["tiling"].as_str().unwrap();
    assert_eq!(
        v["tiling_label"].as_str().unwrap(),
        label.trim_end_matches(" (default)"),
        "{v}"
    );
    let csv = std::fs::read_to_string(&c).unwrap();
    assert_eq!(
        csv.lines().filter(|l| l.starts_with("tune,")).count(),
        tuning.len()
    );
    // The synthetic workload is RF: its demodulation was tuned too.
    assert!(!v["demod_tuning"].as_array().unwrap().is_empty(), "{v}");
    assert!(text.contains("demodulation chunks"), "{text}");
}
