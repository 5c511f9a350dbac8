"""`Decomposition`: a query split into paraphrases and ordered sub-events, as TFVTG's LLM step produces it.

The schema is TFVTG's (``relationship`` and ``query_json`` with ``sub_query_id`` and ``descriptions``), so the
official ``llm_outputs.json`` loads as it is. Entry 0 of ``query_json`` holds rewrites of the whole query; the
following entries are the sub-events in the order they happen.

`decompose` (or a reusable `Decomposer`) asks any OpenAI-compatible LLM for that answer. The answer is
untrusted text: `parse_answer` reads it leniently without ever evaluating it, `validate_answer` checks the
schema, a bad answer is asked again with the error, good answers are cached on disk, and whatever fails falls
back to the plain query with a warning. `decompose_annotations` writes a dataset's ``llm_outputs.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfvtg.errors import InputError, check_count

if TYPE_CHECKING:
    from tfvtg.llm import LLMEndpoint

__all__ = [
    "RELATIONS",
    "Answer",
    "Decomposer",
    "Decomposition",
    "InvalidAnswerError",
    "decompose",
    "default_cache_dir",
    "parse_answer",
    "validate_answer",
    "write_json_atomic",
]

log = logging.getLogger(__name__)

RELATIONS = ("single-query", "sequentially", "simultaneously")


def _clean_descriptions(value: Any) -> tuple[str, ...]:
    """The non-empty strings of a ``descriptions`` value (a string counts as one description)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        return ()
    return tuple(text.strip() for text in value if isinstance(text, str) and text.strip())


