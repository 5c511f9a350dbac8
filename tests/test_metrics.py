"""tfvtg.metrics on hand-computed cases and on the real QVHighlights val annotations."""

from __future__ import annotations

import numpy as np
import pytest

from tfvtg.errors import InputError
from tfvtg.metrics import (
    MR_IOU_THRESHOLDS,
    average_precision_detection,
    format_metrics,
    grounding_ious,
    grounding_metrics,
    qvhighlights_hl_metrics,
    qvhighlights_mr_metrics,
    recall_at_iou,
    saliency_average_precision,
    temporal_iou,
)

# ------------------------------------------------------------------------------------------------ IoU


def test_temporal_iou_hand_values():
    pred = np.array([[0, 10], [5, 15], [20, 30], [2, 4], [0, 7], [-5, 5]], dtype=float)
    got = temporal_iou(pred, np.array([0.0, 10.0]))
    np.testing.assert_allclose(got, [1.0, 5 / 15, 0.0, 0.2, 0.7, 5 / 15])


def test_temporal_iou_paired_rows():
    pred = np.array([[0, 10], [10, 20]], dtype=float)
    gt = np.array([[5, 10], [0, 30]], dtype=float)
    np.testing.assert_allclose(temporal_iou(pred, gt), [0.5, 1 / 3])


def test_temporal_iou_degenerate_spans_are_zero_not_nan():
    pred = np.array([[3, 3], [3, 3], [8, 2], [10, 20], [0, 10]], dtype=float)
    gt = np.array([[0, 10], [3, 3], [0, 10], [0, 10], [4, 4]], dtype=float)
    got = temporal_iou(pred, gt)
    assert np.isfinite(got).all()
    np.testing.assert_array_equal(got, [0.0, 0.0, 0.0, 0.0, 0.0])


@pytest.mark.parametrize(
    "pred, gt",
    [
        (np.array([[0.0, np.nan]]), np.array([0.0, 1.0])),
        (np.array([[0.0, 1.0, 2.0]]), np.array([0.0, 1.0])),
        (np.array([[0.0, 1.0], [1.0, 2.0]]), np.array([[0.0, 1.0]] * 3)),
    ],
)
def test_temporal_iou_rejects_bad_input(pred, gt):
    with pytest.raises(InputError):
        temporal_iou(pred, gt)


# ---------------------------------------------------------------------------- Charades-STA / ActivityNet


def test_grounding_metrics_hand_computed():
    gt = [(0.0, 10.0)] * 6
    preds = [(0.0, 10.0), (5.0, 15.0), (0.0, 4.0), None, (0.0, 7.0), (20.0, 30.0)]
    # IoU: 1, 1/3, 0.4, 0 (no prediction), 0.7 (exactly on the threshold), 0 (disjoint: clipped, not -2/3)
    np.testing.assert_allclose(grounding_ious(preds, gt), [1, 1 / 3, 0.4, 0, 0.7, 0])
    m = grounding_metrics(preds, gt)
    assert m["n"] == 6
    assert m["R1@0.3"] == pytest.approx(100 * 4 / 6)
    assert m["R1@0.5"] == pytest.approx(100 * 2 / 6)
    assert m["R1@0.7"] == pytest.approx(100 * 2 / 6)
    assert m["mIoU"] == pytest.approx(100 * (1 + 1 / 3 + 0.4 + 0.7) / 6)
    assert list(m) == ["R1@0.3", "R1@0.5", "R1@0.7", "mIoU", "n"]


def test_grounding_metrics_uses_gt_ends_past_duration_raw():
    # A Charades-STA GT end past the video's end is scored as annotated (the official code does not clip).
    m = grounding_metrics([(20.0, 30.96)], [(24.3, 32.0)])
    assert m["mIoU"] == pytest.approx(100 * (30.96 - 24.3) / (32.0 - 20.0))


def test_grounding_metrics_errors():
    with pytest.raises(InputError, match="2 predictions but 1"):
        grounding_metrics([(0, 1), (0, 1)], [(0, 1)])
    with pytest.raises(InputError, match="no queries"):
        grounding_metrics([], [])
    with pytest.raises(InputError):
        grounding_metrics([(0.0, float("nan"))], [(0.0, 1.0)])


