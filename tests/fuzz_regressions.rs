//! Inputs the fuzzer (`fuzz/`, `scripts/fuzz.sh`) found interesting, kept in
//! `tests/fuzz_regressions/`: each goes through what the fuzz target does — decode, downmix,
//! resample, log-mel — and must come back as features or an error naming the file, never a
//! panic or a non-finite feature. The `old-decoder-*` inputs crashed the decoder before float
//! samples were checked (seeded with the valid corpus files, the fuzzer found 7 crashes in
//! 241 s): NaN or finite values near 1e38 made rubato's FFT overflow and panic ("Imaginary part
//! of first value was non-zero"), values near 1e34 gave non-finite features. The
//! `aiff-float-huge-*` and `caf-float-huge-*` inputs (the per-format runs of issue 18, found
//! within seconds) are float AIFF-C and CAF files with samples near 1e26-1e31, which symphonia
//! decodes as they are: they gave non-finite features until float samples from every decoder
//! were held to the WAV rule (`audio::decode::not_audio`).

use asc::features::{FrontendConfig, LogMel};
use std::path::Path;

#[test]
fn every_fuzz_regression_input_is_handled() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let frontend = LogMel::new(FrontendConfig::cpjku()).unwrap();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "{} inputs in {}",
        files.len(),
        dir.display()
    );
    let (mut decoded, mut refused) = (0, 0);
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        match asc::audio::decode_mono(path, &bytes, Some(frontend.config().sr)) {
            Ok((samples, _)) => {
                let spec = frontend.compute(&samples);
                assert!(
                    spec.data.iter().all(|v| v.is_finite()),
                    "{}: non-finite features",
                    path.display()
                );
                decoded += 1;
            }
            Err(e) => {
                let text = e.to_string();
                assert!(text.contains(&*path.to_string_lossy()), "{text}");
                assert!(!text.contains('\n'), "{text}");
                refused += 1;
            }
        }
    }
    eprintln!("{decoded} decoded, {refused} refused");
}
