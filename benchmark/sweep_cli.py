"""``python -m benchmark sweep run | status | list`` and ``python -m benchmark report``.

    sweep run     --data synth|ucla|ntu [--suite all|table1,...] [--seeds 0,1,2] [--profile P]
                  [--workers N] [--threads T] [--shard i/n] [--launcher local|slurm]
                  [--devices 0,1,2,3] [--gpus-per-run K] [--log tensorboard,wandb]
                  [--slurm-partition P --slurm-time MIN] [--out results/runs] [--plugin FILE.py]
    sweep status  the same selection: done / running / unfinished / failed (with the last lines
                  of the failed run's log) / missing
    sweep list    the selected runs with their ids (nothing is run)
    report        --data synth|ucla|ntu [--runs results/runs] [--results results]: summary.csv,
                  tables and figures from the stored runs only (no training)
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from .errors import BenchmarkError
from .launch import SLURM_THREADS
from .plugins import add_argument as add_plugin_argument
from .tracking import add_argument as add_log_argument

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("sweep", help="run, list or inspect the runs of the paper's suites")
    ssub = s.add_subparsers(dest="sweep_command", required=True, metavar="ACTION")
    for name, helptext in (("run", "run every missing / unfinished run (resumable)"),
                           ("status", "done / running / unfinished / failed / missing"),
                           ("list", "the selected runs and their ids")):
        p = ssub.add_parser(name, help=helptext)
        _selection_args(p)
        p.set_defaults(func=_run if name == "run" else _status if name == "status" else _list)
        p.add_argument("--only", default=None, metavar="METHODS",
                       help="comma list of methods: only their runs (e.g. ce,shap_mix)")
        if name == "run":
            p.add_argument("--workers", type=int, default=None,
                           help="parallel local runs (default 1; with GPUs: one per "
                                "--gpus-per-run of them)")
            p.add_argument("--threads", type=int, default=None,
                           help="torch threads per run process (default: cores / processes; "
                                f"Slurm: {SLURM_THREADS})")
            p.add_argument("--devices", default=None, metavar="IDS",
                           help="GPUs for the local workers, e.g. 0,1,2,3: each worker gets "
                                "--gpus-per-run of them as its CUDA_VISIBLE_DEVICES (needs "
                                "--device cuda; default there: every visible GPU)")
            add_log_argument(p)
            p.add_argument("--rerun-stale", action="store_true",
                           help="also redo finished runs made by other code (status: stale); "
                                "their old folders move to <out>/_stale/")
            p.add_argument("--launcher", default="local", choices=("local", "slurm"),
                           help="local worker processes, or one Slurm job array (sbatch) "
                                "whose tasks request exactly one run's GPUs and CPUs")
            p.add_argument("--slurm-partition", default=None, help="Slurm partition (-p)")
            p.add_argument("--slurm-time", type=int, default=24 * 60,
                           help="Slurm time limit per run, minutes")
    one = ssub.add_parser("run-one", help="(internal) one run of a sweep: what `sweep run` "
                                          "starts in each worker")
    one.add_argument("--spec-json", required=True, help="the run request as JSON")
    one.add_argument("--out", required=True, help="folder of run folders")
    one.add_argument("--threads", type=int, default=None, help="torch threads")
    one.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="cpu | cuda")
    one.add_argument("--data-root", default=None, help="folder of prepared stores")
    add_log_argument(one)
    add_plugin_argument(one)
    one.set_defaults(func=_run_one)

    r = sub.add_parser("report", help="summary.csv, tables and figures from the stored runs")
    _selection_args(r)
    r.add_argument("--results", type=Path, default=Path("results"),
                   help="where summary.csv, tables/ and figures/ go")
    r.add_argument("--correction", choices=("none", "holm"), default="none",
                   help="multiple-comparison correction of the † marks over each column's rows "
                        "(holm: Holm-Bonferroni)")
    r.set_defaults(func=_report)


def _selection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="synth", help="data profile: synth | ucla | ntu | k400 (k400: Table 2 only)")
    p.add_argument("--suite", default="all", help="all, or a comma list of table1,table3,...")
    p.add_argument("--seeds", default=None, help="comma list (default: the data profile's; 0 on synth, 0,1,2 otherwise)")
    p.add_argument("--profile", default=None,
                   help="schedule profile for every run (default: the data profile's)")
    p.add_argument("--shard", default=None, help="i/n: run the i-th of n disjoint parts")
    p.add_argument("--out", "--runs", dest="out", type=Path, default=Path("results/runs"),
                   help="folder of run folders")
    p.add_argument("--data-root", default=None, help="folder of prepared stores (env BENCH_DATA_ROOT)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="where the runs train: part of a run's identity through its precision "
                        "(amp applies on cuda only)")
    p.add_argument("--gpus-per-run", type=int, default=1, metavar="K",
                   help="processes (GPUs) per run: K > 1 launches each run with torchrun on K "
                        "GPUs (DDP, the global batch split over them; on CPU K gloo processes); "
                        "part of a run's identity (DDP world size), so status and report take it "
                        "too")
    p.add_argument("--methods", default=None, metavar="A,B",
                   help="add rows for these registered methods (e.g. your own, with --plugin) "
                        "to the method tables (Tables 1 and 3), after the paper's rows")
    add_plugin_argument(p)


def selection(args: argparse.Namespace):
    from .plugins import load_for_sweep
    from .suites import get_suites, unique_runs
    from .sweep import parse_shard, shard
    import methods as _  # noqa: F401  (registers every method)

    # --plugin and the plugins an earlier sweep recorded in this folder (benchmark.plugins)
    args.plugins = load_for_sweep(getattr(args, "plugins", None) or [], args.out)

    seeds = None
    if args.seeds:
        try:
            seeds = tuple(int(x) for x in str(args.seeds).split(","))
        except ValueError:
            raise BenchmarkError(f"--seeds must be a comma list of integers, got {args.seeds!r}") from None
    extra = tuple(m.strip() for m in (getattr(args, "methods", None) or "").split(",") if m.strip())
    suites = get_suites(args.suite, args.data, seeds, args.profile, extra_methods=extra)
    runs = unique_runs(suites)
    only = getattr(args, "only", None)
    if only:
        from .method import METHODS

        wanted = [m.strip() for m in only.split(",") if m.strip()]
        for m in wanted:
            METHODS.get(m)  # an unknown name: one error with did-you-mean
        runs = [r for r in runs if r.method in wanted]
    i, n = parse_shard(getattr(args, "shard", None))
    return suites, shard(runs, i, n)


def resolved_selection(args: argparse.Namespace):
    """The selection's runs with their identities; every store is checked here, once."""
    from .sweep import resolve_all

    suites, runs = selection(args)
    return suites, resolve_all(runs, args.data_root, args.device, _gpus_per_run(args))


