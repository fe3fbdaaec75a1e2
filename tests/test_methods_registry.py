"""Registry-wide checks (timm / DomainBed style): every registered method, automatically.

* its loss goes down when it trains a few steps on one fixed batch (its own augmentation
  replayed identically each step), so the objective and the gradients are wired correctly;
* it checkpoints and resumes: a run restored from the epoch-1 checkpoint (saved and loaded
  with ``torch.load(weights_only=True)``) ends with exactly the logits of an uninterrupted run.
(``tests/test_train.py`` also trains each one through the harness and checks its predictions.)
"""
import io

import numpy as np
import pytest
import torch

import methods  # noqa: F401  (registers every method before the parametrisation)
from benchmark.data.synth import load_synth
from benchmark.method import METHODS
from benchmark.runner import resolve_config
from benchmark.spec import RunSpec, load_run_data, normalise
from benchmark.train import Trainer


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return load_synth(tmp_path_factory.getbasetemp() / "synth-cache", num_classes=6,
                      train_per_class=40, test_per_class=6, T=70)


def _trainer(store, name, epochs=2):
    spec = normalise(RunSpec(dataset=str(store), method=name, imbalance=10, n_max=40, profile="smoke",
                             seed=7, train={"epochs": epochs, "max_steps_per_epoch": 2,
                                            "max_test_clips": 12, "window": 32}))
    cfg = resolve_config(spec)
    return Trainer(spec, cfg, load_run_data(spec, cfg), torch.device("cpu"))


@pytest.mark.parametrize("name", METHODS.names())
def test_loss_decreases_on_a_fixed_batch(name, store):
    t = _trainer(store, name)
    stage = t.stages[0]
    t.method.on_stage_start(stage, t.model, t.ctx)
    t.method.on_epoch_start(0, t.model, t.ctx)
    opt = t._make_optimizer(stage)
    for g in opt.param_groups:
        g["lr"] = 0.05
    loader = t._loader(0, stage.sampler, stage.sampler_kwargs, stage.views)
    aux = (t._loader(0, stage.aux_sampler, stage.aux_sampler_kwargs, stage.views, 1)
           if stage.aux_sampler else None)
    parts, aux_parts = next(t._batches(loader, aux, 1))
    t.model.train()
    losses = []
    for _ in range(8):
        t.ctx.generator.manual_seed(0)  # the same mix / pairing every step
        batch = t._to_batch(parts, stage.views)
        if aux_parts is not None:
            batch.aux = t._to_batch(aux_parts, stage.views)
        batch = t.method.transform_batch(batch, t.model, t.ctx)
        out = t.method.forward(t.model, batch, t.ctx)
        loss, _ = t.method.loss(out, batch, t.ctx)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        t.method.after_step(t.model, batch, out, t.ctx)
        losses.append(float(loss.detach()))
    t.close()
    assert losses[-1] < losses[0], losses


def _roundtrip(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("name", METHODS.names())
def test_checkpoint_and_resume_equal_uninterrupted(name, store):
    full = _trainer(store, name)
    saved = []
    logits = full.fit(lambda t, rec: saved.append(_roundtrip(t.state_dict())))
    full.close()
    resumed = _trainer(store, name)
    resumed.load_state_dict(saved[0])  # after the first epoch
    assert np.array_equal(resumed.fit(), logits)
    resumed.close()
