"""The spatial graph of CTR-GCN (Chen et al., ICCV 2021): ``A = [I, A_in, A_out]``, shape (3, V, V).

Same construction as the official ``graph/tools.py:get_spatial_graph`` (spec_shapmix_ctrgcn.md
§1.2): ``edge2mat`` puts a 1 at ``[parent, child]`` for every inward (child, parent) link, and
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