def _gpus_per_run(args: argparse.Namespace) -> int:
    k = getattr(args, "gpus_per_run", 1)
    if k < 1:
        raise BenchmarkError(f"--gpus-per-run must be >= 1, got {k}")
    return k


def _devices(args: argparse.Namespace) -> list[str] | None:
    """--devices as a list; with --device cuda and none given, the visible GPUs (shared out
    round-robin when there are more workers than GPUs)."""
    from .launch import visible_gpus

    k = _gpus_per_run(args)
    if args.devices:
        if args.device != "cuda":
            raise BenchmarkError("--devices pins GPUs: add --device cuda")
        return [d.strip() for d in args.devices.split(",") if d.strip()]
    if args.device != "cuda" or args.launcher != "local":
        return None
    gpus = visible_gpus()
    if len(gpus) < k:
        raise BenchmarkError(f"--device cuda --gpus-per-run {k}: {len(gpus)} GPU(s) visible "
                             f"({','.join(gpus) or 'none'})")
    groups = len(gpus) // k
    if args.workers and args.workers > groups:  # more workers than GPUs: they share
        gpus = [g for _ in range(args.workers) for g in gpus[:groups * k]][:args.workers * k]
        log.info("sweep: %d worker(s) share %d GPU group(s)", args.workers, groups)
    return gpus[:(args.workers or groups) * k]


