"""``python -m benchmark saliency RUN_DIR``: per-class body-part saliency figures of a Shap-Mix run.

    saliency RUN_DIR [--classes 0,5,...] [--exact] [--clips N] [--out DIR] [--data-root DIR]

For each selected class (default: the 2 most, 2 middle and 2 least frequent training classes)
one figure ``saliency_class{c:03d}.png`` + ``.pdf`` (written atomically) into
``RUN_DIR/figures/`` (or ``--out``), plus ``saliency.json`` with the numbers drawn. The
skeleton is a canonical 2-D front-view rest pose of the run's layout (drawn facing the viewer:
the anatomical left side is on the image's right); the 5 parts P0..P4 are shaded by:

- the learned table (``last.pt`` method state ``table``): a part's saliency is the probability
  that it belongs to the combination the guided sampler draws for this class,
  sum over the combinations k containing the part of softmax(table[c] / temperature)[k]
  (temperature = the run's, 0.2 official). Colour scale fixed to [0, 1].
- with ``--exact``: the exact Shapley value of each part (:mod:`benchmark.shapley`) of the run's
  eval-mode model on up to ``--clips`` test clips of the class (test transform), against the
  run's saved Shap-Mix baseline. Diverging colour scale, symmetric about 0.

A run whose checkpoint has no Shap-Mix table (another method) is a user error (exit 2).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .errors import BenchmarkError

if TYPE_CHECKING:  # numpy, torch and matplotlib load lazily: the CLI parser imports this module
    import numpy as np
    import torch

log = logging.getLogger(__name__)

# canonical front view, metres-ish; +x = the image's right = the subject's left
_LEFT_POSE = {
    "shoulder": (0.20, 0.62), "elbow": (0.30, 0.36), "wrist": (0.36, 0.12), "hand": (0.38, 0.05),
    "hand_tip": (0.40, -0.03), "thumb": (0.32, 0.02), "hip": (0.12, -0.02), "knee": (0.14, -0.45),
    "ankle": (0.15, -0.88), "foot": (0.23, -0.93), "eye": (0.04, 0.94), "ear": (0.08, 0.91),
}
_CENTRE_POSE = {
    "spine_base": (0.0, 0.0), "hip_center": (0.0, 0.0), "spine_mid": (0.0, 0.33),
    "spine": (0.0, 0.33), "spine_shoulder": (0.0, 0.64), "shoulder_center": (0.0, 0.64),
    "neck": (0.0, 0.74), "head": (0.0, 0.90), "nose": (0.0, 0.88),
}


def canonical_pose(joint_names: Sequence[str]) -> np.ndarray:
    """(V, 2) front-view rest pose of a layout's named joints (NTU-25, NW-UCLA-20, COCO-17)."""
    import numpy as np
    out = []
    for name in joint_names:
        if name in _CENTRE_POSE:
            out.append(_CENTRE_POSE[name])
            continue
        side, _, rest = name.partition("_")
        if side not in ("left", "right") or rest not in _LEFT_POSE:
            raise BenchmarkError(f"no canonical pose for joint {name!r}")
        x, y = _LEFT_POSE[rest]
        out.append((x if side == "left" else -x, y))
    return np.asarray(out, dtype=np.float64)


def table_part_saliency(row: torch.Tensor | np.ndarray, temperature: float = 0.2) -> np.ndarray:
    """(5,) P(part in c), c ~ softmax(row / temperature) over the 20 combinations."""
    import numpy as np
    import torch
    from methods.shapmix import COMBOS, N_PARTS

    p = torch.softmax(torch.as_tensor(row, dtype=torch.float64) / temperature, dim=0)
    out = np.zeros(N_PARTS)
    for k, combo in enumerate(COMBOS):
        out[list(combo)] += float(p[k])
    return out


def part_colors(values: Sequence[float], vmin: float, vmax: float, cmap: str) -> np.ndarray:
    """(5, 4) RGBA of each part's value on ``cmap`` over [vmin, vmax] (clipped)."""
    import numpy as np
    import matplotlib

    norm = matplotlib.colors.Normalize(vmin=vmin, vmax=vmax, clip=True)
    return np.asarray(matplotlib.colormaps[cmap](norm(np.asarray(values, dtype=np.float64))))


