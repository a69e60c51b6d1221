//! Decodes a WAV, downmixes and resamples it exactly as training and `classify` do, and writes the
//! samples as a float32 `.npy`: the Rust side of `scripts/resample_vs_soxr.py`.
//! Run: `cargo run --example resample -- IN.wav RATE OUT.npy`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, rate, out] = args.as_slice() else {
        return Err("usage: resample IN.wav RATE OUT.npy".into());
    };
    let (samples, _) = asc::audio::load_mono(input.as_ref(), Some(rate.parse()?))?;
    ndarray_npy::write_npy(out, &ndarray::Array1::from(samples))?;
    Ok(())
}
