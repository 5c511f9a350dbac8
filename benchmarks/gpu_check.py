"""The GPU check of issue 16, one run of at most 8 minutes for the first session that is lent a GPU.

Sections (each prints as it finishes; one that fails prints why and the next one runs):

1. device: the GPU's name, compute capability, and the peak-table entry MFU is computed against.
2. encode: the real blip2-itm-vit-g-coco architecture (EVA ViT-g/14 at 364 px + Q-Former) with random
   weights, saved once and loaded through `create_encoder` like a real checkpoint; frames/s and MFU of
   ``autocast-float16`` (the default: fp32 weights, fp16 autocast, TF32 Q-Former) against ``bfloat16`` at
   batch 64, 128 and 256, and the Q-Former with TF32 off (the official code's) at batch 128.
3. numerics: on fixed random inputs (seeded frames and texts), the similarity of each precision against
   ``float32`` (TF32 off): max and mean absolute difference, and how often the top-1 frame of a text changes.
   Rows: the default; the official numerics (TF32 off in the Q-Former); the Q-Former under the same fp16
   autocast (the alternative issue 16 names); ``float16``; ``bfloat16``.
4. preprocessing memory: peak memory of `Blip2Encoder.preprocess` on the largest batch (int32 indices, one
   channel at a time, the table in the pixel dtype) against the int64 gather over all channels it replaced
   (written out below as the baseline), with a check that both give identical pixels.
5. extract: ``tfvtg extract`` (the console script, a subprocess) on 20 synthetic 30 s 640x360 H.264 clips:
   frames/s over the videos (the command's own per-video times, and wall time) and the GPU's utilisation
   sampled by nvidia-smi every 0.2 s while it encodes.
6. Qwen2-VL: when weights are on disk (``$QWEN2VL_MODEL``, or Qwen2-VL / Qwen2.5-VL Instruct in the Hugging
   Face cache), `Qwen2VLBackend.load` on the GPU (device_map): seconds, GPU memory, host peak RSS; one answer.

Without CUDA it runs a CPU-sized version of every section (the tiny test model at 364 px with patch 14,
batches 8/16/32, 20 clips of 3 s, the tiny Qwen2-VL), says so, and its numbers mean nothing: it checks the
script. Not part of CI. Run: ``bash benchmarks/gpu_check.sh`` (from the repository root).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_encode_gpu import time_encode  # noqa: E402
from blip2_random import random_blip2_encoder, vision_flops_per_frame  # noqa: E402
from clips import make_clip  # noqa: E402
from gpu_peaks import peak_for, peak_tflops  # noqa: E402
from memory import measured  # noqa: E402

N_TEXTS = 12
N_FRAMES = 48  # frames of the numerics check: each text's curve has this many points


def say(text: str = "") -> None:
    print(text, flush=True)


@contextlib.contextmanager
def section(title: str) -> Iterator[None]:
    say(f"\n== {title}")
    began = time.perf_counter()
    try:
        yield
    except Exception as exc:  # a benchmark: report and go on to the next section
        say(f"FAILED: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    say(f"({time.perf_counter() - began:.1f} s)")


# ---------------------------------------------------------------------- model on disk
def write_model(tmp: Path, cuda: bool) -> Path:
    """A checkpoint directory: the real architecture, random weights (CUDA), else the tiny model at 364."""
    out = tmp / ("blip2-coco-random" if cuda else "tiny-blip2-364")
    if cuda:
        encoder = random_blip2_encoder("blip2-coco", device="cpu", dtype="float32")
        encoder.model.save_pretrained(str(out), safe_serialization=True)
        encoder.image_processor.save_pretrained(str(out))
        encoder.tokenizer.save_pretrained(str(out))
        del encoder
        gc.collect()
    else:
        from tests.fixtures.tiny_models import make_tiny_blip2

        make_tiny_blip2(out, image_size=364, patch_size=14)
    return out


def load(model_dir: Path, device: str, precision: str, batch: int) -> Any:
    from tfvtg.encoders import create_encoder

    return create_encoder(str(model_dir), device=device, dtype=precision, batch_size=batch)


def free(encoder: Any) -> None:
    import torch

    del encoder
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------- 2. encode throughput
def encode_section(model_dir: Path, device: str, batches: list[int], min_seconds: float,
                   peaks: tuple[str, dict[str, float]] | None) -> None:
    rows = []
    flops = None
    for precision in ("autocast-float16", "bfloat16"):
        encoder = load(model_dir, device, precision, max(batches))
        flops = flops or vision_flops_per_frame(encoder.model.config)
        for batch in batches:
            rows.append((precision, "TF32", batch, *time_encode(encoder, batch, min_seconds)))
        if precision == "autocast-float16":
            encoder.precision = dataclasses.replace(encoder.precision, tf32=False)
            batch = batches[len(batches) // 2]
            rows.append((precision, "fp32 (official)", batch, *time_encode(encoder, batch, min_seconds)))
        free(encoder)
    base = rows[0][2] / rows[0][3]
    say(f"FLOPs per frame (analytic): {flops / 1e9:.4g} GFLOP; ratio vs autocast-float16 batch {rows[0][2]}")
    say(f"| {'precision':<16} | {'Q-Former':<15} | {'batch':>5} | {'frames/s':>9} | {'TFLOP/s':>8} | "
        f"{'MFU':>6} | {'ratio':>5} |")
    for precision, qformer, batch, per_batch, _iters in rows:
        fps = batch / per_batch
        tflops = fps * flops / 1e12
        peak = peak_tflops(peaks[1], precision) if peaks else None
        mfu = f"{100 * tflops / peak:5.1f}%" if peak else "n/a"
        say(f"| {precision:<16} | {qformer:<15} | {batch:>5} | {fps:9.1f} | {tflops:8.2f} | {mfu:>6} | "
            f"{fps / base:5.2f} |")


# ---------------------------------------------------------------------- 3. numerics
def numerics_section(model_dir: Path, device: str, size: tuple[int, int]) -> None:
    import torch

    rng = np.random.default_rng(16)
    frames = rng.integers(0, 256, (N_FRAMES, *size, 3), dtype=np.uint8)
    smooth = np.linspace(0, 255, size[1], dtype=np.float32)[None, None, :, None]
    frames[: N_FRAMES // 2] = (frames[: N_FRAMES // 2] * 0.3 + smooth * 0.7).astype(np.uint8)  # less noise
    words = ["person", "door", "opens", "table", "walking", "cup", "holds", "dog", "sits", "chair", "man"]
    texts = [" ".join(rng.choice(words, 5)) for _ in range(N_TEXTS)]

    def curves(precision: str, tf32: bool = True, qformer_autocast: bool = False) -> np.ndarray:
        encoder = load(model_dir, device, precision, 16)
        encoder.precision = dataclasses.replace(encoder.precision, tf32=tf32 and precision != "float32")
        outer = (torch.autocast(encoder.device.type, dtype=torch.float16) if qformer_autocast
                 else contextlib.nullcontext())
        with outer:
            feats = encoder.encode_images(frames)
        sims = encoder.similarity(feats.astype(np.float16), encoder.encode_texts(texts))  # stored as fp16
        free(encoder)
        return sims

    torch.backends.cuda.matmul.allow_tf32 = False
    reference = curves("float32")
    rows = [("autocast-float16 (default: TF32 Q-Former)", curves("autocast-float16")),
            ("autocast-float16, fp32 Q-Former (official)", curves("autocast-float16", tf32=False)),
            ("Q-Former under the fp16 autocast too", curves("autocast-float16", qformer_autocast=True)),
            ("float16 (weights cast)", curves("float16")),
            ("bfloat16 (weights cast)", curves("bfloat16"))]
    say(f"{N_TEXTS} texts x {N_FRAMES} frames (seeded); |similarity - float32 (TF32 off)|; features stored "
        f"as float16 like feature files")
    say(f"| {'precision':<44} | {'max |diff|':>10} | {'mean |diff|':>11} | {'top-1 frame changed':>19} |")
    for label, sims in rows:
        diff = np.abs(sims - reference)
        changed = int((sims.argmax(axis=1) != reference.argmax(axis=1)).sum())
        say(f"| {label:<44} | {diff.max():10.2e} | {diff.mean():11.2e} | {changed:>8} of {N_TEXTS:<8} |")
    default, bf16 = rows[0][1], rows[-1][1]
    between = np.abs(default - bf16)
    say(f"autocast-float16 against bfloat16 directly: max {between.max():.2e}, mean {between.mean():.2e}; "
        f"top-1 frame differs for {int((default.argmax(1) != bf16.argmax(1)).sum())} of {N_TEXTS} texts")


# ---------------------------------------------------------------------- 4. preprocessing memory
def int64_gather(encoder: Any, frames: np.ndarray) -> Any:
    """The preprocessing `Blip2Encoder.preprocess` replaced: int64 indices over all channels, fp32 table."""
    import torch

    table = encoder._lut_device.float().reshape(-1)
    raw = torch.from_numpy(np.ascontiguousarray(frames))
    if encoder.device.type == "cuda":
        raw = raw.pin_memory()
    raw = raw.to(encoder.device, non_blocking=True).long()
    raw += torch.arange(3, device=encoder.device) * 256
    return table[raw].permute(0, 3, 1, 2).to(encoder.precision.pixel_dtype).contiguous()


def preprocess_memory_section(model_dir: Path, device: str, batch: int) -> None:
    import torch

    cuda = device == "cuda"

    def peak_mib(fn: Callable[[], Any]) -> tuple[float, Any]:
        if not cuda:
            mib, _traced, _seconds, result = measured(fn)
            return mib, result
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        result = fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - start) / 2**20, result

    for precision in ("autocast-float16", "float32"):
        encoder = load(model_dir, device, precision, batch)
        frames = np.random.default_rng(4).integers(0, 256, (batch, *encoder.config.image_size, 3), np.uint8)
        old_mib, old = peak_mib(lambda enc=encoder, f=frames: int64_gather(enc, f))
        del old  # freed before the next measurement; made again below for the comparison
        new_mib, new = peak_mib(lambda enc=encoder, f=frames: enc.preprocess(f))
        same = torch.equal(new, int64_gather(encoder, frames))
        out_mib = new.numel() * new.element_size() / 2**20
        where = "GPU max_memory_allocated" if cuda else "host peak RSS"
        say(f"{precision}: batch {batch} at {encoder.config.image_size[0]} px ({where}; output {out_mib:.0f} "
            f"MiB in {str(new.dtype).replace('torch.', '')}): int64 gather {old_mib:.0f} MiB, preprocess "
            f"{new_mib:.0f} MiB, {old_mib / max(new_mib, 1e-9):.1f}x less; identical pixels: {same}")
        del new
        free(encoder)


# ---------------------------------------------------------------------- 5. tfvtg extract end to end
class GpuSampler:
    """nvidia-smi utilisation samples every 0.2 s, each with its time, in a background process."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        if shutil.which("nvidia-smi") is None:
            return
        index = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or "0"
        self._proc = subprocess.Popen(["nvidia-smi", "-i", index, "--query-gpu=utilization.gpu",
                                       "--format=csv,noheader,nounits", "-lms", "200"],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._proc.stdout:  # type: ignore[union-attr]
            with contextlib.suppress(ValueError):
                self.samples.append((time.perf_counter(), float(line.strip())))

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=5)

    def mean(self, start: float, end: float) -> str:
        values = [v for t, v in self.samples if start <= t <= end]
        return f"{np.mean(values):.0f}% (median {np.median(values):.0f}%, {len(values)} samples)" if values \
            else "n/a (no nvidia-smi)"


