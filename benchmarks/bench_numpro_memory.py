"""Memory of `NumProGrounder.sample` on a long video with a frame cap: full read then cap vs streaming.

Writes (once, into the cache directory) a 640x360 25 fps H.264 clip of 10 minutes with moving content
(``clips.make_clip``), and a raw H.264 copy of it (no declared duration: the streaming path cannot predict the
sample count and takes a second pass). Then samples it at 1 fps, resized to 336x336, as NumPro
does, with a cap of 64 frames:

- full read (baseline): what `sample` did before: ``read_frames`` (every sample held, then stacked), then
  the ``cap_indices`` selection that ``_ask`` applied;
- streamed: ``NumProGrounder(max_frames=64).sample(path)`` on the mp4 (one pass) and on the raw copy (two).

Peak memory is the peak resident set size above the one at the start (Linux: the high-water mark is reset
through /proc/self/clear_refs, and freed heap memory handed back with malloc_trim, before each method), since
the sampled frames are views on FFmpeg's buffers, which tracemalloc does not see; tracemalloc's peak (the
NumPy copies: stacking, capping) is shown beside it. Every method's frames and times are checked against the
baseline's. Ratios are against the baseline on the same file, in this process.

Usage: python benchmarks/bench_numpro_memory.py [--seconds 600] [--cap 64] [--dir DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_window import FPS, HEIGHT, WIDTH  # noqa: E402
from clips import make_clip  # noqa: E402
from memory import measured  # noqa: E402

from numpro.ground import NumProGrounder, SampledVideo  # noqa: E402
from numpro.mllm import cap_indices  # noqa: E402
from tfvtg.video import read_frames  # noqa: E402

SAMPLE_FPS, SIZE = 1.0, (336, 336)


class _NoModel:
    """A back-end that is never asked: only sampling is measured."""

    name = "none"
    max_frames = None

    def answer(self, frames, prompt, *, times=None, frame_labels=None) -> str:
        raise AssertionError("not asked")


def full_read(path: Path, cap: int) -> SampledVideo:
    frames, times, duration = read_frames(path, SAMPLE_FPS, SIZE)
    keep = cap_indices(len(frames), cap)
    return SampledVideo(np.array(frames[keep]), times[keep], duration, path)


def streamed(path: Path, cap: int) -> SampledVideo:
    return NumProGrounder(_NoModel(), fps=SAMPLE_FPS, size=SIZE, max_frames=cap).sample(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--cap", type=int, default=64)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "tfvtg-bench-numpro-memory")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    n, cap = args.seconds, args.cap
    mp4 = make_clip(args.dir / f"clip-{n}s.mp4", n, fps=FPS)
    raw = make_clip(args.dir / f"clip-{n}s.h264", n, fps=FPS, format="h264")
    frame_mib = SIZE[0] * SIZE[1] * 3 / 2**20
    print(f"{WIDTH}x{HEIGHT} {FPS} fps H.264, {n} s; sampled at {SAMPLE_FPS:g} fps, resized to "
          f"{SIZE[0]}x{SIZE[1]} ({frame_mib:.3f} MiB a frame), cap {cap}; one run each\n")
    header = (f"| {'file':<23} | {'method':<21} | {'peak RSS MiB':>12} | {'= frames':>8} "
              f"| {'x less memory':>13} | {'traced MiB':>10} | {'s':>5} | {'x time':>6} |")
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    base_mib, base_traced, base_s, base = measured(lambda: full_read(mp4, cap))
    rows = [(f"mp4 (declares {n} s)", "full read, then cap", base_mib, base_traced, base_s, base),
            ("", "streamed (one pass)", *measured(lambda: streamed(mp4, cap))),
            ("raw .h264 (no duration)", "streamed (two passes)", *measured(lambda: streamed(raw, cap)))]
    ok = True
    for label, method, mib, traced, secs, result in rows:
        ok &= result.times.tolist() == base.times.tolist() and np.array_equal(result.frames, base.frames)
        print(f"| {label:<23} | {method:<21} | {mib:12.1f} | {mib / frame_mib:8.0f} | {base_mib / mib:13.1f} "
              f"| {traced:10.1f} | {secs:5.1f} | {secs / base_s:6.2f} |")
    print(f"\n{len(base.frames)} frames kept per method; all equal to the baseline's: {ok}")
    if not ok:
        sys.exit("ERROR: the streamed sample differs from the full read's")


if __name__ == "__main__":
    main()
