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


# ------------------------------------------------------------------ class weights
def _check_counts(class_counts: torch.Tensor) -> torch.Tensor:
    n = torch.as_tensor(class_counts).double()
    if n.dim() != 1 or bool((n < 1).any()):
        raise ValueError(f"class counts must be a 1-D tensor of positive counts, "
                         f"got {class_counts}")
    return n


def cb_weights(class_counts: torch.Tensor, beta: float) -> torch.Tensor:
    """Class-balanced weights (Cui et al. 2019): (1 - beta) / (1 - beta^n_c), rescaled to sum C.

    beta = 0 gives all ones (the LDAM-DRW ``DRW`` rule builds its "no weight" phase this way).
    Computed in float64 (beta^n for beta = 0.9999 loses digits in float32).
    """
    n = _check_counts(class_counts)
    w = (1.0 - beta) / (1.0 - beta ** n)
    return (w / w.sum() * len(n)).float()


def power_weights(class_counts: torch.Tensor, power: float = 1.0) -> torch.Tensor:
    """w_c proportional to n_c^-power, rescaled to sum C (IB's ``IBReweight`` is power 1,
    GLMC's label weighting power q)."""
    n = _check_counts(class_counts)
    w = n ** -power
    return (w / w.sum() * len(n)).float()


# ------------------------------------------------------------------ reductions
def torch_weighted_mean(per_sample: torch.Tensor, sample_weight: torch.Tensor) -> torch.Tensor:
    """sum_i w_i l_i / sum_i w_i: the mean of ``F.cross_entropy(weight=...)``. The "TF-style"
    alternative is ``per_sample.mean()`` of already-weighted losses (the default reduction of
    ``tf.losses.softmax_cross_entropy`` in the official class-balanced loss)."""
    return (per_sample * sample_weight).sum() / sample_weight.sum()


# ------------------------------------------------------------------ per-sample losses
def focal_loss(logits: torch.Tensor, y: torch.Tensor, gamma: float,
               weight: torch.Tensor | None = None, weight_in_p: bool = True) -> torch.Tensor:
    """Softmax focal loss per sample, (1 - p)^gamma * ce (LDAM-DRW ``FocalLoss``; mean it).

    With class weights the official code computes ce = w_y CE first and then p = exp(-ce), so
    p = p_y^{w_y} (``weight_in_p=True``); ``weight_in_p=False`` uses the true p_y and multiplies
    the weight outside: w_y (1 - p_y)^gamma CE.
    """
    ce = F.cross_entropy(logits, y, reduction="none")
    if weight is None:
        return (1 - torch.exp(-ce)) ** gamma * ce
    w = weight.to(logits)[y]
    if weight_in_p:
        wce = w * ce
        return (1 - torch.exp(-wce)) ** gamma * wce
    return w * (1 - torch.exp(-ce)) ** gamma * ce


def ldam_margins(class_counts: torch.Tensor, max_m: float = 0.5) -> torch.Tensor:
    """LDAM margins m_c proportional to n_c^(-1/4), scaled so that max_c m_c = max_m."""
    m = _check_counts(class_counts) ** -0.25
    return (m * (max_m / m.max())).float()


def ldam_logits(logits: torch.Tensor, y: torch.Tensor, margins: torch.Tensor,
                s: float) -> torch.Tensor:
    """s * (z - m_y onehot(y)): the logits LDAM feeds to cross-entropy (``LDAMLoss``)."""
    onehot = F.one_hot(y, logits.shape[1]).to(logits)
    return s * (logits - margins.to(logits)[y].unsqueeze(1) * onehot)


def sigmoid_cb_loss(logits: torch.Tensor, y: torch.Tensor, weight: torch.Tensor,
                    gamma: float = 0.0) -> torch.Tensor:
    """Class-balanced sigmoid (gamma 0) / sigmoid focal loss per sample (Cui et al., TF code).

    Returns sum_c w_y * mod_c * BCE(z_c, onehot_c), with the official modulator
    exp(-gamma t z - gamma log(1 + e^-z)) = (1 - p_t)^gamma; the official reduction divides the
    batch sum by the number of positives, i.e. the batch mean of these values.
    """
    t = F.one_hot(y, logits.shape[1]).to(logits)
    bce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    if gamma:
        bce = torch.exp(-gamma * t * logits - gamma * F.softplus(-logits)) * bce
    return weight.to(logits)[y] * bce.sum(1)


def softmax_bce_cb_loss(logits: torch.Tensor, y: torch.Tensor,
                        weight: torch.Tensor) -> torch.Tensor:
    """The weight-balancing repo's ``CB_loss(loss_type="softmax")`` per sample: BCE between the
    softmax probabilities and the one-hot label, times w_y, averaged over classes (its batch
    mean is the official mean over B*C)."""
    t = F.one_hot(y, logits.shape[1]).to(logits)
    bce = F.binary_cross_entropy(logits.softmax(1), t, reduction="none")
    return weight.to(logits)[y] * bce.mean(1)


def influence_weights(logits: torch.Tensor, y: torch.Tensor, feat_l1: torch.Tensor,
                      alpha: float, eps: float = 1e-3) -> torch.Tensor:
    """IB weights alpha / (||softmax(z) - onehot(y)||_1 * ||h||_1 + eps) (Park et al. ``IBLoss``).

    Not detached: the official loss back-propagates through them.
    """
    g = (logits.softmax(1) - F.one_hot(y, logits.shape[1]).to(logits)).abs().sum(1)
    return alpha / (g * feat_l1.reshape(-1) + eps)
