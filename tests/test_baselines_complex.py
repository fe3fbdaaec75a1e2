"""Multi-part baselines (issue 5): BRL, GLMC, RIDE, BCL, PaCo and FSA. Reference values
computed with their official code (FSA: the unofficial one; mostly on the toy batch F4 of
conftest.py), their invariants, and a smoke step of each method on a tiny CTR-GCN, with
multi-view batches built as the harness does."""
import dataclasses

import pytest
import torch

from benchmark.backbones.ctrgcn import CTRGCN
from benchmark.method import METHODS, Batch, Out, Target, build_method

# toy batch F4 (conftest.py)
from conftest import COUNTS, Y, Y_B, Z, f4_ctx  # toy batch F4


ctx = f4_ctx


def tiny_ctrgcn():
    return CTRGCN(num_class=3, num_point=25, num_person=2, graph="ntu", base_channel=8)


def approx(x, rel=1e-5):
    return pytest.approx(x, rel=rel)


def setup(name, total_epochs=100, counts=COUNTS, **overrides):
    m, c = build_method(name, overrides), ctx(total_epochs, counts)
    m.setup(c)
    return m, c


# ------------------------------------------------------------------ BRL
def test_brl_daa_weights_and_schedule():
    from methods.brl import daa_betas, daa_weights

    n = torch.tensor([600, 60, 6])
    assert daa_betas(n).tolist() == approx([0.9999, 0.9909, 0.99])
    assert daa_weights(n).tolist() == approx([0.0265318, 0.333054, 2.640414])
    assert daa_weights(n, flipped=True).tolist() == approx([1.006341, 0.997283, 0.996377])
    m, c = setup("brl", counts=n)
    m.on_epoch_start(79, None, c)
    assert m.class_weight is None
    for e in (80, 81, 99):
        m.on_epoch_start(e, None, c)
        assert m.class_weight.tolist() == approx([0.0265318, 0.333054, 2.640414])
    q, c = setup("brl", counts=n, alternate_weights=True)
    for e, flipped in ((80, False), (81, True), (82, False)):  # official 19 AA, 20 flipped, ...
        q.on_epoch_start(e, None, c)
        assert q.class_weight.tolist() == approx(daa_weights(n, flipped).tolist())


def test_brl_label_rule_and_joint_split():
    from methods.brl import body_split, brl_label_weight, partial_mix

    a = brl_label_weight(torch.tensor([600, 6, 60]), torch.tensor([6, 600, 30]), 3.0, 0.64)
    assert a.tolist() == approx([0.0, 1.0, 0.64])
    upper, lower = body_split("ntu25", 25)
    assert len(upper) == 16 and len(lower) == 9
    assert set(upper) | set(lower) == set(range(25)) and not set(upper) & set(lower)
    x = torch.arange(25.0).reshape(1, 1, 1, 25, 1)
    quirk = partial_mix(x, x + 100, upper, lower, permute=True)
    assert quirk.flatten().tolist() == [*range(1, 12), *range(20, 25), 100, *range(112, 120)]
    fixed = partial_mix(x, x + 100, upper, lower).flatten().tolist()
    assert fixed == [100 + j if j in lower else j for j in range(25)]


