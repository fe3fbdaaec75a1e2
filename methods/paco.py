"""PaCo: Parametric Contrastive Learning (Cui et al., ICCV 2021).

Official code ``dvlab-research/Parametric-Contrastive-Learning`` (``PaCo/LT/losses.py::PaCoLoss``,
``PaCo/LT/moco/builder.py::MoCo``, ``PaCo/LT/paco_cifar.py``, ``PaCo/LT/sh/*.sh``).
A query encoder (backbone + linear classifier + MLP projection, Linear-BN-ReLU-Linear, then
L2-normalised) and a momentum key encoder (m = 0.999). A queue holds K keys and their labels.
For each query anchor i the row is [ (z_i + log(pi + 1e-9)) / supt  (C class-centre logits) ;
q_i . F_j / T  (F = [q; k; queue]) ]; positives: beta on its own class centre and alpha on
every same-label contrast entry except itself; the denominator takes all C class entries and
gamma x every contrast entry except itself. loss_i = -(T / base_T) mean_pos log_prob (weighted
by the positive weights); loss = mean over anchors. Test logits: the query linear classifier
(prior not removed).

Decisions:
- Two views = two independent draws of the harness's train transform (``Stage.views = 2``;
  no RandAugment for skeletons). View 0 is the query (and the classifier input), view 1 the key.
- Defaults from the CIFAR-100 IF100 script (NTU-LT is closest to CIFAR-100-LT): alpha 0.01,
  T 0.05, K 1024; moco_dim 128 = d / 2 on CTR-GCN (CIFAR: 32 for d = 64); beta = gamma = 1,
  supt 1, base_T = T; optimiser and the 100-epoch schedule are the harness's.
- The momentum update and the enqueue happen in ``after_step``, which is the official order
  (the key encoder is updated from the latest query weights before the next keys are made).
  The key encoder and the queue are model submodules / buffers, so they are checkpointed with
  the model and excluded from the optimiser (``Stage.trainable``).
- The official momentum copy of the linear classifier never enters the loss; it is not kept.
- The queue is circular with wrap-around, so K need not be a multiple of the batch (the
  official assert comes from DDP gathering). Initialised as official: random normalised
  vectors with random labels.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import BenchmarkError
from benchmark.method import Batch, Context, Method, Out, Stage, register_method


def projection(d: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d, d), nn.BatchNorm1d(d), nn.ReLU(inplace=True), nn.Linear(d, out))


class PaCoModel(nn.Module):
    """Query backbone (+ its ``fc``) and projection; momentum ``key`` copy; label queue."""

    def __init__(self, backbone: nn.Module, num_classes: int, dim: int, queue_size: int,
                 gen: torch.Generator | None = None):
        super().__init__()
        self.backbone = backbone
        self.proj = projection(backbone.feat_dim, dim)
        self.key = nn.ModuleDict({"backbone": copy.deepcopy(backbone),
                                  "proj": copy.deepcopy(self.proj)})
        for p in self.key.parameters():
            p.requires_grad_(False)
        queue = F.normalize(torch.randn(queue_size, dim, generator=gen), dim=1)
        self.register_buffer("queue", queue)
        self.register_buffer("queue_labels", torch.randint(0, num_classes, (queue_size,),
                                                           generator=gen))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor, return_feat: bool = False):
        return self.backbone(x, return_feat=return_feat)

    def query(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(linear logits, pooled feature, normalised projection q)."""
        logits, feat = self.backbone(x, return_feat=True)
        return logits, feat, F.normalize(self.proj(feat), dim=1)

    @torch.no_grad()
    def keys(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.key["backbone"].pool(self.key["backbone"].features(x))
        return F.normalize(self.key["proj"](feat), dim=1)

    @torch.no_grad()
    def momentum_update(self, m: float) -> None:
        for src, dst in ((self.backbone, self.key["backbone"]), (self.proj, self.key["proj"])):
            for q, k in zip(src.parameters(), dst.parameters()):
                k.mul_(m).add_(q.detach(), alpha=1 - m)

    @torch.no_grad()
    def enqueue(self, k: torch.Tensor, y: torch.Tensor) -> None:
        size = len(self.queue)
        k, y = k[-size:], y[-size:]
        idx = (int(self.queue_ptr) + torch.arange(len(k), device=k.device)) % size
        self.queue[idx] = k.to(self.queue)
        self.queue_labels[idx] = y
        self.queue_ptr.fill_((int(self.queue_ptr) + len(k)) % size)


def paco_loss(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, queue_labels: torch.Tensor,
              y: torch.Tensor, sup_logits: torch.Tensor, prior: torch.Tensor, temperature: float,
              alpha: float, beta: float, gamma: float, supt: float = 1.0,
              base_temperature: float | None = None, reduce: bool = True) -> torch.Tensor:
    """PaCoLoss over anchors q (B, D) with contrast set [q; k; queue] (``MoCo._train`` layout)."""
    b, num_classes = len(q), sup_logits.shape[1]
    feats = torch.cat([q, k, queue])
    labels = torch.cat([y, y, queue_labels])
    contrast = q @ feats.T / temperature
    cls = (sup_logits + torch.log(prior.to(sup_logits) + 1e-9)) / supt
    logits = torch.cat([cls, contrast], dim=1)
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    not_self = torch.ones_like(contrast)
    not_self[torch.arange(b), torch.arange(b)] = 0
    same = (y[:, None] == labels[None, :]).to(logits) * not_self
    pos = torch.cat([beta * F.one_hot(y, num_classes).to(logits), alpha * same], dim=1)
    keep = torch.cat([torch.ones_like(cls), gamma * not_self], dim=1)
    log_prob = logits - torch.log((torch.exp(logits) * keep).sum(1, keepdim=True) + 1e-12)
    base = temperature if base_temperature is None else base_temperature
    loss = -(temperature / base) * (pos * log_prob).sum(1) / pos.sum(1)
    return loss.mean() if reduce else loss


@register_method("paco")
class PaCo(Method):
    display_name = "PaCo"
    family = "contrastive"
    paper = "Cui et al., ICCV 2021"
    order = 130

    @dataclass(frozen=True)
    class HParams:
        alpha: float = 0.01        # PaCo sh/CIFAR100_train_imb0.01.sh --alpha 0.01
        beta: float = 1.0          # PaCo paco_cifar.py --beta 1.0
        gamma: float = 1.0         # PaCo paco_cifar.py --gamma 1.0
        temperature: float = 0.05  # PaCo sh/CIFAR100_train_imb0.01.sh --moco-t 0.05
        queue_size: int = 1024     # PaCo sh/CIFAR100_train_imb0.01.sh --moco-k 1024
        moco_dim: int = 128        # CIFAR 32 for feat_dim 64: kept d / 2 on CTR-GCN (d = 256)
        momentum: float = 0.999    # PaCo paco_cifar.py --moco-m 0.999
        supt: float = 1.0          # PaCoLoss supt 1.0

    def setup(self, ctx: Context) -> None:
        n = ctx.class_counts.double()
        self.prior = (n / n.sum()).float().to(ctx.device)

    def build_model(self, ctx: Context, make_backbone) -> nn.Module:
        return PaCoModel(make_backbone(), ctx.num_classes, self.hp.moco_dim, self.hp.queue_size,
                         ctx.generator)

    def stages(self, ctx: Context) -> list[Stage]:
        return [Stage(views=2, trainable=lambda name: not name.startswith("key."))]

    def forward(self, model: nn.Module, batch: Batch, ctx: Context) -> Out:
        if len(batch.views) != 1:
            raise BenchmarkError(f"paco needs 2 views per clip, got {1 + len(batch.views)}")
        logits, feat, q = model.query(batch.x)
        k = model.keys(batch.views[0])
        # the queue as it was before this step's keys are enqueued (after_step)
        return Out(logits, feat, heads={"q": q, "k": k, "queue": model.queue.clone(),
                                        "queue_labels": model.queue_labels.clone()},
                   chunks=[len(batch.y)])

    def loss(self, out: Out, batch: Batch, ctx: Context) -> tuple[torch.Tensor, dict[str, float]]:
        h = out.heads
        loss = paco_loss(h["q"], h["k"], h["queue"], h["queue_labels"], batch.y, out.logits,
                         self.prior, self.hp.temperature, self.hp.alpha, self.hp.beta,
                         self.hp.gamma, self.hp.supt)
        return loss, {"paco": float(loss.detach())}

    def after_step(self, model: nn.Module, batch: Batch, out: Out, ctx: Context) -> None:
        model.momentum_update(self.hp.momentum)
        model.enqueue(out.heads["k"], batch.y)

    def predict(self, model: nn.Module, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        return model(x)
