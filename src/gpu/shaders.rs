//! The WGSL sources, embedded in the binary, one file per stage.
//!
//! WGSL has no include; a stage file names the shared files it needs with a
//! line `//!import shared/NAME.wgsl` and [`source`] pastes them in, so the
//! structs that several stages use are written once.

/// Every stage, by name: `shaders/NAME.wgsl`, `src/pipeline/NAME.rs`,
/// `src/reference/NAME.rs`, label `sonoguide.NAME`; and `roofline`, the
/// benchmark's measure of the adapter itself (`src/bench/roofline.rs`,
/// whose checks are its twin).
pub const STAGES: &[(&str, &str)] = &[
    ("demodulate", include_str!("../../shaders/demodulate.wgsl")),
    ("das", include_str!("../../shaders/das.wgsl")),
    ("detect", include_str!("../../shaders/detect.wgsl")),
    (
        "scan_convert",
        include_str!("../../shaders/scan_convert.wgsl"),
    ),
    ("simulate", include_str!("../../shaders/simulate.wgsl")),
    ("composite", include_str!("../../shaders/composite.wgsl")),
    ("roofline", include_str!("../../shaders/roofline.wgsl")),
];

const SHARED: &[(&str, &str)] = &[(
    "shared/acquisition.wgsl",
    include_str!("../../shaders/shared/acquisition.wgsl"),
)];

/// The full source of a stage with its imports resolved.
pub fn source(stage: &str) -> Option<String> {
    let (_, text) = STAGES.iter().find(|(n, _)| *n == stage)?;
    Some(resolve(text))
}

fn resolve(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if let Some(path) = line.trim().strip_prefix("//!import ") {
            let path = path.trim();
            match SHARED.iter().find(|(p, _)| *p == path) {
                Some((_, shared)) => {
                    out.push_str(&format!("// ---- begin {path}\n"));
                    out.push_str(shared);
                    out.push_str(&format!("\n// ---- end {path}\n"));
                }
                // Left in place: naga then reports the unknown types, which
                // names the stage; the validation test also checks imports.
                None => out.push_str(&format!("// unresolved import {path}\n")),
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Unresolved imports in a stage (for the validation test).
pub fn missing_imports(stage: &str) -> Vec<String> {
    STAGES
        .iter()
        .filter(|(n, _)| *n == stage)
        .flat_map(|(_, t)| t.lines())
        .filter_map(|l| {
            l.trim()
                .strip_prefix("//!import ")
                .map(|p| p.trim().to_string())
        })
        .filter(|p| !SHARED.iter().any(|(s, _)| s == p))
        .collect()
}

/// Compile a stage into a shader module with its stage label.
pub fn module(device: &wgpu::Device, stage: &str) -> wgpu::ShaderModule {
    let src = source(stage).unwrap_or_else(|| {
        panic!("no shader stage named `{stage}`: add it to gpu::shaders::STAGES")
    });
    device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(&format!("sonoguide.{stage}")),
        source: wgpu::ShaderSource::Wgsl(src.into()),
    })
}

/// naga's view of a stage, used by the layout tests to compare host structs
/// with the WGSL ones.
pub fn parse(stage: &str) -> Result<naga::Module, String> {
    let src = source(stage).ok_or_else(|| format!("no stage {stage}"))?;
    naga::front::wgsl::parse_str(&src).map_err(|e| e.emit_to_string(&src))
}

/// Parse and validate a stage; the error is naga's report with the source
/// line, ready to print.
pub fn validate(stage: &str) -> Result<(), String> {
    let src = source(stage).ok_or_else(|| format!("no stage {stage}"))?;
    let module = naga::front::wgsl::parse_str(&src).map_err(|e| e.emit_to_string(&src))?;
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::default(),
    )
    .validate(&module)
    .map_err(|e| e.emit_to_string(&src))?;
    Ok(())
}

/// The value of a module-scope `const NAME: u32` (or an abstract integer
/// one) of a WGSL module, for host constants that must agree with it.
pub fn wgsl_const_u32(module: &naga::Module, name: &str) -> Option<u32> {
    let (_, c) = module
        .constants
        .iter()
        .find(|(_, c)| c.name.as_deref() == Some(name))?;
    match module.global_expressions[c.init] {
        naga::Expression::Literal(naga::Literal::U32(v)) => Some(v),
        naga::Expression::Literal(naga::Literal::I32(v)) => u32::try_from(v).ok(),
        naga::Expression::Literal(naga::Literal::AbstractInt(v)) => u32::try_from(v).ok(),
        _ => None,
    }
}

/// Byte offsets and size of a WGSL struct as naga lays it out.
pub fn wgsl_layout(module: &naga::Module, name: &str) -> Option<(u32, Vec<(String, u32)>)> {
    let mut layouter = naga::proc::Layouter::default();
    layouter.update(module.to_ctx()).ok()?;
    module.types.iter().find_map(|(_, ty)| match &ty.inner {
        naga::TypeInner::Struct { members, span } if ty.name.as_deref() == Some(name) => Some((
            *span,
            members
                .iter()
                .map(|m| (m.name.clone().unwrap_or_default(), m.offset))
                .collect(),
        )),
        _ => None,
    })
}
