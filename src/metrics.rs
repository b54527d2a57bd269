//! Image-quality metrics as the PICMUS challenge (Liebgott et al., IEEE
//! IUS 2016; USTB's `us_resolution` and `us_contrast`) defines them, on any
//! pixel layout (Cartesian, polar, or a list laid out in rows and columns):
//!
//! - **Point targets**: on the B-mode `20 log10(env / max env)`, the
//!   maximum inside a square region of half-size `roi` about the target;
//!   the lateral profile is the pixel row through it, the axial profile
//!   the pixel column (for a polar grid: along the arc and along the
//!   radius), both restricted to the region; each profile is linearly
//!   interpolated ten times finer and its width is the distance between
//!   the first and the last point within 6 dB of its maximum (FWHM).
//!   Distances are measured along the profile's pixel positions.
//! - **Peak position**: PICMUS keeps the peak pixel; we refine it with a
//!   parabola through the three B-mode values about it along the row and
//!   along the column, so that the error can be checked below a pixel.
//! - **Cysts**: inside = within `radius - padding` of the centre, outside
//!   = the ring from `radius + padding` to `1.2·sqrt(r_in² + r_out²)`;
//!   `CNR = 20 log10(|μ_in − μ_out| / sqrt((σ²_in + σ²_out)/2))` with the
//!   means and (sample) variances of the **B-mode in dB**, as PICMUS
//!   computes it; contrast = `μ_in − μ_out` (dB). PICMUS's padding is the
//!   lateral resolution of the system (λ·F).
//!
//! `sonoguide metrics` applies these to an envelope (`.npy`) or to channel
//! data that it beamforms first.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::acquisition::PixelGrid;
use crate::cli::CliError;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("the image is {rows} × {cols} but holds {envelope} envelope values and {positions} positions")]
    Shape {
        rows: usize,
        cols: usize,
        envelope: usize,
        positions: usize,
    },
    #[error("the envelope holds non-finite or negative values (pixel {0})")]
    BadEnvelope(usize),
    #[error(
        "target ({x:.2}, {z:.2}) mm: no pixel within {roi:.2} mm of it; is it inside the image?"
    )]
    NoPixels { x: f64, z: f64, roi: f64 },
    #[error("cyst at ({x:.2}, {z:.2}) mm, radius {r:.2} mm: {what} holds only {n} pixels (need at least 2)")]
    FewPixels {
        x: f64,
        z: f64,
        r: f64,
        what: &'static str,
        n: usize,
    },
    #[error("{0}")]
    Invalid(String),
}

/// An envelope image with the position (x, z) of every pixel, row-major.
#[derive(Debug, Clone)]
pub struct EnvelopeImage {
    pub rows: usize,
    pub cols: usize,
    pub positions: Vec<[f64; 2]>,
    pub envelope: Vec<f64>,
}

impl EnvelopeImage {
    pub fn new(
        rows: usize,
        cols: usize,
        positions: Vec<[f64; 2]>,
        envelope: Vec<f64>,
    ) -> Result<EnvelopeImage, MetricsError> {
        if rows * cols != envelope.len()
            || positions.len() != envelope.len()
            || rows == 0
            || cols == 0
        {
            return Err(MetricsError::Shape {
                rows,
                cols,
                envelope: envelope.len(),
                positions: positions.len(),
            });
        }
        if let Some(i) = envelope.iter().position(|v| !v.is_finite() || *v < 0.0) {
            return Err(MetricsError::BadEnvelope(i));
        }
        // Every level is relative to the peak: with none, each would be
        // -inf dB, and widths and contrasts numbers of nothing.
        if envelope.iter().all(|v| *v == 0.0) {
            return Err(MetricsError::Invalid(
                "the envelope is zero everywhere: nothing to measure (was the right frame or file given?)".into(),
            ));
        }
        if let Some(i) = positions
            .iter()
            .position(|p| !p[0].is_finite() || !p[1].is_finite())
        {
            return Err(MetricsError::Invalid(format!(
                "pixel {i} has a non-finite position"
            )));
        }
        Ok(EnvelopeImage {
            rows,
            cols,
            positions,
            envelope,
        })
    }

