//! Writing output files: complete or not at all, and never in place of
//! what the user did not mean to replace.
//!
//! Every writer in sonoguide writes into a temporary file beside the
//! target and renames it over the target once complete, so that a failed
//! or killed run leaves no half-written file. Two kinds of target must not
//! be renamed over:
//! - a symbolic link: the rename would replace the link, not the file it
//!   points to; the temporary file goes beside the link's target instead;
//! - a device, FIFO or socket (`--png /dev/null`; as root a rename would
//!   replace `/dev/null` itself with a PNG): the finished file is copied
//!   into it.
//!
//! [`check_outputs`] is for commands to call before any work, so that a
//! bad output path fails at once rather than after the GPU has run (and
//! before other outputs have been written).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A temporary file beside a target, renamed over it (or copied into it,
/// for a device) by [`TempFile::commit`] and removed if dropped before.
pub struct TempFile {
    path: PathBuf,
    target: PathBuf,
    /// The target is a device, FIFO or socket: copy into it on commit.
    through: bool,
    committed: bool,
}

/// Where `target` really is: the file a symbolic link points to (relative
/// links resolved against the link's directory, chains followed), or
/// `target` itself.
fn resolve(target: &Path) -> PathBuf {
    let mut p = target.to_path_buf();
    // A bounded number of hops: a loop of links is left for the open to report.
    for _ in 0..40 {
        match fs::read_link(&p) {
            Ok(to) => {
                p = match p.parent() {
                    Some(dir) if to.is_relative() => dir.join(to),
                    _ => to,
                }
            }
            Err(_) => break,
        }
    }
    p
}

/// True when `path` exists and is not a regular file or directory.
fn is_special(path: &Path) -> bool {
    fs::metadata(path)
        .map(|m| !m.is_file() && !m.is_dir())
        .unwrap_or(false)
}

