"""A user's own method in the paper's tables (issue 18 item 2): defined outside the package,
registered with --plugin, trained by the sweep and shown as a row of Table 1 via --methods."""
from __future__ import annotations

import json

import pytest

import methods  # noqa: F401
from benchmark.errors import BenchmarkError
from benchmark.method import METHODS
from benchmark.suites import get_suites

from conftest import REPO, assert_one_line_error, run_cli

PLUGIN = REPO / "scripts" / "example_plugin_label_smoothing.py"


def test_own_method_trained_and_shown_in_table1(tmp_path):
    runs, root, res = tmp_path / "runs", tmp_path / "data", tmp_path / "results"
    common = ["--data", "synth", "--suite", "table1", "--profile", "smoke", "--methods",
              "label_smoothing", "--out", runs, "--data-root", root]
    proc = run_cli("sweep", "run", *common, "--only", "ce,label_smoothing", "--workers", "1",
                   "--threads", "1", "--plugin", PLUGIN)
    assert proc.returncode == 0, proc.stderr
    # the report finds the plugin the sweep recorded in the folder
    proc = run_cli("report", *common, "--results", res)
    assert proc.returncode == 0, proc.stderr
    md = (res / "tables" / "synth-smoke" / "table1.md").read_text()
    rows = [ln.split("|")[1].strip() for ln in md.splitlines() if ln.startswith("| ")]
    assert rows[-1] == "Label smoothing" and rows[1] == "CE"  # after the paper's rows
    finals = [json.loads(p.read_text()) for p in runs.glob("*/final.json")]
    ls = next(f for f in finals if f["spec"]["method"] == "label_smoothing")
    line = next(ln for ln in md.splitlines() if ln.startswith("| Label smoothing"))
    assert f"{100 * ls['top1']:.1f}" in line.split("|")[2]
    tex = (res / "tables" / "synth-smoke" / "table1.tex").read_text()
    body = tex.split("\\midrule\n", 1)[1]
    assert "\\midrule\nLabel smoothing &" in body  # a group of its own, below a rule


def test_methods_rows_order_and_errors(tmp_path):
    from benchmark.suites import family_groups, method_rows

    t1, t3 = get_suites("table1,table3", "ntu", extra_methods=("mixup", "ce"))
    assert t1.rows.count("Mixup") == 1 and t3.rows[-1] == "Mixup"  # Table 1 has it already
    assert t3.groups["Mixup"] == "augmentation" and t3.groups[t3.rows[-2]] != "augmentation"
    (t7,) = get_suites("table7", "ntu", extra_methods=("mixup",))  # not a method table
    assert "Mixup" not in t7.rows
    # extra rows ordered by family, then order
    rows = method_rows(("ce",), extra=("ldam_drw", "mixup", "remix_drw"))
    assert [r.method for r in rows] == ["ce", "mixup", "remix_drw", "ldam_drw"]
    assert family_groups(rows)["CE"] == "baseline"
    with pytest.raises(BenchmarkError, match="unknown method"):
        get_suites("table1", "synth", extra_methods=("lable_smoothing",))
    proc = run_cli("sweep", "list", "--data", "synth", "--suite", "table1", "--methods", "nope")
    assert_one_line_error(proc, "nope")


def test_one_name_per_method_across_tables():
    """A method table's row is the class's display_name, and a row label names one run
    setting in every table it appears in (Table 13's random-guidance row is not ST-Mix)."""
    from benchmark.spec import normalise

    suites = get_suites("all", "ntu")
    setting: dict[str, set] = {}
    for s in suites:
        for c in s.cells:
            if s.name in ("table1", "table3", "fig4"):
                assert c.row == METHODS.get(c.spec.method).display_name, (s.name, c.row)
            if s.name in ("table1", "table3", "fig4", "table13"):
                spec = normalise(c.spec)
                setting.setdefault(c.row, set()).add(
                    (spec.method, json.dumps(spec.hparams, sort_keys=True)))
    assert all(len(v) == 1 for v in setting.values()), {k: v for k, v in setting.items() if len(v) > 1}
    assert "Shap-Mix (random guidance)" in setting and "ST-Mix" in setting
