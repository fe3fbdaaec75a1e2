"""ST-GCN++ backbone: the official PYSKL state_dict layout and sizes, the backbone contract,
our batched (V, N, T, C) path against the official formulas (the modules' own NCHW
``forward``s, in float64), checkpoint loading, and a golden test against the official model.

The golden file ``tests/golden/stgcnpp_tiny.npz`` was written once by
``scripts/check_stgcnpp_official.py --official <pyskl checkout> --golden ...`` from PYSKL's own
STGCN + GCNHead (float64): logits of a tiny seeded model on a seeded input, so that the
official equivalence is checked here without the official checkout.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.backbones import BACKBONES, build_backbone, is_classifier
from benchmark.backbones.graph import pyskl_spatial_graph, spatial_graph
from benchmark.backbones.stgcnpp import (STGCNPP, from_official_key, load_checkpoint_file,
                                         load_official_state_dict, to_official_state_dict)
from benchmark.errors import BenchmarkError
from conftest import load_script

NTU = dict(num_class=60, num_point=25, num_person=2, graph="ntu")
TINY = dict(num_class=5, num_point=25, num_person=2, graph="ntu", base_channel=8)
GOLDEN_FILE = Path(__file__).parent / "golden" / "stgcnpp_tiny.npz"


@pytest.fixture(scope="module")
def check():
    return load_script("check_stgcnpp_official")


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Every float tensor perturbed (running_var kept positive): no path switched off."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, t in model.state_dict().items():
            if t.is_floating_point():
                noise = torch.randn(t.shape, generator=gen, dtype=torch.float64).to(t.dtype)
                t.copy_(t.abs() + 0.5 + 0.1 * noise.abs() if k.endswith("running_var")
                        else t + 0.1 * noise)
    return model


def reference_forward(model: STGCNPP, x: torch.Tensor) -> torch.Tensor:
    """The official computation, module by module, in PYSKL's NCHW layout: STGCN.forward
    ('VC' data_bn), STGCNBlock.forward, unit_gcn / mstcn / unit_tcn formulas, GCNHead."""
    n, c, t, v, m = x.shape
    h = model.data_bn(x.permute(0, 4, 3, 1, 2).reshape(n * m, v * c, t))
    h = h.view(n * m, v, c, t).permute(0, 2, 3, 1).contiguous()
    for blk in model.gcn:
        res = 0 if not blk.use_residual else h if blk.residual is None else blk.residual(h)
        h = F.relu(blk.tcn(blk.gcn(h)) + res)
    pooled = F.adaptive_avg_pool2d(h, 1).view(n, m, -1).mean(1)
    return model.fc(pooled)


# ----------------------------------------------------------------------------- layout
# Measured with the official PYSKL code (STGCN(gcn_adaptive='init', gcn_with_res=True,
# tcn_type='mstcn') + GCNHead) by scripts/check_stgcnpp_official.py: params_official.
@pytest.mark.parametrize("kw, n_params", [
    (dict(NTU), 1_403_144),
    (dict(NTU, num_class=120), 1_418_564),
    (dict(num_class=10, num_point=20, num_person=1, graph="ucla"), 1_383_514),
    (dict(num_class=400, num_point=17, num_person=2, graph="coco17"), 1_480_396),
])
def test_parameter_counts_of_the_official_configuration(kw, n_params):
    m = STGCNPP(**kw)
    assert sum(p.numel() for p in m.parameters()) == n_params
    assert len(m.state_dict()) == 692 and all(p.requires_grad for p in m.parameters())


def test_state_dict_is_the_official_layout():
    sd = STGCNPP(**NTU).state_dict()
    expect = {
        "data_bn.weight": (75,), "gcn.0.gcn.A": (3, 25, 25), "gcn.0.gcn.bn.weight": (64,),
        "gcn.0.gcn.conv.weight": (192, 3, 1, 1), "gcn.0.gcn.down.0.weight": (64, 3, 1, 1),
        "gcn.0.gcn.down.1.running_var": (64,), "gcn.0.tcn.branches.0.0.weight": (14, 64, 1, 1),
        "gcn.0.tcn.branches.0.1.weight": (14,), "gcn.0.tcn.branches.0.3.conv.weight": (14, 14, 3, 1),
        "gcn.0.tcn.branches.3.3.conv.bias": (10,), "gcn.0.tcn.branches.4.0.weight": (10, 64, 1, 1),
        "gcn.0.tcn.branches.4.1.running_mean": (10,), "gcn.0.tcn.branches.5.weight": (10, 64, 1, 1),
        "gcn.0.tcn.transform.0.weight": (64,), "gcn.0.tcn.transform.2.weight": (64, 64, 1, 1),
        "gcn.0.tcn.bn.bias": (64,), "gcn.4.residual.conv.weight": (128, 64, 1, 1),
        "gcn.4.residual.bn.weight": (128,), "gcn.4.tcn.branches.0.3.conv.weight": (23, 23, 3, 1),
        "gcn.9.tcn.branches.1.3.conv.weight": (42, 42, 3, 1), "fc.weight": (60, 256),
    }
    for k, shape in expect.items():
        assert tuple(sd[k].shape) == shape, k
    assert sorted({k.split(".")[1] for k in sd if ".gcn.down." in k}) == ["0", "4", "7"]
    assert sorted({k.split(".")[1] for k in sd if ".residual." in k}) == ["4", "7"]
    assert list(sd)[5:7] == ["gcn.0.gcn.A", "gcn.0.gcn.bn.weight"]  # own parameter first
    official = to_official_state_dict(STGCNPP(**NTU))
    assert list(official)[0] == "backbone.data_bn.weight"
    assert list(official)[-2:] == ["cls_head.fc_cls.weight", "cls_head.fc_cls.bias"]
    assert all(from_official_key(k) in sd for k in official)


def test_graph_is_pyskl_nturgbd_spatial():
    a = pyskl_spatial_graph("ntu")
    assert a.shape == (3, 25, 25) and a.dtype == np.float32
    assert np.array_equal(a[0], np.eye(25))
    # PYSKL links the hand tips and thumbs to the hands (22->8, 23->8, 24->12, 25->12)
    assert a[1][7, 21] == 1 and a[1][7, 22] == 1 and a[1][11, 23] == 1 and a[1][11, 24] == 1
    assert a[1].sum(0)[20] == 0 and np.allclose(np.delete(a[1].sum(0), 20), 1)  # root: no parent
    assert not np.array_equal(a, spatial_graph("ntu"))  # CTR-GCN chains them instead
    for g in ("ucla", "coco17"):
        assert np.array_equal(pyskl_spatial_graph(g), spatial_graph(g))


def test_initialisation_is_pyskls():
    torch.manual_seed(0)
    m = STGCNPP(**NTU)
    assert torch.equal(m.gcn[3].gcn.A, torch.from_numpy(pyskl_spatial_graph("ntu")))
    assert m.fc.bias.abs().max() == 0 and 0.008 < m.fc.weight.std() < 0.012  # normal_init(0.01)
    bns = [mod for mod in m.modules() if isinstance(mod, nn.modules.batchnorm._BatchNorm)]
    assert all(bool((b.weight == 1).all() and (b.bias == 0).all()) for b in bns)  # torch default
    w = m.gcn[1].gcn.conv.weight  # torch's default conv init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert w.abs().max() <= 1 / 8 and w.std() > 0.05


# ----------------------------------------------------------------------------- contract
def test_registered_and_built_by_name_with_the_harness_arguments():
    assert "stgcnpp" in BACKBONES.names()
    m = build_backbone("stgcnpp", num_class=7, num_point=20, num_person=1, graph="ucla",
                       in_channels=3, base_channel=16)
    assert isinstance(m, STGCNPP) and m.feat_dim == 64 and m.fc.out_features == 7
    assert (m.num_class, m.num_point, m.num_person, m.graph, m.in_channels) == (7, 20, 1, "ucla20", 3)
    assert sum(p.numel() for p in m.parameters()) < 200_000


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(BenchmarkError, match="unknown graph 'kinetics'"):
        STGCNPP(graph="kinetics")
    with pytest.raises(BenchmarkError, match="20 joints, num_point=25"):
        STGCNPP(num_point=25, graph="ucla")
    with pytest.raises(BenchmarkError, match="base_channel must be >= 6"):
        STGCNPP(base_channel=4)


@pytest.mark.parametrize("kw, t, shape", [
    (TINY, 12, (2, 2, 32, 3, 25)),
    (dict(TINY, graph="ucla", num_point=20, num_person=1), 13, (2, 1, 32, 4, 20)),
    (dict(TINY, graph="coco17", num_point=17), 9, (2, 2, 32, 3, 17)),
])
def test_contract_shapes_and_composition(kw, t, shape):
    torch.manual_seed(0)
    m = randomize(STGCNPP(**kw)).eval()
    x = torch.randn(2, 3, t, kw["num_point"], kw["num_person"])
    with torch.no_grad():
        fmap = m.features(x)
        assert fmap.shape == shape
        h = m.stem(x)
        assert h.shape == (2 * kw["num_person"], 3, t, kw["num_point"])
        for blk in m.blocks():
            h = blk(h)
        assert torch.allclose(h.reshape(shape), fmap)
        feat = m.pool(fmap)
        assert feat.shape == (2, m.feat_dim) == (2, 32)
        logits, f2 = m(x, return_feat=True)
        assert torch.allclose(m.head(feat), logits) and torch.allclose(f2, feat)
        assert torch.allclose(m(x), logits)
    assert m.block_names() == [f"gcn.{i}" for i in range(10)]
    assert [getattr(m, nm) for nm in m.block_names()] == m.blocks()
    assert isinstance(m.fc, nn.Linear) and (m.fc.in_features, m.fc.out_features) == (32, 5)
    assert {k for k, _ in m.named_parameters() if is_classifier(k)} == {"fc.weight", "fc.bias"}


def test_three_dimensional_input_is_one_person():
    m = randomize(STGCNPP(**dict(TINY, num_person=1))).eval()
    x = torch.randn(2, 3, 8, 25, 1)
    flat = x[..., 0].permute(0, 2, 3, 1).reshape(2, 8, 75)
    with torch.no_grad():
        assert torch.allclose(m(flat), m(x), atol=1e-6)


def test_a_block_can_be_replaced_by_its_name_and_narrow_copies_built():
    m = STGCNPP(**TINY)
    setattr(m, "gcn.7", nn.Identity())  # what RIDE does with block_names()[shared:]
    assert isinstance(m.gcn[7], nn.Identity) and "gcn.7" not in m._modules
    blocks, dim = m.make_blocks(5, 0.75)
    assert len(blocks) == 5 and dim == 24
    h = torch.randn(4, 16, 8, 25)  # block 5's input: 2 * base channels, T/2
    for blk in blocks:
        h = blk(h)
    assert h.shape == (4, 24, 4, 25)  # one more stride-2 block (index 7)


# ----------------------------------------------------------------------------- maths
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("kw, t", [(TINY, 12), (dict(TINY, graph="ucla", num_point=20,
                                                      num_person=1, base_channel=12), 11)])
def test_batched_path_equals_the_official_formulas(kw, t, train):
    """Our (V, N, T, C) path vs the modules' own official-formula forwards, float64: logits,
    every gradient, and the BN running statistics it leaves."""
    torch.manual_seed(0)
    ours = randomize(STGCNPP(**kw)).double()
    ref = randomize(STGCNPP(**kw)).double()
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(3, 3, t, kw["num_point"], kw["num_person"], dtype=torch.float64)
    y = torch.tensor([0, 3, 4])
    outs = {}
    for name, model, fwd in (("ours", ours, ours), ("ref", ref, lambda u: reference_forward(ref, u))):
        model.train(train)
        logits = fwd(x)
        F.cross_entropy(logits, y).backward()
        outs[name] = (logits.detach(), {k: p.grad for k, p in model.named_parameters()},
                      model.state_dict())
    (lo, go, so), (lr, gr, sr) = outs["ours"], outs["ref"]
    assert torch.allclose(lo, lr, rtol=0, atol=1e-12 * lr.abs().max())
    scale = max(g.abs().max() for g in gr.values())
    for k in gr:
        assert torch.allclose(go[k], gr[k], rtol=0, atol=1e-11 * scale), k
    for k in sr:
        assert torch.allclose(so[k].double(), sr[k].double(), rtol=0, atol=1e-12), k


def test_golden_logits_of_the_official_model(check):
    """Against PYSKL's own STGCN + GCNHead (float64 outputs stored by the check script): eval
    and train logits, and per-tensor gradient norms of a cross-entropy step."""
    gold = np.load(GOLDEN_FILE)
    assert check.GOLDEN == TINY
    model = STGCNPP(**check.GOLDEN).double()
    check.golden_state(model)
    sums = [v.double().sum().item() for v in model.state_dict().values() if v.is_floating_point()]
    np.testing.assert_allclose(sums, gold["weight_sums"], rtol=1e-12, atol=1e-12)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(check.GOLDEN_INPUT, generator=gen, dtype=torch.float64) * 2 - 1
    assert abs(x.sum().item() - gold["input_sum"]) < 1e-9
    y = torch.arange(x.shape[0]) % TINY["num_class"]
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-4)):
        m = model.to(dtype)
        m.eval()
        with torch.no_grad():
            ev = m(x.to(dtype)).double().numpy()
        m.train()
        m.zero_grad(set_to_none=True)
        tr = m(x.to(dtype))
        F.cross_entropy(tr, y).backward()
        tr = tr.detach().double().numpy()
        for got, want in ((ev, gold["eval_logits"]), (tr, gold["train_logits"])):
            assert np.abs(got - want).max() <= tol * np.abs(want).max()
        if dtype == torch.float64:  # float32 rounding may flip a max-pool tie or a ReLU here
            norms = np.array([p.grad.double().norm().item() for p in m.parameters()])
            assert np.abs(norms - gold["grad_norms"]).max() <= tol * gold["grad_norms"].max()
        model.double()
        check.golden_state(model)  # restore the float64 weights and running statistics


# ----------------------------------------------------------------------------- checkpoints
def test_official_state_dict_round_trip_and_checkpoint_files(tmp_path):
    torch.manual_seed(0)
    src = randomize(STGCNPP(**TINY)).eval()
    official = to_official_state_dict(src)
    dst = STGCNPP(**TINY).eval()
    load_official_state_dict(dst, {"module." + k: v for k, v in official.items()})
    x = torch.randn(2, 3, 8, 25, 2)
    with torch.no_grad():
        assert torch.equal(src(x), dst(x))
    assert all(torch.equal(v, src.state_dict()[k]) for k, v in dst.state_dict().items())
    load_official_state_dict(dst, src.state_dict())  # our own names load too
    # an mmcv/PYSKL checkpoint: {'meta': ..., 'state_dict': {...}, 'optimizer': ...}
    path = tmp_path / "epoch_16.pth"
    torch.save({"meta": {"epoch": 16}, "state_dict": official}, path)
    fresh = STGCNPP(**TINY)
    load_checkpoint_file(path, fresh)
    assert torch.equal(fresh.fc.weight, src.fc.weight)
    with pytest.raises(BenchmarkError, match="1 missing key"):
        load_official_state_dict(fresh, {k: v for k, v in official.items() if "gcn.3.gcn.A" not in k})
    with pytest.raises(BenchmarkError, match="cls_head.fc_cls|fc.weight has shape"):
        load_official_state_dict(STGCNPP(**dict(TINY, num_class=6)), official)
    with pytest.raises(BenchmarkError, match="no such checkpoint"):
        load_checkpoint_file(tmp_path / "missing.pth", fresh)
