"""Multi-process (DDP) plumbing: process group from torchrun's environment, SyncBN, DDP wrapping,
replica checks and the collectives the harness needs.

The official long-tailed Shap-Mix runs (``shapley_mix_main_ddp_logits_adjust.py``) are DDP on 2
GPUs, 32 clips per GPU, SyncBatchNorm, ``DistributedSampler`` with drop_last. Here:

* ``torchrun --nproc_per_node=N -m benchmark train ...`` (or any launcher that sets RANK,
  WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) starts N ranks; one device per local rank.
  Backend nccl on CUDA, gloo on CPU (``--dist-backend`` overrides). WORLD_SIZE unset or 1 is a
  plain single process: no process group, no wrapper, nothing changes.
* The config's batch is the GLOBAL batch: each rank gets batch // world_size. Every sampler
  takes (rank, world_size) and shards one global per-epoch order, so step k of a DDP run sees
  the same clips as step k of a 1-process run (``benchmark.data.samplers``).
* BatchNorm becomes SyncBatchNorm on CUDA (global batch statistics, as the official runs, and
  then the same maths as one process with the whole batch). torch's SyncBatchNorm refuses CPU
  tensors in training mode ("SyncBatchNorm expected input tensor to be on GPU", checked on
  torch 2.13), so on CPU/gloo BN stays per-rank; a log line says so. CPU DDP is for tests.
* Only rank 0 writes the run store; the model replicas are checked identical after every epoch.
* Multi-node: the run store (``--out``) must be on a filesystem every node sees (all ranks
  resume from the same ``last.pt``); a rank that reads a different checkpoint fails loudly.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as tdist
from torch import nn

from .errors import BenchmarkError

log = logging.getLogger(__name__)

BACKENDS = ("nccl", "gloo")


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits; the default is a plain single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def comm_device(self) -> torch.device:
        """nccl only moves CUDA tensors; gloo is used with CPU tensors."""
        return self.device if self.backend == "nccl" else torch.device("cpu")

    @property
    def sync_bn(self) -> bool:
        """BatchNorm is converted to SyncBatchNorm (multi-process on CUDA)."""
        return self.enabled and self.device.type == "cuda"

    def describe(self) -> dict[str, Any]:
        return {"world_size": self.world_size, "backend": self.backend, "sync_batchnorm": self.sync_bn}

    # ------------------------------------------------------------------ collectives
    def barrier(self) -> None:
        if self.enabled:
            if self.backend == "nccl":  # names the device, so nccl does not have to guess it
                tdist.barrier(device_ids=[self.device.index])
            else:
                tdist.barrier()

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (small picklable objects: plans, cursors)."""
        if not self.enabled:
            return obj
        box = [obj if self.is_main else None]
        tdist.broadcast_object_list(box, src=0, device=self.comm_device)
        return box[0]

    def all_gather_object(self, obj: Any) -> list[Any]:
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        tdist.all_gather_object(out, obj)
        return out

    def all_reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """A detached float copy of ``tensor`` averaged over ranks (a copy in 1 process too)."""
        t = tensor.detach()
        t = t.clone() if t.is_floating_point() else t.double()
        if self.enabled:
            buf = t.to(self.comm_device)
            tdist.all_reduce(buf)
            t = buf.to(t.device).div_(self.world_size)
        return t

    def gather_rows(self, local: torch.Tensor, shards: Sequence[np.ndarray], total: int) -> torch.Tensor:
        """Reassemble a (total, ...) tensor from the rows each rank holds.

        Rank r holds ``local`` = rows ``shards[r]`` (in that order). Rows are padded to one
        length for ``all_gather`` and put back where they belong, bit for bit.
        """
        if not self.enabled:
            return local
        width = max(len(s) for s in shards)
        pad = local.new_zeros((width, *local.shape[1:]))
        pad[:len(local)] = local
        pad = pad.to(self.comm_device)
        bufs = [torch.empty_like(pad) for _ in range(self.world_size)]
        tdist.all_gather(bufs, pad)
        out = local.new_empty((total, *local.shape[1:]))
        for s, b in zip(shards, bufs):
            out[torch.as_tensor(s, dtype=torch.long)] = b[:len(s)].to(out.device)
        return out

    # ------------------------------------------------------------------ models
    def prepare_model(self, model: nn.Module) -> nn.Module:
        """SyncBatchNorm when several CUDA ranks train (the official runs); else unchanged."""
        if not self.enabled:
            return model
        if not self.sync_bn:
            if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
                log.info("DDP on %s: torch's SyncBatchNorm supports CUDA tensors only, so BatchNorm "
                         "stays per rank (batch statistics over each rank's share of the batch, "
                         "running stats from rank 0); use CUDA for runs to report", self.device)
            return model
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)

    def wrap(self, model: nn.Module, find_unused_parameters: bool = False) -> "DDPModel":
        """The DDP-wrapped model for ``Method.forward`` (gradients averaged over ranks).

        Built per stage, after the stage's ``requires_grad`` flags are set: DDP registers the
        parameters that require gradients when it is constructed.
        """
        ids = [self.device.index] if self.device.type == "cuda" else None
        ddp = nn.parallel.DistributedDataParallel(_EntryPoints(model), device_ids=ids,
                                                  find_unused_parameters=find_unused_parameters)
        return DDPModel(ddp, model)

    def sync_buffers(self, model: nn.Module) -> None:
        """Rank 0's buffers everywhere (per-rank BN running stats drift apart on CPU; DDP
        itself only broadcasts them at the start of each training forward)."""
        if not self.enabled:
            return
        for b in model.buffers():
            buf = b.data.to(self.comm_device)
            tdist.broadcast(buf, src=0)
            if buf is not b.data:
                b.data.copy_(buf)

    def check_replicas(self, model: nn.Module, where: str) -> str:
        """sha256 of every parameter and buffer, compared over ranks; raises if they differ.

        Catches what would otherwise silently bias a DDP run: a method forward that bypasses the
        DDP wrapper (no gradient averaging), rank-dependent updates in hooks, and so on.
        """
        digest = state_digest(model)
        if self.enabled:
            digests = self.all_gather_object(digest)
            if len(set(digests)) != 1:
                raise BenchmarkError(
                    f"DDP model replicas differ {where}: ranks hold {digests}. Method.forward must "
                    f"call the model it is given (or the model's own methods), not its submodules, "
                    f"and hooks must change weights identically on every rank (ctx.all_reduce_mean)")
        return digest