def _run(args: argparse.Namespace) -> int:
    from . import plugins, tracking
    from .launch import plan_slots
    from .sweep import run_local, run_slurm

    from .runner import check_out_dir, check_threads

    check_threads(args.threads)
    check_out_dir(args.out)
    log_to = tracking.check(tracking.parse(args.log))  # a missing tracker: before any work
    if args.launcher == "slurm" and args.devices:
        raise BenchmarkError("--devices is for local workers; Slurm gives each task its GPUs "
                             "(--gpus-per-run)")
    devices = _devices(args)
    plan_slots(devices, args.workers, _gpus_per_run(args))  # a bad layout fails before anything
    suites, runs = resolved_selection(args)
    plugins.record(args.out, args.plugins)  # a later status / report / resume finds them
    if args.data == "synth":
        log.info("sweep: %d run(s) of %s on the embedded synthetic data (%s); for the paper's "
                 "data: make benchmark DATA=ntu NTU_ROOT=<folder of prepared stores>", len(runs),
                 ", ".join(s.name for s in suites), args.profile or "quick schedule")
    if args.launcher == "slurm":
        sub = run_slurm(runs, args.out, args.device, args.data_root, args.threads,
                        args.gpus_per_run, args.plugins, log_to, args.slurm_partition,
                        args.slurm_time)
        if not sub["runs"]:
            print("nothing to submit: every run is done or running")
        else:
            print(f"submitted {sub['runs']} run(s) to Slurm as array job {sub['job']} "
                  f"({sub['script']}); `sweep status` follows them")
        return 0
    counts = run_local(runs, args.out, args.workers, args.threads, args.device, args.data_root,
                       rerun_stale=args.rerun_stale, devices=devices,
                       gpus_per_run=args.gpus_per_run, plugins=args.plugins, log_to=log_to)
    return 1 if counts["failed"] else 0


def _status(args: argparse.Namespace) -> int:
    from .sweep import STATES, describe, statuses

    _, runs = resolved_selection(args)
    states = statuses(runs, args.out)
    for st in states:
        print(f"{st.run_id}  {st.state:<10}  {describe(st.spec)}")
        if st.state in ("failed", "stale", "broken") and st.detail:
            print("    " + st.detail.replace("\n", "\n    "))
    total = {s: sum(st.state == s for st in states) for s in STATES}
    print(f"{len(states)} run(s): " + ", ".join(f"{v} {k}" for k, v in total.items()))
    return 0


def _list(args: argparse.Namespace) -> int:
    from .sweep import describe

    suites, runs = resolved_selection(args)
    for run in runs:
        print(f"{run.run_id}  {describe(run.spec)}")
    print(f"{len(runs)} run(s) in {', '.join(s.name for s in suites)}")
    for s in suites:  # rows the report computes from these runs, with no run of their own
        for f in getattr(s, "fused", ()):
            print(f"{s.name}: {f.row} = fused {' + '.join(f.members)}"
                  f"{f' ({f.preset} weights)' if f.preset else ''}")
    return 0


def _run_one(args: argparse.Namespace) -> int:
    from .sweep import run_one

    from .tracking import parse

    return run_one(args.spec_json, args.out, args.threads, args.device, args.data_root,
                   parse(args.log))


def _report(args: argparse.Namespace) -> int:
    from .report import build_reports

    suites, _ = selection(args)
    written = build_reports(suites, args.out, args.results, args.data_root, args.device,
                            world_size=_gpus_per_run(args), correction=args.correction)
    for path in written:
        print(path)
    return 0
