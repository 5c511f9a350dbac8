"""tfvtg.grounder: the Grounder wires encoder, cache, decomposition and pipeline together correctly.

Real code paths throughout: the tiny BLIP-2 checkpoint loaded by `create_encoder`, the real clip cup.mp4
decoded by PyAV, the loopback OpenAI server for the LLM. Expected values come from running the pieces by hand
(encoder similarity -> `ground_with_scores`), so a wiring mistake (wrong curve, timestamps, preset, stride,
decomposition) changes the answer and fails the test.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

import tfvtg
from tfvtg.decompose import Decomposition
from tfvtg.errors import InputError, ModelError, VideoError
from tfvtg.features import VideoFeatures
from tfvtg.grounder import Grounder
from tfvtg.localize import PRESETS
from tfvtg.moment import Moment
from tfvtg.pipeline import ground_with_scores

QUERY = "a hand tilts a black cup sideways"
OTHER = "the cup is moved away from the camera"


class Counting:
    """Wraps an encoder and counts calls to its vision and text sides."""

    def __init__(self, encoder) -> None:
        self.inner = encoder
        self.config = encoder.config
        self.image_calls = 0
        self.text_calls: list[list[str]] = []

    def encode_images(self, frames):
        self.image_calls += 1
        return self.inner.encode_images(frames)

    def encode_texts(self, texts):
        self.text_calls.append(list(texts))
        return self.inner.encode_texts(texts)

    def similarity(self, video_features, text_features):
        return self.inner.similarity(video_features, text_features)


def _grounder(model_dir: Path, tmp_path: Path, encoder=None, **kwargs) -> Grounder:
    g = Grounder(str(model_dir), device="cpu", cache_dir=tmp_path / "cache", progress=False, **kwargs)
    if encoder is not None:
        g._encoder = encoder  # share the session's loaded encoder instead of loading it again
    return g


def _by_hand(encoder, features: VideoFeatures, query: str, decomposition=None, **kwargs) -> list[Moment]:
    """The expected answer: the encoder's own similarity handed to the pipeline directly."""

    def score_fn(text: str) -> np.ndarray:
        return encoder.similarity(features.features, encoder.encode_texts([text]))[0]

    return ground_with_scores(
        score_fn,
        features.duration,
        query,
        decomposition,
        timestamps=features.timestamps,
        mask_threshold=encoder.config.mask_threshold,
        **kwargs,
    )


def assert_same_moments(actual: list[Moment], expected: list[Moment]) -> None:
    """Equal spans and ranks; scores equal up to float noise (batched vs single text encodings: ~1e-7)."""
    assert len(actual) == len(expected) > 0
    for a, e in zip(actual, expected, strict=True):
        assert (a.start, a.end) == pytest.approx((e.start, e.end), abs=1e-9)
        assert a.score == pytest.approx(e.score, rel=1e-5, abs=1e-6)


