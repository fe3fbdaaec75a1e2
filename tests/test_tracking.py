"""Optional TensorBoard / W&B logging (``--log``): what each tracker receives, nothing by
default, one error line before anything runs when a package is missing, and a tracker that
fails mid-run never kills the run. The real packages are not needed: stand-ins record calls."""
import json
import sys
import types

import pytest

import methods  # noqa: F401
from benchmark import tracking
from benchmark.cli import main
from benchmark.data.synth import load_synth
from benchmark.errors import BenchmarkError
from benchmark.runner import run
from benchmark.spec import RunSpec


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return load_synth(tmp_path_factory.getbasetemp() / "synth-cache", num_classes=6,
                      train_per_class=40, test_per_class=6, T=40)


def spec(store, **train):
    return RunSpec(dataset=str(store), method="ce", imbalance=10, n_max=40, profile="smoke",
                   train=train)


class Calls(list):
    def of(self, name):
        return [c[1:] for c in self if c[0] == name]


@pytest.fixture
def fakes(monkeypatch):
    """torch.utils.tensorboard and wandb stand-ins that record every call."""
    calls = Calls()

    class SummaryWriter:
        def __init__(self, log_dir=None, purge_step=None):
            calls.append(("tb_init", log_dir, purge_step))

        def __getattr__(self, name):  # add_scalar, add_figure, add_text, flush, close
            return lambda *a, **k: calls.append((f"tb_{name}", *a))

    tb = types.ModuleType("torch.utils.tensorboard")
    tb.SummaryWriter = SummaryWriter

    class Run:
        summary = types.SimpleNamespace(update=lambda d: calls.append(("wb_summary", d)))

        def log(self, values, step=None):
            calls.append(("wb_log", values, step))

        def finish(self):
            calls.append(("wb_finish",))

    wandb = types.ModuleType("wandb")
    wandb.init = lambda **kw: calls.append(("wb_init", kw)) or Run()
    wandb.Table = lambda columns, data: ("table", tuple(columns), data)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", tb)
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    return calls


def test_epoch_scalars():
    rec = {"global_epoch": 2, "lr": 0.1, "loss": 1.5, "loss_terms": {"loss0": 1.0, "loss1": 0.5},
           "top1": 0.5, "top5": 0.9, "many": None, "medium": 0.6, "few": 0.1}
    assert tracking.epoch_scalars(rec) == {
        "train/lr": 0.1, "train/loss": 1.5, "train/loss_loss0": 1.0, "train/loss_loss1": 0.5,
        "test/top1": 0.5, "test/top5": 0.9, "test/medium": 0.6, "test/few": 0.1}
    untested = {**rec, "loss_terms": {"loss0": 1.5}, **dict.fromkeys(tracking.METRICS)}
    assert tracking.epoch_scalars(untested) == {"train/lr": 0.1, "train/loss": 1.5}
    assert tracking.parse("tensorboard, wandb,tensorboard") == ("tensorboard", "wandb")
    with pytest.raises(BenchmarkError, match="unknown tracker"):
        tracking.parse("mlflow")


def test_both_trackers_get_every_epoch_and_the_confusion_matrix(store, tmp_path, fakes):
    plain = run(spec(store), tmp_path / "plain", threads=1)
    res = run(spec(store), tmp_path / "logged", threads=1,
              log_to_trackers=("tensorboard", "wandb"))
    assert res.run_id == plain.run_id  # logging is not part of a run
    hist = [json.loads(x) for x in (res.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(hist) == 3
    # TensorBoard: a writer in the run folder, per-epoch scalars at each epoch's step
    ((log_dir, purge),) = fakes.of("tb_init")
    assert log_dir == str(res.run_dir / "tensorboard") and purge is None
    scalars = fakes.of("tb_add_scalar")
    for h in hist:
        step = h["global_epoch"]
        got = {k: v for k, v, s in scalars if s == step and not k.startswith("final/")}
        assert got == tracking.epoch_scalars(h)
        assert {"train/loss", "train/lr", "test/top1", "test/medium", "test/few"} <= set(got)
    final = json.loads((res.run_dir / "final.json").read_text())
    assert ("final/top1", final["top1"], 2) in scalars
    ((tag, fig, step),) = fakes.of("tb_add_figure")
    assert tag == "test/confusion_matrix" and step == 2
    assert fig.axes[0].images[0].get_array().shape == (6, 6)
    assert fakes.of("tb_close")
    # W&B: the run id as W&B id (a resume continues it), the same scalars, a confusion table
    ((init,),) = fakes.of("wb_init")
    assert init["id"] == res.run_id and init["resume"] == "allow"
    assert init["dir"] == str(res.run_dir) and init["config"]["config"]["epochs"] == 3
    assert [(v, s) for v, s in fakes.of("wb_log") if s is not None] == \
        [(tracking.epoch_scalars(h), h["global_epoch"]) for h in hist]
    ((table,),) = [v.values() for v, s in fakes.of("wb_log") if s is None]
    cells = {(a, p): c for a, p, c in table[2]}
    assert table[1] == ("actual", "predicted", "count")
    assert sum(cells.values()) == sum(map(sum, final["confusion_matrix"]))
    assert fakes.of("wb_summary")[0][0]["final/top1"] == final["top1"]
    assert fakes.of("wb_finish")


def test_resumed_run_purges_events_past_its_checkpoint(store, tmp_path, fakes):
    """A resume opens TensorBoard with purge_step = the checkpoint's epochs (events a killed
    run wrote after its last checkpoint are dropped) and W&B with the same id."""
    first = run(spec(store), tmp_path, threads=1)
    (first.run_dir / "done").unlink()  # as if killed after its last checkpoint
    (first.run_dir / "final.json").unlink()
    fakes.clear()
    again = run(spec(store), tmp_path, threads=1, log_to_trackers=("tensorboard", "wandb"))
    assert again.status == "finished" and again.run_id == first.run_id
    assert fakes.of("tb_init") == [(str(first.run_dir / "tensorboard"), 3)]
    assert fakes.of("wb_init")[0][0]["id"] == first.run_id
    assert not fakes.of("tb_add_text")  # the run description only on a fresh start (step 0)
    assert fakes.of("tb_add_figure")  # the result still arrives


def test_missing_package_is_one_error_before_anything_runs(store, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    rc = main(["train", "--dataset", str(store), "--method", "ce", "--imbalance", "10",
               "--n-max", "40", "--profile", "smoke", "--out", str(tmp_path), "--log", "wandb"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("error:") == 1
    assert "--log wandb: not installed; `pip install wandb`" in err
    assert list(tmp_path.iterdir()) == []  # nothing was run or written
    rc = main(["train", "--dataset", str(store), "--method", "ce", "--set", "log=wandb"])
    assert rc == 2 and "logging is not part of a run's config; use --log" in capsys.readouterr().err


def test_a_failing_tracker_never_kills_the_run(store, tmp_path, fakes, monkeypatch, caplog):
    def boom(*a, **k):
        raise ConnectionError("network down")

    monkeypatch.setattr(sys.modules["torch.utils.tensorboard"].SummaryWriter, "add_scalar", boom,
                        raising=False)
    res = run(spec(store), tmp_path, threads=1, log_to_trackers=("tensorboard",))
    assert res.status == "finished" and (res.run_dir / "done").is_file()
    assert "--log tensorboard: failed logging (ConnectionError: network down)" in caplog.text
