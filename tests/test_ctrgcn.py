"""CTR-GCN backbone: official state_dict layout and sizes, graph, initialisation, and the
forward pass against independent numpy re-computations of the official formulas (CTR-GCN's
``model/ctrgcn.py``).

The comparison with the official code itself is ``scripts/check_ctrgcn_official.py`` (by hand:
it needs a checkout of the official repository)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.backbones import BACKBONES, build_backbone
from benchmark.backbones.ctrgcn import (CTRGC, CTRGCN, MultiScaleTemporalConv, TCNGCNUnit,
                                        UnitGCN, load_checkpoint_file, load_official_state_dict)
from benchmark.backbones.graph import spatial_graph
from benchmark.errors import BenchmarkError

NTU = dict(num_class=60, num_point=25, num_person=2, graph="ntu")
EPS = 1e-5  # BatchNorm eps


@pytest.fixture(scope="module")
def ntu60():
    torch.manual_seed(0)
    return CTRGCN(**NTU)


def seeded_state(module: torch.nn.Module, seed: int = 0) -> None:
    """Every tensor of the state set from one seeded generator, in state_dict key order.
    Gammas/variances positive, alpha non-zero so every path of the unit is exercised."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, t in module.state_dict().items():
            if not t.is_floating_point():
                continue
            u = torch.rand(t.shape, generator=gen, dtype=torch.float64).to(t.dtype)
            if k.endswith(("running_var", "bn.weight")) or ".1.weight" in k or ".4.weight" in k:
                t.copy_(0.5 + u)
            else:
                t.copy_(u - 0.5)


def np_sd(module):
    return {k: v.detach().double().numpy() for k, v in module.state_dict().items()}


# ----------------------------------------------------------------------------- numpy reference
def np_conv1x1(x, w, b, stride=1):
    return np.einsum("oc,nctv->notv", w[:, :, 0, 0], x[:, :, ::stride]) + b[None, :, None, None]


def np_tconv(x, w, b, stride, dilation):
    """(k, 1) temporal conv, 'same' padding, as official: out[t] = sum_j w[j] x[t*s + j*d - p]."""
    k = w.shape[2]
    pad = (k + (k - 1) * (dilation - 1) - 1) // 2
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (0, 0)))
    t_out = (x.shape[2] - 1) // stride + 1
    out = np.zeros((x.shape[0], w.shape[0], t_out, x.shape[3]))
    for j in range(k):
        taps = xp[:, :, j * dilation: j * dilation + (t_out - 1) * stride + 1: stride]
        out += np.einsum("oc,nctv->notv", w[:, :, j, 0], taps)
    return out + b[None, :, None, None]


def np_maxpool_t(x, stride):
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (0, 0)), constant_values=-np.inf)
    t_out = (x.shape[2] - 1) // stride + 1
    return np.max([xp[:, :, j: j + (t_out - 1) * stride + 1: stride] for j in range(3)], axis=0)


def np_bn(x, sd, prefix, train):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    if train:
        mean, var = x.mean(axes), x.var(axes)  # biased variance normalises in train mode
    else:
        mean, var = sd[prefix + "running_mean"], sd[prefix + "running_var"]
    xn = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + EPS)
    return xn * sd[prefix + "weight"].reshape(shape) + sd[prefix + "bias"].reshape(shape)


def np_ctrgc(x, sd, p, a, alpha):
    """CTRGC: q, k time-means of conv1/conv2, rel = tanh(q_u - k_v), topo = conv4(rel)*alpha + A."""
    q = np_conv1x1(x, sd[p + "conv1.weight"], sd[p + "conv1.bias"]).mean(2)
    k = np_conv1x1(x, sd[p + "conv2.weight"], sd[p + "conv2.bias"]).mean(2)
    v = np_conv1x1(x, sd[p + "conv3.weight"], sd[p + "conv3.bias"])
    rel = np.tanh(q[:, :, :, None] - k[:, :, None, :])
    w4, b4 = sd[p + "conv4.weight"][:, :, 0, 0], sd[p + "conv4.bias"]
    topo = (np.einsum("or,nruv->nouv", w4, rel) + b4[None, :, None, None]) * alpha + a
    return np.einsum("ncuv,nctv->nctu", topo, v)


