"""BLIP-2 feature extraction throughput on a GPU: frames/s and model FLOP utilisation, bf16 against fp32.

Three measurements in one run, each table with ratios against a baseline of the same run:

1. Encode only: frames already decoded at the model size (364x364 for blip2-coco), host uint8 -> features,
   per precision and batch size (default 32, 64, 128, 256). MFU = achieved FLOP/s over the GPU's 16-bit
   dense peak, looked up by its name (gpu_peaks.py: H100 SXM 989, NVL 835, PCIe 756 TFLOP/s; the entry used
   is printed); FLOPs per frame are counted analytically (cross-checked with torch.utils.flop_counter on one
   batch).
2. Decode only: worker threads run ``tfvtg.video.sample_frames(path, fps=3, size=model size)`` on a synthetic
   640x360 H.264 clip (or ``--video``), one video per worker at a time.
3. Decode overlapped with encode: the same workers fill a bounded queue; the main thread batches frames across
   videos and encodes them in the fastest dtype. Reports where the time went (encoder waiting on decode).

Weights: the real checkpoint when ``--model`` names one (a directory or a Hub id in the cache), else random
weights with the real architecture (same FLOPs; the output says so). On a machine without CUDA it runs the
tiny test model instead, to check the script end to end (and says so); its numbers mean nothing.

    python benchmarks/bench_encode_gpu.py [--model blip2-coco|PATH] [--batch-sizes 32 64 128 256]

Target on one H100: at least 250 frames/s in bf16.
"""

from __future__ import annotations

import argparse
import os
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blip2_random import random_blip2_encoder, vision_flops_per_frame  # noqa: E402
from clips import make_clip  # noqa: E402
from gpu_peaks import peak_for, peak_tflops  # noqa: E402

TARGET_FPS_H100 = 250.0


# ---------------------------------------------------------------------- setup
def load_encoder(args: argparse.Namespace, dtype: str, tmp: Path) -> tuple[Any, str]:
    """(encoder, description of its weights) for the device at hand."""
    import torch

    from tfvtg.encoders import create_encoder

    if not torch.cuda.is_available():
        from tests.fixtures.tiny_models import make_tiny_blip2

        path = tmp / "tiny_blip2"
        if not path.is_dir():
            make_tiny_blip2(path)
        enc = create_encoder(str(path), device="cpu", dtype=dtype, batch_size=max(args.batch_sizes))
        return enc, "TINY random test model on CPU (no CUDA here): checks the script, numbers mean nothing"
    if args.model:
        enc = create_encoder(args.model, device="cuda", dtype=dtype, batch_size=max(args.batch_sizes))
        return enc, f"real weights: {enc.config.name}"
    enc = random_blip2_encoder("blip2-coco", device="cuda", dtype=dtype, batch_size=max(args.batch_sizes))
    return (
        enc,
        "RANDOM weights with the real blip2-itm-vit-g-coco architecture (same FLOPs; pass --model for real)",
    )


def gpu_peaks(args: argparse.Namespace) -> tuple[str, dict[str, float]] | None:
    """(label, dense peaks by dtype) for this GPU: ``--peak-tflops``, else looked up by the GPU's name."""
    import torch

    if args.peak_tflops:
        value = args.peak_tflops
        return "--peak-tflops", {"bfloat16": value, "float16": value, "float32": value}
    if not torch.cuda.is_available():
        return None
    return peak_for(torch.cuda.get_device_name())


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


# ---------------------------------------------------------------------- measurements
def counted_flops(encoder: Any, batch: int) -> float:
    """FLOPs per frame of the image path as torch's FlopCounterMode sees one batch."""
    from torch.utils.flop_counter import FlopCounterMode

    frames = np.random.default_rng(1).integers(0, 256, (batch, *encoder.config.image_size, 3), dtype=np.uint8)
    pixels = encoder.preprocess(frames)
    with FlopCounterMode(display=False) as counter:
        encoder.image_features(pixels)
    return counter.get_total_flops() / batch


def time_encode(encoder: Any, batch: int, min_seconds: float, min_iters: int = 3) -> tuple[float, int]:
    """(seconds per batch, iterations) for host uint8 frames -> host float32 features."""
    frames = np.random.default_rng(0).integers(0, 256, (batch, *encoder.config.image_size, 3), dtype=np.uint8)
    encoder.batch_size = batch
    for _ in range(2):
        encoder.encode_images(frames)
    sync()
    iters, start = 0, time.perf_counter()
    while iters < min_iters or time.perf_counter() - start < min_seconds:
        encoder.encode_images(frames)
        iters += 1
    sync()
    return (time.perf_counter() - start) / iters, iters


