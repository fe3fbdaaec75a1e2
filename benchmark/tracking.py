"""Optional experiment trackers: TensorBoard and Weights & Biases (``--log tensorboard,wandb``).

Nothing is required by default: the run folder (``metrics.jsonl``, ``final.json``) is the
record and the report reads only that. With ``--log`` (on ``train`` and ``sweep run``) rank 0
also sends, after every epoch, the loss (and each loss term), the lr, top-1 / top-5 and
Many / Medium / Few (on epochs that test, see ``eval_every``), and at the end the final
metrics and the confusion matrix:

    tensorboard   torch.utils.tensorboard's SummaryWriter into <run>/tensorboard
                  (``tensorboard --logdir results/runs``); a resumed run drops the events
                  past its checkpoint (purge_step), so the curves have no doubled epochs
    wandb         wandb.init(project=$WANDB_PROJECT or "lt-skeleton-bench", id=<run_id>,
                  resume="allow", dir=<run>): a resumed run continues its W&B run
                  (WANDB_MODE=offline works without an account)

Decisions: ``--log`` is a flag, not a TrainConfig field, because logging is not maths: the run
id hashes the resolved config, and the same run must resume with or without a tracker. A
backend asked for but not installed is an error before anything runs (exit 2, one line): the
user asked for it, and a 2-day run that silently logs nothing is worse than no run. A backend
that fails DURING a run (a network error) is dropped with a warning: the run's own files are
the result and a tracker must never kill it.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
from pathlib import Path
from typing import Any, Iterable

from .errors import BenchmarkError

log = logging.getLogger(__name__)

BACKENDS = {  # name -> (module to import, how to install it)
    "tensorboard": ("torch.utils.tensorboard", "pip install tensorboard"),
    "wandb": ("wandb", "pip install wandb"),
}
WANDB_PROJECT = "lt-skeleton-bench"  # $WANDB_PROJECT wins
METRICS = ("top1", "top5", "many", "medium", "few")


def add_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log", default=None, metavar="BACKENDS",
                   help="also log to tensorboard and/or wandb (comma list; optional packages): "
                        "per-epoch loss, lr, top-1, many/medium/few, final confusion matrix")


def parse(text: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"tensorboard,wandb"`` -> ("tensorboard", "wandb"); unknown names are errors."""
    if not text:
        return ()
    items = text.split(",") if isinstance(text, str) else list(text)
    names = tuple(dict.fromkeys(n.strip().lower() for n in items if n.strip()))
    for n in names:
        if n not in BACKENDS:
            raise BenchmarkError(f"--log {n}: unknown tracker (known: {', '.join(BACKENDS)})")
    return names


def check(names: Iterable[str]) -> tuple[str, ...]:
    """Import each backend now, before anything runs; a missing one is a one-line error."""
    names = parse(list(names))
    for n in names:
        module, install = BACKENDS[n]
        try:
            importlib.import_module(module)
        except Exception as e:  # ImportError, or a broken install (protobuf mismatch, ...)
            missing = isinstance(e, ImportError)
            raise BenchmarkError(
                f"--log {n}: {'not installed' if missing else f'cannot be imported ({type(e).__name__}: {e})'}"
                f"; `{install}`, or drop --log {n} (nothing was run)") from None
    return names


class Trackers:
    """The trackers of one run (rank 0); every method is a no-op without backends."""

    def __init__(self, names: Iterable[str] = ()):
        self.names = check(names)
        self._live: dict[str, Any] = {}

    def open(self, run_dir: Path, run_id: str, meta: dict[str, Any], start_step: int = 0) -> None:
        for n in self.names:
            self._guard(n, lambda: self._live.__setitem__(
                n, _OPEN[n](Path(run_dir), run_id, meta, start_step)), "starting")

    def epoch(self, record: dict[str, Any]) -> None:
        scalars = epoch_scalars(record)
        for n, t in list(self._live.items()):
            self._guard(n, lambda: t.scalars(scalars, int(record["global_epoch"])), "logging")

    def final(self, final: dict[str, Any]) -> None:
        for n, t in list(self._live.items()):
            self._guard(n, lambda: t.final(final), "logging the result")

    def close(self) -> None:
        for n, t in list(self._live.items()):
            self._guard(n, t.close, "closing")
        self._live.clear()

    def _guard(self, name: str, fn: Any, what: str) -> None:
        try:
            fn()
        except Exception as e:  # never kill a run over its tracker (module docstring)
            log.warning("--log %s: failed %s (%s: %s); the run goes on without it", name, what,
                        type(e).__name__, e)
            t = self._live.pop(name, None)
            if t is not None and what != "closing":
                try:
                    t.close()
                except Exception:
                    pass


