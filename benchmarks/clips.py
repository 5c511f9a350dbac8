"""The synthetic H.264 clip the benchmarks decode: moving content, so the decoder does real work.

A scrolling colour gradient with a white box moving across it and a black bar that grows with the frame
index; written once through a temporary name, so an interrupted run never leaves a partial clip behind.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def make_clip(
    path: Path,
    seconds: float,
    *,
    fps: int = 30,
    gop: int | None = None,
    format: str | None = None,
    width: int = 640,
    height: int = 360,
) -> Path:
    """Write ``path`` (unless it exists): ``seconds`` of ``width`` x ``height`` H.264 at ``fps``.

    Args:
        path: The clip to write.
        seconds: Its length.
        fps: Frame rate.
        gop: Keyframe interval in frames (None: x264's default, at most 250 plus scene cuts).
        format: Container format (e.g. ``"h264"`` for a raw stream without timestamps); None: from the suffix.
        width, height: Frame size.
    """
    import av

    if path.exists():
        return path
    tmp = path.with_name("partial-" + path.name)
    options = {"preset": "veryfast"}
    if gop is not None:
        options["g"] = str(gop)
    y, x = np.mgrid[0:height, 0:width]
    with av.open(str(tmp), "w", format=format) as container:
        stream = container.add_stream("libx264", rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(round(seconds * fps)):
            img = np.empty((height, width, 3), np.uint8)
            img[..., 0] = (x + 3 * i) % 256
            img[..., 1] = (y + 2 * i) % 256
            img[..., 2] = (x + y + i) % 256
            bx, by = (7 * i) % (width - 80), (5 * i) % (height - 60)
            img[by : by + 60, bx : bx + 80] = (255, 255, 255)
            img[:8, : (i % width)] = 0
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)
    return path
