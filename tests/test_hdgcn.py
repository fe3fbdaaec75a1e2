"""HD-GCN backbone: the backbone contract, official sizes and state_dict layout, the hierarchical
graph, the fused helpers against their plain formulas, and golden logits of the official code.

The full comparison with the official code is ``scripts/check_hdgcn_official.py`` (by hand: it
needs a checkout of Jho-Yonsei/HD-GCN); it wrote ``tests/golden/hdgcn_{input,logits}.npy``
(``--golden tests/golden``): the official model's float64 logits, eval and train mode, on
seeded weights that ours rebuilds (our initialisation is the official one, bit for bit)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark.backbones import BACKBONES, build_backbone, is_classifier
from benchmark.backbones.ctrgcn import batch_norm_cat
from benchmark.backbones.graph_hierarchy import hierarchical_graph, level_joints, levels
from benchmark.backbones.hdgcn import (HDGCN, LevelMix, batch_norm_shift, edge_conv,
                                       load_official_state_dict)
from benchmark.errors import BenchmarkError
from conftest import load_script

GOLDEN = Path(__file__).resolve().parent / "golden"
SMALL = dict(num_class=6, num_point=25, num_person=2, graph="ntu", in_channels=3, base_channel=8)


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return build_backbone("hdgcn", **SMALL)


def test_registered_and_shapes(small):
    assert "hdgcn" in BACKBONES.names()
    x = torch.randn(3, 3, 16, 25, 2)
    logits, feat = small(x, return_feat=True)
    assert logits.shape == (3, 6) and feat.shape == (3, small.feat_dim) and small.feat_dim == 32
    assert small.features(x).shape == (3, 2, 32, 4, 25)  # two temporal strides of 2


def test_backbone_contract(small):
    small.eval()
    x = torch.randn(2, 3, 12, 25, 2)
    with torch.no_grad():
        h = small.stem(x)
        assert h.shape == (4, 3, 12, 25)
        for block in small.blocks():
            h = block(h)
        fmap = small.features(x)
        torch.testing.assert_close(h.view(2, 2, *h.shape[1:]), fmap)
        logits, feat = small(x, return_feat=True)
        torch.testing.assert_close(small.pool(fmap), feat)
        torch.testing.assert_close(small.head(feat), logits)
    assert small.block_names() == [f"l{i}" for i in range(1, 11)]
    assert all(getattr(small, n) is b for n, b in zip(small.block_names(), small.blocks()))
    assert isinstance(small.fc, torch.nn.Linear) and small.fc.in_features == small.feat_dim
    assert {n for n, _ in small.named_parameters() if is_classifier(n)} == {"fc.weight", "fc.bias"}
    assert (small.num_class, small.num_point, small.num_person, small.graph,
            small.in_channels) == (6, 25, 2, "ntu25", 3)
    small.train()


@pytest.mark.parametrize("num_class, params", [(60, 1_659_980), (120, 1_675_400)])
def test_official_parameter_count(num_class, params):
    # measured on the official model/HDGCN.py (CoM 21) by scripts/check_hdgcn_official.py;
    # 1,675,400 is the NTU-120 figure (README's backbone table)
    model = HDGCN(num_class=num_class)
    assert sum(p.numel() for p in model.parameters()) == params
    sd = model.state_dict()
    assert len(sd) == 3017  # conv_d.* (the official alias of conv.5) included
    assert sd["l2.gcn1.PA"].shape == (6, 3, 25, 25)
    assert sd["l2.gcn1.aha.aggregate.weight"].shape == (64, 16, 1)
    assert sd["l5.tcn1.branches.0.3.bias"].shape == (1, 32, 1, 1)
    assert "l1.gcn1.aha.conv_down.0.weight" not in sd  # l1 sums the levels (no A-HA)
    gcn = model.l3.gcn1
    assert gcn.conv_d is gcn.conv[5]


def test_state_dict_round_trip(small):
    torch.manual_seed(1)
    other = build_backbone("hdgcn", **SMALL)
    sd = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v
          for k, v in small.state_dict().items()}
    small.load_state_dict(sd, strict=True)
    load_official_state_dict(other, {"module." + k: v for k, v in small.state_dict().items()})
    theirs = other.state_dict()
    for k, v in small.state_dict().items():
        assert torch.equal(theirs[k], v), k
    small.eval(), other.eval()
    x = torch.randn(2, 3, 12, 25, 2)
    with torch.no_grad():
        assert torch.equal(small(x), other(x))
    small.train()
    bad = dict(sd)
    bad["fc.weight"] = torch.zeros(7, 32)
    with pytest.raises(BenchmarkError, match="fc.weight"):
        load_official_state_dict(other, bad)


def test_bad_arguments():
    with pytest.raises(BenchmarkError, match="NW-UCLA|only for NTU"):
        build_backbone("hdgcn", num_class=10, num_point=20, num_person=1, graph="ucla")
    with pytest.raises(BenchmarkError, match="multiple of 4"):
        build_backbone("hdgcn", **{**SMALL, "base_channel": 6})
    with pytest.raises(BenchmarkError, match="num_point"):
        build_backbone("hdgcn", **{**SMALL, "num_point": 20})
    with pytest.raises(BenchmarkError, match="centre of mass"):
        build_backbone("hdgcn", **SMALL, com=3)


@pytest.mark.parametrize("com", [21, 1, 2])
def test_hierarchy(com):
    lv = levels("ntu", com)
    assert sorted(j for level in lv for j in level) == list(range(25)) and lv[0] == [com - 1]
    a = hierarchical_graph("ntu", com)
    assert a.shape == (6, 3, 25, 25) and a.dtype == np.float32
    for pair, (near, far) in enumerate(zip(lv[:-1], lv[1:])):
        ident, fwd, rev = a[pair]
        assert np.array_equal(np.diag(ident).nonzero()[0], sorted(near + far))
        # column j of the forward graph spreads joint j of the near level evenly over the far one
        np.testing.assert_allclose(fwd.sum(0)[near], 1.0)
        np.testing.assert_allclose(fwd[np.ix_(far, near)], 1.0 / len(far))
        np.testing.assert_allclose(rev[np.ix_(near, far)], 1.0 / len(near))
        assert fwd.sum() + rev.sum() == pytest.approx(len(near) + len(far))
    assert level_joints("ntu", com)[0] == lv[0] + lv[1]


# ----------------------------------------------------------------------------- fused helpers
def _bns(c: int, train: bool) -> list[torch.nn.BatchNorm2d]:
    torch.manual_seed(2)
    bns = []
    for _ in range(3):
        bn = torch.nn.BatchNorm2d(c).double().train(train)
        with torch.no_grad():
            for t in (bn.weight, bn.bias, bn.running_mean):
                t.copy_(torch.randn(c))
            bn.running_var.copy_(torch.rand(c) + 0.5)
        bns.append(bn)
    return bns


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("plain", [True, False])
def test_batch_norm_shift_is_bn_of_shifted_input(train, plain):
    x = torch.randn(1, 12, 5, 10, dtype=torch.float64, requires_grad=True)
    shift = torch.randn(12, dtype=torch.float64, requires_grad=True)
    ref_bns, bns = _bns(4, train), _bns(4, train)
    if not plain:  # a hook: the modules themselves run (the SyncBatchNorm / hooks fallback)
        bns[1].register_forward_hook(lambda *_: None)
    g = torch.randn(1, 12, 5, 10, dtype=torch.float64)
    ref = batch_norm_cat(x + shift.view(1, -1, 1, 1), ref_bns)
    got = batch_norm_shift(x, shift, bns)
    torch.testing.assert_close(got, ref)
    grads = torch.autograd.grad((ref * g).sum(), [x, shift] + [b.weight for b in ref_bns])
    mine = torch.autograd.grad((got * g).sum(), [x, shift] + [b.weight for b in bns])
    for a, b in zip(grads, mine):
        torch.testing.assert_close(b, a, atol=1e-12, rtol=1e-9)
    for a, b in zip(ref_bns, bns):
        torch.testing.assert_close(b.running_mean, a.running_mean)
        torch.testing.assert_close(b.running_var, a.running_var)
        assert b.num_batches_tracked == a.num_batches_tracked


def test_level_mix_gradcheck():
    z = torch.randn(3, 5, 7, dtype=torch.float64, requires_grad=True)
    w = torch.rand(5, 3, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(LevelMix.apply(z, w), torch.einsum("lbk,bl->bk", z, w))
    assert torch.autograd.gradcheck(LevelMix.apply, (z, w))


def test_edge_conv_is_the_official_formula():
    """Batched EdgeConv = the official per-group gather of [x_j - x_i, x_i], conv, max over k."""
    torch.manual_seed(3)
    n, g, c, p, k = 2, 3, 4, 9, 3
    x = torch.randn(n, g, c, p, dtype=torch.float64)
    w = torch.randn(g, 5, 2 * c, dtype=torch.float64)
    bns = [torch.nn.BatchNorm2d(5).double() for _ in range(g)]
    got = edge_conv(x, w, bns, k)
    for gi in range(g):
        xg = x[:, gi]                                             # (N, C, P)
        d = ((xg.unsqueeze(-1) - xg.unsqueeze(-2)) ** 2).sum(1)   # (N, P, P)
        idx = d.topk(k, dim=-1, largest=False)[1]
        nbr = torch.stack([xg[i][:, idx[i]] for i in range(n)])   # (N, C, P, k)
        ctr = xg.unsqueeze(-1).expand_as(nbr)
        y = torch.einsum("oc,ncpk->nopk", w[gi], torch.cat([nbr - ctr, ctr], 1))
        y = F.leaky_relu(F.batch_norm(y, None, None, training=True), 0.2).max(-1)[0]
        torch.testing.assert_close(got[:, gi], y)


# ----------------------------------------------------------------------------- golden
@pytest.fixture(scope="module")
def golden_model():
    check = load_script("check_hdgcn_official")
    torch.manual_seed(0)  # the official initialisation
    model = HDGCN(num_class=60)
    return model, check.perturb(model.state_dict(), torch.Generator().manual_seed(1))


@pytest.mark.parametrize("dtype, rel", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_golden_logits_of_the_official_code(golden_model, dtype, rel):
    model, sd = golden_model
    x = torch.from_numpy(np.load(GOLDEN / "hdgcn_input.npy"))
    ref = np.load(GOLDEN / "hdgcn_logits.npy")  # (eval, train) x (N, 60), official, float64
    model.to(dtype).load_state_dict(sd, strict=True)
    with torch.no_grad():
        for mode, train in enumerate((False, True)):
            got = model.train(train)(x.to(dtype)).double().numpy()
            assert np.abs(got - ref[mode]).max() <= rel * np.abs(ref[mode]).max(), mode
    model.float()