def extract_section(model_dir: Path, tmp: Path, device: str, n_clips: int, seconds: float,
                    batches: list[int]) -> None:
    clip = make_clip(tmp / "clip.mp4", seconds)
    videos = tmp / "videos"
    videos.mkdir(exist_ok=True)
    for i in range(n_clips):
        shutil.copy(clip, videos / f"clip{i:02d}.mp4")
    tfvtg = Path(sys.executable).with_name("tfvtg")
    command = [str(tfvtg)] if tfvtg.exists() else [sys.executable, "-m", "tfvtg.cli"]
    say(f"{n_clips} clips of {seconds:g} s, 640x360 H.264 at 30 fps, sampled at 3 fps")
    for batch in batches:
        out = tmp / f"features-{batch}"
        sampler = GpuSampler()
        began = time.perf_counter()
        errors = tmp / f"extract-{batch}.err"  # a file: progress bars must never fill a pipe nobody reads
        with errors.open("w") as err_file:
            proc = subprocess.Popen([*command, "extract", str(videos), "--out", str(out), "--model",
                                     str(model_dir), "--device", device, "--batch-size", str(batch)],
                                    stdout=subprocess.PIPE, stderr=err_file, text=True)
        frames = 0
        video_seconds = 0.0
        first_start = None
        for line in proc.stdout:  # type: ignore[union-attr]
            match = re.search(r"\((\d+) frames, .*\) in ([\d.]+) s", line)
            if match:
                frames += int(match.group(1))
                video_seconds += float(match.group(2))
                if first_start is None:
                    first_start = time.perf_counter() - float(match.group(2))
        proc.wait()
        end = time.perf_counter()
        sampler.stop()
        if proc.returncode != 0:
            last = errors.read_text().strip().splitlines()[-1:]
            raise RuntimeError(f"tfvtg extract exited {proc.returncode}: {last}")
        first_start = first_start or began
        say(f"batch {batch}: {frames} frames; {frames / video_seconds:.1f} frames/s by the per-video times, "
            f"{frames / (end - first_start):.1f} frames/s wall from the first video's start "
            f"({end - began:.1f} s with model loading); GPU utilisation while encoding: "
            f"{sampler.mean(first_start, end)}")


