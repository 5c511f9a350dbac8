"""Where a model runs and in which numerics: the one device and precision policy of every model back-end.

Device: ``"auto"`` means cuda, then mps, then cpu; ``cuda:N`` is made the current CUDA device when a model is
placed there (`place_on`), so pinned host memory and new CUDA contexts go to that GPU, not to GPU 0.

Precision of an image encoder (`resolve_precision`), recorded in feature files as ``precision``:

* ``autocast-float16``: float32 weights, the image forward pass under ``torch.autocast(float16)``, the
  parts kept in float32 outside it (BLIP-2's Q-Former) allowed TF32 tensor cores. The default on CUDA. It is
  what the official TFVTG extraction does (LAVIS ``vit_precision: fp32`` inside ``maybe_autocast``, fp16 on
  CUDA), so the features match the official files up to kernel differences; fp16 tensor cores exist on every
  CUDA card from Volta (compute capability 7.0) on.
* ``float32``: float32 weights, no autocast, no TF32. The default elsewhere (CPU, MPS).
* ``bfloat16`` / ``float16``: the weights cast to that dtype; only when asked for. Less memory, but bf16
  rounds 8x more coarsely than fp16 and the error compounds over the ViT-g's 39 blocks: similarity noise of
  3e-4 to 2e-3 changes the reference profile's top-1 on 2-22 % of synthetic curves (issue 16).

Whole-model dtype (`resolve_dtype`, for back-ends cast as a whole such as Qwen2-VL): bfloat16 on CUDA cards of
compute capability 8.0 or newer, float16 on older ones (T4, V100 have no fast bf16), float32 elsewhere. The
capability is read in one place, `cuda_capability`.

Out of memory (`encode_in_batches`): a batch that runs out of accelerator memory is halved and retried, down
to one frame, with a warning; then one error line that suggests only what would help.

Imported only by model back-ends (the constants also by feature-file code); torch is imported inside the
functions, never at ``import tfvtg`` time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tfvtg.errors import InputError, ModelError

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = [
    "OFFICIAL_PRECISION",
    "PRECISIONS",
    "Precision",
    "cuda_capability",
    "encode_in_batches",
    "is_out_of_memory",
    "out_of_memory_message",
    "place_on",
    "precision_name",
    "resolve_device",
    "resolve_dtype",
    "resolve_precision",
]

logger = logging.getLogger("tfvtg.device")

AUTOCAST_FP16 = "autocast-float16"
OFFICIAL_PRECISION = AUTOCAST_FP16  # how the official TFVTG feature files were made
PRECISIONS = ("float32", AUTOCAST_FP16, "float16", "bfloat16")

_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}
_AUTOCAST_NAMES = {AUTOCAST_FP16, "autocast", "amp", "autocast-fp16", "fp16-autocast", "fp32+fp16-autocast"}
_FIRST_FAST_BF16 = (8, 0)  # Ampere: bf16 tensor cores


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


def place_on(device: torch.device) -> None:
    """Make ``device`` the current CUDA device when it names one (``cuda:N``); a no-op elsewhere.

    Pinned host memory and lazily created CUDA contexts go to the current device, GPU 0 unless told: without
    this, a model on ``cuda:1`` still takes memory on GPU 0. Called when a model is loaded.
    """
    import torch

    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)


def cuda_capability(device: torch.device) -> tuple[int, int]:
    """(major, minor) compute capability of a CUDA device; the only place it is queried."""
    import torch

    return tuple(torch.cuda.get_device_capability(device))  # type: ignore[return-value]


def _fast_bf16(device: torch.device) -> bool:
    return device.type == "cuda" and cuda_capability(device) >= _FIRST_FAST_BF16


def _dtype_name(dtype: str | None) -> str | None:
    """The canonical name of ``dtype`` (None for auto); autocast names map to ``autocast-float16``."""
    if dtype is None or str(dtype).strip().lower() == "auto":
        return None
    key = str(dtype).strip().lower()
    if key in _AUTOCAST_NAMES:
        return AUTOCAST_FP16
    name = _DTYPES.get(key)
    if name is None:
        raise InputError(
            f"unknown dtype {dtype!r}; use auto, {AUTOCAST_FP16}, float32, float16 or bfloat16"
        )
    return name


def _warn_slow_bf16(device: torch.device) -> None:
    if device.type == "cuda" and not _fast_bf16(device):
        major, minor = cuda_capability(device)
        logger.warning("bfloat16 on a GPU of compute capability %d.%d (before Ampere) is emulated and slow; "
                       "%s or float16 is faster there", major, minor, AUTOCAST_FP16)


def resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """The dtype a whole model is cast to: ``dtype``, or for None/``"auto"`` bfloat16 on CUDA cards of compute
    capability 8.0 or newer, float16 on older CUDA cards and float32 elsewhere.

    For back-ends cast as a whole (Qwen2-VL). Image encoders take a `resolve_precision` instead.

    Raises:
        InputError: ``dtype`` is not one of float32/fp32, float16/fp16, bfloat16/bf16 or auto; or it names
            autocast, which is a precision of the frame encoders, not a dtype.
    """
    import torch

    name = _dtype_name(dtype)
    if name == AUTOCAST_FP16:
        raise InputError(f"{dtype!r} is a precision of the frame encoders; this model is cast as a whole: "
                         f"use float32, float16 or bfloat16")
    if name is None:
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if _fast_bf16(device) else torch.float16
    if name == "bfloat16":
        _warn_slow_bf16(device)
    return getattr(torch, name)


@dataclass(frozen=True)
class Precision:
    """How an image encoder computes: the dtype of its weights and the autocast around its forward pass.

    Attributes:
        name: One of `PRECISIONS`; stored in feature files.
        weights: dtype of the image tower's weights (and of the pixels when there is no autocast).
        autocast: dtype of the autocast region around the image forward pass, or None.
        device_type: ``"cuda"``, ``"cpu"`` or ``"mps"``: where the autocast and TF32 apply.
        tf32: Whether the float32 parts after the image tower may use TF32 tensor cores on CUDA (all but
            ``float32``, which stays exact).
    """

    name: str
    weights: torch.dtype
    autocast: torch.dtype | None
    device_type: str
    tf32: bool = True

    def __str__(self) -> str:
        return self.name

    @property
    def pixel_dtype(self) -> torch.dtype:
        """The dtype pixels are handed over in: the autocast dtype when there is one (the first layer, a patch
        convolution, casts them to it anyway: same values, half the memory), else the weights'."""
        return self.autocast if self.autocast is not None else self.weights

    def image_forward(self) -> AbstractContextManager[Any]:
        """The context the image tower runs in: the autocast, or nothing."""
        if self.autocast is None:
            return nullcontext()
        import torch

        return torch.autocast(self.device_type, dtype=self.autocast)

    def float32_part(self) -> AbstractContextManager[Any]:
        """The context of the float32 parts after the image tower (BLIP-2's Q-Former and projection): TF32
        matmuls allowed on CUDA when ``tf32`` (restored after); nothing elsewhere. TF32 rounds matmul inputs
        to fp16's 10-bit mantissa but keeps fp32 range and accumulation: a smaller change than the fp16
        autocast of the tower before it, for 15-19 % of the image time on an H100 (issue 16). The flag is
        process-wide: an encoder in another thread may find it restored early, which costs speed, never
        accuracy."""
        if self.device_type != "cuda" or not self.tf32:
            return nullcontext()
        return _tf32_allowed()


