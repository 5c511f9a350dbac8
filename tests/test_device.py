"""tfvtg.device: the precision policy per device and compute capability, TF32 scoping, device placement, the
out-of-memory back-off on the tiny BLIP-2 (a fake OOM raised by the model), the processor-size refusal, and
the half-precision lookup table's identical pixels.

The CUDA compute capability is faked at its one call site (`tfvtg.device.cuda_capability`); a CUDA
``torch.device`` can be named without a GPU, so every policy decision is checked on the CPU.
"""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

from tfvtg.errors import InputError, ModelError

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import tfvtg.device as device_module  # noqa: E402
from tfvtg.device import (  # noqa: E402
    Precision,
    encode_in_batches,
    place_on,
    resolve_device,
    resolve_dtype,
    resolve_precision,
)

CUDA = torch.device("cuda")
CPU = torch.device("cpu")


@pytest.fixture
def capability(monkeypatch):
    """Set the faked compute capability: ``capability((7, 5))``; records every query."""
    queried = []

    def fake(value):
        def query(device):
            queried.append(device)
            return value

        monkeypatch.setattr(device_module, "cuda_capability", query)
        return queried

    return fake


def _never_asked(monkeypatch):
    def query(device):
        raise AssertionError(f"compute capability queried for {device}")

    monkeypatch.setattr(device_module, "cuda_capability", query)


# ---------------------------------------------------------------------- policy
@pytest.mark.parametrize("cap", [(6, 1), (7, 0), (7, 5), (8, 0), (8, 9), (9, 0)])
def test_auto_precision_on_cuda_is_the_official_autocast_on_every_card(capability, cap):
    capability(cap)
    precision = resolve_precision(None, CUDA)
    assert precision == resolve_precision("auto", CUDA)
    assert (precision.name, precision.weights, precision.autocast) == (
        "autocast-float16", torch.float32, torch.float16)
    assert precision.pixel_dtype == torch.float16 and str(precision) == "autocast-float16"


def test_auto_precision_elsewhere_is_float32(monkeypatch):
    _never_asked(monkeypatch)
    for device in (CPU, torch.device("mps")):
        precision = resolve_precision(None, device)
        assert (precision.name, precision.weights, precision.autocast) == ("float32", torch.float32, None)
        assert precision.pixel_dtype == torch.float32


@pytest.mark.parametrize(("name", "canonical", "weights", "autocast"), [
    ("autocast", "autocast-float16", torch.float32, torch.float16),
    ("AMP", "autocast-float16", torch.float32, torch.float16),
    ("autocast-float16", "autocast-float16", torch.float32, torch.float16),
    ("fp32", "float32", torch.float32, None),
    ("half", "float16", torch.float16, None),
    ("bf16", "bfloat16", torch.bfloat16, None),
])
def test_explicit_precisions(capability, name, canonical, weights, autocast):
    capability((9, 0))
    for device in (CUDA, CPU):
        precision = resolve_precision(name, device)
        assert (precision.name, precision.weights, precision.autocast) == (canonical, weights, autocast)
        assert precision.device_type == device.type


@pytest.mark.parametrize(("cap", "expected"), [((6, 0), torch.float16), ((7, 0), torch.float16),
                                               ((7, 5), torch.float16), ((8, 0), torch.bfloat16),
                                               ((9, 0), torch.bfloat16)])
def test_whole_model_dtype_never_auto_picks_bf16_before_ampere(capability, cap, expected):
    queried = capability(cap)
    assert resolve_dtype(None, CUDA) == expected
    assert resolve_dtype("auto", torch.device("cuda:1")) == expected
    assert queried == [CUDA, torch.device("cuda:1")]


def test_whole_model_dtype_off_cuda_and_explicit(monkeypatch):
    _never_asked(monkeypatch)
    assert resolve_dtype(None, CPU) == torch.float32
    assert resolve_dtype("fp16", CPU) == torch.float16
    assert resolve_dtype("bfloat16", CPU) == torch.bfloat16
    with pytest.raises(InputError, match="unknown dtype 'int8'"):
        resolve_dtype("int8", CPU)
    with pytest.raises(InputError, match="cast as a whole"):
        resolve_dtype("autocast", CPU)
    with pytest.raises(InputError, match="unknown dtype"):
        resolve_precision("fp8", CPU)


def test_explicit_bf16_before_ampere_warns(capability, caplog):
    capability((7, 5))
    with caplog.at_level(logging.WARNING, logger="tfvtg.device"):
        assert resolve_precision("bfloat16", CUDA).weights == torch.bfloat16
    assert "compute capability 7.5" in caplog.text and "emulated" in caplog.text
    caplog.clear()
    capability((8, 0))
    with caplog.at_level(logging.WARNING, logger="tfvtg.device"):
        resolve_precision("bfloat16", CUDA)
        resolve_dtype("bfloat16", CUDA)
    assert caplog.text == ""


