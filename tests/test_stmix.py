"""ST-Mix (methods/stmix.py) as the official ``skelemix.py::ske_swap_randscale``; invariants."""
import pytest
import torch
import torch.nn.functional as F

import methods  # noqa: F401
from benchmark.data.skeleton import get_layout
from benchmark.method import Batch, Context
from methods.stmix import STMix, nearest_source_index, segment_bounds, st_mix_apply

NTU = get_layout("ntu25")


def _ctx(layout=NTU, C=4, seed=0):
    g = torch.Generator()
    g.manual_seed(seed)
    return Context(num_classes=C, class_counts=torch.arange(C, 0, -1) * 10, total_epochs=2,
                   iters_per_epoch=1, device=torch.device("cpu"), seed=0, layout=layout,
                   batch_size=8, generator=g)


def _method(ctx, **hp):
    m = STMix(STMix.HParams(**hp))
    m.setup(ctx)
    return m


def _official(x, k, joints, Ct, a, Ct2, b):
    """Line-by-line transcription of the CutMix branch of ske_swap_randscale (reference)."""
    N, C, T, V, M = x.shape
    randidx = (torch.arange(N) + k) % N
    rt, rt2 = 4 * Ct, 4 * Ct2
    xst = x.clone()
    tmp = xst[:, :, 4 * b:4 * b + rt2].permute(0, 4, 3, 1, 2).contiguous().view(N * M, V * C, -1)
    tmp = F.interpolate(tmp, size=rt).view(N, M, V, C, rt).permute(0, 3, 4, 2, 1).contiguous()
    xst[:, :, 4 * a:4 * a + rt, joints, :] = tmp[randidx][:, :, :, joints, :]
    mask = torch.zeros(T // 4, V)
    mask[a:a + Ct, joints] = 1
    return xst, mask.mean()


def test_nearest_exception_44_52():
    idx = nearest_source_index(44, 52)
    assert idx[11] == 12 and idx[22] == 25  # exact floor(i*52/44) would give 13 and 26
    exact = torch.tensor([i * 52 // 44 for i in range(44)])
    assert (idx != exact).nonzero().flatten().tolist() == [11, 22]
    for Ct in range(7, 12):
        for Ct2 in range(Ct, 17):
            rt, rt2 = 4 * Ct, 4 * Ct2
            ex = torch.tensor([i * rt2 // rt for i in range(rt)])
            diff = (nearest_source_index(rt, rt2) != ex).sum().item()
            assert diff == (2 if (rt, rt2) == (44, 52) else 0)


def test_reference_forced_draws_match_official_transcription():
    torch.manual_seed(0)
    x = torch.randn(5, 3, 64, 25, 2)
    joints = sorted(NTU.parts[1] + NTU.parts[3] + NTU.parts[4])
    for (k, Ct, a, Ct2, b) in [(2, 11, 3, 13, 1), (1, 7, 0, 16, 0), (3, 9, 7, 9, 5)]:
        got, partner, lam = st_mix_apply(x, k, joints, Ct, a, Ct2, b, "cutmix")
        ref, ref_lam = _official(x, k, joints, Ct, a, Ct2, b)
        assert torch.equal(got, ref)
        assert torch.allclose(lam, torch.full((5,), float(ref_lam)))
        assert lam[0].item() == pytest.approx(Ct * len(joints) / 400)
        assert partner.tolist() == [(i + k) % 5 for i in range(5)]
    # the (44, 52) pair: pasted frames 11 and 22 of the window are source frames 12 and 25
    got, _, _ = st_mix_apply(x, 1, joints, 11, 2, 13, 0, "cutmix")
    assert torch.equal(got[0, :, 8 + 11][:, joints], x[1, :, 12][:, joints])
    assert torch.equal(got[0, :, 8 + 22][:, joints], x[1, :, 25][:, joints])
    # mixup branch
    got, partner, lam = st_mix_apply(x, 2, joints, 9, 0, None, None, "mixup", 0.3)
    assert torch.allclose(got, 0.7 * x + 0.3 * x[(torch.arange(5) + 2) % 5])
    assert torch.allclose(lam, torch.full((5,), 0.3))


def test_random_calls_invariants_and_mixup_fraction():
    ctx = _ctx()
    m = _method(ctx)
    N, T, V = 8, 64, 25
    x = torch.randn(N, 3, T, V, 2)
    y = torch.arange(N) % 4
    n_mix, n = 0, 2000
    ks, lams, cts = set(), [], set()
    for _ in range(n):
        d = m.draw(N, T, ctx.generator)
        ks.add(d["k"])
        assert 1 <= d["k"] <= N - 2
        assert 7 <= d["Ct"] <= 11 and 0 <= d["a"] <= 16 - d["Ct"]
        cts.add(d["Ct"])
        if d["branch"] == "mixup":
            n_mix += 1
            assert 0 <= d["lam"] < 1
        else:
            assert d["Ct"] <= d["Ct2"] <= 16 and 0 <= d["b"] <= 16 - d["Ct2"]
            J = m.joints_of(d["parts"], V)
            assert 2 <= len(d["parts"]) <= 3 and 8 <= len(J) <= 17
            lams.append(d["Ct"] * len(J) / 400)
    assert ks == set(range(1, N - 1)) and cts == set(range(7, 12))
    assert abs(n_mix / n - 0.25) < 0.03
    assert min(lams) >= 0.14 - 1e-9 and max(lams) <= 0.4675 + 1e-9
    # full transform_batch: pasted region = partner clip resampled, rest untouched, labels sum 1
    seen = 0
    for _ in range(60):
        out = m.transform_batch(Batch(x=x, y=y, index=torch.arange(N)), None, ctx)
        assert torch.equal(out.inputs[0], x)
        t = out.targets[1]
        p = out.meta["partner"]
        assert torch.equal(t.y_b, y[p])
        probs = t.as_probs(4)
        assert torch.allclose(probs.sum(1), torch.ones(N))
        if out.meta["branch"] != "cutmix":
            continue
        seen += 1
        xm = out.inputs[1]
        changed = (xm != x).any(dim=(0, 1, 4))  # (T, V)
        # every changed element lies in one window x joint block; lam = block share of 16 x V
        tt, vv = changed.any(1).nonzero().flatten(), changed.any(0).nonzero().flatten()
        assert len(tt) <= 44 and len(vv) <= 17
        lam = float(t.w_b[0])
        assert 0.14 - 1e-6 <= lam <= 0.4675 + 1e-6
    assert seen > 20


def test_other_layouts_and_ablation_options():
    for name, V in (("ucla20", 20), ("coco17", 17)):
        ctx = _ctx(get_layout(name))
        m = _method(ctx)
        x = torch.randn(6, 3, 64, V, 1)
        out = m.transform_batch(Batch(x=x, y=torch.zeros(6, dtype=torch.long), index=torch.arange(6)),
                                None, ctx)
        assert out.inputs[1].shape == x.shape
    assert segment_bounds(64) == (16, 7, 11)
    assert segment_bounds(32) == (8, 4, 6)
    ctx = _ctx()
    x = torch.randn(6, 3, 64, 25, 2)
    b = Batch(x=x, y=torch.arange(6) % 4, index=torch.arange(6))
    sp = _method(ctx, temporal=False, mixup_prob=0.0)
    out = sp.transform_batch(b, None, ctx)
    ch = (out.inputs[1] != x).any(dim=(0, 1, 4))
    lam = float(out.targets[1].w_b[0])
    J = ch.any(0).sum().item()
    assert lam == pytest.approx(J / 25) and ch.any(1).sum().item() == 64
    tp = _method(ctx, spatial=False, mixup_prob=0.0)
    out = tp.transform_batch(b, None, ctx)
    ch = (out.inputs[1] != x).any(dim=(0, 1, 4))
    assert ch.any(0).sum().item() == 25
    assert float(out.targets[1].w_b[0]) == pytest.approx(ch.any(1).sum().item() / 64)
    mx = _method(ctx, mixup_prob=1.0)
    assert mx.transform_batch(b, None, ctx).meta["branch"] == "mixup"
    pm = _method(ctx, pairing="permutation")
    assert sorted(pm.transform_batch(b, None, ctx).meta["partner"].tolist()) == list(range(6))


def test_deterministic_per_seed_and_loss_weights():
    x = torch.randn(6, 3, 64, 25, 2)
    b = Batch(x=x, y=torch.arange(6) % 4, index=torch.arange(6))
    outs = [_method(c := _ctx(seed=3)).transform_batch(b, None, c) for _ in range(2)]
    assert torch.equal(outs[0].inputs[1], outs[1].inputs[1])
    ctx = _ctx()
    m = _method(ctx)
    out = m.transform_batch(b, None, ctx)
    logits = torch.randn(12, 4)
    from benchmark.method import Out
    loss, logs = m.loss(Out(logits, chunks=[6, 6]), out, ctx)
    l1 = F.cross_entropy(logits[:6], b.y)
    yt = out.targets[1].as_probs(4)
    l2 = -(yt * F.log_softmax(logits[6:], 1)).sum(1).mean()
    assert loss.item() == pytest.approx((l1 + l2).item(), rel=1e-5)
    la = _method(ctx, logit_adjust=1.0)
    loss, _ = la.loss(Out(logits, chunks=[6, 6]), out, ctx)
    off = torch.log(ctx.class_counts.float() / ctx.class_counts.sum())
    l1 = F.cross_entropy(logits[:6] + off, b.y)
    l2 = -(yt * F.log_softmax(logits[6:] + off, 1)).sum(1).mean()
    assert loss.item() == pytest.approx((l1 + l2).item(), rel=1e-5)
