//! Each GPU stage against its CPU twin on data the simulator makes, on
//! whatever adapter is present (lavapipe in CI). Tolerances are stated per
//! stage: the shaders compute in f32, the twins (das) in f64.

mod common;

use glam::DVec3;
use sonoguide::acquisition::{ChannelData, PixelGrid, Samples};
use sonoguide::gpu::GpuContext;
use sonoguide::pipeline::das::{Das, DasPlan, DasTiling, FLAG_IQ};
use sonoguide::pipeline::demodulate::DemodPlan;
use sonoguide::pipeline::scan_convert::ScanConvertParams;
use sonoguide::pipeline::{
    Apodization, Beamformer, DasSettings, DemodSettings, DetectSettings, DisplayGrid, FNumber,
    GpuChannels, Interp, Transmit,
};
use sonoguide::reference;
use sonoguide::sim::{point_echoes, Rng, Scatterer};

fn scatterers() -> Vec<Scatterer> {
    let mut rng = Rng::new(3);
    let mut s: Vec<Scatterer> = (0..60)
        .map(|_| Scatterer {
            position: DVec3::new(
                -0.006 + 0.012 * rng.next_f64(),
                0.0,
                0.004 + 0.016 * rng.next_f64(),
            ),
            amplitude: rng.normal(),
        })
        .collect();
    s.push(Scatterer {
        position: DVec3::new(0.001, 0.0, 0.01),
        amplitude: 20.0,
    });
    s
}

fn encode_submit<T>(ctx: &GpuContext, f: impl FnOnce(&mut wgpu::CommandEncoder) -> T) -> T {
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    let out = f(&mut enc);
    ctx.queue.submit([enc.finish()]);
    out
}

fn channels_f32(d: &ChannelData) -> (Vec<f32>, bool) {
    match &d.data {
        Samples::Rf(v) => (v.clone(), false),
        Samples::Iq(v) => (v.iter().flat_map(|c| [c[0], c[1]]).collect(), true),
    }
}

/// Largest |a| of complex f32 samples, and largest |a − b|.
fn peak_f32(a: &[[f32; 2]]) -> f32 {
    a.iter().map(|c| c[0].hypot(c[1])).fold(0.0, f32::max)
}

fn max_diff_f32(a: &[[f32; 2]], b: &[[f32; 2]]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(g, c)| (g[0] - c[0]).hypot(g[1] - c[1]))
        .fold(0.0, f32::max)
}

/// max |gpu − cpu| / max |cpu| over all pixels.
fn rel_err(gpu: &[[f32; 2]], cpu: &[[f64; 2]]) -> f64 {
    let peak = cpu.iter().map(|c| c[0].hypot(c[1])).fold(0.0, f64::max);
    assert!(
        peak > 0.0,
        "the CPU image is all zero: the test would prove nothing"
    );
    gpu.iter()
        .zip(cpu)
        .map(|(g, c)| (g[0] as f64 - c[0]).hypot(g[1] as f64 - c[1]))
        .fold(0.0, f64::max)
        / peak
}

#[test]
fn demodulate_matches_cpu_twin() {
    let Some(ctx) = common::gpu() else { return };
    let acq = common::small_linear(16);
    let data = point_echoes(&acq, &scatterers(), 600, 3);
    let plan = DemodPlan::new(&acq, &DemodSettings::default()).unwrap();
    let dm = sonoguide::pipeline::demodulate::Demodulate::new(&ctx.device);
    let up = GpuChannels::upload(&ctx, &data).unwrap();
    let iq = encode_submit(&ctx, |enc| dm.encode(&ctx, enc, &up, &plan).unwrap());
    let gpu: Vec<[f32; 2]> = ctx
        .read_buffer(&iq.buffer, data.traces() * data.samples)
        .unwrap();
    let (rf, _) = channels_f32(&data);
    let cpu =
        reference::demodulate::demodulate(&rf, data.traces(), data.samples, &plan.params).unwrap();
    // And both against the f64 scipy-exact filtfilt, trace by trace.
    let f64_ref = reference::filter::rf2iq_trace(
        &rf[..data.samples]
            .iter()
            .map(|v| *v as f64)
            .collect::<Vec<_>>(),
        acq.sampling_frequency,
        acq.center_frequency,
        acq.initial_time,
        Some(70.0),
        reference::filter::FiltfiltConvention::Scipy,
    )
    .unwrap();
    let pk = f64_ref.iter().map(|c| c[0].hypot(c[1])).fold(0.0, f64::max);
    let e64 = gpu[..data.samples]
        .iter()
        .zip(&f64_ref)
        .map(|(g, c)| (g[0] as f64 - c[0]).hypot(g[1] as f64 - c[1]))
        .fold(0.0, f64::max);
    assert!(
        e64 <= 1e-4 * pk,
        "demodulate vs f64 filtfilt: {e64} of peak {pk}"
    );
    let peak = peak_f32(&cpu);
    let err = max_diff_f32(&gpu, &cpu);
    // Both are f32 with the same operation order; only transcendental
    // functions (cos/sin of the mixing phase) differ between CPU and GPU.
    assert!(
        err <= 1e-4 * peak,
        "demodulate: max error {err} vs peak {peak}"
    );
}

