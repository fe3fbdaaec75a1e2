"""Shared training hyper-parameters (``TrainConfig``) and named schedule profiles.

Defaults are the official CTR-GCN / Shap-Mix settings (their configs; CTR-GCN's ``main.py``
``load_optimizer`` / ``adjust_learning_rate``): SGD with Nesterov momentum 0.9, weight decay
4e-4 on ALL parameters, base lr 0.1 at batch 64, a 5-epoch linear warm-up set once per epoch
(0.02, 0.04, ... 0.1), then x0.1 at each milestone, window 64, joint stream, CTR-GCN with 64
base channels.

A profile is a named set of overrides on top of those defaults; ``--set key=value`` then
overrides single fields (unknown keys fail, values are type-checked by ``benchmark.hparams``):

    lt        100 epochs, decay at 60/80   (Shap-Mix long-tailed NTU config)
    balanced   65 epochs, decay at 35/55   (CTR-GCN balanced NTU config)
    ucla       65 epochs, decay at 50, batch 16 at lr 0.1, wd 1e-4 (CTR-GCN NW-UCLA config)
    cpu        short CPU schedule for real method comparisons on synth / NW-UCLA in minutes
    quick      the CPU-sized schedule of ``make benchmark`` on synth: every suite on 2 cores
    smoke      3 tiny epochs with capped steps: checks the whole pipeline in seconds
    k400       70 epochs, batch 80 at lr 0.1, wd 5e-4, per-iteration cosine to 0.001 x lr,
               100-frame clips (Shap-Mix's Kinetics-400 config)

Precision: the official code trains in fp32, so the paper profiles (``lt``, ``balanced``,
``ucla``) set ``amp="off"``; ``--set amp=bf16`` (or fp16) opts in to CUDA autocast. The
field's default stays ``"bf16"`` for the CPU-sized profiles (``cpu``, ``quick``, ``smoke``),
where it is ignored on CPU (the harness autocasts on CUDA only) and buys speed on a GPU.
Whatever the training precision, the forwards that compute a method's own numbers (Shap-Mix's
coalition values and Grad-CAM guidance, FSA's statistics and CAMs) run in fp32
(``methods._precision.fp32``).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from .errors import BenchmarkError
from .hparams import apply_overrides

AMP_MODES = ("bf16", "fp16", "off")


def _f(default: Any, help: str) -> Any:
    """A field with its one-line meaning (``python -m benchmark config`` prints it)."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrainConfig:
    # schedule (``adjust_learning_rate``; configs/*.yaml of CTR-GCN and Shap-Mix)
    epochs: int = _f(100, "training epochs over all stages")  # Shap-Mix LT config num_epoch
    milestones: tuple[int, ...] = _f((60, 80), "epochs where the lr is multiplied by lr_decay")  # step
    lr_decay: float = _f(0.1, "lr factor at each milestone")  # lr_decay_rate
    warmup_epochs: int = _f(5, "linear lr warm-up epochs (lr set once per epoch)")  # warm_up_epoch
    base_lr: float = _f(0.1, "peak lr at ref_batch_size")  # base_lr
    ref_batch_size: int = _f(64, "lr = base_lr * batch_size / ref_batch_size (linear scaling)")
    # optimiser (Processor.load_optimizer)
    momentum: float = _f(0.9, "SGD momentum")
    nesterov: bool = _f(True, "Nesterov momentum")
    weight_decay: float = _f(4e-4, "SGD weight decay, on every parameter (BN and biases included)")
    # data
    batch_size: int = _f(64, "training batch, global: split evenly over DDP ranks")  # official 2x32
    test_batch_size: int = _f(64, "test batch (memory only: no effect on results)")
    window: int = _f(64, "frames per clip after the crop-and-resize transform")  # window_size (NTU)
    stream: str = _f("j", "input stream: j (joints), b (bones), jm / bm (their motion)")
    drop_last: bool = _f(True, "drop the last incomplete training batch")  # official loader
    # each training clip `repeat` times per epoch (CTR-GCN's NW-UCLA feeder: repeat 5, the
    # dataset's length times 5, index mod length); every sampler sees the repeated dataset
    repeat: int = _f(1, "each training clip this many times per epoch (official NW-UCLA: 5)")
    # model
    backbone: str = _f("ctrgcn", "registered backbone (the run spec's --backbone wins)")
    base_channel: int = _f(64, "backbone width (channels of the first block)")
    # test-set evaluation after every n-th epoch (counted over all stages) and always after the
    # last one; 0: after the last one only (the reported number is the last epoch's either way)
    eval_every: int = _f(1, "test every n-th epoch (0: after the last only; the last always)")
    # budget caps (None = full); for smoke tests only, never for reported numbers
    max_steps_per_epoch: int | None = _f(None, "cap on steps per epoch (smoke tests only)")
    max_test_clips: int | None = _f(None, "cap on test clips: the first ceil(n / C) of each "
                                             "class (smoke tests only)")
    # device-side
    # autocast dtype on CUDA (bf16 | fp16 | off); ignored on CPU. "off" (fp32, official) in
    # the lt / balanced / ucla profiles; this default serves the CPU-sized ones (docstring)
    amp: str = _f("bf16", "CUDA autocast dtype: bf16 | fp16 | off (fp32); ignored on CPU")
    # torch.compile the training forward (off: on CPU it makes our hand-tuned step slower and
    # costs a minute of compilation per run; on CUDA measure it with scripts/bench_epoch.py)
    compile: bool = _f(False, "torch.compile the training forward")
    # DDP only: let a method leave trainable parameters unused in a step (costs one autograd
    # graph traversal per step; off as in the official DDP script)
    ddp_find_unused: bool = _f(False, "DDP: allow trainable parameters unused in a step")
    # Shap-Mix's Kinetics-400 recipe (``config/k400.yaml``, ``shapley_mix_main_k400.py``);
    # config_dict leaves these out at their defaults (ADDED_FIELDS), so the runs stored
    # before they existed keep their ids
    schedule: str = _f("step", "lr after warm-up: step (x lr_decay at milestones), cosine / "
                               "cosine_shifted (per epoch, to 0), cosine_iter (per iteration, to "
                               "min_lr_ratio x lr)")
    min_lr_ratio: float = _f(0.0, "cosine_iter: the final lr as a fraction of the peak "
                                  "(Shap-Mix K400: 0.001)")
    test_clips: int = _f(0, "COCO-17 (PYSKL) stores: 0 = one random test clip per video "
                            "(official Shap-Mix), k = PYSKL's k uniform test clips, averaged")

    def __post_init__(self) -> None:
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise BenchmarkError(f"train config: {what}")

        need(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        need(self.batch_size >= 1 and self.test_batch_size >= 1, "batch sizes must be >= 1")
        need(self.ref_batch_size >= 1, "ref_batch_size must be >= 1")
        need(self.base_lr > 0, f"base_lr must be > 0, got {self.base_lr}")
        need(self.warmup_epochs >= 0, "warmup_epochs must be >= 0")
        need(list(self.milestones) == sorted(self.milestones), f"milestones must be ascending, got {self.milestones}")
        need(self.stream in ("j", "b", "jm", "bm"), f"stream must be j, b, jm or bm, got {self.stream!r}")
        need(self.amp in AMP_MODES, f"amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}")
        need(self.window >= 1 and self.base_channel >= 1, "window and base_channel must be >= 1")
        need(self.eval_every >= 0, f"eval_every must be >= 0, got {self.eval_every}")
        need(self.repeat >= 1, f"repeat must be >= 1, got {self.repeat}")
        need(self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}, "
                                         f"got {self.schedule!r}")
        need(0.0 <= self.min_lr_ratio < 1.0, f"min_lr_ratio must be in [0, 1), got "
                                             f"{self.min_lr_ratio}")
        need(self.test_clips >= 0, f"test_clips must be >= 0, got {self.test_clips}")
        for k in ("max_steps_per_epoch", "max_test_clips"):
            v = getattr(self, k)
            need(v is None or v >= 1, f"{k} must be None or >= 1, got {v}")

    @property
    def lr(self) -> float:
        """The peak learning rate after linear batch-size scaling."""
        return self.base_lr * self.batch_size / self.ref_batch_size


