//! Small layers the architectures share: convolution (through our ops), linear, dropout with a
//! reproducible mask, and the shapes `crate::complexity` counts parameters and MACs over.

use super::norm::Norm;
use super::ops;
use crate::dataset::rng::mix64 as mix;
use crate::onnx::graph::{attr_int, attr_ints, attr_string, Attribute, OnnxGraph};
use candle_core::{DType, Result, Tensor, D};
use candle_nn::{Init, VarBuilder};
use std::sync::atomic::{AtomicU64, Ordering};

/// A layer that holds parameters, as `Model::layers` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerShape {
    /// The prefix of its variables' names (`b1.depth.conv`): its parameters are the variables
    /// named `<name>.…`.
    pub name: String,
    /// `Conv2d`, `Linear`, or the norm's registry name (`bn`, `ubn`, ...).
    pub kind: &'static str,
    /// Output channels, height and width (1 × 1 for a linear layer).
    pub out: [usize; 3],
    /// How many times one forward pass runs it (2 for `fcnn`'s attention MLP, shared by the
    /// average and the maximum): its MACs count once per run, its parameters once.
    pub calls: usize,
}

/// A convolution without bias (a norm always follows), OIHW weight, Kaiming-normal fan-out init
/// (`docs/models.md`): std = sqrt(2 / (out_channels · kh · kw)), PyTorch's fan-out for any
/// `groups`.
#[derive(Debug)]
pub struct Conv {
    pub weight: Tensor,
    pub stride: (usize, usize),
    pub padding: Padding,
    pub depthwise: bool,
}

/// How a convolution or pool pads the (H, W) of its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// This many cells before and after, on each axis (PyTorch's `padding`).
    Symmetric(usize, usize),
    /// Keras's `padding='same'` (the fsFCNN's): out = ⌈in / stride⌉, the padding that needs
    /// split as evenly as it goes, the odd cell at the end (ONNX `auto_pad = SAME_UPPER`). With
    /// a stride above 1 it depends on the input's size, so it is computed per call.
    Same,
}

impl Padding {
    /// (before, after) on one axis of `size` cells for a window of `kernel` at `stride`.
    pub fn pads(self, axis: usize, size: usize, kernel: usize, stride: usize) -> (usize, usize) {
        match self {
            Padding::Symmetric(h, w) => {
                let p = if axis == 0 { h } else { w };
                (p, p)
            }
            Padding::Same => {
                let total =
                    ((size.div_ceil(stride).max(1) - 1) * stride + kernel).saturating_sub(size);
                (total / 2, total - total / 2)
            }
        }
    }

    /// The output's (H, W) for an input of `hw` (floor division, as the ops).
    pub fn out_hw(
        self,
        hw: (usize, usize),
        kernel: (usize, usize),
        stride: (usize, usize),
    ) -> (usize, usize) {
        let axis = |a: usize, size: usize, k: usize, s: usize| {
            let (before, after) = self.pads(a, size, k, s);
            (size + before + after).saturating_sub(k) / s + 1
        };
        (
            axis(0, hw.0, kernel.0, stride.0),
            axis(1, hw.1, kernel.1, stride.1),
        )
    }

