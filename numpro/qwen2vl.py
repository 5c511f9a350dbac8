"""A local transformers back-end for Qwen2-VL-style video models (Qwen2-VL, Qwen2.5-VL), as NumPro calls them.

The message layout follows the paper's script: one user turn whose content is ``[video, text]`` (video
first), rendered with the checkpoint's chat template and answered greedily. The numbered frames go in as one
video whose frame rate comes from the frames' real timestamps, so a model whose temporal positions depend on
time (Qwen2.5-VL's ``second_per_grid_ts``) sees the true sampling rate. With ``frame_labels`` the frames go in
as single images, each preceded by its text label (the TimeMarker-style interleaved mode).

Two encoders build the model inputs and give the same tensors:

* the checkpoint's ``AutoProcessor`` (``videos=`` through its video processor), used whenever transformers
  can build it, i.e. when torchvision is installed (transformers' Qwen2-VL video processor needs it);
* otherwise the tokenizer, the checkpoint's image processor and an explicit temporal patching step. The image
  processor resizes and normalises every frame exactly as for a still image and lays out its patches in the
  same spatial order as the video processor; runs of ``temporal_patch_size`` consecutive frames are then
  joined along the temporal axis of each patch, which is what the video processor does.

torch and transformers are imported only when a model is loaded or inputs are built.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tfvtg.errors import InputError, ModelError, first_line

logger = logging.getLogger("numpro.qwen2vl")

if TYPE_CHECKING:
    import torch

__all__ = ["Qwen2VLBackend", "Qwen2VLInputs", "fps_from_times"]

_DEFAULT_FPS = 1.0  # NumPro samples at 1 frame per second; used when no timestamps are given


def fps_from_times(times: Sequence[float] | None, num_frames: int) -> float:
    """The mean sampling rate of frames shown at ``times`` (seconds): (N - 1) / (last - first).

    One frame or no timestamps give NumPro's default of 1 fps.

    Raises:
        InputError: ``times`` has the wrong length, is not finite or does not strictly increase.
    """
    if times is None or num_frames < 2:
        if times is not None and len(times) != num_frames:
            raise InputError(f"got {len(times)} timestamps for {num_frames} frames; give one time per frame")
        return _DEFAULT_FPS
    t = np.asarray(times, dtype=np.float64)
    if t.shape != (num_frames,):
        raise InputError(f"got {t.size} timestamps for {num_frames} frames; give one time per frame")
    if not np.all(np.isfinite(t)) or np.any(np.diff(t) <= 0):
        raise InputError("frame timestamps must be finite and strictly increasing")
    return float((num_frames - 1) / (t[-1] - t[0]))


@dataclass
class Qwen2VLInputs:
    """What the model is given for one question.

    Attributes:
        tensors: Keyword arguments of ``model.generate`` (input_ids, attention_mask, pixel values, grids ...).
        text: The chat-templated prompt before the vision placeholders are expanded.
        fps: The frame rate the video was declared at (None in interleaved image mode).
        num_frames: Frames given by the caller.
        padded_frames: Copies of the last frame appended to fill the last temporal patch.
    """

    tensors: dict[str, Any]
    text: str
    fps: float | None
    num_frames: int
    padded_frames: int = 0


class Qwen2VLBackend:
    """Answers a question about numbered frames with a local Qwen2-VL-style model (the ``MLLM`` protocol).

    Args:
        model: A Hugging Face hub id (e.g. ``Qwen/Qwen2-VL-7B-Instruct``) or a local checkpoint directory.
        device: ``auto`` (cuda, then mps, then cpu), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        dtype: Compute dtype; bfloat16 on CUDA and float32 elsewhere by default.
        max_new_tokens: Cap on the generated answer (the paper uses 128 for moment retrieval).
        max_pixels: Per-frame pixel budget overriding the checkpoint's (fewer visual tokens per frame).
        attn_implementation: Passed to ``from_pretrained`` (e.g. ``flash_attention_2``, ``sdpa``).
    """

    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        dtype: str | None = None,
        max_new_tokens: int = 128,
        max_pixels: int | None = None,
        attn_implementation: str | None = None,
    ) -> None:
        if not str(model).strip():
            raise InputError(
                "no model given; pass a hub id such as Qwen/Qwen2-VL-7B-Instruct or a local directory"
            )
        if max_new_tokens < 1:
            raise InputError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        if max_pixels is not None and max_pixels < 28 * 28:
            raise InputError(f"max_pixels must be at least 784 (one 28x28 patch group), got {max_pixels}")
        self.model_id = str(model)
        self.name = f"qwen2-vl:{self.model_id}"
        self.device_name = device
        self.dtype_name = dtype
        self.max_new_tokens = int(max_new_tokens)
        self.max_pixels = max_pixels
        self.attn_implementation = attn_implementation
        self._model: Any = None
        self._processor: Any = None  # AutoProcessor when transformers can build it
        self._tokenizer: Any = None
        self._image_processor: Any = None
        self._chat_template: str | None = None
        self._model_type: str | None = None
        self._device: torch.device | None = None
        self.last_generated_tokens: int | None = None  # tokens generated by the latest answer()

    # ------------------------------------------------------------------ loading

    @property
    def loaded(self) -> bool:
        """Whether the model and its processor are in memory."""
        return self._model is not None

    def load(self) -> Qwen2VLBackend:
        """Load the model and processor now (otherwise the first ``answer`` does it).

        On CUDA the weights load straight onto the GPU (``device_map``, which needs the accelerate package;
        without it they load into host memory first, about 16 GB for a 7B model, with a warning).

        Raises:
            ModelError: The checkpoint is missing, unreachable or not Qwen2-VL-style, the device is absent, or
                the attention implementation cannot be used here (flash-attn not installed, no CUDA GPU).
        """
        if self._model is not None:
            return self
        source = self._source()
        if not Path(source).is_dir():  # offline and not cached: one line now, before torch, not retries
            from tfvtg.hub import require_model

            require_model(source)
        import torch  # noqa: F401  (fail early with a clear error if torch is broken)
        import transformers

        from tfvtg.device import place_on, resolve_device, resolve_dtype

        device = resolve_device(self.device_name)
        dtype = resolve_dtype(self.dtype_name, device)
        config = self._load("config", lambda: transformers.AutoConfig.from_pretrained(source))
        model_type = getattr(config, "model_type", None)
        model_cls = _model_class(model_type)
        place_on(device)
        kwargs: dict[str, Any] = {_dtype_kwarg(): dtype, **_placement_kwargs(device, _has_accelerate())}
        if self.attn_implementation:
            kwargs["attn_implementation"] = self.attn_implementation
        model = self._load("model", lambda: self._from_pretrained(model_cls, source, kwargs))
        try:
            if "device_map" not in kwargs:
                model = model.to(device)
            model = model.eval()
        except RuntimeError as exc:  # e.g. CUDA out of memory
            raise ModelError(f"cannot move {self.model_id} to {device}: {first_line(exc)}") from exc
        self._load_processor(source)
        self._model = model
        self._model_type = model_type
        self._device = device
        return self

    def _from_pretrained(self, model_cls: Any, source: str, kwargs: dict[str, Any]) -> Any:
        """``from_pretrained``; an attention implementation that cannot run here is a ModelError."""
        try:
            return model_cls.from_pretrained(source, **kwargs)
        except ImportError as exc:  # transformers' "FlashAttention2 has been toggled on, but ..." and kin
            if not self.attn_implementation:
                raise
            raise ModelError(
                f"cannot load {self.model_id} with attn_implementation={self.attn_implementation}: "
                f"{first_line(exc)}; install it (flash attention needs `pip install flash-attn` and a CUDA "
                f"GPU of compute capability 8.0 or newer) or use --attn-implementation sdpa"
            ) from exc

    def _source(self) -> str:
        """The checkpoint path or hub id; a path that looks local must exist."""
        path = Path(self.model_id).expanduser()
        looks_local = path.is_absolute() or self.model_id.startswith((".", "~")) or path.exists()
        if looks_local:
            if not path.is_dir():
                raise ModelError(
                    f"cannot load {self.model_id}: no such directory; pass a checkpoint directory or a hub "
                    "id such as Qwen/Qwen2-VL-7B-Instruct"
                )
            if not (path / "config.json").is_file():
                raise ModelError(
                    f"cannot load {self.model_id}: no config.json in it; the directory must hold a complete "
                    "Hugging Face checkpoint (config, weights, tokenizer, preprocessor config)"
                )
            return str(path)
        return self.model_id

    def _load(self, what: str, fn: Any) -> Any:
        """Run a ``from_pretrained`` call, turning hub and file errors into one actionable ModelError."""
        try:
            return fn()
        except OSError as exc:
            if Path(self.model_id).expanduser().is_dir():
                raise ModelError(
                    f"cannot load the {what} of {self.model_id}: {first_line(exc)}; "
                    "the directory must hold a complete Hugging Face checkpoint (config, weights, tokenizer)"
                ) from exc
            raise ModelError(
                f"cannot load {self.model_id}: not in the Hugging Face cache and the hub is unreachable "
                f"(or the id is wrong); download it with `hf download {self.model_id} --local-dir DIR` "
                "and pass that directory"
            ) from exc
        except ValueError as exc:
            raise ModelError(
                f"cannot load the {what} of {self.model_id}: {first_line(exc)}; "
                "a newer transformers may be needed (pip install -U transformers)"
            ) from exc
        except Exception as exc:
            if type(exc).__name__ != "SafetensorError":  # a damaged weights file; anything else is a bug
                raise
            raise ModelError(f"cannot load the {what} of {self.model_id}: damaged weights file ({exc}); "
                             "re-download or re-save the checkpoint") from exc

    def _load_processor(self, source: str) -> None:
        import transformers
        from transformers.utils import is_torchvision_available

        if is_torchvision_available():
            processor = self._load("processor", lambda: transformers.AutoProcessor.from_pretrained(source))
            if self.max_pixels is not None:
                for sub in (processor.image_processor, getattr(processor, "video_processor", None)):
                    if sub is not None:
                        _set_max_pixels(sub, self.max_pixels)
            self._processor = processor
            self._tokenizer = processor.tokenizer
            self._image_processor = processor.image_processor
            self._chat_template = getattr(processor, "chat_template", None) or self._tokenizer.chat_template
        else:
            self._tokenizer = self._load(
                "tokenizer", lambda: transformers.AutoTokenizer.from_pretrained(source)
            )
            self._image_processor = self._load(
                "image processor", lambda: transformers.AutoImageProcessor.from_pretrained(source)
            )
            if self.max_pixels is not None:
                _set_max_pixels(self._image_processor, self.max_pixels)
            self._chat_template = self._tokenizer.chat_template or _read_chat_template(source)
        if not self._chat_template:
            raise ModelError(
                f"{self.model_id} has no chat template (chat_template.json, chat_template.jinja or in "
                "tokenizer_config.json); use an instruction-tuned checkpoint such as "
                "Qwen/Qwen2-VL-7B-Instruct"
            )

    # ------------------------------------------------------------------ inputs

    @staticmethod
    def messages(prompt: str, frame_labels: Sequence[str] | None = None) -> list[dict]:
        """One user turn: ``[video, text]``, or ``[label0, image0, label1, image1, ..., text]``."""
        if frame_labels is None:
            content: list[dict[str, Any]] = [{"type": "video"}]
        else:
            content = []
            for label in frame_labels:
                content.append({"type": "text", "text": str(label)})
                content.append({"type": "image"})
        content.append({"type": "text", "text": prompt})
        return [{"role": "user", "content": content}]

    def build_inputs(
        self,
        frames: Sequence[np.ndarray],
        prompt: str,
        *,
        times: Sequence[float] | None = None,
        frame_labels: Sequence[str] | None = None,
    ) -> Qwen2VLInputs:
        """The model inputs for one question (loads the model first if needed).

        Raises:
            InputError: No frames, frames that are not RGB uint8 of one size, or mismatched times/labels.
        """
        frames = _check_frames(frames)
        if frame_labels is not None and len(frame_labels) != len(frames):
            raise InputError(f"got {len(frame_labels)} frame labels for {len(frames)} frames")
        fps = None if frame_labels is not None else fps_from_times(times, len(frames))
        if frame_labels is not None and times is not None and len(times) != len(frames):
            raise InputError(f"got {len(times)} timestamps for {len(frames)} frames; give one time per frame")
        self.load()
        text = self._tokenizer.apply_chat_template(
            self.messages(prompt, frame_labels),
            chat_template=self._chat_template,
            tokenize=False,
            add_generation_prompt=True,
        )
        if self._processor is not None:
            inputs = self._encode_with_processor(text, frames, fps, frame_labels is not None)
        else:
            inputs = self._encode_manually(text, frames, fps, frame_labels is not None)
        return inputs

    def _encode_with_processor(
        self, text: str, frames: list[np.ndarray], fps: float | None, as_images: bool
    ) -> Qwen2VLInputs:
        if as_images:
            out = self._processor(text=[text], images=frames, return_tensors="pt")
            return Qwen2VLInputs(dict(out), text, None, len(frames))
        video = np.stack(frames)
        try:
            from transformers.video_utils import VideoMetadata
        except ImportError:  # transformers 4.x (not exercised by the tests): the processor takes the rate
            video_kwargs: dict[str, Any] = {"fps": [fps]}
        else:
            n = len(frames)
            video_kwargs = {
                "video_metadata": [VideoMetadata(total_num_frames=n, fps=fps, frames_indices=list(range(n)))],
                "do_sample_frames": False,
            }
        out = self._processor(text=[text], videos=[video], return_tensors="pt", **video_kwargs)
        temporal = int(self._processor.video_processor.temporal_patch_size)
        return Qwen2VLInputs(dict(out), text, fps, len(frames), padded_frames=-len(frames) % temporal)

    def _encode_manually(
        self, text: str, frames: list[np.ndarray], fps: float | None, as_images: bool
    ) -> Qwen2VLInputs:
        import torch

        ip = self._image_processor
        merge = int(ip.merge_size)
        temporal = int(ip.temporal_patch_size)
        image_out = ip(images=frames, return_tensors="np")
        pixels = np.asarray(image_out["pixel_values"], dtype=np.float32)
        grids = np.asarray(image_out["image_grid_thw"], dtype=np.int64)
        tensors: dict[str, Any] = {}
        padded = 0
        if as_images:
            placeholder = "<|image_pad|>"
            counts = [int(g.prod()) // merge**2 for g in grids]
            tensors["pixel_values"] = torch.from_numpy(pixels)
            tensors["image_grid_thw"] = torch.from_numpy(grids)
        else:
            placeholder = "<|video_pad|>"
            patches, grid, padded = _video_patches(pixels, grids, temporal, int(ip.patch_size))
            counts = [int(np.prod(grid)) // merge**2]
            tensors["pixel_values_videos"] = torch.from_numpy(patches)
            tensors["video_grid_thw"] = torch.tensor([grid], dtype=torch.int64)
            if self._model_type == "qwen2_5_vl":
                tensors["second_per_grid_ts"] = torch.tensor([temporal / fps], dtype=torch.float32)
        expanded = _expand_placeholders(text, placeholder, counts)
        enc = self._tokenizer([expanded], return_tensors="pt")
        input_ids = enc["input_ids"]
        tensors["input_ids"] = input_ids
        tensors["attention_mask"] = enc["attention_mask"]
        if _accepts(self._model, "mm_token_type_ids"):
            image_id = self._tokenizer.convert_tokens_to_ids("<|image_pad|>")
            video_id = self._tokenizer.convert_tokens_to_ids("<|video_pad|>")
            types = (input_ids == image_id).to(torch.int32) + 2 * (input_ids == video_id).to(torch.int32)
            tensors["mm_token_type_ids"] = types
        return Qwen2VLInputs(tensors, text, fps, len(frames), padded_frames=padded)

    # ------------------------------------------------------------------ answering

    def answer(
        self,
        frames: Sequence[np.ndarray],
        prompt: str,
        *,
        times: Sequence[float] | None = None,
        frame_labels: Sequence[str] | None = None,
    ) -> str:
        """Greedy answer of the model to ``prompt`` about ``frames`` (RGB uint8, already numbered).

        Raises:
            InputError: Bad frames, times or labels.
            ModelError: The model cannot be loaded or generation fails (e.g. out of memory).
        """
        import torch

        inputs = self.build_inputs(frames, prompt, times=times, frame_labels=frame_labels)
        tensors = {
            k: v.to(self._device) if isinstance(v, torch.Tensor) else v for k, v in inputs.tensors.items()
        }
        dtype = next(self._model.parameters()).dtype
        for key in ("pixel_values", "pixel_values_videos"):
            if key in tensors:
                tensors[key] = tensors[key].to(dtype)
        prompt_len = tensors["input_ids"].shape[1]
        try:
            with torch.inference_mode():
                out = self._model.generate(
                    **tensors, do_sample=False, max_new_tokens=self.max_new_tokens, **_greedy_overrides()
                )
        except torch.cuda.OutOfMemoryError as exc:
            raise ModelError(
                f"{self.model_id} ran out of GPU memory on {inputs.num_frames} frames; "
                "lower max_pixels, sample fewer frames or use a smaller model"
            ) from exc
        self.last_generated_tokens = int(out.shape[1] - prompt_len)
        return self._tokenizer.decode(out[0, prompt_len:], skip_special_tokens=True).strip()


# ---------------------------------------------------------------------- helpers


def _check_frames(frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    frames = [np.asarray(f) for f in frames]
    if not frames:
        raise InputError("no frames to show the model")
    shape = frames[0].shape
    for i, f in enumerate(frames):
        if f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3:
            raise InputError(f"frame {i} must be an RGB uint8 array (H, W, 3), got {f.dtype} {f.shape}")
        if f.shape != shape:
            raise InputError(
                f"frame {i} is {f.shape[1]}x{f.shape[0]} but frame 0 is {shape[1]}x{shape[0]}; "
                "resize the frames to one size"
            )
    return frames


def _video_patches(
    pixels: np.ndarray, grids: np.ndarray, temporal: int, patch: int
) -> tuple[np.ndarray, tuple[int, int, int], int]:
    """Join per-frame image patches into video patches of ``temporal`` consecutive frames.

    The image processor repeats each still frame ``temporal`` times inside every patch (layout C, T, P, P);
    here slot t of temporal patch k holds frame k * temporal + t, as in the video processor. A count that is
    not a multiple of ``temporal`` is padded by repeating the last frame (the video processor does the same),
    so an odd number of frames works.

    Returns:
        The patches (grid_t * grid_h * grid_w, C * temporal * P * P), the grid (t, h, w) and the frames added.
    """
    n = len(grids)
    _, gh, gw = (int(x) for x in grids[0])
    spatial = gh * gw
    per_patch = pixels.shape[1]  # C * temporal * P * P
    channels = per_patch // (temporal * patch * patch)
    # (N, S, C, T, P*P) -> keep temporal slot 0 of each still frame -> (N, S, C, P*P)
    flat = pixels.reshape(n, spatial, channels, temporal, patch * patch)[:, :, :, 0, :]
    pad = -n % temporal
    if pad:
        flat = np.concatenate([flat, np.repeat(flat[-1:], pad, axis=0)], axis=0)
    grid_t = (n + pad) // temporal
    # (Tg, t, S, C, PP) -> (Tg, S, C, t, PP)
    video = flat.reshape(grid_t, temporal, spatial, channels, patch * patch).transpose(0, 2, 3, 1, 4)
    return np.ascontiguousarray(video.reshape(grid_t * spatial, per_patch)), (grid_t, gh, gw), pad


def _expand_placeholders(text: str, placeholder: str, counts: list[int]) -> str:
    """Replace the i-th ``placeholder`` in ``text`` by ``counts[i]`` copies of it."""
    parts = text.split(placeholder)
    if len(parts) - 1 != len(counts):
        raise ModelError(
            f"the chat template wrote {len(parts) - 1} {placeholder} placeholders for {len(counts)} visual "
            "inputs; the checkpoint's chat template is not Qwen2-VL-style"
        )
    out = [parts[0]]
    for count, rest in zip(counts, parts[1:], strict=True):
        out.append(placeholder * count)
        out.append(rest)
    return "".join(out)


def _set_max_pixels(processor: Any, max_pixels: int) -> None:
    """Lower a Qwen2-VL image/video processor's per-frame pixel budget (5.x ``size``, 4.x ``max_pixels``)."""
    size = getattr(processor, "size", None)
    if size is not None:
        if isinstance(size, dict):
            size["longest_edge"] = max_pixels
            if size.get("shortest_edge", 0) > max_pixels:
                size["shortest_edge"] = max_pixels
        else:
            size.longest_edge = max_pixels
            if (size.shortest_edge or 0) > max_pixels:
                size.shortest_edge = max_pixels
    if getattr(processor, "max_pixels", None) is not None:
        processor.max_pixels = max_pixels
        if (getattr(processor, "min_pixels", None) or 0) > max_pixels:
            processor.min_pixels = max_pixels


