"""FR-Head: contrastive Feature Refinement Head (Zhou et al., CVPR 2023, "Learning Discriminative
Representations for Skeleton Based Action Recognition").

Official code ``zhysora/FR-Head`` (``model/lib.py::ST_RenovateNet`` / ``RenovateNet``,
``model/ctrgcn.py::Model`` (``cl_mode="ST-Multi-Level"``), ``main.py::Processor.train``,
``utils/config.py`` defaults). Plain CE training of the backbone plus, at several blocks, a
refinement module on the block's feature map (N*M, C, T, V), persons averaged:

    spatial  = Linear(flatten(ReLU(BN(Conv1x1_{C -> h//V}(mean_T f)))))   (N, h)
    temporal = Linear(flatten(ReLU(BN(Conv1x1_{C -> h//T}(mean_V f)))))   (N, h)

Each of the two features goes through the same contrastive loss with a class memory
M (h x K) and the detached classifier logits z (the fc output of this forward):

    p = softmax(z), pred = argmax z; per class k, within the batch:
      confident  = true positives (y = pred = k, with p_k > pred_threshold)
      FN_k       = clips of class k predicted otherwise (ambiguous: missed)
      FP_k       = clips of another class predicted k  (ambiguous: confused)
    proto_k = mom M_k + (1 - mom) mean(confident_k)  if class k has a confident clip, else M_k
              (gradient through the batch mean; proto becomes the new memory M_k)
    s_ik    = cos(f_i, proto_k);   w_i = alp (1 - p_{i,y_i})   (alp without ``use_p_map``)
    fn_i    = s_i + 1[k = y_i] w_i [FN_{y_i} non-empty] (cos(f_i, mean FN_{y_i}) - 1)
    fp_i    = s_i + 1[k = y_i] w_i [FP_{y_i} non-empty] (-cos(f_i, mean FP_{y_i}) - 1)
    L       = mean_i CE(fn_i / tmp, y_i) + CE(fp_i / tmp, y_i)          (version "V0")

Total = CE + w_cl_loss sum_s stage_weight_s (L_spatial,s + L_temporal,s) from epoch
start_epoch + 1 on (0-based; the official ``epoch > start_cl_epoch`` with -1: always).
Test logits: the backbone's classifier (the refinement modules are training-only).

Defaults (``utils/config.py``, ``model/lib.py``; the README's and every released
``results/*/config.yaml``'s ``--cl-mode ST-Multi-Level --w-multi-cl-loss 0.1 0.2 0.5 1``):
w_cl_loss 0.1, stage weights (0.1, 0.2, 0.5, 1), start epoch -1, version V0,
pred_threshold 0, use_p_map True, alp 0.125, tmp 0.125, mom 0.9, h_channel 256, num_frame 64
(the NTU configs; NW-UCLA's ``num_frame: 52``). The memory starts as N(0, 1) (``torch.randn``),
as official. The optimiser and schedule are the harness's.

Through the backbone contract (``stem``, ``blocks``, ``block_names``, ``pool``, ``head``):
- Taps. Official: l1, l5, l8, l10 of CTR-GCN (the first block, the two temporal-stride blocks
  that end stages 2 and 3, the last block; the same four in its ST-GCN / AAGCN / TCA-GCN
  files). The contract has no notion of stage, so ``taps=()`` picks that rule from shapes: the
  first block, every block whose output has fewer frames than its input, and the last block;
  on CTR-GCN that is exactly l1, l5, l8, l10. ``taps`` names blocks explicitly otherwise.
- Sizes. The official module sizes come from base_channel and num_frame // 2^s; here a probe
  forward (eval mode, no grad, zeros, BN statistics untouched) of ``num_frame`` frames through
  stem + blocks at build time gives (C, T, V) at each tap, so any contract backbone works.
- Frames. The temporal Linear needs T at build time, which neither the contract nor the
  Context gives (the window is the train config's). ``num_frame`` (the official model argument)
  fixes it; when the run's window gives another T at a tap, the (N, C, T, 1) temporal map is
  average-pooled to the built length (``adaptive_avg_pool2d``, an identity at equal length), so
  ``cpu`` / ``quick`` / ``smoke`` windows run with the official parameter count. By default
  (``num_frame`` 0) it is the run's window (``Context.window``): 64 on lt/NTU and 52 on ucla,
  the official sizes.
- Logits: ``head(pool(last map))`` of the same forward (official: ``fc`` of the pooled map).

Decisions:
- The memory is method state (checkpointed, so a resume is exact; official: a plain tensor
  attribute, not saved). The loss uses the step's prototypes (with gradient, as official); the
  new memory is committed in ``after_step``. Under DDP the memory update uses the batch sums
  of every rank (``ctx.all_reduce_mean`` of sum and count: the official commented-out
  ``all_reduce``), so replicas keep one memory; in one process it is the official update.
- The loss maths run in fp32 (autocast off), as the official fp32 code.
- Versions V1 (penalties on confident clips only), "NO FN", "NO FP", "NO FN & FP" and V2
  (the paper's ablations, ``--cl-version``) are options, V0 the default.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import BenchmarkError
from benchmark.method import Batch, Context, Method, Out, register_method

from ._precision import fp32

log = logging.getLogger(__name__)

VERSIONS = ("V0", "V1", "V2", "NO FN", "NO FP", "NO FN & FP")
EPS = 1e-12  # the official division guards (norms, counts)


# ----------------------------------------------------------------------------- the module
class RefineStage(nn.Module):
    """One tap's spatial and temporal squeeze (1x1 conv, BN, ReLU) + projection to h_channel."""

    def __init__(self, channels: int, frames: int, joints: int, h_channel: int):
        super().__init__()
        cs, ct = h_channel // joints, h_channel // frames
        if cs < 1 or ct < 1:
            raise BenchmarkError(f"fr_head: h_channel {h_channel} < joints {joints} or frames "
                                 f"{frames} at a tap (the squeeze would have 0 channels)")
        self.frames = frames
        self.spatial = nn.Sequential(nn.Conv2d(channels, cs, 1), nn.BatchNorm2d(cs), nn.ReLU(True))
        self.temporal = nn.Sequential(nn.Conv2d(channels, ct, 1), nn.BatchNorm2d(ct), nn.ReLU(True))
        self.spatial_proj = nn.Linear(cs * joints, h_channel)
        self.temporal_proj = nn.Linear(ct * frames, h_channel)
        self._warned = False

    def forward(self, fmap: torch.Tensor, n: int) -> torch.Tensor:
        """(N*M, C, T, V) block output -> (2, N, h): [spatial, temporal] refined features."""
        f = fmap.reshape(n, -1, *fmap.shape[1:]).mean(1)          # persons averaged, as pool
        s = self.spatial(f.mean(2, keepdim=True)).flatten(1)      # (N, h//V * V)
        t = f.mean(3, keepdim=True)                               # (N, C, T, 1)
        if t.shape[2] != self.frames:
            if not self._warned:
                log.warning("fr_head: %d frames at a tap, temporal head built for %d (num_frame): "
                            "average-pooled to it", t.shape[2], self.frames)
                self._warned = True
            t = F.adaptive_avg_pool2d(t, (self.frames, 1))
        t = self.temporal(t).flatten(1)                           # (N, h//T * T)
        return torch.stack([self.spatial_proj(s), self.temporal_proj(t)])


