"""Prepared store: layout, atomic publication, name -> row lookup, npz import."""
import json
import zipfile

import numpy as np
import pytest

from benchmark.data.store import StoreWriter, open_store, read_name_list
from benchmark.errors import BenchmarkError
from conftest import assert_one_line_error, run_cli


def _write(out, n=4, T=5, fail=False):
    with StoreWriter(out, n, T=T, V=25, M=2, dataset="toy", num_classes=3, layout="ntu25",
                     source={"x": 1}) as w:
        for i in range(n):
            w.data[i] = i
            w.names[i] = f"S001C001P001R{i + 1:03d}A00{i % 3 + 1}"
            w.labels[i] = i % 3
            w.lengths[i] = T
        w.add_split("xsub", "train", w.names[:2])
        if fail:
            raise RuntimeError("boom")


def test_roundtrip(tmp_path):
    _write(tmp_path / "s")
    s = open_store(tmp_path / "s")
    assert isinstance(s.data, np.memmap) and s.data.shape == (4, 3, 5, 25, 2)
    assert s.data.dtype == np.float32 and float(s.data[3].max()) == 3.0
    assert s.labels.tolist() == [0, 1, 2, 0] and s.num_classes == 3 and s.layout == "ntu25"
    assert s.manifest["class_counts"] == [2, 1, 1] and s.manifest["source"] == {"x": 1}
    assert s.split_names("xsub", "train") == s.names[:2]
    assert s.indices([s.names[2], s.names[0]]).tolist() == [2, 0]
    with pytest.raises(BenchmarkError, match=r"lt\.txt: 1 of 2 samples are not in the store"):
        s.indices([s.names[0], "S009C001P001R001A001"], source="lt.txt")
    with pytest.raises(BenchmarkError, match="no such split"):
        s.split_names("xview", "train")


def test_failed_write_leaves_nothing_and_keeps_old(tmp_path):
    out = tmp_path / "s"
    with pytest.raises(RuntimeError):
        _write(out, fail=True)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    _write(out, n=4)
    with pytest.raises(RuntimeError):
        _write(out, n=6, fail=True)
    assert len(open_store(out)) == 4  # the previous store survives a failed rewrite
    _write(out, n=6)
    assert len(open_store(out)) == 6 and sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_open_rejects_incomplete_or_inconsistent(tmp_path):
    _write(tmp_path / "s")
    (tmp_path / "s" / "lengths.npy").unlink()
    with pytest.raises(BenchmarkError, match="lengths.npy: missing"):
        open_store(tmp_path / "s")
    _write(tmp_path / "t")
    (tmp_path / "t" / "names.txt").write_text("a\nb\n")
    with pytest.raises(BenchmarkError, match="data.npy"):
        open_store(tmp_path / "t")


def test_name_lists(tmp_path):
    p = tmp_path / "l.txt"
    p.write_text("a\nb")  # no trailing newline (BRL format)
    assert read_name_list(p) == ["a", "b"]
    p.write_text("a\na\n")
    with pytest.raises(BenchmarkError, match="duplicate"):
        read_name_list(p)
    p.write_text("\n")
    with pytest.raises(BenchmarkError, match="empty"):
        read_name_list(p)


