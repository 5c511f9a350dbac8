"""QVHighlights moment retrieval per ground-truth length bucket (Moment-DETR's short / middle / long).

Hand-computed cases: a query whose windows fall in three buckets, window lengths exactly on the bucket edges
(10 s and 30 s), an empty bucket; and on the real val split, each bucket against the full metrics of the
records filtered by hand (what the reference's ``get_data_by_range`` does).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tfvtg.datasets import GroundingQuery
from tfvtg.errors import InputError
from tfvtg.evaluate import score_predictions
from tfvtg.metrics import (
    MR_LENGTH_RANGES,
    format_metrics,
    qvhighlights_mr_length_metrics,
    qvhighlights_mr_metrics,
)

METRICS = ("R1@0.5", "R1@0.7", "mAP@0.5", "mAP@0.75", "mAP")


def _case():
    gts = [
        # Lengths 10 (short: the edge belongs to the lower bucket), 30 (middle, same) and 40 (long).
        {"qid": 1, "relevant_windows": [[0, 10], [20, 50], [60, 100]]},
        {"qid": 2, "relevant_windows": [[0, 4]]},  # short
        {"qid": 3, "relevant_windows": [[10, 20.5]]},  # 10.5: middle
    ]
    preds = [
        {"qid": 1, "pred_relevant_windows": [[20, 50, 0.9], [0, 10, 0.8]]},
        {"qid": 2, "pred_relevant_windows": [[0, 4, 1.0]]},
        {"qid": 3, "pred_relevant_windows": [[12, 20.5, 1.0]]},  # IoU 8.5 / 10.5 = 0.81
    ]
    return preds, gts


def test_windows_split_into_buckets_hand_computed():
    preds, gts = _case()
    m = qvhighlights_mr_length_metrics(preds, gts)
    # short: q1 keeps [0, 10]: its top-1 [20, 50] misses; AP: a false positive, then the hit: 1/2. q2: 1.
    assert {k: m[f"MR-short-{k}"] for k in (*METRICS, "n")} == pytest.approx(
        {"R1@0.5": 50.0, "R1@0.7": 50.0, "mAP@0.5": 75.0, "mAP@0.75": 75.0, "mAP": 75.0, "n": 2}
    )
    # middle: q1 keeps [20, 50]: top-1 exact, AP 1. q3: IoU 0.81 reaches 7 of the 10 thresholds (0.5-0.8).
    assert {k: m[f"MR-middle-{k}"] for k in (*METRICS, "n")} == pytest.approx(
        {"R1@0.5": 100.0, "R1@0.7": 100.0, "mAP@0.5": 100.0, "mAP@0.75": 100.0, "mAP": 85.0, "n": 2}
    )
    # long: q1 keeps [60, 100], which no prediction touches.
    assert {k: m[f"MR-long-{k}"] for k in (*METRICS, "n")} == pytest.approx(
        {"R1@0.5": 0.0, "R1@0.7": 0.0, "mAP@0.5": 0.0, "mAP@0.75": 0.0, "mAP": 0.0, "n": 1}
    )
    # Full (all windows): q1's top-1 hits [20, 50]; its AP is 2/3 (2 of 3 windows found, both first).
    full = qvhighlights_mr_metrics(preds, gts)
    assert full == pytest.approx(
        {
            "R1@0.5": 100.0,
            "R1@0.7": 100.0,
            "mAP@0.5": 100 * (2 / 3 + 1 + 1) / 3,
            "mAP@0.75": 100 * (2 / 3 + 1 + 1) / 3,
            "mAP": 100 * (2 / 3 + 1 + 0.7) / 3,
            "n": 3,
        }
    )
    # One bucket through the single-range function gives the same numbers.
    middle = qvhighlights_mr_metrics(preds, gts, length_range=MR_LENGTH_RANGES["middle"])
    assert middle == {k: m[f"MR-middle-{k}"] for k in (*METRICS, "n")}


def test_bucket_edges_are_min_exclusive_max_inclusive():
    preds = [{"qid": q, "pred_relevant_windows": [[0, 1, 1.0]]} for q in (1, 2, 3, 4)]
    gts = [
        {"qid": 1, "relevant_windows": [[5, 15]]},  # 10: short
        {"qid": 2, "relevant_windows": [[5, 15.5]]},  # 10.5: middle
        {"qid": 3, "relevant_windows": [[0, 30]]},  # 30: middle
        {"qid": 4, "relevant_windows": [[0, 30.5]]},  # 30.5: long
    ]
    m = qvhighlights_mr_length_metrics(preds, gts)
    assert (m["MR-short-n"], m["MR-middle-n"], m["MR-long-n"]) == (1, 2, 1)
    # A (0, 10] bucket with min inclusive would take nothing more; one with max exclusive would lose q1.
    assert qvhighlights_mr_metrics(preds, gts, length_range=(10, 30))["n"] == 2
    assert qvhighlights_mr_metrics(preds, gts, length_range=(0, 10))["n"] == 1
    assert qvhighlights_mr_metrics(preds, gts, length_range=(9.9, 10))["n"] == 1


def test_empty_bucket_has_n_zero_and_no_nan():
    preds = [{"qid": 1, "pred_relevant_windows": [[0, 4, 1.0]]}]
    gts = [{"qid": 1, "relevant_windows": [[0, 4]]}]
    m = qvhighlights_mr_length_metrics(preds, gts)
    assert m == {
        **{f"MR-short-{k}": 100.0 for k in METRICS},
        "MR-short-n": 1,
        "MR-middle-n": 0,
        "MR-long-n": 0,
    }
    assert all(math.isfinite(v) for v in m.values())
    json.dumps(m, allow_nan=False)  # what `tfvtg evaluate --json` prints
    table = format_metrics(m).splitlines()
    assert table[0].split() == ["length", "(s)", *METRICS, "n"]
    assert table[2].split() == ["middle", "(10,", "30]", "-", "-", "-", "-", "-", "0"]
    with pytest.raises(InputError, match=r"no ground-truth window has a length in \(30, 150\]"):
        qvhighlights_mr_metrics(preds, gts, length_range=MR_LENGTH_RANGES["long"])


def test_qid_matching_is_on_the_whole_sets_and_bad_ranges_refused():
    preds, gts = _case()
    with pytest.raises(InputError, match="1 ground-truth queries have no prediction"):
        qvhighlights_mr_length_metrics(preds[1:], gts)  # q1 is missing, whatever the bucket
    m = qvhighlights_mr_length_metrics(preds[1:], gts, require_all=False)
    assert (m["MR-short-n"], m["MR-middle-n"], m["MR-long-n"]) == (1, 1, 0)
    with pytest.raises(InputError, match="min < max"):
        qvhighlights_mr_metrics(preds, gts, length_range=(30, 10))
    with pytest.raises(InputError, match="no relevant_windows"):
        qvhighlights_mr_length_metrics(preds, [*gts[:2], {"qid": 3, "relevant_windows": []}])
    custom = qvhighlights_mr_length_metrics(preds, gts, ranges={"upto20": (0, 20)})
    assert custom["MR-upto20-n"] == 3 and "MR-short-n" not in custom


def test_score_predictions_reports_full_unchanged_plus_buckets():
    preds, gts = _case()
    queries = [
        GroundingQuery(qid=str(g["qid"]), vid="v", query="q", duration=150.0,
                       windows=tuple(tuple(w) for w in g["relevant_windows"]))
        for g in gts
    ]
    scores = score_predictions("qvhighlights", preds, queries)
    full = {k: v for k, v in scores.items() if not k.startswith("MR-")}
    assert full == qvhighlights_mr_metrics(preds, gts)
    buckets = {k: v for k, v in scores.items() if k.startswith("MR-")}
    assert buckets == qvhighlights_mr_length_metrics(preds, gts)
    assert scores["MR-short-mAP"] == 75.0 and scores["MR-long-n"] == 1


def test_buckets_match_hand_filtered_records_on_val(shared_data):
    from tfvtg.datasets import load_qvhighlights

    gts = load_qvhighlights(shared_data / "qvhighlights" / "highlight_val_release.jsonl")
    rng = np.random.default_rng(0)
    preds = []
    for g in gts:  # each window shifted by a random share of its length, plus a decoy; random scores
        windows = [[s + d * (e - s), e + d * (e - s)] for (s, e), d in
                   zip(g.windows, rng.uniform(-0.4, 0.4, len(g.windows)), strict=True)]
        windows.append([0.0, 150.0])
        scores = rng.uniform(0, 1, len(windows))
        preds.append({"qid": int(g.qid), "pred_relevant_windows": [[*w, float(c)] for w, c in
                                                                   zip(windows, scores, strict=True)]})
    m = qvhighlights_mr_length_metrics(preds, gts)
    total = 0
    for name, (lo, hi) in MR_LENGTH_RANGES.items():
        kept = {g.qid: [w for w in g.windows if lo < w[1] - w[0] <= hi] for g in gts}
        bucket_gts = [{"qid": q, "relevant_windows": w} for q, w in kept.items() if w]
        bucket_preds = [p for p in preds if kept[str(p["qid"])]]
        expected = qvhighlights_mr_metrics(bucket_preds, bucket_gts)
        assert {k: m[f"MR-{name}-{k}"] for k in (*METRICS, "n")} == pytest.approx(expected)
        total += expected["n"]
    # Every val window is in (0, 150], so the buckets cover every query at least once; some are in several.
    assert total > len(gts) == 1550
    assert min(m["MR-short-n"], m["MR-middle-n"], m["MR-long-n"]) > 0
