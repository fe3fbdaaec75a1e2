"""Tables 10, 11 and 12 (ST-Mix parts / temporal ratio, Shap-Mix temperature) as suites."""
from __future__ import annotations

import dataclasses

import pytest

import methods  # noqa: F401
from benchmark.errors import BenchmarkError
from benchmark.spec import normalise
from benchmark.suites import ct_range, get_suites, unique_runs

from conftest import run_cli


@pytest.mark.parametrize("ratio, segments", [
    ((0.3, 0.6), (5, 9)), ((0.3, 0.7), (5, 11)), ((0.4, 0.7), (7, 11)),  # official Ct 7..11
    ((0.4, 0.8), (7, 12)), ((0.5, 0.8), (8, 12)), ((0.5, 0.5), (8, 8)), ((0.0625, 1.0), (1, 16))])
def test_temporal_ratio_to_segment_counts(ratio, segments):
    assert ct_range(*ratio) == segments


def test_a_ratio_without_a_segment_count_is_refused():
    with pytest.raises(BenchmarkError, match="no segment count"):
        ct_range(0.41, 0.43)


def keyed(suite):
    return {c.row: normalise(c.spec).request_key for c in suite.cells}


@pytest.mark.parametrize("data", ["synth", "ucla", "ntu"])
def test_default_cells_are_the_runs_of_tables_1_and_7(data):
    t1, t7, t10, t11, t12 = get_suites("table1,table7,table10,table11,table12", data)
    k7 = keyed(t7)["Spatial + temporal"]
    assert keyed(t10)["(2, 3)"] == k7 and keyed(t11)["(0.4, 0.7)"] == k7
    shap = {normalise(c.spec).request_key for c in t1.cells if c.row == "Shap-Mix"}
    assert keyed(t12)["0.2"] in shap
    # every other cell is a run of its own, and a sweep of the five tables runs each once
    for t in (t10, t11, t12):
        assert len(set(keyed(t).values())) == 5
    both = unique_runs([t1, t7, t10, t11, t12])
    assert len(both) == len(unique_runs([t1, t7])) + 3 * 4 * len(t1.seeds)


def test_options_reach_the_methods():
    t10, t11, t12 = get_suites("table10,table11,table12", "ntu")
    hp = {c.row: normalise(c.spec).hparams for c in t10.cells}
    assert hp["(1, 2)"] == {"parts_min": 1, "parts_max": 2} and hp["(3, 4)"] == {"parts_min": 3, "parts_max": 4}
    hp = {c.row: normalise(c.spec).hparams for c in t11.cells}
    assert hp["(0.3, 0.6)"] == {"ct_min": 5, "ct_max": 9} and hp["(0.4, 0.7)"] == {}
    hp = {c.row: normalise(c.spec).hparams for c in t12.cells}
    assert hp["0.5"]["temperature"] == 0.5 and "temperature" not in hp["0.2"]
    assert t10.published[("(2, 4)", "NTU60 xsub")] == (91.5,)
    assert t11.published[("(0.3, 0.7)", "NTU60 xsub")] == (91.4,)
    assert t12.published[("0.4", "LT-NTU60")] == (80.3,)
    assert t12.reference["0.5"] == "0.2"


def test_sweep_list_names_the_new_suites():
    proc = run_cli("sweep", "list", "--data", "synth", "--suite", "table4,table10,table11,table12")
    assert proc.returncode == 0, proc.stderr
    assert "run(s) in table4, table10, table11, table12" in proc.stdout
    assert "table4: 4s-Ours = fused ST-Mix (J) + ST-Mix (B) + ST-Mix (JM) + ST-Mix (BM)" in proc.stdout
    assert "[stream=bm]" in proc.stdout and "temperature=0.5" in proc.stdout
