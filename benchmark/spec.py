"""What one run is asked to be (``RunSpec``), what it IS (``ResolvedRun``), and its data.

A ``RunSpec`` is the request: dataset name or store path, method, ``--set`` overrides, profile,
seed. :func:`resolve_run` turns it into the run's content-keyed identity
(:mod:`benchmark.identity`: every hyper-parameter, the resolved TrainConfig, the data by
content, the numerics) whose hash is the ``run_id``, so the same content always maps to the
same ``results/runs/<run_id>/`` and a sweep can tell finished, incomplete and pending runs
apart from the filesystem alone (as DomainBed's sweeps, facebookresearch/DomainBed), while a
rewritten split list or an edited default never passes an old result off as its own.

Dataset names resolve to prepared stores under a data root (``--data-root``, the
``BENCH_DATA_ROOT`` environment variable, else ``datasets``):

    synth              the embedded synthetic set, generated on first use into <root>/cache
    ucla               <root>/ucla, protocol 'ucla'
    k400               <root>/k400, protocol 'k400' (PYSKL's k400_hrnet.pkl, data prepare pyskl)
    ntu60-xsub ...     <root>/ntu60 with protocol xsub (also -xview; ntu120-xsub / -xset)
    ntu60              <root>/ntu60, protocol from --protocol
    a path             that store (protocol from --protocol or the store's only one)
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BenchmarkError

DATA_ROOT_ENV = "BENCH_DATA_ROOT"
DEFAULT_DATA_ROOT = "datasets"

# short name -> (store folder under the data root, prepare command, fixed protocol or None)
KNOWN_DATASETS: dict[str, tuple[str, str, str | None]] = {
    "ucla": ("ucla", "python -m benchmark data prepare ucla --raw all_sqe --out {path}", "ucla"),
    "ntu60": ("ntu60", "python -m benchmark data prepare ntu60 --raw RAW --out {path}", None),
    "ntu120": ("ntu120", "python -m benchmark data prepare ntu120 --raw RAW --out {path}", None),
    "k400": ("k400", "python -m benchmark data prepare pyskl --raw k400_hrnet.pkl --kpfiles "
                     "KPFILES --out {path}", "k400"),
}
NAMED_PROTOCOLS = {"ntu60-xsub": ("ntu60", "xsub"), "ntu60-xview": ("ntu60", "xview"),
                   "ntu120-xsub": ("ntu120", "xsub"), "ntu120-xset": ("ntu120", "xset")}


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines a run's result (and nothing that does not, e.g. the device).

    ``hparams`` are the method's ``--set`` overrides and ``train`` the TrainConfig ones, both
    already type-checked (see :func:`normalise`), so equal runs give equal ids.
    """

    dataset: str                     # synth | ucla | ntu60-xsub | ... | a store path
    method: str
    protocol: str | None = None      # None: implied by the dataset name or the store
    imbalance: float | None = None   # None: the full training part (no long-tail subsampling)
    split_list: str | None = None    # a published / prebuilt LT list (wins over imbalance)
    n_max: int | None = None         # head-class size of a built LT split (None: load_lt default)
    hparams: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    profile: str = "lt"
    train: dict[str, Any] = field(default_factory=dict)
    backbone: str = "ctrgcn"

    def __post_init__(self) -> None:
        if self.imbalance is not None:
            if not (math.isfinite(float(self.imbalance)) and float(self.imbalance) >= 1):
                raise BenchmarkError(f"imbalance factor must be a finite number >= 1, got {self.imbalance}")
            # 100 and 100.0 must give one run id
            object.__setattr__(self, "imbalance", float(self.imbalance))
        if self.seed < 0:
            raise BenchmarkError(f"seed must be >= 0, got {self.seed}")
        # private copies, so a caller mutating its dict cannot change a frozen spec
        object.__setattr__(self, "hparams", dict(self.hparams))
        object.__setattr__(self, "train", dict(self.train))

    def to_dict(self) -> dict[str, Any]:
        return json.loads(canonical_json(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise BenchmarkError(f"run spec has unknown field(s) {', '.join(unknown)}")
        return cls(**d)

    @property
    def request_key(self) -> str:
        """sha256 of the canonical request AND of the training configuration it resolves to:
        what was asked for, without the data. Suites dedupe and ``--shard`` splits by it; the
        run's folder is its content-keyed id (:func:`resolve_run`)."""
        from .config import config_dict, make_config

        cfg = json.dumps(config_dict(make_config(self.profile, self.train)), sort_keys=True,
                         separators=(",", ":"))
        return hashlib.sha256((canonical_json(self) + "\n" + cfg).encode()).hexdigest()[:12]

    def __hash__(self) -> int:  # the dict fields are not hashable; the key is
        return hash(self.request_key)


def canonical_json(spec: RunSpec) -> str:
    """Sorted keys, no whitespace, tuples as lists: the bytes the run id hashes."""
    return json.dumps(dataclasses.asdict(spec), sort_keys=True, separators=(",", ":"))


def normalise(spec: RunSpec) -> RunSpec:
    """Type-check the overrides against the method's HParams and the TrainConfig and store
    the checked values (``base_lr=1`` -> 1.0, ``milestones=[3]`` -> (3,)) of those that differ
    from the method's / profile's defaults, so that two ways of writing one setting give one
    run id. Unknown methods / keys raise BenchmarkError."""
    from .config import make_config
    from .method import build_method

    method = build_method(spec.method, spec.hparams)
    defaults = build_method(spec.method, {}).hp
    # an override equal to the default is no override: `--set guidance=shapley` is the same run
    hp = {k: getattr(method.hp, k) for k in spec.hparams if getattr(method.hp, k) != getattr(defaults, k)}
    cfg, base = make_config(spec.profile, spec.train), make_config(spec.profile)
    train = {k: getattr(cfg, k) for k in spec.train
             if k == "backbone" or getattr(cfg, k) != getattr(base, k)}
    if "backbone" in train:  # one place for the backbone: the spec field
        if spec.backbone not in ("ctrgcn", train["backbone"]):
            raise BenchmarkError(f"backbone given twice: {spec.backbone!r} and --set backbone={train['backbone']!r}")
        spec = dataclasses.replace(spec, backbone=train.pop("backbone"))
    return json_roundtrip(dataclasses.replace(spec, hparams=hp, train=train))


def json_roundtrip(spec: RunSpec) -> RunSpec:
    """The spec as it reads back from spec.json (tuples become lists), for exact equality."""
    return RunSpec.from_dict(spec.to_dict())


# ----------------------------------------------------------------------- data resolution
def data_root(explicit: str | os.PathLike | None = None) -> Path:
    return Path(explicit or os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT)


@dataclass(frozen=True)
class DataSource:
    store: Path
    protocol: str | None


def resolve_dataset(dataset: str, protocol: str | None = None,
                    root: str | os.PathLike | None = None) -> DataSource:
    """Map a dataset name (or a store path) to a prepared store and a protocol.

    Raises:
        BenchmarkError: unknown name, conflicting protocol, or a store that is not prepared
            (the message gives the ``python -m benchmark data prepare`` command that makes it).
    """
    base = data_root(root)
    fixed: str | None = None
    if dataset == "synth":
        from .data.synth import load_synth

        if protocol not in (None, "xsub"):
            raise BenchmarkError(f"synth has protocol xsub only, got --protocol {protocol}")
        return DataSource(load_synth(base / "cache"), "xsub")
    if dataset in NAMED_PROTOCOLS:
        dataset, fixed = NAMED_PROTOCOLS[dataset]
    if dataset in KNOWN_DATASETS:
        folder, cmd, own = KNOWN_DATASETS[dataset]
        fixed = fixed or own
        path = base / folder
        if not (path / "manifest.json").is_file():
            raise BenchmarkError(f"{path}: no prepared {dataset} store; make it with "
                                 f"`{cmd.format(path=path)}` (or point --data-root / "
                                 f"{DATA_ROOT_ENV} at the folder holding it)")
    else:
        path = Path(dataset)
        if not path.exists() and os.sep not in dataset and "/" not in dataset:
            names = ["synth", *KNOWN_DATASETS, *NAMED_PROTOCOLS]
            import difflib

            close = difflib.get_close_matches(dataset, names, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise BenchmarkError(f"unknown dataset {dataset!r}{hint} (known: {', '.join(names)}, "
                                 f"or the path of a prepared store)")
        if not (path / "manifest.json").is_file():
            raise BenchmarkError(f"{path}: not a prepared store (no manifest.json); make one with "
                                 f"`python -m benchmark data prepare ...`")
    if fixed and protocol and protocol != fixed:
        raise BenchmarkError(f"--protocol {protocol} conflicts with dataset {dataset}-{fixed}")
    return DataSource(path, protocol or fixed)


# ------------------------------------------------------------------------ run data
GRAPH_OF_LAYOUT = {"ntu25": "ntu", "ucla20": "ucla", "coco17": "coco17"}


@dataclass
class RunData:
    """The resolved data of a run: LT training rows, (possibly capped) test rows, transforms."""

    lt: Any                     # benchmark.data.lt.LTData
    test_idx: Any               # np.ndarray of store rows evaluated (all of lt.test_idx unless capped)
    layout: Any                 # benchmark.data.skeleton.Layout
    graph: str                  # backbone graph name
    train_transform: Any
    test_transform: Any

    @property
    def store(self) -> Any:
        return self.lt.store

    @property
    def train_idx(self) -> Any:
        return self.lt.train_idx

    @property
    def train_labels(self) -> Any:
        return self.lt.train_labels

    @property
    def test_labels(self) -> Any:
        return self.lt.store.labels[self.test_idx]

    @property
    def class_counts(self) -> Any:
        return self.lt.class_counts

    @property
    def num_classes(self) -> int:
        return self.lt.num_classes

    @property
    def num_point(self) -> int:
        return int(self.lt.store.data.shape[3])

    @property
    def num_person(self) -> int:
        return int(self.lt.store.data.shape[4])

    def describe(self) -> dict[str, Any]:
        lt = self.lt
        return {"name": lt.dataset, "protocol": lt.protocol, "store": str(lt.store.root),
                "imbalance": lt.split.get("imbalance"), "n_max": lt.split.get("n_max"),
                "layout": self.layout.name, "num_classes": self.num_classes,
                "num_train": int(len(lt.train_idx)), "num_test": int(len(self.test_idx)),
                "num_test_full": int(len(lt.test_idx)),
                "test_capped": bool(len(self.test_idx) != len(lt.test_idx)), "split": lt.split}


def cap_per_class(rows: Any, labels: Any, num_classes: int, max_total: int | None) -> Any:
    """The first ceil(max_total / C) rows of each class, in the original order (None: all)."""
    import numpy as np

    if max_total is None or max_total >= len(rows):
        return rows
    per = -(-max_total // num_classes)
    labels = np.asarray(labels)
    rank = np.zeros(len(rows), dtype=np.int64)
    seen = np.zeros(num_classes, dtype=np.int64)
    for i, c in enumerate(labels):  # position of each row within its class
        rank[i] = seen[c]
        seen[c] += 1
    return np.asarray(rows)[rank < per]


def load_run_data(spec: RunSpec, cfg: Any, root: str | os.PathLike | None = None) -> RunData:
    """Resolve the spec's dataset to a store, build its (LT) split and the transforms.

    Layout and transforms come from the store manifest: 'ucla20' -> the NW-UCLA official
    pipeline (``UCLATransform``), 'coco17' (2-D keypoints with scores) -> PYSKL's uniform
    sampling as Shap-Mix trains Kinetics-400 (``UniformSampleTransform``, ``cfg.test_clips``),
    anything else -> the NTU feeder pipeline with ``cfg.window``.
    """
    from .data.lt import load_lt
    from .data.pyskl_transforms import UniformSampleTransform
    from .data.skeleton import get_layout
    from .data import transforms as ntu_tf
    from .data.ucla_transforms import UCLATransform

    src = resolve_dataset(spec.dataset, spec.protocol, root)
    lt = load_lt(src.store, src.protocol, imbalance=spec.imbalance, n_max=spec.n_max,
                 split_list=spec.split_list)
    layout = get_layout(lt.store.layout)
    if layout.name not in GRAPH_OF_LAYOUT:
        raise BenchmarkError(f"{lt.store.root}: no backbone graph for layout {layout.name!r}")
    if cfg.test_clips and layout.name != "coco17":
        raise BenchmarkError(f"test_clips={cfg.test_clips}: PYSKL's test clips are for COCO-17 "
                             f"stores; {lt.store.root} is {layout.name}")
    if layout.name == "ucla20":
        train_tf, test_tf = UCLATransform(True, cfg.stream), UCLATransform(False, cfg.stream)
    elif layout.name == "coco17":
        train_tf = UniformSampleTransform(cfg.window, cfg.stream)
        test_tf = UniformSampleTransform(cfg.window, cfg.stream, train=False,
                                         test_clips=cfg.test_clips, seed=spec.seed)
    else:
        pairs = tuple(layout.bone_pairs)
        train_tf = ntu_tf.train_transform(cfg.stream, cfg.window, bone_pairs=pairs)
        test_tf = ntu_tf.test_transform(cfg.stream, cfg.window, bone_pairs=pairs)
    test_idx = cap_per_class(lt.test_idx, lt.test_labels, lt.num_classes, cfg.max_test_clips)
    return RunData(lt, test_idx, layout, GRAPH_OF_LAYOUT[layout.name], train_tf, test_tf)


# ------------------------------------------------------------------------ resolved runs
@dataclass(frozen=True)
class ResolvedRun:
    """A normalised request and the identity it resolves to on the data at hand."""

    spec: RunSpec
    identity: dict[str, Any]

    @property
    def run_id(self) -> str:
        from .identity import run_id_of

        return run_id_of(self.identity)


_FINGERPRINTS: dict[tuple, dict[str, Any]] = {}


def _data_key(spec: RunSpec, cfg: Any, root: str | os.PathLike | None) -> tuple:
    """What the data fingerprint depends on, including the files' change stamps (so a
    rewritten list or store in a long-lived process is seen)."""
    def stamp(p: str | os.PathLike | None) -> tuple:
        try:
            st = os.stat(p) if p else None
        except OSError:
            return (str(p), None)
        return (str(p), st and (st.st_mtime_ns, st.st_size))

    src = resolve_dataset(spec.dataset, spec.protocol, root)
    return (str(src.store.resolve()), stamp(src.store / "manifest.json"), src.protocol,
            spec.imbalance, spec.n_max, stamp(spec.split_list), cfg.max_test_clips, cfg.stream)


def resolve_run(spec: RunSpec, root: str | os.PathLike | None = None, device_type: str = "cpu",
                world_size: int = 1, sync_bn: bool = False, data: "RunData | None" = None
                ) -> ResolvedRun:
    """The identity of ``spec`` (normalised here) on the data under ``root``.

    ``data``: the run's already loaded data (the runner passes it, so the id is the id of
    exactly what it trains on). Without it the data fingerprint is computed once per process
    for each distinct data request (a sweep of 38 runs over one store opens it once).

    Raises:
        BenchmarkError: unknown method / option, missing store, bad split list.
    """
    from .identity import data_fingerprint, resolve_identity

    spec = normalise(spec)
    cfg = dataclasses.replace(_config(spec), backbone=spec.backbone)
    if data is None:
        key = _data_key(spec, cfg, root)
        fp = _FINGERPRINTS.get(key)
        if fp is None:
            fp = _FINGERPRINTS[key] = data_fingerprint(load_run_data(spec, cfg, root))
    else:
        fp = data_fingerprint(data)
    ident = resolve_identity(spec, cfg, None, device_type, world_size, sync_bn, fingerprint=fp)
    return ResolvedRun(spec, ident)


def _config(spec: RunSpec) -> Any:
    from .config import make_config

    return make_config(spec.profile, spec.train)
