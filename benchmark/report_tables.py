"""The paper's tables from the summary frame: a table model, then Markdown / LaTeX / CSV.

The report is pure (frame -> table model -> renderers). The model holds,
for every row x (setting, metric) column, the per-seed values of the runs found; the
renderers only format it. Conventions (after the Shap-Mix paper's tables):

* cells are mean ± sample standard deviation (ddof 1) over seeds, accuracies in percent with
  one decimal; ``--`` for a missing run or an empty Many/Medium/Few group (never 0);
* the best mean of each column is bold (highest accuracy, shortest time; a parameter count
  is a property, never bold);
* † marks a top-1 mean that differs from its reference row (the CE row unless the suite pairs
  rows itself: ST-Mix vs CE per stream in Table 4, each value vs the default in Tables 10-12)
  of the same column at p < 0.05 in a two-sided paired t-test over matched seeds
  (``scipy.stats.ttest_rel``; >= 2 seeds needed);
* where the paper has the same setting (``suite.published``) a "Paper" column stands beside ours.

LaTeX is an in-house booktabs writer (tabulate would escape ``\\pm`` / ``\\textbf``, pandas'
``to_latex`` needs jinja2); Markdown is tabulate's ``pipe`` format.
"""
from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from tabulate import tabulate

from .data.splits import FEW_THRESHOLD, MANY_THRESHOLD
from .errors import BenchmarkError

ALPHA = 0.05
WIDE_COLUMNS = 6  # more data columns than this: the LaTeX tabular is scaled to the line width
CE_METHOD = "ce"  # the default reference row: the row labelled with this method's display_name
CORRECTIONS = ("none", "holm")
TITLE_PREFIX = re.compile(r"^(Table|Figure) \d+: ")
ROW_HEADER = {"table7": "Variant", "table8": "Guidance", "table10": "Parts (min, max)",
              "table11": "Temporal ratio (min, max)", "table12": "Temperature", "table9": "Backbone"}
FUSED_PREFIX = "fused:"  # the run ids the report gives a fused row's per-seed entries
GROUP_METRICS = ("many", "medium", "few")
LABELS = {"top1": "Top-1", "many": "Many", "medium": "Medium", "few": "Few",
          "params": "Params (M)", "hours": "Train time (h)"}
DECIMALS = {"top1": 1, "many": 1, "medium": 1, "few": 1, "params": 2, "hours": 2}
GROUP_SIZES = {"many": f"> {MANY_THRESHOLD}", "medium": f"{FEW_THRESHOLD}–{MANY_THRESHOLD}",
               "few": f"< {FEW_THRESHOLD}"}
GROUP_RULE = f"Many / Medium / Few: classes with {' / '.join(GROUP_SIZES.values())} training clips"


@dataclass
class Column:
    group: str                 # the suite column (a setting such as "IF 10")
    label: str                 # the sub-column header
    metric: str | None         # None: the paper's reference column of the group
    unit: str = "%"
    decimals: int = 1
    higher_better: bool = True
    spread: bool = True        # show ± std (params are equal over seeds: no)
    div: float = 0.01          # displayed value = stored value / div (fraction -> %)


@dataclass
class Entry:
    values: dict[int, float] = field(default_factory=dict)  # seed -> value (display unit)
    paper: tuple[float | None, ...] | None = None           # paper column / this metric's
    bold: bool = False
    dagger: bool = False
    p: float = math.nan       # paired t-test against the reference row (top-1 only)
    p_adj: float = math.nan   # p after the table's correction (Holm over the column's tests)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(list(self.values.values()))) if self.values else math.nan

    @property
    def std(self) -> float:
        v = list(self.values.values())
        return float(np.std(v, ddof=1)) if len(v) >= 2 else math.nan


@dataclass
class Table:
    name: str
    data: str
    title: str
    row_header: str
    rows: list[str]
    columns: list[Column]
    cells: dict[tuple[str, int], Entry]       # (row, column index) -> entry
    seeds: tuple[int, ...]
    caption: str
    footnotes: list[str]
    notes: list[str]
    planned: int
    missing: int
    group_header: bool         # a spanning header row of settings above the sub-columns
    sub_header: bool           # sub-column labels (False: one column per setting)
    paper_metrics: tuple[str, ...] = ()  # what the paper's numbers are (one per metric)
    refs: dict[str, str] = field(default_factory=dict)  # row -> the row its † test is against
    details: list[str] = field(default_factory=list)  # how the numbers were made (Markdown
    # notes and LaTeX comments: data profile, ddof, the test's implementation, missing runs)
    groups: dict[str, str] = field(default_factory=dict)  # row -> group (a LaTeX rule between)


