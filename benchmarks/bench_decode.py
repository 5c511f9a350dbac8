"""Sampled frames per second of tfvtg.video.sample_frames against seeking to each sample.

Writes (once, into the cache directory) a 640x360 H.264 clip of 120 s at 30 fps with moving content, then
samples it at 3 fps:

- baseline: for each target time k / 3, ``container.seek`` to it and decode forward to the frame at or before
  it (what a naive random-access sampler does);
- sample_frames: sequential decoding (one thread, and FFmpeg's automatic threading), native size and the
  BLIP-2 coco input size 364x364 resized in swscale, and the official code's reference sampling.

Each method runs in this process; the peak RSS of the process while it runs (sampled from /proc every 5 ms)
is reported per method: flat across clip lengths means memory does not grow with the video. Both methods
produce RGB arrays of the chosen frames, and the script checks that they chose the same frames.

Usage: python benchmarks/bench_decode.py [--seconds 120] [--gop 250] [--repeat 1] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from clips import make_clip  # noqa: E402

from tfvtg.cache import cache_root  # noqa: E402
from tfvtg.video import probe_video, sample_frames  # noqa: E402

WIDTH, HEIGHT, FPS, SAMPLE_FPS = 640, 360, 30, 3.0


def seek_each_sample(path: Path, fps: float, size: tuple[int, int] | None = None) -> tuple[int, list[float]]:
    """Baseline: seek to every target time and decode forward to the last frame at or before it."""
    import av

    times = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        tb = stream.time_base
        start = stream.start_time or 0
        duration = float(stream.duration * tb)
        k = 0
        while k / fps < duration:
            target = k / fps
            container.seek(start + int(target / tb), stream=stream, backward=True, any_frame=False)
            chosen = None
            for frame in container.decode(stream):
                if (frame.pts - start) * tb > target + 1e-9:
                    break
                chosen = frame
            if chosen is None:
                raise RuntimeError(f"seek found no frame at or before {target:.3f} s")
            h, w = size or (chosen.height, chosen.width)
            chosen.reformat(width=w, height=h, format="rgb24", interpolation="BICUBIC").to_ndarray()
            times.append(float((chosen.pts - start) * tb))
            k += 1
    return len(times), times


def sequential(path: Path, fps: float, size=None, mode="timestamp", threads=0) -> tuple[int, list[float]]:
    stream = sample_frames(path, fps, size, mode=mode, threads=threads)
    times = [t for _, t in stream]
    return len(times), times


class PeakRSS:
    """Peak resident set size while a block runs, sampled from /proc/self/statm."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self.peak = self._rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


def measure(fn: Callable[[], tuple[int, list[float]]], repeat: int) -> dict:
    best = None
    for _ in range(repeat):
        with PeakRSS() as rss:
            t0 = time.perf_counter()
            n, times = fn()
            seconds = time.perf_counter() - t0
        run = {"frames": n, "seconds": seconds, "rss": rss.peak, "times": times}
        if best is None or seconds < best["seconds"]:
            best = run
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=120, help="clip length (default 120)")
    parser.add_argument("--gop", type=int, default=250, help="keyframe interval in frames (x264 default 250)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per method; the fastest is reported")
    parser.add_argument("--dir", type=Path, default=None, help="where the clip is written (default: cache)")
    args = parser.parse_args(argv)

    root = args.dir or cache_root() / "bench"
    root.mkdir(parents=True, exist_ok=True)
    clip = root / f"decode_{WIDTH}x{HEIGHT}_{args.seconds}s_{FPS}fps_g{args.gop}.mp4"
    t0 = time.perf_counter()
    make_clip(clip, args.seconds, fps=FPS, gop=args.gop)
    info = probe_video(clip)
    print(
        f"clip: {clip} ({clip.stat().st_size / 1e6:.1f} MB, {info.width}x{info.height}, {info.fps:g} fps, "
        f"{info.duration:.1f} s, GOP {args.gop}; ready in {time.perf_counter() - t0:.1f} s)"
    )
    load = os.getloadavg()[0]
    print(f"sampling at {SAMPLE_FPS:g} fps; cpu cores: {os.cpu_count()}; load average: {load:.2f}")

    methods = [
        ("baseline: seek per sample", lambda: seek_each_sample(clip, SAMPLE_FPS)),
        ("sample_frames, 1 thread", lambda: sequential(clip, SAMPLE_FPS, threads=1)),
        ("sample_frames, auto threads", lambda: sequential(clip, SAMPLE_FPS)),
        ("sample_frames, 364x364 resize", lambda: sequential(clip, SAMPLE_FPS, size=(364, 364))),
        ("sample_frames, reference mode", lambda: sequential(clip, SAMPLE_FPS, mode="reference")),
    ]
    results = [(name, measure(fn, args.repeat)) for name, fn in methods]
    base = results[0][1]
    if results[2][1]["times"] != base["times"]:
        print("WARNING: the baseline and sample_frames chose different frames", file=sys.stderr)

    base_fps = base["frames"] / base["seconds"]
    header = f"| {'method':<32} | {'frames':>6} | {'seconds':>7} | {'frames/s':>8} | {'ratio':>5} | "
    header += f"{'peak RSS MB':>11} |"
    print()
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for name, r in results:
        rate = r["frames"] / r["seconds"]
        print(
            f"| {name:<32} | {r['frames']:>6} | {r['seconds']:>7.2f} | {rate:>8.1f} | "
            f"{rate / base_fps:>5.2f} | {r['rss'] / 2**20:>11.0f} |"
        )
    print(f"\nload average after: {os.getloadavg()[0]:.2f} (other processes share these cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
