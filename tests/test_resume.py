"""Resume: a run killed with SIGKILL and re-run ends exactly like an uninterrupted one (CPU)."""
import io
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from benchmark.data.synth import load_synth
from benchmark.method import Method, Stage
from benchmark.runner import resolve_config, run
from benchmark.spec import RunSpec, load_run_data, normalise, resolve_run
from benchmark.train import Trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return load_synth(tmp_path_factory.getbasetemp() / "synth-cache", num_classes=6,
                      train_per_class=40, test_per_class=6, T=70)


def without_timing(final: dict) -> dict:
    return {k: v for k, v in final.items() if k != "timing"}


def epochs_without_seconds(path) -> list[dict]:
    return [{k: v for k, v in json.loads(x).items() if k != "seconds"}
            for x in path.read_text().splitlines()]


def test_sigkill_then_rerun_equals_uninterrupted(store, tmp_path):
    args = ["--dataset", str(store), "--method", "ce", "--imbalance", "10", "--n-max", "40",
            "--profile", "smoke", "--seed", "3", "--threads", "1", "--set", "window=32"]
    spec = normalise(RunSpec(dataset=str(store), method="ce", imbalance=10, n_max=40,
                             profile="smoke", seed=3, train={"window": 32}))
    # B: started as a user would, killed as soon as its first checkpoint exists
    out_b = tmp_path / "b"
    proc = subprocess.Popen([sys.executable, "-m", "benchmark", "train", *args, "--out", str(out_b)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_id = resolve_run(spec).run_id
    ckpt = out_b / run_id / "last.pt"
    deadline = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ckpt.exists(), "the run never wrote a checkpoint"
    assert not (out_b / run_id / "done").exists(), "killed too late: the run had finished"
    done_epochs = len(torch.load(ckpt, weights_only=True)["history"])
    assert 1 <= done_epochs < 3
    resumed = run(spec, out_b, threads=1)
    assert resumed.status == "finished"
    assert "resuming run" in (resumed.run_dir / "log.txt").read_text()
    # A: uninterrupted
    a = run(spec, tmp_path / "a", threads=1).run_dir
    b = resumed.run_dir
    fa, fb = (json.loads((d / "final.json").read_text()) for d in (a, b))
    assert without_timing(fa) == without_timing(fb)
    assert np.array_equal(np.load(a / "logits.npy"), np.load(b / "logits.npy"))
    assert epochs_without_seconds(a / "metrics.jsonl") == epochs_without_seconds(b / "metrics.jsonl")


# ------------------------------------------------------- in-process: stages, method state
class TwoStage(Method):
    """Not registered: exercises stages, a frozen trunk, a re-initialised head, a second
    sampler, method state and draws from ctx.generator, all of which resume must replay."""

    @dataclass(frozen=True)
    class HParams:
        pass

    def __init__(self):
        super().__init__()
        self.steps = 0

    def stages(self, ctx):
        return [Stage("train", epochs=2, warmup_epochs=1, milestones=(1,)),
                Stage("head", epochs=2, lr=0.01, warmup_epochs=0, milestones=(),
                      trainable=lambda name: name.startswith("fc."), sampler="class_balanced")]

    def on_stage_start(self, stage, model, ctx):
        if stage.name == "head":
            torch.nn.init.normal_(model.fc.weight, 0, 0.01)  # uses the global torch RNG

    def transform_batch(self, batch, model, ctx):
        noise = torch.randn(batch.x.shape, generator=ctx.generator) * 0.01
        batch.inputs = [batch.x + noise]
        return batch

    def after_step(self, model, batch, out, ctx):
        self.steps += 1

    def state_dict(self):
        return {"steps": torch.tensor(self.steps)}

    def load_state_dict(self, state):
        self.steps = int(state["steps"])


def _trainer(store):
    spec = normalise(RunSpec(dataset=str(store), method="ce", imbalance=10, n_max=40, profile="smoke",
                             seed=5, train={"max_steps_per_epoch": 2, "max_test_clips": 12,
                                            "window": 32}))
    cfg = resolve_config(spec)
    return Trainer(spec, cfg, load_run_data(spec, cfg), torch.device("cpu"), method=TwoStage())


def _roundtrip(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def test_resume_at_every_epoch_boundary_of_a_two_stage_method(store):
    full = _trainer(store)
    saved = []
    logits = full.fit(lambda t, rec: saved.append(_roundtrip(t.state_dict())))
    assert [h["stage"] for h in full.history] == [0, 0, 1, 1] and full.method.steps == 8
    for k in (1, 2, 3):  # mid stage 0, the stage boundary, mid stage 1
        t = _trainer(store)
        t.load_state_dict(saved[k - 1])
        assert np.array_equal(t.fit(), logits), f"resumed after epoch {k}"
        assert t.method.steps == 8
        strip = [{k2: v for k2, v in h.items() if k2 != "seconds"} for h in t.history]
        assert strip == [{k2: v for k2, v in h.items() if k2 != "seconds"} for h in full.history]
        t.close()
    full.close()


def _ce_trainer(store, **train):
    spec = normalise(RunSpec(dataset=str(store), method="ce", imbalance=10, n_max=40, profile="smoke",
                             seed=5, train={"max_steps_per_epoch": 2, "max_test_clips": 12,
                                            "window": 32, "epochs": 4, **train}))
    cfg = resolve_config(spec)
    return Trainer(spec, cfg, load_run_data(spec, cfg), torch.device("cpu"))


@pytest.mark.parametrize("every, tested", [(0, [4]), (2, [2, 4]), (3, [3, 4])])
def test_eval_every_tests_only_those_epochs_and_trains_the_same(store, every, tested):
    """eval_every skips the test pass of other epochs (empty metrics in their records); the
    training, the last epoch's logits and its metrics are those of evaluating every epoch;
    a run resumed after an untested epoch ends the same."""
    ref = _ce_trainer(store)
    saved = []
    ref_logits = ref.fit(lambda t, rec: saved.append(_roundtrip(t.state_dict())))
    t = _ce_trainer(store, eval_every=every)
    logits = t.fit()
    assert np.array_equal(logits, ref_logits)
    assert [h["global_epoch"] + 1 for h in t.history if h["top1"] is not None] == tested
    for h, r in zip(t.history, ref.history):
        assert h["loss"] == r["loss"]
        if h["top1"] is None:
            assert all(h[k] is None for k in ("top5", "many", "medium", "few"))
        else:
            assert h["top1"] == r["top1"] and h["few"] == r["few"]
    resumed = _ce_trainer(store, eval_every=every)
    state = _ce_trainer(store, eval_every=every)
    state.fit(lambda tr, rec: saved.append(_roundtrip(tr.state_dict())) if rec["global_epoch"] == 0 else None)
    resumed.load_state_dict(saved[-1])
    assert np.array_equal(resumed.fit(), ref_logits)
    for tr in (ref, t, resumed, state):
        tr.close()
