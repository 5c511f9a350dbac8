"""A literal transcription of TAG's localiser, written from docs/TAG-METHOD.md steps 1-9 (not from its code).

It is the baseline of benchmarks/bench_tag.py and the oracle of tests/test_tag.py, so it is deliberately
straightforward and keeps TAG's structure and cost profile: torch tensors on the CPU, Python loops over frames
for the mask vote, the temporal-coherence assignment, the cluster means and the dynamic start, a double loop
over scene-boundary pairs for the proposals, and TFVTG's vote (benchmarks/official_tfvtg.select_proposal).
It makes the reference profile's decisions; nothing here is optimised.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import minimize_scalar

sys.path.insert(0, str(Path(__file__).resolve().parent))
from official_tfvtg import gaussian_kernel, select_proposal  # noqa: E402

CONFIGS = {
    "charades": dict(stride=20, gamma=0.2, cand_num=12, k=9, window=7, prior=0.5, pool=21),
    "activitynet": dict(stride=40, gamma=0.8, cand_num=17, k=9, window=7, prior=1.0, pool=21),
}


def similarity(video_tokens: np.ndarray, text: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 1: max cosine over the tokens, and the token attaining it."""
    v = torch.as_tensor(np.asarray(video_tokens, np.float32))
    t = torch.as_tensor(np.asarray(text, np.float32))
    v = v / v.norm(dim=-1, keepdim=True)
    t = t / t.norm()
    sims = v @ t
    return sims.max(dim=1)


def mask_vote(s: torch.Tensor, thr: float) -> list[int]:
    """Step 2: kept frame indices."""
    n = len(s)
    m = [bool(s[i] > thr) for i in range(n)]
    out = list(m)
    for i in range(1, n):
        right = m[i + 1] if i + 1 < n else False
        if m[i] and not m[i - 1] and not right:
            out[i] = False
    kept = [i for i in range(n) if out[i]]
    return kept if kept else list(range(n))


def adjust(x: np.ndarray, gamma: float) -> np.ndarray:
    """Step 3 (float32 on the kept similarities)."""
    x = np.asarray(x, np.float32)
    if np.any(x <= 0):
        x = x + np.float32(abs(x.min()) + 1e-6)

    def objective(lam):
        y = (x**lam - 1) / lam
        return float(-np.sum(np.log(np.abs(y))) + len(x) / 2 * np.log(np.var(y)))

    lam = minimize_scalar(objective, bounds=(-2, 2), method="bounded").x
    y = (x ** float(lam) - 1) / np.float32(lam)
    y = (y - y.min()) / (y.max() - y.min())
    return (x.min() + y * np.float32(max(x.max() - x.min(), gamma))).astype(np.float32)


def pool(feats: torch.Tensor, kept: list[int], n: int, width: int) -> torch.Tensor:
    """Step 4: (M, D + 1) moving average of the packed rows with the time appended, edge-padded (conv1d)."""
    times = torch.tensor([i / n for i in kept], dtype=torch.float32)[:, None]
    rows = torch.cat([feats[kept], times], dim=1)
    half = (width - 1) // 2
    padded = torch.cat([rows[:1].repeat(half, 1), rows, rows[-1:].repeat(width - 1 - half, 1)])
    kernel = torch.full((rows.shape[1], 1, width), 1.0 / width)
    return torch.nn.functional.conv1d(padded.T[None], kernel, groups=rows.shape[1])[0].T


def kmeans_pp(x: torch.Tensor, k: int, seed: int = 60) -> list[int]:
    """Step 5's start: manual_seed(60), randint for the first centre, rand + searchsorted for the rest."""
    torch.manual_seed(seed)
    m = len(x)
    chosen = [int(torch.randint(0, m, (1,)))]
    for _ in range(1, k):
        d = torch.cdist(x, x[chosen]).min(dim=1).values ** 2
        probs = d / d.sum()
        cum = torch.cumsum(probs, dim=0)
        r = torch.rand(1)
        chosen.append(min(int(torch.searchsorted(cum, r)), m - 1))
    return chosen


