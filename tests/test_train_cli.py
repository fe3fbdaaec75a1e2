"""``python -m benchmark train | eval | methods``: exit codes, one-line errors, nothing left behind."""
import json

import numpy as np
import pytest
import torch

from benchmark.cli import main
from benchmark.data.synth import load_synth
from conftest import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return load_synth(tmp_path_factory.getbasetemp() / "synth-cache", num_classes=6,
                      train_per_class=40, test_per_class=6, T=70)


def train_args(store, out, *extra):
    return ["train", "--dataset", str(store), "--method", "ce", "--imbalance", "10", "--n-max", "40",
            "--profile", "smoke", "--out", str(out), "--set", "window=32", *extra]


class Proc:  # the fields assert_one_line_error reads, from an in-process main() call
    def __init__(self, code, captured):
        self.returncode, self.stdout, self.stderr = code, captured.out, captured.err


def call(capsys, *args):
    code = main([str(a) for a in args])
    return Proc(code, capsys.readouterr())


@pytest.fixture(scope="module")
def finished(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli-runs")
    assert main(train_args(store, out)) == 0
    (run_dir,) = [d for d in out.iterdir() if d.is_dir()]
    return out, run_dir


# ------------------------------------------------------------------------- errors
def test_unknown_method_fails_cleanly(store, tmp_path):
    out = tmp_path / "runs"
    proc = run_cli("train", "--dataset", store, "--method", "balanced_sofmax", "--out", out)
    assert_one_line_error(proc, "unknown method 'balanced_sofmax'", "did you mean balanced_softmax")
    assert not out.exists()


def test_unknown_set_key_fails_cleanly(store, tmp_path, capsys):
    out = tmp_path / "runs"
    proc = call(capsys, *train_args(store, out, "--set", "epoch=3"))
    assert_one_line_error(proc, "unknown --set key 'epoch'", "did you mean epochs")
    proc = call(capsys, *train_args(store, out, "--set", "batch_size=big"))
    assert_one_line_error(proc, "batch_size must be int")
    assert not out.exists()


def test_missing_store_says_how_to_make_it(tmp_path, capsys):
    out = tmp_path / "runs"
    proc = call(capsys, "train", "--dataset", "ntu60-xsub", "--method", "ce", "--imbalance", "100",
                "--data-root", tmp_path / "nodata", "--out", out)
    assert_one_line_error(proc, "no prepared ntu60 store", "python -m benchmark data prepare ntu60")
    assert not out.exists()


def test_unknown_option_exits_2(store, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(train_args(store, tmp_path, "--epochs", "3"))
    assert e.value.code == 2


def test_methods_lists_the_registry(capsys):
    assert main(["methods"]) == 0
    text = capsys.readouterr().out
    assert "balanced_softmax" in text and "Balanced Softmax" in text and "tau=1.0" in text
    assert main(["methods", "logit*", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["logit_adjust"]
    assert rows[0]["hparams"] == {"tau": 1.0, "posthoc": False} and rows[0]["family"]


# ------------------------------------------------------------------------- train / eval
def test_train_again_says_done(store, finished, capsys):
    out, run_dir = finished
    proc = call(capsys, *train_args(store, out))
    assert proc.returncode == 0 and "already done" in proc.stdout


def test_eval_of_our_checkpoint_reproduces_final(finished, tmp_path, capsys):
    _, run_dir = finished
    proc = call(capsys, "eval", "--checkpoint", run_dir / "last.pt", "--out", tmp_path / "e.json")
    assert proc.returncode == 0 and "top1" in proc.stdout
    got = json.loads((tmp_path / "e.json").read_text())
    final = json.loads((run_dir / "final.json").read_text())
    for k in ("top1", "top5", "many", "medium", "few", "confusion_matrix"):
        assert got[k] == final[k], k
    assert np.array_equal(np.load(tmp_path / "e.logits.npy"), np.load(run_dir / "logits.npy"))


def test_eval_of_official_state_dict(store, finished, tmp_path, capsys):
    _, run_dir = finished
    sd = torch.load(run_dir / "last.pt", weights_only=True)["model"]
    torch.save({"module." + k: v for k, v in sd.items()}, tmp_path / "official.pt")  # DDP-style keys
    args = ["eval", "--checkpoint", tmp_path / "official.pt", "--dataset", store, "--imbalance", "10",
            "--n-max", "40", "--set", "base_channel=8", "--set", "window=32", "--out", tmp_path / "o.json"]
    assert call(capsys, *args).returncode == 0
    got = json.loads((tmp_path / "o.json").read_text())
    assert got["top1"] == json.loads((run_dir / "final.json").read_text())["top1"]
    assert got["official_weights"] is True
    # the official width is 64: the 8-channel weights must not load silently
    proc = call(capsys, *args[:-6], "--set", "window=32")
    assert_one_line_error(proc, "official.pt", "shape")


def test_eval_of_a_corrupt_checkpoint(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert_one_line_error(call(capsys, "eval", "--checkpoint", bad, "--dataset", "synth"), "bad.pt")
