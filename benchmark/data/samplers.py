"""Index samplers over a training subset: instance, class-balanced and random over-sampling.

Follows the official samplers: plain shuffling (``DataLoader(shuffle=True)`` /
``DistributedSampler``), Shap-Mix's ``feeders/feeder_ntu.py:Feeder_LT_ros`` with
``class_balance: True`` (class = shuffled position mod C, then a uniform sample of that class)
and with ``class_balance: False`` (every class topped up to the largest class count by drawing
extra copies with replacement, once, then shuffled every epoch).

A sampler yields positions 0..len(labels)-1 into the subset it was built on. Epoch e's global
order is a pure function of (seed, epoch) -- never of the call history -- so a run resumed at
epoch e replays exactly the order an uninterrupted run would have used (the official workers
re-seed by worker id instead). With ``world_size > 1`` every rank computes the same
global order, pads it by wrap-around to a multiple of ``world_size`` and takes every
``world_size``-th element starting at ``rank`` (``torch.utils.data.DistributedSampler``).
"""
from __future__ import annotations

import abc

import logging
from typing import Iterator, Sequence

import numpy as np

from ..registry import Registry

log = logging.getLogger(__name__)

SAMPLERS: Registry = Registry("sampler")

# Stream ids keep the RNGs of different purposes independent for the same (seed, epoch).
_EPOCH_ORDER, _ROS_EXTRAS = 1, 2
TRANSFORM_STREAM = 3  # used by the loader for its per-epoch transform generator


def derive_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed that is a pure function of (seed, keys), e.g. (seed, purpose, epoch).

    Uses NumPy's SeedSequence, so (seed=0, epoch=1) and (seed=1, epoch=0) do not collide the
    way ``seed + epoch`` (DistributedSampler) does.
    """
    if seed < 0 or any(k < 0 for k in keys):
        raise ValueError(f"seeds and keys must be non-negative, got {seed}, {keys}")
    state = np.random.SeedSequence([seed, *keys]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


class IndexSampler(abc.ABC):
    """Base class: subclasses implement :meth:`global_order` (all ranks, one epoch)."""

    def __init__(self, labels: Sequence[int] | np.ndarray, seed: int = 0, rank: int = 0,
                 world_size: int = 1):
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.size == 0:
            raise ValueError(f"labels must be a non-empty 1-D array, got shape {labels.shape}")
        if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
            raise ValueError("labels must be non-negative integers")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        self.labels = labels.astype(np.int64)
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        if epoch < 0:
            raise ValueError(f"epoch must be non-negative, got {epoch}")
        self.epoch = int(epoch)

    @abc.abstractmethod
    def global_length(self) -> int:
        """Length of one epoch's global order (before padding for ranks)."""

    @abc.abstractmethod
    def global_order(self, epoch: int) -> np.ndarray:
        """Positions visited in ``epoch`` across all ranks (int64)."""

    def epoch_rng(self, epoch: int) -> np.random.Generator:
        return _rng(self.seed, _EPOCH_ORDER, epoch)

    def indices(self, epoch: int | None = None) -> np.ndarray:
        """This rank's positions for ``epoch`` (default: the epoch set by :meth:`set_epoch`)."""
        order = self.global_order(self.epoch if epoch is None else epoch)
        if self.world_size == 1:
            return order
        # wrap-around padding (np.resize repeats the array) so every rank gets the same count
        padded = np.resize(order, len(self) * self.world_size)
        return padded[self.rank::self.world_size]

    def __len__(self) -> int:
        return -(-self.global_length() // self.world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(n={len(self.labels)}, seed={self.seed}, "
                f"rank={self.rank}/{self.world_size}, epoch={self.epoch})")


