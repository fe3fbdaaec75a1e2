"""Loss- and sampling-based baselines (issue 4): reference values computed with the official
code on the toy batch F4 (conftest.py) for Mixup, Remix-DRW, ROS, Focal, CB, LDAM-DRW, IB and
BS+MaxNorm, their invariants, and a smoke step of each method on a tiny CTR-GCN."""
import dataclasses

import numpy as np
import pytest
import torch

from benchmark.backbones.ctrgcn import CTRGCN
from benchmark.data.samplers import build_sampler
from benchmark.errors import BenchmarkError
from benchmark.losses import (cb_weights, influence_weights, ldam_margins, power_weights,
                              torch_weighted_mean)
from benchmark.method import METHODS, Batch, Out, Target, build_method
from methods._losses import sample_beta, switch_epoch, target_loss
from methods.ldam import NormedLinear
from methods.maxnorm import maxnorm_project_, maxnorm_threshold
from methods.mixup import remix_label_weight

# toy batch F4 (conftest.py)
from conftest import COUNTS, Y, Y_B, Z, f4_ctx  # toy batch F4
COS = torch.tensor([[0.8, 0.1, -0.3], [0.2, 0.4, 0.1], [0.0, 0.1, 0.3], [0.3, 0.2, 0.25]])
H = torch.tensor([3.0, 1.5, 0.5, 2.0])
NAMES = ["mixup", "remix_drw", "ros", "focal", "cb", "ldam_drw", "ib", "bs_maxnorm"]


ctx = f4_ctx


def f4(name, epoch=None, z=Z, feat=None, lam=None, total_epochs=100, **overrides):
    """(loss, method, batch) of ``name`` on F4; ``lam`` mixes with partner labels Y_B."""
    m, c = build_method(name, overrides), ctx(total_epochs)
    m.setup(c)
    if epoch is not None:
        m.on_epoch_start(epoch, None, c)
    batch = Batch(x=torch.zeros(4, 3, 1, 25, 1), y=Y, index=torch.arange(4))
    if lam is not None:
        batch = m.mix(batch, batch.x, Y_B, lam, c)
    loss, _ = m.loss(Out(z, feat, chunks=[4]), batch, c)
    return float(loss), m, batch


def tiny_ctrgcn():
    return CTRGCN(num_class=3, num_point=25, num_person=2, graph="ntu", base_channel=8)


def approx(x):
    return pytest.approx(x, rel=1e-5)


# ------------------------------------------------------------------ weights, schedules
def test_class_weight_primitives():
    assert cb_weights(COUNTS, 0.9999).tolist() == approx([0.0271587, 0.270369, 2.702472])
    assert cb_weights(COUNTS, 0.999).tolist() == approx([0.028363, 0.271256, 2.700381])
    assert cb_weights(COUNTS, 0.0).tolist() == [1.0, 1.0, 1.0]  # LDAM-DRW's "no weight" phase
    assert power_weights(COUNTS, 1.2).tolist() == approx([0.01119246, 0.177389, 2.811419])  # GLMC
    for w in (cb_weights(COUNTS, 0.9), power_weights(COUNTS, 1.0)):
        assert float(w.sum()) == approx(3.0)
    with pytest.raises(ValueError, match="positive counts"):
        cb_weights(torch.tensor([5, 0]), 0.9)


def test_switch_epoch_scales_with_the_schedule():
    assert switch_epoch(0.8, 100) == 80 and switch_epoch(0.5, 100) == 50
    assert switch_epoch(0.8, 200) == 160 and switch_epoch(0.8, 24) == 19  # LDAM-DRW, BRL
    assert switch_epoch(0.8, 16) == 13 and switch_epoch(0.0, 16) == 0


# ------------------------------------------------------------------ Mixup
def test_mixup_f4():
    loss, _, batch = f4("mixup", lam=0.3)
    assert loss == approx(1.458799)
    assert batch.targets[0].w_b.tolist() == approx([0.7] * 4)


