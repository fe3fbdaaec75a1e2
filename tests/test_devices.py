"""Many GPUs, tested on CPU: ``--devices`` pins one worker per GPU group (what each worker's
environment holds), ``--gpus-per-run k`` launches a run with torchrun on k processes (gloo
DDP here), and the Slurm array requests exactly one run's GPUs and CPUs."""
import json
import os
import stat
import subprocess

import pytest

import methods  # noqa: F401
from benchmark.data.synth import load_synth
from benchmark.errors import BenchmarkError
from benchmark.launch import plan_slots, slurm_script, worker_command
from benchmark.spec import RunSpec
from benchmark.sweep import resolve_all, run_local, run_slurm, statuses

from conftest import REPO, assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return load_synth(tmp_path_factory.getbasetemp() / "synth-cache", num_classes=6,
                      train_per_class=40, test_per_class=6, T=40)


def specs(store, n=4, **train):
    return [RunSpec(dataset=str(store), method="ce", imbalance=10, n_max=40, profile="smoke",
                    seed=s, train={"epochs": 1, **train}) for s in range(n)]


def test_plan_slots():
    four = ["0", "1", "2", "3"]
    assert plan_slots(four, None, 1) == [("0",), ("1",), ("2",), ("3",)]
    assert plan_slots(four, None, 2) == [("0", "1"), ("2", "3")]
    assert plan_slots(four, 1, 2) == [("0", "1")]  # fewer workers: the first groups
    assert plan_slots(["0", "0", "1", "1"], None, 1) == [("0",), ("0",), ("1",), ("1",)]  # shared
    assert plan_slots(None, 3, 1) == [None, None, None]  # nothing pinned
    with pytest.raises(BenchmarkError, match="--workers 5 x --gpus-per-run 1 needs 5 GPU"):
        plan_slots(four, 5, 1)
    with pytest.raises(BenchmarkError, match="3 GPU.* do not split into runs of --gpus-per-run 2"):
        plan_slots(["0", "1", "2"], None, 2)
    with pytest.raises(BenchmarkError, match="repeat an id"):
        plan_slots(["0", "0"], None, 2)


def test_fake_four_gpu_sweep_pins_one_worker_per_gpu(store, tmp_path):
    """`sweep run --devices 0,1,2,3`: four workers at once, each run's environment holding
    exactly its own GPU (recorded in env.json), the sweep log naming it."""
    runs = resolve_all(specs(store))
    counts = run_local(runs, tmp_path, workers=None, threads=1, devices=["0", "1", "2", "3"])
    assert counts["finished"] == 4 and counts["failed"] == 0
    seen = {}
    for r in runs:
        env = json.loads((tmp_path / r.run_id / "env.json").read_text())
        seen[r.run_id] = env["cuda_visible_devices"]
        log = (tmp_path / "_sweep" / f"{r.run_id}.log").read_text()
        assert f"on GPU {seen[r.run_id]}\n" in log
    assert sorted(seen.values()) == ["0", "1", "2", "3"]  # one worker per GPU, all at once


def test_k_process_run_is_launched_with_torchrun(store):
    (run,) = resolve_all(specs(store, 1))
    cmd = worker_command(run.spec, "runs", 4, "cuda", "data", 2, ["/x/mine.py"], ["tensorboard"],
                         python="py")
    assert cmd[:6] == ["py", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                       "-m"]
    assert cmd[6:9] == ["benchmark", "sweep", "run-one"]
    tail = cmd[cmd.index("--out"):]
    assert tail == ["--out", "runs", "--threads", "4", "--device", "cuda", "--data-root", "data",
                    "--plugin", "/x/mine.py", "--log", "tensorboard"]
    assert "torch.distributed.run" not in worker_command(run.spec, "runs", 4, "cuda")


def test_two_process_run_through_the_sweep(store, tmp_path):
    """--gpus-per-run 2 on CPU: torchrun starts 2 gloo ranks pinned to a fake 2-GPU group; the
    run is keyed as a 2-process run (another id than 1 process), status finds it."""
    (one,) = resolve_all(specs(store, 1))
    (run,) = resolve_all(specs(store, 1), world_size=2)
    assert run.run_id != one.run_id and run.identity["numerics"]["world_size"] == 2
    counts = run_local([run], tmp_path, workers=None, threads=1, devices=["2", "3"],
                       gpus_per_run=2)
    assert counts["finished"] == 1, (tmp_path / "_sweep" / f"{run.run_id}.log").read_text()[-3000:]
    env = json.loads((tmp_path / run.run_id / "env.json").read_text())
    assert (env["world_size"], env["backend"], env["cuda_visible_devices"]) == (2, "gloo", "2,3")
    assert [s.state for s in statuses([run], tmp_path)] == ["done"]


