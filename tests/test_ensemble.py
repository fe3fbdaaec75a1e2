"""benchmark.ensemble and the fused rows of the report, on real (tiny) runs.

Four CE runs on a small synth store, one per stream (j, b, jm, bm), are trained once; the
tests fuse their stored logits and compare with the runs' own final.json and with the sums
computed here by hand.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import methods  # noqa: F401
from benchmark import metrics
from benchmark.cli import main
from benchmark.ensemble import PRESETS, RunScores, ensemble, load_run, resolve_weights
from benchmark.errors import BenchmarkError
from benchmark.data.synth import load_synth
from benchmark.report import build_reports
from benchmark.spec import RunSpec
from benchmark.suites import Cell, Fused, Suite, get_suites

STREAMS = ("j", "b", "jm", "bm")


class Proc:
    def __init__(self, code, captured):
        self.returncode, self.stdout, self.stderr = code, captured.out, captured.err


def call(capsys, *args):
    code = main([str(a) for a in args])
    return Proc(code, capsys.readouterr())


def spec_of(store: Path, stream: str, method: str = "ce") -> RunSpec:
    train = {"window": 32, "epochs": 4}
    if stream != "j":
        train["stream"] = stream
    return RunSpec(dataset=str(store), method=method, imbalance=10.0, n_max=40, profile="smoke",
                   train=train)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from benchmark.runner import run

    store = load_synth(tmp_path_factory.getbasetemp() / "synth-cache", num_classes=6,
                       train_per_class=40, test_per_class=6, T=70)
    out = tmp_path_factory.mktemp("ens-runs")
    dirs = {s: run(spec_of(store, s), out, threads=1).run_dir for s in STREAMS}
    return store, out, dirs


def final(run_dir: Path) -> dict:
    return json.loads((run_dir / "final.json").read_text())


# ----------------------------------------------------------------------- the fusion
@pytest.mark.parametrize("which", [0, 1])
def test_one_hot_weights_reproduce_each_run(trained, which, capsys):
    _, _, dirs = trained
    pair = [dirs["j"], dirs["b"]]
    w = [1.0, 0.0] if which == 0 else [0.0, 1.0]
    res = ensemble([load_run(d) for d in pair], weights=w)
    ref = final(pair[which])
    for k in ("top1", "top5", "many", "medium", "few", "per_class_accuracy", "confusion_matrix"):
        assert res[k] == ref[k], k
    # and the same through the command line
    proc = call(capsys, "ensemble", *pair, "--weights", *w)
    assert proc.returncode == 0, proc.stderr
    assert f"top1 {100 * ref['top1']:.2f}" in proc.stdout


def test_weighted_sum_of_logits_and_of_softmax(trained):
    _, _, dirs = trained
    runs = [load_run(dirs[s]) for s in STREAMS]
    z = [np.load(dirs[s] / "logits.npy").astype(np.float64) for s in STREAMS]
    y = np.load(dirs["j"] / "test_labels.npy")
    counts = final(dirs["j"])["class_counts"]
    w = (0.6, 0.6, 0.4, 0.4)
    by_hand = sum(wi * zi for wi, zi in zip(w, z))
    res = ensemble(runs, preset="ctrgcn-4s")
    assert res["weights"] == list(w)
    ref = metrics.summarize(by_hand, y, counts)
    assert res["top1"] == ref["top1"] and res["confusion_matrix"] == ref["confusion_matrix"]
    soft = [np.exp(zi - zi.max(1, keepdims=True)) for zi in z]
    soft = sum(wi * s / s.sum(1, keepdims=True) for wi, s in zip(w, soft))
    res = ensemble(runs, weights=w, scores="softmax")
    assert res["confusion_matrix"] == metrics.summarize(soft, y, counts)["confusion_matrix"]
    # predictions of the sum differ from every single stream somewhere (a real fusion)
    fused_pred = by_hand.argmax(1)
    assert any((fused_pred != zi.argmax(1)).any() for zi in z)


def fake(stream: str) -> RunScores:
    z = np.zeros((2, 3), np.float32)
    return RunScores(Path(stream), stream, "ce", 0, stream, z, np.array([0, 1]),
                     np.array([5, 5, 5]), {"protocol": "p", "test_sha256": "x", "num_test": 2,
                                           "num_classes": 3}, True, 0.0)


@pytest.mark.parametrize("order", [("j", "b", "jm", "bm"), ("bm", "jm", "b", "j"),
                                   ("jm", "j", "bm", "b")])
@pytest.mark.parametrize("preset", ["ctrgcn-4s", "shapmix-4s"])
def test_preset_weights_follow_each_runs_stream(order, preset):
    w = resolve_weights([fake(s) for s in order], preset=preset)
    assert w == [PRESETS[preset][s] for s in order]
    assert PRESETS["shapmix-4s"] == {"j": 0.6, "b": 0.6, "jm": 0.6, "bm": 0.3}
    assert PRESETS["ctrgcn-4s"] == {"j": 0.6, "b": 0.6, "jm": 0.4, "bm": 0.4}


@pytest.mark.parametrize("kwargs, needle", [
    ({"preset": "2s", "streams": ("j", "j")}, "one run of each stream j, b"),
    ({"preset": "ctrgcn-4s", "streams": ("j", "b")}, "one run of each stream"),
    ({"weights": (1.0,), "streams": ("j", "b")}, "1 weight(s) for 2 run(s)"),
    ({"weights": (0.0, 0.0), "streams": ("j", "b")}, "not all 0"),
    ({"weights": (1.0, float("nan")), "streams": ("j", "b")}, "finite"),
    ({"weights": (1.0, 1.0), "preset": "2s", "streams": ("j", "b")}, "not both"),
    ({"preset": "5s", "streams": ("j", "b")}, "unknown preset"),
])
def test_weight_errors(kwargs, needle):
    streams = kwargs.pop("streams")
    with pytest.raises(BenchmarkError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        resolve_weights([fake(s) for s in streams], **kwargs)


# ----------------------------------------------------------------------- refusals (CLI)
def test_other_test_set_is_refused(trained, tmp_path, capsys):
    _, _, dirs = trained
    other = tmp_path / "other"
    shutil.copytree(dirs["b"], other)
    d = final(other)
    d["identity"]["data"]["test_sha256"] = "0" * 64
    (other / "final.json").write_text(json.dumps(d))
    proc = call(capsys, "ensemble", dirs["j"], other, "--out", tmp_path / "e.json")
    from conftest import assert_one_line_error

    assert_one_line_error(proc, str(other), "another test set", "test clips or their order")
    assert not (tmp_path / "e.json").exists()


@pytest.mark.parametrize("damage, needle", [
    ("done", "not finished"),
    ("logits_shape", "expected float logits of shape"),
    ("logits_nan", "NaN or inf"),
    ("labels", "its test labels differ"),
    ("counts", "other class sizes"),
])
def test_damaged_run_is_refused(trained, tmp_path, capsys, damage, needle):
    from conftest import assert_one_line_error

    _, _, dirs = trained
    bad = tmp_path / "bad"
    shutil.copytree(dirs["b"], bad)
    if damage == "done":
        (bad / "done").unlink()
    elif damage.startswith("logits"):
        z = np.load(bad / "logits.npy")
        if damage == "logits_nan":
            z[0, 0] = np.nan
        else:
            z = z[:, :-1]
        np.save(bad / "logits.npy", z)
    elif damage == "labels":
        y = np.load(bad / "test_labels.npy")
        np.save(bad / "test_labels.npy", np.roll(y, 1))
    else:
        d = final(bad)
        d["class_counts"] = [c + 1 for c in d["class_counts"]]
        (bad / "final.json").write_text(json.dumps(d))
    assert_one_line_error(call(capsys, "ensemble", dirs["j"], bad), needle)


def test_old_run_without_labels_reads_them_from_the_store(trained, tmp_path, capsys):
    """A run made before test_labels.npy, with float16 logits: labels from its store."""
    store, _, dirs = trained
    old = tmp_path / "old"
    shutil.copytree(dirs["b"], old)
    (old / "test_labels.npy").unlink()
    np.save(old / "logits.npy", np.load(old / "logits.npy").astype(np.float16))
    run = load_run(old)
    assert not run.exact
    assert np.array_equal(run.labels, np.load(dirs["b"] / "test_labels.npy"))
    res = ensemble([load_run(dirs["j"]), run], weights=[0, 1])
    assert "float16" in res["runs"][1]["logits"]
    # the store gone: one line saying what is missing
    d = final(old)
    d["spec"]["dataset"] = str(tmp_path / "no-store")
    (old / "final.json").write_text(json.dumps(d))
    from conftest import assert_one_line_error

    assert_one_line_error(call(capsys, "ensemble", old), "no test_labels.npy", "--data-root")


def test_out_json(trained, tmp_path, capsys):
    _, _, dirs = trained
    out = tmp_path / "fused.json"
    proc = call(capsys, "ensemble", *(dirs[s] for s in ("bm", "b", "j", "jm")),
                "--preset", "shapmix-4s", "--out", out)
    assert proc.returncode == 0, proc.stderr
    d = json.loads(out.read_text())
    assert [r["stream"] for r in d["runs"]] == ["bm", "b", "j", "jm"]
    assert d["weights"] == [0.3, 0.6, 0.6, 0.6] and d["preset"] == "shapmix-4s"
    assert set(d) >= {"top1", "top5", "many", "medium", "few", "per_class_accuracy"}


# ----------------------------------------------------------------------- fused rows
def test_report_computes_fused_rows_from_the_member_runs(trained, tmp_path):
    store, out, dirs = trained
    rows = tuple(f"CE ({s.upper()})" for s in STREAMS)
    cells = tuple(Cell(r, "Synth", spec_of(store, s)) for r, s in zip(rows, STREAMS))
    cells += (Cell("ST-Mix (J)", "Synth", spec_of(store, "j", "st_mix")),)  # never trained
    suite = Suite("table4", "Table 4: fused", "accuracy",
                  rows + ("2s", "4s", "ST-Mix (J)", "2s-missing"), ("Synth",), ("top1",), cells,
                  (0,), "synth",
                  fused=(Fused("2s", rows[:2], "2s"), Fused("4s", rows, "ctrgcn-4s"),
                         Fused("2s-missing", ("ST-Mix (J)", rows[1]), None)))
    build_reports([suite], out, tmp_path)
    csv = (tmp_path / "tables" / "synth" / "table4.csv").read_text().splitlines()
    got = {ln.split(",")[0]: ln.split(",")[4] for ln in csv[1:]}
    exp2 = ensemble([load_run(dirs["j"]), load_run(dirs["b"])], preset="2s")["top1"]
    exp4 = ensemble([load_run(dirs[s]) for s in STREAMS], preset="ctrgcn-4s")["top1"]
    assert float(got["2s"]) == pytest.approx(100 * exp2)
    assert float(got["4s"]) == pytest.approx(100 * exp4)
    assert got["2s-missing"] == "" and got["ST-Mix (J)"] == ""
    md = (tmp_path / "tables" / "synth" / "table4.md").read_text()
    assert "1 of 5 runs missing" in md  # the fused rows are not runs of their own


def test_suites_list_the_four_new_tables():
    for data in ("synth", "ucla", "ntu"):
        names = [s.name for s in get_suites("all", data)]
        assert {"table4", "table10", "table11", "table12"} <= set(names)
    (t4,) = get_suites("table4", "ntu")
    assert t4.cols == ("NTU60 xsub", "NTU60 xview", "NTU120 xsub", "NTU120 xset")
    assert t4.published[("4s-Ours", "NTU120 xset")] == (91.7,)
    assert {f.row: f.preset for f in t4.fused} == {
        "2s-CTR-GCN": "2s", "4s-CTR-GCN": "ctrgcn-4s", "2s-Ours": "2s", "4s-Ours": "shapmix-4s"}
    streams = {c.row: c.spec.train.get("stream", "j") for c in t4.cells}
    assert streams["ST-Mix (BM)"] == "bm" and streams["CE (J)"] == "j"
