"""Per-training-step wall time of CE, ST-Mix and Shap-Mix (Iter-1 / Iter-5) on CTR-GCN (CPU).

Shap-Mix paper (IJCAI 2024, arXiv 2407.12312) Table 13: Shap-Mix / ST-Mix time ratio 1.66.
One full training step, as :meth:`benchmark.train.Trainer._train_steps` runs it:

    method.transform_batch -> method.forward -> method.loss -> zero_grad + backward
    -> optimizer.step (SGD Nesterov 0.9, wd 4e-4) -> method.after_step

``method.transform_batch`` (the mixing, and Shap-Mix's no-grad Shapley estimation forward) IS
timed; data loading and the dataset's train augmentation are NOT: one synthetic batch
(N(0,1) clips, random labels of a long-tailed 60- or 10-class problem; on NTU the second
person is all zeros in 82% of the clips, NTU-60's one-person share, ``--two-person-share``) is
built once per config and reused by every step. No store or Trainer is needed: method, Context, backbone and
optimizer are built as the Trainer builds them.

Shap-Mix runs in epoch 6 (``on_epoch_start(6)``): past ``naive_estimate_epoch`` and
``naive_mix_epoch`` (5), so the Shapley estimator (two coalitions of the batch in one eval
forward) and the guided mixing are active. Its baseline is the official ``raw_mean`` path
(``ctx.extras["raw_mean_clip"]``, here the mean of the synthetic batch). Every repeat restarts
the epoch (``batch_idx`` 0), so Iter-5 estimates on steps 0, 5, ... of each repeat; use
``--steps`` a multiple of 5 for the exact 1/5 share (``estimates_per_step`` is reported).

Timing: the methods are measured round-robin, ``--steps`` steps each, for ``--repeats`` rounds,
the start method rotating every round, so load from other processes spreads over all of them.
Per method: median (and min/max) of the per-round mean ms/step, samples/s = batch / median.
Ratios are given twice: from the medians, and as the median of the per-round ratios (paired
within a round, so slow machine-load drift cancels). ``profile`` splits every step into phases
(transform with its ``estimate`` share, forward, loss, backward, optimizer, after_step) and says
where Shap-Mix's extra time over ST-Mix goes.

Usage: ``python scripts/bench_steps.py [--configs ntu,ucla] [--base-channel 64] [--batch 16]
[--steps 5] [--repeats 3] [--threads 2] [--out FILE]``; JSON on stdout, a table on stderr.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
from benchmark.backbones import build_backbone  # noqa: E402
from benchmark.data.skeleton import get_layout  # noqa: E402
from benchmark.data.splits import exp_counts  # noqa: E402
from benchmark.method import Batch, Context, build_method  # noqa: E402

# dataset input shapes (NTU-60 xsub, NW-UCLA) as the official configs feed CTR-GCN
CONFIGS = {
    # two_person: share of clips with a second person; NTU-60 has 11 two-person classes (A050-
    # A060) of 60, the other clips carry an all-zero second person (as the store holds them)
    "ntu": dict(layout="ntu25", graph="ntu", num_classes=60, window=64, V=25, M=2,
                two_person=11 / 60),
    "ucla": dict(layout="ucla20", graph="ucla", num_classes=10, window=52, V=20, M=1),
}
# name -> (registry name, hparams overrides)
METHOD_SPECS = {
    "ce": ("ce", {}),
    "st_mix": ("st_mix", {}),
    "shap_mix_iter1": ("shap_mix", {"estimate_every": 1}),
    "shap_mix_iter5": ("shap_mix", {"estimate_every": 5}),
}
EPOCH = 6  # > naive_estimate_epoch (5): Shapley estimator, EMA and guided mixing all active
PHASES = ("transform", "estimate", "forward", "loss", "backward", "optimizer", "after_step")
RATIOS = {"st_mix/ce": ("st_mix", "ce"),
          "shap_mix_iter1/st_mix": ("shap_mix_iter1", "st_mix"),
          "shap_mix_iter5/st_mix": ("shap_mix_iter5", "st_mix"),
          "shap_mix_iter1/ce": ("shap_mix_iter1", "ce")}


def lt_counts(num_classes: int, n_max: int = 600, imbalance: float = 100.0) -> torch.Tensor:
    """Exponential long-tailed class counts (the split builder's profile) as a tensor."""
    return torch.tensor(exp_counts(num_classes, imbalance, n_max), dtype=torch.long)


class Runner:
    """One method with its own model, optimizer, context and phase clock."""

    def __init__(self, name: str, cfg: dict, x: torch.Tensor, y: torch.Tensor, base_channel: int,
                 lr: float, seed: int):
        reg, overrides = METHOD_SPECS[name]
        self.name, self.x, self.y = name, x, y
        self.method = build_method(reg, overrides)
        self.gen = torch.Generator()
        batch = len(y)
        raw_mean = x.mean(0).numpy()  # the Shapley baseline clip (official: raw training mean)
        self.ctx = Context(num_classes=cfg["num_classes"], class_counts=lt_counts(cfg["num_classes"]),
                           total_epochs=65, iters_per_epoch=1000, device=torch.device("cpu"),
                           seed=seed, layout=get_layout(cfg["layout"]), batch_size=batch,
                           generator=self.gen, milestones=(35, 55), warmup_epochs=5,
                           extras={"raw_mean_clip": lambda frames: raw_mean[:, :frames]})
        torch.manual_seed(seed)  # the same initial weights for every method
        self.method.setup(self.ctx)
        self.model = self.method.build_model(self.ctx, lambda: build_backbone(
            "ctrgcn", num_class=cfg["num_classes"], num_point=cfg["V"], num_person=cfg["M"],
            graph=cfg["graph"], in_channels=3, base_channel=base_channel))
        self.model.train()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=0.9, nesterov=True,
                                   weight_decay=4e-4)
        self.clock = dict.fromkeys(PHASES, 0.0)
        self.estimates = 0
        if hasattr(self.method, "estimate"):  # time Shap-Mix's estimator inside transform
            inner = self.method.estimate

            def timed_estimate(*a, **k):
                t0 = time.perf_counter()
                try:
                    return inner(*a, **k)
                finally:
                    self.clock["estimate"] += time.perf_counter() - t0
                    self.estimates += 1
            self.method.estimate = timed_estimate
        self.stage = self.method.stages(self.ctx)[0]
        self.method.on_stage_start(self.stage, self.model, self.ctx)

    def start_epoch(self, seed: int) -> None:
        """Epoch EPOCH from its first batch; the same draws every round."""
        self.gen.manual_seed(seed)
        self.method.on_epoch_start(EPOCH, self.model, self.ctx)

    def step(self) -> None:
        m, ctx, clock, pc = self.method, self.ctx, self.clock, time.perf_counter
        batch = Batch(x=self.x, y=self.y, index=torch.arange(len(self.y)))
        if self.stage.aux_sampler:  # rw_rs="rs" only: reuse the batch as the aux batch
            batch.aux = Batch(x=self.x, y=self.y, index=torch.arange(len(self.y)))
        t0 = pc()
        batch = m.transform_batch(batch, self.model, ctx)
        t1 = pc()
        out = m.forward(self.model, batch, ctx)
        t2 = pc()
        loss, _ = m.loss(out, batch, ctx)
        value = float(loss.detach())  # the Trainer's finiteness check syncs here too
        t3 = pc()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        t4 = pc()
        self.opt.step()
        t5 = pc()
        m.after_step(self.model, batch, out, ctx)
        t6 = pc()
        if not np.isfinite(value):
            raise RuntimeError(f"{self.name}: loss {value}")
        for k, d in zip(("transform", "forward", "loss", "backward", "optimizer", "after_step"),
                        (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)):
            clock[k] += d

    def run(self, steps: int, seed: int) -> tuple[float, dict[str, float], int]:
        """(mean seconds per step, per-phase seconds per step, estimator calls) of one round."""
        self.start_epoch(seed)
        self.clock = dict.fromkeys(PHASES, 0.0)
        self.estimates = 0
        t0 = time.perf_counter()
        for _ in range(steps):
            self.step()
        total = time.perf_counter() - t0
        return total / steps, {k: v / steps for k, v in self.clock.items()}, self.estimates


