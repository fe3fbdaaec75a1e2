"""NW-UCLA-LT is BRL's list (issue 14 item 1).

BRL (``firework8/BRL``, ``data/ucla_data.py::get_long_tailed_data``) builds NW-UCLA-LT from the
official CTR-GCN feeder's hard-coded train list, in THAT order: per label, the clips in list
order, ``np.random.seed(0)`` once, one ``np.random.shuffle`` per class in label order, the
first int(100 * 0.1 ** (c / 9)) kept. The store must write its split lists in that order so
that the documented ``data splits`` command reproduces the list. The real-data test skips
without ``../shared/data/nw-ucla``.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from benchmark.cli import main as cli_main
from benchmark.data import splits
from benchmark.data.names import parse_ucla
from benchmark.data.store import open_store
from benchmark.data.ucla import (FEEDER_ORDER_FILE, build_ucla_store, feeder_order_names,
                                 in_feeder_order)
from conftest import REPO, shared_path

# sha256 of benchmark/data/ucla_ctrgcn_order.txt (the official lists' names, one per line)
ORDER_SHA256 = "5dc17188531f7af11bb833c817927a4d21d346c160e0a7daad085998bc2a031e"
# sha256 of the NW-UCLA-LT list BRL's recipe gives (403 clips, names joined by "\n")
BRL_UCLA_LT_SHA256 = "cf33b354a77e8f8493889ec2d207e25a2561a8bd002ff164b0f7bac058bf400f"


def brl_get_long_tailed_data(data_dict: list[dict]) -> list[str]:
    """BRL's ``get_long_tailed_data``, restated from its code (not through our splits module):
    entries {file_name, label 1..10} in feeder order -> the kept names, class after class."""
    class_name: list[list[str]] = [[] for _ in range(10)]
    for info in data_dict:
        class_name[info["label"] - 1].append(info["file_name"])
    per_cls = [int(100 * (0.1 ** (c / (10 - 1.0)))) for c in range(10)]
    state = np.random.get_state()
    np.random.seed(0)
    try:
        new_name = []
        for c in range(10):
            idx = class_name[c]
            np.random.shuffle(idx)
            new_name.extend(idx[:per_cls[c]] if len(idx) > per_cls[c] else idx)
    finally:
        np.random.set_state(state)
    return new_name


def test_order_file_is_names_only_train_then_val():
    path = REPO / "benchmark" / "data" / FEEDER_ORDER_FILE
    assert hashlib.sha256(path.read_bytes()).hexdigest() == ORDER_SHA256
    names = feeder_order_names()
    assert len(names) == len(set(names)) == 1484
    views = [parse_ucla(n).view for n in names]
    assert set(views[:1020]) == {1, 2} and set(views[1020:]) == {3}
    assert names[:1020] != sorted(names[:1020])  # the order is not the names' own order


def test_order_file_equals_the_official_feeder_lists():
    official = json.loads(shared_path("nw-ucla", "ctrgcn_train_val_split.json").read_text())
    assert feeder_order_names() == [e["file_name"] for e in official["train"] + official["val"]]


def test_in_feeder_order_puts_unlisted_names_last(caplog):
    listed = feeder_order_names()
    pick = [listed[40], listed[3], listed[700], listed[12]]
    unlisted = ["a01_s01_e09_v01", "a01_s01_e08_v01"]
    assert not set(unlisted) & set(listed)
    got = in_feeder_order(sorted(pick + unlisted))
    assert got == [listed[3], listed[12], listed[40], listed[700], *sorted(unlisted)]
    assert "2 clips are not in CTR-GCN's feeder lists" in caplog.text


def _doc(name: str, length: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    label = [1, 2, 3, 4, 5, 6, 8, 9, 11, 12].index(int(name[1:3])) + 1
    return {"file_name": name, "label": label,
            "skeletons": (rng.normal(size=(length, 20, 3)) + [0, 0, 3]).round(6).tolist()}


def test_store_writes_split_lists_in_feeder_order(tmp_path):
    listed = feeder_order_names()
    train = [listed[i] for i in (500, 7, 260, 1019, 0)]  # feeder order 0, 7, 260, 500, 1019
    test = [listed[i] for i in (1400, 1020, 1100)]
    folder = tmp_path / "all_sqe"
    folder.mkdir()
    for i, name in enumerate(train + test + ["a02_s01_e09_v02"]):
        (folder / f"{name}.json").write_text(json.dumps(_doc(name, 3 + i, i)))
    build_ucla_store(folder, tmp_path / "store", workers=1)
    s = open_store(tmp_path / "store")
    assert s.names == sorted(s.names)  # rows stay sorted by name
    assert s.split_names("ucla", "train") == [listed[i] for i in (0, 7, 260, 500, 1019)] + [
        "a02_s01_e09_v02"]
    assert s.split_names("ucla", "test") == [listed[i] for i in (1020, 1100, 1400)]


def test_build_split_keeps_train_list_order_per_class():
    """BRL shuffles each class's list in train-list order: another order of the same names
    gives another list, and the result is the recipe applied to that order."""
    rng = np.random.default_rng(5)
    names = [f"a{a:02d}_s{s:02d}_e{e:02d}_v01" for a in (1, 2, 3) for s in range(1, 9)
             for e in range(3)]
    order = [names[i] for i in rng.permutation(len(names))]
    data = [{"file_name": n, "label": parse_ucla(n).label + 1} for n in order]
    counts = splits.exp_counts(3, 4, 20)
    got, _ = splits.build_split(order, 3, 4, 20, seed=0)
    state = np.random.get_state()
    np.random.seed(0)
    expected = []
    for c, k in enumerate(counts):
        idx = [d["file_name"] for d in data if d["label"] - 1 == c]
        np.random.shuffle(idx)
        expected += idx[:k]
    np.random.set_state(state)
    assert got == expected
    assert splits.build_split(sorted(order), 3, 4, 20, seed=0)[0] != got


@pytest.fixture(scope="module")
def real_store(tmp_path_factory):
    raw = shared_path("nw-ucla", "all_sqe")
    out = tmp_path_factory.mktemp("ucla_lt") / "store"
    build_ucla_store(raw, out, workers=2)
    return out


def test_documented_command_gives_brls_nw_ucla_lt(real_store, tmp_path):
    official = json.loads(shared_path("nw-ucla", "ctrgcn_train_val_split.json").read_text())
    s = open_store(real_store)
    assert s.split_names("ucla", "train") == [e["file_name"] for e in official["train"]]
    assert s.split_names("ucla", "test") == [e["file_name"] for e in official["val"]]
    out = tmp_path / "NW_UCLA_exp_10.txt"
    train_list = real_store / "splits" / "ucla_train.txt"
    assert cli_main(["data", "splits", "--train-list", str(train_list),
                     "--num-classes", "10", "--imbalance", "10", "--n-max", "100", "--seed", "0",
                     "--out", str(out)]) == 0
    ours = out.read_text().split("\n")
    brl = brl_get_long_tailed_data(official["train"])
    assert len(brl) == 403 and len(set(ours) & set(brl)) == 403
    assert ours == brl  # same clips, same order: the same file byte for byte
    assert hashlib.sha256(out.read_bytes()).hexdigest() == BRL_UCLA_LT_SHA256
    assert np.bincount([parse_ucla(n).label for n in ours]).tolist() == [
        100, 77, 59, 46, 35, 27, 21, 16, 12, 10]
