"""Long-tailed split builder: count profiles, the BRL recipe, published-list import, CLI."""
import hashlib
import json
from collections import Counter

import numpy as np
import pytest

from benchmark.data import splits
from benchmark.errors import BenchmarkError
from conftest import assert_one_line_error, run_cli, shared_path

# BRL's NTU60 IF100 counts (``data/NTU60_LT/NTU60_xsub_exp_100.txt``), c = 0..59, n_max 600
NTU60_IF100 = [600, 554, 513, 474, 439, 406, 375, 347, 321, 297, 274, 254, 235, 217, 201, 186, 172,
               159, 147, 136, 125, 116, 107, 99, 92, 85, 78, 72, 67, 62, 57, 53, 49, 45, 42, 39, 36,
               33, 30, 28, 26, 24, 22, 20, 19, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 8, 7, 7, 6, 6]


def test_exp_counts_reference_values():
    assert splits.exp_counts(60, 100, 600) == NTU60_IF100
    assert sum(splits.exp_counts(60, 10, 600)) == 14142
    assert sum(splits.exp_counts(60, 50, 600)) == 9150
    # NTU120 totals of BRL's lists (xsub n_max 600, xset 400)
    assert [sum(splits.exp_counts(120, f, 600)) for f in (10, 50, 100)] == [28182, 18137, 15600]
    assert [sum(splits.exp_counts(120, f, 400)) for f in (10, 50, 100)] == [18771, 12069, 10378]
    assert splits.exp_counts(5, 1, 7) == [7] * 5  # IF 1 is balanced
    c = splits.exp_counts(60, 37.5, 300)  # any IF >= 1: head n_max, tail n_max/IF, non-increasing
    assert c[0] == 300 and c[-1] == int(300 / 37.5) and all(a >= b for a, b in zip(c, c[1:]))


def test_step_counts():
    assert splits.step_counts(6, 10, 100) == [100, 100, 100, 10, 10, 10]
    assert splits.step_counts(5, 4, 100) == [100, 100, 25, 25, 25]


def test_groups_ntu60_if100():
    g = splits.groups(NTU60_IF100)
    assert (len(g["many"]), len(g["medium"]), len(g["few"])) == (23, 21, 16)  # Shap-Mix's shot_acc
    assert g["many"] == list(range(23)) and g["few"] == list(range(44, 60))
    g10 = splits.groups(splits.exp_counts(60, 10, 600))
    assert (len(g10["many"]), len(g10["medium"]), len(g10["few"])) == (46, 14, 0)


@pytest.mark.parametrize("bad", [dict(imbalance=0.5), dict(imbalance=float("nan")), dict(n_max=0),
                                 dict(num_classes=1)])
def test_bad_parameters(bad):
    kw = dict(num_classes=10, imbalance=10, n_max=100) | bad
    with pytest.raises(BenchmarkError):
        splits.exp_counts(**kw)


