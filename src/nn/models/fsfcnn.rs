//! `fsfcnn`: the frequency-preserving variant of the FCNN that the L2BN paper reports next to it
//! (its "FS-FCNN", `docs/norms.md` §3.5). Reference code: `Ingrid725/ASC_L2BN`,
//! `fsfcnn/fsfcnn_att.py` with the widths of `fsfcnn/train_fsfcnn.py` (Keras).
//!
//! The same input stack, head and channel attention as [`super::fcnn`], with four stages whose
//! strides and pools subsample time more than frequency: the first convolution strides over
//! time only, the pools of stage 3 too, and every convolution and pool pads as Keras's
//! `padding='same'` (asymmetric where a stride is 2: [`Padding::Same`], ONNX `SAME_UPPER`).
//! The deviations from the reference are [`super::fcnn`]'s (`docs/models.md`).

use super::fcnn::{build, conv, pool, Plan, Settings, Step, Variant};
use super::ModelEntry;
use serde::{Deserialize, Serialize};

#[cfg(doc)]
use crate::nn::layers::Padding;

/// The registry entry; dropout 0.5 after both convolutions of the last stage.
pub const ENTRY: ModelEntry =
    ModelEntry::new::<FsfcnnOptions>("fsfcnn", build::<FsfcnnOptions>, 0.5);

/// `fsfcnn`'s settings (`model.fsfcnn`); the defaults are the L2BN paper's training script's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FsfcnnOptions {
    /// Output channels of the four stages (2, 2, 4 and 2 convolutions): the training script's
    /// `num_filters=[48, 96, 512, 768]` (here not multiplied by the input channels).
    pub channels: [usize; 4],
    /// Stack Δ and ΔΔ (over time) onto the log-mel, as the reference does.
    pub deltas: bool,
    /// The channel attention's reduction: its hidden layer has classes / ratio units.
    pub attention_ratio: usize,
}

impl Default for FsfcnnOptions {
    fn default() -> Self {
        Self {
            channels: [48, 96, 512, 768],
            deltas: true,
            attention_ratio: 2,
        }
    }
}

impl crate::nn::options::Options for FsfcnnOptions {
    const KEY: &'static str = "fsfcnn";
}

impl Variant for FsfcnnOptions {
    const PLAN: Plan = PLAN;
    fn settings(&self) -> Settings<'_> {
        Settings {
            channels: &self.channels,
            deltas: self.deltas,
            attention_ratio: self.attention_ratio,
        }
    }
}

/// `conv_layer1` … `conv_layer4` of `fsfcnn_att.py`; strides are (frequency, time).
const PLAN: Plan = Plan {
    name: "fsfcnn",
    same: true,
    steps: &[
        conv(0, 5, (1, 2)),
        conv(0, 3, (1, 1)),
        pool(3, (2, 2)),
        conv(1, 3, (1, 1)),
        conv(1, 3, (1, 1)),
        pool(3, (2, 2)),
        conv(2, 3, (1, 1)),
        conv(2, 3, (1, 1)),
        pool(3, (1, 2)),
        conv(2, 3, (1, 1)),
        conv(2, 3, (1, 1)),
        pool(3, (1, 2)),
        conv(3, 3, (1, 1)),
        Step::Dropout,
        conv(3, 3, (1, 1)),
        Step::Dropout,
    ],
};
