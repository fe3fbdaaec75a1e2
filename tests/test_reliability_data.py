"""Issue 13, data layer: never lose a user's data, never leave a traceback or a mess behind.

--force never deletes what is not a store; degenerate splits are refused; write failures
(read-only folder, a file in the way, a full disk) are one line; corrupt NTU work files heal;
pool workers and temp folders do not outlive a ``kill -9``; non-finite coordinates never
reach a store. Every input is tiny and generated here; nothing needs ../shared/data.
"""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmark import _io
from benchmark.cli import main as cli_main
from benchmark.data.ntu_raw import prepare_ntu, run_chunks
from benchmark.data.store import StoreWriter, check_replaceable, open_store
from benchmark.errors import BenchmarkError
from conftest import REPO

LINUX = sys.platform.startswith("linux")


# ---------------------------------------------------------------- helpers

def run(capsys, *argv) -> tuple[int, str]:
    """``python -m benchmark ARGV`` in this process: (exit status, stderr)."""
    rc = cli_main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def one_error(rc: int, err: str, *needles: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert rc == 2 and len(errors) == 1 and "Traceback" not in err, (rc, err)
    for n in needles:
        assert n in errors[0], (n, errors[0])
    return errors[0]


def snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


def siblings(path: Path) -> list[str]:
    """Hidden entries beside ``path`` that belong to it (temp / old folders)."""
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


_UCLA_LABEL = [1, 2, 3, 4, 5, 6, 8, 9, 11, 12]  # action number -> label index + 1


def ucla_raw(root: Path, bad: dict[str, float] | None = None) -> Path:
    """Four NW-UCLA JSON clips (views 1, 2 train; view 3 test); ``bad`` sets one coordinate."""
    folder = root / "all_sqe"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a01_s01_e00_v01", "a12_s02_e01_v02", "a03_s01_e00_v03", "a08_s03_e02_v03"):
        skel = (rng.normal(size=(6, 20, 3)) + [0, 0, 3]).round(5).tolist()
        if bad and name in bad:
            skel[2][4][1] = bad[name]
        doc = {"file_name": name, "label": _UCLA_LABEL.index(int(name[1:3])) + 1, "skeletons": skel}
        (folder / f"{name}.json").write_text(json.dumps(doc))  # NaN / Infinity: JSON's extension
    return root


NTU_NAMES = ["S001C001P001R001A001", "S001C001P003R002A001", "S001C002P003R001A002", "S001C003P001R001A003"]


def skeleton(frames: int = 20, seed: int = 0, x: dict[tuple[int, int], str] | None = None) -> str:
    """A one-body .skeleton text; ``x`` replaces the x token of some (frame, joint)s."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(25, 3)) * 0.3 + [0, 0, 3]
    lines = [str(frames)]
    for f in range(frames):
        lines += ["1", "72057594037931101 0 1 1 1 1 0 0.06 -0.24 2", "25"]
        for j, (px, py, pz) in enumerate(base + 0.01 * f):
            xs = (x or {}).get((f, j), f"{px:.6f}")
            lines.append(f"{xs} {py:.6f} {pz:.6f} 277.4 185.5 1036.1 500.9 0.19 -0.03 0.98 -0.1 2")
    return "\r\n".join(lines) + "\r\n"


def ntu_raw(root: Path) -> Path:
    raw = root / "nturgb+d_skeletons"
    raw.mkdir(parents=True)
    for i, name in enumerate(NTU_NAMES):
        (raw / f"{name}.skeleton").write_text(skeleton(seed=i))
    return raw


def toy_store(out: Path) -> None:
    with StoreWriter(out, 6, T=4, V=25, M=2, dataset="toy", num_classes=3, layout="ntu25") as w:
        for i in range(6):
            w.data[i] = i
            w.names[i] = f"S001C001P001R{i + 1:03d}A00{i % 3 + 1}"
            w.labels[i], w.lengths[i] = i % 3, 4
        w.add_split("xsub", "train", w.names[:3])
        w.add_split("xsub", "test", w.names[3:])


def user_folder(out: Path) -> dict:
    (out / "sub").mkdir(parents=True)
    (out / "notes.txt").write_text("my notes")
    (out / "sub" / "results.csv").write_text("1,2,3")
    return snapshot(out)


# ---------------------------------------------------------------- 1. --force never deletes user data

@pytest.mark.parametrize("dataset", ["ntu60", "ntu120", "ntu-npz", "ucla", "synth"])
def test_force_refuses_a_folder_that_is_not_a_store(tmp_path, capsys, dataset):
    out = tmp_path / "out"
    before = user_folder(out)
    rc, err = run(capsys, "data", "prepare", dataset, "--raw", tmp_path / "raw", "--out", out,
                  "--no-missing-list", "--force", "--workers", "1")
    one_error(rc, err, str(out), "not a prepared store", "notes.txt", "sub")
    assert snapshot(out) == before and siblings(out) == []


def test_force_replaces_a_store_only_when_it_holds_nothing_else(tmp_path, capsys):
    raw, out = ucla_raw(tmp_path / "raw"), tmp_path / "out"
    toy_store(out)
    (out / "notes.txt").write_text("mine")
    (out / "splits" / "my_lt_list.txt").write_text("S001C001P001R001A001")
    before = snapshot(out)
    rc, err = run(capsys, "data", "prepare", "ucla", "--raw", raw, "--out", out, "--force", "--workers", "1")
    one_error(rc, err, "notes.txt", "splits/my_lt_list.txt", "not part of a prepared store")
    assert snapshot(out) == before
    # a manifest that is not one of ours does not make a store either
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.json").write_text('{"name": "someone else"}')
    (other / "data.npy").write_bytes(b"precious")
    rc, err = run(capsys, "data", "prepare", "ucla", "--raw", raw, "--out", other, "--force")
    one_error(rc, err, "not a prepared store")
    assert (other / "data.npy").read_bytes() == b"precious"
    # nothing foreign left: --force replaces the store
    (out / "notes.txt").unlink()
    (out / "splits" / "my_lt_list.txt").unlink()
    rc, err = run(capsys, "data", "prepare", "ucla", "--raw", raw, "--out", out, "--force", "--workers", "1")
    assert rc == 0, err
    assert open_store(out).manifest["dataset"] == "ucla" and siblings(out) == []


def test_store_writer_never_replaces_foreign_folders(tmp_path):
    out = tmp_path / "out"
    before = user_folder(out)
    with pytest.raises(BenchmarkError, match="not a prepared store"):
        toy_store(out)
    assert snapshot(out) == before and siblings(out) == []
    # a user file appearing while the store is built is found before publishing
    toy_store(tmp_path / "s")
    with pytest.raises(BenchmarkError, match="notes.txt"):
        with StoreWriter(tmp_path / "s", 1, T=1, V=25, M=2, dataset="toy", num_classes=1,
                         layout="ntu25") as w:
            w.names[0], w.labels[0] = "S001C001P001R001A001", 0
            (tmp_path / "s" / "notes.txt").write_text("late")
    assert (tmp_path / "s" / "notes.txt").read_text() == "late" and len(open_store(tmp_path / "s")) == 6
    check_replaceable(tmp_path / "missing")  # nothing there, nothing to lose
    (tmp_path / "empty").mkdir()
    check_replaceable(tmp_path / "empty")


def test_prepare_out_is_a_file(tmp_path, capsys):
    out = tmp_path / "out"
    out.write_text("keep me")
    for force in ([], ["--force"]):
        rc, err = run(capsys, "data", "prepare", "ucla", "--raw", tmp_path, "--out", out, *force)
        one_error(rc, err, str(out), "is a file")
    assert out.read_text() == "keep me" and siblings(out) == []
    rc, err = run(capsys, "data", "prepare", "ucla", "--raw", ucla_raw(tmp_path / "raw"),
                  "--out", out / "store", "--workers", "1")
    one_error(rc, err, f"{out} is a file")
    assert "NW-UCLA json" not in err  # refused before reading anything


# ---------------------------------------------------------------- 2. degenerate splits

def _train_list(path: Path, classes=range(6), per_class=12) -> Path:
    names = [f"S001C001P{p:03d}R001A{c + 1:03d}" for c in classes for p in range(1, per_class + 1)]
    path.write_text("\n".join(names))
    return path


@pytest.mark.parametrize("args, needle", [
    (["--imbalance", "inf", "--n-max", "10"], "finite number >= 1, got inf"),
    (["--imbalance", "nan", "--n-max", "10"], "got nan"),
    (["--imbalance", "0.5", "--n-max", "10"], ">= 1, got 0.5"),
    (["--imbalance", "1000", "--n-max", "50"], "leaves 3 of 6 classes with 0 clips"),
    (["--imbalance", "1000", "--n-max", "50", "--profile", "step"], "int(50 / 1000) = 0"),
    (["--imbalance", "10", "--n-max", "10", "--num-classes", "60"], "classes 0..5 only, but the number of classes is 60"),
], ids=["inf", "nan", "below-1", "empty-exp", "empty-step", "num-classes"])
def test_splits_refuses_degenerate_parameters(tmp_path, capsys, args, needle):
    train, out = _train_list(tmp_path / "train.txt"), tmp_path / "lt.txt"
    if "--num-classes" not in args:
        args = [*args, "--num-classes", "6"]
    rc, err = run(capsys, "data", "splits", "--train-list", train, "--out", out, *args)
    one_error(rc, err, needle)
    assert list(tmp_path.iterdir()) == [train]


def test_splits_refuses_a_class_without_clips(tmp_path, capsys):
    train, out = _train_list(tmp_path / "train.txt", classes=[0, 1, 2, 4, 5]), tmp_path / "lt.txt"
    rc, err = run(capsys, "data", "splits", "--train-list", train, "--num-classes", 6,
                  "--imbalance", 2, "--n-max", 10, "--out", out)
    one_error(rc, err, str(train), "1 of 6 classes have no clip", "class 3")
    # the NW-UCLA case: a 10-class list with --num-classes 60
    ucla = tmp_path / "ucla_train.txt"
    ucla.write_text("\n".join(f"a{a:02d}_s01_e00_v01" for a in _UCLA_LABEL))
    rc, err = run(capsys, "data", "splits", "--train-list", ucla, "--num-classes", 60,
                  "--imbalance", 10, "--n-max", 100, "--out", out)
    one_error(rc, err, "classes 0..9 only", "60")
    assert not out.exists()


def test_load_lt_reaches_the_split_checks(tmp_path):
    from benchmark.data.lt import load_lt

    toy_store(tmp_path / "s")
    with pytest.raises(BenchmarkError, match="0 clips"):
        load_lt(tmp_path / "s", "xsub", imbalance=1000, n_max=50)
    with pytest.raises(BenchmarkError, match="finite"):
        load_lt(tmp_path / "s", "xsub", imbalance=float("inf"), n_max=50)


# ---------------------------------------------------------------- 3. write failures are one line

def test_splits_out_is_a_folder_or_under_a_file(tmp_path, capsys):
    train = _train_list(tmp_path / "train.txt")
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    for out, needle in [(tmp_path / "dir", "is a folder"), (tmp_path / "file" / "lt.txt", "is a file")]:
        rc, err = run(capsys, "data", "splits", "--train-list", train, "--num-classes", 6,
                      "--imbalance", 2, "--n-max", 10, "--out", out)
        one_error(rc, err, needle)
    assert (tmp_path / "file").read_text() == "x" and not any((tmp_path / "dir").iterdir())


def _read_only(monkeypatch):
    """Every new file or folder in any folder fails as in a read-only one (root ignores chmod)."""
    def refuse(*args, dir=None, **kw):
        raise PermissionError(errno.EACCES, "Permission denied", str(dir))
    monkeypatch.setattr(_io.tempfile, "mkstemp", refuse)
    monkeypatch.setattr(_io.tempfile, "mkdtemp", refuse)


def test_read_only_output_folder_is_one_line(tmp_path, capsys, monkeypatch):
    train, raw = _train_list(tmp_path / "train.txt"), ucla_raw(tmp_path / "raw")
    _read_only(monkeypatch)
    rc, err = run(capsys, "data", "splits", "--train-list", train, "--num-classes", 6,
                  "--imbalance", 2, "--n-max", 10, "--out", tmp_path / "lt.txt")
    one_error(rc, err, str(tmp_path / "lt.txt"), "cannot write (Permission denied)")
    rc, err = run(capsys, "data", "prepare", "ucla", "--raw", raw, "--out", tmp_path / "s", "--workers", "1")
    one_error(rc, err, str(tmp_path / "s"), "cannot write (Permission denied)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw", "train.txt"]


def test_atomic_path_errors_name_the_target(tmp_path):
    with pytest.raises(BenchmarkError, match="not enough disk space"):
        with _io.atomic_path(tmp_path / "a.txt") as tmp:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    (tmp_path / "d").mkdir()
    with pytest.raises(BenchmarkError, match=f"^{tmp_path / 'd'}: cannot write"):
        _io.write_text(tmp_path / "d", "x")
    with pytest.raises(BenchmarkError, match="while writing"):  # another file's error names it
        with _io.atomic_path(tmp_path / "b.txt"):
            open(tmp_path / "nope" / "in.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


@pytest.mark.parametrize("damage, needle", [
    (lambda d: (d / "manifest.json").write_text("[1, 2]"), "manifest.json: not a store manifest"),
    (lambda d: (d / "manifest.json").write_text(json.dumps(
        {k: v for k, v in json.loads((d / "manifest.json").read_text()).items() if k != "dataset"})),
     "'dataset' is missing"),
    (lambda d: (d / "names.txt").write_bytes(b"\xff\xfe\n" * 6), "names.txt: unreadable name list"),
    (lambda d: np.save(d / "labels.npy", np.arange(6) * 10), "labels.npy: expected integer labels in 0..2"),
    (lambda d: np.save(d / "labels.npy", np.zeros(6) + 0.5), "labels.npy: expected integer labels"),
    (lambda d: np.save(d / "lengths.npy", np.full(6, 99)), "lengths.npy: expected integer clip lengths in 0..4"),
], ids=["manifest-list", "manifest-key", "names", "labels-range", "labels-float", "lengths"])
def test_data_info_on_a_damaged_store_is_one_line(tmp_path, capsys, damage, needle):
    toy_store(tmp_path / "s")
    damage(tmp_path / "s")
    one_error(*run(capsys, "data", "info", tmp_path / "s"), needle)


def test_corrupt_ntu_work_chunks_heal_themselves(tmp_path, caplog):
    raw = ntu_raw(tmp_path)
    fresh = open_store(prepare_ntu([raw], tmp_path / "fresh", "ntu60", no_missing_list=True,
                                   chunk_size=2, progress=False))
    out, work = tmp_path / "store", tmp_path / "store.partial"
    chunks = run_chunks(NTU_NAMES, [raw / f"{n}.skeleton" for n in NTU_NAMES], work, chunk_size=2,
                        progress=False)
    data = chunks[0].read_bytes()
    chunks[0].write_bytes(data[:len(data) // 2])           # truncated by a crash / a full disk
    data = bytearray(chunks[1].read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = b"\xff" * 64  # damaged in the middle (CRC)
    chunks[1].write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="benchmark.data.ntu_raw"):
        prepare_ntu([raw], out, "ntu60", no_missing_list=True, chunk_size=2, progress=False)
    assert caplog.text.count("unusable work file") == 2 and "chunk_00000.npz" in caplog.text
    s = open_store(out)
    np.testing.assert_array_equal(s.data, fresh.data)
    assert s.manifest["sources"]["inputs_sha256"] == fresh.manifest["sources"]["inputs_sha256"]
    assert not work.exists()


# ---------------------------------------------------------------- 4. full disk

def test_full_disk_fails_at_the_start_with_one_line(tmp_path, capsys, monkeypatch):
    raw, out = ucla_raw(tmp_path / "raw"), tmp_path / "s"
    calls = []

    def full(fd, offset, length):
        calls.append(length)
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "posix_fallocate", full, raising=False)
    rc, err = run(capsys, "data", "prepare", "ucla", "--raw", raw, "--out", out, "--workers", "1")
    one_error(rc, err, f"{out}: not enough disk space (needs", "free)")
    assert calls and not out.exists() and siblings(out) == []

    def unsupported(fd, offset, length):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")
    monkeypatch.setattr(os, "posix_fallocate", unsupported, raising=False)
    rc, err = run(capsys, "data", "prepare", "ucla", "--raw", raw, "--out", out, "--workers", "1")
    assert rc == 0, err  # no reservation where the filesystem cannot: carry on as before
    assert len(open_store(out)) == 4


@pytest.mark.skipif(not hasattr(os, "posix_fallocate"), reason="no posix_fallocate here")
def test_store_space_is_reserved(tmp_path):
    toy_store(tmp_path / "s")
    st = os.stat(tmp_path / "s" / "data.npy")
    assert st.st_blocks * 512 >= st.st_size - 4096  # allocated, not a sparse file


# ---------------------------------------------------------------- 5. kill -9

def _spawn(tmp_path: Path, code: str) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(code)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(cond, timeout: float = 60.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


_POOL_CHILD = '''
import os, sys, time
from pathlib import Path

def slow(*args):
    Path(f"worker-{os.getpid()}").write_text("")
    time.sleep(120)

if __name__ == "__main__":
    mode = os.environ["POOL"]
    if mode == "ucla":
        from benchmark.data import ucla
        ucla.read_clip = slow  # the pool maps this module attribute
        ucla.read_clips([Path("a"), Path("b")], workers=2)
    else:
        from benchmark.data.ntu_raw import _pool
        with _pool(2) as pool:
            futures = [pool.submit(slow, i) for i in range(2)]
            [f.result() for f in futures]
'''


@pytest.mark.skipif(not LINUX, reason="workers die with their parent on Linux only (prctl)")
@pytest.mark.parametrize("mode", ["ucla", "ntu"])
def test_pool_workers_die_with_a_killed_parent(tmp_path, monkeypatch, mode):
    monkeypatch.setenv("POOL", mode)
    proc = _spawn(tmp_path, _POOL_CHILD)
    try:
        assert _wait_for(lambda: len(list(tmp_path.glob("worker-*"))) == 2), proc.stderr.read()
        workers = [int(p.name.split("-")[1]) for p in tmp_path.glob("worker-*")]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert _wait_for(lambda: not any(map(_running, workers)), 10), workers
    finally:
        proc.kill()
        for p in tmp_path.glob("worker-*"):
            with contextlib.suppress(OSError):
                os.kill(int(p.name.split("-")[1]), signal.SIGKILL)


@pytest.mark.skipif(not LINUX, reason="Linux only (prctl)")
def test_pool_initializer_catches_an_already_dead_parent():
    code = "from benchmark._io import die_with_parent; die_with_parent(1); print('alive')"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 1 and "alive" not in proc.stdout


_HOLDER = '''
import sys, time
from benchmark import _io
with _io.atomic_dir(sys.argv[1]) as tmp:
    (tmp / "data.npy").write_bytes(b"x" * 100000)
    print(tmp, flush=True)
    time.sleep(120)
'''


def _holder(tmp_path: Path, target: Path) -> tuple[subprocess.Popen, Path]:
    script = tmp_path / "holder.py"
    script.write_text(_HOLDER)
    proc = subprocess.Popen([sys.executable, str(script), str(target)], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True)
    return proc, Path(proc.stdout.readline().strip())


@pytest.mark.skipif(_io.fcntl is None, reason="needs POSIX file locks")
def test_next_run_removes_the_temp_folder_of_a_killed_run(tmp_path, caplog):
    target = tmp_path / "work" / "store"
    dead, dead_tmp = _holder(tmp_path, target)
    live, live_tmp = _holder(tmp_path, target)
    try:
        os.kill(dead.pid, signal.SIGKILL)
        dead.wait()
        assert dead_tmp.is_dir() and dead_tmp.name.startswith(".store.tmp-")
        # never touched: not our pattern, or no lock file to prove it is ours
        for name in (".store.tmp-abcdefgh", ".store.notes", ".storeX.tmp-abcdefgh"):
            (target.parent / name).mkdir()
        with caplog.at_level(logging.INFO, logger="benchmark._io"):
            with _io.atomic_dir(target) as tmp:
                (tmp / "x").write_text("new")
        assert "removed the temp folder of an interrupted run" in caplog.text
        assert not dead_tmp.exists() and live_tmp.is_dir()  # a running build is left alone
        assert (target / "x").read_text() == "new" and not (target / ".atomic_dir.lock").exists()
        assert sorted(p.name for p in target.parent.iterdir()) == sorted(
            ["store", live_tmp.name, ".store.tmp-abcdefgh", ".store.notes", ".storeX.tmp-abcdefgh"])
    finally:
        live.kill()
        live.wait()
        dead.kill()


def test_interrupted_replace_is_cleaned_up_or_put_back(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])  # a pid that is no longer running
    gone.wait()
    target = tmp_path / "store"
    old = tmp_path / f".store.old-{gone.pid}"
    # killed between its two renames: the previous store was only moved aside -> put back
    old.mkdir()
    (old / "manifest.json").write_text("previous")
    _io.remove_stale(target)
    assert (target / "manifest.json").read_text() == "previous" and not old.exists()
    # killed while deleting the previous store: the new one is in place -> the rest goes
    old.mkdir()
    (old / "labels.npy").write_text("half deleted")
    _io.remove_stale(target)
    assert not old.exists() and (target / "manifest.json").read_text() == "previous"
    # a replace in progress (its process runs) is left alone
    busy = tmp_path / f".store.old-{os.getppid()}"
    busy.mkdir()
    _io.remove_stale(target)
    assert busy.is_dir()


# ---------------------------------------------------------------- 6. NaN / inf never reach a store

@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e39])
def test_ucla_refuses_non_finite_coordinates(tmp_path, capsys, value):
    raw = ucla_raw(tmp_path / "raw", bad={"a12_s02_e01_v02": value})
    rc, err = run(capsys, "data", "prepare", "ucla", "--raw", raw, "--out", tmp_path / "s", "--workers", "1")
    one_error(rc, err, "a12_s02_e01_v02.json", "NaN or infinite")
    assert not (tmp_path / "s").exists()


def test_ntu_npz_refuses_non_finite_rows_by_sample_name(tmp_path, capsys):
    from test_store import _fake_ntu60

    npz, stats, train, test, *_ = _fake_ntu60(tmp_path)
    d = dict(np.load(npz, allow_pickle=False))
    d["x_train"][2, 5, 9] = np.inf
    np.savez(npz, **d)
    rc, err = run(capsys, "data", "prepare", "ntu-npz", "--raw", npz, "--stats", stats,
                  "--out", tmp_path / "s")
    one_error(rc, err, "x_train row 2", f"sample {train[2]}", "NaN or inf")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("x, needle", [
    ({(3, 0): "nan"}, "NaN or infinite joint coordinate in frame 4"),
    ({(3, 0): "-inf"}, "NaN or infinite joint coordinate"),
    ({(3, 0): "1e39"}, "NaN or infinite joint coordinate"),  # beyond float32
    # finite in float32, but not once the origin (frame 1, joint 2) is subtracted
    ({(0, 1): "-3.3e38", (3, 0): "3.3e38"}, "after translation"),
], ids=["nan", "inf", "overflow", "translation-overflow"])
def test_ntu_raw_refuses_non_finite_coordinates(tmp_path, capsys, x, needle):
    raw = ntu_raw(tmp_path)
    bad = raw / f"{NTU_NAMES[2]}.skeleton"
    bad.write_text(skeleton(seed=2, x=x))
    rc, err = run(capsys, "data", "prepare", "ntu60", "--raw", raw, "--out", tmp_path / "s",
                  "--no-missing-list", "--workers", "1")
    one_error(rc, err, str(bad), needle)
    assert not (tmp_path / "s").exists()


def test_synth_refuses_non_finite_parameters(tmp_path):
    from benchmark.data.synth import load_synth

    with pytest.raises(BenchmarkError, match="noise must be a finite number"):
        load_synth(tmp_path, noise=float("nan"))
    assert not any(tmp_path.iterdir())
