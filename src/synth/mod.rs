//! A deterministic generator of synthetic DCASE-layout data sets (docs/datasets.md "Dataset
//! layout"), so that the whole pipeline (features, training, export, inference) can run and be
//! tested without downloading TAU Urban Acoustic Scenes.
//!
//! Each clip is rendered from a class recipe ([`scenes`]) perturbed per recording location:
//! coloured-noise background with slow swells, optional hum, events drawn from kinds shared
//! between classes ([`events`]), a decaying-noise room impulse response, then a simulated device
//! ([`devices`]; `s4`-`s6` only in the test split). Locations are disjoint between train and
//! evaluate/test, as in DCASE. As in TAU 2020 Mobile, `fold1_test.csv` lists the same clips as
//! `fold1_evaluate.csv`, without labels.
//!
//! Determinism: every clip has its own random stream derived from (seed, file name), so the
//! bytes written do not depend on the number of rayon threads.

pub mod devices;
pub mod dsp;
pub mod events;
mod render;
pub mod scenes;

use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::dataset::rng::{hash_str, SplitMix64};
use crate::fsutil::write_atomic;
use devices::DeviceModel;
use render::{render_clip, RenderCtx};
use scenes::{LocationParams, SceneRecipe};

/// Cities of TAU Urban Acoustic Scenes 2020; a location is `<city>-<number>`.
pub const CITIES: &[&str] = &[
    "barcelona",
    "helsinki",
    "lisbon",
    "london",
    "lyon",
    "milan",
    "paris",
    "prague",
    "stockholm",
    "vienna",
];

/// What to generate. Defaults give a quick demo set: 6 classes × 48 clips × 2 s at 32 kHz
/// (the DCASE 2024 baseline rate, so no resampling), 24-bit like TAU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SynthConfig {
    pub seed: u64,
    /// Scene names from [`scenes::CATALOGUE`].
    pub scenes: Vec<String>,
    pub clips_per_class: usize,
    pub clip_seconds: f32,
    pub sample_rate: u32,
    /// 16 or 24.
    pub bits_per_sample: u16,
    /// Recording locations per class; clips are spread evenly over them.
    pub locations_per_class: usize,
    /// Share of each class's locations that go to evaluate/test.
    pub test_location_fraction: f32,
    /// Put the unseen devices s4-s6 into the test split.
    pub unseen_devices: bool,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            seed: 2024,
            scenes: scenes::DEFAULT_SCENES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            clips_per_class: 48,
            clip_seconds: 2.0,
            sample_rate: 32_000,
            bits_per_sample: 24,
            locations_per_class: 10,
            test_location_fraction: 0.3,
            unseen_devices: true,
        }
    }
}

impl SynthConfig {
    /// The defaults with `n` clips per class, spread over at most the default number of
    /// recording locations (never more locations than clips; `--clips-per-class 4` gets 4).
    pub fn with_clips_per_class(self, n: usize) -> Self {
        Self {
            clips_per_class: n,
            locations_per_class: self.locations_per_class.min(n),
            ..self
        }
    }
}

