"""Plain cross-entropy on instance-sampled batches: the CTR-GCN baseline (Table 1 "CE")."""
from benchmark.method import Method, register_method


@register_method("ce")
class CrossEntropy(Method):
    """Mean softmax CE, argmax of the raw logits at test time (CTR-GCN ``main.py``)."""

    display_name = "CE"
    family = "baseline"
    paper = "CTR-GCN (Chen et al., ICCV 2021)"
    order = 0
