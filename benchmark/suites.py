"""The paper's tables as suites: code that returns the run specs of each table's cells.

A suite is a grid of cells (row x column); a cell is one ``RunSpec`` repeated over seeds. The
same spec in two suites is one run (the id is a hash of the spec), so e.g. Table 1's CE run
also fills Table 3's IF-100 column and Table 13's baseline row.

Suites (``SUITES``; the paper's numbering):

    table1   all methods at IF 100 (LT-NTU60 / LT-NTU120 xsub on ``ntu``)
    table3   CE, Remix-DRW, GLMC, Balanced Softmax, Shap-Mix at IF 10 / 50 / 100
    table7   ST-Mix spatial only / temporal only / both (balanced NTU60 xsub on ``ntu``)
    table8   Shap-Mix guidance random / Grad-CAM / Shapley x re-sampling / re-weighting
    table13  cost: parameters and training time of CE, GLMC, ST-Mix, Shap-Mix Iter-1/2/5
    fig4     per-class accuracy vs class size (CE and Shap-Mix of Table 1)
    table9   CE vs Shap-Mix on CTR-GCN, ST-GCN++, Info-GCN, HD-GCN (appendix B.2)
    plugin   balanced: 2s-AGCN / CTR-GCN / Info-GCN / HD-GCN, + FR-Head, + ours (ST-Mix)
    table4   balanced multi-stream: CE and ST-Mix per stream (j, b, jm, bm) and their fused
             2-stream / 4-stream rows (the official ensemble weights)
    table10  ST-Mix: number of mixed body parts (min, max)
    table11  ST-Mix: mixed temporal ratio (min, max)
    table12  Shap-Mix: the sampler's temperature
    table2   Kinetics-400: CE, BRL, GLMC, Shap-Mix (PoseConv3D: the paper's number only)

A fused row (``Fused``) has no runs of its own: the report computes it, per seed, from the
stored test logits of its member rows' runs (:mod:`benchmark.ensemble`).

Each runs on a data profile (``DATA_PROFILES``): ``synth`` (embedded, the ``quick`` schedule),
``ucla`` (real NW-UCLA-LT, IF 10 with n_max 100, the ``ucla`` schedule: CTR-GCN's NW-UCLA
config with ``repeat`` 1, stated in every caption), ``ntu`` (the paper's data, the ``lt``
schedule) or ``k400`` (Kinetics-400 from PYSKL's pickle, Shap-Mix's ``k400`` schedule; Table 2
only). Where the paper's setting is not available on a data
profile (a second dataset, a balanced set) the suite says what it runs instead in its notes.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from .config import make_config
from .errors import BenchmarkError
from .spec import RunSpec

DEFAULT_SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class Setting:
    """One dataset column: what data a run trains on."""

    label: str
    dataset: str
    imbalance: float | None = None
    n_max: int | None = None
    profile: str | None = None  # None: the data profile's schedule
    backbone: str = "ctrgcn"


@dataclass(frozen=True)
class DataProfile:
    name: str
    profile: str                       # schedule profile (benchmark.config.PROFILES)
    main: tuple[Setting, ...]          # Table 1's columns
    ladder: tuple[Setting, ...]        # Table 3's columns (IF 10 / 50 / 100)
    ablation: Setting                  # Tables 8 and 13 (LT-NTU60 IF 100 in the paper)
    balanced: Setting                  # Table 7 (balanced NTU60 xsub in the paper)
    published: bool = False            # the paper's numbers are comparable (same data)
    note: str = ""
    seeds: tuple[int, ...] = DEFAULT_SEEDS  # default seeds of a sweep on this profile
    schedule_in_caption: bool = False  # every caption states the schedule (repeat included)
    plugin: tuple[Setting, ...] = ()   # the balanced plug-in table's columns (NTU120 xsub / xset)
    streams: tuple[Setting, ...] = ()  # Table 4's columns (balanced NTU60 xsub / xview, NTU120 ...)
    suites: tuple[str, ...] = ()       # the suites that run on this data (empty: every suite)


DATA_PROFILES: dict[str, DataProfile] = {
    "synth": DataProfile(
        "synth", "quick",
        main=(Setting("Synth-LT", "synth", 100.0),),
        ladder=tuple(Setting(f"IF {f}", "synth", float(f)) for f in (10, 50, 100)),
        ablation=Setting("Synth-LT", "synth", 100.0),
        balanced=Setting("Synth-LT", "synth", 100.0),
        note="embedded synthetic set (60 classes, n_max 200); Table 7 runs on the LT split "
             "(the paper's balanced set would cost 4.6x on CPU)",
        seeds=(0,)),  # one seed keeps every suite within a 2-core CPU budget
    "ucla": DataProfile(
        "ucla", "ucla",
        main=(Setting("NW-UCLA-LT", "ucla", 10.0, 100),),
        ladder=tuple(Setting(f"IF {f}", "ucla", float(f), 100) for f in (10, 50, 100)),
        ablation=Setting("NW-UCLA-LT", "ucla", 10.0, 100),
        balanced=Setting("NW-UCLA", "ucla", None),
        note="real NW-UCLA (10 classes), long-tailed with n_max 100 (BRL's NW-UCLA-LT at "
             "IF 10); CTR-GCN's NW-UCLA schedule with each training clip once per epoch "
             "(repeat 1), where the official feeder repeats it 5 times",
        schedule_in_caption=True),
    "ntu": DataProfile(
        "ntu", "lt",
        main=(Setting("LT-NTU60", "ntu60-xsub", 100.0), Setting("LT-NTU120", "ntu120-xsub", 100.0)),
        ladder=tuple(Setting(f"IF {f}", "ntu120-xsub", float(f)) for f in (10, 50, 100)),
        ablation=Setting("LT-NTU60", "ntu60-xsub", 100.0),
        balanced=Setting("NTU60 xsub", "ntu60-xsub", None, profile="balanced"),
        plugin=(Setting("NTU120 xsub", "ntu120-xsub", None, profile="balanced"),
                Setting("NTU120 xset", "ntu120-xset", None, profile="balanced")),
        streams=(Setting("NTU60 xsub", "ntu60-xsub", None, profile="balanced"),
                 Setting("NTU60 xview", "ntu60-xview", None, profile="balanced"),
                 Setting("NTU120 xsub", "ntu120-xsub", None, profile="balanced"),
                 Setting("NTU120 xset", "ntu120-xset", None, profile="balanced")),
        published=True,
        note="the paper's setting (CTR-GCN joint stream, xsub)"),
    # Kinetics-400 has no long-tailed ladder, balanced set or NTU-only backbone: Table 2 only
    "k400": DataProfile(
        "k400", "k400",
        main=(Setting("Kinetics-400", "k400"),), ladder=(Setting("Kinetics-400", "k400"),),
        ablation=Setting("Kinetics-400", "k400"), balanced=Setting("Kinetics-400", "k400"),
        published=True, suites=("table2",),
        note="Kinetics-400 skeletons (PYSKL's HRNet 2-D COCO-17, k400_hrnet.pkl), naturally "
             "long-tailed; Shap-Mix's Kinetics schedule"),
}


@dataclass(frozen=True)
class Row:
    label: str
    method: str
    hparams: tuple[tuple[str, Any], ...] = ()
    in_paper: bool = True
    train: tuple[tuple[str, Any], ...] = ()  # TrainConfig overrides (e.g. the input stream)


@dataclass(frozen=True)
class Fused:
    """A row fused at test time from other rows' runs (per column and seed): the weighted
    sum of their test logits (:func:`benchmark.ensemble.ensemble`)."""

    row: str
    members: tuple[str, ...]          # rows of the suite whose runs are fused
    preset: str | None = None         # weights by stream (benchmark.ensemble.PRESETS); None: 1 each


@dataclass(frozen=True)
class Cell:
    row: str
    col: str
    spec: RunSpec                      # seed 0; the suite's seeds replace it


@dataclass(frozen=True)
class Suite:
    name: str
    title: str
    kind: str                          # "accuracy" | "cost" | "figure"
    rows: tuple[str, ...]
    cols: tuple[str, ...]
    metrics: tuple[str, ...]           # per column: top1 / many / medium / few / params / hours
    cells: tuple[Cell, ...]
    seeds: tuple[int, ...]
    data: str
    notes: tuple[str, ...] = ()
    published: dict[tuple[str, str], tuple[float | None, ...]] = field(default_factory=dict)
    profile: str | None = None         # a schedule that replaces the data profile's
    fused: tuple[Fused, ...] = ()      # rows computed from other rows' runs (ensembles)
    reference: dict[str, str] = field(default_factory=dict)  # row -> the row its † test is
    # against (default: the CE row)
    groups: dict[str, str] = field(default_factory=dict)  # row -> its group (method family):
    # consecutive rows of one group are set off by a rule in LaTeX

    @property
    def tag(self) -> str:
        """Where its reports go: ``synth``, or ``synth-smoke`` for another schedule."""
        return self.data if self.profile is None else f"{self.data}-{self.profile}"

    def runs(self) -> list[RunSpec]:
        return [dataclasses.replace(c.spec, seed=s) for c in self.cells for s in self.seeds]

    @property
    def schedules(self) -> tuple[str, ...]:
        """The schedule profiles its runs train with, in first-use order."""
        return tuple(dict.fromkeys(c.spec.profile for c in self.cells))


def schedule_caption(profile: str) -> str:
    """One caption sentence: the schedule ``profile`` resolves to, ``repeat`` included."""
    c = make_config(profile)
    steps = (f"x{c.lr_decay:g} at epoch{'s' if len(c.milestones) > 1 else ''} "
             + ", ".join(map(str, c.milestones))) if c.milestones else "no decay"
    amp = "fp32" if c.amp == "off" else f"{c.amp} autocast on CUDA (fp32 on CPU)"
    return (f"Schedule {profile}: {c.epochs} epochs, batch {c.batch_size}, lr {c.lr:g} "
            f"({steps}, {c.warmup_epochs} warm-up epochs), weight decay "
            f"{c.weight_decay:g}, CTR-GCN base {c.base_channel}, {amp}, repeat {c.repeat} "
            f"(each training clip {c.repeat}x per epoch).")


# --- rows ------------------------------------------------------------------------------
# Tables 1 and 3 list methods: a row is labelled by the class's ``display_name`` (one name per
# method in every table), rows are grouped by ``family`` (a rule between groups in LaTeX) and
# ordered by ``order`` within and across groups (a family at its first member's order).
TABLE1_METHODS = ("ce", "mixup", "remix_drw", "fsa", "glmc", "brl", "ros", "focal", "cb",
                  "ldam_drw", "balanced_softmax", "ib", "bs_maxnorm", "paco", "bcl", "ride",
                  "fr_head", "logit_adjust", "st_mix", "shap_mix")
NOT_IN_PAPER_TABLE1 = ("fr_head", "logit_adjust", "st_mix")
TABLE3_METHODS = ("ce", "remix_drw", "glmc", "balanced_softmax", "shap_mix")
FIG4_METHODS = ("ce", "balanced_softmax", "shap_mix")
TABLE7_ROWS = (Row("Spatial only", "st_mix", (("temporal", False),)),
               Row("Temporal only", "st_mix", (("spatial", False),)),
               Row("Spatial + temporal", "st_mix"))
TABLE8_ROWS = ("Random", "Grad-CAM", "Shapley")
TABLE8_COLS = ("RS", "RW")
TABLE13_ROWS = (Row("ce", "ce"), Row("glmc", "glmc"),  # labelled by display_name in table13()
                Row("Shap-Mix (random guidance)", "shap_mix", (("guidance", "random"),)),
                Row("Shap-Mix Iter-1", "shap_mix"),
                Row("Shap-Mix Iter-2", "shap_mix", (("estimate_every", 2),)),
                Row("Shap-Mix Iter-5", "shap_mix", (("estimate_every", 5),)))


def method_label(name: str) -> str:
    from .method import METHODS

    return METHODS.get(name).display_name


def method_rows(names: tuple[str, ...], not_in_paper: tuple[str, ...] = (),
                extra: tuple[str, ...] = ()) -> tuple[Row, ...]:
    """One row per method, grouped by family and ordered by the classes' ``order``; the
    ``extra`` methods (``--methods``: a user's own) follow the paper's rows, grouped alike."""
    from .method import METHODS

    def ranked(group: tuple[str, ...]) -> list[str]:
        classes = {n: METHODS.get(n) for n in group}
        first: dict[str, int] = {}
        for c in classes.values():
            first[c.family] = min(first.get(c.family, c.order), c.order)
        return sorted(group, key=lambda n: (first[classes[n].family], classes[n].order, n))

    extra = tuple(dict.fromkeys(m for m in extra if m not in names))
    rows = [Row(METHODS.get(n).display_name, n, in_paper=n not in not_in_paper) for n in ranked(names)]
    rows += [Row(METHODS.get(n).display_name, n, in_paper=False) for n in ranked(extra)]
    labels = [r.label for r in rows]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise BenchmarkError(f"two methods share the display_name {', '.join(dup)}: a table "
                             f"row needs one name per method")
    return tuple(rows)


def family_groups(rows: tuple[Row, ...]) -> dict[str, str]:
    """row -> its group: the method's family (``--methods`` rows: apart from the paper's)."""
    from .method import METHODS

    return {r.label: ("" if r.in_paper or r.method in TABLE1_METHODS else "+ ")
            + METHODS.get(r.method).family for r in rows}


# --- the paper's numbers (Shap-Mix, IJCAI 2024, arXiv 2407.12312), for the ``ntu`` profile only
PAPER_TABLE1 = {  # by method: overall / many / medium / few
    "ce": ((74.4, 86.4, 69.5, 63.8), (64.2, 83.6, 64.9, 54.7)),
    "mixup": ((75.9, 86.3, 71.7, 66.5), (66.9, 85.6, 65.6, 55.5)),
    "remix_drw": ((78.7, 86.6, 74.8, 72.7), (69.3, 83.5, 67.2, 62.6)),
    "fsa": ((76.8, 85.4, 73.3, 68.8), (66.7, 82.4, 66.8, 59.4)),
    "glmc": ((78.8, 78.6, 81.3, 76.0), (71.5, 79.5, 70.5, 69.2)),
    "brl": ((76.9, 85.2, 73.1, 70.0), (66.3, 84.2, 65.0, 59.9)),
    "ros": ((74.8, 86.1, 68.1, 57.9), (61.0, 81.3, 62.3, 50.7)),
    "focal": ((77.6, 83.1, 75.9, 72.0), (69.4, 81.7, 66.7, 65.2)),
    "cb": ((72.4, 78.4, 71.2, 65.3), (63.2, 76.0, 65.0, 56.1)),
    "ldam_drw": ((76.4, 83.7, 73.4, 69.9), (66.8, 80.9, 65.8, 61.2)),
    "balanced_softmax": ((77.6, 83.8, 73.9, 73.3), (69.6, 81.4, 67.8, 66.7)),
    "ib": ((76.0, 84.0, 74.4, 66.5), (67.8, 81.2, 67.6, 62.4)),
    "bs_maxnorm": ((77.5, 81.2, 75.9, 74.1), (70.3, 80.0, 68.2, 68.8)),
    "paco": ((76.6, 82.0, 76.4, 69.1), (67.9, 82.2, 66.2, 63.8)),
    "bcl": ((77.3, 84.4, 74.1, 71.5), (66.9, 82.3, 64.5, 62.8)),
    "ride": ((76.6, 86.7, 71.9, 68.4), (65.2, 85.4, 66.7, 53.8)),
    "shap_mix": ((80.8, 86.8, 78.4, 75.6), (73.0, 84.8, 71.3, 69.7)),
}
PAPER_TABLE3 = {"ce": (79.6, 70.1, 64.2), "remix_drw": (81.6, 74.4, 69.3),
                "glmc": (82.0, 75.9, 71.5), "balanced_softmax": (80.7, 74.2, 69.6),
                "shap_mix": (83.0, 76.8, 73.0)}  # by method
PAPER_TABLE7 = {"Spatial only": 91.1, "Temporal only": 90.1, "Spatial + temporal": 91.6}
PAPER_TABLE8 = {("Random", "RS"): 76.3, ("Random", "RW"): 80.0, ("Grad-CAM", "RS"): 76.4,
                ("Grad-CAM", "RW"): 79.0, ("Shapley", "RS"): 77.9, ("Shapley", "RW"): 80.8}
PAPER_TABLE13 = {  # params (M), training hours on one RTX 4090, overall
    "ce": (1.46, 2.85, 74.4), "glmc": (1.51, 5.93, 78.8),
    "Shap-Mix (random guidance)": (None, 5.67, 79.9),  # the paper's "ST-Mix" row
    "Shap-Mix Iter-1": (None, 9.43, 80.8), "Shap-Mix Iter-2": (None, 8.11, 80.6),
    "Shap-Mix Iter-5": (None, 6.03, 80.7)}


# --- building specs ----------------------------------------------------------------------
def schedule_hparams(method: str, profile: str) -> dict[str, Any]:
    """Method settings that follow the schedule's length (``Method.schedule_hparams``; e.g.
    Shap-Mix's 5-epoch warm-up as 5 % of the schedule). The baselines' switch epochs are
    already fractions of the schedule (methods/_losses.switch_epoch)."""
    from .method import METHODS

    return METHODS.get(method).schedule_hparams(make_config(profile).epochs)


def make_spec(setting: Setting, row: Row, dp: DataProfile, profile: str | None) -> RunSpec:
    prof = profile or setting.profile or dp.profile
    hp = {**schedule_hparams(row.method, prof), **dict(row.hparams)}
    return RunSpec(dataset=setting.dataset, method=row.method, imbalance=setting.imbalance,
                   n_max=setting.n_max, hparams=hp, seed=0, profile=prof, backbone=setting.backbone,
                   train=dict(row.train))


def _grid(rows: tuple[Row, ...], settings: tuple[Setting, ...], dp: DataProfile,
          profile: str | None) -> tuple[Cell, ...]:
    return tuple(Cell(r.label, s.label, make_spec(s, r, dp, profile)) for r in rows for s in settings)


def table1(dp: DataProfile, seeds: tuple[int, ...], profile: str | None,
           extra: tuple[str, ...] = ()) -> Suite:
    rows = method_rows(TABLE1_METHODS, NOT_IN_PAPER_TABLE1, extra)
    pub = {}
    if dp.published:
        for r in rows:
            for s, nums in zip(dp.main, PAPER_TABLE1.get(r.method, ())):
                pub[(r.label, s.label)] = nums
    absent = ", ".join(method_label(m) for m in NOT_IN_PAPER_TABLE1)
    notes = (f"{absent} are not in the paper's Table 1.",
             f"{method_label('ride')}: 3 experts, as in the paper.")
    return Suite("table1", "Table 1: long-tailed methods at the main setting", "accuracy",
                 tuple(r.label for r in rows), tuple(s.label for s in dp.main),
                 ("top1", "many", "medium", "few"), _grid(rows, dp.main, dp, profile),
                 seeds, dp.name, notes, pub, groups=family_groups(rows))


def table3(dp: DataProfile, seeds: tuple[int, ...], profile: str | None,
           extra: tuple[str, ...] = ()) -> Suite:
    rows = method_rows(TABLE3_METHODS, extra=extra)
    pub = ({(r.label, s.label): v for r in rows for s, v in zip(dp.ladder, PAPER_TABLE3.get(r.method, ()))}
           if dp.published else {})
    return Suite("table3", "Table 3: accuracy across imbalance factors", "accuracy",
                 tuple(r.label for r in rows), tuple(s.label for s in dp.ladder), ("top1",),
                 _grid(rows, dp.ladder, dp, profile), seeds, dp.name, (), pub,
                 groups=family_groups(rows))


def table7(dp: DataProfile, seeds: tuple[int, ...], profile: str | None) -> Suite:
    pub = {(r, dp.balanced.label): v for r, v in PAPER_TABLE7.items()} if dp.published else {}
    notes = () if dp.balanced.imbalance is None else (
        f"Runs on {dp.balanced.label} (the paper: balanced NTU60 xsub).",)
    return Suite("table7", "Table 7: ST-Mix spatial / temporal ablation", "accuracy",
                 tuple(r.label for r in TABLE7_ROWS), (dp.balanced.label,),
                 ("top1", "many", "medium", "few"),
                 _grid(TABLE7_ROWS, (dp.balanced,), dp, profile), seeds, dp.name, notes, pub)


def table8(dp: DataProfile, seeds: tuple[int, ...], profile: str | None) -> Suite:
    cells = []
    for g_label, guidance in zip(TABLE8_ROWS, ("random", "gradcam", "shapley")):
        for c_label, mode in zip(TABLE8_COLS, ("rs", "rw")):
            row = Row(g_label, "shap_mix", (("guidance", guidance), ("rw_rs", mode)))
            cells.append(Cell(g_label, c_label, make_spec(dp.ablation, row, dp, profile)))
    return Suite("table8", f"Table 8: mixing guidance x re-sampling / re-weighting "
                 f"({dp.ablation.label})", "accuracy", TABLE8_ROWS, TABLE8_COLS, ("top1",),
                 tuple(cells), seeds, dp.name, (), dict(PAPER_TABLE8) if dp.published else {})


def table13(dp: DataProfile, seeds: tuple[int, ...], profile: str | None) -> Suite:
    rows = tuple(dataclasses.replace(r, label=method_label(r.label)) if r.label == r.method else r
                 for r in TABLE13_ROWS)
    label = {r.label: lab.label for r, lab in zip(TABLE13_ROWS, rows)}
    pub = ({(label[r], "cost"): v for r, v in PAPER_TABLE13.items()} if dp.published else {})
    return Suite("table13", f"Table 13: complexity ({dp.ablation.label})", "cost",
                 tuple(r.label for r in rows), ("cost",), ("params", "hours", "top1"),
                 tuple(Cell(c.row, "cost", c.spec) for c in _grid(rows, (dp.ablation,), dp,
                                                                  profile)), seeds, dp.name,
                 ("Shap-Mix (random guidance): the row the paper calls ST-Mix (Shap-Mix's "
                  "pipeline and loss with random instead of Shapley-guided parts).",
                  "Training time: the sum of epoch times (training + evaluation) on this "
                  "machine; the paper's is on one RTX 4090."), pub)


def fig4(dp: DataProfile, seeds: tuple[int, ...], profile: str | None) -> Suite:
    rows = method_rows(FIG4_METHODS)
    return Suite("fig4", "Figure 4: per-class accuracy vs training-set size", "figure",
                 tuple(r.label for r in rows), (dp.main[0].label,), ("top1",),
                 _grid(rows, dp.main[:1], dp, profile), seeds, dp.name)


# --- other backbones (appendix B.2 and the balanced plug-in table, issue 15) -------------
BACKBONE_LABELS = {"ctrgcn": "CTR-GCN", "stgcnpp": "ST-GCN++", "aagcn": "2s-AGCN",
                   "infogcn": "Info-GCN", "hdgcn": "HD-GCN"}
TABLE9_BACKBONES = ("ctrgcn", "stgcnpp", "infogcn", "hdgcn")
PAPER_TABLE9 = {"CTR-GCN": (74.4, 80.8), "ST-GCN++": (72.5, 78.7), "Info-GCN": (71.2, 77.5),
                "HD-GCN": (73.4, 79.8)}  # LT-NTU60 xsub IF 100: baseline (CE), + Shap-Mix
PLUGIN_BACKBONES = ("aagcn", "ctrgcn", "infogcn", "hdgcn")
PAPER_PLUGIN = {  # NTU120 xsub / xset top-1 and params (M), single stream, balanced
    "2s-AGCN": ((84.3, 3.80), (85.9, 3.80)), "2s-AGCN + Ours": ((84.6, 3.80), (86.5, 3.80)),
    "CTR-GCN": ((84.5, 1.46), (86.6, 1.46)), "CTR-GCN + Ours": ((86.9, 1.46), (88.3, 1.46)),
    "Info-GCN": ((85.1, 1.58), (86.3, 1.58)), "Info-GCN + Ours": ((85.7, 1.58), (88.0, 1.58)),
    "HD-GCN": ((85.1, 1.68), (87.2, 1.68)), "HD-GCN + Ours": ((87.0, 1.68), (88.8, 1.68)),
}


def has_graph(backbone: str, setting: Setting) -> bool:
    """Whether ``backbone`` is built for the setting's skeleton layout (NW-UCLA's 20 joints
    are not every backbone's); the backbone itself says so by refusing the graph."""
    if setting.dataset != "ucla":
        return True
    return _builds(backbone, "ucla", 20, 1)


