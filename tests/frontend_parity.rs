//! The front end against librosa: references written by tests/fixtures/gen_frontend.py.

use asc::features::{self, FrontendConfig, LogMel};
use ndarray::Array1;
use ndarray_npy::ReadNpyExt;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/frontend")
}

fn cases() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("cases.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// docs/frontend.md: max |ours − librosa| ≤ 1e-3 on the log scale, every preset, real and synthetic
/// signals and silence.
#[test]
fn every_preset_matches_librosa() {
    let cases = cases();
    let list = cases["cases"].as_array().unwrap();
    assert!(list.len() >= 9);
    for case in list {
        let preset = case["preset"].as_str().unwrap();
        let wav = fixtures().join(case["wav"].as_str().unwrap());
        let reference =
            features::npy::read(&fixtures().join(case["reference"].as_str().unwrap())).unwrap();
        let frontend = LogMel::new(FrontendConfig::preset(preset).unwrap()).unwrap();
        let ours = features::file_features(&wav, &frontend, None).unwrap();
        assert_eq!(
            (ours.n_mels, ours.frames),
            (reference.n_mels, reference.frames),
            "{}",
            wav.display()
        );
        let worst = ours
            .data
            .iter()
            .zip(&reference.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        eprintln!("{:<28} {preset:<10} max |diff| {worst:.2e}", case["wav"]);
        assert!(worst <= 1e-3, "{}: max |diff| {worst}", wav.display());
    }
}

fn sdr_db(ours: &[f32], reference: &[f32], margin: usize) -> f64 {
    let n = ours.len().min(reference.len());
    let (mut sig, mut err) = (0.0f64, 0.0f64);
    for i in margin..n - margin {
        sig += (reference[i] as f64).powi(2);
        err += (ours[i] as f64 - reference[i] as f64).powi(2);
    }
    10.0 * (sig / err).log10()
}

/// rubato against soxr_hq (librosa's default resampler) on a real recording. The figure is
/// quoted in the README; the bound only guards against regressions.
#[test]
fn resampler_agrees_with_soxr() {
    let cases = cases();
    let r = &cases["resample"];
    let src = fixtures().join(r["source"].as_str().unwrap());
    let decoded = asc::audio::decode_file(&src).unwrap();
    for (target, file) in r["targets"].as_object().unwrap() {
        let target: u32 = target.parse().unwrap();
        let file = std::fs::File::open(fixtures().join(file.as_str().unwrap())).unwrap();
        let reference = Array1::<f32>::read_npy(file).unwrap().to_vec();
        let ours = asc::audio::resample(&decoded.samples, 48000, target).unwrap();
        assert_eq!(ours.len(), reference.len(), "length at {target} Hz");
        let whole = sdr_db(&ours, &reference, 0);
        let inner = sdr_db(&ours, &reference, 256);
        eprintln!(
            "48000 -> {target}: SDR vs soxr_hq {whole:.1} dB (edges excluded: {inner:.1} dB)"
        );
        assert!(inner > 40.0, "SDR {inner} dB at {target} Hz");
    }
}
