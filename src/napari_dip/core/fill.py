"""Filling the gaps of an image from its known pixels, fast enough to run at every step.

Push-pull (pyramid) interpolation: the known values and their weights are blurred with a
small binomial kernel and halved in size until nothing is left to halve; on the way back
up, every pixel takes the local weighted mean where enough known pixels lie near it and
blends in the upsampled coarser level where they are sparse, so that holes of any size are
filled smoothly from their borders (Gortler et al., "The Lumigraph", SIGGRAPH 1996, used it
for scattered data). In torch, on the image's device, for 2-D images and 3-D volumes, with
a cost of a few blurs of the image; the hold-out loss (``loss="holdout"``) gives it a net to
improve on at every step.

``gap_depth`` and ``around`` give how deep the gaps are and the band of known pixels
around them, where the gaps' blend (``gap_blend``) fits its weight when they are deep.
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


# --- biharmonic interpolation -------------------------------------------------------------
# The smoothest surface through the known pixels: the missing pixels minimise the sum of the
# squared discrete Laplacian over the whole image (reflecting borders), so that the
# bilaplacian vanishes on every missing pixel; the model and the clipping to the known
# values' range of scikit-image's ``inpaint_biharmonic`` (after Damelin and Hoang, "On
# surface completion and image inpainting by biharmonic functions: numerical aspects",
# 2018), which solves it with a sparse direct solver on the CPU. Here conjugate gradients
# solve it in torch, on the image's device, for 2-D images and 3-D volumes and for every
# channel at once, each channel with its own known pixels. Scattered missing pixels need a
# few dozen plain iterations; wide holes need thousands, so where the plain iterations
# stall the solve goes on with a preconditioner: the inverse of (bilaplacian +
# PRECOND_SHIFT) on the whole grid, diagonal in the cosine basis of the reflecting borders
# and applied with FFTs of the mirrored image (a few hundred iterations for a hole 120
# pixels across). On the CPU, images (not volumes) go to SciPy's sparse LU factorisation
# instead, which is faster there for wide holes.

# plain conjugate-gradient iterations before the preconditioned ones (or the direct solve):
# PLAIN_FIRST, and up to PLAIN_ITERATIONS where the relative residual is then at most
# PLAIN_STALL. After 50 iterations, pixels missing at random (512 and 1024 wide, 50 and
# 80 %) were at 7e-5 or below, wide holes (a disc, a text mask) at 1e-3 or above.
PLAIN_FIRST = 50
PLAIN_STALL = 1e-4
PLAIN_ITERATIONS = 200
# the shift of the preconditioner's bilaplacian (in units of the pixel grid's eigenvalues):
# 0.01 took 60-370 iterations on four 512x512 masks, from pixels missing at random to a
# hole 120 pixels across; 0.001 took three times as many with half the pixels missing,
# and 0.1 stopped 0.04 away from the solution in the wide hole
PRECOND_SHIFT = 0.01
# the most missing pixels of an image on the CPU for which holes that the plain iterations
# leave unsolved (wide ones) go to a sparse direct solve instead of the preconditioned
# iterations: a text mask at 1024x1024 (239470 missing) took 20 s with those
DIRECT_MAX_MISSING = 1 << 19
# iterations between the host's convergence checks
_CHECK_EVERY = 25


def _laplacian(u: torch.Tensor) -> torch.Tensor:
    """The discrete Laplacian of ``(B, C, *spatial)`` along every spatial axis, with
    reflecting borders: the sum over axes of (next - this) - (this - previous), where a
    neighbour past the border counts as this pixel. A symmetric operator."""
    out = torch.zeros_like(u)
    nd = u.dim() - 2
    for axis in range(2, u.dim()):
        if u.shape[axis] < 2:
            continue
        d = torch.diff(u, dim=axis)
        k = 2 * (u.dim() - 1 - axis)
        after = [0, 0] * nd
        after[k + 1] = 1  # one more at the end of the axis
        before = [0, 0] * nd
        before[k] = 1  # one more at its start
        out = out + F.pad(d, after) - F.pad(d, before)
    return out


def _bilaplacian(u: torch.Tensor) -> torch.Tensor:
    return _laplacian(_laplacian(u))


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-channel inner products of ``(B, C, *spatial)``, as ``(B, C, 1, ...)``."""
    return (a * b).sum(dim=tuple(range(2, a.dim())), keepdim=True)


