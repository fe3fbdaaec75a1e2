"""benchmark.report / report_tables / figures on fake run folders (no training).

A module fixture writes ``done`` + final.json for the normalised specs of the synth suites
(seeds 0 and 1) with controlled numbers, leaves a few runs out on purpose, and builds the
reports once; the tests compare the tables with numbers computed here by hand.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import methods  # noqa: F401  (normalise builds the methods)
from benchmark.errors import BenchmarkError
from benchmark.report import SUMMARY_COLUMNS, build_reports, collect, suite_run_ids
from benchmark.spec import normalise, resolve_run
from benchmark.ensemble import PRESETS
from benchmark.suites import get_suites

from conftest import assert_one_line_error, run_cli

SEEDS = (0, 1)
CE_TOP1 = {0: 0.50, 1: 0.56}
PARAMS = {"glmc": 1_510_000}


def synth_counts(imbalance: float, classes: int = 60, n_max: int = 200) -> list[int]:
    return [int(n_max * imbalance ** (-i / (classes - 1))) for i in range(classes)]


def write_run(runs: Path, spec, top1: float, groups: tuple, seconds: float = 600.0,
              params: int | None = 1_462_092) -> str:
    """A finished run folder as the runner leaves it (only the fields the report reads)."""
    spec = normalise(spec)
    try:
        run_id = resolve_run(spec).run_id
    except BenchmarkError:  # no store here (ntu): found by its recorded request
        run_id = "r" + spec.request_key[:11]
    counts = synth_counts(spec.imbalance or 1.0)
    rng = np.random.default_rng(zlib.crc32(run_id.encode()))
    per_class = np.clip(top1 + rng.normal(0, 0.1, len(counts)), 0, 1).round(4).tolist()
    final = {"run_id": run_id, "spec": spec.to_dict(), "request_key": spec.request_key,
             "units": "fraction in [0, 1]",
             "top1": top1, "top5": min(1.0, top1 + 0.2), "many": groups[0], "medium": groups[1],
             "few": groups[2], "params": None if params is None else {"total": params,
                                                                       "trainable": params},
             "per_class_accuracy": per_class, "class_counts": counts,
             "test_counts": [10] * len(counts),
             "groups": {"thresholds": {"many_gt": 100, "few_lt": 20}},
             "timing": {"total_epoch_seconds": seconds}, "epochs": 3}
    # the test set and scores an ensemble reads: 10 clips per class, one-hot logits that are
    # right on the first round(top1 * N) clips
    n_cls = len(counts)
    labels = np.repeat(np.arange(n_cls), 10)
    right = rng.permutation(len(labels)) < round(top1 * len(labels))
    logits = np.zeros((len(labels), n_cls), np.float32)
    logits[np.arange(len(labels)), np.where(right, labels, (labels + 1) % n_cls)] = 1.0
    final["identity"] = {"data": {"protocol": "xsub", "test_sha256": "t" * 64,
                                  "num_test": len(labels), "num_classes": n_cls}}
    final["config"] = {"stream": spec.train.get("stream", "j")}
    d = runs / run_id
    d.mkdir(parents=True, exist_ok=True)
    np.save(d / "logits.npy", logits)
    np.save(d / "test_labels.npy", labels.astype(np.int32))
    (d / "final.json").write_text(json.dumps(final))
    (d / "done").write_text("done\n")
    return run_id


def _numbers(suite, row: str, col: str, seed: int) -> float:
    """top-1 of a run: CE + a row offset + a seed term that is nearly constant for even rows
    (a paired test finds those) and large for odd rows (it does not)."""
    i = suite.rows.index(row)
    eps = 0.0004 * (i + 1) if i % 2 == 0 else 0.03
    shift = 0.002 * suite.cols.index(col)
    return round(CE_TOP1[seed] + 0.01 * i - 0.05 + (eps if seed else 0.0) + shift, 6)


def _left_out(suite, row: str, seed: int) -> bool:
    return suite.name == "table1" and (row == "FSA" or (row == "GLMC" and seed == 1))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    runs, results = root / "runs", root / "results"
    suites = get_suites("all", data="synth", seeds=SEEDS)
    ids = {s.name: suite_run_ids(s) for s in suites}
    values: dict[str, dict] = {}  # run_id -> what was written (a shared run: the first write)
    # left out by id: Table 1's GLMC is also Table 3's IF 100 and Table 13's GLMC
    left_out = {rid for s in suites for (row, _), planned in ids[s.name].items()
                for seed, rid in planned if _left_out(s, row, seed)}
    for suite in suites:
        for (row, col), planned in ids[suite.name].items():
            cell = next(c for c in suite.cells if c.row == row and c.col in (col, "Synth-LT"))
            for seed, rid in planned:
                if rid in values or rid in left_out:
                    continue
                top1 = _numbers(suite, row, col, seed)
                if cell.spec.imbalance == 10.0:  # no class under 20 clips: Few is empty
                    groups = (top1 + 0.1, top1, None)
                elif row == "Mixup":
                    groups = (top1 + 0.1, top1, None)  # an empty group renders as --
                else:
                    groups = (top1 + 0.1, top1, top1 - 0.1)
                seconds = 900.0 + 100 * suite.rows.index(row) + 7 * seed
                spec = dataclasses.replace(cell.spec, seed=seed)
                assert write_run(runs, spec, top1, groups, seconds,
                                 PARAMS.get(spec.method, 1_462_092)) == rid
                values[rid] = {"top1": top1, "groups": groups, "seconds": seconds}
    (runs / "deadbeef0000").mkdir()  # an unfinished run (no done): not in the summary
    (runs / "deadbeef0000" / "spec.json").write_text("{}")
    written = build_reports(suites, runs, results)
    return {"runs": runs, "results": results, "suites": {s.name: s for s in suites},
            "ids": ids, "values": values, "written": written}


def md_table(path: Path) -> tuple[list[str], dict[str, list[str]]]:
    lines = [ln for ln in path.read_text().splitlines() if ln.startswith("|")]
    split = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines]
    return split[0], {r[0]: r[1:] for r in split[2:]}


def tex_rows(path: Path) -> dict[str, list[str]]:
    text = path.read_text()
    body = text.split("\\midrule\n", 1)[1].split("\\bottomrule")[0]
    rows = [re.split(r"(?<!\\)&", ln.rstrip().removesuffix("\\\\")) for ln in body.splitlines()
            if ln.strip() != "\\midrule"]  # the rules between method families
    return {r[0].strip(): [c.strip() for c in r[1:]] for r in rows}


def expected(built, suite_name: str, row: str, col: str, key: str = "top1"):
    vals = {}
    for seed, rid in built["ids"][suite_name][(row, col)]:
        if rid in built["values"]:
            v = built["values"][rid]
            x = v["top1"] if key == "top1" else v["groups"][("many", "medium", "few").index(key)]
            if x is not None:
                vals[seed] = 100 * x
    return vals


# --------------------------------------------------------------------------- collect
def test_collect_one_row_per_finished_run(built):
    df = collect(built["runs"])
    assert list(df.columns) == list(SUMMARY_COLUMNS)
    assert len(df) == len(built["values"]) and "deadbeef0000" not in set(df.run_id)
    row = df.set_index("run_id").loc[next(iter(built["values"]))]
    assert row.top1 == pytest.approx(built["values"][row.name]["top1"])
    mixup = df[(df.method == "mixup")]
    assert len(mixup) == 2 and mixup.few.isna().all() and mixup.many.notna().all()
    t8 = df[df.hparams.str.contains('"guidance":"gradcam"')]
    assert len(t8) == 4 and all(json.loads(h)["guidance"] == "gradcam" for h in t8.hparams)
    assert set(df.params_total) == {1_462_092, 1_510_000}
    summary = (built["results"] / "summary.csv").read_text()
    assert summary.splitlines()[0] == ",".join(SUMMARY_COLUMNS)
    assert len(summary.splitlines()) == len(df) + 1


# ------------------------------------------------------------------------- values
def test_table1_mean_std_in_md_tex_csv(built):
    import pandas as pd

    folder = built["results"] / "tables" / "synth"
    header, md = md_table(folder / "table1.md")
    tex = tex_rows(folder / "table1.tex")
    csv = pd.read_csv(folder / "table1.csv")
    assert header[:5] == ["Method", "Synth-LT Overall", "Synth-LT Many", "Synth-LT Medium",
                          "Synth-LT Few"]
    checked = 0
    for row in built["suites"]["table1"].rows:
        for j, key in enumerate(("top1", "many", "medium", "few")):
            vals = list(expected(built, "table1", row, "Synth-LT", key).values())
            if len(vals) < 2:
                continue
            m, s = np.mean(vals), np.std(vals, ddof=1)
            assert f"{m:.1f} ± {s:.1f}" in md[row][j], (row, key, md[row][j])
            assert f"${m:.1f} \\pm {s:.1f}$" in tex[row][j], (row, key, tex[row][j])
            line = csv[(csv.row == row) & (csv.metric == key)].iloc[0]
            assert line["mean"] == pytest.approx(m, abs=1e-6)
            assert line["std"] == pytest.approx(s, abs=1e-6) and line["n"] == 2
            checked += 1
    assert checked >= 60


def test_bold_marks_the_best_mean(built):
    folder = built["results"] / "tables" / "synth"
    _, md = md_table(folder / "table1.md")
    tex = tex_rows(folder / "table1.tex")
    means = {r: np.mean(list(v.values())) for r in built["suites"]["table1"].rows
             if (v := expected(built, "table1", r, "Synth-LT"))}
    best = max(means, key=means.get)
    assert sorted(means.values())[-1] - sorted(means.values())[-2] > 0.1  # no tie in the fixture
    for r in means:
        assert md[r][0].startswith("**") == (r == best), (r, md[r][0])
        assert tex[r][0].startswith("\\textbf{") == (r == best), (r, tex[r][0])
    # Table 3: every IF column has its own best
    _, md3 = md_table(folder / "table3.md")
    for j, col in enumerate(built["suites"]["table3"].cols):
        m3 = {r: np.mean(list(expected(built, "table3", r, col).values()))
              for r in built["suites"]["table3"].rows}
        assert [r for r in m3 if md3[r][j].startswith("**")] == [max(m3, key=m3.get)]


def test_missing_runs_and_empty_groups_are_dashes(built):
    folder = built["results"] / "tables" / "synth"
    _, md = md_table(folder / "table1.md")
    tex = tex_rows(folder / "table1.tex")
    assert md["FSA"][:4] == ["--"] * 4 and tex["FSA"][:4] == ["--"] * 4
    assert md["Mixup"][3] == "--" and md["Mixup"][2] != "--"
    assert "(n=1)" in md["GLMC"][0] and "±" not in md["GLMC"][0]
    assert "- 3 of 40 runs missing" in (folder / "table1.md").read_text()
    assert "3 of 40 runs missing" in (folder / "table1.tex").read_text()
    assert "1 of 30 runs missing" in (folder / "table3.md").read_text()
    _, md3 = md_table(folder / "table3.md")  # IF 10 has no Few group but shows top-1
    assert all(c != "--" for cells in md3.values() for c in cells)


def test_a_group_empty_in_every_row_is_explained_once(built, tmp_path):
    """A split with no Few class (NW-UCLA-LT has no Many one): a footnote says why the
    column is all --; one row's empty group (Mixup in the fixture) gets no such note."""
    assert "in every row" not in (built["results"] / "tables" / "synth" / "table1.md").read_text()
    suite = built["suites"]["table1"]
    runs = tmp_path / "runs"
    for (row, col), planned in suite_run_ids(suite).items():
        cell = next(c for c in suite.cells if c.row == row and c.col == col)
        for seed, rid in planned[:1]:
            write_run(runs, dataclasses.replace(cell.spec, seed=seed), 0.5, (0.6, 0.5, None))
    build_reports([suite], runs, tmp_path / "out")
    folder = tmp_path / "out" / "tables" / "synth"
    _, md = md_table(folder / "table1.md")
    assert all(cells[3] == "--" and cells[2] != "--" for cells in md.values())
    note = "Few: -- in every row, no class of this split has < 20 training clips."
    assert (folder / "table1.md").read_text().count(note) == 1
    assert note.replace("<", "$<$") in (folder / "table1.tex").read_text()