    pub fn from_grid(grid: &PixelGrid, envelope: Vec<f64>) -> Result<EnvelopeImage, MetricsError> {
        EnvelopeImage::new(grid.rows(), grid.cols(), grid.positions(), envelope)
    }

    /// 20 log10(env / max env); -inf (as -1000 dB) for zero pixels.
    pub fn bmode_db(&self) -> Vec<f64> {
        let max = self.envelope.iter().copied().fold(0.0, f64::max);
        self.envelope
            .iter()
            .map(|v| {
                if *v > 0.0 && max > 0.0 {
                    20.0 * (v / max).log10()
                } else {
                    -1000.0
                }
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PointMetrics {
    pub target: [f64; 2],
    /// Refined peak position (x, z), metres.
    pub peak: [f64; 2],
    /// |peak − target|, metres.
    pub peak_error: f64,
    /// Peak level in the image, dB re the image maximum.
    pub peak_db: f64,
    /// -6 dB widths, metres.
    pub fwhm_axial: f64,
    pub fwhm_lateral: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CystMetrics {
    pub center: [f64; 2],
    pub radius: f64,
    pub cnr_db: f64,
    /// μ_in − μ_out of the B-mode, dB.
    pub contrast_db: f64,
    pub inside: usize,
    pub outside: usize,
}

/// PICMUS's -6 dB width of a profile (values in dB at cumulative
/// distances `pos`): ten-fold linear interpolation, extent of the samples
/// within 6 dB of the maximum.
pub fn fwhm_6db(pos: &[f64], db: &[f64]) -> f64 {
    let n = pos.len();
    if n < 2 {
        return 0.0;
    }
    let m = n * 10;
    let (a, b) = (pos[0], pos[n - 1]);
    let xs: Vec<f64> = (0..m)
        .map(|i| a + (b - a) * i as f64 / (m - 1) as f64)
        .collect();
    let mut j = 0;
    let ys: Vec<f64> = xs
        .iter()
        .map(|&x| {
            while j + 2 < n && pos[j + 1] < x {
                j += 1;
            }
            let span = pos[j + 1] - pos[j];
            let f = if span > 0.0 {
                ((x - pos[j]) / span).clamp(0.0, 1.0)
            } else {
                0.0
            };
            db[j] + (db[j + 1] - db[j]) * f
        })
        .collect();
    let max = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let above: Vec<usize> = (0..m).filter(|&i| ys[i] >= max - 6.0).collect();
    match (above.first(), above.last()) {
        (Some(&i), Some(&k)) => xs[k] - xs[i],
        _ => 0.0,
    }
}

fn cumulative(points: &[[f64; 2]]) -> Vec<f64> {
    let mut out = Vec::with_capacity(points.len());
    let mut d = 0.0;
    for (i, p) in points.iter().enumerate() {
        if i > 0 {
            d += (p[0] - points[i - 1][0]).hypot(p[1] - points[i - 1][1]);
        }
        out.push(d);
    }
    out
}

/// Vertex offset (in samples, within ±0.5) of the parabola through three values.
fn parabola(a: f64, b: f64, c: f64) -> f64 {
    let den = a - 2.0 * b + c;
    if den >= 0.0 {
        return 0.0;
    }
    (0.5 * (a - c) / den).clamp(-0.5, 0.5)
}

/// Resolution and peak position of the point target nearest `target`
/// (metres), searching a square of half-size `roi`.
pub fn point_target(
    img: &EnvelopeImage,
    target: [f64; 2],
    roi: f64,
) -> Result<PointMetrics, MetricsError> {
    let db = img.bmode_db();
    point_target_db(img, &db, target, roi)
}

fn point_target_db(
    img: &EnvelopeImage,
    db: &[f64],
    target: [f64; 2],
    roi: f64,
) -> Result<PointMetrics, MetricsError> {
    let (rows, cols) = (img.rows, img.cols);
    let inside = |i: usize| {
        let p = img.positions[i];
        (p[0] - target[0]).abs() < roi && (p[1] - target[1]).abs() < roi
    };
    let best = (0..rows * cols)
        .filter(|&i| inside(i))
        .max_by(|&a, &b| db[a].total_cmp(&db[b]));
    let Some(best) = best else {
        return Err(MetricsError::NoPixels {
            x: target[0] * 1e3,
            z: target[1] * 1e3,
            roi: roi * 1e3,
        });
    };
    let (r, c) = (best / cols, best % cols);
    // Lateral: the row through the peak, over the contiguous run inside the region.
    let run = |fixed: usize, along_row: bool| -> (Vec<[f64; 2]>, Vec<f64>) {
        let len = if along_row { cols } else { rows };
        let idx = |k: usize| {
            if along_row {
                fixed * cols + k
            } else {
                k * cols + fixed
            }
        };
        let centre = if along_row { c } else { r };
        let mut lo = centre;
        while lo > 0 && inside(idx(lo - 1)) {
            lo -= 1;
        }
        let mut hi = centre;
        while hi + 1 < len && inside(idx(hi + 1)) {
            hi += 1;
        }
        (
            (lo..=hi).map(|k| img.positions[idx(k)]).collect(),
            (lo..=hi).map(|k| db[idx(k)]).collect(),
        )
    };
    let (lat_pts, lat_db) = run(r, true);
    let (ax_pts, ax_db) = run(c, false);
    let fwhm_lateral = fwhm_6db(&cumulative(&lat_pts), &lat_db);
    let fwhm_axial = fwhm_6db(&cumulative(&ax_pts), &ax_db);

    // Sub-pixel peak: parabolas along the row and the column.
    let mut peak = img.positions[best];
    let at = |rr: usize, cc: usize| rr * cols + cc;
    if c > 0 && c + 1 < cols {
        let dc = parabola(db[at(r, c - 1)], db[best], db[at(r, c + 1)]);
        let (a, b) = (img.positions[at(r, c - 1)], img.positions[at(r, c + 1)]);
        peak[0] += dc * (b[0] - a[0]) / 2.0;
        peak[1] += dc * (b[1] - a[1]) / 2.0;
    }
    if r > 0 && r + 1 < rows {
        let dr = parabola(db[at(r - 1, c)], db[best], db[at(r + 1, c)]);
        let (a, b) = (img.positions[at(r - 1, c)], img.positions[at(r + 1, c)]);
        peak[0] += dr * (b[0] - a[0]) / 2.0;
        peak[1] += dr * (b[1] - a[1]) / 2.0;
    }
    Ok(PointMetrics {
        target,
        peak,
        peak_error: (peak[0] - target[0]).hypot(peak[1] - target[1]),
        peak_db: db[best],
        fwhm_axial,
        fwhm_lateral,
    })
}

fn mean_var(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0).max(1.0);
    (m, var)
}

/// PICMUS contrast of a circular inclusion (centre, radius in metres);
/// `padding` is the lateral resolution (λ·F in PICMUS).
pub fn cyst(
    img: &EnvelopeImage,
    center: [f64; 2],
    radius: f64,
    padding: f64,
) -> Result<CystMetrics, MetricsError> {
    let db = img.bmode_db();
    cyst_db(img, &db, center, radius, padding)
}

fn cyst_db(
    img: &EnvelopeImage,
    db: &[f64],
    center: [f64; 2],
    radius: f64,
    padding: f64,
) -> Result<CystMetrics, MetricsError> {
    if !(radius > 0.0 && padding >= 0.0 && radius.is_finite() && padding.is_finite()) {
        return Err(MetricsError::Invalid(format!(
            "cyst radius {radius} m and padding {padding} m: expected radius > 0, padding >= 0"
        )));
    }
    let r_in = radius - padding;
    let r_out = radius + padding;
    let r_far = 1.2 * (r_in * r_in + r_out * r_out).sqrt();
    let (mut inside, mut outside) = (Vec::new(), Vec::new());
    for (p, v) in img.positions.iter().zip(db) {
        let d = (p[0] - center[0]).hypot(p[1] - center[1]);
        if d <= r_in {
            inside.push(*v);
        } else if d >= r_out && d <= r_far {
            outside.push(*v);
        }
    }
    let few = |what, n| MetricsError::FewPixels {
        x: center[0] * 1e3,
        z: center[1] * 1e3,
        r: radius * 1e3,
        what,
        n,
    };
    if inside.len() < 2 {
        return Err(few("the inside region", inside.len()));
    }
    if outside.len() < 2 {
        return Err(few("the outside ring", outside.len()));
    }
    let (mi, vi) = mean_var(&inside);
    let (mo, vo) = mean_var(&outside);
    Ok(CystMetrics {
        center,
        radius,
        cnr_db: 20.0 * ((mi - mo).abs() / ((vi + vo) / 2.0).sqrt()).log10(),
        contrast_db: mi - mo,
        inside: inside.len(),
        outside: outside.len(),
    })
}

/// Every point and every cyst at once (the B-mode is computed once).
pub fn evaluate(
    img: &EnvelopeImage,
    points: &[[f64; 2]],
    cysts: &[([f64; 2], f64)],
    roi: f64,
    padding: f64,
) -> Result<(Vec<PointMetrics>, Vec<CystMetrics>), MetricsError> {
    let db = img.bmode_db();
    let p = points
        .iter()
        .map(|t| point_target_db(img, &db, *t, roi))
        .collect::<Result<Vec<_>, _>>()?;
    let c = cysts
        .iter()
        .map(|(ctr, r)| cyst_db(img, &db, *ctr, *r, padding))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((p, c))
}

// ---- the `sonoguide metrics` command

#[derive(Args, Debug, Clone)]
pub struct MetricsArgs {
    /// An envelope (.npy float32/float64 [rows, cols] or [frames, rows, cols], e.g. from
    /// `beamform --save-envelope`), or channel data (UFF, .mat) to beamform first with MUST's
    /// defaults (linear interpolation, boxcar, --fnumber).
    pub input: PathBuf,
    /// Pixel positions of the envelope or of the beamforming: .npy [rows, cols, 2] of (x, z) m.
    #[arg(long, conflicts_with = "grid")]
    pub pixels: Option<PathBuf>,
    /// Cartesian grid x0:x1:nx,z0:z1:nz in metres.
    #[arg(long, allow_hyphen_values = true)]
    pub grid: Option<String>,
    /// Phantom scene: its point targets and inclusions are measured, and its [image] grid is the
    /// default grid.
    #[arg(long)]
    pub scene: Option<PathBuf>,
    /// A point target x,z in metres (repeatable).
    #[arg(long, allow_hyphen_values = true)]
    pub point: Vec<String>,
    /// A cyst x,z,radius in metres (repeatable).
    #[arg(long, allow_hyphen_values = true)]
    pub cyst: Vec<String>,
    /// Half-size of the square searched about each point target, metres.
    #[arg(long, default_value_t = 1e-3)]
    pub roi: f64,
    /// Cyst padding (PICMUS: the lateral resolution), metres [default: λ·F, from the data's
    /// centre frequency and --fnumber; 0.5 mm for an envelope file].
    #[arg(long)]
    pub padding: Option<f64>,
    /// Receive F-number when beamforming channel data, or `auto`.
    #[arg(long, default_value = "auto")]
    pub fnumber: String,
    /// Frame of a multi-frame envelope or of the channel data.
    #[arg(long, default_value_t = 0)]
    pub frame: usize,
    /// Also write the results as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

fn fail(msg: impl Into<String>) -> CliError {
    CliError(msg.into())
}

fn parse_floats(s: &str, n: usize, what: &str) -> Result<Vec<f64>, CliError> {
    let v: Vec<f64> = s
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| {
            fail(format!(
                "{what} `{s}`: expected {n} numbers separated by commas (metres)"
            ))
        })?;
    if v.len() != n || v.iter().any(|x| !x.is_finite()) {
        return Err(fail(format!(
            "{what} `{s}`: expected {n} finite numbers separated by commas (metres)"
        )));
    }
    Ok(v)
}

fn grid_of(a: &MetricsArgs, scene_grid: Option<PixelGrid>) -> Result<Option<PixelGrid>, CliError> {
    if let Some(p) = &a.pixels {
        return crate::cli::read_pixels(p).map(Some);
    }
    if let Some(g) = &a.grid {
        let (xs, zs) = g.split_once(',').ok_or_else(|| {
            fail(format!(
                "--grid `{g}`: expected x0:x1:nx,z0:z1:nz in metres"
            ))
        })?;
        let axis = |s: &str, what: &str| -> Result<(f64, f64, usize), CliError> {
            let p: Vec<&str> = s.split(':').collect();
            let bad = || fail(format!("{what} `{s}`: expected start:end:count"));
            if p.len() != 3 {
                return Err(bad());
            }
            let a0: f64 = p[0].parse().map_err(|_| bad())?;
            let a1: f64 = p[1].parse().map_err(|_| bad())?;
            let n: usize = p[2].parse().map_err(|_| bad())?;
            if !a0.is_finite() || !a1.is_finite() || n == 0 || n > 8192 {
                return Err(bad());
            }
            Ok((a0, a1, n))
        };
        let (x0, x1, nx) = axis(xs, "--grid x")?;
        let (z0, z1, nz) = axis(zs, "--grid z")?;
        return Ok(Some(PixelGrid::Cartesian {
            x: (x0, x1),
            z: (z0, z1),
            nx,
            nz,
        }));
    }
    Ok(scene_grid)
}

pub fn run(a: &MetricsArgs, backend: Option<&str>) -> Result<(), CliError> {
    if !(a.roi.is_finite() && a.roi > 0.0) {
        return Err(fail(format!(
            "--roi {}: expected a positive half-size in metres",
            a.roi
        )));
    }
    let mut points: Vec<[f64; 2]> = Vec::new();
    let mut cysts: Vec<([f64; 2], f64)> = Vec::new();
    let mut scene_grid = None;
    if let Some(s) = &a.scene {
        let scene = crate::sim::phantom::PhantomScene::load(s)?;
        points.extend(scene.phantom.points().iter().map(|p| [p.x, p.z]));
        cysts.extend(scene.phantom.inclusions().iter().map(|(c, r, _)| (*c, *r)));
        scene_grid = scene.image.clone();
    }
    for p in &a.point {
        let v = parse_floats(p, 2, "--point")?;
        points.push([v[0], v[1]]);
    }
    for c in &a.cyst {
        let v = parse_floats(c, 3, "--cyst")?;
        if v[2] <= 0.0 {
            return Err(fail(format!("--cyst `{c}`: the radius must be positive")));
        }
        cysts.push(([v[0], v[1]], v[2]));
    }
    if points.is_empty() && cysts.is_empty() {
        return Err(fail(
            "nothing to measure: give --scene, --point x,z or --cyst x,z,r",
        ));
    }
    let grid = grid_of(a, scene_grid)?;
    let is_npy = a
        .input
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.eq_ignore_ascii_case("npy"))
        .unwrap_or(false);
    let (img, default_padding) = if is_npy {
        let grid = grid.ok_or_else(|| fail("an envelope file needs its pixel positions: --pixels, --grid or a --scene with [image]"))?;
        let arr = crate::io::npy::read_npy(&a.input)
            .map_err(|e| fail(format!("{}: {e}", a.input.display())))?;
        let v = arr
            .to_f64()
            .map_err(|e| fail(format!("{}: {e}", a.input.display())))?;
        let per = grid.len();
        let frames = v.len() / per.max(1);
        let shape_ok = match arr.shape.as_slice() {
            [r, c] | [_, r, c] => (*r, *c) == (grid.rows(), grid.cols()),
            _ => false,
        };
        if !shape_ok || v.len() != frames * per || frames == 0 {
            return Err(fail(format!(
                "{}: shape {:?} ({} values): expected [rows, cols] or [frames, rows, cols] with {} × {} images",
                a.input.display(),
                arr.shape,
                v.len(),
                grid.rows(),
                grid.cols()
            )));
        }
        if a.frame >= frames {
            return Err(fail(format!(
                "--frame {}: the file holds {frames} frames",
                a.frame
            )));
        }
        let env = v[a.frame * per..(a.frame + 1) * per].to_vec();
        (
            EnvelopeImage::from_grid(&grid, env)
                .map_err(|e| fail(format!("{}: {e}", a.input.display())))?,
            0.5e-3,
        )
    } else {
        let mut data = crate::cli::load(&a.input)?;
        if a.frame >= data.frames {
            return Err(fail(format!(
                "--frame {}: the file holds {} frames",
                a.frame, data.frames
            )));
        }
        data.truncate_frames(a.frame + 1);
        let grid = grid.unwrap_or_else(|| PixelGrid::default_for(&data.acquisition, data.samples));
        let fnumber = match a.fnumber.as_str() {
            "auto" => crate::pipeline::FNumber::Auto,
            s => match s.parse::<f64>() {
                Ok(f) if f.is_finite() && f > 0.0 => crate::pipeline::FNumber::Fixed(f),
                _ => {
                    return Err(fail(format!(
                        "--fnumber `{s}`: expected a positive number or `auto`"
                    )))
                }
            },
        };
        let ctx = crate::gpu::GpuContext::new(backend)?;
        eprintln!("adapter: {}", ctx.describe());
        let req = crate::pipeline::BeamformRequest {
            das: crate::pipeline::DasSettings {
                fnumber,
                ..Default::default()
            },
            read_iq: false,
            read_envelope: true,
            read_grey: false,
            ..Default::default()
        };
        let out = crate::pipeline::Beamformer::new(&ctx).run(&ctx, &data, &grid, &req)?;
        let env: Vec<f64> = out.envelope.unwrap_or_default()
            [a.frame.min(out.frames - 1) * grid.len()..][..grid.len()]
            .iter()
            .map(|v| *v as f64)
            .collect();
        let lambda = data.acquisition.sound_speed / data.acquisition.center_frequency;
        (
            EnvelopeImage::from_grid(&grid, env).map_err(|e| fail(e.to_string()))?,
            lambda * out.fnumber,
        )
    };
    let padding = a.padding.unwrap_or(default_padding);
    let (pm, cm) =
        evaluate(&img, &points, &cysts, a.roi, padding).map_err(|e| fail(e.to_string()))?;
    println!("{}", report(&pm, &cm, padding));
    if let Some(path) = &a.json {
        write_json(path, &pm, &cm, padding)?;
    }
    Ok(())
}

/// A plain-text table of the results (millimetres, dB).
pub fn report(points: &[PointMetrics], cysts: &[CystMetrics], padding: f64) -> String {
    let mut s = String::new();
    if !points.is_empty() {
        s.push_str("point target (x, z) mm | peak (x, z) mm | error mm | FWHM axial mm | FWHM lateral mm | peak dB\n");
        for p in points {
            s.push_str(&format!(
                "({:7.2}, {:6.2}) | ({:7.3}, {:7.3}) | {:.3} | {:.3} | {:.3} | {:.1}\n",
                p.target[0] * 1e3,
                p.target[1] * 1e3,
                p.peak[0] * 1e3,
                p.peak[1] * 1e3,
                p.peak_error * 1e3,
                p.fwhm_axial * 1e3,
                p.fwhm_lateral * 1e3,
                p.peak_db
            ));
        }
    }
    if !cysts.is_empty() {
        s.push_str(&format!(
            "cyst (x, z, r) mm | CNR dB | contrast dB | pixels in / out   (padding {:.3} mm)\n",
            padding * 1e3
        ));
        for c in cysts {
            s.push_str(&format!(
                "({:7.2}, {:6.2}, {:5.2}) | {:.2} | {:.2} | {} / {}\n",
                c.center[0] * 1e3,
                c.center[1] * 1e3,
                c.radius * 1e3,
                c.cnr_db,
                c.contrast_db,
                c.inside,
                c.outside
            ));
        }
    }
    s
}

fn write_json(
    path: &Path,
    points: &[PointMetrics],
    cysts: &[CystMetrics],
    padding: f64,
) -> Result<(), CliError> {
    let v = serde_json::json!({
        "units": "metres, dB",
        "padding": padding,
        "points": points.iter().map(|p| serde_json::json!({
            "target": p.target, "peak": p.peak, "peak_error": p.peak_error, "peak_db": p.peak_db,
            "fwhm_axial": p.fwhm_axial, "fwhm_lateral": p.fwhm_lateral,
        })).collect::<Vec<_>>(),
        "cysts": cysts.iter().map(|c| serde_json::json!({
            "center": c.center, "radius": c.radius, "cnr_db": c.cnr_db, "contrast_db": c.contrast_db,
            "inside": c.inside, "outside": c.outside,
        })).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&v).map_err(|e| fail(e.to_string()))?;
    std::fs::write(path, text).map_err(|e| fail(format!("{}: {e}", path.display())))
}
