"""tfvtg.combine: IoU voting and the order-constrained combination of sub-events (TFVTG-METHOD.md 4)."""

from __future__ import annotations

import numpy as np
import pytest

from tfvtg.combine import combine_sub_events, integrate_sub_events, pairwise_iou, vote


def test_iou_uses_the_hull_as_union_and_handles_zero_length_spans():
    iou = pairwise_iou(np.array([[0.0, 10.0], [20.0, 30.0]]), np.array([[5.0, 15.0], [0.0, 10.0]]))
    assert iou == pytest.approx(np.array([[5 / 15, 1.0], [0.0, 0.0]]))
    zero = np.array([[0.0, 0.0], [3.0, 3.0]])
    assert np.isnan(pairwise_iou(zero, zero, profile="reference")[0, 0])
    assert pairwise_iou(zero, zero).tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_vote_by_hand():
    pool = np.array([[0.0, 10.0, 1.0], [5.0, 15.0, 0.5], [40.0, 50.0, 0.9]])
    ranked, votes = vote(pool, gamma=0.6)
    third = (1 / 3) ** 0.6
    expected = {0: 1.0 + third * 0.5, 1: third * 1.0 + 0.5, 2: 0.9}
    assert votes == pytest.approx(sorted(expected.values(), reverse=True))
    assert ranked[:, 0].tolist() == [0.0, 5.0, 40.0]
    assert ranked[0, 2] == 1.0  # the confidence column is the row's own, not its vote


def test_vote_ignores_negative_confidences_and_keeps_tie_order():
    pool = np.array([[0.0, 1.0, -5.0], [10.0, 11.0, 0.2], [20.0, 21.0, 0.2]])
    ranked, votes = vote(pool)
    assert ranked[:, 0].tolist() == [10.0, 20.0, 0.0] and votes[-1] == 0.0


def test_sequential_combinations_keep_order_and_allow_touching():
    first = np.array([[0.0, 5.0, 1.0], [10.0, 12.0, 0.5]])
    second = np.array([[5.0, 9.0, 0.8], [2.0, 4.0, 0.9]])
    merged = combine_sub_events([first, second], "sequentially")
    assert merged.tolist() == [[0.0, 9.0, 0.8]]  # (0-5, 5-9) touches; every other pair goes back in time


def test_simultaneous_combinations_hull_in_reference_and_intersection_by_default():
    first = np.array([[0.0, 10.0, 1.0], [20.0, 25.0, 0.5]])
    second = np.array([[6.0, 14.0, 0.5], [10.0, 12.0, 1.0]])
    ref = combine_sub_events([first, second], "simultaneously", profile="reference")
    assert ref.tolist() == [[0.0, 14.0, 0.5], [0.0, 12.0, 1.0]]  # (20-25) shares no instant with either
    default = combine_sub_events([first, second], "simultaneously")
    assert default.tolist() == [[6.0, 10.0, 0.5], [0.0, 12.0, 1.0]]  # common part; touching keeps the hull


def test_unconstrained_relation_enumerates_every_combination_depth_first():
    a = np.array([[0.0, 1.0, 0.5], [2.0, 3.0, -1.0]])
    b = np.array([[5.0, 6.0, 0.5], [4.0, 4.5, 1.0], [0.5, 0.7, 1.0]])
    merged = combine_sub_events([a, b], "single-query")
    assert len(merged) == 6
    assert merged[:3, :2].tolist() == [[0.0, 6.0], [0.0, 4.5], [0.0, 1.0]]
    assert merged[:, 2].tolist() == [0.25, 0.5, 0.5, 0.0, 0.0, 0.0]  # negative confidence clips to 0


def test_integrate_keeps_the_two_best_by_vote_and_handles_empty_inputs():
    a = np.array([[0.0, 5.0, 1.0], [0.5, 5.0, 0.9], [30.0, 40.0, 0.8]])
    b = np.array([[6.0, 9.0, 1.0]])
    best = integrate_sub_events([a, b], "sequentially")
    assert len(best) == 2 and best[:, 0].tolist() == [0.0, 0.5]
    assert integrate_sub_events([], "sequentially").shape == (0, 3)
    assert integrate_sub_events([a, np.empty((0, 3))], "sequentially").shape == (0, 3)
    assert integrate_sub_events([b, a[:2]], "sequentially").shape == (0, 3)  # nothing starts after 6-9 ends
