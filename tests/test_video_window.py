"""tfvtg.video time windows (start/end): exactly a full pass's samples in the window, got by seeking.

The oracle is the full pass itself: sample target k is the k-th item a full pass yields, so the window
[start, end) must give ``[full[k] for k if start <= k / fps < end]``, frames byte-equal and times equal.
The clips have short keyframe intervals so that seeks really skip decoding.
"""

from __future__ import annotations

import logging
import math
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.videos import frame_pattern, pattern_index
from tfvtg.errors import InputError
from tfvtg.video import FrameStream, sample_frames

SIZE = (48, 64)  # (height, width) of every synthetic clip


def encode(path: Path, ticks: list[int], time_base: Fraction, *, rate: Fraction, gop: int | None = 12,
           format: str | None = None) -> np.ndarray:
    """Write an H.264 clip whose frame i (pattern i % 256) has pts ``ticks[i]`` in ``time_base``; return each
    frame's time in seconds from the first frame."""
    import av

    options = {"crf": "10", "preset": "veryfast"}
    if gop is not None:
        options["g"] = str(gop)
    else:  # one keyframe, at the start
        options.update({"g": "100000", "sc_threshold": "0"})
    with av.open(os.fspath(path), "w", format=format) as container:
        stream = container.add_stream("libx264", rate=rate, options=options)
        stream.width, stream.height, stream.pix_fmt = SIZE[1], SIZE[0], "yuv420p"
        stream.codec_context.time_base = time_base
        for i, tick in enumerate(ticks):
            frame = av.VideoFrame.from_ndarray(frame_pattern(i % 256, SIZE), format="rgb24")
            frame.pts, frame.time_base = tick, time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return np.array([float((t - ticks[0]) * time_base) for t in ticks])


