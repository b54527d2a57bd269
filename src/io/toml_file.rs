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
    /// A scene of the other kind (a phantom scene given to `render`), said
    /// so: serde alone reports its first section as an unknown field.
    #[error("{file} is a {found} scene (it has {section}); {wanted}")]
    WrongKind {
        file: PathBuf,
        found: &'static str,
        section: String,
        wanted: &'static str,
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

/// A list of numbers as a file writes it, `[-10, 10, 3]`, for messages.
pub fn list<T: std::fmt::Display>(v: &[T]) -> String {
    let items: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("[{}]", items.join(", "))
}

/// A value that parsed but is wrong, reported at its span.
pub fn invalid(path: &Path, text: &str, span: Range<usize>, message: String) -> TomlFileError {
    TomlFileError::Invalid {
        file: path.to_path_buf(),
        line: line_of(text, span),
        message,
    }
}

/// When `text` parsed as one kind of file failed: the first top-level
/// section (file order, as `[name]`) among `theirs`, the sections only the
/// other kind has, provided it has none of `mine`, the sections only this
/// kind has. A file with sections of both kinds is a mistake in one kind,
/// which serde's own error points at; `None` too when it is not TOML.
pub fn other_kind(text: &str, mine: &[&str], theirs: &[&str]) -> Option<String> {
    let table = toml::de::DeTable::parse(text).ok()?;
    if table
        .get_ref()
        .iter()
        .any(|(k, _)| mine.contains(&k.get_ref().as_ref()))
    {
        return None;
    }
    table
        .get_ref()
        .iter()
        .filter(|(k, _)| theirs.contains(&k.get_ref().as_ref()))
        .min_by_key(|(k, _)| k.span().start)
        .map(|(k, v)| match v.get_ref() {
            toml::de::DeValue::Array(_) => format!("[[{}]]", k.get_ref()),
            _ => format!("[{}]", k.get_ref()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_kind_names_the_first_section_of_the_other_kind() {
        let text =
            "[scene]\nname = \"x\"\n[[point]]\npositions = []\n[transmit]\nkind = \"plane\"\n";
        let (mine, theirs) = (&["needle"][..], &["transmit", "point"][..]);
        assert_eq!(other_kind(text, mine, theirs).as_deref(), Some("[[point]]"));
        // Sections of both kinds: a mistake in this kind, not the other kind.
        assert_eq!(other_kind(&format!("{text}[needle]\n"), mine, theirs), None);
        assert_eq!(other_kind("[scene]\nname = \"x\"\n", mine, theirs), None);
        assert_eq!(other_kind("[scene\n", mine, theirs), None);
    }
}
