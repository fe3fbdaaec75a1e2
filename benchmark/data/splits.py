"""Long-tailed train lists: count profiles, BRL's sampling recipe, published-list import.

Counts (BRL ``data/imblance_gentxt.py:save_im_data``), classes in natural label order:
  exp   n_c = int(n_max * r ** (c / (C - 1.0))),  r = 1 / IF      (the paper's profile)
  step  the first C // 2 classes keep n_max, the rest int(n_max * r)
A class with fewer clips than n_c keeps all of them (BRL does the same); the manifest says so.

Sampling (BRL-compatible): ``np.random.seed(seed)`` once; names of each class kept in
train-list order; for each class in label order, one legacy ``np.random.shuffle`` of that
class's list and the first n_c names are kept; output class after class in shuffled order,
one name per line, no newline after the last (BRL's byte format, so checksums compare).
This reproduces BRL's six NTU120 lists byte for byte. BRL's NTU60 lists come from a run no
known recipe reproduces, so they are imported as published and verified by per-class counts
and sha256 (``PUBLISHED``), never regenerated.

Many / Medium / Few: classes with > 100 / 20..100 / < 20 training clips (OLTR, BALMS, Shap-Mix).
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import math
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .. import _io
from ..errors import BenchmarkError, bad_file
from ..registry import Registry
from .names import label_of
from .store import read_name_list

log = logging.getLogger(__name__)

MANY_THRESHOLD = 100  # many: n > 100
FEW_THRESHOLD = 20    # few: n < 20; medium otherwise

SPLIT_PROFILES: Registry[Callable[..., list[int]]] = Registry("split profile")

# Published lists verified by checksum. name -> (sha256, num_classes, imbalance, n_max)
PUBLISHED = {
    "NTU60_xsub_exp_10.txt": ("4bc0779e83d192d0ea7756ecb54ca9716566fa0b796b71fde76d63c6b52fe262", 60, 10, 600),
    "NTU60_xsub_exp_50.txt": ("2cce99ef2be828a25051347d45370d739de8880ba53b02e0c1ae891ad778b53f", 60, 50, 600),
    "NTU60_xsub_exp_100.txt": ("992425d1b1f674142523257b13b5b811d2880673443177b9956b420894f25d31", 60, 100, 600),
    "NTU60_xview_exp_10.txt": ("7ac11c28379ee988cb745fd409da9a0f45a7cd261abbf6f8188fc7a842ba4c87", 60, 10, 600),
    "NTU60_xview_exp_50.txt": ("5507e59373288535e18fe328550f6ba5c8e7d512212a2f42b22d763c640dabc3", 60, 50, 600),
    "NTU60_xview_exp_100.txt": ("e4777be86c39a357ff2c483f7bb017715820fae213ae00d39b9895d24a19908a", 60, 100, 600),
    "NTU120_xsub_exp_10.txt": ("3d1058b7817640a5c7a3079f716d1a11a5052834d13f31d63642d921ee31741f", 120, 10, 600),
    "NTU120_xsub_exp_50.txt": ("9eb339922064ab63039d63912c9943de13a9145a0bde6da8b5285adab3a0d76c", 120, 50, 600),
    "NTU120_xsub_exp_100.txt": ("7978b035e9a24c2b431fa5d7fe7de394e6763b82b33c42177e82949823447348", 120, 100, 600),
    "NTU120_xset_exp_10.txt": ("4eac40d4b0403a8ed1f37c11192d55ac484367f28e8ab43c8521d652de518998", 120, 10, 400),
    "NTU120_xset_exp_50.txt": ("06bc03b7b60cfff7477020595236bff64651e93dbd8aa915c7431e867f2cb3bb", 120, 50, 400),
    "NTU120_xset_exp_100.txt": ("cb849477aefd71aa500f9c32f74486f7caa4ef3aa949acadf2c3664eb1353554", 120, 100, 400),
}

# n_max per (dataset, protocol) used by BRL and the paper; NW-UCLA-LT is BRL's IF-10 set
DEFAULT_N_MAX = {("ntu60", "xsub"): 600, ("ntu60", "xview"): 600, ("ntu120", "xsub"): 600,
                 ("ntu120", "xset"): 400, ("ucla", "ucla"): 100}


def _check(num_classes: int, imbalance: float, n_max: int) -> None:
    if num_classes < 2:
        raise BenchmarkError(f"--num-classes must be >= 2, got {num_classes}")
    if not (math.isfinite(imbalance) and imbalance >= 1):  # NaN fails both
        raise BenchmarkError(f"imbalance factor must be a finite number >= 1, got {imbalance}")
    if n_max < 1:
        raise BenchmarkError(f"n_max must be >= 1, got {n_max}")


def _no_empty_class(counts: list[int], imbalance: float, n_max: int, profile: str) -> list[int]:
    """``counts``, unless the profile leaves a class without clips (a class nobody trains on)."""
    empty = [c for c, n in enumerate(counts) if n < 1]
    if empty:
        raise BenchmarkError(
            f"imbalance factor {imbalance:g} with n_max {n_max} leaves {len(empty)} of {len(counts)} "
            f"classes with 0 clips ({profile} profile: the smallest class gets int({n_max} / {imbalance:g}) "
            f"= 0, from class {empty[0]} on); use n_max >= {math.ceil(imbalance)} or a smaller imbalance factor")
    return counts


@SPLIT_PROFILES.register("exp")
def exp_counts(num_classes: int, imbalance: float, n_max: int) -> list[int]:
    _check(num_classes, imbalance, n_max)
    r = 1.0 / imbalance  # BRL's imb_factor; the float ops below are BRL's, in its order
    counts = [int(n_max * (r ** (c / (num_classes - 1.0)))) for c in range(num_classes)]
    return _no_empty_class(counts, imbalance, n_max, "exp")


@SPLIT_PROFILES.register("step")
def step_counts(num_classes: int, imbalance: float, n_max: int) -> list[int]:
    _check(num_classes, imbalance, n_max)
    head = num_classes // 2
    counts = [int(n_max)] * head + [int(n_max * (1.0 / imbalance))] * (num_classes - head)
    return _no_empty_class(counts, imbalance, n_max, "step")


def groups(counts: Sequence[int]) -> dict[str, list[int]]:
    """Class indices of the Many (>100) / Medium (20..100) / Few (<20) groups."""
    return {"many": [c for c, n in enumerate(counts) if n > MANY_THRESHOLD],
            "medium": [c for c, n in enumerate(counts) if FEW_THRESHOLD <= n <= MANY_THRESHOLD],
            "few": [c for c, n in enumerate(counts) if n < FEW_THRESHOLD]}


def names_by_class(names: Sequence[str], num_classes: int, source: str = "train list") -> list[list[str]]:
    by_class: list[list[str]] = [[] for _ in range(num_classes)]
    for n in names:
        c = label_of(n)
        if not 0 <= c < num_classes:
            raise bad_file(source, f"sample {n!r} has class {c} outside 0..{num_classes - 1}")
        by_class[c].append(n)
    return by_class


def check_classes(names: Sequence[str], num_classes: int, source: str = "train list") -> list[list[str]]:
    """Names by class; every class 0..num_classes-1 must have a clip (none outside the range).

    A class with no training clip cannot be trained or evaluated as long-tailed, and a
    ``--num-classes`` larger than the list's classes is usually the wrong list or count.
    """
    by_class = names_by_class(names, num_classes, source)
    empty = [c for c, v in enumerate(by_class) if not v]
    if empty:
        present = [c for c, v in enumerate(by_class) if v]
        if present and empty == list(range(present[-1] + 1, num_classes)):
            raise bad_file(source, f"has clips of classes 0..{present[-1]} only, but the number of "
                                   f"classes is {num_classes} (--num-classes): wrong list or wrong count")
        raise bad_file(source, f"{len(empty)} of {num_classes} classes have no clip in this list "
                               f"(class {', '.join(map(str, empty[:5]))}{' ...' if len(empty) > 5 else ''})")
    return by_class


def brl_sample(names: Sequence[str], counts: Sequence[int], seed: int,
               source: str = "train list") -> list[str]:
    """BRL's recipe: one global legacy seed, one shuffle per class in label order, keep n_c."""
    by_class = names_by_class(names, len(counts), source)
    state = np.random.get_state()  # the recipe needs the global RNG; leave it as we found it
    try:
        np.random.seed(seed)
        out: list[str] = []
        for c, keep in enumerate(counts):
            idx = by_class[c]
            np.random.shuffle(idx)  # a Python list, as BRL shuffles it
            out.extend(idx[:keep])
    finally:
        np.random.set_state(state)
    return out


