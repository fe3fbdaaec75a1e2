"""Shap-Mix (methods/shapmix.py) as the official code (JHang2020/Shap-Mix), and its invariants."""
import itertools

import pytest
import torch
from torch import nn

import methods  # noqa: F401
from benchmark.data.skeleton import get_layout
from benchmark.method import Batch, Context
from methods.shapmix import (COMBOS, ShapMix, coalition_inputs, coalition_probability,
                             combo_index, complement, draw_coalitions, ema_decay, ema_update,
                             exact_combination_values, guided_combos, parts_joint_mask,
                             partner_is_minority, update_value)

NTU = get_layout("ntu25")


def _ctx(C=4, seed=0):
    g = torch.Generator()
    g.manual_seed(seed)
    return Context(num_classes=C, class_counts=torch.tensor([40, 20, 20, 5])[:C],
                   total_epochs=10, iters_per_epoch=1, device=torch.device("cpu"), seed=0,
                   layout=NTU, batch_size=8, generator=g)


class Tiny(nn.Module):
    def __init__(self, C=4):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3 * 25, C)

    def forward(self, x):
        return self.fc(x.mean(dim=(2, 4)).flatten(1))


def test_combinations_and_complement():
    assert len(COMBOS) == 20 and COMBOS[0] == (0, 1) and COMBOS[9] == (3, 4)
    assert COMBOS[10] == (0, 1, 2) and COMBOS[19] == (2, 3, 4)
    assert all(complement(k) == 19 - k for k in range(20))
    sizes = [sum(len(NTU.parts[p]) for p in c) for c in COMBOS]
    assert sizes == [11, 11, 9, 9, 12, 10, 10, 10, 10, 8, 17, 15, 15, 15, 15, 13, 16, 16, 14, 14]


def test_table_init_decay_and_update_value():
    ctx = _ctx()
    m = ShapMix()
    m.setup(ctx)
    assert m.table.shape == (4, 20) and torch.all(m.table == 1e-6)
    assert [ema_decay(e) for e in range(8)] == [0, 0, 0, 0, 0, 0, 0.9, 0.9]
    w = update_value(torch.tensor([0.3, -0.2, 0.05]), 11)
    assert torch.allclose(w, torch.tensor([3 / 11, 0.0, 0.5 / 11]))
    # per-sample sequential EMA = the official loop; per-class = one step with the mean
    table = torch.rand(4, 20)
    y = torch.tensor([1, 2, 1, 1, 0])
    w = torch.tensor([0.5, 0.1, 0.2, 0.9, 0.4])
    ref = table.clone()
    for i in range(5):
        ref[y[i], 7] = ref[y[i], 7] * 0.9 + w[i] * 0.1
    assert torch.allclose(ema_update(table, y, 7, w, 0.9), ref)
    pc = ema_update(table, y, 7, w, 0.9, "per_class")
    assert pc[1, 7] == pytest.approx(0.9 * table[1, 7].item() + 0.1 * (0.5 + 0.2 + 0.9) / 3)
    over = ema_update(table, y, 7, w, 0.0)  # decay 0: last same-class sample wins
    assert over[1, 7] == pytest.approx(0.9) and over[3, 7] == table[3, 7]


def _reference_w(model, x, y, base, T, S):
    """10 ReLU(v(S u T) - v(S)) / joints(T), every clip's coalitions as their own batch."""
    model.eval()
    mS = parts_joint_mask(NTU.parts, S, 25)
    mST = mS | parts_joint_mask(NTU.parts, T, 25)
    rows = torch.arange(len(y))
    pw = torch.softmax(model(coalition_inputs(x, base, mST)), 1)[rows, y]
    po = torch.softmax(model(coalition_inputs(x, base, mS)), 1)[rows, y]
    return 10 * (pw - po).clamp_min(0) / sum(len(NTU.parts[p]) for p in T)


def test_estimate_hand_built_case():
    ctx = _ctx()
    m = ShapMix(ShapMix.HParams(naive_estimate_epoch=0))
    m.setup(ctx)
    m.epoch = 7
    model = Tiny()
    x, y = torch.randn(3, 3, 16, 25, 2), torch.tensor([0, 1, 0])
    base = torch.randn(3, 16, 25, 2)
    g = ctx.generator.get_state()
    out = m.estimate(model, x, y, base, ctx)
    T, S = out["T"], out["S"]
    w = _reference_w(model, x, y, base, T, S)
    assert torch.allclose(out["w"], w, atol=1e-6)
    k = combo_index(T)
    t0 = 1e-6
    e0 = 0.9 * (0.9 * t0 + 0.1 * w[0]) + 0.1 * w[2]
    assert m.table[0, k].item() == pytest.approx(e0.item(), rel=1e-5)
    assert m.table[1, k].item() == pytest.approx((0.9 * t0 + 0.1 * w[1]).item(), rel=1e-5)
    ctx.generator.set_state(g)
    assert draw_coalitions(ctx.generator, False) == (T, S)


