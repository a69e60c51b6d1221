//! Features for training and evaluation: computed once into the on-disk cache (in parallel,
//! with a progress bar), then read back per batch, so memory stays bounded by a batch however
//! large the data set.

use super::augment::{self, AugmentConfig, HostBatch};
use super::dir::DeviceResponses;
use super::teacher::Teacher;
use crate::dataset::{rng::SplitMix64, Dataset};
use crate::error::FileError;
use crate::features::{self, FeatureCache, LogMel, Spectrogram};
use crate::nn::models::input_norm::{BandStats, InputNorm};
use crate::progress;
use rayon::prelude::*;
use std::collections::HashMap;

/// What a batch's examples are trained towards: their classes, and the teacher's soft targets
/// when the run distils.
#[derive(Clone, Copy)]
pub struct Targets<'a> {
    pub labels: &'a [usize],
    pub n_classes: usize,
    pub teacher: Option<&'a Teacher>,
}

/// Device impulse responses to convolve some examples with, and the data set whose audio they
/// are re-read from (`train::dir`).
#[derive(Clone, Copy)]
pub struct Responses<'a> {
    pub responses: &'a DeviceResponses,
    pub dataset: &'a Dataset,
}

/// Cache keys and frame counts of the clips of a data set.
pub struct FeatureStore {
    cache: FeatureCache,
    n_mels: usize,
    /// clip index → (cache key, frames)
    entries: HashMap<usize, (String, usize)>,
}

impl FeatureStore {
    /// Makes sure every clip in `clips` has its features in the cache; fails naming the first
    /// clip (in `clips` order) that cannot be read.
    pub fn prepare(
        dataset: &Dataset,
        clips: &[usize],
        frontend: &LogMel,
        cache: FeatureCache,
    ) -> Result<Self, FileError> {
        let (store, failed) = Self::prepare_skipping(dataset, clips, frontend, cache);
        match failed.into_iter().next() {
            Some((_, first)) => Err(first),
            None => Ok(store),
        }
    }

    /// [`Self::prepare`] that leaves out the clips that cannot be read, returning them with their
    /// errors in `clips` order (for `--skip-bad`).
    pub fn prepare_skipping(
        dataset: &Dataset,
        clips: &[usize],
        frontend: &LogMel,
        cache: FeatureCache,
    ) -> (Self, Vec<(usize, FileError)>) {
        let bar = progress::bar(clips.len() as u64, "features");
        let results: Vec<Result<(String, usize), FileError>> = clips
            .par_iter()
            .map(|&i| {
                let path = &dataset.clips[i].path;
                let r = features::file_features_keyed(path, frontend, Some(&cache));
                bar.inc(1);
                r.map(|(key, spec)| (key.expect("a cache was given"), spec.frames))
            })
            .collect();
        bar.finish_and_clear();
        let mut entries = HashMap::new();
        let mut failed = Vec::new();
        for (&i, r) in clips.iter().zip(results) {
            match r {
                Ok(entry) => {
                    entries.insert(i, entry);
                }
                Err(e) => failed.push((i, e)),
            }
        }
        let store = Self {
            cache,
            n_mels: frontend.config().n_mels,
            entries,
        };
        (store, failed)
    }

    /// Whether `clip` has features (it was prepared and could be read).
    pub fn contains(&self, clip: usize) -> bool {
        self.entries.contains_key(&clip)
    }

    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    pub fn frames(&self, clip: usize) -> usize {
        self.entries[&clip].1
    }

    fn load(&self, clip: usize) -> Result<Spectrogram, FileError> {
        let (key, _) = &self.entries[&clip];
        self.cache.get(key, self.n_mels).ok_or_else(|| {
            FileError::new(
                self.cache.dir(),
                format!("feature cache entry {key} disappeared or is damaged"),
            )
        })
    }

    /// Mean and standard deviation per band (for every band, with `Global`) of the features of
    /// `clips` (every frame), for the model's input standardisation.
    pub fn band_stats(
        &self,
        clips: &[usize],
        kind: InputNorm,
    ) -> Result<(Vec<f32>, Vec<f32>), FileError> {
        let mut stats = BandStats::new(self.n_mels);
        for &c in clips {
            let spec = self.load(c)?;
            stats.add(&spec.data, spec.frames);
        }
        Ok(stats.finish(kind))
    }

    /// A batch of `clips` cropped (or tiled) to `frames` frames: random crops when `rng` is
    /// given, the start of each clip otherwise; then the augmentations.
    pub fn batch(
        &self,
        clips: &[usize],
        targets: Targets,
        frames: usize,
        mut rng: Option<&mut SplitMix64>,
        augment_cfg: Option<&AugmentConfig>,
        responses: Option<Responses>,
    ) -> Result<HostBatch, FileError> {
        let Targets {
            labels,
            n_classes,
            teacher,
        } = targets;
        let drawn = match (responses, rng.as_deref_mut()) {
            (Some(r), Some(rng)) => {
                let devices: Vec<Option<&str>> = clips
                    .iter()
                    .map(|&c| r.dataset.clips[c].device.as_deref())
                    .collect();
                r.responses.draw(&devices, rng)
            }
            _ => vec![None; clips.len()],
        };
        let specs: Vec<Spectrogram> = clips
            .par_iter()
            .zip(&drawn)
            .map(|(&c, which)| match (responses, which) {
                (Some(r), Some(w)) => r.responses.features(&r.dataset.clips[c].path, *w),
                _ => self.load(c),
            })
            .collect::<Result<_, _>>()?;
        let m = self.n_mels;
        let mut x = vec![0.0f32; clips.len() * m * frames];
        let mut starts = Vec::with_capacity(clips.len());
        for (b, spec) in specs.iter().enumerate() {
            let start = match rng.as_deref_mut() {
                Some(r) => augment::crop_start(r, spec.frames, frames),
                None => 0,
            };
            starts.push(start);
            for f in 0..m {
                let row = &spec.data[f * spec.frames..(f + 1) * spec.frames];
                let dst = &mut x[(b * m + f) * frames..(b * m + f + 1) * frames];
                for (t, v) in dst.iter_mut().enumerate() {
                    *v = row[(start + t) % spec.frames];
                }
            }
        }
        let mut y = vec![0.0f32; clips.len() * n_classes];
        for (b, &l) in labels.iter().enumerate() {
            y[b * n_classes + l] = 1.0;
        }
        let mut batch = HostBatch {
            b: clips.len(),
            m,
            t: frames,
            x,
            y,
            labels: labels.to_vec(),
            starts,
            teacher: teacher.map(|t| t.targets(clips)),
        };
        if let (Some(cfg), Some(r)) = (augment_cfg, rng) {
            augment::apply(cfg, &mut batch, r);
        }
        Ok(batch)
    }
}