# ------------------------------------------------------------------------ building
SOURCE = {"params": "params_total", "hours": "train_seconds"}  # metric -> summary column
PAPER_TO_UNIT = {"K": 1e3, "min": 60.0}  # the paper gives millions and hours


def _scale(metric: str, raw: list[float]) -> tuple[float, str, int]:
    """(divisor, unit, decimals) of a cost column: minutes when every run took < 1 h (the
    synth and NW-UCLA runs), thousands of parameters when every model has < 100 K (synth)."""
    if metric == "params":
        return (1e3, "K", 1) if raw and max(raw) < 1e5 else (1e6, "M", 2)
    return (60.0, "min", 1) if raw and max(raw) < 3600 else (3600.0, "h", 2)


def _published(suite: Any, row: str, col: str) -> tuple[float | None, ...] | None:
    v = suite.published.get((row, col))
    if v is None:
        return None
    return tuple(v) if isinstance(v, (tuple, list)) else (v,)  # Table 3/7/8 store one number


def _paper_metrics(suite: Any) -> tuple[str, ...]:
    """The metrics the paper's numbers give: the suite's own, or top-1 alone (Table 7 has one
    number per variant while ours also shows Many / Medium / Few)."""
    lengths = {len(_published(suite, r, c) or ()) for r, c in suite.published}
    if not lengths or lengths == {len(suite.metrics)}:
        return tuple(suite.metrics)
    if lengths == {1} and "top1" in suite.metrics:
        return ("top1",)
    raise BenchmarkError(f"suite {suite.name}: published numbers of {sorted(lengths)} values do "
                         f"not match its metrics {', '.join(suite.metrics)}")


def paired_test(a: dict[int, float], b: dict[int, float]) -> float:
    """Two-sided ``ttest_rel`` p-value of a vs b over their common seeds; NaN when undefined
    (fewer than 2 matched seeds, or differences that are all equal: zero variance)."""
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return math.nan
    x, y = np.array([a[s] for s in seeds]), np.array([b[s] for s in seeds])
    if np.ptp(x - y) <= 1e-9:  # scipy's t is inf or NaN on round-off here: no evidence either way
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_rel(x, y).pvalue)


def _columns(suite: Any, scales: dict[str, tuple[float, str, int]]) -> list[Column]:
    cols: list[Column] = []
    for col in suite.cols:
        for metric in suite.metrics:
            label = LABELS[metric]
            if metric == "top1" and any(m in suite.metrics for m in GROUP_METRICS):
                label = "Overall"  # the paper's Table 1 header
            if metric == "top1" and suite.kind == "cost":
                label = "Top-1 (%)"
            div, unit, dec = scales.get(metric, (0.01, "%", DECIMALS[metric]))
            if metric in scales:
                label = f"{label.split(' (')[0]} ({unit})"
            cols.append(Column(col, label, metric, unit, dec, metric not in scales,
                               metric != "params", div))
        if any((row, col) in suite.published for row in suite.rows):
            cols.append(Column(col, "Paper", None, unit=""))
    return cols


