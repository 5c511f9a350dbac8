"""numpro.parse: answers -> frame spans / seconds / saliency, and frame numbers -> seconds."""

from __future__ import annotations

import numpy as np
import pytest

from numpro.parse import FrameIndex, ParseError, parse_answer, parse_highlights, parse_time_answer

# (answer, n_frames, expected spans, swapped, clamped)
ANSWERS = [
    ("From Frame 3 to Frame 10", 30, [(3, 10)], False, False),
    ("From Frame 3 to Frame 10.", 30, [(3, 10)], False, False),
    ("from 3 to 10", 30, [(3, 10)], False, False),
    ("from frame3 to frame 10", 30, [(3, 10)], False, False),
    ("Frames 3-10", 30, [(3, 10)], False, False),
    ("frame 3 \u2013 frame 10", 30, [(3, 10)], False, False),
    ("frame 3 \u2014 10", 30, [(3, 10)], False, False),
    ("Between 3 and 10.", 30, [(3, 10)], False, False),
    ("between frame 3 and frame 10", 30, [(3, 10)], False, False),
    ("3 to 10", 30, [(3, 10)], False, False),
    ("3.5 to 10", 30, [(3.5, 10)], False, False),
    ("From Frame 3.5 to Frame 9.5", 30, [(3.5, 9.5)], False, False),
    ("[3, 10]", 30, [(3, 10)], False, False),
    ("Frames 12 through 18 show the person opening the door.", 30, [(12, 18)], False, False),
    ("The moment occurs in frames 12 to 18 of the video.", 30, [(12, 18)], False, False),
    ("**From Frame 12 to Frame 18**", 30, [(12, 18)], False, False),
    ("Based on the red numbers on each frame, the person is seen holding a phone from approximately Frame 4 "
     "to Frame 9, where they lift it to their ear. Before frame 4 the phone is on the table.", 30, [(4, 9)],
     False, False),
    ("The person opens the door during frames 5\u20138 and again from frame 20 to frame 23.", 30,
     [(5, 8), (20, 23)], False, False),
    ("From Frame 10 to Frame 3", 30, [(3, 10)], True, False),
    ("from frame 000 to frame 980", 19, [(0, 18)], False, True),
    ("From Frame 15 to Frame 40", 30, [(15, 29)], False, True),
    ("The action happens at frame 7.", 30, [(7, 7)], False, False),
    ("Frame number 7 to frame number 11", 30, [(7, 11)], False, False),
    ("The video has 30 frames. The person sits down from frame 21 to frame 26.", 30, [(21, 26)], False,
     False),
    ("From frame 2 to frame 6, and from frame 2 to frame 6 again.", 30, [(2, 6)], False, False),
    ("Answer: 0 - 4", 30, [(0, 4)], False, False),
    ("Frame #12 to Frame #18", 30, [(12, 18)], False, False),
    ("From the 4th frame to the 9th frame.", 30, [(4, 9)], False, False),
    ("It starts at frame 4 and ends at frame 9.", 30, [(4, 9)], False, False),
    ("Start: Frame 4, End: Frame 9", 30, [(4, 9)], False, False),
    ("The dog keeps running from frame 12 to the end of the video.", 20, [(12, 19)], False, False),
    ("Frames 4, 5, 6, 10 and 11 show the dog.", 30, [(4, 6), (10, 11)], False, False),
    ("Frames 4 to 9 (approximately 4-9 seconds)", 30, [(4, 9)], False, False),
]

FAILURES = [
    ("No such moment.", 30, "no frame span"),
    ("I'm sorry, but I cannot determine when the person laughs in this video.", 30, "no frame span"),
    ("", 30, "no frame span"),
    ("From Frame 40 to Frame 50", 30, "outside frames 0-29"),
    ("The person is not visible in any of the frames.", 30, "no frame span"),
]


@pytest.mark.parametrize(("text", "n", "spans", "swapped", "clamped"), ANSWERS)
def test_parse_answer_table(text, n, spans, swapped, clamped):
    parsed = parse_answer(text, n)
    assert parsed.ok, parsed.reason
    assert parsed.reason is None
    assert [tuple(s) for s in parsed.spans] == [tuple(map(float, s)) for s in spans]
    assert parsed.swapped is swapped
    assert parsed.clamped is clamped
    assert parsed.text == text


@pytest.mark.parametrize(("text", "n", "reason"), FAILURES)
def test_parse_answer_failures_are_explicit(text, n, reason):
    parsed = parse_answer(text, n)
    assert not parsed.ok
    assert parsed.spans == ()
    assert reason in parsed.reason


def test_out_of_range_span_is_reported_as_dropped():
    parsed = parse_answer("From Frame 2 to Frame 5 and from frame 40 to frame 45", 30)
    assert parsed.spans == ((2.0, 5.0),)
    assert parsed.dropped == ((40.0, 45.0),)
    assert parsed.to_dict()["dropped"] == [[40.0, 45.0]]


