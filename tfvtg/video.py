"""Decode a video with PyAV and sample RGB frames at a fixed rate, each with its real presentation time.

Time always comes from the decoded frames' timestamps, never from index / nominal fps, so variable-frame-rate
files, wrong declared rates and streams without a declared duration come out right. Decoding is sequential
(seeking per sample is several times slower at a few samples per second) and streaming: only the frame being
held as the current candidate and one output batch live in memory, whatever the video's length.

Two sampling modes:

- ``"timestamp"`` (default): targets 0, 1/fps, 2/fps, ... before the decoded end; each gets the latest frame
  whose time is at or before it.
- ``"reference"``: the frames the official TFVTG code picks (decord): n = round(frame_count / avg_fps * fps)
  frame indices spread by ``linspace(0, frame_count - 1, n).round()``. Timestamps are still the real ones.

A time window (``start``/``end``, timestamp mode) yields exactly the samples of a full pass whose targets
k / fps lie in [start, end). It seeks to the keyframe at or before the first target instead of decoding from
the first frame, and falls back to decoding from the start (converting nothing to RGB before the window) when
the file cannot be seeked reliably.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from tfvtg.errors import InputError, VideoError, check_path, one_line

__all__ = [
    "MAX_FPS",
    "VideoInfo",
    "FrameStream",
    "probe_video",
    "sample_frames",
    "read_frames",
    "reference_indices",
    "SAMPLING_MODES",
    "VIDEO_SUFFIXES",
    "check_fps",
    "expected_samples",
    "video_id",
]

logger = logging.getLogger("tfvtg.video")

SAMPLING_MODES = ("timestamp", "reference")
# File suffixes taken for videos when a directory is scanned, in the order a video id is looked up by.
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".ts",
                  ".3gp", ".ogv")

# A decoded span short of the declared duration by more than this (seconds, and fraction of the declared
# duration) means the file is truncated. Both must be exceeded: container durations routinely differ from the
# video stream's end by a frame or two, or by the audio's tail.
_TRUNCATION_SECONDS = 1.0
_TRUNCATION_FRACTION = 0.05
# Corrupt packets logged one by one before only the final summary is logged.
_MAX_CORRUPT_WARNINGS = 3
# Packets decoded by probe_video while looking for the first frame (its rotation).
_PROBE_PACKETS = 64
# How far before a window's first target successive seeks aim (seconds) when a seek lands after it (MPEG-TS
# seeks to a packet near the time, then decoding starts at the next keyframe). When the last also lands after
# it, the pass decodes from the first frame.
_SEEK_BACKOFF = (0.0, 1.0, 4.0, 16.0, 64.0)
# Highest sampling rate accepted: above a video's own rate frames only repeat, and a typo (1e6) fills memory.
MAX_FPS = 1000.0


def video_id(path: str | os.PathLike) -> str:
    """A video's id: the file name as given, without its suffix (``data/vidA.mp4`` -> ``vidA``).

    The one naming rule of tfvtg: feature files, predictions (``vid``) and cache entries are named by it, and
    a symbolic link is named by the link, never by its target.
    """
    return os.path.splitext(os.path.basename(os.path.normpath(os.fspath(path))))[0]


@dataclass(frozen=True)
class VideoInfo:
    """What the container declares about its first video stream, read before decoding.

    Attributes:
        path: The file path as given.
        width: Displayed width in pixels (after applying the rotation).
        height: Displayed height in pixels (after applying the rotation).
        fps: Declared average frame rate, or None when the container declares none.
        duration: Declared duration in seconds (stream, else container), or None.
        frame_count: Declared number of frames, or None.
        rotation: Counter-clockwise rotation in degrees (a multiple of 90) that makes frames upright.
        codec: Codec name, e.g. ``"h264"``.
    """

    path: str
    width: int
    height: int
    fps: float | None
    duration: float | None
    frame_count: int | None
    rotation: int
    codec: str = ""


def _check_path(path: str | os.PathLike) -> str:
    check_path(path, "video", "video file")
    name = os.fspath(path)
    if not os.path.exists(name):
        raise VideoError(f"cannot open {name}: file not found")
    if os.path.isdir(name):
        raise VideoError(f"cannot open {name}: it is a directory, not a video file")
    if not os.access(name, os.R_OK):
        raise VideoError(f"cannot open {name}: permission denied")
    return name


def _open(name: str) -> tuple[Any, Any]:
    """Open ``name`` and return (container, first video stream), or raise a one-line VideoError."""
    import av

    try:
        container = av.open(name, metadata_errors="ignore")
    except av.error.InvalidDataError:
        raise VideoError(f"cannot open {name}: not a media file (or its header is damaged)") from None
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoError(f"cannot open {name}: {one_line(exc)}") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"cannot decode {name}: no video stream found")
    fmt = container.format.name or ""
    if fmt == "image2" or fmt.endswith("_pipe"):  # FFmpeg's still-image readers (png_pipe, jpeg_pipe, ...)
        container.close()
        image = fmt.removesuffix("_pipe") if fmt != "image2" else "image"
        raise VideoError(f"cannot use {name}: it is a still {image} file, not a video (whatever its name "
                         "says)")
    return container, container.streams.video[0]


def _rotation_quarters(degrees: float) -> int:
    """Number of counter-clockwise quarter turns (0-3) for np.rot90 that undo a display-matrix rotation."""
    return round(degrees / 90.0) % 4


def _first_frame_rotation(container: Any, stream: Any) -> int:
    import av

    # An unreadable start is not an error here: the decoding pass reports it with its corrupt-packet count.
    with contextlib.suppress(av.error.FFmpegError):
        for i, packet in enumerate(container.demux(stream)):
            for frame in packet.decode():
                return _rotation_quarters(frame.rotation) * 90
            if i >= _PROBE_PACKETS:
                break
    return 0


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read a video's declared properties (size, rate, duration, frame count, rotation).

    Decodes at most the first frame (for its display rotation, which FFmpeg attaches to frames).

    Raises:
        VideoError: missing file, a directory, not a media file, or no video stream.
    """
    name = _check_path(path)
    container, stream = _open(name)
    try:
        ctx = stream.codec_context
        rate = stream.average_rate
        fps = float(rate) if rate else None
        duration = None
        if stream.duration is not None and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000  # AV_TIME_BASE
        if duration is not None and not (duration > 0 and math.isfinite(duration)):
            duration = None
        frame_count = int(stream.frames) or None
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        codec = ctx.name or ""
        rotation = _first_frame_rotation(container, stream)
    finally:
        container.close()
    if rotation in (90, 270):
        width, height = height, width
    return VideoInfo(name, width, height, fps, duration, frame_count, rotation, codec)


