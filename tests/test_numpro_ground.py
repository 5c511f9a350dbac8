"""numpro.ground and numpro.mllm end to end: synthetic videos, the real openai client, a loopback server."""

from __future__ import annotations

import base64
import io
import math
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from numpro.ground import NumProGrounder
from numpro.mllm import OpenAIVisionChat, cap_indices, create_mllm
from tests.fixtures.openai_server import Reply
from tests.fixtures.videos import VFR_TIMES
from tfvtg.errors import InputError, LLMError

SECRET = "sk-test-secret-4242"


def _chat(server, **kw) -> OpenAIVisionChat:
    kw.setdefault("max_retries", 0)
    return OpenAIVisionChat("test-vlm", base_url=server.base_url, api_key=SECRET, **kw)


def _decode(url: str) -> np.ndarray:
    header, data = url.split(",", 1)
    assert header in ("data:image/jpeg;base64", "data:image/png;base64")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))


def _sampled(times: np.ndarray, fps: float, duration: float) -> np.ndarray:
    """Expected sample times: for each k / fps before the end, the latest frame at or before it."""
    targets = np.arange(0, duration - 1e-9, 1 / fps)
    return np.array([times[np.searchsorted(times, t + 1e-9, side="right") - 1] for t in targets])


@pytest.fixture(scope="module")
def ntsc_long(tmp_path_factory):
    """12.012 s at 30000/1001 fps (360 frames): 1 fps sampling lands between source frames."""
    from tests.fixtures.videos import make_video

    return make_video(tmp_path_factory.mktemp("numpro") / "ntsc12.mp4", n_frames=360,
                      fps=Fraction(30000, 1001), size=(48, 64))


@pytest.fixture(scope="module")
def cfr12(tmp_path_factory):
    """12 s at 10 fps."""
    from tests.fixtures.videos import make_video

    return make_video(tmp_path_factory.mktemp("numpro") / "cfr12.mp4", n_frames=120, fps=10, size=(48, 64))


def test_openai_backend_on_ntsc_video_maps_frames_to_real_seconds(openai_server, ntsc_long):
    openai_server.queue("From Frame 3 to Frame 10")
    grounder = NumProGrounder(_chat(openai_server), fps=1.0)
    details = grounder.ground_with_details(ntsc_long, "a person opens a door.")
    duration = 360 * 1001 / 30000
    expected_times = _sampled(ntsc_long.times, 1.0, duration)
    assert len(expected_times) == 13  # targets 0, 1, ..., 12 s before the 12.012 s end
    np.testing.assert_allclose(details.coarse.times, expected_times, atol=1e-6)
    # Frame 3 starts at source frame 89 (2.9696 s), not 3.0; frame 10 ends where frame 11 starts (10.9763 s).
    (moment,) = details.moments
    assert moment.start == pytest.approx(89 * 1001 / 30000, abs=1e-6)
    assert moment.end == pytest.approx(329 * 1001 / 30000, abs=1e-6)
    assert moment.score == 1.0

    (request,) = openai_server.requests
    images = request.images()
    assert len(images) == 13
    parts = request.messages[0]["content"]
    assert [p["type"] for p in parts] == ["image_url"] * 13 + ["text"]  # video first, then the question
    assert all(p["image_url"]["detail"] == "low" for p in parts[:-1])
    assert request.json["temperature"] == 0
    text = parts[-1]["text"]
    assert "red number" in text and "a person opens a door?" in text and "From Frame x to Frame y" in text
    # The frames are 336x336 with a red number in the bottom-right corner.
    frame = _decode(images[7])
    assert frame.shape == (336, 336, 3)
    corner = frame[290:, 280:].astype(int)
    assert ((corner[..., 0] > 200) & (corner[..., 1] < 60) & (corner[..., 2] < 60)).sum() > 150
    assert request.headers["authorization"] == f"Bearer {SECRET}"


def test_variable_frame_rate_video_uses_real_timestamps(openai_server, vfr_video):
    openai_server.queue("From Frame 1 to Frame 2")
    grounder = NumProGrounder(_chat(openai_server, image_format="png"), fps=2.0, size=(64, 64))
    details = grounder.ground_with_details(vfr_video, "anything")
    times = details.coarse.times
    np.testing.assert_allclose(times, _sampled(np.array(VFR_TIMES), 2.0, details.duration), atol=1e-4)
    assert times[1] == pytest.approx(0.31, abs=1e-4)  # target 0.5 s -> the frame shown since 0.31 s
    (moment,) = details.moments
    assert (moment.start, moment.end) == pytest.approx((times[1], times[3]), abs=1e-6)
    assert openai_server.requests[0].images()[0].startswith("data:image/png;base64,")


