//! Exported models give the same probabilities in tract as the candle eval forward, for every
//! architecture with every norm (issue: "tract output vs candle eval output ≤ 1e-4"), on two
//! clip lengths; and a `--waveform` model (front end inside the graph) agrees with the Rust
//! front end followed by the same network.

mod narrow;

use asc::export::{self, InputKind, ModelMetadata};
use asc::features::{FrontendConfig, LogMel};
use asc::infer::Classifier;
use asc::nn::norm::NORM_NAMES;
use asc::train::{Session, TrainConfig};
use candle_core::{Device, Tensor, D};
use prost::Message;
use std::path::PathBuf;

/// A model of `name` with `norm` whose running statistics have moved off their initial values
/// (a few train-mode forwards on shifted data), so the eval path really uses them.
fn session(model: &str, norm: &str, n_mels: usize) -> Session {
    let mut c = TrainConfig::defaults(model, norm, PathBuf::from("-"), PathBuf::from("-"));
    c.labels = (0..5).map(|i| format!("class{i}")).collect();
    c.model.n_classes = 5;
    c.frontend.n_mels = n_mels;
    c.model = narrow::export_widths(c.model);
    let s = Session::build(c, Device::Cpu).unwrap();
    // Input standardisation with statistics other than (0, 1), so the graph's Sub/Div matter.
    let stats = s
        .model
        .input_stats()
        .expect("the defaults standardise the input");
    let mean: Vec<f32> = (0..n_mels).map(|b| -0.5 + 0.02 * b as f32).collect();
    let std: Vec<f32> = (0..n_mels).map(|b| 0.6 + 0.03 * b as f32).collect();
    stats.set_stats(&mean, &std).unwrap();
    for seed in 0..3u64 {
        let x = input(seed, 4, n_mels, 40);
        let x = ((x * 2.0).unwrap() + 0.5).unwrap();
        s.model.forward_t(&x, true).unwrap();
    }
    s
}

fn input(seed: u64, n: usize, m: usize, t: usize) -> Tensor {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let v: Vec<f32> = (0..n * m * t)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f32 / (1u64 << 53) as f32 * 4.0 - 2.0
        })
        .collect();
    Tensor::from_vec(v, (n, 1, m, t), &Device::Cpu).unwrap()
}

fn metadata(s: &Session, input: InputKind, frontend: FrontendConfig) -> ModelMetadata {
    ModelMetadata {
        labels: s.config.labels.clone(),
        frontend,
        input,
        clip_frames: 40,
        model: s.config.model.name.clone(),
        norm: s.config.norm.clone(),
        version: "test".into(),
        training: serde_json::Value::Null,
        devices: Vec::new(),
    }
}

/// [`session`] with the metadata of a log-mel input of `m` bands.
fn logmel_model(model: &str, norm: &str, m: usize) -> (Session, ModelMetadata) {
    let s = session(model, norm, m);
    let mut fe = FrontendConfig::dcase2020();
    fe.n_mels = m;
    let meta = metadata(&s, InputKind::Logmel, fe);
    (s, meta)
}

fn classifier(s: &Session, meta: &ModelMetadata) -> Classifier {
    let bytes = export::model_graph(s, meta)
        .unwrap()
        .to_model()
        .encode_to_vec();
    Classifier::from_bytes(std::path::Path::new("test.onnx"), &bytes).unwrap()
}

