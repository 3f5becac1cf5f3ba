"""Devices and dtypes by name, with clear errors."""

from __future__ import annotations

import torch

from ..errors import ConfigError

__all__ = ["resolve_device", "resolve_dtype"]


def resolve_device(name: str | torch.device) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N`` as a torch device, or a clear error."""
    text = str(name)
    try:
        device = torch.device(text)
    except RuntimeError:
        raise ConfigError(f"device '{text}' is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device '{text}' was asked for but CUDA is not available on this machine "
                "(torch.cuda.is_available() is False); use --device cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device '{text}': this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    elif device.type not in ("cpu", "mps"):
        raise ConfigError(f"device '{text}' is not supported; use cpu, cuda or cuda:N")
    return device


def resolve_dtype(name: str | torch.dtype) -> torch.dtype:
    """``float32`` or ``float64`` as a torch dtype, or a clear error."""
    if isinstance(name, torch.dtype):
        return name
    table = {"float32": torch.float32, "float64": torch.float64}
    if name not in table:
        raise ConfigError(f"dtype '{name}' is not supported; use float32 or float64")
    return table[name]
