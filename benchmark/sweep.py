"""Resumable sweeps: run every missing run of a list of specs, with parallel local workers, a
``--shard i/n`` split, or a Slurm array through the optional ``submitit``.

The state lives on the filesystem (DomainBed's sweep): a run folder with ``done`` is done; a
folder whose ``.lock`` another process holds is running; a folder without ``done`` is
unfinished and is resumed from its ``last.pt``; no folder is missing. A worker that fails
leaves ``<out>/_sweep/<run_id>.failed.json`` (exit status, the last lines of its log) which
``status`` shows and the next sweep retries. Every run is one subprocess
(``python -m benchmark sweep run-one``) that dies with the sweep (Linux PR_SET_PDEATHSIG), so
a killed sweep leaves only resumable checkpoints behind and a rerun picks them up: nothing is
lost (``done`` runs are never touched) or duplicated (a run's lock admits one trainer).
"""
from __future__ import annotations

import ctypes
import dataclasses
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from . import _io
from .errors import BenchmarkError
from .spec import RunSpec, normalise

log = logging.getLogger(__name__)

SWEEP_DIR = "_sweep"
STATES = ("done", "running", "unfinished", "failed", "missing")
TAIL_LINES = 8


@dataclass
class RunState:
    spec: RunSpec
    state: str                      # one of STATES
    detail: str = ""                # failed: the last lines of the log


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` (1-based) -> (i, n); None -> (1, 1)."""
    if not text:
        return 1, 1
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise BenchmarkError(f"--shard must look like i/n (e.g. 2/4), got {text!r}") from None
    if not 1 <= i <= n:
        raise BenchmarkError(f"--shard {text}: need 1 <= i <= n")
    return i, n


def shard(specs: list[RunSpec], i: int, n: int) -> list[RunSpec]:
    """The i-th of n disjoint parts, by run id (stable whatever the order or machine)."""
    return [s for s in specs if int(s.run_id, 16) % n == i - 1]


def is_locked(run_dir: Path) -> bool:
    lock = run_dir / ".lock"
    if not lock.is_file():
        return False
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops the lock we may have taken
    return False


def _failed_path(out: Path, run_id: str) -> Path:
    return out / SWEEP_DIR / f"{run_id}.failed.json"


def state_of(spec: RunSpec, out: Path) -> RunState:
    run_dir = out / spec.run_id
    if (run_dir / "done").is_file():
        return RunState(spec, "done")
    if run_dir.is_dir() and is_locked(run_dir):
        return RunState(spec, "running")
    failed = _failed_path(out, spec.run_id)
    if failed.is_file():
        info = json.loads(failed.read_text(encoding="utf-8"))
        return RunState(spec, "failed", "\n".join(info.get("tail", [])))
    if run_dir.is_dir():
        return RunState(spec, "unfinished")
    return RunState(spec, "missing")


def statuses(specs: Iterable[RunSpec], out: str | os.PathLike) -> list[RunState]:
    out = Path(out)
    return [state_of(s, out) for s in specs]


def describe(spec: RunSpec) -> str:
    """A short human label: method, its non-default options, data, seed."""
    hp = ",".join(f"{k}={v}" for k, v in sorted(spec.hparams.items()))
    data = spec.dataset + (f" IF{spec.imbalance:g}" if spec.imbalance else "")
    return f"{spec.method}{'[' + hp + ']' if hp else ''} {data} {spec.profile} seed {spec.seed}"


# ------------------------------------------------------------------------ local workers
def _die_with_parent() -> None:  # pragma: no cover (runs in the child)
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    os.setpgrp()  # a Ctrl-C reaches the sweep, which stops its workers itself


@dataclass
class _Job:
    spec: RunSpec
    proc: subprocess.Popen
    log_path: Path
    started: float


def run_local(specs: list[RunSpec], out: str | os.PathLike, workers: int = 1,
              threads: int | None = None, device: str = "cpu",
              data_root: str | None = None) -> dict[str, int]:
    """Run every spec that is not done / running elsewhere, ``workers`` at a time.

    Returns the counts of runs by outcome. Progress for the whole sweep goes to the log.
    """
    out = Path(out)
    specs = [normalise(s) for s in specs]
    states = statuses(specs, out)
    todo = [st.spec for st in states if st.state in ("missing", "unfinished", "failed")]
    counts = {"done before": sum(st.state == "done" for st in states),
              "running elsewhere": sum(st.state == "running" for st in states),
              "finished": 0, "failed": 0}
    if not todo:
        log.info("sweep: all %d run(s) done or running elsewhere; nothing to do", len(specs))
        return counts
    threads = threads or max(1, (os.cpu_count() or 1) // max(1, workers))
    (out / SWEEP_DIR).mkdir(parents=True, exist_ok=True)
    log.info("sweep: %d run(s): %d done, %d running elsewhere, %d to run with %d worker(s) x %d "
             "thread(s)", len(specs), counts["done before"], counts["running elsewhere"], len(todo),
             workers, threads)
    queue, running = list(todo), []
    durations: list[float] = []
    t0 = time.time()
    try:
        while queue or running:
            while queue and len(running) < workers:
                spec = queue.pop(0)
                if state_of(spec, out).state in ("done", "running"):  # another sweep took it
                    continue
                running.append(_launch(spec, out, threads, device, data_root))
            time.sleep(0.5)
            for job in [j for j in running if j.proc.poll() is not None]:
                running.remove(job)
                dt = time.time() - job.started
                ok = _finish(job, out)
                counts["finished" if ok else "failed"] += 1
                if ok:
                    durations.append(dt)
                n_done = counts["finished"] + counts["failed"]
                left = len(queue) + len(running)
                eta = (sum(durations) / len(durations) * left / workers) if durations else None
                log.info("[sweep %d/%d] %s %s (%.0f s) | %d running, %d queued, %d failed%s",
                         n_done, len(todo), "done" if ok else "FAILED", describe(job.spec), dt,
                         len(running), len(queue), counts["failed"],
                         f", ~{eta / 60:.0f} min left" if eta is not None else "")
    except BaseException:
        for job in running:  # stop the workers; their last checkpoints make them resumable
            _stop(job.proc)
        raise
    log.info("sweep: %d finished, %d failed in %.1f min", counts["finished"], counts["failed"],
             (time.time() - t0) / 60)
    return counts


def _launch(spec: RunSpec, out: Path, threads: int, device: str, data_root: str | None) -> _Job:
    log_path = out / SWEEP_DIR / f"{spec.run_id}.log"
    cmd = [sys.executable, "-m", "benchmark", "sweep", "run-one", "--spec-json",
           json.dumps(spec.to_dict(), sort_keys=True), "--out", str(out), "--threads", str(threads),
           "--device", device]
    if data_root:
        cmd += ["--data-root", data_root]
    fh = open(log_path, "a", encoding="utf-8")
    fh.write(f"=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {describe(spec)}\n")
    fh.flush()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env,
                            preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    fh.close()  # the child holds its own copy
    return _Job(spec, proc, log_path, time.time())


def _finish(job: _Job, out: Path) -> bool:
    rc = job.proc.returncode
    failed = _failed_path(out, job.spec.run_id)
    if rc == 0 and (out / job.spec.run_id / "done").is_file():
        failed.unlink(missing_ok=True)
        return True
    tail = _tail(job.log_path)
    _io.write_json(failed, {"run_id": job.spec.run_id, "spec": job.spec.to_dict(), "returncode": rc,
                            "time": time.time(), "log": str(job.log_path), "tail": tail})
    return False


def _tail(path: Path, n: int = TAIL_LINES) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    return [ln for ln in lines if not ln.startswith("=== ")][-n:]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


# ------------------------------------------------------------------------------ Slurm
def run_slurm(specs: list[RunSpec], out: str | os.PathLike, slurm: dict[str, Any],
              device: str = "cuda", data_root: str | None = None) -> list[Any]:
    """Submit the runs that are not done / running as one Slurm job array (``submitit``).

    ``slurm`` holds submitit's parameters (partition, timeout_min, gpus_per_node, ...). Returns
    the submitit jobs; their folders are under ``<out>/_sweep/slurm``.
    """
    try:
        import submitit  # optional dependency
    except ImportError:
        raise BenchmarkError("--launcher slurm needs the optional package submitit "
                             "(pip install submitit)") from None
    out = Path(out)
    specs = [normalise(s) for s in specs]
    todo = [st.spec for st in statuses(specs, out) if st.state not in ("done", "running")]
    if not todo:
        return []
    executor = submitit.AutoExecutor(folder=str(out / SWEEP_DIR / "slurm"))
    executor.update_parameters(**slurm)
    return executor.map_array(_slurm_job, [s.to_dict() for s in todo], [str(out)] * len(todo),
                              [device] * len(todo), [data_root] * len(todo))


def _slurm_job(spec: dict[str, Any], out: str, device: str, data_root: str | None) -> str:
    from .runner import run

    return str(run(RunSpec.from_dict(spec), out, device, data_root).run_dir)


def run_one(spec_json: str, out: str, threads: int | None, device: str,
            data_root: str | None) -> int:
    """The worker: train one spec (resuming it); the sweep reads the outcome from the folder."""
    from .runner import run

    try:
        spec = RunSpec.from_dict(json.loads(spec_json))
    except (ValueError, TypeError) as e:
        raise BenchmarkError(f"--spec-json: not a run spec ({e})") from None
    result = run(spec, out, device, data_root, threads)
    print(f"{result.run_dir}: {result.status}")
    return 0


def with_seeds(specs: list[RunSpec], seeds: Iterable[int]) -> list[RunSpec]:
    return [dataclasses.replace(s, seed=k) for s in specs for k in seeds]
