"""Kinetics-400 as Shap-Mix trains on it: the ``k400`` schedule (per-iteration cosine), PYSKL's
uniform frame sampling (train, the official random test clip, PYSKL's test clips), a short run
end to end on a generated K400-format store, and the ``table2`` suite."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

import methods  # noqa: F401  (registers the methods)
from benchmark.config import PROFILES, config_dict, make_config
from benchmark.data import pyskl_transforms as PT
from benchmark.data.loader import BatchLoader
from benchmark.data.pyskl import import_pyskl
from benchmark.data.store import open_store
from benchmark.errors import BenchmarkError
from benchmark.runner import resolve_config, run
from benchmark.spec import RunSpec, load_run_data, normalise
from benchmark.suites import PAPER_TABLE2, get_suites
from benchmark.train import Trainer, cosine_iter_lr_at
from conftest import run_cli
from test_pyskl import k400_annotations


@pytest.fixture(scope="module")
def k400_root(tmp_path_factory):
    """A data root holding a small K400-format store ``k400`` (5 classes used of 400)."""
    root = tmp_path_factory.mktemp("k400root")
    anns = k400_annotations(np.random.default_rng(7), n=60, classes=5)
    names = [a["frame_dir"] for a in anns]
    path = root / "k400_hrnet.pkl"
    path.write_bytes(pickle.dumps(dict(split=dict(train=names[:45], val=names[45:]),
                                       annotations=anns), protocol=2))
    import_pyskl(path, root / "k400", progress=False)
    return root


# ------------------------------------------------------------------ schedule
def test_k400_profile_is_shapmix_kinetics_config():
    c = make_config("k400")
    assert (c.epochs, c.batch_size, c.lr, c.weight_decay, c.warmup_epochs, c.nesterov, c.window) \
        == (70, 80, 0.1, 5e-4, 5, True, 100)
    assert (c.schedule, c.min_lr_ratio, c.test_clips, c.amp) == ("cosine_iter", 0.001, 0, "off")
    assert make_config("k400", {"batch_size": 40}).lr == pytest.approx(0.05)  # linear scaling


def test_cosine_iter_lr_values():
    lr = lambda e, s: cosine_iter_lr_at(e, s, 10, 0.1, 5, 70, 0.001)  # 10 iterations an epoch
    assert [lr(e, 9) for e in range(5)] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])
    assert lr(5, 0) == pytest.approx(0.1)
    assert lr(5, 1) == pytest.approx(0.09999941658487556, rel=1e-12)
    assert lr(37, 5) == pytest.approx(0.05005, rel=1e-12)      # half way: (lr + eta) / 2
    assert lr(69, 9) == pytest.approx(0.0001005834151244421, rel=1e-12)  # -> 0.001 lr


def test_added_fields_keep_earlier_run_ids():
    for name in PROFILES:
        d = config_dict(make_config(name))
        assert ("schedule" in d) == (name == "k400") and ("test_clips" in d) is False
    assert config_dict(make_config("lt", {"test_clips": 10}))["test_clips"] == 10
    with pytest.raises(BenchmarkError, match="schedule must be one of"):
        make_config("lt", {"schedule": "poly"})


def test_trainer_sets_the_lr_every_iteration(k400_root, monkeypatch):
    spec = normalise(RunSpec(dataset=str(k400_root / "k400"), method="ce", profile="k400",
                             train={"epochs": 3, "warmup_epochs": 1, "batch_size": 8,
                                    "base_channel": 8, "window": 16, "eval_every": 0}))
    cfg = resolve_config(spec)
    trainer = Trainer(spec, cfg, load_run_data(spec, cfg), torch.device("cpu"))
    seen = []
    step = torch.optim.SGD.step
    monkeypatch.setattr(torch.optim.SGD, "step", lambda self, *a, **k: (
        seen.append(self.param_groups[0]["lr"]), step(self, *a, **k))[1])
    trainer.fit()
    trainer.close()
    n = trainer.ctx.iters_per_epoch
    peak = 0.1 * 8 / 80
    want = [cosine_iter_lr_at(e, s, n, peak, 1, 3, 0.001) for e in range(3) for s in range(n)]
    assert seen == pytest.approx(want, rel=1e-12) and len(set(seen[n:])) == 2 * n


# ------------------------------------------------------------------ frame sampling
def test_pyskl_test_clips_are_the_official_ones():
    """Reference values of PYSKL's ``UniformSampleFrames._get_test_clips`` (seed 255), run from
    the official source for these inputs; equal for every length 1..399 at W 16 and 100."""
    assert PT.test_indices(7, 16, 3).tolist() == [
        [0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 5, 6, 0, 1], [2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3],
        [4, 5, 6, 0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 5]]
    assert PT.test_indices(20, 16, 2).tolist() == [
        [0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 17, 18],
        [0, 1, 3, 4, 5, 7, 8, 10, 11, 12, 13, 14, 15, 16, 18, 19]]
    assert PT.test_indices(40, 16, 2).tolist() == [
        [1, 3, 5, 8, 11, 12, 16, 18, 20, 22, 26, 27, 30, 34, 36, 38],
        [1, 2, 5, 9, 10, 14, 16, 17, 20, 22, 25, 27, 31, 32, 36, 39]]


def test_train_sampling_follows_uniform_sample_frames():
    W = 16
    lengths = torch.tensor([5, 16, 20, 31, 32, 45, 300])
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        u = torch.rand(len(lengths), W + 1, generator=g, dtype=torch.float64)
        inds = PT.train_indices(lengths, W, u)
        for L, row in zip(lengths.tolist(), inds.tolist()):
            if L < W:    # the clip looped from a random start
                assert row == [(row[0] + k) % L for k in range(W)]
            elif L < 2 * W:  # increasing, L - W gaps of one frame skipped
                steps = np.diff(row)
                assert set(steps) <= {1, 2} and row[0] <= 1 and row[-1] <= L - 1
                assert (steps == 2).sum() + row[0] + (L - 1 - row[-1]) == L - W
            else:        # one frame in each segment [i L // W, (i + 1) L // W)
                assert all(i * L // W <= f < (i + 1) * L // W for i, f in enumerate(row))
    # every frame of a W <= L < 2W clip is reachable
    u = torch.rand(4000, W + 1, generator=g, dtype=torch.float64)
    assert set(PT.train_indices(torch.full((4000,), 20), W, u).unique().tolist()) == set(range(20))


def test_official_random_test_clip_is_keyed_by_row_not_batch(k400_root):
    s = open_store(k400_root / "k400")
    tf = PT.UniformSampleTransform(16, train=False, seed=3)
    rows = np.arange(len(s))

    def clips(batch: int) -> torch.Tensor:
        loader = BatchLoader(s, rows, batch, transform=tf)
        return torch.cat([x for x, _, _ in loader])

    a, b = clips(4), clips(7)
    assert a.shape == (len(s), 3, 16, 17, 2) and torch.equal(a, b)
    other = torch.cat([x for x, _, _ in BatchLoader(s, rows, 4, transform=PT.UniformSampleTransform(
        16, train=False, seed=4))])
    assert not torch.equal(a, other)  # another seed, other random clips


def test_pyskl_test_mode_stacks_clips_and_scores_average_probabilities(k400_root):
    s = open_store(k400_root / "k400")
    x, _, _ = next(iter(BatchLoader(s, np.arange(5), 5, transform=PT.UniformSampleTransform(
        16, train=False, test_clips=3))))
    assert x.shape == (3, 5, 3, 16, 17, 2)
    L = int(s.lengths[0])
    np.testing.assert_array_equal(x[1, 0].numpy(), s.data[0][:, PT.test_indices(L, 16, 3)[1]])


def test_coco_streams_average_scores():
    x = torch.arange(2 * 3 * 4 * 17 * 2, dtype=torch.float32).reshape(2, 3, 4, 17, 2)
    b = PT.coco_features(x, "b")
    assert torch.equal(b[:, :2, :, 13], x[:, :2, :, 13] - x[:, :2, :, 11])     # knee - hip
    assert torch.equal(b[:, 2, :, 13], (x[:, 2, :, 13] + x[:, 2, :, 11]) / 2)  # mean score
    jm = PT.coco_features(x, "jm")
    assert torch.equal(jm[:, :2, :-1], x[:, :2, 1:] - x[:, :2, :-1]) and not jm[:, :, -1].any()
    assert torch.equal(jm[:, 2, :-1], (x[:, 2, 1:] + x[:, 2, :-1]) / 2)


# ------------------------------------------------------------------ end to end and the suite
def test_k400_runs_end_to_end_with_both_test_modes(k400_root, tmp_path):
    base = {"epochs": 1, "warmup_epochs": 0, "batch_size": 8, "base_channel": 8, "window": 16}
    for clips in (0, 3):
        spec = RunSpec(dataset=str(k400_root / "k400"), method="ce", profile="k400",
                       train={**base, "test_clips": clips})
        res = run(spec, tmp_path, threads=1)
        assert (res.run_dir / "done").exists()
        logits = np.load(res.run_dir / "logits.npy")
        assert logits.shape == (15, 400) and np.isfinite(logits).all()
        if clips:  # log of the mean softmax: a probability vector in log space
            assert np.exp(logits).sum(1) == pytest.approx(1.0, rel=1e-4)
    ntu = [dict(frame_dir=f"S001C001P00{i}R001A001", label=0, total_frames=4,
                keypoint=np.ones((1, 4, 25, 3), np.float32)) for i in (1, 3)]
    (tmp_path / "ntu60_3danno.pkl").write_bytes(pickle.dumps(dict(
        split={"xsub_train": [ntu[0]["frame_dir"]], "xsub_val": [ntu[1]["frame_dir"]]}, annotations=ntu)))
    import_pyskl(tmp_path / "ntu60_3danno.pkl", tmp_path / "ntu", progress=False)
    spec = RunSpec(dataset=str(tmp_path / "ntu"), method="ce", profile="smoke", train={"test_clips": 2})
    with pytest.raises(BenchmarkError, match="PYSKL's test clips are for COCO-17 stores; .* is ntu25"):
        load_run_data(spec, resolve_config(spec))


def test_table2_suite(k400_root):
    (t,) = get_suites("all", "k400")
    assert t.name == "table2" and t.cols == ("Kinetics-400",)
    assert {c.spec.method for c in t.cells} == {"ce", "brl", "glmc", "shap_mix"}
    assert all(c.spec.profile == "k400" and c.spec.dataset == "k400" for c in t.cells)
    shap = next(c for c in t.cells if c.spec.method == "shap_mix")
    assert shap.spec.hparams == {"naive_estimate_epoch": 5, "naive_mix_epoch": 5}  # official 5
    assert "PoseConv3D" in t.rows and not any(c.row == "PoseConv3D" for c in t.cells)
    assert sorted(t.published.values()) == sorted(PAPER_TABLE2.values())
    with pytest.raises(BenchmarkError, match="do not run on data profile k400"):
        get_suites("table1", "k400")
    (syn,) = get_suites("table2", "synth")
    assert not syn.published and "Runs on Synth-LT (the paper: Kinetics-400)." in syn.notes
    p = run_cli("sweep", "list", "--data", "k400", "--suite", "table2", "--data-root", k400_root)
    assert p.returncode == 0, p.stderr
    assert "12 run(s) in table2" in p.stdout and all(m in p.stdout for m in ("ce", "brl", "glmc", "shap_mix"))
