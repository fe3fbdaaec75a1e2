"""The spatial graph of CTR-GCN (Chen et al., ICCV 2021): ``A = [I, A_in, A_out]``, shape (3, V, V).

Same construction as the official ``graph/tools.py:get_spatial_graph`` (Uason-Chen/CTR-GCN):
``edge2mat`` puts a 1 at ``[parent, child]`` for every inward (child, parent) link, and
``normalize_digraph`` divides every column by its sum (empty columns stay zero). The self-link
matrix is the plain identity. The edges come from :data:`benchmark.data.skeleton.LAYOUTS`, so
the model and the data pipeline cannot disagree about the skeleton.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from ..data.skeleton import LAYOUTS, get_layout
from ..errors import BenchmarkError

# The official model names its graphs by dataset; the data layer names layouts by joint count.
GRAPH_ALIASES = {"ntu": "ntu25", "ucla": "ucla20", "coco17": "coco17"}


def edge2mat(links: Iterable[tuple[int, int]], num_nodes: int) -> np.ndarray:
    """Adjacency with ``A[j, i] = 1`` for every link ``(i, j)``: column i lists i's neighbours."""
    a = np.zeros((num_nodes, num_nodes))
    for i, j in links:
        a[j, i] = 1
    return a


def normalize_digraph(a: np.ndarray) -> np.ndarray:
    """Divide each column by its sum; columns summing to 0 stay 0 (float64, like the official)."""
    col = a.sum(0)
    scale = np.divide(1.0, col, out=np.zeros_like(col), where=col > 0)
    return a * scale[None, :]


def layout_name(graph: str) -> str:
    """Map a graph name ('ntu', 'ucla', 'coco17', or a layout name such as 'ntu25') to a layout."""
    name = GRAPH_ALIASES.get(graph, graph)
    if name not in LAYOUTS:
        known = sorted(set(GRAPH_ALIASES) | set(LAYOUTS))
        raise BenchmarkError(f"unknown graph {graph!r} (have: {', '.join(known)})")
    return name


def spatial_graph(graph: str) -> np.ndarray:
    """The (3, V, V) float32 stack [I, A_in, A_out] for a named skeleton graph.

    Args:
        graph: 'ntu' (25 joints), 'ucla' (20), 'coco17' (17), or a layout name from
            ``benchmark.data.skeleton.LAYOUTS``.
    """
    layout = get_layout(layout_name(graph))
    v = layout.num_joints
    inward = list(layout.edges)
    outward = [(j, i) for i, j in inward]
    a = np.stack([
        edge2mat([(i, i) for i in range(v)], v),
        normalize_digraph(edge2mat(inward, v)),
        normalize_digraph(edge2mat(outward, v)),
    ])
    # Official: computed in float64, cast to float32 when it becomes the PA parameter.
    return a.astype(np.float32)


# PYSKL's 'nturgb+d' layout (pyskl/utils/graph.py, copied by Shap-Mix as graph/ntu_stgcn_pp.py),
# 1-based (child, parent). It differs from CTR-GCN's NTU graph at the hands: PYSKL links both
# hand tips and thumbs to the hand (22->8, 23->8, 24->12, 25->12), CTR-GCN chains them
# (22->23->8, 24->25->12). Its 'coco' layout is our coco17 edge list.
PYSKL_NTU_EDGES = tuple((i - 1, j - 1) for i, j in [
    (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9),
    (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18),
    (20, 19), (22, 8), (23, 8), (24, 12), (25, 12),
])


def pyskl_spatial_graph(graph: str) -> np.ndarray:
    """PYSKL ``Graph(layout, mode='spatial').A`` (ST-GCN++ in PYSKL and Shap-Mix): the same
    [I, A_in, A_out] construction as :func:`spatial_graph`, on PYSKL's NTU edges for 'ntu'
    (25 joints) and on our layouts' edges otherwise ('coco17' = PYSKL's 'coco'; NW-UCLA, which
    PYSKL lacks, on the CTR-GCN edges)."""
    name = layout_name(graph)
    if name != "ntu25":
        return spatial_graph(name)
    v = get_layout(name).num_joints
    return np.stack([
        edge2mat([(i, i) for i in range(v)], v),
        normalize_digraph(edge2mat(PYSKL_NTU_EDGES, v)),
        normalize_digraph(edge2mat([(j, i) for i, j in PYSKL_NTU_EDGES], v)),
    ]).astype(np.float32)


# InfoGCN's graphs (stnoah1/infogcn graph/ntu_rgb_d.py, graph/ucla.py), its 1-based "inward"
# lists (i, j). Its NTU tree is CTR-GCN's edge set rooted at joint 2 (spine mid) instead of 21:
# every pair is (parent, child). Its NW-UCLA list is CTR-GCN's (child, parent) list as is.
INFOGCN_EDGES = {
    "ntu25": tuple((i - 1, j - 1) for i, j in [
        (2, 1), (2, 21), (21, 3), (3, 4), (21, 5), (5, 6), (6, 7), (7, 8), (8, 23), (23, 22),
        (21, 9), (9, 10), (10, 11), (11, 12), (12, 25), (25, 24), (1, 13), (13, 14), (14, 15),
        (15, 16), (1, 17), (17, 18), (18, 19), (19, 20),
    ]),
    "ucla20": tuple((i - 1, j - 1) for i, j in [
        (1, 2), (2, 3), (4, 3), (5, 3), (6, 5), (7, 6), (8, 7), (9, 3), (10, 9), (11, 10),
        (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19),
    ]),
}


def infogcn_outward(graph: str) -> np.ndarray:
    """InfoGCN's ``Graph.A_outward_binary``: (V, V) float32, ``A[j, i] = 1`` for every pair
    (i, j) of its inward list, so ``(I - A) x`` is x[j] - x[i] (on NTU: each joint relative to
    its parent, the root kept). Graphs 'ntu' and 'ucla' (InfoGCN has no other)."""
    name = layout_name(graph)
    if name not in INFOGCN_EDGES:
        raise BenchmarkError(f"infogcn has no graph {graph!r} (official: ntu, ucla)")
    a = np.zeros((get_layout(name).num_joints,) * 2, dtype=np.float32)
    for i, j in INFOGCN_EDGES[name]:
        a[j, i] = 1
    return a
