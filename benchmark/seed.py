"""Seeding and RNG-state capture for reproducible, resumable runs.

Two mechanisms keep a run a function of its seed (the official CTR-GCN / Shap-Mix code is not:
its loader workers are re-seeded by worker id, cudnn autotunes, best-epoch reloads):

1. **Per-epoch re-seeding.** At the start of every epoch the harness re-seeds torch, numpy,
   Python ``random`` and the run's own ``torch.Generator`` from (seed, stage, epoch) with
   :func:`seed_epoch`. Samplers and the loader's transform generator already derive their
   draws from (seed, epoch). So epoch e's randomness never depends on how many numbers earlier
   epochs consumed, and a run resumed at epoch e replays it exactly.
2. **State capture.** :func:`capture_rng` / :func:`restore_rng` save every global RNG as
   tensors, lists and ints (never pickled objects) so ``last.pt`` loads with
   ``torch.load(weights_only=True)``. With (1) this is belt and braces; it also covers code
   that draws numbers between epochs.

Bitwise determinism on CPU additionally needs the same number of intra-op threads (float
reductions are split per thread): :func:`configure_determinism` records it; pass
``--threads`` to pin it. Results are identical for a fixed thread count, not across counts.
"""
from __future__ import annotations

import logging
import os
import random
from typing import Any

import numpy as np
import torch

from .data.samplers import derive_seed

log = logging.getLogger(__name__)

# Stream ids for derive_seed; the data layer uses 1-3 (samplers.py), so ours start at 10.
INIT_STREAM = 10       # model initialisation
EPOCH_STREAM = 11      # global torch / numpy / random re-seed at each epoch start
GENERATOR_STREAM = 12  # the run's torch.Generator handed to methods (Context.generator)
LOADER_STREAM = 13     # per-stage seed of the BatchLoader's transform generator
SAMPLER_STREAM = 14    # per-stage seed of the stage's sampler


def seed_all(seed: int) -> None:
    """Seed torch (CPU + CUDA), numpy's legacy global RNG and Python ``random``."""
    torch.manual_seed(seed)  # also seeds every CUDA device
    np.random.seed(seed % 2**32)  # the legacy RNG only takes 32-bit seeds
    random.seed(seed)


def seed_epoch(seed: int, stage: int, epoch: int, generator: torch.Generator | None = None) -> None:
    """Make epoch ``epoch`` of stage ``stage`` a pure function of (seed, stage, epoch)."""
    seed_all(derive_seed(seed, EPOCH_STREAM, stage, epoch))
    if generator is not None:
        generator.manual_seed(derive_seed(seed, GENERATOR_STREAM, stage, epoch))


def configure_determinism(device: torch.device, threads: int | None = None) -> dict[str, Any]:
    """Deterministic kernels where PyTorch has them; returns what was set (for env.json).

    On CUDA, strict mode would raise for ops without a deterministic kernel, so it only warns
    there; cuBLAS also needs ``CUBLAS_WORKSPACE_CONFIG`` set before the first matmul.
    """
    if threads is not None:
        torch.set_num_threads(int(threads))
    cuda = device.type == "cuda"
    if cuda:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False  # autotuning picks kernels non-deterministically
        torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=cuda)
    return {"deterministic_algorithms": True, "warn_only": cuda,
            "num_threads": torch.get_num_threads()}


# ------------------------------------------------------------------------ state capture
def capture_rng(generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every global RNG state as tensors / lists / ints (safe for ``weights_only`` loading)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": int(version), "state": list(py_state), "gauss": py_gauss},
    }
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def restore_rng(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    """Inverse of :func:`capture_rng`; CUDA states are restored only when devices match."""
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    elif cuda:
        log.warning("checkpoint has %d CUDA RNG states, this machine %d devices: not restored",
                    len(cuda), torch.cuda.device_count() if torch.cuda.is_available() else 0)
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])
