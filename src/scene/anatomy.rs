//! The anterior hip as analytic shapes with acoustic properties, and the
//! scatterers a probe at a given pose sees.
//!
//! Patient frame (metres): origin at the centre of the femoral head,
//! X lateral, Y superior, Z posterior (depth from the anterior skin), so
//! that X × Y = Z. The skin is the plane Z = −`skin_depth`.
//!
//! A linear scatterer simulator has no propagation effects, so the two
//! things a sonographer reads bone by are put in here: the cortex is a
//! dense sheet of scatterers whose strength falls with the angle of
//! incidence (specular reflection), and everything behind bone along the
//! beam is attenuated by `shadow_db` (the acoustic shadow).

use glam::DVec3;

use crate::sim::{Rng, Scatterer};

/// Tissue classes, each with an echogenicity (RMS scatterer amplitude).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tissue {
    Skin,
    Fat,
    Muscle,
    Capsule,
    /// Synovial fluid in the anterior recess: a thin hypoechoic film, or
    /// anechoic effusion.
    Recess,
    Bone,
    VesselLumen,
    VesselWall,
    Nerve,
}

impl Tissue {
    pub fn echogenicity(self) -> f64 {
        match self {
            Tissue::Skin => 1.2,
            Tissue::Fat => 0.35,
            Tissue::Muscle => 0.7,
            Tissue::Capsule => 1.4,
            Tissue::Recess => 0.08,
            Tissue::Bone | Tissue::VesselLumen => 0.0,
            Tissue::VesselWall => 1.6,
            Tissue::Nerve => 1.0,
        }
    }
}

/// A straight tubular structure (vessel, nerve) along `direction`.
#[derive(Debug, Clone)]
pub struct Tube {
    pub name: &'static str,
    pub point: DVec3,
    pub direction: DVec3,
    pub radius: f64,
    pub nerve: bool,
}

impl Tube {
    pub fn distance(&self, p: DVec3) -> f64 {
        let d = p - self.point;
        (d - self.direction * d.dot(self.direction)).length()
    }
}

/// Dimensions of the anterior hip (metres). Defaults: an adult, head
/// 48 mm across, 55 mm under the skin.
#[derive(Debug, Clone)]
pub struct Hip {
    pub skin_depth: f64,
    pub head_radius: f64,
    /// Unit axis of the femoral neck from the head centre: inferolateral,
    /// slightly anterior (anteversion).
    pub neck_axis: DVec3,
    pub neck_radius: f64,
    pub neck_length: f64,
    /// Distance along the neck axis of the head–neck junction.
    pub junction: f64,
    /// Capsule-to-bone distance over the neck (anterior recess).
    pub recess_depth: f64,
    pub capsule_thickness: f64,
    pub effusion: bool,
    pub fat_thickness: f64,
    pub tubes: Vec<Tube>,
    /// Attenuation behind bone, dB.
    pub shadow_db: f64,
    /// The skin surface under the probe (a point on it and the inward
    /// normal): a probe pressed on the hip flattens the skin under it, so
    /// the layers (skin, fat, muscle) follow the probe face.
    pub surface: (DVec3, DVec3),
}

