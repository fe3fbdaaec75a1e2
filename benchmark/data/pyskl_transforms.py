"""PYSKL's load-time pipeline for 2-D COCO-17 stores (Kinetics-400 as Shap-Mix trains on it).

Shap-Mix's ``pyskl_datasets/pose_dataset.py`` (JHang2020/Shap-Mix) runs, per clip,
``UniformSample(clip_len=100) -> PoseDecode -> GenSkeFeat('coco', ['j']) ->
FormatGCNInput(num_person=2)``; the persons are already chosen in the store
(:mod:`benchmark.data.pyskl`), so what is left at load time is the frame sampling and the
feature. Here it runs on a whole batch on the training device.

``UniformSampleFrames`` (PYSKL ``pyskl/datasets/pipelines/sampling.py``, p_interval 1), for a
clip of L stored frames and ``window`` W output frames:

* L < W: a random start s in [0, L), frames s, s+1, ... modulo L (the clip loops);
* W <= L < 2W: L - W of the W + 1 gaps between frames 0..W-1 are chosen at random (without
  replacement) and each chosen gap shifts the following frames by one;
* L >= 2W: W segments [i L // W, (i+1) L // W), one random frame from each.

Test time (``test_clips``):

* 0 (default, the official Shap-Mix behaviour): its test feeder builds the pipeline without
  ``test_mode``, so the training sampler runs, and keeps the first of the clips: one random
  clip per test video. The draws are keyed by the clip's store row and the run's seed, so a
  clip gets the same frames in every evaluation, whatever the test batch size or DDP sharding.
* k >= 1: PYSKL's test mode (``_get_test_clips``): k clips drawn from a generator re-seeded
  with 255 for every video (so they depend on L only; for L < W clip i starts at i L // k, or
  at i if L < k), their softmax scores averaged (PYSKL's ``average_clips='prob'``; its
  configs use k = 10). The transform returns the k clips stacked (k, N, C, W, V, M); the
  harness averages them.

Streams follow PYSKL's ``GenSkeFeat(dataset='coco')``: channel 2 is a keypoint score, which
bones (PYSKL's coco pairs) and motion do not difference but average (the two joints' scores;
two consecutive frames'); the last motion frame is zero.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

# PYSKL JointToBone(dataset='coco') pairs (v1, v2): bone[v1] = joint[v1] - joint[v2]
PYSKL_COCO_BONE_PAIRS = ((0, 0), (1, 0), (2, 0), (3, 1), (4, 2), (5, 0), (6, 0), (7, 5), (8, 6),
                         (9, 7), (10, 8), (11, 0), (12, 0), (13, 11), (14, 12), (15, 13), (16, 14))
PYSKL_TEST_SEED = 255       # UniformSampleFrames(seed=255)
TEST_STREAM = 20            # seed-sequence key of the keyed random test clips


def train_indices(lengths: torch.Tensor, window: int, u: torch.Tensor) -> torch.Tensor:
    """Frame indices (N, window) of ``UniformSampleFrames`` training clips, from uniforms
    ``u`` (N, window + 1) in [0, 1) (one per draw the official code makes at most)."""
    n = lengths.numel()
    L = lengths.to(torch.int64)[:, None]
    t = torch.arange(window, device=L.device)
    u = u.to(torch.float64)
    # L < W: loop the clip from a random start
    start = torch.minimum(torch.floor(u[:, :1] * L).to(torch.int64), L - 1)
    loop = (start + t) % L
    # W <= L < 2W: choose L - W of the W + 1 gaps (the ranks of the uniforms give a random subset)
    rank = u.argsort(1).argsort(1)
    chosen = (rank < (L - window)).to(torch.int64)
    gaps = t + chosen.cumsum(1)[:, :window]
    # L >= 2W: one frame of each segment [i L // W, (i + 1) L // W)
    bounds = (torch.arange(window + 1, device=L.device) * L) // window
    size = bounds[:, 1:] - bounds[:, :-1]
    seg = bounds[:, :-1] + torch.minimum(torch.floor(u[:, :window] * size).to(torch.int64), size - 1)
    out = torch.where(L < window, loop, torch.where(L < 2 * window, gaps, seg))
    return out.reshape(n, window)


@functools.lru_cache(maxsize=4096)
def test_indices(length: int, window: int, clips: int, seed: int = PYSKL_TEST_SEED) -> np.ndarray:
    """(clips, window) frame indices of PYSKL's test mode for a clip of ``length`` frames:
    the official draw sequence from a legacy generator seeded with ``seed`` (p_interval 1)."""
    rs = np.random.RandomState(seed)
    out = []
    for i in range(clips):
        rs.rand()          # the crop ratio (1 here) and its offset: drawn, no effect
        rs.randint(1)
        if length < window:
            start = i if length < clips else i * length // clips
            inds = np.arange(start, start + window)
        elif length < 2 * window:
            offset = np.zeros(window + 1, dtype=np.int64)
            offset[rs.choice(window + 1, length - window, replace=False)] = 1
            inds = np.arange(window) + np.cumsum(offset)[:-1]
        else:
            bounds = np.array([i_ * length // window for i_ in range(window + 1)])
            inds = bounds[:window] + rs.randint(np.diff(bounds))
        out.append(inds % length)
    return np.stack(out).astype(np.int64)


def gather_frames(x: torch.Tensor, inds: torch.Tensor) -> torch.Tensor:
    """x (N, C, T, V, M), inds (N, W) -> (N, C, W, V, M): frame inds[n, w] of clip n."""
    N, C, T, V, M = x.shape
    W = inds.shape[1]
    rows = x.reshape(N * C * T, V * M)
    base = ((torch.arange(N, device=x.device) * C)[:, None] + torch.arange(C, device=x.device)) * T
    idx = (base[:, :, None] + inds.to(x.device)[:, None, :]).reshape(-1)
    return rows.index_select(0, idx).view(N, C, W, V, M)


def coco_features(x: torch.Tensor, stream: str) -> torch.Tensor:
    """PYSKL ``GenSkeFeat('coco', [stream])`` on (N, 3, T, V, M) = (x, y, score) clips."""
    if stream not in ("j", "b", "jm", "bm"):
        raise ValueError(f"unknown stream {stream!r} (have: j, b, jm, bm)")
    if stream.startswith("b"):
        v1 = torch.tensor([a for a, _ in PYSKL_COCO_BONE_PAIRS], device=x.device)
        v2 = torch.tensor([b for _, b in PYSKL_COCO_BONE_PAIRS], device=x.device)
        a, b = x.index_select(3, v1), x.index_select(3, v2)
        x = torch.cat([(a - b)[:, :2], (a[:, 2:] + b[:, 2:]) / 2], 1)
    if stream.endswith("m"):
        out = torch.zeros_like(x)
        out[:, :2, :-1] = x[:, :2, 1:] - x[:, :2, :-1]
        out[:, 2:, :-1] = (x[:, 2:, 1:] + x[:, 2:, :-1]) / 2
        x = out
    return x


@dataclass(frozen=True)
class UniformSampleTransform:
    """Batched PYSKL pipeline: uniform frame sampling to ``window`` frames, then the stream.

    ``train``: random draws from the loader's generator. Test: ``test_clips`` 0 draws keyed by
    store row (the loader passes ``rows`` because ``keyed`` is set), ``test_clips`` k >= 1
    returns PYSKL's k deterministic test clips stacked on a new leading axis.
    """

    window: int = 100
    stream: str = "j"
    train: bool = True
    test_clips: int = 0
    seed: int = 0

    @property
    def keyed(self) -> bool:
        return not self.train and self.test_clips == 0

    def __call__(self, x: torch.Tensor, lengths: torch.Tensor,
                 generator: torch.Generator | None = None,
                 rows: np.ndarray | None = None) -> torch.Tensor:
        lengths = lengths.to(x.device)
        if self.train or self.test_clips == 0:
            n = lengths.numel()
            if self.train:
                gdev = generator.device if generator is not None else x.device
                u = torch.rand(n, self.window + 1, generator=generator, device=gdev,
                               dtype=torch.float64).to(x.device)
            else:
                if rows is None:
                    raise ValueError("the random test clip is keyed by store row: pass rows")
                u = torch.from_numpy(np.stack([
                    np.random.default_rng([self.seed, TEST_STREAM, int(r)]).random(self.window + 1)
                    for r in rows])).to(x.device)
            return coco_features(gather_frames(x, train_indices(lengths, self.window, u)), self.stream)
        inds = torch.stack([torch.from_numpy(test_indices(int(L), self.window, self.test_clips))
                            for L in lengths.tolist()], 1).to(x.device)  # (k, N, W)
        return torch.stack([coco_features(gather_frames(x, i), self.stream) for i in inds])
