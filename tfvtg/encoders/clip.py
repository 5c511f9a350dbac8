"""CLIP and SigLIP / SigLIP 2 (fixed resolution) image-text features via transformers: one token per frame.

The light encoders of the zoo (``clip-b32``, ``clip-b16``, ``clip-l14``, ``siglip2-b16``, or any checkpoint
whose ``config.json`` says ``model_type`` ``clip`` or ``siglip``). A frame's feature is the model's own
contrastive embedding, ``get_image_features`` (CLIP: the projected CLS token; SigLIP: the attention-pooling
head), stored as (N, 1, D); a text's is ``get_text_features``. Their cosine is the model's logit before its
scale (CLIP) or its scale and bias (SigLIP), so `max_cosine_similarity` (max over Q = 1) applies unchanged.

Preprocessing: frames are resized as a whole to the model's square input (no centre crop; the video decoder
resizes every encoder's frames this way), then rescaled and normalised with the checkpoint's mean/std.
Tokenisation follows each family's processor: CLIP pads to the batch's longest text within its 77-token
context; SigLIP texts are lower-cased (SigLIP 2 was trained on lower-cased text: transformers'
``Siglip2Tokenizer`` lower-cases, while the Hub checkpoints declare a ``GemmaTokenizer`` that does not) and
padded to the fixed context of 64 tokens as ``Siglip2Processor`` does (``padding="max_length"``), since the
text tower pools its last position. Text beyond the context is cut and warned about (`TruncationWarnings`).

Mask thresholds (docs: README "Encoders"): these contrastive spaces carry no absolute "unrelated" level like
BLIP-2's ITC cosine 0.2, so the activity mask keeps every frame with positive evidence (cosine > 0), the
setting TAG's code uses for its CLIP-like features; TAG clusters them with plain k-means.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from tfvtg.device import Precision, encode_in_batches, resolve_device, resolve_precision
from tfvtg.encoders.base import DEFAULT_FPS, EncoderConfig, max_cosine_similarity
from tfvtg.encoders.hf import (
    check_frames,
    check_texts,
    checkpoint_source,
    image_fields,
    load_parts,
    lut_on_device,
    prepare_model,
    preprocess_frames,
)
from tfvtg.encoders.text import TruncationWarnings
from tfvtg.errors import InputError, ModelError

if TYPE_CHECKING:
    import torch

__all__ = ["ClipEncoder", "FAMILIES", "MASK_THRESHOLD"]

FAMILIES = {"clip": "CLIPModel", "siglip": "SiglipModel"}  # config.json model_type -> transformers class
MASK_THRESHOLD = 0.0  # cosine; see the module docstring


class ClipEncoder:
    """CLIP / SigLIP encoder: frames -> (N, 1, D) contrastive embeddings, texts -> (M, D), cosine similarity.

    Build it with :meth:`from_pretrained` (or ``tfvtg.encoders.create_encoder``); the constructor takes
    already loaded parts.

    Attributes:
        config: The encoder's data config (Q = 1; mask threshold 0, TAG: mask 0 and plain k-means).
        family: ``"clip"`` or ``"siglip"`` (the checkpoint's ``model_type``).
        context: Text context in tokens (CLIP 77, SigLIP 64), special tokens included.
        device: The torch device the model runs on.
        precision: How the model computes (`tfvtg.device.Precision`; its name is ``config.precision``).
        dtype: The dtype of the weights (``precision.weights``).
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
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        family = model.config.model_type
        if family not in FAMILIES:
            raise ModelError(f"cannot use {name}: a {family} model is not a CLIP or SigLIP model")
        self.model = model
        self.family = family
        self.image_processor = _whole_frame_processor(image_processor, name)
        self.tokenizer = tokenizer
        self.device = device
        self.precision = precision
        self.dtype = precision.weights
        self.batch_size = int(batch_size)
        text_config = model.config.text_config
        self.context = int(text_config.max_position_embeddings)
        if family == "clip":
            embed_dim = int(model.config.projection_dim)
        else:
            embed_dim = int(getattr(text_config, "projection_size", None) or text_config.hidden_size)
        self.config = EncoderConfig(
            name=name,
            **image_fields(self.image_processor, model.config.vision_config, name),
            num_query_tokens=1,
            embed_dim=embed_dim,
            default_fps=DEFAULT_FPS,
            mask_threshold=MASK_THRESHOLD,
            tag_mask_threshold=0.0,
            tag_temporal_coherence=False,
            family=family,
            precision=precision.name,
        )
        self._lut_device = lut_on_device(self.image_processor, self.config.image_size, device,
                                         precision.pixel_dtype)
        self._truncation = TruncationWarnings(name, self.context)

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
    ) -> ClipEncoder:
        """Load a CLIP or SigLIP checkpoint (Hub id or ``save_pretrained`` directory) and its processor parts.

        Args:
            name_or_path: Hub id (e.g. ``openai/clip-vit-base-patch16``) or local directory.
            device: ``"auto"`` (cuda, then mps, then cpu), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
            dtype: Precision (`tfvtg.device.resolve_precision`): None/``"auto"`` = ``autocast-float16`` on
                CUDA, ``float32`` elsewhere; or ``float32``, ``float16``, ``bfloat16`` (weights cast).
            batch_size: Frames per forward pass.
            cache_dir: Hugging Face cache directory (default: the library's).
            local_files_only: True: never touch the network. None: the cache when the files are there, else
                download (unless HF_HUB_OFFLINE is set). False: always ask the Hub.
            name: Encoder id stored in feature files; default ``name_or_path`` (resolved if a directory).

        Raises:
            ModelError: Not found, not a CLIP/SigLIP checkpoint, broken files, or out of memory.
        """
        torch_device = resolve_device(device)
        precision = resolve_precision(dtype, torch_device)
        source, is_dir = checkpoint_source(name_or_path)
        with _without_default_config_noise():
            model, image_processor, tokenizer = load_parts(
                source,
                is_dir,
                local_files_only=local_files_only,
                cache_dir=cache_dir,
                check_config=_model_class,
                load_model=_load_model,
            )
        prepare_model(model, model, torch_device, precision, name_or_path)
        return cls(model, image_processor, tokenizer, name=name or source, device=torch_device,
                   precision=precision, batch_size=batch_size)

    # ------------------------------------------------------------------ encoding
    def encode_images(self, frames: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB frames of any size -> (N, 1, D) float32 image embeddings, not normalised.

        A batch that runs out of accelerator memory is halved and retried (`tfvtg.device.encode_in_batches`).
        """
        frames = check_frames(frames)
        out = np.empty((len(frames), 1, self.config.embed_dim), dtype=np.float32)
        self.batch_size = encode_in_batches(
            lambda batch: self.image_features(self.preprocess(batch)).cpu().numpy()[:, None],
            frames, out, self.batch_size, device=self.device, precision=self.precision,
        )
        return out

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """(B, H, W, 3) uint8 frames -> (B, 3, h, w) pixels on the device in ``precision.pixel_dtype``.

        `tfvtg.encoders.hf.preprocess_frames`, as BLIP-2's: frames already at the model's size go through a
        per-channel table taken from the processor itself (the same values); other sizes through the
        processor.
        """
        return preprocess_frames(
            frames, self.image_processor, self.config.image_size, self._lut_device, self.device,
            self.precision.pixel_dtype,
        )

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) preprocessed pixels -> (B, D) float32 ``get_image_features`` embeddings."""
        import torch

        with torch.inference_mode(), self.precision.image_forward():
            return _pooled(self.model.get_image_features(pixel_values=pixel_values)).float()

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """The token tensors the family's processor makes (SigLIP: lower-cased, padded to the context)."""
        texts = [t.lower() for t in texts] if self.family == "siglip" else list(texts)
        self._truncation.check(self.tokenizer, texts)
        padding = "max_length" if self.family == "siglip" else "longest"
        tokens = self.tokenizer(texts, padding=padding, truncation=True, max_length=self.context,
                                return_tensors="pt")
        return {key: tokens[key].to(self.device) for key in ("input_ids", "attention_mask") if key in tokens}

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """M strings -> (M, D) float32 ``get_text_features`` embeddings (longer texts cut, with a warning)."""
        import torch

        texts = check_texts(texts)
        out = np.empty((len(texts), self.config.embed_dim), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            with torch.inference_mode():
                embeds = _pooled(self.model.get_text_features(**self.tokenize(chunk)))
            out[start : start + len(chunk)] = embeds.float().cpu().numpy()
        return out

    def similarity(self, video_features: np.ndarray, text_features: np.ndarray) -> np.ndarray:
        """(T, 1, D) frame features and (M, D) text features -> (M, T) cosine similarity."""
        return max_cosine_similarity(video_features, text_features)

    def __repr__(self) -> str:
        return (
            f"ClipEncoder(name={self.config.name!r}, family={self.family!r}, device={str(self.device)!r}, "
            f"precision={self.precision.name!r}, batch_size={self.batch_size})"
        )


# ---------------------------------------------------------------------- helpers
def _pooled(output: Any) -> torch.Tensor:
    """The embedding tensor of ``get_*_features``: transformers 5 returns a model output, 4 the tensor."""
    return output if not hasattr(output, "pooler_output") else output.pooler_output


def _whole_frame_processor(image_processor: Any, name: str) -> Any:
    """A copy of the processor that resizes the whole frame to its square crop size (no centre crop)."""
    if not getattr(image_processor, "do_center_crop", False):
        return image_processor
    crop = getattr(image_processor, "crop_size", None)
    height = crop.get("height") if isinstance(crop, dict) else getattr(crop, "height", None)
    width = crop.get("width") if isinstance(crop, dict) else getattr(crop, "width", None)
    if not height or not width:
        raise ModelError(f"cannot use {name}: its image processor has no crop height/width ({crop!r})")
    skip = ("image_processor_type", "_processor_class")
    settings = {k: v for k, v in image_processor.to_dict().items() if k not in skip}
    settings.update(do_center_crop=False, size={"height": int(height), "width": int(width)})
    return type(image_processor)(**settings)


class _DefaultTokenIdNoise(logging.Filter):
    """Drops transformers 5's warning about `SiglipTextConfig`'s own defaults (bos/eos ids 49406/49407 with a
    32000-token vocabulary), which it logs while diffing any SigLIP config against a default one."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "token_id must be `None` or an integer within the vocabulary" not in record.getMessage()


@contextmanager
def _without_default_config_noise() -> Iterator[None]:
    logger = logging.getLogger("transformers.configuration_utils")
    noise = _DefaultTokenIdNoise()
    logger.addFilter(noise)
    try:
        yield
    finally:
        logger.removeFilter(noise)


def _model_class(source: str, config_dict: dict) -> Any:
    """``CLIPModel`` or ``SiglipModel``, by the checkpoint's ``model_type``; else a ModelError."""
    from transformers import CLIPModel, SiglipModel

    family = config_dict.get("model_type")
    if family not in FAMILIES:
        raise ModelError(
            f"cannot load {source}: it is a {family or 'unknown'} checkpoint, not CLIP or SigLIP"
        )
    return CLIPModel if family == "clip" else SiglipModel


def _load_model(source: str, model_cls: Any, kwargs: dict) -> Any:
    return model_cls.from_pretrained(source, attn_implementation="sdpa", **kwargs)
