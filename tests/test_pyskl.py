"""PYSKL annotation pickles: the restricted unpickler (malicious files refused without running
anything) and the conversion into a store (values equal to the pickle's, PYSKL's person rule,
splits as protocols), on small generated pickles; PYSKL's NTU 3-D preprocessing against
CTR-GCN's on the two real NTU clips (skipped without ../shared/data)."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from benchmark.data import pyskl as PK
from benchmark.data import safe_pickle as SP
from benchmark.data.ntu_parse import read_skeleton
from benchmark.data.store import open_store
from benchmark.errors import BenchmarkError
from conftest import assert_one_line_error, run_cli, shared_path

A005, A017 = "S001C001P003R002A005", "S001C001P004R001A017"


# ------------------------------------------------------------------ generated pickles
def k400_annotations(rng: np.random.Generator, n: int = 12, classes: int = 5, crowd: int = -1) -> list[dict]:
    """Compressed Kinetics-style annotations: person rows (N, 17, 3) float16 at sorted frame
    indices, box scores in [0, 1), some frames empty; clip ``crowd`` has 12 persons in a frame."""
    anns = []
    for i in range(n):
        total = int(rng.integers(4, 40))
        rows, inds, boxes = [], [], []
        for t in range(total):
            k = 12 if (i == crowd and t == 2) else int(rng.integers(0, 4))
            for _ in range(k):
                inds.append(t)
                boxes.append(rng.random())
                kp = rng.normal(0, 80, (17, 3))
                kp[:, 2] = rng.random(17)
                rows.append(kp)
        anns.append(dict(frame_dir=f"vid_{i:03d}", label=i % classes, total_frames=total,
                         img_shape=(256, 340), original_shape=(256, 340),
                         keypoint=np.array(rows, dtype=np.float16).reshape(-1, 17, 3),
                         frame_inds=np.array(inds, dtype=np.int16),
                         box_score=np.array(boxes, dtype=np.float16),
                         valid={0.5: sum(b >= 0.5 for b in boxes)}))
    return anns


def reference_decompress(kp: np.ndarray, inds: np.ndarray, scores: np.ndarray | None,
                         thr: float | None) -> np.ndarray:
    """The documented rule, written as plainly as possible: (2, T, 17, 3) float32."""
    if thr is not None:
        keep = scores >= thr
        kp, inds = kp[keep], inds[keep]
    frames = sorted(set(inds.tolist()))
    per_frame = [[kp[r] for r in range(len(inds)) if inds[r] == f] for f in frames]
    if max(len(p) for p in per_frame) > 10:
        per_frame = [sorted(p, key=lambda k: -k[:, 2].astype(np.float16).sum(dtype=np.float16))
                     for p in per_frame]
    out = np.zeros((2, len(frames), 17, 3), np.float32)
    for t, persons in enumerate(per_frame):
        for m, k in enumerate(persons[:2]):
            out[m, t] = k.astype(np.float16).astype(np.float32)
    return out


def write_pickle(path: Path, obj, protocol: int = 2) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


@pytest.fixture
def k400_pickle(tmp_path):
    rng = np.random.default_rng(0)
    anns = k400_annotations(rng, crowd=3)
    names = [a["frame_dir"] for a in anns]
    obj = dict(split=dict(train=names[:8], val=names[8:]), annotations=anns)
    return write_pickle(tmp_path / "k400_hrnet.pkl", obj), anns


# ------------------------------------------------------------------ the restricted unpickler
REALISTIC = {"a": np.arange(12, dtype=np.float16).reshape(2, 3, 2),
             "f": np.arange(4.0).reshape(2, 2, order="F"), "s": np.float32(1.5), "i": np.int64(-3),
             "b": np.array([True, False]), "u": np.array(["ab", "c"]), "t": (1, 2.5, "x", None),
             "v": {0.5: 3}, "e": np.zeros((0, 17, 3))}


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numpy_pickles_load_back_equal(tmp_path, protocol):
    obj = SP.load(write_pickle(tmp_path / "x.pkl", REALISTIC, protocol))
    assert set(obj) == set(REALISTIC)
    for k, v in REALISTIC.items():
        if isinstance(v, np.ndarray):
            got = SP.plain(obj[k])
            assert type(got) is np.ndarray and got.dtype == v.dtype and got.shape == v.shape
            np.testing.assert_array_equal(got, v)
        else:
            assert obj[k] == v and type(obj[k]) is type(v)


def test_numpy1_module_names_and_ordered_dict_load(tmp_path):
    from collections import OrderedDict
    raw = pickle.dumps({"k": np.ones(3, np.float32), "o": OrderedDict(a=1)}, protocol=2)
    raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")  # a NumPy 1.x file
    assert b"numpy.core.multiarray" in raw
    obj = SP.load(write_pickle_bytes(tmp_path / "old.pkl", raw))
    np.testing.assert_array_equal(obj["k"], np.ones(3, np.float32))
    assert obj["o"] == {"a": 1}


def write_pickle_bytes(path: Path, raw: bytes) -> Path:
    path.write_bytes(raw)
    return path


class Evil:
    """A pickle whose loading would run a command (what pickle.load does with it)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _global(module: str, name: str, arg: str) -> bytes:
    """Protocol-0 text: call module.name(arg) (GLOBAL, MARK, STRING, TUPLE, REDUCE, STOP)."""
    return f"c{module}\n{name}\n(S'{arg}'\ntR.".encode()


