"""What BLIP-2 feature extraction costs on this CPU: seconds per frame (batch 1, 4, 8) and per description.

The model has the real architecture of ``Salesforce/blip2-itm-vit-g-coco`` (EVA ViT-g/14 at 364x364 +
Q-Former, fp32) with random weights (no download; the FLOPs are the same). Frames are given at 364x364 (the
decoder resizes), so the time is the model's; the image processor's resize from 640x360 is timed on its own
line.
Ratios are against batch 1 in the same run. Run from the repository root:

    .venv/bin/python benchmarks/bench_encode_cpu_cost.py [--batch-sizes 1 4 8] [--repeats 1]

Needs about 5 GB of RAM and a few minutes on 2 cores. Other processes on the machine slow it down: the load
average is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blip2_random import random_blip2_encoder, vision_flops_per_frame  # noqa: E402
from timing import median_seconds  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per batch size (median)")
    parser.add_argument("--model", default="blip2-coco", choices=["blip2-coco", "blip2"])
    args = parser.parse_args(argv)

    import torch

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, {os.cpu_count()} cores; load average before: "
        f"{os.getloadavg()[0]:.2f}"
    )
    start = time.perf_counter()
    encoder = random_blip2_encoder(
        args.model, device="cpu", dtype="float32", batch_size=max(args.batch_sizes)
    )
    size = encoder.config.image_size
    params = sum(p.numel() for p in encoder.model.parameters()) / 1e9
    flops = vision_flops_per_frame(encoder.model.config)
    print(
        f"model: random-init {args.model} architecture ({params:.2f} B parameters, {size[0]}x{size[1]}, "
        f"fp32, {flops / 1e12:.2f} TFLOP per frame), built in {time.perf_counter() - start:.0f} s"
    )

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (max(args.batch_sizes), *size, 3), dtype=np.uint8)
    encoder.encode_images(frames[:1])  # warm-up: allocations, oneDNN kernel selection

    rows = []
    for batch in args.batch_sizes:
        encoder.batch_size = batch
        seconds = median_seconds(lambda b=batch: encoder.encode_images(frames[:b]), args.repeats)
        rows.append((f"image, batch {batch}", seconds / batch, "frame", flops * batch / seconds / 1e9))

    big = rng.integers(0, 256, (8, 360, 640, 3), dtype=np.uint8)
    resize = median_seconds(lambda: encoder.preprocess(big), max(3, args.repeats)) / len(big)
    rows.append(("resize 640x360 -> model size", resize, "frame", None))

    text = "a person opens the door and walks into the kitchen"
    encoder.encode_texts([text])  # warm-up
    one = median_seconds(lambda: encoder.encode_texts([text]), max(5, args.repeats))
    rows.append(("text, batch 1", one, "description", None))
    eight = median_seconds(lambda: encoder.encode_texts([text] * 8), max(3, args.repeats)) / 8
    rows.append(("text, batch 8", eight, "description", None))

    base = rows[0][1]
    print(f"\n{'what':<30} {'seconds':>10} {'per':<12} {'GFLOP/s':>8} {'vs image batch 1':>17}")
    for what, seconds, per, gflops in rows:
        rate = f"{gflops:8.1f}" if gflops is not None else f"{'':>8}"
        print(f"{what:<30} {seconds:10.4f} {per:<12} {rate} {seconds / base:17.3f}")
    best = min(r[1] for r in rows if r[0].startswith("image"))
    print(
        f"\nload average after: {os.getloadavg()[0]:.2f} (machine shared with other jobs; numbers are upper "
        f"bounds)\nabout {best:.1f} s per frame on this {os.cpu_count()}-core CPU at best; "
        f"a 30 s clip at 3 fps "
        f"(90 frames) takes about {90 * best / 60:.0f} min to encode"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