@functools.lru_cache(maxsize=None)
def _builds(backbone: str, graph: str, joints: int, persons: int) -> bool:
    from .backbones import build_backbone

    try:
        build_backbone(backbone, num_class=10, num_point=joints, num_person=persons, graph=graph)
    except BenchmarkError:
        return False
    return True


def table9(dp: DataProfile, seeds: tuple[int, ...], profile: str | None) -> Suite:
    base = dp.ablation
    names = [b for b in TABLE9_BACKBONES if has_graph(b, base)]
    rows = tuple(BACKBONE_LABELS[b] for b in names)
    cells = []
    for b, label in zip(names, rows):
        setting = dataclasses.replace(base, backbone=b)
        for col, method in (("CE", "ce"), ("Shap-Mix", "shap_mix")):
            cells.append(Cell(label, col, make_spec(setting, Row(label, method), dp, profile)))
    pub = ({(r, c): (v,) for r, vals in PAPER_TABLE9.items() for c, v in zip(("CE", "Shap-Mix"), vals)
            if r in rows} if dp.published else {})
    skipped = [BACKBONE_LABELS[b] for b in TABLE9_BACKBONES if b not in names]
    notes = ((f"Not on this data (no {base.label} skeleton graph): {', '.join(skipped)}.",)
             if skipped else ())
    return Suite("table9", f"Table 9: Shap-Mix on other backbones ({base.label})", "accuracy",
                 rows, ("CE", "Shap-Mix"), ("top1",), tuple(cells), seeds, dp.name, notes, pub)