@dataclass(frozen=True)
class Decomposition:
    """A query, its paraphrases, its sub-events and how the sub-events relate in time.

    Attributes:
        query: The original query sentence (may be empty when only an LLM answer is known).
        paraphrases: Rewrites of the whole query (TFVTG's ``sub_query_id`` 0).
        sub_events: One tuple of descriptions per sub-event, in the order they are expected to happen.
        relation: ``"single-query"``, ``"sequentially"`` or ``"simultaneously"``. Any other relation means no
            constraint between sub-events, as in the official code.
        source: Where it came from: ``"llm"``, ``"cache"``, ``"file"`` or ``"fallback"``.
        note: Why a fallback was used, if it was (shown to the user and written to JSON outputs).
    """

    query: str
    paraphrases: tuple[str, ...] = ()
    sub_events: tuple[tuple[str, ...], ...] = ()
    relation: str = "single-query"
    source: str = "fallback"
    note: str | None = field(default=None, compare=False)

    @classmethod
    def single(cls, query: str, note: str | None = None) -> Decomposition:
        """The plain query as its only description: what the method does without an LLM."""
        if not isinstance(query, str):
            raise InputError(f"query must be a sentence (a str), got {type(query).__name__}")
        return cls(query=query.strip(), source="fallback", note=note)

    @property
    def is_fallback(self) -> bool:
        """True when no usable LLM answer was behind this decomposition."""
        return self.source == "fallback"

    @property
    def main_descriptions(self) -> tuple[str, ...]:
        """The descriptions localised for the whole query: the query itself, then its paraphrases."""
        return ((self.query,) if self.query else ()) + self.paraphrases

    @classmethod
    def from_tfvtg(
        cls, answer: Mapping[str, Any] | None, query: str = "", source: str = "file"
    ) -> Decomposition:
        """Read one LLM answer in TFVTG's schema (one entry of ``response`` in ``llm_outputs.json``).

        Positions in ``query_json`` decide the roles, as in the official code: entry 0 holds the paraphrases
        and the rest are sub-events (``sub_query_id`` is not consulted). Missing, empty or malformed answers
        fall back to the plain query as a single description instead of raising; descriptions that are not
        non-empty strings are dropped, and a sub-event left with none is dropped.

        Args:
            answer: The parsed answer dict, or ``None`` / ``{}`` when the LLM call failed.
            query: The original sentence; it is localised together with the paraphrases.
            source: Recorded in ``source`` when the answer is usable.
        """
        query = query.strip() if isinstance(query, str) else ""
        if not isinstance(answer, Mapping) or not answer:
            return cls.single(query, note="no LLM answer")
        entries = answer.get("query_json")
        if not isinstance(entries, list):
            return cls.single(query, note="LLM answer has no query_json list")
        described = [
            _clean_descriptions(e.get("descriptions")) if isinstance(e, Mapping) else () for e in entries
        ]
        paraphrases = described[0] if described else ()
        sub_events = tuple(d for d in described[1:] if d)
        relation = answer.get("relationship")
        note = None
        if not isinstance(relation, str) or not relation.strip():
            relation, note = "single-query", "LLM answer has no relationship; sub-events taken unconstrained"
        relation = relation.strip()
        if not paraphrases and not sub_events:
            return cls.single(query, note="LLM answer has no usable descriptions")
        return cls(query, paraphrases, sub_events, relation, source=source, note=note)

    def to_tfvtg(self) -> dict[str, Any]:
        """This decomposition in TFVTG's schema; ``{}`` for a fallback, as the official tools store it."""
        if self.is_fallback:
            return {}
        entries = [{"sub_query_id": 0, "descriptions": list(self.paraphrases)}]
        entries += [{"sub_query_id": i, "descriptions": list(d)} for i, d in enumerate(self.sub_events, 1)]
        return {"relationship": self.relation, "query_json": entries}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary for outputs: the TFVTG fields plus ``query``, ``source`` and ``note``."""
        out: dict[str, Any] = {"query": self.query, "relationship": self.relation}
        out["paraphrases"] = list(self.paraphrases)
        out["sub_events"] = [list(d) for d in self.sub_events]
        out["source"] = self.source
        if self.note:
            out["note"] = self.note
        return out


# --------------------------------------------------------------------------------------------------------
# Asking an LLM: parse and validate its untrusted answer, retry with the error, cache good answers, fall back.
# --------------------------------------------------------------------------------------------------------

MAX_SUB_EVENTS = 8
"""Most sub-events (entries after entry 0) an answer may have; real answers have at most 4."""
MAX_DESCRIPTIONS = 8
"""Most descriptions per entry; real answers have 1 to 3."""
MAX_DESCRIPTION_CHARS = 300
"""Longest description; a real one is about 40 to 110 characters."""
MAX_ANSWER_CHARS = 100_000

_RELATION_ALIASES = {"single": "single-query", "sequential": "sequentially", "simultaneous": "simultaneously"}
# Bumped when the user message or the answer handling changes: cached answers of older formats are not used.
_REQUEST_FORMAT = "tfvtg-decompose-1"
_STOPWORDS = frozenset({
    "a", "an", "the", "is", "are", "was", "were", "be", "been", "being", "of", "to", "in", "on", "at", "and",
    "or", "with", "his", "her", "their", "its", "them", "they", "it", "this", "that", "these", "those",
    "from", "into", "onto", "then", "there",
})
_FENCE = re.compile(r"```[ \t]*(?:json5?|JSON5?|javascript|js)?[ \t]*\r?\n?(.*?)```", re.DOTALL)


class InvalidAnswerError(InputError):
    """An LLM answer is not usable JSON in TFVTG's decomposition schema; the message says what is wrong."""


