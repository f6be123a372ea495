"""Issue 12's bad inputs on the latency side: each one line on stderr and exit 2, refused before any work."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from mnas import MnasError
from mnas.cli import main
from mnas.latency import LatencyCache, LatencySettings, get_backend
from mnas.latency.memory import estimate_bytes
from mnas.model.memory import physical_memory
from mnas.space import zoo

FAST = ["--resolution", "32", "--runs", "2", "--rounds", "1", "--warmup", "0"]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("args, why", [
    (["--pin-core", "-1"], "pin_core: Input should be greater than or equal to 0"),
    (["--pin-core", "100000"], "pin_core 100000: this process may run on core(s)"),
    (["--resolution", "100000"], "timing at input 1x3x100000x100000 needs about"),
    (["--batch", "1000000"], "timing at input 1000000x3x32x32 needs about"),
])
def test_mnas_latency_refuses_up_front(args, why, capsys, tmp_path):
    started = time.process_time()  # CPU time: a busy machine does not inflate it
    assert main(["latency", "mnasnet-a1", *FAST, *args, "--cache", str(tmp_path)]) == 2
    assert why in one_error_line(capsys)
    assert time.process_time() - started < 60  # refused before building or exporting anything


def test_the_memory_estimate_is_in_the_right_range():
    """Against what the network really holds: mnasnet-a1 has 3.9M weights; its largest layer at 224 px
    (the 96-channel expansion at 112 px plus its input) is ~2.4M values an image."""
    a1 = zoo.get("mnasnet-a1")
    need = estimate_bytes(a1, (1, 3, 224, 224), 1000)
    assert 3 * 3.5e6 * 4 < need < 3 * 4.5e6 * 4 + 2 * 3e6 * 4
    assert estimate_bytes(a1, (1, 3, 448, 448), 1000) > need  # grows with the resolution ...
    assert estimate_bytes(a1, (8, 3, 224, 224), 1000) > need  # ... and the batch
    have = physical_memory()
    assert have is None or need < have < estimate_bytes(a1, (1, 3, 100_000, 100_000), 1000)


def test_a_cache_that_is_not_a_cache_is_refused_and_left_alone(tmp_path, capsys):
    text = tmp_path / "notes.sqlite"
    text.write_text("not a database\n")
    foreign = tmp_path / "other.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE trials (id INTEGER)")
    for path, why in [(text, "cannot use .* as a latency cache"), (foreign, "another program's SQLite database")]:
        with pytest.raises(MnasError, match=why):
            LatencyCache(path)
        assert main(["latency", "mnasnet-small", *FAST, "--cache", str(path)]) == 2
        one_error_line(capsys)
    assert text.read_text() == "not a database\n"
    with sqlite3.connect(foreign) as db:
        assert [r[0] for r in db.execute("SELECT name FROM sqlite_master")] == ["trials"]


def test_a_damaged_cache_entry_is_measured_again(tmp_path):
    from mnas.latency import measure
    from mnas.latency.cache import cache_key

    settings = LatencySettings(resolution=32, runs=2, rounds=1, warmup=0, num_classes=10)
    arch = zoo.get("mnasnet-small")
    cache = LatencyCache(tmp_path)
    first = measure(arch, "onnxruntime", settings, cache)
    key = cache_key(arch.canonical, get_backend("onnxruntime").identity(settings), settings)
    with sqlite3.connect(cache.path) as db:
        db.execute("UPDATE latency SET result = ? WHERE key = ?",
                   (json.dumps({**first.to_dict(), "median_ms": "x"}), key))
    assert cache.get(key) is None
    again = measure(arch, "onnxruntime", settings, cache)
    assert not again.cached and cache.get(key).median_ms == again.median_ms
