"""CTR-GCN backbone (Chen et al., "Channel-wise Topology Refinement Graph Convolution for
Skeleton-Based Action Recognition", ICCV 2021), the backbone of Shap-Mix (IJCAI 2024).

Written from the official ``model/ctrgcn.py`` (Uason-Chen/CTR-GCN). It computes what its ``Model``
computes, with the same initialisation and exactly the official ``state_dict`` keys and shapes,
so official CTR-GCN / Shap-Mix checkpoints load with ``strict=True`` and give the same logits.

Where the official code loops, ours batches (same maths, checked against the official model by
``scripts/check_ctrgcn_official.py``; only the floating-point summation order differs):

* ``UnitGCN``: ``conv1``/``conv2`` are only ever averaged over time and a 1x1 conv is linear,
  so we average first and run the six of them (3 subsets) as one conv over (N, C, V) instead
  of six over (N, C, T, V). ``conv4`` is a 1x1 conv over the (V, V) relation map: we run it as
  one batched GEMM per subset with the scalar ``alpha`` folded into its weights and
  ``alpha * bias + PA`` added in place (oneDNN's 1x1 conv on a 25x25 map with 8..32
  input channels, and the copy of the non-contiguous relation slice it needed, cost ~3x more).
  The relation map is built transposed so the GEMM yields topo^T, the aggregation's right-hand
  operand as is (a transposed operand made the backward copy its gradient). The subsets'
  aggregations are summed in place.
* ``MultiScaleTemporalConv``: the four branch-entry 1x1 convs share their input and run as one
  conv; branch 3's temporal stride becomes a slice of that output (a strided 1x1 conv without
  padding reads frames 0, s, 2s, ...). BatchNorm is per channel, so the three entry BNs run as
  one call over the concatenated channels and the four branch-exit BNs as one call after the
  concatenation (running statistics are written back to the official modules). On CPU the
  max-pool runs channels-last (the NCHW CPU kernel is ~2x slower; identical result and tie
  order, hence identical gradients).
* Residual additions and ReLUs run in place on tensors autograd does not keep.
* On CPU, 1x1 convs with a tiny input width (the 3 coordinates of ``l1``) run as a batched
  GEMM: oneDNN is ~2x slower there. Wider ones stay oneDNN convs, which were faster.
* On CPU, a no-grad eval-mode forward (test passes, Shap-Mix's coalition forwards) runs
  ``ctrgcn_eval``: BatchNorm folded into the convs, in pieces of a few clips
  (``CPU_EVAL_CHUNK_BYTES``); eval mode treats clips independently. NTU shape, 32 clips:
  1,372-1,440 ms as one batch, 687-762 ms in pieces, 565-678 ms folded (2 threads).

The parameters stay in modules named like the official ones (``convs.0.conv1`` ...), so the
fused weights are rebuilt with ``torch.cat`` on every forward; gradients flow back through it.
Tried and not kept (slower on CPU, measured): one conv for the three ``conv3``'s (also with a
subset-interleaved channel order read through strided batched GEMMs), the three aggregations as
one GEMM over the concatenated subsets, batched-GEMM 1x1 convs for 64+ input channels, and
channels-last 1x1 convs (the layout conversions cost more than they saved).
``CTRGC.forward`` keeps the official one-subset formula as a readable reference for tests.
"""
from __future__ import annotations

import math
import os
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..ckpt import read_weights_only
from ..errors import BenchmarkError, bad_file
from . import BACKBONES
from .base import SkeletonBackbone
from .graph import layout_name, spatial_graph

TCN_KERNEL = 5         # MultiScale_TemporalConv kernel size and dilations used by every layer
TCN_DILATIONS = (1, 2)


# 1x1 convs with at most this many input channels run as a batched GEMM on CPU (l1: 3)
GEMM_MAX_IN_CHANNELS = 8
# A no-grad eval forward on CPU runs in pieces of clips whose l1 output is about this size
# (measured, 2 threads, 1 MiB L2 per core: NTU at base 64 runs 2.2x faster in pieces of 3 clips
# than as a batch of 32; the best piece held 0.8-3 MiB of l1 output for every shape tried)
CPU_EVAL_CHUNK_BYTES = 2 << 20


