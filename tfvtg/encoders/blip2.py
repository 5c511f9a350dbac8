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

from collections.abc import Sequence
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
            **image_fields(image_processor, model.config.vision_config, name),
            num_query_tokens=int(model.config.num_query_tokens),
            embed_dim=int(model.config.image_text_hidden_size),
            default_fps=DEFAULT_FPS,
            mask_threshold=0.2,
            precision=precision.name,
        )
        self._lut_device = lut_on_device(image_processor, self.config.image_size, device,
                                         precision.pixel_dtype)
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
        torch_device = resolve_device(device)
        precision = resolve_precision(dtype, torch_device)
        source, is_dir = checkpoint_source(name_or_path)
        model, image_processor, tokenizer = load_parts(
            source,
            is_dir,
            local_files_only=local_files_only,
            cache_dir=cache_dir,
            check_config=_retrieval_config,
            load_model=_load_retrieval_model,
            memory_note=" (the ViT-g checkpoint needs about 5 GB of RAM)",
        )
        # Only the vision tower takes the precision's weights: the rest stays in float32, as LAVIS runs it.
        prepare_model(model, model.vision_model, torch_device, precision, name_or_path)
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
        frames = check_frames(frames)
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
        return preprocess_frames(
            frames, self.image_processor, self.config.image_size, self._lut_device, self.device,
            self.precision.pixel_dtype,
        )

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

        texts = check_texts(texts)
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
def _load_retrieval_model(source: str, config: Any, kwargs: dict) -> Any:
    from transformers import Blip2ForImageTextRetrieval

    return _from_pretrained_sdpa(Blip2ForImageTextRetrieval, source, config=config, **kwargs)


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


def _from_pretrained_sdpa(model_cls: Any, source: str, **kwargs: Any) -> Any:
    """`from_pretrained` with SDPA attention where this transformers version offers it, else eager."""
    try:
        return model_cls.from_pretrained(source, attn_implementation="sdpa", **kwargs)
    except (ValueError, ImportError) as exc:
        if "sdpa" not in str(exc).lower() and "attn" not in str(exc).lower():
            raise
        return model_cls.from_pretrained(source, **kwargs)
