"""Install a CPU build of torch when none is installed (used by `make setup` and CI).

A plain `pip install torch` on Linux pulls a CUDA build of several GB; on a CPU-only machine
the CPU wheel from PyTorch's index is what you want. If torch already imports, nothing happens.
Set TORCH_SPEC to choose another requirement, e.g. TORCH_SPEC="torch==2.5.1".
"""
import importlib.util
import os
import subprocess
import sys

if importlib.util.find_spec("torch") is not None:
    print("torch already installed")
    sys.exit(0)
spec = os.environ.get("TORCH_SPEC", "torch==2.13.0")
cmd = [sys.executable, "-m", "pip", "install", "-q", spec]
print("installing", spec)
sys.exit(subprocess.call(cmd))