def _decode_worker(
    paths: queue.Queue, out: queue.Queue, size: tuple[int, int], chunk: int, fps: float
) -> None:
    from tfvtg.video import sample_frames

    while True:
        try:
            path = paths.get_nowait()
        except queue.Empty:
            out.put(None)
            return
        try:
            for frames, _times in sample_frames(path, fps=fps, size=size).batches(chunk):
                out.put(frames)
        except Exception as exc:  # hand the error to the main thread, which re-raises it
            out.put(exc)
            return


def run_pipeline(
    videos: list[str], size: tuple[int, int], workers: int, fps: float, encoder: Any | None, batch: int
) -> dict[str, float]:
    """Decode ``videos`` on ``workers`` threads; encode ``batch``-frame batches if ``encoder`` is given."""
    paths: queue.Queue = queue.Queue()
    for v in videos:
        paths.put(v)
    out: queue.Queue = queue.Queue(maxsize=max(4, 2 * workers))
    threads = [
        threading.Thread(target=_decode_worker, args=(paths, out, size, 32, fps), daemon=True)
        for _ in range(workers)
    ]
    pending: list[np.ndarray] = []
    have = frames_done = 0
    waited = encode_time = 0.0
    finished = 0
    start = time.perf_counter()
    for t in threads:
        t.start()

    def flush(force: bool) -> None:
        nonlocal pending, have, frames_done, encode_time
        while have >= batch or (force and have):
            block = np.concatenate(pending)
            take, rest = block[:batch], block[batch:]
            pending, have = ([rest] if len(rest) else []), len(rest)
            if encoder is not None:
                t0 = time.perf_counter()
                encoder.encode_images(take)
                encode_time += time.perf_counter() - t0
            frames_done += len(take)

    while finished < workers:
        t0 = time.perf_counter()
        item = out.get()
        waited += time.perf_counter() - t0
        if item is None:
            finished += 1
            continue
        if isinstance(item, Exception):
            raise item
        pending.append(item)
        have += len(item)
        flush(force=False)
    flush(force=True)
    sync()
    wall = time.perf_counter() - start
    return {
        "frames": frames_done,
        "seconds": wall,
        "fps": frames_done / wall,
        "waited": waited,
        "encoding": encode_time,
    }


