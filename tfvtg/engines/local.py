"""The local engine: one process, one encoder; the next videos decode while the current one encodes.

A background thread decodes and samples the videos one after another (PyAV releases the GIL while decoding)
into a bounded queue of frame batches that runs across video boundaries; the calling thread encodes the
batches and writes each video's file as soon as its last batch is encoded. So the encoder never waits for a
video to open, for its first batch, or for the previous file to be saved, and memory stays bounded by the
queue's depth, whatever the number or length of the videos.

Frame dedup is decided on the decode side, in frame order, by `FrameDedup`; the encoder sees only the frames
it keeps, and `assemble` puts the video back together. The Ray engine uses the same two pieces.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tfvtg.engines.base import ExtractSettings, ExtractSummary, Job, record_result
from tfvtg.errors import ModelError, TfvtgError

if TYPE_CHECKING:
    from tfvtg.encoders.base import Encoder, EncoderConfig
    from tfvtg.features import VideoFeatures

__all__ = ["LocalEngine", "FrameDedup", "assemble", "encode_videos", "PREFETCH_BATCHES"]

logger = logging.getLogger("tfvtg.engines.local")

# Frame batches decoded ahead of the encoder, across video boundaries (each batch_size frames at the
# encoder's image size: 32 x 364 x 364 x 3 bytes = 12.7 MB for BLIP-2 coco).
PREFETCH_BATCHES = 4


class FrameDedup:
    """Which frames of one video go through the encoder; the others reuse the last encoded frame's features.

    A frame is encoded when its mean absolute pixel difference (0-255) to the last *encoded* frame is at
    least ``threshold``; the first frame always is. Feed the video's frames in order, in any batch sizes.
    With no threshold every frame is kept.
    """

    def __init__(self, threshold: float | None) -> None:
        self.threshold = threshold
        self.kept = 0  # frames kept so far
        self._last: np.ndarray | None = None  # the last kept frame, as int16 for differences

    def select(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(indices of ``frames`` to encode, each frame's video-wide index of the kept frame it uses)."""
        if self.threshold is None:
            keep = np.arange(len(frames))
            source = self.kept + keep
            self.kept += len(frames)
            return keep, source
        keep: list[int] = []
        source = np.empty(len(frames), dtype=np.int64)
        for i, frame in enumerate(frames):
            current = frame.astype(np.int16)
            if self._last is None or np.abs(current - self._last).mean() >= self.threshold:
                keep.append(i)
                self._last = current
                self.kept += 1
            source[i] = self.kept - 1
        return np.asarray(keep, dtype=np.int64), source


def assemble(kept: Sequence[np.ndarray], source: np.ndarray) -> np.ndarray:
    """(T, Q, D) features of a video from the features of its kept frames (in order) and `FrameDedup`'s
    per-frame sources."""
    table = np.concatenate(kept) if len(kept) > 1 else kept[0]
    if len(source) == len(table):  # every frame was kept: the table is the video
        return table
    return table[source]


def encode_frames(encoder: Encoder, frames: np.ndarray) -> np.ndarray:
    """The encoder's (N, Q, D) features of ``frames`` as float16, checked for shape."""
    out = np.asarray(encoder.encode_images(frames))
    if out.ndim != 3 or len(out) != len(frames):
        raise ModelError(
            f"encoder {encoder.config.name!r} returned shape {out.shape} for {len(frames)} frames; "
            f"expected (N, Q, D)"
        )
    return out.astype(np.float16)


# -- decode side: events in video order ----------------------------------------------------------------------


@dataclass
class _Batch:
    index: int
    frames: np.ndarray  # the kept frames only
    times: np.ndarray  # every sampled frame's time
    source: np.ndarray  # every sampled frame's kept-frame index (video-wide)
    sampled: int  # frames sampled in this batch


@dataclass
class _Start:
    index: int
    expected: int | None


@dataclass
class _End:
    index: int
    duration: float


@dataclass
class _Failed:
    index: int
    error: BaseException


def _decode(videos: Sequence[str | os.PathLike], fps: float, size: tuple[int, int], settings: ExtractSettings,
            ) -> Iterator[_Start | _Batch | _End | _Failed]:
    """Sample every video in turn into batches of kept frames; a video that fails is one `_Failed` event."""
    from tfvtg.video import expected_samples, sample_frames

    for index, video in enumerate(videos):
        try:
            stream = sample_frames(video, fps, size=size, mode=settings.sampling, strict=settings.strict)
            yield _Start(index, expected_samples(stream.info, fps, settings.sampling))
            dedup = FrameDedup(settings.dedup_threshold)
            for frames, times in stream.batches(settings.batch_size):
                keep, source = dedup.select(frames)
                kept = frames if len(keep) == len(frames) else frames[keep]
                yield _Batch(index, kept, times, source, len(frames))
            yield _End(index, float(stream.duration))
        except TfvtgError as exc:  # this video is lost; the others go on
            yield _Failed(index, exc)