/// What [`generate`] produced.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub out_dir: PathBuf,
    /// Alphabetical class names.
    pub classes: Vec<String>,
    pub clips: usize,
    pub train: usize,
    /// Clips in evaluate (= test).
    pub test: usize,
    pub locations: usize,
    pub train_devices: Vec<String>,
    pub test_devices: Vec<String>,
    pub audio_bytes: u64,
    /// The directory already held this exact data set (same `synth.json`); nothing was written.
    pub reused: bool,
    pub seconds: f64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = if self.reused { "reused" } else { "wrote" };
        write!(
            f,
            "{verb} {}: {} clips ({} train, {} evaluate/test), {} classes, {} locations, \
             train devices {}, test devices {}, {:.1} MB of audio in {:.1} s",
            self.out_dir.display(),
            self.clips,
            self.train,
            self.test,
            self.classes.len(),
            self.locations,
            self.train_devices.join(","),
            self.test_devices.join(","),
            self.audio_bytes as f64 / 1e6,
            self.seconds
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("invalid synth config: {0}")]
    InvalidConfig(#[from] SynthConfigError),
    #[error("cannot write the synth config as JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{path}: {reason}")]
    NotEmpty { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A list or the marker could not be written ([`crate::fsutil::write_atomic`]).
    #[error(transparent)]
    File(#[from] crate::error::FileError),
    #[error("{path}: cannot write WAV: {source}")]
    Wav {
        path: PathBuf,
        #[source]
        source: hound::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SynthError + '_ {
    move |source| SynthError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl SynthConfig {
    pub fn validate(&self) -> Result<Vec<&'static SceneRecipe>, SynthConfigError> {
        use SynthConfigError as E;
        if self.scenes.len() < 2 {
            return Err(E::TooFewScenes(self.scenes.len()));
        }
        let mut recipes = Vec::new();
        for s in &self.scenes {
            let Some(r) = scenes::recipe(s) else {
                let known: Vec<&str> = scenes::CATALOGUE.iter().map(|r| r.name).collect();
                return Err(E::UnknownScene {
                    name: s.clone(),
                    known: known.join(", "),
                });
            };
            if recipes.iter().any(|x: &&SceneRecipe| x.name == r.name) {
                return Err(E::DuplicateScene(s.clone()));
            }
            recipes.push(r);
        }
        if !(8_000..=192_000).contains(&self.sample_rate) {
            return Err(E::SampleRate(self.sample_rate));
        }
        if !(self.clip_seconds >= 0.1 && self.clip_seconds <= 60.0) {
            return Err(E::ClipSeconds(self.clip_seconds));
        }
        if !matches!(self.bits_per_sample, 16 | 24) {
            return Err(E::BitsPerSample(self.bits_per_sample));
        }
        if self.locations_per_class < 2 || self.locations_per_class > self.clips_per_class {
            return Err(E::LocationsPerClass {
                locations: self.locations_per_class,
                clips: self.clips_per_class,
            });
        }
        if !(self.test_location_fraction > 0.0 && self.test_location_fraction < 1.0) {
            return Err(E::TestLocationFraction(self.test_location_fraction));
        }
        Ok(recipes)
    }
}

/// A synthetic data set's settings that cannot make one ([`SynthConfig::validate`]), naming the
/// setting, its value and the range it must be in.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SynthConfigError {
    #[error("need at least 2 scenes, got {0}")]
    TooFewScenes(usize),
    #[error("unknown scene {name:?}; known: {known}")]
    UnknownScene { name: String, known: String },
    #[error("scene {0:?} listed twice")]
    DuplicateScene(String),
    #[error("sample_rate {0} not in 8000..=192000")]
    SampleRate(u32),
    #[error("clip_seconds {0} not in [0.1, 60]")]
    ClipSeconds(f32),
    #[error("bits_per_sample {0} (16 or 24)")]
    BitsPerSample(u16),
    #[error(
        "locations_per_class {locations} must be in 2..=clips_per_class ({clips}): each class needs \
         recordings from at least 2 locations, so that training and test never share one"
    )]
    LocationsPerClass { locations: usize, clips: usize },
    #[error("test_location_fraction {0} not in (0, 1)")]
    TestLocationFraction(f32),
}

/// One clip to render.
struct ClipPlan {
    filename: String,
    scene: usize,
    location: usize,
    device: usize,
    test: bool,
}

struct Plan {
    clips: Vec<ClipPlan>,
    locations: Vec<(String, LocationParams)>,
}

