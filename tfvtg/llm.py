"""One chat call to any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp's server, ...), retried.

`LLMEndpoint.resolve` turns command-line options and the ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL`` environment
into an endpoint, or ``None`` when no LLM is configured. `chat` sends one conversation and returns the answer.

Retries are ours, not the client's (the client is built with ``max_retries=0``): the ``openai`` client would
honour a ``Retry-After`` of up to two minutes, while a batch of thousands of queries wants a tighter bound.
Timeouts, connection errors, 408/409/429 and 5xx are retried ``max_retries`` times; a ``Retry-After`` of up to
`MAX_RETRY_AFTER` seconds is honoured, a longer one ends the call at once. Everything else (a bad key, an
unknown model, a malformed request) fails at once. The API key is never logged nor part of an error message.
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from tfvtg.errors import InputError, LLMError

if TYPE_CHECKING:
    import openai

__all__ = ["LLMEndpoint", "LLMUnavailableError", "chat", "MAX_RETRY_AFTER", "PLACEHOLDER_API_KEY"]

log = logging.getLogger(__name__)

MAX_RETRY_AFTER = 30.0
"""Longest server-requested wait (seconds) that a retry honours; a longer ``Retry-After`` fails the call."""

PLACEHOLDER_API_KEY = "EMPTY"
"""Sent to a local server (base URL given, no key): the client needs some key, such servers ignore it."""

_BACKOFF_FIRST = 0.5
_BACKOFF_MAX = 8.0
_RETRYABLE_STATUS = frozenset({408, 409, 429})
_NO_MODEL = frozenset({"", "none", "off", "no"})
_CLIENT_LOCK = threading.Lock()


class LLMUnavailableError(LLMError):
    """The endpoint gave no answer after the bounded retries (timeouts, connection errors, 429, 5xx).

    A transient condition: callers with a fallback (the query decomposition) use it and carry on, unlike other
    `LLMError` cases (a rejected key, an unknown model), which need the user to fix the configuration.
    """


@dataclass(frozen=True)
class LLMEndpoint:
    """Where and how to reach an OpenAI-compatible chat model.

    Attributes:
        model: The model name the server knows (``gpt-4o-mini``, ``Qwen/Qwen2.5-7B-Instruct``, ...).
        base_url: The API root, ending in ``/v1`` for most servers; ``None`` for OpenAI itself.
        api_key: Secret; never shown in ``repr``, logs or error messages.
        timeout: Seconds to wait for each request (connect, read and write each).
        max_retries: Extra attempts after a transient failure (so ``1 + max_retries`` requests at most).
    """

    model: str
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 60.0
    max_retries: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise InputError("LLM model name is empty; pass --llm MODEL (or --llm none for no LLM)")
        if not self.timeout > 0:
            raise InputError(f"LLM timeout must be positive, got {self.timeout}")
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise InputError(f"LLM max_retries must be a non-negative integer, got {self.max_retries!r}")
        if self.base_url is not None:
            try:
                parts = urlsplit(self.base_url)
                valid = parts.scheme in ("http", "https") and bool(parts.hostname)
            except ValueError:
                valid = False
            if not valid:
                raise InputError(f"LLM base URL {_public_url(self.base_url)!r} is not an http(s) URL; give "
                                 "one such as http://localhost:8000/v1")

    @classmethod
    def resolve(
        cls, model: str | None, base_url: str | None = None, api_key: str | None = None, **kw: Any
    ) -> LLMEndpoint | None:
        """The endpoint the user configured, or ``None`` when there is none.

        None when ``model`` is ``None``, empty or ``"none"``, or when neither a key nor a base URL is known
        (arguments first, then ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL``). A server given by URL needs no key.

        Args:
            model: Model name; ``None``/``""``/``"none"`` mean no LLM.
            base_url: API root; defaults to ``$OPENAI_BASE_URL``.
            api_key: Secret; defaults to ``$OPENAI_API_KEY``, then `PLACEHOLDER_API_KEY` for a base URL.
            **kw: ``timeout``, ``max_retries``.
        """
        if model is None or model.strip().lower() in _NO_MODEL:
            return None
        base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or "").strip() or None
        api_key = (api_key or os.environ.get("OPENAI_API_KEY") or "").strip() or None
        if base_url is None and api_key is None:
            return None
        return cls(model.strip(), base_url, api_key or PLACEHOLDER_API_KEY, **kw)

    def describe(self) -> str:
        """``model 'x' at host/path`` for messages: no key, no credentials embedded in the URL."""
        return f"model {self.model!r} at {_public_url(self.base_url) if self.base_url else 'api.openai.com'}"

    def client(self) -> openai.OpenAI:
        """The ``openai.OpenAI`` client for this endpoint, built once and shared (it is thread-safe).

        Built with ``max_retries=0``: `chat` does the retrying.
        """
        cached = self.__dict__.get("_client")
        if cached is None:
            with _CLIENT_LOCK:
                cached = self.__dict__.get("_client")
                if cached is None:
                    import openai

                    cached = openai.OpenAI(
                        api_key=self.api_key or PLACEHOLDER_API_KEY,
                        base_url=self.base_url,
                        timeout=self.timeout,
                        max_retries=0,
                    )
                    self.__dict__["_client"] = cached  # frozen dataclass: a cache, not a field
        return cached

    def __getstate__(self) -> dict[str, Any]:
        # The cached client (sockets, locks) does not pickle; a copy builds its own.
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


def chat(
    endpoint: LLMEndpoint, messages: list[dict[str, Any]], *, temperature: float | None = 0.0, **kw: Any
) -> str:
    """Send one chat conversation and return the answer text.

    Args:
        endpoint: Where to send it.
        messages: OpenAI chat messages (``{"role": ..., "content": ...}``); content may hold image parts.
        temperature: Sampling temperature; ``None`` leaves it to the server. A server that rejects it (a 400
            naming ``temperature``, as reasoning models do) is asked again once without it, and later calls on
            the same endpoint leave it out.
        **kw: Other ``chat.completions.create`` parameters (``max_tokens``, ``response_format``, ...).

    Returns:
        The message content of the first choice (``""`` if the model said nothing).

    Raises:
        LLMUnavailableError: No answer after ``1 + endpoint.max_retries`` attempts (timeouts, connection
            errors, 429, 5xx), or the server asked to wait longer than `MAX_RETRY_AFTER`.
        LLMError: The request was refused for good (bad key, unknown model, bad request) or the reply had no
            choices.
    """
    import openai

    client = endpoint.client()
    params = dict(kw)
    if temperature is not None and not endpoint.__dict__.get("_no_temperature"):
        params["temperature"] = temperature
    attempts = 1 + endpoint.max_retries
    attempt = 0
    while True:
        attempt += 1
        try:
            response = client.chat.completions.create(model=endpoint.model, messages=messages, **params)
        except openai.APIStatusError as exc:
            status = exc.status_code
            reason = f"HTTP {status}: {_server_message(exc)}"
            if status == 400 and "temperature" in params and "temperature" in reason.lower():
                log.info("%s rejects a temperature setting; asking without it", endpoint.describe())
                endpoint.__dict__["_no_temperature"] = True
                del params["temperature"]
                attempt -= 1  # a changed request, not a retry
                continue
            if status not in _RETRYABLE_STATUS and status < 500:
                raise LLMError(_failure(endpoint, reason, attempt, hint=_hint(status))) from None
            retry_after = _retry_after(exc.response.headers)
            if retry_after is not None and retry_after > MAX_RETRY_AFTER:
                limit = f"{MAX_RETRY_AFTER:.0f} s"
                reason += f" (server asks to wait {retry_after:.0f} s, more than the {limit} allowed)"
                raise LLMUnavailableError(_failure(endpoint, reason, attempt)) from None
        except openai.APITimeoutError:
            reason, retry_after = f"no answer within {endpoint.timeout:g} s", None
        except openai.APIConnectionError as exc:
            reason, retry_after = f"cannot connect ({_cause(exc)})", None
        else:
            if not response.choices:
                raise LLMError(_failure(endpoint, "the reply has no choices", attempt))
            return response.choices[0].message.content or ""
        if attempt >= attempts:
            raise LLMUnavailableError(_failure(endpoint, reason, attempt))
        wait = retry_after if retry_after is not None else _backoff(attempt)
        log.debug(
            "%s: %s; retrying in %.1f s (attempt %d of %d)",
            endpoint.describe(), reason, wait, attempt + 1, attempts,
        )
        time.sleep(wait)


def _backoff(attempt: int) -> float:
    """Exponential backoff with jitter: about 0.5, 1, 2, 4, 8, 8 ... seconds after attempts 1, 2, 3 ..."""
    return min(_BACKOFF_FIRST * 2.0 ** (attempt - 1), _BACKOFF_MAX) * (1.0 - 0.25 * random.random())


def _retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or HTTP date); None if absent."""
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            parsed = email.utils.parsedate_tz(value)
            if parsed is None:
                continue
            seconds = email.utils.mktime_tz(parsed) - time.time()
        if seconds != seconds:  # NaN
            continue
        return max(0.0, seconds)
    return None