def select_classes(counts: Sequence[int], per_group: int = 2) -> list[tuple[int, str]]:
    """``per_group`` head (most clips), medium (around the median rank) and tail classes."""
    import numpy as np

    counts = np.asarray(counts)
    order = sorted(range(len(counts)), key=lambda c: (-counts[c], c))
    C = len(order)
    mid = max(0, C // 2 - per_group // 2)
    picks: list[tuple[int, str]] = []
    for group, ranks in (("head", range(per_group)), ("medium", range(mid, mid + per_group)),
                         ("tail", range(C - per_group, C))):
        for r in ranks:
            if 0 <= r < C and order[r] not in [c for c, _ in picks]:
                picks.append((order[r], group))
    return picks


def draw_skeleton(ax: Any, layout: Any, pose: np.ndarray, values: Sequence[float], vmin: float,
                  vmax: float, cmap: str, title: str) -> None:
    """The layout's bones and joints, each part's joints and internal bones in its colour."""
    colors = part_colors(values, vmin, vmax, cmap)
    part_of = {j: p for p, joints in enumerate(layout.parts) for j in joints}
    for a, b in layout.edges:
        pa, pb = part_of.get(a), part_of.get(b)
        same = pa is not None and pa == pb
        ax.plot(*pose[[a, b]].T, color=colors[pa] if same else "0.6", lw=5 if same else 2,
                solid_capstyle="round", zorder=1)
    for p, joints in enumerate(layout.parts):
        j = list(joints)
        ax.scatter(pose[j, 0], pose[j, 1], s=90, color=colors[p], edgecolors="k", linewidths=0.6,
                   zorder=2)
        cx, cy = pose[j].mean(0)
        if abs(cx) < 0.05:  # the trunk: label beside the head
            cx, cy = -0.02, pose[j, 1].max()
        ax.annotate(f"P{p}\n{values[p]:+.3f}" if vmin < 0 else f"P{p}\n{values[p]:.2f}",
                    (cx, cy), xytext=(14 if cx >= 0 else -14, 0), textcoords="offset points",
                    ha="left" if cx >= 0 else "right", va="center", fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.set_aspect("equal")
    ax.set_xlim(-0.75, 0.75)
    ax.set_ylim(-1.05, 1.08)
    ax.axis("off")
    import matplotlib

    sm = matplotlib.cm.ScalarMappable(matplotlib.colors.Normalize(vmin, vmax), cmap=cmap)
    ax.figure.colorbar(sm, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=7)


def class_figure(layout: Any, c: int, label: str, table_sal: np.ndarray,
                 exact: np.ndarray | None, n_clips: int = 0) -> Any:
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    panels = 1 + (exact is not None)
    fig = Figure(figsize=(3.4 * panels, 4.0))
    axes = fig.subplots(1, panels, squeeze=False)[0]
    pose = canonical_pose(layout.joint_names)
    draw_skeleton(axes[0], layout, pose, table_sal, 0.0, 1.0, "Reds",
                  "learned table: P(part in sampled combo)")
    if exact is not None:
        m = max(float(np.abs(exact).max()), 1e-12)
        draw_skeleton(axes[1], layout, pose, exact, -m, m, "RdBu_r",
                      f"exact Shapley ({n_clips} test clips)")
    fig.suptitle(f"class {c} ({label})", fontsize=10)
    return fig


def save_figure(fig: Any, path_stem: Path) -> list[Path]:
    from . import _io

    out = []
    for ext in ("png", "pdf"):
        path = path_stem.with_suffix(f".{ext}")
        with _io.atomic_path(path, suffix=f".{ext}") as tmp:
            fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight")
        out.append(path)
    return out


# ------------------------------------------------------------------------------ the command
def add_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("saliency", help="per-class body-part saliency figures of a Shap-Mix run")
    s.add_argument("run_dir", type=Path, help="a run folder (holds last.pt)")
    s.add_argument("--classes", default=None, help="comma-separated class indices "
                   "(default: 2 head, 2 medium, 2 tail by training count)")
    s.add_argument("--exact", action="store_true", help="add the exact-Shapley panel (runs the model)")
    s.add_argument("--clips", type=int, default=16, help="--exact: test clips per class (at most)")
    s.add_argument("--out", type=Path, default=None, help="output folder (default RUN_DIR/figures)")
    s.add_argument("--data-root", default=None, help="folder of prepared stores (env BENCH_DATA_ROOT)")
    s.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="where the model runs (--exact)")
    from .plugins import add_argument as add_plugin_argument

    add_plugin_argument(s)
    s.set_defaults(func=_saliency)


def _parse_classes(text: str | None, C: int) -> list[int] | None:
    if text is None:
        return None
    try:
        cs = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise BenchmarkError(f"--classes: expected comma-separated integers, got {text!r}") from None
    bad = [c for c in cs if not 0 <= c < C]
    if bad or not cs:
        raise BenchmarkError(f"--classes: {bad or text!r} not in 0..{C - 1}")
    return cs


def _saliency(args: argparse.Namespace) -> int:
    import numpy as np
    from . import _io
    from .ckpt import load_checkpoint
    from .runner import resolve_config, resolve_device
    from .spec import RunSpec, load_run_data

    ckpt = args.run_dir / "last.pt"
    if not ckpt.is_file():
        raise BenchmarkError(f"{args.run_dir}: no last.pt (not a run folder, or no epoch finished)")
    obj = load_checkpoint(ckpt)
    saved = obj.get("spec")  # {"run_id", "identity", "request"} (benchmark.runner)
    request = saved.get("request") if isinstance(saved, dict) else None
    if not isinstance(request, dict):
        raise BenchmarkError(f"{ckpt}: a checkpoint of an older version (no run request "
                             f"recorded): retrain the run")
    spec = RunSpec.from_dict(request)
    state = obj.get("method") or {}
    if not isinstance(state, dict) or "table" not in state:
        raise BenchmarkError(f"{args.run_dir}: run of method {spec.method!r} has no Shap-Mix table "
                             f"(saliency needs a shap_mix run)")
    table = state["table"].float()
    cfg = resolve_config(spec)
    data = load_run_data(spec, cfg, args.data_root)
    if tuple(table.shape) != (data.num_classes, 20):
        raise BenchmarkError(f"{ckpt}: table shape {tuple(table.shape)} does not match "
                             f"{data.num_classes} classes x 20 combinations")
    counts = np.asarray(data.class_counts)
    groups = {c: g for g, cs in data.lt.groups.items() for c in cs}  # many / medium / few
    chosen = _parse_classes(args.classes, data.num_classes)
    picks = ([(c, "") for c in chosen] if chosen is not None else select_classes(counts))
    from methods.shapmix import ShapMix

    temperature = float(spec.hparams.get("temperature", ShapMix.HParams.temperature))

    exact_of: dict[int, Any] = {}
    if args.exact:
        exact_of = _exact(spec, cfg, data, obj, [c for c, _ in picks], args.clips,
                          resolve_device(args.device))
    out_dir = args.out or args.run_dir / "figures"
    summary: dict[str, Any] = {"run": str(args.run_dir), "method": spec.method,
                               "temperature": temperature, "layout": data.layout.name,
                               "rule": "table saliency of part p = sum over combinations k "
                                       "containing p of softmax(table[c] / temperature)[k]",
                               "classes": {}}
    for c, g in picks:
        sal = table_part_saliency(table[c], temperature)
        ex = exact_of.get(c)
        label = ", ".join(filter(None, [g and f"{g} by count", f"{groups.get(c, '?')} group",
                                        f"{int(counts[c])} train clips"]))
        fig = class_figure(data.layout, c, label, sal, None if ex is None else ex.parts.numpy(),
                           0 if ex is None else ex.n_clips)
        files = save_figure(fig, out_dir / f"saliency_class{c:03d}")
        summary["classes"][str(c)] = {"pick": g, "group": groups.get(c), "train_count": int(counts[c]),
                                      "table_row": table[c].tolist(), "table_saliency": sal.tolist(),
                                      "exact": None if ex is None else ex.to_dict(),
                                      "files": [str(f) for f in files]}
        print(f"class {c} ({label}): {files[0]}")
    _io.write_json(out_dir / "saliency.json", summary)
    return 0


def _exact(spec: Any, cfg: Any, data: Any, obj: dict, classes: list[int], n_clips: int,
           dev: torch.device) -> dict[int, Any]:
    """Exact Shapley per class with the run's model, rebuilt as ``eval`` does."""
    import numpy as np
    import torch

    from .data.loader import BatchLoader
    from .seed import configure_determinism
    from .shapley import exact_shapley
    from .runner import trainer_from_checkpoint

    if n_clips < 1:
        raise BenchmarkError("--clips must be >= 1")
    configure_determinism(dev)
    trainer = trainer_from_checkpoint(spec, cfg, data, obj, dev)
    try:
        m = trainer.method
        if getattr(m, "base_sum", None) is None or not getattr(m, "base_n", 0):
            raise BenchmarkError("the run's checkpoint holds no Shap-Mix baseline")
        base = (m.base_sum / m.base_n).float().to(dev)
        rows_all = np.asarray(data.lt.test_idx)
        labels = data.store.labels[rows_all]
        out = {}
        for c in classes:
            rows = rows_all[labels == c][:n_clips]
            if len(rows) == 0:
                log.warning("class %d has no test clips: no exact panel", c)
                continue
            loader = BatchLoader(data.store, rows, len(rows), transform=data.test_transform, device=dev)
            try:
                x = torch.cat([b[0] for b in loader])
            finally:
                loader.close()
            if tuple(base.shape) != tuple(x.shape[1:]):
                raise BenchmarkError(f"baseline {tuple(base.shape)} does not match the test clips "
                                     f"{tuple(x.shape[1:])}")
            out[c] = exact_shapley(trainer.model, x, c, base, data.layout.parts,
                                   batch_size=cfg.test_batch_size)
    finally:
        trainer.close()
    return out
