//! PNG output, written complete or not at all ([`super::output`]).

use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum PngError {
    #[error("{file}: {message}")]
    Write { file: PathBuf, message: String },
}

fn write(
    path: &Path,
    width: usize,
    height: usize,
    color: png::ColorType,
    data: &[u8],
) -> Result<(), PngError> {
    let err = |m: String| PngError::Write {
        file: path.to_path_buf(),
        message: m,
    };
    super::output::write_atomic(path, |out| {
        let mut enc = png::Encoder::new(out, width as u32, height as u32);
        enc.set_color(color);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(std::io::Error::other)?;
        w.write_image_data(data).map_err(std::io::Error::other)?;
        w.finish().map_err(std::io::Error::other)
    })
    .map_err(|e| err(e.to_string()))
}

/// 8-bit grey image, row-major.
pub fn write_grey(path: &Path, width: usize, height: usize, grey: &[u8]) -> Result<(), PngError> {
    write(path, width, height, png::ColorType::Grayscale, grey)
}

/// RGBA8 packed little-endian in u32 (r in the low byte), row-major.
pub fn write_rgba(path: &Path, width: usize, height: usize, rgba: &[u32]) -> Result<(), PngError> {
    write(
        path,
        width,
        height,
        png::ColorType::Rgba,
        bytemuck::cast_slice(rgba),
    )
}
