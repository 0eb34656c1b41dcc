"""Generator networks: the "skip" encoder-decoder of the Deep Image Prior, in 2-D and 3-D.

The architecture follows Ulyanov et al. (CVPR 2018) and their public code (Apache-2.0):
at every scale a stride-2 3x3 conv, a 3x3 conv, a deeper scale, upsampling, a
concatenation with a 1x1 skip branch, a 3x3 conv and a 1x1 conv, each followed by
normalisation and LeakyReLU(0.2); a final 1x1 conv and a sigmoid. With the paper's
settings (128 channels, 5 scales, 4 skip channels, 32 input channels) the net has
2,217,831 parameters for three output channels.

The forward pass has no data-dependent Python branches, so it traces and captures cleanly.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import DIPConfig


def _conv(nd: int, cin: int, cout: int, k: int, stride, padding: str, groups: int = 1) -> nn.Module:
    """A convolution of ``groups`` independent nets side by side (``cin``/``cout`` per net)."""
    cls = nn.Conv2d if nd == 2 else nn.Conv3d
    mode = {"reflect": "reflect", "zeros": "zeros", "replicate": "replicate"}[padding]
    return cls(cin * groups, cout * groups, k, stride=stride, padding=(k - 1) // 2,
               padding_mode=mode, bias=True, groups=groups)


def _norm(nd: int, channels: int, kind: str) -> nn.Module:
    # per-channel statistics: with several nets side by side each keeps its own
    if kind == "batch":
        return (nn.BatchNorm2d if nd == 2 else nn.BatchNorm3d)(channels)
    if kind == "instance":
        return (nn.InstanceNorm2d if nd == 2 else nn.InstanceNorm3d)(channels, affine=True)
    return nn.Identity()


def _block(nd: int, cin: int, cout: int, k: int, stride, cfg: DIPConfig) -> nn.Sequential:
    return nn.Sequential(
        _conv(nd, cin, cout, k, stride, cfg.padding, cfg.members),
        _norm(nd, cout * cfg.members, cfg.norm),
        nn.LeakyReLU(0.2, inplace=True),
    )


class _Scale(nn.Module):
    """One scale of the skip net; ``inner`` is the next (coarser) scale or None."""

    def __init__(
        self, nd: int, cin: int, cfg: DIPConfig, inner: nn.Module | None,
        factors: tuple[int, ...],
    ) -> None:
        super().__init__()
        w, s = cfg.width, cfg.skip_channels
        self.skip = _block(nd, cin, s, 1, 1, cfg) if s > 0 else None
        self.down = nn.Sequential(_block(nd, cin, w, 3, factors, cfg), _block(nd, w, w, 3, 1, cfg))
        self.inner = inner
        mode = cfg.upsample
        if mode == "bilinear" and nd == 3:
            mode = "trilinear"
        self.up = nn.Upsample(
            scale_factor=tuple(float(f) for f in factors), mode=mode, align_corners=None if mode == "nearest" else False
        )
        self.post_norm = _norm(nd, (s + w) * cfg.members, cfg.norm)
        self.fuse = nn.Sequential(_block(nd, s + w, w, 3, 1, cfg), _block(nd, w, w, 1, 1, cfg))
        self.members = cfg.members

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.down(x)
        if self.inner is not None:
            y = self.inner(y)
        y = self.up(y)
        if self.skip is not None:
            skip = self.skip(x)
            if self.members == 1:
                y = torch.cat([skip, y], dim=1)
            else:  # concatenate net by net: [skip_k, y_k] for every member k
                k = self.members
                y = torch.cat([skip.unflatten(1, (k, -1)), y.unflatten(1, (k, -1))], dim=2)
                y = y.flatten(1, 2)
        return self.fuse(self.post_norm(y))


class SkipNet(nn.Module):
    """The DIP "skip" encoder-decoder for ``nd``-dimensional images (2 or 3).

    Input ``(B, input_channels, *spatial)``, output ``(B, out_channels, *spatial)`` in
    (0, 1). With ``cfg.members = K > 1`` the module holds K independent nets side by side
    (grouped convolutions, per-member normalisation): input ``(B, K * input_channels, ...)``,
    output ``(B, K * out_channels, ...)``, member k in the k-th block of channels. Each
    member is initialised and computes exactly like a net of its own, but all run in one
    pass, which keeps a GPU busy where one small net cannot. ``levels`` gives, per spatial axis, at how many of the ``cfg.scales`` scales
    that axis is halved (default: all); a short axis, such as the few planes of a thin
    volume, is then halved less often instead of being padded. Every spatial size must be
    a multiple of ``2 ** levels[axis]``.
    """

    def __init__(
        self, cfg: DIPConfig, out_channels: int, nd: int = 2,
        levels: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        if nd not in (2, 3):
            raise ValueError(f"nd: expected 2 or 3 spatial dimensions, got {nd}")
        levels = tuple(levels) if levels is not None else (cfg.scales,) * nd
        if len(levels) != nd or not all(0 <= v <= cfg.scales for v in levels):
            raise ValueError(f"levels: expected {nd} values in [0, {cfg.scales}], got {levels}")
        inner: nn.Module | None = None
        for level in reversed(range(cfg.scales)):
            cin = cfg.input_channels if level == 0 else cfg.width
            factors = tuple(2 if level < v else 1 for v in levels)
            inner = _Scale(nd, cin, cfg, inner, factors)
        self.body = inner
        k = cfg.members
        self.head = (nn.Conv2d if nd == 2 else nn.Conv3d)(cfg.width * k, out_channels * k, 1,
                                                          groups=k)
        self.nd = nd
        self.multiples = tuple(2**v for v in levels)
        self.members = k
        self._build = (cfg, out_channels, levels)

    def member(self, i: int) -> SkipNet:
        """Member ``i`` of a grouped net as a net of its own (a copy of its weights and
        normalisation statistics)."""
        cfg, out_channels, levels = self._build
        k = self.members
        if not 0 <= i < k:
            raise ValueError(f"i: expected a member in [0, {k}), got {i}")
        with torch.random.fork_rng(devices=[]):  # its own draws are overwritten below
            one = SkipNet(cfg.replace(members=1), out_channels, nd=self.nd, levels=levels)
        mine = dict(self.named_parameters())
        mine.update(self.named_buffers())
        with torch.no_grad():
            for name, t in list(one.named_parameters()) + list(one.named_buffers()):
                source = mine[name]
                if source.dim() == 0:  # BatchNorm's count of batches
                    t.copy_(source)
                else:  # every tensor's first axis holds the members' blocks in turn
                    if source.shape != (k * t.shape[0], *t.shape[1:]):
                        raise RuntimeError(f"{name}: expected {k} members' blocks along "
                                           f"the first axis, got shape "
                                           f"{tuple(source.shape)} for {tuple(t.shape)}")
                    t.copy_(source.reshape(k, -1)[i].view_as(t))
        return one.to(next(self.parameters()))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(self.body(z)))


class Members(nn.Module):
    """The K members of a grouped :class:`SkipNet` as K nets of their own, run one after
    the other: the same input and output layout (member k in the k-th block of channels),
    the same weights, the same function.

    Grouped convolutions keep a GPU busy where one small net cannot, but on a CPU they
    cost more per member than a net of its own (see ``engine.SEPARATE_MEMBERS``), so the
    engine runs members this way there. Made from a grouped net, so that a seed draws
    the same weights whichever way the members run.
    """

    def __init__(self, grouped: SkipNet) -> None:
        super().__init__()
        k = grouped.members
        if k < 2:
            raise ValueError(f"grouped: expected a net of several members, got {k}")
        self.members = k
        self.nd = grouped.nd
        self.multiples = grouped.multiples
        self.nets = nn.ModuleList(grouped.member(i) for i in range(k))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.shape[1] % self.members:
            raise ValueError(f"z: expected a multiple of {self.members} channels (one block "
                             f"per member), got {z.shape[1]}")
        return torch.cat([net(part) for net, part in zip(self.nets, z.chunk(self.members, 1))],
                         1)


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def make_input(
    cfg: DIPConfig, spatial: tuple[int, ...], *, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """The fixed input code z: uniform(0, 1) * ``input_scale``, shape (1, C, *spatial),
    with C = ``input_channels`` per ensemble member (each member has its own code)."""
    z = torch.rand((1, cfg.input_channels * cfg.members, *spatial), generator=generator,
                   device="cpu")
    return (z * cfg.input_scale).to(device)


def axis_levels(spatial: tuple[int, ...], scales: int) -> tuple[int, ...]:
    """How many times each axis is halved: ``scales``, or fewer for a short axis, so that
    the coarsest scale keeps at least two pixels without padding the axis beyond its size
    rounded up to the next multiple."""
    out = []
    for s in spatial:
        n = 0
        while n < scales and s / 2 ** (n + 1) >= 2:
            n += 1
        out.append(max(n, 1))
    return tuple(out)
