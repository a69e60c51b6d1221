//! The synthetic data set generator: determinism (also across thread counts), readability by the
//! dataset reader, class count, DCASE-like location and device structure.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use asc::dataset::{Dataset, LoadOptions};
use asc::synth::{generate, SynthConfig, SynthError};
use sha2::{Digest, Sha256};

fn small() -> SynthConfig {
    SynthConfig {
        clips_per_class: 6,
        locations_per_class: 3,
        clip_seconds: 0.5,
        sample_rate: 16_000,
        ..SynthConfig::default()
    }
}

/// SHA-256 over every file (sorted relative path + contents).
fn tree_hash(root: &Path) -> String {
    let mut files: Vec<_> = walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().to_path_buf())
        .collect();
    files.sort();
    let mut h = Sha256::new();
    for f in files {
        h.update(f.strip_prefix(root).unwrap().to_string_lossy().as_bytes());
        h.update(std::fs::read(&f).unwrap());
    }
    format!("{:x}", h.finalize())
}

fn generate_with_threads(cfg: &SynthConfig, threads: usize) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ds");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| generate(&out, cfg)).unwrap();
    let h = tree_hash(&out);
    (dir, h)
}

#[test]
fn same_seed_same_bytes_regardless_of_threads() {
    let cfg = small();
    let (_a, h1) = generate_with_threads(&cfg, 1);
    let (_b, h2) = generate_with_threads(&cfg, 3);
    assert_eq!(h1, h2);
    let (_c, h3) = generate_with_threads(
        &SynthConfig {
            seed: cfg.seed + 1,
            ..cfg.clone()
        },
        2,
    );
    assert_ne!(h1, h3, "the seed must matter");
}

#[test]
fn readable_dcase_layout_with_disjoint_locations_and_unseen_devices() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        bits_per_sample: 16,
        ..small()
    };
    let s = generate(dir.path().join("ds"), &cfg).unwrap();
    assert!(!s.reused);
    let ds = Dataset::open(dir.path().join("ds"), &LoadOptions::default()).unwrap();
    assert_eq!(ds.labels.len(), cfg.scenes.len());
    assert!(ds.labels.len() >= 6);
    assert_eq!(ds.labels.names(), s.classes.as_slice());
    assert_eq!(ds.clips.len(), cfg.scenes.len() * cfg.clips_per_class);
    assert_eq!(ds.train.len() + ds.evaluate.len(), ds.clips.len());
    assert_eq!((ds.train.len(), ds.evaluate.len()), (s.train, s.test));
    assert_eq!(ds.test, ds.evaluate, "fold1_test lists the evaluate clips");

    // Every class in both splits; locations disjoint between them.
    let locs = |idx: &[usize]| -> HashSet<String> {
        idx.iter()
            .map(|&i| ds.clips[i].location.clone().unwrap())
            .collect()
    };
    assert!(locs(&ds.train).is_disjoint(&locs(&ds.evaluate)));
    for split in [&ds.train, &ds.evaluate] {
        let classes: HashSet<usize> = split.iter().map(|&i| ds.clips[i].label.unwrap()).collect();
        assert_eq!(classes.len(), ds.labels.len());
    }
    // Unseen devices only in evaluate/test; the identifier's city matches the file name.
    let unseen = ["s4", "s5", "s6"];
    for &i in &ds.train {
        assert!(!unseen.contains(&ds.clips[i].device.as_deref().unwrap()));
    }
    for c in &ds.clips {
        let stem = c.filename.trim_start_matches("audio/");
        let label = ds.labels.name(c.label.unwrap()).unwrap();
        assert!(stem.starts_with(&format!("{label}-{}-", c.location.as_deref().unwrap())));
        assert!(c.city.is_some());
    }

    // The audio is what the config says, not silent, not clipped all over.
    let r = hound::WavReader::open(&ds.clips[0].path).unwrap();
    let spec = r.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (1, 16_000, 16)
    );
    let x: Vec<i16> = r.into_samples().map(|v| v.unwrap()).collect();
    assert_eq!(x.len(), 8_000);
    let rms = (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64).sqrt();
    assert!(rms > 100.0 && rms < 10_000.0, "rms {rms}");
}

#[test]
fn unseen_devices_appear_in_a_larger_test_split() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        clip_seconds: 0.2,
        sample_rate: 8_000,
        clips_per_class: 20,
        locations_per_class: 4,
        ..SynthConfig::default()
    };
    let s = generate(dir.path().join("ds"), &cfg).unwrap();
    assert!(s
        .train_devices
        .iter()
        .all(|d| !["s4", "s5", "s6"].contains(&d.as_str())));
    assert!(s
        .test_devices
        .iter()
        .any(|d| d == "s4" || d == "s5" || d == "s6"));
    let mut per_dev: BTreeMap<String, usize> = BTreeMap::new();
    let ds = Dataset::open(dir.path().join("ds"), &LoadOptions::default()).unwrap();
    for &i in &ds.train {
        *per_dev
            .entry(ds.clips[i].device.clone().unwrap())
            .or_default() += 1;
    }
    // Device a dominates training, as in TAU 2020 Mobile.
    let a = per_dev["a"];
    assert!(per_dev.values().all(|&n| n <= a), "{per_dev:?}");
}

#[test]
fn reuse_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ds");
    let cfg = small();
    generate(&out, &cfg).unwrap();
    assert!(generate(&out, &cfg).unwrap().reused);
    let other = SynthConfig {
        seed: 1,
        ..cfg.clone()
    };
    assert!(matches!(
        generate(&out, &other),
        Err(SynthError::NotEmpty { .. })
    ));
    let busy = dir.path().join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("x"), b"x").unwrap();
    assert!(matches!(
        generate(&busy, &cfg),
        Err(SynthError::NotEmpty { .. })
    ));
    for bad in [
        SynthConfig {
            scenes: vec!["airport".into()],
            ..cfg.clone()
        },
        SynthConfig {
            scenes: vec!["airport".into(), "moon".into()],
            ..cfg.clone()
        },
        SynthConfig {
            bits_per_sample: 8,
            ..cfg.clone()
        },
        SynthConfig {
            locations_per_class: 1,
            ..cfg.clone()
        },
        SynthConfig {
            sample_rate: 100,
            ..cfg.clone()
        },
    ] {
        assert!(matches!(
            generate(dir.path().join("bad"), &bad),
            Err(SynthError::InvalidConfig(_))
        ));
    }
}

#[test]
fn default_bit_depth_is_true_24_bit() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ds");
    generate(&out, &small()).unwrap();
    let ds = Dataset::open(&out, &LoadOptions::default()).unwrap();
    let r = hound::WavReader::open(&ds.clips[3].path).unwrap();
    assert_eq!(r.spec().bits_per_sample, 24);
    let x: Vec<i32> = r.into_samples().map(|v| v.unwrap()).collect();
    assert!(x.iter().all(|&v| (-(1 << 23)..(1 << 23)).contains(&v)));
    // Uses the low byte: not 16-bit audio padded to 24 bits.
    assert!(x.iter().filter(|&&v| v % 256 != 0).count() > x.len() / 2);
}
