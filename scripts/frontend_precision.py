#!/usr/bin/env python3
"""Measures `asc features` against the float64 reference of docs/frontend.md on real recordings.

Usage (repository root):
    python3 scripts/frontend_precision.py [--asc target/debug/asc] [--top N] WAV_OR_DIR...

Each recording is brought to every preset's rate with soxr_hq and stored as 16-bit PCM, as a
recording made at that rate would be; `asc features` and the reference (`reference` in
tests/fixtures/gen_frontend.py: librosa's expression in float64) then read the same samples, so
the difference is the front end's alone. Prints, per preset, the largest |ours − reference| on
the log scale and where it is (clip, mel band, frame, reference value) for the N worst clips,
and the worst error per band over the top eighth of the bands (the quiet ones in band-limited
recordings). Needs: librosa, soundfile, numpy.
"""
import argparse
import glob
import os
import subprocess
import sys
import tempfile

import numpy as np
import soundfile as sf

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "fixtures"))
from gen_frontend import PRESETS, at_rate, write_case  # noqa: E402


def wavs(inputs):
    for item in inputs:
        if os.path.isdir(item):
            yield from sorted(glob.glob(os.path.join(item, "*.wav")))
        else:
            yield item


def measure(asc, clips, preset):
    """(error, clip, band, frame, reference value) per clip, worst first; worst error per band."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "wav"), os.path.join(tmp, "npy")
        os.makedirs(src)
        refs = {}
        for i, clip in enumerate(clips):
            y, rate = sf.read(clip, dtype="float64", always_2d=True)
            y = at_rate(y.mean(axis=1), rate, PRESETS[preset]["sr"])
            stem = f"{i:04d}"
            refs[stem] = (clip, write_case(stem, y, PRESETS[preset]["sr"], "PCM_16", preset, [],
                                           out=src))
        subprocess.run([asc, "features", src, "--out", dst, "--preset", preset], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        worst, per_band = [], None
        for stem, (clip, ref) in refs.items():
            err = np.abs(np.load(os.path.join(dst, stem + ".npy")).astype(np.float64) - ref)
            band, frame = np.unravel_index(np.argmax(err), err.shape)
            worst.append((err[band, frame], os.path.basename(clip), band, frame, ref[band, frame]))
            band_max = err.max(axis=1)
            per_band = band_max if per_band is None else np.maximum(per_band, band_max)
    return sorted(worst, reverse=True), per_band


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--asc", default="target/debug/asc")
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--top", type=int, default=1, help="list the N clips with the largest error")
    ap.add_argument("inputs", nargs="+")
    a = ap.parse_args()
    clips = list(wavs(a.inputs))
    print(f"{len(clips)} recordings")
    for preset in a.presets.split(","):
        worst, per_band = measure(a.asc, clips, preset)
        for err, clip, band, frame, value in worst[:a.top]:
            print(f"{preset:<10} max |ours - float64| {err:.2e} at {clip} band {band} "
                  f"frame {frame} (reference {value:.3f})")
        top = len(per_band) - len(per_band) // 8
        print(f"  worst per band from band {top}:", " ".join(f"{e:.1e}" for e in per_band[top:]))


if __name__ == "__main__":
    main()
