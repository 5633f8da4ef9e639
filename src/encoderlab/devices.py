"""The device a model runs on for inference (``encoderlab-predict``, ``encoderlab-embed``, ``Embedder``)."""

from __future__ import annotations

import torch

from encoderlab.errors import UserError


def resolve_device(name: str | torch.device, key: str = "--device") -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when available) as a device; ``key`` is how the user
    gave it (an option, or the ``device`` argument of the Python API), for the one-line error."""
    if isinstance(name, torch.device):
        device = name
    elif name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(name)
        except RuntimeError:
            raise UserError(f"unknown device {name!r} — pass {key} cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{key} {name} but no CUDA device is available — pass {key} cpu")
    return device
