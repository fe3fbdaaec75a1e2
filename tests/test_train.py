"""Training harness: schedule, config/spec plumbing, a smoke run end to end, every method."""
import json
import math
import os

import numpy as np
import pytest
import torch

from benchmark.config import PROFILES, TrainConfig, cosine_lr_at, lr_at, make_config
from benchmark.data.synth import load_synth
from benchmark.errors import BenchmarkError
import methods  # noqa: F401  (registers every method before the parametrisation)
from benchmark.method import METHODS, Method, Stage
from benchmark.runner import resolve_config, run
from benchmark.spec import RunSpec, load_run_data, normalise, resolve_dataset, resolve_run
from benchmark.train import Trainer

RUN_FILES = ("spec.json", "env.json", "log.txt", "metrics.jsonl", "last.pt", "final.json",
             "logits.npy", "done")


def tiny_store(tmp_path_factory):
    """6 classes x 40 train / 6 test clips; the cache makes it once per session."""
    return load_synth(tmp_path_factory.getbasetemp() / "synth-cache", num_classes=6,
                      train_per_class=40, test_per_class=6, T=70)


def tiny_spec(store, method="ce", **kw):
    # IF 10 over n_max 40: counts 40..4 -> medium and few classes, Many is empty
    return RunSpec(dataset=str(store), method=method, imbalance=10, n_max=40, profile="smoke", **kw)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, one_thread):
    out = tmp_path_factory.mktemp("runs")
    store = tiny_store(tmp_path_factory)
    return run(tiny_spec(store), out, threads=1), store


# ------------------------------------------------------------------ schedule and config
def test_lt_schedule_matches_official():
    c = make_config("lt")
    lrs = [lr_at(e, c.lr, c.warmup_epochs, c.milestones, c.lr_decay) for e in range(c.epochs)]
    assert lrs[:5] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])
    assert lrs[5:60] == pytest.approx([0.1] * 55)
    assert lrs[60:80] == pytest.approx([0.01] * 20)
    assert lrs[80:] == pytest.approx([0.001] * 20)
    assert (c.momentum, c.nesterov, c.weight_decay, c.batch_size, c.window) == (0.9, True, 4e-4, 64, 64)


def test_linear_lr_scaling_and_profiles():
    assert make_config("lt", {"batch_size": 32}).lr == pytest.approx(0.05)
    assert make_config("balanced").epochs == 65 and make_config("balanced").milestones == (35, 55)
    smoke = make_config("smoke")
    assert smoke.epochs >= 3 and smoke.max_steps_per_epoch and smoke.base_channel <= 16
    for name in PROFILES:
        cfg = make_config(name)
        assert all(0 < m < cfg.epochs for m in cfg.milestones), name


def test_overrides_are_checked():
    assert make_config("lt", {"base_lr": 1}).base_lr == 1.0  # int widened to float
    assert make_config("lt", {"milestones": [3, 4]}).milestones == (3, 4)
    with pytest.raises(BenchmarkError, match="did you mean epochs"):
        make_config("lt", {"epoch": 3})
    with pytest.raises(BenchmarkError, match="batch_size must be int"):
        make_config("lt", {"batch_size": "big"})
    with pytest.raises(BenchmarkError, match="unknown profile"):
        make_config("fast")
    with pytest.raises(BenchmarkError, match="amp"):
        TrainConfig(amp="fp8")


def test_run_id_is_canonical(tmp_path_factory):
    store = str(tiny_store(tmp_path_factory))
    a = resolve_run(RunSpec(store, "ce", imbalance=10, n_max=40, train={"base_lr": 1}, hparams={}))
    b = resolve_run(RunSpec(store, "ce", imbalance=10.0, n_max=40, train={"base_lr": 1.0}))
    assert a.run_id == b.run_id and len(a.run_id) == 12
    assert a.run_id != resolve_run(RunSpec(store, "ce", imbalance=10, n_max=40, seed=1)).run_id
    c = normalise(RunSpec("synth", "logit_adjust", hparams={"tau": 2}, train={"milestones": [3]}))
    assert c.hparams == {"tau": 2.0} and c.train == {"milestones": [3]}
    assert RunSpec.from_dict(json.loads(json.dumps(c.to_dict()))).request_key == c.request_key
    # an override equal to the default (tau 1, the lt profile's epochs) is no override
    d = normalise(RunSpec("synth", "logit_adjust", hparams={"tau": 1}, train={"epochs": 100}))
    assert d.hparams == {} and d.train == {}
    assert d.request_key == normalise(RunSpec("synth", "logit_adjust")).request_key


