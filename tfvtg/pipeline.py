"""The TFVTG method from similarity curves to moments: TFVTG-METHOD.md section 5, model-free.

`ground_with_scores` needs only ``score_fn(description) -> (T,) curve``; the `Grounder` supplies that function
from a model and a video, tests and evaluations supply it from cached features or synthetic curves.

With a `Decomposition` it runs the full method (section 5.2): each description is localised on its own; the
query and its paraphrases give a rank-major pool of their top proposals (the first 7 are kept); each
sub-event's descriptions are pooled and voted to 3 candidates; the sub-events are combined under their
relation and the best 2 merged spans join the pool; a final vote ranks the pool. Without one it is the
VLM-only path of section 5.1: the query's own proposals, best static score first.

``method="tag"`` swaps the localiser for TAG's (`tfvtg.tag`, docs/TAG-METHOD.md), which also needs each
frame's winning-token feature (``frame_features_fn``); everything around it is the same flow, as TAG's
evaluation runs it. Without a decomposition TAG's top ``cand_num`` proposals are ranked by TFVTG's vote.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tfvtg import tag
from tfvtg.combine import GAMMA, integrate_sub_events, vote
from tfvtg.decompose import Decomposition
from tfvtg.errors import InputError, check_count
from tfvtg.localize import PRESETS, PROFILES, Proposals, effective_windows, localize, resolve_preset
from tfvtg.moment import Moment

__all__ = [
    "GROUNDING_METHODS",
    "GroundingResult",
    "descriptions_for",
    "ground_with_scores",
    "ground_with_scores_detailed",
    "proposals_to_seconds",
]

TOP_PER_DESCRIPTION = 10  # proposals localize keeps per description
RANK_DEPTH = 3  # ranks per description that enter a pool
MAIN_POOL = 7  # rank-major proposals of the main query kept before the sub-event combinations
SUB_CANDIDATES = 3  # voted candidates per sub-event
GROUNDING_METHODS = ("tfvtg", "tag")  # the localiser: TFVTG's windows or TAG's scenes

ScoreFn = Callable[[str], np.ndarray]
FeatureFn = Callable[[str], np.ndarray]  # description -> (T, D) raw feature of each frame's winning token


@dataclass
class GroundingResult:
    """Everything one grounding produced, for plots and JSON output.

    Attributes:
        moments: The answer, best first.
        decomposition: The decomposition used (None on the VLM-only path).
        curves: Similarity curve of each distinct description.
        proposals: Localisation of each distinct description, in seconds ``(k, 3)`` ``[start, end, conf]``.
        preset: The resolved preset name.
        stride: Length quantum used, in frames (after the cap at T // 2).
        max_stride: Longest window used, in frames (after the cap at T).
        profile: ``"default"`` or ``"reference"``.
        method: ``"tfvtg"`` or ``"tag"``.
    """

    moments: list[Moment]
    decomposition: Decomposition | None
    curves: dict[str, np.ndarray] = field(default_factory=dict)
    proposals: dict[str, np.ndarray] = field(default_factory=dict)
    preset: str = "charades"
    stride: int = 0
    max_stride: int = 0
    profile: str = "default"
    method: str = "tfvtg"


def proposals_to_seconds(
    props: Proposals, duration: float, timestamps: np.ndarray | None = None, *, profile: str = "default"
) -> np.ndarray:
    """(k, 3) ``[start, end, confidence]`` in seconds.

    Reference: the official mapping, start = d / T * D in float64 and end = (i + L) / T * D in float32 (the
    rounding decides touching sub-events). Default: through the frames' real timestamps when given (a frame
    spans until the next one; the last until ``duration``), else k / T * D.
    """
    if props.fallback:
        return np.column_stack([props.start, props.end, props.score])
    n = props.n_frames
    if profile == "reference":
        start = props.start_index / n * duration
        end = (props.end.astype(np.float32) * np.float32(duration)).astype(np.float64)
    elif timestamps is not None:
        edges = np.append(np.asarray(timestamps, np.float64), duration)
        start, end = edges[props.start_index], edges[props.end_index]
    else:
        start, end = props.start_index / n * duration, props.end_index / n * duration
    return np.column_stack([start, end, props.score])


def descriptions_for(query: str, decomposition: Decomposition | None = None) -> list[str]:
    """The distinct texts `ground_with_scores` localises for ``query``: the query, then (full method) its
    paraphrases and sub-event descriptions. Callers use it to encode them all at once, ahead of time."""
    texts = [query.strip()]
    if decomposition is not None:
        texts += decomposition.paraphrases
        texts += [text for event in decomposition.sub_events for text in event]
    return list(dict.fromkeys(texts))


def _rank_major(per_description: list[np.ndarray], depth: int = RANK_DEPTH) -> np.ndarray:
    """Rank 0 of every description, then rank 1 of every description, ... (descriptions with fewer skip)."""
    rows = [p[t] for t in range(depth) for p in per_description if t < len(p)]
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def _to_moments(rows: np.ndarray, scores: np.ndarray, top_k: int | None) -> list[Moment]:
    """Moments from ranked rows, dropping exact repeats of a span already listed (the vote ranked it once)."""
    moments: list[Moment] = []
    seen: set[tuple[float, float]] = set()
    for (start, end, _), score in zip(rows, scores, strict=True):
        key = (float(start), float(end))
        if key in seen:
            continue
        seen.add(key)
        moments.append(Moment(key[0], key[1], float(score)))
        if top_k is not None and len(moments) >= top_k:
            break
    return moments


def ground_with_scores_detailed(
    score_fn: ScoreFn,
    duration: float,
    query: str,
    decomposition: Decomposition | None = None,
    *,
    profile: str = "default",
    preset: str = "charades",
    timestamps: np.ndarray | None = None,
    stride: int | None = None,
    max_stride: int | None = None,
    mask_threshold: float = 0.2,
    top_k: int | None = None,
    gamma: float = GAMMA,
    method: str = "tfvtg",
    frame_features_fn: FeatureFn | None = None,
    temporal_coherence: bool = True,
) -> GroundingResult:
    """`ground_with_scores`, also returning curves, per-description proposals and the settings used."""
    if profile not in PROFILES:
        raise InputError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
    if method not in GROUNDING_METHODS:
        raise InputError(f"unknown method {method!r}; choose from {', '.join(GROUNDING_METHODS)}")
    if method == "tag" and frame_features_fn is None:
        raise InputError("method 'tag' needs frame_features_fn: the winning token's feature of every frame")
    if not isinstance(query, str) or not query.strip():
        raise InputError("the query is empty; give a sentence describing the moment")
    if not (isinstance(duration, int | float) and math.isfinite(duration) and duration > 0):
        raise InputError(f"duration must be a positive number of seconds, got {duration!r}")
    if top_k is not None:
        top_k = check_count(top_k, "top_k")
    if not callable(score_fn):
        raise InputError(f"score_fn must be a function of a description, got {type(score_fn).__name__}")
    preset = tag.tag_preset(preset, duration)[0] if method == "tag" else resolve_preset(preset, duration)
    query = query.strip()

    curves: dict[str, np.ndarray] = {}
    seconds: dict[str, np.ndarray] = {}
    settings: dict[str, int] = {}

    def localise(text: str) -> np.ndarray:
        if text in seconds:
            return seconds[text]
        curve = np.asarray(score_fn(text), dtype=np.float64).reshape(-1)
        if curves and curve.shape != next(iter(curves.values())).shape:
            raise InputError(
                f"score_fn returned {curve.size} frames for {text!r}, expected "
                f"{next(iter(curves.values())).size}"
            )
        if timestamps is not None and len(timestamps) != curve.size:
            raise InputError(f"{len(timestamps)} timestamps for a curve of {curve.size} frames")
        curves[text] = curve
        if method == "tag":
            props = tag.localize(curve, frame_features_fn(text), duration, preset=preset,
                                 temporal_coherence=temporal_coherence, profile=profile,
                                 mask_threshold=mask_threshold, vote_rank=False)
            seconds[text] = proposals_to_seconds(props, duration, timestamps, profile=profile)
            return seconds[text]
        if not settings:
            default_stride, default_max = PRESETS[preset].windows(curve.size)
            settings["stride"] = stride if stride is not None else default_stride
            settings["max_stride"] = max_stride if max_stride is not None else default_max
        props = localize(
            curve,
            settings["stride"],
            settings["max_stride"],
            top_k=TOP_PER_DESCRIPTION,
            mask_threshold=mask_threshold,
            profile=profile,
        )
        seconds[text] = proposals_to_seconds(props, duration, timestamps, profile=profile)
        return seconds[text]

    if decomposition is None and method == "tag":  # TAG's answer: its proposals ranked by the vote
        ranked, votes = vote(localise(query), gamma, profile=profile)
        moments = _to_moments(ranked, votes, top_k)
    elif decomposition is None:
        rows = localise(query)
        moments = _to_moments(rows, rows[:, 2], top_k)
    else:
        subs = []
        for event in decomposition.sub_events:
            pool = _rank_major([localise(text) for text in event])
            subs.append(vote(pool, gamma, profile=profile)[0][:SUB_CANDIDATES])
        main = (query, *decomposition.paraphrases)
        pool = _rank_major([localise(text) for text in main])[:MAIN_POOL]
        merged = integrate_sub_events(subs, decomposition.relation, gamma=gamma, profile=profile)
        ranked, votes = vote(np.concatenate([pool, merged]), gamma, profile=profile)
        moments = _to_moments(ranked, votes, top_k)
    n_frames = next(iter(curves.values())).size
    if method == "tag":  # the dynamic start's stride and the longest span the prior allows
        config = tag.TAG_PRESETS[preset]
        used = (min(config.stride, n_frames // 2), int(n_frames * config.prior))
    else:
        used = effective_windows(settings["stride"], settings["max_stride"], n_frames, profile)
    return GroundingResult(moments, decomposition, curves, seconds, preset, *used, profile, method)


def ground_with_scores(
    score_fn: ScoreFn,
    duration: float,
    query: str,
    decomposition: Decomposition | None = None,
    *,
    profile: str = "default",
    preset: str = "charades",
    timestamps: np.ndarray | None = None,
    stride: int | None = None,
    max_stride: int | None = None,
    mask_threshold: float = 0.2,
    top_k: int | None = None,
    method: str = "tfvtg",
    frame_features_fn: FeatureFn | None = None,
    temporal_coherence: bool = True,
) -> list[Moment]:
    """Ground a query given only a function that scores a description against the video's frames.

    Args:
        score_fn: ``description -> (T,)`` per-frame similarity; called once per distinct description.
        duration: Video duration in seconds (maps frames to seconds).
        query: The original sentence.
        decomposition: The LLM's decomposition (full method); None runs the VLM-only path.
        profile: ``"default"`` (bugs fixed) or ``"reference"`` (the official code's decisions).
        preset: ``charades``, ``activitynet``, ``qvhighlights`` or ``auto`` (by duration): window lengths.
        timestamps: (T,) real time of each frame; the default profile maps frames to seconds through them.
        stride: Length quantum in frames, overriding the preset.
        max_stride: Longest window in frames, overriding the preset's ``int(T * factor)``.
        mask_threshold: Activity mask threshold on the curves (0.2 for BLIP-2).
        top_k: Return at most this many moments (None: all).
        method: ``"tfvtg"`` (TFVTG's windows) or ``"tag"`` (TAG's scenes; needs ``frame_features_fn``).
        frame_features_fn: ``description -> (T, D)`` raw feature of each frame's winning token (TAG only).
        temporal_coherence: TAG's temporal-coherence k-means (BLIP-2) or plain k-means (CLIP-like features).

    Returns:
        Moments in seconds, best first: scores are votes on the full path and confidences on the VLM-only
        path.

    Raises:
        InputError: Empty query, bad duration, unknown profile/preset, or curves that are empty, non-finite or
            of different lengths.
    """
    return ground_with_scores_detailed(
        score_fn,
        duration,
        query,
        decomposition,
        profile=profile,
        preset=preset,
        timestamps=timestamps,
        stride=stride,
        max_stride=max_stride,
        mask_threshold=mask_threshold,
        top_k=top_k,
        method=method,
        frame_features_fn=frame_features_fn,
        temporal_coherence=temporal_coherence,
    ).moments
