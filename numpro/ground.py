"""`NumProGrounder`: sample frames, number them, ask a multimodal LLM, read the frame span, map it to seconds.

The paper's method (training-free NumPro): frames sampled at 1 fps and resized to 336x336, ``str(i)`` drawn in
red on frame i, the question "which frames show <query>? Answer 'From Frame x to Frame y'", and the numbers in
the answer mapped back to time. Here the mapping goes through each sampled frame's real timestamp (never a
fixed x2 factor), and a span ends where its last frame's interval ends (`numpro.parse.FrameIndex`).

Two options beyond the paper:

- ``refine``: a coarse-to-fine second pass. The first answer's span, widened by a margin, is sampled again at
  a higher rate, renumbered from 0 and asked about again; its answer replaces the first unless it cannot be
  read.
- ``timestamps_as_text``: no numbers drawn; each frame is preceded by a "Second 12.0" text part, and the
  answer is read in seconds (for API models that take interleaved text and images).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from numpro.mllm import MLLM, cap_indices, create_mllm
from numpro.overlay import overlay_numbers
from numpro.parse import (
    FrameIndex,
    ParsedAnswer,
    ParseError,
    parse_answer,
    parse_highlights,
    parse_time_answer,
)
from tfvtg.errors import InputError, VideoError, check_count
from tfvtg.moment import Moment, prediction_line

__all__ = ["NumProGrounder", "GroundingDetails", "PassDetails", "HighlightResult", "SampledVideo",
           "VideoInput"]

log = logging.getLogger("numpro.ground")

# Sampled-frame counts either side of the one a file's declared duration predicts that a capped `sample` keeps
# frames for, so that one decoding pass suffices: declared and decoded durations differ by a source frame or
# two, under one sample at NumPro's rates. About (1 + _COUNT_BAND) x the cap frames are held.
_COUNT_BAND = 1


@dataclass
class SampledVideo:
    """Frames sampled from a video once, to ask several queries about (see `NumProGrounder.sample`).

    From a video file with a frame cap in force, ``frames`` are already the capped ones: those the grounder
    that sampled them shows the model (a grounder with a smaller cap subsamples them again; one with a larger
    cap or none cannot get the others back). Frames given in memory are kept as given and capped when asked.

    Attributes:
        frames: (N, H, W, 3) uint8 RGB frames, never drawn on.
        times: (N,) timestamp of each frame in seconds.
        duration: The video's duration in seconds.
        path: The file they came from (the refinement pass samples it again), or None.
    """

    frames: np.ndarray
    times: np.ndarray
    duration: float
    path: Path | None = None


VideoInput = str | os.PathLike | SampledVideo | np.ndarray | Sequence[np.ndarray]
# Seconds within which an answered time counts as naming a labelled frame ("Second 12.0" labels have 0.1 s
# steps).
_LABEL_TOLERANCE = 0.051


@dataclass
class PassDetails:
    """One question to the model and what came back.

    Attributes:
        prompt: The question text.
        answer: The raw answer.
        parsed: The parsed answer (frame numbers, or seconds in timestamps-as-text mode).
        times: Timestamps (s) of the frames the model saw, in the order shown (frame i = number i).
        end_time: Where the last shown frame's interval ends.
        spans: The answer's spans in seconds, in the order given.
        window: The part of the video this pass looked at, ``(start, end)`` seconds.
    """

    prompt: str
    answer: str
    parsed: ParsedAnswer
    times: np.ndarray
    end_time: float
    spans: list[tuple[float, float]]
    window: tuple[float, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "parse": self.parsed.to_dict(),
            "n_frames": int(len(self.times)),
            "frame_times": [round(float(t), 4) for t in self.times],
            "window": [round(self.window[0], 4), round(self.window[1], 4)],
            "spans": [[round(s, 4), round(e, 4)] for s, e in self.spans],
        }


@dataclass
class GroundingDetails:
    """Everything one `NumProGrounder.ground_with_details` call did.

    Attributes:
        query: The query as asked.
        moments: Predicted spans in seconds, best first (empty when the answer could not be read).
        duration: The video's duration (s).
        coarse: The first pass.
        refined: The second pass with ``refine=True`` (None otherwise, or when the first pass failed).
        used: ``"coarse"`` or ``"refined"``: which pass the moments come from.
    """

    query: str
    moments: list[Moment]
    duration: float
    coarse: PassDetails
    refined: PassDetails | None = None
    used: str = "coarse"
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the answer held a usable span."""
        return bool(self.moments)

    @property
    def answer(self) -> str:
        """The answer the moments come from."""
        return (self.refined if self.used == "refined" and self.refined else self.coarse).answer

    def to_prediction(self, qid: Any = None, vid: str | None = None, ndigits: int = 4) -> dict[str, Any]:
        """One QVHighlights-style prediction line, as ``tfvtg ground --json`` writes it, the NumPro details in
        ``meta``."""
        return prediction_line(self.query, self.moments, self.duration, qid=qid, vid=vid, ndigits=ndigits,
                               meta=self.meta())

    def meta(self) -> dict[str, Any]:
        """JSON-ready details for the ``meta`` key of a prediction line."""
        meta: dict[str, Any] = {"method": "numpro", **self.settings, "used": self.used, "ok": self.ok,
                                "coarse": self.coarse.to_dict()}
        if self.refined is not None:
            meta["refined"] = self.refined.to_dict()
        return meta


