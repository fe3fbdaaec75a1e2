"""Vectorised reader of well-formed NTU ``.skeleton`` text (the fast path of ``ntu_parse``).

:func:`fast_layout` finds every whitespace-separated token with numpy, walks the frame/body
counts, and converts the x, y, z tokens with an exact vectorised decimal reader (tokens it
cannot vouch for go through ``float()``). It never raises: on anything unexpected it returns
None and :func:`benchmark.data.ntu_parse.parse_skeleton` runs the token-by-token reference
reader, which produces the precise error. Both are bit-identical wherever this succeeds
(``tests/test_ntu_raw.py``). Work buffers are reused per thread: fresh multi-hundred-KB arrays
per file cost more in page faults than the parsing itself.
"""
from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

import numpy as np

from .ntu_denoise import NUM_JOINTS

log = logging.getLogger("benchmark.data.ntu_parse")

# tokens per body-info line (bodyID, clippedEdges, hand confidences/states, restricted, lean, tracking)
# and per joint line (x y z, depth x y, colour x y, orientation wxyz, tracking), fixed by the format
BODY_INFO_TOKENS = 10
JOINT_TOKENS = 12
BODY_TOKENS = BODY_INFO_TOKENS + 1 + JOINT_TOKENS * NUM_JOINTS      # 311 tokens per body
XYZ_OFFSETS = JOINT_TOKENS * np.arange(NUM_JOINTS)[:, None] + np.arange(3)  # (25, 3): x, y, z
# (frames in the file, kept frames, dropped frame indices, body ID of each (frame, body)
# occurrence, kept-frame index of each occurrence, (occurrences, 25, 3) float32 x y z)
Layout = tuple[int, int, list[int], list[bytes], list[int], np.ndarray]

_WIDE = 16  # longest number token the vectorised reader converts; longer ones go through float()
_WINDOW = np.dtype((np.void, _WIDE))
_BLOCK = 4096  # windows gathered per step
# per token length 0..16: the window bytes that belong to the token (the last ones), as two
# little-endian 64-bit words
_KEEP = np.where(np.arange(_WIDE - 1, -1, -1) < np.arange(_WIDE + 1)[:, None], 0xFF, 0
                 ).astype(np.uint8).view("<u8")
_POW10_INT = 10 ** np.arange(_WIDE, dtype=np.uint64)
_POW10 = 10.0 ** np.arange(_WIDE)  # exact in float64
_EXACT = 2 ** 53                   # integers up to this convert to float64 exactly
_U8, _U64, _F64, _BOOL, _INTP = (np.dtype(t) for t in (np.uint8, np.uint64, np.float64, np.bool_, np.intp))
_BYTE_SUM = 0x0101010101010101     # (w * _BYTE_SUM) >> 56: sum of the 8 bytes of w (if < 256)
_BYTE_DIST = 0x0706050403020100    # (w * _BYTE_DIST) >> 56: sum of byte i * (7 - i) (if < 256)


