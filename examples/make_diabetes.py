#!/usr/bin/python3
"""A small regression task: scikit-learn's diabetes data (442 patients, 10
standardized features, disease progression after one year), split 80/20
with a fixed seed into HDF5 files mpitrain reads, plus the scores of
scikit-learn's linear models on the same split for comparison.

    /usr/bin/python3 examples/make_diabetes.py [OUT_DIR]

Needs Debian's python3-sklearn and python3-h5py (use /usr/bin/python3).
OUT_DIR (default data/diabetes) gets train.h5 and test.h5: /x float32
(N, 10), /y float32 (N, 1), the target standardized with the training
mean and standard deviation (stored as attributes target_mean and
target_std), so MSE and MAE are in standard deviations and R^2 is the
same as on the raw target.
"""
import os
import sys

import h5py
import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LinearRegression, RidgeCV
from sklearn.metrics import mean_absolute_error, r2_score
from sklearn.model_selection import train_test_split


def write(path, x, y, mean, std):
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=x.astype(np.float32))
        t = f.create_dataset("y", data=((y - mean) / std)
                             .astype(np.float32).reshape(-1, 1))
        t.attrs["target_mean"] = mean
        t.attrs["target_std"] = std
    print("%s: %d samples" % (path, len(y)))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "data/diabetes"
    os.makedirs(out, exist_ok=True)
    d = load_diabetes()
    xtr, xte, ytr, yte = train_test_split(d.data, d.target, test_size=0.2,
                                          random_state=0)
    mean, std = ytr.mean(), ytr.std()
    write(out + "/train.h5", xtr, ytr, mean, std)
    write(out + "/test.h5", xte, yte, mean, std)
    for name, model in (("LinearRegression", LinearRegression()),
                        ("RidgeCV", RidgeCV(alphas=np.logspace(-3, 2, 20)))):
        p = model.fit(xtr, ytr).predict(xte)
        print("scikit-learn %-16s test R2 %.4f  MAE %.4f (standardized)"
              % (name, r2_score(yte, p), mean_absolute_error(yte, p) / std))


if __name__ == "__main__":
    main()
