//! `fcnn`: the fully convolutional network with channel attention of Hu et al. 2021 (arXiv
//! 2011.01447), the host model in which the L2BN paper compares L2BN with BN on TAU 2020
//! (`docs/models.md`, `docs/norms.md` §3.5). Reference code: `Ingrid725/ASC_L2BN`,
//! `fcnn/fcnn_att.py` and `fcnn/attention_layer.py` (Keras).
//!
//! Where it differs from that code, on purpose: the input's Δ and ΔΔ are computed inside the
//! network from the one-channel log-mel (a fixed convolution, so the front end and the ONNX file
//! stay one-channel and any runtime gets the same three channels); the chosen norm keeps its
//! affine parameters in the 1×1 head (Keras's `learn_bn=False` there), since not every norm of
//! the registry has a non-affine form; initialisation and BN's ε and momentum are this crate's
//! (`docs/models.md`, PyTorch's) rather than Keras's.

use super::{LayerShape, Model, ModelConfig, ModelEntry, NormFactory};
use crate::nn::layers::{
    emit_global_avg_pool, emit_max_pool, global_avg_pool, max_pool, Conv, Dropout, Linear,
    Padding,
};
use crate::nn::norm::{bn, Norm};
use crate::nn::ops::{self, Activation};
use crate::onnx::graph::{attr_int, OnnxGraph};
use candle_core::{Device, Result, Tensor, D};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

/// The registry entry; dropout 0.3 after the first three convolutions of the last stage.
pub const ENTRY: ModelEntry = ModelEntry::new::<FcnnOptions>("fcnn", build::<FcnnOptions>, 0.3);

/// An FCNN variant: its settings and its body.
pub(super) trait Variant: crate::nn::options::Options {
    const PLAN: Plan;
    fn settings(&self) -> Settings<'_>;
}

/// The constructor of every variant's registry entry.
pub(super) fn build<V: Variant>(
    config: &ModelConfig,
    vb: VarBuilder,
    norm: &NormFactory,
) -> Result<Box<dyn Model>> {
    let opts: V = config.options();
    Ok(Box::new(Fcnn::new(
        &V::PLAN,
        &opts.settings(),
        config,
        vb,
        norm,
    )?))
}

/// `fcnn`'s settings (`model.fcnn`); the defaults are the L2BN paper's FCNN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FcnnOptions {
    /// Output channels of the three stages (2, 2 and 4 convolutions): the reference's
    /// `num_filters=[48, 96, 192]` times its 3 input channels.
    pub channels: [usize; 3],
    /// Stack Δ and ΔΔ (over time) onto the log-mel, as the reference does; `false` feeds the
    /// log-mel alone.
    pub deltas: bool,
    /// The channel attention's reduction: its hidden layer has classes / ratio units.
    pub attention_ratio: usize,
}

impl Default for FcnnOptions {
    fn default() -> Self {
        Self {
            channels: [144, 288, 576],
            deltas: true,
            attention_ratio: 2,
        }
    }
}

impl crate::nn::options::Options for FcnnOptions {
    const KEY: &'static str = "fcnn";
}

impl Variant for FcnnOptions {
    const PLAN: Plan = PLAN;
    fn settings(&self) -> Settings<'_> {
        Settings {
            channels: &self.channels,
            deltas: self.deltas,
            attention_ratio: self.attention_ratio,
        }
    }
}

/// One step of an FCNN body, in order.
#[derive(Debug, Clone, Copy)]
pub(super) enum Step {
    /// A convolution to its stage's channels → norm → ReLU.
    Conv {
        stage: usize,
        kernel: usize,
        stride: (usize, usize),
    },
    /// Dropout at the model's rate.
    Dropout,
    /// A max pool.
    Pool { kernel: usize, stride: (usize, usize) },
}

