//! What `sonoguide bench` writes: a table on the terminal, JSON (one
//! object, field names stable for other tools), CSV (one row per measured
//! configuration) and an SVG plot of throughput against problem size.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::BenchError;

/// One measured configuration (the reference workload or a sweep point).
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// `reference`, or the swept quantity: `pixels`, `channels`, `waves`, `frames`.
    pub series: String,
    /// The DAS tiling it ran with ([`super::tune::label`]).
    pub tiling: String,
    pub workload: String,
    pub pixels: usize,
    pub channels: usize,
    pub waves: usize,
    pub frames: usize,
    pub samples: usize,
    /// pixels × channels × waves × frames.
    pub points: f64,
    pub median_kernel_s: f64,
    pub median_layout_s: f64,
    pub median_wall_s: f64,
    pub points_per_s: f64,
    pub mach_factor: f64,
    /// Process CPU seconds per run (software adapters: the work in core-seconds).
    pub process_cpu_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    pub stage: String,
    pub median_s: f64,
}

/// The JSON document. The first block of fields is the interface the issue
/// fixes (adapter … cpu_points_per_s); the rest explains them.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub adapter: String,
    pub backend: String,
    /// pixels × channels × waves × frames of the reference workload.
    pub points: f64,
    /// Median of the `das` pass (GPU timestamps when the adapter has them).
    pub median_kernel_s: f64,
    /// Median host-clock time of layout + das, submission to completion.
    pub median_wall_s: f64,
    /// points / median_kernel_s.
    pub points_per_s: f64,
    /// Acoustic round-trip time of the frames / median_kernel_s.
    pub mach_factor: f64,
    /// points / (CPU twin seconds); null when the twin was skipped.
    pub cpu_points_per_s: Option<f64>,

    pub device_type: String,
    pub driver: String,
    /// `gpu-timestamps` or `wall-clock` (adapter without TIMESTAMP_QUERY).
    pub time_source: String,
    pub workload: String,
    pub source: String,
    pub pixels: usize,
    pub channels: usize,
    pub waves: usize,
    pub frames: usize,
    pub samples: usize,
    pub interpolation: String,
    pub fnumber: f64,
    pub acoustic_time_s: f64,
    pub median_layout_s: f64,
    pub kernel_s: Vec<f64>,
    pub min_kernel_s: f64,
    pub wall_s: Vec<f64>,
    /// Process CPU seconds per run of layout + das (Linux). On a software
    /// adapter this is the work in core-seconds; elapsed times on a shared
    /// machine also count other processes' load.
    pub process_cpu_s: Option<f64>,
    pub tiling: String,
    /// The same, compact ([`super::tune::label`]): `k1 r4 w0 s1 f32`.
    pub tiling_label: String,
    /// Precision of the DAS rows: "f32" (default) or "f16" (`--f16-rows`).
    pub rows: String,
    pub cpu_s: Option<f64>,
    /// CPU twin time / GPU kernel time.
    pub gpu_over_cpu: Option<f64>,
    /// max |GPU − CPU twin| / max |CPU twin| over the reference image.
    pub max_rel_err_vs_cpu: Option<f64>,
    pub stages: Vec<Stage>,
    pub stage_time_source: String,
    pub sweeps: Vec<Measurement>,
    /// `--tune`: every tiling timed, fastest first (empty without it).
    pub tuning: Vec<super::tune::TuneRow>,
    /// `--tune`: demodulation's chunk lengths timed, fastest first.
    pub demod_tuning: Vec<super::tune::DemodRow>,
    /// `--roofline`: the adapter's rates and the DAS kernel against them.
    pub roofline: Option<RooflineReport>,
    pub host: String,
    pub command: String,
}

/// `bench --roofline` ([`super::roofline`]).
#[derive(Debug, Clone, Serialize)]
pub struct RooflineReport {
    pub adapter: super::roofline::Roofline,
    pub das: super::roofline::DasOnRoofline,
}

pub fn sci(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    format!("{v:.3e}")
}

/// `1.23×`, or `-` where it could not be measured.
fn speedup(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}×")
    } else {
        "-".into()
    }
}

/// `1.5e-4`, or `-` where it could not be measured.
fn error(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.1e}")
    } else {
        "-".into()
    }
}

fn ms(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    if v < 1e-3 {
        format!("{:.1} µs", v * 1e6)
    } else {
        format!("{:.2} ms", v * 1e3)
    }
}

