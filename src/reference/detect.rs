//! CPU twin of `shaders/detect.wgsl`.

use crate::pipeline::detect::DetectParams;

/// Envelope (with gain) and grey levels of `iq`, normalised like the shader.
pub fn detect(params: &DetectParams, iq: &[[f32; 2]]) -> (Vec<f32>, Vec<f32>) {
    let env: Vec<f32> = iq
        .iter()
        .map(|v| params.gain * (v[0] * v[0] + v[1] * v[1]).sqrt())
        .collect();
    let reference = if params.fixed_reference != 0 {
        params.reference
    } else {
        env.iter().copied().filter(|e| *e > 0.0).fold(0.0, f32::max)
    };
    let dr = params.dynamic_range_db as f64;
    let grey = env
        .iter()
        .map(|&e| {
            if e.is_nan() || e <= 0.0 || reference.is_nan() || reference <= 0.0 {
                return 0.0;
            }
            let db = 20.0 * (e as f64 / reference as f64).log10();
            (255.0 * (db + dr) / dr + 0.5).floor().clamp(0.0, 255.0) as f32
        })
        .collect();
    (env, grey)
}
