"""ST-GCN++ backbone (Duan et al., "PYSKL: Towards Good Practices for Skeleton Action
Recognition", ACM MM 2022), as PYSKL builds it and as Shap-Mix uses it as a second backbone.

The official model is PYSKL's ``RecognizerGCN`` with ``backbone = STGCN(gcn_adaptive='init',
gcn_with_res=True, tcn_type='mstcn', graph_cfg=dict(layout='nturgb+d', mode='spatial'))``
(``pyskl/models/gcns/stgcn.py`` and ``utils/{gcn,tcn}.py``) and ``cls_head = GCNHead``
(``pyskl/models/heads/simple_head.py``). The graph is Shap-Mix's ``graph/ntu_stgcn_pp.py`` (a
copy of PYSKL's ``Graph``): :func:`benchmark.backbones.graph.pyskl_spatial_graph`.

Ours computes what the official model computes, from the same initial random stream (PyTorch's
default init everywhere, then ``normal_(std=0.01)`` for the classifier, as
``BaseRecognizer.init_weights`` leaves it), with the official parameter names under the
backbone, so a PYSKL checkpoint loads with ``load_official_state_dict`` (``backbone.`` dropped,
``cls_head.fc_cls`` -> ``fc``, strict). ``scripts/check_stgcnpp_official.py`` checks logits,
gradients and BN statistics against the official code. The official model keeps PYSKL's
quirks: one BatchNorm over V*C for every person ('VC' data_bn), and no first block when
``in_channels == base_channel``.

Ours computes the same maths in another memory layout (``scripts/check_stgcnpp_official.py``:
a CPU training step ~1.2x faster than the official one; only the summation order differs).
Inside the blocks a feature map lives as (V, N, T, C), contiguous:

* every 1x1 conv is one GEMM over the channels (``F.linear``; oneDNN's NCHW 1x1 convs were
  ~1.5x slower), and the graph aggregation sum_v A_k[v, w] z_k[v] is one GEMM over the
  outermost dim per subset, accumulated in place (``addmm_``) - no permuted copy of the
  3-subset conv output as in the official einsum, no batched small GEMMs;
* a ``unit_gcn`` that widens (C_in < C_out: blocks 1, 5, 8) aggregates over joints first:
  ``sum_k (W_k x + b_k) A_k = W' (x A) + sum_k b_k colsum(A_k)``, the aggregation on 3 * C_in
  channels instead of 3 * C_out (block 1: ~4x faster, blocks 5 and 8: ~1.3x);
* BatchNorm sees the same memory as a channels-last (V*N, C, T, 1) map, temporal convs and the
  max-pool as a channels-last (1, C, V*N, T) map (oneDNN's fastest layouts here, measured);
* ``mstcn``'s five BN'd branch entries run as one GEMM and one BN call; the strided '1x1'
  branch and residual convs read only the frames they keep;
* residual additions and ReLUs run in place on BN's fresh outputs (never on views, which would
  cost autograd a CopySlices).

Blocks take and return (N, C, T, V) views of that memory (any (N, C, T, V) tensor works).
Measured against the official model: float32 logits within ~5e-6 relative, float64 ~1e-13;
train-mode float32 gradients carry ~2-5x the official model's own rounding error, because
PyTorch's channels-last CPU BatchNorm sums its statistics in float32 (its NCHW kernel in
float64) - far below SGD noise, and the price of the layout.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..ckpt import read_weights_only
from ..errors import BenchmarkError, bad_file
from . import BACKBONES, ctrgcn
from .ctrgcn import batch_norm_cat
from .graph import layout_name, pyskl_spatial_graph

# PYSKL mstcn's default ms_cfg: four (kernel, dilation) temporal convs, a max-pool, a 1x1 conv
TCN_BRANCHES = ((3, 1), (3, 2), (3, 3), (3, 4), ("max", 3), "1x1")
# (width multiplier, temporal stride) of blocks 1..10: PYSKL STGCN's inflate_stages = down_stages
# = [5, 8], ch_ratio 2
BLOCKS = ((1, 1), (1, 1), (1, 1), (1, 1), (2, 2), (2, 1), (2, 1), (4, 2), (4, 1), (4, 1))


# ----------------------------------------------------------------------------- layout
def to_vntc(x: torch.Tensor) -> torch.Tensor:
    """(N, C, T, V) view -> (V, N, T, C) contiguous (free for our blocks' outputs)."""
    return x.permute(3, 0, 2, 1).contiguous()


def from_vntc(x: torch.Tensor) -> torch.Tensor:
    """(V, N, T, C) -> the (N, C, T, V) view of the same memory."""
    return x.permute(1, 3, 2, 0)


def as_2d(x: torch.Tensor) -> torch.Tensor:
    """(V, N, T, C) -> the channels-last (V*N, C, T, 1) map of the same memory (a copy only
    for a channel slice)."""
    v, n, t, c = x.shape
    u = x.reshape(v * n, t, 1, c).permute(0, 3, 1, 2)
    return u.contiguous(memory_format=torch.channels_last)


def from_2d(y: torch.Tensor, v: int) -> torch.Tensor:
    """A channels-last (V*N, C, T, 1) map -> (V, N, T, C), the same memory."""
    return y.permute(0, 2, 3, 1).reshape(v, y.shape[0] // v, y.shape[2], y.shape[1])


def temporal(x: torch.Tensor, module: nn.Module) -> torch.Tensor:
    """A (k, 1) temporal conv or max-pool of a (V, N, T, C) map, run as (1, k) over the
    channels-last (1, C, V*N, T) map of the same memory: oneDNN's fastest layout here
    (measured, CPU: up to ~2x faster than (V*N, C, T, 1), and no copy to NCHW)."""
    v, n, t, c = x.shape
    u = x.reshape(1, v * n, t, c).permute(0, 3, 1, 2)
    u = u.contiguous(memory_format=torch.channels_last)
    if isinstance(module, nn.Conv2d):
        w = module.weight
        y = F.conv2d(u, w.view(w.shape[0], w.shape[1], 1, w.shape[2]), module.bias,
                     stride=(1, module.stride[0]), padding=(0, module.padding[0]),
                     dilation=(1, module.dilation[0]))
    else:  # MaxPool2d((k, 1)): the same window scan order along T, hence the same argmax ties
        k, s, pad = (module.kernel_size, module.stride, module.padding)
        y = F.max_pool2d(u, (1, k[0]), (1, s[0]), (0, pad[0]))
    return y.permute(0, 2, 3, 1).reshape(v, n, y.shape[3], y.shape[1])


def bn_act(x: torch.Tensor, bn, res: torch.Tensor | None = None, relu: bool = True) -> torch.Tensor:
    """ReLU(BN(x) + res) of (V, N, T, C) maps. ``bn``: a BN module or a function of the 2-D
    map. The addition and ReLU run in place on BN's fresh output (its backward needs its input,
    not its output), on the base tensor: in place on a view would cost autograd a CopySlices."""
    y = bn(as_2d(x))
    if res is not None:
        y.add_(as_2d(res))
    if relu:
        y.relu_()
    return from_2d(y, x.shape[0])


# ----------------------------------------------------------------------------- blocks
class UnitTCN(nn.Module):
    """PYSKL ``unit_tcn``: (k, 1) temporal conv (dilated, 'same' padding, strided) [+ BN]."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 9,
                 stride: int = 1, dilation: int = 1, norm: bool = True):
        super().__init__()
        pad = (kernel_size + (kernel_size - 1) * (dilation - 1) - 1) // 2
        self.conv = nn.Conv2d(in_channels, out_channels, (kernel_size, 1), padding=(pad, 0),
                              stride=(stride, 1), dilation=(dilation, 1))
        self.bn = nn.BatchNorm2d(out_channels) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


def linear_1x1(x: torch.Tensor, conv: nn.Conv2d, stride: int = 1) -> torch.Tensor:
    """A 1x1 conv (temporally strided) of a (V, N, T, C) map: one GEMM."""
    if stride > 1:
        x = x[:, :, ::stride]
    return F.linear(x, conv.weight.flatten(1), conv.bias)


class UnitGCN(nn.Module):
    """PYSKL ``unit_gcn`` with adaptive='init' (A is a parameter), conv_pos='pre', with_res:
    y = ReLU(BN(sum_k (W_k x + b_k) A_k) + down(x)). ``forward`` is the official formula on
    (N, C, T, V), kept as the readable reference; the blocks run ``forward_vntc``."""

    def __init__(self, in_channels: int, out_channels: int, a: torch.Tensor):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.num_subsets = a.shape[0]
        self.bn = nn.BatchNorm2d(out_channels)
        self.A = nn.Parameter(a.clone())
        self.conv = nn.Conv2d(in_channels, out_channels * a.shape[0], 1)
        self.down = None
        if in_channels != out_channels:
            self.down = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1),
                                      nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, t, v = x.shape
        res = x if self.down is None else self.down(x)
        z = self.conv(x).view(n, self.num_subsets, -1, t, v)
        return F.relu(self.bn(torch.einsum("nkctv,kvw->nctw", z, self.A)) + res)

    def aggregate(self, x: torch.Tensor) -> torch.Tensor:
        """sum_k (W_k x + b_k) A_k of a (V, N, T, C_in) map -> (V, N, T, C)."""
        v, n, t, c_in = x.shape
        k, c = self.num_subsets, self.out_channels
        w, b = self.conv.weight.view(k, c, c_in), self.conv.bias.view(k, c)
        if c_in >= c:
            # per subset: a GEMM over channels, then one over joints, y += A_k^T z_k (in place:
            # the mm backward needs no output; as fast as one GEMM over the stacked subsets)
            zs = [F.linear(x, w[i], b[i]).view(v, -1) for i in range(k)]
            a = self.A.to(zs[0].dtype)  # (autocast does not cast in-place ops' operands)
            y = torch.mm(a[0].t(), zs[0])
            for i in range(1, k):
                y.addmm_(a[i].t(), zs[i])
            return y.view(v, n, t, c)
        # narrower input: aggregate first, W' (x A_k) + b_k colsum(A_k), on K*C_in channels
        xa = torch.mm(self.A.permute(0, 2, 1).reshape(k * v, v), x.reshape(v, -1))
        xa = xa.view(k, v, n, t, c_in).permute(1, 2, 3, 0, 4).reshape(v, n, t, k * c_in)
        bias = (self.A.sum(1).unsqueeze(-1) * b.unsqueeze(1)).sum(0)          # (V, C)
        return F.linear(xa, w.transpose(0, 1).reshape(c, k * c_in)) + bias.view(v, 1, 1, c)

    def forward_vntc(self, x: torch.Tensor) -> torch.Tensor:
        res = x if self.down is None else bn_act(linear_1x1(x, self.down[0]), self.down[1],
                                                 relu=False)
        return bn_act(self.aggregate(x), self.bn, res)


class MSTCN(nn.Module):
    """PYSKL ``mstcn``: six branches (C/6 channels each, the remainder on the first), then
    BN-ReLU-1x1 conv over their concatenation and a BN. The submodule indices are the
    official ones: ``branches.{0..3}.{0,1,3.conv}``, ``branches.4.{0,1}``, ``branches.5``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        nb = len(TCN_BRANCHES)
        mid = out_channels // nb
        rem = out_channels - mid * (nb - 1)
        self.widths = [rem] + [mid] * (nb - 1)
        self.stride = stride
        branches = []
        for cfg, c in zip(TCN_BRANCHES, self.widths):
            if cfg == "1x1":
                branches.append(nn.Conv2d(in_channels, c, 1, stride=(stride, 1)))
            elif cfg[0] == "max":
                branches.append(nn.Sequential(
                    nn.Conv2d(in_channels, c, 1), nn.BatchNorm2d(c), nn.ReLU(),
                    nn.MaxPool2d((cfg[1], 1), stride=(stride, 1), padding=(1, 0))))
            else:
                branches.append(nn.Sequential(
                    nn.Conv2d(in_channels, c, 1), nn.BatchNorm2d(c), nn.ReLU(),
                    UnitTCN(c, c, cfg[0], stride=stride, dilation=cfg[1], norm=False)))
        self.branches = nn.ModuleList(branches)
        self.transform = nn.Sequential(nn.BatchNorm2d(out_channels), nn.ReLU(),
                                       nn.Conv2d(out_channels, out_channels, 1))
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The official formula on (N, C, T, V): the readable reference."""
        feat = torch.cat([br(x) for br in self.branches], 1)
        return self.bn(self.transform(feat))

    def forward_vntc(self, x: torch.Tensor, res: torch.Tensor | None = None,
                     relu: bool = False) -> torch.Tensor:
        """mstcn(x) [+ res] [then ReLU] on (V, N, T, C) maps (the block's residual folded in)."""
        b, s = self.branches, self.stride
        # the five BN'd branch entries as one GEMM and one BN call
        entry = b[:-1]
        h = F.linear(x, torch.cat([br[0].weight for br in entry]).flatten(1),
                     torch.cat([br[0].bias for br in entry]))
        h = bn_act(h, lambda u: batch_norm_cat(u, [br[1] for br in entry]))
        parts = h.split(self.widths[:-1], -1)
        outs = [temporal(p, b[i][3].conv) for i, p in enumerate(parts[:-1])]
        outs.append(temporal(parts[-1], b[4][3]))
        outs.append(linear_1x1(x, b[5], s))  # '1x1' branch: strided 1x1 conv
        feat = bn_act(torch.cat(outs, -1), self.transform[0])
        return bn_act(linear_1x1(feat, self.transform[2]), self.bn, res, relu)


class STGCNBlock(nn.Module):
    """PYSKL ``STGCNBlock``: y = ReLU(mstcn(unit_gcn(x)) + residual(x)), residual = none /
    identity / ``unit_tcn`` with a 1x1 kernel (strided). Takes and returns (N, C, T, V)."""

    def __init__(self, in_channels: int, out_channels: int, a: torch.Tensor, stride: int = 1,
                 residual: bool = True):
        super().__init__()
        self.gcn = UnitGCN(in_channels, out_channels, a)
        self.tcn = MSTCN(out_channels, out_channels, stride)
        self.use_residual = residual
        self.residual = None
        if residual and (in_channels != out_channels or stride != 1):
            self.residual = UnitTCN(in_channels, out_channels, 1, stride)
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = to_vntc(x)
        r = self.residual
        res = None if not self.use_residual else x if r is None else bn_act(
            linear_1x1(x, r.conv, self.stride), r.bn, relu=False)
        return from_vntc(self.tcn.forward_vntc(self.gcn.forward_vntc(x), res, relu=True))


# ----------------------------------------------------------------------------- model
@BACKBONES.register("stgcnpp")
class STGCNPP(nn.Module):
    """ST-GCN++ on (N, C, T, V, M) skeletons; every person runs through the backbone alone.

    Backbone contract (``benchmark.backbones``): blocks ``gcn.0`` .. ``gcn.9`` (the official
    names), ``features(x)`` -> (N, M, 4*base, T/4, V), ``pool`` -> (N, feat_dim),
    ``head`` = ``fc`` after dropout (PYSKL GCNHead: pool over T, V then persons, linear).

    Args:
        num_class: number of classes.
        num_point: joints V; must match the graph.
        num_person: persons M (the official data_bn is shared by persons: it only sets M).
        graph: 'ntu' (25 joints, PYSKL's 'nturgb+d'), 'ucla' (20) or 'coco17' (17).
        in_channels: coordinates per joint C.
        base_channel: width of blocks 1..4 (64 is the official model; smaller for CPU).
        drop_out: dropout before fc (GCNHead's default 0 in every official config).
    """

    def __init__(self, num_class: int = 60, num_point: int = 25, num_person: int = 2,
                 graph: str = "ntu", in_channels: int = 3, base_channel: int = 64,
                 drop_out: float = 0):
        super().__init__()
        a = torch.from_numpy(pyskl_spatial_graph(graph))
        if a.shape[-1] != num_point:
            raise BenchmarkError(f"graph {graph!r} has {a.shape[-1]} joints, num_point={num_point}")
        if base_channel < len(TCN_BRANCHES):
            raise BenchmarkError(f"stgcnpp: base_channel must be >= {len(TCN_BRANCHES)} (one "
                                 f"channel per temporal branch), got {base_channel}")
        self.num_class, self.num_point, self.num_person = num_class, num_point, num_person
        self.graph, self.in_channels = layout_name(graph), in_channels
        self.base_channel = base_channel
        self.feat_dim = 4 * base_channel

        self.data_bn = nn.BatchNorm1d(in_channels * num_point)  # PYSKL data_bn_type 'VC'
        blocks, c_in = [], in_channels
        for i, (mult, stride) in enumerate(BLOCKS):
            if i == 0 and in_channels == base_channel:
                continue  # PYSKL builds block 1 only when in_channels != base_channels
            blocks.append(STGCNBlock(c_in, base_channel * mult, a, stride, residual=i > 0))
            c_in = base_channel * mult
        self.gcn = nn.ModuleList(blocks)
        self.fc = nn.Linear(self.feat_dim, num_class)   # GCNHead.fc_cls
        nn.init.normal_(self.fc.weight, 0, 0.01)        # mmcv normal_init(std=0.01), bias 0
        nn.init.constant_(self.fc.bias, 0)
        self.drop_out = nn.Dropout(drop_out) if drop_out else nn.Identity()

    # block_names() are the official parameter prefixes, dotted ("gcn.3"); the contract reads
    # and replaces blocks by name (getattr / setattr(backbone, name, module): RIDE), so a
    # dotted name resolves through its parent. (Plain names never contain a dot.)
    def __getattr__(self, name: str) -> Any:
        if "." in name:
            return self.get_submodule(name)
        return super().__getattr__(name)

    def __setattr__(self, name: str, value: Any) -> None:
        if "." in name:
            parent, _, child = name.rpartition(".")
            setattr(self.get_submodule(parent), child, value)
        else:
            super().__setattr__(name, value)

    def blocks(self) -> list[nn.Module]:
        return list(self.gcn)

    def block_names(self) -> list[str]:
        return [f"gcn.{i}" for i in range(len(self.gcn))]

    def make_blocks(self, start: int, width: float = 1.0) -> tuple[list[nn.Module], int]:
        """Fresh copies of blocks ``start..`` (0-based) with widths scaled by ``width`` (RIDE's
        narrower experts); returns (blocks, output channels)."""
        a = torch.from_numpy(pyskl_spatial_graph(self.graph))
        layers = BLOCKS[len(BLOCKS) - len(self.gcn):]
        blocks, c_in = [], self.base_channel * layers[start - 1][0]
        for mult, stride in layers[start:]:
            c_out = int(self.base_channel * mult * width)
            if c_out < len(TCN_BRANCHES):
                raise BenchmarkError(f"expert width {c_out} must be >= {len(TCN_BRANCHES)}")
            blocks.append(STGCNBlock(c_in, c_out, a, stride))
            c_in = c_out
        return blocks, c_in

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T, V, M) (or (N, T, V*C), read as M=1) -> (N*M, C, T, V) after data_bn."""
        if x.dim() == 3:
            n, t, _ = x.shape
            x = x.view(n, t, self.num_point, -1).permute(0, 3, 1, 2).unsqueeze(-1)
        n, c, t, v, m = x.shape
        # data_bn channel = v*C + c for every person (PYSKL 'VC')
        x = self.data_bn(x.permute(0, 4, 3, 1, 2).reshape(n * m, v * c, t))
        return from_vntc(x.view(n * m, v, c, t).permute(1, 0, 3, 2).contiguous())

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T, V, M) -> the last block's map (N, M, 4*base, T/4, V)."""
        n = x.shape[0]
        m = 1 if x.dim() == 3 else x.shape[4]
        x = self.stem(x)
        for block in self.gcn:
            x = block(x)
        return x.view(n, m, *x.shape[1:])

    def pool(self, feat_map: torch.Tensor) -> torch.Tensor:
        """GCNHead: mean over time and joints, then over persons (padded persons included)."""
        return feat_map.mean((3, 4)).mean(1)

    def head(self, feat: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop_out(feat))

    def forward(self, x: torch.Tensor, return_feat: bool = False):
        feat = self.pool(self.features(x))
        logits = self.head(feat)
        return (logits, feat) if return_feat else logits


# ----------------------------------------------------------------------------- checkpoints
HEAD_PREFIX = "cls_head.fc_cls."


def from_official_key(key: str) -> str:
    """A PYSKL ``RecognizerGCN`` key -> ours: ``backbone.X`` -> ``X``, ``cls_head.fc_cls.*`` ->
    ``fc.*`` (a DDP ``module.`` prefix is dropped first)."""
    key = key[len("module."):] if key.startswith("module.") else key
    if key.startswith("backbone."):
        return key[len("backbone."):]
    if key.startswith(HEAD_PREFIX):
        return "fc." + key[len(HEAD_PREFIX):]
    return key


def to_official_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Our state_dict under the official names (what a PYSKL checkpoint stores)."""
    return {(HEAD_PREFIX + k[3:] if k.startswith("fc.") else "backbone." + k): v
            for k, v in model.state_dict().items()}


def load_official_state_dict(model: nn.Module, sd: Mapping[str, Any],
                             source: str | os.PathLike = "state_dict") -> None:
    """Load a PYSKL ST-GCN++ state_dict (``backbone.*`` + ``cls_head.fc_cls.*``, or ours)
    strictly.

    Raises:
        BenchmarkError: ``<source>: ...`` naming the first missing, unexpected or mismatching key.
    """
    ctrgcn.load_official_state_dict(model, {from_official_key(k): v for k, v in sd.items()},
                                    source)


def load_checkpoint_file(path: str | os.PathLike, model: nn.Module) -> None:
    """Load weights from ``path``: a PYSKL/mmcv checkpoint (state_dict under 'state_dict'), a
    bare state_dict, or a dict holding one under 'model'. Never unpickles arbitrary objects."""
    if not os.path.isfile(path):
        raise bad_file(path, "no such checkpoint file")
    obj = read_weights_only(path)
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(torch.is_tensor(v) for v in obj.values()):
        raise bad_file(path, "holds no state_dict (expected tensors by name, or a dict with "
                             "'state_dict' or 'model')")
    load_official_state_dict(model, obj, source=path)
