"""How much TAG's answer hinges on its random k-means++ start, and how the default profile's start compares.

On the synthetic scene videos of benchmarks/tag_curves.py (whose true moment is known) it reports, per preset:
- reference: how often the top-1 changes when the k-means++ seed is 61..69 instead of TAG's 60, and how often
  the ten seeds do not all agree;
- candidate deterministic starts for the default profile (the shipped one is farthest-point; "TAG's start"
  is the default profile's fixes with the reference's seed-60 start): how often their top-1 differs from the
  reference's (seed 60) and from the reference's most frequent top-1 over the ten seeds;
- everyone's mean IoU with the true moment (R1@0.5 too).

Usage: python benchmarks/tag_seed_stability.py [--videos 200] [--dim 64]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tag_curves import scene_video  # noqa: E402

from tfvtg.tag import (  # noqa: E402
    TAG_PRESETS,
    _localize,
    farthest_point_start,
    kmeans,
    kmeans_plus_plus_start,
)

SEEDS = range(60, 70)


def best_of(x: np.ndarray, k: int, seeds: range, window: int | None) -> np.ndarray:
    """k-means++ from each numpy seed, keeping the start whose clustering has the lowest within-cluster sum of
    squares."""
    best, best_cost = None, np.inf
    for seed in seeds:
        rng = np.random.default_rng(seed)
        chosen = [int(rng.integers(len(x)))]
        nearest = np.full(len(x), np.inf)
        for _ in range(1, k):
            nearest = np.minimum(nearest, ((x - x[chosen[-1]]) ** 2).sum(1))
            chosen.append(int(rng.choice(len(x), p=nearest / nearest.sum())))
        labels, centres = kmeans(x, np.asarray(chosen), window)
        cost = float(((x - centres[labels]) ** 2).sum())
        if cost < best_cost:
            best, best_cost = np.asarray(chosen), cost
    return best


def spread(x: np.ndarray, k: int) -> np.ndarray:
    """k kept frames spread evenly in time: the middle of k equal parts."""
    return np.minimum(((np.arange(k) + 0.5) * len(x) / k).astype(np.int64), len(x) - 1)


def top1(curve, feats, n, preset, profile, start) -> tuple[int, int]:
    config = TAG_PRESETS[preset]
    p = _localize(curve, feats, n / 3, config, True, profile, 0.2, True, start)
    return int(p.start_index[0]), int(p.end_index[0])


def iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / (max(a[1], b[1]) - min(a[0], b[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--dim", type=int, default=64)
    args = parser.parse_args()
    for preset, n in (("charades", 90), ("activitynet", 360)):
        window = TAG_PRESETS[preset].coherence_window
        candidates = {
            "farthest-point (default)": farthest_point_start,
            "spread in time": spread,
            "best-of-10 (seeds 0-9)": partial(lambda x, k, w: best_of(x, k, range(10), w), w=window),
            "best-of-10 (seeds 100-109)": partial(
                lambda x, k, w: best_of(x, k, range(100, 110), w), w=window
            ),
            "TAG's start (seed 60)": kmeans_plus_plus_start,
        }
        flips = disagree = 0
        differs = Counter()
        differs_mode = Counter()
        best_flips = 0
        ious: dict[str, list[float]] = {"reference (seed 60)": []}
        for video in range(args.videos):
            curve, feats, truth = scene_video(n, args.dim, seed=10_000 + video)
            ref = [top1(curve, feats, n, preset, "reference", partial(kmeans_plus_plus_start, seed=s))
                   for s in SEEDS]
            flips += sum(r != ref[0] for r in ref[1:])
            disagree += len(set(ref)) > 1
            mode = Counter(ref).most_common(1)[0][0]
            ious["reference (seed 60)"].append(iou(ref[0], truth))
            answers = {}
            for name, start in candidates.items():
                got = answers[name] = top1(curve, feats, n, preset, "default", start)
                differs[name] += got != ref[0]
                differs_mode[name] += got != mode
                ious.setdefault(name, []).append(iou(got, truth))
            best_flips += answers["best-of-10 (seeds 0-9)"] != answers["best-of-10 (seeds 100-109)"]
        v = args.videos
        print(f"## {preset}, T = {n}, {v} synthetic videos (features of dimension {args.dim})")
        print(f"reference: top-1 changes with the seed in {flips / (9 * v):.1%} of (video, seed 61-69) "
              f"pairs; the ten seeds disagree on {disagree / v:.1%} of videos")
        print(f"{'start':<28} {'top-1 != ref':>13} {'!= ref mode':>12} {'mIoU':>6} {'R1@0.5':>7}")
        for name, values in ious.items():
            values = np.asarray(values)
            d = f"{differs[name] / v:.1%}" if name in differs else "-"
            dm = f"{differs_mode[name] / v:.1%}" if name in differs_mode else "-"
            print(f"{name:<28} {d:>13} {dm:>12} {values.mean():>6.3f} {(values >= 0.5).mean():>7.1%}")
        print(f"best-of-10: top-1 differs between seeds 0-9 and 100-109 on {best_flips / v:.1%} of videos\n")


if __name__ == "__main__":
    main()
