#!/usr/bin/python3
"""Build an imbalanced binary task from Fashion-MNIST: one class against
the rest, one positive for every 20 negatives, in train and test.

    /usr/bin/python3 examples/make_imbalanced.py [SRC_DIR] [OUT_DIR] [CLASS]

SRC_DIR holds train.h5 and t10k.h5 (`mpitrain convert fashion-mnist`),
default data/fashion-mnist; OUT_DIR gets imb-train.h5 and imb-test.h5,
default data/imbalanced; CLASS defaults to 6 (Shirt, the hardest one).
Which positives are kept is fixed by a seed, so the files are reproducible.
"""
import sys

import h5py
import numpy as np


def make(src, dst, positive, rng):
    with h5py.File(src, "r") as f:
        x, y = f["x"][:], f["y"][:]
    pos = np.flatnonzero(y == positive)
    neg = np.flatnonzero(y != positive)
    keep = rng.choice(pos, size=len(neg) // 20, replace=False)
    rows = np.sort(np.concatenate([keep, neg]))
    with h5py.File(dst, "w") as f:
        d = f.create_dataset("x", data=x[rows])
        d.attrs["scale"] = 255.0
        t = f.create_dataset("y", data=(y[rows] == positive).astype(np.int32))
        t.attrs["n_classes"] = 2.0
        t.attrs["class_names"] = "rest,class %d" % positive
    print("%s: %d samples, %d positive" % (dst, len(rows), len(keep)))


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "data/fashion-mnist"
    out = sys.argv[2] if len(sys.argv) > 2 else "data/imbalanced"
    positive = int(sys.argv[3]) if len(sys.argv) > 3 else 6
    import os
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(1)
    make(src + "/train.h5", out + "/imb-train.h5", positive, rng)
    make(src + "/t10k.h5", out + "/imb-test.h5", positive, rng)


if __name__ == "__main__":
    main()
