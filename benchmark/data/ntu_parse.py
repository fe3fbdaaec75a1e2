"""Read one NTU RGB+D ``.skeleton`` file and run the official per-file pipeline on it.

Follows CTR-GCN (Uason-Chen/CTR-GCN @ e13d758) ``data/ntu/get_raw_skes_data.py``
(``get_raw_bodies_data``): frames without a body are dropped, each body ID collects its
joints (float32) and an interval, and with several body IDs each gets a motion score. The
denoising and translation that follow are in :mod:`benchmark.data.ntu_denoise`. Also holds
the process-pool worker that turns a list of files into one chunk file (:func:`parse_chunk`), used by :mod:`benchmark.data.ntu_raw`.
"""
from __future__ import annotations

import hashlib
import logging
import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import _io
from ..errors import bad_file
from .ntu_fastparse import (BODY_INFO_TOKENS, BODY_TOKENS, JOINT_TOKENS, XYZ_OFFSETS, Layout,
                            fast_layout)
from .ntu_denoise import (NUM_JOINTS, Body, SkeletonError, body_motion, denoised_joints, to_store_layout,
                          translate)

log = logging.getLogger(__name__)

MAX_FRAMES = 300          # official align_frames pads to the longest sequence: 300 in NTU
CHUNK_VERSION = 1         # bump when the per-file output changes, so old chunk files are redone
STATS = ("files_with_dropped_frames", "frames_dropped", "files_with_several_body_ids", "two_actor_clips")


@dataclass
class RawSequence:
    """What ``get_raw_bodies_data`` returns for one file (colours are not used downstream)."""

    name: str
    bodies: dict[str, Body]    # body ID -> Body, in order of first appearance
    num_frames: int            # frames with at least one body
    frames_dropped: list[int]  # 0-based indices of the frames without a body


def parse_skeleton(raw: bytes, path: str | Path) -> RawSequence:
    """Parse the text of one ``.skeleton`` file (CRLF or LF); ``path`` names it in errors.

    A vectorised fast path (:func:`benchmark.data.ntu_fastparse.fast_layout`) reads well-formed files; anything it does
    not vouch for (a bad count, a truncated file, a non-numeric coordinate, ...) is redone by
    the token-by-token reference reader (:func:`_reference_layout`), which raises the precise
    error. Both give bit-identical results wherever the fast path succeeds.
    """
    layout = fast_layout(raw, path)
    if layout is None:
        layout = _reference_layout(raw, path)
    return _build(path, *layout)


def _parse_reference(raw: bytes, path: str | Path) -> RawSequence:
    """:func:`parse_skeleton` through the reference reader only (tests compare the two)."""
    return _build(path, *_reference_layout(raw, path))


_BODY_TOKENS = BODY_TOKENS
_XYZ_OFFSETS = XYZ_OFFSETS


def _reference_layout(raw: bytes, path: str | Path) -> Layout:
    """Token-by-token reader: the reference for the fast path and the reporter of bad files."""
    tok = raw.split()

    def count(pos: int, what: str) -> int:
        try:
            value = int(tok[pos])
        except IndexError:
            raise bad_file(path, f"truncated: the file ends where {what} should be") from None
        except ValueError:
            raise bad_file(path, f"{what} {tok[pos][:20]!r} is not an integer") from None
        if value < 0:
            raise bad_file(path, f"negative {what} {value}")
        return value

    num_frames = count(0, "the frame count")
    if num_frames == 0:
        raise bad_file(path, "the frame count is 0")
    pos, kept = 1, 0
    occ_ids: list[bytes] = []    # body ID of each (frame, body) occurrence
    occ_frame: list[int] = []    # kept-frame index of each occurrence
    occ_start: list[int] = []    # token index of its first joint's x
    dropped: list[int] = []
    for f in range(num_frames):
        num_bodies = count(pos, f"the body count of frame {f + 1}")
        pos += 1
        if num_bodies == 0:
            dropped.append(f)
            continue
        for b in range(num_bodies):
            if pos >= len(tok):
                raise bad_file(path, f"truncated: the file ends in frame {f + 1} of {num_frames}")
            occ_ids.append(tok[pos])
            pos += BODY_INFO_TOKENS
            num_joints = count(pos, f"the joint count of frame {f + 1}")
            if num_joints != NUM_JOINTS:
                raise bad_file(path, f"frame {f + 1} body {b + 1} has {num_joints} joints, "
                                     f"expected {NUM_JOINTS}")
            occ_frame.append(kept)
            occ_start.append(pos + 1)
            pos += 1 + JOINT_TOKENS * NUM_JOINTS
            if pos > len(tok):
                raise bad_file(path, f"truncated: the file ends in frame {f + 1} of {num_frames}")
        kept += 1
    if pos < len(tok):  # the official reader ignores anything after the last frame, so do we
        log.warning("%s: %d extra tokens after the last frame ignored", path, len(tok) - pos)
    if kept == 0:
        raise bad_file(path, f"no body in any of its {num_frames} frames "
                             "(is it on the official missing-skeleton list?)")

    index = (np.asarray(occ_start)[:, None, None] + _XYZ_OFFSETS).ravel().tolist()
    try:
        # text -> float64 -> float32 matches the official np.array(str_tokens, dtype=float32)
        with np.errstate(over="ignore"):  # beyond float32 -> inf, reported by _build
            xyz = np.array(operator.itemgetter(*index)(tok), dtype=np.float64).astype(np.float32)
    except ValueError as e:
        raise bad_file(path, f"non-numeric joint coordinate ({e})") from None
    return num_frames, kept, dropped, occ_ids, occ_frame, xyz.reshape(-1, NUM_JOINTS, 3)


