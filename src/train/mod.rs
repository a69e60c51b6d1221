//! Training: data batches with augmentation, optimisers with savable state, schedules, the
//! loop with checkpoints and resumption, evaluation metrics and their charts.

pub mod augment;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod evaluate;
pub mod metrics;
pub mod optim;
pub mod plot;
pub mod run;
pub mod schedule;
pub mod session;

pub use config::TrainConfig;
pub use run::{train, RunOptions, RunSummary, TrainError};
pub use session::Session;
