"""Sample names and the labels/attributes encoded in them.

NTU RGB+D: ``SsssCcccPpppRrrrAaaa`` (setup, camera, performer, replication, action 1-based).
NW-UCLA:   ``aXX_sYY_eZZ_vWW`` (action, subject, take, view); the ten actions a01..a06, a08,
a09, a11, a12 map to labels 0..9 in that order (CTR-GCN's feeder subtracts one from 1..10).
"""
from __future__ import annotations

import re
from typing import NamedTuple

from ..errors import BenchmarkError

NTU_RE = re.compile(r"^S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})$")
UCLA_RE = re.compile(r"^a(\d{2})_s(\d{2})_e(\d{2})_v(\d{2})$")
UCLA_ACTIONS = (1, 2, 3, 4, 5, 6, 8, 9, 11, 12)
UCLA_LABEL = {a: i for i, a in enumerate(UCLA_ACTIONS)}


class NTUName(NamedTuple):
    setup: int
    camera: int
    performer: int
    replication: int
    action: int  # 1-based, as in the name

    @property
    def label(self) -> int:
        return self.action - 1


class UCLAName(NamedTuple):
    action: int  # the aXX number, 1..12 (7 and 10 unused)
    subject: int
    take: int
    view: int

    @property
    def label(self) -> int:
        return UCLA_LABEL[self.action]


def parse_ntu(name: str) -> NTUName:
    m = NTU_RE.match(name)
    if not m:
        raise BenchmarkError(f"{name!r} is not an NTU sample name (SsssCcccPpppRrrrAaaa)")
    return NTUName(*map(int, m.groups()))


def parse_ucla(name: str) -> UCLAName:
    m = UCLA_RE.match(name)
    if not m or int(m.group(1)) not in UCLA_LABEL:
        raise BenchmarkError(f"{name!r} is not an NW-UCLA sample name (aXX_sYY_eZZ_vWW)")
    return UCLAName(*map(int, m.groups()))


def label_of(name: str) -> int:
    """0-based class of an NTU-style (``A`` + 3 digits) or NW-UCLA (``aNN``) name."""
    if NTU_RE.match(name):
        return parse_ntu(name).label
    if UCLA_RE.match(name):
        return parse_ucla(name).label
    raise BenchmarkError(f"cannot read a class from sample name {name!r}")
