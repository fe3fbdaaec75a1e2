"""BCL: Balanced Contrastive Learning (Zhu et al., CVPR 2022).

Official code ``FlamieZhu/Balanced-Contrastive-Learning`` (``loss/contrastive.py::BalSCL``,
``loss/logitadjust.py::LogitAdjust``, ``models/resnext.py::BCLModel``, ``main.py::train``).
The classifier is a cosine layer with s = 30 built in; a projection MLP g (d -> d, BN, ReLU,
d -> feat_dim) maps the pooled feature to the contrastive space, and a second MLP of the same
shape maps the classifier weights (C x d) to C class prototypes. Three views of each clip go
through one forward: view 0 gives the logits for the logit-adjusted CE (tau 1), views 1 and 2
the contrastive features. Loss = alpha LA-CE + beta BalSCL, where BalSCL is supervised
contrastive over the 2B view features + C prototypes with class-averaged denominators: each
exp term is divided by the batch count of its class (both views + 1 prototype, the anchor
itself excluded for its own class). Test logits: the cosine classifier (prior not removed).

Decisions:
- The three views are three independent draws of the harness's train transform (skeletons
  have no RandAugment / SimAugment pair); ``Stage.views = 3``.
- feat_dim 128 = d / 2 on CTR-GCN (the repo's 1024 is for ResNeXt-50's d = 2048, the same
  ratio); alpha 1.0, beta 0.35, T 0.07 from the repo (ImageNet-LT); the optimiser and the
  100-epoch schedule are the harness's (CTR-GCN).
- The numerical-stability shift (row max) of the official loss is kept; it cancels exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import BenchmarkError
from benchmark.losses import cross_entropy, log_prior
from benchmark.method import Batch, Context, Method, Out, Stage, register_method

from .ldam import NormedLinear


def mlp(d: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d, d), nn.BatchNorm1d(d), nn.ReLU(inplace=True), nn.Linear(d, out))


class ScaledNormedLinear(NormedLinear):
    """BCL's NormedLinear: the cosine logits times s (30) inside the layer."""

    def __init__(self, in_features: int, out_features: int, s: float = 30.0):
        super().__init__(in_features, out_features)
        self.s = s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.s * super().forward(x)


class BCLModel(nn.Module):
    """Backbone with a scaled cosine ``fc``, projection ``head`` and prototype ``head_fc``."""

    def __init__(self, backbone: nn.Module, num_classes: int, feat_dim: int, s: float):
        super().__init__()
        d = backbone.feat_dim
        backbone.fc = ScaledNormedLinear(d, num_classes, s)
        self.backbone = backbone
        self.head = mlp(d, feat_dim)
        self.head_fc = mlp(d, feat_dim)

    def forward(self, x: torch.Tensor, return_feat: bool = False):
        return self.backbone(x, return_feat=return_feat)

    def prototypes(self) -> torch.Tensor:
        """normalize(head_fc(W^T)), (C, feat_dim); W is the (d, C) cosine weight."""
        return F.normalize(self.head_fc(self.backbone.fc.weight.T), dim=1)


def bal_scl(views: torch.Tensor, y: torch.Tensor, prototypes: torch.Tensor,
            temperature: float, reduce: bool = True) -> torch.Tensor:
    """BalSCL over anchors = ``views`` (2B, D: view 1 rows then view 2 rows), labels y (B,).

    Returns the mean over anchors (or the per-anchor losses with ``reduce=False``).
    """
    num_classes = len(prototypes)
    n_anchor = len(views)
    labels = torch.cat([y, y, torch.arange(num_classes, device=y.device)])
    feats = torch.cat([views, prototypes])
    logits = views @ feats.T / temperature                        # (2B, 2B + C)
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    not_self = torch.ones_like(logits)
    not_self[torch.arange(n_anchor), torch.arange(n_anchor)] = 0
    pos = (labels[:n_anchor, None] == labels[None, :]).to(logits) * not_self
    count = torch.bincount(labels, minlength=num_classes).to(logits)[labels]  # per column
    per_term = count[None, :] - pos                              # own class: anchor excluded
    denom = (torch.exp(logits) * not_self / per_term).sum(1, keepdim=True)
    log_prob = logits - torch.log(denom)
    loss = -(pos * log_prob).sum(1) / pos.sum(1)
    return loss.mean() if reduce else loss


def la_ce(logits: torch.Tensor, y: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """Logit-adjusted CE (``LogitAdjust``, tau 1): mean CE(z + tau log pi, y)."""
    return cross_entropy(logits + offset.to(logits), y).mean()


@register_method("bcl")
class BCL(Method):
    display_name = "BCL"
    family = "contrastive"
    paper = "Zhu et al., CVPR 2022"
    order = 140

    @dataclass(frozen=True)
    class HParams:
        alpha: float = 1.0         # BCL main.py --alpha 1.0
        beta: float = 0.35         # BCL main.py --beta 0.35
        temp: float = 0.07         # BCL main.py --temp 0.07
        feat_dim: int = 128        # repo 1024 for d = 2048: kept d / 2 on CTR-GCN (d = 256)
        s: float = 30.0            # BCL models NormedLinear: output x 30
        tau: float = 1.0           # BCL LogitAdjust tau 1

    def setup(self, ctx: Context) -> None:
        self.offset = log_prior(ctx.class_counts, self.hp.tau).to(ctx.device)

    def build_model(self, ctx: Context, make_backbone) -> nn.Module:
        return BCLModel(make_backbone(), ctx.num_classes, self.hp.feat_dim, self.hp.s)

    def stages(self, ctx: Context) -> list[Stage]:
        return [Stage(views=3)]

    def forward(self, model: nn.Module, batch: Batch, ctx: Context) -> Out:
        if len(batch.views) != 2:
            raise BenchmarkError(f"bcl needs 3 views per clip, got {1 + len(batch.views)}")
        n = len(batch.y)
        logits, feat = model(torch.cat([batch.x, *batch.views]), return_feat=True)  # one pass
        proj = F.normalize(model.head(feat), dim=1)
        return Out(logits[:n], feat[:n], heads={"views": proj[n:], "protos": model.prototypes()},
                   chunks=[n])

    def loss(self, out: Out, batch: Batch, ctx: Context) -> tuple[torch.Tensor, dict[str, float]]:
        ce = la_ce(out.logits, batch.y, self.offset)
        scl = bal_scl(out.heads["views"], batch.y, out.heads["protos"], self.hp.temp)
        total = self.hp.alpha * ce + self.hp.beta * scl
        return total, {"ce": float(ce.detach()), "scl": float(scl.detach())}