# -- encode side -------------------------------------------------------------------------------


@dataclass
class _Video:
    kept: list[np.ndarray] = field(default_factory=list)
    times: list[np.ndarray] = field(default_factory=list)
    source: list[np.ndarray] = field(default_factory=list)
    sampled: int = 0


def encode_videos(
    videos: Sequence[str | os.PathLike],
    encoder: Encoder,
    settings: ExtractSettings,
    *,
    progress: bool = True,
    prefetch_batches: int = PREFETCH_BATCHES,
) -> Iterator[tuple[int, VideoFeatures | TfvtgError]]:
    """Features of each video, in order: ``(index, VideoFeatures)``, or ``(index, error)`` for a video that
    cannot be decoded. Decoding runs ahead of encoding in a background thread, across videos.

    Raises:
        ModelError: the encoder returned a wrong shape (every video would fail alike).
    """
    from tqdm import tqdm

    from tfvtg.features import VideoFeatures, prefetch
    from tfvtg.video import check_fps

    config = encoder.config
    fps = check_fps(config.default_fps if settings.fps is None else settings.fps)
    size = tuple(config.image_size)
    state: _Video | None = None
    bar: Any = None
    events = prefetch(_decode(videos, fps, size, settings), depth=prefetch_batches)
    try:
        for event in events:
            if isinstance(event, _Start):
                state = _Video()
                bar = tqdm(total=event.expected, unit="frame", desc="encoding", file=sys.stderr,
                           disable=not progress, leave=False)
            elif isinstance(event, _Batch):
                if len(event.frames):
                    state.kept.append(encode_frames(encoder, event.frames))
                state.times.append(event.times)
                state.source.append(event.source)
                state.sampled += event.sampled
                bar.update(event.sampled)
            elif isinstance(event, _End):
                bar.close()
                source = np.concatenate(state.source)
                skipped = state.sampled - (int(source[-1]) + 1)
                if settings.dedup_threshold is not None:
                    logger.info("%s: reused features for %d of %d frames (dedup threshold %g)",
                                videos[event.index], skipped, state.sampled, settings.dedup_threshold)
                yield event.index, VideoFeatures(
                    features=assemble(state.kept, source),
                    timestamps=np.concatenate(state.times),
                    duration=event.duration,
                    fps=fps,
                    encoder=config.name,
                    image_size=size,
                    sampling=settings.sampling,
                    video=os.path.abspath(videos[event.index]),
                    skipped_frames=skipped,
                    dedup_threshold=settings.dedup_threshold,
                    precision=getattr(config, "precision", None),
                )
                state = None
            else:  # _Failed
                if bar is not None:
                    bar.close()
                state = None
                yield event.index, event.error
    finally:
        events.close()
        if bar is not None:
            bar.close()


class LocalEngine:
    """Extract in this process with one encoder (`encode_videos`); files are written as videos complete."""

    name = "local"

    def __init__(self) -> None:
        self._encoder: Encoder | None = None

    def encoder(self, settings: ExtractSettings) -> Encoder:
        if self._encoder is None:
            self._encoder = settings.create_encoder()
        return self._encoder

    def encoder_config(self, settings: ExtractSettings) -> EncoderConfig:
        return self.encoder(settings).config

    def known_precision(self, settings: ExtractSettings) -> str | None:
        """It follows from the device and dtype alone (`tfvtg.device`), for a named checkpoint."""
        if callable(settings.model):
            return None
        from tfvtg.device import precision_name, resolve_device

        return precision_name(settings.dtype, resolve_device(settings.device).type)

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self._encoder = None

    def run(self, jobs: list[Job], settings: ExtractSettings, summary: ExtractSummary, *,
            progress: bool, echo: Callable[[str], None]) -> None:
        if not jobs:
            return
        encoder = self.encoder(settings)
        started = time.perf_counter()
        for index, result in encode_videos([job.video for job in jobs], encoder, settings, progress=progress):
            record_result(jobs[index], result, summary, echo, time.perf_counter() - started)
            started = time.perf_counter()
