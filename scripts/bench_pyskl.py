"""Memory and speed of ``data prepare pyskl`` on a generated PYSKL pickle (issue 17).

Generates a pickle in PYSKL's format (``--format k400``: Kinetics' compressed annotations,
float16 person rows (N, 17, 3) with frame indices and box scores, 150..300 frames, ~1.6
detections a frame; ``ntu``: NTU 3-D (M, T, 25, 3) float16, 1-2 persons, 30..300 frames),
then measures, each in a fresh process so that peak RSS is its own:

* ``load``: the restricted unpickler alone -> the size of the unpickled object (RSS growth,
  and the bytes of its arrays), and a plain numpy copy of every clip's keypoints into one
  preallocated float32 array (the baseline speed of touching the data once);
* ``convert``: :func:`benchmark.data.pyskl.import_pyskl` end to end (load, checks, decoding,
  store written with positional writes, checksums).

Reported: peak RSS of the conversion over the unpickled object's size (bounded memory means
close to 1: nothing beyond the object but one clip at a time), the conversion's time over the
load plus the plain copy (what any reader of the file pays). ``--full`` is Kinetics-400's
training set size (239,737 clips; ~12 GB pickle, ~29 GB store); the default 2,000 takes seconds.

    python scripts/bench_pyskl.py [--clips N | --full] [--format k400,ntu] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout
sys.path.insert(0, str(REPO / "scripts"))
from bench_store_memory import status_mb  # noqa: E402  (/proc/self/status fields in MB)
K400_TRAIN = 239_737


def generate(path: Path, fmt: str, n: int, seed: int) -> dict:
    """Write a PYSKL pickle of ``n`` clips, one annotation at a time (generation stays small
    until the final dump, which holds the whole object as any writer of such a file does)."""
    rng = np.random.default_rng(seed)
    anns = []
    for i in range(n):
        total = int(rng.integers(150, 301) if fmt == "k400" else rng.integers(30, 301))
        if fmt == "k400":
            name, label = f"clip_{i:07d}", int(rng.integers(0, 400))
        else:  # unique NTU names (setup, camera, performer, replication, action)
            label = (i // 4080) % 60
            name = (f"S{1 + i % 17:03d}C{1 + i // 17 % 3:03d}P{1 + i // 51 % 40:03d}"
                    f"R{1 + i // 2040 % 2:03d}A{label + 1:03d}")
        ann = dict(frame_dir=name, label=label, total_frames=total, img_shape=(256, 340),
                   original_shape=(256, 340))
        if fmt == "k400":
            per = rng.poisson(1.6, total)
            inds = np.repeat(np.arange(total), per).astype(np.int16)
            kp = rng.normal(150, 60, (len(inds), 17, 3)).astype(np.float16)
            kp[..., 2] = rng.random((len(inds), 17))
            ann.update(keypoint=kp, frame_inds=inds, box_score=rng.random(len(inds)).astype(np.float16))
        else:
            ann["keypoint"] = rng.normal(0, 1, (int(rng.integers(1, 3)), total, 25, 3)).astype(np.float16)
        anns.append(ann)
    names = [a["frame_dir"] for a in anns]
    cut = int(0.92 * n)
    split = (dict(train=names[:cut], val=names[cut:]) if fmt == "k400"
             else dict(xsub_train=names[:cut], xsub_val=names[cut:]))
    with open(path, "wb") as f:
        pickle.dump(dict(split=split, annotations=anns), f, protocol=2)  # mmcv.dump's protocol
    return {"clips": n, "pickle_mb": round(path.stat().st_size / 2**20, 1),
            "array_mb": round(sum(a["keypoint"].nbytes for a in anns) / 2**20, 1)}


def child(args: argparse.Namespace) -> dict:
    """One measurement in this (fresh) process: --child load | convert."""
    from benchmark.data import pyskl, safe_pickle

    rss0 = status_mb("VmRSS")
    t0 = time.perf_counter()
    out: dict = {}
    if args.child == "convert":
        pyskl.import_pyskl(args.pickle, args.store, name="k400" if args.format == "k400" else "ntu60",
                           progress=False)
    else:
        obj = safe_pickle.load(args.pickle)
        out["load_s"] = round(time.perf_counter() - t0, 3)
        out["object_mb"] = round(status_mb("VmRSS") - rss0, 1)
        if args.child == "load":
            anns = obj["annotations"]
            kps = [safe_pickle.plain(a["keypoint"]) for a in anns]
            buf = np.empty(sum(k.size for k in kps), np.float32)
            t1 = time.perf_counter()
            pos = 0
            for k in kps:  # the baseline: every clip's values touched once, as float32
                buf[pos:pos + k.size] = k.ravel()
                pos += k.size
            out["copy_s"] = round(time.perf_counter() - t1, 3)
            out["arrays_mb"] = round(sum(k.nbytes for k in kps) / 2**20, 1)
    out["seconds"] = round(time.perf_counter() - t0, 3)
    out["rss_start_mb"] = round(rss0, 1)
    out["peak_rss_mb"] = round(status_mb("VmHWM"), 1)
    return out


def run_child(args: argparse.Namespace, what: str, pkl: Path, store: Path) -> dict:
    argv = [sys.executable, __file__, "--child", what, "--pickle", str(pkl), "--store", str(store),
            "--format", args.format_one]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} exited {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout)


def bench_format(args: argparse.Namespace, fmt: str, work: Path) -> dict:
    pkl, store = work / f"{fmt}_bench.pkl", work / f"{fmt}_store"
    args.format_one = fmt
    t0 = time.perf_counter()
    res: dict = {"generated": generate(pkl, fmt, args.clips, args.seed)}
    res["generated"]["seconds"] = round(time.perf_counter() - t0, 1)
    res["load"] = run_child(args, "load", pkl, store)
    res["convert"] = run_child(args, "convert", pkl, store)
    obj = res["load"]["object_mb"]
    conv = res["convert"]
    res["store_mb"] = round((store / "data.npy").stat().st_size / 2**20, 1)
    res["ratios"] = {
        # peak RSS growth of the conversion over the unpickled object's RSS
        "convert_peak_over_object": round((conv["peak_rss_mb"] - conv["rss_start_mb"]) / obj, 3),
        # the whole conversion over what any reader pays: unpickling + touching every value once
        "convert_over_load_and_copy": round(conv["seconds"] / (res["load"]["load_s"] + res["load"]["copy_s"]), 2),
    }
    res["clips_per_s"] = round(args.clips / conv["seconds"], 1)
    res["us_per_clip"] = {"convert": round(1e6 * conv["seconds"] / args.clips, 1),
                          "copy": round(1e6 * res["load"]["copy_s"] / args.clips, 1)}
    if not args.keep:
        pkl.unlink()
        shutil.rmtree(store, ignore_errors=True)
    return res


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clips", type=int, default=2000, help="clips in the generated pickle")
    p.add_argument("--full", action="store_true", help=f"Kinetics-400 train size ({K400_TRAIN:,})")
    p.add_argument("--format", default="k400,ntu", help="comma list: k400 (compressed), ntu (3-D)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tmpdir", type=Path, default=None)
    p.add_argument("--keep", action="store_true", help="keep the pickle and the store")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    p.add_argument("--timeout", type=float, default=7200)
    p.add_argument("--child", choices=("load", "convert"), help=argparse.SUPPRESS)
    p.add_argument("--pickle", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.full:
        args.clips = K400_TRAIN
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.child:
        res = child(args)
        print(json.dumps(res))
        return res
    work = Path(tempfile.mkdtemp(prefix="bench_pyskl_", dir=args.tmpdir))
    try:
        res = {"settings": {"clips": args.clips, "seed": args.seed, "full": args.full}}
        for fmt in [f for f in args.format.split(",") if f]:
            res[fmt] = bench_format(args, fmt, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if args.out:
        from benchmark import _io
        _io.write_json(args.out, res)
    print(json.dumps(res, indent=2))
    for fmt in res:
        if fmt != "settings":
            r = res[fmt]
            print(f"{fmt}: {args.clips} clips, pickle {r['generated']['pickle_mb']} MB, object "
                  f"{r['load']['object_mb']} MB, conversion peak RSS {r['convert']['peak_rss_mb']} MB "
                  f"({r['ratios']['convert_peak_over_object']}x the object), "
                  f"{r['clips_per_s']} clips/s ({r['ratios']['convert_over_load_and_copy']}x a load and "
                  f"a plain copy)",
                  file=sys.stderr)
    return res


if __name__ == "__main__":
    main()
