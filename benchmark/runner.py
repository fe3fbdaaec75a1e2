"""One run on disk: ``<out>/<run_id>/`` with resumable state and the result files.

    spec.json      the RunSpec (canonical, what run_id hashes)
    env.json       versions, device, threads, git commit (of the first start)
    log.txt        the log of every start (appended; a resume says so)
    metrics.jsonl  one JSON line per finished epoch (rebuilt from last.pt's history each epoch)
    last.pt        resumable state after every epoch (benchmark.ckpt), written atomically
    final.json     the reported metrics of the LAST epoch + best-epoch-on-test (labelled)
    logits.npy     float16 test logits, test-index order
    done           marker: the run is complete; re-running it does nothing

The state machine follows DomainBed's sweep: ``done`` = finished, a folder without ``done`` =
incomplete (resumed from ``last.pt`` when re-run), no folder = pending. Every setup step that
can fail on bad input (method, overrides, data, model) runs before the folder is created, so a
bad command leaves nothing behind. An exclusive ``flock`` on ``.lock`` stops two processes
from training one run at once; the kernel drops it when a process dies, even by SIGKILL.

Multi-process (torchrun) runs: rank 0 alone owns the folder (lock, log, every file above);
it decides whether the run is done, fresh or resumed and broadcasts that plan, every rank
resumes from the same ``last.pt`` (checked against the plan), and the other ranks wait at a
barrier after each epoch's checkpoint and at the end.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from . import __version__, _io, metrics
from .ckpt import load_checkpoint, save_checkpoint
from .config import TrainConfig, config_dict, make_config
from .dist import DistInfo, process_group
from .errors import BenchmarkError
from .seed import configure_determinism
from .spec import RunData, RunSpec, load_run_data, normalise

log = logging.getLogger(__name__)

DEFAULT_OUT = Path("results") / "runs"
BEST_NOTE = ("selected on the test set, as the official code reports; for comparison with "
             "published numbers only")


@dataclass
class RunResult:
    status: str          # "finished" | "already done"
    run_dir: Path
    final: dict[str, Any] | None = None
    rank: int = 0        # DDP: only rank 0 reports


def resolve_config(spec: RunSpec) -> TrainConfig:
    cfg = make_config(spec.profile, spec.train)
    return dataclasses.replace(cfg, backbone=spec.backbone)


def env_info(device: torch.device, determinism: dict[str, Any],
             dist: DistInfo | None = None) -> dict[str, Any]:
    """Versions, device, process layout and code version: what a result needs to be reproduced."""
    dist = dist or DistInfo(device=device)
    info: dict[str, Any] = {
        "benchmark": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "numpy": np.__version__, "platform": platform.platform(), "device": str(device),
        "cuda": torch.version.cuda, "cpu_count": os.cpu_count(), **determinism, **dist.describe(),
    }
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
    repo = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                                text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10)
        if commit.returncode == 0:
            info["git_commit"] = commit.stdout.strip()
            info["git_dirty"] = bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):  # no git: the versions above still say a lot
        pass
    return info


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    fd = os.open(run_dir / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BenchmarkError(f"{run_dir}: another process is training this run") from None
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def log_to(path: Path) -> Iterator[None]:
    """Copy every log record of this process into ``path`` (appended; a log is a stream)."""
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()


def count_params(model: torch.nn.Module) -> dict[str, int]:
    """Parameters of the trained model (a DDP wrapper's module): all, and those with grad."""
    model = getattr(model, "module", model)
    ps = list(model.parameters())
    return {"total": sum(p.numel() for p in ps),
            "trainable": sum(p.numel() for p in ps if p.requires_grad)}


def final_report(spec: RunSpec, cfg: TrainConfig, data: RunData, logits: np.ndarray,
                 history: list[dict[str, Any]], params: dict[str, int] | None = None) -> dict[str, Any]:
    """final.json: last-epoch metrics (the reported number) + the labelled best-on-test epoch.

    Timing lives only under "timing" so that comparing two runs' results can drop one key.
    """
    m = metrics.summarize(logits, data.test_labels, data.class_counts, full=True)
    last = history[-1] if history else {}
    best = metrics.best_epoch(history)
    out = {
        "run_id": spec.run_id, "spec": spec.to_dict(), "config": config_dict(cfg),
        "data": data.describe(), "units": "fraction in [0, 1]",
        "top1": m["top1"], "top5": m["top5"], "many": m["many"], "medium": m["medium"],
        "few": m["few"], "params": params,
        "per_class_accuracy": m["per_class_accuracy"],
        "class_counts": [int(c) for c in data.class_counts], "test_counts": m["test_counts"],
        "groups": {"rule": f"training clips: many > {metrics.MANY_THRESHOLD}, medium "
                           f"{metrics.FEW_THRESHOLD}..{metrics.MANY_THRESHOLD}, few < "
                           f"{metrics.FEW_THRESHOLD}; empty group = null",
                   "thresholds": {"many_gt": metrics.MANY_THRESHOLD, "few_lt": metrics.FEW_THRESHOLD},
                   "classes": m["groups"], "sizes": {k: len(v) for k, v in m["groups"].items()}},
        "confusion_matrix": m["confusion_matrix"],
        "selected": {"epoch": last.get("global_epoch"), "rule": "last epoch (no selection)"},
        "epochs": len(history),
        "best_epoch_on_test": None if best is None else {
            "epoch": best["global_epoch"], "stage": best["stage"], "stage_epoch": best["epoch"],
            **{k: best[k] for k in ("top1", "top5", "many", "medium", "few")}, "note": BEST_NOTE},
        "timing": {"epoch_seconds": [h["seconds"]["total"] for h in history],
                   "total_epoch_seconds": sum(h["seconds"]["total"] for h in history)},
    }
    return out


def _write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    # the whole file is rebuilt from the checkpoint's history: it can never hold an epoch
    # the checkpoint does not (a kill between the two writes is repaired by the next one)
    _io.write_text(run_dir / "metrics.jsonl",
                   "".join(json.dumps(h, sort_keys=True) + "\n" for h in history))


def run(spec: RunSpec, out: str | os.PathLike = DEFAULT_OUT, device: str = "cpu",
        data_root: str | os.PathLike | None = None, threads: int | None = None,
        dist_backend: str | None = None) -> RunResult:
    """Train ``spec`` into ``<out>/<run_id>/``, resuming an unfinished run; a done run is skipped.

    Under torchrun (WORLD_SIZE > 1) this is one rank of a DDP run (:mod:`benchmark.dist`);
    every rank calls it with the same arguments.
    """
    spec = normalise(spec)
    run_dir = Path(out) / spec.run_id
    with process_group(resolve_device(device), dist_backend) as dist, _quiet_unless(dist.is_main):
        done = dist.broadcast_object((run_dir / "done").is_file() if dist.is_main else None)
        if done:
            log.info("run %s is already done (%s); nothing to do", spec.run_id, run_dir)
            return RunResult("already done", run_dir, rank=dist.rank)
        determinism = configure_determinism(dist.device, threads)
        cfg = resolve_config(spec)
        data = load_run_data(spec, cfg, data_root)
        from .train import Trainer  # imported here: torch-heavy modules only when training

        trainer = Trainer(spec, cfg, data, dist.device, dist=dist)
        try:
            if not dist.is_main:
                return _run_ranks(spec, cfg, data, trainer, run_dir, dist, determinism)
            run_dir.mkdir(parents=True, exist_ok=True)
            with run_lock(run_dir), log_to(run_dir / "log.txt"):
                return _run_ranks(spec, cfg, data, trainer, run_dir, dist, determinism)
        finally:
            trainer.close()


@contextlib.contextmanager
def _quiet_unless(main: bool) -> Iterator[None]:
    """Ranks other than 0 log warnings only (one copy of every progress line)."""
    root = logging.getLogger()
    old = root.level
    if not main:
        root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.setLevel(old)


def _plan(spec: RunSpec, spec_json: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Rank 0: what to do with the folder (done / resume / fresh), or the error that stops it."""
    if (run_dir / "done").is_file():  # finished by another process while we set up
        return {"action": "done"}
    for stale in run_dir.glob(".*.tmp*"):  # temp files of a process killed mid-write
        stale.unlink(missing_ok=True)
    spec_path, ckpt_path = run_dir / "spec.json", run_dir / "last.pt"
    if spec_path.is_file():
        on_disk = json.loads(spec_path.read_text(encoding="utf-8"))
        if on_disk != spec_json:
            return {"error": f"{spec_path}: holds a different spec than run {spec.run_id} "
                             f"(hash collision or an edited file); move the folder away"}
    if ckpt_path.is_file():
        return {"action": "resume", "epochs": None}
    return {"action": "fresh"}


def _run_ranks(spec: RunSpec, cfg: TrainConfig, data: RunData, trainer: Any, run_dir: Path,
               dist: DistInfo, determinism: dict[str, Any]) -> RunResult:
    spec_json = spec.to_dict()
    ckpt_path = run_dir / "last.pt"
    plan: dict[str, Any] = {}
    if dist.is_main:
        try:
            plan = _plan(spec, spec_json, run_dir)
            if plan.get("action") == "resume":
                _resume(trainer, ckpt_path, spec_json, dist.device)
                plan["epochs"] = len(trainer.history)
        except BenchmarkError as e:  # every rank must hear about it, or the others would hang
            plan = {"error": str(e)}
    plan = dist.broadcast_object(plan)
    if "error" in plan:
        raise BenchmarkError(plan["error"] if dist.is_main else f"rank 0: {plan['error']}")
    if plan["action"] == "done":
        return RunResult("already done", run_dir, rank=dist.rank)
    if plan["action"] == "resume" and not dist.is_main:
        _resume(trainer, ckpt_path, spec_json, dist.device)
        if len(trainer.history) != plan["epochs"]:
            raise BenchmarkError(f"rank {dist.rank} read {len(trainer.history)} epoch(s) from "
                                 f"{ckpt_path}, rank 0 {plan['epochs']}: is --out on a filesystem "
                                 f"every node sees?")
    if dist.is_main:
        if plan["action"] == "resume":
            log.info("resuming run %s from %s: %d epoch(s) done", spec.run_id, ckpt_path,
                     len(trainer.history))
        else:
            _io.write_json(run_dir / "spec.json", spec_json)
            _io.write_json(run_dir / "env.json", {**env_info(dist.device, determinism, dist),
                                                  "config": config_dict(cfg), "data": data.describe(),
                                                  "started": time.time()})
            log.info("run %s: %s on %s (%s), %d epochs, device %s%s", spec.run_id, spec.method,
                     data.lt.dataset, spec.profile, trainer.total_epochs, dist.device,
                     f", DDP {dist.world_size} ranks ({dist.backend}, "
                     f"{'SyncBatchNorm' if dist.sync_bn else 'per-rank BatchNorm'})" if dist.enabled else "")
        _write_metrics(run_dir, trainer.history)

    def checkpoint(t: Any, record: dict[str, Any]) -> None:
        if dist.is_main:
            save_checkpoint(ckpt_path, {**t.state_dict(), "spec": spec_json})
            _write_metrics(run_dir, t.history)
        dist.barrier()  # no rank runs ahead of the checkpoint that a resume would start from

    logits = trainer.fit(checkpoint)
    if dist.enabled:  # fit checked this after every epoch; the line records that it held
        log.info("DDP: the %d model replicas are identical (state sha256 %s)", dist.world_size,
                 dist.check_replicas(trainer.model, "at the end"))
    final = final_report(spec, cfg, data, logits, trainer.history, count_params(trainer.model))
    if dist.is_main:
        _io.save_npy(run_dir / "logits.npy", logits.astype(np.float16))
        _io.write_json(run_dir / "final.json", final)
        _io.write_text(run_dir / "done", f"{time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
        g = final
        log.info("run %s done: top1 %s top5 %s many/med/few %s/%s/%s (last epoch; best on test: "
                 "%s at epoch %s)", spec.run_id,
                 *(_pct(g[k]) for k in ("top1", "top5", "many", "medium", "few")),
                 _pct(g["best_epoch_on_test"]["top1"]) if g["best_epoch_on_test"] else "--",
                 g["best_epoch_on_test"]["epoch"] + 1 if g["best_epoch_on_test"] else "--")
    dist.barrier()  # the run is finished (final.json written) when any rank returns
    return RunResult("finished", run_dir, final, rank=dist.rank)


def _resume(trainer: Any, ckpt_path: Path, spec_json: dict[str, Any], dev: torch.device) -> None:
    state = load_checkpoint(ckpt_path, map_location=dev)
    if state.get("spec") != spec_json:
        raise BenchmarkError(f"{ckpt_path}: checkpoint of a different spec; move the folder away")
    trainer.load_state_dict(state)


def _pct(v: float | None) -> str:
    return "--" if v is None else f"{100 * v:.2f}"


def resolve_device(device: str) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BenchmarkError("--device cuda: no CUDA device is available")
    if dev.type not in ("cpu", "cuda"):
        raise BenchmarkError(f"--device must be cpu or cuda, got {device!r}")
    return dev


def trainer_from_checkpoint(spec: RunSpec, cfg: TrainConfig, data: RunData, obj: dict[str, Any],
                            device: torch.device) -> Any:
    """A Trainer for ``spec`` holding a run checkpoint's model and method state (for ``eval``,
    ``saliency`` and other post-hoc tools); the caller closes it."""
    from .train import Trainer

    trainer = Trainer(spec, cfg, data, device)
    trainer.model.load_state_dict(obj["model"])
    trainer.method.load_state_dict(obj["method"])
    trainer.model.to(device)
    return trainer