def parse_answer(text: str) -> Any:
    """Parse an LLM's JSON answer leniently but safely (never ``eval``).

    Accepts what models commonly wrap around or slip into JSON: Markdown code fences, prose before or after
    the object, trailing commas, single-quoted strings, ``//`` and ``/* */`` comments, and Python's
    ``True``/``False``/``None``.

    Raises:
        InvalidAnswerError: No JSON value can be read from the text.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidAnswerError("the answer is empty")
    if len(text) > MAX_ANSWER_CHARS:
        raise InvalidAnswerError(f"the answer is {len(text)} characters long, more than {MAX_ANSWER_CHARS}")
    text = text.strip().lstrip("\ufeff")
    fenced = _FENCE.search(text)
    if fenced:
        text = fenced.group(1).strip()
    elif text.startswith("```"):  # an unclosed fence: the answer was cut off, or the model forgot it
        text = text.split("\n", 1)[1] if "\n" in text else ""
    start, end = text.find("{"), text.rfind("}")
    candidates = [text]
    if 0 <= start < end and (start, end) != (0, len(text) - 1):
        candidates.append(text[start : end + 1])
    error: json.JSONDecodeError | None = None
    for candidate in candidates:
        for attempt in (candidate, _repair_json(candidate)):
            try:
                return json.loads(attempt)
            except json.JSONDecodeError as exc:
                error = error or exc
            except RecursionError:
                raise InvalidAnswerError("the answer is nested too deeply to be a decomposition") from None
    assert error is not None
    where = f"line {error.lineno} column {error.colno}"
    raise InvalidAnswerError(f"the answer is not valid JSON ({error.msg} at {where})")


def _repair_json(text: str) -> str:
    """Rewrite JSON5-ish text as JSON: single-quoted strings, trailing commas, comments, Python constants."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "\"'":  # a string: copy it, as a double-quoted JSON string
            j, chars = i + 1, []
            while j < n and text[j] != ch:
                if text[j] == "\\" and j + 1 < n:
                    escaped = text[j + 1]
                    if escaped == "'":
                        chars.append("'")
                    else:
                        chars.append(text[j : j + 2])
                    j += 2
                    continue
                chars.append('\\"' if text[j] == '"' else "\\n" if text[j] == "\n" else text[j])
                j += 1
            out.append('"' + "".join(chars) + '"')
            i = j + 1
        elif text.startswith("//", i):
            newline = text.find("\n", i)
            i = n if newline < 0 else newline
        elif text.startswith("/*", i):
            close = text.find("*/", i + 2)
            i = n if close < 0 else close + 2
        elif ch == ",":
            j = i + 1
            while j < n and text[j].isspace():
                j += 1
            if j < n and text[j] in "}]":  # trailing comma
                i += 1
                continue
            out.append(ch)
            i += 1
        elif ch.isalpha():
            j = i
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            word = text[i:j]
            out.append({"True": "true", "False": "false", "None": "null"}.get(word, word))
            i = j
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def validate_answer(answer: Any, query: str = "") -> dict[str, Any]:
    """Check one decomposition answer against TFVTG's schema and return it normalised.

    Rules: ``relationship`` is one of `RELATIONS` (case, spaces and the forms "single", "sequential",
    "simultaneous" are tolerated); ``query_json`` is a non-empty list whose entries have ``sub_query_id``
    0, 1, 2, ... in order and a non-empty list of non-empty ``descriptions`` (at most `MAX_DESCRIPTIONS`, each
    at most `MAX_DESCRIPTION_CHARS` characters); at most `MAX_SUB_EVENTS` sub-events; "sequentially" and
    "simultaneously" need at least one sub-event. Entry 0 must rewrite the query: when the query is given, its
    descriptions share a content word with it (a cheap check that catches an answer about something else).

    Args:
        answer: The parsed JSON.
        query: The query it answers; empty to skip the rewrite check.

    Returns:
        ``{"reasoning"?, "sub-queries"?, "relationship", "query_json"}``, strings stripped, integer ids.

    Raises:
        InvalidAnswerError: What is wrong, in a sentence the LLM can act on.
    """
    if not isinstance(answer, Mapping):
        raise InvalidAnswerError(f"the answer must be a JSON object, not {_json_type(answer)}")
    relation = answer.get("relationship")
    if not isinstance(relation, str):
        raise InvalidAnswerError('the answer has no "relationship" string')
    normalised = "-".join(relation.strip().lower().replace("_", " ").replace("-", " ").split())
    normalised = _RELATION_ALIASES.get(normalised, normalised)
    if normalised not in RELATIONS:
        raise InvalidAnswerError(
            f'"relationship" must be one of {", ".join(RELATIONS)}; got {_shorten(relation, 40)!r}'
        )
    entries = answer.get("query_json")
    if not isinstance(entries, list) or not entries:
        raise InvalidAnswerError(
            '"query_json" must be a non-empty list of {"sub_query_id", "descriptions"} objects'
        )
    if len(entries) > MAX_SUB_EVENTS + 1:
        raise InvalidAnswerError(
            f'"query_json" has {len(entries)} entries; at most {MAX_SUB_EVENTS + 1} (entry 0 and '
            f"{MAX_SUB_EVENTS} sub-events) are allowed"
        )
    clean_entries = [_validate_entry(entry, index) for index, entry in enumerate(entries)]
    if normalised != "single-query" and len(clean_entries) < 2:
        raise InvalidAnswerError(
            f'"relationship" is {normalised!r} but "query_json" has no sub-events after entry 0'
        )
    if query:
        _check_rewrite(query, clean_entries[0]["descriptions"])
    out: dict[str, Any] = {}
    for key in ("reasoning", "sub-queries"):
        if isinstance(answer.get(key), str):
            out[key] = answer[key].strip()
    out["relationship"] = normalised
    out["query_json"] = clean_entries
    return out


