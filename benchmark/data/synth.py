"""``synth``: a small synthetic NTU-shaped dataset, the suite's default when no real data exists.

Every clip is a standing NTU-25 skeleton (rest pose in metres, bones along ``NTU_EDGES``)
animated by forward kinematics. A class is a deterministic recipe of body-part motions over
Shap-Mix's five parts (``skeleton.NTU_PARTS``): which parts move and with which primitive
(``swing``, ``raise``, ``circle``, ``oscillate``), axis, cycle count and amplitude.

Class structure (``class_table``): 15 base *families* x variants, class ``c`` = family
``c % 15``, variant ``c // 15``. Variant 0 is the base recipe; the others apply one modifier
each (``tempo``: cycles x ``tempo_ratio``; ``dir``: the first motion changes plane, or
turning sense for ``circle``; ``extra``: one more part moves), then pairs of modifiers
(up to 120 classes). Families share parts and primitives with each other, and each variant
differs from its base in one aspect, so classes come in confusable groups. Because class
index is also the frequency rank in the long-tailed split, every tail class has a head class
it is easily mistaken for, which is what makes the long-tail effect visible. Families 12-14
are two-person interactions; other classes have an all-zero second person (NTU60 style).

Per clip: speed, amplitude, phase, onset/offset, performer body size (fixed per performer ID),
idle sway of every part, rotation about the vertical axis plus a small camera tilt, a small
drift, Kinect-like joint jitter, and a length in ``[min_len, T]`` zero-padded at the end.
Stored coordinates follow the official preprocessing (CTR-GCN's ``seq_transformation.py``):
centred on the first frame's spine-middle joint (index 1) of person 0, no rotation/scale
normalisation.

Names are ``SsssCcccPpppRrrrAaaa`` with NTU60 xsub train performers for train clips and the
other 20 performer IDs for test clips, so ``protocols.protocol_split('synth', 'xsub', ...)``
recovers the split. Everything is a function of the seed (one numpy ``Generator`` per class).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import BenchmarkError
from .protocols import NTU60_XSUB_TRAIN, protocol_split
from .skeleton import NTU_EDGES

log = logging.getLogger(__name__)

SYNTH_VERSION = 1  # bump when the generator's output changes: it is part of the cache key
RECOMMENDED_N_MAX = 200  # IF 100 -> many/medium/few = 9/21/30 classes, 2,614 LT train clips
TRAIN_PERFORMERS = NTU60_XSUB_TRAIN
TEST_PERFORMERS = tuple(p for p in range(1, 41) if p not in NTU60_XSUB_TRAIN)
MAX_PER_PERFORMER = 17 * 3 * 2  # distinct (setup, camera, replication) combinations in NTU60

# Rest pose, metres, relative to spine_base; x = the person's left (P2/P4 side), y up,
# z backwards (the person faces -z, i.e. the camera). Right side = left side mirrored in x.
_LEFT = {4: (0.17, 0.47, 0), 5: (0.19, 0.20, 0), 6: (0.20, -0.05, 0), 7: (0.20, -0.13, 0),
         21: (0.20, -0.21, 0), 22: (0.19, -0.16, -0.04), 12: (0.09, -0.05, 0),
         13: (0.10, -0.47, 0), 14: (0.10, -0.87, 0.02), 15: (0.10, -0.92, -0.09)}
_MIRROR = {4: 8, 5: 9, 6: 10, 7: 11, 21: 23, 22: 24, 12: 16, 13: 17, 14: 18, 15: 19}
_REST = np.zeros((25, 3))
for _j, _p in _LEFT.items():
    _REST[_j] = _p
    _REST[_MIRROR[_j]] = (-_p[0], _p[1], _p[2])
_REST[[1, 20, 2, 3]] = [(0, 0.28, 0), (0, 0.50, 0), (0, 0.58, 0), (0, 0.72, 0)]


def _kinematic_tree(root: int = 0) -> tuple[list[int], np.ndarray]:
    """Re-root the undirected NTU_EDGES graph at spine_base: (BFS order, parent of each joint)."""
    adj = {j: sorted({b if a == j else a for a, b in NTU_EDGES if j in (a, b)}) for j in range(25)}
    parent, order = np.full(25, -1), [root]
    for j in order:  # grows while iterating: breadth-first
        for k in adj[j]:
            if k != root and parent[k] < 0:
                parent[k] = j
                order.append(k)
    return order, parent


_ORDER, _PARENT = _kinematic_tree()
_OFFSET = np.where((_PARENT >= 0)[:, None], _REST - _REST[np.maximum(_PARENT, 0)], 0.0)
# part index -> (root joint, mid joint, side); side +1 = the +x limb; trunk bends at
# spine_mid (carrying the arms, as a real torso does) and nods at the neck
PART_JOINTS = {0: (1, 2, 0), 1: (8, 9, -1), 2: (4, 5, 1), 3: (16, 17, -1), 4: (12, 13, 1)}
_PLANE_SWAP = {"x": "z", "z": "x", "y": "x"}  # the `dir` modifier: forward <-> sideways plane


@dataclass(frozen=True)
class Motion:
    part: int       # 0..4, Shap-Mix order (trunk, P1 arm, P2 arm, P3 leg, P4 leg)
    prim: str       # swing | raise | circle | oscillate
    axis: str       # x: forward plane, z: sideways plane, y: twist about the vertical (a twist
    #                 moves no joint on the spine's axis, so the families do not use it for P0)
    cycles: float   # cycles over the active part of the clip
    amp: float      # radians
    sense: int = 1  # circle turning sense
    phase: float = 0.0


@dataclass(frozen=True)
class ClassDef:
    family: int
    mods: tuple[str, ...]
    person0: tuple[Motion, ...]
    person1: tuple[Motion, ...] | None = None  # None: single-person class (zero second body)
    approach: float = 0.0                      # metres person 1 walks towards person 0

    def parts(self, person: int = 0) -> frozenset[int]:
        return frozenset(m.part for m in (self.person0 if person == 0 else self.person1 or ()))


M = Motion
_FAMILIES: tuple[tuple[tuple[Motion, ...], tuple[Motion, ...] | None, float], ...] = (
    ((M(1, "swing", "x", 1, 0.9),), None, 0.0),
    ((M(2, "raise", "z", 1, 1.3),), None, 0.0),
    ((M(1, "raise", "x", 1, 1.2), M(2, "raise", "x", 1, 1.2)), None, 0.0),
    ((M(1, "circle", "x", 2, 0.6),), None, 0.0),
    ((M(2, "oscillate", "z", 3, 0.5),), None, 0.0),
    ((M(0, "raise", "x", 1, 0.6),), None, 0.0),
    ((M(3, "swing", "x", 1, 0.7),), None, 0.0),
    ((M(4, "raise", "x", 1, 1.0),), None, 0.0),
    ((M(0, "swing", "x", 2, 0.3), M(1, "swing", "x", 2, 0.5)), None, 0.0),
    ((M(2, "raise", "x", 1, 1.2), M(3, "swing", "x", 1, 0.5)), None, 0.0),
    ((M(3, "swing", "x", 2, 0.5), M(4, "swing", "x", 2, 0.5, phase=np.pi)), None, 0.0),
    ((M(0, "swing", "z", 1, 0.3), M(2, "raise", "z", 1, 1.2)), None, 0.0),
    ((M(1, "raise", "x", 1, 1.1),), (M(1, "raise", "x", 1, 1.1),), 0.0),
    ((M(1, "raise", "x", 1, 1.1), M(2, "raise", "x", 1, 1.1)), (M(0, "swing", "x", 1, 0.3),), -0.4),
    ((M(3, "swing", "x", 1, 0.8),), (M(0, "raise", "x", 1, 0.5),), 0.3),
)
del M
VARIANTS = ((), ("tempo",), ("dir",), ("extra",), ("tempo", "dir"), ("extra", "tempo"),
            ("extra", "dir"), ("extra", "tempo", "dir"))
MAX_CLASSES = len(_FAMILIES) * len(VARIANTS)
# the extra part: first part (in this order) the family does not move, with a mild motion
_EXTRA_ORDER = (0, 3, 4, 1, 2)
_EXTRA = {0: ("raise", "x", 0.4), 3: ("raise", "x", 0.7), 4: ("raise", "x", 0.7),
          1: ("raise", "z", 0.9), 2: ("raise", "z", 0.9)}


def class_table(num_classes: int, tempo_ratio: float = 1.6) -> list[ClassDef]:
    """The recipe of every class (see the module docstring for the family x variant rule)."""
    if not 1 <= num_classes <= MAX_CLASSES:
        raise BenchmarkError(f"synth supports 1..{MAX_CLASSES} classes, got {num_classes}")
    out = []
    for c in range(num_classes):
        fam, mods = c % len(_FAMILIES), VARIANTS[c // len(_FAMILIES)]
        p0, p1, approach = _FAMILIES[fam]
        if "extra" in mods:
            part = next(p for p in _EXTRA_ORDER if p not in {m.part for m in p0})
            prim, axis, amp = _EXTRA[part]
            p0 = p0 + (Motion(part, prim, axis, 1, amp),)
        if "dir" in mods:
            m0 = p0[0]
            m0 = replace(m0, sense=-m0.sense) if m0.prim == "circle" else replace(m0, axis=_PLANE_SWAP[m0.axis])
            p0 = (m0,) + p0[1:]
        if "tempo" in mods:
            p0 = tuple(replace(m, cycles=m.cycles * tempo_ratio) for m in p0)
            p1 = None if p1 is None else tuple(replace(m, cycles=m.cycles * tempo_ratio) for m in p1)
        out.append(ClassDef(fam, mods, p0, p1, approach))
    return out


@dataclass(frozen=True)
class SynthParams:
    """Size and difficulty knobs; all of them enter the cache key of :func:`load_synth`."""

    num_classes: int = 60
    train_per_class: int = RECOMMENDED_N_MAX  # >= the n_max of any LT split built from it
    test_per_class: int = 20
    T: int = 100           # stored frames; >64 so the official train crop (min 64) has room
    min_len: int = 40      # shortest clip; < 64 so short clips take the resize-only path too
    seed: int = 0
    tempo_ratio: float = 1.6   # cycles of a `tempo` variant relative to its base
    speed_jitter: float = 0.25  # per-clip cycle factor U(1 - j, 1 + j)
    amp_jitter: float = 0.3    # per-motion amplitude factor U(1 - j, 1 + j)
    phase_jitter: float = 0.4  # radians, std
    idle: float = 0.25         # amplitude (rad) of random sway of every part
    yaw_deg: float = 60.0      # rotation about the vertical axis U(-yaw, yaw)
    tilt_deg: float = 5.0      # camera pitch/roll, std
    drift: float = 0.05        # metres, std of the per-clip linear drift
    noise: float = 0.03        # metres, std of per-joint per-frame jitter

    def __post_init__(self) -> None:
        if self.num_classes < 1 or self.num_classes > MAX_CLASSES:
            raise BenchmarkError(f"synth: num_classes must be in 1..{MAX_CLASSES}, got {self.num_classes}")
        cap = MAX_PER_PERFORMER * len(TRAIN_PERFORMERS)
        for k in ("train_per_class", "test_per_class"):
            if not 1 <= getattr(self, k) <= cap:
                raise BenchmarkError(f"synth: {k} must be in 1..{cap} (unique NTU names), got {getattr(self, k)}")
        if not 2 <= self.min_len <= self.T:
            raise BenchmarkError(f"synth: need 2 <= min_len <= T, got min_len={self.min_len}, T={self.T}")
        for f in fields(self):
            if isinstance(getattr(self, f.name), float) and not np.isfinite(getattr(self, f.name)):
                raise BenchmarkError(f"synth: {f.name} must be a finite number, got {getattr(self, f.name)}")


def _params(kw: dict[str, Any]) -> SynthParams:
    """Validated params; values are cast to the field's type so that e.g. ``yaw_deg=60`` and
    ``yaw_deg=60.0`` give the same cache key."""
    types = {f.name: type(f.default) for f in fields(SynthParams)}
    bad = sorted(set(kw) - set(types))
    if bad:
        raise BenchmarkError(f"synth: unknown parameter(s) {', '.join(bad)} (known: {', '.join(sorted(types))})")
    for k, v in kw.items():
        if types[k] is int and not float(v).is_integer():
            raise BenchmarkError(f"synth: {k} must be an integer, got {v!r}")
    return SynthParams(**{k: types[k](v) for k, v in kw.items()})


def clip_names(p: SynthParams, label: int) -> list[str]:
    """Names of a class's clips, train clips first. Performers cycle; for the k-th clip of a
    performer, (setup, camera, replication) is a distinct combination, so names are unique."""
    out = []
    for ids, n in ((TRAIN_PERFORMERS, p.train_per_class), (TEST_PERFORMERS, p.test_per_class)):
        for i in range(n):
            perf, k = ids[i % len(ids)], i // len(ids)
            setup, rep, cam = 1 + k // 6, 1 + (k // 3) % 2, 1 + (k + perf) % 3
            out.append(f"S{setup:03d}C{cam:03d}P{perf:03d}R{rep:03d}A{label + 1:03d}")
    return out


def _rot(axis: int, a: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) about a coordinate axis by angles ``a`` (right-handed)."""
    c, s = np.cos(a), np.sin(a)
    R = np.zeros(a.shape + (3, 3))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    R[..., axis, axis] = 1
    R[..., i, i], R[..., j, j], R[..., i, j], R[..., j, i] = c, c, -s, s
    return R


