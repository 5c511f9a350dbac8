"""Randomly initialised BLIP-2 encoders with the real checkpoints' architecture, to time without weights.

The configs are those of the Hugging Face checkpoints (config.json of ``Salesforce/blip2-itm-vit-g-coco`` and
``Salesforce/blip2-itm-vit-g``: EVA ViT-g/14 vision tower, 12-layer Q-Former with cross-attention every second
layer, 32 queries, 256-d ITC space, Q-Former vocabulary 30523 with text input), written out explicitly so the
benchmark does not depend on transformers' defaults. Random weights cost the same FLOPs as real ones.

Used by bench_encode_cpu_cost.py and bench_encode_gpu.py (run from the repository root:
``python benchmarks/bench_encode_cpu_cost.py``).
"""

from __future__ import annotations

import string
import tempfile
from pathlib import Path
from typing import Any

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGE_SIZE = {"blip2-coco": 364, "blip2": 224}

VISION = {  # EVA-CLIP ViT-g/14 as converted to Blip2VisionConfig
    "hidden_size": 1408,
    "intermediate_size": 6144,
    "num_hidden_layers": 39,
    "num_attention_heads": 16,
    "patch_size": 14,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-6,
    "qkv_bias": True,
}
QFORMER = {  # BERT-base Q-Former
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "cross_attention_frequency": 2,
    "encoder_hidden_size": 1408,
    "vocab_size": 30523,
    "max_position_embeddings": 512,
    "use_qformer_text_input": True,
}
NUM_QUERY_TOKENS = 32
EMBED_DIM = 256


def real_blip2_config(name: str = "blip2-coco") -> Any:
    """The `Blip2Config` of the registry checkpoint ``name`` ("blip2-coco": 364 px, "blip2": 224 px)."""
    from transformers import Blip2Config

    return Blip2Config(
        vision_config={**VISION, "image_size": IMAGE_SIZE[name]},
        qformer_config=dict(QFORMER),
        num_query_tokens=NUM_QUERY_TOKENS,
        image_text_hidden_size=EMBED_DIM,
    )


def vision_flops_per_frame(config: Any) -> float:
    """Analytic forward FLOPs (2 per multiply-add) of one frame's image path: ViT + Q-Former + projection.

    The formulas are `tfvtg.encoders.zoo`'s (the numbers ``tfvtg encoders`` lists), applied to ``config``.
    """
    from tfvtg.encoders.zoo import qformer_flops, vit_flops

    v, q = config.vision_config, config.qformer_config
    tokens = (v.image_size // v.patch_size) ** 2 + 1
    vit = vit_flops(v.image_size, v.patch_size, v.hidden_size, v.intermediate_size, v.num_hidden_layers)
    qformer = qformer_flops(
        tokens, encoder_hidden=q.encoder_hidden_size, queries=config.num_query_tokens, hidden=q.hidden_size,
        intermediate=q.intermediate_size, layers=q.num_hidden_layers, cross_every=q.cross_attention_frequency,
    )
    proj = 2 * config.num_query_tokens * q.hidden_size * config.image_text_hidden_size
    return float(vit + qformer + proj)


def _tokenizer(vocab_size: int) -> Any:
    """A BERT WordPiece tokenizer of ``vocab_size`` entries (letters and word pieces, then fillers)."""
    from transformers import BertTokenizer

    base = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    base += list(string.ascii_lowercase + string.digits) + ["##" + c for c in string.ascii_lowercase]
    vocab = base + [f"[unused{i}]" for i in range(vocab_size - len(base))]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
        return BertTokenizer.from_pretrained(tmp, do_lower_case=True)


def random_blip2_encoder(
    name: str = "blip2-coco",
    *,
    device: str = "cpu",
    dtype: str | None = None,
    batch_size: int = 8,
    seed: int = 0,
) -> Any:
    """A `Blip2Encoder` with the real architecture of ``name`` and random weights (N(0, 0.02), LayerNorm 1/0).

    Built on the CPU in float32 (about 4.6 GB for ViT-g), then the vision tower is cast to the precision's
    weight dtype and everything moved to ``device``, as `Blip2Encoder.from_pretrained` does with real weights.
    """
    import torch
    from transformers import Blip2ForImageTextRetrieval

    from tfvtg.device import resolve_device, resolve_precision
    from tfvtg.encoders.blip2 import Blip2Encoder

    try:  # transformers 5: the PIL backend when torchvision is absent; same preprocessing either way
        from transformers.models.blip import BlipImageProcessorPil as ImageProcessor
    except ImportError:
        from transformers.models.blip import BlipImageProcessor as ImageProcessor

    torch_device = resolve_device(device)
    precision = resolve_precision(dtype, torch_device)
    config = real_blip2_config(name)
    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    model = Blip2ForImageTextRetrieval(config).eval().requires_grad_(False)
    with torch.no_grad():
        for pname, param in model.named_parameters():
            if "norm" in pname.lower():
                param.fill_(1.0 if pname.endswith("weight") else 0.0)
            elif pname.endswith("bias"):
                param.zero_()
            else:
                param.normal_(0.0, 0.02)
    model.vision_model.to(dtype=precision.weights)
    model.to(torch_device)
    size = IMAGE_SIZE[name]
    image_processor = ImageProcessor(
        size={"height": size, "width": size}, resample=3, image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD)
    )
    return Blip2Encoder(
        model,
        image_processor,
        _tokenizer(QFORMER["vocab_size"]),
        name=f"random-init:{name}",
        device=torch_device,
        precision=precision,
        batch_size=batch_size,
    )
