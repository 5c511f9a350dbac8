"""Read an MLLM's answer: frame-number spans (or seconds), highlight saliency, and numbers -> seconds.

The reference takes the first match of one regex (``from (frame) x to (frame) y``, integers only) and scores
an unparsed answer as the span [0, 0]. Here more answer shapes are understood ("frames 3-10", "between 3 and
10", "3.5 to 10", several spans), reversed pairs are swapped, numbers are clamped to the frames that exist,
and an answer with no usable span is an explicit failure with a reason, never a made-up span.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from tfvtg.errors import InputError

__all__ = ["ParsedAnswer", "FrameIndex", "parse_answer", "parse_time_answer", "parse_highlights",
           "ParseError"]


class ParseError(InputError):
    """An answer holds nothing that can be read as the requested output."""


@dataclass(frozen=True)
class ParsedAnswer:
    """What an answer says, in frame numbers (or seconds for `parse_time_answer`).

    Attributes:
        spans: ``(start, end)`` pairs in the order the answer gives them, ``start <= end``, inside the valid
            range.
        reason: Why parsing failed (None when ``ok``).
        swapped: A pair was given end-first and was swapped.
        clamped: A number lay outside the valid range and was clamped to it.
        dropped: Spans lying wholly outside the valid range, as given (they are not in ``spans``).
        text: The answer as received.
    """

    spans: tuple[tuple[float, float], ...]
    reason: str | None = None
    swapped: bool = False
    clamped: bool = False
    dropped: tuple[tuple[float, float], ...] = field(default=())
    text: str = ""

    @property
    def ok(self) -> bool:
        """True when at least one span was read."""
        return bool(self.spans)

    def to_dict(self) -> dict:
        """A JSON-ready summary (for ``meta`` in prediction files)."""
        return {"ok": self.ok, "spans": [list(s) for s in self.spans], "reason": self.reason,
                "swapped": self.swapped, "clamped": self.clamped, "dropped": [list(s) for s in self.dropped]}


# ------------------------------------------------------------------------------------------------------------
# Patterns. Text is lower-cased and dashes/tildes normalised to "-" first.

_NUM = r"(\d+(?:\.\d+)?)"
_TIME = r"((?:\d+:)?\d+:\d{2}(?:\.\d+)?|\d+(?:\.\d+)?)"  # 1:02:03.5, 12:05, 12.5, 12
_FRAME_WORD = r"(?:(?:frames?\s*(?:(?:number|no\.?|#)\s*)?|#\s*))"
_SECOND_WORD = r"(?:(?:seconds?|secs?|timestamps?|time)\s*)"
_SECOND_UNIT = r"(?:\s*(?:s|sec|secs|seconds?)\b)"


def _span_patterns(word: str, num: str, unit: str,
                   after: str = "") -> tuple[tuple[re.Pattern[str], ...], ...]:
    """Tier 1 (an explicit span) and tier 2 (a bare ``x to y`` / ``x-y`` / ``[x, y]``) patterns.

    ``word`` may precede a number ("frame", "second"), ``unit`` may follow it ("th", "s"), and ``after`` is a
    word that may follow it in the other word order ("the 4th frame").
    """
    n = rf"{num}(?:{unit})?"
    a = rf"(?:the\s+)?{word}?{n}{after}"
    to = r"\s*(?:to|until|till|through|thru|-)\s*"
    explicit = (
        rf"\bfrom\s*{a}{to}{a}",
        rf"\bfrom\s*{a}\s*(?:to|until|till|through)\s*the\s+(?:very\s+)?(?:end|last\s+frame)\b()",
        rf"\bbetween\s*{a}\s*(?:and|-|to)\s*{a}",
        rf"{word}{n}{to}{a}",
        rf"\b{n}{to}{word}{num}",
        rf"\bstart(?:s|ing|ed)?(?:\s+(?:frame|time|second))?\s*(?:at|from|in|on|with|:|=|is)?\s*{a}[^.\d]{{0,40}}?"
        rf"\bend(?:s|ing|ed)?(?:\s+(?:frame|time|second))?\s*(?:at|in|on|with|by|:|=|is)?\s*{a}",
    )
    bare = (
        rf"(?<![\w.:]){n}\s*(?:to|-)\s*{n}(?![\w:]|\.\d)",
        rf"\[\s*{n}\s*,\s*{n}\s*\]",
    )
    return tuple(re.compile(p) for p in explicit), tuple(re.compile(p) for p in bare)


_FRAME_EXPLICIT, _FRAME_BARE = _span_patterns(_FRAME_WORD, _NUM, r"st|nd|rd|th", r"(?:\s*frames?\b)?")
_TIME_EXPLICIT, _TIME_BARE = _span_patterns(_SECOND_WORD, _TIME, _SECOND_UNIT)
_FRAME_SINGLE = re.compile(
    rf"\b(?:frames?|frame\s+(?:number|no\.?))\s*(?:#\s*)?{_NUM}(?![\w:-]|\.\d|\s*(?:,|and)\s*\d)"
)
# "frames 4, 5, 6, 10 and 11": runs of consecutive listed frames become spans.
_FRAME_LIST = re.compile(r"(?<![\w.])\d+(?:\s*(?:,|and|, and)\s*\d+)+(?!\w|\.\d)")
_TIME_SINGLE = re.compile(rf"\b(?:at|second)\s*{_TIME}{_SECOND_UNIT}?(?![\w:-]|\.\d)")
_DASHES = str.maketrans({c: "-" for c in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212~\uff5e"})


def _normalise(text: str) -> str:
    return text.translate(_DASHES).lower()


def _to_seconds(token: str) -> float:
    """``"12.5"`` -> 12.5; ``"1:02"`` -> 62; ``"1:02:03.5"`` -> 3723.5."""
    value = 0.0
    for part in token.split(":"):
        value = value * 60 + float(part)
    return value


def _find_spans(text: str, tiers: Sequence[Sequence[re.Pattern[str]]], convert) -> list[tuple[float, float]]:
    """Spans of the first tier that matches anything, in text order, without overlapping matches."""
    for patterns in tiers:
        found: list[tuple[int, int, tuple[float, float]]] = []
        for pattern in patterns:
            for match in pattern.finditer(text):
                if any(match.start() < end and start < match.end() for start, end, _ in found):
                    continue
                last = match.group(2)
                span = (convert(match.group(1)), convert(last) if last else math.inf)  # "... to the end"
                found.append((match.start(), match.end(), span))
        if found:
            return [span for _, _, span in sorted(found)]
    return []


def _finish(text: str, spans: list[tuple[float, float]], low: float, high: float, what: str) -> ParsedAnswer:
    """Swap, clamp and drop out-of-range spans; turn 'nothing left' into a failure with a reason."""
    if not spans:
        return ParsedAnswer((), f"no {what} span found in the answer", text=text)
    kept, dropped = [], []
    swapped = clamped = False
    for start, end in spans:
        if start > end:
            start, end = end, start
            swapped = True
        if start > high or end < low:
            dropped.append((start, end))
            continue
        if start < low or (end > high and end != math.inf):
            clamped = True
        span = (min(max(start, low), high), min(max(end, low), high))
        if span not in kept:
            kept.append(span)
    if not kept:
        return ParsedAnswer((), f"every span lies outside {what}s {_fmt(low)}-{_fmt(high)}",
                            swapped, clamped, tuple(dropped), text)
    return ParsedAnswer(tuple(kept), None, swapped, clamped, tuple(dropped), text)


def _fmt(value: float) -> str:
    return f"{value:g}"


def parse_answer(text: str, n_frames: int) -> ParsedAnswer:
    """Read frame-number spans from an answer to the moment-retrieval question.

    Understands "From Frame 3 to Frame 10" (the prompt's format), "from 3 to 10", "frames 3-10", "frame 3 -
    frame 10", "between 3 and 10", "3 to 10", "[3, 10]", decimals ("3.5 to 10") and several spans in one
    answer. Explicit forms win over bare number pairs; a lone "frame 7" is read as the span (7, 7) only when
    no pair is found. Reversed pairs are swapped, numbers are clamped to ``[0, n_frames - 1]``, and spans
    wholly outside that range are dropped (reported in ``dropped``).

    Args:
        text: The model's answer.
        n_frames: How many numbered frames the model saw (numbers 0..n_frames-1).

    Returns:
        A `ParsedAnswer` in frame numbers; ``ok`` is False (with ``reason``) when no usable span was found.
    """
    if n_frames < 1:
        raise InputError(f"n_frames must be at least 1, got {n_frames}")
    clean = _normalise(text or "")
    spans = _find_spans(clean, (_FRAME_EXPLICIT, _FRAME_BARE), float)
    if not spans:
        spans = _runs(clean)
    if not spans:
        singles = [float(m.group(1)) for m in _FRAME_SINGLE.finditer(clean)]
        spans = [(s, s) for s in dict.fromkeys(singles)]
    return _finish(text or "", spans, 0.0, float(n_frames - 1), "frame")


def _runs(text: str) -> list[tuple[float, float]]:
    """Spans of consecutive frame numbers in the first list of integers ("4, 5, 6, 10 and 11")."""
    match = _FRAME_LIST.search(text)
    if match is None:
        return []
    numbers = sorted({int(v) for v in re.findall(r"\d+", match.group(0))})
    spans: list[tuple[float, float]] = []
    for value in numbers:
        if spans and value == spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], float(value))
        else:
            spans.append((float(value), float(value)))
    return spans


def parse_time_answer(text: str, duration: float) -> ParsedAnswer:
    """Read spans in seconds ("from second 12 to second 20", "12.0 to 20.0", "12s-20s", "0:12 to 0:20").

    The same rules as `parse_answer`, with ``[0, duration]`` as the valid range; used when timestamps are
    given to the model as text instead of numbers drawn on the frames.
    """
    if not duration > 0:
        raise InputError(f"duration must be positive, got {duration}")
    clean = _normalise(text or "")
    spans = _find_spans(clean, (_TIME_EXPLICIT, _TIME_BARE), _to_seconds)
    if not spans:
        singles = [_to_seconds(m.group(1)) for m in _TIME_SINGLE.finditer(clean)]
        spans = [(s, s) for s in dict.fromkeys(singles)]
    return _finish(text or "", spans, 0.0, float(duration), "second")


# ------------------------------------------------------------------------------------------------------------
# Highlight detection

_SCORE_WORD = re.compile(r"\b(?:saliency\s+)?scores?\b")
_FRAME_LIST_ITEM = re.compile(r"(?<![\w.])(\d+)(?:\s*-\s*(\d+))?(?![\w.])")
_SCORE_ITEM = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?![\w])")
# "frame 80: score 1.3, frame 81 (saliency score 1.5)": one score per frame, interleaved.
_FRAME_SCORE_PAIR = re.compile(
    r"\bframe\s*#?\s*(\d+)\s*[:(,-]?\s*(?:with\s+)?(?:an?\s+)?(?:saliency\s+)?score\s*(?:of|is|:|=)?\s*(\d+(?:\.\d+)?)"
)


def parse_highlights(text: str, n_frames: int) -> np.ndarray:
    """Per-frame saliency from a highlight answer ("... in the 80, 81, 82 frames. Their saliency scores are
    1.3, 1.5, 2.6").

    The frame list is every integer (or ``a-b`` range) between the first word "frame" and the word "score"
    (before that "frame" when nothing is between), the scores are the numbers after "score", paired in
    order. Frames never listed get 0; frames outside ``[0, n_frames - 1]`` are ignored. If the two lists
    differ in length, the shorter one decides how many pairs are used.

    Returns:
        ``(n_frames,)`` float array of saliency scores.

    Raises:
        ParseError: The answer lists no frame that exists, or no score.
    """
    if n_frames < 1:
        raise InputError(f"n_frames must be at least 1, got {n_frames}")
    clean = _normalise(text or "")
    pairs = [(int(f), float(v)) for f, v in _FRAME_SCORE_PAIR.findall(clean)]
    if len(pairs) >= 2:
        return _saliency(pairs, n_frames)
    score_at = _SCORE_WORD.search(clean)
    if score_at is None:
        raise ParseError("highlight answer gives no saliency scores")
    head, tail = clean[:score_at.start()], clean[score_at.end():]
    frame_at = head.find("frame")
    # The list follows the first "frame" ("highlight frames are in the 80, 81 frames"), or, when nothing
    # does, precedes it ("the highlights are in the 0, 2, 4 frames").
    scores = [float(m.group(1)) for m in _SCORE_ITEM.finditer(tail)]
    frames = _frame_list(head[frame_at:], len(scores)) if frame_at >= 0 else []
    if not frames:
        frames = _frame_list(head, len(scores))
    if not frames or not scores:
        raise ParseError(f"highlight answer lists {len(frames)} frames and {len(scores)} scores; need both")
    return _saliency(list(zip(frames, scores, strict=False)), n_frames)


def _frame_list(text: str, most: int) -> list[int]:
    """The first ``most`` frame numbers of a list of integers and ``a-b`` ranges, in order (a range in the
    answer is expanded only as far as there are scores to pair with: "0-999999999" costs nothing)."""
    frames: list[int] = []
    for match in _FRAME_LIST_ITEM.finditer(text):
        if len(frames) >= most:
            break
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) else first
        frames += range(first, min(last, first + most - len(frames) - 1) + 1) if last >= first else [first]
    return frames


def _saliency(pairs: Sequence[tuple[int, float]], n_frames: int) -> np.ndarray:
    saliency = np.zeros(n_frames, dtype=np.float64)
    used = 0
    for frame, score in pairs:
        if 0 <= frame < n_frames:
            saliency[frame] = max(saliency[frame], score)
            used += 1
    if used == 0:
        raise ParseError(f"highlight answer lists no frame in 0-{n_frames - 1}")
    return saliency


# ------------------------------------------------------------------------------------------------------------
# Frame numbers -> seconds


class FrameIndex:
    """Maps the numbers drawn on sampled frames (0..N-1) to seconds, through the frames' real timestamps.

    A number ``x`` (possibly fractional) is the time ``times[floor(x)]`` plus the same fraction of the gap to
    the next frame. The end of a span ``(a, b)`` is, by default, where frame ``b``'s interval ends: the time
    of frame ``b + 1``, or ``end_time`` (the video's duration) for the last frame. ``end="frame_start"`` uses
    frame ``b``'s own time instead, as the reference does (so "from frame 3 to frame 3" is a zero-length span
    there).

    Args:
        times: Timestamp in seconds of each numbered frame, non-decreasing.
        end_time: Where the last frame's interval ends (the video's duration, or a window's end).
        end: ``"next_frame"`` or ``"frame_start"``.
    """

    ENDS = ("next_frame", "frame_start")

    def __init__(self, times: Sequence[float] | np.ndarray, end_time: float, end: str = "next_frame") -> None:
        times = np.asarray(times, dtype=np.float64)
        if times.ndim != 1 or times.size == 0:
            raise InputError("FrameIndex needs the timestamps of at least one frame")
        if not np.all(np.isfinite(times)) or np.any(np.diff(times) < 0):
            raise InputError("frame timestamps must be finite and non-decreasing")
        if end not in self.ENDS:
            raise InputError(f"unknown end mode {end!r}; use {' or '.join(self.ENDS)}")
        self.times = times
        self.end_time = max(float(end_time), float(times[-1]))
        self.end = end
        self._bounds = np.append(times, self.end_time)  # frame i covers [bounds[i], bounds[i + 1])

    def __len__(self) -> int:
        return len(self.times)

    def time_of(self, number: float) -> float:
        """Seconds at frame number ``number`` (fractions interpolate to the next frame's time)."""
        x = min(max(float(number), 0.0), float(len(self.times)))
        i = min(int(math.floor(x)), len(self.times))
        if i == len(self.times):
            return float(self._bounds[-1])
        return float(self._bounds[i] + (x - i) * (self._bounds[i + 1] - self._bounds[i]))

    def span_to_seconds(self, start: float, end: float) -> tuple[float, float]:
        """Seconds ``(start, end)`` of the frame-number span ``(start, end)`` (``start <= end``)."""
        end_number = end + 1 if self.end == "next_frame" else end
        return self.time_of(start), self.time_of(end_number)

    def number_of(self, seconds: float) -> int:
        """The number of the frame whose interval contains ``seconds`` (clamped to the frames)."""
        i = int(np.searchsorted(self.times, float(seconds), side="right")) - 1
        return min(max(i, 0), len(self.times) - 1)
