"""Exact Shapley values of the 5 body parts (benchmark/shapley.py)."""
import itertools

import pytest
import torch
from torch import nn

import methods  # noqa: F401
import methods.shapmix as sm
from benchmark.backbones.ctrgcn import CTRGCN
from benchmark.data.skeleton import get_layout
from benchmark.method import Context
from benchmark.shapley import (COALITIONS, coalition_values, exact_from_values, exact_shapley,
                               shapley_values, value_fn_of)
from methods.shapmix import COMBOS, ShapMix, coalition_probability, exact_combination_values

NTU = get_layout("ntu25")


def _tiny_ctrgcn(C=4):
    torch.manual_seed(0)
    return CTRGCN(num_class=C, num_person=2, base_channel=16).eval()


def test_coalitions_enumerated():
    assert len(COALITIONS) == 32 and len(set(COALITIONS)) == 32
    assert COALITIONS[0] == frozenset() and COALITIONS[-1] == frozenset(range(5))


def test_additive_game_with_pairwise_interaction():
    """v(S) = sum_{p in S} w_p + g [0, 1 in S] + h [0, 2, 3 in S]: phi = w + shares of g, h."""
    w = torch.tensor([0.3, 0.3, -0.2, 0.5, 0.0], dtype=torch.float64)
    g, h = 0.4, 0.9

    def v(S):
        return (w[list(S)].sum() + g * ({0, 1} <= S) + h * ({0, 2, 3} <= S))

    phi = shapley_values(v)
    want = w + torch.tensor([g / 2 + h / 3, g / 2, h / 3, h / 3, 0.0], dtype=torch.float64)
    assert torch.allclose(phi, want, atol=1e-12)
    assert phi[4] == 0                                      # null player
    assert torch.allclose(phi.sum(), v(frozenset(range(5))) - v(frozenset()), atol=1e-12)
    assert phi[0] - h / 3 == pytest.approx(float(phi[1]))      # symmetric in g: equal split


def test_symmetry_and_null_player_on_a_symmetric_model():
    """A model of the summed coordinates of P3 and P4 (4 joints each, clips and baseline
    mirror-symmetric between them) plus P0: P3 and P4 get equal values, P1 and P2 get 0."""
    torch.manual_seed(1)

    class Sym(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 8), nn.Linear(3, 8)
            self.out = nn.Linear(8, 5)

        def forward(self, x):
            z = x.mean(dim=(2, 4))                                   # (N, 3, V)
            legs = z[:, :, list(NTU.parts[3]) + list(NTU.parts[4])].sum(-1)
            trunk = z[:, :, list(NTU.parts[0])].sum(-1)
            return self.out(torch.tanh(self.a(legs)) * torch.tanh(self.b(trunk)) + torch.tanh(self.a(legs)))

    def mirrored(t):  # copy P3's joints onto P4's (same size), so the two parts are exchangeable
        t = t.clone()
        t[..., list(NTU.parts[4]), :] = t[..., list(NTU.parts[3]), :]
        return t

    x = mirrored(torch.randn(3, 3, 6, 25, 2))
    base = mirrored(torch.randn(3, 6, 25, 2))
    r = exact_shapley(Sym(), x, 2, base, NTU.parts)
    assert abs(float(r.parts[3] - r.parts[4])) < 1e-7   # float32 model: summation order
    assert abs(float(r.parts[1])) < 1e-12 and abs(float(r.parts[2])) < 1e-12
    assert abs(float(r.parts[3])) > 1e-4                         # not trivially zero
    assert abs(float(r.parts.sum()) - (r.v_all - r.v_empty)) < 1e-9


def test_efficiency_and_batching_on_a_tiny_ctrgcn():
    model = _tiny_ctrgcn()
    torch.manual_seed(2)
    x, base = torch.randn(3, 3, 8, 25, 2), torch.randn(3, 8, 25, 2)
    vals = coalition_values(model, x, 1, base, NTU.parts, batch_size=256)
    assert vals.shape == (32, 3)
    assert torch.allclose(vals, coalition_values(model, x, 1, base, NTU.parts, batch_size=7), atol=1e-6)
    # the values are the estimator's convention: baseline + the coalition's real joints
    k = COALITIONS.index(frozenset({0, 3}))
    inp = sm.coalition_inputs(x, base, sm.parts_joint_mask(NTU.parts, (0, 3), 25))
    with torch.no_grad():
        ref = torch.softmax(model(inp), 1)[:, 1]
    assert torch.allclose(vals[k].float(), ref, atol=1e-6)
    assert not model.training
    r = exact_from_values(vals, [len(p) for p in NTU.parts])
    assert abs(float(r.parts.sum()) - (r.v_all - r.v_empty)) < 1e-6
    # per-clip efficiency too, and the combos are exact_combination_values of the mean game
    per_clip = shapley_values(value_fn_of(vals))
    assert torch.allclose(per_clip.sum(0), vals[-1] - vals[0], atol=1e-9)
    assert torch.allclose(r.combos, exact_combination_values(value_fn_of(vals.mean(-1))), atol=1e-12)
    assert r.combos.shape == (20,) and (r.combos_clipped >= r.combos - 1e-12).all()


def test_online_estimator_expectation_equals_exact_combination_values(monkeypatch):
    """End to end: ShapMix.estimate on a tiny CTR-GCN with a fixed baseline, every (T, S) of
    its sampler enumerated and weighted by its probability, averages to combos_table."""
    C, c = 4, 2
    model = _tiny_ctrgcn(C)
    torch.manual_seed(3)
    x, base = torch.randn(4, 3, 8, 25, 2), torch.randn(3, 8, 25, 2)
    y = torch.full((4,), c)
    g = torch.Generator().manual_seed(0)
    ctx = Context(num_classes=C, class_counts=torch.tensor([40, 20, 20, 5]), total_epochs=10,
                  iters_per_epoch=1, device=torch.device("cpu"), seed=0, layout=NTU,
                  batch_size=4, generator=g)
    m = ShapMix(ShapMix.HParams())
    m.setup(ctx)
    m.on_epoch_start(6, model, ctx)  # post-warm-up estimator: v(S u T) - v(S)
    exact = exact_shapley(model, x, c, base, NTU.parts)
    for k, T in enumerate(COMBOS):
        comp = [p for p in range(5) if p not in T]
        expect = 0.0
        for s in range(len(comp) + 1):
            for S in itertools.combinations(comp, s):
                monkeypatch.setattr(sm, "draw_coalitions", lambda gen, naive, T=T, S=S: (T, S))
                out = m.estimate(model, x, y, base, ctx)
                assert out["k"] == k
                expect += coalition_probability(T, S) * float(out["w"].mean())
        assert abs(expect - float(exact.combos_table[k])) < 1e-5, (T, expect, exact.combos_table[k])
    assert not model.training
