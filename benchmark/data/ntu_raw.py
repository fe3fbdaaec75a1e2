"""NTU RGB+D 60/120 raw ``.skeleton`` folders -> prepared store (official CTR-GCN preprocessing).

Follows CTR-GCN (Uason-Chen/CTR-GCN @ e13d758) ``data/ntu{,120}/get_raw_skes_data.py``,
``get_raw_denoised_data.py`` and ``seq_transformation.py``: per file see
:mod:`benchmark.data.ntu_parse` and :mod:`benchmark.data.ntu_denoise`.
This module finds the files, drops the official missing-skeleton samples, parses in a process
pool and writes the store: one (3, 300, 25, 2) float32 clip per file, rows sorted by name (the
official ``skes_available_name.txt`` order), plus the standard protocol name lists.

Resuming: files are parsed in chunks of ``CHUNK_SIZE``; each finished chunk is saved in
``<out>.partial/`` with a stamp (its names, file sizes and mtimes), so an interrupted run only
re-parses unfinished or changed chunks. The folder is deleted once the store is published.
The same pool then pads and transposes the chunks straight into the store's ``data.npy``
(disjoint rows per worker), which would otherwise dominate on many cores.

Raw folders: ``--raw`` may name the folder of ``.skeleton`` files or a parent whose immediate
sub-folders hold them (NTU120: ``nturgb+d_skeletons`` + ``nturgb+d_skeletons120``); the pure
function also takes several folders.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from .. import _io
from ..errors import BenchmarkError, bad_file
from .names import NTU_RE, parse_ntu
from .ntu_denoise import NOISE_LEN_THRES, NOISE_SPR_THRES1, NOISE_SPR_THRES2
from .ntu_parse import CHUNK_VERSION, MAX_FRAMES, STATS, fill_rows, parse_chunk
from .store import StoreWriter

log = logging.getLogger(__name__)

CHUNK_SIZE = 100  # files per work unit and resumable chunk file; small enough to balance workers
DATASETS = {"ntu60": {"classes": 60, "setups": 17, "copy_single": False, "official_missing": 302,
                      "official_dir": "ntu"},
            "ntu120": {"classes": 120, "setups": 32, "copy_single": True, "official_missing": 535,
                       "official_dir": "ntu120"}}
# names the official missing-skeleton lists go by (CTR-GCN statistics/ and the NTU release),
# in the order they are preferred for each dataset
_LIST_60 = ("samples_with_missing_skeletons.txt", "NTU_RGBD_samples_with_missing_skeletons.txt")
_LIST_120 = ("NTU_RGBD120_samples_with_missing_skeletons.txt",)
MISSING_LIST_NAMES = {"ntu60": _LIST_60 + _LIST_120, "ntu120": _LIST_120 + _LIST_60}


# --------------------------------------------------------------------------- inputs

def collect_skeleton_files(raw_dirs: Sequence[str | Path]) -> dict[str, Path]:
    """Name -> path of every ``*.skeleton`` file under the raw folders.

    A folder without any ``.skeleton`` file is taken as a parent and its immediate sub-folders
    are searched instead. The same sample name twice is an error.
    """
    if not raw_dirs:
        raise BenchmarkError("no raw folder given (--raw FOLDER)")
    files: dict[str, Path] = {}
    for d in map(Path, raw_dirs):
        if not d.is_dir():
            raise bad_file(d, "no such raw folder")
        found = sorted(d.glob("*.skeleton"))
        if not found:
            subs = sorted(sub for sub in d.iterdir() if sub.is_dir())
            found = sorted(p for sub in subs for p in sub.glob("*.skeleton"))
        if not found:
            raise bad_file(d, "no *.skeleton files in this folder or its sub-folders")
        for p in found:
            if p.stem in files:
                raise bad_file(p, f"duplicate sample, also found at {files[p.stem]}")
            files[p.stem] = p
    return files


def find_missing_list(raw_dirs: Sequence[str | Path], dataset: str) -> Path | None:
    """The official missing-skeleton list beside the raw data, if there is one.

    Looked for in each raw folder, its parent, and a ``statistics/`` folder in either.
    """
    for name in MISSING_LIST_NAMES[dataset]:
        for d in map(Path, raw_dirs):
            for base in (d, d.parent):
                for folder in (base, base / "statistics"):
                    if (folder / name).is_file():
                        return folder / name
    return None


def read_missing_list(path: str | Path) -> set[str]:
    """Sample names of a missing-skeleton list.

    The NTU release's copy starts with two lines of prose, CTR-GCN's has names only: lines
    containing spaces are skipped as prose, any other line must be a sample name.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise bad_file(path, "no such missing-skeleton list") from None
    except (OSError, UnicodeDecodeError) as e:
        raise bad_file(path, f"cannot read the missing-skeleton list ({e})") from None
    names = set()
    for i, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or " " in s or "\t" in s:
            continue
        if not NTU_RE.match(s):
            raise bad_file(path, f"line {i}: {s[:40]!r} is not an NTU sample name")
        names.add(s)
    if not names:
        raise bad_file(path, "no NTU sample names in this missing-skeleton list")
    return names