def _malicious(marker: Path) -> dict[str, bytes]:
    m = str(marker)
    obj_array = pickle.dumps(np.array([1, None], dtype=object), protocol=2)
    return {
        "reduce_os_system": pickle.dumps({"annotations": [Evil(marker)]}, protocol=2),
        "os_system": _global("os", "system", f"touch {m}"),
        "builtins_eval": _global("builtins", "eval", f"open({m!r}, 'w')"),
        "numpy_save": b"cnumpy\nsave\n(S'" + m.encode() + b"'\nI0\ntR.",
        "numpy_load": _global("numpy", "load", m),
        "copyreg": _global("copyreg", "_reconstructor", m),
        "object_array": obj_array,
        "reconstruct_odd_args": b"cnumpy.core.multiarray\n_reconstruct\n(cnumpy\ndtype\n(I0\ntI1\ntR.",
        "codecs_rot13": b"c_codecs\nencode\n(S'x'\nS'rot13'\ntR.",
        "persistent_id": b"Pfoo\n.",
        "build_on_stand_in": b"cnumpy\ndtype\n(dS'__defaults__'\n(I1\ntsb.",
        "object_scalar": b"cnumpy.core.multiarray\nscalar\n(cnumpy\ndtype\n(S'O8'\nI00\nI01\ntRS'x'\ntR.",
    }


