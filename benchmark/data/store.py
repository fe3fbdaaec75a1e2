"""The prepared store: every clip of a dataset in one memory-mappable array.

Layout of a store directory (documented for users in ``datasets/README.md``)::

    data.npy       float32 (N, 3, T, V, M)   opened with np.load(mmap_mode='r')
    labels.npy     int64   (N,)              0-based class
    lengths.npy    int64   (N,)              valid frames of each clip (padding is at the end)
    names.txt      N lines                   one sample name per line, row order of data.npy
    manifest.json  dataset, shape, class count, joint layout, source checksums, versions
    splits/        optional <protocol>_{train,test}.txt name lists written at prepare time

Protocols and long-tailed subsets are name lists over this store, turned into row indices
by :meth:`Store.indices`; the data is never copied per split.
"""
from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .. import __version__
from .. import _io
from ..errors import BenchmarkError, bad_file

STORE_VERSION = 1
FILES = ("data.npy", "labels.npy", "lengths.npy", "names.txt", "manifest.json")
SPLITS_DIR = "splits"  # with FILES, everything StoreWriter (so every preparer) writes


@dataclass
class Store:
    """A prepared store opened read-only; ``data`` is a memory map, nothing is loaded eagerly."""

    root: Path
    data: np.ndarray
    labels: np.ndarray
    lengths: np.ndarray
    names: list[str]
    manifest: dict[str, Any]
    _row: dict[str, int] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def num_classes(self) -> int:
        return int(self.manifest["num_classes"])

    @property
    def layout(self) -> str:
        return str(self.manifest["layout"])

    def indices(self, names: Iterable[str], source: str | os.PathLike = "split list") -> np.ndarray:
        """Row indices of ``names`` (in the given order); every name must be in the store."""
        if not self._row:
            self._row = {n: i for i, n in enumerate(self.names)}
        names = list(names)
        missing = [n for n in names if n not in self._row]
        if missing:
            shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
            raise bad_file(source, f"{len(missing)} of {len(names)} samples are not in the store "
                                   f"{self.root}: {shown}")
        return np.fromiter((self._row[n] for n in names), dtype=np.int64, count=len(names))

    def split_names(self, protocol: str, part: str) -> list[str]:
        """Names of a protocol split written at prepare time (``splits/<protocol>_<part>.txt``)."""
        path = self.root / "splits" / f"{protocol}_{part}.txt"
        if not path.is_file():
            have = sorted(p.stem for p in (self.root / "splits").glob("*.txt"))
            raise bad_file(path, f"no such split in this store (have: {', '.join(have) or 'none'})")
        return read_name_list(path)


