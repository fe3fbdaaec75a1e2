"""fp32 unless asked (issue 14 item 2).

The paper profiles train in fp32 (``amp="off"``, as the official code); ``--set amp=bf16``
opts in. Whatever the training precision, the forwards that compute a method's own numbers
run in fp32: each such path is run inside ``torch.autocast("cpu", dtype=torch.bfloat16)``
(which does lower CTR-GCN's convolutions on CPU, checked first) and must give what it gives
outside autocast.
"""
from __future__ import annotations

import pytest
import torch

import methods  # noqa: F401
from benchmark.backbones.ctrgcn import CTRGCN
from benchmark.config import PROFILES, make_config
from benchmark.data.skeleton import get_layout
from benchmark.method import Context, build_method
from benchmark.shapley import coalition_values
from methods.fsa import grad_cam
from methods.shapmix import gradcam_joint_saliency

NTU = get_layout("ntu25")
C = 4


def _bf16():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def _ctx(seed: int = 0) -> Context:
    return Context(num_classes=C, class_counts=torch.tensor([40, 20, 12, 5]), total_epochs=10,
                   iters_per_epoch=1, device=torch.device("cpu"), seed=0, layout=NTU,
                   batch_size=6, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def model_and_batch():
    torch.manual_seed(0)
    model = CTRGCN(num_class=C, num_point=25, num_person=2, graph="ntu", base_channel=8)
    # BN running statistics of a few batches: eval-mode logits of a few units, so the
    # softmax values compared below are not saturated 0 / 1 at any precision
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # cumulative average
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(6, 3, 16, 25, 2))
    model.train()
    x = torch.randn(6, 3, 16, 25, 2)
    y = torch.tensor([0, 1, 2, 3, 1, 0])
    return model, x, y


def test_paper_profiles_train_in_fp32_unless_asked():
    for name in ("lt", "balanced", "ucla"):
        assert make_config(name).amp == "off", name
        assert make_config(name, {"amp": "bf16"}).amp == "bf16"
    for name in ("cpu", "quick", "smoke"):  # CPU-sized: the field default, ignored on CPU
        assert "amp" not in PROFILES[name] and make_config(name).amp == "bf16"


def test_cpu_autocast_does_lower_the_model(model_and_batch):
    model, x, _ = model_and_batch
    model.eval()
    with torch.no_grad():
        ref = model(x)
        with _bf16():
            low = model(x)
    model.train()
    assert low.dtype == torch.bfloat16 and not torch.equal(low.float(), ref)


def test_shapmix_estimator_is_fp32_under_autocast(model_and_batch):
    model, x, y = model_and_batch
    base = x.mean(0)
    out = []
    for autocast in (False, True):
        m = build_method("shap_mix")
        ctx = _ctx(seed=3)
        m.setup(ctx)
        m.epoch = 7  # past the warm-up: S is drawn, the EMA applies
        with _bf16() if autocast else torch.autocast("cpu", enabled=False):
            est = m.estimate(model, x, y, base, ctx)
        out.append((est, m.table.clone()))
    (a, ta), (b, tb) = out
    assert (a["T"], a["S"]) == (b["T"], b["S"]) and a["w"].abs().sum() > 0
    assert a["w"].dtype == torch.float32 and torch.equal(a["w"], b["w"]) and torch.equal(ta, tb)
    assert model.training  # eval mode only inside the estimator


def test_gradcam_guidance_is_fp32_under_autocast(model_and_batch):
    model, x, y = model_and_batch
    ref = gradcam_joint_saliency(model, x, y)
    with _bf16():
        got = gradcam_joint_saliency(model, x, y)
    assert got.dtype == torch.float32 and torch.equal(got, ref)
    assert all(p.grad is None for p in model.parameters())


def test_exact_shapley_values_are_fp32_under_autocast(model_and_batch):
    model, x, _ = model_and_batch
    base = x.mean(0)
    ref = coalition_values(model, x[:2], 1, base, NTU.parts, batch_size=16)
    with _bf16():
        got = coalition_values(model, x[:2], 1, base, NTU.parts, batch_size=16)
    assert torch.equal(got, ref) and 0.01 < float(ref.mean()) < 0.99


def test_fsa_statistics_and_cam_are_fp32_under_autocast(model_and_batch):
    model, x, y = model_and_batch
    sums = []
    for autocast in (False, True):
        m = build_method("fsa", {"tail_below": 15})
        ctx = _ctx()
        m.setup(ctx)
        with _bf16() if autocast else torch.autocast("cpu", enabled=False):
            m.observe(model, x, y, ctx)
        sums.append(m.acc["pass"]["sums"].clone())
    assert torch.equal(sums[0], sums[1]) and sums[0].sum() > 0
    model.eval()
    with torch.no_grad():
        a = model.features(x)
    ref = grad_cam(a, lambda f: model.head(model.pool(f)), y)
    with _bf16():
        got = grad_cam(a, lambda f: model.head(model.pool(f)), y)
        low = grad_cam(a.bfloat16(), lambda f: model.head(model.pool(f)), y)
    model.train()
    assert got.dtype == torch.float32 and torch.equal(got, ref)
    assert low.dtype == torch.float32  # a bf16 map (a bf16 training forward's) is read in fp32