/// A convolution step: `kernel`² at `stride` to stage `stage`'s channels.
pub(super) const fn conv(stage: usize, kernel: usize, stride: (usize, usize)) -> Step {
    Step::Conv {
        stage,
        kernel,
        stride,
    }
}

/// A max pool step.
pub(super) const fn pool(kernel: usize, stride: (usize, usize)) -> Step {
    Step::Pool { kernel, stride }
}

/// An FCNN body: what `fcnn` and `fsfcnn` differ in. The input stack, norm, head and channel
/// attention are common.
pub(super) struct Plan {
    /// The registry name, for messages.
    pub name: &'static str,
    pub steps: &'static [Step],
    /// Keras `padding='same'` for every convolution and pool (`fsfcnn`), or (`fcnn`) zero
    /// padding of kernel / 2 before each convolution and unpadded pools.
    pub same: bool,
}

/// The FCNN (`fcnn/fcnn_att.py`): stages of 2, 2 and 4 convolutions, 5×5 stride 2 first, each
/// stage ending in a 2×2 max pool; dropout after the first three convolutions of stage 3.
const PLAN: Plan = Plan {
    name: "fcnn",
    same: false,
    steps: &[
        conv(0, 5, (2, 2)),
        conv(0, 3, (1, 1)),
        pool(2, (2, 2)),
        conv(1, 3, (1, 1)),
        conv(1, 3, (1, 1)),
        pool(2, (2, 2)),
        conv(2, 3, (1, 1)),
        Step::Dropout,
        conv(2, 3, (1, 1)),
        Step::Dropout,
        conv(2, 3, (1, 1)),
        Step::Dropout,
        conv(2, 3, (1, 1)),
        pool(2, (2, 2)),
    ],
};

/// The settings every FCNN variant has, whatever its number of stages.
pub(super) struct Settings<'a> {
    /// Channels of each stage.
    pub channels: &'a [usize],
    pub deltas: bool,
    pub attention_ratio: usize,
}

/// Frames the Δ/ΔΔ stack consumes (4 at each end, the reference's `[4:-4]`).
const DELTA_TRIM: usize = 8;

fn conv_name(i: usize) -> String {
    format!("conv{i}")
}

fn norm_name(i: usize) -> String {
    format!("norm{i}")
}

/// The 9-tap filters over time that give (log-mel, Δ, ΔΔ) trimmed to the same frames, as one
/// (3, 1, 1, 9) convolution weight: the reference's `deltas()` is
/// `Δ[t] = (x[t+1] − x[t−1])/10 + (x[t+2] − x[t−2])/5`, and ΔΔ is Δ applied twice, so its filter
/// is the Δ filter convolved with itself.
fn delta_filters() -> [[f32; 9]; 3] {
    let d = [-0.2f64, -0.1, 0.0, 0.1, 0.2];
    let mut out = [[0f32; 9]; 3];
    out[0][4] = 1.0;
    for (k, &a) in d.iter().enumerate() {
        out[1][k + 2] = a as f32;
        for (j, &b) in d.iter().enumerate() {
            out[2][k + j] += (a * b) as f32;
        }
    }
    out
}

/// A built step of the body.
enum Layer {
    Conv(Conv, Box<dyn Norm>),
    Dropout(Dropout),
    Pool {
        kernel: (usize, usize),
        stride: (usize, usize),
    },
}

/// An FCNN built from a [`Plan`]: `fcnn` or `fsfcnn`.
pub struct Fcnn {
    name: &'static str,
    deltas: Option<Tensor>,
    input_norm: Box<dyn Norm>,
    body: Vec<Layer>,
    pool_padding: Padding,
    head: (Conv, Box<dyn Norm>),
    /// The reference's plain BN before the attention, kept BN whatever norm is compared.
    head_bn: Box<dyn Norm>,
    att1: Linear,
    att2: Linear,
}

