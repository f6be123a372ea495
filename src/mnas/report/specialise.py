"""One supernet, many devices (issue 29): a search per (backend, T) with the supernet as the accuracy source,
then each search's rank-1 model timed on every backend of the list, side by side (``mnas supernet
specialise``).

What is timed is what the searches timed: the architecture at width 1.0, at the supernet's image size,
channels and classes (the network a user ships after training it), with the searches' latency settings; each
model is timed alone on each backend (absolute medians), where a search with a zoo-model T recorded LAT/T
beside T's model times the stored T. Its accuracy is the supernet's reading (at
the supernet's width), not a standalone training. Every search lives in its own experiment folder under the
output folder, so ``mnas report`` reads each one, and a killed run resumes: finished searches are read back,
an unfinished one continues, and timings already made come from the output folder's latency cache.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnas import MnasError
from mnas.fileio import atomic_write

log = logging.getLogger(__name__)

RESULT = "specialised.json"
PLOT = "specialised.png"
READ = ("Each panel is one backend: every specialised model's latency there (x) against its supernet accuracy (y); "
        "a circle was searched for that backend (its T dashed), a square for another one. A model searched for a "
        "backend should sit left of its T and above the others near it; a square shows what running a model "
        "specialised elsewhere costs here.")


@dataclass(frozen=True)
class Target:
    """A backend and the T of its search: milliseconds, or a zoo model timed on that backend."""

    backend: str
    target: str

    @property
    def reward(self) -> dict[str, Any]:
        try:
            return {"target_ms": float(self.target)}
        except ValueError:
            return {"target_model": self.target}


def parse_target(text: str) -> Target:
    """``BACKEND=T``: T in milliseconds or a zoo model name (``onnxruntime=mobilenet-v2-cifar``,
    ``openvino=2.5``)."""
    backend, sep, target = text.rpartition("=")
    if not sep or not backend.strip() or not target.strip():
        raise MnasError(f"target {text!r}: write BACKEND=T, T in ms or a zoo model (onnxruntime=mobilenet-v2-cifar, "
                        "openvino=2.5)")
    return Target(backend.strip(), target.strip())


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")[:40] or "target"


def search_config(supernet: str | Path, data: dict[str, Any], target: Target, space: str, trials: int,
                  base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config of one target's search: ``base`` (a config mapping) with the supernet as the accuracy source
    and the latency timed at the supernet's image size, channels and classes (``data``: its checkpoint's) on
    the target's backend."""
    cfg = dict(base or {})
    cfg.update(name=f"specialise-{_slug(target.backend)}-{_slug(target.target)}", space=space, trials=trials)
    cfg["proxy"] = {**cfg.get("proxy", {}), "estimator": f"supernet:{supernet}"}
    cfg["latency"] = {**cfg.get("latency", {}), "backend": target.backend, "resolution": data["resolution"],
                      "in_chans": data["in_chans"], "num_classes": data["num_classes"]}
    reward = {k: v for k, v in cfg.get("reward", {}).items() if k not in ("target_ms", "target_model")}
    cfg["reward"] = {**reward, **target.reward}
    return cfg


