"""InfoGCN backbone (benchmark/backbones/infogcn.py): shapes, contract, official names and
parameter counts, graphs, the latent-vs-prior ``aux_losses`` and the harness adding them to
every method's loss, and golden outputs of the official code (tests/golden/infogcn_*.npy, from
``scripts/check_infogcn_official.py --write-golden``) so equivalence is checked without it."""
import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark.backbones import build_backbone, is_classifier
from benchmark.backbones.graph import INFOGCN_EDGES, infogcn_outward
from benchmark.backbones.infogcn import (MAX_PENDING, SAGC, InfoGCN, latent_prior_terms,
                                         load_official_state_dict)
from benchmark.data.skeleton import LAYOUTS
from benchmark.data.synth import load_synth
from benchmark.errors import BenchmarkError
from benchmark.method import Batch, Target
from benchmark.runner import resolve_config
from benchmark.spec import RunSpec, load_run_data, normalise
from benchmark.train import Trainer, add_aux_losses
from conftest import load_script

GOLDEN = Path(__file__).parent / "golden"
KW = dict(num_class=6, num_point=25, num_person=2, graph="ntu", in_channels=3)


def tiny(**kw) -> InfoGCN:
    torch.manual_seed(0)
    return build_backbone("infogcn", **{**KW, "base_channel": 8, **kw})


# ----------------------------------------------------------------------------- shapes, contract
def test_shapes_and_contract():
    m = tiny()
    x = torch.randn(3, 3, 16, 25, 2)
    m.eval()
    with torch.no_grad():
        fmap = m.features(x)
        logits, feat = m(x, return_feat=True)
        assert fmap.shape == (3, 2, 32, 4, 25) and feat.shape == (3, m.feat_dim) == (3, 32)
        assert logits.shape == (3, 6)
        z, mu, _ = m.latent(feat)
        assert torch.equal(z, mu) and torch.allclose(m.fc(mu), logits)  # eval: the mean, no noise
        assert torch.equal(m(x), logits)
    m.train()
    with torch.no_grad():  # training: z = mu + noise, a new draw every time
        assert not torch.equal(m.head(feat), m.head(feat))
    assert m.stem(x).shape == (6, 8, 16, 25) and len(m.blocks()) == len(m.block_names()) == 9
    assert {n for n, _ in m.named_parameters() if is_classifier(n)} == {"fc.weight", "fc.bias"}
    assert m.fc.weight.shape == (6, 32) and m.fc_hidden.weight.shape == (32, 32)


def test_state_dict_speaks_the_official_names():
    m = tiny()
    sd = m.state_dict()
    assert sd["fc.weight"] is not None and sd["fc.weight"].shape == (32, 32)   # official hidden fc
    assert sd["decoder.weight"].shape == (6, 32)                               # official classifier
    assert not any(k.startswith("fc_hidden") for k in sd)
    assert "z_prior" not in sd and "A_vector" not in sd  # plain tensors in the official model
    assert list(sd)[0] == "pos_embedding" and list(sd)[-2:] == ["decoder.weight", "decoder.bias"]
    assert torch.equal(sd["fc.weight"], m.fc_hidden.weight) and torch.equal(sd["decoder.bias"], m.fc.bias)
    other = tiny()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1)
    load_official_state_dict(other, {"module." + k: v for k, v in sd.items()})
    assert all(torch.equal(a, b) for a, b in zip(m.parameters(), other.parameters()))
    with pytest.raises(BenchmarkError, match="missing key"):
        load_official_state_dict(other, {k: v for k, v in sd.items() if k != "decoder.bias"})

    class Wrapper(torch.nn.Module):  # a method's wrapper: the renaming works under a prefix
        def __init__(self):
            super().__init__()
            self.backbone, self.fc_cb = tiny(), torch.nn.Linear(32, 6)

    w, w2 = Wrapper(), Wrapper()
    wsd = w.state_dict()
    assert "backbone.decoder.weight" in wsd and wsd["backbone.fc.weight"].shape == (32, 32)
    assert "fc_cb.weight" in wsd
    w2.load_state_dict(wsd, strict=True)
    assert torch.equal(w2.backbone.fc.weight, w.backbone.fc.weight)


