"""What the Hugging Face back-ends (`tfvtg.encoders.blip2`, `tfvtg.encoders.clip`) share.

Loading: a checkpoint is a directory with a ``config.json`` or a Hub id; it is read from the cache first
(no network round trip when the files are there), offline when asked (a directory, ``local_files_only``,
``HF_HUB_OFFLINE``), and every failure becomes one `ModelError` saying what to do. Placing: eval mode, the
weights in the precision's dtype, on the device, running out of memory as one line. Preprocessing: frames of
any size through the checkpoint's image processor, frames already at the model's size through a per-channel
lookup table taken from the processor itself (the same values, on the device). Each back-end keeps what is its
model's own: which checkpoints it accepts, how it builds the model, how it encodes.

torch and transformers are imported inside the functions, never at import time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from tfvtg.device import Precision, out_of_memory_message, place_on
from tfvtg.errors import InputError, ModelError, first_line
from tfvtg.hub import download_hint, offline_env

if TYPE_CHECKING:
    import torch

__all__ = [
    "NotCached",
    "check_frames",
    "check_texts",
    "checkpoint_source",
    "image_fields",
    "load_parts",
    "lut_on_device",
    "pointwise_lut",
    "prepare_model",
    "preprocess_frames",
    "quiet_progress",
]

_Checked = TypeVar("_Checked")


# ---------------------------------------------------------------------- inputs
def check_frames(frames: np.ndarray) -> np.ndarray:
    """``frames`` as an (N, H, W, 3) uint8 array, else an InputError."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise InputError(f"expected frames of shape (N, H, W, 3), got {frames.shape}")
    if frames.dtype != np.uint8:
        raise InputError(f"expected uint8 RGB frames, got dtype {frames.dtype}")
    return frames


def check_texts(texts: Sequence[str] | str) -> list[str]:
    """``texts`` as a list of strings (one string is a list of one), else an InputError."""
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not all(isinstance(t, str) for t in texts):
        raise InputError("encode_texts expects a list of strings")
    return texts


# ---------------------------------------------------------------------- loading
def checkpoint_source(name_or_path: str) -> tuple[str, bool]:
    """(source, is_dir): a directory as its absolute path (it must hold a config.json), or a Hub id."""
    is_dir = Path(name_or_path).expanduser().is_dir()
    source = str(Path(name_or_path).expanduser().resolve()) if is_dir else name_or_path
    if is_dir and not (Path(source) / "config.json").is_file():
        raise ModelError(
            f"cannot load {name_or_path}: the directory has no config.json; point --model at a "
            f"directory written by save_pretrained (or hf download --local-dir)"
        )
    return source, is_dir


class NotCached(ModelError):
    """The files are not all in the local cache; raised only by a cache probe that the network try follows."""


def load_parts(
    source: str,
    is_dir: bool,
    *,
    local_files_only: bool | None,
    cache_dir: str | None,
    check_config: Callable[[str, dict], _Checked],
    load_model: Callable[[str, _Checked, dict], Any],
    memory_note: str = "",
) -> tuple[Any, Any, Any]:
    """Model, image processor and tokenizer of a checkpoint; every failure is a ModelError saying what to do.

    Offline (no network at all) for a directory, ``local_files_only=True`` or ``HF_HUB_OFFLINE``; always the
    Hub's latest files for ``local_files_only=False``; else the cache first, the Hub only when the cache lacks
    a file.

    Args:
        source, is_dir: From `checkpoint_source`.
        local_files_only, cache_dir: As the back-ends' ``from_pretrained`` take them.
        check_config: (source, the checkpoint's ``config.json`` dict) -> what ``load_model`` needs; raises a
            ModelError for a checkpoint of another kind.
        load_model: (source, what ``check_config`` returned, the ``from_pretrained`` keyword arguments) ->
            the model.
        memory_note: Said after "out of memory loading SOURCE" (e.g. how much RAM the checkpoint needs).
    """
    offline = is_dir or local_files_only is True or offline_env()
    kwargs = {"cache_dir": cache_dir, "check_config": check_config, "load_model": load_model,
              "memory_note": memory_note}
    if offline or local_files_only is False:
        return _load_parts_once(source, is_dir, local_files_only=bool(offline), probe=False, **kwargs)
    try:  # Cache first: no network round trip when the files are already there.
        return _load_parts_once(source, is_dir, local_files_only=True, probe=True, **kwargs)
    except NotCached:
        return _load_parts_once(source, is_dir, local_files_only=False, probe=False, **kwargs)


