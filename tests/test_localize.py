"""tfvtg.localize: each rule of TFVTG-METHOD.md section 3 by hand, plus properties and the oracle."""

from __future__ import annotations

import numpy as np
import pytest

from tests.oracle import official
from tfvtg.errors import InputError
from tfvtg.localize import (
    PRESETS,
    dynamic_starts,
    gaussian_taps,
    localize,
    resolve_preset,
    rising_mask,
    static_scores,
    window_frames,
)

PHI0, PHI1 = 0.3989422804014327, 0.24197072451914337


def smooth_curve(rng: np.random.Generator, n: int) -> np.ndarray:
    """A similarity-like curve: smoothed noise around the mask threshold with one bump."""
    base = np.convolve(rng.normal(0.18, 0.08, n + 8), np.ones(9) / 9, "valid")[:n]
    centre, half = rng.integers(0, n), rng.integers(2, max(3, n // 4))
    base[max(0, centre - half) : centre + half] += rng.uniform(0.05, 0.2)
    return base


def test_gaussian_taps_follow_the_effective_stride():
    assert gaussian_taps(1).tolist() == [1.0]
    assert gaussian_taps(2).tolist() == [1.0]
    assert gaussian_taps(3) == pytest.approx([PHI0])
    for stride in (4, 5, 20, 40):
        assert gaussian_taps(stride) == pytest.approx([PHI1, PHI0, PHI1])
    assert gaussian_taps(20).sum() == pytest.approx(0.8829, abs=1e-4)  # not normalised to 1


def test_rising_test_and_dynamic_start_by_hand():
    # stride 2 -> taps [1]: delta_t = x[t+1] - x[t] = [0, 0, .3, .2, .2, 0, 0, 0, 0, 0]
    x = np.array([0, 0, 0, 0.3, 0.5, 0.7, 0.7, 0.7, 0.7, 0.7])
    rising = rising_mask(x, np.ones(10), stride=2)
    # t=5: 2*0 + 0.2 > theta; t=6: 0 + 0 + 0.2 > theta; t=7: nothing in the last 3 deltas
    assert rising.tolist() == [False, False, True, True, True, True, True, False, False, False]
    assert dynamic_starts(rising).tolist() == [0, 1, 1, 1, 1, 1, 1, 7, 8, 9]


def test_rising_test_uses_the_centred_smoothing_and_the_mask():
    x = np.array([0, 0, 0, 0, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4])
    # 3 taps: delta_t = smooth(t+1) - smooth(t), smooth(c) = phi1 x[c-1] + phi0 x[c] + phi1 x[c+1]
    rising = rising_mask(x, np.ones(10), stride=20)
    smooth = np.correlate(x, [PHI1, PHI0, PHI1], "valid")  # centred at 1..8
    delta = np.zeros(10)
    delta[1:8] = np.diff(smooth)
    assert delta[2] == pytest.approx(0.4 * PHI1)  # the rise is seen one frame early (window reaches ahead)
    assert rising[2:6].all() and not rising[0] and not rising[1]
    # masking frame 3 zeroes its delta, which breaks the run there only if the neighbours do not carry it
    masked_rise = rising_mask(x, np.array([1, 1, 1, 0, 1, 1, 1, 1, 1, 1.0]), stride=20)
    assert masked_rise[3]  # 2*0 + delta_2 > theta still
    assert dynamic_starts(rising_mask(x * 0, np.ones(10), stride=20)).tolist() == list(range(10))


def test_static_score_by_hand_with_masked_frames():
    curve = np.array([0.5, 0.1, 0.3, 0.6, 0.25, 0.1])
    mask = curve > 0.2
    x = np.where(mask, curve, 0.0)
    s = static_scores(x, mask, np.array([2, 4]), keep_full=False)
    # L=2, i=2: inside .9 / 2; outside (.5 + .25) over 2 active frames
    assert s[0, 2] == pytest.approx(0.45 - 0.375)
    # L=2, i=0: the masked frame 1 counts as 0 inside (divide by L), outside divides by active frames only
    assert s[0, 0] == pytest.approx(0.25 - 1.15 / 3)
    assert s[1, 0] == pytest.approx(1.4 / 4 - 0.25)
    assert s[1, 1] == pytest.approx(1.15 / 4 - 0.5)
    assert np.isneginf(s[0, 5]) and np.isneginf(s[1, 3])  # windows past the end


def test_window_with_every_active_frame_is_dropped_in_reference_and_kept_in_default():
    curve = np.array([0.1, 0.5, 0.6, 0.1])
    mask = curve > 0.2
    x = np.where(mask, curve, 0.0)
    assert np.isneginf(static_scores(x, mask, np.array([2]), keep_full=False)[0, 1])
    assert static_scores(x, mask, np.array([2]), keep_full=True)[0, 1] == pytest.approx(0.55)
    ref = localize(curve, 2, 2, profile="reference")
    assert 1 not in ref.static_index.tolist() and ref.static_index[0] == 2  # the evidence window is lost
    top = localize(curve, 2, 2, profile="default")
    assert (top.static_index[0], top.end_index[0]) == (1, 3)  # the default ranks it first


def test_lengths_are_multiples_of_the_capped_stride_up_to_max_stride():
    curve = smooth_curve(np.random.default_rng(3), 90)
    props = localize(curve, 20, 45, top_k=50)
    assert set(np.unique(props.end_index - props.static_index)) <= {20, 40}
    props = localize(curve[:30], 20, 30, top_k=50)  # stride capped at T // 2 = 15
    assert set(np.unique(props.end_index - props.static_index)) <= {15, 30}


def test_nms_suppresses_overlaps_above_threshold_and_ranks_by_score():
    rng = np.random.default_rng(0)
    for _ in range(20):
        props = localize(smooth_curve(rng, 120), 10, 60, top_k=10)
        assert np.all(np.diff(props.static) <= 0)
        lo, hi = props.static_index, props.end_index
        for a in range(len(props)):
            for b in range(a):
                inter = max(0, min(hi[a], hi[b]) - max(lo[a], lo[b]))
                assert inter / (max(hi[a], hi[b]) - min(lo[a], lo[b])) <= 0.3 + 1e-6


def test_confidences_invert_in_reference_and_never_in_default():
    curve = np.zeros(30)
    curve[::3] = np.linspace(0.25, 0.5, 10)  # isolated active frames: every window scores below zero
    ref = localize(curve, 3, 15, profile="reference")
    default = localize(curve, 3, 15, profile="default")
    assert ref.static[0] < 0 and ref.score[0] == pytest.approx(1.0)
    assert (ref.score > 1.0).any()  # bug B2: worse windows get higher confidence
    assert default.score[0] == pytest.approx(1.0) and np.all(np.diff(default.score) <= 0)
    positive = localize(smooth_curve(np.random.default_rng(1), 90), 20, 45)
    same = localize(smooth_curve(np.random.default_rng(1), 90), 20, 45, profile="reference")
    assert positive.static[0] > 0 and positive.score == pytest.approx(same.score, rel=1e-6)


def test_degenerate_curves():
    one = localize(np.array([0.5]), 20, 0)
    assert (one.start_index[0], one.end_index[0]) == (0, 1) and np.isfinite(one.score).all()
    assert localize(np.array([0.5]), 20, 0, profile="reference").fallback
    low = np.full(60, 0.05)
    low[20:30] = 0.1  # nothing above the mask threshold
    ref = localize(low, 20, 30, profile="reference")
    assert ref.fallback and ref.end.tolist() == [0.0, 0.0, 0.0] and ref.score.tolist() == [1.0, 1.0, 1.0]
    default = localize(low, 10, 30)
    assert not default.fallback and default.static_index[0] <= 20 < default.end_index[0]
    flat = localize(np.full(50, 0.3), 10, 25)
    assert np.isfinite(flat.score).all() and flat.score[0] == 1.0
    with pytest.raises(InputError, match="non-finite"):
        localize(np.array([0.1, np.nan, 0.3]), 1, 2)
    with pytest.raises(InputError, match="non-empty"):
        localize(np.array([]), 1, 2)
    with pytest.raises(InputError, match="profile"):
        localize(np.ones(5), 1, 2, profile="fast")
    with pytest.raises(InputError, match="positive"):
        localize(np.ones(5), 0, 2)


def test_default_profile_properties_on_random_curves():
    rng = np.random.default_rng(7)
    for trial in range(200):
        n = int(rng.integers(1, 400))
        curve = smooth_curve(rng, n) if trial % 2 else rng.uniform(-0.2, 0.6, n)
        stride, max_stride = PRESETS[("charades", "activitynet", "qvhighlights")[trial % 3]].windows(n)
        k = int(rng.integers(1, 12))
        props = localize(curve, stride, max_stride, top_k=k)
        assert 1 <= len(props) <= k
        assert np.isfinite(props.score).all() and np.isfinite(props.static).all()
        assert np.all(np.diff(props.score) <= 1e-12) and props.score[0] == pytest.approx(1.0)
        assert np.all(props.start_index <= props.static_index)
        assert np.all(props.static_index < props.end_index) and np.all(props.end_index <= n)
        assert np.all((props.start >= 0) & (props.end <= 1))


def test_reference_profile_matches_the_official_transcription():
    rng = np.random.default_rng(11)
    for trial in range(120):
        n = int(rng.integers(4, 240))
        curve = smooth_curve(rng, n) if trial % 3 else rng.uniform(0.0, 0.5, n)
        preset = ("charades", "activitynet", "qvhighlights")[trial % 3]
        stride, max_stride = PRESETS[preset].windows(n)
        expected = official.generate_proposal(curve, stride, max_stride)[:10]
        props = localize(curve, stride, max_stride, profile="reference")
        if not expected:
            assert props.fallback
            continue
        got = list(
            zip(
                props.start_index.tolist(), props.static_index.tolist(), props.end_index.tolist(), strict=True
            )
        )
        assert got == [(round(c[3] * n), c[4], c[5]) for c in expected]
        assert props.score == pytest.approx(
            [float(np.float32(c[2]) / np.float32(expected[0][2])) for c in expected]
        )


def test_top_k_early_exit_equals_full_nms_on_long_curves():
    curve = smooth_curve(np.random.default_rng(5), 3000)
    stride, max_stride = PRESETS["activitynet"].windows(3000)
    fast = localize(curve, stride, max_stride, top_k=10)
    full = localize(curve, stride, max_stride, top_k=10**6)
    assert len(full) > 10
    assert fast.static_index.tolist() == full.static_index[:10].tolist()
    assert fast.end_index.tolist() == full.end_index[:10].tolist()


def test_presets():
    assert window_frames("charades", 90) == (20, 45)
    assert window_frames("activitynet", 360) == (40, 360)
    assert window_frames("qvhighlights", 450) == (50, 225)
    assert resolve_preset("Charades-STA") == "charades"
    assert resolve_preset("auto", 30.0) == "charades" and resolve_preset("auto", 120.0) == "activitynet"
    with pytest.raises(InputError, match="unknown preset"):
        resolve_preset("kinetics")
    with pytest.raises(InputError, match="duration"):
        resolve_preset("auto")


def test_window_frames_from_presets_and_seconds():
    assert window_frames("charades", 90) == (20, 45)
    assert window_frames("charades", 30, fps=1.0) == (7, 15)  # 20 frames at 3 fps = 6.7 s = 7 frames at 1 fps
    assert window_frames("auto", 600, duration=200.0) == (40, 600)
    assert window_frames("charades", 90, stride_seconds=2.0, max_length_seconds=10.0) == (6, 30)
    with pytest.raises(InputError, match="positive"):
        window_frames("charades", 90, stride_seconds=0)
    with pytest.raises(InputError, match="fps"):
        window_frames("charades", 90, fps=0)


def test_small_and_general_nms_paths_agree(monkeypatch):
    import tfvtg.localize as module

    rng = np.random.default_rng(9)
    for _ in range(30):
        n = int(rng.integers(20, 60))  # at most ~240 candidates: the small path unless forced off
        curve = np.round(smooth_curve(rng, n), 2)  # rounding makes exact ties, which both must order alike
        small = localize(curve, 5, n // 2, top_k=8)
        for scan in (module._SCAN_NMS, 0):  # the sorted scan without the cached table, and the blocks
            with monkeypatch.context() as patch:
                patch.setattr(module, "_SMALL_NMS", 0)
                patch.setattr(module, "_SCAN_NMS", scan)
                general = localize(curve, 5, n // 2, top_k=8)
            assert small.static_index.tolist() == general.static_index.tolist()
            assert small.end_index.tolist() == general.end_index.tolist()


# ----------------------------------------------------------------- fast paths against the plain computation


def _straightforward(curve, stride, max_stride, top_k, threshold, keep_full):
    """Every window scored one by one, a stable sort and a greedy NMS over every candidate (float32 IoU of
    the fractions): the computation `localize` makes fast. Returns [(start, end, static), ...]."""
    n = len(curve)
    mask = curve > 0.2
    if keep_full and not mask.any():
        mask = np.ones(n, bool)
    x = np.where(mask, curve, 0.0)
    step, longest = min(stride, n // 2), min(n, max_stride)
    if keep_full:
        step = max(step, 1)
        longest = max(longest, step)
    csum = np.concatenate(([0.0], np.cumsum(x))).tolist()
    ccnt = np.concatenate(([0.0], np.cumsum(mask.astype(float)))).tolist()
    cands = []
    for length in range(step, longest + 1, step):
        for i in range(n - length + 1):
            inside = csum[i + length] - csum[i]
            n_out = ccnt[-1] - (ccnt[i + length] - ccnt[i])
            if n_out <= 0 and not keep_full:
                continue
            outside = (csum[-1] - inside) / n_out if n_out > 0 else 0.0
            cands.append((i, i + length, inside / length - outside))
    cands.sort(key=lambda c: -c[2])
    lo = np.array([c[0] for c in cands], np.float32) / np.float32(n)
    hi = np.array([c[1] for c in cands], np.float32) / np.float32(n)
    kept: list[int] = []
    for a in range(len(cands)):
        inter = np.maximum(np.minimum(hi[kept], hi[a]) - np.maximum(lo[kept], lo[a]), np.float32(0))
        iou = inter / (np.maximum(hi[kept], hi[a]) - np.minimum(lo[kept], lo[a]))
        if not (iou > np.float32(threshold)).any():
            kept.append(a)
            if len(kept) == top_k:
                break
    return [cands[a] for a in kept]


def shaped_curve(rng: np.random.Generator, n: int, shape: str) -> np.ndarray:
    """Curves of the shapes bench_localize times, plus ties and windows that hold every active frame."""
    t = np.arange(n) / n

    def bump(start, width, height):
        inside = (t >= start) & (t < start + width)
        return height * np.where(inside, np.sin(np.pi * (t - start) / width) ** 2, 0.0)

    if shape == "bump":
        return 0.25 + bump(rng.uniform(0, 0.8), rng.uniform(0.05, 0.3), 0.15) + rng.normal(0, 0.01, n)
    if shape == "two-bump":
        return 0.25 + bump(0.1, 0.15, 0.13) + bump(rng.uniform(0.4, 0.8), 0.15, 0.15) + rng.normal(0, 0.01, n)
    if shape == "flat":  # every window ties in exact arithmetic
        return np.full(n, rng.choice([0.3, 0.25, 0.1]))
    if shape == "noisy":
        return np.round(rng.uniform(0.1, 0.4, n), 2)  # rounded: exact ties between windows
    if shape == "stepped":
        return np.repeat(rng.choice([0.15, 0.22, 0.28, 0.35], size=8), -(-n // 8))[:n]
    if shape == "b1":  # one short active run: windows holding every active frame (bug B1)
        curve = np.full(n, 0.1)
        start = int(rng.integers(0, max(1, n - 12)))
        curve[start : start + int(rng.integers(1, 12))] = rng.uniform(0.3, 0.5)
        return curve
    return smooth_curve(rng, n)


@pytest.mark.parametrize("shape", ["bump", "two-bump", "flat", "noisy", "stepped", "b1", "mixed"])
def test_fast_paths_equal_the_straightforward_computation(shape, monkeypatch):
    import tfvtg.localize as module

    rng = np.random.default_rng(sum(map(ord, shape)))
    for trial in range(14):
        n = int(rng.integers(30, 700))
        x = shaped_curve(rng, n, shape)
        stride = int(rng.choice([4, 13, 20, 40]))
        max_stride = int(n * rng.choice([0.5, 1.0]))
        top_k = int(rng.choice([1, 5, 10, 30]))
        threshold = float(rng.choice([0.3, 0.3, 0.5, 0.7, 0.0, 1.0, 1.5]))
        for profile in ("reference", "default"):
            expected = _straightforward(x, stride, max_stride, top_k, threshold, profile == "default")
            # Each path: the table-driven and the plain sorted scan where they apply, and the block search.
            for small, scan in ((400, 8000), (0, 8000), (0, 0)):
                monkeypatch.setattr(module, "_SMALL_NMS", small)
                monkeypatch.setattr(module, "_SCAN_NMS", scan)
                got = localize(x, stride, max_stride, top_k=top_k, nms_threshold=threshold, profile=profile)
                if not expected:
                    assert got.fallback
                    continue
                rows = list(
                    zip(got.static_index.tolist(), got.end_index.tolist(), got.static.tolist(), strict=True)
                )
                assert rows == expected, (shape, trial, profile, small, scan)


def test_suppressed_intervals_hold_every_suppressed_start():
    from tfvtg.localize import _fractions, _iou32, _Suppression

    rng = np.random.default_rng(4)
    for n, step in ((90, 20), (700, 7), (1800, 40), (10800, 40)):
        lengths = np.arange(step, n + 1, step)
        starts = np.arange(n)[None, :]
        valid = starts <= (n - lengths)[:, None]
        lo, hi = _fractions(starts, n), _fractions(starts + lengths[:, None], n)
        for threshold in (0.3, 0.5, 0.7, 0.0, 0.999, 1.0, -0.1):
            suppression = _Suppression(lengths, n, threshold)
            for _ in range(3):
                length = int(rng.choice(lengths))
                s = int(rng.integers(0, n - length + 1))
                iou = _iou32(lo, hi, _fractions(np.array(s), n), _fractions(np.array(s + length), n))
                hit = (iou > np.float32(threshold)) & valid
                lo_, hi_ = suppression.starts(s, s + length)
                sure = (starts >= lo_[0][:, None]) & (starts <= hi_[0][:, None]) & valid
                maybe = (starts >= lo_[1][:, None]) & (starts <= hi_[1][:, None])
                assert not (sure & ~hit).any() and not (hit & ~maybe).any(), (n, threshold, s, length)
