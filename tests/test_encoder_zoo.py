"""The encoder zoo: CLIP and SigLIP 2 beside BLIP-2 (tiny seeded checkpoints), truncation warnings, mixing."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from tfvtg.encoders import (
    REGISTRY,
    SPECS,
    checkpoint_shape,
    create_encoder,
    list_encoders,
    resolve_name,
)
from tfvtg.errors import InputError, ModelError

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

TEXTS = ["a person opens the door", "A Dog sits on a chair", "the man holds a cup then runs"]


def frames(n: int = 4, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def clip_encoder(tiny_clip_dir):
    return create_encoder(str(tiny_clip_dir), device="cpu")


@pytest.fixture(scope="module")
def siglip_encoder(tiny_siglip2_dir):
    return create_encoder(str(tiny_siglip2_dir), device="cpu")


@pytest.fixture(params=["clip", "siglip"])
def zoo_encoder(request, clip_encoder, siglip_encoder):
    return clip_encoder if request.param == "clip" else siglip_encoder


def model_logits(encoder, images: np.ndarray, texts: list[str]) -> np.ndarray:
    """The model's own forward logits (N images, M texts) on its processor's pixels and our tokens."""
    pixels = encoder.image_processor(
        images=list(images), return_tensors="pt", input_data_format="channels_last"
    )
    with torch.no_grad():
        out = encoder.model(pixel_values=pixels["pixel_values"], **encoder.tokenize(texts))
    return out.logits_per_image.float().numpy()


# ---------------------------------------------------------------------- registry
def test_registry_names_and_specs():
    assert list_encoders() == ["blip2", "blip2-coco", "clip-b16", "clip-b32", "clip-l14", "siglip2-b16"]
    assert resolve_name("clip-b16") == ("openai/clip-vit-base-patch16", False)
    assert resolve_name("siglip2-b16") == ("google/siglip2-base-patch16-224", False)
    assert REGISTRY["clip-l14"] == "openai/clip-vit-large-patch14"
    by_name = {s.name: s for s in SPECS}
    # ViT-B/16 at 224 px is the well-known 17.6 GMAC (35.1 GFLOP); ViT-g at 364 px costs ~41x that.
    assert by_name["clip-b16"].gflops_per_frame == pytest.approx(35.1, rel=0.01)
    assert by_name["clip-b32"].gflops_per_frame == pytest.approx(8.8, rel=0.01)
    ratio = by_name["clip-b16"].gflops_per_frame / by_name["blip2-coco"].gflops_per_frame
    assert 0.02 < ratio < 0.03  # "about 2.5% of the ViT-g's FLOPs" (issue 14)


def test_blip2_flops_formula_is_the_benchmarks(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from blip2_random import real_blip2_config, vision_flops_per_frame

    by_name = {s.name: s for s in SPECS}
    for name in ("blip2", "blip2-coco"):
        assert vision_flops_per_frame(real_blip2_config(name)) / 1e9 == pytest.approx(
            by_name[name].gflops_per_frame, rel=1e-9
        )


def test_encoders_command_lists_the_registry():
    from click.testing import CliRunner

    from tfvtg.cli import cli

    result = CliRunner().invoke(cli, ["encoders"])
    assert result.exit_code == 0, result.output
    for spec in SPECS:
        assert spec.name in result.output and spec.checkpoint in result.output
    assert "recorded benchmark results" in result.output
    rows = json.loads(CliRunner().invoke(cli, ["encoders", "--json"]).output)
    assert {r["name"] for r in rows} == set(list_encoders())
    assert {"image_size", "tokens_per_frame", "dim", "gflops_per_frame", "recorded_cpu_frames_per_s"} <= set(
        rows[0]
    )


# ---------------------------------------------------------------------- features are the model's own
def test_configs(clip_encoder, siglip_encoder, tiny_clip_dir, tiny_siglip2_dir):
    c, s = clip_encoder.config, siglip_encoder.config
    assert (c.name, c.image_size, c.num_query_tokens, c.embed_dim) == (
        str(tiny_clip_dir.resolve()),
        (32, 32),
        1,
        16,
    )
    assert (s.image_size, s.num_query_tokens, s.embed_dim) == ((32, 32), 1, 24)
    assert s.mean == (0.5, 0.5, 0.5)
    for cfg in (c, s):  # TAG's CLIP-like settings: mask at cosine 0, plain k-means
        assert (cfg.mask_threshold, cfg.tag_mask_threshold, cfg.tag_temporal_coherence) == (0.0, 0.0, False)
    assert (clip_encoder.family, clip_encoder.context) == ("clip", 77)
    assert (siglip_encoder.family, siglip_encoder.context) == ("siglip", 64)


def test_features_equal_the_models_own_heads(zoo_encoder):
    images = frames(5)
    ours = zoo_encoder.encode_images(images)
    assert ours.shape == (5, 1, zoo_encoder.config.embed_dim) and ours.dtype == np.float32
    pixels = zoo_encoder.image_processor(
        images=list(images), return_tensors="pt", input_data_format="channels_last"
    )
    with torch.no_grad():
        theirs = zoo_encoder.model.get_image_features(pixel_values=pixels["pixel_values"])
        text_theirs = zoo_encoder.model.get_text_features(**zoo_encoder.tokenize(TEXTS))
    theirs = getattr(theirs, "pooler_output", theirs)
    text_theirs = getattr(text_theirs, "pooler_output", text_theirs)
    np.testing.assert_allclose(ours[:, 0], theirs.numpy(), atol=1e-5)
    np.testing.assert_allclose(zoo_encoder.encode_texts(TEXTS), text_theirs.numpy(), atol=1e-5)


def test_similarity_is_the_logits_up_to_scale_and_bias(zoo_encoder):
    images = frames(4, seed=3)
    ours = zoo_encoder.similarity(
        zoo_encoder.encode_images(images), zoo_encoder.encode_texts(TEXTS)
    )  # (M, T)
    theirs = model_logits(zoo_encoder, images, TEXTS).T
    scale = float(zoo_encoder.model.logit_scale.exp())
    bias = float(zoo_encoder.model.logit_bias) if zoo_encoder.family == "siglip" else 0.0
    np.testing.assert_allclose(ours * scale + bias, theirs, rtol=1e-4, atol=1e-4)
    assert not np.allclose(ours, ours[:, :1])  # frames differ: a real curve, not a constant


def test_frames_of_any_size_are_resized_whole(clip_encoder):
    """The decoder hands whole frames at the model's size; a 16:9 frame is squashed, never centre-cropped."""
    from PIL import Image

    wide = np.random.default_rng(4).integers(0, 256, (2, 45, 80, 3), dtype=np.uint8)
    resized = np.stack([np.asarray(Image.fromarray(f).resize((32, 32), Image.BICUBIC)) for f in wide])
    np.testing.assert_allclose(
        clip_encoder.encode_images(wide), clip_encoder.encode_images(resized), atol=1e-5
    )
    assert torch.equal(  # the fast path equals the processor on frames already at size
        clip_encoder.preprocess(resized),
        clip_encoder.image_processor(
            images=list(resized), return_tensors="pt", input_data_format="channels_last"
        )["pixel_values"],
    )


