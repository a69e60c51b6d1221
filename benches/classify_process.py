#!/usr/bin/env python3
"""`asc classify` as a whole process against the librosa + onnxruntime loop a user would write
(benches/pipeline_python.py), both on one thread, over the same folder of WAVs (issue 16's
end-to-end goal). Ours is timed from process start to exit (start-up, model load and plan,
decode, log-mel, model, output); the Python loop after one warm-up pass, without its start-up.
Best of REPS runs each, alternated. Prints one JSON line.

    python3 benches/classify_process.py ASC_BINARY MODEL.onnx DIR [REPS]
"""
import glob
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pipeline_python import runner  # noqa: E402


def main():
    asc, model, folder = sys.argv[1:4]
    reps = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    files = sorted(glob.glob(folder + "/*.wav"))
    run = runner(model, files, threads=1)
    run()
    env = dict(os.environ, RAYON_NUM_THREADS="1")
    cmd = [asc, "classify", "--model", model, "--format", "csv", folder]
    ours, py = [], []
    for _ in range(reps):
        s = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        ours.append(time.perf_counter() - s)
        s = time.perf_counter()
        run()
        py.append(time.perf_counter() - s)
    print(json.dumps({"files": len(files), "asc_classify_s": min(ours), "python_loop_s": min(py),
                      "speedup": min(py) / min(ours)}))


if __name__ == "__main__":
    main()
