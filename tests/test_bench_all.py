"""scripts/bench_all.py end to end on tiny sizes: the JSON schema, and every ratio and target
computed from the numbers measured in the same run. No timing assertion (shared machine).

The official CTR-GCN is not part of the repo: a stand-in checkout (``model/ctrgcn.py`` whose
``Model`` is our CTR-GCN at width 8) exercises the interleaved comparison."""
import json
import statistics
import sys
from pathlib import Path

import pytest

from conftest import FAKE_OFFICIAL_MODEL, load_script

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "data" / "ntu-raw-samples"



def _load():
    return load_script("bench_all")


@pytest.fixture
def fake_official(tmp_path, monkeypatch):
    root = tmp_path / "official"
    (root / "model").mkdir(parents=True)
    (root / "model" / "__init__.py").write_text("")
    (root / "model" / "ctrgcn.py").write_text(FAKE_OFFICIAL_MODEL)
    monkeypatch.setattr(sys, "path", list(sys.path))  # bench_all prepends the checkout
    for name in ("model", "model.ctrgcn"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield root
    for name in ("model", "model.ctrgcn"):
        sys.modules.pop(name, None)


def test_bench_all_tiny(tmp_path, fake_official, capsys):
    out = tmp_path / "bench" / "bench.json"
    rounds = 3
    res = _load().main([
        "--official", str(fake_official), "--out", str(out), "--tmpdir", str(tmp_path),
        "--threads", "1", "--base-channel", "8", "--batch", "4", "--steps", "2", "--warmup", "1",
        "--rounds", str(rounds), "--window", "16", "--ratio-steps", "1", "--ratio-repeats", "1",
        "--store-n", "40", "--copies", "2", "--prep-repeat", "1", "--pyskl-clips", "30", "--profile"])
    captured = capsys.readouterr()
    assert json.loads(out.read_text()) == json.loads(json.dumps(res))  # written atomically, whole
    assert json.loads(captured.out) == json.loads(json.dumps(res))
    assert not list(tmp_path.glob("bench_all_*")), "temp stores left behind"

    s = res["settings"]
    assert s["threads"] == 1 and s["batch"] == 4 and s["device"] == "cpu"
    assert isinstance(s["loaded"], bool) and len(s["loadavg_start"]) == 3

    # throughput with the data pipeline: samples/s is batch / median step time
    assert set(res["throughput"]) == {"ntu", "ucla"}
    shapes = {"ntu": (64, 25, 2), "ucla": (52, 20, 1)}
    for name, r in res["throughput"].items():
        assert (r["shape"]["T"], r["shape"]["V"], r["shape"]["M"]) == shapes[name]
        assert 0 < r["ms_min"] <= r["ms_per_step"] <= r["ms_max"] and 0 <= r["load_ms"]
        assert r["samples_per_s"] == pytest.approx(1e3 * 4 / r["ms_per_step"], rel=0.01)

    # the official comparison: same weights, same inputs, ratios from the measured rounds
    off = res["official"]
    assert off["same_seed_same_weights"] and off["logits_max_abs_diff"] == 0.0
    t = off["timings"]["threads1"]
    assert t["clock"] == "thread_time" and len(t["ours_ms"]) == len(t["official_ms"]) == rounds
    paired = [o / u for o, u in zip(t["official_ms"], t["ours_ms"])]
    assert t["speedup_paired_median"] == pytest.approx(statistics.median(paired), rel=0.02)
    assert t["speedup_of_medians"] == pytest.approx(
        statistics.median(t["official_ms"]) / statistics.median(t["ours_ms"]), rel=0.02)
    assert off["speedup"] == t["speedup_paired_median"]
    assert set(off["profile"]) == {"ours", "official"} and off["profile"]["ours"][0]["self_ms"] > 0

    # the step-ratio piece (scripts/bench_steps.py)
    sr = res["step_ratios"]
    assert set(sr["methods"]) == {"ce", "st_mix", "shap_mix_iter1", "shap_mix_iter5"}
    assert sr["shape"]["T"] == 16 and sr["methods"]["shap_mix_iter1"]["estimates_per_step"] == 1

    # memory: a fresh process over a 40-clip store
    mem = res["memory"]
    assert mem["n"] == 40 and mem["clips"] == 40 and mem["full_size"] is False
    assert mem["epoch_peak_rss_mb"] is None or mem["epoch_peak_rss_mb"] > 0

    # the PYSKL import (scripts/bench_pyskl.py): ratios from the numbers of the same run
    for fmt in ("k400", "ntu"):
        r = res["pyskl"][fmt]
        assert r["generated"]["clips"] == 30 and r["clips_per_s"] > 0
        assert r["ratios"]["convert_peak_over_object"] == pytest.approx(
            (r["convert"]["peak_rss_mb"] - r["convert"]["rss_start_mb"]) / r["load"]["object_mb"], abs=2e-3)
        assert "pickle_load" not in r  # no unrestricted unpickling, not even as a baseline

    # targets: the values are the measured ones, PASS/MISS follows from them
    tg = res["targets"]
    assert set(tg) == {"official_speedup", "shap_mix_iter1_over_st_mix", "peak_rss_gib",
                       "prepare_speedup"}
    assert tg["official_speedup"]["value"] == pytest.approx(off["speedup"])
    assert tg["official_speedup"]["pass"] == (off["speedup"] >= 1.3)
    v = sr["paired_ratios"]["shap_mix_iter1/st_mix"]["median"]
    assert tg["shap_mix_iter1_over_st_mix"]["value"] == pytest.approx(v)
    assert tg["shap_mix_iter1_over_st_mix"]["pass"] == (v <= 1.2)
    if mem["epoch_peak_rss_mb"] is not None:
        assert tg["peak_rss_gib"]["value"] == pytest.approx(mem["epoch_peak_rss_mb"] / 1024, abs=1e-3)
        assert tg["peak_rss_gib"]["pass"] == (tg["peak_rss_gib"]["value"] <= 1.5)
    for key, t in tg.items():
        assert t["pass"] in (True, False, None) and ("tried" in t) == (t["pass"] is False), key

    # the stand-in checkout has no data/ntu scripts: the official prep timing is skipped
    assert "official_prepare" in res["skipped"] or "prepare" in res["skipped"]
    assert tg["prepare_speedup"]["pass"] is None
    if SAMPLES.is_dir():
        fps = res["prepare"]["files_per_s"]
        assert res["prepare"]["files"] == 4 and all(v > 0 for v in fps.values())
    else:
        assert "not there" in res["skipped"]["prepare"]

    table = captured.err
    for label in ("ce step + data, ntu", "ce step vs official", "shap_mix/st_mix step, Iter-1",
                  "peak RSS", "skipped"):
        assert label in table, label
    assert ("PASS" in table) or ("MISS" in table)
    # the GPU epoch comparison is CUDA-only; on CPU the skip names the reduced command
    assert "scripts/bench_epoch.py --device cpu" in res["skipped"]["epoch"] and "epoch" not in res


def test_defaults_small_and_full():
    mod = _load()
    small, full = mod.parse_args([]), mod.parse_args(["--full"])
    assert small.store_n == 4000 and full.store_n == 40091  # NTU60 xsub train
    assert small.copies < full.copies and small.rounds < full.rounds
    assert mod.parse_args(["--store-n", "7", "--full"]).store_n == 7  # explicit wins


def test_backbone_ratios_are_read_from_the_check_scripts_json():
    bench = load_script("bench_all")
    out = {"configs": {"ntu60": {"x": 1}}, "timing": [{"threads": 1, "speedup_median": 1.15},
                                                       {"threads": 2, "speedup_median": 0.97}],
           "speedup_median_2thread": 0.97, "speedup_best": 3.0}
    ratios = bench._speedups(out)
    assert sorted(ratios.values()) == [0.97, 0.97, 1.15] and "speedup_best" not in str(ratios)
    results = {"backbones": {"aagcn": {"speedups": ratios, "min_speedup": min(ratios.values())}}}
    t = bench.targets(results)["backbone_aagcn"]
    assert t["value"] == 0.97 and t["pass"] is False and t["target"] == ">= 1.0"
