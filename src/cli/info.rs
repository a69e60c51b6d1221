use asc::audio;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Audio files or folders (walked recursively): WAV, FLAC, Ogg Vorbis, MP3, AIFF, CAF.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let files = audio::collect_inputs(&a.inputs)?;
    let mut failed = 0;
    for path in &files {
        match audio::decode_file(path) {
            Ok(d) => {
                let i = &d.info;
                if a.json {
                    let v = serde_json::json!({
                        "file": path, "container": i.container,
                        "sample_rate": i.sample_rate, "channels": i.channels,
                        "format": i.format, "bits_per_sample": i.bits_per_sample,
                        "extensible": i.extensible, "frames": i.frames,
                        "duration_s": i.duration_secs(),
                    });
                    println!("{v}");
                } else {
                    println!(
                        "{}: {} Hz, {} ch, {}{}, {:.3} s ({} frames)",
                        path.display(),
                        i.sample_rate,
                        i.channels,
                        i.encoding(),
                        if i.extensible { " (extensible)" } else { "" },
                        i.duration_secs(),
                        i.frames
                    );
                }
            }
            Err(e) => {
                failed += 1;
                if a.json {
                    println!("{}", serde_json::json!({"file": path, "error": e.reason}));
                } else {
                    println!("{}: error: {}", path.display(), e.reason);
                }
            }
        }
    }
    Ok(super::batch_status(failed))
}
