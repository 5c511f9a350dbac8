"""`Decomposition`: a query split into paraphrases and ordered sub-events, as TFVTG's LLM step produces it.

The schema is TFVTG's (``relationship`` and ``query_json`` with ``sub_query_id`` and ``descriptions``), so the
official ``llm_outputs.json`` loads as it is. Entry 0 of ``query_json`` holds rewrites of the whole query; the
following entries are the sub-events in the order they happen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Decomposition", "RELATIONS"]

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
        return cls(query=query.strip(), source="fallback", note=note)

    @property
    def is_fallback(self) -> bool:
        """True when no usable LLM answer was behind this decomposition."""
        return self.source == "fallback"

    @property
    def main_descriptions(self) -> tuple[str, ...]:
        """The descriptions localised for the whole query: the query itself, then its paraphrases."""
        return ((self.query,) if self.query else ()) + self.paraphrases

    def descriptions(self) -> list[str]:
        """Every distinct description (main ones first, then sub-events), in first-use order."""
        seen: dict[str, None] = {}
        for text in self.main_descriptions + tuple(t for event in self.sub_events for t in event):
            seen.setdefault(text, None)
        return list(seen)

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
