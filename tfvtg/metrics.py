"""Evaluation metrics of video temporal grounding (numpy only).

* Charades-STA / ActivityNet Captions (as TFVTG and NumPro report them): R1@IoU 0.3/0.5/0.7 and mIoU, in
  percent, averaged over queries (not videos).
* QVHighlights moment retrieval, as the standard Moment-DETR evaluation (``eval_submission``) defines it:
  R1@0.5/0.7 of the first predicted window against the best-matching ground-truth window, and mAP at IoU 0.5,
  0.75 and averaged over 0.5:0.05:0.95.
* QVHighlights highlight detection ("HL-min-VeryGood"): mAP and HIT@1 of per-clip saliency predictions against
  the annotators' binary labels (saliency >= 4).

Everything is written from the definitions; the docstrings state each one, including the edge cases the
reference scripts leave undefined (they produce NaN or crash there; here they are 0 or an `InputError`).
Values are full-precision floats; the reference scripts round to 2 decimals, `format_metrics` does the same
for display.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tfvtg.errors import InputError

__all__ = [
    "temporal_iou",
    "recall_at_iou",
    "grounding_ious",
    "grounding_metrics",
    "average_precision_detection",
    "saliency_average_precision",
    "qvhighlights_mr_metrics",
    "qvhighlights_mr_length_metrics",
    "qvhighlights_hl_metrics",
    "format_metrics",
    "MR_IOU_THRESHOLDS",
    "MR_LENGTH_RANGES",
]

# The Moment-DETR mAP thresholds 0.5:0.05:0.95, rounded to 2 decimals as its evaluation does.
MR_IOU_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
# Moment-DETR's ground-truth window length buckets in seconds, each (min, max]: min < end - start <= max.
MR_LENGTH_RANGES: dict[str, tuple[float, float]] = {
    "short": (0.0, 10.0),
    "middle": (10.0, 30.0),
    "long": (30.0, 150.0),
}
_SALIENCY_NAMES = {2: "Fair", 3: "Good", 4: "VeryGood"}


# ------------------------------------------------------------------------------------------------ IoU


def temporal_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Temporal IoU of paired spans: ``[min(e) - max(s)]+ / (max(e) - min(s))``.

    For overlapping spans the denominator is the union; for disjoint spans the intersection is 0, so the value
    equals the usual ``inter / (len_a + len_b - inter)`` everywhere: the TFVTG and Moment-DETR formulas agree.

    Degenerate spans are defined as IoU 0 (never NaN): a zero-length or reversed span (end <= start) on either
    side gives 0, so two identical zero-length spans (0/0 in the reference scripts) score 0.

    Args:
        pred: (N, 2) or (2,) [start, end] spans.
        gt: (N, 2) spans paired with ``pred``, or one (2,) span compared with every prediction.

    Returns:
        (N,) float64 IoU in [0, 1] (a scalar array for a single pair).

    Raises:
        InputError: wrong shapes or a non-finite value.
    """
    p = np.asarray(pred, dtype=np.float64)
    g = np.asarray(gt, dtype=np.float64)
    if p.shape[-1:] != (2,) or p.ndim > 2:
        raise InputError(f"temporal_iou: predictions must have shape (N, 2) or (2,), got {p.shape}")
    if g.shape[-1:] != (2,) or g.ndim > 2 or (g.ndim == 2 and p.ndim == 2 and g.shape[0] != p.shape[0]):
        raise InputError(f"temporal_iou: ground truth must have shape (2,) or {p.shape}, got {g.shape}")
    if not (np.isfinite(p).all() and np.isfinite(g).all()):
        raise InputError("temporal_iou: spans must be finite (found NaN or inf)")
    ps, pe = p[..., 0], p[..., 1]
    gs, ge = g[..., 0], g[..., 1]
    inter = np.minimum(pe, ge) - np.maximum(ps, gs)
    hull = np.maximum(pe, ge) - np.minimum(ps, gs)
    valid = (pe > ps) & (ge > gs) & (inter > 0)
    return np.where(valid, np.clip(inter, 0.0, None) / np.where(valid, hull, 1.0), 0.0)


