#!/usr/bin/env python3
"""Encodes the WAV files of a folder to FLAC, Ogg Vorbis and MP3 with soundfile (libsndfile),
next to them, then times soundfile's own decoding of each format; prints JSON with ms per clip.

Usage: decode_soundfile.py DIR. Called by `cargo bench --bench decode`, which then times our
decoder on the same files in the same run. Formats this libsndfile cannot write are left out.
"""
import glob
import json
import os
import sys
import time

import soundfile as sf

FORMATS = {"flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS"), "mp3": ("MP3", "MPEG_LAYER_III")}


def main():
    folder = sys.argv[1]
    wavs = sorted(glob.glob(os.path.join(folder, "*.wav")))
    result = {"soundfile": sf.__version__, "libsndfile": sf.__libsndfile_version__,
              "clips": len(wavs), "ms_per_clip": {}}
    for ext, (major, subtype) in FORMATS.items():
        if major not in sf.available_formats() or subtype not in sf.available_subtypes(major):
            continue
        files = []
        for wav in wavs:
            y, sr = sf.read(wav, dtype="float32")
            path = wav[:-4] + "." + ext
            sf.write(path, y, sr, format=major, subtype=subtype)
            files.append(path)
        sf.read(files[0], dtype="float32")  # warm-up
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for f in files:
                sf.read(f, dtype="float32")
            best = min(best, (time.perf_counter() - t0) / len(files))
        result["ms_per_clip"][ext] = best * 1e3
    print(json.dumps(result))


if __name__ == "__main__":
    main()
