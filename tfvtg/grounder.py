"""`Grounder`: encode a video once, then ground any number of queries in it (the notebook-first API).

A `Grounder` owns one encoder (created on first need), a cache of text embeddings keyed by the text, and a
small in-memory memo of encoded videos on top of the on-disk feature cache. Grounding a query builds the
per-description similarity curves with the encoder and hands them to `tfvtg.pipeline`, so a second query on
the same video touches neither the video decoder nor the vision model, only the text side.

Which flow runs:

* ``"full"`` (TFVTG-METHOD §5.2): a decomposition was given, or an LLM is configured (``llm=MODEL`` with
  ``llm_base_url=`` or the ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL`` environment); an LLM failure falls back to
  the single-query decomposition, as the official code does with an empty answer.
* ``"vlm-only"`` (§5.1): no LLM configured; the query alone is localised, its ranked proposals are the answer.

The flow is recorded in ``GroundingResult.meta["method"]``; the localiser (``method=``: ``"tfvtg"`` or
``"tag"``, TAG's LLM-free scenes) in ``meta["localizer"]``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tfvtg.decompose import Decomposition
from tfvtg.encoders import DEFAULT_ENCODER
from tfvtg.errors import InputError, VideoError, check_count
from tfvtg.localize import PROFILES
from tfvtg.moment import Moment, prediction_line
from tfvtg.video import check_fps

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from tfvtg.decompose import Decomposer
    from tfvtg.encoders.base import Encoder
    from tfvtg.features import VideoFeatures

__all__ = ["Grounder", "GroundingResult", "check_feature_model", "ground", "PROFILES", "METHODS"]

log = logging.getLogger(__name__)

METHODS = ("full", "vlm-only")
TEXT_BATCH = 256  # texts per text-encoder call
_VIDEO_MEMO_BYTES = 512 * 2**20  # encoded videos kept in memory by a Grounder (beyond the disk cache)


def check_feature_model(made_by: str, image_size: Sequence[int] | None, ours: str,
                        our_image_size: Sequence[int] | None) -> bool:
    """Whether features made by encoder ``made_by`` at ``image_size`` belong to the model ``ours``.

    Two different Hub ids (registered names count as their ids), or a different input image size, are
    different models: an error, since the curves would be meaningless. A local checkpoint directory may hold
    the same weights as a Hub id, so a mismatch involving a directory returns False (the caller warns). A size
    of None is not compared. `Grounder` and `tfvtg.evaluate`'s pre-check both decide with this.

    Returns:
        True when it is the same model, False when that cannot be told.

    Raises:
        InputError: a different image size, or a different Hub model.
    """
    from tfvtg.encoders import REGISTRY

    theirs_id, ours_id = REGISTRY.get(made_by, made_by), REGISTRY.get(ours, ours)
    size = tuple(image_size) if image_size else None
    wanted = tuple(our_image_size) if our_image_size else None
    if size and wanted and size != wanted:
        raise InputError(f"these features were made at image size {size} by {made_by!r}, but {ours!r} "
                         f"takes {wanted}: extract them again with this model")
    if theirs_id == ours_id:
        return True
    if not os.path.isabs(theirs_id) and not os.path.isabs(ours_id):
        raise InputError(f"these features were made by {made_by!r} but the text side is {ours!r}: "
                         "similarities between different models are meaningless; use --model "
                         f"{made_by} or extract the features again")
    return False


@dataclass(eq=False)  # == compares the arrays' values (tfvtg.compare), not the ambiguous array ==
class GroundingResult:
    """Everything one grounding produced: the answer, how it was reached, and the curves behind it.

    Attributes:
        query: The query sentence as given (stripped).
        moments: Predicted spans in seconds, best first.
        decomposition: The decomposition used (the plain query when none was).
        method: ``"full"`` (decomposition + combination, §5.2) or ``"vlm-only"`` (the query alone, §5.1).
        curves: Similarity curve (T,) of every description that was localised, keyed by the description.
        timestamps: (T,) time in seconds of each feature frame.
        duration: Video duration in seconds.
        mask_threshold: The activity mask threshold the curves were localised with.
        meta: Model, profile, preset, stride, timings (seconds) and other run facts for JSON outputs.
    """

    query: str
    moments: list[Moment]
    decomposition: Decomposition
    method: str
    curves: dict[str, np.ndarray]
    timestamps: np.ndarray
    duration: float
    mask_threshold: float = 0.2
    meta: dict[str, Any] = field(default_factory=dict)

    def __eq__(self, other: object) -> bool:
        from tfvtg.compare import fields_equal

        return fields_equal(self, other)

    __hash__ = None  # type: ignore[assignment]  (mutable arrays inside)

    def __repr__(self) -> str:
        # Curves as their count and length: their values are kilobytes.
        return (f"GroundingResult(query={self.query!r}, moments={self.moments!r}, method={self.method!r}, "
                f"curves={len(self.curves)} x {len(self.timestamps)} frames, duration={self.duration:.2f})")

    @property
    def query_curve(self) -> np.ndarray:
        """The similarity curve of the query sentence itself."""
        return self.curves[self.query]

    def to_prediction(self, qid: Any = None, vid: str | None = None, ndigits: int = 4) -> dict[str, Any]:
        """One QVHighlights-style prediction line (``pred_relevant_windows``) plus tfvtg's extra keys."""
        return prediction_line(self.query, self.moments, self.duration, qid=qid, vid=vid, ndigits=ndigits,
                               decomposition=self.decomposition.to_dict(), meta=self.meta)


