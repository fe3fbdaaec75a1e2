"""One-off check of our ST-GCN++ against the official PYSKL implementation (run by hand, CPU).

    git clone https://github.com/kennymckormick/pyskl /tmp/pyskl
    python scripts/check_stgcnpp_official.py --official /tmp/pyskl [--shapmix /tmp/Shap-Mix]

PYSKL's package imports pull in mmcv (and, through it, a CUDA build chain), which this check
does not need: the script imports only the files that define the model, by path, and stands
in for the few mmcv names they use (``build_norm_layer`` -> ``nn.BatchNorm2d``,
``build_activation_layer`` -> ``nn.ReLU()``, ``normal_init`` and the registry decorators,
with mmcv's documented semantics). Those files are ``pyskl/utils/graph.py``,
``pyskl/models/gcns/{stgcn.py,utils/gcn.py,utils/tcn.py,utils/init_func.py}`` and
``pyskl/models/heads/{base.py,simple_head.py}``. The official model is ``RecognizerGCN``'s
pair: ``backbone`` = ``STGCN(gcn_adaptive='init', gcn_with_res=True, tcn_type='mstcn',
graph_cfg=dict(layout='nturgb+d', mode='spatial'))`` and ``cls_head`` = ``GCNHead(num_classes,
in_channels=256)`` (PYSKL's ``configs/stgcn++/*/j.py``), initialised as ``BaseRecognizer``
does, so its ``state_dict`` is what a PYSKL checkpoint stores.

For NTU-60, NTU-120, NW-UCLA and COCO-17 it checks that
  * the graph equals PYSKL's ``Graph(layout, mode='spatial').A`` (and Shap-Mix's
    ``graph/ntu_stgcn_pp.py`` with ``--shapmix``); PYSKL has no NW-UCLA layout, so for
    'ucla' the official model gets our NW-UCLA edges through a ``Graph`` subclass: that config
    checks the network, not the graph,
  * the same torch seed gives bit-identical initial weights, the state_dict keys, order and
    shapes equal the official ones under ``load_official_state_dict``'s renaming, and a PYSKL
    checkpoint dict loads with strict=True,
  * logits (eval and train mode), updated BN running statistics and all gradients agree, in
    float32 (max abs and max relative error of the logits) and float64, with the official
    init and with every tensor perturbed plus BN statistics averaged over random batches
    (eval logits at a realistic scale),
then times a CPU training step (forward + backward + SGD, input (16, 3, 64, 25, 2), the two
models alternating, median). Prints one JSON object. ``--golden DIR`` also writes the small
golden arrays of ``tests/test_stgcnpp.py`` from the official model.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _official_check import (compare_precisions, run_mode, state_summary,  # noqa: E402
                             summarise, time_training_steps, weight_variants)
from benchmark.backbones.stgcnpp import (STGCNPP, from_official_key,  # noqa: E402
                                         load_official_state_dict, to_official_state_dict)
from benchmark.data.skeleton import get_layout  # noqa: E402

CONFIGS = {  # name: (ours kwargs, official layout, input (C, T, V, M))
    "ntu60": (dict(num_class=60, num_point=25, num_person=2, graph="ntu"), "nturgb+d",
              (3, 64, 25, 2)),
    "ntu120": (dict(num_class=120, num_point=25, num_person=2, graph="ntu"), "nturgb+d",
               (3, 64, 25, 2)),
    "ucla": (dict(num_class=10, num_point=20, num_person=1, graph="ucla"), "ucla",
             (3, 52, 20, 1)),
    "coco17": (dict(num_class=400, num_point=17, num_person=2, graph="coco17"), "coco",
               (3, 48, 17, 2)),
}


# ----------------------------------------------------------------------------- official import
def _module(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__path__ = []  # a package, so that relative imports below it resolve through sys.modules
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    return mod


def _load(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


class _Registry:
    """Stands in for mmcv's Registry: ``register_module()`` returns the class unchanged."""

    def register_module(self, *args, **kwargs):  # PYSKL: @BACKBONES.register_module()
        return lambda cls: cls


