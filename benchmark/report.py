"""Reports from the stored runs: ``results/summary.csv``, the paper's tables and figures.

DomainBed's ``collect_results`` idea (facebookresearch/DomainBed): every finished run folder
(``done`` + ``final.json``, see :mod:`benchmark.runner`) becomes one row of a tidy DataFrame;
each suite of :mod:`benchmark.suites` is then rendered from that frame alone. Nothing here
trains, evaluates or reads a checkpoint, so deleting ``results/tables`` and ``results/figures``
and running the report again rebuilds them byte for byte.

    collect(runs_dir)                          one row per finished run (summary.csv)
    build_reports(suites, runs_dir, results)   summary.csv, tables/<data>/<suite>.{md,tex,csv},
                                               figures/<data>/*.{png,pdf}

Table layout, statistics and renderers live in :mod:`benchmark.report_tables`, the figures in
:mod:`benchmark.figures`.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import _io
from .errors import BenchmarkError, bad_file

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = ("run_id", "dataset", "protocol", "method", "imbalance", "n_max", "split_list",
                   "profile", "backbone", "seed", "hparams", "train", "top1", "top5", "many",
                   "medium", "few", "params_total", "train_seconds", "epochs")
SUMMARY_SORT = ("dataset", "method", "imbalance", "hparams", "profile", "seed", "run_id")
ACCURACY_KEYS = ("top1", "top5", "many", "medium", "few")
REPORT_KINDS = ("accuracy", "cost")


@dataclasses.dataclass(frozen=True)
class PerClass:
    """The per-class part of one run's final.json (the figures need it, the CSV does not)."""

    accuracy: np.ndarray          # (C,) fraction, NaN for a class without test clips
    class_counts: np.ndarray      # (C,) training clips per class


# ------------------------------------------------------------------ reading final.json
def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fraction(path: Path, d: dict[str, Any], key: str, allow_none: bool) -> float:
    v = d.get(key)
    if v is None and allow_none:
        return math.nan  # an empty group: NaN in the frame, "--" in a table, never 0
    if not _is_number(v) or not 0.0 <= v <= 1.0:
        raise bad_file(path, f"{key!r} must be a fraction in [0, 1]"
                             f"{' or null' if allow_none else ''}, got {v!r}")
    return float(v)


