#!/usr/bin/env python3
"""Builds the real-recording development set (`docs/real-audio.md`) in the DCASE layout.

Ambient recordings shipped in Debian packages (listed with their licences in sources.tsv) are
fetched with `apt-get download` (no root needed, nothing is installed), decoded, downmixed and
resampled to 44.1 kHz mono 16-bit with sox, and cut into non-overlapping 5 s clips:

  OUT/audio/<scene>-<source>-<segment>-<device>.wav
  OUT/meta.csv                          filename  scene_label  identifier  source_label (TABs)
  OUT/evaluation_setup/fold1_train.csv  filename  scene_label
  OUT/evaluation_setup/fold1_evaluate.csv, fold1_test.csv (the held-out sources)
  OUT/LICENSES.md                       every source file: package, path, licence, copyright, clips
  OUT/sources.json                      what was built (counts, hashes checked)

`identifier` is `<package>-<source>`: clips of one recording (or of one recording session, as
sources.tsv groups them) share it, so asc's location-disjoint validation split and the fold never
put one recording on both sides. The device token (`source_label`) says the bandwidth of the
original file: `a` 44.1 kHz or more, `b` 22.05-32 kHz, `c` below (an 11 kHz recording has nothing
above 5.5 kHz; like DCASE's devices, a model should not lean on it).

The fold: per class, the sources whose clips come closest to 35 % of the class's clips (at least
one source on each side, at least half the clips in training) form the test list; ties go to
the split with more sources in training, then to the first in source-name order. Deterministic.

Needs: apt-get and dpkg-deb (Debian/Ubuntu), sox with Ogg Vorbis and MP3 support
(`apt-get install sox libsox-fmt-all`). The packages 0ad-data, megaglest-data, flare-game,
supertuxkart-data, redeclipse-data and supertux-data (and cube2-data, which shares recordings
with redeclipse) are not used: they are kept for an independent check.

Run:  python3 datasets/devset/build.py [--out data/devset] [--cache data/devset-debs]
"""
import argparse
import csv
import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import wave

HERE = os.path.dirname(os.path.abspath(__file__))
RATE = 44100
CLIP_SECONDS = 5
TEST_SHARE = 0.35
RESERVED = {"0ad-data", "megaglest-data", "flare-game", "supertuxkart-data", "redeclipse-data",
            "supertux-data", "cube2-data"}


def die(msg):
    sys.exit(f"build.py: {msg}")


def read_sources(path):
    with open(path, newline="") as f:
        lines = [line for line in f if not line.startswith("#")]
    rows = list(csv.DictReader(lines, delimiter="\t"))
    for i, r in enumerate(rows, start=2):
        if r["package"] in RESERVED:
            die(f"{path}: row {i} uses {r['package']}, which is reserved for an independent check")
        for key in ("scene_label", "source"):
            if not r[key] or any(ch in r[key] for ch in "\t/ "):
                die(f"{path}: row {i}: bad {key} {r[key]!r}")
    return rows


def check_tools():
    for tool in ("apt-get", "dpkg-deb", "sox"):
        if shutil.which(tool) is None:
            die(f"needs {tool} (Debian/Ubuntu: apt-get install sox libsox-fmt-all)")
    formats = subprocess.run(["sox", "-h"], capture_output=True, text=True).stdout
    missing = [f for f in ("vorbis", "mp3") if f not in formats]
    if missing:
        die(f"sox lacks {', '.join(missing)} support: apt-get install libsox-fmt-all")


def fetch(package, cache):
    """The package's .deb in `cache` (downloaded once)."""
    os.makedirs(cache, exist_ok=True)
    found = [f for f in os.listdir(cache) if f.startswith(package + "_") and f.endswith(".deb")]
    if not found:
        r = subprocess.run(["apt-get", "download", package], cwd=cache, capture_output=True,
                           text=True)
        if r.returncode != 0:
            die(f"apt-get download {package} failed (run apt-get update?): {r.stderr.strip()}")
        found = [f for f in os.listdir(cache) if f.startswith(package + "_") and f.endswith(".deb")]
    return os.path.join(cache, sorted(found)[-1])


def extract(deb, paths, dest):
    """Extracts `paths` (relative, as in the package) from `deb` into `dest`."""
    tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", deb], stdout=subprocess.PIPE)
    r = subprocess.run(["tar", "-x", "-C", dest] + [f"./{p}" for p in paths], stdin=tar.stdout,
                       capture_output=True, text=True)
    tar.wait()
    if r.returncode != 0:
        die(f"{deb}: cannot extract {paths}: {r.stderr.strip()}")


def source_rate(path):
    return int(subprocess.run(["soxi", "-r", path], capture_output=True, text=True,
                              check=True).stdout.strip())


def device_of(rate):
    return "a" if rate >= 44100 else ("b" if rate >= 22050 else "c")


