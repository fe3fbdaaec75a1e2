"""Methods (and backbones) of your own without editing the repository: ``--plugin FILE.py|MODULE``
and installed packages' entry points (``ltskeleton.methods`` / ``ltskeleton.backbones``)."""
import json
import sys
import textwrap

import pytest

import methods  # noqa: F401  (the built-ins)
from benchmark import plugins
from benchmark.backbones import BACKBONES
from benchmark.data.synth import load_synth
from benchmark.errors import BenchmarkError
from benchmark.method import METHODS
from benchmark.spec import RunSpec
from benchmark.sweep import resolve_all, run_local, statuses

from conftest import REPO, assert_one_line_error, run_cli

EXAMPLE = REPO / "scripts" / "example_plugin_label_smoothing.py"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return load_synth(tmp_path_factory.getbasetemp() / "synth-cache", num_classes=6,
                      train_per_class=40, test_per_class=6, T=40)


@pytest.fixture
def isolated_registries(monkeypatch):
    """Plugins loaded by a test leave no trace in the registries other tests enumerate."""
    saved = {reg: (dict(reg._items), reg._loaded) for reg in (METHODS, BACKBONES)}
    loaded = dict(plugins._loaded)
    modules = set(sys.modules)
    yield
    for reg, (items, was) in saved.items():
        reg._items.clear()
        reg._items.update(items)
        reg._loaded = was
    plugins._loaded.clear()
    plugins._loaded.update(loaded)
    for name in set(sys.modules) - modules:
        if name.startswith(("ltskeleton_plugin_", "fake_ltsk", "mine_ltsk")):
            del sys.modules[name]


def smoke_args(store, out, *extra):
    return ["train", "--dataset", str(store), "--imbalance", "10", "--n-max", "40",
            "--profile", "smoke", "--out", str(out), "--threads", "1", *extra]


def test_example_plugin_trains_from_the_cli(store, tmp_path):
    """The README's worked example: a method in a file outside the package, registered with
    --plugin, listed, trained; the run records the plugin's code in its digest."""
    p = run_cli("methods", "label*", "--plugin", EXAMPLE)
    assert p.returncode == 0 and "label_smoothing  Label smoothing" in p.stdout
    assert "smoothing=0.1" in p.stdout
    assert "label_smoothing" not in run_cli("methods").stdout  # nothing registered without it
    p = run_cli(*smoke_args(store, tmp_path, "--plugin", EXAMPLE, "--method", "label_smoothing",
                            "--set", "smoothing=0.2"))
    assert p.returncode == 0, p.stderr
    (run_dir,) = [d for d in tmp_path.iterdir() if d.is_dir()]
    final = json.loads((run_dir / "final.json").read_text())
    assert final["spec"]["method"] == "label_smoothing"
    assert final["identity"]["hparams"] == {"smoothing": 0.2}
    assert "scripts/example_plugin_label_smoothing.py" in final["code"]["files"]
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 3
    # without the plugin the method is unknown, and the error says how to add one
    assert_one_line_error(run_cli(*smoke_args(store, tmp_path, "--method", "label_smoothing")),
                          "unknown method 'label_smoothing'", "--plugin")


def test_plugin_errors_are_one_line(tmp_path):
    dup = tmp_path / "dup.py"
    dup.write_text("from benchmark.method import Method, register_method\n\n"
                   "@register_method('ce')\nclass Mine(Method):\n    pass\n")
    broken = tmp_path / "broken.py"
    broken.write_text("import numpy\nraise RuntimeError('boom')\n")
    cases = [((tmp_path / "nope.py",), ("no such file", "nope.py")),
             ((dup,), ("'ce' is registered twice", "line 3", "choose another")),
             ((broken,), ("RuntimeError: boom", "line 2")),
             (("no_such_module_ltsk",), ("no module named 'no_such_module_ltsk'",)),
             (("not a module",), ("neither a .py file nor a dotted module name",))]
    for source, needles in cases:
        assert_one_line_error(run_cli("methods", "--plugin", *source), *needles)


