"""Run a grounding benchmark from cached feature files: predictions for every query, then the metrics.

The features of each video are read once (one file per video, named by the video id), every query of that
video is grounded with one `Grounder` (text embeddings are shared across the whole split), and the predictions
are written as QVHighlights-style JSON lines. Which flow runs follows the official evaluation script:

* with LLM answers (``--llm-outputs``, or an annotation file that carries TFVTG's ``response`` lists) every
  query runs the full method (§5.2), an empty answer falling back to the plain sentence;
* without them, the VLM-only flow (§5.1): the sentence alone, its top proposal is the prediction.

QVHighlights predictions also carry ``pred_saliency_scores``: the query's similarity averaged over each
2-second clip (the UniVTG idea), which the highlight-detection metrics need and the official code lacks.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tfvtg.encoders import DEFAULT_ENCODER
from tfvtg.errors import InputError, one_line
from tfvtg.moment import prediction_line

if TYPE_CHECKING:
    from tfvtg.datasets import GroundingQuery
    from tfvtg.features import VideoFeatures
    from tfvtg.grounder import Grounder

__all__ = [
    "DATASET_PRESETS",
    "FEATURE_SUFFIX",
    "FEATURE_FORMATS",
    "EvaluationReport",
    "check_feature_files",
    "clip_saliency",
    "feature_file_problems",
    "evaluate",
    "feature_path",
    "load_video_features",
    "prediction_qid",
    "score_predictions",
]

log = logging.getLogger(__name__)

FEATURE_SUFFIX = ".safetensors"  # files written by `tfvtg extract` / VideoFeatures.save
DATASET_PRESETS = {"charades-sta": "charades", "activitynet": "activitynet", "qvhighlights": "qvhighlights"}
FEATURE_FORMATS = ("tfvtg", "tfvtg-npy")
CLIP_SECONDS = 2.0  # QVHighlights clip length


@dataclass
class EvaluationReport:
    """The outcome of `evaluate`.

    Attributes:
        dataset: Benchmark name (``charades-sta``, ``activitynet``, ``qvhighlights``).
        predictions: One QVHighlights-style record per evaluated query, in annotation order.
        metrics: Metric name -> value (percent), over the evaluated queries.
        n_queries: Queries evaluated.
        n_videos: Videos evaluated.
        missing_videos: Video ids skipped because no feature file exists (only with ``skip_missing``).
        skipped_queries: Queries of the missing and the bad videos.
        seconds: Wall time of the run, loading the model excepted (``load_seconds``).
        bad_videos: Video id -> why its feature file cannot be used (skipped with ``skip_bad``).
        load_seconds: Time spent loading the text encoder.
        method: ``"full"`` (with LLM answers) or ``"vlm-only"``.
        meta: Profile, preset, model, feature format and other run facts.
    """

    dataset: str
    predictions: list[dict[str, Any]]
    metrics: dict[str, float]
    n_queries: int
    n_videos: int
    missing_videos: list[str] = field(default_factory=list)
    skipped_queries: int = 0
    seconds: float = 0.0
    method: str = "vlm-only"
    meta: dict[str, Any] = field(default_factory=dict)
    bad_videos: dict[str, str] = field(default_factory=dict)
    load_seconds: float = 0.0


def feature_path(features_dir: str | os.PathLike[str], vid: str, feature_format: str) -> Path:
    """Where the feature file of video ``vid`` lives: ``<dir>/<vid>.npy`` (official) or ``.safetensors``."""
    suffix = ".npy" if feature_format == "tfvtg-npy" else FEATURE_SUFFIX
    return Path(features_dir) / f"{vid}{suffix}"


def load_video_features(path: Path, feature_format: str, duration: float) -> VideoFeatures:
    """Read one feature file; official ``.npy`` files take the annotated ``duration`` (no metadata).

    Raises:
        InputError: The file cannot be read, or holds non-finite values (named: a damaged extraction).
    """
    from tfvtg.features import VideoFeatures, check_finite

    if feature_format == "tfvtg-npy":
        features = VideoFeatures.from_tfvtg_npy(path, duration)
        check_finite(features, path)  # `VideoFeatures.load` checks its own
        return features
    return VideoFeatures.load(path)


@dataclass(frozen=True)
class _ModelShape:
    """What feature files must match, as far as it is known without loading the model (None: unknown).

    Attributes:
        name: The encoder id the model's features record (Hub id or resolved directory).
        image_size: (height, width) its image processor resizes to.
        num_query_tokens: Q of its (T, Q, D) features.
        embed_dim: D.
    """

    name: str | None = None
    image_size: tuple[int, int] | None = None
    num_query_tokens: int | None = None
    embed_dim: int | None = None


def _model_shape(model: str, grounder: Grounder | None) -> _ModelShape:
    """The loaded encoder's config, else what the checkpoint's JSON files say (never loads weights)."""
    from tfvtg.encoders import read_checkpoint_shape
    from tfvtg.errors import ModelError

    loaded = grounder.loaded_encoder if grounder is not None else None
    if loaded is not None:
        c = loaded.config
        return _ModelShape(c.name, tuple(c.image_size), int(c.num_query_tokens), int(c.embed_dim))
    try:
        source, image_size, queries, dim = read_checkpoint_shape(grounder.model if grounder is not None
                                                                 else model)
    except ModelError:
        return _ModelShape()  # reported when the model is loaded, after the files are known to be good
    return _ModelShape(name=source, image_size=image_size, num_query_tokens=queries, embed_dim=dim)


def check_feature_files(
    paths: Sequence[str | os.PathLike[str]],
    feature_format: str = "tfvtg",
    *,
    model: str = DEFAULT_ENCODER,
    grounder: Grounder | None = None,
    durations: Sequence[float] | None = None,
) -> None:
    """Check feature files cheaply before a model is loaded: headers only, never the tensors.

    ``tfvtg`` files: the safetensors header must parse as a complete tfvtg feature file
    (`tfvtg.features.read_metadata`) made by ``model`` at its image size
    (`tfvtg.grounder.check_feature_model`, the rule `Grounder` applies).
    ``tfvtg-npy`` files: a (T, Q, D) float array (``np.load`` with ``mmap_mode="r"`` reads the header only).
    In both, Q and D must be the model's where they are known: from ``grounder``'s loaded encoder, else from
    the checkpoint's ``config.json`` (a local directory, or the Hugging Face cache); unknown parts are left to
    the checks at grounding time. A model that cannot be found is not an error here: loading reports it.

    Args:
        paths: Feature files.
        feature_format: ``"tfvtg"`` or ``"tfvtg-npy"``.
        model: The model the features must come from (as `Grounder` takes it).
        grounder: Check against this grounder's model instead of ``model``.
        durations: The annotated duration of each file's video: a ``tfvtg`` file of a clearly different
            length (`DURATION_TOLERANCE`) is another video's.

    Raises:
        InputError: The first bad file's problem, then how many more there are and the next two.
    """
    problems = list(feature_file_problems(paths, feature_format, model=model, grounder=grounder,
                                          durations=durations).values())
    if len(problems) == 1:
        raise InputError(problems[0])
    if problems:  # the first problem leads; then how many more, and the next two
        more = "; ".join(problems[1:3]) + ("; ..." if len(problems) > 3 else "")
        raise InputError(f"{problems[0]}; {len(problems) - 1} more of the {len(paths)} feature files cannot "
                         f"be used: {more}")


# A feature file whose video is longer or shorter than the annotated duration by more than both of these
# (seconds, fraction) belongs to another video. Decoded and annotated lengths differ by a frame or two.
DURATION_TOLERANCE = (1.0, 0.1)


def feature_file_problems(
    paths: Sequence[str | os.PathLike[str]],
    feature_format: str = "tfvtg",
    *,
    model: str = DEFAULT_ENCODER,
    grounder: Grounder | None = None,
    durations: Sequence[float] | None = None,
) -> dict[Path, str]:
    """What is wrong with each unusable feature file, from headers only (see `check_feature_files`)."""
    expected = _model_shape(model, grounder)
    problems: dict[Path, str] = {}
    for i, path in enumerate(map(Path, paths)):
        try:
            if feature_format == "tfvtg-npy":
                shape = _npy_shape(path)
            else:
                shape = _safetensors_shape(path, expected, None if durations is None else durations[i])
            _check_shape(path, shape, expected)
        except InputError as exc:
            problems[path] = str(exc)
    return problems


def warn_unofficial_precision(paths: Sequence[str | os.PathLike[str]]) -> None:
    """Warn (one line) when feature files were not made with the official numerics (headers only).

    ``--profile reference`` reproduces the official code's decisions, and its numbers only from features made
    as the official ones were (``autocast-float16``, `tfvtg.device.OFFICIAL_PRECISION`): other precisions move
    similarities by ~1e-3, enough to change some top-1 spans. Files that record no precision count as other.
    """
    from tfvtg.device import OFFICIAL_PRECISION
    from tfvtg.features import read_metadata

    counts: dict[str, int] = {}
    for path in paths:
        made = read_metadata(path).get("precision") or "an unrecorded precision"
        counts[made] = counts.get(made, 0) + 1
    others = {made: n for made, n in counts.items() if made != OFFICIAL_PRECISION}
    if others:
        listed = ", ".join(f"{n} in {made}" for made, n in sorted(others.items()))
        log.warning("profile reference: %d of %d feature files were not made with the official numerics "
                    "(%s: float32 weights under fp16 autocast) but %s; the metrics can differ slightly from "
                    "the official code's: re-extract them on a GPU with the default --dtype",
                    sum(others.values()), len(paths), OFFICIAL_PRECISION, listed)


def _safetensors_shape(path: Path, expected: _ModelShape, duration: float | None = None) -> tuple[int, ...]:
    from tfvtg.features import read_metadata
    from tfvtg.grounder import check_feature_model

    meta = read_metadata(path)  # the metadata fields are checked there, for `VideoFeatures.load` too
    if expected.name is not None and meta["sampling"] != "tfvtg-npy":
        try:
            check_feature_model(meta["encoder"], meta["image_size"], expected.name, expected.image_size)
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from None
    seconds, fraction = DURATION_TOLERANCE
    found = float(meta["duration"])
    if duration is not None and abs(found - duration) > max(seconds, fraction * duration):
        raise InputError(f"{path}: features of a {found:.2f} s video, but the annotations give it "
                         f"{duration:g} s: the file is another video's; extract it again from the right one")
    return tuple(meta["shape"])


def _npy_shape(path: Path) -> tuple[int, ...]:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:  # object arrays (pickle), a damaged header, or a truncated file
        raise InputError(f"cannot read {path}: {one_line(exc)}") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.floating):
        what = f"{array.dtype} {array.shape}" if isinstance(array, np.ndarray) else "an archive"
        raise InputError(f"{path} is not a TFVTG feature file: expected a (T, 32, 256) float array, "
                         f"got {what}")
    return tuple(array.shape)


def _check_shape(path: Path, shape: tuple[int, ...], expected: _ModelShape) -> None:
    """(T, Q, D) with T >= 1, and Q and D the model's where known."""
    q, d = expected.num_query_tokens, expected.embed_dim
    model = f"(T, {q or 'Q'}, {d or 'D'})"
    if len(shape) != 3 or shape[0] < 1:
        raise InputError(f"{path}: features of shape {shape}, expected {model} with T >= 1 frames")
    if (q is not None and shape[1] != q) or (d is not None and shape[2] != d):
        raise InputError(f"{path}: features of shape {shape} but {expected.name} makes {model}: "
                         "they come from another encoder; extract them again with this model")


