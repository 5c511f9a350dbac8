"""TAG (Temporal-Aware Grounding): the LLM-free localiser that succeeds TFVTG, from docs/TAG-METHOD.md.

One curve and the raw feature of each frame's winning token in, ranked proposals out (the same `Proposals`
type as `tfvtg.localize.localize`). The steps: a mask with a neighbour vote keeps the frames K; their
similarities are stretched by a power transform; their features, with the time appended, are smoothed over a
moving window and clustered into scenes (temporal-coherence k-means: a frame joins the centre closest on
average over its 7-frame neighbourhood); every span between two scene boundaries is a proposal, scored by mean
adjusted similarity inside minus outside; TFVTG's dynamic start pulls each start back over a rising run; the
top ``cand_num`` are re-ranked by TFVTG's IoU vote.

Profiles:

* ``"reference"`` makes TAG's decisions: its k-means++ start drawn from torch's CPU generator seeded 60
  (torch is imported lazily for these few draws only), the labels of the clustering's previous iteration, the
  length prior compared in kept-frame units, float32 sums and 4-decimal rounding of the scores, confidences
  that invert when the best score is negative. Where TAG's code is not finite or not deterministic it cannot
  be reproduced and the default's handling is used: one kept frame (M = 1, an IndexError there), all kept
  similarities equal (NaN scores there), an empty cluster (NaN centres there: it keeps its centre), equal
  rounded scores (torch's unstable sort there: here, enumeration order). Distances are float64, where TAG's
  are float32: labels can differ where two centres are equally close up to float32 rounding, which happens
  mostly with fewer kept frames than the pooling width (the pooled rows then lie on a line).
* ``"default"`` fixes those bugs and is deterministic: k-means starts from the farthest-point (maximin) rows
  instead of a random draw, so the answer never flips between runs; the final labels; the prior in frames;
  float64 sums without rounding; order-preserving confidences (ties in enumeration order); M = 1 and constant
  similarities handled.

Settings the method doc leaves open, chosen here and shared by both profiles and the benchmark's
transcription: ``var`` is the population variance; k-means++ samples from the minimum squared distance to the
chosen centres normalised to sum 1; centres are "allclose" when ``|new - old| <= 1e-4 + 1e-5 |old|``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tfvtg.combine import GAMMA, vote_order
from tfvtg.errors import InputError
from tfvtg.localize import PROFILES, Proposals, _confidences, dynamic_starts, resolve_preset, rising_mask

__all__ = [
    "TAG_PRESETS",
    "TagPreset",
    "adjust_similarity",
    "assign_labels",
    "dynamic_start_frames",
    "farthest_point_start",
    "kmeans",
    "kmeans_plus_plus_start",
    "localize",
    "mask_with_vote",
    "pool_features",
    "scene_proposals",
    "tag_preset",
]

KMEANS_SEED = 60  # TAG seeds torch's generator with this before every k-means++ start
MAX_ITERATIONS = 100
CENTRE_ATOL = 1e-4
CENTRE_RTOL = 1e-5
LAMBDA_BOUNDS = (-2.0, 2.0)
SHIFT_EPS = 1e-6
SCORE_DECIMALS = 4


@dataclass(frozen=True)
class TagPreset:
    """TAG's hyper-parameters for one dataset configuration (its data_configs), in frames at 3 fps.

    Attributes:
        stride: TFVTG stride rule of the dynamic start's smoothing (only ``min(stride, T // 2)`` matters).
        gamma: Least range of the adjusted similarities.
        cand_num: Proposals kept (and voted) per curve.
        k: Largest number of clusters.
        coherence_window: Frames i-w//2 .. i+w//2 whose mean distance assigns frame i.
        prior: Longest proposal as a fraction of the video.
        pool_width: Moving-average width of the feature pooling.
    """

    stride: int
    gamma: float
    cand_num: int
    k: int
    coherence_window: int
    prior: float
    pool_width: int


TAG_PRESETS: dict[str, TagPreset] = {
    "charades": TagPreset(
        stride=20, gamma=0.2, cand_num=12, k=9, coherence_window=7, prior=0.5, pool_width=21
    ),
    "activitynet": TagPreset(
        stride=40, gamma=0.8, cand_num=17, k=9, coherence_window=7, prior=1.0, pool_width=21
    ),
}


def tag_preset(name: str, duration: float | None = None) -> tuple[str, TagPreset]:
    """The canonical name and TAG settings of a preset (``auto``: charades up to 60 s, else activitynet).

    Raises:
        InputError: Unknown preset, or one TAG has no evaluated configuration for (qvhighlights).
    """
    key = resolve_preset(name, duration)
    if key not in TAG_PRESETS:
        raise InputError(f"TAG has no configuration for preset {key!r}; choose from {', '.join(TAG_PRESETS)}")
    return key, TAG_PRESETS[key]


# ---------------------------------------------------------------------------------------------- stages
def mask_with_vote(curve: np.ndarray, threshold: float) -> np.ndarray:
    """Kept frames: ``curve > threshold``, then frames 1..T-1 dropped when both neighbours are (frame T counts
    as dropped; frame 0 is never voted on); all frames when nothing is left. (T,) bool."""
    above = np.asarray(curve) > threshold
    left = np.concatenate(([True], above[:-1]))  # frame 0 has no vote: treat its left neighbour as kept
    right = np.concatenate((above[1:], [False]))
    kept = above & (left | right)
    return kept if kept.any() else np.ones(len(above), bool)


def _lambda_objective(lam: float, x: np.ndarray) -> float:
    """The function TAG's bounded search minimises: ``-sum(log|y|) + M/2 log var(y)``, y = (x^lam - 1)/lam.

    float32 as TAG computes it; ``var`` is ``np.var`` bit for bit (float32 sums, divisions rounded from
    float64), written out without its Python overhead (the search calls this ~30 times per curve).
    """
    n = len(x)
    y = np.power(x, lam)
    y -= 1
    y /= lam
    logs = np.abs(y)
    np.log(logs, out=logs)
    centred = y - np.float32(np.add.reduce(y) / n)
    centred *= centred
    variance = np.float32(np.add.reduce(centred) / n)
    return float(-np.add.reduce(logs) + n / 2 * np.log(variance))


def adjust_similarity(x: np.ndarray, gamma: float) -> np.ndarray:
    """Step 3: a power transform chosen by a bounded scalar search, min-max scaled onto ``[min x, min x +
    max(range x, gamma)]`` (float32, after shifting non-positive values above 0).

    Constant ``x`` (which includes M = 1), or one the transform makes constant in float32, has nothing to
    scale: it is returned as is (TAG's code gives NaN there), in both profiles.
    """
    from scipy.optimize import minimize_scalar  # scipy is imported by TAG's steps only, not by TFVTG's

    x = np.asarray(x, dtype=np.float32)
    if (x <= 0).any():
        x = x + np.float32(abs(x.min()) + SHIFT_EPS)
    low, high = x.min(), x.max()
    if not high > low:
        return x
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        lam = minimize_scalar(_lambda_objective, bounds=LAMBDA_BOUNDS, args=(x,), method="bounded").x
        y = (x ** float(lam) - 1) / np.float32(lam)
    if not y.max() > y.min():
        return x
    y = (y - y.min()) / (y.max() - y.min())
    return (low + y * np.float32(max(high - low, gamma))).astype(np.float32)


def pool_features(features: np.ndarray, kept: np.ndarray, n_frames: int, width: int) -> np.ndarray:
    """Step 4: the kept frames' features with their time ``n / T`` appended, packed, edge-padded and averaged
    over a moving window of ``width`` frames. (M, D + 1) float32 (averaged in float64, then rounded)."""
    from scipy.ndimage import uniform_filter1d

    index = np.flatnonzero(kept)
    rows = np.empty((index.size, features.shape[1] + 1))
    rows[:, :-1] = features[index].astype(np.float32)
    rows[:, -1] = (index / n_frames).astype(np.float32)
    # mode="nearest" repeats the end rows however far the window reaches: TAG's edge padding
    return uniform_filter1d(rows, width, axis=0, mode="nearest").astype(np.float32)


def kmeans_plus_plus_start(x: np.ndarray, k: int, seed: int = KMEANS_SEED) -> np.ndarray:
    """TAG's k-means++ start: (k,) row indices drawn from torch's CPU generator seeded ``seed``.

    One ``randint(0, M)`` for the first centre, then one ``rand(1)`` per further centre, located by
    ``searchsorted`` in the float32 cumulative sum (accumulated in double, as torch's is) of the squared
    distances to the nearest chosen centre, normalised to sum 1.
    """
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is a core dependency
        raise InputError("the reference profile of TAG needs torch for its k-means++ draws") from exc
    generator = torch.Generator().manual_seed(seed)
    m = len(x)
    chosen = [int(torch.randint(0, m, (1,), generator=generator))]
    # k - 1 <= 15 uniform draws at once equal as many rand(1) calls (torch's serial path below 16 values)
    draws = torch.rand(k - 1, generator=generator).numpy() if k <= 16 else None
    x64 = np.asarray(x, np.float64)
    norms = np.einsum("md,md->m", x64, x64)
    nearest = np.full(m, np.inf, np.float32)
    for i in range(1, k):
        centre = x64[chosen[-1]]
        d = np.maximum(norms + norms[chosen[-1]] - 2.0 * (x64 @ centre), 0.0)  # squared, float64
        np.minimum(nearest, d.astype(np.float32), out=nearest)
        cumulative = np.cumsum(nearest / nearest.sum(dtype=np.float32), dtype=np.float64).astype(np.float32)
        r = draws[i - 1] if draws is not None else torch.rand(1, generator=generator).numpy()[0]
        chosen.append(min(int(np.searchsorted(cumulative, r, side="left")), m - 1))
    return np.asarray(chosen, dtype=np.int64)


def farthest_point_start(x: np.ndarray, k: int) -> np.ndarray:
    """The default profile's start, deterministic: the row farthest from the mean of all rows, then each time
    the row farthest from those already chosen (maximin; ties to the earliest row). (k,) row indices.

    On the synthetic scene videos of benchmarks/tag_curves.py it found the true moment at least as well as
    TAG's seeded k-means++ and better than an even spread in time or the best of 10 seeded k-means++ starts
    (whose answer still changed with the seeds on 53-69 % of videos): see README's TAG section.
    """
    x64 = np.asarray(x, np.float64)
    x64 = x64 - x64.mean(axis=0)  # distances are unchanged; the centred rows' norms are those from the mean
    norms = np.einsum("md,md->m", x64, x64)
    chosen = [int(np.argmax(norms))]
    nearest = np.full(len(x64), np.inf)
    for _ in range(1, k):
        c = chosen[-1]
        np.minimum(nearest, norms + norms[c] - 2.0 * (x64 @ x64[c]), out=nearest)
        chosen.append(int(np.argmax(nearest)))
    return np.asarray(chosen, dtype=np.int64)


def assign_labels(x: np.ndarray, centres: np.ndarray, window: int | None) -> np.ndarray:
    """Each row's cluster: lowest mean Euclidean distance (float64) over its ``window`` neighbourhood, clipped
    at the ends (None: its own distance)."""
    return _Clustering(x, window).assign(np.asarray(centres, np.float64))


class _Clustering:
    """The rows being clustered in float64, with what every Lloyd iteration reuses: their squared norms, each
    row's coherence window, the product of the rows with the centres (recomputed for the centres that moved)
    and the clusters' sums (updated by the rows that changed cluster)."""

    def __init__(self, x: np.ndarray, window: int | None = None) -> None:
        self.x = np.asarray(x, np.float64)
        self.norms = np.einsum("md,md->m", self.x, self.x)
        self.window = window if window is not None and window > 1 else None
        if self.window is not None:
            m, half = len(self.x), self.window // 2
            self.lo = np.maximum(np.arange(m) - half, 0)
            self.hi = np.minimum(np.arange(m) + half + 1, m)
            self.width = (self.hi - self.lo)[:, None].astype(np.float64)
        self._centres = np.empty((0, self.x.shape[1]))
        self._dots = np.empty((len(self.x), 0))
        self._labels: np.ndarray | None = None
        self._sums = self._counts = np.empty(0)

    def distances(self, centres: np.ndarray) -> np.ndarray:
        if self._centres.shape == centres.shape:
            moved = np.flatnonzero((self._centres != centres).any(axis=1))
            if moved.size == len(centres):
                self._dots = self.x @ centres.T
            elif moved.size:
                self._dots[:, moved] = self.x @ centres[moved].T
        else:
            self._dots = self.x @ centres.T
        self._centres = centres
        sq = self.norms[:, None] + np.einsum("kd,kd->k", centres, centres) - 2.0 * self._dots
        return np.sqrt(np.maximum(sq, 0.0, out=sq), out=sq)

    def assign(self, centres: np.ndarray) -> np.ndarray:
        d = self.distances(centres)
        if self.window is not None:  # mean distance over rows i - w//2 .. i + w//2, clipped at the ends
            csum = np.zeros((len(d) + 1, d.shape[1]))
            np.cumsum(d, axis=0, out=csum[1:])
            d = (csum[self.hi] - csum[self.lo]) / self.width
        return np.argmin(d, axis=1)

    def member_means(self, labels: np.ndarray, centres: np.ndarray) -> np.ndarray:
        """Each cluster's mean row (float64 sums, rounded to float32); an empty cluster keeps its centre.

        The sums are kept between calls and updated by the rows that changed cluster only.
        """
        k = len(centres)
        if self._labels is None or len(self._sums) != k:
            members = np.zeros((k, len(labels)))
            members[labels, np.arange(len(labels))] = 1.0
            self._sums, self._counts = members @ self.x, members.sum(axis=1)
        else:
            moved = np.flatnonzero(labels != self._labels)
            if moved.size:
                np.subtract.at(self._sums, self._labels[moved], self.x[moved])
                np.add.at(self._sums, labels[moved], self.x[moved])
                self._counts += np.bincount(labels[moved], minlength=k) - np.bincount(
                    self._labels[moved], minlength=k
                )
        self._labels = labels
        sums, counts = self._sums, self._counts
        filled = counts > 0
        new = centres.copy()
        new[filled] = (sums[filled] / counts[filled, None]).astype(np.float32)
        return new


def kmeans(
    x: np.ndarray, start: np.ndarray, window: int | None, *, stale_labels: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd iterations from the rows ``start``; temporal-coherence assignment when ``window`` is given.

    At most 100 iterations, stopping when the new centres are allclose to the old ones. ``stale_labels``
    returns, as TAG's temporal-coherence k-means does, the labels of the iteration before the last.

    Returns:
        (labels (M,), centres (k, D) float32).
    """
    rows = _Clustering(x, window)
    centres = np.asarray(x, np.float32)[start]
    previous = None
    labels = np.zeros(len(x), np.int64)
    for _ in range(MAX_ITERATIONS):
        labels = rows.assign(centres.astype(np.float64))
        new = rows.member_means(labels, centres)
        if (np.abs(new - centres) <= CENTRE_ATOL + CENTRE_RTOL * np.abs(centres)).all():  # allclose
            break
        centres, previous = new, labels
    if stale_labels and previous is not None:
        return previous, centres
    return labels, centres


def scene_proposals(
    labels: np.ndarray,
    adjusted: np.ndarray,
    kept_index: np.ndarray,
    n_frames: int,
    prior: float,
    profile: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step 6: every span between two scene boundaries, its score, ranked (step 7).

    Returns:
        (start frame, end frame (exclusive), score), best first; ``[0, T]`` with score 1 when none survives
        the length prior.
    """
    reference = profile == "reference"
    m = len(labels)
    bounds = np.concatenate(([0], np.flatnonzero(labels[1:] != labels[:-1]) + 1, [m]))
    bi, bj = np.triu_indices(len(bounds), k=1)
    lo, hi = bounds[bi], bounds[bj]
    ends_at = np.append(kept_index, n_frames)  # the end frame of boundary b: K[b], or T at b = M
    start_frame, end_frame = kept_index[lo], ends_at[hi]
    span = (hi - lo) if reference else (end_frame - start_frame)  # the reference mixes units (kept frames)
    keep = span <= n_frames * prior
    lo, hi, start_frame, end_frame = lo[keep], hi[keep], start_frame[keep], end_frame[keep]
    if lo.size == 0:
        return np.array([0]), np.array([n_frames]), np.array([1.0])
    dtype = np.float32 if reference else np.float64  # the reference scores in float32, as TAG does
    csum = np.concatenate(([0.0], np.cumsum(adjusted, dtype=np.float64))).astype(dtype)
    inside = csum[hi] - csum[lo]
    total = csum[m]
    n_in = (hi - lo).astype(dtype)
    n_out = dtype(m) - n_in
    whole = n_out == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        score = inside / n_in - np.where(whole, 0, (total - inside) / np.where(whole, 1, n_out))
    if reference:
        score = np.round(score.astype(np.float32), SCORE_DECIMALS)
    order = np.argsort(-score, kind="stable")
    return start_frame[order], end_frame[order], score[order].astype(np.float64)


def dynamic_start_frames(curve: np.ndarray, mask_threshold: float, stride: int) -> np.ndarray:
    """Step 8: for every frame, TFVTG's dynamic start (the last frame at or before it that is not rising) on
    ``curve * (curve > mask_threshold)``, smoothed by the taps of the stride ``min(stride, T // 2)``."""
    above = np.asarray(curve) > mask_threshold
    masked = np.where(above, curve, 0).astype(np.float64)
    step = min(stride, len(masked) // 2)
    return dynamic_starts(rising_mask(masked, above.astype(np.float64), step))


# ---------------------------------------------------------------------------------------------- method
def _check_inputs(
    curve: np.ndarray, frame_features: np.ndarray, duration: float
) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(curve)
    if s.ndim != 1 or s.size == 0:
        raise InputError(f"a similarity curve must be a non-empty 1-D array, got shape {s.shape}")
    feats = np.asarray(frame_features)
    if feats.ndim != 2 or len(feats) != s.size:
        raise InputError(
            f"TAG needs one feature row per frame: got features of shape {feats.shape} for {s.size} frames"
        )
    if not np.isfinite(s).all():
        bad = np.flatnonzero(~np.isfinite(s))
        raise InputError(f"similarity curve has non-finite values at frames {bad[:5].tolist()} (of {s.size})")
    if not np.isfinite(feats).all():
        raise InputError("the frame features have non-finite values")
    if not (isinstance(duration, int | float | np.floating) and np.isfinite(duration) and duration > 0):
        raise InputError(f"duration must be a positive number of seconds, got {duration!r}")
    return s.astype(np.float32), feats.astype(np.float32)


def localize(
    curve: np.ndarray,
    frame_features: np.ndarray,
    duration: float,
    *,
    preset: str = "charades",
    temporal_coherence: bool = True,
    profile: str = "default",
    mask_threshold: float = 0.2,
    vote_rank: bool = True,
) -> Proposals:
    """Rank TAG's proposals for one similarity curve (docs/TAG-METHOD.md steps 2-9).

    Args:
        curve: (T,) per-frame similarity of one description.
        frame_features: (T, D) raw (un-normalised) feature of each frame's winning token (CLIP-like encoders:
            the frame feature).
        duration: Video duration in seconds (the vote runs on spans in seconds, as TAG's evaluation does).
        preset: ``charades``, ``activitynet`` or ``auto`` (by duration).
        temporal_coherence: Temporal-coherence k-means (TAG's BLIP-2 setting) or plain k-means (CLIP-like).
        profile: ``"default"`` or ``"reference"`` (see the module docstring).
        mask_threshold: Activity mask threshold (0.2 for BLIP-2, 0 for CLIP-like features).
        vote_rank: Re-rank the ``cand_num`` proposals by TFVTG's IoU vote (TAG's answer: row 0); False keeps
            score order, as TAG's LLM flow receives them.

    Returns:
        `Proposals` (fractions of the video), at most ``cand_num`` rows: ``static_index`` is the scene start
        before the dynamic start, ``static`` the raw score, ``score`` the confidence (score / best score).

    Raises:
        InputError: Bad shapes, non-finite values, unknown profile or preset, non-positive duration.
    """
    if profile not in PROFILES:
        raise InputError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
    s, feats = _check_inputs(curve, frame_features, duration)
    _, config = tag_preset(preset, float(duration))
    start = kmeans_plus_plus_start if profile == "reference" else farthest_point_start
    return _localize(
        s, feats, float(duration), config, temporal_coherence, profile, mask_threshold, vote_rank, start
    )


def _localize(
    s: np.ndarray,
    feats: np.ndarray,
    duration: float,
    config: TagPreset,
    temporal_coherence: bool,
    profile: str,
    mask_threshold: float,
    vote_rank: bool,
    start: Callable[[np.ndarray, int], np.ndarray],
) -> Proposals:
    """`localize` on checked float32 inputs, k-means starting from ``start(pooled rows, k)``."""
    reference = profile == "reference"
    n = s.size
    kept = mask_with_vote(s, mask_threshold)
    kept_index = np.flatnonzero(kept)
    m = kept_index.size
    adjusted = adjust_similarity(s[kept_index], config.gamma)
    if m >= 2:
        pooled = pool_features(feats, kept, n, config.pool_width)
        k = min(config.k, m)
        window = config.coherence_window if temporal_coherence else None
        labels, _ = kmeans(pooled, start(pooled, k), window, stale_labels=reference and temporal_coherence)
    else:
        labels = np.zeros(m, np.int64)  # one kept frame is one scene (an IndexError in TAG's code)
    static_index, end_index, static = scene_proposals(labels, adjusted, kept_index, n, config.prior, profile)
    static_index, end_index, static = (a[: config.cand_num] for a in (static_index, end_index, static))

    start_index = dynamic_start_frames(s, mask_threshold, config.stride)[static_index]
    # score / best score; a best score of exactly 0 (constant similarities) is 0/0 in TAG's code
    score = _confidences(static, profile if static[0] != 0 else "default")

    if vote_rank:
        order = _vote_order(start_index, end_index, score, n, duration, reference)
        static_index, end_index, static, start_index, score = (
            a[order] for a in (static_index, end_index, static, start_index, score)
        )
    return Proposals(
        start=start_index / n,
        end=end_index / n,
        score=score,
        static_start=static_index / n,
        static=static,
        start_index=start_index,
        static_index=static_index,
        end_index=end_index,
        n_frames=n,
    )


def _vote_order(
    start: np.ndarray, end: np.ndarray, score: np.ndarray, n: int, duration: float, reference: bool
) -> np.ndarray:
    """The order TFVTG's vote gives the rows, on spans in seconds (float32 in the reference, as TAG outputs
    them)."""
    if reference:
        d, n32 = np.float32(duration), np.float32(n)
        rows = np.column_stack([start.astype(np.float32) / n32 * d, end.astype(np.float32) / n32 * d,
                                score.astype(np.float32)]).astype(np.float64)
    else:
        rows = np.column_stack([start / n * duration, end / n * duration, score])
    return vote_order(rows, GAMMA, profile="reference" if reference else "default")[0]
