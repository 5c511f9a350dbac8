"""The registered encoders and their cost: checkpoint, input size, feature shape, analytic GFLOP per frame.

`SPECS` is the registry's data (`tfvtg.encoders.REGISTRY` maps its names to checkpoints); ``tfvtg encoders``
prints it. The architecture numbers are those of the checkpoints' ``config.json`` files; GFLOP per frame is
computed from them (2 FLOPs per multiply-add, image path only). The CPU frames/s are recorded benchmark
results (``benchmarks/bench_encoders_cpu.py`` on this project's shared 2-core CPU, fp32; `CPU_BENCHMARK`,
benchmarks/RESULTS.md), not a promise for other machines. Pure data and arithmetic: no torch here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CPU_BENCHMARK", "EncoderSpec", "SPECS", "format_specs", "qformer_flops", "spec_rows", "vit_flops"]

CPU_BENCHMARK = (
    "recorded benchmark results, not measured now (benchmarks/RESULTS.md): bench_encoders_cpu.py, random\n"
    "  weights, fp32, batch 8, 2 threads, on the project's 2-core AMD EPYC (AVX-512), otherwise idle"
)


@dataclass(frozen=True)
class EncoderSpec:
    """One registered encoder.

    Attributes:
        name: Registry name (``--model``).
        checkpoint: Hugging Face Hub id.
        model_type: ``config.json`` ``model_type`` (picks the back-end).
        image_size: Square input side in pixels.
        patch: ViT patch size.
        vision: (hidden, intermediate, layers) of the vision transformer.
        tokens_per_frame: Q, feature tokens stored per frame.
        dim: D, the embedding dimension.
        cpu_frames_per_s: Recorded CPU throughput (`CPU_BENCHMARK`); None if not measured.
    """

    name: str
    checkpoint: str
    model_type: str
    image_size: int
    patch: int
    vision: tuple[int, int, int]
    tokens_per_frame: int
    dim: int
    cpu_frames_per_s: float | None = None

    @property
    def gflops_per_frame(self) -> float:
        """Analytic forward GFLOP of one frame's image path (vision transformer, pooling, projection)."""
        hidden, intermediate, layers = self.vision
        cls_token = self.model_type != "siglip"  # SigLIP has no CLS token; it pools with an attention head
        flops = vit_flops(self.image_size, self.patch, hidden, intermediate, layers, cls_token=cls_token)
        tokens = (self.image_size // self.patch) ** 2 + int(cls_token)
        if self.model_type == "blip-2":
            flops += qformer_flops(tokens, encoder_hidden=hidden) + 2 * 32 * 768 * self.dim
        elif self.model_type == "siglip":  # one probe attending to every patch, then its MLP
            flops += 2 * hidden * hidden * (2 + 2 * tokens) + 4 * tokens * hidden + 4 * hidden * intermediate
        else:
            flops += 2 * hidden * self.dim
        return flops / 1e9


def vit_flops(image_size: int, patch: int, hidden: int, intermediate: int, layers: int, *,
              cls_token: bool = True) -> float:
    """Forward FLOPs of a plain ViT on one image: patch embedding plus ``layers`` pre-norm blocks."""
    patches = (image_size // patch) ** 2
    tokens = patches + int(cls_token)
    embed = 2 * patches * 3 * patch * patch * hidden
    layer = 2 * tokens * (4 * hidden * hidden + 2 * hidden * intermediate) + 2 * 2 * tokens * tokens * hidden
    return float(embed + layers * layer)


def qformer_flops(image_tokens: int, *, encoder_hidden: int, queries: int = 32, hidden: int = 768,
                  intermediate: int = 3072, layers: int = 12, cross_every: int = 2) -> float:
    """Forward FLOPs of BLIP-2's Q-Former (its 32 queries; cross-attention every ``cross_every`` layers)."""
    self_attn = 2 * queries * 4 * hidden * hidden + 2 * 2 * queries * queries * hidden
    ffn = 2 * queries * 2 * hidden * intermediate
    cross = (2 * queries * 2 * hidden * hidden + 2 * image_tokens * 2 * encoder_hidden * hidden
             + 2 * 2 * queries * image_tokens * hidden)
    n_cross = sum(1 for i in range(layers) if i % cross_every == 0)
    return float(layers * (self_attn + ffn) + n_cross * cross)


_VIT_G = (1408, 6144, 39)
_VIT_B = (768, 3072, 12)
_VIT_L = (1024, 4096, 24)

# cpu_frames_per_s: bench_encoders_cpu.py runs 3 and 4 (2026-12-06, load average 0.7-2.4 on 2 cores).
SPECS: tuple[EncoderSpec, ...] = (
    EncoderSpec("blip2", "Salesforce/blip2-itm-vit-g", "blip-2", 224, 14, _VIT_G, 32, 256),
    EncoderSpec("blip2-coco", "Salesforce/blip2-itm-vit-g-coco", "blip-2", 364, 14, _VIT_G, 32, 256, 0.123),
    EncoderSpec("clip-b32", "openai/clip-vit-base-patch32", "clip", 224, 32, _VIT_B, 1, 512, 19.7),
    EncoderSpec("clip-b16", "openai/clip-vit-base-patch16", "clip", 224, 16, _VIT_B, 1, 512, 4.53),
    EncoderSpec("clip-l14", "openai/clip-vit-large-patch14", "clip", 224, 14, _VIT_L, 1, 768, 0.90),
    EncoderSpec("siglip2-b16", "google/siglip2-base-patch16-224", "siglip", 224, 16, _VIT_B, 1, 768, 3.64),
)


def spec_rows() -> list[dict[str, object]]:
    """One plain dict per registered encoder (what ``tfvtg encoders --json`` prints)."""
    return [
        {
            "name": s.name,
            "checkpoint": s.checkpoint,
            "image_size": s.image_size,
            "tokens_per_frame": s.tokens_per_frame,
            "dim": s.dim,
            "gflops_per_frame": round(s.gflops_per_frame, 1),
            "recorded_cpu_frames_per_s": s.cpu_frames_per_s,
        }
        for s in SPECS
    ]


def format_specs() -> list[str]:
    """The registry as an aligned text table, the recorded CPU speeds labelled as such."""
    lines = [f"{'name':<12} {'checkpoint':<33} {'image':>5} {'tokens':>6} {'dim':>4} {'GFLOP/frame':>11} "
             f"{'CPU frames/s*':>13}"]
    for s in SPECS:
        speed = f"{s.cpu_frames_per_s:13.3f}" if s.cpu_frames_per_s is not None else f"{'-':>13}"
        lines.append(f"{s.name:<12} {s.checkpoint:<33} {s.image_size:>5} {s.tokens_per_frame:>6} {s.dim:>4} "
                     f"{s.gflops_per_frame:11.1f} {speed}")
    lines.append(f"* {CPU_BENCHMARK}")
    return lines