def test_mixup_transform_draws_from_the_run_generator():
    m, c = build_method("mixup"), ctx()
    m.setup(c)
    x = torch.randn(4, 3, 2, 25, 2)
    out = m.transform_batch(Batch(x=x, y=Y, index=torch.arange(4)), None, c)
    g = torch.Generator().manual_seed(0)  # replay: lambda first, then the partner permutation
    lam, perm = sample_beta(1.0, g), torch.randperm(4, generator=g)
    assert out.meta["lam"] == lam and 0 < lam < 1
    assert len(out.inputs) == 1 and out.x is x  # trains on the mixed clips only
    assert torch.allclose(out.inputs[0], lam * x + (1 - lam) * x[perm])
    t = out.targets[0]
    assert torch.equal(t.y, Y) and torch.equal(t.y_b, Y[perm])
    assert torch.allclose(t.w_b, torch.full((4,), 1 - lam))
    assert torch.allclose(t.as_probs(3).sum(1), torch.ones(4))  # label weights sum to 1
    assert sample_beta(0.0, g) == 1.0  # alpha <= 0: no mixing, as mixup_data


# ------------------------------------------------------------------ Remix-DRW
@pytest.mark.parametrize("lam,lam_y,ce,drw,bot,bot_drw", [
    (0.3, [0, 0.3, 0.3, 0], 1.736299, 2.493089, 1.650049, 2.579037),
    (0.8, [0.8, 1, 1, 0.8], 0.751299, 0.881294, 0.693799, 0.797731),
])
def test_remix_drw_f4(lam, lam_y, ce, drw, bot, bot_drw):
    loss, m, batch = f4("remix_drw", 0, lam=lam)
    assert batch.meta["lam_y"].tolist() == approx(lam_y)
    assert loss == approx(ce)
    assert f4("remix_drw", 80, lam=lam)[0] == approx(drw)  # cb(0.9999), not renormalised
    assert f4("remix_drw", 0, lam=lam, loss_form="bagoftricks")[0] == approx(bot)
    assert f4("remix_drw", 80, lam=lam, loss_form="bagoftricks")[0] == approx(bot_drw)
    p = batch.targets[0].as_probs(3)
    assert torch.allclose(p.sum(1), torch.ones(4))  # label weights sum to 1


@pytest.mark.parametrize("lam,n_a,n_b,expected", [
    (0.3, 100, 10, 0.0), (0.3, 10, 100, 0.3), (0.8, 10, 100, 1.0), (0.8, 100, 10, 0.8),
    (0.3, 10, 20, 0.3), (0.6, 1, 3, 1.0),  # n_b / n_a = kappa counts (``<=``)
])
def test_remix_rule_table(lam, n_a, n_b, expected):
    got = remix_label_weight(lam, torch.tensor([n_a]), torch.tensor([n_b]), 3.0, 0.5)
    assert float(got) == approx(expected)


def test_drw_weights_switch_at_the_drw_epoch():
    _, m, _ = f4("remix_drw", 79)
    assert m.class_weight is None
    m.on_epoch_start(80, None, ctx())
    assert torch.allclose(m.class_weight, cb_weights(COUNTS, 0.9999))
    _, m, _ = f4("ldam_drw", 12, total_epochs=16)
    assert m.class_weight is None
    m.on_epoch_start(13, None, ctx(16))
    assert torch.allclose(m.class_weight, cb_weights(COUNTS, 0.9999))


def test_target_loss_reductions():
    ce = torch.nn.functional.cross_entropy
    w = cb_weights(COUNTS, 0.9999)
    hard = target_loss(lambda z, y: ce(z, y, reduction="none"), Z, Target(Y), w, "torch_weighted")
    assert float(hard) == approx(float(ce(Z, Y, weight=w)))
    assert float(torch_weighted_mean(ce(Z, Y, reduction="none"), w[Y])) == approx(float(hard))
    with pytest.raises(BenchmarkError, match="hard or pair"):
        target_loss(ce, Z, Target(Y, probs=torch.full((4, 3), 1 / 3)))