class _Preconditioner:
    """r -> (bilaplacian + shift)^-1 r on the whole grid: the reflecting Laplacian is
    diagonal in the cosine basis, which is the Fourier basis of the image mirrored along
    every axis."""

    def __init__(self, like: torch.Tensor, shift: float):
        self.axes = [a for a in range(2, like.dim()) if like.shape[a] > 1]
        eig = torch.zeros((), dtype=like.dtype, device=like.device)
        for a in self.axes:
            m = 2 * like.shape[a]
            k = torch.arange(m // 2 + 1 if a == self.axes[-1] else m, dtype=like.dtype,
                             device=like.device)
            lam = 2.0 - 2.0 * torch.cos(2.0 * torch.pi * k / m)
            shape = [1] * (like.dim() - 2)
            shape[a - 2] = -1
            eig = eig + lam.view(shape)
        self.scale = 1.0 / (eig * eig + shift)
        self.size = [2 * like.shape[a] for a in self.axes]

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        ext = r
        for a in self.axes:
            ext = torch.cat([ext, ext.flip(a)], dim=a)
        spec = torch.fft.rfftn(ext, dim=self.axes) * self.scale
        out = torch.fft.irfftn(spec, s=self.size, dim=self.axes)
        for a in self.axes:
            out = out.narrow(a, 0, r.shape[a])
        return out


def _pcg(u: torch.Tensor, fmask: torch.Tensor, scale: torch.Tensor, tol: float,
         max_iter: int, precondition) -> tuple[torch.Tensor, int, float]:
    """Conjugate gradients on the free pixels (``fmask`` 1) of ``u`` (the known pixels
    hold their values, the free ones the current guess), preconditioned by
    ``precondition`` where given. Stops when every channel's residual is below ``tol``
    times ``scale`` (its right-hand side's norm) or after ``max_iter`` iterations; returns
    the surface, the iterations run and the largest relative residual."""

    def apply(r):
        return fmask * precondition(r) if precondition is not None else r

    r = -fmask * _bilaplacian(u)
    z = apply(r)
    p = z
    rz = _dot(r, z)
    worst = float((_dot(r, r).sqrt() / scale).max())
    done = 0
    while done < max_iter and worst > tol:
        for _ in range(min(_CHECK_EVERY, max_iter - done)):
            ap = fmask * _bilaplacian(p)
            alpha = rz / _dot(p, ap).clamp_min(1e-30)
            u = u + alpha * p
            r = r - alpha * ap
            z = apply(r)
            rz_new = _dot(r, z)
            p = z + (rz_new / rz.clamp_min(1e-30)) * p
            rz = rz_new
            done += 1
        worst = float((_dot(r, r).sqrt() / scale).max())
    return u, done, worst


def biharmonic(values: torch.Tensor, known: torch.Tensor, *, tol: float = 1e-6,
               max_iter: int = 2000) -> tuple[torch.Tensor, dict]:
    """Fill the pixels of ``values`` (``(B, C, *spatial)``, 2 or 3 spatial axes) where
    ``known`` (bool, broadcastable to it) is False with the biharmonic interpolation of
    the known ones of the same channel, clipped to the range of those; known pixels keep
    their value. ``tol`` is the relative residual at which the conjugate gradients stop,
    ``max_iter`` the most iterations. Returns the filled tensor and a dict with the
    ``iterations`` run (plain and preconditioned), the final relative ``residual`` and
    whether the sparse ``direct`` solve took over (images on the CPU with wide holes). A
    channel without any known pixel is 0."""
    if values.dim() not in (4, 5):
        raise ValueError(f"values: expected (B, C, H, W) or (B, C, D, H, W), got shape "
                         f"{tuple(values.shape)}")
    known = known.to(torch.bool).expand_as(values)
    lead = (*values.shape[:2], *[1] * (values.dim() - 2))
    has_any = known.flatten(2).any(-1).view(lead)
    free = ~known & has_any
    info = {"iterations": 0, "residual": 0.0, "direct": False}
    where = free.flatten(0, 1).any(0).nonzero()
    if not len(where):
        return torch.where(has_any, values, torch.zeros_like(values)), info
    # The equations of the missing pixels reach two pixels from them: the solve needs only
    # the box around them widened by two (a hole far from the borders is solved on its
    # own box, not on the whole image).
    box = (slice(None), slice(None)) + tuple(
        slice(max(int(lo) - 2, 0), min(int(hi) + 3, n))
        for lo, hi, n in zip(where.amin(0), where.amax(0), values.shape[2:]))
    v, k, f = values[box], known[box], free[box]
    fmask = f.to(values.dtype)
    rhs = -fmask * _bilaplacian(torch.where(f, torch.zeros_like(v), v))
    scale = _dot(rhs, rhs).sqrt().clamp_min(1e-30)
    u = push_pull(v, k)  # known pixels keep their values
    u, plain, worst = _pcg(u, fmask, scale, tol, min(PLAIN_FIRST, max_iter), None)
    if tol < worst <= PLAIN_STALL:  # converging: go on with plain iterations
        u, again, worst = _pcg(u, fmask, scale, tol, min(PLAIN_ITERATIONS, max_iter) - plain,
                               None)
        plain += again
    more = 0
    direct = (worst > tol and v.device.type == "cpu" and v.dim() == 4
              and int(f.sum()) <= DIRECT_MAX_MISSING)
    if direct:  # wide holes of an image on the CPU: a sparse direct solve is faster
        u = _direct(v, f)
        worst = 0.0
    elif worst > tol and plain < max_iter:
        u, more, worst = _pcg(u, fmask, scale, tol, max_iter - plain,
                              _Preconditioner(v, PRECOND_SHIFT))
    # clipped to the range of the channel's known values, as scikit-image clips
    dims = tuple(range(2, values.dim()))
    big = torch.finfo(values.dtype).max
    lo = torch.where(known, values, big).amin(dim=dims, keepdim=True)
    hi = torch.where(known, values, -big).amax(dim=dims, keepdim=True)
    out = values.clone()
    out[box] = torch.where(f, torch.minimum(torch.maximum(u, lo), hi), v)
    info = {"iterations": plain + more, "residual": worst, "direct": direct}
    return torch.where(has_any, out, torch.zeros_like(out)), info