@dataclass
class HighlightResult:
    """Per-frame saliency of a highlight answer: ``saliency[i]`` for the frame at ``times[i]`` (0 if
    unlisted)."""

    times: np.ndarray
    saliency: np.ndarray
    answer: str
    duration: float


class NumProGrounder:
    """Temporal grounding with numbered frames and any multimodal LLM (NumPro, Wu et al., CVPR 2025).

    Args:
        mllm: A back-end (`numpro.mllm.MLLM`) or a spec for `numpro.mllm.create_mllm` (``"gpt-4o"``,
            ``"qwen2-vl:PATH"``); ``mllm_options`` go to `create_mllm`.
        fps: Sampling rate (the paper: 1 for moment retrieval, 0.5 for highlights).
        size: (height, width) the frames are resized to; None keeps the native size.
        max_frames: Most frames shown to the model; more are subsampled uniformly *before* numbering. The
            back-end's own ``max_frames``, if smaller, applies too.
        refine: Ask a second time about the first answer's span sampled at ``refine_fps``.
        refine_fps: The second pass's rate (default 4 x ``fps``).
        refine_margin: Seconds added on both sides of the first span (default the larger of 2 sampling
            intervals and a quarter of the span).
        timestamps_as_text: Interleave "Second t" labels instead of drawing numbers; answers read in seconds.
        end: ``"next_frame"`` (a span ends where its last frame's interval ends) or ``"frame_start"`` (the
            reference: at the last frame's own time).
        position, color, font_size: The overlay (`numpro.overlay.overlay_numbers`); the defaults are the
            paper's.
        prompt: A question template with ``{query}``; None uses the shipped one for the mode.
        sampling: `tfvtg.video` sampling mode, ``"timestamp"`` (default) or ``"reference"``.
    """

    def __init__(
        self,
        mllm: MLLM | str,
        *,
        fps: float = 1.0,
        size: tuple[int, int] | None = (336, 336),
        max_frames: int | None = None,
        refine: bool = False,
        refine_fps: float | None = None,
        refine_margin: float | None = None,
        timestamps_as_text: bool = False,
        end: str = "next_frame",
        position: str = "bottom_right",
        color: Sequence[int] = (255, 0, 0),
        font_size: int | None = None,
        prompt: str | None = None,
        sampling: str = "timestamp",
        mllm_options: dict[str, Any] | None = None,
    ) -> None:
        from tfvtg.prompts import load_prompt

        if not (isinstance(fps, int | float) and fps > 0):
            raise InputError(f"fps must be a positive number, got {fps!r}")
        if refine_fps is not None and not refine_fps > 0:
            raise InputError(f"refine_fps must be a positive number, got {refine_fps!r}")
        if refine_margin is not None and refine_margin < 0:
            raise InputError(f"refine_margin must be >= 0 seconds, got {refine_margin!r}")
        if max_frames is not None and max_frames < 1:
            raise InputError(f"max_frames must be at least 1, got {max_frames}")
        if end not in FrameIndex.ENDS:
            raise InputError(f"unknown end mode {end!r}; use {' or '.join(FrameIndex.ENDS)}")
        self.mllm: MLLM = create_mllm(mllm, **(mllm_options or {})) if isinstance(mllm, str) else mllm
        self.fps = float(fps)
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.max_frames = max_frames
        self.refine = refine
        self.refine_fps = float(refine_fps) if refine_fps is not None else 4.0 * self.fps
        self.refine_margin = refine_margin
        self.timestamps_as_text = timestamps_as_text
        self.end = end
        self.overlay = {"position": position, "color": tuple(color), "size": font_size}
        name = "numpro/moment_retrieval_timestamps" if timestamps_as_text else "numpro/moment_retrieval"
        self.prompt = prompt if prompt is not None else load_prompt(name).strip()
        if "{query}" not in self.prompt:
            raise InputError("the prompt template must contain {query}")
        self.sampling = sampling

    # -- public API
    # -------------------------------------------------------------------------------------------

    def ground(self, video: VideoInput, query: str, top_k: int = 1, *, times: Sequence[float] | None = None,
               duration: float | None = None) -> list[Moment]:
        """Spans of ``video`` matching ``query``, best first (empty if the answer held no usable span).

        Args:
            video: A video file, or frames already sampled (RGB uint8, a list or an (N, H, W, 3) array; they
                are copied, never drawn on).
            query: What to find.
            top_k: Most spans to return (an answer may give several; the first given ranks first).
            times: With frames: each frame's timestamp (s). Default ``i / fps``.
            duration: With frames: the video's duration (s). Default the last time plus one interval.
        """
        return self.ground_with_details(video, query, top_k, times=times, duration=duration).moments

    def ground_with_details(self, video: VideoInput, query: str, top_k: int = 1, *,
                            times: Sequence[float] | None = None,
                            duration: float | None = None) -> GroundingDetails:
        """Like `ground`, with the prompts, raw answers, parse results and frame times of every pass."""
        query = _clean_query(query)
        top_k = check_count(top_k, "top_k")
        sampled = self.sample(video, times=times, duration=duration)
        frames, frame_times, duration = sampled.frames, sampled.times, sampled.duration
        coarse = self._ask(frames, frame_times, duration, query, (0.0, duration))
        details = GroundingDetails(query, [], duration, coarse, settings=self._settings())
        spans = coarse.spans
        if self.refine and coarse.parsed.ok:
            refined = self._refine(sampled, query, coarse.spans[0])
            details.refined = refined
            if refined is not None and refined.parsed.ok:
                spans, details.used = refined.spans, "refined"
            elif refined is not None:
                log.warning("refinement answer unreadable (%s); keeping the first answer",
                            refined.parsed.reason)
        if not coarse.parsed.ok:
            log.warning("no span in the answer to %r (%s): %r", query, coarse.parsed.reason,
                        coarse.answer[:200])
        details.moments = [Moment(s, e, 1.0 / (rank + 1)) for rank, (s, e) in enumerate(spans[:top_k])]
        return details

    def highlights(self, video: VideoInput, query: str, *, times: Sequence[float] | None = None,
                   duration: float | None = None) -> HighlightResult:
        """Per-frame saliency (1-5, 0 when unlisted) from the highlight-detection question.

        The frames are numbered as for `ground` (at this grounder's ``fps``; the paper uses 0.5 fps, so frame
        n is QVHighlights clip n). Numbers are drawn even with ``timestamps_as_text``: the highlight answer
        format names frames.

        Raises:
            ParseError: The answer lists no existing frame with a score.
        """
        from tfvtg.prompts import load_prompt

        query = _clean_query(query)
        sampled = self.sample(video, times=times, duration=duration)
        frames, frame_times, duration = sampled.frames, sampled.times, sampled.duration
        keep = self._capped(len(frames))
        frames, frame_times = frames[keep], frame_times[keep]  # a fresh copy (index array): drawn on
        overlay_numbers(frames, **self.overlay)
        prompt = load_prompt("numpro/highlight_detection").strip().replace("{query}", query)
        answer = self.mllm.answer(list(frames), prompt, times=frame_times)
        try:
            saliency = parse_highlights(answer, len(frames))
        except ParseError as exc:
            raise ParseError(f"{exc}: {answer[:200]!r}") from None
        return HighlightResult(frame_times, saliency, answer, duration)

    # -- steps
    # ------------------------------------------------------------------------------------------------

    def _settings(self) -> dict[str, Any]:
        return {"mllm": getattr(self.mllm, "name", type(self.mllm).__name__), "fps": self.fps,
                "size": list(self.size) if self.size else None, "max_frames": self._cap(),
                "timestamps_as_text": self.timestamps_as_text, "end": self.end, "refine": self.refine}

    def _cap(self) -> int | None:
        caps = [c for c in (self.max_frames, getattr(self.mllm, "max_frames", None)) if c is not None]
        return min(caps) if caps else None

    def _capped(self, n_frames: int) -> np.ndarray:
        """Indices of the ``n_frames`` frames shown: the one place capping is decided (the identity on frames
        already capped, as `cap_indices(cap, cap)` is)."""
        return cap_indices(n_frames, self._cap())

    def sample(self, video: VideoInput, *, times: Sequence[float] | None = None,
               duration: float | None = None) -> SampledVideo:
        """The frames this grounder shows the model (at ``fps``, resized to ``size``), with their times.

        Sample a video once with it to ask several queries (pass the result to `ground`). From a file with a
        frame cap (``max_frames``, or the back-end's), only the capped frames are returned, and memory holds
        about twice the cap, whatever the video's length (see `_sample_capped`); they are exactly those a
        full read followed by `cap_indices` selects. Frames given in memory are taken as they are, with
        ``times`` (default ``i / fps``) and ``duration`` (default the last time plus one sampling interval).

        Raises:
            VideoError: The file cannot be decoded.
            InputError: Frames, times or duration are malformed.
        """
        if isinstance(video, SampledVideo):
            return video
        if isinstance(video, str | os.PathLike):
            from tfvtg.video import read_frames

            if times is not None or duration is not None:
                raise InputError("times and duration are for frames given in memory, not for a video file")
            cap = self._cap()
            if cap is not None:
                return self._sample_capped(Path(video), cap)
            frames, frame_times, video_duration = read_frames(Path(video), self.fps, self.size,
                                                              mode=self.sampling)
            return SampledVideo(frames, frame_times, float(video_duration), Path(video))
        if not isinstance(video, np.ndarray | list | tuple):
            raise InputError(f"video must be a video file path, a (N, H, W, 3) uint8 frame array or a "
                             f"SampledVideo, got {type(video).__name__}")
        frames = np.asarray(video)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
            raise InputError(f"frames must be a non-empty (N, H, W, 3) uint8 RGB array or list, got "
                             f"{frames.dtype} {frames.shape}")
        if times is None:
            frame_times = np.arange(len(frames), dtype=np.float64) / self.fps
        else:
            frame_times = np.asarray(times, dtype=np.float64)
            if frame_times.shape != (len(frames),):
                raise InputError(f"got {frame_times.size} times for {len(frames)} frames")
        if duration is None:
            step = float(np.median(np.diff(frame_times))) if len(frame_times) > 1 else 1.0 / self.fps
            duration = float(frame_times[-1]) + step
        if not duration >= frame_times[-1]:
            raise InputError(f"duration {duration} is before the last frame's time {frame_times[-1]}")
        return SampledVideo(frames, frame_times, float(duration))

    def _sample_capped(self, path: Path, cap: int) -> SampledVideo:
        """Stream ``path`` and keep only the frames `cap_indices(N, cap)` can select, N unknown until the end.

        N, the number of samples a full pass yields, is predicted from the declared duration (timestamp mode:
        the targets k / fps before it) or frame count and rate (reference mode: `reference_indices`' count).
        The pass keeps the union of `cap_indices(n, cap)` over n within `_COUNT_BAND` of the prediction
        (about (1 + _COUNT_BAND) x cap frames), or the first ``cap`` frames when nothing is declared. When N
        falls outside that band (and the frames kept miss some of N's), a second pass keeps exactly
        `cap_indices(N, cap)` (logged at debug level).
        """
        from tfvtg.video import expected_samples, sample_frames

        stream = sample_frames(path, self.fps, self.size, mode=self.sampling)
        expected = expected_samples(stream.info, self.fps, self.sampling)
        if expected is None:  # any count up to the cap: all its frames are shown
            lo, hi, wanted = 1, cap, np.arange(cap)
        else:
            lo, hi = max(1, expected - _COUNT_BAND), expected + _COUNT_BAND
            wanted = np.unique(np.concatenate([self._capped(n) for n in range(lo, hi + 1)]))
        kept, count = _keep_frames(stream, wanted, hi)
        if not set(self._capped(count).tolist()) <= kept.keys():
            log.debug("%s: %d samples, not the %d-%d expected from %s; sampling again to keep %d", path,
                      count, lo, hi, "no declared length" if expected is None else "its declared length",
                      min(cap, count))
            kept.clear()  # before the second pass: never both passes' frames at once
            stream = sample_frames(path, self.fps, self.size, mode=self.sampling)
            kept, again = _keep_frames(stream, self._capped(count), count)
            if again != count:
                raise VideoError(f"cannot decode {path} reliably: {count} samples in a first pass, "
                                 f"{again} in a second")
        keep = self._capped(count)
        assert stream.duration is not None  # set by a pass that decoded at least one frame
        log.debug("%s: kept %d of %d samples", path, len(keep), count)
        frames = np.stack([kept[i][0] for i in keep])
        times = np.array([kept[i][1] for i in keep], dtype=np.float64)
        return SampledVideo(frames, times, float(stream.duration), path)

    def _ask(self, frames: np.ndarray, times: np.ndarray, end_time: float, query: str,
             window: tuple[float, float]) -> PassDetails:
        """Cap, number (or label), ask, parse, and map the answer to seconds."""
        keep = self._capped(len(frames))
        shown = frames[keep]  # a fresh copy (index array): numbers are drawn on it
        times = np.asarray(times, dtype=np.float64)[keep]
        index = FrameIndex(times, end_time, self.end)
        prompt = self.prompt.replace("{query}", query)
        if self.timestamps_as_text:
            labels = [f"Second {t:.1f}" for t in times]
            answer = self.mllm.answer(list(shown), prompt, times=times, frame_labels=labels)
            parsed = parse_time_answer(answer, index.end_time)
            spans = [self._seconds_span(index, s, e) for s, e in parsed.spans]
        else:
            overlay_numbers(shown, **self.overlay)
            answer = self.mllm.answer(list(shown), prompt, times=times)
            parsed = parse_answer(answer, len(shown))
            spans = [index.span_to_seconds(s, e) for s, e in parsed.spans]
        return PassDetails(prompt, answer, parsed, times, index.end_time, spans, window)

    def _seconds_span(self, index: FrameIndex, start: float, end: float) -> tuple[float, float]:
        """An answered span in seconds; an end naming a labelled frame extends over that frame's interval."""
        if self.end == "next_frame":
            i = int(np.argmin(np.abs(index.times - end)))
            if abs(index.times[i] - end) <= _LABEL_TOLERANCE:
                end = index.time_of(i + 1)
        return start, end

    def _refine(self, sampled: SampledVideo, query: str, span: tuple[float, float]) -> PassDetails | None:
        """Ask again about ``span`` plus a margin, sampled at ``refine_fps``; None if too few frames fall in
        it."""
        frames, times, duration = sampled.frames, sampled.times, sampled.duration
        start, end = span
        margin = self.refine_margin
        if margin is None:
            margin = max(2.0 / self.fps, 0.25 * (end - start))
        lo, hi = max(0.0, start - margin), min(duration, end + margin)
        if sampled.path is not None:
            window_frames, window_times, end_time = self._sample_window(sampled.path, lo, hi, duration)
        else:  # frames in memory: the window's share of them (no higher rate to draw on)
            inside = np.flatnonzero((times >= lo) & (times < hi))
            window_frames, window_times = frames[inside], times[inside]
            after = inside[-1] + 1 if inside.size else len(times)
            end_time = float(times[after]) if after < len(times) else duration
        if len(window_frames) < 2:
            log.info("refinement skipped: fewer than 2 frames in %.1f-%.1f s", lo, hi)
            return None
        return self._ask(window_frames, window_times, end_time, query, (lo, hi))

    def _sample_window(self, video: str | os.PathLike, lo: float, hi: float,
                       duration: float) -> tuple[np.ndarray, np.ndarray, float]:
        """Frames at ``refine_fps`` with times in [lo, hi), and where the last one's interval ends.

        The samples are those of a pass over the whole video whose targets are at or after ``lo`` (the
        stream seeks there instead of decoding the video's start), deduplicated and cut at the first one shown
        at or after ``hi``, whose time is where the last kept frame's interval ends. No ``end`` is given to
        the stream: the frame at or after ``hi`` can be shown first at a target past ``hi``, and the frame
        before it too; stopping at the first sample at or after ``hi`` ends decoding there.
        """
        from tfvtg.video import sample_frames

        kept: list[np.ndarray] = []
        kept_times: list[float] = []
        end_time = duration
        stream = sample_frames(Path(video), self.refine_fps, self.size, mode="timestamp", start=lo)
        for frame, t in stream:
            if t >= hi:
                end_time = float(t)
                break
            if t >= lo and (not kept_times or t > kept_times[-1]):
                kept.append(frame)
                kept_times.append(float(t))
        log.debug("refinement window %.2f-%.2f s: %d frames decoded (seek: %s)", lo, hi,
                  stream.decoded_frames, stream.seeked)
        if not kept:
            return np.empty((0, 1, 1, 3), np.uint8), np.empty(0), end_time
        return np.stack(kept), np.asarray(kept_times), min(end_time, duration)


def _keep_frames(stream: Any, wanted: np.ndarray,
                 most: int) -> tuple[dict[int, tuple[np.ndarray, float]], int]:
    """Iterate ``stream`` to its end, keeping ``{index: (frame, time)}`` for the sample indices in ``wanted``;
    return them and the number of samples. Once more than ``most`` samples came, the kept frames are let go
    (the caller samples again)."""
    wanted_set = {int(i) for i in wanted}
    kept: dict[int, tuple[np.ndarray, float]] = {}
    count = 0
    for frame, t in stream:
        if count >= most:
            kept.clear()
        elif count in wanted_set:
            kept[count] = (frame, float(t))
        count += 1
    return kept, count


def _clean_query(query: str) -> str:
    from tfvtg.grounder import check_query

    if not isinstance(query, str):
        check_query(query)  # tfvtg's message, naming the parameter and what it got
    if not query.strip():
        raise InputError("the query is empty; say what to find, e.g. 'a person opens a door'")
    return query.strip().rstrip(".").strip()