def _cross_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(N, M) IoU of every prediction with every ground-truth span (same definition as `temporal_iou`)."""
    n, m = len(pred), len(gt)
    return temporal_iou(np.repeat(pred, m, axis=0), np.tile(gt, (n, 1))).reshape(n, m)


# ---------------------------------------------------------------------------- Charades-STA / ActivityNet


def recall_at_iou(ious: Sequence[float] | np.ndarray, thresholds: Sequence[float] = (0.3, 0.5, 0.7)) -> dict:
    """Percentage of queries whose top-1 IoU is >= each threshold: ``{"R1@0.3": ..., ...}``.

    Raises:
        InputError: no IoU values, or a NaN among them.
    """
    values = np.asarray(ious, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise InputError("recall_at_iou: no queries to evaluate")
    if np.isnan(values).any():
        raise InputError("recall_at_iou: IoU values contain NaN")
    return {f"R1@{t:g}": float(100.0 * np.mean(values >= t)) for t in thresholds}


def grounding_ious(preds: Sequence[Any], gts: Sequence[Any]) -> np.ndarray:
    """Per-query IoU of the top-1 prediction with the ground truth; a None prediction counts as IoU 0.

    Spans are ``(start, end)`` pairs (a third item, the score, is ignored) or objects with ``.start`` and
    ``.end`` such as `tfvtg.Moment`.

    Raises:
        InputError: different numbers of predictions and ground-truth spans, or a malformed span.
    """
    if len(preds) != len(gts):
        raise InputError(f"grounding metrics: {len(preds)} predictions but {len(gts)} ground-truth spans")
    missing = np.array([p is None for p in preds], dtype=bool)
    pred = np.array([(0.0, 0.0) if p is None else _pair(p, f"prediction {i}") for i, p in enumerate(preds)])
    gt = np.array([_pair(g, f"ground truth {i}") for i, g in enumerate(gts)])
    ious = temporal_iou(pred.reshape(-1, 2), gt.reshape(-1, 2)) if len(gt) else np.zeros(0)
    ious[missing] = 0.0
    return ious


def _pair(span: Any, what: str) -> tuple[float, float]:
    try:
        if hasattr(span, "start") and hasattr(span, "end"):
            return float(span.start), float(span.end)
        start, end = tuple(span)[:2]
        return float(start), float(end)
    except (TypeError, ValueError):
        raise InputError(f"{what} is not a (start, end) span: {span!r}") from None


def grounding_metrics(
    preds: Sequence[Any],
    gts: Sequence[Any],
    thresholds: Sequence[float] = (0.3, 0.5, 0.7),
) -> dict[str, float | int]:
    """R1@IoU and mIoU of top-1 predictions, as TFVTG's and NumPro's evaluations report them.

    ``preds`` are top-1 spans: ``(start, end)`` pairs, `tfvtg.Moment` objects or None; ``gts`` are
    ``(start, end)`` pairs. Each query counts once (averages over queries, not videos). A None prediction
    (e.g. an MLLM answer that could not be parsed) counts as IoU 0. The IoU is clipped at 0 (the official
    TFVTG code clips only for the mIoU; the thresholds are all positive, so R1 is the same either way). Ground
    truth is used as annotated, including ends past the video's duration.

    Returns:
        ``{"R1@0.3", "R1@0.5", "R1@0.7", "mIoU"}`` in percent and ``"n"``, the number of queries.

    Raises:
        InputError: no queries, mismatched lengths, malformed or non-finite spans.
    """
    ious = grounding_ious(preds, gts)
    metrics: dict[str, float | int] = dict(recall_at_iou(ious, thresholds))
    metrics["mIoU"] = float(100.0 * ious.mean())
    metrics["n"] = int(ious.size)
    return metrics


# ------------------------------------------------------------------------------- QVHighlights: retrieval


def average_precision_detection(
    windows: np.ndarray,
    scores: np.ndarray,
    gt_windows: np.ndarray,
    thresholds: Sequence[float] = MR_IOU_THRESHOLDS,
) -> np.ndarray:
    """Average precision of one query's scored windows against its ground-truth windows, per IoU threshold.

    The ActivityNet/Moment-DETR detection AP: predictions are visited by decreasing score (ties keep their
    order). At each threshold a prediction is a true positive when some ground-truth window not yet taken has
    IoU >= threshold with it; it takes the one with the highest IoU (ties: the later one in the list, as the
    reference's reversed argsort does). Otherwise, e.g. a duplicate of an already matched detection, it is a
    false positive. With precision and recall after each prediction, AP is the VOC (2010+) interpolated area:
    ``sum over recall steps of (step) * max(precision at this or any higher recall)``, recall running to 1.

    Defined edge cases: no predictions gives 0 (as the reference); no ground-truth window gives 0 (the
    reference divides by zero and returns NaN).

    Args:
        windows: (N, 2) predicted spans.
        scores: (N,) their confidences.
        gt_windows: (M, 2) ground-truth spans.
        thresholds: IoU thresholds.

    Returns:
        (len(thresholds),) AP values in [0, 1].
    """
    thr = np.asarray(thresholds, dtype=np.float64)
    windows = np.asarray(windows, dtype=np.float64).reshape(-1, 2)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    gt_windows = np.asarray(gt_windows, dtype=np.float64).reshape(-1, 2)
    if len(scores) != len(windows):
        raise InputError(f"average precision: {len(windows)} windows but {len(scores)} scores")
    if not np.isfinite(scores).all():
        raise InputError("average precision: scores must be finite (found NaN or inf)")
    n, m = len(windows), len(gt_windows)
    if n == 0 or m == 0:
        return np.zeros(len(thr))
    order = np.argsort(-scores, kind="stable")
    ious = _cross_iou(windows[order], gt_windows)  # (N, M)
    taken = np.zeros((len(thr), m), dtype=bool)
    tp = np.zeros((len(thr), n))
    rows = np.arange(len(thr))
    for k in range(n):
        # Highest IoU first; among equal IoUs the higher index first (a stable ascending sort, reversed).
        gt_order = np.argsort(ious[k], kind="stable")[::-1]
        ok = (ious[k][gt_order][None, :] >= thr[:, None]) & ~taken[:, gt_order]
        hit = ok.any(axis=1)
        first = gt_order[ok.argmax(axis=1)]
        tp[hit, k] = 1.0
        taken[rows[hit], first[hit]] = True
    tp_cum = np.cumsum(tp, axis=1)
    precision = tp_cum / np.arange(1, n + 1)
    recall = tp_cum / m
    return np.array([_interpolated_ap(precision[i], recall[i]) for i in range(len(thr))])


def _interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC interpolated AP: area under the precision envelope, recall padded to [0, 1] (precision 0 after)."""
    prec = np.concatenate(([0.0], precision, [0.0]))
    rec = np.concatenate(([0.0], recall, [1.0]))
    envelope = np.maximum.accumulate(prec[::-1])[::-1]
    steps = np.flatnonzero(rec[1:] != rec[:-1]) + 1
    return float(np.sum((rec[steps] - rec[steps - 1]) * envelope[steps]))


def qvhighlights_mr_metrics(
    preds: Sequence[Mapping[str, Any]],
    gts: Sequence[Any],
    *,
    require_all: bool = True,
    max_pred_windows: int | None = 10,
    length_range: tuple[float, float] | None = None,
) -> dict[str, float | int]:
    """QVHighlights moment-retrieval metrics, as Moment-DETR's standard evaluation defines them ("MR-full").

    * R1@0.5 / R1@0.7: the first window of ``pred_relevant_windows`` (the list is expected sorted by score, as
      the prediction format requires) is compared with every ground-truth window; the query counts when the
      best IoU reaches the threshold. An empty prediction list counts as a miss.
    * mAP@0.5, mAP@0.75 and mAP (the mean over IoU 0.5:0.05:0.95): per query, the first ``max_pred_windows``
      (10) windows in list order are scored with `average_precision_detection` against all of the query's
      ground-truth windows; AP is averaged over queries.

    With ``length_range=(lo, hi)`` the same metrics are computed on one ground-truth length bucket, as the
    reference's ``get_data_by_range`` does: each query keeps only its windows of length ``lo < end - start <=
    hi`` seconds, queries left with none are dropped, and both R1 (best IoU over the kept windows) and AP use
    the kept windows only. `qvhighlights_mr_length_metrics` reports the standard buckets.

    Args:
        preds: prediction lines ``{"qid", "pred_relevant_windows": [[start, end, score], ...]}``.
        gts: `GroundingQuery` objects or raw QVHighlights records (``qid``, ``relevant_windows``); qids are
            matched as strings.
        require_all: every ground-truth query must have a prediction and every prediction a ground truth. With
            False, only the shared qids are evaluated (Moment-DETR's ``match_number=False``). Checked on the
            whole sets, before any length filtering.
        max_pred_windows: windows per query used for mAP (None: all). With 10, a query with more than 10
            ground-truth windows cannot reach AP 1 (14 such queries in the val split), as in the reference.
        length_range: ``(lo, hi)`` in seconds, the bucket ``(lo, hi]`` of ground-truth window lengths; None
            keeps every window (the reference's "full" range [0, 150], which it never filters; an explicit
            ``(0, 150)`` here does filter, dropping windows of length 0 or over 150 s).

    Returns:
        ``{"R1@0.5", "R1@0.7", "mAP@0.5", "mAP@0.75", "mAP"}`` in percent and ``"n"``, the queries scored.

    Raises:
        InputError: malformed predictions, a duplicate qid, a ground-truth query without windows, mismatched
            qids when ``require_all``, nothing to evaluate, or no query in ``length_range``.
    """
    pred_by_qid, gt_windows, qids = _mr_inputs(preds, gts, require_all)
    if length_range is not None:
        lo, hi = _length_range(length_range)
        gt_windows, qids = _in_length_range(gt_windows, qids, lo, hi)
        if not qids:
            raise InputError(f"no ground-truth window has a length in ({lo:g}, {hi:g}] s: nothing to score")
    return _mr_scores(pred_by_qid, gt_windows, qids, max_pred_windows)


def qvhighlights_mr_length_metrics(
    preds: Sequence[Mapping[str, Any]],
    gts: Sequence[Any],
    *,
    require_all: bool = True,
    max_pred_windows: int | None = 10,
    ranges: Mapping[str, tuple[float, float]] = MR_LENGTH_RANGES,
) -> dict[str, float | int]:
    """`qvhighlights_mr_metrics` per ground-truth window length bucket, as Moment-DETR's evaluation reports.

    The standard buckets are short (0, 10], middle (10, 30] and long (30, 150] seconds (`MR_LENGTH_RANGES`);
    the reference's fourth, "full", filters nothing and is `qvhighlights_mr_metrics` itself. A query with
    windows in two buckets counts in both, each time with only that bucket's windows.

    Returns:
        For each bucket ``name``: ``"MR-<name>-R1@0.5"``, ``-R1@0.7``, ``-mAP@0.5``, ``-mAP@0.75``, ``-mAP``
        (percent) and ``"MR-<name>-n"``, its number of queries. A bucket with no query has only
        ``"MR-<name>-n": 0`` (the reference returns NaN there).

    Raises:
        InputError: as `qvhighlights_mr_metrics` (the qid match is checked on the whole sets), or a bad range.
    """
    pred_by_qid, gt_windows, qids = _mr_inputs(preds, gts, require_all)
    out: dict[str, float | int] = {}
    for name, length_range in ranges.items():
        lo, hi = _length_range(length_range)
        kept, bucket = _in_length_range(gt_windows, qids, lo, hi)
        if bucket:
            scores = _mr_scores(pred_by_qid, kept, bucket, max_pred_windows)
            out.update({f"MR-{name}-{key}": value for key, value in scores.items() if key != "n"})
        out[f"MR-{name}-n"] = len(bucket)
    return out


def _mr_inputs(
    preds: Sequence[Mapping[str, Any]], gts: Sequence[Any], require_all: bool
) -> tuple[dict[str, Mapping[str, Any]], dict[str, np.ndarray], list[str]]:
    """Predictions and ground-truth windows by qid, and the qids to score (each with a window)."""
    gt_windows = {qid: _gt_windows(g, qid) for qid, g in _gts_by_qid(gts).items()}
    pred_by_qid = _preds_by_qid(preds, "pred_relevant_windows")
    qids = _shared_qids(pred_by_qid, gt_windows, require_all)
    for qid in qids:
        if len(gt_windows[qid]) == 0:
            raise InputError(f"QVHighlights query {qid} has no relevant_windows: it cannot be scored")
    return pred_by_qid, gt_windows, qids


def _length_range(length_range: tuple[float, float]) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in length_range)
    except (TypeError, ValueError):
        raise InputError(f"a length range is (min, max) seconds, got {length_range!r}") from None
    if not (lo < hi):
        raise InputError(f"a length range needs min < max, got ({lo:g}, {hi:g})")
    return lo, hi