def _train_list(num_classes=6, per_class=30):
    # performers interleave classes, as a real train list does
    return [f"S001C001P{p:03d}R{r:03d}A{c + 1:03d}" for p in (1, 2, 4) for r in range(1, per_class // 3 + 1)
            for c in range(num_classes)]


def test_brl_recipe_reference_and_invariants():
    train = _train_list()
    names, man = splits.build_split(train, 6, 10, 20, seed=0)
    counts = splits.exp_counts(6, 10, 20)
    assert man["per_class_counts"] == counts == [20, 12, 7, 5, 3, 2]
    # the recipe, restated independently: global legacy seed, per-class permutation in order
    rng_state = np.random.get_state()
    np.random.seed(0)
    expected = []
    for c, k in enumerate(counts):
        block = [n for n in train if int(n[-3:]) == c + 1]
        perm = np.random.permutation(len(block))  # same legacy stream as shuffling the list
        expected += [block[i] for i in perm[:k]]
    np.random.set_state(rng_state)
    assert names == expected
    assert len(set(names)) == len(names) and set(names) <= set(train)
    assert [int(n[-3:]) for n in names] == sorted(int(n[-3:]) for n in names)  # classes in order
    assert man["sha256"] == hashlib.sha256("\n".join(names).encode()).hexdigest()
    # the global numpy RNG is left as it was
    state = np.random.get_state()[1].copy()
    splits.build_split(train, 6, 10, 20, seed=3)
    assert (np.random.get_state()[1] == state).all()
    # nested: a higher IF keeps per-class prefixes of a lower IF (same shuffles)
    n100, _ = splits.build_split(train, 6, 20, 20, seed=0)  # IF 100 would leave classes empty
    for c in range(6):
        a = [n for n in names if int(n[-3:]) == c + 1]
        b = [n for n in n100 if int(n[-3:]) == c + 1]
        assert a[:len(b)] == b
    other, _ = splits.build_split(train, 6, 10, 20, seed=1)
    assert other != names


def test_capped_class_keeps_all_and_says_so():
    train = _train_list(per_class=9)
    names, man = splits.build_split(train, 6, 2, 12, seed=0)
    assert Counter(int(n[-3:]) for n in names)[1] == 9
    assert 0 in man["recipe"]["capped_classes"]


def test_class_out_of_range():
    with pytest.raises(BenchmarkError, match="outside"):
        splits.build_split(["S001C001P001R001A061"], 60, 10, 10)


def test_ntu60_brl_lists_counts_and_recipe_comparison():
    """BRL's NTU60 lists: counts follow exp/600 exactly; the recipe keeps the same counts but
    (as documented) not the same names: the lists are imported, not regenerated."""
    root = shared_path("ntu-lt-splits")
    for bench in ("xsub", "xview"):
        train = (root / "standard_data" / "ntu" / f"NTU60_{bench}_train.txt").read_text().split()
        for imb in (10, 50, 100):
            path = root / "NTU60_LT" / f"NTU60_{bench}_exp_{imb}.txt"
            published = path.read_text().split()
            info = splits.verify_published(path, published, 60, train)
            assert info["known_list"] and info["n_max"] == 600
            ours, man = splits.build_split(train, 60, imb, 600, seed=0)
            assert man["per_class_counts"] == [Counter(int(n[-3:]) - 1 for n in published)[c] for c in range(60)]
            overlap = len(set(ours) & set(published)) / len(published)
            assert 0.3 < overlap < 0.7  # what an independent random draw gives (~50%)


def test_modified_published_list_is_rejected(tmp_path):
    root = shared_path("ntu-lt-splits")
    src = root / "NTU60_LT" / "NTU60_xsub_exp_100.txt"
    names = src.read_text().split()
    bad = tmp_path / src.name
    bad.write_text("\n".join(names[:-1]))
    with pytest.raises(BenchmarkError, match="sha256"):
        splits.verify_published(bad, names[:-1], 60)


def test_cli_build_and_import(tmp_path):
    train = tmp_path / "train.txt"
    train.write_text("\n".join(_train_list()) + "\n")
    out = tmp_path / "lt" / "synthetic_exp_10.txt"
    proc = run_cli("data", "splits", "--train-list", train, "--num-classes", 6, "--imbalance", 10,
                   "--n-max", 20, "--seed", 0, "--out", out)
    assert proc.returncode == 0, proc.stderr
    names = out.read_text().split("\n")
    assert len(names) == 49 and not out.read_text().endswith("\n")  # BRL byte format
    man = json.loads(out.with_suffix(".manifest.json").read_text())
    assert man["per_class_counts"] == [20, 12, 7, 5, 3, 2]
    assert man["recipe"]["imbalance"] == 10 and "few < 20" in man["groups"]["thresholds"]
    assert man["groups"]["few"]["classes"] == [1, 2, 3, 4, 5]


def test_cli_import_brl_list(tmp_path):
    root = shared_path("ntu-lt-splits")
    out = tmp_path / "NTU60_xsub_exp_100.txt"
    proc = run_cli("data", "splits", "--train-list", root / "standard_data/ntu/NTU60_xsub_train.txt",
                   "--num-classes", 60, "--import", root / "NTU60_LT/NTU60_xsub_exp_100.txt", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == (root / "NTU60_LT/NTU60_xsub_exp_100.txt").read_bytes()
    man = json.loads(out.with_suffix(".manifest.json").read_text())
    assert man["total"] == 7892 and man["per_class_counts"] == NTU60_IF100


@pytest.mark.parametrize("args,needle", [
    (["--imbalance", "0.5", "--n-max", "20"], "imbalance"),
    (["--imbalance", "10", "--n-max", "0"], "n_max"),
    (["--imbalance", "10"], "--n-max"),
])
def test_cli_bad_parameters(tmp_path, args, needle):
    train = tmp_path / "train.txt"
    train.write_text("\n".join(_train_list()))
    out = tmp_path / "out.txt"
    proc = run_cli("data", "splits", "--train-list", train, "--num-classes", 6, *args, "--out", out)
    assert_one_line_error(proc, needle)
    assert not out.exists()


def test_cli_bad_lists(tmp_path):
    out = tmp_path / "out.txt"
    proc = run_cli("data", "splits", "--train-list", tmp_path / "nope.txt", "--num-classes", 6,
                   "--imbalance", 10, "--n-max", 20, "--out", out)
    assert_one_line_error(proc, "nope.txt", "no such file")
    bad = tmp_path / "bad.txt"
    bad.write_text("S001C001P001R001A001\nhello\n")
    proc = run_cli("data", "splits", "--train-list", bad, "--num-classes", 6, "--imbalance", 10,
                   "--n-max", 20, "--out", out)
    assert_one_line_error(proc, "hello")
    assert not out.exists()
