//! Our direct convolution ([`crate::kernels::conv`]) as a tract operator, swapped in for tract's
//! own `Conv` where it applies.
//!
//! Why: tract lowers a convolution to im2col + matrix product, and for the baseline CNN's 16→16
//! 7×7 conv that product has 16 rows and is gather-bound (about 33 ms on 128 × 431, 21 GMAC/s;
//! onnxruntime 18 ms), while the direct kernel runs it near the FMA peak (7.3 ms on one thread,
//! `docs/benchmarks.md`). The exported file stays standard ONNX: the swap happens on tract's
//! graph, after decluttering (which has folded the zero `Pad` and the following BN into the
//! `Conv`) and before optimising (which would lower the `Conv` to im2col first).
//!
//! Only what the kernel computes exactly is swapped: f32, NCHW data with an OIHW kernel, one
//! group, dilation 1, padding that is the same before and after on each axis, and constant
//! weights and bias; everything else stays with tract. Strided ones (CP-Mobile's stems) run as
//! a column matrix and the 1×1 path ([`crate::kernels::im2col`]). A ReLU that only the conv feeds
//! is folded into the op (tract's optimiser no longer fuses it once the conv is ours).
//!
//! 1×1 convolutions are swapped before decluttering ([`swap_pointwise`]): decluttering turns
//! them into einsums, which at batch 32 cost CP-Mobile transposes and unfused adds (`MoveAxis`
//! and `Add` were half of its plan's time). Their bias (a folded BN) is still computed then, so
//! the op takes it as a second input.
//!
//! Depthwise convolutions ([`crate::kernels::depthwise`]) are swapped too: groups = input
//! channels = output channels (channel multiplier 1), any stride, dilation 1, symmetric padding,
//! f32 NCHW, constant weights and bias. tract's depthwise op runs CP-Mobile's 3×3 layers at about
//! 2 GMAC/s (`docs/benchmarks.md`).
//!
//! Where it pays, a dense convolution runs as Winograd F(m, r) along the width
//! ([`crate::kernels::winograd`]): the 16→16 7×7 conv of the baseline CNN takes half the direct
//! kernel's time, at about 1e-6 of Σ|terms| of rounding instead of 1e-8.
//!
//! `ASC_TRACT_CONV=tract` keeps tract's own convolution everywhere (for comparisons);
//! `ASC_TRACT_CONV=direct` swaps but never uses Winograd; `ASC_TRACT_CONV=own`, or unset, swaps
//! with Winograd where it pays.

use crate::kernels::conv::{self as kernel, Conv as Geometry, Packed};
use crate::kernels::depthwise::{self as dw, Depthwise};
use crate::kernels::im2col::{self, Strided};
use crate::kernels::pool::{self, Pool};
use crate::kernels::winograd;
use crate::kernels::Isa;
use std::sync::{Arc, OnceLock};
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat, MaxPool, PoolSpec, SumPool};
use tract_onnx::tract_core::ops::nn::DataFormat;

/// Which convolution the plans run where both could.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvKernel {
    /// Ours, [`OwnConv`], wherever it applies, with Winograd where that pays.
    Own,
    /// Ours wherever it applies, dense convolutions always direct (for comparisons).
    Direct,
    /// tract's own everywhere.
    Tract,
}

impl ConvKernel {
    /// `ASC_TRACT_CONV` (`own`, `direct` or `tract`), read once per process; an unknown value
    /// is reported once on stderr and means `own`.
    pub fn from_env() -> ConvKernel {
        static CHOICE: OnceLock<ConvKernel> = OnceLock::new();
        *CHOICE.get_or_init(|| match std::env::var("ASC_TRACT_CONV").as_deref() {
            Err(_) | Ok("own") => ConvKernel::Own,
            Ok("direct") => ConvKernel::Direct,
            Ok("tract") => ConvKernel::Tract,
            Ok(other) => {
                eprintln!(
                    "warning: ASC_TRACT_CONV={other} is not one of own, direct, tract; using own"
                );
                ConvKernel::Own
            }
        })
    }
}

/// A stride-1 convolution with its weights packed once, when the op is built, so a run only
/// pads its input and computes; or a depthwise convolution with its weights and bias. The output
/// is N × O × OH × OW (O × OH × OW without a batch axis, as tract's `CHW` format).
#[derive(Clone)]
pub struct OwnConv {
    kernel: Kernel,
    batched: bool,
    /// The bias is the op's second input (computed in the graph, so not packed).
    bias_input: bool,
    /// A following ReLU, folded in by the swap.
    relu: bool,
    /// A following residual add (then a ReLU) folded in too: the value added is the op's last
    /// input. Dense kernels only.
    residual: bool,
}

/// Which of our kernels runs the op, with its geometry and constants.
#[derive(Clone)]
enum Kernel {
    Dense(Geometry, Arc<Packed>),
    Winograd(Geometry, Arc<winograd::Packed>),
    /// The geometry's plan on the path that runs it; weights C × KH × KW, then bias C, in one
    /// allocation.
    Depthwise(Depthwise, Arc<dw::Plan>, Arc<[f32]>),
    Strided(Strided, Arc<im2col::Packed>),
    MaxPool(Pool),
}

impl std::fmt::Debug for OwnConv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("OwnConv");
        match &self.kernel {
            Kernel::Dense(g, _) => d.field("geometry", g),
            Kernel::Winograd(g, p) => d.field("winograd", &(g, p.algorithm())),
            Kernel::Depthwise(g, ..) => d.field("depthwise", g),
            Kernel::Strided(g, _) => d.field("strided", g),
            Kernel::MaxPool(g) => d.field("max pool", g),
        };
        d.field("batched", &self.batched)
            .field("bias_input", &self.bias_input)
            .field("relu", &self.relu)
            .field("residual", &self.residual)
            .finish()
    }
}

