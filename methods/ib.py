"""Influence-Balanced loss (Park et al., ICCV 2021).

Official code ``pseulki/IB-Loss`` (``losses.py::IBLoss`` / ``IB_FocalLoss``, ``cifar_train.py``
train_rule IBReweight). Plain CE until the IB start epoch; from it, per sample

    ib_i = alpha / (||softmax(z_i) - onehot(y_i)||_1 * ||h_i||_1 + 1e-3),
    loss = mean_i ib_i * w_{y_i} * CE_i          (IB-Focal: times (1 - p_i)^gamma)

with h the pooled CTR-GCN feature (``Out.feat``, before dropout and ``fc``) and w_c
proportional to 1/n_c rescaled to sum C (``IBReweight``: a per-sample multiply, not
renormalised).

Decisions:
- Start at epoch ``round(start_frac * total_epochs)``: 50 of 100 (official 100 of 200 on CIFAR,
  50 of 100 on Tiny-ImageNet: half of training).
- alpha 1000 (the value ``cifar_train.py`` passes; the class default is 10000).
- The official script also cuts the lr to 0.01x from the start epoch on (its IB-phase schedule
  is the normal one times 0.01): ``lr_factor`` does that through the harness's
  ``Method.lr_factor`` hook, so SGD's weight decay step shrinks with it, as official.
- ib_i is not detached (official: the gradient flows through g and h); ``detach_ib=True``
  treats it as a constant weight.
- IB-Focal is ``gamma > 0``; like the official ``IB_FocalLoss``, p = exp(-w_y CE) then.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from benchmark.errors import BenchmarkError
from benchmark.losses import cross_entropy, influence_weights, power_weights
from benchmark.method import Batch, Context, Method, Out, Stage, register_method

from ._losses import check_choice, switch_epoch


def ib_loss(logits: torch.Tensor, y: torch.Tensor, feat: torch.Tensor, alpha: float,
            weight: torch.Tensor | None, gamma: float = 0.0, eps: float = 1e-3,
            detach_ib: bool = False) -> torch.Tensor:
    """The batch IB (gamma 0) or IB-Focal loss; ``feat`` is the pooled feature (N, D)."""
    ib = influence_weights(logits, y, feat.abs().sum(1), alpha, eps)
    if detach_ib:
        ib = ib.detach()
    ce = cross_entropy(logits, y)
    if weight is not None:
        ce = weight.to(logits)[y] * ce
    if gamma:
        ce = (1 - torch.exp(-ce)) ** gamma * ce
    return (ce * ib).mean()


@register_method("ib")
class InfluenceBalanced(Method):
    display_name = "IB"
    family = "re-weighting"
    paper = "Park et al., ICCV 2021"
    order = 110

    @dataclass(frozen=True)
    class HParams:
        alpha: float = 1000.0     # IB-Loss cifar_train.py IBLoss(alpha=1000)
        start_frac: float = 0.5   # IB-Loss --start_ib_epoch 100 of 200 (here 50 of 100)
        weighting: str = "inverse"  # IB-Loss --train_rule IBReweight (w ~ 1/n); or "none"
        gamma: float = 0.0        # 0: IBLoss; IB_FocalLoss in cifar_train.py uses 1
        lr_factor: float = 0.01   # IB-Loss adjust_learning_rate: lr x0.01 in the IB phase
        detach_ib: bool = False   # IB-Loss IBLoss: not detached

    def setup(self, ctx: Context) -> None:
        check_choice("ib", "weighting", self.hp.weighting, ("inverse", "none"))
        self.weight = (power_weights(ctx.class_counts, 1.0).to(ctx.device)
                       if self.hp.weighting == "inverse" else None)
        self.start = switch_epoch(self.hp.start_frac, ctx.total_epochs)
        self.active = self.start == 0

    def on_epoch_start(self, epoch: int, model, ctx: Context) -> None:
        self.active = epoch >= self.start

    def lr_factor(self, stage: Stage, epoch: int) -> float:
        return self.hp.lr_factor if epoch >= self.start else 1.0

    def loss(self, out: Out, batch: Batch, ctx: Context):
        if not self.active:
            return super().loss(out, batch, ctx)
        if out.feat is None:
            raise BenchmarkError("ib needs the pooled feature in Out.feat")
        total = out.logits.new_zeros(())
        logs: dict[str, float] = {}
        for k, (logits, feat, t) in enumerate(zip(out.split(), out.split("feat"), batch.targets)):
            if t.y_b is not None or t.probs is not None:
                raise BenchmarkError("ib takes hard labels only")
            term = ib_loss(logits, t.y, feat, self.hp.alpha, self.weight, self.hp.gamma,
                           detach_ib=self.hp.detach_ib)
            logs[f"ib{k}"] = float(term.detach())
            total = total + term
        return total, logs
