//! Two `asc features` processes sharing one feature cache, started together over the same
//! files so that they write and read the same entries at the same time: both succeed, both
//! write the features a cache-free run writes, and the cache is left whole (every entry a
//! complete spectrogram equal to the cache-free one, no temporary files).

mod child;

use asc::features::{npy, FeatureCache, FrontendConfig, Spectrogram};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `<stem>.npy` → spectrogram, for every file `asc features` wrote into `dir`.
fn outputs(dir: &Path) -> BTreeMap<String, Spectrogram> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, npy::read(&p).unwrap())
        })
        .collect()
}

fn features(audio: &Path, out: &Path, cache: Option<&Path>) -> Command {
    let mut cmd = child::asc();
    cmd.args(["features", "--preset", "cpjku", "--out"])
        .arg(out)
        .arg(audio);
    if let Some(c) = cache {
        cmd.arg("--cache").arg(c);
    }
    cmd
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect()
}

#[test]
fn two_processes_share_a_feature_cache_without_corrupting_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    child::synth(&data, "0.5");
    let audio = data.join("audio");
    let reference_dir = dir.path().join("reference");
    let out = child::run(&mut features(&audio, &reference_dir, None));
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let reference = outputs(&reference_dir);
    assert_eq!(reference.len(), 60);

    for round in 0..3 {
        let cache = dir.path().join(format!("cache{round}"));
        let outs = [0, 1].map(|p| dir.path().join(format!("round{round}-proc{p}")));
        let running: Vec<_> = outs
            .iter()
            .map(|o| {
                features(&audio, o, Some(&cache))
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for (p, proc) in running.into_iter().enumerate() {
            let done = proc.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&done.stderr);
            assert!(done.status.success(), "round {round} process {p}: {stderr}");
        }
        for o in &outs {
            assert!(
                outputs(o) == reference,
                "round {round}: {} differs",
                o.display()
            );
        }
        // The cache: its settings file and one complete entry per clip, nothing else.
        let settings = FeatureCache::open(&cache, &FrontendConfig::cpjku()).unwrap();
        let files = files_under(&cache);
        let entries: Vec<&PathBuf> = files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "npy"))
            .collect();
        assert_eq!(entries.len(), reference.len(), "round {round}: {files:#?}");
        assert_eq!(files.len(), entries.len() + 1, "round {round}: {files:#?}");
        assert!(settings.dir().join("frontend.json").is_file());
        let mut cached: Vec<Spectrogram> = entries.iter().map(|p| npy::read(p).unwrap()).collect();
        let mut want: Vec<Spectrogram> = reference.values().cloned().collect();
        let order = |a: &Spectrogram, b: &Spectrogram| a.data.partial_cmp(&b.data).unwrap();
        cached.sort_by(order);
        want.sort_by(order);
        assert!(cached == want, "round {round}: cache entries differ");
        // A third process reads every entry back as the same features.
        let again = dir.path().join(format!("round{round}-again"));
        let out = child::run(&mut features(&audio, &again, Some(&cache)));
        assert_eq!(out.code, Some(0), "{}", out.describe());
        assert!(outputs(&again) == reference);
    }
}
