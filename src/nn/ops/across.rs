//! Synchronised batch statistics: the per-channel sums a batch-statistics layer takes (BN, L2BN,
//! IEBN, GN+'s BN half, UBN's centred BN) summed over every rank of a data-parallel step, in the
//! forward (Σx and the count, then Σ(x − μ)²) and in the backward (Σ∂z and Σ∂z·x̂), so that each
//! rank normalises its rows with the whole batch's moments and back-propagates through them
//! exactly as one process with the whole batch would (`docs/distributed.md`).
//!
//! Why a scope rather than a field of the layer: the layers are built before a run knows its
//! ranks, and the ops run on the thread that runs the step (rayon only computes inside them), so
//! the training step opens [`synchronised`] around its forward and backward and every op built
//! inside picks the ranks up. Threads that stand for ranks in tests each have their own scope.

use std::cell::RefCell;
use std::sync::Arc;

use candle_core::{bail, Result, Tensor};

use super::planes::{Grouping, PlaneGeom};
use super::use_cpu_kernels;

/// What synchronised statistics need from the ranks.
pub trait SumAcross: Send + Sync {
    /// Replaces `values` by their element-wise sum over the ranks (every rank calls it, with the
    /// same length, in the same order).
    fn sum_across(&self, values: &mut [f32]);
}

/// Where this rank's rows sit in the whole batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchRows {
    /// The index of this rank's first row.
    pub first: usize,
    /// The rows of the whole batch, over every rank.
    pub total: usize,
}

#[derive(Clone)]
struct Scope {
    ranks: Arc<dyn SumAcross>,
    rows: BatchRows,
}

thread_local! {
    static SCOPE: RefCell<Option<Scope>> = const { RefCell::new(None) };
}

/// Runs `f` with the batch statistics of every op it builds summed over `ranks`, this rank
/// holding `rows` of the whole batch.
pub fn synchronised<R>(ranks: Arc<dyn SumAcross>, rows: BatchRows, f: impl FnOnce() -> R) -> R {
    /// Restores the outer scope however `f` ends.
    struct Restore(Option<Scope>);
    impl Drop for Restore {
        fn drop(&mut self) {
            SCOPE.with(|s| *s.borrow_mut() = self.0.take());
        }
    }
    let scope = Scope { ranks, rows };
    let _restore = Restore(SCOPE.with(|s| s.borrow_mut().replace(scope)));
    f()
}

/// The ranks a batch-statistics op sums over: none (this process's rows), or the scope's.
#[derive(Clone, Default)]
pub(crate) struct Across(Option<Arc<dyn SumAcross>>);

impl Across {
    /// The current scope's ranks for statistics over the batch ([`Grouping::Channel`]); none for
    /// per-sample statistics (GN, LN, IN), which no rank shares. Refuses the candle-op path
    /// (another device or dtype), which has no synchronised form.
    pub(crate) fn for_op(geom: &PlaneGeom, inputs: &[&Tensor]) -> Result<Self> {
        let Some((across, _)) = Self::current() else {
            return Ok(Self(None));
        };
        if geom.grouping != Grouping::Channel {
            return Ok(Self(None));
        }
        if !use_cpu_kernels(inputs) {
            bail!("synchronised batch statistics run on the CPU f32 kernels only");
        }
        Ok(across)
    }

    /// The current scope's ranks and this rank's rows, outside a scope none: for a layer with
    /// a batch quantity of its own (UBN's cosine between samples).
    pub(crate) fn current() -> Option<(Self, BatchRows)> {
        SCOPE.with(|s| {
            let scope = s.borrow();
            let scope = scope.as_ref()?;
            Some((Self(Some(scope.ranks.clone())), scope.rows))
        })
    }

    /// `sums` summed over the ranks. Each travels as two float32s, its float32 rounding and the
    /// rest, summed apart: a channel whose halves nearly cancel (the BN half of GN+ sees maps GN
    /// has already centred) would otherwise keep only the rounding of its halves.
    pub(crate) fn sum(&self, sums: &mut [f64]) {
        if let Some(ranks) = &self.0 {
            let hi = sums.iter().map(|&s| s as f32);
            let lo = sums.iter().map(|&s| (s - s as f32 as f64) as f32);
            let mut v: Vec<f32> = hi.chain(lo).collect();
            ranks.sum_across(&mut v);
            let (hi, lo) = v.split_at(sums.len());
            for ((s, h), l) in sums.iter_mut().zip(hi).zip(lo) {
                *s = *h as f64 + *l as f64;
            }
        }
    }

    /// Two sets of per-group sums, summed over the ranks in one message (the backward's Σ∂z and
    /// Σ∂z·x̂).
    pub(crate) fn sum_pair(&self, a: &mut [f64], b: &mut [f64]) {
        if self.0.is_none() {
            return;
        }
        let mut ab = [&*a, &*b].concat();
        self.sum(&mut ab);
        let (sa, sb) = ab.split_at(a.len());
        a.copy_from_slice(sa);
        b.copy_from_slice(sb);
    }

    /// Per-group sums and the number of values they cover, summed over the ranks in one message.
    pub(crate) fn sum_with_count(&self, sums: &mut Vec<f64>, count: usize) -> f64 {
        if self.0.is_none() {
            return count as f64;
        }
        sums.push(count as f64);
        self.sum(sums);
        sums.pop().unwrap_or(count as f64)
    }
}
