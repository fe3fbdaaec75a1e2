"""FSA (Chu et al., ECCV 2020) and Grad-CAM: reference values from the unofficial FSA code, the
invariants of its head/tail split, statistics, group sampler and fused features, and a smoke
run of its three stages on a tiny CTR-GCN with a state_dict round trip."""
import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.backbones.ctrgcn import CTRGCN
from benchmark.data.samplers import build_sampler
from benchmark.data.skeleton import LAYOUTS
from benchmark.errors import BenchmarkError
from benchmark.method import METHODS, Batch, Context, build_method
from methods.fsa import (ConfusionTable, confusing_classes, confusion_scores, fuse, fusion_mask,
                         grad_cam, group_labels, split_head_tail)

from conftest import COUNTS  # toy batch F4


def ctx(counts=COUNTS, total_epochs=10, batch_size=8):
    return Context(num_classes=len(counts), class_counts=counts, total_epochs=total_epochs,
                   iters_per_epoch=1, device=torch.device("cpu"), seed=0,
                   layout=LAYOUTS["ntu25"], batch_size=batch_size,
                   generator=torch.Generator().manual_seed(0))


def approx(x, rel=1e-5):
    return pytest.approx(x, rel=rel)


# ------------------------------------------------------------------ reference values
def test_grad_cam_closed_form():
    """GAP + linear head, A (K=2, T=2, V=2), W = [[.5, -1], [1, 2]], class 0."""
    a = torch.tensor([[[1.0, 2.0], [3.0, 0.0]], [[0.0, 1.0], [1.0, 1.0]]]).reshape(1, 1, 2, 2, 2)
    head = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[0.5, -1.0], [1.0, 2.0]]))

    def score(m):  # mean over (T, V), then persons, then the linear head
        return head(m.flatten(3).mean(3).mean(1))
    cls = torch.tensor([0])
    mean = grad_cam(a, score, cls, normalize=False)
    assert mean.flatten().tolist() == approx([0.125, 0.0, 0.125, 0.0])
    total = grad_cam(a, score, cls, reduce="sum", normalize=False)
    assert total.flatten().tolist() == approx([0.5, 0.0, 0.5, 0.0])  # T*V = 4 times larger
    assert grad_cam(a, score, cls).flatten().tolist() == [1.0, 0.0, 1.0, 0.0]
    # alpha = [0.125, -0.25] read back through probes: +1 on channel 0 at (0, 0) and -1 on
    # channel 1 at (0, 1) give cam = [relu(alpha_0), relu(-alpha_1)] there
    probe = torch.zeros(1, 1, 2, 2, 2)
    probe[0, 0, 0, 0, 0], probe[0, 0, 1, 0, 1] = 1.0, -1.0
    assert grad_cam(probe, score, cls, normalize=False).flatten().tolist() == approx(
        [0.125, 0.25, 0.0, 0.0])
    assert grad_cam(probe, score, cls, reduce="sum", normalize=False).flatten().tolist() == approx(
        [0.5, 1.0, 0.0, 0.0])
    assert head.weight.grad is None  # activations only, no parameter gradient


def test_fusion_reference():
    """f_s = 1, f_g = 2, M = [[1, 0], [0, 1]] -> [[1, 2], [2, 1]]."""
    m = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert fuse(torch.ones(2, 2), torch.full((2, 2), 2.0), m).tolist() == [[1, 2], [2, 1]]


def test_confusing_class_pick():
    """Tail class 2 gets confusing class 1 (S[1, 2] = .6 > S[0, 2] = .3)."""
    s = torch.tensor([[0, .5, .3], [.2, 0, .6], [.1, .4, 0]])
    conf = confusing_classes(s, 1)
    assert conf[2] == [1] and conf == [[1], [0], [1]]
    assert confusing_classes(s, 2)[2] == [1, 0]
    # the diagonal never counts, even when the table still holds it
    assert confusing_classes(s + 10 * torch.eye(3), 1) == [[1], [0], [1]]


