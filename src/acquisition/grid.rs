//! Pixel sets the beamformer writes to. The GPU sees only a list of (x, z)
//! positions; the grid kind is kept so that polar images can be scan
//! converted and so that files can say what they hold.

use super::{Acquisition, AcquisitionError, ProbeKind};

#[derive(Debug, Clone, PartialEq)]
pub enum PixelGrid {
    /// Rows are depth (z), columns are lateral (x); end points inclusive.
    Cartesian {
        x: (f64, f64),
        z: (f64, f64),
        nx: usize,
        nz: usize,
    },
    /// Rows are radius, columns are angle (from +z, positive toward +x)
    /// about `origin` (x, z); end points inclusive.
    Polar {
        origin: [f64; 2],
        radius: (f64, f64),
        angle: (f64, f64),
        nr: usize,
        na: usize,
    },
    /// Any positions, `rows × cols`, row-major.
    List {
        rows: usize,
        cols: usize,
        points: Vec<[f64; 2]>,
    },
}

fn linspace(a: f64, b: f64, n: usize, i: usize) -> f64 {
    if n <= 1 {
        a
    } else {
        a + (b - a) * i as f64 / (n - 1) as f64
    }
}

impl PixelGrid {
    pub fn rows(&self) -> usize {
        match self {
            PixelGrid::Cartesian { nz, .. } => *nz,
            PixelGrid::Polar { nr, .. } => *nr,
            PixelGrid::List { rows, .. } => *rows,
        }
    }

    pub fn cols(&self) -> usize {
        match self {
            PixelGrid::Cartesian { nx, .. } => *nx,
            PixelGrid::Polar { na, .. } => *na,
            PixelGrid::List { cols, .. } => *cols,
        }
    }

    pub fn len(&self) -> usize {
        self.rows() * self.cols()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row-major (x, z) positions in metres.
    pub fn positions(&self) -> Vec<[f64; 2]> {
        match self {
            PixelGrid::Cartesian { x, z, nx, nz } => (0..*nz)
                .flat_map(|r| {
                    (0..*nx).map(move |c| [linspace(x.0, x.1, *nx, c), linspace(z.0, z.1, *nz, r)])
                })
                .collect(),
            PixelGrid::Polar {
                origin,
                radius,
                angle,
                nr,
                na,
            } => (0..*nr)
                .flat_map(|r| {
                    (0..*na).map(move |c| {
                        let rr = linspace(radius.0, radius.1, *nr, r);
                        let th = linspace(angle.0, angle.1, *na, c);
                        [origin[0] + rr * th.sin(), origin[1] + rr * th.cos()]
                    })
                })
                .collect(),
            PixelGrid::List { points, .. } => points.clone(),
        }
    }

    /// Positions as the f32 pairs the GPU reads.
    pub fn positions_f32(&self) -> Vec<[f32; 2]> {
        self.positions()
            .iter()
            .map(|p| [p[0] as f32, p[1] as f32])
            .collect()
    }

    pub fn validate(&self, what: &str) -> Result<(), AcquisitionError> {
        let bad = |problem: String| AcquisitionError::Invalid {
            field: what.to_string(),
            problem,
        };
        if self.is_empty() {
            return Err(bad("the grid has no pixels".into()));
        }
        if let PixelGrid::List { rows, cols, points } = self {
            if points.len() != rows * cols {
                return Err(bad(format!("{} points for {rows} × {cols}", points.len())));
            }
        }
        if self
            .positions()
            .iter()
            .any(|p| !p[0].is_finite() || !p[1].is_finite())
        {
            return Err(bad("contains NaN or infinite positions".into()));
        }
        Ok(())
    }

    /// Recognise a list of points that is really a polar grid about `origin`
    /// (rows of equal radius, columns of equal angle, both evenly spaced),
    /// e.g. a `--pixels` file made by MUST's `impolgrid`, so that it can be
    /// scan converted.
    pub fn as_polar_about(&self, origin: [f64; 2]) -> Option<PixelGrid> {
        let (rows, cols) = (self.rows(), self.cols());
        if rows < 2 || cols < 2 {
            return None;
        }
        let pts = self.positions();
        let polar = |p: &[f64; 2]| {
            let dx = p[0] - origin[0];
            let dz = p[1] - origin[1];
            ((dx * dx + dz * dz).sqrt(), dx.atan2(dz))
        };
        let (r0, a0) = polar(&pts[0]);
        let (r1, a1) = polar(&pts[(rows - 1) * cols + cols - 1]);
        let grid = PixelGrid::Polar {
            origin,
            radius: (r0, r1),
            angle: (a0, a1),
            nr: rows,
            na: cols,
        };
        let tol = 1e-6 * r1.abs().max(1e-3);
        let ok = grid
            .positions()
            .iter()
            .zip(&pts)
            .all(|(a, b)| (a[0] - b[0]).abs() <= tol && (a[1] - b[1]).abs() <= tol);
        ok.then_some(grid)
    }

    /// The grid MUST's examples would use for this acquisition: for a linear
    /// or phased array a Cartesian grid under the aperture, for a convex
    /// array `impolgrid`'s sector; depth to the last sample.
    pub fn default_for(acq: &Acquisition, samples: usize) -> PixelGrid {
        let probe = &acq.probe;
        let xs: Vec<f64> = probe.elements.iter().map(|e| e.position.x).collect();
        let (xmin, xmax) = xs
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        let t_last = acq.initial_time + (samples.saturating_sub(1)) as f64 / acq.sampling_frequency;
        let zmax = (t_last * acq.sound_speed / 2.0).max(1e-3);
        let lambda = acq.sound_speed / acq.center_frequency;
        match probe.kind {
            ProbeKind::Convex { radius, center } => {
                let first = &probe.elements[0];
                let last = &probe.elements[probe.len() - 1];
                let nr = ((zmax / (lambda / 2.0)).ceil() as usize).clamp(64, 1024);
                let na = (2 * probe.len()).clamp(64, 512);
                PixelGrid::Polar {
                    origin: center,
                    radius: (radius + probe.pitch(), radius + zmax),
                    angle: (first.azimuth, last.azimuth),
                    nr,
                    na,
                }
            }
            _ => {
                let nx = (((xmax - xmin) / (lambda / 2.0)).ceil() as usize).clamp(64, 1024);
                let nz = ((zmax / (lambda / 2.0)).ceil() as usize).clamp(64, 1024);
                PixelGrid::Cartesian {
                    x: (xmin, xmax),
                    z: (lambda, zmax),
                    nx,
                    nz,
                }
            }
        }
    }
}