def test_recall_at_iou_custom_thresholds():
    assert recall_at_iou([0.1, 0.5, 0.95], thresholds=(0.1, 0.9)) == {
        "R1@0.1": 100.0,
        "R1@0.9": pytest.approx(100 / 3),
    }


# ------------------------------------------------------------------------------- detection AP (one query)


def _ap(windows, gts, thr=(0.5,)):
    w = np.array(windows, dtype=float)
    return average_precision_detection(w[:, :2], w[:, 2], np.array(gts, dtype=float), thr)


def test_ap_one_gt_two_predictions():
    assert _ap([[0, 10, 0.9], [20, 30, 0.8]], [[0, 10]]) == pytest.approx([1.0])
    # The false positive ranked first: precision 1/2 at recall 1.
    assert _ap([[0, 10, 0.8], [20, 30, 0.9]], [[0, 10]]) == pytest.approx([0.5])


def test_ap_duplicate_detection_is_a_false_positive():
    preds = [[0, 9, 0.95], [0, 10, 0.9]]  # IoU 0.9 then 1.0 with the one GT
    ap = _ap(preds, [[0, 10]], thr=(0.5, 0.95))
    # At 0.5 the first takes the GT and the duplicate is a FP after full recall: AP 1.
    # At 0.95 the first misses (FP), the second matches: precision 1/2.
    np.testing.assert_allclose(ap, [1.0, 0.5])


def test_ap_no_gt_or_no_prediction_is_zero():
    assert _ap([[0, 10, 0.9]], np.zeros((0, 2))) == pytest.approx([0.0])
    empty = np.zeros((0, 2))
    np.testing.assert_array_equal(
        average_precision_detection(empty, np.zeros(0), [[0, 10]], (0.5, 0.7)), [0, 0]
    )


def test_ap_multiple_gts():
    # TP (rec .5, prec 1), FP (rec .5, prec .5), TP (rec 1, prec 2/3): AP = .5 * 1 + .5 * 2/3
    ap = _ap([[0, 10, 0.9], [40, 50, 0.8], [20, 30, 0.7]], [[0, 10], [20, 30]])
    assert ap == pytest.approx([0.5 + 0.5 * 2 / 3])


def test_ap_matches_the_highest_iou_gt_first():
    gts = [[0, 10], [0, 12]]
    preds = [[0, 11, 0.9], [0, 10, 0.8]]  # P1: IoU 10/11 and 11/12 -> takes GT2; P2: IoU 1 with GT1
    np.testing.assert_allclose(_ap(preds, gts, thr=(0.7,)), [1.0])
    gts = [[0, 10], [2, 12]]
    preds = [[0, 11, 0.9], [0, 10, 0.8]]  # P1: 10/11 (GT1) > 9/12 (GT2) -> GT1; P2 can only take GT2 (8/12)
    np.testing.assert_allclose(_ap(preds, gts, thr=(0.7, 0.6)), [0.5, 1.0])


def test_ap_gt_iou_tie_takes_the_later_gt():
    # P1 [1, 11] has IoU 9/11 with both GTs; the reference's reversed argsort takes GT2, leaving P2 only GT1
    # at IoU 8/12 < 0.7.
    gts = [[0, 10], [2, 12]]
    preds = [[1, 11, 0.9], [2, 12, 0.8]]
    np.testing.assert_allclose(_ap(preds, gts, thr=(0.7,)), [0.5])


def test_ap_score_ties_keep_list_order():
    assert _ap([[20, 30, 0.5], [0, 10, 0.5]], [[0, 10]]) == pytest.approx([0.5])
    assert _ap([[0, 10, 0.5], [20, 30, 0.5]], [[0, 10]]) == pytest.approx([1.0])


def test_ap_degenerate_prediction_is_a_miss():
    assert _ap([[5, 5, 0.9], [0, 10, 0.8]], [[0, 10]]) == pytest.approx([0.5])


# ------------------------------------------------------------------------------- QVHighlights retrieval


def _mr_case():
    gts = [
        {"qid": 1, "relevant_windows": [[0, 10]]},
        {"qid": 2, "relevant_windows": [[0, 10], [20, 30]]},
    ]
    preds = [
        {"qid": 1, "pred_relevant_windows": [[0, 10, 0.9], [20, 30, 0.5]]},
        {"qid": "2", "pred_relevant_windows": [[0, 6, 0.9], [21, 30, 0.8]]},
    ]
    return preds, gts