/// Two ops are equal only when they share their weights: tract merges equal ops on equal
/// inputs, and two convolutions of the same shape with different weights must stay apart.
impl PartialEq for OwnConv {
    fn eq(&self, other: &Self) -> bool {
        self.batched == other.batched
            && self.bias_input == other.bias_input
            && self.relu == other.relu
            && self.residual == other.residual
            && match (&self.kernel, &other.kernel) {
                (Kernel::Dense(g, p), Kernel::Dense(h, q)) => g == h && Arc::ptr_eq(p, q),
                (Kernel::Winograd(g, p), Kernel::Winograd(h, q)) => g == h && Arc::ptr_eq(p, q),
                (Kernel::Depthwise(g, _, p), Kernel::Depthwise(h, _, q)) => {
                    g == h && Arc::ptr_eq(p, q)
                }
                (Kernel::Strided(g, p), Kernel::Strided(h, q)) => g == h && Arc::ptr_eq(p, q),
                (Kernel::MaxPool(g), Kernel::MaxPool(h)) => g == h,
                _ => false,
            }
    }
}

impl Eq for OwnConv {}

impl OwnConv {
    /// The op for a decluttered `Conv` node, or `None` when the kernel does not compute it
    /// (module doc); dense ones as Winograd where that pays and `winograd` allows it. With
    /// `computed_bias`, a dense conv whose bias is not a constant yet takes it as an input.
    fn for_node(
        model: &TypedModel,
        node: &TypedNode,
        conv: &Conv,
        isa: Isa,
        winograd: bool,
        computed_bias: bool,
    ) -> TractResult<Option<OwnConv>> {
        let spec = &conv.pool_spec;
        let Some(batched) = batched(spec) else {
            return Ok(None);
        };
        if conv.q_params.is_some()
            || conv.kernel_fmt != KernelFormat::OIHW
            || node.inputs.len() != 3
        {
            return Ok(None);
        }
        let depthwise = conv.group > 1
            && conv.group == conv.input_channels()
            && conv.group == conv.output_channels();
        let strided = spec.strides().iter().any(|&s| s != 1);
        if !depthwise && conv.group != 1 {
            return Ok(None);
        }
        let Some(chw) = input_chw(model, node, batched)? else {
            return Ok(None);
        };
        let chw = &chw[..];
        let Some(w) = constant_f32(model, node.inputs[1])? else {
            return Ok(None);
        };
        let b = constant_f32(model, node.inputs[2])?;
        if b.is_none() && !depthwise && !strided && computed_bias {
            let Some(g) = geometry(spec, chw) else {
                return Ok(None);
            };
            let fact = model.outlet_fact(node.inputs[2])?;
            if w.len() != g.o * g.c * g.kh * g.kw
                || fact.datum_type != f32::datum_type()
                || fact.shape.as_concrete() != Some(&[g.o][..])
            {
                return Ok(None);
            }
            let kernel = Kernel::Dense(g, Arc::new(Packed::new(g, &w, None, isa)));
            return Ok(Some(OwnConv {
                kernel,
                batched,
                bias_input: true,
                relu: false,
                residual: false,
            }));
        }
        let Some(b) = b else {
            return Ok(None);
        };
        let kernel = if depthwise {
            let Some(g) = depthwise_geometry(spec, chw) else {
                return Ok(None);
            };
            let Some(bias) = per_channel(b, g.c) else {
                return Ok(None);
            };
            if w.len() != g.c * g.kh * g.kw {
                return Ok(None);
            }
            assert!(isa.available(), "{isa:?} kernels on a CPU without them");
            let plan = Arc::new(dw::Plan::new(&g, isa));
            Kernel::Depthwise(g, plan, w.into_iter().chain(bias).collect())
        } else if strided {
            let Some(g) = strided_geometry(spec, chw) else {
                return Ok(None);
            };
            let Some(bias) = per_channel(b, g.o) else {
                return Ok(None);
            };
            if w.len() != g.o * g.c * g.kh * g.kw {
                return Ok(None);
            }
            let p = im2col::Packed::new(g, &w, Some(&bias), isa);
            Kernel::Strided(g, Arc::new(p))
        } else {
            let Some(g) = geometry(spec, chw) else {
                return Ok(None);
            };
            let Some(bias) = per_channel(b, g.o) else {
                return Ok(None);
            };
            if w.len() != g.o * g.c * g.kh * g.kw {
                return Ok(None);
            }
            match winograd::Packed::new(g, &w, Some(&bias), isa).filter(|_| winograd) {
                Some(p) => Kernel::Winograd(g, Arc::new(p)),
                None => Kernel::Dense(g, Arc::new(Packed::new(g, &w, Some(&bias), isa))),
            }
        };
        Ok(Some(OwnConv {
            kernel,
            batched,
            bias_input: false,
            relu: false,
            residual: false,
        }))
    }

