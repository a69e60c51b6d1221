//! Small layers the architectures share: convolution (through our ops), linear, dropout with a
//! reproducible mask, and counting of parameters and MACs (`dcase.md`, torchinfo convention).

use super::ops;
use crate::dataset::rng::mix64 as mix;
use crate::export::graph::{attr_int, attr_ints, OnnxGraph};
use candle_core::{Result, Tensor, D};
use candle_nn::{Init, VarBuilder};
use std::sync::atomic::{AtomicU64, Ordering};

/// A convolution without bias (a norm always follows), OIHW weight, Kaiming-normal fan-out init
/// (`models.md`): std = sqrt(2 / (out_channels · kh · kw)), PyTorch's fan-out for any `groups`.
#[derive(Debug)]
pub struct Conv {
    pub weight: Tensor,
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub depthwise: bool,
}

impl Conv {
    pub fn new(
        vb: VarBuilder,
        in_c: usize,
        out_c: usize,
        kernel: (usize, usize),
        stride: (usize, usize),
        depthwise: bool,
    ) -> Result<Self> {
        let per_group_in = if depthwise { 1 } else { in_c };
        if depthwise && in_c != out_c {
            candle_core::bail!("depthwise conv needs in == out channels, got {in_c} -> {out_c}");
        }
        let fan_out = (out_c * kernel.0 * kernel.1) as f64;
        let weight = vb.get_with_hints(
            (out_c, per_group_in, kernel.0, kernel.1),
            "weight",
            Init::Randn {
                mean: 0.0,
                stdev: (2.0 / fan_out).sqrt(),
            },
        )?;
        Ok(Self {
            weight,
            stride,
            padding: (kernel.0 / 2, kernel.1 / 2),
            depthwise,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.depthwise {
            ops::depthwise_conv2d(x, &self.weight, self.stride, self.padding)
        } else {
            ops::conv2d(x, &self.weight, self.stride, self.padding)
        }
    }

    /// Output spatial size for an input of (h, w).
    pub fn out_hw(&self, (h, w): (usize, usize)) -> (usize, usize) {
        let k = self.weight.dims();
        (
            (h + 2 * self.padding.0 - k[2]) / self.stride.0 + 1,
            (w + 2 * self.padding.1 - k[3]) / self.stride.1 + 1,
        )
    }

    /// ONNX `Conv` (no bias) on the NCHW value `x`; depthwise as `group = C`.
    pub fn emit_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String> {
        let dims: Vec<i64> = self.weight.dims().iter().map(|&d| d as i64).collect();
        let w = g.add_tensor("conv_w", &self.weight, &dims)?;
        let (ph, pw) = (self.padding.0 as i64, self.padding.1 as i64);
        let group = if self.depthwise { dims[0] } else { 1 };
        Ok(g.add_node(
            "Conv",
            &[x, &w],
            vec![
                attr_ints("kernel_shape", &dims[2..]),
                attr_ints("strides", &[self.stride.0 as i64, self.stride.1 as i64]),
                attr_ints("pads", &[ph, pw, ph, pw]),
                attr_int("group", group),
            ],
        ))
    }

    /// Multiply-accumulates for an output of (h, w): (Cin/groups)·Cout·kh·kw·Hout·Wout.
    pub fn macs(&self, out_hw: (usize, usize)) -> u64 {
        self.weight.elem_count() as u64 * (out_hw.0 * out_hw.1) as u64
    }
}

/// A fully connected layer with PyTorch's default init (uniform ±1/sqrt(fan_in) for both).
#[derive(Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Tensor,
}

impl Linear {
    pub fn new(vb: VarBuilder, in_f: usize, out_f: usize) -> Result<Self> {
        let bound = 1.0 / (in_f as f64).sqrt();
        let init = Init::Uniform {
            lo: -bound,
            up: bound,
        };
        Ok(Self {
            weight: vb.get_with_hints((out_f, in_f), "weight", init)?,
            bias: vb.get_with_hints(out_f, "bias", init)?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.matmul(&self.weight.t()?)?.broadcast_add(&self.bias)
    }

    /// ONNX `Gemm` (`transB = 1` keeps the weight in PyTorch's (out, in) layout) on an (N, in)
    /// value.
    pub fn emit_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String> {
        let (out_f, in_f) = self.weight.dims2()?;
        let w = g.add_tensor("fc_w", &self.weight, &[out_f as i64, in_f as i64])?;
        let b = g.add_tensor("fc_b", &self.bias, &[out_f as i64])?;
        Ok(g.add_node("Gemm", &[x, &w, &b], vec![attr_int("transB", 1)]))
    }

    /// torchinfo's count for a linear layer at batch 1: its weight and bias elements.
    pub fn macs(&self) -> u64 {
        (self.weight.elem_count() + self.bias.elem_count()) as u64
    }
}

/// Dropout whose masks come from a seed the trainer sets each step, so a run — and a resumed
/// run — draws the same masks (candle's own dropout uses an unseeded thread RNG).
#[derive(Debug)]
pub struct Dropout {
    p: f32,
    id: u64,
    seed: AtomicU64,
    calls: AtomicU64,
}

impl Dropout {
    pub fn new(p: f32, id: u64) -> Self {
        Self {
            p,
            id,
            seed: AtomicU64::new(0),
            calls: AtomicU64::new(0),
        }
    }

    /// Sets the mask seed for the next training forward passes.
    pub fn reseed(&self, seed: u64) {
        self.seed.store(seed, Ordering::Relaxed);
        self.calls.store(0, Ordering::Relaxed);
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if !train || self.p == 0.0 {
            return Ok(x.clone());
        }
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        let base = mix(self.seed.load(Ordering::Relaxed) ^ mix(self.id) ^ mix(call << 32));
        let keep = 1.0 / (1.0 - self.p);
        let threshold = (self.p as f64 * (1u64 << 53) as f64) as u64;
        let mask: Vec<f32> = (0..x.elem_count() as u64)
            .map(|i| {
                if (mix(base ^ i) >> 11) < threshold {
                    0.0
                } else {
                    keep
                }
            })
            .collect();
        let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
        x.mul(&mask)
    }
}

/// Mean over the spatial axes (H, W) of an NCHW tensor, keeping N and C: (N, C).
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    x.flatten_from(2)?.mean(D::Minus1)
}

/// [`global_avg_pool`] in ONNX: `GlobalAveragePool` then `Flatten` to (N, C).
pub fn emit_global_avg_pool(g: &mut OnnxGraph, x: &str) -> String {
    let pooled = g.add_node("GlobalAveragePool", &[x], vec![]);
    g.add_node("Flatten", &[&pooled], vec![attr_int("axis", 1)])
}

/// [`ops::max_pool2d`] in ONNX (floor mode, no dilation, as the op).
pub fn emit_max_pool(
    g: &mut OnnxGraph,
    x: &str,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
) -> String {
    g.add_node("MaxPool", &[x], pool_attrs(kernel, stride, padding))
}

/// [`ops::avg_pool2d`] in ONNX; `count_include_pad` as PyTorch's flag of the same name.
pub fn emit_avg_pool(
    g: &mut OnnxGraph,
    x: &str,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    count_include_pad: bool,
) -> String {
    let mut attrs = pool_attrs(kernel, stride, padding);
    attrs.push(attr_int("count_include_pad", count_include_pad as i64));
    g.add_node("AveragePool", &[x], attrs)
}

fn pool_attrs(
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
) -> Vec<tract_onnx::pb::AttributeProto> {
    let (ph, pw) = (padding.0 as i64, padding.1 as i64);
    vec![
        attr_ints("kernel_shape", &[kernel.0 as i64, kernel.1 as i64]),
        attr_ints("strides", &[stride.0 as i64, stride.1 as i64]),
        attr_ints("pads", &[ph, pw, ph, pw]),
    ]
}

/// Counts the elements of trainable tensors.
pub fn count_params(vars: &[candle_core::Var]) -> usize {
    vars.iter().map(|v| v.elem_count()).sum()
}
