"""NW-UCLA load-time transforms: CTR-GCN's train/test pipeline, batched in torch.

Follows ``Feeder.__getitem__`` and ``Feeder.rand_view_transform`` of the official CTR-GCN
``feeders/feeder_ucla.py`` (Uason-Chen/CTR-GCN). Per clip of true length L, in this order:

1. centre: subtract joint 1 (0-based, "spine") of frame 0 from every joint of every frame
   (a no-op up to rounding, since min-max after a linear map removes any translation; kept
   because it keeps float32 rounding close to the official float64 numbers);
2. view transform (train only): row vectors ``x' = x @ (Ry @ Rx @ sI)`` with integer angles
   agx, agy ~ U{-60..60} degrees and s ~ U(0.5, 1.5); the test pass uses agx = agy = 0, s = 1;
3. min-max each coordinate to [-1, 1] over all L frames and 20 joints: ``(x-min)/(max-min)*2-1``;
4. keep 52 frames: train = sorted ``random.sample`` of 52 entries of ``list(range(L)) * 100``,
   test = ``np.linspace(0, L-1, 52).astype(int)``;
5. streams: bone (``bone[v1] = x[v1] - x[v2]`` over the feeder's pairs) is taken on the 52
   normalised frames, then motion (``x[t+1] - x[t]``, last frame 0) on top of that.

Deviations: a coordinate with zero range (every joint of every frame equal; no real clip has
one) maps to 0 where the official code divides 0/0 into NaN; and the computation runs in the
input dtype (float32 from the store) where the official code uses float64 from the JSON, which
moves outputs by up to ~1.5e-6 (exact to 1e-15 when given float64 input).

Everything works on a padded batch ``(N, 3, T, 20, 1)`` plus a lengths tensor, on any device;
random draws come only from the ``torch.Generator`` passed in, so a seeded generator gives a
reproducible epoch.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from . import transforms
from .skeleton import UCLA_BONE_PAIRS
from .transforms import STREAMS

TIME_STEPS = 52       # feeder_ucla.py self.time_steps
MAX_ANGLE_DEG = 60    # random.randint(-60, 60), both ends included
SCALE_RANGE = (0.5, 1.5)  # random.uniform(0.5, 1.5)
REPEAT = 100          # list(np.arange(length)) * 100 in the train frame draw
CENTER_JOINT = 1      # value[0, 1, :]


@dataclass(frozen=True)
class TrainDraws:
    """The random choices of one train pass; fixing them makes the transform deterministic."""

    agx: torch.Tensor     # (N,) int64, degrees about x
    agy: torch.Tensor     # (N,) int64, degrees about y
    scale: torch.Tensor   # (N,) float
    frames: torch.Tensor  # (N, time_steps) int64, sorted, each < the clip's length


def _check_batch(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    if x.ndim != 5 or x.shape[1] != 3 or x.shape[4] != 1:
        raise ValueError(f"expected a (N, 3, T, V, 1) batch, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"expected a floating-point batch, got {x.dtype}")
    lengths = torch.as_tensor(lengths, device=x.device).long().reshape(-1)
    if lengths.numel() != x.shape[0]:
        raise ValueError(f"{lengths.numel()} lengths for a batch of {x.shape[0]}")
    if bool((lengths < 1).any()) or bool((lengths > x.shape[2]).any()):
        raise ValueError(f"lengths must lie in 1..{x.shape[2]} (the padded T)")
    return lengths


def sample_positions(m: torch.Tensor, k: int, generator: torch.Generator | None = None,
                     candidates: int = 128) -> torch.Tensor:
    """Per row, a uniform random k-subset of ``0..m-1`` (needs m >= k), sorted; (N, k) int64.

    The distinct values of a sequence of i.i.d. uniform draws, in order of first appearance,
    are a sample without replacement; so the first k distinct values among ``candidates``
    draws are a uniform k-subset. This needs O(candidates) random numbers per row instead
    of O(m) for "k smallest of m uniform keys". A row that sees fewer than k distinct values
    (probability ~1e-15 for m = 100, k = 52) is drawn again.
    """
    m = m.long()
    out = torch.empty(m.numel(), k, dtype=torch.long, device=m.device)
    todo = torch.arange(m.numel(), device=m.device)
    while todo.numel():
        # 62-bit integers mod m: bias below m / 2**62, unlike floor(float32 * m)
        cand = torch.randint(0, 2**62, (todo.numel(), candidates), generator=generator,
                             device=m.device) % m[todo, None]
        srt, order = cand.sort(dim=1, stable=True)  # stable: the earliest draw leads a tie
        lead = torch.ones_like(srt, dtype=torch.bool)
        lead[:, 1:] = srt[:, 1:] != srt[:, :-1]
        first = torch.empty_like(lead).scatter_(1, order, lead)  # back to draw order
        keep = first & (first.cumsum(dim=1) <= k)
        vals = cand.masked_fill(~keep, torch.iinfo(torch.long).max).sort(dim=1).values[:, :k]
        ok = keep.sum(dim=1) == k
        out[todo[ok]] = vals[ok]
        todo = todo[~ok]
    return out


def draw_train(lengths: torch.Tensor, generator: torch.Generator | None = None,
               time_steps: int = TIME_STEPS) -> TrainDraws:
    """Draw angles, scale and frames for a batch, all from ``generator`` (on its device).

    ``random.sample(list(range(L)) * 100, 52)`` picks 52 distinct *positions* of a list in
    which every frame index occurs 100 times. Only the multiset of picked values matters
    after sorting, so any arrangement of that list gives the same distribution; we use the
    arrangement "position p holds frame p // 100", which makes sorted positions map to
    sorted frames.
    """
    device = generator.device if generator is not None else torch.as_tensor(lengths).device
    lengths = torch.as_tensor(lengths, device=device).long().reshape(-1)
    n = lengths.numel()
    agx = torch.randint(-MAX_ANGLE_DEG, MAX_ANGLE_DEG + 1, (n,), generator=generator, device=device)
    agy = torch.randint(-MAX_ANGLE_DEG, MAX_ANGLE_DEG + 1, (n,), generator=generator, device=device)
    lo, hi = SCALE_RANGE
    scale = lo + (hi - lo) * torch.rand(n, generator=generator, device=device)
    pos = sample_positions(lengths * REPEAT, time_steps, generator)
    return TrainDraws(agx, agy, scale, pos // REPEAT)


@functools.lru_cache(maxsize=8)
def _linspace_table(max_len: int, time_steps: int, device: str = "cpu") -> torch.Tensor:
    # Rebuild np.linspace(0, L-1, n).astype(int) for every L with numpy's own float64 steps
    # (k * ((L-1)/(n-1)), last entry set to L-1): a float32 or exact-integer version can
    # differ where k*(L-1)/(n-1) is (nearly) an integer.
    L = np.arange(1, max_len + 1, dtype=np.float64)[:, None]
    k = np.arange(time_steps, dtype=np.float64)[None, :]
    table = k * ((L - 1) / max(time_steps - 1, 1))
    table[:, -1] = L[:, 0] - 1
    return torch.from_numpy(table.astype(np.int64)).to(device)


def test_frames(lengths: torch.Tensor, time_steps: int = TIME_STEPS) -> torch.Tensor:
    """The test pass's frames ``int(linspace(0, L-1, time_steps))`` for each length, (N, steps)."""
    lengths = torch.as_tensor(lengths).long().reshape(-1)
    # a power-of-two table size keeps one cached table per device for all batches
    size = 1 << max(8, (int(lengths.max()) - 1).bit_length())
    return _linspace_table(size, time_steps, str(lengths.device))[lengths - 1]


