"""A benchmark table read from a supernet (``mnas supernet table``): every architecture of its space with the
supernet's accuracy and a measured latency, as a CSV that ``mnas bench strategies --table CSV --space SPACE``
runs the strategies on (issue 29: the estimator in the tabular-benchmark harness).

A table needs every architecture of the space (a strategy may propose any), so only a small space can have
one: a space YAML with few choices (``limit``, 20,000 by default, is about six hours of readings at 1 s).
Over a real space (10^11 architectures) search with ``proxy.estimator=supernet:DIR`` instead: each candidate
costs seconds there too.

Resumable: each row is appended to ``OUT.partial`` (one JSON line, flushed) as it is read, after a first line
naming what the readings depend on (the supernet and its step, the backend and the latency settings: a
resume with others is refused), a rerun skips the rows already there, and the CSV is written atomically at
the end. One writer per table (a lock beside it); a finished table is not read again.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mnas import MnasError
from mnas.fileio import atomic_write

LIMIT = 20_000  # architectures: at 0.5-2 s a reading (docs/results/2026-12-06-supernet-elastic.md), 3-11 hours


def space_reference(blob: dict[str, Any], path: Path) -> str:
    """What a search or ``mnas bench --space`` names the supernet's space by: its registered name when that is
    the same space, else ``path`` (a YAML file), written with the supernet's space."""
    import yaml

    from mnas.space import load_space
    from mnas.supernet.net import space_identity

    name = blob["space"]["name"]
    try:
        if space_identity(load_space(name))["sha"] == blob["space"]["sha"]:
            return name
    except MnasError:
        pass
    atomic_write(path, yaml.safe_dump(blob["space"]["spec"], sort_keys=False))
    return str(path)


def latency_column(backend: str) -> str:
    name = "".join(c if c.isalnum() else "_" for c in backend).strip("_") or "backend"
    return f"{name}_latency_ms"


def supernet_table(supernet: str | Path, out: str | Path, backend: str, limit: int = LIMIT,
                   settings: Any = None, progress: Callable[[int, int], None] | None = None,
                   blob: dict[str, Any] | None = None) -> Path:
    """Write ``out`` (CSV: ``arch``, ``supernet_accuracy``, ``<backend>_latency_ms``) for every architecture of
    the supernet's space, each timed at the supernet's image size, channels and classes (``settings``: other
    latency settings, a ``LatencySettings``; ``blob``: the supernet's checkpoint if the caller has read it)."""
    from mnas.latency import LatencySettings, measure
    from mnas.store.lock import DirectoryLock
    from mnas.supernet.evaluate import SupernetEvaluator
    from mnas.supernet.training import read_checkpoint, space_of

    out = Path(out)
    if out.suffix != ".csv":
        raise MnasError(f"--out {out}: a table is written as a plain .csv file")
    blob = blob if blob is not None else read_checkpoint(supernet)
    space = space_of(blob)
    if space.size > limit:
        raise MnasError(f"space {blob['space']['name']} has {space.size:,} architectures, over the limit of "
                        f"{limit:,} a table reads one by one: train the supernet over a smaller space YAML, or "
                        f"search with proxy.estimator=supernet:{supernet}")
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = DirectoryLock(out.parent, f".{out.name}.lock", what="one writer per table")
    try:
        d = blob["data"]
        settings = (settings or LatencySettings()).replace(resolution=d["resolution"], in_chans=d["in_chans"],
                                                           num_classes=d["num_classes"])
        partial, col = out.with_name(out.name + ".partial"), latency_column(backend)
        if out.exists() and not partial.exists():
            raise MnasError(f"{out} exists and is complete: delete it to read the table again, or choose another "
                            "--out")
        # what the readings depend on, the first line of the partial file: a resume must match it
        header = {"supernet": str(Path(blob["path"]).resolve()), "step": blob["step"],
                  "space": blob["space"]["sha"], "backend": backend, "latency": settings.key_fields()}
        done: dict[str, dict[str, Any]] = {}
        if partial.exists():
            lines = partial.read_text().splitlines()
            try:
                had = json.loads(lines[0])["header"] if lines else header
            except (json.JSONDecodeError, KeyError, TypeError):
                had = None
            if had != header:
                raise MnasError(f"{partial} was started with other readings ({had}), not {header}: delete it to "
                                "start again, or resume with the same supernet, backend and settings")
            for line in lines[1:]:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # the line a kill cut short: read again
                    continue
                done[row["arch"]] = row
        ev = SupernetEvaluator(supernet, "cpu", blob=blob)
        archs = [space.decode(t) for t in itertools.product(*(range(c) for c in space.cardinalities))]
        with open(partial, "a") as f:
            if not f.tell():
                f.write(json.dumps({"header": header}) + "\n")
            elif not partial.read_text().endswith("\n"):
                f.write("\n")  # after a cut line
            for i, a in enumerate(archs):
                if a.canonical not in done:
                    r = measure(a, backend, settings, cache=out.with_name(out.name + ".latency.db"))
                    row = {"arch": a.canonical, "supernet_accuracy": ev.evaluate(a)["top1"], col: r.median_ms}
                    f.write(json.dumps(row) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                    done[a.canonical] = row
                if progress:
                    progress(i + 1, len(archs))
        text = io.StringIO()
        w = csv.DictWriter(text, ["arch", "supernet_accuracy", col], extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for a in archs:
            w.writerow(done[a.canonical])
        atomic_write(out, text.getvalue())
        partial.unlink()
        return out
    finally:
        lock.release()
