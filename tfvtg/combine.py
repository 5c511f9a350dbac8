"""Voting and combining proposals in seconds: TFVTG-METHOD.md section 4, with no global state.

Proposals are (N, 3) arrays of ``[start, end, confidence]``. `vote` ranks a pool by IoU-weighted agreement;
`combine_sub_events` enumerates one candidate per sub-event under the relation's order constraint and merges
each combination into one span; `integrate_sub_events` votes among those merged spans and keeps the best two.
"""

from __future__ import annotations

import itertools

import numpy as np

from tfvtg.errors import InputError

__all__ = ["GAMMA", "combine_sub_events", "integrate_sub_events", "pairwise_iou", "vote", "vote_order"]

GAMMA = 0.6  # voting exponent on IoU
KEEP_COMBINATIONS = 2


def pairwise_iou(a: np.ndarray, b: np.ndarray, *, profile: str = "default") -> np.ndarray:
    """(N, M) IoU of spans ``a[:, :2]`` with spans ``b[:, :2]``; the union is the hull, as in the official
    code.

    Two zero-length spans have a 0/0 IoU: NaN in the reference profile (as the official code computes it), and
    in the default profile 1 when they are the same instant, else 0.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    lo = np.maximum(a[:, None, 0], b[None, :, 0])
    hi = np.minimum(a[:, None, 1], b[None, :, 1])
    hull = np.maximum(a[:, None, 1], b[None, :, 1]) - np.minimum(a[:, None, 0], b[None, :, 0])
    inter = np.maximum(hi - lo, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / hull
    if profile != "reference":
        same = (a[:, None, 0] == b[None, :, 0]) & (a[:, None, 1] == b[None, :, 1])
        iou = np.where(hull > 0, iou, np.where(same, 1.0, 0.0))
    return iou


def vote_order(
    proposals: np.ndarray, gamma: float = GAMMA, *, profile: str = "default"
) -> tuple[np.ndarray, np.ndarray]:
    """The order `vote` puts a pool's rows in, and the votes in that order.

    ``vote_j = sum_i IoU(p_i, p_j) ** gamma * max(conf_i, 0)`` (each proposal votes for itself too); rows are
    ordered by descending vote, ties keeping their order.
    """
    pool = np.asarray(proposals, np.float64).reshape(-1, 3)
    if len(pool) == 0:
        return np.empty(0, np.int64), np.empty(0)
    weights = np.maximum(pool[:, 2], 0.0)
    votes = (pairwise_iou(pool, pool, profile=profile) ** gamma * weights[:, None]).sum(axis=0)
    order = np.argsort(-votes, kind="stable")
    return order, votes[order]


def vote(
    proposals: np.ndarray, gamma: float = GAMMA, *, profile: str = "default"
) -> tuple[np.ndarray, np.ndarray]:
    """Rank a pool of proposals by IoU-weighted voting (`vote_order`).

    Args:
        proposals: (N, 3) ``[start, end, confidence]``.
        gamma: Exponent on the IoU.
        profile: ``"reference"`` keeps the official NaN of two identical zero-length spans.

    Returns:
        The rows reordered by descending vote (ties keep their order; the confidence column is unchanged) and
        the votes in that order.
    """
    pool = np.asarray(proposals, np.float64).reshape(-1, 3)
    order, votes = vote_order(pool, gamma, profile=profile)
    return pool[order], votes


def combine_sub_events(
    candidates: list[np.ndarray], relation: str, *, profile: str = "default"
) -> np.ndarray:
    """Merge one candidate of every sub-event into one span, for every combination the relation allows.

    ``sequentially``: each candidate starts no earlier than the previous one ends. ``simultaneously``: all
    share an instant (max start <= min end). Any other relation: no constraint. A combination becomes
    ``[min start, max end, prod(max(conf, 0))]``; in the default profile a ``simultaneously`` combination
    becomes the common part ``[max start, min end]`` instead (the paper's reading), or the hull when they only
    touch.

    Args:
        candidates: One (k_i, 3) array per sub-event, in order.
        relation: The decomposition's relation.
        profile: ``"default"`` or ``"reference"``.

    Returns:
        (C, 3) merged spans in depth-first order of the candidates (first sub-event varies slowest).
    """
    if not candidates or any(len(c) == 0 for c in candidates):
        return np.empty((0, 3))
    cands = [np.asarray(c, np.float64).reshape(-1, 3) for c in candidates]
    picks = np.array(list(itertools.product(*(range(len(c)) for c in cands))), dtype=np.int64)
    starts = np.stack([c[picks[:, k], 0] for k, c in enumerate(cands)], axis=1)
    ends = np.stack([c[picks[:, k], 1] for k, c in enumerate(cands)], axis=1)
    confs = np.stack([c[picks[:, k], 2] for k, c in enumerate(cands)], axis=1)
    keep = np.ones(len(picks), bool)
    first, last = starts.min(axis=1), ends.max(axis=1)
    if relation == "sequentially":
        keep &= (starts[:, 1:] >= ends[:, :-1]).all(axis=1)
    elif relation == "simultaneously":
        common_start, common_end = starts.max(axis=1), ends.min(axis=1)
        keep &= common_start <= common_end
        if profile != "reference":
            overlap = common_start < common_end
            first = np.where(overlap, common_start, first)
            last = np.where(overlap, common_end, last)
    merged = np.stack([first, last, np.maximum(confs, 0.0).prod(axis=1)], axis=1)
    return merged[keep]


def integrate_sub_events(
    candidates: list[np.ndarray],
    relation: str,
    *,
    gamma: float = GAMMA,
    keep: int = KEEP_COMBINATIONS,
    profile: str = "default",
) -> np.ndarray:
    """The best ``keep`` merged combinations of the sub-events' candidates, by voting among them.

    Returns an empty (0, 3) array when there are no sub-events or no combination satisfies the relation.
    """
    if keep < 0:
        raise InputError(f"keep must be >= 0, got {keep}")
    merged = combine_sub_events(candidates, relation, profile=profile)
    if len(merged) == 0:
        return merged
    return vote(merged, gamma, profile=profile)[0][:keep]