# ------------------------------------------------------------------ ROS
def test_ros_stage_sampler():
    m = build_method("ros")
    (stage,) = m.stages(ctx())
    labels = np.array([0, 1, 0, 2, 0, 1, 0, 0])  # counts [5, 2, 1]
    s = build_sampler(stage.sampler, labels, seed=3, **stage.sampler_kwargs)
    order = s.indices(0)
    assert np.bincount(labels[order]).tolist() == [5, 5, 5]
    assert set(range(len(labels))) <= set(order.tolist())  # every original at least once
    extras = np.bincount(order, minlength=len(labels)) - 1
    assert all(labels[i] != 0 for i in np.nonzero(extras)[0])  # class 0 gets no extras
    assert sorted(s.indices(1).tolist()) == sorted(order.tolist())  # pool fixed for the run
    (cb,) = build_method("ros", {"class_balance": True}).stages(ctx())
    assert len(build_sampler(cb.sampler, labels, seed=0, **cb.sampler_kwargs)) == 4 * len(labels)


# ------------------------------------------------------------------ Focal
@pytest.mark.parametrize("overrides,epoch,total,expected", [
    ({}, None, 100, 0.264772),                                   # gamma 1 (LDAM-DRW)
    ({"gamma": 2.0}, None, 100, 0.130031),
    ({"cb_beta": 0.9999}, None, 100, 0.297036),                  # weight inside p (quirk)
    ({"gamma": 2.0, "start_frac": 0.8}, 18, 24, 0.566299),       # BRL: CE before epoch 19
    ({"gamma": 2.0, "start_frac": 0.8}, 19, 24, 0.130031),
])
def test_focal_f4(overrides, epoch, total, expected):
    assert f4("focal", epoch, total_epochs=total, **overrides)[0] == approx(expected)


def test_focal_weight_outside_p():
    from benchmark.losses import focal_loss

    w = cb_weights(COUNTS, 0.9999)
    ce = torch.nn.functional.cross_entropy(Z, Y, reduction="none")
    want = (w[Y] * (1 - torch.exp(-ce)) * ce).mean()
    assert f4("focal", cb_beta=0.9999, weight_in_p=False)[0] == approx(float(want))
    assert torch.allclose(focal_loss(Z, Y, 0.0), ce)


# ------------------------------------------------------------------ CB
@pytest.mark.parametrize("overrides,expected", [
    ({}, 0.560224),                                               # torch-weighted mean
    ({"reduction": "mean"}, 0.423972),                            # TF-style mean
    ({"beta": 0.999}, 0.560233),
    ({"beta": 0.999, "reduction": "mean"}, 0.424148),
    ({"loss_type": "sigmoid"}, 1.437036),
    ({"loss_type": "focal", "gamma": 0.0}, 1.437036),
    ({"loss_type": "focal", "gamma": 0.5}, 1.024896),
    ({"loss_type": "focal", "gamma": 1.0}, 0.744986),
    ({"loss_type": "focal", "gamma": 2.0}, 0.408740),
    ({"loss_type": "softmax_bce"}, 0.263489),                     # weight-balancing CB_loss
])
def test_cb_f4(overrides, expected):
    assert f4("cb", **overrides)[0] == approx(expected)


def test_cb_brl_variant_and_sigmoid_bias():
    assert f4("cb", 18, total_epochs=24, beta=0.999, start_frac=0.8)[0] == approx(0.566299)
    assert f4("cb", 19, total_epochs=24, beta=0.999, start_frac=0.8)[0] == approx(0.560233)
    m, c = build_method("cb", {"loss_type": "sigmoid"}), ctx(counts=torch.tensor([9, 5, 3, 1]))
    m.setup(c)
    model = m.build_model(c, lambda: CTRGCN(num_class=4, base_channel=8))
    assert torch.allclose(model.fc.bias, torch.full((4,), -float(np.log(3))))
    with pytest.raises(BenchmarkError, match="loss_type must be one of"):
        build_method("cb", {"loss_type": "sigmod"}).setup(c)


# ------------------------------------------------------------------ LDAM-DRW
def test_ldam_margins():
    m = ldam_margins(COUNTS, 0.5)
    assert m.tolist() == approx([0.158114, 0.281171, 0.5])
    ratio = m * COUNTS.double() ** 0.25  # proportional to n^-1/4
    assert torch.allclose(ratio, ratio[0].expand(3)) and float(m.max()) == 0.5
    assert float(ldam_margins(COUNTS, 0.3).max()) == approx(0.3)


