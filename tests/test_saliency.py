"""``python -m benchmark saliency`` (benchmark/saliency.py) on a tiny Shap-Mix smoke run."""
import numpy as np
import pytest
import torch

from benchmark.ckpt import load_checkpoint, save_checkpoint
from benchmark.data.skeleton import LAYOUTS
from benchmark.saliency import (canonical_pose, part_colors, select_classes,
                                table_part_saliency)
from methods.shapmix import COMBOS, combo_index

from conftest import assert_one_line_error, run_cli


def _train(tmp, method):
    from benchmark.data.synth import load_synth

    store = load_synth(tmp / "cache", num_classes=6, train_per_class=40, test_per_class=6, T=40)
    proc = run_cli("train", "--dataset", store, "--method", method, "--imbalance", 10, "--n-max", 40,
                   "--profile", "smoke", "--set", "epochs=1", "--set", "max_steps_per_epoch=1",
                   "--set", "max_test_clips=12", "--set", "window=16", "--out", tmp / "runs",
                   "--threads", 1)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = [p for p in (tmp / "runs").iterdir() if p.is_dir()]
    return run_dir


@pytest.fixture(scope="module")
def shap_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("sal"), "shap_mix")


def test_table_saliency_rule_and_colours():
    row = torch.full((20,), 1e-6)
    row[combo_index((1, 3))] = 2.0                  # one combination dominates
    sal = table_part_saliency(row, 0.2)
    assert sal[1] > 0.95 and sal[3] > 0.95 and max(sal[0], sal[2], sal[4]) < 0.05
    # each part = sum of the softmax over the combinations containing it; total = E|combo|
    p = torch.softmax(row.double() / 0.2, 0)
    assert sal[0] == pytest.approx(float(sum(p[k] for k, c in enumerate(COMBOS) if 0 in c)))
    assert sal.sum() == pytest.approx(float(sum(p[k] * len(c) for k, c in enumerate(COMBOS))))
    assert np.allclose(table_part_saliency(torch.zeros(20)), [(4 + 6) / 20] * 5)  # uniform: 1/2
    col = part_colors(sal, 0.0, 1.0, "Reds")
    assert col.shape == (5, 4)
    dark = col[:, :3].sum(1)                       # Reds: larger value = darker
    assert dark[1] < dark[0] and dark[3] < dark[4] and np.allclose(dark[0], dark[2])


def test_pose_and_class_selection():
    for lay in LAYOUTS.values():
        pose = canonical_pose(lay.joint_names)
        assert pose.shape == (lay.num_joints, 2) and np.isfinite(pose).all()
    assert select_classes([40, 25, 15, 10, 6, 4]) == [(0, "head"), (1, "head"), (2, "medium"),
                                                      (3, "medium"), (4, "tail"), (5, "tail")]
    assert [c for c, _ in select_classes([5, 9, 7])] == [1, 2, 0]


def test_cli_figures_follow_the_table(shap_run, tmp_path):
    import json

    ck = shap_run / "last.pt"
    state = load_checkpoint(ck)
    table = state["method"]["table"].clone()
    table[2] = 1e-6
    table[2, combo_index((0, 4))] = 2.0             # class 2: P0 + P4 dominant
    state["method"]["table"] = table
    save_checkpoint(ck, {k: v for k, v in state.items() if k not in ("format", "version")})
    out = tmp_path / "figs"
    proc = run_cli("saliency", shap_run, "--classes", "2,5", "--exact", "--clips", "2", "--out", out)
    assert proc.returncode == 0, proc.stderr
    for c in (2, 5):
        for ext in ("png", "pdf"):
            f = out / f"saliency_class{c:03d}.{ext}"
            assert f.is_file() and f.stat().st_size > 1000
    assert (out / "saliency_class002.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(out.glob(".*tmp*"))            # atomic writes left no temp files
    d = json.loads((out / "saliency.json").read_text())
    sal = d["classes"]["2"]["table_saliency"]
    assert sal[0] > 0.9 and sal[4] > 0.9 and max(sal[1:4]) < 0.1
    ex = d["classes"]["2"]["exact"]
    assert ex["n_clips"] == 2 and len(ex["parts"]) == 5 and len(ex["combos"]) == 20
    assert abs(sum(ex["parts"]) - (ex["v_all"] - ex["v_empty"])) < 1e-6
    # default selection into RUN_DIR/figures, no model needed without --exact
    proc = run_cli("saliency", shap_run)
    assert proc.returncode == 0, proc.stderr
    assert len(list((shap_run / "figures").glob("saliency_class*.png"))) == 6


def test_errors(shap_run, tmp_path):
    assert_one_line_error(run_cli("saliency", tmp_path), "no last.pt")
    assert_one_line_error(run_cli("saliency", shap_run, "--classes", "9"), "--classes")
    ce_run = _train(tmp_path, "ce")
    assert_one_line_error(run_cli("saliency", ce_run), "no Shap-Mix table", "'ce'")
    assert not (ce_run / "figures").exists()