impl Fcnn {
    pub(super) fn new(
        plan: &Plan,
        settings: &Settings,
        config: &ModelConfig,
        vb: VarBuilder,
        norm: &NormFactory,
    ) -> Result<Self> {
        let name = plan.name;
        let n_classes = config.n_classes;
        if settings.channels.contains(&0) || settings.attention_ratio == 0 {
            candle_core::bail!(
                "model.{name}: channels and attention_ratio must be positive: {:?}, {}",
                settings.channels,
                settings.attention_ratio
            );
        }
        let hidden = n_classes / settings.attention_ratio;
        if hidden == 0 {
            candle_core::bail!(
                "model.{name}: attention_ratio {} leaves no hidden unit for {n_classes} classes",
                settings.attention_ratio
            );
        }
        let mut in_c = config.in_channels;
        let deltas = if settings.deltas {
            if in_c != 1 {
                candle_core::bail!("model.{name}: deltas need a one-channel input, not {in_c}");
            }
            in_c = 3;
            let w: Vec<f32> = delta_filters().concat();
            Some(Tensor::from_vec(w, (3, 1, 1, 9), &Device::Cpu)?.to_device(vb.device())?)
        } else {
            None
        };
        let input_norm = norm.build("input_norm", in_c)?;
        let (mut body, mut n_convs, mut n_dropouts) = (Vec::new(), 0, 0u64);
        for step in plan.steps {
            body.push(match *step {
                Step::Conv {
                    stage,
                    kernel,
                    stride,
                } => {
                    let c = settings.channels[stage];
                    let k = (kernel, kernel);
                    let mut conv = Conv::new(vb.pp(conv_name(n_convs)), in_c, c, k, stride, false)?;
                    if plan.same {
                        conv = conv.with_padding(Padding::Same);
                    }
                    let norm = norm.build(&norm_name(n_convs), c)?;
                    (in_c, n_convs) = (c, n_convs + 1);
                    Layer::Conv(conv, norm)
                }
                Step::Dropout => {
                    n_dropouts += 1;
                    Layer::Dropout(Dropout::new(config.dropout, n_dropouts))
                }
                Step::Pool { kernel, stride } => Layer::Pool {
                    kernel: (kernel, kernel),
                    stride,
                },
            });
        }
        let head_conv = Conv::new(vb.pp("head.conv"), in_c, n_classes, (1, 1), (1, 1), false)?;
        let head_norm = norm.build("head.norm", n_classes)?;
        let head_bn = bn::non_affine(n_classes, norm.config, &norm.builder.pp("head_bn"))?;
        Ok(Self {
            name,
            deltas,
            input_norm,
            body,
            pool_padding: if plan.same {
                Padding::Same
            } else {
                Padding::Symmetric(0, 0)
            },
            head: (head_conv, head_norm),
            head_bn,
            att1: Linear::new(vb.pp("att.fc1"), n_classes, hidden)?,
            att2: Linear::new(vb.pp("att.fc2"), hidden, n_classes)?,
        })
    }

    /// The network's input: the log-mel and, with deltas, its Δ and ΔΔ (trimmed frames).
    fn stack(&self, x: &Tensor) -> Result<Tensor> {
        let Some(w) = &self.deltas else {
            return Ok(x.clone());
        };
        let frames = x.dim(3)?;
        if frames <= DELTA_TRIM {
            candle_core::bail!(
                "{}: {frames} frames are too few for Δ and ΔΔ (they take {DELTA_TRIM})",
                self.name
            );
        }
        ops::conv2d(x, &w.to_dtype(x.dtype())?, (1, 1), (0, 0))
    }

    /// Channel attention on the (N, C) average and maximum of the class maps, then the global
    /// average: since the attention scales each map by one number, averaging first is the same.
    fn attend(&self, avg: &Tensor, max: &Tensor) -> Result<Tensor> {
        let mlp = |v: &Tensor| -> Result<Tensor> {
            self.att2.forward(&ops::relu(&self.att1.forward(v)?)?)
        };
        let gate = candle_nn::ops::sigmoid(&(mlp(avg)? + mlp(max)?)?)?;
        avg * gate
    }

