//! LayerNorm for conv features (Ba et al., arXiv 1607.06450), docs/norms.md §2.3: GN with G = 1,
//! statistics over (C, H, W) per sample, **per-channel** γ, β so any H, W is accepted.

use candle_core::Result;

use super::gn::GroupNorm;
use super::{Norm, NormBuilder, NormConfig, NormEntry};

/// The registry entry (docs/architecture.md, "Adding a norm").
pub const ENTRY: NormEntry = NormEntry::new("ln", build);

pub fn build(c: usize, cfg: &NormConfig, nb: &NormBuilder) -> Result<Box<dyn Norm>> {
    Ok(Box::new(GroupNorm::new(ENTRY.name, c, 1, cfg, nb)?))
}
