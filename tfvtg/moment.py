"""`Moment`: one predicted time span, the unit every grounding method returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Moment", "prediction_line"]


@dataclass(frozen=True)
class Moment:
    """A time span in seconds with a confidence score (higher is better).

    Attributes:
        start: Start time in seconds from the start of the video.
        end: End time in seconds (``end >= start``).
        score: Confidence of the span; only its order among a query's moments is meaningful.
    """

    start: float
    end: float
    score: float

    @property
    def length(self) -> float:
        """Length of the span in seconds."""
        return self.end - self.start

    def to_list(self, ndigits: int = 4) -> list[float]:
        """The QVHighlights window form ``[start, end, score]``, rounded for JSON output."""
        return [
            round(float(self.start), ndigits),
            round(float(self.end), ndigits),
            round(float(self.score), ndigits),
        ]


def prediction_line(query: str, moments: Sequence[Moment], duration: float, *, qid: Any = None,
                    vid: str | None = None, ndigits: int = 4, **extra: Any) -> dict[str, Any]:
    """One QVHighlights-style prediction line (``pred_relevant_windows``), then ``extra``'s keys in order.

    The one format of ``tfvtg ground --json``, ``numpro ground --json`` and both ``evaluate`` commands.
    """
    return {
        "qid": qid,
        "query": query,
        "vid": vid,
        "pred_relevant_windows": [m.to_list(ndigits) for m in moments],
        "duration": round(float(duration), ndigits),
        **extra,
    }
