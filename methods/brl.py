"""BRL: Balanced Representation Learning for long-tailed skeleton action recognition
(Liu et al., 2023), the STAE rebalanced partial mix + the DAA re-weighting schedule.

Official code ``firework8/BRL`` (PYSKL): ``mixup_recognizergcn.py::rebalance_mix_up``,
``heads/mixhead.py::MixBaseHead.loss``, ``losses/losses.py::TwostageAALoss`` and
``get_weight_list``; the hyper-parameters are fixed in ``apis/own.py::OwnRunner.get_split``.

Per step, ``int(mix_ratio * B)`` clips of the batch (1 in 16) are replaced by a partial mix
with a random *other* clip of the batch: in every frame the clip keeps its upper-body joints
(16 of 25 on NTU) and takes its partner's lower-body joints (9). The pair is labelled
(y, y_partner) with weight a on y: 0 if n_y > im_k n_partner, 1 if n_partner > im_k n_y,
otherwise ``label_alpha`` = 0.64 = 16/25. The loss is a L(z, y_a) + (1 - a) L(z, y_b), with L
the torch-weighted-mean CE under the DAA weights: uniform, then from the switch epoch the
class-balanced weights with a per-class beta_c = 0.99 + 0.0099 (n_c - n_min)/(n_max - n_min).

Decisions:
- DAA switch at ``round(aa_frac * total_epochs)`` (80 of 100): the official switch is 0-based
  epoch 19 of 24 "epochs" of 5 passes each, i.e. ~0.8 of training.
- Per-sample label weights (default). Each of the two terms keeps the official normalisation,
  sum_i a_i c_{y_a,i} l_i / sum_i c_{y_a,i} (and likewise for y_b with 1 - a_i), so a batch
  with one label weight reproduces the official loss exactly. ``scalar_label_weight=True``
  keeps the official quirk: the weight of the *last* mixed pair is used for the whole batch.
- ``alternate_weights=True`` keeps the official in-place beta flip: after the switch, every
  second epoch uses beta_c / (1 - (1 - beta_c)^n_c) instead, which is nearly uniform.
- Joints are written back to their own slots (default); ``permute_joints=True`` keeps the
  official concatenation (x's upper joints then the partner's lower joints in slots 0..24).
  The official in-place writes and aliasing have no behavioural counterpart here; its
  Pareto-formula class counts are replaced by the data's counts (equal for the BRL lists).
- Upper/lower split: NTU as the official code (lower = spine base + both legs, {0, 12..19});
  NW-UCLA by the same anatomy; COCO-17 lower = hips, knees, ankles (our choice).
- Temporal reverse perception (time flip, p 0.5) is not used by any shipped config:
  ``temporal_flip=0`` by default; > 0 reverses each clip of the batch with that probability.
  Skip-modal inputs are a stream choice (``k``/``km``), not part of this method.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from benchmark.errors import BenchmarkError
from benchmark.losses import cross_entropy
from benchmark.method import Batch, Context, Method, Out, Target, register_method

from ._losses import switch_epoch

# 0-based lower-body joints per layout; the upper body is the complement
LOWER_BODY = {
    "ntu25": (0, 12, 13, 14, 15, 16, 17, 18, 19),   # BRL rebalance_mix_up
    "ucla20": (0, 12, 13, 14, 15, 16, 17, 18, 19),  # same anatomy (hip centre + legs)
    "coco17": (11, 12, 13, 14, 15, 16),             # hips, knees, ankles (our choice)
}


def body_split(layout_name: str, num_joints: int) -> tuple[list[int], list[int]]:
    """(upper, lower) joint lists, each ascending."""
    if layout_name not in LOWER_BODY:
        raise BenchmarkError(f"brl: no upper/lower body split for layout {layout_name!r}")
    lower = sorted(LOWER_BODY[layout_name])
    upper = [j for j in range(num_joints) if j not in lower]
    return upper, lower


def daa_betas(class_counts: torch.Tensor) -> torch.Tensor:
    """beta_c = 0.99 + 0.0099 (n_c - n_min) / (n_max - n_min) (``get_weight_list``), float64."""
    n = class_counts.double()
    span = (n.max() - n.min()).clamp_min(1e-12)
    return 0.99 + 0.0099 * (n - n.min()) / span


def daa_weights(class_counts: torch.Tensor, flipped: bool = False) -> torch.Tensor:
    """(1 - b_c) / (1 - b_c^n_c) rescaled to sum C; ``flipped`` uses b_c -> 1 - beta_c (BRL flip)."""
    n = class_counts.double()
    b = daa_betas(class_counts)
    if flipped:
        b = 1 - b
    w = (1 - b) / (1 - b ** n)
    return (w / w.sum() * len(n)).float()


def brl_label_weight(n_x: torch.Tensor, n_y: torch.Tensor, im_k: float,
                     alpha: float) -> torch.Tensor:
    """Weight on the clip's own label: 0 if n_x > k n_y, 1 if n_y > k n_x, else alpha."""
    n_x, n_y = n_x.double(), n_y.double()
    a = torch.full(n_x.shape, alpha, dtype=torch.float64)
    a[n_x > im_k * n_y] = 0.0
    a[n_y > im_k * n_x] = 1.0
    return a.float()