def _load_parts_once(
    source: str,
    is_dir: bool,
    *,
    local_files_only: bool,
    probe: bool,
    cache_dir: str | None,
    check_config: Callable[[str, dict], _Checked],
    load_model: Callable[[str, _Checked, dict], Any],
    memory_note: str,
) -> tuple[Any, Any, Any]:
    import torch
    from safetensors import SafetensorError  # a damaged weights file
    from transformers import AutoImageProcessor, AutoTokenizer, PretrainedConfig

    if is_dir:
        hint = "pass --model a directory written by save_pretrained"
        missing = "the directory is incomplete"
    else:
        hint = download_hint(source)
        missing = (
            "not in the Hugging Face cache and offline (HF_HUB_OFFLINE=1 or local_files_only)"
            if local_files_only
            else "not in the Hugging Face cache and the hub is unreachable (or no such repository)"
        )
    common = {"cache_dir": cache_dir, "local_files_only": local_files_only}
    try:
        config_dict, _ = PretrainedConfig.get_config_dict(source, **common)
    except OSError as exc:
        if probe:
            raise NotCached(f"cannot load {source}: not in the Hugging Face cache") from exc
        detail = f" ({first_line(exc)})" if is_dir else ""  # e.g. a config.json that is not valid JSON
        raise ModelError(f"cannot load {source}: {missing}{detail}; {hint}") from exc
    checked = check_config(source, config_dict)
    try:
        with quiet_progress(local_files_only):
            model = load_model(source, checked, common)
            image_processor = AutoImageProcessor.from_pretrained(source, **common)
            tokenizer = AutoTokenizer.from_pretrained(source, **common)
    except torch.cuda.OutOfMemoryError as exc:
        raise ModelError(f"out of GPU memory loading {source}; free the GPU or use --device cpu") from exc
    except MemoryError as exc:
        raise ModelError(f"out of memory loading {source}{memory_note}") from exc
    except OSError as exc:
        if probe:
            raise NotCached(f"cannot load {source}: not fully in the Hugging Face cache") from exc
        raise ModelError(f"cannot load {source}: {missing} ({first_line(exc)}); {hint}") from exc
    except (ValueError, RuntimeError, KeyError, TypeError, SafetensorError) as exc:
        raise ModelError(
            f"cannot load {source}: broken or incompatible checkpoint files ({first_line(exc)}); "
            f"re-download it or re-save it with save_pretrained"
        ) from exc
    return model, image_processor, tokenizer


