"""Import PYSKL annotation pickles (Kinetics-400, NTU RGB+D 2-D / 3-D) into a prepared store.

PYSKL (Duan et al., ACM MM 2022; github.com/kennymckormick/pyskl, ``tools/data/README.md``)
ships a dataset as one pickle ``{'split': {name: [frame_dir, ...]}, 'annotations': [...]}``,
read here with :mod:`benchmark.data.safe_pickle` (never ``pickle.load``). An annotation is
either

* plain (NTU ``ntu60_3danno.pkl`` / ``ntu60_hrnet.pkl``, ...): ``keypoint`` (M, T, V, C) with
  C = 3 (x, y, z) or C = 2 plus ``keypoint_score`` (M, T, V); or
* compressed (Kinetics ``k400_hrnet.pkl``): one row per detected person, ``keypoint`` (N, V, 3)
  = (x, y, score) with ``frame_inds`` (N,) and ``box_score`` (N,). The Kinetics pickle itself
  is a table of contents whose ``keypoint`` rows live in *kpfiles* (pickles ``{frame_dir:
  {'keypoint': ...}}``) named by each annotation's ``raw_file``: ``--kpfiles DIR`` holds them.

What the store holds, per clip (N, C = 3, T, V, M = 2 float32): the frames as stored (frame
sampling is a load-time step, as in PYSKL's pipelines: :mod:`benchmark.data.pyskl_transforms`);
C = (x, y, score) for 2-D (score 0 when the file has none) and (x, y, z) for 3-D, the values
as PYSKL's ``PoseDecode`` returns them. Persons follow PYSKL's pose pipeline:

* plain: the first two persons of the ``keypoint`` axis, zero-padded below two
  (``FormatGCNInput(num_person=2)``);
* compressed (Shap-Mix's ``pyskl_datasets`` ``DecompressPose(squeeze=True)`` then
  ``FormatGCNInput``): rows with ``box_score`` below ``box_thr`` are dropped, frames left
  without a person are dropped (``squeeze``), each frame's persons take slots in stored row
  order, values pass through float16 (``DecompressPose``'s arrays); if some frame has more
  than 10 persons (``max_person``), every frame's persons are first sorted by the float16 sum
  of their keypoint scores, highest first (stable); then the first two slots are kept.
  Shap-Mix's ``PoseDataset`` applies ``box_thr`` (0.5 in ``config/k400.yaml``) to its training
  split only: its test feeder sets no ``valid_ratio``, the condition under which the
  threshold is applied. That is the default here (``--box-thr 0.5``, ``--val-box-thr none``).
  A clip left with no person is not stored (the official loader would fail on it); the
  manifest counts them.

Splits: each ``split`` key becomes a protocol list, ``<p>_train`` / ``<p>_val`` (or ``_test``)
-> protocol ``p`` (``xsub``, ``xview``, ``xset``), bare ``train`` / ``val`` -> protocol named
after the dataset (``k400``). For NTU protocols the lists are written in CTR-GCN's
``get_indices`` order (:mod:`benchmark.data.protocols`; PYSKL's are name-sorted) so that BRL's
long-tailed recipe gives the same lists as on an NTU store prepared from raw files.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from .. import _io
from ..errors import BenchmarkError, bad_file
from . import protocols as P
from .safe_pickle import load, plain
from .store import StoreWriter

log = logging.getLogger(__name__)

NUM_CLASSES = {"k400": 400, "ntu60": 60, "ntu120": 120}
PERSONS = 2          # FormatGCNInput(num_person=2)
MAX_PERSON = 10      # DecompressPose(max_person=10)
_SPLIT_KEY = re.compile(r"^(?:(.*?)_?)(train|val|test)(\d*)$")


@dataclass
class Plan:
    """What phase 1 learns about one annotation (no keypoints copied)."""

    name: str
    label: int
    length: int                # frames stored (after box filtering and squeezing)
    index: int                 # position in the annotation list
    box_thr: float | None      # the threshold applied to it (compressed only)
    raw_file: str | None = None


@dataclass
class Report:
    dims: set = field(default_factory=set)      # keypoint dims seen: 2 and/or 3
    joints: set = field(default_factory=set)    # V seen in the annotations (kpfiles: later)
    no_score: int = 0                           # 2-D clips without keypoint_score
    dropped: list = field(default_factory=list)  # clips without a person after filtering
    compressed: int = 0
    many_persons: int = 0                       # clips with more than 2 person slots


def dataset_name(path: Path, name: str | None) -> str:
    """``--name`` or the pickle's stem up to the first ``_`` (k400_hrnet.pkl -> k400)."""
    name = name or path.stem.split("_")[0].lower()
    if not re.fullmatch(r"[a-z][a-z0-9-]*", name):
        raise BenchmarkError(f"{path}: cannot name the dataset {name!r} (lowercase letters, digits, "
                             "'-'); pass --name")
    return name