def probe_shapes(backbone: nn.Module, frames: int) -> list[tuple[int, int, int]]:
    """(C, T, V) of every block's output for a clip of ``frames`` frames (no grad, eval mode:
    nothing of the backbone changes)."""
    x = torch.zeros(1, backbone.in_channels, frames, backbone.num_point, backbone.num_person)
    was = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            h, shapes = backbone.stem(x), []
            for block in backbone.blocks():
                h = block(h)
                shapes.append(tuple(h.shape[1:]))
    finally:
        backbone.train(was)
    return shapes


def auto_taps(in_frames: int, shapes: list[tuple[int, int, int]]) -> list[int]:
    """The first block, each block that shortens time, the last block (CTR-GCN: l1 l5 l8 l10)."""
    frames = [in_frames] + [s[1] for s in shapes]
    taps = {0, len(shapes) - 1} | {i for i in range(len(shapes)) if frames[i + 1] < frames[i]}
    return sorted(taps)


class FRHeadModel(nn.Module):
    """Backbone + one :class:`RefineStage` per tapped block; ``forward`` is the backbone's."""

    def __init__(self, backbone: nn.Module, taps: list[int], shapes: list[tuple[int, int, int]],
                 h_channel: int):
        super().__init__()
        self.backbone = backbone
        self.taps = list(taps)
        self.stages = nn.ModuleList(RefineStage(shapes[i][0], shapes[i][1], shapes[i][2], h_channel)
                                    for i in self.taps)

    def forward(self, x: torch.Tensor, return_feat: bool = False):
        return self.backbone(x, return_feat=return_feat)

    def refine(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits, pooled feature, refined (S, 2, N, h)) of one training forward."""
        bb, n = self.backbone, x.shape[0]
        h, refined, k = bb.stem(x), [], 0
        for i, block in enumerate(bb.blocks()):
            h = block(h)
            if k < len(self.taps) and self.taps[k] == i:  # at once: later blocks may reuse h
                refined.append(self.stages[k](h, n))
                k += 1
        feat = bb.pool(h.reshape(n, -1, *h.shape[1:]))
        return bb.head(feat), feat, torch.stack(refined)


# ----------------------------------------------------------------------------- the loss
@dataclass
class Selection:
    """Per-batch sample selection from the detached logits, shared by every tap and branch."""

    prob: torch.Tensor       # (N, K) softmax
    onehot: torch.Tensor     # (N, K) labels
    confident: torch.Tensor  # (N, K) true positives with p > threshold (memory update, V1 gate)
    fn: torch.Tensor         # (N, K) clips of class k predicted otherwise
    fp: torch.Tensor         # (N, K) clips predicted k of another class


def select(logits: torch.Tensor, y: torch.Tensor, threshold: float) -> Selection:
    k = logits.shape[1]
    prob = torch.softmax(logits, 1)
    onehot = F.one_hot(y, k).to(logits.dtype)
    pred = F.one_hot(logits.max(1).indices, k).to(logits.dtype)
    tp = onehot * pred
    confident = tp * (prob > threshold).to(logits.dtype)
    return Selection(prob, onehot, confident, onehot - tp, pred - tp)


def _unit(t: torch.Tensor, dim: int) -> torch.Tensor:
    return t / (t.norm(dim=dim, keepdim=True) + EPS)


def class_means(feat: torch.Tensor, confident: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of the confident features per class (h, K), their count (K,))."""
    return feat.T @ confident, confident.sum(0)


