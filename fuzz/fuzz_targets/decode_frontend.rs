//! Any bytes through what `asc features` does to a file: sniff, decode (WAV, FLAC, Ogg Vorbis,
//! MP3, AIFF, CAF), downmix, resample to the front end's rate, log-mel. Bad input must come back
//! as an error, never a panic, an abort or a non-finite feature.
#![no_main]

use asc::features::{FrontendConfig, LogMel};
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::OnceLock;

/// Decoded samples allowed per input: a few seconds of audio. A compressed input of a few
/// kilobytes can claim hours (a decompression bomb); the production cap (2³⁰ samples) would
/// only turn that into a slow run here, while this one makes it an error at once.
const MAX_SAMPLES: usize = 1 << 20;

fn frontend() -> &'static LogMel {
    static FRONTEND: OnceLock<LogMel> = OnceLock::new();
    FRONTEND.get_or_init(|| LogMel::new(FrontendConfig::cpjku()).expect("preset is valid"))
}

fuzz_target!(|data: &[u8]| {
    let frontend = frontend();
    let path = Path::new("fuzz.input");
    let Ok(decoded) = asc::audio::decode_bytes_within(path, data, MAX_SAMPLES) else {
        return;
    };
    if let Ok((samples, _)) = asc::audio::into_mono(decoded, Some(frontend.config().sr)) {
        let spec = frontend.compute(&samples);
        assert!(
            spec.data.iter().all(|v| v.is_finite()),
            "non-finite features"
        );
    }
});
