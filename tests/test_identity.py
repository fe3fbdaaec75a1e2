"""A run is its content (issue 13): content-keyed run ids, code digests (stale runs), split-list
labels, and the run-level failure modes (bad --threads / --out, a checkpoint of another shape,
NaN in a store, a broken final.json or last.pt, a run held by another sweep, missing stores)."""
import dataclasses
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import methods  # noqa: F401  (registers every method)
from benchmark import runner, sweep
from benchmark.ckpt import save_checkpoint
from benchmark.data.synth import load_synth
from benchmark.errors import BenchmarkError
from benchmark.identity import code_digest, store_digest
from benchmark.method import METHODS
from benchmark.runner import run, run_lock
from benchmark.spec import RunSpec, load_run_data, resolve_run

from conftest import REPO, assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """6 classes x 40 train / 6 test clips (IF 10 over n_max 40: 40 .. 4 clips)."""
    return load_synth(tmp_path_factory.getbasetemp() / "synth-cache", num_classes=6,
                      train_per_class=40, test_per_class=6, T=40)


def spec_of(store, method="ce", **kw):
    fields = {"dataset": str(store), "method": method, "imbalance": 10, "n_max": 40,
              "profile": "smoke", "train": {"epochs": 2}, **kw}
    return RunSpec(**fields)


