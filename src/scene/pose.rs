//! Rigid poses of tracked tools, the calibrations a tracked-ultrasound
//! system uses, and scripted trajectories with hand tremor.
//!
//! Conventions follow PLUS: a transform named `AToB` maps coordinates in
//! frame A to frame B. Tools: `ProbeToReference`, `NeedleToReference`;
//! calibrations: `ImageToProbe` (the image plane in the probe frame) and
//! `NeedleTipToNeedle`. Lengths in millimetres at this edge (the recorded
//! text format), metres inside the engine.

use std::fmt::Write as _;

use glam::{DQuat, DVec3};

/// A rigid transform: `p' = rotation · p + translation`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pose {
    pub translation: DVec3,
    /// Unit quaternion.
    pub rotation: DQuat,
}

impl Pose {
    /// How far `other` is from this pose, in metres: the translation
    /// plus 20 mm per radian of rotation (about what a turn moves an image
    /// a few centimetres deep).
    pub fn moved_from(&self, other: &Pose) -> f64 {
        (self.translation - other.translation).length()
            + 0.05 * self.rotation.angle_between(other.rotation)
    }

    pub const IDENTITY: Pose = Pose {
        translation: DVec3::ZERO,
        rotation: DQuat::IDENTITY,
    };

    /// The pose whose frame has axes `x`, `y`, `z` (columns, orthonormal,
    /// right-handed) and origin `origin`, in the parent frame.
    pub fn from_axes(origin: DVec3, x: DVec3, y: DVec3, z: DVec3) -> Pose {
        let m = glam::DMat3::from_cols(x, y, z);
        Pose {
            translation: origin,
            rotation: DQuat::from_mat3(&m).normalize(),
        }
    }

    pub fn apply(&self, p: DVec3) -> DVec3 {
        self.rotation * p + self.translation
    }

    pub fn rotate(&self, v: DVec3) -> DVec3 {
        self.rotation * v
    }

    pub fn inverse(&self) -> Pose {
        let r = self.rotation.inverse();
        Pose {
            translation: -(r * self.translation),
            rotation: r,
        }
    }

    /// `self ∘ inner`: first `inner`, then `self`.
    pub fn then(&self, inner: &Pose) -> Pose {
        Pose {
            translation: self.apply(inner.translation),
            rotation: (self.rotation * inner.rotation).normalize(),
        }
    }

    /// Interpolation between two poses (linear position, slerp rotation).
    pub fn lerp(&self, other: &Pose, t: f64) -> Pose {
        Pose {
            translation: self.translation.lerp(other.translation, t),
            rotation: self.rotation.slerp(other.rotation, t).normalize(),
        }
    }

    /// The 4×4 homogeneous matrix, row-major, translation in millimetres:
    /// the form trackers, OpenIGTLink and PLUS files use.
    pub fn to_matrix_mm(&self) -> [[f64; 4]; 4] {
        let r = glam::DMat3::from_quat(self.rotation);
        let t = self.translation * 1e3;
        let mut m = [[0.0; 4]; 4];
        for (i, row) in m.iter_mut().take(3).enumerate() {
            *row = [r.col(0)[i], r.col(1)[i], r.col(2)[i], t[i]];
        }
        m[3] = [0.0, 0.0, 0.0, 1.0];
        m
    }

    /// The pose of a row-major 4×4 matrix in millimetres. Trackers send
    /// float32 rotations that are orthonormal only to ~1e-6, so the
    /// rotation is re-orthonormalised; a matrix that is not a rigid
    /// transform (scaled, sheared, reflected, non-finite, bottom row not
    /// 0 0 0 1) is an error that says which.
    pub fn from_matrix_mm(m: &[[f64; 4]; 4]) -> Result<Pose, String> {
        if m.iter().flatten().any(|v| !v.is_finite()) {
            return Err("the matrix has a non-finite element".into());
        }
        if m[3] != [0.0, 0.0, 0.0, 1.0] {
            return Err(format!("bottom row is {:?}, expected 0 0 0 1", m[3]));
        }
        let col = |j: usize| DVec3::new(m[0][j], m[1][j], m[2][j]);
        let r = glam::DMat3::from_cols(col(0), col(1), col(2));
        let det = r.determinant();
        let worst = (0..3)
            .map(|j| (col(j).length() - 1.0).abs())
            .fold(0.0, f64::max);
        if worst > 1e-3 || (det - 1.0).abs() > 3e-3 {
            return Err(format!("the rotation part is not a rotation (column lengths off by up to {worst:.2e}, determinant {det:.4}); expected a rigid transform without scaling"));
        }
        Ok(Pose {
            translation: col(3) * 1e-3,
            rotation: DQuat::from_mat3(&r).normalize(),
        })
    }
}

/// Physiological hand tremor: a few incommensurate sinusoids in the 6–11 Hz
/// band on position and orientation, deterministic from a seed.
#[derive(Debug, Clone)]
pub struct Tremor {
    pub amplitude_m: f64,
    pub amplitude_rad: f64,
    phases: [f64; 6],
}