def _validate_entry(entry: Any, index: int) -> dict[str, Any]:
    where = f'"query_json" entry {index}'
    if not isinstance(entry, Mapping):
        raise InvalidAnswerError(f"{where} must be an object, not {_json_type(entry)}")
    ident = entry.get("sub_query_id")
    if isinstance(ident, str) and ident.strip().isdigit():
        ident = int(ident)
    if isinstance(ident, bool) or not isinstance(ident, int) or ident != index:
        raise InvalidAnswerError(
            f'{where} must have "sub_query_id": {index} (ids count 0, 1, 2, ...); got {ident!r}'
        )
    descriptions = entry.get("descriptions")
    if isinstance(descriptions, str):
        descriptions = [descriptions]
    if not isinstance(descriptions, list) or not descriptions:
        raise InvalidAnswerError(f'{where} must have "descriptions": a non-empty list of sentences')
    if len(descriptions) > MAX_DESCRIPTIONS:
        raise InvalidAnswerError(
            f"{where} has {len(descriptions)} descriptions; at most {MAX_DESCRIPTIONS} allowed"
        )
    clean = []
    for text in descriptions:
        if not isinstance(text, str) or not text.strip():
            shown = repr(text)[:40]
            raise InvalidAnswerError(f"{where} has a description that is not a non-empty string: {shown}")
        if len(text.strip()) > MAX_DESCRIPTION_CHARS:
            raise InvalidAnswerError(
                f"{where} has a description of {len(text.strip())} characters; the limit is "
                f"{MAX_DESCRIPTION_CHARS}"
            )
        clean.append(" ".join(text.split()))
    return {"sub_query_id": index, "descriptions": clean}


def _stems(text: str) -> set[str]:
    """Crude stems of the content words: "eats", "eating" -> "eat"; "opened" -> "open"."""
    words = (w for w in re.findall(r"[^\W\d_]+", text.lower()) if len(w) > 2 and w not in _STOPWORDS)
    return {re.sub(r"(?:ing|ed|es|s)$", "", w) or w for w in words}


def _same_stem(a: str, b: str) -> bool:
    size = min(4, len(a), len(b))  # "sitt" (sitting) and "sit" (sits) agree on 3 letters
    return size >= 3 and a[:size] == b[:size]