class _EntryPoints(nn.Module):
    """Makes any method of the model a DDP forward: ``ddp(name, *args)`` runs ``model.name(*args)``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, entry: str, *args: Any, **kwargs: Any) -> Any:
        if entry == "forward":
            return self.model(*args, **kwargs)
        return getattr(self.model, entry)(*args, **kwargs)


class DDPModel:
    """What ``Method.forward`` gets under DDP: the model, with its calls routed through DDP.

    ``model(x)`` and calls of the model's own methods (``model.all_heads(x)``,
    ``model.expert_outputs(x)``) run as DDP forwards, so their gradients are averaged over
    ranks and methods need no DDP-specific code. Everything else (submodules, ``parameters()``,
    ``eval()``, ...) is the plain model's: calling a submodule directly (``model.fc(h)``) is
    not a DDP forward, and a step made only of such calls would not be averaged (the
    per-epoch replica check then fails the run).
    """

    def __init__(self, ddp: nn.parallel.DistributedDataParallel, model: nn.Module):
        self.ddp, self.module = ddp, model

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.ddp("forward", *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.module, name)
        if callable(attr) and not isinstance(attr, nn.Module) and (
                name == "forward" or not hasattr(nn.Module, name)):
            return lambda *args, **kwargs: self.ddp(name, *args, **kwargs)
        return attr


def state_digest(model: nn.Module) -> str:
    """sha256 over the names and raw bytes of the model's state_dict."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def batch_shards(n: int, batch_size: int, world_size: int) -> list[np.ndarray]:
    """Positions of the evaluation rows of each rank: rank r gets whole batches r, r + W, ...

    Whole batches (not every W-th row) so that each batch is exactly the one a single process
    would run: the gathered logits are bitwise those of 1-process evaluation.
    """
    starts = list(range(0, n, batch_size))
    shards = []
    for r in range(world_size):
        mine = [np.arange(s, min(s + batch_size, n)) for s in starts[r::world_size]]
        shards.append(np.concatenate(mine) if mine else np.zeros(0, dtype=np.int64))
    return shards


def env_world() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from the launcher's environment (1 process if unset)."""
    def get(name: str, default: int) -> int:
        v = os.environ.get(name)
        try:
            return default if v in (None, "") else int(v)
        except ValueError:
            raise BenchmarkError(f"environment variable {name}={v!r} is not an integer") from None

    world = get("WORLD_SIZE", 1)
    rank, local = get("RANK", 0), get("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise BenchmarkError(f"bad launcher environment: RANK={rank} WORLD_SIZE={world}")
    return rank, world, local


@contextlib.contextmanager
def process_group(device: torch.device, backend: str | None = None) -> Iterator[DistInfo]:
    """The process group of a torchrun launch (or a single process); destroyed on exit.

    Args:
        device: the resolved ``--device`` (``cuda`` becomes ``cuda:LOCAL_RANK`` under DDP).
        backend: ``--dist-backend`` (default nccl on CUDA, gloo on CPU).
    """
    rank, world, local = env_world()
    if backend is not None and backend not in BACKENDS:
        raise BenchmarkError(f"--dist-backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if world == 1:
        yield DistInfo(device=device)
        return
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise BenchmarkError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} CUDA "
                                 f"device(s) on this node; --nproc_per_node must not exceed it")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    backend = backend or ("nccl" if device.type == "cuda" else "gloo")
    if backend == "nccl" and device.type != "cuda":
        raise BenchmarkError("--dist-backend nccl needs --device cuda (use gloo on CPU)")
    owned = not tdist.is_initialized()
    if owned:
        kw = {"device_id": device} if backend == "nccl" else {}
        tdist.init_process_group(backend, rank=rank, world_size=world, **kw)
    elif tdist.get_world_size() != world or tdist.get_rank() != rank:
        raise BenchmarkError("a process group with another rank/world size is already initialised")
    info = DistInfo(rank, world, local, tdist.get_backend(), device)
    log.debug("rank %d/%d (local %d) on %s, backend %s", rank, world, local, device, info.backend)
    try:
        yield info
    finally:
        if owned:
            tdist.destroy_process_group()
