"""Choosing the torch device and dtype for a model: ``"auto"`` means cuda, then mps, then cpu.

Imported only by model back-ends, never by ``import tfvtg``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tfvtg.errors import InputError, ModelError

if TYPE_CHECKING:
    import torch

__all__ = ["resolve_device", "resolve_dtype"]

_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}


def resolve_device(device: str | None = "auto") -> torch.device:
    """The torch device for ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``).

    Raises:
        ModelError: The requested accelerator is not available on this machine.
        InputError: The name is not a device torch knows.
    """
    import torch

    name = (device or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise InputError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(
            f"device {device!r} requested but CUDA is not available here; use --device cpu or auto"
        )
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ModelError(
            f"device {device!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
        )
    if resolved.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ModelError(
            f"device {device!r} requested but MPS is not available here; use --device cpu or auto"
        )
    return resolved


def resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """The compute dtype: bfloat16 on CUDA and float32 elsewhere unless ``dtype`` names one.

    Raises:
        InputError: ``dtype`` is not one of float32/fp32, float16/fp16, bfloat16/bf16 or auto.
    """
    import torch

    if dtype is None or str(dtype).lower() == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    name = _DTYPES.get(str(dtype).lower())
    if name is None:
        raise InputError(f"unknown dtype {dtype!r}; use auto, float32, float16 or bfloat16")
    return getattr(torch, name)
