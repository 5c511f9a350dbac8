"""The encoder zoo on this CPU: frames/s of each registry encoder beside BLIP-2's ViT-g, texts/s, a 30 s clip.

Every model has the real architecture of its checkpoint (the numbers of `tfvtg.encoders.zoo.SPECS`; BLIP-2
from blip2_random.py) with random weights (no download; the FLOPs are the same), fp32, in one process:

1. frames/s (batch 8, frames already at the model's size as the decoder delivers them), text encodings/s
   (batch 8) and the wall time to extract a synthetic 30 s 640x360 clip at the encoder's default fps
   (decode + encode, `tfvtg.features.extract_features`; for the encoders in ``--clip-for``, else estimated
   from frames/s); ratios against BLIP-2 ViT-g (blip2-coco, 364 px).
2. What speeds CPU inference without new dependencies, on clip-b32 (the laptop encoder): torch threads,
   channels-last, bfloat16 (where the CPU has it), torch.compile.

The tokenizers spell words letter by letter (no vocabulary files offline), so a CLIP text is ~2x as many
tokens as with the real BPE: CLIP text rates are lower bounds. SigLIP always pads to its 64 tokens. Run from
the repository root:

    .venv/bin/python benchmarks/bench_encoders_cpu.py [--repeats 3] [--encoders clip-b32 ...] [--pairs 3]
        [--clip-for clip-b32 ...] [--skip-options]

Needs about 7 GB of RAM and several minutes on 2 cores. The load average is printed before and after.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import string
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blip2_random import random_blip2_encoder, vision_flops_per_frame  # noqa: E402
from clips import make_clip  # noqa: E402
from timing import median_seconds  # noqa: E402

from tfvtg.encoders.zoo import SPECS, EncoderSpec  # noqa: E402

TEXTS = [
    "a person opens the door",
    "the man sits on a chair and eats",
    "a dog runs across the yard",
    "she puts the cup on the table",
    "two people talk in the kitchen",
    "a car drives down the road",
    "the woman laughs and waves",
    "someone turns off the light",
]
BATCH = 8


def _text_config(spec: EncoderSpec) -> dict[str, Any]:
    if spec.model_type == "siglip":
        return {
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "vocab_size": 256000,
            "max_position_embeddings": 64,
        }
    width = 768 if spec.name == "clip-l14" else 512
    return {
        "hidden_size": width,
        "intermediate_size": 4 * width,
        "num_hidden_layers": 12,
        "num_attention_heads": width // 64,
        "vocab_size": 49408,
        "max_position_embeddings": 77,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "pad_token_id": 1,
    }


def random_clip_encoder(spec: EncoderSpec, *, dtype: str | None = "float32", batch_size: int = BATCH) -> Any:
    """A `ClipEncoder` with the real architecture of registry entry ``spec`` and random weights."""
    import torch
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer, GemmaTokenizer, SiglipConfig, SiglipModel

    from tfvtg.device import resolve_precision
    from tfvtg.encoders.clip import ClipEncoder

    hidden, intermediate, layers = spec.vision
    vision = {
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": hidden // 64,
        "patch_size": spec.patch,
        "image_size": spec.image_size,
    }
    size = spec.image_size
    torch.manual_seed(0)
    if spec.model_type == "clip":
        from transformers.models.clip import CLIPImageProcessorPil

        config = CLIPConfig(vision_config=vision, text_config=_text_config(spec), projection_dim=spec.dim)
        model = CLIPModel(config)
        chars = sorted(ByteLevel.alphabet())
        vocab = {
            t: i
            for i, t in enumerate(["<|startoftext|>", "<|endoftext|>", *chars, *(c + "</w>" for c in chars)])
        }
        tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
        processor = CLIPImageProcessorPil(
            size={"shortest_edge": size}, crop_size={"height": size, "width": size}
        )
    else:
        from transformers.models.siglip import SiglipImageProcessorPil

        model = SiglipModel(SiglipConfig(vision_config=vision, text_config=_text_config(spec)))
        letters = list(string.ascii_letters + string.digits + ".,'-")
        vocab = {t: i for i, t in enumerate(["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "▁", *letters])}
        tokenizer = GemmaTokenizer(
            vocab=vocab, merges=[], padding_side="right", add_bos_token=False, add_eos_token=True
        )
        processor = SiglipImageProcessorPil(
            size={"height": size, "width": size}, image_mean=[0.5] * 3, image_std=[0.5] * 3
        )
    model.config._attn_implementation = "sdpa"
    model = model.eval().requires_grad_(False)
    precision = resolve_precision(dtype, torch.device("cpu"))
    model.to(dtype=precision.weights)
    return ClipEncoder(
        model,
        processor,
        tokenizer,
        name=f"random-init:{spec.name}",
        device=torch.device("cpu"),
        precision=precision,
        batch_size=batch_size,
    )


def frames_per_second(encoder: Any, repeats: int, n: int = BATCH) -> float:
    size = encoder.config.image_size
    frames = np.random.default_rng(0).integers(0, 256, (n, *size, 3), dtype=np.uint8)
    encoder.encode_images(frames[:1])  # warm-up: allocations, oneDNN kernel selection
    return n / median_seconds(lambda: encoder.encode_images(frames), repeats)


def texts_per_second(encoder: Any, repeats: int) -> float:
    encoder.encode_texts(TEXTS[:2])
    return len(TEXTS) / median_seconds(lambda: encoder.encode_texts(TEXTS), repeats)


def clip_seconds(encoder: Any, clip: Path) -> float:
    from tfvtg.features import extract_features

    start = time.perf_counter()
    extract_features(clip, encoder, batch_size=BATCH, progress=False)
    return time.perf_counter() - start


def options(spec: EncoderSpec, repeats: int) -> list[tuple[str, float]]:
    """frames/s of ``spec`` under each CPU option (same process, same frames)."""
    import torch

    rows = []
    threads = torch.get_num_threads()
    encoder = random_clip_encoder(spec)
    rows.append((f"fp32, {threads} threads (baseline)", frames_per_second(encoder, repeats)))
    torch.set_num_threads(1)
    rows.append(("fp32, 1 thread", frames_per_second(encoder, repeats)))
    torch.set_num_threads(threads)
    encoder.model.to(memory_format=torch.channels_last)
    rows.append(("fp32, channels-last", frames_per_second(encoder, repeats)))
    encoder.model.to(memory_format=torch.contiguous_format)
    bf16 = random_clip_encoder(spec, dtype="bfloat16")
    rows.append(
        (f"bf16 (CPU capability {torch.backends.cpu.get_cpu_capability()})", frames_per_second(bf16, repeats))
    )
    del bf16
    start = time.perf_counter()
    try:
        encoder.model.vision_model = torch.compile(encoder.model.vision_model)
        encoder.encode_images(np.zeros((BATCH, *encoder.config.image_size, 3), np.uint8))  # compiles
        compiled = frames_per_second(encoder, repeats)
        rows.append((f"fp32, torch.compile (compiling took {time.perf_counter() - start:.0f} s)", compiled))
    except Exception as exc:  # noqa: BLE001 (report what failed; the benchmark goes on)
        rows.append(
            (f"torch.compile failed: {type(exc).__name__}: {str(exc).splitlines()[0][:60]}", float("nan"))
        )
    return rows


def paired_ratios(vitg: Any, pairs: int) -> list[float]:
    """clip-b16 frames/s over ViT-g frames/s, each pair timed back to back (ViT-g 1 frame, clip-b16 8)."""
    b16 = random_clip_encoder(next(s for s in SPECS if s.name == "clip-b16"))
    size_g, size_b = vitg.config.image_size, b16.config.image_size
    rng = np.random.default_rng(1)
    one = rng.integers(0, 256, (1, *size_g, 3), dtype=np.uint8)
    eight = rng.integers(0, 256, (BATCH, *size_b, 3), dtype=np.uint8)
    b16.encode_images(eight[:1])
    ratios = []
    for _ in range(pairs):
        g = median_seconds(lambda: vitg.encode_images(one), 1)
        b = median_seconds(lambda: b16.encode_images(eight), 1) / BATCH
        ratios.append(g / b)
        print(
            f"  pair: ViT-g {g:.1f} s/frame, clip-b16 {b:.2f} s/frame, ratio {g / b:.1f}x "
            f"(load {os.getloadavg()[0]:.1f})",
            flush=True,
        )
    return ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median)")
    parser.add_argument(
        "--encoders", nargs="*", default=None, help="registry encoders to measure beside ViT-g (default: all)"
    )
    parser.add_argument(
        "--pairs",
        type=int,
        default=0,
        help="also time clip-b16 (8 frames) and ViT-g (1 frame) alternately this many times: the median of "
        "the paired ratios is robust to a load that changes during the run",
    )
    parser.add_argument(
        "--clip-for",
        nargs="*",
        default=["clip-b32"],
        help="encoders whose 30 s clip extraction is run (decode + encode); the others are estimated",
    )
    parser.add_argument("--skip-options", action="store_true", help="skip the CPU options section")
    args = parser.parse_args(argv)

    import torch

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, {os.cpu_count()} cores; load average before: "
        f"{os.getloadavg()[0]:.2f}"
    )
    tmp = Path(tempfile.mkdtemp(prefix="tfvtg-bench-encoders-"))
    clip = make_clip(tmp / "30s.mp4", 30.0)

    rows = []
    for spec in SPECS:
        if spec.model_type == "blip-2" or (args.encoders and spec.name not in args.encoders):
            continue
        encoder = random_clip_encoder(spec)
        fps = frames_per_second(encoder, args.repeats)
        tps = texts_per_second(encoder, args.repeats)
        wall = clip_seconds(encoder, clip) if spec.name in args.clip_for else None
        rows.append((spec.name, spec.gflops_per_frame, fps, tps, wall))
        print(
            f"  {spec.name}: {fps:.2f} frames/s, {tps:.1f} texts/s, 30 s clip "
            f"{'-' if wall is None else f'{wall:.1f} s'} "
            f"(load {os.getloadavg()[0]:.1f})",
            flush=True,
        )
        del encoder
        gc.collect()

    start = time.perf_counter()
    blip2 = random_blip2_encoder("blip2-coco", device="cpu", dtype="float32", batch_size=2)
    print(f"  blip2-coco built in {time.perf_counter() - start:.0f} s", flush=True)
    vitg_fps = frames_per_second(blip2, 1, n=2)
    vitg_tps = texts_per_second(blip2, 1)
    rows.insert(
        0,
        (
            "blip2-coco (ViT-g)",
            vision_flops_per_frame(blip2.model.config) / 1e9,
            vitg_fps,
            vitg_tps,
            None,
        ),
    )
    paired = paired_ratios(blip2, args.pairs) if args.pairs > 0 else []
    del blip2
    gc.collect()

    print(
        f"\n{'encoder':<20} {'GFLOP/frame':>11} {'frames/s':>9} {'vs ViT-g':>9} {'texts/s':>8} "
        f"{'30 s clip @3 fps':>17}"
    )
    for name, gflops, fps, tps, wall in rows:
        clip_cell = f"{wall:15.1f} s " if wall is not None else f"{90 / fps:15.1f} s*"
        print(f"{name:<20} {gflops:11.1f} {fps:9.3f} {fps / vitg_fps:8.1f}x {tps:8.1f} {clip_cell}")
    print("* not extracted (--clip-for): 90 frames / frames/s, model time only")
    by_name = {r[0]: r for r in rows}
    b16, b32 = by_name.get("clip-b16"), by_name.get("clip-b32")
    if b16 and b32:
        print(
            f"targets: clip-b16 >= 30x ViT-g frames/s: {b16[2] / vitg_fps:.1f}x "
            f"({'met' if b16[2] / vitg_fps >= 30 else 'NOT met'}); clip-b32 30 s clip at 3 fps < 10 s: "
            f"{b32[4] or 90 / b32[2]:.1f} s ({'met' if (b32[4] or 90 / b32[2]) < 10 else 'NOT met'})"
        )

    if paired:
        print(
            f"paired clip-b16 / ViT-g frames/s, {len(paired)} alternating runs: "
            f"{', '.join(f'{r:.1f}x' for r in paired)}; median {statistics.median(paired):.1f}x"
        )

    if not args.skip_options:
        spec = next(s for s in SPECS if s.name == "clip-b32")
        option_rows = options(spec, args.repeats)
        base = option_rows[0][1]
        print(f"\n{'clip-b32 option':<60} {'frames/s':>9} {'vs baseline':>12}")
        for what, fps in option_rows:
            print(f"{what:<60} {fps:9.2f} {fps / base:11.2f}x")
    print(
        f"\nload average after: {os.getloadavg()[0]:.2f} (machine shared with other jobs; numbers are lower "
        f"bounds on throughput)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
