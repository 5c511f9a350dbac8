"""tfvtg.video: which frames are sampled, their exact times, sizes, rotation, and every error path."""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import tracemalloc

import numpy as np
import pytest

from tests.fixtures.videos import frame_pattern, make_video, pattern_index
from tfvtg.errors import InputError, VideoError
from tfvtg.video import probe_video, read_frames, reference_indices, sample_frames


def expected_picks(times: np.ndarray, fps: float, end: float) -> list[int]:
    """Hand model of timestamp sampling: for each k / fps < end, the last frame with time <= k / fps."""
    picks = []
    k = 0
    while k == 0 or k / fps < end:
        picks.append(int(np.searchsorted(times, k / fps, side="right")) - 1)
        k += 1
    return picks


def sampled(path, fps=3.0, **kw):
    stream = sample_frames(path, fps, **kw)
    frames, times = [], []
    for frame, t in stream:
        frames.append(frame)
        times.append(t)
    return stream, frames, np.array(times)


# -- timestamp mode ----


def test_constant_rate_picks_frame_at_or_before_each_target(cfr_video):
    stream, frames, times = sampled(cfr_video, 3.0)
    # 30 frames at 10 fps span 3.0 s: targets 0, 1/3, ..., 8/3 -> frames 0, 3, 6, 10, 13, 16, 20, 23, 26.
    assert [pattern_index(f) for f in frames] == [0, 3, 6, 10, 13, 16, 20, 23, 26]
    assert times.tolist() == [cfr_video.times[i] for i in (0, 3, 6, 10, 13, 16, 20, 23, 26)]
    assert stream.duration == 3.0
    assert (stream.decoded_frames, stream.sampled_frames, stream.corrupt_packets) == (30, 9, 0)
    for f in frames:
        assert f.dtype == np.uint8 and f.shape == (48, 64, 3) and f.flags.c_contiguous


def test_frames_are_the_rgb_images_written(cfr_video):
    _, frames, _ = sampled(cfr_video, 1.0)
    for k, frame in enumerate(frames):
        want = frame_pattern(10 * k, (48, 64)).astype(np.int16)
        assert np.abs(frame.astype(np.int16) - want).mean() < 4.0
    assert frames[0][-1, 0].tolist() == pytest.approx([255, 0, 0], abs=40)  # red marker, RGB order


def test_variable_frame_rate_uses_real_timestamps(vfr_video):
    stream, frames, times = sampled(vfr_video, 3.0)
    picks = expected_picks(vfr_video.times, 3.0, stream.duration)
    assert [pattern_index(f) for f in frames] == picks
    assert times.tolist() == [vfr_video.times[i] for i in picks]
    # Irregular gaps: frame 1 (0.05 s) is never sampled, frame 3 (0.31 s) serves both 1/3 and 2/3.
    assert picks[:4] == [0, 3, 3, 5]
    assert stream.duration > vfr_video.times[-1]


def test_vfr_matroska_without_stream_duration(video_factory):
    from fractions import Fraction

    from tests.fixtures.videos import VFR_TIMES

    video = video_factory("vfr.mkv", vfr_times=VFR_TIMES, time_base=Fraction(1, 1000))
    stream, frames, times = sampled(video, 3.0)
    picks = expected_picks(video.times, 3.0, stream.duration)
    assert [pattern_index(f) for f in frames] == picks
    assert times.tolist() == [video.times[i] for i in picks]


def test_ntsc_rate_times_are_exact(ntsc_video):
    stream, frames, times = sampled(ntsc_video, 3.0)
    # Frame i sits at i * 1001 / 30000 s; target k/3 takes frame floor(k * 10000 / 1001).
    picks = [math.floor(k * 10000 / 1001) for k in range(7)]
    assert picks == [0, 9, 19, 29, 39, 49, 59]
    assert [pattern_index(f) for f in frames] == picks
    assert times.tolist() == [i * 1001 / 30000 for i in picks]
    assert stream.duration == pytest.approx(60 * 1001 / 30000)


def test_no_declared_duration_and_wrong_rate(nodur_video):
    info = probe_video(nodur_video)
    assert info.duration is None and info.fps == 25.0  # the raw stream declares 25 fps; it is 10
    stream, frames, times = sampled(nodur_video, 3.0)
    assert [pattern_index(f) for f in frames] == [0, 3, 6, 10, 13, 16]
    assert times.tolist() == [0.0, 0.3, 0.6, 1.0, 1.3, 1.6]
    assert stream.duration == pytest.approx(2.0)


