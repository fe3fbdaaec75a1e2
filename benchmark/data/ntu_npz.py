"""Import CTR-GCN's processed ``NTU60_CS.npz``-style files into a prepared store.

CTR-GCN's ``seq_transformation.py`` writes, per protocol, ``x_train`` (N, 300, 150) float32,
``y_train`` (N, C) one-hot, ``x_test``, ``y_test``. Rows carry no names; they are in the order
of ``get_indices`` over ``statistics/skes_available_name.txt``, which
:func:`benchmark.data.protocols.protocol_split` reproduces, so the names come back from that
file (``--stats``). Labels are cross-checked against the names, which catches a statistics
folder of the wrong dataset.

The arrays are streamed out of the zip member in chunks (never the whole 7 GB ``x_train`` in
memory) and never unpickled (``allow_pickle`` stays off: the header must describe a plain array).
"""
from __future__ import annotations

import argparse
import logging
import zipfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import _io
from ..errors import BenchmarkError, bad_file
from .names import label_of
from .protocols import protocol_split
from .store import StoreWriter, read_name_list

log = logging.getLogger(__name__)

# file-name hints used by CTR-GCN (CS/CV, CSub/CSet) and MAMP (XSub/XView)
_PROTOCOL_HINTS = {"csub": "xsub", "cset": "xset", "xsub": "xsub", "xset": "xset",
                   "xview": "xview", "cs": "xsub", "cv": "xview"}
CHUNK = 512  # rows per read: 512 * 300 * 150 * 4 B = 92 MB


def _guess_protocol(path: Path) -> str | None:
    stem = path.stem.lower()
    for token in sorted(_PROTOCOL_HINTS, key=len, reverse=True):
        if stem.endswith("_" + token) or stem.endswith(token):
            return _PROTOCOL_HINTS[token]
    return None


def _member_header(zf: zipfile.ZipFile, key: str, path: Path):
    try:
        f = zf.open(key + ".npy")
    except KeyError:
        raise bad_file(path, f"no array {key!r} in the archive (have: {', '.join(zf.namelist())})") from None
    try:
        version = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(f)
    except ValueError as e:
        raise bad_file(path, f"{key}: not a plain .npy array ({e})") from None
    if dtype.hasobject:
        raise bad_file(path, f"{key}: object arrays are refused (would need pickle)")
    if fortran:
        raise bad_file(path, f"{key}: Fortran-ordered arrays are not supported")
    return f, shape, dtype


def _read_rows(f, dtype: np.dtype, row_shape: tuple, n: int, path: Path, key: str) -> np.ndarray:
    count = n * int(np.prod(row_shape))
    buf = f.read(count * dtype.itemsize)
    if len(buf) != count * dtype.itemsize:
        raise bad_file(path, f"{key}: truncated archive member")
    return np.frombuffer(buf, dtype=dtype).reshape((n, *row_shape))


def read_labels(zf: zipfile.ZipFile, key: str, path: Path) -> np.ndarray:
    f, shape, dtype = _member_header(zf, key, path)
    with f:
        y = _read_rows(f, dtype, tuple(shape[1:]), shape[0], path, key)
    if y.ndim == 2:  # one-hot (CTR-GCN)
        return np.argmax(y, axis=1).astype(np.int64)
    if y.ndim == 1:
        return y.astype(np.int64)
    raise bad_file(path, f"{key}: expected one-hot (N, C) or (N,) labels, got shape {shape}")


