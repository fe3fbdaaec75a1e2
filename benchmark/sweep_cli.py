"""``python -m benchmark sweep run | status | list`` and ``python -m benchmark report``.

    sweep run     --data synth|ucla|ntu [--suite all|table1,...] [--seeds 0,1,2] [--profile P]
                  [--workers N] [--threads T] [--shard i/n] [--launcher local|slurm]
                  [--slurm-partition P --slurm-time MIN --slurm-gpus G] [--out results/runs]
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
            p.add_argument("--workers", type=int, default=1, help="parallel local runs")
            p.add_argument("--threads", type=int, default=None,
                           help="torch threads per run (default: cores / workers)")
            p.add_argument("--rerun-stale", action="store_true",
                           help="also redo finished runs made by other code (status: stale); "
                                "their old folders move to <out>/_stale/")
            p.add_argument("--launcher", default="local", choices=("local", "slurm"))
            p.add_argument("--slurm-partition", default=None)
            p.add_argument("--slurm-time", type=int, default=24 * 60, help="minutes per run")
            p.add_argument("--slurm-gpus", type=int, default=1)
    one = ssub.add_parser("run-one", help=argparse.SUPPRESS)  # the worker of `sweep run`
    one.add_argument("--spec-json", required=True, help="the run request as JSON")
    one.add_argument("--out", required=True)
    one.add_argument("--threads", type=int, default=None)
    one.add_argument("--device", default="cpu")
    one.add_argument("--data-root", default=None)
    one.set_defaults(func=_run_one)

    r = sub.add_parser("report", help="summary.csv, tables and figures from the stored runs")
    _selection_args(r)
    r.add_argument("--results", type=Path, default=Path("results"),
                   help="where summary.csv, tables/ and figures/ go")
    r.set_defaults(func=_report)


def _selection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="synth", help="data profile: synth | ucla | ntu")
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


def selection(args: argparse.Namespace):
    from .suites import get_suites, unique_runs
    from .sweep import parse_shard, shard
    import methods as _  # noqa: F401  (registers every method)

    seeds = None
    if args.seeds:
        try:
            seeds = tuple(int(x) for x in str(args.seeds).split(","))
        except ValueError:
            raise BenchmarkError(f"--seeds must be a comma list of integers, got {args.seeds!r}") from None
    suites = get_suites(args.suite, args.data, seeds, args.profile)
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
    return suites, resolve_all(runs, args.data_root, args.device)


def _run(args: argparse.Namespace) -> int:
    from .sweep import run_local, run_slurm

    from .runner import check_out_dir, check_threads

    if args.workers < 1:
        raise BenchmarkError(f"--workers must be >= 1, got {args.workers}")
    check_threads(args.threads)
    check_out_dir(args.out)
    suites, runs = resolved_selection(args)
    if args.data == "synth":
        log.info("sweep: %d run(s) of %s on the embedded synthetic data (%s); for the paper's "
                 "data: make benchmark DATA=ntu NTU_ROOT=<folder of prepared stores>", len(runs),
                 ", ".join(s.name for s in suites), args.profile or "quick schedule")
    if args.launcher == "slurm":
        slurm = {"timeout_min": args.slurm_time, "gpus_per_node": args.slurm_gpus,
                 "slurm_partition": args.slurm_partition}
        jobs = run_slurm(runs, args.out, {k: v for k, v in slurm.items() if v is not None},
                         args.device, args.data_root)
        print(f"submitted {len(jobs)} run(s) to Slurm; `sweep status` follows them")
        return 0
    counts = run_local(runs, args.out, args.workers, args.threads, args.device, args.data_root,
                       rerun_stale=args.rerun_stale)
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

    return run_one(args.spec_json, args.out, args.threads, args.device, args.data_root)


def _report(args: argparse.Namespace) -> int:
    from .report import build_reports

    suites, _ = selection(args)
    written = build_reports(suites, args.out, args.results, args.data_root, args.device)
    for path in written:
        print(path)
    return 0