def clip_saliency(curve: np.ndarray, timestamps: np.ndarray, duration: float,
                  clip_seconds: float = CLIP_SECONDS) -> np.ndarray:
    """Per-clip saliency: the mean of ``curve`` over the frames inside each ``clip_seconds`` clip.

    Clip i covers ``[i * clip_seconds, (i + 1) * clip_seconds)``; there are
    ``ceil(duration / clip_seconds)`` clips (QVHighlights: 75 for 150 s). A clip with no frame inside takes
    the curve linearly interpolated at its centre, so sparse sampling still gives a score per clip.

    Args:
        curve: (T,) similarity of the query.
        timestamps: (T,) frame times in seconds, increasing.
        duration: Video duration in seconds.
        clip_seconds: Clip length.

    Returns:
        (n_clips,) float64 scores.
    """
    values = np.asarray(curve, dtype=np.float64)
    times = np.asarray(timestamps, dtype=np.float64)
    if values.ndim != 1 or values.shape != times.shape or values.size == 0:
        raise InputError(f"saliency needs a curve and timestamps of one shape, got {values.shape}, "
                         f"{times.shape}")
    n_clips = max(1, int(np.ceil(float(duration) / clip_seconds - 1e-9)))
    index = np.clip(np.floor(times / clip_seconds).astype(np.int64), 0, n_clips - 1)
    sums = np.bincount(index, weights=values, minlength=n_clips)
    counts = np.bincount(index, minlength=n_clips)
    centres = (np.arange(n_clips) + 0.5) * clip_seconds
    filled = np.interp(centres, times, values)
    return np.where(counts > 0, sums / np.maximum(counts, 1), filled)