def test_dagger_exactly_when_paired_test_is_significant(built):
    folder = built["results"] / "tables" / "synth"
    counts = {True: 0, False: 0}
    for name in ("table1", "table3", "table13"):
        suite = built["suites"][name]
        ce = suite.rows[0]
        _, md = md_table(folder / f"{name}.md")
        tex = tex_rows(folder / f"{name}.tex")
        top1_cols = [j for j, h in enumerate(md_table(folder / f"{name}.md")[0][1:])
                     if "Few" not in h and "Many" not in h and "Medium" not in h
                     and "Params" not in h and "time" not in h and "Paper" not in h]
        for j, col in zip(top1_cols, suite.cols):
            ref = expected(built, name, ce, col)
            for row in suite.rows[1:]:
                mine = expected(built, name, row, col)
                seeds = sorted(set(mine) & set(ref))
                diffs = np.array([mine[s] - ref[s] for s in seeds])
                # equal differences (e.g. two rows that share a run offset): undefined, no mark
                sig = (len(seeds) >= 2 and np.ptp(diffs) > 1e-9
                       and stats.ttest_rel([mine[s] for s in seeds], [ref[s] for s in seeds]).pvalue < 0.05)
                assert ("†" in md[row][j]) == sig, (name, row, md[row][j])
                assert ("\\dag" in tex[row][j]) == sig, (name, row, tex[row][j])
                counts[bool(sig)] += 1
            assert "†" not in md[ce][j]
    assert counts[True] >= 3 and counts[False] >= 3
    text = (folder / "table1.md").read_text()
    assert "scipy.stats.ttest_rel" in text
    assert "(≥ 2 needed); 1 cell(s) had fewer: no mark" in text
    assert "\\dag" not in "".join(sum(tex_rows(folder / "table8.tex").values(), []))  # no CE row


