"""Latency of the zoo on every installed runtime, beside the paper's Pixel 1 numbers.

    python benchmarks/latency_zoo.py [--backends onnxruntime,openvino] [--resolution 224] [--json]

For each zoo model and backend: parameters, MACs, median latency (ms, batch 1, 1 thread), CV of the round
medians, and the ratio to MobileNetV2 1.0 timed by the same backend in the same run. Absolute times on a
server CPU are not comparable with a Pixel 1; the ratios are what a platform-aware search relies on.
Then the cost of one complete measurement of a new architecture (build + BN calibration + export + time)
on onnxruntime, for architectures sampled from the MnasNet space (never seen before, so never cached).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import statistics
import time

from mnas.latency import LatencySettings, get_backend
from mnas.latency.fingerprint import fingerprint
from mnas.model import build, profile
from mnas.space import MnasNetSpace, zoo

# (zoo name, width multiplier) -> Pixel 1 latency in ms from the paper (Table 1 / Figure 1)
MODELS = [("mobilenet-v2", 1.0, 75.0), ("mobilenet-v2", 1.4, 143.0), ("mnasnet-a1", 1.0, 78.0),
          ("mnasnet-b1", 1.0, 77.0), ("mnasnet-small", 1.0, None), ("mnasnet-d1", 1.0, None)]
RUNTIME_MODULES = {"onnxruntime": "onnxruntime", "torch": "torch", "openvino": "openvino",
                   "litert": "ai_edge_litert"}


def installed_backends() -> list[str]:
    out = [b for b, mod in RUNTIME_MODULES.items() if importlib.util.find_spec(mod)]
    if "litert" in out and not importlib.util.find_spec("litert_torch"):
        out.remove("litert")
    return out


def label(name: str, wm: float) -> str:
    return name if wm == 1.0 else f"{name} {wm}"


def zoo_table(backends: list[str], settings: LatencySettings) -> list[dict]:
    rows = []
    profiles = {}
    for name, wm, _ in MODELS:
        arch = zoo.get(name, wm)
        p = profile(build(arch), settings.resolution)
        profiles[(name, wm)] = (p.params, p.macs)
    for b in backends:
        be = get_backend(b)
        times = {}
        for name, wm, paper in MODELS:
            t0 = time.perf_counter()
            r = be.measure(zoo.get(name, wm), settings)
            times[(name, wm)] = r
            rows.append({"model": label(name, wm), "backend": b, "params": profiles[(name, wm)][0],
                         "macs": profiles[(name, wm)][1], "median_ms": r.median_ms, "cv": r.cv,
                         "remeasures": r.remeasures, "paper_pixel1_ms": paper, "runtime": r.runtime_version,
                         "wall_s": time.perf_counter() - t0})
        base = times[("mobilenet-v2", 1.0)].median_ms
        for row in rows:
            if row["backend"] == b:
                row["ratio"] = row["median_ms"] / base
                row["paper_ratio"] = row["paper_pixel1_ms"] / 75.0 if row["paper_pixel1_ms"] else None
    return rows


def _timed_phases(be, arch, settings, build, calibrate_bn, export, random_input, time_calls) -> list[float]:
    t = [time.perf_counter()]
    model = build(arch, num_classes=settings.num_classes)
    t.append(time.perf_counter())
    calibrate_bn(model, settings.input_shape())
    t.append(time.perf_counter())
    data = export(model.eval(), be.model_format, settings.input_shape())
    t.append(time.perf_counter())
    infer, shape = be.load(data, settings)
    t.append(time.perf_counter())
    x = random_input(shape)
    time_calls(lambda: infer(x), settings)
    t.append(time.perf_counter())
    return t


def measurement_cost(n: int, settings: LatencySettings, seed: int = 0) -> dict:
    """Seconds for build + calibrate + export + load + time of new architectures, with a breakdown."""
    from mnas.latency.local import random_input
    from mnas.latency.protocol import time_calls, torch_threads
    from mnas.model.export import calibrate_bn, export

    be = get_backend("onnxruntime")
    space, rng = MnasNetSpace.load(None), random.Random(seed)
    phases: dict[str, list[float]] = {k: [] for k in ("build", "calibrate", "export", "load", "time", "total")}
    be.measure(zoo.get("mnasnet-small"), settings)  # first call pays one-off imports; not counted
    for _ in range(n):
        arch = space.sample(rng)
        with torch_threads(settings.threads):
            t = _timed_phases(be, arch, settings, build, calibrate_bn, export, random_input, time_calls)
        for k, a, b in zip(("build", "calibrate", "export", "load", "time"), t, t[1:]):
            phases[k].append(b - a)
        phases["total"].append(t[-1] - t[0])
    # the same through the public one-call API, to show it adds nothing
    api = []
    for _ in range(n):
        arch = space.sample(rng)
        t0 = time.perf_counter()
        be.measure(arch, settings)
        api.append(time.perf_counter() - t0)
    return {"n": n, **{k: statistics.median(v) for k, v in phases.items()}, "api_measure_s": statistics.median(api),
            "api_measure_max_s": max(api)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default=",".join(installed_backends()))
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--cost-samples", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    settings = LatencySettings(resolution=args.resolution)
    load_before = os.getloadavg()
    rows = zoo_table([b for b in args.backends.split(",") if b], settings)
    cost = measurement_cost(args.cost_samples, settings)
    load_after = os.getloadavg()
    fp = fingerprint()
    if args.json:
        print(json.dumps({"rows": rows, "cost": cost, "device": fp, "load": [load_before, load_after],
                          "settings": settings.to_dict()}, indent=2))
        return
    print(f"device: {fp['cpu']}, {fp['cores']} cores, {fp['os']} {fp['os_release']}; "
          f"settings: batch {settings.batch}, {settings.resolution}px, {settings.threads} thread, "
          f"{settings.runs} runs in {settings.rounds} rounds, {settings.warmup} warm-up")
    print(f"load average (1/5/15 min) before {tuple(round(x, 2) for x in load_before)}, "
          f"after {tuple(round(x, 2) for x in load_after)}\n")
    print("| model | backend | params (M) | MACs (M) | median ms | CV | ratio to MobileNetV2 1.0 | "
          "paper Pixel 1 ms | paper ratio |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        paper = f"{r['paper_pixel1_ms']:.0f}" if r["paper_pixel1_ms"] else "-"
        pratio = f"{r['paper_ratio']:.2f}" if r["paper_ratio"] else "-"
        print(f"| {r['model']} | {r['backend']} {r['runtime'].split('-')[0]} | {r['params'] / 1e6:.2f} | {r['macs'] / 1e6:.0f} | "
              f"{r['median_ms']:.2f} | {r['cv']:.1%} | {r['ratio']:.2f} | {paper} | {pratio} |")
    print(f"\nmeasurement cost of a new architecture on onnxruntime at {settings.resolution}px "
          f"(median of {cost['n']} sampled from the MnasNet space): total {cost['total']:.2f} s = "
          f"build {cost['build']:.2f} + BN calibration {cost['calibrate']:.2f} + ONNX export {cost['export']:.2f}"
          f" + session {cost['load']:.2f} + timing {cost['time']:.2f}; via mnas.latency.measure: "
          f"{cost['api_measure_s']:.2f} s (max {cost['api_measure_max_s']:.2f} s)")


if __name__ == "__main__":
    main()