def test_brl_mix_targets_and_loss():
    n = torch.tensor([600, 60, 6])
    m, c = setup("brl", counts=n)
    m.on_epoch_start(90, None, c)
    x = torch.randn(4, 3, 2, 25, 1)
    batch = m.mix(Batch(x=x, y=Y, index=torch.arange(4)), torch.tensor([0, 1]),
                  torch.tensor([2, 3]))
    t = batch.targets[0]
    assert t.y_b.tolist() == [2, 0, 2, 0]
    a = 1 - t.w_b  # (600 vs 6) -> 0, (60 vs 600) -> 1
    assert a.tolist() == approx([0.0, 1.0, 1.0, 1.0])
    assert ((1 - t.w_b) + t.w_b).tolist() == [1.0] * 4  # label weights sum to 1
    assert torch.equal(batch.inputs[0][2:], x[2:])  # unmixed clips untouched
    # scalar quirk with one weight: a * CE_w(y_a) + (1 - a) * CE_w(y_b) exactly
    q, _ = setup("brl", counts=n, scalar_label_weight=True)
    q.on_epoch_start(90, None, c)
    qb = q.mix(Batch(x=x, y=Y, index=torch.arange(4)), torch.tensor([1, 0]), torch.tensor([3, 2]))
    a_last = 1 - float(qb.targets[0].w_b[0])
    assert a_last == 0.0 and torch.allclose(qb.targets[0].w_b, torch.ones(4))
    w = q.class_weight
    ce = torch.nn.functional.cross_entropy
    loss, _ = q.loss(Out(Z, chunks=[4]), qb, c)
    ref = a_last * ce(Z, Y, weight=w) + (1 - a_last) * ce(Z, qb.targets[0].y_b, weight=w)
    assert float(loss) == approx(float(ref))
    # unmixed batch = torch-weighted CE
    plain = Batch(x=x, y=Y, index=torch.arange(4))
    plain.targets = [Target(Y, Y, torch.zeros(4))]
    assert float(m.loss(Out(Z, chunks=[4]), plain, c)[0]) == approx(float(ce(Z, Y, weight=w)))


# ------------------------------------------------------------------ GLMC
def test_glmc_reference_values():
    from benchmark.losses import power_weights
    from methods.glmc import glmc_alpha, glmc_soft_ce, simsiam

    assert power_weights(COUNTS, 1.2).tolist() == approx([0.01119246, 0.177389, 2.811419])
    assert [glmc_alpha(e, 100) for e in (0, 50, 80, 99)] == approx([1, 0.75, 0.36, 0.0199])
    t = Target(Y, Y_B, torch.full((4,), 0.7))  # lambda = 0.3 on y
    assert float(glmc_soft_ce(Z, t)) == approx(1.458799)
    assert float(glmc_soft_ce(Z, t, power_weights(COUNTS, 1.2))) == approx(1.815871)
    p, z = torch.tensor([[1.0, 2], [0, 1]]), torch.tensor([[2.0, 1], [1, 1]])
    assert float(simsiam(p, z)) == approx(-0.753553)
    # the whole loss with both heads' logits = Z and matching p/z on both branches
    m, c = setup("glmc")
    m.on_epoch_start(50, None, c)
    batch = Batch(x=torch.zeros(4, 3, 1, 25, 1), y=Y, index=torch.arange(4))
    batch.targets = [t, t]
    pz = torch.cat([p] * 4), torch.cat([z] * 4)
    out = Out(torch.cat([Z, Z]), heads={"cls_cb": torch.cat([Z, Z]), "p": pz[0], "z": pz[1]},
              chunks=[4, 4])
    loss, logs = m.loss(out, batch, c)
    assert float(loss) == approx(0.75 * 2 * 1.458799 + 0.25 * 2 * 1.815871 + 4 * 2 * -0.753553)


def test_glmc_box_heads_and_sampler():
    from benchmark.data.samplers import build_sampler
    from methods.glmc import GLMCModel, joint_set, local_mix, time_window

    g = torch.Generator().manual_seed(0)
    widths = set()
    for _ in range(200):
        t0, t1 = time_window(32, 0.3, g)
        assert 0 <= t0 <= t1 <= 32
        widths.add(t1 - t0)
    assert max(widths) == 26  # c = ceil(32 sqrt(.7)) = 27, side 2 * 13 before clipping
    j = joint_set(25, 0.3, g)
    assert len(j) == 21 and len(set(j.tolist())) == 21
    x, inv = torch.zeros(2, 3, 32, 25, 2), torch.ones(2, 3, 32, 25, 2)
    mixed = local_mix(x, inv, (3, 10), j)
    assert float(mixed.sum()) == 2 * 3 * 7 * 21 * 2 and float(x.sum()) == 0
    # extra heads on the full-size CTR-GCN: ~65k parameters (Shap-Mix Table 13: 1.46M -> 1.51M)
    bb = CTRGCN(num_class=60)
    extra = sum(p.numel() for p in GLMCModel(bb, 60).parameters()) - sum(
        p.numel() for p in bb.parameters())
    assert extra == 256 * 60 + 60 + 256 * 128 + 128 + 128 * 128 + 128
    labels = [0] * 90 + [1] * 9 + [2]
    s = build_sampler("power_weighted", labels, seed=0, power=1.0)
    order = s.global_order(0)
    assert len(order) == 100 and set(order.tolist()) <= set(range(100))
    hist = torch.bincount(torch.tensor(labels)[torch.as_tensor(order)], minlength=3)
    assert hist.min() > 15  # class-balanced draws at power 1
    m, c = setup("glmc")
    (stage,) = m.stages(c)
    assert stage.views == 2 and stage.aux_sampler == "power_weighted"