@pytest.mark.parametrize("naive", [False, True])
def test_estimate_empty_s_shortcut(naive):
    """S empty (the warm-up estimator, or |S| = 0): v(S) comes from one baseline row; the values
    must equal per-clip forwards of the full coalition batch."""
    model = Tiny()
    x, y = torch.randn(4, 3, 16, 25, 2), torch.tensor([0, 1, 2, 3])
    base = torch.randn(3, 16, 25, 2)
    empty_seen = 0
    for seed in range(12):
        ctx = _ctx(seed=seed)
        m = ShapMix(ShapMix.HParams(naive_estimate_epoch=0 if not naive else 5))
        m.setup(ctx)
        m.epoch = 7 if not naive else 1
        out = m.estimate(model, x, y, base, ctx)
        T, S = out["T"], out["S"] or ()
        empty_seen += not S
        assert torch.allclose(out["w"], _reference_w(model, x, y, base, T, S), atol=1e-6)
    assert empty_seen >= (12 if naive else 1)


def test_coalitions_disjoint_and_sizes():
    g = torch.Generator().manual_seed(1)
    seen = set()
    for _ in range(3000):
        T, S = draw_coalitions(g, False)
        assert len(T) in (2, 3) and not set(T) & set(S) and len(S) <= 5 - len(T)
        seen.add((len(T), len(S)))
    assert seen == {(2, 0), (2, 1), (2, 2), (2, 3), (3, 0), (3, 1), (3, 2)}


def test_minority_rules():
    counts = torch.tensor([40, 20, 20, 5])
    y, yp = torch.tensor([0, 1, 2, 3, 1]), torch.tensor([1, 2, 1, 0, 1])
    assert partner_is_minority(y, yp, counts, "counts").tolist() == [True, False, False, False, False]
    assert partner_is_minority(y, yp, counts, "index").tolist() == [True, True, False, False, False]
    table = torch.full((4, 20), -50.0)
    table[0, 3] = table[1, 5] = table[2, 8] = table[3, 12] = 0.0  # each row: one sure choice
    g = torch.Generator().manual_seed(0)
    minor = partner_is_minority(y, yp, counts, "counts")
    c = guided_combos(table, y, yp, minor, 0.2, g)
    assert c.tolist() == [5, 19 - 5, 19 - 8, 19 - 12, 19 - 5]
    minor = partner_is_minority(y, yp, counts, "index")
    assert guided_combos(table, y, yp, minor, 0.2, g).tolist() == [5, 8, 19 - 8, 19 - 12, 19 - 5]


def test_sampling_distribution_is_softmax_over_temperature():
    torch.manual_seed(0)
    table = torch.rand(2, 20) * 0.5
    y = torch.zeros(40000, dtype=torch.long)
    g = torch.Generator().manual_seed(3)
    c = guided_combos(table, y, y, torch.zeros_like(y, dtype=torch.bool), 0.2, g)
    freq = torch.bincount(19 - c, minlength=20).float() / len(c)
    assert (freq - torch.softmax(table[0] / 0.2, 0)).abs().max() < 0.01


def test_guided_step_lambda_and_paste():
    ctx = _ctx()
    m = ShapMix(ShapMix.HParams(mixup_prob=0.0))
    m.setup(ctx)
    model = Tiny()
    x, y = torch.randn(6, 3, 64, 25, 2), torch.tensor([0, 1, 2, 3, 0, 1])
    m.on_epoch_start(0, model, ctx)
    m.transform_batch(Batch(x=x, y=y, index=torch.arange(6)), model, ctx)  # baseline, warm-up
    m.on_epoch_start(6, model, ctx)
    for _ in range(10):
        out = m.transform_batch(Batch(x=x, y=y, index=torch.arange(6)), model, ctx)
        assert out.meta["branch"] == "cutmix"
        xm, lam = out.inputs[1], out.targets[1].w_b
        ch = (xm != x).any(dim=(1, 4))  # (N, T, V)
        rt = ch.any(2).sum(1).max().item()  # window length (some joints may equal by chance)
        for i in range(6):
            J = ch[i].any(0).sum().item()
            assert lam[i].item() == pytest.approx(rt * J / 1600, abs=1e-6)
            assert round(lam[i].item() * 1600 / rt) in [len(set().union(*(NTU.parts[p] for p in c)))
                                                 for c in COMBOS]
        assert torch.allclose(out.targets[1].as_probs(4).sum(1), torch.ones(6))
    assert set(m.state_dict()) >= {"table", "base_sum", "base_n"}