def protocol_of(key: str, dataset: str) -> tuple[str, str] | None:
    """``xsub_train`` -> ('xsub', 'train'), ``val`` -> (dataset, 'test'), ``test1`` (UCF101's
    numbered splits) -> ('split1', 'test'); None for any other key."""
    m = _SPLIT_KEY.match(key)
    if not m:
        return None
    prefix, part, num = m.groups()
    protocol = prefix + num if prefix else (f"split{num}" if num else dataset)
    return protocol, "train" if part == "train" else "test"


def protocols_of(split: dict[str, list[str]], dataset: str,
                 path: Path) -> dict[str, dict[str, list[str]]]:
    """protocol -> {'train': names, 'test': names} from the pickle's split keys."""
    protocols: dict[str, dict[str, list[str]]] = defaultdict(dict)
    for key, names in split.items():
        pp = protocol_of(key, dataset)
        if pp is None:
            log.warning("%s: split %r is neither train nor val/test, ignored", path, key)
            continue
        if pp[1] in protocols[pp[0]]:
            raise bad_file(path, f"split {key!r}: protocol {pp[0]} has two {pp[1]} lists")
        protocols[pp[0]][pp[1]] = names
    for p, parts in protocols.items():
        if len(parts) == 1:
            log.warning("%s: protocol %s has no %s list, ignored", path, p,
                        "train" if "test" in parts else "val/test")
    protocols = {p: parts for p, parts in protocols.items() if len(parts) == 2}
    if not protocols:
        raise bad_file(path, "no train and val/test pair among its splits "
                             f"({', '.join(split) or 'none'})")
    return protocols


def _array(x: Any, what: str, path: Path) -> np.ndarray:
    x = plain(x)
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "iuf":
        raise bad_file(path, f"{what} is not a numeric array")
    return x


def read_pickle(path: Path) -> tuple[dict[str, list[str]], list[dict]]:
    obj = load(path)
    if not (isinstance(obj, dict) and isinstance(obj.get("annotations"), list)
            and isinstance(obj.get("split"), dict)):
        raise bad_file(path, "not a PYSKL annotation pickle (expected a dict with 'split' and "
                             "'annotations')")
    split = obj["split"]
    for k, v in split.items():
        if not (isinstance(k, str) and isinstance(v, (list, tuple))
                and all(isinstance(n, str) for n in v)):
            raise bad_file(path, f"split {k!r} is not a list of clip names")
    anns = obj["annotations"]
    if not anns:
        raise bad_file(path, "no annotations")
    return {k: list(v) for k, v in split.items()}, anns


def _kept_rows(ann: dict, thr: float | None, where: str, path: Path) -> np.ndarray | None:
    """Rows of a compressed annotation that pass ``box_score >= thr`` (None: all)."""
    if thr is None:
        return None
    if "box_score" not in ann:
        raise bad_file(path, f"{where}: no box_score to apply box_thr {thr} to (pass --box-thr none)")
    return _array(ann["box_score"], f"{where}: box_score", path) >= thr