def test_module_plugin_and_backbone(tmp_path, monkeypatch, isolated_registries):
    """A dotted module name on sys.path; loading it twice registers once; it may add a backbone."""
    (tmp_path / "mine_ltsk.py").write_text(textwrap.dedent('''
        from benchmark.backbones import BACKBONES
        from benchmark.backbones.ctrgcn import CTRGCN
        from benchmark.method import Method, register_method

        @register_method("mine_ltsk")
        class Mine(Method):
            display_name, family, paper, order = "Mine", "baseline", "-", 900

        @BACKBONES.register("ctrgcn_ltsk")
        class MyNet(CTRGCN):
            pass
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert plugins.load(["mine_ltsk", "mine_ltsk"]) == ["mine_ltsk"]
    assert plugins.load(["mine_ltsk"]) == ["mine_ltsk"]  # idempotent: no "registered twice"
    assert "mine_ltsk" in METHODS and "ctrgcn_ltsk" in BACKBONES
    assert plugins.canonical(str(EXAMPLE)) == str(EXAMPLE.resolve())


def _fake_distribution(site, group_lines):
    """An installed distribution as pip leaves it: a package and its dist-info on sys.path."""
    (site / "fake_ltsk").mkdir(parents=True)
    (site / "fake_ltsk" / "__init__.py").write_text("")
    (site / "fake_ltsk" / "methods.py").write_text(textwrap.dedent('''
        from benchmark.method import Method, register_method

        @register_method("ep_method_ltsk")
        class EpMethod(Method):
            display_name, family, paper, order = "EP", "baseline", "-", 901
    '''))
    (site / "fake_ltsk" / "nets.py").write_text(textwrap.dedent('''
        from benchmark.backbones import BACKBONES
        from benchmark.backbones.ctrgcn import CTRGCN

        @BACKBONES.register("ep_backbone_ltsk")
        class EpNet(CTRGCN):
            pass
    '''))
    (site / "fake_ltsk" / "broken.py").write_text("raise ImportError('needs a GPU library')\n")
    info = site / "fake_ltsk-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-ltsk\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(group_lines)


def test_installed_entry_points_register_lazily(tmp_path, monkeypatch, isolated_registries):
    site = tmp_path / "site"
    _fake_distribution(site, "[ltskeleton.methods]\nmine = fake_ltsk.methods\n\n"
                             "[ltskeleton.backbones]\nnets = fake_ltsk.nets\n")
    monkeypatch.syspath_prepend(str(site))
    METHODS._loaded = BACKBONES._loaded = False  # as in a fresh process
    assert "fake_ltsk.methods" not in sys.modules  # nothing imported before a lookup
    assert METHODS.get("ep_method_ltsk").display_name == "EP"
    assert "ep_backbone_ltsk" in BACKBONES.names()
    # and from the command line, with no flag at all
    import os
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(site)}
    p = subprocess.run([sys.executable, "-m", "benchmark", "methods", "ep_*"], cwd=REPO,
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0 and "ep_method_ltsk  EP" in p.stdout, p.stderr


def test_broken_entry_point_is_one_error(tmp_path, monkeypatch, isolated_registries):
    site = tmp_path / "site"
    _fake_distribution(site, "[ltskeleton.methods]\nbad = fake_ltsk.broken\n")
    monkeypatch.syspath_prepend(str(site))
    METHODS._loaded = False
    with pytest.raises(BenchmarkError, match=r"entry point bad = fake_ltsk.broken of fake-ltsk "
                                             r"\(group ltskeleton.methods\): ImportError: needs a GPU"):
        METHODS.get("ce")


def test_sweep_workers_get_the_plugin_and_the_folder_records_it(store, tmp_path,
                                                                isolated_registries):
    (src,) = plugins.load([str(EXAMPLE)])  # the sweep process resolves the runs itself
    runs = resolve_all([RunSpec(dataset=str(store), method="label_smoothing", imbalance=10,
                                n_max=40, profile="smoke", train={"epochs": 1})])
    plugins.record(tmp_path, [src])
    counts = run_local(runs, tmp_path, workers=1, threads=1, plugins=[src])
    assert counts["finished"] == 1 and counts["failed"] == 0, \
        (tmp_path / "_sweep" / f"{runs[0].run_id}.log").read_text()[-2000:]
    assert [s.state for s in statuses(runs, tmp_path)] == ["done"]
    # a later sweep / status / report on this folder finds the plugin without the flag
    assert plugins.load_for_sweep([], tmp_path) == [src]
    record = json.loads((tmp_path / "_sweep" / "plugins.json").read_text())
    assert record["plugins"] == [src]
    # a recorded file that is gone: one error, unless given anew under its new path
    gone = tmp_path / "elsewhere" / "example_plugin_label_smoothing.py"
    plugins.record(tmp_path, [str(gone)])
    with pytest.raises(BenchmarkError, match="no longer exists; pass --plugin"):
        plugins.load_for_sweep([], tmp_path)
    assert plugins.load_for_sweep([str(EXAMPLE)], tmp_path) == [src]