def test_single_seed_table_has_no_marks_and_says_why(built, tmp_path):
    suites = get_suites("table3", data="synth", seeds=(0,))
    build_reports(suites, built["runs"], tmp_path)
    text = (tmp_path / "tables" / "synth" / "table3.md").read_text()
    assert "†" not in text.split("\n- ")[0] and "needs ≥ 2 seeds" in text
    assert "0 of 15 runs missing" in text and "over 1 seed;" in text and "seeds 0;" in text


def test_cost_table(built):
    folder = built["results"] / "tables" / "synth"
    header, md = md_table(folder / "table13.md")
    assert header == ["Method", "Params (M)", "Train time (min)", "Top-1 (%)"]
    for row in built["suites"]["table13"].rows:
        secs = [built["values"][rid]["seconds"] for _, rid in built["ids"]["table13"][(row, "cost")]
                if rid in built["values"]]
        m = np.mean(secs) / 60
        assert md[row][0].strip("*").removesuffix(" (n=1)") == ("1.51" if row == "GLMC" else "1.46")
        if len(secs) == 2:
            assert f"{m:.1f} ± {np.std(secs, ddof=1) / 60:.1f}" in md[row][1]
        else:  # GLMC seed 1 is left out
            assert md[row][1].strip("*") == f"{m:.1f} (n=1)"
    # a parameter count is never bold (a property, not a result)
    assert not [r for r in md if md[r][0].startswith("**")]
    means = {row: round(np.mean([built["values"][rid]["seconds"] for _, rid in
                                 built["ids"]["table13"][(row, "cost")] if rid in built["values"]]) / 60, 1)
             for row in md}
    # shortest time in bold (random guidance is Table 8's Random-RW run, with CE's seconds)
    assert [r for r in md if md[r][1].startswith("**")] == [r for r in md if means[r] == min(means.values())]
    assert "Train time: per run, in minutes." in (folder / "table13.md").read_text()