def test_higher_rate_than_video_repeats_frames_as_copies(cfr_video):
    _, frames, times = sampled(cfr_video, 25.0)
    assert len(frames) == 75  # targets k / 25 < 3.0
    assert [pattern_index(f) for f in frames[:6]] == [0, 0, 0, 1, 1, 2]
    assert times[:3].tolist() == [0.0, 0.0, 0.0]
    assert frames[0] is not frames[1] and not np.shares_memory(frames[0], frames[1])


def test_resize_to_exact_size(cfr_video):
    _, frames, _ = sampled(cfr_video, 1.0, size=(36, 100))
    assert all(f.shape == (36, 100, 3) and f.dtype == np.uint8 for f in frames)
    assert [pattern_index(f) for f in frames] == [0, 10, 20]


def test_odd_size_native_and_resized(odd_size_video):
    info = probe_video(odd_size_video)
    assert (info.width, info.height) == (321, 239)
    _, frames, times = sampled(odd_size_video, 10.0)
    assert [f.shape for f in frames] == [(239, 321, 3)] * 6
    assert [pattern_index(f) for f in frames] == list(range(6))
    _, small, _ = sampled(odd_size_video, 10.0, size=(17, 33))
    assert small[0].shape == (17, 33, 3)


def test_rotated_video_is_upright(rotated_video):
    info = probe_video(rotated_video)
    assert info.rotation == 90 and (info.width, info.height) == (48, 64)
    _, frames, times = sampled(rotated_video, 5.0)
    assert times.tolist() == [0.0, 0.2, 0.4, 0.6, 0.8]
    for k, frame in enumerate(frames):
        assert frame.shape == (64, 48, 3)
        upright = np.rot90(frame_pattern(2 * k, (48, 64)), 1).astype(np.int16)
        assert np.abs(frame.astype(np.int16) - upright).mean() < 4.0
        assert pattern_index(np.rot90(frame, -1)) == 2 * k
    _, resized, _ = sampled(rotated_video, 5.0, size=(40, 30))
    assert resized[0].shape == (40, 30, 3)
    assert pattern_index(np.rot90(resized[2], -1)) == 4


def test_one_frame_video(one_frame_video):
    stream, frames, times = sampled(one_frame_video, 3.0)
    assert len(frames) == 1 and pattern_index(frames[0]) == 77 and times.tolist() == [0.0]
    assert stream.duration == pytest.approx(0.1)


def test_batches_shapes_and_content(cfr_video):
    stream = sample_frames(cfr_video, 3.0, size=(24, 32))
    batches = list(stream.batches(4))
    assert [b[0].shape for b in batches] == [(4, 24, 32, 3), (4, 24, 32, 3), (1, 24, 32, 3)]
    assert all(b[0].dtype == np.uint8 and b[1].dtype == np.float64 for b in batches)
    times = np.concatenate([b[1] for b in batches])
    assert times.tolist() == [cfr_video.times[i] for i in (0, 3, 6, 10, 13, 16, 20, 23, 26)]
    assert pattern_index(batches[1][0][2]) == 20 and pattern_index(batches[2][0][0]) == 26
    with pytest.raises(InputError, match="only once"):
        list(stream)


def test_read_frames(cfr_video):
    frames, times, duration = read_frames(cfr_video, 2.0)
    assert frames.shape == (6, 48, 64, 3) and times.dtype == np.float64 and duration == 3.0
    assert times.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]


def _live_video_frames() -> int:
    import av

    gc.collect()
    return sum(type(o) is av.VideoFrame for o in gc.get_objects())  # type(): no __class__ lookups on proxies


def test_memory_does_not_hold_decoded_frames(video_factory):
    import av

    video = video_factory("mem.mp4", n_frames=120, fps=30, size=(96, 128))
    # Positive control: decoded frames kept in a list are visible to the count.
    with av.open(os.fspath(video)) as container:
        kept = list(container.decode(video=0))
        assert _live_video_frames() >= 120
    del kept
    for mode in ("timestamp", "reference"):
        stream = sample_frames(video, 10.0, mode=mode)
        live = [_live_video_frames() for i, _ in enumerate(stream) if i % 5 == 0]
        assert stream.decoded_frames == 120 and stream.sampled_frames == 40
        assert max(live) <= 8, live  # the held candidate plus the decoder's few frames in flight
    tracemalloc.start()
    frames = sum(frame.nbytes for frame, _ in sample_frames(video, 10.0, size=(200, 200)))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert frames == 40 * 200 * 200 * 3 and peak < 10 * 200 * 200 * 3