impl Hip {
    pub fn new(effusion: bool) -> Hip {
        let skin_depth = 0.055;
        let neck_axis = DVec3::new(0.55, -0.80, -0.18).normalize();
        let along_y = DVec3::new(0.12, 1.0, 0.0).normalize();
        Hip {
            skin_depth,
            head_radius: 0.024,
            neck_axis,
            neck_radius: 0.015,
            neck_length: 0.075,
            junction: 0.021,
            recess_depth: if effusion { 0.010 } else { 0.006 },
            capsule_thickness: 0.0025,
            effusion,
            fat_thickness: 0.012,
            tubes: vec![
                // Femoral nerve, artery, vein from lateral to medial, anterior
                // to the joint, running inferiorly (and slightly laterally).
                Tube {
                    name: "femoral_nerve",
                    point: DVec3::new(-0.006, 0.0, -0.036),
                    direction: along_y,
                    radius: 0.004,
                    nerve: true,
                },
                Tube {
                    name: "femoral_artery",
                    point: DVec3::new(-0.016, 0.0, -0.034),
                    direction: along_y,
                    radius: 0.004,
                    nerve: false,
                },
                Tube {
                    name: "femoral_vein",
                    point: DVec3::new(-0.028, 0.0, -0.032),
                    direction: along_y,
                    radius: 0.0055,
                    nerve: false,
                },
            ],
            shadow_db: 35.0,
            surface: (DVec3::new(0.0, 0.0, -skin_depth), DVec3::Z),
        }
    }

    /// Along-axis coordinate and radial distance of `p` about the neck axis.
    fn neck_coords(&self, p: DVec3) -> (f64, f64) {
        let s = p.dot(self.neck_axis);
        (s, (p - self.neck_axis * s).length())
    }

    fn in_acetabulum(&self, p: DVec3) -> bool {
        // The rim: a shell over the superior (and medial) head, 1.5–9 mm
        // outside the head (the cartilage and labrum between are soft).
        let r = p.length();
        let dir = p / r.max(1e-12);
        r > self.head_radius + 0.0015
            && r < self.head_radius + 0.009
            && dir.y > 0.45
            && dir.x < 0.35
    }

    pub fn is_bone(&self, p: DVec3) -> bool {
        if p.length() <= self.head_radius || self.in_acetabulum(p) {
            return true;
        }
        let (s, rho) = self.neck_coords(p);
        s > 0.0 && s < self.neck_length && rho <= self.neck_radius
    }

    /// A lower bound of the distance from `p` to the nearest bone: the
    /// head and the acetabulum lie inside the sphere of the acetabulum's
    /// outer radius, and the neck within its radius of its axis segment.
    pub fn bone_clearance(&self, p: DVec3) -> f64 {
        let ball = p.length() - (self.head_radius + 0.009);
        let s = p.dot(self.neck_axis).clamp(0.0, self.neck_length);
        let neck = (p - self.neck_axis * s).length() - self.neck_radius;
        ball.min(neck)
    }

    /// Distance from `p` to the femur's surface (head or neck), positive
    /// outside, and whether the nearest surface is the neck.
    fn femur_distance(&self, p: DVec3) -> (f64, bool) {
        let head = p.length() - self.head_radius;
        let (s, rho) = self.neck_coords(p);
        let neck = if s > 0.0 && s < self.neck_length {
            rho - self.neck_radius
        } else {
            f64::INFINITY
        };
        if neck < head {
            (neck, true)
        } else {
            (head, false)
        }
    }

    /// This hip with the skin flattened under a probe face at `point`
    /// looking along `normal`.
    pub fn under_probe(&self, point: DVec3, normal: DVec3) -> Hip {
        Hip {
            surface: (point, normal.normalize()),
            ..self.clone()
        }
    }

    pub fn tissue(&self, p: DVec3) -> Tissue {
        let depth = (p - self.surface.0).dot(self.surface.1);
        if depth < 0.0 {
            return Tissue::Bone; // outside the body: nothing scatters
        }
        if self.is_bone(p) {
            return Tissue::Bone;
        }
        for t in &self.tubes {
            let d = t.distance(p);
            if d < t.radius {
                return if t.nerve {
                    Tissue::Nerve
                } else {
                    Tissue::VesselLumen
                };
            }
            if !t.nerve && d < t.radius + 0.0007 {
                return Tissue::VesselWall;
            }
        }
        // Capsule and recess lie on the anterior side of the femur only.
        let (db, on_neck) = self.femur_distance(p);
        let (s, _) = self.neck_coords(p);
        let anterior = p.z < 0.0;
        if anterior && db > 0.0 {
            // Over the head the capsule hugs the cartilage; over the neck,
            // beyond the junction, it stands off by the recess depth.
            let gap = if on_neck && s > self.junction {
                self.recess_depth
            } else {
                0.0015
            };
            if db < gap {
                return Tissue::Recess;
            }
            if db < gap + self.capsule_thickness {
                return Tissue::Capsule;
            }
        }
        if depth < 0.002 {
            Tissue::Skin
        } else if depth < 0.002 + self.fat_thickness {
            Tissue::Fat
        } else {
            Tissue::Muscle
        }
    }

