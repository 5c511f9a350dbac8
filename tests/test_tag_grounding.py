"""``method="tag"`` through the pipeline, the Grounder and the console script, on the tiny BLIP-2 and a real
clip: the winning-token features TAG pools, its vote as the answer, the LLM flow around it, and the method in
every result's meta."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfvtg import tag
from tfvtg.cli import main
from tfvtg.combine import vote
from tfvtg.decompose import Decomposition
from tfvtg.errors import InputError
from tfvtg.grounder import Grounder
from tfvtg.pipeline import ground_with_scores, proposals_to_seconds

QUERY = "a hand tilts a black cup sideways"


@pytest.fixture(scope="module")
def tag_grounder(tiny_blip2_dir, tiny_encoder) -> Grounder:
    g = Grounder(str(tiny_blip2_dir), device="cpu", method="tag", progress=False, use_cache=False)
    g._encoder = tiny_encoder  # the session's tiny model, loaded once through create_encoder
    return g


def _winning_features(encoder, features, text: str) -> np.ndarray:
    """Each frame's token with the highest cosine to the text, computed here from scratch."""
    tokens = np.asarray(features.features, np.float32)
    text_feature = np.asarray(encoder.encode_texts([text]), np.float32)[0]
    unit = tokens / np.linalg.norm(tokens, axis=-1, keepdims=True)
    cosine = unit @ (text_feature / np.linalg.norm(text_feature))
    return tokens[np.arange(len(tokens)), cosine.argmax(axis=1)]


def test_grounder_runs_tag_on_the_winning_tokens(tag_grounder, tiny_encoder, tiny_features) -> None:
    video = tiny_features["cup"]
    result = tag_grounder.ground_details(video, QUERY, top_k=3)
    assert result.meta["localizer"] == "tag" and result.meta["method"] == "vlm-only"
    winners = _winning_features(tiny_encoder, video, QUERY)
    np.testing.assert_allclose(tag_grounder.winning_token_features(video, QUERY), winners, rtol=1e-6)
    config = tiny_encoder.config
    props = tag.localize(result.query_curve, winners, video.duration, preset=result.meta["preset"],
                         temporal_coherence=config.tag_temporal_coherence, profile="default",
                         mask_threshold=config.tag_mask_threshold)
    top = proposals_to_seconds(props, video.duration, video.timestamps)[0]
    assert (result.moments[0].start, result.moments[0].end) == pytest.approx((top[0], top[1]))
    assert result.mask_threshold == config.tag_mask_threshold
    assert all(0 <= m.start < m.end <= video.duration for m in result.moments)
    assert [m.score for m in result.moments] == sorted((m.score for m in result.moments), reverse=True)


def test_reference_profile_grounds_with_tag(tiny_blip2_dir, tiny_encoder, tiny_features) -> None:
    g = Grounder(str(tiny_blip2_dir), device="cpu", method="tag", profile="reference", progress=False,
                 use_cache=False)
    g._encoder = tiny_encoder
    result = g.ground_details(tiny_features["bikes"], "a cyclist rides behind a van", top_k=3)
    assert result.meta["localizer"] == "tag" and result.meta["profile"] == "reference"
    duration = tiny_features["bikes"].duration
    assert result.moments and all(0 <= m.start < m.end <= duration for m in result.moments)


def test_tag_with_a_decomposition_runs_the_llm_flow_around_it(tag_grounder, tiny_features) -> None:
    decomposition = Decomposition.from_tfvtg({
        "relationship": "sequentially",
        "query_json": [
            {"sub_query_id": 0, "descriptions": ["a hand tilts a cup", "someone tips a black cup"]},
            {"sub_query_id": 1, "descriptions": ["a hand holds a cup"]},
            {"sub_query_id": 2, "descriptions": ["the cup is tilted sideways"]},
        ],
    }, QUERY)
    result = tag_grounder.ground_details(tiny_features["cup"], QUERY, decomposition=decomposition)
    assert result.method == "full" and result.meta["localizer"] == "tag"
    texts = {QUERY, "a hand tilts a cup", "someone tips a black cup", "a hand holds a cup",
             "the cup is tilted sideways"}
    assert set(result.curves) == texts
    duration = tiny_features["cup"].duration
    assert result.moments and all(0 <= m.start < m.end <= duration for m in result.moments)


