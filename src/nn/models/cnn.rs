//! `cnn`: the DCASE 2021/2022 task 1 baseline CNN (`docs/models.md`), with global average pooling
//! in place of the fixed (4, 100) pool so that it serves any clip length.

use super::{LayerShape, Model, ModelConfig, ModelEntry, NormFactory};
use crate::nn::layers::{
    emit_global_avg_pool, emit_max_pool, global_avg_pool, Conv, Dropout, Linear, Padding,
};
use crate::nn::norm::Norm;
use crate::nn::ops::{self, Activation};
use crate::onnx::graph::OnnxGraph;
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

/// The registry entry; the baseline's dropout is 0.3.
pub const ENTRY: ModelEntry = ModelEntry::new::<CnnOptions>("cnn", build, 0.3);

fn build(config: &ModelConfig, vb: VarBuilder, norm: &NormFactory) -> Result<Box<dyn Model>> {
    Ok(Box::new(Cnn::new(config, vb, norm)?))
}

/// `cnn`'s settings (`model.cnn`); the defaults are the DCASE baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CnnOptions {
    /// Output channels of the three convolutions.
    pub channels: [usize; 3],
    /// Their (square, odd: "same" padding) kernel size.
    pub kernel: usize,
    /// Units of the hidden fully connected layer.
    pub hidden: usize,
}

impl Default for CnnOptions {
    fn default() -> Self {
        Self {
            channels: [16, 16, 32],
            kernel: 7,
            hidden: 100,
        }
    }
}

impl crate::nn::options::Options for CnnOptions {
    const KEY: &'static str = "cnn";
}

/// The variables' prefix of the `i`-th conv and of the norm after it.
fn conv_name(i: usize) -> String {
    format!("conv{i}")
}

fn norm_name(i: usize) -> String {
    format!("norm{i}")
}

pub struct Cnn {
    convs: Vec<(Conv, Box<dyn Norm>)>,
    drop1: Dropout,
    drop2: Dropout,
    drop3: Dropout,
    fc1: Linear,
    fc2: Linear,
}

impl Cnn {
    pub fn new(config: &ModelConfig, vb: VarBuilder, norm: &NormFactory) -> Result<Self> {
        let opts: CnnOptions = config.options();
        if opts.kernel.is_multiple_of(2) || opts.channels.contains(&0) || opts.hidden == 0 {
            candle_core::bail!(
                "model.cnn: the kernel size must be odd, channels and hidden positive: {opts:?}"
            );
        }
        let k = opts.kernel;
        let mut convs = Vec::new();
        let mut in_c = config.in_channels;
        for (i, &c) in opts.channels.iter().enumerate() {
            let conv = Conv::new(vb.pp(conv_name(i)), in_c, c, (k, k), (1, 1), false)?;
            convs.push((conv, norm.build(&norm_name(i), c)?));
            in_c = c;
        }
        Ok(Self {
            convs,
            drop1: Dropout::new(config.dropout, 1),
            drop2: Dropout::new(config.dropout, 2),
            drop3: Dropout::new(config.dropout, 3),
            fc1: Linear::new(vb.pp("fc1"), in_c, opts.hidden)?,
            fc2: Linear::new(vb.pp("fc2"), opts.hidden, config.n_classes)?,
        })
    }

    fn block(&self, i: usize, x: &Tensor, train: bool) -> Result<Tensor> {
        let (conv, norm) = &self.convs[i];
        norm.forward_act_t(&conv.forward(x)?, train, Activation::Relu)
    }
}

impl Model for Cnn {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let x = self.block(0, x, train)?;
        let x = self.block(1, &x, train)?;
        let x = ops::max_pool2d(&x, (5, 5), (5, 5), (0, 0))?;
        let x = self.drop1.forward_t(&x, train)?;
        let x = self.block(2, &x, train)?;
        let x = global_avg_pool(&x)?;
        let x = self.drop2.forward_t(&x, train)?;
        let x = ops::relu(&self.fc1.forward(&x)?)?;
        let x = self.drop3.forward_t(&x, train)?;
        self.fc2.forward(&x)
    }

    fn reseed(&self, seed: u64, first_row: usize) {
        for d in [&self.drop1, &self.drop2, &self.drop3] {
            d.reseed(seed, first_row);
        }
    }

    fn layers(&self, mut hw: (usize, usize)) -> Vec<LayerShape> {
        let mut layers = Vec::new();
        for (i, (conv, norm)) in self.convs.iter().enumerate() {
            let (out, shapes) = conv.shapes(&conv_name(i), (&norm_name(i), norm.as_ref()), hw);
            layers.extend(shapes);
            hw = if i == 1 { (out.0 / 5, out.1 / 5) } else { out };
        }
        layers.push(self.fc1.shape("fc1"));
        layers.push(self.fc2.shape("fc2"));
        layers
    }

    fn emit_onnx(&self, g: &mut OnnxGraph, input: &str) -> Result<String> {
        let mut x = input.to_string();
        for (i, (conv, norm)) in self.convs.iter().enumerate() {
            x = conv.emit_onnx(g, &x, norm.as_ref())?;
            if i == 1 {
                // max(relu(v)) = relu(max(v)): pooling first lets ReLU run on 1/25 of the data
                // (docs/architecture.md, "tract on CPU").
                x = emit_max_pool(g, &x, (5, 5), (5, 5), Padding::Symmetric(0, 0));
            }
            x = g.add_node("Relu", &[&x], vec![]);
        }
        let x = emit_global_avg_pool(g, &x);
        let x = self.fc1.emit_onnx(g, &x)?;
        let x = g.add_node("Relu", &[&x], vec![]);
        self.fc2.emit_onnx(g, &x)
    }
}
