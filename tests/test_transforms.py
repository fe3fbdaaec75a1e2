"""Batched NTU feeder transforms vs. slow numpy references written from the official feeder."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmark.data import transforms as TR
from benchmark.data.skeleton import NTU_BONE_PAIRS

T_PAD, V, M = 300, 25, 2


def make_batch(lengths, seed=0, T=T_PAD):
    """Padded clips: N(0,1) noise in the valid frames, zeros after (as the store holds them)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((len(lengths), 3, T, V, M), np.float32)
    for n, L in enumerate(lengths):
        x[n, :, :L] = rng.standard_normal((3, L, V, M))
    return torch.from_numpy(x), torch.tensor(lengths, dtype=torch.int64)


# ---- slow references, one clip at a time, float64, straight from the official feeder -------

def ref_resize(clip: np.ndarray, start: int, crop: int, window: int) -> np.ndarray:
    seg = clip[:, start:start + crop].astype(np.float64)
    out = np.empty((clip.shape[0], window) + clip.shape[2:])
    for i in range(window):
        s = min(max((i + 0.5) * crop / window - 0.5, 0.0), crop - 1)
        lo = int(math.floor(s))
        hi = min(lo + 1, crop - 1)
        w = s - lo
        out[:, i] = (1 - w) * seg[:, lo] + w * seg[:, hi]
    return out


def ref_train_crop(L: int, u_p: float, u_s: float, lo=0.5, hi=1.0, min_crop=64):
    p = u_p * (hi - lo) + lo
    crop = min(max(math.floor(L * p), min_crop), L)
    return math.floor(u_s * (L - crop + 1)), crop


