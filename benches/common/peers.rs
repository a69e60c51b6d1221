//! What a benchmark needs to compare itself with a Python peer in the same invocation: running
//! a script of `benches/` that prints JSON, and this process's peak memory (issue 9: peak RSS of
//! training and inference next to PyTorch's). Included with `#[path]` by the benchmarks that use
//! it, so the others do not carry unused code.

use std::process::Command;

/// Runs `python3 benches/<script> <args>` and parses its stdout as JSON; `None` (with the
/// reason on stderr) where python3, a package it imports, or the script fails, so the Rust side
/// of a benchmark still runs on a machine without the Python peers.
pub fn python(script: &str, args: &[&str]) -> Option<serde_json::Value> {
    let path = format!("{}/benches/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = match Command::new("python3").arg(path).args(args).output() {
        Ok(out) => out,
        Err(e) => {
            eprintln!("{script} skipped: python3: {e}");
            return None;
        }
    };
    if !out.status.success() {
        eprintln!(
            "{script} skipped: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return None;
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| eprintln!("{script}: output is not JSON: {e}"))
        .ok()
}

/// Hands freed heap back to the system (so a measurement's growth is not hidden by memory an
/// earlier one left in malloc's pools), then resets the kernel's peak-RSS mark (VmHWM) to the
/// current RSS: writing "5" to /proc/self/clear_refs (Linux ≥ 4.0). Elsewhere only the trim
/// happens and [`peak_rss_mib`] reports the peak since the start.
pub fn reset_peak_rss() {
    // SAFETY: malloc_trim only releases free memory of glibc's allocator.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// This process's peak RSS since the last [`reset_peak_rss`], MiB (`None` off Linux).
pub fn peak_rss_mib() -> Option<f64> {
    status_kib("VmHWM:").map(|k| k / 1024.0)
}

/// This process's current RSS, MiB (`None` off Linux).
pub fn rss_mib() -> Option<f64> {
    status_kib("VmRSS:").map(|k| k / 1024.0)
}

/// A `kB` field of /proc/self/status.
fn status_kib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}