def _group_by_video(queries: Sequence[GroundingQuery]) -> dict[str, list[GroundingQuery]]:
    groups: dict[str, list[GroundingQuery]] = {}
    for query in queries:
        groups.setdefault(query.vid, []).append(query)
    return groups


def prediction_qid(qid: str, dataset: str) -> Any:
    """The qid a prediction line carries: an int for QVHighlights (its standard evaluation matches ints)."""
    return int(qid) if dataset == "qvhighlights" and qid.isdigit() else qid


def evaluate(
    dataset: str,
    annotations: str | os.PathLike[str],
    features_dir: str | os.PathLike[str],
    *,
    feature_format: str = "tfvtg",
    llm_outputs: str | os.PathLike[str] | None = None,
    profile: str = "default",
    method: str = "tfvtg",
    model: str = DEFAULT_ENCODER,
    device: str = "auto",
    dtype: str | None = None,
    grounder: Grounder | None = None,
    limit: int | None = None,
    skip_missing: bool = False,
    skip_bad: bool = False,
    top_k: int | None = None,
    split: str = "default",
    seed: int | None = None,
    progress: bool = True,
    on_prediction: Callable[[dict[str, Any]], None] | None = None,
) -> EvaluationReport:
    """Ground every query of a benchmark split from feature files and score the predictions.

    Args:
        dataset: ``charades-sta``, ``activitynet`` or ``qvhighlights`` (also picks the method's preset).
        annotations: The split's annotation file (TFVTG JSON, or QVHighlights JSON lines).
        features_dir: Directory of one feature file per video, named by the video id.
        feature_format: ``"tfvtg"`` (files written by ``tfvtg extract``) or ``"tfvtg-npy"`` (the official
            code's ``<vid>.npy`` (T, 32, 256) float16 arrays).
        llm_outputs: TFVTG ``llm_outputs.json`` with the LLM's decompositions (the full method); ``None`` runs
            the VLM-only flow unless the annotation file itself carries ``response`` lists.
        profile: ``"default"`` or ``"reference"`` (the official code's decisions).
        method: The localiser, ``"tfvtg"`` or ``"tag"`` (TAG; its reported setting is without LLM outputs).
        model: Encoder for the text side (must match the features' encoder).
        device: Torch device for the text encoder.
        dtype: Compute dtype of the text encoder.
        grounder: Use this `Grounder` instead of building one (its profile, method and preset are used as they
            are).
        limit: Evaluate only the first ``limit`` queries (in annotation order).
        skip_missing: Skip videos without a feature file (counted in the report) instead of failing.
        skip_bad: Skip videos whose feature file cannot be used (damaged, another model's or another video's,
            non-finite values; counted and named in the report) instead of failing.
        top_k: Windows per prediction (default 5; 7 for QVHighlights, as the official code writes).
        split: ``"default"``, or ``"ood-1"`` / ``"ood-2"``: noise features prepended to every video and the
            spans shifted (`tfvtg.splits`); predictions and metrics are then in the padded videos' time.
        seed: Seed of the OOD noise (default `tfvtg.splits.DEFAULT_SEED`), recorded in the report's meta
            and in every prediction.
        progress: Progress bar on stderr.
        on_prediction: Called with each prediction record as soon as it exists.

    Returns:
        An `EvaluationReport`.

    Raises:
        InputError: Unknown dataset or format, unreadable annotations, missing feature files (unless
            ``skip_missing``), unusable ones (unless ``skip_bad``; the file is named), no query left.
    """
    from tfvtg.datasets import attach_llm_answers, load_dataset, load_llm_outputs
    from tfvtg.decompose import Decomposition
    from tfvtg.grounder import Grounder
    from tfvtg.splits import DEFAULT_SEED, pad_features, pad_seconds, shift_query, video_rng

    started = time.perf_counter()
    if dataset not in DATASET_PRESETS:
        raise InputError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASET_PRESETS)}")
    if feature_format not in FEATURE_FORMATS:
        raise InputError(f"unknown feature format {feature_format!r}; "
                         f"choose one of {', '.join(FEATURE_FORMATS)}")
    features_dir = Path(features_dir).expanduser()
    if not features_dir.is_dir():
        raise InputError(f"features directory not found: {features_dir}")
    if limit is not None and limit < 1:
        raise InputError(f"limit must be at least 1, got {limit}")
    pad = pad_seconds(dataset, split)
    seed = DEFAULT_SEED if seed is None else seed
    queries = load_dataset(dataset, annotations)
    if llm_outputs is not None:
        if dataset == "qvhighlights":
            raise InputError("--llm-outputs is for TFVTG-format datasets (charades-sta, activitynet); "
                             "QVHighlights is evaluated VLM-only, as the official code does")
        queries = attach_llm_answers(queries, load_llm_outputs(llm_outputs))
    if limit is not None:
        queries = queries[:limit]
    if not queries:
        raise InputError(f"{Path(annotations).name}: no query to evaluate")
    with_llm = any(q.llm_answer is not None for q in queries)
    flow = "full" if with_llm else "vlm-only"
    top_k = top_k or (7 if dataset == "qvhighlights" else 5)

    by_video = _group_by_video(queries)
    paths = {vid: feature_path(features_dir, vid, feature_format) for vid in by_video}
    missing = [vid for vid, path in paths.items() if not path.is_file()]
    if missing and not skip_missing:
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise InputError(f"no feature file for {len(missing)} of {len(by_video)} videos in {features_dir} "
                         f"({shown}; expected {paths[missing[0]].name}); run `tfvtg extract` for them or "
                         f"pass --skip-missing")
    skipped = sum(len(by_video.pop(vid)) for vid in missing)
    if not by_video:
        raise InputError(f"none of the {len(missing)} videos has a feature file in {features_dir}")
    if missing:
        log.warning("skipping %d queries of %d videos with no feature file in %s", skipped, len(missing),
                    features_dir)

    # Headers only, before the text encoder is loaded: a bad file is reported in milliseconds, not minutes.
    vids = list(by_video)
    durations = [by_video[vid][0].duration for vid in vids]
    if skip_bad:
        problems = feature_file_problems([paths[vid] for vid in vids], feature_format, model=model,
                                         grounder=grounder, durations=durations)
        bad = {vid: problems[paths[vid]] for vid in vids if paths[vid] in problems}
    else:
        try:
            check_feature_files([paths[vid] for vid in vids], feature_format, model=model, grounder=grounder,
                                durations=durations)
        except InputError as exc:
            raise InputError(f"{exc}; pass --skip-bad to skip such videos") from None
        bad = {}
    skipped += _skip_bad(by_video, bad)
    if not by_video:
        raise InputError(f"none of the {len(bad)} feature files in {features_dir} can be used")
    if feature_format == "tfvtg" and (grounder.profile if grounder is not None else profile) == "reference":
        warn_unofficial_precision([paths[vid] for vid in by_video])
    if grounder is None:
        grounder = Grounder(model, device=device, dtype=dtype, profile=profile, method=method,
                            preset=DATASET_PRESETS[dataset], llm="none", use_cache=False, progress=False)
    load_started = time.perf_counter()
    grounder.encoder  # noqa: B018 (loaded now, so that its time is reported apart from the run's)
    load_seconds = time.perf_counter() - load_started
    decompositions = {q.qid: Decomposition.from_tfvtg(q.llm_answer, q.query) if with_llm else None
                      for video_queries in by_video.values() for q in video_queries}
    _encode_texts(grounder, by_video, decompositions, progress)
    position = {q.qid: i for i, q in enumerate(queries)}
    padding = {"split": split, "pad_seconds": pad, "seed": seed} if pad else {}
    predictions: list[tuple[int, dict[str, Any]]] = []
    n_total = sum(len(v) for v in by_video.values())
    bar = _progress_bar(n_total, progress)
    try:
        for vid, video_queries in list(by_video.items()):
            try:
                features = load_video_features(paths[vid], feature_format, video_queries[0].duration)
            except InputError as exc:
                if not skip_bad:
                    raise InputError(f"{exc}; pass --skip-bad to skip such videos") from exc
                skipped += _skip_bad(by_video, {vid: str(exc)}, bad)
                if bar is not None:
                    bar.total -= len(video_queries)
                    bar.refresh()
                continue
            features = pad_features(features, pad, video_rng(seed, vid))
            grounder.similarity_curves(features, _video_texts(video_queries, decompositions))  # one pass
            for query in video_queries:
                decomposition = decompositions[query.qid]
                try:
                    result = grounder.ground_details(features, query.query, top_k=top_k,
                                                     decomposition=decomposition)
                except InputError as exc:  # say which query of the file it was
                    raise InputError(f"query {query.qid} of video {vid}: {exc}") from exc
                record = prediction_line(query.query, result.moments, query.duration + pad,
                                         qid=prediction_qid(query.qid, dataset), vid=vid,
                                         method=result.method, localizer=grounder.method, **padding)
                if with_llm:
                    record["relationship"] = decomposition.relation
                if dataset == "qvhighlights":
                    saliency = clip_saliency(result.query_curve, result.timestamps, query.duration)
                    record["pred_saliency_scores"] = [round(float(s), 4) for s in saliency]
                predictions.append((position[query.qid], record))
                if on_prediction is not None:
                    on_prediction(record)
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()

    # Back to annotation order (a QVHighlights video's queries need not be adjacent in the file).
    predictions.sort(key=lambda item: item[0])
    records = [record for _, record in predictions]
    evaluated = [shift_query(q, pad) for q in queries if q.vid in by_video]
    if not evaluated:
        raise InputError(f"none of the {len(bad)} feature files in {features_dir} can be used")
    metrics = score_predictions(dataset, records, evaluated)
    return EvaluationReport(
        dataset=dataset, predictions=records, metrics=metrics, n_queries=len(records),
        n_videos=len(by_video), missing_videos=missing, skipped_queries=skipped,
        seconds=time.perf_counter() - started - load_seconds, method=flow,
        meta={"profile": grounder.profile, "localizer": grounder.method, "preset": grounder.preset,
              "model": grounder.model,
              "feature_format": feature_format, "top_k": top_k, "split": split,
              **({"pad_seconds": pad, "seed": seed} if pad else {})},
        bad_videos=bad, load_seconds=load_seconds,
    )