def test_parameter_counts_are_the_official_ones():
    # measured on the official model/infogcn.py (scripts/check_infogcn_official.py): 1,572,227
    # on NTU-120 (the published count), 1,556,807 on NTU-60
    for classes, count in ((120, 1_572_227), (60, 1_556_807)):
        m = build_backbone("infogcn", num_class=classes, num_point=25, num_person=2, graph="ntu")
        assert sum(p.numel() for p in m.parameters()) == count


def test_graphs_and_bad_arguments():
    for graph, v, m in (("ntu", 25, 2), ("ucla", 20, 1)):
        model = tiny(graph=graph, num_point=v, num_person=m)
        with torch.no_grad():
            assert model.eval()(torch.randn(2, 3, 8, v, m)).shape == (2, 6)
        # InfoGCN's trees span the layouts' skeletons (same undirected edges)
        assert {frozenset(e) for e in INFOGCN_EDGES[model.graph]} == \
               {frozenset(e) for e in LAYOUTS[model.graph].edges}
    # k = 1 on NTU: every joint relative to its parent; joint 2 (spine mid) is the root
    a = tiny().A_vector
    assert torch.equal(a.diagonal(), torch.ones(25)) and a[1].abs().sum() == 1
    assert a[0, 1] == -1 and a[20, 1] == -1 and a[21, 22] == -1  # 1 <- 2, 21 <- 2, 22 <- 23
    assert (a.sum(1)[torch.arange(25) != 1] == 0).all()
    assert torch.equal(tiny(k=2).A_vector, torch.eye(25) - torch.from_numpy(infogcn_outward("ntu")) @
                       torch.from_numpy(infogcn_outward("ntu")))
    with pytest.raises(BenchmarkError, match="no graph 'coco17'"):
        tiny(graph="coco17", num_point=17)
    with pytest.raises(BenchmarkError, match="25 joints, num_point=20"):
        tiny(num_point=20)
    with pytest.raises(BenchmarkError, match="base_channel must be a multiple of 8"):
        tiny(base_channel=12)
    with pytest.raises(BenchmarkError, match="k must be an integer >= 1"):
        tiny(k=0)


def official_sagc(g: SAGC, x: torch.Tensor) -> torch.Tensor:
    """The official SA_GC.forward, head by head."""
    n, c, t, v = x.shape
    attn = g.attn(x.permute(0, 2, 3, 1).contiguous()) * g.shared_topology
    feature = x.permute(0, 2, 3, 1).reshape(n * t, v, c)
    out = None
    for i in range(g.num_head):
        z = g.conv_d[i]((attn[:, i] @ feature).view(n, t, v, -1).permute(0, 3, 1, 2))
        out = z if out is None else out + z
    return F.relu(g.bn(out) + (x if g.down is None else g.down(x)))


def test_batched_sagc_is_the_official_formula():
    torch.manual_seed(0)
    a = torch.eye(25).repeat(3, 1, 1) + 0.1 * torch.randn(3, 25, 25)
    for c_in, c_out in ((16, 16), (16, 32)):
        g = SAGC(c_in, c_out, a).double()
        with torch.no_grad():
            g.bn.weight.fill_(0.7)  # official 1e-6 would hide the aggregation
        x = torch.randn(2, c_in, 5, 25, dtype=torch.float64)
        g.eval()
        assert torch.allclose(g(x), official_sagc(g, x), atol=1e-12)


def test_copies_and_resume_rebuild_the_prior():
    m = tiny()
    m.train()
    m(torch.randn(2, 3, 8, 25, 2))  # a pending latent with its graph
    c = copy.deepcopy(m)            # copies never carry it
    assert c._pending == [] and len(m._pending) == 1
    # z_prior is a function of the init seed (not saved), as official
    assert torch.equal(tiny().z_prior, tiny().z_prior)
    assert torch.allclose(m.z_prior @ m.z_prior.t(), 9 * torch.eye(6), atol=1e-4)  # gain 3


