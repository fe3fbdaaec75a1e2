"""Multi-stream ensembles: the weighted sum of stored runs' test scores.

Skeleton papers train one model per input stream (joint ``j``, bone ``b``, joint motion
``jm``, bone motion ``bm``; ``--set stream=...``) and fuse them at test time. The official
scripts (CTR-GCN's and Shap-Mix's ``ensemble.py``) add the streams' RAW test logits with fixed
weights and take the argmax; ``scores="softmax"`` sums class probabilities instead.

    PRESETS        weights by stream: CTR-GCN's 4-stream 0.6 / 0.6 / 0.4 / 0.4, Shap-Mix's
                   4-stream 0.6 / 0.6 / 0.6 / 0.3, the 2-stream joint + bone 1 / 1
    load_run       one finished run folder: float32 logits, labels, stream, test-set identity
    ensemble       fuse runs (weights given, from a preset by each run's stream, or equal)
                   and score the fusion: top-1 / top-5, Many / Medium / Few, per class

A run folder holds ``logits.npy`` (float32; float16 in runs made before the ensembles, whose
near-ties may then break differently from the run's own numbers) and ``test_labels.npy``
(older runs: the labels are read from the store under ``data_root``, checked against the
run's recorded test list). Runs are fused only over one test set: the same clips in the same
order (the sha256 of the test names recorded in each run's identity), the same labels and the
same classes, and trained on the same class sizes (which define Many / Medium / Few).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import metrics
from .errors import BenchmarkError, bad_file

STREAMS = ("j", "b", "jm", "bm")
PRESETS: dict[str, dict[str, float]] = {
    "ctrgcn-4s": {"j": 0.6, "b": 0.6, "jm": 0.4, "bm": 0.4},   # CTR-GCN ensemble.py
    "shapmix-4s": {"j": 0.6, "b": 0.6, "jm": 0.6, "bm": 0.3},  # Shap-Mix ensemble.py
    "2s": {"j": 1.0, "b": 1.0},                                 # joint + bone, alpha 1
}
SCORES = ("logits", "softmax")


@dataclasses.dataclass(frozen=True)
class RunScores:
    """What an ensemble needs from one finished run."""

    path: Path
    run_id: str
    method: str
    seed: int
    stream: str
    logits: np.ndarray          # (N, C) float32
    labels: np.ndarray          # (N,) int64
    class_counts: np.ndarray    # (C,) training clips per class
    test: dict[str, Any]        # protocol, test_sha256, num_test, num_classes
    exact: bool                 # float32 logits (a float16 file rounds near-ties)
    top1: float                 # the run's own reported top-1 (final.json)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise bad_file(path, "missing (not a finished run folder: `sweep run` finishes it)") from None
    except OSError as e:
        raise bad_file(path, f"cannot read ({e.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad_file(path, f"not valid JSON ({type(e).__name__})") from None
    if not isinstance(d, dict):
        raise bad_file(path, "expected a JSON object")
    return d


def _load_array(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise bad_file(path, "missing") from None
    except (OSError, ValueError, EOFError) as e:
        raise bad_file(path, f"not a readable .npy array ({str(e)[:80]})") from None


def load_run(run_dir: str | os.PathLike, data_root: str | os.PathLike | None = None) -> RunScores:
    """One finished run folder (``done``, ``final.json``, ``logits.npy``), validated.

    Raises:
        BenchmarkError: not a finished run, a record without an identity, logits of the wrong
            shape or not finite, labels that cannot be found; one line naming the file.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise bad_file(path, "no such run folder")
    if not (path / "done").is_file():
        raise bad_file(path, "the run is not finished (no 'done' marker)")
    final = _read_json(path / "final.json")
    ident, cfg = final.get("identity"), final.get("config")
    data = ident.get("data") if isinstance(ident, dict) else None
    keys = ("protocol", "test_sha256", "num_test", "num_classes")
    if not isinstance(data, dict) or any(k not in data for k in keys) or not isinstance(cfg, dict):
        raise bad_file(path / "final.json", "no identity / config record (a run made before "
                                            "run identities; run it again)")
    test = {k: data[k] for k in keys}
    n, c = int(test["num_test"]), int(test["num_classes"])
    stream = cfg.get("stream", "j")
    if stream not in STREAMS:
        raise bad_file(path / "final.json", f"unknown stream {stream!r} (known: {', '.join(STREAMS)})")
    logits = _load_array(path / "logits.npy")
    if logits.dtype not in (np.float16, np.float32, np.float64) or logits.shape != (n, c):
        raise bad_file(path / "logits.npy", f"expected float logits of shape ({n}, {c}) "
                                            f"(the run's test set), got {logits.dtype} {logits.shape}")
    if not np.isfinite(logits).all():
        raise bad_file(path / "logits.npy", "holds NaN or inf")
    if (path / "test_labels.npy").is_file():
        labels = _load_array(path / "test_labels.npy")
        if labels.shape != (n,) or labels.dtype.kind not in "iu" or (n and (labels.min() < 0 or labels.max() >= c)):
            raise bad_file(path / "test_labels.npy", f"expected {n} integer labels in [0, {c})")
    else:
        labels = _labels_from_store(path, final, data, data_root)
    counts = np.asarray(final.get("class_counts") or [], dtype=np.int64)
    if counts.shape != (c,):
        raise bad_file(path / "final.json", f"class_counts must list {c} class sizes")
    spec = final.get("spec") or {}
    top1 = final.get("top1")
    return RunScores(path, final.get("run_id") or path.name, str(spec.get("method")),
                     int(spec.get("seed", -1)), stream, logits.astype(np.float32),
                     labels.astype(np.int64), counts, test, logits.dtype != np.float16,
                     float(top1) if isinstance(top1, (int, float)) else math.nan)


