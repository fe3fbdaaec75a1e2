"""scripts/bench_epoch.py (issue 7's GPU epoch comparison) on CPU at tiny sizes: the data it
writes for both sides, the worker plumbing, and the report computed from the measured epochs.
No timing assertion. The official CTR-GCN is not part of the repo: a stand-in checkout (a
feeder with the official .npz reading and a ``Model`` that is our CTR-GCN at width 8)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import FAKE_OFFICIAL_MODEL, load_script

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "bench_epoch.py"

FAKE_FEEDER = '''
import numpy as np


class Feeder:  # the official .npz reading (x_train (N, T, 150), one-hot y_train), no augmentation
    def __init__(self, data_path, split="train", window_size=64, **kwargs):
        d = np.load(data_path)
        x = d["x_" + split]
        n, t, _ = x.shape
        self.data = x.reshape((n, t, 2, 25, 3)).transpose(0, 4, 1, 3, 2)
        self.label = np.where(d["y_" + split] > 0)[1]
        self.window = window_size

    def __len__(self):
        return len(self.label)

    def __getitem__(self, i):
        return np.ascontiguousarray(self.data[i][:, :self.window]), self.label[i], i
'''


def _load():
    return load_script("bench_epoch")


@pytest.fixture
def fake_official(tmp_path):
    root = tmp_path / "official"
    for pkg, files in (("model", {"ctrgcn.py": FAKE_OFFICIAL_MODEL}),
                       ("feeders", {"feeder_ntu.py": FAKE_FEEDER, "tools.py": "import numpy as np\n"})):
        (root / pkg).mkdir(parents=True)
        (root / pkg / "__init__.py").write_text("")
        for name, text in files.items():
            (root / pkg / name).write_text(text)
    return root


def test_lt_ntu60_sizes():
    be = _load()
    assert be.lt_counts().sum() == 7892  # BRL's NTU60_xsub_exp_100 list length
    labels = be.plan_labels(None, 0)
    assert len(labels) == 7892 and np.bincount(labels, minlength=60)[0] == 600
    small = be.plan_labels(120, 0)
    assert np.bincount(small, minlength=60).min() >= 1  # every class kept when scaled


def test_both_sides_read_the_same_clips(tmp_path):
    """The official .npz, read the way its Feeder reads it, is our store to the last bit;
    one-person classes carry an all-zero second person, frames past a clip's length are zero."""
    from benchmark.data.store import open_store
    be = _load()
    labels = be.plan_labels(90, 3)
    info = be.write_data(tmp_path, labels, test_per_class=1, seed=3, official_npz=True)
    store = open_store(info["store"])
    n_train = len(labels)
    with np.load(info["npz"]) as d:  # no allow_pickle: plain arrays only
        for part, rows in (("train", slice(0, n_train)), ("test", slice(n_train, None))):
            x = d[f"x_{part}"]
            n, t, _ = x.shape
            official = x.reshape((n, t, 2, 25, 3)).transpose(0, 4, 1, 3, 2)
            np.testing.assert_array_equal(official, store.data[rows])
            np.testing.assert_array_equal(np.where(d[f"y_{part}"] > 0)[1], store.labels[rows])
    assert store.split_names("bench", "train") == list(store.names[:n_train])
    one = store.labels < be.TWO_PERSON_FIRST
    assert one.any() and (~one).any()
    assert not store.data[one][..., 1].any() and store.data[~one][..., 1].any()
    for i in range(0, len(store), 17):
        L = store.lengths[i]
        assert not store.data[i][:, L:].any() and store.data[i][:, L - 1].any()


def test_numpy2_shim_keeps_numpy_semantics():
    be = _load()
    shim = be._SizeOneFloorNumpy()
    p = np.array([0.73])
    assert int(shim.floor(100 * p)) == 73  # what NumPy 1 did with the size-1 array
    np.testing.assert_array_equal(shim.floor(np.array([1.5, -0.5])), [1.0, -1.0])
    assert shim.random is np.random and shim.minimum is np.minimum


def test_bench_epoch_tiny(tmp_path, fake_official, capsys):
    out = tmp_path / "bench" / "epoch.json"
    res = _load().main(["--device", "cpu", "--clips", "60", "--epochs", "2", "--batch", "8",
                        "--base-channel", "8", "--threads", "1", "--official-workers", "0",
                        "--variants", "official,ours:off", "--official", str(fake_official),
                        "--tmpdir", str(tmp_path), "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(res))
    assert not list(tmp_path.glob("bench_epoch_*")), "temp data left behind"
    off, ours = res["variants"]["official"], res["variants"]["ours:off"]
    for r in (off, ours):
        assert "error" not in r, r
        assert len(r["epoch_s"]) == 2 and r["peak_gpu_gib"] is None
        assert r["steps"] == res["settings"]["train_clips"] // 8  # drop_last, one pass
        assert all(np.isfinite(r["loss"]))
        assert r["clips_per_s"] == round(r["steps"] * 8 / r["epoch_s"][-1], 1)
    assert ours["speedup_vs_official"] == round(off["epoch_s"][-1] / ours["epoch_s"][-1], 3)
    assert res["best_ours"]["label"] == ours["label"] == "ours (fp32)"
    assert "ours (fp32)" in capsys.readouterr().err


def test_official_without_checkout_is_skipped_and_bad_variant_is_an_error(tmp_path):
    res = _load().main(["--device", "cpu", "--clips", "60", "--epochs", "1", "--batch", "30",
                        "--base-channel", "8", "--threads", "1", "--variants", "official,ours:off",
                        "--tmpdir", str(tmp_path), "--out", str(tmp_path / "e.json")])
    assert "official" not in res["variants"] and "--official" in res["skipped"]["official"]
    assert "speedup_vs_official" not in res["variants"]["ours:off"]
    proc = subprocess.run([sys.executable, str(SCRIPT), "--variants", "ours:bf32"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unknown variant 'ours:bf32'" in proc.stderr
