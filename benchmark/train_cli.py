"""``python -m benchmark train | eval | methods | config``.

    train    --dataset DATA --method NAME [--imbalance IF] [--profile P] [--seed S] [--out DIR]
             [--set k=v ...] [--protocol P] [--split-list FILE] [--device cpu|cuda] [--data-root DIR]
             [--dist-backend nccl|gloo] [--log tensorboard,wandb] [--plugin FILE.py|MODULE]
             multi-process: torchrun --nproc_per_node=N -m benchmark train ... (DDP; the
             config's batch is the global batch, split over the N ranks)
    eval     --checkpoint FILE [--dataset DATA] ...   a last.pt of ours or an official CTR-GCN
             state_dict; prints top-1 and many/medium/few, writes JSON with --out
    methods  the registered methods with their metadata and hyper-parameter defaults
    config   [--profile P] [--set k=v ...]  every TrainConfig field: value and meaning

``--set`` keys go to the method's HParams first, then to the TrainConfig; a key neither
declares fails with a did-you-mean list (exit 2, nothing written).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

from .config import PROFILES
from .errors import BenchmarkError
from .plugins import add_argument as add_plugin_argument
from .tracking import add_argument as add_log_argument, parse as parse_log

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="train one run (resumes an unfinished one, skips a done one)")
    _data_args(t)
    t.add_argument("--method", required=True, help="registered method (see `methods`)")
    t.add_argument("--profile", default="lt",
                   help=f"schedule profile: {', '.join(PROFILES)} (`config --profile P` shows one)")
    t.add_argument("--seed", type=int, default=0, help="init / data-order seed")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a method hyper-parameter or a TrainConfig field (repeatable)")
    t.add_argument("--backbone", default="ctrgcn",
                   help="registered backbone: ctrgcn, aagcn, stgcnpp, infogcn, hdgcn or a plugin's")
    t.add_argument("--out", type=Path, default=Path("results/runs"), help="parent of run folders")
    t.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (bitwise CPU reproducibility needs a fixed count)")
    t.add_argument("--dist-backend", default=None, choices=("nccl", "gloo"),
                   help="under torchrun: process-group backend (default nccl on CUDA, gloo on CPU)")
    add_log_argument(t)
    add_plugin_argument(t)
    t.set_defaults(func=_train)

    e = sub.add_parser("eval", help="evaluate a checkpoint on a test set")
    e.add_argument("--checkpoint", type=Path, required=True,
                   help="a run's last.pt, or an official CTR-GCN state_dict (.pt)")
    _data_args(e, required=False)
    e.add_argument("--method", default=None, help="official weights: method whose predict() is used (ce)")
    e.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="official weights: method hparams / TrainConfig fields (e.g. base_channel=64)")
    e.add_argument("--out", type=Path, default=None, help="write the metrics as JSON here")
    add_plugin_argument(e)
    e.set_defaults(func=_eval)

    m = sub.add_parser("methods", help="list the registered methods")
    m.add_argument("pattern", nargs="?", default="*", help="wildcard filter, e.g. 'bal*'")
    m.add_argument("--json", action="store_true", help="machine-readable output")
    add_plugin_argument(m)
    m.set_defaults(func=_methods)

    c = sub.add_parser("config", help="every training-config field: its value under a profile "
                                      "and what it means (what --set KEY=VALUE changes)")
    c.add_argument("--profile", default="lt",
                   help=f"schedule profile: {', '.join(PROFILES)} (default lt)")
    c.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="show the config with these overrides applied (repeatable)")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(func=_config)


def _data_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--dataset", required=required,
                   help="synth | ucla | ntu60-xsub | ntu60-xview | ntu120-xsub | ntu120-xset | a store path")
    p.add_argument("--protocol", default=None,
                   help="xsub | xview | xset for a store holding several (default: the dataset "
                        "name's or the store's only one)")
    p.add_argument("--imbalance", type=float, default=None, help="imbalance factor (default: full set)")
    p.add_argument("--n-max", type=int, default=None, help="head-class size of a built LT split")
    p.add_argument("--split-list", default=None, help="a long-tailed training list (name per line)")
    p.add_argument("--data-root", default=None, help="folder of prepared stores (env BENCH_DATA_ROOT)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="where to train / evaluate (cuda: the current GPU; CUDA_VISIBLE_DEVICES "
                        "picks it)")


def build_spec(args: argparse.Namespace, method: str, overrides: list[str],
               base: dict[str, Any] | None = None) -> "Any":
    """A normalised RunSpec from CLI arguments; ``--set`` keys routed by declaring class."""
    from .config import TrainConfig
    from .hparams import parse_assignments, split_overrides
    from .method import METHODS
    from .spec import RunSpec, normalise
    import methods as _  # noqa: F401  (registers every method)

    cls = METHODS.get(method)
    assigned = parse_assignments(overrides)
    if "log" in assigned and "log" not in {f.name for f in dataclasses.fields(cls.HParams)}:
        raise BenchmarkError("--set log=...: logging is not part of a run's config; use "
                             "--log tensorboard,wandb")
    hp, train = split_overrides(assigned, cls.HParams, TrainConfig,
                                labels=(f"method {method}", "TrainConfig"))
    fields: dict[str, Any] = dict(base or {})
    fields.update(method=method, hparams={**fields.get("hparams", {}), **hp},
                  train={**fields.get("train", {}), **train})
    for key in ("dataset", "protocol", "imbalance", "n_max", "split_list", "seed", "profile", "backbone"):
        value = getattr(args, key, None)
        if value is not None:
            fields[key] = value
    return normalise(RunSpec(**fields))


def _train(args: argparse.Namespace) -> int:
    from .runner import run

    spec = build_spec(args, args.method, args.overrides)
    result = run(spec, args.out, args.device, args.data_root, args.threads, args.dist_backend,
                 log_to_trackers=parse_log(args.log))
    if result.rank != 0:  # DDP: rank 0 reports
        return 0
    if result.status == "already done":
        print(f"{result.run_dir}: already done; nothing to do (delete the folder to re-run)")
    else:
        f = result.final
        print(f"{result.run_dir}: top1 {_pct(f['top1'])} many/medium/few {_pct(f['many'])}/"
              f"{_pct(f['medium'])}/{_pct(f['few'])} (last epoch)")
    return 0


def _pct(v: float | None) -> str:
    return "--" if v is None else f"{100 * v:.2f}"


def _eval(args: argparse.Namespace) -> int:
    import numpy as np

    from . import metrics
    from .ckpt import is_ours, read_weights_only
    from .runner import resolve_config, resolve_device, trainer_from_checkpoint
    from .seed import configure_determinism
    from .spec import RunSpec, load_run_data

    if not args.checkpoint.is_file():
        raise BenchmarkError(f"{args.checkpoint}: no such checkpoint file")
    if args.out is not None:  # fail before computing anything, not after
        _check_writable_file(args.out)
    dev = resolve_device(args.device)
    configure_determinism(dev)
    obj = read_weights_only(args.checkpoint, map_location="cpu")
    ours = is_ours(obj)
    if ours:
        if args.overrides or args.method:
            raise BenchmarkError("--method/--set apply to official weights only; a run's "
                                 "checkpoint carries its own spec")
        saved_spec = obj.get("spec")
        request = saved_spec.get("request") if isinstance(saved_spec, dict) else None
        if not isinstance(request, dict):
            raise BenchmarkError(f"{args.checkpoint}: a checkpoint of an older version (no run "
                                 f"request recorded); evaluate it as official weights is not "
                                 f"possible either: retrain the run")
        saved = RunSpec.from_dict(request)
        # the data may be re-pointed (another protocol or test set); the model stays the run's
        fields = {k: getattr(args, k) for k in ("dataset", "protocol", "imbalance", "n_max", "split_list")
                  if getattr(args, k) is not None}
        spec = dataclasses.replace(saved, **fields)
    else:
        if not args.dataset:
            raise BenchmarkError("--dataset is required for official weights")
        spec = build_spec(args, args.method or "ce", args.overrides, {"profile": "lt"})
    cfg = resolve_config(spec)
    data = load_run_data(spec, cfg, args.data_root)
    if ours:
        trainer = trainer_from_checkpoint(spec, cfg, data, obj, dev)
    else:
        from .backbones.ctrgcn import load_checkpoint_file
        from .train import Trainer

        trainer = Trainer(spec, cfg, data, dev)
    try:
        if not ours:
            load_checkpoint_file(args.checkpoint, trainer.model)
            trainer.model.to(dev)
        logits = trainer.evaluate()
    finally:
        trainer.close()
    m = metrics.summarize(logits, data.test_labels, data.class_counts, full=True)
    print(f"{args.checkpoint}: top1 {_pct(m['top1'])} top5 {_pct(m['top5'])} many/medium/few "
          f"{_pct(m['many'])}/{_pct(m['medium'])}/{_pct(m['few'])} on {len(logits)} test clips "
          f"({data.lt.dataset} {data.lt.protocol})")
    if args.out:
        from . import _io

        _io.write_json(args.out, {"checkpoint": str(args.checkpoint), "official_weights": not ours,
                                  "spec": spec.to_dict(), "data": data.describe(),
                                  "units": "fraction in [0, 1]", **m})
        _io.save_npy(Path(args.out).with_suffix(".logits.npy"), logits.astype(np.float32))
    return 0


def _check_writable_file(path: Path) -> None:
    path = Path(path)
    if path.is_dir():
        raise BenchmarkError(f"{path}: --out names a folder; give a .json file path")
    folder = next((p for p in [path.parent, *path.parent.parents] if p.exists()), Path("."))
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise BenchmarkError(f"{folder}: not writable (permission denied); choose another --out")


def _config(args: argparse.Namespace) -> int:
    """Every TrainConfig field: value under the profile (and --set), default, meaning."""
    from .config import TrainConfig, make_config
    from .hparams import parse_assignments

    cfg = make_config(args.profile, parse_assignments(args.overrides))
    default = TrainConfig()
    rows = [{"key": f.name, "type": _type_name(f.type), "value": getattr(cfg, f.name),
             "default": getattr(default, f.name), "help": f.metadata.get("help", "")}
            for f in dataclasses.fields(TrainConfig)]
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    print(f"TrainConfig under profile {args.profile!r}"
          + (f" with --set {' '.join(args.overrides)}" if args.overrides else "")
          + f": --set KEY=VALUE changes a field (lr = base_lr * batch_size / ref_batch_size "
            f"= {cfg.lr:g}); a method's own keys: `python -m benchmark methods`")
    wk = max(len(r["key"]) for r in rows)
    wv = max(len(repr(r["value"])) for r in rows)
    for r in rows:
        note = "" if r["value"] == r["default"] else f" (default {r['default']!r})"
        print(f"  {r['key']:<{wk}}  {r['value']!r:<{wv}}  {r['type']}: {r['help']}{note}")
    return 0


def _type_name(tp: Any) -> str:
    return str(tp).replace("typing.", "") if not isinstance(tp, type) else tp.__name__


def _methods(args: argparse.Namespace) -> int:
    from .method import METHODS
    import methods as _  # noqa: F401

    rows = []
    for name in METHODS.names(args.pattern):
        cls = METHODS.get(name)
        hp = {f.name: f.default for f in dataclasses.fields(cls.HParams)}
        rows.append({"name": name, "display_name": cls.display_name, "family": cls.family,
                     "paper": cls.paper, "order": cls.order, "hparams": hp})
    rows.sort(key=lambda r: (r["order"], r["name"]))
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        print(f"no method matches {args.pattern!r}")
        return 0
    w = max(len(r["name"]) for r in rows)
    for r in rows:
        hp = ", ".join(f"{k}={v!r}" for k, v in r["hparams"].items()) or "-"
        print(f"{r['name']:<{w}}  {r['display_name']} [{r['family']}] {r['paper']}\n"
              f"{'':<{w}}  hparams: {hp}")
    return 0
