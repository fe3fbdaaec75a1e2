"""Shared fixtures. Real data lives in ../shared/data beside the checkout (CI has it; a fresh
clone does not): tests that need it skip with a reason when it is absent."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_path(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test when it is not there."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data not available: {p} (../shared/data is only beside CI checkouts)")
    return p


def load_script(name: str):
    """``scripts/<name>.py`` imported as a module (the scripts folder is not a package)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# A stand-in for the official CTR-GCN checkout's model/ctrgcn.py (not part of the repo): the
# official constructor signature, our maths at width 8.
FAKE_OFFICIAL_MODEL = '''
from benchmark.backbones.ctrgcn import CTRGCN


class Model(CTRGCN):
    def __init__(self, num_class=60, num_point=25, num_person=2, graph=None, graph_args=None):
        super().__init__(num_class, num_point, num_person, graph="ntu", base_channel=8)
'''


def run_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run ``python -m benchmark ARGS`` as a user would."""
    return subprocess.run([sys.executable, "-m", "benchmark", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit status 2 and a single ``error: ...`` line that mentions every needle."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    for n in needles:
        assert n in errors[0], (n, errors[0])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread in every test module: on a shared 2-core machine a second OpenMP
    thread waiting for a busy core makes each op ~10x slower (measured), and the bitwise resume
    checks need a fixed thread count. Training runs switch deterministic algorithms on, so both
    settings are restored after each module."""
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(det)


# toy batch F4, the input of every loss check: the tests' reference values are the official
# implementations' outputs on it (float64, CPU; TensorFlow-only code re-derived by hand)
COUNTS = torch.tensor([100, 10, 1])
Z = torch.tensor([[2.0, 0.5, -1.0], [1.0, 1.5, 0.2], [0.1, 0.3, 1.2], [0.5, -0.2, 0.3]])
Y = torch.tensor([0, 1, 2, 0])
Y_B = torch.tensor([2, 0, 1, 1])


def f4_ctx(total_epochs=100, counts=COUNTS, batch_size=4):
    """A Context for method unit tests (NTU layout, seeded generator)."""
    from benchmark.data.skeleton import LAYOUTS
    from benchmark.method import Context

    return Context(num_classes=len(counts), class_counts=counts, total_epochs=total_epochs,
                   iters_per_epoch=1, device=torch.device("cpu"), seed=0,
                   layout=LAYOUTS["ntu25"], batch_size=batch_size,
                   generator=torch.Generator().manual_seed(0))
