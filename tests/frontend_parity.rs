//! The front end against float64 references written by tests/fixtures/gen_frontend.py (librosa
//! presets on synthetic, real and silent signals) and tests/fixtures/gen_quiet_bands.py (real
//! recordings with quiet top bands).

use asc::features::{self, FrontendConfig, LogMel};
use ndarray::Array1;
use ndarray_npy::ReadNpyExt;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/frontend")
}

fn cases() -> serde_json::Value {
    read_cases("cases.json")
}

fn read_cases(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Runs every case of a cases file through its preset and asserts max |ours − float64 reference|
/// ≤ `tolerance` on the log scale (dB for `power_to_db`); returns how many cases there were. The worst value of each case is printed with its band, frame and reference
/// value, so a failure says where the front end lost precision.
fn check_cases(file: &str, tolerance: f32) -> usize {
    let cases = read_cases(file);
    let list = cases["cases"].as_array().unwrap();
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
        let (i, worst) = ours
            .data
            .iter()
            .zip(&reference.data)
            .map(|(a, b)| (a - b).abs())
            .enumerate()
            .fold(
                (0, 0.0f32),
                |best, (i, d)| if d > best.1 { (i, d) } else { best },
            );
        let (band, frame) = (i / ours.frames, i % ours.frames);
        let at = format!("band {band} frame {frame}, reference {}", reference.data[i]);
        eprintln!(
            "{:<28} {preset:<10} max |diff| {worst:.2e} ({at})",
            case["wav"]
        );
        assert!(
            worst <= tolerance,
            "{}: max |diff| {worst:.2e} > {tolerance:.0e} at {at}",
            wav.display()
        );
    }
    list.len()
}

/// Every preset against its float64 librosa reference within 1e-3 (docs/frontend.md,
/// "Precision"): real and synthetic signals and silence (so the floor set by the offset or by
/// `amin` must match too).
#[test]
fn every_preset_matches_librosa() {
    assert!(check_cases("cases.json", 1e-3) >= 9);
}

/// Real recordings with a loud low band and a top band near the 16-bit noise floor, one per
/// preset (tests/fixtures/gen_quiet_bands.py): the float32 window and FFT leak the loud bins into
/// the quiet ones, and the error there is the front end's largest (docs/frontend.md, "Precision":
/// 6.4e-3, 4.1e-3 and 9.7e-3 dB on these clips, 1.5e-2 at worst over the development set). This pins that
/// bound; issue 17's 1e-4 needs the float64 spectrum, measured 1.7–1.9× slower.
#[test]
fn quiet_top_bands_stay_within_the_float32_bound() {
    assert_eq!(check_cases("quiet_cases.json", 2e-2), 3);
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
