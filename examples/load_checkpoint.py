#!/usr/bin/python3
"""Load an mpitrain checkpoint (or weights.h5) into PyTorch and evaluate it.

    /usr/bin/python3 examples/load_checkpoint.py CHECKPOINT DATA.h5

Rebuilds the model from the resolved config stored in the file (/config),
copies every /model/<layer>/<tensor> into the matching torch module, and
prints the accuracy on DATA.h5 (an mpitrain dataset file). It should match
`mpitrain eval` to the last digit or two. Needs Debian's python3-h5py and
python3-torch (use /usr/bin/python3: they import only there).

Layer names follow mpitrain's rule: layer sections in order, an
`activation = ...` key adding its own layer right after, each named kind +
position from 1 (conv1, relu2, maxpool3, ...).
"""
import sys

import h5py
import numpy as np
import torch
from torch import nn


def sections(config_text):
    """The INI sections in order, repeated ones included, as (name, keys)."""
    out = []
    for raw in config_text.splitlines():
        line = raw.split(";")[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            out.append((line.strip("[]").strip(), {}))
        elif "=" in line and out:
            key, value = line.split("=", 1)
            out[-1][1][key.strip()] = value.strip()
    return out


def layers(config_text):
    """(mpitrain name, kind, keys) for every layer, activations expanded."""
    result = []
    for kind, keys in sections(config_text):
        if kind in ("run", "data", "train", "optimizer", "parallel",
                    "checkpoint", "softmax"):
            continue
        result.append((kind + str(len(result) + 1), kind, keys))
        act = keys.get("activation", "none")
        if act != "none":
            result.append((act + str(len(result) + 1), act, {}))
    return result


def build(f):
    """A torch.nn.Sequential with the checkpoint's weights."""
    model, channels = [], None
    for name, kind, k in layers(bytes(f["config"][:]).decode().rstrip("\0")):
        g = f["model"].get(name)
        t = lambda n: torch.from_numpy(np.asarray(g[n], dtype=np.float32))
        if kind == "conv":
            w = t("weight")
            m = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2],
                          stride=int(k.get("stride", 1)),
                          padding=int(k.get("pad", 0)))
            m.weight.data, m.bias.data = w, t("bias")
        elif kind == "dense":
            w = t("weight")
            m = nn.Sequential(nn.Flatten(), nn.Linear(w.shape[1], w.shape[0]))
            m[1].weight.data, m[1].bias.data = w, t("bias")
        elif kind in ("maxpool", "avgpool"):
            size = int(k.get("size", 2))
            stride = int(k.get("stride", 0)) or size
            pool = nn.MaxPool2d if kind == "maxpool" else nn.AvgPool2d
            m = pool(size, stride, int(k.get("pad", 0)))
        elif kind == "batchnorm":
            gamma = t("gamma")
            m = nn.BatchNorm2d(gamma.shape[0], eps=float(k.get("eps", 1e-5)))
            m.weight.data, m.bias.data = gamma, t("beta")
            m.running_mean.data = t("running_mean")
            m.running_var.data = t("running_var")
        else:
            m = {"flatten": nn.Flatten(), "relu": nn.ReLU(),
                 "leaky": nn.LeakyReLU(float(k.get("alpha", 0.01))),
                 "sigmoid": nn.Sigmoid(), "tanh": nn.Tanh(),
                 "dropout": nn.Identity()}[kind]
        model.append(m)
    return nn.Sequential(*model).eval()


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with h5py.File(sys.argv[1], "r") as f:
        model = build(f)
    with h5py.File(sys.argv[2], "r") as d:
        x = d["x"][:].astype(np.float32) / float(d["x"].attrs.get("scale", 255))
        y = d["y"][:]
    if x.ndim == 2:
        x = x.reshape(x.shape[0], -1)
    with torch.no_grad():
        pred = torch.cat([model(torch.from_numpy(x[i:i + 1000])).argmax(1)
                          for i in range(0, len(x), 1000)]).numpy()
    print("samples %d accuracy %.4f" % (len(y), (pred == y).mean()))


if __name__ == "__main__":
    main()
