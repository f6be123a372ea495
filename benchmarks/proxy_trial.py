"""One proxy trial as a search runs it (``train_architecture``), with any ``TrainTask`` field set on
the command line; prints its time and held-out top-1.

    python benchmarks/proxy_trial.py mnasnet-a1 dataset=imagefolder:PATH cache=FOLDER resolution=32 \\
        holdout=5000 epochs=0.2845 warmup_epochs=0.03
"""

from __future__ import annotations

import json
import os
import sys

import yaml

from mnas.space import zoo
from mnas.train import TrainTask, train_architecture


def main(argv: list[str]) -> None:
    name, settings = argv[0], dict(arg.split("=", 1) for arg in argv[1:])
    proxy = TrainTask(**{k: yaml.safe_load(v) for k, v in settings.items()})
    load = os.getloadavg()[0]
    r = train_architecture(zoo.get(name), proxy, proxy.seed)
    print(json.dumps({"arch": name, "top1": r.top1, "val_loss": round(r.val_loss or 0, 3), "steps": r.steps,
                      "train_images_per_s": round(r.train_images_per_s, 1), "trial_seconds": round(r.seconds, 1),
                      "eval_seconds": round(r.eval_seconds, 1), "loss_curve": [round(v, 3) for v in r.loss_curve],
                      "load_average": [load, os.getloadavg()[0]], "settings": settings}))


if __name__ == "__main__":
    main(sys.argv[1:])
