#!/usr/bin/env python3
"""The same .onnx from Python with onnxruntime, no Rust and no librosa: a `--waveform` model
holds the whole front end, so a consumer only decodes audio and feeds samples.

    pip install numpy onnxruntime
    python3 examples/onnxruntime_waveform.py models/quickstart-cnn-waveform.onnx audio/*.wav

WAV files are read with the standard library (8/16/24/32-bit PCM), downmixed, and (for this
example only) resampled by linear interpolation when their rate differs from the model's; use a
proper resampler (soxr, scipy.signal.resample_poly) for real work.
"""
import json
import sys
import wave

import numpy as np
import onnxruntime as ort


def read_wav(path):
    with wave.open(path, "rb") as w:
        rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
        raw = w.readframes(w.getnframes())
    if width == 1:
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128) / 128
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = np.where(v >= 1 << 23, v - (1 << 24), v).astype(np.float32) / (1 << 23)
    else:
        dt = {2: np.int16, 4: np.int32}[width]
        x = np.frombuffer(raw, dt).astype(np.float32) / float(np.iinfo(dt).max + 1)
    return x.reshape(-1, channels).mean(axis=1), rate


def main():
    model_path, files = sys.argv[1], sys.argv[2:]
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    labels = json.loads(meta["asc.labels"])
    sr = json.loads(meta["asc.frontend"])["sr"]
    if meta["asc.input"] != "waveform":
        sys.exit("this example needs a model exported with `asc export --waveform`")
    for f in files:
        x, rate = read_wav(f)
        if rate != sr:
            t = np.arange(int(len(x) * sr / rate)) * rate / sr
            x = np.interp(t, np.arange(len(x)), x).astype(np.float32)
        probs = session.run(["probs"], {"waveform": x[None, :]})[0][0]
        best = np.argsort(probs)[::-1][:3]
        print(f"{f:<28} " + ", ".join(f"{labels[i]} {probs[i]:.3f}" for i in best))


if __name__ == "__main__":
    main()
