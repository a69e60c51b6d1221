//! Progress bars on stderr with rate and ETA, for every long piece of work.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar for `len` items of `what`; hidden for small jobs, where it would only flicker.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    if len < 8 {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:>10} [{bar:30}] {pos}/{len} {per_sec} eta {eta} ({elapsed})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}
