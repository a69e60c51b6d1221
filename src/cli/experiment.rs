//! The experiment flags `asc train` and `asc compare` share, their help texts taken from the
//! library's defaults, and the run config they describe.

use asc::nn::models::{InputNorm, MODEL_NAMES};
use asc::train::config::{ConfigBase, Overrides, Validation};
use asc::train::optim::OptimizerConfig;
use asc::train::TrainConfig;
use std::path::PathBuf;

/// The experiment flags `train` and `compare` share. Their help texts carry the defaults of
/// `TrainConfig::defaults` ([`with_defaults`]), so `--help` cannot drift from the code.
#[derive(clap::Args, Debug)]
pub struct ExperimentArgs {
    /// Data set root (DCASE layout with meta.csv, or ROOT/<label>/ audio files).
    #[arg(long)]
    data: PathBuf,
    #[arg(long, default_value = "cnn")]
    model: String,
    #[arg(long)]
    epochs: Option<u64>,
    #[arg(long)]
    batch_size: Option<usize>,
    /// DCASE fold number K of evaluation_setup/foldK_*.csv [default: 1].
    #[arg(long)]
    fold: Option<u32>,
    /// Training list in evaluation_setup/ instead of foldK_train.csv (e.g. split25.csv, DCASE 2024).
    #[arg(long)]
    train_list: Option<String>,
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long)]
    weight_decay: Option<f64>,
    #[arg(long)]
    warmup_steps: Option<u64>,
    #[arg(long, value_parser = ["constant", "cosine"])]
    schedule: Option<String>,
    /// cpu, or cuda (needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub(super) device: String,
    /// Front-end preset: dcase2020, cpjku or librosa [default: dcase2020 for cnn, cpjku for cp-mobile].
    #[arg(long)]
    preset: Option<String>,
    /// Random time crop length in frames for training [default: whole clips].
    #[arg(long)]
    crop_frames: Option<usize>,
    /// Draw classes uniformly in each batch [default: every clip once per epoch].
    #[arg(long)]
    class_balanced: bool,
    /// Under `mpirun`: batch statistics (BN and every layer with them) over the whole batch,
    /// all-reduced in the forward and the backward, instead of each rank's rows [default: per rank].
    #[arg(long)]
    sync_bn: bool,
    #[arg(long, value_parser = ["auto", "split", "none"])]
    validation: Option<String>,
    #[arg(long)]
    validation_fraction: Option<f64>,
    #[arg(long, value_parser = InputNorm::NAMES)]
    input_norm: Option<String>,
    #[arg(long, conflicts_with = "no_augment")]
    augment: bool,
    /// Turn every augmentation off (single ones can be turned back on with the flags below).
    #[arg(long)]
    no_augment: bool,
    #[arg(long)]
    mixup: Option<f32>,
    #[arg(long)]
    freq_mask: Option<usize>,
    #[arg(long)]
    time_mask: Option<usize>,
    #[arg(long)]
    mixstyle: Option<f32>,
    /// Dropout probability of the model's dropout layers [default: the architecture's: 0.3 for
    /// cnn, none in cp-mobile].
    #[arg(long)]
    dropout: Option<f32>,
    /// Distil from a teacher: its logits per training clip, a table (file name and one column
    /// per class) or an .npy matrix in meta.csv order (docs/datasets.md, "Teacher logits").
    #[arg(long, value_name = "FILE")]
    teacher_logits: Option<PathBuf>,
    /// Weight of the label loss when distilling; the teacher's term gets 1 - λ [default: 0.02].
    #[arg(long)]
    kd_lambda: Option<f64>,
    /// Temperature of the distillation softmaxes [default: 2].
    #[arg(long)]
    kd_temperature: Option<f64>,
    /// Device impulse responses: convolve training clips with one drawn from this folder of
    /// audio files (docs/datasets.md, "Device impulse responses").
    #[arg(long, value_name = "FOLDER")]
    dir: Option<PathBuf>,
    /// Probability per training example of that convolution [default: 0.6].
    #[arg(long)]
    dir_p: Option<f32>,
    /// Convolve only clips of these recording devices (comma-separated; CP-JKU use `a`)
    /// [default: every clip].
    #[arg(long, value_delimiter = ',')]
    dir_devices: Option<Vec<String>>,
    /// Train only on clips of these recording devices (comma-separated, as in DCASE file names:
    /// `-a.wav` is device a): a device-specific model, fine-tuned from a general one with --init.
    #[arg(long, value_delimiter = ',')]
    devices: Option<Vec<String>>,
    /// A JSON file with a whole TrainConfig (flags given override its fields).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Feature cache folder [default: <data>/.asc-cache].
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Leave out bad list rows (malformed, unknown label, missing audio, duplicate, path outside
    /// the data set) and clips whose audio cannot be decoded, with a warning each, instead of
    /// stopping at the first.
    #[arg(long)]
    skip_bad: bool,
}