def _check_choice(value: str, choices: Sequence[str], what: str) -> str:
    name = str(value).strip().lower()
    if name not in choices:
        raise InputError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")
    return name


def _finite(value: Any) -> float:
    """``value`` as a float when it is a finite real number (not a bool), else NaN."""
    is_number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    return float(value) if is_number and math.isfinite(value) else math.nan


def _non_negative(value: Any, what: str) -> float:
    number = _finite(value)
    if not number >= 0:
        raise InputError(f"{what} must be a number >= 0, got {_short(value)}")
    return number


def _positive_or_none(value: float | None, what: str) -> float | None:
    if value is None:
        return None
    number = _finite(value)
    if not number > 0:  # NaN included
        raise InputError(f"{what} must be a positive number, got {value!r}")
    return number


def check_query(query: Any) -> str:
    """The query stripped; `InputError` when it is not a non-empty string."""
    if not isinstance(query, str):
        raise InputError(f"query must be a sentence (a str), got {type(query).__name__} {_short(query)}")
    if not query.strip():
        raise InputError("empty query: give a sentence describing the moment to find")
    return query.strip()


def _short(value: Any, limit: int = 40) -> str:
    if isinstance(value, np.ndarray):
        return f"of shape {value.shape} {value.dtype}"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_video_path(path: str | os.PathLike[str]) -> Path:
    """The path of an existing regular file; else a `VideoError` / `InputError` a user can act on."""
    if not isinstance(path, (str, os.PathLike)):
        hint = "; encode an in-memory array with Grounder.encode_frames(frames, fps=...) first" \
            if isinstance(path, np.ndarray) else ""
        raise InputError(f"video must be a video file path (or features from encode_video), got "
                         f"{type(path).__name__} {_short(path)}{hint}")
    video = Path(path).expanduser()
    if not video.exists():
        raise VideoError(f"video not found: {video}")
    if video.is_dir():
        raise InputError(f"{video} is a directory, not a video file")
    if not video.is_file():
        raise InputError(f"{video} is not a regular file")
    return video