def test_frame_start_end_and_multiple_spans(openai_server, cfr12):
    openai_server.queue("From Frame 2 to Frame 4, and also from frame 8 to frame 9.")
    grounder = NumProGrounder(_chat(openai_server), end="frame_start", size=(48, 64))
    moments = grounder.ground(cfr12, "x", top_k=5)
    assert [(m.start, m.end) for m in moments] == [(2.0, 4.0), (8.0, 9.0)]
    assert [m.score for m in moments] == [1.0, 0.5]


def test_frame_cap_subsamples_before_numbering(openai_server, cfr12):
    openai_server.queue("From Frame 1 to Frame 2")
    grounder = NumProGrounder(_chat(openai_server, max_frames=4), size=(48, 64))
    details = grounder.ground_with_details(cfr12, "x")
    assert len(openai_server.requests[0].images()) == 4
    np.testing.assert_allclose(details.coarse.times, [0.0, 4.0, 7.0, 11.0], atol=1e-6)  # frames 0, 4, 7, 11
    (moment,) = details.moments
    assert (moment.start, moment.end) == pytest.approx((4.0, 11.0))
    np.testing.assert_array_equal(cap_indices(12, 4), [0, 4, 7, 11])
    np.testing.assert_array_equal(cap_indices(3, 4), [0, 1, 2])


def test_refine_asks_again_at_a_higher_rate_and_maps_back(openai_server, cfr12):
    openai_server.queue("From Frame 3 to Frame 5", "From Frame 2 to Frame 6")
    grounder = NumProGrounder(_chat(openai_server), refine=True, size=(48, 64))
    details = grounder.ground_with_details(cfr12, "x")
    # Coarse (3.0, 6.0) s; margin max(2 / fps, 0.25 * 3 s) = 2 s -> window [1, 8) sampled at 4 fps: 28 frames.
    first, second = openai_server.requests
    assert len(first.images()) == 12 and len(second.images()) == 28
    refined = details.refined
    assert details.used == "refined" and refined.window == (1.0, 8.0)
    expected = np.array([math.floor((1.0 + j / 4) * 10 + 1e-6) / 10 for j in range(28)])
    np.testing.assert_allclose(refined.times, expected, atol=1e-6)
    (moment,) = details.moments
    assert (moment.start, moment.end) == pytest.approx((1.5, 2.7))  # frames 2..6 -> 1.5 s to frame 7's 2.7 s
    assert details.meta()["refined"]["n_frames"] == 28


def test_refine_keeps_the_first_answer_when_the_second_is_unreadable(openai_server, cfr12):
    openai_server.queue("From Frame 3 to Frame 5", "Sorry, I cannot tell.")
    grounder = NumProGrounder(_chat(openai_server), refine=True, size=(48, 64))
    details = grounder.ground_with_details(cfr12, "x")
    assert details.used == "coarse" and not details.refined.parsed.ok
    assert [(m.start, m.end) for m in details.moments] == [(3.0, 6.0)]


def test_timestamps_as_text_interleaves_labels_and_reads_seconds(openai_server, cfr12):
    openai_server.queue("From second 3.0 to second 5.0")
    grounder = NumProGrounder(_chat(openai_server), timestamps_as_text=True, size=(48, 64))
    details = grounder.ground_with_details(cfr12, "x")
    parts = openai_server.requests[0].messages[0]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url"] * 12 + ["text"]
    assert [p["text"] for p in parts[:-1:2]][:3] == ["Second 0.0", "Second 1.0", "Second 2.0"]
    assert "seconds" in parts[-1]["text"] and "red number" not in parts[-1]["text"]
    frame = _decode(parts[1]["image_url"]["url"]).astype(int)
    corner = frame[24:, 32:]  # (the clip's own red marker is bottom-left)
    assert (corner[..., 0] - corner[..., 1]).max() < 60  # no red number drawn
    (moment,) = details.moments
    assert (moment.start, moment.end) == (3.0, 6.0)  # "second 5.0" names the frame covering [5, 6)