def read_name_list(path: str | os.PathLike) -> list[str]:
    """Read one name per line (trailing newline optional, blank lines ignored)."""
    path = Path(path)
    if not path.is_file():
        raise bad_file(path, "no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise bad_file(path, f"not a UTF-8 text list ({e.reason})") from None
    names = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not names:
        raise bad_file(path, "empty name list")
    if len(set(names)) != len(names):
        dup = next(n for i, n in enumerate(names) if n in names[:i])
        raise bad_file(path, f"duplicate sample name {dup!r}")
    return names


def open_store(root: str | os.PathLike) -> Store:
    """Open a prepared store, checking that its files agree with each other and the manifest."""
    root = Path(root)
    if not root.is_dir():
        raise bad_file(root, "no such store directory")
    for f in FILES:
        if not (root / f).is_file():
            raise bad_file(root / f, "missing: not a complete prepared store")
    try:
        manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise bad_file(root / "manifest.json", f"malformed JSON ({e})") from None
    except OSError as e:
        raise bad_file(root / "manifest.json", f"cannot read ({e.strerror})") from None
    _check_manifest(root / "manifest.json", manifest)
    try:
        data = np.load(root / "data.npy", mmap_mode="r", allow_pickle=False)
        labels = np.load(root / "labels.npy", allow_pickle=False)
        lengths = np.load(root / "lengths.npy", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise bad_file(root, f"unreadable array ({e})") from None
    try:
        names = (root / "names.txt").read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise bad_file(root / "names.txt", f"unreadable name list ({e})") from None
    n = len(names)
    if data.ndim != 5 or data.shape[0] != n or data.shape[1] != 3 or data.dtype != np.float32:
        raise bad_file(root / "data.npy", f"expected float32 ({n}, 3, T, V, M), got {data.dtype} {data.shape}")
    if labels.shape != (n,) or lengths.shape != (n,):
        raise bad_file(root, f"labels/lengths do not have one entry per name ({n})")
    if list(data.shape) != manifest.get("shape"):
        raise bad_file(root / "manifest.json", f"shape {manifest.get('shape')} != data.npy {list(data.shape)}")
    C = manifest["num_classes"]
    if labels.dtype.kind not in "iu" or (n and not 0 <= labels.min() <= labels.max() < C):
        raise bad_file(root / "labels.npy", f"expected integer labels in 0..{C - 1}")
    if lengths.dtype.kind not in "iu" or (n and not 0 <= lengths.min() <= lengths.max() <= data.shape[2]):
        raise bad_file(root / "lengths.npy", f"expected integer clip lengths in 0..{data.shape[2]}")
    return Store(root, data, labels.astype(np.int64), lengths.astype(np.int64), names, manifest)


def _check_manifest(path: Path, manifest: Any) -> None:
    """The keys every reader relies on, with their types: one line instead of a KeyError later."""
    if not isinstance(manifest, dict):
        raise bad_file(path, f"not a store manifest (a JSON {type(manifest).__name__}, not an object)")
    for key, kind in (("dataset", str), ("num_classes", int), ("layout", str), ("shape", list)):
        if not isinstance(manifest.get(key), kind) or isinstance(manifest.get(key), bool):
            raise bad_file(path, f"not a store manifest: {key!r} is missing or not a {kind.__name__}")
    if manifest["num_classes"] < 1:
        raise bad_file(path, f"num_classes must be >= 1, got {manifest['num_classes']}")


def check_replaceable(path: str | os.PathLike) -> None:
    """Refuse to replace ``path`` unless it is missing, empty, or a store of ours and nothing else.

    A store of ours has a ``manifest.json`` that parses and carries ``store_version`` and
    ``dataset``; besides the store's own entries (``FILES``, ``splits/`` with the lists its
    manifest names) it must hold nothing, so that replacing it never deletes a user's file.

    Raises:
        BenchmarkError: one line naming ``path`` and what in it is not part of a store.
    """
    path = Path(path)
    if not os.path.lexists(path):
        return
    if path.is_symlink() or not path.is_dir():
        kind = "a symbolic link" if path.is_symlink() else "a file"
        raise BenchmarkError(f"{path}: is {kind}, not a store folder; choose another output folder")
    entries = sorted(e.name for e in path.iterdir())
    if not entries:
        return
    manifest = None
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        pass
    if not (isinstance(manifest, dict) and "store_version" in manifest and "dataset" in manifest):
        raise BenchmarkError(f"{path}: not a prepared store (no manifest.json of one), refusing to "
                             f"replace it; it holds {_shown(entries)}: choose another output folder")
    foreign = [n for n in entries if n not in FILES + (SPLITS_DIR,)
               or (n == SPLITS_DIR) != (path / n).is_dir()]
    splits = path / SPLITS_DIR
    if SPLITS_DIR not in foreign and splits.is_dir():
        lists = {f"{k}.txt" for k in manifest.get("splits", []) if isinstance(k, str)}
        foreign += [f"{SPLITS_DIR}/{e.name}" for e in sorted(splits.iterdir(), key=lambda e: e.name)
                    if e.name not in lists or not e.is_file()]
    if foreign:
        raise BenchmarkError(f"{path}: holds {_shown(foreign)}, not part of a prepared store; "
                             "refusing to replace it (move those away, or choose another output folder)")


def _shown(names: Sequence[str], limit: int = 5) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


class StoreWriter:
    """Write a store into a hidden temp folder and publish it atomically on success.

    Usage::

        with StoreWriter(out, n, T=300, V=25, M=2, dataset="ntu60", num_classes=60,
                         layout="ntu25") as w:
            w.data[i] = clip          # (3, T, V, M), a memory map on disk
            w.names[i], w.labels[i], w.lengths[i] = name, label, length
            w.manifest["sources"] = {...}
            w.add_split("xsub", "train", names)

    If the block raises, nothing is published and an existing ``out`` is left untouched. An
    existing ``out`` is only replaced if it is a store and nothing else (:func:`check_replaceable`,
    checked before and after the block), and ``data.npy``'s space is reserved up front: a disk
    too small fails at the start, with one line.
    """

    def __init__(self, out: str | os.PathLike, n: int, *, T: int, V: int, M: int, dataset: str,
                 num_classes: int, layout: str, **manifest: Any):
        if n < 1:
            raise BenchmarkError(f"{out}: no clips to write")
        self.out = Path(out)
        self.shape = (n, 3, T, V, M)
        self.names: list[str | None] = [None] * n
        self.labels = np.full(n, -1, dtype=np.int64)
        self.lengths = np.zeros(n, dtype=np.int64)
        self.manifest: dict[str, Any] = {
            "dataset": dataset, "num_classes": int(num_classes), "layout": layout,
            "shape": list(self.shape), "dtype": "float32", "axes": "N,C,T,V,M",
            "store_version": STORE_VERSION,
            "versions": {"benchmark": __version__, "numpy": np.__version__,
                         "python": platform.python_version()},
            **manifest,
        }
        self._splits: dict[str, Sequence[str]] = {}
        self._ctx = None

    def add_split(self, protocol: str, part: str, names: Sequence[str]) -> None:
        self._splits[f"{protocol}_{part}"] = list(names)

    def __enter__(self) -> "StoreWriter":
        self._ctx = _io.atomic_dir(self.out, check=check_replaceable)
        self.tmp = self._ctx.__enter__()
        try:
            self.data = np.lib.format.open_memmap(self.tmp / "data.npy", mode="w+",
                                                  dtype=np.float32, shape=self.shape)
            _io.reserve_space(self.tmp / "data.npy", self.out)
        except BaseException as e:  # discard the temp folder; an OSError becomes one line
            self.data = None
            self._ctx.__exit__(type(e), e, e.__traceback__)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            try:
                self._finish()
            except BaseException as e:  # validation failed: discard the temp folder
                self.data = None
                self._ctx.__exit__(type(e), e, e.__traceback__)
                raise
        self.data = None  # close the memory map before the rename
        return bool(self._ctx.__exit__(exc_type, exc, tb))

    def _finish(self) -> None:
        if any(n is None for n in self.names):
            raise BenchmarkError(f"{self.out}: internal error, some rows were never written")
        if len(set(self.names)) != len(self.names):
            raise BenchmarkError(f"{self.out}: duplicate sample names")
        if (self.labels < 0).any() or (self.labels >= self.manifest["num_classes"]).any():
            raise BenchmarkError(f"{self.out}: label outside 0..{self.manifest['num_classes'] - 1}")
        self.data.flush()
        np.save(self.tmp / "labels.npy", self.labels)
        np.save(self.tmp / "lengths.npy", self.lengths)
        (self.tmp / "names.txt").write_text("\n".join(self.names) + "\n", encoding="utf-8")
        if self._splits:
            (self.tmp / "splits").mkdir()
            for key, names in self._splits.items():
                (self.tmp / "splits" / f"{key}.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
        self.manifest["class_counts"] = np.bincount(
            self.labels, minlength=self.manifest["num_classes"]).tolist()
        self.manifest["splits"] = sorted(self._splits)
        (self.tmp / "manifest.json").write_text(json.dumps(self.manifest, indent=2, sort_keys=True) + "\n")
