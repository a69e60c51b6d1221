//! Device impulse response augmentation (`asc train --dir FOLDER`, issue 19): with some
//! probability a training clip's waveform is convolved with an impulse response drawn from a
//! folder of recorded (or simulated) device responses before its log-mel is computed, so the
//! model sees the training scenes as other microphones would have recorded them. The DCASE 2025
//! winners' recipes use it against unseen devices.
//!
//! The waveform is needed, not the cached log-mel: a chosen clip is decoded again and its
//! features computed on the fly (decode, FFT convolution and log-mel cost a few milliseconds a
//! clip, small next to a training step); the others come from the cache as usual.

use crate::audio;
use crate::dataset::rng::SplitMix64;
use crate::error::FileError;
use crate::features::{FrontendConfig, LogMel, Spectrogram};
use realfft::RealFftPlanner;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The settings of a run (`config.json`'s `dir`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirConfig {
    /// Folder of impulse responses (any audio format `asc` reads; walked recursively).
    pub folder: PathBuf,
    /// Probability that a training example is convolved with one of them.
    #[serde(default = "DirConfig::default_probability")]
    pub probability: f32,
    /// Only clips of these recording devices are convolved (CP-JKU convolve device `a`'s, the
    /// real device most training clips come from); all clips when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<String>>,
}

impl DirConfig {
    /// CP-JKU's DCASE 2023 training script's `dir_prob`.
    pub fn default_probability() -> f32 {
        0.6
    }

    pub fn check(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.probability) {
            return Err(format!(
                "dir.probability must be in [0, 1], got {}",
                self.probability
            ));
        }
        Ok(())
    }
}

/// The impulse responses of a run at the model's rate, with the front end that turns an
/// augmented waveform into features.
pub struct DeviceResponses {
    responses: Vec<Vec<f32>>,
    probability: f32,
    devices: Option<Vec<String>>,
    frontend: LogMel,
}

impl DeviceResponses {
    /// Reads every audio file of `config.folder`, downmixed and resampled to the front end's
    /// rate and scaled to unit energy. A folder without one, or a file that cannot be read or is
    /// silent, is an error naming it.
    pub fn load(config: &DirConfig, frontend: &FrontendConfig) -> Result<Self, FileError> {
        let folder = &config.folder;
        let files = audio::collect_inputs(std::slice::from_ref(folder))
            .map_err(|e| FileError::new(folder, e.to_string()))?;
        if files.is_empty() {
            return Err(FileError::new(
                folder,
                "no impulse responses (audio files) in it",
            ));
        }
        let mut responses = Vec::with_capacity(files.len());
        for file in &files {
            let bytes = audio::read_file(file).map_err(|e| FileError::new(file, e.to_string()))?;
            let (h, _) = audio::decode_mono(file, &bytes, Some(frontend.sr))
                .map_err(|e| FileError::new(file, e.to_string()))?;
            let energy: f64 = h.iter().map(|&v| v as f64 * v as f64).sum();
            if energy == 0.0 {
                return Err(FileError::new(file, "an impulse response of silence"));
            }
            // Unit energy: a response changes a clip's colour, not its level, which the input
            // standardisation (measured on the unconvolved training clips) would otherwise see
            // as a shift of every band.
            let scale = (1.0 / energy.sqrt()) as f32;
            responses.push(h.iter().map(|v| v * scale).collect());
        }
        let frontend =
            LogMel::new(frontend.clone()).map_err(|e| FileError::new(folder, e.to_string()))?;
        Ok(Self {
            responses,
            probability: config.probability,
            devices: config.devices.clone(),
            frontend,
        })
    }

    pub fn len(&self) -> usize {
        self.responses.len()
    }

    pub fn is_empty(&self) -> bool {
        self.responses.is_empty()
    }

    /// For each example (its recording device, if known), the response it is convolved with,
    /// or none: drawn in order from `rng` for the examples of an eligible device, so a run (and a
    /// resumed run) draws the same.
    pub fn draw(&self, devices: &[Option<&str>], rng: &mut SplitMix64) -> Vec<Option<usize>> {
        devices
            .iter()
            .map(|device| {
                let eligible = match &self.devices {
                    None => true,
                    Some(list) => device.is_some_and(|d| list.iter().any(|l| l == d)),
                };
                (eligible && rng.chance(self.probability))
                    .then(|| rng.below(self.responses.len() as u64) as usize)
            })
            .collect()
    }

    /// The log-mel of the audio file `path` convolved with response `which`.
    pub fn features(&self, path: &Path, which: usize) -> Result<Spectrogram, FileError> {
        let bytes = audio::read_file(path).map_err(|e| FileError::new(path, e.to_string()))?;
        let (x, _) = audio::decode_mono(path, &bytes, Some(self.frontend.config().sr))
            .map_err(|e| FileError::new(path, e.to_string()))?;
        Ok(self.frontend.compute(&convolve(&x, &self.responses[which])))
    }
}

