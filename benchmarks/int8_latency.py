"""float32 against int8 latency of zoo networks, as the search's objective sees them (``latency.quantize``).

    python benchmarks/int8_latency.py [--resolution 224] [--runs 30] [--threads 1] [--repeat 2] NAME...

Each network is built and BatchNorm-calibrated the way the latency backends do it, written as an ONNX file
(``mnas.latency.protocol.model_file``) with ``quantize`` none and int8, and the files are timed in onnxruntime
with their rounds interleaved (``time_interleaved``: a slow phase of a shared machine lands on all of them),
``--repeat`` times. Prints one line per network and repeat: the two medians and their ratio.
"""

from __future__ import annotations

import argparse

from mnas.latency.onnxruntime_backend import OnnxRuntimeBackend
from mnas.latency.local import random_input
from mnas.latency.protocol import model_file, time_interleaved
from mnas.latency.settings import LatencySettings
from mnas.space import resolve_arch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    ap.add_argument("names", nargs="+")
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    fp32 = LatencySettings(resolution=args.resolution, runs=args.runs, threads=args.threads)
    be = OnnxRuntimeBackend()
    runners, labels = [], []
    for name in args.names:
        label, arch = resolve_arch(name)
        for settings in (fp32, fp32.replace(quantize="int8")):
            infer, shape = be.load(model_file(arch, "onnx", fp32.input_shape(), settings), settings)
            x = random_input(shape)
            runners.append(lambda infer=infer, x=x: infer(x))
        labels.append(label)
    print(f"onnxruntime {be.runtime_version()}, {args.resolution} px, batch 1, {args.threads} thread(s), "
          f"{args.runs} runs in {fp32.rounds} rounds, all {len(runners)} files interleaved")
    for rep in range(1, args.repeat + 1):
        timings = time_interleaved(runners, fp32)
        for i, label in enumerate(labels):
            f, q = timings[2 * i], timings[2 * i + 1]
            print(f"repeat {rep}  {label:<22} float32 {f.median_ms:8.3f} ms (cv {f.robust_cv:.3f})  "
                  f"int8 {q.median_ms:8.3f} ms (cv {q.robust_cv:.3f})  float32/int8 {f.median_ms / q.median_ms:5.2f}x")


if __name__ == "__main__":
    main()