def lr_at(epoch: int, lr: float, warmup_epochs: int, milestones: tuple[int, ...] | list[int],
          decay: float = 0.1) -> float:
    """The official ``adjust_learning_rate``: set once at the start of ``epoch`` (0-based).

    Warm-up: lr * (epoch + 1) / warmup for epoch < warmup; after that lr * decay ** (number
    of milestones <= epoch). No per-iteration warm-up, as in the official code.
    """
    if epoch < warmup_epochs:
        return lr * (epoch + 1) / warmup_epochs
    return lr * decay ** sum(epoch >= m for m in milestones)


SCHEDULES = ("step", "cosine", "cosine_shifted", "cosine_iter")  # cosine_iter: benchmark.train


def cosine_lr_at(epoch: int, lr: float, warmup_epochs: int, epochs: int, shift: int = 0) -> float:
    """Per-epoch cosine annealing to 0 after the same linear warm-up as :func:`lr_at`.

    lr * (1 + cos(pi * (epoch - warmup + shift) / (epochs - warmup))) / 2. ``shift`` 0
    (schedule ``"cosine"``): the peak at the first post-warm-up epoch, 0 at ``epochs`` (one past
    the last epoch), like ``CosineAnnealingLR`` (T_max = epochs - warmup, eta_min 0) stepped at
    each epoch's end. ``shift`` 1 (``"cosine_shifted"``): the same curve one epoch later, as a
    ``CosineAnnealingLR`` stepped at each epoch's START (LTR-weight-balancing's
    ``utils/trainval.py::train_model``): the first epoch already below the peak, the last at 0.
    """
    if epoch < warmup_epochs:
        return lr * (epoch + 1) / warmup_epochs
    span = max(1, epochs - warmup_epochs)
    t = min(epoch - warmup_epochs + shift, span)
    return lr * 0.5 * (1.0 + math.cos(math.pi * t / span))


