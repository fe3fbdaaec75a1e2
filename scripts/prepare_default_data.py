"""Make sure the data of a benchmark profile is there and summarise it (used by `make benchmark`).

`synth` is generated once into the cache folder (seconds); `ntu` must already be prepared
(`python -m benchmark data prepare ntu60 ...`) and is only checked.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
from benchmark.cli import main as cli_main  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="synth", choices=["synth", "ntu", "ucla"])
    ap.add_argument("--cache", type=Path, default=Path("datasets/cache"))
    ap.add_argument("--ntu-root", type=Path, default=None)
    ap.add_argument("--ucla-root", type=Path, default=Path("datasets/ucla"))
    args = ap.parse_args()
    if args.data == "synth":
        from benchmark.data.synth import load_synth

        store, extra = load_synth(args.cache), ["--imbalance", "100"]
    elif args.data == "ntu":
        if args.ntu_root is None:
            print("error: DATA=ntu needs NTU_ROOT=<prepared store>, e.g. "
                  "make benchmark DATA=ntu NTU_ROOT=datasets/ntu60", file=sys.stderr)
            return 2
        store, extra = args.ntu_root, ["--protocol", "xsub", "--imbalance", "100"]
    else:
        store, extra = args.ucla_root, ["--imbalance", "10"]
    return cli_main(["data", "info", str(store), *extra])


if __name__ == "__main__":
    raise SystemExit(main())
