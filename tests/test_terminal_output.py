"""What a person reads in a terminal or a log file: one table of ranked trials (the end of ``mnas search`` is
the top of ``mnas report``), architecture strings on one line, the screen's candidate timing shown as it
goes, ``mnas train`` writing each epoch to a log file as it ends, ``lut build`` and ``lut eval`` saying where
they are there, one meaning per option name."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from rich.console import Console

import mnas.cli.output as output
from mnas.cli import main
from mnas.cli.search_cmds import _show_top
from mnas.report.synthetic import fill_synthetic
from mnas.testing import run_cli


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    return fill_synthetic(tmp_path_factory.mktemp("terminal") / "exp", n=12, seed=3, fail_every=0)


def _rows(text: str, title: str) -> list[str]:
    """The body rows of the table titled ``title`` in ``text``."""
    block = text.split(title, 1)[1].split("└", 1)[0]
    return [ln for ln in block.splitlines() if ln.startswith("│")]


def test_the_search_ends_with_the_reports_top_table_one_line_per_trial(experiment, monkeypatch):
    term = Console(width=120, force_terminal=True, color_system=None, record=True)
    monkeypatch.setattr(output, "console", term)  # a 120-column terminal
    _show_top(experiment, 3)
    searched = term.export_text()
    assert run_cli("report", experiment, "--top", "3", "--no-plots", "--no-html").code == 0
    reported = term.export_text()
    title = "top 3 architectures by reward"
    rows = _rows(searched, title)
    assert len(rows) == 3 and all("…" in r for r in rows)  # cut, never folded
    assert rows == _rows(reported, title)  # the same table, column for column
    assert "the full strings in mnas report" in searched
    from mnas.cli.search_cmds import trials_cmd

    trials_cmd(experiment, json=False)  # mnas trials: one line per trial too
    assert len(_rows(term.export_text(), str(experiment))) == 12


def test_piped_output_keeps_whole_architecture_strings_on_one_line(experiment, capsys):
    from mnas.store import Store
    from mnas.store.query import ranked_trials

    _show_top(experiment, 2)  # stdout is captured: not a terminal
    out = capsys.readouterr().out
    with Store(experiment, readonly=True) as store:
        best = ranked_trials(store, 2)
    assert len(best[0].arch) > 150
    assert all(any(t.arch in line for line in out.splitlines()) for t in best)


def test_the_screen_shows_its_candidate_timing_as_it_goes(monkeypatch, caplog):
    import logging

    import mnas.run.trial as trial
    import mnas.search.driver as driver
    from mnas.space import load_space

    monkeypatch.setattr(trial, "measure_latency", lambda arch, job: SimpleNamespace(latency_ms=2.0))
    monkeypatch.setattr(driver, "SCREEN_LOG_S", 0.0)
    space = load_space()
    from mnas.latency.settings import LatencySettings

    job = trial.LatencyJob(backend="onnxruntime", settings=LatencySettings())  # measure_latency is faked above
    search = SimpleNamespace(space=space, latency_job=job, loop=SimpleNamespace(trials=6),
                             cfg=SimpleNamespace(executor=SimpleNamespace(kind="local", workers=1)),
                             _screening=driver._Screening())
    seen: list[tuple[int, str]] = []
    candidates = [space.sample_tokens(__import__("random").Random(i)) for i in range(3)]
    with trial.phases(lambda tid, phase: seen.append((tid, phase))), caplog.at_level(logging.INFO, "mnas"):
        for c in candidates:  # a screen asks one candidate at a time: one count over the calls
            assert driver.Search._latencies(search, [c]) == [2.0]
    assert seen[-2:] == [(7, "screening: timing candidate 3"), (7, "done")]  # the trial it screens for
    assert "screening for trial 7: 3 candidate(s) timed" in caplog.text


def test_train_writes_each_epoch_to_a_log_file_as_it_ends(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 8, 8), dtype=np.uint8)
    y = np.arange(64) % 2
    np.savez(tmp_path / "d.npz", x=x, y=y)
    code = main(["train", "stem8:ds_r1_k3_s1_e1_i8_o8:head16", "--dataset", f"npz:{tmp_path / 'd.npz'}",
                 "--epochs", "2", "--resolution", "8", "--width-multiplier", "1", "--batch-size", "16",
                 "--dir", str(tmp_path / "run")])
    out = capsys.readouterr().out  # stdout is not a terminal: the bar draws nothing
    assert code == 0, out
    epochs = [out.index(f"epoch {k}/2: loss") for k in (1, 2)]
    assert epochs[0] < epochs[1] < out.index("┏")  # each as it ended, before the final table


def test_retrain_trials_names_trial_ids_in_one_line(tmp_path):
    r = run_cli("retrain", tmp_path / "exp", "--trials", "3,17")
    assert r.code == 2 and r.stderr.count("\n") == 1
    assert "--trial-ids 3,17" in r.stderr and "budget" in r.stderr


def test_a_long_job_without_a_terminal_says_where_it_is_every_so_often_and_at_the_end():
    import io

    from mnas.cli.progress import progress_lines

    now = [100.0]
    out = io.StringIO()
    say = progress_lines("measuring layers", every=30, stream=out, clock=lambda: now[0])
    for done, t in ((1, 110), (2, 129), (3, 131), (3, 170), (4, 172), (5, 180), (10, 181)):
        now[0] = t
        say(done, 10)
    lines = out.getvalue().splitlines()
    # 31 s in: 3 of 10 done, 7 left at the pace since the first call (2 in 21 s); the same count again says
    # nothing; 30 s after a line, the next; 8 s after one, none; the end always
    assert lines == ["measuring layers 3/10 (31 s, about 74 s left)", "measuring layers 4/10 (72 s, about 124 s left)",
                     "measuring layers 10/10 (81 s)"]
    resumed = io.StringIO()  # a job resumed at 90 of 100: the 90 done before do not make the time left look short
    now[0] = 0.0
    say = progress_lines("supernet", 30, stream=resumed, clock=lambda: now[0])
    for done, t in ((91, 10), (95, 50)):
        now[0] = t
        say(done, 100)
    assert resumed.getvalue().splitlines() == ["supernet 95/100 (50 s, about 50 s left)"]
    empty = io.StringIO()
    progress_lines("x", stream=empty, clock=lambda: 0.0)(0, 0)  # nothing to do: nothing to say
    assert empty.getvalue() == ""
    # never on time alone, at every checkpoint (each 2nd step) and at the end, with the fields the bar shows
    marks = io.StringIO()
    say = progress_lines("supernet", None, stream=marks, clock=lambda: 0.0, at=lambda d, t: d % 2 == 0)
    for step in range(1, 6):
        say(step, 5, loss="2.301")
    assert marks.getvalue().splitlines() == ["supernet 2/5 (0 s, about 0 s left) loss 2.301",
                                             "supernet 4/5 (0 s, about 0 s left) loss 2.301",
                                             "supernet 5/5 (0 s) loss 2.301"]
    from mnas.cli.progress import tenths

    assert [d for d in range(1, 21) if tenths(d, 20)] == list(range(2, 21, 2))  # each tenth once


def test_lut_build_and_eval_write_progress_lines_to_a_log_file(tmp_path, capsys):
    space = tmp_path / "tiny.yaml"
    space.write_text("name: tiny\nstem: 8\nhead: 16\nchoices: {op: [ds, mb3], kernel: [3, 5], se: 0, skip: none, "
                     "width: [0.5, 1.0], layers: [0, 1]}\nblocks:\n  - {width_base: 8, layers_base: 1, stride: 1}\n")
    out = tmp_path / "t.json"
    code = main(["lut", "build", "--space", str(space), "--resolution", "16", "--num-classes", "4", "--runs", "4",
                 "--warmup", "1", "--rounds", "2", "--entry-runs", "3", "--calibrate", "3", "--out", str(out)])
    err = capsys.readouterr().err  # stderr is not a terminal: no bar, lines instead
    assert code == 0, err
    n = len(json.loads(out.read_text())["entries"])
    assert f"measuring layers {n}/{n} (" in err
    code = main(["lut", "eval", str(out), "--samples", "2", "--seed", "5", "--no-rescale", "--target", "2ms"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "measuring models 2/2 (" in err
