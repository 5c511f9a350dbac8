"""Frame/text encoders for TFVTG, created by name (``create_encoder``) or from a local checkpoint directory.

Registry names map to Hugging Face checkpoints (timm/open_clip style); any other string is a Hub id or a
directory written by ``save_pretrained``. Importing this package does not import torch or transformers: the
back-end module is imported when an encoder is created.
"""

from __future__ import annotations

import re
from pathlib import Path

from tfvtg.encoders.base import Encoder, EncoderConfig, max_cosine_similarity
from tfvtg.errors import ModelError

__all__ = [
    "Encoder",
    "EncoderConfig",
    "create_encoder",
    "list_encoders",
    "max_cosine_similarity",
    "resolve_name",
    "REGISTRY",
]

# Name -> Hugging Face Hub id. "blip2-coco" is the paper's encoder (LAVIS blip2_image_text_matching, coco).
REGISTRY: dict[str, str] = {
    "blip2": "Salesforce/blip2-itm-vit-g",  # pretrain ITM/ITC weights, 224x224
    "blip2-coco": "Salesforce/blip2-itm-vit-g-coco",  # COCO-finetuned, 364x364: the TFVTG paper's weights
}
DEFAULT_ENCODER = "blip2-coco"

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def list_encoders() -> list[str]:
    """The registered short names, e.g. ``["blip2", "blip2-coco"]``."""
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

    Args:
        name_or_path: ``"blip2-coco"`` (``Salesforce/blip2-itm-vit-g-coco``, 364 px, the paper's weights),
            ``"blip2"`` (``Salesforce/blip2-itm-vit-g``, 224 px), a Hub id, or a local directory.
        device: ``"auto"`` (cuda, then mps, then cpu), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
        dtype: Precision (`tfvtg.device.resolve_precision`); None/``"auto"`` = ``autocast-float16`` (fp32
            weights, fp16 autocast: the official numerics) on CUDA, ``float32`` elsewhere.
        batch_size: Frames per forward pass.
        cache_dir: Hugging Face cache directory (default: the library's).
        local_files_only: True never touches the network; None uses cached files when present, else downloads
            (unless HF_HUB_OFFLINE=1); False always asks the Hub.

    Returns:
        An object following the `Encoder` protocol (for BLIP-2: `tfvtg.encoders.blip2.Blip2Encoder`).

    Raises:
        ModelError: Unknown name, missing directory, weights neither cached nor downloadable, not a BLIP-2
            retrieval checkpoint, or out of memory; the message says what to do.
        InputError: An unknown device or dtype name.
    """
    source, is_dir = resolve_name(name_or_path)
    if not is_dir and local_files_only is None:  # offline and not cached: one line now, not 30 s of retries
        from tfvtg.hub import require_model

        local_files_only = require_model(source, cache_dir) or None
    from tfvtg.encoders.blip2 import Blip2Encoder

    return Blip2Encoder.from_pretrained(  # a directory is always read offline there
        source,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
    )
