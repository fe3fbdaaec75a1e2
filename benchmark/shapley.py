"""Exact Shapley values of Shap-Mix's five body parts (Shap-Mix's ``shapley_value.py``).

The game: players = the layout's 5 parts P0..P4; for a class c and clips x_1..x_N of it,

    v(S) = mean_i softmax(model(x_i^S))[c],   x_i^S = baseline with x_i's real coordinates at
                                               the joints of the parts in S (all frames,
                                               coordinates, persons)

with the eval-mode model on raw logits, i.e. exactly the online estimator's value function
(``methods.shapmix.coalition_inputs``). All 2^5 = 32 coalitions x N clips are evaluated in
ceil(32 N / batch_size) no-grad forwards.

Returned (:class:`ExactShapley`):
- ``parts`` (5,): the Shapley value of each part, sum over S not containing p of
  |S|! (n-|S|-1)! / n! (v(S u {p}) - v(S)), n = 5; efficiency: sum = v(all) - v(empty).
- ``combos`` (20,): each combination T's value "as the estimator defines it": the merged
  player T in the reduced (6-|T|)-player game (``methods.shapmix.exact_combination_values``),
  which is the expectation of the online estimate v(S u T) - v(S) under its coalition sampling
  (|S| ~ U{0..5-|T|}, S uniform of that size). ``combos_clipped``: the same with the per-clip
  ReLU (the expectation of the official clipped update); ``combos_table``: the clipped value
  on the table's scale, 10 / joints(T) times it (the EMA's fixed point at these weights,
  post-warm-up estimator).
All are means over the N clips (Shapley values are linear in v, so the mean of per-clip
values equals the value of the mean game; the ReLU is applied per clip, as online).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from methods._precision import fp32
from methods.shapmix import (COMBOS, N_PARTS, exact_combination_values,
                             parts_joint_mask)

ValueFn = Callable[[frozenset], torch.Tensor]

# every coalition of the 5 parts, by size then itertools order (index 0 = empty, 31 = all)
COALITIONS: tuple[frozenset, ...] = tuple(frozenset(S) for s in range(N_PARTS + 1)
                                          for S in itertools.combinations(range(N_PARTS), s))


def shapley_values(value_fn: ValueFn, n: int = N_PARTS) -> torch.Tensor:
    """Exact Shapley value of each of the ``n`` players of the game ``value_fn(frozenset)``
    (returning a tensor, e.g. per-clip values). Returns (n, ...)."""
    out = []
    for p in range(n):
        others = [q for q in range(n) if q != p]
        acc = 0.0
        for s in range(n):
            w = math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n)
            for S in itertools.combinations(others, s):
                S = frozenset(S)
                acc = acc + w * (torch.as_tensor(value_fn(S | {p})) - torch.as_tensor(value_fn(S)))
        out.append(torch.as_tensor(acc))
    return torch.stack(out)


def coalition_masks(layout_parts: Sequence[Sequence[int]], V: int) -> torch.Tensor:
    """(32, V) bool joint masks of :data:`COALITIONS`."""
    return torch.stack([parts_joint_mask(layout_parts, tuple(S), V) for S in COALITIONS])


@torch.no_grad()
def coalition_values(model: torch.nn.Module | Callable, x: torch.Tensor, y: torch.Tensor | int,
                     baseline: torch.Tensor, layout_parts: Sequence[Sequence[int]],
                     batch_size: int = 256) -> torch.Tensor:
    """(32, N) per-clip values softmax(model(x^S))[y] for every coalition S of
    :data:`COALITIONS`. ``model`` is put in eval mode for the call (restored after); a plain
    callable (logits of a batch) is used as is. ``y``: a class for all clips or (N,) labels.
    The forwards run in fp32 (fp32 inputs, autocast off), inside an autocast region too."""
    N, V = x.shape[0], x.shape[3]
    y = torch.as_tensor(y, device=x.device).expand(N) if torch.as_tensor(y).dim() == 0 else y.to(x.device)
    masks = coalition_masks(layout_parts, V).to(x.device)
    x = x.float()
    base = baseline.to(x)
    is_module = isinstance(model, torch.nn.Module)
    was = model.training if is_module else None
    if is_module:
        model.eval()
    try:
        # flat index j = coalition * N + clip; chunks of batch_size inputs per forward
        out = torch.empty(len(COALITIONS) * N, dtype=torch.float64)
        for start in range(0, len(out), batch_size):
            j = torch.arange(start, min(start + batch_size, len(out)))
            k, i = j // N, j % N
            inp = torch.where(masks[k].view(len(j), 1, 1, V, 1), x[i], base.unsqueeze(0))
            with fp32(x.device):
                logits = model(inp)
            prob = torch.softmax(logits.double(), dim=1)
            out[j] = prob[torch.arange(len(j)), y[i]].cpu()
    finally:
        if is_module:
            model.train(was)
    return out.view(len(COALITIONS), N)


def value_fn_of(values: torch.Tensor) -> ValueFn:
    """The game of a (32, ...) table of :func:`coalition_values`."""
    index = {S: k for k, S in enumerate(COALITIONS)}
    return lambda S: values[index[frozenset(S)]]


@dataclass
class ExactShapley:
    parts: torch.Tensor           # (5,) Shapley value per part
    combos: torch.Tensor          # (20,) merged-player value per combination (COMBOS order)
    combos_clipped: torch.Tensor  # (20,) E[ReLU(v(S u T) - v(S))], per clip then mean
    combos_table: torch.Tensor    # (20,) 10 combos_clipped / joints(T): the table's scale
    values: torch.Tensor          # (32,) v(S) (mean over clips), COALITIONS order
    n_clips: int

    @property
    def v_all(self) -> float:
        return float(self.values[-1])

    @property
    def v_empty(self) -> float:
        return float(self.values[0])

    def to_dict(self) -> dict:
        return {"parts": self.parts.tolist(), "combos": self.combos.tolist(),
                "combos_clipped": self.combos_clipped.tolist(),
                "combos_table": self.combos_table.tolist(), "v_all": self.v_all,
                "v_empty": self.v_empty, "n_clips": self.n_clips}


def exact_from_values(values: torch.Tensor, part_sizes: Sequence[int]) -> ExactShapley:
    """:class:`ExactShapley` of a (32, N) per-clip coalition-value table."""
    fn = value_fn_of(values)
    parts = shapley_values(fn).mean(-1)
    combos = exact_combination_values(fn).mean(-1)
    clipped = exact_combination_values(fn, clip=True).mean(-1)
    joints = torch.tensor([sum(part_sizes[p] for p in T) for T in COMBOS], dtype=clipped.dtype)
    return ExactShapley(parts, combos, clipped, 10.0 * clipped / joints, values.mean(-1),
                        int(values.shape[-1]))


def exact_shapley(model: torch.nn.Module | Callable, x: torch.Tensor, c: int,
                  baseline: torch.Tensor, layout_parts: Sequence[Sequence[int]],
                  batch_size: int = 256) -> ExactShapley:
    """Exact part Shapley values and combination values of class ``c`` on clips ``x``
    (N, C, T, V, M), baseline (C, T, V, M) (see the module docstring)."""
    values = coalition_values(model, x, int(c), baseline, layout_parts, batch_size)
    return exact_from_values(values, [len(p) for p in layout_parts])
