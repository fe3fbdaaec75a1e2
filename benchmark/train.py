"""The fixed training loop: method-agnostic, resumable, seeded.

    method = build_method(name, hparams); method.setup(ctx)
    model = method.build_model(ctx, make_backbone)
    for stage in method.stages(ctx):
        trainable filter -> SGD (Nesterov, stage or config wd on all params)
        sampler by name -> BatchLoader (train transform on the device)
        method.on_stage_start(stage, model, ctx); DDP wrapper (multi-process only)
        for epoch:
            lr = schedule(stage, epoch) * method.lr_factor(stage, epoch), set once
            reseed (seed, stage, epoch); method.on_epoch_start
            for batch: transform_batch -> forward -> loss (+ the backbone's aux_losses)
                       -> backward -> step -> after_step
            method.on_epoch_end; [DDP: replicas checked equal]
            evaluate method.predict on the test set (no augmentation)

The loop never looks at a method's name: everything method-specific is a hook. The run
directory, checkpoints and result files are :mod:`benchmark.runner`'s job; this module only
turns (spec, config, data) into trained weights and per-epoch metrics.

Under DDP (:mod:`benchmark.dist`) every rank runs this same loop on its shard of each global
batch; evaluation is sharded by whole test batches and gathered, so every rank ends with
the logits a single process would compute from the same weights.
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from . import metrics
from .config import TrainConfig, cosine_lr_at, lr_at
from .data.lt import raw_mean_clip
from .data.loader import BatchLoader
from .data.samplers import build_sampler, derive_seed
from .dist import DistInfo, batch_shards
from .errors import BenchmarkError
from .method import Batch, Context, Method, Stage, build_method
from .seed import (GENERATOR_STREAM, INIT_STREAM, LOADER_STREAM, SAMPLER_STREAM, capture_rng,
                   restore_rng, seed_all, seed_epoch)
from .spec import RunData, RunSpec

log = logging.getLogger(__name__)

AUX_STREAM = 100  # offsets the aux loader's seeds from the main loader's


def backbone_factory(cfg: TrainConfig, data: RunData) -> Callable[[], nn.Module]:
    """``make_backbone()`` for ``Method.build_model``: the configured backbone for this data."""
    from .backbones import build_backbone

    def make() -> nn.Module:
        return build_backbone(cfg.backbone, num_class=data.num_classes, num_point=data.num_point,
                              num_person=data.num_person, graph=data.graph, in_channels=3,
                              base_channel=cfg.base_channel)
    return make


def make_train_loader(data: RunData, cfg: TrainConfig, seed: int, stage_idx: int, sampler_name: str,
                      kwargs: dict[str, Any], views: int, device: torch.device, rank: int = 0,
                      world_size: int = 1, stream: int = 0, augment: bool = True) -> BatchLoader:
    """This rank's training loader of a stage: its shard of one global per-epoch order.

    The sampler seed is the same on every rank (one global order, sharded by rank); the
    transform generator gets the rank as an extra key so ranks draw independent augmentations
    (world_size 1 keeps the single-process seed). Training stages see each clip
    ``cfg.repeat`` times per epoch; a statistics pass (``augment=False``) sees it once.
    """
    sampler = build_sampler(sampler_name, data.train_labels,
                            seed=derive_seed(seed, SAMPLER_STREAM, stage_idx, stream),
                            rank=rank, world_size=world_size,
                            repeat=cfg.repeat if augment else 1, **kwargs)
    base_tf = data.train_transform if augment else data.test_transform  # stats passes: no aug
    tf = base_tf if views == 1 else MultiView(base_tf, views)
    rank_key = (rank,) if world_size > 1 else ()
    return BatchLoader(data.store, data.train_idx, local_batch(cfg.batch_size, world_size),
                       sampler=sampler, transform=tf, device=device, drop_last=cfg.drop_last,
                       seed=derive_seed(seed, LOADER_STREAM, stage_idx, stream, *rank_key))


def compile_module(module: nn.Module) -> nn.Module:
    """``TrainConfig.compile``: torch.compile with the default (inductor) backend. The
    parameters stay the module's own, so checkpoints and the optimizer are unchanged."""
    return torch.compile(module)


def local_batch(batch_size: int, world_size: int) -> int:
    """Each rank's share of the global batch."""
    if batch_size % world_size:
        raise BenchmarkError(f"batch_size {batch_size} (the global batch) is not divisible by the "
                             f"{world_size} DDP ranks")
    return batch_size // world_size