def partial_mix(x: torch.Tensor, partner: torch.Tensor, upper: list[int], lower: list[int],
                permute: bool = False) -> torch.Tensor:
    """x's upper-body joints + the partner's lower-body joints, (N, C, T, V, M) -> same.

    ``permute=True`` is the official layout: the two joint sets concatenated into slots 0..V-1.
    """
    if permute:
        return torch.cat([x[:, :, :, upper], partner[:, :, :, lower]], dim=3)
    out = x.clone()
    out[:, :, :, lower] = partner[:, :, :, lower]
    return out


@register_method("brl")
class BRL(Method):
    display_name = "BRL"
    family = "augmentation"
    paper = "Liu et al., 2023 (BRL)"
    order = 50

    @dataclass(frozen=True)
    class HParams:
        mix_ratio: float = 1 / 16        # BRL apis/own.py get_split: ratio = 1/16
        label_alpha: float = 0.64        # BRL apis/own.py get_split: alpha = 0.64 (16/25 joints)
        im_k: float = 3.0                # BRL apis/own.py get_split: im_k = 3
        aa_frac: float = 0.8             # BRL: 0-based epoch 19 of 24 (~0.8) -> 80 of 100
        scalar_label_weight: bool = False  # BRL quirk: last pair's weight for the batch
        alternate_weights: bool = False    # BRL quirk: in-place beta flip
        permute_joints: bool = False       # BRL quirk: concatenated joint slots
        temporal_flip: float = 0.0       # BRL configs: Temperal_Flip unused (paper: p 0.5)

    def setup(self, ctx: Context) -> None:
        self.counts = ctx.class_counts.cpu()
        self.aa = daa_weights(ctx.class_counts).to(ctx.device)
        self.aa_flipped = daa_weights(ctx.class_counts, flipped=True).to(ctx.device)
        self.aa_epoch = switch_epoch(self.hp.aa_frac, ctx.total_epochs)
        self.upper, self.lower = body_split(ctx.layout.name, ctx.layout.num_joints)
        self.class_weight: torch.Tensor | None = None

    def on_epoch_start(self, epoch: int, model, ctx: Context) -> None:
        if epoch < self.aa_epoch:
            self.class_weight = None
        elif self.hp.alternate_weights and (epoch - self.aa_epoch) % 2 == 1:
            self.class_weight = self.aa_flipped
        else:
            self.class_weight = self.aa

    def mix(self, batch: Batch, picked: torch.Tensor, partner: torch.Tensor) -> Batch:
        """Partial-mix the clips at positions ``picked`` with clips ``partner`` of the batch."""
        y, dev = batch.y, batch.y.device
        x = batch.x.clone()
        y_b = y.clone()
        a = torch.ones(len(y))
        if len(picked):
            x[picked] = partial_mix(batch.x[picked], batch.x[partner], self.upper, self.lower,
                                    self.hp.permute_joints)
            y_b[picked] = y[partner]
            a[picked.cpu()] = brl_label_weight(self.counts[y[picked].cpu()],
                                               self.counts[y[partner].cpu()],
                                               self.hp.im_k, self.hp.label_alpha)
            if self.hp.scalar_label_weight:
                a = torch.full_like(a, float(a[picked[-1].cpu()]))
        w_b = (1 - a).to(dev)
        return dataclasses.replace(batch, inputs=[x], targets=[Target(y, y_b, w_b)],
                                   meta={**batch.meta, "picked": picked, "partner": partner})

    def transform_batch(self, batch: Batch, model, ctx: Context) -> Batch:
        n = len(batch.y)
        k = int(self.hp.mix_ratio * n)
        g = ctx.generator
        picked = torch.randperm(n, generator=g)[:k]
        # a random partner != the clip itself: shift by 1..n-1 positions
        shift = torch.randint(1, max(n, 2), (k,), generator=g)
        partner = (picked + shift) % n
        out = self.mix(batch, picked.to(batch.y.device), partner.to(batch.y.device))
        if self.hp.temporal_flip > 0:
            flip = torch.rand(n, generator=g) < self.hp.temporal_flip
            x = out.inputs[0].clone()
            x[flip.to(x.device)] = x[flip.to(x.device)].flip(2)
            out.inputs = [x]
        return out

    def loss(self, out: Out, batch: Batch, ctx: Context) -> tuple[torch.Tensor, dict[str, float]]:
        total = out.logits.new_zeros(())
        logs: dict[str, float] = {}
        for k, (logits, t) in enumerate(zip(out.split(), batch.targets)):
            term = brl_pair_loss(logits, t, self.class_weight)
            logs[f"loss{k}"] = float(term.detach())
            total = total + term
        return total, logs


def brl_pair_loss(logits: torch.Tensor, t: Target, class_weight: torch.Tensor | None) -> torch.Tensor:
    """sum_i a_i c_ya l_a / sum_i c_ya + sum_i (1 - a_i) c_yb l_b / sum_i c_yb (a = 1 - w_b).

    With a constant a this is the official a * CE_w(y_a) + (1 - a) * CE_w(y_b), each a
    ``F.cross_entropy(weight=c)`` mean.
    """
    c = (torch.ones(logits.shape[1], device=logits.device, dtype=logits.dtype)
         if class_weight is None else class_weight.to(logits))
    y_b = t.y if t.y_b is None else t.y_b
    w_b = torch.zeros(len(t.y), dtype=logits.dtype, device=logits.device) if t.w_b is None \
        else t.w_b.to(logits).reshape(-1)
    ca, cb = c[t.y], c[y_b]
    la = ((1 - w_b) * ca * cross_entropy(logits, t.y)).sum() / ca.sum()
    lb = (w_b * cb * cross_entropy(logits, y_b)).sum() / cb.sum()
    return la + lb