    /// `x` with the padding's asymmetric part (the odd cell `Same` puts at the end of H and W)
    /// appended as cells of `fill`, and the symmetric part, which the op then pads itself.
    /// The ops pad symmetrically only; one extra row or column is cheaper than teaching each
    /// kernel (dense, depthwise, pool, forward and backward) asymmetric padding.
    pub fn split(
        self,
        x: &Tensor,
        kernel: (usize, usize),
        stride: (usize, usize),
        fill: f64,
    ) -> Result<(Tensor, (usize, usize))> {
        let (_, _, h, w) = x.dims4()?;
        let (bh, ah) = self.pads(0, h, kernel.0, stride.0);
        let (bw, aw) = self.pads(1, w, kernel.1, stride.1);
        let mut x = x.clone();
        for (dim, extra) in [(2, ah - bh), (3, aw - bw)] {
            if extra > 0 {
                let mut shape = x.dims().to_vec();
                shape[dim] = extra;
                let tail = Tensor::full(fill, shape, x.device())?.to_dtype(x.dtype())?;
                x = Tensor::cat(&[&x, &tail], dim)?;
            }
        }
        Ok((x, (bh, bw)))
    }
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
            padding: Padding::Symmetric(kernel.0 / 2, kernel.1 / 2),
            depthwise,
        })
    }

    /// The same convolution with `padding` instead of the symmetric kernel / 2.
    pub fn with_padding(self, padding: Padding) -> Self {
        Self { padding, ..self }
    }

    fn kernel(&self) -> (usize, usize) {
        let k = self.weight.dims();
        (k[2], k[3])
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (x, pads) = self.padding.split(x, self.kernel(), self.stride, 0.0)?;
        if self.depthwise {
            ops::depthwise_conv2d(&x, &self.weight, self.stride, pads)
        } else {
            ops::conv2d(&x, &self.weight, self.stride, pads)
        }
    }

    /// Output spatial size for an input of (h, w).
    pub fn out_hw(&self, hw: (usize, usize)) -> (usize, usize) {
        self.padding.out_hw(hw, self.kernel(), self.stride)
    }

    /// ONNX `Conv` on the NCHW value `x` (depthwise as `group = C`) followed by `norm` in eval
    /// mode. A norm that is a per-channel affine there ([`Norm::eval_affine`], BN) is folded
    /// in: each output channel's weights scaled, the shift as the bias, one `Conv` node for
    /// the pair (issue 9). Other norms follow the convolution as their own nodes.
    pub fn emit_onnx(&self, g: &mut OnnxGraph, x: &str, norm: &dyn Norm) -> Result<String> {
        match norm.eval_affine()? {
            Some((scale, shift)) => {
                let out_c = self.weight.dim(0)?;
                let weight = self
                    .weight
                    .to_dtype(DType::F32)?
                    .broadcast_mul(&scale.to_dtype(DType::F32)?.reshape((out_c, 1, 1, 1))?)?;
                self.emit_conv(g, x, &weight, Some(&shift))
            }
            None => {
                let y = self.emit_conv(g, x, &self.weight, None)?;
                norm.emit_onnx(g, &y)
            }
        }
    }

    fn emit_conv(
        &self,
        g: &mut OnnxGraph,
        x: &str,
        weight: &Tensor,
        bias: Option<&Tensor>,
    ) -> Result<String> {
        let dims: Vec<i64> = weight.dims().iter().map(|&d| d as i64).collect();
        let mut inputs = vec![x.to_string(), g.add_tensor("conv_w", weight, &dims)?];
        if let Some(b) = bias {
            inputs.push(g.add_tensor("conv_b", b, &dims[..1])?);
        }
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let kernel = (dims[2] as usize, dims[3] as usize);
        let mut attrs = window_attrs(kernel, self.stride, self.padding);
        attrs.push(attr_int("group", if self.depthwise { dims[0] } else { 1 }));
        Ok(g.add_node("Conv", &inputs, attrs))
    }

    /// The conv named `name` (its variables' prefix) and the norm `norm` after it, for an input
    /// of `hw`; returns their output size as well.
    pub fn shapes(
        &self,
        name: &str,
        norm: (&str, &dyn Norm),
        hw: (usize, usize),
    ) -> ((usize, usize), [LayerShape; 2]) {
        let (h, w) = self.out_hw(hw);
        let out = [self.weight.dims()[0], h, w];
        let conv = LayerShape {
            name: name.to_string(),
            kind: "Conv2d",
            out,
            calls: 1,
        };
        let norm = LayerShape {
            name: norm.0.to_string(),
            kind: norm.1.name(),
            out,
            calls: 1,
        };
        ((h, w), [conv, norm])
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

    /// The layer named `name` (its variables' prefix).
    pub fn shape(&self, name: &str) -> LayerShape {
        LayerShape {
            name: name.to_string(),
            kind: "Linear",
            out: [self.weight.dims()[0], 1, 1],
            calls: 1,
        }
    }
}

