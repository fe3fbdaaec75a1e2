"""One training epoch on LT-NTU60-sized synthetic data: our harness vs the official CTR-GCN loop.

Issue 7, deliverable 3 (the GPU path). The data: the class sizes of LT-NTU60 xsub at imbalance
factor 100 (n_c = floor(600 * 100^(-c/59)), 7,892 clips), 300 frames x 25 joints x 2 persons,
N(0, 1) in the valid frames (lengths uniform in [32, 300], zeros after), the second person
all zero in the clips of the 49 one-person classes as in NTU-60 (A050-A060 are the two-person
classes). Written once as our store and, with ``--official``, as CTR-GCN's ``NTU60_CS.npz``
format (x_train (N, T, 150), one-hot y_train) from the same arrays.

Variants, each in a fresh subprocess (no variant warms up or slows down another):

* ``official``: the official training loop from a CTR-GCN checkout (``--official DIR``, not
  part of this repo): its ``feeders.feeder_ntu.Feeder`` with the NTU60 xsub config's train
  arguments (window 64, p_interval [0.5, 1], random_rot), a ``torch.utils.data.DataLoader``
  as in its ``main.py`` (shuffle, drop_last, ``--official-workers`` workers, per-worker seed),
  its ``model.ctrgcn.Model`` in fp32, SGD Nesterov, and per step: ``.float().cuda()``, forward,
  cross-entropy, zero_grad / backward / step, ``loss.item()`` and the accuracy ``.item()``.
* ``ours:<amp>[+compile]``: the harness itself (``benchmark.train.Trainer`` on the store: the
  ``ce`` method, instance sampler, ``BatchLoader`` with the train transform batched on the
  device, autocast ``<amp>`` (bf16 | fp16 | off; CUDA only), ``TrainConfig.compile``).

Both sides set cuDNN deterministic without autotuning (the official ``init_seed`` and our
``configure_determinism`` do the same). Each variant trains ``--epochs`` epochs; the reported
time is the last epoch's (the first carries cuDNN / allocator / compile warm-up), and
``official_s / ours_s`` is the speed-up. Peak GPU memory per variant is reported on CUDA.

    python scripts/bench_epoch.py --official /tmp/CTR-GCN            # CUDA: 4 variants
    python scripts/bench_epoch.py --device cpu --clips 256 --epochs 1 # a CPU check, minutes

JSON to stdout and ``--out`` (default results/bench/epoch.json, atomic); a table to stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout
from benchmark import _io  # noqa: E402
from benchmark.data.splits import exp_counts  # noqa: E402
from benchmark.data.store import StoreWriter  # noqa: E402

NUM_CLASSES, T, V, M = 60, 300, 25, 2
TWO_PERSON_FIRST = 49  # A050..A060 (0-based labels 49..59) are NTU-60's two-person classes
WINDOW = 64
OFFICIAL_DEFAULT_WORKERS = 32  # CTR-GCN main.py --num-worker default


def lt_counts() -> np.ndarray:
    """LT-NTU60's class sizes at imbalance 100 (the split builder's exponential profile)."""
    return np.array(exp_counts(NUM_CLASSES, 100.0, 600), dtype=np.int64)


def plan_labels(clips: int | None, seed: int) -> np.ndarray:
    """The LT-NTU60 IF100 label multiset (7,892 clips); ``clips`` scales it (at least one
    clip per class), shuffled so that a store row says nothing about its class."""
    counts = lt_counts()
    if clips is not None and clips != counts.sum():
        counts = np.maximum(1, np.round(counts * clips / counts.sum())).astype(np.int64)
    labels = np.repeat(np.arange(NUM_CLASSES), counts)
    np.random.default_rng(seed).shuffle(labels)
    return labels


def write_data(root: Path, labels: np.ndarray, test_per_class: int, seed: int,
               official_npz: bool) -> dict:
    """Our store (protocol 'bench') and, optionally, the official .npz, from one array."""
    rng = np.random.default_rng(seed + 1)
    test_labels = np.repeat(np.arange(NUM_CLASSES), test_per_class)
    all_labels = np.concatenate([labels, test_labels])
    n, n_train = len(all_labels), len(labels)
    lengths = rng.integers(32, T + 1, n)
    names = [f"E{i:06d}" for i in range(n)]
    store = root / "store"
    frames = np.arange(T)
    with StoreWriter(store, n, T=T, V=V, M=M, dataset="bench_lt_ntu60", num_classes=NUM_CLASSES,
                     layout="ntu25") as w:
        for lo in range(0, n, 256):  # chunks: generation stays small
            hi = min(n, lo + 256)
            block = rng.standard_normal((hi - lo, 3, T, V, M), dtype=np.float32)
            block *= (frames[None, :] < lengths[lo:hi, None])[:, None, :, None, None]
            block[all_labels[lo:hi] < TWO_PERSON_FIRST, ..., 1] = 0.0
            w.data[lo:hi] = block
        w.lengths[:] = lengths
        w.labels[:] = all_labels
        w.names[:] = names
        w.add_split("bench", "train", names[:n_train])
        w.add_split("bench", "test", names[n_train:])
    out = {"store": str(store), "train_clips": n_train, "test_clips": n - n_train}
    if official_npz:
        from benchmark.data.store import open_store
        data = open_store(store).data  # (N, C, T, V, M) -> the official (N, T, M*V*C)

        def flat(rows: slice) -> np.ndarray:
            return np.ascontiguousarray(data[rows].transpose(0, 2, 4, 3, 1)).reshape(-1, T, M * V * 3)

        def onehot(y: np.ndarray) -> np.ndarray:
            return np.eye(NUM_CLASSES, dtype=np.float32)[y]
        npz = root / "NTU60_bench.npz"
        np.savez(npz, x_train=flat(slice(0, n_train)), y_train=onehot(labels),
                 x_test=flat(slice(n_train, n)), y_test=onehot(test_labels))
        out["npz"] = str(npz)
    return out


# ----------------------------------------------------------------------------- workers
def _peak_mem(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 3)


def worker_ours(args: argparse.Namespace, device: torch.device) -> dict:
    from benchmark.runner import resolve_config
    from benchmark.seed import configure_determinism
    from benchmark.spec import RunSpec, load_run_data, normalise
    from benchmark.train import Trainer
    amp, _, comp = args.variant.partition("+")
    configure_determinism(device, args.threads)  # as `python -m benchmark train` does
    spec = normalise(RunSpec(
        dataset=args.store, method="ce", protocol="bench", profile="lt", seed=args.seed,
        train={"epochs": args.epochs, "eval_every": 0, "amp": amp, "compile": comp == "compile",
               "batch_size": args.batch, "base_channel": args.base_channel}))
    cfg = resolve_config(spec)
    trainer = Trainer(spec, cfg, load_run_data(spec, cfg), device)
    trainer.quiet = True
    try:
        trainer.fit()
    finally:
        trainer.close()
    hist = trainer.history
    return {"epoch_s": [round(h["seconds"]["train"], 3) for h in hist],
            "steps": hist[-1]["steps"], "loss": [round(h["loss"], 4) for h in hist],
            "peak_gpu_gib": _peak_mem(device)}


def _official_worker_init(worker_id: int) -> None:
    """What the official ``init_seed`` does when the DataLoader calls it with the worker id."""
    torch.manual_seed(worker_id)
    np.random.seed(worker_id)
    random.seed(worker_id)


class _SizeOneFloorNumpy:
    """numpy as the official ``feeders/tools.py`` sees it, under NumPy 2: its
    ``int(np.floor(valid_size * p))`` with ``p = np.random.rand(1)`` (a size-1 array) raises
    TypeError there, NumPy 1 converted it. ``floor`` of a size-1 array gives the 0-d value;
    everything else is numpy itself (same global RNG, same draws, same values)."""

    def __getattr__(self, name: str):
        return getattr(np, name)

    @staticmethod
    def floor(x, *a, **k):
        r = np.floor(x, *a, **k)
        return r.reshape(()) if isinstance(r, np.ndarray) and r.size == 1 else r


def worker_official(args: argparse.Namespace, device: torch.device) -> dict:
    off = str(Path(args.official).resolve())
    if not (Path(off) / "model" / "ctrgcn.py").is_file():
        raise SystemExit(f"error: {off}: no model/ctrgcn.py (not a CTR-GCN checkout)")
    sys.path.insert(0, off)
    from feeders import tools  # the user's checkout, read at run time
    from feeders.feeder_ntu import Feeder
    from model.ctrgcn import Model
    if int(np.__version__.split(".")[0]) >= 2:
        tools.np = _SizeOneFloorNumpy()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    random.seed(args.seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    feeder = Feeder(data_path=args.npz, split="train", window_size=WINDOW, p_interval=[0.5, 1],
                    random_rot=True, random_choose=False, random_shift=False, random_move=False,
                    normalization=False, debug=False, vel=False, bone=False)
    loader = torch.utils.data.DataLoader(feeder, batch_size=args.batch, shuffle=True,
                                         num_workers=args.official_workers, drop_last=True,
                                         worker_init_fn=_official_worker_init)
    model = Model(num_class=NUM_CLASSES, num_point=V, num_person=M, graph="graph.ntu_rgb_d.Graph",
                  graph_args={"labeling_mode": "spatial"}).to(device)
    loss_fn = torch.nn.CrossEntropyLoss().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1 * args.batch / 64, momentum=0.9,
                          nesterov=True, weight_decay=4e-4)
    model.train()
    epoch_s, losses = [], []
    for _ in range(args.epochs):
        t0, vals = time.perf_counter(), []
        for data, label, _index in loader:
            with torch.no_grad():
                data = data.float().to(device)
                label = label.long().to(device)
            output = model(data)
            loss = loss_fn(output, label)
            opt.zero_grad()
            loss.backward()
            opt.step()
            vals.append(loss.data.item())
            _, pred = torch.max(output.data, 1)
            torch.mean((pred == label.data).float()).data.item()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        epoch_s.append(round(time.perf_counter() - t0, 3))
        losses.append(round(float(np.mean(vals)), 4))
    return {"epoch_s": epoch_s, "steps": len(loader), "loss": losses,
            "peak_gpu_gib": _peak_mem(device)}


def run_worker(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    res = (worker_official if args.variant == "official" else worker_ours)(args, device)
    print(json.dumps(res))


# ----------------------------------------------------------------------------- driver
def variant_label(v: str, args: argparse.Namespace) -> str:
    if v == "official":
        return f"official (fp32, {args.official_workers} loader workers)"
    amp, _, comp = v.partition("+")
    amp = "fp32" if amp == "off" or args.device == "cpu" else amp
    return f"ours ({amp}{', compile' if comp else ''})"


def table(res: dict) -> str:
    s = res["settings"]
    size = ("LT-NTU60 xsub IF100 class sizes" if s["train_clips"] == int(lt_counts().sum())
            else "the LT-NTU60 IF100 profile, scaled")
    rows = [f"bench_epoch: {s['device_name']}, {s['train_clips']} clips ({size}), batch "
            f"{s['batch']}, {s['epochs']} epoch(s), torch {s['torch']}",
            f"{'variant':42s} {'epoch s':>8s} {'clips/s':>8s} {'GPU GiB':>8s} {'vs official':>12s}"]
    for v, r in res["variants"].items():
        if "error" in r:
            rows.append(f"{r['label']:42s} failed: {r['error']}")
            continue
        ratio = r.get("speedup_vs_official")
        rows.append(f"{r['label']:42s} {r['epoch_s'][-1]:8.1f} {r['clips_per_s']:8.1f} "
                    f"{'--' if r['peak_gpu_gib'] is None else format(r['peak_gpu_gib'], '.2f'):>8s} "
                    f"{'--' if ratio is None else format(ratio, '.2f') + 'x':>12s}")
    if res.get("skipped"):
        rows.append("skipped: " + "; ".join(f"{k}: {v}" for k, v in res["skipped"].items()))
    return "\n".join(rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--official", type=Path, default=None, help="a checkout of Uason-Chen/CTR-GCN")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--variants", default=None,
                   help="comma list of official, ours:<bf16|fp16|off>[+compile] "
                        "(default CUDA: official,ours:off,ours:bf16,ours:bf16+compile; CPU: "
                        "official,ours:off)")
    p.add_argument("--clips", type=int, default=None,
                   help="training clips (default 7,892 = LT-NTU60 xsub IF100; scales the classes)")
    p.add_argument("--test-per-class", type=int, default=1, help="test clips per class (untimed)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per variant; the last is reported")
    p.add_argument("--batch", type=int, default=0, help="clips per step (0: 64 CUDA, 16 CPU)")
    p.add_argument("--base-channel", type=int, default=64, help="our width (official 64)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--official-workers", type=int, default=None,
                   help=f"official DataLoader workers (default min({OFFICIAL_DEFAULT_WORKERS}, CPUs))")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tmpdir", type=Path, default=None)
    p.add_argument("--timeout", type=float, default=3600, help="seconds per variant")
    p.add_argument("--out", type=Path, default=REPO / "results" / "bench" / "epoch.json")
    # worker mode (internal)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--variant", default=None, help=argparse.SUPPRESS)
    p.add_argument("--store", default=None, help=argparse.SUPPRESS)
    p.add_argument("--npz", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if not args.batch:
        args.batch = 64 if args.device.startswith("cuda") else 16
    if args.official_workers is None:
        args.official_workers = min(OFFICIAL_DEFAULT_WORKERS, os.cpu_count() or 1)
    if args.threads is None:
        args.threads = torch.get_num_threads()
    if args.variants is None:
        cuda = args.device.startswith("cuda")
        args.variants = ("official,ours:off,ours:bf16,ours:bf16+compile" if cuda
                         else "official,ours:off")
    args.variant_list = [v for v in args.variants.split(",") if v]
    for v in args.variant_list:
        amp, _, comp = v.removeprefix("ours:").partition("+")
        if v != "official" and (not v.startswith("ours:") or amp not in ("bf16", "fp16", "off")
                                or comp not in ("", "compile")):
            p.error(f"unknown variant {v!r} (official, ours:<bf16|fp16|off>[+compile])")
    if args.epochs < 1 or args.batch < 2 or (args.clips is not None and args.clips < NUM_CLASSES):
        p.error(f"--epochs >= 1, --batch >= 2 and --clips >= {NUM_CLASSES} please")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
        return {}
    device = torch.device(args.device)
    labels = plan_labels(args.clips, args.seed)
    want_official = "official" in args.variant_list
    res: dict = {"settings": {
        "device": str(device), "device_name": (torch.cuda.get_device_name(device)
                                               if device.type == "cuda" else f"CPU x{os.cpu_count()}"),
        "torch": torch.__version__, "batch": args.batch, "epochs": args.epochs,
        "train_clips": int(len(labels)), "base_channel": args.base_channel,
        "threads": args.threads, "official_workers": args.official_workers, "seed": args.seed},
        "variants": {}, "skipped": {}}
    if want_official and args.official is None:
        res["skipped"]["official"] = "no --official DIR (a CTR-GCN checkout) given"
        args.variant_list.remove("official")
    work = Path(tempfile.mkdtemp(prefix="bench_epoch_", dir=args.tmpdir))
    try:
        t0 = time.perf_counter()
        data = write_data(work, labels, args.test_per_class, args.seed,
                          official_npz="official" in args.variant_list)
        res["settings"]["data_write_s"] = round(time.perf_counter() - t0, 1)
        for v in args.variant_list:
            print(f"[bench_epoch] {v} ...", file=sys.stderr, flush=True)
            argv2 = [sys.executable, str(Path(__file__).resolve()), "--worker", "--variant",
                     v.removeprefix("ours:"), "--device", args.device, "--store", data["store"],
                     "--epochs", str(args.epochs), "--batch", str(args.batch),
                     "--base-channel", str(args.base_channel), "--threads", str(args.threads),
                     "--official-workers", str(args.official_workers), "--seed", str(args.seed)]
            if v == "official":
                argv2 += ["--official", str(args.official), "--npz", data["npz"]]
            r: dict = {"label": variant_label(v, args)}
            try:
                proc = subprocess.run(argv2, capture_output=True, text=True, timeout=args.timeout,
                                      cwd=REPO)
                if proc.returncode != 0:
                    tail = (proc.stderr or proc.stdout).strip().splitlines()[-2:]
                    raise RuntimeError(f"exit {proc.returncode}: {' | '.join(tail)}")
                r.update(json.loads(proc.stdout.strip().splitlines()[-1]))
                r["clips_per_s"] = round(r["steps"] * args.batch / r["epoch_s"][-1], 1)
            except (RuntimeError, subprocess.TimeoutExpired, ValueError) as e:
                r["error"] = f"{type(e).__name__}: {e}"
            res["variants"][v] = r
    finally:
        shutil.rmtree(work, ignore_errors=True)
    off = res["variants"].get("official", {})
    for v, r in res["variants"].items():
        if v != "official" and "epoch_s" in r and "epoch_s" in off:
            r["speedup_vs_official"] = round(off["epoch_s"][-1] / r["epoch_s"][-1], 3)
    ours = [r for v, r in res["variants"].items() if v != "official" and "epoch_s" in r]
    if ours:
        best = min(ours, key=lambda r: r["epoch_s"][-1])
        res["best_ours"] = {"label": best["label"], "epoch_s": best["epoch_s"][-1],
                            "speedup_vs_official": best.get("speedup_vs_official")}
    _io.write_json(args.out, res)
    print(json.dumps(res, indent=2))
    print(table(res), file=sys.stderr)
    return res


if __name__ == "__main__":
    main()
