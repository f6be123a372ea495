"""Peak memory of a command and every process it starts (DataLoader workers included).

Samples, every 0.2 s, the proportional set size (PSS, from /proc/PID/smaps_rollup: shared pages split
between the processes that map them) of the command's whole process tree, and reports the peak of the
sum, the peak of the largest single process's RSS, and the wall time, after the command's own output
(which it buffers: keep it short, e.g. --json). Linux only.

    python benchmarks/peak_memory.py -- mnas train mnasnet-a1 --dataset imagefolder:PATH --resolution 32
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def _kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def main(argv: list[str]) -> None:
    cmd = argv[argv.index("--") + 1:] if "--" in argv else argv
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    peak_pss = peak_rss = 0
    while proc.poll() is None:
        pids = _tree(proc.pid)
        peak_pss = max(peak_pss, sum(_kb(p, "Pss") for p in pids))
        peak_rss = max(peak_rss, max(_kb(p, "Rss") for p in pids))
        time.sleep(0.2)
    sys.stdout.write(proc.stdout.read())
    print(json.dumps({"returncode": proc.returncode, "seconds": round(time.perf_counter() - started, 1),
                      "peak_tree_pss_mb": round(peak_pss / 1024), "peak_process_rss_mb": round(peak_rss / 1024),
                      "command": " ".join(cmd)}))


if __name__ == "__main__":
    main(sys.argv[1:])
