"""Official NTU RGB+D body denoising, actor selection and sequence translation.

Follows CTR-GCN (Uason-Chen/CTR-GCN @ e13d758), which took it from Microsoft's SGN code:
``data/ntu/get_raw_denoised_data.py`` (``denoising_by_length``, ``denoising_by_spread``,
``get_one_actor_points``, ``get_two_actors_points``, ``remove_missing_frames``) and
``data/ntu/seq_transformation.py`` (``seq_translation``, ``align_frames``; the ``data/ntu120``
copies differ only in ``align_frames``).

The official quirks are kept on purpose, because the published numbers were trained on them:
the body interval is "first frame + count" (not the frames the body really appeared in), the
virtual actor-2 interval starts at [0, 0] and its start never moves, touching intervals do not
overlap, a frame is dropped when its float32 coordinate sum is exactly 0, and single-actor
sequences are never re-zeroed after translation. Every reduction that decides something
(``var``, ``sum``) runs on arrays with the official shape, dtype and memory layout so that the
float32 results are bit-identical to the official ones on the same NumPy.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NOISE_LEN_THRES = 11        # bodies tracked in <= 11 frames are noise
NOISE_SPR_THRES1 = 0.8      # a frame is noisy when x-spread > 0.8 * y-spread
NOISE_SPR_THRES2 = 0.69754  # a body is noise when >= this share of its frames is noisy
NUM_JOINTS = 25


class SkeletonError(ValueError):
    """A sequence the official pipeline cannot handle; the caller adds the file name."""


@dataclass
class Body:
    """One tracked body ID of a raw sequence, as ``get_raw_bodies_data`` stores it."""

    joints: np.ndarray            # (n * 25, 3) float32, rows in frame order
    interval: np.ndarray          # (n,) int64: first kept frame index + 0..n-1 (official)
    motion: np.float32 | None     # sum of per-axis variances; only set when >1 body IDs

    @property
    def length(self) -> int:
        return len(self.interval)


def body_motion(joints: np.ndarray) -> np.float32:
    """Official motion score: sum over x, y, z of the variance over all joints of all frames."""
    # float32 var over a (n*25, 3) array, exactly as the official call, for bit-equal results
    return np.sum(np.var(joints, axis=0))


def _spread_valid_frames(joints: np.ndarray) -> np.ndarray:
    """Frames whose x-spread is <= 0.8 * y-spread (``get_valid_frames_by_spread``)."""
    pts = joints.reshape(-1, NUM_JOINTS, 3)
    x_spread = pts[:, :, 0].max(axis=1) - pts[:, :, 0].min(axis=1)  # float32, as official
    y_spread = pts[:, :, 1].max(axis=1) - pts[:, :, 1].min(axis=1)
    # The official code ran on NumPy 1.x, where float32 scalar * Python float promoted to
    # float64 (NEP 50 made it float32 in NumPy 2); compare in float64 to keep its decisions.
    keep = x_spread.astype(np.float64) <= NOISE_SPR_THRES1 * y_spread.astype(np.float64)
    return np.flatnonzero(keep)


def denoise_bodies(bodies: dict[str, Body]) -> list[tuple[str, Body, np.float32 | None]]:
    """Official ``denoising_bodies_data``: length, then spread filter, then sort by motion.

    Args:
        bodies: body ID -> Body in order of first appearance (dict order matters for ties).

    Returns:
        (body ID, body, motion after the spread update) tuples, actor candidates first.
        The input bodies are not modified.
    """
    kept = {bid: b for bid, b in bodies.items() if b.length > NOISE_LEN_THRES}
    if not kept:
        # the official script crashes here (IndexError in get_two_actors_points)
        raise SkeletonError(f"all {len(bodies)} bodies are tracked in <= {NOISE_LEN_THRES} frames")
    motion = {bid: b.motion for bid, b in kept.items()}
    if len(kept) == 1:
        return [(bid, b, motion[bid]) for bid, b in kept.items()]

    for bid, body in list(kept.items()):
        if len(kept) == 1:  # never drop the last body
            break
        valid = _spread_valid_frames(body.joints)
        num_noise = body.length - len(valid)
        if num_noise == 0:
            continue
        if num_noise / float(body.length) >= NOISE_SPR_THRES2:
            del kept[bid]
        else:  # keep the body, but judge its motion on the non-noisy frames only
            joints = body.joints.reshape(-1, NUM_JOINTS, 3)[valid].reshape(-1, 3)
            motion[bid] = min(motion[bid], body_motion(joints))
    if len(kept) == 1:
        return [(bid, b, motion[bid]) for bid, b in kept.items()]
    # sorted() is stable: equal motions keep first-appearance order, as in the official code
    order = sorted(kept, key=lambda bid: motion[bid], reverse=True)
    return [(bid, kept[bid], motion[bid]) for bid in order]


def _put(joints: np.ndarray, cols: slice, body: Body) -> tuple[int, int]:
    start, end = int(body.interval[0]), int(body.interval[-1])
    if end >= joints.shape[0]:
        # a body ID listed twice in one frame; the official assignment fails with a shape error
        raise SkeletonError(f"body is listed {body.length} times in {joints.shape[0]} frames")
    joints[start:end + 1, cols] = body.joints.reshape(-1, 3 * NUM_JOINTS)
    return start, end


def place_actors(actors: list[tuple[str, Body, np.float32 | None]], num_frames: int) -> np.ndarray:
    """``get_one_actor_points`` / ``get_two_actors_points``: (num_frames, 75 or 150) float32."""
    if len(actors) == 1:
        joints = np.zeros((num_frames, 75), dtype=np.float32)
        _put(joints, slice(None), actors[0][1])
        return joints
    joints = np.zeros((num_frames, 150), dtype=np.float32)
    start1, end1 = _put(joints, slice(0, 75), actors[0][1])
    start2, end2 = 0, 0  # the official "virtual" actor-2 interval
    for _, body, _ in actors[1:]:
        start, end = int(body.interval[0]), int(body.interval[-1])
        if min(end1, end) - max(start1, start) <= 0:  # touching counts as no overlap
            _put(joints, slice(0, 75), body)
            start1, end1 = min(start, start1), max(end, end1)
        elif min(end2, end) - max(start2, start) <= 0:
            _put(joints, slice(75, 150), body)
            start2, end2 = min(start, start2), max(end, end2)
        # else: overlaps both actors -> discarded
    return joints


def remove_missing_frames(joints: np.ndarray) -> np.ndarray:
    """Drop frames whose float32 coordinate sum is 0 (both actors missing)."""
    return joints[joints.sum(axis=1) != 0]


def denoised_joints(bodies: dict[str, Body], num_frames: int) -> np.ndarray:
    """The official ``raw_denoised_joints`` entry of one sequence: (T, 75) or (T, 150) float32."""
    if len(bodies) == 1:  # single body ID: used as-is, no frame removal
        (bid, body), = bodies.items()
        return place_actors([(bid, body, body.motion)], num_frames)
    return remove_missing_frames(place_actors(denoise_bodies(bodies), num_frames))


def translate(joints: np.ndarray) -> np.ndarray:
    """``seq_translation``: subtract actor 1's spine-middle joint of its first non-zero frame.

    Frames where an actor was missing (coordinate sum 0) are re-zeroed for two-actor
    sequences only, as in the official code. Returns a new float32 array.
    """
    two = joints.shape[1] == 150
    if two:
        missing1 = joints[:, :75].sum(axis=1) == 0
        missing2 = joints[:, 75:].sum(axis=1) == 0
    present = np.flatnonzero((joints[:, :75] != 0).any(axis=1))
    if len(present) == 0:
        raise SkeletonError("actor 1 has no non-zero frame, so there is no origin to centre on")
    origin = joints[present[0], 3:6].copy()  # joint index 1, "spine middle"
    out = joints - np.tile(origin, joints.shape[1] // 3)
    if two:
        out[missing1, :75] = 0
        out[missing2, 75:] = 0
    return out


def to_store_layout(seqs: np.ndarray, lengths: np.ndarray, single: np.ndarray,
                    max_frames: int, copy_single: bool) -> np.ndarray:
    """``align_frames`` for a batch, then the feeder's reshape: a (k, 3, T, 25, 2) float32 view.

    Args:
        seqs: (sum of lengths, 150) translated frames of k clips, concatenated; single-actor
            clips carry zeros in columns 75-149.
        lengths: (k,) frames per clip. single: (k,) bool, clip had one actor.
        copy_single: NTU120 copies actor 1 into the second person slot; NTU60 leaves zeros.
    """
    k = len(lengths)
    padded = np.zeros((k, max_frames, 150), dtype=np.float32)
    rows = np.repeat(np.arange(k), lengths)
    cols = np.arange(len(rows)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    padded[rows, cols] = seqs
    if copy_single:
        padded[single, :, 75:] = padded[single, :, :75]
    # per frame [person0 joint0 xyz ... person1 joint24 xyz] -> (k, T, M, V, C) -> (k, C, T, V, M);
    # a strided view: the caller copies it once, straight into the store's memory map
    return padded.reshape(k, max_frames, 2, NUM_JOINTS, 3).transpose(0, 4, 1, 3, 2)
