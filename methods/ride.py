"""RIDE: Routing Diverse Distribution-aware Experts (Wang et al., ICLR 2021), 3 experts.

Official code ``frank-xwang/RIDE-LongTailRecognition`` (``model/loss.py::RIDELoss``,
``model/ldam_drw_resnets/ride_resnet_cifar.py``, configs ``config_imbalance_cifar100_ride.json``).
A shared trunk feeds E experts, each with its own later layers and a cosine classifier whose
output is multiplied by s = 30 inside the model; the prediction is the mean of the expert
logits. The loss sums over experts k:

    CE(e_k - s m_y onehot(y), y, weight=w)                         (LDAM, max_m 0.5)
    + lambda_div Tbar^2 KL(softmax(mean / T) || softmax(e_k / T))  (batchmean, mean w/o grad)

with w = none before the reweight epoch and cb(0.9999) after it, and T = 1 before it and the
per-class T_c = C pi_c f + 1 - f (scaled to max 1) after it, Tbar = mean_c T_c.

Decisions:
- Through the backbone contract (any backbone; below for CTR-GCN). Expert split of CTR-GCN as RIDE's CIFAR ResNet-32 split (shared stem + first stage, per
  expert the later stages): l1..l4 (the 64-channel stage, with data_bn) are shared, each expert
  owns l5..l10 and a NormedLinear x s. ``reduce_dimension`` (official for CIFAR) narrows the
  expert stages 128 -> 96 and 256 -> 192 (3/4). ``shared_layers`` moves the cut.
- Reweight epoch ``round(reweight_frac * total_epochs)`` = 80 of 100, 0-based (official
  ``epoch > 160`` with 1-based epochs of 200, and 80 of 100 on ImageNet-LT).
- Defaults from the CIFAR-100 config (NTU-LT is closest to CIFAR-100-LT in size and
  imbalance): lambda_div -0.45, reweight_factor 0.05; the reference test uses -0.2 (the
  ``RIDELoss`` default / ImageNet-LT).
- No router (EA stage) and no distillation: "RIDE (3 experts)" in Table 1; all experts at test.
- As official, when lambda_div == 0 the LDAM term uses the mean logits instead of each expert's.
- The model's pooled ``feat`` is the mean of the experts' pooled features.
- A backbone with its own head and training objective (``make_head`` / ``aux_losses``,
  InfoGCN's latent z against the class prior): each expert gets its own head (cosine ``fc``)
  and the harness adds the sum over experts of their aux terms (``RIDEModel.aux_losses``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.backbones import head_names
from benchmark.errors import BenchmarkError
from benchmark.losses import cb_weights, ldam_margins
from benchmark.method import Batch, Context, Method, Out, register_method

from ._losses import switch_epoch
from .ldam import NormedLinear

class Expert(nn.Module):
    """The backbone's blocks after the shared trunk (fresh copies), pooled, cosine x s.

    ``head``: the expert's own copy of the backbone's head (``make_head``, e.g. InfoGCN's latent
    z) with its ``fc`` made cosine; without one, the cosine ``fc`` takes the pooled features.
    """

    def __init__(self, blocks: list[nn.Module], feat_dim: int, pool, num_classes: int, s: float,
                 head: nn.Module | None = None):
        super().__init__()
        self.layers = nn.Sequential(*blocks)
        self.feat_dim = feat_dim
        if head is None:
            self.fc = NormedLinear(feat_dim, num_classes)
        else:
            head.fc = NormedLinear(head.fc.in_features, num_classes)
        self.head = head
        self.s = s
        self._pool = pool  # the backbone's pool (a bound method: not a submodule)

    def forward(self, h: torch.Tensor, n: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.layers(h)
        feat = self._pool(y.view(n, m, *y.shape[1:]))
        return self.s * (self.fc(feat) if self.head is None else self.head(feat)), feat


class RIDEModel(nn.Module):
    """Shared trunk (stem + the first ``shared`` blocks) + E experts; ``forward`` = mean logits.

    Through the backbone contract: the trunk's later blocks become identities and each expert
    owns fresh copies of them. Where the backbone can build narrower copies (``make_blocks``,
    CTR-GCN) ``reduce_dimension`` uses 3/4 width as RIDE's CIFAR config; elsewhere the experts
    are full width (``make_backbone()`` gives each its own independent initialisation).
    Where the backbone can build fresh heads (``make_head``, InfoGCN's latent head) each expert
    has its own, and ``aux_losses`` sums the experts' training objectives (see there).
    """

    def __init__(self, backbone: nn.Module, num_classes: int, experts: int, shared: int,
                 reduce_dimension: bool, s: float, make_backbone=None):
        super().__init__()
        names = backbone.block_names()
        if not 1 <= shared <= len(names) - 1:
            raise BenchmarkError(f"ride: shared_layers must be in 1..{len(names) - 1}, got {shared}")
        self.trunk = backbone
        for name in names[shared:]:  # the experts own these blocks
            setattr(backbone, name, nn.Identity())
        for name in head_names(backbone):  # the experts' heads replace the trunk's
            setattr(backbone, name, nn.Identity())
        self.shared = shared
        width = 0.75 if reduce_dimension else 1.0
        made = []
        for _ in range(experts):
            if hasattr(backbone, "make_blocks"):
                blocks, dim = backbone.make_blocks(shared, width)
            else:
                if make_backbone is None:
                    raise BenchmarkError("ride: this backbone needs make_backbone for its experts")
                fresh = make_backbone()
                blocks, dim = fresh.blocks()[shared:], fresh.feat_dim
            head = backbone.make_head(dim) if hasattr(backbone, "make_head") else None
            made.append(Expert(blocks, dim, backbone.pool, num_classes, s, head))
        self.experts = nn.ModuleList(made)
        self.feat_dim = self.experts[0].feat_dim

    def expert_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(E, N, C) expert logits (x s) and (N, D) mean pooled feature."""
        fmap = self.trunk.features(x)  # the later blocks are identities: the shared trunk's map
        n, m = fmap.shape[:2]
        h = fmap.flatten(0, 1)
        outs = [e(h, n, m) for e in self.experts]
        return torch.stack([o[0] for o in outs]), torch.stack([o[1] for o in outs]).mean(0)

    def forward(self, x: torch.Tensor, return_feat: bool = False):
        logits, feat = self.expert_outputs(x)
        return (logits.mean(0), feat) if return_feat else logits.mean(0)

    def aux_losses(self, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """The backbone contract's ``aux_losses`` of the trunk and of every expert's head, summed
        per name ({} when none defines it, e.g. CTR-GCN): the harness adds them to the loss.

        Summed, not averaged: each expert is a full model of the backbone (trunk + its blocks +
        its head), and RIDE's loss is the sum over experts of each expert's loss; a backbone's
        objective (InfoGCN: CE + lambda_2 MMD + lambda_1 |mean z|) then applies to each expert
        with its own weights relative to that expert's CE term, as in a single model. With one
        expert this is exactly the single model's terms.
        """
        total: dict[str, torch.Tensor] = {}
        for owner in (self.trunk, *(e.head for e in self.experts)):
            fn = getattr(owner, "aux_losses", None)
            for name, term in (fn(y) if callable(fn) else {}).items():
                total[name] = total[name] + term if name in total else term
        return total


def diversity_temperature(class_counts: torch.Tensor, factor: float) -> torch.Tensor:
    """T_c = C pi_c f + 1 - f, scaled so that max_c T_c = 1 (``RIDELoss.__init__``)."""
    n = class_counts.double()
    w = len(n) * n / n.sum() * factor + 1 - factor
    return (w / w.max()).float()


def ride_loss(expert_logits: torch.Tensor, y: torch.Tensor, margins: torch.Tensor, s: float,
              class_weight: torch.Tensor | None, temperature: torch.Tensor | float,
              lambda_div: float) -> torch.Tensor:
    """sum_k [LDAM-CE(e_k) + lambda_div Tbar^2 KL(softmax(mean/T) || softmax(e_k/T))]."""
    mean = expert_logits.mean(0)
    t = temperature if isinstance(temperature, float) else temperature.to(mean).view(1, -1)
    t_bar = t if isinstance(t, float) else float(t.mean())
    with torch.no_grad():
        target = F.softmax(mean / t, dim=1)
    onehot = F.one_hot(y, mean.shape[1]).to(mean)
    w = None if class_weight is None else class_weight.to(mean)
    total = mean.new_zeros(())
    for e in expert_logits:
        base_in = e if lambda_div != 0 else mean
        total = total + F.cross_entropy(base_in - s * margins.to(mean)[y].unsqueeze(1) * onehot,
                                        y, weight=w)
        kl = F.kl_div(F.log_softmax(e / t, dim=1), target, reduction="batchmean")
        total = total + lambda_div * t_bar * t_bar * kl
    return total


@register_method("ride")
class RIDE(Method):
    display_name = "RIDE"
    family = "ensemble"
    paper = "Wang et al., ICLR 2021"
    order = 150

    @dataclass(frozen=True)
    class HParams:
        num_experts: int = 3           # Table 1 "RIDE (3 experts)"; config num_experts 3
        shared_layers: int = 4         # share l1..l4 (RIDE CIFAR: stem + layer1)
        reduce_dimension: bool = True  # RIDE CIFAR config reduce_dimension true (3/4 width)
        s: float = 30.0                # ride_resnet_cifar.py: NormedLinear output x 30
        max_m: float = 0.5             # RIDELoss max_m 0.5
        lambda_div: float = -0.45      # config_imbalance_cifar100_ride.json additional_diversity_factor
        reweight_factor: float = 0.05  # RIDELoss reweight_factor 0.05 (CIFAR)
        reweight_beta: float = 0.9999  # RIDELoss _hook_before_epoch betas [0, 0.9999]
        reweight_frac: float = 0.8     # 80 of 100 (official 160/200, 80/100)

    def setup(self, ctx: Context) -> None:
        self.margins = ldam_margins(ctx.class_counts, self.hp.max_m).to(ctx.device)
        self.cb = cb_weights(ctx.class_counts, self.hp.reweight_beta).to(ctx.device)
        self.t_div = diversity_temperature(ctx.class_counts, self.hp.reweight_factor).to(ctx.device)
        self.reweight_epoch = switch_epoch(self.hp.reweight_frac, ctx.total_epochs)
        self.reweighted = False

    def build_model(self, ctx: Context, make_backbone) -> nn.Module:
        return RIDEModel(make_backbone(), ctx.num_classes, self.hp.num_experts,
                         self.hp.shared_layers, self.hp.reduce_dimension, self.hp.s, make_backbone)

    def on_epoch_start(self, epoch: int, model, ctx: Context) -> None:
        self.reweighted = epoch >= self.reweight_epoch

    def forward(self, model: nn.Module, batch: Batch, ctx: Context) -> Out:
        x = batch.inputs[0] if len(batch.inputs) == 1 else torch.cat(batch.inputs)
        experts, feat = model.expert_outputs(x)
        return Out(experts.mean(0), feat, heads={"expert_logits": experts},
                   chunks=[len(i) for i in batch.inputs])

    def loss(self, out: Out, batch: Batch, ctx: Context) -> tuple[torch.Tensor, dict[str, float]]:
        experts = out.heads["expert_logits"]
        total = out.logits.new_zeros(())
        start = 0
        for k, (size, t) in enumerate(zip(out.chunks or [len(out.logits)], batch.targets)):
            if t.y_b is not None or t.probs is not None:
                raise BenchmarkError("ride: takes hard labels only")
            total = total + ride_loss(
                experts[:, start:start + size], t.y, self.margins, self.hp.s,
                self.cb if self.reweighted else None,
                self.t_div if self.reweighted else 1.0, self.hp.lambda_div)
            start += size
        return total, {"loss0": float(total.detach())}

    def predict(self, model: nn.Module, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        return model(x)