def test_row_headers_name_what_the_rows_are(built):
    folder = built["results"] / "tables" / "synth"
    want = {"table1": "Method", "table7": "Variant", "table8": "Guidance", "table9": "Backbone",
            "table12": "Temperature", "plugin": "Method"}
    assert {t: md_table(folder / f"{t}.md")[0][0] for t in want} == want


def test_units_and_degenerate_paired_test():
    from benchmark.report_tables import _scale, paired_test

    assert _scale("hours", [100.0, 4000.0]) == (3600.0, "h", 2)
    assert _scale("hours", [100.0, 3500.0]) == (60.0, "min", 1)
    assert _scale("params", [1_462_092.0]) == (1e6, "M", 2)
    assert _scale("params", [45_916.0]) == (1e3, "K", 1)
    # equal differences: scipy's t is inf or NaN on round-off; no evidence either way, no mark
    assert np.isnan(paired_test({0: 50.0, 1: 60.0}, {0: 40.0, 1: 50.0}))
    assert np.isnan(paired_test({0: 50.0}, {0: 40.0, 1: 50.0}))  # one matched seed
    a, b = {0: 50.0, 1: 61.0, 2: 70.0}, {0: 40.0, 1: 50.0, 2: 62.0}
    assert paired_test(a, b) == pytest.approx(stats.ttest_rel([50, 61, 70], [40, 50, 62]).pvalue)


