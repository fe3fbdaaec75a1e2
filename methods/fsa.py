"""FSA: Feature Space Augmentation for long-tailed data (Chu et al., ECCV 2020).

No official code; the reference is the paper plus the unofficial re-implementation
``SSRSGJYD/Feature-Space-Augmentation-for-Long-Tailed-Data`` (``phase_ii_extract_feature.py``,
``datasets/finetune_dataset.py``, ``phase_iii_online_train_or_test.py``,
``utils/phase_ii_util.py::GradCam``). Three stages:

1. ``feature``: the whole network with plain CE (the train config's schedule).
2. ``statistics`` (``train=False``): S[c, c'] = mean softmax score of class c' over the training
   clips of class c (eval mode); the diagonal is zeroed and each tail class t gets as its
   *confusing classes* the top-Nf classes r by S[r, t] (``topk`` over dim 0, transposed).
3. ``finetune``: trunk frozen; every group of 2 + 2 Na clips is [tail clip, Nf = Na clips one
   per confusing class of its class, 1 + Na random head clips] (sampler ``fsa_groups``). On
   the last feature map A (eval mode) Grad-CAM splits the tail clip into its class-specific
   part f_s = A [cam > ts] and each confusing clip into its class-generic part
   f_g = A [cam < tg] (cam of the clip's own class, min-max normalised); a fused feature
   M f_s + (1 - M) f_g with a random binary mask M = [u > gamma], u ~ U(0, 1) per position,
   gamma ~ U(0, 1) per fused feature, gets the *tail* label. The classifier sees
   [tail, Na fused, 1 + Na head] per group; loss = mean CE.

Decisions:
- Head/tail split from the training counts: tail = classes with n_c < ``tail_below`` (20, the
  Few boundary of Shap-Mix's ``shot_acc``; on NTU60-LT IF100 that is 16 of 60 classes, close
  to the unofficial CIFAR-10 split's 3 tail classes of 10); every other class is head.
- Feature map = CTR-GCN's last map (N, M, K, T', V). Grad-CAM (Selvaraju et al., ICCV 2017;
  mean convention): alpha = mean over (T', V) of d logit_y / dA per clip and person,
  cam = ReLU(sum_k alpha A), then min-max normalised over the whole clip (persons, T', V) as
  ``GradCam.cal_cam`` (a constant map becomes 0 instead of the unofficial NaN). Masks (cam
  thresholds and the fusion mask M) act on (T', V) positions, across all channels; the fusion
  mask is shared by the persons of a clip. The fused map is pooled as every map (mean over
  T', V, then M).
- Confusing classes never include the class itself (its diagonal entry ranks last, where the
  unofficial zero could tie with unseen classes); with fewer than Nf other classes the picks
  repeat cyclically.
- The group layout of the unofficial ``FinetuneDataset`` with Na = Nf (``n_aug``): fused
  feature k uses confusing clip k. The unofficial label bug (every tail-side feature labelled
  with the first group's tail class) is fixed: each group keeps its own tail class.
- Fine-tuning trains ``fc`` only (unofficial code; ``finetune="last_block"`` also trains
  ``l10``, the paper's "last block + classifier"). The trunk runs in eval mode (BN running
  statistics stay the phase-I ones, as the unofficial ``model.eval()`` feature pass).
- Stage lengths: ``feature`` = the train config's epochs (the whole CTR-GCN schedule),
  ``statistics`` one pass, ``finetune`` = round(``finetune_frac`` x total_epochs), 0.2 =
  the unofficial 40 fine-tune epochs after 200 (not its 41 of the off-by-one loop). Its lr is
  5e-4 at batch 128, constant, momentum 0.9, no weight decay (unofficial phase-III config),
  scaled linearly with the batch size.
- The statistics pass: the harness feeds every training clip of a ``train=False`` stage, with
  the test transform and no gradients, to ``transform_batch``, which records its eval-mode
  softmax. ``stats_source="auto"`` (default) uses that pass and falls back to the same
  statistics gathered during the last ``feature`` epoch (eval forward of each training batch,
  the weights of that step) if the pass saw nothing (e.g. a capped smoke profile);
  ``"pass"`` insists on the pass, ``"last_epoch"`` always uses the fallback.
- The group sampler reads the confusing classes from this method's live table (passed in
  ``sampler_kwargs``), filled at the start of ``finetune``, so the sampler can be built
  before the statistics exist; the batch size (per rank) must be a multiple of 2 + 2 Na.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.data.samplers import SAMPLERS, IndexSampler
from benchmark.errors import BenchmarkError
from benchmark.losses import cross_entropy
from benchmark.method import Batch, Context, Method, Out, Stage, register_method

from ._losses import check_choice, switch_epoch
from ._precision import fp32, fp32_eval_forward

FEATURE, STATS, FINETUNE = "feature", "statistics", "finetune"


# ------------------------------------------------------------------ pure pieces (tested)
def split_head_tail(class_counts: torch.Tensor, tail_below: int) -> tuple[list[int], list[int]]:
    """(head classes, tail classes): tail = n_c < tail_below."""
    n = torch.as_tensor(class_counts)
    tail = [int(c) for c in torch.nonzero(n < tail_below).flatten()]
    head = [int(c) for c in torch.nonzero(n >= tail_below).flatten()]
    return head, tail


def confusion_scores(sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """S = per-class mean softmax vector (rows: true class; unseen classes 0), diagonal 0."""
    s = sums.double() / counts.double().clamp_min(1).reshape(-1, 1)
    s.fill_diagonal_(0)
    return s


def confusing_classes(scores: torch.Tensor, n_f: int) -> list[list[int]]:
    """Row t: the n_f classes r with the largest S[r, t] (diagonal zeroed), as the unofficial
    ``topk(S, Nf, dim=0).t()``. With fewer than n_f other classes the C - 1 picks repeat
    cyclically (so a group still holds n_f confusing clips)."""
    s = scores.clone().double()
    s.fill_diagonal_(float("-inf"))  # below any score: never picked while another class is left
    k = min(n_f, len(s) - 1)
    top = torch.topk(s, k, dim=0).indices.t().tolist()
    return [[row[i % k] for i in range(n_f)] for row in top]


def grad_cam(feat_map: torch.Tensor, score_fn: Callable[[torch.Tensor], torch.Tensor],
             classes: torch.Tensor, reduce: str = "mean", normalize: bool = True) -> torch.Tensor:
    """Grad-CAM of ``classes`` on a feature map (N, M, K, T, V) -> (N, M, T, V).

    alpha_{n,m,k} = mean (``reduce="sum"``: sum) over (T, V) of d score / dA, score = the
    pre-softmax logit ``score_fn(A)[n, class_n]``; cam = ReLU(sum_k alpha A_k), min-max
    normalised per clip over (M, T, V) when ``normalize``. Gradients are taken w.r.t. a
    detached copy of the map only: no parameter ``.grad`` is touched. Computed in fp32 (an
    fp32 copy of the map, autocast off) whatever the training precision.
    """
    a = feat_map.detach().float().requires_grad_(True)
    with torch.enable_grad(), fp32(a.device):
        score = score_fn(a).gather(1, classes.reshape(-1, 1).to(a.device)).sum()
        (grad,) = torch.autograd.grad(score, a)
    alpha = grad.sum(dim=(3, 4), keepdim=True)
    if reduce == "mean":
        alpha = alpha / (grad.shape[3] * grad.shape[4])
    cam = F.relu((alpha * a.detach()).sum(2))
    if normalize:
        flat = cam.flatten(1)
        lo, hi = flat.min(1).values, flat.max(1).values
        span = (hi - lo).clamp_min(1e-12).reshape(-1, 1, 1, 1)
        cam = (cam - lo.reshape(-1, 1, 1, 1)) / span
    return cam


def fuse(f_s: torch.Tensor, f_g: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """M f_s + (1 - M) f_g (mask broadcast over the leading feature axes)."""
    return mask * f_s + (1 - mask) * f_g


def fusion_mask(shape: tuple[int, ...], generator: torch.Generator | None,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """Binary masks [u > gamma], u ~ U(0,1) per position, one gamma ~ U(0,1) per mask;
    ``shape`` = (n_masks, T, V)."""
    gamma = torch.rand(shape[0], 1, 1, generator=generator)
    return (torch.rand(shape, generator=generator) > gamma).float().to(device)


class ConfusionTable:
    """The live confusing-class table shared by the method and its group sampler."""

    def __init__(self) -> None:
        self.confusing: list[list[int]] | None = None


# ------------------------------------------------------------------ group sampler
@SAMPLERS.register("fsa_groups")
class FSAGroupSampler(IndexSampler):
    """One group per tail clip per epoch (shuffled): [tail clip, one random clip of each of
    its class's ``n_aug`` confusing classes, 1 + n_aug random head clips (distinct when the
    head pool allows)] (unofficial ``FinetuneDataset``). Under DDP whole groups are sharded."""

    def __init__(self, labels, seed: int = 0, rank: int = 0, world_size: int = 1,
                 tail_classes: tuple[int, ...] = (), n_aug: int = 3,
                 table: ConfusionTable | None = None):
        super().__init__(labels, seed, rank, world_size)
        self.n_aug, self.table = int(n_aug), table
        is_tail = np.isin(self.labels, np.asarray(tail_classes, dtype=np.int64))
        self.tail_pos = np.flatnonzero(is_tail)
        self.head_pos = np.flatnonzero(~is_tail)
        if not len(self.tail_pos) or not len(self.head_pos):
            raise BenchmarkError("fsa_groups needs clips of both head and tail classes")
        self.members = {int(c): np.flatnonzero(self.labels == c) for c in np.unique(self.labels)}

    @property
    def group(self) -> int:
        return 2 + 2 * self.n_aug

    def global_length(self) -> int:
        return len(self.tail_pos) * self.group

    def global_order(self, epoch: int) -> np.ndarray:
        if self.table is None or self.table.confusing is None:
            raise BenchmarkError("fsa_groups: the confusing classes are not computed yet "
                                 "(the statistics stage must run first)")
        rng = self.epoch_rng(epoch)
        out = []
        for t in self.tail_pos[rng.permutation(len(self.tail_pos))]:
            conf = self.table.confusing[int(self.labels[t])]
            picks = [rng.choice(self.members[c]) if c in self.members else rng.choice(self.head_pos)
                     for c in conf]  # a confusing class without clips: a head clip instead
            heads = rng.choice(self.head_pos, 1 + self.n_aug,
                               replace=len(self.head_pos) < 1 + self.n_aug)
            out.append(np.concatenate([[t], picks, heads]))
        return np.concatenate(out).astype(np.int64)

    def indices(self, epoch: int | None = None) -> np.ndarray:
        order = self.global_order(self.epoch if epoch is None else epoch)
        if self.world_size == 1:
            return order
        groups = order.reshape(-1, self.group)
        n = -(-len(groups) // self.world_size) * self.world_size
        groups = groups[np.resize(np.arange(len(groups)), n)]
        return groups[self.rank::self.world_size].reshape(-1)

    def __len__(self) -> int:
        return -(-len(self.tail_pos) // self.world_size) * self.group


# ------------------------------------------------------------------ model wrapper
class FSAModel(nn.Module):
    """The backbone; ``forward(x, groups=...)`` runs FSA's fused-feature classifier batch
    inside ``forward`` (so a DDP wrapper can be called as usual) and returns (logits, pooled
    features, {"mask", "cam", "fused"}) for the [tail, Na fused, 1 + Na head] layout."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    @contextlib.contextmanager
    def _frozen_trunk(self) -> Iterator[None]:
        was = self.backbone.training
        self.backbone.eval()
        try:
            yield
        finally:
            self.backbone.train(was)

    def _score(self, a: torch.Tensor) -> torch.Tensor:
        return self.backbone.head(self.backbone.pool(a))

    def forward(self, x: torch.Tensor, return_feat: bool = False, groups: dict | None = None):
        if groups is None:
            return self.backbone(x, return_feat=return_feat)
        b, n_aug = self.backbone, groups["n_aug"]
        g = 2 + 2 * n_aug
        grad_ctx = contextlib.nullcontext() if groups["trunk_grad"] else torch.no_grad()
        with self._frozen_trunk():
            with grad_ctx:
                a = b.features(x)                                   # (N, M, K, T', V)
            cam = grad_cam(a, self._score, groups["cam_class"])     # (N, M, T', V)
        n_g = len(x) // g
        a_g, cam_g = a.view(n_g, g, *a.shape[1:]), cam.view(n_g, g, *cam.shape[1:])
        tail, conf = a_g[:, 0], a_g[:, 1:1 + n_aug]
        f_s = tail * (cam_g[:, 0] > groups["ts"]).unsqueeze(2).to(a)                    # (G, M, K, T, V)
        f_g = conf * (cam_g[:, 1:1 + n_aug] < groups["tg"]).unsqueeze(3).to(a)          # (G, Na, M, K, T, V)
        mask = fusion_mask((n_g * n_aug, *a.shape[3:]), groups.get("generator"))
        fused = fuse(f_s.unsqueeze(1), f_g, mask.to(a).reshape(n_g, n_aug, 1, 1, *a.shape[3:]))
        cls_maps = torch.cat([tail.unsqueeze(1), fused, a_g[:, 1 + n_aug:]], 1).flatten(0, 1)
        feat = b.pool(cls_maps)
        return b.head(feat), feat, {"mask": mask, "cam": cam.detach(), "fused": fused.detach()}


