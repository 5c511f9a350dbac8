"""tfvtg.evaluate: benchmark runs from feature files give the pipeline's answers and the right metrics.

Small annotation files are written in the real formats (TFVTG JSON with and without ``response``,
QVHighlights JSON lines) for the three real clips; features are the tiny BLIP-2's, as `.safetensors` and as
official `.npy`.
Expected predictions are computed by hand from the encoder's similarity and `ground_with_scores`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from tfvtg.decompose import Decomposition
from tfvtg.errors import InputError
from tfvtg.evaluate import clip_saliency, evaluate
from tfvtg.grounder import Grounder
from tfvtg.metrics import grounding_metrics
from tfvtg.pipeline import ground_with_scores

SEQUENTIAL = {
    "reasoning": "two steps",
    "relationship": "sequentially",
    "query_json": [
        {"sub_query_id": 0, "descriptions": ["a cyclist rides behind a van", "a biker follows a van"]},
        {"sub_query_id": 1, "descriptions": ["a van drives"]},
        {"sub_query_id": 2, "descriptions": ["a cyclist rides"]},
    ],
}


def _charades_annotations(clip_queries, durations) -> dict:
    return {
        vid: {
            "duration": durations[vid],
            "timestamps": [q["spans"][0] for q in queries],
            "sentences": [q["query"] for q in queries],
        }
        for vid, queries in clip_queries.items()
    }


@pytest.fixture(scope="module")
def annotation_file(tmp_path_factory, clip_queries, tiny_features) -> Path:
    durations = {vid: round(f.duration, 2) for vid, f in tiny_features.items()}
    path = tmp_path_factory.mktemp("ann") / "clips_test.json"
    path.write_text(json.dumps(_charades_annotations(clip_queries, durations)))
    return path


def _score_fn(encoder, features: np.ndarray):
    def score_fn(text: str) -> np.ndarray:
        return encoder.similarity(features, encoder.encode_texts([text]))[0]

    return score_fn


def _expected_top1(encoder, feats, duration, query, decomposition=None, **kwargs) -> list[float]:
    moments = ground_with_scores(
        _score_fn(encoder, feats.features),
        duration,
        query,
        decomposition,
        preset="charades",
        mask_threshold=encoder.config.mask_threshold,
        **kwargs,
    )
    return [moments[0].start, moments[0].end]


def test_clip_saliency_hand_computed() -> None:
    times = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 6.0, 6.5])
    curve = np.array([1.0, 3.0, 5.0, 7.0, 2.0, 4.0, 8.0, 6.0])
    # Clips of 2 s over 7.1 s: [0,2) -> mean(1,3,5,7)=4, [2,4) -> mean(2,4)=3, [4,6) empty -> curve at 5 s
    # interpolated between (2.5, 4) and (6, 8): 4 + 4 * 2.5 / 3.5, [6,8) -> mean(8,6)=7.
    np.testing.assert_allclose(clip_saliency(curve, times, 7.1), [4.0, 3.0, 4.0 + 4.0 * 2.5 / 3.5, 7.0])
    assert len(clip_saliency(np.zeros(450), np.arange(450) / 3.0, 150.0)) == 75  # QVHighlights: 75 clips
    with pytest.raises(InputError):
        clip_saliency(np.zeros(3), np.zeros(4), 2.0)


def test_vlm_only_run_from_extracted_features(
    annotation_file, tiny_blip2_dir, tiny_encoder, tiny_features, tiny_features_dir, clip_queries
) -> None:
    seen = []
    report = evaluate(
        "charades-sta",
        annotation_file,
        tiny_features_dir,
        model=str(tiny_blip2_dir),
        device="cpu",
        progress=False,
        on_prediction=seen.append,
    )
    n = sum(len(q) for q in clip_queries.values())
    assert (report.n_queries, report.n_videos, report.method) == (n, 3, "vlm-only")
    assert seen == report.predictions and report.skipped_queries == 0
    annotations = json.loads(annotation_file.read_text())
    tops, gts = [], []
    for pred in report.predictions:
        vid, index = pred["qid"].split("#")
        record = annotations[vid]
        query = record["sentences"][int(index)]
        assert pred["vid"] == vid and pred["query"] == query and pred["method"] == "vlm-only"
        assert 1 <= len(pred["pred_relevant_windows"]) <= 5
        expected = _expected_top1(
            tiny_encoder,
            tiny_features[vid],
            record["duration"],
            query,
            timestamps=tiny_features[vid].timestamps,
        )
        assert pred["pred_relevant_windows"][0][:2] == pytest.approx(expected, abs=1e-4)
        tops.append(pred["pred_relevant_windows"][0][:2])
        gts.append(record["timestamps"][int(index)])
    assert report.metrics == pytest.approx(grounding_metrics(tops, gts))
    assert set(report.metrics) >= {"R1@0.3", "R1@0.5", "R1@0.7", "mIoU"}
    limited = evaluate(
        "charades-sta",
        annotation_file,
        tiny_features_dir,
        model=str(tiny_blip2_dir),
        device="cpu",
        progress=False,
        limit=2,
    )
    assert limited.n_queries == 2 and limited.predictions == report.predictions[:2]


def test_llm_outputs_official_npy_features_reference_profile(
    tmp_path, annotation_file, tiny_blip2_dir, tiny_encoder, tiny_features
) -> None:
    annotations = json.loads(annotation_file.read_text())
    outputs = {vid: {**rec, "response": [{} for _ in rec["sentences"]]} for vid, rec in annotations.items()}
    outputs["bikes"]["response"][3] = SEQUENTIAL  # "a cyclist with a helmet rides behind a van"
    llm_file = tmp_path / "llm_outputs.json"
    llm_file.write_text(json.dumps(outputs))
    npy_dir = tmp_path / "npy"
    npy_dir.mkdir()
    for vid, feats in tiny_features.items():
        np.save(npy_dir / f"{vid}.npy", feats.features)
    text_calls = []

    class CountingTexts:  # the tiny encoder, recording each call of its text side
        config = tiny_encoder.config
        encode_images = tiny_encoder.encode_images
        similarity = tiny_encoder.similarity

        def encode_texts(self, texts):
            text_calls.append(list(texts))
            return tiny_encoder.encode_texts(texts)

    grounder = Grounder(
        str(tiny_blip2_dir),
        profile="reference",
        preset="charades",
        llm="none",
        use_cache=False,
        progress=False,
    )
    grounder._encoder = CountingTexts()
    report = evaluate(
        "charades-sta",
        annotation_file,
        npy_dir,
        feature_format="tfvtg-npy",
        llm_outputs=llm_file,
        grounder=grounder,
        progress=False,
    )
    assert report.method == "full" and report.meta["profile"] == "reference"
    # All 15 distinct texts (11 sentences, 2 paraphrases, 2 sub-events) encoded up front in one batch.
    assert len(text_calls) == 1 and len(text_calls[0]) == len(set(text_calls[0])) == 15
    assert {"a biker follows a van", "a van drives", "a cyclist rides"} <= set(text_calls[0])
    for pred in report.predictions:
        vid, index = pred["qid"].split("#")
        duration = annotations[vid]["duration"]
        answer = outputs[vid]["response"][int(index)]
        decomposition = Decomposition.from_tfvtg(answer, pred["query"])
        assert pred["relationship"] == decomposition.relation
        # The official mapping: frame k at k / T * duration (no timestamps), features read from the .npy.
        expected = _expected_top1(
            tiny_encoder, tiny_features[vid], duration, pred["query"], decomposition, profile="reference"
        )
        assert pred["pred_relevant_windows"][0][:2] == pytest.approx(expected, abs=1e-4)
    sequential = [p for p in report.predictions if p["relationship"] == "sequentially"]
    assert len(sequential) == 1 and sequential[0]["qid"] == "bikes#3"


def test_qvhighlights_saliency_and_highlight_metrics(
    tmp_path, tiny_blip2_dir, tiny_encoder, tiny_features, tiny_features_dir
) -> None:
    records = [
        {
            "qid": 11,
            "vid": "cup",
            "query": "a hand tilts a black cup sideways",
            "duration": 8.1,
            "relevant_windows": [[2, 4]],
            "relevant_clip_ids": [1],
            "saliency_scores": [[4, 3, 4]],
        },
        {
            "qid": 12,
            "vid": "bikes",
            "query": "a taxi sign on the roof of a car",
            "duration": 10.0,
            "relevant_windows": [[2, 4], [6, 8]],
            "relevant_clip_ids": [1, 3],
            "saliency_scores": [[4, 4, 4], [1, 2, 2]],
        },
        {  # the cup again, not adjacent to its first query
            "qid": 13,
            "vid": "cup",
            "query": "the cup is moved away from the camera",
            "duration": 8.1,
            "relevant_windows": [[4, 6]],
            "relevant_clip_ids": [2],
            "saliency_scores": [[4, 4, 2]],
        },
    ]
    ann = tmp_path / "qvh.jsonl"
    ann.write_text("".join(json.dumps(r) + "\n" for r in records))
    seen = []
    report = evaluate(
        "qvhighlights",
        ann,
        tiny_features_dir,
        model=str(tiny_blip2_dir),
        device="cpu",
        progress=False,
        on_prediction=seen.append,
    )
    assert [p["qid"] for p in seen] == [11, 13, 12]  # grounded video by video (each file read once) ...
    assert [p["qid"] for p in report.predictions] == [11, 12, 13]  # ... reported in file order, integer qids
    for pred, record in zip(report.predictions, records, strict=True):
        feats = tiny_features[record["vid"]]
        curve = _score_fn(tiny_encoder, feats.features)(record["query"])
        expected = clip_saliency(curve, feats.timestamps, record["duration"])
        np.testing.assert_allclose(pred["pred_saliency_scores"], np.round(expected, 4), atol=1e-4)
        assert len(pred["pred_saliency_scores"]) == int(np.ceil(record["duration"] / 2))
        assert 1 <= len(pred["pred_relevant_windows"]) <= 7
    assert {"R1@0.5", "R1@0.7", "mAP"} <= set(report.metrics)
    assert {"HL-min-VeryGood-mAP", "HL-min-VeryGood-HIT1"} <= set(report.metrics)
    # Length buckets: every window here is 2 s long, so "short" is the full set and the others are empty.
    assert report.metrics["MR-short-n"] == 3 and report.metrics["MR-short-mAP"] == report.metrics["mAP"]
    assert (report.metrics["MR-middle-n"], report.metrics["MR-long-n"]) == (0, 0)
    assert "MR-middle-mAP" not in report.metrics
    # Hand check of HIT@1: the clip with the best predicted saliency is a hit when an annotator rated it 4.
    positive = {11: {1}, 12: {1}, 13: {2}}
    hits = [int(np.argmax(p["pred_saliency_scores"])) in positive[p["qid"]] for p in report.predictions]
    assert report.metrics["HL-min-VeryGood-HIT1"] == pytest.approx(100.0 * np.mean(hits))
    # The unannotated test split: predictions, no metrics.
    test_split = tmp_path / "qvh_test.jsonl"
    test_split.write_text(
        "".join(json.dumps({k: r[k] for k in ("qid", "vid", "query", "duration")}) + "\n" for r in records)
    )
    unscored = evaluate(
        "qvhighlights", test_split, tiny_features_dir, model=str(tiny_blip2_dir), device="cpu", progress=False
    )
    assert unscored.metrics == {} and unscored.predictions == report.predictions
    with pytest.raises(InputError, match="VLM-only"):
        evaluate("qvhighlights", ann, tiny_features_dir, llm_outputs=ann, progress=False)


def test_missing_and_unreadable_feature_files(
    tmp_path, annotation_file, tiny_blip2_dir, tiny_features_dir
) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "cup.safetensors").write_bytes((tiny_features_dir / "cup.safetensors").read_bytes())
    with pytest.raises(InputError, match=r"no feature file for 2 of 3 videos.*--skip-missing"):
        evaluate("charades-sta", annotation_file, partial, progress=False)
    report = evaluate(
        "charades-sta",
        annotation_file,
        partial,
        model=str(tiny_blip2_dir),
        device="cpu",
        skip_missing=True,
        progress=False,
    )
    assert report.n_videos == 1 and report.n_queries == 2
    assert sorted(report.missing_videos) == ["bigbuckbunny", "bikes"] and report.skipped_queries == 9
    assert report.metrics["n"] == 2
    (partial / "cup.safetensors").write_bytes(b"not a feature file")
    with pytest.raises(InputError, match="cannot read feature file"):
        evaluate(
            "charades-sta",
            annotation_file,
            partial,
            model=str(tiny_blip2_dir),
            device="cpu",
            skip_missing=True,
            progress=False,
        )
    with pytest.raises(InputError, match="features directory not found"):
        evaluate("charades-sta", annotation_file, tmp_path / "nowhere", progress=False)
    with pytest.raises(InputError, match="unknown dataset"):
        evaluate("kinetics", annotation_file, partial, progress=False)


def test_reference_profile_warns_about_features_not_made_with_the_official_numerics(
    tmp_path, annotation_file, tiny_blip2_dir, tiny_features, caplog
) -> None:
    from dataclasses import replace

    features_dir = tmp_path / "features"
    made = {"cup": "autocast-float16", "bikes": "bfloat16", "bigbuckbunny": None}
    for vid, precision in made.items():
        replace(tiny_features[vid], precision=precision).save(features_dir / f"{vid}.safetensors")
    run = dict(model=str(tiny_blip2_dir), device="cpu", progress=False)
    with caplog.at_level(logging.WARNING, logger="tfvtg.evaluate"):
        evaluate("charades-sta", annotation_file, features_dir, profile="reference", **run)
    # evaluate's own warnings only: the tiny tokenizer spells some queries past 35 tokens (warned about too).
    ours = [r for r in caplog.records if r.name == "tfvtg.evaluate"]
    warnings = [r.getMessage() for r in ours if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "2 of 3 feature files were not made with the official numerics (autocast-float16" in warnings[0]
    assert "1 in an unrecorded precision, 1 in bfloat16" in warnings[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tfvtg.evaluate"):
        evaluate("charades-sta", annotation_file, features_dir, profile="default", **run)
        for vid in made:
            official = replace(tiny_features[vid], precision="autocast-float16")
            official.save(features_dir / f"{vid}.safetensors")
        evaluate("charades-sta", annotation_file, features_dir, profile="reference", **run)
    assert not [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "tfvtg.evaluate"]
