"""The ``Method`` plugin API: one registered class per long-tailed method.

The harness (``benchmark.train``) owns the loop and never branches on a method's name.
Everything method-specific goes through the hooks of :class:`Method`, each with the plain
cross-entropy behaviour as its default:

    setup(ctx)                          precompute per-class tensors (priors, weights, tables)
    build_model(ctx, make_backbone)     wrap/extend the backbone (heads, experts, encoders)
    stages(ctx) -> [Stage]              multi-stage schedules, samplers, views, frozen parts
    on_stage_start(stage, model, ctx)   freeze/re-init, statistics passes
    on_epoch_start(epoch, model, ctx)   epoch-dependent switches (DRW, warm-ups, EMA gating)
    lr_factor(stage, epoch) -> float    multiplies the stage's lr of that epoch (IB's 0.01x phase)
    transform_batch(batch, model, ctx)  batch-level augmentation + targets (Mixup, ST-Mix, Shap-Mix)
    forward(model, batch, ctx) -> Out   default: one forward over the concatenated inputs
                                        (under DDP: calls of the model and of its own
                                        methods are DDP forwards, see benchmark.dist)
    loss(out, batch, ctx)               default: sum over input chunks of mean target-CE
    after_step(model, batch, out, ctx)  momentum updates, queues, projections
    on_epoch_end(epoch, model, ctx)     post-hoc weight changes, table syncs
    predict(model, x, ctx)              test-time logits (default: the model's logits)
    state_dict() / load_state_dict()    method state for checkpoints and resume

Hyper-parameters are a frozen dataclass ``HParams`` nested in the class, overridable with
``--set key=value``. Class metadata (``display_name``, ``family``, ``paper``, ``order``) drives
``python -m benchmark methods`` and table ordering.

Multi-process (DDP) runs: every hook runs on every rank with the same arguments except the
batch (each rank holds batch_size / world_size clips of the global batch). ``ctx.generator``
and the global RNGs are seeded identically on all ranks, so random decisions agree. Hooks
get the plain model; ``forward`` gets it wrapped (``benchmark.dist.DDPModel``): calling it or
one of its own methods (``model.all_heads(x)``) is a DDP forward whose gradients are averaged
over ranks; calling a submodule directly (``model.fc(h)``) is not. Anything a hook computes
from the batch and keeps (statistics, per-sample tables) must be synced with
``ctx.all_reduce_mean``; rank 0's method state is what the checkpoint holds, and the harness
checks after every epoch that the model replicas are identical.
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator, Sequence

import torch
from torch import nn

from .config import SCHEDULES
from .errors import BenchmarkError
from .hparams import apply_overrides
from .losses import cross_entropy, soft_cross_entropy
from .registry import Registry

# installed packages add methods through this entry-point group (benchmark.plugins)
METHODS: Registry[type["Method"]] = Registry("method", entry_points="ltskeleton.methods")


def register_method(name: str):
    """``@register_method("balanced_softmax")`` on a :class:`Method` subclass."""
    def deco(cls):
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise TypeError(f"{cls!r} is not a Method subclass")
        return METHODS.register(name)(cls)
    return deco


# ----------------------------------------------------------------------------- data types
@dataclass
class Target:
    """Labels of one input chunk: hard ``y``, or a pair ``(y, y_b)`` with the per-sample
    weight ``w_b`` on ``y_b`` (the fraction of the clip taken from the partner), or full
    soft labels ``probs``. Label weights always sum to 1 per sample."""

    y: torch.Tensor
    y_b: torch.Tensor | None = None
    w_b: torch.Tensor | None = None
    probs: torch.Tensor | None = None

    def per_sample(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                   logits: torch.Tensor) -> torch.Tensor:
        """Per-sample loss under this target: fn(z, y) for hard labels,
        (1 - w) fn(z, y) + w fn(z, y_b) for pairs, soft CE for soft labels."""
        if self.probs is not None:
            return soft_cross_entropy(logits, self.probs)
        if self.y_b is None:
            return fn(logits, self.y)
        w = self.w_b.to(logits.dtype).reshape(-1)
        return (1 - w) * fn(logits, self.y) + w * fn(logits, self.y_b)

    def as_probs(self, num_classes: int) -> torch.Tensor:
        if self.probs is not None:
            return self.probs
        p = torch.nn.functional.one_hot(self.y, num_classes).float()
        if self.y_b is not None:
            w = self.w_b.float().reshape(-1, 1)
            p = (1 - w) * p + w * torch.nn.functional.one_hot(self.y_b, num_classes).float()
        return p


@dataclass
class Batch:
    """One training step's data. ``inputs``/``targets`` are parallel lists: the default forward
    concatenates the inputs into one pass (BN statistics over all of them, as ST-Mix does)
    and the default loss sums the mean loss of each chunk under its target."""

    x: torch.Tensor               # (N, C, T, V, M) transformed clips (view 0)
    y: torch.Tensor               # (N,) labels
    index: torch.Tensor           # (N,) positions in the training subset
    views: list[torch.Tensor] = field(default_factory=list)  # further views (contrastive methods)
    aux: "Batch | None" = None    # a second batch from the stage's aux sampler
    inputs: list[torch.Tensor] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.inputs:
            self.inputs = [self.x]
            self.targets = [Target(self.y)]


@dataclass
class Out:
    """What a forward returns; ``chunks`` are the sizes of the concatenated inputs."""

    logits: torch.Tensor
    feat: torch.Tensor | None = None
    heads: dict[str, torch.Tensor] = field(default_factory=dict)
    chunks: list[int] = field(default_factory=list)

    def split(self, name: str = "logits") -> Sequence[torch.Tensor]:
        t = self.logits if name == "logits" else (self.feat if name == "feat" else self.heads[name])
        return torch.split(t, self.chunks or [len(t)])


@dataclass
class Stage:
    """One phase of training. ``trainable`` decides which parameters the optimizer updates
    (``None``: all); ``sampler`` names a registered sampler (``benchmark.data.samplers``).

    The lr is set once at the start of every epoch (as the official code): a linear warm-up
    over ``warmup_epochs`` to the stage lr, then ``schedule`` ``"step"`` (x lr_decay at each
    milestone) or ``"cosine"``: lr * (1 + cos(pi * (e - warmup) / (epochs - warmup))) / 2 for
    stage epoch e, i.e. per-epoch cosine annealing to 0 at the end of the stage (the last epoch
    still runs at a small positive lr; LTR-weight-balancing's scheduler, stepped at each
    epoch's start, is this shifted by one epoch). ``Method.lr_factor`` multiplies the result.
    """

    name: str = "train"
    epochs: int | None = None     # None: the train config's epochs
    lr: float | None = None       # None: the train config's base lr (scaled by batch size)
    milestones: tuple[int, ...] | None = None
    warmup_epochs: int | None = None
    schedule: str | None = None   # None: "step"; or "cosine" (per epoch, see above)
    weight_decay: float | None = None  # None: the train config's (SGD's coupled decay)
    trainable: Callable[[str], bool] | None = None
    sampler: str = "instance"
    sampler_kwargs: dict[str, Any] = field(default_factory=dict)
    aux_sampler: str | None = None
    aux_sampler_kwargs: dict[str, Any] = field(default_factory=dict)
    views: int = 1
    train: bool = True  # False: a statistics pass (test transform, transform_batch under no_grad)

    def __post_init__(self) -> None:
        if self.schedule not in (None, *SCHEDULES):
            raise BenchmarkError(f"stage {self.name!r}: schedule must be one of "
                                 f"{', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.weight_decay is not None and not self.weight_decay >= 0:
            raise BenchmarkError(f"stage {self.name!r}: weight_decay must be >= 0, got {self.weight_decay}")


@dataclass
class Context:
    """Read-only facts a method may use, built once per run by the harness."""

    num_classes: int
    class_counts: torch.Tensor    # (C,) training clips per class, class-index order
    total_epochs: int
    iters_per_epoch: int
    device: torch.device
    seed: int
    layout: Any                   # benchmark.data.skeleton.Layout (parts, bones, joints)
    batch_size: int
    # data statistics on demand, e.g. "raw_mean_clip": frames -> (C, frames, V, M) numpy mean of
    # the stored (untransformed) training clips' first frames (Shap-Mix's Shapley baseline)
    extras: dict[str, Any] = field(default_factory=dict)
    generator: torch.Generator | None = None  # the run's RNG for method-side randomness
    # the train config's schedule (a Stage may override it for itself)
    milestones: tuple[int, ...] = ()
    warmup_epochs: int = 0
    # DDP: batch_size is the GLOBAL batch; each rank's batches hold batch_size // world_size
    rank: int = 0
    world_size: int = 1
    comm: Any = field(default=None, repr=False)  # benchmark.dist.DistInfo (None: 1 process)
    window: int | None = None     # frames per training clip (the train config's window)

    def all_reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean of ``tensor`` over ranks, as a detached float copy (in 1 process: just the
        copy, so a method behaves the same with and without DDP). Every rank must call it."""
        if self.comm is not None:
            return self.comm.all_reduce_mean(tensor)
        t = tensor.detach()
        return t.clone() if t.is_floating_point() else t.double()

    @contextlib.contextmanager
    def _eval_mode(self, model: nn.Module) -> Iterator[None]:
        was = model.training
        model.eval()
        try:
            yield
        finally:
            model.train(was)

    def eval_forward(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Logits of an extra no-grad forward in eval mode (BN running stats untouched)."""
        with torch.no_grad(), self._eval_mode(model):
            return model(x)


# ------------------------------------------------------------------------------- the base
class Method:
    """Plain cross-entropy; every hook is overridable. Subclasses set the metadata below."""

    display_name: ClassVar[str] = "Method"
    family: ClassVar[str] = "baseline"
    paper: ClassVar[str] = ""
    order: ClassVar[int] = 1000
    registry_name: ClassVar[str] = ""

    @dataclass(frozen=True)
    class HParams:
        pass

    def __init__(self, hparams: Any = None):
        self.hp = hparams if hparams is not None else self.HParams()

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any]) -> "Method":
        return cls(apply_overrides(cls.HParams(), overrides, f"method {cls.registry_name}"))

    # hooks -------------------------------------------------------------------------
    def setup(self, ctx: Context) -> None:
        pass

    @classmethod
    def schedule_hparams(cls, epochs: int) -> dict[str, Any]:
        """Hyper-parameters a suite sets for a schedule of ``epochs`` epochs, where the method
        counts in absolute epochs but means a share of the official 100 ({}: none)."""
        return {}

    def build_model(self, ctx: Context, make_backbone: Callable[[], nn.Module]) -> nn.Module:
        return make_backbone()

    def stages(self, ctx: Context) -> list[Stage]:
        return [Stage()]

    def on_stage_start(self, stage: Stage, model: nn.Module, ctx: Context) -> None:
        pass

    def on_epoch_start(self, epoch: int, model: nn.Module, ctx: Context) -> None:
        pass

    def lr_factor(self, stage: Stage, epoch: int) -> float:
        """Multiplier on the lr of stage epoch ``epoch`` (pure function of its arguments, so a
        resumed run sets the same lr); also scales SGD's coupled weight decay step."""
        return 1.0

    def transform_batch(self, batch: Batch, model: nn.Module, ctx: Context) -> Batch:
        return batch

    def forward(self, model: nn.Module, batch: Batch, ctx: Context) -> Out:
        x = batch.inputs[0] if len(batch.inputs) == 1 else torch.cat(batch.inputs)
        logits, feat = model(x, return_feat=True)
        return Out(logits, feat, chunks=[len(i) for i in batch.inputs])

    def per_sample_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The loss of hard labels, (N,); pairs and soft labels are built from it."""
        return cross_entropy(logits, y)

    def loss(self, out: Out, batch: Batch, ctx: Context) -> tuple[torch.Tensor, dict[str, float]]:
        total = out.logits.new_zeros(())
        logs: dict[str, float] = {}
        for k, (logits, target) in enumerate(zip(out.split(), batch.targets)):
            term = target.per_sample(self.per_sample_loss, logits).mean()
            logs[f"loss{k}"] = float(term.detach())
            total = total + term
        return total, logs

    def after_step(self, model: nn.Module, batch: Batch, out: Out, ctx: Context) -> None:
        pass

    def on_epoch_end(self, epoch: int, model: nn.Module, ctx: Context) -> None:
        pass

    def predict(self, model: nn.Module, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        return model(x)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise BenchmarkError(f"method {self.registry_name} has no state, got keys {sorted(state)}")


def build_method(name: str, overrides: dict[str, Any] | None = None) -> Method:
    """Instantiate a registered method with ``--set`` overrides (unknown keys are errors)."""
    import methods  # noqa: F401  (registers every method)

    return METHODS.get(name).from_overrides(overrides or {})


def hparams_dict(method: Method) -> dict[str, Any]:
    return dataclasses.asdict(method.hp)
