//! The orbit camera of the 3D view: it turns about a target point, with
//! "up" toward the patient's anterior skin (−z) so that the probe sits on
//! top and depth runs down the screen, as in the 2D view.

use glam::{DVec3, Mat4};

#[derive(Debug, Clone, PartialEq)]
pub struct OrbitCamera {
    pub target: DVec3,
    /// Unit vector the default view looks from (perpendicular to `up`).
    pub front: DVec3,
    pub up: DVec3,
    pub distance: f64,
    /// Radians about `up`, and above the horizontal.
    pub yaw: f64,
    pub pitch: f64,
    pub fov_y: f64,
    home: (f64, f64, f64),
}

impl OrbitCamera {
    pub fn new(target: DVec3, front: DVec3, distance: f64) -> OrbitCamera {
        let up = DVec3::NEG_Z;
        let front = (front - up * front.dot(up)).normalize_or(DVec3::X);
        let (yaw, pitch) = (0.35, 0.35);
        OrbitCamera {
            target,
            front,
            up,
            distance,
            yaw,
            pitch,
            fov_y: 40f64.to_radians(),
            home: (distance, yaw, pitch),
        }
    }

    pub fn eye(&self) -> DVec3 {
        let side = self.up.cross(self.front);
        let horizontal = self.front * self.yaw.cos() + side * self.yaw.sin();
        self.target + (horizontal * self.pitch.cos() + self.up * self.pitch.sin()) * self.distance
    }

    /// Clip from world (reference frame, metres) for a viewport of `aspect`.
    pub fn view_proj(&self, aspect: f64) -> Mat4 {
        let view = glam::DMat4::look_at_rh(self.eye(), self.target, self.up);
        let proj = glam::DMat4::perspective_rh(
            self.fov_y,
            aspect.max(0.01),
            self.distance * 0.05,
            self.distance * 4.0,
        );
        (proj * view).as_mat4()
    }

    /// Mouse drag by (dx, dy) pixels.
    pub fn drag(&mut self, dx: f64, dy: f64) {
        self.yaw -= dx * 0.008;
        self.pitch = (self.pitch + dy * 0.008).clamp(-1.5, 1.5);
    }

    /// Wheel: positive zooms in.
    pub fn zoom(&mut self, steps: f64) {
        self.distance = (self.distance * 0.9f64.powf(steps)).clamp(0.03, 2.0);
    }

    pub fn reset(&mut self) {
        (self.distance, self.yaw, self.pitch) = self.home;
    }
}