def test_siglip_lower_cases_and_pads_to_its_context(siglip_encoder):
    tokens = siglip_encoder.tokenize(["A Dog SITS"])
    assert tokens["input_ids"].shape == (1, 64)
    assert siglip_encoder.tokenizer.decode(tokens["input_ids"][0], skip_special_tokens=True) == "a dog sits"
    np.testing.assert_array_equal(
        siglip_encoder.encode_texts(["A Dog SITS"]), siglip_encoder.encode_texts(["a dog sits"])
    )
    assert siglip_encoder.tokenizer("A")["input_ids"] != siglip_encoder.tokenizer("a")["input_ids"]


def test_batch_size_does_not_change_features(tiny_clip_dir, clip_encoder):
    small = create_encoder(str(tiny_clip_dir), device="cpu", batch_size=2)
    np.testing.assert_allclose(
        small.encode_images(frames(5)), clip_encoder.encode_images(frames(5)), atol=1e-5
    )
    np.testing.assert_allclose(small.encode_texts(TEXTS), clip_encoder.encode_texts(TEXTS), atol=1e-5)


# ---------------------------------------------------------------------- truncation is said, once per query
@pytest.fixture(params=["blip2", "clip", "siglip"])
def any_encoder(request, tiny_encoder, clip_encoder, siglip_encoder):
    return {"blip2": tiny_encoder, "clip": clip_encoder, "siglip": siglip_encoder}[request.param]


