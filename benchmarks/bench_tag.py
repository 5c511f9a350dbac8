"""Per-curve time of tfvtg.tag.localize against the literal transcription of TAG's loops, in one process.

The baseline is benchmarks/official_tag.py: TAG's structure with torch on the CPU (Python loops over frames in
the mask vote, the temporal-coherence assignment, the cluster means and the dynamic start; a double loop over
scene-boundary pairs), one torch thread as the method doc measured TAG. Both get the same synthetic scene
video (benchmarks/tag_curves.py, 256-d features like BLIP-2's tokens, the first seeds from --first-seed whose
curve keeps at least a third of the frames); the similarity itself is outside both. BLAS
is pinned to one thread too: these products are small, and a threaded BLAS on a loaded machine spends more
time waiting than multiplying.

"same": whether tfvtg's reference profile returns the transcription's rows (start, end, scene start, in the
vote's order); "f64" when it does only against the transcription with float64 distances (the reference
profile's, see tfvtg/tag.py: a float32 near-tie of two centres went the other way).

Usage: python benchmarks/bench_tag.py [--sizes 90 360 1800] [--videos 3] [--repeat 20]
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import official_tag as official  # noqa: E402
from tag_curves import scene_video  # noqa: E402
from timing import median_seconds  # noqa: E402

from tfvtg.tag import localize, mask_with_vote  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[90, 360, 1800])
    parser.add_argument("--presets", nargs="+", default=["charades", "activitynet"])
    parser.add_argument("--videos", type=int, default=3, help="synthetic videos per size and preset")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--wall", action="store_true",
                        help="wall seconds instead of the process's CPU seconds (both run on one thread)")
    args = parser.parse_args()
    clock = time.perf_counter if args.wall else time.process_time
    torch.set_num_threads(1)
    print(f"# TAG localize per curve (median {'wall' if args.wall else 'CPU'} time); {platform.machine()}, "
          f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}")
    print(f"{'T':>5} {'preset':<12} {'seed':>4} {'kept':>5} {'transcription':>14} {'reference':>10} "
          f"{'default':>9} {'vs ref':>7} {'vs default':>10}  same")
    worst: dict[int, float] = {}
    for n in args.sizes:
        videos, seed = [], args.first_seed
        while len(videos) < args.videos:
            curve, feats, _ = scene_video(n, 256, seed=seed)
            if mask_with_vote(curve, 0.2).sum() >= n / 3:
                videos.append((seed, curve, feats))
            seed += 1
        for preset in args.presets:
            for seed, curve, feats in videos:
                duration = n / 3
                slow_repeat = max(1, min(args.repeat, int(3000 // n)))

                def reference(curve=curve, feats=feats, duration=duration, preset=preset):
                    return localize(curve, feats, duration, preset=preset, profile="reference")

                def transcription(curve=curve, feats=feats, duration=duration, preset=preset):
                    return official.localize(curve, feats, duration, preset)

                baseline = median_seconds(transcription, slow_repeat, clock)
                ours = median_seconds(reference, args.repeat, clock)
                def default_profile(curve=curve, feats=feats, duration=duration, preset=preset):
                    return localize(curve, feats, duration, preset=preset)

                default = median_seconds(default_profile, args.repeat, clock)
                got = reference()
                rows = list(zip(got.start_index.tolist(), got.end_index.tolist(), got.static_index.tolist(),
                                strict=True))
                if rows == [r[:3] for r in transcription()]:
                    same = "yes"
                else:
                    f64 = official.localize(curve, feats, duration, preset, dtype=torch.float64)
                    same = "f64" if rows == [r[:3] for r in f64] else "NO"
                ratio = baseline / ours
                worst[n] = min(worst.get(n, np.inf), ratio)
                print(f"{n:>5} {preset:<12} {seed:>4} {int(mask_with_vote(curve, 0.2).sum()):>5} "
                      f"{baseline * 1e3:>12.1f}ms {ours * 1e3:>8.2f}ms {default * 1e3:>7.2f}ms "
                      f"{ratio:>6.0f}x {baseline / default:>9.0f}x  {same}", flush=True)
    print("worst reference-profile ratio per T: " + ", ".join(f"T={n}: {r:.0f}x" for n, r in worst.items()))


if __name__ == "__main__":
    main()
