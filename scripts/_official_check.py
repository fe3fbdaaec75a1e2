"""What the scripts/check_*_official.py comparisons share: perturbed and BN-calibrated
weights (so no path is switched off), the largest difference of two state dicts, and one
forward / backward with everything it produced. A script whose model needs a variant
keeps its own."""
from __future__ import annotations

import statistics
import time
from typing import Callable, Iterable

import torch
import torch.nn.functional as F


def perturb(sd: dict, gen: torch.Generator) -> dict:
    """Every float tensor += noise (running_var kept positive), so no path is switched off."""
    out = {}
    for k, v in sd.items():
        if v.is_floating_point():
            noise = 0.1 * torch.randn(v.shape, generator=gen)
            v = v.abs() + 0.5 + noise.abs() if k.endswith("running_var") else v + noise
        out[k] = v.clone()
    return out


def calibrated(model, sd: dict, shape: tuple, gen: torch.Generator, batches: int = 4,
               batch: int = 8, prepare: Callable | None = None) -> dict:
    """``sd`` with BN running statistics replaced by exact averages over ``batches`` random
    batches (as after training), so that eval-mode activations have a realistic scale.
    ``prepare`` maps our (N, C, T, V, M) input to the model's layout where it differs."""
    model.load_state_dict(sd, strict=True)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            x = torch.randn((batch, *shape), generator=gen)
            model(prepare(x) if prepare else x)
    for bn in bns:
        bn.momentum = 0.1
    return {k: v.clone() for k, v in model.state_dict().items()}


def max_diff(a: dict, b: dict) -> float:
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].numel())


def run_mode(model, x, y, train: bool, names: Callable[[str], str] | None = None) -> dict:
    """Logits, parameter gradients and the state after one forward/backward (keys renamed by
    ``names`` where the two models name their tensors differently)."""
    names = names or (lambda k: k)
    model.train(train)
    model.zero_grad(set_to_none=True)
    logits = model(x)
    F.cross_entropy(logits, y).backward()
    grads = {names(k): p.grad.double() for k, p in model.named_parameters()}
    state = {names(k): v.double() for k, v in model.state_dict().items()}
    return {"logits": {"": logits.detach().double()}, "grads": grads, "state": state}


def time_alternating(step: Callable[[str], None], names: Iterable[str], rounds: int,
                     threads: int, batch: int = 16) -> dict:
    """Samples/s of ``step(name)`` (one training step of model ``name``: "official", "ours"),
    the models alternating so that background load hits both alike, after two warm-up steps
    each (oneDNN kernel selection). With 1 thread the clock is this thread's CPU time, which
    background load on a shared machine barely disturbs; with more, wall time."""
    clock = time.thread_time if threads == 1 else time.perf_counter
    names = list(names)
    times: dict[str, list[float]] = {k: [] for k in names}
    for k in names:
        step(k), step(k)
    for _ in range(rounds):
        for k in names:
            t0 = clock()
            step(k)
            times[k].append(clock() - t0)
    res = {"threads": threads, "clock": clock.__name__, "batch": batch, "rounds": rounds}
    for k, ts in times.items():
        res[f"{k}_samples_per_s_median"] = round(batch / statistics.median(ts), 2)
        res[f"{k}_samples_per_s_best"] = round(batch / min(ts), 2)
    res["speedup_median"] = round(statistics.median(times["official"]) /
                                  statistics.median(times["ours"]), 3)
    res["speedup_best"] = round(min(times["official"]) / min(times["ours"]), 3)
    return res


def state_summary(off, ours, so: dict | None = None, su: dict | None = None) -> dict:
    """Parameter counts, tensor count, whether the state_dict keys, order and shapes are the
    official ones, and whether the same torch seed gave the same initial weights. ``so`` / ``su``
    default to the models' state dicts (pass them where the official names need a mapping)."""
    so = off.state_dict() if so is None else so
    su = ours.state_dict() if su is None else su
    return {
        "params_official": sum(p.numel() for p in off.parameters()),
        "params_ours": sum(p.numel() for p in ours.parameters()),
        "tensors": len(su),
        "keys_and_shapes_identical": [(k, tuple(v.shape)) for k, v in so.items()]
                                     == [(k, tuple(v.shape)) for k, v in su.items()],
        "same_seed_same_init": all(torch.equal(so[k], su[k]) for k in so),
    }


def cosine(a: dict, b: dict) -> float:
    """Cosine similarity of two state dicts flattened into one vector each (keys of ``a``)."""
    va = torch.cat([a[k].flatten() for k in sorted(a)])
    vb = torch.cat([b[k].flatten() for k in sorted(a)])
    return F.cosine_similarity(va, vb, dim=0).item()


def diff_row(o32: dict, u32: dict, o64: dict, u64: dict, cross_dtype: bool = True) -> dict:
    """Ours vs official in float32 and float64, the official model's own float32 rounding error
    (official fp32 vs fp64: the noise floor any implementation has), ours fp32 vs official fp64,
    the largest official fp64 magnitude (``scale``) and the errors relative to it. With
    ``cross_dtype=False`` (the two precisions saw other random draws) the fp32-vs-fp64 entries
    are None."""
    scale = max(v.abs().max().item() for v in o64.values() if v.numel())
    r = {"ours_vs_official_fp32": max_diff(o32, u32),
         "official_fp32_vs_fp64": max_diff(o32, o64) if cross_dtype else None,
         "ours_fp32_vs_official_fp64": max_diff(u32, o64) if cross_dtype else None,
         "ours_vs_official_fp64": max_diff(o64, u64),
         "scale": scale}
    for k in ("fp32", "fp64"):
        r[f"rel_{k}"] = r[f"ours_vs_official_{k}"] / max(scale, 1e-30)
    return r


