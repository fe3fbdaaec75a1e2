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
    try:
        data = np.load(root / "data.npy", mmap_mode="r", allow_pickle=False)
        labels = np.load(root / "labels.npy", allow_pickle=False)
        lengths = np.load(root / "lengths.npy", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise bad_file(root, f"unreadable array ({e})") from None
    names = (root / "names.txt").read_text(encoding="utf-8").splitlines()
    n = len(names)
    if data.ndim != 5 or data.shape[0] != n or data.shape[1] != 3 or data.dtype != np.float32:
        raise bad_file(root / "data.npy", f"expected float32 ({n}, 3, T, V, M), got {data.dtype} {data.shape}")
    if labels.shape != (n,) or lengths.shape != (n,):
        raise bad_file(root, f"labels/lengths do not have one entry per name ({n})")
    if list(data.shape) != manifest.get("shape"):
        raise bad_file(root / "manifest.json", f"shape {manifest.get('shape')} != data.npy {list(data.shape)}")
    return Store(root, data, labels.astype(np.int64), lengths.astype(np.int64), names, manifest)


class StoreWriter:
    """Write a store into a hidden temp folder and publish it atomically on success.

    Usage::

        with StoreWriter(out, n, T=300, V=25, M=2, dataset="ntu60", num_classes=60,
                         layout="ntu25") as w:
            w.data[i] = clip          # (3, T, V, M), a memory map on disk
            w.names[i], w.labels[i], w.lengths[i] = name, label, length
            w.manifest["sources"] = {...}
            w.add_split("xsub", "train", names)

    If the block raises, nothing is published and an existing ``out`` is left untouched.
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
        self._ctx = _io.atomic_dir(self.out)
        self.tmp = self._ctx.__enter__()
        self.data = np.lib.format.open_memmap(self.tmp / "data.npy", mode="w+",
                                              dtype=np.float32, shape=self.shape)
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
