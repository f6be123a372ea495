"""Write a generated ImageFolder of JPEGs for the data benchmarks (docs/results/2026-11-27-data-pipeline.md).

Each image is smooth random colour (a small random grid upsampled), so the files are photo-sized
(~10 KB at 256 px) and decode like photos; classes differ only in name. ``--distinct N`` encodes N
images and writes the rest as copies of them (encoding 40,000 took too long on the busy 2-core box;
decoding a copy costs the same).

    python benchmarks/make_jpeg_folder.py OUT --images 10000 --classes 10 --size 256 [--distinct 1000]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--distinct", type=int, default=0, help="encode this many, copy the rest (0: all distinct)")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    distinct = a.distinct or a.images
    for i in range(a.images):
        folder = a.out / f"class{i % a.classes:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{i:06d}.jpg"
        if i < distinct:
            grid = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
            grid.resize((a.size, a.size), Image.BICUBIC).save(path, quality=85)
        else:
            shutil.copyfile(a.out / f"class{i % distinct % a.classes:03d}" / f"{i % distinct:06d}.jpg", path)


if __name__ == "__main__":
    main()