def load_final(path: str | os.PathLike) -> tuple[dict[str, Any], PerClass | None]:
    """Validate one final.json; return its summary row (without run_id) and per-class data.

    Raises:
        BenchmarkError: unreadable file, malformed JSON or a missing / ill-typed field; one
            line that names the file.
    """
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise bad_file(path, f"cannot read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise bad_file(path, "not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise bad_file(path, f"malformed JSON ({e.msg} at line {e.lineno} column "
                             f"{e.colno})") from None
    if not isinstance(d, dict):
        raise bad_file(path, f"expected a JSON object, got {type(d).__name__}")
    spec = d.get("spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("dataset"), str) \
            or not isinstance(spec.get("method"), str) or not isinstance(spec.get("seed"), int):
        raise bad_file(path, "no valid 'spec' object (dataset, method, seed)")
    row: dict[str, Any] = {
        "dataset": spec["dataset"], "protocol": spec.get("protocol"), "method": spec["method"],
        # the label of what the run trained on (a split list's own IF when none was given)
        "imbalance": spec.get("imbalance") if spec.get("imbalance") is not None
        else _data_label(d, "imbalance"),
        "n_max": spec.get("n_max") if spec.get("n_max") is not None else _data_label(d, "n_max"),
        "split_list": spec.get("split_list"), "profile": spec.get("profile"),
        "backbone": spec.get("backbone", "ctrgcn"), "seed": spec["seed"],
        # canonical JSON, so equal settings compare equal as strings
        "hparams": json.dumps(spec.get("hparams") or {}, sort_keys=True, separators=(",", ":")),
        "train": json.dumps(spec.get("train") or {}, sort_keys=True, separators=(",", ":")),
    }
    for key in ACCURACY_KEYS:
        row[key] = _fraction(path, d, key, allow_none=key != "top1")
    params = d.get("params")
    total = params.get("total") if isinstance(params, dict) else None
    if (params is not None and not isinstance(params, dict)) \
            or (total is not None and not _is_number(total)):
        raise bad_file(path, f"'params' must be null or {{\"total\": int, ...}}, got {params!r}")
    row["params_total"] = math.nan if total is None else float(total)  # old runs: unknown
    timing = d.get("timing")
    secs = timing.get("total_epoch_seconds") if isinstance(timing, dict) else None
    if secs is not None and (not _is_number(secs) or secs < 0):
        raise bad_file(path, f"timing.total_epoch_seconds must be a number >= 0, got {secs!r}")
    row["train_seconds"] = math.nan if secs is None else float(secs)
    epochs = d.get("epochs")
    if epochs is not None and (not isinstance(epochs, int) or isinstance(epochs, bool)):
        raise bad_file(path, f"'epochs' must be an integer, got {epochs!r}")
    row["epochs"] = epochs
    return row, _per_class(path, d)


def _data_label(d: dict[str, Any], key: str) -> Any:
    data = d.get("data")
    v = data.get(key) if isinstance(data, dict) else None
    return v if _is_number(v) else None


def _per_class(path: Path, d: dict[str, Any]) -> PerClass | None:
    acc, counts = d.get("per_class_accuracy"), d.get("class_counts")
    if acc is None and counts is None:
        return None
    if not isinstance(acc, list) or not isinstance(counts, list) or len(acc) != len(counts) \
            or not acc:
        raise bad_file(path, "per_class_accuracy and class_counts must be lists of one length")
    if not all(v is None or _is_number(v) and 0 <= v <= 1 for v in acc):
        raise bad_file(path, "per_class_accuracy must hold fractions in [0, 1] or null")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts):
        raise bad_file(path, "class_counts must hold integers >= 0")
    return PerClass(np.array([math.nan if v is None else v for v in acc], dtype=np.float64),
                    np.asarray(counts, dtype=np.int64))


def scan_runs(runs_dir: str | os.PathLike) -> tuple[pd.DataFrame, dict[str, PerClass]]:
    """Every finished run under ``runs_dir``: the summary frame and the per-class data by id.

    A folder without ``done`` is unfinished (or still training) and is left out; hidden
    folders (``.tmp`` of an atomic write, ``_sweep``) are not runs.
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise bad_file(runs_dir, "no such folder of run folders (run `python -m benchmark sweep "
                                 "run ...` first, or point --runs at it)")
    rows, per_class = [], {}
    for folder in sorted(runs_dir.iterdir()):
        if not folder.is_dir() or folder.name.startswith((".", "_")) \
                or not (folder / "done").is_file():
            continue
        final = folder / "final.json"
        try:
            if not final.is_file():  # the runner writes final.json before done
                raise bad_file(final, "missing although the run is marked done")
            row, pc = load_final(final)
        except BenchmarkError as e:  # a broken run is no result, and no table hides one
            raise BenchmarkError(f"{e} (`sweep run` redoes a broken run)") from None
        rows.append({"run_id": folder.name, **row})
        if pc is not None:
            per_class[folder.name] = pc
    df = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    if len(df):
        df = df.sort_values(list(SUMMARY_SORT), kind="stable", na_position="first")
    df = df.reset_index(drop=True)
    for key in (*ACCURACY_KEYS, "params_total", "train_seconds", "imbalance"):
        df[key] = df[key].astype(np.float64)
    return df, per_class


def collect(runs_dir: str | os.PathLike) -> pd.DataFrame:
    """One tidy row per finished run (columns ``SUMMARY_COLUMNS``; fractions, NaN = empty group)."""
    return scan_runs(runs_dir)[0]


def write_csv(path: Path, df: pd.DataFrame) -> None:
    # fixed float format and line ending: a rebuild from the same runs gives the same bytes
    _io.write_text(path, df.to_csv(index=False, float_format="%.10g", lineterminator="\n"))


# ------------------------------------------------------------------ suites -> run ids
def suite_run_ids(suite: Any, data_root: str | os.PathLike | None = None,
                  device_type: str = "cpu", by_request: dict[str, str] | None = None,
                  world_size: int = 1) -> dict[tuple[str, str], list[tuple[int, str]]]:
    """(row, col) -> [(seed, run_id)] of the suite's planned runs, the ids the sweep used
    (content-keyed: resolved on the stores under ``data_root``).

    Where a store is not here (results copied from a cluster), a run is found by the request
    recorded in its final.json (``by_request``: request key -> run id; see
    :func:`request_index`), and the report says that the data could not be checked.
    """
    import methods as _  # noqa: F401  (resolving builds each method: they must be registered)
    from .spec import normalise, resolve_run

    out: dict[tuple[str, str], list[tuple[int, str]]] = {}
    warned: set[str] = set()
    for cell in suite.cells:
        col = cell.col
        if col not in suite.cols:
            raise BenchmarkError(f"suite {suite.name}: cell ({cell.row}, {cell.col}) is not "
                                 f"one of its columns {suite.cols}")
        ids = []
        for s in suite.seeds:
            spec = normalise(dataclasses.replace(cell.spec, seed=s))
            try:
                rid = resolve_run(spec, data_root, device_type, world_size,
                                  sync_bn=world_size > 1 and device_type == "cuda").run_id
            except BenchmarkError as e:
                if by_request is None:
                    raise
                if str(e) not in warned:
                    warned.add(str(e))
                    log.warning("report %s: %s; runs matched by their recorded request instead "
                                "(their data could not be checked)", suite.name, e)
                rid = by_request.get(spec.request_key, f"missing:{spec.request_key}")
            ids.append((s, rid))
        out[(cell.row, col)] = ids
    return out


def request_index(runs_dir: str | os.PathLike) -> dict[str, str]:
    """request key -> run id of every finished run (the newest where one request was run on
    two versions of its data)."""
    from .spec import RunSpec

    found: dict[str, tuple[float, str]] = {}
    runs_dir = Path(runs_dir)
    for folder in sorted(runs_dir.iterdir()) if runs_dir.is_dir() else ():
        done = folder / "done"
        if folder.name.startswith((".", "_")) or not done.is_file():
            continue
        try:
            d = json.loads((folder / "final.json").read_text(encoding="utf-8"))
            key = d.get("request_key") or RunSpec.from_dict(d["spec"]).request_key
        except (OSError, ValueError, KeyError, TypeError, AttributeError, BenchmarkError):
            continue
        t = done.stat().st_mtime
        if key not in found or t > found[key][0]:
            found[key] = (t, folder.name)
    return {k: v for k, (_, v) in found.items()}


def fuse_rows(suite: Any, ids: dict[tuple[str, str], list[tuple[int, str]]], present: set[str],
              runs_dir: str | os.PathLike, data_root: str | os.PathLike | None = None
              ) -> list[dict[str, Any]]:
    """The entries of the suite's fused rows: per column and seed, the ensemble of its member
    rows' runs of that seed (:func:`benchmark.ensemble.ensemble`). Adds each entry's id to
    ``ids`` (an id that is not returned, because a member run is missing, is a missing cell)
    and returns summary rows for the found ones."""
    from .ensemble import ensemble, load_run
    from .report_tables import FUSED_PREFIX

    loaded: dict[str, Any] = {}
    out = []
    for f in suite.fused:
        for col in suite.cols:
            entries = []
            for seed in suite.seeds:
                members = [dict(ids.get((m, col), [])).get(seed) for m in f.members]
                fid = f"{FUSED_PREFIX}{suite.name}:{f.row}:{col}:{seed}"
                entries.append((seed, fid))
                if not all(m in present for m in members):
                    continue
                for m in members:  # a run in two fused rows (2s and 4s) is read once
                    if m not in loaded:
                        loaded[m] = load_run(Path(runs_dir) / m, data_root)
                runs = [loaded[m] for m in members]
                res = ensemble(runs, preset=f.preset)
                out.append({"run_id": fid, "dataset": suite.data, "method": f"fused:{f.row}",
                            "seed": seed, **{k: (math.nan if res[k] is None else res[k])
                                             for k in ACCURACY_KEYS},
                            "params_total": math.nan, "train_seconds": math.nan})
            ids[(f.row, col)] = entries
    return out


def build_reports(suites: list[Any], runs_dir: str | os.PathLike,
                  results_dir: str | os.PathLike, data_root: str | os.PathLike | None = None,
                  device_type: str = "cpu", world_size: int = 1,
                  correction: str = "none") -> list[Path]:
    """Write summary.csv, every table and figure of ``suites``; return the written paths.
    ``correction``: ``holm`` corrects each column's significance tests over its rows.

    A missing run is a ``--`` cell and counts in the table's footnote; a figure whose runs are
    all missing is skipped (and a stale copy of it removed), never a crash.
    """
    from . import figures, report_tables

    results_dir = Path(results_dir)
    df, per_class = scan_runs(runs_dir)
    written: list[Path] = []
    summary = results_dir / "summary.csv"
    write_csv(summary, df)
    written.append(summary)
    log.info("report: %d finished run(s) in %s", len(df), runs_dir)
    by_request = request_index(runs_dir)
    # world_size: the sweep's --gpus-per-run (a DDP run is another run than 1 process)
    run_ids = {s.name: suite_run_ids(s, data_root, device_type, by_request, world_size)
               for s in suites}
    fused_rows: list[dict[str, Any]] = []
    for s in suites:
        if getattr(s, "fused", ()):
            fused_rows += fuse_rows(s, run_ids[s.name], set(df["run_id"]), runs_dir, data_root)
    if fused_rows:
        df = pd.concat([df, pd.DataFrame(fused_rows, columns=df.columns)], ignore_index=True)
    by_id = df.set_index("run_id", drop=False)
    for suite in suites:
        if suite.kind not in REPORT_KINDS:
            continue
        table = report_tables.build_table(suite, run_ids[suite.name], by_id, correction)
        folder = results_dir / "tables" / suite.tag
        for ext, text in (("md", report_tables.to_markdown(table)),
                          ("tex", report_tables.to_latex(table))):
            _io.write_text(folder / f"{suite.name}.{ext}", text)
            written.append(folder / f"{suite.name}.{ext}")
        write_csv(folder / f"{suite.name}.csv", report_tables.to_frame(table))
        written.append(folder / f"{suite.name}.csv")
        if table.missing:
            log.info("%s: %d of %d run(s) missing", suite.name, table.missing, table.planned)
    written += figures.build_figures(suites, run_ids, by_id, per_class,
                                     results_dir / "figures")
    return written


__all__ = ["collect", "build_reports", "scan_runs", "load_final", "suite_run_ids", "PerClass"]
