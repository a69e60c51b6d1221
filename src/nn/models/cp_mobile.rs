//! `cp-mobile`: the simplified CP-Mobile of the DCASE 2024/2025 task 1 baseline (`docs/models.md`):
//! a two-conv stem, three stages of inverted-residual blocks with depthwise 3×3 convolutions and
//! asymmetric strides, and a 1×1 classifier conv followed by a norm and global average pooling.

use super::{LayerShape, Model, ModelConfig, ModelEntry, NormFactory};
use crate::nn::layers::{emit_avg_pool, emit_global_avg_pool, global_avg_pool, Conv};
use crate::nn::norm::Norm;
use crate::nn::ops::{self, Activation};
use crate::onnx::graph::OnnxGraph;
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

/// The registry entry; no dropout.
pub const ENTRY: ModelEntry = ModelEntry::new::<CpMobileOptions>("cp-mobile", build, 0.0);

fn build(config: &ModelConfig, vb: VarBuilder, norm: &NormFactory) -> Result<Box<dyn Model>> {
    Ok(Box::new(CpMobile::new(config, vb, norm)?))
}

/// `cp-mobile`'s settings (`model.cp-mobile`); the defaults are the DCASE 2024/2025 baseline
/// (`docs/models.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CpMobileOptions {
    /// Channels after the stem (rounded to a multiple of 8; the stem's first conv has a quarter).
    pub base_channels: usize,
    /// Each stage is this many times wider than the one before (rounded to a multiple of 8).
    pub channel_multiplier: f64,
    /// A block's 1×1 expansion: its input channels times this (rounded to a multiple of 8).
    pub expansion_rate: f64,
    /// Inverted-residual blocks in each stage.
    pub blocks_per_stage: Vec<usize>,
    /// Each block's depthwise stride (frequency, time), blocks numbered across stages; as many
    /// as there are blocks.
    pub strides: Vec<[usize; 2]>,
}

impl Default for CpMobileOptions {
    /// The baseline: blocks 3 and 4 carry the asymmetric strides.
    fn default() -> Self {
        Self {
            base_channels: 32,
            channel_multiplier: 1.8,
            expansion_rate: 2.1,
            blocks_per_stage: vec![3, 2, 1],
            strides: vec![[1, 1], [1, 1], [1, 2], [2, 1], [1, 1], [1, 1]],
        }
    }
}

impl crate::nn::options::Options for CpMobileOptions {
    const KEY: &'static str = "cp-mobile";
}

impl CpMobileOptions {
    /// Refuses settings that cannot make a network, naming the setting.
    fn check(&self) -> Result<()> {
        let blocks: usize = self.blocks_per_stage.iter().sum();
        if self.strides.len() != blocks {
            candle_core::bail!(
                "model.cp-mobile: {} strides for {blocks} blocks (blocks_per_stage {:?})",
                self.strides.len(),
                self.blocks_per_stage
            );
        }
        if self.strides.iter().flatten().any(|&s| s == 0) {
            candle_core::bail!("model.cp-mobile: strides must be at least 1");
        }
        if self.base_channels == 0
            || !(self.channel_multiplier > 0.0 && self.expansion_rate > 0.0)
        {
            candle_core::bail!(
                "model.cp-mobile: base_channels, channel_multiplier and expansion_rate must be positive"
            );
        }
        Ok(())
    }
}

/// torchvision's `_make_divisible`: round to the nearest multiple of 8, never dropping below 90 %.
fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let mut new_v = (d.max(((v + d / 2.0) / d).floor() * d)) as usize;
    if (new_v as f64) < 0.9 * v {
        new_v += divisor;
    }
    new_v
}

/// What follows a conv → norm pair.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tail {
    /// A ReLU.
    Relu,
    /// Nothing (the linear projection of a block).
    Linear,
    /// Nothing here; the caller pools the output globally (the classifier head), so the norm
    /// comes from [`NormFactory::build_before_gap`].
    Pooled,
}

/// conv → norm → optional ReLU (torchvision's `Conv2dNormActivation`).
struct ConvNorm {
    /// Its variables' prefix: `<name>.conv.weight`, `<name>.norm.…`.
    name: String,
    conv: Conv,
    norm: Box<dyn Norm>,
    relu: bool,
}

