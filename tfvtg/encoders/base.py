"""The encoder contract: what a vision-language model must provide for TFVTG, and its data config.

An encoder turns sampled frames into per-frame token features and texts into embeddings; the similarity of the
two is the per-frame curve the numeric core localises. Preprocessing (image size, mean/std) and the method's
defaults that depend on the embedding space (fps, activity mask threshold) travel with the encoder, as a timm
model carries its data config.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["DEFAULT_FPS", "Encoder", "EncoderConfig", "max_cosine_similarity", "winning_tokens"]


# Frames per second every encoder samples at unless told otherwise (TFVTG's rate for every dataset).
DEFAULT_FPS = 3.0


@dataclass(frozen=True)
class EncoderConfig:
    """What a caller needs to know about an encoder without running it.

    Attributes:
        name: Identifier stored in feature files (registry name, hub id or resolved local path).
        image_size: (height, width) the model's image processor resizes to.
        mean: Per-channel normalisation mean (RGB, 0-1 scale).
        std: Per-channel normalisation std.
        num_query_tokens: Q, the number of feature tokens per frame.
        embed_dim: D, the dimension of image tokens and text embeddings.
        default_fps: Sampling rate the method uses with this encoder (3 for BLIP-2).
        mask_threshold: Activity mask threshold on the similarity curve (0.2 for BLIP-2 ITC cosine).
        tag_mask_threshold: TAG's activity mask threshold (its code: 0.2 for BLIP-2, 0 for CLIP-like features;
            docs/TAG-METHOD.md).
        tag_temporal_coherence: Whether TAG clusters with its temporal-coherence k-means (BLIP-2) or plain
            k-means (CLIP-like features), as its per-encoder configurations do.
        family: The checkpoint's ``model_type``: ``blip-2``, ``clip`` or ``siglip`` (SigLIP and SigLIP 2).
        precision: How the image side computes, a `tfvtg.device.PRECISIONS` name (``autocast-float16``,
            ``float32``, ``float16``, ``bfloat16``) from `tfvtg.device.resolve_precision`; feature files
            record it. None: not known.
    """

    name: str
    image_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    num_query_tokens: int
    embed_dim: int
    default_fps: float = DEFAULT_FPS
    mask_threshold: float = 0.2
    tag_mask_threshold: float = 0.2
    tag_temporal_coherence: bool = True
    family: str = "blip-2"
    precision: str | None = None


@runtime_checkable
class Encoder(Protocol):
    """A frame/text encoder whose similarity curve TFVTG localises."""

    config: EncoderConfig

    def encode_images(self, frames: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB frames of any size -> (N, Q, D) float32 token features, not normalised."""
        ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """M strings -> (M, D) float32 text embeddings, not normalised."""
        ...

    def similarity(self, video_features: np.ndarray, text_features: np.ndarray) -> np.ndarray:
        """(T, Q, D) frame features and (M, D) text features -> (M, T) similarity curves."""
        ...


def _token_cosines(video_features: np.ndarray, text_features: np.ndarray) -> np.ndarray:
    """(M, T, Q) cosine of each text with each frame token (float32)."""
    video = np.asarray(video_features, dtype=np.float32)
    text = np.atleast_2d(np.asarray(text_features, dtype=np.float32))
    if video.ndim != 3 or text.shape[-1] != video.shape[-1]:
        raise ValueError(f"expected (T, Q, D) and (M, D) with equal D, got {video.shape} and {text.shape}")
    text = text / np.maximum(np.linalg.norm(text, axis=-1, keepdims=True), 1e-12)
    t, q, d = video.shape
    tokens = video.reshape(t * q, d)
    # Dividing the (M, T*Q) products by the token norms, rather than normalising the (T*Q, D) tokens first,
    # saves a pass and a copy of the largest array (the collection search grounds many videos per query).
    norms = np.sqrt(np.einsum("ij,ij->i", tokens, tokens))
    sims = (text @ tokens.T) / np.maximum(norms, 1e-12)
    return sims.reshape(len(text), t, q)  # (M, T*Q) -> (M, T, Q)


def max_cosine_similarity(video_features: np.ndarray, text_features: np.ndarray) -> np.ndarray:
    """BLIP-2 ITC score without temperature: cosine of each text with each frame token, max over tokens.

    Args:
        video_features: (T, Q, D) frame token features (any float dtype; computed in float32).
        text_features: (M, D) or (D,) text embeddings.

    Returns:
        (M, T) float32 similarities in [-1, 1].
    """
    return _token_cosines(video_features, text_features).max(axis=-1)


def winning_tokens(video_features: np.ndarray, text_features: np.ndarray) -> np.ndarray:
    """(M, T) index of the token attaining `max_cosine_similarity` in each frame (TAG pools those tokens'
    raw features; with one token per frame, as CLIP-like encoders have, it is 0)."""
    video = np.asarray(video_features)
    if video.ndim == 3 and video.shape[1] == 1:
        return np.zeros((len(np.atleast_2d(text_features)), video.shape[0]), np.int64)
    return _token_cosines(video, text_features).argmax(axis=-1)