fn make_plan(cfg: &SynthConfig, recipes: &[&SceneRecipe], devices: &[DeviceModel]) -> Plan {
    let mut rng = SplitMix64::derive(cfg.seed, hash_str("plan"));
    let train_devs: Vec<usize> = (0..devices.len()).filter(|&d| !devices[d].unseen).collect();
    let test_devs: Vec<usize> = (0..devices.len())
        .filter(|&d| cfg.unseen_devices || !devices[d].unseen)
        .collect();
    let weight_sum: f32 = train_devs.iter().map(|&d| devices[d].train_weight).sum();
    let mut city_next = vec![0usize; CITIES.len()];
    let mut clips = Vec::new();
    let mut locations = Vec::new();
    for (si, recipe) in recipes.iter().enumerate() {
        let n_loc = cfg.locations_per_class;
        let n_test =
            ((n_loc as f32 * cfg.test_location_fraction).round() as usize).clamp(1, n_loc - 1);
        let mut order: Vec<usize> = (0..n_loc).collect();
        rng.shuffle(&mut order);
        for l in 0..n_loc {
            let test = order[..n_test].contains(&l);
            let city = rng.below(CITIES.len() as u64) as usize;
            let identifier = format!("{}-{}", CITIES[city], city_next[city]);
            city_next[city] += 1;
            let mut lrng = SplitMix64::derive(
                cfg.seed,
                hash_str(&format!("loc/{}/{identifier}", recipe.name)),
            );
            locations.push((identifier.clone(), LocationParams::draw(recipe, &mut lrng)));
            let n_clips =
                cfg.clips_per_class / n_loc + usize::from(l < cfg.clips_per_class % n_loc);
            for seg in 0..n_clips {
                let device = if test {
                    test_devs[rng.below(test_devs.len() as u64) as usize]
                } else {
                    let mut x = rng.next_f32() * weight_sum;
                    let mut pick = train_devs[0];
                    for &d in &train_devs {
                        pick = d;
                        x -= devices[d].train_weight;
                        if x < 0.0 {
                            break;
                        }
                    }
                    pick
                };
                clips.push(ClipPlan {
                    filename: format!(
                        "audio/{}-{identifier}-{seg}-{}.wav",
                        recipe.name, devices[device].name
                    ),
                    scene: si,
                    location: locations.len() - 1,
                    device,
                    test,
                });
            }
        }
    }
    clips.sort_by(|a, b| a.filename.cmp(&b.filename));
    Plan { clips, locations }
}

