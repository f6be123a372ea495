"""Measuring with a memory: an on-disk cache of latency results (SQLite: safe with several processes writing
at once) and ``measure``, which consults it before timing."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnas import MnasError
from mnas.latency.base import LatencyBackend, LatencyResult
from mnas.latency.registry import get_backend
from mnas.latency.settings import LatencyConfig, LatencySettings

if TYPE_CHECKING:
    from mnas.space.arch import Architecture

log = logging.getLogger(__name__)


def default_cache_path() -> Path:
    root = os.environ.get("MNAS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mnas")
    return Path(root) / "latency.sqlite"


def cache_key(arch_canonical: str, identity: dict[str, Any], settings: LatencySettings) -> str:
    blob = json.dumps({"arch": arch_canonical, "identity": identity, "settings": settings.key_fields()},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class LatencyCache:
    """key (``cache_key``) -> LatencyResult. A directory gets ``latency.sqlite``. A file that is not a cache
    (not SQLite, or another program's database) is refused, never written to; a damaged entry is measured
    again."""

    def __init__(self, path: str | Path | None = None) -> None:
        p = Path(path) if path is not None else default_cache_path()
        if p.is_dir() or (not p.suffix and not p.exists()):
            p = p / "latency.sqlite"
        p.parent.mkdir(parents=True, exist_ok=True)
        self.path = p
        with self._db() as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables and "latency" not in tables:
                raise MnasError(f"{p} is another program's SQLite database, not a latency cache: give another "
                                "--cache path")
            db.execute("CREATE TABLE IF NOT EXISTS latency (key TEXT PRIMARY KEY, result TEXT NOT NULL)")

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        try:
            with contextlib.closing(sqlite3.connect(self.path, timeout=30)) as db, db:
                yield db
        except sqlite3.DatabaseError as e:
            raise MnasError(f"cannot use {self.path} as a latency cache ({e}): give another --cache path "
                            "or delete the file") from None

    def get(self, key: str) -> LatencyResult | None:
        with self._db() as db:
            row = db.execute("SELECT result FROM latency WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        try:
            return LatencyResult.from_dict(json.loads(row[0]))
        except (ValueError, TypeError) as e:  # MnasError and JSON errors are ValueErrors
            log.warning("damaged entry in the latency cache %s, measuring again: %s", self.path, e)
            return None

    def put(self, key: str, result: LatencyResult) -> None:
        data = result.to_dict()
        data["cached"] = False
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO latency (key, result) VALUES (?, ?)", (key, json.dumps(data)))

    def __len__(self) -> int:
        with self._db() as db:
            return db.execute("SELECT COUNT(*) FROM latency").fetchone()[0]


def measure(arch: Architecture, backend: str | LatencyBackend | None = None,
            settings: LatencySettings | None = None, cache: LatencyCache | str | Path | None = None,
            reference: Architecture | None = None) -> LatencyResult:
    """Measure an architecture's latency, reusing a cached result for the same (architecture, backend,
    settings, device). ``backend``: a spec or a backend (None: the config's default); ``cache``: a
    ``LatencyCache``, a path to one, or None for no cache. ``reference``: time ``arch`` interleaved with this
    model (``mnas.latency.relative``) where the backend can, the ratio in ``extra["relative"]``; a backend
    that cannot (a remote agent, a table) measures ``arch`` alone. ``extra["load"]``: this machine's load
    before and after an in-process timing."""
    from mnas.latency import relative

    settings = settings or LatencySettings()
    spec = backend if isinstance(backend, str) else ""
    be = get_backend(backend or LatencyConfig.default("backend"))
    side_by_side = reference is not None and relative.supports(be)

    def timed() -> LatencyResult:
        if side_by_side:
            return relative.measure_relative(arch, reference, be, settings, spec)
        if reference is not None and hasattr(be, "measure_relative"):  # a table: the ratio of two predictions
            return be.measure_relative(arch, reference, settings)
        if not relative.supports(be):  # timed elsewhere (a device agent) or not timed (a table): no load here
            return be.measure(arch, settings)
        before = relative.load()
        r = be.measure(arch, settings)
        r.extra.setdefault("load", [before, relative.load()])
        return r

    if cache is None or not getattr(be, "cacheable", True):  # e.g. lut:PATH, whose speed factor moves
        return timed()
    if not isinstance(cache, LatencyCache):
        cache = LatencyCache(cache)
    identity = be.identity(settings)
    if side_by_side:  # a ratio is only the same ratio against the same reference, by the same estimate
        identity = {**identity, "relative_to": reference.canonical, "ratio": relative.RATIO_ESTIMATE}
    key = cache_key(arch.canonical, identity, settings)
    hit = cache.get(key)
    if hit is not None:
        log.debug("latency of %s from the cache %s", arch.canonical, cache.path)
        hit.cached = True
        return hit
    result = timed()
    cache.put(key, result)
    return result