def _check_missing_list(path: Path, missing: set[str], dataset: str, names: Sequence[str]) -> None:
    """Catch the NTU60 list being used for NTU120, and warn on an unofficial count."""
    if dataset == "ntu120" and any(parse_ntu(n).setup > 17 for n in names) \
            and not any(parse_ntu(n).setup > 17 for n in missing):
        raise bad_file(path, "this missing-skeleton list covers NTU60 (setups 1-17) only; NTU120 needs "
                             "NTU_RGBD120_samples_with_missing_skeletons.txt")
    scope = [n for n in missing if parse_ntu(n).setup <= DATASETS[dataset]["setups"]]
    if len(scope) != DATASETS[dataset]["official_missing"]:
        log.warning("%s: %d %s samples listed, the official list has %d", path, len(scope), dataset,
                    DATASETS[dataset]["official_missing"])


def select_samples(files: dict[str, Path], dataset: str,
                   missing: set[str]) -> tuple[list[str], dict[str, int]]:
    """Sorted names to prepare and counts of the excluded ones; validates every file name."""
    info = DATASETS[dataset]
    keep, excluded = [], {"missing_skeletons": 0, "not_in_ntu60": 0}
    for name, path in files.items():
        if not NTU_RE.match(name):
            raise bad_file(path, "file name is not an NTU sample name (SsssCcccPpppRrrrAaaa.skeleton)")
        n = parse_ntu(name)
        if dataset == "ntu60" and 17 < n.setup <= 32:  # an NTU120-only file
            excluded["not_in_ntu60"] += 1
            continue
        if not 1 <= n.setup <= info["setups"]:
            raise bad_file(path, f"setup {n.setup} is outside 1..{info['setups']} of {dataset}")
        if not 1 <= n.action <= info["classes"]:
            raise bad_file(path, f"action {n.action} is outside 1..{info['classes']} of {dataset}")
        if name in missing:
            excluded["missing_skeletons"] += 1
            continue
        keep.append(name)
    if dataset != "ntu60":
        del excluded["not_in_ntu60"]
    return sorted(keep), excluded


# --------------------------------------------------------------------------- parallel chunks

def _stamp(names: list[str], paths: list[Path]) -> dict[str, Any]:
    st = [p.stat() for p in paths]
    return {"version": CHUNK_VERSION, "names": names, "stat": [[s.st_size, s.st_mtime_ns] for s in st]}


def _stamp_ok(path: Path, expected: dict[str, Any]) -> bool:
    try:
        return json.loads(path.read_text(encoding="utf-8")) == expected
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False


@contextlib.contextmanager
def _pool(workers: int) -> Iterator[cf.Executor | None]:
    """A process pool for ``workers`` > 1, else None (everything then runs in this process)."""
    if workers <= 1:
        yield None
        return
    # spawn, not fork: the parent holds threads (tqdm's monitor) that a fork would copy;
    # workers die with this process, even on kill -9 (they would otherwise wait forever)
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                initializer=_io.die_with_parent, initargs=(os.getpid(),)) as pool:
        yield pool


def _run(pool: cf.Executor | None, fn: Callable, jobs: list[tuple], done: Callable[[int, Any], None]) -> None:
    """``done(i, fn(*jobs[i]))`` for every job, in the pool (completion order) or inline."""
    if pool is None or len(jobs) == 1:
        for i, job in enumerate(jobs):
            done(i, fn(*job))
        return
    futures = {pool.submit(fn, *job): i for i, job in enumerate(jobs)}
    try:
        for fut in cf.as_completed(futures):
            done(futures[fut], fut.result())  # re-raises a worker's BenchmarkError here
    except BaseException:
        for fut in futures:
            fut.cancel()
        raise


def _bounds(n: int, chunk_size: int) -> list[tuple[int, int]]:
    return [(lo, min(lo + chunk_size, n)) for lo in range(0, n, chunk_size)]


