//! Embedding `asc` in another Rust program: load an exported model once, classify files and
//! sample buffers. Run: `cargo run --example embed [MODEL.onnx] [WAV...]` (defaults: the
//! pretrained model in `models/` and the clips in `audio/`).

use asc::Classifier;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut args = std::env::args().skip(1);
    let model = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("models/quickstart-cnn.onnx"));
    let mut files: Vec<PathBuf> = args.map(PathBuf::from).collect();
    if files.is_empty() {
        files = asc::audio::collect_inputs(&[root.join("audio")])?;
    }

    // Load and check the model once; it carries its labels and front-end settings.
    let classifier = Classifier::from_onnx(&model)?;
    let meta = classifier.metadata();
    println!(
        "{}: {} with {}, {} classes, {} Hz input",
        model.display(),
        meta.model,
        meta.norm,
        classifier.labels().len(),
        classifier.sample_rate()
    );

    // Files: decoded, downmixed and resampled exactly as in training.
    for file in &files {
        let p = classifier.classify_file(file)?;
        println!(
            "{:<28} {:<16} {:.3} ({} windows)",
            file.file_name().unwrap_or_default().to_string_lossy(),
            p.label,
            p.scores.iter().cloned().fold(0.0, f32::max),
            p.windows.len()
        );
    }

    // Samples from anywhere (a microphone, a decoder of another format): any rate, mono.
    let rate = 48_000;
    let tone: Vec<f32> = (0..rate * 2)
        .map(|i| (i as f32 * 440.0 * std::f32::consts::TAU / rate as f32).sin() * 0.3)
        .collect();
    let p = classifier.classify_samples(&tone, rate as u32)?;
    for (label, score) in p.top_k(classifier.labels(), 3) {
        println!("440 Hz tone: {label:<16} {score:.3}");
    }
    Ok(())
}
