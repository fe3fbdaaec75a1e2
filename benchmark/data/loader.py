"""Batch loader: rows of a store -> transformed (x, y, idx) batches on the training device.

Replaces the official per-sample ``torch.utils.data.DataLoader`` over Shap-Mix's
``feeders/feeder_ntu.py:Feeder_LT_nosample`` (JHang2020/Shap-Mix): the clip transform
(:mod:`benchmark.data.transforms`) runs once per BATCH on the device, and its generator is
re-seeded from (seed, epoch) at the start of every epoch, so epoch e's batches are a pure
function of (seed, epoch) whatever happened before (resume-safe; the official loader workers
are re-seeded by worker id and replay the same draws every epoch).

Reading: a batch reads only frames [0, max length in the batch) of its rows (the rest is
padding), rows in ascending order for locality. When the data is a file-backed ``.npy``
memory map the rows are read with ``os.preadv`` straight into the batch buffer instead of
through the map: pages touched through a map count into the process RSS for as long as they
stay mapped, so one epoch over a 7 GB store would grow RSS to ~7 GB; positional reads only go
through the (reclaimable, not RSS) page cache and keep RSS at a few batches.
A background thread reads the next ``prefetch`` batches while the current one is used.
"""
from __future__ import annotations

import logging
import mmap
import os
import queue
import threading
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from ..errors import BenchmarkError
from .samplers import TRANSFORM_STREAM, derive_seed

log = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
Transform = Callable[[torch.Tensor, torch.Tensor, "torch.Generator | None"], torch.Tensor]


class RowReader:
    """Copy ``data[rows, :, :tmax]`` of a (N, C, T, V, M) array into a new C-contiguous buffer."""

    def __init__(self, data: np.ndarray):
        if data.ndim != 5:
            raise ValueError(f"expected (N, C, T, V, M) data, got shape {data.shape}")
        self.data = data
        self.shape = data.shape
        self.dtype = data.dtype
        self._fd: int | None = None
        self._offset = 0
        # Only a whole-file map (base is the mmap, not a view of another array) has a known
        # file offset for element 0; anything else falls back to numpy indexing.
        if (isinstance(data, np.memmap) and isinstance(data.base, mmap.mmap)
                and data.flags.c_contiguous and data.filename and hasattr(os, "preadv")):
            self._path = os.fspath(data.filename)
            self._offset = int(data.offset)
            self._fd = os.open(self._path, os.O_RDONLY)

    @property
    def uses_pread(self) -> bool:
        return self._fd is not None

    def read(self, rows: np.ndarray, tmax: int, out: np.ndarray | None = None) -> np.ndarray:
        """Rows in the given order; read in ascending row order (file locality)."""
        n, (_, C, T, V, M) = len(rows), self.shape
        if not 1 <= tmax <= T:
            raise ValueError(f"tmax must be in [1, {T}], got {tmax}")
        if out is None:
            out = np.empty((n, C, tmax, V, M), dtype=self.dtype)
        order = np.argsort(rows, kind="stable")
        if self._fd is None:
            # fancy indexing makes a copy; sorted rows = sequential access for a map too
            out[order] = self.data[rows[order], :, :tmax]
            return out
        item = self.dtype.itemsize
        chan_bytes = T * V * M * item
        row_bytes = C * chan_bytes
        gap = (T - tmax) * V * M * item  # padding frames between two channels' reads
        # one preadv per row: the C channel slices are scattered into the output and the
        # padding between them into a scratch buffer (one syscall instead of C)
        scratch = memoryview(bytearray(gap)) if gap else None
        self.advise(rows, tmax)
        for i in order:
            parts: list[memoryview] = []
            for c in range(C):
                parts.append(memoryview(out[i, c]).cast("B"))
                if scratch is not None and c < C - 1:
                    parts.append(scratch)
            self._preadv(parts, self._offset + int(rows[i]) * row_bytes)
        return out

    def advise(self, rows: np.ndarray, tmax: int) -> None:
        """Ask the kernel to start reading these rows now (POSIX_FADV_WILLNEED is asynchronous).

        Without it a cold store is read one row at a time (queue depth 1); with it the whole
        batch's I/O is in flight at once. No effect on the in-memory path.
        """
        if self._fd is None or not hasattr(os, "posix_fadvise"):
            return
        _, C, T, V, M = self.shape
        row_bytes = C * T * V * M * self.dtype.itemsize
        span = ((C - 1) * T + tmax) * V * M * self.dtype.itemsize
        for r in np.unique(rows):
            os.posix_fadvise(self._fd, self._offset + int(r) * row_bytes, span, os.POSIX_FADV_WILLNEED)

    def _preadv(self, parts: list[memoryview], offset: int) -> None:
        want = sum(p.nbytes for p in parts)
        got = os.preadv(self._fd, parts, offset)
        if got < want:  # short reads are legal (signals, NFS): finish the remainder
            flat = bytearray(want - got)
            view, done = memoryview(flat), 0
            while done < len(flat):
                more = os.preadv(self._fd, [view[done:]], offset + got + done)
                if more == 0:
                    raise BenchmarkError(f"{self._path}: file is shorter than its header says "
                                         f"(truncated store?)")
                done += more
            self._scatter(parts, got, flat)

    @staticmethod
    def _scatter(parts: list[memoryview], skip: int, data: bytearray) -> None:
        """Copy ``data`` into the buffers ``parts`` starting ``skip`` bytes into their chain."""
        pos = 0
        for p in parts:
            if skip >= p.nbytes:
                skip -= p.nbytes
                continue
            take = min(p.nbytes - skip, len(data) - pos)
            p[skip:skip + take] = data[pos:pos + take]
            pos += take
            skip = 0
            if pos == len(data):
                return

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:  # best effort; close() is the explicit way
        try:
            self.close()
        except Exception:
            pass