def test_resolve_device():
    assert resolve_device("cpu") == CPU
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(InputError, match="unknown device"):
        resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="CUDA is not available"):
            resolve_device("cuda")


def test_place_on_sets_the_current_cuda_device_only_for_cuda_n(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "set_device", calls.append)
    place_on(torch.device("cuda:1"))
    place_on(CUDA)  # the current device, whichever it is: left alone
    place_on(CPU)
    assert calls == [torch.device("cuda:1")]


# ---------------------------------------------------------------------- autocast and TF32 scopes
def test_tf32_allowed_only_inside_the_float32_part_and_restored():
    matmul = torch.backends.cuda.matmul
    before = matmul.allow_tf32
    try:
        matmul.allow_tf32 = False
        default = Precision("autocast-float16", torch.float32, torch.float16, "cuda")
        with default.float32_part():
            assert matmul.allow_tf32 is True
        assert matmul.allow_tf32 is False
        with pytest.raises(RuntimeError, match="boom"), default.float32_part():
            raise RuntimeError("boom")
        assert matmul.allow_tf32 is False  # restored after an error too
        assert resolve_precision("float32", CUDA).tf32 is False
        for exact in (resolve_precision("float32", CUDA),
                      Precision("autocast-float16", torch.float32, torch.float16, "cuda", tf32=False),
                      Precision("autocast-float16", torch.float32, torch.float16, "cpu")):
            with exact.float32_part():
                assert matmul.allow_tf32 is False
    finally:
        matmul.allow_tf32 = before


def test_image_forward_autocasts_only_with_an_autocast_dtype():
    layer = torch.nn.Linear(4, 4)
    x = torch.randn(2, 4)
    with Precision("autocast-float16", torch.float32, torch.float16, "cpu").image_forward():
        assert layer(x).dtype == torch.float16
    with Precision("float32", torch.float32, None, "cpu").image_forward():
        assert layer(x).dtype == torch.float32


# ---------------------------------------------------------------------- the tiny BLIP-2
def _fresh(encoder, batch_size=8, precision=None):
    """A new encoder around the session encoder's loaded parts (its batch size and precision are its own)."""
    from tfvtg.encoders.blip2 import Blip2Encoder

    return Blip2Encoder(encoder.model, encoder.image_processor, encoder.tokenizer, name=encoder.config.name,
                        device=encoder.device, precision=precision or encoder.precision,
                        batch_size=batch_size)


