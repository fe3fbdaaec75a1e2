"""HD-GCN's hierarchically decomposed graph (Lee et al., "Hierarchically Decomposed Graph
Convolutional Networks for Skeleton-Based Action Recognition", ICCV 2023).

The joints are split into levels by their distance from a centre-of-mass joint (CoM). Level
pair ``l`` = (G_l, G_{l+1}) gives one (3, V, V) graph: the identity over G_l and G_{l+1}, the
edges G_l -> G_{l+1} and the edges G_{l+1} -> G_l, each column-normalised like CTR-GCN's
``normalize_digraph``. Stacked over the L = len(levels) - 1 pairs: (L, 3, V, V), the shape of
the official ``graph.ntu_rgb_d_hierarchy.Graph(CoM=...).A[0]`` (``scripts/check_hdgcn_official.py``
checks equality). The same level pairs are A-HA's joint sets (:func:`level_joints`).

The levels are data, as the official lists them: they are nearly, not exactly, the hop
distances from the CoM (the hand tips and thumbs sit beside the hands as in PYSKL's NTU tree,
not chained as in CTR-GCN's, and CoM 1 puts the hands and hand joints on one last level).

Only NTU (25 joints) has a hierarchy: the official release ships no NW-UCLA hierarchy in source
(``graph/ucla_hierarchy.py`` exists only as a compiled Python 3.6 cache, and its ``get_groups``
knows only NTU), so there is nothing to be weight-compatible with; other graphs raise.
"""
from __future__ import annotations

import numpy as np

from ..errors import BenchmarkError
from .graph import edge2mat, layout_name, normalize_digraph

# NTU levels by centre of mass, 1-based joint numbers (1 spine base, 2 spine mid, 21 spine
# shoulder, ...), in the official order (the order of A-HA's per-level means).
NTU_LEVELS: dict[int, tuple[tuple[int, ...], ...]] = {
    21: ((21,), (2, 3, 5, 9), (4, 6, 10, 1), (7, 11, 13, 17), (8, 12, 14, 18),
         (22, 23, 24, 25, 15, 19), (16, 20)),
    1: ((1,), (2, 13, 17), (14, 18, 21), (3, 5, 9, 15, 19), (4, 6, 10, 16, 20), (7, 11),
        (8, 12, 22, 23, 24, 25)),
    2: ((2,), (1, 21), (13, 17, 3, 5, 9), (14, 18, 4, 6, 10), (15, 19, 7, 11), (16, 20, 8, 12),
        (22, 23, 24, 25)),
}
HIERARCHIES = {"ntu25": NTU_LEVELS}


def levels(graph: str, com: int = 21) -> list[list[int]]:
    """The 0-based joint levels of ``graph`` ('ntu' / 'ntu25') around centre of mass ``com``."""
    name = layout_name(graph)
    if name not in HIERARCHIES:
        raise BenchmarkError(
            f"hdgcn: no hierarchical graph for {graph!r}: the official HD-GCN release defines "
            f"one only for NTU (graph 'ntu', 25 joints); its NW-UCLA hierarchy is not published "
            f"in source")
    table = HIERARCHIES[name]
    if com not in table:
        raise BenchmarkError(f"hdgcn: centre of mass must be one of {sorted(table)} "
                             f"(1-based joint), got {com}")
    return [[j - 1 for j in level] for level in table[com]]


def level_joints(graph: str, com: int = 21) -> list[list[int]]:
    """A-HA's joint set of each level pair: G_l followed by G_{l+1} (0-based)."""
    lv = levels(graph, com)
    return [lv[i] + lv[i + 1] for i in range(len(lv) - 1)]


def hierarchical_graph(graph: str, com: int = 21, num_node: int = 25) -> np.ndarray:
    """The (L, 3, V, V) float32 stack of [I, A_forward, A_reverse] per level pair."""
    lv = levels(graph, com)
    out = []
    for near, far in zip(lv[:-1], lv[1:]):
        out.append(np.stack([
            edge2mat([(j, j) for j in near + far], num_node),
            normalize_digraph(edge2mat([(j, k) for j in near for k in far], num_node)),
            normalize_digraph(edge2mat([(j, k) for j in far for k in near], num_node)),
        ]))
    # computed in float64 as the official, cast to float32 when it becomes the PA parameter
    return np.stack(out).astype(np.float32)
