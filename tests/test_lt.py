"""load_lt: protocol + long-tailed training subset over a store, as runs use it."""
import numpy as np
import pytest

from benchmark.data.lt import load_lt
from benchmark.data.protocols import protocol_split
from benchmark.data.store import StoreWriter
from benchmark.errors import BenchmarkError
from conftest import shared_path


@pytest.fixture
def toy_store(tmp_path):
    # 4 classes; train performers 1, 2 (xsub), test performer 3; class c has 12 - 2c train clips
    names = []
    for c in range(4):
        names += [f"S001C001P{1 + i % 2:03d}R{i + 1:03d}A{c + 1:03d}" for i in range(12 - 2 * c)]
        names += [f"S001C001P003R{i + 1:03d}A{c + 1:03d}" for i in range(3)]
    names.sort()
    out = tmp_path / "store"
    with StoreWriter(out, len(names), T=4, V=25, M=2, dataset="ntu60", num_classes=4, layout="ntu25") as w:
        w.data[:] = 1
        for i, n in enumerate(names):
            w.names[i], w.labels[i], w.lengths[i] = n, int(n[-3:]) - 1, 4
        train, test = protocol_split("ntu60", "xsub", names)
        w.add_split("xsub", "train", train)
        w.add_split("xsub", "test", test)
    return out


def test_full_and_lt(toy_store, tmp_path):
    full = load_lt(toy_store)  # the store's only protocol
    assert full.protocol == "xsub" and full.class_counts.tolist() == [12, 10, 8, 6]
    assert len(full.test_idx) == 12
    assert np.bincount(full.test_labels).tolist() == [3, 3, 3, 3]
    lt = load_lt(toy_store, "xsub", imbalance=4, n_max=8)
    assert lt.class_counts.tolist() == [8, 5, 3, 2]  # int(8 * 4 ** (-c / 3))
    assert set(lt.train_idx) <= set(full.train_idx) and len(set(lt.train_idx)) == 18
    assert (lt.test_idx == full.test_idx).all()  # the test set is unchanged
    assert lt.groups == {"many": [], "medium": [], "few": [0, 1, 2, 3]}
    assert lt.split["recipe"]["imbalance"] == 4 and len(lt.split["sha256"]) == 64
    again = load_lt(toy_store, "xsub", imbalance=4, n_max=8)
    assert (again.train_idx == lt.train_idx).all()  # deterministic for a seed


def test_split_list_checked_against_training_part(toy_store, tmp_path):
    full = load_lt(toy_store)
    ok = tmp_path / "ok.txt"
    ok.write_text("\n".join(full.store.names[i] for i in full.train_idx[:5]))
    assert len(load_lt(toy_store, split_list=ok).train_idx) == 5
    leak = tmp_path / "leak.txt"
    leak.write_text(full.store.names[full.test_idx[0]])
    with pytest.raises(BenchmarkError, match=r"leak\.txt: 1 samples are not in the xsub training part \(in the store\)"):
        load_lt(toy_store, split_list=leak)
    ghost = tmp_path / "ghost.txt"
    ghost.write_text("S009C001P001R001A001")
    with pytest.raises(BenchmarkError, match=r"ghost\.txt: .*not in the store"):
        load_lt(toy_store, split_list=ghost)
    with pytest.raises(BenchmarkError, match="no such split"):
        load_lt(toy_store, "xview")


def test_ucla_lt(tmp_path):
    """NW-UCLA-LT: IF 10, n_max 100 over the real train views (some classes have < 100 clips)."""
    from benchmark.data.ucla import build_ucla_store

    raw = shared_path("nw-ucla", "all_sqe")
    build_ucla_store(raw, tmp_path / "ucla", workers=1)
    d = load_lt(tmp_path / "ucla", "ucla", imbalance=10)
    target = [int(100 * 0.1 ** (c / 9)) for c in range(10)]
    assert target == [100, 77, 59, 46, 35, 27, 21, 16, 12, 10]
    full = np.bincount(load_lt(tmp_path / "ucla").train_labels, minlength=10)
    assert d.class_counts.tolist() == np.minimum(target, full).tolist()
    assert len(d.test_idx) == 464


def test_cli_info_split_errors(toy_store, tmp_path):
    from conftest import assert_one_line_error, run_cli

    proc = run_cli("data", "info", toy_store, "--imbalance", 4, "--n-max", 8)
    assert proc.returncode == 0, proc.stderr
    assert "xsub train: 18 clips (8 -> 2 per class), test: 12 clips" in proc.stdout
    ghost = tmp_path / "ghost.txt"
    ghost.write_text("S009C001P001R001A001\n")
    assert_one_line_error(run_cli("data", "info", toy_store, "--split-list", ghost), "ghost.txt", "not in the store")
    assert_one_line_error(run_cli("data", "info", toy_store, "--imbalance", 0.5, "--n-max", 8), "imbalance")


def test_raw_mean_clip(toy_store):
    from benchmark.data.lt import raw_mean_clip
    from benchmark.data.store import open_store

    s = open_store(toy_store)
    rows = np.array([3, 0, 5])
    got = raw_mean_clip(s, rows, frames=3, chunk=2)
    assert got.shape == (3, 3, 25, 2) and got.dtype == np.float32
    np.testing.assert_allclose(got, np.asarray(s.data[[0, 3, 5], :, :3]).mean(0), rtol=1e-6)