def build_table(suite: Any, run_ids: dict[tuple[str, str], list[tuple[int, str]]],
                by_id: pd.DataFrame, correction: str = "none") -> Table:
    """The table model of an ``accuracy`` / ``cost`` suite from the frame indexed by run_id.

    ``correction``: ``none`` (each row's paired test at ALPHA) or ``holm`` (Holm-Bonferroni
    over the tests of each column, controlling the family-wise error rate).
    """
    if correction not in CORRECTIONS:
        raise BenchmarkError(f"unknown correction {correction!r} (known: {', '.join(CORRECTIONS)})")
    from .suites import DATA_PROFILES

    present = set(by_id.index)
    # a fused row's entries are computed from its members' runs, which are the ones counted
    planned_ids = {rid for runs in run_ids.values() for _, rid in runs
                   if not rid.startswith(FUSED_PREFIX)}
    missing = len(planned_ids - present)
    scales = {}
    for metric in SOURCE:
        raw = [by_id.at[rid, SOURCE[metric]] for rid in sorted(planned_ids & present)]
        scales[metric] = _scale(metric, [v for v in raw if not math.isnan(v)])
    columns = _columns(suite, scales)
    paper_metrics = _paper_metrics(suite)
    cells: dict[tuple[str, int], Entry] = {}
    ran: set[int] = set()  # columns with at least one finished run
    for row in suite.rows:
        for j, c in enumerate(columns):
            e = Entry()
            pub = _published(suite, row, c.group)
            if c.metric is None:
                e.paper = pub
            else:
                if pub is not None and c.metric in paper_metrics:  # in this column's unit
                    v = pub[paper_metrics.index(c.metric)]
                    e.paper = (None if v is None else v * PAPER_TO_UNIT.get(c.unit, 1.0),)
                for seed, rid in run_ids.get((row, c.group), []):
                    if rid in present:
                        ran.add(j)
                        v = by_id.at[rid, SOURCE.get(c.metric, c.metric)] / c.div
                        if not math.isnan(v):
                            e.values[seed] = float(v)
            cells[(row, j)] = e
    refs = references(suite)
    too_few = _significance(columns, cells, refs, correction)
    _mark_best(suite.rows, columns, cells)

    seeds = tuple(suite.seeds)
    n_seeds = f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}"
    # the caption is a paper's: no "Table N:" (LaTeX numbers tables), no tool words
    title = TITLE_PREFIX.sub("", suite.title)
    caption = (f"{title[:1].upper()}{title[1:]}. "
               + (f"Top-1 accuracy (%) at the last epoch, mean ± std over {n_seeds}"
                  if suite.kind == "accuracy" else f"Mean over {n_seeds}")
               + "; best in bold.")
    if any(c.metric in GROUP_METRICS for c in columns):
        caption += f" {GROUP_RULE}."
    dp = DATA_PROFILES.get(suite.data)
    if dp is not None and dp.schedule_in_caption:
        from .suites import schedule_caption
        caption += "".join(f" {schedule_caption(p)}" for p in suite.schedules)
    details = [f"Data profile: {suite.tag}; seeds {', '.join(map(str, seeds))}; std = sample "
               f"standard deviation (ddof 1).",
               f"{missing} of {len(planned_ids)} runs missing"
               + (" (shown as --)." if missing else ".")]
    foot = []
    if missing:
        foot.append("(n=k): mean over the k seeds found.")
    if refs and "top1" in suite.metrics:
        targets = set(refs.values())
        against = (next(iter(targets)) if len(targets) == 1
                   else "the row's reference (" + "; ".join(f"{r} vs {v}" for r, v in refs.items()) + ")")
        holm = ", Holm-corrected over the rows of each column" if correction == "holm" else ""
        if len(seeds) >= 2:
            foot.append(f"† p < {ALPHA} against {against} (two-sided paired t-test on top-1 "
                        f"over seeds{holm}).")
            details.append("Test: scipy.stats.ttest_rel over matched seeds (≥ 2 needed)"
                           + (f"; {too_few} cell(s) had fewer: no mark." if too_few else "."))
        else:
            details.append(f"No significance marks: the paired t-test against {against} "
                           f"needs ≥ 2 seeds.")
    if any(c.metric is None for c in columns):
        what = " / ".join("Overall" if m == "top1" and len(paper_metrics) > 1 and suite.kind
                          != "cost" else LABELS[m] for m in paper_metrics)
        foot.append(f"Paper: the published Shap-Mix (IJCAI 2024) numbers for this setting "
                    f"({what}).")
    for j, c in enumerate(columns):  # a group no class of the split falls in: say so, once
        if (c.metric in GROUP_METRICS and j in ran
                and not any(cells[(row, j)].values for row in suite.rows)):
            name = f"{c.group} {c.label}" if sum(d.group == c.group for d in columns) < len(
                columns) else c.label
            foot.append(f"{name}: -- in every row, no class of this split has "
                        f"{GROUP_SIZES[c.metric]} training clips.")
    if suite.kind == "cost":
        p_unit, t_unit = scales["params"][1], scales["hours"][1]
        foot.append(f"Params: {'thousands' if p_unit == 'K' else 'millions'}. Train time: per "
                    f"run, in {'minutes' if t_unit == 'min' else 'hours'}.")
    notes = list(suite.notes) + ([f"Data ({suite.data}): {dp.note}."] if dp and dp.note else [])
    multi = any(sum(c.group == g for c in columns) > 1 for g in suite.cols)
    return Table(suite.name, suite.tag, suite.title, ROW_HEADER.get(suite.name, "Method"),
                 list(suite.rows), columns, cells, seeds, caption, foot, notes,
                 len(planned_ids), missing, group_header=multi and suite.kind != "cost",
                 sub_header=multi, paper_metrics=paper_metrics, refs=refs, details=details,
                 groups=dict(getattr(suite, "groups", {}) or {}))