def _in_length_range(
    gt_windows: Mapping[str, np.ndarray], qids: Sequence[str], lo: float, hi: float
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Each query's windows of length in (lo, hi], and the queries that keep at least one."""
    kept = {}
    for qid in qids:
        windows = gt_windows[qid]
        length = windows[:, 1] - windows[:, 0]
        inside = windows[(length > lo) & (length <= hi)]
        if len(inside):
            kept[qid] = inside
    return kept, list(kept)


def _mr_scores(
    pred_by_qid: Mapping[str, Mapping[str, Any]],
    gt_windows: Mapping[str, np.ndarray],
    qids: Sequence[str],
    max_pred_windows: int | None,
) -> dict[str, float | int]:
    """R1 and mAP over ``qids`` (each with at least one ground-truth window)."""
    r1_ious = np.zeros(len(qids))
    ap = np.zeros((len(qids), len(MR_IOU_THRESHOLDS)))
    for i, qid in enumerate(qids):
        pred = _pred_windows(pred_by_qid[qid], qid)
        gt = gt_windows[qid]
        if len(pred):
            r1_ious[i] = _cross_iou(pred[:1, :2], gt).max()
        top = pred[:max_pred_windows]
        ap[i] = average_precision_detection(top[:, :2], top[:, 2], gt, MR_IOU_THRESHOLDS)
    ap_by_thr = ap.mean(axis=0)
    return {
        **{f"R1@{t:g}": float(100.0 * np.mean(r1_ious >= t)) for t in (0.5, 0.7)},
        "mAP@0.5": float(100.0 * ap_by_thr[MR_IOU_THRESHOLDS.index(0.5)]),
        "mAP@0.75": float(100.0 * ap_by_thr[MR_IOU_THRESHOLDS.index(0.75)]),
        "mAP": float(100.0 * ap_by_thr.mean()),
        "n": len(qids),
    }


# ------------------------------------------------------------------------------- QVHighlights: highlights


def saliency_average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Interpolated AP of per-clip scores against binary labels, as Moment-DETR's highlight evaluation does.

    Clips are ranked by decreasing score; clips with equal scores form one threshold (they enter together).
    Precision is interpolated (the maximum precision at this or any lower threshold) and averaged over the
    thresholds at which recall increases. All-negative labels give 0, all-positive labels give 1 (the
    reference's conventions).
    """
    y = np.asarray(labels).astype(bool).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(y) != len(s):
        raise InputError(f"saliency AP: {len(y)} labels but {len(s)} scores")
    positives = int(y.sum())
    if positives == 0:
        return 0.0
    if positives == len(y):
        return 1.0
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    group_ends = np.concatenate((np.flatnonzero(s[1:] != s[:-1]), [len(s) - 1]))
    tp = np.cumsum(y)[group_ends]
    precision = tp / (group_ends + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    recall_steps = np.diff(np.concatenate(([0], tp))) > 0
    return float(envelope[recall_steps].mean())


def qvhighlights_hl_metrics(
    preds: Sequence[Mapping[str, Any]],
    gts: Sequence[Any],
    *,
    min_score: int = 4,
    clip_length: float = 2.0,
    require_all: bool = True,
) -> dict[str, float | int]:
    """QVHighlights highlight-detection metrics ("HL-min-VeryGood" by default), as Moment-DETR defines them.

    The video is cut into ``int(duration / clip_length)`` clips. Each of the 3 annotators' saliency scores
    gives a binary label per clip: 1 when the clip is relevant and the annotator's score >= ``min_score`` (4 =
    "VeryGood"), else 0. The prediction's ``pred_saliency_scores`` (one per clip) are cut or zero-padded to
    the clip count.

    * mAP: `saliency_average_precision` of the scores against each annotator's labels, averaged over the 3
      annotators and then over queries (not a min or a vote over annotators).
    * HIT@1: the clip with the highest predicted score (the first on ties) is a hit when at least one
      annotator labels it positive (max over annotators), averaged over queries; a clip beyond the video is a
      miss.

    Args:
        preds: prediction lines with ``"qid"`` and ``"pred_saliency_scores"``.
        gts: `GroundingQuery` objects or raw QVHighlights records with ``duration``, ``relevant_clip_ids`` and
            ``saliency_scores``.
        min_score: saliency threshold (2 "Fair", 3 "Good", 4 "VeryGood").
        clip_length: seconds per clip.
        require_all: as in `qvhighlights_mr_metrics`.

    Returns:
        ``{"HL-min-<name>-mAP", "HL-min-<name>-HIT1"}`` in percent and ``"n"``.

    Raises:
        InputError: malformed predictions or annotations, a clip id beyond the video, mismatched qids when
            ``require_all``.
    """
    gts_by_qid = _gts_by_qid(gts)
    pred_by_qid = _preds_by_qid(preds, "pred_saliency_scores")
    qids = _shared_qids(pred_by_qid, gts_by_qid, require_all)
    ap = np.zeros(len(qids))
    hits = np.zeros(len(qids))
    for i, qid in enumerate(qids):
        labels = _binary_saliency(gts_by_qid[qid], qid, min_score, clip_length)  # (clips, annotators)
        scores = _pred_saliency(pred_by_qid[qid], qid)
        if len(scores):
            top = int(np.argmax(scores))
            hits[i] = float(top < len(labels) and labels[top].any())
        fitted = np.zeros(len(labels))
        fitted[: min(len(labels), len(scores))] = scores[: len(labels)]
        ap[i] = np.mean([saliency_average_precision(labels[:, a], fitted) for a in range(labels.shape[1])])
    name = _SALIENCY_NAMES.get(min_score, str(min_score))
    return {
        f"HL-min-{name}-mAP": float(100.0 * ap.mean()),
        f"HL-min-{name}-HIT1": float(100.0 * hits.mean()),
        "n": len(qids),
    }


# ---------------------------------------------------------------------------------------------- display


def format_metrics(metrics: Mapping[str, Any]) -> str:
    """An aligned table (names, values) for the command line; floats with 2 decimals.

    Length-bucket metrics (``MR-<bucket>-<name>``, from `qvhighlights_mr_length_metrics`) follow as a second
    table with one row per bucket; a bucket with no query shows ``-`` for its metrics.
    """
    buckets: dict[str, dict[str, Any]] = {}
    plain: dict[str, Any] = {}
    for key, value in metrics.items():
        match = _BUCKET_KEY.match(key)
        if match:
            buckets.setdefault(match["bucket"], {})[match["name"]] = value
        else:
            plain[key] = value
    parts = [_table(list(plain), [[_cell(v) for v in plain.values()]])] if plain else []
    if buckets:
        columns = list(dict.fromkeys(name for row in buckets.values() for name in row))
        columns.sort(key=lambda name: name == "n")  # n last, as in the main table
        rows = [[_bucket_label(bucket)] + [_cell(row[c]) if c in row else "-" for c in columns]
                for bucket, row in buckets.items()]
        parts.append(_table(["length (s)", *columns], rows, left_first=True))
    return "\n".join(parts)


_BUCKET_KEY = re.compile(r"^MR-(?P<bucket>[A-Za-z]+)-(?P<name>.+)$")


def _bucket_label(bucket: str) -> str:
    if bucket in MR_LENGTH_RANGES:
        lo, hi = MR_LENGTH_RANGES[bucket]
        return f"{bucket} ({lo:g}, {hi:g}]"
    return bucket


def _cell(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.2f}"
    return str(value)


def _table(names: list[str], rows: list[list[str]], left_first: bool = False) -> str:
    widths = [max(len(c) for c in column) for column in zip(names, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if left_first and i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    return "\n".join(line(cells) for cells in [names, *rows])


# ------------------------------------------------------------------------------------------------ helpers


def _field(record: Any, key: str, default: Any = None) -> Any:
    if isinstance(record, Mapping):
        return record.get(key, default)
    return getattr(record, key, default)


def _gts_by_qid(gts: Sequence[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, g in enumerate(gts):
        qid = _field(g, "qid")
        if qid is None:
            raise InputError(f"ground truth {i} has no qid")
        qid = str(qid)
        if qid in out:
            raise InputError(f"ground truth has a duplicate qid {qid}")
        out[qid] = g
    return out


def _preds_by_qid(preds: Sequence[Mapping[str, Any]], key: str) -> dict[str, Mapping[str, Any]]:
    out: dict[str, Mapping[str, Any]] = {}
    for i, p in enumerate(preds):
        if not isinstance(p, Mapping) or "qid" not in p:
            raise InputError(f"prediction {i} is not an object with a 'qid'")
        qid = str(p["qid"])
        if key not in p:
            raise InputError(f"prediction for qid {qid} has no {key!r}")
        if qid in out:
            raise InputError(f"predictions have a duplicate qid {qid}")
        out[qid] = p
    return out


def _shared_qids(preds: Mapping[str, Any], gts: Mapping[str, Any], require_all: bool) -> list[str]:
    missing = [q for q in gts if q not in preds]
    unknown = [q for q in preds if q not in gts]
    if require_all and (missing or unknown):
        parts = []
        if missing:
            parts.append(f"{len(missing)} ground-truth queries have no prediction (e.g. qid {missing[0]})")
        if unknown:
            parts.append(f"{len(unknown)} predictions match no ground-truth query (e.g. qid {unknown[0]})")
        raise InputError("; ".join(parts) + "; pass require_all=False to score only the shared queries")
    qids = [q for q in gts if q in preds]
    if not qids:
        raise InputError("no query has both a prediction and a ground truth")
    return qids


def _gt_windows(g: Any, qid: str) -> np.ndarray:
    windows = _field(g, "windows")
    if windows is None:
        windows = _field(g, "relevant_windows", ())
    try:
        arr = np.asarray(windows, dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError):
        raise InputError(f"ground truth {qid}: relevant_windows must be [start, end] pairs") from None
    return arr


def _pred_windows(p: Mapping[str, Any], qid: str) -> np.ndarray:
    windows = p["pred_relevant_windows"]
    if not isinstance(windows, (list, tuple)) or not all(
        isinstance(w, (list, tuple)) and len(w) >= 3 for w in windows
    ):
        raise InputError(f"prediction {qid}: pred_relevant_windows must be a list of [start, end, score]")
    try:
        arr = np.array([w[:3] for w in windows], dtype=np.float64).reshape(-1, 3)
    except (TypeError, ValueError):
        raise InputError(f"prediction {qid}: pred_relevant_windows must hold numbers") from None
    if not np.isfinite(arr).all():
        raise InputError(f"prediction {qid}: pred_relevant_windows holds NaN or inf")
    return arr


def _pred_saliency(p: Mapping[str, Any], qid: str) -> np.ndarray:
    try:
        scores = np.asarray(p["pred_saliency_scores"], dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"prediction {qid}: pred_saliency_scores must be a list of numbers") from None
    if scores.ndim != 1 or not np.isfinite(scores).all():
        raise InputError(f"prediction {qid}: pred_saliency_scores must be a flat list of finite numbers")
    return scores


def _binary_saliency(g: Any, qid: str, min_score: int, clip_length: float) -> np.ndarray:
    """(clips, annotators) labels: relevant clip with the annotator's score >= min_score."""
    duration = _field(g, "duration")
    clip_ids = list(_field(g, "relevant_clip_ids", ()) or ())
    saliency = list(_field(g, "saliency_scores", ()) or ())
    if duration is None or not np.isfinite(float(duration)) or float(duration) <= 0:
        raise InputError(f"ground truth {qid}: needs a positive duration for highlight metrics")
    if not clip_ids:
        raise InputError(f"ground truth {qid}: no relevant_clip_ids / saliency_scores (unannotated split?)")
    if len(clip_ids) != len(saliency):
        raise InputError(f"ground truth {qid}: {len(clip_ids)} relevant_clip_ids but {len(saliency)} scores")
    num_clips = int(float(duration) / clip_length)
    ids = np.asarray(clip_ids, dtype=np.int64)
    if ids.min() < 0 or ids.max() >= num_clips:
        raise InputError(
            f"ground truth {qid}: clip id {int(ids.max())} beyond the {num_clips} clips of a {duration} s "
            "video"
        )
    try:
        scores = np.asarray(saliency, dtype=np.float64)
    except ValueError:
        raise InputError(f"ground truth {qid}: saliency_scores rows must all have one score per annotator") \
            from None
    full = np.zeros((num_clips, scores.shape[1]))
    full[ids] = scores
    return full >= min_score
