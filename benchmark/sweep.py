"""Resumable sweeps: run every missing run of a list of specs, with parallel local workers, a
``--shard i/n`` split, or a Slurm job array (``sbatch``).

GPUs: ``--devices 0,1,2,3`` gives each local worker its own GPUs (the worker's
CUDA_VISIBLE_DEVICES); ``--gpus-per-run k`` launches each run with torchrun on k of them
(DDP, ``python -m torch.distributed.run --standalone --nproc_per_node k``), so 4 devices
make 4 workers of 1 GPU or 2 workers of 2. With ``--device cuda`` and no ``--devices`` the
visible GPUs are used. The Slurm array requests exactly what one run uses (k GPUs, k x
threads CPUs, one task) and starts torchrun inside the job for k > 1. A k-process run is
another run than a 1-process one (the DDP world size is part of its identity), so ``status``
and ``report`` take the same ``--gpus-per-run``.

The state lives on the filesystem (DomainBed's sweep), keyed by each run's content-keyed id
(:mod:`benchmark.identity`; the stores are resolved once, before anything starts): a run
folder with ``done`` and a valid ``final.json`` is done, or ``stale`` when the code that made
it (its method's module and the harness) has changed since (``--rerun-stale`` redoes those,
moving the old folder to ``<out>/_stale/``); ``done`` with a broken ``final.json`` is
``broken`` and redone; a folder whose ``.lock`` another process holds is running (a worker
that finds its run held by another sweep reports "running elsewhere", not a failure); a
folder without ``done`` is unfinished and is resumed from its ``last.pt``; no folder is
missing. A worker that fails
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
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from . import _io
from .errors import BenchmarkError
from .launch import SLURM_THREADS, SWEEP_DIR, plan_slots, slurm_script, worker_command
from .spec import ResolvedRun, RunSpec, resolve_run

log = logging.getLogger(__name__)

STATES = ("done", "stale", "broken", "running", "unfinished", "failed", "missing")
STALE_DIR = "_stale"
EXIT_RUNNING_ELSEWHERE = 75  # a worker whose run another process holds (EX_TEMPFAIL)
TAIL_LINES = 8


@dataclass
class RunState:
    run: ResolvedRun
    state: str                      # one of STATES
    detail: str = ""                # failed: the last lines of the log; stale: changed files

    @property
    def spec(self) -> RunSpec:
        return self.run.spec

    @property
    def run_id(self) -> str:
        return self.run.run_id


def resolve_all(specs: Iterable[RunSpec], data_root: str | os.PathLike | None = None,
                device_type: str = "cpu", world_size: int = 1) -> list[ResolvedRun]:
    """Every spec's identity, resolved once before a sweep starts: a missing store or a bad
    split list is one error line here, not one failed run per spec. Runs that resolve to one
    identity (one content asked for two ways) are kept once. ``world_size``: processes per
    run (``--gpus-per-run``; SyncBatchNorm on CUDA when > 1, as the runner does)."""
    seen: dict[str, ResolvedRun] = {}
    for spec in specs:
        r = resolve_run(spec, data_root, device_type, world_size,
                        sync_bn=world_size > 1 and device_type == "cuda")
        seen.setdefault(r.run_id, r)
    return list(seen.values())


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
    """The i-th of n disjoint parts, by request key (stable whatever the order or machine)."""
    return [s for s in specs if int(s.request_key, 16) % n == i - 1]


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


def state_of(run: ResolvedRun, out: Path) -> RunState:
    from .identity import changed_files, code_digest
    from .runner import final_problem

    run_dir = out / run.run_id
    if (run_dir / "done").is_file():
        problem = final_problem(run_dir)
        if problem is not None:
            return RunState(run, "broken", problem)
        try:
            final = json.loads((run_dir / "final.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return RunState(run, "broken", "final.json is unreadable")
        code = code_digest(run.spec.method, run.spec.backbone)
        old = final.get("code")
        if not isinstance(old, dict) or old.get("digest") != code["digest"]:
            return RunState(run, "stale", "made by other code: " + ", ".join(changed_files(old, code)))
        return RunState(run, "done")
    if run_dir.is_dir() and is_locked(run_dir):
        return RunState(run, "running")
    failed = _failed_path(out, run.run_id)
    if failed.is_file():
        try:
            info = json.loads(failed.read_text(encoding="utf-8"))
            tail = info.get("tail", []) if isinstance(info, dict) else []
        except (OSError, ValueError):
            tail = [f"({failed} is unreadable)"]
        return RunState(run, "failed", "\n".join(str(t) for t in tail))
    if run_dir.is_dir():
        return RunState(run, "unfinished")
    return RunState(run, "missing")


def statuses(runs: Iterable[ResolvedRun], out: str | os.PathLike) -> list[RunState]:
    out = Path(out)
    return [state_of(r, out) for r in runs]


def describe(spec: RunSpec) -> str:
    """A short human label: method, its non-default options, data, seed."""
    hp = ",".join(f"{k}={v}" for k, v in sorted(spec.hparams.items()))
    data = spec.dataset + (f" IF{spec.imbalance:g}" if spec.imbalance else "")
    bb = "" if spec.backbone == "ctrgcn" else f" on {spec.backbone}"
    train = ",".join(f"{k}={v}" for k, v in sorted(spec.train.items()))
    return (f"{spec.method}{'[' + hp + ']' if hp else ''}{bb} {data} {spec.profile}"
            f"{'[' + train + ']' if train else ''} seed {spec.seed}")


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
    run: ResolvedRun
    proc: subprocess.Popen
    log_path: Path
    started: float
    slot: int = 0  # the worker's index (its GPUs under --devices)

    @property
    def spec(self) -> RunSpec:
        return self.run.spec


def run_local(runs: list[ResolvedRun], out: str | os.PathLike, workers: int | None = 1,
              threads: int | None = None, device: str = "cpu",
              data_root: str | None = None, rerun_stale: bool = False,
              devices: Sequence[str] | None = None, gpus_per_run: int = 1,
              plugins: Sequence[str] = (), log_to: Sequence[str] = ()) -> dict[str, int]:
    """Run every run that is not done / running elsewhere, ``workers`` at a time.

    ``devices``: GPU ids (CUDA_VISIBLE_DEVICES values) shared out between the workers,
    ``gpus_per_run`` to each (:func:`plan_slots`; ``workers`` None: as many as they make);
    ``gpus_per_run`` > 1 starts each run under torchrun. ``plugins`` (canonical, see
    :mod:`benchmark.plugins`) and ``log_to`` (trackers) are passed on to every worker.
    Returns the counts of runs by outcome. Progress for the whole sweep goes to the log.
    """
    out = Path(out)
    slots = plan_slots(devices, workers, gpus_per_run)
    workers = len(slots)
    states = statuses(runs, out)
    redo = ("missing", "unfinished", "failed", "broken") + (("stale",) if rerun_stale else ())
    # seed by seed (stable within a seed): an interrupted sweep leaves whole one-seed tables
    todo = sorted((st.run for st in states if st.state in redo), key=lambda r: r.spec.seed)
    kept = ("done",) if rerun_stale else ("done", "stale")
    counts = {"done before": sum(st.state in kept for st in states),
              "running elsewhere": sum(st.state == "running" for st in states),
              "finished": 0, "failed": 0}
    stale = [st for st in states if st.state == "stale"]
    if stale and not rerun_stale:
        log.info("sweep: %d done run(s) were made by other code (stale; kept as results; "
                 "--rerun-stale redoes them)", len(stale))
    if not todo:
        log.info("sweep: all %d run(s) done or running elsewhere; nothing to do", len(runs))
        return counts
    threads = threads or max(1, (os.cpu_count() or 1) // max(1, workers * gpus_per_run))
    (out / SWEEP_DIR).mkdir(parents=True, exist_ok=True)
    log.info("sweep: %d run(s): %d done, %d running elsewhere, %d to run with %d worker(s) x %d "
             "thread(s)%s%s", len(runs), counts["done before"], counts["running elsewhere"],
             len(todo), workers, threads,
             f" x {gpus_per_run} process(es) (torchrun)" if gpus_per_run > 1 else "",
             "; GPUs " + " | ".join(",".join(g) for g in slots) if slots[0] is not None else "")
    queue, running = list(todo), []
    durations: list[float] = []
    t0 = time.time()
    try:
        while queue or running:
            while queue and len(running) < workers:
                run = queue.pop(0)
                st = state_of(run, out).state
                if st in ("done", "running") or (st == "stale" and not rerun_stale):
                    continue  # another sweep took it
                if st == "stale":
                    _retire(out, run.run_id)
                slot = min(set(range(workers)) - {j.slot for j in running})
                running.append(_launch(run, out, threads, device, data_root, slot, slots[slot],
                                       gpus_per_run, plugins, log_to))
            time.sleep(0.5)
            for job in [j for j in running if j.proc.poll() is not None]:
                running.remove(job)
                dt = time.time() - job.started
                outcome = _finish(job, out)
                key = {"done": "finished", "elsewhere": "running elsewhere"}.get(outcome, "failed")
                counts[key] += 1
                if outcome == "done":
                    durations.append(dt)
                n_done = counts["finished"] + counts["failed"] + counts["running elsewhere"]
                left = len(queue) + len(running)
                eta = (sum(durations) / len(durations) * left / workers) if durations else None
                word = {"done": "done", "elsewhere": "running elsewhere"}.get(outcome, "FAILED")
                log.info("[sweep %d/%d] %s %s (%.0f s) | %d running, %d queued, %d failed%s",
                         n_done, len(todo), word, describe(job.spec), dt,
                         len(running), len(queue), counts["failed"],
                         f", ~{eta / 60:.0f} min left" if eta is not None else "")
    except BaseException:
        for job in running:  # stop the workers; their last checkpoints make them resumable
            _stop(job.proc)
        raise
    log.info("sweep: %d finished, %d failed, %d running elsewhere in %.1f min", counts["finished"],
             counts["failed"], counts["running elsewhere"], (time.time() - t0) / 60)
    return counts


def _retire(out: Path, run_id: str) -> Path:
    """Move a stale run's folder to ``<out>/_stale/<run_id>-<time>`` (kept, never deleted)."""
    dest = out / STALE_DIR / f"{run_id}-{time.strftime('%Y%m%dT%H%M%S')}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(out / run_id, dest)
    log.info("sweep: stale run %s moved to %s; running it again", run_id, dest)
    return dest