def test_missing_store_names_the_prepare_command(tmp_path):
    with pytest.raises(BenchmarkError, match="python -m benchmark data prepare ntu60 "):
        resolve_dataset("ntu60-xsub", root=tmp_path)
    with pytest.raises(BenchmarkError, match="did you mean ucla"):
        resolve_dataset("ulca", root=tmp_path)


def test_data_resolution_and_test_cap(tmp_path_factory):
    store = tiny_store(tmp_path_factory)
    spec = tiny_spec(store)
    data = load_run_data(spec, resolve_config(spec))
    assert data.graph == "ntu" and data.num_point == 25 and data.num_person == 2
    assert data.class_counts.tolist() == [40, 25, 15, 10, 6, 4]
    # smoke caps the test set at 120 clips = 20 per class; this store has 6 per class
    assert len(data.test_idx) == 36 and not data.describe()["test_capped"]
    capped = load_run_data(spec, make_config("smoke", {"max_test_clips": 12}))
    assert np.bincount(capped.test_labels).tolist() == [2] * 6


# ------------------------------------------------------------------ end to end
def test_smoke_run_writes_every_file(smoke_run):
    result, _ = smoke_run
    d = result.run_dir
    assert result.status == "finished"
    for f in RUN_FILES:
        assert (d / f).is_file(), f
    final = json.loads((d / "final.json").read_text())
    lines = (d / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == final["epochs"] == 3
    hist = [json.loads(x) for x in lines]
    assert [h["lr"] for h in hist] == pytest.approx([0.025, 0.025, 0.0025])
    assert final["many"] is None and final["few"] is not None  # no class > 100 clips: null
    assert final["groups"]["sizes"] == {"many": 0, "medium": 2, "few": 4}
    assert final["top1"] == hist[-1]["top1"]  # the reported number is the LAST epoch
    best = final["best_epoch_on_test"]
    assert best["top1"] == max(h["top1"] for h in hist) and "test set" in best["note"]
    assert len(final["confusion_matrix"]) == 6 and len(final["per_class_accuracy"]) == 6
    logits = np.load(d / "logits.npy")
    assert logits.dtype == np.float32 and logits.shape == (36, 6)
    labels = load_run_data(RunSpec.from_dict(final["spec"]), make_config("smoke")).test_labels
    assert np.array_equal(np.load(d / "test_labels.npy"), labels)
    assert (logits.argmax(1) == labels).mean() == pytest.approx(final["top1"])  # float32: exact
    ckpt = torch.load(d / "last.pt", weights_only=True)  # no pickled objects inside
    assert ckpt["cursor"] == {"stage": 1, "epoch": 0}
    assert ckpt["spec"]["identity"] == final["identity"] and ckpt["spec"]["request"] == final["spec"]
    assert {"torch", "numpy", "python", "generator"} <= set(ckpt["rng"])
    spec_json = json.loads((d / "spec.json").read_text())
    assert spec_json["identity"] == final["identity"] and spec_json["request"] == final["spec"]
    assert spec_json["run_id"] == final["run_id"] == d.name
    # the code that made the run is recorded
    assert final["code"]["files"]["methods/ce.py"] and len(final["code"]["digest"]) == 64
    env = json.loads((d / "env.json").read_text())
    assert env["torch"] == torch.__version__ and env["device"] == "cpu"


def test_rerunning_a_done_run_does_nothing(smoke_run, caplog):
    result, store = smoke_run
    before = {f: os.stat(result.run_dir / f).st_mtime_ns for f in RUN_FILES}
    again = run(tiny_spec(store), result.run_dir.parent)
    assert again.status == "already done" and again.run_dir == result.run_dir
    assert before == {f: os.stat(result.run_dir / f).st_mtime_ns for f in RUN_FILES}


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_trains_and_predicts(name, tmp_path_factory):
    """Registry-wide (timm style): each method runs two steps and a test pass."""
    store = tiny_store(tmp_path_factory)
    spec = normalise(tiny_spec(store, name, train={"epochs": 1, "max_steps_per_epoch": 2,
                                                    "max_test_clips": 12, "window": 32}))
    cfg = resolve_config(spec)
    trainer = Trainer(spec, cfg, load_run_data(spec, cfg), torch.device("cpu"))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    logits = trainer.fit()
    trainer.close()
    assert logits.shape == (12, 6) and np.isfinite(logits).all()
    assert trainer.history[0]["steps"] == 2 and np.isfinite(trainer.history[0]["loss"])
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())


