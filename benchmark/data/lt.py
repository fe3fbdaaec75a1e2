"""A training set and a test set over a prepared store: protocol + optional long-tailed list.

This is what a run asks the data layer for: ``load_lt(store, protocol, imbalance=100)`` gives
the store rows of the long-tailed training subset (built with the BRL recipe, or read from a
published list), the protocol's full test rows, the training class counts and the
Many/Medium/Few groups. Nothing is copied; the rows index the memory-mapped store.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BenchmarkError, bad_file
from . import splits
from .store import Store, open_store, read_name_list
from .synth import RECOMMENDED_N_MAX

# n_max of the LT profile per (dataset, protocol): BRL's values, NW-UCLA-LT, and synth's
N_MAX = {**splits.DEFAULT_N_MAX, ("synth", "xsub"): RECOMMENDED_N_MAX}


@dataclass
class LTData:
    store: Store
    dataset: str
    protocol: str
    train_idx: np.ndarray     # store rows of the training subset, in list order
    test_idx: np.ndarray      # store rows of the protocol's test part
    class_counts: np.ndarray  # training clips per class (class-index order)
    split: dict = field(default_factory=dict)  # recipe / source / sha256 of the training list

    @property
    def num_classes(self) -> int:
        return self.store.num_classes

    @property
    def train_labels(self) -> np.ndarray:
        return self.store.labels[self.train_idx]

    @property
    def test_labels(self) -> np.ndarray:
        return self.store.labels[self.test_idx]

    @property
    def groups(self) -> dict[str, list[int]]:
        return splits.groups(self.class_counts.tolist())


def default_protocol(store: Store) -> str:
    protocols = sorted({s.rsplit("_", 1)[0] for s in store.manifest.get("splits", [])})
    if len(protocols) != 1:
        raise BenchmarkError(f"{store.root}: holds protocols {protocols or 'none'}; name one")
    return protocols[0]


def load_lt(store: Store | str | os.PathLike, protocol: str | None = None, *,
            imbalance: float | None = None, n_max: int | None = None, seed: int = 0,
            profile: str = "exp", split_list: str | os.PathLike | None = None) -> LTData:
    """Training/test rows of ``protocol``; long-tailed when ``imbalance`` or ``split_list`` is given.

    ``split_list`` (a published or previously built list) takes precedence; every name in it
    must belong to the protocol's training part (a test clip in a training list is an error).
    """
    if not isinstance(store, Store):
        store = open_store(store)
    protocol = protocol or default_protocol(store)
    dataset = store.manifest["dataset"]
    train_names = store.split_names(protocol, "train")
    test_names = store.split_names(protocol, "test")
    C = store.num_classes
    if split_list is not None:
        path = Path(split_list)
        names = read_name_list(path)
        pool = set(train_names)
        outside = [n for n in names if n not in pool]
        if outside:
            where = "in the store" if all(n in set(store.names) for n in outside) else "not in the store"
            raise bad_file(path, f"{len(outside)} samples are not in the {protocol} training part "
                                 f"({where}), e.g. {outside[0]}")
        info = {"source": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                "known_list": path.name in splits.PUBLISHED}
    elif imbalance is not None:
        if n_max is None:
            if (dataset, protocol) not in N_MAX:
                raise BenchmarkError(f"no default n_max for {dataset} {protocol}; pass n_max")
            n_max = N_MAX[(dataset, protocol)]
        names, man = splits.build_split(train_names, C, imbalance, n_max, seed, profile,
                                        source=f"{store.root}/splits/{protocol}_train.txt")
        info = {"recipe": man["recipe"], "sha256": man["sha256"]}
    else:
        names, info = train_names, {"recipe": "full training part (no long-tail subsampling)"}
    train_idx = store.indices(names, source=split_list or "training list")
    test_idx = store.indices(test_names, source=f"{protocol}_test")
    counts = np.bincount(store.labels[train_idx], minlength=C)
    return LTData(store, dataset, protocol, train_idx, test_idx, counts, info)


def raw_mean_clip(store: Store, rows: np.ndarray, frames: int, chunk: int = 512) -> np.ndarray:
    """Mean over ``rows`` of the stored clips' first ``frames`` frames, (C, frames, V, M).

    Zero padding and absent persons are included, as in Shap-Mix's ``avg_motion`` (the mean of
    the raw LT training tensors, then frames 0..63), its Shapley baseline. Read in sorted
    chunks so memory stays bounded on NTU-sized stores.
    """
    rows = np.sort(np.asarray(rows))
    frames = min(int(frames), store.data.shape[2])
    acc = np.zeros((store.data.shape[1], frames, *store.data.shape[3:]), dtype=np.float64)
    for start in range(0, len(rows), chunk):
        acc += store.data[rows[start:start + chunk], :, :frames].sum(axis=0, dtype=np.float64)
    return (acc / max(len(rows), 1)).astype(np.float32)