def _euler(a: np.ndarray) -> np.ndarray:
    """R = Ry(a1) Rz(a2) Rx(a0) in closed form, (..., 3) -> (..., 3, 3) float32: flex first,
    then abduction, then twist (cheaper than three stacked 3x3 products)."""
    ca, cb, cc = np.cos(a).astype(np.float32).transpose(-1, *range(a.ndim - 1))
    sa, sb, sc = np.sin(a).astype(np.float32).transpose(-1, *range(a.ndim - 1))
    return np.stack([
        np.stack([cb * cc, sb * sa - cb * sc * ca, cb * sc * sa + sb * ca], -1),
        np.stack([sc, cc * ca, -cc * sa], -1),
        np.stack([-sb * cc, sb * sc * ca + cb * sa, cb * ca - sb * sc * sa], -1)], -2)


def _pose(ang: np.ndarray) -> np.ndarray:
    """Forward kinematics. ``ang`` (n, T, 5, 4) = per part (rx, ry, rz) at its root joint and
    a flexion at its mid joint; returns joint positions (n, T, 25, 3) of a unit-size body."""
    root = _euler(ang[..., :3])
    mid = _rot(0, ang[..., 3]).astype(np.float32)
    local = {}
    for part, (r, m, _) in PART_JOINTS.items():
        local[r], local[m] = root[:, :, part], mid[:, :, part]
    pos = np.zeros(ang.shape[:2] + (25, 3), dtype=np.float32)
    glob: dict[int, np.ndarray | None] = {}  # None = identity, skips the product
    for j in _ORDER:
        par, g = _PARENT[j], None
        if par >= 0:
            g = glob[par]
            pos[:, :, j] = pos[:, :, par] + (_OFFSET[j] if g is None else g @ _OFFSET[j].astype(np.float32))
        if j in local:
            g = local[j] if g is None else g @ local[j]
        glob[j] = g
    return pos