# A profile only lists what differs from the TrainConfig defaults.
PROFILES: dict[str, dict[str, Any]] = {
    # the defaults are Shap-Mix's long-tailed schedule; fp32 as the official code
    "lt": {"amp": "off"},
    "balanced": {"epochs": 65, "milestones": (35, 55), "amp": "off"},
    # CTR-GCN config/ucla/default.yaml: batch 16, base_lr 0.1 used as is (ref_batch_size 16:
    # lr 0.1 at batch 16), weight_decay 1e-4, step [50], 65 epochs, warm_up_epoch 5, Nesterov,
    # the full CTR-GCN (base 64), window_size 52 (the NW-UCLA transform's own). The
    # official train feeder has repeat 5; 1 here keeps a run within a CPU's budget
    # (`--set repeat=5` for the official epoch length).
    "ucla": {"epochs": 65, "milestones": (50,), "warmup_epochs": 5, "base_lr": 0.1,
             "ref_batch_size": 16, "batch_size": 16, "weight_decay": 1e-4, "nesterov": True,
             "base_channel": 64, "window": 52, "amp": "off", "repeat": 1,
             # the official code tests every epoch only to pick the best epoch on test (kept
             # here as a labelled extra); the reported last epoch is always tested, and testing
             # every 5th epoch saves ~30% of a CPU run (464 test clips vs 403 training clips)
             "eval_every": 5},
    # Real comparisons on CPU: a narrower CTR-GCN (base 16: ~1/16 of the conv FLOPs), 32
    # resampled frames (half again; the crop floor stays the official 64 source frames) and a
    # short schedule with the official shape (warm-up, decays at ~60% / 80%). Batch 32 doubles
    # the steps per epoch at half the lr (linear scaling), which suits few epochs better than 64.
    # Measured on synth IF 100 (2 shared CPU cores, 1 thread per run, 2 runs at once): ~25 min
    # per run; top-1 CE 45.9 vs Balanced Softmax 56.8 (few 9.5 vs 35.7).
    "cpu": {"epochs": 16, "milestones": (10, 13), "warmup_epochs": 2, "base_channel": 16,
            "window": 32, "batch_size": 32, "test_batch_size": 64},
    # `make benchmark` on synth (all 38 runs of every paper table in <= 45 min on 2 CPU cores):
    # base 8 (the narrowest width CTR-GCN's relation channels allow, in/8 >= 1), 16 frames,
    # 4 epochs (the last at lr / 10), the test set evaluated after the last epoch only (it was
    # 12% of a run). Measured on synth IF 100 (1 thread per run, two runs at once on 2 cores):
    # ~66 s per CE run (6 epochs took ~103 s). The step is per-op-overhead bound at this size
    # (16 -> 8 frames saves only 23%), so epochs are the lever. Numbers for ranking methods
    # quickly, not for the paper's absolute accuracies.
    "quick": {"epochs": 4, "milestones": (3,), "warmup_epochs": 1, "base_channel": 8,
              "window": 16, "batch_size": 32, "test_batch_size": 64, "eval_every": 0},
    # Pipeline check: every file, every hook, three checkpoints; seconds on 2 CPU cores
    # (16 frames, 60 test clips: `make benchmark PROFILE=smoke` runs ~40 of them).
    "smoke": {"epochs": 3, "milestones": (2,), "warmup_epochs": 1, "base_channel": 8,
              "window": 16, "batch_size": 16, "test_batch_size": 64, "max_steps_per_epoch": 4,
              "max_test_clips": 60},
    # Shap-Mix's Kinetics-400 (config/k400.yaml, shapley_mix_main_k400.py): SGD Nesterov, lr 0.1
    # at batch 80 (linear scaling from there), wd 5e-4, 70 epochs, 5 warm-up epochs (lr set
    # per epoch), then cosine per iteration to 0.001 x lr; 100-frame UniformSample clips; fp32
    "k400": {"epochs": 70, "milestones": (), "warmup_epochs": 5, "base_lr": 0.1,
             "ref_batch_size": 80, "batch_size": 80, "weight_decay": 5e-4, "nesterov": True,
             "window": 100, "schedule": "cosine_iter", "min_lr_ratio": 0.001, "amp": "off"},
}
# fields added after runs were stored: config_dict omits them at their defaults
ADDED_FIELDS = ("schedule", "min_lr_ratio", "test_clips")


def make_config(profile: str = "lt", overrides: dict[str, Any] | None = None) -> TrainConfig:
    """TrainConfig of a named profile plus ``--set`` overrides (validated and type-checked)."""
    if profile not in PROFILES:
        import difflib

        close = difflib.get_close_matches(profile, PROFILES, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise BenchmarkError(f"unknown profile {profile!r}{hint} (known: {', '.join(PROFILES)})")
    cfg = apply_overrides(TrainConfig(), PROFILES[profile], f"profile {profile}")
    return apply_overrides(cfg, overrides or {}, "train config")


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    d = dataclasses.asdict(cfg)
    d["lr"] = cfg.lr
    for k in ADDED_FIELDS:
        if d[k] == TrainConfig.__dataclass_fields__[k].default:
            del d[k]
    return d
