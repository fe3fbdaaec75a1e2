"""Memory/speed benchmark of the batch loader on an NTU60-xsub-train-sized store.

Writes a synthetic store of ``--n`` clips (default 40,091 = NTU60 xsub train, 3x300x25x2
float32 each, ~7.2 GB) to a temp folder: lengths uniform in 30..300, N(0,1) noise in the
valid frames, zeros after. Data is written in chunks with positional writes (never through a
memory map), so generation stays small too. Then one epoch is iterated with
:class:`benchmark.data.loader.BatchLoader` (instance sampler, train transform, CPU, batch 16)
and peak RSS and time are printed as JSON. The store is deleted unless ``--keep``.

``--reader mmap`` reads through numpy fancy indexing of the memory map instead of the
loader's ``os.preadv`` path, to show why the loader avoids it: every page touched through a
map stays in the process RSS while it is mapped, so RSS grows with the file.

Usage: ``python scripts/bench_store_memory.py [--n 40091] [--reader pread|mmap] [--keep]``
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
from benchmark.data import transforms as TR  # noqa: E402
from benchmark.data.loader import BatchLoader  # noqa: E402
from benchmark.data.samplers import build_sampler  # noqa: E402
from benchmark.data.store import open_store  # noqa: E402

log = logging.getLogger("bench_store_memory")
T, V, M, NUM_CLASSES = 300, 25, 2, 60


def status_mb(key: str) -> float:
    """A /proc/self/status field in MB (VmRSS, VmHWM, RssFile, ...)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss() -> bool:
    """Reset VmHWM so the epoch's peak is measured apart from generation (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def write_store(root: Path, n: int, seed: int, chunk: int = 64) -> None:
    """The store layout of ``benchmark.data.store`` written chunk by chunk with pwrite."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    lengths = rng.integers(30, T + 1, n)
    labels = rng.integers(0, NUM_CLASSES, n)
    shape = (n, 3, T, V, M)
    # open_memmap writes the .npy header and sizes the file; no data page is touched
    mm = np.lib.format.open_memmap(root / "data.npy", mode="w+", dtype=np.float32, shape=shape)
    offset = mm.offset
    del mm
    row_bytes = 3 * T * V * M * 4
    fd = os.open(root / "data.npy", os.O_WRONLY)
    try:
        frame = np.arange(T)
        for lo in tqdm(range(0, n, chunk), desc="write", unit="chunk", leave=False):
            hi = min(n, lo + chunk)
            block = rng.standard_normal((hi - lo, 3, T, V, M), dtype=np.float32)
            block *= (frame[None, :] < lengths[lo:hi, None])[:, None, :, None, None]
            buf = memoryview(block).cast("B")
            done = 0
            while done < buf.nbytes:
                done += os.pwrite(fd, buf[done:], offset + lo * row_bytes + done)
        os.fsync(fd)
        # drop the freshly written pages from the page cache so the epoch reads from disk
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    np.save(root / "labels.npy", labels)
    np.save(root / "lengths.npy", lengths)
    (root / "names.txt").write_text("".join(f"B{i:06d}\n" for i in range(n)))
    manifest = {"dataset": "bench", "num_classes": NUM_CLASSES, "layout": "ntu25",
                "shape": list(shape), "dtype": "float32", "axes": "N,C,T,V,M"}
    (root / "manifest.json").write_text(json.dumps(manifest))


def run_epoch(root: Path, batch_size: int, prefetch: int | None, reader: str, seed: int) -> dict:
    store = open_store(root)
    # a view of the map has no known file offset, so the loader falls back to fancy indexing
    data = store.data if reader == "pread" else store.data[:]
    rows = np.arange(len(store), dtype=np.int64)
    sampler = build_sampler("instance", store.labels, seed=seed)
    loader = BatchLoader((data, store.labels, store.lengths), rows, batch_size, sampler,
                         TR.train_transform("j"), device="cpu", seed=seed, prefetch=prefetch)
    assert loader.reader.uses_pread == (reader == "pread")
    rss_start = status_mb("VmRSS")
    t0 = time.perf_counter()
    clips, checksum, rss_max_seen, rssfile_max = 0, 0.0, 0.0, 0.0
    for k, (x, y, idx) in enumerate(tqdm(loader, desc="epoch", unit="batch", leave=False)):
        clips += len(y)
        checksum += float(x[:, :, 0].sum())  # touch the output so nothing is optimised away
        if k % 200 == 0:
            rss_max_seen = max(rss_max_seen, status_mb("VmRSS"))
            rssfile_max = max(rssfile_max, status_mb("RssFile"))
    elapsed = time.perf_counter() - t0
    loader.close()
    return {"clips": clips, "batches": len(loader), "prefetch": loader.prefetch, "epoch_s": round(elapsed, 2),
            "clips_per_s": round(clips / elapsed, 1), "rss_at_epoch_start_mb": round(rss_start, 1),
            "rss_sampled_max_mb": round(rss_max_seen, 1), "rss_file_sampled_max_mb": round(rssfile_max, 1),
            "checksum": checksum}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40091, help="clips (40,091 = NTU60 xsub train)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--prefetch", type=int, default=None,
                    help="batches read ahead by a thread (default: the loader's, 0 on CPU)")
    ap.add_argument("--reader", choices=("pread", "mmap"), default="pread")
    ap.add_argument("--tmpdir", default=None, help="where to write the store (default: $TMPDIR)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (1: a 16-clip transform is too small to split, "
                         "and extra threads thrash on a busy machine)")
    ap.add_argument("--keep", action="store_true", help="keep the generated store")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)

    work = Path(tempfile.mkdtemp(prefix="bench_store_", dir=args.tmpdir))
    root = work / "store"
    try:
        t0 = time.perf_counter()
        write_store(root, args.n, args.seed)
        gen_s = time.perf_counter() - t0
        gen_hwm = status_mb("VmHWM")
        size_gb = (root / "data.npy").stat().st_size / 1e9
        log.info("wrote %.2f GB in %.1f s (peak RSS so far %.0f MB)", size_gb, gen_s, gen_hwm)
        hwm_reset = reset_peak_rss()
        result = run_epoch(root, args.batch_size, args.prefetch, args.reader, args.seed)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    result.update({
        "n": args.n, "file_gb": round(size_gb, 3), "reader": args.reader,
        "batch_size": args.batch_size, "generate_s": round(gen_s, 1),
        "generate_peak_rss_mb": round(gen_hwm, 1),
        # VmHWM was reset after generation (if the kernel allows), so it is the epoch's peak;
        # ru_maxrss cannot be reset and covers the whole process
        "epoch_peak_rss_mb": round(status_mb("VmHWM"), 1) if hwm_reset else None,
        "process_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch_threads": torch.get_num_threads(), "kept": str(root) if args.keep else None,
    })
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