def import_npz(npz: Path, out: Path, stats: Path | None, protocol: str | None = None) -> None:
    """Write a store from one processed ``.npz`` (train and test parts of one protocol)."""
    npz = Path(npz)
    if not npz.is_file():
        raise bad_file(npz, "no such file")
    if stats is None:
        raise BenchmarkError(f"{npz}: rows of a processed .npz carry no sample names; pass --stats "
                             "DIR (CTR-GCN's data/ntu/statistics or data/ntu120/statistics, the folder "
                             "holding skes_available_name.txt)")
    avail = read_name_list(Path(stats) / "skes_available_name.txt")
    protocol = protocol or _guess_protocol(npz)
    if protocol is None:
        raise BenchmarkError(f"{npz}: cannot tell the protocol from the file name; pass --protocol")
    try:
        zf = zipfile.ZipFile(npz)
    except zipfile.BadZipFile as e:
        raise bad_file(npz, f"not an .npz archive ({e})") from None
    with zf:
        y_tr = read_labels(zf, "y_train", npz)
        y_te = read_labels(zf, "y_test", npz)
        num_classes = int(max(y_tr.max(), y_te.max()) + 1)
        dataset = "ntu60" if num_classes <= 60 else "ntu120"
        train_names, test_names = protocol_split(dataset, protocol, sorted(avail))
        for part, y, names in (("train", y_tr, train_names), ("test", y_te, test_names)):
            if len(y) != len(names):
                raise bad_file(npz, f"{part} has {len(y)} rows but {dataset} {protocol} has {len(names)} "
                                    f"samples in {stats}: wrong --stats or --protocol")
            wrong = np.flatnonzero(np.array([label_of(n) for n in names]) != y)
            if len(wrong):
                raise bad_file(npz, f"{part} row {wrong[0]} has label {y[wrong[0]]} but its name "
                                    f"{names[wrong[0]]} says {label_of(names[wrong[0]])}: rows and names disagree")
        all_names = train_names + test_names
        order = np.argsort(np.array(all_names))  # store rows sorted by name
        row_of = np.empty(len(all_names), dtype=np.int64)
        row_of[order] = np.arange(len(all_names))
        with StoreWriter(out, len(all_names), T=300, V=25, M=2, dataset=dataset,
                         num_classes=60 if dataset == "ntu60" else 120, layout="ntu25",
                         source={"npz": npz.name, "npz_sha256": _io.sha256_file(npz),
                                 "protocol": protocol, "stats": str(stats)}) as w:
            for i, n in enumerate(all_names):
                w.names[row_of[i]] = n
            w.labels[row_of[:len(y_tr)]] = y_tr
            w.labels[row_of[len(y_tr):]] = y_te
            offset = 0
            for key in ("x_train", "x_test"):
                f, shape, dtype = _member_header(zf, key, npz)
                if len(shape) != 3 or shape[1:] != (300, 150):
                    raise bad_file(npz, f"{key}: expected (N, 300, 150), got {shape}")
                with f, tqdm(total=shape[0], desc=key, unit="clip") as bar:
                    for start in range(0, shape[0], CHUNK):
                        n = min(CHUNK, shape[0] - start)
                        x = _read_rows(f, dtype, (300, 150), n, npz, key).astype(np.float32)
                        if not np.isfinite(x).all():
                            bad = start + int(np.flatnonzero(~np.isfinite(x).all(axis=(1, 2)))[0])
                            raise bad_file(npz, f"{key} row {bad} (sample {all_names[offset + bad]}) "
                                                "contains NaN or inf")
                        rows = row_of[offset + start: offset + start + n]
                        # (n, T, 150) -> (n, T, M, V, C) -> (n, C, T, V, M), the feeder's reshape
                        w.data[rows] = x.reshape(n, 300, 2, 25, 3).transpose(0, 4, 1, 3, 2)
                        # the feeder's valid_frame_num: frames whose coordinate sum is non-zero
                        lengths = (x.sum(axis=2) != 0).sum(axis=1)
                        if (lengths == 0).any():
                            bad = start + int(np.flatnonzero(lengths == 0)[0])
                            raise bad_file(npz, f"{key} row {bad} has zero frames (all zeros)")
                        w.lengths[rows] = lengths
                        bar.update(n)
                offset += shape[0]
            w.add_split(protocol, "train", train_names)
            w.add_split(protocol, "test", test_names)
    log.info("wrote %s: %d clips (%s %s)", out, len(all_names), dataset, protocol)


def prepare_npz(args: argparse.Namespace) -> None:
    if args.raw is None:
        raise BenchmarkError("ntu-npz needs --raw FILE.npz")
    import_npz(args.raw, args.out, args.stats, args.protocol)