def _check_rewrite(query: str, descriptions: list[str]) -> None:
    wanted = _stems(query)
    if not wanted:
        return
    said = set().union(*(_stems(text) for text in descriptions))
    if not any(_same_stem(a, b) for a in wanted for b in said):
        raise InvalidAnswerError(
            '"query_json" entry 0 must rewrite the whole query, but its descriptions share no word with '
            f"{_shorten(query, 80)!r}"
        )


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _shorten(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def default_cache_dir() -> Path:
    """The LLM answer cache: ``llm/`` under `tfvtg.cache.cache_root`."""
    from tfvtg.cache import cache_root

    return cache_root() / "llm"


@dataclass(frozen=True)
class Answer:
    """What `Decomposer.answer` found for one query: the validated TFVTG answer (or None), and how."""

    answer: dict[str, Any] | None
    source: str
    note: str | None = None


class Decomposer:
    """Decomposes queries with one LLM endpoint, prompt and cache; reuse it for many queries (thread-safe).

    Args:
        llm: Model name (``None``/``"none"``: no LLM), or a ready `tfvtg.llm.LLMEndpoint`.
        base_url: OpenAI-compatible API root (default ``$OPENAI_BASE_URL``).
        api_key: API key (default ``$OPENAI_API_KEY``; a server given by URL needs none).
        cache_dir: Where validated answers are kept (default `default_cache_dir`).
        use_cache: False neither reads nor writes the cache (``--no-cache``).
        max_attempts: Answers asked for per query; after an invalid one, the next request carries the error.
        prompt: Name of the shipped system prompt.
        timeout: Seconds per request.
        max_retries: Transport retries per request (timeouts, connection errors, 429, 5xx).
    """

    def __init__(
        self,
        llm: str | LLMEndpoint | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        use_cache: bool = True,
        max_attempts: int = 3,
        prompt: str = "tfvtg/decompose",
        timeout: float = 60.0,
        max_retries: int = 3,
    ) -> None:
        from tfvtg.llm import LLMEndpoint
        from tfvtg.prompts import load_prompt

        max_attempts = check_count(max_attempts, "max_attempts")
        if llm is not None and not isinstance(llm, (str, LLMEndpoint)):
            raise InputError(f"llm must be a model name, an LLMEndpoint or None, got {type(llm).__name__}")
        if isinstance(llm, LLMEndpoint):
            self.endpoint: LLMEndpoint | None = llm
        else:
            self.endpoint = LLMEndpoint.resolve(
                llm, base_url, api_key, timeout=timeout, max_retries=max_retries
            )
        self.prompt_name = prompt
        self.prompt = load_prompt(prompt)
        self.prompt_hash = hashlib.sha256(f"{_REQUEST_FORMAT}\n{self.prompt}".encode()).hexdigest()
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.use_cache = use_cache
        self.max_attempts = max_attempts
        self._announced = False

    @property
    def configured(self) -> bool:
        """Whether an LLM endpoint is configured (otherwise every query falls back to itself)."""
        return self.endpoint is not None

    def __call__(self, query: str) -> Decomposition:
        """The decomposition of ``query``: from the cache, the LLM, or the plain query as a fallback."""
        result = self.answer(query)
        if result.answer is None:
            return Decomposition.single(query, note=result.note)
        return Decomposition.from_tfvtg(result.answer, query, source=result.source)

    def answer(self, query: str) -> Answer:
        """The validated TFVTG answer for ``query`` and where it came from (``"cache"``, ``"llm"``).

        Never raises for an unavailable endpoint or an unusable answer: that gives ``Answer(None, "fallback",
        note)`` and a warning. A rejected key or unknown model raises `tfvtg.errors.LLMError`.
        """
        from tfvtg.llm import LLMUnavailableError

        if not isinstance(query, str) or not query.strip():
            raise InputError("the query is empty; give a sentence describing the moment to find")
        query = query.strip()
        if self.endpoint is None:
            if not self._announced:
                self._announced = True
                log.info(
                    "no LLM configured (--llm MODEL with OPENAI_API_KEY or --llm-base-url): each query is "
                    "used as it is, without paraphrases or sub-events"
                )
            return Answer(None, "fallback", "no LLM configured")
        cached = self._read_cache(query) if self.use_cache else None
        if cached is not None:
            return Answer(cached, "cache")
        try:
            answer, error = self._ask(query)
        except LLMUnavailableError as exc:
            note = f"LLM unavailable: {exc}"
        else:
            if answer is not None:
                if self.use_cache:
                    self._write_cache(query, answer)
                return Answer(answer, "llm")
            plural = "s" if self.max_attempts > 1 else ""
            note = f"no valid LLM answer in {self.max_attempts} attempt{plural}: {error}"
        log.warning("query %r falls back to itself as the only description: %s", _shorten(query, 60), note)
        return Answer(None, "fallback", note)

    def _ask(self, query: str) -> tuple[dict[str, Any] | None, str | None]:
        """Up to ``max_attempts`` answers; a retry shows the model its previous answer and what was wrong."""
        from tfvtg.llm import chat

        assert self.endpoint is not None
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": self.prompt},
            {"role": "user", "content": f"Query: {json.dumps(query, ensure_ascii=False)}"},
        ]
        error = None
        for attempt in range(1, self.max_attempts + 1):
            text = chat(self.endpoint, messages)
            try:
                return validate_answer(parse_answer(text), query), None
            except InvalidAnswerError as exc:
                error = str(exc)
            log.debug("attempt %d for %r: unusable answer: %s", attempt, _shorten(query, 60), error)
            messages += [
                {"role": "assistant", "content": text[:4000]},
                {"role": "user", "content": f"That reply cannot be used: {error}. Reply again for the same "
                 "query with only the JSON object, in the format described at the start."},
            ]
        return None, error

    def _cache_path(self, query: str) -> Path:
        assert self.endpoint is not None
        key = hashlib.sha256(
            json.dumps([self.endpoint.model, self.prompt_hash, query], ensure_ascii=False).encode()
        ).hexdigest()
        return self.cache_dir / key[:2] / f"{key}.json"

    def _read_cache(self, query: str) -> dict[str, Any] | None:
        path = self._cache_path(query)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.debug("ignoring unreadable cache file %s: %s", path, exc)
            return None
        assert self.endpoint is not None
        expected = (self.endpoint.model, self.prompt_hash, query)
        if not isinstance(record, dict):
            return None
        if tuple(record.get(k) for k in ("model", "prompt_sha256", "query")) != expected:
            return None
        try:
            return validate_answer(record.get("answer"), query)
        except InvalidAnswerError as exc:
            log.debug("ignoring invalid cached answer %s: %s", path, exc)
            return None

    def _write_cache(self, query: str, answer: dict[str, Any]) -> None:
        assert self.endpoint is not None
        record = {"model": self.endpoint.model, "prompt": self.prompt_name, "prompt_sha256": self.prompt_hash,
                  "query": query, "answer": answer}
        path = self._cache_path(query)
        try:
            write_json_atomic(path, record)
        except OSError as exc:
            log.warning("cannot write the LLM answer cache %s: %s", path.parent, exc.strerror or exc)