def _normal_init(module: nn.Module, mean: float = 0, std: float = 1, bias: float = 0) -> None:
    nn.init.normal_(module.weight, mean, std)
    if getattr(module, "bias", None) is not None:
        nn.init.constant_(module.bias, bias)


def import_pyskl(root: Path) -> types.SimpleNamespace:
    """PYSKL's STGCN and GCNHead classes (and Graph) from a checkout, without mmcv."""
    pkg = root / "pyskl"
    if not (pkg / "models" / "gcns" / "stgcn.py").is_file():
        sys.exit(f"error: {root}: no pyskl/models/gcns/stgcn.py (not a PYSKL checkout)")
    norm = {"BN": nn.BatchNorm2d}  # mmcv's 'BN' (the only norm these files build)
    act = {"ReLU": nn.ReLU}

    def build_norm_layer(cfg, num_features):
        cfg = dict(cfg)
        kind = cfg.pop("type")
        return kind.lower(), norm[kind](num_features, **cfg)

    def build_activation_layer(cfg):
        cfg = dict(cfg)
        return act[cfg.pop("type")](**cfg)

    _module("mmcv")
    _module("mmcv.cnn", build_norm_layer=build_norm_layer,
            build_activation_layer=build_activation_layer, normal_init=_normal_init)
    _module("mmcv.runner", load_checkpoint=None)
    reg = _Registry()
    _module("pyskl")
    utils = _module("pyskl.utils", cache_checkpoint=None)
    graph = _load("pyskl.utils.graph", pkg / "utils" / "graph.py")
    utils.Graph = graph.Graph
    _module("pyskl.core", top_k_accuracy=None)
    _module("pyskl.models")
    _module("pyskl.models.builder", BACKBONES=reg, HEADS=reg, build_loss=lambda cfg: None)
    _module("pyskl.models.gcns")
    gutils = _module("pyskl.models.gcns.utils")
    for name in ("init_func", "gcn", "tcn"):
        mod = _load(f"pyskl.models.gcns.utils.{name}",
                    pkg / "models" / "gcns" / "utils" / f"{name}.py")
        gutils.__dict__.update({k: v for k, v in vars(mod).items() if not k.startswith("_")})
    stgcn = _load("pyskl.models.gcns.stgcn", pkg / "models" / "gcns" / "stgcn.py")
    _module("pyskl.models.heads")
    _load("pyskl.models.heads.base", pkg / "models" / "heads" / "base.py")
    head = _load("pyskl.models.heads.simple_head", pkg / "models" / "heads" / "simple_head.py")
    return types.SimpleNamespace(STGCN=stgcn.STGCN, GCNHead=head.GCNHead, Graph=graph.Graph,
                                 graph_module=graph, stgcn_module=stgcn)


class OfficialRecognizer(nn.Module):
    """What PYSKL's ``RecognizerGCN`` holds for ST-GCN++ (``backbone``, ``cls_head``), built and
    initialised in its order; ``forward`` is its logits path on (N, M, T, V, C) input."""

    def __init__(self, py: types.SimpleNamespace, kw: dict, layout: str):
        super().__init__()
        self.backbone = py.STGCN(graph_cfg=dict(layout=layout, mode="spatial"),
                                 in_channels=kw.get("in_channels", 3),
                                 base_channels=kw.get("base_channel", 64), gcn_adaptive="init",
                                 gcn_with_res=True, tcn_type="mstcn")
        self.cls_head = py.GCNHead(num_classes=kw["num_class"],
                                   in_channels=4 * kw.get("base_channel", 64))
        self.backbone.init_weights()
        self.cls_head.init_weights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cls_head(self.backbone(x))


