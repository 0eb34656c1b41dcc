"""Adam on one flat parameter buffer, with state that can be saved and restored on the device.

All parameters of the net become views into one contiguous tensor and their gradients are
gathered into another, so that the update, the Langevin noise of SGLD and the backtracking copy are a
handful of whole-buffer operations instead of hundreds of small ones, and the step count and
learning rate are device tensors (nothing waits for the host). The arithmetic is that of
``torch.optim.Adam`` (L2 weight decay added to the gradient).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class FlatAdam:
    def __init__(
        self,
        net: nn.Module,
        *,
        lr: float,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        schedule: tuple[int, float] | None = None,
    ) -> None:
        params = [p for p in net.parameters() if p.requires_grad]
        device = params[0].device
        total = sum(p.numel() for p in params)
        self.data = torch.empty(total, device=device, dtype=torch.float32)
        self.grad = torch.zeros(total, device=device, dtype=torch.float32)
        self.conv_mask = torch.zeros(total, device=device, dtype=torch.float32)
        offset = 0
        # each parameter keeps its memory layout (e.g. channels-last convolution weights):
        # it is stored in the order of its strides and viewed back in its logical shape
        self.orders = []
        for p in params:
            n = p.numel()
            order = sorted(range(p.dim()), key=lambda d: (-p.stride(d), d))
            stored = p.detach().permute(order)
            self.data[offset:offset + n].copy_(stored.reshape(-1))
            inverse = sorted(range(p.dim()), key=lambda d: order[d])
            p.data = self.data[offset:offset + n].view(stored.shape).permute(inverse)
            if p.dim() >= 4:  # convolution weights (4-D in 2-D nets, 5-D in 3-D nets)
                self.conv_mask[offset:offset + n] = 1.0
            offset += n
            self.orders.append(order)
        self.params = params
        self.exp_avg = torch.zeros_like(self.data)
        self.exp_avg_sq = torch.zeros_like(self.data)
        self.step_count = torch.zeros((), device=device, dtype=torch.float32)
        self.base_lr = lr
        self.lr = torch.full((), lr, device=device, dtype=torch.float32)
        self.weight_decay = weight_decay
        self.beta1, self.beta2 = betas
        self.eps = eps
        # cosine decay from lr to lr * final_fraction over `steps`, computed on the device
        self.schedule = schedule if schedule is not None and schedule[1] < 1.0 else None

    def backward(self, loss: torch.Tensor) -> None:
        """Compute the gradient of ``loss`` into the flat gradient buffer."""
        grads = torch.autograd.grad(loss, self.params)
        torch.cat([g.permute(o).reshape(-1) for g, o in zip(grads, self.orders)], out=self.grad)

    def step(self) -> None:
        g = self.grad
        if self.weight_decay:
            g = g.add(self.data, alpha=self.weight_decay)
        if self.schedule is not None:
            steps, final = self.schedule
            frac = torch.clamp(self.step_count / max(steps - 1, 1), max=1.0)
            self.lr.copy_(self.base_lr * (final + (1 - final) * 0.5 * (1 + torch.cos(math.pi * frac))))
        self.step_count.add_(1.0)
        self.exp_avg.lerp_(g, 1.0 - self.beta1)
        self.exp_avg_sq.mul_(self.beta2).addcmul_(g, g, value=1.0 - self.beta2)
        bc1 = 1.0 - torch.pow(self.beta1, self.step_count)
        bc2_sqrt = torch.sqrt(1.0 - torch.pow(self.beta2, self.step_count))
        denom = (self.exp_avg_sq.sqrt() / bc2_sqrt).add_(self.eps)
        self.data.sub_(self.exp_avg / denom * (self.lr / bc1))

    def add_langevin_noise(self, scale: float, generator: torch.Generator) -> None:
        """Add N(0, (scale * lr)^2) to every convolution weight (Cheng et al., 2019)."""
        noise = torch.randn(self.data.shape, generator=generator, device=generator.device)
        noise = noise.to(self.data.device)
        self.data.add_(noise * self.conv_mask * (self.lr * scale))

    # -- checkpoints for backtracking ---------------------------------------------------
    def state_tensors(self) -> list[torch.Tensor]:
        return [self.data, self.exp_avg, self.exp_avg_sq]


class Backtracker:
    """Undo steps whose data fit drops by more than ``db`` decibels (DIP's backtracking).

    Keeps, on the device, a copy of the weights *and* the Adam state of the last good step.
    Before the update, :meth:`check` compares the step's loss with the last good loss; after
    the update, :meth:`undo_if_bad` restores the copy when the step was bad, so the bad
    update is discarded as a whole. Decisions are device tensors: no host synchronisation.
    """

    def __init__(self, opt: FlatAdam, db: float) -> None:
        self.opt = opt
        self.factor = 10.0 ** (db / 10.0)
        self.saved = [t.clone() for t in opt.state_tensors()]
        self.saved_loss = torch.full((), float("inf"), device=opt.data.device)
        self.bad = torch.zeros((), dtype=torch.bool, device=opt.data.device)

    def check(self, loss: torch.Tensor) -> torch.Tensor:
        """Call before the update with this step's loss; returns the 'bad' flag tensor."""
        loss = loss.detach()
        # in place throughout: a captured CUDA graph replays on these very tensors
        self.bad.copy_(loss > self.saved_loss * self.factor)
        for saved, live in zip(self.saved, self.opt.state_tensors()):
            saved.copy_(torch.where(self.bad, saved, live))
        self.saved_loss.copy_(torch.where(self.bad, self.saved_loss, loss))
        return self.bad

    def undo_if_bad(self) -> None:
        """Call after the update: a bad step returns to the last good weights and state."""
        for saved, live in zip(self.saved, self.opt.state_tensors()):
            live.copy_(torch.where(self.bad, saved, live))
