//! Every WGSL stage parses and validates with naga (no GPU needed), and
//! every host struct that mirrors a WGSL struct has the same size and
//! field offsets as naga's layout of it. All failures are reported at once.

use std::mem::{offset_of, size_of};

use sonoguide::bench::roofline;
use sonoguide::gpu::shaders::{self, STAGES};
use sonoguide::pipeline::{das, demodulate, detect, scan_convert, simulate};
use sonoguide::render::compositor;

#[test]
fn every_stage_validates() {
    let mut failures = Vec::new();
    for (stage, _) in STAGES {
        for m in shaders::missing_imports(stage) {
            failures.push(format!("{stage}: unknown import {m}"));
        }
        if let Err(e) = shaders::validate(stage) {
            failures.push(format!("{stage}:\n{e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "shader validation failed:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_shader_file_is_a_stage() {
    // A WGSL file that is not in STAGES would never be validated or built.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) == Some("wgsl") {
            let name = path.file_stem().unwrap().to_str().unwrap().to_string();
            assert!(
                STAGES.iter().any(|(s, _)| *s == name),
                "shaders/{name}.wgsl is not listed in gpu::shaders::STAGES"
            );
        }
    }
}

/// (struct name in WGSL, stage that declares it, host size, host (field, offset) list)
type Layout = (
    &'static str,
    &'static str,
    usize,
    Vec<(&'static str, usize)>,
);

macro_rules! host {
    ($wgsl:literal, $stage:literal, $ty:ty { $($field:ident),* $(,)? }) => {
        ($wgsl, $stage, size_of::<$ty>(), vec![$((stringify!($field), offset_of!($ty, $field))),*])
    };
}

/// Sizes that the host and a shader both fix (arrays, tiles) and that
/// carry a "keep in sync" comment on both sides.
#[test]
fn host_constants_match_wgsl() {
    let pairs: [(&str, &str, usize); 10] = [
        ("das", "MAX_ELEMENTS", das::MAX_ELEMENTS),
        ("das", "MAX_WAVES", das::MAX_WAVES),
        (
            "detect",
            "ENVELOPE_PER_INVOCATION",
            detect::ENVELOPE_PER_INVOCATION,
        ),
        ("demodulate", "MAX_SECTIONS", demodulate::MAX_SECTIONS),
        ("simulate", "MAX_FREQ", simulate::MAX_FREQ),
        ("simulate", "MAX_SEGMENTS", sonoguide::sim::MAX_SEGMENTS),
        ("simulate", "WG", simulate::TRANSMIT_WORKGROUP as usize),
        ("simulate", "TILE", simulate::RECEIVE_TILE as usize),
        ("simulate", "WINDOW", simulate::RECEIVE_WINDOW as usize),
        ("roofline", "UNROLL", roofline::FMA_UNROLL as usize),
    ];
    let mut failures = Vec::new();
    for (stage, name, host) in pairs {
        let module = shaders::parse(stage).unwrap_or_else(|e| panic!("{stage}: {e}"));
        match shaders::wgsl_const_u32(&module, name) {
            Some(v) if v as usize == host => {}
            Some(v) => failures.push(format!("{stage}.wgsl {name} = {v}, the host's {host}")),
            None => failures.push(format!("{stage}.wgsl: no u32 const {name}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn host_structs_match_wgsl_layouts() {
    let layouts: Vec<Layout> = vec![
        host!(
            "DasParams",
            "das",
            das::DasParams {
                n_pixels,
                n_elements,
                n_waves,
                n_samples,
                n_frames,
                interp,
                apodization,
                flags,
                fs,
                t0,
                inv_c,
                f_mod,
                aperture,
                tukey,
                transmit,
                _pad0
            }
        ),
        host!("Element", "das", das::GpuElement { position, normal }),
        host!(
            "RooflineParams",
            "roofline",
            roofline::RooflineParams {
                iterations,
                mask,
                stride,
                one
            }
        ),
        host!(
            "Wave",
            "das",
            das::GpuWave {
                geometry,
                kind,
                delay,
                table_start,
                table_len
            }
        ),
        host!(
            "DetectParams",
            "detect",
            detect::DetectParams {
                n,
                fixed_reference,
                gain,
                dynamic_range_db,
                reference,
                _pad0,
                _pad1,
                _pad2
            }
        ),
        host!(
            "ScanConvertParams",
            "scan_convert",
            scan_convert::ScanConvertParams {
                n_radius,
                n_angle,
                width,
                height,
                origin,
                radius0,
                radius_step,
                angle0,
                angle_step,
                x0,
                dx,
                z0,
                dz,
                frame,
                cartesian
            }
        ),
        host!(
            "DemodulateParams",
            "demodulate",
            demodulate::DemodulateParams {
                n_traces,
                n_samples,
                pad,
                n_sections,
                phase0,
                phase_step,
                scale,
                chunk,
                n_chunks,
                warmup,
                rf_i16,
                rf_scale
            }
        ),
        host!("Section", "demodulate", demodulate::GpuSection { b, a }),
        host!(
            "SimulateParams",
            "simulate",
            simulate::SimulateParams {
                n_elements,
                n_segments,
                n_waves,
                n_samples,
                batch_start,
                batch_len,
                n_freq,
                n_taps,
                flags,
                baffle,
                n_frames,
                noise_seed,
                off_waves,
                off_fire,
                off_spectrum,
                wave_start,
                fs,
                t0,
                inv_c,
                fc,
                kc,
                f_step,
                fs_taps,
                tap0,
                alpha,
                seg_len,
                small_d,
                baffle_b,
                inv_height2,
                inv_focus,
                width_2d,
                rx_cap,
                noise_level,
                z_min,
                convex_x,
                convex_z,
                convex_r2,
                pulse_lo,
                pulse_hi,
                wave_end
            }
        ),
        host!(
            "FrameUniform",
            "composite",
            compositor::FrameUniform {
                view_proj,
                light,
                target_size,
                _pad0,
                _pad1
            }
        ),
        host!(
            "ImageUniform",
            "composite",
            compositor::ImageUniform {
                clip_from_uv,
                width,
                height,
                chain_range_db,
                gain_db,
                range_db,
                dim,
                opacity,
                _pad0,
                tgc
            }
        ),
    ];
    let mut failures = Vec::new();
    for (name, stage, size, fields) in layouts {
        let module = shaders::parse(stage).unwrap_or_else(|e| panic!("{stage}: {e}"));
        let Some((span, members)) = shaders::wgsl_layout(&module, name) else {
            failures.push(format!("{stage}: no struct {name}"));
            continue;
        };
        if span as usize != size {
            failures.push(format!("{name}: WGSL size {span}, host size {size}"));
        }
        let wgsl: Vec<(String, usize)> =
            members.into_iter().map(|(n, o)| (n, o as usize)).collect();
        let host: Vec<(String, usize)> = fields
            .into_iter()
            .map(|(n, o)| (n.to_string(), o))
            .collect();
        if wgsl != host {
            failures.push(format!(
                "{name}: WGSL fields {wgsl:?}\n  host fields {host:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "layout mismatches:\n{}",
        failures.join("\n")
    );
}
