"""BatchLoader over a small on-disk store: coverage, shapes, labels, determinism, raw reads."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.data import transforms as TR
from benchmark.data.loader import BatchLoader, RowReader
from benchmark.data.samplers import TRANSFORM_STREAM, build_sampler, derive_seed
from benchmark.data.store import StoreWriter, open_store

N, T, V, M, C_CLS = 37, 90, 25, 2, 5


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    rng = np.random.default_rng(0)
    out = tmp_path_factory.mktemp("store") / "toy"
    lengths = rng.integers(1, T + 1, N)
    lengths[:3] = (1, T, 64)
    with StoreWriter(out, N, T=T, V=V, M=M, dataset="toy", num_classes=C_CLS, layout="ntu25") as w:
        for i in range(N):
            clip = np.zeros((3, T, V, M), np.float32)
            clip[:, :lengths[i]] = rng.standard_normal((3, lengths[i], V, M))
            w.data[i] = clip
            w.names[i], w.labels[i], w.lengths[i] = f"S{i:03d}", i % C_CLS, lengths[i]
    return open_store(out)


SUBSET = np.array([0, 1, 2] + list(range(5, N, 2)), dtype=np.int64)  # non-contiguous rows


def collect(loader):
    return [(x.clone(), y.clone(), i.clone()) for x, y, i in loader]


def test_store_is_read_with_pread_and_raw_rows_match(store):
    loader = BatchLoader(store, SUBSET, batch_size=4, sampler=None, transform=None)
    assert loader.reader.uses_pread
    for x, y, idx in loader:
        rows = SUBSET[idx.numpy()]
        tmax = int(store.lengths[rows].max())
        assert x.shape == (len(rows), 3, tmax, V, M)  # only up to the longest clip is read
        assert np.array_equal(x.numpy(), np.asarray(store.data[rows, :, :tmax]))
        assert np.array_equal(y.numpy(), store.labels[rows])


def test_row_reader_keeps_batch_order_for_unsorted_rows(store):
    rows = np.array([30, 2, 17, 2, 0])
    got = RowReader(store.data).read(rows, T)
    assert np.array_equal(got, np.asarray(store.data[rows]))
    mem = RowReader(np.asarray(store.data)).read(rows, 40)  # in-memory (fancy-index) path
    assert np.array_equal(mem, np.asarray(store.data[rows, :, :40]))


def test_epoch_visits_every_index_once_with_instance_sampler(store):
    sampler = build_sampler("instance", store.labels[SUBSET], seed=1)
    loader = BatchLoader(store, SUBSET, 5, sampler, TR.train_transform("j"), seed=1)
    for epoch in (0, 1):
        loader.set_epoch(epoch)
        batches = collect(loader)
        assert len(batches) == len(loader) == -(-len(SUBSET) // 5)
        seen = torch.cat([i for _, _, i in batches]).numpy()
        assert np.array_equal(np.sort(seen), np.arange(len(SUBSET)))
        assert np.array_equal(seen, sampler.indices(epoch))  # batches follow the sampler order
        for x, y, i in batches:
            assert x.shape == (len(i), 3, 64, V, M) and x.dtype == torch.float32
            assert y.dtype == torch.int64
            assert np.array_equal(y.numpy(), store.labels[SUBSET[i.numpy()]])


def test_drop_last(store):
    loader = BatchLoader(store, SUBSET, 5, build_sampler("instance", store.labels[SUBSET]),
                         TR.test_transform(), drop_last=True)
    batches = collect(loader)
    assert len(batches) == len(loader) == len(SUBSET) // 5
    assert all(len(y) == 5 for _, y, _ in batches)


def test_batches_are_deterministic_per_seed_and_epoch(store):
    def run(seed, epoch, prefetch):
        s = build_sampler("class_balanced", store.labels[SUBSET], seed=seed)
        ld = BatchLoader(store, SUBSET, 6, s, TR.train_transform("bm"), seed=seed, prefetch=prefetch)
        ld.set_epoch(epoch)
        return collect(ld)

    a, b, c = run(3, 2, 2), run(3, 2, 0), run(3, 1, 2)
    assert all(torch.equal(p, q) for ba, bb in zip(a, b) for p, q in zip(ba, bb))
    assert not all(torch.equal(ba[0], bc[0]) for ba, bc in zip(a, c))
    d = run(4, 2, 2)
    assert not all(torch.equal(ba[0], bd[0]) for ba, bd in zip(a, d))


def test_transform_is_applied_per_batch_with_the_epoch_generator(store):
    tf = TR.train_transform("j")
    loader = BatchLoader(store, SUBSET, 7, None, tf, seed=5)
    loader.set_epoch(3)
    raw = BatchLoader(store, SUBSET, 7, None, None)
    g = torch.Generator().manual_seed(derive_seed(5, TRANSFORM_STREAM, 3))
    for (x, y, i), (xr, yr, ir) in zip(loader, raw):
        lengths = torch.from_numpy(store.lengths[SUBSET[ir.numpy()]])
        assert torch.equal(x, tf(xr, lengths, g)) and torch.equal(i, ir)


def test_in_memory_source_gives_same_batches(store):
    arrays = (np.asarray(store.data).copy(), store.labels, store.lengths)
    mk = lambda src: BatchLoader(src, SUBSET, 4, build_sampler("ros", store.labels[SUBSET], seed=2),  # noqa: E731
                                 TR.train_transform("b"), seed=2)
    mem = mk(arrays)
    assert not mem.reader.uses_pread
    for ba, bb in zip(collect(mk(store)), collect(mem)):
        assert all(torch.equal(p, q) for p, q in zip(ba, bb))


def test_early_break_stops_the_prefetch_thread(store):
    import threading
    loader = BatchLoader(store, SUBSET, 2, None, None, prefetch=1)
    for k, _ in enumerate(loader):
        if k == 1:
            break
    assert not any(t.name == "batch-prefetch" for t in threading.enumerate())


def test_bad_lengths_and_indices_rejected(store):
    from benchmark.errors import BenchmarkError
    with pytest.raises(BenchmarkError):
        BatchLoader((store.data, store.labels, np.zeros(N, np.int64)), SUBSET, 4)
    with pytest.raises(ValueError):
        BatchLoader(store, [N], 4)


def test_short_reads_are_completed(store, monkeypatch):
    import benchmark.data.loader as L
    real = L.os.preadv
    calls = {"n": 0}

    def stingy(fd, bufs, offset):  # every first attempt delivers only 1001 bytes
        calls["n"] += 1
        if calls["n"] % 2:
            scratch = bytearray(1001)
            got = real(fd, [scratch], offset)
            RowReader._scatter(list(bufs), 0, scratch[:got])
            return got
        return real(fd, bufs, offset)

    monkeypatch.setattr(L.os, "preadv", stingy)
    rows = np.array([4, 1, 30])
    for tmax in (T, 50):
        got = RowReader(store.data).read(rows, tmax)
        assert np.array_equal(got, np.asarray(store.data[rows, :, :tmax]))
    assert calls["n"] >= 6
