"""Standard evaluation protocols as functions of the sample names.

The row order reproduces CTR-GCN's ``seq_transformation.get_indices``: the store is sorted by
name (the official ``skes_available_name.txt`` order) and a split concatenates, for each ID of
the protocol's ID list in ascending order, that ID's rows in store order. This is exactly the
order of the official ``x_train`` rows and of BRL's ``standard_data/ntu/NTU60_*_train.txt``,
which the long-tailed recipe depends on.

Protocols (train IDs; everything else is test):
  ntu60  xsub  performers 1 2 4 5 8 9 13 14 15 16 17 18 19 25 27 28 31 34 35 38
  ntu60  xview cameras 2, 3 (test camera 1)
  ntu120 xsub  the 53 NTU120 cross-subject train performers
  ntu120 xset  even setup IDs
  ucla   ucla  views 1, 2 (test view 3), CTR-GCN's NW-UCLA feeder
  synth  xsub  as ntu60 xsub (the synthetic set uses NTU-style names)
"""
from __future__ import annotations

from typing import Callable, Sequence

from ..errors import BenchmarkError
from .names import parse_ntu, parse_ucla

NTU60_XSUB_TRAIN = (1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38)
NTU120_XSUB_TRAIN = NTU60_XSUB_TRAIN + (
    45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86,
    89, 91, 92, 93, 94, 95, 97, 98, 100, 103)
NTU60_XVIEW_TRAIN = (2, 3)

# (dataset, protocol) -> (key of a name -> ID, is-train predicate on the ID)
_RULES: dict[tuple[str, str], tuple[Callable[[str], int], Callable[[int], bool]]] = {
    ("ntu60", "xsub"): (lambda n: parse_ntu(n).performer, lambda i: i in NTU60_XSUB_TRAIN),
    ("ntu60", "xview"): (lambda n: parse_ntu(n).camera, lambda i: i in NTU60_XVIEW_TRAIN),
    ("ntu120", "xsub"): (lambda n: parse_ntu(n).performer, lambda i: i in NTU120_XSUB_TRAIN),
    ("ntu120", "xset"): (lambda n: parse_ntu(n).setup, lambda i: i % 2 == 0),
    ("ucla", "ucla"): (lambda n: parse_ucla(n).view, lambda i: i in (1, 2)),
    ("synth", "xsub"): (lambda n: parse_ntu(n).performer, lambda i: i in NTU60_XSUB_TRAIN),
}

PROTOCOLS: dict[str, tuple[str, ...]] = {}
for _ds, _p in _RULES:
    PROTOCOLS.setdefault(_ds, ())
    PROTOCOLS[_ds] += (_p,)


def protocol_split(dataset: str, protocol: str, names: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split store names (sorted, as stored) into the protocol's (train, test) name lists.

    Within each part names are grouped by ID in ascending ID order and keep their store order
    inside a group (a stable sort by ID), as the official ``get_indices`` concatenation does.
    """
    if (dataset, protocol) not in _RULES:
        raise BenchmarkError(f"unknown protocol {protocol!r} for dataset {dataset!r} "
                             f"(have: {', '.join(f'{d}/{p}' for d, p in _RULES)})")
    key, is_train = _RULES[(dataset, protocol)]
    ids = [key(n) for n in names]
    order = sorted(range(len(names)), key=lambda i: ids[i])  # stable: store order within an ID
    train = [names[i] for i in order if is_train(ids[i])]
    test = [names[i] for i in order if not is_train(ids[i])]
    return train, test


def official_order(dataset: str, protocol: str, names: Sequence[str]) -> list[str]:
    """``names`` (any subset) in the order :func:`protocol_split` gives them: by the protocol's
    ID, name order within an ID. A (dataset, protocol) without a rule keeps the given order."""
    if (dataset, protocol) not in _RULES:
        return list(names)
    key, _ = _RULES[(dataset, protocol)]
    return sorted(sorted(names), key=key)
