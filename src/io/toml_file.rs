//! Reading TOML files (scenes, phantoms) with errors that name the file and
//! the line: shared by every TOML reader so they report alike.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TomlFileError {
    #[error("{file}: {message}")]
    Read { file: PathBuf, message: String },
    #[error("{file}:{line}: {message}")]
    Invalid {
        file: PathBuf,
        line: usize,
        message: String,
    },
}

/// 1-based line of a byte span's start.
pub fn line_of(text: &str, span: Range<usize>) -> usize {
    text[..span.start.min(text.len())].matches('\n').count() + 1
}

pub fn read(path: &Path) -> Result<String, TomlFileError> {
    std::fs::read_to_string(path).map_err(|e| TomlFileError::Read {
        file: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Deserialize `text`; serde's errors (unknown field, wrong type, missing
/// field) come back with their line.
pub fn parse<T: DeserializeOwned>(text: &str, path: &Path) -> Result<T, TomlFileError> {
    toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s)).unwrap_or(0);
        TomlFileError::Invalid {
            file: path.to_path_buf(),
            line,
            message: e.message().trim().to_string(),
        }
    })
}

/// A value that parsed but is wrong, reported at its span.
pub fn invalid(path: &Path, text: &str, span: Range<usize>, message: String) -> TomlFileError {
    TomlFileError::Invalid {
        file: path.to_path_buf(),
        line: line_of(text, span),
        message,
    }
}