@contextmanager
def _tf32_allowed() -> Iterator[None]:
    import torch

    matmul = torch.backends.cuda.matmul
    before = matmul.allow_tf32
    matmul.allow_tf32 = True
    try:
        yield
    finally:
        matmul.allow_tf32 = before


def precision_name(dtype: str | None, device_type: str) -> str:
    """The name of the precision `resolve_precision` picks for ``dtype`` on a device of ``device_type``.

    Pure (no torch): what an encoder loaded elsewhere (a Ray actor) will record, known before it loads.

    Raises:
        InputError: An unknown name.
    """
    name = _dtype_name(dtype)
    if name is None:
        return AUTOCAST_FP16 if device_type == "cuda" else "float32"
    return name


def resolve_precision(dtype: str | None, device: torch.device) -> Precision:
    """The precision of an image encoder on ``device``.

    Args:
        dtype: None/``"auto"`` (``autocast-float16`` on CUDA, ``float32`` elsewhere), ``"autocast-float16"``
            (also ``autocast``, ``amp``), ``"float32"``, ``"float16"`` or ``"bfloat16"`` (short forms too).
        device: Where the encoder runs.

    Raises:
        InputError: An unknown name.
    """
    import torch

    name = precision_name(dtype, device.type)
    if name == AUTOCAST_FP16:
        return Precision(AUTOCAST_FP16, torch.float32, torch.float16, device.type)
    if name == "bfloat16":
        _warn_slow_bf16(device)
    return Precision(name, getattr(torch, name), None, device.type, tf32=name != "float32")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an accelerator out-of-memory error (CUDA, or MPS's RuntimeError)."""
    import torch

    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    return isinstance(exc, oom) or (isinstance(exc, RuntimeError) and "MPS backend out of memory" in str(exc))


def _free_cached_memory(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()


def encode_in_batches(
    encode: Callable[[np.ndarray], np.ndarray],
    frames: np.ndarray,
    out: np.ndarray,
    batch_size: int,
    *,
    device: torch.device,
    precision: Precision,
) -> int:
    """Fill ``out[i]`` with ``encode(frames[a:b])`` batch by batch, halving the batch on out-of-memory.

    ``encode`` does the whole batch (preprocessing included, so its tensors count too) and returns host rows.
    A batch that runs out of accelerator memory is retried at half the size with a warning, down to one frame;
    the smaller size is kept for the remaining batches and returned, so the caller can keep it too.

    Raises:
        ModelError: Still out of memory at one frame; the message suggests a lower precision only when one
            would help (never the precision already in use).
    """
    start = 0
    while start < len(frames):
        stop = min(start + batch_size, len(frames))
        try:
            out[start:stop] = encode(frames[start:stop])
            start = stop
            continue
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
        # Out of the except block, the traceback (and the failed batch's tensors it holds) is gone: free them.
        _free_cached_memory(device)
        if stop - start == 1:
            raise ModelError(out_of_memory_message(device, precision, "encoding even one frame at a time"))
        batch_size = (stop - start) // 2
        logger.warning("out of memory on %s encoding %d frames; retrying with batches of %d",
                       device, stop - start, batch_size)
    return batch_size


def out_of_memory_message(device: torch.device, precision: Precision, doing: str) -> str:
    """One error line for running out of memory while ``doing`` something, suggesting a lower precision only
    when one would help (never the precision already in use)."""
    full_weights = precision.name in ("float32", AUTOCAST_FP16)
    lower = " or --dtype float16 (half the weight memory)" if full_weights else ""
    return (f"out of memory on {device} {doing} ({precision.name}); free memory on the device (other "
            f"processes){lower}, or use --device cpu")