/// Traces cut into chunks (what a GPU gets: one invocation per chunk, each
/// warming its filter up from `warmup` samples early) give the whole-trace
/// filter's IQ to 1e-6 of the peak, far under the twin's 1e-4: chunks of
/// 1, 37 and 150 samples, on 3 × 16 traces of 600 (plus padding), and a
/// chunk as long as the trace, which is the sequential filter, bit for bit.
#[test]
fn demodulate_in_chunks_matches_whole_traces() {
    let Some(ctx) = common::gpu() else { return };
    let acq = common::small_linear(16);
    let data = point_echoes(&acq, &scatterers(), 600, 3);
    let plan = DemodPlan::new(&acq, &DemodSettings::default()).unwrap();
    assert!(
        plan.warmup > 8 && plan.warmup < 600,
        "warm-up {} samples for this filter",
        plan.warmup
    );
    let dm = sonoguide::pipeline::demodulate::Demodulate::new(&ctx.device);
    let up = GpuChannels::upload(&ctx, &data).unwrap();
    let run = |chunk: Option<usize>| -> Vec<[f32; 2]> {
        dm.set_chunk(chunk);
        let iq = encode_submit(&ctx, |enc| dm.encode(&ctx, enc, &up, &plan).unwrap());
        ctx.read_buffer(&iq.buffer, data.traces() * data.samples)
            .unwrap()
    };
    let whole = run(Some(usize::MAX));
    let peak = peak_f32(&whole);
    assert!(peak > 0.0);
    for chunk in [1, 37, 150] {
        let err = max_diff_f32(&run(Some(chunk)), &whole);
        assert!(
            err <= 1e-6 * peak,
            "chunks of {chunk}: max error {err:e} vs peak {peak:e}"
        );
    }
    let len = plan.extended_len(data.samples);
    assert_eq!(
        run(Some(len)),
        whole,
        "one chunk per trace is the sequential filter"
    );
}

/// RF streamed as int16 (`Encoding::I16`, what `hfr --int16` uploads):
/// demodulated, it gives the IQ of its dequantised f32 values bit for
/// bit, on traces of an odd length (so that traces start in either half
/// of a word), and the quantisation itself is within half a step of the
/// RF. DAS refuses int16 samples rather than misreading them.
#[test]
fn int16_rf_demodulates_as_its_f32_values() {
    use sonoguide::pipeline::{quantize_i16, Encoding};
    let Some(ctx) = common::gpu() else { return };
    let acq = common::small_linear(16);
    let mut data = point_echoes(&acq, &scatterers(), 601, 2);
    let Samples::Rf(rf) = &data.data else {
        panic!("point echoes are RF")
    };
    let (ints, scale) = quantize_i16(rf);
    let peak = rf.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert_eq!(ints.iter().map(|i| i.unsigned_abs()).max(), Some(32767));
    let restored: Vec<f32> = ints.iter().map(|&i| i as f32 * scale).collect();
    let q = rf
        .iter()
        .zip(&restored)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        q <= 0.5001 * scale && q > 0.0,
        "quantisation error {q:e}, step {scale:e}"
    );
    assert!(scale <= peak / 32000.0);

    let plan = DemodPlan::new(&acq, &DemodSettings::default()).unwrap();
    let dm = sonoguide::pipeline::demodulate::Demodulate::new(&ctx.device);
    let n = data.traces() * data.samples;
    let iq_of = |channels: &GpuChannels| -> Vec<[f32; 2]> {
        let iq = encode_submit(&ctx, |enc| dm.encode(&ctx, enc, channels, &plan).unwrap());
        ctx.read_buffer(&iq.buffer, n).unwrap()
    };
    data.data = Samples::Rf(restored);
    let f32_iq = iq_of(&GpuChannels::upload(&ctx, &data).unwrap());
    let mut words = ints.clone();
    words.resize(ints.len().next_multiple_of(2), 0);
    let i16_channels = GpuChannels {
        buffer: ctx.storage_from("test.int16", &words).unwrap(),
        encoding: Encoding::I16 { scale },
        ..GpuChannels::upload(&ctx, &data).unwrap()
    };
    let i16_iq = iq_of(&i16_channels);
    assert!(f32_iq.iter().any(|c| c[0] != 0.0));
    assert!(
        i16_iq == f32_iq,
        "int16 RF demodulates differently from its f32 values"
    );

    let das = Das::new(&ctx.device);
    let pixels = vec![[0.0f32, 10e-3]];
    let dplan = DasPlan::new(&acq, &DasSettings::default(), 0.0, 1, 2).unwrap();
    let geom = encode_submit(&ctx, |enc| {
        das.prepare(&ctx, enc, &dplan, &pixels, data.samples, 2, false)
            .unwrap()
    });
    let err = das
        .target(&ctx, &geom, &i16_channels)
        .err()
        .expect("das refuses int16 samples");
    assert!(err.to_string().contains("demodulate them first"), "{err}");
}