def _direct(values: torch.Tensor, free: torch.Tensor) -> torch.Tensor:
    """The same equations as the conjugate gradients', for ``(B, C, H, W)`` on the CPU,
    solved by SciPy's sparse LU factorisation (one per distinct mask)."""
    import numpy as np
    import scipy.sparse as sp
    from scipy.sparse.linalg import splu

    def second_difference(n: int):
        if n < 2:
            return sp.csr_matrix((n, n))
        main = np.full(n, -2.0)
        main[0] = main[-1] = -1.0  # reflecting borders
        return sp.diags([np.ones(n - 1), main, np.ones(n - 1)], [-1, 0, 1])

    h, w = values.shape[2:]
    lap = (sp.kron(second_difference(h), sp.identity(w))
           + sp.kron(sp.identity(h), second_difference(w))).tocsr()
    system = (lap @ lap).tocsr()
    out = values.detach().to(torch.float64).clone()
    masks = free.flatten(2).cpu().numpy()
    flat = out.flatten(2).numpy()  # a view: the solutions go straight into out
    solved: dict[bytes, tuple] = {}
    for b in range(masks.shape[0]):
        for c in range(masks.shape[1]):
            m = masks[b, c]
            if not m.any():
                continue
            key = np.packbits(m).tobytes()
            if key not in solved:
                rows = system[m]
                solved[key] = (splu(rows[:, m].tocsc()), rows[:, ~m])
            lu, coupling = solved[key]
            flat[b, c, m] = lu.solve(-(coupling @ flat[b, c, ~m]))
    return out.to(values.dtype)


def gap_depth(known: torch.Tensor, limit: int = 64) -> torch.Tensor:
    """The chessboard distance of every pixel to the nearest known one, for a boolean
    ``known`` of shape ``(C, *spatial)`` (2-D or 3-D, each channel on its own): 0 on known
    pixels, 1 next to them, and so on up to ``limit`` (deeper pixels stay at ``limit``)."""
    pool = F.max_pool2d if known.dim() == 3 else F.max_pool3d
    cover = known.float()[None]
    depth = torch.zeros_like(cover)
    for _ in range(limit):
        missing = cover == 0
        if not bool(missing.any()):
            break
        depth += missing.float()
        cover = pool(cover, 3, stride=1, padding=1)
    return depth[0]


def around(gaps: torch.Tensor, width: int) -> torch.Tensor:
    """The pixels within ``width`` (chessboard distance) of ``gaps`` but not in them:
    the band of that width around the gaps, same layout as ``gap_depth``."""
    pool = F.max_pool2d if gaps.dim() == 3 else F.max_pool3d
    grown = gaps.float()[None]
    for _ in range(width):  # a 3-wide maximum, width times: cheaper than one wide one
        grown = pool(grown, 3, stride=1, padding=1)
    return (grown[0] > 0) & ~gaps