impl TempFile {
    /// Claim a fresh name in the (resolved) target's directory: the rename
    /// must not cross file systems. The file is created empty, so the name
    /// is ours alone.
    pub fn beside(target: &Path) -> std::io::Result<TempFile> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let real = resolve(target);
        if real.is_dir() {
            let msg = "the path names a directory, not a file";
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, msg));
        }
        let Some(name) = real.file_name() else {
            let msg = "the path names a directory, not a file";
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, msg));
        };
        let through = is_special(&real);
        // A device's directory (/dev) is no place for a temporary file.
        let dir = if through {
            std::env::temp_dir()
        } else {
            real.parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf()
        };
        let mut last = None;
        // A name may be taken by a leftover of a killed process that had our
        // pid: then try the next number, a bounded number of times.
        for _ in 0..64 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let tmp = dir.join(format!(
                ".{}.{}.{n}.tmp",
                name.to_string_lossy(),
                std::process::id()
            ));
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
            {
                Ok(_) => {
                    return Ok(TempFile {
                        path: tmp,
                        target: real,
                        through,
                        committed: false,
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no free temporary name")))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flush the finished file to disk and rename it over the target (or
    /// copy it into the device the target is).
    pub fn commit(mut self) -> std::io::Result<()> {
        if self.through {
            let mut out = fs::OpenOptions::new().write(true).open(&self.target)?;
            std::io::copy(&mut fs::File::open(&self.path)?, &mut out)?;
            out.flush()?;
            fs::remove_file(&self.path)?;
        } else {
            // Without the sync a crash right after the rename could leave an
            // empty file under the final name on some file systems.
            fs::File::open(&self.path)?.sync_all()?;
            fs::rename(&self.path, &self.target)?;
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Write `path` complete or not at all: `body` writes into a buffered
/// temporary file, which then replaces the target ([`TempFile`]).
pub fn write_atomic(
    path: &Path,
    body: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let tmp = TempFile::beside(path)?;
    {
        let file = fs::OpenOptions::new().write(true).open(tmp.path())?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        body(&mut w)?;
        w.flush()?;
    }
    tmp.commit()
}

/// A command's outputs checked before any work: each writable where it is
/// named (its directory exists, it is not a directory), and none of them
/// an input or another output. (name, path) pairs, as the user named them;
/// options not given are `None`. The message says what to do.
pub fn check_outputs(
    inputs: &[(&str, Option<&Path>)],
    outputs: &[(&str, Option<&Path>)],
) -> Result<(), String> {
    fn given<'a>(list: &[(&'a str, Option<&'a Path>)]) -> Vec<(&'a str, &'a Path)> {
        list.iter()
            .filter_map(|(n, p)| p.map(|p| (*n, p)))
            .collect()
    }
    let (inputs, outputs) = (given(inputs), given(outputs));
    for (flag, p) in &outputs {
        check_output(p).map_err(|e| format!("{flag}: {e}"))?;
    }
    check_distinct(&inputs, &outputs)
}

/// Whether `path` can be written: its directory exists and it is not
/// itself a directory.
fn check_output(path: &Path) -> Result<(), String> {
    if path.as_os_str().is_empty() {
        return Err("empty path: give a file name".into());
    }
    let real = resolve(path);
    if real.is_dir() {
        return Err(format!(
            "{} is a directory: give a file name inside it",
            path.display()
        ));
    }
    let dir = real
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(format!(
            "{}: directory {} does not exist; create it first",
            path.display(),
            dir.display()
        ));
    }
    Ok(())
}

/// The same file under two names (`a/../b.png`, a link): compared by
/// resolved, absolute paths, since the later of two outputs may not exist yet.
fn same_file(a: &Path, b: &Path) -> bool {
    let abs = |p: &Path| {
        let r = resolve(p);
        let dir = r
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        match (fs::canonicalize(dir), r.file_name()) {
            (Ok(d), Some(n)) => d.join(n),
            _ => r,
        }
    };
    abs(a) == abs(b)
}

/// Outputs that would overwrite an input, or each other: `inputs` and
/// `outputs` as (what the user called it, path).
fn check_distinct(inputs: &[(&str, &Path)], outputs: &[(&str, &Path)]) -> Result<(), String> {
    for (i, (oname, o)) in outputs.iter().enumerate() {
        if is_special(&resolve(o)) {
            // /dev/null may well be named twice.
            continue;
        }
        if let Some((iname, _)) = inputs.iter().find(|(_, p)| same_file(p, o)) {
            return Err(format!(
                "{oname} {} is the {iname}: it would be overwritten; write to another file",
                o.display()
            ));
        }
        if let Some((other, _)) = outputs[..i].iter().find(|(_, p)| same_file(p, o)) {
            return Err(format!(
                "{oname} and {other} are the same file ({}): give each its own",
                o.display()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) -> std::io::Result<()> {
        write_atomic(path, |w| w.write_all(text.as_bytes()))
    }

    #[test]
    fn a_file_is_replaced_whole_and_no_temporary_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.txt");
        fs::write(&p, "old").unwrap();
        write(&p, "new").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "new");
        // A failing body leaves the old file and nothing else.
        let err = write_atomic(&p, |w| {
            w.write_all(b"half")?;
            Err(std::io::Error::other("disk full"))
        });
        assert!(err.is_err());
        assert_eq!(fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn a_link_is_written_through_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target.png");
        fs::write(&target, "old").unwrap();
        let link = dir.path().join("link.png");
        std::os::unix::fs::symlink("target.png", &link).unwrap();
        write(&link, "new").unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
    }

    #[cfg(unix)]
    #[test]
    fn a_device_is_written_into_not_replaced() {
        let null = Path::new("/dev/null");
        if !null.exists() {
            return;
        }
        write(null, "discarded").unwrap();
        let m = fs::metadata(null).unwrap();
        assert!(!m.is_file(), "/dev/null was replaced by a file");
        // Named twice, it is not refused.
        check_distinct(&[], &[("--png", null), ("--save-npy", null)]).unwrap();
    }

    #[test]
    fn outputs_are_checked_before_any_work() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_output(&dir.path().join("a.png")).is_ok());
        let e = check_output(dir.path()).unwrap_err();
        assert!(e.contains("is a directory"), "{e}");
        let e = check_output(&dir.path().join("no/a.png")).unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
        let input = dir.path().join("in.mat");
        fs::write(&input, "x").unwrap();
        let other = dir.path().join(".").join("in.mat");
        let e = check_distinct(&[("input", &input)], &[("--png", &other)]).unwrap_err();
        assert!(e.contains("--png") && e.contains("input"), "{e}");
        let a = dir.path().join("x.npy");
        let e = check_distinct(&[], &[("--save-npy", &a), ("--png", &a)]).unwrap_err();
        assert!(e.contains("--png and --save-npy"), "{e}");
        check_distinct(
            &[("input", &input)],
            &[("--save-npy", &a), ("--png", &dir.path().join("x.png"))],
        )
        .unwrap();
    }
}