def np_unit_gcn(x, sd, p, train):
    z = sum(np_ctrgc(x, sd, f"{p}convs.{i}.", sd[p + "PA"][i], sd[p + "alpha"][0]) for i in range(3))
    if p + "down.0.weight" in sd:
        res = np_bn(np_conv1x1(x, sd[p + "down.0.weight"], sd[p + "down.0.bias"]), sd, p + "down.1.", train)
    else:
        res = x
    return np.maximum(np_bn(z, sd, p + "bn.", train) + res, 0)


def np_tcn(x, sd, p, stride, train):
    def entry(i):
        h = np_conv1x1(x, sd[f"{p}branches.{i}.0.weight"], sd[f"{p}branches.{i}.0.bias"])
        return np.maximum(np_bn(h, sd, f"{p}branches.{i}.1.", train), 0)

    outs = []
    for i, d in ((0, 1), (1, 2)):
        q = f"{p}branches.{i}.3."
        outs.append(np_bn(np_tconv(entry(i), sd[q + "conv.weight"], sd[q + "conv.bias"], stride, d),
                          sd, q + "bn.", train))
    outs.append(np_bn(np_maxpool_t(entry(2), stride), sd, f"{p}branches.2.4.", train))
    h = np_conv1x1(x, sd[f"{p}branches.3.0.weight"], sd[f"{p}branches.3.0.bias"], stride)
    outs.append(np_bn(h, sd, f"{p}branches.3.1.", train))
    return np.concatenate(outs, axis=1)


def np_block(x, sd, p, stride, residual, train):
    y = np_tcn(np_unit_gcn(x, sd, p + "gcn1.", train), sd, p + "tcn1.", stride, train)
    if residual == "unit_tcn":
        y = y + np_bn(np_conv1x1(x, sd[p + "residual.conv.weight"], sd[p + "residual.conv.bias"], stride),
                      sd, p + "residual.bn.", train)
    elif residual == "identity":
        y = y + x
    return np.maximum(y, 0)


