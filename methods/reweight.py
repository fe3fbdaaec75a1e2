"""Loss re-weighting baselines: softmax focal loss (Lin et al., ICCV 2017) and the
class-balanced loss (Cui et al., CVPR 2019).

Both default to the variants of the LDAM-DRW code (``kaidic/LDAM-DRW``: ``losses.py::FocalLoss``
and ``cifar_train.py --train_rule Reweight``), the usual source of LT baseline tables; BRL's
skeleton variants (``firework8/BRL`` ``TwostageFocalLoss`` / ``TwostageCBLoss``: plain CE
until epoch 19 of 24, then the re-weighted loss) are one ``start_frac`` away. Which variant
Shap-Mix ran is not known (its paper does not say); every choice is a named option:

Focal
- gamma 1 (LDAM-DRW's script; BRL uses 2 and Detectron 2).
- no class weights by default (``cb_beta=0``); with ``cb_beta > 0`` the official quirk puts the
  weight inside p (p = p_y^{w_y}); ``weight_in_p=False`` multiplies it outside instead.
- ``start_frac``: plain CE before ``round(start_frac * total_epochs)`` (BRL: 0.8, gamma 2).
- reduction: the batch mean of the focal terms (``focal_loss(...).mean()``).

CB
- ``loss_type``: ``softmax`` (default, weighted softmax CE), ``sigmoid`` / ``focal`` (the TF
  code's one-vs-all losses; bias initialised to -log(C - 1)), ``softmax_bce`` (the
  weight-balancing repo's BCE on softmax probabilities).
- beta 0.9999 from the first epoch (LDAM-DRW ``Reweight``, the "aggressive" variant that fits
  CB < CE in Shap-Mix Table 1); BRL: beta 0.999 with ``start_frac=0.8``.
- ``reduction`` of the softmax type: ``torch_weighted`` (default: ``F.cross_entropy(weight=)``
  divides by sum w_y, as LDAM-DRW and BRL) or ``mean`` (TF ``softmax_cross_entropy``: divide by
  B). The sigmoid types always divide by B, as the TF code.
- Not reproduced: the TF code excludes the sigmoid bias from weight decay; the harness decays
  every parameter.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from benchmark.losses import (cb_weights, cross_entropy, focal_loss, sigmoid_cb_loss,
                              softmax_bce_cb_loss)
from benchmark.method import Context, register_method

from ._losses import WeightedLossMethod, check_choice, switch_epoch

CB_TYPES = ("softmax", "sigmoid", "focal", "softmax_bce")


@register_method("focal")
class Focal(WeightedLossMethod):
    display_name = "Focal"
    family = "re-weighting"
    paper = "Lin et al., ICCV 2017"
    order = 70

    @dataclass(frozen=True)
    class HParams:
        gamma: float = 1.0        # LDAM-DRW cifar_train.py: FocalLoss(gamma=1)
        cb_beta: float = 0.0      # LDAM-DRW --train_rule None (no class weights)
        weight_in_p: bool = True  # LDAM-DRW FocalLoss: weight enters ce before p = exp(-ce)
        start_frac: float = 0.0   # focal from the start; BRL TwostageFocalLoss: 0.8

    def setup(self, ctx: Context) -> None:
        self.weight = (cb_weights(ctx.class_counts, self.hp.cb_beta).to(ctx.device)
                       if self.hp.cb_beta > 0 else None)
        self.start = switch_epoch(self.hp.start_frac, ctx.total_epochs)
        self.active = self.start == 0

    def on_epoch_start(self, epoch: int, model, ctx: Context) -> None:
        self.active = epoch >= self.start

    def per_sample_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return cross_entropy(logits, y)
        return focal_loss(logits, y, self.hp.gamma, self.weight, self.hp.weight_in_p)


@register_method("cb")
class ClassBalanced(WeightedLossMethod):
    display_name = "CB"
    family = "re-weighting"
    paper = "Cui et al., CVPR 2019"
    order = 80

    @dataclass(frozen=True)
    class HParams:
        beta: float = 0.9999              # LDAM-DRW Reweight / class-balanced-loss cifar script
        loss_type: str = "softmax"        # LDAM-DRW Reweight (weighted softmax CE)
        gamma: float = 1.0                # class-balanced-loss script focal gamma (focal type)
        reduction: str = "torch_weighted"  # F.cross_entropy(weight=), as LDAM-DRW and BRL
        start_frac: float = 0.0           # weights from the start; BRL TwostageCBLoss: 0.8

    def setup(self, ctx: Context) -> None:
        check_choice("cb", "loss_type", self.hp.loss_type, CB_TYPES)
        check_choice("cb", "reduction", self.hp.reduction, ("mean", "torch_weighted"))
        self.cb = cb_weights(ctx.class_counts, self.hp.beta).to(ctx.device)
        self.ones = torch.ones_like(self.cb)
        self.start = switch_epoch(self.hp.start_frac, ctx.total_epochs)
        self.weight = self.cb if self.start == 0 else self.ones
        # the softmax type weights through target_loss; the others carry w_y inside
        self.reduction = self.hp.reduction if self.hp.loss_type == "softmax" else "mean"

    def build_model(self, ctx: Context, make_backbone) -> nn.Module:
        model = make_backbone()
        if self.hp.loss_type in ("sigmoid", "focal") and ctx.num_classes > 1:
            # TF model_base._fully_connected: prior pi = 1/C, bias = -log((1 - pi) / pi)
            nn.init.constant_(model.fc.bias, -math.log(ctx.num_classes - 1))
        return model

    def on_epoch_start(self, epoch: int, model, ctx: Context) -> None:
        self.weight = self.cb if epoch >= self.start else self.ones

    @property
    def class_weight(self) -> torch.Tensor | None:  # used by target_loss (softmax type only)
        return self.weight if self.hp.loss_type == "softmax" else None

    def per_sample_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        t = self.hp.loss_type
        if t == "softmax":
            return cross_entropy(logits, y)
        if t == "softmax_bce":
            return softmax_bce_cb_loss(logits, y, self.weight)
        return sigmoid_cb_loss(logits, y, self.weight, self.hp.gamma if t == "focal" else 0.0)
