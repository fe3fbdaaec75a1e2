"""A restricted unpickler for PYSKL annotation files: data only, never code.

PYSKL (Duan et al., ACM MM 2022; github.com/kennymckormick/pyskl) ships its skeletons as
pickles (``k400_hrnet.pkl``, ``ntu60_3danno.pkl``, ...) and every official loader reads them
with ``pickle.load`` (``mmcv.load``), which calls whatever global the file names. This module
reads the same files while admitting only what they hold: dicts, lists, tuples, strings,
numbers (pickle opcodes, no global needed) and numpy arrays, dtypes and scalars. The globals a
numpy (1.x or 2.x) pickle of protocol 2-5 names are mapped to checking stand-ins, never to
the real callables:

    numpy.core.multiarray._reconstruct, numpy._core.multiarray._reconstruct   (empty array)
    numpy.ndarray                                                              (its argument)
    numpy.dtype                                                 (plain numeric / text dtypes)
    numpy.core.multiarray.scalar, numpy._core.multiarray.scalar  (from exact-size raw bytes)
    numpy.core.numeric._frombuffer, numpy._core.numeric._frombuffer        (protocol 5 arrays)
    _codecs.encode                        (protocol 2's bytes: (str, 'latin1') and nothing else)
    builtins.bytes, __builtin__.bytes              (protocol 2's empty bytes: no argument)
    collections.OrderedDict                                               (read as a dict)

Any other global (``os.system``, ``builtins.eval``, ``numpy.save``, ``copyreg`` helpers,
...) is refused by name before anything is called, as are persistent IDs. Within the admitted
globals: an array's state must be a plain dtype (no object fields: an object array could
carry arbitrary objects) with raw bytes of exactly the declared size, the stand-ins reject any
other arguments, and setting state on a stand-in (a ``BUILD`` aimed at our own functions) is an
error. The arrays built from a file's bytes may total at most a few times the file's size.
"""
from __future__ import annotations

import contextvars
import math
import os
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BenchmarkError, bad_file

# numeric and fixed-width text dtypes, in the spelling numpy's own dtype pickles use
_DTYPE_SPEC = re.compile(r"^[<>|=]?(?:b1|[iu][1248]|f[248]|c(?:8|16)|[US]\d+)$")
_DTYPE_KINDS = "biufcUS"
# bytes of arrays a file may produce: numpy copies array states, so a few times the file size
# is the most a data file needs; more is a file that makes one byte string into many arrays
_BUDGET_FACTOR, _BUDGET_SLACK = 4, 64 << 20
_budget: contextvars.ContextVar[list] = contextvars.ContextVar("pyskl_pickle_budget")


class _Refusal(Exception):
    """A refused construct (turned into a BenchmarkError naming the file by :func:`load`)."""


def _check_dtype(dt: Any, what: str) -> np.dtype:
    if not isinstance(dt, np.dtype):
        raise _Refusal(f"{what}: expected a numpy dtype, got {type(dt).__name__}")
    if dt.hasobject or dt.kind not in _DTYPE_KINDS or dt.names is not None or dt.subdtype is not None:
        raise _Refusal(f"{what}: dtype {dt!s} is refused (only plain numeric and text dtypes; "
                       "object or structured arrays could carry arbitrary objects)")
    return dt


def _check_shape(shape: Any, what: str) -> tuple[int, ...]:
    if not (isinstance(shape, tuple) and all(type(s) is int and s >= 0 for s in shape)):
        raise _Refusal(f"{what}: shape {shape!r} is not a tuple of non-negative integers")
    return shape


def _spend(nbytes: int) -> None:
    budget = _budget.get(None)
    if budget is not None:
        budget[0] -= nbytes
        if budget[0] < 0:
            raise _Refusal("the arrays it builds add up to more than "
                           f"{_BUDGET_FACTOR}x the file's size (one byte string reused as many arrays?)")


