"""fp32 for the numbers a method computes with extra forwards, whatever the training precision.

The harness may train under CUDA autocast (``TrainConfig.amp`` = bf16 / fp16; the paper
profiles use fp32, as the official code). The forwards a method runs to MEASURE something
(Shap-Mix's coalition values and Grad-CAM guidance, FSA's confusion statistics and CAMs, the
exact Shapley values of ``benchmark.shapley``) are the method's numbers, not its training
step: they run with autocast off on fp32 inputs, so they are the same at every training
precision. The model's weights are fp32 in any case (autocast never casts parameters).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch


@contextlib.contextmanager
def fp32(device: torch.device | str) -> Iterator[None]:
    """Autocast off for ``device``'s type inside the block (a no-op when it is not on)."""
    with torch.autocast(device_type=torch.device(device).type, enabled=False):
        yield


def fp32_eval_forward(ctx, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``ctx.eval_forward`` (no grad, eval mode) with autocast off on fp32 input: fp32 logits."""
    with fp32(x.device):
        return ctx.eval_forward(model, x.float())