/// Dropout whose masks come from a seed the trainer sets each step, so a run — and a resumed
/// run — draws the same masks (candle's own dropout uses an unseeded thread RNG). Each element's
/// draw depends on its index in the whole batch: a data-parallel rank holding rows from
/// `first_row` on draws the masks one process would draw for those rows.
#[derive(Debug)]
pub struct Dropout {
    p: f32,
    id: u64,
    seed: AtomicU64,
    calls: AtomicU64,
    first_row: AtomicU64,
}

impl Dropout {
    pub fn new(p: f32, id: u64) -> Self {
        Self {
            p,
            id,
            seed: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            first_row: AtomicU64::new(0),
        }
    }

    /// Sets the mask seed for the next training forward passes, whose inputs are the batch's
    /// rows from `first_row` on (0 but in a data-parallel rank).
    pub fn reseed(&self, seed: u64, first_row: usize) {
        self.seed.store(seed, Ordering::Relaxed);
        self.calls.store(0, Ordering::Relaxed);
        self.first_row.store(first_row as u64, Ordering::Relaxed);
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if !train || self.p == 0.0 {
            return Ok(x.clone());
        }
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        let base = mix(self.seed.load(Ordering::Relaxed) ^ mix(self.id) ^ mix(call << 32));
        let keep = 1.0 / (1.0 - self.p);
        let threshold = (self.p as f64 * (1u64 << 53) as f64) as u64;
        let per_row = (x.elem_count() / x.dim(0)?.max(1)) as u64;
        let offset = self.first_row.load(Ordering::Relaxed) * per_row;
        let mask: Vec<f32> = (offset..offset + x.elem_count() as u64)
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

/// [`ops::max_pool2d`] with any [`Padding`]: padded cells never win (they hold −∞), as in
/// PyTorch, Keras and ONNX.
pub fn max_pool(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: Padding,
) -> Result<Tensor> {
    let (x, pads) = padding.split(x, kernel, stride, f64::NEG_INFINITY)?;
    ops::max_pool2d(&x, kernel, stride, pads)
}

/// [`max_pool`] in ONNX (floor mode, no dilation, as the op).
pub fn emit_max_pool(
    g: &mut OnnxGraph,
    x: &str,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: Padding,
) -> String {
    g.add_node("MaxPool", &[x], window_attrs(kernel, stride, padding))
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
    let mut attrs = window_attrs(kernel, stride, Padding::Symmetric(padding.0, padding.1));
    attrs.push(attr_int("count_include_pad", count_include_pad as i64));
    g.add_node("AveragePool", &[x], attrs)
}

/// `kernel_shape`, `strides` and `pads` (or `auto_pad`) of a window op (Conv, MaxPool,
/// AveragePool).
fn window_attrs(
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: Padding,
) -> Vec<Attribute> {
    let pads = match padding {
        Padding::Symmetric(ph, pw) => {
            let (ph, pw) = (ph as i64, pw as i64);
            attr_ints("pads", &[ph, pw, ph, pw])
        }
        Padding::Same => attr_string("auto_pad", "SAME_UPPER"),
    };
    vec![
        attr_ints("kernel_shape", &[kernel.0 as i64, kernel.1 as i64]),
        attr_ints("strides", &[stride.0 as i64, stride.1 as i64]),
        pads,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::norm::{build_norm, NormBuilder, NormConfig, NORM_NAMES};
    use crate::onnx::graph::Dim;
    use candle_core::Device;
    use candle_nn::VarMap;
    use prost::Message;
    use tract_onnx::prelude::*;

    /// The exported conv → norm pair (folded where the norm allows it) computes what the
    /// candle eval forward computes, for every norm and a plain and a depthwise conv, to
    /// float rounding; BN, and only BN, is folded into the convolution.
    #[test]
    fn conv_and_norm_export_matches_eval_forward() {
        let dev = Device::Cpu;
        let (n, c, h, w) = (2, 8, 9, 11);
        let x = candle_core::Tensor::randn(0f32, 1., (n, c, h, w), &dev).unwrap();
        let mut folded = Vec::new();
        for name in NORM_NAMES {
            for depthwise in [false, true] {
                let (pm, bm) = (VarMap::new(), VarMap::new());
                let vb = VarBuilder::from_varmap(&pm, DType::F32, &dev);
                let nb = NormBuilder::new(
                    VarBuilder::from_varmap(&pm, DType::F32, &dev).pp("norm"),
                    VarBuilder::from_varmap(&bm, DType::F32, &dev).pp("norm"),
                );
                let conv = Conv::new(vb.pp("conv"), c, c, (3, 3), (1, 2), depthwise).unwrap();
                let norm = build_norm(name, c, &NormConfig::default(), &nb).unwrap();
                // Parameters off their initial values, running statistics moved by training
                // forwards on shifted data: every term of the eval forward matters.
                for v in pm.all_vars() {
                    v.set(&(v.randn_like(0.3, 0.5).unwrap())).unwrap();
                }
                for _ in 0..3 {
                    let xt = ((x.randn_like(0., 2.).unwrap()) + 0.7).unwrap();
                    norm.forward_t(&conv.forward(&xt).unwrap(), true).unwrap();
                }
                let want = norm.forward_t(&conv.forward(&x).unwrap(), false).unwrap();

                let mut g = OnnxGraph::new();
                let dims = [n, c, h, w].map(|d| Dim::Fixed(d as i64));
                g.add_input("x", &dims);
                let y = conv.emit_onnx(&mut g, "x", norm.as_ref()).unwrap();
                let out_dims: Vec<Dim> =
                    want.dims().iter().map(|&d| Dim::Fixed(d as i64)).collect();
                g.add_output(&y, &out_dims);
                if norm.eval_affine().unwrap().is_some() {
                    assert_eq!(g.op_types(), ["Conv"], "{name}: folded");
                    folded.push(name);
                }
                let bytes = g.to_model().encode_to_vec();
                let plan = tract_onnx::onnx()
                    .model_for_read(&mut bytes.as_slice())
                    .unwrap()
                    .into_optimized()
                    .unwrap()
                    .into_runnable()
                    .unwrap();
                let xv: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
                let input = tract_ndarray::Array4::from_shape_vec((n, c, h, w), xv)
                    .unwrap()
                    .into_tensor();
                let got = plan.run(tvec!(input.into())).unwrap();
                let got: Vec<f32> = got[0]
                    .to_plain_array_view::<f32>()
                    .unwrap()
                    .iter()
                    .copied()
                    .collect();
                let want: Vec<f32> = want.flatten_all().unwrap().to_vec1().unwrap();
                assert_eq!(got.len(), want.len());
                let worst = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
                    .fold(0f32, f32::max);
                assert!(
                    worst <= 1e-5,
                    "{name}, depthwise {depthwise}: max rel |Δ| = {worst}"
                );
            }
        }
        assert_eq!(folded, ["bn", "bn"], "norms folded into the conv");
    }

    /// Keras's `same` on the cases TensorFlow's documentation works out: out = ⌈in / stride⌉,
    /// the odd padded cell at the end; and a max pool with it never picks a padded cell, even
    /// where every real value is negative.
    #[test]
    fn same_padding_is_kerass() {
        let same = Padding::Same;
        assert_eq!(same.pads(0, 5, 3, 2), (1, 1));
        assert_eq!(same.pads(0, 6, 3, 2), (0, 1));
        assert_eq!(same.pads(1, 52, 5, 2), (1, 2));
        assert_eq!(same.pads(1, 51, 5, 2), (2, 2));
        assert_eq!(same.pads(0, 7, 3, 1), (1, 1));
        assert_eq!(same.pads(0, 6, 1, 2), (0, 0));
        for (size, k, s) in [
            (5, 3, 2),
            (6, 3, 2),
            (52, 5, 2),
            (7, 3, 1),
            (6, 1, 2),
            (1, 3, 2),
        ] {
            let (h, _) = same.out_hw((size, 9), (k, 3), (s, 1));
            assert_eq!(h, size.div_ceil(s), "{size} {k} {s}");
        }
        let x = candle_core::Tensor::from_vec(
            vec![-4f32, -3., -2., -1., -5., -6., -7., -8.],
            (1, 1, 2, 4),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let y = max_pool(&x, (3, 3), (2, 2), same).unwrap();
        // H 2 → pads (0, 1), W 4 → (0, 1): windows rows 0-1 (+ pad), columns 0-2 and 2-3 (+ pad).
        assert_eq!(
            y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [-2., -1.]
        );
    }
}
