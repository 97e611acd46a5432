//! Progress bars during long runs (drawn on standard error; hidden when standard
//! output is not a terminal, with `--quick` or `--no-progress`).

use indicatif::{ProgressBar, ProgressStyle};

/// Makes the progress bars of one run.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    enabled: bool,
}

impl Progress {
    /// Bars are drawn only if `enabled`.
    pub fn new(enabled: bool) -> Self {
        Progress { enabled }
    }

    /// A bar of `len` steps labelled `msg` (hidden if disabled).
    pub fn bar(&self, len: u64, msg: &str) -> ProgressBar {
        if !self.enabled {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(len);
        let style = ProgressStyle::with_template(
            "{msg:<34} [{bar:32}] {percent:>3}% {elapsed_precise} (eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(msg.to_owned());
        bar
    }
}