test_frames.__test__ = False  # not a pytest test despite the name


def view_matrices(agx: torch.Tensor, agy: torch.Tensor, scale: torch.Tensor,
                  dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """Per-clip ``Ry @ Rx @ sI`` (N, 3, 3) of the official view transform, for row vectors."""
    ax = torch.as_tensor(agx, device=device).to(dtype) * (math.pi / 180)
    ay = torch.as_tensor(agy, device=device).to(dtype) * (math.pi / 180)
    s = torch.as_tensor(scale, device=device).to(dtype)
    cx, sx, cy, sy = ax.cos(), ax.sin(), ay.cos(), ay.sin()
    zero, one = torch.zeros_like(cx), torch.ones_like(cx)
    rx = torch.stack([one, zero, zero, zero, cx, sx, zero, -sx, cx], -1).view(-1, 3, 3)
    ry = torch.stack([cy, zero, -sy, zero, one, zero, sy, zero, cy], -1).view(-1, 3, 3)
    return ry @ rx * s[:, None, None]


def ucla_transform(x: torch.Tensor, lengths: torch.Tensor, frames: torch.Tensor,
                   agx: torch.Tensor | None = None, agy: torch.Tensor | None = None,
                   scale: torch.Tensor | None = None) -> torch.Tensor:
    """Deterministic core: centre, optional view transform, min-max, frame selection.

    Args:
        x: padded batch (N, 3, T, V, 1); frames past each length are ignored.
        lengths: (N,) true frame counts.
        frames: (N, S) frame indices to keep (each < its length).
        agx, agy, scale: view transform per clip; all None means the identity (test pass).

    Returns:
        (N, 3, S, V, 1) tensor in x's dtype and device, every coordinate within [-1, 1].
    """
    lengths = _check_batch(x, lengths)
    t = int(lengths.max())
    x = x[:, :, :t, :, 0]  # frames past the longest clip are padding for every row
    n, _, _, v = x.shape
    x = x - x[:, :, :1, CENTER_JOINT:CENTER_JOINT + 1]
    if agx is not None:
        rot = view_matrices(agx, agy, scale, dtype=x.dtype, device=x.device)
        x = torch.einsum("nctv,ncd->ndtv", x, rot)
    # padding takes frame 0's values, so it can move neither the min nor the max
    valid = (torch.arange(t, device=x.device)[None, :] < lengths[:, None])[:, None, :, None]
    lo, hi = torch.where(valid, x, x[:, :, :1]).reshape(n, 3, -1).aminmax(dim=-1)
    lo, hi = lo[:, :, None, None], hi[:, :, None, None]
    span = hi - lo
    frames = frames.to(x.device).long()
    if bool((frames < 0).any()) or bool((frames >= lengths[:, None]).any()):
        raise ValueError("frame indices must lie in 0..length-1 of their clip")
    # normalising only the kept frames gives the same numbers as normalising all, cheaper
    picked = x.gather(2, frames[:, None, :, None].expand(n, 3, frames.shape[1], v))
    out = (picked - lo) / torch.where(span > 0, span, torch.ones_like(span)) * 2 - 1
    # zero range: the official 0/0 gives NaN; the midpoint 0 keeps training finite
    out = torch.where(span > 0, out, torch.zeros_like(out))
    return out[..., None]


def train_transform(x: torch.Tensor, lengths: torch.Tensor,
                    generator: torch.Generator | None = None,
                    time_steps: int = TIME_STEPS) -> torch.Tensor:
    """Official train pass: random view transform + sorted random frames; (N, 3, 52, V, 1)."""
    lengths = _check_batch(x, lengths)
    d = draw_train(lengths.to(generator.device) if generator is not None else lengths,
                   generator, time_steps)
    return ucla_transform(x, lengths, d.frames, d.agx, d.agy, d.scale)


def test_transform(x: torch.Tensor, lengths: torch.Tensor,
                   time_steps: int = TIME_STEPS) -> torch.Tensor:
    """Official test pass: centre, min-max, evenly spaced frames; (N, 3, 52, V, 1)."""
    lengths = _check_batch(x, lengths)
    return ucla_transform(x, lengths, test_frames(lengths, time_steps))


test_transform.__test__ = False


def apply_stream(x: torch.Tensor, stream: str) -> torch.Tensor:
    """Stream ``j``, ``b``, ``jm`` or ``bm`` with the NW-UCLA bone pairs (bone, then motion)."""
    return transforms.apply_stream(x, stream, UCLA_BONE_PAIRS)


@dataclass(frozen=True)
class UCLATransform:
    """The official pass as a batch callable ``(x, lengths, generator) -> (N, 3, 52, 20, 1)``.

    Same call shape as the NTU ``ClipTransform`` so the harness can hold either; the test
    pass ignores the generator.
    """

    train: bool = True
    stream: str = "j"
    time_steps: int = TIME_STEPS

    def __post_init__(self) -> None:
        if self.stream not in STREAMS:
            raise ValueError(f"unknown stream {self.stream!r} (have: {', '.join(STREAMS)})")

    def __call__(self, x: torch.Tensor, lengths: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        if self.train:
            out = train_transform(x, lengths, generator, self.time_steps)
        else:
            out = test_transform(x, lengths, self.time_steps)
        return apply_stream(out, self.stream)