def plugin(dp: DataProfile, seeds: tuple[int, ...], profile: str | None) -> Suite:
    settings = dp.plugin or (dp.balanced,)
    names = [b for b in PLUGIN_BACKBONES if all(has_graph(b, st) for st in settings)]
    rows, cells = [], []
    for b in names:
        label = BACKBONE_LABELS[b]
        for suffix, method in (("", "ce"), (" + FR-Head", "fr_head"), (" + Ours", "st_mix")):
            row = label + suffix
            rows.append(row)
            for st in settings:
                setting = dataclasses.replace(st, backbone=b)
                cells.append(Cell(row, st.label, make_spec(setting, Row(row, method), dp, profile)))
    pub = ({(r, st.label): v for r, vals in PAPER_PLUGIN.items() for st, v in zip(settings, vals)
            if r in rows} if dp.published else {})
    notes = ["Ours = ST-Mix (balanced data, as the paper's Table 4); FR-Head = Zhou et al., "
             "CVPR 2023, on the same backbone.",
             "The paper gives no FR-Head numbers for this table beside its own rows."]
    if not dp.plugin:
        notes.append(f"Runs on {settings[0].label} (the paper: balanced NTU120 xsub / xset).")
    return Suite("plugin", "Balanced plug-in: backbones + FR-Head / + ours (single stream)",
                 "accuracy", tuple(rows), tuple(st.label for st in settings), ("top1", "params"),
                 tuple(cells), seeds, dp.name, tuple(notes), pub)


