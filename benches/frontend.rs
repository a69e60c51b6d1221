//! Front-end benchmark: log-mel of 10 s clips, ours single-threaded and over files with rayon,
//! against librosa timed on the same files in the same run (benches/frontend_librosa.py, when
//! python3 with librosa is available). Run: `cargo bench --bench frontend`.

mod common;

use asc::features::{self, FrontendConfig, LogMel};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

const CLIPS: usize = 16;
const SECONDS: usize = 10;

/// Deterministic noise with a slow envelope, written as 16-bit WAVs at the preset's rate.
fn write_clips(dir: &std::path::Path, sr: u32) -> Vec<PathBuf> {
    common::write_clips(
        dir,
        CLIPS,
        sr,
        SECONDS,
        0x2545_F491_4F6C_DD1D,
        |n, noise| noise * (0.5 + 0.5 * (n as f32 / sr as f32 * 3.0).sin()),
    )
}

fn best_of<F: FnMut()>(runs: usize, mut f: F) -> f64 {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn librosa_ms(dir: &std::path::Path, preset: &str) -> Option<f64> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/frontend_librosa.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(dir)
        .arg(preset)
        .env("OMP_NUM_THREADS", "1")
        .env("OPENBLAS_NUM_THREADS", "1")
        .env("MKL_NUM_THREADS", "1")
        .env("NUMBA_NUM_THREADS", "1")
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "librosa side skipped: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["ms_per_clip"].as_f64()
}

fn main() {
    let threads = rayon::current_num_threads();
    println!("front end, {CLIPS} clips of {SECONDS} s; rayon threads: {threads}");
    println!(
        "{:<10} {:>14} {:>16} {:>16} {:>14} {:>8}",
        "preset", "ours 1 thread", "ours files+decode", "per clip, rayon", "librosa", "ratio"
    );
    for preset in features::PRESET_NAMES {
        let config = FrontendConfig::preset(preset).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let files = write_clips(dir.path(), config.sr);
        let frontend = LogMel::new(config.clone()).unwrap();
        let samples: Vec<Vec<f32>> = files
            .iter()
            .map(|f| asc::audio::load_mono(f, Some(config.sr)).unwrap().0)
            .collect();
        let single = best_of(3, || {
            for s in &samples {
                std::hint::black_box(frontend.compute(s));
            }
        }) / CLIPS as f64
            * 1e3;
        let e2e = best_of(3, || {
            for f in &files {
                std::hint::black_box(features::file_features(f, &frontend, None).unwrap());
            }
        }) / CLIPS as f64
            * 1e3;
        let parallel = best_of(3, || {
            let r = features::extract_all(&files, &frontend, None, &|| {});
            assert!(r.iter().all(|x| x.is_ok()));
        }) / CLIPS as f64
            * 1e3;
        let (lib, ratio) = match librosa_ms(dir.path(), preset) {
            Some(ms) => (format!("{ms:.2} ms"), format!("{:.1}x", ms / single)),
            None => ("n/a".into(), "n/a".into()),
        };
        println!(
            "{preset:<10} {:>11.2} ms {:>13.2} ms {:>13.2} ms {lib:>14} {ratio:>8}",
            single, e2e, parallel
        );
    }
    println!("ratio = librosa ms per clip / ours (1 thread, log-mel only, same samples)");
}
