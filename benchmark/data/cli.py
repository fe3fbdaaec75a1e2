"""``python -m benchmark data {prepare,splits,info}``."""
from __future__ import annotations

import argparse
import importlib
import os
from pathlib import Path

from ..errors import BenchmarkError

# dataset name -> (module, function); modules are imported on use so that one reader's
# optional needs never slow down or break another's
PREPARERS = {
    "ntu60": ("benchmark.data.ntu_raw", "prepare_ntu60"),
    "ntu120": ("benchmark.data.ntu_raw", "prepare_ntu120"),
    "ntu-npz": ("benchmark.data.ntu_npz", "prepare_npz"),
    "ucla": ("benchmark.data.ucla", "prepare_ucla"),
    "synth": ("benchmark.data.synth", "prepare_synth"),
    "pyskl": ("benchmark.data.pyskl", "prepare_pyskl"),
}


def _threshold(text: str) -> float | None:
    """A box-score threshold, or ``none`` for no filtering."""
    if text.lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1] or none, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1] or none, got {text!r}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="prepare datasets, build long-tailed splits")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")

    pp = dsub.add_parser("prepare", help="turn raw files into a prepared store")
    pp.add_argument("dataset", choices=sorted(PREPARERS), help="which dataset's raw format to read")
    pp.add_argument("--raw", type=Path, help="raw data folder (or the .npz / .pkl file for ntu-npz / pyskl)")
    pp.add_argument("--out", type=Path, required=True, help="store directory to write")
    pp.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel processes")
    pp.add_argument("--missing-list", type=Path, default=None,
                    help="NTU: official samples_with_missing_skeletons list (auto-found beside --raw)")
    pp.add_argument("--no-missing-list", action="store_true",
                    help="NTU: keep every file even without the official missing-skeleton list")
    pp.add_argument("--stats", type=Path, default=None,
                    help="ntu-npz: CTR-GCN's data/ntu*/statistics folder (sample names of the rows)")
    pp.add_argument("--protocol", default=None, help="ntu-npz: which protocol the .npz holds (xsub, xview, xset)")
    pp.add_argument("--seed", type=int, default=0, help="synth: generator seed")
    pp.add_argument("--kpfiles", type=Path, default=None,
                    help="pyskl: folder of the kpfiles a Kinetics pickle's raw_file entries name")
    pp.add_argument("--name", default=None,
                    help="pyskl: dataset name (default: the file name up to '_': k400, ntu60, ntu120)")
    pp.add_argument("--box-thr", type=_threshold, default=0.5,
                    help="pyskl: drop detections scoring below this in training clips (Shap-Mix's "
                         "0.5; none: keep all)")
    pp.add_argument("--val-box-thr", type=_threshold, default=None,
                    help="pyskl: the same for the other clips (default none, as Shap-Mix's test feeder)")
    pp.add_argument("--force", action="store_true",
                    help="replace an existing store at --out (never a folder holding anything else)")
    pp.set_defaults(func=_prepare)

    sp = dsub.add_parser("splits", help="build or import a long-tailed train list")
    from . import splits

    splits.add_arguments(sp)
    sp.set_defaults(func=splits.cli_main)

    ip = dsub.add_parser("info", help="summarise a prepared store, or a training split over it")
    ip.add_argument("store", type=Path, help="a prepared store folder")
    ip.add_argument("--protocol", default=None, help="protocol of the split (default: the store's only one)")
    ip.add_argument("--split-list", type=Path, default=None, help="a long-tailed train list to check")
    ip.add_argument("--imbalance", type=float, default=None, help="build the LT split in memory")
    ip.add_argument("--n-max", type=int, default=None, help="--imbalance: head-class size")
    ip.add_argument("--seed", type=int, default=0, help="--imbalance: split seed")
    ip.set_defaults(func=_info)


def _prepare(args: argparse.Namespace) -> int:
    from .store import check_replaceable

    if args.workers < 1:
        raise BenchmarkError(f"--workers must be >= 1, got {args.workers}")
    out = Path(args.out)
    if os.path.lexists(out):
        if out.is_file():
            raise BenchmarkError(f"{out}: is a file, not a store folder; choose another --out")
        if not args.force:
            if (out / "manifest.json").is_file():
                raise BenchmarkError(f"{out}: a prepared store is already there (pass --force to replace it)")
            if not out.is_dir() or any(out.iterdir()):
                raise BenchmarkError(f"{out}: exists and is not empty; choose another --out")
        # --force replaces a store of ours only, and only if it holds nothing else; checked
        # here to fail before any parsing, and again by StoreWriter when it publishes
        check_replaceable(out)
    blocker = next((p for p in out.parents if p.exists()), None)
    if blocker is not None and not blocker.is_dir():  # fail before parsing, not when writing
        raise BenchmarkError(f"{out}: cannot create this folder, {blocker} is a file")
    module, func = PREPARERS[args.dataset]
    fn = getattr(importlib.import_module(module), func)
    fn(args)
    return 0


def _info(args: argparse.Namespace) -> int:
    import numpy as np

    from .store import open_store

    s = open_store(args.store)
    counts = np.bincount(s.labels, minlength=s.num_classes)
    print(f"{s.root}: {s.manifest['dataset']} {len(s)} clips, shape {tuple(s.data.shape)}, "
          f"{s.num_classes} classes ({counts.min()}-{counts.max()} clips per class), layout {s.layout}")
    print(f"frames: {s.lengths.min()}-{s.lengths.max()} (median {int(np.median(s.lengths))})")
    print("splits: " + (", ".join(s.manifest.get("splits", [])) or "none"))
    if args.protocol or args.split_list or args.imbalance:
        from .lt import load_lt

        d = load_lt(s, args.protocol, imbalance=args.imbalance, n_max=args.n_max, seed=args.seed,
                    split_list=args.split_list)
        g = d.groups
        print(f"{d.protocol} train: {len(d.train_idx)} clips ({d.class_counts.max()} -> "
              f"{d.class_counts.min()} per class), test: {len(d.test_idx)} clips; many/medium/few "
              f"classes (>100 / 20-100 / <20 train clips): {len(g['many'])}/{len(g['medium'])}/{len(g['few'])}")
    return 0
