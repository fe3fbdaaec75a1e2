"""Loss primitives shared by methods: pure functions, reduction explicit, tested on fixed inputs.

Each method composes these; none reads files or globals (class counts arrive as tensors).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def log_prior(class_counts: torch.Tensor, tau: float = 1.0, eps: float = 1e-12) -> torch.Tensor:
    """tau * log(pi_c) as the official ``LogitAdjust`` computes it: log(pi^tau + 1e-12).

    With tau = 1 this equals Balanced Softmax's log n_c up to a constant, so both losses agree.
    """
    prior = class_counts.double() / class_counts.sum()
    return torch.log(prior ** tau + eps).float()


def soft_cross_entropy(logits: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """Per-sample -sum_c p_c log softmax(z)_c, shape (N,)."""
    return -(probs * F.log_softmax(logits, dim=1)).sum(dim=1)


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample CE, shape (N,)."""
    return F.cross_entropy(logits, y, reduction="none")