    fn dropouts(&self) -> impl Iterator<Item = &Dropout> {
        self.body.iter().filter_map(|l| match l {
            Layer::Dropout(d) => Some(d),
            _ => None,
        })
    }
}

impl Model for Fcnn {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut x = self.input_norm.forward_t(&self.stack(x)?, train)?;
        for layer in &self.body {
            x = match layer {
                Layer::Conv(conv, norm) => {
                    norm.forward_act_t(&conv.forward(&x)?, train, Activation::Relu)?
                }
                Layer::Dropout(d) => d.forward_t(&x, train)?,
                Layer::Pool { kernel, stride } => max_pool(&x, *kernel, *stride, self.pool_padding)?,
            };
        }
        let (conv, norm) = &self.head;
        let x = norm.forward_act_t(&conv.forward(&x)?, train, Activation::Relu)?;
        let x = self.head_bn.forward_t(&x, train)?;
        self.attend(&global_avg_pool(&x)?, &global_max_pool(&x)?)
    }

    fn reseed(&self, seed: u64, first_row: usize) {
        for d in self.dropouts() {
            d.reseed(seed, first_row);
        }
    }

    fn layers(&self, (h, w): (usize, usize)) -> Vec<LayerShape> {
        let mut hw = match self.deltas {
            Some(_) => (h, w.saturating_sub(DELTA_TRIM)),
            None => (h, w),
        };
        let in_c = if self.deltas.is_some() { 3 } else { 1 };
        let mut layers = vec![LayerShape {
            name: "input_norm".into(),
            kind: self.input_norm.name(),
            out: [in_c, hw.0, hw.1],
            calls: 1,
        }];
        let mut convs = 0;
        for layer in &self.body {
            match layer {
                Layer::Conv(conv, norm) => {
                    let (out, shapes) =
                        conv.shapes(&conv_name(convs), (&norm_name(convs), norm.as_ref()), hw);
                    layers.extend(shapes);
                    (hw, convs) = (out, convs + 1);
                }
                Layer::Dropout(_) => {}
                Layer::Pool { kernel, stride } => {
                    hw = self.pool_padding.out_hw(hw, *kernel, *stride);
                }
            }
        }
        let (conv, norm) = &self.head;
        let (_, shapes) = conv.shapes("head.conv", ("head.norm", norm.as_ref()), hw);
        layers.extend(shapes);
        // head_bn has no parameters, so no MACs in torchinfo's count (and no row there).
        // The attention MLP runs on the average and on the maximum.
        for (linear, name) in [(&self.att1, "att.fc1"), (&self.att2, "att.fc2")] {
            layers.push(LayerShape {
                calls: 2,
                ..linear.shape(name)
            });
        }
        layers
    }

    fn emit_onnx(&self, g: &mut OnnxGraph, input: &str) -> Result<String> {
        let mut x = input.to_string();
        if let Some(w) = &self.deltas {
            let w = g.add_tensor("delta_w", w, &[3, 1, 1, 9])?;
            x = g.add_node("Conv", &[&x, &w], vec![]);
        }
        x = self.input_norm.emit_onnx(g, &x)?;
        // A convolution's ReLU is written when the next convolution (or the head) needs its
        // input: max(relu(v)) = relu(max(v)), so a pool in between lets ReLU run on a quarter.
        let mut relu_due = false;
        for layer in &self.body {
            match layer {
                Layer::Conv(conv, norm) => {
                    if std::mem::take(&mut relu_due) {
                        x = g.add_node("Relu", &[&x], vec![]);
                    }
                    x = conv.emit_onnx(g, &x, norm.as_ref())?;
                    relu_due = true;
                }
                Layer::Dropout(_) => {}
                Layer::Pool { kernel, stride } => {
                    x = emit_max_pool(g, &x, *kernel, *stride, self.pool_padding);
                }
            }
        }
        if relu_due {
            x = g.add_node("Relu", &[&x], vec![]);
        }
        let (conv, norm) = &self.head;
        x = conv.emit_onnx(g, &x, norm.as_ref())?;
        x = g.add_node("Relu", &[&x], vec![]);
        x = self.head_bn.emit_onnx(g, &x)?;
        let avg = emit_global_avg_pool(g, &x);
        let max = g.add_node("GlobalMaxPool", &[&x], vec![]);
        let max = g.add_node("Flatten", &[&max], vec![attr_int("axis", 1)]);
        let mut mlp = |v: &str| -> Result<String> {
            let h = self.att1.emit_onnx(g, v)?;
            let h = g.add_node("Relu", &[&h], vec![]);
            self.att2.emit_onnx(g, &h)
        };
        let (a, m) = (mlp(&avg)?, mlp(&max)?);
        let sum = g.add_node("Add", &[&a, &m], vec![]);
        let gate = g.add_node("Sigmoid", &[&sum], vec![]);
        Ok(g.add_node("Mul", &[&avg, &gate], vec![]))
    }
}

