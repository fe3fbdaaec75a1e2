"""NW-UCLA reader, store, CTR-GCN protocol and the official train/test transforms.

The transform checks compare against a slow per-clip numpy reference written from the
formulas of CTR-GCN's ``feeders/feeder_ucla.py``; real-data tests read the shared
``nw-ucla`` folder beside the checkout and skip when it is absent.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.cli import main as cli_main
from benchmark.data import ucla_transforms as UT
from benchmark.data.store import open_store
from benchmark.data.ucla import build_ucla_store, read_clip
from benchmark.errors import BenchmarkError

UCLA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nw-ucla"
# feeder_ucla.py Feeder.bone, 1-based (v1, v2): bone[v1] = joint[v1] - joint[v2]
BONE_1BASED = [(1, 2), (2, 3), (3, 3), (4, 3), (5, 3), (6, 5), (7, 6), (8, 7), (9, 3), (10, 9),
               (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17),
               (19, 18), (20, 19)]
# 1-frame clips, a clip with z = 0 joints, the longest clip, and a spread of others
REAL_CLIPS = ["a02_s09_e04_v02", "a02_s09_e04_v03", "a04_s01_e01_v01", "a04_s04_e02_v01",
              "a01_s08_e02_v01", "a08_s10_e04_v01", "a06_s02_e04_v03", "a06_s08_e00_v02",
              "a01_s06_e02_v03", "a04_s05_e04_v02", "a08_s07_e00_v03", "a06_s06_e00_v01",
              "a05_s01_e03_v02", "a08_s05_e04_v01", "a05_s09_e01_v03", "a11_s01_e00_v03",
              "a04_s01_e02_v03", "a08_s09_e04_v02", "a02_s10_e00_v01", "a04_s08_e03_v02",
              "a02_s10_e00_v02", "a02_s04_e00_v01", "a11_s06_e01_v01", "a04_s04_e04_v03",
              "a09_s03_e03_v02", "a12_s08_e01_v03", "a11_s03_e03_v02", "a03_s01_e00_v02",
              "a05_s02_e03_v01", "a02_s04_e02_v03"]


# ---------------------------------------------------------------- numpy reference

def ref_transform(clip, agx=0, agy=0, s=1.0, frames=None):
    """One clip (L, 20, 3) -> (3, 52, 20, 1), float64, straight from the official formulas."""
    L = len(clip)
    v = clip.astype(np.float64) - clip[0, 1].astype(np.float64)
    a, b = np.radians(agx), np.radians(agy)
    rx = np.array([[1, 0, 0], [0, np.cos(a), np.sin(a)], [0, -np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, -np.sin(b)], [0, 1, 0], [np.sin(b), 0, np.cos(b)]])
    flat = v.reshape(-1, 3) @ (ry @ rx @ (s * np.eye(3)))
    lo, hi = flat.min(axis=0), flat.max(axis=0)
    flat = (flat - lo) / (hi - lo) * 2 - 1
    if frames is None:
        frames = np.linspace(0, L - 1, 52).astype(int)
    return flat.reshape(L, 20, 3)[np.asarray(frames)].transpose(2, 0, 1)[..., None]


def ref_stream(d, stream):
    """Bone then motion on one (3, T, 20, 1) clip, as the feeder does."""
    if "b" in stream:
        out = np.zeros_like(d)
        for v1, v2 in BONE_1BASED:
            out[:, :, v1 - 1] = d[:, :, v1 - 1] - d[:, :, v2 - 1]
        d = out
    if "m" in stream:
        out = np.zeros_like(d)
        out[:, :-1] = d[:, 1:] - d[:, :-1]
        d = out
    return d


def pad(clips, t=None):
    t = t or max(len(c) for c in clips)
    x = np.zeros((len(clips), 3, t, 20, 1), np.float32)
    for i, c in enumerate(clips):
        x[i, :, :len(c), :, 0] = c.transpose(2, 0, 1)
    return torch.from_numpy(x), torch.tensor([len(c) for c in clips])


# ---------------------------------------------------------------- synthetic files

def _doc(name, length, seed=0):
    rng = np.random.default_rng(seed)
    skel = (rng.normal(size=(length, 20, 3)) + [0, 0, 3]).round(6)
    action = int(name[1:3])
    label = [1, 2, 3, 4, 5, 6, 8, 9, 11, 12].index(action) + 1
    return {"file_name": name, "label": label, "skeletons": skel.tolist()}


def _write(folder, name, doc):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


SYNTH = {"a01_s01_e00_v01": 5, "a12_s02_e01_v02": 1, "a03_s01_e00_v03": 7, "a08_s03_e02_v03": 3}


@pytest.fixture
def synth_raw(tmp_path):
    for i, (name, length) in enumerate(SYNTH.items()):
        _write(tmp_path / "raw" / "all_sqe", name, _doc(name, length, seed=i))
    return tmp_path / "raw"


def test_read_clip_valid(tmp_path):
    doc = _doc("a09_s04_e02_v02", 4)
    clip = read_clip(_write(tmp_path, "a09_s04_e02_v02", doc))
    assert clip.skeleton.shape == (4, 20, 3) and clip.skeleton.dtype == np.float32
    np.testing.assert_array_equal(clip.skeleton, np.asarray(doc["skeletons"], np.float32))
    assert clip.label == 7 and clip.name == "a09_s04_e02_v02"


def _edit(**kw):
    doc = _doc("a02_s01_e00_v01", 3)
    doc.update(kw)
    return doc


def _bad_frame(t, frame):
    doc = _doc("a02_s01_e00_v01", 3)
    doc["skeletons"][t] = frame
    return doc


def _bad_joint(value):
    doc = _doc("a02_s01_e00_v01", 3)
    doc["skeletons"][2][4] = value
    return doc


BAD_FILES = [
    ("", "empty file"),
    ("{\"skeletons\": [[", "not valid JSON"),
    ("\xff\xfe garbage", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ({"file_name": "a02_s01_e00_v01", "label": 2}, "missing key 'skeletons'"),
    ({"skeletons": [[[0, 0, 0]] * 20], "label": 2}, "missing key 'file_name'"),
    (_edit(skeletons=[]), "empty skeleton list"),
    (_edit(skeletons={"a": 1}), "empty skeleton list"),
    (_bad_frame(1, [[0.0, 0.0, 0.0]] * 19), "frame 1 has 19 joints, expected 20"),
    (_bad_frame(0, [[0.0, 0.0, 0.0]] * 25), "frame 0 has 25 joints"),
    (_bad_joint([1.0, 2.0]), "frame 2, joint 4 is not 3 numbers"),
    (_bad_joint([1.0, "2", 3.0]), "frame 2, joint 4 is not 3 numbers"),
    (_bad_joint([1.0, None, 3.0]), "frame 2, joint 4 is not 3 numbers"),
    (_bad_joint([1.0, float("nan"), 3.0]), "NaN or infinite coordinate (frame 2, joint 4)"),
    (_bad_joint([float("inf"), 0.0, 3.0]), "NaN or infinite coordinate (frame 2, joint 4)"),
    (_bad_joint([1e39, 0.0, 3.0]), "NaN or infinite coordinate"),  # overflows float32
    (_edit(file_name="a02_s01_e00_v02"), "does not match the file name"),
    (_edit(label=3), "label 3 disagrees with the name"),
    (_edit(label="2"), "disagrees with the name"),
]


@pytest.mark.parametrize("content,problem", BAD_FILES)
def test_read_clip_rejects_bad_files(tmp_path, content, problem):
    path = _write(tmp_path, "a02_s01_e00_v01", content)
    with pytest.raises(BenchmarkError) as e:
        read_clip(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: ") and problem in msg and "\n" not in msg


@pytest.mark.parametrize("name,problem", [("foo", "not an NW-UCLA sample name"),
                                          ("a07_s01_e00_v01", "not an NW-UCLA sample name"),
                                          ("a01_s01_e00_v04", "view 4 is not one of 1..3")])
def test_read_clip_rejects_bad_names(tmp_path, name, problem):
    path = _write(tmp_path, name, _doc("a01_s01_e00_v01", 2))
    with pytest.raises(BenchmarkError, match=problem):
        read_clip(path)


def test_build_store_synthetic(synth_raw, tmp_path):
    build_ucla_store(synth_raw, tmp_path / "store", workers=2)
    s = open_store(tmp_path / "store")
    names = sorted(SYNTH)
    assert s.names == names and s.data.shape == (4, 3, 7, 20, 1)
    assert s.lengths.tolist() == [SYNTH[n] for n in names]
    assert s.labels.tolist() == [0, 2, 6, 9]
    for i, n in enumerate(names):
        raw = np.asarray(json.loads((synth_raw / "all_sqe" / f"{n}.json").read_text())["skeletons"])
        np.testing.assert_array_equal(s.data[i, :, :len(raw), :, 0],
                                      raw.astype(np.float32).transpose(2, 0, 1))
        assert not s.data[i, :, len(raw):].any()  # zero padding at the end
    assert s.split_names("ucla", "train") == ["a01_s01_e00_v01", "a12_s02_e01_v02"]
    assert s.split_names("ucla", "test") == ["a03_s01_e00_v03", "a08_s03_e02_v03"]
    digests = [hashlib.sha256((synth_raw / "all_sqe" / f"{n}.json").read_bytes()).hexdigest()
               for n in names]
    lines = "".join(f"{n}.json {d}\n" for n, d in zip(names, digests))
    src = s.manifest["sources"]
    assert src["files"] == 4 and src["sha256"] == hashlib.sha256(lines.encode()).hexdigest()
    assert s.manifest["layout"] == "ucla20" and s.manifest["num_classes"] == 10
    # the folder itself works as --raw too, and gives the same data
    build_ucla_store(synth_raw / "all_sqe", tmp_path / "store2", workers=1)
    np.testing.assert_array_equal(open_store(tmp_path / "store2").data, s.data)


def test_build_store_bad_file_leaves_no_output(synth_raw, tmp_path):
    out = tmp_path / "store"
    build_ucla_store(synth_raw, out, workers=1)
    before = (out / "manifest.json").read_bytes()
    doc = _doc("a05_s01_e00_v01", 4)
    doc["skeletons"][1] = [[0, 0, 0]] * 3
    bad = _write(synth_raw / "all_sqe", "a05_s01_e00_v01", doc)
    for workers in (1, 2):
        with pytest.raises(BenchmarkError, match="^" + re.escape(f"{bad}: frame 1 has 3 joints")):
            build_ucla_store(synth_raw, out, workers=workers)
        assert (out / "manifest.json").read_bytes() == before  # the old store is untouched
    with pytest.raises(BenchmarkError, match="no .json files"):
        build_ucla_store(tmp_path, tmp_path / "other", workers=1)
    assert not (tmp_path / "other").exists()


def test_cli_prepare(synth_raw, tmp_path, capsys):
    out = tmp_path / "cli_store"
    assert cli_main(["data", "prepare", "ucla", "--raw", str(synth_raw), "--out", str(out),
                     "--workers", "1"]) == 0
    assert len(open_store(out)) == 4
    assert cli_main(["data", "prepare", "ucla", "--out", str(tmp_path / "x")]) == 2
    assert "--raw is required" in capsys.readouterr().err
    _write(synth_raw / "all_sqe", "a05_s01_e00_v01", "not json")
    assert cli_main(["data", "prepare", "ucla", "--raw", str(synth_raw), "--out",
                     str(tmp_path / "y"), "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "a05_s01_e00_v01.json: not valid JSON" in err[-1]
    assert not (tmp_path / "y").exists()


# ---------------------------------------------------------------- real data

@pytest.fixture(scope="module")
def real_store(tmp_path_factory):
    if not (UCLA / "all_sqe").is_dir():
        pytest.skip("shared NW-UCLA data (../shared/data/nw-ucla) not available")
    out = tmp_path_factory.mktemp("ucla") / "store"
    build_ucla_store(UCLA, out, workers=2)
    return open_store(out)


def test_real_store_matches_ctrgcn_lists(real_store):
    s = real_store
    assert len(s) == 1484 and s.data.shape == (1484, 3, 201, 20, 1) and s.num_classes == 10
    assert s.names == sorted(s.names)
    assert np.bincount(s.labels).tolist() == [150, 152, 141, 173, 148, 149, 142, 142, 145, 142]
    official = json.loads((UCLA / "ctrgcn_train_val_split.json").read_text())
    for part, key in (("train", "train"), ("test", "val")):
        names = s.split_names("ucla", part)
        assert len(names) == {"train": 1020, "test": 464}[part]
        assert set(names) == {e["file_name"] for e in official[key]}
        rows = s.indices([e["file_name"] for e in official[key]])
        assert s.lengths[rows].tolist() == [e["length"] for e in official[key]]
        assert s.labels[rows].tolist() == [e["label"] - 1 for e in official[key]]
    i = s.names.index("a01_s08_e02_v01")  # the longest clip, 201 frames
    raw = np.asarray(json.loads((UCLA / "all_sqe" / "a01_s08_e02_v01.json").read_text())["skeletons"])
    np.testing.assert_array_equal(s.data[i, :, :, :, 0], raw.astype(np.float32).transpose(2, 0, 1))
    assert s.lengths.min() == 1 and not np.asarray(s.data[s.names.index("a02_s09_e04_v03"), :, 1:]).any()


def _real_batch(store):
    rows = store.indices(REAL_CLIPS)
    return torch.from_numpy(np.ascontiguousarray(store.data[rows])), torch.from_numpy(store.lengths[rows])


def _clips(x, lengths):
    return [x[i, :, :L, :, 0].numpy().transpose(1, 2, 0) for i, L in enumerate(lengths.tolist())]


@pytest.mark.parametrize("stream", ["j", "b", "jm", "bm"])
def test_test_transform_matches_reference_on_real_clips(real_store, stream):
    x, lengths = _real_batch(real_store)
    assert 1 in lengths.tolist()
    expected = np.stack([ref_stream(ref_transform(c), stream) for c in _clips(x, lengths)])
    ours = UT.apply_stream(UT.test_transform(x, lengths), stream)
    assert ours.shape == (30, 3, 52, 20, 1) and ours.dtype == torch.float32
    np.testing.assert_allclose(ours.numpy(), expected, rtol=0, atol=5e-6)
    ours64 = UT.apply_stream(UT.test_transform(x.double(), lengths), stream)
    np.testing.assert_allclose(ours64.numpy(), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("stream", ["j", "bm"])
def test_train_transform_with_fixed_draws_matches_reference(real_store, stream):
    x, lengths = _real_batch(real_store)
    rng = np.random.default_rng(5)
    agx, agy = rng.integers(-60, 61, 30), rng.integers(-60, 61, 30)
    s = rng.uniform(0.5, 1.5, 30)
    frames = np.stack([np.sort(rng.integers(0, L, 52)) for L in lengths.tolist()])
    expected = np.stack([ref_stream(ref_transform(c, agx[i], agy[i], s[i], frames[i]), stream)
                         for i, c in enumerate(_clips(x, lengths))])
    args = [torch.from_numpy(a) for a in (frames, agx, agy, s)]
    ours = UT.apply_stream(UT.ucla_transform(x.double(), lengths, *args), stream)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=0, atol=1e-12)
    ours32 = UT.apply_stream(UT.ucla_transform(x, lengths, *args), stream)
    np.testing.assert_allclose(ours32.numpy(), expected, rtol=0, atol=5e-6)


# ---------------------------------------------------------------- draws and invariants

def test_test_frames_equal_numpy_linspace():
    lengths = torch.arange(1, 401)
    expected = np.stack([np.linspace(0, L - 1, 52).astype(int) for L in range(1, 401)])
    np.testing.assert_array_equal(UT.test_frames(lengths).numpy(), expected)


def test_train_draws_ranges_and_frames():
    lengths = torch.tensor([1, 2, 5, 52, 53, 201] * 300)
    d = UT.draw_train(lengths, torch.Generator().manual_seed(0))
    assert d.agx.dtype == torch.int64 and d.frames.shape == (1800, 52)
    for a in (d.agx, d.agy):
        assert int(a.min()) == -60 and int(a.max()) == 60  # both ends reachable
        assert len(a.unique()) == 121
    assert 0.5 <= float(d.scale.min()) < 0.51 and 1.49 < float(d.scale.max()) < 1.5
    assert (d.frames[:, 1:] >= d.frames[:, :-1]).all()               # sorted
    assert (d.frames >= 0).all() and (d.frames < lengths[:, None]).all()
    assert (d.frames[lengths == 1] == 0).all()
    # short clips repeat frames, and every frame of a 2-frame clip shows up
    assert ((d.frames[lengths == 2] == 0).any(1) & (d.frames[lengths == 2] == 1).any(1)).all()


def test_train_frame_counts_are_hypergeometric():
    # sorted random.sample(list(range(3)) * 100, 52): frame 0's count is hypergeometric
    # (300 items, 100 marked, 52 drawn): mean 52/3, variance 52*(1/3)*(2/3)*248/299 = 9.59;
    # sampling with replacement would give variance 11.56
    d = UT.draw_train(torch.full((8000,), 3), torch.Generator().manual_seed(1))
    c0 = (d.frames == 0).sum(1).double()
    assert abs(c0.mean().item() - 52 / 3) < 0.15
    assert abs(c0.var().item() / 9.591 - 1) < 0.07


def test_train_transform_seeded_and_invariant():
    rng = np.random.default_rng(2)
    clips = [rng.normal(size=(L, 20, 3)).astype(np.float32) for L in (1, 9, 40, 1)]
    x, lengths = pad(clips, t=48)
    out = UT.train_transform(x, lengths, torch.Generator().manual_seed(3))
    assert out.shape == (4, 3, 52, 20, 1) and torch.isfinite(out).all()
    assert out.abs().max() <= 1 + 1e-6
    assert torch.equal(out, UT.train_transform(x, lengths, torch.Generator().manual_seed(3)))
    assert not torch.equal(out, UT.train_transform(x, lengths, torch.Generator().manual_seed(4)))
    # what lies in the padding never matters
    garbage = x.clone()
    for i, L in enumerate(lengths.tolist()):
        garbage[i, :, L:] = 1e3
    assert torch.equal(out, UT.train_transform(garbage, lengths, torch.Generator().manual_seed(3)))
    assert torch.equal(UT.test_transform(x, lengths), UT.test_transform(garbage, lengths))
    # a 1-frame clip repeats its one frame; each coordinate spans exactly [-1, 1]
    one = UT.test_transform(x[:1], lengths[:1])
    assert torch.equal(one, one[:, :, :1].expand_as(one))
    assert (one.amin(dim=(2, 3)) == -1).all() and (one.amax(dim=(2, 3)) == 1).all()


def test_zero_range_coordinate_maps_to_zero():
    clip = np.random.default_rng(0).normal(size=(6, 20, 3)).astype(np.float32)
    clip[:, :, 2] = 0.7  # z constant: the official 0/0 gives NaN
    x, lengths = pad([clip])
    out = UT.test_transform(x, lengths)
    assert torch.isfinite(out).all() and (out[:, 2] == 0).all()
    with np.errstate(invalid="ignore"):
        expected = ref_transform(clip)
    assert np.isnan(expected[2]).all()  # what the official formula gives
    np.testing.assert_allclose(out[0, :2].numpy(), expected[:2], atol=5e-6)


def test_bad_batches_raise():
    x = torch.zeros(2, 3, 10, 20, 1)
    with pytest.raises(ValueError, match="lengths"):
        UT.test_transform(x, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="lengths"):
        UT.test_transform(x, torch.tensor([11, 3]))
    with pytest.raises(ValueError, match="batch"):
        UT.test_transform(torch.zeros(2, 3, 10, 20), torch.tensor([1, 3]))
    with pytest.raises(ValueError, match="stream"):
        UT.apply_stream(x, "joint")
    with pytest.raises(ValueError, match="frame indices"):
        UT.ucla_transform(x, torch.tensor([4, 3]), torch.tensor([[0, 3], [0, 3]]))


def test_batch_callable_matches_functions():
    x, lengths = pad([np.random.default_rng(4).normal(size=(L, 20, 3)).astype(np.float32)
                      for L in (3, 17)])
    g = torch.Generator().manual_seed(9)
    tf = UT.UCLATransform(train=True, stream="bm")
    expected = UT.apply_stream(UT.train_transform(x, lengths, torch.Generator().manual_seed(9)), "bm")
    assert torch.equal(tf(x, lengths, g), expected)
    expected = UT.apply_stream(UT.test_transform(x, lengths), "jm")
    assert torch.equal(UT.UCLATransform(train=False, stream="jm")(x, lengths, g), expected)
    with pytest.raises(ValueError, match="stream"):
        UT.UCLATransform(stream="bone")
