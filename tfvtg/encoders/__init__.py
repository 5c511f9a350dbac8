"""Frame/text encoders for TFVTG, created by name (``create_encoder``) or from a local checkpoint directory.

Registry names map to Hugging Face checkpoints (timm/open_clip style); any other string is a Hub id or a
directory written by ``save_pretrained``. Importing this package does not import torch or transformers: the
back-end module is imported when an encoder is created.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from tfvtg.encoders.base import Encoder, EncoderConfig, max_cosine_similarity
from tfvtg.encoders.zoo import SPECS, EncoderSpec
from tfvtg.errors import ModelError

__all__ = [
    "Encoder",
    "EncoderConfig",
    "EncoderSpec",
    "checkpoint_model_type",
    "checkpoint_shape",
    "read_checkpoint_shape",
    "create_encoder",
    "list_encoders",
    "max_cosine_similarity",
    "resolve_name",
    "REGISTRY",
    "SPECS",
]

# Name -> Hugging Face Hub id. "blip2-coco" is the paper's encoder (LAVIS blip2_image_text_matching, coco);
# the others are the light encoders of the zoo (tfvtg.encoders.zoo).
REGISTRY: dict[str, str] = {spec.name: spec.checkpoint for spec in SPECS}
DEFAULT_ENCODER = "blip2-coco"
# config.json model_type -> back-end module. SigLIP 2's fixed-resolution checkpoints are model_type "siglip".
BACKENDS = {"blip-2": "blip2", "clip": "clip", "siglip": "clip"}

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def list_encoders() -> list[str]:
    """The registered short names, e.g. ``["blip2", "blip2-coco", "clip-b16", ...]``."""
    return sorted(REGISTRY)


def resolve_name(name_or_path: str) -> tuple[str, bool]:
    """What ``name_or_path`` refers to: (Hub id or absolute directory, is_directory).

    Registered short names win over same-named directories in the working directory (write ``./blip2`` to mean
    the directory).

    Raises:
        ModelError: A path that does not exist, or a name that is neither registered nor a Hub id.
    """
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise ModelError(
            f"no encoder named {name_or_path!r}; use one of {', '.join(list_encoders())}, "
            f"a Hugging Face model id or a local directory"
        )
    name = name_or_path.strip()
    if name in REGISTRY:
        return REGISTRY[name], False
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path.resolve()), True
    looks_like_path = name.startswith((".", "/", "~", "\\")) or path.exists() or (Path(name).drive != "")
    if looks_like_path:
        kind = "is not a directory" if path.exists() else "does not exist"
        raise ModelError(
            f"cannot load encoder from {name}: {kind}; pass a directory written by save_pretrained "
            f"or one of {', '.join(list_encoders())}"
        )
    if _HUB_ID.match(name):
        return name, False
    raise ModelError(
        f"unknown encoder {name!r}: not a registered name ({', '.join(list_encoders())}), not a "
        f"local directory and not a Hugging Face id (owner/name)"
    )


def create_encoder(
    name_or_path: str = DEFAULT_ENCODER,
    *,
    device: str = "auto",
    dtype: str | None = None,
    batch_size: int = 32,
    cache_dir: str | None = None,
    local_files_only: bool | None = None,
) -> Encoder:
    """Create an encoder from a registered name, a Hugging Face Hub id or a ``save_pretrained`` directory.

    The back-end is chosen by the checkpoint's ``config.json`` ``model_type``: ``blip-2`` (BLIP-2 retrieval,
    `tfvtg.encoders.blip2`), ``clip`` or ``siglip`` (CLIP, SigLIP, SigLIP 2 fixed resolution,
    `tfvtg.encoders.clip`).

    Args:
        name_or_path: ``"blip2-coco"`` (``Salesforce/blip2-itm-vit-g-coco``, 364 px, the paper's weights),
            ``"blip2"`` (224 px), ``"clip-b32"``, ``"clip-b16"``, ``"clip-l14"``, ``"siglip2-b16"`` (see
            ``tfvtg encoders``), a Hub id, or a local directory.
        device: ``"auto"`` (cuda, then mps, then cpu), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
        dtype: Precision (`tfvtg.device.resolve_precision`); None/``"auto"`` = ``autocast-float16`` (fp32
            weights, fp16 autocast: the official numerics) on CUDA, ``float32`` elsewhere.
        batch_size: Frames per forward pass.
        cache_dir: Hugging Face cache directory (default: the library's).
        local_files_only: True never touches the network; None uses cached files when present, else downloads
            (unless HF_HUB_OFFLINE=1); False always asks the Hub.

    Returns:
        An object following the `Encoder` protocol (`tfvtg.encoders.blip2.Blip2Encoder` or
        `tfvtg.encoders.clip.ClipEncoder`).

    Raises:
        ModelError: Unknown name, missing directory, weights neither cached nor downloadable, a checkpoint of
            an unsupported type, or out of memory; the message says what to do.
        InputError: An unknown device or dtype name.
    """
    source, is_dir = resolve_name(name_or_path)
    if not is_dir and local_files_only is None:  # offline and not cached: one line now, not 30 s of retries
        from tfvtg.hub import require_model

        local_files_only = require_model(source, cache_dir) or None
    spec = _SPECS_BY_NAME.get(name_or_path.strip())
    if spec is not None:
        model_type: str | None = spec.model_type
    else:
        model_type = checkpoint_model_type(source, is_dir, cache_dir, local_files_only)
    if model_type is not None and model_type not in BACKENDS:
        raise ModelError(
            f"cannot load {source}: it is a {model_type} checkpoint; tfvtg encodes with BLIP-2 retrieval "
            f"(blip-2), CLIP (clip) or SigLIP / SigLIP 2 fixed-resolution (siglip) checkpoints, not a "
            f"{model_type} one{_NAFLEX_HINT if model_type == 'siglip2' else ''}"
        )
    if model_type is not None and BACKENDS[model_type] == "clip":
        from tfvtg.encoders.clip import ClipEncoder as backend
    else:  # BLIP-2, or a checkpoint whose config cannot be read here: the BLIP-2 loader says what is wrong
        from tfvtg.encoders.blip2 import Blip2Encoder as backend

    return backend.from_pretrained(  # a directory is always read offline there
        source,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
    )


_SPECS_BY_NAME = {spec.name: spec for spec in SPECS}
_NAFLEX_HINT = " (SigLIP 2 NaFlex, variable resolution; use a fixed-resolution one such as siglip2-b16)"


def checkpoint_model_type(
    source: str, is_dir: bool, cache_dir: str | None = None, local_files_only: bool | None = None
) -> str | None:
    """The ``model_type`` in a checkpoint's ``config.json`` (directory, cache, else the Hub), or None.

    None when the file cannot be read here (missing, offline, not JSON): the loader then reports why.
    """
    if is_dir:
        path: str | None = os.path.join(source, "config.json")
    else:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache

        found = try_to_load_from_cache(source, "config.json", cache_dir=cache_dir)
        path = found if isinstance(found, str) else None
        from tfvtg.hub import offline_env

        offline = local_files_only is True or offline_env()
        if path is None and not offline:
            try:
                path = hf_hub_download(source, "config.json", cache_dir=cache_dir)
            except Exception:  # noqa: BLE001 (any hub failure: the loader reports it with its hint)
                path = None
    if path is None or not os.path.isfile(path):
        return None
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    return model_type if isinstance(model_type, str) else None


def checkpoint_shape(
    config: dict, preprocessor: dict
) -> tuple[tuple[int, int] | None, int | None, int | None]:
    """(image size, Q, D) of the features a checkpoint makes, read from its JSON files (None: not known).

    Args:
        config: The checkpoint's ``config.json``.
        preprocessor: Its ``preprocessor_config.json`` (the image size: ``size``, or ``crop_size`` when the
            processor crops, as CLIP's does).
    """
    model_type = config.get("model_type")
    size = preprocessor.get("crop_size") if preprocessor.get("do_center_crop") else preprocessor.get("size")
    size = size if isinstance(size, dict) else {}
    height, width = _count(size.get("height")), _count(size.get("width"))
    image_size = (height, width) if height and width else None
    if model_type == "clip":
        return image_size, 1, _count(config.get("projection_dim", 512))
    if model_type == "siglip":
        text = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
        return image_size, 1, _count(text.get("projection_size") or text.get("hidden_size", 768))
    return image_size, _count(config.get("num_query_tokens")), _count(config.get("image_text_hidden_size"))


def read_checkpoint_shape(
    name_or_path: str,
) -> tuple[str, tuple[int, int] | None, int | None, int | None]:
    """(encoder id, image size, Q, D) of an encoder from the JSON files at hand, never loading weights.

    The id is what its feature files record (a Hub id, or a directory's absolute path). The JSON files are
    read from the directory or from the local Hugging Face cache, never downloaded; a value they do not give
    is None.

    Raises:
        ModelError: ``name_or_path`` is neither registered, a directory nor a Hub id (`resolve_name`).
    """
    source, is_dir = resolve_name(name_or_path)
    image_size, queries, dim = checkpoint_shape(_checkpoint_json(source, is_dir, "config.json"),
                                                _checkpoint_json(source, is_dir, "preprocessor_config.json"))
    return source, image_size, queries, dim


def _checkpoint_json(source: str, is_dir: bool, filename: str) -> dict:
    """A JSON file of a checkpoint directory or of the local Hugging Face cache; ``{}`` when not at hand."""
    if is_dir:
        path: str | None = os.path.join(source, filename)
    else:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(source, filename)
        path = found if isinstance(found, str) else None
    if path is None or not os.path.isfile(path):
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # a broken checkpoint is reported when it is loaded
    return data if isinstance(data, dict) else {}


def _count(value: object) -> int | None:
    """``value`` when it is a positive int, else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