def _frames_of(ann: dict, keep: np.ndarray | None, where: str, path: Path) -> np.ndarray:
    inds = _array(ann.get("frame_inds"), f"{where}: frame_inds", path).astype(np.int64).ravel()
    if keep is not None:
        if keep.shape != inds.shape:
            raise bad_file(path, f"{where}: box_score and frame_inds differ in length")
        inds = inds[keep]
    if len(inds) and (np.diff(inds) < 0).any():
        raise bad_file(path, f"{where}: frame_inds are not in increasing order")
    return inds


def plan_clips(anns: list[dict], train: set[str], box_thr: float | None, val_box_thr: float | None,
               path: Path, rep: Report) -> list[Plan]:
    """Phase 1: names, labels and stored lengths of every annotation."""
    plans = []
    for i, ann in enumerate(anns):
        if not isinstance(ann, dict) or not isinstance(ann.get("frame_dir"), str):
            raise bad_file(path, f"annotation {i} has no frame_dir name")
        name = ann["frame_dir"]
        where = f"clip {name!r}"
        if not name or name != name.strip() or any(c in name for c in "\r\n\t"):
            raise bad_file(path, f"{where}: a name must be non-empty, without white space at "
                                 "its ends or line breaks")
        label = ann.get("label")
        if isinstance(label, np.integer):
            label = int(label)
        if type(label) is not int or label < 0:
            raise bad_file(path, f"{where}: label {label!r} is not a non-negative integer")
        kp = ann.get("keypoint")
        compressed = "frame_inds" in ann
        if compressed:
            rep.compressed += 1
            thr = box_thr if name in train else val_box_thr
            length = len(np.unique(_frames_of(ann, _kept_rows(ann, thr, where, path), where, path)))
            raw = ann.get("raw_file") if kp is None else None
            if kp is None and not isinstance(raw, str):
                raise bad_file(path, f"{where}: no keypoint and no raw_file")
            if kp is not None:
                rep.joints.add(_array(kp, f"{where}: keypoint", path).shape[1:2])
            rep.dims.add(2)
            plans.append(Plan(name, label, length, i, thr, raw))
        else:
            kp = _array(kp, f"{where}: keypoint", path)
            if kp.ndim != 4:
                raise bad_file(path, f"{where}: keypoint has shape {kp.shape}, expected (M, T, V, C)")
            total = ann.get("total_frames", kp.shape[1])
            if int(total) != kp.shape[1]:
                raise bad_file(path, f"{where}: total_frames {total} but keypoint has "
                                     f"{kp.shape[1]} frames")
            rep.joints.add(kp.shape[2:3])
            rep.dims.add(kp.shape[3])
            plans.append(Plan(name, label, kp.shape[1] if kp.shape[0] else 0, i, None))
    return plans


def decompress(kp: np.ndarray, inds: np.ndarray) -> np.ndarray:
    """(N, V, 3) person rows at sorted frame indices -> (2, T, V, 3) float32 (module doc rule)."""
    frames, slot_start = np.unique(inds, return_index=True)
    t = np.searchsorted(frames, inds)                  # squeezed frame of each row
    slot = np.arange(len(inds)) - slot_start[t]        # its person slot within the frame
    T, V = len(frames), kp.shape[1]
    persons = int(slot.max()) + 1
    new = np.zeros((max(persons, PERSONS), T, V, 3), dtype=np.float16)
    new[slot, t] = kp                                  # float16, as DecompressPose's arrays
    if persons > MAX_PERSON:
        counts = np.bincount(t, minlength=T)
        for f in np.flatnonzero(counts > 1):
            n = counts[f]
            score_sum = new[:n, f, :, 2].sum(-1)       # float16 sums, as the official code
            order = sorted(range(n), key=lambda k: -score_sum[k])
            new[:n, f] = new[order, f]
    return new[:PERSONS].astype(np.float32)


