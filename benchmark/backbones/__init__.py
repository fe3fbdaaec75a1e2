"""Backbones by name: ``build_backbone("ctrgcn", num_class=60, num_point=25, num_person=2,
graph="ntu")``. Importing the package registers every backbone module listed below.

The backbone contract (what methods, the harness and Shap-Mix's estimator may use; nothing
else of a backbone's internals):

    attributes   num_class, num_point, num_person, graph, in_channels, feat_dim
    fc           the classifier, an ``nn.Linear(feat_dim, num_class)``; a method may replace
                 it (cosine classifiers) and ``is_classifier(name)`` names its parameters
    stem(x)      (N, C, T, V, M) skeletons -> (N*M, C', T, V): everything before the blocks
    blocks()     the ordered list of blocks after the stem; ``features`` applies them in turn
    block_names() their attribute names (parameter prefixes, e.g. ["l1", ..., "l10"])
    features(x)  (N, C, T, V, M) -> (N, M, C_last, T', V): the last block's map (Grad-CAM, FSA)
    pool(f)      feature map -> (N, feat_dim) clip features
    head(feat)   clip features -> logits (``fc`` after dropout; InfoGCN: its latent z first)
    forward(x, return_feat=False) -> logits, or (logits, feat)
    aux_losses(y) optional: {name: scalar tensor} of the last TRAINING forward (e.g. InfoGCN's
                 latent-vs-class-prior terms, already weighted); the harness adds them to every
                 method's loss. ``y`` is the batch's labels: (N,) int, or (N, C) soft labels of
                 mixing methods.
    make_blocks(start, width) optional: fresh copies of blocks ``start..`` (RIDE's experts)
    make_head(feat_dim) optional: a fresh head for ``feat_dim``-wide pooled features (its own
                 ``fc``, ``forward(feat)`` -> logits, and ``aux_losses`` where the model has
                 them), for methods that give several branches the backbone's head (RIDE)
    head_names   optional: the attribute names of the modules only ``head`` uses (default
                 ("fc",); InfoGCN adds its latent layers); a method that gives the features
                 to heads of its own (RIDE's experts) replaces them with identities, so that
                 no parameter is left without a gradient (DDP needs every one used)
"""
from __future__ import annotations

from typing import Any

from torch import nn

from ..registry import Registry

# installed packages add backbones through this entry-point group (benchmark.plugins)
BACKBONES: Registry = Registry("backbone", entry_points="ltskeleton.backbones")


def is_classifier(name: str) -> bool:
    """Whether a parameter name (of the backbone, or under a ``backbone.`` wrapper) is ``fc``'s."""
    return name.startswith(("fc.", "backbone.fc."))


def head_names(model: nn.Module) -> tuple[str, ...]:
    """The contract's ``head_names`` of ``model`` (("fc",) where it does not define them)."""
    return tuple(getattr(model, "head_names", ("fc",)))


def build_backbone(name: str, **kwargs: Any) -> nn.Module:
    """Instantiate the backbone registered as ``name`` with keyword arguments."""
    return BACKBONES.build(name, **kwargs)


from . import ctrgcn  # noqa: E402,F401  (registers "ctrgcn")
from . import aagcn  # noqa: E402,F401  (registers "aagcn")
from . import stgcnpp  # noqa: E402,F401  (registers "stgcnpp")
from . import infogcn  # noqa: E402,F401  (registers "infogcn")
from . import hdgcn  # noqa: E402,F401  (registers "hdgcn")
