"""Input mixup (Zhang et al., ICLR 2018) and Remix-DRW (Chou et al., ECCV-W 2020).

Both mix the raw (N, C, T, V, M) clips element-wise with a random partner permutation of the
batch and one lambda ~ Beta(alpha, alpha) per batch (``mixup-cifar10/train.py::mixup_data``),
and train on the mixed clips only. The partner and lambda come from ``ctx.generator`` (the
harness re-seeds it every epoch), so a resumed run replays the same draws.

Mixup labels the mixed clip (y, y_b) with weight 1 - lambda on y_b. Remix keeps the mixed
input but moves the whole label to the rarer partner when the counts differ by kappa or more
(``BagofTricks-LT/lib/core/combiner.py::remix``; the authors released no code):

    lambda < tau     and n_a / n_b >= kappa   ->  lambda_y = 0
    1 - lambda < tau and n_b / n_a >= kappa   ->  lambda_y = 1     (the edge counts: ``<=``)
    otherwise                                 ->  lambda_y = lambda

Decisions:
- "-DRW": from epoch ``round(drw_frac * total_epochs)`` (80 of 100, 0-based, as LDAM-DRW's
  160/200) the per-sample loss is multiplied by the cb(0.9999) weight of its label (LDAM-DRW's
  DRW beta; BagofTricks' own CB-CE DRW config uses 0.9). The fraction keeps short CPU profiles
  on the same shape.
- ``loss_form="paper"`` (default): mean_i [lambda_y,i L(z_i, y_a,i) + (1 - lambda_y,i)
  L(z_i, y_b,i)] with per-sample weights not renormalised. ``"bagoftricks"`` keeps that repo's
  quirk: its criterion is already a batch mean (torch-weighted with the DRW weights), so the
  loss is mean(lambda_y) CE(y_a) + mean(1 - lambda_y) CE(y_b).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from benchmark.losses import cb_weights, cross_entropy, torch_weighted_mean
from benchmark.method import Batch, Context, Method, Out, Target, register_method

from ._losses import WeightedLossMethod, check_choice, sample_beta, switch_epoch


def mix_pair(batch: Batch, x_b: torch.Tensor, y_b: torch.Tensor, lam: float,
             w_b: torch.Tensor, meta: dict) -> Batch:
    """The batch trained on lam * x + (1 - lam) * x_b with target (y, y_b, w_b)."""
    x_mix = lam * batch.x + (1 - lam) * x_b
    return dataclasses.replace(batch, inputs=[x_mix], targets=[Target(batch.y, y_b, w_b)],
                               meta={**batch.meta, **meta, "lam": lam})


def remix_label_weight(lam: float, n_a: torch.Tensor, n_b: torch.Tensor, kappa: float,
                       tau: float) -> torch.Tensor:
    """Per-sample Remix label weight on y_a (both rules in the official order, float64)."""
    n_a, n_b = n_a.double(), n_b.double()
    out = torch.full(n_a.shape, lam, dtype=torch.float64)
    if lam < tau:
        out[n_a / n_b >= kappa] = 0.0
    if 1 - lam < tau:
        out[n_a * kappa / n_b <= 1] = 1.0
    return out.float()


def _partner(n: int, ctx: Context) -> torch.Tensor:
    return torch.randperm(n, generator=ctx.generator)


@register_method("mixup")
class Mixup(Method):
    """Input mixup on the raw clips; CE under the paired target; plain logits at test time."""

    display_name = "Mixup"
    family = "augmentation"
    paper = "Zhang et al., ICLR 2018"
    order = 10

    @dataclass(frozen=True)
    class HParams:
        alpha: float = 1.0  # mixup-cifar10 train.py --alpha default (Beta(1, 1) = uniform)

    def mix(self, batch: Batch, x_b: torch.Tensor, y_b: torch.Tensor, lam: float,
            ctx: Context) -> Batch:
        w_b = torch.full((len(batch.y),), 1 - lam, device=batch.y.device)
        return mix_pair(batch, x_b, y_b, lam, w_b, {})

    def transform_batch(self, batch: Batch, model, ctx: Context) -> Batch:
        lam = sample_beta(self.hp.alpha, ctx.generator)
        perm = _partner(len(batch.y), ctx).to(batch.y.device)
        return self.mix(batch, batch.x[perm], batch.y[perm], lam, ctx)


@register_method("remix_drw")
class RemixDRW(WeightedLossMethod):
    """Remix labels on mixup inputs, with CB re-weighting deferred to the DRW epoch."""

    display_name = "Remix-DRW"
    family = "augmentation"
    paper = "Chou et al., ECCV-W 2020"
    order = 20

    @dataclass(frozen=True)
    class HParams:
        alpha: float = 1.0        # BagofTricks remix config cifar100_im100_remix_alpha10.yaml
        kappa: float = 3.0        # BagofTricks lib/config/default.py REMIX.KAPPA
        tau: float = 0.5          # BagofTricks lib/config/default.py REMIX.TAU
        drw_frac: float = 0.8     # epoch 80 of 100 (LDAM-DRW 160/200)
        drw_beta: float = 0.9999  # LDAM-DRW cifar_train.py DRW beta
        loss_form: str = "paper"  # Remix paper's per-sample form; "bagoftricks" = its quirk

    def setup(self, ctx: Context) -> None:
        check_choice("remix_drw", "loss_form", self.hp.loss_form, ("paper", "bagoftricks"))
        self.counts = ctx.class_counts.cpu()
        self.drw_weight = cb_weights(ctx.class_counts, self.hp.drw_beta).to(ctx.device)
        self.drw_epoch = switch_epoch(self.hp.drw_frac, ctx.total_epochs)
        self.class_weight = None

    def on_epoch_start(self, epoch: int, model, ctx: Context) -> None:
        self.class_weight = self.drw_weight if epoch >= self.drw_epoch else None

    def mix(self, batch: Batch, x_b: torch.Tensor, y_b: torch.Tensor, lam: float,
            ctx: Context) -> Batch:
        lam_y = remix_label_weight(lam, self.counts[batch.y.cpu()], self.counts[y_b.cpu()],
                                   self.hp.kappa, self.hp.tau).to(batch.y.device)
        return mix_pair(batch, x_b, y_b, lam, 1 - lam_y, {"lam_y": lam_y})

    def transform_batch(self, batch: Batch, model, ctx: Context) -> Batch:
        lam = sample_beta(self.hp.alpha, ctx.generator)
        perm = _partner(len(batch.y), ctx).to(batch.y.device)
        return self.mix(batch, batch.x[perm], batch.y[perm], lam, ctx)

    def loss(self, out: Out, batch: Batch, ctx: Context):
        if self.hp.loss_form == "paper":
            return super().loss(out, batch, ctx)
        total = out.logits.new_zeros(())
        for logits, t in zip(out.split(), batch.targets):
            total = total + self._bagoftricks(logits, t)
        return total, {"loss0": float(total.detach())}

    def _bagoftricks(self, logits: torch.Tensor, t: Target) -> torch.Tensor:
        c = (torch.ones(logits.shape[1], device=logits.device) if self.class_weight is None
             else self.class_weight)

        def batch_ce(y):  # BagofTricks CrossEntropy / ClassBalanceCE: a torch-weighted mean
            return torch_weighted_mean(cross_entropy(logits, y), c.to(logits)[y])

        if t.y_b is None:
            return batch_ce(t.y)
        w_b = t.w_b.to(logits)
        return (1 - w_b).mean() * batch_ce(t.y) + w_b.mean() * batch_ce(t.y_b)