# --- multi-stream ensembles and the remaining ablations (Tables 4, 10, 11, 12) ----------
STREAM_LABELS = {"j": "J", "b": "B", "jm": "JM", "bm": "BM"}
PAPER_TABLE4 = {  # NTU60 xsub / xview, NTU120 xsub / xset, balanced
    "2s-Ours": (93.4, 96.8, 90.2, 91.6), "4s-Ours": (93.7, 97.1, 90.4, 91.7),
    "4s-CTR-GCN": (92.4, 96.8, 88.9, 90.6)}
TABLE10_PARTS = ((1, 2), (1, 3), (2, 3), (2, 4), (3, 4))
PAPER_TABLE10 = (91.0, 91.3, 91.6, 91.5, 91.2)   # ST-Mix, balanced NTU60 xsub
TABLE11_RATIOS = ((0.3, 0.6), (0.3, 0.7), (0.4, 0.7), (0.4, 0.8), (0.5, 0.8))
PAPER_TABLE11 = (91.2, 91.4, 91.6, 91.0, 91.2)
TABLE12_TEMPERATURES = (0.1, 0.2, 0.3, 0.4, 0.5)
PAPER_TABLE12 = (80.8, 80.8, 80.7, 80.3, 80.1)   # Shap-Mix, LT-NTU60 xsub IF 100


