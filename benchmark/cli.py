"""``python -m benchmark <command> ...``: the one entry point of the suite.

Every sub-command module exposes ``add_parser(subparsers)``; the handler it sets as
``func`` returns an exit status. User errors (:class:`BenchmarkError`) and
errors of the environment (``OSError``: a read-only folder, a full disk) become one
``error: ...`` line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .errors import BenchmarkError


def build_parser() -> argparse.ArgumentParser:
    from . import ensemble, saliency, sweep_cli, train_cli
    from .data import cli as data_cli

    # the console command (pyproject's [project.scripts]) or `python -m benchmark`
    prog = "ltskeleton" if Path(sys.argv[0]).name == "ltskeleton" else "python -m benchmark"
    p = argparse.ArgumentParser(prog=prog,
                                description="LT-Skeleton Bench: long-tailed skeleton action recognition")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    data_cli.add_parser(sub)
    train_cli.add_parser(sub)
    saliency.add_parser(sub)
    sweep_cli.add_parser(sub)
    ensemble.add_parser(sub)
    return p



def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself exits with 2 on a bad option
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(message)s", stream=sys.stderr)
    try:
        if getattr(args, "plugins", None):  # --plugin: the user's registrations come first
            from .plugins import load

            load(args.plugins)
        return int(args.func(args) or 0)
    except BenchmarkError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the environment, not our code: a read-only folder, a full disk
        where = e.filename if e.filename is not None else "(no file named)"
        print(f"error: {where}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
