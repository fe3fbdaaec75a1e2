"""One-off check of ``methods/fr_head.py`` against the official FR-Head (run by hand, CPU).

    git clone https://github.com/zhysora/FR-Head /tmp/FR-Head
    python scripts/check_frhead_official.py --official /tmp/FR-Head

Imports ``model/ctrgcn.py:Model`` (``cl_mode="ST-Multi-Level"``, the README's stage weights
0.1 0.2 0.5 1) from that checkout (nothing of it lives in this repo) and, for NTU-60 (64
frames, 2 persons) and NW-UCLA (``num_frame`` 52, 20 joints, 1 person), checks that
  * the parameter counts are equal (CTR-GCN + FR-Head, and FR-Head alone) and every official
    tensor maps one-to-one onto ours with the same shape (``ren_low/mid/high/fin`` = our
    taps l1 / l5 / l8 / l10);
  * with the official weights loaded into ours (perturbed, so no BN gamma is 1e-6) and our
    memory copied into the official ``avg_f``: one training forward on a batch with true
    positives, false negatives and false positives gives the same logits, the same FR-Head
    loss (``cl_loss``), the same total loss (CE + 0.1 cl), the same gradients and the same
    updated memories, in float32 and float64 (for float64 the official one-hot, hard-cast to
    float32, is cast to the module's dtype, and our momentum is the official float32 0.9,
    ``has_object`` being a float32 tensor; nothing else of the official code is touched).
    Prints one JSON object.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmark.backbones.ctrgcn import CTRGCN  # noqa: E402
from benchmark.method import Batch, Context, build_method  # noqa: E402

CONFIGS = {  # name: (ours backbone kwargs, official graph, num_frame, input (C, T, V, M))
    "ntu60": (dict(num_class=60, num_point=25, num_person=2, graph="ntu"),
              "graph.ntu_rgb_d.Graph", 64, (3, 64, 25, 2)),
    "ucla": (dict(num_class=10, num_point=20, num_person=1, graph="ucla"),
             "graph.ucla.Graph", 52, (3, 52, 20, 1)),
}
LEVELS = ("low", "mid", "high", "fin")  # the official module names of taps 0..3
PARTS = {"spatial.": "spatio_squeeze.", "temporal.": "tempor_squeeze.",
         "spatial_proj.": "spatio_cl_net.cl_fc.", "temporal_proj.": "tempor_cl_net.cl_fc."}


def official_key(key: str) -> str:
    """Our state_dict key -> the official one."""
    if key.startswith("backbone."):
        return key[len("backbone."):]
    _, i, rest = key.split(".", 2)  # stages.<i>.<part>...
    for ours, off in PARTS.items():
        if rest.startswith(ours):
            return f"ren_{LEVELS[int(i)]}.{off}{rest[len(ours):]}"
    raise KeyError(key)


def renovate_nets(off, level: str):
    ren = getattr(off, f"ren_{level}")
    return ren.spatio_cl_net, ren.tempor_cl_net


def build(cls, name: str):
    kw, graph, frames, _ = CONFIGS[name]
    off = cls(num_class=kw["num_class"], num_point=kw["num_point"], num_person=kw["num_person"],
              num_frame=frames, graph=graph, graph_args={"labeling_mode": "spatial"},
              cl_mode="ST-Multi-Level", multi_cl_weights=[0.1, 0.2, 0.5, 1])
    method = build_method("fr_head", {"num_frame": frames})
    ctx = Context(num_classes=kw["num_class"], class_counts=torch.ones(kw["num_class"]),
                  total_epochs=1, iters_per_epoch=1, device=torch.device("cpu"), seed=0,
                  layout=None, batch_size=8)
    method.setup(ctx)
    ours = method.build_model(ctx, lambda: CTRGCN(**kw))
    return off, method, ours, ctx


def batch_with_all_cases(off, x: torch.Tensor, k: int) -> torch.Tensor:
    """Labels: the prediction for half the clips (true positives), another class for the rest,
    with repeated classes so FN / FP columns hold several clips."""
    off.train()
    with torch.no_grad():
        pred = off(x).argmax(1)
    y = pred.clone()
    y[len(y) // 2:] = (pred[len(y) // 2:] + 1) % k
    y[-1] = y[0]  # a class with a true positive and a false negative
    return y


def step(off, method, ours, ctx, x, y, dtype) -> dict:
    """Official and our forward + backward on (x, y); returns both sides' numbers."""
    res = {}
    off.to(dtype).train()
    ours.to(dtype).train()
    for net_pair, mem in zip((renovate_nets(off, lv) for lv in LEVELS), method.memory):
        for net, m in zip(net_pair, mem):
            net.avg_f = m.clone().to(dtype)
    off.zero_grad(set_to_none=True)
    logits, cl = off(x.to(dtype), y, get_cl_loss=True)
    total = F.cross_entropy(logits, y) + 0.1 * cl
    total.backward()
    res["off"] = {"logits": logits.detach(), "cl": cl.detach(), "total": total.detach(),
                  "grads": {k: p.grad for k, p in off.named_parameters()},
                  "memory": torch.stack([torch.stack([n.avg_f.detach()
                                                      for n in renovate_nets(off, lv)])
                                         for lv in LEVELS])}
    ours.zero_grad(set_to_none=True)
    hp = method.hp
    if dtype == torch.float64:  # the official keep factor is a float32 tensor: 0.9 -> 0.89999998
        method.hp = dataclasses.replace(hp, mom=torch.tensor(hp.mom, dtype=torch.float32).item())
    batch = Batch(x=x.to(dtype), y=y, index=torch.arange(len(y)))
    out = method.forward(ours, batch, ctx)
    loss, logs = method.loss(out, batch, ctx)
    loss.backward()
    res["ours"] = {"logits": out.logits.detach(), "cl": torch.tensor(logs["cl"], dtype=dtype),
                   "total": loss.detach(),
                   "grads": {official_key(k): p.grad for k, p in ours.named_parameters()},
                   "memory": method._next_memory}
    method._next_memory = None  # not committed: both sides restart from the same memory
    method.hp = hp
    return res