def test_glmc_transform_and_predict():
    m, c = setup("glmc")
    model = m.build_model(c, tiny_ctrgcn)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 8, 25, 2, generator=gen)
    batch = harness_batch(m.stages(c)[0], x, Y, gen)
    out = m.transform_batch(batch, model, c)
    lam = out.meta["lam"]
    assert torch.allclose(out.inputs[0], lam * batch.x + (1 - lam) * batch.aux.x)
    t = out.targets[0]
    assert torch.equal(t.y_b, batch.aux.y) and torch.allclose(t.w_b, torch.full((4,), 1 - lam))
    assert torch.allclose(t.as_probs(3).sum(1), torch.ones(4))  # mixed label weights sum to 1
    model.eval()
    with torch.no_grad():
        feat = model.backbone.pool(model.backbone.features(x))
        assert torch.allclose(m.predict(model, x, c), model.fc_cb(feat), atol=1e-6)


# ------------------------------------------------------------------ RIDE
RIDE_E = 30 * torch.tensor([[[0.8, 0.1, -0.3], [0.2, 0.4, 0.1]],
                            [[0.6, 0.3, -0.1], [0.1, 0.2, 0.5]],
                            [[0.7, -0.2, 0.2], [0.3, 0.3, 0.0]]])


def test_ride_reference_values():
    from methods.ride import diversity_temperature

    assert diversity_temperature(COUNTS, 0.05).tolist() == approx([1.0, 0.887920, 0.876712])
    m, c = setup("ride", lambda_div=-0.2)
    batch = Batch(x=torch.zeros(2, 3, 1, 25, 1), y=Y[:2], index=torch.arange(2))
    out = Out(RIDE_E.mean(0), heads={"expert_logits": RIDE_E}, chunks=[2])
    for epoch, expected in ((79, 13.283138), (80, 24.950504)):  # official _hook(160) / (161)
        m.on_epoch_start(epoch, None, c)
        assert float(m.loss(out, batch, c)[0]) == approx(expected)


def test_ride_model_averages_experts():
    m, c = setup("ride")
    model = m.build_model(c, tiny_ctrgcn)
    assert len(model.experts) == 3 and model.feat_dim == 24  # 32 * 3/4
    assert all(isinstance(getattr(model.trunk, f"l{i}"), torch.nn.Identity) for i in range(5, 11))
    assert model.trunk.l4.gcn1.bn.num_features == 8  # l1..l4 shared
    model.eval()
    x = torch.randn(2, 3, 8, 25, 2)
    with torch.no_grad():
        experts, _ = model.expert_outputs(x)
        assert experts.shape == (3, 2, 3) and float(experts.abs().max()) <= 30 + 1e-4
        assert torch.allclose(m.predict(model, x, c), experts.mean(0), atol=1e-6)
        out = m.forward(model, Batch(x=x, y=Y[:2], index=torch.arange(2)), c)
    assert torch.allclose(out.logits, experts.mean(0), atol=1e-6)


