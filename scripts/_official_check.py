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
               batch: int = 8) -> dict:
    """``sd`` with BN running statistics replaced by exact averages over ``batches`` random
    batches (as after training), so that eval-mode activations have a realistic scale."""
    model.load_state_dict(sd, strict=True)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn((batch, *shape), generator=gen))
    for bn in bns:
        bn.momentum = 0.1
    return {k: v.clone() for k, v in model.state_dict().items()}


def max_diff(a: dict, b: dict) -> float:
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].numel())


def run_mode(model, x, y, train: bool) -> dict:
    """Logits, parameter gradients and the state after one forward/backward."""
    model.train(train)
    model.zero_grad(set_to_none=True)
    logits = model(x)
    F.cross_entropy(logits, y).backward()
    grads = {k: p.grad.double() for k, p in model.named_parameters()}
    state = {k: v.double() for k, v in model.state_dict().items()}
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