def _labels_from_store(path: Path, final: dict[str, Any], data: dict[str, Any],
                       data_root: str | os.PathLike | None) -> np.ndarray:
    """A run made before ``test_labels.npy``: its test labels from the store it trained on."""
    from .config import make_config
    from .identity import names_sha256
    from .spec import RunSpec, load_run_data

    try:
        spec = RunSpec.from_dict(final["spec"])
        cfg = make_config(spec.profile, spec.train)
        run_data = load_run_data(spec, cfg, data_root)
    except (BenchmarkError, KeyError, TypeError) as e:
        raise bad_file(path, f"no test_labels.npy and its store cannot be read to find the "
                             f"labels ({e}); point --data-root at the store") from None
    names = run_data.store.names
    if names_sha256(names[i] for i in run_data.test_idx) != data["test_sha256"]:
        raise bad_file(path, "no test_labels.npy, and the store under the data root holds "
                             "another test set than the one this run was tested on")
    return np.asarray(run_data.test_labels)


def resolve_weights(runs: Sequence[RunScores], weights: Sequence[float] | None = None,
                    preset: str | None = None) -> list[float]:
    """One weight per run: given, from ``preset`` by each run's stream, or 1 each."""
    if weights is not None and preset is not None:
        raise BenchmarkError("give --weights or --preset, not both")
    if preset is not None:
        if preset not in PRESETS:
            raise BenchmarkError(f"unknown preset {preset!r} (known: {', '.join(PRESETS)})")
        table = PRESETS[preset]
        streams = [r.stream for r in runs]
        if sorted(streams, key=STREAMS.index) != sorted(table, key=STREAMS.index):
            raise BenchmarkError(f"preset {preset} fuses one run of each stream "
                                 f"{', '.join(table)}; got stream(s) {', '.join(streams)}")
        weights = [table[s] for s in streams]
    elif weights is None:
        weights = [1.0] * len(runs)
    weights = [float(w) for w in weights]
    if len(weights) != len(runs):
        raise BenchmarkError(f"{len(weights)} weight(s) for {len(runs)} run(s)")
    if not all(math.isfinite(w) and w >= 0 for w in weights) or not any(weights):
        raise BenchmarkError(f"weights must be finite, >= 0 and not all 0, got {weights}")
    return weights


def check_same_test_set(runs: Sequence[RunScores]) -> None:
    """Refuse runs whose test sets (clips, order, labels, classes) or class sizes differ."""
    if not runs:
        raise BenchmarkError("no runs to fuse")
    ref = runs[0]
    for r in runs[1:]:
        for key, what in (("protocol", "protocol"), ("num_classes", "number of classes"),
                          ("num_test", "number of test clips"),
                          ("test_sha256", "test clips or their order")):
            if r.test[key] != ref.test[key]:
                raise BenchmarkError(f"{r.path}: tested on another test set than {ref.path} "
                                     f"({what}: {r.test[key]} vs {ref.test[key]}); runs are "
                                     f"fused only over one test set")
        if not np.array_equal(r.labels, ref.labels):
            raise BenchmarkError(f"{r.path}: its test labels differ from {ref.path}'s")
        if not np.array_equal(r.class_counts, ref.class_counts):
            raise BenchmarkError(f"{r.path}: trained on other class sizes than {ref.path} "
                                 f"(Many / Medium / Few would be undefined)")