# ---------------------------------------------------------------------- report
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default=None, help="checkpoint (name, Hub id or directory); default random init"
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--dtypes", nargs="+", default=["autocast-float16", "bfloat16", "float32"],
                        help="precisions (tfvtg.device)")
    parser.add_argument(
        "--video", default=None, help="video to decode (default: a synthetic 640x360 H.264 clip)"
    )
    parser.add_argument("--seconds", type=float, default=None, help="length of the synthetic clip")
    parser.add_argument("--videos", type=int, default=None, help="videos decoded in the pipeline runs")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="decode threads")
    parser.add_argument("--fps", type=float, default=3.0)
    parser.add_argument("--min-seconds", type=float, default=None, help="timed seconds per encode cell")
    parser.add_argument(
        "--peak-tflops", type=float, default=None, help="dense peak for MFU (default: by GPU)"
    )
    parser.add_argument("--tf32", action="store_true", help="allow TF32 tensor cores in the fp32 runs")
    args = parser.parse_args(argv)

    import torch

    cuda = torch.cuda.is_available()
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    seconds = args.seconds or (60.0 if cuda else 6.0)
    n_videos = args.videos or (4 * args.workers if cuda else args.workers)
    min_seconds = args.min_seconds if args.min_seconds is not None else (3.0 if cuda else 0.2)
    device = torch.cuda.get_device_name() if cuda else "CPU (no CUDA)"
    found = gpu_peaks(args)
    label, peaks = found if found else (None, None)
    sixteen = (peaks.get("bfloat16") or peaks.get("float16")) if peaks else None
    print(
        f"device: {device}; torch {torch.__version__}; {os.cpu_count()} CPU cores; "
        f"TF32 {'on' if args.tf32 else 'off'}; MFU against "
        + (f"the {label} entry's 16-bit dense peak, {sixteen:g} TFLOP/s" if peaks else "no known peak (n/a)")
    )

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        encoders: dict[str, Any] = {}
        rows = []
        flops = None
        for dtype in args.dtypes:
            encoder, weights = load_encoder(args, dtype, tmp)
            encoders[dtype] = encoder
            if flops is None:
                flops = vision_flops_per_frame(encoder.model.config)
                counted = counted_flops(encoder, min(args.batch_sizes))
                size = encoder.config.image_size
                print(
                    f"model: {weights}\nimage {size[0]}x{size[1]}; FLOPs per frame: analytic "
                    f"{flops / 1e9:.4g} GFLOP, FlopCounterMode {counted / 1e9:.4g} GFLOP (kernels it "
                    f"cannot see account for the difference)"
                )
            for batch in args.batch_sizes:
                try:
                    per_batch, iters = time_encode(encoder, batch, min_seconds)
                except Exception as exc:  # out of memory at a large batch: report and go on
                    rows.append((dtype, batch, None, None, None, f"failed: {str(exc)[:70]}"))
                    if cuda:
                        torch.cuda.empty_cache()
                    continue
                fps = batch / per_batch
                tflops = fps * flops / 1e12
                mfu = tflops / sixteen if sixteen else None
                own = peak_tflops(peaks, dtype) if peaks else None
                mfu_own = tflops / own if own else None
                rows.append(
                    (
                        dtype,
                        batch,
                        fps,
                        tflops,
                        mfu,
                        f"{iters} iters"
                        + (f", {100 * mfu_own:.0f}% of {dtype} peak" if mfu_own is not None else ""),
                    )
                )
            if cuda and dtype != args.dtypes[-1]:
                del encoders[dtype], encoder
                torch.cuda.empty_cache()

        measured = [r for r in rows if r[2]]
        base_row = next((r for r in measured if r[0] == "float32"), measured[0])
        base = base_row[2]
        print(
            f"\n1. encode only (host uint8 at model size -> features); ratio vs {base_row[0]} batch "
            f"{base_row[1]}"
        )
        print(
            f"{'dtype':<16} {'batch':>5} {'frames/s':>10} {'TFLOP/s':>9} {'MFU(16-bit)':>15} "
            f"{'ratio':>7}  note"
        )
        for dtype, batch, fps, tflops, mfu, note in rows:
            if fps is None:
                print(f"{dtype:<16} {batch:>5} {'-':>10} {'-':>9} {'-':>15} {'-':>7}  {note}")
                continue
            mfu_s = f"{100 * mfu:.1f}%" if mfu is not None else "n/a"
            print(f"{dtype:<16} {batch:>5} {fps:10.1f} {tflops:9.1f} {mfu_s:>15} {fps / base:7.2f}  {note}")

        ok = [r for r in rows if r[2]]
        best = max(ok, key=lambda r: r[2])
        best_dtype, best_batch = best[0], best[1]
        video = args.video or str(make_clip(tmp / "clip.mp4", seconds))
        size = encoders[best_dtype].config.image_size if best_dtype in encoders else None
        if size is None:
            encoders[best_dtype], _ = load_encoder(args, best_dtype, tmp)
            size = encoders[best_dtype].config.image_size
        videos = [video] * n_videos
        decode = run_pipeline(videos, size, args.workers, args.fps, None, best_batch)
        both = run_pipeline(videos, size, args.workers, args.fps, encoders[best_dtype], best_batch)
        print(
            f"\n2./3. {n_videos} videos of {seconds:.0f} s at {args.fps:g} fps, "
            f"{args.workers} decode threads; "
            f"encoding {best_dtype} batch {best_batch}; ratio vs decode only"
        )
        print(f"{'run':<26} {'frames':>7} {'seconds':>8} {'frames/s':>9} {'ratio':>7}  note")
        print(
            f"{'decode only':<26} {decode['frames']:>7} {decode['seconds']:8.2f} {decode['fps']:9.1f} "
            f"{1.0:7.2f}"
        )
        note = (
            f"encoder busy {100 * both['encoding'] / both['seconds']:.0f}%, "
            f"waited on decode {100 * both['waited'] / both['seconds']:.0f}%"
        )
        print(
            f"{'decode + encode overlapped':<26} {both['frames']:>7} {both['seconds']:8.2f} "
            f"{both['fps']:9.1f} "
            f"{both['fps'] / decode['fps']:7.2f}  {note}"
        )
        if cuda:
            verdict = "meets" if best[2] >= TARGET_FPS_H100 else "misses"
            print(
                f"\nbest encode {best[2]:.0f} frames/s ({best_dtype}, batch {best_batch}) {verdict} the H100 "
                f"target of {TARGET_FPS_H100:.0f}; end to end with decoding {both['fps']:.0f} frames/s"
            )
        else:
            print("\nno CUDA: ran the tiny test model end to end; run on a GPU machine for real numbers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
