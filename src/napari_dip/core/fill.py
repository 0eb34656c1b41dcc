"""Filling the gaps of an image from its known pixels, fast enough to run at every step.

Push-pull (pyramid) interpolation: the known values and their weights are blurred with a
small binomial kernel and halved in size until nothing is left to halve; on the way back
up, every pixel takes the local weighted mean where enough known pixels lie near it and
blends in the upsampled coarser level where they are sparse, so that holes of any size are
filled smoothly from their borders (Gortler et al., "The Lumigraph", SIGGRAPH 1996, used it
for scattered data). In torch, on the image's device, for 2-D images and 3-D volumes, with
a cost of a few blurs of the image; the hold-out loss (``loss="holdout"``) gives it a net to
improve on at every step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# the binomial kernel [1, 4, 6, 4, 1] / 16, applied along each spatial axis in turn
_TAPS = (1.0, 4.0, 6.0, 4.0, 1.0)
# a pixel whose blurred weight is at least this takes its own level's mean alone
FULL_WEIGHT = 0.25


# the kernel per dtype and device, made once (no host copies inside a captured CUDA graph)
_KERNELS: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}


def _taps(like: torch.Tensor) -> torch.Tensor:
    key = (like.dtype, like.device)
    if key not in _KERNELS:
        _KERNELS[key] = torch.tensor(_TAPS, dtype=like.dtype, device=like.device) / 16.0
    return _KERNELS[key]


def _blur(x: torch.Tensor) -> torch.Tensor:
    """Separable binomial blur of ``(B, C, *spatial)`` along every spatial axis of more
    than one element, with replicated borders."""
    nd = x.dim() - 2
    taps = _taps(x)
    conv = F.conv2d if nd == 2 else F.conv3d
    b, c = x.shape[:2]
    y = x.reshape(b * c, 1, *x.shape[2:])
    for axis in range(nd):
        if y.shape[2 + axis] < 2:
            continue
        shape = [1, 1] + [1] * nd
        shape[2 + axis] = len(_TAPS)
        pad = [0, 0] * nd
        pad[2 * (nd - 1 - axis)] = pad[2 * (nd - 1 - axis) + 1] = 2
        y = conv(F.pad(y, pad, mode="replicate"), taps.view(shape))
    return y.reshape(b, c, *y.shape[2:])


def push_pull(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Fill ``values`` (``(B, C, *spatial)``, 2 or 3 spatial axes) where ``weights``
    (broadcastable to it, 1 on known pixels, 0 on missing ones) is 0; known pixels keep
    their value. Where no pixel is known at all the result is 0."""
    if values.dim() not in (4, 5):
        raise ValueError(f"values: expected (B, C, H, W) or (B, C, D, H, W), got shape "
                         f"{tuple(values.shape)}")
    weights = weights.to(values.dtype).expand_as(values)
    filled = _pull(values * weights, weights)
    return torch.where(weights > 0, values, filled)


def _pull(v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The weighted mean of ``v / w`` at every pixel, from the finest level that has
    weight there (``v`` holds values times weights)."""
    spatial = v.shape[2:]
    factors = tuple(2 if s >= 4 else 1 for s in spatial)
    if all(f == 1 for f in factors):  # the coarsest level: one weighted mean
        dims = tuple(range(2, v.dim()))
        total = w.sum(dims, keepdim=True)
        mean = v.sum(dims, keepdim=True) / total.clamp_min(1e-12)
        return mean.expand_as(v)
    bv, bw = _blur(v), _blur(w)
    local = bv / bw.clamp_min(1e-12)
    pool = F.avg_pool2d if v.dim() == 4 else F.avg_pool3d
    coarse = _pull(pool(bv, factors, ceil_mode=True), pool(bw, factors, ceil_mode=True))
    mode = "bilinear" if v.dim() == 4 else "trilinear"
    up = F.interpolate(coarse, size=spatial, mode=mode, align_corners=False)
    share = (bw / FULL_WEIGHT).clamp(max=1.0)
    return share * local + (1.0 - share) * up
