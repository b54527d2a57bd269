//! CPU twin of `shaders/demodulate.wgsl`: one trace at a time, f32 signal
//! path, cascaded second-order sections, the same odd extension and
//! initial states. `reference::filter` holds the f64 scipy-exact filtfilt
//! that both are checked against.

use crate::pipeline::demodulate::DemodPlan;

fn mixed(plan: &DemodPlan, rf: &[f32], k: usize) -> [f32; 2] {
    let cycles = (plan.phase0 as f32 + (plan.phase_step as f32 * k as f32).fract()).fract();
    let phase = -std::f32::consts::TAU * cycles;
    [rf[k] * phase.cos(), rf[k] * phase.sin()]
}

fn extended(plan: &DemodPlan, rf: &[f32], i: usize) -> [f32; 2] {
    let (n, p) = (rf.len(), plan.pad);
    let odd = |a: [f32; 2], b: [f32; 2]| [2.0 * a[0] - b[0], 2.0 * a[1] - b[1]];
    if i < p {
        odd(mixed(plan, rf, 0), mixed(plan, rf, p - i))
    } else if i < p + n {
        mixed(plan, rf, i - p)
    } else {
        odd(mixed(plan, rf, n - 1), mixed(plan, rf, n - 2 - (i - p - n)))
    }
}

fn run_sections(plan: &DemodPlan, z1: &mut [[f32; 2]], z2: &mut [[f32; 2]], mut v: [f32; 2]) -> [f32; 2] {
    for (s, sec) in plan.sections.iter().enumerate() {
        let mut y = [0.0; 2];
        for c in 0..2 {
            y[c] = sec.b[0] * v[c] + z1[s][c];
            z1[s][c] = sec.b[1] * v[c] - sec.a[0] * y[c] + z2[s][c];
            z2[s][c] = sec.b[2] * v[c] - sec.a[1] * y[c];
        }
        v = y;
    }
    v
}

/// RF `[trace][sample]` → IQ `[trace][sample]`.
pub fn demodulate(plan: &DemodPlan, rf: &[f32], n_samples: usize) -> Vec<[f32; 2]> {
    let traces = rf.len() / n_samples;
    let p = plan.pad;
    let len = n_samples + 2 * p;
    let ns = plan.sections.len();
    let mut out = vec![[0.0f32; 2]; rf.len()];
    let mut scratch = vec![[0.0f32; 2]; len];
    for t in 0..traces {
        let trace = &rf[t * n_samples..(t + 1) * n_samples];
        let (mut z1, mut z2) = (vec![[0.0f32; 2]; ns], vec![[0.0f32; 2]; ns]);
        let x0 = extended(plan, trace, 0);
        for (s, sec) in plan.sections.iter().enumerate() {
            z1[s] = [sec.a[2] * x0[0], sec.a[2] * x0[1]];
            z2[s] = [sec.a[3] * x0[0], sec.a[3] * x0[1]];
        }
        for (i, slot) in scratch.iter_mut().enumerate() {
            *slot = run_sections(plan, &mut z1, &mut z2, extended(plan, trace, i));
        }
        let y0 = scratch[len - 1];
        for (s, sec) in plan.sections.iter().enumerate() {
            z1[s] = [sec.a[2] * y0[0], sec.a[2] * y0[1]];
            z2[s] = [sec.a[3] * y0[0], sec.a[3] * y0[1]];
        }
        for j in 0..len {
            let i = len - 1 - j;
            let v = run_sections(plan, &mut z1, &mut z2, scratch[i]);
            if i >= p && i < p + n_samples {
                out[t * n_samples + i - p] = [2.0 * v[0], 2.0 * v[1]];
            }
        }
    }
    out
}
