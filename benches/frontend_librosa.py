#!/usr/bin/env python3
"""Times librosa's log-mel on the WAV files of a folder; prints JSON with ms per clip.

Usage: frontend_librosa.py DIR PRESET. Called by `cargo bench --bench frontend` in the same run
as the Rust timings, single-threaded (the BLAS/OpenMP thread variables are set by the caller).
"""
import glob
import json
import sys
import time

import librosa
import numpy as np
import soundfile as sf

PRESETS = {
    "dcase2020": (dict(sr=44100, n_fft=2048, hop_length=1024, n_mels=128, fmin=0.0, fmax=22050,
                       htk=True, norm=None), lambda m: np.log(m + 1e-8)),
    "cpjku": (dict(sr=32000, n_fft=4096, win_length=3072, hop_length=500, n_mels=256, fmin=0.0,
                   fmax=16000, htk=True, norm=None, pad_mode="reflect"), lambda m: np.log(m + 1e-5)),
    "librosa": (dict(sr=22050), lambda m: librosa.power_to_db(m, ref=1.0, amin=1e-10, top_db=None)),
}


def main():
    folder, preset = sys.argv[1], sys.argv[2]
    params, log = PRESETS[preset]
    clips = [sf.read(f, dtype="float32")[0] for f in sorted(glob.glob(folder + "/*.wav"))]
    log(librosa.feature.melspectrogram(y=clips[0], **params))  # warm-up: caches the filterbank
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for y in clips:
            log(librosa.feature.melspectrogram(y=y, **params))
        best = min(best, (time.perf_counter() - t0) / len(clips))
    print(json.dumps({"preset": preset, "librosa": librosa.__version__, "clips": len(clips),
                      "ms_per_clip": best * 1e3}))


if __name__ == "__main__":
    main()
