"""What the backbones that share CTR-GCN's input and output path have in common.

``SkeletonBackbone`` gives the contract's ``stem`` (persons folded into the batch after one
``data_bn`` over person x joint x coordinate channels, as the official CTR-GCN / 2s-AGCN /
HD-GCN models do), ``features`` (the stem, then :meth:`blocks` in turn), ``pool`` (mean over
time and joints, then persons), ``head`` (``fc`` after dropout) and ``forward``. A subclass
sets ``data_bn``, ``num_point``, ``fc`` and ``drop_out`` and defines ``blocks()``.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn


class SkeletonBackbone(nn.Module):
    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T, V, M) (or (N, T, V*C), read as M=1) -> (N*M, C, T, V) after data_bn."""
        if x.dim() == 3:
            n, t, _ = x.shape
            x = x.view(n, t, self.num_point, -1).permute(0, 3, 1, 2).unsqueeze(-1)
        n, c, t, v, m = x.shape
        # data_bn channel = m*V*C + v*C + c (person-major, then joint, then coordinate)
        x = self.data_bn(x.permute(0, 4, 3, 1, 2).reshape(n, m * v * c, t))
        return x.view(n, m, v, c, t).permute(0, 1, 3, 4, 2).reshape(n * m, c, t, v)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T, V, M) (or (N, T, V*C)) -> the last block's map (N, M, C', T', V)."""
        n = x.shape[0]
        x = self.stem(x)
        for block in self.blocks():
            x = block(x)
        return x.view(n, -1, *x.shape[1:])

    def pool(self, feat_map: torch.Tensor) -> torch.Tensor:
        """Mean over time and joints, then over persons (padded persons included, as official)."""
        return feat_map.flatten(3).mean(3).mean(1)

    def head(self, feat: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop_out(feat))

    def forward(self, x: torch.Tensor, return_feat: bool = False) -> Any:
        feat = self.pool(self.features(x))
        logits = self.head(feat)
        return (logits, feat) if return_feat else logits
