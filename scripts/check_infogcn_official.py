"""One-off check of our InfoGCN against the official implementation (run by hand, CPU).

    git clone https://github.com/stnoah1/infogcn /tmp/infogcn
    pip install einops            # the official model imports it (nothing else is needed)
    python scripts/check_infogcn_official.py --official /tmp/infogcn

Imports ``model/infogcn.py:InfoGCN`` and ``loss.py:get_mmd_loss`` from that checkout (nothing of
it lives in this repo), built with its ``main.py`` arguments (n_heads 3, noise_ratio 0.5,
z_prior_gain 3) and the README's k = 1. The official ``A_vector`` is float64 and only runs under
apex O1's autocast; here it is cast to the run's dtype (its entries are integers: no change).
For NTU-60, NTU-120 and NW-UCLA it checks that
  * the same torch seed gives bit-identical initial weights, z_prior and A_vector,
  * the state_dict keys, order and shapes are identical, and the official weights load into
    ours with strict=True through ``load_official_state_dict`` (``module.`` prefix dropped),
  * eval-mode logits, and train-mode logits with the latent noise seeded (torch.manual_seed
    before each forward: both draw eps the same way), agree in float32 (next to the official
    model's own float32-vs-float64 error) and float64; in train mode also the gradients of the
    official objective (label-smoothed CE + lambda_2 MMD + lambda_1 |mean z|, ours through
    ``aux_losses``) and the updated BN statistics; for the official init, every tensor
    perturbed, and perturbed weights with BN statistics averaged over random batches,
  * ``aux_losses(y)`` equals main.py's ``lambda_2 * mmd_loss + lambda_1 * l2_z_mean`` of
    ``get_mmd_loss(z, z_prior, y)`` on the same batch and latent,
then times a CPU training step (forward + backward + SGD on each model's full objective) at
input (16, 3, 64, 25, 2), alternating the two models in one process. Prints one JSON object.

``--write-golden DIR`` also writes the official outputs that ``tests/test_infogcn.py`` checks
without the checkout (weights and input from numpy's frozen RandomState stream, see
:func:`golden_state`).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _official_check import (compare_precisions, state_summary, summarise,  # noqa: E402
                             time_training_steps, weight_variants)
from benchmark.backbones.infogcn import InfoGCN, load_official_state_dict  # noqa: E402

OFFICIAL_ARGS = dict(in_channels=3, drop_out=0, num_head=3, k=1, noise_ratio=0.5, gain=3)
LAMBDA_1, LAMBDA_2, SMOOTHING = 1e-4, 1e-1, 0.1  # main.py defaults; LabelSmoothingCrossEntropy
CONFIGS = {  # name: (ours kwargs, official graph class, input (C, T, V, M))
    "ntu60": (dict(num_class=60, num_point=25, num_person=2, graph="ntu"),
              "graph.ntu_rgb_d.Graph", (3, 64, 25, 2)),
    "ntu120": (dict(num_class=120, num_point=25, num_person=2, graph="ntu"),
               "graph.ntu_rgb_d.Graph", (3, 64, 25, 2)),
    "ucla": (dict(num_class=10, num_point=20, num_person=1, graph="ucla"),
             "graph.ucla.Graph", (3, 52, 20, 1)),
}
TRAIN_SEED = 1234  # torch seed before every train-mode forward: the latent's eps
NOTES = [
    "rel_fp32 = ours_vs_official_fp32 / scale (max |official fp64|)",
    "the official attention ends in .float(): its float64 runs have float32 attention maps, so "
    "ours_vs_official_fp64 is ~1e-8 relative, not float64 rounding",
    "train mode: both models draw the same eps per dtype (seeded); fp32 and fp64 runs draw "
    "different eps, hence no official_fp32_vs_fp64 floor there",
    "official_init eval_grads: the official init (agcn BN gamma 1e-6 after ReLU'd inputs) puts "
    "ReLU inputs at ~0, where the mask is a rounding decision: each implementation's own fp32 "
    "and fp64 gradients differ there too; the perturbed variants agree to ~1e-9 in fp64",
]


def official_model(cls, kw: dict, graph: str):
    m = cls(num_class=kw["num_class"], num_point=kw["num_point"], num_person=kw["num_person"],
            graph=graph, **OFFICIAL_ARGS)
    m.A_vector = m.A_vector.float()
    return m


def our_model(kw: dict) -> InfoGCN:
    return InfoGCN(**kw, **{k: v for k, v in OFFICIAL_ARGS.items() if k != "in_channels"})


# ----------------------------------------------------------------------------- golden recipe
def golden_state(keys_shapes: list[tuple[str, tuple, bool]], seed: int = 0) -> dict:
    """Weights for every float tensor from numpy's RandomState (a frozen stream): conv/linear
    weights N(0, 1/fan_in), biases and BN/LN shifts N(0, 0.1^2), scales 1 + N(0, 0.1^2),
    running_var in [0.5, 1.5), the attention topologies I + N(0, 0.1^2), positions N(0, 1).
    ``keys_shapes``: (official key, shape, is floating) in state_dict order."""
    rs = np.random.RandomState(seed)
    out = {}
    for k, shape, floating in keys_shapes:
        if not floating:
            out[k] = torch.zeros(shape, dtype=torch.long)
            continue
        name = k.rsplit(".", 1)[-1]
        if name == "running_var":
            v = 0.5 + rs.random_sample(shape)
        elif k.endswith("shared_topology"):
            v = np.eye(shape[-1])[None] + 0.1 * rs.standard_normal(shape)
        elif k == "pos_embedding":
            v = rs.standard_normal(shape)
        elif name == "weight" and len(shape) >= 2:
            v = rs.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))
        elif name == "weight":  # BN / LayerNorm scale
            v = 1 + 0.1 * rs.standard_normal(shape)
        else:  # biases, BN/LN shifts, running_mean
            v = 0.1 * rs.standard_normal(shape)
        out[k] = torch.from_numpy(np.asarray(v, dtype=np.float32))
    return out


def golden_input(shape: tuple, seed: int = 1) -> torch.Tensor:
    return torch.from_numpy(np.random.RandomState(seed).standard_normal(shape).astype(np.float32))


GOLDEN = {  # name: (config, input shape, labels for the aux terms)
    "ntu60": ("ntu60", (2, 3, 16, 25, 2), (3, 7)),
    "ucla": ("ucla", (2, 3, 16, 20, 1), (1, 1)),
}


def write_golden(cls, get_mmd_loss, out_dir: Path) -> dict:
    """Official outputs on :func:`golden_state` weights: eval logits, train-mode pooled features
    (the input of the official ``fc``), and get_mmd_loss of the eval latent (mu) against a
    RandomState prior. Files ``infogcn_<name>_{logits,feat,aux}.npy`` (float32/float64)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, (cfg, shape, labels) in GOLDEN.items():
        kw, graph, _ = CONFIGS[cfg]
        torch.manual_seed(0)
        off = official_model(cls, kw, graph)
        sd = golden_state([(k, tuple(v.shape), v.is_floating_point())
                           for k, v in off.state_dict().items()])
        off.load_state_dict(sd, strict=True)
        x = golden_input(shape)
        feats = []
        hook = off.fc.register_forward_hook(lambda m, inp, out: feats.append(inp[0].detach()))
        with torch.no_grad():
            off.eval()
            logits, z = off(x)
            off.train()
            off(x)
        hook.remove()
        prior = golden_input((kw["num_class"], z.shape[1]), seed=2)
        mmd, l2, _ = get_mmd_loss(z, prior, torch.tensor(labels), kw["num_class"])
        files = {"logits": logits.numpy().astype(np.float32),
                 "feat": feats[1].numpy().astype(np.float32),
                 "aux": np.array([mmd.item(), l2.item()], dtype=np.float64)}
        for what, arr in files.items():
            path = out_dir / f"infogcn_{name}_{what}.npy"
            np.save(path, arr)
            written[str(path)] = path.stat().st_size
    return written


