//! InstanceNorm (Ulyanov et al., arXiv 1607.08022), docs/norms.md §2.4: GN with G = C, affine
//! (judgement in §2.4: same parameter count as BN). Degenerate when H·W = 1 (output β).
//! Exported through the GN decomposition, which with G = C is one InstanceNormalization.

use candle_core::Result;

use super::gn::GroupNorm;
use super::{Norm, NormBuilder, NormConfig, NormEntry};

/// The registry entry (docs/architecture.md, "Adding a norm").
pub const ENTRY: NormEntry = NormEntry::new("in", build).standardizing(always);

/// G = C: every (sample, channel) map is standardized on its own.
fn always(_c: usize, _cfg: &NormConfig) -> bool {
    true
}

pub fn build(c: usize, cfg: &NormConfig, nb: &NormBuilder) -> Result<Box<dyn Norm>> {
    Ok(Box::new(GroupNorm::new(ENTRY.name, c, c, cfg, nb)?))
}