def plain_clip(ann: dict, where: str, path: Path, rep: Report) -> np.ndarray:
    """A plain annotation -> (2, T, V, 3) float32: first two persons, score channel added."""
    kp = _array(ann["keypoint"], f"{where}: keypoint", path)
    M, T, V, C = kp.shape
    if C not in (2, 3):
        raise bad_file(path, f"{where}: keypoint has {C} coordinates, expected 2 or 3")
    out = np.zeros((PERSONS, T, V, 3), dtype=np.float32)
    m = min(M, PERSONS)
    out[:m, ..., :C] = kp[:m]
    score = ann.get("keypoint_score")
    if C == 3 and score is not None:
        raise bad_file(path, f"{where}: keypoint_score given with 3-D keypoints (PYSKL's "
                             "GenSkeFeat admits scores for 2-D keypoints only)")
    if C == 2:
        if score is None:
            rep.no_score += 1
        else:
            score = _array(score, f"{where}: keypoint_score", path)
            if score.shape != (M, T, V):
                raise bad_file(path, f"{where}: keypoint_score has shape {score.shape}, keypoint "
                                     f"{kp.shape}")
            out[:m, ..., 2] = score[:m]
    rep.many_persons += M > PERSONS
    return out


def compressed_clip(ann: dict, kp: Any, plan: Plan, path: Path, rep: Report) -> np.ndarray:
    where = f"clip {plan.name!r}"
    kp = _array(kp, f"{where}: keypoint", path)
    if kp.ndim != 3 or kp.shape[2] != 3:
        raise bad_file(path, f"{where}: compressed keypoint has shape {kp.shape}, expected (N, V, 3)")
    rows = np.size(plain(ann["frame_inds"]))
    if len(kp) != rows:
        raise bad_file(path, f"{where}: {len(kp)} keypoint rows but {rows} frame_inds")
    keep = _kept_rows(ann, plan.box_thr, where, path)
    inds = _frames_of(ann, keep, where, path)
    if keep is not None:
        kp = kp[keep]
    out = decompress(kp, inds)
    rep.many_persons += np.bincount(inds).max() > PERSONS
    return out


def _layout(V: int, dims: set, path: Path) -> str:
    if dims == {3} and V == 25:
        return "ntu25"
    if dims == {2} and V == 17:
        return "coco17"
    if len(dims) > 1:
        raise bad_file(path, "mixes 2-D and 3-D keypoints")
    raise bad_file(path, f"{min(dims)}-D keypoints with {V} joints: no joint layout for them "
                         "(have 3-D NTU-25 and 2-D COCO-17)")


def _ordered(dataset: str, protocol: str, names: list[str], path: Path) -> list[str]:
    try:
        return P.official_order(dataset, protocol, names)
    except BenchmarkError as e:  # an NTU protocol over names that are not NTU names
        raise bad_file(path, f"split {protocol}: {e}") from None


class _RowWriter:
    """Writes whole store rows (C, T, V, M) with positional writes: never through the memory
    map, whose touched pages would stay in this process's RSS (``loader.py``), and padding
    included, so that the reserved file is written in one piece (writes into parts of it split
    its extents, which made deleting a 7 GB store take minutes)."""

    def __init__(self, data: np.memmap):
        self.fd = os.open(data.filename, os.O_WRONLY)
        self.offset = int(data.offset)
        self.row = np.zeros(data.shape[1:], dtype=np.float32)
        self.filled = 0  # frames of self.row holding the previous clip

    def write(self, r: int, clip: np.ndarray) -> None:
        """Row ``r`` := ``clip`` (C, L, V, M), zeros after frame L."""
        L = clip.shape[1]
        self.row[:, :L] = clip
        self.row[:, L:self.filled] = 0
        self.filled = L
        buf, pos = self.row.data.cast("B"), self.offset + r * self.row.nbytes
        while buf:
            n = os.pwrite(self.fd, buf, pos)
            buf, pos = buf[n:], pos + n

    def close(self) -> None:
        os.close(self.fd)