def table4(dp: DataProfile, seeds: tuple[int, ...], profile: str | None) -> Suite:
    settings = dp.streams or (dp.balanced,)
    rows, fused, reference = [], [], {}
    for method, name, fused_names in (("ce", "CE", ("2s-CTR-GCN", "4s-CTR-GCN")),
                                      ("st_mix", "ST-Mix", ("2s-Ours", "4s-Ours"))):
        single = [Row(f"{name} ({STREAM_LABELS[s]})", method, train=(("stream", s),))
                  for s in STREAM_LABELS]
        rows += single
        fused += [Fused(fused_names[0], tuple(r.label for r in single[:2]), "2s"),
                  Fused(fused_names[1], tuple(r.label for r in single),
                        "ctrgcn-4s" if method == "ce" else "shapmix-4s")]
    for r in rows[4:]:  # ST-Mix per stream against CE on the same stream
        reference[r.label] = r.label.replace("ST-Mix", "CE")
    reference.update({"2s-Ours": "2s-CTR-GCN", "4s-Ours": "4s-CTR-GCN"})
    labels = [r.label for r in rows[:4]] + [f.row for f in fused[:2]] + \
             [r.label for r in rows[4:]] + [f.row for f in fused[2:]]
    cells = _grid(tuple(rows), settings, dp, profile)
    pub = ({(r, st.label): (v,) for r, vals in PAPER_TABLE4.items() for st, v in zip(settings, vals)}
           if dp.streams and dp.published else {})
    notes = ["Streams: J joint, B bone, JM joint motion, BM bone motion (`--set stream=...`). "
             "Fused rows add the streams' raw test logits per seed: 2s = J + B (1 / 1); "
             "4s-CTR-GCN 0.6 / 0.6 / 0.4 / 0.4 (CTR-GCN's ensemble.py), 4s-Ours "
             "0.6 / 0.6 / 0.6 / 0.3 (Shap-Mix's ensemble.py).",
             "Ours = ST-Mix (balanced data); † tests each ST-Mix row against CE on the same "
             "stream(s)."]
    if not dp.streams:
        notes.append(f"Runs on {settings[0].label} (the paper: balanced NTU60 xsub / xview, "
                     f"NTU120 xsub / xset).")
    return Suite("table4", "Table 4: multi-stream ensembles (balanced)", "accuracy",
                 tuple(labels), tuple(st.label for st in settings), ("top1",), cells, seeds,
                 dp.name, tuple(notes), pub, fused=tuple(fused), reference=reference)