def run_chunks(names: list[str], paths: list[Path], work: Path, pool: cf.Executor | None = None,
               chunk_size: int = CHUNK_SIZE, max_frames: int = MAX_FRAMES,
               progress: bool = True) -> list[Path]:
    """Parse every file into chunk files under ``work``; reuse finished, unchanged chunks.

    Returns the chunk files in name order (``chunk_size`` names each). A chunk's stamp
    (``.json``) is written after its ``.npz``, so a stamp always vouches for a complete chunk
    of exactly those file versions.
    """
    bounds = _bounds(len(names), chunk_size)
    chunks = [work / f"chunk_{i:05d}.npz" for i in range(len(bounds))]
    stamps = [_stamp(names[lo:hi], paths[lo:hi]) for lo, hi in bounds]
    todo = [i for i, c in enumerate(chunks)
            if not (c.is_file() and _stamp_ok(c.with_suffix(".json"), stamps[i]))]
    done = len(names) - sum(bounds[i][1] - bounds[i][0] for i in todo)
    if done:
        log.info("%s: resuming, %d of %d files already parsed", work, done, len(names))
    if not todo:
        return chunks
    _io.make_dirs(work)
    jobs = [(str(chunks[i]), names[slice(*bounds[i])], [str(p) for p in paths[slice(*bounds[i])]],
             max_frames) for i in todo]
    with tqdm(total=len(names), initial=done, unit="file", desc="parse .skeleton",
              disable=None if progress else True) as bar:
        def finish(j: int, _: Any) -> None:
            i = todo[j]
            _io.write_json(chunks[i].with_suffix(".json"), stamps[i])
            bar.update(bounds[i][1] - bounds[i][0])

        _run(pool, parse_chunk, jobs, finish)
    return chunks


def _write_rows(w: StoreWriter, pool: cf.Executor | None, chunks: list[Path], names: list[str],
                chunk_size: int, copy_single: bool, progress: bool,
                paths: list[Path] | None = None) -> tuple[str, dict[str, int]]:
    """Fill the store from the chunk files; returns the inputs checksum and summed counters.

    The checksum is sha256 over "name<TAB>size<TAB>sha1-of-bytes" lines in row order. With
    ``paths`` (the raw files in name order), a chunk file that cannot be read is parsed again.
    """
    bounds = _bounds(len(names), chunk_size)
    jobs = [(str(w.data.filename), str(c), lo, copy_single, names[lo:hi],
             None if paths is None else [str(p) for p in paths[lo:hi]])
            for c, (lo, hi) in zip(chunks, bounds)]
    results: list[Any] = [None] * len(jobs)
    with tqdm(total=len(names), unit="clip", desc="write store", disable=None if progress else True) as bar:
        def finish(i: int, r: dict[str, list]) -> None:
            results[i] = r
            if r.get("reparsed"):
                log.warning("%s: unusable work file (%s), parsed its files again", chunks[i], r["reparsed"])
            bar.update(len(r["names"]))

        _run(pool, fill_rows, jobs, finish)
    inputs, stats = hashlib.sha256(), np.zeros(len(STATS), dtype=np.int64)
    for chunk, (lo, hi), r in zip(chunks, bounds, results):
        if r["names"] != names[lo:hi]:
            raise bad_file(chunk, "work file does not match the raw files, delete it and rerun")
        w.names[lo:hi] = r["names"]
        w.labels[lo:hi] = [parse_ntu(n).label for n in r["names"]]
        w.lengths[lo:hi] = r["lengths"]
        lines = (f"{n}\t{z}\t{h}\n" for n, z, h in zip(r["names"], r["sizes"], r["sha1"]))
        inputs.update("".join(lines).encode())
        stats += r["stats"]
    return inputs.hexdigest(), dict(zip(STATS, stats.tolist()))


# --------------------------------------------------------------------------- the whole pipeline