# ----------------------------------------------------------------------------- comparisons
def official_objective(off, logits, z, y, get_mmd_loss) -> tuple[torch.Tensor, torch.Tensor]:
    """main.py: cls_loss + lambda_2 * mmd_loss + lambda_1 * l2_z_mean; also the aux part."""
    mmd, l2, _ = get_mmd_loss(z, off.z_prior.to(z), y, off.num_class)
    aux = LAMBDA_2 * mmd + LAMBDA_1 * l2
    return F.cross_entropy(logits, y, label_smoothing=SMOOTHING) + aux, aux


def run_mode(model, x, y, train: bool, official: bool, get_mmd_loss) -> dict:
    """Logits, parameter gradients (by official key) and the state after one forward/backward."""
    model.train(train)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(TRAIN_SEED)
    if official:
        model.A_vector = model.A_vector.to(x.dtype)
        logits, z = model(x)
        loss, aux = official_objective(model, logits, z, y, get_mmd_loss) if train else (
            F.cross_entropy(logits, y, label_smoothing=SMOOTHING), None)
    else:
        logits = model(x)
        terms = model.aux_losses(y)
        aux = sum(terms.values()) if terms else None
        loss = F.cross_entropy(logits, y, label_smoothing=SMOOTHING) + (aux if terms else 0)
    loss.backward()
    state = {k: v.double() for k, v in model.state_dict().items()}
    # gradients keyed by the official names (our state_dict speaks them); an unused parameter
    # (eval: fc_logvar) has none: zeros
    grads = {k: (torch.zeros_like(p) if p.grad is None else p.grad).double()
             for k, p in model.state_dict(keep_vars=True).items()
             if isinstance(p, torch.nn.Parameter)}
    return {"logits": {"": logits.detach().double()}, "grads": grads, "state": state,
            "aux": {"": aux.detach().double().reshape(1)} if aux is not None else {}}


