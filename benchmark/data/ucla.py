"""NW-UCLA: read the ``all_sqe/*.json`` release and write the prepared store.

Follows CTR-GCN's ``feeders/feeder_ucla.py`` (Uason-Chen/CTR-GCN): one JSON per clip with keys
``file_name``, ``label`` (1..10) and ``skeletons`` (T frames x 20 joints x [x, y, z], camera
metres, one person). The store keeps the raw camera coordinates, zero-padded at the end to the
longest clip: centring, the random view transform and min-max scaling are per-epoch steps of
the official train pipeline, so they run at load time (``benchmark.data.ucla_transforms``).

Protocol ``ucla`` is CTR-GCN's cross-view split, hard-coded as name lists in the official
feeder: train = views 1 and 2 (1,020 clips), test = view 3 (464 clips). The store's split
lists keep the ORDER of those hard-coded lists (``ucla_ctrgcn_order.txt`` beside this module:
the train list, then the val list, names only): BRL's NW-UCLA-LT recipe
(``data/ucla_data.py::get_long_tailed_data``) shuffles each class's clips in that order, so
``data splits`` over ``splits/ucla_train.txt`` gives BRL's list only in that order. The order
follows no rule of the names (it is neither sorted nor a hash order of them; all three views
share one arbitrary order of the (action, subject, take) stems), so it ships as data.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Iterable, NamedTuple

import numpy as np
from tqdm import tqdm

from .. import _io
from ..errors import BenchmarkError, bad_file
from .names import UCLA_ACTIONS, parse_ucla
from .store import StoreWriter

log = logging.getLogger(__name__)

NUM_JOINTS = 20
NUM_CLASSES = len(UCLA_ACTIONS)
TRAIN_VIEWS = (1, 2)
TEST_VIEWS = (3,)
RELEASE_FILES = 1484  # clips in the all_sqe release every CTR-GCN-family paper uses
FEEDER_ORDER_FILE = "ucla_ctrgcn_order.txt"  # package data: CTR-GCN feeder_ucla.py list order


class UCLAClip(NamedTuple):
    name: str
    skeleton: np.ndarray  # (T, 20, 3) float32, raw camera coordinates
    label: int            # 0-based
    sha256: str           # of the file's bytes


def _shape_problem(skeletons: list) -> str:
    """Name the first frame/joint that keeps ``skeletons`` from being (T, 20, 3) numbers."""
    for t, frame in enumerate(skeletons):
        if not isinstance(frame, list):
            return f"frame {t} is not a list of joints"
        if len(frame) != NUM_JOINTS:
            return f"frame {t} has {len(frame)} joints, expected {NUM_JOINTS}"
        for j, joint in enumerate(frame):
            ok = (isinstance(joint, list) and len(joint) == 3 and all(
                isinstance(c, (int, float)) and not isinstance(c, bool) for c in joint))
            if not ok:
                return f"frame {t}, joint {j} is not 3 numbers: {json.dumps(joint)[:60]}"
    return "skeletons is not a (frames, 20, 3) array of numbers"


def read_clip(path: str | os.PathLike) -> UCLAClip:
    """Read and validate one ``aXX_sYY_eZZ_vWW.json``; raises BenchmarkError naming the file."""
    path = Path(path)
    try:
        meta = parse_ucla(path.stem)
    except BenchmarkError:
        raise bad_file(path, "file name is not an NW-UCLA sample name (aXX_sYY_eZZ_vWW.json)") from None
    if meta.view not in TRAIN_VIEWS + TEST_VIEWS:
        raise bad_file(path, f"view {meta.view} is not one of 1..3")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise bad_file(path, f"cannot read ({e.strerror})") from None
    if not raw.strip():
        raise bad_file(path, "empty file")
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise bad_file(path, f"not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise bad_file(path, f"expected a JSON object, got {type(doc).__name__}")
    for key in ("skeletons", "file_name", "label"):
        if key not in doc:
            raise bad_file(path, f"missing key {key!r}")
    if doc["file_name"] != path.stem:
        raise bad_file(path, f"file_name {doc['file_name']!r} does not match the file name")
    label = doc["label"]
    if not isinstance(label, int) or isinstance(label, bool) or label - 1 != meta.label:
        raise bad_file(path, f"label {label!r} disagrees with the name (a{meta.action:02d} "
                             f"is label {meta.label + 1} of 1..{NUM_CLASSES})")
    skeletons = doc["skeletons"]
    if not isinstance(skeletons, list) or not skeletons:
        raise bad_file(path, "empty skeleton list (0 frames)")
    try:
        arr = np.array(skeletons)
    except ValueError:  # ragged nesting
        raise bad_file(path, _shape_problem(skeletons)) from None
    if arr.ndim != 3 or arr.shape[1:] != (NUM_JOINTS, 3) or arr.dtype.kind not in "if":
        raise bad_file(path, _shape_problem(skeletons))
    with np.errstate(over="ignore"):  # a value beyond float32 becomes inf, reported below
        clip = arr.astype(np.float32)
    bad = ~np.isfinite(clip)
    if bad.any():
        t, j, _ = np.argwhere(bad)[0]
        raise bad_file(path, f"NaN or infinite coordinate (frame {t}, joint {j})")
    return UCLAClip(path.stem, clip, meta.label, hashlib.sha256(raw).hexdigest())


def feeder_order_names() -> list[str]:
    """Names of CTR-GCN's ``feeders/feeder_ucla.py`` lists in their hard-coded order: the train
    list (views 1, 2; 1,020) then the val list (view 3; 464)."""
    try:
        text = (resources.files(__package__) / FEEDER_ORDER_FILE).read_text(encoding="ascii")
    except (FileNotFoundError, OSError) as e:
        raise BenchmarkError(f"package data {FEEDER_ORDER_FILE} is missing from benchmark/data "
                             f"({e}); reinstall the package") from None
    return text.split()


def in_feeder_order(names: Iterable[str]) -> list[str]:
    """``names`` in the official feeder's order; names it does not list follow, by name."""
    rank = {n: i for i, n in enumerate(feeder_order_names())}
    names = list(names)
    extra = sorted(n for n in names if n not in rank)
    if extra:
        log.warning("%d clips are not in CTR-GCN's feeder lists (e.g. %s): they follow the listed "
                    "ones, by name; long-tailed lists built from this store are not BRL's",
                    len(extra), extra[0])
    return sorted((n for n in names if n in rank), key=rank.__getitem__) + extra


