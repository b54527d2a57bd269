//! sonoguide against MUST/PyMUST on the shared reference data. Each test
//! skips, saying so, when `../shared/data` is absent.
//!
//! Reference settings (ref/ref.json): linear interpolation, boxcar receive
//! aperture, no normalisation, plain coherent sum over transmits, F-number
//! from MUST's automatic rule.

mod common;

use std::path::Path;

use sonoguide::acquisition::{ChannelData, PixelGrid, Wavefront};
use sonoguide::gpu::GpuContext;
use sonoguide::io;
use sonoguide::pipeline::{
    Apodization, BeamformOutput, BeamformRequest, Beamformer, DasSettings, DemodSettings,
    DetectSettings, FNumber, Interp, Transmit,
};

fn ref_fnumber(dir: &Path) -> f64 {
    let text = std::fs::read_to_string(dir.join("ref/ref.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["processing"]["das"]["fnumber"]
        .as_f64()
        .expect("ref.json: processing.das.fnumber")
}

/// The reference grid as a point list [rows, cols] (shape from ref.json).
fn ref_grid(dir: &Path, rows: usize, cols: usize) -> PixelGrid {
    let x = common::read_f32(&dir.join("ref/grid_x.f32"));
    let z = common::read_f32(&dir.join("ref/grid_z.f32"));
    assert_eq!(x.len(), rows * cols);
    PixelGrid::List {
        rows,
        cols,
        points: x
            .iter()
            .zip(&z)
            .map(|(a, b)| [*a as f64, *b as f64])
            .collect(),
    }
}

fn must_settings(f: f64) -> DasSettings {
    DasSettings {
        interp: Interp::Linear,
        apodization: Apodization::Boxcar,
        fnumber: FNumber::Fixed(f),
        normalize: false,
        transmit: Transmit::Must,
    }
}

fn beamform(
    ctx: &GpuContext,
    data: &ChannelData,
    grid: &PixelGrid,
    das: DasSettings,
    demod: Option<DemodSettings>,
) -> BeamformOutput {
    let req = BeamformRequest {
        das,
        demodulate: demod,
        read_iq: true,
        ..Default::default()
    };
    Beamformer::new(ctx).run(ctx, data, grid, &req).unwrap()
}

fn envelope(iq: &[[f32; 2]]) -> Vec<f64> {
    iq.iter()
        .map(|c| (c[0] as f64).hypot(c[1] as f64))
        .collect()
}

/// max |ours − ref| / max(ref) over the pixels `keep` selects.
fn max_rel_err(ours: &[f64], reference: &[f32], keep: impl Fn(usize) -> bool) -> (f64, usize) {
    let peak = reference.iter().copied().fold(0.0f32, f32::max) as f64;
    let mut worst = (0.0, 0);
    for i in 0..reference.len() {
        if keep(i) {
            let e = (ours[i] - reference[i] as f64).abs() / peak;
            if e > worst.0 {
                worst = (e, i);
            }
        }
    }
    worst
}

#[test]
fn l11_iq_compound_and_single_wave_match_pymust() {
    let Some(dir) = common::shared_data("pymust-sim/L11-5v_pw7") else {
        return;
    };
    let Some(ctx) = common::gpu() else { return };
    let data = io::uff::read_uff(&dir.join("L11-5v_pw7_iq.uff")).unwrap();
    let grid = ref_grid(&dir, 256, 256);
    let f = ref_fnumber(&dir);
    assert!((f - 2.1434).abs() < 1e-3, "F-number in ref.json: {f}");

    let out = beamform(&ctx, &data, &grid, must_settings(f), None);
    let reference = common::read_f32(&dir.join("ref/envelope.f32"));
    let (err, at) = max_rel_err(&envelope(out.iq.as_ref().unwrap()), &reference, |_| true);
    eprintln!("L11 compound: max |ours − ref| / max(ref) = {err:.2e} at pixel {at}");
    assert!(
        err <= 1e-3,
        "L11 compound envelope: max error {err:.2e} of max(ref) at pixel {at}"
    );

    // The 0° wave alone against bf_iq_per_tx[3] (waves −12…12° in 4° steps).
    let mut single = data.clone();
    let zero = single
        .acquisition
        .waves
        .iter()
        .position(|w| matches!(w.wavefront, Wavefront::Plane { azimuth } if azimuth.abs() < 1e-9))
        .unwrap();
    assert_eq!(zero, 3);
    single.select_waves(&[zero]).unwrap();
    let out = beamform(&ctx, &single, &grid, must_settings(f), None);
    let per_tx = common::read_f32(&dir.join("ref/bf_iq_per_tx.cf32"));
    let n = 256 * 256;
    let ref_env: Vec<f32> = per_tx[2 * n * zero..2 * n * (zero + 1)]
        .chunks_exact(2)
        .map(|c| c[0].hypot(c[1]))
        .collect();
    let (err, at) = max_rel_err(&envelope(out.iq.as_ref().unwrap()), &ref_env, |_| true);
    eprintln!("L11 0° wave: max |ours − ref| / max(ref) = {err:.2e} at pixel {at}");
    assert!(
        err <= 1e-3,
        "L11 single wave envelope: max error {err:.2e} at pixel {at}"
    );
}

#[test]
#[ignore]
fn debug_l11_errors() {
    let Some(dir) = common::shared_data("pymust-sim/L11-5v_pw7") else {
        return;
    };
    let Some(ctx) = common::gpu() else { return };
    let data = io::uff::read_uff(&dir.join("L11-5v_pw7_iq.uff")).unwrap();
    let grid = ref_grid(&dir, 256, 256);
    let f = ref_fnumber(&dir);
    let out = beamform(&ctx, &data, &grid, must_settings(f), None);
    let reference = common::read_f32(&dir.join("ref/envelope.f32"));
    let ours = envelope(out.iq.as_ref().unwrap());
    let peak = reference.iter().copied().fold(0.0f32, f32::max) as f64;
    let mut e: Vec<(f64, usize)> = (0..reference.len())
        .map(|i| ((ours[i] - reference[i] as f64).abs() / peak, i))
        .collect();
    e.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap());
    let pts = grid.positions();
    for (err, i) in &e[..15] {
        eprintln!(
            "err {err:.2e} row {} col {} x {:.5} z {:.5} ours {:.4e} ref {:.4e}",
            i / 256,
            i % 256,
            pts[*i][0],
            pts[*i][1],
            ours[*i],
            reference[*i]
        );
    }
    let rows: Vec<f64> = (0..256)
        .map(|r| {
            (0..256)
                .map(|c| e.iter().find(|x| x.1 == r * 256 + c).unwrap().0)
                .fold(0.0, f64::max)
        })
        .collect();
    eprintln!(
        "max err by row (every 16th): {:?}",
        rows.iter()
            .step_by(16)
            .map(|v| format!("{v:.1e}"))
            .collect::<Vec<_>>()
    );
}

/// Pixels reached by every wave's geometric wavefront through the aperture:
/// the ray from the virtual source through the pixel crosses the array
/// between its end elements.
fn insonified(data: &ChannelData, p: [f64; 2]) -> bool {
    let el = &data.acquisition.probe.elements;
    let (first, last) = (el[0].position, el[el.len() - 1].position);
    data.acquisition.waves.iter().all(|w| match w.wavefront {
        Wavefront::Diverging { source } => {
            let ang = |x: f64, z: f64| (x - source.x).atan2(z - source.z);
            let a = ang(p[0], p[1]);
            let (a0, a1) = (ang(first.x, first.z), ang(last.x, last.z));
            a >= a0.min(a1) && a <= a0.max(a1)
        }
        _ => true,
    })
}

#[test]
fn c5_iq_diverging_waves_match_pymust() {
    let Some(dir) = common::shared_data("pymust-sim/C5-2v_dw5") else {
        return;
    };
    let Some(ctx) = common::gpu() else { return };
    let data = io::uff::read_uff(&dir.join("C5-2v_dw5_iq.uff")).unwrap();
    let grid = ref_grid(&dir, 512, 256);
    let f = ref_fnumber(&dir);
    assert!((f - 1.731).abs() < 1e-3, "F-number in ref.json: {f}");
    let reference = common::read_f32(&dir.join("ref/envelope.f32"));
    let pts = grid.positions();
    let inside = |i: usize| insonified(&data, pts[i]);
    let n_out = (0..pts.len()).filter(|&i| !inside(i)).count();

    // MUST's own transmit rule: the bound holds everywhere, flanks included.
    let out = beamform(&ctx, &data, &grid, must_settings(f), None);
    let ours = envelope(out.iq.as_ref().unwrap());
    let (err_in, at) = max_rel_err(&ours, &reference, inside);
    let (err_all, _) = max_rel_err(&ours, &reference, |_| true);
    eprintln!("C5 (MUST transmit): inside {err_in:.2e} (at {at}), all pixels {err_all:.2e}; {n_out} of {} pixels outside the insonified zone", pts.len());
    assert!(
        err_in <= 1e-3,
        "C5 inside the insonified zone: max error {err_in:.2e} at pixel {at}"
    );
    assert!(
        err_all <= 1e-3,
        "C5 over all pixels with MUST's transmit rule: {err_all:.2e}"
    );

    // The analytic (UFF) wavefront agrees inside the zone; on the flanks
    // MUST follows the wave from the end element instead (its edge-wave
    // rule), so there the two differ by design and the bound is not asked.
    let analytic = DasSettings {
        transmit: Transmit::Analytic,
        ..must_settings(f)
    };
    let out = beamform(&ctx, &data, &grid, analytic, None);
    let ours = envelope(out.iq.as_ref().unwrap());
    let (err_in, at) = max_rel_err(&ours, &reference, inside);
    let (err_out, _) = max_rel_err(&ours, &reference, |i| !inside(i));
    eprintln!("C5 (analytic transmit): inside {err_in:.2e} (at {at}), outside {err_out:.2e}");
    assert!(
        err_in <= 1e-3,
        "C5 analytic, inside the insonified zone: max error {err_in:.2e} at pixel {at}"
    );
}

/// 99th percentile of |dB(ours) − dB(ref)| over pixels above −40 dB in the
/// reference (each image normalised by its own maximum).
fn db_p99(ours: &[f64], reference: &[f32]) -> (f64, usize) {
    let om = ours.iter().copied().fold(0.0, f64::max);
    let rm = reference.iter().copied().fold(0.0f32, f32::max) as f64;
    let mut d: Vec<f64> = ours
        .iter()
        .zip(reference)
        .filter(|(_, r)| 20.0 * (**r as f64 / rm).log10() > -40.0)
        .map(|(o, r)| (20.0 * (o / om).log10() - 20.0 * (*r as f64 / rm).log10()).abs())
        .collect();
    d.sort_by(f64::total_cmp);
    (
        d[((d.len() as f64 * 0.99) as usize).min(d.len() - 1)],
        d.len(),
    )
}

#[test]
fn rf_through_our_demodulation_matches_pymust_without_tgc() {
    let Some(ctx) = common::gpu() else { return };
    for (name, rows, cols) in [("L11-5v_pw7", 256, 256), ("C5-2v_dw5", 512, 256)] {
        let Some(dir) = common::shared_data(&format!("pymust-sim/{name}")) else {
            return;
        };
        let data = io::uff::read_uff(&dir.join(format!("{name}_rf.uff"))).unwrap();
        assert!(!data.is_iq());
        let grid = ref_grid(&dir, rows, cols);
        let f = ref_fnumber(&dir);
        let out = beamform(
            &ctx,
            &data,
            &grid,
            must_settings(f),
            Some(DemodSettings::default()),
        );
        let reference = common::read_f32(&dir.join("ref/envelope_notgc.f32"));
        let (p99, n) = db_p99(&envelope(out.iq.as_ref().unwrap()), &reference);
        eprintln!(
            "{name} from RF: 99th percentile |ΔdB| = {p99:.4} dB over {n} pixels above −40 dB"
        );
        assert!(
            p99 <= 1.0,
            "{name}: 99th percentile of |ΔdB| is {p99:.3} dB"
        );
    }
}

#[test]
fn pwi_disk_bmode_matches_matlab_must() {
    let Some(rf) = common::shared_data("must/PWI_disk.mat") else {
        return;
    };
    let Some(bm) = common::shared_data("must/bmode_PWI_disk.mat") else {
        return;
    };
    let Some(ctx) = common::gpu() else { return };
    let data = io::must::read_must(&rf).unwrap();
    assert_eq!((data.frames, data.channels, data.samples), (32, 128, 334));
    // MUST's example grid: x −12.5…12.5 mm, z 10…35 mm, 0.1 mm, 251 × 251.
    let grid = PixelGrid::Cartesian {
        x: (-12.5e-3, 12.5e-3),
        z: (10e-3, 35e-3),
        nx: 251,
        nz: 251,
    };
    let req = BeamformRequest {
        das: DasSettings {
            interp: Interp::Nearest,
            fnumber: FNumber::Auto,
            ..Default::default()
        },
        demodulate: Some(DemodSettings {
            convention: sonoguide::reference::filter::FiltfiltConvention::Matlab,
            ..Default::default()
        }),
        detect: DetectSettings {
            dynamic_range_db: 30.0,
            ..Default::default()
        },
        read_iq: false,
        read_envelope: false,
        read_grey: true,
        display: None,
    };
    let out = Beamformer::new(&ctx).run(&ctx, &data, &grid, &req).unwrap();
    assert!(
        (out.fnumber - 1.1248487475247932).abs() < 1e-9,
        "automatic F-number {}",
        out.fnumber
    );
    let ours = out.grey.unwrap();
    let mat = io::mat::MatFile::open(&bm).unwrap();
    let i = mat.get("I").unwrap();
    assert_eq!(i.dims, vec![251, 251, 32]);
    let theirs = i.numeric().unwrap();
    // MATLAB: I(z, x, frame), column-major; ours: [frame][z][x].
    let (mut within, mut exact) = (0usize, 0usize);
    for f in 0..32 {
        for z in 0..251 {
            for x in 0..251 {
                let a = ours[(f * 251 + z) * 251 + x] as f64;
                let b = theirs[z + 251 * (x + 251 * f)];
                within += ((a - b).abs() <= 2.0) as usize;
                exact += (a == b) as usize;
            }
        }
    }
    let n = 251 * 251 * 32;
    eprintln!(
        "PWI_disk: {:.3} % of grey levels within ±2, {:.3} % identical",
        100.0 * within as f64 / n as f64,
        100.0 * exact as f64 / n as f64
    );
    assert!(
        within as f64 >= 0.99 * n as f64,
        "only {within} of {n} grey levels within ±2"
    );
}
