#!/usr/bin/env python3
"""Python side of the end-to-end row of `cargo bench --bench infer`: for every WAV in a folder,
decode (soundfile), log-mel with librosa (the model's `asc.frontend` settings, HTK mels, ln), and
onnxruntime on the exported model; prints the median ms per folder over 3 runs.
Usage: pipeline_python.py MODEL.onnx DIR
(benches/classify_process.py reuses `runner` for its one-thread comparison.)"""
import glob
import json
import sys
import time

import librosa
import numpy as np
import onnxruntime as ort
import soundfile as sf


def runner(path, files, threads=0):
    """A function classifying every file once, the way a user's script would; `threads` > 0
    pins onnxruntime to that many threads (0: its default)."""
    opts = ort.SessionOptions()
    if threads > 0:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = threads
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    fe = json.loads(sess.get_modelmeta().custom_metadata_map["asc.frontend"])
    input_name = sess.get_inputs()[0].name

    def run():
        for f in files:
            y, sr = sf.read(f, dtype="float32")
            if y.ndim > 1:
                y = y.mean(axis=1)
            if sr != fe["sr"]:
                y = librosa.resample(y, orig_sr=sr, target_sr=fe["sr"])
            m = librosa.feature.melspectrogram(
                y=y, sr=fe["sr"], n_fft=fe["n_fft"], win_length=fe["win_length"],
                hop_length=fe["hop_length"], n_mels=fe["n_mels"], fmin=fe["fmin"],
                fmax=fe["fmax"], htk=fe["htk"], norm=None if fe["norm"] == "none" else "slaney",
                pad_mode=fe["pad_mode"])
            x = np.log(m + fe["log"]["offset"]).astype(np.float32)[None, None]
            sess.run(None, {input_name: x})

    return run


def main():
    path, folder = sys.argv[1], sys.argv[2]
    files = sorted(glob.glob(folder + "/*.wav"))
    run = runner(path, files)
    run()
    t = []
    for _ in range(3):
        s = time.perf_counter()
        run()
        t.append((time.perf_counter() - s) * 1e3)
    print(json.dumps({"ms": sorted(t)[1], "files": len(files)}))


if __name__ == "__main__":
    main()