    /// Distance along the ray `origin + t·dir` (unit `dir`) to the first
    /// bone surface, if any within `max_t`.
    pub fn first_bone_hit(&self, origin: DVec3, dir: DVec3, max_t: f64) -> Option<f64> {
        let mut best: Option<f64> = None;
        let mut keep = |t: f64| {
            if t > 0.0 && t < max_t && best.is_none_or(|b| t < b) {
                best = Some(t);
            }
        };
        // Head sphere.
        if let Some(t) = ray_sphere(origin, dir, self.head_radius) {
            keep(t);
        }
        // Neck: infinite cylinder, kept where the hit lies on the segment.
        if let Some(t) = ray_cylinder(origin, dir, self.neck_axis, self.neck_radius) {
            let s = (origin + dir * t).dot(self.neck_axis);
            if s > 0.0 && s < self.neck_length {
                keep(t);
            }
        }
        // Acetabular rim: its outer sphere where the shell exists.
        if let Some(t) = ray_sphere(origin, dir, self.head_radius + 0.009 - 1e-6) {
            if self.in_acetabulum(origin + dir * (t + 2e-6)) {
                keep(t);
            }
        }
        best
    }
}

fn ray_sphere(o: DVec3, d: DVec3, r: f64) -> Option<f64> {
    let b = o.dot(d);
    let c = o.length_squared() - r * r;
    let disc = b * b - c;
    if disc < 0.0 {
        return None;
    }
    let t = -b - disc.sqrt();
    (t > 0.0).then_some(t)
}

fn ray_cylinder(o: DVec3, d: DVec3, axis: DVec3, r: f64) -> Option<f64> {
    let op = o - axis * o.dot(axis);
    let dp = d - axis * d.dot(axis);
    let a = dp.length_squared();
    if a < 1e-18 {
        return None;
    }
    let b = op.dot(dp);
    let c = op.length_squared() - r * r;
    let disc = b * b - a * c;
    if disc < 0.0 {
        return None;
    }
    let t = (-b - disc.sqrt()) / a;
    (t > 0.0).then_some(t)
}

/// Where the probe's beams come from, for shadows and specular angles.
#[derive(Debug, Clone, Copy)]
pub enum BeamOrigin {
    /// Convex probe: rays fan out from the centre of curvature (patient frame).
    Point(DVec3),
    /// Linear probe: parallel rays along `direction`.
    Parallel(DVec3),
}

impl BeamOrigin {
    /// Unit beam direction reaching `p`.
    pub fn direction_to(&self, p: DVec3) -> DVec3 {
        match *self {
            BeamOrigin::Point(o) => (p - o).normalize(),
            BeamOrigin::Parallel(d) => d,
        }
    }
}

/// The slab of patient space a probe images: a box in the image frame.
#[derive(Debug, Clone)]
pub struct Slab {
    /// Image frame → patient frame.
    pub image_to_patient: super::pose::Pose,
    pub x: (f64, f64),
    pub z: (f64, f64),
    /// Half thickness in elevation.
    pub half_y: f64,
}

/// The speckle density at which tissue amplitudes are as `echogenicity`
/// says (per cubic metre: 4 per mm³, the scenes' default).
pub const REFERENCE_DENSITY: f64 = 4.0e9;

