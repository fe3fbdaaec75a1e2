"""One-off check of our HD-GCN against the official implementation (run by hand, CPU).

    git clone https://github.com/Jho-Yonsei/HD-GCN /tmp/HD-GCN
    pip install einops            # the official model imports it (not a dependency of ours)
    python scripts/check_hdgcn_official.py --official /tmp/HD-GCN [--golden tests/golden]

Imports ``model/HDGCN.py:Model`` and ``graph/ntu_rgb_d_hierarchy.py:Graph`` from that checkout
(nothing of it lives in this repo). Two shims, neither touching the official maths: the
official ``graph/__init__.py`` imports modules the release does not contain, so its two graph
modules are loaded by path; and the official EdgeConv passes ``x.get_device()`` (-1 on CPU) to
``torch.arange`` (it ran on CUDA only), which the official module's ``torch`` maps to the CPU.

For NTU-60 and NTU-120 (CoM 21, the official NTU configs) it checks that
  * the hierarchical graphs and A-HA's joint sets equal the official ones for every CoM,
  * the same torch seed gives bit-identical initial weights,
  * the state_dict keys, order and shapes are identical and the official weights load into
    ours with strict=True (through our checkpoint loader, 'module.' prefix dropped),
  * logits (eval and train mode), updated BN running statistics and all gradients agree, in
    float32 (next to the official model's own float32-vs-float64 error) and float64, with the
    official init, with every tensor perturbed (BN gammas not 1e-6, so the graph branch and
    A-HA matter), and perturbed with BN statistics averaged over random batches,
then times a CPU training step (forward + backward + SGD) at input (16,3,64,25,2), alternating
the two models in one process, and reports what ``graph='ucla'`` does. Prints one JSON object.
``--golden DIR`` also writes the official model's logits for ``tests/test_hdgcn.py``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _official_check import (compare_precisions, state_summary, summarise,  # noqa: E402
                             time_training_steps, weight_variants)
from benchmark.backbones import build_backbone  # noqa: E402
from benchmark.backbones.graph_hierarchy import hierarchical_graph, level_joints  # noqa: E402
from benchmark.backbones.hdgcn import HDGCN, load_official_state_dict  # noqa: E402
from benchmark.errors import BenchmarkError  # noqa: E402

GRAPH = "graph.ntu_rgb_d_hierarchy.Graph"
CONFIGS = {"ntu60": 60, "ntu120": 120}  # num_class; 25 joints, 2 persons, CoM 21
SHAPE = (3, 64, 25, 2)
GOLDEN_SHAPE = (2, 3, 16, 25, 2)


# ----------------------------------------------------------------------------- official code
def load_official(root: Path):
    """The official ``model.HDGCN`` and ``graph.ntu_rgb_d_hierarchy`` modules (shims above)."""
    try:
        import einops  # noqa: F401
    except ImportError:
        sys.exit("error: the official model needs einops (pip install einops)")
    if "audioop" not in sys.modules:  # an unused import of the official graph module
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                import audioop  # noqa: F401
            except ImportError:  # Python >= 3.13
                sys.modules["audioop"] = types.SimpleNamespace(reverse=None)
    pkg = types.ModuleType("graph")
    pkg.__path__ = [str(root / "graph")]
    sys.modules["graph"] = pkg
    for name in ("tools", "ntu_rgb_d_hierarchy"):
        path = root / "graph" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"graph.{name}", path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[f"graph.{name}"] = mod
        spec.loader.exec_module(mod)
        setattr(pkg, name, mod)
    sys.path.insert(0, str(root.resolve()))
    from model import HDGCN as official  # the official module, from the user's checkout

    class CpuArange(types.SimpleNamespace):
        """``torch`` for the official module, with device -1 (``get_device()`` on CPU) = CPU."""

        def __getattr__(self, name):
            return getattr(torch, name)

        @staticmethod
        def arange(*args, device=None, **kw):
            return torch.arange(*args, device="cpu" if device == -1 else device, **kw)

    official.torch = CpuArange()
    return official, sys.modules["graph.ntu_rgb_d_hierarchy"]


def official_model(official, num_class: int, com: int = 21):
    return official.Model(num_class=num_class, num_point=25, num_person=2, graph=GRAPH,
                          graph_args={"labeling_mode": "spatial", "CoM": com})


# ----------------------------------------------------------------------------- weights
def perturb(sd: dict, gen: torch.Generator) -> dict:
    """Every float tensor += noise (running_var kept positive), aliases kept aliased (the
    official ``conv_d`` is ``conv.5``), so that no path is switched off."""
    out, done = {}, {}
    for k, v in sd.items():
        key = (v.data_ptr(), v.dtype, tuple(v.shape))
        if key in done:
            out[k] = done[key]
            continue
        if v.is_floating_point():
            noise = 0.1 * torch.randn(v.shape, generator=gen)
            v = v.abs() + 0.5 + noise.abs() if k.endswith("running_var") else v + noise
        out[k] = done[key] = v.clone()
    return out


# ----------------------------------------------------------------------------- comparisons
def check_graphs(hier, official) -> dict:
    """Our hierarchy and A-HA joint sets vs the official ones, for every official CoM."""
    out = {}
    for com in (21, 1, 2):
        a = hier.Graph(CoM=com).A[0].astype(np.float32)
        aha = official.AHA(8, num_layers=a.shape[0], CoM=com)
        out[f"com{com}"] = {"graph_equal": bool(np.array_equal(a, hierarchical_graph("ntu", com))),
                            "aha_joint_sets_equal": aha.layers == level_joints("ntu", com)}
    return out


def check_config(official, name: str, seed: int = 0) -> dict:
    num_class = CONFIGS[name]
    torch.manual_seed(seed)
    off = official_model(official, num_class)
    torch.manual_seed(seed)
    ours = HDGCN(num_class=num_class)
    so = off.state_dict()
    out = state_summary(off, ours)
    load_official_state_dict(ours, {"module." + k: v for k, v in so.items()})
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn((4, *SHAPE), generator=gen)
    y = torch.randint(0, num_class, (4,), generator=gen)
    for variant, sd in weight_variants(off, so, SHAPE, gen, perturb_fn=perturb, batches=3,
                                       batch=4).items():
        out[variant] = compare_precisions(off, ours, sd, x, y)
    return out


def write_golden(official, out_dir: Path) -> dict:
    """The official model's float64 logits (eval, train mode) on NTU-60 weights = seed-0 init
    perturbed by generator seed 1, for a seed-2 input; tests/test_hdgcn.py rebuilds the weights
    (our init is the official one, bit for bit) and compares."""
    torch.manual_seed(0)
    off = official_model(official, 60)
    sd = perturb(off.state_dict(), torch.Generator().manual_seed(1))
    x = torch.randn(GOLDEN_SHAPE, generator=torch.Generator().manual_seed(2))
    off.double().load_state_dict(sd, strict=True)
    logits = []
    with torch.no_grad():
        for train in (False, True):
            off.train(train)
            logits.append(off(x.double()).numpy())
    out_dir.mkdir(parents=True, exist_ok=True)
    np.save(out_dir / "hdgcn_input.npy", x.numpy())
    np.save(out_dir / "hdgcn_logits.npy", np.stack(logits))
    return {"dir": str(out_dir), "input": list(x.shape), "logits": [2, *logits[0].shape]}


def time_steps(official, rounds: int, threads: int) -> dict:
    """Samples/s of a training step. With 1 thread the clock is this thread's CPU time, which
    background load on a shared machine barely disturbs; with more, wall time."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    models = {"official": official_model(official, 60), "ours": HDGCN(num_class=60)}
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((16, *SHAPE), generator=gen)
    y = torch.randint(0, 60, (16,), generator=gen)
    return time_training_steps(models, x, y, rounds, threads)


