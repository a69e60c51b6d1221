//! The log-mel front end as ONNX ops (`asc export --waveform`), so a consumer can feed raw mono
//! samples at the model's rate with no Rust and no librosa: centre padding as `Pad`, the
//! windowed FFT as opset 17 `STFT` (tract and onnxruntime both implement it), power, the mel
//! projection as one `MatMul`, and the log of `docs/frontend.md` step 6 (and step 7 when set).

use super::graph::{attr_int, attr_ints, attr_string, OnnxGraph};
use crate::features::{ClipNorm, LogMel, LogScale, PadMode};
use candle_core::Result;

/// Appends the front end reading a waveform value (N, samples) and returns the name of the
/// log-mel value (N, 1, n_mels, frames), the layout the models read.
pub fn emit_logmel(g: &mut OnnxGraph, frontend: &LogMel, waveform: &str) -> Result<String> {
    let c = frontend.config();
    let bins = (c.n_fft / 2 + 1) as i64;
    let mut x = waveform.to_string();
    if c.center {
        let half = (c.n_fft / 2) as i64;
        let pads = g.add_initializer_i64("center_pads", &[0, half, 0, half], &[4]);
        let mode = match c.pad_mode {
            PadMode::Constant => "constant",
            PadMode::Reflect => "reflect",
        };
        x = g.add_node("Pad", &[&x, &pads], vec![attr_string("mode", mode)]);
    }
    // STFT wants (N, samples, 1) for a real signal; it returns (N, frames, bins, 2).
    let last = g.add_initializer_i64("axis_last", &[2], &[1]);
    let signal = g.add_node("Unsqueeze", &[&x, &last], vec![]);
    let step = g.add_initializer_i64("hop_length", &[c.hop_length as i64], &[]);
    let window = g.add_initializer("window", frontend.window(), &[c.n_fft as i64]);
    let spectrum = g.add_node(
        "STFT",
        &[&signal, &step, &window],
        vec![attr_int("onesided", 1)],
    );
    let squared = g.add_node("Mul", &[&spectrum, &spectrum], vec![]);
    let re_im = g.add_initializer_i64("axis_re_im", &[3], &[1]);
    let power = g.add_node(
        "ReduceSum",
        &[&squared, &re_im],
        vec![attr_int("keepdims", 0)],
    );
    let fb = g.add_initializer(
        "mel_filterbank",
        &frontend.filterbank_bins_by_mels(),
        &[bins, c.n_mels as i64],
    );
    let mel = g.add_node("MatMul", &[&power, &fb], vec![]);
    let mel = g.add_node("Transpose", &[&mel], vec![attr_ints("perm", &[0, 2, 1])]);
    let mut logmel = emit_log(g, &mel, c.log);
    if c.clip_norm == ClipNorm::Minmax {
        logmel = emit_minmax(g, &logmel);
    }
    let channel = g.add_initializer_i64("axis_channel", &[1], &[1]);
    Ok(g.add_node("Unsqueeze", &[&logmel, &channel], vec![]))
}

fn emit_log(g: &mut OnnxGraph, mel: &str, log: LogScale) -> String {
    match log {
        LogScale::Ln { offset } => {
            let off = g.add_initializer("log_offset", &[offset], &[]);
            let shifted = g.add_node("Add", &[mel, &off], vec![]);
            g.add_node("Log", &[&shifted], vec![])
        }
        LogScale::PowerToDb { amin } => {
            let floor = g.add_initializer("amin", &[amin], &[]);
            let clipped = g.add_node("Max", &[mel, &floor], vec![]);
            let ln = g.add_node("Log", &[&clipped], vec![]);
            let to_db = g.add_initializer("ln_to_db", &[10.0 / std::f32::consts::LN_10], &[]);
            g.add_node("Mul", &[&ln, &to_db], vec![])
        }
    }
}

/// `(x − min) / max(max − min, f32::MIN_POSITIVE)` per clip over (mels, frames), as the Rust
/// front end.
fn emit_minmax(g: &mut OnnxGraph, x: &str) -> String {
    let axes = || vec![attr_ints("axes", &[1, 2]), attr_int("keepdims", 1)];
    let lo = g.add_node("ReduceMin", &[x], axes());
    let hi = g.add_node("ReduceMax", &[x], axes());
    let range = g.add_node("Sub", &[&hi, &lo], vec![]);
    let tiny = g.add_initializer("min_positive", &[f32::MIN_POSITIVE], &[]);
    let range = g.add_node("Max", &[&range, &tiny], vec![]);
    let shifted = g.add_node("Sub", &[x, &lo], vec![]);
    g.add_node("Div", &[&shifted, &range], vec![])
}
