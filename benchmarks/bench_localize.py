"""Per-curve time of tfvtg.localize against the official algorithm's structure, in one process, on curves of
several shapes.

Two baselines from benchmarks/official_tfvtg.py, both with the official decisions:
- torch-ops: the official code's torch operations on CPU, one thread (a per-frame loop of 0-d tensor ops,
  conv1d window sums, torch.sort, a Python-loop NMS over every candidate): its cost profile.
- numpy-loops: section 3 transcribed with Python loops over frames and windows and a greedy NMS over every
  candidate, in numpy (much cheaper per step than torch, so a far stricter baseline).
The "same" column says whether all three return the same top-10 windows; "B1" marks a curve where the torch
baseline keeps a window holding every active frame, whose score float32 rounding turns into +inf (bug B1 of
the method doc: an input on which the official code is not finite, outside the reference profile's contract);
"f32" one where the torch list first departs from tfvtg's at two windows whose exact (float64) scores are
within 1e-6 of each other, which torch's float32 window sums order the other way (the numpy transcription,
exact up to float64 rounding, agrees with tfvtg).

Shapes (`shape_curve`): "mixed", smoothed noise around the mask threshold with bumps (the original curve);
"bump", the held-out one-hour curve of issue 13 (base 0.25, one bump to 0.40 over 40-55 % of the video,
noise 0.01); "two-bump"; "flat" (0.30 everywhere, noise 0.001); "noisy" (independent uniform 0.1-0.4 per
frame); "stepped" (12 constant levels among 0.15, 0.22, 0.28, 0.35). A summary gives each size's worst ratio.

Times are CPU seconds of this process by default (``--clock cpu``): on a machine shared with other jobs, wall
time also counts the time spent waiting for a core, which inflates short calls far more than long ones.
``--clock wall`` measures wall time. Both baselines use single-threaded code (torch is set to one thread).

Usage: python benchmarks/bench_localize.py [--sizes 90 360 1800 10800] [--shapes bump flat] [--repeat 20]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import official_tfvtg as official  # noqa: E402
from timing import median_seconds  # noqa: E402

from tfvtg.localize import PRESETS, localize  # noqa: E402


def curve(n: int, seed: int = 0) -> np.ndarray:
    """A similarity-like curve: smoothed noise around the mask threshold with a few bumps."""
    rng = np.random.default_rng(seed)
    base = np.convolve(rng.normal(0.18, 0.08, n + 20), np.ones(21) / 21, "valid")[:n]
    for _ in range(max(1, n // 300)):
        centre, half = rng.integers(0, n), rng.integers(5, 60)
        base[max(0, centre - half) : centre + half] += rng.uniform(0.05, 0.2)
    return base


def shape_curve(shape: str, n: int, seed: int = 0) -> np.ndarray:
    """A similarity curve of the named shape (see the module docstring)."""
    if shape == "mixed":
        return curve(n, seed)
    rng = np.random.default_rng(seed)
    t = np.arange(n) / n

    def bump(start: float, width: float, height: float) -> np.ndarray:
        inside = (t >= start) & (t < start + width)
        return height * np.where(inside, np.sin(np.pi * (t - start) / width) ** 2, 0.0)

    if shape == "bump":
        return 0.25 + bump(0.40, 0.15, 0.15) + rng.normal(0, 0.01, n)
    if shape == "two-bump":
        return 0.25 + bump(0.15, 0.10, 0.13) + bump(0.65, 0.15, 0.15) + rng.normal(0, 0.01, n)
    if shape == "flat":
        return 0.30 + rng.normal(0, 0.001, n)
    if shape == "noisy":
        return rng.uniform(0.1, 0.4, n)
    if shape == "stepped":
        return np.repeat(rng.choice([0.15, 0.22, 0.28, 0.35], size=12), -(-n // 12))[:n]
    raise ValueError(f"unknown shape {shape!r}")


SHAPES = ("mixed", "bump", "two-bump", "flat", "noisy", "stepped")


def exact_scores(x: np.ndarray, rows: list[tuple[int, int]]) -> np.ndarray:
    """float64 static scores of windows [i, end) (official formula, mask 0.2)."""
    m = x > 0.2
    csum = np.concatenate(([0.0], np.cumsum(np.where(m, x, 0.0))))
    ccnt = np.concatenate(([0], np.cumsum(m)))
    out = []
    for i, end in rows:
        inside, n_out = csum[end] - csum[i], ccnt[-1] - (ccnt[end] - ccnt[i])
        out.append(inside / (end - i) - (csum[-1] - inside) / n_out if n_out > 0 else np.inf)
    return np.array(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[90, 360, 1800, 10800])
    parser.add_argument("--presets", nargs="+", default=["charades", "activitynet"])
    parser.add_argument("--long-presets", nargs="+", default=["activitynet"], help="presets for T > 2000")
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=SHAPES)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    parser.add_argument(
        "--no-torch", action="store_true", help="skip the torch (official operations) baseline"
    )
    args = parser.parse_args()
    if not args.no_torch:
        import torch

        torch.set_num_threads(1)
    print(
        f"# localize per curve (median, {args.clock} time); {platform.machine()}, "
        f"python {platform.python_version()}, numpy {np.__version__}"
    )
    print(
        f"{'T':>6} {'preset':<12} {'shape':<9} {'windows':>9} {'torch-ops':>11} {'numpy-loops':>12} "
        f"{'tfvtg':>9} {'vs torch':>9} {'vs numpy':>9}  same"
    )
    worst: dict[tuple[int, str], list[float]] = {}
    for n in args.sizes:
        for name in args.presets if n <= 2000 else args.long_presets:
            for shape in args.shapes:
                clock = time.process_time if args.clock == "cpu" else time.perf_counter
                ratios = run_one(n, name, shape, args.repeat, not args.no_torch, clock)
                previous = worst.setdefault((n, name), [np.inf, np.inf])
                worst[(n, name)] = [min(a, b) for a, b in zip(previous, ratios, strict=True)]
    print("\n# worst ratio over the shapes")
    for (n, name), (vs_torch, vs_numpy) in worst.items():
        torch_text = f"{vs_torch:>7.0f}x" if np.isfinite(vs_torch) else f"{'-':>8}"
        print(f"{n:>6} {name:<12} vs torch-ops {torch_text}   vs numpy-loops {vs_numpy:>6.0f}x")


def run_one(
    n: int, name: str, shape: str, repeat: int, with_torch: bool, clock: Callable[[], float]
) -> tuple[float, float]:
    """Time one curve, print its row; returns (ratio vs torch-ops, ratio vs numpy-loops)."""
    stride, max_stride = PRESETS[name].windows(n)
    x = shape_curve(shape, n)
    windows = sum(n - length + 1 for length in range(stride, min(n, max_stride) + 1, stride))
    slow_repeat = max(1, min(repeat, int(2e5 // windows)))
    expected = official.generate_proposal(x, stride, max_stride)[:10]
    baseline = median_seconds(
        lambda x=x, s=stride, m=max_stride: official.generate_proposal(x, s, m), slow_repeat, clock
    )
    ours = median_seconds(
        lambda x=x, s=stride, m=max_stride: localize(x, s, m, profile="reference"), repeat, clock
    )
    got = localize(x, stride, max_stride, profile="reference")
    got_rows = list(
        zip(got.static_index.tolist(), got.end_index.tolist(), got.start_index.tolist(), strict=True)
    )
    same = [(c[4], c[5], round(c[3] * n)) for c in expected] == got_rows
    torch_time, torch_col, torch_ratio = float("nan"), "-", "-"
    if with_torch:
        torch_rows = official.generate_proposal_torch(x, stride, max_stride)[:10]
        torch_time = median_seconds(
            lambda x=x, s=stride, m=max_stride: official.generate_proposal_torch(x, s, m),
            max(1, min(5, slow_repeat)),
            clock,
        )
        if same and torch_rows != got_rows:
            active = np.cumsum(np.concatenate(([0], x > 0.2)))
            full = [r for r in torch_rows if active[r[1]] - active[r[0]] == active[-1]]
            # Where the two lists first differ, are the two windows' exact scores a near-tie?
            pairs = zip(torch_rows + [None], got_rows + [None], strict=False)
            rank = next(i for i, (a, b) in enumerate(pairs) if a != b)
            pair = [rows[rank] for rows in (torch_rows, got_rows) if rank < len(rows)]
            near = len(pair) == 2 and np.ptp(exact_scores(x, [(r[0], r[1]) for r in pair])) <= 1e-6
            same = "B1" if full else "f32" if near else False
        torch_col, torch_ratio = f"{torch_time * 1e3:.1f}ms", f"{torch_time / ours:.0f}x"
    verdict = same if isinstance(same, str) else ("yes" if same else "NO")
    print(
        f"{n:>6} {name:<12} {shape:<9} {windows:>9} {torch_col:>11} {baseline * 1e3:>10.2f}ms "
        f"{ours * 1e3:>7.3f}ms {torch_ratio:>9} {baseline / ours:>8.0f}x  {verdict}",
        flush=True,
    )
    return torch_time / ours, baseline / ours


if __name__ == "__main__":
    main()
