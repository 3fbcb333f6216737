"""A small 3D CNN sized for a laptop CPU: the synthetic benchmark's model."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Small3DCNN(nn.Module):
    """Conv3d + GroupNorm + ReLU blocks, global average pool, linear head.

    GroupNorm, not BatchNorm: the motion clip and the static clip pass through the same norm layers in
    one batch, and BatchNorm would mix their statistics (it broke ALBAR in the prototype) and couple the
    samples that the per-sample gradient penalty assumes independent. ``norm="batch"`` (BatchNorm3d) is there
    to study that, and to check ``model.freeze_bn`` on a model that trains in seconds.
    """

    def __init__(
        self,
        num_classes: int,
        widths: Sequence[int] = (16, 32, 32, 32),
        strides: Sequence[tuple[int, int, int]] = ((1, 2, 2), (1, 2, 2), (2, 2, 2), (1, 1, 1)),
        in_channels: int = 3,
        norm: str = "group",
    ) -> None:
        super().__init__()
        if len(widths) != len(strides):
            raise ValueError(f"widths and strides need the same length, got {len(widths)} and {len(strides)}")
        if norm not in ("group", "batch"):
            raise ValueError(f"model.kwargs.norm: 'group' or 'batch', got {norm!r}")
        layers: list[nn.Module] = []
        channels = in_channels
        for out, stride in zip(widths, strides):
            layers += [
                nn.Conv3d(channels, out, kernel_size=3, stride=tuple(stride), padding=1, bias=False),
                nn.GroupNorm(min(8, out), out) if norm == "group" else nn.BatchNorm3d(out),
                nn.ReLU(inplace=True),
            ]
            channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(channels, num_classes)
        self.num_features = channels

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features (B, num_features)."""
        return self.pool(self.features(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))
