"""Method-side glue shared by the re-weighting baselines: epoch switches, the reduction of a
class-weighted loss under a :class:`~benchmark.method.Target`, and a Beta draw from the run's
generator. The loss formulas themselves are the pure functions of :mod:`benchmark.losses`.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from benchmark.errors import BenchmarkError
from benchmark.method import Batch, Context, Method, Out, Target

PerSample = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
REDUCTIONS = ("mean", "torch_weighted")


def switch_epoch(frac: float, total_epochs: int) -> int:
    """0-based first epoch of a deferred phase at ``frac`` of training, rounded half up.

    0.8 of 100 is epoch 80 (the LDAM-DRW 160/200 and BRL 19/24 ratio), so a short CPU profile
    of 16 epochs switches at 13; ``frac`` 0 means from the start, 1 (or more) never.
    """
    if frac < 0:
        raise BenchmarkError(f"a switch fraction must be >= 0, got {frac}")
    return int(math.floor(frac * total_epochs + 0.5))


def check_choice(owner: str, name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise BenchmarkError(f"{owner}: {name} must be one of {', '.join(choices)}, got {value!r}")


def target_loss(fn: PerSample, logits: torch.Tensor, target: Target,
                class_weight: torch.Tensor | None = None, reduction: str = "mean") -> torch.Tensor:
    """The batch loss of a hard or pair target under per-class weights.

    Per sample: (1 - w_b) c_y l(z, y) + w_b c_yb l(z, y_b) with c the class weight (1 without).
    ``mean`` averages these over the batch ("TF-style": weights not renormalised);
    ``torch_weighted`` divides their sum by sum_i (1 - w_b) c_y + w_b c_yb, which for hard
    labels is ``F.cross_entropy(weight=c)``'s mean.
    """
    if target.probs is not None:
        raise BenchmarkError("this loss takes hard or pair targets, not soft label vectors")
    c = (torch.ones(logits.shape[1], device=logits.device, dtype=logits.dtype)
         if class_weight is None else class_weight.to(logits))
    if target.y_b is None:
        per, sw = fn(logits, target.y), c[target.y]
    else:
        wb = target.w_b.to(logits).reshape(-1)
        sa, sb = (1 - wb) * c[target.y], wb * c[target.y_b]
        per = sa * fn(logits, target.y) + sb * fn(logits, target.y_b)
        return per.mean() if reduction == "mean" else per.sum() / (sa + sb).sum()
    if reduction == "mean":
        return (sw * per).mean()
    return (sw * per).sum() / sw.sum()


class WeightedLossMethod(Method):
    """Base of the re-weighting methods: ``loss`` sums, over input chunks, :func:`target_loss`
    of ``per_sample_loss`` with the current ``class_weight`` (None: uniform) and
    ``reduction``. Subclasses set both in ``setup`` / ``on_epoch_start``."""

    class_weight: torch.Tensor | None = None
    reduction: str = "mean"

    def loss(self, out: Out, batch: Batch, ctx: Context) -> tuple[torch.Tensor, dict[str, float]]:
        total = out.logits.new_zeros(())
        logs: dict[str, float] = {}
        for k, (logits, target) in enumerate(zip(out.split(), batch.targets)):
            term = target_loss(self.per_sample_loss, logits, target, self.class_weight,
                               self.reduction)
            logs[f"loss{k}"] = float(term.detach())
            total = total + term
        return total, logs


def sample_beta(alpha: float, generator: torch.Generator | None) -> float:
    """lambda ~ Beta(alpha, alpha) drawn from the run's torch generator (1.0 if alpha <= 0, as
    ``mixup_data``). torch's Beta sampler takes no generator, so one 63-bit seed is drawn from
    it for a NumPy generator: the draw stays a pure function of the run's seed and epoch."""
    if alpha <= 0:
        return 1.0
    seed = int(torch.randint(0, 2 ** 63 - 1, (1,), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))
