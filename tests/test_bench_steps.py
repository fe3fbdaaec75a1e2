"""scripts/bench_steps.py runs end to end on a tiny config and reports positive numbers.
(No timing assertion: the machine is shared.)"""
import json

import torch

from conftest import load_script

METHODS = ("ce", "st_mix", "shap_mix_iter1", "shap_mix_iter5")
RATIOS = ("st_mix/ce", "shap_mix_iter1/st_mix", "shap_mix_iter5/st_mix")


def _load():
    return load_script("bench_steps")


def test_bench_steps_tiny(tmp_path, capsys):
    threads = torch.get_num_threads()
    out = tmp_path / "steps.json"
    res = _load().main(["--base-channel", "8", "--batch", "4", "--window", "16", "--steps", "2",
                        "--repeats", "1", "--warmup", "1", "--threads", "1", "--out", str(out)])
    assert torch.get_num_threads() == threads  # restored
    assert json.loads(out.read_text()) == res
    assert json.loads(capsys.readouterr().out) == res
    assert set(res["configs"]) == {"ntu", "ucla"}
    for cname, c in res["configs"].items():
        assert c["shape"]["T"] == 16 and c["shape"]["N"] == 4
        assert set(c["methods"]) == set(METHODS)
        for m, d in c["methods"].items():
            assert d["ms_per_step"] > 0 and d["samples_per_s"] > 0
            assert d["ms_min"] <= d["ms_per_step"] <= d["ms_max"]
            assert all(v >= 0 for v in d["phases_ms"].values())
            for p in ("forward", "backward", "optimizer"):
                assert d["phases_ms"][p] > 0, (cname, m, p)
        # the estimator runs every step at Iter-1, on step 0 of 2 at Iter-5, never otherwise
        assert c["methods"]["shap_mix_iter1"]["estimates_per_step"] == 1
        assert c["methods"]["shap_mix_iter5"]["estimates_per_step"] == 0.5
        assert c["methods"]["st_mix"]["estimates_per_step"] == 0
        assert c["methods"]["shap_mix_iter1"]["phases_ms"]["estimate"] > 0
        for k in RATIOS:
            assert c["ratios"][k] > 0 and c["paired_ratios"][k]["median"] > 0
        assert set(c["profile"]) == {"shap_mix_iter1", "shap_mix_iter5"}
        assert c["profile"]["shap_mix_iter1"]["estimate_ms"] > 0