@pytest.fixture(scope="module")
def done_run(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return run(spec_of(store), out, threads=1)


def copy_run(done_run, tmp_path):
    out = tmp_path / "runs"
    shutil.copytree(done_run.run_dir, out / done_run.run_dir.name)
    return out, out / done_run.run_dir.name


# ---------------------------------------------------------------- content-keyed run ids
def test_identity_holds_every_hyper_parameter_and_a_changed_default_is_another_run(store, monkeypatch):
    r = resolve_run(spec_of(store, "logit_adjust"))
    assert r.spec.hparams == {}  # nothing asked for ...
    assert r.identity["hparams"] == {"tau": 1.0, "posthoc": False}  # ... every default recorded
    assert r.identity["config"]["epochs"] == 2 and r.identity["config"]["lr"] == pytest.approx(0.025)
    cls = METHODS.get("logit_adjust")
    changed = dataclasses.make_dataclass("HParams", [("tau", float, 2.0), ("posthoc", bool, False)],
                                         frozen=True)
    monkeypatch.setattr(cls, "HParams", changed)
    r2 = resolve_run(spec_of(store, "logit_adjust"))
    assert r2.identity["hparams"]["tau"] == 2.0 and r2.run_id != r.run_id


def test_same_content_same_id_other_content_other_id(store, tmp_path):
    base = resolve_run(spec_of(store))
    # the same store at another path, and one override spelled two ways: one run
    copy = tmp_path / "copy"
    shutil.copytree(store, copy)
    assert resolve_run(spec_of(copy)).run_id == base.run_id
    assert resolve_run(spec_of(store, train={"epochs": 2, "base_lr": 1e-1})).run_id == base.run_id
    # other maths: precision on CUDA, DDP world size, another seed or schedule
    assert resolve_run(spec_of(store), device_type="cuda").run_id != base.run_id  # smoke: amp bf16
    assert resolve_run(spec_of(store, train={"epochs": 2, "amp": "off"}), device_type="cuda").run_id \
        == resolve_run(spec_of(store, train={"epochs": 2, "amp": "off"})).run_id
    assert resolve_run(spec_of(store), world_size=2, sync_bn=True).run_id != base.run_id
    assert resolve_run(spec_of(store), world_size=2).run_id != \
        resolve_run(spec_of(store), world_size=2, sync_bn=True).run_id
    assert resolve_run(spec_of(store, seed=1)).run_id != base.run_id
    # a store whose content differs (a label changed in its manifest's counts) is other data
    man = json.loads((copy / "manifest.json").read_text())
    assert store_digest(man) == store_digest({**man, "versions": {"numpy": "0.0"}})
    man["source_note"] = "edited"
    (copy / "manifest.json").write_text(json.dumps(man))
    assert resolve_run(spec_of(copy)).run_id != base.run_id


def write_list(store, path, imbalance, n_max=40, manifest=True):
    proc = run_cli("data", "splits", "--train-list", store / "splits" / "xsub_train.txt",
                   "--num-classes", "6", "--imbalance", str(imbalance), "--n-max", str(n_max),
                   "--out", path)
    assert proc.returncode == 0, proc.stderr
    if not manifest:
        path.with_suffix(".manifest.json").unlink()


def test_a_rewritten_split_list_is_another_run_and_a_resume_refuses_its_checkpoint(store, tmp_path):
    lst = tmp_path / "lt.txt"
    write_list(store, lst, 10)
    spec = RunSpec(str(store), "ce", split_list=str(lst), profile="smoke")
    a = resolve_run(spec)
    assert a.identity["data"]["num_train"] == len(lst.read_text().split())
    write_list(store, lst, 5)  # same path, other content
    b = resolve_run(spec)
    assert b.run_id != a.run_id
    ckpt = tmp_path / "last.pt"
    save_checkpoint(ckpt, {"spec": {"identity": a.identity}})
    with pytest.raises(BenchmarkError) as e:
        runner._resume(None, ckpt, b.identity, torch.device("cpu"))
    assert "trained on other data" in str(e.value) and "train_sha256" in str(e.value)


def test_a_run_is_labelled_by_its_list_and_contradictions_are_errors(store, tmp_path):
    lst = tmp_path / "lt.txt"
    write_list(store, lst, 10)
    cfg = runner.resolve_config(spec_of(store))
    data = load_run_data(RunSpec(str(store), "ce", split_list=str(lst), profile="smoke"), cfg)
    assert (data.describe()["imbalance"], data.describe()["n_max"]) == (10.0, 40)
    with pytest.raises(BenchmarkError, match="contradicts the list, made with IF 10"):
        load_run_data(RunSpec(str(store), "ce", split_list=str(lst), imbalance=50), cfg)
    with pytest.raises(BenchmarkError, match="--n-max 60 contradicts"):
        load_run_data(RunSpec(str(store), "ce", split_list=str(lst), n_max=60), cfg)
    bare = tmp_path / "bare.txt"  # no manifest: measured from the class sizes (40 .. 4)
    write_list(store, bare, 10, manifest=False)
    d = load_run_data(RunSpec(str(store), "ce", split_list=str(bare)), cfg).describe()
    assert d["imbalance"] == 10.0 and d["n_max"] == 40
    with pytest.raises(BenchmarkError, match="contradicts the list's class sizes"):
        load_run_data(RunSpec(str(store), "ce", split_list=str(bare), imbalance=50), cfg)
    # a manifest of another list beside it is not believed
    other = tmp_path / "other.txt"
    write_list(store, other, 5)
    shutil.copy(other.with_suffix(".manifest.json"), lst.with_suffix(".manifest.json"))
    with pytest.raises(BenchmarkError, match="describes another list"):
        load_run_data(RunSpec(str(store), "ce", split_list=str(lst)), cfg)


# ------------------------------------------------------------------------- records
def test_a_finished_run_records_identity_request_and_code(done_run):
    final = json.loads((done_run.run_dir / "final.json").read_text())
    spec_json = json.loads((done_run.run_dir / "spec.json").read_text())
    assert final["run_id"] == done_run.run_dir.name == spec_json["run_id"]
    assert final["identity"] == spec_json["identity"] and final["spec"] == spec_json["request"]
    assert final["code"]["digest"] == code_digest("ce")["digest"] == spec_json["code"]["digest"]
    assert {"methods/ce.py", "benchmark/train.py", "benchmark/backbones/ctrgcn.py"} <= set(final["code"]["files"])
    assert final["identity"]["numerics"] == {"precision": "fp32", "world_size": 1, "sync_bn": False}


def test_stale_runs_are_kept_unless_asked_and_redone_with_rerun_stale(done_run, store, tmp_path):
    out, d = copy_run(done_run, tmp_path)
    final = json.loads((d / "final.json").read_text())
    final["code"]["digest"] = "0" * 64
    final["code"]["files"]["methods/ce.py"] = "0" * 64
    (d / "final.json").write_text(json.dumps(final))
    runs = sweep.resolve_all([spec_of(store)])
    st = sweep.statuses(runs, out)[0]
    assert st.state == "stale" and "methods/ce.py" in st.detail
    counts = sweep.run_local(runs, out, threads=1)
    assert counts["done before"] == 1 and counts["finished"] == 0  # a result is kept
    counts = sweep.run_local(runs, out, threads=1, rerun_stale=True)
    assert counts["finished"] == 1 and sweep.statuses(runs, out)[0].state == "done"
    (kept,) = (out / "_stale").iterdir()  # the old run moved aside, never deleted
    assert json.loads((kept / "final.json").read_text())["code"]["digest"] == "0" * 64


def test_a_broken_final_json_is_broken_and_redone_from_the_checkpoint(done_run, store, tmp_path):
    out, d = copy_run(done_run, tmp_path)
    good = json.loads((d / "final.json").read_text())
    (d / "final.json").write_text((d / "final.json").read_text()[:40])
    (run_,) = sweep.resolve_all([spec_of(store)])
    assert sweep.statuses([run_], out)[0].state == "broken"
    again = run(spec_of(store), out, threads=1)
    assert again.status == "finished"  # last.pt holds every epoch: only the final test pass
    redone = json.loads((d / "final.json").read_text())
    assert redone["top1"] == good["top1"] and redone["per_class_accuracy"] == good["per_class_accuracy"]


def test_a_corrupt_checkpoint_says_which_file_to_delete(done_run, store, tmp_path):
    out, d = copy_run(done_run, tmp_path)
    (d / "done").unlink()
    (d / "final.json").unlink()
    (d / "last.pt").write_bytes((d / "last.pt").read_bytes()[:1000])
    with pytest.raises(BenchmarkError) as e:
        run(spec_of(store), out, threads=1)
    msg = str(e.value)
    assert f"delete {d / 'last.pt'}" in msg and "weights_only=False" not in msg and "\n" not in msg


# --------------------------------------------------------------------- run-level input
@pytest.mark.parametrize("bad", [float("inf"), float("nan"), 0.5])
def test_a_degenerate_imbalance_factor_is_refused(store, bad):
    with pytest.raises(BenchmarkError, match="finite number >= 1"):
        spec_of(store, imbalance=bad)


def test_bad_threads_and_out_are_one_line(store, tmp_path):
    args = ["train", "--dataset", store, "--method", "ce", "--imbalance", "10", "--n-max", "40",
            "--profile", "smoke"]
    for t in ("0", "-1"):
        assert_one_line_error(run_cli(*args, "--threads", t, "--out", tmp_path / "r"), "--threads")
    f = tmp_path / "afile"
    f.write_text("mine\n")
    assert_one_line_error(run_cli(*args, "--out", f), str(f), "names a file")
    assert f.read_text() == "mine\n"
    assert_one_line_error(run_cli("sweep", "run", "--threads", "0", "--out", tmp_path / "s"), "--threads")


def test_unwritable_out_and_os_errors_are_one_line(store, tmp_path, monkeypatch, capsys):
    from benchmark import cli, train_cli

    monkeypatch.setattr(runner.os, "access", lambda *a, **k: False)  # root ignores chmod
    with pytest.raises(BenchmarkError, match="not writable"):
        runner.check_out_dir(tmp_path / "new")
    monkeypatch.undo()

    def boom(args):  # an environment failure inside a command: a read-only folder
        raise PermissionError(13, "Permission denied", str(tmp_path / "x.json"))
    monkeypatch.setattr(train_cli, "_methods", boom)
    assert cli.main(["methods"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'x.json'}: Permission denied"]


def test_eval_of_a_checkpoint_on_data_of_another_shape(done_run, tmp_path_factory, tmp_path):
    other = load_synth(tmp_path_factory.getbasetemp() / "synth-cache", num_classes=5,
                       train_per_class=40, test_per_class=6, T=40)
    proc = run_cli("eval", "--checkpoint", done_run.run_dir / "last.pt", "--dataset", other,
                   "--imbalance", "10", "--n-max", "40")
    assert_one_line_error(proc, "checkpoint does not fit", "5 classes")
    out = tmp_path / "a-folder"
    out.mkdir()
    assert_one_line_error(run_cli("eval", "--checkpoint", done_run.run_dir / "last.pt",
                                  "--out", out), "--out names a folder")


def test_nan_in_a_store_stops_the_run_naming_the_clip(store, tmp_path):
    bad = tmp_path / "bad-store"
    shutil.copytree(store, bad)
    data = np.load(bad / "data.npy", mmap_mode="r+")
    names = (bad / "names.txt").read_text().split()
    train = set((bad / "splits" / "xsub_train.txt").read_text().split())
    row = next(i for i, n in enumerate(names) if n in train)
    data[row, 0, 0, 0, 0] = np.nan
    data.flush()
    del data
    proc = run_cli("train", "--dataset", bad, "--method", "ce", "--profile", "smoke",
                   "--set", "max_steps_per_epoch=100", "--set", "epochs=1", "--threads", "1",
                   "--out", tmp_path / "runs")
    assert_one_line_error(proc, "non-finite values", names[row], str(bad))
    assert not list((tmp_path / "runs").glob("*/done"))


# ---------------------------------------------------------------------------- sweeps
def test_a_missing_store_is_one_error_before_anything_runs(tmp_path):
    proc = run_cli("sweep", "run", "--data", "ucla", "--data-root", tmp_path / "none",
                   "--out", tmp_path / "runs")
    assert_one_line_error(proc, "no prepared ucla store", "data prepare ucla")
    assert not (tmp_path / "runs").exists()


def test_a_run_held_by_another_sweep_is_running_elsewhere_not_failed(store, tmp_path):
    (r,) = sweep.resolve_all([spec_of(store)])
    d = tmp_path / r.run_id
    d.mkdir()
    with run_lock(d):  # another process (here: this one) is training it
        code = sweep.run_one(json.dumps(r.spec.to_dict()), str(tmp_path), 1, "cpu", None)
        assert code == sweep.EXIT_RUNNING_ELSEWHERE
        proc = subprocess.Popen([sys.executable, "-c", f"raise SystemExit({code})"], cwd=REPO)
        proc.wait()
        job = sweep._Job(r, proc, tmp_path / "log", 0.0)
        assert sweep._finish(job, tmp_path) == "elsewhere"
        assert sweep.statuses([r], tmp_path)[0].state == "running"
    assert not (tmp_path / sweep.SWEEP_DIR / f"{r.run_id}.failed.json").exists()


def test_code_digest_ignores_comments_and_docstrings_only(tmp_path):
    """A reworded docstring or comment leaves a run's code digest alone; a changed statement,
    string literal or default does not."""
    from benchmark.identity import _file_sha

    base = ('"""Module doc."""\nimport math  # why\n\n\nclass A:\n    """Doc\n    two."""\n\n'
            '    def f(self, x=1):\n        """f."""\n        return x * 2  # twice\n'
            'S = "# kept"\n')
    same = ('"""Another module doc,\nlonger."""\nimport math\n\nclass A:\n    """New doc."""\n'
            '    def f(self, x=1):   \n        return x * 2\n\nS = "# kept"  # note\n')
    changed = [base.replace("x * 2", "x * 3"), base.replace("x=1", "x=2"),
               base.replace('"# kept"', '"# gone"'), base.replace("import math  # why", "import cmath")]

    def sha(text: str, name: str) -> str:
        p = tmp_path / name
        p.write_text(text)
        st = p.stat()
        return _file_sha(p, st.st_mtime_ns, st.st_size)

    ref = sha(base, "a.py")
    assert sha(same, "b.py") == ref
    assert len({ref, *(sha(t, f"c{i}.py") for i, t in enumerate(changed))}) == 1 + len(changed)
    assert sha("not python (", "d.py") != sha("not python  (", "e.py")  # kept whole


def test_code_digest_holds_the_runs_own_backbone_only():
    from benchmark.identity import code_digest

    ctr, info = code_digest("ce", "ctrgcn")["files"], code_digest("ce", "infogcn")["files"]
    assert "benchmark/backbones/ctrgcn.py" in ctr and "benchmark/backbones/infogcn.py" not in ctr
    assert "benchmark/backbones/infogcn.py" in info and "benchmark/backbones/base.py" in info
    assert "methods/ce.py" in ctr and "benchmark/train.py" in ctr