def keyframe_times(path: Path) -> list[float]:
    """Presentation times (s from the first frame) of the keyframe packets."""
    import av

    with av.open(os.fspath(path)) as container:
        stream = container.streams.video[0]
        pts = [p.pts for p in container.demux(stream) if p.pts is not None]
    with av.open(os.fspath(path)) as container:
        stream = container.streams.video[0]
        keys = [p.pts for p in container.demux(stream) if p.is_keyframe and p.pts is not None]
        tb = stream.time_base
    return [float((k - min(pts)) * tb) for k in keys]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Short-GOP clips: constant rate mp4, variable rate mp4, mp4 whose first pts is not 0, MPEG-TS, one
    whose only keyframe is the first (MPEG-TS: seeks cannot land before the window), raw H.264."""
    d = tmp_path_factory.mktemp("window")
    r25 = Fraction(25)
    vfr = np.cumsum(np.r_[0.0, np.tile([0.01, 0.05, 0.3, 0.04, 0.12, 0.5, 0.02], 12)])  # 85 frames, 7.3 s
    out = {
        "cfr": d / "cfr.mp4",
        "vfr": d / "vfr.mp4",
        "offset": d / "offset.mp4",
        "ts": d / "clip.ts",
        "onekey": d / "onekey.ts",
        "raw": d / "raw.h264",
    }
    encode(out["cfr"], list(range(150)), 1 / r25, rate=r25)  # 6 s at 25 fps
    encode(out["vfr"], [round(t * 90_000) for t in vfr], Fraction(1, 90_000), rate=Fraction(10))
    encode(out["offset"], [123_457 + 3600 * i for i in range(150)], Fraction(1, 90_000), rate=r25)
    encode(out["ts"], [3600 * i for i in range(150)], Fraction(1, 90_000), rate=r25)
    encode(out["onekey"], [3600 * i for i in range(150)], Fraction(1, 90_000), rate=r25, gop=None)
    encode(out["raw"], list(range(150)), 1 / r25, rate=r25, format="h264")
    return out


def full_pass(path: Path, fps: float) -> tuple[FrameStream, list[tuple[np.ndarray, float]]]:
    stream = sample_frames(path, fps)
    return stream, list(stream)


def windowed(path: Path, fps: float, start: float, end: float | None, **kw):
    stream = sample_frames(path, fps, start=start, end=end, **kw)
    return stream, list(stream)


def assert_window_identity(full: list, got: list, fps: float, start: float, end: float | None) -> None:
    stop = math.inf if end is None else end
    want = [full[k] for k in range(len(full)) if start <= k / fps < stop]
    assert [t for _, t in got] == [t for _, t in want], (start, end)
    for (frame, _), (expected, _) in zip(got, want, strict=True):
        assert np.array_equal(frame, expected)


# -- identity with the full pass ----


CFR_WINDOWS = [
    (0.0, 1.0),  # start at 0: no seek
    (0.0, None),
    (1.3, 2.9),  # mid-GOP
    (2.0, 3.0),  # starts exactly on a frame (frame 50)
    (3.1, 100.0),  # end past the end of the video
    (5.9, None),
    (2.0, 2.01),  # smaller than one sampling interval, holding target 2.0
    (2.31, 2.33),  # smaller than one sampling interval, holding no target
]


@pytest.mark.parametrize("fps", [3.0, 12.0, 40.0])  # 40 > 25: repeated frames at consecutive targets
def test_cfr_windows_equal_the_full_pass(clips, fps):
    _, full = full_pass(clips["cfr"], fps)
    for start, end in CFR_WINDOWS:
        stream, got = windowed(clips["cfr"], fps, start, end)
        assert_window_identity(full, got, fps, start, end)
        if start == 0 or got:
            assert stream.seeked == (start > 0)
        assert stream.sampled_frames == len(got)


def test_window_starting_on_a_keyframe(clips):
    keys = [t for t in keyframe_times(clips["cfr"]) if 1.0 < t < 5.0]
    assert keys, "the clip should have keyframes every 12 frames"
    _, full = full_pass(clips["cfr"], 25.0)  # at 25 fps every target is a frame time
    for key in keys:
        start = round(key * 25) / 25  # the target k / 25 that is the keyframe's time
        stream, got = windowed(clips["cfr"], 25.0, start, start + 0.5)
        assert_window_identity(full, got, 25.0, start, start + 0.5)
        assert got[0][1] == pytest.approx(key, abs=1e-9)
        assert stream.seeked and stream.decoded_frames < 12 + 14  # origin + at most a GOP before the window


def test_cfr_held_frame_and_patterns(clips):
    # At 3 fps the window [1.1, 2.2) holds targets 4/3 and 5/3 and 6/3: frames 33, 41 and 50 of 25 fps.
    stream, got = windowed(clips["cfr"], 3.0, 1.1, 2.2)
    assert [pattern_index(f) for f, _ in got] == [33, 41, 50]
    assert [t for _, t in got] == [33 / 25, 41 / 25, 50 / 25]
    assert stream.seeked


def test_variable_frame_rate_windows(clips):
    for fps in (2.0, 7.0, 30.0):
        _, full = full_pass(clips["vfr"], fps)
        for start, end in [(0.0, 2.0), (0.45, 1.0), (2.5, 4.1), (3.0, 3.02), (6.9, None), (5.0, 50.0)]:
            stream, got = windowed(clips["vfr"], fps, start, end)
            assert_window_identity(full, got, fps, start, end)
            if start > 1.0:
                assert stream.seeked


def test_vfr_window_holds_the_frame_before_start(clips):
    # Frames 18-24 at 2.48, 2.60, 3.10, 3.12, 3.13, 3.18, 3.48 (a 0.5 s gap after 2.60): target 3.0 shows
    # frame 19 from 2.60 s, before the window; 3.1 and 3.2 show frames 20 and 23.
    stream, got = windowed(clips["vfr"], 10.0, 2.95, 3.25)
    times = [t for _, t in got]
    assert times == pytest.approx([2.6, 3.1, 3.18], abs=1e-9)
    assert [pattern_index(f) for f, _ in got] == [19, 20, 23]
    assert stream.seeked


def test_first_pts_not_zero(clips):
    full_stream, full = full_pass(clips["offset"], 6.0)
    assert full[0][1] == 0.0
    for start, end in [(0.0, 1.0), (2.5, 4.0), (4.9, None), (5.99, 6.0)]:
        stream, got = windowed(clips["offset"], 6.0, start, end)
        assert_window_identity(full, got, 6.0, start, end)
        assert stream.seeked == (start > 1.0 and bool(got))
    stream, got = windowed(clips["offset"], 6.0, 4.9, None)
    assert stream.duration == full_stream.duration == 6.0  # decoded to the end: the decoded span


def test_mpegts_seeks_that_land_late_are_retried(clips):
    # MPEG-TS seeks to a packet near the time and decoding starts at the next keyframe: often after the
    # window's first target. Earlier seeks follow; the result is still the full pass's.
    _, full = full_pass(clips["ts"], 12.0)
    assert full[0][1] == 0.0  # the muxer's 1.4 s start offset is not part of the time axis
    for start, end in [(1.2, 2.0), (3.33, 3.5), (5.5, None)]:
        stream, got = windowed(clips["ts"], 12.0, start, end)
        assert_window_identity(full, got, 12.0, start, end)
        assert stream.seeked and stream.decoded_frames < 150


# -- the fallback: decoding from the first frame ----


@pytest.mark.parametrize("name", ["raw", "onekey"])
def test_fallback_decodes_from_the_start_and_gives_the_same_frames(clips, name, caplog):
    """raw: no timestamps to seek by; onekey: every seek lands after the window (no keyframe before it)."""
    _, full = full_pass(clips[name], 4.0)
    caplog.set_level(logging.DEBUG, logger="tfvtg.video")
    stream = sample_frames(clips[name], 4.0, start=3.1, end=4.6)
    converted = []
    to_array = stream._to_array

    def spy(frame):
        converted.append(frame.pts)
        return to_array(frame)

    stream._to_array = spy
    got = list(stream)
    assert_window_identity(full, got, 4.0, 3.1, 4.6)
    assert len(got) == 6 and not stream.seeked
    assert len(converted) == len(got)  # nothing before the window went through swscale
    assert any("decoding from the first frame" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# -- arguments, statistics, truncation ----


@pytest.mark.parametrize(
    ("start", "end", "match"),
    [
        (-0.5, None, "start must be >= 0"),
        (1.0, 1.0, "end must be after start"),
        (2.0, 1.0, "end must be after start"),
        (math.nan, None, "finite"),
        (0.0, math.inf, "finite"),
        (math.inf, None, "finite"),
        ("1", None, "number of seconds"),
        (True, None, "number of seconds"),
    ],
)
def test_bad_windows(clips, start, end, match):
    with pytest.raises(InputError, match=match):
        sample_frames(clips["cfr"], 3.0, start=start, end=end)


def test_window_in_reference_mode_is_refused(clips):
    for kw in ({"start": 1.0}, {"end": 2.0}):
        with pytest.raises(InputError, match="timestamp sampling"):
            sample_frames(clips["cfr"], 3.0, mode="reference", **kw)


def test_start_at_or_after_the_end_yields_nothing(clips):
    for start in (6.0, 6.5, 1000.0):
        stream, got = windowed(clips["cfr"], 3.0, start, None)
        assert got == [] and stream.sampled_frames == 0
    stream, got = windowed(clips["cfr"], 3.0, 2.34, 2.6)  # holds no target at 3 fps: nothing decoded
    assert got == [] and stream.decoded_frames == 0


def test_late_window_decodes_fewer_frames_and_keeps_the_declared_duration(clips, caplog):
    full_stream, _ = full_pass(clips["cfr"], 12.0)
    assert full_stream.decoded_frames == 150
    with caplog.at_level(logging.WARNING, logger="tfvtg.video"):
        stream, got = windowed(clips["cfr"], 12.0, 4.5, 5.0)
    assert len(got) == 6 and stream.seeked
    # origin frame + from the keyframe at or before 4.5 s (at most 12 frames back) to the first frame after
    # the last target 59 / 12 s.
    assert stream.decoded_frames <= 1 + 12 + 14
    assert stream.duration == stream.info.duration  # stopped before the end: the declared duration
    assert not caplog.records  # a window that stops on purpose is not a truncated file


def test_window_on_a_truncated_file(truncated_video, caplog):
    with caplog.at_level(logging.WARNING, logger="tfvtg.video"):
        stream, got = windowed(truncated_video, 5.0, 0.5, 1.0)
    assert [pattern_index(f) for f, _ in got] == [15, 20]  # targets 0.6 and 0.8 s; 25 fps
    assert not caplog.records
    _, full = full_pass(truncated_video, 5.0)
    with caplog.at_level(logging.WARNING, logger="tfvtg.video"):
        stream, got = windowed(truncated_video, 5.0, 1.0, None)  # to the end: the truncation is reported
    assert_window_identity(full, got, 5.0, 1.0, None)
    assert any("looks truncated" in r.getMessage() for r in caplog.records)


# -- real clips ----


def test_shared_videos_windows(shared_videos):
    for name in ("bigbuckbunny.mp4", "bikes.mp4", "cup.mp4"):
        path = shared_videos / name
        full_stream = sample_frames(path, 3.0, size=(32, 32))
        full = list(full_stream)
        span = full_stream.duration
        for start, end in [(0.0, 1.0), (span / 2, span / 2 + 1.3), (span - 1.1, None)]:
            stream, got = windowed(path, 3.0, start, end, size=(32, 32))
            assert_window_identity(full, got, 3.0, start, end)
            assert stream.decoded_frames <= full_stream.decoded_frames + 1  # + the origin frame
        assert stream.seeked


# -- NumPro's refinement pass ----


def old_sample_window(path: Path, fps: float, lo: float, hi: float, duration: float):
    """NumPro's window sampling before seeking: a full pass, filtered (what its outputs must equal)."""
    kept, kept_times, end_time = [], [], duration
    for frame, t in sample_frames(path, fps, (48, 64)):
        if t >= hi:
            end_time = t
            break
        if t >= lo and (not kept_times or t > kept_times[-1]):
            kept.append(frame)
            kept_times.append(t)
    return kept, kept_times, min(end_time, duration)


