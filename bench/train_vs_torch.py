#!/usr/bin/python3
"""Training throughput of mpitrain against PyTorch on one core, same run.

Trains LeNet-5 and the 784-256-128-100-10 MLP of examples/ for the same
number of steps at batch 64 with both, and prints samples/s, the ratio
and mpitrain's peak RSS. PyTorch runs with torch.set_num_threads(1) and
mpitrain with one OpenBLAS thread, one rank, on each SIMD path the CPU
has (MPITRAIN_ISA) and LeNet-5 with each conv backend ([conv] backend).

Run with Debian's python3 (/usr/bin/python3), which has python3-torch and
python3-h5py:  /usr/bin/python3 bench/train_vs_torch.py [--steps N]
Needs the build in build/ and data/fashion-mnist/ (./quickstart.sh makes
both). Timings are not tests: the machines are shared and noisy.
"""
import argparse
import os
import re
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def same_blas_kernel():
    """PyTorch from Debian calls the same OpenBLAS: give it the kernel
    mpitrain picks (OpenBLAS 0.3.21 falls back to Prescott on Intel models
    it does not know; mpitrain restarts with a better one, and a peer left
    on Prescott would be measured at a third of its speed). Before torch
    is imported: OpenBLAS reads the variable when it loads."""
    if "OPENBLAS_CORETYPE" in os.environ:
        return
    out = subprocess.run([os.path.join(TOP, "build", "mpitrain"),
                          "--version"], capture_output=True, text=True).stdout
    m = re.search(r"OpenBLAS (\S+) core", out)
    if m:
        os.environ["OPENBLAS_CORETYPE"] = m.group(1)


same_blas_kernel()
import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402


def lenet():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10))


def mlp():
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128),
        nn.ReLU(), nn.Linear(128, 100), nn.ReLU(), nn.Linear(100, 10))


def torch_samples_per_s(make, x, y, steps, batch, opt):
    torch.manual_seed(0)
    model = make()
    if opt == "adam":
        o = torch.optim.Adam(model.parameters(), lr=1e-3)
    else:
        o = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9,
                            nesterov=True, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    n = x.shape[0]
    perm = torch.randperm(n)
    warm = 20
    for s in range(steps + warm):
        if s == warm:
            t0 = time.perf_counter()
        i = perm[(s * batch) % (n - batch):][:batch]
        o.zero_grad()
        loss = loss_fn(model(x[i]), y[i])
        loss.backward()
        o.step()
    return steps * batch / (time.perf_counter() - t0)


def mpitrain_run(ini, steps, batch, rundir, sets, isa):
    exe = os.path.join(TOP, "build", "mpitrain")
    cmd = [exe, "train", os.path.join(TOP, "examples", ini),
           "--set", "train.max_steps=%d" % steps,
           "--set", "train.batch=%d" % batch,
           "--set", "data.validation=0", "--set", "data.test=",
           "--set", "run.progress=none", "--set", "run.threads=1",
           "--set", "run.dir=" + rundir] + sets
    env = dict(os.environ)
    if isa:
        env["MPITRAIN_ISA"] = isa
    out = subprocess.run(cmd, cwd=TOP, check=True, capture_output=True,
                         text=True, env=env).stdout
    m = re.search(r"trained (\d+) steps in ([\d.]+) s, (\d+) samples/s, "
                  r"peak RSS (\d+) MiB", out)
    if not m:
        sys.exit("bench: could not read mpitrain's output:\n" + out)
    return float(m.group(3)), float(m.group(4))


def paths():
    """The SIMD paths this CPU has, best first ("avx512", "avx2", ...)."""
    out = subprocess.run([os.path.join(TOP, "build", "mpitrain"),
                          "--version"], capture_output=True, text=True).stdout
    m = re.search(r"this CPU has: ([a-z0-9 ]+)\)", out)
    have = m.group(1).split() if m else []
    return [p for p in ("avx512", "avx2") if p in have] or [None]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with h5py.File(os.path.join(TOP, "data/fashion-mnist/train.h5")) as f:
        x = torch.from_numpy(f["x"][:].astype(np.float32) / 255.0)
        y = torch.from_numpy(f["y"][:].astype(np.int64))
    # the OpenBLAS kernel, the SIMD path and the convolutions' backend
    core = subprocess.run([os.path.join(TOP, "build", "mpitrain"),
                           "--version"], capture_output=True,
                          text=True).stdout.splitlines()[1:]
    print("%s\ntorch %s, 1 thread; batch %d, %d steps" %
          ("\n".join(core), torch.__version__, args.batch, args.steps))
    print("%-22s %10s %10s %7s %12s" % ("model path conv", "mpitrain/s",
                                       "pytorch/s", "ratio", "mt peak RSS"))
    # Each model's PyTorch rate once; mpitrain's on each SIMD path this CPU
    # has (MPITRAIN_ISA) and with each conv backend, against it.
    conv = lambda be: ["--set", "layer1.backend=" + be,
                       "--set", "layer3.backend=" + be]
    rows = []
    for isa in paths():
        rows += [("lenet5", isa, "auto", []),
                 ("lenet5", isa, "onednn", conv("onednn")),
                 ("lenet5", isa, "im2col", conv("im2col")),
                 ("mlp", isa, "", [])]
        if isa == "avx512":
            rows.insert(len(rows) - 3, ("lenet5", isa, "direct",
                                        conv("direct")))
            bf16 = ["--set", "train.precision=bf16"]
            rows += [("lenet5", isa, "auto bf16", bf16),
                     ("mlp", isa, "bf16", bf16)]
    models = {"lenet5": ("lenet5-fashion.ini", lenet, "sgd"),
              "mlp": ("mlp-fashion.ini", mlp, "adam")}
    # PyTorch before and after, the better of the two (the host's speed
    # drifts; the ratios then err against mpitrain)
    pt = lambda: {name: torch_samples_per_s(make, x, y, args.steps,
                                            args.batch, opt)
                  for name, (ini, make, opt) in models.items()}
    before = pt()
    got = []
    for name, isa, conv_be, sets in rows:
        try:
            got.append((name, isa, conv_be) + mpitrain_run(
                models[name][0], args.steps, args.batch,
                "/tmp/mpitrain-bench-" + name, sets, isa))
        except subprocess.CalledProcessError as e:  # bf16 without BF16
            print("%s %s %s: refused: %s" % (name, isa, conv_be,
                                             e.stderr.strip()))
    after = pt()
    best = {name: max(before[name], after[name]) for name in models}
    for name, isa, conv_be, mt, rss in got:
        label = "%s %s %s" % (name, isa or "", conv_be)
        print("%-22s %10.0f %10.0f %6.2fx %9.0f MiB" %
              (label, mt, best[name], mt / best[name], rss))
    print("pytorch before/after: " + ", ".join(
        "%s %.0f/%.0f" % (n, before[n], after[n]) for n in models))

if __name__ == "__main__":
    main()
