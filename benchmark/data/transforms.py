"""Batched clip transforms of the NTU feeder: crop/resize, random rotation, bone/motion streams.

Follows CTR-GCN's ``feeders/tools.py`` (``valid_crop_resize``, ``random_rot``) and Shap-Mix's
``feeders/feeder_ntu.py:Feeder.__getitem__`` (same as CTR-GCN's), but works on a whole batch
(N, C, T, V, M) on the training device instead of one numpy clip in a DataLoader worker.
The official per-clip order is kept: crop+resize -> rotation (train) -> bone -> motion.

Randomness comes only from an explicit ``torch.Generator`` (the official workers are re-seeded
by worker id and replay the same streams every epoch); the random draws are exposed as separate
functions (:func:`crop_params`, :func:`draw_angles`) so tests can force them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .skeleton import NTU_BONE_PAIRS

STREAMS = ("j", "b", "jm", "bm")
# Official crop floor: `np.maximum(..., 64)` is a literal in tools.py, not `window`.
OFFICIAL_MIN_CROP = 64


def _draw_uniform(n: int, generator: torch.Generator | None, device: torch.device,
                  dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """U[0,1) draws from ``generator`` (on its own device), moved to ``device``."""
    gdev = generator.device if generator is not None else device
    u = torch.rand(n, generator=generator, device=gdev, dtype=dtype)
    return u.to(device)


def crop_params(lengths: torch.Tensor, p_interval: Sequence[float] = (0.5, 1.0),
                generator: torch.Generator | None = None,
                min_crop: int = OFFICIAL_MIN_CROP) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-clip crop (start, length) exactly as ``valid_crop_resize`` chooses them.

    One value in ``p_interval`` (test): centre crop, ``bias = int((1 - p) * L / 2)`` frames
    removed at each end (== int(0.025 L) for p = 0.95). Two values (train): p ~ U(lo, hi),
    ``crop = min(max(floor(L * p), min_crop), L)``, start uniform in [0, L - crop].
    float64 arithmetic in the official operation order, so the integers match numpy's.

    Args:
        lengths: (N,) int64 valid frame counts, all >= 1.
        p_interval: (p,) or (lo, hi) with 0 < p <= 1.
        generator: source of the train draws (p first, then the start); unused for test.
        min_crop: lower bound on the train crop length (official: 64, independent of window).
    Returns:
        start, length: (N,) int64 on ``lengths.device``.
    """
    lengths = lengths.to(torch.int64)
    # checked on the host only: on an accelerator the check would stall every batch (the
    # loader validates all lengths once up front instead)
    if lengths.device.type == "cpu" and lengths.numel() and int(lengths.min()) < 1:
        raise ValueError("valid_crop_resize needs clips with at least one valid frame")
    p_interval = tuple(float(p) for p in p_interval)
    if len(p_interval) == 1:
        p = p_interval[0]
        if not 0.0 < p <= 1.0:
            raise ValueError(f"centre-crop ratio must be in (0, 1], got {p}")
        bias = torch.floor((1.0 - p) * lengths.double() / 2).to(torch.int64)
        return bias, lengths - 2 * bias
    if len(p_interval) != 2:
        raise ValueError(f"p_interval must have 1 or 2 values, got {p_interval}")
    lo, hi = p_interval
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"p_interval must satisfy 0 < lo <= hi <= 1, got {p_interval}")
    n = lengths.numel()
    p = _draw_uniform(n, generator, lengths.device) * (hi - lo) + lo
    crop = torch.floor(lengths.double() * p).to(torch.int64).clamp_min(min_crop)
    crop = torch.minimum(crop, lengths)
    slack = lengths - crop + 1  # number of admissible starts
    u = _draw_uniform(n, generator, lengths.device)
    # u < 1, but u * slack can round up to slack in float64: clamp keeps the start admissible
    start = torch.minimum(torch.floor(u * slack.double()).to(torch.int64), slack - 1)
    return start, crop


