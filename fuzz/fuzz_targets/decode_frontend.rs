//! Any bytes through what `asc features` does to a file: decode, downmix, resample to the front
//! end's rate, log-mel. Bad input must come back as an error, never a panic, an abort or a
//! non-finite feature.
#![no_main]

use asc::features::{FrontendConfig, LogMel};
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::OnceLock;

fn frontend() -> &'static LogMel {
    static FRONTEND: OnceLock<LogMel> = OnceLock::new();
    FRONTEND.get_or_init(|| LogMel::new(FrontendConfig::cpjku()).expect("preset is valid"))
}

fuzz_target!(|data: &[u8]| {
    let frontend = frontend();
    if let Ok((samples, _)) =
        asc::audio::decode_mono(Path::new("fuzz.wav"), data, Some(frontend.config().sr))
    {
        let spec = frontend.compute(&samples);
        assert!(
            spec.data.iter().all(|v| v.is_finite()),
            "non-finite features"
        );
    }
});
