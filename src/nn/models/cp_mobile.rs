//! `cp-mobile`: the simplified CP-Mobile of the DCASE 2024/2025 task 1 baseline (`docs/models.md`):
//! a two-conv stem, three stages of inverted-residual blocks with depthwise 3×3 convolutions and
//! asymmetric strides, and a 1×1 classifier conv followed by a norm and global average pooling.

use super::{Model, ModelConfig, NormFactory};
use crate::nn::layers::{emit_avg_pool, emit_global_avg_pool, global_avg_pool, Conv};
use crate::nn::norm::Norm;
use crate::nn::ops::{self, Activation};
use crate::onnx::graph::OnnxGraph;
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

const BASE_CHANNELS: usize = 32;
const CHANNEL_MULTIPLIER: f64 = 1.8;
const EXPANSION_RATE: f64 = 2.1;
const BLOCKS_PER_STAGE: [usize; 3] = [3, 2, 1];

/// Blocks are numbered from 1 across stages; b3 and b4 carry the asymmetric strides.
fn block_stride(block_id: usize) -> (usize, usize) {
    match block_id {
        3 => (1, 2),
        4 => (2, 1),
        _ => (1, 1),
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

    /// Output size and MACs for an input of `hw`.
    fn cost(&self, hw: (usize, usize)) -> ((usize, usize), u64) {
        let out = self.conv.out_hw(hw);
        let channels = self.conv.weight.dims()[0] as u64;
        (out, self.conv.macs(out) + 2 * channels)
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
    ) -> Result<Self> {
        let exp = make_divisible(in_c as f64 * EXPANSION_RATE, 8);
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
        let base = make_divisible(BASE_CHANNELS as f64, 8);
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
        for (stage, &n) in BLOCKS_PER_STAGE.iter().enumerate() {
            let out_c = make_divisible(base as f64 * CHANNEL_MULTIPLIER.powi(stage as i32), 8);
            for _ in 0..n {
                let id = blocks.len() + 1;
                blocks.push(Block::new(
                    &vb,
                    norm,
                    &format!("b{id}"),
                    in_c,
                    out_c,
                    block_stride(id),
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

    fn reseed(&self, _seed: u64) {}

    fn macs(&self, hw: (usize, usize)) -> u64 {
        let mut total = 0;
        let mut hw = hw;
        let layers = self
            .stem
            .iter()
            .chain(self.blocks.iter().flat_map(|b| b.layers.iter()))
            .chain(std::iter::once(&self.head));
        for layer in layers {
            let (out, macs) = layer.cost(hw);
            hw = out;
            total += macs;
        }
        total
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