def ref_rotation(a: np.ndarray) -> np.ndarray:
    (cx, cy, cz), (sx, sy, sz) = np.cos(a), np.sin(a)
    rx = np.array([[1, 0, 0], [0, cx, sx], [0, -sx, cx]])
    ry = np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]])
    rz = np.array([[cz, sz, 0], [-sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def ref_bone(clip: np.ndarray) -> np.ndarray:
    out = np.zeros_like(clip)
    for v1, v2 in NTU_BONE_PAIRS:
        out[:, :, v1] = clip[:, :, v1] - clip[:, :, v2]
    return out


def ref_motion(clip: np.ndarray) -> np.ndarray:
    out = np.zeros_like(clip)
    out[:, :-1] = clip[:, 1:] - clip[:, :-1]
    return out


# ---- crop / resize ------------------------------------------------------------------------

def test_test_crop_removes_int_0025L_each_side():
    lengths = torch.arange(1, 301)
    start, crop = TR.crop_params(lengths, (0.95,))
    margin = torch.tensor([int(0.025 * L) for L in range(1, 301)])
    assert torch.equal(start, margin)
    assert torch.equal(crop, lengths - 2 * margin)


def test_test_crop_resize_matches_reference():
    lengths = [1, 2, 5, 40, 63, 64, 65, 100, 211, 299, 300]
    x, lt = make_batch(lengths)
    out = TR.valid_crop_resize(x, lt, 64, (0.95,))
    assert out.shape == (len(lengths), 3, 64, V, M) and out.dtype == torch.float32
    for n, L in enumerate(lengths):
        b = int(0.025 * L)
        ref = ref_resize(x[n].numpy(), b, L - 2 * b, 64)
        np.testing.assert_allclose(out[n].numpy(), ref, atol=5e-4, rtol=0)


def test_train_crop_params_follow_forced_draws():
    lengths = torch.tensor([1, 10, 64, 65, 80, 128, 150, 299, 300] * 20)
    start, crop = TR.crop_params(lengths, (0.5, 1.0), torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)  # the documented draw order: all ratios, then all starts
    u_p = torch.rand(len(lengths), generator=g, dtype=torch.float64)
    u_s = torch.rand(len(lengths), generator=g, dtype=torch.float64)
    for n, L in enumerate(lengths.tolist()):
        assert (int(start[n]), int(crop[n])) == ref_train_crop(L, float(u_p[n]), float(u_s[n]))


@pytest.mark.parametrize("L", [1, 30, 64, 65, 80, 150, 300])
def test_train_crop_length_range(L):
    lengths = torch.full((4000,), L)
    start, crop = TR.crop_params(lengths, (0.5, 1.0), torch.Generator().manual_seed(L))
    assert (start >= 0).all() and (start + crop <= L).all()
    if L <= 64:
        assert (crop == L).all() and (start == 0).all()
    else:  # spec: [max(64, floor(L/2)), L-1]; both ends are hit in 4000 seeded draws
        assert int(crop.min()) == max(64, L // 2) and int(crop.max()) == L - 1
        assert int(start.min()) == 0


def test_train_crop_resize_matches_reference():
    lengths = [1, 3, 64, 70, 150, 300, 299, 128]
    x, lt = make_batch(lengths, seed=1)
    start, crop = TR.crop_params(lt, (0.5, 1.0), torch.Generator().manual_seed(3))
    out = TR.valid_crop_resize(x, lt, 64, (0.5, 1.0), torch.Generator().manual_seed(3))
    for n in range(len(lengths)):
        ref = ref_resize(x[n].numpy(), int(start[n]), int(crop[n]), 64)
        np.testing.assert_allclose(out[n].numpy(), ref, atol=5e-4, rtol=0)


def test_min_crop_option_and_other_window():
    lengths = torch.full((500,), 100)
    _, crop = TR.crop_params(lengths, (0.5, 1.0), torch.Generator().manual_seed(0), min_crop=32)
    assert int(crop.min()) == 50  # floor(L/2) now binds, not the official 64
    x, lt = make_batch([1, 20, 100], seed=2)
    out = TR.valid_crop_resize(x, lt, 32, (0.95,))
    assert out.shape == (3, 3, 32, V, M)
    np.testing.assert_allclose(out[2].numpy(), ref_resize(x[2].numpy(), 2, 96, 32), atol=5e-4)


def test_single_frame_clip_is_repeated():
    x, lt = make_batch([1, 1], seed=3)
    for p in [(0.95,), (0.5, 1.0)]:
        out = TR.valid_crop_resize(x, lt, 64, p, torch.Generator().manual_seed(0))
        expect = x[:, :, :1].expand(-1, -1, 64, -1, -1)
        torch.testing.assert_close(out, expect, atol=1e-6, rtol=1e-6)


def test_identity_resize_when_length_equals_window():
    x, lt = make_batch([64], seed=4)
    torch.testing.assert_close(TR.valid_crop_resize(x, lt, 64, (1.0,)), x[:, :, :64], atol=0, rtol=0)


def test_padding_is_never_read():
    x, lt = make_batch([10, 200], seed=5)
    x_poison = x.clone()
    x_poison[0, :, 10:] = 1e6
    x_poison[1, :, 200:] = 1e6
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    for p in [(0.95,), (0.5, 1.0)]:
        assert torch.equal(TR.valid_crop_resize(x, lt, 64, p, g()),
                           TR.valid_crop_resize(x_poison, lt, 64, p, g()))


def test_bad_lengths_rejected():
    x, _ = make_batch([5])
    with pytest.raises(ValueError):
        TR.valid_crop_resize(x, torch.tensor([0]), 64, (0.95,))
    with pytest.raises(ValueError):
        TR.crop_params(torch.tensor([5]), (0.2, 1.0, 3.0))


# ---- rotation -------------------------------------------------------------------------------

def test_rotation_matrices_match_spec_and_are_rotations():
    angles = TR.draw_angles(200, torch.Generator().manual_seed(0), theta=0.3)
    assert angles.dtype == torch.float32 and angles.abs().max() < 0.3
    R = TR.rotation_matrices(angles).double()
    ref = np.stack([ref_rotation(a) for a in angles.double().numpy()])
    np.testing.assert_allclose(R.numpy(), ref, atol=1e-6)
    eye = torch.eye(3, dtype=torch.float64).expand(200, 3, 3)
    torch.testing.assert_close(R @ R.transpose(1, 2), eye, atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(200, dtype=torch.float64), atol=1e-6, rtol=0)


def test_random_rotation_preserves_norms_and_applies_one_R_per_clip():
    x, lt = make_batch([64, 64, 64], seed=6, T=64)
    y = TR.random_rotation(x, torch.Generator().manual_seed(1))
    torch.testing.assert_close(y.norm(dim=1), x.norm(dim=1), atol=1e-5, rtol=1e-5)
    angles = TR.draw_angles(3, torch.Generator().manual_seed(1))
    for n in range(3):
        R = ref_rotation(angles[n].double().numpy())
        ref = np.einsum("ij,jtvm->itvm", R, x[n].double().numpy())
        np.testing.assert_allclose(y[n].numpy(), ref, atol=1e-5)
    assert not torch.allclose(y, x)


# ---- streams --------------------------------------------------------------------------------

@pytest.mark.parametrize("stream", TR.STREAMS)
def test_streams_match_reference(stream):
    x, _ = make_batch([64, 64], seed=7, T=64)
    out = TR.apply_stream(x, stream).numpy()
    for n in range(2):
        ref = x[n].numpy()
        if stream.startswith("b"):
            ref = ref_bone(ref)
        if stream.endswith("m"):
            ref = ref_motion(ref)
        np.testing.assert_array_equal(out[n], ref)
    if stream.startswith("b"):
        assert (out[:, :, :, 20] == 0).all()  # joint 21 (spine shoulder) is the root
    if stream.endswith("m"):
        assert (out[:, :, -1] == 0).all()


def test_unknown_stream_rejected():
    with pytest.raises(ValueError):
        TR.train_transform(stream="jb")


# ---- composed pipelines ---------------------------------------------------------------------

def test_train_transform_is_crop_rotate_bone_motion_in_that_order():
    x, lt = make_batch([30, 64, 120, 300], seed=8)
    out = TR.train_transform("bm")(x, lt, torch.Generator().manual_seed(11))
    g = torch.Generator().manual_seed(11)
    y = TR.valid_crop_resize(x, lt, 64, (0.5, 1.0), g)
    y = TR.random_rotation(y, g, 0.3)
    torch.testing.assert_close(out, TR.to_motion(TR.to_bone(y)), atol=0, rtol=0)
    assert out.shape == (4, 3, 64, V, M)


def test_train_transform_deterministic_per_seed():
    x, lt = make_batch([50, 90, 300], seed=9)
    tf = TR.train_transform("j")
    a = tf(x, lt, torch.Generator().manual_seed(5))
    b = tf(x, lt, torch.Generator().manual_seed(5))
    c = tf(x, lt, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_test_transform_has_no_randomness():
    x, lt = make_batch([50, 90, 300], seed=10)
    tf = TR.test_transform("jm")
    a = tf(x, lt, torch.Generator().manual_seed(1))
    b = tf(x, lt, torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    torch.testing.assert_close(a, TR.to_motion(TR.valid_crop_resize(x, lt, 64, (0.95,))), atol=0, rtol=0)
