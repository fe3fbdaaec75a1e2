"""Method API, hyper-parameter overrides and reference values from the official code (toy F4)."""
import pytest
import torch

from benchmark.errors import BenchmarkError
from benchmark.hparams import parse_assignments, split_overrides
from benchmark.method import METHODS, Batch, Context, Out, Target, build_method
from benchmark.data.skeleton import LAYOUTS

# toy batch F4 (conftest.py)
from conftest import COUNTS, Y, Y_B, Z  # toy batch F4


def ctx():
    return Context(num_classes=3, class_counts=COUNTS, total_epochs=1, iters_per_epoch=1,
                   device=torch.device("cpu"), seed=0, layout=LAYOUTS["ntu25"], batch_size=4)


def f4_loss(name, **overrides):
    m = build_method(name, overrides)
    c = ctx()
    m.setup(c)
    batch = Batch(x=torch.zeros(4, 3, 1, 25, 1), y=Y, index=torch.arange(4))
    loss, _ = m.loss(Out(Z, chunks=[4]), batch, c)
    return m, float(loss)


@pytest.mark.parametrize("name,overrides,expected", [
    ("ce", {}, 0.566299),
    ("balanced_softmax", {}, 1.421166),
    ("logit_adjust", {}, 1.421166),
    ("logit_adjust", {"tau": 0.5}, 0.778099),
    ("logit_adjust", {"posthoc": True}, 0.566299),  # trains with plain CE
])
def test_f4_reference_losses(name, overrides, expected):
    _, loss = f4_loss(name, **overrides)
    assert loss == pytest.approx(expected, rel=1e-5)


def test_logit_adjust_posthoc_prediction():
    m, _ = f4_loss("logit_adjust", posthoc=True)
    pred = m.predict(lambda x: Z, None, ctx()).argmax(1)
    assert pred.tolist() == [2, 2, 2, 2] and Z.argmax(1).tolist() == [0, 1, 2, 0]


def test_pair_target_equals_soft_labels_and_weights_sum_to_one():
    w = torch.tensor([0.0, 0.3, 0.5, 1.0])
    t = Target(Y, Y_B, w)
    p = t.as_probs(3)
    assert torch.allclose(p.sum(1), torch.ones(4))
    from benchmark.losses import cross_entropy, soft_cross_entropy

    assert torch.allclose(t.per_sample(cross_entropy, Z), soft_cross_entropy(Z, p), atol=1e-6)
    assert torch.allclose(t.per_sample(cross_entropy, Z)[0], cross_entropy(Z, Y)[0])  # w 0 = hard y
    assert torch.allclose(t.per_sample(cross_entropy, Z)[3], cross_entropy(Z, Y_B)[3])  # w 1 = y_b


def test_default_loss_sums_chunk_means():
    m = build_method("ce")
    c = ctx()
    x = torch.zeros(2, 3, 1, 25, 1)
    batch = Batch(x=x, y=Y[:2], index=torch.arange(2))
    batch.inputs.append(x)
    batch.targets.append(Target(Y[:2], Y_B[:2], torch.tensor([0.25, 0.75])))
    loss, logs = m.loss(Out(Z, chunks=[2, 2]), batch, c)
    from benchmark.losses import cross_entropy

    l1 = cross_entropy(Z[:2], Y[:2]).mean()
    w = torch.tensor([0.25, 0.75])
    l2 = ((1 - w) * cross_entropy(Z[2:], Y[:2]) + w * cross_entropy(Z[2:], Y_B[:2])).mean()
    assert float(loss) == pytest.approx(float(l1 + l2), rel=1e-6)
    assert set(logs) == {"loss0", "loss1"}


def test_registry_and_overrides():
    assert {"ce", "balanced_softmax", "logit_adjust"} <= set(METHODS.names())
    with pytest.raises(BenchmarkError, match="did you mean balanced_softmax"):
        build_method("balanced_sofmax")
    with pytest.raises(BenchmarkError, match="unknown hyper-parameter 'tua'; did you mean tau"):
        build_method("logit_adjust", {"tua": 1})
    with pytest.raises(BenchmarkError, match="tau must be float"):
        build_method("logit_adjust", {"tau": "big"})
    assert build_method("logit_adjust", {"tau": 2}).hp.tau == 2.0  # int widens to float
    with pytest.raises(BenchmarkError, match="no hyper-parameter|unknown hyper-parameter"):
        build_method("ce", {"tau": 1.0})


def test_parse_assignments():
    assert parse_assignments(["tau=0.5", "name=ros", "steps=(60, 80)", "flag=True"]) == {
        "tau": 0.5, "name": "ros", "steps": (60, 80), "flag": True}
    with pytest.raises(BenchmarkError, match="key=value"):
        parse_assignments(["tau"])
    from dataclasses import dataclass

    @dataclass
    class A:
        lr: float = 0.1

    @dataclass
    class B:
        tau: float = 1.0

    assert split_overrides({"lr": 1, "tau": 2}, A, B) == [{"lr": 1}, {"tau": 2}]
    with pytest.raises(BenchmarkError, match="did you mean lr"):
        split_overrides({"lrr": 1}, A, B)


def test_every_method_has_metadata():
    import methods  # noqa: F401

    for name in METHODS.names():
        cls = METHODS.get(name)
        assert cls.registry_name == name and cls.display_name and cls.family and cls.paper


def test_readme_add_a_method_example_runs():
    """The README's worked example registers a method that trains on the toy fixture."""
    import re
    import subprocess
    import sys

    from conftest import REPO

    code = re.search(r"```python\n# methods/my_method.py[^\n]*\n(.*?)```",
                     (REPO / "README.md").read_text(), re.S).group(1)
    check = code + (
        "\nimport torch\nfrom benchmark.method import build_method, Batch, Context, Out\n"
        "from benchmark.data.skeleton import LAYOUTS\n"
        "m = build_method('my_method', {'tau': 1.0})\n"
        "ctx = Context(3, torch.tensor([100, 10, 1]), 1, 1, torch.device('cpu'), 0, LAYOUTS['ntu25'], 4)\n"
        "m.setup(ctx)\n"
        "z = torch.tensor([[2.0, 0.5, -1.0], [1.0, 1.5, 0.2], [0.1, 0.3, 1.2], [0.5, -0.2, 0.3]])\n"
        "b = Batch(x=torch.zeros(4, 3, 1, 25, 1), y=torch.tensor([0, 1, 2, 0]), index=torch.arange(4))\n"
        "print(float(m.loss(Out(z, chunks=[4]), b, ctx)[0]))\n")
    out = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) == pytest.approx(1.421166, rel=1e-5)  # tau 1 = Balanced Softmax on F4