def list_bytes(names: Sequence[str]) -> bytes:
    """BRL's file format: names joined by newlines, no trailing newline."""
    return "\n".join(names).encode("utf-8")


def manifest_for(names: Sequence[str], num_classes: int, recipe: dict, source: str) -> dict:
    counts = Counter(label_of(n) for n in names)
    per_class = [counts.get(c, 0) for c in range(num_classes)]
    g = groups(per_class)
    return {
        "recipe": recipe,
        "num_classes": num_classes,
        "total": len(names),
        "per_class_counts": per_class,
        "sha256": hashlib.sha256(list_bytes(names)).hexdigest(),
        "groups": {"thresholds": f"many > {MANY_THRESHOLD}, medium {FEW_THRESHOLD}-{MANY_THRESHOLD}, "
                                 f"few < {FEW_THRESHOLD} training clips",
                   **{k: {"num_classes": len(v), "classes": v} for k, v in g.items()}},
        "source": source,
    }


def build_split(train_names: Sequence[str], num_classes: int, imbalance: float, n_max: int,
                seed: int = 0, profile: str = "exp", source: str = "train list") -> tuple[list[str], dict]:
    """Build a long-tailed list from a train list; returns (names, manifest)."""
    counts = SPLIT_PROFILES.get(profile)(num_classes, imbalance, n_max)
    avail = [len(v) for v in check_classes(train_names, num_classes, source)]
    capped = [c for c in range(num_classes) if avail[c] < counts[c]]
    if capped:
        log.warning("%d classes have fewer train clips than the profile asks for; they keep all "
                    "of them (BRL behaviour): %s", len(capped), capped[:10])
    out = brl_sample(train_names, counts, seed, source)
    recipe = {"profile": profile, "imbalance": imbalance, "n_max": n_max, "seed": seed,
              "sampler": "brl: np.random.seed(seed); per class in label order np.random.shuffle(list) "
                         "of train-list-ordered names; keep first n_c",
              "target_counts": counts, "capped_classes": capped}
    return out, manifest_for(out, num_classes, recipe, source)