@pytest.fixture(scope="module")
def ntu_built(tmp_path_factory):
    """Every ntu suite over an empty runs folder: all runs missing, the paper's numbers shown."""
    root = tmp_path_factory.mktemp("ntu")
    (root / "runs").mkdir()
    written = build_reports(get_suites("all", data="ntu", seeds=SEEDS), root / "runs", root / "out")
    return root / "out" / "tables" / "ntu", written


def test_published_column_only_on_ntu(built, ntu_built):
    import pandas as pd

    for name in ("table1", "table3", "table13"):
        assert "Paper" not in (built["results"] / "tables" / "synth" / f"{name}.md").read_text()
    folder, written = ntu_built
    header, md = md_table(folder / "table1.md")
    assert "LT-NTU60 Paper" in header and "LT-NTU120 Paper" in header
    j = header.index("LT-NTU60 Paper") - 1
    assert md["CE"][j] == "74.4 / 86.4 / 69.5 / 63.8"
    assert md["Logit Adjustment"][j] == "--" and md["CE"][0] == "--"
    assert "80 of 80 runs missing" in (folder / "table1.md").read_text()
    _, md3 = md_table(folder / "table3.md")
    assert md3["Shap-Mix"][1::2] == ["83.0", "76.8", "73.0"]
    _, md13 = md_table(folder / "table13.md")
    assert md13["Shap-Mix (random guidance)"][-1] == "-- / 5.67 / 79.9"
    csv = pd.read_csv(folder / "table13.csv").set_index(["row", "metric"])
    assert csv.loc[("Shap-Mix (random guidance)", "hours"), "paper"] == 5.67
    assert csv.loc[("Shap-Mix (random guidance)", "hours"), "unit"] == "h"
    assert np.isnan(csv.loc[("Shap-Mix (random guidance)", "params"), "paper"]) and csv["n"].eq(0).all()
    csv1 = pd.read_csv(folder / "table1.csv").set_index(["row", "col", "metric"])
    assert csv1.loc[("Shap-Mix", "LT-NTU120", "few"), "paper"] == 69.7
    _, md7 = md_table(folder / "table7.md")  # the paper gives top-1 only here
    assert md7["Spatial + temporal"][-1] == "91.6" and "numbers for this setting (Top-1)" in \
        (folder / "table7.md").read_text()
    _, md8 = md_table(folder / "table8.md")
    assert md8["Shapley"] == ["--", "77.9", "--", "80.8"]
    for p in folder.glob("*.tex"):
        _check_latex(p.read_text())
    assert "\\resizebox{\\linewidth}" in (folder / "table1.tex").read_text()
    assert not any(p.suffix in (".png", ".pdf") for p in written)  # every figure skipped


