//! A one-line progress bar on stderr for long sweeps (drawn only when
//! stderr is a terminal, so logs and tests stay clean).

use std::io::{IsTerminal, Write};
use std::time::Instant;

pub struct Progress {
    total: usize,
    done: usize,
    start: Instant,
    draw: bool,
}

impl Progress {
    pub fn new(total: usize) -> Progress {
        Progress {
            total: total.max(1),
            done: 0,
            start: Instant::now(),
            draw: std::io::stderr().is_terminal(),
        }
    }

    /// Show that `label` is being measured.
    pub fn step(&mut self, label: &str) {
        if !self.draw {
            return;
        }
        let width = 30;
        let filled = width * self.done / self.total;
        let eta = if self.done > 0 {
            self.start.elapsed().as_secs_f64() / self.done as f64 * (self.total - self.done) as f64
        } else {
            f64::NAN
        };
        let eta = if eta.is_finite() {
            format!(", ~{eta:.0} s left")
        } else {
            String::new()
        };
        let mut e = std::io::stderr();
        let _ = write!(
            e,
            "\r\x1b[2K[{}{}] {}/{} {label}{eta}",
            "#".repeat(filled),
            ".".repeat(width - filled),
            self.done + 1,
            self.total
        );
        let _ = e.flush();
    }

    pub fn inc(&mut self) {
        self.done += 1;
    }

    pub fn finish(&mut self) {
        if self.draw {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}