impl ConvNorm {
    #[allow(clippy::too_many_arguments)]
    fn new(
        vb: &VarBuilder,
        norm: &NormFactory,
        name: &str,
        in_c: usize,
        out_c: usize,
        k: usize,
        stride: (usize, usize),
        depthwise: bool,
        tail: Tail,
    ) -> Result<Self> {
        let prefix = format!("{name}.norm");
        let norm = match tail {
            Tail::Pooled => norm.build_before_gap(&prefix, out_c)?,
            Tail::Relu | Tail::Linear => norm.build(&prefix, out_c)?,
        };
        Ok(Self {
            name: name.to_string(),
            conv: Conv::new(
                vb.pp(format!("{name}.conv")),
                in_c,
                out_c,
                (k, k),
                stride,
                depthwise,
            )?,
            norm,
            relu: tail == Tail::Relu,
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let act = if self.relu {
            Activation::Relu
        } else {
            Activation::Identity
        };
        self.norm.forward_act_t(&self.conv.forward(x)?, train, act)
    }

    fn emit_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String> {
        let y = self.conv.emit_onnx(g, x, self.norm.as_ref())?;
        Ok(if self.relu {
            g.add_node("Relu", &[&y], vec![])
        } else {
            y
        })
    }

    /// Output size and the two layers' shapes for an input of `hw`.
    fn shapes(&self, hw: (usize, usize)) -> ((usize, usize), [LayerShape; 2]) {
        let norm = format!("{}.norm", self.name);
        self.conv
            .shapes(&format!("{}.conv", self.name), (&norm, self.norm.as_ref()), hw)
    }
}

/// Inverted residual block: 1×1 expand, 3×3 depthwise (with the stride), 1×1 project; the
/// shortcut (identity, or a 3×3 average pool with the block's stride) when channels match.
struct Block {
    layers: [ConvNorm; 3],
    stride: (usize, usize),
    shortcut: bool,
}

impl Block {
    fn new(
        vb: &VarBuilder,
        norm: &NormFactory,
        name: &str,
        in_c: usize,
        out_c: usize,
        stride: (usize, usize),
        expansion_rate: f64,
    ) -> Result<Self> {
        let exp = make_divisible(in_c as f64 * expansion_rate, 8);
        Ok(Self {
            layers: [
                ConvNorm::new(
                    vb,
                    norm,
                    &format!("{name}.expand"),
                    in_c,
                    exp,
                    1,
                    (1, 1),
                    false,
                    Tail::Relu,
                )?,
                ConvNorm::new(
                    vb,
                    norm,
                    &format!("{name}.depth"),
                    exp,
                    exp,
                    3,
                    stride,
                    true,
                    Tail::Relu,
                )?,
                ConvNorm::new(
                    vb,
                    norm,
                    &format!("{name}.project"),
                    exp,
                    out_c,
                    1,
                    (1, 1),
                    false,
                    Tail::Linear,
                )?,
            ],
            stride,
            shortcut: in_c == out_c,
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut y = x.clone();
        for layer in &self.layers {
            y = layer.forward_t(&y, train)?;
        }
        if self.shortcut {
            let skip = if self.stride == (1, 1) {
                x.clone()
            } else {
                // PyTorch's AvgPool2d default counts the padded cells.
                ops::avg_pool2d(x, (3, 3), self.stride, (1, 1), true)?
            };
            y = (y + skip)?;
        }
        ops::relu(&y)
    }

    fn emit_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String> {
        let mut y = x.to_string();
        for layer in &self.layers {
            y = layer.emit_onnx(g, &y)?;
        }
        if self.shortcut {
            let skip = if self.stride == (1, 1) {
                x.to_string()
            } else {
                emit_avg_pool(g, x, (3, 3), self.stride, (1, 1), true)
            };
            y = g.add_node("Add", &[&y, &skip], vec![]);
        }
        Ok(g.add_node("Relu", &[&y], vec![]))
    }
}

pub struct CpMobile {
    stem: [ConvNorm; 2],
    blocks: Vec<Block>,
    head: ConvNorm,
}

impl CpMobile {
    pub fn new(config: &ModelConfig, vb: VarBuilder, norm: &NormFactory) -> Result<Self> {
        let opts: CpMobileOptions = config.options();
        opts.check()?;
        let base = make_divisible(opts.base_channels as f64, 8);
        let stem = [
            ConvNorm::new(
                &vb,
                norm,
                "stem0",
                config.in_channels,
                base / 4,
                3,
                (2, 2),
                false,
                Tail::Relu,
            )?,
            ConvNorm::new(
                &vb,
                norm,
                "stem1",
                base / 4,
                base,
                3,
                (2, 2),
                false,
                Tail::Relu,
            )?,
        ];
        let mut blocks = Vec::new();
        let mut in_c = base;
        for (stage, &n) in opts.blocks_per_stage.iter().enumerate() {
            let width = base as f64 * opts.channel_multiplier.powi(stage as i32);
            let out_c = make_divisible(width, 8);
            for _ in 0..n {
                let [sf, st] = opts.strides[blocks.len()];
                let id = blocks.len() + 1;
                blocks.push(Block::new(
                    &vb,
                    norm,
                    &format!("b{id}"),
                    in_c,
                    out_c,
                    (sf, st),
                    opts.expansion_rate,
                )?);
                in_c = out_c;
            }
        }
        let head = ConvNorm::new(
            &vb,
            norm,
            "head",
            in_c,
            config.n_classes,
            1,
            (1, 1),
            false,
            Tail::Pooled,
        )?;
        Ok(Self { stem, blocks, head })
    }
}

impl Model for CpMobile {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut y = x.clone();
        for layer in &self.stem {
            y = layer.forward_t(&y, train)?;
        }
        for block in &self.blocks {
            y = block.forward_t(&y, train)?;
        }
        global_avg_pool(&self.head.forward_t(&y, train)?)
    }

    fn reseed(&self, _seed: u64, _first_row: usize) {}

    fn layers(&self, mut hw: (usize, usize)) -> Vec<LayerShape> {
        let conv_norms = self
            .stem
            .iter()
            .chain(self.blocks.iter().flat_map(|b| b.layers.iter()))
            .chain(std::iter::once(&self.head));
        let mut layers = Vec::new();
        for layer in conv_norms {
            let (out, shapes) = layer.shapes(hw);
            hw = out;
            layers.extend(shapes);
        }
        layers
    }

    fn emit_onnx(&self, g: &mut OnnxGraph, input: &str) -> Result<String> {
        let mut y = input.to_string();
        for layer in &self.stem {
            y = layer.emit_onnx(g, &y)?;
        }
        for block in &self.blocks {
            y = block.emit_onnx(g, &y)?;
        }
        let y = self.head.emit_onnx(g, &y)?;
        Ok(emit_global_avg_pool(g, &y))
    }
}

#[cfg(test)]
mod tests {
    use super::make_divisible;

    #[test]
    fn channel_plan_of_the_baseline() {
        assert_eq!(make_divisible(32.0, 8), 32);
        assert_eq!(make_divisible(32.0 * 1.8, 8), 56);
        assert_eq!(make_divisible(32.0 * 1.8 * 1.8, 8), 104);
        assert_eq!(make_divisible(32.0 * 2.1, 8), 64);
    }
}