# ------------------------------------------------------------------------- LaTeX
def _check_latex(text: str) -> None:
    bare = re.sub(r"\\[{}]", "", text)
    depth = 0
    for ch in bare:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0
    for word in ("\\toprule", "\\bottomrule", "\\begin{tabular}", "\\end{tabular}",
                 "\\caption{", "\\begin{table}", "\\end{table}"):
        assert text.count(word) == 1, word
    assert text.count("\\midrule") >= 1  # after the header, and between method families
    spec = re.search(r"\\begin\{tabular\}\{([^}]*)\}", text).group(1)
    assert set(spec) <= set("lc") and "|" not in text.split("\\begin{tabular}")[1].split("\\end")[0]
    body = text.split("\\toprule\n")[1].split("\\bottomrule")[0]
    rows = [ln for ln in body.splitlines() if ln.rstrip().endswith("\\\\")]
    assert len(rows) >= 2
    for ln in rows:
        cells = re.split(r"(?<!\\)&", ln)
        width = sum(int(m.group(1)) if (m := re.search(r"\\multicolumn\{(\d+)\}", c)) else 1
                    for c in cells)
        assert width == len(spec), ln
    caption = re.search(r"\\caption\{(.*)\}\n", text).group(1)
    assert "seed" in caption
    # the Many / Medium / Few rule only where those columns are
    assert ("100" in caption and "20" in caption) == ("Many" in text.split("\\midrule")[0])
    # every _ and % escaped (the one "{%" ends the \resizebox line on purpose)
    assert re.search(r"(?<!\\)_|(?<![\\{])%", text.split("\\begin{table}")[1]) is None


def test_latex_is_well_formed(built):
    texs = sorted((built["results"] / "tables" / "synth").glob("*.tex"))
    assert [p.stem for p in texs] == ["plugin", "table1", "table10", "table11", "table12",
                                      "table13", "table2", "table3", "table4", "table7", "table8",
                                      "table9"]
    for p in texs:
        _check_latex(p.read_text())
    text = texs[0].read_text()
    caption = text.split("\\caption{")[1].split("}\n")[0]
    assert "over 2 seeds" in caption and "seeds 0, 1" in text  # the seeds in a comment
    for p in texs:  # a paper's caption: no "Table N:", no tool words
        caption = p.read_text().split("\\caption{")[1].split("\n")[0]
        for word in ("Table ", "synth", "ddof", "scipy", "runs missing", "ttest"):
            assert word not in caption, (p.name, word, caption)


def test_latex_compiles(built, ntu_built, tmp_path):
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed on this machine (structure is checked above)")
    texs = sorted((built["results"] / "tables" / "synth").glob("*.tex"))
    for p in texs + sorted(ntu_built[0].glob("*.tex")):
        doc = tmp_path / f"{p.parent.name}_{p.stem}_doc.tex"
        doc.write_text("\\documentclass{article}\\usepackage{booktabs,graphicx}"
                       f"\\begin{{document}}\\input{{{p}}}\\end{{document}}\n")
        proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error",
                               doc.name], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout[-2000:]
        assert "Overfull" not in proc.stdout, (p, proc.stdout[-2000:])


# ------------------------------------------------------------------------- figures
def test_figures_written(built):
    folder = built["results"] / "figures" / "synth"
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(f"{s}.{e}" for s in ("fig4_per_class_synth-lt",
                                                 "table1_gain_over_ce_synth-lt",
                                                 "table3_top1_vs_imbalance")
                           for e in ("png", "pdf"))
    for p in folder.iterdir():
        head = p.read_bytes()[:8]
        assert head == (b"\x89PNG\r\n\x1a\n" if p.suffix == ".png" else b"%PDF-1.4"), p
        assert p.stat().st_size > 5000


