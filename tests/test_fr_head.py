"""FR-Head (issue 15): the refinement loss and memory update against an independent per-sample
re-derivation (and against the official ``RenovateNet``, hard-coded), the official parameter
count, the tap rule through the backbone contract, invariants (weight 0 = CE, no gradient into
the classifier), and one step + resume through the real Trainer."""
import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import methods  # noqa: F401  (registers every method)
from benchmark.backbones.ctrgcn import CTRGCN
from benchmark.data.synth import load_synth
from benchmark.errors import BenchmarkError
from benchmark.method import Batch, Context, build_method
from benchmark.runner import resolve_config
from benchmark.spec import RunSpec, load_run_data, normalise
from benchmark.train import Trainer
from conftest import Z  # toy batch F4 logits
from methods.fr_head import (RefineStage, auto_taps, probe_shapes, refine_loss, select,
                             update_memory)

# a tiny batch: 4 clips, 3 classes, h = 4. Predictions (argmax Z) are [0, 1, 2, 0]; with these
# labels class 0 has a true positive (clip 0) and a false positive (clip 3), class 1 a true
# positive (1) and a false negative (2), class 2 no true positive (its memory stays), a false
# negative (3) and a false positive (2).
Y = torch.tensor([0, 1, 1, 2])
FEAT = torch.tensor([[1.0, 0.5, -0.2, 0.3], [0.2, -1.0, 0.4, 0.1],
                     [-0.3, 0.6, 1.2, -0.5], [0.7, 0.1, -0.4, 0.9]])
MEM = torch.tensor([[0.5, -0.1, 0.3], [0.2, 0.8, -0.6], [-0.4, 0.2, 0.9], [0.1, -0.3, 0.2]])
# official model/lib.py RenovateNet(n_channel=4, n_class=3, version=...), cl_fc = identity,
# avg_f = MEM, forward(FEAT, Y, Z) in float32 (verified once against the official code)
OFFICIAL = {"V0": 9.616990, "V1": 9.553893, "V2": 5.043461, "NO FN": 9.420221,
            "NO FP": 9.553635, "NO FN & FP": 9.419964}
OFFICIAL_NO_P_MAP, OFFICIAL_THRESHOLD_099 = 9.806032, 9.813503
OFFICIAL_V0_MEMORY = [[0.55, -0.07, 0.3], [0.23, 0.62, -0.6], [-0.38, 0.22, 0.9],
                      [0.12, -0.26, 0.2]]


def reference(feat, y, logits, memory, alp=0.125, tmp=0.125, mom=0.9, version="V0",
              use_p_map=True, threshold=0.0):
    """The FR-Head loss re-derived per clip and class in float64 (loss, new memory)."""
    feat, logits, memory = feat.double(), logits.double(), memory.double()
    n, k = logits.shape
    p = torch.softmax(logits, 1)
    pred = logits.argmax(1).tolist()
    y = y.tolist()
    conf = [[i for i in range(n) if y[i] == c == pred[i] and p[i, c] > threshold] for c in range(k)]
    fn = [[i for i in range(n) if y[i] == c != pred[i]] for c in range(k)]
    fp = [[i for i in range(n) if pred[i] == c != y[i]] for c in range(k)]

    def mean(rows):
        return sum(feat[i] for i in rows) / len(rows)

    def cos(a, b):
        return float(a @ b / (a.norm() * b.norm()))

    proto = [mom * memory[:, c] + (1 - mom) * mean(conf[c]) if conf[c] else memory[:, c]
             for c in range(k)]
    total = 0.0
    for i in range(n):
        c = y[i]
        for sign, amb, on in ((1, fn, version in ("V0", "V1", "NO FP", "V2")),
                              (-1, fp, version in ("V0", "V1", "NO FN", "V2"))):
            row = [cos(feat[i], proto[j]) for j in range(k)]
            if version == "V2":
                row = [row[j] + (sign * cos(proto[j], mean(amb[j])) - 1 if amb[j] else 0.0)
                       for j in range(k)]
            elif on and amb[c] and (version == "V0" or i in conf[c]):
                w = alp * (1 - float(p[i, c])) if use_p_map else alp
                row[c] += w * (sign * cos(feat[i], mean(amb[c])) - 1)
            lse = math.log(sum(math.exp(r / tmp) for r in row))
            ce = lse - row[c] / tmp
            total += ce * (1 - float(p[i, c])) if version == "V2" else ce
    return total / n, torch.stack(proto, 1)