# -- reference mode ----


def test_reference_indices_hand_computed():
    # 30 frames at 10 fps = 3 s, at 3 fps: n = 9, linspace(0, 29, 9) = 0, 3.625, 7.25, ..., 29
    assert reference_indices(30, 10.0, 3.0).tolist() == [0, 4, 7, 11, 14, 18, 22, 25, 29]
    # 250 frames at 25 fps = 10 s: n = 30; 1 frame: n = round(0.12) = 0 -> at least one
    assert len(reference_indices(250, 25.0, 3.0)) == 30
    assert reference_indices(1, 25.0, 3.0).tolist() == [0]
    # round half to even as numpy does: linspace(0, 9, 3) = 0, 4.5, 9 -> 0, 4, 9
    assert reference_indices(10, 10.0, 3.0).tolist() == [0, 4, 9]


def test_reference_mode_picks_official_indices(cfr_video):
    stream, frames, times = sampled(cfr_video, 3.0, mode="reference")
    assert [pattern_index(f) for f in frames] == [0, 4, 7, 11, 14, 18, 22, 25, 29]
    assert times.tolist() == [cfr_video.times[i] for i in (0, 4, 7, 11, 14, 18, 22, 25, 29)]
    assert stream.sampled_frames == 9


def test_reference_mode_ntsc(ntsc_video):
    _, frames, times = sampled(ntsc_video, 3.0, mode="reference")
    # 60 frames at 30000/1001 fps: duration 2.002 s, n = round(6.006) = 6, linspace(0, 59, 6) = 0, 11.8, ...
    want = np.linspace(0, 59, 6).round().astype(int).tolist()
    assert want == [0, 12, 24, 35, 47, 59]
    assert [pattern_index(f) for f in frames] == want
    assert times.tolist() == [i * 1001 / 30000 for i in want]


def test_reference_mode_counts_frames_without_declared_count(nodur_video):
    # No count declared; 20 packets; declared (wrong) 25 fps -> 0.8 s, n = round(2.4) = 2: frames 0, 19.
    _, frames, times = sampled(nodur_video, 3.0, mode="reference")
    assert [pattern_index(f) for f in frames] == [0, 19]
    assert times.tolist() == [0.0, 1.9]


# -- errors ----


def test_missing_file(tmp_path):
    with pytest.raises(VideoError, match="file not found"):
        sample_frames(tmp_path / "nope.mp4")
    with pytest.raises(VideoError, match="file not found"):
        probe_video(tmp_path / "nope.mp4")


def test_directory(tmp_path):
    with pytest.raises(VideoError, match="directory"):
        sample_frames(tmp_path)


def test_not_a_media_file(non_media_file):
    with pytest.raises(VideoError, match="not a media file") as info:
        sample_frames(non_media_file)
    assert "\n" not in str(info.value)


def test_audio_only(audio_only_file):
    with pytest.raises(VideoError, match="no video stream"):
        sample_frames(audio_only_file)


def test_zero_decodable_frames(undecodable_video):
    stream = sample_frames(undecodable_video)
    with pytest.raises(VideoError, match="no decodable video frame"):
        list(stream)


def test_empty_file(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoError, match=r"empty\.mp4"):
        sample_frames(empty)


@pytest.mark.parametrize("fps", [0, -1.0, float("nan"), float("inf"), "fast", None, 1000.5, 1e308])
def test_bad_fps(cfr_video, fps):
    with pytest.raises(InputError, match="fps"):
        sample_frames(cfr_video, fps)


@pytest.mark.parametrize("size", [(0, 10), (10,), (10.5, 3), "224", (True, 3), (-1, 4)])
def test_bad_size(cfr_video, size):
    with pytest.raises(InputError, match="size"):
        sample_frames(cfr_video, 3.0, size)


def test_bad_mode_and_batch_size(cfr_video):
    with pytest.raises(InputError, match="mode"):
        sample_frames(cfr_video, mode="index")
    with pytest.raises(InputError, match="batch_size"):
        next(sample_frames(cfr_video).batches(0))