def test_figures_share_one_style_per_method_and_one_axis_direction(built, tmp_path, monkeypatch):
    """A method has one colour and marker in every figure (its registry rank); class size
    decreases left to right in the per-class and gain figures; titles carry no tool words;
    one seed: no error bars and no sideways shift."""
    from benchmark import figures
    from benchmark.method import METHODS

    styles = {m: figures.method_style(m) for m in METHODS}
    assert len({(tuple(c), mk) for c, mk in styles.values()}) == len(styles)  # all distinct
    suites = built["suites"]
    for row, method in (("CE", "ce"), ("Shap-Mix", "shap_mix"), ("Balanced Softmax", "balanced_softmax")):
        assert figures._row_style(suites["fig4"], row) == figures._row_style(suites["table1"], row) \
            == figures._row_style(suites["table3"], row) == styles[method]
    captured = {}
    monkeypatch.setattr(figures, "_save", lambda fig, stem: captured.setdefault(stem.name, fig) and [])
    df, per_class = __import__("benchmark.report", fromlist=["scan_runs"]).scan_runs(built["runs"])
    by_id = df.set_index("run_id", drop=False)
    one_seed = {k: v[:1] for k, v in built["ids"]["table3"].items()}
    figures.per_class_figure(suites["fig4"], "Synth-LT", built["ids"]["fig4"], per_class, tmp_path)
    figures.gain_figure(suites["table1"], "Synth-LT", built["ids"]["table1"], per_class, tmp_path)
    figures.imbalance_figure(suites["table3"], one_seed, by_id, tmp_path)
    assert set(captured) == {"fig4_per_class_synth-lt", "table1_gain_over_ce_synth-lt",
                             "table3_top1_vs_imbalance"}
    for name, fig in captured.items():
        ax = fig.axes[0]
        for word in ("synth", "[", "seed mean"):
            assert word not in ax.get_title(), (name, ax.get_title())
    assert captured["fig4_per_class_synth-lt"].axes[0].xaxis_inverted()  # log x, head left
    per_class_ax = captured["fig4_per_class_synth-lt"].axes[0]
    assert "group mean (Many / Medium / Few)" in [t.get_text() for t in per_class_ax.get_legend().get_texts()]
    # gain figure: bars ordered by decreasing class size, head classes left
    gain_ax = captured["table1_gain_over_ce_synth-lt"].axes[0]
    # Shap-Mix's short-schedule warm-up (a schedule-set hparam) still makes it the default row
    for name in ("fig4_per_class_synth-lt", "table1_gain_over_ce_synth-lt"):
        labels = [t.get_text() for t in captured[name].axes[0].get_legend().get_texts()]
        assert any(t.startswith("Shap-Mix") for t in labels), (name, labels)
    ticks = [int(t.get_text()) for t in gain_ax.get_xticklabels()]
    assert ticks == sorted(ticks, reverse=True)
    # one seed: the points sit exactly on the imbalance factors (no shift), no error bars
    imb_ax = captured["table3_top1_vs_imbalance"].axes[0]
    xs = {round(float(x), 9) for line in imb_ax.get_lines() for x in line.get_xdata()}
    assert xs <= {10.0, 50.0, 100.0}, xs
    assert not imb_ax.collections  # errorbar draws its bars as a LineCollection


def test_holm_correction():
    from benchmark.report_tables import holm

    got = holm([0.01, 0.04, 0.03, float("nan")])
    assert got[:3] == pytest.approx([0.03, 0.06, 0.06]) and np.isnan(got[3])
    assert holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])
    assert holm([]) == []


def test_holm_option_marks_a_subset(built, tmp_path):
    import pandas as pd

    build_reports([built["suites"]["table1"]], built["runs"], tmp_path, correction="holm")
    plain = pd.read_csv(built["results"] / "tables" / "synth" / "table1.csv")
    corr = pd.read_csv(tmp_path / "tables" / "synth" / "table1.csv")
    top = corr[corr.metric == "top1"]
    assert set(corr.index[corr.dagger]) <= set(plain.index[plain.dagger])
    tested = top.dropna(subset=["p_vs_reference"])
    from benchmark.report_tables import holm

    assert tested["p_adjusted"].tolist() == pytest.approx(holm(tested["p_vs_reference"].tolist()))
    assert (tested["dagger"] == (tested["p_adjusted"] < 0.05)).all()
    assert "Holm-corrected" in (tmp_path / "tables" / "synth" / "table1.md").read_text()
    with pytest.raises(BenchmarkError, match="unknown correction"):
        build_reports([built["suites"]["table1"]], built["runs"], tmp_path, correction="bonf")


