"""Repository layout rules: `datasets/` is data, not a package; joint layouts are consistent."""
import os
import subprocess
import sys

from benchmark.data.skeleton import LAYOUTS, NTU_PARTS
from conftest import REPO


def test_datasets_folder_never_shadows_an_installed_datasets_package(tmp_path):
    """`datasets/` is a data folder (no __init__.py): from the repo root an installed
    `datasets` package (HuggingFace's) must still win the import."""
    assert not (REPO / "datasets" / "__init__.py").exists()
    site = tmp_path / "site"
    (site / "datasets").mkdir(parents=True)
    (site / "datasets" / "__init__.py").write_text("WHO = 'installed'\n")
    code = "import datasets; print(getattr(datasets, 'WHO', 'repo'))"
    env = {**os.environ, "PYTHONPATH": str(site)}
    # cwd (the repo root) comes first on sys.path with -c, as with `python -m benchmark`
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "installed", out.stderr


def test_layouts_partition_joints_and_trees():
    for layout in LAYOUTS.values():
        joints = sorted(j for part in layout.parts for j in part)
        assert joints == list(range(layout.num_joints)), layout.name  # 5 parts cover every joint once
        assert len(layout.edges) == layout.num_joints - 1  # a tree
        assert len(layout.bone_pairs) == layout.num_joints
        assert sorted(v1 for v1, _ in layout.bone_pairs) == list(range(layout.num_joints))
    assert [len(p) for p in NTU_PARTS] == [5, 6, 6, 4, 4]  # skelemix.py