# ----------------------------------------------------------------------------- fused helpers
def conv1x1(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """A 1x1 conv of (N, C, T, V); a batched GEMM on CPU for tiny C (oneDNN is slow there)."""
    n, c, t, v = x.shape
    o = weight.shape[0]
    if x.device.type == "cpu" and c <= GEMM_MAX_IN_CHANNELS:
        y = torch.baddbmm(bias.view(1, o, 1), weight.view(1, o, c).expand(n, o, c),
                          x.reshape(n, c, t * v))
        return y.view(n, o, t, v)
    return F.conv2d(x, weight.view(o, c, 1, 1), bias)


def batch_norm_cat(x: torch.Tensor, bns: list[nn.Module]) -> torch.Tensor:
    """``torch.cat([bn_i(x_i)], 1)`` for consecutive channel slices x_i of x, as one BN call.

    BatchNorm is per channel, so this is the same maths; the running statistics are updated
    in the concatenated buffers and copied back into each module (its ``num_batches_tracked``
    advanced as its own forward would). Falls back to the modules themselves whenever they are
    not plain, identically configured ``BatchNorm2d`` (SyncBatchNorm under DDP, hooks,
    cumulative averaging with ``momentum=None``, mixed train/eval modes).
    """
    b0 = bns[0]
    if not all(type(b) is nn.BatchNorm2d and b.affine and b.track_running_stats
               and b.momentum is not None and b.momentum == b0.momentum and b.eps == b0.eps
               and b.training == b0.training and not b._forward_hooks
               and not b._forward_pre_hooks for b in bns):
        return torch.cat([b(p) for b, p in zip(bns, x.split([b.num_features for b in bns], 1))], 1)
    mean = torch.cat([b.running_mean for b in bns])
    var = torch.cat([b.running_var for b in bns])
    y = F.batch_norm(x, mean, var, torch.cat([b.weight for b in bns]),
                     torch.cat([b.bias for b in bns]), b0.training, b0.momentum, b0.eps)
    if b0.training:
        with torch.no_grad():
            k = 0
            for b in bns:
                b.running_mean.copy_(mean[k:k + b.num_features])
                b.running_var.copy_(var[k:k + b.num_features])
                b.num_batches_tracked.add_(1)
                k += b.num_features
    return y


def gcn_aggregate(x: torch.Tensor, w12: torch.Tensor, b12: torch.Tensor, w4: list, added: list,
                  w3: list, b3: list) -> torch.Tensor:
    """sum_i conv3_i(x) @ topo_i of ``UnitGCN`` (before its BN), shared by the training path
    and the folded eval path (``ctrgcn_eval``, which passes BN-scaled ``w3``/``b3``).

    w12/b12: conv1 and conv2 of every subset stacked (2 S R, C_in); w4[i]: alpha * W4_i (C, R);
    added[i]: alpha * b4_i + PA_i^T flattened (C or 1, V*V); w3[i]/b3[i]: conv3_i.
    """
    n, _, _, v = x.shape
    r, c = w4[0].shape[1], w4[0].shape[0]
    # q, k of all subsets at once, as 1x1 convs of the time-mean (== time-mean of the convs)
    qk = F.conv1d(x.mean(2), w12.unsqueeze(-1), b12).view(n, len(w4), 2, r, v)
    # the relation map built transposed, rel_t[..., v, u] = tanh(q_u - k_v), so that the
    # topology comes out as topo^T, the right-hand side of the aggregation GEMM (a
    # transposed operand there made its backward copy the gradient)
    rel_t = torch.tanh(qk[:, :, 0].unsqueeze(-2) - qk[:, :, 1].unsqueeze(-1))  # (N,S,R,V,V)
    y = None
    for i, rel_i in enumerate(rel_t.unbind(1)):
        # bmm then an in-place add: baddbmm first copies the broadcast term into its
        # output, which cost more than the add (measured, CPU)
        topo_t = torch.bmm(w4[i].expand(n, c, r), rel_i.reshape(n, r, v * v)).add_(added[i])
        z = torch.matmul(conv1x1(x, w3[i], b3[i]), topo_t.view(n, c, v, v))  # sum_v x3 topo[u,v]
        y = z if y is None else y.add_(z)  # autograd keeps no matmul output: in place
    return y


# ----------------------------------------------------------------------------- initialisation
def conv_init(conv: nn.Conv2d) -> None:
    nn.init.kaiming_normal_(conv.weight, mode="fan_out")
    nn.init.constant_(conv.bias, 0)


def bn_init(bn: nn.modules.batchnorm._BatchNorm, scale: float) -> None:
    nn.init.constant_(bn.weight, scale)
    nn.init.constant_(bn.bias, 0)


def tcn_weights_init(m: nn.Module) -> None:
    """The official ``weights_init`` of the temporal block: note the random BN gammas."""
    if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out")
        nn.init.constant_(m.bias, 0)
    elif isinstance(m, nn.BatchNorm2d):
        with torch.no_grad():
            m.weight.normal_(1.0, 0.02)
            m.bias.fill_(0)


def rel_channels(in_channels: int) -> int:
    """CTRGC's reduced "relation" width R. CTR-GCN uses 8 for 3- or 9-channel input and C//8
    otherwise; we take Shap-Mix's relaxation (8 for C <= 3) so 2-D input does not get R = 0.
    Identical for every official configuration."""
    return 8 if in_channels <= 3 or in_channels == 9 else in_channels // 8


# ----------------------------------------------------------------------------- blocks
class CTRGC(nn.Module):
    """One channel-wise topology refinement graph convolution (one subset of A)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.rel_channels = r = rel_channels(in_channels)
        self.conv1 = nn.Conv2d(in_channels, r, 1)
        self.conv2 = nn.Conv2d(in_channels, r, 1)
        self.conv3 = nn.Conv2d(in_channels, out_channels, 1)
        self.conv4 = nn.Conv2d(r, out_channels, 1)
        for m in (self.conv1, self.conv2, self.conv3, self.conv4):
            conv_init(m)

    def forward(self, x: torch.Tensor, a: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """Reference formula (the official ``CTRGC``); :class:`UnitGCN` runs a batched equivalent."""
        q, k, v = self.conv1(x).mean(-2), self.conv2(x).mean(-2), self.conv3(x)
        rel = torch.tanh(q.unsqueeze(-1) - k.unsqueeze(-2))          # (N, R, V, V)
        topo = self.conv4(rel) * alpha + a                            # (N, C, V, V)
        return torch.einsum("ncuv,nctv->nctu", topo, v)


class UnitGCN(nn.Module):
    """y = ReLU(BN(sum_i CTRGC_i(x, PA[i], alpha)) + down(x))."""

    def __init__(self, in_channels: int, out_channels: int, a: torch.Tensor):
        super().__init__()
        self.convs = nn.ModuleList(CTRGC(in_channels, out_channels) for _ in range(a.shape[0]))
        self.down = None
        if in_channels != out_channels:
            self.down = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1),
                                      nn.BatchNorm2d(out_channels))
        self.PA = nn.Parameter(a.clone())
        self.alpha = nn.Parameter(torch.zeros(1))
        self.bn = nn.BatchNorm2d(out_channels)
        # Same order as the official constructor (it re-initialises the CTRGC convs: the
        # random stream, hence a seeded model, matches the official one).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                conv_init(m)
            elif isinstance(m, nn.BatchNorm2d):
                bn_init(m, 1)
        bn_init(self.bn, 1e-6)

    def aggregate_args(self, scale: torch.Tensor | None = None) -> tuple:
        """The weights :func:`gcn_aggregate` takes; ``scale`` (C,) multiplies conv3's weight and
        bias (the folded eval path puts the output BN's scale there)."""
        r, c = self.convs[0].rel_channels, self.convs[0].conv3.weight.shape[0]
        w3 = [m.conv3.weight.flatten(1) for m in self.convs]
        b3 = [m.conv3.bias for m in self.convs]
        if scale is not None:
            w3, b3 = [w * scale.unsqueeze(1) for w in w3], [b * scale for b in b3]
        return (torch.cat([w for m in self.convs for w in (m.conv1.weight, m.conv2.weight)]).flatten(1),
                torch.cat([b for m in self.convs for b in (m.conv1.bias, m.conv2.bias)]),
                # topo = conv4(rel) * alpha + PA[i] as one GEMM: (alpha W4) @ rel + (alpha b4 + PA)
                [m.conv4.weight.view(c, r) * self.alpha for m in self.convs],
                [(m.conv4.bias * self.alpha).unsqueeze(1) + self.PA[i].t().reshape(1, -1)
                 for i, m in enumerate(self.convs)],
                w3, b3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = gcn_aggregate(x, *self.aggregate_args())
        y = self.bn(y)
        res = x if self.down is None else self.down[1](
            conv1x1(x, self.down[0].weight, self.down[0].bias))
        return F.relu_(y.add_(res))  # BN backward needs its input, not its output


class TemporalConv(nn.Module):
    """(k, 1) temporal conv with dilation and 'same' padding, then BN."""

    def __init__(self, channels: int, kernel_size: int, stride: int, dilation: int):
        super().__init__()
        pad = (kernel_size + (kernel_size - 1) * (dilation - 1) - 1) // 2
        self.conv = nn.Conv2d(channels, channels, (kernel_size, 1), padding=(pad, 0),
                              stride=(stride, 1), dilation=(dilation, 1))
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class MultiScaleTemporalConv(nn.Module):
    """Four branches of C/4 channels each: two dilated temporal convs, a max-pool, a 1x1 conv.

    ``branches`` keeps the official ``nn.Sequential`` indices (ReLU and MaxPool included) so
    that the state_dict keys are ``branches.{0,1}.{0,1,3.conv,3.bn}``, ``branches.2.{0,1,4}``
    and ``branches.3.{0,1}``. The block's own residual is off in CTR-GCN.
    """

    def __init__(self, channels: int, stride: int = 1):
        super().__init__()
        q = channels // (len(TCN_DILATIONS) + 2)
        self.stride = stride
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, q, 1), nn.BatchNorm2d(q), nn.ReLU(inplace=True),
                          TemporalConv(q, TCN_KERNEL, stride, d))
            for d in TCN_DILATIONS)
        self.branches.append(nn.Sequential(
            nn.Conv2d(channels, q, 1), nn.BatchNorm2d(q), nn.ReLU(inplace=True),
            nn.MaxPool2d((3, 1), stride=(stride, 1), padding=(1, 0)), nn.BatchNorm2d(q)))
        self.branches.append(nn.Sequential(
            nn.Conv2d(channels, q, 1, stride=(stride, 1)), nn.BatchNorm2d(q)))
        self.apply(tcn_weights_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.branches
        q = b[0][0].weight.shape[0]
        # The four entry convs share x: run them as one (branch 3 strides by slicing).
        h = conv1x1(x, torch.cat([br[0].weight for br in b]), torch.cat([br[0].bias for br in b]))
        a = F.relu_(batch_norm_cat(h[:, :3 * q], [b[0][1], b[1][1], b[2][1]]))
        a0, a1, a2 = a.split(q, 1)
        if a2.device.type == "cpu":  # the channels-last CPU max-pool kernel is ~2x faster
            pooled = b[2][3](a2.contiguous(memory_format=torch.channels_last)).contiguous()
        else:
            pooled = b[2][3](a2)
        out = torch.cat([b[0][3].conv(a0), b[1][3].conv(a1), pooled,
                         h[:, 3 * q:, :: self.stride]], 1)
        return batch_norm_cat(out, [b[0][3].bn, b[1][3].bn, b[2][4], b[3][1]])


class UnitTCN(nn.Module):
    """The strided 1x1 conv + BN on the block residual of l5 and l8."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, stride=(stride, 1))
        self.bn = nn.BatchNorm2d(out_channels)
        conv_init(self.conv)
        bn_init(self.bn, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class TCNGCNUnit(nn.Module):
    """y = ReLU(tcn1(gcn1(x)) + residual(x)), residual = none / identity / UnitTCN."""

    def __init__(self, in_channels: int, out_channels: int, a: torch.Tensor, stride: int = 1,
                 residual: bool = True):
        super().__init__()
        self.gcn1 = UnitGCN(in_channels, out_channels, a)
        self.tcn1 = MultiScaleTemporalConv(out_channels, stride)
        self.use_residual = residual
        self.residual = None
        if residual and (in_channels != out_channels or stride != 1):
            self.residual = UnitTCN(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.tcn1(self.gcn1(x))  # a fresh BN output: safe to update in place
        if self.use_residual:
            y = y.add_(x if self.residual is None else self.residual(x))
        return F.relu_(y)


# ----------------------------------------------------------------------------- model
@BACKBONES.register("ctrgcn")
class CTRGCN(SkeletonBackbone):
    """CTR-GCN on (N, C, T, V, M) skeletons; every person runs through the backbone alone.

    Model contract (:mod:`benchmark.backbones`): ``features(x)`` -> (N, M, feat_dim, T/4, V),
    ``pool`` -> (N, feat_dim), ``head`` -> logits, ``forward(x, return_feat=False)``.
    The classifier is the official ``fc`` (dropout before it); replace ``model.fc`` to swap it.

    Args:
        num_class: number of classes.
        num_point: joints V; must match the graph.
        num_person: persons M (sizes data_bn: M*V*C channels).
        graph: 'ntu' (25 joints), 'ucla' (20) or 'coco17' (17).
        in_channels: coordinates per joint C.
        base_channel: width of l1..l4 (64 is the official model; 16/32 for CPU profiles).
        drop_out: dropout before fc (0 in every official config).
    """

    def __init__(self, num_class: int = 60, num_point: int = 25, num_person: int = 2,
                 graph: str = "ntu", in_channels: int = 3, base_channel: int = 64,
                 drop_out: float = 0):
        super().__init__()
        a = torch.from_numpy(spatial_graph(graph))
        if a.shape[-1] != num_point:
            raise BenchmarkError(f"graph {graph!r} has {a.shape[-1]} joints, num_point={num_point}")
        if base_channel < 8 or base_channel % 8:
            raise BenchmarkError(f"base_channel must be a multiple of 8, got {base_channel}")
        self.num_class, self.num_point, self.num_person = num_class, num_point, num_person
        self.graph, self.in_channels, self.base_channel = layout_name(graph), in_channels, base_channel
        self.feat_dim = 4 * base_channel

        self.data_bn = nn.BatchNorm1d(num_person * in_channels * num_point)
        b = base_channel
        self.l1 = TCNGCNUnit(in_channels, b, a, residual=False)
        self.l2 = TCNGCNUnit(b, b, a)
        self.l3 = TCNGCNUnit(b, b, a)
        self.l4 = TCNGCNUnit(b, b, a)
        self.l5 = TCNGCNUnit(b, 2 * b, a, stride=2)
        self.l6 = TCNGCNUnit(2 * b, 2 * b, a)
        self.l7 = TCNGCNUnit(2 * b, 2 * b, a)
        self.l8 = TCNGCNUnit(2 * b, 4 * b, a, stride=2)
        self.l9 = TCNGCNUnit(4 * b, 4 * b, a)
        self.l10 = TCNGCNUnit(4 * b, 4 * b, a)

        self.fc = nn.Linear(4 * b, num_class)
        nn.init.normal_(self.fc.weight, 0, math.sqrt(2.0 / num_class))
        bn_init(self.data_bn, 1)
        self.drop_out = nn.Dropout(drop_out) if drop_out else nn.Identity()

    def layers(self) -> list[TCNGCNUnit]:
        return [getattr(self, f"l{i}") for i in range(1, 11)]

    def blocks(self) -> list[nn.Module]:
        """The backbone contract's blocks: l1..l10, applied in turn after :meth:`stem`."""
        return self.layers()

    def block_names(self) -> list[str]:
        return [f"l{i}" for i in range(1, 11)]

    # (out = base x mult, stride) of l1..l10
    _LAYERS = ((1, 1), (1, 1), (1, 1), (1, 1), (2, 2), (2, 1), (2, 1), (4, 2), (4, 1), (4, 1))

    def make_blocks(self, start: int, width: float = 1.0) -> tuple[list[nn.Module], int]:
        """New, freshly initialised copies of blocks ``start..`` (0-based) with their widths
        scaled by ``width`` (the optional contract extension RIDE's narrower experts use);
        returns (blocks, output channels)."""
        a = torch.from_numpy(spatial_graph(self.graph))
        base = self.base_channel
        blocks, c_in = [], base * self._LAYERS[start - 1][0]
        for mult, stride in self._LAYERS[start:]:
            c_out = int(base * mult * width)
            if c_out % 4 or c_out < 8:  # 4 temporal branches; CTRGC needs in // 8 >= 1
                raise BenchmarkError(f"expert width {c_out} must be a multiple of 4, >= 8")
            blocks.append(TCNGCNUnit(c_in, c_out, a, stride=stride))
            c_in = c_out
        return blocks, c_in

    def eval_chunk(self, t: int, v: int, m: int) -> int:
        """Clips per piece of a CPU no-grad eval forward: l1's output of a piece ~ the budget."""
        return max(1, round(CPU_EVAL_CHUNK_BYTES / (4 * m * self.base_channel * t * v)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T, V, M) (or (N, T, V*C), read as M=1) -> feature map (N, M, 4*base, T/4, V)."""
        n = x.shape[0]
        m = 1 if x.dim() == 3 else x.shape[4]
        x = self.stem(x)
        t, v = x.shape[2], x.shape[3]
        if (not self.training and not torch.is_grad_enabled() and x.device.type == "cpu"
                and self.data_bn.track_running_stats and ctrgcn_eval.foldable(self)):
            # eval mode treats every clip alone (running BN stats): BN folded into the convs,
            # cache-sized pieces of clips (~2x faster than one batch of 32 on CPU)
            x = ctrgcn_eval.run_unique(ctrgcn_eval.fold(self.layers()), x,
                                       self.eval_chunk(t, v, m) * m)
        else:
            for layer in self.layers():
                x = layer(x)
        return x.view(n, m, *x.shape[1:])


# ----------------------------------------------------------------------------- checkpoints
def _shape(t: Any) -> str:
    return str(tuple(t.shape)) if hasattr(t, "shape") else type(t).__name__


from . import ctrgcn_eval  # noqa: E402  (imports this module's blocks)


def load_official_state_dict(model: nn.Module, sd: Mapping[str, Any],
                             source: str | os.PathLike = "state_dict") -> None:
    """Load an official CTR-GCN / Shap-Mix state_dict strictly (a ``module.`` prefix is dropped).

    Raises:
        BenchmarkError: ``<source>: ...`` naming the first missing, unexpected or mismatching key.
    """
    sd = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}
    own = model.state_dict()
    what = f"checkpoint does not fit {type(model).__name__}"
    missing = [k for k in own if k not in sd]
    extra = [k for k in sd if k not in own]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s), first {missing[0]!r}")
        if extra:
            parts.append(f"{len(extra)} unexpected key(s), first {extra[0]!r}")
        raise bad_file(source, f"{what}: {'; '.join(parts)}")
    bad = [k for k, v in own.items() if _shape(sd[k]) != _shape(v)]
    if bad:
        k = bad[0]
        raise bad_file(source, f"{what}: {k} has shape {_shape(sd[k])} in the checkpoint but "
                               f"{_shape(own[k])} in the model ({len(bad)} mismatching tensor(s); "
                               f"wrong num_class, graph, num_person or base_channel?)")
    model.load_state_dict(sd, strict=True)


def load_checkpoint_file(path: str | os.PathLike, model: nn.Module) -> None:
    """Load weights from ``path``: a bare state_dict (the official format) or a dict holding
    one under 'model' or 'state_dict'. Never unpickles arbitrary objects (weights_only)."""
    if not os.path.isfile(path):
        raise bad_file(path, "no such checkpoint file")
    obj = read_weights_only(path)
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(torch.is_tensor(v) for v in obj.values()):
        raise bad_file(path, "holds no state_dict (expected tensors by name, or a dict with "
                             "'model' or 'state_dict')")
    load_official_state_dict(model, obj, source=path)
