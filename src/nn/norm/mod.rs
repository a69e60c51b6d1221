//! PLACEHOLDER until the norm branch lands: the trait as models use it.
use candle_core::{Result, Tensor};

pub trait Norm: Send + Sync + std::fmt::Debug {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor>;
}