def verify_published(path: Path, names: Sequence[str], num_classes: int,
                     train_names: Sequence[str] | None = None) -> dict:
    """Check a published list: its checksum (if known), its per-class counts, and train-list membership."""
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    known = PUBLISHED.get(path.name)
    info: dict = {"file": path.name, "sha256": digest, "known_list": bool(known)}
    if known:
        sha, C, imb, n_max = known
        if digest != sha:
            raise bad_file(path, f"sha256 {digest[:12]}... differs from the published {path.name} "
                                 f"({sha[:12]}...): the file was modified or is another list")
        if C != num_classes:
            raise bad_file(path, f"published list has {C} classes, --num-classes says {num_classes}")
        expected = exp_counts(C, imb, n_max)
        got = [0] * C
        for n in names:
            got[label_of(n)] += 1
        if got != expected:
            raise bad_file(path, "per-class counts differ from the exp profile it was published with")
        info.update(profile="exp", imbalance=imb, n_max=n_max)
    if train_names is not None:
        pool = set(train_names)
        absent = [n for n in names if n not in pool]
        if absent:
            raise bad_file(path, f"{len(absent)} samples are not in the train list, e.g. {absent[0]}")
    return info


def write_split(out: Path, names: Sequence[str], manifest: dict) -> None:
    """Write the list and ``<stem>.manifest.json`` beside it, each atomically."""
    _io.write_bytes(out, list_bytes(names))
    _io.write_json(out.with_suffix(".manifest.json"), manifest)


# ----------------------------------------------------------------------------------- CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train-list", type=Path, required=True,
                   help="standard train list: one NTU-style (or NW-UCLA aNN_...) name per line")
    p.add_argument("--num-classes", type=int, required=True, help="classes of the dataset")
    p.add_argument("--imbalance", type=float, help="imbalance factor IF = n_max / n_min (>= 1)")
    p.add_argument("--n-max", type=int, help="clips kept in the largest class")
    p.add_argument("--seed", type=int, default=0, help="legacy numpy seed (BRL uses 0)")
    p.add_argument("--profile", default="exp", help="count profile: " + ", ".join(SPLIT_PROFILES.names()))
    p.add_argument("--import", dest="import_list", type=Path, default=None,
                   help="import a published list as it is (verified by counts and sha256) instead of sampling")
    p.add_argument("--out", type=Path, required=True, help="list to write (+ .manifest.json beside it)")


def cli_main(args: argparse.Namespace) -> int:
    train = read_name_list(args.train_list)
    source = str(args.train_list)
    check_classes(train, args.num_classes, source)
    if args.out.is_dir():
        raise BenchmarkError(f"{args.out}: is a folder; --out names the list file to write")
    if args.import_list is not None:
        names = read_name_list(args.import_list)
        names_by_class(names, args.num_classes, str(args.import_list))
        info = verify_published(args.import_list, names, args.num_classes, train)
        recipe = {"imported": info}
        manifest = manifest_for(names, args.num_classes, recipe, source)
    else:
        if args.imbalance is None or args.n_max is None:
            raise BenchmarkError("--imbalance and --n-max are required unless --import is given")
        names, manifest = build_split(train, args.num_classes, args.imbalance, args.n_max,
                                      args.seed, args.profile, source)
    manifest["train_list_sha256"] = _io.sha256_file(args.train_list)
    write_split(args.out, names, manifest)
    g = manifest["groups"]
    print(f"wrote {args.out}: {len(names)} clips, {args.num_classes} classes, "
          f"many/medium/few = {g['many']['num_classes']}/{g['medium']['num_classes']}/{g['few']['num_classes']}, "
          f"sha256 {manifest['sha256'][:12]}")
    return 0