def test_qvhighlights_mr_hand_computed():
    preds, gts = _mr_case()
    m = qvhighlights_mr_metrics(preds, gts)
    # Query 1: perfect. Query 2: top-1 IoU 0.6; AP is 1 at IoU .5-.6 (both match), .25 at .65-.9 (FP, then
    # TP at recall .5), 0 at .95; mean (3 + 6 * .25) / 10 = .45.
    assert m == {
        "R1@0.5": 100.0,
        "R1@0.7": 50.0,
        "mAP@0.5": 100.0,
        "mAP@0.75": pytest.approx(100 * (1 + 0.25) / 2),
        "mAP": pytest.approx(100 * (1 + 0.45) / 2),
        "n": 2,
    }


def test_qvhighlights_mr_top1_is_the_first_listed_window():
    gts = [{"qid": 1, "relevant_windows": [[0, 10]]}]
    preds = [{"qid": 1, "pred_relevant_windows": [[50, 60, 0.1], [0, 10, 0.9]]}]
    m = qvhighlights_mr_metrics(preds, gts)
    assert m["R1@0.5"] == 0.0  # R1 takes the list's first window, as the reference does
    assert m["mAP"] == 100.0  # mAP sorts by score


def test_qvhighlights_mr_max_pred_windows():
    gts = [{"qid": 1, "relevant_windows": [[0, 10]]}]
    windows = [[20 + 5 * i, 22 + 5 * i, 1.0] for i in range(10)] + [[0, 10, 0.5]]
    preds = [{"qid": 1, "pred_relevant_windows": windows}]
    assert qvhighlights_mr_metrics(preds, gts)["mAP"] == 0.0  # the hit is the 11th window
    assert qvhighlights_mr_metrics(preds, gts, max_pred_windows=None)["mAP"] == pytest.approx(100 / 11)


def test_qvhighlights_mr_empty_prediction_list_is_a_miss():
    gts = [{"qid": 1, "relevant_windows": [[0, 10]]}, {"qid": 2, "relevant_windows": [[0, 10]]}]
    preds = [{"qid": 1, "pred_relevant_windows": []}, {"qid": 2, "pred_relevant_windows": [[0, 10, 1]]}]
    m = qvhighlights_mr_metrics(preds, gts)
    assert (m["R1@0.5"], m["mAP"]) == (50.0, 50.0)


def test_qvhighlights_mr_qid_matching():
    preds, gts = _mr_case()
    with pytest.raises(InputError, match="1 ground-truth queries have no prediction"):
        qvhighlights_mr_metrics(preds[:1], gts)
    with pytest.raises(InputError, match="match no ground-truth"):
        qvhighlights_mr_metrics(preds, gts[:1])
    assert qvhighlights_mr_metrics(preds[:1], gts, require_all=False)["n"] == 1
    with pytest.raises(InputError, match="duplicate qid 1"):
        qvhighlights_mr_metrics(preds + preds[:1], gts)


@pytest.mark.parametrize(
    "pred, gt, match",
    [
        ({"qid": 1, "pred_relevant_windows": [[0, 10]]}, {"qid": 1, "relevant_windows": [[0, 10]]}, "score"),
        (
            {"qid": 1, "pred_relevant_windows": [[0, "x", 1]]},
            {"qid": 1, "relevant_windows": [[0, 10]]},
            "numbers",
        ),
        (
            {"qid": 1, "pred_relevant_windows": [[0, np.nan, 1]]},
            {"qid": 1, "relevant_windows": [[0, 10]]},
            "NaN",
        ),
        ({"qid": 1}, {"qid": 1, "relevant_windows": [[0, 10]]}, "no 'pred_relevant_windows'"),
        (
            {"qid": 1, "pred_relevant_windows": [[0, 10, 1]]},
            {"qid": 1, "relevant_windows": []},
            "no relevant",
        ),
    ],
)
def test_qvhighlights_mr_rejects_malformed(pred, gt, match):
    with pytest.raises(InputError, match=match):
        qvhighlights_mr_metrics([pred], [gt])


