"""LDAM-DRW (Cao et al., NeurIPS 2019): label-distribution-aware margins on a cosine
classifier, with class-balanced re-weighting deferred to late training.

Official code ``kaidic/LDAM-DRW`` (``losses.py::LDAMLoss``, ``cifar_train.py`` train_rule DRW,
``models/resnet_cifar.py::NormedLinear``). The loss is CE(s (z - m_y onehot(y)), y, weight=w)
with margins m_c proportional to n_c^-1/4 (max 0.5), s = 30, and the torch-weighted mean.

Decisions:
- The CTR-GCN ``fc`` is replaced by :class:`NormedLinear` (cosine logits, no bias, no scale);
  test-time prediction is the argmax of those cosines. ``normed_head=False`` keeps the plain
  Linear head, as BRL's skeleton LDAM baseline does.
- DRW: uniform weights before epoch ``round(drw_frac * total_epochs)`` (80 of 100, 0-based:
  the official switch is 0-based epoch 160 of 200 and BRL's is 19 of 24, both ~0.8), cb(0.9999)
  after it (BRL: ``drw_beta=0.999999``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.losses import cb_weights, cross_entropy, ldam_logits, ldam_margins
from benchmark.method import Context, register_method

from ._losses import WeightedLossMethod, switch_epoch


class NormedLinear(nn.Module):
    """Cosine classifier: normalize(x) @ normalize(W) with W (in, out) normalised per class.

    Initialised like the official layer: uniform(-1, 1), then each class column rescaled to
    unit norm (``renorm_(2, 1, 1e-5).mul_(1e5)``).
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        w = torch.empty(in_features, out_features).uniform_(-1, 1)
        self.weight = nn.Parameter(w / w.norm(dim=0, keepdim=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) @ F.normalize(self.weight, dim=0)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


@register_method("ldam_drw")
class LDAMDRW(WeightedLossMethod):
    display_name = "LDAM-DRW"
    family = "margin"
    paper = "Cao et al., NeurIPS 2019"
    order = 90

    @dataclass(frozen=True)
    class HParams:
        max_m: float = 0.5        # LDAM-DRW cifar_train.py LDAMLoss(max_m=0.5)
        s: float = 30.0           # LDAM-DRW cifar_train.py LDAMLoss(s=30)
        drw_frac: float = 0.8     # epoch 80 of 100 (official 160/200, BRL 19/24)
        drw_beta: float = 0.9999  # LDAM-DRW cifar_train.py DRW betas [0, 0.9999]
        normed_head: bool = True  # LDAM-DRW resnet32(use_norm=True); BRL: plain Linear

    reduction = "torch_weighted"

    def setup(self, ctx: Context) -> None:
        self.margins = ldam_margins(ctx.class_counts, self.hp.max_m).to(ctx.device)
        self.drw_weight = cb_weights(ctx.class_counts, self.hp.drw_beta).to(ctx.device)
        self.drw_epoch = switch_epoch(self.hp.drw_frac, ctx.total_epochs)
        self.class_weight = None

    def build_model(self, ctx: Context, make_backbone) -> nn.Module:
        model = make_backbone()
        if self.hp.normed_head:
            model.fc = NormedLinear(model.fc.in_features, ctx.num_classes)
        return model

    def on_epoch_start(self, epoch: int, model, ctx: Context) -> None:
        self.class_weight = self.drw_weight if epoch >= self.drw_epoch else None

    def per_sample_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return cross_entropy(ldam_logits(logits, y, self.margins, self.hp.s), y)
