//! Tensor ops with hand-written backward passes: convolution, depthwise convolution, max and
//! average pooling.
//!
//! Why they exist (`docs/architecture.md` § "candle on CPU: what is wrong and what is slow"):
//! candle's `max_pool2d` backward is wrong (and refuses kernel != stride), its conv backward is a
//! naive single-threaded loop, its conv takes one stride for both axes, and its grouped conv runs
//! one conv per group. The CP-Mobile model (`docs/models.md` § cp-mobile) needs asymmetric strides
//! (1, 2) and (2, 1), depthwise 3×3 convs and a padded 3×3 average pool; the baseline CNN pools odd
//! widths.
//!
//! On CPU with f32 every op here is a candle [`candle_core::CustomOp1`]/[`candle_core::CustomOp2`]
//! with a forward that uses rayon and a backward written by hand, checked against PyTorch float64
//! (`tests/ops_torch.rs`). On other devices or dtypes the same functions fall back to compositions
//! of candle ops whose gradients are correct ([`fallback`]); they are slower but right.
//!
//! Layout everywhere: NCHW; weights OIHW; strides and paddings are `(height, width)` pairs.

pub mod across;
pub mod activation;
pub mod centre;
pub mod conv;
pub mod depthwise;
pub mod equalize;
pub mod fallback;
pub mod gated;
mod planes;
pub mod pool;
pub mod rows;
pub mod standardize;
mod window;

use candle_core::backend::BackendStorage;
use std::mem::MaybeUninit;

use candle_core::{bail, CpuStorage, Layout, Result, Storage, Tensor};
use rayon::prelude::*;

pub use across::{synchronised, BatchRows, SumAcross};
pub use activation::{relu, Activation};
pub use centre::centre_standardize;
pub use conv::conv2d;
pub use depthwise::depthwise_conv2d;
pub use equalize::equalize_samples;
pub use gated::{gap_gate, gated_depthwise};
pub use planes::{Grouping, Standardized};
pub use pool::{avg_pool2d, max_pool2d};
pub use rows::unit_row_sum;
pub use standardize::{
    plane_affine, standardize, standardize_scaled, standardize_skip, SampleScaling,
};

/// Whether the fast custom-op path applies: CPU tensors of dtype f32.
pub(crate) fn use_cpu_kernels(ts: &[&Tensor]) -> bool {
    ts.iter()
        .all(|t| t.device().is_cpu() && t.dtype() == candle_core::DType::F32)
}

/// The contiguous f32 data of a CPU storage, or an error naming the op.
pub(crate) fn cpu_f32<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(v) => v.as_slice(),
        other => bail!("{op}: expected f32, got {:?}", other.dtype()),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => bail!("{op}: expected a contiguous tensor, got layout {l:?}"),
    }
}

/// Runs `f` on the contiguous f32 data of a CPU tensor (used by the backward passes, which
/// receive tensors rather than storages).
pub(crate) fn with_f32<R>(t: &Tensor, op: &str, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = t.contiguous()?;
    let (st, l) = t.storage_and_layout();
    match &*st {
        Storage::Cpu(cs) => f(cpu_f32(cs, l, op)?),
        _ => bail!(
            "{op}: the CPU kernel got a tensor on {:?}",
            t.device().location()
        ),
    }
}

/// A backward's result for argument `t`: `v` shaped like `t`, or `None` where `t` is not part of
/// a graph (a constant needs no gradient) or none was computed.
pub(crate) fn grad_tensor(t: &Tensor, v: Option<Vec<f32>>) -> Result<Option<Tensor>> {
    v.filter(|_| t.track_op())
        .map(|v| Tensor::from_vec(v, t.shape(), t.device()))
        .transpose()
}

/// A vector of `len` values written by `fill(chunk index, chunk)` over chunks of `chunk` values
/// in parallel (at least `min_chunks` per task), without zeroing the memory first: the memset of
/// `vec![0; len]` was 12% of a training step. `fill` must write every element of its chunk.
pub(crate) fn par_fill(
    len: usize,
    chunk: usize,
    min_chunks: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync + Send,
) -> Vec<f32> {
    let mut v: Vec<f32> = Vec::with_capacity(len);
    v.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk.max(1))
        .with_min_len(min_chunks.max(1))
        .enumerate()
        .for_each(|(i, c)| fill(i, c));
    // SAFETY: the capacity is `len`, and every element below it was initialised by `fill`
    // (each caller writes its whole chunk from a zip over equally long slices).
    unsafe { v.set_len(len) };
    v
}
