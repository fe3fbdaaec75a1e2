"""Difficulty calibration of the synthetic dataset (``benchmark.data.synth``).

The default data must show the long-tail effect without being trivial or impossible. This
script trains one small but real classifier (a 3-layer temporal CNN over the 3x25x2
coordinate channels of 64-frame linearly resampled clips, plain cross-entropy) twice:

* on the IF-100 long-tailed subset of the xsub train set, built exactly as a run builds it
  (exp profile n_c = int(n_max * (1/IF) ** (c / (C-1))), BRL's per-class shuffle, seed 0),
* on the full balanced xsub train set (shows the gap comes from imbalance, not from
  classes that cannot be told apart),

and reports top-1 on the balanced test set plus Many/Medium/Few: the unweighted mean of
per-class accuracy over classes with > 100 / 20-100 / < 20 clips in the long-tailed subset.
The CTR-GCN harness does not enter here on purpose: the numbers are about the data.

Usage: ``python scripts/synth_difficulty.py [--n-max 200] [--set noise=0.03 ...]``
"""
from __future__ import annotations

import argparse
import ast
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
from benchmark.data import splits  # noqa: E402
from benchmark.data.protocols import protocol_split  # noqa: E402
from benchmark.data.synth import RECOMMENDED_N_MAX, SynthParams, TRAIN_PERFORMERS, iter_synth  # noqa: E402

log = logging.getLogger("synth_difficulty")
WINDOW = 64  # the CTR-GCN feeder's window


def resample(data: np.ndarray, lengths: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """Linear resize of each clip's valid frames to ``window`` frames (the feeder's formula,
    source frame (i + 0.5) * L / window - 0.5, clamped), (n, 3, T, V, M) -> (n, 3*V*M, window)."""
    n, T = data.shape[0], data.shape[2]
    x = data.transpose(0, 2, 1, 3, 4).reshape(n, T, -1)  # (n, T, channels)
    L = lengths[:, None].astype(np.float64)
    src = np.clip((np.arange(window)[None] + 0.5) * L / window - 0.5, 0, L - 1)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, lengths[:, None] - 1)
    w = (src - i0)[..., None].astype(np.float32)
    x0 = np.take_along_axis(x, i0[..., None], 1)
    x1 = np.take_along_axis(x, i1[..., None], 1)
    return ((1 - w) * x0 + w * x1).transpose(0, 2, 1).copy()


def load(p: SynthParams) -> dict[str, np.ndarray]:
    xs, ys, names = [], [], []
    for label, data, lengths, nms in iter_synth(p):
        xs.append(resample(data, lengths))
        ys.append(np.full(len(nms), label))
        names += nms
    names_arr = np.array(names)
    return {"x": np.concatenate(xs), "y": np.concatenate(ys), "names": names_arr,
            "train": np.array([int(n[9:12]) in TRAIN_PERFORMERS for n in names])}


def lt_indices(names: np.ndarray, num_classes: int, n_max: int, imbalance: float,
               seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """The IF long-tailed xsub training subset exactly as runs get it (``benchmark.data.lt``):
    protocol order, exp profile, BRL's per-class shuffle with ``seed``."""
    train_names, _ = protocol_split("synth", "xsub", sorted(names.tolist()))
    lt_names, man = splits.build_split(train_names, num_classes, imbalance, n_max, seed)
    row = {n: i for i, n in enumerate(names.tolist())}
    return np.array([row[n] for n in lt_names]), man["per_class_counts"]


class TemporalCNN(nn.Module):
    """Three strided temporal convolutions over all coordinates, global average pooling."""

    def __init__(self, channels: int, num_classes: int, width: int = 64):
        super().__init__()
        layers, c_in = [], channels
        for c_out, k in ((width, 5), (width, 5), (2 * width, 3)):
            layers += [nn.Conv1d(c_in, c_out, k, stride=2, padding=k // 2, bias=False),
                       nn.BatchNorm1d(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(-1))


def train_eval(x_tr, y_tr, x_te, y_te, num_classes: int, epochs: int, seed: int,
               batch: int = 64, lr: float = 2e-3) -> np.ndarray:
    """Train with plain CE (AdamW, cosine LR); return test predictions."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = TemporalCNN(x_tr.shape[1], num_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-3)
    steps = epochs * max(1, len(x_tr) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr).long()
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=g)
        for b in range(len(xt) // batch):  # drop_last, as the official loaders
            i = perm[b * batch:(b + 1) * batch]
            loss = nn.functional.cross_entropy(model(xt[i]), yt[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        return torch.cat([model(torch.from_numpy(x_te[i:i + 512])).argmax(1)
                          for i in range(0, len(x_te), 512)]).numpy()


def report(pred: np.ndarray, y: np.ndarray, counts: list[int]) -> dict[str, float]:
    C = len(counts)
    per_class = np.array([(pred[y == c] == c).mean() for c in range(C)])
    n = np.array(counts)
    groups = {"many": n > 100, "medium": (n >= 20) & (n <= 100), "few": n < 20}
    out = {"overall": float((pred == y).mean())}
    out.update({k: float(per_class[m].mean()) if m.any() else float("nan") for k, m in groups.items()})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-max", type=int, default=RECOMMENDED_N_MAX)
    ap.add_argument("--imbalance", type=float, default=100.0)
    ap.add_argument("--lt-epochs", type=int, default=30)
    ap.add_argument("--balanced-epochs", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0, help="model seed (the data seed is --set seed=...)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a SynthParams field, e.g. --set noise=0.03")
    ap.add_argument("--skip-balanced", action="store_true")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 is reproducible and robust on a shared 2-core machine")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)

    over = {}
    for kv in args.set:
        k, _, v = kv.partition("=")
        over[k.strip()] = ast.literal_eval(v.strip())
    p = SynthParams(**over)
    if p.train_per_class < args.n_max:
        ap.error(f"train_per_class {p.train_per_class} < n_max {args.n_max}")
    t0 = time.perf_counter()
    d = load(p)
    log.info("data: %d clips, %d classes, generated + resampled in %.1f s", len(d["y"]), p.num_classes,
             time.perf_counter() - t0)
    test = ~d["train"]
    lt, counts = lt_indices(d["names"], p.num_classes, args.n_max, args.imbalance)
    n = np.array(counts)
    log.info("IF %g, n_max %d: %d LT train clips; many/medium/few classes = %d/%d/%d; "
             "test %d clips", args.imbalance, args.n_max, len(lt), (n > 100).sum(),
             ((n >= 20) & (n <= 100)).sum(), (n < 20).sum(), test.sum())

    runs = [("IF%g" % args.imbalance, lt, args.lt_epochs)]
    if not args.skip_balanced:
        runs.append(("balanced", np.flatnonzero(d["train"]), args.balanced_epochs))
    print(f"{'train set':>10} {'clips':>6} {'epochs':>6} {'overall':>8} {'many':>6} {'medium':>7} {'few':>6} {'sec':>5}")
    for name, idx, epochs in runs:
        t0 = time.perf_counter()
        pred = train_eval(d["x"][idx], d["y"][idx], d["x"][test], d["y"][test], p.num_classes,
                          epochs, args.seed)
        r = report(pred, d["y"][test], counts)
        print(f"{name:>10} {len(idx):>6} {epochs:>6} {100 * r['overall']:>8.1f} {100 * r['many']:>6.1f} "
              f"{100 * r['medium']:>7.1f} {100 * r['few']:>6.1f} {time.perf_counter() - t0:>5.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