def _warn_repeats(info: VideoInfo, fps: float, mode: str) -> None:
    """Warn when sampling faster than the video's own frame rate: frames would be repeated, not new."""
    if info.fps and fps > info.fps * (1 + 1e-6):
        what = "frame picks repeat" if mode == "reference" else "each frame is sampled several times"
        logger.warning("sampling %s at %g fps, above its own %g fps: %s; use --fps %g or lower",
                       info.path, fps, info.fps, what, info.fps)


def check_fps(fps: Any) -> float:
    """``fps`` as a float: a finite sampling rate in (0, `MAX_FPS`]; else an `InputError` saying so."""
    if isinstance(fps, (str, bytes, bool)):
        raise InputError(f"fps must be a positive number, got {fps!r}")
    try:
        value = float(fps)
    except (TypeError, ValueError):
        raise InputError(f"fps must be a positive number, got {fps!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"fps must be a positive number, got {fps!r}")
    if value > MAX_FPS:
        raise InputError(f"fps must be at most {MAX_FPS:g} samples per second, got {fps!r}")
    return value


def _validate(fps: float, size: tuple[int, int] | None, mode: str) -> tuple[float, tuple[int, int] | None]:
    fps = check_fps(fps)
    if size is not None:
        ok = (
            isinstance(size, (tuple, list))
            and len(size) == 2
            and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in size)
        )
        if not ok:
            raise InputError(f"size must be (height, width) with positive integers, got {size!r}")
        size = (int(size[0]), int(size[1]))
    if mode not in SAMPLING_MODES:
        raise InputError(f"sampling mode must be one of {', '.join(SAMPLING_MODES)}, got {mode!r}")
    return fps, size


