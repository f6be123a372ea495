"""How well a proxy ranks the models an experiment retrained: Kendall tau between each proxy variant's accuracy
and the retrained top-1, with the proxy's seconds per model beside it (issue 14 point 4, issue 18 point 4).

    python benchmarks/proxy_fidelity.py runs/cifar10 --variant literal:warmup_epochs=0.2845 \
        --variant searched-seed1:seed=1

Every variant is the experiment's own proxy config with the named fields replaced. ``searched`` (always
shown) is the proxy the search ran, as stored: a trial's accuracy, a reference's once
`mnas retrain EXPERIMENT --references ... --score-proxy` has scored it. Results go to
EXPERIMENT/proxy-variants.json after every model, so a killed
run resumes where it stopped; the experiment's store is only read.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from mnas.cli.overrides import parse_sets
from mnas.report.retrained import kendall_tau
from mnas.search.config import config_from_dict
from mnas.space import Architecture
from mnas.store import Store
from mnas.train import train_architecture


def parse_variant(text: str) -> tuple[str, dict]:
    name, _, sets = text.partition(":")
    return name, parse_sets([s for s in sets.split(",") if s]) if sets else {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--variant", action="append", default=[], help="NAME:field=value,field=value")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--table-only", action="store_true", help="train nothing: the table of what is there")
    ap.add_argument("--mean", default=None, help="A,B: also the tau of the mean of two variants' accuracies, and "
                    "their agreement with each other (e.g. two seeds)")
    ap.add_argument("--results", type=Path, help="where the scores are kept (default EXPERIMENT/proxy-variants.json); "
                    "two runs at once need two files")
    args = ap.parse_args()
    run = Path(args.run)
    with Store(run, readonly=True) as store:
        exp = config_from_dict(store.get_meta("config"), str(store.path))
        rows = store.retrained()
    done_rows = [r for r in rows if r.get("status") == "completed" and r.get("top1") is not None]
    digests = [(r.get("data") or {}).get("recipe_digest") for r in done_rows]
    recipe = max(set(digests), key=digests.count)  # one recipe: a ranking across recipes measures the recipes
    models = [r for r, d in zip(done_rows, digests) if d == recipe]
    out_path = args.results or run / "proxy-variants.json"
    results = json.loads(out_path.read_text()) if out_path.exists() else {}
    variants = [("searched", {}), *map(parse_variant, args.variant)]
    for name, sets in variants:
        done = results.setdefault(name, {"sets": sets, "models": {}})
        if done["sets"] != sets:
            raise SystemExit(f"variant {name!r} was run with {done['sets']}, not {sets}: give it another name")
        proxy = exp.proxy.model_copy(update={**sets, "threads": args.threads})
        seed = sets.get("seed", exp.seed)
        for r in models:
            if r["label"] in done["models"] or (args.table_only and name != "searched"):
                continue
            if name == "searched":  # stored: a trial's by the search, a reference's by `mnas retrain --score-proxy`
                if r.get("proxy_accuracy") is not None:
                    done["models"][r["label"]] = {"accuracy": r["proxy_accuracy"], "seconds": None, "stored": True}
            else:
                t0 = time.perf_counter()
                res = train_architecture(Architecture.parse(r["arch"]), proxy, seed)
                secs = time.perf_counter() - t0
                done["models"][r["label"]] = {"accuracy": res.top1 if res.ok else None,
                                              "seconds": secs, "load": os.getloadavg()[0]}
                print(f"{name}: {r['label']} {res.top1 if res.ok else res.error} in {secs:.0f} s", flush=True)
            if not args.table_only:
                tmp = out_path.with_suffix(".tmp")
                tmp.write_text(json.dumps(results, indent=1))
                tmp.replace(out_path)
    top1 = {r["label"]: r["top1"] for r in models}
    trials = {r["label"] for r in models if r.get("kind") == "trial"}
    # the models every variant scored, so that the taus compare like with like
    common = set(top1).intersection(*({k for k, v in results[n]["models"].items() if v["accuracy"] is not None}
                                      for n, _ in variants))
    print(f"\n{len(common)} models scored by every proxy ({len(common & trials)} searched trials)")
    print("| proxy | fields changed | tau, all models (p) | tau, searched trials only (p) | proxy s per model |")
    print("|---|---|---|---|---|")
    for name, sets in variants:
        got = results[name]["models"]
        cells = []
        for keys in (common, common & trials):
            keys = sorted(keys)
            tau, p, _ = kendall_tau([got[k]["accuracy"] for k in keys], [top1[k] for k in keys])
            cells.append(f"{tau:.3f} ({p:.2g}), n = {len(keys)}" if tau is not None else f"n = {len(keys)}")
        secs = [got[k]["seconds"] for k in common if got[k].get("seconds")]
        mean_s = f"{sum(secs) / len(secs):.0f} s (as run)" if secs else "stored"
        print(f"| {name} | {', '.join(f'{k}={v}' for k, v in sets.items()) or '(as searched)'} | {cells[0]} | "
              f"{cells[1]} | {mean_s} |")
    if args.mean:
        a, b = (results[n]["models"] for n in args.mean.split(","))
        for keys in (sorted(common), sorted(common & trials)):
            mean = [(a[k]["accuracy"] + b[k]["accuracy"]) / 2 for k in keys]
            tau, p, _ = kendall_tau(mean, [top1[k] for k in keys])
            agree, _, _ = kendall_tau([a[k]["accuracy"] for k in keys], [b[k]["accuracy"] for k in keys])
            print(f"mean of {args.mean}, {len(keys)} models: tau {tau:.3f} (p {p:.2g}); "
                  f"the two against each other: tau {agree:.3f}")
    print("\nper model (retrained top-1, then each proxy's accuracy):")
    for label in sorted(top1, key=top1.get):
        accs = " ".join(f"{results[n]['models'].get(label, {}).get('accuracy') or float('nan'):.4f}" for n, _ in variants)
        print(f"  {label:22s} {top1[label]:.4f}  {accs}")


if __name__ == "__main__":
    main()