def decompose(
    query: str,
    llm: str | LLMEndpoint | None = None,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    max_attempts: int = 3,
    prompt: str = "tfvtg/decompose",
    timeout: float = 60.0,
    max_retries: int = 3,
) -> Decomposition:
    """Split a query into paraphrases and ordered sub-events with an LLM, as TFVTG's first step.

    Works with any OpenAI-compatible endpoint. The answer is parsed leniently, validated, retried with the
    error shown to the model, cached on disk, and replaced by the plain query (``source="fallback"``, a
    ``note`` and a warning) when no usable answer comes. Without an LLM configured no request is made.

    Args:
        query: The sentence to ground.
        llm: Model name, ``None``/``"none"`` for no LLM, or a `tfvtg.llm.LLMEndpoint`.
        base_url, api_key, cache_dir, use_cache, max_attempts, prompt, timeout, max_retries: See `Decomposer`.

    Returns:
        The decomposition; ``source`` is ``"llm"``, ``"cache"`` or ``"fallback"``.

    Raises:
        tfvtg.errors.InputError: The query is empty.
        tfvtg.errors.LLMError: The endpoint refused the request for good (bad key, unknown model).

    Example:
        >>> decompose("a person opens the door and walks out", llm="gpt-4o-mini").relation  # doctest: +SKIP
        'sequentially'
    """
    decomposer = Decomposer(
        llm, base_url=base_url, api_key=api_key, cache_dir=cache_dir, use_cache=use_cache,
        max_attempts=max_attempts, prompt=prompt, timeout=timeout, max_retries=max_retries,
    )
    return decomposer(query)


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """Write JSON so that readers see the old file or the new one, never half of one (temp file + rename)."""
    from tfvtg.atomic import write_atomic

    write_atomic(path, json.dumps(data, ensure_ascii=False).encode("utf-8"))


# --------------------------------------------------------------------------------------------------------
# A whole dataset: TFVTG's llm_outputs.json, with a few requests in flight, saved as it goes, resumable.
# --------------------------------------------------------------------------------------------------------


@dataclass
class BatchSummary:
    """Counts of a `decompose_annotations` run, by query."""

    queries: int = 0
    kept: int = 0
    answered: int = 0
    cached: int = 0
    failed: int = 0

    def __str__(self) -> str:
        text = (f"{self.queries} queries: {self.kept} kept from the output file, {self.answered} answered by "
                f"the LLM, {self.cached} from the cache, {self.failed} failed")
        return text + (" (left as {}: run again with --resume)" if self.failed else "")


