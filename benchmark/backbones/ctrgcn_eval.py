"""CTR-GCN's inference path on CPU: BatchNorm folded into the convolutions, in cache-sized pieces.

In eval mode every BatchNorm is a fixed per-channel affine map ``s * x + t`` (running
statistics), so it folds into the linear map before it (the same maths; only the rounding
differs: tests/test_ctrgcn.py checks fp64 equality with the module path, and fp32 within
the module path's own rounding):

* ``UnitGCN``: the output BN scales each channel of ``sum_i conv3_i(x) @ topo_i``, which is
  linear in ``conv3_i``'s weight and bias, so ``s`` goes into ``conv3``; ``t`` goes into the
  ``down`` branch's bias (or is added with the identity residual).
* ``MultiScaleTemporalConv``: the three entry BNs and branch 3's BN sit right after the shared
  1x1 entry conv (branch 3's stride is a slice, which commutes with a per-channel map); the
  two temporal convs take their BNs; only the BN after the max-pool stays an affine map.
* ``UnitTCN`` (the strided block residual): conv + BN folded.

The folded weights are built once per forward (:func:`fold`) and reused by every piece of the
batch (:func:`run`), which also saves re-concatenating the fused weights per piece; each
distinct person sequence runs once (:func:`run_unique`). Used by
``CTRGCN.features`` only for a no-grad, eval-mode CPU forward of plain ``BatchNorm2d`` modules
with running statistics and no hooks (test passes, Shap-Mix's coalition forwards).
Measured (2 threads, NTU shape, 32 clips): see ``scripts/bench_all.py`` / the module docstring
of ``ctrgcn``.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .ctrgcn import (MultiScaleTemporalConv, TCNGCNUnit, UnitGCN, UnitTCN, conv1x1,
                     gcn_aggregate)


def _affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(s, t) of an eval-mode BN: bn(x) = s * x + t per channel."""
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return s, bn.bias - bn.running_mean * s


def _scale_out(weight: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return weight * s.view(-1, *([1] * (weight.dim() - 1)))


def foldable(model: Any) -> bool:
    """Every block an unmodified ``TCNGCNUnit`` (RIDE, e.g., swaps some for ``Identity``),
    every BN a plain, affine ``BatchNorm2d`` with running stats; no hooks anywhere."""
    if not all(type(u) is TCNGCNUnit and type(u.gcn1) is UnitGCN
               and type(u.tcn1) is MultiScaleTemporalConv
               and (u.residual is None or type(u.residual) is UnitTCN) for u in model.layers()):
        return False
    for m in model.modules():
        if m._forward_hooks or m._forward_pre_hooks:
            return False
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m is not getattr(model, "data_bn", None):
            if type(m) is not nn.BatchNorm2d or not m.affine or not m.track_running_stats \
                    or m.running_mean is None:
                return False
    return True


def _fold_gcn(g: Any) -> dict[str, Any]:
    """The arguments of ``gcn_aggregate`` with the output BN's scale in conv3, and the
    residual with the BN's shift."""
    s, t = _affine(g.bn)
    p: dict[str, Any] = {"agg": g.aggregate_args(s)}
    if g.down is not None:
        sd, td = _affine(g.down[1])
        p["wd"] = _scale_out(g.down[0].weight.flatten(1), sd)
        p["bd"] = g.down[0].bias * sd + td + t
        p["t"] = None
    else:
        p["wd"] = p["bd"] = None
        p["t"] = t.view(1, -1, 1, 1)
    return p


def _fold_tcn(tc: Any) -> dict[str, Any]:
    b = tc.branches
    q = b[0][0].weight.shape[0]
    st = [_affine(bn) for bn in (b[0][1], b[1][1], b[2][1], b[3][1])]
    s_e, t_e = torch.cat([a for a, _ in st]), torch.cat([c for _, c in st])
    w_e = torch.cat([br[0].weight for br in b]).flatten(1)
    p: dict[str, Any] = {"q": q, "stride": tc.stride, "pool": b[2][3],
                         "we": _scale_out(w_e, s_e),
                         "be": torch.cat([br[0].bias for br in b]) * s_e + t_e, "tconv": []}
    for k in (0, 1):
        conv, bn = b[k][3].conv, b[k][3].bn
        s, t = _affine(bn)
        p["tconv"].append((_scale_out(conv.weight, s), conv.bias * s + t, conv.stride,
                           conv.padding, conv.dilation))
    sp, tp = _affine(b[2][4])
    p["pool_s"], p["pool_t"] = sp.view(1, -1, 1, 1), tp.view(1, -1, 1, 1)
    return p


def fold(layers: list[TCNGCNUnit]) -> list[dict[str, Any]]:
    """The folded parameters of every block (call under no_grad, in eval mode)."""
    out = []
    for u in layers:
        res = None
        if u.use_residual and u.residual is not None:
            s, t = _affine(u.residual.bn)
            conv = u.residual.conv
            res = (_scale_out(conv.weight, s), conv.bias * s + t, conv.stride)
        out.append({"gcn": _fold_gcn(u.gcn1), "tcn": _fold_tcn(u.tcn1),
                    "use_residual": u.use_residual, "res": res})
    return out


def _gcn(p: dict[str, Any], x: torch.Tensor) -> torch.Tensor:
    y = gcn_aggregate(x, *p["agg"])
    if p["wd"] is not None:
        y.add_(conv1x1(x, p["wd"], p["bd"]))
    else:
        y.add_(x).add_(p["t"])
    return F.relu_(y)


def _tcn(p: dict[str, Any], x: torch.Tensor) -> torch.Tensor:
    q = p["q"]
    h = conv1x1(x, p["we"], p["be"])
    a = F.relu(h[:, :3 * q])
    a0, a1, a2 = a.split(q, 1)
    outs = [F.conv2d(a_k, w, b, stride=st, padding=pad, dilation=dil)
            for a_k, (w, b, st, pad, dil) in zip((a0, a1), p["tconv"])]
    pooled = p["pool"](a2.contiguous(memory_format=torch.channels_last)).contiguous()
    outs.append(pooled.mul_(p["pool_s"]).add_(p["pool_t"]))
    outs.append(h[:, 3 * q:, :: p["stride"]])
    return torch.cat(outs, 1)


def run(folded: list[dict[str, Any]], x: torch.Tensor) -> torch.Tensor:
    """The ten blocks on (N*M, C, T, V) with folded parameters."""
    for p in folded:
        y = _tcn(p["tcn"], _gcn(p["gcn"], x))
        if p["use_residual"]:
            if p["res"] is None:
                y.add_(x)
            else:
                w, b, st = p["res"]
                y.add_(F.conv2d(x, w, b, stride=st))
        x = F.relu_(y)
    return x


def run_unique(folded: list[dict[str, Any]], x: torch.Tensor, rows: int) -> torch.Tensor:
    """:func:`run` over (N*M, C, T, V) in pieces of ``rows`` person-sequences, each distinct
    sequence once: every person runs through the blocks alone, so equal input rows give equal
    outputs. On NTU the second person of a one-person clip is all zeros, and in Shap-Mix's
    coalition inputs it is the same baseline-with-zeros for every such clip: those rows run
    once instead of once per clip."""
    uniq, inverse = torch.unique(x.flatten(1), dim=0, return_inverse=True)
    if len(uniq) == len(x):  # nothing repeats: the rows in their own order
        return torch.cat([run(folded, piece) for piece in x.split(rows)])
    out = torch.cat([run(folded, piece) for piece in uniq.view(-1, *x.shape[1:]).split(rows)])
    return out[inverse]