def to_clips(src, tmp):
    """The source as 44.1 kHz mono 16-bit frames, cut into whole 5 s clips (bytes each)."""
    wav = os.path.join(tmp, "converted.wav")
    subprocess.run(["sox", "-q", src, "-b", "16", "-c", "1", wav, "rate", "-v", str(RATE)],
                   check=True)
    with wave.open(wav) as w:
        frames = w.readframes(w.getnframes())
    n = RATE * CLIP_SECONDS * 2
    return [frames[i * n:(i + 1) * n] for i in range(len(frames) // n)]


def write_wav(path, frames):
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(frames)


def choose_test(counts):
    """counts: {source: clips} of one class -> the set of test sources (see the module doc)."""
    names = sorted(counts)
    total = sum(counts.values())
    target = TEST_SHARE * total
    best = None
    for k in range(1, len(names)):
        for test in itertools.combinations(names, k):
            n = sum(counts[s] for s in test)
            if total - n < total / 2:
                continue
            key = (abs(n - target), k, test)
            if best is None or key < best:
                best = key
    if best is None:
        die(f"a class needs at least two sources with clips: {counts}")
    return set(best[2])


def write_lists(out, meta, train, test):
    """The DCASE lists (tab-separated, with headers): meta.csv from (file, label, identifier,
    device) rows, fold 1's train/evaluate lists from (file, label) pairs and the unlabelled test
    list. Also used by make_slice.py."""
    def write(path, header, rows):
        with open(os.path.join(out, path), "w", newline="") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(header)
            w.writerows(rows)

    write("meta.csv", ["filename", "scene_label", "identifier", "source_label"], meta)
    write("evaluation_setup/fold1_train.csv", ["filename", "scene_label"], train)
    write("evaluation_setup/fold1_evaluate.csv", ["filename", "scene_label"], test)
    write("evaluation_setup/fold1_test.csv", ["filename"], [(f,) for f, _ in test])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="data/devset")
    ap.add_argument("--cache", default=None, help="where the .deb files go (default OUT-debs)")
    ap.add_argument("--sources", default=os.path.join(HERE, "sources.tsv"))
    a = ap.parse_args()
    rows = read_sources(a.sources)
    check_tools()
    cache = a.cache or a.out.rstrip("/") + "-debs"
    audio = os.path.join(a.out, "audio")
    os.makedirs(audio, exist_ok=True)
    os.makedirs(os.path.join(a.out, "evaluation_setup"), exist_ok=True)
    clips = []  # (filename, label, identifier, device, source)
    report = []
    mismatched = []
    with tempfile.TemporaryDirectory() as tmp:
        for package, group in itertools.groupby(sorted(rows, key=lambda r: r["package"]),
                                                key=lambda r: r["package"]):
            group = list(group)
            deb = fetch(package, cache)
            version = subprocess.run(["dpkg-deb", "-f", deb, "Version"], capture_output=True,
                                     text=True, check=True).stdout.strip()
            dest = os.path.join(tmp, package)
            os.makedirs(dest, exist_ok=True)
            extract(deb, [r["path"] for r in group], dest)
            for r in group:
                src = os.path.join(dest, r["path"])
                sha = hashlib.sha256(open(src, "rb").read()).hexdigest()
                if sha != r["sha256"]:
                    mismatched.append(f"{package} {version}: {r['path']}")
                device = device_of(source_rate(src))
                pieces = to_clips(src, tmp)
                seg0 = sum(1 for c in clips if c[4] == r["source"])
                names = []
                for i, frames in enumerate(pieces):
                    name = f"{r['scene_label']}-{r['source']}-{seg0 + i}-{device}.wav"
                    write_wav(os.path.join(audio, name), frames)
                    clips.append((f"audio/{name}", r["scene_label"], r["source"], device,
                                  r["source"]))
                    names.append(name)
                report.append({**r, "version_used": version, "sha256_ok": sha == r["sha256"],
                               "device": device, "clips": names})
                print(f"{r['scene_label']:<12} {len(pieces):>3} clips  {package} {r['path']}")
    by_class = {}
    for _, label, _, _, source in clips:
        by_class.setdefault(label, {}).setdefault(source, 0)
        by_class[label][source] += 1
    test_sources = set()
    for label, counts in sorted(by_class.items()):
        test_sources |= choose_test(counts)
    clips.sort()

    train = [(f, l) for f, l, _, _, s in clips if s not in test_sources]
    test = [(f, l) for f, l, _, _, s in clips if s in test_sources]
    write_lists(a.out, [(f, l, i, d) for f, l, i, d, _ in clips], train, test)
    with open(os.path.join(a.out, "LICENSES.md"), "w") as f:
        f.write("# Licences of the development set\n\nEvery clip is cut from the file named here, "
                "as shipped in the Debian package; licence and copyright as that package's "
                "debian/copyright states them.\n\n| clips | package | file | licence | copyright |\n"
                "|---|---|---|---|---|\n")
        for r in report:
            first, last = r["clips"][0] if r["clips"] else "-", r["clips"][-1] if r["clips"] else "-"
            f.write(f"| {len(r['clips'])} ({first} .. {last}) | {r['package']} {r['version_used']} "
                    f"| /{r['path']} | {r['license']} | {r['copyright']} |\n")
    summary = {
        "clips": len(clips),
        "train": len(train),
        "test": len(test),
        "classes": {label: {"clips": sum(c.values()), "sources": len(c),
                            "test_sources": sorted(s for s in c if s in test_sources)}
                    for label, c in sorted(by_class.items())},
        "sha256_mismatches": mismatched,
    }
    with open(os.path.join(a.out, "sources.json"), "w") as f:
        json.dump({"summary": summary, "sources": report}, f, indent=1)
    print(json.dumps(summary, indent=1))
    if mismatched:
        print(f"warning: {len(mismatched)} files differ from the recorded hashes (another package "
              "version); the set differs from the documented one", file=sys.stderr)


if __name__ == "__main__":
    main()
