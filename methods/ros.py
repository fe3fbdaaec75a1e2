"""Random over-sampling (Van Hulse et al., ICML 2007) with plain CE.

Skeleton reference: Shap-Mix ``feeders/feeder_ntu.py::Feeder_LT_ros``: once per run every class
is topped up to n_max with extra copies drawn with replacement from its own clips; the pool
(C * n_max clips) is reshuffled every epoch. That is the registered ``ros`` sampler
(``benchmark.data.samplers.RandomOverSampler``).

Decision: epochs are matched, not steps. An epoch is one pass over the over-sampled pool, so
on NTU60-LT an epoch has 36,000 / 7,892 = 4.6x the steps of CE at the same 100-epoch
schedule, as the official feeder (same ``num_epoch``) implies. Reports should quote total
optimizer steps. Matching steps would need the stage's epoch count and lr milestones
rescaled, which the Context does not expose.
Options: ``redraw_each_epoch`` draws new extras every epoch; ``class_balance`` switches to the
same feeder's ``class_balance=True`` branch (class-balanced draws, epoch length 4 N).
"""
from __future__ import annotations

from dataclasses import dataclass

from benchmark.method import Context, Method, Stage, register_method


@register_method("ros")
class RandomOverSampling(Method):
    display_name = "ROS"
    family = "re-sampling"
    paper = "Van Hulse et al., ICML 2007"
    order = 60

    @dataclass(frozen=True)
    class HParams:
        redraw_each_epoch: bool = False  # Feeder_LT_ros: extras drawn once at construction
        class_balance: bool = False      # Feeder_LT_ros class_balance flag (False: ROS)

    def stages(self, ctx: Context) -> list[Stage]:
        if self.hp.class_balance:
            # Feeder_LT_ros(class_balance=True): __len__ is 4 * N
            return [Stage(sampler="class_balanced", sampler_kwargs={"epoch_factor": 4.0})]
        return [Stage(sampler="ros",
                      sampler_kwargs={"redraw_each_epoch": self.hp.redraw_each_epoch})]
