"""2s-AGCN's attention-enhanced adaptive graph convolutional network, "AAGCN" (Shi et al.,
"Skeleton-Based Action Recognition with Multi-Stream Adaptive Graph Convolutional Networks",
TIP 2020): the "2s-AGCN" row of Shap-Mix's backbone table (3.80M parameters: 3,797,088 on
NTU-120).

It computes what ``model/aagcn.py:Model`` of lshiwjx/2s-AGCN computes with its default and
NTU-config arguments (``adaptive=True, attention=True``, graph ``ntu_rgb_d`` 'spatial'), with
the same initialisation and random stream and exactly the official ``state_dict`` keys and
shapes, so official checkpoints load with ``strict=True`` and give the same logits
(``scripts/check_aagcn_official.py``). ``base_channel`` scales the widths (64 is the official
64/128/256); the graph is :func:`spatial_graph` (identical to the official ``ntu_rgb_d`` one).

One block (``TCNGCNUnit``) is ``ReLU(tcn(gcn(x)) + residual(x))``; ``gcn`` (``UnitGCN``) is

    A_i = PA_i + alpha * tanh(a_i(x)^T b_i(x) / (R T))     a_i, b_i: 1x1 convs to R = C_out/4
    y = ReLU(BN(sum_i d_i(x A_i)) + down(x))                d_i: 1x1 convs, i = 3 subsets
    y = y (1 + s(y)) (1 + t(.)) (1 + c(.))                  spatial, temporal, channel attention

and ``tcn`` a (9, 1) temporal conv + BN. Where the official code loops, ours batches (same
maths; only the floating-point summation order differs):

* the six ``conv_a``/``conv_b`` and ``down``'s conv all read x: one 1x1 conv (channels
  interleaved a_0, b_0, a_1, ... so that every (clip, subset) pair is an evenly strided batch),
  and the three adaptive maps come out of one batched GEMM, instead of 6 convs, 3 permuted
  copies and 3 GEMMs. ``sum_i d_i(x A_i)`` stays a loop of 3 GEMMs and 3 convs summed in
  place (biases summed into the first): measured on CPU, one GEMM for all subsets into a
  (N, 3C, T, V) input of one conv cost more in its copies (a broadcast input or a permuted
  output) than it saved;
* the three attentions: ``y * s + y`` three times (six passes over the map, each result kept
  for backward) becomes two multiplications by broadcast factors. The means the later
  attentions need are those of the scaled maps, which we get from the smaller ones without
  building the maps: mean_v(y (1+s)) is one GEMV of y, and mean_tv(y (1+s)(1+t)) a GEMV of
  that (N, C, T) mean;
* residual additions and ReLUs run in place on tensors autograd does not keep.

The parameters stay in modules named like the official ones (``conv_d.0`` ...), so the fused
weights are rebuilt with ``torch.cat`` on every forward; gradients flow back through it.
``UnitGCN.reference`` keeps the official per-subset formula as a readable reference for tests.

Not carried over: the official ``adaptive=False`` branch (it reads an undefined ``self.mask``
and calls ``.cuda``: it cannot run) and the training script's ``only_train_part`` (PA frozen for
the first 5 epochs), a schedule of the official trainer, not of the model.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BenchmarkError
from . import BACKBONES
from .base import SkeletonBackbone
from .ctrgcn import GEMM_MAX_IN_CHANNELS, bn_init, conv_init
# the generic strict loaders of official checkpoints, re-exported for this backbone
from .ctrgcn import load_checkpoint_file, load_official_state_dict  # noqa: F401
from .graph import layout_name, spatial_graph

__all__ = ["AAGCN", "TCNGCNUnit", "UnitGCN", "UnitTCN", "load_checkpoint_file",
           "load_official_state_dict"]

TCN_KERNEL = 9        # unit_tcn's temporal kernel
TA_KERNEL = 9         # temporal attention's conv_ta kernel
COFF_EMBEDDING = 4    # adaptive-graph embedding width R = C_out // 4
CHANNEL_RATIO = 2     # channel attention's squeeze ratio (fc1c: C -> C // 2)

# (width multiple of base_channel, temporal stride) of l1..l10 (official 64 x ...)
LAYERS = ((1, 1), (1, 1), (1, 1), (1, 1), (2, 2), (2, 1), (2, 1), (4, 2), (4, 1), (4, 1))


def conv_branch_init(conv: nn.Conv2d, branches: int) -> None:
    """The official init of ``conv_d``: N(0, 2 / (C_out * C_in * k * branches))."""
    n, k1, k2 = conv.weight.shape[:3]
    nn.init.normal_(conv.weight, 0, math.sqrt(2.0 / (n * k1 * k2 * branches)))
    nn.init.constant_(conv.bias, 0)


def pointwise(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A 1x1 conv of (N, C, T, V) with a (O, C, 1, 1) weight; a batched GEMM on CPU for tiny C
    (oneDNN is ~2x slower there, ``ctrgcn.conv1x1``)."""
    n, c, t, v = x.shape
    o = weight.shape[0]
    if x.device.type == "cpu" and c <= GEMM_MAX_IN_CHANNELS:
        w = weight.view(1, o, c).expand(n, o, c)
        y = (torch.bmm(w, x.reshape(n, c, t * v)) if bias is None else
             torch.baddbmm(bias.view(1, o, 1), w, x.reshape(n, c, t * v)))
        return y.view(n, o, t, v)
    return F.conv2d(x, weight, bias)


