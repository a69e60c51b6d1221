//! The narrowed FCNN widths that the export parity test (`tests/export_parity.rs`) and the
//! onnxruntime fixtures (`examples/onnx_fixtures.rs`, read by `scripts/check_onnx.py`) build:
//! the same graphs as the papers' widths, in a fraction of the time. Other models are returned
//! unchanged.

use asc::nn::models::{FcnnOptions, FsfcnnOptions, ModelConfig};

pub fn export_widths(model: ModelConfig) -> ModelConfig {
    match model.name.as_str() {
        "fcnn" => model.with_options(FcnnOptions {
            channels: [16, 24, 32],
            ..FcnnOptions::default()
        }),
        "fsfcnn" => model.with_options(FsfcnnOptions {
            channels: [16, 24, 32, 32],
            ..FsfcnnOptions::default()
        }),
        _ => model,
    }
}
