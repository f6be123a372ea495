"""What a search found, told in one table: the reference models scored on the search's own proxy
(``references.score``), the winner (rank 1) against MobileNetV2 at equal latency, and the commands that
come next (the report page, the dashboard, training and exporting the winner)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from mnas.search.reward import RewardConfig, reward

FAMILY = "mobilenet-v2"  # the curve the paper's Table 1 compares against (its CIFAR variant in a CIFAR space)
REFERENCE_KEYS = ("name", "model", "width", "arch", "accuracy", "latency_ms", "reward", "params", "macs",
                  "seconds", "error")


def reference_rows(refs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The store's references as report rows, by latency: "kind" "reference" (never a trial: no rank, no id),
    "accuracy" and "reward" None where they were only timed."""
    rows = [{"kind": "reference", **{k: r.get(k) for k in REFERENCE_KEYS}} for r in refs]
    for r in rows:  # stores written before "model" and "width" were recorded: "mobilenet-v2 0.5"
        if r["model"] is None and r["name"]:
            model, _, width = str(r["name"]).partition(" ")
            r["model"], r["width"] = model, _float(width)
    return sorted(rows, key=lambda r: (r["latency_ms"] is None, r["latency_ms"] or 0.0))


def references_scored(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """How many references were trained on the proxy and what it cost (outside the trial budget)."""
    trained = [r for r in rows if r.get("seconds") is not None]
    return {"scored": sum(1 for r in trained if r["accuracy"] is not None),
            "failed": sum(1 for r in trained if r.get("error")),
            "seconds": round(sum(r["seconds"] for r in trained), 1), "counted_in_trial_budget": False}


def versus_reference(best: dict[str, Any] | None, rows: list[dict[str, Any]],
                     reward_meta: dict[str, Any]) -> dict[str, Any] | None:
    """The winner (``best``, a summary row) against MobileNetV2 at the winner's latency: the accuracy of its
    scored widths interpolated linearly between the two that bracket that latency (never extrapolated: outside
    the curve, the nearest width, said so), its reward there, and the margins. None without a scored curve."""
    family = rows_family(rows)
    curve = sorted((r for r in rows if r["model"] == family and r["accuracy"] is not None
                    and r["latency_ms"] is not None), key=lambda r: r["latency_ms"])
    if best is None or best.get("accuracy") is None or best.get("latency_ms") is None or not curve:
        return None
    lat = float(best["latency_ms"])
    nearest = min(curve, key=lambda r: abs(r["latency_ms"] - lat))
    below = [r for r in curve if r["latency_ms"] <= lat]
    above = [r for r in curve if r["latency_ms"] >= lat]
    if below and above:
        a, b = max(below, key=lambda r: r["latency_ms"]), min(above, key=lambda r: r["latency_ms"])
        span = b["latency_ms"] - a["latency_ms"]
        f = 0.0 if span <= 0 else (lat - a["latency_ms"]) / span
        acc = a["accuracy"] + f * (b["accuracy"] - a["accuracy"])
        widths = _width(a) if a is b else f"{_width(a)}-{_width(b)}"
        equal = {"name": f"MobileNetV2 at {lat:.3g} ms ({widths}, interpolated)", "accuracy": acc,
                 "latency_ms": lat, "reward": _reward(acc, lat, reward_meta), "interpolated": True}
        note = ("one proxy training each: a difference of a few points may be the proxy's noise; "
                "retrain both in full to be sure (mnas retrain)")
    else:
        equal = {"name": f"MobileNetV2 {_width(nearest)} (nearest)", "accuracy": nearest["accuracy"],
                 "latency_ms": nearest["latency_ms"], "reward": nearest["reward"], "interpolated": False}
        side = "slower" if lat > nearest["latency_ms"] else "faster"
        note = (f"the found model is {side} than every MobileNetV2 width scored ({_width(curve[0])}-"
                f"{_width(curve[-1])}, {curve[0]['latency_ms']:.3g}-{curve[-1]['latency_ms']:.3g} ms): no "
                "MobileNetV2 runs at its latency, so compare the rewards, which weigh accuracy against latency")
    found = {"name": f"found: trial {best['id']} (rank 1)", "accuracy": best["accuracy"], "latency_ms": lat,
             "reward": best.get("reward"), "arch": best.get("arch")}
    measured = {"name": f"MobileNetV2 {_width(nearest)} (scored on the proxy)", "accuracy": nearest["accuracy"],
                "latency_ms": nearest["latency_ms"], "reward": nearest["reward"]}
    margin = {"accuracy_points": 100 * (found["accuracy"] - equal["accuracy"]),
              "latency_ms": lat - equal["latency_ms"],
              "latency_percent": 100 * (lat / equal["latency_ms"] - 1) if equal["latency_ms"] else None,
              "reward": None if found["reward"] is None or equal["reward"] is None
              else found["reward"] - equal["reward"]}
    return {"found": found, "reference": measured, "equal_latency": equal, "margin": margin, "note": note}


def rows_family(rows: list[dict[str, Any]]) -> str:
    """The MobileNetV2 model among the references: ``mobilenet-v2``, or in a CIFAR space its ``-cifar`` one."""
    models = {str(r["model"]) for r in rows if str(r["model"] or "").startswith(FAMILY)}
    return FAMILY if FAMILY in models or not models else sorted(models)[0]


def versus_table(v: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The terminal's rows of ``versus_reference``: model, proxy accuracy, latency, reward."""
    def row(r: dict[str, Any]) -> list[str]:
        return [r["name"], _pct(r["accuracy"]), _num(r["latency_ms"], ".3f"), _num(r["reward"], ".4f")]

    m = v["margin"]
    rows = [row(v["found"]), row(v["reference"])]
    if v["equal_latency"]["interpolated"]:
        rows.append(row(v["equal_latency"]))
    lat = f"{m['latency_ms']:+.3f}" + (f" ({m['latency_percent']:+.1f} %)" if m["latency_percent"] else "")
    against = "MobileNetV2 at equal latency" if v["equal_latency"]["interpolated"] else v["reference"]["name"]
    rows.append([f"margin: found - {against}", f"{m['accuracy_points']:+.1f} points", lat,
                 _num(m["reward"], "+.4f")])
    return ["model", "accuracy (proxy)", "latency ms", "reward"], rows


def next_commands(directory: str | Path, html: str | None = None, winner: bool = True) -> list[dict[str, str]]:
    """What to do next with the experiment in ``directory``, each {"what", "command"} (the page: {"what",
    "path"}): the page, the dashboard (where the live view wrote its study), training the winner as deployed
    and exporting it (``winner``: the experiment has a completed trial)."""
    d = str(directory)
    q = shlex.quote
    folder = str(Path(d) / "winner")
    steps = []
    if html:
        steps.append({"what": "the report page (plots, every trial)", "path": html})
    if (Path(d) / "optuna.db").is_file():
        steps.append({"what": "the trials in optuna-dashboard",
                      "command": f"optuna-dashboard {q(f'sqlite:///{d}/optuna.db')}"})
    if winner:
        steps.append({"what": "train the winner as deployed (full width, a full-training recipe)",
                      "command": f"mnas train {q(d)} --rank 1 --dir {q(folder)}"})
        steps.append({"what": "export it to ONNX, with its parity and latency",
                      "command": f"mnas export {q(d)} --rank 1 --weights {q(folder)} --format onnx "
                                 f"--out {q(folder + '.onnx')}"})
    return steps


def _reward(acc: float, lat: float, reward_meta: dict[str, Any]) -> float | None:
    """The reward of ``acc`` at ``lat`` under the search's reward; None where it has other constraints
    (params, MACs: unknown for an interpolated model) or none was recorded."""
    try:
        cfg = RewardConfig.from_dict(reward_meta)
    except Exception:  # noqa: BLE001 - a store without a usable reward record: the table shows none
        return None
    if cfg.constraints:
        return None
    return reward(acc, lat, cfg)


def _width(r: dict[str, Any]) -> str:
    """x0.5, x0.75, x1.0, x1.4: the widths as the reference names write them."""
    w = r.get("width")
    return str(r["name"]) if w is None else f"x{w:.1f}" if float(w).is_integer() else f"x{w:g}"


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f} %"


def _num(v: float | None, fmt: str) -> str:
    return "" if v is None else format(v, fmt)