def _read_kpfile(raw: str, kpfiles: Path | None, path: Path) -> tuple[Path, Any]:
    """The kpfile an annotation's ``raw_file`` names, looked up under ``--kpfiles``, unpickled."""
    if kpfiles is None:
        raise bad_file(path, f"its keypoints are in kpfiles ({raw!r}); pass --kpfiles DIR")
    for cand in (kpfiles / raw, kpfiles / Path(raw).name):
        if cand.is_file():
            return cand, load(cand)
    raise bad_file(kpfiles, f"no kpfile {Path(raw).name!r} here (named by {path.name})")


def _kp_of(pack: Any, plan: Plan, kpfile: Path) -> Any:
    item = pack.get(plan.name) if isinstance(pack, dict) else None
    if not isinstance(item, dict) or "keypoint" not in item:
        raise bad_file(kpfile, f"no keypoint for clip {plan.name!r}")
    return item["keypoint"]


def import_pyskl(raw: str | os.PathLike, out: str | os.PathLike, *, name: str | None = None,
                 kpfiles: str | os.PathLike | None = None, box_thr: float | None = 0.5,
                 val_box_thr: float | None = None, progress: bool = True) -> Path:
    """Convert one PYSKL pickle into the store ``out`` (published atomically).

    Memory: the unpickled annotations, plus one clip (or one kpfile) at a time; the clips go
    straight into the store's file.
    """
    path, out = Path(raw), Path(out)
    if not path.is_file():
        raise bad_file(path, "no such file (expected a PYSKL annotation .pkl)")
    kpdir = Path(kpfiles) if kpfiles is not None else None
    if kpdir is not None and not kpdir.is_dir():
        raise bad_file(kpdir, "no such folder (--kpfiles: the folder of the kpfiles)")
    dataset = dataset_name(path, name)
    split, anns = read_pickle(path)
    protocols = protocols_of(split, dataset, path)
    train = {n for parts in protocols.values() for n in parts["train"]}
    rep = Report()
    plans = plan_clips(anns, train, box_thr, val_box_thr, path, rep)
    known: set[str] = set()
    for p in plans:
        if p.name in known:
            raise bad_file(path, f"clip {p.name!r} is annotated twice")
        known.add(p.name)
    for p, parts in protocols.items():
        for part, lst in parts.items():
            missing = [n for n in lst if n not in known]
            if missing:
                raise bad_file(path, f"{p} {part}: {len(missing)} clips have no annotation, "
                                     f"e.g. {missing[0]!r}")
    rep.dropped = [p.name for p in plans if p.length == 0]
    plans = [p for p in plans if p.length > 0]
    if not plans:
        raise bad_file(path, "no clip has a person (after box filtering)")
    num_classes = NUM_CLASSES.get(dataset, max(p.label for p in plans) + 1)
    if max(p.label for p in plans) >= num_classes:
        bad = max(plans, key=lambda p: p.label)
        raise bad_file(path, f"clip {bad.name!r}: label {bad.label} outside 0..{num_classes - 1} "
                             f"of {dataset}")
    plans.sort(key=lambda p: p.name)  # rows sorted by name, as every store
    row = {p.name: r for r, p in enumerate(plans)}
    T = max(p.length for p in plans)
    by_file: dict[str, list[Plan]] = defaultdict(list)
    for plan in plans:
        if plan.raw_file is not None:
            by_file[plan.raw_file].append(plan)
    packs: dict[str, tuple[Path, Any]] = {}
    if not rep.joints:  # every clip's keypoints are in kpfiles: V from the first one
        first = sorted(by_file)[0]
        kpfile, pack = packs[first] = _read_kpfile(first, kpdir, path)
        rep.joints.add(_array(_kp_of(pack, by_file[first][0], kpfile), "keypoint", kpfile).shape[1:2])
    if len(rep.joints) != 1:
        raise bad_file(path, f"clips have different joint counts ({sorted(v for v, in rep.joints)})")
    (V,), = rep.joints
    layout = _layout(V, rep.dims, path)
    dropped = set(rep.dropped)

    sources: dict[str, Any] = {"format": "PYSKL annotation pickle", "file": path.name,
                               "sha256": _io.sha256_file(path)}
    with StoreWriter(out, len(plans), T=T, V=V, M=PERSONS, dataset=dataset,
                     num_classes=num_classes, layout=layout) as w, \
            tqdm(total=len(plans), unit="clip", desc="PYSKL clips",
                 disable=None if progress else True) as bar:
        writer = _RowWriter(w.data)

        def put(plan: Plan, clip: np.ndarray, src: Path) -> None:
            if clip.shape[1:3] != (plan.length, V):
                raise bad_file(src, f"clip {plan.name!r}: {clip.shape[1]} frames x {clip.shape[2]} "
                                    f"joints, expected {plan.length} x {V}")
            if not np.isfinite(clip).all():
                raise bad_file(src, f"clip {plan.name!r}: NaN or infinite keypoint values")
            r = row[plan.name]
            writer.write(r, clip.transpose(3, 1, 2, 0))  # (M, L, V, C) -> (C, L, V, M)
            w.names[r], w.labels[r], w.lengths[r] = plan.name, plan.label, plan.length
            bar.update()

        try:
            for plan in plans:
                ann = anns[plan.index]
                if plan.raw_file is None and "frame_inds" in ann:
                    put(plan, compressed_clip(ann, ann["keypoint"], plan, path, rep), path)
                elif plan.raw_file is None:
                    put(plan, plain_clip(ann, f"clip {plan.name!r}", path, rep), path)
            kp_sums = {}
            for raw_file in sorted(by_file):  # one kpfile in memory at a time
                kpfile, pack = packs.pop(raw_file, None) or _read_kpfile(raw_file, kpdir, path)
                kp_sums[kpfile.name] = _io.sha256_file(kpfile)
                for plan in by_file[raw_file]:
                    put(plan, compressed_clip(anns[plan.index], _kp_of(pack, plan, kpfile), plan,
                                              kpfile, rep), kpfile)
                del pack
        finally:
            writer.close()
        if kp_sums:
            sources["kpfiles"] = kp_sums
        w.manifest.update(
            sources=sources,
            channels="x, y, keypoint score" if layout == "coco17" else "x, y, z",
            coordinates="as stored in the pickle (2-D: image pixels; 3-D: camera metres, not "
                        "centred); frames as stored, sampled at load time",
            pyskl={"box_thr": box_thr, "val_box_thr": val_box_thr,
                   "persons": "first 2 of the person axis (FormatGCNInput); compressed: "
                              "DecompressPose(squeeze=True, max_person=10) slots after box_thr",
                   "compressed_clips": rep.compressed, "clips_without_score": rep.no_score,
                   "clips_with_more_persons": int(rep.many_persons),
                   "dropped_without_person": len(rep.dropped), "dropped_examples": rep.dropped[:5]},
            protocols={p: f"PYSKL split {p} train / val" for p in protocols})
        for p, parts in sorted(protocols.items()):
            for part in ("train", "test"):
                kept = [n for n in parts[part] if n not in dropped]
                w.add_split(p, part, _ordered(dataset, p, kept, path))
    if rep.dropped:
        log.warning("%s: %d clips have no person after box filtering and are not stored (e.g. %s)",
                    path, len(rep.dropped), rep.dropped[0])
    log.info("PYSKL %s: %d clips, %d classes, layout %s, T %d -> %s", dataset, len(plans),
             num_classes, layout, T, out)
    return out


def prepare_pyskl(args: argparse.Namespace) -> None:
    """CLI adapter: ``python -m benchmark data prepare pyskl --raw FILE.pkl --out DIR``."""
    if args.raw is None:
        raise BenchmarkError("pyskl: --raw FILE.pkl is required (a PYSKL annotation pickle)")
    import_pyskl(args.raw, args.out, name=args.name, kpfiles=args.kpfiles, box_thr=args.box_thr,
                 val_box_thr=args.val_box_thr)
