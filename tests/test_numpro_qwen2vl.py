"""The local Qwen2-VL back-end on a tiny random checkpoint loaded from disk through the real path."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from numpro.qwen2vl import Qwen2VLBackend, _expand_placeholders, _video_patches, fps_from_times
from tfvtg.errors import InputError, ModelError

PROMPT = "The red numbers on each frame represent the frame number.During which frames can we see a dog?"
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float64)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float64)


def _frames(n: int, h: int = 56, w: int = 56, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


@pytest.fixture(scope="module")
def backend(tiny_qwen2vl_dir) -> Qwen2VLBackend:
    return Qwen2VLBackend(str(tiny_qwen2vl_dir), device="cpu", max_new_tokens=12).load()


def _video_token_id(backend: Qwen2VLBackend) -> int:
    return backend._tokenizer.convert_tokens_to_ids("<|video_pad|>")


def _image_token_id(backend: Qwen2VLBackend) -> int:
    return backend._tokenizer.convert_tokens_to_ids("<|image_pad|>")


def _reference_video_patches(frames: list[np.ndarray], temporal: int = 2, patch: int = 14, merge: int = 2):
    """The Qwen2-VL video processor's patch layout, written out from its reshape, for frames that need no
    resizing: normalise, pad with the last frame, view as (T, t, C, H/m, m, P, W/m, m, P), permute."""
    video = np.stack([(f / 255.0 - CLIP_MEAN) / CLIP_STD for f in frames]).transpose(0, 3, 1, 2)  # N, C, H, W
    pad = -len(frames) % temporal
    if pad:
        video = np.concatenate([video, np.repeat(video[-1:], pad, axis=0)])
    n, c, h, w = video.shape
    gt, gh, gw = n // temporal, h // patch, w // patch
    x = video.reshape(gt, temporal, c, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(gt * gh * gw, c * temporal * patch * patch), (gt, gh, gw)


def test_video_inputs_follow_the_paper_layout_and_count_placeholders(backend):
    frames = _frames(5)
    inputs = backend.build_inputs(frames, PROMPT, times=[0.0, 1.0, 2.0, 3.0, 4.0])
    # One user turn: the video comes before the question text.
    assert inputs.text.count("<|vision_start|><|video_pad|><|vision_end|>") == 1
    assert inputs.text.index("<|video_pad|>") < inputs.text.index(PROMPT)
    assert inputs.text.endswith("<|im_start|>assistant\n")
    t = inputs.tensors
    # 5 frames of 56x56: padded to 6 -> 3 temporal patches of 4x4 patches; 2x2 merge -> 3 * 4 = 12 tokens.
    assert t["video_grid_thw"].tolist() == [[3, 4, 4]]
    assert inputs.padded_frames == 1
    ids = t["input_ids"][0]
    assert int((ids == _video_token_id(backend)).sum()) == 12
    assert int((ids == _image_token_id(backend)).sum()) == 0
    assert t["pixel_values_videos"].shape == (3 * 16, 3 * 2 * 14 * 14)
    assert t["mm_token_type_ids"][0].tolist() == [
        2 if i == _video_token_id(backend) else 0 for i in ids.tolist()
    ]


def test_video_patches_match_the_video_processor_layout(backend):
    frames = _frames(3, seed=3)
    inputs = backend.build_inputs(frames, PROMPT, times=[0.0, 1.0, 2.0])
    expected, grid = _reference_video_patches(frames)
    assert inputs.tensors["video_grid_thw"].tolist() == [list(grid)]
    np.testing.assert_allclose(inputs.tensors["pixel_values_videos"].numpy(), expected, atol=1e-5)


def test_video_patches_join_consecutive_frames_in_the_temporal_slot():
    # Two "images" of one patch each, pixel values = frame index, layout (C, t, P, P) with t repeated.
    temporal, patch = 2, 2
    pixels = np.stack([np.full((1, 3 * temporal * patch * patch), float(k)) for k in range(3)]).reshape(3, -1)
    grids = np.array([[1, 1, 1]] * 3)
    patches, grid, pad = _video_patches(pixels, grids, temporal, patch)
    assert grid == (2, 1, 1) and pad == 1
    slots = patches.reshape(2, 3, temporal, patch * patch)  # (grid_t, C, t, P*P)
    assert slots[0, :, 0].max() == slots[0, :, 0].min() == 0.0
    assert slots[0, :, 1].max() == slots[0, :, 1].min() == 1.0
    assert slots[1, :, 0].max() == slots[1, :, 1].min() == 2.0  # frame 2, and the pad copy of it


@pytest.mark.parametrize(
    ("times", "fps"),
    [
        ([0.0, 0.5, 1.0, 1.5], 2.0),
        ([10.0, 12.0, 14.0], 0.5),
        (None, 1.0),
        ([3.0], 1.0),
        ([0.0, 1.001, 2.002, 3.003], 1 / 1.001),
    ],
)
def test_fps_comes_from_the_real_timestamps(backend, times, fps):
    n = len(times) if times else 4
    inputs = backend.build_inputs(_frames(n), PROMPT, times=times)
    assert inputs.fps == pytest.approx(fps)


def test_bad_timestamps_are_refused():
    with pytest.raises(InputError, match="strictly increasing"):
        fps_from_times([0.0, 1.0, 1.0], 3)
    with pytest.raises(InputError, match="3 timestamps for 2 frames"):
        fps_from_times([0.0, 1.0, 2.0], 2)


def test_interleaved_labels_build_image_parts(backend):
    frames = _frames(3, h=56, w=112)
    labels = ["Second 0.0", "Second 1.0", "Second 2.0"]
    inputs = backend.build_inputs(frames, PROMPT, times=[0.0, 1.0, 2.0], frame_labels=labels)
    text = inputs.text
    assert "<|video_pad|>" not in text
    positions = [text.index(f"{label}<|vision_start|><|image_pad|><|vision_end|>") for label in labels]
    assert positions == sorted(positions)
    assert text.index(PROMPT) > positions[-1]
    t = inputs.tensors
    # 56x112 is over the 56*56-pixel budget: smart_resize gives 28x56 -> 2x4 patches, 2 merged tokens each.
    assert t["image_grid_thw"].tolist() == [[1, 2, 4]] * 3
    ids = t["input_ids"][0]
    assert int((ids == _image_token_id(backend)).sum()) == 3 * 2
    assert t["mm_token_type_ids"][0].tolist() == [
        1 if i == _image_token_id(backend) else 0 for i in ids.tolist()
    ]
    assert "pixel_values_videos" not in t and inputs.fps is None


def test_answer_is_deterministic_and_bounded(tiny_qwen2vl_dir, backend):
    frames = _frames(4, seed=7)
    times = [0.0, 1.0, 2.0, 3.0]
    first = backend.answer(frames, PROMPT, times=times)
    assert isinstance(first, str)
    assert 1 <= backend.last_generated_tokens <= 12
    again = Qwen2VLBackend(str(tiny_qwen2vl_dir), device="cpu", max_new_tokens=12)
    assert not again.loaded
    assert again.answer(frames, PROMPT, times=times) == first  # loads lazily, same greedy answer
    assert again.loaded
    labelled = backend.answer(frames, PROMPT, times=times, frame_labels=[f"Second {s}" for s in times])
    assert isinstance(labelled, str) and backend.last_generated_tokens <= 12


def test_answer_decodes_only_the_new_tokens(backend):
    frames = _frames(2, seed=1)
    inputs = backend.build_inputs(frames, PROMPT, times=[0.0, 1.0])
    import torch

    with torch.inference_mode():
        out = backend._model.generate(**inputs.tensors, do_sample=False, max_new_tokens=12)
    new = out[0, inputs.tensors["input_ids"].shape[1] :]
    expected = backend._tokenizer.decode(new, skip_special_tokens=True).strip()
    assert backend.answer(frames, PROMPT, times=[0.0, 1.0]) == expected
    assert backend.last_generated_tokens == len(new)


def test_max_pixels_lowers_the_tokens_per_frame(tiny_qwen2vl_dir):
    small = Qwen2VLBackend(str(tiny_qwen2vl_dir), device="cpu", max_pixels=28 * 28)
    inputs = small.build_inputs(_frames(2), PROMPT, times=[0.0, 1.0])
    assert inputs.tensors["video_grid_thw"].tolist() == [[1, 2, 2]]


def test_bad_frames_are_refused(backend):
    with pytest.raises(InputError, match="no frames"):
        backend.build_inputs([], PROMPT)
    with pytest.raises(InputError, match="RGB uint8"):
        backend.build_inputs([np.zeros((56, 56, 3), dtype=np.float32)], PROMPT)
    with pytest.raises(InputError, match="one size"):
        backend.build_inputs([np.zeros((56, 56, 3), np.uint8), np.zeros((28, 56, 3), np.uint8)], PROMPT)
    with pytest.raises(InputError, match="2 frame labels for 3 frames"):
        backend.build_inputs(_frames(3), PROMPT, frame_labels=["a", "b"])


def test_missing_directory_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="no such directory"):
        Qwen2VLBackend(str(tmp_path / "nowhere")).load()


def test_incomplete_directory_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="complete Hugging Face checkpoint"):
        Qwen2VLBackend(str(tmp_path)).load()


def test_uncached_hub_id_says_how_to_download(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="hf download nobody-here/no-such-model"):
        Qwen2VLBackend("nobody-here/no-such-model").load()


def test_expand_placeholders_checks_the_template():
    assert _expand_placeholders("a<p>b<p>c", "<p>", [2, 1]) == "a<p><p>b<p>c"
    with pytest.raises(ModelError, match="not Qwen2-VL-style"):
        _expand_placeholders("no placeholder", "<p>", [1])


def test_importing_numpro_does_not_import_torch():
    code = (
        "import sys, numpro, numpro.qwen2vl; "
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; "
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_qwen2_5_vl_gets_the_real_rate_as_seconds_per_temporal_patch(tiny_qwen2_5vl_dir):
    import transformers

    backend = Qwen2VLBackend(str(tiny_qwen2_5vl_dir), device="cpu", max_new_tokens=6).load()
    assert isinstance(backend._model, transformers.Qwen2_5_VLForConditionalGeneration)
    frames = _frames(4, seed=5)
    for times, seconds in (([0.0, 0.5, 1.0, 1.5], 1.0), ([0.0, 2.0, 4.0, 6.0], 4.0)):
        inputs = backend.build_inputs(frames, PROMPT, times=times)
        # two frames per temporal patch: 2 / fps seconds each
        assert inputs.tensors["second_per_grid_ts"].tolist() == [pytest.approx(seconds)]
        assert isinstance(backend.answer(frames, PROMPT, times=times), str)
        assert backend.last_generated_tokens <= 6


def test_create_mllm_builds_this_backend_lazily(tiny_qwen2vl_dir):
    from numpro.mllm import MLLM, create_mllm

    mllm = create_mllm(f"qwen2-vl:{tiny_qwen2vl_dir}", device="cpu", max_new_tokens=5)
    assert isinstance(mllm, Qwen2VLBackend) and isinstance(mllm, MLLM)
    assert not mllm.loaded and mllm.name == f"qwen2-vl:{tiny_qwen2vl_dir}"
    assert isinstance(mllm.answer(_frames(3), PROMPT, times=[0.0, 1.0, 2.0]), str)
    assert mllm.last_generated_tokens <= 5


def test_missing_flash_attention_is_a_model_error(tiny_qwen2vl_dir):
    backend = Qwen2VLBackend(str(tiny_qwen2vl_dir), device="cpu", attn_implementation="flash_attention_2")
    with pytest.raises(ModelError, match=r"attn_implementation=flash_attention_2: FlashAttention2 .*"
                                         r"--attn-implementation sdpa"):
        backend.load()
    assert not backend.loaded


def test_cuda_loads_through_a_device_map_when_accelerate_is_there(caplog):
    import torch

    from numpro.qwen2vl import _placement_kwargs

    assert _placement_kwargs(torch.device("cpu"), True) == {}
    assert _placement_kwargs(torch.device("cuda:1"), True) == {"device_map": {"": 1}}
    with caplog.at_level("WARNING", logger="numpro.qwen2vl"):
        assert _placement_kwargs(torch.device("cuda:1"), False) == {}  # loaded, then moved
    assert "pip install accelerate" in caplog.text


def test_create_mllm_and_the_cli_pass_max_pixels_and_attention(tiny_qwen2vl_dir, tmp_path, capsys):
    from numpro.cli import main
    from numpro.mllm import create_mllm
    from tests.fixtures.videos import make_video

    mllm = create_mllm(f"qwen2-vl:{tiny_qwen2vl_dir}", device="cpu", max_pixels=28 * 28,
                       attn_implementation="eager")
    assert (mllm.max_pixels, mllm.attn_implementation) == (784, "eager")
    clip = make_video(tmp_path / "clip.mp4", n_frames=20, fps=10, size=(48, 64))
    argv = ["ground", str(clip), "a dog", "--mllm", f"qwen2-vl:{tiny_qwen2vl_dir}", "--device", "cpu",
            "--max-pixels", "784", "--attn-implementation", "flash_attention_2"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot load") and "flash_attention_2" in err and "Traceback" not in err
    assert main([*argv[:-2], "--max-pixels", "100"]) == 2  # below one 28x28 patch group: a usage error