def patch_ucla(py: types.SimpleNamespace) -> None:
    """PYSKL has no NW-UCLA layout: 'ucla' builds PYSKL's 'spatial' stack, with PYSKL's own
    edge2mat / normalize_digraph, on our NW-UCLA edges."""
    g = py.graph_module
    real = py.stgcn_module.Graph

    def graph(layout="coco", mode="spatial", **kw):
        if layout != "ucla":
            return real(layout=layout, mode=mode, **kw)
        inward = list(get_layout("ucla20").edges)
        v = 20
        return types.SimpleNamespace(A=np.stack((
            g.edge2mat([(i, i) for i in range(v)], v),
            g.normalize_digraph(g.edge2mat(inward, v)),
            g.normalize_digraph(g.edge2mat([(j, i) for i, j in inward], v)))))
    py.stgcn_module.Graph = graph


def official_input(x: torch.Tensor) -> torch.Tensor:
    """Ours (N, C, T, V, M) -> PYSKL's (N, M, T, V, C)."""
    return x.permute(0, 4, 2, 3, 1).contiguous()


# ----------------------------------------------------------------------------- weights
def golden_state(model: nn.Module, seed: int = 0) -> None:
    """The golden test's weights (tests/test_stgcnpp.py imports this; the golden file stores
    per-tensor sums, so a change of recipe is caught): a float64 uniform u per tensor in our
    state_dict order; BN gammas and running_var 0.5 + u, A u / V, other 1-D tensors u - 0.5,
    conv / fc weights (u - 0.5) * sqrt(12 / fan_in) (unit variance per output), so that
    eval-mode activations neither vanish nor explode through the ten blocks."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            u = torch.rand(t.shape, generator=gen, dtype=torch.float64)
            if k.endswith("running_var") or (t.dim() == 1 and k.endswith("weight")):
                u = u + 0.5
            elif k.endswith(".A"):
                u = u / t.shape[-1]
            elif t.dim() == 1:
                u = u - 0.5
            else:
                u = (u - 0.5) * (12.0 / t[0].numel()) ** 0.5
            t.copy_(u.to(t.dtype))


# ----------------------------------------------------------------------------- comparison
def compare(off, ours, sd: dict, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Ours vs official in float32 and float64 on the official-named weights ``sd``
    (``_official_check.compare_precisions``; gradients and state under our names). Train-mode
    float32 gradients carry ~2-5x the official rounding error: PyTorch's channels-last CPU
    BatchNorm (ours) sums its statistics in float32, the NCHW kernel (official) in float64."""
    def run(name, model, dt, train):
        model.to(dt)
        if name == "off":
            model.load_state_dict(sd, strict=True)
            return run_mode(model, official_input(x).to(dt), y, train, from_official_key)
        load_official_state_dict(model, sd)
        return run_mode(model, x.to(dt), y, train)

    return compare_precisions(off, ours, sd, x, y, run)


def check_config(py, name: str, seed: int = 0) -> dict:
    kw, layout, shape = CONFIGS[name]
    torch.manual_seed(seed)
    off = OfficialRecognizer(py, kw, layout)
    torch.manual_seed(seed)
    ours = STGCNPP(**kw)
    so, su = off.state_dict(), to_official_state_dict(ours)
    a_ours = torch.from_numpy(np.asarray(ours.gcn[0].gcn.A.detach()))
    out = {"graph_equals_official": torch.equal(off.backbone.gcn[0].gcn.A.detach(), a_ours),
           **state_summary(off, ours, so, su)}
    # a PYSKL/mmcv checkpoint dict through our loader (strict)
    ours2 = STGCNPP(**kw)
    load_official_state_dict(ours2, {"module." + k: v for k, v in so.items()})
    out["official_state_loads_strict"] = all(torch.equal(v, so[k])
                                             for k, v in to_official_state_dict(ours2).items())
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn((4, *shape), generator=gen)
    y = torch.randint(0, kw["num_class"], (4,), generator=gen)
    for variant, sd in weight_variants(off, so, shape, gen, keep_perturbed=False,
                                       prepare=official_input).items():
        out[variant] = compare(off, ours, sd, x, y)
    return out


def check_shapmix_graph(root: Path) -> bool:
    """Shap-Mix's graph/ntu_stgcn_pp.py Graph('nturgb+d', 'spatial').A equals ours."""
    mod = _load("shapmix_ntu_stgcn_pp", root / "graph" / "ntu_stgcn_pp.py")
    a = mod.Graph(layout="nturgb+d", mode="spatial").A
    return bool(np.array_equal(a.astype(np.float32), STGCNPP().gcn[0].gcn.A.detach().numpy()))


