//! PNG output, written atomically (temp file + rename) so that a failure
//! never leaves a half-written image.

use std::io::BufWriter;
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
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default()
    ));
    let result = (|| -> Result<(), String> {
        let file = std::fs::File::create(&tmp).map_err(|e| format!("cannot create: {e}"))?;
        let mut enc = png::Encoder::new(BufWriter::new(file), width as u32, height as u32);
        enc.set_color(color);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(|e| e.to_string())?;
        w.write_image_data(data).map_err(|e| e.to_string())?;
        w.finish().map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, path).map_err(|e| format!("cannot rename into place: {e}"))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
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