def _animate(motions: tuple[Motion, ...], s: np.ndarray, tau: np.ndarray, p: SynthParams,
             rng: np.random.Generator) -> np.ndarray:
    """Joint angles (n, T, 5, 4) of one person: class motions on active time ``s`` plus idle sway."""
    n, T = s.shape
    ang = np.zeros((n, T, 5, 4))
    speed = rng.uniform(1 - p.speed_jitter, 1 + p.speed_jitter, (n, 1))
    for m in motions:
        _, _, side = PART_JOINTS[m.part]
        sgn = side if side else 1  # z rotations mirrored so that + is outward on both sides
        amp = m.amp * rng.uniform(1 - p.amp_jitter, 1 + p.amp_jitter, (n, 1))
        w = 2 * np.pi * m.cycles * speed * s + m.phase + rng.normal(0, p.phase_jitter, (n, 1))
        ax, ms = "xyz".index(m.axis), -1.0 if m.part >= 3 else 1.0  # knees bend backwards
        axis_sign = sgn if m.axis == "z" else 1
        if m.prim == "swing":
            ang[..., m.part, ax] += axis_sign * amp * np.sin(w)
            ang[..., m.part, 3] += ms * 0.3 * amp * (1 - np.cos(w)) / 2
        elif m.prim == "raise":  # up and down `cycles` times, never below rest
            lift = amp * (1 - np.cos(w - m.phase)) / 2
            ang[..., m.part, ax] += axis_sign * lift
            ang[..., m.part, 3] += ms * (1.5 if m.part >= 3 else 0.2) * lift
        elif m.prim == "circle":  # held forward, the limb end turns around that direction
            ang[..., m.part, 0] += amp + amp * np.sin(w)
            ang[..., m.part, 2] += sgn * m.sense * amp * np.cos(w)
        elif m.prim == "oscillate":  # limb held up, fast flexion at the mid joint (a wave)
            hold = np.clip(np.minimum(s, 1 - s) / 0.15, 0, 1)
            lift = {0: 0.0, 1: 1.3, 2: 1.3, 3: 0.4, 4: 0.4}[m.part]
            ang[..., m.part, ax] += axis_sign * lift * hold
            ang[..., m.part, 3] += ms * hold * (0.9 * (m.part > 0) + amp * np.sin(w))
        else:
            raise ValueError(f"unknown primitive {m.prim!r}")
    # idle sway on every part so "which parts move" is not readable from stillness alone
    f, ph, g = (rng.uniform(lo, hi, (n, 1, 5, 4)) for lo, hi in ((0.3, 1.2), (0, 2 * np.pi), (0, p.idle)))
    ang += g * np.sin(2 * np.pi * f * tau[:, :, None, None] + ph)
    return ang