def loss_and_memory(version="V0", dtype=torch.float64, **kw):
    sel = select(Z.to(dtype), Y, kw.pop("threshold", 0.0))
    loss = refine_loss(FEAT.to(dtype), Y, sel, MEM.to(dtype), version=version, **kw)
    new = update_memory(MEM.to(dtype), *(FEAT.to(dtype).T @ sel.confident, sel.confident.sum(0)),
                        0.9)
    return float(loss), new


def ctx(num_classes=3, counts=None):
    counts = torch.tensor([100, 10, 1]) if counts is None else counts
    return Context(num_classes=num_classes, class_counts=counts, total_epochs=100,
                   iters_per_epoch=1, device=torch.device("cpu"), seed=0, layout=None,
                   batch_size=4)


def built(num_class=3, base=8, frames=16, **hp):
    m, c = build_method("fr_head", {"num_frame": frames, **hp}), ctx(num_class)
    m.setup(c)
    torch.manual_seed(0)
    model = m.build_model(c, lambda: CTRGCN(num_class=num_class, base_channel=base))
    return m, c, model


# ------------------------------------------------------------------ the loss
@pytest.mark.parametrize("version", ["V0", "V1", "V2", "NO FN", "NO FP", "NO FN & FP"])
def test_loss_matches_per_clip_rederivation(version):
    ref, ref_mem = reference(FEAT, Y, Z, MEM, version=version)
    got, mem = loss_and_memory(version)
    assert got == pytest.approx(ref, rel=1e-9)
    assert torch.allclose(mem, ref_mem, rtol=0, atol=1e-12)


@pytest.mark.parametrize("version", list(OFFICIAL))
def test_loss_equals_official_values(version):
    assert loss_and_memory(version, torch.float32)[0] == pytest.approx(OFFICIAL[version], rel=1e-6)


def test_memory_update_and_options():
    _, mem = loss_and_memory("V0", torch.float32)
    assert torch.allclose(mem, torch.tensor(OFFICIAL_V0_MEMORY), atol=1e-6)
    # mom M + (1 - mom) f for the true positives of classes 0 and 1, class 2 untouched
    assert torch.allclose(mem[:, 0], 0.9 * MEM[:, 0] + 0.1 * FEAT[0])
    assert torch.equal(mem[:, 2], MEM[:, 2])
    assert loss_and_memory(use_p_map=False)[0] == pytest.approx(OFFICIAL_NO_P_MAP, rel=1e-6)
    kw = {"alp": 0.5, "tmp": 0.2}
    assert loss_and_memory(**kw)[0] == pytest.approx(reference(FEAT, Y, Z, MEM, **kw)[0], rel=1e-9)
    # a confidence threshold no clip passes: the memory stays, the loss follows
    loss, mem = loss_and_memory(threshold=0.99)
    assert loss == pytest.approx(OFFICIAL_THRESHOLD_099, rel=1e-6)
    assert loss == pytest.approx(reference(FEAT, Y, Z, MEM, threshold=0.99)[0], rel=1e-9)
    assert torch.equal(mem, MEM.double())


def test_penalties_vanish_without_ambiguous_clips():
    # all clips correct: no FN / FP anywhere -> both branches are plain prototype CE
    y = Z.argmax(1)
    sel = select(Z, y, 0.0)
    assert float(sel.fn.sum()) == 0 and float(sel.fp.sum()) == 0
    proto = update_memory(MEM, FEAT.T @ sel.confident, sel.confident.sum(0), 0.9)
    cosine = F.normalize(FEAT, dim=1) @ F.normalize(proto, dim=0)
    ce = F.cross_entropy(cosine / 0.125, y)
    assert float(refine_loss(FEAT, y, sel, MEM)) == pytest.approx(2 * float(ce), rel=1e-5)