/// Generates the data set described by `cfg` into `out_dir`.
///
/// `out_dir` must be absent or empty, or hold the same data set (its `synth.json`, written last
/// as a completion marker, equals `cfg`), in which case nothing is written and
/// [`Summary::reused`] is set.
pub fn generate(out_dir: impl AsRef<Path>, cfg: &SynthConfig) -> Result<Summary, SynthError> {
    let start = Instant::now();
    let out = out_dir.as_ref();
    let recipes = cfg.validate()?;
    let devices = devices::catalogue();
    let plan = make_plan(cfg, &recipes, &devices);
    let mut classes: Vec<String> = recipes.iter().map(|r| r.name.to_string()).collect();
    classes.sort();
    let devs = |test: bool| {
        let mut v: Vec<String> = plan
            .clips
            .iter()
            .filter(|c| c.test == test)
            .map(|c| devices[c.device].name.to_string())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let mut summary = Summary {
        out_dir: out.to_path_buf(),
        classes,
        clips: plan.clips.len(),
        train: plan.clips.iter().filter(|c| !c.test).count(),
        test: plan.clips.iter().filter(|c| c.test).count(),
        locations: plan.locations.len(),
        train_devices: devs(false),
        test_devices: devs(true),
        audio_bytes: 0,
        reused: false,
        seconds: 0.0,
    };
    let marker = out.join("synth.json");
    let cfg_json = serde_json::to_string_pretty(cfg)?;
    if out.exists() {
        if let Ok(old) = std::fs::read_to_string(&marker) {
            if serde_json::from_str::<SynthConfig>(&old).ok().as_ref() == Some(cfg) {
                summary.reused = true;
                summary.seconds = start.elapsed().as_secs_f64();
                return Ok(summary);
            }
            return Err(SynthError::NotEmpty {
                path: out.to_path_buf(),
                reason: "holds a synthetic data set with a different config; remove it or choose another --out".into(),
            });
        }
        let mut entries = std::fs::read_dir(out).map_err(io_err(out))?;
        if entries.next().is_some() {
            return Err(SynthError::NotEmpty {
                path: out.to_path_buf(),
                reason: "directory is not empty; remove it or choose another --out".into(),
            });
        }
    }
    let audio = out.join("audio");
    std::fs::create_dir_all(&audio).map_err(io_err(&audio))?;
    let setup = out.join("evaluation_setup");
    std::fs::create_dir_all(&setup).map_err(io_err(&setup))?;

    let ctx = RenderCtx::new(cfg.sample_rate, cfg.clip_seconds);
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: cfg.sample_rate,
        bits_per_sample: cfg.bits_per_sample,
        sample_format: hound::SampleFormat::Int,
    };
    let bytes: Vec<u64> = plan
        .clips
        .par_iter()
        .map(|c| {
            let mut rng = SplitMix64::derive(cfg.seed, hash_str(&c.filename));
            let x = render_clip(
                &ctx,
                recipes[c.scene],
                &plan.locations[c.location].1,
                &devices[c.device],
                &mut rng,
            );
            write_wav(&out.join(&c.filename), spec, &x)
        })
        .collect::<Result<_, _>>()?;
    summary.audio_bytes = bytes.iter().sum();

    let mut meta = String::from("filename\tscene_label\tidentifier\tsource_label\n");
    let mut train = String::from("filename\tscene_label\n");
    let mut evaluate = train.clone();
    let mut test = String::from("filename\n");
    for c in &plan.clips {
        let scene = recipes[c.scene].name;
        let dev = devices[c.device].name;
        let id = &plan.locations[c.location].0;
        meta.push_str(&format!("{}\t{scene}\t{id}\t{dev}\n", c.filename));
        if c.test {
            evaluate.push_str(&format!("{}\t{scene}\n", c.filename));
            test.push_str(&format!("{}\n", c.filename));
        } else {
            train.push_str(&format!("{}\t{scene}\n", c.filename));
        }
    }
    write_atomic(&out.join("meta.csv"), meta.as_bytes())?;
    write_atomic(&setup.join("fold1_train.csv"), train.as_bytes())?;
    write_atomic(&setup.join("fold1_evaluate.csv"), evaluate.as_bytes())?;
    write_atomic(&setup.join("fold1_test.csv"), test.as_bytes())?;
    write_atomic(&marker, cfg_json.as_bytes())?;
    summary.seconds = start.elapsed().as_secs_f64();
    Ok(summary)
}

/// Writes PCM samples in [-1, 1), rounding to the nearest code; returns the file size.
fn write_wav(path: &Path, spec: hound::WavSpec, x: &[f32]) -> Result<u64, SynthError> {
    let werr = |source| SynthError::Wav {
        path: path.to_path_buf(),
        source,
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(werr)?;
    let full = (1i64 << (spec.bits_per_sample - 1)) as f32;
    for &v in x {
        let q = (v * full).round().clamp(-full, full - 1.0) as i32;
        if spec.bits_per_sample == 16 {
            w.write_sample(q as i16).map_err(werr)?;
        } else {
            w.write_sample(q).map_err(werr)?;
        }
    }
    w.finalize().map_err(werr)?;
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fewer clips than the default locations: as many locations as clips, down to the two a
    /// location-disjoint split needs.
    #[test]
    fn few_clips_per_class_get_fewer_locations() {
        let cfg = SynthConfig::default().with_clips_per_class(4);
        assert_eq!(cfg.locations_per_class, 4);
        assert!(cfg.validate().is_ok());
        let cfg = SynthConfig::default().with_clips_per_class(100);
        assert_eq!(cfg.locations_per_class, 10);
        let err = SynthConfig::default().with_clips_per_class(1).validate();
        assert!(matches!(
            err,
            Err(SynthConfigError::LocationsPerClass { .. })
        ));
    }
}