def ct_range(lo: float, hi: float, ref: int = 16) -> tuple[int, int]:
    """A mixed temporal ratio (lo, hi) as ST-Mix's segment counts out of ``ref`` (16 segments
    of 4 frames in the 64-frame window): the counts whose ratio lies in [lo, hi], so the
    paper's default (0.4, 0.7) is the official code's Ct in 7..11."""
    a, b = math.ceil(lo * ref - 1e-9), math.floor(hi * ref + 1e-9)
    if not 1 <= a <= b <= ref:
        raise BenchmarkError(f"temporal ratio ({lo}, {hi}) holds no segment count of {ref}")
    return a, b


def _ablation(name: str, title: str, rows: tuple[Row, ...], default: str, setting: Setting,
              paper: tuple[float, ...], dp: DataProfile, seeds: tuple[int, ...],
              profile: str | None, note: str) -> Suite:
    """One hyper-parameter's grid on one setting; † tests each row against the default's."""
    pub = ({(r.label, setting.label): (v,) for r, v in zip(rows, paper)}
           if dp.published else {})
    return Suite(name, f"{title} ({setting.label})", "accuracy", tuple(r.label for r in rows),
                 (setting.label,), ("top1",), _grid(rows, (setting,), dp, profile), seeds,
                 dp.name, (note,), pub, reference={r.label: default for r in rows})


