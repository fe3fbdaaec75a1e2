"""RIDE on a backbone with its own training objective (InfoGCN's latent-vs-prior ``aux_losses``):
every expert has its own latent head, and the harness adds the SUM over experts of their terms
(``RIDEModel.aux_losses``), neither dropped nor counted once or averaged."""
import numpy as np
import pytest
import torch

import methods  # noqa: F401  (registers every method)
from benchmark.backbones import build_backbone
from benchmark.backbones.infogcn import latent_prior_terms
from benchmark.data.synth import load_synth
from benchmark.method import Batch
from benchmark.runner import resolve_config
from benchmark.spec import RunSpec, load_run_data, normalise
from benchmark.train import Trainer, add_aux_losses
from methods.ride import RIDEModel

KW = dict(num_class=6, num_point=25, num_person=2, graph="ntu", in_channels=3, base_channel=8)


def make() -> torch.nn.Module:
    return build_backbone("infogcn", **KW)


def by_hand(z: torch.Tensor, y: torch.Tensor, head) -> torch.Tensor:
    """One InfoGCN's weighted aux terms (official main.py): lambda_2 MMD + lambda_1 |mean z|."""
    mmd, norm = latent_prior_terms(z, y, head.z_prior)
    return head.lambda_2 * mmd + head.lambda_1 * norm


@pytest.mark.parametrize("experts,reduce", [(1, False), (3, True)])
def test_ride_sums_each_experts_infogcn_aux_terms(experts, reduce):
    torch.manual_seed(0)
    model = RIDEModel(make(), 6, experts, 4, reduce, 30.0, make).train()
    heads = [e.head for e in model.experts]
    assert all(h is not None and callable(h.aux_losses) for h in heads)
    x, y = torch.randn(4, 3, 16, 25, 2), torch.tensor([0, 1, 1, 5])
    logits, _ = model.expert_outputs(x)
    assert logits.shape == (experts, 4, 6)
    zs = [h._pending[-1] for h in heads]  # each expert's latent of this forward
    assert [len(h._pending) for h in heads] == [1] * experts
    expected = sum(by_hand(z, y, h) for z, h in zip(zs, heads))
    logs = {}
    total = add_aux_losses(model, Batch(x=x, y=y, index=torch.arange(4)), 6, torch.zeros(()), logs)  # the harness path
    assert set(logs) == {"infogcn_mmd", "infogcn_z_mean"}
    assert torch.allclose(total, expected, rtol=1e-6, atol=0)
    assert float(total.detach()) > 0
    if experts > 1:  # not one expert's terms, not their mean
        assert not torch.allclose(total, by_hand(zs[0], y, heads[0]), rtol=1e-3)
        assert not torch.allclose(total, expected / experts, rtol=1e-3)
    # consumed: a second call (no forward in between) adds nothing
    assert add_aux_losses(model, Batch(x=x, y=y, index=torch.arange(4)), 6, torch.zeros(()), {}) == 0
    # the gradient of the aux part reaches every expert's latent layers
    model.zero_grad()
    model.expert_outputs(x)
    sum(model.aux_losses(y).values()).backward()
    for h in heads:
        assert h.fc_mu.weight.grad is not None and h.fc_mu.weight.grad.abs().sum() > 0


def test_ride_with_one_expert_has_a_single_infogcns_aux_terms():
    """1 full-width expert = one InfoGCN: its aux terms are exactly those the plain backbone's
    ``aux_losses`` computes from the same latent (same rule, same weights), i.e. CE's aux part."""
    torch.manual_seed(0)
    model = RIDEModel(make(), 6, 1, 4, False, 30.0, make).train()
    plain = make().train()
    x, y = torch.randn(4, 3, 16, 25, 2), torch.tensor([2, 2, 3, 4])
    model.expert_outputs(x)
    head = model.experts[0].head
    z = head._pending[-1]
    ride_terms = model.aux_losses(y)
    plain.z_prior.copy_(head.z_prior)
    plain._pending = [z]  # the plain model's aux_losses on the same latent
    plain_terms = plain.aux_losses(y)
    assert ride_terms.keys() == plain_terms.keys()
    for k in plain_terms:
        assert torch.equal(ride_terms[k], plain_terms[k]), k


def test_ride_on_infogcn_trains_with_the_aux_terms_in_the_loss(tmp_path):
    store = load_synth(tmp_path / "synth-cache", num_classes=6, train_per_class=40,
                       test_per_class=6, T=40)
    spec = normalise(RunSpec(dataset=str(store), method="ride", imbalance=10, n_max=40,
                             profile="smoke", backbone="infogcn",
                             train={"epochs": 1, "max_steps_per_epoch": 1, "max_test_clips": 6,
                                    "window": 16, "base_channel": 8}))
    cfg = resolve_config(spec)
    torch.manual_seed(0)
    trainer = Trainer(spec, cfg, load_run_data(spec, cfg), torch.device("cpu"))
    try:
        logits = trainer.fit()
    finally:
        trainer.close()
    assert np.isfinite(logits).all()
    terms = trainer.history[0]["loss_terms"]
    assert terms["infogcn_mmd"] > 0 and terms["infogcn_z_mean"] > 0
    # every trainable parameter took part in the step: the trunk's own latent head (unused once
    # the experts have theirs) is gone, not left to weight decay (and to DDP's unused-parameter
    # error)
    idle = [n for n, p in trainer.model.named_parameters() if p.requires_grad and p.grad is None]
    assert idle == []
    assert not any(n.startswith(("trunk.fc_hidden", "trunk.fc_mu", "trunk.fc_logvar"))
                   for n, _ in trainer.model.named_parameters())


@pytest.mark.parametrize("backbone", ["ctrgcn", "infogcn"])
def test_ride_replaces_every_head_module_of_the_trunk(backbone):
    """The contract's ``head_names`` (InfoGCN: hidden, mu, logvar, fc) all become identities in
    RIDE's trunk; the trunk's feature path is untouched."""
    from benchmark.backbones import head_names
    torch.manual_seed(0)
    kw = dict(KW, base_channel=8 if backbone == "infogcn" else 16)
    plain = build_backbone(backbone, **kw)
    names = head_names(plain)
    assert names == (("fc_hidden", "fc_mu", "fc_logvar", "fc") if backbone == "infogcn" else ("fc",))
    model = RIDEModel(build_backbone(backbone, **kw), 6, 2, 4, False, 30.0,
                      lambda: build_backbone(backbone, **kw))
    assert all(isinstance(getattr(model.trunk, n), torch.nn.Identity) for n in names)
