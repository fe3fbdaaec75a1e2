"""A method defined outside the package: label-smoothed cross-entropy (Szegedy et al., CVPR 2016).

Nothing in this repository imports it; ``--plugin`` does (README, "Add your own method"):

    python -m benchmark methods --plugin scripts/example_plugin_label_smoothing.py
    python -m benchmark train --plugin scripts/example_plugin_label_smoothing.py \
        --method label_smoothing --set smoothing=0.2 --dataset synth --imbalance 100 --profile smoke

The same file works from anywhere on disk, and a package can ship it through the
``ltskeleton.methods`` entry-point group instead (``benchmark/plugins.py``).
"""
from dataclasses import dataclass

import torch.nn.functional as F

from benchmark.method import Method, register_method


@register_method("label_smoothing")
class LabelSmoothing(Method):
    display_name, family, paper, order = "Label smoothing", "regularisation", "Szegedy et al., CVPR 2016", 500

    @dataclass(frozen=True)
    class HParams:
        smoothing: float = 0.1  # the paper's epsilon for ImageNet

    def per_sample_loss(self, logits, y):  # pairs and soft labels are built from this
        return F.cross_entropy(logits.float(), y, reduction="none", label_smoothing=self.hp.smoothing)