# ------------------------------------------------------------------ the module
def test_official_parameter_count_and_taps():
    m, c, model = built(num_class=60, base=64, frames=64)
    extra = sum(p.numel() for p in model.stages.parameters())
    total = sum(p.numel() for p in model.parameters())
    # official model/ctrgcn.py Model(cl_mode="ST-Multi-Level"), counted by
    # scripts/check_frhead_official.py: NTU-60 1,983,628 in all, 536,956 in ren_low/mid/high/fin
    assert (total, extra) == (1_983_628, 536_956)
    assert [model.backbone.block_names()[i] for i in model.taps] == ["l1", "l5", "l8", "l10"]
    # per tap: squeeze convs C -> 256 // 25 = 10 and 256 // T, BN, Linear(250 / 256 -> 256)
    for stage, (ch, t) in zip(model.stages, ((64, 64), (128, 32), (256, 16), (256, 16))):
        assert stage.spatial[0].weight.shape == (10, ch, 1, 1)
        assert stage.temporal[0].weight.shape == (256 // t, ch, 1, 1)
        assert stage.spatial_proj.in_features == 250 and stage.temporal_proj.in_features == 256
    assert m.memory.shape == (4, 2, 256, 60)
    # NW-UCLA (config/ucla/default.yaml: num_frame 52, 20 joints, 1 person, 10 classes)
    m = build_method("fr_head", {"num_frame": 52})
    m.setup(ctx(10))
    model = m.build_model(ctx(10), lambda: CTRGCN(num_class=10, num_point=20, num_person=1,
                                                  graph="ucla"))
    assert (sum(p.numel() for p in model.parameters()),
            sum(p.numel() for p in model.stages.parameters())) == (1_934_197, 507_305)


def test_tap_rule_names_and_errors():
    shapes = [(8, 64, 25)] * 4 + [(16, 32, 25)] * 3 + [(32, 16, 25)] * 3
    assert auto_taps(64, shapes) == [0, 4, 7, 9]
    bb = CTRGCN(num_class=3, base_channel=8)
    state = {k: v.clone() for k, v in bb.state_dict().items()}
    assert [s[:2] for s in probe_shapes(bb, 16)][::3] == [(8, 16), (8, 16), (16, 8), (32, 4)]
    after = bb.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in state.items())  # the probe changes nothing
    _, _, model = built(taps=("l2", "l9"), stage_weights=(1.0, 1.0))
    assert model.taps == [1, 8]
    with pytest.raises(BenchmarkError, match="stage_weights"):
        built(taps=("l2",))
    with pytest.raises(BenchmarkError, match="not blocks"):
        built(taps=("l11",), stage_weights=(1.0,))
    with pytest.raises(BenchmarkError, match="version"):
        build_method("fr_head", {"version": "V9"}).setup(ctx())


def test_refine_forward_is_the_backbone_forward():
    _, _, model = built()
    model.train()
    x = torch.randn(4, 3, 16, 25, 2)
    logits, feat, refined = model.refine(x)
    ref_logits, ref_feat = model.backbone(x, return_feat=True)
    assert torch.allclose(logits, ref_logits, atol=1e-6)
    assert torch.allclose(feat, ref_feat, atol=1e-6)
    assert refined.shape == (4, 2, 4, 256)
    # the official squeeze: persons averaged, mean over T (spatial) / V (temporal), 1x1 conv,
    # BN, ReLU, flatten, Linear
    stage = RefineStage(8, 16, 25, 256).eval()
    f = torch.randn(4, 8, 16, 25)
    g = f.reshape(2, 2, 8, 16, 25).mean(1)
    want = [stage.spatial_proj(stage.spatial(g.mean(2, keepdim=True)).flatten(1)),
            stage.temporal_proj(stage.temporal(g.mean(3, keepdim=True)).flatten(1))]
    assert torch.allclose(stage(f, 2), torch.stack(want), atol=1e-6)
    # another window: 8 frames are average-pooled (here: repeated) to the built 16
    short = torch.randn(4, 8, 8, 25)
    assert torch.allclose(stage(short, 2), stage(short.repeat_interleave(2, dim=2), 2), atol=1e-6)


# ------------------------------------------------------------------ invariants of the method
def _step(m, c, model, x, y, epoch=0):
    m.on_epoch_start(epoch, model, c)
    batch = Batch(x=x, y=y, index=torch.arange(len(y)))
    out = m.forward(model, batch, c)
    return m.loss(out, batch, c), out, batch