/// One DAS case against the twin. `das` is shared across cases: its
/// specialised pipelines compile once (lavapipe takes ~0.5 s for each).
fn das_case(
    ctx: &GpuContext,
    das: &Das,
    data: &ChannelData,
    pixels: &[[f32; 2]],
    s: &DasSettings,
    f_mod: f64,
) -> f64 {
    let plan = DasPlan::new(&data.acquisition, s, f_mod, pixels.len(), data.frames).unwrap();
    let up = GpuChannels::upload(ctx, data).unwrap();
    let img = encode_submit(ctx, |enc| das.encode(ctx, enc, &up, &plan, pixels).unwrap());
    let gpu: Vec<[f32; 2]> = ctx.read_buffer(&img, pixels.len() * data.frames).unwrap();
    let (ch, iq) = channels_f32(data);
    let cpu = reference::das::das(&plan, &ch, iq, data.samples, data.frames, pixels, None);
    rel_err(&gpu, &cpu)
}

/// The DAS cases' data: 10 frames of RF from point echoes on a 24-element
/// linear array (more than one block of FRAMES_PER_THREAD), the same as IQ
/// (the CPU demodulation) with its modulation frequency, and a 33 × 41 grid.
fn das_data() -> (ChannelData, ChannelData, f64, Vec<[f32; 2]>) {
    let acq = common::small_linear(24);
    let rf = point_echoes(&acq, &scatterers(), 700, 10);
    let plan = DemodPlan::new(&acq, &DemodSettings::default()).unwrap();
    let (rf_v, _) = channels_f32(&rf);
    let mut iq = rf.clone();
    iq.data = Samples::Iq(
        reference::demodulate::demodulate(&rf_v, rf.traces(), rf.samples, &plan.params).unwrap(),
    );
    iq.acquisition.modulation_frequency = plan.fc;
    let grid = PixelGrid::Cartesian {
        x: (-0.008, 0.008),
        z: (0.003, 0.022),
        nx: 33,
        nz: 41,
    };
    (rf, iq, plan.fc, grid.positions_f32())
}

