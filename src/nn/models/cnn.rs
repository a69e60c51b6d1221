//! `cnn`: the DCASE 2021/2022 task 1 baseline CNN (`docs/models.md`), with global average pooling
//! in place of the fixed (4, 100) pool so that it serves any clip length.

use super::{Model, ModelConfig, NormFactory};
use crate::nn::layers::{
    emit_global_avg_pool, emit_max_pool, global_avg_pool, Conv, Dropout, Linear,
};
use crate::nn::norm::Norm;
use crate::nn::ops::{self, Activation};
use crate::onnx::graph::OnnxGraph;
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

pub struct Cnn {
    convs: Vec<(Conv, Box<dyn Norm>)>,
    drop1: Dropout,
    drop2: Dropout,
    drop3: Dropout,
    fc1: Linear,
    fc2: Linear,
}

const CHANNELS: [usize; 3] = [16, 16, 32];

impl Cnn {
    pub fn new(config: &ModelConfig, vb: VarBuilder, norm: &NormFactory) -> Result<Self> {
        let mut convs = Vec::new();
        let mut in_c = config.in_channels;
        for (i, &c) in CHANNELS.iter().enumerate() {
            let conv = Conv::new(vb.pp(format!("conv{i}")), in_c, c, (7, 7), (1, 1), false)?;
            convs.push((conv, norm.build(&format!("norm{i}"), c)?));
            in_c = c;
        }
        Ok(Self {
            convs,
            drop1: Dropout::new(config.dropout, 1),
            drop2: Dropout::new(config.dropout, 2),
            drop3: Dropout::new(config.dropout, 3),
            fc1: Linear::new(vb.pp("fc1"), in_c, 100)?,
            fc2: Linear::new(vb.pp("fc2"), 100, config.n_classes)?,
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

    fn reseed(&self, seed: u64) {
        for d in [&self.drop1, &self.drop2, &self.drop3] {
            d.reseed(seed);
        }
    }

    fn macs(&self, (h, w): (usize, usize)) -> u64 {
        let mut total = 0;
        let mut hw = (h, w);
        for (i, (conv, _)) in self.convs.iter().enumerate() {
            hw = conv.out_hw(hw);
            total += conv.macs(hw) + 2 * CHANNELS[i] as u64;
            if i == 1 {
                hw = (hw.0 / 5, hw.1 / 5);
            }
        }
        total + self.fc1.macs() + self.fc2.macs()
    }

    fn emit_onnx(&self, g: &mut OnnxGraph, input: &str) -> Result<String> {
        let mut x = input.to_string();
        for (i, (conv, norm)) in self.convs.iter().enumerate() {
            x = conv.emit_onnx(g, &x, norm.as_ref())?;
            if i == 1 {
                // max(relu(v)) = relu(max(v)): pooling first lets ReLU run on 1/25 of the data
                // (docs/architecture.md, "tract on CPU").
                x = emit_max_pool(g, &x, (5, 5), (5, 5), (0, 0));
            }
            x = g.add_node("Relu", &[&x], vec![]);
        }
        let x = emit_global_avg_pool(g, &x);
        let x = self.fc1.emit_onnx(g, &x)?;
        let x = g.add_node("Relu", &[&x], vec![]);
        self.fc2.emit_onnx(g, &x)
    }
}