/// The first `x.len()` samples of the full convolution x ∗ h (the response's tail past the
/// clip's end is cut, so the clip keeps its length and its frames), by FFT.
pub fn convolve(x: &[f32], h: &[f32]) -> Vec<f32> {
    if x.is_empty() || h.is_empty() {
        return vec![0.0; x.len()];
    }
    let n = (x.len() + h.len() - 1).next_power_of_two();
    let mut planner = RealFftPlanner::<f64>::new();
    let forward = planner.plan_fft_forward(n);
    let inverse = planner.plan_fft_inverse(n);
    let spectrum = |v: &[f32]| {
        let mut buf = forward.make_input_vec();
        for (b, &s) in buf.iter_mut().zip(v) {
            *b = s as f64;
        }
        let mut out = forward.make_output_vec();
        forward
            .process(&mut buf, &mut out)
            .expect("buffers sized by the plan");
        out
    };
    let (a, b) = (spectrum(x), spectrum(h));
    let mut product: Vec<_> = a.iter().zip(&b).map(|(p, q)| p * q).collect();
    let mut y = inverse.make_output_vec();
    inverse
        .process(&mut product, &mut y)
        .expect("buffers sized by the plan");
    y.truncate(x.len());
    y.iter().map(|&v| (v / n as f64) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direct(x: &[f32], h: &[f32]) -> Vec<f64> {
        (0..x.len())
            .map(|i| {
                (0..h.len().min(i + 1))
                    .map(|k| x[i - k] as f64 * h[k] as f64)
                    .sum()
            })
            .collect()
    }

    /// The FFT convolution against its definition, for responses shorter and longer than the
    /// clip, and the identity and delay responses exactly where they should be.
    #[test]
    fn convolution_matches_its_definition() {
        let x: Vec<f32> = (0..1000)
            .map(|i| (i * 37 % 101) as f32 / 50.0 - 1.0)
            .collect();
        for len in [1usize, 7, 300, 1500] {
            let h: Vec<f32> = (0..len)
                .map(|k| (-(k as f32) / 40.0).exp() * if k % 2 == 0 { 1.0 } else { -0.5 })
                .collect();
            let got = convolve(&x, &h);
            assert_eq!(got.len(), x.len());
            for (g, w) in got.iter().zip(direct(&x, &h)) {
                assert!((*g as f64 - w).abs() < 1e-5, "len {len}: {g} vs {w}");
            }
        }
        let same = convolve(&x, &[1.0]);
        assert!(same.iter().zip(&x).all(|(a, b)| (a - b).abs() < 1e-6));
        let delayed = convolve(&x, &[0.0, 0.0, 0.0, 1.0]);
        assert!(
            delayed[..3].iter().all(|v| v.abs() < 1e-6),
            "{:?}",
            &delayed[..3]
        );
        assert!(
            (delayed[3..]
                .iter()
                .zip(&x)
                .all(|(a, b)| (a - b).abs() < 1e-6))
        );
    }

    /// A response of one unit impulse gives the features the cache holds (the same front end,
    /// the same decoding), to the FFT's rounding.
    #[test]
    fn an_identity_response_gives_the_cached_features() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, samples: &[f32], rate: u32| {
            let spec = hound::WavSpec {
                channels: 1,
                sample_rate: rate,
                bits_per_sample: 32,
                sample_format: hound::SampleFormat::Float,
            };
            let path = dir.path().join(name);
            let mut w = hound::WavWriter::create(&path, spec).unwrap();
            samples.iter().for_each(|&v| w.write_sample(v).unwrap());
            w.finalize().unwrap();
            path
        };
        let clip: Vec<f32> = (0..44_100).map(|i| (i as f32 * 0.07).sin() * 0.3).collect();
        let clip = write("clip.wav", &clip, 44_100);
        std::fs::create_dir(dir.path().join("irs")).unwrap();
        let mut impulse = vec![0.0f32; 64];
        impulse[0] = 1.0;
        write("irs/unit.wav", &impulse, 44_100);
        let config = DirConfig {
            folder: dir.path().join("irs"),
            probability: 1.0,
            devices: None,
        };
        let frontend = FrontendConfig::dcase2020();
        let responses = DeviceResponses::load(&config, &frontend).unwrap();
        let got = responses.features(&clip, 0).unwrap();
        let want =
            crate::features::file_features(&clip, &LogMel::new(frontend).unwrap(), None).unwrap();
        assert_eq!((got.n_mels, got.frames), (want.n_mels, want.frames));
        let diff = got
            .data
            .iter()
            .zip(&want.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(diff < 1e-3, "{diff}");
    }

    #[test]
    fn draws_follow_the_probability() {
        let mut d = DeviceResponses {
            responses: vec![vec![1.0]; 3],
            probability: 0.25,
            devices: None,
            frontend: LogMel::new(FrontendConfig::dcase2020()).unwrap(),
        };
        let devices: Vec<Option<&str>> = (0..4000)
            .map(|i| [Some("a"), Some("b"), None][i % 3])
            .collect();
        let draws = d.draw(&devices, &mut SplitMix64::new(5));
        let chosen = draws.iter().flatten().count() as f64 / 4000.0;
        assert!((chosen - 0.25).abs() < 0.03, "{chosen}");
        assert!(draws.iter().flatten().all(|&i| i < 3));
        assert_eq!(draws, d.draw(&devices, &mut SplitMix64::new(5)));
        // Restricted to device a: only a's examples are ever convolved, at the same rate.
        d.devices = Some(vec!["a".to_string()]);
        let draws = d.draw(&devices, &mut SplitMix64::new(5));
        let of_a: Vec<_> = draws.iter().step_by(3).collect();
        let rate = of_a.iter().filter(|w| w.is_some()).count() as f64 / of_a.len() as f64;
        assert!((rate - 0.25).abs() < 0.04, "{rate}");
        let others = draws.iter().enumerate().filter(|(i, _)| i % 3 != 0);
        assert!(others.into_iter().all(|(_, w)| w.is_none()));
    }
}
