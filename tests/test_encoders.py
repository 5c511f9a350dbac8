"""tfvtg.encoders: registry, BLIP-2 ITC encoder on a tiny seeded checkpoint, error paths, lazy imports."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfvtg.encoders import Encoder, create_encoder, list_encoders, resolve_name
from tfvtg.errors import InputError, ModelError

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

REPO = Path(__file__).resolve().parents[1]
TEXTS = ["a person opens the door", "a dog sits on a chair"]


def pattern_frames(n: int = 3, size: int = 32) -> np.ndarray:
    """Deterministic (n, size, size, 3) uint8 frames, no RNG involved."""
    i, h, w, c = np.meshgrid(np.arange(n), np.arange(size), np.arange(size), np.arange(3), indexing="ij")
    return ((i * 31 + h * 7 + w * 13 + c * 50) % 256).astype(np.uint8)


@pytest.fixture(scope="module")
def encoder(tiny_encoder):
    return tiny_encoder  # the session's copy, loaded the same way: create_encoder(dir, device="cpu")


def itc_logits(encoder, frames: np.ndarray, texts: list[str]) -> np.ndarray:
    """The model's own ITC scores (N images, M texts) via forward(use_image_text_matching_head=False)."""
    pixels = encoder.image_processor(
        images=list(frames), return_tensors="pt", input_data_format="channels_last"
    )
    tokens = encoder.tokenizer(
        texts, padding="max_length", truncation=True, max_length=35, return_tensors="pt"
    )
    with torch.no_grad():
        out = encoder.model(
            pixel_values=pixels["pixel_values"],
            input_ids=tokens["input_ids"],
            attention_mask=tokens["attention_mask"],
            use_image_text_matching_head=False,
        )
    return out.logits_per_image.float().numpy()


# ---------------------------------------------------------------------- registry
def test_list_encoders_and_names():
    assert list_encoders()[:2] == ["blip2", "blip2-coco"]  # the zoo's others: tests/test_encoder_zoo.py
    assert resolve_name("blip2-coco") == ("Salesforce/blip2-itm-vit-g-coco", False)
    assert resolve_name("blip2") == ("Salesforce/blip2-itm-vit-g", False)
    assert resolve_name("someone/some-model") == ("someone/some-model", False)


def test_import_does_not_load_torch():
    code = (
        "import tfvtg, tfvtg.encoders, sys; assert 'torch' not in sys.modules, 'torch imported'; "
        "assert 'transformers' not in sys.modules, 'transformers imported'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------- loading and config
def test_loads_through_create_encoder(encoder, tiny_blip2_dir):
    assert isinstance(encoder, Encoder)
    cfg = encoder.config
    assert cfg.name == str(tiny_blip2_dir.resolve())
    assert cfg.image_size == (32, 32)
    assert cfg.num_query_tokens == 8 and cfg.embed_dim == 16
    assert cfg.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    assert cfg.std == pytest.approx((0.26862954, 0.26130258, 0.27577711))
    assert (cfg.default_fps, cfg.mask_threshold) == (3.0, 0.2)
    assert encoder.device.type == "cpu" and encoder.dtype == torch.float32
    assert encoder.model.qformer.config.use_qformer_text_input


def test_shapes_and_dtypes(encoder):
    feats = encoder.encode_images(pattern_frames(5))
    assert feats.shape == (5, 8, 16) and feats.dtype == np.float32
    texts = encoder.encode_texts(TEXTS)
    assert texts.shape == (2, 16) and texts.dtype == np.float32
    sims = encoder.similarity(feats, texts)
    assert sims.shape == (2, 5) and sims.dtype == np.float32
    assert encoder.encode_texts([]).shape == (0, 16)
    assert encoder.encode_images(np.zeros((0, 32, 32, 3), np.uint8)).shape == (0, 8, 16)
    assert encoder.encode_texts("a person opens the door").shape == (1, 16)


def test_golden_values(encoder):
    """Computed once from the seeded tiny checkpoint: a change of preprocessing or pooling breaks them."""
    feats = encoder.encode_images(pattern_frames(3))
    np.testing.assert_allclose(feats[0, 0, :4], [0.684983, 0.237219, -1.786114, -0.323723], atol=1e-4)
    np.testing.assert_allclose(feats[2, 7, -3:], [-0.377829, -0.371009, 1.045783], atol=1e-4)
    texts = encoder.encode_texts(TEXTS)
    np.testing.assert_allclose(texts[0, :4], [0.449571, -0.120911, -0.711171, -3.210204], atol=1e-4)
    np.testing.assert_allclose(texts[1, -3:], [-2.330316, -1.283738, -0.09206], atol=1e-4)
    sims = encoder.similarity(feats, texts)
    np.testing.assert_allclose(
        sims, [[0.104628, 0.303805, 0.31739], [0.160837, 0.276424, 0.300445]], atol=1e-5
    )


def test_features_are_not_normalised(encoder):
    norms = np.linalg.norm(encoder.encode_images(pattern_frames(2)), axis=-1)
    assert not np.allclose(norms, 1.0, atol=1e-3)


def test_similarity_equals_model_itc_logits(encoder):
    rng = np.random.default_rng(7)
    texts = [*TEXTS, "the man holds a cup then runs"]
    for frames in (
        np.concatenate([pattern_frames(3), rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)]),
        rng.integers(0, 256, (3, 48, 40, 3), dtype=np.uint8),
    ):
        ours = encoder.similarity(encoder.encode_images(frames), encoder.encode_texts(texts))  # (M, T)
        theirs = itc_logits(encoder, frames, texts).T  # (M, T)
        # ITC logits are the max-over-queries cosine, maybe times a temperature: fit the scale, expect 1 here.
        scale = float((theirs * ours).sum() / (ours * ours).sum())
        assert scale > 0
        np.testing.assert_allclose(ours * scale, theirs, atol=1e-5)
        assert scale == pytest.approx(1.0, abs=1e-4)