# ----------------------------------------------------------------------------- golden file
GOLDEN = dict(num_class=5, num_point=25, num_person=2, graph="ntu", base_channel=8)
GOLDEN_INPUT = (2, 3, 12, 25, 2)


def write_golden(py, path: Path) -> dict:
    """Official float64 outputs of the tiny golden model on ``golden_state`` weights: eval and
    train logits, per-tensor gradient L2 norms (train mode, CE loss) and per-tensor weight sums."""
    ours = STGCNPP(**GOLDEN).double()
    golden_state(ours)
    off = OfficialRecognizer(py, GOLDEN, "nturgb+d").double()
    off.load_state_dict(to_official_state_dict(ours), strict=True)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(GOLDEN_INPUT, generator=gen, dtype=torch.float64) * 2 - 1
    y = torch.arange(GOLDEN_INPUT[0]) % GOLDEN["num_class"]
    off.eval()
    with torch.no_grad():
        eval_logits = off(official_input(x))
    off.train()
    train_logits = off(official_input(x))
    F.cross_entropy(train_logits, y).backward()
    arrays = {
        "input_sum": x.sum().numpy(), "weight_sums": np.array(
            [v.double().sum().item() for v in ours.state_dict().values() if v.is_floating_point()]),
        "eval_logits": eval_logits.numpy(), "train_logits": train_logits.detach().numpy(),
        "grad_norms": np.array([off.get_parameter(k).grad.norm().item()
                                for k, _ in to_official_state_dict(ours).items()
                                if k in dict(off.named_parameters())]),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    # our model on the same weights, for the report
    ours.eval()
    with torch.no_grad():
        e = (ours(x) - eval_logits).abs().max().item()
    ours.train()
    t = (ours(x) - train_logits).abs().max().item()
    return {"file": str(path), "bytes": path.stat().st_size, "eval_logits_max_abs_err_fp64": e,
            "train_logits_max_abs_err_fp64": t, "eval_scale": eval_logits.abs().max().item()}


# ----------------------------------------------------------------------------- timing
def time_steps(py, rounds: int, threads: int) -> dict:
    """Samples/s of a training step. With 1 thread the clock is this thread's CPU time, which
    background load on a shared machine barely disturbs; with more, wall time."""
    torch.set_num_threads(threads)
    kw, layout, _ = CONFIGS["ntu60"]
    torch.manual_seed(0)
    models = {"official": OfficialRecognizer(py, kw, layout), "ours": STGCNPP(**kw)}
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((16, 3, 64, 25, 2), generator=gen)
    inputs = {"official": official_input(x), "ours": x}
    y = torch.randint(0, 60, (16,), generator=gen)
    return time_training_steps(models, inputs, y, rounds, threads)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", required=True, type=Path, help="checkout of kennymckormick/pyskl")
    ap.add_argument("--shapmix", type=Path, help="checkout of JHang2020/Shap-Mix (graph check)")
    ap.add_argument("--rounds", type=int, default=10, help="timed training steps per model")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, torch.get_num_threads()],
                    help="thread counts to time (1 = CPU-time clock)")
    ap.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--golden", type=Path,
                    help="write the golden file (tests/golden/stgcnpp_tiny.npz)")
    args = ap.parse_args()
    py = import_pyskl(args.official)
    patch_ucla(py)

    report = {"torch": torch.__version__}
    if args.shapmix:
        report["shapmix_graph_equals_ours"] = check_shapmix_graph(args.shapmix)
    for name in args.configs:
        report[name] = check_config(py, name)
    if args.golden:
        report["golden"] = write_golden(py, args.golden)
    for threads in args.threads if args.rounds else []:
        report[f"train_step_cpu_{threads}thread"] = time_steps(py, args.rounds, threads)
    report["summary"] = summarise(report, CONFIGS)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
