"""How a sweep starts its runs: GPUs per worker, the worker's command line, the Slurm script.

    plan_slots      --devices 0,1,2,3 cut into one group of --gpus-per-run GPUs per worker; each
                    worker's runs see only their group (CUDA_VISIBLE_DEVICES)
    worker_command  ``python -m benchmark sweep run-one ...``, under torchrun
                    (``--standalone --nproc_per_node k``) when a run has k > 1 processes
    slurm_script    an sbatch array script: one run per task, requesting exactly what the run
                    uses (k GPUs, k x threads CPUs, one task), torchrun inside the job for k > 1

Pure functions of their arguments (what the tests check); :mod:`benchmark.sweep` starts the
processes and submits the script.
"""
from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Sequence

from .errors import BenchmarkError
from .spec import RunSpec

SWEEP_DIR = "_sweep"  # a sweep's own files under --out (benchmark.sweep)


def plan_slots(devices: Sequence[str] | None, workers: int | None,
               gpus_per_run: int = 1) -> list[tuple[str, ...] | None]:
    """The GPUs of each worker: ``devices`` cut into groups of ``gpus_per_run``, one group per
    worker (``workers`` None: one worker per group). Without ``devices``: ``workers`` slots
    that pin nothing. An id may repeat across groups (``0,0,1,1``: two 1-GPU workers per GPU),
    never within one (a DDP run needs distinct GPUs).

    Raises:
        BenchmarkError: more workers than groups, devices not divisible into groups.
    """
    if gpus_per_run < 1:
        raise BenchmarkError(f"--gpus-per-run must be >= 1, got {gpus_per_run}")
    if workers is not None and workers < 1:
        raise BenchmarkError(f"--workers must be >= 1, got {workers}")
    if not devices:
        return [None] * (workers or 1)
    devices = [str(d).strip() for d in devices]
    if len(devices) % gpus_per_run:
        raise BenchmarkError(f"--devices {','.join(devices)}: {len(devices)} GPU(s) do not split "
                             f"into runs of --gpus-per-run {gpus_per_run}")
    groups = [tuple(devices[i:i + gpus_per_run]) for i in range(0, len(devices), gpus_per_run)]
    for g in groups:
        if len(set(g)) < len(g):
            raise BenchmarkError(f"--devices: one run's GPUs {','.join(g)} repeat an id (a "
                                 f"{gpus_per_run}-GPU run needs {gpus_per_run} distinct GPUs)")
    if workers is not None and workers > len(groups):
        raise BenchmarkError(f"--workers {workers} x --gpus-per-run {gpus_per_run} needs "
                             f"{workers * gpus_per_run} GPU(s); --devices gives {len(devices)} "
                             f"({','.join(devices)}); repeat an id to share a GPU (0,0,1,1)")
    return groups[:workers] if workers is not None else groups


def visible_gpus() -> list[str]:
    """This machine's GPUs as CUDA_VISIBLE_DEVICES values (the inherited list if set)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def worker_command(spec: RunSpec | str, out: str | os.PathLike, threads: int, device: str,
                   data_root: str | None = None, gpus_per_run: int = 1,
                   plugins: Sequence[str] = (), log_to: Sequence[str] = (),
                   python: str = sys.executable) -> list[str]:
    """The command line of one run: ``sweep run-one``, under torchrun for k > 1 processes
    (``--standalone``: a free rendezvous port per run, so several runs share a node)."""
    head = [python]
    if gpus_per_run > 1:
        head += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus_per_run}"]
    spec_json = spec if isinstance(spec, str) else json.dumps(spec.to_dict(), sort_keys=True)
    cmd = head + ["-m", "benchmark", "sweep", "run-one", "--spec-json", spec_json, "--out", str(out),
                  "--threads", str(threads), "--device", device]
    if data_root:
        cmd += ["--data-root", str(data_root)]
    for plugin in plugins:
        cmd += ["--plugin", plugin]
    if log_to:
        cmd += ["--log", ",".join(log_to)]
    return cmd


SLURM_THREADS = 4  # per process by default: the GPU does the maths; the host loads and prefetches


def slurm_script(n_runs: int, specs_file: Path, out: str | os.PathLike, device: str,
                 threads: int, gpus_per_run: int = 1, data_root: str | None = None,
                 plugins: Sequence[str] = (), log_to: Sequence[str] = (),
                 partition: str | None = None, time_min: int | None = None,
                 workdir: str | os.PathLike | None = None, python: str = sys.executable) -> str:
    """An sbatch array script: task i runs line i+1 of ``specs_file`` with ``sweep run-one``.

    Each task requests exactly what one run uses: one task on one node, ``gpus_per_run``
    GPUs (``--gres=gpu:k``, on cuda) and ``threads`` CPUs per process; k > 1 runs under
    torchrun inside the job.
    """
    out = Path(out)
    logs = (out / SWEEP_DIR / "slurm").resolve()
    lines = ["#!/bin/bash",
             f"# LT-Skeleton Bench sweep: {n_runs} run(s), one per array task, the runs of "
             f"{specs_file.name} (benchmark/launch.py). Submit with sbatch.",
             "#SBATCH --job-name=ltskeleton",
             f"#SBATCH --array=0-{n_runs - 1}",
             "#SBATCH --nodes=1",
             "#SBATCH --ntasks=1",
             f"#SBATCH --cpus-per-task={threads * gpus_per_run}"]
    if device == "cuda":
        lines.append(f"#SBATCH --gres=gpu:{gpus_per_run}")
    if time_min:
        lines.append(f"#SBATCH --time={int(time_min)}")
    if partition:
        lines.append(f"#SBATCH --partition={partition}")
    lines += [f"#SBATCH --output={logs}/%A_%a.log", "set -euo pipefail",
              f"cd {shlex.quote(str(Path(workdir or os.getcwd()).resolve()))}",
              f'SPEC=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" '
              f'{shlex.quote(str(specs_file.resolve()))})']
    cmd = worker_command("__SPEC__", out, threads, device, data_root, gpus_per_run, plugins,
                         log_to, python)
    lines.append("exec " + " ".join(shlex.quote(c) for c in cmd).replace("__SPEC__", '"$SPEC"'))
    return "\n".join(lines) + "\n"