def test_frames_in_memory_are_copied_not_drawn_on(openai_server):
    openai_server.queue("frames 1-2")
    frames = np.zeros((5, 336, 336, 3), np.uint8)
    grounder = NumProGrounder(_chat(openai_server), fps=0.5)
    moments = grounder.ground(frames, "x", times=[0, 2, 4, 6, 8], duration=9.5)
    assert frames.max() == 0
    assert [(m.start, m.end) for m in moments] == [(2.0, 6.0)]
    openai_server.queue("From Frame 4 to Frame 4")
    assert [(m.start, m.end) for m in grounder.ground(frames, "x", times=[0, 2, 4, 6, 8], duration=9.5)] == [
        (8.0, 9.5)]  # the last frame ends at the video's duration


def test_unreadable_answer_gives_no_moment_and_a_reason(openai_server):
    openai_server.queue("No such moment.")
    grounder = NumProGrounder(_chat(openai_server))
    details = grounder.ground_with_details(np.zeros((4, 32, 32, 3), np.uint8), "x")
    assert details.moments == [] and not details.ok
    assert details.meta()["coarse"]["parse"]["reason"] == "no frame span found in the answer"


def test_highlights(openai_server):
    openai_server.queue("The highlight frames are in the 1, 2 frames. Their saliency scores are 3.5, 4.0.")
    grounder = NumProGrounder(_chat(openai_server), fps=0.5)
    result = grounder.highlights(np.zeros((4, 64, 64, 3), np.uint8), "x")
    np.testing.assert_allclose(result.saliency, [0, 3.5, 4.0, 0])
    np.testing.assert_allclose(result.times, [0, 2, 4, 6])
    assert "saliency score" in openai_server.requests[0].text()


def test_server_error_is_an_llm_error_without_the_key(openai_server):
    openai_server.queue(Reply(status=500, body={"error": {"message": "boom"}}))
    grounder = NumProGrounder(_chat(openai_server))
    with pytest.raises(LLMError) as info:
        grounder.ground(np.zeros((3, 32, 32, 3), np.uint8), "x")
    assert "HTTP 500" in str(info.value) and SECRET not in str(info.value)


def test_backend_refuses_more_frames_than_its_cap(openai_server):
    chat = _chat(openai_server, max_frames=2)
    with pytest.raises(InputError, match="exceed the cap"):
        chat.answer([np.zeros((8, 8, 3), np.uint8)] * 3, "q")
    assert openai_server.requests == []


def test_create_mllm(monkeypatch, openai_server):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(LLMError, match="no API key"):
        create_mllm("gpt-4o")
    with pytest.raises(InputError):
        create_mllm("  ")
    with pytest.raises(InputError, match="checkpoint"):
        create_mllm("qwen2-vl:")
    with pytest.raises(InputError, match="detail"):
        create_mllm("m", base_url=openai_server.base_url, detail="ultra")
    mllm = create_mllm("served-model", base_url=openai_server.base_url, detail="high", max_frames=8)
    assert isinstance(mllm, OpenAIVisionChat) and mllm.name == "served-model" and mllm.max_frames == 8
    assert SECRET not in repr(mllm)


def test_create_mllm_dispatches_qwen2_vl(tiny_qwen2vl_dir):
    from numpro.qwen2vl import Qwen2VLBackend

    mllm = create_mllm(f"qwen2-vl:{tiny_qwen2vl_dir}", device="cpu", max_new_tokens=4)
    assert isinstance(mllm, Qwen2VLBackend)


def test_bad_arguments(openai_server):
    chat = _chat(openai_server)
    with pytest.raises(InputError, match="query is empty"):
        NumProGrounder(chat).ground(np.zeros((2, 8, 8, 3), np.uint8), "  ")
    with pytest.raises(InputError):
        NumProGrounder(chat, fps=0)
    with pytest.raises(InputError, match="end mode"):
        NumProGrounder(chat, end="middle")
    with pytest.raises(InputError, match="times"):
        NumProGrounder(chat).ground(np.zeros((2, 8, 8, 3), np.uint8), "x", times=[0.0])
    from tfvtg.errors import VideoError

    with pytest.raises(VideoError):
        NumProGrounder(chat).ground("/nonexistent/video.mp4", "x")


def test_real_clip(openai_server, shared_videos):
    from tfvtg.video import read_frames

    openai_server.queue("From Frame 2 to Frame 4.")
    grounder = NumProGrounder(_chat(openai_server))
    details = grounder.ground_with_details(shared_videos / "cup.mp4", "a hand lifts a cup")
    _, times, duration = read_frames(shared_videos / "cup.mp4", 1.0, (336, 336))
    np.testing.assert_allclose(details.coarse.times, times)
    assert len(openai_server.requests[0].images()) == len(times) == math.ceil(duration)
    (moment,) = details.moments
    assert (moment.start, moment.end) == (times[2], times[5])