def test_qvhighlights_mr_perfect_predictions_on_val(shared_data):
    from tfvtg.datasets import load_qvhighlights

    gts = load_qvhighlights(shared_data / "qvhighlights" / "highlight_val_release.jsonl")
    preds = [{"qid": int(g.qid), "pred_relevant_windows": [[s, e, 1.0] for s, e in g.windows]} for g in gts]
    m = qvhighlights_mr_metrics(preds, gts, max_pred_windows=None)
    assert m == {
        "R1@0.5": 100.0,
        "R1@0.7": 100.0,
        "mAP@0.5": 100.0,
        "mAP@0.75": 100.0,
        "mAP": 100.0,
        "n": 1550,
    }
    # With the reference's 10-window cut, a query with M > 10 windows can only reach recall (and AP) 10 / M.
    expected = 100 * np.mean([min(1.0, 10 / len(g.windows)) for g in gts])
    m10 = qvhighlights_mr_metrics(preds, gts)
    assert m10["mAP"] == pytest.approx(expected) and m10["mAP"] < 100.0
    assert m10["R1@0.7"] == 100.0
    # Shifting every window by a fixed fraction of its length lowers the metrics in the expected order.
    shifted = [
        {
            "qid": p["qid"],
            "pred_relevant_windows": [
                [s + 0.2 * (e - s), e + 0.2 * (e - s), c] for s, e, c in p["pred_relevant_windows"]
            ],
        }
        for p in preds
    ]
    ms = qvhighlights_mr_metrics(shifted, gts, max_pred_windows=None)
    # Each window keeps IoU 0.8 / 1.2 = 2/3 with its own GT: hits at 0.5-0.65, misses at 0.7 and above.
    assert ms["R1@0.5"] == 100.0 and ms["R1@0.7"] == pytest.approx(0.0, abs=1.0)
    assert ms["mAP@0.5"] == pytest.approx(100.0, abs=0.5) and ms["mAP@0.75"] == pytest.approx(0.0, abs=1.0)


# ------------------------------------------------------------------------------- QVHighlights highlights


def test_saliency_ap_hand_values():
    # ranking 1 0 1 0: precision 1, 1/2, 2/3, 1/2; recall rises at ranks 1 and 3: mean(1, 2/3)
    assert saliency_average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx((1 + 2 / 3) / 2)
    # tied scores enter together: {1, 0} at 0.5 (precision 1/2), then the last positive (2/3); envelope 2/3
    assert saliency_average_precision([1, 0, 1], [0.5, 0.5, 0.1]) == pytest.approx(2 / 3)
    assert saliency_average_precision([0, 0, 0], [0.3, 0.2, 0.1]) == 0.0
    assert saliency_average_precision([1, 1], [0.0, 0.0]) == 1.0
    # the positive ranked last of 4: precision 1/4
    assert saliency_average_precision([0, 0, 0, 1], [4, 3, 2, 1]) == pytest.approx(0.25)


def _hl_case():
    gts = [
        {  # 5 clips; labels >= 4 per annotator: clip 1 -> (1, 0, 1), clip 2 -> (0, 1, 0), clip 3 -> (0, 0, 0)
            "qid": 7,
            "duration": 10,
            "relevant_clip_ids": [1, 2, 3],
            "saliency_scores": [[4, 2, 4], [1, 4, 0], [3, 3, 3]],
        },
        {"qid": 8, "duration": 6, "relevant_clip_ids": [0], "saliency_scores": [[2, 2, 2]]},  # no positive
    ]
    preds = [
        {"qid": 7, "pred_saliency_scores": [0.1, 0.9, 0.5, 0.3, 0.2]},
        {"qid": 8, "pred_saliency_scores": [0.0, 0.0, 1.0]},
    ]
    return preds, gts


def test_qvhighlights_hl_hand_computed():
    preds, gts = _hl_case()
    m = qvhighlights_hl_metrics(preds, gts)
    # Query 7: AP per annotator 1, 1/2, 1 (mean 5/6); top clip 1 is positive for annotators 0 and 2: hit.
    # Query 8: no positive clip: AP 0 for each annotator and no hit.
    assert m == {
        "HL-min-VeryGood-mAP": pytest.approx(100 * (5 / 6) / 2),
        "HL-min-VeryGood-HIT1": 50.0,
        "n": 2,
    }
    fair = qvhighlights_hl_metrics(preds, gts, min_score=2)
    # At >= 2 query 8's clip 0 is positive for all; the top clip (2) is not: AP 1/3 each, no hit.
    # Query 7: labels clip1 (1,1,1), clip2 (0,1,0), clip3 (1,1,1); ranking 1,2,3,4,0.
    # annotators 0 and 2: precision 1, -, 2/3 -> (1 + 2/3) / 2; annotator 1: 1, 1, 1 -> 1.
    q7 = ((1 + 2 / 3) / 2 * 2 + 1) / 3
    assert fair["HL-min-Fair-mAP"] == pytest.approx(100 * (q7 + 1 / 3) / 2)
    assert fair["HL-min-Fair-HIT1"] == 50.0


