"""Benchmark the NTU raw-skeleton prepare step against the official CTR-GCN scripts.

Makes K renamed copies of each of the two real ``.skeleton`` samples in a temp folder, times
``prepare_ntu`` end to end (1 and 2 worker processes), times our per-file pipeline in one
process, and, when ``--official DIR`` points at a CTR-GCN checkout (not part of this repo;
clone it yourself, e.g. into /tmp), times the official ``get_raw_bodies_data`` + denoising +
``seq_translation`` per file and checks that its output equals our store. Prints JSON.

    python scripts/bench_ntu_prepare.py --copies 500 --official /tmp/CTR-GCN

The official modules are imported unchanged, from a scratch working directory (they create
log files and folders relative to the cwd on import). Two shims make them importable on a
current stack without editing them: stub ``h5py`` / ``sklearn`` modules (imported by
``seq_transformation.py`` but unused by the functions called) and ``np.int`` (removed in
NumPy 1.24, used when a file has dropped frames).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmark.data.ntu_parse import read_skeleton, sequence_from_raw  # noqa: E402
from benchmark.data.ntu_raw import prepare_ntu  # noqa: E402
from benchmark.data.store import open_store  # noqa: E402

SOURCES = ("S001C001P003R002A005", "S001C001P004R001A017")


def make_copies(samples: Path, raw: Path, copies: int) -> list[str]:
    """K copies of each sample under distinct valid NTU60 names (setup/camera/performer vary)."""
    raw.mkdir(parents=True)
    names = []
    for src in SOURCES:
        data = (samples / f"{src}.skeleton").read_bytes()
        for k in range(copies):
            s, c, p, r = 1 + k % 17, 1 + (k // 17) % 3, 1 + (k // 51) % 40, 1 + (k // 2040) % 2
            name = f"S{s:03d}C{c:03d}P{p:03d}R{r:03d}{src[-4:]}"
            (raw / f"{name}.skeleton").write_bytes(data)
            names.append(name)
    if len(set(names)) != len(names):
        raise SystemExit("too many copies for distinct names (max 4080 per sample)")
    return sorted(names)


def load_official(root: Path, scratch: Path, dataset_dir: str = "ntu") -> types.SimpleNamespace:
    """Import the official scripts from ``root/data/<dataset_dir>`` with ``scratch`` as cwd."""
    for mod in ("h5py", "sklearn", "sklearn.model_selection"):
        try:
            importlib.import_module(mod)
        except ImportError:
            sys.modules[mod] = types.ModuleType(mod)
    sys.modules["sklearn.model_selection"].__dict__.setdefault("train_test_split", None)
    if "int" not in np.__dict__:
        np.int = int  # removed alias; the official reader uses it for files with dropped frames
    cwd = os.getcwd()
    os.chdir(scratch)
    try:
        mods = {}
        for key, fname in (("skes", "get_raw_skes_data"), ("den", "get_raw_denoised_data"),
                           ("seq", "seq_transformation")):
            path = root / "data" / dataset_dir / f"{fname}.py"
            spec = importlib.util.spec_from_file_location(f"official_{fname}", path)
            mods[key] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mods[key])
    finally:
        os.chdir(cwd)
    return types.SimpleNamespace(**mods)


def official_sequence(off: types.SimpleNamespace, skes_dir: Path, name: str) -> np.ndarray:
    """The official pipeline for one file up to ``seq_translation``: (L, 75) or (L, 150)."""
    raw = off.skes.get_raw_bodies_data(str(skes_dir), name, {}, logging.getLogger("bench_frames_drop"))
    if len(raw["data"]) == 1:  # the per-sample branch of get_raw_denoised_data()
        joints, _ = off.den.get_one_actor_points(next(iter(raw["data"].values())), raw["num_frames"])
    else:
        joints, colors = off.den.get_two_actors_points(raw)
        joints, _ = off.den.remove_missing_frames(name, joints, colors)
    return off.seq.seq_translation([joints])[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--copies", type=int, default=500, help="copies of each real sample")
    p.add_argument("--samples", type=Path, default=REPO.parent / "shared" / "data" / "ntu-raw-samples")
    p.add_argument("--official", type=Path, default=None, help="a CTR-GCN checkout (outside this repo)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeat", type=int, default=3, help="report the best of N timings (shared machines)")
    args = p.parse_args(argv)
    if not all((args.samples / f"{s}.skeleton").is_file() for s in SOURCES):
        raise SystemExit(f"{args.samples}: the two real NTU samples are not there")
    # only our warnings on stderr; the official loggers (INFO, own file handlers) stay quiet
    logging.getLogger("benchmark").addHandler(logging.StreamHandler())
    tmp = Path(tempfile.mkdtemp(prefix="bench_ntu_"))
    result: dict = {"files": 2 * args.copies, "cpus": os.cpu_count(), "repeat": args.repeat,
                    "files_per_s": {}}
    fps = result["files_per_s"]
    try:
        raw = tmp / "nturgb+d_skeletons"
        names = make_copies(args.samples, raw, args.copies)
        def best(fn) -> float:  # files/s of the fastest of --repeat runs
            times = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            return len(names) / min(times)

        for w in args.workers:
            fps[f"ours_prepare_workers{w}"] = best(lambda: prepare_ntu(
                [raw], tmp / f"store_w{w}", "ntu60", workers=w, no_missing_list=True, progress=False))
        ours: dict[str, np.ndarray] = {}
        fps["ours_per_file_1proc"] = best(lambda: ours.update(
            {n: sequence_from_raw(read_skeleton(raw / f"{n}.skeleton"), n) for n in names}))

        if args.official is not None:
            scratch = tmp / "official_cwd"
            scratch.mkdir()
            off = load_official(args.official, scratch)
            cwd = os.getcwd()
            os.chdir(scratch)
            try:
                official: dict[str, np.ndarray] = {}
                with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
                    fps["official_per_file_1proc"] = best(lambda: official.update(
                        {n: official_sequence(off, raw, n) for n in names}))
            finally:
                os.chdir(cwd)
            store = open_store(tmp / f"store_w{args.workers[-1]}")
            diff = 0.0
            for i, n in enumerate(store.names):
                o = official[n]
                padded = np.zeros((300, 150), np.float32)  # NTU60 align_frames: zeros for actor 2
                padded[:len(o), :o.shape[1]] = o
                ours_flat = np.asarray(store.data[i]).transpose(1, 3, 2, 0).reshape(300, 150)
                diff = max(diff, float(np.abs(ours_flat - padded).max()))
                if store.lengths[i] != len(o) or not np.array_equal(ours[n], o):
                    diff = max(diff, float("inf"))
            result["official_equal_max_abs_diff"] = diff
            result["ratio_per_file"] = fps["ours_per_file_1proc"] / fps["official_per_file_1proc"]
            for w in args.workers:
                result[f"ratio_prepare_workers{w}"] = (fps[f"ours_prepare_workers{w}"]
                                                       / fps["official_per_file_1proc"])
        print(json.dumps(result, indent=2, sort_keys=True))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
