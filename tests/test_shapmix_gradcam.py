"""Shap-Mix with Grad-CAM guidance (methods/shapmix.py, ``guidance="gradcam"``, Table 8):
closed-form saliency references, the table update invariants, no side effects on the model,
the DDP table averaging, and a checkpoint/resume run through the harness."""
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import methods  # noqa: F401
from benchmark.backbones.ctrgcn import CTRGCN
from benchmark.data.skeleton import get_layout
from benchmark.errors import BenchmarkError
from benchmark.method import Batch, Context
from methods.shapmix import (COMBOS, ShapMix, combo_joint_masks, ema_update,
                             gradcam_combination_values, gradcam_joint_saliency, parts_joint_mask)

NTU = get_layout("ntu25")
JOINTS = combo_joint_masks(NTU.parts, 25).sum(1).float()  # (20,) joints per combination


def _ctx(C=4, comm=None):
    return Context(num_classes=C, class_counts=torch.tensor([40, 20, 20, 5])[:C], total_epochs=10,
                   iters_per_epoch=1, device=torch.device("cpu"), seed=0, layout=NTU, batch_size=8,
                   generator=torch.Generator().manual_seed(0), comm=comm)


class MapModel(nn.Module):
    """The model contract on a hand-built map: features = ``A`` (N, M, K, T, V) read from the
    input (K = C coordinates), pool = mean over (T, V) then persons, head = linear."""

    def __init__(self, weight, bias=0.0):
        super().__init__()
        weight = torch.as_tensor(weight, dtype=torch.float32)
        self.fc = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        self.fc.weight.data.copy_(weight)
        self.bias = bias  # added to every map entry: a zero-padded person still has a map

    def features(self, x):
        return x.permute(0, 4, 1, 2, 3) + self.bias

    def pool(self, a):
        return a.flatten(3).mean(3).mean(1)

    def head(self, f):
        return self.fc(f)

    def forward(self, x):
        return self.head(self.pool(self.features(x)))


class PartModel(MapModel):
    """Looks at the joints of one body part only (the map is zero elsewhere), through an
    eval-mode BN; positive map and positive weights, so every class's cam lives on that part."""

    def __init__(self, part, C=4):
        torch.manual_seed(0)
        super().__init__(torch.rand(C, 3) + 0.1)
        self.bn = nn.BatchNorm2d(3)
        self.register_buffer("mask", parts_joint_mask(NTU.parts, (part,), 25).float())

    def features(self, x):
        n, c, t, v, m = x.shape
        h = self.bn(x.permute(0, 4, 1, 2, 3).reshape(n * m, c, t, v)).view(n, m, c, t, v)
        return F.softplus(h) * self.mask


def test_saliency_closed_form_spec_reference():
    """Grad-CAM closed form: A = [[[1,2],[3,0]],[[0,1],[1,1]]], W = [[.5,-1],[1,2]], class 0:
    alpha = [0.125, -0.25], cam = [[0.125, 0], [0.125, 0]] -> joint saliency [0.25, 0]."""
    A = torch.tensor([[[1.0, 2.0], [3.0, 0.0]], [[0.0, 1.0], [1.0, 1.0]]])  # (K, T, V)
    x = A.view(1, 2, 2, 2, 1)
    model = MapModel([[0.5, -1.0], [1.0, 2.0]])
    s = gradcam_joint_saliency(model, x, torch.tensor([0]))
    assert torch.allclose(s, torch.tensor([[0.25, 0.0]]))
    # class 1: alpha = [0.25, 0.5] -> cam = [[0.25, 1.0], [1.25, 0.5]]
    assert torch.allclose(gradcam_joint_saliency(model, x, torch.tensor([1])), torch.tensor([[1.5, 1.5]]))
    # a zero-padded person is left out although its map (bias 1) would light up: person 0's map
    # is A + 1, alpha = W[1] / (T V M) = [0.125, 0.25], cam = [[0.5, 0.875], [1.0, 0.625]];
    # the absent person's cam would be 0.375 everywhere
    biased = MapModel([[0.5, -1.0], [1.0, 2.0]], bias=1.0)
    x2 = torch.cat([x, torch.zeros_like(x)], dim=4)
    assert torch.allclose(gradcam_joint_saliency(biased, x2, torch.tensor([1])), torch.tensor([[1.5, 1.5]]))
    x2[..., 1] = 1e-3  # present: its cam counts
    assert torch.allclose(gradcam_joint_saliency(biased, x2, torch.tensor([1])),
                          torch.tensor([[2.25, 2.25]]), atol=1e-3)