def test_qvhighlights_hl_prediction_length_is_fitted():
    gts = [{"qid": 1, "duration": 10, "relevant_clip_ids": [1], "saliency_scores": [[4, 4, 4]]}]
    # Top score on clip 6, beyond the video's 5 clips: not a hit; the extra scores are dropped for AP.
    long = [{"qid": 1, "pred_saliency_scores": [0, 0.5, 0, 0, 0, 0, 0.9]}]
    m = qvhighlights_hl_metrics(long, gts)
    assert (m["HL-min-VeryGood-mAP"], m["HL-min-VeryGood-HIT1"]) == (100.0, 0.0)
    # Two scores for 5 clips: zero-padded.
    short = [{"qid": 1, "pred_saliency_scores": [0.1, 0.2]}]
    m = qvhighlights_hl_metrics(short, gts)
    assert (m["HL-min-VeryGood-mAP"], m["HL-min-VeryGood-HIT1"]) == (100.0, 100.0)


def test_qvhighlights_hl_errors():
    preds, gts = _hl_case()
    with pytest.raises(InputError, match="no 'pred_saliency_scores'"):
        qvhighlights_hl_metrics([{"qid": 7}, preds[1]], gts)
    with pytest.raises(InputError, match="finite"):
        qvhighlights_hl_metrics([{"qid": 7, "pred_saliency_scores": [np.nan] * 5}, preds[1]], gts)
    bad = [dict(gts[0], relevant_clip_ids=[1, 2, 5]), gts[1]]
    with pytest.raises(InputError, match="beyond the 5 clips"):
        qvhighlights_hl_metrics(preds, bad)
    bad = [dict(gts[0], relevant_clip_ids=[]), gts[1]]
    with pytest.raises(InputError, match="unannotated"):
        qvhighlights_hl_metrics(preds, bad)


def test_qvhighlights_hl_on_val_with_an_oracle(shared_data):
    from tfvtg.datasets import load_qvhighlights

    gts = load_qvhighlights(shared_data / "qvhighlights" / "highlight_val_release.jsonl")

    def full(g, annotator):
        s = np.zeros(int(g.duration / 2))
        s[list(g.relevant_clip_ids)] = [row[annotator] for row in g.saliency_scores]
        return s

    # Predicting the maximum over annotators: the top clip holds the highest score any annotator gave, so
    # HIT@1 is exactly the share of queries where some annotator gave a 4.
    preds = [{"qid": g.qid, "pred_saliency_scores": np.max([full(g, a) for a in range(3)], 0)} for g in gts]
    m = qvhighlights_hl_metrics(preds, gts)
    has_four = np.mean([max(max(row) for row in g.saliency_scores) >= 4 for g in gts])
    assert m["HL-min-VeryGood-HIT1"] == pytest.approx(100 * has_four)
    assert m["n"] == 1550
    # Predicting annotator 0 exactly gives AP 1 against annotator 0 wherever it has a positive clip (0 where
    # it has none): checked through single-annotator ground truth.
    single = [
        {
            "qid": g.qid,
            "duration": g.duration,
            "relevant_clip_ids": g.relevant_clip_ids,
            "saliency_scores": [[row[0]] for row in g.saliency_scores],
        }
        for g in gts
    ]
    preds0 = [{"qid": g.qid, "pred_saliency_scores": full(g, 0)} for g in gts]
    m0 = qvhighlights_hl_metrics(preds0, single)
    share = np.mean([any(row[0] >= 4 for row in g.saliency_scores) for g in gts])
    assert m0["HL-min-VeryGood-mAP"] == pytest.approx(100 * share)
    assert m0["HL-min-VeryGood-HIT1"] == pytest.approx(100 * share)


