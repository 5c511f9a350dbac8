"""tfvtg.pipeline.ground_with_scores: the section 5 flow, its equivalence with the official one, its edges."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

from tests.oracle import official
from tfvtg.decompose import Decomposition
from tfvtg.errors import InputError
from tfvtg.localize import PRESETS, localize
from tfvtg.pipeline import ground_with_scores, ground_with_scores_detailed, proposals_to_seconds


def synthetic_curve(text: str, n: int) -> np.ndarray:
    """A deterministic similarity-like curve per description (smoothed noise plus one bump)."""
    rng = np.random.default_rng(zlib.crc32(text.encode()))
    base = np.convolve(rng.normal(0.18, 0.08, n + 8), np.ones(9) / 9, "valid")[:n]
    centre, half = rng.integers(0, n), rng.integers(3, max(4, n // 5))
    base[max(0, centre - half) : centre + half] += rng.uniform(0.05, 0.2)
    return base


def bump(n: int, lo: int, hi: int, base: float = 0.1, peak: float = 0.5) -> np.ndarray:
    curve = np.full(n, base)
    curve[lo:hi] = peak
    return curve


def test_vlm_only_path_returns_the_query_proposals_in_seconds():
    curve = bump(90, 30, 50)
    moments = ground_with_scores(lambda _: curve, 30.0, "a person opens a door")
    props = localize(curve, 20, 45)
    rows = proposals_to_seconds(props, 30.0)
    assert [(m.start, m.end, m.score) for m in moments] == [tuple(r) for r in rows]
    assert moments[0].start <= 10.0 and moments[0].end >= 16.0


def test_full_path_finds_the_sequence_of_sub_events():
    curves = {
        "q": bump(90, 20, 70),
        "p": bump(90, 22, 68),
        "open": bump(90, 20, 40),
        "leave": bump(90, 45, 70),
    }
    d = Decomposition("q", ("p",), (("open",), ("leave",)), "sequentially", source="llm")
    result = ground_with_scores_detailed(curves.__getitem__, 30.0, "q", d, top_k=3)
    assert set(result.curves) == {"q", "p", "open", "leave"}
    assert (result.stride, result.max_stride) == (20, 45)
    short = ground_with_scores_detailed(lambda _: bump(25, 5, 15), 8.0, "q")
    assert (short.stride, short.max_stride) == (12, 12)  # the stride capped at T // 2, as localize uses it
    opening, leaving = result.proposals["open"], result.proposals["leave"]
    merged = [m for m in result.moments if m.start == opening[0, 0] and m.end in leaving[:, 1]]
    assert merged and merged[0].end > opening[0, 1]  # the sequential merge joined the vote
    top = result.moments[0]
    assert top.start >= 6.0 and top.end <= 24.0  # inside the query's active span
    assert len(result.moments) <= 3 and all(
        a.score >= b.score for a, b in zip(result.moments, result.moments[1:], strict=False)
    )


def test_each_description_is_scored_once_even_when_repeated():
    calls: list[str] = []

    def score(text: str) -> np.ndarray:
        calls.append(text)
        return synthetic_curve(text, 90)

    d = Decomposition("q", ("q", "p"), (("p", "s1"), ("s1",)), "simultaneously", source="llm")
    ground_with_scores(score, 30.0, "q", d)
    assert sorted(calls) == ["p", "q", "s1"]


def test_default_maps_frames_through_real_timestamps_and_reference_ignores_them():
    curve = bump(90, 30, 50)
    stamps = np.linspace(0, 29.9, 90) ** 1.05  # variable frame rate
    duration = float(stamps[-1] + 0.3)
    default = ground_with_scores(lambda _: curve, duration, "q", timestamps=stamps)[0]
    props = localize(curve, 20, 45)
    assert default.start == stamps[props.start_index[0]]
    assert default.end == (stamps[props.end_index[0]] if props.end_index[0] < 90 else duration)
    ref = ground_with_scores(lambda _: curve, duration, "q", timestamps=stamps, profile="reference")[0]
    assert ref.start == pytest.approx(props.start_index[0] / 90 * duration)


def test_simultaneously_intersects_by_default():
    curves = {"q": bump(90, 10, 80), "a": bump(90, 20, 60), "b": bump(90, 40, 80)}
    d = Decomposition("q", (), (("a",), ("b",)), "simultaneously", source="llm")
    ref = ground_with_scores_detailed(curves.__getitem__, 30.0, "q", d, profile="reference")
    default = ground_with_scores_detailed(curves.__getitem__, 30.0, "q", d)
    assert len(ref.moments) >= 1 and len(default.moments) >= 1
    a, b = default.proposals["a"][0], default.proposals["b"][0]
    spans = {(m.start, m.end) for m in default.moments}
    assert (max(a[0], b[0]), min(a[1], b[1])) in spans  # the common part of the two best candidates


def test_bad_inputs_raise_input_errors():
    curve = bump(90, 30, 50)
    with pytest.raises(InputError, match="empty"):
        ground_with_scores(lambda _: curve, 30.0, "  ")
    with pytest.raises(InputError, match="duration"):
        ground_with_scores(lambda _: curve, float("nan"), "q")
    with pytest.raises(InputError, match="profile"):
        ground_with_scores(lambda _: curve, 30.0, "q", profile="best")
    with pytest.raises(InputError, match="timestamps"):
        ground_with_scores(lambda _: curve, 30.0, "q", timestamps=np.arange(10.0))
    d = Decomposition("q", ("p",), (), "single-query", source="llm")
    with pytest.raises(InputError, match="frames"):
        ground_with_scores(lambda t: curve if t == "q" else curve[:50], 30.0, "q", d)
    with pytest.raises(InputError, match="non-finite"):
        ground_with_scores(lambda _: np.full(90, np.nan), 30.0, "q")


def test_moments_are_unique_finite_and_inside_the_video():
    rng = np.random.default_rng(2)
    for trial in range(50):
        n = int(rng.integers(2, 300))
        duration = n / 3
        d = Decomposition(
            "q",
            ("p1", "p2"),
            (("a",), ("b", "c")),
            ("sequentially", "simultaneously", "x")[trial % 3],
            source="llm",
        )
        moments = ground_with_scores(
            lambda t, n=n, k=trial: synthetic_curve(f"{t}{k}", n), duration, "q", d, preset="auto"
        )
        spans = [(m.start, m.end) for m in moments]
        assert moments and len(set(spans)) == len(spans)
        assert all(0 <= m.start <= m.end <= duration + 1e-9 and np.isfinite(m.score) for m in moments)


def test_all_charades_llm_outputs_match_the_official_flow(shared_data):
    """All 3,720 shipped decompositions, synthetic curves: the reference top-1 equals the transcription's."""
    records = json.loads((shared_data / "charades-sta" / "llm_outputs.json").read_text())
    mismatches, total = [], 0
    for vid, rec in records.items():
        duration = rec["duration"]
        n = round(duration * 3)
        stride, max_stride = PRESETS["charades"].windows(n)

        def score(text: str, n: int = n, vid: str = vid) -> np.ndarray:
            return synthetic_curve(vid + text, n)

        for sentence, answer in zip(rec["sentences"], rec["response"], strict=True):
            total += 1
            moments = ground_with_scores(
                score, duration, sentence, Decomposition.from_tfvtg(answer, sentence), profile="reference"
            )
            texts = {sentence, *(t for e in answer.get("query_json", []) for t in e["descriptions"])}
            expected = official.eval_with_llm(
                {t: score(t) for t in texts}, duration, sentence, answer, stride, max_stride
            )
            if (moments[0].start, moments[0].end) != pytest.approx(expected):
                mismatches.append((vid, sentence))
    assert total == 3720
    assert mismatches == []