class _NoModel:
    """An MLLM that is never asked (the window sampling alone is under test)."""

    name = "none"

    def answer(self, frames, prompt, *, times=None, frame_labels=None) -> str:
        raise AssertionError("not asked")


def test_numpro_window_sampling_is_unchanged(clips):
    from numpro.ground import NumProGrounder

    for name, refine_fps, windows in [
        ("cfr", 4.0, [(0.0, 2.0), (1.3, 2.9), (3.5, 6.0), (4.1, 4.2)]),
        ("vfr", 10.0, [(0.5, 1.5), (2.95, 3.05), (2.61, 3.09), (5.0, 7.3)]),
        ("ts", 4.0, [(2.2, 4.4)]),
        ("raw", 4.0, [(2.2, 4.4)]),
    ]:
        grounder = NumProGrounder(_NoModel(), refine=True, refine_fps=refine_fps, size=(48, 64))
        duration = full_pass(clips[name], 1.0)[0].duration
        for lo, hi in windows:
            frames, times, end_time = grounder._sample_window(clips[name], lo, hi, duration)
            want_frames, want_times, want_end = old_sample_window(clips[name], refine_fps, lo, hi, duration)
            assert times.tolist() == want_times and end_time == want_end, (name, lo, hi)
            assert all(np.array_equal(a, b) for a, b in zip(frames, want_frames, strict=True))