/// Bone's diffuse echo, relative to its specular peak: a cortex is rough
/// on the scale of a wavelength, so it stays bright (well above the soft
/// tissue over it) even where the beam meets it obliquely, as at the
/// head–neck junction.
pub const BONE_DIFFUSE: f64 = 0.3;

/// Scatterers of the hip in the image frame (metres) for one probe pose:
/// speckle of every soft tissue at `density` per cubic metre, muscle
/// fibres, bright vessel walls, the specular bone cortex, and shadows.
/// Speckle amplitudes scale as 1/sqrt(density), so that tissue keeps its
/// mean brightness against bone and needle at any density: a sparse
/// (fast) phantom is grainier, not darker.
pub fn hip_scatterers(
    hip: &Hip,
    slab: &Slab,
    beams: BeamOrigin,
    density: f64,
    seed: u64,
) -> Vec<Scatterer> {
    let mut rng = Rng::new(seed);
    let volume = (slab.x.1 - slab.x.0) * (slab.z.1 - slab.z.0) * 2.0 * slab.half_y;
    let n = (volume * density).round() as usize;
    let speckle_gain = (REFERENCE_DENSITY / density.max(1.0)).sqrt();
    let to_patient = &slab.image_to_patient;
    let shadow = 10f64.powf(-hip.shadow_db / 20.0);
    let fibre_dir = DVec3::new(0.15, 1.0, 0.1).normalize();
    let mut out = Vec::with_capacity(n + n / 4);
    let shadow_factor = |p: DVec3| -> f64 {
        let (o, dir, dist) = match beams {
            BeamOrigin::Point(o) => (o, (p - o).normalize(), (p - o).length()),
            BeamOrigin::Parallel(d) => (p - d * 0.2, d, 0.2),
        };
        match hip.first_bone_hit(o, dir, dist - 0.0004) {
            Some(_) => shadow,
            None => 1.0,
        }
    };
    // Speckle fixed to the tissue (see `tissue_cells`), Gaussian amplitudes
    // scaled by the tissue.
    out.extend(tissue_cells(slab, density, seed, |q, p, g| {
        let tissue = hip.tissue(p);
        let mut a = tissue.echogenicity() * speckle_gain;
        if a == 0.0 {
            return None;
        }
        if tissue == Tissue::Muscle || tissue == Tissue::Capsule {
            // Fibre texture: brightness modulated along bands across the
            // fibre direction, so the speckle lines up with the fibres.
            let across = (p - fibre_dir * p.dot(fibre_dir)).length();
            a *= 0.55
                + 0.45
                    * (across * 2.0 * std::f64::consts::PI / 0.0011
                        + 7.0 * (p.dot(fibre_dir) * 40.0).sin())
                    .sin()
                    .abs();
        }
        if hip.effusion && tissue == Tissue::Recess {
            return None;
        }
        a *= shadow_factor(p);
        Some(Scatterer {
            position: q,
            amplitude: a * g,
        })
    }));
    // Bone cortex: a dense sheet on the visible femur and acetabulum
    // surfaces, specular (∝ cos^4 of the incidence angle) over a diffuse
    // floor.
    let step = 0.00012;
    let nx = ((slab.x.1 - slab.x.0) / step) as usize;
    let ny = ((2.0 * slab.half_y) / (4.0 * step)).max(1.0) as usize;
    for iy in 0..ny {
        let y = -slab.half_y + (iy as f64 + 0.5) * 2.0 * slab.half_y / ny as f64;
        for ix in 0..nx {
            let x = slab.x.0 + (ix as f64 + rng.next_f64()) * step;
            // March down this image column to the first bone sample.
            let mut z = slab.z.0;
            let dz = 0.0002;
            while z < slab.z.1 {
                let p = to_patient.apply(DVec3::new(x, y, z));
                // Samples nearer than the bone's clearance cannot be bone:
                // skip them, still stepping z by additions, so the samples
                // and the hit are those of the plain march (which took a
                // display image 26 ms, most of its scatterers' time).
                let clear = hip.bone_clearance(p) / dz - 0.01;
                if clear >= 1.0 {
                    for _ in 0..clear as usize {
                        z += dz;
                    }
                    continue;
                }
                if hip.is_bone(p) {
                    let q = DVec3::new(x, y, z - dz / 2.0);
                    let p = to_patient.apply(q);
                    let normal = bone_normal(hip, p);
                    let beam = beams.direction_to(p);
                    let cos = (-normal.dot(beam)).max(0.0);
                    let facing = if cos > 0.0 {
                        BONE_DIFFUSE + (1.0 - BONE_DIFFUSE) * cos.powi(4)
                    } else {
                        0.0
                    };
                    let a = 0.8 * facing * shadow_factor(p - normal * 0.0003).max(0.0);
                    if a > 1e-3 {
                        out.push(Scatterer {
                            position: q,
                            amplitude: a * (0.7 + 0.3 * rng.normal().abs()),
                        });
                    }
                    break;
                }
                z += dz;
            }
        }
    }
    out
}

