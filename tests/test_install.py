"""Installing: the console command, requirements that match pyproject and hold no unused package,
test tools in the dev extra (what CI installs), and `make setup`'s choice of torch build."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, load_script

tomllib = pytest.importorskip("tomllib")  # Python 3.11+ (the checks are the same on 3.10)
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
IMPORT_NAME = {"torch": "torch", "numpy": "numpy", "pandas": "pandas", "scipy": "scipy",
               "matplotlib": "matplotlib", "tabulate": "tabulate", "tqdm": "tqdm"}


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower()


def test_requirements_are_the_runtime_dependencies_and_all_used():
    deps = PYPROJECT["project"]["dependencies"]
    lines = [ln.strip() for ln in (REPO / "requirements.txt").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines == deps
    names = [_name(d) for d in deps]
    assert "pytest" not in names and "pyyaml" not in names
    assert [_name(d) for d in PYPROJECT["project"]["optional-dependencies"]["dev"]] == ["pytest"]
    code = "\n".join(p.read_text() for folder in ("benchmark", "methods")
                     for p in (REPO / folder).rglob("*.py"))
    for n in names:  # every runtime requirement is imported by the package
        assert re.search(rf"^\s*(import|from) {IMPORT_NAME[n]}\b", code, re.M), n


def test_ci_installs_the_dev_extra_and_runs_the_tests():
    ci = (REPO / ".ci" / "run").read_text()
    assert 'pip install -q -e ".[dev]"' in ci and "make test" in ci
    assert 'pip install -e ".[dev]"' in (REPO / "Makefile").read_text()


def test_console_command_is_python_m_benchmark():
    assert PYPROJECT["project"]["scripts"] == {"ltskeleton": "benchmark.cli:main"}
    readme = (REPO / "README.md").read_text()
    low = PYPROJECT["project"]["requires-python"].lstrip(">=")
    assert "pip install -e ." in readme and f"Python {low}" in readme
    exe = shutil.which("ltskeleton") or str(Path(sys.executable).parent / "ltskeleton")
    if not Path(exe).is_file():
        pytest.skip("the package is not installed here (pip install -e .)")
    a = subprocess.run([exe, "methods", "ce"], capture_output=True, text=True, cwd="/")
    b = subprocess.run([sys.executable, "-m", "benchmark", "methods", "ce"], capture_output=True,
                       text=True, cwd=REPO)
    assert a.returncode == b.returncode == 0 and a.stdout == b.stdout


def test_setup_installs_the_cpu_build_without_a_gpu():
    mod = load_script("install_torch")
    v = mod.TORCH_VERSION
    assert mod.pip_args(gpu=False, platform="linux", env={}) == \
        ["install", f"torch=={v}+cpu", "--extra-index-url", mod.CPU_INDEX]
    assert mod.pip_args(gpu=True, platform="linux", env={}) == ["install", f"torch=={v}"]
    assert mod.pip_args(gpu=False, platform="darwin", env={}) == ["install", f"torch=={v}"]
    assert mod.pip_args(False, "linux", {"TORCH_VARIANT": "cuda"}) == ["install", f"torch=={v}"]
    assert mod.pip_args(False, "linux", {"TORCH_SPEC": "torch==2.5.1+cpu"})[1] == "torch==2.5.1+cpu"
    assert isinstance(mod.has_nvidia_gpu(), bool)