# ------------------------------------------------------------------ Stage schedule / wd / lr_factor
class ScheduledTwoStage(Method):
    """Not registered: step schedule with an lr factor, then a cosine fc-only stage with its own
    weight decay (what IB and BS+MaxNorm need)."""

    def stages(self, ctx):
        return [Stage("a", epochs=3, warmup_epochs=1, milestones=(2,)),
                Stage("b", epochs=3, lr=0.01, warmup_epochs=0, schedule="cosine", weight_decay=0.1,
                      trainable=lambda n: n.startswith("fc."))]

    def lr_factor(self, stage, epoch):
        return 0.5 if stage.name == "a" and epoch >= 1 else 1.0


def _scheduled_trainer(tmp_path_factory, method):
    store = tiny_store(tmp_path_factory)
    spec = normalise(tiny_spec(store, train={"max_steps_per_epoch": 1, "max_test_clips": 12,
                                             "window": 32}))
    cfg = resolve_config(spec)
    return Trainer(spec, cfg, load_run_data(spec, cfg), torch.device("cpu"), method=method)


def test_cosine_lr_values():
    lrs = [cosine_lr_at(e, 0.01, 0, 10) for e in range(10)]
    assert lrs[0] == 0.01 and lrs[5] == pytest.approx(0.005) and lrs[-1] == pytest.approx(0.000245, abs=1e-6)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    warm = [cosine_lr_at(e, 0.1, 2, 6) for e in range(6)]  # warm-up as lr_at, then 4 cosine epochs
    assert warm == pytest.approx([0.05, 0.1, 0.1, 0.1 * (1 + math.cos(math.pi / 4)) / 2, 0.05,
                                  0.1 * (1 + math.cos(3 * math.pi / 4)) / 2])


def test_stage_schedule_weight_decay_and_lr_factor_reach_the_optimizer(tmp_path_factory):
    t = _scheduled_trainer(tmp_path_factory, ScheduledTwoStage())
    assert t.ctx.milestones == (2,) and t.ctx.warmup_epochs == 1  # the smoke profile's
    seen = []
    t.fit(lambda tr, rec: seen.append([(g["lr"], g["weight_decay"]) for g in tr.optimizer.param_groups]))
    t.close()
    lr = 0.025  # smoke: base 0.1 at batch 16 / 64
    cos = [0.01, 0.01 * (1 + math.cos(math.pi / 3)) / 2, 0.01 * (1 + math.cos(2 * math.pi / 3)) / 2]
    want = [lr, lr * 0.5, lr * 0.1 * 0.5, *cos]  # warm-up 1, factor 0.5 from epoch 1, step at 2
    assert [h["lr"] for h in t.history] == pytest.approx(want)
    assert [g[0][0] for g in seen] == pytest.approx(want)
    assert [g[0][1] for g in seen] == [4e-4] * 3 + [0.1] * 3  # None = the config's decay
    assert len(seen[-1]) == 1 and len(list(t.model.parameters())) > 2  # fc only in stage b


def test_bad_stage_schedule_is_an_error(tmp_path_factory):
    class Bad(Method):
        def stages(self, ctx):
            return [Stage(schedule="poly")]

    with pytest.raises(BenchmarkError, match="schedule must be one of step, cosine"):
        _scheduled_trainer(tmp_path_factory, Bad())