/// Speckle positions fixed to the patient: space is cut into cubic cells
/// of volume 1/`density` on a grid fixed in the patient frame, each holding
/// a Poisson number (mean 1) of scatterers at uniform places, drawn with
/// their amplitudes from a generator seeded by the cell and `seed`: a
/// Poisson process of the given density, as uniform sampling of a volume
/// gives (one scatterer per cell, a jittered grid, would be too regular:
/// fewer dark gaps at the sparse densities the fast presets use). The same tissue so gives the
/// same speckle whatever the probe pose: with the probe still, the speckle
/// stands still while the needle moves; as the probe slides, it moves with
/// the tissue and decorrelates only as the slab leaves it (speckle drawn
/// afresh per frame boils, which no scanner shows). Only the cells near the
/// slab are visited: along the patient axis closest to the slab's normal,
/// each column of cells is cut to the slab's thickness.
/// `visit(q, p, g)` gets each position inside the slab in the image frame
/// (`q`) and the patient frame (`p`), and its standard normal draw `g`,
/// and returns what to keep of it, in cell order.
///
/// The columns of cells are shared among threads (a display image's
/// ~42 000 scatterers, each with a shadow ray, took 77–94 ms on one
/// thread); each cell's draws depend only on the cell, and the parts are
/// joined in column order, so the result does not depend on the threads.
fn tissue_cells<T: Send>(
    slab: &Slab,
    density: f64,
    seed: u64,
    visit: impl Fn(DVec3, DVec3, f64) -> Option<T> + Sync,
) -> Vec<T> {
    let threads = std::thread::available_parallelism()
        .map(|t| t.get())
        .unwrap_or(1)
        .clamp(1, 32);
    tissue_cells_on(threads, slab, density, seed, visit)
}

