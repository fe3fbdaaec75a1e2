"""Install torch when none is installed: the CPU build where there is no GPU (`make setup`, CI).

On Linux a plain `pip install torch` pulls a CUDA build of several GB, whether or not the
machine has a GPU. Without an NVIDIA GPU (no /proc/driver/nvidia/gpus entry, no working
`nvidia-smi -L`) this asks for the CPU wheel (`torch==X+cpu`) with PyTorch's CPU index as an
extra index; with a GPU, or on macOS / Windows (whose PyPI wheels have no CUDA), the plain
wheel. If torch already imports, nothing happens.

    TORCH_SPEC       another requirement, e.g. TORCH_SPEC="torch==2.5.1" (used as given)
    TORCH_INDEX_URL  another index for the CPU wheel (default PyTorch's CPU index)
    TORCH_VARIANT    cpu | cuda: skip the detection
"""
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

TORCH_VERSION = "2.13.0"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def has_nvidia_gpu() -> bool:
    gpus = Path("/proc/driver/nvidia/gpus")
    if gpus.is_dir() and any(gpus.iterdir()):
        return True
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def pip_args(gpu: bool, platform: str = sys.platform, env: dict | None = None) -> list:
    """The `pip` arguments that install the right torch build."""
    env = os.environ if env is None else env
    variant = env.get("TORCH_VARIANT") or ("cuda" if gpu else "cpu")
    spec = env.get("TORCH_SPEC")
    if variant == "cuda" or not platform.startswith("linux"):
        return ["install", spec or f"torch=={TORCH_VERSION}"]
    return ["install", spec or f"torch=={TORCH_VERSION}+cpu",
            "--extra-index-url", env.get("TORCH_INDEX_URL") or CPU_INDEX]


def main() -> int:
    if importlib.util.find_spec("torch") is not None:
        print("torch already installed")
        return 0
    gpu = has_nvidia_gpu()
    args = pip_args(gpu)
    print(f"{'an NVIDIA GPU' if gpu else 'no NVIDIA GPU'} found: pip {' '.join(args)}")
    if "--extra-index-url" in args:
        # first without PyTorch's index: a CPU wheel that pip already finds (a --find-links
        # folder, a mirror) needs no request to an index that the machine may not reach
        i = args.index("--extra-index-url")
        if subprocess.call([sys.executable, "-m", "pip", *args[:i], *args[i + 2:], "-q"],
                           stderr=subprocess.DEVNULL) == 0:
            return 0
    return subprocess.call([sys.executable, "-m", "pip", *args])


if __name__ == "__main__":
    sys.exit(main())