# ---------------------------------------------------------------------------------------------- display


def test_format_metrics():
    text = format_metrics({"R1@0.3": 67.0449, "mIoU": 44.5, "n": 3720})
    assert text == "R1@0.3   mIoU     n\n 67.04  44.50  3720"


def test_mr_thresholds():
    assert MR_IOU_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


# ----------------------------------------------------------------- cross-checks against literal definitions


def test_grounding_metrics_accepts_moments_and_rejects_bad_spans():
    from tfvtg.moment import Moment

    m = grounding_metrics([Moment(0.0, 5.0, 0.9), (0.0, 10.0, 0.3)], [(0.0, 10.0), (0.0, 10.0)])
    assert m["mIoU"] == pytest.approx(75.0)
    with pytest.raises(InputError, match="prediction 0 is not a"):
        grounding_metrics([(1.0,)], [(0.0, 1.0)])
    with pytest.raises(InputError, match="ground truth 0 is not a"):
        grounding_metrics([(0.0, 1.0)], ["ab"])


def _literal_detection_ap(windows, scores, gts, thr):
    """Plain loops, one threshold at a time, straight from the definition."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    taken = [False] * len(gts)
    hits = []
    for i in order:
        s, e = windows[i]
        ious = []
        for gs, ge in gts:
            inter = max(0.0, min(e, ge) - max(s, gs))
            ious.append(inter / (max(e, ge) - min(s, gs)) if inter > 0 else 0.0)
        ranked = sorted(range(len(gts)), key=lambda j: ious[j])[::-1]
        hit = next((j for j in ranked if ious[j] >= thr and not taken[j]), None)
        if hit is not None:
            taken[hit] = True
        hits.append(hit is not None)
    # VOC AP: for each recall level r reached, the best precision at recall >= r, times the recall step.
    points = []
    tp = 0
    for k, h in enumerate(hits, start=1):
        tp += h
        points.append((tp / len(gts), tp / k))
    ap, previous = 0.0, 0.0
    for r in sorted({r for r, _ in points}):
        if r > previous:
            ap += (r - previous) * max(p for rr, p in points if rr >= r)
            previous = r
    return ap


def test_detection_ap_matches_a_literal_implementation_on_random_cases():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n, m = rng.integers(1, 8), rng.integers(1, 4)
        starts = rng.integers(0, 20, n).astype(float)
        windows = np.stack([starts, starts + rng.integers(1, 10, n)], 1)
        gs = rng.integers(0, 20, m).astype(float)
        gts = np.stack([gs, gs + rng.integers(1, 10, m)], 1)
        scores = rng.integers(0, 4, n) / 4.0  # score ties on purpose
        got = average_precision_detection(windows, scores, gts, MR_IOU_THRESHOLDS)
        want = [
            _literal_detection_ap(windows.tolist(), scores.tolist(), gts.tolist(), t)
            for t in MR_IOU_THRESHOLDS
        ]
        np.testing.assert_allclose(got, want, atol=1e-12)


def _literal_saliency_ap(labels, scores):
    """Per distinct score threshold t (high to low): precision and recall of {score >= t}; interpolated
    precision = best precision at any threshold <= t; averaged over the thresholds where recall rises."""
    labels = [bool(x) for x in labels]
    positives = sum(labels)
    if positives in (0, len(labels)):
        return float(positives > 0)
    values, previous = [], 0
    thresholds = sorted(set(scores), reverse=True)
    stats = []
    for t in thresholds:
        chosen = [y for y, s in zip(labels, scores, strict=True) if s >= t]
        stats.append((sum(chosen), sum(chosen) / len(chosen)))
    for k, (tp, _) in enumerate(stats):
        if tp > previous:
            values.append(max(p for _, p in stats[k:]))
            previous = tp
    return sum(values) / len(values)


def test_saliency_ap_matches_a_literal_implementation_on_random_cases():
    rng = np.random.default_rng(1)
    for _ in range(300):
        n = int(rng.integers(1, 12))
        labels = rng.random(n) < 0.4
        scores = (rng.integers(0, 5, n) / 4.0).tolist()  # ties on purpose
        assert saliency_average_precision(labels, scores) == pytest.approx(
            _literal_saliency_ap(labels, scores)
        )