fn tissue_cells_on<T: Send>(
    threads: usize,
    slab: &Slab,
    density: f64,
    seed: u64,
    visit: impl Fn(DVec3, DVec3, f64) -> Option<T> + Sync,
) -> Vec<T> {
    if density.is_nan() || density <= 0.0 {
        return Vec::new();
    }
    let c = density.powf(-1.0 / 3.0);
    let to_patient = &slab.image_to_patient;
    let to_image = to_patient.inverse();
    let normal = to_patient.rotate(DVec3::Y);
    let origin = to_patient.apply(DVec3::ZERO);
    let (mut lo, mut hi) = (DVec3::splat(f64::INFINITY), DVec3::splat(f64::NEG_INFINITY));
    for &x in &[slab.x.0, slab.x.1] {
        for &y in &[-slab.half_y, slab.half_y] {
            for &z in &[slab.z.0, slab.z.1] {
                let p = to_patient.apply(DVec3::new(x, y, z));
                lo = lo.min(p);
                hi = hi.max(p);
            }
        }
    }
    let cell = |v: f64| (v / c).floor() as i64;
    let (clo, chi) = (
        [cell(lo.x), cell(lo.y), cell(lo.z)],
        [cell(hi.x), cell(hi.y), cell(hi.z)],
    );
    // k: the axis most along the normal; a, b: the other two.
    let n = normal.to_array();
    let k = (0..3)
        .max_by(|&i, &j| n[i].abs().total_cmp(&n[j].abs()))
        .unwrap_or(1);
    let (a, b) = ((k + 1) % 3, (k + 2) % 3);
    // A cell whose centre is within half_y + c of the mid-plane may hold
    // a point inside the slab.
    let reach = slab.half_y + c;
    let on_plane = origin.dot(normal);
    let columns = |ias: std::ops::Range<i64>| {
        let mut out = Vec::new();
        for ia in ias {
            for ib in clo[b]..=chi[b] {
                let (pa, pb) = ((ia as f64 + 0.5) * c, (ib as f64 + 0.5) * c);
                let mid = (on_plane - pa * n[a] - pb * n[b]) / n[k];
                let half = reach / n[k].abs();
                for ik in cell(mid - half).max(clo[k])..=cell(mid + half).min(chi[k]) {
                    let mut idx = [0i64; 3];
                    (idx[a], idx[b], idx[k]) = (ia, ib, ik);
                    let mut rng = Rng::new(cell_seed(seed, idx));
                    // Poisson(1) by multiplying uniforms (Knuth).
                    let (mut count, mut prod) = (0, rng.next_f64());
                    while prod > (-1.0f64).exp() {
                        count += 1;
                        prod *= rng.next_f64();
                    }
                    for _ in 0..count {
                        let p = DVec3::new(
                            (idx[0] as f64 + rng.next_f64()) * c,
                            (idx[1] as f64 + rng.next_f64()) * c,
                            (idx[2] as f64 + rng.next_f64()) * c,
                        );
                        // Drawn for every point, in or out of this slab, so
                        // that a cell's draws do not depend on the slab.
                        let amplitude = rng.normal();
                        let q = to_image.apply(p);
                        if q.y.abs() <= slab.half_y
                            && (slab.x.0..=slab.x.1).contains(&q.x)
                            && (slab.z.0..=slab.z.1).contains(&q.z)
                        {
                            out.extend(visit(q, p, amplitude));
                        }
                    }
                }
            }
        }
        out
    };
    let (first, end) = (clo[a], chi[a] + 1);
    let span = (end - first).max(0) as usize;
    let threads = threads.clamp(1, span.max(1));
    if threads == 1 {
        return columns(first..end);
    }
    let per = span.div_ceil(threads) as i64;
    std::thread::scope(|scope| {
        let parts: Vec<_> = (0..threads as i64)
            .map(|t| {
                let lo = (first + t * per).min(end);
                let hi = (lo + per).min(end);
                let columns = &columns;
                scope.spawn(move || columns(lo..hi))
            })
            .collect();
        let mut out = Vec::new();
        for part in parts {
            match part.join() {
                Ok(v) => out.extend(v),
                Err(e) => std::panic::resume_unwind(e),
            }
        }
        out
    })
}

