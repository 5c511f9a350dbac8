"""A literal transcription of TFVTG's official algorithm, written from docs/TFVTG-METHOD.md sections 3-5.

It is the baseline of the benchmarks and the oracle of the reference-profile tests, so it is deliberately
straightforward: Python loops over frames and windows, candidates listed by length then start, a stable sort
and a greedy NMS over every candidate, as the official code does (on CPU, without torch). Windows with no
active frame outside are dropped (the exact-arithmetic outcome of the official NaN filter). Nothing here is
optimised.
"""

from __future__ import annotations

import math

import numpy as np


def gaussian_kernel(stride: int) -> list[float]:
    if stride < 3:
        return [1.0]
    half = min(stride - 2, 3) // 2
    return [math.exp(-(x * x) / 2) / math.sqrt(2 * math.pi) for x in range(-half, half + 1)]


def dynamic_start_indices(x: list[float], m: list[float], stride: int, ths: float = 5e-4) -> list[int]:
    n = len(x)
    g = gaussian_kernel(stride)
    k = len(g)
    y = [sum(g[j] * x[t + j] for j in range(k)) for t in range(n - k + 1)]
    d = [y[t + 1] - y[t] for t in range(len(y) - 1)]
    pad = (n - len(d)) // 2
    delta = [0.0] * pad + d
    delta += [0.0] * (n - len(delta))
    delta = [delta[t] * m[t] for t in range(n)]
    out, last = [], 0
    for t in range(n):
        d0 = delta[t]
        d1 = delta[t - 1] if t >= 1 else 0.0
        d2 = delta[t - 2] if t >= 2 else 0.0
        rising = 3 * d0 > ths or 2 * d0 + d1 > ths or d0 + d1 + d2 > ths
        if not rising:
            last = t
        out.append(last)
    return out


