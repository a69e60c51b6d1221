//! Writes, for every model with every norm, an exported model plus an input batch and candle's
//! eval-mode probabilities for it, so another runtime can be checked against them
//! (`scripts/check_onnx.py` runs this, then onnx.checker and onnxruntime). Each model also comes
//! compacted (`asc export --fp16`, `--int8-weights`, `--int8` calibrated on the batch itself)
//! with tract's probabilities for the same batch: the compact files' parity between runtimes.
//! Run: `cargo run --example onnx_fixtures -- OUT_DIR`.

#[path = "../tests/narrow/mod.rs"]
mod narrow;

use asc::export::{self, InputKind, ModelMetadata};
use asc::features::FrontendConfig;
use asc::infer::calibrate::activation_ranges_of;
use asc::infer::Classifier;
use asc::nn::models::MODEL_NAMES;
use asc::nn::norm::NORM_NAMES;
use asc::onnx::precision::{quantize_activations, store_weights_as_fp16, store_weights_as_int8};
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
    let mut written = 0;
    for model in MODEL_NAMES {
        // `fcnn` halves both axes four times: at 40 x 37 its class maps would be 2 x 1, where GN
        // standardising two values turns rounding into visible differences between runtimes.
        // `fsfcnn` halves time five times; at 64 x 69 its maps are 16 x 2.
        let (n_mels, frames) = match model {
            "fcnn" | "fsfcnn" => (64, 69),
            _ => (40, 37),
        };
        for norm in NORM_NAMES {
            let mut c = TrainConfig::defaults(model, norm, "-".into(), "-".into());
            c.labels = (0..5).map(|i| format!("class{i}")).collect();
            c.model.n_classes = 5;
            c.frontend.n_mels = n_mels;
            c.model = narrow::export_widths(c.model);
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
            let proto = export::model_graph(&s, &meta)?.to_model();
            std::fs::write(out.join(format!("{name}.onnx")), proto.encode_to_vec())?;
            written += 1;
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
            written += write_compact(&out, &name, &proto, &x4)?;
        }
    }
    println!("wrote {written} models to {}", out.display());
    Ok(())
}

/// The compact forms of `proto`, each with tract's probabilities for the batch `x`
/// (`<name>.<kind>.onnx`, `<name>.<kind>.tract.npy`); returns how many were written.
fn write_compact(
    out: &std::path::Path,
    name: &str,
    proto: &tract_onnx::pb::ModelProto,
    x: &ndarray::Array4<f32>,
) -> Result<usize, Box<dyn std::error::Error>> {
    let batch = tract_onnx::prelude::Tensor::from(x.clone().into_dyn());
    let (n, _, m, t) = x.dim();
    let specs: Vec<asc::features::Spectrogram> = (0..n)
        .map(|b| asc::features::Spectrogram {
            n_mels: m,
            frames: t,
            data: x.index_axis(ndarray::Axis(0), b).iter().copied().collect(),
        })
        .collect();
    let ranges = activation_ranges_of(proto, &[batch])?;
    type Rewrite<'a> = &'a dyn Fn(&mut tract_onnx::pb::ModelProto);
    let kinds: [(&str, Rewrite); 3] = [
        ("fp16", &|p| {
            store_weights_as_fp16(p);
        }),
        ("int8w", &|p| {
            store_weights_as_int8(p);
        }),
        ("int8", &|p| {
            store_weights_as_int8(p);
            quantize_activations(p, &ranges);
        }),
    ];
    for (kind, rewrite) in kinds {
        let mut compact = proto.clone();
        rewrite(&mut compact);
        let bytes = compact.encode_to_vec();
        let file = out.join(format!("{name}.{kind}.onnx"));
        std::fs::write(&file, &bytes)?;
        let probs = Classifier::from_bytes(&file, &bytes)?
            .classify_spectrograms(&specs)?
            .concat();
        let k = probs.len() / n;
        let p2 = ndarray::Array2::from_shape_vec((n, k), probs)?;
        write_npy(out.join(format!("{name}.{kind}.tract.npy")), &p2)?;
    }
    Ok(kinds.len())
}