def test_text_truncated_to_35_tokens(encoder):
    long = " ".join(["person"] * 40)  # 40 word tokens: cut to [CLS] + 33 + [SEP]
    assert encoder.encode_texts([long]).shape == (1, 16)
    np.testing.assert_allclose(
        encoder.encode_texts([long]),
        encoder.encode_texts([long + " then a dog runs to the table"]),
        atol=1e-6,
    )
    shorter = " ".join(["person"] * 33)  # exactly fills 35 tokens with [CLS] and [SEP]
    np.testing.assert_allclose(encoder.encode_texts([long]), encoder.encode_texts([shorter]), atol=1e-6)
    assert not np.allclose(encoder.encode_texts([long]), encoder.encode_texts([" ".join(["person"] * 32)]))


def test_frames_of_other_sizes_match_pre_resized(encoder):
    from PIL import Image

    rng = np.random.default_rng(3)
    big = rng.integers(0, 256, (4, 45, 80, 3), dtype=np.uint8)
    resized = np.stack([np.asarray(Image.fromarray(f).resize((32, 32), Image.BICUBIC)) for f in big])
    np.testing.assert_allclose(encoder.encode_images(big), encoder.encode_images(resized), atol=1e-5)
    # A flat colour stays flat under any resize: native size cannot matter.
    flat_big = np.full((2, 90, 160, 3), (200, 30, 90), np.uint8)
    flat_small = np.full((2, 32, 32, 3), (200, 30, 90), np.uint8)
    np.testing.assert_allclose(encoder.encode_images(flat_big), encoder.encode_images(flat_small), atol=1e-5)


def test_fast_path_equals_image_processor(encoder):
    frames = np.random.default_rng(5).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    expected = encoder.image_processor(
        images=list(frames), return_tensors="pt", input_data_format="channels_last"
    )
    assert torch.equal(encoder.preprocess(frames), expected["pixel_values"])


def test_batch_size_invariance(encoder):
    from tfvtg.encoders.blip2 import Blip2Encoder

    small = Blip2Encoder(
        encoder.model,
        encoder.image_processor,
        encoder.tokenizer,
        name=encoder.config.name,
        device=encoder.device,
        precision=encoder.precision,
        batch_size=2,
    )
    frames = pattern_frames(5)
    np.testing.assert_allclose(small.encode_images(frames), encoder.encode_images(frames), atol=1e-5)
    texts = [*TEXTS, "a woman is eating a sandwich"]
    np.testing.assert_allclose(small.encode_texts(texts), encoder.encode_texts(texts), atol=1e-5)


def test_bfloat16_vision_tower_close_to_float32(tiny_blip2_dir, encoder):
    bf16 = create_encoder(str(tiny_blip2_dir), device="cpu", dtype="bf16")
    assert bf16.dtype == torch.bfloat16
    a, b = bf16.encode_images(pattern_frames(2)), encoder.encode_images(pattern_frames(2))
    assert a.dtype == np.float32
    cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    assert cos.min() > 0.98


