//! Runs the `asc` binary as a user would and records what the run cost: its exit status or the
//! signal that ended it, its output, and its peak resident memory (from `wait4`).
//!
//! The memory figure is an upper bound: at `exec` Linux folds the high-water mark of the memory
//! the child had before into it, and a spawned child shares the test process's memory until
//! then. The test process stays at a few MiB, except after a panic in one of its tests, whose
//! backtrace loads debug information (about 200 MiB); [`Outcome::describe`] shows both.
#![allow(dead_code)]

use std::io::Read;
use std::process::{Command, Stdio};

/// The `asc` binary of this build.
pub fn asc() -> Command {
    Command::new(env!("CARGO_BIN_EXE_asc"))
}

/// How one child process ended.
#[derive(Debug)]
pub struct Outcome {
    /// Exit status, `None` when a signal ended the process.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Peak resident set size of the child, in MiB (an upper bound, see the module docs).
    pub peak_rss_mib: f64,
    /// The test process's own peak when the child was started, in MiB.
    pub parent_peak_rss_mib: f64,
}

impl Outcome {
    /// Ended by returning 0 or 1 (`cli/mod.rs` exit codes): no signal, no panic (101), no abort.
    pub fn exited_normally(&self) -> bool {
        matches!(self.code, Some(0 | 1))
    }

    pub fn describe(&self) -> String {
        format!(
            "exit {:?}, signal {:?}, peak RSS {:.1} MiB (test process: {:.1} MiB)\nstdout: {}\nstderr: {}",
            self.code,
            self.signal,
            self.peak_rss_mib,
            self.parent_peak_rss_mib,
            self.stdout,
            self.stderr
        )
    }
}

/// Runs `cmd` to completion with stdin closed, capturing its output, and reaps it with `wait4`
/// (not `Child::wait`) so the memory figure is this child's alone.
#[allow(clippy::zombie_processes)]
pub fn run(cmd: &mut Command) -> Outcome {
    let parent_peak_rss_mib = own_peak_rss_mib();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn asc");
    let pid = child.id() as libc::pid_t;
    let mut err_pipe = child.stderr.take().expect("piped stderr");
    let err_reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        err_pipe.read_to_end(&mut bytes).expect("read stderr");
        bytes
    });
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .expect("piped stdout")
        .read_to_end(&mut stdout)
        .expect("read stdout");
    let stderr = err_reader.join().expect("stderr reader");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it for our own child `pid`.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    let (code, signal) = if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else {
        (
            None,
            libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
        )
    };
    Outcome {
        code,
        signal,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        // Linux reports ru_maxrss in KiB.
        peak_rss_mib: usage.ru_maxrss as f64 / 1024.0,
        parent_peak_rss_mib,
    }
}

/// `VmHWM` of this process, in MiB.
fn own_peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// A small synthetic DCASE-layout set in `data` (`asc synth`: 6 classes × 10 clips of `seconds`
/// at 16 kHz).
pub fn synth(data: &std::path::Path, seconds: &str) {
    let out = run(asc()
        .args(["synth", "--clips-per-class", "10", "--seconds", seconds])
        .args(["--sample-rate", "16000", "--out"])
        .arg(data));
    assert_eq!(out.code, Some(0), "{}", out.describe());
}

/// A tiny synthetic DCASE-layout set in `dir/data` ([`synth`], clips of 0.25 s) and a training
/// config for it in `dir/train.json` (32 mel bands, batch 8, `epochs` epochs of a cosine schedule
/// with 2 warm-up steps): a whole run in seconds.
pub fn tiny_training_set(dir: &std::path::Path, epochs: u64) -> std::path::PathBuf {
    training_set(dir, epochs, "0.25")
}

/// [`tiny_training_set`] with clips of `seconds`.
pub fn training_set(dir: &std::path::Path, epochs: u64, seconds: &str) -> std::path::PathBuf {
    let data = dir.join("data");
    synth(&data, seconds);
    let mut cfg =
        asc::train::TrainConfig::defaults("cnn", "bn", data.clone(), data.join(".asc-cache"));
    cfg.frontend.sr = 16_000;
    cfg.frontend.n_fft = 512;
    cfg.frontend.win_length = 512;
    cfg.frontend.hop_length = 256;
    cfg.frontend.n_mels = 32;
    cfg.frontend.fmax = 8_000.0;
    cfg.augment.freq_mask = 4;
    cfg.augment.time_mask = 2;
    cfg.epochs = epochs;
    cfg.batch_size = 8;
    cfg.schedule = asc::train::schedule::Schedule::Cosine {
        warmup_steps: 2,
        min_factor: 0.01,
    };
    let config = dir.join("train.json");
    std::fs::write(&config, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    config
}