class StatsThenTrain(Method):
    """Not registered: a statistics stage (train=False) and an aux-sampler stage with kwargs."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def stages(self, ctx):
        return [Stage("stats", epochs=1, train=False, sampler="sequential"),
                Stage("train", epochs=1, aux_sampler="ros", aux_sampler_kwargs={"redraw_each_epoch": True})]

    def transform_batch(self, batch, model, ctx):
        self.seen.append((torch.is_grad_enabled(), model.training, batch.x.clone(),
                          None if batch.aux is None else batch.aux.y.clone()))
        return batch


def test_statistics_stage_sees_test_transformed_batches_without_grad(tmp_path_factory):
    m = StatsThenTrain()
    t = _scheduled_trainer(tmp_path_factory, m)
    t.fit()
    t.close()
    stats = [s for s in m.seen if s[3] is None and not s[0]]
    train = [s for s in m.seen if s[0]]
    assert len(stats) == 1 and stats[0][1] is False  # no grad, eval mode, max_steps_per_epoch 1
    assert t.history[0]["steps"] == 0 and t.history[0]["loss"] is None  # nothing optimised
    assert len(train) == 1 and train[0][1] is True and train[0][3] is not None  # aux batch given
    # the statistics pass used the test transform: deterministic, so a rerun gives the same clip
    data, store = t.data, t.data.store
    idx = torch.as_tensor(data.train_idx[:len(stats[0][2])])
    x = torch.from_numpy(np.ascontiguousarray(store.data[idx.numpy()]))
    lengths = torch.as_tensor(store.lengths[idx.numpy()])
    assert torch.allclose(data.test_transform(x, lengths, None), stats[0][2], atol=1e-6)


# ------------------------------------------------------------------ TrainConfig.compile
def _compile_pair(tmp_path_factory, method="ce"):
    store = tiny_store(tmp_path_factory)
    out = {}
    for flag in (False, True):
        spec = normalise(tiny_spec(store, method, train={"epochs": 1, "max_steps_per_epoch": 2,
                                                         "max_test_clips": 12, "window": 32,
                                                         "compile": flag}))
        cfg = resolve_config(spec)
        trainer = Trainer(spec, cfg, load_run_data(spec, cfg), torch.device("cpu"))
        logits = trainer.fit()
        trainer.close()
        out[flag] = (trainer, logits, resolve_run(spec).run_id)
    return out


@pytest.mark.parametrize("method", ["ce", "shap_mix"])
def test_compile_traces_the_training_forward_and_changes_nothing(method, tmp_path_factory,
                                                                monkeypatch, one_thread):
    """compile=True routes the training forward through compile_module (here dynamo with the
    eager backend: the whole model traced, no code generation) and trains exactly like the
    plain module: same losses, same final weights and test logits; the flag is part of the
    run id. The inductor backend is the slow test below."""
    import benchmark.train as train_mod
    calls = []

    def eager_compile(module):
        calls.append(type(module).__name__)
        return torch.compile(module, backend="eager", fullgraph=True)

    monkeypatch.setattr(train_mod, "compile_module", eager_compile)
    pair = _compile_pair(tmp_path_factory, method)
    (plain, lp, id0), (comp, lc, id1) = pair[False], pair[True]
    assert calls == ["CTRGCN"] and id0 != id1
    assert [h["loss"] for h in comp.history] == [h["loss"] for h in plain.history]
    sp, sc = plain.model.state_dict(), comp.model.state_dict()
    assert list(sp) == list(sc)  # checkpoints keep the plain module's keys
    assert all(torch.equal(sp[k], sc[k]) for k in sp)
    np.testing.assert_array_equal(lp, lc)


@pytest.mark.slow
def test_compile_inductor_is_as_accurate_as_eager(one_thread):
    """The real backend (C++ code generation on CPU, ~1-2 min): one training forward/backward
    of compile_module(model) in fp32 is within fp32 tolerances of the fp64 result, as eager is.
    (A direct fp32-vs-fp32 comparison is no test: some CTR-GCN gradients, e.g. the biases of
    BNs whose outputs feed further train-mode BNs, are cancelling sums with ~1e-3 relative
    fp32 noise, so two correct fp32 runs drift apart over steps.)"""
    import copy
    from benchmark.backbones import build_backbone
    from benchmark.train import compile_module
    torch.manual_seed(0)
    eager = build_backbone("ctrgcn", graph="ntu", in_channels=3, base_channel=8, num_class=6,
                           num_point=25, num_person=2)
    comp, ref = copy.deepcopy(eager), copy.deepcopy(eager).double()
    x, y = torch.randn(16, 3, 32, 25, 2), torch.randint(0, 6, (16,))
    out = {}
    for name, model, fwd, inp in (("eager", eager, eager, x), ("compiled", comp, compile_module(comp), x),
                                  ("fp64", ref, ref, x.double())):
        logits = fwd(inp)
        torch.nn.functional.cross_entropy(logits, y).backward()
        out[name] = (logits.detach().double(),
                     torch.cat([p.grad.double().flatten() for p in model.parameters()]),
                     torch.cat([b.double().flatten() for k, b in model.named_buffers()
                                if "running" in k]))

    def err(name, i):
        return ((out[name][i] - out["fp64"][i]).norm() / out["fp64"][i].norm()).item()

    # fp32 tolerances (measured: eager 1.5e-7 / 7e-4 / 3e-8, compiled 5e-7 / 6e-4 / 2e-7); the
    # gradients include cancelling BN-bias sums with ~1e-3 relative fp32 noise. A broken
    # compile (a lost BN update, a wrong gradient) is off by O(1).
    for i, (what, tol) in enumerate((("logits", 1e-5), ("gradients", 5e-3),
                                     ("BN running statistics", 1e-5))):
        assert err("eager", i) < tol and err("compiled", i) < tol, what
