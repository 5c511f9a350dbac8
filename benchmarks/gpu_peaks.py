"""Dense peak TFLOP/s of NVIDIA GPUs, looked up by the name CUDA reports, for model FLOP utilisation (MFU).

One part number covers cards whose peaks differ: an H100 is 989 TFLOP/s (bf16/fp16 dense) as the SXM part,
835 as the NVL and 756 as the PCIe card; the name tells them apart (``NVIDIA H100 80GB HBM3`` is the SXM
part). `peak_for` returns the label of the entry it used, which the benchmarks print beside every MFU.
Figures: NVIDIA's data sheets, dense (without 2:4 sparsity); float32 is the non-tensor-core rate (TF32 off).
"""

from __future__ import annotations

# (substring of torch.cuda.get_device_name(), label, {dtype: dense TFLOP/s}); the first match wins, so more
# specific names come first ("H100 NVL" before "H100", "GH200" before "H200").
PEAKS: list[tuple[str, str, dict[str, float]]] = [
    ("GH200", "GH200", {"bfloat16": 989.4, "float16": 989.4, "float32": 66.9}),
    ("H200 NVL", "H200 NVL", {"bfloat16": 835.0, "float16": 835.0, "float32": 60.0}),
    ("H200", "H200 SXM", {"bfloat16": 989.4, "float16": 989.4, "float32": 66.9}),
    ("H100 NVL", "H100 NVL", {"bfloat16": 835.0, "float16": 835.0, "float32": 60.0}),
    ("H100 PCIe", "H100 PCIe", {"bfloat16": 756.0, "float16": 756.0, "float32": 51.0}),
    ("H100", "H100 SXM", {"bfloat16": 989.4, "float16": 989.4, "float32": 66.9}),
    ("A100", "A100", {"bfloat16": 312.0, "float16": 312.0, "float32": 19.5}),
    ("L40S", "L40S", {"bfloat16": 362.1, "float16": 362.1, "float32": 91.6}),
    ("A10G", "A10G", {"bfloat16": 70.0, "float16": 70.0, "float32": 31.2}),
    ("A10", "A10", {"bfloat16": 125.0, "float16": 125.0, "float32": 31.2}),
    ("L40", "L40", {"bfloat16": 181.0, "float16": 181.0, "float32": 90.5}),
    ("L4", "L4", {"bfloat16": 121.0, "float16": 121.0, "float32": 30.3}),
    ("V100", "V100", {"float16": 125.0, "float32": 15.7}),  # no bf16 tensor cores
    ("T4", "T4", {"float16": 65.0, "float32": 8.1}),  # no bf16 tensor cores
]

# The tensor-core dtype each precision's heavy matmuls run in.
COMPUTE_DTYPE = {"autocast-float16": "float16", "float16": "float16", "bfloat16": "bfloat16",
                 "float32": "float32"}


def peak_for(device_name: str) -> tuple[str, dict[str, float]] | None:
    """(label, peaks by dtype) of the first `PEAKS` entry whose key is in ``device_name``, else None."""
    return next(((label, peaks) for key, label, peaks in PEAKS if key in device_name), None)


def peak_tflops(peaks: dict[str, float], precision: str) -> float | None:
    """The dense peak for a precision name (``autocast-float16`` counts at the fp16 rate), None if unknown."""
    return peaks.get(COMPUTE_DTYPE.get(precision, precision))
