"""AAGCN backbone (2s-AGCN's attention-enhanced model): graphs, shapes, the backbone contract,
the official state_dict layout and parameter counts, checkpoint round trip, the batched
unit against the official per-subset formula, and golden vectors of the official code.

The comparison with the official code itself is ``scripts/check_aagcn_official.py`` (by hand:
it needs a checkout of lshiwjx/2s-AGCN); it wrote ``tests/golden/aagcn_golden_*.npy`` from the
official model in float64, so the equivalence is checked here without the checkout."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.backbones import BACKBONES, build_backbone, is_classifier
from benchmark.backbones.aagcn import (AAGCN, TCNGCNUnit, UnitGCN, load_checkpoint_file,
                                       load_official_state_dict)
from benchmark.backbones.graph import spatial_graph
from benchmark.errors import BenchmarkError
from conftest import load_script

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
NTU = dict(num_point=25, num_person=2, graph="ntu")
UCLA = dict(num_point=20, num_person=1, graph="ucla")

# Measured with scripts/check_aagcn_official.py on the official model/aagcn.py (same counts
# for ours): 3,797,088 on NTU-120 is the "2s-AGCN" row (3.80M) of Shap-Mix's backbone table.
OFFICIAL_PARAMS = {(60, "ntu"): 3_781_668, (120, "ntu"): 3_797_088, (10, "ucla"): 3_753_440}

# The official state_dict keys of a widening, strided block (l5 of model/aagcn.py), in order
OFFICIAL_L5_KEYS = (
    ["gcn1.PA", "gcn1.alpha"]
    + [f"gcn1.conv_{n}.{i}.{p}" for n in "dab" for i in range(3) for p in ("weight", "bias")]
    + [f"gcn1.{m}.{p}" for m in ("conv_ta", "conv_sa", "fc1c", "fc2c", "down.0")
       for p in ("weight", "bias")]
    + [f"{m}.{p}" for m in ("gcn1.down.1", "gcn1.bn")
       for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]
    + ["tcn1.conv.weight", "tcn1.conv.bias"]
    + [f"tcn1.bn.{p}" for p in ("weight", "bias", "running_mean", "running_var",
                                "num_batches_tracked")]
    + ["residual.conv.weight", "residual.conv.bias"]
    + [f"residual.bn.{p}" for p in ("weight", "bias", "running_mean", "running_var",
                                    "num_batches_tracked")])


def small(num_class=6, base_channel=8, **kw):
    torch.manual_seed(0)
    return build_backbone("aagcn", num_class=num_class, in_channels=3,
                          base_channel=base_channel, **(kw or NTU))


def live_state(model: torch.nn.Module, seed: int = 0) -> None:
    """Every float tensor moved off its init (alpha and the zero-initialised attention weights
    included) so that every path of the model is exercised; variances stay positive."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, t in model.state_dict().items():
            if t.is_floating_point():
                noise = 0.2 * torch.randn(t.shape, generator=gen, dtype=torch.float64).to(t.dtype)
                t.copy_(t.abs() + 0.5 + noise.abs() if k.endswith("running_var") else t + noise)


# ----------------------------------------------------------------------------- build, graphs
def test_registered_on_both_graphs():
    assert "aagcn" in BACKBONES.names()
    x = {"ntu": torch.randn(2, 3, 16, 25, 2), "ucla": torch.randn(2, 3, 16, 20, 1)}
    for kw in (NTU, UCLA):
        model = small(**kw).eval()
        a = torch.from_numpy(spatial_graph(kw["graph"]))
        assert torch.equal(model.l1.gcn1.PA, a) and model.l1.gcn1.PA.shape == (3, *a.shape[1:])
        # the spatial attention's kernel: the joint count, made odd (25 -> 25, 20 -> 19)
        assert model.l1.gcn1.conv_sa.kernel_size == ((25,) if kw["graph"] == "ntu" else (19,))
        with torch.no_grad():
            logits, feat = model(x[kw["graph"]], return_feat=True)
        assert logits.shape == (2, 6) and feat.shape == (2, 32) and model.feat_dim == 32


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(BenchmarkError, match="has 20 joints, num_point=25"):
        build_backbone("aagcn", num_class=5, num_point=25, num_person=1, graph="ucla")
    with pytest.raises(BenchmarkError, match="unknown graph 'kinetics'"):
        build_backbone("aagcn", num_class=5, num_point=18, num_person=2, graph="kinetics")
    with pytest.raises(BenchmarkError, match="base_channel must be an integer >= 4"):
        small(base_channel=2)


def test_official_parameter_counts():
    for (num_class, graph), count in OFFICIAL_PARAMS.items():
        model = AAGCN(num_class=num_class, **(NTU if graph == "ntu" else UCLA))
        assert sum(p.numel() for p in model.parameters()) == count


def test_official_state_dict_layout():
    model = small(base_channel=64)
    sd = model.state_dict()
    assert list(model.l5.state_dict()) == OFFICIAL_L5_KEYS
    assert "l1.residual.conv.weight" not in sd and "l2.residual.conv.weight" not in sd
    assert "l1.gcn1.down.0.weight" in sd and "l2.gcn1.down.0.weight" not in sd
    shapes = {"data_bn.weight": (150,), "l1.gcn1.conv_a.0.weight": (16, 3, 1, 1),
              "l1.gcn1.conv_d.2.weight": (64, 3, 1, 1), "l1.gcn1.conv_ta.weight": (1, 64, 9),
              "l1.gcn1.conv_sa.weight": (1, 64, 25), "l5.gcn1.fc1c.weight": (64, 128),
              "l5.tcn1.conv.weight": (128, 128, 9, 1), "l8.residual.conv.weight": (256, 128, 1, 1),
              "l10.gcn1.fc2c.weight": (256, 128), "fc.weight": (6, 256)}
    assert {k: tuple(sd[k].shape) for k in shapes} == shapes