def add_aux_losses(model: nn.Module, batch: Batch, num_classes: int, loss: torch.Tensor,
                   logs: dict[str, float]) -> torch.Tensor:
    """``loss`` + the terms of the backbone's ``aux_losses(y)`` (the backbone contract, e.g.
    InfoGCN's latent-vs-prior terms), each logged under its name; ``loss`` when neither the
    model nor the backbone a method wrapped (``model.backbone``) defines it. Every method gets it.

    ``y`` labels the rows of the step's concatenated inputs (``batch.targets`` in order): (N,)
    class indices when every target is hard, else (N, C) soft labels (``Target.as_probs``: a
    mixing method's pair weights, or its probabilities).
    """
    owner = next((m for m in (model, getattr(model, "backbone", None))
                  if callable(getattr(m, "aux_losses", None))), None)
    if owner is None:
        return loss
    targets = batch.targets
    if all(t.y_b is None and t.probs is None for t in targets):
        y = torch.cat([t.y for t in targets])
    else:
        y = torch.cat([t.as_probs(num_classes) for t in targets])
    for name, term in owner.aux_losses(y).items():
        logs[name] = float(term.detach())
        loss = loss + term
    return loss


class MultiView:
    """k independent draws of a train transform, stacked on a new leading axis (views)."""

    def __init__(self, transform: Callable, views: int):
        self.transform, self.views = transform, views

    def __call__(self, x: torch.Tensor, lengths: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        return torch.stack([self.transform(x, lengths, gen) for _ in range(self.views)])


@dataclass
class Cursor:
    """The next epoch to run: ``epoch`` of stage ``stage`` (stage == len(stages): finished)."""

    stage: int = 0
    epoch: int = 0


class Trainer:
    """Builds method, context and model for a run; runs (or resumes) its stages.

    Args:
        spec: the run (method name, hparams overrides, seed).
        cfg: resolved training config (profile + overrides).
        data: the resolved train/test data (:func:`benchmark.spec.load_run_data`).
        device: training device.
        method: an already built method (default: ``build_method(spec.method, spec.hparams)``).
        dist: this process's place in a DDP run (default: a single process).
    """

    def __init__(self, spec: RunSpec, cfg: TrainConfig, data: RunData, device: torch.device,
                 method: Method | None = None, dist: DistInfo | None = None):
        self.spec, self.cfg, self.data, self.device = spec, cfg, data, device
        self.dist = dist or DistInfo(device=device)
        world = self.dist.world_size
        self.method = method or build_method(spec.method, spec.hparams)
        # as DistributedSampler: each rank gets ceil(n / W) positions, cut into local batches
        per_rank = -(-len(data.train_idx) * cfg.repeat // world)  # cfg.repeat: each clip k times
        b = local_batch(cfg.batch_size, world)
        steps = per_rank // b if cfg.drop_last else -(-per_rank // b)
        if steps < 1:
            raise BenchmarkError(f"{len(data.train_idx)} training clips are fewer than one batch "
                                 f"of {cfg.batch_size}")
        if cfg.max_steps_per_epoch:
            steps = min(steps, cfg.max_steps_per_epoch)
        self.generator = torch.Generator()
        self.generator.manual_seed(derive_seed(spec.seed, GENERATOR_STREAM))  # re-seeded per epoch
        self.ctx = Context(num_classes=data.num_classes,
                           class_counts=torch.as_tensor(data.class_counts, dtype=torch.long),
                           total_epochs=cfg.epochs, iters_per_epoch=steps, device=device,
                           seed=spec.seed, layout=data.layout, batch_size=cfg.batch_size,
                           generator=self.generator, milestones=tuple(cfg.milestones),
                           warmup_epochs=cfg.warmup_epochs, rank=self.dist.rank,
                           window=cfg.window,
                           world_size=world, comm=self.dist if self.dist.enabled else None,
                           extras={"raw_mean_clip": functools.partial(raw_mean_clip, data.store,
                                                                      data.train_idx)})
        # initialisation is a function of the seed alone (the official ``init_seed`` seeds once)
        seed_all(derive_seed(spec.seed, INIT_STREAM))
        self.method.setup(self.ctx)
        model = self.method.build_model(self.ctx, backbone_factory(cfg, data))
        self.model = self.dist.prepare_model(model).to(device)  # SyncBN under multi-GPU DDP
        self.ddp: Any = None  # the stage's DDP-wrapped model (multi-process training only)
        self.stages: list[Stage] = list(self.method.stages(self.ctx))
        if not self.stages:
            raise BenchmarkError(f"method {spec.method} returned no training stage")
        self.cursor = Cursor()
        self.history: list[dict[str, Any]] = []
        self.optimizer: torch.optim.Optimizer | None = None
        amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
        self.amp_dtype = amp if device.type == "cuda" else None  # AMP only on CUDA
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.last_logits: np.ndarray | None = None
        self._compile_cache: tuple[nn.Module, nn.Module] | None = None
        self._resume: dict[str, Any] | None = None
        # DDP: each rank evaluates whole test batches r, r + W, ... and the rows are gathered
        self.test_shards = batch_shards(len(data.test_idx), cfg.test_batch_size, world)
        mine = self.test_shards[self.dist.rank] if self.dist.enabled else None
        self.test_loader = BatchLoader(data.store, data.test_idx, cfg.test_batch_size, sampler=mine,
                                       transform=data.test_transform, device=device)
        self.quiet = True if not self.dist.is_main else None  # progress bars on rank 0 only

    # ------------------------------------------------------------------ stage helpers
    def stage_epochs(self, stage: Stage) -> int:
        return stage.epochs if stage.epochs is not None else self.cfg.epochs

    @property
    def total_epochs(self) -> int:
        return sum(self.stage_epochs(s) for s in self.stages)

    def stage_lr(self, stage: Stage, epoch: int, step: int = 0, steps: int = 1) -> float:
        """The lr of stage epoch ``epoch`` (at its ``step``-th of ``steps`` iterations for the
        per-iteration schedule): schedule (:class:`Stage`, else the config's) x lr_factor."""
        c = self.cfg
        peak = stage.lr if stage.lr is not None else c.lr
        warmup = stage.warmup_epochs if stage.warmup_epochs is not None else c.warmup_epochs
        schedule = stage.schedule or c.schedule
        if schedule == "cosine_iter":
            lr = cosine_iter_lr_at(epoch, step, steps, peak, warmup, self.stage_epochs(stage),
                                   c.min_lr_ratio)
        elif schedule in ("cosine", "cosine_shifted"):
            lr = cosine_lr_at(epoch, peak, warmup, self.stage_epochs(stage),
                              shift=int(schedule == "cosine_shifted"))
        else:
            steps = stage.milestones if stage.milestones is not None else c.milestones
            lr = lr_at(epoch, peak, warmup, steps, c.lr_decay)
        return lr * float(self.method.lr_factor(stage, epoch))

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.amp_dtype)

    def _make_optimizer(self, stage: Stage) -> torch.optim.Optimizer | None:
        params = []
        for name, p in self.model.named_parameters():
            p.requires_grad_(True if stage.trainable is None else bool(stage.trainable(name)))
            if p.requires_grad:
                params.append(p)
        if not stage.train:  # statistics-only stage: hooks run, nothing is optimised
            return None
        if not params:
            raise BenchmarkError(f"stage {stage.name!r} trains no parameter")
        c = self.cfg
        wd = stage.weight_decay if stage.weight_decay is not None else c.weight_decay
        return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov,
                               weight_decay=wd)

    def _loader(self, stage_idx: int, sampler_name: str, kwargs: dict[str, Any], views: int,
                stream: int = 0, augment: bool = True) -> BatchLoader:
        return make_train_loader(self.data, self.cfg, self.spec.seed, stage_idx, sampler_name, kwargs,
                                 views, self.device, self.dist.rank, self.dist.world_size, stream,
                                 augment)

    # ------------------------------------------------------------------ checkpoint state
    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict() if self.optimizer else None,
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                "cursor": {"stage": self.cursor.stage, "epoch": self.cursor.epoch},
                "lr": self.history[-1]["lr"] if self.history else None,
                "method": self.method.state_dict(),
                "history": self.history, "world_size": self.dist.world_size,
                "rng": {**capture_rng(self.generator), "loader_epoch": self.cursor.epoch}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a checkpoint; the optimizer state is applied when its stage is rebuilt."""
        self.model.load_state_dict(state["model"])
        self.method.load_state_dict(state["method"])
        self.history = list(state["history"])
        self.cursor = Cursor(**state["cursor"])
        restore_rng(state["rng"], self.generator)
        saved = state.get("world_size", 1)
        if saved != self.dist.world_size:  # allowed; the clip order is the same, not the draws
            log.warning("resuming a %d-process checkpoint with %d process(es): the augmentation "
                        "draws differ from an uninterrupted run", saved, self.dist.world_size)
        self._resume = state

    # ------------------------------------------------------------------ the loop
    def fit(self, on_epoch_end: Callable[["Trainer", dict[str, Any]], None] | None = None) -> np.ndarray:
        """Run every remaining epoch; returns the final test logits (N_test, C) float32."""
        for s in range(self.cursor.stage, len(self.stages)):
            stage = self.stages[s]
            self.optimizer = self._make_optimizer(stage)
            self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
            loader = self._loader(s, stage.sampler, stage.sampler_kwargs, stage.views,
                                  augment=stage.train)
            aux = (self._loader(s, stage.aux_sampler, stage.aux_sampler_kwargs, stage.views,
                                AUX_STREAM, augment=stage.train) if stage.aux_sampler else None)
            self.method.on_stage_start(stage, self.model, self.ctx)
            first = self.cursor.epoch if s == self.cursor.stage else 0
            if self._resume is not None and first > 0:
                # mid-stage resume: the checkpoint wins over whatever on_stage_start re-did
                # (e.g. a classifier re-initialisation that happened before epoch 0)
                self.model.load_state_dict(self._resume["model"])
                self.method.load_state_dict(self._resume["method"])
                if self.optimizer is not None:
                    self.optimizer.load_state_dict(self._resume["optimizer"])
                if self._resume.get("scaler"):
                    self.scaler.load_state_dict(self._resume["scaler"])
            self._resume = None
            self.ddp = None  # drop the previous stage's wrapper (its parameter set is stale)
            if self.dist.enabled and stage.train:
                self.ddp = self.dist.wrap(self.model, self.cfg.ddp_find_unused)
            for epoch in range(first, self.stage_epochs(stage)):
                record = self._epoch(s, stage, epoch, loader, aux)
                self.history.append(record)
                done_stage = epoch + 1 == self.stage_epochs(stage)
                self.cursor = Cursor(s + 1, 0) if done_stage else Cursor(s, epoch + 1)
                if on_epoch_end is not None:
                    on_epoch_end(self, record)
            loader.close()
            if aux is not None:
                aux.close()
        self.ddp = None
        if self.last_logits is None:  # resumed after the last epoch: evaluate the final model
            self.last_logits = self.evaluate()
        return self.last_logits

    def _epoch(self, s: int, stage: Stage, epoch: int, loader: BatchLoader,
               aux: BatchLoader | None) -> dict[str, Any]:
        t0 = time.perf_counter()
        lr = self.stage_lr(stage, epoch)
        for g in self.optimizer.param_groups if self.optimizer else ():
            g["lr"] = lr  # set once at the epoch start, as official
        seed_epoch(self.spec.seed, s, epoch, self.generator)
        loader.set_epoch(epoch)
        if aux is not None:
            aux.set_epoch(epoch)
        self.method.on_epoch_start(epoch, self.model, self.ctx)
        loss_sum, n_steps, terms = 0.0, 0, {}
        if stage.train:
            loss_sum, n_steps, terms = self._train_steps(s, stage, epoch, loader, aux)
            if self.dist.enabled:  # the logged loss is the global batch's, as in one process
                keys = sorted(terms)
                avg = self.dist.all_reduce_mean(torch.tensor([loss_sum, *(terms[k] for k in keys)],
                                                             dtype=torch.float64)).tolist()
                loss_sum, terms = avg[0], dict(zip(keys, avg[1:]))
        else:
            self._statistics_pass(loader, aux, stage.views)
        self.method.on_epoch_end(epoch, self.model, self.ctx)
        if self.dist.enabled:  # per-rank BN running stats -> rank 0's; then all must agree
            self.dist.sync_buffers(self.model)
            self.dist.check_replicas(self.model, f"after stage {s} epoch {epoch}")
        train_s = time.perf_counter() - t0
        done = len(self.history) + 1  # epochs finished, over all stages
        every = self.cfg.eval_every
        if done == self.total_epochs or (every and done % every == 0):
            self.last_logits = self.evaluate()
            m = metrics.summarize(self.last_logits, self.data.test_labels,
                                  self.data.class_counts, full=False)
        else:  # not a test epoch (eval_every): the record says so with empty metrics
            self.last_logits = None
            m = dict.fromkeys(("top1", "top5", "many", "medium", "few"))
        record = {"stage": s, "stage_name": stage.name, "epoch": epoch,
                  "global_epoch": len(self.history), "lr": lr, "steps": n_steps,
                  "loss": loss_sum / n_steps if n_steps else None,
                  "loss_terms": {k: v / n_steps for k, v in terms.items()} if n_steps else {},
                  **m, "seconds": {"train": train_s, "total": time.perf_counter() - t0}}
        log.info(format_record(record, self.total_epochs))
        return record

    def _batches(self, loader: BatchLoader, aux: BatchLoader | None, n: int
                 ) -> Iterator[tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...] | None]]:
        main = itertools.islice(loader, n)
        if aux is None:
            for b in main:
                yield b, None
            return

        def cycle() -> Iterator[tuple[torch.Tensor, ...]]:
            while True:  # re-iterated when exhausted (same epoch, so the same order)
                empty = True
                for b in aux:
                    empty = False
                    yield b
                if empty:
                    raise BenchmarkError("the aux sampler yields no full batch")
        yield from zip(main, cycle())

    def _to_batch(self, parts: tuple[torch.Tensor, ...], views: int) -> Batch:
        x, y, idx = parts
        if views == 1:
            return Batch(x=x, y=y, index=idx)
        return Batch(x=x[0], y=y, index=idx, views=list(x[1:]))

    @torch.no_grad()
    def _statistics_pass(self, loader: BatchLoader, aux: BatchLoader | None, views: int) -> None:
        """A ``train=False`` stage: every batch (test transform) goes through the method's
        ``transform_batch`` without gradients and with the model in eval mode; nothing is
        optimised (e.g. FSA's confusion statistics)."""
        n = len(loader)
        if self.cfg.max_steps_per_epoch:
            n = min(n, self.cfg.max_steps_per_epoch)
        self.model.eval()
        for parts, aux_parts in tqdm(self._batches(loader, aux, n), total=n, leave=False,
                                     disable=self.quiet, desc="statistics"):
            batch = self._to_batch(parts, views)
            if aux_parts is not None:
                batch.aux = self._to_batch(aux_parts, views)
            self.method.transform_batch(batch, self.model, self.ctx)
        self.model.train()

    def _train_steps(self, s: int, stage: Stage, epoch: int, loader: BatchLoader,
                     aux: BatchLoader | None) -> tuple[float, int, dict[str, float]]:
        n = len(loader)  # one pass of the stage's sampler (ROS: a longer epoch)
        if self.cfg.max_steps_per_epoch:
            n = min(n, self.cfg.max_steps_per_epoch)
        model, method, ctx, opt = self.model, self.method, self.ctx, self.optimizer
        fwd_model = self.ddp if self.ddp is not None else model  # DDP averages gradients
        if self.cfg.compile:
            fwd_model = self._compiled(fwd_model)
        model.train()
        loss_sum, steps, terms = 0.0, 0, {}
        per_iteration = (stage.schedule or self.cfg.schedule) == "cosine_iter"
        bar = tqdm(self._batches(loader, aux, n), total=n, leave=False, disable=self.quiet,
                   desc=f"{stage.name} {epoch + 1}/{self.stage_epochs(stage)}")
        for parts, aux_parts in bar:
            if per_iteration:  # the official T_cur counts every batch of the loader
                lr = self.stage_lr(stage, epoch, steps, len(loader))
                for g in opt.param_groups:
                    g["lr"] = lr
            self._check_finite(parts, self.data.train_idx, "training")
            batch = self._to_batch(parts, stage.views)
            if aux_parts is not None:
                batch.aux = self._to_batch(aux_parts, stage.views)
            with self._autocast():
                batch = method.transform_batch(batch, model, ctx)
                out = method.forward(fwd_model, batch, ctx)
                loss, logs = method.loss(out, batch, ctx)
                loss = add_aux_losses(model, batch, ctx.num_classes, loss, logs)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise BenchmarkError(f"training diverged: loss {value} at stage {s} epoch {epoch} "
                                     f"step {steps} on clips {self._clip_names(parts[2], self.data.train_idx)} "
                                     f"(the last checkpoint is the previous epoch)")
            opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(opt)
            self.scaler.update()
            method.after_step(model, batch, out, ctx)
            loss_sum += value
            steps += 1
            for k, v in logs.items():
                terms[k] = terms.get(k, 0.0) + float(v)
            bar.set_postfix(loss=f"{value:.3f}", refresh=False)
        return loss_sum, steps, terms

    def _clip_names(self, pos: torch.Tensor, rows: np.ndarray, limit: int = 5) -> str:
        names = [self.data.store.names[int(rows[int(p)])] for p in pos.tolist()[:limit]]
        return ", ".join(names) + (" ..." if len(pos) > limit else "")

    def _check_finite(self, parts: tuple[torch.Tensor, ...], rows: np.ndarray, what: str) -> None:
        """Stop on NaN / inf input (a corrupt store), naming the clips: never train or report
        on it. One reduction per batch; the per-clip search runs only when it fails."""
        x, _, pos = parts
        if bool(torch.isfinite(x).all()):
            return
        per = x if x.shape[0] == len(pos) else x.transpose(0, 1)  # views first -> clips first
        bad = (~torch.isfinite(per)).reshape(len(pos), -1).any(1)
        raise BenchmarkError(f"{self.data.store.root}: non-finite values (NaN/inf) in {what} clips "
                             f"{self._clip_names(pos[bad.to(pos.device)], rows)}: the store is "
                             f"corrupt; prepare it again")

    def _compiled(self, module: nn.Module) -> nn.Module:
        """``compile_module(module)``, built once per module (a new stage's DDP wrapper is a
        new module). Only the training forward goes through it: ``method.predict`` and the
        methods' own no-grad passes (e.g. Shap-Mix's estimator) use the plain model."""
        if self._compile_cache is None or self._compile_cache[0] is not module:
            self._compile_cache = (module, compile_module(module))
        return self._compile_cache[1]

    @torch.no_grad()
    def evaluate(self) -> np.ndarray:
        """method.predict over the test set (test transform, no augmentation); float32 (N, C).
        Several clips per video (a (k, N, ...) test batch) give log mean softmax scores.
        Under DDP every rank calls it: each runs its share of whole batches, all get every row."""
        was = self.model.training
        self.model.eval()
        outs = []
        try:
            for x, y, pos in tqdm(self.test_loader, total=len(self.test_loader), leave=False,
                                  disable=self.quiet, desc="test"):
                self._check_finite((x, y, pos), self.data.test_idx, "test")
                with self._autocast():
                    if x.dim() == 6:  # k test clips per video (PYSKL's test mode): the log of
                        # their mean softmax (average_clips='prob'), so the argmax is PYSKL's
                        p = torch.stack([self.method.predict(self.model, v, self.ctx).float()
                                         .log_softmax(-1) for v in x])
                        outs.append((torch.logsumexp(p, 0) - math.log(len(x))).cpu())
                    else:
                        outs.append(self.method.predict(self.model, x, self.ctx).float().cpu())
        finally:
            self.model.train(was)
        local = torch.cat(outs) if outs else torch.zeros(0, self.data.num_classes)
        if self.dist.enabled:
            local = self.dist.gather_rows(local, self.test_shards, len(self.data.test_idx))
        return local.numpy()

    def close(self) -> None:
        self.test_loader.close()


def cosine_iter_lr_at(epoch: int, step: int, steps: int, lr: float, warmup_epochs: int,
                      epochs: int, min_ratio: float) -> float:
    """Shap-Mix's ``shapley_mix_main_k400.py:adjust_learning_rate_cos`` (Kinetics-400 recipe).

    Epochs before ``warmup_epochs``: lr (e + 1) / warmup for the whole epoch. After: at
    iteration ``step`` of ``steps`` per epoch, eta + (lr - eta)(1 + cos(pi t / T)) / 2 with eta =
    min_ratio lr, t = steps (e - warmup) + step, T = steps (epochs - warmup): from lr at the
    first post-warm-up iteration towards eta, which the iteration after the last would reach.
    """
    if epoch < warmup_epochs:
        return lr * (epoch + 1) / warmup_epochs
    eta = min_ratio * lr
    t = steps * (epoch - warmup_epochs) + step
    total = max(1, steps * (epochs - warmup_epochs))
    return eta + 0.5 * (lr - eta) * (1.0 + math.cos(math.pi * t / total))


def _pct(v: float | None) -> str:
    return "--" if v is None else f"{100 * v:.1f}"


def format_record(r: dict[str, Any], total: int) -> str:
    """One line per epoch: epoch, lr, loss, top-1, many/medium/few, seconds."""
    loss = "--" if r["loss"] is None else f"{r['loss']:.4f}"
    return (f"epoch {r['global_epoch'] + 1}/{total} [{r['stage_name']}] lr {r['lr']:.5g} "
            f"loss {loss} top1 {_pct(r['top1'])} many/med/few {_pct(r['many'])}/"
            f"{_pct(r['medium'])}/{_pct(r['few'])} {r['seconds']['total']:.1f}s")