def test_long_queries_warn_once_with_the_dropped_text(any_encoder, caplog):
    """Two long queries that differ only at the end: identical embeddings, so each must be warned about."""
    stem = " ".join(["person"] * 80)
    first, second = f"{stem} then a dog runs", f"{stem} then a cat sits"
    with caplog.at_level(logging.WARNING, logger="tfvtg"):
        a, b = any_encoder.encode_texts([first, second])
        any_encoder.encode_texts([first])  # the same query again: no second warning
    np.testing.assert_allclose(a, b, atol=1e-6)  # the ends were cut: that is why the user must be told
    records = [r.getMessage() for r in caplog.records if "context" in r.getMessage()]
    assert len(records) == 2, records
    assert "then a dog runs" in records[0] and "then a cat sits" in records[1]
    assert f"{any_encoder.config.name}" in records[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tfvtg"):
        any_encoder.encode_texts(["a short query"])
    assert not caplog.records


def test_dropped_text_is_exactly_what_the_tokenizer_cuts(tiny_encoder):
    from tfvtg.encoders.text import dropped_text

    tokenizer = tiny_encoder.tokenizer
    fits = " ".join(["person"] * 33)  # [CLS] + 33 + [SEP] = 35
    assert dropped_text(tokenizer, fits, 35) is None
    assert dropped_text(tokenizer, fits + " dog", 35) == "dog"


# ---------------------------------------------------------------------- errors and mixing
def test_unsupported_model_type_is_one_clear_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    with pytest.raises(ModelError, match="bert checkpoint; tfvtg encodes with BLIP-2 .*CLIP .*SigLIP"):
        create_encoder(str(tmp_path), device="cpu")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "siglip2"}))
    with pytest.raises(ModelError, match="NaFlex.*siglip2-b16"):
        create_encoder(str(tmp_path), device="cpu")


def test_registered_zoo_model_not_cached_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="hf download openai/clip-vit-base-patch16"):
        create_encoder("clip-b16", device="cpu", cache_dir=str(tmp_path))


def test_clip_directory_without_weights(tiny_clip_dir, tmp_path):
    shutil.copy(tiny_clip_dir / "config.json", tmp_path / "config.json")
    with pytest.raises(ModelError, match="cannot load"):
        create_encoder(str(tmp_path), device="cpu")


def test_checkpoint_shape_from_json(tiny_clip_dir, tiny_siglip2_dir, tiny_blip2_dir):
    def shape(d):
        return checkpoint_shape(
            json.loads((d / "config.json").read_text()),
            json.loads((d / "preprocessor_config.json").read_text()),
        )

    assert shape(tiny_clip_dir) == ((32, 32), 1, 16)
    assert shape(tiny_siglip2_dir) == ((32, 32), 1, 24)
    assert shape(tiny_blip2_dir) == ((32, 32), 8, 16)


def test_features_of_another_encoder_are_refused(clip_encoder, tiny_clip_dir, tiny_blip2_dir, cup_video):
    from tfvtg.features import extract_features
    from tfvtg.grounder import Grounder, check_feature_model

    with pytest.raises(InputError, match="image size"):
        check_feature_model("clip-b16", (224, 224), "blip2-coco", (364, 364))
    with pytest.raises(InputError, match="meaningless"):
        check_feature_model("clip-b16", (224, 224), "siglip2-b16", (224, 224))
    with pytest.raises(InputError, match="meaningless"):
        check_feature_model("openai/clip-vit-base-patch16", (224, 224), "clip-b32", (224, 224))
    assert check_feature_model("clip-b16", (224, 224), "openai/clip-vit-base-patch16", (224, 224))
    feats = extract_features(cup_video, clip_encoder, progress=False)
    assert feats.features.shape[1:] == (1, 16) and feats.encoder == str(tiny_clip_dir.resolve())
    # The tiny BLIP-2 has the same D (16) but 8 tokens per frame: refused, not silently scored.
    blip2 = Grounder(str(tiny_blip2_dir), device="cpu", progress=False, use_cache=False)
    with pytest.raises(InputError, match="1 tokens per frame"):
        blip2.ground(feats, "a cup")


def test_cache_keys_differ_by_encoder(tmp_path, cup_video):
    from tfvtg.features import FeatureCache

    cache = FeatureCache(tmp_path)
    assert cache.path_for(cup_video, "openai/clip-vit-base-patch16", 3.0) != cache.path_for(
        cup_video, "Salesforce/blip2-itm-vit-g-coco", 3.0
    )