    /// The op for a decluttered average pool that counts the padding (ONNX `AveragePool` with
    /// `count_include_pad`, CP-Mobile's shortcut): a depthwise convolution whose weights are all
    /// 1 / (KH · KW). tract's own ran it at about 7 % of CP-Mobile's batch-1 plan.
    fn for_pool(
        model: &TypedModel,
        node: &TypedNode,
        pool: &SumPool,
        isa: Isa,
    ) -> TractResult<Option<OwnConv>> {
        let spec = &pool.pool_spec;
        let Some(batched) = batched(spec) else {
            return Ok(None);
        };
        if !(pool.normalize && pool.count_include_pad) || node.inputs.len() != 1 {
            return Ok(None);
        }
        let Some(chw) = input_chw(model, node, batched)? else {
            return Ok(None);
        };
        let Some(g) = depthwise_geometry(spec, &chw) else {
            return Ok(None);
        };
        let kk = g.kh * g.kw;
        let weights = std::iter::repeat_n(1.0 / kk as f32, g.c * kk);
        let bias = std::iter::repeat_n(0.0, g.c);
        let plan = Arc::new(dw::Plan::new(&g, isa));
        Ok(Some(OwnConv {
            kernel: Kernel::Depthwise(g, plan, weights.chain(bias).collect()),
            batched,
            bias_input: false,
            relu: false,
            residual: false,
        }))
    }

    /// The op for a decluttered max pool without padding (the baseline CNN's): tract's own ran
    /// its first pool at about 7 % of the model (`crate::kernels::pool`).
    fn for_max_pool(
        model: &TypedModel,
        node: &TypedNode,
        max: &MaxPool,
    ) -> TractResult<Option<OwnConv>> {
        let spec = &max.pool_spec;
        let Some(batched) = batched(spec) else {
            return Ok(None);
        };
        if max.with_index_outputs.is_some() || node.inputs.len() != 1 {
            return Ok(None);
        }
        let Some(chw) = input_chw(model, node, batched)? else {
            return Ok(None);
        };
        let Some(w) = strided_geometry(spec, &chw).filter(|w| (w.ph, w.pw) == (0, 0)) else {
            return Ok(None);
        };
        let g = Pool {
            c: w.c,
            h: w.h,
            w: w.w,
            kh: w.kh,
            kw: w.kw,
            sh: w.sh,
            sw: w.sw,
        };
        Ok(Some(OwnConv {
            kernel: Kernel::MaxPool(g),
            batched,
            bias_input: false,
            relu: false,
            residual: false,
        }))
    }

    /// Input C × H × W and output O × OH × OW of one sample.
    fn dims(&self) -> ([usize; 3], [usize; 3]) {
        match &self.kernel {
            Kernel::Dense(g, _) | Kernel::Winograd(g, _) => {
                ([g.c, g.h, g.w], [g.o, g.oh(), g.ow()])
            }
            Kernel::Depthwise(g, ..) => ([g.c, g.h, g.w], [g.c, g.oh(), g.ow()]),
            Kernel::Strided(g, _) => ([g.c, g.h, g.w], [g.o, g.oh(), g.ow()]),
            Kernel::MaxPool(g) => ([g.c, g.h, g.w], [g.c, g.oh(), g.ow()]),
        }
    }

    /// Multiply-adds per sample (of the direct form, for Winograd too: the work it replaces).
    fn macs(&self) -> usize {
        match &self.kernel {
            Kernel::Dense(g, _) | Kernel::Winograd(g, _) => {
                g.o * g.c * g.kh * g.kw * g.oh() * g.ow()
            }
            Kernel::Depthwise(g, ..) => g.c * g.kh * g.kw * g.oh() * g.ow(),
            Kernel::Strided(g, _) => g.o * g.c * g.kh * g.kw * g.oh() * g.ow(),
            Kernel::MaxPool(_) => 0,
        }
    }

    fn input_shape(&self, n: usize) -> TVec<usize> {
        let mut shape: TVec<usize> = self.batched.then_some(n).into_iter().collect();
        shape.extend(self.dims().0);
        shape
    }

    fn output_shape<D: DimLike>(&self, n: Option<D>) -> TVec<D> {
        let mut shape: TVec<D> = n.into_iter().collect();
        shape.extend(self.dims().1.map(D::from));
        shape
    }
}

/// Whether a window op's data has a batch axis (NCHW) or not (CHW); `None` for channels-last
/// layouts, windows of other than two axes, and dilated ones.
fn batched(spec: &PoolSpec) -> Option<bool> {
    let batched = match spec.data_format {
        DataFormat::NCHW => true,
        DataFormat::CHW => false,
        DataFormat::NHWC | DataFormat::HWC => return None,
    };
    (spec.rank() == 2 && spec.dilations().iter().all(|&d| d == 1)).then_some(batched)
}

/// C × H × W of `node`'s f32 input of known shape.
fn input_chw(
    model: &TypedModel,
    node: &TypedNode,
    batched: bool,
) -> TractResult<Option<TVec<usize>>> {
    let x = model.outlet_fact(node.inputs[0])?;
    let Some(shape) = x.shape.as_concrete() else {
        return Ok(None);
    };
    if x.datum_type != f32::datum_type() || shape.len() != 3 + batched as usize {
        return Ok(None);
    }
    Ok(Some(shape[batched as usize..].into()))
}

/// A bias of one value or one per channel, as one per channel.
fn per_channel(b: Vec<f32>, channels: usize) -> Option<Vec<f32>> {
    match b.len() {
        1 => Some(vec![b[0]; channels]),
        n if n == channels => Some(b),
        _ => None,
    }
}

/// Kernel, strides and zero paddings of a pooling window on a C × H × W input, and the output
/// size tract computes for it (each kernel's own must agree).
struct Window {
    k: [usize; 2],
    s: [usize; 2],
    p: [usize; 2],
    out: [usize; 2],
}