def _build(path: str | Path, num_frames: int, kept: int, dropped: list[int], occ_ids: list[bytes],
           occ_frame: list[int], xyz: np.ndarray) -> RawSequence:
    """Check the coordinates are finite and group the occurrences by body ID."""
    if not np.isfinite(xyz).all():
        occ = int(np.flatnonzero(~np.isfinite(xyz).all(axis=(1, 2)))[0])
        frame = np.setdiff1d(np.arange(num_frames), dropped)[occ_frame[occ]]
        raise bad_file(path, f"NaN or infinite joint coordinate in frame {frame + 1}")

    groups: dict[bytes, list[int]] = {}
    for i, bid in enumerate(occ_ids):
        groups.setdefault(bid, []).append(i)
    bodies = {}
    for bid, occ in groups.items():
        joints = xyz[occ].reshape(-1, 3)
        # official interval: the first frame, then +1 per further appearance (even across gaps)
        interval = occ_frame[occ[0]] + np.arange(len(occ), dtype=np.int64)
        bodies[bid.decode("ascii", "replace")] = Body(joints, interval, None)
    if len(bodies) > 1:
        for body in bodies.values():
            body.motion = body_motion(body.joints)
    return RawSequence(Path(path).stem, bodies, kept, dropped)


# ---------------------------------------------------------------- fast path
# Tokens are found with numpy (the same ASCII whitespace as bytes.split()); a short Python walk
# over the frames reads the body counts; the x, y, z tokens are converted by a vectorised
# decimal reader (_decimals). Body IDs (~7.2e16, not exact in float64) are kept as bytes.
# Work arrays are reused between calls (_Work, a few times the largest file's size per thread):
# fresh multi-100-KB temporaries cost more in page faults than the arithmetic on them.

