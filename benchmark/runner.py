"""One run on disk: ``<out>/<run_id>/`` with resumable state and the result files.

    spec.json      the run's identity (what run_id hashes: benchmark.identity), the request
                   (RunSpec) that first made it, and the code digest it started with
    env.json       versions, device, threads, git commit (of the first start)
    log.txt        the log of every start (appended; a resume says so)
    metrics.jsonl  one JSON line per finished epoch (rebuilt from last.pt's history each epoch)
    last.pt        resumable state after every epoch (benchmark.ckpt), written atomically
    final.json     the reported metrics of the LAST epoch + best-epoch-on-test (labelled),
                   the identity and the digest of the code that finished it
    logits.npy     float32 test logits, test-index order (float16 in runs made before
                   the ensembles: ``python -m benchmark ensemble`` reads both)
    test_labels.npy  the test labels in the same order (int32; what an ensemble scores against)
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
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from . import __version__, _io, metrics
from .ckpt import load_checkpoint, save_checkpoint
from .config import TrainConfig, config_dict, make_config
from .dist import DistInfo, process_group
from .errors import BenchmarkError
from .seed import configure_determinism
from .identity import changed_files, code_digest
from .spec import RunData, RunSpec, load_run_data, normalise, resolve_run
from .tracking import Trackers

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
    run_id: str = ""


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
        # the GPUs this process was given (a sweep's --devices pins each worker's)
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
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


class RunLocked(BenchmarkError):
    """The run is being trained by another process (a sweep calls it "running elsewhere")."""


def final_problem(run_dir: Path) -> str | None:
    """Why ``run_dir/final.json`` cannot be a finished run's result, or None if it can."""
    path = run_dir / "final.json"
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "final.json is missing"
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return f"final.json is unreadable ({type(e).__name__}: {str(e)[:80]})"
    if not isinstance(d, dict) or not isinstance(d.get("top1"), (int, float)) \
            or not isinstance(d.get("identity"), dict):
        return "final.json lacks the result fields (top1, identity)"
    return None


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    fd = os.open(run_dir / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(f"{run_dir}: another process is training this run") from None
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
                 history: list[dict[str, Any]], params: dict[str, int] | None = None,
                 identity: dict[str, Any] | None = None, run_id: str | None = None,
                 code: dict[str, Any] | None = None) -> dict[str, Any]:
    """final.json: last-epoch metrics (the reported number) + the labelled best-on-test epoch.

    Timing lives only under "timing" so that comparing two runs' results can drop one key.
    """
    m = metrics.summarize(logits, data.test_labels, data.class_counts, full=True)
    last = history[-1] if history else {}
    best = metrics.best_epoch(history)
    out = {
        "run_id": run_id, "spec": spec.to_dict(), "request_key": spec.request_key,
        "identity": identity, "code": code,
        "config": config_dict(cfg),
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


def check_out_dir(out: str | os.PathLike) -> Path:
    """``--out`` must be a folder we can write (checked before any work is done)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BenchmarkError(f"{out}: --out names a file, not a folder of run folders")
    probe = out if out.is_dir() else next((p for p in out.parents if p.exists()), Path("."))
    if not os.access(probe, os.W_OK | os.X_OK):
        raise BenchmarkError(f"{probe}: not writable (permission denied); choose another --out")
    return out


def check_threads(threads: int | None) -> None:
    if threads is not None and threads < 1:
        raise BenchmarkError(f"--threads must be >= 1, got {threads}")


def run(spec: RunSpec, out: str | os.PathLike = DEFAULT_OUT, device: str = "cpu",
        data_root: str | os.PathLike | None = None, threads: int | None = None,
        dist_backend: str | None = None, log_to_trackers: Sequence[str] = ()) -> RunResult:
    """Train ``spec`` into ``<out>/<run_id>/``, resuming an unfinished run; a done run is skipped.

    The run id is the identity of what this process trains (the data it just loaded, the
    resolved config, the numerics); see :mod:`benchmark.identity`. Under torchrun
    (WORLD_SIZE > 1) this is one rank of a DDP run (:mod:`benchmark.dist`); every rank calls
    it with the same arguments. ``log_to_trackers``: optional TensorBoard / W&B logging on
    rank 0 (:mod:`benchmark.tracking`; a missing package fails here, before any work).
    """
    spec = normalise(spec)
    check_threads(threads)
    out = check_out_dir(out)
    trackers = Trackers(log_to_trackers)
    with process_group(resolve_device(device), dist_backend) as dist, _quiet_unless(dist.is_main):
        cfg = resolve_config(spec)
        data = load_run_data(spec, cfg, data_root)
        resolved = resolve_run(spec, data_root, dist.device.type, dist.world_size, dist.sync_bn,
                               data=data)
        run_dir = out / resolved.run_id
        done = dist.broadcast_object(_is_done(run_dir) if dist.is_main else None)
        if done:
            log.info("run %s is already done (%s); nothing to do", resolved.run_id, run_dir)
            return RunResult("already done", run_dir, rank=dist.rank, run_id=resolved.run_id)
        determinism = configure_determinism(dist.device, threads)
        from .train import Trainer  # imported here: torch-heavy modules only when training

        trainer = Trainer(spec, cfg, data, dist.device, dist=dist)
        try:
            if not dist.is_main:
                return _run_ranks(spec, resolved, cfg, data, trainer, run_dir, dist, determinism)
            run_dir.mkdir(parents=True, exist_ok=True)
            with run_lock(run_dir), log_to(run_dir / "log.txt"):
                return _run_ranks(spec, resolved, cfg, data, trainer, run_dir, dist, determinism,
                                  trackers)
        finally:
            trainer.close()
            trackers.close()


def _is_done(run_dir: Path) -> bool:
    """``done`` with a valid final.json. A broken final.json (a disk error, a hand edit) is not
    a result: it and the marker are removed, so the run is redone (resumed from last.pt when
    that holds every epoch, which rewrites final.json at once)."""
    if not (run_dir / "done").is_file():
        return False
    problem = final_problem(run_dir)
    if problem is None:
        return True
    log.warning("%s: marked done but %s; redoing the run", run_dir, problem)
    (run_dir / "done").unlink(missing_ok=True)
    (run_dir / "final.json").unlink(missing_ok=True)
    return False


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


def _plan(spec_json: dict[str, Any], run_id: str, run_dir: Path) -> dict[str, Any]:
    """Rank 0: what to do with the folder (done / resume / fresh), or the error that stops it."""
    if _is_done(run_dir):  # finished by another process while we set up
        return {"action": "done"}
    for stale in run_dir.glob(".*.tmp*"):  # temp files of a process killed mid-write
        stale.unlink(missing_ok=True)
    spec_path, ckpt_path = run_dir / "spec.json", run_dir / "last.pt"
    if spec_path.is_file():
        try:
            on_disk = json.loads(spec_path.read_text(encoding="utf-8")).get("identity")
        except (OSError, ValueError, AttributeError):
            on_disk = None
        if on_disk != spec_json["identity"]:
            return {"error": f"{spec_path}: holds another run than {run_id} (an edited or "
                             f"foreign file, or a run folder of an older version); move the "
                             f"folder away to start this run afresh"}
    if ckpt_path.is_file():
        return {"action": "resume", "epochs": None}
    return {"action": "fresh"}


def _run_ranks(spec: RunSpec, resolved: Any, cfg: TrainConfig, data: RunData, trainer: Any,
               run_dir: Path, dist: DistInfo, determinism: dict[str, Any],
               trackers: Trackers | None = None) -> RunResult:
    trackers = trackers or Trackers()  # rank 0's; the other ranks log nothing
    run_id, identity = resolved.run_id, resolved.identity
    spec_json = {"run_id": run_id, "identity": identity, "request": spec.to_dict()}
    ckpt_path = run_dir / "last.pt"
    plan: dict[str, Any] = {}
    if dist.is_main:
        try:
            plan = _plan(spec_json, run_id, run_dir)
            if plan.get("action") == "resume":
                _resume(trainer, ckpt_path, identity, dist.device)
                plan["epochs"] = len(trainer.history)
        except BenchmarkError as e:  # every rank must hear about it, or the others would hang
            plan = {"error": str(e)}
    plan = dist.broadcast_object(plan)
    if "error" in plan:
        raise BenchmarkError(plan["error"] if dist.is_main else f"rank 0: {plan['error']}")
    if plan["action"] == "done":
        return RunResult("already done", run_dir, rank=dist.rank, run_id=run_id)
    if plan["action"] == "resume" and not dist.is_main:
        _resume(trainer, ckpt_path, identity, dist.device)
        if len(trainer.history) != plan["epochs"]:
            raise BenchmarkError(f"rank {dist.rank} read {len(trainer.history)} epoch(s) from "
                                 f"{ckpt_path}, rank 0 {plan['epochs']}: is --out on a filesystem "
                                 f"every node sees?")
    started_code = None
    if dist.is_main:
        if plan["action"] == "resume":
            log.info("resuming run %s from %s: %d epoch(s) done", run_id, ckpt_path,
                     len(trainer.history))
            try:
                started_code = json.loads((run_dir / "spec.json").read_text(encoding="utf-8")).get("code")
            except (OSError, ValueError, AttributeError):
                started_code = None
        else:
            started_code = code_digest(spec.method, spec.backbone)
            _io.write_json(run_dir / "spec.json", {**spec_json, "code": started_code})
            _io.write_json(run_dir / "env.json", {**env_info(dist.device, determinism, dist),
                                                  "config": config_dict(cfg), "data": data.describe(),
                                                  "started": time.time()})
            log.info("run %s: %s on %s (%s), %d epochs, device %s%s", run_id, spec.method,
                     data.lt.dataset, spec.profile, trainer.total_epochs, dist.device,
                     f", DDP {dist.world_size} ranks ({dist.backend}, "
                     f"{'SyncBatchNorm' if dist.sync_bn else 'per-rank BatchNorm'})" if dist.enabled else "")
        _write_metrics(run_dir, trainer.history)
        trackers.open(run_dir, run_id, {**spec_json, "config": config_dict(cfg)},
                      len(trainer.history))

    def checkpoint(t: Any, record: dict[str, Any]) -> None:
        if dist.is_main:
            save_checkpoint(ckpt_path, {**t.state_dict(), "spec": spec_json})
            _write_metrics(run_dir, t.history)
            trackers.epoch(record)
        dist.barrier()  # no rank runs ahead of the checkpoint that a resume would start from

    logits = trainer.fit(checkpoint)
    if dist.enabled:  # fit checked this after every epoch; the line records that it held
        log.info("DDP: the %d model replicas are identical (state sha256 %s)", dist.world_size,
                 dist.check_replicas(trainer.model, "at the end"))
    code = code_digest(spec.method, spec.backbone)
    if started_code is not None and started_code.get("digest") != code["digest"]:
        code = {**code, "changed_during_run": changed_files(started_code, code)}
        log.warning("run %s: the code changed while it trained (%s); final.json records it",
                    run_id, ", ".join(code["changed_during_run"]))
    final = final_report(spec, cfg, data, logits, trainer.history, count_params(trainer.model),
                         identity, run_id, code)
    if dist.is_main:
        # float32: an ensemble with weights (1, 0) gives this run's numbers exactly (float16
        # rounding turns near-ties into other predictions)
        _io.save_npy(run_dir / "logits.npy", logits.astype(np.float32))
        _io.save_npy(run_dir / "test_labels.npy", np.asarray(data.test_labels, dtype=np.int32))
        _io.write_json(run_dir / "final.json", final)
        _io.write_text(run_dir / "done", f"{time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
        trackers.final(final)
        g = final
        log.info("run %s done: top1 %s top5 %s many/med/few %s/%s/%s (last epoch; best on test: "
                 "%s at epoch %s)", run_id,
                 *(_pct(g[k]) for k in ("top1", "top5", "many", "medium", "few")),
                 _pct(g["best_epoch_on_test"]["top1"]) if g["best_epoch_on_test"] else "--",
                 g["best_epoch_on_test"]["epoch"] + 1 if g["best_epoch_on_test"] else "--")
    dist.barrier()  # the run is finished (final.json written) when any rank returns
    return RunResult("finished", run_dir, final, rank=dist.rank, run_id=run_id)


def _resume(trainer: Any, ckpt_path: Path, identity: dict[str, Any], dev: torch.device) -> None:
    try:
        state = load_checkpoint(ckpt_path, map_location=dev)
    except BenchmarkError as e:
        raise BenchmarkError(f"{e}; delete {ckpt_path} (or its run folder) to restart the run "
                             f"from scratch") from None
    saved = (state.get("spec") or {}).get("identity") if isinstance(state.get("spec"), dict) else None
    if saved != identity:
        raise BenchmarkError(f"{ckpt_path}: checkpoint of another run ({identity_difference(saved, identity)}); "
                             f"delete it (or move the run folder away) to start afresh")
    trainer.load_state_dict(state)


def identity_difference(old: Any, new: dict[str, Any]) -> str:
    """The first parts in which two identities differ, said for a person."""
    if not isinstance(old, dict):
        return "it records no identity: written by an older version"
    diffs = []
    for part in sorted(set(old) | set(new)):
        a, b = old.get(part), new.get(part)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            what = {"data": "trained on other data", "config": "another training config",
                    "hparams": "other method hyper-parameters",
                    "numerics": "other numerics"}.get(part, part)
            diffs.append(f"{what}: " + ", ".join(f"{k} {_short(a.get(k))} -> now {_short(b.get(k))}"
                                                 for k in keys[:3]))
        else:
            diffs.append(f"{part} {_short(a)} -> now {_short(b)}")
    return "; ".join(diffs) or "identical"


def _short(v: Any) -> str:
    text = json.dumps(v) if not isinstance(v, str) else v
    return text[:12] + "..." if len(text) > 15 else text


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
    try:
        trainer.model.load_state_dict(obj["model"])
        trainer.method.load_state_dict(obj["method"])
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        trainer.close()
        raise BenchmarkError(f"checkpoint does not fit {data.lt.dataset} {data.lt.protocol} "
                             f"({data.num_classes} classes, {data.num_point} joints, "
                             f"{data.num_person} persons): {_first_mismatch(e)}") from None
    trainer.model.to(device)
    return trainer


def _first_mismatch(e: Exception) -> str:
    """The first useful line of a load_state_dict error (torch lists every tensor)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    detail = next((ln for ln in lines if "size mismatch" in ln or "Missing key" in ln
                   or "Unexpected key" in ln), lines[0] if lines else type(e).__name__)
    return detail[:200]