# ----------------------------------------------------------------------------- aux_losses
def test_latent_prior_terms_hand_computed():
    z = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    prior = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    # class means (2, 3) and (5, 6) vs priors (0, 0) and (1, 1); class 2 absent; mean z (3, 4)
    mmd, norm = latent_prior_terms(z, torch.tensor([0, 0, 1]), prior)
    assert mmd.item() == pytest.approx((4 + 9 + 16 + 25) / 4) and norm.item() == pytest.approx(5)
    onehot = F.one_hot(torch.tensor([0, 0, 1]), 3).float()  # soft one-hot = hard
    assert latent_prior_terms(z, onehot, prior)[0].item() == pytest.approx(13.5)
    # soft: label-weighted class means, class 0: (1 z0 + .5 z1) / 1.5, class 1: (.5 z1 + z2) / 1.5
    soft = torch.tensor([[1.0, 0, 0], [0.5, 0.5, 0], [0, 1.0, 0]])
    want = ((5 / 3) ** 2 + (8 / 3) ** 2 + (13 / 3 - 1) ** 2 + (16 / 3 - 1) ** 2) / 4
    assert latent_prior_terms(z, soft, prior)[0].item() == pytest.approx(want)


def official_formula(z, z_prior, y, num_cls):
    """stnoah1/infogcn loss.get_mmd_loss, restated with loops (hard labels)."""
    present = [c for c in range(num_cls) if (y == c).any()]
    means = torch.stack([z[y == c].mean(0) for c in present])
    return ((means - z_prior[present]) ** 2).mean(), z.mean(0).norm()


def test_aux_losses_match_the_official_formula_on_a_training_forward():
    m = tiny(lambda_1=0.3, lambda_2=0.7)
    m.train()
    x, y = torch.randn(5, 3, 8, 25, 2), torch.tensor([0, 2, 2, 5, 0])
    torch.manual_seed(3)
    m(x)
    got = m.aux_losses(y)
    assert set(got) == {"infogcn_mmd", "infogcn_z_mean"} and got["infogcn_mmd"].requires_grad
    # the same latent again: features draw nothing random, eps is the next draw after seeding
    torch.manual_seed(3)
    with torch.no_grad():
        z = m.latent(m.pool(m.features(x)))[0]
    mmd, norm = official_formula(z, m.z_prior, y, 6)
    assert got["infogcn_mmd"].item() == pytest.approx(0.7 * mmd.item(), rel=1e-5)
    assert got["infogcn_z_mean"].item() == pytest.approx(0.3 * norm.item(), rel=1e-5)
    assert m.aux_losses(y) == {}  # consumed


def test_aux_losses_bookkeeping():
    m = tiny()
    x, y = torch.randn(2, 3, 8, 25, 2), torch.tensor([1, 4])
    m.eval()
    m(x)
    assert m.aux_losses(y) == {}  # eval forwards (official: z = mu) record nothing
    m.train()
    with torch.no_grad():
        m(x)
    assert m.aux_losses(y) == {}  # nor do forwards without gradients
    m(x), m(x)                    # two forwards of one step (GLMC: one per mixed input)
    assert torch.isfinite(m.aux_losses(torch.cat([y, y]))["infogcn_mmd"])
    m(torch.cat([x, x, x]))       # one forward over stacked views (BCL): labels repeated
    assert torch.isfinite(m.aux_losses(y)["infogcn_mmd"])
    m(torch.cat([x, x[:1]]))
    with pytest.raises(BenchmarkError, match="3 latent rows, but the labels have 2"):
        m.aux_losses(y)
    with torch.no_grad():
        for _ in range(MAX_PENDING + 3):  # a loop that never asks keeps a bounded number
            m.head(torch.randn(2, 32))
    assert m._pending == []  # no grad: not recorded
    for _ in range(MAX_PENDING + 3):
        m.head(torch.randn(2, 32))
    assert len(m._pending) == MAX_PENDING


# ----------------------------------------------------------------------------- the harness
class Recorder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.seen = []

    def aux_losses(self, y):
        self.seen.append(y)
        return {"aux_a": torch.tensor(0.25), "aux_b": torch.tensor(0.5)}