# ----------------------------------------------------------------------------- state_dict
def test_state_dict_is_the_official_layout(ntu60):
    sd = ntu60.state_dict()
    assert len(sd) == 822
    assert len(list(ntu60.parameters())) == 564
    bns = [m for m in ntu60.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert len(bns) == 86 and len([k for k in sd if k.endswith("num_batches_tracked")]) == 86
    expect = {
        "data_bn.weight": (150,), "data_bn.num_batches_tracked": (),
        "l1.gcn1.PA": (3, 25, 25), "l1.gcn1.alpha": (1,),
        "l1.gcn1.convs.0.conv1.weight": (8, 3, 1, 1), "l1.gcn1.convs.2.conv4.weight": (64, 8, 1, 1),
        "l1.gcn1.down.0.weight": (64, 3, 1, 1), "l1.gcn1.down.1.running_var": (64,),
        "l5.residual.conv.weight": (128, 64, 1, 1), "l5.residual.bn.bias": (128,),
        "l6.gcn1.convs.1.conv2.weight": (16, 128, 1, 1), "l9.gcn1.convs.0.conv1.bias": (32,),
        "l8.tcn1.branches.2.4.running_mean": (64,), "l8.tcn1.branches.0.3.conv.weight": (64, 64, 5, 1),
        "l10.tcn1.branches.3.1.weight": (64,), "l3.gcn1.bn.weight": (64,),
        "fc.weight": (60, 256), "fc.bias": (60,),
    }
    for k, shape in expect.items():
        assert tuple(sd[k].shape) == shape, k
    # only l1, l5, l8 change width: the only down branches and unit_tcn residuals
    assert sorted({k.split(".")[0] for k in sd if ".gcn1.down." in k}) == ["l1", "l5", "l8"]
    assert sorted({k.split(".")[0] for k in sd if ".residual." in k}) == ["l5", "l8"]
    # stateless modules (ReLU, MaxPool) keep their Sequential slots: no keys at index 2, 3 of branch 2
    assert not any(".branches.2.2." in k or ".branches.2.3." in k for k in sd)
    assert list(sd)[:5] == ["data_bn.weight", "data_bn.bias", "data_bn.running_mean",
                            "data_bn.running_var", "data_bn.num_batches_tracked"]
    assert list(sd)[5:7] == ["l1.gcn1.PA", "l1.gcn1.alpha"] and list(sd)[-2:] == ["fc.weight", "fc.bias"]


@pytest.mark.parametrize("kw, n_params", [
    (dict(NTU), 1_446_672),
    (dict(NTU, num_class=120), 1_462_092),
    (dict(num_class=10, num_point=20, num_person=1, graph="ucla"), 1_426_892),
    (dict(num_class=400, num_point=17, num_person=2, graph="coco17"), 1_523_876),
])
def test_parameter_counts(kw, n_params):
    m = CTRGCN(**kw)
    assert sum(p.numel() for p in m.parameters()) == n_params
    assert all(p.requires_grad for p in m.parameters()) and len(m.state_dict()) == 822


def test_registered_and_built_by_name():
    assert "ctrgcn" in BACKBONES.names()
    m = build_backbone("ctrgcn", num_class=5, num_point=20, num_person=1, graph="ucla", base_channel=16)
    assert isinstance(m, CTRGCN) and m.feat_dim == 64 and m.fc.out_features == 5
    with pytest.raises(BenchmarkError, match="did you mean ctrgcn"):
        build_backbone("ctrgc")


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(BenchmarkError, match="unknown graph 'kinetics'"):
        CTRGCN(graph="kinetics")
    with pytest.raises(BenchmarkError, match="20 joints, num_point=25"):
        CTRGCN(num_point=25, graph="ucla")
    with pytest.raises(BenchmarkError, match="multiple of 8"):
        CTRGCN(base_channel=12)


# ----------------------------------------------------------------------------- shapes
def test_layer_output_shapes(ntu60):
    shapes = {}
    hooks = [layer.register_forward_hook(lambda mod, i, o, k=k: shapes.__setitem__(k, tuple(o.shape)))
             for k, layer in enumerate(ntu60.layers(), 1)]
    try:
        with torch.no_grad():
            ntu60.eval()
            logits = ntu60(torch.randn(2, 3, 64, 25, 2))
    finally:
        for h in hooks:
            h.remove()
        ntu60.train()
    assert [shapes[k] for k in range(1, 11)] == ([(4, 64, 64, 25)] * 4 + [(4, 128, 32, 25)] * 3
                                                + [(4, 256, 16, 25)] * 3)
    assert logits.shape == (2, 60)


def test_base_channel_16_and_odd_lengths():
    torch.manual_seed(0)
    m = CTRGCN(num_class=7, base_channel=16)
    assert m.feat_dim == 64
    x = torch.randn(3, 3, 17, 25, 2)  # odd T: strided layers give ceil(T/2) frames
    fmap = m.features(x)
    assert fmap.shape == (3, 2, 64, 5, 25)
    logits, feat = m(x, return_feat=True)
    assert logits.shape == (3, 7) and feat.shape == (3, 64)
    logits.sum().backward()
    assert all(p.grad is not None for p in m.parameters())


def test_features_pool_head_compose_to_forward():
    torch.manual_seed(1)
    m = CTRGCN(num_class=9, base_channel=16, drop_out=0.5).eval()
    x = torch.randn(2, 3, 16, 25, 2)
    with torch.no_grad():
        fmap = m.features(x)
        feat = m.pool(fmap)
        logits, feat2 = m(x, return_feat=True)
    # official pooling: view (N, M, C, T'*V), mean over the last axis, then over persons
    assert torch.equal(feat, fmap.reshape(2, 2, 64, -1).mean(3).mean(1))
    assert torch.equal(feat, feat2) and torch.equal(m.head(feat), logits)
    with torch.no_grad():
        assert torch.equal(m(x), logits)
    # with grad enabled the module path runs (BN not folded): equal up to rounding
    torch.testing.assert_close(m(x).detach(), logits, rtol=1e-5, atol=1e-5)


def test_three_dimensional_input_is_one_person():
    torch.manual_seed(2)
    m = CTRGCN(num_class=4, num_person=1, base_channel=16).eval()
    x = torch.randn(2, 3, 16, 25, 1)
    flat = x[..., 0].permute(0, 2, 3, 1).reshape(2, 16, 75)  # (N, T, V*C)
    with torch.no_grad():
        assert torch.allclose(m(flat), m(x), atol=1e-6)


# ----------------------------------------------------------------------------- graph and init
@pytest.mark.parametrize("graph, v", [("ntu", 25), ("ucla", 20), ("coco17", 17)])
def test_graph_invariants(graph, v):
    a = spatial_graph(graph)
    assert a.shape == (3, v, v) and a.dtype == np.float32
    assert np.array_equal(a[0], np.eye(v))
    for sub in a[1:]:
        sums = sub.sum(0)
        assert np.allclose(sums[sums > 0], 1) and ((sums == 0) | np.isclose(sums, 1)).all()
    assert np.array_equal(a[1] > 0, (a[2] > 0).T)  # outward = reversed inward links
    if graph == "ntu":
        assert not a[1][:, 20].any()               # joint 21 (spine shoulder) has no parent
        assert a[1][1, 0] == 1 and a[1][20, 1] == 1  # inward (1,2): [parent 2, child 1] = 1
        assert np.isclose(a[2][:, 20].sum(), 1) and (a[2][:, 20] > 0).sum() == 4  # 4 children


def test_initialisation(ntu60):
    a = torch.from_numpy(spatial_graph("ntu"))
    assert torch.equal(ntu60.data_bn.weight, torch.ones(150)) and not ntu60.data_bn.bias.any()
    tcn_gammas = []
    for layer in ntu60.layers():
        g = layer.gcn1
        assert torch.equal(g.PA.detach(), a) and g.alpha.item() == 0
        assert torch.all(g.bn.weight == 1e-6) and not g.bn.bias.any()
        for name, m in g.named_modules():
            if isinstance(m, torch.nn.Conv2d):
                assert not m.bias.any(), name
            if isinstance(m, torch.nn.BatchNorm2d) and m is not g.bn:
                assert torch.all(m.weight == 1), name
        tcn_gammas += [m.weight.detach() for m in layer.tcn1.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        if layer.residual is not None:
            assert torch.all(layer.residual.bn.weight == 1)
    gam = torch.cat(tcn_gammas)  # weights_init: N(1, 0.02) gammas in the temporal blocks
    assert abs(gam.mean().item() - 1) < 0.005 and 0.015 < gam.std().item() < 0.025
    conv = ntu60.l5.gcn1.convs[0].conv3.weight  # kaiming normal, fan_out = 128
    assert abs(conv.std().item() - (2 / 128) ** 0.5) < 0.01
    assert abs(ntu60.fc.weight.std().item() - (2 / 60) ** 0.5) < 0.01
    assert ntu60.fc.bias.abs().max().item() <= 1 / 16  # PyTorch's default Linear bias


# ----------------------------------------------------------------------------- forward values
def test_ctrgc_matches_numpy():
    torch.manual_seed(0)
    m = CTRGC(16, 32).double()
    seeded_state(m, 3)
    x = torch.rand(2, 16, 6, 25, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    a = torch.from_numpy(spatial_graph("ntu")[1]).double()
    alpha = torch.tensor([0.7], dtype=torch.float64)
    got = m(x, a, alpha).detach().numpy()
    want = np_ctrgc(x.numpy(), np_sd(m), "", a.numpy(), 0.7)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cin, cout", [(3, 16), (16, 16), (16, 32)])
@pytest.mark.parametrize("train", [True, False])
def test_unit_gcn_matches_numpy(cin, cout, train):
    a = torch.from_numpy(spatial_graph("ntu"))
    m = UnitGCN(cin, cout, a).double().train(train)
    seeded_state(m, cin + cout)
    x = torch.rand(3, cin, 8, 25, generator=torch.Generator().manual_seed(5), dtype=torch.float64) - 0.5
    sd = np_sd(m)
    got = m(x).detach().numpy()
    np.testing.assert_allclose(got, np_unit_gcn(x.numpy(), sd, "", train), rtol=1e-9, atol=1e-10)
    # and the batched forward equals the sum of the per-subset reference CTRGC.forward
    with torch.no_grad():
        z = sum(c(x, m.PA[i], m.alpha) for i, c in enumerate(m.convs))
        res = x if m.down is None else m.down(x)
        np.testing.assert_allclose(got, torch.relu(m.bn(z) + res).numpy(), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("stride, t", [(1, 8), (2, 8), (2, 7)])
def test_temporal_block_matches_numpy(stride, t):
    m = MultiScaleTemporalConv(16, stride).double()
    seeded_state(m, 7)
    x = torch.rand(2, 16, t, 5, generator=torch.Generator().manual_seed(8), dtype=torch.float64) - 0.5
    got = m(x).detach().numpy()
    np.testing.assert_allclose(got, np_tcn(x.numpy(), np_sd(m), "", stride, True), rtol=1e-9, atol=1e-10)
    with torch.no_grad():  # the fused entry conv equals running the official Sequentials
        seq = torch.cat([br(x) for br in m.branches], dim=1).numpy()
    np.testing.assert_allclose(got, seq, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("cin, cout, stride, residual, kind", [
    (3, 16, 1, False, "none"), (16, 32, 2, True, "unit_tcn"), (16, 16, 1, True, "identity")])
def test_tcn_gcn_unit_matches_numpy(cin, cout, stride, residual, kind):
    a = torch.from_numpy(spatial_graph("ntu"))
    m = TCNGCNUnit(cin, cout, a, stride=stride, residual=residual).double()
    seeded_state(m, 9)
    x = torch.rand(2, cin, 8, 25, generator=torch.Generator().manual_seed(10), dtype=torch.float64) - 0.5
    got = m(x).detach().numpy()
    want = np_block(x.numpy(), np_sd(m), "", stride, kind, True)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-10)


def test_data_bn_order_and_pooling_match_numpy():
    """Eval mode with distinct running statistics per data_bn channel m*V*C + v*C + c."""
    m = CTRGCN(num_class=6, base_channel=16).double().eval()
    seeded_state(m, 11)
    x = torch.rand(2, 3, 8, 25, 2, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    seen = {}
    m.l1.register_forward_pre_hook(lambda mod, inp: seen.__setitem__("l1_in", inp[0].detach()))
    m.l10.register_forward_hook(lambda mod, inp, out: seen.__setitem__("l10_out", out.detach()))
    with torch.no_grad():
        logits, feat = m(x, return_feat=True)
    fmap = seen["l10_out"].view(2, 2, 64, 2, 25)  # (N, M, C, T/4, V)
    sd = np_sd(m)
    xn = x.numpy()
    n, c, t, v, mm = xn.shape
    ch = (np.arange(mm)[:, None, None] * v * c + np.arange(v)[None, :, None] * c
          + np.arange(c)[None, None, :])                                       # (M, V, C)
    scale = sd["data_bn.weight"][ch] / np.sqrt(sd["data_bn.running_var"][ch] + EPS)
    shift = sd["data_bn.bias"][ch] - sd["data_bn.running_mean"][ch] * scale
    bn = xn.transpose(0, 4, 3, 1, 2) * scale[None, :, :, :, None] + shift[None, :, :, :, None]
    want_in = bn.transpose(0, 1, 3, 4, 2).reshape(n * mm, c, t, v)           # (N*M, C, T, V)
    np.testing.assert_allclose(seen["l1_in"].numpy(), want_in, rtol=1e-12, atol=1e-12)
    y = np_block(want_in, sd, "l1.", 1, "none", False)
    np.testing.assert_allclose(m.l1(torch.from_numpy(want_in)).detach().numpy(), y, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(feat.numpy(), fmap.numpy().mean((3, 4)).mean(1), rtol=1e-12)
    np.testing.assert_allclose(logits.numpy(), feat.numpy() @ sd["fc.weight"].T + sd["fc.bias"],
                               rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- checkpoints
def small(num_class=5):
    torch.manual_seed(0)
    return CTRGCN(num_class=num_class, base_channel=16)


def test_checkpoint_round_trip_strict(tmp_path):
    src = small()
    seeded_state(src, 13)
    for name, obj in [("bare", src.state_dict()),
                      ("ddp", {"module." + k: v for k, v in src.state_dict().items()}),
                      ("wrapped_model", {"model": src.state_dict(), "epoch": 3}),
                      ("wrapped_state_dict", {"state_dict": src.state_dict()})]:
        path = tmp_path / f"{name}.pt"
        torch.save(obj, path)
        dst = small()
        load_checkpoint_file(path, dst)
        got = dst.state_dict()
        for k, v in src.state_dict().items():
            assert torch.equal(v, got[k]), (name, k)
    x = torch.randn(2, 3, 16, 25, 2)
    with torch.no_grad():
        assert torch.equal(src.eval()(x), dst.eval()(x))


def test_wrong_shape_checkpoint_is_a_one_line_error(tmp_path):
    path = tmp_path / "ntu120.pt"
    torch.save(small(num_class=120).state_dict(), path)
    with pytest.raises(BenchmarkError) as e:
        load_checkpoint_file(path, small(num_class=60))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(path))
    assert "fc.weight has shape (120, 64) in the checkpoint but (60, 64) in the model" in msg
    assert "2 mismatching" in msg
    with pytest.raises(BenchmarkError, match="fc.weight has shape"):
        load_official_state_dict(small(60), small(120).state_dict())


def test_other_bad_checkpoints(tmp_path):
    model = small()
    with pytest.raises(BenchmarkError, match="no such checkpoint file"):
        load_checkpoint_file(tmp_path / "missing.pt", model)
    sd = model.state_dict()
    sd.pop("l3.gcn1.alpha")
    sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "keys.pt")
    missing_and_extra = "1 missing key.*'l3.gcn1.alpha'.*1 unexpected key.*'extra.weight'"
    with pytest.raises(BenchmarkError, match=missing_and_extra):
        load_checkpoint_file(tmp_path / "keys.pt", model)
    torch.save({"note": "no weights"}, tmp_path / "meta.pt")
    with pytest.raises(BenchmarkError, match="holds no state_dict"):
        load_checkpoint_file(tmp_path / "meta.pt", model)
    torch.save({"model": CTRGCN}, tmp_path / "pickle.pt")  # a class: refused by weights_only
    with pytest.raises(BenchmarkError, match="not a readable weights-only checkpoint") as e:
        load_checkpoint_file(tmp_path / "pickle.pt", model)
    assert "\n" not in str(e.value)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BenchmarkError, match="junk.pt: not a readable"):
        load_checkpoint_file(tmp_path / "junk.pt", model)


def test_cpu_eval_forward_folded_in_pieces_equals_module_path(monkeypatch):
    """A no-grad eval forward on CPU folds BN into the convs and runs in cache-sized pieces:
    same logits as the module path (grad enabled), exactly the same maths in float64, for a
    batch not a multiple of the piece; training mode, grad mode and hooks keep the module path."""
    import benchmark.backbones.ctrgcn as mod
    import benchmark.backbones.ctrgcn_eval as fold_mod
    torch.manual_seed(0)
    model = CTRGCN(num_class=7, base_channel=16).eval()  # l1 has a down branch, l5/l8 UnitTCN
    with torch.no_grad():  # non-trivial BN statistics and affine terms, alpha != 0
        for mdl in model.modules():
            if isinstance(mdl, torch.nn.BatchNorm2d):
                mdl.running_mean.normal_(0, 0.1)
                mdl.running_var.uniform_(0.5, 2)
                mdl.weight.uniform_(0.5, 1.5)
                mdl.bias.normal_(0, 0.1)
            if isinstance(mdl, mod.UnitGCN):
                mdl.alpha.fill_(0.3)
    x = torch.randn(7, 3, 16, 25, 2)
    monkeypatch.setattr(mod, "CPU_EVAL_CHUNK_BYTES", 4 * 2 * 16 * 16 * 25 * 3)  # 3 clips a piece
    assert model.eval_chunk(16, 25, 2) == 3
    pieces = []
    real_run = fold_mod.run
    monkeypatch.setattr(fold_mod, "run", lambda f, p: pieces.append(p.shape[0]) or real_run(f, p))
    with torch.no_grad():
        fast = model(x)
    assert pieces == [6, 6, 2]  # 3 + 3 + 1 clips x 2 persons
    ref = model(x).detach()  # grad enabled: the module path
    assert len(pieces) == 3
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))
    m64, x64 = model.double(), x.double()
    with torch.no_grad():
        fast64 = m64(x64)
    torch.testing.assert_close(fast64, m64(x64).detach(), rtol=1e-10, atol=1e-10)
    model.float()
    pieces.clear()
    calls = []  # a hook on a block: the module path runs (the hook sees the whole batch)
    hook = model.l1.register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
    with torch.no_grad():
        hooked = model(x)
    hook.remove()
    assert calls == [14] and pieces == []
    torch.testing.assert_close(hooked, ref)
    model.train()
    with torch.no_grad():
        model(x)
    assert pieces == []  # training mode: never folded


def test_cpu_eval_forward_runs_each_distinct_person_once(monkeypatch):
    """One-person clips (second person all zeros, NTU style) share one zero person row: the
    folded eval path runs it once and gives every clip its output (= the module path)."""
    import benchmark.backbones.ctrgcn_eval as fold_mod
    torch.manual_seed(0)
    model = CTRGCN(num_class=7, base_channel=8).eval()
    with torch.no_grad():
        for mdl in model.modules():
            if isinstance(mdl, torch.nn.BatchNorm2d):
                mdl.running_mean.normal_(0, 0.1)
                mdl.bias.normal_(0, 0.1)
        model.data_bn.running_mean.normal_(0, 0.5)  # a zero person is not a zero row
    x = torch.randn(6, 3, 16, 25, 2)
    x[:4, ..., 1] = 0          # clips 0-3: one person
    x[5] = x[4]                # clip 5 repeats clip 4
    rows = []
    real_run = fold_mod.run
    monkeypatch.setattr(fold_mod, "run", lambda f, p: rows.append(p.shape[0]) or real_run(f, p))
    with torch.no_grad():
        fast = model(x)
    assert sum(rows) == 4 + 1 + 2  # 4 first persons, 1 shared zero person, clip 4's 2 persons
    ref = model(x).detach()
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()))
    assert torch.equal(fast[4], fast[5])
