"""Every registered backbone keeps the backbone contract, and every method trains one smoke step
on every backbone (issue 15: methods use the contract, never one backbone's internals)."""
import numpy as np
import pytest
import torch

import methods  # noqa: F401  (registers every method)
from benchmark.backbones import BACKBONES, build_backbone, is_classifier
from benchmark.data.synth import load_synth
from benchmark.method import METHODS
from benchmark.runner import resolve_config
from benchmark.spec import RunSpec, load_run_data, normalise
from benchmark.train import Trainer


def close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-4) -> bool:
    """Equal up to fp32 rounding at the tensors' scale (eval fast paths sum in another order)."""
    return a.shape == b.shape and float((a - b).abs().max()) <= rel * max(1.0, float(b.abs().max()))


def _small(name: str, **kw):
    """The backbone at the narrowest width it accepts (CPU-sized; the contract is the same)."""
    for width in (8, 16, 64):
        try:
            return build_backbone(name, base_channel=width, **kw), width
        except Exception as e:  # a backbone that fixes its width says so; try the next
            last = e
    raise last


@pytest.mark.parametrize("name", BACKBONES.names())
def test_backbone_contract(name):
    torch.manual_seed(0)
    model, _ = _small(name, num_class=6, num_point=25, num_person=2, graph="ntu", in_channels=3)
    model.eval()
    x = torch.randn(3, 3, 16, 25, 2)
    with torch.no_grad():
        fmap = model.features(x)
        h = model.stem(x)
        for block in model.blocks():
            h = block(h)
        logits, feat = model(x, return_feat=True)
        assert fmap.shape[:2] == (3, 2) and fmap.shape[-1] == 25
        assert close(h.view(3, 2, *h.shape[1:]), fmap)
        assert feat.shape == (3, model.feat_dim) and logits.shape == (3, 6)
        assert close(model.pool(fmap), feat)
        assert close(model.head(feat), logits)
    assert len(model.block_names()) == len(model.blocks())
    assert all(getattr(model, n) is b for n, b in zip(model.block_names(), model.blocks()))
    assert isinstance(model.fc, torch.nn.Linear) and model.fc.in_features == model.feat_dim
    fc_params = {n for n, _ in model.named_parameters() if is_classifier(n)}
    assert fc_params == {"fc.weight", "fc.bias"}
    assert all(getattr(model, a) is not None for a in ("num_class", "num_point", "num_person", "graph"))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return load_synth(tmp_path_factory.getbasetemp() / "synth-cache", num_classes=6,
                      train_per_class=40, test_per_class=6, T=40)


@pytest.mark.parametrize("backbone", BACKBONES.names())
@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_trains_a_step_on_every_backbone(method, backbone, store):
    _, width = _small(backbone, num_class=6, num_point=25, num_person=2, graph="ntu", in_channels=3)
    spec = normalise(RunSpec(dataset=str(store), method=method, imbalance=10, n_max=40,
                             profile="smoke", backbone=backbone,
                             train={"epochs": 1, "max_steps_per_epoch": 1, "max_test_clips": 6,
                                    "window": 16, "base_channel": width}))
    cfg = resolve_config(spec)
    torch.manual_seed(0)
    trainer = Trainer(spec, cfg, load_run_data(spec, cfg), torch.device("cpu"))
    try:
        before = [p.detach().clone() for p in trainer.model.parameters()]
        logits = trainer.fit()
    finally:
        trainer.close()
    assert logits.shape == (6, 6) and np.isfinite(logits).all()
    assert sum(s["steps"] for s in trainer.history) >= 1
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters())), \
        f"{method} on {backbone}: no parameter changed"
    # every trainable parameter took part in the last step (DDP refuses unused ones; a module
    # the method replaced but left in the model would only decay)
    idle = [n for n, p in trainer.model.named_parameters() if p.requires_grad and p.grad is None]
    assert not idle, f"{method} on {backbone}: trainable parameters without a gradient: {idle[:6]}"