def _read_chat_template(source: str) -> str | None:
    """The chat template shipped beside the tokenizer (chat_template.jinja or chat_template.json), if any."""
    from transformers.utils import cached_file

    for name in ("chat_template.jinja", "chat_template.json"):
        try:
            path = cached_file(source, name, _raise_exceptions_for_missing_entries=False)
        except OSError:
            path = None
        if path and os.path.isfile(path):
            raw = Path(path).read_text(encoding="utf-8")
            if name.endswith(".jinja"):
                return raw
            try:
                return json.loads(raw)["chat_template"]
            except (ValueError, KeyError) as exc:
                raise ModelError(f"cannot read {name} of {source}: no 'chat_template' string in it") from exc
    return None


def _model_class(model_type: str | None) -> Any:
    import transformers

    if model_type == "qwen2_vl":
        return transformers.Qwen2VLForConditionalGeneration
    if model_type == "qwen2_5_vl" and hasattr(transformers, "Qwen2_5_VLForConditionalGeneration"):
        return transformers.Qwen2_5_VLForConditionalGeneration
    if hasattr(transformers, "AutoModelForImageTextToText"):
        return transformers.AutoModelForImageTextToText
    raise ModelError(
        f"transformers {transformers.__version__} cannot load model type {model_type!r}; "
        "pip install -U transformers"
    )


def _has_accelerate() -> bool:
    import importlib.util

    return importlib.util.find_spec("accelerate") is not None


def _placement_kwargs(device: torch.device, has_accelerate: bool) -> dict[str, Any]:
    """``from_pretrained`` arguments that load the weights straight onto ``device``: a ``device_map`` on
    CUDA when accelerate is installed (transformers needs it for one); none elsewhere (moved after load)."""
    import torch

    if device.type != "cuda":
        return {}
    if not has_accelerate:
        logger.warning("accelerate is not installed: the model loads into host memory before it moves to "
                       "%s (about 16 GB for a 7B model); pip install accelerate to load it straight onto the "
                       "GPU", device)
        return {}
    index = device.index if device.index is not None else torch.cuda.current_device()
    return {"device_map": {"": index}}


def _dtype_kwarg() -> str:
    """``dtype`` from transformers 4.56 on, ``torch_dtype`` before."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def _greedy_overrides() -> dict[str, Any]:
    """Clear the sampling settings of Qwen's generation configs, so greedy decoding raises no warnings."""
    return {"temperature": None, "top_p": None, "top_k": None}


def _accepts(model: Any, name: str) -> bool:
    import inspect

    return name in inspect.signature(model.forward).parameters