@pytest.mark.parametrize("part", [0, 3])
def test_part_only_model_gets_all_saliency_on_its_part(part):
    ctx = _ctx()
    m = ShapMix(ShapMix.HParams(guidance="gradcam"))
    m.setup(ctx)
    model = PartModel(part)
    model.bn.running_mean.uniform_(-0.5, 0.5)
    model.bn.running_var.uniform_(0.5, 2.0)
    model.train()
    bn_before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(5, 3, 8, 25, 2), torch.tensor([0, 2, 0, 1, 2])
    m.on_epoch_start(0, model, ctx)
    out = m.estimate_gradcam(model, x, y, ctx)
    has = torch.tensor([part in c for c in COMBOS])
    want = torch.where(has, 10.0 / JOINTS, torch.zeros(20))  # share 1 on the combinations with the part
    assert torch.allclose(out["w"], want.expand(5, 20), atol=1e-6)
    assert torch.allclose(m.table[[0, 1, 2]], want.expand(3, 20), atol=1e-6)  # epoch 0: overwrite
    assert torch.all(m.table[3] == 1e-6)  # class absent from the batch: untouched
    # no side effects on the model
    assert model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in bn_before.items())


def _hook_reference(model, x, y):
    """Independent Grad-CAM: forward hook on CTR-GCN's l10, full autograd from the logits."""
    seen = {}
    h = model.l10.register_forward_hook(lambda mod, i, o: seen.__setitem__("a", o))
    model.eval()
    with torch.enable_grad():
        logits = model(x)
        (g,) = torch.autograd.grad(logits.gather(1, y[:, None]).sum(), seen["a"])
    h.remove()
    model.zero_grad(set_to_none=True)
    a, (N, _, _, V, M) = seen["a"].detach(), x.shape
    cam = F.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(1)).view(N, M, -1, V)
    return (cam * x.ne(0).flatten(1, 3).any(1)[:, :, None, None]).sum(dim=(1, 2))


def test_ctrgcn_batched_saliency_matches_hook_reference_and_has_no_side_effects():
    torch.manual_seed(0)
    model = CTRGCN(num_class=4, base_channel=8)
    model.train()
    x = torch.randn(3, 3, 16, 25, 2)
    x[1, ..., 1] = 0  # one clip with a single person
    y = torch.tensor([2, 3, 1])  # (class 0's cam is all zero for this random model)
    model(x)  # one training forward: non-trivial BN running statistics
    before = {k: v.clone() for k, v in model.state_dict().items()}
    s = gradcam_joint_saliency(model, x, y)
    assert s.shape == (3, 25) and torch.all(s >= 0) and torch.all(s.sum(1) > 0)
    assert model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert torch.allclose(s, _hook_reference(model, x, y), rtol=1e-4, atol=1e-6)
    # batched = one clip at a time (no leakage between clips)
    single = torch.cat([gradcam_joint_saliency(model, x[i:i + 1], y[i:i + 1]) for i in range(3)])
    assert torch.allclose(s, single, rtol=1e-4, atol=1e-6)


def test_combination_values_and_table_update_invariants():
    torch.manual_seed(1)
    sal = torch.rand(6, 25)
    sal[2] = 0  # no saliency at all -> all values 0
    masks = combo_joint_masks(NTU.parts, 25)
    f = gradcam_combination_values(sal, masks)
    ok = torch.arange(6) != 2
    assert torch.all(f[2] == 0)
    assert torch.allclose(f[ok] + f[ok].flip(1), torch.ones(5, 20))  # k and 19 - k: all joints
    assert torch.allclose(f[ok, :10].sum(1), torch.full((5,), 4.0))  # each part in 4 pairs
    assert torch.allclose(f[ok, 10:].sum(1), torch.full((5,), 6.0))  # ... and in 6 triples
    assert torch.allclose(gradcam_combination_values(7 * sal, masks), f)  # scale-free
    assert torch.allclose(f[0, 3], sal[0][masks[3]].sum() / sal[0].sum())
    # multi-column EMA = the single-column EMA applied to each column
    table, y, w = torch.rand(4, 20), torch.tensor([1, 2, 1, 1, 0, 2]), torch.rand(6, 20)
    for mode in ("per_sample", "per_class"):
        for d in (0.0, 0.9):
            ref = table.clone()
            for k in range(20):
                ref[:, k] = ema_update(table, y, k, w[:, k], d, mode)[:, k]
            assert torch.allclose(ema_update(table, y, slice(None), w, d, mode), ref)


class FakeComm:
    """Records the all_reduce_mean calls of a DDP run (and returns the tensor unchanged)."""

    def __init__(self):
        self.calls = []

    def all_reduce_mean(self, t):
        self.calls.append(tuple(t.shape))
        return t.detach().double().clone()