def _server_message(exc: Any) -> str:
    """The server's own error message (``{"error": {"message": ...}}``), else the exception text."""
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
        if isinstance(inner, str):
            return inner
    return str(getattr(exc, "message", "") or exc)


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return type(cause).__name__ if cause is not None else "connection error"


def _hint(status: int) -> str:
    if status in (401, 403):
        return "check the API key (OPENAI_API_KEY)"
    if status == 404:
        return "check --llm (model name) and --llm-base-url (it usually ends in /v1)"
    return ""


def _failure(endpoint: LLMEndpoint, reason: str, attempts: int, hint: str = "") -> str:
    """One line, without the API key, even if the server echoed it back."""
    plural = "s" if attempts != 1 else ""
    text = f"LLM request to {endpoint.describe()} failed after {attempts} attempt{plural}: {reason}"
    if hint:
        text += f"; {hint}"
    return _redact(" ".join(text.split()), endpoint.api_key)[:600]


def _redact(text: str, secret: str | None) -> str:
    if secret and secret != PLACEHOLDER_API_KEY and len(secret) >= 4:
        text = text.replace(secret, "***")
    # Also what looks like a key (sk-...), should a server echo another one back.
    return re.sub(r"\bsk-[A-Za-z0-9_\-]{8,}", "sk-***", text)


def _public_url(url: str) -> str:
    """The URL without user:password@ and without a query string (either may carry a secret)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