def compare_precisions(off, ours, sd: dict, x: torch.Tensor, y: torch.Tensor,
                       run: Callable | None = None,
                       whats: tuple = ("logits", "grads", "state"),
                       cross_dtype_in_train: bool = True) -> dict:
    """One forward / backward of both models on the official-named weights ``sd`` in float32
    and float64, eval first (on the loaded running statistics), then train (which updates
    them): ``{"<mode>_<what>": diff_row(...)}``, plus the float32 gradient cosine.

    ``run(name, model, dtype, train)`` ("off" / "ours") loads ``sd`` and returns run_mode's
    dict (default: ``load_state_dict(sd, strict=True)`` and :func:`run_mode` on ``x``); a
    ``what`` a run leaves empty is skipped."""
    def default_run(name, model, dt, train):
        model.to(dt).load_state_dict(sd, strict=True)
        return run_mode(model, x.to(dt), y, train)

    run = run or default_run
    res = {}
    for mode in ("eval", "train"):
        runs = {(name, dt): run(name, m, dt, mode == "train")
                for dt in (torch.float32, torch.float64) for name, m in (("off", off), ("ours", ours))}
        for what in whats:
            o32, u32 = runs["off", torch.float32][what], runs["ours", torch.float32][what]
            o64, u64 = runs["off", torch.float64][what], runs["ours", torch.float64][what]
            if not o32:
                continue
            r = diff_row(o32, u32, o64, u64, cross_dtype_in_train or mode == "eval")
            if what == "grads":
                r["cosine_fp32"] = cosine(o32, u32)
            res[f"{mode}_{what}"] = r
    off.float(), ours.float()
    return res


VARIANTS = ("official_init", "perturbed", "perturbed_calibrated_bn")


def weight_variants(model, sd: dict, shape: tuple, gen: torch.Generator,
                    keep_perturbed: bool = True, perturb_fn: Callable = perturb,
                    **calibration) -> dict:
    """The weights every check compares on: the official init, every tensor perturbed (no path
    switched off) and, perturbed, BN statistics averaged over random batches (eval logits at
    a realistic scale; ``calibration`` = :func:`calibrated`'s batches / batch; ``perturb_fn``
    for a model whose state aliases tensors)."""
    noisy = perturb_fn(sd, gen)
    out = {"official_init": {k: v.clone() for k, v in sd.items()}}
    if keep_perturbed:
        out["perturbed"] = noisy
    out["perturbed_calibrated_bn"] = calibrated(model, noisy, shape, gen, **calibration)
    return out


def summarise(report: dict, configs: Iterable[str]) -> dict:
    """Worst cases over the checked configs and weight variants (relative float32 / float64
    logit and gradient errors, the official model's own float32 error, the smallest gradient
    cosine), parameter counts per config, and the step-time ratios."""
    s: dict = {}
    checked = {c: report[c] for c in configs if c in report}
    for mode in ("eval", "train"):
        for what in ("logits", "grads"):
            rows = [c[v][f"{mode}_{what}"] for c in checked.values() for v in VARIANTS
                    if v in c and f"{mode}_{what}" in c[v]]
            if not rows:
                continue
            s[f"{mode}_{what}_max_rel_fp32"] = max(r["rel_fp32"] for r in rows)
            s[f"{mode}_{what}_max_rel_fp64"] = max(r["rel_fp64"] for r in rows)
            floors = [r["official_fp32_vs_fp64"] / r["scale"] for r in rows
                      if r["official_fp32_vs_fp64"] is not None]
            if floors:
                s[f"{mode}_{what}_official_own_fp32_rel"] = max(floors)
            if what == "grads":
                s[f"{mode}_grads_min_cosine_fp32"] = min(r["cosine_fp32"] for r in rows)
    for c, r in checked.items():
        s[f"params_{c}"] = {"ours": r["params_ours"], "official": r["params_official"]}
    if checked:
        s["all_keys_shapes_identical"] = all(r["keys_and_shapes_identical"] for r in checked.values())
        s["all_same_seed_same_init"] = all(r["same_seed_same_init"] for r in checked.values())
    for k, v in report.items():
        if k.startswith("train_step_cpu"):
            s[f"speedup_median_{v['threads']}thread"] = v["speedup_median"]
    return s


def time_training_steps(models: dict, x, y: torch.Tensor, rounds: int, threads: int,
                        loss: Callable | None = None) -> dict:
    """:func:`time_alternating` over SGD training steps of ``models`` ({"official": m,
    "ours": m}) on one batch: ``x`` a tensor or {name: the model's input}, ``loss(name, model,
    x, y)`` the objective (default: cross-entropy of the logits)."""
    torch.set_num_threads(threads)
    inputs = x if isinstance(x, dict) else {k: x for k in models}
    loss = loss or (lambda name, m, xb, yb: F.cross_entropy(m(xb), yb))
    opts = {k: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for k, m in models.items()}

    def step(k):
        opts[k].zero_grad(set_to_none=True)
        loss(k, models[k], inputs[k], y).backward()
        opts[k].step()

    return time_alternating(step, models, rounds, threads, batch=len(y))
