//! Training: optimisers with savable state, learning-rate schedules, metrics.

pub mod metrics;
pub mod optim;
pub mod schedule;
