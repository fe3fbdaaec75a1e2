"""Evaluation metrics from saved logits: pure numpy functions, no state.

Conventions (``shot_acc`` and ``Processor.eval`` of Shap-Mix's
``shapley_mix_main_ddp_logits_adjust.py``):

* prediction = argmax of the raw logits; ties go to the lower class index (stable sort), so
  top-1 is consistent with top-k for every k;
* overall top-1 / top-5 are sample-level (the official ``Feeder.top_k``);
* per-class accuracy = correct / test clips of that class; a class with no test clip is NaN
  here and ``None`` in JSON (it is not a 0% class);
* Many / Medium / Few = unweighted mean of the per-class accuracies of the classes with
  > 100 / 20..100 / < 20 TRAINING clips (the official ``shot_acc`` thresholds). A group with no
  class (e.g. Few at IF 10) is ``None``, never 0 as the official code reports it;
* every value is a fraction in [0, 1].
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .data.splits import FEW_THRESHOLD, MANY_THRESHOLD

GROUPS = ("many", "medium", "few")


def _as_logits(logits: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if z.ndim != 2 or y.shape != (z.shape[0],):
        raise ValueError(f"need logits (N, C) and labels (N,), got {z.shape} and {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= z.shape[1]):
        raise ValueError(f"labels must lie in 0..{z.shape[1] - 1}")
    return z, y


def topk_predictions(logits: Any, k: int) -> np.ndarray:
    """(N, k) class indices by decreasing logit; ties broken towards the lower index."""
    z = np.asarray(logits, dtype=np.float64)
    return np.argsort(-z, axis=1, kind="stable")[:, :k]


def topk_accuracy(logits: Any, labels: Any, k: int = 1) -> float:
    """Fraction of samples whose label is among the k highest logits (NaN for no samples)."""
    z, y = _as_logits(logits, labels)
    if y.size == 0:
        return math.nan
    hit = (topk_predictions(z, min(k, z.shape[1])) == y[:, None]).any(axis=1)
    return float(hit.mean())


def confusion_matrix(pred: Any, labels: Any, num_classes: int) -> np.ndarray:
    """(C, C) int64 counts, rows = true class, columns = predicted class."""
    p = np.asarray(pred, dtype=np.int64)
    y = np.asarray(labels, dtype=np.int64)
    if p.shape != y.shape:
        raise ValueError(f"pred and labels differ in shape: {p.shape} vs {y.shape}")
    if p.size and (min(p.min(), y.min()) < 0 or max(p.max(), y.max()) >= num_classes):
        raise ValueError(f"classes must lie in 0..{num_classes - 1}")
    return np.bincount(y * num_classes + p, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Diagonal / row sums; NaN for a class with no test clip."""
    cm = np.asarray(cm)
    rows = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rows > 0, np.diag(cm) / np.maximum(rows, 1), np.nan)


def shot_groups(train_counts: Sequence[int], many: int = MANY_THRESHOLD,
                few: int = FEW_THRESHOLD) -> dict[str, list[int]]:
    """Class indices per group by TRAINING count: > many / few..many / < few."""
    c = np.asarray(train_counts)
    return {"many": np.flatnonzero(c > many).tolist(),
            "medium": np.flatnonzero((c >= few) & (c <= many)).tolist(),
            "few": np.flatnonzero(c < few).tolist()}


def group_accuracy(class_acc: np.ndarray, groups: dict[str, list[int]]) -> dict[str, float | None]:
    """Unweighted mean per group over its classes that have test clips; None if there are none."""
    out: dict[str, float | None] = {}
    for name in GROUPS:
        vals = np.asarray(class_acc, dtype=np.float64)[groups.get(name, [])]
        vals = vals[~np.isnan(vals)]
        out[name] = float(vals.mean()) if vals.size else None
    return out


def _nan_to_none(a: np.ndarray) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in np.asarray(a, dtype=np.float64)]


def summarize(logits: Any, labels: Any, train_counts: Sequence[int],
              full: bool = True) -> dict[str, Any]:
    """Every reported metric of one evaluation.

    Args:
        logits: (N, C) test logits; labels: (N,) test labels.
        train_counts: (C,) training clips per class (defines the groups).
        full: also return per-class accuracy, test counts and the confusion matrix
            (the per-epoch log only needs the scalars).
    Returns:
        JSON-ready dict: top1, top5, many, medium, few (None for an empty group) and, if
        ``full``, per_class_accuracy, test_counts, confusion_matrix, groups.
    """
    z, y = _as_logits(logits, labels)
    C = z.shape[1]
    if len(train_counts) != C:
        raise ValueError(f"{len(train_counts)} class counts for {C} classes")
    cm = confusion_matrix(topk_predictions(z, 1)[:, 0], y, C)
    acc = per_class_accuracy(cm)
    groups = shot_groups(train_counts)
    out: dict[str, Any] = {"top1": topk_accuracy(z, y, 1), "top5": topk_accuracy(z, y, 5),
                           **group_accuracy(acc, groups)}
    if full:
        out.update(per_class_accuracy=_nan_to_none(acc), test_counts=cm.sum(axis=1).tolist(),
                   confusion_matrix=cm.tolist(), groups=groups)
    return out


def best_epoch(history: Sequence[dict[str, Any]], key: str = "top1") -> dict[str, Any] | None:
    """The first epoch with the highest ``key`` (the official ``best_acc``), or None."""
    scored = [h for h in history if h.get(key) is not None]
    if not scored:
        return None
    return max(scored, key=lambda h: h[key])  # max keeps the first of equal values
