"""Dataset-scale extraction: a per-video loop against the local engine and the Ray engine, on the same clips.

Writes (once, into the cache directory) ``--videos`` 640x360 H.264 clips of ``--seconds`` at 30 fps with
moving content, then extracts features at 3 fps with:

- baseline: `tfvtg.features.extract_features` per video in a loop (what ``FeatureCache`` / ``Grounder`` do for
  one video at a time: the decoder prefetches within a video only), then `VideoFeatures.save`;
- local engine: `tfvtg.engines.extract_many(engine="local")`, the library's own multi-video path (the next
  videos decode while the current one encodes);
- Ray engine: ``extract_many(engine=RayEngine(...))`` on a Ray started for the run (decode tasks, encoder
  actors); its start-up (``ray.init``) is timed on its own and included in the end-to-end number;
- the same two engines as a user runs them: ``tfvtg extract --engine local`` and ``--engine ray`` as commands
  (a new process each: Python's imports, torch's and transformers' included, count as the user waits for
  them), with the tiny model only (the real architecture with random weights has no checkpoint to name).

Frames/s are frames written over wall seconds, model load included for every method (the engines load the
model inside the run). Peak memory is the peak summed RSS of this process and all its descendants (Ray's
processes are children of the driver that started them), sampled every 50 ms, above the RSS before the method
started.
Files are compared with the baseline's (bitwise, else the largest difference).

On a machine without CUDA the encoder is the tiny random test BLIP-2 (``--arch tiny``: the numbers measure
decoding and the engines' overheads). On a GPU machine, ``--arch blip2-coco`` uses the real architecture with
random weights (same FLOPs) on every GPU: one actor per GPU for Ray (``--workers``, ``--gpus-per-worker``).

Usage: python benchmarks/bench_extract_scale.py [--videos 20] [--seconds 20] [--arch tiny|blip2-coco]
       [--batch-size 32] [--workers N] [--gpus-per-worker G] [--decode-cpus C] [--object-store-mib 1024]
       [--no-ray] [--no-cli] [--dir DIR]
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_decode import PeakRSS  # noqa: E402
from clips import make_clip  # noqa: E402

from tfvtg.cache import cache_root  # noqa: E402

SAMPLE_FPS = 3.0


class TreeMemory(PeakRSS):
    """Peak summed RSS (bytes) of this process and its descendants (Ray's processes), and the start's."""

    def __init__(self) -> None:
        super().__init__(interval=0.05)

    def _rss(self) -> int:
        children: dict[int, list[int]] = {}
        rss: dict[int, int] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry.name))
                rss[int(entry.name)] = int(fields[21]) * self._page
            except (OSError, IndexError, ValueError):
                continue
        total, todo = 0, [os.getpid()]
        while todo:
            pid = todo.pop()
            total += rss.get(pid, 0)
            todo.extend(children.get(pid, []))
        return total

    def __enter__(self) -> TreeMemory:
        self.base = self._rss()
        super().__enter__()
        return self

    @property
    def above_base_mib(self) -> float:
        return (self.peak - self.base) / 2**20


def encoder_factory(arch: str, batch_size: int, tmp: Path) -> tuple[Any, Any]:
    """(the engines' ``model``, a picklable callable building the encoder for the loop).

    The tiny model is a ``save_pretrained`` directory, given to the engines by path as ``--model DIR`` is;
    the real architecture with random weights has no checkpoint, so the engines get the callable.
    """
    from tfvtg.encoders import create_encoder

    if arch == "tiny":
        from tests.fixtures.tiny_models import make_tiny_blip2

        path = tmp / "tiny_blip2"
        if not path.is_dir():
            make_tiny_blip2(path)
        return str(path), functools.partial(create_encoder, str(path), device="auto", batch_size=batch_size)
    from blip2_random import random_blip2_encoder

    factory = functools.partial(random_blip2_encoder, arch, device="auto", batch_size=batch_size)
    return factory, factory


def run_command(clips: list[Path], out: Path, model: str, engine: str,
                args: argparse.Namespace) -> tuple[float, float]:
    """(wall seconds, peak MiB above start) of one ``tfvtg extract`` command over the clips."""
    import subprocess

    command = [str(Path(sys.executable).with_name("tfvtg")), "extract", *map(str, clips), "--out", str(out),
               "--model", model, "--fps", f"{SAMPLE_FPS:g}", "--batch-size", str(args.batch_size),
               "--engine", engine]
    if engine == "ray":
        for flag, value in (("--workers", args.workers), ("--gpus-per-worker", args.gpus_per_worker),
                            ("--decode-cpus", args.decode_cpus)):
            if value is not None:
                command += [flag, str(value)]
    with TreeMemory() as memory:
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(command[:2])} --engine {engine} failed:\n{done.stderr[-2000:]}")
    return seconds, memory.above_base_mib


def compare(reference: Path, other: Path) -> str:
    import numpy as np

    from tfvtg.features import VideoFeatures

    worst = 0.0
    for path in sorted(reference.glob("*.safetensors")):
        a = VideoFeatures.load(path)
        b = VideoFeatures.load(other / path.name)
        if a.timestamps.tobytes() != b.timestamps.tobytes():
            return "timestamps differ"
        worst = max(worst, float(np.abs(a.features.astype(np.float32) - b.features.astype(np.float32)).max()))
    return "bitwise" if worst == 0 else f"max |diff| {worst:.1e}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--arch", choices=["tiny", "blip2-coco", "blip2"], default=None,
                        help="encoder [default: blip2-coco with CUDA, else tiny]")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None, help="Ray encoder actors [default: per GPU]")
    parser.add_argument("--gpus-per-worker", type=float, default=None)
    parser.add_argument("--decode-cpus", type=float, default=None, help="CPUs per Ray decode task")
    parser.add_argument("--object-store-mib", type=int, default=1024, help="object store of the Ray started")
    parser.add_argument("--no-ray", action="store_true", help="only the baseline and the local engine")
    parser.add_argument("--no-cli", action="store_true", help="skip the `tfvtg extract` command rows")
    parser.add_argument("--dir", type=Path, default=None, help="where the clips are cached")
    args = parser.parse_args(argv)

    import torch

    from tfvtg.engines import extract_many
    from tfvtg.features import extract_features

    arch = args.arch or ("blip2-coco" if torch.cuda.is_available() else "tiny")
    clip_dir = args.dir or cache_root() / "bench" / "extract_scale"
    clip_dir.mkdir(parents=True, exist_ok=True)
    clips = [make_clip(clip_dir / f"clip{i:03d}-{args.seconds:g}s.mp4", args.seconds, width=640, height=360)
             for i in range(args.videos)]
    work = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    # Ray's workers import this checkout and the benchmark's helpers, as this process does.
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), str(Path(__file__).resolve().parent),
                                                os.environ.get("PYTHONPATH", "")])
    model, factory = encoder_factory(arch, args.batch_size, work)
    rows: list[tuple[str, float, int, float, str, str]] = []
    try:
        out = work / "loop"
        out.mkdir()
        with TreeMemory() as memory:
            start = time.perf_counter()
            encoder = factory()
            frames = 0
            for clip in clips:
                features = extract_features(clip, encoder, fps=SAMPLE_FPS, batch_size=args.batch_size,
                                            progress=False)
                features.save(out / f"{clip.stem}.safetensors")
                frames += len(features)
            seconds = time.perf_counter() - start
        del encoder
        rows.append(("per-video loop (extract_features)", seconds, frames, memory.above_base_mib, "-", "-"))

        with TreeMemory() as memory:
            start = time.perf_counter()
            summary = extract_many(clips, work / "local", model=model, fps=SAMPLE_FPS,
                                   batch_size=args.batch_size, progress=False)
            seconds = time.perf_counter() - start
        rows.append(("local engine (extract_many)", seconds, summary.frames, memory.above_base_mib, "-",
                     compare(out, work / "local")))

        if not args.no_ray:
            from tfvtg.engines.ray import RayEngine

            engine = RayEngine(workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                               decode_cpus=args.decode_cpus,
                               object_store_bytes=args.object_store_mib * 2**20)
            with TreeMemory() as memory:
                start = time.perf_counter()
                engine._ray()  # ray.init of the run's own Ray, timed on its own
                startup = time.perf_counter() - start
                summary = extract_many(clips, work / "ray", engine=engine, model=model, fps=SAMPLE_FPS,
                                       batch_size=args.batch_size, progress=False)
                seconds = time.perf_counter() - start
            assert summary.ok, summary.failed
            rows.append(("Ray engine, own Ray (start-up included)", seconds, summary.frames,
                         memory.above_base_mib, f"{startup:.1f}", compare(out, work / "ray")))

        if not args.no_cli and isinstance(model, str):
            for engine_name in ("local",) if args.no_ray else ("local", "ray"):
                target = work / f"cli-{engine_name}"
                seconds, mib = run_command(clips, target, model, engine_name, args)
                rows.append((f"`tfvtg extract --engine {engine_name}` (a new process)", seconds, frames, mib,
                             "-", compare(out, target)))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    gpus = torch.cuda.device_count()
    where = f"{gpus} x {torch.cuda.get_device_name(0)}" if gpus else f"CPU ({os.cpu_count()} cores)"
    print(f"{args.videos} clips of {args.seconds:g} s (640x360, 30 fps) sampled at {SAMPLE_FPS:g} fps; "
          f"encoder {arch} (random weights), batch {args.batch_size}; {where}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| method | seconds | frames | frames/s | ratio | peak MiB above start | Ray start-up s | files |")
    print("|---|---|---|---|---|---|---|---|")
    base = rows[0][2] / rows[0][1]
    for name, seconds, frames, mib, startup, same in rows:
        rate = frames / seconds
        print(f"| {name} | {seconds:.1f} | {frames} | {rate:.1f} | {rate / base:.2f}x | {mib:.0f} | "
              f"{startup} | {same} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
