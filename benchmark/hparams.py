"""Typed hyper-parameters and ``--set key=value`` overrides.

Every method declares a frozen dataclass ``HParams`` with its defaults (and a comment citing
where each default comes from). Overrides arrive as strings, are parsed with
``ast.literal_eval`` (never ``eval``), type-checked against the field's declared type and
applied with ``dataclasses.replace``. An unknown key fails with a did-you-mean list.
"""
from __future__ import annotations

import ast
import dataclasses
import difflib
import typing
from typing import Any, Iterable

from .errors import BenchmarkError


def parse_assignments(items: Iterable[str]) -> dict[str, Any]:
    """``["lr=0.05", "tau=1"]`` -> ``{"lr": 0.05, "tau": 1}`` (values via ``ast.literal_eval``;
    a value that is not a Python literal is kept as a plain string, e.g. ``sampler=ros``)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BenchmarkError(f"--set expects key=value, got {item!r}")
        try:
            value = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            value = raw.strip()
        if key in out:
            raise BenchmarkError(f"--set {key} given twice")
        out[key] = value
    return out


def _coerce(owner: str, name: str, tp: Any, value: Any) -> Any:
    """Check ``value`` against a field type (int -> float widening allowed)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool):
        if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
            return value
    elif origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis and not isinstance(value, (list, tuple)):
            value = (value,)  # a scalar for a variadic tuple: --set milestones=50 -> (50,)
        if isinstance(value, (list, tuple)):
            elem = args[0] if args else Any
            return tuple(_coerce(owner, name, elem, v) for v in value)
    elif origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        for arg in typing.get_args(tp):
            if arg is type(None) and value is None:
                return None
            try:
                return _coerce(owner, name, arg, value)
            except BenchmarkError:
                continue
    elif isinstance(tp, type) and isinstance(value, tp):
        return value
    raise BenchmarkError(f"{owner}: {name} must be {getattr(tp, '__name__', tp)}, got {value!r}")


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def apply_overrides(obj: Any, overrides: dict[str, Any], owner: str) -> Any:
    """``dataclasses.replace(obj, **overrides)`` with type checks; unknown keys are errors."""
    hints = typing.get_type_hints(type(obj))
    known = field_names(type(obj))
    changes = {}
    for key, value in overrides.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise BenchmarkError(f"{owner}: unknown hyper-parameter {key!r}{hint} "
                                 f"(known: {', '.join(known) or 'none'})")
        changes[key] = _coerce(owner, key, hints[key], value)
    return dataclasses.replace(obj, **changes)


def split_overrides(overrides: dict[str, Any], *classes: type,
                    labels: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Route each key to the first dataclass declaring it; a key nobody declares is an error
    that lists the valid keys of each class (under ``labels``, default the class names)."""
    parts: list[dict[str, Any]] = [{} for _ in classes]
    all_known = [n for c in classes for n in field_names(c)]
    for key, value in overrides.items():
        for part, cls in zip(parts, classes):
            if key in field_names(cls):
                part[key] = value
                break
        else:
            close = difflib.get_close_matches(key, all_known, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            names = list(labels) if labels is not None else [c.__qualname__ for c in classes]
            valid = "; ".join(f"{label}: {', '.join(field_names(cls)) or 'none'}"
                              for label, cls in zip(names, classes))
            raise BenchmarkError(f"unknown --set key {key!r}{hint} (valid keys: {valid}; "
                                 f"`python -m benchmark config` explains the TrainConfig ones)")
    return parts


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)