/// `spec`'s window on a C × H × W input, when the input has its channels and its padding is
/// the same before and after on each axis (tract's explicit, valid and same paddings all
/// resolve to one before/after pair here).
fn window(spec: &PoolSpec, chw: &[usize]) -> Option<Window> {
    let pads = spec.computed_padding(&chw[1..]);
    let strides = spec.strides();
    if pads.iter().any(|p| p.pad_before != p.pad_after) || chw[0] != spec.input_channels {
        return None;
    }
    Some(Window {
        k: [spec.kernel_shape[0], spec.kernel_shape[1]],
        s: [strides[0], strides[1]],
        p: [pads[0].pad_before, pads[1].pad_before],
        out: [pads[0].convoluted, pads[1].convoluted],
    })
}

/// The convolution of `spec`'s window on a C × H × W input, when its output size is tract's.
fn strided_geometry(spec: &PoolSpec, chw: &[usize]) -> Option<Strided> {
    let w = window(spec, chw)?;
    let g = Strided {
        c: chw[0],
        h: chw[1],
        w: chw[2],
        o: spec.output_channels,
        kh: w.k[0],
        kw: w.k[1],
        sh: w.s[0],
        sw: w.s[1],
        ph: w.p[0],
        pw: w.p[1],
    };
    (g.is_valid() && [g.oh(), g.ow()] == w.out).then_some(g)
}

/// The depthwise kernel's geometry for `spec` on a C × H × W input.
fn depthwise_geometry(spec: &PoolSpec, chw: &[usize]) -> Option<Depthwise> {
    strided_geometry(spec, chw).map(|g| g.depthwise())
}

/// The direct kernel's geometry for `spec` (stride 1) on a C × H × W input.
fn geometry(spec: &PoolSpec, chw: &[usize]) -> Option<Geometry> {
    strided_geometry(spec, chw)?.stride_one()
}

/// The node after `node` when it is a ReLU (the max with a constant zero that tract makes of
/// one) fed by `node` alone, whose output is not a model output.
fn following_relu(model: &TypedModel, node: &TypedNode) -> Option<usize> {
    let (relu, slot) = sole_successor(model, node, "Max")?;
    let zero = model.outlet_fact(relu.inputs[1 - slot]).ok()?;
    let k = zero.konst.as_ref()?;
    let values = k.try_as_plain_ram().ok()?;
    let all_zero = values.as_slice::<f32>().ok()?.iter().all(|&v| v == 0.0);
    let same = model.outlet_fact(OutletId::new(relu.id, 0)).ok()?.shape
        == model.outlet_fact(OutletId::new(node.id, 0)).ok()?.shape;
    (all_zero && same).then_some(relu.id)
}

/// The node after `node` when it adds `node`'s output (alone, not a model output) to another
/// wire of the same shape and a ReLU that only it feeds follows: a residual block's end.
/// Returns the other wire and the ReLU.
fn following_add_relu(model: &TypedModel, node: &TypedNode) -> Option<(OutletId, usize)> {
    let (add, slot) = sole_successor(model, node, "Add")?;
    let out = OutletId::new(node.id, 0);
    let other = add.inputs[1 - slot];
    let shape = |o: OutletId| model.outlet_fact(o).ok().map(|f| f.shape.clone());
    let same = shape(other)? == shape(out)? && shape(OutletId::new(add.id, 0))? == shape(out)?;
    let relu = following_relu(model, add)?;
    same.then_some((other, relu))
}

/// The node that alone reads `node`'s output (not a model output) when it is the binary op
/// `name` of two inputs, with the input slot `node` feeds.
fn sole_successor<'m>(
    model: &'m TypedModel,
    node: &TypedNode,
    name: &str,
) -> Option<(&'m TypedNode, usize)> {
    let [next] = node.outputs[0].successors.as_slice() else {
        return None;
    };
    if model
        .output_outlets()
        .ok()?
        .contains(&OutletId::new(node.id, 0))
    {
        return None;
    }
    let op = model.node(next.node);
    let bin = op.op_as::<TypedBinOp>()?;
    (bin.0.name() == name && op.inputs.len() == 2).then_some((op, next.slot))
}

/// The values of a constant f32 wire, or `None` when it is computed at run time.
fn constant_f32(model: &TypedModel, outlet: OutletId) -> TractResult<Option<Vec<f32>>> {
    let fact = model.outlet_fact(outlet)?;
    match &fact.konst {
        Some(k) if k.datum_type() == f32::datum_type() && k.is_plain() => {
            Ok(Some(k.try_as_plain_ram()?.as_slice::<f32>()?.to_vec()))
        }
        _ => Ok(None),
    }
}

/// Replaces every convolution of a decluttered `model` that [`OwnConv`] computes, dense ones as
/// Winograd where that pays and `winograd` allows it; returns how many. The weights and bias
/// wires it leaves unused go at the next declutter.
pub fn swap_convs(model: &mut TypedModel, isa: Isa, winograd: bool) -> TractResult<usize> {
    swap(model, isa, winograd, false)
}

/// Replaces the 1×1 convolutions of a typed, not yet decluttered `model` (module doc); returns
/// how many.
pub fn swap_pointwise(model: &mut TypedModel, isa: Isa) -> TractResult<usize> {
    swap(model, isa, false, true)
}

