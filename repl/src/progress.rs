//! Progress for long steps: a spinner with the step's name in a terminal, a log line otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// One running step.
pub struct Step {
    name: String,
    started: Instant,
    spinner: Option<ProgressBar>,
}

impl Step {
    /// Start a step; shows a spinner when stderr is a terminal.
    pub fn start(name: impl Into<String>) -> Self {
        let name = name.into();
        let spinner = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .expect("static template"),
            );
            bar.set_message(name.clone());
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        if spinner.is_none() {
            tracing::info!(step = %name, "started");
        }
        Step {
            name,
            started: Instant::now(),
            spinner,
        }
    }

    /// Finish the step and return how long it took.
    pub fn finish(self) -> Duration {
        let elapsed = self.started.elapsed();
        match self.spinner {
            Some(bar) => bar.finish_and_clear(),
            None => {
                tracing::info!(step = %self.name, elapsed_ms = elapsed.as_millis() as u64, "finished")
            }
        }
        elapsed
    }
}
