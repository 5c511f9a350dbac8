"""Whether a Hugging Face Hub model can be had: decided once per process, fast, before anything heavy loads.

Without this, a machine with no network and no copy of the model spends half a minute in the Hub client's
retries before failing. Here the answer comes from the local cache and, only when the model is not there, from
``HF_HUB_OFFLINE`` or one short TCP connection to the Hub's host; a model that cannot be had fails in
milliseconds with one line naming a download command that exists (``hf``, installed with huggingface_hub).
"""

from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlsplit

from tfvtg.errors import ModelError

__all__ = ["download_hint", "hub_offline", "in_cache", "offline_env", "require_model"]

_CONNECT_SECONDS = 1.5  # a reachable Hub answers a TCP handshake far sooner
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def offline_env() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set to 1, on, yes or true (any case): never ask the Hub."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


@functools.lru_cache(maxsize=1)
def _unreachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=_CONNECT_SECONDS):
            return False
    except OSError:  # no DNS, refused, timed out
        return True


def hub_offline() -> bool:
    """True when the Hub cannot be asked: ``HF_HUB_OFFLINE`` set, or its host unreachable (checked once).

    Behind a proxy (``HTTPS_PROXY``, ``ALL_PROXY``) the host is not probed: the client's own requests decide.
    """
    if offline_env():
        return True
    if any(os.environ.get(name) for name in _PROXY_VARIABLES):
        return False
    from huggingface_hub import constants

    url = urlsplit(constants.ENDPOINT)
    if not url.hostname:
        return False
    return _unreachable(url.hostname, url.port or (443 if url.scheme == "https" else 80))


def in_cache(repo_id: str, cache_dir: str | os.PathLike[str] | None = None) -> bool:
    """Whether the Hugging Face cache holds the repository's ``config.json`` (a model downloaded before)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache_dir)
    return isinstance(found, str)


def download_hint(repo_id: str) -> str:
    """The command that downloads ``repo_id`` into a directory, and how to use it (as the README says)."""
    local = f"models/{repo_id.rsplit('/', 1)[-1]}"
    return f"download it where there is network with `hf download {repo_id} --local-dir {local}` and pass " \
           f"--model {local}"


def require_model(repo_id: str, cache_dir: str | os.PathLike[str] | None = None) -> bool:
    """Check that a Hub model can be loaded; return whether it must be read from the cache only.

    Returns:
        True when the model must be read from the cache only (``HF_HUB_OFFLINE``), False otherwise. The Hub's
        host is probed only for a model the cache lacks.

    Raises:
        ModelError: The model is not in the cache and the Hub cannot be asked; one line with the command to
            download it.
    """
    if in_cache(repo_id, cache_dir):  # the loader reads the cache first: the network is not asked
        return offline_env()
    if not hub_offline():
        return False
    why = "HF_HUB_OFFLINE is set" if offline_env() else "the Hugging Face Hub cannot be reached"
    raise ModelError(f"cannot load {repo_id}: it is not in the Hugging Face cache and {why}; "
                     f"{download_hint(repo_id)}")
