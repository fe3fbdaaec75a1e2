"""HD-GCN backbone (Lee et al., "Hierarchically Decomposed Graph Convolutional Networks for
Skeleton-Based Action Recognition", ICCV 2023; official code Jho-Yonsei/HD-GCN ``model/HDGCN.py``).

CTR-GCN's ten blocks with another graph convolution, over the hierarchically decomposed graph
(:mod:`.graph_hierarchy`: L = 6 level pairs x 3 subsets around a centre of mass, joint 21 as
the official NTU configs). Per level pair: a 1x1 conv down to C/4 channels, then three graph
products each followed by a 1x1 conv + BN, and an EdgeConv (k = 5 nearest joints in feature
space, on the time-mean) make C channels; l2..l10 weigh the levels by A-HA (sigmoid attention
per channel and level, from an EdgeConv over the levels' joint means), l1 sums them.

Same maths, initialisation (same seed, same weights) and ``state_dict`` keys/shapes as the
official ``Model``: official checkpoints load with ``strict=True`` and give the same logits
(``scripts/check_hdgcn_official.py``; 1,659,980 / 1,675,400 parameters on NTU-60 / NTU-120).
The official module tree is kept, with its accidental alias ``gcn1.conv_d`` of ``gcn1.conv.5``
(an attribute left over from a loop): official checkpoints hold both key sets, so ours does
(one set of tensors; ``parameters()`` yields them once).

Where the official code loops, ours batches (same maths; the summation order differs):

* Inside the graph convolution the layout is channel-major, (C, N, T, V): the six down convs
  are one GEMM, the 18 subset convs one batched GEMM over the levels, run *before* the graph
  products (a 1x1 conv commutes with a product over joints), the 18 graph products one batched
  GEMM of (C*N*T, V) @ (V, V), and the BNs one call each over (1, C, N, T*V). The subset
  convs' bias is folded into their BN (:func:`batch_norm_shift`). In the clip-major layout the
  graph products, batched per clip, made a CPU training step ~20% slower.
* EdgeConv: ``conv([x_j - x_i, x_i]) = W1 x_j + (W2 - W1) x_i``, so the 1x1 conv runs on the
  V joints (not on the V*k pairs) and the neighbours are gathered from its output; the six
  levels' EdgeConvs run as one. The nearest-neighbour search is the official formula.
* The EdgeConv channels are constant over time: the official repeats them over T, stacks the
  levels into an (N, C, L, T, V) tensor and takes A-HA's max over time of it; ours keeps them
  per joint and broadcasts once, after A-HA's weighted sum (:class:`LevelMix`).
* The temporal block is CTR-GCN's, batched the same way (:mod:`.ctrgcn` notes); HD-GCN's
  dilated convs keep their bias as a separate parameter.

Graph 'ntu' (25 joints) only: the official release has no NW-UCLA hierarchy in source.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BenchmarkError
from . import BACKBONES
from .base import SkeletonBackbone
from .ctrgcn import (UnitTCN, batch_norm_cat, bn_init, conv1x1,  # noqa: F401 (loaders
                     load_checkpoint_file, load_official_state_dict)  # re-exported: generic)
from .graph import layout_name
from .graph_hierarchy import hierarchical_graph, level_joints

TCN_KERNEL = 5
TCN_DILATIONS = (1, 2)
EDGE_K = 5      # nearest joints of the graph convolution's EdgeConv
AHA_EDGE_K = 3  # nearest levels of A-HA's EdgeConv
LEAKY_SLOPE = 0.2


# ----------------------------------------------------------------------------- initialisation
def conv_init(conv: nn.Module) -> None:
    nn.init.kaiming_normal_(conv.weight, mode="fan_out")
    if conv.bias is not None:
        nn.init.constant_(conv.bias, 0)


def tcn_weights_init(m: nn.Module) -> None:
    """The official ``weights_init`` of the temporal block (random BN gammas). Its class-name
    test also matches ``TemporalConv``, whose separate bias it zeroes (it is created zero)."""
    if isinstance(m, nn.Conv2d):
        conv_init(m)
    elif isinstance(m, nn.BatchNorm2d):
        with torch.no_grad():
            m.weight.normal_(1.0, 0.02)
            m.bias.fill_(0)


# ----------------------------------------------------------------------------- fused helpers
def _plain_bns(bns: list[nn.Module]) -> bool:
    """Whether ``bns`` are plain, identically configured BatchNorm2d (the fast paths' premise;
    the same test as :func:`.ctrgcn.batch_norm_cat`)."""
    b0 = bns[0]
    return all(type(b) is nn.BatchNorm2d and b.affine and b.track_running_stats
               and b.momentum is not None and b.momentum == b0.momentum and b.eps == b0.eps
               and b.training == b0.training and not b._forward_hooks
               and not b._forward_pre_hooks for b in bns)


def batch_norm_shift(x: torch.Tensor, shift: torch.Tensor, bns: list[nn.Module]) -> torch.Tensor:
    """``batch_norm_cat(x + shift, bns)`` for x (1, C, ...) and a per-channel shift (C,) (a conv
    bias), without the pass that adds it. With batch statistics the shift cancels (the output
    and the running variance are unchanged; the running mean moves by momentum * shift; the
    true gradient of ``shift`` is zero and it gets exactly zero); with running statistics it
    moves BN's bias by ``weight * shift / sqrt(running_var + eps)``.
    """
    if not _plain_bns(bns):
        return batch_norm_cat(x + shift.view(1, -1, *[1] * (x.dim() - 2)), bns)
    b0 = bns[0]
    mean = torch.cat([b.running_mean for b in bns])
    var = torch.cat([b.running_var for b in bns])
    weight = torch.cat([b.weight for b in bns])
    bias = torch.cat([b.bias for b in bns])
    if not b0.training:
        return F.batch_norm(x, mean, var, weight, bias + weight * shift * torch.rsqrt(var + b0.eps),
                            False, 0.0, b0.eps)
    y = F.batch_norm(x, mean, var, weight, bias + shift * 0, True, b0.momentum, b0.eps)
    with torch.no_grad():  # (batch_norm saved ``mean``: not modified in place)
        moved = mean + b0.momentum * shift
        k = 0
        for b in bns:
            b.running_mean.copy_(moved[k:k + b.num_features])
            b.running_var.copy_(var[k:k + b.num_features])
            b.num_batches_tracked.add_(1)
            k += b.num_features
    return y


class LevelMix(torch.autograd.Function):
    """y[b] = sum_l w[b, l] z[l, b] for z (L, B, K), w (B, L): A-HA's weighted sum of the
    levels, one GEMV per (channel, clip) reading z in place. The backward writes dz in z's
    own layout (autograd's bmm backward wrote it transposed, then copied it)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(z, w)
        return torch.bmm(w.unsqueeze(1), z.transpose(0, 1)).squeeze(1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: torch.Tensor):
        z, w = ctx.saved_tensors
        gz = gw = None
        if ctx.needs_input_grad[0]:
            # (w.t() itself would lead TensorIterator to a (B, L, K)-ordered output)
            gz = (w.t().contiguous().unsqueeze(-1) * g.to(w.dtype)).to(z.dtype)
        if ctx.needs_input_grad[1]:
            gw = torch.bmm(g.to(z.dtype).unsqueeze(1), z.permute(1, 2, 0)).squeeze(1).to(w.dtype)
        return gz, gw


# ----------------------------------------------------------------------------- EdgeConv
def knn(x: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (..., P, k) of the k points nearest each point of x (..., C, P): the official
    formula, operation for operation, so that ties resolve alike. (In float32 a near-tie can
    still fall the other way, x being rounded differently: seen once, in l10 at the official
    initialisation, moving that layer's BN statistics by ~1e-4.)"""
    with torch.no_grad():
        inner = -2 * torch.matmul(x.transpose(-1, -2), x)
        xx = torch.sum(x ** 2, dim=-2, keepdim=True)
        return (-xx - inner - xx.transpose(-1, -2)).topk(k=k, dim=-1)[1]


def edge_conv(x: torch.Tensor, weight: torch.Tensor, bns: list[nn.Module], k: int) -> torch.Tensor:
    """G EdgeConvs at once: x (N, G, C, P) -> (N, G, C_out, P).

    weight (G, C_out, 2C): group g's 1x1 conv over [x_j - x_i, x_i]; bns: the G BatchNorms.
    y_ij = W1 x_j + (W2 - W1) x_i, then BN, LeakyReLU and the max over the k neighbours j.
    """
    n, g, c, p = x.shape
    co = weight.shape[1]
    idx = knn(x, k)                                                         # (N, G, P, k)
    w1 = weight[:, :, :c]
    pq = torch.matmul(torch.cat([w1, weight[:, :, c:] - w1], 1), x)        # (N, G, 2Co, P)
    nbr = torch.gather(pq[:, :, :co], 3, idx.view(n, g, 1, p * k).expand(n, g, co, p * k))
    y = nbr.view(n, g, co, p, k) + pq[:, :, co:].unsqueeze(-1)
    y = F.leaky_relu_(batch_norm_cat(y.view(n, g * co, p, k), bns), LEAKY_SLOPE)
    # max (not amax): ties send the whole gradient to one neighbour, as the official
    return y.max(dim=-1)[0].view(n, g, co, p)


class EdgeConv(nn.Module):
    """The official ``EdgeConv`` module (parameters ``conv.0``, ``conv.1``)."""

    def __init__(self, in_channels: int, out_channels: int, k: int):
        super().__init__()
        self.k = k
        self.conv = nn.Sequential(nn.Conv2d(in_channels * 2, out_channels, 1, bias=False),
                                  nn.BatchNorm2d(out_channels),
                                  nn.LeakyReLU(LEAKY_SLOPE, inplace=True))
        conv_init(self.conv[0])
        bn_init(self.conv[1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, P) points -> (N, C_out, P)."""
        return edge_conv(x.unsqueeze(1), self.conv[0].weight.flatten(1).unsqueeze(0),
                         [self.conv[1]], self.k).squeeze(1)


class AHA(nn.Module):
    """Attention-guided hierarchy aggregation: one sigmoid weight per (channel, level)."""

    def __init__(self, channels: int, levels: list[list[int]]):
        super().__init__()
        self.levels = levels
        inter = channels // 4
        self.conv_down = nn.Sequential(nn.Conv2d(channels, inter, 1), nn.BatchNorm2d(inter),
                                       nn.ReLU(inplace=True))
        self.edge_conv = EdgeConv(inter, inter, AHA_EDGE_K)
        self.aggregate = nn.Conv1d(inter, channels, 1)

    def weights(self, x_t: torch.Tensor) -> torch.Tensor:
        """x_t (N, C, L, V), the level maps' max over time -> level weights (N, C, L)."""
        h = self.conv_down(x_t)
        s = torch.cat([h[:, :, i, js].mean(dim=-1, keepdim=True)
                       for i, js in enumerate(self.levels)], 2)                # (N, C/4, L)
        return torch.sigmoid(self.aggregate(self.edge_conv(s)))


# ----------------------------------------------------------------------------- blocks
class HDGraphConv(nn.Module):
    """The official ``HD_Gconv``: y = ReLU(BN(aggregate_l cat_j[...]) + down(x))."""

    def __init__(self, in_channels: int, out_channels: int, a: torch.Tensor,
                 levels: list[list[int]], att: bool = True):
        super().__init__()
        self.num_layers, self.num_subset = a.shape[0], a.shape[1]
        self.inter = inter = out_channels // (self.num_subset + 1)
        self.PA = nn.Parameter(a.clone())
        self.conv_down = nn.ModuleList()
        self.conv = nn.ModuleList()
        for _ in range(self.num_layers):  # construction order = the official random stream
            level = nn.ModuleList()
            self.conv_down.append(nn.Sequential(nn.Conv2d(in_channels, inter, 1),
                                                nn.BatchNorm2d(inter), nn.ReLU(inplace=True)))
            for _ in range(self.num_subset):
                level.append(nn.Sequential(nn.Conv2d(inter, inter, 1), nn.BatchNorm2d(inter)))
            level.append(EdgeConv(inter, inter, EDGE_K))
            self.conv.append(level)
        self.conv_d = self.conv[-1]  # the official alias (see the module docstring)
        self.aha = AHA(out_channels, levels) if att else None
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c_in, t, v = x.shape
        nl, ns, i = self.num_layers, self.num_subset, self.inter
        m = n * t * v
        # Channel-major inside, (C, N, T, V): every level's products become a few large GEMMs
        # (the graph products, batched as (N, C*T, V) @ (V, V) per subset, ran ~5x slower per
        # flop on CPU than as (C*N*T, V) @ (V, V)), and BN runs over (1, C, N, T*V).
        down = [d[0] for d in self.conv_down]
        xd = torch.mm(torch.cat([d.weight for d in down]).flatten(1),
                      x.transpose(0, 1).reshape(c_in, m))
        xd = xd.add_(torch.cat([d.bias for d in down]).unsqueeze(1)).view(1, nl * i, n, t * v)
        xd = F.relu_(batch_norm_cat(xd, [d[1] for d in self.conv_down]))    # (1, L*i, N, T*V)
        # the subset convs first (a 1x1 conv commutes with the product over joints), then
        # the graph products, then the convs' bias (it does not commute)
        subs = [self.conv[lv][j] for lv in range(nl) for j in range(ns)]
        u = torch.bmm(torch.cat([s[0].weight for s in subs]).view(nl, ns * i, i),
                      xd.view(nl, i, m))                                    # (L, S*i, N*T*V)
        z = torch.bmm(u.view(nl * ns, i * n * t, v), self.PA.view(nl * ns, v, v).transpose(1, 2))
        z = batch_norm_shift(z.view(1, nl * ns * i, n, t * v), torch.cat([s[0].bias for s in subs]),
                             [s[1] for s in subs]).view(nl, ns * i, n, t, v)
        edges = [self.conv[lv][ns] for lv in range(nl)]
        e = edge_conv(xd.view(nl, i, n, t, v).mean(3).permute(2, 0, 1, 3),
                      torch.cat([d.conv[0].weight for d in edges]).view(nl, i, 2 * i),
                      [d.conv[1] for d in edges], EDGE_K)                    # (N, L, i, V)
        if self.aha is None:
            yz, ye = z.sum(0), e.sum(1)
        else:
            x_t = torch.cat([z.max(dim=3)[0], e.permute(1, 2, 0, 3)], 1)    # (L, C, N, V)
            att = self.aha.weights(x_t.permute(2, 1, 0, 3))                  # (N, C, L)
            # sum_l att[n, c, l] z[l, c, n] (multiply-then-sum wrote and re-read an L-times
            # larger temporary)
            yz = LevelMix.apply(z.view(nl, ns * i * n, t * v),
                                att[:, :ns * i].transpose(0, 1).reshape(ns * i * n, nl))
            yz = yz.view(ns * i, n, t, v)
            ye = (e * att[:, ns * i:].transpose(1, 2).unsqueeze(-1)).sum(1)
        # back to (N, C, T, V); the EdgeConv channels are constant over time
        y = self.bn(torch.cat([yz.transpose(0, 1), ye.unsqueeze(2).expand(n, i, t, v)], 1))
        res = x if self.down is None else self.down[1](
            conv1x1(x, self.down[0].weight.flatten(1), self.down[0].bias))
        return F.relu_(y.add_(res))


class TemporalConv(nn.Module):
    """(k, 1) dilated temporal conv without bias, a separate bias parameter, then BN."""

    def __init__(self, channels: int, kernel_size: int, stride: int, dilation: int):
        super().__init__()
        pad = (kernel_size + (kernel_size - 1) * (dilation - 1) - 1) // 2
        self.conv = nn.Conv2d(channels, channels, (kernel_size, 1), padding=(pad, 0),
                              stride=(stride, 1), dilation=(dilation, 1), bias=False)
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.bn = nn.BatchNorm2d(channels)

    def conv_bias(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        return F.conv2d(x, c.weight, self.bias.view(-1), c.stride, c.padding, c.dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv_bias(x))


class MultiScaleTemporalConv(nn.Module):
    """Two dilated temporal convs, a max-pool and a strided 1x1 conv, C/4 channels each (the
    official ``branches`` indices kept; its own residual is off)."""

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
        # the four entry convs share x: one conv (branch 3 strides by slicing its output)
        h = conv1x1(x, torch.cat([br[0].weight for br in b]).flatten(1),
                    torch.cat([br[0].bias for br in b]))
        a0, a1, a2 = F.relu_(batch_norm_cat(h[:, :3 * q], [b[0][1], b[1][1], b[2][1]])).split(q, 1)
        if a2.device.type == "cpu":  # the channels-last CPU max-pool kernel is ~2x faster
            pooled = b[2][3](a2.contiguous(memory_format=torch.channels_last)).contiguous()
        else:
            pooled = b[2][3](a2)
        out = torch.cat([b[0][3].conv_bias(a0), b[1][3].conv_bias(a1), pooled,
                         h[:, 3 * q:, ::self.stride]], 1)
        return batch_norm_cat(out, [b[0][3].bn, b[1][3].bn, b[2][4], b[3][1]])


class TCNGCNUnit(nn.Module):
    """y = ReLU(tcn1(gcn1(x)) + residual(x)), residual = none / identity / strided 1x1 conv."""

    def __init__(self, in_channels: int, out_channels: int, a: torch.Tensor,
                 levels: list[list[int]], stride: int = 1, residual: bool = True,
                 att: bool = True):
        super().__init__()
        self.gcn1 = HDGraphConv(in_channels, out_channels, a, levels, att=att)
        self.tcn1 = MultiScaleTemporalConv(out_channels, stride)
        self.use_residual = residual
        self.residual = None
        if residual and (in_channels != out_channels or stride != 1):
            self.residual = UnitTCN(in_channels, out_channels, stride)  # official residual_conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.tcn1(self.gcn1(x))  # a fresh BN output: safe to update in place
        if self.use_residual:
            y = y.add_(x if self.residual is None else self.residual(x))
        return F.relu_(y)


# ----------------------------------------------------------------------------- model
# (out = base x mult, stride) of l1..l10
LAYERS = ((1, 1), (1, 1), (1, 1), (1, 1), (2, 2), (2, 1), (2, 1), (4, 2), (4, 1), (4, 1))


@BACKBONES.register("hdgcn")
class HDGCN(SkeletonBackbone):
    """HD-GCN on (N, C, T, V, M) skeletons; every person runs through the backbone alone.

    Backbone contract (``benchmark.backbones``): ``stem``, ``blocks()`` = l1..l10,
    ``features`` -> (N, M, 4*base, T/4, V), ``pool``, ``head`` (``fc`` after dropout).

    Args:
        num_class: number of classes.
        num_point: joints V; must be 25 (the hierarchy is NTU's).
        num_person: persons M (sizes data_bn: M*V*C channels).
        graph: 'ntu' (or 'ntu25'); others raise (no official hierarchy).
        in_channels: coordinates per joint C.
        base_channel: width of l1..l4; 64 is the official model (the only width official
            weights fit), smaller multiples of 4 for CPU profiles.
        drop_out: dropout before fc (0 in every official config).
        com: centre-of-mass joint of the hierarchy, 1-based (21 official NTU configs; 1, 2).
    """

    def __init__(self, num_class: int = 60, num_point: int = 25, num_person: int = 2,
                 graph: str = "ntu", in_channels: int = 3, base_channel: int = 64,
                 drop_out: float = 0, com: int = 21):
        super().__init__()
        a = torch.from_numpy(hierarchical_graph(graph, com))
        if a.shape[-1] != num_point:
            raise BenchmarkError(f"hdgcn: graph {graph!r} has {a.shape[-1]} joints, "
                                 f"num_point={num_point}")
        if base_channel < 4 or base_channel % 4:
            raise BenchmarkError(f"hdgcn: base_channel must be a positive multiple of 4 (C/4 "
                                 f"channels per level and temporal branch), got {base_channel}")
        self.num_class, self.num_point, self.num_person = num_class, num_point, num_person
        self.graph, self.in_channels = layout_name(graph), in_channels
        self.base_channel, self.com = base_channel, com
        self.feat_dim = 4 * base_channel

        self.data_bn = nn.BatchNorm1d(num_person * in_channels * num_point)
        levels = level_joints(graph, com)
        c_in = in_channels
        for k, (mult, stride) in enumerate(LAYERS, 1):
            c_out = base_channel * mult
            setattr(self, f"l{k}", TCNGCNUnit(c_in, c_out, a, levels, stride=stride,
                                              residual=k > 1, att=k > 1))
            c_in = c_out
        self.fc = nn.Linear(c_in, num_class)
        nn.init.normal_(self.fc.weight, 0, math.sqrt(2.0 / num_class))
        bn_init(self.data_bn, 1)
        self.drop_out = nn.Dropout(drop_out) if drop_out else nn.Identity()

    def block_names(self) -> list[str]:
        return [f"l{k}" for k in range(1, len(LAYERS) + 1)]

    def blocks(self) -> list[nn.Module]:
        """l1..l10, read by name (a method may swap one for another module)."""
        return [getattr(self, name) for name in self.block_names()]