def read_annotations(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """A dataset annotation file in TFVTG's format: ``{video_id: {"duration", "timestamps", "sentences"}}``.

    Raises:
        InputError: The file is missing, not JSON, or not in that format.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"annotation file not found: {path}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"cannot read annotation file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object mapping video ids to records (TFVTG's format)")
    for vid, record in data.items():
        sentences = record.get("sentences") if isinstance(record, dict) else None
        if not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
            raise InputError(f"{path}: record {vid!r} has no \"sentences\" list of strings")
    return data


def decompose_annotations(
    annotations: Mapping[str, Mapping[str, Any]],
    out: str | os.PathLike[str],
    decomposer: Decomposer,
    *,
    concurrency: int = 4,
    resume: bool = False,
    limit: int | None = None,
    save_every: int = 20,
    progress: bool = True,
) -> BatchSummary:
    """Decompose every sentence of a dataset and write TFVTG's ``llm_outputs.json``.

    Each output record is the annotation record plus ``response``: one answer per sentence, in order, ``{}``
    where no valid answer came (as the official tools write it). The file is rewritten atomically every
    ``save_every`` answers, at the end, and on an interruption, so a killed run loses at most the answers
    since the last save, and those are in the answer cache unless it is off.

    Args:
        annotations: ``{video_id: {"sentences": [...], ...}}`` (see `read_annotations`).
        out: The output file.
        decomposer: The LLM, prompt and cache to use; it must have an endpoint configured.
        concurrency: Requests in flight at once.
        resume: Keep the answers already in ``out`` and ask only for missing or ``{}`` ones.
        limit: Only the first ``limit`` videos.
        save_every: Answers between two saves.
        progress: Show a progress bar on stderr (only when it is a terminal).

    Raises:
        InputError: ``out`` exists and ``resume`` is off, or it cannot be read; bad arguments.
        LLMError: The endpoint refused requests for good (bad key, unknown model); answers so far are saved.
    """
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    from tqdm import tqdm

    if decomposer.endpoint is None:
        raise InputError("no LLM configured: pass --llm MODEL and set OPENAI_API_KEY or --llm-base-url URL")
    if concurrency < 1 or save_every < 1 or (limit is not None and limit < 0):
        raise InputError("concurrency and save_every must be at least 1, and limit not negative")
    out = Path(out)
    if not resume and out.exists():
        raise InputError(f"{out} exists; pass --resume to fill in its missing answers, or remove it")
    previous = (_read_previous(out) if resume else None) or {}
    video_ids = list(annotations)[:limit]
    records: dict[str, Any] = dict(previous)  # videos outside this run (--limit) are kept as they are
    todo: list[tuple[str, int, str]] = []
    summary = BatchSummary()
    for vid in video_ids:
        record = dict(annotations[vid])
        sentences = list(record["sentences"])
        old = previous.get(vid)
        old_responses = old.get("response") if isinstance(old, dict) else None
        if not (isinstance(old_responses, list) and len(old_responses) == len(sentences)
                and old.get("sentences") == sentences):
            old_responses = [{}] * len(sentences)  # new video, sentences changed, or a short list: ask again
        record["response"] = [r if isinstance(r, dict) and r else {} for r in old_responses]
        records[vid] = record
        for index, sentence in enumerate(sentences):
            if record["response"][index]:
                summary.kept += 1
            elif sentence.strip():
                todo.append((vid, index, sentence))
            else:
                summary.failed += 1  # nothing to ask about
    summary.queries = summary.kept + summary.failed + len(todo)
    log.info("%d videos, %d queries: %d to ask, %d kept from %s", len(records), summary.queries, len(todo),
             summary.kept, out)
    unsaved = 0
    write_json_atomic(out, records)
    bar = tqdm(total=len(todo), desc="decompose", unit="query", disable=None if progress else True)
    executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="tfvtg-decompose")
    pending_items = iter(todo)
    running: dict[Any, tuple[str, int]] = {}
    try:
        def submit_next() -> None:
            item = next(pending_items, None)
            if item is not None:
                running[executor.submit(decomposer.answer, item[2])] = item[:2]

        for _ in range(concurrency):  # a bounded queue: an interruption leaves nothing submitted behind
            submit_next()
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                vid, index = running.pop(future)
                result = future.result()  # an LLMError (bad key ...) ends the run; answers so far get saved
                if result.answer is None:
                    summary.failed += 1
                else:
                    records[vid]["response"][index] = result.answer
                    summary.cached += result.source == "cache"
                    summary.answered += result.source == "llm"
                    unsaved += 1
                bar.update(1)
                submit_next()
            if unsaved >= save_every:
                write_json_atomic(out, records)
                unsaved = 0
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
        bar.close()
        write_json_atomic(out, records)
    return summary


def _read_previous(out: Path) -> dict[str, Any] | None:
    """The records of an earlier run's output, or None when there is none yet."""
    try:
        data = json.loads(out.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"cannot resume from {out}: {exc}; move it away to start afresh") from None
    if not isinstance(data, dict):
        raise InputError(f"cannot resume from {out}: it is not an llm_outputs.json object")
    return data
