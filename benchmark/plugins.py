"""Your own methods and backbones without forking: ``--plugin`` and installed entry points.

A plugin is a Python module whose import registers something with the decorators every
built-in uses (``@register_method("name")``, ``@BACKBONES.register("name")``):

    --plugin path/to/mine.py     imported by path (under a name made from the resolved path)
    --plugin mypkg.mine          imported by module name (installed, or under the cwd)

``--plugin`` is repeatable and accepted by every command that resolves methods (``methods``,
``train``, ``eval``, ``saliency``, ``sweep run|status|list``, ``report``). A pip-installed
package registers without any flag through entry points, imported the first time a registry
is looked up (:class:`benchmark.registry.Registry`):

    [project.entry-points."ltskeleton.methods"]
    mine = "mypkg.mine"               # importing the module registers its classes

    [project.entry-points."ltskeleton.backbones"]
    mynet = "mypkg.mynet"

The built-in methods are imported first, so a plugin that reuses a registered name fails at
the plugin, as one error line. A sweep passes its plugins on to every worker and records them
in ``<out>/_sweep/plugins.json``, so a later ``sweep run | status | list`` or ``report`` on
that folder loads them without the flag (``scripts/example_plugin_label_smoothing.py`` is a
worked example).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Iterable

from .errors import BenchmarkError

log = logging.getLogger(__name__)

METHOD_GROUP = "ltskeleton.methods"
BACKBONE_GROUP = "ltskeleton.backbones"
RECORD = Path("_sweep") / "plugins.json"  # under a sweep's --out
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")

_loaded: dict[str, str] = {}  # canonical source -> module name


def add_argument(p: argparse.ArgumentParser) -> None:
    """The repeatable ``--plugin`` option (``args.plugins``)."""
    p.add_argument("--plugin", dest="plugins", action="append", default=[],
                   metavar="FILE.py|MODULE",
                   help="import your own module first so that its @register_method / backbone "
                        "classes exist (a .py file or a dotted module name; repeatable)")


def canonical(source: str) -> str:
    """A file plugin's resolved absolute path, or a module plugin's dotted name."""
    text = str(source).strip()
    if text.endswith(".py") or os.sep in text or "/" in text:
        path = Path(text).expanduser()
        if not path.is_file():
            raise BenchmarkError(f"--plugin {text}: no such file")
        return str(path.resolve())
    if not _MODULE.match(text):
        raise BenchmarkError(f"--plugin {text!r}: neither a .py file nor a dotted module name")
    return text


def load(sources: Iterable[str]) -> list[str]:
    """Import each plugin once (in order); returns their canonical sources.

    Raises:
        BenchmarkError: a missing file or module, an error raised while importing it, or a
            name it registers that is already taken; one line naming the plugin.
    """
    done = []
    for source in sources:
        key = canonical(source)
        if key not in _loaded:
            import methods  # noqa: F401  (built-ins first: a clash is the plugin's error)

            _loaded[key] = _import(key)
        if key not in done:
            done.append(key)
    return done


def _import(key: str) -> str:
    if os.path.isabs(key):
        stem = re.sub(r"\W", "_", Path(key).stem)
        name = f"ltskeleton_plugin_{stem}_{hashlib.sha256(key.encode()).hexdigest()[:8]}"
        spec = importlib.util.spec_from_file_location(name, key)
        if spec is None or spec.loader is None:
            raise BenchmarkError(f"--plugin {key}: cannot be imported as a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pickling look classes up here
        try:
            spec.loader.exec_module(module)
        except BaseException as e:
            sys.modules.pop(name, None)
            raise _failed(key, e) from None
        return name
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())  # as `python -m` has it; the console command does not
    try:
        importlib.import_module(key)
    except ModuleNotFoundError as e:
        if e.name and (key == e.name or key.startswith(e.name + ".")):  # the plugin itself
            raise BenchmarkError(f"--plugin {key}: no module named {e.name!r} (a module on "
                                 f"sys.path: installed, or under the current folder)") from None
        raise _failed(key, e) from None
    except BaseException as e:
        raise _failed(key, e) from None
    return key


def _failed(key: str, e: BaseException) -> BenchmarkError:
    if isinstance(e, (KeyboardInterrupt, SystemExit)):
        raise e
    what = str(e).splitlines()[0] if str(e) else ""
    if isinstance(e, ValueError) and "registered twice" in what:
        what += " (a built-in or another plugin has that name: choose another)"
    where = ""
    tb = e.__traceback__
    while tb is not None:  # the innermost frame in the plugin's own file
        if tb.tb_frame.f_code.co_filename == key:
            where = f" (line {tb.tb_lineno})"
        tb = tb.tb_next
    return BenchmarkError(f"--plugin {key}{where}: {type(e).__name__}: {what}")


def load_entry_points(group: str | None) -> None:
    """Import every installed package's entry point of ``group`` (``Registry`` calls this
    once, at its first lookup)."""
    if not group:
        return
    from importlib.metadata import entry_points

    import methods  # noqa: F401  (built-ins first, as for --plugin)

    for ep in entry_points(group=group):
        dist = getattr(getattr(ep, "dist", None), "name", None) or "an installed package"
        try:
            ep.load()
        except Exception as e:  # one line naming the package, never a traceback
            what = str(e).splitlines()[0] if str(e) else ""
            raise BenchmarkError(f"entry point {ep.name} = {ep.value} of {dist} (group {group}): "
                                 f"{type(e).__name__}: {what}") from None
        log.debug("plugin: %s loaded from %s (%s)", ep.value, dist, group)


# ------------------------------------------------------------------------------ sweeps
def _read(out: str | os.PathLike) -> list[str]:
    path = Path(out) / RECORD
    if not path.is_file():
        return []
    try:
        items = json.loads(path.read_text(encoding="utf-8"))["plugins"]
        return [str(i) for i in items]
    except (OSError, ValueError, KeyError, TypeError):
        raise BenchmarkError(f"{path}: unreadable; delete it and pass --plugin again") from None


def load_for_sweep(given: Iterable[str], out: str | os.PathLike) -> list[str]:
    """``--plugin`` plus the plugins recorded in ``out``, imported; returns the canonical
    list. A recorded file that moved is replaced by a ``--plugin`` file of the same name."""
    given = [canonical(s) for s in given]
    names = {Path(s).name for s in given if os.path.isabs(s)}
    old = []
    for item in _read(out):
        if os.path.isabs(item) and not Path(item).is_file():
            if Path(item).name in names:
                continue  # moved, and given anew
            raise BenchmarkError(f"{Path(out) / RECORD}: records plugin {item}, which no longer "
                                 f"exists; pass --plugin with its new path")
        old.append(item)
    return load(list(dict.fromkeys(old + given)))


def record(out: str | os.PathLike, sources: list[str]) -> None:
    """Write ``out``'s record: the canonical plugins of its latest sweep (those recorded
    before included, see :func:`load_for_sweep`)."""
    from . import _io

    path = Path(out) / RECORD
    if not sources and not path.is_file():
        return
    try:
        if _read(out) == list(sources):
            return
    except BenchmarkError:
        pass
    _io.write_json(path, {"plugins": list(sources),
                          "note": "imported by `sweep run/status/list` and `report` on this "
                                  "folder (benchmark/plugins.py)"})