def check_width(channels: int) -> None:
    if channels < COFF_EMBEDDING:
        raise BenchmarkError(f"aagcn: block width {channels} too small: the adaptive graph embeds "
                             f"into width // {COFF_EMBEDDING}, so it must be >= {COFF_EMBEDDING}")


# ----------------------------------------------------------------------------- blocks
class UnitGCN(nn.Module):
    """Adaptive graph convolution with spatial, temporal and channel attention (``unit_gcn``)."""

    def __init__(self, in_channels: int, out_channels: int, a: torch.Tensor,
                 attention: bool = True):
        super().__init__()
        check_width(out_channels)
        self.inter_c = inter = out_channels // COFF_EMBEDDING
        self.num_subset = s = a.shape[0]
        v = a.shape[-1]
        # Constructed in the official order, so a seeded model draws the same random stream.
        self.conv_d = nn.ModuleList(nn.Conv2d(in_channels, out_channels, 1) for _ in range(s))
        self.PA = nn.Parameter(a.clone())
        self.alpha = nn.Parameter(torch.zeros(1))
        self.conv_a, self.conv_b = nn.ModuleList(), nn.ModuleList()
        for _ in range(s):
            self.conv_a.append(nn.Conv2d(in_channels, inter, 1))
            self.conv_b.append(nn.Conv2d(in_channels, inter, 1))
        self.attention = attention
        if attention:
            self.conv_ta = nn.Conv1d(out_channels, 1, TA_KERNEL, padding=(TA_KERNEL - 1) // 2)
            nn.init.constant_(self.conv_ta.weight, 0)
            nn.init.constant_(self.conv_ta.bias, 0)
            ker = v if v % 2 else v - 1  # an odd kernel over the joints, 'same' padding
            self.conv_sa = nn.Conv1d(out_channels, 1, ker, padding=(ker - 1) // 2)
            nn.init.xavier_normal_(self.conv_sa.weight)
            nn.init.constant_(self.conv_sa.bias, 0)
            self.fc1c = nn.Linear(out_channels, out_channels // CHANNEL_RATIO)
            self.fc2c = nn.Linear(out_channels // CHANNEL_RATIO, out_channels)
            nn.init.kaiming_normal_(self.fc1c.weight)
            nn.init.constant_(self.fc1c.bias, 0)
            nn.init.constant_(self.fc2c.weight, 0)
            nn.init.constant_(self.fc2c.bias, 0)
        self.down = None
        if in_channels != out_channels:
            self.down = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1),
                                      nn.BatchNorm2d(out_channels))
        self.bn = nn.BatchNorm2d(out_channels)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                conv_init(m)
            elif isinstance(m, nn.BatchNorm2d):
                bn_init(m, 1)
        bn_init(self.bn, 1e-6)
        for conv in self.conv_d:
            conv_branch_init(conv, s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, v = x.shape
        s, r = self.num_subset, self.inter_c
        # conv_a, conv_b and down's conv all read x: one conv, channels [a0, b0, a1, b1, ...,
        # down] so that (sample, subset) pairs are evenly strided batches of one GEMM
        entry = [m for pair in zip(self.conv_a, self.conv_b) for m in pair]
        if self.down is not None:
            entry.append(self.down[0])
        h = pointwise(x, torch.cat([m.weight for m in entry]), torch.cat([m.bias for m in entry]))
        if self.down is not None:  # split, not slices: one concatenation in backward
            h, res = h.split([2 * s * r, h.shape[1] - 2 * s * r], 1)
        ab = h.reshape(n * s, 2, r * t, v)
        # A1[u, v] = sum_{c,t} a[c, t, u] b[c, t, v] of every (sample, subset): one bmm
        adj = torch.bmm(ab[:, 0].transpose(1, 2), ab[:, 1]).div_(r * t)
        adj = torch.tanh(adj).view(n, s, v, v).mul(self.alpha).add_(self.PA)
        # sum_i conv_d_i(x A_i), biases summed into the first conv; autograd keeps no conv
        # output, so the sum runs in place. (Measured slower on CPU: x A_i of all subsets as
        # one GEMM into (N, S*C, T, V), through a broadcast or a permuted copy, then one conv.)
        xf = x.reshape(n, c * t, v)
        bias = sum(m.bias for m in self.conv_d)
        y = None
        for i, m in enumerate(self.conv_d):
            z = pointwise(torch.bmm(xf, adj[:, i]).view(n, c, t, v), m.weight,
                          bias if y is None else None)
            y = z if y is None else y.add_(z)
        y = self.bn(y)  # BN backward needs its input, not its output: add in place
        y = y.add_(x if self.down is None else self.down[1](res))
        y = F.relu_(y)
        return self.attend(y) if self.attention else y

    def attend(self, y: torch.Tensor) -> torch.Tensor:
        """The official y <- y * sigma + y for the spatial, temporal and channel attention in
        turn, as two multiplications (see the module docstring)."""
        n, c, t, v = y.shape
        gv = torch.sigmoid(self.conv_sa(y.mean(2))) + 1                   # (N, 1, V)
        # mean over joints of y * gv: one GEMV per clip
        m_t = torch.matmul(y.view(n, c * t, v), gv.view(n, v, 1)).view(n, c, t).div_(v)
        gt = torch.sigmoid(self.conv_ta(m_t)) + 1                         # (N, 1, T)
        m_c = torch.matmul(m_t, gt.view(n, t, 1)).view(n, c).div_(t)
        gc = torch.sigmoid(self.fc2c(F.relu_(self.fc1c(m_c)))) + 1       # (N, C)
        return (y * (gt.view(n, 1, t, 1) * gv.view(n, 1, 1, v))) * gc.view(n, c, 1, 1)

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        """The official formula, subset by subset and attention by attention (tests only)."""
        n, c, t, v = x.shape
        y = None
        for i in range(self.num_subset):
            a1 = self.conv_a[i](x).permute(0, 3, 1, 2).reshape(n, v, self.inter_c * t)
            a2 = self.conv_b[i](x).view(n, self.inter_c * t, v)
            a1 = self.PA[i] + torch.tanh(torch.matmul(a1, a2) / a1.shape[-1]) * self.alpha
            z = self.conv_d[i](torch.matmul(x.reshape(n, c * t, v), a1).view(n, c, t, v))
            y = z if y is None else y + z
        y = F.relu(self.bn(y) + (x if self.down is None else self.down(x)))
        if self.attention:
            y = y * torch.sigmoid(self.conv_sa(y.mean(-2))).unsqueeze(-2) + y
            y = y * torch.sigmoid(self.conv_ta(y.mean(-1))).unsqueeze(-1) + y
            se = F.relu(self.fc1c(y.mean(-1).mean(-1)))
            y = y * torch.sigmoid(self.fc2c(se)).unsqueeze(-1).unsqueeze(-1) + y
        return y


class UnitTCN(nn.Module):
    """(k, 1) temporal conv with 'same' padding and a temporal stride, then BN (``unit_tcn``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = TCN_KERNEL,
                 stride: int = 1):
        super().__init__()
        pad = (kernel_size - 1) // 2
        self.conv = nn.Conv2d(in_channels, out_channels, (kernel_size, 1), padding=(pad, 0),
                              stride=(stride, 1))
        self.bn = nn.BatchNorm2d(out_channels)
        conv_init(self.conv)
        bn_init(self.bn, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class TCNGCNUnit(nn.Module):
    """y = ReLU(tcn1(gcn1(x)) + residual(x)), residual = none / identity / strided 1x1 UnitTCN."""

    def __init__(self, in_channels: int, out_channels: int, a: torch.Tensor, stride: int = 1,
                 residual: bool = True, attention: bool = True):
        super().__init__()
        self.gcn1 = UnitGCN(in_channels, out_channels, a, attention=attention)
        self.tcn1 = UnitTCN(out_channels, out_channels, stride=stride)
        self.use_residual = residual
        self.residual = None
        if residual and (in_channels != out_channels or stride != 1):
            self.residual = UnitTCN(in_channels, out_channels, kernel_size=1, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.tcn1(self.gcn1(x))  # a fresh BN output: safe to update in place
        if self.use_residual:
            y = y.add_(x if self.residual is None else self.residual(x))
        return F.relu_(y)


# ----------------------------------------------------------------------------- model
@BACKBONES.register("aagcn")
class AAGCN(SkeletonBackbone):
    """AAGCN on (N, C, T, V, M) skeletons; every person runs through the backbone alone.

    The backbone contract (``benchmark.backbones``): ``stem`` (data_bn), ``blocks`` l1..l10,
    ``features`` -> (N, M, 4*base, T/4, V), ``pool`` -> (N, feat_dim), ``head`` (dropout, fc).

    Args:
        num_class: number of classes.
        num_point: joints V; must match the graph.
        num_person: persons M (sizes data_bn: M*V*C channels).
        graph: 'ntu' (25 joints), 'ucla' (20) or any layout :func:`spatial_graph` knows.
        in_channels: coordinates per joint C (the official l1 hard-codes 3).
        base_channel: width of l1..l4 (64 is the official model; smaller for CPU profiles).
        drop_out: dropout before fc (0 in every official config).
        attention: the spatial/temporal/channel attention (on in the official AAGCN).
    """

    def __init__(self, num_class: int = 60, num_point: int = 25, num_person: int = 2,
                 graph: str = "ntu", in_channels: int = 3, base_channel: int = 64,
                 drop_out: float = 0, attention: bool = True):
        super().__init__()
        a = torch.from_numpy(spatial_graph(graph))
        if a.shape[-1] != num_point:
            raise BenchmarkError(f"graph {graph!r} has {a.shape[-1]} joints, num_point={num_point}")
        if not isinstance(base_channel, int) or base_channel < COFF_EMBEDDING:
            raise BenchmarkError(f"aagcn: base_channel must be an integer >= {COFF_EMBEDDING} "
                                 f"(official 64), got {base_channel!r}")
        self.num_class, self.num_point, self.num_person = num_class, num_point, num_person
        self.graph, self.in_channels = layout_name(graph), in_channels
        self.base_channel = base_channel
        self.attention = attention
        self.feat_dim = LAYERS[-1][0] * base_channel

        self.data_bn = nn.BatchNorm1d(num_person * in_channels * num_point)
        c_in = in_channels
        for i, (mult, stride) in enumerate(LAYERS):
            c_out = mult * base_channel
            setattr(self, f"l{i + 1}", TCNGCNUnit(c_in, c_out, a, stride=stride, residual=i > 0,
                                                  attention=attention))
            c_in = c_out
        self.fc = nn.Linear(self.feat_dim, num_class)
        nn.init.normal_(self.fc.weight, 0, math.sqrt(2.0 / num_class))
        bn_init(self.data_bn, 1)
        self.drop_out = nn.Dropout(drop_out) if drop_out else nn.Identity()

    def block_names(self) -> list[str]:
        return [f"l{i}" for i in range(1, len(LAYERS) + 1)]

    def blocks(self) -> list[nn.Module]:
        """l1..l10, read at call time (RIDE swaps some for identities)."""
        return [getattr(self, name) for name in self.block_names()]

    def make_blocks(self, start: int, width: float = 1.0) -> tuple[list[nn.Module], int]:
        """Fresh copies of blocks ``start..`` (0-based) with widths scaled by ``width`` (the
        optional contract extension for RIDE's narrower experts); returns (blocks, channels)."""
        if not 1 <= start < len(LAYERS):
            raise BenchmarkError(f"aagcn: make_blocks start must be in 1..{len(LAYERS) - 1}")
        a = torch.from_numpy(spatial_graph(self.graph))
        blocks, c_in = [], self.base_channel * LAYERS[start - 1][0]
        for mult, stride in LAYERS[start:]:
            c_out = int(self.base_channel * mult * width)
            check_width(c_out)
            blocks.append(TCNGCNUnit(c_in, c_out, a, stride=stride, attention=self.attention))
            c_in = c_out
        return blocks, c_in