# ------------------------------------------------------------------ BCL
V1 = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8]]), dim=1)
V2 = torch.nn.functional.normalize(torch.tensor([[0.8, 0.6], [0.0, 1.0]]), dim=1)
SUP = torch.tensor([[2.0, 0.5, -1.0], [1.0, 1.5, 0.2]])


def test_bcl_reference_values():
    from benchmark.losses import log_prior
    from methods.bcl import bal_scl, la_ce

    protos = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    views = torch.cat([V1, V2])
    per = bal_scl(views, Y[:2], protos, 0.07, reduce=False)
    assert per.tolist() == approx([0.793346, 1.462296, 1.462296, 0.793348])
    assert float(bal_scl(views, Y[:2], protos, 0.07)) == approx(1.127821)
    assert float(la_ce(SUP, Y[:2], log_prior(COUNTS))) == approx(0.990800)
    m, c = setup("bcl")
    batch = Batch(x=torch.zeros(2, 3, 1, 25, 1), y=Y[:2], index=torch.arange(2))
    out = Out(SUP, heads={"views": views, "protos": protos}, chunks=[2])
    assert float(m.loss(out, batch, c)[0]) == approx(0.990800 + 0.35 * 1.127821)


def test_bcl_model_heads():
    m, c = setup("bcl")
    model = m.build_model(c, tiny_ctrgcn)
    (stage,) = m.stages(c)
    assert stage.views == 3
    gen = torch.Generator().manual_seed(0)
    batch = harness_batch(stage, torch.randn(4, 3, 8, 25, 2, generator=gen), Y, gen)
    out = m.forward(model, batch, c)
    assert out.heads["views"].shape == (8, 128) and out.heads["protos"].shape == (3, 128)
    assert torch.allclose(out.heads["protos"].norm(dim=1), torch.ones(3))
    model.eval()
    with torch.no_grad():
        logits = m.predict(model, batch.x, c)
    assert float(logits.abs().max()) <= 30 + 1e-4  # s = 30 cosine logits at test time


# ------------------------------------------------------------------ PaCo
def test_paco_reference_values():
    from methods.paco import paco_loss

    queue, qlabels = torch.tensor([[1.0, 0.0], [-1.0, 0.0]]), torch.tensor([0, 2])
    prior = COUNTS / COUNTS.sum()
    per = paco_loss(V1, V2, queue, qlabels, Y[:2], SUP, prior, 0.2, 0.05, 1.0, 1.0, reduce=False)
    assert per.tolist() == approx([3.309638, 6.063234])
    m, c = setup("paco", temperature=0.2, alpha=0.05)
    batch = Batch(x=torch.zeros(2, 3, 1, 25, 1), y=Y[:2], index=torch.arange(2))
    out = Out(SUP, heads={"q": V1, "k": V2, "queue": queue, "queue_labels": qlabels}, chunks=[2])
    assert float(m.loss(out, batch, c)[0]) == approx(4.686436)


def test_paco_queue_and_momentum():
    m, c = setup("paco", queue_size=6, momentum=0.5)
    model = m.build_model(c, tiny_ctrgcn)
    assert model.queue.shape == (6, 128) and model.queue_labels.shape == (6,)
    assert torch.allclose(model.queue.norm(dim=1), torch.ones(6))
    (stage,) = m.stages(c)
    assert stage.views == 2 and not stage.trainable("key.backbone.fc.weight")
    assert stage.trainable("backbone.fc.weight") and stage.trainable("proj.0.weight")
    gen = torch.Generator().manual_seed(0)
    batch = harness_batch(stage, torch.randn(4, 3, 8, 25, 2, generator=gen), Y, gen)
    out = m.forward(model, batch, c)
    k0 = out.heads["k"]
    loss, _ = m.loss(out, batch, c)
    loss.backward()
    assert all(p.grad is None for p in model.key.parameters())
    with torch.no_grad():
        model.backbone.fc.weight.add_(1.0)
    before = model.key["backbone"].fc.weight.clone()
    m.after_step(model, batch, out, c)
    assert torch.allclose(model.key["backbone"].fc.weight,
                          0.5 * before + 0.5 * model.backbone.fc.weight)
    assert torch.equal(model.queue[:4], k0) and model.queue_labels[:4].tolist() == Y.tolist()
    m.after_step(model, batch, out, c)  # wraps around: 8 keys into a queue of 6
    assert int(model.queue_ptr) == 2 and torch.equal(model.queue[:2], k0[2:])
    assert len(model.queue) == 6
    model.eval()
    with torch.no_grad():
        assert torch.allclose(m.predict(model, batch.x, c), model.backbone(batch.x))