def test_weight_zero_and_start_epoch_give_ce_exactly():
    x, y = torch.randn(4, 3, 16, 25, 2), torch.tensor([0, 1, 2, 0])
    for hp, epoch in (({"w_cl_loss": 0.0}, 5), ({"start_epoch": 3}, 3)):
        m, c, model = built(**hp)
        (loss, logs), out, batch = _step(m, c, model, x, y, epoch)
        base, _ = super(type(m), m).loss(out, batch, c)  # the plain CE objective, bit for bit
        assert torch.equal(loss, base) and logs["cl"] > 0
        assert torch.allclose(loss, F.cross_entropy(out.logits, y), rtol=0, atol=1e-6)
    m, c, model = built(start_epoch=3)
    (loss, logs), out, _ = _step(m, c, model, x, y, 4)  # epoch > start_epoch: CE + 0.1 cl
    ce = float(F.cross_entropy(out.logits.detach(), y))
    assert float(loss.detach()) == pytest.approx(ce + 0.1 * logs["cl"], rel=1e-6)


def test_cl_gradient_reaches_backbone_and_heads_not_classifier():
    m, c, model = built()
    x, y = torch.randn(4, 3, 16, 25, 2), torch.tensor([0, 1, 2, 0])
    (_, _), out, batch = _step(m, c, model, x, y)
    sel = select(out.logits.detach(), batch.y, 0.0)
    cl = sum(w * refine_loss(out.heads["refined"][s, b], batch.y, sel, m.memory[s, b])
             for s, w in enumerate(m.hp.stage_weights) for b in range(2))
    cl.backward()
    grads = {k: p.grad for k, p in model.named_parameters()}
    assert grads["backbone.fc.weight"] is None  # the logits enter detached (official)
    assert all(g is not None and float(g.abs().sum()) > 0
               for k, g in grads.items() if k.startswith("stages.") and "proj" in k)
    assert any(g is not None and float(g.abs().sum()) > 0
               for k, g in grads.items() if k.startswith("backbone.l1."))


def test_memory_committed_after_step_and_state_roundtrip():
    m, c, model = built()
    before = m.memory.clone()
    x, y = torch.randn(4, 3, 16, 25, 2), torch.tensor([0, 1, 2, 0])
    (_, _), out, batch = _step(m, c, model, x, y)
    assert torch.equal(m.memory, before)  # the loss does not change the memory
    m.after_step(model, batch, out, c)
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    fresh, _, _ = built()
    fresh.load_state_dict(state)
    assert torch.equal(fresh.memory, m.memory)
    with pytest.raises(BenchmarkError, match="memory"):
        fresh.load_state_dict({"memory": torch.zeros(3, 2, 256, 3)})
    with pytest.raises(BenchmarkError, match="memory"):
        fresh.load_state_dict({})


# ------------------------------------------------------------------ through the real Trainer
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return load_synth(tmp_path_factory.getbasetemp() / "synth-cache", num_classes=6,
                      train_per_class=40, test_per_class=6, T=70)


def _trainer(store, method, hparams=None, epochs=1):
    spec = normalise(RunSpec(dataset=str(store), method=method, imbalance=10, n_max=40,
                             profile="smoke", seed=3, hparams=hparams or {},
                             train={"epochs": epochs, "max_steps_per_epoch": 2,
                                    "max_test_clips": 12, "window": 16}))
    cfg = resolve_config(spec)
    return Trainer(spec, cfg, load_run_data(spec, cfg), torch.device("cpu"))


def _roundtrip(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def test_training_and_resume_through_the_trainer(store):
    t = _trainer(store, "fr_head", {"num_frame": 16}, epochs=2)
    before = t.method.memory.clone()
    heads = [p.detach().clone() for p in t.model.stages.parameters()]
    saved = []
    logits = t.fit(lambda tr, rec: saved.append(_roundtrip(tr.state_dict())))
    t.close()
    assert logits.shape == (12, 6) and np.isfinite(logits).all()
    assert [h["steps"] for h in t.history] == [2, 2]
    assert not torch.equal(t.method.memory, before)  # confident clips moved their classes
    assert any(not torch.equal(a, b) for a, b in zip(heads, t.model.stages.parameters()))
    resumed = _trainer(store, "fr_head", {"num_frame": 16}, epochs=2)
    resumed.load_state_dict(saved[0])  # after epoch 1: memory from the checkpoint
    assert torch.equal(resumed.method.memory, saved[0]["method"]["memory"])
    assert np.array_equal(resumed.fit(), logits)
    assert torch.equal(resumed.method.memory, t.method.memory)
    resumed.close()


def test_weight_zero_trains_exactly_as_ce(store):
    runs = []
    for method, hp in (("ce", {}), ("fr_head", {"w_cl_loss": 0.0, "num_frame": 16})):
        t = _trainer(store, method, hp)
        runs.append(t.fit())
        t.close()
    assert np.array_equal(*runs)