@contextmanager
def quiet_progress(quiet: bool) -> Iterator[None]:
    """Hide transformers' weight-loading progress bars for local loads (downloads keep theirs)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    if quiet and was_enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if quiet and was_enabled:
            hf_logging.enable_progress_bar()


def prepare_model(model: Any, cast: Any, device: torch.device, precision: Precision, what: str) -> None:
    """Eval mode, no gradients, ``cast`` (the model or a part of it) in ``precision.weights``, on ``device``.

    Raises:
        ModelError: Out of accelerator memory while moving ``what``; the message says what to try.
    """
    import torch

    try:
        model.eval()
        model.requires_grad_(False)
        cast.to(dtype=precision.weights)
        place_on(device)
        model.to(device=device)
    except torch.cuda.OutOfMemoryError as exc:
        raise ModelError(out_of_memory_message(device, precision, f"moving {what}")) from exc


# ---------------------------------------------------------------------- preprocessing
def image_fields(image_processor: Any, vision_config: Any, name: str) -> dict[str, Any]:
    """The `EncoderConfig` fields the image processor gives: ``image_size``, ``mean`` and ``std``."""
    return {
        "image_size": _checked_image_size(image_processor, vision_config, name),
        "mean": _triple(getattr(image_processor, "image_mean", None), "image_mean", name),
        "std": _triple(getattr(image_processor, "image_std", None), "image_std", name),
    }


def _checked_image_size(image_processor: Any, vision_config: Any, name: str) -> tuple[int, int]:
    """The processor's (height, width), which must be the vision tower's: transformers would otherwise
    silently slice (or fail to broadcast) the position embeddings and give wrong features."""
    size = getattr(image_processor, "size", None)
    height = _get(size, "height")
    width = _get(size, "width")
    if not height or not width:
        raise ModelError(f"cannot use {name}: its image processor has no fixed height/width ({size!r})")
    model_size = getattr(vision_config, "image_size", None)
    expected = tuple(model_size) if isinstance(model_size, (list, tuple)) else (model_size, model_size)
    if (int(height), int(width)) != tuple(int(v) for v in expected):
        raise ModelError(
            f"cannot use {name}: its image processor resizes to {height}x{width} but the model was trained "
            f"at {expected[0]}x{expected[1]}; fix size in preprocessor_config.json or load the matching "
            f"processor"
        )
    return int(height), int(width)


def _get(obj: Any, key: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(key)
    return getattr(obj, key, None)


def _triple(values: Any, what: str, name: str) -> tuple[float, float, float]:
    if values is None or len(values) != 3:
        raise ModelError(f"cannot use {name}: its image processor has no 3-channel {what} ({values!r})")
    return tuple(float(v) for v in values)  # type: ignore[return-value]


def pointwise_lut(image_processor: Any, size: tuple[int, int]) -> np.ndarray | None:
    """Per-channel value table (3, 256) equal to the processor's output on images already at ``size``.

    Taken from the processor itself (``do_resize=False`` on an image holding every value 0-255 per channel),
    so it matches whichever backend the processor uses. None when the processor is not pointwise at that size
    (cropping, padding), in which case every frame goes through the processor.
    """
    if getattr(image_processor, "do_center_crop", False) or getattr(image_processor, "do_pad", False):
        return None
    h, w = size
    values = np.arange(h * w, dtype=np.int64) % 256
    probe = (
        np.stack([values, (values + 85) % 256, (values + 170) % 256], axis=-1)
        .astype(np.uint8)
        .reshape(h, w, 3)
    )
    try:
        out = image_processor(
            images=[probe], return_tensors="np", do_resize=False, input_data_format="channels_last"
        )["pixel_values"][0]
    except (ValueError, TypeError):
        return None
    if out.shape != (3, h, w):
        return None
    out = np.asarray(out, dtype=np.float32).reshape(3, h * w)
    lut = np.full((3, 256), np.nan, dtype=np.float32)
    for c in range(3):
        channel_values = probe.reshape(h * w, 3)[:, c]
        lut[c, channel_values] = out[c]
        if not np.array_equal(lut[c, channel_values], out[c]):  # the same input value gave different outputs
            return None
    return None if np.isnan(lut).any() else lut


def lut_on_device(
    image_processor: Any, size: tuple[int, int], device: torch.device, pixel_dtype: torch.dtype
) -> torch.Tensor | None:
    """`pointwise_lut` on the device in the pixel dtype (None: not pointwise).

    In the pixel dtype: rounding the table rounds each pixel exactly as rounding the pixels would.
    """
    import torch

    lut = pointwise_lut(image_processor, size)
    return None if lut is None else torch.from_numpy(lut).to(device, pixel_dtype)


def preprocess_frames(
    frames: np.ndarray,
    image_processor: Any,
    size: tuple[int, int],
    lut: torch.Tensor | None,
    device: torch.device,
    pixel_dtype: torch.dtype,
) -> torch.Tensor:
    """(B, H, W, 3) uint8 frames -> (B, 3, h, w) pixel values on the device in ``pixel_dtype``.

    At ``size``, with a table (`lut_on_device`), one channel at a time through it with int32 indices: the
    temporaries are one channel's int32 indices and values, not all channels' int64 indices and float32
    values (benchmarks/gpu_check.py measures the peak; the pixels are identical). Other sizes go through
    the image processor on the CPU, frame by frame.
    """
    import torch

    frames = check_frames(frames)
    if lut is not None and tuple(frames.shape[1:3]) == size:
        raw = torch.from_numpy(np.ascontiguousarray(frames))
        if device.type == "cuda":
            raw = raw.pin_memory()
        raw = raw.to(device, non_blocking=True)
        b, h, w, _ = raw.shape
        pixels = torch.empty((b, 3, h, w), dtype=lut.dtype, device=device)
        for c in range(3):  # index_select takes int32 indices as they are (advanced indexing may widen)
            flat = raw[..., c].int().reshape(-1)
            pixels[:, c] = torch.index_select(lut[c], 0, flat).view(b, h, w)
        return pixels
    result = image_processor(images=list(frames), return_tensors="pt", input_data_format="channels_last")
    return result["pixel_values"].to(device, pixel_dtype).contiguous()
