"""Backbones by name: ``build_backbone("ctrgcn", num_class=60, num_point=25, num_person=2,
graph="ntu")``. Importing the package registers every backbone module listed below."""
from __future__ import annotations

from typing import Any

from torch import nn

from ..registry import Registry

BACKBONES: Registry = Registry("backbone")


def build_backbone(name: str, **kwargs: Any) -> nn.Module:
    """Instantiate the backbone registered as ``name`` with keyword arguments."""
    return BACKBONES.build(name, **kwargs)


from . import ctrgcn  # noqa: E402,F401  (registers "ctrgcn")