@pytest.mark.parametrize("hp", [dict(), dict(rw_rs="rs", estimate_every=2, ema_mode="per_class")])
def test_schedule_decay_sync_and_guided_mixing(hp):
    comm = FakeComm()
    ctx = _ctx(comm=comm)
    m = ShapMix(ShapMix.HParams(guidance="gradcam", mixup_prob=0.0, **hp))
    m.setup(ctx)
    model = PartModel(1)
    x, y = torch.rand(6, 3, 64, 25, 2) + 0.1, torch.tensor([0, 1, 2, 3, 0, 1])
    aux = Batch(x=torch.rand(6, 3, 64, 25, 2), y=torch.tensor([3, 2, 1, 0, 3, 2]), index=torch.arange(6))
    want = torch.where(torch.tensor([1 in c for c in COMBOS]), 10.0 / JOINTS, torch.zeros(20))
    n_est = {}
    for epoch in (0, 5, 6):
        m.on_epoch_start(epoch, model, ctx)
        comm.calls.clear()
        if epoch == 6:
            m.table = torch.rand(4, 20)
        for i in range(4):
            before = m.table.clone()
            out = m.transform_batch(Batch(x=x, y=y, index=torch.arange(6), aux=aux), model, ctx)
            n_est[epoch] = n_est.get(epoch, 0) + ("estimate" in out.meta)
            if epoch <= 5:  # decay 0: every row of the batch's classes overwritten
                assert torch.allclose(m.table, want.expand(4, 20), atol=1e-6)
            elif i == 0:  # decay 0.9 on every column; classes 0 and 1 appear twice (per_sample)
                d = torch.tensor([0.9, 0.9, 0.9, 0.9] if hp else [0.81, 0.81, 0.9, 0.9])[:, None]
                assert torch.allclose(m.table, d * before + (1 - d) * want, atol=1e-6)
            elif "estimate" not in out.meta:
                assert torch.equal(m.table, before)
            assert out.meta["branch"] == "cutmix"
            if hp.get("rw_rs") == "rs":
                assert torch.equal(out.targets[1].y_b, aux.y)
        # the table is averaged over ranks at every step from naive_mix_epoch (5), never before
        assert comm.calls.count((4, 20)) == (0 if epoch < 5 else 4)
    every = hp.get("estimate_every", 1)
    assert n_est == {0: 4, 5: 4 // every, 6: 4 // every}


def test_backbone_without_feature_map_is_one_clear_error():
    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(75, 4)

        def forward(self, x):
            return self.fc(x.mean(dim=(2, 4)).flatten(1))

    ctx = _ctx()
    m = ShapMix(ShapMix.HParams(guidance="gradcam"))
    m.setup(ctx)
    with pytest.raises(BenchmarkError, match=r"guidance=gradcam needs a backbone .*Plain has none"):
        m.on_epoch_start(0, Plain(), ctx)
    x, y = torch.randn(2, 3, 8, 25, 2), torch.tensor([0, 1])
    with pytest.raises(BenchmarkError, match="Plain has none"):
        m.transform_batch(Batch(x=x, y=y, index=torch.arange(2)), Plain(), ctx)

    class Flat(MapModel):
        def features(self, x):
            return x.mean(1)

    with pytest.raises(BenchmarkError, match=r"features\(\) -> \(N, M, K, T', V\)"):
        gradcam_joint_saliency(Flat([[1.0, 2.0, 3.0]]), x, y)
    with pytest.raises(BenchmarkError, match="guidance"):
        ShapMix(ShapMix.HParams(guidance="gradcamm")).setup(ctx)


def _roundtrip(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def test_harness_train_checkpoint_and_resume(tmp_path):
    """guidance=gradcam through the harness (smoke profile, synth data, guided mixing from
    epoch 1): a run resumed from the epoch-1 checkpoint ends with the uninterrupted logits."""
    from benchmark.data.synth import load_synth
    from benchmark.runner import resolve_config
    from benchmark.spec import RunSpec, load_run_data, normalise
    from benchmark.train import Trainer

    store = load_synth(tmp_path / "cache", num_classes=6, train_per_class=40, test_per_class=6, T=70)

    def trainer():
        spec = normalise(RunSpec(
            dataset=str(store), method="shap_mix", imbalance=10, n_max=40, profile="smoke", seed=7,
            hparams={"guidance": "gradcam", "naive_mix_epoch": 1, "naive_estimate_epoch": 0,
                     "estimate_every": 2, "rw_rs": "rs"},
            train={"epochs": 3, "max_steps_per_epoch": 2, "max_test_clips": 12, "window": 32}))
        cfg = resolve_config(spec)
        return Trainer(spec, cfg, load_run_data(spec, cfg), torch.device("cpu"))

    full = trainer()
    saved, tables = [], []

    def keep(t, rec):
        saved.append(_roundtrip(t.state_dict()))
        tables.append(t.method.table.clone())

    logits = full.fit(keep)
    full.close()
    assert len(saved) == 3
    # estimated every epoch; updated in epoch 2 (estimate_every 2: batch 0 of each epoch)
    assert all(torch.all(tb >= 0) and (tb > 1e-5).any() for tb in tables)
    assert not torch.equal(tables[1], tables[2])
    assert full.method.base_sum is None  # Grad-CAM needs no baseline clip
    resumed = trainer()
    resumed.load_state_dict(saved[0])
    assert np.array_equal(resumed.fit(), logits)
    assert torch.equal(resumed.method.table, full.method.table)
    resumed.close()