def test_exact_vs_online_expectation():
    """E[online estimate] under its coalition sampling = exact (Shapley) combination value."""
    torch.manual_seed(0)
    model = Tiny().eval()
    x, y = torch.randn(2, 3, 8, 25, 1), torch.tensor([1, 3])
    base = torch.randn(3, 8, 25, 1)

    def value_fn(parts):
        mask = parts_joint_mask(NTU.parts, tuple(parts), 25)
        with torch.no_grad():
            return torch.softmax(model(coalition_inputs(x, base, mask)), 1)[torch.arange(2), y]

    exact = exact_combination_values(value_fn)
    # the sampler's exact distribution reproduces it (and the clipped version for ReLU)
    for clip in (False, True):
        ex = exact_combination_values(value_fn, clip=clip)
        for k, T in enumerate(COMBOS):
            comp = [p for p in range(5) if p not in T]
            e = sum(coalition_probability(T, S) * (lambda d: d.clamp_min(0) if clip else d)(
                value_fn(frozenset(S) | frozenset(T)) - value_fn(frozenset(S)))
                for s in range(len(comp) + 1) for S in itertools.combinations(comp, s))
            assert torch.allclose(e, ex[k], atol=1e-7)
    # Monte Carlo with the estimator's own sampler converges to it
    g = torch.Generator().manual_seed(0)
    acc, cnt = torch.zeros(20, 2), torch.zeros(20)
    for _ in range(6000):
        T, S = draw_coalitions(g, False)
        k = combo_index(T)
        acc[k] += value_fn(frozenset(S) | frozenset(T)) - value_fn(frozenset(S))
        cnt[k] += 1
    mc = acc / cnt[:, None]
    assert (mc - exact).abs().max() < 0.15 * exact.abs().max() + 1e-4


@pytest.mark.parametrize("hp", [dict(guidance="random"), dict(rw_rs="rs"), dict(estimate_every=2),
                                dict(ema_mode="per_class", minority="index")])
def test_options_run(hp):
    ctx = _ctx()
    m = ShapMix(ShapMix.HParams(**hp))
    m.setup(ctx)
    assert (m.stages(ctx)[0].aux_sampler == "class_balanced") == (hp.get("rw_rs") == "rs")
    model = Tiny()
    x, y = torch.randn(6, 3, 64, 25, 2), torch.tensor([0, 1, 2, 3, 0, 1])
    aux = Batch(x=torch.randn(6, 3, 64, 25, 2), y=torch.tensor([3, 2, 1, 0, 3, 2]), index=torch.arange(6))
    n_est = 0
    for epoch in (0, 6):
        m.on_epoch_start(epoch, model, ctx)
        for _ in range(4):
            out = m.transform_batch(Batch(x=x, y=y, index=torch.arange(6), aux=aux), model, ctx)
            n_est += "estimate" in out.meta
            if hp.get("rw_rs") == "rs":
                assert torch.equal(out.targets[1].y_b, aux.y)
    assert n_est == {"random": 0}.get(hp.get("guidance"), 6 if hp.get("estimate_every") == 2 else 8)


def test_harness_gives_the_official_raw_mean_baseline(tmp_path):
    """Through the harness the baseline is the mean raw first-`window` frames of the LT set."""
    import numpy as np

    from benchmark.data.lt import raw_mean_clip
    from benchmark.data.synth import load_synth
    from benchmark.runner import resolve_config
    from benchmark.spec import RunSpec, load_run_data, normalise
    from benchmark.train import Trainer

    store = load_synth(tmp_path / "cache", num_classes=6, train_per_class=40, test_per_class=6, T=70)
    spec = normalise(RunSpec(dataset=str(store), method="shap_mix", imbalance=10, n_max=40,
                             profile="smoke", train={"epochs": 1, "max_steps_per_epoch": 1,
                                                     "max_test_clips": 12, "window": 32}))
    cfg = resolve_config(spec)
    t = Trainer(spec, cfg, load_run_data(spec, cfg), torch.device("cpu"))
    t.fit()
    t.close()
    want = raw_mean_clip(t.data.store, t.data.train_idx, 32)
    assert np.allclose((t.method.base_sum / t.method.base_n).numpy(), want)