def find_json_folder(raw: str | os.PathLike) -> Path:
    """``raw`` is the folder of .json files or its parent holding ``all_sqe/``."""
    raw = Path(raw)
    if not raw.is_dir():
        raise bad_file(raw, "no such folder (expected NW-UCLA all_sqe/ or its parent)")
    if (raw / "all_sqe").is_dir():
        return raw / "all_sqe"
    return raw


def read_clips(paths: list[Path], workers: int = 1) -> list[UCLAClip]:
    """Read ``paths`` in order, in ``workers`` processes, with a progress bar."""
    bar = dict(total=len(paths), desc="NW-UCLA json", unit="file", mininterval=0.5)
    if workers <= 1 or len(paths) < 2:
        return list(tqdm(map(read_clip, paths), **bar))
    # the workers die with this process, even on kill -9 (they would otherwise wait forever)
    ex = ProcessPoolExecutor(max_workers=min(workers, len(paths)), initializer=_io.die_with_parent,
                             initargs=(os.getpid(),))
    try:
        chunk = max(1, len(paths) // (8 * workers))
        return list(tqdm(ex.map(read_clip, paths, chunksize=chunk), **bar))
    finally:
        # on a bad file, do not wait for the remaining files before reporting it
        ex.shutdown(wait=True, cancel_futures=True)


def _combined_sha256(clips: Iterable[UCLAClip]) -> str:
    h = hashlib.sha256()
    for c in clips:
        h.update(f"{c.name}.json {c.sha256}\n".encode())
    return h.hexdigest()


def build_ucla_store(raw: str | os.PathLike, out: str | os.PathLike, workers: int = 1) -> None:
    """Parse every clip under ``raw`` and publish the store at ``out`` (atomically).

    Rows are sorted by name; ``data[i, :, :L]`` holds the L raw frames, the rest is zero. The
    split lists are in the official feeder's order (:func:`in_feeder_order`).
    """
    folder = find_json_folder(raw)
    # hidden files are skipped: zip tools leave "._name.json" resource forks beside real files
    paths = sorted((p for p in folder.glob("*.json") if not p.name.startswith(".")),
                   key=lambda p: p.name)
    if not paths:
        raise bad_file(folder, "no .json files (expected NW-UCLA all_sqe/aXX_sYY_eZZ_vWW.json)")
    if len(paths) != RELEASE_FILES:
        log.warning("%s: %d clips; the all_sqe release has %d", folder, len(paths), RELEASE_FILES)
    clips = read_clips(paths, workers)

    views = np.array([parse_ucla(c.name).view for c in clips])
    names = [c.name for c in clips]
    train = in_feeder_order(n for n, v in zip(names, views) if v in TRAIN_VIEWS)
    test = in_feeder_order(n for n, v in zip(names, views) if v in TEST_VIEWS)
    if not train or not test:
        raise bad_file(folder, f"{len(train)} view-1/2 and {len(test)} view-3 clips: the CTR-GCN "
                               "protocol needs both a train (views 1, 2) and a test (view 3) part")
    lengths = np.array([len(c.skeleton) for c in clips], dtype=np.int64)
    t_max = int(lengths.max())
    sources = {"format": "NW-UCLA all_sqe JSON (CTR-GCN release)", "folder": folder.name,
               "files": len(clips), "sha256": _combined_sha256(clips),
               "sha256_rule": "sha256 over '<file name> <sha256 of the file>\\n' lines in row order"}
    with StoreWriter(out, len(clips), T=t_max, V=NUM_JOINTS, M=1, dataset="ucla",
                     num_classes=NUM_CLASSES, layout="ucla20", sources=sources,
                     coordinates="raw camera metres, not centred; zero-padded at the end",
                     protocols={"ucla": "CTR-GCN cross-view: train views 1-2, test view 3; "
                                        "lists in the official feeder's order"}) as w:
        for i, c in enumerate(clips):
            # (T, V, C) -> (C, T, V); M = 1
            w.data[i, :, :lengths[i], :, 0] = c.skeleton.transpose(2, 0, 1)
            w.names[i] = c.name
        w.labels[:] = [c.label for c in clips]
        w.lengths[:] = lengths
        w.add_split("ucla", "train", train)
        w.add_split("ucla", "test", test)
    log.info("NW-UCLA: %d clips (train %d / test %d), %d classes, %d-%d frames -> %s",
             len(clips), len(train), len(test), NUM_CLASSES, lengths.min(), t_max, out)


def prepare_ucla(args: argparse.Namespace) -> None:
    """CLI adapter for ``python -m benchmark data prepare ucla --raw DIR --out DIR``."""
    if args.raw is None:
        raise BenchmarkError("ucla: --raw is required (the all_sqe folder or its parent)")
    build_ucla_store(args.raw, args.out, workers=args.workers)
