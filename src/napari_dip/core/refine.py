"""A second stage for denoising: an empirical Wiener filter guided by the net's estimate.

The net's estimate (the *pilot*) is a good guess of the clean image but keeps some noise and
smooths some texture. The filter below revisits the noisy image with it, as the second step
of BM3D does with its own first estimate (Dabov, Foi, Katkovnik and Egiazarian, "Image
denoising by sparse 3-D transform-domain collaborative filtering", IEEE TIP 2007):

1. for reference patches on a grid (every ``stride`` pixels), find the ``group`` patches of
   the pilot most like it within ``radius`` pixels (sum of squared differences; the
   reference patch itself first, also where others tie with it, as in flat or saturated
   areas);
2. stack those patches of the noisy image and of the pilot, and transform each stack with an
   orthonormal 2-D DCT over the patch and a 1-D DCT along the stack;
3. keep each coefficient of the noisy stack in the proportion p^2 / (p^2 + sigma^2), where p
   is the pilot's coefficient: the Wiener gain if the pilot were the clean image;
4. transform back and average the overlapping patches, each stack weighted by the inverse
   of its residual noise (sigma^2 times the sum of its squared gains) and each pixel of a
   patch by a Kaiser window.

Colour (several channels) is first rotated by an orthonormal DCT across the channels (for
RGB, the opponent colours: the mean and two differences), which keeps white noise white
with the same sigma; patches are matched on the first (mean) channel and every channel is
filtered with the same stacks. Volumes are filtered plane by plane.

``hard_threshold`` runs the same stacks as BM3D's first step: matched on the noisy image
itself, with the coefficients below a threshold set to zero instead of Wiener gains. Its
estimate keeps texture that a net's estimate smooths, and serves as a second pilot
(``refine_hard_share`` in the engine).

Everything runs in torch on the device of its inputs; the reference patches are taken in
bands of rows so that the memory stays small (see ``max_refs``) whatever the image size.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["wiener_refine", "hard_threshold"]


def _dct_matrix(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The orthonormal DCT-II matrix of size n (rows: frequencies)."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.to(device=device, dtype=dtype)


def hard_threshold(noisy: torch.Tensor, sigma: float, *, threshold: float = 2.7,
                   patch: int = 6, stride: int = 2, radius: int = 16, group: int = 16,
                   max_refs: int = 4096) -> torch.Tensor:
    """An estimate of the clean image from ``noisy`` alone, as BM3D's first step makes it:
    stacks of the ``group`` noisy patches most like each reference patch, each stack's 3-D
    DCT coefficients below ``threshold`` x ``sigma`` set to zero, and the patches averaged
    back with weights of the inverse of their residual noise (``sigma^2`` times the number
    of coefficients kept). Its errors are noise-like and it keeps texture at full
    contrast, where a net's estimate errs smooth; see ``wiener_refine``'s ``pilot``.
    Same layout, arguments and return as ``wiener_refine`` (the pilot is the noisy image:
    patches are matched on it)."""
    return _filter(noisy, None, sigma, patch=patch, stride=stride, radius=radius,
                   group=group, max_refs=max_refs, hard=threshold)


def wiener_refine(noisy: torch.Tensor, pilot: torch.Tensor, sigma: float, *,
                  patch: int = 8, stride: int = 3, radius: int = 16, group: int = 16,
                  max_refs: int = 4096) -> torch.Tensor:
    """Filter ``noisy`` (engine layout ``(C, *spatial)``, 2-D or 3-D) with Wiener gains taken
    from ``pilot`` (same shape, an estimate of the clean image) for white Gaussian noise of
    standard deviation ``sigma`` (in the data's units). See the module's docstring.

    Returns a tensor like ``noisy``; the pilot itself where the noise is zero or the image
    is smaller than one patch. ``max_refs`` bounds the reference patches handled at once
    (about 25 kB each in float32 for one channel)."""
    if noisy.shape != pilot.shape:
        raise ValueError(f"noisy and pilot must have the same shape, got {tuple(noisy.shape)} "
                         f"and {tuple(pilot.shape)}")
    return _filter(noisy, pilot, sigma, patch=patch, stride=stride, radius=radius,
                   group=group, max_refs=max_refs, hard=0.0)


def _filter(noisy: torch.Tensor, pilot: torch.Tensor | None, sigma: float, *, patch: int,
            stride: int, radius: int, group: int, max_refs: int,
            hard: float) -> torch.Tensor:
    """``wiener_refine`` (``hard`` 0) or ``hard_threshold`` (``hard`` > 0, ``pilot``
    None: patches matched on the noisy image)."""
    if patch < 2 or stride < 1 or stride > patch or radius < 0 or group < 1:
        raise ValueError(f"expected patch >= 2, 1 <= stride <= patch, radius >= 0 and "
                         f"group >= 1; got patch={patch}, stride={stride}, radius={radius}, "
                         f"group={group}")
    spatial = noisy.shape[1:]
    if not sigma > 0 or any(s < patch for s in spatial[-2:]):
        return (noisy if pilot is None else pilot).clone()
    dtype = torch.float32 if noisy.dtype in (torch.float16, torch.bfloat16) else noisy.dtype
    y = noisy.to(dtype)
    channels = y.shape[0]
    rot = _dct_matrix(channels, dtype, y.device) if channels > 1 else None
    if rot is not None:  # opponent colours: white noise stays white, with the same sigma
        y = torch.einsum("dc,c...->d...", rot, y)
    if pilot is None:  # thresholding: the stacks are matched on the noisy image itself
        p = y
    else:
        p = pilot.to(dtype)
        p = torch.einsum("dc,c...->d...", rot, p) if rot is not None else p
    opts = dict(sigma=float(sigma), patch=patch, stride=stride, radius=radius, group=group,
                max_refs=max_refs, hard=float(hard))
    if len(spatial) == 3:
        out = torch.stack([_refine_plane(y[:, z], p[:, z], **opts)
                           for z in range(spatial[0])], dim=1)
    else:
        out = _refine_plane(y, p, **opts)
    if rot is not None:
        out = torch.einsum("dc,d...->c...", rot, out)
    return out.to(noisy.dtype)


def _float64_tables(device: torch.device) -> bool:
    """Whether the distances come from float64 summed-area tables on this device (Apple's
    MPS has no float64)."""
    return device.type != "mps"


def _refine_plane(y: torch.Tensor, p: torch.Tensor, *, sigma: float, patch: int, stride: int,
                  radius: int, group: int, max_refs: int, hard: float) -> torch.Tensor:
    """The filter on one plane: ``y`` and ``p`` are ``(C, H, W)``; ``hard`` > 0: keep the
    noisy coefficients above ``hard`` x ``sigma`` instead of Wiener gains."""
    channels, height, width = y.shape
    k, r = patch, radius
    dev, dtype = y.device, y.dtype
    n_rows, n_cols = height - k + 1, width - k + 1  # patch positions (top-left corners)
    ref_rows = list(range(0, n_rows, stride))
    ref_rows += [n_rows - 1] if ref_rows[-1] != n_rows - 1 else []
    ref_cols = list(range(0, n_cols, stride))
    ref_cols += [n_cols - 1] if ref_cols[-1] != n_cols - 1 else []
    cols_t = torch.tensor(ref_cols, device=dev)
    # a patch in a corner has (r + 1)^2 candidates, fewer on a small image
    group = min(group, min(n_rows, r + 1) * min(n_cols, r + 1))
    d2 = _dct_matrix(k, dtype, dev)
    d2 = torch.kron(d2, d2)  # the 2-D DCT of a flattened patch
    dg = _dct_matrix(group, dtype, dev)
    kaiser = torch.as_tensor(np.kaiser(k, 2.0), dtype=dtype, device=dev)
    window = torch.outer(kaiser, kaiser).reshape(1, k * k, 1, 1)
    within = torch.arange(k, device=dev)
    within = (within[:, None] * width + within[None, :]).reshape(1, k * k, 1, 1)
    s2 = sigma * sigma
    num = torch.zeros(channels, height * width, dtype=dtype, device=dev)
    den = torch.zeros(channels, height * width, dtype=dtype, device=dev)
    per_band = max(1, max_refs // len(ref_cols))
    offsets = torch.arange(-r, r + 1, device=dev)
    for b in range(0, len(ref_rows), per_band):
        rows = ref_rows[b:b + per_band]
        top, bottom = max(0, rows[0] - r), min(height, rows[-1] + r + k)
        yc, pc = y[:, top:bottom], p[:, top:bottom]
        rows_t = torch.tensor(rows, device=dev) - top
        ri = rows_t.repeat_interleave(len(ref_cols))
        rj = cols_t.repeat(len(rows))
        # squared distance of every candidate to its reference, on the pilot's first
        # channel: box sums of squared differences from summed-area tables in float64
        # (float32 tables lose the small distances of similar patches on large images);
        # where float64 is missing (Apple MPS), separable box means in float32
        hc = bottom - top
        exact = _float64_tables(dev)
        guide = pc[0].double() if exact else pc[0].float()
        padded = F.pad(guide[None, None], (r, r, r, r))[0, 0]
        dist = []
        for dy in range(-r, r + 1):
            shifted = torch.stack([padded[r + dy:r + dy + hc, r + dx:r + dx + width]
                                   for dx in range(-r, r + 1)])
            sq = (guide[None] - shifted) ** 2
            if exact:
                table = F.pad(sq.cumsum(1).cumsum(2), (1, 0, 1, 0))
                dist.append(table[:, ri + k, rj + k] - table[:, ri, rj + k]
                            - table[:, ri + k, rj] + table[:, ri, rj])
            else:
                box = F.avg_pool2d(F.avg_pool2d(sq[:, None], (k, 1), stride=1), (1, k),
                                   stride=1)[:, 0]
                dist.append(box[:, ri, rj])
        dist = torch.cat(dist)  # (candidates, refs): dy major, dx minor
        cand_dy = offsets.repeat_interleave(2 * r + 1)[:, None]
        cand_dx = offsets.repeat(2 * r + 1)[:, None]
        outside = ((ri[None] + cand_dy < 0) | (ri[None] + cand_dy > hc - k)
                   | (rj[None] + cand_dx < 0) | (rj[None] + cand_dx > n_cols - 1))
        dist.masked_fill_(outside, float("inf"))
        # every reference patch heads its own stack, also where others tie with it (flat,
        # saturated or constant areas), so that every pixel is covered
        dist[r * (2 * r + 1) + r] = -1.0
        pick = torch.topk(dist, group, dim=0, largest=False).indices  # (group, refs)
        ti = ri[None] + offsets[pick // (2 * r + 1)]
        tj = rj[None] + offsets[pick % (2 * r + 1)]
        flat = ti * n_cols + tj
        ys = F.unfold(yc[:, None], k)[:, :, flat]  # (C, k*k, group, refs)
        yt = torch.einsum("hg,cpgr->cphr", dg, torch.einsum("pq,cqgr->cpgr", d2, ys))
        if hard > 0:  # the first step: keep the large coefficients as they are
            gain = (yt.abs() > hard * sigma).to(dtype)
        else:
            ps = F.unfold(pc[:, None], k)[:, :, flat]
            pt = torch.einsum("hg,cpgr->cphr", dg, torch.einsum("pq,cqgr->cpgr", d2, ps))
            pt = pt * pt
            gain = pt / (pt + s2)
        est = torch.einsum("pq,cpgr->cqgr", d2, torch.einsum("hg,cphr->cpgr", dg, gain * yt))
        # (C, refs); a hard stack keeps at least one coefficient's worth of noise
        kept = (gain * gain).sum(dim=(1, 2))
        weight = 1.0 / (s2 * (kept.clamp(min=1.0) if hard > 0 else kept) + 1e-12)
        weight = window * weight[:, None, None, :]  # (C, k*k, 1, refs)
        target = ((ti + top) * width + tj)[None, None] + within  # (1, k*k, group, refs)
        target = target.expand(channels, -1, -1, -1).reshape(channels, -1)
        weight = weight.expand_as(est)
        num.scatter_add_(1, target, (est * weight).reshape(channels, -1))
        den.scatter_add_(1, target, weight.reshape(channels, -1))
    return (num / den).reshape(channels, height, width)