def test_table1_rows_grouped_by_family(built):
    from benchmark.method import METHODS

    suite = built["suites"]["table1"]
    fams = [suite.groups[r] for r in suite.rows]
    # each family is one contiguous block, and every label is the class's display_name
    assert len(list(dict.fromkeys(fams))) == sum(1 for i, f in enumerate(fams) if i == 0 or f != fams[i - 1])
    assert {c.row for c in suite.cells} == {METHODS.get(c.spec.method).display_name for c in suite.cells}
    tex = (built["results"] / "tables" / "synth" / "table1.tex").read_text()
    changes = sum(1 for i in range(1, len(fams)) if fams[i] != fams[i - 1])
    assert tex.count("\\midrule") == 1 + changes


def test_rebuild_is_byte_identical(built):
    res = built["results"]

    def digest() -> dict[str, str]:
        return {str(p.relative_to(res)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(res.rglob("*")) if p.is_file()}

    before = digest()
    assert len(before) == 1 + 12 * 3 + 6
    shutil.rmtree(res / "tables")
    shutil.rmtree(res / "figures")
    build_reports(list(built["suites"].values()), built["runs"], res)
    assert digest() == before


# ------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("content, needle", [
    ("{not json", "malformed JSON"),
    ('{"spec": {"dataset": "synth", "method": "ce", "seed": 0}, "top1": 1.5}', "'top1'"),
    ('{"top1": 0.5}', "'spec'"),
    ("[1, 2]", "JSON object"),
])
def test_corrupt_final_json_is_one_line_error(tmp_path, content, needle):
    bad = tmp_path / "runs" / "abc123abc123"
    bad.mkdir(parents=True)
    (bad / "final.json").write_text(content)
    (bad / "done").write_text("x\n")
    with pytest.raises(BenchmarkError) as e:
        collect(tmp_path / "runs")
    msg = str(e.value)
    assert str(bad / "final.json") in msg and needle in msg and "\n" not in msg


def test_cli_report(built, tmp_path):
    out = tmp_path / "out"
    proc = run_cli("report", "--data", "synth", "--suite", "table3,table13", "--seeds", "0,1",
                   "--runs", built["runs"], "--results", out)
    assert proc.returncode == 0, proc.stderr
    for rel in ("summary.csv", "tables/synth/table3.md", "tables/synth/table3.tex",
                "tables/synth/table13.csv", "figures/synth/table3_top1_vs_imbalance.pdf"):
        assert (out / rel).is_file() and str(out / rel) in proc.stdout, rel
    assert (out / "tables/synth/table3.md").read_bytes() == \
        (built["results"] / "tables/synth/table3.md").read_bytes()
    runs = tmp_path / "runs"
    shutil.copytree(built["runs"], runs)
    victim = sorted(runs.glob("*/final.json"))[0]
    victim.write_text(victim.read_text()[:50])
    proc = run_cli("report", "--data", "synth", "--suite", "table3", "--runs", runs,
                   "--results", tmp_path / "out2")
    assert_one_line_error(proc, str(victim), "malformed JSON")


def test_fused_rows_are_the_ensembles_of_their_member_runs(built):
    """Table 4's 2s / 4s rows: per seed, the weighted sum of the member runs' stored logits."""
    suite = built["suites"]["table4"]
    _, rows = md_table(built["results"] / "tables" / "synth" / "table4.md")
    col = suite.cols[0]
    for f in suite.fused:
        per_seed = {}
        for seed in SEEDS:
            members = [dict(built["ids"]["table4"][(m, col)])[seed] for m in f.members]
            z = [np.load(built["runs"] / m / "logits.npy").astype(np.float64) for m in members]
            y = np.load(built["runs"] / members[0] / "test_labels.npy")
            w = [PRESETS[f.preset][("j", "b", "jm", "bm")[i]] for i in range(len(z))]
            fused = sum(wi * zi for wi, zi in zip(w, z))
            per_seed[seed] = 100 * float((fused.argmax(1) == y).mean())
        mean, sd = np.mean(list(per_seed.values())), np.std(list(per_seed.values()), ddof=1)
        assert rows[f.row][0].strip("*").startswith(f"{mean:.1f} ± {sd:.1f}"), (f.row, per_seed)
    # ST-Mix per stream is tested against CE on the same stream
    csv = (built["results"] / "tables" / "synth" / "table4.csv").read_text()
    assert "ST-Mix (BM),Synth-LT,top1" in csv and ",CE (BM)," in csv
