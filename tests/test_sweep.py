"""Suites (the paper's tables as run specs) and the resumable sweep runner."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import methods  # noqa: F401  (registers every method)
from benchmark.data.synth import load_synth
from benchmark.errors import BenchmarkError
from benchmark.identity import code_digest
from benchmark.method import METHODS
from benchmark.runner import run_lock
from benchmark.spec import RunSpec, normalise
from benchmark.suites import DATA_PROFILES, get_suites, schedule_hparams, unique_runs
from benchmark.sweep import parse_shard, resolve_all, run_local, shard, state_of, statuses

from conftest import REPO, assert_one_line_error, run_cli


# ------------------------------------------------------------------------------ suites
def test_table1_covers_every_registered_method():
    (t1,) = get_suites("table1", "synth", seeds=(0,))
    assert {c.spec.method for c in t1.cells} == set(METHODS.names())
    assert len(t1.rows) == len(METHODS.names()) == 20


@pytest.mark.parametrize("data", [d for d, p in DATA_PROFILES.items() if not p.suites])  # k400:
def test_every_spec_normalises_and_shared_cells_are_one_run(data):  # Table 2 only (test_k400.py)
    suites = get_suites("all", data, seeds=(0, 1, 2))
    runs = [normalise(s) for s in unique_runs(suites)]
    assert len({r.request_key for r in runs}) == len(runs)
    ids = {s.name: {normalise(c.spec).request_key for c in s.cells} for s in suites}
    # Table 3's IF-100 CE / Shap-Mix, Table 8's Shapley-RW and Fig. 4 reuse Table 1's runs
    by_name = {s.name: s for s in suites}
    t1_ce = {normalise(c.spec).request_key for c in by_name["table1"].cells if c.row == "CE"}
    t3_ce = {normalise(c.spec).request_key for c in by_name["table3"].cells if c.row == "CE"}
    assert len(t1_ce & t3_ce) == 1  # the ladder's step at Table 1's setting (IF 100; UCLA IF 10)
    assert ids["fig4"] <= ids["table1"]
    shapley_rw = [c for c in by_name["table8"].cells if (c.row, c.col) == ("Shapley", "RW")][0]
    t1_shap = [c for c in by_name["table1"].cells if c.row == "Shap-Mix"][0]
    assert normalise(shapley_rw.spec).request_key == normalise(t1_shap.spec).request_key  # default options
    random_rw = [c for c in by_name["table8"].cells if (c.row, c.col) == ("Random", "RW")][0]
    assert normalise(random_rw.spec).request_key in ids["table13"]  # Table 13's ST-Mix row
    # three seeds per cell
    assert len(runs) == 3 * len({(r.method, json.dumps(r.hparams, sort_keys=True), r.dataset,
                                  r.imbalance, r.profile, r.backbone,
                                  json.dumps(r.train, sort_keys=True)) for r in runs})


def test_published_numbers_only_where_the_setting_matches():
    ntu = {s.name: s for s in get_suites("all", "ntu")}
    synth = {s.name: s for s in get_suites("all", "synth")}
    assert ntu["table1"].published[("Shap-Mix", "LT-NTU60")] == (80.8, 86.8, 78.4, 75.6)
    assert ntu["table3"].published[("GLMC", "IF 50")] == 75.9
    assert all(not s.published for s in synth.values())


def test_schedule_hparams_keep_shapmix_warmup_share():
    assert schedule_hparams("shap_mix", "lt") == {}  # 5 of 100 epochs: the official default
    assert schedule_hparams("shap_mix", "quick") == {"naive_estimate_epoch": 1, "naive_mix_epoch": 1}
    assert schedule_hparams("shap_mix", "cpu") == {"naive_estimate_epoch": 1, "naive_mix_epoch": 1}
    assert schedule_hparams("ce", "quick") == {}


@pytest.mark.parametrize("kwargs,needle", [
    ({"names": "table99"}, "unknown suite"), ({"data": "kinetics"}, "unknown data profile"),
    ({"profile": "fast"}, "unknown profile"), ({"seeds": ()}, "seeds")])
def test_bad_selection_is_one_error(kwargs, needle):
    with pytest.raises(BenchmarkError, match=needle):
        get_suites(**{"names": "all", "data": "synth", **kwargs})


def test_shards_are_disjoint_and_cover():
    runs = [normalise(s) for s in unique_runs(get_suites("all", "synth", seeds=(0, 1)))]
    parts = [shard(runs, i, 3) for i in (1, 2, 3)]
    ids = [r.request_key for p in parts for r in p]
    assert sorted(ids) == sorted(r.request_key for r in runs) and all(parts)
    assert parse_shard("2/3") == (2, 3) and parse_shard(None) == (1, 1)
    for bad in ("0/3", "4/3", "a/b", "3"):
        with pytest.raises(BenchmarkError, match="shard"):
            parse_shard(bad)


# ------------------------------------------------------------------------------ sweep
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return load_synth(tmp_path_factory.getbasetemp() / "synth-cache", num_classes=6,
                      train_per_class=40, test_per_class=6, T=40)


def _specs(store, methods_=("ce", "balanced_softmax"), **hp):
    return resolve_all([RunSpec(dataset=str(store), method=m, imbalance=10, n_max=40, profile="smoke",
                                hparams=dict(hp) if m == "shap_mix" else {}, train={"epochs": 2})
                        for m in methods_])


def test_states_follow_the_folder(store, tmp_path):
    (spec,) = _specs(store, ("ce",))
    assert state_of(spec, tmp_path).state == "missing"
    d = tmp_path / spec.run_id
    d.mkdir()
    assert state_of(spec, tmp_path).state == "unfinished"
    with run_lock(d):
        assert state_of(spec, tmp_path).state == "running"
    (d / "done").write_text("x")
    assert state_of(spec, tmp_path).state == "broken"  # done without a readable final.json
    (d / "final.json").write_text('{"top1": 0.5, "identity"')  # truncated
    st = state_of(spec, tmp_path)
    assert st.state == "broken" and "unreadable" in st.detail
    code = code_digest("ce")
    final = {"top1": 0.5, "identity": spec.identity, "code": code}
    (d / "final.json").write_text(json.dumps(final))
    assert state_of(spec, tmp_path).state == "done"
    # made by other code: stale, naming the file that changed
    other = {**code, "files": {**code["files"], "methods/ce.py": "0" * 64}}
    other["digest"] = "1" * 64
    (d / "final.json").write_text(json.dumps({**final, "code": other}))
    st = state_of(spec, tmp_path)
    assert st.state == "stale" and st.detail == "made by other code: methods/ce.py"


def test_sweep_runs_missing_skips_done_and_records_failures(store, tmp_path):
    good = _specs(store)
    (bad,) = resolve_all([RunSpec(dataset=str(store), method="shap_mix", imbalance=10, n_max=40,
                                  profile="smoke", hparams={"guidance": "bogus"})])
    counts = run_local(good + [bad], tmp_path, workers=2, threads=1)
    assert counts == {"done before": 0, "running elsewhere": 0, "finished": 2, "failed": 1}
    st = {s.run_id: s for s in statuses(good + [bad], tmp_path)}
    assert all(st[s.run_id].state == "done" for s in good)
    assert st[bad.run_id].state == "failed" and "guidance" in st[bad.run_id].detail
    mtimes = {s.run_id: (tmp_path / s.run_id / "final.json").stat().st_mtime_ns for s in good}
    again = run_local(good, tmp_path, workers=2, threads=1)
    assert again["done before"] == 2 and again["finished"] == 0
    assert mtimes == {s.run_id: (tmp_path / s.run_id / "final.json").stat().st_mtime_ns for s in good}


def _cli_sweep(store, out, *extra):
    # a sweep over a tiny store: `sweep run` of the smoke suite would need the full synth
    # data; this drives run_local through a small script instead, as the CLI does
    code = ("import sys, logging; logging.basicConfig(level=logging.INFO, format='%(message)s');"
            "import methods; from benchmark.spec import RunSpec;"
            "from benchmark.sweep import resolve_all, run_local;"
            f"specs=resolve_all([RunSpec(dataset={str(store)!r}, method=m, imbalance=10, n_max=40,"
            "profile='smoke', train={'epochs': 3}) for m in ('ce', 'focal')]);"
            f"run_local(specs, {str(out)!r}, workers=1, threads=1)")
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_killed_sweep_resumes_without_loss_or_duplicates(store, tmp_path):
    specs = resolve_all([RunSpec(dataset=str(store), method=m, imbalance=10, n_max=40,
                                 profile="smoke", train={"epochs": 3}) for m in ("ce", "focal")])
    proc = _cli_sweep(store, tmp_path)
    first = tmp_path / specs[0].run_id / "last.pt"
    deadline = time.monotonic() + 120
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)  # the sweep dies; its worker must die with it
    proc.wait()
    assert first.exists() and not (tmp_path / specs[0].run_id / "done").exists()
    deadline = time.monotonic() + 30
    while state_of(specs[0], tmp_path).state == "running" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert state_of(specs[0], tmp_path).state == "unfinished", "the worker outlived the sweep"
    counts = run_local(specs, tmp_path, workers=1, threads=1)
    assert counts["finished"] == 2 and counts["failed"] == 0
    for s in specs:
        lines = (tmp_path / s.run_id / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(x)["global_epoch"] for x in lines] == [0, 1, 2]
    assert "resuming run" in (tmp_path / specs[0].run_id / "log.txt").read_text()


def test_cli_status_and_list(tmp_path):
    p = run_cli("sweep", "list", "--data", "synth", "--suite", "table7", "--seeds", "0,1")
    assert p.returncode == 0 and "6 run(s) in table7" in p.stdout
    p = run_cli("sweep", "status", "--data", "synth", "--suite", "table7", "--seeds", "0",
                "--out", str(tmp_path))
    assert p.returncode == 0 and ("3 run(s): 0 done, 0 stale, 0 broken, 0 running, 0 unfinished, "
                                  "0 failed, 3 missing") in p.stdout
    assert_one_line_error(run_cli("sweep", "run", "--data", "synth", "--suite", "tabel1"),
                          "unknown suite", "tabel1")
    assert_one_line_error(run_cli("sweep", "run", "--shard", "5/4"), "shard")
    assert not (tmp_path / "_sweep").exists()


def test_backbone_suites_table9_and_plugin():
    """Table 9 (CE vs Shap-Mix per backbone, LT) and the balanced plug-in table (backbone,
    + FR-Head, + ours = ST-Mix), with the paper's numbers on ``ntu`` only."""
    from benchmark.suites import PLUGIN_BACKBONES, TABLE9_BACKBONES

    t9, plug = get_suites("table9,plugin", "ntu", seeds=(0,))
    assert t9.cols == ("CE", "Shap-Mix") and t9.rows == ("CTR-GCN", "ST-GCN++", "Info-GCN", "HD-GCN")
    assert {c.spec.backbone for c in t9.cells} == set(TABLE9_BACKBONES)
    assert {(c.spec.method, c.spec.dataset, c.spec.imbalance) for c in t9.cells} == \
        {("ce", "ntu60-xsub", 100.0), ("shap_mix", "ntu60-xsub", 100.0)}
    assert t9.published[("HD-GCN", "Shap-Mix")] == (79.8,)
    assert plug.cols == ("NTU120 xsub", "NTU120 xset") and plug.metrics == ("top1", "params")
    assert len(plug.rows) == 3 * len(PLUGIN_BACKBONES) and "2s-AGCN + FR-Head" in plug.rows
    ours = [c.spec for c in plug.cells if c.row == "CTR-GCN + Ours"]
    assert {(s.method, s.profile, s.imbalance) for s in ours} == {("st_mix", "balanced", None)}
    assert plug.published[("CTR-GCN + Ours", "NTU120 xset")] == (88.3, 1.46)
    synth = {s.name: s for s in get_suites("table9,plugin", "synth", seeds=(0,))}
    assert not synth["table9"].published and not synth["plugin"].published
    # Table 9's CTR-GCN cells are Table 1's CE and Shap-Mix runs: one run each
    (t1,) = get_suites("table1", "synth", seeds=(0,))
    keys = {normalise(c.spec).request_key for c in t1.cells}
    assert {normalise(c.spec).request_key for c in synth["table9"].cells if c.row == "CTR-GCN"} <= keys