class _GuardedArray(np.ndarray):
    """The empty array ``_reconstruct`` makes; its state (``BUILD``) is checked before use."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Refusal("ndarray state is not numpy's (version, shape, dtype, fortran, data)")
        shape, dt, fortran, raw = state[-4:]
        _check_shape(shape, "ndarray")
        dt = _check_dtype(dt, "ndarray")
        if type(fortran) is not bool or not isinstance(raw, (bytes, bytearray)):
            raise _Refusal("ndarray state must hold a boolean order flag and raw bytes")
        need = math.prod(shape) * dt.itemsize
        if len(raw) != need:
            raise _Refusal(f"ndarray data is {len(raw)} bytes, its shape {shape} and dtype {dt} "
                           f"need {need}")
        _spend(len(raw))
        super().__setstate__(state)


class _StandIn:
    """What ``find_class`` returns instead of a real global: a checking callable."""

    __slots__ = ("name", "fn")

    def __init__(self, name: str, fn: Any):
        self.name, self.fn = name, fn

    def __call__(self, *args: Any) -> Any:
        if self.fn is None:
            raise _Refusal(f"{self.name} may only appear as the argument of _reconstruct")
        return self.fn(*args)

    def __setstate__(self, state: Any) -> None:  # a BUILD aimed at our own stand-in
        raise _Refusal(f"setting state on {self.name} is refused")


_NDARRAY = _StandIn("numpy.ndarray", None)


def _reconstruct(subtype: Any, shape: Any, typecode: Any) -> np.ndarray:
    if subtype is not _NDARRAY or shape != (0,) or typecode not in (b"b", "b"):
        raise _Refusal("_reconstruct is admitted only as numpy's own (ndarray, (0,), b'b') call")
    return np.ndarray.__new__(_GuardedArray, (0,), np.int8)


def _dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    if not (isinstance(spec, str) and _DTYPE_SPEC.match(spec)) or type(align) is not bool \
            or type(copy) is not bool:
        raise _Refusal(f"numpy.dtype{(spec, align, copy)!r} is refused (only plain numeric and "
                       "text dtypes)")
    # always a copy: the state a BUILD sets next must never reach numpy's shared dtype
    return np.dtype(spec, align=align, copy=True)


def _scalar(dt: Any, raw: Any) -> np.generic:
    dt = _check_dtype(dt, "numpy scalar")
    if not isinstance(raw, (bytes, bytearray)) or len(raw) != dt.itemsize:
        raise _Refusal(f"numpy scalar of {dt} needs {dt.itemsize} raw bytes")
    return np.frombuffer(bytes(raw), dtype=dt)[0]


def _frombuffer(buf: Any, dt: Any, shape: Any, order: Any) -> np.ndarray:
    dt = _check_dtype(dt, "_frombuffer")
    _check_shape(shape, "_frombuffer")
    if not isinstance(buf, (bytes, bytearray)) or order not in ("C", "F"):
        raise _Refusal("_frombuffer needs in-band bytes and order 'C' or 'F'")
    if len(buf) != math.prod(shape) * dt.itemsize:
        raise _Refusal(f"_frombuffer: {len(buf)} bytes do not fill shape {shape} of {dt}")
    _spend(len(buf))
    return np.frombuffer(buf, dtype=dt).reshape(shape, order=order)


def _latin1(text: Any, encoding: Any = None) -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refusal("_codecs.encode is admitted only as protocol 2's (str, 'latin1') bytes")
    return text.encode("latin-1")


def _empty_bytes(*args: Any) -> bytes:
    if args:
        raise _Refusal("builtins.bytes is admitted only as protocol 2's empty bytes, bytes()")
    return b""


def _ordered_dict(*args: Any) -> dict:
    if args:
        raise _Refusal("collections.OrderedDict is admitted only empty (items follow)")
    return {}


ALLOWED: dict[tuple[str, str], _StandIn] = {("numpy", "ndarray"): _NDARRAY}
for _mod in ("numpy.core", "numpy._core"):
    for _sub, _name, _fn in (("multiarray", "_reconstruct", _reconstruct),
                             ("multiarray", "scalar", _scalar), ("numeric", "_frombuffer", _frombuffer)):
        ALLOWED[(f"{_mod}.{_sub}", _name)] = _StandIn(f"{_mod}.{_sub}.{_name}", _fn)
ALLOWED[("numpy", "dtype")] = _StandIn("numpy.dtype", _dtype)
ALLOWED[("_codecs", "encode")] = _StandIn("_codecs.encode", _latin1)
for _mod in ("builtins", "__builtin__"):  # protocol 2 names Python 2's module
    ALLOWED[(_mod, "bytes")] = _StandIn(f"{_mod}.bytes", _empty_bytes)
ALLOWED[("collections", "OrderedDict")] = _StandIn("collections.OrderedDict", _ordered_dict)


class SafeUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose globals are :data:`ALLOWED`'s stand-ins, nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED[(module, name)]
        except (KeyError, TypeError):
            raise _Refusal(f"refused global {module}.{name}: a PYSKL annotation file holds only "
                           "numpy arrays, dicts, lists, tuples, strings and numbers, and this "
                           "one names code to run") from None

    def persistent_load(self, pid: Any) -> Any:
        raise _Refusal("refused persistent ID: a PYSKL annotation file has none")


def load(path: str | os.PathLike) -> Any:
    """Unpickle ``path`` with :class:`SafeUnpickler`; arrays come back as plain ndarrays.

    Raises:
        BenchmarkError: one line naming the file and the refused global, or why it is not a
            readable pickle. Nothing the file names is ever called.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        f = open(path, "rb")
    except OSError as e:
        raise bad_file(path, f"cannot read ({e.strerror})") from None
    token = _budget.set([_BUDGET_FACTOR * size + _BUDGET_SLACK])
    try:
        with f:
            obj = SafeUnpickler(f).load()
    except _Refusal as e:
        raise bad_file(path, str(e)) from None
    except BenchmarkError:
        raise
    except RecursionError:
        raise bad_file(path, "not a PYSKL annotation pickle (nested too deeply)") from None
    except MemoryError:
        raise bad_file(path, "not enough memory to unpickle it") from None
    except Exception as e:  # noqa: BLE001 - any other failure is a malformed file
        raise bad_file(path, f"not a readable pickle ({type(e).__name__}: {e})") from None
    finally:
        _budget.reset(token)
    return obj


def plain(x: Any) -> Any:
    """``x`` as a plain ndarray if it is one of the unpickler's checked arrays (a view, no copy)."""
    return x.view(np.ndarray) if type(x) is _GuardedArray else x