def table10(dp: DataProfile, seeds: tuple[int, ...], profile: str | None) -> Suite:
    rows = tuple(Row(f"({a}, {b})", "st_mix", (("parts_min", a), ("parts_max", b)))
                 for a, b in TABLE10_PARTS)
    return _ablation("table10", "Table 10: number of mixed body parts (min, max)", rows,
                     "(2, 3)", dp.balanced, PAPER_TABLE10, dp, seeds, profile,
                     "ST-Mix draws |S| ~ U{min..max} of the 5 body parts; (2, 3) is the default "
                     "(the same run as Table 7's spatial + temporal).")


def table11(dp: DataProfile, seeds: tuple[int, ...], profile: str | None) -> Suite:
    rows = []
    for lo, hi in TABLE11_RATIOS:
        a, b = ct_range(lo, hi)
        rows.append(Row(f"({lo:g}, {hi:g})", "st_mix", (("ct_min", a), ("ct_max", b))))
    return _ablation("table11", "Table 11: mixed temporal ratio (min, max)", tuple(rows),
                     "(0.4, 0.7)", dp.balanced, PAPER_TABLE11, dp, seeds, profile,
                     "A ratio (lo, hi) mixes Ct ~ U{ceil(16 lo)..floor(16 hi)} of the 16 "
                     "four-frame segments: " + ", ".join(
                         f"({lo:g}, {hi:g}) -> {'..'.join(map(str, ct_range(lo, hi)))}"
                         for lo, hi in TABLE11_RATIOS) + "; (0.4, 0.7) is the official 7..11.")


def table12(dp: DataProfile, seeds: tuple[int, ...], profile: str | None) -> Suite:
    rows = tuple(Row(f"{t:g}", "shap_mix", (("temperature", t),)) for t in TABLE12_TEMPERATURES)
    return _ablation("table12", "Table 12: Shap-Mix sampler temperature", rows, "0.2", dp.ablation,
                     PAPER_TABLE12, dp, seeds, profile,
                     "The official sampler's temperature is 0.2 (the same run as Table 1's "
                     "Shap-Mix).")


