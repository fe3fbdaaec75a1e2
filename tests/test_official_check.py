"""The comparison code the scripts/check_*_official.py scripts share (scripts/_official_check.py):
the error rows, the two-precision comparison, the weight variants, the summary and the timing.
The scripts themselves need an official checkout; these helpers are checked here on two copies
of one small model, where the answer is known."""
import copy

import pytest
import torch
from torch import nn

from conftest import load_script


@pytest.fixture(scope="module")
def oc():
    return load_script("_official_check")


def tiny(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv1d(3, 4, 3), nn.BatchNorm1d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 6, 5))


def test_diff_row_reference_values(oc):
    o64 = {"a": torch.tensor([2.0, -4.0], dtype=torch.float64)}
    u64 = {"a": torch.tensor([2.0, -4.0 + 1e-12], dtype=torch.float64)}
    o32 = {"a": torch.tensor([2.0, -4.0])}
    u32 = {"a": torch.tensor([2.5, -4.0])}
    r = oc.diff_row(o32, u32, o64, u64)
    assert r["scale"] == 4.0
    assert r["ours_vs_official_fp32"] == 0.5 and r["rel_fp32"] == 0.125
    assert r["ours_vs_official_fp64"] == pytest.approx(1e-12) and r["rel_fp64"] == pytest.approx(2.5e-13)
    assert r["official_fp32_vs_fp64"] == 0.0 and r["ours_fp32_vs_official_fp64"] == 0.5
    r = oc.diff_row(o32, u32, o64, u64, cross_dtype=False)
    assert r["official_fp32_vs_fp64"] is None and r["ours_fp32_vs_official_fp64"] is None


def test_identical_models_agree_and_a_changed_one_does_not(oc):
    off = tiny()
    ours = copy.deepcopy(off)
    assert oc.state_summary(off, ours) == {
        "params_official": 173, "params_ours": 173, "tensors": 9,
        "keys_and_shapes_identical": True, "same_seed_same_init": True}
    gen = torch.Generator().manual_seed(1)
    init = {k: v.clone() for k, v in off.state_dict().items()}
    variants = oc.weight_variants(off, off.state_dict(), (3, 8), gen, batches=2, batch=4)
    assert list(variants) == list(oc.VARIANTS)
    assert all(torch.equal(variants["official_init"][k], v) for k, v in init.items())
    assert not torch.equal(variants["perturbed"]["4.weight"], init["4.weight"])
    # calibrated: running statistics replaced, weights kept
    assert torch.equal(variants["perturbed_calibrated_bn"]["4.weight"], variants["perturbed"]["4.weight"])
    assert not torch.equal(variants["perturbed_calibrated_bn"]["1.running_mean"],
                           variants["perturbed"]["1.running_mean"])
    x, y = torch.randn(4, 3, 8, generator=gen), torch.tensor([0, 1, 2, 3])
    report = {"m": {**oc.state_summary(off, ours),
                    **{v: oc.compare_precisions(off, ours, sd, x, y) for v, sd in variants.items()}}}
    row = report["m"]["perturbed"]["train_logits"]
    assert row["ours_vs_official_fp32"] == 0 and row["ours_vs_official_fp64"] == 0
    assert report["m"]["perturbed"]["train_grads"]["cosine_fp32"] == pytest.approx(1.0)
    assert next(off.parameters()).dtype == torch.float32  # back to float32 after the float64 runs
    s = oc.summarise(report, ["m"])
    assert s["eval_logits_max_rel_fp32"] == 0 and s["train_grads_max_rel_fp64"] == 0
    assert s["params_m"] == {"ours": 173, "official": 173} and s["all_keys_shapes_identical"]
    # ours with another last layer: errors > 0, the summary takes the worst variant
    other = tiny(seed=1)
    other.load_state_dict(off.state_dict())
    with torch.no_grad():
        other[4].bias.add_(0.5)
    run_fixed = lambda name, m, dt, train: (  # noqa: E731 - ours keeps its own bias
        m.to(dt).load_state_dict({**variants["perturbed"], **({"4.bias": m[4].bias.detach()}
                                                             if name == "ours" else {})}),
        oc.run_mode(m, x.to(dt), y, train))[1]
    bad = oc.compare_precisions(off, other, variants["perturbed"], x, y, run_fixed)
    assert bad["eval_logits"]["ours_vs_official_fp64"] == pytest.approx(0.5)
    report["m"]["perturbed"] = bad
    assert oc.summarise(report, ["m"])["eval_logits_max_rel_fp64"] == pytest.approx(
        0.5 / bad["eval_logits"]["scale"])


def test_state_summary_sees_other_keys_and_other_init(oc):
    off, ours = tiny(0), tiny(1)
    s = oc.state_summary(off, ours)
    assert s["keys_and_shapes_identical"] and not s["same_seed_same_init"]
    ours[4] = nn.Linear(4 * 6, 6)
    assert not oc.state_summary(off, ours)["keys_and_shapes_identical"]


def test_time_training_steps_trains_both_models_and_reports_a_ratio(oc):
    models = {"official": tiny(), "ours": tiny()}
    before = {k: m[4].weight.detach().clone() for k, m in models.items()}
    x, y = torch.randn(4, 3, 8), torch.tensor([0, 1, 2, 3])
    seen = []
    r = oc.time_training_steps(models, x, y, 2, 1,
                               lambda k, m, xb, yb: seen.append(k) or nn.functional.cross_entropy(m(xb), yb))
    assert seen.count("official") == seen.count("ours") == 4  # 2 warm-up + 2 timed each
    assert r["batch"] == 4 and r["speedup_median"] > 0 and r["threads"] == 1
    assert all(not torch.equal(before[k], m[4].weight) for k, m in models.items())
