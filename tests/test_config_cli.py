"""The command line as documentation: `config` lists every TrainConfig field with its value and
meaning, `--set` errors list the valid keys, every option of every command has help text; and
none of that (nor the new options) changes a run's id."""
import argparse
import dataclasses
import json

import methods  # noqa: F401
from benchmark.cli import build_parser, main
from benchmark.config import PROFILES, TrainConfig, make_config
from benchmark.identity import resolve_identity, run_id_of
from benchmark.runner import resolve_config
from benchmark.spec import RunSpec, normalise

from conftest import assert_one_line_error, run_cli


def _actions(parser, path=("python -m benchmark",)):
    """(command path, action) of every argument of every (sub)command."""
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for choice in a._choices_actions:
                yield path + (choice.dest,), choice
            for name, sub in a.choices.items():
                yield from _actions(sub, path + (name,))
        elif not isinstance(a, argparse._HelpAction):
            yield path, a


def test_every_option_of_every_command_has_help():
    missing = [f"{' '.join(path)} {'/'.join(a.option_strings) or a.dest}"
               for path, a in _actions(build_parser())
               if not a.help or a.help == argparse.SUPPRESS]
    assert not missing, missing
    assert len(list(_actions(build_parser()))) > 100  # the walk reaches the sub-commands


def test_no_suppressed_entry_in_any_help_text(capsys):
    def commands(parser, path=()):
        yield path
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sub in a.choices.items():
                    yield from commands(sub, path + (name,))

    for path in commands(build_parser()):
        try:
            main([*path, "--help"])
        except SystemExit:
            pass
        out = capsys.readouterr().out
        assert "usage:" in out and "SUPPRESS" not in out, path


def test_config_lists_every_field_with_value_and_meaning(capsys):
    assert main(["config", "--profile", "ucla", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["key"] for r in rows] == [f.name for f in dataclasses.fields(TrainConfig)]
    assert all(r["help"] for r in rows)
    by = {r["key"]: r for r in rows}
    assert by["epochs"]["value"] == 65 and by["epochs"]["default"] == 100
    assert by["batch_size"]["value"] == 16 and by["amp"]["value"] == "off"
    assert main(["config", "--profile", "smoke", "--set", "epochs=7"]) == 0
    text = capsys.readouterr().out
    assert "profile 'smoke' with --set epochs=7" in text
    line = next(ln for ln in text.splitlines() if ln.split()[:1] == ["epochs"])
    assert "7" in line and "training epochs" in line and "(default 100)" in line
    for f in dataclasses.fields(TrainConfig):
        assert f"  {f.name} " in text and f.metadata["help"] in text


def test_set_errors_list_the_valid_keys(tmp_path):
    p = run_cli("train", "--dataset", "synth", "--method", "focal", "--set", "gama=2",
                "--out", tmp_path)
    assert_one_line_error(p, "unknown --set key 'gama'", "did you mean gamma",
                          "method focal: gamma, cb_beta", "TrainConfig: epochs, milestones",
                          "python -m benchmark config")
    assert_one_line_error(run_cli("config", "--set", "epoch=3"), "known: epochs")
    assert_one_line_error(run_cli("config", "--profile", "fast"), "unknown profile", "known: lt")
    assert list(tmp_path.iterdir()) == []


def test_run_ids_unchanged_by_help_metadata_and_new_options():
    """Pinned before the field help, --plugin, --log and --gpus-per-run were added: the ids of
    the committed runs (results/runs-ucla) and the suites' request keys must not move."""
    spec = normalise(RunSpec(dataset="ucla", method="ce", profile="ucla", imbalance=10.0))
    fingerprint = {"store": "0" * 64, "layout": "ucla20", "graph": "ucla", "protocol": "ucla",
                   "num_classes": 10, "num_point": 20, "num_person": 1, "train_sha256": "1" * 64,
                   "num_train": 403, "test_sha256": "2" * 64, "num_test": 464}
    ident = resolve_identity(spec, resolve_config(spec), None, fingerprint=fingerprint)
    assert run_id_of(ident) == "cbd798bafe37"
    assert spec.request_key == "02ff7df33c4a"
    assert normalise(RunSpec(dataset="synth", method="ce", profile="quick",
                             imbalance=100.0)).request_key == "4fda681638d9"
    assert set(PROFILES) >= {"lt", "balanced", "ucla", "cpu", "quick", "smoke"}
    assert make_config("ucla").epochs == 65
