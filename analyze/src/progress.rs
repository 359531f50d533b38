//! Progress bars for long work, shown only on a terminal (stderr) and never in `--json`/quiet modes.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `len` steps labelled `msg`; hidden unless `enabled` and stderr is a terminal.
pub fn bar(len: u64, msg: &'static str, enabled: bool) -> ProgressBar {
    if !enabled || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})") {
        b.set_style(style);
    }
    b.set_message(msg);
    b
}
