//! Decoding benchmark: FLAC, Ogg Vorbis and MP3 files of 10 s, read and decoded to float samples
//! by `asc::audio::decode_file`, against soundfile (libsndfile) decoding the same files in the
//! same run (benches/decode_soundfile.py writes them from our WAV clips and times its side).
//! One thread each. Run: `cargo bench --bench decode`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

const CLIPS: usize = 8;
const SECONDS: usize = 10;
const RATE: u32 = 44_100;

/// soundfile's ms per clip for each format it wrote, or `None` when the peer is unavailable.
fn soundfile(dir: &Path) -> Option<serde_json::Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/decode_soundfile.py");
    let out = Command::new("python3").arg(script).arg(dir).output().ok()?;
    if !out.status.success() {
        eprintln!(
            "soundfile side skipped: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    // A tone over noise with a slow envelope: compressible like a recording, not like silence.
    common::write_clips(
        dir.path(),
        CLIPS,
        RATE,
        SECONDS,
        0x9E37_79B9_7F4A_7C15,
        |n, noise| {
            let t = n as f32 / RATE as f32;
            0.3 * (t * 2.0 * std::f32::consts::PI * 440.0).sin()
                + noise * (0.5 + 0.4 * (t * 3.0).sin())
        },
    );
    let Some(peer) = soundfile(dir.path()) else {
        println!("decode: python3 with soundfile is needed to write the encoded files; skipped");
        return;
    };
    println!(
        "decoding {CLIPS} clips of {SECONDS} s at {RATE} Hz, mono, one thread; soundfile {} (libsndfile {})",
        peer["soundfile"], peer["libsndfile"]
    );
    println!(
        "{:<6} {:>12} {:>16} {:>8}",
        "format", "ours ms/clip", "soundfile ms/clip", "ratio"
    );
    let ms = peer["ms_per_clip"].as_object().cloned().unwrap_or_default();
    for (ext, theirs) in ms {
        let files: Vec<_> = (0..CLIPS)
            .map(|i| dir.path().join(format!("clip{i:02}.{ext}")))
            .collect();
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let t = Instant::now();
            for f in &files {
                std::hint::black_box(asc::audio::decode_file(f).unwrap());
            }
            best = best.min(t.elapsed().as_secs_f64() / CLIPS as f64);
        }
        let (ours, theirs) = (best * 1e3, theirs.as_f64().unwrap_or(f64::NAN));
        println!(
            "{ext:<6} {ours:>12.2} {theirs:>16.2} {:>7.2}x",
            theirs / ours
        );
    }
}