# ------------------------------------------------------------------ smoke (every method here)
def harness_batch(stage, x, y, gen):
    """A Batch the way benchmark.train builds it: ``views`` independent draws (here: noise
    added to x) stacked, view 0 as ``x``, and an aux batch when the stage has an aux sampler."""
    def one(xx, yy):
        if stage.views == 1:
            return Batch(x=xx, y=yy, index=torch.arange(len(yy)))
        v = torch.stack([xx + 0.01 * torch.randn(xx.shape, generator=gen)
                         for _ in range(stage.views)])
        return Batch(x=v[0], y=yy, index=torch.arange(len(yy)), views=list(v[1:]))
    batch = one(x, y)
    if stage.aux_sampler:
        batch.aux = one(x.flip(0), y.flip(0))
    return batch


SMOKE = [("brl", {"mix_ratio": 0.5}), ("brl", {"mix_ratio": 0.5, "permute_joints": True,
                                                 "scalar_label_weight": True,
                                                 "alternate_weights": True,
                                                 "temporal_flip": 0.5}),
         ("glmc", {}), ("ride", {}), ("ride", {"shared_layers": 7, "reduce_dimension": False}),
         ("bcl", {}), ("paco", {"queue_size": 16})]


@pytest.mark.parametrize("name,overrides", SMOKE)
def test_smoke_step(name, overrides):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    m, c = build_method(name, overrides), ctx(total_epochs=10, batch_size=6)
    m.setup(c)
    model = m.build_model(c, tiny_ctrgcn)
    stages = m.stages(c)
    assert stages
    y = torch.tensor([0, 1, 2, 0, 0, 1])
    for stage in stages:
        m.on_stage_start(stage, model, c)
        if not stage.train:
            continue
        for epoch in (0, 9):  # both sides of every epoch switch
            model.train()
            m.on_epoch_start(epoch, model, c)
            x = torch.randn(6, 3, 8, 25, 2, generator=gen)
            batch = m.transform_batch(harness_batch(stage, x, y, gen), model, c)
            for t in batch.targets:
                if t.w_b is not None:
                    assert bool(((t.w_b >= 0) & (t.w_b <= 1)).all())
            out = m.forward(model, batch, c)
            loss, logs = m.loss(out, batch, c)
            assert torch.isfinite(loss) and logs
            model.zero_grad()
            loss.backward()
            assert any(p.grad is not None for p in model.parameters())
            m.after_step(model, batch, out, c)
            m.on_epoch_end(epoch, model, c)
        model.eval()
        with torch.no_grad():
            pred = m.predict(model, x, c)
        assert pred.shape == (6, 3) and torch.isfinite(pred).all()
    state = m.state_dict()
    again = build_method(name, overrides)
    again.setup(c)
    again.load_state_dict(state)
    assert again.state_dict().keys() == state.keys()
    model2 = m.build_model(c, tiny_ctrgcn)
    model2.load_state_dict(model.state_dict())


def test_metadata_and_order():
    import methods  # noqa: F401

    assert [METHODS.get(n).order for n in ("glmc", "brl", "paco", "bcl", "ride")] == [
        40, 50, 130, 140, 150]  # Shap-Mix Table 1 positions
    for name in sorted({n for n, _ in SMOKE}):
        cls = METHODS.get(name)
        assert cls.display_name and cls.paper and cls.order % 10 == 0
        assert dataclasses.is_dataclass(cls.HParams) and cls.HParams.__dataclass_params__.frozen
