"""Sampling a short window of a long video: seeking (``sample_frames(start=, end=)``) against decoding it all.

Writes (once, into the cache directory) two 640x360 25 fps H.264 clips of 120 s with moving content, one
with a keyframe every 2 s and one with x264's default keyframes (at most every 250 frames, plus scene cuts),
and a raw H.264 copy of the first (no timestamps, so the window cannot be seeked: the fallback path). Then
samples a 10 s window near the end, [105, 115) s, at 12 fps, resized to 336x336 as NumPro's refinement pass
does:

- full + filter (baseline): ``sample_frames`` over the whole video, keeping the samples whose target lies in
  the window (what NumPro's refinement did before: every earlier sample is converted to RGB and resized too);
- window, seek: ``sample_frames(..., start=105, end=115)``;
- window, no seek: the same on the raw copy, which decodes from the first frame but converts nothing before
  the window.

Every method's samples are checked against the baseline's (times equal, frames byte-equal). Times are the
median of ``--repeat`` runs in this process; ratios are against the baseline on the same file.

Usage: python benchmarks/bench_window.py [--seconds 120] [--start 105] [--length 10] [--repeat 3] [--dir DIR]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from clips import make_clip  # noqa: E402

from tfvtg.video import FrameStream, sample_frames  # noqa: E402

WIDTH, HEIGHT, FPS = 640, 360, 25
SAMPLE_FPS, SIZE = 12.0, (336, 336)


def keyframe_interval(path: Path) -> float:
    """Mean seconds between keyframes."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        keys = [float(p.pts * stream.time_base) for p in container.demux(stream) if p.is_keyframe]
    return (keys[-1] - keys[0]) / max(1, len(keys) - 1)


def full_and_filter(path: Path, start: float, end: float) -> tuple[FrameStream, list]:
    stream = sample_frames(path, SAMPLE_FPS, SIZE)
    return stream, [s for k, s in enumerate(stream) if start <= k / SAMPLE_FPS < end]


def window(path: Path, start: float, end: float) -> tuple[FrameStream, list]:
    stream = sample_frames(path, SAMPLE_FPS, SIZE, start=start, end=end)
    return stream, list(stream)


def timed(fn: Callable[[], tuple[FrameStream, list]], repeat: int) -> tuple[float, FrameStream, list]:
    runs = []
    for _ in range(repeat):
        began = time.perf_counter()
        stream, samples = fn()
        runs.append(time.perf_counter() - began)
    return statistics.median(runs), stream, samples


def same(a: list, b: list) -> bool:
    if len(a) != len(b):
        return False
    return all(ta == tb and np.array_equal(fa, fb) for (fa, ta), (fb, tb) in zip(a, b, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=120)
    parser.add_argument("--start", type=float, default=105.0)
    parser.add_argument("--length", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "tfvtg-bench-window")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    start, end = args.start, args.start + args.length
    n = args.seconds
    clips = [
        ("keyframe every 2 s", make_clip(args.dir / f"gop2s-{n}s.mp4", n, fps=FPS, gop=2 * FPS)),
        ("x264 default keyframes", make_clip(args.dir / f"default-{n}s.mp4", n, fps=FPS)),
    ]
    raw = make_clip(args.dir / f"gop2s-{n}s.h264", n, fps=FPS, gop=2 * FPS, format="h264")
    print(f"{WIDTH}x{HEIGHT} {FPS} fps H.264, {n} s; window [{start:g}, {end:g}) s at {SAMPLE_FPS:g} fps, "
          f"resized to {SIZE[0]}x{SIZE[1]}; median of {args.repeat} run(s)\n")
    header = (f"| {'file':<32} | {'method':<30} | {'s':>6} | {'decoded':>7} | {'samples':>7} "
              f"| {'x faster':>8} |")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    ok = True
    for label, path in clips:
        label = f"{label} ({keyframe_interval(path):.1f} s)"
        base_s, base_stream, base = timed(lambda p=path: full_and_filter(p, start, end), args.repeat)
        rows = [("full decode + filter", base_s, base_stream, base)]
        rows.append(("window, seek", *timed(lambda p=path: window(p, start, end), args.repeat)))
        if path == clips[0][1]:
            rows.append(("window, no seek (raw .h264)", *timed(lambda: window(raw, start, end), args.repeat)))
        for method, secs, stream, samples in rows:
            ok &= same(samples, base)
            print(f"| {label:<32} | {method:<30} | {secs:6.2f} | {stream.decoded_frames:7d} "
                  f"| {len(samples):7d} | {base_s / secs:8.1f} |")
            label = ""
    expected = math.ceil(end * SAMPLE_FPS) - math.ceil(start * SAMPLE_FPS)
    print(f"\n{expected} samples expected per method; all equal to the baseline's: {ok}")
    if not ok:
        sys.exit("ERROR: a windowed pass gave other samples than the full pass")


if __name__ == "__main__":
    main()
