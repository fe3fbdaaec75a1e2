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


def resolve_config(spec: RunSpec) -> TrainConfig:
    cfg = make_config(spec.profile, spec.train)
    return dataclasses.replace(cfg, backbone=spec.backbone)


def env_info(device: torch.device, determinism: dict[str, Any]) -> dict[str, Any]:
    """Versions, device and code version: what a result needs to be reproduced."""
    info: dict[str, Any] = {
        "benchmark": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "numpy": np.__version__, "platform": platform.platform(), "device": str(device),
        "cuda": torch.version.cuda, "cpu_count": os.cpu_count(), **determinism,
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


def final_report(spec: RunSpec, cfg: TrainConfig, data: RunData, logits: np.ndarray,
                 history: list[dict[str, Any]]) -> dict[str, Any]:
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
        "few": m["few"],
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
        data_root: str | os.PathLike | None = None, threads: int | None = None) -> RunResult:
    """Train ``spec`` into ``<out>/<run_id>/``, resuming an unfinished run; a done run is skipped."""
    spec = normalise(spec)
    run_dir = Path(out) / spec.run_id
    if (run_dir / "done").is_file():
        log.info("run %s is already done (%s); nothing to do", spec.run_id, run_dir)
        return RunResult("already done", run_dir)
    dev = resolve_device(device)
    determinism = configure_determinism(dev, threads)
    cfg = resolve_config(spec)
    data = load_run_data(spec, cfg, data_root)
    from .train import Trainer  # imported here: torch-heavy modules only when training

    trainer = Trainer(spec, cfg, data, dev)
    spec_json = spec.to_dict()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        with run_lock(run_dir), log_to(run_dir / "log.txt"):
            return _run_locked(spec, spec_json, cfg, data, trainer, run_dir, dev, determinism)
    finally:
        trainer.close()


def _run_locked(spec: RunSpec, spec_json: dict[str, Any], cfg: TrainConfig, data: RunData,
                trainer: Any, run_dir: Path, dev: torch.device, determinism: dict[str, Any]) -> RunResult:
    if (run_dir / "done").is_file():  # finished by another process while we set up
        return RunResult("already done", run_dir)
    for stale in run_dir.glob(".*.tmp*"):  # temp files of a process killed mid-write
        stale.unlink(missing_ok=True)
    spec_path, ckpt_path = run_dir / "spec.json", run_dir / "last.pt"
    if spec_path.is_file():
        on_disk = json.loads(spec_path.read_text(encoding="utf-8"))
        if on_disk != spec_json:
            raise BenchmarkError(f"{spec_path}: holds a different spec than run {spec.run_id} "
                                 f"(hash collision or an edited file); move the folder away")
    if ckpt_path.is_file():
        state = load_checkpoint(ckpt_path, map_location=dev)
        if state.get("spec") != spec_json:
            raise BenchmarkError(f"{ckpt_path}: checkpoint of a different spec; move the folder away")
        trainer.load_state_dict(state)
        log.info("resuming run %s from %s: %d epoch(s) done", spec.run_id, ckpt_path, len(trainer.history))
    else:
        _io.write_json(spec_path, spec_json)
        _io.write_json(run_dir / "env.json", {**env_info(dev, determinism), "config": config_dict(cfg),
                                              "data": data.describe(), "started": time.time()})
        log.info("run %s: %s on %s (%s), %d epochs, device %s", spec.run_id, spec.method,
                 data.lt.dataset, spec.profile, trainer.total_epochs, dev)
    _write_metrics(run_dir, trainer.history)

    def checkpoint(t: Any, record: dict[str, Any]) -> None:
        save_checkpoint(ckpt_path, {**t.state_dict(), "spec": spec_json})
        _write_metrics(run_dir, t.history)

    logits = trainer.fit(checkpoint)
    final = final_report(spec, cfg, data, logits, trainer.history)
    _io.save_npy(run_dir / "logits.npy", logits.astype(np.float16))
    _io.write_json(run_dir / "final.json", final)
    _io.write_text(run_dir / "done", f"{time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
    g = final
    log.info("run %s done: top1 %s top5 %s many/med/few %s/%s/%s (last epoch; best on test: %s at "
             "epoch %s)", spec.run_id, *(_pct(g[k]) for k in ("top1", "top5", "many", "medium", "few")),
             _pct(g["best_epoch_on_test"]["top1"]) if g["best_epoch_on_test"] else "--",
             g["best_epoch_on_test"]["epoch"] + 1 if g["best_epoch_on_test"] else "--")
    return RunResult("finished", run_dir, final)


def _pct(v: float | None) -> str:
    return "--" if v is None else f"{100 * v:.2f}"


def resolve_device(device: str) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BenchmarkError("--device cuda: no CUDA device is available")
    if dev.type not in ("cpu", "cuda"):
        raise BenchmarkError(f"--device must be cpu or cuda, got {device!r}")
    return dev
