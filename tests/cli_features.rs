//! `asc info` and `asc features` run as a user would, and the feature cache.

use asc::features::{self, FeatureCache, FrontendConfig, LogMel, Spectrogram};
use std::path::Path;
use std::process::Command;

fn asc() -> Command {
    Command::new(env!("CARGO_BIN_EXE_asc"))
}

fn fixtures() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/frontend"
    ))
}

#[test]
fn features_writes_npy_per_file_and_reports_failures() {
    let out = tempfile::tempdir().unwrap();
    let bad = out.path().join("bad.wav");
    std::fs::write(&bad, b"not audio").unwrap();
    let status = asc()
        .args(["features", "--preset", "cpjku", "--out"])
        .arg(out.path().join("npy"))
        .arg(fixtures().join("synth_cpjku.wav"))
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(1), "one input failed");
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert!(
        stderr.contains("bad.wav: not an audio file this tool reads"),
        "{stderr}"
    );
    let written = features::npy::read(&out.path().join("npy/synth_cpjku.npy")).unwrap();
    let reference = features::npy::read(&fixtures().join("synth_cpjku.npy")).unwrap();
    assert_eq!(
        (written.n_mels, written.frames),
        (reference.n_mels, reference.frames)
    );
}

#[test]
fn folders_are_walked_and_keep_structure() {
    let out = tempfile::tempdir().unwrap();
    let src = out.path().join("src/sub");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::copy(fixtures().join("synth_librosa.wav"), src.join("a.wav")).unwrap();
    std::fs::copy(
        fixtures().join("silence_librosa.wav"),
        out.path().join("src/b.WAV"),
    )
    .unwrap();
    let status = asc()
        .args(["features", "--preset", "librosa", "--out"])
        .arg(out.path().join("npy"))
        .arg(out.path().join("src"))
        .status()
        .unwrap();
    assert!(status.success());
    assert!(out.path().join("npy/sub/a.npy").exists());
    assert!(out.path().join("npy/b.npy").exists());
}

#[test]
fn info_describes_or_refuses() {
    let out = asc()
        .arg("info")
        .arg(fixtures().join("real_cpjku.wav"))
        .arg(fixtures().join("cases.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("32000 Hz, 2 ch, 24-bit int"), "{text}");
    assert!(
        text.contains("cases.json: error: not an audio file this tool reads"),
        "{text}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let out = asc().args(["features", "x.wav"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// A cached entry is returned without decoding: planting a marker spectrogram under the file's
/// content key makes `file_features` return the marker, not a fresh computation.
#[test]
fn cache_hit_skips_computation() {
    let dir = tempfile::tempdir().unwrap();
    let config = FrontendConfig::librosa();
    let frontend = LogMel::new(config.clone()).unwrap();
    let cache = FeatureCache::open(dir.path(), &config).unwrap();
    let wav = fixtures().join("synth_librosa.wav");
    let first = features::file_features(&wav, &frontend, Some(&cache)).unwrap();
    let again = features::file_features(&wav, &frontend, Some(&cache)).unwrap();
    assert_eq!(first, again);
    let key = FeatureCache::key(&std::fs::read(&wav).unwrap());
    let marker = Spectrogram {
        n_mels: config.n_mels,
        frames: 2,
        data: vec![42.0; 2 * config.n_mels],
    };
    cache.put(&key, &marker).unwrap();
    assert_eq!(
        features::file_features(&wav, &frontend, Some(&cache)).unwrap(),
        marker
    );
    // Other settings use another folder and do not see the marker.
    let other = FrontendConfig::dcase2020();
    let other_cache = FeatureCache::open(dir.path(), &other).unwrap();
    assert_ne!(other_cache.dir(), cache.dir());
    assert!(other_cache.get(&key, other.n_mels).is_none());
}