/// The help texts of the experiment flags whose defaults live in `TrainConfig::defaults`.
pub fn with_defaults(cmd: clap::Command) -> clap::Command {
    let d = TrainConfig::defaults("cnn", "bn", PathBuf::new(), PathBuf::new());
    let aug = &d.augment;
    let dcase = asc::train::augment::AugmentConfig::dcase();
    let warmup = d.schedule.warmup_steps();
    let weight_decay = match d.optimizer {
        OptimizerConfig::AdamW { weight_decay, .. } | OptimizerConfig::Sgd { weight_decay, .. } => {
            weight_decay
        }
    };
    let texts = [
        (
            "model",
            format!("Architecture: {}", MODEL_NAMES.join(" or ")),
        ),
        ("epochs", format!("Training epochs [default: {}]", d.epochs)),
        (
            "batch_size",
            format!("Clips per batch [default: {}]", d.batch_size),
        ),
        (
            "lr",
            format!("Peak learning rate of AdamW [default: {}]", d.lr),
        ),
        (
            "schedule",
            format!(
                "Learning-rate schedule after the warm-up: constant, or cosine down to 1 % of the \
                 peak at the last step [default: {}]",
                d.schedule.kind()
            ),
        ),
        (
            "input_norm",
            format!(
                "Standardise the input log-mel with the training list's mean and std: per mel \
                 band, over all bands (global), or not at all [default: {}]",
                d.model.input_norm.name()
            ),
        ),
        (
            "weight_decay",
            format!("AdamW's decoupled weight decay [default: {weight_decay}]"),
        ),
        (
            "warmup_steps",
            format!("Steps of linear learning-rate warm-up [default: {warmup}]"),
        ),
        (
            "validation",
            format!(
                "How the run's model is chosen. split: hold out --validation-fraction of the \
                 training list by recording location and keep the best epoch by validation macro \
                 accuracy; none: train on the whole list and keep the last epoch; auto: split \
                 when the list has at least {} clips and the split stays near the fraction, \
                 none otherwise [default: {}]",
                Validation::AUTO_MIN_CLIPS,
                validation_name(d.validation)
            ),
        ),
        (
            "validation_fraction",
            format!(
                "Share held out when a validation split is made [default: {}]",
                d.validation_fraction
            ),
        ),
        (
            "augment",
            format!(
                "Turn on the DCASE recipe's augmentation: mixup {}, frequency and time masks of \
                 up to {} and {}, frequency-MixStyle p {} (single settings can be changed with \
                 the flags below) [default: off]",
                dcase.mixup_alpha, dcase.freq_mask, dcase.time_mask, dcase.mixstyle_p
            ),
        ),
        (
            "mixup",
            format!(
                "Mixup Beta(a, a) parameter; 0 turns it off [default: {}]",
                aug.mixup_alpha
            ),
        ),
        (
            "freq_mask",
            format!(
                "Widest frequency mask in mel bins; 0: none [default: {}]",
                aug.freq_mask
            ),
        ),
        (
            "time_mask",
            format!(
                "Widest time mask in frames; 0: none [default: {}]",
                aug.time_mask
            ),
        ),
        (
            "mixstyle",
            format!(
                "Probability of frequency-MixStyle per batch (Beta({}, {})); 0: none [default: {}]",
                aug.mixstyle_alpha, aug.mixstyle_alpha, aug.mixstyle_p
            ),
        ),
    ];
    texts
        .into_iter()
        .fold(cmd, |cmd, (arg, text)| cmd.mut_arg(arg, |a| a.help(text)))
}

fn validation_name(v: Validation) -> &'static str {
    match v {
        Validation::Auto => "auto",
        Validation::Split => "split",
        Validation::None => "none",
    }
}

/// The run config these flags describe over `--config` or the defaults (the merging itself is
/// the library's, [`Overrides::build`]); `seed` is `asc train`'s own flag.
pub fn build_config(
    a: &ExperimentArgs,
    norm: &str,
    seed: Option<u64>,
) -> anyhow::Result<TrainConfig> {
    let base = ConfigBase {
        data: a.data.clone(),
        model: a.model.clone(),
        norm: norm.to_string(),
        file: a.config.clone(),
        cache: a.cache.clone(),
    };
    let overrides = Overrides {
        epochs: a.epochs,
        batch_size: a.batch_size,
        fold: a.fold,
        train_list: a.train_list.clone(),
        lr: a.lr,
        weight_decay: a.weight_decay,
        warmup_steps: a.warmup_steps,
        schedule: a.schedule.clone(),
        preset: a.preset.clone(),
        crop_frames: a.crop_frames,
        class_balanced: a.class_balanced.then_some(true),
        sync_bn: a.sync_bn.then_some(true),
        validation: a.validation.as_deref().map(Validation::parse).transpose()?,
        validation_fraction: a.validation_fraction,
        input_norm: a.input_norm.as_deref().map(InputNorm::parse).transpose()?,
        mixup_alpha: a.mixup,
        freq_mask: a.freq_mask,
        time_mask: a.time_mask,
        mixstyle_p: a.mixstyle,
        no_augment: a.no_augment,
        augment: a.augment,
        skip_bad: a.skip_bad.then_some(true),
        seed,
        dropout: a.dropout,
        teacher_logits: a.teacher_logits.clone(),
        kd_lambda: a.kd_lambda,
        kd_temperature: a.kd_temperature,
        dir: a.dir.clone(),
        dir_probability: a.dir_p,
        dir_devices: a.dir_devices.clone(),
        devices: a.devices.clone(),
    };
    Ok(overrides.build(&base)?)
}