def test_numpro_refinement_seeks_and_decodes_fewer_frames(openai_server, tmp_path, monkeypatch):
    import tfvtg.video
    from numpro.ground import NumProGrounder
    from numpro.mllm import OpenAIVisionChat

    path = tmp_path / "long.mp4"
    encode(path, list(range(120)), Fraction(1, 10), rate=Fraction(10))  # 12 s at 10 fps, keyframe every 12
    streams: list[FrameStream] = []
    real = tfvtg.video.sample_frames

    def spy(*args, **kwargs):
        streams.append(real(*args, **kwargs))
        return streams[-1]

    monkeypatch.setattr(tfvtg.video, "sample_frames", spy)
    openai_server.queue("From Frame 8 to Frame 9", "From Frame 4 to Frame 11")
    chat = OpenAIVisionChat("test-vlm", base_url=openai_server.base_url, api_key="sk-test", max_retries=0)
    details = NumProGrounder(chat, refine=True, size=(48, 64)).ground_with_details(path, "x")
    # Coarse (8, 10) s; margin 2 s -> window [6, 12) at 4 fps: 24 frames, from 6.0 s.
    refined = details.refined
    assert details.used == "refined" and refined.window == (6.0, 12.0)
    np.testing.assert_allclose(refined.times, [math.floor((6 + j / 4) * 10 + 1e-6) / 10 for j in range(24)])
    coarse_stream, window_stream = streams
    assert coarse_stream.decoded_frames == 120 and not coarse_stream.seeked
    assert window_stream.seeked and window_stream.start == 6.0
    assert window_stream.decoded_frames <= 1 + 12 + 60  # origin + at most a GOP before 6 s + the window
    (moment,) = details.moments
    assert (moment.start, moment.end) == pytest.approx((7.0, 9.0))  # frames 4..11 -> 7.0 s to frame 12's 9.0
