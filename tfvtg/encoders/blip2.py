"""BLIP-2 Q-Former image-text contrastive (ITC) features through transformers' `Blip2ForImageTextRetrieval`.

This is the encoder of the TFVTG paper (LAVIS ``blip2_image_text_matching`` / ``coco``, on the Hub as
``Salesforce/blip2-itm-vit-g-coco``). Frames go through the ViT-g vision tower, the Q-Former's 32 learned
queries cross-attend to it, and ``vision_projection`` maps every query output to the 256-d ITC space:
(N, 32, 256), not normalised, exactly what the method stores per frame. Texts go through the text-only
Q-Former; the projected CLS token is the text embedding. Their similarity is the cosine, max over the query
tokens (ITC without its temperature), which equals the model's own ``use_image_text_matching_head=False``
logits.

The processor parts (image processor, tokenizer) are called directly and the model is run through its
submodules, which sidesteps `Blip2Processor.__call__` (it shortens ``max_length`` by the query count) and the
``image_token_index`` slicing in ``forward`` (see docs/DEPENDENCIES.md).

Precision (`tfvtg.device.resolve_precision`): on CUDA by default the official numerics, float32 weights with
the vision tower under fp16 autocast; the Q-Former, query tokens, text embeddings and projections stay in
float32 as LAVIS runs them, the image-side Q-Former with TF32 matmuls allowed (scoped). ``float32``
elsewhere; ``bfloat16`` and ``float16`` (the vision tower's weights cast) only when asked for.

Fast paths: frames already at the model's size (what `tfvtg.features.extract_features` and
`tfvtg.Grounder.encode_video` get from the decoder, which resizes while decoding) are normalised on the
device by a per-channel lookup table. Frames of any other size go through the checkpoint's image processor
on the CPU, one at a time (about 11.5 ms per frame at 364 px on a 2-core CPU, issue 16): correct, but too
slow to keep a GPU busy, so resize frames to ``config.image_size`` before calling
`Blip2Encoder.encode_images` when throughput matters.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tfvtg.device import (
    Precision,
    encode_in_batches,
    out_of_memory_message,
    place_on,
    resolve_device,
    resolve_precision,
)
from tfvtg.encoders.base import EncoderConfig, max_cosine_similarity
from tfvtg.encoders.text import TruncationWarnings
from tfvtg.errors import InputError, ModelError, first_line

if TYPE_CHECKING:
    import torch

__all__ = ["Blip2Encoder", "TEXT_MAX_LENGTH"]

TEXT_MAX_LENGTH = 35  # tokens, as LAVIS's BLIP-2 ITC text path (and the TFVTG code) pads/truncates texts


class Blip2Encoder:
    """BLIP-2 ITC encoder: frames -> (N, Q, D) query features, texts -> (M, D), max-over-Q cosine similarity.

    Build it with :meth:`from_pretrained` (or ``tfvtg.encoders.create_encoder``); the constructor takes
    already loaded parts.

    Attributes:
        config: The encoder's data config (image size and mean/std from the checkpoint's processor).
        device: The torch device the model runs on.
        precision: How the image side computes (`tfvtg.device.Precision`; its name is ``config.precision``).
        dtype: The dtype of the vision tower's weights (``precision.weights``).
        batch_size: Frames (and texts) per forward pass; halved for good when a batch runs out of memory.
    """

    def __init__(
        self,
        model: Any,
        image_processor: Any,
        tokenizer: Any,
        *,
        name: str,
        device: torch.device,
        precision: Precision,
        batch_size: int = 32,
    ) -> None:
        import torch

        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        self.model = model
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.device = device
        self.precision = precision
        self.dtype = precision.weights
        self.batch_size = int(batch_size)
        self.config = EncoderConfig(
            name=name,
            image_size=_checked_image_size(image_processor, model.config.vision_config, name),
            mean=_triple(getattr(image_processor, "image_mean", None), "image_mean", name),
            std=_triple(getattr(image_processor, "image_std", None), "image_std", name),
            num_query_tokens=int(model.config.num_query_tokens),
            embed_dim=int(model.config.image_text_hidden_size),
            default_fps=3.0,
            mask_threshold=0.2,
            precision=precision.name,
        )
        lut = _pointwise_lut(image_processor, self.config.image_size)  # (3, 256) float32 or None
        # In the pixel dtype: rounding the table rounds each pixel exactly as rounding the pixels would.
        self._lut_device = None if lut is None else torch.from_numpy(lut).to(device, precision.pixel_dtype)
        self._truncation = TruncationWarnings(name, TEXT_MAX_LENGTH)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        *,
        device: str = "auto",
        dtype: str | None = None,
        batch_size: int = 32,
        cache_dir: str | None = None,
        local_files_only: bool | None = None,
        name: str | None = None,
    ) -> Blip2Encoder:
        """Load a BLIP-2 retrieval checkpoint (Hub id or ``save_pretrained`` directory) and its processor.

        Args:
            name_or_path: Hugging Face Hub id (e.g. ``Salesforce/blip2-itm-vit-g-coco``) or local directory.
            device: ``"auto"`` (cuda, then mps, then cpu), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
            dtype: Precision of the image side (`tfvtg.device.resolve_precision`): None/``"auto"`` =
                ``autocast-float16`` on CUDA (the official numerics), ``float32`` elsewhere; or
                ``float32``, ``float16``, ``bfloat16``.
            batch_size: Frames per forward pass.
            cache_dir: Hugging Face cache directory (default: the library's).
            local_files_only: True: never touch the network. None: use the cache when the files are there,
                else download (unless HF_HUB_OFFLINE is set). False: always ask the Hub for the latest files.
            name: Encoder id stored in feature files; default ``name_or_path`` (resolved if a directory).

        Raises:
            ModelError: Not found (no cached copy, no network), not a BLIP-2 checkpoint, an image processor
                whose size is not the model's, broken files, or out of memory; the message says what to do.
        """
        import torch

        torch_device = resolve_device(device)
        precision = resolve_precision(dtype, torch_device)
        is_dir = Path(name_or_path).expanduser().is_dir()
        source = str(Path(name_or_path).expanduser().resolve()) if is_dir else name_or_path
        if is_dir and not (Path(source) / "config.json").is_file():
            raise ModelError(
                f"cannot load {name_or_path}: the directory has no config.json; point --model at a "
                f"directory written by save_pretrained (or hf download --local-dir)"
            )
        kwargs = {"cache_dir": cache_dir}
        model, image_processor, tokenizer = _load_parts(source, is_dir, local_files_only, kwargs)
        try:
            model.eval()
            model.requires_grad_(False)
            model.vision_model.to(dtype=precision.weights)
            place_on(torch_device)
            model.to(device=torch_device)
        except torch.cuda.OutOfMemoryError as exc:
            message = out_of_memory_message(torch_device, precision, f"moving {name_or_path}")
            raise ModelError(message) from exc
        return cls(
            model,
            image_processor,
            tokenizer,
            name=name or source,
            device=torch_device,
            precision=precision,
            batch_size=batch_size,
        )

    # ------------------------------------------------------------------ encoding
    def encode_images(self, frames: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB frames of any size -> (N, Q, D) float32 query features, not normalised.

        Frames are resized (bicubic, full frame, no crop) and normalised by the checkpoint's image processor.
        Frames already at the model's size skip the processor: a per-channel lookup table taken from the
        processor itself gives the same pixel values on the device (the fast path; other sizes are resized
        on the CPU, frame by frame). A batch that runs out of accelerator memory is halved and retried, with
        a warning, and ``batch_size`` keeps the smaller size.

        Raises:
            InputError: Not (N, H, W, 3) uint8. ModelError: Out of memory even one frame at a time.
        """
        frames = _check_frames(frames)
        q, d = self.config.num_query_tokens, self.config.embed_dim
        out = np.empty((len(frames), q, d), dtype=np.float32)
        self.batch_size = encode_in_batches(
            lambda batch: self.image_features(self.preprocess(batch)).cpu().numpy(),
            frames, out, self.batch_size, device=self.device, precision=self.precision,
        )
        return out

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """(B, H, W, 3) uint8 frames -> (B, 3, h, w) pixel values on the device in ``precision.pixel_dtype``.

        At the model's size, one channel at a time through the lookup table with int32 indices: the
        temporaries are one channel's int32 indices and values, not all channels' int64 indices and float32
        values (benchmarks/gpu_check.py measures the peak; the pixels are identical).
        """
        import torch

        frames = _check_frames(frames)
        if self._lut_device is not None and tuple(frames.shape[1:3]) == self.config.image_size:
            raw = torch.from_numpy(np.ascontiguousarray(frames))
            if self.device.type == "cuda":
                raw = raw.pin_memory()
            raw = raw.to(self.device, non_blocking=True)
            b, h, w, _ = raw.shape
            pixels = torch.empty((b, 3, h, w), dtype=self._lut_device.dtype, device=self.device)
            for c in range(3):  # index_select takes int32 indices as they are (advanced indexing may widen)
                flat = raw[..., c].int().reshape(-1)
                pixels[:, c] = torch.index_select(self._lut_device[c], 0, flat).view(b, h, w)
            return pixels
        result = self.image_processor(
            images=list(frames), return_tensors="pt", input_data_format="channels_last"
        )
        return result["pixel_values"].to(self.device, self.precision.pixel_dtype).contiguous()

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) preprocessed pixels on the device -> (B, Q, D) float32 projected query outputs."""
        import torch

        model = self.model
        with torch.inference_mode():
            with self.precision.image_forward():
                image_embeds = model.vision_model(pixel_values=pixel_values).last_hidden_state
            with self.precision.float32_part():
                image_embeds = image_embeds.to(model.query_tokens.dtype)
                queries = model.query_tokens.expand(image_embeds.shape[0], -1, -1)
                mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
                query_out = model.qformer(
                    query_embeds=queries, encoder_hidden_states=image_embeds, encoder_attention_mask=mask
                ).last_hidden_state
                proj = model.vision_projection
                return proj(query_out.to(proj.weight.dtype)).float()

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """M strings -> (M, D) float32 projected CLS embeddings (padded/cut to 35 tokens), not normalised."""
        import torch

        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not all(isinstance(t, str) for t in texts):
            raise InputError("encode_texts expects a list of strings")
        out = np.empty((len(texts), self.config.embed_dim), dtype=np.float32)
        model = self.model
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            self._truncation.check(self.tokenizer, chunk)
            tokens = self.tokenizer(
                chunk, padding="max_length", truncation=True, max_length=TEXT_MAX_LENGTH, return_tensors="pt"
            )
            input_ids = tokens["input_ids"].to(self.device)
            attention_mask = tokens["attention_mask"].to(self.device)
            with torch.inference_mode():
                embeds = model.embeddings(input_ids=input_ids)
                hidden = model.qformer(
                    query_embeds=embeds, query_length=0, attention_mask=attention_mask
                ).last_hidden_state
                proj = model.text_projection
                out[start : start + len(chunk)] = (
                    proj(hidden[:, 0, :].to(proj.weight.dtype)).float().cpu().numpy()
                )
        return out

    def similarity(self, video_features: np.ndarray, text_features: np.ndarray) -> np.ndarray:
        """(T, Q, D) frame features and (M, D) text features -> (M, T) cosine, max over the Q query tokens."""
        return max_cosine_similarity(video_features, text_features)

    def __repr__(self) -> str:
        return (
            f"Blip2Encoder(name={self.config.name!r}, device={str(self.device)!r}, "
            f"precision={self.precision.name!r}, batch_size={self.batch_size})"
        )


# ---------------------------------------------------------------------- helpers
def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise InputError(f"expected frames of shape (N, H, W, 3), got {frames.shape}")
    if frames.dtype != np.uint8:
        raise InputError(f"expected uint8 RGB frames, got dtype {frames.dtype}")
    return frames


def _load_parts(
    source: str, is_dir: bool, local_files_only: bool | None, kwargs: dict
) -> tuple[Any, Any, Any]:
    """Model, image processor and tokenizer; every failure becomes a ModelError saying what to do."""
    offline = is_dir or local_files_only is True or _env_true("HF_HUB_OFFLINE")
    if offline or local_files_only is False:
        return _load_parts_once(source, is_dir, local_files_only=bool(offline), probe=False, kwargs=kwargs)
    try:  # Cache first: no network round trip when the files are already there.
        return _load_parts_once(source, is_dir, local_files_only=True, probe=True, kwargs=kwargs)
    except _NotCached:
        return _load_parts_once(source, is_dir, local_files_only=False, probe=False, kwargs=kwargs)


class _NotCached(ModelError):
    """The files are not all in the local cache; raised only by a cache probe that the network try follows."""


def _load_parts_once(
    source: str, is_dir: bool, *, local_files_only: bool, probe: bool, kwargs: dict
) -> tuple[Any, Any, Any]:
    import torch
    from safetensors import SafetensorError  # a damaged weights file
    from transformers import AutoImageProcessor, AutoTokenizer, Blip2Config, Blip2ForImageTextRetrieval

    if is_dir:
        hint = "pass --model a directory written by save_pretrained"
        missing = "the directory is incomplete"
    else:
        from tfvtg.hub import download_hint

        hint = download_hint(source)
        missing = (
            "not in the Hugging Face cache and offline (HF_HUB_OFFLINE=1 or local_files_only)"
            if local_files_only
            else "not in the Hugging Face cache and the hub is unreachable (or no such repository)"
        )
    common = dict(kwargs, local_files_only=local_files_only)
    try:
        config_dict, _ = Blip2Config.get_config_dict(source, **common)
    except OSError as exc:
        if probe:
            raise _NotCached(f"cannot load {source}: not in the Hugging Face cache") from exc
        detail = f" ({first_line(exc)})" if is_dir else ""  # e.g. a config.json that is not valid JSON
        raise ModelError(f"cannot load {source}: {missing}{detail}; {hint}") from exc
    config = _retrieval_config(source, config_dict)
    try:
        with _quiet_progress(local_files_only):
            model = _from_pretrained_sdpa(Blip2ForImageTextRetrieval, source, config=config, **common)
            image_processor = AutoImageProcessor.from_pretrained(source, **common)
            tokenizer = AutoTokenizer.from_pretrained(source, **common)
    except torch.cuda.OutOfMemoryError as exc:
        raise ModelError(f"out of GPU memory loading {source}; free the GPU or use --device cpu") from exc
    except MemoryError as exc:
        raise ModelError(
            f"out of memory loading {source} (the ViT-g checkpoint needs about 5 GB of RAM)"
        ) from exc
    except OSError as exc:
        if probe:
            raise _NotCached(f"cannot load {source}: not fully in the Hugging Face cache") from exc
        raise ModelError(f"cannot load {source}: {missing} ({first_line(exc)}); {hint}") from exc
    except (ValueError, RuntimeError, KeyError, TypeError, SafetensorError) as exc:
        raise ModelError(
            f"cannot load {source}: broken or incompatible checkpoint files ({first_line(exc)}); "
            f"re-download it or re-save it with save_pretrained"
        ) from exc
    return model, image_processor, tokenizer


def _retrieval_config(source: str, config_dict: dict) -> Any:
    """The Blip2Config of a `Blip2ForImageTextRetrieval` checkpoint, else a ModelError saying what it is."""
    from transformers import Blip2Config

    architectures = config_dict.get("architectures") or ["Blip2ForImageTextRetrieval"]
    if config_dict.get("model_type") != "blip-2" or "Blip2ForImageTextRetrieval" not in architectures:
        what = ", ".join(config_dict.get("architectures") or []) or config_dict.get("model_type") or "unknown"
        raise ModelError(
            f"cannot load {source}: it is a {what} checkpoint, not a BLIP-2 image-text retrieval "
            f"model (Blip2ForImageTextRetrieval); use blip2-coco or a directory saved from one"
        )
    qformer = config_dict.setdefault("qformer_config", {})
    if qformer.get("qformer_text_input") and "use_qformer_text_input" not in qformer:
        qformer["use_qformer_text_input"] = True  # the key's pre-4.36 name in early Hub revisions
    config = Blip2Config.from_dict(config_dict)
    if not config.qformer_config.use_qformer_text_input:
        raise ModelError(
            f"cannot load {source}: its Q-Former has no text input (use_qformer_text_input is "
            f"false), so it cannot embed texts; use a Blip2ForImageTextRetrieval checkpoint"
        )
    return config


@contextmanager
def _quiet_progress(quiet: bool) -> Iterator[None]:
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


def _from_pretrained_sdpa(model_cls: Any, source: str, **kwargs: Any) -> Any:
    """`from_pretrained` with SDPA attention where this transformers version offers it, else eager."""
    try:
        return model_cls.from_pretrained(source, attn_implementation="sdpa", **kwargs)
    except (ValueError, ImportError) as exc:
        if "sdpa" not in str(exc).lower() and "attn" not in str(exc).lower():
            raise
        return model_cls.from_pretrained(source, **kwargs)


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


def _pointwise_lut(image_processor: Any, size: tuple[int, int]) -> np.ndarray | None:
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


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}