def ucla_support() -> str:
    try:
        build_backbone("hdgcn", num_class=10, num_point=20, num_person=1, graph="ucla")
    except BenchmarkError as e:
        return f"BenchmarkError: {e}"
    return "built"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", required=True, type=Path, help="checkout of Jho-Yonsei/HD-GCN")
    ap.add_argument("--rounds", type=int, default=10, help="timed training steps per model")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, torch.get_num_threads()],
                    help="thread counts to time (1 = CPU-time clock)")
    ap.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--golden", type=Path, help="write the golden logits into this folder")
    args = ap.parse_args()
    if not (args.official / "model" / "HDGCN.py").is_file():
        sys.exit(f"error: {args.official}: no model/HDGCN.py (not an HD-GCN checkout)")
    official, hier = load_official(args.official)
    threads = torch.get_num_threads()
    report = {"torch": torch.__version__, "graphs": check_graphs(hier, official),
              "ucla": ucla_support()}
    for name in args.configs:
        report[name] = check_config(official, name)
    if args.golden:
        report["golden"] = write_golden(official, args.golden)
    for n in args.threads if args.rounds else []:
        report[f"train_step_cpu_{n}thread"] = time_steps(official, args.rounds, n)
    torch.set_num_threads(threads)
    report["summary"] = summarise(report, CONFIGS)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