class _Work(threading.local):
    """Per-thread work arrays, grown as needed and reused by every call."""

    def __init__(self) -> None:
        self.pool: dict[str, np.ndarray] = {}

    def get(self, name: str, rows: int, dtype: np.dtype, cols: int = 0) -> np.ndarray:
        """An uninitialised (rows,) or (rows, cols) array of ``dtype`` (an np.dtype)."""
        size = rows * max(cols, 1) * dtype.itemsize
        buf = self.pool.get(name)
        if buf is None or len(buf) < size:
            buf = self.pool[name] = np.empty(size + size // 4 + 4096, np.uint8)
        out = buf[:size].view(dtype)
        return out.reshape(rows, cols) if cols else out


_work = _Work()


def _row_sums(flags: np.ndarray, weights: int, halves: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Per row of (n, 16) small bytes: weighted byte sums of each 8-byte half into ``halves``
    (n, 2) and their total into ``out`` (n,); ``weights`` is _BYTE_SUM or _BYTE_DIST."""
    np.multiply(flags.view("<u8"), weights, out=halves)
    halves >>= 56
    return np.add(halves[:, 0], halves[:, 1], out=out)


def _decimals(chars: np.ndarray, length: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 values of plain decimal tokens ``[-]digits[.digits]``, and which tokens are such.

    ``chars`` (n, 16) uint8 holds each token right-aligned in 16 bytes (whatever precedes it in
    the file on the left; overwritten), with the leading '-' of the tokens flagged in ``neg``
    (n,) uint64 0/1 replaced by '0'; ``length`` (n,) uint64. The digits are combined into an
    exact integer M (the dot left out) with SIMD-within-a-register steps on 64-bit words, and
    the value is M / 10**k for k digits after the dot: both exact in float64, so the one
    correctly rounded division gives exactly ``float(token)`` (in 16 bytes a token with a dot
    has at most 15 digits, so M < 10**15; one without has k = 0 and a single rounding in the
    cast). Tokens that are not plain decimals or are longer than 16 bytes are flagged False
    (their values are undefined), as is M > 2**53 for safety. Both results are work arrays,
    valid until the next call.
    """
    n, get = len(chars), _work.get
    words = chars.view("<u8")                                                     # (n, 2)
    # bytes before the token -> 0 (a length over 16 clips to row 16, keeping all; flagged below)
    words &= np.take(_KEEP, length.view(np.intp), axis=0, out=get("keep", n, _U64, 2), mode="clip")
    digits = np.subtract(chars, 48, out=get("digits", n, _U8, _WIDE))
    is_digit = np.less(digits, 10, out=get("is_digit", n, _BOOL, _WIDE))
    is_dot = np.equal(chars, 46, out=get("is_dot", n, _BOOL, _WIDE))
    digits *= is_digit.view(np.uint8)
    halves = get("halves", n, _U64, 2)
    num_digits = _row_sums(is_digit, _BYTE_SUM, halves, get("num_digits", n, _U64))
    num_dots = _row_sums(is_dot, _BYTE_SUM, halves, get("num_dots", n, _U64))
    # k, the digits after the dot (if just one): its distance from the end of the window
    k = np.multiply(halves[:, 0], 8, out=get("k", n, _U64))
    k += _row_sums(is_dot, _BYTE_DIST, halves, get("dist", n, _U64))
    k *= num_dots  # no dot: 0 (more than one: flagged below)
    # 8 digit bytes (first = most significant) -> their value, in each 64-bit word
    w = digits.view("<u8")
    for shift, mask in ((8, 0x00FF00FF00FF00FF), (16, 0x0000FFFF0000FFFF), (32, 0x00000000FFFFFFFF)):
        high = np.multiply(w, 10 ** (shift // 8), out=halves)
        w >>= shift
        w += high
        w &= mask
    m = np.multiply(w[:, 0], 10 ** 8, out=get("m", n, _U64))
    m += w[:, 1]  # every digit weighted by 10**(bytes after it), so 10x too much left of the dot
    k_index = k.view(np.intp)
    high = np.take(_POW10_INT, k_index, out=get("high", n, _U64), mode="clip")
    np.remainder(m, high, out=high)  # the digits after the dot
    np.subtract(m, high, out=high)
    high //= 10                      # the digits before the dot, at their true weight
    high *= num_dots
    high *= 9
    m -= high                        # m: the digits without the dot, < 10**16
    ok = np.less_equal(length, _WIDE, out=get("ok", n, _BOOL))
    ok &= np.add(num_digits, num_dots, out=get("total", n, _U64)) == length  # only digits, dots
    ok &= num_dots <= 1
    ok &= num_digits > neg  # a digit besides the '-' made '0'
    ok &= m <= _EXACT
    values = get("values", n, _F64)
    np.copyto(values, m, casting="unsafe")  # exact: m <= 2**53 wherever ok
    values /= np.take(_POW10, k_index, out=get("scale", n, _F64), mode="clip")
    values.view("<u8")[...] |= np.left_shift(neg, 63, out=m)  # the sign bit (values are >= 0)
    return values, ok


def _numbers(raw: bytes, starts: np.ndarray, ends: np.ndarray) -> np.ndarray | None:
    """float64 of the tokens ``raw[starts[i]:ends[i]]``, exactly as ``np.array(tokens, float64)``
    converts them, or None where that raises. Needs ``ends >= 16``; overwrites ``ends``; the
    result is a work array, valid until the next call.
    """
    num = len(ends)
    if num == 0 or ends.min() < _WIDE:
        return None
    # each token right-aligned in a 16-byte window of the file
    windows = np.ndarray(buffer=raw, dtype=_WINDOW, shape=(len(raw) - _WIDE + 1,), strides=(1,))
    index = np.subtract(ends, _WIDE, out=_work.get("index", num, _INTP))
    chars = _work.get("chars", num, _WINDOW)
    for i in range(0, num, _BLOCK):  # fancy indexing, in small blocks (np.take is slow on void)
        chars[i:i + _BLOCK] = windows[index[i:i + _BLOCK]]
    chars = chars.view(np.uint8).reshape(num, _WIDE)
    length = np.subtract(ends, starts, out=ends)
    minus = np.frombuffer(raw, np.uint8)[starts] == ord("-")
    rows = np.flatnonzero(minus)
    chars[rows, np.maximum(_WIDE - length[rows], 0)] = ord("0")
    neg = _work.get("neg", num, _U64)
    np.copyto(neg, minus)
    values, ok = _decimals(chars, length.view(np.uint64), neg)
    if not ok.all():  # exponents, '+', 'nan', ...: float() per token, as the reference does
        bad = np.flatnonzero(~ok)
        try:
            values[bad] = np.array([raw[i:i + j] for i, j in zip(starts[bad].tolist(), length[bad].tolist())],
                                   dtype=np.float64)
        except ValueError:
            return None
    return values


def _same_body_count(raw: bytes, arr: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                     num_frames: int, num_tokens: int) -> tuple | None:
    """The frame walk of :func:`_walk` when every frame has the same one-digit body count
    as the first (most files), checked at once; None for any other file."""
    if num_tokens < 2 or ends[1] - starts[1] != 1:
        return None
    per_frame = int(raw[starts[1]:ends[1]])
    stride = 1 + per_frame * BODY_TOKENS
    end = 1 + num_frames * stride
    if per_frame == 0 or end > num_tokens:
        return None
    count_tok = np.arange(1, end, stride)
    if not ((ends[count_tok] - starts[count_tok] == 1).all()
            and (arr[starts[count_tok]] == raw[starts[1]]).all()):
        return None
    body_tok = (count_tok[:, None] + 1 + BODY_TOKENS * np.arange(per_frame)).ravel()
    occ_frame = np.repeat(np.arange(num_frames), per_frame).tolist()
    return body_tok, occ_frame, [], end, num_frames


def _walk(raw: bytes, edge: memoryview, num_frames: int, num_tokens: int) -> tuple:
    """Read the body count of each frame: (token index of each occurrence's body ID, its
    kept-frame index, dropped frames, token index after the last frame, kept frames); the
    kept-frame count is 0 when the file is not one the fast path reads."""
    pos, kept = 1, 0
    body_tok: list[int] = []
    occ_frame: list[int] = []
    dropped: list[int] = []
    try:  # int() as the reference reads the counts; a ValueError sends the file there
        for f in range(num_frames):
            if pos >= num_tokens:
                return [], [], [], 0, 0
            num_bodies = int(raw[edge[2 * pos]:edge[2 * pos + 1]])
            pos += 1
            if num_bodies <= 0:
                if num_bodies < 0:
                    return [], [], [], 0, 0
                dropped.append(f)
                continue
            end = pos + num_bodies * BODY_TOKENS
            if end > num_tokens:  # truncated (or an absurd count)
                return [], [], [], 0, 0
            body_tok.extend(range(pos, end, BODY_TOKENS))
            occ_frame.extend([kept] * num_bodies)
            pos = end
            kept += 1
    except ValueError:
        return [], [], [], 0, 0
    return body_tok, occ_frame, dropped, pos, kept


def fast_layout(raw: bytes, path: str | Path) -> Layout | None:
    """The layout of a well-formed file, or None to let :func:`benchmark.data.ntu_parse._reference_layout` decide."""
    if sys.byteorder != "little" or _INTP.itemsize != 8:  # the word steps assume these
        return None
    arr = np.frombuffer(raw, np.uint8)
    n = len(arr)
    solid = _work.get("solid", n + 2, _BOOL)  # non-whitespace, with a blank byte at both ends
    solid[0] = solid[-1] = False
    inner = solid[1:-1]
    tmp = _work.get("tmp", n, _U8)
    np.greater(np.subtract(arr, 9, out=tmp), 4, out=inner)   # bytes.split() whitespace:
    inner &= np.not_equal(arr, 32, out=tmp.view(np.bool_))   # \t \n \v \f \r and space
    edges = np.flatnonzero(np.not_equal(solid[1:], solid[:-1], out=_work.get("change", n + 1, _BOOL)))
    num_tokens = len(edges) // 2                  # edges: start, end, start, end, ... per token
    starts, ends = edges[0::2], edges[1::2]
    edge = memoryview(edges)  # plain ints, faster to index one by one
    if num_tokens == 0:
        return None
    try:  # int() as the reference reads the counts; a ValueError sends the file there
        num_frames = int(raw[edge[0]:edge[1]])
        walk = _same_body_count(raw, arr, starts, ends, num_frames, num_tokens) if num_frames > 0 else None
    except ValueError:
        return None
    if num_frames <= 0:
        return None
    if walk is not None:
        body_tok, occ_frame, dropped, pos, kept = walk
    else:
        body_tok, occ_frame, dropped, pos, kept = _walk(raw, edge, num_frames, num_tokens)
    if kept == 0:
        return None
    first = np.asarray(body_tok)
    joint_count = first + BODY_INFO_TOKENS  # must read exactly "25"
    if not ((ends[joint_count] - starts[joint_count] == 2).all()
            and (arr[starts[joint_count]] == ord("2")).all()
            and (arr[starts[joint_count] + 1] == ord("5")).all()):
        return None

    num = len(first) * 3 * NUM_JOINTS
    index = _work.get("xyz", num, _INTP)
    np.add((joint_count + 1)[:, None, None], XYZ_OFFSETS, out=index.reshape(-1, NUM_JOINTS, 3))
    s = np.take(starts, index, out=_work.get("s", num, _INTP), mode="clip")
    e = np.take(ends, index, out=_work.get("e", num, _INTP), mode="clip")
    values = _numbers(raw, s, e)
    if values is None:
        return None
    with np.errstate(over="ignore"):  # beyond float32 -> inf, reported by the caller's check
        xyz = values.astype(np.float32).reshape(-1, NUM_JOINTS, 3)
    if pos < num_tokens:  # the official reader ignores anything after the last frame, so do we
        log.warning("%s: %d extra tokens after the last frame ignored", path, num_tokens - pos)
    occ_ids = [raw[i:j] for i, j in zip(starts[first].tolist(), ends[first].tolist())]
    return num_frames, kept, dropped, occ_ids, occ_frame, xyz