impl Tremor {
    pub fn new(amplitude_m: f64, amplitude_rad: f64, seed: u64) -> Tremor {
        let mut rng = crate::sim::Rng::new(seed);
        let mut phases = [0.0; 6];
        for p in &mut phases {
            *p = rng.next_f64() * std::f64::consts::TAU;
        }
        Tremor {
            amplitude_m,
            amplitude_rad,
            phases,
        }
    }

    /// The small pose perturbation at time `t` (seconds), about the tool's
    /// own frame.
    pub fn at(&self, t: f64) -> Pose {
        let w = |f: f64, i: usize| (std::f64::consts::TAU * f * t + self.phases[i]).sin();
        let d = DVec3::new(
            w(7.3, 0) + 0.4 * w(2.1, 3),
            w(8.9, 1) + 0.4 * w(1.3, 4),
            w(10.7, 2) + 0.3 * w(3.7, 5),
        ) * (self.amplitude_m / 1.4);
        let r = DVec3::new(w(9.1, 3), w(6.7, 4), w(11.3, 5)) * self.amplitude_rad;
        Pose {
            translation: d,
            rotation: DQuat::from_scaled_axis(r),
        }
    }
}

/// One tracked tool's pose at a time stamp.
#[derive(Debug, Clone, PartialEq)]
pub struct PoseSample {
    pub time: f64,
    pub tool: String,
    pub pose: Pose,
}

/// The recordable text format: one line per sample,
/// `time_s tool x_mm y_mm z_mm qw qx qy qz`, `#` comments.
pub fn write_poses(samples: &[PoseSample]) -> String {
    let mut s = String::from("# sonoguide poses: time_s tool x_mm y_mm z_mm qw qx qy qz (PLUS naming: ToolToReference)\n");
    for p in samples {
        let (t, q) = (p.pose.translation * 1e3, p.pose.rotation);
        let _ = writeln!(
            s,
            "{:.6} {} {:.4} {:.4} {:.4} {:.8} {:.8} {:.8} {:.8}",
            p.time, p.tool, t.x, t.y, t.z, q.w, q.x, q.y, q.z
        );
    }
    s
}

/// Parse [`write_poses`]' format; errors name the line.
pub fn read_poses(text: &str) -> Result<Vec<PoseSample>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 9 {
            return Err(format!(
                "line {}: {} fields, expected 9: time_s tool x_mm y_mm z_mm qw qx qy qz",
                i + 1,
                f.len()
            ));
        }
        let num = |k: usize| -> Result<f64, String> {
            f[k].parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| {
                    format!(
                        "line {}: field {} `{}` is not a finite number",
                        i + 1,
                        k + 1,
                        f[k]
                    )
                })
        };
        let q = DQuat::from_xyzw(num(6)?, num(7)?, num(8)?, num(5)?);
        if (q.length() - 1.0).abs() > 1e-3 {
            return Err(format!(
                "line {}: quaternion has length {:.4}, expected a unit quaternion",
                i + 1,
                q.length()
            ));
        }
        out.push(PoseSample {
            time: num(0)?,
            tool: f[1].to_string(),
            pose: Pose {
                translation: DVec3::new(num(2)?, num(3)?, num(4)?) * 1e-3,
                rotation: q.normalize(),
            },
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_invert_and_record_round_trip() {
        let a = Pose::from_axes(DVec3::new(0.01, 0.02, -0.03), DVec3::Y, DVec3::Z, DVec3::X);
        let p = DVec3::new(0.004, -0.002, 0.007);
        assert!((a.inverse().apply(a.apply(p)) - p).length() < 1e-15);
        let b = Tremor::new(3e-4, 0.01, 4).at(0.37);
        assert!((a.then(&b).apply(p) - a.apply(b.apply(p))).length() < 1e-15);
        let samples = vec![PoseSample {
            time: 0.5,
            tool: "NeedleToReference".into(),
            pose: a,
        }];
        let back = read_poses(&write_poses(&samples)).unwrap();
        assert!((back[0].pose.translation - a.translation).length() < 1e-9);
        assert!(back[0].pose.rotation.dot(a.rotation).abs() > 1.0 - 1e-12);
        assert!(read_poses("0 x 1 2 3 1 0 0")
            .unwrap_err()
            .contains("line 1"));
        assert!(read_poses("# c\n0 x 1 2 3 2 0 0 0")
            .unwrap_err()
            .contains("unit quaternion"));
    }

    #[test]
    fn tremor_is_small_and_deterministic() {
        let t = Tremor::new(3e-4, 0.005, 9);
        let u = Tremor::new(3e-4, 0.005, 9);
        let mut max = 0.0f64;
        for k in 0..500 {
            let p = t.at(k as f64 * 0.01);
            assert_eq!(p, u.at(k as f64 * 0.01));
            max = max.max(p.translation.length());
        }
        assert!(max > 1e-4 && max < 1e-3, "tremor amplitude {max}");
    }
}