# ----------------------------------------------------------------------------- contract
def test_backbone_contract():
    model = small().eval()
    x = torch.randn(3, 3, 16, 25, 2)
    with torch.no_grad():
        h = model.stem(x)
        assert h.shape == (6, 3, 16, 25)
        for block in model.blocks():
            h = block(h)
        fmap = model.features(x)
        logits, feat = model(x, return_feat=True)
        assert fmap.shape == (3, 2, 32, 4, 25)  # 4 x base channels, T / 4
        torch.testing.assert_close(h.view(3, 2, *h.shape[1:]), fmap)
        torch.testing.assert_close(model.pool(fmap), feat)
        torch.testing.assert_close(model.head(feat), logits)
        torch.testing.assert_close(model(x), logits)
        # a one-person model also reads the (N, T, V*C) form
        one = small(**UCLA).eval()
        seq = torch.randn(3, 16, 20, 3)
        torch.testing.assert_close(one.features(seq.reshape(3, 16, 60)),
                                   one.features(seq.permute(0, 3, 1, 2).unsqueeze(-1)))
    assert model.block_names() == [f"l{i}" for i in range(1, 11)]
    assert all(getattr(model, n) is b for n, b in zip(model.block_names(), model.blocks()))
    assert isinstance(model.fc, torch.nn.Linear) and model.fc.in_features == model.feat_dim
    assert {n for n, _ in model.named_parameters() if is_classifier(n)} == {"fc.weight", "fc.bias"}
    assert (model.num_class, model.num_point, model.num_person, model.graph, model.in_channels) \
        == (6, 25, 2, "ntu25", 3)
    # blocks() is read at call time: RIDE replaces the experts' blocks by identities
    model.l10 = torch.nn.Identity()
    assert isinstance(model.blocks()[-1], torch.nn.Identity)
    blocks, dim = model.make_blocks(7, 0.75)
    assert len(blocks) == 3 and dim == 24 and all(isinstance(b, TCNGCNUnit) for b in blocks)


def test_trains_a_step_and_every_parameter_gets_a_gradient():
    model = small().train()
    live_state(model)
    loss = model(torch.randn(2, 3, 16, 25, 2)).logsumexp(1).mean()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in model.parameters()), "a parameter got no (finite) gradient"


# ----------------------------------------------------------------------------- maths
@pytest.mark.parametrize("c_in, c_out, graph, attention", [
    (3, 16, "ntu", True), (16, 16, "ucla", True), (16, 32, "ntu", False)])
def test_batched_unit_matches_official_formula(c_in, c_out, graph, attention):
    """``UnitGCN.forward`` (batched) vs ``UnitGCN.reference`` (the official loops), float64,
    train mode (batch statistics) and eval mode, outputs and every gradient."""
    torch.manual_seed(0)
    unit = UnitGCN(c_in, c_out, torch.from_numpy(spatial_graph(graph)), attention=attention)
    unit.double()
    live_state(unit)
    v = unit.PA.shape[-1]
    x = torch.randn(3, c_in, 12, v, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, c_out, 12, v, dtype=torch.float64)
    for train in (True, False):
        results = []
        for fn in (unit.forward, unit.reference):
            unit.train(train)
            unit.zero_grad(set_to_none=True)
            x.grad = None
            y = fn(x)
            (y * w).sum().backward()
            grads = [p.grad.clone() for p in unit.parameters()]
            results.append([y.detach(), x.grad.clone(), *grads])
        for a, b in zip(*results):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_state_dict_round_trip(tmp_path):
    model = small().eval()
    live_state(model)
    x = torch.randn(2, 3, 16, 25, 2)
    path = tmp_path / "official.pt"  # the official format: a bare DataParallel state_dict
    torch.save({"module." + k: v for k, v in model.state_dict().items()}, path)
    fresh = small().eval()
    load_checkpoint_file(path, fresh)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))
    with pytest.raises(BenchmarkError, match=r"fc.weight has shape \(6, 32\)"):
        load_official_state_dict(small(num_class=7), model.state_dict(), source="x.pt")
    with pytest.raises(BenchmarkError, match="missing key"):
        load_official_state_dict(small(), {k: v for k, v in model.state_dict().items()
                                           if "conv_ta" not in k})


# ----------------------------------------------------------------------------- golden
@pytest.mark.parametrize("name", ["ntu", "ucla"])
def test_golden_vectors_of_the_official_code(name):
    """Closed-form weights and input at the official width 64; the file holds the official
    model's eval logits, train logits and selected train-mode gradients in float64 (measured:
    ours within 1.8e-15 (ntu) / 7.5e-15 (ucla) of the scale in float64; in float32 1.5e-4 /
    1.8e-6, the official model's own float32 error being 1.5e-4 / 1.1e-6)."""
    check = load_script("check_aagcn_official")
    config = check.CONFIGS[check.GOLDEN[name][0]][0]
    ref = np.load(GOLDEN_DIR / f"aagcn_golden_{name}.npy")
    model = AAGCN(**config)
    scale = np.abs(ref).max()
    assert np.abs(check.golden_vector(model, name) - ref).max() <= 1e-10 * scale
    # float32: logits (the first 4 x num_class entries) to 1e-4 of their scale
    got = check.golden_vector(model, name, torch.float32)
    k = 4 * config["num_class"]
    assert np.abs(got[:k] - ref[:k]).max() <= 1e-4 * np.abs(ref[:k]).max()
    assert np.abs(got - ref).max() <= 2e-3 * scale
