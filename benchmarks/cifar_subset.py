"""A class-balanced subset of the CIFAR-10 JPEG archive's training images as an npz (x: uint8 N x 32 x 32 x 3,
y: int64), the first PER_CLASS of each class in sorted order: an in-memory dataset (``npz:OUT``) for
benchmarks that need CIFAR-10 at a size the CPU affords.

    python benchmarks/cifar_subset.py cifar10-jpeg.zip runs/cifar10-7k.npz 700
"""
import io, sys, zipfile
import numpy as np
from PIL import Image

zpath, out, per_class = sys.argv[1], sys.argv[2], int(sys.argv[3])
with zipfile.ZipFile(zpath) as z:
    names = sorted(n for n in z.namelist() if n.endswith(".jpg") and n.split("/")[-3] == "train")
    classes = sorted({n.split("/")[-2] for n in names})
    xs, ys = [], []
    for ci, c in enumerate(classes):
        for n in [m for m in names if m.split("/")[-2] == c][:per_class]:
            xs.append(np.asarray(Image.open(io.BytesIO(z.read(n))).convert("RGB")))
            ys.append(ci)
np.savez(out, x=np.stack(xs), y=np.asarray(ys, np.int64))
print(out, len(ys), classes)
