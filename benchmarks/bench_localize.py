"""Per-curve time of tfvtg.localize against the official algorithm's structure, in one process.

Two baselines from benchmarks/official_tfvtg.py, both with the official decisions:
- torch-ops: the official code's torch operations on CPU, one thread (a per-frame loop of 0-d tensor ops,
  conv1d window sums, torch.sort, a Python-loop NMS over every candidate): its cost profile.
- numpy-loops: section 3 transcribed with Python loops over frames and windows and a greedy NMS over every
  candidate, in numpy (much cheaper per step than torch, so a far stricter baseline).
The last column says whether all three return the same top-10 windows; "B1" marks a curve where the torch
baseline keeps a window holding every active frame, whose score float32 rounding turns into +inf (bug B1 of
the method doc: an input on which the official code is not finite, outside the reference profile's contract).

Usage: python benchmarks/bench_localize.py [--sizes 90 360 1800 10800] [--repeat 20]
"""

from __future__ import annotations

import argparse
import platform
import sys
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[90, 360, 1800, 10800])
    parser.add_argument("--presets", nargs="+", default=["charades", "activitynet"])
    parser.add_argument("--long-presets", nargs="+", default=["activitynet"], help="presets for T > 2000")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument(
        "--no-torch", action="store_true", help="skip the torch (official operations) baseline"
    )
    args = parser.parse_args()
    if not args.no_torch:
        import torch

        torch.set_num_threads(1)
    print(
        f"# localize per curve (median); {platform.machine()}, python {platform.python_version()}, "
        f"numpy {np.__version__}"
    )
    print(
        f"{'T':>6} {'preset':<12} {'windows':>8} {'torch-ops':>11} {'numpy-loops':>12} {'tfvtg':>9} "
        f"{'vs torch':>9} {'vs numpy':>9}  same"
    )
    for n in args.sizes:
        for name in args.presets if n <= 2000 else args.long_presets:
            stride, max_stride = PRESETS[name].windows(n)
            x = curve(n)
            windows = sum(n - length + 1 for length in range(stride, min(n, max_stride) + 1, stride))
            slow_repeat = max(1, min(args.repeat, int(2e5 // windows)))
            expected = official.generate_proposal(x, stride, max_stride)[:10]
            baseline = median_seconds(
                lambda x=x, s=stride, m=max_stride: official.generate_proposal(x, s, m), slow_repeat
            )
            ours = median_seconds(
                lambda x=x, s=stride, m=max_stride: localize(x, s, m, profile="reference"), args.repeat
            )
            got = localize(x, stride, max_stride, profile="reference")
            got_rows = list(
                zip(got.static_index.tolist(), got.end_index.tolist(), got.start_index.tolist(), strict=True)
            )
            same = [(c[4], c[5], round(c[3] * n)) for c in expected] == got_rows
            torch_time, torch_col, torch_ratio = float("nan"), "-", "-"
            if not args.no_torch:
                torch_rows = official.generate_proposal_torch(x, stride, max_stride)[:10]
                torch_time = median_seconds(
                    lambda x=x, s=stride, m=max_stride: official.generate_proposal_torch(x, s, m),
                    max(1, min(5, slow_repeat)),
                )
                if same and torch_rows != got_rows:
                    active = np.cumsum(np.concatenate(([0], x > 0.2)))
                    full = [r for r in torch_rows if active[r[1]] - active[r[0]] == active[-1]]
                    same = "B1" if full else False  # torch kept a window holding every active frame (+inf)
                torch_col, torch_ratio = f"{torch_time * 1e3:.1f}ms", f"{torch_time / ours:.0f}x"
            verdict = same if isinstance(same, str) else ("yes" if same else "NO")
            print(
                f"{n:>6} {name:<12} {windows:>8} {torch_col:>11} {baseline * 1e3:>10.2f}ms "
                f"{ours * 1e3:>7.3f}ms {torch_ratio:>9} {baseline / ours:>8.0f}x  {verdict}",
                flush=True,
            )


if __name__ == "__main__":
    main()