def update_memory(memory: torch.Tensor, sums: torch.Tensor, count: torch.Tensor,
                  mom: float) -> torch.Tensor:
    """mom M + (1 - mom) mean where a class has a confident clip, M elsewhere (the official
    keep-factor form, so it is bitwise the official update)."""
    keep = torch.where(count > 1e-8, torch.full_like(count, mom), torch.ones_like(count))
    return memory * keep + (1 - keep) * (sums / (count + EPS))


def refine_loss(feat: torch.Tensor, y: torch.Tensor, sel: Selection, memory: torch.Tensor,
                alp: float = 0.125, tmp: float = 0.125, mom: float = 0.9, version: str = "V0",
                use_p_map: bool = True) -> torch.Tensor:
    """The contrastive refinement loss of one branch (see the module docstring), scalar.

    Args:
        feat: (N, h) projected features; y: (N,) labels; sel: :func:`select` of the logits;
        memory: (h, K) class memory before this step (detached).
    """
    sums, count = class_means(feat, sel.confident)
    proto = _unit(update_memory(memory.detach(), sums, count, mom), 0)       # (h, K)
    f = _unit(feat, 1)
    f_fn = _unit(feat.T @ F.normalize(sel.fn, p=1, dim=0), 0)
    f_fp = _unit(feat.T @ F.normalize(sel.fp, p=1, dim=0), 0)
    has_fn = (sel.fn.sum(0) > 1e-8).to(feat.dtype)
    has_fp = (sel.fp.sum(0) > 1e-8).to(feat.dtype)
    score = f @ proto                                                        # (N, K)
    if version == "V2":  # per-class penalty cos(proto_k, mean FN/FP_k), loss x (1 - p_y)
        fn = score + ((proto * f_fn).sum(0) - 1) * has_fn
        fp = score + (-(proto * f_fp).sum(0) - 1) * has_fp
        w = ((1 - sel.prob) * sel.onehot).sum(1)
        return (w * F.cross_entropy(fn / tmp, y, reduction="none")
                + w * F.cross_entropy(fp / tmp, y, reduction="none")).mean()
    pmap = (1 - sel.prob) * sel.onehot * alp if use_p_map else sel.onehot * alp
    gate = sel.confident if version != "V0" else 1.0
    fn_on = version in ("V0", "V1", "NO FP")
    fp_on = version in ("V0", "V1", "NO FN")
    fn = score + ((f @ f_fn - 1) * pmap * has_fn * gate if fn_on else 0.0)
    fp = score + ((-(f @ f_fp) - 1) * pmap * has_fp * gate if fp_on else 0.0)
    return (F.cross_entropy(fn / tmp, y, reduction="none")
            + F.cross_entropy(fp / tmp, y, reduction="none")).mean()


