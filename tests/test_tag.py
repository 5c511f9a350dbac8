"""TAG's localiser (tfvtg.tag) against a literal transcription of docs/TAG-METHOD.md, stage by stage and end
to end, plus the reference profile's quirks and the default profile's fixes.

The transcription (benchmarks/official_tag.py) runs TAG's structure with torch on the CPU: Python loops over
frames, torch's generator for the k-means++ start. Its clustering is asked for float64 distances, as the
reference profile computes them: with float32 ones the two differ where two centres are equally close up to
float32 rounding (the method doc's exactness hazard).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.oracle import official_tag, tag_curves
from tfvtg import tag
from tfvtg.errors import InputError

torch = pytest.importorskip("torch")
ot = official_tag()
scene_video = tag_curves().scene_video
DIM = 24


def _videos(n: int, count: int, min_kept: int = 22) -> list[tuple[np.ndarray, np.ndarray]]:
    """Synthetic scene videos with at least ``min_kept`` kept frames (fewer kept frames than the pooling width
    put the pooled rows on a line, where labels hinge on rounding)."""
    out, seed = [], 0
    while len(out) < count:
        curve, feats, _ = scene_video(n, DIM, seed=seed)
        seed += 1
        if tag.mask_with_vote(curve, 0.2).sum() >= min_kept:
            out.append((curve, feats))
    return out


# ----------------------------------------------------------------------------------------------- stages
def test_mask_vote_by_hand() -> None:
    curve = np.array([0.3, 0.1, 0.3, 0.1, 0.3, 0.3, 0.1, 0.3])
    # frame 0 is never voted on; 2 is alone; 4-5 keep each other; 7's right neighbour (frame T) is "dropped"
    assert np.flatnonzero(tag.mask_with_vote(curve, 0.2)).tolist() == [0, 4, 5]
    assert tag.mask_with_vote(np.full(5, 0.1), 0.2).all()  # nothing left: every frame kept


@pytest.mark.parametrize("threshold", [0.2, 0.0])
def test_mask_vote_matches_transcription(threshold: float) -> None:
    rng = np.random.default_rng(1)
    for n in [1, 2, 3, 5, 30, 90]:
        for _ in range(10):
            curve = rng.normal(threshold, 0.05, n).astype(np.float32)
            expected = ot.mask_vote(torch.as_tensor(curve), threshold)
            assert np.flatnonzero(tag.mask_with_vote(curve, threshold)).tolist() == expected


def test_adjustment_matches_transcription() -> None:
    rng = np.random.default_rng(2)
    for n, low in [(5, 0.15), (40, -0.1), (90, 0.2), (300, 0.0)]:
        for gamma in (0.2, 0.8):
            x = (low + np.abs(rng.normal(0, 0.05, n))).astype(np.float32)
            got = tag.adjust_similarity(x, gamma)
            np.testing.assert_array_equal(got, ot.adjust(x, gamma))
            shifted_min = x.min() if x.min() > 0 else np.float32(1e-6)
            assert got.min() == pytest.approx(shifted_min, abs=1e-6)
            assert got.max() - got.min() == pytest.approx(max(x.max() - x.min(), gamma), rel=1e-5)


@pytest.mark.parametrize("kept_count", [3, 15, 60])
def test_pooling_matches_transcription(kept_count: int) -> None:
    rng = np.random.default_rng(kept_count)
    n = 90
    feats = rng.normal(0, 1, (n, DIM)).astype(np.float32)
    kept = np.zeros(n, bool)
    kept[np.sort(rng.choice(n, kept_count, replace=False))] = True
    got = tag.pool_features(feats, kept, n, 21)
    expected = ot.pool(torch.as_tensor(feats), np.flatnonzero(kept).tolist(), n, 21).numpy()
    assert got.shape == (kept_count, DIM + 1) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_kmeans_plus_plus_draws_match_torch_generator() -> None:
    for curve, feats in _videos(90, 6, min_kept=10):
        kept = tag.mask_with_vote(curve, 0.2)
        pooled = tag.pool_features(feats, kept, len(curve), 21)
        for k in (2, 5, 9):
            k = min(k, len(pooled))
            expected = ot.kmeans_pp(torch.as_tensor(pooled), k)
            assert tag.kmeans_plus_plus_start(pooled, k).tolist() == expected


@pytest.mark.parametrize("window", [7, None], ids=["temporal-coherence", "plain"])
def test_clustering_from_given_starts_matches_transcription(window: int | None) -> None:
    for curve, feats in _videos(90, 8):
        kept = tag.mask_with_vote(curve, 0.2)
        pooled = tag.pool_features(feats, kept, len(curve), 21)
        k = min(9, len(pooled))
        for start in (tag.farthest_point_start(pooled, k), np.arange(k)[::-1] * 2):
            for stale in (True, False):
                expected = ot.cluster(torch.as_tensor(pooled), start.tolist(), window, stale, torch.float64)
                labels, _ = tag.kmeans(pooled, start, window, stale_labels=stale)
                assert labels.tolist() == expected


@pytest.mark.parametrize("prior", [0.5, 1.0])
def test_proposals_match_transcription(prior: float) -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        m = int(rng.integers(2, 80))
        n = m + int(rng.integers(0, 40))
        kept = np.sort(rng.choice(n, m, replace=False))
        labels = np.cumsum(rng.random(m) < 0.15) % 5
        adjusted = tag.adjust_similarity(rng.uniform(0.1, 0.4, m).astype(np.float32), 0.2)
        start, end, score = tag.scene_proposals(labels, adjusted, kept, n, prior, "reference")
        expected = ot.proposals(labels.tolist(), adjusted, kept.tolist(), n, prior)
        assert list(zip(start.tolist(), end.tolist(), score.tolist(), strict=True)) == expected


def test_dynamic_start_matches_transcription() -> None:
    rng = np.random.default_rng(4)
    for n in [2, 3, 5, 8, 90, 360]:
        curve = (0.2 + np.cumsum(rng.normal(0, 0.01, n))).astype(np.float32)
        for stride in (20, 40, 3):
            expected = ot.dynamic_start(torch.as_tensor(curve), 0.2, stride)
            assert tag.dynamic_start_frames(curve, 0.2, stride).tolist() == expected


@pytest.mark.parametrize(("preset", "n"), [("charades", 90), ("activitynet", 360)])
@pytest.mark.parametrize("coherence", [True, False], ids=["tc-kmeans", "kmeans"])
def test_reference_matches_transcription_end_to_end(preset: str, n: int, coherence: bool) -> None:
    """Mask vote, adjustment, pooling, k-means++ from torch's generator, clustering, proposals, dynamic start
    and the vote: the same rows in the same order."""
    for curve, feats in _videos(n, 4):
        got = tag.localize(
            curve, feats, n / 3, preset=preset, temporal_coherence=coherence, profile="reference"
        )
        expected = ot.localize(curve, feats, n / 3, preset, coherence, dtype=torch.float64)
        rows = list(zip(got.start_index, got.end_index, got.static_index, strict=True))
        assert rows == [row[:3] for row in expected]
        np.testing.assert_allclose(got.score, [row[3] for row in expected], rtol=1e-6)
        assert np.allclose(got.start, got.start_index / n) and (got.end >= got.start).all()


# --------------------------------------------------------------------------------------- default profile
def _default_rows(seed: int) -> list[list[float]]:
    curve, feats, _ = scene_video(90, DIM, seed=seed)
    p = tag.localize(curve, feats, 30.0)
    return np.column_stack([p.start, p.end, p.score]).tolist()


def test_default_is_deterministic_across_runs_and_processes() -> None:
    here = [_default_rows(seed) for seed in range(3)]
    assert here == [_default_rows(seed) for seed in range(3)]
    code = (
        "import json; from tests.test_tag import _default_rows; "
        "print(json.dumps([_default_rows(s) for s in range(3)]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert json.loads(out.stdout) == here


def test_default_labels_are_the_final_assignment() -> None:
    for curve, feats in _videos(90, 4):
        pooled = tag.pool_features(feats, tag.mask_with_vote(curve, 0.2), len(curve), 21)
        labels, centres = tag.kmeans(pooled, tag.farthest_point_start(pooled, min(9, len(pooled))), 7)
        assert labels.tolist() == tag.assign_labels(pooled, centres, 7).tolist()


def test_stale_labels_are_those_of_the_iteration_before_convergence() -> None:
    # Two big groups at 0 and 1, a row at 0.8 and one at 0.45. From centres (0, 0.8) the row at 0.45 first
    # joins the upper cluster; once that centre has moved to ~1 it joins the lower one, and the centres then
    # move by less than the tolerance: TAG stops and returns the labels from before the switch.
    x = np.concatenate([np.zeros(10_000), np.ones(10_000), [0.8, 0.45]]).astype(np.float32)[:, None]
    start = np.array([0, 20_000])
    final, _ = tag.kmeans(x, start, None)
    stale, _ = tag.kmeans(x, start, None, stale_labels=True)
    assert (final[-1], stale[-1]) == (0, 1)
    assert ot.cluster(torch.as_tensor(x), start.tolist(), None, True, torch.float64)[-1] == 1


# ---------------------------------------------------------------------------------- quirks and fixes
@pytest.mark.parametrize("profile", ["default", "reference"])
def test_one_kept_frame_is_one_scene(profile: str) -> None:
    curve = np.full(30, 0.1, np.float32)
    curve[0] = 0.3  # frame 0 is never voted away; every other frame is below the threshold
    feats = np.random.default_rng(0).normal(size=(30, DIM))
    p = tag.localize(curve, feats, 10.0, profile=profile)  # TAG's code: IndexError
    assert (p.static_index.tolist(), p.end_index.tolist(), p.score.tolist()) == ([0], [30], [1.0])


@pytest.mark.parametrize("profile", ["default", "reference"])
def test_constant_similarities_give_finite_scores(profile: str) -> None:
    feats = tag_curves().scene_video(60, DIM, seed=5)[1]
    p = tag.localize(np.full(60, 0.3, np.float32), feats, 20.0, profile=profile)  # TAG's code: NaN scores
    assert np.isfinite(p.score).all() and np.isfinite(p.static).all()
    assert p.score.tolist() == [1.0] * len(p) and p.static.tolist() == [0.0] * len(p)


def _negative_best() -> tuple[np.ndarray, ...]:
    # A high 20-frame scene that the prior (15 frames) excludes, then two low scenes: every span scores < 0.
    labels = np.repeat([0, 1, 2], [20, 5, 5])
    adjusted = np.repeat(np.float32([1.0, 0.1, 0.2]), [20, 5, 5])
    return labels, adjusted, np.arange(30)


def test_negative_best_score_inverts_reference_confidences_only() -> None:
    from tfvtg.localize import _confidences

    start, end, static = tag.scene_proposals(*_negative_best(), 30, 0.5, "reference")
    assert (static < 0).all() and list(zip(start.tolist(), end.tolist(), strict=True)) == [
        (25, 30),
        (20, 25),
        (20, 30),
    ]
    reference = _confidences(static, "reference")
    default = _confidences(tag.scene_proposals(*_negative_best(), 30, 0.5, "default")[2], "default")
    assert reference[0] == 1 and (reference[1:] > 1).all()  # worse spans weigh more in TAG's vote
    assert default[0] == 1 and (np.diff(default) < 0).all()


@pytest.mark.parametrize("profile", ["default", "reference"])
def test_tied_scores_keep_enumeration_order(profile: str) -> None:
    labels = np.repeat([0, 1, 2, 3], 5)
    adjusted = np.repeat(np.float32([0.3, 0.1, 0.3, 0.1]), 5)
    start, end, score = tag.scene_proposals(labels, adjusted, np.arange(20), 20, 1.0, profile)
    assert (start[0], end[0]) == (0, 20)  # the whole kept sequence scores its plain mean, 0.2
    ties = np.flatnonzero(score == score[1])  # three spans score 0.3 - 0.1 (TAG's torch.sort: any order)
    assert [(start[i], end[i]) for i in ties] == [(0, 5), (0, 15), (10, 15)]


def test_length_prior_in_frames_by_default_and_in_kept_frames_in_the_reference() -> None:
    kept = np.array([0, 1, 10, 11, 20, 21, 30, 31])
    labels = np.repeat([0, 1, 2, 3], 2)
    adjusted = np.float32([0.3, 0.3, 0.2, 0.2, 0.1, 0.1, 0.2, 0.2])
    spans = {
        profile: set(zip(*tag.scene_proposals(labels, adjusted, kept, 40, 0.5, profile)[:2], strict=True))
        for profile in ("reference", "default")
    }
    assert (0, 30) in spans["reference"] and (0, 30) not in spans["default"]  # 6 kept frames, 30 frames
    assert all(e - s <= 20 for s, e in spans["default"])


def test_farthest_point_start_by_hand() -> None:
    x = np.array([[0.0], [1.0], [2.0], [10.0], [4.0]], np.float32)  # mean 3.4
    assert tag.farthest_point_start(x, 3).tolist() == [3, 0, 4]  # 10 is farthest from 3.4, then 0, then 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((np.zeros((3, 2)), np.zeros((3, 4)), 1.0), "1-D"),
        ((np.zeros(3), np.zeros((4, 4)), 1.0), "one feature row per frame"),
        ((np.array([0.1, np.nan, 0.2]), np.zeros((3, 4)), 1.0), "non-finite"),
        ((np.zeros(3), np.full((3, 4), np.inf), 1.0), "non-finite"),
        ((np.zeros(3), np.zeros((3, 4)), 0.0), "duration"),
    ],
)
def test_bad_inputs_are_input_errors(args: tuple, message: str) -> None:
    with pytest.raises(InputError, match=message):
        tag.localize(*args)


def test_unknown_profile_and_presets_without_a_tag_configuration() -> None:
    curve, feats, _ = scene_video(30, DIM)
    with pytest.raises(InputError, match="profile"):
        tag.localize(curve, feats, 10.0, profile="fast")
    with pytest.raises(InputError, match="no configuration for preset 'qvhighlights'"):
        tag.localize(curve, feats, 10.0, preset="qvhighlights")
    assert tag.tag_preset("auto", 120.0)[0] == "activitynet"


@pytest.mark.parametrize("profile", ["default", "reference"])
def test_properties_on_random_curves(profile: str) -> None:
    """Any finite input gives finite confidences (1 for the best score), at most cand_num spans inside the
    video with start <= scene start < end, and the vote only reorders them."""
    rng = np.random.default_rng(9)
    for n in [1, 2, 4, 17, 60, 150]:
        for _ in range(4):
            curve = rng.normal(0.2, rng.choice([0.0, 0.02, 0.2]), n)
            feats = rng.normal(size=(n, 6)) * rng.choice([0.0, 1.0])
            for preset, cand_num in (("charades", 12), ("activitynet", 17)):
                p = tag.localize(curve, feats, n / 3, preset=preset, profile=profile, vote_rank=False)
                assert 1 <= len(p) <= cand_num and np.isfinite(p.score).all() and p.score[0] == 1
                assert (p.start_index >= 0).all() and (p.start_index <= p.static_index).all()
                assert (p.static_index < p.end_index).all() and (p.end_index <= n).all()
                voted = tag.localize(curve, feats, n / 3, preset=preset, profile=profile)
                spans = sorted(zip(p.static_index, p.end_index, strict=True))
                assert sorted(zip(voted.static_index, voted.end_index, strict=True)) == spans
