"""User-facing errors.

Anything the user can cause (a corrupt file, a bad option, a split naming missing samples)
raises :class:`BenchmarkError` with a message that names the file and the problem. The CLI
turns it into a single ``error: ...`` line on stderr and exit status 2; a traceback is only
for bugs in our own code.
"""
from __future__ import annotations

import os


class BenchmarkError(Exception):
    """Bad input or configuration supplied by the user (exit status 2)."""


def bad_file(path: str | os.PathLike, problem: str) -> BenchmarkError:
    """Build the one-line error for a bad input file: ``<path>: <problem>``."""
    return BenchmarkError(f"{os.fspath(path)}: {problem}")