EXPECTED = {"reduce_os_system": "refused global posix.system", "os_system": "refused global os.system",
            "builtins_eval": "refused global builtins.eval", "numpy_save": "refused global numpy.save",
            "numpy_load": "refused global numpy.load",
            "copyreg": "refused global copyreg._reconstructor",
            "object_array": "dtype('O8'", "reconstruct_odd_args": "_reconstruct is admitted only",
            "codecs_rot13": "_codecs.encode is admitted only", "persistent_id": "persistent ID",
            "build_on_stand_in": "setting state on numpy.dtype", "object_scalar": "dtype('O8'"}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_malicious_pickles_are_refused_without_running(tmp_path, kind):
    marker = tmp_path / "pwned"
    raw = _malicious(marker)[kind]
    path = write_pickle_bytes(tmp_path / "evil.pkl", raw)
    with pytest.raises(BenchmarkError) as e:
        SP.load(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg and EXPECTED[kind] in msg, msg
    assert [p.name for p in tmp_path.iterdir()] == ["evil.pkl"]  # no marker (numpy.save: .npy)
    if kind == "build_on_stand_in":  # the stand-in's behaviour is unchanged after the attempt
        assert SP.ALLOWED[("numpy", "dtype")]("f4") == np.dtype("f4")


@pytest.mark.parametrize("kind, target", [("reduce_os_system", ("posix", "os")),
                                          ("os_system", ("os",)), ("builtins_eval", ("builtins",)),
                                          ("numpy_save", ("numpy",))])
def test_the_payloads_call_a_real_callable(tmp_path, kind, target):
    """Each payload names a real callable and applies it on load (read with pickletools, never
    unpickled), so the missing marker above means the loader refused it, not that it was inert."""
    import importlib
    import pickletools

    ops = list(pickletools.genops(_malicious(tmp_path / "pwned")[kind]))
    named = [arg.split(" ") for op, arg, _ in ops if op.name == "GLOBAL"]
    assert len(named) == 1 and named[0][0] in target, named
    module, name = named[0]
    assert callable(getattr(importlib.import_module(module), name))
    assert any(op.name == "REDUCE" for op, _, _ in ops)
    assert not list(tmp_path.iterdir())


class SharedState:
    """An array whose pickled state is one shared 4 KB byte string (memoised: written once)."""

    RAW = bytes(4096)

    def __reduce__(self):
        return (np._core.multiarray._reconstruct, (np.ndarray, (0,), b"b"),
                (1, (4096,), np.dtype("u1"), False, self.RAW))


def test_one_byte_string_made_into_many_arrays_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(SP, "_BUDGET_SLACK", 0)
    few = write_pickle(tmp_path / "few.pkl", [SharedState() for _ in range(3)])
    assert len(SP.load(few)) == 3
    many = write_pickle(tmp_path / "many.pkl", [SharedState() for _ in range(200)])
    assert many.stat().st_size < 20_000  # 200 arrays of 4 KB from a 10 KB file
    with pytest.raises(BenchmarkError, match="more than 4x the file's size"):
        SP.load(many)


def test_cli_refuses_a_malicious_pickle_in_one_line(tmp_path):
    marker = tmp_path / "pwned"
    path = write_pickle_bytes(tmp_path / "k400_hrnet.pkl", _malicious(marker)["reduce_os_system"])
    p = run_cli("data", "prepare", "pyskl", "--raw", path, "--out", tmp_path / "store")
    assert_one_line_error(p, "refused global posix.system")
    assert not marker.exists() and not (tmp_path / "store").exists()
    assert [e.name for e in tmp_path.iterdir()] == ["k400_hrnet.pkl"]


# ------------------------------------------------------------------ conversion
def test_k400_format_converts_with_the_pickles_values(k400_pickle, tmp_path):
    path, anns = k400_pickle
    PK.import_pyskl(path, tmp_path / "k400", progress=False)
    s = open_store(tmp_path / "k400")
    assert s.manifest["dataset"] == "k400" and s.num_classes == 400 and s.layout == "coco17"
    assert s.data.shape[1:] == (3, max(s.lengths), 17, 2)
    assert s.manifest["sources"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert s.names == sorted(s.names)
    for i, a in enumerate(anns):
        thr = 0.5 if i < 8 else None  # Shap-Mix: box_thr on the training split only
        want = reference_decompress(a["keypoint"], a["frame_inds"], a["box_score"], thr)
        if want.shape[1] == 0:
            assert a["frame_dir"] not in s.names
            continue
        r = s.names.index(a["frame_dir"])
        L = int(s.lengths[r])
        assert L == want.shape[1] and s.labels[r] == a["label"]
        np.testing.assert_array_equal(s.data[r, :, :L], want.transpose(3, 1, 2, 0))
        assert not s.data[r, :, L:].any()
    assert s.split_names("k400", "test") == [a["frame_dir"] for a in anns[8:]]
    assert s.manifest["pyskl"]["box_thr"] == 0.5 and s.manifest["pyskl"]["val_box_thr"] is None


def test_crowded_clip_sorts_persons_by_score_sum():
    kp = np.zeros((12, 17, 3), np.float16)
    kp[:, :, 2] = (np.arange(12)[:, None] % 5) / 10  # score sums 0, 1.7, 3.4, 5.1, 6.8, 0, ...
    kp[:, 0, 0] = np.arange(12)                      # person id in x of joint 0
    out = PK.decompress(kp, np.zeros(12, np.int64))
    assert out[:, 0, 0, 0].tolist() == [4, 9]        # the two highest sums, first one first
    few = PK.decompress(kp[:3], np.zeros(3, np.int64))
    assert few[:, 0, 0, 0].tolist() == [0, 1]        # <= 10 persons: stored order


def test_kpfiles_give_the_same_store(k400_pickle, tmp_path):
    path, anns = k400_pickle
    kpdir = tmp_path / "kpfiles"
    kpdir.mkdir()
    toc = []
    packs: dict[str, dict] = {}
    for i, a in enumerate(anns):  # PYSKL's raw_file paths; the files sit in --kpfiles
        part = f"data/k400/kpfiles/part_{i % 3}.pkl"
        packs.setdefault(Path(part).name, {})[a["frame_dir"]] = {"keypoint": a["keypoint"]}
        toc.append({k: v for k, v in a.items() if k != "keypoint"} | {"raw_file": part})
    for fname, pack in packs.items():
        write_pickle(kpdir / fname, pack)
    names = [a["frame_dir"] for a in anns]
    (tmp_path / "toc").mkdir()
    toc_path = write_pickle(tmp_path / "toc" / "k400_hrnet.pkl",
                            dict(split=dict(train=names[:8], val=names[8:]), annotations=toc))
    PK.import_pyskl(path, tmp_path / "inline", progress=False)
    with pytest.raises(BenchmarkError, match="pass --kpfiles"):
        PK.import_pyskl(toc_path, tmp_path / "nokp", progress=False)
    PK.import_pyskl(toc_path, tmp_path / "viakp", kpfiles=kpdir, progress=False)
    a, b = open_store(tmp_path / "inline"), open_store(tmp_path / "viakp")
    assert a.names == b.names and np.array_equal(a.data, b.data) and np.array_equal(a.lengths, b.lengths)
    assert sorted(b.manifest["sources"]["kpfiles"]) == ["part_0.pkl", "part_1.pkl", "part_2.pkl"]


def test_box_thresholds_are_options(k400_pickle, tmp_path):
    path, anns = k400_pickle
    PK.import_pyskl(path, tmp_path / "none", box_thr=None, progress=False)
    PK.import_pyskl(path, tmp_path / "both", box_thr=0.5, val_box_thr=0.5, progress=False)
    none, both = open_store(tmp_path / "none"), open_store(tmp_path / "both")
    for a in anns:
        full = reference_decompress(a["keypoint"], a["frame_inds"], None, None)
        r = none.names.index(a["frame_dir"])
        np.testing.assert_array_equal(none.data[r, :, :full.shape[1]], full.transpose(3, 1, 2, 0))
    assert sum(both.lengths) < sum(none.lengths)


def test_plain_2d_persons_and_missing_scores(tmp_path):
    rng = np.random.default_rng(1)
    kp3 = rng.normal(0, 50, (3, 6, 17, 2)).astype(np.float16)   # three persons: first two kept
    sc3 = rng.random((3, 6, 17)).astype(np.float16)
    kp1 = rng.normal(0, 50, (1, 4, 17, 2)).astype(np.float32)   # one person, no scores
    anns = [dict(frame_dir="A", label=0, total_frames=6, keypoint=kp3, keypoint_score=sc3),
            dict(frame_dir="B", label=1, total_frames=4, keypoint=kp1)]
    path = write_pickle(tmp_path / "ntu60_hrnet.pkl", dict(
        split={"xsub_train": ["A"], "xsub_val": ["B"]}, annotations=anns), protocol=4)
    PK.import_pyskl(path, tmp_path / "s", name="hr", progress=False)
    s = open_store(tmp_path / "s")
    assert s.layout == "coco17" and s.num_classes == 2 and s.data.shape == (2, 3, 6, 17, 2)
    np.testing.assert_array_equal(s.data[0, :2].transpose(3, 1, 2, 0), kp3[:2].astype(np.float32))
    np.testing.assert_array_equal(s.data[0, 2].transpose(2, 0, 1), sc3[:2].astype(np.float32))
    np.testing.assert_array_equal(s.data[1, :2, :4, :, 0], kp1[0].transpose(2, 0, 1))
    assert not s.data[1, 2].any() and not s.data[1, :, :, :, 1].any()
    assert s.manifest["pyskl"]["clips_without_score"] == 1
    assert s.manifest["pyskl"]["clips_with_more_persons"] == 1
    assert s.split_names("xsub", "train") == ["A"] and s.manifest["channels"] == "x, y, keypoint score"


def ntu_names() -> list[str]:
    return ["S001C001P001R001A001", "S001C002P003R001A002", "S002C001P002R002A001",
            "S001C003P002R001A003", "S002C002P001R001A002"]


def test_plain_3d_ntu_keeps_values_and_orders_protocols_like_ctrgcn(tmp_path):
    rng = np.random.default_rng(2)
    names = ntu_names()
    anns = [dict(frame_dir=n, label=int(n[-3:]) - 1, total_frames=5 + i,
                 keypoint=rng.normal(0, 1, (1 + i % 2, 5 + i, 25, 3)).astype(np.float16))
            for i, n in enumerate(names)]
    train = sorted(n for n in names if int(n[9:12]) in (1, 2))  # PYSKL: name-sorted lists
    split = {"xsub_train": train, "xsub_val": sorted(set(names) - set(train))}
    path = write_pickle(tmp_path / "ntu60_3danno.pkl", dict(split=split, annotations=anns))
    PK.import_pyskl(path, tmp_path / "ntu", progress=False)
    s = open_store(tmp_path / "ntu")
    assert (s.manifest["dataset"], s.num_classes, s.layout, s.manifest["channels"]) == \
        ("ntu60", 60, "ntu25", "x, y, z")
    for a in anns:
        r = s.names.index(a["frame_dir"])
        m = a["keypoint"].shape[0]
        np.testing.assert_array_equal(s.data[r, :, :a["total_frames"], :, :m],
                                      a["keypoint"].astype(np.float32).transpose(3, 1, 2, 0))
    # CTR-GCN get_indices order: by performer, name order within a performer
    assert s.split_names("xsub", "train") == ["S001C001P001R001A001", "S002C002P001R001A002",
                                              "S001C003P002R001A003", "S002C001P002R002A001"]


@pytest.mark.parametrize("edit,problem", [
    (lambda o: o.update(annotations=[]), "no annotations"),
    (lambda o: o.pop("split"), "not a PYSKL annotation pickle"),
    (lambda o: o["annotations"].append(dict(o["annotations"][0])), "is annotated twice"),
    (lambda o: o["annotations"][0].update(label=-1), "is not a non-negative integer"),
    (lambda o: o["split"]["train"].append("nobody"), "1 clips have no annotation, e.g. 'nobody'"),
    (lambda o: o["annotations"][1].update(frame_inds=o["annotations"][1]["frame_inds"][::-1].copy()),
     "frame_inds are not in increasing order"),
    (lambda o: o["annotations"][2]["keypoint"].__setitem__((0, 0, 0), np.inf), "NaN or infinite"),
    (lambda o: o["annotations"][3].update(keypoint=o["annotations"][3]["keypoint"][1:]),
     "keypoint rows but"),
    (lambda o: o.update(split={"train": []}), "no train and val/test pair"),
])
def test_bad_pickles_are_one_error_and_leave_nothing(tmp_path, edit, problem):
    rng = np.random.default_rng(3)
    anns = k400_annotations(rng, n=4)
    obj = dict(split=dict(train=[a["frame_dir"] for a in anns[:2]], val=[a["frame_dir"] for a in anns[2:]]),
               annotations=anns)
    edit(obj)
    path = write_pickle(tmp_path / "k400_bad.pkl", obj)
    p = run_cli("data", "prepare", "pyskl", "--raw", path, "--out", tmp_path / "out",
                "--box-thr", "none")
    assert_one_line_error(p, str(path), problem)
    assert not (tmp_path / "out").exists() and sorted(e.name for e in tmp_path.iterdir()) == ["k400_bad.pkl"]


def test_cli_writes_a_store_and_info_reads_it(k400_pickle, tmp_path):
    path, _ = k400_pickle
    p = run_cli("data", "prepare", "pyskl", "--raw", path, "--out", tmp_path / "st")
    assert p.returncode == 0, p.stderr
    p = run_cli("data", "info", tmp_path / "st")
    assert p.returncode == 0 and "k400" in p.stdout and "layout coco17" in p.stdout
    manifest = json.loads((tmp_path / "st" / "manifest.json").read_text())
    assert manifest["splits"] == ["k400_test", "k400_train"]


# ------------------------------------------------------------------ NTU 3-D: PYSKL vs CTR-GCN
def pyskl_ntu_keypoint(path: Path) -> np.ndarray:
    """PYSKL ``tools/data/ntu_preproc.py``'s array for a clip whose denoising leaves one body
    (both real samples): bodies sorted by motion, bodies of <= 11 frames dropped, the spread
    filter (x-spread <= 0.8 y-spread; a body with >= 69.754 % noisy frames dropped), then the
    remaining body's raw camera coordinates, (1, T, 25, 3) float16. Written from its rule."""
    bodies = []
    for b in read_skeleton(path).bodies.values():
        kpt = b.joints.reshape(-1, 25, 3)
        bodies.append([kpt, float(np.sum(np.var(b.joints, axis=0)))])
    if len(bodies) > 1:
        bodies = [b for b in bodies if len(b[0]) > 11]
        kept = []
        for kpt, motion in bodies:
            x, y = kpt[..., 0], kpt[..., 1]
            valid = np.flatnonzero(x.max(1) - x.min(1) <= 0.8 * (y.max(1) - y.min(1)))
            if 1 - len(valid) / len(kpt) < 0.69754:
                kept.append([kpt, motion])
        bodies = kept
    assert len(bodies) == 1
    return bodies[0][0][None].astype(np.float16)


@pytest.mark.parametrize("name", [A005, A017])
def test_pyskl_ntu_3d_differs_from_ctrgcn_by_the_translation_and_float16(name):
    samples = shared_path("ntu-raw-samples")
    with np.load(samples / "official_preprocessing_golden.npz", allow_pickle=False) as z:
        den, ctr = z[f"{name}/denoised_joints"], z[f"{name}/translated_padded97"]
    kp = pyskl_ntu_keypoint(samples / f"{name}.skeleton")
    T = kp.shape[1]
    assert T == {A005: 68, A017: 97}[name] == len(den)  # same frames, same (single) actor
    # PYSKL = CTR-GCN's denoised camera coordinates in float16, not centred ...
    np.testing.assert_array_equal(kp[0], den.reshape(T, 25, 3).astype(np.float16))
    origin = den[0, 3:6]                                 # actor 1's first spine-middle joint
    ctr1 = ctr[:T, :75].reshape(T, 25, 3).astype(np.float64)
    diff = kp[0].astype(np.float64) - ctr1
    # ... so it differs from CTR-GCN's array by the translation (metres) ...
    assert np.abs(diff).max() == pytest.approx({A005: 3.7340, A017: 3.8058}[name], abs=1e-4)
    # ... and, the translation removed, by float16 rounding only
    err = np.abs(diff - origin).max()
    assert err == pytest.approx({A005: 1.944e-3, A017: 9.76e-4}[name], rel=1e-3)
    assert not ctr[:, 75:].any()  # CTR-GCN NTU60: the second person is zero, as our import pads


def test_pyskl_ntu_pickle_of_the_real_clips_imports_exactly(tmp_path):
    samples = shared_path("ntu-raw-samples")
    anns = [dict(frame_dir=n, label=int(n[-3:]) - 1, keypoint=pyskl_ntu_keypoint(samples / f"{n}.skeleton"))
            for n in (A005, A017)]
    for a in anns:
        a["total_frames"] = a["keypoint"].shape[1]
    path = write_pickle(tmp_path / "ntu60_3danno.pkl", dict(
        split={"xview_train": [], "xview_val": [A005, A017], "xsub_train": [A017], "xsub_val": [A005]},
        annotations=anns))
    PK.import_pyskl(path, tmp_path / "ntu", progress=False)
    s = open_store(tmp_path / "ntu")
    for a in anns:
        r = s.names.index(a["frame_dir"])
        np.testing.assert_array_equal(s.data[r, :, :a["total_frames"], :, 0],
                                      a["keypoint"][0].astype(np.float32).transpose(2, 0, 1))