def epoch_scalars(record: dict[str, Any]) -> dict[str, float]:
    """A metrics.jsonl record as tracker scalars (untested epochs have no test metrics)."""
    out: dict[str, float] = {"train/lr": float(record["lr"])}
    if record.get("loss") is not None:
        out["train/loss"] = float(record["loss"])
    terms = record.get("loss_terms") or {}
    if len(terms) > 1:  # one term is the loss itself
        out.update({f"train/loss_{k}": float(v) for k, v in terms.items()})
    out.update({f"test/{k}": float(record[k]) for k in METRICS if record.get(k) is not None})
    return out


def final_scalars(final: dict[str, Any]) -> dict[str, float]:
    return {f"final/{k}": float(final[k]) for k in METRICS if final.get(k) is not None}


def normalised_confusion(final: dict[str, Any]) -> Any:
    """Rows (true classes) as fractions of that class's test clips."""
    import numpy as np

    cm = np.asarray(final["confusion_matrix"], dtype=np.float64)
    return cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)


# ------------------------------------------------------------------------------ backends
class _TensorBoard:
    def __init__(self, run_dir: Path, run_id: str, meta: dict[str, Any], start_step: int):
        import json

        from torch.utils.tensorboard import SummaryWriter

        # purge_step: events of epochs past the checkpoint (a killed run) are dropped on resume
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"),
                                    purge_step=start_step or None)
        self.step = start_step
        if not start_step:
            self.writer.add_text("run", f"run {run_id}\n\n```\n{json.dumps(meta, indent=1)}\n```", 0)

    def scalars(self, values: dict[str, float], step: int) -> None:
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)
        self.step = step
        self.writer.flush()

    def final(self, final: dict[str, Any]) -> None:
        for k, v in final_scalars(final).items():
            self.writer.add_scalar(k, v, self.step)
        self.writer.add_figure("test/confusion_matrix", _confusion_figure(final), self.step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _Wandb:
    def __init__(self, run_dir: Path, run_id: str, meta: dict[str, Any], start_step: int):
        import wandb

        self.wandb = wandb
        request = meta.get("request", {})
        name = " ".join(str(request.get(k)) for k in ("method", "dataset") if request.get(k))
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", WANDB_PROJECT), id=run_id,
                              name=f"{name} seed {request.get('seed', 0)} ({run_id})".strip(),
                              resume="allow", dir=str(run_dir), config=meta)

    def scalars(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def final(self, final: dict[str, Any]) -> None:
        self.run.summary.update(final_scalars(final))
        cm = final["confusion_matrix"]
        rows = [[i, j, int(c)] for i, row in enumerate(cm) for j, c in enumerate(row) if c]
        table = self.wandb.Table(columns=["actual", "predicted", "count"], data=rows)
        self.run.log({"test/confusion_matrix": table})

    def close(self) -> None:
        self.run.finish()


_OPEN = {"tensorboard": _TensorBoard, "wandb": _Wandb}


def _confusion_figure(final: dict[str, Any]) -> Any:
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    cm = normalised_confusion(final)
    fig = Figure(figsize=(6, 5))
    ax = fig.add_subplot()
    im = ax.imshow(cm, vmin=0, vmax=1, cmap="viridis")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"confusion (row-normalised), top-1 {100 * final['top1']:.1f}%")
    fig.colorbar(im, ax=ax)
    return fig