def group_labels(y: torch.Tensor, n_aug: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(classifier-batch labels, CAM classes) of a group-structured batch: the classifier sees
    [tail x (1 + Na) with the group's own tail label, the 1 + Na head labels] per group; the
    CAM of every clip is taken for its own class."""
    g = 2 + 2 * n_aug
    yg = y.view(-1, g)
    labels = torch.cat([yg[:, :1].expand(-1, 1 + n_aug), yg[:, 1 + n_aug:]], 1).reshape(-1)
    return labels, y


# ------------------------------------------------------------------ the method
@register_method("fsa")
class FSA(Method):
    display_name = "FSA"
    family = "two-stage"
    paper = "Chu et al., ECCV 2020"
    order = 30

    @dataclass(frozen=True)
    class HParams:
        tail_below: int = 20           # Shap-Mix's Few boundary (n < 20); our choice
        n_aug: int = 3                 # unofficial phase_iii config Na = Nf = 3
        ts: float = 0.8                # unofficial phase_iii config ts (class-specific CAM > ts)
        tg: float = 0.2                # unofficial phase_iii config tg (class-generic CAM < tg)
        finetune_frac: float = 0.2     # unofficial 40 fine-tune epochs after 200 phase-I epochs
        finetune_lr: float = 5e-4      # unofficial phase_iii SGD lr at batch 128, constant
        finetune: str = "fc"           # unofficial trains avgpool+fc; "last_block": paper (+l10)
        stats_source: str = "auto"     # statistics pass; "last_epoch": fallback (see docstring)

    def setup(self, ctx: Context) -> None:
        hp = self.hp
        check_choice("fsa", "finetune", hp.finetune, ("fc", "last_block"))
        check_choice("fsa", "stats_source", hp.stats_source, ("auto", "pass", "last_epoch"))
        if hp.n_aug < 1 or not 0 <= hp.tg <= hp.ts <= 1:
            raise BenchmarkError(f"fsa: need n_aug >= 1 and 0 <= tg <= ts <= 1, got {hp}")
        self.head, self.tail = split_head_tail(ctx.class_counts, hp.tail_below)
        if not self.head or not self.tail:
            raise BenchmarkError(f"fsa: tail_below={hp.tail_below} leaves no head or no tail "
                                 f"class for counts {ctx.class_counts.tolist()}")
        self.num_classes = ctx.num_classes
        self.table = ConfusionTable()
        self.scores: torch.Tensor | None = None
        self.acc = {k: self._empty_acc() for k in ("pass", "last_epoch")}
        self.stage, self.collect = FEATURE, None
        self.feature_epochs = ctx.total_epochs

    def _empty_acc(self) -> dict[str, torch.Tensor]:
        c = self.num_classes
        return {"sums": torch.zeros(c, c, dtype=torch.float64),
                "counts": torch.zeros(c, dtype=torch.float64)}

    def build_model(self, ctx: Context, make_backbone) -> nn.Module:
        model = FSAModel(make_backbone())
        # the backbone contract names the blocks: "last block" is the last of them (CTR-GCN l10)
        self._last_block = f"backbone.{model.backbone.block_names()[-1]}."
        return model

    def trainable(self, name: str) -> bool:
        return name.startswith("backbone.fc.") or (
            self.hp.finetune == "last_block" and name.startswith(self._last_block))

    def stages(self, ctx: Context) -> list[Stage]:
        g = 2 + 2 * self.hp.n_aug
        if (ctx.batch_size // ctx.world_size) % g:
            raise BenchmarkError(f"fsa: the per-rank batch {ctx.batch_size // ctx.world_size} is "
                                 f"not a multiple of the group size 2 + 2 n_aug = {g}")
        return [Stage(name=FEATURE),
                Stage(name=STATS, epochs=1, train=False, sampler="sequential"),
                Stage(name=FINETUNE, epochs=max(1, switch_epoch(self.hp.finetune_frac,
                                                                ctx.total_epochs)),
                      lr=self.hp.finetune_lr * ctx.batch_size / 128, milestones=(),
                      warmup_epochs=0, weight_decay=0.0, trainable=self.trainable,
                      sampler="fsa_groups",
                      sampler_kwargs={"tail_classes": tuple(self.tail), "n_aug": self.hp.n_aug,
                                      "table": self.table})]

    def on_stage_start(self, stage: Stage, model: nn.Module, ctx: Context) -> None:
        if stage.name not in (FEATURE, STATS, FINETUNE):
            raise BenchmarkError(f"fsa has no stage {stage.name!r}")
        self.stage = stage.name
        if stage.name == FEATURE and stage.epochs is not None:
            self.feature_epochs = stage.epochs
        if stage.name == STATS:
            self.acc["pass"] = self._empty_acc()
        if stage.name == FINETUNE and self.table.confusing is None:
            self.finalize_statistics(ctx)

    def on_epoch_start(self, epoch: int, model: nn.Module, ctx: Context) -> None:
        self.collect = None
        if self.stage == STATS:
            self.collect = "pass"
        elif (self.stage == FEATURE and self.hp.stats_source != "pass"
              and epoch == self.feature_epochs - 1):
            self.acc["last_epoch"] = self._empty_acc()
            self.collect = "last_epoch"

    def observe(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: Context,
                source: str = "pass") -> None:
        """Add the eval-mode softmax scores of a batch to the statistics ``source`` (an fp32
        forward whatever the training precision)."""
        p = torch.softmax(fp32_eval_forward(ctx, model, x).double(), 1).cpu()
        acc = self.acc[source]
        acc["sums"].index_add_(0, y.cpu(), p)
        acc["counts"].index_add_(0, y.cpu(), torch.ones(len(y), dtype=torch.float64))

    def finalize_statistics(self, ctx: Context) -> None:
        """S from the pass (or the last feature epoch), synced over ranks; confusing classes."""
        src = self.hp.stats_source
        if src == "auto":
            src = "pass" if float(self.acc["pass"]["counts"].sum()) > 0 else "last_epoch"
        sums, counts = (ctx.all_reduce_mean(self.acc[src][k]).cpu() for k in ("sums", "counts"))
        if float(counts.sum()) == 0:
            raise BenchmarkError(f"fsa: no statistics from {src!r} (the statistics stage saw no "
                                 f"batch; use stats_source='auto' or 'last_epoch')")
        self.scores = confusion_scores(sums, counts)
        self.table.confusing = confusing_classes(self.scores, self.hp.n_aug)

    def transform_batch(self, batch: Batch, model: nn.Module, ctx: Context) -> Batch:
        if self.collect is not None:
            self.observe(model, batch.x, batch.y, ctx, self.collect)
        if self.stage != FINETUNE:
            return batch
        g, na = 2 + 2 * self.hp.n_aug, self.hp.n_aug
        if len(batch.y) % g:
            raise BenchmarkError(f"fsa: batch of {len(batch.y)} is not made of groups of {g} "
                                 f"(sampler fsa_groups, batch size a multiple of {g})")
        yg = batch.y.view(-1, g).cpu()
        tail = torch.tensor(self.tail)
        if not bool(torch.isin(yg[:, 0], tail).all()) or bool(torch.isin(yg[:, 1 + na:], tail).any()):
            raise BenchmarkError("fsa: batch is not laid out as [tail, confusing, head] groups")
        labels, cam_class = group_labels(batch.y, na)
        meta = {**batch.meta, "fsa_labels": labels, "fsa_cam_class": cam_class}
        return Batch(x=batch.x, y=batch.y, index=batch.index, views=batch.views, aux=batch.aux,
                     inputs=[batch.x], targets=[batch.targets[0]], meta=meta)

    def forward(self, model: nn.Module, batch: Batch, ctx: Context) -> Out:
        if self.stage != FINETUNE:
            return super().forward(model, batch, ctx)
        groups = {"n_aug": self.hp.n_aug, "ts": self.hp.ts, "tg": self.hp.tg,
                  "cam_class": batch.meta["fsa_cam_class"], "generator": ctx.generator,
                  "trunk_grad": self.hp.finetune == "last_block"}
        logits, feat, heads = model(batch.x, groups=groups)
        return Out(logits, feat, heads=heads, chunks=[len(logits)])

    def loss(self, out: Out, batch: Batch, ctx: Context) -> tuple[torch.Tensor, dict[str, float]]:
        if self.stage != FINETUNE:
            return super().loss(out, batch, ctx)
        labels = batch.meta["fsa_labels"].to(out.logits.device)
        total = cross_entropy(out.logits, labels).mean()
        return total, {"fsa_ce": float(total.detach())}

    def state_dict(self) -> dict[str, Any]:
        return {"stage": self.stage,
                "acc": {k: {n: t.clone() for n, t in v.items()} for k, v in self.acc.items()},
                "scores": None if self.scores is None else self.scores.clone(),
                "confusing": self.table.confusing}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stage = state["stage"]
        self.acc = {k: {n: t.clone() for n, t in v.items()} for k, v in state["acc"].items()}
        self.scores = None if state["scores"] is None else state["scores"].clone()
        # in place: the fine-tune sampler holds this very table
        self.table.confusing = None if state["confusing"] is None else [
            [int(c) for c in row] for row in state["confusing"]]