def _class_clips(p: SynthParams, label: int, cdef: ClassDef, body: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """All clips of one class: (data (n, 3, T, 25, 2) float32, lengths (n,), names)."""
    rng = np.random.default_rng([p.seed, label, SYNTH_VERSION])
    names = clip_names(p, label)
    n, T = len(names), p.T
    lengths = rng.integers(p.min_len, T + 1, n)
    t = np.arange(T)[None, :]
    tau = np.minimum(t / (lengths[:, None] - 1), 1.0)
    onset, offset = rng.uniform(0, 0.15, (n, 1)), rng.uniform(0.85, 1.0, (n, 1))
    s = np.clip((tau - onset) / (offset - onset), 0, 1)
    perf = np.array([int(nm[9:12]) for nm in names])
    people = [(cdef.person0, body[perf] * rng.uniform(0.97, 1.03, n))]
    if cdef.person1 is not None:
        people.append((cdef.person1, rng.uniform(0.88, 1.12, n)))
    yaw = np.deg2rad(rng.uniform(-p.yaw_deg, p.yaw_deg, n))
    cam = (_rot(0, np.deg2rad(rng.normal(0, p.tilt_deg, n)))
           @ _rot(2, np.deg2rad(rng.normal(0, p.tilt_deg, n))) @ _rot(1, yaw)).astype(np.float32)
    out = np.zeros((n, 2, T, 25, 3), dtype=np.float32)
    for k, (motions, scale) in enumerate(people):
        x = _pose(_animate(motions, s, tau, p, rng)) * scale[:, None, None, None].astype(np.float32)
        if k == 1:  # facing person 0 from D metres in front, optionally walking closer/away
            x[..., 0::2] *= -1  # turned by 180 degrees about the vertical axis
            dist = rng.uniform(0.9, 1.3, n)[:, None] - cdef.approach * (3 * s**2 - 2 * s**3)
            x[..., 0] += rng.normal(0, 0.1, (n, 1, 1))
            x[..., 2] -= dist[:, :, None]
        drift = rng.normal(0, p.drift, (n, 1, 1, 3)) * np.array([1, 0, 1])
        x += (drift * tau[:, :, None, None]).astype(np.float32)
        x = x @ cam.transpose(0, 2, 1)[:, None]  # rows are joint vectors: x R^T = (R x^T)^T
        out[:, k] = x + p.noise * rng.standard_normal(x.shape, dtype=np.float32)
    out -= out[:, :1, :1, 1:2].copy()  # official centring: person 0, frame 0, spine_mid
    out[:, len(people):] = 0
    out *= (t < lengths[:, None])[:, None, :, None, None]  # zero padding at the end
    return out.transpose(0, 4, 2, 3, 1).astype(np.float32), lengths, names


def _body_scales(p: SynthParams) -> np.ndarray:
    """Body size of each performer ID (1..40), fixed per seed: xsub tests unseen bodies."""
    return np.random.default_rng([p.seed, 1_000_003, SYNTH_VERSION]).uniform(0.88, 1.12, 41)


def iter_synth(p: SynthParams) -> Iterator[tuple[int, np.ndarray, np.ndarray, list[str]]]:
    """Yield (label, data, lengths, names) class by class; each class has its own RNG stream."""
    body = _body_scales(p)
    for label, cdef in enumerate(class_table(p.num_classes, p.tempo_ratio)):
        yield (label, *_class_clips(p, label, cdef, body))


def generate_synth(**params: Any) -> dict[str, Any]:
    """Generate the whole dataset in memory (keyword arguments: :class:`SynthParams` fields).

    Returns a dict with ``data`` float32 (N, 3, T, 25, 2), ``labels`` int64, ``lengths`` int64,
    ``names`` (list), ``is_train`` bool (xsub train performer) and ``params``; rows sorted by
    name like the official sample list. Default size: 13,200 clips, ~0.8 GB.
    """
    p = _params(params)
    blocks = list(iter_synth(p))
    names = np.array([nm for *_, nms in blocks for nm in nms])
    order = np.argsort(names, kind="stable")
    return {"data": np.concatenate([b[1] for b in blocks])[order],
            "labels": np.repeat([b[0] for b in blocks], [len(b[3]) for b in blocks]).astype(np.int64)[order],
            "lengths": np.concatenate([b[2] for b in blocks]).astype(np.int64)[order],
            "names": names[order].tolist(),
            "is_train": np.array([int(nm[9:12]) in TRAIN_PERFORMERS for nm in names[order]]),
            "params": asdict(p)}


def describe(cdef: ClassDef) -> str:
    """One-line human-readable recipe, written into the manifest."""
    def fmt(ms: tuple[Motion, ...]) -> str:
        return " + ".join(f"P{m.part} {m.prim}-{m.axis}{'-rev' * (m.sense < 0)} x{m.cycles:g}" for m in ms)
    s = f"family {cdef.family} [{','.join(cdef.mods) or 'base'}]: {fmt(cdef.person0)}"
    if cdef.person1 is not None:
        s += f" | partner: {fmt(cdef.person1)}, approach {cdef.approach:+g} m"
    return s


def write_synth(out: str | Path, p: SynthParams) -> Path:
    """Generate into a prepared store at ``out`` (atomic), class by class to bound memory."""
    from .store import StoreWriter

    names = [nm for c in range(p.num_classes) for nm in clip_names(p, c)]
    row = np.empty(len(names), dtype=np.int64)  # store rows are sorted by name, like NTU's list
    row[np.argsort(np.array(names), kind="stable")] = np.arange(len(names))
    train, test = protocol_split("synth", "xsub", sorted(names))
    table = class_table(p.num_classes, p.tempo_ratio)
    with StoreWriter(out, len(names), T=p.T, V=25, M=2, dataset="synth", num_classes=p.num_classes,
                     layout="ntu25",
                     generator={"name": "benchmark.data.synth", "version": SYNTH_VERSION,
                                "params": asdict(p), "seed": p.seed},
                     recommended_n_max=RECOMMENDED_N_MAX,
                     classes=[describe(c) for c in table]) as w:
        start = 0
        for label, data, lengths, nms in iter_synth(p):
            finite = np.isfinite(data).reshape(len(nms), -1).all(axis=1)
            if not finite.all():  # e.g. an absurd parameter: never publish NaN for training
                raise BenchmarkError(f"synth: sample {nms[int(np.argmin(finite))]} has NaN or infinite "
                                     f"coordinates with these parameters ({asdict(p)})")
            rows = row[start:start + len(nms)]
            start += len(nms)
            w.data[rows] = data
            w.labels[rows], w.lengths[rows] = label, lengths
            for r, nm in zip(rows, nms):
                w.names[r] = nm
        w.add_split("xsub", "train", train)
        w.add_split("xsub", "test", test)
    log.info("synth: wrote %s (%d clips, %d classes, T=%d)", out, len(names), p.num_classes, p.T)
    return Path(out)


def prepare_synth(args: argparse.Namespace) -> None:
    """``python -m benchmark data prepare synth --out DIR [--seed S]``: default-size store."""
    write_synth(args.out, _params({"seed": int(args.seed)}))


def cache_key(p: SynthParams) -> str:
    blob = json.dumps({"version": SYNTH_VERSION, **asdict(p)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def load_synth(cache_dir: str | Path, **params: Any) -> Path:
    """Path of a synth store with these parameters, generated once into ``cache_dir``.

    The folder is ``synth-<hash of version + params>``; it is published atomically, so a
    complete folder is reused as is and an interrupted generation leaves nothing behind.
    """
    p = _params(params)
    path = Path(cache_dir) / f"synth-{cache_key(p)}"
    if not (path / "manifest.json").is_file():
        write_synth(path, p)
    return path
