"""`NumProGrounder.sample` with a frame cap: streams the file, holds about twice the cap, and returns exactly
the frames a full read followed by `cap_indices` selects (byte for byte, same times and duration)."""

from __future__ import annotations

import weakref
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import tfvtg.video
from numpro.ground import NumProGrounder, SampledVideo
from numpro.mllm import OpenAIVisionChat, cap_indices
from tests.fixtures.videos import VFR_TIMES, make_video, truncate_file
from tfvtg.video import read_frames

SIZE = (48, 64)


class _NoModel:
    """An MLLM that is never asked (sampling alone is under test); ``max_frames`` is the back-end's cap."""

    name = "none"

    def __init__(self, max_frames: int | None = None) -> None:
        self.max_frames = max_frames

    def answer(self, frames, prompt, *, times=None, frame_labels=None) -> str:
        raise AssertionError("not asked")


class FrameSpy:
    """Wraps `tfvtg.video.sample_frames`: counts streams opened, and the most yielded frames alive at once
    (weak references: a frame is alive while anything still holds it)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.streams = 0
        self.yielded = 0
        self.peak_alive = 0
        self._refs: list[weakref.ref] = []
        real = tfvtg.video.sample_frames

        def spy(*args, **kwargs):
            self.streams += 1
            return _Counted(real(*args, **kwargs), self)

        monkeypatch.setattr(tfvtg.video, "sample_frames", spy)

    def saw(self, frame: np.ndarray) -> None:
        self._refs = [r for r in self._refs if r() is not None]
        self._refs.append(weakref.ref(frame))
        self.yielded += 1
        self.peak_alive = max(self.peak_alive, len(self._refs))


class _Counted:
    def __init__(self, stream, spy: FrameSpy) -> None:
        self._stream, self._spy = stream, spy

    def __getattr__(self, name):
        return getattr(self._stream, name)

    def __iter__(self):
        for frame, t in self._stream:
            self._spy.saw(frame)
            yield frame, t
            del frame


def old_sample(path, fps: float, cap: int | None, mode: str = "timestamp") -> SampledVideo:
    """What `sample` returned before streaming: every frame read, then capped (as `_ask` caps)."""
    frames, times, duration = read_frames(path, fps, SIZE, mode=mode)
    keep = cap_indices(len(frames), cap)
    return SampledVideo(frames[keep], times[keep], duration, Path(path))


def assert_same(got: SampledVideo, want: SampledVideo) -> None:
    assert got.frames.dtype == np.uint8 and got.frames.shape == want.frames.shape
    assert got.frames.tobytes() == want.frames.tobytes()
    assert got.times.tolist() == want.times.tolist()
    assert got.duration == want.duration and got.path == want.path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("numpro_memory")
    long = make_video(d / "long.mp4", n_frames=200, fps=25, faststart=True)  # 8 s, index first
    return {
        "cfr": make_video(d / "cfr.mp4", n_frames=120, fps=10, size=SIZE).path,  # 12 s
        "ntsc": make_video(d / "ntsc.mp4", n_frames=360, fps=Fraction(30000, 1001), size=SIZE).path,
        "vfr": make_video(d / "vfr.mp4", vfr_times=VFR_TIMES, fps=10, size=SIZE).path,
        "mkv": make_video(d / "cfr.mkv", n_frames=75, fps=25, size=SIZE).path,
        # Raw H.264: no declared duration or frame count (and a wrong declared rate of 25).
        "raw": make_video(d / "raw.h264", n_frames=60, fps=10, size=SIZE, format="h264").path,
        # Declare 8 s, decode 2.72 s and 6.84 s.
        "truncated": truncate_file(long, d / "truncated.mp4", 0.5),
        "truncated90": truncate_file(long, d / "truncated90.mp4", 0.9),
        "stream30": make_video(d / "long30.mp4", n_frames=300, fps=10, size=(32, 32)).path,  # 30 s
    }


def _sample(path, fps: float, cap: int | None, mode: str = "timestamp", *, backend_cap: int | None = None):
    grounder = NumProGrounder(_NoModel(backend_cap), fps=fps, size=SIZE, max_frames=cap, sampling=mode)
    return grounder.sample(path)


# (clip, fps, sampled frames N, caps): N just under, at and just over each cap, and far from it.
CASES = [
    ("cfr", 1.0, 12, [1, 2, 5, 11, 12, 13]),
    ("cfr", 2.0, 24, [7, 23, 24, 25]),
    ("cfr", 3.0, 36, [8, 35]),
    ("ntsc", 1.0, 13, [4, 12, 13]),
    ("vfr", 4.0, 13, [3, 5]),
    ("vfr", 1.0, 4, [2, 3]),
    ("mkv", 2.0, 6, [2, 5]),
]


@pytest.mark.parametrize("mode", ["timestamp", "reference"])
@pytest.mark.parametrize(("name", "fps", "n", "caps"), CASES)
def test_capped_sample_equals_full_read_then_cap(clips, monkeypatch, name, fps, n, caps, mode):
    full = read_frames(clips[name], fps, SIZE, mode=mode)
    if mode == "timestamp":
        assert len(full[0]) == n
    for cap in caps:
        want = old_sample(clips[name], fps, cap, mode)
        spy = FrameSpy(monkeypatch)
        got = _sample(clips[name], fps, cap, mode)
        assert_same(got, want)
        assert len(got.frames) == min(cap, len(full[0]))
        # One pass where the declared length predicts N within a sample; this VFR mp4 declares 2.4 s and
        # decodes 3.1 s (its last frame lasts as long as the gap before it): 1 sample more at 1 fps (one pass,
        # the band's slack), 3 more at 4 fps (a second pass).
        passes = 2 if (name, fps, mode) == ("vfr", 4.0, "timestamp") else 1
        assert spy.streams == passes, (name, fps, cap)


def test_the_back_ends_cap_applies_too(clips):
    got = _sample(clips["cfr"], 2.0, 10, backend_cap=6)
    assert_same(got, old_sample(clips["cfr"], 2.0, 6))
    # linspace(0, 23, 6).round() = 0, 5, 9, 14, 18, 23 (half to even), at 2 fps
    np.testing.assert_array_equal(got.times, [0.0, 2.5, 4.5, 7.0, 9.0, 11.5])


@pytest.mark.parametrize("mode", ["timestamp", "reference"])
def test_no_declared_duration_takes_a_second_pass_only_when_needed(clips, monkeypatch, mode, caplog):
    path = clips["raw"]
    info = tfvtg.video.probe_video(path)
    assert info.duration is None and info.frame_count is None
    n = len(read_frames(path, 4.0, SIZE, mode=mode)[0])
    assert n > 3
    for cap, passes in [(3, 2), (n - 1, 2), (n, 1), (n + 5, 1)]:
        want = old_sample(path, 4.0, cap, mode)
        spy = FrameSpy(monkeypatch)
        with caplog.at_level("DEBUG", logger="numpro.ground"):
            caplog.clear()
            got = _sample(path, 4.0, cap, mode)
        assert_same(got, want)
        assert spy.streams == passes, cap
        assert ("sampling again" in caplog.text) == (passes == 2)
        assert spy.peak_alive <= cap + 2  # the first pass keeps at most the first cap frames


@pytest.mark.parametrize(("name", "fps", "n", "runs"), [
    # Declares 16 samples at 2 fps. Cap 20: every frame up to 17 kept, so any N up to 17 is served.
    ("truncated", 2.0, 6, [(4, 2), (5, 2), (20, 1)]),
    # Declares 80 samples at 10 fps: about 50 of the 60 candidates for 79-81 come before the end.
    ("truncated90", 10.0, 69, [(30, 2)]),
])
def test_wrong_declared_duration_takes_a_second_pass(clips, monkeypatch, caplog, name, fps, n, runs):
    path = clips[name]
    stream = tfvtg.video.sample_frames(path, fps, SIZE)
    assert sum(1 for _ in stream) == n and stream.info.duration == pytest.approx(8.0)
    for cap, passes in runs:
        want = old_sample(path, fps, cap)
        spy = FrameSpy(monkeypatch)
        with caplog.at_level("DEBUG", logger="numpro.ground"):
            caplog.clear()
            got = _sample(path, fps, cap)
        assert_same(got, want)
        assert spy.streams == passes, cap
        assert spy.peak_alive <= 2 * cap + 2, spy.peak_alive  # the first pass's frames go before the second
        assert ("sampling again" in caplog.text) == (passes == 2)


def test_frames_held_at_once_stay_near_the_cap(clips, monkeypatch):
    path = clips["stream30"]  # 120 samples at 4 fps
    spy = FrameSpy(monkeypatch)
    NumProGrounder(_NoModel(), fps=4.0, size=(32, 32)).sample(path)  # no cap: all read, as before
    assert spy.yielded == 120 and spy.peak_alive == 120
    for cap in (2, 8, 30):
        spy = FrameSpy(monkeypatch)
        got = NumProGrounder(_NoModel(), fps=4.0, size=(32, 32), max_frames=cap).sample(path)
        assert spy.yielded == 120 and spy.streams == 1
        assert len(got.frames) == cap
        assert spy.peak_alive <= 2 * cap + 2, (cap, spy.peak_alive)  # N in [119, 121]: 2 x cap candidates


def test_frames_in_memory_and_no_cap_are_unchanged(clips):
    frames, times, duration = read_frames(clips["cfr"], 1.0, SIZE)
    got = NumProGrounder(_NoModel(), fps=1.0, size=SIZE, max_frames=4).sample(frames, times=times)
    assert got.frames is not None and len(got.frames) == 12  # capped when asked, not here
    assert_same(_sample(clips["cfr"], 1.0, None), SampledVideo(frames, times, duration, clips["cfr"]))


def _chat(server, max_frames=None) -> OpenAIVisionChat:
    return OpenAIVisionChat("test-vlm", base_url=server.base_url, api_key="sk-test", max_retries=0,
                            max_frames=max_frames)


def test_ground_and_highlights_answer_as_before(openai_server, clips):
    """End to end with the real openai client: the streamed sample gives the same requests and spans as the
    full read it replaces (passed in as the SampledVideo the old `sample` returned)."""
    path = clips["cfr"]
    grounder = NumProGrounder(_chat(openai_server), fps=2.0, size=SIZE, max_frames=5, refine=True)
    runs = []
    for video in (path, old_sample(path, 2.0, None)):
        openai_server.requests.clear()
        openai_server.queue("From Frame 1 to Frame 3", "From Frame 1 to Frame 2")
        details = grounder.ground_with_details(video, "a door opens")
        runs.append((details, [r.images() for r in openai_server.requests]))
    (new, new_images), (old, old_images) = runs
    # cap_indices(24, 5) = 0, 6, 12, 17, 23: frames at 0, 3, 6, 8.5, 11.5 s; frames 1-3 span 3 s to 11.5 s.
    assert new.coarse.times.tolist() == old.coarse.times.tolist() == [0.0, 3.0, 6.0, 8.5, 11.5]
    assert [len(images) for images in new_images] == [5, 5]
    assert new_images == old_images  # the same JPEGs, byte for byte
    assert new.used == old.used == "refined"
    assert new.refined.times.tolist() == old.refined.times.tolist()
    assert [(m.start, m.end) for m in new.moments] == [(m.start, m.end) for m in old.moments]
    assert new.meta() == old.meta()

    answer = "The highlight frames are in the 0, 2, 4 frames. Their saliency scores are 1.0, 3.5, 2.0"
    chat_capped = NumProGrounder(_chat(openai_server, max_frames=5), fps=2.0, size=SIZE)  # the back-end's cap
    results = []
    for video in (path, old_sample(path, 2.0, None)):
        openai_server.requests.clear()
        openai_server.queue(answer)
        results.append((chat_capped.highlights(video, "a door opens"), openai_server.requests[0].images()))
    (new_h, new_images), (old_h, old_images) = results
    assert new_images == old_images and len(new_images) == 5
    assert new_h.times.tolist() == old_h.times.tolist() == [0.0, 3.0, 6.0, 8.5, 11.5]
    assert new_h.saliency.tolist() == old_h.saliency.tolist() == [1.0, 0.0, 3.5, 0.0, 2.0]
    assert new_h.duration == old_h.duration == 12.0