def _skip_bad(by_video: dict[str, list[GroundingQuery]], found: dict[str, str],
              into: dict[str, str] | None = None) -> int:
    """Drop the videos in ``found`` (id -> why) from ``by_video``, warning for each; return their queries.

    ``into``, when given, records them (the report's ``bad_videos``).
    """
    dropped = 0
    for vid, why in found.items():
        n = len(by_video.pop(vid))
        dropped += n
        if into is not None:
            into[vid] = why
        log.warning("skipping video %s (queries: %d): %s", vid, n, why)
    return dropped


def _video_texts(video_queries: Sequence[GroundingQuery], decompositions: dict[str, Any]) -> list[str]:
    """Every description the pipeline localises for a video's queries."""
    from tfvtg.pipeline import descriptions_for

    return list(dict.fromkeys(
        text for q in video_queries for text in descriptions_for(q.query, decompositions[q.qid])
    ))


def _encode_texts(grounder: Grounder, by_video: dict[str, list[GroundingQuery]],
                  decompositions: dict[str, Any], progress: bool) -> None:
    """Encode every distinct description of the split up front, in large batches (one call per batch)."""
    from tfvtg.grounder import TEXT_BATCH

    ordered = list(dict.fromkeys(
        text for video_queries in by_video.values() for text in _video_texts(video_queries, decompositions)
    ))
    bar = _progress_bar(len(ordered), progress, unit="text", desc="encoding texts")
    try:
        for i in range(0, len(ordered), TEXT_BATCH):
            chunk = ordered[i : i + TEXT_BATCH]
            grounder.text_features(chunk)
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()


