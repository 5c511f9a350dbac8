"""Multimodal LLM back-ends that NumPro asks about numbered frames.

Two kinds, behind one protocol (`MLLM`): any OpenAI-compatible vision chat endpoint (`OpenAIVisionChat`:
GPT-4o, a vLLM server, ...), which gets the frames as base64 images, and a local transformers video model
(``qwen2-vl:PATH_OR_ID``, `numpro.qwen2vl.Qwen2VLBackend`, imported only when asked for). `create_mllm` picks
one from a spec string.

Frame cap: an API model may accept only so many images. The cap must be applied *before* numbering (the
grounder does it with `cap_indices`), so the numbers the model sees stay consecutive 0..N-1 and each still
maps to the real time of its frame; a back-end never drops numbered frames itself, it refuses them
(`InputError`).
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from tfvtg.errors import InputError, LLMError

__all__ = ["MLLM", "OpenAIVisionChat", "create_mllm", "cap_indices", "encode_image", "DETAILS",
           "IMAGE_FORMATS"]

log = logging.getLogger("numpro.mllm")

DETAILS = ("low", "high", "auto", "none")
IMAGE_FORMATS = ("jpeg", "png")
QWEN_PREFIX = "qwen2-vl:"


@runtime_checkable
class MLLM(Protocol):
    """A multimodal model that answers one question about a list of frames.

    Attributes:
        name: Model name for logs and output metadata.
    """

    name: str

    def answer(
        self,
        frames: Sequence[np.ndarray],
        prompt: str,
        *,
        times: Sequence[float] | None = None,
        frame_labels: Sequence[str] | None = None,
    ) -> str:
        """The model's answer text.

        Args:
            frames: RGB uint8 (H, W, 3) frames, already numbered (or not, when timestamps go as text).
            prompt: The full question.
            times: Real timestamps (s) of the frames; a video model uses them for its frame rate.
            frame_labels: When given, a text part placed right before each frame (e.g. ``"Second 12.0"``).
        """
        ...


def cap_indices(n_frames: int, max_frames: int | None) -> np.ndarray:
    """Indices of at most ``max_frames`` frames spread uniformly over ``n_frames`` (first and last kept).

    Apply before numbering, so numbers stay 0..N-1 and map to the kept frames' real times.
    """
    if max_frames is None or n_frames <= max_frames:
        return np.arange(n_frames)
    if max_frames < 1:
        raise InputError(f"max_frames must be at least 1, got {max_frames}")
    if max_frames == 1:
        return np.array([0])
    return np.unique(np.linspace(0, n_frames - 1, max_frames).round().astype(np.int64))


def encode_image(frame: np.ndarray, image_format: str = "jpeg", quality: int = 90) -> str:
    """A ``data:`` URL holding the RGB frame as a JPEG (quality ``quality``) or PNG."""
    from PIL import Image

    if image_format not in IMAGE_FORMATS:
        raise InputError(f"unknown image format {image_format!r}; use {' or '.join(IMAGE_FORMATS)}")
    buffer = io.BytesIO()
    image = Image.fromarray(frame)
    if image_format == "jpeg":
        image.save(buffer, format="JPEG", quality=quality)
    else:
        image.save(buffer, format="PNG")
    return f"data:image/{image_format};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def _check_frames(frames: Sequence[np.ndarray], labels: Sequence[str] | None,
                  times: Sequence[float] | None) -> None:
    if len(frames) == 0:
        raise InputError("no frames to send to the model")
    for frame in frames:
        if not (isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3
                and frame.shape[2] == 3):
            raise InputError("frames must be RGB uint8 arrays of shape (H, W, 3)")
    if labels is not None and len(labels) != len(frames):
        raise InputError(f"got {len(labels)} frame labels for {len(frames)} frames")
    if times is not None and len(times) != len(frames):
        raise InputError(f"got {len(times)} frame times for {len(frames)} frames")


class OpenAIVisionChat:
    """Any OpenAI-compatible chat endpoint that accepts images (GPT-4o, vLLM, llama.cpp's server, ...).

    One user message: the frames as ``image_url`` parts (base64 data URLs), each preceded by its label when
    labels are given, then the question text (video first, then text, as the paper's layout). Temperature 0.
    Requests go through `tfvtg.llm.chat`: bounded retries on timeouts, 429 and 5xx, and an `LLMError` naming
    the model and host (never the key) when the endpoint fails.

    Args:
        model: The model name the server knows.
        base_url: API root (``http://host:8000/v1``); None for OpenAI or ``$OPENAI_BASE_URL``.
        api_key: Secret; None reads ``$OPENAI_API_KEY`` (a local server given by URL needs none).
        detail: Image detail for OpenAI models: ``"low"`` (85 tokens a frame), ``"high"``, ``"auto"``, or
            ``"none"`` to leave the field out for servers that reject it.
        max_frames: Most frames one request may carry; more is refused (subsample before numbering).
        image_format: ``"jpeg"`` (quality 90) or ``"png"`` (lossless, larger).
        max_tokens: Longest answer.
        timeout: Seconds per request.
        max_retries: Extra attempts after a transient failure.

    Raises:
        LLMError: No key and no base URL are known.
    """

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 detail: str = "low", max_frames: int | None = None, image_format: str = "jpeg",
                 max_tokens: int = 256, timeout: float = 120.0, max_retries: int = 3) -> None:
        from tfvtg.llm import LLMEndpoint

        if detail not in DETAILS:
            raise InputError(f"unknown image detail {detail!r}; use one of {', '.join(DETAILS)}")
        if image_format not in IMAGE_FORMATS:
            raise InputError(f"unknown image format {image_format!r}; use {' or '.join(IMAGE_FORMATS)}")
        if max_frames is not None and max_frames < 1:
            raise InputError(f"max_frames must be at least 1, got {max_frames}")
        endpoint = LLMEndpoint.resolve(model, base_url, api_key, timeout=timeout, max_retries=max_retries)
        if endpoint is None:
            if not (model or "").strip() or model.strip().lower() == "none":
                raise InputError("no multimodal model given; pass --mllm MODEL (e.g. gpt-4o)")
            raise LLMError(f"no API key for model {model!r}: set OPENAI_API_KEY, or give --mllm-base-url "
                           "for a local OpenAI-compatible server")
        self.endpoint = endpoint
        self.name = endpoint.model
        self.detail = detail
        self.max_frames = max_frames
        self.image_format = image_format
        self.max_tokens = max_tokens

    def __repr__(self) -> str:
        return f"OpenAIVisionChat({self.endpoint.describe()}, detail={self.detail!r})"

    def messages(self, frames: Sequence[np.ndarray], prompt: str,
                 frame_labels: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The chat messages one `answer` call sends."""
        content: list[dict[str, Any]] = []
        for i, frame in enumerate(frames):
            if frame_labels is not None:
                content.append({"type": "text", "text": frame_labels[i]})
            image: dict[str, Any] = {"url": encode_image(frame, self.image_format)}
            if self.detail != "none":
                image["detail"] = self.detail
            content.append({"type": "image_url", "image_url": image})
        content.append({"type": "text", "text": prompt})
        return [{"role": "user", "content": content}]

    def answer(self, frames: Sequence[np.ndarray], prompt: str, *, times: Sequence[float] | None = None,
               frame_labels: Sequence[str] | None = None) -> str:
        """Send the frames and the question; return the answer text (see `MLLM.answer`).

        Raises:
            InputError: Bad frames, or more than ``max_frames`` of them.
            LLMError: The endpoint failed (after bounded retries for transient errors).
        """
        from tfvtg.llm import chat

        _check_frames(frames, frame_labels, times)
        if self.max_frames is not None and len(frames) > self.max_frames:
            raise InputError(f"{len(frames)} frames exceed the cap of {self.max_frames} for {self.name}; "
                             "subsample before numbering (numpro.mllm.cap_indices)")
        log.debug("asking %s about %d frames", self.endpoint.describe(), len(frames))
        return chat(self.endpoint, self.messages(frames, prompt, frame_labels), temperature=0.0,
                    max_tokens=self.max_tokens)


def create_mllm(spec: str, *, base_url: str | None = None, api_key: str | None = None, detail: str = "low",
                max_frames: int | None = None, image_format: str = "jpeg", device: str = "auto",
                dtype: str | None = None, max_new_tokens: int = 256, timeout: float = 120.0,
                max_retries: int = 3, max_pixels: int | None = None,
                attn_implementation: str | None = None) -> MLLM:
    """The back-end a spec names.

    Args:
        spec: ``"qwen2-vl:PATH_OR_ID"`` for a local Qwen2-VL (transformers), anything else is a model name on
            an OpenAI-compatible endpoint (``gpt-4o``, or the name a vLLM server serves).
        base_url, api_key, detail, max_frames, image_format, timeout, max_retries: For the endpoint back-end
            (see `OpenAIVisionChat`).
        device, dtype: For the local back-end (``"auto"``, ``"cpu"``, ``"cuda"``; ``"bfloat16"``...).
        max_pixels, attn_implementation: For the local back-end: a per-frame pixel budget (fewer visual tokens
            per frame) and ``from_pretrained``'s attention (``sdpa``, ``eager``, ``flash_attention_2``).
        max_new_tokens: Longest answer, both back-ends.

    Raises:
        InputError: Empty spec or bad option.
        LLMError: An endpoint model without key or base URL.
        ModelError: The local model cannot be loaded.
    """
    spec = (spec or "").strip()
    if not spec:
        raise InputError("no multimodal model given; pass --mllm MODEL (e.g. gpt-4o or qwen2-vl:PATH)")
    if spec.lower().startswith(QWEN_PREFIX):
        model = spec[len(QWEN_PREFIX):].strip()
        if not model:
            raise InputError("qwen2-vl: needs a checkpoint, e.g. qwen2-vl:Qwen/Qwen2-VL-7B-Instruct")
        from numpro.qwen2vl import Qwen2VLBackend

        return Qwen2VLBackend(model, device=device, dtype=dtype, max_new_tokens=max_new_tokens,
                              max_pixels=max_pixels, attn_implementation=attn_implementation)
    return OpenAIVisionChat(spec, base_url=base_url, api_key=api_key, detail=detail, max_frames=max_frames,
                            image_format=image_format, max_tokens=max_new_tokens, timeout=timeout,
                            max_retries=max_retries)