# --- Table 2: Kinetics-400 (issue 17) ---------------------------------------------------
TABLE2_METHODS = ("ce", "brl", "glmc", "shap_mix")
TABLE2_POSEC3D = "PoseConv3D"   # a published number only: a 3-D CNN on pose heatmaps
PAPER_TABLE2 = {"ce": 45.0, TABLE2_POSEC3D: 46.0, "brl": 45.6, "glmc": 46.6, "shap_mix": 48.4}


def table2(dp: DataProfile, seeds: tuple[int, ...], profile: str | None) -> Suite:
    setting = dp.main[0]
    kinetics = setting.dataset == "k400"
    # Shap-Mix's K400 script keeps its 5 warm-up epochs on the 70-epoch schedule
    official = (profile or setting.profile or dp.profile) == "k400"
    warm = (("naive_estimate_epoch", 5), ("naive_mix_epoch", 5)) if official else ()
    rows = tuple(dataclasses.replace(r, hparams=warm) if r.method == "shap_mix" else r
                 for r in method_rows(TABLE2_METHODS))
    labels = (rows[0].label, TABLE2_POSEC3D, *(r.label for r in rows[1:]))
    pub = ({(r.label, setting.label): PAPER_TABLE2[r.method] for r in rows}
           | {(TABLE2_POSEC3D, setting.label): PAPER_TABLE2[TABLE2_POSEC3D]}
           if dp.published and kinetics else {})
    notes = [f"{TABLE2_POSEC3D} (Duan et al., CVPR 2022; a 3-D CNN on pose heatmaps): the "
             "paper's number only, no run."]
    if kinetics:
        notes.append("Test: one random 100-frame clip per video, as Shap-Mix's code (its test "
                     "feeder samples like training); `--set test_clips=10` is PYSKL's 10-clip "
                     "test.")
    else:
        notes.append(f"Runs on {setting.label} (the paper: Kinetics-400).")
    return Suite("table2", f"Table 2: {'Kinetics-400' if kinetics else setting.label}",
                 "accuracy", labels, (setting.label,), ("top1",),
                 _grid(rows, (setting,), dp, profile), seeds, dp.name, tuple(notes), pub,
                 groups=family_groups(rows))


SUITES: dict[str, Callable[[DataProfile, tuple[int, ...], str | None], Suite]] = {
    "table1": table1, "table3": table3, "table7": table7, "table8": table8,
    "table13": table13, "fig4": fig4, "table9": table9, "plugin": plugin,
    "table4": table4, "table10": table10, "table11": table11, "table12": table12,
    "table2": table2,
}


METHOD_TABLES = ("table1", "table3")  # the suites that take --methods rows


def get_suites(names: str | list[str] = "all", data: str = "synth",
               seeds: tuple[int, ...] | None = None, profile: str | None = None,
               extra_methods: tuple[str, ...] = ()) -> list[Suite]:
    """The suites ``names`` ("all", a comma list or a list) on data profile ``data``.

    ``profile`` replaces every run's schedule profile (e.g. ``smoke``); ``seeds`` defaults to
    the data profile's (three, 0 1 2; one on ``synth``, to fit a 2-core CPU);
    ``extra_methods`` (``--methods``) adds rows to the method tables (Tables 1 and 3).
    """
    if extra_methods:
        from .method import METHODS

        for m in extra_methods:
            METHODS.get(m)  # an unknown name: one error with did-you-mean (and --plugin)
    if data not in DATA_PROFILES:
        raise BenchmarkError(f"unknown data profile {data!r} (known: {', '.join(DATA_PROFILES)})")
    dp = DATA_PROFILES[data]
    wanted = [n for n in SUITES if n in (dp.suites or SUITES)] if names == "all" else (
        [n.strip() for n in names.split(",") if n.strip()] if isinstance(names, str) else list(names))
    unknown = [n for n in wanted if n not in SUITES]
    if unknown or not wanted:
        raise BenchmarkError(f"unknown suite(s) {', '.join(unknown) or '(none given)'} "
                             f"(known: all, {', '.join(SUITES)})")
    elsewhere = [n for n in wanted if dp.suites and n not in dp.suites]
    if elsewhere:
        raise BenchmarkError(f"suite(s) {', '.join(elsewhere)} do not run on data profile {data} "
                             f"(it has: {', '.join(dp.suites)})")
    if profile is not None:
        make_config(profile)  # fails on an unknown profile
    seeds = tuple(dp.seeds if seeds is None else seeds)
    if not seeds or any(s < 0 for s in seeds):
        raise BenchmarkError(f"seeds must be a non-empty list of integers >= 0, got {seeds}")
    return [dataclasses.replace(SUITES[n](dp, seeds, profile, *(
        (tuple(extra_methods),) if extra_methods and n in METHOD_TABLES else ())), profile=profile)
        for n in wanted]


def unique_runs(suites: list[Suite]) -> list[RunSpec]:
    """Every run of ``suites`` once, normalised, in suite order (a spec shared by two suites,
    or written two ways, e.g. with an option at its default, runs once). The methods must be
    registered (``import methods``)."""
    from .spec import normalise

    seen: dict[str, RunSpec] = {}
    for suite in suites:
        for spec in suite.runs():
            spec = normalise(spec)
            seen.setdefault(spec.request_key, spec)
    return list(seen.values())
