"""One-off check of our CTR-GCN against the official implementation (run by hand, CPU).

    git clone https://github.com/Uason-Chen/CTR-GCN /tmp/CTR-GCN
    python scripts/check_ctrgcn_official.py --official /tmp/CTR-GCN

Imports ``model/ctrgcn.py:Model`` from that checkout (nothing of it lives in this repo) and, for
NTU-60, NTU-120 and NW-UCLA, checks that
  * the same torch seed gives bit-identical initial weights (same init and random stream),
  * the state_dict keys, order and shapes are identical, and the official weights load into
    ours with strict=True,
  * logits (eval and train mode), updated BN running statistics and all gradients agree, in
    float32 (next to the official model's own float32-vs-float64 error) and in float64,
    with the official random init, with every tensor perturbed (alpha != 0, BN gammas not
    1e-6, random running stats) so the topology-refinement path is exercised too, and with
    perturbed weights plus BN statistics averaged over random batches (eval logits at a
    realistic scale),
then times a CPU training step (forward + backward + SGD) at batch 16, input (16,3,64,25,2),
alternating the two models in one process. Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _official_check import (compare_precisions, state_summary, summarise,  # noqa: E402
                             time_training_steps, weight_variants)
from benchmark.backbones.ctrgcn import CTRGCN, load_official_state_dict  # noqa: E402

CONFIGS = {  # name: (ours kwargs, official graph class, input (C, T, V, M))
    "ntu60": (dict(num_class=60, num_point=25, num_person=2, graph="ntu"),
              "graph.ntu_rgb_d.Graph", (3, 64, 25, 2)),
    "ntu120": (dict(num_class=120, num_point=25, num_person=2, graph="ntu"),
               "graph.ntu_rgb_d.Graph", (3, 64, 25, 2)),
    "ucla": (dict(num_class=10, num_point=20, num_person=1, graph="ucla"),
             "graph.ucla.Graph", (3, 52, 20, 1)),
}


def official_model(cls, kw: dict, graph: str):
    return cls(num_class=kw["num_class"], num_point=kw["num_point"],
               num_person=kw["num_person"], graph=graph,
               graph_args={"labeling_mode": "spatial"})


def check_config(cls, name: str, seed: int = 0) -> dict:
    kw, graph, shape = CONFIGS[name]
    torch.manual_seed(seed)
    off = official_model(cls, kw, graph)
    torch.manual_seed(seed)
    ours = CTRGCN(**kw)
    so = off.state_dict()
    out = state_summary(off, ours)
    # the official weights through our checkpoint loader (strict, 'module.' prefix dropped)
    load_official_state_dict(ours, {"module." + k: v for k, v in so.items()})
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn((4, *shape), generator=gen)
    y = torch.randint(0, kw["num_class"], (4,), generator=gen)
    for variant, sd in weight_variants(off, so, shape, gen).items():
        out[variant] = compare_precisions(off, ours, sd, x, y)
    return out


def time_steps(cls, rounds: int, threads: int) -> dict:
    """Samples/s of a training step. With 1 thread the clock is this thread's CPU time, which
    background load on a shared machine barely disturbs; with more, wall time."""
    torch.set_num_threads(threads)
    kw, graph, _ = CONFIGS["ntu60"]
    torch.manual_seed(0)
    models = {"official": official_model(cls, kw, graph), "ours": CTRGCN(**kw)}
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((16, 3, 64, 25, 2), generator=gen)
    y = torch.randint(0, 60, (16,), generator=gen)
    return time_training_steps(models, x, y, rounds, threads)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", required=True, type=Path, help="checkout of Uason-Chen/CTR-GCN")
    ap.add_argument("--rounds", type=int, default=10, help="timed training steps per model")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, torch.get_num_threads()],
                    help="thread counts to time (1 = CPU-time clock)")
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    args = ap.parse_args()
    if not (args.official / "model" / "ctrgcn.py").is_file():
        sys.exit(f"error: {args.official}: no model/ctrgcn.py (not a CTR-GCN checkout)")
    sys.path.insert(0, str(args.official.resolve()))
    from model.ctrgcn import Model  # the official class, from the user's checkout

    report = {"torch": torch.__version__}
    for name in args.configs:
        report[name] = check_config(Model, name)
    for threads in args.threads if args.rounds else []:
        report[f"train_step_cpu_{threads}thread"] = time_steps(Model, args.rounds, threads)
    report["summary"] = summarise(report, CONFIGS)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