# ---------------------------------------------------------------------- 6. Qwen2-VL
def qwen_weights() -> str | None:
    if os.environ.get("QWEN2VL_MODEL"):
        return os.environ["QWEN2VL_MODEL"]
    hub = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", "~/.cache/huggingface"))
               / "hub").expanduser()
    for name in ("Qwen2-VL-2B-Instruct", "Qwen2-VL-7B-Instruct", "Qwen2.5-VL-3B-Instruct",
                 "Qwen2.5-VL-7B-Instruct"):
        snapshots = hub / f"models--Qwen--{name}" / "snapshots"
        found = sorted(snapshots.glob("*/config.json")) if snapshots.is_dir() else []
        if found:
            return str(found[-1].parent)
    return None


def qwen_section(tmp: Path, cuda: bool) -> None:
    import torch

    from numpro.qwen2vl import Qwen2VLBackend

    source = qwen_weights() if cuda else None
    if source is None:
        if cuda:
            say("skipped: no Qwen2-VL weights (set QWEN2VL_MODEL or put Qwen/Qwen2-VL-*-Instruct in the "
                "Hugging Face cache)")
            return
        from tests.fixtures.tiny_qwen2vl import build_tiny_qwen2vl

        source = str(build_tiny_qwen2vl(tmp / "tiny-qwen2vl"))
        say("CPU: the tiny random Qwen2-VL, to check the loader path")
    backend = Qwen2VLBackend(source, device="cuda" if cuda else "cpu", max_new_tokens=16)
    mib, _traced, seconds, _ = measured(backend.load)
    weights = next(backend._model.parameters())
    gpu = f", GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if cuda else ""
    say(f"{source}: loaded in {seconds:.1f} s, host peak RSS +{mib:.0f} MiB{gpu}; weights on "
        f"{weights.device} in {weights.dtype}")
    frames = [np.random.default_rng(i).integers(0, 256, (224, 224, 3), np.uint8) for i in range(8)]
    began = time.perf_counter()
    question = "During which frames can we see a dog?"
    answer = backend.answer(frames, question, times=[float(i) for i in range(8)])
    say(f"one answer over 8 frames in {time.perf_counter() - began:.1f} s: {answer[:60]!r}")