def crop_resize(x: torch.Tensor, start: torch.Tensor, length: torch.Tensor,
                window: int = 64) -> torch.Tensor:
    """Resample frames [start, start + length) of each clip to ``window`` frames.

    Reproduces the official ``F.interpolate(mode='bilinear', align_corners=False)`` along
    time: output frame i reads source position ``s = len / window * (i + 0.5) - 0.5`` (float32,
    as PyTorch computes it for float input), clamped below at 0; i0 = min(floor(s), len - 1),
    lam = clamp(s - i0, 0, 1), i1 = i0 + 1 unless i0 is the last frame; out = x[i0] (1 - lam)
    + x[i1] lam. Past the last frame this degenerates to repeating it (the upper clamp).

    Args:
        x: (N, C, T, V, M) clips, valid frames first; T >= max(start + length).
        start, length: (N,) int64 crop of each clip (length >= 1).
        window: output frame count.
    Returns:
        (N, C, window, V, M) tensor of x's dtype.
    """
    N, C, T, V, M = x.shape
    dev = x.device
    start = start.to(dev, torch.int64)
    length = length.to(dev, torch.int64)
    i = torch.arange(window, device=dev, dtype=torch.float32)
    scale = length.to(torch.float32) / window
    src = (scale[:, None] * (i + 0.5) - 0.5).clamp_min(0.0)           # (N, W)
    i0 = torch.minimum(torch.floor(src).to(torch.int64), (length - 1)[:, None])
    lam = (src - i0.to(torch.float32)).clamp(0.0, 1.0)
    i1 = i0 + (i0 < (length - 1)[:, None]).to(torch.int64)
    # Row (n, c, t) of x viewed as (N*C*T, V*M): index_select copies whole V*M frames, ~4x
    # faster on CPU than an element-wise gather with an expanded index.
    rows = x.reshape(N * C * T, V * M)
    base = ((torch.arange(N, device=dev) * C)[:, None] + torch.arange(C, device=dev)) * T  # (N, C)
    out_shape = (N, C, window, V, M)

    def frames(t: torch.Tensor) -> torch.Tensor:
        idx = (base[:, :, None] + (start[:, None] + t)[:, None, :]).reshape(-1)
        return rows.index_select(0, idx).view(out_shape)

    x0, x1 = frames(i0), frames(i1)
    lam = lam.to(x.dtype).view(N, 1, window, 1, 1)
    # x1*lam + x0*(1-lam) as one fused multiply-add: on CPU this is bit-identical to the
    # official F.interpolate kernel (x0*(1-lam) + x1*lam rounds differently by ~1 ulp)
    return torch.addcmul(x1 * lam, x0, 1.0 - lam)


def valid_crop_resize(x: torch.Tensor, lengths: torch.Tensor, window: int = 64,
                      p_interval: Sequence[float] = (0.5, 1.0),
                      generator: torch.Generator | None = None,
                      min_crop: int = OFFICIAL_MIN_CROP) -> torch.Tensor:
    """Batched ``tools.valid_crop_resize``: crop each clip's valid frames, resize to ``window``.

    ``x`` is (N, C, T, V, M) with padding at the end; ``lengths`` (N,) the valid frame counts
    (clips shorter than ``window``, even a single frame, are stretched). ``min_crop`` is the
    official hard-coded 64; pass ``window`` to make the floor follow a different window.
    """
    start, length = crop_params(lengths.to(x.device), p_interval, generator, min_crop)
    return crop_resize(x, start, length, window)


def draw_angles(n: int, generator: torch.Generator | None = None, theta: float = 0.3,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """(n, 3) float32 rotation angles (about x, y, z) ~ U(-theta, theta), one triple per clip."""
    gdev = generator.device if generator is not None else torch.device(device)
    a = torch.empty(n, 3, device=gdev, dtype=torch.float32).uniform_(-theta, theta, generator=generator)
    return a.to(device)


def rotation_matrices(angles: torch.Tensor) -> torch.Tensor:
    """(N, 3) angles -> (N, 3, 3) R = Rz @ Ry @ Rx with the official (transposed-looking) signs."""
    c, s = angles.cos(), angles.sin()
    one, zero = torch.ones_like(c[:, 0]), torch.zeros_like(c[:, 0])

    def mat(rows):
        return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)

    rx = mat([(one, zero, zero), (zero, c[:, 0], s[:, 0]), (zero, -s[:, 0], c[:, 0])])
    ry = mat([(c[:, 1], zero, -s[:, 1]), (zero, one, zero), (s[:, 1], zero, c[:, 1])])
    rz = mat([(c[:, 2], s[:, 2], zero), (-s[:, 2], c[:, 2], zero), (zero, zero, one)])
    return rz @ ry @ rx