/// A well-mixed seed for a cell (splitmix64 over the seed and the indices).
fn cell_seed(seed: u64, idx: [i64; 3]) -> u64 {
    let mut h = seed;
    for i in idx {
        h = h.wrapping_add(i as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
        h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        h ^= h >> 31;
    }
    h
}

fn bone_normal(hip: &Hip, p: DVec3) -> DVec3 {
    let (db, on_neck) = hip.femur_distance(p);
    let r = p.length();
    if hip.in_acetabulum(p)
        || r > hip.head_radius + 0.001 && db > 0.001 && !on_neck && r > hip.head_radius + 0.0015
    {
        return p / r; // acetabular rim: outward from the head centre
    }
    if on_neck {
        let s = p.dot(hip.neck_axis);
        (p - hip.neck_axis * s).normalize()
    } else {
        p / r.max(1e-12)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Speckle is fixed to the tissue: a probe slid 6 mm along its array
    /// and tilted a little finds, where its slab overlaps the first one,
    /// the very scatterers (patient positions and amplitudes) the first
    /// found; and the count is density × volume.
    #[test]
    fn speckle_stays_with_the_tissue_as_the_probe_moves() {
        use super::super::pose::Pose;
        let density = 0.5e9;
        let axes = |tilt: f64| {
            let (c, s) = (tilt.cos(), tilt.sin());
            (
                DVec3::new(c, 0.3 * s, s).normalize(),
                DVec3::new(-0.3 * s, 1.0, 0.0).normalize(),
            )
        };
        let pose = |shift: f64, tilt: f64| {
            let (x, y0) = axes(tilt);
            let z = x.cross(y0).normalize();
            let y = z.cross(x);
            Pose::from_axes(DVec3::new(0.004, -0.002, -0.05) + shift * x, x, y, z)
        };
        let slab = |p: Pose| Slab {
            image_to_patient: p,
            x: (-0.02, 0.02),
            z: (0.0, 0.03),
            half_y: 0.002,
        };
        let collect = |s: &Slab| tissue_cells(s, density, 7, |q, p, g| Some((q, p, g)));
        let a = collect(&slab(pose(0.0, 0.3)));
        let expected = density * 0.04 * 0.03 * 0.004;
        assert!(
            (a.len() as f64 - expected).abs() < 0.05 * expected,
            "{} scatterers, expected about {expected:.0}",
            a.len()
        );
        assert_eq!(
            a.len(),
            collect(&slab(pose(0.0, 0.3))).len(),
            "deterministic"
        );
        for (q, p, _) in &a {
            assert!((slab(pose(0.0, 0.3)).image_to_patient.apply(*q) - *p).length() < 1e-12);
        }
        // Slid along the array: a 34 mm wide overlap, the same tissue.
        let b = collect(&slab(pose(0.006, 0.3)));
        let key = |p: DVec3| {
            (
                (p.x * 1e9).round() as i64,
                (p.y * 1e9).round() as i64,
                (p.z * 1e9).round() as i64,
            )
        };
        let in_b: std::collections::HashMap<_, f64> =
            b.iter().map(|(_, p, amp)| (key(*p), *amp)).collect();
        let overlap: Vec<_> = a.iter().filter(|(q, _, _)| q.x > -0.014 + 1e-4).collect();
        let same = overlap
            .iter()
            .filter(|(_, p, amp)| in_b.get(&key(*p)) == Some(amp))
            .count();
        assert_eq!(
            same,
            overlap.len(),
            "of {} scatterers in the overlap, {same} found again",
            overlap.len()
        );
        // Moved 2 mm out of plane (half the slab): half the speckle is
        // the same tissue's, the rest is new.
        let pa = pose(0.0, 0.3);
        let moved = Pose {
            translation: pa.translation + 0.002 * pa.rotate(DVec3::Y),
            ..pa
        };
        let c = collect(&slab(moved));
        let in_a: std::collections::HashSet<_> = a.iter().map(|(_, p, _)| key(*p)).collect();
        let shared = c.iter().filter(|(_, p, _)| in_a.contains(&key(*p))).count();
        let frac = shared as f64 / c.len() as f64;
        assert!(
            (0.4..0.6).contains(&frac),
            "out of plane by half the slab: {shared} of {} shared",
            c.len()
        );
    }

    /// Columns of cells shared among threads give the very scatterers, in
    /// the very order, of one thread.
    #[test]
    fn tissue_cells_do_not_depend_on_the_threads() {
        use super::super::pose::Pose;
        let slab = Slab {
            image_to_patient: Pose::from_axes(
                DVec3::new(0.001, 0.0, -0.04),
                DVec3::new(0.9, 0.1, 0.3).normalize(),
                DVec3::new(-0.1, 1.0, 0.0).normalize(),
                DVec3::new(0.9, 0.1, 0.3)
                    .normalize()
                    .cross(DVec3::new(-0.1, 1.0, 0.0).normalize())
                    .normalize(),
            ),
            x: (-0.02, 0.02),
            z: (0.0, 0.04),
            half_y: 0.002,
        };
        let run = |t| tissue_cells_on(t, &slab, 0.3e9, 5, |q, _, g| Some((q, g)));
        let one = run(1);
        assert!(one.len() > 1000, "{} scatterers", one.len());
        for t in [2, 3, 7] {
            assert_eq!(run(t), one, "{t} threads");
        }
    }

    /// The clearance is a lower bound of the distance to bone: no point
    /// nearer than it, in any direction, is bone; and it is tight enough
    /// to be worth having (a point 30 mm in front of the head clears 5 mm).
    #[test]
    fn bone_clearance_is_never_more_than_the_distance_to_bone() {
        let hip = Hip::new(false);
        let mut rng = Rng::new(4);
        let mut checked = 0;
        for _ in 0..4000 {
            let p = DVec3::new(
                rng.next_f64() - 0.5,
                rng.next_f64() - 0.5,
                rng.next_f64() - 0.5,
            ) * 0.12;
            let c = hip.bone_clearance(p);
            if c <= 0.0 {
                assert!(!hip.is_bone(p) || c <= 0.0);
                continue;
            }
            for _ in 0..8 {
                let d = DVec3::new(rng.normal(), rng.normal(), rng.normal()).normalize();
                let q = p + d * (c * 0.999 * rng.next_f64().sqrt());
                assert!(!hip.is_bone(q), "{q:?} is bone, {c} from {p:?}");
                checked += 1;
            }
        }
        assert!(checked > 10_000);
        assert!(hip.bone_clearance(DVec3::new(0.0, 0.0, -0.03 - hip.head_radius)) > 0.005);
    }

    #[test]
    fn tissues_at_known_places() {
        let hip = Hip::new(false);
        assert_eq!(hip.tissue(DVec3::new(0.0, 0.0, 0.0)), Tissue::Bone);
        assert_eq!(hip.tissue(DVec3::new(0.0, 0.0, -0.0545)), Tissue::Skin);
        assert_eq!(hip.tissue(DVec3::new(0.01, 0.0, -0.048)), Tissue::Fat);
        assert_eq!(hip.tissue(hip.tubes[1].point), Tissue::VesselLumen);
        // Over the neck beyond the junction, 3 mm off the anterior cortex: recess.
        let s = 0.035;
        let on_axis = hip.neck_axis * s;
        let anterior =
            (DVec3::new(0.0, 0.0, -1.0) - hip.neck_axis * (-hip.neck_axis.z)).normalize();
        let p = on_axis + anterior * (hip.neck_radius + 0.003);
        assert_eq!(hip.tissue(p), Tissue::Recess);
        assert_eq!(
            hip.tissue(on_axis + anterior * (hip.neck_radius + 0.007)),
            Tissue::Capsule
        );
        let wet = Hip::new(true);
        assert_eq!(
            wet.tissue(on_axis + anterior * (hip.neck_radius + 0.008)),
            Tissue::Recess
        );
    }

    #[test]
    fn rays_hit_the_head_at_its_anterior_cortex() {
        let hip = Hip::new(false);
        let t = hip
            .first_bone_hit(DVec3::new(0.0, 0.0, -0.1), DVec3::Z, 1.0)
            .unwrap();
        assert!((t - (0.1 - hip.head_radius)).abs() < 1e-9);
        assert!(hip
            .first_bone_hit(DVec3::new(0.08, 0.08, -0.1), DVec3::Z, 1.0)
            .is_none());
    }
}
