"""Device choice (cuda > mps > cpu), seeds and random generators."""

from __future__ import annotations

import secrets
from typing import Any

import torch


def resolve_device(device: Any = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or a torch.device
    into an available :class:`torch.device`.

    ``"auto"`` picks CUDA when present, then Apple MPS, then the CPU.
    """
    if device is None or (isinstance(device, str) and device.lower() == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device.lower() if isinstance(device, str) else device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device: expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device: {device!r} was asked for but no CUDA GPU is available; "
                             "use device='auto' or 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device: {device!r} does not exist; this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps":
        if not _mps_available():
            raise ValueError(f"device: {device!r} was asked for but Apple MPS is not available")
    elif dev.type != "cpu":
        raise ValueError(f"device: expected 'auto', 'cpu', 'cuda' or 'mps', got {device!r}")
    return dev


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def device_name(dev: torch.device) -> str:
    """A human-readable name, e.g. ``"cuda:0 (NVIDIA H100 80GB HBM3)"``."""
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return dev.type


def resolve_seed(seed: Any) -> int:
    """Validate a seed, or draw a fresh one (reported so that the run can be repeated)."""
    if seed is None:
        return secrets.randbits(31)
    if isinstance(seed, bool) or not isinstance(seed, int):
        try:
            import numpy as np

            if isinstance(seed, np.integer):
                seed = int(seed)
            else:
                raise TypeError
        except TypeError:
            raise TypeError(f"seed: expected a non-negative integer or None, got {seed!r}") from None
    if seed < 0 or seed >= 2**63:
        raise ValueError(f"seed: expected an integer in [0, 2**63), got {seed}")
    return seed


def make_generator(dev: torch.device, seed: int) -> torch.Generator:
    """A random generator on ``dev`` (falls back to the CPU where a backend has none)."""
    try:
        gen = torch.Generator(device=dev)
    except RuntimeError:
        gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def release(dev: torch.device) -> None:
    """Return cached device memory to the system after a run."""
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    elif dev.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()


def is_out_of_memory(exc: BaseException, device: torch.device | None = None) -> bool:
    """True for the errors PyTorch raises when ``device`` runs out of memory. Python's
    MemoryError is the host's memory: it counts only when the run is on the CPU."""
    oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                                  getattr(torch.cuda, "OutOfMemoryError", None)) if t)
    if oom_types and isinstance(exc, oom_types):
        return True
    if isinstance(exc, MemoryError):
        return device is None or device.type == "cpu"
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text
                                              or "can't allocate memory" in text)
