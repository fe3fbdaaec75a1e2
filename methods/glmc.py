"""GLMC: Global and Local Mixture Consistency cumulative learning (Du et al., CVPR 2023).

Official code ``ynu-yangpeng/GLMC`` (``GLMC-2023/Trainer.py::Trainer.train``,
``utils/util.py::GLMC_mixed`` / ``rand_bbox``, ``main.py`` samplers,
``model/ResNet_cifar.py::ResNet_modify`` heads). On the pooled feature h the model adds a
re-balancing classifier ``fc_cb``, a projection (d -> 128) and a predictor (128 -> 128).
Each step pairs the instance batch (two views A, B) with a batch of the weighted loader
(sampling weight n_y^-q) and one lambda ~ Beta(1, 1):

    x_g = lambda A_org + (1 - lambda) A_inv           (global mixup)
    x_l = B_org with a (1 - lambda)-share region from B_inv  (local CutMix)
    loss = alpha(e) L_bal + (1 - alpha(e)) L_reb + contrast_weight L_con,  alpha = 1 - (e/E)^2

L_bal is soft CE of ``fc`` on both mixes under t = lambda onehot(y) + (1 - lambda) onehot(y_inv),
L_reb the same for ``fc_cb`` under the class-weighted t_w (w_c proportional to n_c^-qL, sum C,
not renormalised), L_con SimSiam -cos(p_g, sg z_l) - cos(p_l, sg z_g). Test logits: ``fc_cb``.

Decisions:
- Skeleton CutMix region = a frame window x a joint set, the ST-Mix-like region. The window
  follows ``rand_bbox`` on the time axis with cut ratio sqrt(1 - lambda) (c = ceil(T r), centre
  uniform, span centre +- floor(c / 2), clipped); the joints are a uniformly random subset of
  ceil(V sqrt(1 - lambda)) joints; the region is the same for both persons. As official, the
  label keeps lambda, not the pasted share.
- Defaults are the CIFAR-100-LT IF100 ones (closest to NTU-LT in size and imbalance):
  resample_weighting 0, label_weighting 1.2, contrast_weight 4; the optimiser and the 100-epoch
  schedule are the harness's (CTR-GCN).
- lambda ~ Beta(1, 1) always: the official CLI ``--beta`` is never used (official quirk kept,
  ``mix_alpha`` makes the Beta parameter explicit).
- The weighted loader is the sampler ``power_weighted`` registered here (with replacement,
  length N, probability proportional to n_y^-q; q = 0 is uniform, the CIFAR default).
- The two mixes run as two forwards (BN statistics per mix, as official).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.data.samplers import SAMPLERS, IndexSampler
from benchmark.errors import BenchmarkError
from benchmark.losses import power_weights
from benchmark.method import Batch, Context, Method, Out, Stage, Target, register_method

from ._losses import sample_beta


@SAMPLERS.register("power_weighted")
class PowerWeightedSampler(IndexSampler):
    """len(labels) draws with replacement, P(sample i) proportional to n_{y_i}^-power
    (GLMC ``main.py``: ``WeightedRandomSampler`` with weights from ``resample_weighting``)."""

    def __init__(self, labels, seed: int = 0, rank: int = 0, world_size: int = 1,
                 power: float = 0.0):
        super().__init__(labels, seed, rank, world_size)
        counts = np.bincount(self.labels)
        w = counts[self.labels].astype(np.float64) ** -float(power)
        self.p = w / w.sum()

    def global_length(self) -> int:
        return len(self.labels)

    def global_order(self, epoch: int) -> np.ndarray:
        rng = self.epoch_rng(epoch)
        return rng.choice(len(self.labels), size=len(self.labels), replace=True,
                          p=self.p).astype(np.int64)


class GLMCModel(nn.Module):
    """Backbone + ``fc_cb`` + projection + predictor; ``forward`` is the backbone's (``fc``)."""

    def __init__(self, backbone: nn.Module, num_classes: int, proj_dim: int = 128):
        super().__init__()
        d = backbone.feat_dim
        self.backbone = backbone
        self.fc_cb = nn.Linear(d, num_classes)
        self.projector = nn.Linear(d, proj_dim)
        self.predictor = nn.Linear(proj_dim, proj_dim)

    def forward(self, x: torch.Tensor, return_feat: bool = False):
        return self.backbone(x, return_feat=return_feat)

    def all_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(fc logits, fc_cb logits, z, p, pooled feature)."""
        feat = self.backbone.pool(self.backbone.features(x))
        z = self.projector(feat)
        return self.backbone.head(feat), self.fc_cb(feat), z, self.predictor(z), feat


def glmc_alpha(epoch: int, total_epochs: int) -> float:
    """Cumulative weight on the balanced branch, 1 - (e / E)^2 (0-based epoch)."""
    return 1.0 - (epoch / total_epochs) ** 2


def time_window(t: int, lam: float, gen: torch.Generator | None) -> tuple[int, int]:
    """``rand_bbox`` on one axis: c = ceil(t sqrt(1 - lam)), centre +- c // 2, clipped."""
    c = math.ceil(t * math.sqrt(1.0 - lam))
    centre = int(torch.randint(0, t, (1,), generator=gen))
    return max(centre - c // 2, 0), min(centre + c // 2, t)


def joint_set(v: int, lam: float, gen: torch.Generator | None) -> torch.Tensor:
    k = min(v, math.ceil(v * math.sqrt(1.0 - lam)))
    return torch.randperm(v, generator=gen)[:k]


def local_mix(x: torch.Tensor, x_inv: torch.Tensor, frames: tuple[int, int],
              joints: torch.Tensor) -> torch.Tensor:
    """x with the (frames x joints) region of every person taken from x_inv, (N, C, T, V, M)."""
    out = x.clone()
    t0, t1 = frames
    j = joints.to(x.device)
    out[:, :, t0:t1, j] = x_inv[:, :, t0:t1, j]
    return out


def simsiam(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """-mean_i cos(p_i, sg(z_i)) (GLMC ``SimSiamLoss``)."""
    return -F.cosine_similarity(p, z.detach(), dim=1).mean()


def glmc_soft_ce(logits: torch.Tensor, t: Target, class_weight: torch.Tensor | None = None
                 ) -> torch.Tensor:
    """Batch mean of -sum_c t_c log softmax(z)_c with t = lam onehot(y) + (1-lam) onehot(y_b),
    each one-hot scaled by its class weight when given (t_w, not renormalised)."""
    probs = t.as_probs(logits.shape[1]).to(logits)
    if class_weight is not None:
        probs = probs * class_weight.to(logits)
    return -(probs * F.log_softmax(logits, dim=1)).sum(1).mean()


@register_method("glmc")
class GLMC(Method):
    display_name = "GLMC"
    family = "augmentation"
    paper = "Du et al., CVPR 2023"
    order = 40

    @dataclass(frozen=True)
    class HParams:
        resample_weighting: float = 0.0  # GLMC CIFAR-100-LT IF100 --resample_weighting 0.0
        label_weighting: float = 1.2     # GLMC CIFAR-100-LT IF100 --label_weighting 1.2
        contrast_weight: float = 4.0     # GLMC CIFAR-100-LT IF100 --contrast_weight 4
        mix_alpha: float = 1.0           # GLMC util.py GLMC_mixed(alpha=1); CLI --beta unused
        proj_dim: int = 128              # GLMC ResNet_cifar.py projector/predictor width

    def setup(self, ctx: Context) -> None:
        self.label_weight = power_weights(ctx.class_counts, self.hp.label_weighting).to(ctx.device)
        self.total_epochs = ctx.total_epochs
        self.alpha = 1.0

    def build_model(self, ctx: Context, make_backbone) -> nn.Module:
        return GLMCModel(make_backbone(), ctx.num_classes, self.hp.proj_dim)

    def stages(self, ctx: Context) -> list[Stage]:
        return [Stage(views=2, aux_sampler="power_weighted",
                      aux_sampler_kwargs={"power": self.hp.resample_weighting})]

    def on_epoch_start(self, epoch: int, model, ctx: Context) -> None:
        self.alpha = glmc_alpha(epoch, ctx.total_epochs)

    def transform_batch(self, batch: Batch, model, ctx: Context) -> Batch:
        if batch.aux is None:
            raise BenchmarkError("glmc needs the weighted aux batch (Stage.aux_sampler)")
        n = len(batch.y)
        if len(batch.aux.y) < n:
            raise BenchmarkError(f"glmc: aux batch of {len(batch.aux.y)} < batch of {n}")
        org_a = batch.x
        org_b = batch.views[0] if batch.views else batch.x
        inv_a = batch.aux.x[:n]
        inv_b = (batch.aux.views[0] if batch.aux.views else batch.aux.x)[:n]
        y_inv = batch.aux.y[:n]
        lam = sample_beta(self.hp.mix_alpha, ctx.generator)
        frames = time_window(org_b.shape[2], lam, ctx.generator)
        joints = joint_set(org_b.shape[3], lam, ctx.generator)
        x_g = lam * org_a + (1 - lam) * inv_a
        x_l = local_mix(org_b, inv_b, frames, joints)
        w_b = torch.full((n,), 1 - lam, device=batch.y.device)
        t = Target(batch.y, y_inv, w_b)
        return dataclasses.replace(batch, inputs=[x_g, x_l], targets=[t, t],
                                   meta={**batch.meta, "lam": lam, "frames": frames,
                                         "joints": joints})

    def forward(self, model: nn.Module, batch: Batch, ctx: Context) -> Out:
        outs = [model.all_heads(x) for x in batch.inputs]  # one pass per mix
        cat = [torch.cat(parts) for parts in zip(*outs)]
        return Out(cat[0], cat[4], heads={"cls_cb": cat[1], "z": cat[2], "p": cat[3]},
                   chunks=[len(x) for x in batch.inputs])

    def loss(self, out: Out, batch: Batch, ctx: Context) -> tuple[torch.Tensor, dict[str, float]]:
        bal = sum(glmc_soft_ce(z, t) for z, t in zip(out.split(), batch.targets))
        reb = sum(glmc_soft_ce(z, t, self.label_weight)
                  for z, t in zip(out.split("cls_cb"), batch.targets))
        z_g, z_l = out.split("z")
        p_g, p_l = out.split("p")
        con = simsiam(p_g, z_l) + simsiam(p_l, z_g)
        a = self.alpha
        total = a * bal + (1 - a) * reb + self.hp.contrast_weight * con
        return total, {"bal": float(bal.detach()), "reb": float(reb.detach()),
                       "con": float(con.detach()), "alpha": a}

    def predict(self, model: nn.Module, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        return model.all_heads(x)[1]