def fuse(runs: Sequence[RunScores], weights: Sequence[float], scores: str = "logits") -> np.ndarray:
    """sum_i w_i * s_i with s_i the run's raw logits or its softmax probabilities (float64)."""
    if scores not in SCORES:
        raise BenchmarkError(f"unknown scores {scores!r} (known: {', '.join(SCORES)})")
    out = np.zeros(runs[0].logits.shape, dtype=np.float64)
    for r, w in zip(runs, weights, strict=True):
        z = r.logits.astype(np.float64)
        if scores == "softmax":
            z = np.exp(z - z.max(axis=1, keepdims=True))
            z /= z.sum(axis=1, keepdims=True)
        out += w * z
    return out


def ensemble(runs: Sequence[RunScores], weights: Sequence[float] | None = None,
             preset: str | None = None, scores: str = "logits") -> dict[str, Any]:
    """Fuse ``runs`` and score the fusion; a JSON-ready record (fractions in [0, 1])."""
    check_same_test_set(runs)
    w = resolve_weights(runs, weights, preset)
    fused = fuse(runs, w, scores)
    m = metrics.summarize(fused, runs[0].labels, runs[0].class_counts, full=True)
    return {
        "runs": [{"path": str(r.path), "run_id": r.run_id, "method": r.method, "seed": r.seed,
                  "stream": r.stream, "weight": wi, "top1": r.top1,
                  "logits": "float32" if r.exact else "float16 (near-ties may differ)"}
                 for r, wi in zip(runs, w)],
        "weights": w, "preset": preset, "scores": scores, "units": "fraction in [0, 1]",
        "test": runs[0].test,
        **{k: m[k] for k in ("top1", "top5", "many", "medium", "few", "per_class_accuracy",
                             "test_counts", "confusion_matrix", "groups")},
    }


def fused_metrics(run_dirs: Sequence[str | os.PathLike], weights: Sequence[float] | None = None,
                  preset: str | None = None, scores: str = "logits",
                  data_root: str | os.PathLike | None = None) -> dict[str, Any]:
    """:func:`ensemble` of run folders (loaded with :func:`load_run`)."""
    return ensemble([load_run(d, data_root) for d in run_dirs], weights, preset, scores)


# ------------------------------------------------------------------------------- CLI
def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "ensemble", help="fuse finished runs (e.g. joint / bone / motion streams) at test time",
        description="The weighted sum of the runs' stored test scores (raw logits, as the "
                    "official ensemble scripts), scored like a run: top-1 / top-5, Many / "
                    "Medium / Few and per-class accuracy.")
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR",
                   help="finished run folders (results/runs/<run_id>)")
    p.add_argument("--weights", type=float, nargs="+", default=None, metavar="W",
                   help="one weight per run, in the order given (default: 1 each)")
    p.add_argument("--preset", choices=tuple(PRESETS), default=None,
                   help="weights by each run's stream: " + "; ".join(
                       f"{k}: " + " / ".join(f"{s} {w:g}" for s, w in v.items())
                       for k, v in PRESETS.items()))
    p.add_argument("--scores", choices=SCORES, default="logits",
                   help="fuse raw logits (official) or softmax probabilities")
    p.add_argument("--out", type=Path, default=None, help="also write the result as JSON here")
    p.add_argument("--data-root", default=None,
                   help="folder of prepared stores (only for runs made before test_labels.npy)")
    p.set_defaults(func=_cli)


def _cli(args: Any) -> int:
    from . import _io

    if args.out is not None and args.out.is_dir():
        raise BenchmarkError(f"{args.out}: --out names a folder; give a .json file path")
    res = fused_metrics(args.runs, args.weights, args.preset, args.scores, args.data_root)
    pct = lambda v: "--" if v is None else f"{100 * v:.2f}"  # noqa: E731
    for r in res["runs"]:
        print(f"  {r['weight']:g} x {r['stream']:<2} {r['method']} seed {r['seed']} "
              f"(top1 {pct(r['top1'])}) {r['path']}")
    print(f"ensemble ({res['scores']}{', preset ' + res['preset'] if res['preset'] else ''}): "
          f"top1 {pct(res['top1'])} top5 {pct(res['top5'])} many/medium/few "
          f"{pct(res['many'])}/{pct(res['medium'])}/{pct(res['few'])} on "
          f"{res['test']['num_test']} test clips")
    if args.out is not None:
        _io.write_json(args.out, res)
        print(f"wrote {args.out}")
    return 0


__all__ = ["PRESETS", "SCORES", "STREAMS", "RunScores", "load_run", "resolve_weights",
           "check_same_test_set", "fuse", "ensemble", "fused_metrics"]
