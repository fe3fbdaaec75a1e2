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
                "known_list": path.name in splits.PUBLISHED,
                **list_label(path, names, C, imbalance, n_max)}
    elif imbalance is not None:
        if n_max is None:
            if (dataset, protocol) not in N_MAX:
                raise BenchmarkError(f"no default n_max for {dataset} {protocol}; pass n_max")
            n_max = N_MAX[(dataset, protocol)]
        names, man = splits.build_split(train_names, C, imbalance, n_max, seed, profile,
                                        source=f"{store.root}/splits/{protocol}_train.txt")
        info = {"recipe": man["recipe"], "sha256": man["sha256"], "imbalance": float(imbalance),
                "n_max": int(n_max), "label_source": "built with this recipe"}
    else:
        names, info = train_names, {"recipe": "full training part (no long-tail subsampling)"}
    train_idx = store.indices(names, source=split_list or "training list")
    test_idx = store.indices(test_names, source=f"{protocol}_test")
    counts = np.bincount(store.labels[train_idx], minlength=C)
    return LTData(store, dataset, protocol, train_idx, test_idx, counts, info)


def list_label(path: Path, names: list[str], num_classes: int, imbalance: float | None,
               n_max: int | None) -> dict:
    """The imbalance factor and head size a split list was made with, from what it is.

    In order: its ``<stem>.manifest.json`` (written by ``data splits``), the published list it
    is (by name and sha256), else measured from its class sizes (IF = largest / smallest).
    An ``imbalance`` / ``n_max`` given beside the list must agree with that.

    Raises:
        BenchmarkError: a contradiction, or a manifest that describes another list.
    """
    import json

    from .names import label_of

    counts = np.bincount([label_of(n) for n in names], minlength=num_classes)
    declared, source = None, None
    man_path = path.with_suffix(".manifest.json")
    if man_path.is_file():
        try:
            man = json.loads(man_path.read_text(encoding="utf-8"))
            digest = man.get("sha256")
            recipe = man.get("recipe") or {}
            src = recipe.get("imported") if "imported" in recipe else recipe
        except (OSError, ValueError, AttributeError) as e:
            raise bad_file(man_path, f"unreadable split manifest ({e})") from None
        if digest != hashlib.sha256(splits.list_bytes(names)).hexdigest():
            raise bad_file(man_path, f"describes another list than {path.name} (its sha256 "
                                     f"differs): rebuild the list or remove the stale manifest")
        if isinstance(src, dict) and src.get("imbalance") is not None:
            declared = (float(src["imbalance"]), src.get("n_max"))
            source = f"{man_path.name}"
    if declared is None and path.name in splits.PUBLISHED:
        sha, _, imb, nm = splits.PUBLISHED[path.name]
        if hashlib.sha256(path.read_bytes()).hexdigest() == sha:
            declared, source = (float(imb), nm), f"published list {path.name}"
    present = counts[counts > 0]
    big, small = int(present.max()), int(present.min())
    if declared is not None:
        label_if, label_n = declared[0], declared[1] if declared[1] is not None else big
        if imbalance is not None and abs(float(imbalance) - label_if) > 1e-9 * label_if:
            raise bad_file(path, f"--imbalance {imbalance:g} contradicts the list, made with "
                                 f"IF {label_if:g} ({source}); drop --imbalance or use another list")
        if n_max is not None and int(n_max) != int(label_n):
            raise bad_file(path, f"--n-max {n_max} contradicts the list, made with n_max "
                                 f"{label_n} ({source})")
        return {"imbalance": label_if, "n_max": int(label_n), "label_source": source}
    # no record: the class sizes are the evidence (exp/step profiles: n_min = int(n_max / IF))
    if imbalance is not None and small != int(big / float(imbalance)):
        raise bad_file(path, f"--imbalance {imbalance:g} contradicts the list's class sizes "
                             f"({big} .. {small} clips: IF ~ {big / small:.3g}); drop --imbalance")
    if n_max is not None and int(n_max) != big:
        raise bad_file(path, f"--n-max {n_max} contradicts the list's largest class ({big} clips)")
    return {"imbalance": float(imbalance) if imbalance is not None else round(big / small, 6),
            "n_max": big, "label_source": "measured from the list's class sizes"}


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
