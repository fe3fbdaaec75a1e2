"""``last.pt``: the resumable state of a run, saved atomically, loaded with weights_only.

Contents (enough to resume exactly, also in a second stage): model, optimizer, AMP scaler,
the schedule position (stage index, epochs done in that stage, current lr), the method's own
state, the per-epoch history (so metrics.jsonl can always be rebuilt consistently), every RNG
state (:func:`benchmark.seed.capture_rng`) and the spec as a plain dict. Only tensors,
numbers, strings, lists and dicts go in, so ``torch.load(weights_only=True)`` reads it and a
checkpoint can never execute code.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from . import _io
from .errors import bad_file

log = logging.getLogger(__name__)

FORMAT = "lt-skeleton-bench/last.pt"
VERSION = 1


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` (plus the format tag) to ``path`` atomically: temp file, then rename."""
    with _io.atomic_path(path, suffix=".pt") as tmp:
        torch.save({"format": FORMAT, "version": VERSION, **state}, tmp)


def is_ours(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        BenchmarkError: missing file, not loadable with weights_only, or not one of ours.
    """
    path = Path(path)
    if not path.is_file():
        raise bad_file(path, "no such checkpoint file")
    obj = read_weights_only(path, map_location)
    if not is_ours(obj):
        raise bad_file(path, "not an LT-Skeleton Bench checkpoint (no format tag)")
    if obj.get("version") != VERSION:
        raise bad_file(path, f"checkpoint version {obj.get('version')} (this code reads {VERSION})")
    return obj


def read_weights_only(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # unpickling raises many types; the user needs one line
        raise bad_file(path, f"not a readable weights-only checkpoint ({_reason(e)})") from None


def _reason(e: Exception) -> str:
    """torch's reason, without its advice to retry with weights_only=False: that would let
    the file execute code, which is exactly what a weights-only load exists to prevent."""
    text = str(e)
    if "Weights only load failed" in text or "weights_only" in text:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        detail = next((ln for ln in lines if ln.startswith(("WeightsUnpickler error", "Unsupported"))), "")
        detail = detail.replace("WeightsUnpickler error:", "").strip()
        return "it holds objects a safe load refuses" + (f": {detail[:120]}" if detail else "")
    if isinstance(e, (EOFError,)) or "central directory" in text or "failed reading" in text:
        return "truncated or corrupt file"
    first = (text.strip().splitlines() or [type(e).__name__])[0]
    return first[:160]