def compare(off, ours, sd: dict, x: torch.Tensor, y: torch.Tensor, get_mmd_loss) -> dict:
    """Ours vs official in float32 and float64 (the float32 noise floor: official fp32 vs
    official fp64), the aux objective included; train mode draws the latent noise per dtype,
    so its fp32-vs-fp64 entries are None."""
    def run(name, model, dt, train):
        model.to(dt).load_state_dict(sd, strict=True)
        return run_mode(model, x.to(dt), y, train, name == "off", get_mmd_loss)

    res = compare_precisions(off, ours, sd, x, y, run, ("logits", "grads", "state", "aux"),
                             cross_dtype_in_train=False)
    off.A_vector = off.A_vector.float()
    return res


def aux_check(off, ours, sd: dict, x: torch.Tensor, y: torch.Tensor, get_mmd_loss) -> dict:
    """aux_losses(y) vs main.py's formula on the same batch and latent (fp32, seeded eps)."""
    for m in (off, ours):
        m.load_state_dict(sd, strict=True)
        m.train()
    torch.manual_seed(TRAIN_SEED)
    with torch.no_grad():
        _, z = off(x)
    mmd, l2, _ = get_mmd_loss(z, off.z_prior, y, off.num_class)
    torch.manual_seed(TRAIN_SEED)
    with torch.enable_grad():  # aux_losses records training forwards with gradients
        ours(x)
    terms = {k: v.item() for k, v in ours.aux_losses(y).items()}
    official = {"infogcn_mmd": LAMBDA_2 * mmd.item(), "infogcn_z_mean": LAMBDA_1 * l2.item()}
    total_off, total_ours = sum(official.values()), sum(terms.values())
    return {"official": official, "ours": terms, "official_total": total_off,
            "ours_total": total_ours,
            "rel_error": abs(total_off - total_ours) / abs(total_off),
            "classes_in_batch": len(set(y.tolist())), "batch": len(y)}


def check_config(cls, get_mmd_loss, name: str, seed: int = 0) -> dict:
    kw, graph, shape = CONFIGS[name]
    torch.manual_seed(seed)
    off = official_model(cls, kw, graph)
    torch.manual_seed(seed)
    ours = our_model(kw)
    so = off.state_dict()
    out = state_summary(off, ours)
    out.update({
        "same_z_prior_and_A_vector": torch.equal(off.z_prior, ours.z_prior)
                                     and torch.equal(off.A_vector, ours.A_vector),
    })
    load_official_state_dict(ours, {"module." + k: v for k, v in so.items()})
    out["strict_load_through_loader"] = True
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn((8, *shape), generator=gen)
    y = torch.randint(0, min(3, kw["num_class"]), (8,), generator=gen)  # repeated classes
    variants = weight_variants(off, so, shape, gen)
    for variant, sd in variants.items():
        out[variant] = compare(off, ours, sd, x, y, get_mmd_loss)
    out["aux_loss"] = aux_check(off, ours, variants["perturbed_calibrated_bn"], x, y, get_mmd_loss)
    return out


def time_steps(cls, get_mmd_loss, rounds: int, threads: int) -> dict:
    """Samples/s of a training step on each model's full objective. With 1 thread the clock is
    this thread's CPU time, which background load on a shared machine barely disturbs; with
    more, wall time."""
    torch.set_num_threads(threads)
    kw, graph, _ = CONFIGS["ntu60"]
    torch.manual_seed(0)
    models = {"official": official_model(cls, kw, graph), "ours": our_model(kw)}
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((16, 3, 64, 25, 2), generator=gen)
    y = torch.randint(0, 60, (16,), generator=gen)
    def objective(k, m, xb, yb):
        if k == "official":
            logits, z = m(xb)
            return official_objective(m, logits, z, yb, get_mmd_loss)[0]
        return F.cross_entropy(m(xb), yb, label_smoothing=SMOOTHING) + sum(m.aux_losses(yb).values())

    return time_training_steps(models, x, y, rounds, threads, objective)


def official_commit(path: Path) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", required=True, type=Path, help="checkout of stnoah1/infogcn")
    ap.add_argument("--rounds", type=int, default=10, help="timed training steps per model")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, torch.get_num_threads()],
                    help="thread counts to time (1 = CPU-time clock)")
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--write-golden", type=Path, metavar="DIR",
                    help="also write the official golden outputs (tests/golden) into DIR")
    args = ap.parse_args()
    if not (args.official / "model" / "infogcn.py").is_file():
        sys.exit(f"error: {args.official}: no model/infogcn.py (not an InfoGCN checkout)")
    sys.path.insert(0, str(args.official.resolve()))
    try:  # the official classes, from the user's checkout
        from loss import get_mmd_loss
        from model.infogcn import InfoGCN as Official
    except ModuleNotFoundError as e:
        sys.exit(f"error: the official code needs {e.name!r}: pip install {e.name}")

    report = {"torch": torch.__version__, "official_commit": official_commit(args.official),
              "notes": NOTES}
    if args.write_golden:
        report["golden_files"] = write_golden(Official, get_mmd_loss, args.write_golden)
    for name in args.configs:
        report[name] = check_config(Official, get_mmd_loss, name)
    for threads in args.threads if args.rounds else []:
        report[f"train_step_cpu_{threads}thread"] = time_steps(Official, get_mmd_loss,
                                                               args.rounds, threads)
    report["summary"] = summarise(report, CONFIGS)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
