//! Shared test helpers: the GPU context, the reference-data folder, and
//! small synthetic acquisitions made with the simulator.
#![allow(dead_code)]

use std::path::PathBuf;

use glam::DVec3;
use sonoguide::acquisition::{Acquisition, Probe, Wave, Wavefront};
use sonoguide::gpu::GpuContext;

/// The GPU (lavapipe on CI). Without one, tests skip with a message on a
/// developer machine but fail under CI, where lavapipe must be installed.
pub fn gpu() -> Option<GpuContext> {
    match GpuContext::new(None) {
        Ok(ctx) => Some(ctx),
        Err(e) if std::env::var("CI").is_err() => {
            eprintln!("SKIPPED: no GPU adapter ({e})");
            None
        }
        Err(e) => panic!("CI must have a GPU adapter (lavapipe): {e}"),
    }
}

/// `../shared/data` next to the project, or skip with a message.
pub fn shared_data(rel: &str) -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("SKIPPED: reference data {} is absent", p.display());
        None
    }
}

pub fn read_f32(path: &std::path::Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// A small linear-array acquisition with one wave of every kind.
pub fn small_linear(n_el: usize) -> Acquisition {
    let pitch = 0.3e-3;
    let c = 1540.0;
    let half = (n_el as f64 - 1.0) / 2.0 * pitch;
    let a = 10f64.to_radians();
    Acquisition {
        probe: Probe::linear(n_el, pitch, 0.27e-3, 5e-3),
        waves: vec![
            Wave {
                wavefront: Wavefront::Plane { azimuth: 0.0 },
                delay: 0.0,
            },
            Wave {
                wavefront: Wavefront::Plane { azimuth: a },
                delay: -(half * a.sin()) / c,
            },
            Wave {
                wavefront: Wavefront::Diverging {
                    source: DVec3::new(0.002, 0.0, -0.01),
                },
                delay: -2e-7,
            },
            Wave {
                wavefront: Wavefront::Focused {
                    focus: DVec3::new(0.0, 0.0, 0.012),
                },
                delay: 0.0,
            },
        ],
        sampling_frequency: 20e6,
        initial_time: 1e-6,
        modulation_frequency: 0.0,
        center_frequency: 5e6,
        bandwidth: 0.7,
        sound_speed: c,
        prf: 0.0,
    }
}

/// A convex acquisition in MUST's convention with two diverging waves.
pub fn small_convex(n_el: usize) -> Acquisition {
    let probe = Probe::convex_must(n_el, 0.5e-3, 0.02, 0.45e-3, 5e-3);
    let sonoguide::acquisition::ProbeKind::Convex { center, .. } = probe.kind else {
        unreachable!()
    };
    let c = 1540.0;
    let waves = [-5.0f64, 5.0]
        .iter()
        .map(|deg| {
            let t = deg.to_radians();
            let vs = DVec3::new(center[0] - 0.02 * t.sin(), 0.0, center[1] + 0.002);
            Wave::from_must_delays(&probe, &vec![0.0; n_el], c, Some(vs)).unwrap()
        })
        .collect();
    Acquisition {
        probe,
        waves,
        sampling_frequency: 16e6,
        initial_time: 0.0,
        modulation_frequency: 0.0,
        center_frequency: 4e6,
        bandwidth: 0.6,
        sound_speed: c,
        prf: 0.0,
    }
}
