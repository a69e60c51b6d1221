#!/usr/bin/env python3
"""The clip folders of the whole-process benchmarks (issue 16), cut from a real-recording dataset
in the DCASE layout (the development set of `datasets/README.md` has 5 s clips at 44.1 kHz):

- OUT/10s: 40 clips of 10 s, each two consecutive clips of the sorted list (the first 80);
- OUT/1s: 40 clips of 1 s, the first second of each of the last 40.

    python3 benches/make_clips.py DATASET OUT
"""
import glob
import os
import sys

import numpy as np
import soundfile as sf


def main():
    dataset, out = sys.argv[1:3]
    files = sorted(glob.glob(os.path.join(dataset, "audio", "*.wav")))
    if len(files) < 120:
        sys.exit(f"{dataset}/audio has {len(files)} WAVs; the benchmarks need 120")
    for sub in ("10s", "1s"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    for i in range(40):
        (a, sr), (b, sr_b) = sf.read(files[2 * i]), sf.read(files[2 * i + 1])
        assert sr == sr_b, f"{files[2 * i]} and {files[2 * i + 1]} differ in rate"
        sf.write(os.path.join(out, "10s", f"clip{i:02d}.wav"), np.concatenate([a, b]), sr,
                 subtype="PCM_16")
    for i, f in enumerate(files[-40:]):
        y, sr = sf.read(f)
        sf.write(os.path.join(out, "1s", f"clip{i:02d}.wav"), y[:sr], sr, subtype="PCM_16")
    print(f"{out}/10s and {out}/1s: 40 clips each")


if __name__ == "__main__":
    main()