def references(suite: Any) -> dict[str, str]:
    """row -> the row its top-1 is tested against: the suite's own pairs (``reference``), else
    the Cross-Entropy row for every other row; rows without one are not tested."""
    rows = set(suite.rows)
    pairs = getattr(suite, "reference", None) or {}
    if pairs:
        return {r: v for r, v in pairs.items() if r in rows and v in rows and v != r}
    from .suites import method_label

    ce = method_label(CE_METHOD)
    return {r: ce for r in suite.rows if r != ce} if ce in rows else {}


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down; NaN = no test, not counted)."""
    idx = [i for i, p in enumerate(pvalues) if not math.isnan(p)]
    out = [math.nan] * len(pvalues)
    m, running = len(idx), 0.0
    for k, i in enumerate(sorted(idx, key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - k) * pvalues[i]))
        out[i] = running
    return out


def _significance(columns: list[Column], cells: dict[tuple[str, int], Entry],
                  refs: dict[str, str], correction: str = "none") -> int:
    """Fill p / dagger of every top-1 cell against its reference row; return how many present
    cells could not be tested (fewer than 2 seeds shared with the reference)."""
    too_few = 0
    for j, c in enumerate(columns):
        if c.metric != "top1":
            continue
        tested = []
        for row, ref_row in refs.items():
            e, ref = cells[(row, j)], cells[(ref_row, j)].values
            if not e.values:
                continue
            if len(set(e.values) & set(ref)) < 2:
                too_few += 1
                continue
            e.p = paired_test(e.values, ref)
            tested.append(e)
        adjusted = holm([e.p for e in tested]) if correction == "holm" else [e.p for e in tested]
        for e, p in zip(tested, adjusted):
            e.p_adj = p
            e.dagger = p < ALPHA  # NaN compares False: no mark
    return too_few


def _mark_best(rows: list[str], columns: list[Column], cells: dict[tuple[str, int], Entry]) -> None:
    # compare the means as printed, so two cells that read the same are both bold; no bold
    # when fewer than two rows have a value or all tie (a bold everywhere says nothing)
    for j, c in enumerate(columns):
        if c.metric in (None, "params"):  # a parameter count is a property, not a result
            continue
        shown = {r: round(cells[(r, j)].mean, c.decimals) for r in rows if cells[(r, j)].values}
        if len(shown) < 2 or len(set(shown.values())) == 1:
            continue
        best = max(shown.values()) if c.higher_better else min(shown.values())
        for r, v in shown.items():
            cells[(r, j)].bold = v == best


# ------------------------------------------------------------------------ renderers
def _num(v: float | None, dec: int) -> str:
    return "--" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{dec}f}"


def _paper_text(e: Entry, metrics: tuple[str, ...]) -> str:
    if e.paper is None:
        return "--"
    return " / ".join(_num(v, DECIMALS[m]) for v, m in zip(e.paper, metrics, strict=True))


def _cell(table: Table, e: Entry, c: Column, tex: bool) -> str:
    if c.metric is None:
        return _paper_text(e, table.paper_metrics)
    if not e.values:
        return "--"
    mean = _num(e.mean, c.decimals)
    std = _num(e.std, c.decimals) if c.spread and e.n >= 2 else None
    if tex:
        core = f"${mean} \\pm {std}$" if std else f"${mean}$"
        core = f"\\textbf{{\\boldmath {core}}}" if e.bold else core  # \boldmath: bold math too
        dag, part = "$^{\\dagger}$", f" {{\\scriptsize (n={e.n})}}"
    else:
        core = f"{mean} ± {std}" if std else mean
        core = f"**{core}**" if e.bold else core
        dag, part = " †", f" (n={e.n})"
    return core + (dag if e.dagger else "") + (part if e.n < len(table.seeds) else "")


def _header(table: Table) -> list[str]:
    out = []
    for c in table.columns:
        if not table.sub_header:
            out.append(c.group)
        elif not table.group_header:
            out.append(c.label)
        else:
            out.append(f"{c.group} {c.label}")
    return out


def to_markdown(table: Table) -> str:
    body = [[r] + [_cell(table, table.cells[(r, j)], c, tex=False)
                   for j, c in enumerate(table.columns)] for r in table.rows]
    grid = tabulate(body, headers=[table.row_header, *_header(table)], tablefmt="pipe",
                    disable_numparse=True,
                    colalign=("left", *["center"] * len(table.columns)))
    lines = [f"# {table.title} ({table.data})", "", table.caption, "", grid, ""]
    lines += [f"- {f}" for f in table.footnotes]
    if table.notes or table.details:
        lines += ["", "Notes:", *[f"- {n}" for n in [*table.notes, *table.details]]]
    return "\n".join(lines) + "\n"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
        "<": "$<$", ">": "$>$", "±": r"$\pm$", "†": r"$^{\dagger}$", "–": "--",
        "≥": r"$\geq$", "×": r"$\times$"}


def tex_escape(text: str) -> str:
    """Plain text -> LaTeX text (one pass per character, so nothing is escaped twice)."""
    return "".join(_TEX.get(ch, ch) for ch in text)


def to_latex(table: Table) -> str:
    # Table 1 on ntu (2 settings x 4 metrics + 2 Paper columns) is wider than any text block
    wide = len(table.columns) > WIDE_COLUMNS
    lines = ["% Generated by `python -m benchmark report` from the stored runs; do not edit.",
             "% Needs \\usepackage{booktabs}" + (" and \\usepackage{graphicx} (\\resizebox)."
                                                  if wide else "."),
             *[f"% {line}" for line in [*table.notes, *table.details]],
             "\\begin{table}[t]", "\\centering", "\\small",
             f"\\caption{{{tex_escape(table.caption)}}}",
             f"\\label{{tab:{table.data}-{table.name}}}",
             *(["\\resizebox{\\linewidth}{!}{%"] if wide else []),
             f"\\begin{{tabular}}{{l{'c' * len(table.columns)}}}", "\\toprule"]
    if table.group_header:
        spans, rules, start = [], [], 2
        for g in dict.fromkeys(c.group for c in table.columns):
            k = sum(c.group == g for c in table.columns)
            spans.append(f"\\multicolumn{{{k}}}{{c}}{{{tex_escape(g)}}}")
            rules.append(f"\\cmidrule(lr){{{start}-{start + k - 1}}}")
            start += k
        lines += [" & ".join(["", *spans]) + " \\\\", " ".join(rules)]
        heads = [c.label for c in table.columns]
    else:
        heads = _header(table)
    lines.append(" & ".join(tex_escape(h) for h in [table.row_header, *heads]) + " \\\\")
    lines.append("\\midrule")
    for i, r in enumerate(table.rows):
        if i and table.groups.get(r) != table.groups.get(table.rows[i - 1]):
            lines.append("\\midrule")  # a new method family
        cells = [_cell(table, table.cells[(r, j)], c, tex=True)
                 for j, c in enumerate(table.columns)]
        lines.append(" & ".join([tex_escape(r), *cells]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", *(["}"] if wide else []), "\\par\\smallskip",
              "{\\footnotesize"]
    lines += [tex_escape(t) + "\\par" for t in table.footnotes]
    lines += ["}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def to_frame(table: Table) -> pd.DataFrame:
    """The numbers behind the table, one line per row x setting x metric."""
    out = []
    for r in table.rows:
        for j, c in enumerate(table.columns):
            if c.metric is None:
                continue
            e = table.cells[(r, j)]
            out.append({"row": r, "col": c.group, "metric": c.metric, "unit": c.unit,
                        "mean": e.mean, "std": e.std, "n": e.n, "seeds": len(table.seeds),
                        "paper": None if e.paper is None else e.paper[0],
                        "reference": table.refs.get(r), "p_vs_reference": e.p,
                        "p_adjusted": e.p_adj, "dagger": e.dagger, "bold": e.bold})
    return pd.DataFrame(out, columns=["row", "col", "metric", "unit", "mean", "std", "n", "seeds",
                                      "paper", "reference", "p_vs_reference", "p_adjusted",
                                      "dagger", "bold"])
