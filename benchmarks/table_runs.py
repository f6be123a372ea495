"""What the latency-table benchmarks share. ``per_table`` (lut_near_t.py, lut_features.py): one
DIR/results.json a folder, one run at a time (a lock), each table's eval seed drawn once from the OS and
kept, the record saved after every step, so that rerunning the same command resumes where it stopped.
``table_args``: their shared arguments (and lut_start_factor.py's). ``script`` (those and lut_honest.py,
lut_start_factor.py): a bad input ends the script with one line and
status 2."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from mnas import MnasError
from mnas.fileio import atomic_write
from mnas.latency.lut.evaluate import fresh_seed
from mnas.store.lock import DirectoryLock

Record = dict[str, Any]


def table_args(doc: str) -> argparse.ArgumentParser:
    """The arguments these benchmarks share: the tables, the results folder (``--dir``; ``--out`` is
    still accepted) and ``--samples``."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("tables", nargs="+", type=Path, help="complete latency tables (mnas lut build)")
    ap.add_argument("--dir", "--out", dest="dir", type=Path, required=True,
                    help="results folder; rerun the same command to resume")
    ap.add_argument("--samples", type=int, default=200, help="networks in the eval")
    return ap


def per_table(directory: Path, name: str, tables: list[Path], done: Callable[[Record], bool],
              run: Callable[[Path, int, Record, Callable[[], None]], None],
              show: Callable[[Path, Record], None]) -> int:
    """For each of ``tables`` not ``done`` yet: ``run(table, seed, record, save)`` fills its record (and
    may call ``save`` between steps); then ``show(table, record)``."""
    directory.mkdir(parents=True, exist_ok=True)
    lock = DirectoryLock(directory, f"{name}.lock", f"one {name} run per directory")
    try:
        path = directory / "results.json"
        results = json.loads(path.read_text()) if path.exists() else {"tables": {}, "seeds": {}}

        def save() -> None:
            atomic_write(path, json.dumps(results, indent=1))

        for table in tables:
            key = str(table)
            seed = results["seeds"].setdefault(key, fresh_seed())
            save()
            rec = results["tables"].setdefault(key, {"seed": seed})
            if not done(rec):
                print(f"{table}: eval seed {seed} (drawn at run time)", flush=True)
                run(table, seed, rec, save)
                save()
            show(table, rec)
    finally:
        lock.release()
    return 0


def script(main: Callable[[], int]) -> None:
    """Run a benchmark's ``main`` as a script: a bad input ends it with one line and status 2."""
    try:
        sys.exit(main())
    except MnasError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