def test_pipeline_vlm_only_answer_is_tags_vote() -> None:
    rng = np.random.default_rng(0)
    curve = (0.18 + np.convolve(rng.normal(0, 0.05, 100), np.ones(5) / 5, "same")).astype(np.float32)
    feats = np.repeat(rng.normal(size=(4, 8)), 25, axis=0) + rng.normal(0, 0.1, (100, 8))
    for coherence, threshold in ((True, 0.2), (False, 0.0)):  # BLIP-2's settings, CLIP-like ones
        moments = ground_with_scores(lambda _: curve, 50.0, "q", method="tag",
                                     frame_features_fn=lambda _: feats, temporal_coherence=coherence,
                                     mask_threshold=threshold)
        props = tag.localize(curve, feats, 50.0, temporal_coherence=coherence, mask_threshold=threshold,
                             vote_rank=False)
        ranked, votes = vote(proposals_to_seconds(props, 50.0))
        top = moments[0]
        assert (top.start, top.end, top.score) == pytest.approx((ranked[0, 0], ranked[0, 1], votes[0]))
        voted = tag.localize(curve, feats, 50.0, temporal_coherence=coherence, mask_threshold=threshold)
        assert (voted.start[0] * 50.0, voted.end[0] * 50.0) == pytest.approx((top.start, top.end))


def test_bad_method_settings_are_input_errors(tiny_blip2_dir) -> None:
    with pytest.raises(InputError, match="unknown method 'tga'"):
        Grounder(str(tiny_blip2_dir), method="tga")
    with pytest.raises(InputError, match="no configuration for preset 'qvhighlights'"):
        Grounder(str(tiny_blip2_dir), method="tag", preset="qvhighlights")
    with pytest.raises(InputError, match="TAG proposes spans"):
        Grounder(str(tiny_blip2_dir), method="tag", stride_seconds=2.0)
    with pytest.raises(InputError, match="frame_features_fn"):
        ground_with_scores(lambda _: np.zeros(10), 5.0, "q", method="tag")


def test_cli_ground_plot_and_evaluate_with_method_tag(
    tiny_blip2_dir, tiny_encoder, tiny_features, tiny_features_dir, cup_video, clip_queries, tmp_path, capsys,
    monkeypatch,
) -> None:
    monkeypatch.setenv("TFVTG_CACHE", str(tmp_path / "cache"))
    model = ["--model", str(tiny_blip2_dir), "--device", "cpu"]
    assert main(["ground", str(cup_video), QUERY, "--method", "tag", "--json", "--top-k", "3", *model]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["meta"]["localizer"] == "tag" and line["meta"]["method"] == "vlm-only"
    g = Grounder(str(tiny_blip2_dir), device="cpu", method="tag", progress=False, use_cache=False)
    g._encoder = tiny_encoder
    expected = g.ground(tiny_features["cup"], QUERY, top_k=3)
    np.testing.assert_allclose(line["pred_relevant_windows"], [m.to_list() for m in expected], atol=1e-4)

    figure = tmp_path / "tag.png"
    assert main(["plot", str(cup_video), QUERY, "--method", "tag", "--out", str(figure), *model]) == 0
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()

    records = {vid: {"duration": round(tiny_features[vid].duration, 2),
                     "timestamps": [q["spans"][0] for q in qs], "sentences": [q["query"] for q in qs]}
               for vid, qs in clip_queries.items()}
    annotations = tmp_path / "clips.json"
    annotations.write_text(json.dumps(records))
    preds = tmp_path / "preds.jsonl"
    args = ["evaluate", "--dataset", "charades-sta", "--annotations", str(annotations), "--features",
            str(tiny_features_dir), "--model", str(tiny_blip2_dir), "--device", "cpu", "--out", str(preds)]
    assert main([*args, "--method", "tag", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["localizer"] == "tag" and summary["method"] == "vlm-only" and summary["queries"] == 11
    written = [json.loads(line) for line in preds.read_text().splitlines()]
    assert {p["localizer"] for p in written} == {"tag"}
    cup = next(p for p in written if p["vid"] == "cup" and p["query"] == QUERY)
    top = [expected[0].start, expected[0].end]
    np.testing.assert_allclose(cup["pred_relevant_windows"][0][:2], top, atol=1e-4)
    assert main([*args, "--method", "tfvtg", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["localizer"] == "tfvtg"
    assert main([*args, "--method", "nope"]) == 2  # click's usage error