def _r(v: float, nd: int = 2) -> float:
    return round(float(v), nd)


def bench_config(cname: str, args: argparse.Namespace, methods: list[str]) -> dict:
    cfg = dict(CONFIGS[cname])
    if args.window:
        cfg["window"] = args.window
    g = torch.Generator().manual_seed(args.seed)
    N = args.batch
    x = torch.randn(N, 3, cfg["window"], cfg["V"], cfg["M"], generator=g)
    share = cfg.get("two_person", 1.0) if args.two_person_share is None else args.two_person_share
    if cfg["M"] > 1:  # the first clips keep their second person, the others get a zero one
        x[round(N * share):, ..., 1:] = 0
    counts = lt_counts(cfg["num_classes"])
    y = torch.multinomial(counts.double(), N, replacement=True, generator=g)
    lr = 0.1 * N / 64
    runners = {m: Runner(m, cfg, x, y, args.base_channel, lr, args.seed) for m in methods}
    for r in runners.values():  # warm-up (allocator, first-call overheads); not timed
        r.start_epoch(args.seed)
        for _ in range(args.warmup):
            r.step()
    per_round: dict[str, list[float]] = {m: [] for m in methods}
    phases: dict[str, list[dict]] = {m: [] for m in methods}
    est: dict[str, list[int]] = {m: [] for m in methods}
    for k in range(args.repeats):
        order = methods[k % len(methods):] + methods[:k % len(methods)]  # rotate the start
        for m in order:
            s, ph, ne = runners[m].run(args.steps, args.seed + k)
            per_round[m].append(s * 1e3)
            phases[m].append({p: v * 1e3 for p, v in ph.items()})
            est[m].append(ne)
    res: dict = {"shape": {"N": N, "C": 3, "T": cfg["window"], "V": cfg["V"], "M": cfg["M"],
                           "num_classes": cfg["num_classes"],
                           "two_person_clips": round(N * share) if cfg["M"] > 1 else 0},
                 "methods": {}, "ratios": {}, "paired_ratios": {}, "profile": {}}
    for m in methods:
        ms = per_round[m]
        med = statistics.median(ms)
        res["methods"][m] = {
            "ms_per_step": _r(med), "ms_min": _r(min(ms)), "ms_max": _r(max(ms)),
            "spread_pct": _r(100 * (max(ms) - min(ms)) / med, 1),
            "samples_per_s": _r(1e3 * N / med), "ms_per_round": [_r(v) for v in ms],
            "estimates_per_step": _r(sum(est[m]) / (args.steps * args.repeats), 3),
            "phases_ms": {p: _r(statistics.median(d[p] for d in phases[m]), 3) for p in PHASES}}
    for key, (a, b) in RATIOS.items():
        if a in runners and b in runners:
            res["ratios"][key] = round(res["methods"][a]["ms_per_step"]
                                       / res["methods"][b]["ms_per_step"], 3)
            pr = [u / v for u, v in zip(per_round[a], per_round[b])]
            res["paired_ratios"][key] = {"median": round(statistics.median(pr), 3),
                                         "min": round(min(pr), 3), "max": round(max(pr), 3)}
    if "st_mix" in runners:
        st = res["methods"]["st_mix"]
        for m in (m for m in methods if m.startswith("shap_mix")):
            sh = res["methods"][m]
            extra = sh["ms_per_step"] - st["ms_per_step"]
            e = sh["phases_ms"]["estimate"]
            res["profile"][m] = {
                "extra_ms_vs_st_mix": _r(extra), "estimate_ms": _r(e),
                "rest_of_extra_ms": _r(extra - e),
                "estimate_share_of_extra": round(e / extra, 3) if extra > 0 else None,
                "transform_minus_estimate_ms": _r(sh["phases_ms"]["transform"] - e),
                "st_mix_transform_ms": st["phases_ms"]["transform"]}
    return res