def test_vlm_only_equals_the_pipeline_on_the_encoders_curve(
    tiny_blip2_dir, tiny_encoder, tiny_features, tmp_path
) -> None:
    features = tiny_features["cup"]
    g = _grounder(tiny_blip2_dir, tmp_path, tiny_encoder)
    result = g.ground_details(features, QUERY, top_k=3)
    expected = _by_hand(tiny_encoder, features, QUERY, preset="charades", top_k=3)
    assert result.moments == expected
    assert result.method == "vlm-only" and result.meta["method"] == "vlm-only"
    assert result.decomposition == Decomposition.single(QUERY)
    assert list(result.curves) == [QUERY]
    np.testing.assert_allclose(
        result.query_curve,
        tiny_encoder.similarity(features.features, tiny_encoder.encode_texts([QUERY]))[0],
        rtol=1e-6,
    )
    assert result.meta["preset"] == "charades"  # auto: 8.1 s <= 60 s
    n_frames = len(features.timestamps)
    assert result.meta["stride_frames"] == min(PRESETS["charades"].stride, n_frames // 2)
    assert result.meta["frames"] == len(features.timestamps)
    assert 0 < len(result.moments) <= 3
    for m in result.moments:
        assert 0.0 <= m.start < m.end <= features.duration + 1e-6


def test_full_flow_with_a_given_decomposition(tiny_blip2_dir, tiny_encoder, tiny_features, tmp_path) -> None:
    features = tiny_features["cup"]
    counting = Counting(tiny_encoder)
    g = _grounder(tiny_blip2_dir, tmp_path, counting)
    decomposition = Decomposition(
        "a man opens a door",
        ("someone opens a door", "a person opens the door"),
        (("a man walks", "a person walks"), ("a door opens",)),
        "sequentially",
        source="llm",
    )
    result = g.ground_details(features, "a man opens a door", top_k=5, decomposition=decomposition)
    assert result.method == "full" and result.decomposition is decomposition
    assert_same_moments(
        result.moments,
        _by_hand(tiny_encoder, features, "a man opens a door", decomposition, preset="charades", top_k=5),
    )
    # Every distinct description encoded once, in one batch.
    assert counting.text_calls == [
        [
            "a man opens a door",
            "someone opens a door",
            "a person opens the door",
            "a man walks",
            "a person walks",
            "a door opens",
        ]
    ]
    assert set(result.curves) == set(counting.text_calls[0])
    # A TFVTG answer dict works as well as a Decomposition.
    answer = decomposition.to_tfvtg()
    again = g.ground_details(features, "a man opens a door", top_k=5, decomposition=answer)
    assert_same_moments(again.moments, result.moments)
    assert len(counting.text_calls) == 1  # all texts were cached
    # The grounded sentence is localised, not the decomposition's own copy of the query.
    other = dataclasses.replace(decomposition, query="an unrelated sentence")
    curves = g.ground_details(features, "a man opens a door", decomposition=other).curves
    assert "an unrelated sentence" not in curves
    assert len(counting.text_calls) == 1


def test_second_query_touches_neither_decoder_nor_vision_model(
    tiny_blip2_dir, tiny_encoder, cup_video, tmp_path, monkeypatch
) -> None:
    import tfvtg.video

    decodes = []
    real_sample = tfvtg.video.sample_frames

    def counting_sample(*args, **kwargs):
        decodes.append(args[0])
        return real_sample(*args, **kwargs)

    monkeypatch.setattr(tfvtg.video, "sample_frames", counting_sample)
    counting = Counting(tiny_encoder)
    g = _grounder(tiny_blip2_dir, tmp_path, counting)
    video = g.encode_video(cup_video)
    assert len(decodes) == 1 and counting.image_calls == 1  # 25 frames, one batch of 32
    first = g.ground(video, QUERY)
    second = g.ground(cup_video, OTHER)  # a path again: the in-memory memo, no decode
    g.ground(video, QUERY)
    assert len(decodes) == 1 and counting.image_calls == 1
    assert counting.text_calls == [[QUERY], [OTHER]]  # each text encoded once
    assert first != second
    # A new Grounder on the same cache directory reads the feature file: still no decoding or vision model.
    fresh = Counting(tiny_encoder)
    g2 = _grounder(tiny_blip2_dir, tmp_path, fresh)
    assert g2.ground(cup_video, QUERY) == first
    assert len(decodes) == 1 and fresh.image_calls == 0
    # Without the disk cache a new Grounder decodes and encodes again.
    g3 = _grounder(tiny_blip2_dir, tmp_path, fresh, use_cache=False)
    assert g3.ground(cup_video, QUERY) == first
    assert len(decodes) == 2 and fresh.image_calls == 1


def test_llm_decomposition_through_the_loopback_server(
    tiny_blip2_dir, tiny_encoder, tiny_features, tmp_path, openai_server
) -> None:
    answer = {
        "reasoning": "two steps",
        "relationship": "sequentially",
        "query_json": [
            {"sub_query_id": 0, "descriptions": ["a man opens a door", "someone opens a door"]},
            {"sub_query_id": 1, "descriptions": ["a man walks"]},
            {"sub_query_id": 2, "descriptions": ["a door opens"]},
        ],
    }
    openai_server.queue(json.dumps(answer))
    features = tiny_features["cup"]
    g = _grounder(tiny_blip2_dir, tmp_path, tiny_encoder, llm="test-llm", llm_base_url=openai_server.base_url)
    assert g.llm_configured
    result = g.ground_details(features, "a man opens a door")
    assert result.method == "full"
    assert result.decomposition.source == "llm" and result.decomposition.relation == "sequentially"
    assert result.decomposition.sub_events == (("a man walks",), ("a door opens",))
    expected = Decomposition.from_tfvtg(answer, "a man opens a door")
    assert_same_moments(
        result.moments,
        _by_hand(tiny_encoder, features, "a man opens a door", expected, preset="charades", top_k=5),
    )
    assert len(openai_server.requests) == 1
    assert openai_server.requests[0].json["model"] == "test-llm"
    # Memoised in the Grounder, and cached on disk for the next one: no second request.
    g.ground(features, "a man opens a door")
    g2 = _grounder(
        tiny_blip2_dir, tmp_path, tiny_encoder, llm="test-llm", llm_base_url=openai_server.base_url
    )
    assert g2.ground_details(features, "a man opens a door").decomposition.source == "cache"
    assert len(openai_server.requests) == 1


def test_llm_without_a_usable_answer_runs_the_full_flow_on_the_plain_query(
    tiny_blip2_dir, tiny_encoder, tiny_features, tmp_path, openai_server
) -> None:
    openai_server.queue("not json", "still not json", "{}")
    features = tiny_features["cup"]
    g = _grounder(tiny_blip2_dir, tmp_path, tiny_encoder, llm="test-llm", llm_base_url=openai_server.base_url)
    result = g.ground_details(features, QUERY)
    assert result.method == "full" and result.decomposition.is_fallback and result.decomposition.note
    # The official fallback: the sentence's top-3 proposals voted (not the VLM-only ranking).
    assert_same_moments(
        result.moments,
        _by_hand(tiny_encoder, features, QUERY, Decomposition.single(QUERY), preset="charades", top_k=5),
    )


def test_no_llm_configured_means_no_request(tiny_blip2_dir, openai_server, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    assert not Grounder(str(tiny_blip2_dir), llm=None).llm_configured
    assert not Grounder(str(tiny_blip2_dir), llm="none").llm_configured
    assert Grounder(str(tiny_blip2_dir), llm="some-model").llm_configured  # endpoint from the environment
    assert openai_server.requests == []


def test_strides_in_seconds_and_presets_at_other_frame_rates(tiny_blip2_dir, tiny_encoder, tmp_path) -> None:
    rng = np.random.default_rng(0)
    t = 60
    features = VideoFeatures(
        rng.normal(size=(t, 8, 16)).astype(np.float16),
        np.arange(t) / 1.5,
        40.0,
        1.5,
        tiny_encoder.config.name,
        (32, 32),
    )
    g = _grounder(tiny_blip2_dir, tmp_path, tiny_encoder, stride_seconds=2.0, max_length_seconds=8.0)
    result = g.ground_details(features, QUERY)
    assert (result.meta["stride_frames"], result.meta["max_stride_frames"]) == (3, 12)  # 2 s, 8 s at 1.5 fps
    assert_same_moments(
        result.moments,
        _by_hand(tiny_encoder, features, QUERY, stride=3, max_stride=12, preset="charades", top_k=5),
    )
    # Preset lengths are 3-fps frame counts: at 1.5 fps the charades stride of 20 frames (6.7 s) becomes 10.
    g = _grounder(tiny_blip2_dir, tmp_path, tiny_encoder)
    assert g.ground_details(features, QUERY).meta["stride_frames"] == 10
    # The reference profile keeps the official frame counts.
    g = _grounder(tiny_blip2_dir, tmp_path, tiny_encoder, profile="reference", preset="activitynet")
    result = g.ground_details(features, QUERY)
    assert result.meta["stride_frames"] == 30 and result.meta["preset"] == "activitynet"  # 40, capped
    assert g.sampling_mode == "reference"


def test_prediction_line_and_one_call_form(
    tiny_blip2_dir, tiny_encoder, cup_video, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("TFVTG_CACHE", str(tmp_path / "cache"))
    g = _grounder(tiny_blip2_dir, tmp_path, tiny_encoder)
    result = g.ground_details(cup_video, QUERY, top_k=2)
    line = result.to_prediction(qid=7, vid="cup")
    assert line["qid"] == 7 and line["vid"] == "cup" and line["query"] == QUERY
    assert line["pred_relevant_windows"] == [
        [round(m.start, 4), round(m.end, 4), round(m.score, 4)] for m in result.moments
    ]
    assert line["decomposition"]["source"] == "fallback" and line["meta"]["method"] == "vlm-only"
    json.dumps(line)  # JSON-ready
    moments = tfvtg.ground(
        cup_video,
        QUERY,
        model=str(tiny_blip2_dir),
        device="cpu",
        top_k=2,
        cache_dir=tmp_path / "cache",
        progress=False,
    )
    assert moments == result.moments


def test_bad_inputs(tiny_blip2_dir, tiny_encoder, tiny_features, tmp_path) -> None:
    g = _grounder(tiny_blip2_dir, tmp_path, tiny_encoder)
    features = tiny_features["cup"]
    with pytest.raises(InputError, match="empty query"):
        g.ground(features, "   ")
    with pytest.raises(InputError, match="top_k"):
        g.ground(features, QUERY, top_k=0)
    with pytest.raises(VideoError, match="not found"):
        g.encode_video(tmp_path / "missing.mp4")
    with pytest.raises(InputError, match="directory"):
        g.encode_video(tmp_path)
    wrong = VideoFeatures(np.zeros((10, 4, 7), np.float16), np.arange(10) / 3, 3.3, 3.0, "other", (8, 8))
    with pytest.raises(InputError, match="another encoder"):
        g.ground(wrong, QUERY)
    with pytest.raises(InputError, match="profile"):
        Grounder(profile="fast")
    with pytest.raises(InputError, match="preset"):
        Grounder(preset="kinetics")
    with pytest.raises(InputError, match="fps"):
        Grounder(fps=0)
    with pytest.raises(InputError, match="at most 1000"):
        Grounder(fps=1e308)  # refused before any decoding (it used to overflow there)
    with pytest.raises(InputError, match="fps must be a positive number, got 'abc'"):
        Grounder(fps="abc")  # not a bare ValueError from float()
    with pytest.raises(InputError, match="stride_seconds must be a positive number, got 'x'"):
        Grounder(stride_seconds="x")
    with pytest.raises(ModelError, match="unknown encoder"):
        _grounder("no-such-model", tmp_path).ground(features, QUERY)


def test_features_from_another_model_are_refused_or_flagged(
    tiny_blip2_dir, tiny_encoder, tiny_features, tmp_path, caplog
) -> None:
    g = _grounder(tiny_blip2_dir, tmp_path, tiny_encoder)
    features = tiny_features["cup"]
    other_size = dataclasses.replace(features, image_size=(224, 224))
    with pytest.raises(InputError, match="image size"):
        g.ground(other_size, QUERY)
    ours = g.encoder.config.name
    relabelled = dataclasses.replace(features, encoder="Salesforce/blip2-itm-vit-g")
    assert os.path.isabs(ours)  # the tiny model is a directory, which may hold the Hub weights: a warning
    with caplog.at_level(logging.WARNING, logger="tfvtg"):
        g.ground(relabelled, QUERY)
    assert "made by encoder 'Salesforce/blip2-itm-vit-g'" in caplog.text
    as_hub_model = copy.copy(tiny_encoder)  # the session's encoder under a Hub id (its own config only)
    as_hub_model.config = dataclasses.replace(tiny_encoder.config, name="Salesforce/blip2-itm-vit-g-coco")
    hub_grounder = _grounder(tiny_blip2_dir, tmp_path, as_hub_model)
    with pytest.raises(InputError, match="different models"):
        hub_grounder.ground(relabelled, QUERY)


def test_curves_against_one_video_are_scored_once(
    tiny_blip2_dir, tiny_encoder, tiny_features, tmp_path
) -> None:
    calls: list[int] = []
    counting = copy.copy(tiny_encoder)

    def similarity(video, texts):
        calls.append(len(texts))
        return tiny_encoder.similarity(video, texts)

    counting.similarity = similarity
    g = _grounder(tiny_blip2_dir, tmp_path, counting)
    features = tiny_features["cup"]
    g.similarity_curves(features, [QUERY, OTHER])  # what tfvtg.evaluate does for each video first
    first = g.ground(features, QUERY)
    g.ground(features, OTHER)
    assert calls == [2]
    assert_same_moments(first, _by_hand(tiny_encoder, features, QUERY, top_k=5, preset="charades"))
    g.ground(tiny_features["bikes"], QUERY)  # another video: scored again
    assert calls == [2, 1]