def specialise(supernet: str | Path, out: str | Path, targets: Sequence[Target], trials: int,
               base: dict[str, Any] | None = None,
               say: Callable[[str], None] = log.info) -> dict[str, Any]:
    """Run (or resume) a search per target, then time each search's rank-1 model on every target's backend;
    the result (also written to ``out/specialised.json``, with the plot ``out/specialised.png``)."""
    from mnas.latency import LatencySettings, measure
    from mnas.search.checks import preflight
    from mnas.search.config import config_from_dict
    from mnas.search.driver import Search
    from mnas.space import Architecture
    from mnas.store import Store
    from mnas.store.query import best_trial
    from mnas.supernet.table import space_reference
    from mnas.supernet.training import read_checkpoint

    if not targets:
        raise MnasError("no target: give at least one --target BACKEND=T")
    if len(set(targets)) != len(targets):
        raise MnasError("the same --target twice: give each (backend, T) once")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    supernet = Path(supernet).resolve()  # as each search stores it: a rerun from another folder resumes
    blob = read_checkpoint(supernet)
    space = space_reference(blob, out / "space.yaml")
    rows: list[dict[str, Any]] = []
    configs = [config_from_dict(search_config(supernet, blob["data"], t, space, trials, base),
                                f"target {t.backend}={t.target}") for t in targets]
    for cfg in configs:  # every backend and the data checked before the first search starts
        preflight(cfg)
    for i, (t, cfg) in enumerate(zip(targets, configs)):
        folder = out / f"{i + 1}-{_slug(t.backend)}-{_slug(t.target)}"
        resume = _started(folder)
        say(f"search {i + 1}/{len(targets)}: {t.backend}, T = {t.target} ({trials} trials"
            f"{', resumed' if resume else ''}) -> {folder}")
        run = Search.open(cfg, folder, resume=resume)
        try:
            run.run()
            target_ms = run.target_ms
        finally:
            run.close()
        with Store(folder, readonly=True) as store:
            best = best_trial(store)
        if best is None:
            raise MnasError(f"the search in {folder} completed no trial: see mnas trials {folder}")
        rows.append({"backend": t.backend, "target": t.target, "target_ms": target_ms, "experiment": str(folder),
                     "trial": best.id, "arch": best.arch, "accuracy": best.accuracy, "reward": best.reward,
                     "searched_ms": best.latency_ms, "latency_ms": {}})
    backends = list(dict.fromkeys(t.backend for t in targets))
    settings = LatencySettings.from_dict(configs[0].latency.model_dump())  # the searches' timing protocol
    for row in rows:
        for b in backends:
            say(f"timing trial {row['trial']} of {Path(row['experiment']).name} on {b}")
            r = measure(Architecture.parse(row["arch"]), b, settings, cache=out / "latency-cache.db")
            row["latency_ms"][b] = r.median_ms
    result = {"supernet": str(supernet), "supernet_step": blob["step"], "space": blob["space"]["name"],
              "width_multiplier": blob["width_multiplier"], "trials": trials,
              "timing": settings.key_fields(), "backends": backends, "models": rows}
    atomic_write(out / RESULT, json.dumps(result, indent=1) + "\n")
    plot_specialised(result, out / PLOT)
    return result


def _started(folder: Path) -> bool:
    """Whether ``folder`` holds a search that stored its config (a run killed before that starts anew)."""
    from mnas.store import Store

    if not (folder / "experiment.db").exists():
        return False
    with Store(folder, readonly=True) as store:
        return bool(store.meta().config)


def plot_specialised(result: dict[str, Any], path: Path) -> Path:
    """One panel per backend: each specialised model's latency there against its supernet accuracy, the T of
    that backend's searches as dashed lines."""
    from mnas.report.plots import _finish, _plt, _save

    from matplotlib.lines import Line2D

    plt = _plt()
    backends, rows = result["backends"], result["models"]
    fig, axes = plt.subplots(1, len(backends), figsize=(3.5 * max(2, len(backends)), 3.6), squeeze=False)
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.16, top=0.88, wspace=0.35)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    handles = []
    for i, row in enumerate(rows):
        t = f"{row['target_ms']:.3g} ms" if row["target_ms"] else row["target"]
        if row["target"] != t and not row["target"].replace(".", "", 1).isdigit():
            t = f"{row['target']} ({t})"
        handles.append(Line2D([], [], color=colours[i % len(colours)], marker="o", linestyle="none",
                              label=f"searched for {row['backend']}, T = {t}"))
    for j, (b, ax) in enumerate(zip(backends, axes[0])):
        for i, row in enumerate(rows):
            own = row["backend"] == b
            ax.scatter([row["latency_ms"][b]], [100 * row["accuracy"]], s=40 if own else 22,
                       color=colours[i % len(colours)], marker="o" if own else "s")
            if own and row["target_ms"]:
                ax.axvline(row["target_ms"], color=colours[i % len(colours)], linestyle="--", linewidth=0.8)
        ax.set_title(f"timed on {b}", fontsize=9)
        ax.set_xlabel("latency (ms)")
        if j == 0:
            ax.set_ylabel("supernet top-1 (%)")
    _finish(fig, axes[0][0], READ, handles)
    return _save(fig, path)