def _unpack_source(source: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A Store (or anything with .data/.labels/.lengths) or a (data, labels, lengths) tuple."""
    if isinstance(source, (tuple, list)) and len(source) == 3:
        data, labels, lengths = source
    elif all(hasattr(source, a) for a in ("data", "labels", "lengths")):
        data, labels, lengths = source.data, source.labels, source.lengths
    else:
        raise TypeError("source must be a Store or a (data, labels, lengths) tuple")
    return data, np.asarray(labels, dtype=np.int64), np.asarray(lengths, dtype=np.int64)


class BatchLoader:
    """Iterate (x, y, idx) batches of a subset of a store, transformed on ``device``.

    Args:
        source: a :class:`~benchmark.data.store.Store` or a (data, labels, lengths) tuple with
            data (N, C, T, V, M) float32 (memory map or in-memory array).
        indices: store rows of the subset (e.g. ``store.indices(lt_names)``).
        batch_size: clips per batch.
        sampler: positions 0..len(indices)-1 per epoch (a registered sampler; anything
            iterable works); None = sequential (evaluation).
        transform: ``transform(x, lengths, generator)`` on the device, e.g.
            :func:`~benchmark.data.transforms.train_transform`; None returns the raw padded
            (N, C, max length, V, M) rows.
        device: where batches and the transform live.
        drop_last: drop the final incomplete batch (official training loader: True).
        seed: seeds the per-epoch transform generator with (seed, epoch).
        prefetch: batches read ahead by a background thread (0: read in the caller's thread).
            Default: 2 on an accelerator (reads overlap the device's work), 0 on CPU, where
            the thread competes with the transform for the same cores and measured no faster
            (``scripts/bench_store_memory.py``, 2 cores).
        pin_memory: page-locked host buffers for asynchronous copies (default: on for CUDA).
    Yields:
        x float32 (N, C, window, V, M), y int64 (N,), idx int64 (N,) = positions in
        ``indices`` (the official feeder's dataset index); all three on ``device``.
    """

    def __init__(self, source: Any, indices: Sequence[int] | np.ndarray, batch_size: int,
                 sampler: Any = None, transform: Transform | None = None,
                 device: str | torch.device = "cpu", drop_last: bool = False, seed: int = 0,
                 prefetch: int | None = None, pin_memory: bool | None = None):
        data, labels, lengths = _unpack_source(source)
        self.indices = np.asarray(indices, dtype=np.int64)
        if self.indices.ndim != 1 or self.indices.size == 0:
            raise ValueError("indices must be a non-empty 1-D array of store rows")
        if self.indices.min() < 0 or self.indices.max() >= data.shape[0]:
            raise ValueError(f"indices outside the store's {data.shape[0]} rows")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.reader = RowReader(data)
        self.labels = labels[self.indices]
        self.lengths = lengths[self.indices]
        T = data.shape[2]
        # validated once here (host side) so the device transform never has to sync to check
        if self.lengths.min() < 1 or self.lengths.max() > T:
            bad = self.indices[(self.lengths < 1) | (self.lengths > T)][:3].tolist()
            raise BenchmarkError(f"clip lengths must be in 1..{T}; bad store rows {bad}")
        self.batch_size, self.sampler, self.transform = int(batch_size), sampler, transform
        self.device = torch.device(device)
        self.drop_last, self.seed = bool(drop_last), int(seed)
        self.prefetch = (0 if self.device.type == "cpu" else 2) if prefetch is None else int(prefetch)
        self.pin_memory = self.device.type == "cuda" if pin_memory is None else bool(pin_memory)
        self.epoch = 0
        log.debug("BatchLoader: %d clips, batch %d, %s reads, prefetch %d, device %s",
                  len(self.indices), self.batch_size,
                  "pread" if self.reader.uses_pread else "in-memory", self.prefetch, self.device)

    def set_epoch(self, epoch: int) -> None:
        """Select epoch ``epoch``'s order and transform draws (also forwarded to the sampler)."""
        self.epoch = int(epoch)
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(self.epoch)

    def _order(self) -> np.ndarray:
        if self.sampler is None:
            return np.arange(len(self.indices), dtype=np.int64)
        if hasattr(self.sampler, "indices") and callable(self.sampler.indices):
            order = np.asarray(self.sampler.indices(), dtype=np.int64)
        else:
            order = np.fromiter(iter(self.sampler), dtype=np.int64)
        if order.size and (order.min() < 0 or order.max() >= len(self.indices)):
            raise ValueError("sampler produced positions outside the subset")
        return order

    def _batches(self) -> list[np.ndarray]:
        order = self._order()
        n_full = len(order) // self.batch_size
        cuts = [order[i * self.batch_size:(i + 1) * self.batch_size] for i in range(n_full)]
        if not self.drop_last and len(order) % self.batch_size:
            cuts.append(order[n_full * self.batch_size:])
        return cuts

    def __len__(self) -> int:
        n = len(self.sampler) if self.sampler is not None else len(self.indices)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _read(self, pos: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        lengths = self.lengths[pos]
        tmax = int(lengths.max())
        _, C, _, V, M = self.reader.shape
        buf = torch.empty((len(pos), C, tmax, V, M), dtype=torch.float32,
                          pin_memory=self.pin_memory)
        self.reader.read(self.indices[pos], tmax, buf.numpy())
        return buf, pos

    def _advise(self, batches: list[np.ndarray], k: int) -> None:
        """Start the kernel reading batch k (cold store: its I/O overlaps the current batch)."""
        if k < len(batches):
            pos = batches[k]
            self.reader.advise(self.indices[pos], int(self.lengths[pos].max()))

    def _host_batches(self, batches: list[np.ndarray]) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
        if self.prefetch <= 0:
            for k, pos in enumerate(batches):
                self._advise(batches, k + 1)
                yield self._read(pos)
            return
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def work() -> None:
            try:
                for k, pos in enumerate(batches):
                    self._advise(batches, k + 1)
                    item = self._read(pos)
                    while not stop.is_set():  # bounded queue; give up if the consumer left
                        try:
                            q.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                q.put(None)
            except BaseException as e:  # hand the error to the consumer thread
                q.put(e)

        thread = threading.Thread(target=work, name="batch-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                item = q.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while thread.is_alive():  # drain so a blocked put() can see the stop flag
                try:
                    q.get(timeout=0.1)
                except queue.Empty:
                    pass
            thread.join()

    def __iter__(self) -> Iterator[Batch]:
        gen = torch.Generator(device=self.device)
        gen.manual_seed(derive_seed(self.seed, TRANSFORM_STREAM, self.epoch))
        nb = self.pin_memory
        for buf, pos in self._host_batches(self._batches()):
            x = buf.to(self.device, non_blocking=nb)
            y = torch.from_numpy(self.labels[pos]).to(self.device, non_blocking=nb)
            idx = torch.from_numpy(pos).to(self.device, non_blocking=nb)
            if self.transform is not None:
                lengths = torch.from_numpy(self.lengths[pos]).to(self.device, non_blocking=nb)
                if getattr(self.transform, "keyed", False):  # draws keyed by store row, so that
                    # batching and DDP sharding cannot change them (pyskl_transforms' test clip)
                    x = self.transform(x, lengths, gen, rows=self.indices[pos])
                else:
                    x = self.transform(x, lengths, gen)
            yield x, y, idx

    def close(self) -> None:
        self.reader.close()
