"""Running statistics kept on the device (no host synchronisation)."""

from __future__ import annotations

import torch


class RunningMoments:
    """Per-pixel mean and variance of a stream of tensors (Welford's update).

    Numerically stable for long chains; ``variance`` is the unbiased sample variance,
    equal to ``torch.var(stack, dim=0)`` of everything added.
    """

    def __init__(self) -> None:
        self.count = 0
        self.mean: torch.Tensor | None = None
        self._m2: torch.Tensor | None = None

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().float()
        self.count += 1
        if self.mean is None:
            self.mean = x.clone()
            self._m2 = torch.zeros_like(x)
            return
        delta = x - self.mean
        self.mean.add_(delta, alpha=1.0 / self.count)
        self._m2.addcmul_(delta, x - self.mean)

    @property
    def variance(self) -> torch.Tensor | None:
        if self._m2 is None:
            return None
        if self.count < 2:
            return torch.zeros_like(self._m2)
        return self._m2 / (self.count - 1)