class Grounder:
    """Ground natural-language queries in videos with TFVTG, encoding each video once.

    Args:
        model: Encoder name (``"blip2-coco"``, the paper's weights; ``"blip2"``; the light ``"clip-b32"``,
            ``"clip-b16"``, ``"clip-l14"``, ``"siglip2-b16"``), a Hugging Face id, or a local directory saved
            with ``save_pretrained``. Loaded on first need.
        device: ``"auto"`` (cuda, then mps, then cpu), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
        dtype: Encoder precision (`tfvtg.device.resolve_precision`; ``None``: autocast-float16 on CUDA,
            float32 elsewhere).
        fps: Frame sampling rate (``None``: the encoder's default, 3 for BLIP-2).
        profile: ``"default"`` (the paper's method with the official code's bugs fixed) or ``"reference"``
            (the official code's decisions, its frame sampling and time mapping included; BLIP-2 only).
        method: The localiser: ``"tfvtg"`` (TFVTG's windows) or ``"tag"`` (TAG's scenes, docs/TAG-METHOD.md;
            its mask threshold and clustering come from the encoder's config). Both run with or without an
            LLM.
        preset: Proposal lengths: ``"charades"``, ``"activitynet"``, ``"qvhighlights"`` or ``"auto"``
            (by duration: charades up to 60 s, activitynet beyond).
        stride_seconds: Length quantum of the proposals in seconds; overrides the preset's.
        max_length_seconds: Longest proposal in seconds; overrides the preset's fraction of the video.
        llm: LLM model name for the query decomposition (``None`` or ``"none"``: no LLM, the VLM-only flow);
            the endpoint is ``llm_base_url`` or ``$OPENAI_BASE_URL`` (OpenAI itself with ``$OPENAI_API_KEY``).
        llm_base_url: Base URL of an OpenAI-compatible endpoint (vLLM, Ollama, llama.cpp, ...).
        cache_dir: Root of the feature and LLM caches (``None``: the default cache directory).
        use_cache: Read and write the on-disk caches; ``False`` keeps everything in memory.
        batch_size: Frames per encoder batch.
        dedup_threshold: Reuse the previous frame's features when a frame differs by less than this mean
            absolute pixel difference (0-255 scale); ``None`` encodes every frame.
        progress: Show progress bars on stderr while encoding.

    Example:
        >>> g = Grounder("blip2-coco")                                   # doctest: +SKIP
        >>> video = g.encode_video("video.mp4")                           # doctest: +SKIP
        >>> g.ground(video, "the person turns on the light", top_k=5)    # doctest: +SKIP
        [Moment(start=24.1, end=30.4, score=1.0), ...]
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_ENCODER,
        *,
        device: str = "auto",
        dtype: str | None = None,
        fps: float | None = None,
        profile: str = "default",
        method: str = "tfvtg",
        preset: str = "auto",
        stride_seconds: float | None = None,
        max_length_seconds: float | None = None,
        llm: str | None = None,
        llm_base_url: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        use_cache: bool = True,
        batch_size: int = 32,
        dedup_threshold: float | None = None,
        progress: bool = True,
    ) -> None:
        from tfvtg.localize import resolve_preset
        from tfvtg.pipeline import GROUNDING_METHODS

        if not isinstance(model, (str, os.PathLike)):
            raise InputError(f"model must be an encoder name or a directory, got {_short(model)}")
        self.model = os.fspath(model)
        if not self.model.strip():
            raise InputError("empty model name; use blip2-coco, blip2, a hub id or a local directory")
        self.device = device
        self.dtype = dtype
        self.fps = None if fps is None else check_fps(fps)
        self.profile = _check_choice(profile, PROFILES, "profile")
        self.method = _check_choice(method, GROUNDING_METHODS, "method")
        self.preset = "auto" if str(preset).strip().lower() == "auto" else resolve_preset(str(preset))
        self.stride_seconds = _positive_or_none(stride_seconds, "stride_seconds")
        self.max_length_seconds = _positive_or_none(max_length_seconds, "max_length_seconds")
        if self.method == "tag" and self.preset != "auto":
            from tfvtg.tag import tag_preset

            tag_preset(self.preset)  # TAG has no qvhighlights configuration: say so now, not per query
        if self.method == "tag" and (self.stride_seconds or self.max_length_seconds):
            raise InputError("stride and max length in seconds set TFVTG's windows; TAG proposes spans "
                             "between scene boundaries and takes neither")
        self.llm = llm
        self.llm_base_url = llm_base_url
        self.cache_dir = None if cache_dir is None else Path(cache_dir).expanduser()
        for flag, value in (("use_cache", use_cache), ("progress", progress)):
            if not isinstance(value, (bool, np.bool_)):
                raise InputError(f"{flag} must be True or False, got {value!r}")
        self.use_cache = bool(use_cache)
        self.batch_size = check_count(batch_size, "batch_size")
        self.dedup_threshold = None if dedup_threshold is None else _non_negative(dedup_threshold,
                                                                                   "dedup_threshold")
        self.progress = bool(progress)
        self._encoder: Encoder | None = None
        self._text_features: dict[str, np.ndarray] = {}
        self._videos: OrderedDict[tuple[str, int, int], VideoFeatures] = OrderedDict()
        self._decompositions: dict[str, Decomposition] = {}
        self._decomposer: Decomposer | None = None
        self._warned_encoders: set[str] = set()
        # see similarity_curves: the video's features, its curves and its winning tokens (TAG) by text
        self._curves: tuple[np.ndarray | None, dict[str, np.ndarray], dict[str, np.ndarray]] = (None, {}, {})

    def __repr__(self) -> str:
        state = "loaded" if self._encoder is not None else "not loaded"
        return (f"Grounder(model={self.model!r}, method={self.method!r}, profile={self.profile!r}, "
                f"preset={self.preset!r}, {state})")

    # ---------------------------------------------------------------- model and video
    @property
    def encoder(self) -> Encoder:
        """The encoder, created on first access (this is when the checkpoint is loaded or downloaded)."""
        if self._encoder is None:
            from tfvtg.encoders import create_encoder

            encoder = create_encoder(self.model, device=self.device, dtype=self.dtype,
                                     batch_size=self.batch_size)
            if self.profile == "reference" and encoder.config.family != "blip-2":
                raise InputError(f"the reference profile reproduces the official code, which runs BLIP-2; "
                                 f"{self.model} is a {encoder.config.family} encoder: use --profile default")
            self._encoder = encoder
        return self._encoder

    @property
    def loaded_encoder(self) -> Encoder | None:
        """The encoder if it has been created, else None (asking this never loads a checkpoint)."""
        return self._encoder

    @property
    def decomposer(self) -> Decomposer:
        """The query decomposer (LLM endpoint, prompt and answer cache), created on first access."""
        if self._decomposer is None:
            from tfvtg.decompose import Decomposer

            llm_cache = (self.cache_dir / "llm") if self.cache_dir else None
            self._decomposer = Decomposer(self.llm, base_url=self.llm_base_url, cache_dir=llm_cache,
                                          use_cache=self.use_cache)
        return self._decomposer

    @property
    def llm_configured(self) -> bool:
        """Whether query decomposition goes to an LLM (the full flow) or is skipped (VLM-only)."""
        return self.decomposer.configured

    @property
    def sampling_mode(self) -> str:
        """Frame sampling: the official code's picks under the reference profile, real times otherwise."""
        return "reference" if self.profile == "reference" else "timestamp"

    def encode_video(self, path: str | os.PathLike[str], *, use_cache: bool | None = None) -> VideoFeatures:
        """Per-frame features of a video file, from the feature cache when it holds them.

        ``use_cache=False`` keeps this video out of the on-disk cache (a temporary upload); None follows the
        Grounder's ``use_cache``.

        Raises:
            VideoError: The file is missing or cannot be decoded.
            InputError: The path is a directory.
            ModelError: The encoder cannot be loaded.
        """
        video = check_video_path(path)
        stat = video.stat()
        key = (str(video.resolve()), stat.st_size, stat.st_mtime_ns)
        cached = self._videos.get(key)
        if cached is not None:
            self._videos.move_to_end(key)
            return cached
        features = self._extract(video, self.use_cache if use_cache is None else use_cache)
        self._videos[key] = features
        # Keep recent videos in memory up to a byte budget (an hour at 3 fps is ~180 MB), the newest always.
        def held() -> int:
            return sum(v.features.nbytes for v in self._videos.values())

        while len(self._videos) > 1 and held() > _VIDEO_MEMO_BYTES:
            self._videos.popitem(last=False)
        return features

    def encode_frames(self, frames: np.ndarray, *, fps: float | None = None, timestamps: Any = None,
                      duration: float | None = None) -> VideoFeatures:
        """Features of in-memory (T, H, W, 3) uint8 RGB frames, timed by ``fps`` or ``timestamps``.

        See `tfvtg.frames.encode_frames`; not cached (an array has no file to key on).
        """
        from tfvtg.frames import encode_frames

        return encode_frames(frames, self.encoder, fps=fps, timestamps=timestamps, duration=duration)

    def _extract(self, video: Path, use_cache: bool) -> VideoFeatures:
        from tfvtg.features import FeatureCache, extract_features

        options = dict(fps=self.fps, mode=self.sampling_mode, batch_size=self.batch_size,
                       dedup_threshold=self.dedup_threshold, progress=self.progress)
        start = time.perf_counter()
        if use_cache:
            features = FeatureCache(self.cache_dir).get_or_extract(video, self.encoder, **options)
        else:
            features = extract_features(video, self.encoder, **options)
        log.debug("features of %s ready in %.2f s (%d frames)", video, time.perf_counter() - start,
                  len(features.timestamps))
        return features

    # ---------------------------------------------------------------- text side
    def decompose(self, query: str) -> Decomposition:
        """The LLM's decomposition of ``query`` (single-query fallback when no LLM answers), memoised."""
        query = check_query(query)
        if query not in self._decompositions:
            self._decompositions[query] = self.decomposer(query)
        return self._decompositions[query]

    def text_features(self, texts: Sequence[str]) -> np.ndarray:
        """(M, D) text embeddings, encoding only texts this Grounder has not seen (`TEXT_BATCH` at a time)."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._text_features))
        for i in range(0, len(missing), TEXT_BATCH):
            chunk = missing[i : i + TEXT_BATCH]
            encoded = np.asarray(self.encoder.encode_texts(chunk), dtype=np.float32)
            self._text_features.update(zip(chunk, encoded, strict=True))
        return np.stack([self._text_features[t] for t in texts])

    def similarity_curves(self, video: VideoFeatures, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """The (T,) similarity curve of each distinct text against the video's frames.

        Curves against the most recent video are remembered, so asking for all of a video's texts once (as
        `tfvtg.evaluate` does) lets each query reuse them instead of scoring the whole video again.
        """
        texts = list(dict.fromkeys(texts))
        feats = video.features
        memo_feats, memo, tokens = self._curves
        if memo_feats is not feats:
            memo, tokens = {}, {}
            self._curves = (feats, memo, tokens)
        missing = [text for text in texts if text not in memo]
        if missing:
            text_feats = self.text_features(missing)
            if feats.shape[-1] != text_feats.shape[-1]:
                raise InputError(f"the video features have dimension {feats.shape[-1]} but the {self.model} "
                                 f"text embeddings {text_feats.shape[-1]}: the features come from another "
                                 "encoder")
            per_frame = self.encoder.config.num_query_tokens
            if feats.ndim == 3 and feats.shape[1] != per_frame:
                raise InputError(f"the video features have {feats.shape[1]} tokens per frame but "
                                 f"{self.model} makes {per_frame}: the features come from another encoder")
            self._check_encoder_name(video)
            sims = np.asarray(self.encoder.similarity(feats, text_feats), dtype=np.float32)
            memo.update(zip(missing, sims, strict=True))
            if self.method == "tag":  # TAG pools the raw feature of the token each frame's similarity is from
                from tfvtg.encoders.base import winning_tokens

                tokens.update(zip(missing, winning_tokens(feats, text_feats), strict=True))
        return {text: memo[text] for text in texts}

    def winning_token_features(self, video: VideoFeatures, text: str) -> np.ndarray:
        """(T, D) float32 raw feature of the token of each frame that is most similar to ``text`` (TAG's
        input; the frame feature itself for one-token encoders)."""
        memo_feats, _, memo = self._curves
        tokens = memo.get(text) if memo_feats is video.features else None
        if tokens is None:
            from tfvtg.encoders.base import winning_tokens

            tokens = winning_tokens(video.features, self.text_features([text]))[0]
        return np.asarray(video.features[np.arange(len(tokens)), tokens], dtype=np.float32)

    def _check_encoder_name(self, video: VideoFeatures) -> None:
        """Refuse features of another model (`check_feature_model`); warn once per name if undecidable."""
        made_by = getattr(video, "encoder", None)
        if not made_by or getattr(video, "sampling", None) == "tfvtg-npy":
            return
        config = self.encoder.config
        size = tuple(getattr(video, "image_size", ()) or ()) or None
        if check_feature_model(made_by, size, config.name, tuple(config.image_size)):
            return
        if made_by not in self._warned_encoders:
            self._warned_encoders.add(made_by)
            log.warning("these features were made by encoder %r but the text side is %r; similarities are "
                        "only meaningful with the same weights", made_by, config.name)

    # ---------------------------------------------------------------- grounding
    def _strides(self, video: VideoFeatures, preset: str) -> tuple[int | None, int | None]:
        """Stride and maximum proposal length in frames (``None``: the pipeline's preset defaults).

        The presets are frame counts at the method's 3 fps; at another rate `tfvtg.localize.window_frames`
        keeps their length in seconds. The reference profile keeps the official frame counts unless lengths in
        seconds are given.
        """
        from tfvtg.localize import window_frames

        explicit = self.stride_seconds is not None or self.max_length_seconds is not None
        if self.profile == "reference" and not explicit:
            return None, None
        fps = float(video.fps) if video.fps else 0.0
        if not fps:
            if explicit:
                raise InputError("stride/max length in seconds need features with a known frame rate")
            return None, None
        return window_frames(preset, len(video.timestamps), fps, duration=float(video.duration),
                             stride_seconds=self.stride_seconds, max_length_seconds=self.max_length_seconds)

    def ground_details(
        self,
        video: VideoFeatures | str | os.PathLike[str],
        query: str,
        *,
        top_k: int = 5,
        decomposition: Decomposition | Mapping[str, Any] | None = None,
    ) -> GroundingResult:
        """Ground one query and return the moments with the decomposition, curves and run facts behind them.

        Args:
            video: Features from `encode_video` (or `tfvtg.load_features`), or a video file path.
            query: The sentence describing the moment.
            top_k: How many moments to return at most.
            decomposition: A `Decomposition` (or a TFVTG answer dict) to use instead of asking the LLM.

        Raises:
            InputError: Empty query, bad ``top_k``, or features from another encoder.
        """
        from tfvtg.localize import resolve_preset
        from tfvtg.pipeline import descriptions_for, ground_with_scores_detailed

        query = check_query(query)
        top_k = check_count(top_k, "top_k")
        if decomposition is not None and not isinstance(decomposition, (Decomposition, Mapping)):
            raise InputError(f"decomposition must be a Decomposition or a TFVTG answer dict, got "
                             f"{type(decomposition).__name__}")
        timings: dict[str, float] = {}
        start = time.perf_counter()
        if not hasattr(video, "features"):
            video = self.encode_video(video)
        timings["encode_s"] = time.perf_counter() - start

        start = time.perf_counter()
        if isinstance(decomposition, Mapping):
            decomposition = Decomposition.from_tfvtg(decomposition, query)
        if decomposition is not None:
            method = "full"
        elif self.llm_configured:
            decomposition, method = self.decompose(query), "full"
        else:
            decomposition, method = Decomposition.single(query, note="no LLM configured"), "vlm-only"
        timings["decompose_s"] = time.perf_counter() - start

        start = time.perf_counter()
        texts = descriptions_for(query, decomposition if method == "full" else None)
        curves = self.similarity_curves(video, texts)
        timings["text_s"] = time.perf_counter() - start

        def score_fn(description: str) -> np.ndarray:
            if description not in curves:  # the pipeline asked for a text we did not foresee
                curves.update(self.similarity_curves(video, [description]))
            return curves[description]

        start = time.perf_counter()
        duration = float(video.duration)
        preset = resolve_preset(self.preset, duration)
        config = self.encoder.config
        tag = self.method == "tag"
        stride, max_stride = (None, None) if tag else self._strides(video, preset)
        mask_threshold = float(config.tag_mask_threshold if tag else config.mask_threshold)
        timestamps = np.asarray(video.timestamps, dtype=np.float64)
        detailed = ground_with_scores_detailed(
            score_fn, duration, query, decomposition if method == "full" else None, profile=self.profile,
            preset=preset, timestamps=timestamps, stride=stride, max_stride=max_stride,
            mask_threshold=mask_threshold, top_k=top_k, method=self.method,
            frame_features_fn=lambda text: self.winning_token_features(video, text),
            temporal_coherence=bool(config.tag_temporal_coherence),
        )
        timings["ground_s"] = time.perf_counter() - start
        meta = {
            "method": method,
            "localizer": self.method,
            "model": self.model,
            "encoder": getattr(video, "encoder", None),
            "profile": self.profile,
            "preset": preset,
            "stride_frames": detailed.stride,
            "max_stride_frames": detailed.max_stride,
            "fps": float(video.fps) if video.fps else None,
            "frames": int(len(timestamps)),
            "timings": {k: round(v, 4) for k, v in timings.items()},
        }
        return GroundingResult(query, list(detailed.moments), decomposition, method, curves, timestamps,
                               duration, mask_threshold, meta)

    def ground(
        self,
        video: VideoFeatures | str | os.PathLike[str],
        query: str,
        top_k: int = 5,
        decomposition: Decomposition | Mapping[str, Any] | None = None,
    ) -> list[Moment]:
        """The moments (seconds, best first) where ``query`` happens in ``video``; see `ground_details`."""
        return self.ground_details(video, query, top_k=top_k, decomposition=decomposition).moments

    def plot(
        self,
        video: VideoFeatures | str | os.PathLike[str],
        query: str,
        ax: Axes | None = None,
        *,
        top_k: int = 5,
        decomposition: Decomposition | Mapping[str, Any] | None = None,
        gt: Sequence[Sequence[float]] | None = None,
    ) -> Figure:
        """A figure of the similarity curves with the predicted spans (and true spans ``gt`` if given)."""
        from tfvtg.plot import plot_result

        result = self.ground_details(video, query, top_k=top_k, decomposition=decomposition)
        return plot_result(result, ax=ax, gt=gt)


_GROUND_ARGS = ("top_k", "decomposition")


def ground(video: str | os.PathLike[str] | VideoFeatures, query: str, **kwargs: Any) -> list[Moment]:
    """One call: build a `Grounder` from ``kwargs`` and ground ``query`` in ``video``.

    ``top_k`` and ``decomposition`` go to `Grounder.ground`; every other keyword to `Grounder`. For several
    queries on one video, keep a `Grounder` instead: it encodes the video once.

    Example:
        >>> import tfvtg
        >>> tfvtg.ground("video.mp4", "a dog catches a frisbee", top_k=3)   # doctest: +SKIP
    """
    ground_kwargs = {k: kwargs.pop(k) for k in _GROUND_ARGS if k in kwargs}
    return Grounder(**kwargs).ground(video, query, **ground_kwargs)
