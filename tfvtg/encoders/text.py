"""Text that does not fit an encoder's context: said out loud, once per text, with the part that was dropped.

Every text encoder has a fixed context (BLIP-2's ITC path 35 tokens, CLIP 77, SigLIP 2 64) and cuts longer
texts. A cut is silent in the tokenizer: two long queries that differ only after the cut get identical curves.
`TruncationWarnings` is the one mechanism every back-end calls before it tokenizes with ``truncation=True``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

__all__ = ["TruncationWarnings", "dropped_text"]

log = logging.getLogger("tfvtg.encoders")

_QUOTE_CHARS = 200  # a dropped part longer than this is quoted as its start and its end


def dropped_text(tokenizer: Any, text: str, max_length: int) -> str | None:
    """The part of ``text`` that ``tokenizer(text, truncation=True, max_length=max_length)`` drops, or None.

    The tokenizer keeps its special tokens (e.g. ``[CLS]``/``[SEP]``, ``<|startoftext|>``/``<|endoftext|>``)
    and the first ``max_length`` minus their count of the text's own tokens; the rest is decoded back to text
    (in the tokenizer's normalisation, e.g. lower case for BERT's uncased vocabulary).
    """
    ids = tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
    budget = max(max_length - int(tokenizer.num_special_tokens_to_add(pair=False)), 0)
    if len(ids) <= budget:
        return None
    dropped = tokenizer.decode(ids[budget:], skip_special_tokens=True)
    return " ".join(dropped.split()) or tokenizer.decode(ids[budget:])


class TruncationWarnings:
    """Warns, once per distinct text, that an encoder cut it to its context, quoting what was dropped.

    Attributes:
        encoder: Name shown in the warning (the encoder's config name).
        max_length: The context in tokens, special tokens included.
    """

    def __init__(self, encoder: str, max_length: int) -> None:
        self.encoder = encoder
        self.max_length = int(max_length)
        self._seen: set[str] = set()

    def check(self, tokenizer: Any, texts: Iterable[str]) -> list[str]:
        """Warn for each text not seen before that is longer than the context; return those texts."""
        warned = []
        for text in texts:
            if text in self._seen:
                continue
            self._seen.add(text)
            dropped = dropped_text(tokenizer, text, self.max_length)
            if dropped is None:
                continue
            half = _QUOTE_CHARS // 2  # a long dropped part keeps where the cut starts and how the text ends
            quote = dropped if len(dropped) <= _QUOTE_CHARS else f"{dropped[:half]} ... {dropped[-half:]}"
            log.warning(
                "text longer than %s's %d-token context, the end is ignored: %r (dropped: %r)",
                self.encoder, self.max_length, _short(text), quote,
            )
            warned.append(text)
        return warned


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
