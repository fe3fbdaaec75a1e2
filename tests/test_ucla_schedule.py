"""The ``ucla`` schedule profile, ``TrainConfig.repeat`` and scalar tuple overrides (issue 14
item 3).

``ucla`` = CTR-GCN ``config/ucla/default.yaml``: batch 16, base_lr 0.1 at batch 16, weight
decay 1e-4, Nesterov, warm-up 5, 65 epochs, step [50], fp32, the full CTR-GCN; the official
train feeder's ``repeat: 5`` (``__len__`` = n * repeat, item i = clip i % n, shuffled together)
is ``TrainConfig.repeat``, 1 in the profile.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

import methods  # noqa: F401
from benchmark.config import lr_at, make_config
from benchmark.data.samplers import RepeatedSampler, build_sampler
from benchmark.errors import BenchmarkError
from benchmark.hparams import parse_assignments
from benchmark.method import Method
from benchmark.runner import resolve_config
from benchmark.spec import RunSpec, load_run_data, normalise
from benchmark.suites import DATA_PROFILES, get_suites, schedule_caption
from benchmark.train import Trainer
from test_train import tiny_store


def test_ucla_profile_is_ctrgcn_nw_ucla_config():
    c = make_config("ucla")
    assert (c.epochs, c.milestones, c.warmup_epochs, c.lr_decay) == (65, (50,), 5, 0.1)
    assert (c.batch_size, c.ref_batch_size, c.base_lr, c.lr) == (16, 16, 0.1, 0.1)
    assert (c.weight_decay, c.momentum, c.nesterov) == (1e-4, 0.9, True)
    assert (c.base_channel, c.backbone, c.amp, c.repeat) == (64, "ctrgcn", "off", 1)
    assert c.test_batch_size == 64
    lrs = [lr_at(e, c.lr, c.warmup_epochs, c.milestones, c.lr_decay) for e in range(c.epochs)]
    assert lrs[:5] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])
    assert lrs[5:50] == pytest.approx([0.1] * 45) and lrs[50:] == pytest.approx([0.01] * 15)
    assert make_config("ucla", {"repeat": 5}).repeat == 5
    for bad in (0, -1):
        with pytest.raises(BenchmarkError, match="repeat must be >= 1"):
            make_config("ucla", {"repeat": bad})
    with pytest.raises(BenchmarkError, match="repeat must be int"):
        make_config("ucla", {"repeat": 2.5})


def test_scalar_for_a_tuple_field():
    assert make_config("lt", parse_assignments(["milestones=50"])).milestones == (50,)
    assert make_config("lt", parse_assignments(["milestones=[30, 50]"])).milestones == (30, 50)
    assert make_config("lt", parse_assignments(["milestones=()"])).milestones == ()
    with pytest.raises(BenchmarkError, match="milestones must be int"):
        make_config("lt", parse_assignments(["milestones=soon"]))


@pytest.mark.parametrize("world", [1, 2])
def test_repeated_instance_sampler_sees_each_clip_repeat_times(world):
    labels = np.repeat(np.arange(4), [7, 5, 3, 2])  # 17 clips
    n = len(labels)
    shards = [build_sampler("instance", labels, seed=4, rank=r, world_size=world, repeat=3)
              for r in range(world)]
    assert isinstance(shards[0], RepeatedSampler) and len(shards[0]) == -(-3 * n // world)
    for epoch in (0, 1):
        order = np.concatenate([s.indices(epoch) for s in shards])
        counts = Counter(order.tolist())
        assert set(counts) == set(range(n))  # positions of the subset, never beyond it
        pad = len(order) - 3 * n  # DistributedSampler-style wrap-around padding only
        assert sorted(counts.values()) == sorted([3] * (n - pad) + [4] * pad)
    one = build_sampler("instance", labels, seed=4)
    assert not isinstance(one, RepeatedSampler) and len(one) == n
    # the repeated order is the named sampler's order over the repeated dataset, mod n
    inner = build_sampler("instance", np.tile(labels, 3), seed=4)
    assert np.array_equal(build_sampler("instance", labels, seed=4, repeat=3).indices(1),
                          inner.indices(1) % n)
    with pytest.raises(ValueError, match="repeat"):
        build_sampler("instance", labels, repeat=0)


def test_repeated_class_samplers_keep_their_semantics():
    labels = np.repeat(np.arange(4), [7, 5, 3, 2])
    cb = build_sampler("class_balanced", labels, seed=1, repeat=3)
    assert len(cb) == 3 * len(labels)
    order = cb.indices(0)
    assert order.max() < len(labels)
    assert sorted(Counter(labels[order].tolist()).values()) == [12, 13, 13, 13]  # cyclic classes
    ros = build_sampler("ros", labels, seed=1, repeat=2)
    assert len(ros) == 2 * 4 * 7  # every class topped up to n_max on the repeated dataset
    assert Counter(labels[ros.indices(0)].tolist()) == {c: 14 for c in range(4)}


class Recorder(Method):
    """CE, recording the subset positions of every training batch."""

    def __init__(self):
        super().__init__()
        self.seen: list[int] = []

    def transform_batch(self, batch, model, ctx):
        self.seen += batch.index.tolist()
        return batch


def _trainer(tmp_path_factory, repeat: int):
    store = tiny_store(tmp_path_factory)
    spec = normalise(RunSpec(dataset=str(store), method="ce", imbalance=10, n_max=40,
                             profile="smoke",
                             train={"epochs": 1, "repeat": repeat, "drop_last": False,
                                    "max_steps_per_epoch": None, "max_test_clips": 12}))
    cfg = resolve_config(spec)
    return Trainer(spec, cfg, load_run_data(spec, cfg), torch.device("cpu"), method=Recorder())


def test_repeat_multiplies_the_steps_and_shows_each_clip_repeat_times(tmp_path_factory, one_thread):
    t1 = _trainer(tmp_path_factory, 1)
    n, b = len(t1.data.train_idx), t1.cfg.batch_size
    t1.close()
    t = _trainer(tmp_path_factory, 3)
    assert t.ctx.iters_per_epoch == -(-3 * n // b) > -(-n // b)
    t.fit()
    t.close()
    assert t.history[0]["steps"] == -(-3 * n // b)
    assert Counter(t.method.seen) == {p: 3 for p in range(n)}  # each clip exactly 3 times


def test_ucla_suites_use_the_ucla_schedule_and_say_so():
    assert DATA_PROFILES["ucla"].profile == "ucla" and DATA_PROFILES["ucla"].schedule_in_caption
    for suite in get_suites("all", "ucla"):
        assert suite.schedules == ("ucla",)
        assert all(c.spec.profile == "ucla" for c in suite.cells)
    cap = schedule_caption("ucla")
    assert "repeat 1 " in cap and "65 epochs" in cap and "batch 16" in cap and "fp32" in cap
    assert "x0.1 at epoch 50" in cap and "weight decay 0.0001" in cap
    assert "repeat 1 " in schedule_caption("smoke") and "bf16" in schedule_caption("smoke")


def test_every_ucla_table_caption_states_schedule_and_repeat():
    import pandas as pd

    from benchmark.report_tables import build_table

    tables = [s for s in get_suites("all", "ucla") if s.kind != "figure"]
    assert {s.name for s in tables} >= {"table1", "table3", "table4", "table7", "table8",
                                        "table9", "table10", "table11", "table12", "table13"}
    for suite in tables:
        cap = build_table(suite, {}, pd.DataFrame()).caption
        assert cap.endswith(schedule_caption("ucla")) and "repeat 1 (each training clip" in cap
    smoke = get_suites("table1", "ucla", profile="smoke")[0]  # a replaced schedule: stated
    assert build_table(smoke, {}, pd.DataFrame()).caption.endswith(schedule_caption("smoke"))
    synth = get_suites("table1", "synth")[0]  # other data profiles keep their captions
    assert "Schedule" not in build_table(synth, {}, pd.DataFrame()).caption
