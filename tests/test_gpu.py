"""CUDA checks (marker ``gpu``; ``make test-gpu``). They skip without a CUDA device, so CI on
CPU never runs them; on a GPU machine they guard what the CPU suite cannot: the CUDA maths of
the backbone, bf16 autocast in the harness, the device-side batch transforms and
torch.compile on CUDA. Tolerances allow TF32 convolutions (cuDNN's default)."""
import copy
import os

import numpy as np
import pytest
import torch

from benchmark.backbones import build_backbone
from benchmark.data import transforms as TR
from benchmark.data.synth import load_synth
from benchmark.runner import resolve_config
from benchmark.spec import RunSpec, load_run_data, normalise
from benchmark.train import Trainer, compile_module

DEVICE = os.environ.get("BENCH_GPU_TEST_DEVICE", "cuda")  # "cpu" checks these tests' own logic
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(),
                                 reason="no CUDA device on this machine")]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    return ((a - b).norm() / b.norm()).item()


def _step(model, fwd, x, y):
    logits = fwd(x)
    torch.nn.functional.cross_entropy(logits, y).backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    stats = torch.cat([b.flatten() for k, b in model.named_buffers() if "running" in k])
    return logits.detach(), grads, stats


def test_ctrgcn_on_the_device_matches_fp64():
    torch.manual_seed(0)
    ref = build_backbone("ctrgcn", graph="ntu", in_channels=3, base_channel=16, num_class=60,
                         num_point=25, num_person=2).double()
    dev = copy.deepcopy(ref).float().to(DEVICE)
    x, y = torch.randn(8, 3, 64, 25, 2, dtype=torch.float64), torch.randint(0, 60, (8,))
    want = _step(ref, ref, x, y)
    got = _step(dev, dev, x.float().to(DEVICE), y.to(DEVICE))
    for g, w, tol in zip(got, want, (5e-3, 5e-2, 5e-3)):  # gradients: cancelling BN-bias sums
        assert _rel(g, w) < tol


def test_compile_on_the_device_is_as_accurate_as_eager():
    torch.manual_seed(0)
    ref = build_backbone("ctrgcn", graph="ntu", in_channels=3, base_channel=8, num_class=6,
                         num_point=25, num_person=2).double()
    eager, comp = copy.deepcopy(ref).float().to(DEVICE), copy.deepcopy(ref).float().to(DEVICE)
    x, y = torch.randn(16, 3, 32, 25, 2, dtype=torch.float64), torch.randint(0, 6, (16,))
    want = _step(ref, ref, x, y)
    xd, yd = x.float().to(DEVICE), y.to(DEVICE)
    e = _step(eager, eager, xd, yd)
    c = _step(comp, compile_module(comp), xd, yd)
    # the tolerances of the eager test above: a broken compile (lost BN update, wrong
    # gradient) is off by O(1); a ratio to eager's own error is no test (that error is luck)
    for ce, cc, w, tol in zip(e, c, want, (5e-3, 5e-2, 5e-3)):
        assert _rel(ce, w) < tol and _rel(cc, w) < tol


def test_test_transform_on_the_device_equals_cpu():
    """The deterministic test transform (crop 0.95 + resize) batched on the device."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, 120, 25, 2, generator=g)
    lengths = torch.tensor([120, 90, 64, 33, 100, 7])
    for i, L in enumerate(lengths.tolist()):
        x[i, :, L:] = 0
    tf = TR.test_transform("j", 64)
    cpu = tf(x, lengths, None)
    dev = tf(x.to(DEVICE), lengths.to(DEVICE), None)
    torch.testing.assert_close(dev.cpu(), cpu, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    return load_synth(tmp_path_factory.getbasetemp() / "synth-gpu", num_classes=6,
                      train_per_class=40, test_per_class=6, T=70)


@pytest.mark.parametrize("method", ["ce", "shap_mix"])
def test_bf16_autocast_training_tracks_fp32(tiny_store, method):
    """The harness on the device with amp=bf16 and amp=off: the same clips and draws, the
    first epoch's mean loss within bf16 rounding of fp32's, finite test logits."""
    out = {}
    for amp in ("off", "bf16"):
        spec = normalise(RunSpec(dataset=str(tiny_store), method=method, imbalance=10, n_max=40,
                                 profile="smoke", train={"epochs": 1, "max_steps_per_epoch": 2,
                                                         "max_test_clips": 12, "window": 32,
                                                         "amp": amp}))
        cfg = resolve_config(spec)
        trainer = Trainer(spec, cfg, load_run_data(spec, cfg), torch.device(DEVICE))
        logits = trainer.fit()
        trainer.close()
        out[amp] = (trainer.history[0]["loss"], logits, trainer.amp_dtype)
    assert out["off"][2] is None
    assert out["bf16"][2] == (torch.bfloat16 if DEVICE == "cuda" else None)
    assert np.isfinite(out["bf16"][1]).all()
    assert out["bf16"][0] == pytest.approx(out["off"][0], rel=0.03)