def score_predictions(dataset: str, predictions: Sequence[dict[str, Any]],
                      queries: Sequence[GroundingQuery]) -> dict[str, float]:
    """The benchmark's metrics for ``predictions`` (aligned with ``queries``); ``{}`` without ground truth.

    QVHighlights gets Moment-DETR's full set: moment retrieval over all windows (``R1@0.5`` ... ``n``),
    the highlight metrics when the annotations carry saliency and the predictions ``pred_saliency_scores``
    (NumPro's answers have none), and moment retrieval per ground-truth length
    bucket (``MR-short-mAP`` ... ``MR-long-n``; see `tfvtg.metrics.qvhighlights_mr_length_metrics`; a bucket
    with no query has only its ``n`` of 0). An unannotated split (QVHighlights test) has nothing to score
    against: its predictions are the product.
    """
    from tfvtg import metrics

    if not any(q.windows for q in queries):
        log.info("the annotations hold no ground-truth windows (a test split?): predictions only, no metrics")
        return {}
    if dataset == "qvhighlights":
        scores = dict(metrics.qvhighlights_mr_metrics(predictions, queries))
        if any(q.saliency_scores for q in queries) and all("pred_saliency_scores" in p for p in predictions):
            scores.update(metrics.qvhighlights_hl_metrics(predictions, queries))
        scores.update(metrics.qvhighlights_mr_length_metrics(predictions, queries))
        return scores
    preds = [p["pred_relevant_windows"][0][:2] if p["pred_relevant_windows"] else None for p in predictions]
    return dict(metrics.grounding_metrics(preds, [q.window for q in queries]))


def _progress_bar(total: int, enabled: bool, unit: str = "query", desc: str = "grounding") -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, desc=desc, leave=False, dynamic_ncols=True)
