//! Training: data batches with augmentation, optimisers with savable state, schedules, the
//! loop with checkpoints and resumption, evaluation metrics and their charts.

pub mod augment;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod dir;
mod epoch;
pub mod error;
pub mod evaluate;
pub mod metrics;
pub mod optim;
pub mod parallel;
pub mod plot;
pub mod predict;
pub mod run;
pub mod rundata;
pub mod schedule;
pub mod session;
pub mod state;
pub mod teacher;

pub use config::TrainConfig;
pub use error::TrainError;
pub use run::{train, RunOptions, RunSummary};
pub use session::Session;