fn candle_probs(s: &Session, x: &Tensor) -> Vec<f32> {
    let logits = s.model.forward_t(x, false).unwrap();
    candle_nn::ops::softmax(&logits, D::Minus1)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn tract_matches_candle_for_every_model_and_norm() {
    let mut report = Vec::new();
    for model in asc::nn::models::MODEL_NAMES {
        for norm in NORM_NAMES {
            let m = 40;
            let s = session(model, norm, m);
            let mut fe = FrontendConfig::dcase2020();
            fe.n_mels = m;
            let c = classifier(&s, &metadata(&s, InputKind::Logmel, fe.clone()));
            // Two clip lengths (odd, to exercise pooling remainders) and a batch of 3.
            for (seed, t) in [(11u64, 37usize), (12, 52)] {
                let x = input(seed, 3, m, t);
                let expect = candle_probs(&s, &x);
                let mut got = Vec::new();
                for b in 0..3 {
                    let row = x.narrow(0, b, 1).unwrap();
                    let spec = asc::features::Spectrogram {
                        n_mels: m,
                        frames: t,
                        data: row.flatten_all().unwrap().to_vec1().unwrap(),
                    };
                    got.extend(c.classify_spectrograms(&[spec]).unwrap().concat());
                }
                let d = max_diff(&got, &expect);
                report.push(format!("{model}/{norm} T={t}: {d:.2e}"));
                assert!(d <= 1e-4, "{model} with {norm}, T={t}: max |Δp| = {d}");
            }
        }
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn waveform_model_matches_rust_front_end() {
    let fe = FrontendConfig {
        sr: 16000,
        n_fft: 512,
        win_length: 400,
        hop_length: 160,
        n_mels: 40,
        fmax: 8000.0,
        ..FrontendConfig::cpjku()
    };
    for (model, norm, log) in [
        ("cp-mobile", "l2bn", FrontendConfig::cpjku().log),
        ("cnn", "bn", FrontendConfig::librosa().log),
    ] {
        let s = session(model, norm, fe.n_mels);
        let fe = FrontendConfig { log, ..fe.clone() };
        let wave = classifier(&s, &metadata(&s, InputKind::Waveform, fe.clone()));
        let mel = classifier(&s, &metadata(&s, InputKind::Logmel, fe.clone()));
        // Exactly 40 frames: (40 − 1) · hop samples, a mixture of tones and noise.
        let n = 39 * fe.hop_length;
        let mut state = 7u64;
        let samples: Vec<f32> = (0..n)
            .map(|i| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                let noise = ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2;
                (i as f32 * 0.07).sin() * 0.5 + (i as f32 * 0.31).sin() * 0.1 + noise
            })
            .collect();
        let a = wave.classify_samples(&samples, fe.sr).unwrap();
        let b = mel.classify_samples(&samples, fe.sr).unwrap();
        let spec = LogMel::new(fe.clone()).unwrap().compute(&samples);
        assert_eq!(spec.frames, 40);
        let x = Tensor::from_vec(spec.data.clone(), (1, 1, fe.n_mels, 40), &Device::Cpu).unwrap();
        let expect = candle_probs(&s, &x);
        let (da, db) = (max_diff(&a.scores, &expect), max_diff(&b.scores, &expect));
        eprintln!("{model}/{norm} waveform: {da:.2e}, logmel: {db:.2e}");
        assert!(
            da <= 1e-4,
            "{model}/{norm}: waveform graph vs Rust front end: {da}"
        );
        assert!(db <= 1e-4, "{model}/{norm}: logmel graph vs candle: {db}");
    }
}

#[test]
fn malformed_models_are_refused_with_a_reason() {
    let s = session("cnn", "bn", 40);
    let mut fe = FrontendConfig::dcase2020();
    fe.n_mels = 40;
    let meta = metadata(&s, InputKind::Logmel, fe);
    let bytes = export::model_graph(&s, &meta)
        .unwrap()
        .to_model()
        .encode_to_vec();
    let path = std::path::Path::new("m.onnx");
    let err = |b: &[u8]| Classifier::from_bytes(path, b).unwrap_err().to_string();
    let truncated = err(&bytes[..bytes.len() / 2]);
    assert!(truncated.starts_with("m.onnx: "), "{truncated}");
    assert!(err(b"RIFF....WAVEfmt ").contains("m.onnx"));
    assert!(err(&[]).contains("no graph"));
    // Without labels the model is unusable for classification.
    let mut proto = export::model_graph(&s, &meta).unwrap().to_model();
    proto.metadata_props.retain(|p| p.key != "asc.labels");
    let e = err(&proto.encode_to_vec());
    assert!(e.contains("asc.labels"), "{e}");
}

/// Our convolutions, swapped into tract's plan (`src/infer/conv_op.rs`), take the `cnn`'s three
/// 7×7 convolutions and its first max pool, and `cp-mobile`'s six depthwise 3×3, thirteen 1×1
/// and two strided 3×3 convolutions and its average pool, and give tract's own probabilities.
#[test]
fn own_conv_is_swapped_in_and_matches_tract_conv() {
    use asc::infer::ConvKernel;
    let mut report = Vec::new();
    for model in ["cnn", "cp-mobile"] {
        for norm in NORM_NAMES {
            let m = 40;
            let (s, meta) = logmel_model(model, norm, m);
            let own = classifier(&s, &meta).with_conv_kernel(ConvKernel::Own);
            let tract = classifier(&s, &meta).with_conv_kernel(ConvKernel::Tract);
            let t = 37;
            let swapped = own.own_convs(&[1, 1, m, t]).unwrap();
            assert_eq!(tract.own_convs(&[1, 1, m, t]).unwrap(), 0);
            let expected = if model == "cnn" {
                3 + 1
            } else {
                6 + 13 + 2 + 1
            };
            assert!(
                swapped >= expected,
                "{model}/{norm}: {swapped} convs swapped"
            );
            if norm == "bn" {
                assert_eq!(swapped, expected, "{model}/{norm}");
            }
            let x = input(21, 3, m, t);
            let specs: Vec<asc::features::Spectrogram> = (0..3)
                .map(|b| asc::features::Spectrogram {
                    n_mels: m,
                    frames: t,
                    data: x
                        .narrow(0, b, 1)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1()
                        .unwrap(),
                })
                .collect();
            let a = own.classify_spectrograms(&specs).unwrap().concat();
            let b = tract.classify_spectrograms(&specs).unwrap().concat();
            let d = max_diff(&a, &b);
            report.push(format!("{model}/{norm}: {swapped} swapped, {d:.2e}"));
            assert!(
                d <= 1e-5,
                "{model}/{norm}: own vs tract conv: max |Δp| = {d}"
            );
        }
    }
    eprintln!("{}", report.join("\n"));
}

/// Compact files: float16 weights (`--fp16`) or int8 conv and dense weights with per-channel
/// scales (`--int8`) shrink the file, every runtime still computes in float32 (tract keeps our
/// convolution swap: the conversions of constants fold away), and the probabilities stay close
/// to the float32 file's, for both models with every norm.
#[test]
fn compact_weights_keep_the_plan_and_stay_close() {
    use asc::onnx::precision::{store_weights_as_fp16, store_weights_as_int8};
    let mut report = Vec::new();
    for model in asc::nn::models::MODEL_NAMES {
        for norm in NORM_NAMES {
            let m = 40;
            let (s, meta) = logmel_model(model, norm, m);
            let f32_model = export::model_graph(&s, &meta).unwrap().to_model();
            let full_bytes = f32_model.encode_to_vec();
            let load = |bytes: &[u8]| Classifier::from_bytes(std::path::Path::new("t.onnx"), bytes);
            let full = load(&full_bytes).unwrap();
            let t = 37;
            let x = input(31, 1, m, t);
            let spec = asc::features::Spectrogram {
                n_mels: m,
                frames: t,
                data: x.flatten_all().unwrap().to_vec1().unwrap(),
            };
            let p = full
                .classify_spectrograms(std::slice::from_ref(&spec))
                .unwrap()
                .concat();
            // (name, rewrite, largest size ratio, largest probability change)
            type Rewrite = fn(&mut tract_onnx::pb::ModelProto) -> usize;
            let kinds: [(&str, Rewrite, f64, f32); 2] = [
                ("fp16", |m| store_weights_as_fp16(m).tensors, 0.6, 1e-2),
                ("int8", |m| store_weights_as_int8(m).tensors, 0.5, 0.1),
            ];
            for (kind, rewrite, size, bound) in kinds {
                let mut compact = f32_model.clone();
                assert!(rewrite(&mut compact) > 0, "{model}/{norm} {kind}");
                let bytes = compact.encode_to_vec();
                let ratio = bytes.len() as f64 / full_bytes.len() as f64;
                assert!(
                    ratio < size,
                    "{model}/{norm} {kind}: {ratio:.2} of the bytes"
                );
                let c = load(&bytes).unwrap();
                assert_eq!(
                    c.own_convs(&[1, 1, m, t]).unwrap(),
                    full.own_convs(&[1, 1, m, t]).unwrap(),
                    "{model}/{norm} {kind}"
                );
                let q = c
                    .classify_spectrograms(std::slice::from_ref(&spec))
                    .unwrap()
                    .concat();
                let d = max_diff(&p, &q);
                report.push(format!(
                    "{model}/{norm} {kind}: {ratio:.2} of the bytes, {d:.2e}"
                ));
                assert!(
                    d > 0.0 && d <= bound,
                    "{model}/{norm} {kind}: max |Δp| = {d}"
                );
            }
        }
    }
    eprintln!("{}", report.join("\n"));
}
