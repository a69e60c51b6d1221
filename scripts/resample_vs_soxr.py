#!/usr/bin/env python3
"""How our resampler (rubato, through `asc`'s audio path) compares with soxr at its HQ setting
(librosa's default `res_type`): signal-to-difference ratio in dB, whole signal and without the
first and last 10 ms (where the two filters' start-up differs).

Usage: python3 scripts/resample_vs_soxr.py   (needs numpy, soundfile, soxr; builds the example)
"""
import os
import subprocess
import tempfile

import numpy as np
import soundfile as sf
import soxr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sdr(ref, x):
    n = min(len(ref), len(x))
    ref, x = ref[:n].astype(np.float64), x[:n].astype(np.float64)
    return 10 * np.log10(np.sum(ref**2) / np.sum((ref - x) ** 2))


def main():
    rng = np.random.default_rng(0)
    sr_in = 48000
    t = np.arange(sr_in * 5) / sr_in
    # Band-limited (tones and a chirp up to 7.1 kHz: the passband of every output rate) and
    # full-band (plus white noise up to 24 kHz: also the filters' transition bands), 5 s each.
    tones = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 3000 * t)
             + 0.1 * np.sin(2 * np.pi * (100 + 700 * t) * t))
    for name, y in (("band-limited", tones), ("full-band", tones + 0.05 * rng.standard_normal(len(t)))):
        print(name)
        compare((y / np.abs(y).max() * 0.9).astype(np.float32), sr_in)


def compare(y, sr_in):
    with tempfile.TemporaryDirectory() as d:
        wav = os.path.join(d, "in.wav")
        sf.write(wav, y, sr_in, subtype="FLOAT")
        for sr_out in (44100, 32000, 16000):
            out = os.path.join(d, f"out{sr_out}.npy")
            subprocess.run(["cargo", "run", "--quiet", "--example", "resample", "--", wav,
                            str(sr_out), out], cwd=ROOT, check=True)
            ours = np.load(out)
            ref = soxr.resample(y, sr_in, sr_out, quality="HQ")
            edge = sr_out // 100
            print(f"48000 -> {sr_out}: {len(ours)} vs {len(ref)} samples, SDR {sdr(ref, ours):.1f} dB, "
                  f"without 10 ms edges {sdr(ref[edge:-edge], ours[edge:len(ref) - edge]):.1f} dB")


if __name__ == "__main__":
    main()
