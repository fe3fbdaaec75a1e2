"""One-off check of our AAGCN against the official 2s-AGCN implementation (run by hand, CPU).

    git clone https://github.com/lshiwjx/2s-AGCN /tmp/2s-AGCN
    python scripts/check_aagcn_official.py --official /tmp/2s-AGCN

Loads ``model/aagcn.py`` and ``graph/ntu_rgb_d.py`` from that checkout (nothing of it lives in
this repo; the model file is imported by path, so the checkout's other modules and their
dependencies are never imported) and, for NTU-60, NTU-120 and NW-UCLA, checks that
  * the official NTU graph is ours (NW-UCLA has no official 2s-AGCN graph: both models get
    ours, which still exercises the 20-joint spatial attention kernel),
  * the same torch seed gives bit-identical initial weights, the state_dict keys, order and
    shapes are identical, and the official weights load into ours strictly (our loader),
  * logits (eval and train mode), updated BN running statistics and all gradients agree, in
    float32 (next to the official model's own float32-vs-float64 error) and in float64, with
    the official init (alpha = 0, attention weights 0: the adaptive and attention paths are
    idle), with every tensor perturbed (all paths live), and with perturbed weights plus BN
    statistics averaged over random batches (eval logits at a realistic scale),
  * the golden vectors of ``tests/test_aagcn.py`` (``--write-golden DIR`` writes them, from the
    official model in float64),
then times a CPU training step (forward + backward + SGD) of NTU-60 at input (16,3,64,25,2),
alternating the two models in one process. Prints one JSON object; ``summary`` holds the
headline numbers ("rel" = max |ours - official| / max |official|).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _official_check import (compare_precisions, state_summary, summarise,  # noqa: E402
                             time_training_steps, weight_variants)
from benchmark.backbones.aagcn import AAGCN, load_official_state_dict  # noqa: E402
from benchmark.backbones.graph import spatial_graph  # noqa: E402

GRAPH_MODULE = "aagcn_check_graphs"  # holds the UCLA graph handed to the official model
CONFIGS = {  # name: (ours kwargs, official graph class, input (C, T, V, M) of batches of 4)
    "ntu60": (dict(num_class=60, num_point=25, num_person=2, graph="ntu"),
              "graph.ntu_rgb_d.Graph", (3, 32, 25, 2)),
    "ntu120": (dict(num_class=120, num_point=25, num_person=2, graph="ntu"),
               "graph.ntu_rgb_d.Graph", (3, 32, 25, 2)),
    "ucla": (dict(num_class=10, num_point=20, num_person=1, graph="ucla"),
             f"{GRAPH_MODULE}.UclaGraph", (3, 52, 20, 1)),
}  # NTU at T = 32 keeps the float64 runs short on 2 shared cores (the timing uses T = 64)

# The golden test (tests/test_aagcn.py): closed-form weights and input (no random generator,
# so any machine rebuilds them), the official width 64; the vector is the eval logits, the
# train-mode logits and the train-mode gradients of these tensors (cross-entropy on labels
# 0, 1), concatenated in float64.
GOLDEN = {"ntu": ("ntu60", (2, 3, 16, 25, 2)), "ucla": ("ucla", (2, 3, 16, 20, 1))}
GOLDEN_GRADS = ["data_bn.weight", *[f"l{i}.gcn1.alpha" for i in range(1, 11)], "l1.gcn1.PA",
                "l1.gcn1.conv_a.0.weight", "l2.gcn1.conv_sa.bias", "l2.gcn1.fc2c.bias",
                "l4.gcn1.fc1c.bias", "l8.residual.bn.weight", "l10.gcn1.conv_ta.bias",
                "fc.bias"]


def golden_path(folder: Path, name: str) -> Path:
    return folder / f"aagcn_golden_{name}.npy"


def formula_state(model: torch.nn.Module) -> dict:
    """Every float tensor of ``model``'s state from a closed form: tensor j, element k gets
    u = sin(0.7 k + 1.3 j + 0.1), scaled per kind (BN gammas ~1 and variances >= 0.5, conv
    weights ~1/sqrt(fan_in), alpha and every attention weight non-zero)."""
    bns = {name for name, m in model.named_modules()
           if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
    out = {}
    for j, (key, t) in enumerate(model.state_dict().items()):
        if not t.is_floating_point():
            out[key] = t.clone()
            continue
        owner, _, leaf = key.rpartition(".")
        u = torch.sin(0.7 * torch.arange(t.numel(), dtype=torch.float64) + 1.3 * j + 0.1)
        if owner in bns:
            u = {"weight": 1 + 0.25 * u, "running_var": 1 + 0.5 * u}.get(leaf, 0.1 * u)
        elif leaf == "alpha":
            u = 0.5 * u
        elif leaf == "PA":
            u = 0.2 * u
        elif t.dim() >= 2:
            u = u * (3.0 * t.shape[0] / t.numel()) ** 0.5
        else:
            u = 0.1 * u
        out[key] = u.view(t.shape).to(t.dtype)
    return out


def formula_input(shape: tuple, dtype: torch.dtype = torch.float64,
                  phase: float = 0.2) -> torch.Tensor:
    n = int(np.prod(shape))
    return torch.sin(0.37 * torch.arange(n, dtype=torch.float64) + phase).view(shape).to(dtype)


def golden_vector(model: torch.nn.Module, name: str,
                  dtype: torch.dtype = torch.float64) -> np.ndarray:
    """The golden vector of config ``name`` computed by ``model`` (ours or the official one,
    built for that config) in ``dtype``. Eval mode runs on BN statistics measured on a second
    closed-form batch (made-up statistics would blow the logits up layer after layer)."""
    shape = GOLDEN[name][1]
    model.to(dtype)
    sd = formula_state(model)
    x = formula_input(shape, dtype)
    y = torch.arange(shape[0]) % model.fc.out_features
    model.load_state_dict(sd, strict=True)
    model.train()
    model.zero_grad(set_to_none=True)
    train_logits = model(x)
    F.cross_entropy(train_logits, y).backward()
    params = dict(model.named_parameters())
    # copies: model.float() below converts every .grad in place
    grads = [params[k].grad.detach().clone() for k in GOLDEN_GRADS]
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: exactly the batch's statistics
    with torch.no_grad():
        model(formula_input(shape, dtype, phase=1.1))
        for bn in bns:
            bn.momentum = 0.1
        model.eval()
        eval_logits = model(x)
    model.float()
    parts = [eval_logits, train_logits.detach()] + grads
    return torch.cat([p.detach().double().flatten() for p in parts]).numpy()


# ----------------------------------------------------------------------------- official code
def import_official(root: Path):
    """The official ``Model`` class. ``model/aagcn.py`` is imported by path (its package
    ``__init__`` would import ``agcn.py`` too); its graph is named by a dotted path that it
    imports itself, so the checkout root goes on sys.path for ``graph.ntu_rgb_d``."""
    sys.path.insert(0, str(root.resolve()))
    spec = importlib.util.spec_from_file_location("official_aagcn", root / "model" / "aagcn.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    class UclaGraph:  # ours: the official repository has none
        def __init__(self, labeling_mode="spatial"):
            self.A = spatial_graph("ucla").astype(np.float64)

    graphs = types.ModuleType(GRAPH_MODULE)
    graphs.UclaGraph = UclaGraph
    sys.modules[GRAPH_MODULE] = graphs
    return mod.Model


def official_model(cls, kw: dict, graph: str):
    return cls(num_class=kw["num_class"], num_point=kw["num_point"],
               num_person=kw["num_person"], graph=graph,
               graph_args={"labeling_mode": "spatial"})


def official_commit(root: Path) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip() or None
    except OSError:
        return None


# ----------------------------------------------------------------------------- comparisons
def check_config(cls, name: str, seed: int = 0) -> dict:
    kw, graph, shape = CONFIGS[name]
    torch.manual_seed(seed)
    off = official_model(cls, kw, graph)
    torch.manual_seed(seed)
    ours = AAGCN(**kw)
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


def check_golden(cls, write_to: Path | None, repo_golden: Path) -> dict:
    """Golden vectors: official (fp64) vs ours (fp64, fp32) and vs the committed files."""
    res = {}
    for name, (config, _) in GOLDEN.items():
        kw, graph, _ = CONFIGS[config]
        off = official_model(cls, kw, graph)
        ref = golden_vector(off, name)
        ours = AAGCN(**kw)
        scale = np.abs(ref).max()
        r = {"size": ref.size, "scale": float(scale),
             "official_fp32_rel": float(np.abs(golden_vector(off, name, torch.float32) - ref).max()
                                        / scale),
             "rel_fp64": float(np.abs(golden_vector(ours, name) - ref).max() / scale),
             "rel_fp32": float(np.abs(golden_vector(ours, name, torch.float32) - ref).max()
                               / scale)}
        if write_to is not None:
            write_to.mkdir(parents=True, exist_ok=True)
            np.save(golden_path(write_to, name), ref)
            r["written"] = str(golden_path(write_to, name))
        if golden_path(repo_golden, name).is_file():
            committed = np.load(golden_path(repo_golden, name))
            r["committed_file_rel"] = float(np.abs(committed - ref).max() / scale)
        res[name] = r
    return res


def time_steps(cls, rounds: int, threads: int) -> dict:
    """Samples/s of a training step. With 1 thread the clock is this thread's CPU time, which
    background load on a shared machine barely disturbs; with more, wall time."""
    torch.set_num_threads(threads)
    kw, graph, _ = CONFIGS["ntu60"]
    torch.manual_seed(0)
    models = {"official": official_model(cls, kw, graph), "ours": AAGCN(**kw)}
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((16, 3, 64, 25, 2), generator=gen)
    y = torch.randint(0, 60, (16,), generator=gen)
    return time_training_steps(models, x, y, rounds, threads)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", required=True, type=Path, help="checkout of lshiwjx/2s-AGCN")
    ap.add_argument("--rounds", type=int, default=10, help="timed training steps per model")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, torch.get_num_threads()],
                    help="thread counts to time (1 = CPU-time clock)")
    ap.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS),
                    help="configs to compare (none: only the golden vectors and the timing)")
    ap.add_argument("--write-golden", type=Path, default=None, metavar="DIR",
                    help="write the golden vectors of tests/test_aagcn.py into DIR")
    args = ap.parse_args()
    for f in ("model/aagcn.py", "graph/ntu_rgb_d.py"):
        if not (args.official / f).is_file():
            sys.exit(f"error: {args.official}: no {f} (not a 2s-AGCN checkout)")
    cls = import_official(args.official)
    from graph.ntu_rgb_d import Graph  # the official graph, from the user's checkout

    threads = torch.get_num_threads()
    report = {"torch": torch.__version__, "official_commit": official_commit(args.official),
              "ntu_graph_identical": bool(np.array_equal(Graph().A.astype(np.float32),
                                                         spatial_graph("ntu")))}
    for name in args.configs:
        report[name] = check_config(cls, name)
    report["golden"] = check_golden(cls, args.write_golden,
                                    Path(__file__).resolve().parents[1] / "tests" / "golden")
    for n_threads in args.threads if args.rounds else []:
        report[f"train_step_cpu_{n_threads}thread"] = time_steps(cls, args.rounds, n_threads)
    torch.set_num_threads(threads)
    report["summary"] = summarise(report, CONFIGS)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
