"""Issue 29 on a lent GPU in one call of the device tool: the supernet's rank fidelity at a scale the CPU
cannot reach (CIFAR-10 at 32 px, full width, standalone trainings of 10 epochs with two seeds each, recipe
``cifar``).

    python benchmarks/gpu_check.py prep --out gpu-data/cifar10-jpeg.npz        # here, once (53 MiB, carried)
    PYTHONPATH=src python benchmarks/supernet_gpu.py --pack gpu-data/cifar10-jpeg.npz --out $OUT/sn-gpu --budget 480
    PYTHONPATH=src python benchmarks/supernet_gpu.py --smoke --out /tmp/sn-gpu-smoke   # CPU, about 2 minutes

One deadline (``--budget`` seconds from the start) covers everything:
1. the pack's training images decoded into an .npz on local disk (seconds on 16 cores);
2. at once, one ``supernet_fidelity.py --phase supernet`` process (the supernet's training, then its readings)
   and ``--workers`` ``--phase standalone`` processes sharing the standalone trainings through claim files,
   all on the one GPU;
3. ``--reserve`` seconds before the deadline every process still running is killed, and
   ``supernet_fidelity.py --partial`` summarises what exists: the supernet at the step it reached, tau over
   the architectures whose every seed finished (the JSON says how many, and the supernet's step).

Everything lands in ``--out`` (the supernet checkpoint included: copy it back only if it is small enough);
``--out``/``gpu_summary.json`` holds the settings, each process's exit and seconds, and the summary. The
numbers of a ``--smoke`` run mean nothing; it checks that every step runs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pack", help="the CIFAR-10 pack of gpu_check.py prep")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--budget", type=float, default=480.0, help="seconds for the whole call")
    ap.add_argument("--reserve", type=float, default=60.0, help="seconds kept for the summary")
    ap.add_argument("--workers", type=int, default=6, help="standalone processes sharing the GPU")
    ap.add_argument("--archs", type=int, default=12)
    ap.add_argument("--epochs", type=float, default=10.0, help="each standalone training")
    ap.add_argument("--steps", type=int, default=2500, help="the supernet's sandwich steps")
    ap.add_argument("--train-limit", type=int, default=20000)
    ap.add_argument("--holdout", type=int, default=5000)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--recipe", default="cifar", help="the training recipe of the supernet and every standalone "
                    "training (mnas.train.RECIPES); cifar: the recipe chosen for 32-px CIFAR training of ~10 epochs")
    ap.add_argument("--smoke", action="store_true", help="digits on the CPU, tiny sizes")
    args = ap.parse_args()
    t0 = time.time()
    deadline = t0 + args.budget
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="sn-gpu-"))
    if args.smoke:
        dataset, resolution = "digits", 16
        args.device, args.workers, args.archs, args.epochs, args.steps = "cpu", 2, 4, 0.3, 20
        args.train_limit, args.holdout, args.width, args.batch_size = 800, 200, 0.25, 32
    else:
        import numpy as np

        sys.path.insert(0, str(HERE))
        from gpu_check import decode_pack

        if not args.pack:
            raise SystemExit("give --pack (python benchmarks/gpu_check.py prep)")
        images = decode_pack(args.pack)
        npz = work / "cifar10-train.npz"
        np.savez(npz, x=images["x_train"], y=images["y_train"])
        dataset, resolution = f"npz:{npz}", 32
    prepared = time.time() - t0
    common = [sys.executable, str(HERE / "supernet_fidelity.py"), "--out", str(out / "fidelity"),
              "--space", "mnasnet-cifar-elastic", "--dataset", dataset, "--resolution", str(resolution),
              "--width", str(args.width), "--batch-size", str(args.batch_size), "--steps", str(args.steps),
              "--every", str(max(1, args.steps // 10)), "--archs", str(args.archs), "--epochs", str(args.epochs),
              "--train-limit", str(args.train_limit), "--holdout", str(args.holdout), "--standalone-seeds", "2",
              "--references", "mobilenet-v2-cifar", "--no-kernel-transform", "--spread", str(30 * args.archs),
              "--device", args.device, "--recipe", args.recipe]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE.parent / "src"),
                                                                      os.environ.get("PYTHONPATH")]))}
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    procs: dict[str, subprocess.Popen] = {}

    def start(name: str, extra: list[str]) -> None:
        with open(logs / f"{name}.log", "w") as log:
            procs[name] = subprocess.Popen(common + extra, stdout=log, stderr=subprocess.STDOUT, env=env,
                                           start_new_session=True)

    start("supernet", ["--phase", "supernet"])
    time.sleep(2)  # the first process draws and records the architecture seed; the others read it
    for w in range(args.workers):
        start(f"standalone-{w}", ["--phase", "standalone"])
    ended: dict[str, dict] = {}
    while len(ended) < len(procs) and time.time() < deadline - args.reserve:
        for name, p in procs.items():
            if name not in ended and p.poll() is not None:
                ended[name] = {"rc": p.returncode, "seconds": round(time.time() - t0, 1)}
        time.sleep(1)
    for name, p in procs.items():
        if name not in ended:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            ended[name] = {"rc": "killed at the deadline", "seconds": round(time.time() - t0, 1)}
    left = max(10.0, deadline - time.time())
    with open(logs / "summary.log", "w") as log:
        try:
            rc = subprocess.run(common + ["--partial"], stdout=log, stderr=subprocess.STDOUT, env=env,
                                timeout=left).returncode
        except subprocess.TimeoutExpired:
            rc = "timed out"
    fid = out / "fidelity" / "results.json"
    results = json.loads(fid.read_text()) if fid.exists() else {}
    summary = {"settings": {k: v for k, v in vars(args).items() if k != "out"} | {"out": str(out)},
               "prepare_seconds": round(prepared, 1), "processes": ended, "summary_rc": rc,
               "partial": results.get("partial"), "summary": results.get("summary"),
               "seconds": round(time.time() - t0, 1)}
    (out / "gpu_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: summary[k] for k in ("processes", "summary_rc", "partial", "summary", "seconds")},
                     indent=1), flush=True)


if __name__ == "__main__":
    main()
