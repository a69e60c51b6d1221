#!/usr/bin/env python3
"""`asc features` as a whole process against the librosa loop a user would write, both on one
thread, over the same folder of WAVs (issue 16's front-end goal): decode, log-mel with the
dcase2020 preset (44.1 kHz, n_fft 2048, hop 1024, 128 HTK mels, ln(x + 1e-8)), one .npy per file.
Ours is timed from process start to exit; the Python loop after one warm-up pass, without its
start-up. Best of REPS runs each, alternated. Prints one JSON line.

    python3 benches/features_process.py ASC_BINARY DIR [REPS]
"""
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

import librosa
import numpy as np
import soundfile as sf


def python_loop(files, out):
    for f in files:
        y, sr = sf.read(f, dtype="float32")
        if y.ndim > 1:
            y = y.mean(axis=1)
        if sr != 44100:
            y = librosa.resample(y, orig_sr=sr, target_sr=44100)
        m = librosa.feature.melspectrogram(y=y, sr=44100, n_fft=2048, hop_length=1024,
                                           n_mels=128, htk=True, norm=None)
        np.save(os.path.join(out, os.path.basename(f)[:-4] + ".npy"),
                np.log(m + 1e-8).astype(np.float32))


def main():
    asc, folder = sys.argv[1:3]
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    files = sorted(glob.glob(folder + "/*.wav"))
    env = dict(os.environ, RAYON_NUM_THREADS="1", OMP_NUM_THREADS="1")
    ours, py = [], []
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        python_loop(files, b)
        for _ in range(reps):
            s = time.perf_counter()
            subprocess.run([asc, "features", "--preset", "dcase2020", "--out", a, folder],
                           env=env, check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            ours.append(time.perf_counter() - s)
            s = time.perf_counter()
            python_loop(files, b)
            py.append(time.perf_counter() - s)
    print(json.dumps({"files": len(files), "asc_features_s": min(ours), "python_loop_s": min(py),
                      "speedup": min(py) / min(ours)}))


if __name__ == "__main__":
    main()
