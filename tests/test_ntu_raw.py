"""NTU RGB+D raw ``.skeleton`` reader: golden equality with the official CTR-GCN preprocessing,
the denoising rules on synthetic bodies, bad-input errors, and the resumable prepare pipeline.

Golden data: ``../shared/data/ntu-raw-samples`` (two real files and the official outputs for
them, see its README); tests that need it skip when it is absent.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmark.data import ntu_denoise as ND
from benchmark.data import ntu_fastparse as NF
from benchmark.data import ntu_parse as NP
from benchmark.data.ntu_parse import parse_skeleton, read_skeleton, sequence_from_raw
from benchmark.data.ntu_raw import collect_skeleton_files, prepare_ntu, read_missing_list, run_chunks
from benchmark.data.store import open_store
from benchmark.errors import BenchmarkError
from conftest import assert_one_line_error, run_cli, shared_path

A005, A017 = "S001C001P003R002A005", "S001C001P004R001A017"
TOL = 1e-5


@pytest.fixture(scope="module")
def samples() -> Path:
    return shared_path("ntu-raw-samples")


@pytest.fixture(scope="module")
def golden(samples) -> dict[str, np.ndarray]:
    with np.load(samples / "official_preprocessing_golden.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _lf_copy(samples: Path, name: str, tmp_path: Path) -> Path:
    p = tmp_path / f"{name}.skeleton"
    p.write_bytes((samples / f"{name}.skeleton").read_bytes().replace(b"\r\n", b"\n"))
    return p


def skeleton_text(frames: list[list[tuple[str, np.ndarray]]], nl: str = "\r\n") -> str:
    """A .skeleton file: per frame a list of (body ID, (25, 3) joints)."""
    lines = [str(len(frames))]
    for bodies in frames:
        lines.append(str(len(bodies)))
        for bid, joints in bodies:
            lines += [f"{bid} 0 1 1 1 1 0 0.06 -0.24 2", "25"]
            lines += [f"{x:.7g} {y:.7g} {z:.7g} 277.4 185.5 1036.1 500.9 0.19 -0.03 0.98 -0.1 2"
                      for x, y, z in joints]
    return nl.join(lines) + nl


# ---------------------------------------------------------------- golden (official outputs)

@pytest.mark.parametrize("name", [A005, A017])
@pytest.mark.parametrize("line_end", ["crlf", "lf"])
def test_golden_raw_bodies(samples, golden, tmp_path, name, line_end):
    path = samples / f"{name}.skeleton" if line_end == "crlf" else _lf_copy(samples, name, tmp_path)
    if line_end == "crlf":
        assert b"\r\n" in path.read_bytes()[:10]
    seq = read_skeleton(path)
    ids = sorted(k.split("raw_body_")[1][:-len("_joints")] for k in golden
                 if k.startswith(name + "/raw_body_") and k.endswith("_joints"))
    assert sorted(seq.bodies) == ids
    assert seq.frames_dropped == [] and seq.num_frames == {A005: 68, A017: 97}[name]
    for bid, body in seq.bodies.items():
        key = f"{name}/raw_body_{bid}"
        assert body.joints.dtype == np.float32 and body.joints.shape == golden[key + "_joints"].shape
        np.testing.assert_allclose(body.joints, golden[key + "_joints"], rtol=0, atol=TOL)
        np.testing.assert_array_equal(body.interval, golden[key + "_interval"])
        if key + "_motion" in golden:
            assert abs(float(body.motion) - float(golden[key + "_motion"])) <= TOL
        else:
            assert body.motion is None  # single body ID: the official code computes no motion


@pytest.mark.parametrize("name", [A005, A017])
@pytest.mark.parametrize("line_end", ["crlf", "lf"])
def test_golden_denoised_and_translated(samples, golden, tmp_path, name, line_end):
    path = samples / f"{name}.skeleton" if line_end == "crlf" else _lf_copy(samples, name, tmp_path)
    seq = read_skeleton(path)
    den = ND.denoised_joints(seq.bodies, seq.num_frames)
    assert den.shape == golden[f"{name}/denoised_joints"].shape  # A005: 2nd body dropped by spread
    np.testing.assert_allclose(den, golden[f"{name}/denoised_joints"], rtol=0, atol=TOL)
    out = sequence_from_raw(seq, path)
    padded = np.zeros((97, 150), np.float32)
    padded[:len(out), :out.shape[1]] = out
    np.testing.assert_allclose(padded, golden[f"{name}/translated_padded97"], rtol=0, atol=TOL)


def test_store_layout_matches_official_flat_vector():
    rng = np.random.default_rng(0)
    lengths = np.array([3, 5])
    seqs = rng.normal(size=(8, 150)).astype(np.float32)
    seqs[:3, 75:] = 0  # clip 0 is single-actor
    single = np.array([True, False])
    for copy in (False, True):
        out = ND.to_store_layout(seqs, lengths, single, 6, copy)
        assert out.shape == (2, 3, 6, 25, 2) and out.dtype == np.float32
        c, t, v, m = 2, 4, 7, 1  # flat column = m*75 + v*3 + c
        assert out[1, c, t, v, m] == seqs[3 + t, m * 75 + v * 3 + c]
        np.testing.assert_array_equal(out[1].transpose(1, 3, 2, 0).reshape(6, 150)[:5], seqs[3:])
        assert not out[:, :, 5:].any() and not out[0, :, 3:].any()  # zero padding at the end
        np.testing.assert_array_equal(out[0, ..., 1], out[0, ..., 0] if copy else 0)


# ---------------------------------------------------------------- official denoising rules

def _body(start: int, n: int, x_spread: float = 0.1, scale: float = 1.0, seed: int = 0,
          motion: float | None = None) -> ND.Body:
    """n frames of a body whose x-spread / y-spread is x_spread (y-spread 1)."""
    rng = np.random.default_rng(seed)
    j = np.zeros((n, 25, 3), np.float32)
    j[:, :, 0] = np.linspace(0, x_spread, 25)
    j[:, :, 1] = np.linspace(0, 1, 25)
    j[:, :, 2] = 3
    j += scale * rng.normal(size=(n, 1, 3)).astype(np.float32)
    joints = j.reshape(-1, 3)
    motion = ND.body_motion(joints) if motion is None else np.float32(motion)
    return ND.Body(joints, start + np.arange(n), motion)


def test_length_filter_keeps_bodies_longer_than_11_frames():
    out = ND.denoise_bodies({"a": _body(0, 11), "b": _body(0, 12)})
    assert [bid for bid, _, _ in out] == ["b"]
    with pytest.raises(ND.SkeletonError, match="<= 11 frames"):
        ND.denoise_bodies({"a": _body(0, 11), "b": _body(0, 5)})


def test_spread_filter_drops_noisy_bodies_and_updates_motion():
    noisy = _body(0, 20, seed=1)
    noisy.joints.reshape(20, 25, 3)[:14, :, 0] *= 30  # 14/20 = 0.7 >= 0.69754 noisy frames
    half = _body(0, 20, scale=0.5, seed=2)
    half.joints.reshape(20, 25, 3)[:10, :, 0] *= 30    # 0.5 noisy: kept, motion on clean frames
    half.motion = ND.body_motion(half.joints)
    out = ND.denoise_bodies({"noisy": noisy, "half": half, "c": _body(0, 20, scale=0.01, seed=3)})
    assert [bid for bid, _, _ in out] == ["half", "c"]
    clean = ND.body_motion(half.joints.reshape(20, 25, 3)[10:].reshape(-1, 3))
    assert out[0][2] == min(half.motion, clean) < half.motion
    assert half.motion == ND.body_motion(half.joints)  # the input bodies are not modified
    # the last body is never dropped, however noisy
    assert [b for b, _, _ in ND.denoise_bodies({"noisy": noisy, "n2": noisy})] == ["n2"]


def test_motion_sort_is_descending_and_stable():
    bodies = {k: _body(0, 20, motion=m) for k, m in [("a", 1.0), ("b", 3.0), ("c", 1.0), ("d", 2.0)]}
    assert [b for b, _, _ in ND.denoise_bodies(bodies)] == ["b", "d", "a", "c"]


def test_two_actor_placement_follows_official_overlap_rule():
    a1 = _body(0, 20, motion=9)   # actor 1: frames 0-19
    touch = _body(19, 11, motion=8)  # 19-29 touches actor 1 -> actor-1 columns, interval 0-29
    a2 = _body(5, 12, motion=7)   # overlaps actor 1 -> actor 2, interval [0, 16] (start stays 0)
    late = _body(17, 13, motion=6)  # 17-29 overlaps actor 1 [0,29] and actor 2 [0,16]? 16-17<0 -> actor 2
    dup = _body(10, 12, motion=5)   # overlaps both -> discarded
    early = _body(0, 4, motion=4)   # 0-3 is before actor 2's real start, but its interval is [0, 29]
    actors = [(k, b, b.motion) for k, b in [("a1", a1), ("t", touch), ("a2", a2), ("l", late), ("d", dup),
                                            ("e", early)]]
    j = ND.place_actors(actors, 30)
    np.testing.assert_array_equal(j[:19, :75], a1.joints.reshape(-1, 75)[:19])
    np.testing.assert_array_equal(j[19:30, :75], touch.joints.reshape(-1, 75))  # overwrote frame 19
    np.testing.assert_array_equal(j[5:17, 75:], a2.joints.reshape(-1, 75))
    np.testing.assert_array_equal(j[17:30, 75:], late.joints.reshape(-1, 75))
    assert not j[:5, 75:].any()  # "early" was discarded


def test_remove_missing_frames_and_translation():
    j = np.zeros((4, 150), np.float32)
    j[1, :75] = np.arange(75) + 1
    j[2, 75:] = 5
    j[3] = 2
    kept = ND.remove_missing_frames(j)
    assert len(kept) == 3  # frame 0 had no actor at all
    out = ND.translate(kept)
    origin = kept[0, 3:6]  # actor 1's first non-zero frame, joint 1
    np.testing.assert_array_equal(out[0, :75], kept[0, :75] - np.tile(origin, 25))
    assert not out[1, :75].any() and not out[0, 75:].any()  # missing actors re-zeroed
    np.testing.assert_array_equal(out[2], 2 - np.tile(origin, 50))
    single = np.zeros((2, 75), np.float32)
    single[1] = 1
    # single-actor sequences are never re-zeroed (official quirk): frame 0 becomes -origin
    np.testing.assert_array_equal(ND.translate(single)[0], -np.ones(75, np.float32))


# ---------------------------------------------------------------- bad input: one line naming the file

GOOD = np.full((25, 3), 0.5, np.float32) + np.linspace(0, 1, 75, dtype=np.float32).reshape(25, 3)


@pytest.mark.parametrize("text, problem", [
    ("", "truncated"),
    ("0\r\n", "frame count is 0"),
    ("3\r\n0\r\n0\r\n0\r\n", "no body in any of its 3 frames"),
    ("2\r\nx\r\n", "is not an integer"),
    (skeleton_text([[("7", GOOD)]] * 2).replace("25\r\n", "24\r\n", 1), "has 24 joints"),
    (skeleton_text([[("7", GOOD)]] * 2).replace("0.5 ", "abc ", 1), "non-numeric"),
    (skeleton_text([[("7", GOOD)], [("7", np.where(GOOD > 1, np.nan, GOOD))]]),
     "NaN or infinite joint coordinate in frame 2"),
    (skeleton_text([[("7", GOOD)], [("7", np.where(GOOD > 1, np.inf, GOOD))]]), "NaN or infinite"),
    ("\r\n".join(skeleton_text([[("7", GOOD)]] * 3).splitlines()[:40]), "truncated"),
    ("\n".join(skeleton_text([[("7", GOOD)]] * 3).splitlines()[:2 * 27]), "truncated"),
], ids=["empty", "zero-frames", "no-body", "bad-count", "24-joints", "non-numeric", "nan", "inf",
        "truncated-body", "truncated-joint-line"])
def test_bad_file_errors_name_the_file(tmp_path, text, problem):
    path = tmp_path / "S001C001P001R001A001.skeleton"
    path.write_text(text)
    with pytest.raises(BenchmarkError) as e:
        read_skeleton(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: ") and problem in msg and "\n" not in msg


def test_truncated_real_file(samples, tmp_path):
    path = tmp_path / f"{A017}.skeleton"
    path.write_bytes(b"\r\n".join((samples / f"{A017}.skeleton").read_bytes().split(b"\r\n")[:1000]))
    expected = f"^{re.escape(str(path))}: truncated: the file ends in frame 36 of 97"
    with pytest.raises(BenchmarkError, match=expected):
        read_skeleton(path)


def test_parse_keeps_body_order_drops_empty_frames_and_official_interval():
    a, b = GOOD, GOOD + 1
    seq = parse_skeleton(skeleton_text([[("9", a)], [], [("9", a), ("4", b)], [("4", b)], [("9", a)]],
                                       nl="\n").encode(), "x.skeleton")
    assert list(seq.bodies) == ["9", "4"] and seq.num_frames == 4 and seq.frames_dropped == [1]
    # body 9 is in kept frames 0, 1, 3: the official interval is first frame + count = 0, 1, 2
    np.testing.assert_array_equal(seq.bodies["9"].interval, [0, 1, 2])
    np.testing.assert_array_equal(seq.bodies["4"].interval, [1, 2])
    assert seq.bodies["4"].motion == pytest.approx(np.var(np.vstack([b, b]), axis=0).sum(), rel=1e-5)
    np.testing.assert_allclose(seq.bodies["9"].joints, np.vstack([a] * 3), rtol=1e-6)


# ---------------------------------------------------------------- fast parse == reference parse

def _assert_same_sequence(a, b) -> None:
    assert (a.name, a.num_frames, a.frames_dropped) == (b.name, b.num_frames, b.frames_dropped)
    assert list(a.bodies) == list(b.bodies)  # same IDs, same order of first appearance
    for bid, x in a.bodies.items():
        y = b.bodies[bid]
        assert x.joints.dtype == y.joints.dtype and x.joints.shape == y.joints.shape
        assert x.joints.tobytes() == y.joints.tobytes()  # bit for bit (-0.0 too)
        assert x.interval.dtype == y.interval.dtype and np.array_equal(x.interval, y.interval)
        assert type(x.motion) is type(y.motion)
        assert x.motion is None or x.motion.tobytes() == y.motion.tobytes()


def _fast_and_reference(raw: bytes, path: str = "x.skeleton"):
    assert NF.fast_layout(raw, path) is not None  # the fast path took it, no fallback
    fast = parse_skeleton(raw, path)
    _assert_same_sequence(fast, NP._parse_reference(raw, path))
    return fast


@pytest.mark.parametrize("name", [A005, A017])
@pytest.mark.parametrize("variant", ["crlf", "lf", "trailing-blank-lines", "tabs-and-spaces"])
def test_fast_parse_equals_reference_on_real_files(samples, name, variant):
    raw = (samples / f"{name}.skeleton").read_bytes()
    raw = {"crlf": raw, "lf": raw.replace(b"\r\n", b"\n"), "trailing-blank-lines": raw + b"\r\n\r\n \n",
           "tabs-and-spaces": raw.replace(b" ", b" \t ")}[variant]
    seq = _fast_and_reference(raw, f"{name}.skeleton")
    assert seq.num_frames == {A005: 68, A017: 97}[name]
    assert all(len(bid) == 17 for bid in seq.bodies)  # ~7.2e16: kept as text, never as a float


def _coordinate_text(rng: np.random.Generator, n: int) -> list[str]:
    """Coordinates the way NTU files and odd writers print them, incl. ones float() must read."""
    out = []
    for v in rng.normal(scale=2.0, size=n):
        r = rng.random()
        out.append(f"{v:.7g}" if r < 0.6 else f"{v:.10f}" if r < 0.7 else f"{v:.3e}" if r < 0.75
                   else f"{v:.17f}" if r < 0.8 else f"{v:+.4f}" if r < 0.85
                   else str(rng.choice(["0", "-0", "-0.0000000", "5.", ".25", "-.5", "1e-05", "-9.3E-05",
                                        "123456789012345.6", "9007199254740993", "000000000000000012.5"])))
    return out


def _synthetic_file(rng: np.random.Generator, frames: list[list[str]], nl: str) -> bytes:
    lines = [str(len(frames))]
    for bodies in frames:
        lines.append(str(len(bodies)))
        for bid in bodies:
            lines += [f"{bid} 0 1 1 1 1 0 0.06 -0.24 2", "25"]
            xyz = _coordinate_text(rng, 75)
            lines += [f"{xyz[3 * j]} {xyz[3 * j + 1]} {xyz[3 * j + 2]} 277.4 185.5 1036.1 500.9 0.19 -0.03 "
                      f"0.98 -9.9E-05 2" for j in range(25)]
    return (nl.join(lines) + nl).encode()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("nl", ["\r\n", "\n"])
def test_fast_parse_equals_reference_on_multi_body_files_with_dropped_frames(seed, nl):
    rng = np.random.default_rng(seed)
    ids = ["72057594037937513", "72057594037937524", "72057594037937525", "7"]
    frames = []
    for f in range(40):  # bodies come and go; some frames have none (dropped)
        k = int(rng.integers(0, 4)) if f % 7 else 0
        frames.append([ids[i] for i in sorted(rng.choice(4, size=k, replace=False))])
    frames[1] = [ids[0]]
    seq = _fast_and_reference(_synthetic_file(rng, frames, nl))
    assert seq.frames_dropped == [f for f, b in enumerate(frames) if not b]
    assert list(seq.bodies) == list(dict.fromkeys(b for bodies in frames for b in bodies))


@pytest.mark.parametrize("frames", [
    [["9"]] * 5 + [["9", "4"]] + [["9"]] * 3,   # same count for a while, then not
    [["9", "4"]] * 3 + [[]] + [["4", "9"]] * 3,  # a dropped frame among two-body frames
    [["9"]] * 12,                                # one body throughout (the shortcut walk)
])
def test_fast_parse_equals_reference_when_body_counts_change(frames):
    seq = _fast_and_reference(_synthetic_file(np.random.default_rng(len(frames)), frames, "\r\n"))
    assert seq.frames_dropped == [f for f, b in enumerate(frames) if not b]


def test_fast_parse_extra_tokens_warn_once(caplog):
    raw = _synthetic_file(np.random.default_rng(5), [["9"], [], ["9", "4"]], "\r\n") + b"1 2 3\r\n"
    _fast_and_reference(raw)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="benchmark.data.ntu_parse"):
        parse_skeleton(raw, "x.skeleton")
    assert caplog.text.count("x.skeleton: 3 extra tokens after the last frame ignored") == 1


@pytest.mark.parametrize("bad", ["abc", "1.2.3", "--1", "0x10", "1,5", "-"])
def test_non_numeric_coordinate_error_is_the_reference_one(samples, tmp_path, bad):
    raw = (samples / f"{A017}.skeleton").read_bytes().split(b"\r\n")
    raw[2 + 2 + 7] = bad.encode() + raw[2 + 2 + 7][raw[2 + 2 + 7].index(b" "):]  # frame 1, joint 8, x
    path = tmp_path / f"{A017}.skeleton"
    path.write_bytes(b"\r\n".join(raw))
    with pytest.raises(BenchmarkError) as ref:
        NP._parse_reference(path.read_bytes(), path)
    with pytest.raises(BenchmarkError) as e:
        read_skeleton(path)
    assert str(e.value) == str(ref.value)
    assert str(e.value).startswith(f"{path}: non-numeric joint coordinate (") and bad in str(e.value)


@pytest.mark.parametrize("cut", [40, 1000, 2000, -3])
def test_truncated_error_is_the_reference_one(samples, tmp_path, cut):
    lines = (samples / f"{A005}.skeleton").read_bytes().split(b"\r\n")
    path = tmp_path / f"{A005}.skeleton"
    path.write_bytes(b"\r\n".join(lines[:cut]))
    with pytest.raises(BenchmarkError) as ref:
        NP._parse_reference(path.read_bytes(), path)
    with pytest.raises(BenchmarkError) as e:
        read_skeleton(path)
    assert str(e.value) == str(ref.value) and "truncated" in str(e.value)


def test_vectorised_numbers_equal_float():
    """The decimal reader is bit-exact against float() (numpy's own str -> float64)."""
    rng = np.random.default_rng(0)
    n = 200_000
    digits = rng.integers(1, 18, n)
    mant = [str(int(rng.integers(0, 10 ** min(d, 18)))).zfill(d) for d in digits.tolist()]
    dot = (rng.random(n) * (digits + 1)).astype(int)
    toks = [("-" if i % 3 == 0 else "") + (m if dot[i] == digits[i] and i % 5 == 0 else
                                           m[:dot[i]] + "." + m[dot[i]:]) for i, m in enumerate(mant)]
    toks += ["0", "-0", ".5", "5.", "-.5", "0.000000000000001", "9007199254740993", "1e5", "+1", "nan",
             "-inf", "1_0", "12345678901234567890.5"]
    raw = (" " * 16 + " ".join(toks)).encode()
    spans = [m.span() for m in re.finditer(rb"\S+", raw)]
    starts, ends = (np.array(x, dtype=np.intp) for x in zip(*spans))
    got = NF._numbers(raw, starts, ends)
    want = np.array([raw[a:b] for a, b in spans], dtype=np.float64)
    assert got is not None and got.tobytes() == want.tobytes()
    for bad in ["-", ".", "-.", "1..2", "1-2", "x1"]:  # what np.array(..., float64) rejects
        raw = f"{' ' * 16}1.5 {bad} 2".encode()
        starts, ends = np.array([16, 20, 21 + len(bad)]), np.array([19, 20 + len(bad), 22 + len(bad)])
        assert NF._numbers(raw, starts, ends) is None


@pytest.fixture()
def raw_folder(samples, tmp_path) -> Path:
    """Real files plus renamed copies: both protocol parts non-empty, one NTU120-only file
    and one body-less sample on an (auto-discovered) missing-skeleton list."""
    raw = tmp_path / "nturgb+d_skeletons"
    raw.mkdir()
    for name, src in [(A005, A005), (A017, A017), ("S001C002P001R001A005", A005),
                      ("S002C003P002R002A017", A017), ("S018C001P045R001A017", A017)]:
        shutil.copyfile(samples / f"{src}.skeleton", raw / f"{name}.skeleton")
    # like the real missing samples: no body in any frame; listed, so never parsed
    (raw / "S001C003P005R001A017.skeleton").write_text("3\r\n0\r\n0\r\n0\r\n")
    (tmp_path / "statistics").mkdir()
    (tmp_path / "statistics" / "samples_with_missing_skeletons.txt").write_text(
        "1 of the captured samples has missing skeleton data.\nignore it.\n\nS001C003P005R001A017\n")
    return raw


def _add(raw: Path, name: str) -> Path:
    (raw / name).write_text("1\r\n")
    return raw


@pytest.mark.parametrize("setup, problem", [
    (lambda raw: raw / "nope", "no such raw folder"),
    (lambda raw: (raw / "empty").mkdir() or raw / "empty", "no *.skeleton files"),
    (lambda raw: _add(raw, "foo.skeleton"), "foo.skeleton: file name is not an NTU sample name"),
    (lambda raw: _add(raw, "S001C001P001R001A061.skeleton"), "action 61 is outside 1..60"),
], ids=["missing-folder", "empty-folder", "bad-name", "bad-action"])
def test_prepare_input_errors(raw_folder, tmp_path, setup, problem):
    raw = setup(raw_folder)
    with pytest.raises(BenchmarkError, match=re.escape(problem)):
        prepare_ntu([raw], tmp_path / "store", "ntu60", progress=False)
    assert not (tmp_path / "store").exists()


def test_parent_folder_holds_ntu60_and_ntu120_folders(tmp_path):
    for sub, name in [("nturgb+d_skeletons", "S001C001P001R001A001"),
                      ("nturgb+d_skeletons120", "S018C001P001R001A061")]:
        (tmp_path / sub).mkdir()
        (tmp_path / sub / f"{name}.skeleton").write_text("1\r\n")
    found = collect_skeleton_files([tmp_path])
    d60, d120 = tmp_path / "nturgb+d_skeletons", tmp_path / "nturgb+d_skeletons120"
    assert found == {"S001C001P001R001A001": d60 / "S001C001P001R001A001.skeleton",
                     "S018C001P001R001A061": d120 / "S018C001P001R001A061.skeleton"}
    assert collect_skeleton_files([d60, d120]) == found
    (tmp_path / "nturgb+d_skeletons120" / "S001C001P001R001A001.skeleton").write_text("1\r\n")
    with pytest.raises(BenchmarkError, match="duplicate sample, also found at"):
        collect_skeleton_files([tmp_path])


def test_missing_list_required_and_validated(raw_folder, tmp_path):
    out = tmp_path / "store"
    shutil.rmtree(tmp_path / "statistics")
    with pytest.raises(BenchmarkError, match="--missing-list FILE, or --no-missing-list") as e:
        prepare_ntu([raw_folder], out, "ntu60", progress=False)
    assert str(e.value).startswith(str(raw_folder))
    ntu60_only = tmp_path / "samples_with_missing_skeletons.txt"
    ntu60_only.write_text("S001C003P005R001A017\n")
    with pytest.raises(BenchmarkError, match="covers NTU60 .* only"):
        prepare_ntu([raw_folder], out, "ntu120", missing_list=ntu60_only, progress=False)
    bad = tmp_path / "bad.txt"
    bad.write_text("S001C003P005R001A017\nS01C003\n")
    with pytest.raises(BenchmarkError, match=f"^{re.escape(str(bad))}: line 2: 'S01C003' is not an NTU"):
        read_missing_list(bad)
    assert not out.exists()


def test_cli_bad_file_one_error_line_and_no_output(samples, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copyfile(samples / f"{A005}.skeleton", raw / f"{A005}.skeleton")
    bad = raw / f"{A017}.skeleton"
    bad.write_bytes((samples / f"{A017}.skeleton").read_bytes()[:50_000])
    out = tmp_path / "store"
    proc = run_cli("data", "prepare", "ntu60", "--raw", raw, "--out", out, "--workers", "1",
                   "--no-missing-list")
    assert_one_line_error(proc, str(bad), "truncated")
    assert proc.stderr.strip().startswith("error:") and len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists() and not (tmp_path / "store.partial").exists()


# ---------------------------------------------------------------- end to end

def _flat(clip: np.ndarray) -> np.ndarray:
    """(3, T, 25, 2) -> the official (T, 150) rows."""
    return clip.transpose(1, 3, 2, 0).reshape(clip.shape[1], 150)


def test_prepare_ntu60_and_ntu120_end_to_end(raw_folder, golden, tmp_path):
    out = prepare_ntu([raw_folder], tmp_path / "ntu60", "ntu60", workers=2, chunk_size=2, progress=False)
    s = open_store(out)
    assert not (tmp_path / "ntu60.partial").exists()
    assert s.names == [A005, A017, "S001C002P001R001A005", "S002C003P002R002A017"]
    assert s.data.shape == (4, 3, 300, 25, 2)
    np.testing.assert_array_equal(s.labels, [4, 16, 4, 16])
    np.testing.assert_array_equal(s.lengths, [68, 97, 68, 97])
    for i, name in enumerate(s.names):
        src = A005 if name.endswith("A005") else A017
        flat = _flat(np.asarray(s.data[i]))
        np.testing.assert_allclose(flat[:97], golden[f"{src}/translated_padded97"], rtol=0, atol=TOL)
        assert not flat[97:].any() and not flat[:, 75:].any()  # NTU60: single actor -> zero person 2
    # performer 4 IS an official cross-subject train performer (the samples README says test)
    assert s.split_names("xsub", "train") == ["S001C002P001R001A005", "S002C003P002R002A017", A017]
    assert s.split_names("xsub", "test") == [A005]
    assert s.split_names("xview", "test") == [A005, A017]
    assert s.split_names("xview", "train") == ["S001C002P001R001A005", "S002C003P002R002A017"]
    m = s.manifest
    assert m["excluded"] == {"missing_skeletons": 1, "not_in_ntu60": 1}
    assert m["sources"]["skeleton_files"] == 6 and len(m["sources"]["inputs_sha256"]) == 64
    assert m["missing_list"]["names"] == 1 and m["pipeline"]["single_actor_second_person"] == "zeros"
    assert m["stats"]["files_with_several_body_ids"] == 2 and m["stats"]["two_actor_clips"] == 0

    lst = tmp_path / "NTU_RGBD120_samples_with_missing_skeletons.txt"
    lst.write_text("S001C003P005R001A017\nS020C001P050R001A100\n")
    s120 = open_store(prepare_ntu([raw_folder], tmp_path / "ntu120", "ntu120", workers=1,
                                  missing_list=lst, progress=False))
    assert s120.names == s.names + ["S018C001P045R001A017"] and s120.num_classes == 120
    np.testing.assert_array_equal(s120.data[:4, ..., 0], s.data[..., 0])
    np.testing.assert_array_equal(s120.data[..., 1], s120.data[..., 0])  # NTU120 copies actor 1
    assert s120.split_names("xset", "train") == ["S002C003P002R002A017", "S018C001P045R001A017"]
    assert s120.manifest["sources"]["inputs_sha256"] != m["sources"]["inputs_sha256"]


def test_prepare_resumes_after_a_bad_file(raw_folder, samples, tmp_path, caplog):
    out, work = tmp_path / "store", tmp_path / "store.partial"
    last = raw_folder / "S002C003P002R002A017.skeleton"  # sorted last: its chunk runs last
    last.write_text("5\r\n")
    with pytest.raises(BenchmarkError, match="S002C003P002R002A017.skeleton: truncated"):
        prepare_ntu([raw_folder], out, "ntu60", workers=1, chunk_size=2, progress=False)
    assert not out.exists() and sorted(p.name for p in work.glob("*.json")) == ["chunk_00000.json"]
    shutil.copyfile(samples / f"{A017}.skeleton", last)
    with caplog.at_level(logging.INFO, logger="benchmark.data.ntu_raw"):
        prepare_ntu([raw_folder], out, "ntu60", workers=1, chunk_size=2, progress=False)
    assert "resuming, 2 of 4 files already parsed" in caplog.text
    assert not work.exists()
    fresh = prepare_ntu([raw_folder], tmp_path / "fresh", "ntu60", workers=2, chunk_size=3, progress=False)
    a, b = open_store(out), open_store(fresh)
    np.testing.assert_array_equal(a.data, b.data)
    assert a.names == b.names and a.manifest["sources"] == b.manifest["sources"]
    # a rerun after deleting the store redoes everything cleanly
    shutil.rmtree(out)
    again = open_store(prepare_ntu([raw_folder], out, "ntu60", progress=False))
    np.testing.assert_array_equal(again.data, b.data)


def test_changed_file_invalidates_only_its_chunk(raw_folder, samples, tmp_path):
    names = [A005, A017, "S001C002P001R001A005", "S002C003P002R002A017"]
    paths = [raw_folder / f"{n}.skeleton" for n in names]
    work = tmp_path / "work"
    chunks = run_chunks(names, paths, work, chunk_size=2, progress=False)
    before = [c.stat().st_mtime_ns for c in chunks]
    stamp = json.loads(chunks[1].with_suffix(".json").read_text())
    assert stamp["names"] == names[2:4]
    paths[3].write_bytes(paths[3].read_bytes().replace(b"\r\n", b"\n"))  # new size: must be redone
    run_chunks(names, paths, work, chunk_size=2, progress=False)
    after = [c.stat().st_mtime_ns for c in chunks]
    assert after[0] == before[0] and after[1] != before[1]