def cluster(x: torch.Tensor, start: list[int], window: int | None, stale: bool,
            dtype: torch.dtype = torch.float32) -> list[int]:
    """Step 5's Lloyd loop: temporal-coherence assignment (window) or plain; TAG's stale labels if asked.

    Distances are float32 as TAG's cdist computes them; ``dtype=torch.float64`` gives the distances tfvtg's
    reference profile uses (the doc's exactness hazard: a float32 near-tie can go either way).
    """
    m = len(x)
    xs = x.to(dtype)
    centres = x[start].clone()
    labels = prev = None
    for _ in range(100):
        c = centres.to(dtype)
        labels = []
        for i in range(m):  # one frame at a time: the distances of its window's frames to every centre
            if window:
                lo, hi = max(0, i - window // 2), min(m, i + window // 2 + 1)
                labels.append(int(torch.cdist(xs[lo:hi], c).mean(dim=0).argmin()))
            else:
                labels.append(int(torch.cdist(xs[i : i + 1], c)[0].argmin()))
        new = centres.clone()
        lab = torch.tensor(labels)
        for c in range(len(centres)):
            if bool((lab == c).any()):
                new[c] = x[lab == c].double().mean(dim=0).float()
        if torch.allclose(new, centres, rtol=1e-5, atol=1e-4):
            break
        centres, prev = new, labels
    return prev if stale and prev is not None else labels


def proposals(labels: list[int], adj: np.ndarray, kept: list[int], n: int, prior: float):
    """Steps 6-7: (start frame, end frame, rounded score) of every boundary pair, best first."""
    m = len(labels)
    bounds = [0] + [i for i in range(1, m) if labels[i] != labels[i - 1]] + [m]
    csum = [0.0] + torch.cumsum(torch.as_tensor(adj, dtype=torch.float32), 0).tolist()
    csum = np.asarray(csum, np.float32)
    total = csum[m]
    out = []
    for a in range(len(bounds)):
        for b in range(a + 1, len(bounds)):
            bi, bj = bounds[a], bounds[b]
            if bj - bi > n * prior:
                continue
            inside = csum[bj] - csum[bi]
            n_in = np.float32(bj - bi)
            if bj - bi == m:
                score = inside / n_in
            else:
                score = inside / n_in - (total - inside) / (np.float32(m) - n_in)
            end = kept[bj] if bj < m else n
            out.append((kept[bi], end, float(np.round(np.float32(score), 4))))
    if not out:
        return [(0, n, 1.0)]
    out.sort(key=lambda p: -p[2])
    return out


def dynamic_start(s: torch.Tensor, thr: float, stride: int) -> list[int]:
    """Step 8: TFVTG's dynamic start on s * m0, one 0-d tensor step per frame (its loop also accumulates the
    dynamic score, which nothing uses, as TFVTG's get_dynamic_scores does)."""
    n = len(s)
    m = (s > thr).float()
    x = (s * m)[None]
    step = min(stride, n // 2)
    g = torch.tensor(gaussian_kernel(step), dtype=torch.float32)[None, None]
    smooth = torch.nn.functional.conv1d(x[:, None].double(), g.double())[:, 0]
    d = smooth[:, 1:] - smooth[:, :-1]
    pad = (n - d.shape[1]) // 2
    delta = torch.nn.functional.pad(d, (pad, n - d.shape[1] - pad)) * m
    out, last = [], 0
    d1 = d2 = torch.zeros(1, dtype=torch.float64)
    score = torch.zeros(1, dtype=torch.float64)
    dynamic_scores = torch.zeros(n, dtype=torch.float64)
    for t in range(n):
        d0 = delta[:, t]
        rising = (3 * d0 > 5e-4) | (2 * d0 + d1 > 5e-4) | (d0 + d1 + d2 > 5e-4)
        if not bool(rising):
            last = t
            score = torch.zeros(1, dtype=torch.float64)
        else:
            score = score + torch.maximum(torch.maximum(3 * d0, 2 * d0 + d1), d0 + d1 + d2)
        dynamic_scores[t] = score[0]
        out.append(last)
        d2, d1 = d1, d0
    return out


def localize(curve, frame_features, duration: float, preset: str = "charades", tc: bool = True,
             thr: float = 0.2, seed: int = 60, vote: bool = True, dtype: torch.dtype = torch.float32):
    """Steps 2-9 on one curve: rows (start frame, end frame, static start frame, confidence), TAG's order."""
    cfg = CONFIGS[preset]
    s = torch.as_tensor(np.asarray(curve, np.float32))
    feats = torch.as_tensor(np.asarray(frame_features, np.float32))
    n = len(s)
    kept = mask_vote(s, thr)
    adj = adjust(s[kept].numpy(), cfg["gamma"])
    x = pool(feats, kept, n, cfg["pool"])
    k = min(cfg["k"], max(2, len(kept)))
    start = kmeans_pp(x, k, seed)
    labels = cluster(x, start, cfg["window"] if tc else None, stale=tc, dtype=dtype)
    props = proposals(labels, adj, kept, n, cfg["prior"])[: cfg["cand_num"]]
    starts = dynamic_start(s, thr, cfg["stride"])
    top = np.float32(props[0][2])
    d32 = np.float32(duration)
    rows = [(starts[a], b, a, float(np.float32(sc) / top)) for a, b, sc in props]
    if not vote:
        return rows
    table = np.array([[np.float32(r[0]) / np.float32(n) * d32, np.float32(r[1]) / np.float32(n) * d32, r[3],
                       i] for i, r in enumerate(rows)], dtype=np.float64)
    ranked = select_proposal_with_index(table)
    return [rows[int(i)] for i in ranked]


def select_proposal_with_index(table: np.ndarray) -> list[int]:
    """TFVTG's vote on [start, end, conf, row] rows, returning the row numbers in the vote's order."""
    voted = select_proposal(table[:, :3].copy())
    order, used = [], set()
    for row in voted:
        for i in range(len(table)):
            if i not in used and all(table[i, :3] == row):
                used.add(i)
                order.append(i)
                break
    return order
