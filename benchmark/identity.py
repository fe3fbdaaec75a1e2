"""What a run IS: its content-keyed identity, its id, and the digest of the code that made it.

A run is keyed by what determines its numbers, never by how it was asked for:

    method       the registered name and EVERY hyper-parameter (defaults included)
    seed
    config       the fully resolved TrainConfig (profile + overrides; backbone, width, schedule)
    data         the store by content (manifest digest without version stamps), the protocol,
                 the sha256 of the training list (names in order) and of the test list, and
                 the model's input shape (classes, joints, persons, graph)
    numerics     effective precision (fp32 on CPU whatever ``amp`` says), DDP world size and
                 SyncBatchNorm

``run_id`` is the first 12 hex digits of the sha256 of that identity's canonical JSON. So a
rewritten split list, an edited method default, another profile resolving to another schedule
or a 2-process DDP run is a different run, while ``ucla`` and the path of the same store, or
two spellings of one override, are the same run.

The code is NOT part of the id (every edit would orphan every run); instead each run records
:func:`code_digest` (sha256 of its method's module and of the harness files that compute a
run's numbers) and ``sweep status`` calls a finished run made by other code ``stale``
(``sweep run --rerun-stale`` redoes it).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import BenchmarkError

IDENTITY_VERSION = 2

# manifest keys that record how/when a store was written, not what it holds
VOLATILE_MANIFEST_KEYS = ("versions", "created", "prepare_seconds", "timing")

ROOT = Path(__file__).resolve().parents[1]
# the harness files that compute a run's numbers (not the CLI, runner, sweep or report)
HARNESS_FILES = (
    "benchmark/train.py", "benchmark/method.py", "benchmark/losses.py", "benchmark/metrics.py",
    "benchmark/seed.py", "benchmark/config.py", "benchmark/hparams.py", "benchmark/shapley.py",
    "benchmark/saliency.py", "benchmark/dist.py",
    "benchmark/backbones/__init__.py", "benchmark/backbones/base.py",
    "benchmark/backbones/graph.py",  # + the run's own backbone module (code_digest)
    "benchmark/data/loader.py", "benchmark/data/samplers.py", "benchmark/data/transforms.py",
    "benchmark/data/ucla_transforms.py", "benchmark/data/pyskl_transforms.py",
    "benchmark/data/lt.py", "benchmark/data/splits.py",
    "benchmark/data/skeleton.py",
)


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_jsonable)


def _jsonable(v: Any) -> Any:
    if isinstance(v, (set, frozenset)):
        return sorted(v)
    if hasattr(v, "item"):  # numpy scalars
        return v.item()
    raise TypeError(f"not JSON-serialisable: {type(v).__name__}")


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def names_sha256(names: Any) -> str:
    """sha256 of names joined by newlines (BRL's list bytes, so a list file's digest matches)."""
    return sha256_text("\n".join(str(n) for n in names))


def store_digest(manifest: dict[str, Any]) -> str:
    """The store's content as its manifest describes it (shape, classes, layout, source
    checksums, ...), without the version stamps of the tools that wrote it."""
    content = {k: v for k, v in manifest.items() if k not in VOLATILE_MANIFEST_KEYS}
    return sha256_text(canonical(content))


def data_fingerprint(data: Any) -> dict[str, Any]:
    """The data part of the identity, from a loaded :class:`benchmark.spec.RunData`."""
    store = data.store
    names = store.names
    return {
        "store": store_digest(store.manifest),
        "layout": data.layout.name, "graph": data.graph, "protocol": data.lt.protocol,
        "num_classes": int(data.num_classes), "num_point": data.num_point,
        "num_person": data.num_person,
        "train_sha256": names_sha256(names[i] for i in data.train_idx),
        "num_train": int(len(data.train_idx)),
        "test_sha256": names_sha256(names[i] for i in data.test_idx),
        "num_test": int(len(data.test_idx)),
    }


def precision(cfg: Any, device_type: str) -> str:
    """The autocast dtype a run actually trains with (the harness autocasts on CUDA only)."""
    if device_type != "cuda" or cfg.amp == "off":
        return "fp32"
    return cfg.amp


def resolve_identity(spec: Any, cfg: Any, data: Any, device_type: str = "cpu",
                     world_size: int = 1, sync_bn: bool = False,
                     fingerprint: dict[str, Any] | None = None) -> dict[str, Any]:
    """The identity dict of a normalised spec trained with ``cfg`` on ``data`` (or on the data
    whose :func:`data_fingerprint` is ``fingerprint``)."""
    from .config import config_dict
    from .method import build_method

    method = build_method(spec.method, spec.hparams)
    ident = {
        "version": IDENTITY_VERSION,
        "method": spec.method,
        "hparams": dataclasses.asdict(method.hp),
        "seed": int(spec.seed),
        "config": config_dict(cfg),
        "data": fingerprint if fingerprint is not None else data_fingerprint(data),
        "numerics": {"precision": precision(cfg, device_type), "world_size": int(world_size),
                     "sync_bn": bool(sync_bn and world_size > 1)},
    }
    return json.loads(canonical(ident))  # tuples -> lists: what spec.json reads back


def run_id_of(identity: dict[str, Any]) -> str:
    return sha256_text(canonical(identity))[:12]


# ------------------------------------------------------------------------------ code
def _module_files(method_name: str) -> list[Path]:
    """Source files of the method's class, its base classes and what its module imports from
    ``methods`` / ``benchmark`` (e.g. shared loss helpers)."""
    from .method import METHODS

    cls = METHODS.get(method_name)
    files: set[Path] = set()
    mods = {k.__module__ for k in cls.__mro__ if k.__module__.split(".")[0] in ("methods", "benchmark")}
    mods.add(cls.__module__)  # a plugin's own module (benchmark.plugins) is its method's code
    for name in list(mods):
        mod = sys.modules.get(name)
        for v in vars(mod).values() if mod else ():
            owner = getattr(v, "__name__", None) if isinstance(v, type(sys)) else getattr(v, "__module__", None)
            if isinstance(owner, str) and owner.split(".")[0] in ("methods", "benchmark"):
                mods.add(owner)
    for name in mods:
        f = getattr(sys.modules.get(name), "__file__", None)
        if f:
            files.add(Path(f).resolve())
    return sorted(files)


def code_text(source: str) -> str:
    """Python source without what cannot change a number: comments, docstrings, blank lines
    and trailing spaces (so a reworded docstring does not make every run stale). Positions
    come from ``tokenize`` (comments) and ``ast`` (docstrings), the text kept is the source's
    own, so the result does not depend on the Python version that reads it. Source that does
    not parse is kept whole."""
    import ast
    import io
    import tokenize

    try:
        tree = ast.parse(source)
        comments = [t.start for t in tokenize.generate_tokens(io.StringIO(source).readline)
                    if t.type == tokenize.COMMENT]
    except (SyntaxError, tokenize.TokenError, ValueError):
        return source
    lines = source.splitlines()
    drop: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) \
                and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            doc = body[0]
            if len(body) > 1 and body[1].lineno <= doc.end_lineno:
                continue  # a statement on the docstring's line: keep the line
            if doc.lineno == getattr(node, "lineno", 0):
                continue  # `def f(): "doc"` on one line
            drop.update(range(doc.lineno, doc.end_lineno + 1))
    for row, col in comments:  # a comment runs to the end of its line
        lines[row - 1] = lines[row - 1][:col]
    kept = [ln.rstrip() for i, ln in enumerate(lines, 1) if i not in drop]
    return "\n".join(ln for ln in kept if ln.strip()) + "\n"


@lru_cache(maxsize=None)
def _file_sha(path: Path, mtime_ns: int, size: int) -> str:
    """sha256 of a file's code: :func:`code_text` of a ``.py`` file, else its bytes."""
    data = path.read_bytes()
    if path.suffix == ".py":
        try:
            data = code_text(data.decode("utf-8")).encode("utf-8")
        except UnicodeDecodeError:
            pass
    return hashlib.sha256(data).hexdigest()