def read_skeleton(path: str | Path) -> RawSequence:
    """Read and parse one ``.skeleton`` file."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise bad_file(path, f"cannot read ({e.strerror})") from None
    return parse_skeleton(raw, path)


def sequence_from_raw(seq: RawSequence, path: str | Path, max_frames: int = MAX_FRAMES) -> np.ndarray:
    """Denoise and translate a parsed file: (L, 75) for one actor or (L, 150) for two."""
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # overflow -> inf, reported below
            out = translate(denoised_joints(seq.bodies, seq.num_frames))
    except SkeletonError as e:
        raise bad_file(path, str(e)) from None
    if not np.isfinite(out).all():  # finite input, but too large to translate within float32
        raise bad_file(path, "NaN or infinite coordinate after translation to the first frame's "
                             "origin (joint coordinates beyond float32's range)")
    if out.shape[0] > max_frames:
        raise bad_file(path, f"{out.shape[0]} frames after denoising, more than the {max_frames} "
                             "the store holds")
    return out


def parse_chunk(chunk_file: str, names: list[str], paths: list[str],
                max_frames: int = MAX_FRAMES) -> dict[str, int]:
    """Process-pool worker: parse, denoise and translate files; save them as one chunk file.

    The chunk holds the translated frames of all files concatenated, (sum L, 150) float32
    (single-actor clips padded with zeros to 150 columns), their lengths, a single-actor flag,
    the size and SHA-1 of each file's bytes (for the store's input checksum) and counters
    (``STATS``). Padding to 300 frames and the NTU60/NTU120 second-person rule are applied by
    :func:`fill_rows` when the store is written.
    """
    seqs, lengths, single, sha1, sizes, dropped, multi = [], [], [], [], [], [], []
    for path in paths:
        try:
            raw = Path(path).read_bytes()
        except OSError as e:
            raise bad_file(path, f"cannot read ({e.strerror})") from None
        seq = parse_skeleton(raw, path)
        out = sequence_from_raw(seq, path, max_frames)
        if out.shape[1] == 75:
            out = np.hstack([out, np.zeros_like(out)])
            single.append(True)
        else:
            single.append(False)
        seqs.append(out)
        lengths.append(out.shape[0])
        sha1.append(hashlib.sha1(raw).hexdigest())
        sizes.append(len(raw))
        dropped.append(len(seq.frames_dropped))
        multi.append(len(seq.bodies))
    stats = dict(zip(STATS, (int(np.count_nonzero(dropped)), int(sum(dropped)),
                             int(sum(m > 1 for m in multi)), len(single) - int(sum(single)))))
    with _io.atomic_path(chunk_file, suffix=".npz") as tmp:
        np.savez(tmp, version=CHUNK_VERSION, names=np.array(names), sha1=np.array(sha1),
                 sizes=np.array(sizes, dtype=np.int64),
                 frames=np.concatenate(seqs), lengths=np.array(lengths, dtype=np.int64),
                 single=np.array(single, dtype=bool),
                 stats=np.array([stats[k] for k in STATS], dtype=np.int64))
    return stats




def _read_chunk(chunk_file: str, names: list[str] | None) -> tuple[dict | None, str]:
    """The arrays of a chunk file and "", or None and why it cannot be used."""
    try:
        with np.load(chunk_file, allow_pickle=False) as z:
            c = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 - truncated or corrupt: zipfile, numpy and OS errors alike
        return None, f"{type(e).__name__}: {e}"
    keys = {"version", "names", "sha1", "sizes", "frames", "lengths", "single", "stats"}
    if not keys <= c.keys():
        return None, f"missing arrays {sorted(keys - c.keys())}"
    k = len(c["names"])
    if int(c["version"]) != CHUNK_VERSION or (names is not None and c["names"].tolist() != names):
        return None, "written by another version or for other files"
    if (c["frames"].ndim != 2 or c["frames"].shape[1] != 150 or len(c["lengths"]) != k
            or len(c["single"]) != k or int(c["lengths"].sum()) != len(c["frames"])):
        return None, "inconsistent arrays"
    return c, ""


def fill_rows(data_file: str, chunk_file: str, row: int, copy_single: bool,
              names: list[str] | None = None, paths: list[str] | None = None) -> dict[str, Any]:
    """Process-pool worker: write one chunk's clips into rows ``row...`` of the store's data.npy.

    Each worker maps the (not yet published) ``data.npy`` itself and fills disjoint rows, so
    the 180 KB-per-clip padding and transposition run in parallel. Returns the chunk's names,
    lengths, file sizes, SHA-1s and counters for the parent to record, and ``reparsed``: why
    the chunk file could not be used, if it was parsed again from ``paths`` (a work file
    truncated by a crash or a full disk heals itself instead of failing every rerun).
    """
    data = np.load(data_file, mmap_mode="r+", allow_pickle=False)
    max_frames = data.shape[2]
    c, problem = _read_chunk(chunk_file, names)
    if c is None and paths is not None:
        parse_chunk(chunk_file, names, paths, max_frames)
        c, again = _read_chunk(chunk_file, names)
        if c is None:
            raise bad_file(chunk_file, f"unreadable work file even after parsing it again ({again}); "
                                       "delete it and rerun")
    elif c is None:
        raise bad_file(chunk_file, f"unreadable work file, delete it and rerun ({problem})")
    k = len(c["names"])
    data[row:row + k] = to_store_layout(c["frames"], c["lengths"], c["single"], max_frames, copy_single)
    data.flush()
    del data
    return {"names": c["names"].tolist(), "lengths": c["lengths"].tolist(), "sizes": c["sizes"].tolist(),
            "sha1": c["sha1"].tolist(), "stats": c["stats"].tolist(), "reparsed": problem}