def test_slurm_script_requests_what_a_run_uses(tmp_path):
    specs_file = tmp_path / "s.specs.jsonl"
    one = slurm_script(3, specs_file, "results/runs", "cuda", 4, 1, partition="gpu", time_min=90,
                       workdir=tmp_path, python="py")
    assert "#SBATCH --array=0-2\n" in one and "#SBATCH --ntasks=1\n" in one
    assert "#SBATCH --gres=gpu:1\n" in one and "#SBATCH --cpus-per-task=4\n" in one
    assert "#SBATCH --partition=gpu\n" in one and "#SBATCH --time=90\n" in one
    assert "torch.distributed.run" not in one
    assert one.rstrip().endswith('exec py -m benchmark sweep run-one --spec-json "$SPEC" --out '
                                 'results/runs --threads 4 --device cuda')
    four = slurm_script(1, specs_file, "runs", "cuda", 6, 4, plugins=["/p/mine.py"],
                        log_to=["wandb"], python="py")
    assert "#SBATCH --gres=gpu:4\n" in four and "#SBATCH --cpus-per-task=24\n" in four
    assert ("exec py -m torch.distributed.run --standalone --nproc_per_node=4 -m benchmark sweep "
            "run-one --spec-json \"$SPEC\"") in four
    assert four.rstrip().endswith("--plugin /p/mine.py --log wandb")
    cpu = slurm_script(1, specs_file, "runs", "cpu", 2, 1)
    assert "--gres" not in cpu and "#SBATCH --cpus-per-task=2\n" in cpu
    for text in (one, four, cpu):
        path = tmp_path / "x.sbatch"
        path.write_text(text)
        assert subprocess.run(["bash", "-n", str(path)]).returncode == 0


def test_slurm_array_runs_each_task(store, tmp_path, monkeypatch):
    """run_slurm with a stand-in `sbatch` that runs every array task here: the written script
    trains the runs. Without sbatch the script is kept and the error says how to submit it."""
    runs = resolve_all(specs(store, 2))
    monkeypatch.setenv("PATH", str(tmp_path / "nobin"))
    with pytest.raises(BenchmarkError, match=r"no sbatch on PATH .* sbatch .*\.sbatch"):
        run_slurm(runs, tmp_path / "out", "cpu", threads=1)
    fake = tmp_path / "bin" / "sbatch"
    fake.parent.mkdir()
    fake.write_text("#!/bin/bash\n# the array tasks one after the other, then the job id\n"
                    "script=\"${@: -1}\"\nn=$(sed -n 's/^#SBATCH --array=0-//p' \"$script\")\n"
                    "for i in $(seq 0 $n); do SLURM_ARRAY_TASK_ID=$i bash \"$script\" "
                    ">/dev/null 2>&1 || exit 1; done\necho '4242;cluster'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}/usr/bin{os.pathsep}/bin")
    monkeypatch.chdir(REPO)
    sub = run_slurm(runs, tmp_path / "out", "cpu", threads=1)
    assert sub["job"] == "4242" and sub["runs"] == 2
    assert [s.state for s in statuses(runs, tmp_path / "out")] == ["done", "done"]
    assert run_slurm(runs, tmp_path / "out", "cpu", threads=1)["runs"] == 0  # nothing left


def test_cli_device_errors():
    base = ("sweep", "run", "--data", "synth", "--suite", "table7", "--out", "/tmp/unused-ltsk")
    assert_one_line_error(run_cli(*base, "--devices", "0,1"), "--devices pins GPUs", "--device cuda")
    assert_one_line_error(run_cli(*base, "--device", "cuda", "--devices", "0,1,2",
                                  "--gpus-per-run", "2"), "do not split")
    assert_one_line_error(run_cli(*base, "--device", "cuda", "--devices", "0,1,2,3",
                                  "--workers", "5"), "needs 5 GPU(s)", "--devices gives 4")
    assert_one_line_error(run_cli(*base, "--launcher", "slurm", "--devices", "0"),
                          "--devices is for local workers")
    assert not os.path.exists("/tmp/unused-ltsk/_sweep")
