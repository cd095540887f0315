//! Live progress: a bar (users, requests per second, errors, elapsed/total)
//! on a terminal; plain periodic lines otherwise, so CI logs stay readable.

use std::io::IsTerminal as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::Reporter;
use crate::engine::LiveStatus;

/// Shows progress on standard error.
#[derive(Debug)]
pub struct ProgressReporter {
    bar: Option<ProgressBar>,
    /// Without a terminal: a line every this often.
    line_every: Duration,
    last_line: Duration,
    label: String,
}

impl ProgressReporter {
    pub fn new(label: &str) -> ProgressReporter {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len}s {msg}")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(label.to_owned());
            bar
        });
        ProgressReporter {
            bar,
            line_every: Duration::from_secs(10),
            last_line: Duration::ZERO,
            label: label.to_owned(),
        }
    }
}

fn describe(status: &LiveStatus) -> String {
    format!(
        "{} users, {} req/s, {} requests, {} failures{}",
        status.users,
        status.requests_last_second,
        status.requests,
        status.failures,
        if status.warm_up { " (warm-up)" } else { "" }
    )
}

impl ProgressReporter {
    /// Removes the bar (lines need no clearing).
    pub fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Reporter for ProgressReporter {
    fn progress(&mut self, status: &LiveStatus) {
        match &self.bar {
            Some(bar) => {
                bar.set_length(status.planned.as_secs());
                bar.set_position(status.elapsed.as_secs().min(status.planned.as_secs()));
                bar.set_message(describe(status));
            }
            None => {
                if status.elapsed >= self.last_line + self.line_every
                    || status.elapsed >= status.planned
                {
                    self.last_line = status.elapsed;
                    eprintln!(
                        "{} {:>4}s/{}s {}",
                        self.label,
                        status.elapsed.as_secs(),
                        status.planned.as_secs(),
                        describe(status)
                    );
                }
            }
        }
    }

    fn finished(&mut self, _report: &super::RunReport) -> anyhow::Result<()> {
        self.clear();
        Ok(())
    }
}
