//! The (N, C, L) view of an activation that the normalization kernels ([`super::standardize`],
//! [`super::equalize`]) and their candle-op fallbacks share: which planes share statistics
//! ([`Grouping`]), the sizes of the view ([`PlaneGeom`]) and what a standardization returns
//! ([`Standardized`]). The sums over a plane are [`crate::kernels::reduce`]'s.

use candle_core::{bail, Result, Tensor};

/// Which values share one mean and variance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grouping {
    /// One statistic per channel over the batch and L (BN, docs/norms.md §1).
    Channel,
    /// One statistic per sample and group of C/G consecutive channels over L (GN, docs/norms.md
    /// §2.2).
    SampleGroups(usize),
}

/// Output of [`super::standardize()`]: `y` and the detached biased statistics, (C) for
/// [`Grouping::Channel`], (N·G) for [`Grouping::SampleGroups`].
pub struct Standardized {
    pub y: Tensor,
    pub mean: Tensor,
    pub var: Tensor,
    /// The values each statistic covers: over every rank when synchronised
    /// ([`super::across`]), what the running variance's unbiasing needs.
    pub count: f64,
}

/// Shape of the (N, C, L) view and of its statistic groups.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PlaneGeom {
    pub n: usize,
    pub c: usize,
    pub l: usize,
    pub grouping: Grouping,
}

impl PlaneGeom {
    pub(crate) fn new(x: &Tensor, grouping: Grouping) -> Result<Self> {
        let (n, c, l) = x.dims3()?;
        if n * c * l == 0 {
            bail!("normalization of an empty tensor of shape {:?}", x.dims());
        }
        if let Grouping::SampleGroups(g) = grouping {
            if g == 0 || !c.is_multiple_of(g) {
                bail!("group norm: {g} groups do not divide {c} channels");
            }
        }
        Ok(Self { n, c, l, grouping })
    }

    /// Number of statistic groups.
    pub fn n_groups(&self) -> usize {
        match self.grouping {
            Grouping::Channel => self.c,
            Grouping::SampleGroups(g) => self.n * g,
        }
    }

    /// Values per statistic group.
    pub fn count(&self) -> usize {
        match self.grouping {
            Grouping::Channel => self.n * self.l,
            Grouping::SampleGroups(g) => self.c / g * self.l,
        }
    }

    /// Statistic group of plane `p` = (sample, channel) in row-major order.
    #[inline]
    pub(crate) fn group_of(&self, p: usize) -> usize {
        match self.grouping {
            Grouping::Channel => p % self.c,
            Grouping::SampleGroups(g) => (p / self.c) * g + (p % self.c) / (self.c / g),
        }
    }

    /// Planes per rayon task: enough values that scheduling stays negligible.
    pub(crate) fn min_planes(&self) -> usize {
        planes_per_task(self.l)
    }
}

/// Planes of `len` values per rayon task: at least 16 384 values, so that scheduling stays
/// negligible.
pub(crate) fn planes_per_task(len: usize) -> usize {
    (16_384 / len.max(1)).max(1)
}