fn swap(model: &mut TypedModel, isa: Isa, winograd: bool, pointwise: bool) -> TractResult<usize> {
    let mut swapped = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let op = if let Some(conv) = node.op_as::<Conv>() {
            if pointwise && !conv.pool_spec.kernel_shape.iter().all(|&k| k == 1) {
                continue;
            }
            OwnConv::for_node(model, node, conv, isa, winograd, pointwise)?
        } else if let Some(pool) = node.op_as::<SumPool>().filter(|_| !pointwise) {
            OwnConv::for_pool(model, node, pool, isa)?
        } else if let Some(max) = node.op_as::<MaxPool>().filter(|_| !pointwise) {
            OwnConv::for_max_pool(model, node, max)?
        } else {
            continue;
        };
        let Some(op) = op else {
            continue;
        };
        let inputs: TVec<OutletId> = if op.bias_input {
            tvec!(node.inputs[0], node.inputs[2])
        } else {
            tvec!(node.inputs[0])
        };
        let mut op = op;
        let mut inputs = inputs;
        // A ReLU that only this conv feeds is applied by the op, on outputs still in cache; so
        // is a residual add and the ReLU after it.
        let residual = matches!(op.kernel, Kernel::Dense(..))
            .then(|| following_add_relu(model, node))
            .flatten();
        let last = match (following_relu(model, node), residual) {
            (Some(relu), _) => {
                op.relu = true;
                OutletId::new(relu, 0)
            }
            (None, Some((other, relu))) => {
                op.residual = true;
                inputs.push(other);
                OutletId::new(relu, 0)
            }
            (None, None) => OutletId::new(node.id, 0),
        };
        let mut patch = TypedModelPatch::default();
        let taps = inputs
            .iter()
            .map(|&i| patch.tap_model(model, i))
            .collect::<TractResult<TVec<_>>>()?;
        let y = patch.wire_node(&node.name, op, &taps)?[0];
        patch.shunt_outside(model, last, y)?;
        patch.apply(model)?;
        swapped += 1;
    }
    Ok(swapped)
}

impl Op for OwnConv {
    fn name(&self) -> StaticName {
        match self.kernel {
            Kernel::MaxPool(_) => "OwnMaxPool".into(),
            _ => "OwnConv".into(),
        }
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![
            match &self.kernel {
                Kernel::Dense(g, p) => format!("{g:?}, {:?} kernels", p.isa()),
                Kernel::Winograd(g, p) => {
                    let (m, r) = p.algorithm();
                    format!("{g:?}, Winograd F({m}, {r}), {:?} kernels", p.isa())
                }
                Kernel::Depthwise(g, p, _) => format!("{g:?}, {:?} kernels", p.isa()),
                Kernel::Strided(g, p) => format!("{g:?}, im2col + {:?} kernels", p.isa()),
                Kernel::MaxPool(g) => format!("{g:?}"),
            } + match (self.relu, self.residual) {
                (true, _) => ", then ReLU",
                (false, true) => ", then + residual and ReLU",
                (false, false) => "",
            },
        ])
    }

    /// The taps are summed in another order than tract's, so results differ in rounding.
    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for OwnConv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, mut inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let residual = if self.residual { inputs.pop() } else { None };
        let bias = if self.bias_input { inputs.pop() } else { None };
        let x = args_1!(inputs);
        let n = if self.batched { x.shape()[0] } else { 1 };
        ensure!(
            x.shape() == &*self.input_shape(n),
            "OwnConv built for {:?} got an input of {:?}",
            self.dims().0,
            x.shape()
        );
        let shape = self.output_shape(self.batched.then_some(n));
        // SAFETY: `forward_into` writes every element of the output before anyone reads it.
        let mut y = unsafe { Tensor::uninitialized::<f32>(&shape)? };
        let xs = x.try_as_plain_ram()?;
        let mut ys = y.try_as_plain_ram_mut()?;
        let (xs, ys) = (xs.as_slice::<f32>()?, ys.as_slice_mut::<f32>()?);
        match &self.kernel {
            Kernel::Dense(_, packed) => {
                let b = bias.as_ref().map(|b| b.try_as_plain_ram()).transpose()?;
                let b = b.as_ref().map(|b| b.as_slice::<f32>()).transpose()?;
                match &residual {
                    Some(r) => {
                        ensure!(r.shape() == &*shape, "OwnConv residual of {:?}", r.shape());
                        let r = r.try_as_plain_ram()?;
                        kernel::forward_add_relu_into(xs, n, packed, b, r.as_slice::<f32>()?, ys)
                    }
                    None => kernel::forward_into(xs, n, packed, b, self.relu, ys),
                }
            }
            Kernel::Winograd(_, packed) => winograd::forward_into(xs, n, packed, ys),
            Kernel::Depthwise(g, plan, wb) => {
                let (w, b) = wb.split_at(g.c * g.kh * g.kw);
                dw::forward_planned(xs, n, w, Some(b), plan, self.relu, ys);
            }
            Kernel::Strided(_, p) => im2col::forward_into(xs, n, p, None, self.relu, ys),
            Kernel::MaxPool(g) => pool::max_into(xs, n, g, ys),
        }
        let folded = matches!(
            self.kernel,
            Kernel::Dense(..) | Kernel::Strided(..) | Kernel::Depthwise(..)
        );
        if self.relu && !folded {
            for v in ys.iter_mut() {
                *v = v.max(0.0);
            }
        }
        Ok(tvec!(y.into_tvalue()))
    }
}