def generate_proposal(curve, stride: int, max_stride: int, nms_thresh: float = 0.3, mask_thr: float = 0.2):
    """Kept (start_frac, end_frac, static, prefix_frac, i, i + L) tuples in NMS order (section 3.1).

    Window sums are prefix-sum differences: windows that differ only by masked (zero) frames tie exactly, as
    in exact arithmetic; a numpy slice sum would break such ties by rounding.
    """
    s = np.asarray(curve, dtype=np.float64)
    n = len(s)
    m = (s > mask_thr).astype(np.float64)
    x = s * m
    step = min(stride, n // 2)
    if step < 1:
        raise ValueError("range() arg 3 must not be zero")
    starts = dynamic_start_indices(x.tolist(), m.tolist(), step)
    csum = np.concatenate(([0.0], np.cumsum(x))).tolist()
    ccnt = np.concatenate(([0.0], np.cumsum(m))).tolist()
    total, active = csum[-1], ccnt[-1]
    cands = []
    for length in range(step, min(n, max_stride) + 1, step):
        for i in range(n - length + 1):
            inside = csum[i + length] - csum[i]
            n_out = active - (ccnt[i + length] - ccnt[i])
            if n_out <= 0:
                continue
            static = inside / length - (total - inside) / n_out
            if static > -1000:
                cands.append(
                    (
                        np.float32(i) / np.float32(n),
                        np.float32(i + length) / np.float32(n),
                        static,
                        starts[i] / n,
                        i,
                        i + length,
                    )
                )
    cands.sort(key=lambda c: -c[2])  # stable: ties keep candidate order
    if not cands:
        return []
    lo = np.array([c[0] for c in cands], dtype=np.float32)
    hi = np.array([c[1] for c in cands], dtype=np.float32)
    suppressed = np.zeros(len(cands), bool)
    thr = np.float32(nms_thresh)
    for a in range(len(cands) - 1):  # greedy NMS over every candidate, as the official code runs it
        if suppressed[a]:
            continue
        inter = np.maximum(np.minimum(hi[a + 1 :], hi[a]) - np.maximum(lo[a + 1 :], lo[a]), np.float32(0))
        iou = inter / (np.maximum(hi[a + 1 :], hi[a]) - np.minimum(lo[a + 1 :], lo[a]))
        suppressed[a + 1 :] |= iou > thr
    return [c for c, sup in zip(cands, suppressed, strict=True) if not sup]


def localize(curve, duration: float, stride: int, max_stride: int, top_k: int = 10):
    """[(start_s, static_start_s, end_s, confidence), ...] as section 3.4's response list."""
    kept = generate_proposal(curve, stride, max_stride)[:top_k]
    if not kept:
        return [(0.0, 0.0, 0.0, 1.0)] * 3
    top = np.float32(kept[0][2])
    d32 = np.float32(duration)
    return [
        (c[3] * duration, float(c[0] * d32), float(c[1] * d32), float(np.float32(c[2]) / top)) for c in kept
    ]


def calc_iou(cands: np.ndarray, gt) -> np.ndarray:
    inter = np.maximum(np.minimum(cands[:, 1], gt[1]) - np.maximum(cands[:, 0], gt[0]), 0)
    return inter / (np.maximum(cands[:, 1], gt[1]) - np.minimum(cands[:, 0], gt[0]))


def select_proposal(inputs: np.ndarray, gamma: float = 0.6) -> np.ndarray:
    weights = np.maximum(inputs[:, 2], 0)
    votes = np.array([np.sum(calc_iou(inputs, p) ** gamma * weights) for p in inputs])
    return inputs[np.argsort(-votes, kind="stable")]


def search_combinations(cands, relation: str):
    found = []

    def visit(idx, cur):
        if idx == len(cands):
            if relation == "simultaneously" and max(c[0] for c in cur) > min(c[1] for c in cur):
                return
            conf = 1.0
            for c in cur:
                conf *= max(c[2], 0)
            found.append([min(c[0] for c in cur), max(c[1] for c in cur), conf])
            return
        for c in cands[idx]:
            if relation == "sequentially" and cur and c[0] < cur[-1][1]:
                continue
            visit(idx + 1, cur + [c])

    visit(0, [])
    return found


def filter_and_integrate(sub_proposals, relation: str):
    if not sub_proposals:
        return []
    found = search_combinations(sub_proposals, relation)
    if not found:
        return []
    return select_proposal(np.array(found))[:2].tolist()


def rank_major(responses, depth: int = 3):
    out = []
    for t in range(depth):
        for resp in responses:
            if t < len(resp):
                out.append([resp[t][0], resp[t][2], resp[t][3]])
    return out


def eval_with_llm(
    curves: dict, duration: float, sentence: str, answer: dict | None, stride: int, max_stride: int
):
    """The (start, end) prediction of section 5.2 for one sentence; ``curves`` maps description -> curve."""

    def loc(text):
        return localize(curves[text], duration, stride, max_stride)

    relation, subs = "single-query", []
    if answer and "query_json" in answer:
        relation = answer["relationship"]
        for entry in answer["query_json"][1:]:
            props = rank_major([loc(t) for t in entry["descriptions"]])
            subs.append(select_proposal(np.array(props))[:3].tolist())
    descriptions = [sentence]
    if answer and answer.get("query_json"):
        descriptions += answer["query_json"][0]["descriptions"]
    pool = rank_major([loc(t) for t in descriptions])[:7] + filter_and_integrate(subs, relation)
    final = select_proposal(np.array(pool))
    return float(final[0][0]), float(final[0][1])


def generate_proposal_torch(
    curve, stride: int, max_stride: int, nms_thresh: float = 0.3, mask_thr: float = 0.2
):
    """Section 3.1 with the official code's torch operations on CPU (its cost profile, inefficiencies I1-I3).

    The same decisions as `generate_proposal` (up to float32 rounding of near-ties): a per-frame Python loop
    of 0-d tensor operations for the dynamic start, conv1d window sums per length, candidates concatenated
    length by length, torch.sort, and a Python-loop NMS over every candidate. Returns (start_frame, end_frame,
    prefix_frame) of the kept windows in order.
    """
    import torch

    s = torch.as_tensor(np.asarray(curve, dtype=np.float32))[None]
    n = s.shape[1]
    m = (s > mask_thr).float()
    x = s * m
    step = min(stride, n // 2)
    g = torch.tensor(gaussian_kernel(step), dtype=torch.float32)[None, None]
    smooth = torch.nn.functional.conv1d(x[:, None], g)[:, 0]
    d = smooth[:, 1:] - smooth[:, :-1]
    pad = (n - d.shape[1]) // 2
    delta = torch.nn.functional.pad(d, (pad, n - d.shape[1] - pad)) * m
    prefix = torch.zeros_like(x)
    last = torch.zeros(1)
    d1 = d2 = torch.zeros(1)
    for t in range(n):  # I1: one 0-d tensor step per frame
        d0 = delta[:, t]
        rising = (3 * d0 > 5e-4) | (2 * d0 + d1 > 5e-4) | (d0 + d1 + d2 > 5e-4)
        if not bool(rising):
            last = torch.tensor([float(t)])
        prefix[:, t] = last / n
        d2, d1 = d1, d0
    total, active = x.sum(), m.sum()
    moments, scores, prefixes = torch.zeros(0, 2), torch.zeros(0), torch.zeros(0)
    for length in range(step, min(n, max_stride) + 1, step):
        ones = torch.ones(1, 1, length)
        inside = torch.nn.functional.conv1d(x[:, None], ones)[0, 0]
        n_in = torch.nn.functional.conv1d(m[:, None], ones)[0, 0]
        static = inside / length - (total - inside) / (active - n_in)
        keep = static > -1000
        starts = torch.arange(len(static), dtype=torch.float32)
        mom = torch.stack([starts / n, (starts + length) / n], dim=1)
        moments = torch.concat([moments, mom[keep]])  # I3: growing concatenation
        scores = torch.concat([scores, static[keep]])
        prefixes = torch.concat([prefixes, prefix[0, : len(static)][keep]])
    scores, order = scores.sort(descending=True, stable=True)
    moments, prefixes = moments[order], prefixes[order]
    suppressed = torch.zeros(len(scores), dtype=torch.bool)
    for a in range(len(scores) - 1):  # I2: a Python loop over every candidate
        if suppressed[a]:
            continue
        rest = moments[a + 1 :]
        lo = torch.maximum(rest[:, 0], moments[a, 0])
        inter = (torch.minimum(rest[:, 1], moments[a, 1]) - lo).clamp(min=0)
        iou = inter / (torch.maximum(rest[:, 1], moments[a, 1]) - torch.minimum(rest[:, 0], moments[a, 0]))
        suppressed[a + 1 :] |= iou > nms_thresh
    kept = (~suppressed).nonzero()[:, 0]
    return [
        (round(float(moments[k, 0]) * n), round(float(moments[k, 1]) * n), round(float(prefixes[k]) * n))
        for k in kept.tolist()
    ]