def _frames(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def _fake_oom(model, fail_calls):
    """Make the vision tower raise CUDA's out-of-memory error on the calls whose batch is in ``fail_calls``
    (a predicate on the batch size) and count the calls; returns (handle, seen batch sizes)."""
    seen = []

    def hook(module, args, kwargs):
        batch = kwargs["pixel_values"].shape[0]
        seen.append(batch)
        if fail_calls(len(seen), batch):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    return model.vision_model.register_forward_pre_hook(hook, with_kwargs=True), seen


def test_out_of_memory_halves_the_batch_and_keeps_it(tiny_encoder, caplog):
    frames = _frames(11)
    expected = tiny_encoder.encode_images(frames)
    encoder = _fresh(tiny_encoder, batch_size=8)
    handle, seen = _fake_oom(encoder.model, lambda call, batch: call == 1)  # only the first call
    try:
        with caplog.at_level(logging.WARNING, logger="tfvtg.device"):
            out = encoder.encode_images(frames)
    finally:
        handle.remove()
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert seen == [8, 4, 4, 3] and encoder.batch_size == 4
    assert "out of memory on cpu encoding 8 frames; retrying with batches of 4" in caplog.text


def test_out_of_memory_in_preprocessing_is_handled_too(tiny_encoder, caplog):
    encoder = _fresh(tiny_encoder, batch_size=6)
    calls = []
    preprocess = encoder.preprocess

    def failing_preprocess(frames):
        calls.append(len(frames))
        if len(calls) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory.")
        return preprocess(frames)

    encoder.preprocess = failing_preprocess
    with caplog.at_level(logging.WARNING, logger="tfvtg.device"):
        out = encoder.encode_images(_frames(6))
    np.testing.assert_allclose(out, tiny_encoder.encode_images(_frames(6)), atol=1e-5)
    assert calls == [6, 3, 3] and "retrying with batches of 3" in caplog.text


@pytest.mark.parametrize(("dtype", "suggests_lower"), [("float32", True), ("autocast-float16", True),
                                                       ("bfloat16", False), ("float16", False)])
def test_out_of_memory_at_one_frame_is_one_line_never_suggesting_the_dtype_in_use(
        tiny_encoder, dtype, suggests_lower):
    encoder = _fresh(tiny_encoder, batch_size=4, precision=resolve_precision(dtype, CPU))
    handle, seen = _fake_oom(encoder.model, lambda call, batch: True)
    try:
        with pytest.raises(ModelError) as info:
            encoder.encode_images(_frames(5))
    finally:
        handle.remove()
    message = str(info.value)
    assert seen == [4, 2, 1] and "\n" not in message
    assert message.startswith("out of memory on cpu encoding even one frame at a time")
    assert f"({dtype})" in message and f"--dtype {dtype}" not in message
    assert ("--dtype float16" in message) == suggests_lower
    assert info.value.__cause__ is None  # no chained traceback holding the failed batch


def test_other_errors_are_not_taken_for_out_of_memory():
    def broken(batch):
        raise RuntimeError("CUDA error: device-side assert triggered")

    with pytest.raises(RuntimeError, match="device-side assert"):
        encode_in_batches(broken, np.zeros((4, 1)), np.zeros((4, 1)), 4, device=CPU,
                          precision=resolve_precision("float32", CPU))


def test_processor_size_other_than_the_models_is_refused(tiny_blip2_dir, tmp_path):
    from tfvtg.encoders import create_encoder

    for size in (48, 16):  # larger: position embeddings fail to broadcast; smaller: silently sliced
        copy = tmp_path / f"size{size}"
        shutil.copytree(tiny_blip2_dir, copy)
        config_path = copy / "preprocessor_config.json"
        config = json.loads(config_path.read_text())
        config["size"] = {"height": size, "width": size}
        config_path.write_text(json.dumps(config))
        with pytest.raises(ModelError, match=rf"resizes to {size}x{size} but the model was trained at 32x32"):
            create_encoder(str(copy), device="cpu")


def test_half_precision_lookup_table_gives_the_processors_pixels(tiny_encoder):
    frames = _frames(3, seed=5)
    reference = tiny_encoder.image_processor(images=list(frames), return_tensors="pt",
                                             input_data_format="channels_last")["pixel_values"]
    for name, dtype in (("float32", torch.float32), ("autocast-float16", torch.float16),
                        ("bfloat16", torch.bfloat16), ("float16", torch.float16)):
        encoder = _fresh(tiny_encoder, precision=resolve_precision(name, CPU))
        pixels = encoder.preprocess(frames)
        assert pixels.dtype == dtype and pixels.is_contiguous()
        assert torch.equal(pixels, reference.to(dtype))  # identical values, whatever the table's dtype
        other_size = encoder.preprocess(np.ascontiguousarray(np.repeat(frames, 2, axis=1)))  # the processor
        assert other_size.dtype == dtype


def test_autocast_precision_on_the_tiny_model(tiny_blip2_dir, tiny_encoder):
    from tfvtg.encoders import create_encoder

    encoder = create_encoder(str(tiny_blip2_dir), device="cpu", dtype="autocast")
    assert encoder.config.precision == "autocast-float16" and encoder.dtype == torch.float32
    assert next(encoder.model.vision_model.parameters()).dtype == torch.float32
    frames = _frames(4, seed=2)
    a, b = encoder.encode_images(frames), tiny_encoder.encode_images(frames)
    assert a.dtype == np.float32 and not np.array_equal(a, b)  # fp16 compute really happened
    np.testing.assert_allclose(a, b, atol=5e-2)
    assert tiny_encoder.config.precision == "float32"


# ---------------------------------------------------------------------- the benchmarks' peak table
@pytest.mark.parametrize(("name", "label", "bf16"), [
    ("NVIDIA H100 80GB HBM3", "H100 SXM", 989.4),
    ("NVIDIA H100 PCIe", "H100 PCIe", 756.0),
    ("NVIDIA H100 NVL", "H100 NVL", 835.0),
    ("NVIDIA H200", "H200 SXM", 989.4),
    ("NVIDIA GH200 480GB", "GH200", 989.4),
    ("NVIDIA L40", "L40", 181.0),
    ("NVIDIA L4", "L4", 121.0),
    ("Tesla T4", "T4", None),
])
def test_gpu_peak_table_reads_the_part_from_the_name(name, label, bf16):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_peaks.py"
    spec = importlib.util.spec_from_file_location("gpu_peaks", path)
    gpu_peaks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_peaks)
    found_label, peaks = gpu_peaks.peak_for(name)
    assert found_label == label and peaks.get("bfloat16") == bf16
    assert gpu_peaks.peak_tflops(peaks, "autocast-float16") == peaks["float16"]
    assert gpu_peaks.peak_for("Some Future GPU") is None