# ------------------------------------------------------------------------------ npz import
def _fake_ntu60(tmp_path):
    """A tiny CTR-GCN-style NTU60_CS.npz and its statistics folder."""
    names = sorted(f"S001C00{c}P{p:03d}R001A{a:03d}" for c in (1, 2, 3) for p in (1, 3) for a in (1, 2, 60))
    stats = tmp_path / "statistics"
    stats.mkdir()
    (stats / "skes_available_name.txt").write_text("\n".join(names) + "\n")
    from benchmark.data.protocols import protocol_split

    train, test = protocol_split("ntu60", "xsub", names)
    rng = np.random.default_rng(0)

    def part(ns):
        x = np.zeros((len(ns), 300, 150), np.float32)
        for i, n in enumerate(ns):
            L = 10 + 7 * i
            x[i, :L, :75] = rng.normal(size=(L, 75))  # actor 1 only, NTU60 style
        y = np.zeros((len(ns), 60))
        y[np.arange(len(ns)), [int(n[-3:]) - 1 for n in ns]] = 1
        return x, y

    xtr, ytr = part(train)
    xte, yte = part(test)
    npz = tmp_path / "NTU60_CS.npz"
    np.savez(npz, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    return npz, stats, train, test, xtr, xte


def test_npz_import(tmp_path):
    npz, stats, train, test, xtr, xte = _fake_ntu60(tmp_path)
    out = tmp_path / "store"
    proc = run_cli("data", "prepare", "ntu-npz", "--raw", npz, "--stats", stats, "--out", out)
    assert proc.returncode == 0, proc.stderr
    s = open_store(out)
    assert s.names == sorted(train + test) and s.manifest["dataset"] == "ntu60"
    assert s.split_names("xsub", "train") == train and s.split_names("xsub", "test") == test
    for part_names, x in ((train, xtr), (test, xte)):
        rows = s.indices(part_names)
        # the feeder's reshape: (N,300,150) -> (N,300,2,25,3) -> (N,3,300,25,2)
        np.testing.assert_array_equal(s.data[rows], x.reshape(-1, 300, 2, 25, 3).transpose(0, 4, 1, 3, 2))
        assert s.lengths[rows].tolist() == [10 + 7 * i for i in range(len(part_names))]
        assert s.labels[rows].tolist() == [int(n[-3:]) - 1 for n in part_names]


def test_npz_bad_inputs(tmp_path):
    npz, stats, *_ = _fake_ntu60(tmp_path)
    out = tmp_path / "store"
    assert_one_line_error(run_cli("data", "prepare", "ntu-npz", "--raw", npz, "--out", out), "--stats")
    junk = tmp_path / "NTU60_CV.npz"
    junk.write_bytes(b"not a zip")
    assert_one_line_error(run_cli("data", "prepare", "ntu-npz", "--raw", junk, "--stats", stats,
                                  "--out", out), "NTU60_CV.npz", "not an .npz")
    # rows that do not match the protocol's sample count (wrong statistics / protocol)
    proc = run_cli("data", "prepare", "ntu-npz", "--raw", npz, "--stats", stats, "--protocol", "xview", "--out", out)
    assert_one_line_error(proc, "NTU60_CS.npz", "rows")
    # a pickled object array is refused, never unpickled
    evil = tmp_path / "evil_CS.npz"
    with zipfile.ZipFile(evil, "w") as zf:
        with zf.open("y_train.npy", "w") as f:
            np.save(f, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        with zf.open("y_test.npy", "w") as f:
            np.save(f, np.zeros((1, 60)))
    assert_one_line_error(run_cli("data", "prepare", "ntu-npz", "--raw", evil, "--stats", stats,
                                  "--out", out), "object arrays")
    # NaN in the data
    d = dict(np.load(npz, allow_pickle=False))
    d["x_test"][1, 3, 7] = np.nan
    nan = tmp_path / "nan_CS.npz"
    np.savez(nan, **d)
    assert_one_line_error(run_cli("data", "prepare", "ntu-npz", "--raw", nan, "--stats", stats,
                                  "--out", out), "x_test row 1", "NaN")
    assert not out.exists() and not any(p.name.startswith(".store") for p in tmp_path.iterdir())


def test_prepare_refuses_to_clobber(tmp_path):
    npz, stats, *_ = _fake_ntu60(tmp_path)
    out = tmp_path / "store"
    assert run_cli("data", "prepare", "ntu-npz", "--raw", npz, "--stats", stats, "--out", out).returncode == 0
    before = (out / "manifest.json").read_text()
    proc = run_cli("data", "prepare", "ntu-npz", "--raw", npz, "--stats", stats, "--out", out)
    assert_one_line_error(proc, "--force")
    assert (out / "manifest.json").read_text() == before
    assert run_cli("data", "prepare", "ntu-npz", "--raw", npz, "--stats", stats, "--out", out,
                   "--force").returncode == 0
    assert json.loads((out / "manifest.json").read_text())["shape"][0] == 18


def test_written_files_have_normal_permissions(tmp_path):
    import os
    import stat

    from benchmark import _io

    _io.write_text(tmp_path / "a.txt", "x")
    _write(tmp_path / "s")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode) == 0o666 & ~umask
    assert stat.S_IMODE(os.stat(tmp_path / "s").st_mode) == 0o777 & ~umask
