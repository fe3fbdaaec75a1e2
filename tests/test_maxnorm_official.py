"""BS + MaxNorm as its official code (issue 14 item 4): ``ShadeAlsha/LTR-weight-balancing``.

demo1: stage 1 with the tuned weight decay 5e-3. demo2: stage 2 (fc only) with
``CosineAnnealingLR(opt, 10, eta_min=0)`` stepped at the START of every epoch
(``utils/trainval.py::train_model``), weight decay 0.1. Checked through the harness: what
reaches the SGD optimizer each epoch.
"""
from __future__ import annotations

import warnings

import pytest
import torch

import methods  # noqa: F401
from benchmark.config import cosine_lr_at
from benchmark.runner import resolve_config
from benchmark.spec import RunSpec, load_run_data, normalise
from benchmark.train import Trainer
from test_train import tiny_store


def official_stage_lrs(lr: float, epochs: int) -> list[float]:
    """The lr each epoch of ``train_model`` runs at: the scheduler steps before the epoch."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr, momentum=0.9, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs, eta_min=0)
    out = []
    with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": the quirk
        warnings.simplefilter("ignore")
        for _ in range(epochs):
            sched.step()
            out.append(opt.param_groups[0]["lr"])
    return out


def test_shifted_cosine_is_demo2s_scheduler():
    assert [cosine_lr_at(e, 0.01, 0, 10, shift=1) for e in range(10)] == pytest.approx(
        official_stage_lrs(0.01, 10), abs=1e-12)
    assert cosine_lr_at(9, 0.01, 0, 10, shift=1) == 0.0
    assert cosine_lr_at(0, 0.01, 0, 10, shift=0) == 0.01  # "cosine": the peak first


def test_bs_maxnorm_stages_reach_the_optimizer(tmp_path_factory, one_thread):
    store = tiny_store(tmp_path_factory)
    # smoke: 3 epochs at batch 16; stage2_frac 1 gives a 3-epoch classifier stage
    spec = normalise(RunSpec(dataset=str(store), method="bs_maxnorm", imbalance=10, n_max=40,
                             profile="smoke", hparams={"stage2_frac": 1.0},
                             train={"max_steps_per_epoch": 1, "max_test_clips": 12}))
    cfg = resolve_config(spec)
    t = Trainer(spec, cfg, load_run_data(spec, cfg), torch.device("cpu"))
    seen = []
    t.fit(lambda tr, rec: seen.append((rec["stage_name"], [(g["lr"], g["weight_decay"])
                                                           for g in tr.optimizer.param_groups])))
    t.close()
    stage1 = [s for s in seen if s[0] == "feature"]
    stage2 = [s for s in seen if s[0] == "classifier"]
    assert len(stage1) == 3 and len(stage2) == 3
    assert all(wd == 5e-3 for _, groups in stage1 for _, wd in groups)  # demo1's tuned decay
    assert all(wd == 0.1 for _, groups in stage2 for _, wd in groups)   # demo2's
    lr2 = 0.01 * cfg.batch_size / 64
    assert [g[0][0] for _, g in stage2] == pytest.approx(official_stage_lrs(lr2, 3), abs=1e-12)
    assert stage2[-1][1][0][0] == 0.0  # the last epoch at lr 0, as official
