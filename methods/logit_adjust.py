"""Logit-adjusted losses: Balanced Softmax (Ren et al., NeurIPS 2020) and logit adjustment
(Menon et al., ICLR 2021).

Balanced Softmax trains on CE(z + log n_c, y) (``BalancedMetaSoftmax``'s
``balanced_softmax_loss``); logit adjustment on CE(z + tau log pi_c, y) with the official
``log(pi^tau + 1e-12)`` (``LogitAdjust`` of BCL / Shap-Mix). With tau = 1 the two are the same
loss, since log pi and log n differ by a constant. Both predict with the raw logits; the
post-hoc variant of logit adjustment (``posthoc=True``) trains with plain CE and predicts
argmax of z - tau log pi.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from benchmark.losses import cross_entropy, log_prior
from benchmark.method import Context, Method, register_method


@register_method("balanced_softmax")
class BalancedSoftmax(Method):
    display_name = "Balanced Softmax"
    family = "logit adjustment"
    paper = "Ren et al., NeurIPS 2020"
    order = 100

    def setup(self, ctx: Context) -> None:
        # log n_c; written as log prior (tau 1) because softmax ignores the constant log N
        self.offset = log_prior(ctx.class_counts, 1.0).to(ctx.device)

    def per_sample_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return cross_entropy(logits + self.offset, y)


@register_method("logit_adjust")
class LogitAdjust(Method):
    display_name = "Logit Adjustment"
    family = "logit adjustment"
    paper = "Menon et al., ICLR 2021"
    order = 160

    @dataclass(frozen=True)
    class HParams:
        tau: float = 1.0         # google-research logit_adjustment default (tau = 1)
        posthoc: bool = False    # False: the loss version (as BCL / Shap-Mix use it)

    def setup(self, ctx: Context) -> None:
        self.offset = log_prior(ctx.class_counts, self.hp.tau).to(ctx.device)

    def per_sample_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return cross_entropy(logits if self.hp.posthoc else logits + self.offset, y)

    def predict(self, model, x, ctx):
        logits = model(x)
        return logits - self.offset if self.hp.posthoc else logits