def rotate(x: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """Apply one (3, 3) matrix per clip to every joint vector: x'[:, :, t, v, m] = R x[:, :, t, v, m]."""
    N, C, T, V, M = x.shape
    if C != 3:
        raise ValueError(f"rotation needs 3 coordinates, got C={C}")
    return torch.bmm(rot.to(x), x.reshape(N, C, T * V * M)).view(N, C, T, V, M)


def random_rotation(x: torch.Tensor, generator: torch.Generator | None = None,
                    theta: float = 0.3) -> torch.Tensor:
    """Batched ``tools.random_rot``: one random rotation per clip, angles U(-theta, theta)."""
    return rotate(x, rotation_matrices(draw_angles(x.shape[0], generator, theta, x.device)))


def to_bone(x: torch.Tensor, pairs: Sequence[tuple[int, int]] = NTU_BONE_PAIRS) -> torch.Tensor:
    """bone[v1] = joint[v1] - joint[v2] for each 0-based pair; joints not listed stay zero."""
    v1 = [a for a, _ in pairs]
    if len(set(v1)) != len(v1):
        raise ValueError("bone pairs must name each child joint at most once")
    i1 = torch.tensor(v1, device=x.device)
    i2 = torch.tensor([b for _, b in pairs], device=x.device)
    out = torch.zeros_like(x)
    out[:, :, :, i1] = x.index_select(3, i1) - x.index_select(3, i2)
    return out


def to_motion(x: torch.Tensor) -> torch.Tensor:
    """Temporal difference x[t+1] - x[t]; the last frame is zero (official ``vel``)."""
    out = torch.zeros_like(x)
    out[:, :, :-1] = x[:, :, 1:] - x[:, :, :-1]
    return out


def apply_stream(x: torch.Tensor, stream: str,
                 pairs: Sequence[tuple[int, int]] = NTU_BONE_PAIRS) -> torch.Tensor:
    """'j' joints, 'b' bones, 'jm' joint motion, 'bm' bone motion (bone first, then motion)."""
    if stream not in STREAMS:
        raise ValueError(f"unknown stream {stream!r} (have: {', '.join(STREAMS)})")
    if stream.startswith("b"):
        x = to_bone(x, pairs)
    if stream.endswith("m"):
        x = to_motion(x)
    return x


@dataclass(frozen=True)
class ClipTransform:
    """crop/resize -> optional random rotation -> stream, applied to a whole batch on its device.

    Call with ``(x, lengths, generator)``; ``x`` (N, C, T, V, M) float, ``lengths`` (N,).
    Draw order per batch (fixed, so a seeded generator gives identical batches): crop ratio,
    crop start (train only), then rotation angles.
    """

    window: int = 64
    p_interval: tuple[float, ...] = (0.5, 1.0)
    min_crop: int = OFFICIAL_MIN_CROP
    theta: float | None = 0.3        # None: no rotation
    stream: str = "j"
    bone_pairs: tuple[tuple[int, int], ...] = NTU_BONE_PAIRS

    def __post_init__(self) -> None:
        if self.stream not in STREAMS:
            raise ValueError(f"unknown stream {self.stream!r} (have: {', '.join(STREAMS)})")
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")

    def __call__(self, x: torch.Tensor, lengths: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        x = valid_crop_resize(x, lengths, self.window, self.p_interval, generator, self.min_crop)
        if self.theta is not None:
            x = random_rotation(x, generator, self.theta)
        return apply_stream(x, self.stream, self.bone_pairs)


def train_transform(stream: str = "j", window: int = 64, theta: float | None = 0.3,
                    p_interval: tuple[float, float] = (0.5, 1.0), min_crop: int = OFFICIAL_MIN_CROP,
                    bone_pairs: tuple[tuple[int, int], ...] = NTU_BONE_PAIRS) -> ClipTransform:
    """Official train pipeline (``p_interval: [0.5, 1]``, ``random_rot: True``, window 64)."""
    return ClipTransform(window, tuple(p_interval), min_crop, theta, stream, tuple(bone_pairs))


def test_transform(stream: str = "j", window: int = 64, p: float = 0.95,
                   bone_pairs: tuple[tuple[int, int], ...] = NTU_BONE_PAIRS) -> ClipTransform:
    """Official test pipeline: deterministic 0.95 centre crop, no rotation."""
    return ClipTransform(window, (p,), OFFICIAL_MIN_CROP, None, stream, tuple(bone_pairs))
