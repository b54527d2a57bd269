//! 2D overlays in target pixels: filled rectangles, thick (optionally
//! dashed) lines, circles and 8×8 bitmap text, all as flat-coloured
//! triangles drawn by one pipeline (`vs_overlay`/`fs_overlay`).

use bytemuck::{Pod, Zeroable};

/// Keep in sync with `OverlayIn` in composite.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct OverlayVertex {
    pub position: [f32; 2],
    pub color: [f32; 4],
}

pub type Rgba = [f32; 4];

#[derive(Debug, Default, Clone)]
pub struct Overlay {
    pub vertices: Vec<OverlayVertex>,
}

impl Overlay {
    fn tri(&mut self, a: [f32; 2], b: [f32; 2], c: [f32; 2], color: Rgba) {
        for position in [a, b, c] {
            self.vertices.push(OverlayVertex { position, color });
        }
    }

    pub fn rect(&mut self, x: f32, y: f32, w: f32, h: f32, color: Rgba) {
        self.tri([x, y], [x + w, y], [x, y + h], color);
        self.tri([x + w, y], [x + w, y + h], [x, y + h], color);
    }

    /// A line `width` pixels thick from `a` to `b`.
    pub fn line(&mut self, a: [f32; 2], b: [f32; 2], width: f32, color: Rgba) {
        let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
        let len = (dx * dx + dy * dy).sqrt();
        if len < 1e-6 {
            return;
        }
        let (nx, ny) = (-dy / len * width * 0.5, dx / len * width * 0.5);
        let (p0, p1, p2, p3) = (
            [a[0] + nx, a[1] + ny],
            [b[0] + nx, b[1] + ny],
            [b[0] - nx, b[1] - ny],
            [a[0] - nx, a[1] - ny],
        );
        self.tri(p0, p1, p2, color);
        self.tri(p0, p2, p3, color);
    }

    /// Dashes `dash` pixels long with equal gaps.
    pub fn dashed(&mut self, a: [f32; 2], b: [f32; 2], width: f32, dash: f32, color: Rgba) {
        let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
        let len = (dx * dx + dy * dy).sqrt();
        let n = (len / dash).ceil() as usize;
        for i in (0..n).step_by(2) {
            let t0 = i as f32 * dash / len;
            let t1 = ((i + 1) as f32 * dash / len).min(1.0);
            self.line(
                [a[0] + dx * t0, a[1] + dy * t0],
                [a[0] + dx * t1, a[1] + dy * t1],
                width,
                color,
            );
        }
    }

    /// A ring of radius `r` (`width` thick); dashed when `dashed`.
    pub fn circle(&mut self, c: [f32; 2], r: f32, width: f32, dashed: bool, color: Rgba) {
        let n = ((r * 0.8) as usize).clamp(12, 96) & !1;
        let at = |i: usize| {
            let a = std::f32::consts::TAU * i as f32 / n as f32;
            [c[0] + r * a.cos(), c[1] + r * a.sin()]
        };
        for i in 0..n {
            if !dashed || i % 2 == 0 {
                self.line(at(i), at(i + 1), width, color);
            }
        }
    }

    pub fn disc(&mut self, c: [f32; 2], r: f32, color: Rgba) {
        let n = 16;
        for i in 0..n {
            let a0 = std::f32::consts::TAU * i as f32 / n as f32;
            let a1 = std::f32::consts::TAU * (i + 1) as f32 / n as f32;
            self.tri(
                c,
                [c[0] + r * a0.cos(), c[1] + r * a0.sin()],
                [c[0] + r * a1.cos(), c[1] + r * a1.sin()],
                color,
            );
        }
    }

    /// Text with its top-left corner at (x, y), glyphs 8·scale pixels;
    /// returns the width drawn. Runs of set bits become one rectangle.
    pub fn text(&mut self, x: f32, y: f32, scale: f32, s: &str, color: Rgba) -> f32 {
        let mut cx = x;
        for ch in s.chars() {
            let glyph = font8x8::legacy::BASIC_LEGACY[if ch.is_ascii() {
                ch as usize
            } else {
                '?' as usize
            }];
            for (row, bits) in glyph.iter().enumerate() {
                let mut col = 0;
                while col < 8 {
                    if bits & (1 << col) == 0 {
                        col += 1;
                        continue;
                    }
                    let start = col;
                    while col < 8 && bits & (1 << col) != 0 {
                        col += 1;
                    }
                    self.rect(
                        cx + start as f32 * scale,
                        y + row as f32 * scale,
                        (col - start) as f32 * scale,
                        scale,
                        color,
                    );
                }
            }
            cx += 8.0 * scale;
        }
        cx - x
    }

    /// Text on a dark backing box, for legibility over the image.
    pub fn label(&mut self, x: f32, y: f32, scale: f32, s: &str, color: Rgba) -> f32 {
        let w = 8.0 * scale * s.chars().count() as f32;
        self.rect(
            x - 2.0,
            y - 2.0,
            w + 4.0,
            8.0 * scale + 4.0,
            [0.0, 0.0, 0.0, 0.6],
        );
        self.text(x, y, scale, s, color)
    }
}