@pytest.mark.parametrize(("text", "spans"), [
    ("From second 12 to second 20", [(12, 20)]),
    ("12.0 to 20.0", [(12, 20)]),
    ("The person jumps from 12.5s to 20s.", [(12.5, 20)]),
    ("Second 12.0 - Second 20.0", [(12, 20)]),
    ("from 0:12 to 0:20", [(12, 20)]),
    ("between 1:05 and 1:10.5", [(65, 70.5)]),
    ("From 95 seconds to 30 seconds", [(30, 90)]),  # swapped, then clamped to the 90 s duration
])
def test_parse_time_answer(text, spans):
    parsed = parse_time_answer(text, 90.0)
    assert parsed.ok, parsed.reason
    assert [tuple(s) for s in parsed.spans] == [tuple(map(float, s)) for s in spans]


def test_parse_time_answer_failure():
    parsed = parse_time_answer("It never happens.", 90.0)
    assert not parsed.ok and "no second span" in parsed.reason


def test_parse_highlights_paper_format():
    text = "The highlight frames are in the 3, 4, 5, 9 frames. Their saliency scores are 1.3, 1.5, 2.6, 4.0."
    saliency = parse_highlights(text, 12)
    expected = np.zeros(12)
    expected[[3, 4, 5, 9]] = [1.3, 1.5, 2.6, 4.0]
    np.testing.assert_allclose(saliency, expected)


def test_parse_highlights_list_before_the_word_frames():
    text = "The highlight timestamps are in the 0, 2, 4 frames. Their saliency scores are 3, 2.5, 1."
    np.testing.assert_allclose(parse_highlights(text, 6), [3, 0, 2.5, 0, 1, 0])


def test_parse_highlights_ranges_out_of_range_and_length_mismatch():
    text = "Highlight frames: 2-4, 30. Scores: 2, 3, 4, 5, 1.5"
    saliency = parse_highlights(text, 10)  # frame 30 does not exist; the 5th score has no frame
    expected = np.zeros(10)
    expected[[2, 3, 4]] = [2, 3, 4]
    np.testing.assert_allclose(saliency, expected)


def test_parse_highlights_interleaved_pairs():
    text = "Frame 1: score 2.5. Frame 3 (saliency score 4). Frame 7 with a score of 1."
    np.testing.assert_allclose(parse_highlights(text, 8), [0, 2.5, 0, 4, 0, 0, 0, 1])


@pytest.mark.parametrize("text", ["No highlights.", "The highlight frames are 1, 2, 3.", "Scores are 1, 2."])
def test_parse_highlights_failure(text):
    with pytest.raises(ParseError):
        parse_highlights(text, 10)


def test_frame_index_next_frame_end_uses_real_timestamps():
    # Irregular sampling (e.g. a variable-frame-rate file): frame times are not i / fps.
    index = FrameIndex([0.0, 0.9, 2.1, 3.0], end_time=3.7)
    assert index.span_to_seconds(1, 2) == (0.9, 3.0)
    assert index.span_to_seconds(2, 3) == (2.1, 3.7)  # the last frame ends at the video's end
    assert index.span_to_seconds(0, 0) == (0.0, 0.9)
    assert index.span_to_seconds(1.5, 2) == pytest.approx((1.5, 3.0))  # halfway between 0.9 and 2.1
    assert index.number_of(2.0) == 1 and index.number_of(99) == 3 and index.number_of(-1) == 0


def test_frame_index_frame_start_end_is_the_reference_mapping():
    index = FrameIndex([0.0, 2.0, 4.0, 6.0], end_time=7.0, end="frame_start")
    assert index.span_to_seconds(1, 3) == (2.0, 6.0)
    assert index.span_to_seconds(2, 2) == (4.0, 4.0)


def test_frame_index_rejects_bad_input():
    from tfvtg.errors import InputError

    with pytest.raises(InputError):
        FrameIndex([], 1.0)
    with pytest.raises(InputError):
        FrameIndex([1.0, 0.5], 2.0)
    with pytest.raises(InputError):
        FrameIndex([0.0], 1.0, end="middle")


def test_random_answers_never_crash_and_stay_in_range():
    tokens = ["from", "to", "frame", "frames", "the", "between", "and", "-", "\u2013", ",", ".", "3", "10",
              "0", "4.5", "999", "second", "s", "end", "start", "at", "1:05", "th", "[", "]", "#",
              "scores", "no"]
    rng = np.random.default_rng(0)
    for _ in range(500):
        text = " ".join(rng.choice(tokens, size=rng.integers(1, 14)))
        parsed = parse_answer(text, 12)
        assert parsed.ok == bool(parsed.spans) and (parsed.reason is None) == parsed.ok
        assert all(0 <= s <= e <= 11 for s, e in parsed.spans), text
        timed = parse_time_answer(text, 30.0)
        assert all(0 <= s <= e <= 30.0 for s, e in timed.spans), text
        try:
            saliency = parse_highlights(text, 12)
        except ParseError:
            continue
        assert saliency.shape == (12,) and np.all(saliency >= 0)
