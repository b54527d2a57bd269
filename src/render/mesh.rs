//! Triangle meshes of the tools and the anatomy, built in their own frames
//! and placed at a pose each frame on the CPU (a few thousand vertices: a
//! queue write is cheaper than a model-matrix uniform per draw here).

use bytemuck::{Pod, Zeroable};
use glam::DVec3;

use crate::acquisition::{Probe, ProbeKind};
use crate::scene::needle::Needle;
use crate::scene::pose::Pose;

/// One lit vertex, world coordinates (metres). Keep in sync with `MeshIn`
/// in composite.wgsl (vertex attributes, so only the order matters).
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct MeshVertex {
    pub position: [f32; 3],
    pub normal: [f32; 3],
    pub color: [f32; 4],
}

/// Triangles in a local frame (metres), with flat normals per triangle.
#[derive(Debug, Clone, Default)]
pub struct Mesh {
    pub triangles: Vec<[DVec3; 3]>,
}

impl Mesh {
    fn tri(&mut self, a: DVec3, b: DVec3, c: DVec3) {
        self.triangles.push([a, b, c]);
    }

    fn quad(&mut self, a: DVec3, b: DVec3, c: DVec3, d: DVec3) {
        self.tri(a, b, c);
        self.tri(a, c, d);
    }

    /// Append the mesh placed at `pose`, in `color`.
    pub fn emit(&self, pose: &Pose, color: [f32; 4], out: &mut Vec<MeshVertex>) {
        for t in &self.triangles {
            let p = t.map(|v| pose.apply(v));
            let n = (p[1] - p[0]).cross(p[2] - p[0]).normalize_or_zero();
            for v in p {
                out.push(MeshVertex {
                    position: v.as_vec3().to_array(),
                    normal: n.as_vec3().to_array(),
                    color,
                });
            }
        }
    }

    /// A closed prism: the polygon `profile` in the (x, z) plane extruded
    /// from y = −half_y to +half_y. The profile must be star-shaped about
    /// `centre` (the caps are fans from it).
    fn extrude(&mut self, profile: &[(f64, f64)], centre: (f64, f64), half_y: f64) {
        let p = |(x, z): (f64, f64), y: f64| DVec3::new(x, y, z);
        for i in 0..profile.len() {
            let (a, b) = (profile[i], profile[(i + 1) % profile.len()]);
            self.quad(p(a, -half_y), p(b, -half_y), p(b, half_y), p(a, half_y));
            self.tri(p(centre, -half_y), p(b, -half_y), p(a, -half_y));
            self.tri(p(centre, half_y), p(a, half_y), p(b, half_y));
        }
    }

    /// A tube along +z from z0 to z1 (radii r0, r1), `n` sides, capped.
    fn tube(&mut self, z0: f64, z1: f64, r0: f64, r1: f64, n: usize) {
        for i in 0..n {
            let (a, b) = (ring(i, n), ring(i + 1, n));
            let (p0, p1, q0, q1) = (
                a * r0 + DVec3::Z * z0,
                b * r0 + DVec3::Z * z0,
                a * r1 + DVec3::Z * z1,
                b * r1 + DVec3::Z * z1,
            );
            self.quad(p0, p1, q1, q0);
            self.tri(DVec3::Z * z0, p1, p0);
            self.tri(DVec3::Z * z1, q0, q1);
        }
    }
}

fn ring(i: usize, n: usize) -> DVec3 {
    let a = std::f64::consts::TAU * i as f64 / n as f64;
    DVec3::new(a.cos(), a.sin(), 0.0)
}

/// The transducer in the probe frame (x along the array, z into the body,
/// the face on the elements): a convex head whose face follows the
/// elements' arc, or a flat one for a linear array, on a narrower handle.
pub fn probe(probe: &Probe) -> Mesh {
    let first = probe.elements[0].position;
    let last = probe.elements[probe.len() - 1].position;
    let half = last.x.abs().max(first.x.abs()) + 0.003;
    let height = probe.elements[0].height.max(0.005);
    let mut profile: Vec<(f64, f64)> = Vec::new();
    // Face, from +x to −x, then up the −x side, the handle, and down +x: a
    // counter-clockwise walk seen from −y.
    match probe.kind {
        ProbeKind::Convex { radius, center } => {
            let a = (half / radius).asin();
            for i in 0..=24 {
                let t = a - 2.0 * a * i as f64 / 24.0;
                profile.push((center[0] + radius * t.sin(), center[1] + radius * t.cos()));
            }
        }
        _ => {
            profile.push((half, 0.0));
            profile.push((-half, 0.0));
        }
    }
    let shoulder = -0.012;
    let handle = (0.4 * half).max(0.012);
    profile.extend([
        (-half, shoulder),
        (-handle, shoulder - 0.02),
        (-handle, -0.11),
        (handle, -0.11),
        (handle, shoulder - 0.02),
        (half, shoulder),
    ]);
    let mut m = Mesh::default();
    m.extrude(&profile, (0.0, shoulder - 0.01), 0.5 * height + 0.004);
    m
}

/// The needle in its frame (origin at the hub, +z along the shaft to the
/// tip): shaft, hub, and a tip cut at the bevel angle.
pub fn needle(n: &Needle) -> Mesh {
    let r = 0.5 * n.outer_diameter;
    let sides = 12;
    // The bevel plane: the tip point on the +x side at z = length, the heel
    // on −x side 2r/tan(bevel) behind it.
    let bevel = n.bevel_deg.to_radians().tan().max(0.05);
    let cut = |p: DVec3| n.length - (r - p.x) / bevel;
    let mut m = Mesh::default();
    for i in 0..sides {
        let (a, b) = (ring(i, sides) * r, ring(i + 1, sides) * r);
        let (a1, b1) = (a + DVec3::Z * cut(a), b + DVec3::Z * cut(b));
        m.quad(a, b, b1, a1);
        // The bevel face, a fan from its centre.
        let c = DVec3::new(0.0, 0.0, cut(DVec3::ZERO));
        m.tri(c, a1, b1);
    }
    // Hub: a tapered cylinder behind the shaft.
    m.tube(-0.018, 0.0, 0.004, 0.0025, 16);
    m
}

/// A sphere of radius `r` about the origin.
pub fn sphere(r: f64, rings: usize) -> Mesh {
    let mut m = Mesh::default();
    let sectors = 2 * rings;
    let at = |i: usize, j: usize| {
        let th = std::f64::consts::PI * i as f64 / rings as f64;
        let ph = std::f64::consts::TAU * j as f64 / sectors as f64;
        DVec3::new(th.sin() * ph.cos(), th.sin() * ph.sin(), th.cos()) * r
    };
    for i in 0..rings {
        for j in 0..sectors {
            m.quad(at(i, j), at(i + 1, j), at(i + 1, j + 1), at(i, j + 1));
        }
    }
    m.triangles
        .retain(|t| (t[1] - t[0]).cross(t[2] - t[0]).length() > 0.0);
    m
}

/// A capped cylinder of radius `r` along +z from z0 to z1.
pub fn cylinder(z0: f64, z1: f64, r: f64) -> Mesh {
    let mut m = Mesh::default();
    m.tube(z0, z1, r, r, 20);
    m
}

/// The pose that puts +z along `dir` at `origin`.
pub fn along(origin: DVec3, dir: DVec3) -> Pose {
    let z = dir.normalize();
    let any = if z.x.abs() < 0.9 { DVec3::X } else { DVec3::Y };
    let y = z.cross(any).normalize();
    let x = y.cross(z);
    Pose::from_axes(origin, x, y, z)
}