def diff(a, b) -> float:
    if isinstance(a, dict):
        return max(diff(a[k], b[k]) for k in a if a[k] is not None)
    return float((a.double() - b.double()).abs().max())


def check_config(cls, name: str, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    off, method, ours, ctx = build(cls, name)
    n_off = sum(p.numel() for p in off.parameters())
    n_ours = sum(p.numel() for p in ours.parameters())
    head_off = sum(p.numel() for k, p in off.named_parameters() if k.startswith("ren_"))
    head_ours = sum(p.numel() for p in ours.stages.parameters())
    off_sd, own = off.state_dict(), ours.state_dict()
    mapped = {official_key(k): k for k in own}
    assert set(mapped) == set(off_sd), sorted(set(mapped) ^ set(off_sd))[:5]
    assert all(off_sd[o].shape == own[k].shape for o, k in mapped.items())
    gen = torch.Generator().manual_seed(seed + 1)
    sd = {k: (v + 0.1 * torch.randn(v.shape, generator=gen) if v.is_floating_point() and
              "running" not in k else v.clone()) for k, v in off_sd.items()}
    off.load_state_dict(sd, strict=True)
    ours.load_state_dict({k: sd[o] for o, k in mapped.items()}, strict=True)
    _, _, _, shape = CONFIGS[name]
    x = torch.randn((8, *shape), generator=gen)
    y = batch_with_all_cases(off, x, CONFIGS[name][0]["num_class"])
    off.load_state_dict(sd, strict=True)  # running stats back to the loaded ones
    report = {"params_official": n_off, "params_ours": n_ours,
              "frhead_params_official": head_off, "frhead_params_ours": head_ours,
              "taps": [ours.backbone.block_names()[i] for i in ours.taps]}
    whats = ("logits", "cl", "total", "grads", "memory")
    runs = {}
    for dtype, key in ((torch.float32, "fp32"), (torch.float64, "fp64")):
        r = runs[key] = step(off, method, ours, ctx, x, y, dtype)
        report[f"ours_vs_official_{key}"] = {w: diff(r["off"][w], r["ours"][w]) for w in whats}
    # the fp32 noise floor: the official model's own fp32 vs fp64 difference
    report["official_fp32_vs_fp64"] = {w: diff(runs["fp32"]["off"][w], runs["fp64"]["off"][w])
                                       for w in whats}
    report["cl_value"] = float(runs["fp64"]["off"]["cl"])
    report["grad_scale"] = max(float(g.abs().max()) for g in runs["fp64"]["off"]["grads"].values()
                               if g is not None)
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", required=True, type=Path, help="checkout of zhysora/FR-Head")
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    args = ap.parse_args()
    if not (args.official / "model" / "lib.py").is_file():
        sys.exit(f"error: {args.official}: no model/lib.py (not an FR-Head checkout)")
    sys.path.insert(0, str(args.official.resolve()))
    from model import lib
    from model.ctrgcn import Model  # the official class, from the user's checkout

    onehot = lib.RenovateNet.onehot  # casts to float32: follow the module's dtype for fp64

    def onehot_in_dtype(self, label):
        return onehot(self, label).to(self.cl_fc.weight.dtype)
    lib.RenovateNet.onehot = onehot_in_dtype

    report = {"torch": torch.__version__}
    for name in args.configs:
        report[name] = check_config(Model, name)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