impl TypedOp for OwnConv {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let x = inputs[0];
        ensure!(
            x.datum_type == f32::datum_type(),
            "OwnConv takes f32, got {:?}",
            x.datum_type
        );
        let chw = &x.shape[self.batched as usize..];
        ensure!(
            x.rank() == 3 + self.batched as usize
                && chw.iter().zip(self.dims().0).all(|(d, e)| *d == e.to_dim()),
            "OwnConv built for {:?} got an input of {:?}",
            self.dims().0,
            x.shape
        );
        let n = self.batched.then(|| x.shape[0].clone());
        Ok(tvec!(f32::fact(self.output_shape(n))))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let n = if self.batched {
            inputs[0].shape[0].clone()
        } else {
            1.to_dim()
        };
        Ok(tvec!((Cost::FMA(f32::datum_type()), n * self.macs())))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::tract_core::ops::cnn::{PaddingSpec, PoolSpec};

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    }

    /// One `Conv` of 3 → 5 channels on 9 × 11, batch `n` (no batch axis when `None`).
    fn conv_model(
        n: Option<usize>,
        kernel: [usize; 2],
        padding: PaddingSpec,
        strides: [usize; 2],
    ) -> TractResult<TypedModel> {
        grouped_model(n, kernel, padding, strides, [3, 5, 1])
    }

    /// One `Conv` of `c` → `o` channels in `group` groups on 9 × 11.
    fn grouped_model(
        n: Option<usize>,
        kernel: [usize; 2],
        padding: PaddingSpec,
        strides: [usize; 2],
        [c, o, group]: [usize; 3],
    ) -> TractResult<TypedModel> {
        let (h, w) = (9, 11);
        let shape: TVec<usize> = n.into_iter().chain([c, h, w]).collect();
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact(&shape))?;
        let k = Tensor::from_shape(
            &[o, c / group, kernel[0], kernel[1]],
            &values(o * c / group * kernel[0] * kernel[1], 1),
        )?;
        let k = model.add_const("k", k)?;
        let b = model.add_const("b", Tensor::from_shape(&[o], &values(o, 2))?)?;
        let pool_spec = window_spec(n.is_some(), kernel, padding, strides, [c, o]);
        let conv = Conv {
            pool_spec,
            kernel_fmt: KernelFormat::OIHW,
            group,
            q_params: None,
        };
        let y = model.wire_node("conv", conv, &[x, k, b])?;
        model.select_output_outlets(&y)?;
        Ok(model)
    }

    /// Zero padding of `p` before and after on each axis.
    fn explicit(p: [usize; 2]) -> PaddingSpec {
        PaddingSpec::Explicit(p.into_iter().collect(), p.into_iter().collect())
    }

    /// A window over NCHW (`batched`) or CHW data of `c` channels, giving `o`.
    fn window_spec(
        batched: bool,
        kernel: [usize; 2],
        padding: PaddingSpec,
        strides: [usize; 2],
        [c, o]: [usize; 2],
    ) -> PoolSpec {
        PoolSpec {
            data_format: if batched {
                DataFormat::NCHW
            } else {
                DataFormat::CHW
            },
            kernel_shape: kernel.into_iter().collect(),
            padding,
            dilations: None,
            strides: Some(strides.into_iter().collect()),
            input_channels: c,
            output_channels: o,
        }
    }

    /// `model` with one op, swapped, agrees with tract's own plan to 1e-5.
    fn assert_swapped_and_agree(model: TypedModel, case: &str) -> TractResult<()> {
        let (swapped, d) = swap_and_compare(model)?;
        assert_eq!(swapped, 1, "{case}");
        assert!(d < 1e-5, "{case}: max difference {d:e}");
        Ok(())
    }

    /// Swaps what it can in `model`, then runs both it and tract's own plan on the same input;
    /// returns how many were swapped and the largest difference.
    fn swap_and_compare(model: TypedModel) -> TractResult<(usize, f32)> {
        let shape = model.input_fact(0)?.shape.as_concrete().unwrap().to_vec();
        let x = Tensor::from_shape(&shape, &values(shape.iter().product(), 3))?;
        let mut own = model.clone();
        let swapped = swap_convs(&mut own, Isa::active(), true)?;
        Ok((swapped, plans_differ(own, model, &[x])?))
    }

    /// The largest difference between the outputs of two models' optimised plans on `inputs`.
    fn plans_differ(a: TypedModel, b: TypedModel, inputs: &[Tensor]) -> TractResult<f32> {
        let run = |m: TypedModel| -> TractResult<Vec<f32>> {
            let inputs = inputs.iter().map(|t| t.clone().into()).collect();
            let y = m.into_optimized()?.into_runnable()?.run(inputs)?;
            Ok(y[0].to_plain_array_view::<f32>()?.iter().copied().collect())
        };
        let (a, b) = (run(a)?, run(b)?);
        assert_eq!(a.len(), b.len());
        Ok(a.iter()
            .zip(&b)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f32::max))
    }

    /// What the ops that compute `model`'s outputs say of themselves.
    fn op_infos(model: &TypedModel) -> TractResult<Vec<String>> {
        let mut infos = Vec::new();
        for n in model.eval_order()? {
            infos.extend(model.node(n).op.info()?);
        }
        Ok(infos)
    }

    #[test]
    fn symmetric_stride_one_convs_are_swapped_and_agree() -> TractResult<()> {
        for (n, kernel, padding) in [
            (Some(2), [3, 5], explicit([1, 2])),
            (Some(1), [7, 7], explicit([3, 3])),
            (Some(2), [3, 3], PaddingSpec::SameUpper),
            (Some(1), [2, 3], PaddingSpec::Valid),
            (None, [3, 3], explicit([1, 0])),
            (Some(2), [1, 1], PaddingSpec::Valid),
        ] {
            let case = format!("{n:?} {kernel:?} {padding:?}");
            assert_swapped_and_agree(conv_model(n, kernel, padding, [1, 1])?, &case)?;
        }
        Ok(())
    }

    /// A 16 → 16 7×7 conv (the baseline CNN's) runs as Winograd and gives tract's result to its
    /// rounding: about 1e-6 of Σ|terms|, which is ~50 here (784 terms of mean |x·w| 1/16), so
    /// ~5e-5 (6.1e-5 measured); a wrong transform is off by the outputs' own size (~1).
    #[test]
    fn wide_convs_with_channels_run_as_winograd_and_agree() -> TractResult<()> {
        let pad = PaddingSpec::Explicit(tvec!(3, 3), tvec!(3, 3));
        let model = grouped_model(Some(2), [7, 7], pad, [1, 1], [16, 16, 1])?;
        let mut own = model.clone();
        swap_convs(&mut own, Isa::active(), true)?;
        let ops = op_infos(&own)?;
        assert!(
            ops.iter().any(|i| i.contains("Winograd F(4, 7)")),
            "{ops:?}"
        );
        let (swapped, d) = swap_and_compare(model)?;
        assert_eq!(swapped, 1);
        assert!(d < 4e-4, "max difference {d:e}");
        Ok(())
    }

    /// A 1×1 conv whose bias is not a constant (as a folded BN's is not before decluttering;
    /// here a second model input) is swapped with the bias as an input of the op, and agrees
    /// with tract; the pass after decluttering leaves it alone.
    #[test]
    fn pointwise_convs_with_a_computed_bias_are_swapped() -> TractResult<()> {
        let mut model = grouped_model(Some(2), [1, 1], PaddingSpec::Valid, [1, 1], [8, 12, 1])?;
        let conv = model.node_by_name("conv")?.id;
        let bias = model.add_source("bias", f32::fact([12]))?;
        model.add_edge(bias, InletId::new(conv, 2))?;
        let shape = model.input_fact(0)?.shape.as_concrete().unwrap().to_vec();
        let x = Tensor::from_shape(&shape, &values(shape.iter().product(), 3))?;
        let b = Tensor::from_shape(&[12], &values(12, 4))?;
        assert_eq!(swap_convs(&mut model.clone(), Isa::active(), true)?, 0);
        let mut own = model.clone();
        assert_eq!(swap_pointwise(&mut own, Isa::active())?, 1);
        let d = plans_differ(own, model, &[x, b])?;
        assert!(d < 1e-5, "max difference {d:e}");
        Ok(())
    }

    /// A ReLU (a max with zero) after a swapped conv is folded into the op; a max with another
    /// constant is not. A dense conv, and depthwise convs in place and through phase planes.
    #[test]
    fn a_following_relu_is_folded_in() -> TractResult<()> {
        use tract_onnx::tract_core::ops::math::max;
        let convs = [([1, 1], 1), ([1, 1], 6), ([1, 2], 6)];
        let cases = convs
            .into_iter()
            .flat_map(|c| [(0.0f32, true), (0.1, false)].map(|f| (c, f)));
        for ((strides, group), (floor, folded)) in cases {
            let pad = PaddingSpec::Explicit(tvec!(1, 1), tvec!(1, 1));
            let mut model = grouped_model(Some(2), [3, 3], pad, strides, [6, 6, group])?;
            let conv = model.output_outlets()?[0];
            let k = model.add_const("floor", Tensor::from_shape(&[1, 1, 1, 1], &[floor])?)?;
            let y = model.wire_node("relu", max(), &[conv, k])?;
            model.select_output_outlets(&y)?;
            let case = format!("{strides:?} {group} floor {floor}");
            assert_folded(model, (true, "then ReLU"), folded, &case)?;
        }
        Ok(())
    }

    /// Swaps `model`'s convs (Winograd allowed or not), checks that an op's info contains
    /// `marker` exactly when `folded`, and that the swapped plan agrees with tract's.
    fn assert_folded(
        model: TypedModel,
        (winograd, marker): (bool, &str),
        folded: bool,
        case: &str,
    ) -> TractResult<()> {
        let shape = model.input_fact(0)?.shape.as_concrete().unwrap().to_vec();
        let x = Tensor::from_shape(&shape, &values(shape.iter().product(), 3))?;
        let mut own = model.clone();
        assert_eq!(swap_convs(&mut own, Isa::active(), winograd)?, 1, "{case}");
        let info = op_infos(&own)?;
        assert_eq!(
            info.iter().any(|i| i.contains(marker)),
            folded,
            "{case}: {info:?}"
        );
        let d = plans_differ(own, model, &[x])?;
        assert!(d < 1e-5, "{case}: max difference {d:e}");
        Ok(())
    }

    /// A residual add of another wire (here the conv's own input) and the ReLU after it are
    /// folded into a dense conv; an add not followed by a ReLU, or a ReLU with another floor,
    /// is not. With and without a batch axis, 1×1 (CP-Mobile's projections) and 3×3.
    #[test]
    fn a_following_residual_add_and_relu_are_folded_in() -> TractResult<()> {
        use tract_onnx::tract_core::ops::math::{add, max};
        let shapes = [
            (Some(2), [1, 1], 0),
            (None, [3, 3], 1),
            (Some(1), [3, 3], 1),
        ];
        let floors = [(Some(0.0f32), true), (Some(0.1), false), (None, false)];
        for ((n, kernel, p), (floor, folded)) in
            shapes.into_iter().flat_map(|s| floors.map(|f| (s, f)))
        {
            let pad = PaddingSpec::Explicit(tvec!(p, p), tvec!(p, p));
            let mut model = grouped_model(n, kernel, pad, [1, 1], [6, 6, 1])?;
            let conv = model.output_outlets()?[0];
            let x = model.input_outlets()?[0];
            let mut y = model.wire_node("add", add(), &[conv, x])?;
            if let Some(floor) = floor {
                let k = Tensor::from_shape(&[1; 4][..3 + n.is_some() as usize], &[floor])?;
                let k = model.add_const("floor", k)?;
                y = model.wire_node("relu", max(), &[y[0], k])?;
            }
            model.select_output_outlets(&y)?;
            let case = format!("{n:?} {kernel:?} floor {floor:?}");
            // Without Winograd, which would take the 3×3 conv: the fold is the direct kernel's.
            assert_folded(model, (false, "+ residual"), folded, &case)?;
        }
        Ok(())
    }

    /// CP-Mobile's depthwise strides, and others, with explicit and computed paddings.
    #[test]
    fn depthwise_convs_are_swapped_and_agree() -> TractResult<()> {
        for (n, kernel, padding, strides) in [
            (Some(2), [3, 3], explicit([1, 1]), [1, 1]),
            (Some(1), [3, 3], explicit([1, 1]), [2, 2]),
            (Some(2), [3, 3], explicit([1, 1]), [1, 2]),
            (Some(1), [3, 3], explicit([1, 1]), [2, 1]),
            (Some(1), [5, 3], explicit([2, 0]), [3, 2]),
            (Some(1), [3, 3], PaddingSpec::Valid, [2, 2]),
            (None, [3, 3], explicit([1, 1]), [2, 1]),
        ] {
            let case = format!("{n:?} {kernel:?} {padding:?} {strides:?}");
            let model = grouped_model(n, kernel, padding, strides, [6, 6, 6])?;
            assert_swapped_and_agree(model, &case)?;
        }
        Ok(())
    }

    #[test]
    fn grouped_convs_other_than_depthwise_stay_with_tract() -> TractResult<()> {
        let pad = PaddingSpec::Explicit(tvec!(1, 1), tvec!(1, 1));
        for (c, o, group) in [(6, 6, 2), (6, 12, 6), (6, 6, 3)] {
            let model = grouped_model(Some(1), [3, 3], pad.clone(), [1, 1], [c, o, group])?;
            let (swapped, d) = swap_and_compare(model)?;
            assert_eq!(swapped, 0, "{c} → {o} in {group} groups");
            assert_eq!(d, 0.0);
        }
        let asymmetric = PaddingSpec::Explicit(tvec!(1, 1), tvec!(0, 1));
        let model = grouped_model(Some(1), [3, 3], asymmetric, [1, 1], [6, 6, 6])?;
        assert_eq!(swap_and_compare(model)?.0, 0);
        Ok(())
    }

    #[test]
    fn strided_convs_are_swapped_and_agree() -> TractResult<()> {
        for (n, kernel, padding, strides) in [
            (Some(2), [3, 3], explicit([1, 1]), [2, 2]),
            (Some(1), [1, 1], PaddingSpec::Valid, [2, 2]),
            (Some(1), [3, 3], PaddingSpec::SameUpper, [2, 1]),
            (None, [3, 2], explicit([1, 0]), [1, 3]),
        ] {
            let case = format!("{n:?} {kernel:?} {padding:?} {strides:?}");
            assert_swapped_and_agree(conv_model(n, kernel, padding, strides)?, &case)?;
        }
        Ok(())
    }

    /// An average pool that counts the padding runs as a depthwise conv; one that does not
    /// (its border divisors vary) stays with tract.
    #[test]
    fn average_pools_counting_the_padding_are_swapped_and_agree() -> TractResult<()> {
        for count_include_pad in [true, false] {
            let shape = [2, 4, 9, 11];
            let mut model = TypedModel::default();
            let x = model.add_source("x", f32::fact(shape))?;
            let pool_spec = window_spec(true, [3, 3], explicit([1, 1]), [1, 2], [4, 4]);
            let pool = SumPool::new(pool_spec, count_include_pad, true);
            let y = model.wire_node("pool", pool, &[x])?;
            model.select_output_outlets(&y)?;
            let (swapped, d) = swap_and_compare(model)?;
            assert_eq!(swapped, count_include_pad as usize);
            assert!(d < 1e-6, "max difference {d:e}");
        }
        Ok(())
    }

    /// A max pool without padding runs as ours; one with padding stays with tract.
    #[test]
    fn max_pools_without_padding_are_swapped_and_agree() -> TractResult<()> {
        for (padding, expected) in [(PaddingSpec::Valid, 1), (explicit([1, 1]), 0)] {
            let mut model = TypedModel::default();
            let x = model.add_source("x", f32::fact([2, 4, 27, 23]))?;
            let pool_spec = window_spec(true, [5, 5], padding, [5, 5], [4, 4]);
            let y = model.wire_node("pool", MaxPool::new(pool_spec, None), &[x])?;
            model.select_output_outlets(&y)?;
            let (swapped, d) = swap_and_compare(model)?;
            assert_eq!(swapped, expected);
            assert_eq!(d, 0.0);
        }
        Ok(())
    }

    #[test]
    fn other_convs_stay_with_tract() -> TractResult<()> {
        for (kernel, padding, strides) in [
            ([2, 2], PaddingSpec::SameUpper, [1, 1]),
            (
                [3, 3],
                PaddingSpec::Explicit(tvec!(1, 1), tvec!(0, 1)),
                [1, 1],
            ),
            // 9 × 11 at stride 2: one row and one column of padding, after.
            ([2, 2], PaddingSpec::SameUpper, [2, 2]),
        ] {
            let (swapped, _) =
                swap_and_compare(conv_model(Some(1), kernel, padding.clone(), strides)?)?;
            assert_eq!(swapped, 0, "{kernel:?} {padding:?} {strides:?}");
        }
        Ok(())
    }
}