def table(results: dict) -> str:
    lines = []
    for cname, res in results["configs"].items():
        s = res["shape"]
        lines.append(f"[{cname}] N={s['N']} T={s['T']} V={s['V']} M={s['M']} "
                     f"base={results['settings']['base_channel']}")
        lines.append(f"  {'method':16s} {'ms/step':>9s} {'min..max':>17s} {'samp/s':>7s} "
                     f"{'transform':>9s} {'estimate':>8s} {'fwd':>8s} {'bwd':>8s}")
        for m, d in res["methods"].items():
            p = d["phases_ms"]
            lines.append(f"  {m:16s} {d['ms_per_step']:9.1f} {d['ms_min']:8.1f}..{d['ms_max']:<8.1f}"
                         f"{d['samples_per_s']:7.2f} {p['transform']:9.1f} {p['estimate']:8.1f} "
                         f"{p['forward']:8.1f} {p['backward']:8.1f}")
        for k, v in res["ratios"].items():
            pr = res["paired_ratios"][k]
            lines.append(f"  {k:24s} {v:.3f}  (paired median {pr['median']:.3f}, "
                         f"{pr['min']:.3f}..{pr['max']:.3f})")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", default="ntu,ucla", help="comma list of: " + ",".join(CONFIGS))
    p.add_argument("--two-person-share", type=float, default=None,
                   help="share of clips with a non-zero second person (default: NTU-60's 11/60)")
    p.add_argument("--methods", default=",".join(METHOD_SPECS), help="comma list of: "
                   + ",".join(METHOD_SPECS))
    p.add_argument("--base-channel", type=int, default=64, help="CTR-GCN width (official 64)")
    p.add_argument("--batch", type=int, default=16, help="clean clips per step")
    p.add_argument("--window", type=int, default=0, help="frames (0: the config's, 64 / 52)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per method per round")
    p.add_argument("--repeats", type=int, default=3, help="round-robin rounds")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per method first")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="", help="also write the JSON here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    configs = [c for c in args.configs.split(",") if c]
    methods = [m for m in args.methods.split(",") if m]
    for c in configs:
        if c not in CONFIGS:
            raise SystemExit(f"unknown config {c!r} (have: {', '.join(CONFIGS)})")
    for m in methods:
        if m not in METHOD_SPECS:
            raise SystemExit(f"unknown method {m!r} (have: {', '.join(METHOD_SPECS)})")
    if args.steps < 1 or args.repeats < 1 or args.batch < 2:
        raise SystemExit("need --steps >= 1, --repeats >= 1, --batch >= 2")
    prev = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        t0 = time.perf_counter()
        results = {
            "settings": {
                "threads": args.threads, "base_channel": args.base_channel, "batch": args.batch,
                "steps": args.steps, "repeats": args.repeats, "warmup": args.warmup,
                "epoch": EPOCH, "device": "cpu", "torch": torch.__version__,
                "timed": "method.transform_batch + forward + loss + backward + optimizer step + "
                         "after_step (transform INCLUDED); data loading / train augmentation "
                         "excluded (one synthetic batch reused)",
                "statistic": "median over rounds of the per-round mean ms/step; rounds "
                             "interleave the methods round-robin"},
            "configs": {c: bench_config(c, args, methods) for c in configs}}
        results["settings"]["wall_s"] = round(time.perf_counter() - t0, 1)
    finally:
        torch.set_num_threads(prev)
    text = json.dumps(results, indent=2)
    print(text)
    print(table(results), file=sys.stderr)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return results


if __name__ == "__main__":
    main()
