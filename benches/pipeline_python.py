#!/usr/bin/env python3
"""Python side of the end-to-end row of `cargo bench --bench infer`: for every WAV in a folder,
decode (soundfile), log-mel with librosa (the model's `asc.frontend` settings, HTK mels, ln), and
onnxruntime on the exported model; prints the median ms per folder over 3 runs.
Usage: pipeline_python.py MODEL.onnx DIR"""
import glob
import json
import sys
import time

import librosa
import numpy as np
import onnxruntime as ort
import soundfile as sf


def main():
    path, folder = sys.argv[1], sys.argv[2]
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    fe = json.loads(sess.get_modelmeta().custom_metadata_map["asc.frontend"])
    files = sorted(glob.glob(folder + "/*.wav"))

    def run():
        for f in files:
            y, sr = sf.read(f, dtype="float32")
            if sr != fe["sr"]:
                y = librosa.resample(y, orig_sr=sr, target_sr=fe["sr"])
            m = librosa.feature.melspectrogram(
                y=y, sr=fe["sr"], n_fft=fe["n_fft"], win_length=fe["win_length"],
                hop_length=fe["hop_length"], n_mels=fe["n_mels"], fmin=fe["fmin"],
                fmax=fe["fmax"], htk=fe["htk"], norm=None if fe["norm"] == "none" else "slaney",
                pad_mode=fe["pad_mode"])
            x = np.log(m + fe["log"]["offset"]).astype(np.float32)[None, None]
            sess.run(["probs"], {"logmel": x})

    run()
    t = []
    for _ in range(3):
        s = time.perf_counter()
        run()
        t.append((time.perf_counter() - s) * 1e3)
    print(json.dumps({"ms": sorted(t)[1], "files": len(files)}))


if __name__ == "__main__":
    main()