def _backbone_files(name: str) -> list[Path]:
    """The module defining backbone ``name`` and the package modules it imports from."""
    from .backbones import BACKBONES

    try:
        cls = BACKBONES.get(name)
    except BenchmarkError:  # an unknown name: no file to add (building the run fails elsewhere)
        return []
    mod = sys.modules.get(getattr(cls, "__module__", ""), None)
    f = getattr(mod, "__file__", None)
    return [Path(f).resolve()] if f else []


def code_digest(method_name: str, backbone: str = "ctrgcn") -> dict[str, Any]:
    """``{"digest": sha256, "files": {relative path: sha256}}`` of the code behind a run: its
    method's modules, the harness files and its backbone's module (not the other backbones')."""
    paths = set(_module_files(method_name)) | set(_backbone_files(backbone))
    for pattern in HARNESS_FILES:
        paths.update(p.resolve() for p in ROOT.glob(pattern))
    files = {}
    for p in sorted(paths):
        try:
            st = p.stat()
        except OSError:
            continue
        try:
            rel = p.relative_to(ROOT).as_posix()
        except ValueError:  # a plugin outside the repository: by name, wherever it lives
            rel = f"plugin:{p.name}"
        files[rel] = _file_sha(p, st.st_mtime_ns, st.st_size)
    return {"digest": sha256_text(canonical(files)), "files": files}


def changed_files(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """The files whose digest differs between two :func:`code_digest` records."""
    if not isinstance(old, dict) or not isinstance(old.get("files"), dict):
        return ["(no code record)"]
    a, b = old["files"], new["files"]
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