def test_ldam_drw_f4():
    assert f4("ldam_drw", 0, z=COS)[0] == approx(3.772197)
    assert f4("ldam_drw", 80, z=COS)[0] == approx(8.338337)  # cb(0.9999), torch-weighted


def test_ldam_head_swap():
    m, c = build_method("ldam_drw"), ctx()
    m.setup(c)
    model = m.build_model(c, tiny_ctrgcn)
    assert isinstance(model.fc, NormedLinear) and model.fc.weight.shape == (32, 3)
    assert torch.allclose(model.fc.weight.norm(dim=0), torch.ones(3))
    logits = model(torch.randn(4, 3, 8, 25, 2))
    assert logits.shape == (4, 3) and float(logits.detach().abs().max()) <= 1 + 1e-6  # cosines
    plain = build_method("ldam_drw", {"normed_head": False})
    plain.setup(c)
    assert isinstance(plain.build_model(c, tiny_ctrgcn).fc, torch.nn.Linear)


# ------------------------------------------------------------------ IB
def test_ib_f4():
    feat = H[:, None]  # L1 norms h
    assert influence_weights(Z, Y, H, 1000.0).tolist() == approx(
        [776.7486, 712.0179, 2346.8527, 439.8748])
    assert f4("ib", 50, feat=feat)[0] == approx(911.899907)  # lr x0.01 is not in the loss
    assert f4("ib", 50, feat=feat, weighting="none")[0] == approx(576.246857)
    assert f4("ib", 49, feat=feat)[0] == approx(0.566299)  # plain CE before the start


def test_ib_cuts_the_lr_through_the_hook():
    _, m, _ = f4("ib", 50, feat=H[:, None])
    (stage,) = m.stages(ctx())
    assert [m.lr_factor(stage, e) for e in (0, 49, 50, 99)] == [1.0, 1.0, 0.01, 0.01]
    _, m, _ = f4("ib", 50, feat=H[:, None], lr_factor=0.1, start_frac=0.3)
    assert [m.lr_factor(stage, e) for e in (29, 30)] == [1.0, 0.1]


def test_ib_weight_is_not_detached_by_default():
    for detach, has_grad in ((False, True), (True, False)):
        feat = H[:, None].clone().requires_grad_(True)
        _, m, batch = f4("ib", 50, feat=feat.detach(), detach_ib=detach)
        loss, _ = m.loss(Out(Z.clone().requires_grad_(True), feat, chunks=[4]), batch, ctx())
        loss.backward()
        assert (feat.grad is not None and bool(feat.grad.abs().sum() > 0)) == has_grad


# ------------------------------------------------------------------ BS + MaxNorm
def test_maxnorm_projection_reference():
    w = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])
    thr = maxnorm_threshold(w, 0.1)
    assert thr == approx(1.4)
    maxnorm_project_(w, thr)
    assert torch.allclose(w, torch.tensor([[0.84, 1.12], [1.0, 0.0], [0.0, 1.4]]))