def test_truncated_file_warns_and_keeps_decoded_part(truncated_video, long_video, caplog):
    caplog.set_level(logging.WARNING, logger="tfvtg.video")
    assert probe_video(truncated_video).duration == pytest.approx(4.0)
    stream, frames, times = sampled(truncated_video, 5.0)
    assert 1.0 < stream.duration < 3.0
    assert any("truncated" in r.getMessage() for r in caplog.records)
    picks = [pattern_index(f) for f in frames]
    assert picks == [5 * k for k in range(len(picks))]  # 25 fps, 5 fps: frames 0, 5, 10, ...
    assert times.tolist() == [long_video.times[i] for i in picks]


def test_truncated_file_strict_raises(truncated_video):
    with pytest.raises(VideoError, match="truncated"):
        list(sample_frames(truncated_video, 3.0, strict=True))
    with pytest.raises(VideoError):
        list(sample_frames(truncated_video, 3.0, mode="reference", strict=True))


def test_corrupt_packets_are_skipped(corrupt_video, long_video, caplog):
    caplog.set_level(logging.WARNING, logger="tfvtg.video")
    stream, frames, times = sampled(corrupt_video, 25.0)
    assert stream.corrupt_packets == 3
    assert stream.decoded_frames == 97
    assert any("corrupt" in r.getMessage() for r in caplog.records)
    assert stream.duration == pytest.approx(4.0)  # not truncated: the rest decoded
    # Every sampled frame is a real frame reported at its own time.
    assert times.tolist() == [long_video.times[pattern_index(f)] for f in frames]
    with pytest.raises(VideoError, match="corrupt"):
        list(sample_frames(corrupt_video, 3.0, strict=True))


def test_iterating_twice_is_refused(cfr_video):
    stream = sample_frames(cfr_video)
    list(stream)
    with pytest.raises(InputError, match="only once"):
        iter(stream)


def test_error_message_names_the_file(tmp_path):
    with pytest.raises(VideoError) as info:
        sample_frames(tmp_path / "x y.mp4")
    assert "x y.mp4" in str(info.value)


# -- real clips ----


def test_shared_videos(shared_videos):
    clips = json.loads((shared_videos / "videos.json").read_text())["clips"]
    for clip in clips:
        path = shared_videos / clip["file"]
        info = probe_video(path)
        assert info.width > 0 and info.height > 0 and info.fps
        stream = sample_frames(path, 3.0, size=(32, 32))
        times = np.array([t for frame, t in stream if frame.shape == (32, 32, 3)])
        assert stream.corrupt_packets == 0
        assert len(times) == stream.sampled_frames
        assert stream.duration == pytest.approx(clip["duration"], abs=0.1)
        assert times[0] == 0.0 and np.all(np.diff(times) > 0)
        # Each sample lies at most one frame before its target k / 3.
        targets = np.arange(len(times)) / 3.0
        assert np.all(times <= targets + 1e-9) and np.all(targets - times < 1.0 / info.fps + 1e-6)
        assert len(times) == math.ceil(stream.duration * 3.0 - 1e-9)


def test_shared_video_reference_mode(shared_videos):
    path = shared_videos / "bikes.mp4"
    info = probe_video(path)
    stream = sample_frames(path, 3.0, size=(16, 16), mode="reference")
    times = [t for _, t in stream]
    n = round(info.frame_count / info.fps * 3.0)
    assert len(times) == n
    idx = np.linspace(0, info.frame_count - 1, n).round()
    assert np.allclose(times, idx / info.fps, atol=1e-6)  # constant-rate clip: time = index / fps


def test_make_video_rejects_bad_vfr_times(tmp_path):
    with pytest.raises(ValueError):
        make_video(tmp_path / "bad.mp4", vfr_times=[0.0, 0.0])


def test_single_threaded_decoding_gives_the_same_frames(cfr_video):
    _, frames, times = sampled(cfr_video, 3.0, threads=1)
    _, frames_auto, times_auto = sampled(cfr_video, 3.0)
    assert times.tolist() == times_auto.tolist()
    assert all(np.array_equal(a, b) for a, b in zip(frames, frames_auto, strict=True))
    for bad in (-1, 1.5, True):
        with pytest.raises(InputError, match="threads"):
            sample_frames(cfr_video, threads=bad)