# ----------------------------------------------------------------------------- the method
@register_method("fr_head")
class FRHead(Method):
    display_name = "FR-Head"
    family = "contrastive"
    paper = "Zhou et al., CVPR 2023"
    order = 145

    @dataclass(frozen=True)
    class HParams:
        w_cl_loss: float = 0.1                 # FR-Head utils/config.py --w-cl-loss 0.1
        stage_weights: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0)  # --w-multi-cl-loss 0.1 0.2 0.5 1
        start_epoch: int = -1                  # --start-cl-epoch -1 (loss when epoch > it)
        version: str = "V0"                    # --cl-version V0
        pred_threshold: float = 0.0            # --pred_threshold 0.0 (confident TP)
        use_p_map: bool = True                 # --use_p_map True (the (1 - p_y) factor)
        alp: float = 0.125                     # model/lib.py RenovateNet alp
        tmp: float = 0.125                     # model/lib.py RenovateNet tmp
        mom: float = 0.9                       # model/lib.py RenovateNet mom
        h_channel: int = 256                   # model/lib.py ST_RenovateNet h_channel
        num_frame: int = 0                     # 0: the run's window (ctx.window; official 64 NTU, 52 ucla)
        taps: tuple[str, ...] = ()             # () = l1, l5, l8, l10 on CTR-GCN (rule above)

    def setup(self, ctx: Context) -> None:
        if self.hp.version not in VERSIONS:
            raise BenchmarkError(f"fr_head: version must be one of {', '.join(VERSIONS)}, "
                                 f"got {self.hp.version!r}")
        if self.hp.num_frame < 0 or self.hp.h_channel < 1:
            raise BenchmarkError("fr_head: num_frame must be >= 0 (0: the window) and h_channel >= 1")
        self.num_frame = self.hp.num_frame or ctx.window or 64
        self.device, self.epoch = ctx.device, 0
        self.memory: torch.Tensor | None = None
        self._next_memory: torch.Tensor | None = None

    def build_model(self, ctx: Context, make_backbone) -> nn.Module:
        bb = make_backbone()
        shapes = probe_shapes(bb, self.num_frame)
        names = list(bb.block_names())
        if self.hp.taps:
            unknown = [t for t in self.hp.taps if t not in names]
            if unknown:
                raise BenchmarkError(f"fr_head: taps {unknown} are not blocks of the backbone "
                                     f"({', '.join(names)})")
            taps = sorted({names.index(t) for t in self.hp.taps})
        else:
            taps = auto_taps(self.num_frame, shapes)
        if len(self.hp.stage_weights) != len(taps):
            raise BenchmarkError(f"fr_head: {len(self.hp.stage_weights)} stage_weights for "
                                 f"{len(taps)} taps ({', '.join(names[i] for i in taps)})")
        model = FRHeadModel(bb, taps, shapes, self.hp.h_channel)
        # one N(0, 1) memory per tap and branch, drawn at construction as official
        self.memory = torch.randn(len(taps), 2, self.hp.h_channel, ctx.num_classes).to(ctx.device)
        return model

    def on_epoch_start(self, epoch: int, model, ctx: Context) -> None:
        self.epoch = epoch

    def forward(self, model: nn.Module, batch: Batch, ctx: Context) -> Out:
        x = batch.inputs[0] if len(batch.inputs) == 1 else torch.cat(batch.inputs)
        logits, feat, refined = model.refine(x)
        return Out(logits, feat, heads={"refined": refined}, chunks=[len(i) for i in batch.inputs])

    def loss(self, out: Out, batch: Batch, ctx: Context) -> tuple[torch.Tensor, dict[str, float]]:
        total, logs = super().loss(out, batch, ctx)
        hp = self.hp
        y = torch.cat([t.y for t in batch.targets])
        refined = out.heads["refined"]
        dt = torch.promote_types(refined.dtype, torch.float32)  # fp32 (fp64 kept for checks)
        with fp32(out.logits.device):
            refined, memory = refined.to(dt), self.memory.to(dt)
            sel = select(out.logits.detach().to(dt), y, hp.pred_threshold)
            cl = refined.new_zeros(())
            sums = []
            for s, w in enumerate(hp.stage_weights):
                for b in range(2):
                    cl = cl + w * refine_loss(refined[s, b], y, sel, memory[s, b], hp.alp, hp.tmp,
                                              hp.mom, hp.version, hp.use_p_map)
                    sums.append(class_means(refined[s, b].detach(), sel.confident)[0])
            # the memory update from every rank's batch (1 process: this batch, as official)
            g_sums = ctx.all_reduce_mean(torch.stack(sums)).view_as(memory).to(memory)
            g_count = ctx.all_reduce_mean(sel.confident.sum(0)).to(memory)
            self._next_memory = update_memory(memory, g_sums, g_count, hp.mom)
        logs = {"ce": sum(logs.values()), "cl": float(cl.detach())}
        if hp.w_cl_loss and self.epoch > hp.start_epoch:
            total = total + hp.w_cl_loss * cl
        return total, logs

    def after_step(self, model: nn.Module, batch: Batch, out: Out, ctx: Context) -> None:
        if self._next_memory is not None:
            self.memory, self._next_memory = self._next_memory, None

    def state_dict(self) -> dict:
        return {"memory": self.memory.detach().cpu().clone()}

    def load_state_dict(self, state: dict) -> None:
        memory = state.get("memory") if isinstance(state, dict) else None
        want = tuple(self.memory.shape) if self.memory is not None else None
        if memory is None or sorted(state) != ["memory"] or (want and memory.shape != want):
            got = {k: tuple(getattr(v, "shape", ())) for k, v in dict(state).items()}
            raise BenchmarkError(f"fr_head: checkpoint method state does not fit: expected "
                                 f"{{'memory': {want}}}, got {got}")
        self.memory = memory.to(self.device, torch.float32).clone()
