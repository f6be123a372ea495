"""Figures fit for a slide: reference models, ids, best-so-far, entropy against its maximum, each run's own T,
vector copies, and the caption in the JSON and the page. The SVGs keep their text, so the checks read it."""

from mnas.report.build import make_report
from mnas.report.synthetic import fill_synthetic
from mnas.store import Store

REFS = [{"name": "mobilenet-v2 0.5", "latency_ms": 9.0}, {"name": "mobilenet-v2 1.0", "latency_ms": 20.0},
        {"name": "mnasnet-a1", "latency_ms": 23.0, "accuracy": 0.75},
        {"name": "mobilenet-v2 1.4", "latency_ms": 38.0, "accuracy": 0.74}]


def _svg(run, name):
    return (run / "plots" / f"{name}.svg").read_text()


def test_figures_show_references_best_so_far_and_entropy_bounds(tmp_path):
    run = fill_synthetic(tmp_path / "run", n=120, seed=1, target_ms=20.0)
    with Store(run) as store:
        store.set_meta("references", REFS)
    s = make_report(run, plots=True, html=True)
    assert all((run / "plots" / f"{n}.{ext}").stat().st_size > 1000
               for n in ("reward", "pareto", "latency_hist", "entropy") for ext in ("png", "svg", "pdf"))
    pareto = _svg(run, "pareto")
    assert all(r["name"] in pareto for r in REFS) and "reference models" in pareto
    assert "accuracy (%" in pareto and str(s["pareto"][0]["id"]) in pareto  # ids as the tables print them
    assert "best so far" in _svg(run, "reward") and "trial id" in _svg(run, "reward")
    assert _svg(run, "entropy").count("its maximum") >= 1
    cap = s["caption"]
    assert cap["backend"] == "onnxruntime" and cap["resolution"] == 224 and cap["mnas_version"]
    page = (run / "report.html").read_text()
    assert 'id="caption"' in page and "onnxruntime" in page.split('id="caption"')[1][:300]


def test_compare_draws_each_runs_own_target_as_densities(tmp_path):
    a = fill_synthetic(tmp_path / "soft", n=60, seed=1, target_ms=20.0)
    b = fill_synthetic(tmp_path / "hard", n=200, seed=2, target_ms=12.5, alpha=0.0, beta=-1.0)
    make_report(a, plots=True, html=False, compare=[b])
    hist = _svg(a, "latency_hist")
    assert "T=20 ms" in hist and "T=12.5 ms" in hist and "density of models" in hist


def test_figures_have_integer_ticks_captions_outside_legends_and_no_controller_panel_without_one(tmp_path,
                                                                                              monkeypatch):
    """The figure objects themselves (not pixels): a synthetic evolution-like run with no policy entropy."""
    from matplotlib.ticker import MaxNLocator

    import mnas.report.plots as plots
    from mnas.store.query import token_matrix, trial_table

    figures = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path, formats=(): figures.setdefault(path.stem, fig) and path)
    run = fill_synthetic(tmp_path / "run", n=30, seed=2, target_ms=20.0)
    with Store(run, readonly=True) as store:
        table, tokens = trial_table(store), token_matrix(store)
    plots.write_plots(tmp_path / "plots", table, 20.0, [], tokens, cardinalities=[4] * tokens.shape[1])

    def integer(locator):
        return isinstance(locator, MaxNLocator) and locator._integer

    reward, pareto, hist, entropy = (figures[n] for n in ("reward", "pareto", "latency_hist", "entropy"))
    assert integer(reward.axes[0].xaxis.get_major_locator())  # trial ids
    assert integer(pareto.axes[1].yaxis.get_major_locator())  # the colour bar of trial ids
    assert integer(hist.axes[0].yaxis.get_major_locator())  # counts of models
    assert integer(entropy.axes[0].xaxis.get_major_locator())
    for name, fig in figures.items():
        assert fig.axes[0].get_legend() is None and len(fig.legends) == 1, name  # below the axes, not over points
        assert any(t.get_text().replace("\n", " ") == plots.READ[name if name != "entropy" else "entropy_sampled"]
                   for t in fig.texts), name  # what to read on it
    ax = pareto.axes[0]  # trial-id labels: real text extents, none over another, none over the legend
    renderer = pareto.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    legend = pareto.legends[0].get_window_extent(renderer)
    assert len(boxes) >= 3 and not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    assert not any(b.overlaps(legend) for b in boxes)
    texts = [entropy.axes[0].get_title(), entropy.axes[0].get_xlabel(),
             *(t.get_text() for t in entropy.legends[0].get_texts())]
    assert not any("controller" in t.lower() for t in texts), texts  # no controller, no controller panel