def test_bad_frames_raise_input_error(encoder):
    with pytest.raises(InputError, match="uint8"):
        encoder.encode_images(np.zeros((1, 32, 32, 3), np.float32))
    with pytest.raises(InputError, match=r"\(N, H, W, 3\)"):
        encoder.encode_images(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(InputError):
        encoder.encode_texts([1, 2])


def test_legacy_qformer_text_input_key(tiny_blip2_dir, tmp_path):
    """Early Hub revisions spell the flag `qformer_text_input`; the text path must still be built."""
    copy = Path(shutil.copytree(tiny_blip2_dir, tmp_path / "legacy"))
    config = json.loads((copy / "config.json").read_text())
    config["qformer_config"].pop("use_qformer_text_input")
    config["qformer_config"]["qformer_text_input"] = True
    (copy / "config.json").write_text(json.dumps(config))
    legacy = create_encoder(str(copy), device="cpu")
    assert legacy.encode_texts(TEXTS).shape == (2, 16)


# ---------------------------------------------------------------------- errors
def test_unknown_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match="blip2, blip2-coco"):
        create_encoder("blip3")


def test_missing_directory(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        create_encoder(str(tmp_path / "nowhere"))


def test_directory_without_model(tmp_path):
    with pytest.raises(ModelError, match="no config.json"):
        create_encoder(str(tmp_path))


def test_directory_without_weights(tiny_blip2_dir, tmp_path):
    shutil.copy(tiny_blip2_dir / "config.json", tmp_path / "config.json")
    with pytest.raises(ModelError, match="cannot load"):
        create_encoder(str(tmp_path), device="cpu")


def test_not_a_blip2_checkpoint(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    with pytest.raises(ModelError, match="bert checkpoint; tfvtg encodes with BLIP-2 retrieval"):
        create_encoder(str(tmp_path), device="cpu")
    # A BLIP-2 checkpoint of another head still gets the BLIP-2 loader's precise answer.
    blip2_model = {"model_type": "blip-2", "architectures": ["Blip2Model"]}
    (tmp_path / "config.json").write_text(json.dumps(blip2_model))
    with pytest.raises(ModelError, match="not a BLIP-2 image-text retrieval"):
        create_encoder(str(tmp_path), device="cpu")


def test_qformer_without_text_input(tiny_blip2_dir, tmp_path):
    copy = Path(shutil.copytree(tiny_blip2_dir, tmp_path / "notext"))
    config = json.loads((copy / "config.json").read_text())
    config["qformer_config"]["use_qformer_text_input"] = False
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="no text input"):
        create_encoder(str(copy), device="cpu")


def test_hub_model_not_cached_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="hf download Salesforce/blip2-itm-vit-g-coco --local-dir"):
        create_encoder("blip2-coco", device="cpu", cache_dir=str(tmp_path))
    with pytest.raises(ModelError, match="not in the Hugging Face cache"):
        create_encoder("someone/not-a-cached-model", device="cpu", cache_dir=str(tmp_path))


def test_explicit_local_files_only(tmp_path):
    with pytest.raises(ModelError, match="hf download Salesforce/blip2-itm-vit-g "):
        create_encoder("blip2", device="cpu", cache_dir=str(tmp_path), local_files_only=True)


def test_create_encoder_rejects_bad_device_and_batch_size(tiny_blip2_dir):
    with pytest.raises(InputError, match="unknown device"):
        create_encoder(str(tiny_blip2_dir), device="tpu9")
    with pytest.raises(InputError, match="batch_size"):
        create_encoder(str(tiny_blip2_dir), device="cpu", batch_size=0)


# ---------------------------------------------------------------------- real checkpoint (run by hand)
@pytest.mark.weights
def test_real_blip2_coco_checkpoint():
    """Needs Salesforce/blip2-itm-vit-g-coco in the Hugging Face cache: `pytest -m weights`."""
    try:
        encoder = create_encoder("blip2-coco", device="auto", local_files_only=True)
    except ModelError as exc:
        pytest.skip(str(exc))
    cfg = encoder.config
    assert cfg.name == "Salesforce/blip2-itm-vit-g-coco"
    assert (cfg.image_size, cfg.num_query_tokens, cfg.embed_dim) == ((364, 364), 32, 256)
    frames = np.stack(
        [np.full((240, 320, 3), (200, 40, 40), np.uint8), np.full((240, 320, 3), (40, 40, 200), np.uint8)]
    )
    sims = encoder.similarity(
        encoder.encode_images(frames), encoder.encode_texts(["a red image", "a blue image"])
    )
    assert sims.shape == (2, 2)
    assert sims[0, 0] > sims[0, 1] and sims[1, 1] > sims[1, 0]  # each colour matches its own frame best