/// Every interpolation, apodization, aperture and transmit model, RF and
/// IQ, at the adapter's own tiling and at one pixel per invocation (a
/// GPU's default, whose window holds exactly the taps' rows).
#[test]
fn das_matches_cpu_twin_for_every_setting() {
    let Some(ctx) = common::gpu() else { return };
    let (rf, iq, fc, pixels) = das_data();
    let das = Das::new(&ctx.device);
    let mut failures = Vec::new();
    let one_pixel = DasTiling {
        pixels_per_invocation: 1,
        row_vec4: 4,
        window_span: 0,
        f16_rows: false,
        element_split: 1,
    };
    for (tiling, interp) in [None, Some(one_pixel)]
        .into_iter()
        .flat_map(|t| [Interp::Nearest, Interp::Linear, Interp::Cubic].map(|i| (t, i)))
    {
        das.set_tiling(tiling).unwrap();
        for apodization in [
            Apodization::Boxcar,
            Apodization::Hann,
            Apodization::Tukey(0.4),
        ] {
            // F = 1.37, not a round number: with F = 1.5 some elements sit exactly on
            // the aperture edge of this grid, where f32 and f64 decide differently
            // and a boxcar weight jumps from 0 to 1.
            for (fnumber, normalize) in [
                (FNumber::Fixed(1.37), false),
                (FNumber::Auto, true),
                (FNumber::Full, false),
            ] {
                let s = DasSettings {
                    interp,
                    apodization,
                    fnumber,
                    normalize,
                    transmit: if normalize {
                        Transmit::Must
                    } else {
                        Transmit::Analytic
                    },
                };
                for (name, data, f_mod) in [("rf", &rf, 0.0), ("iq", &iq, fc)] {
                    let err = das_case(&ctx, &das, data, &pixels, &s, f_mod);
                    // f32 delays: 1e-12 s error on 20 MHz sampling and a 5 MHz
                    // phase is ~3e-5 rad; nearest can flip a tap at exact
                    // half-samples, which the looser bound allows.
                    let tol = if interp == Interp::Nearest {
                        2e-2
                    } else {
                        2e-4
                    };
                    if err.is_nan() || err > tol {
                        failures.push(format!(
                            "{name} {s:?} tiling {tiling:?}: relative error {err:.2e} > {tol:.0e}"
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn scaled(d: &ChannelData, k: f32) -> ChannelData {
    let mut out = d.clone();
    out.data = match &d.data {
        Samples::Rf(v) => Samples::Rf(v.iter().map(|x| x * k).collect()),
        Samples::Iq(v) => Samples::Iq(v.iter().map(|c| [c[0] * k, c[1] * k]).collect()),
    };
    out
}

/// f16 rows (half the bytes per tap) against the f64 twin, at amplitudes
/// from 1e-12 to 1e9: the rows are scaled by a power of two from the
/// batch's peak, so neither f16's underflow (below 6e-8) nor its overflow
/// (above 65504) is reached, and the error stays that of an 11-bit
/// significand whatever the units of the data. Every tiling that stores
/// rows differently: 2 and 8 vec4 per row (4 and 16 frames per block;
/// 10 frames leave a partial block), 1 and 8 pixels per invocation.
#[test]
fn das_f16_rows_match_cpu_twin_at_any_scale() {
    let Some(ctx) = common::gpu() else { return };
    let (rf, iq, fc, pixels) = das_data();
    let s = DasSettings {
        apodization: Apodization::Hann,
        fnumber: FNumber::Fixed(1.37),
        transmit: Transmit::Analytic,
        ..Default::default()
    };
    let das = Das::new(&ctx.device);
    let mut failures = Vec::new();
    let mut worst: f64 = 0.0;
    // The second asks through the preference the display and hfr use.
    for (ppi, row_vec4, preference) in [(1, 2, false), (8, 8, true)] {
        das.set_tiling(Some(DasTiling {
            pixels_per_invocation: ppi,
            row_vec4,
            window_span: 0,
            f16_rows: !preference,
            element_split: 1,
        }))
        .unwrap();
        das.set_f16_rows(preference);
        for k in [1e-12f32, 1.0, 1e9] {
            for (name, data, f_mod) in [("rf", &rf, 0.0), ("iq", &iq, fc)] {
                let err = das_case(&ctx, &das, &scaled(data, k), &pixels, &s, f_mod);
                worst = worst.max(err);
                // f16 keeps 11 bits: 2^-11 = 4.9e-4 of each sample; the sum
                // over elements and taps averages the rounding down.
                if err.is_nan() || err > 1e-3 {
                    failures.push(format!(
                        "{name} × {k:e}, {ppi} px/inv, {row_vec4} vec4/row: relative error {err:.2e} > 1e-3"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("f16 rows: worst relative error {worst:.2e}");
}

/// The element loop split among 2 and 8 threads per pixel (their parts
/// summed through workgroup memory) against the twin: RF and IQ, Hann and
/// boxcar, with f32 and f16 rows. The sum's order is not one thread's,
/// so neither are the last bits; the twin's tolerance holds.
#[test]
fn das_with_a_split_element_loop_matches_cpu_twin() {
    let Some(ctx) = common::gpu() else { return };
    let (rf, iq, fc, pixels) = das_data();
    let das = Das::new(&ctx.device);
    let mut failures = Vec::new();
    for (split, f16_rows) in [(2, false), (8, false), (4, true)] {
        das.set_tiling(Some(DasTiling {
            pixels_per_invocation: 1,
            row_vec4: 2,
            window_span: 2,
            f16_rows,
            element_split: split,
        }))
        .unwrap();
        for apodization in [Apodization::Boxcar, Apodization::Hann] {
            let s = DasSettings {
                apodization,
                fnumber: FNumber::Fixed(1.37),
                transmit: Transmit::Analytic,
                ..Default::default()
            };
            for (name, data, f_mod) in [("rf", &rf, 0.0), ("iq", &iq, fc)] {
                let err = das_case(&ctx, &das, data, &pixels, &s, f_mod);
                let tol = if f16_rows { 1e-3 } else { 2e-4 };
                if err.is_nan() || err > tol {
                    failures.push(format!(
                        "split {split}, f16 {f16_rows}, {name} {apodization:?}: relative error {err:.2e} > {tol:.0e}"
                    ));
                }
            }
        }
    }
    // More than one thread per invocation needs one pixel per invocation.
    assert!(das
        .set_tiling(Some(DasTiling {
            pixels_per_invocation: 8,
            row_vec4: 2,
            window_span: 2,
            f16_rows: false,
            element_split: 2,
        }))
        .is_err());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn das_convex_matches_cpu_twin() {
    let Some(ctx) = common::gpu() else { return };
    let acq = common::small_convex(32);
    let rf = point_echoes(
        &acq,
        &scatterers()
            .iter()
            .map(|s| Scatterer {
                position: s.position + DVec3::new(0.0, 0.0, 0.006),
                ..*s
            })
            .collect::<Vec<_>>(),
        900,
        2,
    );
    let sonoguide::acquisition::ProbeKind::Convex { center, radius } = acq.probe.kind else {
        unreachable!()
    };
    let grid = PixelGrid::Polar {
        origin: center,
        radius: (radius + 0.001, radius + 0.03),
        angle: (-0.5, 0.5),
        nr: 50,
        na: 40,
    };
    let s = DasSettings {
        fnumber: FNumber::Fixed(1.0),
        ..Default::default()
    };
    let err = das_case(
        &ctx,
        &Das::new(&ctx.device),
        &rf,
        &grid.positions_f32(),
        &s,
        0.0,
    );
    assert!(err <= 2e-4, "convex das relative error {err:.2e}");
}

#[test]
fn detect_matches_cpu_twin() {
    let Some(ctx) = common::gpu() else { return };
    let mut rng = Rng::new(11);
    let mut iq: Vec<[f32; 2]> = (0..5000)
        .map(|_| [(rng.normal() * 1e3) as f32, (rng.normal() * 1e3) as f32])
        .collect();
    // The largest envelope in the last sample, in a partial tile of the
    // envelope pass's 4 096-sample tiles: a reduction that misses it
    // shifts every grey level.
    iq[4999] = [8e3, -8e3];
    let det = sonoguide::pipeline::detect::Detect::new(&ctx.device);
    for s in [
        DetectSettings::default(),
        DetectSettings {
            gain_db: 6.0,
            dynamic_range_db: 60.0,
            reference: Some(2000.0),
        },
    ] {
        let buf = ctx.storage_from("iq", &iq).unwrap();
        let out = encode_submit(&ctx, |enc| {
            det.encode(&ctx, enc, &buf, iq.len(), &s).unwrap()
        });
        let env: Vec<f32> = ctx.read_buffer(&out.envelope, iq.len()).unwrap();
        let grey: Vec<f32> = ctx.read_buffer(&out.grey, iq.len()).unwrap();
        let (cenv, cgrey) = reference::detect::detect(&s.params(iq.len()).unwrap(), &iq);
        for i in 0..iq.len() {
            assert!(
                (env[i] - cenv[i]).abs() <= 1e-5 * cenv[i].abs().max(1.0),
                "envelope {i}: {} vs {}",
                env[i],
                cenv[i]
            );
            // GPU log2 vs CPU log10 in f64: a level can land on the other side of .5.
            assert!(
                (grey[i] - cgrey[i]).abs() <= 1.0,
                "grey {i}: {} vs {}",
                grey[i],
                cgrey[i]
            );
        }
        let exact = grey.iter().zip(&cgrey).filter(|(a, b)| a == b).count();
        assert!(
            exact as f64 >= 0.995 * iq.len() as f64,
            "only {exact} of {} grey levels identical",
            iq.len()
        );
    }
}

#[test]
fn scan_convert_matches_cpu_twin() {
    let Some(ctx) = common::gpu() else { return };
    let sc = sonoguide::pipeline::scan_convert::ScanConvert::new(&ctx.device);
    let polar = PixelGrid::Polar {
        origin: [0.0, -0.02],
        radius: (0.021, 0.06),
        angle: (-0.6, 0.6),
        nr: 80,
        na: 50,
    };
    // A linear probe's rectangle onto a display that overhangs it on every
    // side and samples it at another pitch.
    let cartesian = PixelGrid::Cartesian {
        x: (-0.01, 0.01),
        z: (0.005, 0.03),
        nx: 40,
        nz: 60,
    };
    let cart_display = DisplayGrid {
        width: 90,
        height: 110,
        x0: -0.011,
        z0: 0.004,
        dx: 0.00025,
        dz: 0.00025,
    };
    for (input, display, min_inside) in [
        (
            polar.clone(),
            DisplayGrid::covering(&polar, 120).unwrap(),
            1.0 / 3.0,
        ),
        (cartesian, cart_display, 0.5),
    ] {
        let mut rng = Rng::new(5);
        let frames = 2;
        let grey: Vec<f32> = (0..frames * input.len())
            .map(|_| (rng.next_f64() * 255.0).floor() as f32)
            .collect();
        let buf = ctx.storage_from("grey", &grey).unwrap();
        let out = encode_submit(&ctx, |enc| {
            sc.encode(&ctx, enc, &buf, &input, &display, 1).unwrap()
        });
        let gpu: Vec<u32> = ctx
            .read_buffer(&out, display.width * display.height)
            .unwrap();
        let cpu = reference::scan_convert::scan_convert(
            &ScanConvertParams::new(&input, &display, 1).unwrap(),
            &grey,
        );
        let inside = cpu.iter().filter(|p| *p >> 24 == 255).count();
        let total = display.width * display.height;
        assert!(
            inside as f64 > min_inside * total as f64 && inside < total,
            "{input:?}: the image covers {inside} of {total} display pixels"
        );
        let mut edge = 0;
        for (g, c) in gpu.iter().zip(&cpu) {
            if (g >> 24) != (c >> 24) {
                // A pixel on the image's border can fall either side in f32.
                edge += 1;
                continue;
            }
            assert!(
                ((g & 255) as i32 - (c & 255) as i32).abs() <= 1,
                "grey {} vs {}",
                g & 255,
                c & 255
            );
        }
        assert!(
            edge <= display.width + display.height,
            "{edge} pixels differ in coverage"
        );
    }
}

#[test]
fn beamformer_focuses_a_point_where_it_is() {
    let Some(ctx) = common::gpu() else { return };
    let acq = common::small_linear(48);
    let target = DVec3::new(0.0015, 0.0, 0.012);
    let data = point_echoes(
        &acq,
        &[Scatterer {
            position: target,
            amplitude: 1.0,
        }],
        800,
        1,
    );
    let grid = PixelGrid::Cartesian {
        x: (-0.005, 0.005),
        z: (0.007, 0.017),
        nx: 101,
        nz: 101,
    };
    let bf = Beamformer::new(&ctx);
    let out = bf.run(&ctx, &data, &grid, &Default::default()).unwrap();
    let env = out.envelope.unwrap();
    let (i, _) = env
        .iter()
        .enumerate()
        .fold((0, 0.0f32), |a, (i, &v)| if v > a.1 { (i, v) } else { a });
    let pos = grid.positions()[i];
    let lambda = acq.sound_speed / acq.center_frequency;
    let err = ((pos[0] - target.x).powi(2) + (pos[1] - target.z).powi(2)).sqrt();
    assert!(
        err <= lambda / 4.0,
        "peak at ({:.4}, {:.4}) mm, target ({:.4}, {:.4}) mm",
        pos[0] * 1e3,
        pos[1] * 1e3,
        target.x * 1e3,
        target.z * 1e3
    );
    let _ = FLAG_IQ;
}