def test_bs_maxnorm_stages_and_projection():
    m, c = build_method("bs_maxnorm"), ctx(batch_size=32)
    m.setup(c)
    model = m.build_model(c, tiny_ctrgcn)
    feature, classifier = m.stages(c)
    assert feature.epochs is None and feature.trainable is None
    assert classifier.epochs == 10 and classifier.lr == approx(0.005)
    assert classifier.milestones == () and classifier.warmup_epochs == 0
    assert classifier.schedule == "cosine_shifted"  # demo2's cosine, stepped at epoch start
    assert feature.weight_decay == approx(5e-3) and classifier.weight_decay == approx(0.1)  # SGD's
    names = [n for n, _ in model.named_parameters() if classifier.trainable(n)]
    assert names == ["fc.weight", "fc.bias"]
    # stage 1: CE (F4); its decay is the optimizer's (demo1's 5e-3), not a loss term
    m.on_stage_start(feature, model, c)
    batch = Batch(x=torch.zeros(4, 3, 1, 25, 1), y=Y, index=torch.arange(4))
    loss, logs = m.loss(Out(Z, chunks=[4]), batch, c)
    assert float(loss) == approx(0.566299) and "wd" not in logs
    # stage 2: Balanced Softmax (F4 1.421166); its decay is the optimizer's, not a loss term
    with torch.no_grad():
        model.fc.weight.mul_(torch.tensor([[4.0], [1.0], [0.5]]))
        model.fc.bias.fill_(3.0)
    m.on_stage_start(classifier, model, c)
    norms = model.fc.weight.detach().norm(dim=1)
    assert m.thr == approx(float(norms.min() + 0.1 * (norms.max() - norms.min())))
    loss, logs = m.loss(Out(Z, chunks=[4]), batch, c)
    assert float(loss.detach()) == approx(1.421166) and "wd" not in logs
    # stage1_wd=None keeps the train config's decay in stage 1; "constant" the old stage 2
    m1 = build_method("bs_maxnorm", {"stage1_wd": None, "stage2_schedule": "constant"})
    m1.setup(c)
    f1, c1 = m1.stages(c)
    assert f1.weight_decay is None and c1.schedule is None and c1.milestones == ()
    m.after_step(model, batch, None, c)  # projection waits for the epoch end
    assert torch.allclose(model.fc.weight.norm(dim=1), norms)
    m.on_epoch_end(0, model, c)
    assert bool((model.fc.weight.norm(dim=1) <= m.thr + 1e-6).all())
    assert torch.allclose(model.fc.bias, torch.full((3,), 3.0))  # bias never projected
    # the stage-2 cursor and threshold survive a checkpoint
    m2 = build_method("bs_maxnorm")
    m2.setup(c)
    m2.load_state_dict(m.state_dict())
    assert m2.state_dict() == {"stage": "classifier", "thr": m.thr}


# ------------------------------------------------------------------ metadata + smoke
def test_metadata_and_order():
    import methods  # noqa: F401

    table = ["ce", "mixup", "remix_drw", "ros", "focal", "cb", "ldam_drw", "balanced_softmax",
             "ib", "bs_maxnorm"]  # Shap-Mix Table 1 order (FSA, GLMC, BRL come in part 2)
    orders = [METHODS.get(n).order for n in table]
    assert orders == sorted(orders) and len(set(orders)) == len(orders)
    for name in NAMES:
        cls = METHODS.get(name)
        assert cls.family in ("re-weighting", "re-sampling", "logit adjustment", "two-stage",
                              "augmentation", "margin")
        assert dataclasses.is_dataclass(cls.HParams) and cls.HParams.__dataclass_params__.frozen


SMOKE = [(n, {}) for n in NAMES] + [
    ("cb", {"loss_type": "focal"}), ("cb", {"loss_type": "softmax_bce"}),
    ("focal", {"cb_beta": 0.999}), ("remix_drw", {"loss_form": "bagoftricks"}),
    ("ib", {"gamma": 1.0}),
]


@pytest.mark.parametrize("name,overrides", SMOKE)
def test_smoke_step(name, overrides):
    torch.manual_seed(0)
    m, c = build_method(name, overrides), ctx(total_epochs=10)
    m.setup(c)
    model = m.build_model(c, tiny_ctrgcn)
    stages = m.stages(c)
    assert stages
    for stage in stages:  # every stage's step, in the last epoch (DRW / IB phases active)
        m.on_stage_start(stage, model, c)
        m.on_epoch_start(9, model, c)
        x = torch.randn(4, 3, 8, 25, 2)
        batch = m.transform_batch(Batch(x=x, y=Y, index=torch.arange(4)), model, c)
        out = m.forward(model, batch, c)
        assert out.feat is not None and out.feat.shape == (4, 32)
        loss, logs = m.loss(out, batch, c)
        assert torch.isfinite(loss) and logs
        model.zero_grad()
        loss.backward()
        assert any(p.grad is not None for p in model.parameters())
        m.after_step(model, batch, out, c)
        m.on_epoch_end(9, model, c)
        assert m.predict(model, x, c).shape == (4, 3)
    state = m.state_dict()
    again = build_method(name, overrides)
    again.setup(c)
    again.load_state_dict(state)
    assert again.state_dict() == state