def _validate_window(start: float, end: float | None, mode: str) -> tuple[float, float | None]:
    """Check a time window (seconds); return it as floats."""

    def number(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise InputError(f"{name} must be a number of seconds, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise InputError(f"{name} must be a finite number of seconds, got {value!r}")
        return value

    start = number("start", start)
    if start < 0:
        raise InputError(f"start must be >= 0 seconds, got {start!r}")
    if end is not None:
        end = number("end", end)
        if end <= start:
            raise InputError(f"end must be after start, got start={start!r}, end={end!r}")
    if mode != "timestamp" and (start > 0 or end is not None):
        raise InputError(f"a time window (start/end) needs timestamp sampling, not {mode!r} mode")
    return start, end


def _pts(frame: Any) -> int | None:
    """A decoded frame's presentation time in ticks (its decoding time when it has none), or None."""
    return frame.pts if frame.pts is not None else frame.dts


class _SeekFailed(Exception):
    """A seek cannot give what a pass from the first frame gives; raised before any frame is handed on."""


class FrameStream:
    """Sampled frames of one video, decoded lazily and sequentially; iterate it once.

    Iterating yields ``(frame, time)``: an (H, W, 3) uint8 RGB array (upright, resized to ``size`` when given)
    and the frame's presentation time in seconds from the first frame. After iteration the statistics below
    describe the pass.

    With a window (``start``/``end``), the stream yields exactly the samples of a full pass whose target
    k / fps (float division) satisfies ``start <= k / fps < end``: the same frames and times, held frames
    included, in the same order. A window that starts at or after the video's end yields nothing (the decoded
    end is only known by decoding, so it is not an error), as does one that holds no target (narrower than a
    sampling interval, between two targets), without decoding anything.

    Attributes:
        info: The container's declared properties.
        fps: Sampling rate asked for.
        size: Output (height, width), or None for the native displayed size.
        mode: ``"timestamp"`` or ``"reference"``.
        start: Window start in seconds (0 for the whole video).
        end: Window end in seconds, or None (to the end of the video).
        duration: The declared duration (or None) until a pass has decoded to the end of the file; then the
            decoded span (end of the last decoded frame). A windowed pass that stops at ``end`` before the end
            of the file, or an iteration abandoned early, leaves the declared value.
        decoded_frames: Frames the decoder returned, all decoding for this stream counted (with a window:
            the first frame, which fixes the time origin, and frames decoded by seeks that were retried).
        sampled_frames: Frames yielded.
        corrupt_packets: Packets skipped because they could not be decoded, in the decoded part.
        seeked: True when the pass started from a seek; False for a pass from the first frame (no window, or
            the fallback when the file cannot be seeked reliably).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float = 3.0,
        size: tuple[int, int] | None = None,
        *,
        mode: str = "timestamp",
        strict: bool = False,
        threads: int = 0,
        start: float = 0.0,
        end: float | None = None,
    ) -> None:
        self.fps, self.size = _validate(fps, size, mode)
        if not (isinstance(threads, int) and not isinstance(threads, bool) and threads >= 0):
            raise InputError(f"threads must be 0 (automatic) or a positive integer, got {threads!r}")
        self.start, self.end = _validate_window(start, end, mode)
        self.mode = mode
        self.strict = strict
        self.threads = threads
        self.info = probe_video(path)
        self.path = self.info.path
        _warn_repeats(self.info, self.fps, self.mode)
        self.duration: float | None = self.info.duration
        self.decoded_frames = 0
        self.sampled_frames = 0
        self.corrupt_packets = 0
        self.seeked = False
        self._started = False
        # Output (height, width); when None, fixed by the first decoded frame.
        self._out_size: tuple[int, int] | None = self.size
        self._reformatter: Any = None
        self._quarters: int | None = None
        self._tol = 0.0

    def __repr__(self) -> str:
        window = ""
        if self.start or self.end is not None:
            window = f", start={self.start}, end={self.end}"
        return f"FrameStream({self.path!r}, fps={self.fps}, size={self.size}, mode={self.mode!r}{window})"

    # -- public iteration -----------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[tuple[np.ndarray, float]]:
        if self._started:
            raise InputError("a FrameStream can be iterated only once; call sample_frames() again")
        self._started = True
        if self.mode == "reference":
            return self._sample_reference()
        return self._sample_timestamps()

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(frames, times)``: (B, H, W, 3) uint8 and (B,) float64; B = batch_size but the last."""
        if not (isinstance(batch_size, (int, np.integer)) and batch_size > 0):
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
        buf: np.ndarray | None = None  # a fresh array per batch: a yielded batch is the caller's to keep
        times = np.empty(0)
        n = 0
        for frame, t in self:
            if buf is None:
                buf = np.empty((batch_size, *frame.shape), dtype=np.uint8)
                times = np.empty(batch_size, dtype=np.float64)
            buf[n] = frame
            times[n] = t
            n += 1
            if n == batch_size:
                yield buf, times
                buf, n = None, 0
        if buf is not None:
            yield buf[:n].copy(), times[:n].copy()

    # -- decoding -------------------------------------------------------------------------------------------

    def _decoded(self, seek_to: float = 0.0) -> Iterator[tuple[Any, float]]:
        """Yield (av.VideoFrame, time) for every decodable frame, in presentation order.

        With ``seek_to`` > 0 the frames start at the latest frame at or before that time (or a little
        earlier), found by seeking; when that cannot be done reliably, from the first frame (logged at debug
        level). Corrupt packets are skipped (counted, logged); a pass that reaches the end of the file sets
        ``duration`` to the decoded span.
        """
        if seek_to > 0:
            try:
                yield from self._pass(seek_to)
                return
            except _SeekFailed as why:
                logger.debug("%s: cannot seek to %.3f s (%s); decoding from the first frame",
                             self.path, seek_to, why)
                self.corrupt_packets = 0  # the pass from the start counts (and reports) them again
        yield from self._pass(None)

    def _pass(self, seek_to: float | None, every_frame: bool = False) -> Iterator[tuple[Any, float]]:
        """One decoding pass: from the first frame (``seek_to`` None) or from a seek (see `_seek`).

        A frame whose timestamp is not after the previous one's is dropped, unless ``every_frame``: then every
        decoded frame is yielded in the decoder's output order (what a frame index counts), with its own
        timestamp, ordered or not.
        """
        container, stream = _open(self.path)
        try:
            if self.threads != 1:  # frame + slice threads: 1.8x the sampled frames/s of one thread on 2 cores
                stream.thread_type = "AUTO"
                stream.codec_context.thread_count = self.threads
            tb = stream.time_base or Fraction(1, 1_000_000)
            num, den = tb.numerator, tb.denominator
            self._tol = 0.5 * num / den  # timestamps are quantised to the time base: half a tick is "at"
            rate = stream.guessed_rate or stream.average_rate
            nominal = max(1, round(1 / (tb * rate))) if rate else 1  # ticks per frame at the nominal rate
            # Time is kept in integer ticks of the time base, relative to the first frame, so sampled times
            # are exact (the float nearest to pts * time_base) and never accumulate rounding.
            origin: int | None = None
            frames: Iterator[Any]
            if seek_to is None:
                frames = (frame for frame, _ in self._frames(container, stream))
            else:
                origin, frames = self._seek(container, stream, seek_to)
                self.seeked = True
            last_rel: int | None = None
            last_dur = 0
            span_end: int | None = None
            dropped = 0
            for frame in frames:
                pts = _pts(frame)
                following = 0 if last_rel is None else last_rel + (last_dur or nominal)
                if pts is None:  # e.g. raw elementary streams: frames follow one another
                    rel = following
                else:
                    if origin is None:
                        origin = pts - following
                    rel = pts - origin
                if last_rel is not None and rel <= last_rel:  # a repeated or out-of-order timestamp
                    if not every_frame:
                        logger.debug("%s: frame at tick %d not after %d; dropped", self.path, rel, last_rel)
                        dropped += 1
                        continue
                    self.decoded_frames += 1
                    span_end = max(span_end or 0, rel + (frame.duration or last_dur or nominal))
                    yield frame, rel * num / den
                    continue
                # A frame's length: declared, else the gap since the previous frame (for the last frame).
                dur = frame.duration or (rel - last_rel if last_rel is not None else nominal)
                self.decoded_frames += 1
                last_rel, last_dur = rel, dur
                span_end = max(span_end or 0, rel + dur)
                yield frame, rel * num / den
        finally:
            container.close()
        if dropped:  # not silent: the times around them may be off by a frame
            logger.warning("%s: %d decoded frames carry timestamps that go backwards (e.g. an AVI with "
                           "B-frames) and were dropped; times near them may be off by a frame", self.path,
                           dropped)
        if span_end is not None:
            self.duration = span_end * num / den
        if self.decoded_frames == 0:
            extra = f" ({self.corrupt_packets} corrupt packets)" if self.corrupt_packets else ""
            raise VideoError(f"cannot decode {self.path}: no decodable video frame{extra}")
        if self.corrupt_packets:
            logger.warning("%s: skipped %d corrupt packet(s)", self.path, self.corrupt_packets)
        self._check_truncation()

    def _frames(self, container: Any, stream: Any) -> Iterator[tuple[Any, int | None]]:
        """Decoded frames from the container's position on, each with the pts of the first keyframe packet
        read by this iterator (None before one). Corrupt packets are skipped."""
        import av

        packets = container.demux(stream)
        key: int | None = None
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:  # unreadable container data: the rest is unreachable
                self._corrupt(exc, "reading")
                break
            if key is None and packet.is_keyframe and packet.pts is not None:
                key = packet.pts
            try:
                frames = packet.decode()
            except av.error.InvalidDataError as exc:
                self._corrupt(exc, "decoding")
                continue
            except av.error.FFmpegError as exc:
                raise VideoError(f"cannot decode {self.path}: {one_line(exc)}") from None
            for frame in frames:
                yield frame, key

    def _seek(self, container: Any, stream: Any, seek_to: float) -> tuple[int, Iterator[Any]]:
        """Seek so that decoding starts at or before the latest frame at or before ``seek_to`` seconds.

        Returns the time origin (the first frame's pts, as a pass from the start has it) and the frames from
        the landing keyframe on. Raises _SeekFailed, before anything is handed on, when the origin is unknown
        (no timestamps), the container refuses to seek, every seek lands after ``seek_to``, or the pass would
        end on the landing frame with no declared length (a pass from the start would measure it).
        """
        import av

        tb = stream.time_base
        if not tb:
            raise _SeekFailed("no time base")
        first = next(self._frames(container, stream), None)
        origin = None if first is None else _pts(first[0])
        if origin is None:
            raise _SeekFailed("the first frame has no timestamp")
        self.decoded_frames += 1
        num, den = tb.numerator, tb.denominator
        for back in _SEEK_BACKOFF:
            aim = seek_to - back
            if aim <= 0:
                break  # seeking to the start is a pass from the start
            try:
                container.seek(origin + math.floor(aim * den / num + 0.5), stream=stream, backward=True,
                               any_frame=False)
            except av.error.FFmpegError as exc:
                raise _SeekFailed(f"seek refused: {one_line(exc)}") from None
            frames = self._frames(container, stream)
            landed = None
            for frame, key in frames:
                pts = _pts(frame)
                if pts is None:
                    raise _SeekFailed("a frame after the seek has no timestamp")
                if key is None or pts < key:  # leading pictures may refer to frames before the seek
                    self.decoded_frames += 1
                    continue
                landed = frame
                break
            if landed is None or seek_to < (_pts(landed) - origin) * num / den - self._tol:
                # Nothing decoded, or the first frame is after seek_to: the frame held there is earlier.
                if landed is not None:
                    self.decoded_frames += 1
                continue
            after = next(frames, None)
            if after is None and not landed.duration:
                raise _SeekFailed("the landing frame is the last one and its length is unknown")
            rest = (frame for frame, _ in frames)
            head = [landed] if after is None else [landed, after[0]]
            return origin, itertools.chain(head, rest)
        raise _SeekFailed("every seek landed after the window's first target")

    def _corrupt(self, exc: BaseException, doing: str) -> None:
        self.corrupt_packets += 1
        if self.strict:
            raise VideoError(f"cannot decode {self.path}: corrupt data while {doing} ({one_line(exc)})")
        if self.corrupt_packets <= _MAX_CORRUPT_WARNINGS:
            logger.warning("%s: skipping corrupt packet while %s: %s", self.path, doing, one_line(exc))

    def _check_truncation(self) -> None:
        declared = self.info.duration
        if declared is None or self.duration is None:
            return
        short = declared - self.duration
        if short > _TRUNCATION_SECONDS and short > _TRUNCATION_FRACTION * declared:
            msg = (
                f"{self.path} looks truncated: decoded {self.duration:.2f} s "
                f"of the {declared:.2f} s it declares"
            )
            if self.strict:
                raise VideoError(f"cannot decode {msg}")
            logger.warning("%s; using the decoded part", msg)

    def _to_array(self, frame: Any) -> np.ndarray:
        """Convert one decoded frame to upright RGB at the output size (resize done by swscale)."""
        from av.video.reformatter import Interpolation, VideoReformatter

        if self._quarters is None:  # the first frame's display rotation holds for the whole stream
            self._quarters = _rotation_quarters(frame.rotation)
        quarters = self._quarters
        if self._out_size is None:  # native size, fixed by the first frame so every frame has one shape
            w, h = frame.width, frame.height
            self._out_size = (w, h) if quarters % 2 else (h, w)
        out_h, out_w = self._out_size
        src_w, src_h = (out_h, out_w) if quarters % 2 else (out_w, out_h)
        if self._reformatter is None:
            self._reformatter = VideoReformatter()
        rgb = self._reformatter.reformat(
            frame, width=src_w, height=src_h, format="rgb24", interpolation=Interpolation.BICUBIC
        ).to_ndarray()
        if quarters:
            rgb = np.ascontiguousarray(np.rot90(rgb, k=quarters))
        return rgb

    def _sample_timestamps(self) -> Iterator[tuple[np.ndarray, float]]:
        fps = self.fps
        stop = math.inf if self.end is None else self.end
        k = 0  # the next target is k / fps
        if self.start > 0:
            k = max(0, math.ceil(self.start * fps) - 2)
            while k / fps < self.start:  # the first target in the window, by the very test the window states
                k += 1
        if k / fps >= stop:  # no target in the window
            return
        held: Any = None  # latest decoded frame not yet known to be past every pending target
        held_t = 0.0
        held_rgb: np.ndarray | None = None
        # Frames before the window are only held (never converted): the last one is the frame shown at the
        # window's first target when no frame falls exactly on it.
        decoded = self._decoded(k / fps)
        try:
            for frame, t in decoded:
                while held is not None and k / fps < t - self._tol:
                    # A frame shown for several targets is yielded as copies: callers may draw on frames in
                    # place.
                    held_rgb = self._to_array(held) if held_rgb is None else held_rgb.copy()
                    self.sampled_frames += 1
                    yield held_rgb, held_t
                    k += 1
                    if k / fps >= stop:  # the window's last target is passed: decode no further
                        return
                held, held_t, held_rgb = frame, t, None
        finally:
            decoded.close()
        end = self.duration if self.duration is not None else held_t
        while held is not None and (k == 0 or k / fps < end - self._tol) and k / fps < stop:
            held_rgb = self._to_array(held) if held_rgb is None else held_rgb.copy()
            self.sampled_frames += 1
            yield held_rgb, held_t
            k += 1

    def _sample_reference(self) -> Iterator[tuple[np.ndarray, float]]:
        # decord, which the official code reads with, numbers frames in decoding output order and dates frame
        # i with the i-th smallest packet timestamp. Both are followed here, so a file whose frames carry
        # out-of-order timestamps (an AVI with B-frames) gets the same picks, each with its true time.
        count, packet_times = self._count_frames()
        avg_fps = self.info.fps
        if not avg_fps:
            if not self.info.duration:
                raise VideoError(
                    f"cannot sample {self.path} in reference mode: no declared frame rate or duration"
                )
            avg_fps = count / self.info.duration
        indices = reference_indices(count, avg_fps, self.fps)
        pos = 0
        index = -1
        for frame, t in self._pass(None, every_frame=True):
            index += 1
            if packet_times is not None and index < len(packet_times):
                t = packet_times[index]
            if pos < len(indices) and indices[pos] == index:
                rgb = self._to_array(frame)
                while pos < len(indices) and indices[pos] == index:
                    self.sampled_frames += 1
                    yield rgb, t
                    rgb = rgb.copy()  # repeated indices: a fresh array each, callers may draw in place
                    pos += 1
        if pos < len(indices):
            msg = (
                f"{self.path}: decoded {index + 1} of the {count} frames the container holds; "
                f"{len(indices) - pos} reference sample(s) missing"
            )
            if self.strict:
                raise VideoError(f"cannot decode {msg}")
            logger.warning(msg)

    def _count_frames(self) -> tuple[int, list[float] | None]:
        """Video packets in the file (what decord's len() counts), by demuxing without decoding, and their
        presentation times sorted, in seconds from the first (decord's frame times; None when a packet has
        none)."""
        import av

        container, stream = _open(self.path)
        count = 0
        ticks: list[int] | None = []
        time_base = stream.time_base or Fraction(1, 1_000_000)
        # Count up to an unreadable part, if any: the decoding pass reports it.
        try:
            with contextlib.suppress(av.error.FFmpegError):
                for packet in container.demux(stream):
                    if packet.size:
                        count += 1
                        if packet.pts is None:
                            ticks = None
                        elif ticks is not None:
                            ticks.append(packet.pts)
        finally:
            container.close()
        if count == 0:
            raise VideoError(f"cannot decode {self.path}: no video packets found")
        declared = self.info.frame_count
        if declared and declared != count:
            logger.info("%s: container declares %d frames, found %d", self.path, declared, count)
        if ticks is None:
            return count, None
        ticks.sort()
        return count, [float((tick - ticks[0]) * time_base) for tick in ticks]


def _reference_count(frame_count: float, avg_fps: float, fps: float) -> int:
    """How many frames the official extraction keeps: round(frame_count / avg_fps * fps), at least one."""
    return max(1, round(frame_count / avg_fps * fps))


def reference_indices(frame_count: int, avg_fps: float, fps: float) -> np.ndarray:
    """Frame indices the official TFVTG extraction keeps.

    n = round(frame_count / avg_fps * fps) (at least one) indices spread by
    ``linspace(0, frame_count - 1, n)``, rounded half to even as decord-based extraction does.
    """
    n = _reference_count(frame_count, avg_fps, fps)
    return np.linspace(0, frame_count - 1, n).round().astype(np.int64)


def expected_samples(info: VideoInfo, fps: float, mode: str = "timestamp") -> int | None:
    """How many samples a full pass over a video declaring ``info`` should yield; None if it declares too
    little to tell. A prediction from the container's declarations: the decoded count can differ.

    Timestamp mode: the targets k / fps before the duration (at least one). Reference mode: the length of
    `reference_indices` for the declared frame count (else duration x rate) and rate.
    """
    duration = info.duration
    if mode == "reference":
        count = info.frame_count or (round(duration * info.fps) if duration and info.fps else None)
        rate = info.fps or (count / duration if count and duration else None)
        return _reference_count(count, rate, fps) if count and rate else None
    if duration is None and info.frame_count and info.fps:
        duration = info.frame_count / info.fps
    return None if duration is None else max(1, math.ceil(duration * fps))


def sample_frames(
    path: str | os.PathLike,
    fps: float = 3.0,
    size: tuple[int, int] | None = None,
    *,
    mode: str = "timestamp",
    strict: bool = False,
    threads: int = 0,
    start: float = 0.0,
    end: float | None = None,
) -> FrameStream:
    """Sample RGB frames of a video at ``fps`` with their presentation times, streaming.

    Args:
        path: Video file.
        fps: Samples per second (timestamp mode) or the official code's rate (reference mode).
        size: Output (height, width); the full frame is resized (aspect ratio not kept, bicubic) as BLIP-2's
            preprocessing does. None keeps the native displayed size.
        mode: ``"timestamp"`` (latest frame at or before each k / fps) or ``"reference"`` (official indices).
        strict: Raise VideoError on a truncated file or a corrupt packet instead of warning and going on.
        threads: Decoder threads; 0 lets FFmpeg choose (frame and slice threading), 1 decodes on one thread.
        start: Timestamp mode only: yield only the samples whose target k / fps is at or after ``start``
            seconds (on the stream's own time axis, from the first frame). Their frames and times are those a
            full pass gives (a sample may show a frame from before ``start``: the one held at its target).
            Decoding starts from a seek to the keyframe before the first target when the file allows it.
            A start at or after the video's end yields nothing.
        end: Timestamp mode only: yield only targets before ``end`` seconds, and stop decoding there. None: to
            the end of the video.

    Returns:
        A FrameStream to iterate once (``for frame, t in stream`` or ``stream.batches(32)``).

    Raises:
        InputError: bad fps, size, mode or window (negative or non-finite start, end not after start, a
            window in reference mode).
        VideoError: missing file, not a media file, no video stream (at once); no decodable frame, or with
            strict truncation/corruption (while iterating).
    """
    return FrameStream(path, fps, size, mode=mode, strict=strict, threads=threads, start=start, end=end)


def read_frames(
    path: str | os.PathLike,
    fps: float = 3.0,
    size: tuple[int, int] | None = None,
    *,
    mode: str = "timestamp",
    strict: bool = False,
) -> tuple[np.ndarray, np.ndarray, float]:
    """All sampled frames at once: (N, H, W, 3) uint8, their times (N,) float64, and the decoded duration.

    A convenience for short clips; use sample_frames to stream long videos (or a window of one).
    """
    stream = sample_frames(path, fps, size, mode=mode, strict=strict)
    frames: list[np.ndarray] = []
    times: list[float] = []
    for frame, t in stream:
        frames.append(frame)
        times.append(t)
    assert stream.duration is not None  # set by a pass that decoded at least one frame
    return np.stack(frames), np.asarray(times, dtype=np.float64), float(stream.duration)