def test_add_aux_losses_builds_the_labels_and_finds_wrapped_backbones():
    hard = Batch(x=torch.zeros(3), y=torch.tensor([0, 1, 2]), index=torch.arange(3))
    hard.inputs, hard.targets = [hard.x, hard.x], [Target(hard.y), Target(torch.tensor([2, 2, 0]))]
    rec, logs = Recorder(), {"loss0": 1.0}
    total = add_aux_losses(rec, hard, 3, torch.tensor(1.0), logs)
    assert total.item() == 1.75 and logs == {"loss0": 1.0, "aux_a": 0.25, "aux_b": 0.5}
    assert rec.seen[0].tolist() == [0, 1, 2, 2, 2, 0]  # the targets' rows, in order

    wrapper = torch.nn.Module()
    wrapper.backbone = Recorder()
    mixed = Batch(x=torch.zeros(2), y=torch.tensor([0, 1]), index=torch.arange(2))
    mixed.targets = [Target(mixed.y, torch.tensor([2, 0]), torch.tensor([0.25, 0.5]))]
    add_aux_losses(wrapper, mixed, 3, torch.tensor(0.0), {})
    assert torch.allclose(wrapper.backbone.seen[0], torch.tensor([[0.75, 0, 0.25], [0.5, 0.5, 0]]))
    plain = torch.nn.Linear(2, 2)  # no aux_losses anywhere: the loss as it was
    assert add_aux_losses(plain, hard, 3, torch.tensor(2.0), logs).item() == 2.0


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return load_synth(tmp_path_factory.getbasetemp() / "synth-cache", num_classes=6,
                      train_per_class=40, test_per_class=6, T=40)


@pytest.mark.parametrize("method", ["ce", "mixup"])
def test_trainer_adds_and_logs_the_aux_losses(method, store):
    spec = normalise(RunSpec(dataset=str(store), method=method, imbalance=10, n_max=40,
                             profile="smoke", backbone="infogcn",
                             train={"epochs": 1, "max_steps_per_epoch": 2, "max_test_clips": 6,
                                    "window": 16, "base_channel": 8}))
    cfg = resolve_config(spec)
    trainer = Trainer(spec, cfg, load_run_data(spec, cfg), torch.device("cpu"))
    try:
        logits = trainer.fit()
    finally:
        trainer.close()
    rec = trainer.history[0]
    terms = rec["loss_terms"]
    assert {"infogcn_mmd", "infogcn_z_mean"} <= set(terms) and terms["infogcn_mmd"] > 0
    # the logged loss is the method's loss plus the aux terms (epoch means of per-step sums)
    assert rec["loss"] == pytest.approx(terms["loss0"] + terms["infogcn_mmd"] + terms["infogcn_z_mean"])
    assert np.isfinite(logits).all() and trainer.model.aux_losses(torch.zeros(1)) == {}


# ----------------------------------------------------------------------------- golden (official)
@pytest.mark.parametrize("name", ["ntu60", "ucla"])
def test_golden_outputs_of_the_official_code(name):
    check = load_script("check_infogcn_official")
    cfg, shape, labels = check.GOLDEN[name]
    kw = check.CONFIGS[cfg][0]
    model = check.our_model(kw)
    sd = model.state_dict()
    model.load_state_dict(check.golden_state([(k, tuple(v.shape), v.is_floating_point())
                                              for k, v in sd.items()]), strict=True)
    x = check.golden_input(shape)
    files = {w: GOLDEN / f"infogcn_{name}_{w}.npy" for w in ("logits", "feat", "aux")}
    missing = [str(f) for f in files.values() if not f.is_file()]
    assert not missing, (f"golden files missing: {missing} (rebuild them from the official "
                         f"code: scripts/check_infogcn_official.py --write-golden tests/golden)")
    want = {w: np.load(f) for w, f in files.items()}
    with torch.no_grad():
        model.eval()
        logits, feat = model(x, return_feat=True)
        mu = model.latent(feat)[1]
        model.train()
        train_feat = model.pool(model.features(x))

    def rel(a, b):
        return float(np.abs(a - b).max() / np.abs(b).max())

    assert rel(logits.numpy(), want["logits"]) <= 1e-4
    assert rel(train_feat.numpy(), want["feat"]) <= 1e-4  # train-mode BN statistics
    prior = check.golden_input((kw["num_class"], mu.shape[1]), seed=2)
    mmd, norm = latent_prior_terms(mu, torch.tensor(labels), prior)
    assert [mmd.item(), norm.item()] == pytest.approx(want["aux"].tolist(), rel=1e-4)
