"""The README's NW-UCLA-LT table is the committed runs' numbers: every mean ± std, per-seed
top-1 and paired p-value in it is recomputed here from `results/runs-ucla/<id>/final.json`
(and checked against the committed `results/tables/ucla/table1.csv`), so a hand-edited or
stale README number fails the test suite."""
import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from conftest import REPO

RUNS = REPO / "results" / "runs-ucla"
CSV = REPO / "results" / "tables" / "ucla" / "table1.csv"
SECTION = "## Results on real data: NW-UCLA-LT"
SEEDS = (0, 1, 2)
COLUMNS = {"Overall": "top1", "Medium": "medium", "Few": "few"}

if not (RUNS.is_dir() and CSV.is_file()):
    pytest.skip("no committed NW-UCLA-LT runs / table in this checkout", allow_module_level=True)


def _finished_runs() -> dict[tuple[str, int], dict]:
    """(method, seed) -> final.json of every finished run committed to git (a run the user
    trained since, finished or not, is not what the README reports)."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: which runs are committed is unknown")
    listed = subprocess.run(["git", "ls-files", "--", "results/runs-ucla/*/done"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split()
    out: dict[tuple[str, int], dict] = {}
    for d in sorted((REPO / f).parent for f in listed):
        req = json.loads((d / "spec.json").read_text())["request"]
        key = (req["method"], int(req["seed"]))
        assert key not in out, f"two finished runs of {key}: the table would be ambiguous"
        out[key] = json.loads((d / "final.json").read_text())
    return out


def _readme_rows() -> dict[str, dict[str, str]]:
    text = (REPO / "README.md").read_text()
    assert SECTION in text, "README lost its NW-UCLA-LT section"
    lines = text.split(SECTION, 1)[1].splitlines()
    table = [ln for ln in lines[:60] if ln.startswith("|")]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    rows = {}
    for ln in table[2:]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells))
    return rows


def _display_names() -> dict[str, str]:
    from benchmark.method import METHODS
    import methods  # noqa: F401  (registers the methods)
    return {getattr(METHODS.get(n), "display_name", n): n for n in METHODS.names()}


def _mean_std(values: list[float]) -> str:
    v = 100 * np.asarray(values)
    s = f"{v.mean():.1f} ± {v.std(ddof=1):.1f}"
    return s if len(v) == len(SEEDS) else f"{s} (n={len(v)})"


def test_readme_table_is_the_committed_runs():
    runs, rows, names = _finished_runs(), _readme_rows(), _display_names()
    assert "CE" in rows and len(rows) >= 6
    ce = {s: runs[("ce", s)]["top1"] for s in SEEDS if ("ce", s) in runs}
    for shown, row in rows.items():
        method = names[shown]
        finals = {s: runs[(method, s)] for s in SEEDS if (method, s) in runs}
        assert len(finals) >= 2, f"{shown}: a README row needs at least 2 finished seeds"
        for header, metric in COLUMNS.items():
            cell = next(v for k, v in row.items() if k.startswith(header))
            assert cell == _mean_std([finals[s][metric] for s in sorted(finals)]), (shown, header)
        per_seed = " / ".join(f"{100 * finals[s]['top1']:.1f}" if s in finals else "--"
                              for s in SEEDS)
        assert row["per seed (top-1)"] == per_seed, shown
        test = row["paired test vs CE"]
        if method == "ce":
            assert test == "–"
            continue
        common = sorted(set(finals) & set(ce))
        p = stats.ttest_rel([finals[s]["top1"] for s in common], [ce[s] for s in common]).pvalue
        expect = f"p = {p:.2f}" + ("" if len(common) == len(SEEDS) else f" ({len(common)} seeds)")
        assert test == expect, shown


def test_committed_csv_agrees_with_the_runs():
    runs, names = _finished_runs(), _display_names()
    table = pd.read_csv(CSV)
    for (shown, metric), g in table.groupby(["row", "metric"]):
        method = names[shown]
        if metric not in COLUMNS.values():
            continue
        values = [runs[(method, s)][metric] for s in SEEDS if (method, s) in runs]
        values = [v for v in values if v is not None]
        (rec,) = g.itertuples()
        assert rec.n == len(values), (shown, metric)
        if values:
            assert rec.mean == pytest.approx(100 * np.mean(values), abs=1e-6), (shown, metric)
