//! Front-end settings with librosa's parameter names and the presets of `docs/frontend.md`.

use crate::error::UnknownName;
use serde::{Deserialize, Serialize};

/// Padding of the signal ends when `center` is set (`docs/frontend.md` step 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PadMode {
    /// Zeros: librosa ≥ 0.10's default.
    Constant,
    /// Mirror without repeating the edge sample: torchaudio's default.
    Reflect,
}

/// Normalisation of the mel triangles (`docs/frontend.md` step 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MelNorm {
    /// Each triangle divided by half its width in Hz (librosa's default).
    Slaney,
    /// Peak 1.
    None,
}

/// Compression of mel energies (`docs/frontend.md` step 6).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum LogScale {
    /// `ln(mel + offset)`.
    Ln { offset: f32 },
    /// `10·log10(max(mel, amin))`, librosa's `power_to_db` with `ref = 1` and no `top_db`.
    PowerToDb { amin: f32 },
}

/// Optional per-clip normalisation after the log (`docs/frontend.md` step 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClipNorm {
    #[default]
    None,
    /// `(x − min) / (max − min)` over the whole clip.
    Minmax,
}

/// The log-mel front end. Field names and meanings are librosa's, so a Python recipe maps one
/// to one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrontendConfig {
    pub sr: u32,
    pub n_fft: usize,
    pub win_length: usize,
    pub hop_length: usize,
    pub n_mels: usize,
    pub fmin: f64,
    pub fmax: f64,
    pub htk: bool,
    pub norm: MelNorm,
    pub center: bool,
    pub pad_mode: PadMode,
    pub log: LogScale,
    #[serde(default)]
    pub clip_norm: ClipNorm,
}

/// Names accepted by [`FrontendConfig::preset`].
pub const PRESET_NAMES: &[&str] = &["dcase2020", "cpjku", "librosa"];

impl FrontendConfig {
    /// Hu et al. 2021, the L2BN paper's ASC front end.
    pub fn dcase2020() -> Self {
        Self {
            sr: 44100,
            n_fft: 2048,
            win_length: 2048,
            hop_length: 1024,
            n_mels: 128,
            fmin: 0.0,
            fmax: 22050.0,
            htk: true,
            norm: MelNorm::None,
            center: true,
            pad_mode: PadMode::Constant,
            log: LogScale::Ln { offset: 1e-8 },
            clip_norm: ClipNorm::None,
        }
    }

    /// The DCASE 2023–2025 task 1 baselines (torchaudio `MelSpectrogram` + `(x + 1e-5).log()`).
    pub fn cpjku() -> Self {
        Self {
            sr: 32000,
            n_fft: 4096,
            win_length: 3072,
            hop_length: 500,
            n_mels: 256,
            fmin: 0.0,
            fmax: 16000.0,
            htk: true,
            norm: MelNorm::None,
            center: true,
            pad_mode: PadMode::Reflect,
            log: LogScale::Ln { offset: 1e-5 },
            clip_norm: ClipNorm::None,
        }
    }

    /// librosa's defaults followed by `power_to_db`.
    pub fn librosa() -> Self {
        Self {
            sr: 22050,
            n_fft: 2048,
            win_length: 2048,
            hop_length: 512,
            n_mels: 128,
            fmin: 0.0,
            fmax: 11025.0,
            htk: false,
            norm: MelNorm::Slaney,
            center: true,
            pad_mode: PadMode::Constant,
            log: LogScale::PowerToDb { amin: 1e-10 },
            clip_norm: ClipNorm::None,
        }
    }

    pub fn preset(name: &str) -> Result<Self, UnknownName> {
        match name {
            "dcase2020" => Ok(Self::dcase2020()),
            "cpjku" => Ok(Self::cpjku()),
            "librosa" => Ok(Self::librosa()),
            other => Err(UnknownName::new("front-end preset", other, PRESET_NAMES)),
        }
    }

    /// Frames for a signal of `len` samples: `1 + len / hop` when centred (librosa's rule).
    pub fn frames(&self, len: usize) -> usize {
        if self.center {
            1 + len / self.hop_length
        } else if len < self.n_fft {
            0
        } else {
            1 + (len - self.n_fft) / self.hop_length
        }
    }

    /// Rejects settings that cannot describe a spectrogram, before any buffer is sized by them.
    pub fn validate(&self) -> Result<(), FrontendError> {
        let nyquist = self.sr as f64 / 2.0;
        if self.sr == 0 {
            return Err(FrontendError::SampleRate);
        }
        if self.n_fft < 2 || self.n_fft > 1 << 20 {
            return Err(FrontendError::NFft(self.n_fft));
        }
        if self.win_length == 0 || self.win_length > self.n_fft {
            return Err(FrontendError::WinLength {
                win_length: self.win_length,
                n_fft: self.n_fft,
            });
        }
        if self.hop_length == 0 {
            return Err(FrontendError::HopLength);
        }
        if self.n_mels == 0 {
            return Err(FrontendError::NMels);
        }
        if !(self.fmin >= 0.0 && self.fmin < self.fmax && self.fmax <= nyquist + 1e-9) {
            return Err(FrontendError::Band {
                fmin: self.fmin,
                fmax: self.fmax,
                sr: self.sr,
            });
        }
        if self.center && self.pad_mode == PadMode::Reflect && self.n_fft / 2 == 0 {
            return Err(FrontendError::ReflectPadding);
        }
        Ok(())
    }
}

/// Front-end settings that cannot describe a spectrogram ([`FrontendConfig::validate`]); each
/// message names the setting and the value it had.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FrontendError {
    #[error("sr must be positive")]
    SampleRate,
    #[error("n_fft {0} is out of range 2..=1048576")]
    NFft(usize),
    #[error("win_length {win_length} must be in 1..=n_fft ({n_fft})")]
    WinLength { win_length: usize, n_fft: usize },
    #[error("hop_length must be positive")]
    HopLength,
    #[error("n_mels must be positive")]
    NMels,
    #[error("need 0 <= fmin < fmax <= sr/2, got fmin {fmin} fmax {fmax} sr {sr}")]
    Band { fmin: f64, fmax: f64, sr: u32 },
    #[error("reflect padding needs n_fft >= 2")]
    ReflectPadding,
}

impl Default for FrontendConfig {
    fn default() -> Self {
        Self::dcase2020()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_second_clip_frame_counts() {
        // docs/frontend.md: 431 frames (dcase2020) and 641 (cpjku) for 10 s.
        assert_eq!(FrontendConfig::dcase2020().frames(441_000), 431);
        assert_eq!(FrontendConfig::cpjku().frames(320_000), 641);
    }

    #[test]
    fn presets_validate_and_round_trip() {
        for name in PRESET_NAMES {
            let c = FrontendConfig::preset(name).unwrap();
            c.validate().unwrap();
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(serde_json::from_str::<FrontendConfig>(&json).unwrap(), c);
        }
        assert!(FrontendConfig::preset("nope").is_err());
    }
}
