//! Writes, for `cnn` and `cp-mobile` with every norm, an exported model plus an input batch and
//! candle's eval-mode probabilities for it, so another runtime can be checked against them
//! (`scripts/check_onnx.py` runs this, then onnx.checker and onnxruntime).
//! Run: `cargo run --example onnx_fixtures -- OUT_DIR`.

use asc::export::{self, InputKind, ModelMetadata};
use asc::features::FrontendConfig;
use asc::nn::norm::NORM_NAMES;
use asc::train::{Session, TrainConfig};
use candle_core::{Device, Tensor, D};
use ndarray_npy::write_npy;
use prost::Message;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: onnx_fixtures OUT_DIR")?,
    );
    std::fs::create_dir_all(&out)?;
    let (n_mels, frames) = (40, 37);
    for model in ["cnn", "cp-mobile"] {
        for norm in NORM_NAMES {
            let mut c = TrainConfig::defaults(model, norm, "-".into(), "-".into());
            c.labels = (0..5).map(|i| format!("class{i}")).collect();
            c.model.n_classes = 5;
            c.frontend.n_mels = n_mels;
            let s = Session::build(c, Device::Cpu)?;
            // Move the running statistics off their initial values.
            for _ in 0..3 {
                let x =
                    Tensor::randn(0f32, 1.0, (4, 1, n_mels, 40), &Device::Cpu)?.affine(2.0, 0.5)?;
                s.model.forward_t(&x, true)?;
            }
            let meta = ModelMetadata {
                labels: s.config.labels.clone(),
                frontend: FrontendConfig {
                    n_mels,
                    ..FrontendConfig::dcase2020()
                },
                input: InputKind::Logmel,
                clip_frames: frames,
                model: model.into(),
                norm: norm.into(),
                version: env!("CARGO_PKG_VERSION").into(),
                training: serde_json::Value::Null,
                devices: Vec::new(),
            };
            let name = format!("{model}_{norm}");
            let bytes = export::model_graph(&s, &meta)?.to_model().encode_to_vec();
            std::fs::write(out.join(format!("{name}.onnx")), bytes)?;
            let x = Tensor::randn(0f32, 1.0, (3, 1, n_mels, frames), &Device::Cpu)?;
            let probs = candle_nn::ops::softmax(&s.model.forward_t(&x, false)?, D::Minus1)?;
            let x4 = ndarray::Array4::from_shape_vec(
                (3, 1, n_mels, frames),
                x.flatten_all()?.to_vec1::<f32>()?,
            )?;
            let p2 =
                ndarray::Array2::from_shape_vec((3, 5), probs.flatten_all()?.to_vec1::<f32>()?)?;
            write_npy(out.join(format!("{name}.input.npy")), &x4)?;
            write_npy(out.join(format!("{name}.candle.npy")), &p2)?;
        }
    }
    println!("wrote {} models to {}", 2 * NORM_NAMES.len(), out.display());
    Ok(())
}