impl BenchReport {
    /// The terminal table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "adapter   {} ({}, {}), {}",
            self.adapter, self.backend, self.device_type, self.driver
        );
        let _ = writeln!(s, "host      {}", self.host);
        let _ = writeln!(s, "workload  {} from {}", self.workload, self.source);
        let _ = writeln!(s, "          {} pixels × {} channels × {} wave(s) × {} frames = {} points; {} samples; {} interpolation, F-number {}", self.pixels, self.channels, self.waves, self.frames, sci(self.points), self.samples, self.interpolation, self.fnumber);
        let _ = writeln!(
            s,
            "tiling    {}; kernel timed with {}",
            self.tiling, self.time_source
        );
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{:<28} {:>12} {:>14} {:>10}",
            "", "time", "points/s", "Mach"
        );
        let _ = writeln!(
            s,
            "{:<28} {:>12} {:>14} {:>10.3}",
            "das kernel (median)",
            ms(self.median_kernel_s),
            sci(self.points_per_s),
            self.mach_factor
        );
        let _ = writeln!(
            s,
            "{:<28} {:>12} {:>14} {:>10.3}",
            "layout + das, wall (median)",
            ms(self.median_wall_s),
            sci(self.points / self.median_wall_s),
            self.acoustic_time_s / self.median_wall_s
        );
        let _ = writeln!(
            s,
            "{:<28} {:>12}",
            "das kernel (fastest run)",
            ms(self.min_kernel_s)
        );
        let _ = writeln!(
            s,
            "{:<28} {:>12}",
            "das_layout (median)",
            ms(self.median_layout_s)
        );
        if let Some(c) = self.process_cpu_s {
            let _ = writeln!(s, "{:<28} {:>12}", "process CPU per run", ms(c));
        }
        if let (Some(t), Some(p)) = (self.cpu_s, self.cpu_points_per_s) {
            let _ = writeln!(
                s,
                "{:<28} {:>12} {:>14} {:>10.3}",
                "CPU twin (1 thread, f64)",
                ms(t),
                sci(p),
                self.acoustic_time_s / t
            );
            if let Some(r) = self.gpu_over_cpu {
                let _ = writeln!(s, "{:<28} {:>12.1}×", "GPU kernel vs CPU twin", r);
            }
            if let Some(e) = self.max_rel_err_vs_cpu {
                let _ = writeln!(s, "{:<28} {:>12.2e}", "max |GPU − CPU| / max", e);
            }
        }
        let _ = writeln!(
            s,
            "{:<28} {:>12}",
            "speed of sound (Mach 1)",
            ms(self.acoustic_time_s)
        );
        if !self.stages.is_empty() {
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "whole pipeline, per stage ({}; upload and readback include the host side):",
                self.stage_time_source
            );
            let total: f64 = self.stages.iter().map(|x| x.median_s).sum();
            for st in &self.stages {
                let _ = writeln!(
                    s,
                    "  {:<16} {:>12} {:>6.1} %",
                    st.stage,
                    ms(st.median_s),
                    100.0 * st.median_s / total
                );
            }
            let _ = writeln!(s, "  {:<16} {:>12}", "total", ms(total));
        }
        if let Some(r) = &self.roofline {
            let (a, d) = (&r.adapter, &r.das);
            let _ = writeln!(s);
            let _ = writeln!(s, "roofline (this adapter, this run, {}):", a.time_source);
            for (what, rate, unit) in [
                (
                    format!(
                        "vec4 loads, {} KiB read over and over",
                        a.cached_working_set_bytes >> 10
                    ),
                    a.cached_bytes_per_s,
                    "B/s",
                ),
                (
                    format!("vec4 loads, {} MiB read once", a.stream_bytes >> 20),
                    a.stream_bytes_per_s,
                    "B/s",
                ),
                ("f32 fused multiply-adds".into(), a.fma_per_s, "/s"),
            ] {
                let _ = writeln!(s, "  {what:<44} {:>11} {unit}", sci(rate));
            }
            let _ = writeln!(
                s,
                "  das ({}, {} interpolation) needs {} B of rows and {} FMA per point;",
                d.tiling, self.interpolation, d.needs.row_bytes_per_point, d.needs.fma_per_point
            );
            let _ = writeln!(
                s,
                "  at {} points/s that is {:.0} % of the cached load rate and {:.0} % of the FMA rate;",
                sci(d.points_per_s),
                100.0 * d.cached_share,
                100.0 * d.fma_share
            );
            let _ = writeln!(
                s,
                "  those rates allow {} points/s (bound by {}), before delays, weights and addressing",
                sci(d.ceiling_points_per_s),
                d.bound_by
            );
            if d.cached_share > 1.0 || d.fma_share > 1.0 {
                let _ = writeln!(
                    s,
                    "  (over 100 %: das gets more from this adapter than the plain loops do; the rates are a guide, not a bound)"
                );
            }
        }
        if !self.tuning.is_empty() {
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "tuning (k pixels per invocation, r vec4 per row, w window span, s element split; error against the default f32 image):"
            );
            let _ = writeln!(
                s,
                "  {:<26} {:>11} {:>11} {:>8} {:>9} {:>5}",
                "tiling", "kernel", "points/s", "speedup", "error", "runs"
            );
            for t in &self.tuning {
                let _ = writeln!(
                    s,
                    "  {:<26} {:>11} {:>11} {:>8} {:>9} {:>5}  {}",
                    t.tiling,
                    ms(t.median_kernel_s),
                    sci(t.points_per_s),
                    speedup(t.speedup),
                    error(t.max_rel_err),
                    t.runs,
                    t.note
                );
            }
        }
        if !self.demod_tuning.is_empty() {
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "demodulation chunks (extended samples per invocation; error against whole traces):"
            );
            let _ = writeln!(
                s,
                "  {:>8} {:>8} {:>11} {:>11} {:>8} {:>9} {:>5}",
                "chunk", "/trace", "invocations", "time", "speedup", "error", "runs"
            );
            for d in &self.demod_tuning {
                let _ = writeln!(
                    s,
                    "  {:>8} {:>8} {:>11} {:>11} {:>8} {:>9} {:>5}  {}{}",
                    d.chunk,
                    d.chunks_per_trace,
                    d.invocations,
                    ms(d.median_s),
                    speedup(d.speedup),
                    error(d.max_rel_err),
                    d.runs,
                    if d.default { "(default) " } else { "" },
                    d.note
                );
            }
        }
        if !self.sweeps.is_empty() {
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "{:<9} {:>8} {:>5} {:>5} {:>6} {:>11} {:>11} {:>11} {:>8}",
                "sweep", "pixels", "ch", "waves", "frames", "points", "kernel", "points/s", "Mach"
            );
            for m in &self.sweeps {
                let _ = writeln!(
                    s,
                    "{:<9} {:>8} {:>5} {:>5} {:>6} {:>11} {:>11} {:>11} {:>8.3}",
                    m.series,
                    m.pixels,
                    m.channels,
                    m.waves,
                    m.frames,
                    sci(m.points),
                    ms(m.median_kernel_s),
                    sci(m.points_per_s),
                    m.mach_factor
                );
            }
        }
        s
    }

    pub fn reference_measurement(&self) -> Measurement {
        Measurement {
            series: "reference".into(),
            tiling: self.tiling_label.clone(),
            workload: self.workload.clone(),
            pixels: self.pixels,
            channels: self.channels,
            waves: self.waves,
            frames: self.frames,
            samples: self.samples,
            points: self.points,
            median_kernel_s: self.median_kernel_s,
            median_layout_s: self.median_layout_s,
            median_wall_s: self.median_wall_s,
            points_per_s: self.points_per_s,
            mach_factor: self.mach_factor,
            process_cpu_s: self.process_cpu_s,
        }
    }

    pub fn write_json(&self, path: &Path) -> Result<(), BenchError> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| BenchError::Output(format!("{}: {e}", path.display())))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| BenchError::Output(format!("{}: {e}", path.display())))
    }

    /// One row per configuration: the reference first, then the sweeps.
    pub fn write_csv(&self, path: &Path) -> Result<(), BenchError> {
        let mut s = String::from("series,workload,adapter,backend,pixels,channels,waves,frames,samples,points,median_kernel_s,median_layout_s,median_wall_s,points_per_s,mach_factor,tiling\n");
        // --tune's rows: the reference workload with each tiling.
        let tuned = self.tuning.iter().map(|t| Measurement {
            series: "tune".into(),
            tiling: t.tiling.clone(),
            median_kernel_s: t.median_kernel_s,
            median_layout_s: f64::NAN,
            median_wall_s: f64::NAN,
            points_per_s: t.points_per_s,
            mach_factor: self.acoustic_time_s / t.median_kernel_s,
            process_cpu_s: None,
            ..self.reference_measurement()
        });
        for m in std::iter::once(self.reference_measurement())
            .chain(self.sweeps.iter().cloned())
            .chain(tuned)
        {
            let _ = writeln!(
                s,
                "{},\"{}\",\"{}\",{},{},{},{},{},{},{},{},{},{},{},{},{}",
                m.series,
                m.workload.replace('"', "'"),
                self.adapter.replace('"', "'"),
                self.backend,
                m.pixels,
                m.channels,
                m.waves,
                m.frames,
                m.samples,
                m.points,
                m.median_kernel_s,
                m.median_layout_s,
                m.median_wall_s,
                m.points_per_s,
                m.mach_factor,
                m.tiling
            );
        }
        std::fs::write(path, s).map_err(|e| BenchError::Output(format!("{}: {e}", path.display())))
    }

    /// Throughput against problem size, log-log, one polyline per series;
    /// written by hand (no plotting dependency to compile).
    pub fn write_svg(&self, path: &Path) -> Result<(), BenchError> {
        let mut all: Vec<Measurement> = self.sweeps.clone();
        all.push(self.reference_measurement());
        let pts: Vec<&Measurement> = all
            .iter()
            .filter(|m| m.points > 0.0 && m.points_per_s > 0.0 && m.points_per_s.is_finite())
            .collect();
        if pts.is_empty() {
            return Err(BenchError::Output(format!(
                "{}: nothing to plot",
                path.display()
            )));
        }
        let (w, h, ml, mr, mt, mb) = (760.0, 480.0, 80.0, 150.0, 40.0, 60.0);
        let lx = |v: f64| v.log10();
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for m in &pts {
            x0 = x0.min(lx(m.points));
            x1 = x1.max(lx(m.points));
            y0 = y0.min(lx(m.points_per_s));
            y1 = y1.max(lx(m.points_per_s));
        }
        let (x0, x1) = (x0.floor(), x1.ceil().max(x0.floor() + 1.0));
        let (y0, y1) = (y0.floor(), y1.ceil().max(y0.floor() + 1.0));
        let px = |v: f64| ml + (lx(v) - x0) / (x1 - x0) * (w - ml - mr);
        let py = |v: f64| h - mb - (lx(v) - y0) / (y1 - y0) * (h - mt - mb);
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="22" font-size="14">DAS throughput vs problem size — {} ({})</text>"#,
            ml,
            xml(&self.adapter),
            self.backend
        );
        for d in (x0 as i32)..=(x1 as i32) {
            let x = px(10f64.powi(d));
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{mt}" x2="{x:.1}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">1e{d}</text>"##,
                h - mb,
                h - mb + 16.0
            );
        }
        for d in (y0 as i32)..=(y1 as i32) {
            let y = py(10f64.powi(d));
            let _ = writeln!(
                s,
                r##"<line x1="{ml}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">1e{d}</text>"##,
                w - mr,
                ml - 6.0,
                y + 4.0
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">points (pixels × channels × waves × frames)</text>"#,
            (ml + w - mr) / 2.0,
            h - 20.0
        );
        let _ = writeln!(
            s,
            r#"<text x="18" y="{}" transform="rotate(-90 18 {})" text-anchor="middle">points per second (das kernel)</text>"#,
            (mt + h - mb) / 2.0,
            (mt + h - mb) / 2.0
        );
        let colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];
        let mut series: Vec<String> = Vec::new();
        for m in &pts {
            if !series.contains(&m.series) {
                series.push(m.series.clone());
            }
        }
        for (i, name) in series.iter().enumerate() {
            let c = colours[i % colours.len()];
            let mut ps: Vec<&&Measurement> = pts.iter().filter(|m| &m.series == name).collect();
            ps.sort_by(|a, b| a.points.total_cmp(&b.points));
            let line: Vec<String> = ps
                .iter()
                .map(|m| format!("{:.1},{:.1}", px(m.points), py(m.points_per_s)))
                .collect();
            if line.len() > 1 {
                let _ = writeln!(
                    s,
                    r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2"/>"#,
                    line.join(" ")
                );
            }
            for m in &ps {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{c}"><title>{}: {} points, {} points/s</title></circle>"#,
                    px(m.points),
                    py(m.points_per_s),
                    xml(&m.workload),
                    sci(m.points),
                    sci(m.points_per_s)
                );
            }
            let ly = mt + 20.0 + 18.0 * i as f64;
            let _ = writeln!(
                s,
                r#"<rect x="{}" y="{}" width="12" height="12" fill="{c}"/><text x="{}" y="{}">{}</text>"#,
                w - mr + 12.0,
                ly - 10.0,
                w - mr + 30.0,
                ly,
                xml(name)
            );
        }
        let _ = writeln!(s, "</svg>");
        std::fs::write(path, s).map_err(|e| BenchError::Output(format!("{}: {e}", path.display())))
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