/// The maximum over (H, W) of an NCHW tensor, (N, C), whose gradient is shared evenly by tied
/// maxima, as in TensorFlow's `reduce_max` (the reference's `GlobalMaxPooling2D`) and PyTorch's
/// `amax`. candle's `max` gives each tied element the whole gradient, and ties are common here:
/// a class map that the ReLU zeroed everywhere is constant after the BN.
fn global_max_pool(x: &Tensor) -> Result<Tensor> {
    let flat = x.flatten_from(2)?;
    let max = flat.max_keepdim(D::Minus1)?.detach();
    let ties = flat.broadcast_eq(&max)?.to_dtype(flat.dtype())?;
    let share = ties.broadcast_div(&ties.sum_keepdim(D::Minus1)?)?;
    (flat * share)?.sum(D::Minus1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stacked filters against the reference's `deltas()` written out literally.
    #[test]
    fn delta_filters_are_the_references_deltas() {
        let x: Vec<f64> = (0..20).map(|i| ((i * 7 % 11) as f64).sin() * 3.0).collect();
        let deltas = |v: &[f64]| -> Vec<f64> {
            (2..v.len() - 2)
                .map(|t| (v[t + 1] - v[t - 1]) / 10.0 + (v[t + 2] - v[t - 2]) / 5.0)
                .collect()
        };
        let d = deltas(&x);
        let dd = deltas(&d);
        let f = delta_filters();
        for t in 0..x.len() - DELTA_TRIM {
            let apply = |k: &[f32; 9]| (0..9).map(|m| k[m] as f64 * x[t + m]).sum::<f64>();
            assert!((apply(&f[0]) - x[t + 4]).abs() < 1e-12);
            assert!((apply(&f[1]) - d[t + 2]).abs() < 1e-6, "Δ at {t}");
            assert!((apply(&f[2]) - dd[t]).abs() < 1e-6, "ΔΔ at {t}");
        }
    }

    /// Ties share the gradient: a constant map gives each of its 4 cells a quarter.
    #[test]
    fn tied_maxima_share_the_gradient() {
        let v = candle_core::Var::from_vec(
            vec![2f32, 2., 2., 2., 1., 3., 0., 3.],
            (1, 2, 2, 2),
            &Device::Cpu,
        )
        .unwrap();
        let m = global_max_pool(v.as_tensor()).unwrap();
        assert_eq!(m.to_vec2::<f32>().unwrap(), [[2.0, 3.0]]);
        let g = m.sum_all().unwrap().backward().unwrap();
        let g = g.get(v.as_tensor()).unwrap().flatten_all().unwrap();
        assert_eq!(
            g.to_vec1::<f32>().unwrap(),
            [0.25, 0.25, 0.25, 0.25, 0.0, 0.5, 0.0, 0.5]
        );
    }
}