# ------------------------------------------------------------------ invariants
def test_head_tail_split_from_counts():
    assert split_head_tail(COUNTS, 20) == ([0], [1, 2])
    assert split_head_tail(COUNTS, 5) == ([0, 1], [2])
    m = build_method("fsa")
    m.setup(ctx())
    assert (m.head, m.tail) == ([0], [1, 2])
    with pytest.raises(BenchmarkError):
        build_method("fsa", {"tail_below": 1000}).setup(ctx())  # no head class left


def test_confusion_scores_are_mean_softmax_rows():
    p = torch.softmax(torch.tensor([[2.0, 0.5, -1.0], [1.0, 1.5, 0.2], [0.5, -0.2, 0.3]]), 1)
    y = torch.tensor([0, 1, 0])
    sums = torch.zeros(3, 3, dtype=torch.float64).index_add_(0, y, p.double())
    counts = torch.bincount(y, minlength=3).double()
    s = confusion_scores(sums, counts)
    assert torch.allclose(s[0, 1:], ((p[0] + p[2]) / 2)[1:].double())
    assert torch.diagonal(s).abs().sum() == 0 and s[2].abs().sum() == 0  # unseen class: 0


def test_group_labels_keep_each_groups_tail():
    """The unofficial label bug is fixed: each group's tail-side features keep its own class."""
    y = torch.tensor([2, 0, 1, 0, 0, 0, 1, 0, 2, 0, 0, 0])  # Na = 2: groups of 6
    labels, cam_cls = group_labels(y, 2)
    assert labels.tolist() == [2, 2, 2, 0, 0, 0, 1, 1, 1, 0, 0, 0]
    assert torch.equal(cam_cls, y)


def test_fusion_mask_binary():
    m = fusion_mask((50, 4, 25), torch.Generator().manual_seed(0))
    assert set(m.unique().tolist()) <= {0.0, 1.0} and m.shape == (50, 4, 25)
    assert len({float(k.mean()) for k in m}) > 1  # a fresh gamma per mask


def test_group_sampler_layout_and_shards():
    labels = np.repeat([0, 1, 2, 3], [30, 20, 5, 2])
    table = ConfusionTable()
    kw = {"tail_classes": (2, 3), "n_aug": 2, "table": table}
    s = build_sampler("fsa_groups", labels, seed=0, **kw)
    with pytest.raises(BenchmarkError):
        s.indices(0)  # no statistics yet
    table.confusing = [[1, 2], [0, 2], [0, 1], [1, 0]]
    order = s.indices(0).reshape(-1, 6)
    assert len(order) == 7 and len(s) == 42  # one group per tail clip
    assert sorted(order[:, 0].tolist()) == list(range(50, 57))
    for g in order:
        t = labels[g[0]]
        assert labels[g[1:3]].tolist() == table.confusing[t]
        assert set(labels[g[3:]].tolist()) <= {0, 1} and len(set(g[3:])) == 3
    assert np.array_equal(s.indices(0), build_sampler("fsa_groups", labels, seed=0, **kw).indices(0))
    shards = [build_sampler("fsa_groups", labels, seed=0, rank=r, world_size=2, **kw)
              for r in range(2)]
    parts = [sh.indices(0).reshape(-1, 6) for sh in shards]
    assert all(len(p) == 4 for p in parts) and all(len(sh) == 24 for sh in shards)
    assert {tuple(g) for p in parts for g in p} == {tuple(g) for g in order}  # whole groups


def test_batch_must_be_groups():
    with pytest.raises(BenchmarkError):
        build_method("fsa").stages(ctx(batch_size=6))  # group of 8 does not divide 6


# ------------------------------------------------------------------ smoke
def tiny():
    return CTRGCN(num_class=3, num_point=25, num_person=2, graph="ntu", base_channel=8)