def _class_members(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(classes present, their counts, positions grouped by class in ascending order)."""
    classes, counts = np.unique(labels, return_counts=True)
    grouped = np.argsort(labels, kind="stable")
    return classes, counts, grouped


@SAMPLERS.register("instance")
class InstanceSampler(IndexSampler):
    """A fresh random permutation of the subset every epoch (official LT training)."""

    def global_length(self) -> int:
        return len(self.labels)

    def global_order(self, epoch: int) -> np.ndarray:
        return self.epoch_rng(epoch).permutation(len(self.labels)).astype(np.int64)


@SAMPLERS.register("sequential")
class SequentialSampler(IndexSampler):
    """0..n-1 in order (evaluation); sharded like the others under DDP."""

    def global_length(self) -> int:
        return len(self.labels)

    def global_order(self, epoch: int) -> np.ndarray:
        return np.arange(len(self.labels), dtype=np.int64)


@SAMPLERS.register("class_balanced")
class ClassBalancedSampler(IndexSampler):
    """Each draw picks a class uniformly, then a sample of that class uniformly.

    Args:
        epoch_factor: epoch length = round(epoch_factor * len(labels)). Default 1 (one pass's
            worth of iterations); ``Feeder_LT_ros(class_balance=True)`` uses 4.
        class_draw: ``"cyclic"`` (official) gives draw k the class ``perm[k] mod C`` of a fresh
            permutation, so each class appears floor or ceil(length / C) times per epoch;
            ``"iid"`` draws every class independently and uniformly.
    Classes are those present in ``labels``; sampling within a class is with replacement.
    """

    def __init__(self, labels, seed: int = 0, rank: int = 0, world_size: int = 1,
                 epoch_factor: float = 1.0, class_draw: str = "cyclic"):
        super().__init__(labels, seed, rank, world_size)
        if class_draw not in ("cyclic", "iid"):
            raise ValueError(f"class_draw must be 'cyclic' or 'iid', got {class_draw!r}")
        if epoch_factor <= 0:
            raise ValueError(f"epoch_factor must be positive, got {epoch_factor}")
        self.class_draw = class_draw
        self.length = max(1, int(round(epoch_factor * len(self.labels))))
        self.classes, self.counts, self.grouped = _class_members(self.labels)
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)[:-1]])

    def global_length(self) -> int:
        return self.length

    def global_order(self, epoch: int) -> np.ndarray:
        rng = self.epoch_rng(epoch)
        n_cls = len(self.classes)
        if self.class_draw == "cyclic":
            cls = rng.permutation(self.length) % n_cls
        else:
            cls = rng.integers(0, n_cls, self.length)
        within = rng.integers(0, self.counts[cls])  # vectorised: one upper bound per draw
        return self.grouped[self.offsets[cls] + within].astype(np.int64)


@SAMPLERS.register("ros")
class RandomOverSampler(IndexSampler):
    """Random over-sampling: every class topped up to n_max = the largest class count.

    As ``Feeder_LT_ros(class_balance=False)``: all originals are kept once and each class c
    gets n_max - n_c extra copies drawn with replacement from its own samples; the pool has
    C * n_max entries and is shuffled every epoch. The extras are drawn once from ``seed``
    (official: once at start-up); ``redraw_each_epoch=True`` re-draws them every epoch.
    """

    def __init__(self, labels, seed: int = 0, rank: int = 0, world_size: int = 1,
                 redraw_each_epoch: bool = False):
        super().__init__(labels, seed, rank, world_size)
        self.redraw_each_epoch = bool(redraw_each_epoch)
        self.classes, self.counts, self.grouped = _class_members(self.labels)
        self.n_max = int(self.counts.max())
        self._fixed_pool = None if self.redraw_each_epoch else self._pool(_rng(self.seed, _ROS_EXTRAS))
        log.debug("ROS: %d classes topped up to %d -> %d draws per epoch (%d extra copies)",
                  len(self.classes), self.n_max, self.global_length(),
                  self.global_length() - len(self.labels))

    def _pool(self, rng: np.random.Generator) -> np.ndarray:
        extra = np.repeat(np.arange(len(self.classes)), self.n_max - self.counts)
        offsets = np.concatenate([[0], np.cumsum(self.counts)[:-1]])
        within = rng.integers(0, self.counts[extra])
        picks = self.grouped[offsets[extra] + within]
        return np.concatenate([np.arange(len(self.labels)), picks]).astype(np.int64)

    def global_length(self) -> int:
        return len(self.classes) * self.n_max

    def global_order(self, epoch: int) -> np.ndarray:
        rng = self.epoch_rng(epoch)
        pool = self._pool(rng) if self._fixed_pool is None else self._fixed_pool
        return pool[rng.permutation(len(pool))]


class RepeatedSampler(IndexSampler):
    """A sampler over the training subset repeated ``repeat`` times, positions mapped back.

    CTR-GCN's NW-UCLA feeder (``repeat: 5``) is a dataset of n * repeat items whose item i is
    clip i mod n; its loader shuffles all n * repeat of them together. Here the named sampler
    is built over the repeated labels (clip p appears as p, p + n, ...), so each sampler keeps
    its own semantics on that dataset (``instance``: one permutation of the n * repeat items,
    every clip exactly ``repeat`` times per epoch; ``class_balanced`` and ``ros``: epochs
    ``repeat`` times as long with the same class and clip probabilities), and its positions
    are reported mod n: methods see positions of the subset, as without repetition.
    """

    def __init__(self, inner: IndexSampler, n: int, repeat: int):
        super().__init__(inner.labels[:n], inner.seed, inner.rank, inner.world_size)
        self.inner, self.n, self.repeat = inner, int(n), int(repeat)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.inner.set_epoch(epoch)

    def global_length(self) -> int:
        return self.inner.global_length()

    def global_order(self, epoch: int) -> np.ndarray:
        return self.inner.global_order(epoch) % self.n

    def indices(self, epoch: int | None = None) -> np.ndarray:
        return np.asarray(self.inner.indices(self.epoch if epoch is None else epoch)) % self.n

    def __len__(self) -> int:
        return len(self.inner)


def build_sampler(name: str, labels, seed: int = 0, rank: int = 0, world_size: int = 1,
                  repeat: int = 1, **kwargs) -> IndexSampler:
    """``SAMPLERS.build`` with the common arguments spelled out; ``repeat`` > 1 wraps it in a
    :class:`RepeatedSampler` (``TrainConfig.repeat``)."""
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"repeat must be an integer >= 1, got {repeat!r}")
    if repeat == 1:
        return SAMPLERS.build(name, labels, seed=seed, rank=rank, world_size=world_size, **kwargs)
    labels = np.asarray(labels)
    inner = SAMPLERS.build(name, np.tile(labels, repeat), seed=seed, rank=rank,
                           world_size=world_size, **kwargs)
    return RepeatedSampler(inner, len(labels), repeat)