# ---------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="+", default=["encode", "numerics", "memory", "extract", "qwen"])
    args = parser.parse_args(argv)
    import torch

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    batches = [64, 128, 256] if cuda else [8, 16, 32]
    with section("1. device"):
        if cuda:
            name = torch.cuda.get_device_name()
            peaks = peak_for(name)
            say(f"{name}, compute capability {'.'.join(map(str, torch.cuda.get_device_capability()))}; "
                f"torch {torch.__version__}; MFU against the "
                + (f"{peaks[0]} entry (fp16/bf16 dense {peaks[1].get('float16')} TFLOP/s)" if peaks
                   else "no entry: unknown GPU, MFU n/a"))
        else:
            peaks = None
            say(f"NO CUDA: the CPU-sized version (tiny model at 364 px, batches {batches}, short clips); "
                f"checks the script, its numbers mean nothing; torch {torch.__version__}")
    with tempfile.TemporaryDirectory(prefix="tfvtg-gpu-check-") as name:
        tmp = Path(name)
        model_dir = None
        with section("model: " + ("real architecture, random weights, saved" if cuda else "tiny at 364 px")):
            model_dir = write_model(tmp, cuda)
            say(f"{model_dir}")
        if model_dir is None:
            return 1
        size = (364, 364)
        if "encode" in args.sections:
            with section("2. encode: frames/s and MFU"):
                encode_section(model_dir, device, batches, 2.0 if cuda else 0.2, peaks)
        if "numerics" in args.sections:
            with section("3. numerics: similarity against float32"):
                numerics_section(model_dir, device, size)
        if "memory" in args.sections:
            with section("4. preprocessing memory"):
                preprocess_memory_section(model_dir, device, batches[-1])
        if "extract" in args.sections:
            with section("5. tfvtg extract end to end"):
                extract_section(model_dir, tmp, device, 20, 30.0 if cuda else 3.0,
                                [32, 128] if cuda else [32])
        if "qwen" in args.sections:
            with section("6. Qwen2-VL loader"):
                qwen_section(tmp, cuda)
    return 0


if __name__ == "__main__":
    sys.exit(main())