def prepare_ntu(raw_dirs: Sequence[str | Path], out: str | Path, dataset: str, workers: int = 1,
                missing_list: str | Path | None = None, no_missing_list: bool = False,
                chunk_size: int = CHUNK_SIZE, progress: bool = True) -> Path:
    """Build the ``dataset`` ('ntu60' | 'ntu120') store at ``out`` from raw ``.skeleton`` folders.

    Args:
        raw_dirs: folders of ``.skeleton`` files (or parents of such folders).
        missing_list: the official missing-skeleton list; by default it is looked for beside
            the raw data (:func:`find_missing_list`). Its samples are left out.
        no_missing_list: keep every file when no list is available (files without any body
            then fail loudly).
        workers: parsing processes. chunk_size: files per resumable work unit.

    Returns:
        ``out``. Nothing is written there unless every file was read successfully.
    """
    if dataset not in DATASETS:
        raise BenchmarkError(f"unknown NTU dataset {dataset!r} (have: {', '.join(DATASETS)})")
    info, out, raw_dirs = DATASETS[dataset], Path(out), [Path(d) for d in raw_dirs]
    files = collect_skeleton_files(raw_dirs)
    if missing_list is not None and no_missing_list:
        raise BenchmarkError("--missing-list and --no-missing-list exclude each other")
    if missing_list is None and not no_missing_list:
        missing_list = find_missing_list(raw_dirs, dataset)
        if missing_list is None:
            wanted = " or ".join(MISSING_LIST_NAMES[dataset])
            raise bad_file(raw_dirs[0], f"no official missing-skeleton list found ({wanted}, looked in the "
                                        "raw folder, its parent and their statistics/ folders); pass "
                                        "--missing-list FILE, or --no-missing-list to keep every file")
    missing = set() if missing_list is None else read_missing_list(missing_list)
    names, excluded = select_samples(files, dataset, missing)  # validates every file name
    if missing_list is not None:
        _check_missing_list(Path(missing_list), missing, dataset, list(files))
    if not names:
        raise bad_file(raw_dirs[0], f"no {dataset} samples left to prepare ({excluded})")
    log.debug("%s: %d files, %d to prepare, excluded %s", dataset, len(files), len(names), excluded)

    manifest = {
        "sources": {"raw": [str(d.resolve()) for d in raw_dirs], "skeleton_files": len(files)},
        "missing_list": None if missing_list is None else {
            "path": str(Path(missing_list).resolve()), "sha256": _io.sha256_file(missing_list),
            "names": len(missing)},
        "excluded": excluded,
        "pipeline": {"reference": f"CTR-GCN e13d758 data/{info['official_dir']}/"
                                  "{get_raw_skes_data,get_raw_denoised_data,seq_transformation}.py",
                     "noise_len_thres": NOISE_LEN_THRES, "noise_spr_thres1": NOISE_SPR_THRES1,
                     "noise_spr_thres2": NOISE_SPR_THRES2, "origin": "first actor-1 frame, joint 1",
                     "max_frames": MAX_FRAMES,
                     "single_actor_second_person": "copy" if info["copy_single"] else "zeros"},
    }
    work = out.with_name(out.name + ".partial")
    t0 = time.perf_counter()
    with _pool(workers) as pool:
        try:
            chunks = run_chunks(names, [files[n] for n in names], work, pool, chunk_size, progress=progress)
        except BaseException:
            if work.is_dir() and not any(work.glob("chunk_*.json")):  # nothing worth resuming
                shutil.rmtree(work, ignore_errors=True)
            raise
        parse_s = time.perf_counter() - t0
        with StoreWriter(out, len(names), T=MAX_FRAMES, V=25, M=2, dataset=dataset,
                         num_classes=info["classes"], layout="ntu25", **manifest) as w:
            checksum, stats = _write_rows(w, pool, chunks, names, chunk_size, info["copy_single"], progress,
                                          [files[n] for n in names])
            w.manifest["sources"]["inputs_sha256"] = checksum
            w.manifest["stats"] = stats
            _add_protocol_splits(w, dataset, names)
    shutil.rmtree(work, ignore_errors=True)
    log.info("%s: %s store with %d clips (excluded %s); parsing %.1f s, writing %.1f s", out, dataset,
             len(names), excluded, parse_s, time.perf_counter() - t0 - parse_s)
    return out


def _add_protocol_splits(w: StoreWriter, dataset: str, names: list[str]) -> None:
    from .protocols import PROTOCOLS, protocol_split

    for protocol in PROTOCOLS[dataset]:
        for part, part_names in zip(("train", "test"), protocol_split(dataset, protocol, names)):
            if part_names:  # an empty list file could not be read back; a small test set may have none
                w.add_split(protocol, part, part_names)


# --------------------------------------------------------------------------- CLI adapters

def _from_args(args: argparse.Namespace, dataset: str) -> Path:
    if args.raw is None:
        raise BenchmarkError(f"{dataset} needs --raw FOLDER (the folder of .skeleton files)")
    raw = list(args.raw) if isinstance(args.raw, (list, tuple)) else [args.raw]
    return prepare_ntu(raw, args.out, dataset, workers=args.workers, missing_list=args.missing_list,
                       no_missing_list=args.no_missing_list)


def prepare_ntu60(args: argparse.Namespace) -> Path:
    """``python -m benchmark data prepare ntu60 --raw DIR --out STORE``."""
    return _from_args(args, "ntu60")


def prepare_ntu120(args: argparse.Namespace) -> Path:
    """``python -m benchmark data prepare ntu120 --raw DIR --out STORE``."""
    return _from_args(args, "ntu120")