def _launch(run: ResolvedRun, out: Path, threads: int, device: str, data_root: str | None,
            slot: int = 0, gpus: tuple[str, ...] | None = None, gpus_per_run: int = 1,
            plugins: Sequence[str] = (), log_to: Sequence[str] = ()) -> _Job:
    spec = run.spec
    log_path = out / SWEEP_DIR / f"{run.run_id}.log"
    cmd = worker_command(spec, out, threads, device, data_root, gpus_per_run, plugins, log_to)
    fh = open(log_path, "a", encoding="utf-8")
    fh.write(f"=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {describe(spec)}"
             f"{' on GPU ' + ','.join(gpus) if gpus is not None else ''}\n")
    fh.flush()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env,
                            preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    fh.close()  # the child holds its own copy
    return _Job(run, proc, log_path, time.time(), slot)


def _finish(job: _Job, out: Path) -> str:
    """"done", "elsewhere" (another process holds the run) or "failed" (recorded)."""
    rc = job.proc.returncode
    run_id = job.run.run_id
    failed = _failed_path(out, run_id)
    if rc == 0 and (out / run_id / "done").is_file():
        failed.unlink(missing_ok=True)
        return "done"
    if rc == EXIT_RUNNING_ELSEWHERE:
        return "elsewhere"
    tail = _tail(job.log_path)
    _io.write_json(failed, {"run_id": run_id, "spec": job.spec.to_dict(), "returncode": rc,
                            "time": time.time(), "log": str(job.log_path), "tail": tail})
    return "failed"


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
def run_slurm(runs: list[ResolvedRun], out: str | os.PathLike, device: str = "cuda",
              data_root: str | None = None, threads: int | None = None, gpus_per_run: int = 1,
              plugins: Sequence[str] = (), log_to: Sequence[str] = (),
              partition: str | None = None, time_min: int | None = None) -> dict[str, Any]:
    """Submit the runs that are not done / running as one Slurm job array with ``sbatch``.

    Writes ``<out>/_sweep/slurm/<time>.sbatch`` (+ ``.specs.jsonl``, one run per line) and
    submits it. Returns {"runs", "script", "job"} (no runs: nothing written). Without
    ``sbatch`` on PATH the script is kept and the error says how to submit it.
    """
    out = Path(out)
    todo = [st.spec for st in statuses(runs, out) if st.state not in ("done", "stale", "running")]
    if not todo:
        return {"runs": 0, "script": None, "job": None}
    folder = out / SWEEP_DIR / "slurm"
    stem = folder / time.strftime("%Y%m%dT%H%M%S")
    specs_file = stem.with_suffix(".specs.jsonl")
    _io.write_text(specs_file, "".join(json.dumps(s.to_dict(), sort_keys=True) + "\n" for s in todo))
    script = stem.with_suffix(".sbatch")
    _io.write_text(script, slurm_script(len(todo), specs_file, out, device,
                                        threads or SLURM_THREADS, gpus_per_run, data_root, plugins,
                                        log_to, partition, time_min))
    if shutil.which("sbatch") is None:
        raise BenchmarkError(f"--launcher slurm: no sbatch on PATH (not a Slurm login node); "
                             f"the job script is ready: sbatch {script}")
    done = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise BenchmarkError(f"sbatch {script} failed: {last}")
    return {"runs": len(todo), "script": script, "job": done.stdout.strip().split(";")[0]}


def run_one(spec_json: str, out: str, threads: int | None, device: str,
            data_root: str | None, log_to: Sequence[str] = ()) -> int:
    """The worker: train one spec (resuming it); the sweep reads the outcome from the folder."""
    from .runner import run

    try:
        spec = RunSpec.from_dict(json.loads(spec_json))
    except (ValueError, TypeError) as e:
        raise BenchmarkError(f"--spec-json: not a run spec ({e})") from None
    from .runner import RunLocked

    try:
        result = run(spec, out, device, data_root, threads, log_to_trackers=log_to)
    except RunLocked as e:
        print(f"running elsewhere: {e}")
        return EXIT_RUNNING_ELSEWHERE
    print(f"{result.run_dir}: {result.status}")
    return 0


def with_seeds(specs: list[RunSpec], seeds: Iterable[int]) -> list[RunSpec]:
    return [dataclasses.replace(s, seed=k) for s in specs for k in seeds]