def test_smoke_three_stages_and_resume():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    hp = {"n_aug": 2, "tail_below": 20}  # groups of 6 = one batch of N=6
    c = ctx(total_epochs=10, batch_size=6)
    m = build_method("fsa", hp)
    m.setup(c)
    model = m.build_model(c, tiny)
    stages = m.stages(c)
    assert [s.name for s in stages] == ["feature", "statistics", "finetune"]
    assert [s.train for s in stages] == [True, False, True] and stages[2].epochs == 2
    labels = np.repeat([0, 1, 2], [12, 4, 2])
    for stage in stages:
        for n, p in model.named_parameters():
            p.requires_grad_(True if stage.trainable is None else stage.trainable(n))
        sampler = build_sampler(stage.sampler, labels, seed=0, **stage.sampler_kwargs)
        m.on_stage_start(stage, model, c)
        for epoch in ((0, 9) if stage.name == "feature" else (0,)):
            model.train()
            m.on_epoch_start(epoch, model, c)
            pos = sampler.indices(epoch)[:6]
            x = torch.randn(6, 3, 8, 25, 2, generator=gen)
            y = torch.from_numpy(labels[pos])
            batch = m.transform_batch(Batch(x=x, y=y, index=torch.from_numpy(pos)), model, c)
            if not stage.train:
                continue
            out = m.forward(model, batch, c)
            loss, logs = m.loss(out, batch, c)
            assert torch.isfinite(loss) and logs
            model.zero_grad()
            loss.backward()
            grads = {n for n, p in model.named_parameters() if p.grad is not None}
            if stage.name == "finetune":
                assert grads == {"backbone.fc.weight", "backbone.fc.bias"}
                n_g = 1
                assert out.logits.shape == (n_g * 6, 3)
                lab = batch.meta["fsa_labels"]
                assert lab[:3].tolist() == [int(y[0])] * 3 and int(y[0]) in m.tail  # tail only
                assert not set(lab[3:].tolist()) & set(m.tail)
                mask = out.heads["mask"]
                assert mask.shape == (2, 2, 25) and set(mask.unique().tolist()) <= {0.0, 1.0}
                cam = out.heads["cam"]
                assert float(cam.min()) >= 0 and float(cam.max()) <= 1
            else:
                assert grads
            m.on_epoch_end(epoch, model, c)
        if stage.name == "statistics":
            assert float(m.acc["pass"]["counts"].sum()) == 6
            assert float(m.acc["last_epoch"]["counts"].sum()) == 6  # feature epoch 9 only
        model.eval()
        with torch.no_grad():
            pred = m.predict(model, x, c)
        assert pred.shape == (6, 3) and torch.isfinite(pred).all()
    assert m.table.confusing is not None and len(m.table.confusing) == 3
    assert all(t not in row for t, row in enumerate(m.table.confusing))
    state = m.state_dict()
    again = build_method("fsa", hp)
    again.setup(c)
    live = again.stages(c)[2].sampler_kwargs["table"]
    again.load_state_dict(state)
    assert live.confusing == m.table.confusing  # the sampler's table is restored in place
    assert torch.equal(again.state_dict()["scores"], state["scores"])
    model2 = again.build_model(c, tiny)
    model2.load_state_dict(model.state_dict())


def test_statistics_fallback_and_strict_pass():
    c = ctx()
    m = build_method("fsa")
    m.setup(c)
    m.acc["last_epoch"]["sums"] += torch.tensor([[0, .5, .3], [.2, 0, .6], [.1, .4, 0]],
                                                 dtype=torch.float64)
    m.acc["last_epoch"]["counts"] += 1
    m.finalize_statistics(c)  # auto: the pass saw nothing -> last feature epoch
    assert m.table.confusing[2][0] == 1
    strict = build_method("fsa", {"stats_source": "pass"})
    strict.setup(c)
    with pytest.raises(BenchmarkError):
        strict.finalize_statistics(c)


def test_metadata():
    cls = METHODS.get("fsa")
    assert (cls.display_name, cls.order, cls.family) == ("FSA", 30, "two-stage")
    assert cls.paper == "Chu et al., ECCV 2020"
    assert dataclasses.is_dataclass(cls.HParams) and cls.HParams.__dataclass_params__.frozen
