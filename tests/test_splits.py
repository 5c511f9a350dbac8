"""Evaluation splits: OOD-1/OOD-2 noise padding (tfvtg.splits, evaluate --split); Charades-CD/CG files."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tfvtg.cli import main
from tfvtg.datasets import GroundingQuery, load_dataset
from tfvtg.errors import InputError
from tfvtg.evaluate import evaluate
from tfvtg.features import VideoFeatures
from tfvtg.metrics import grounding_metrics
from tfvtg.pipeline import ground_with_scores
from tfvtg.splits import DEFAULT_SEED, pad_features, pad_seconds, shift_query, video_rng

CHARADES = Path(__file__).resolve().parents[2] / "shared" / "data" / "charades-sta"


def _features(n: int, duration: float, fps: float = 3.0) -> VideoFeatures:
    rng = np.random.default_rng(1)
    return VideoFeatures(
        features=rng.normal(size=(n, 4, 8)).astype(np.float16),
        timestamps=np.arange(n) / fps,
        duration=duration,
        fps=fps,
        encoder="test",
        image_size=(8, 8),
    )


def test_pad_seconds_per_dataset_and_split():
    assert pad_seconds("charades-sta", "default") == 0.0
    assert (pad_seconds("charades-sta", "ood-1"), pad_seconds("charades-sta", "ood-2")) == (10.0, 15.0)
    assert (pad_seconds("activitynet", "ood-1"), pad_seconds("activitynet", "ood-2")) == (30.0, 60.0)
    with pytest.raises(InputError, match="not qvhighlights"):
        pad_seconds("qvhighlights", "ood-1")
    with pytest.raises(InputError, match="unknown split"):
        pad_seconds("charades-sta", "ood-3")


def test_pad_features_prepends_noise_at_the_features_rate_and_shifts_times():
    feats = _features(93, 31.0)
    original = feats.features.copy()
    padded = pad_features(feats, 10.0, video_rng(0, "ABC12"))
    n_pad = round(93 / 31.0 * 10.0)  # 30 frames: the official round(T / duration * pad)
    assert padded.features.shape == (93 + n_pad, 4, 8) and padded.features.dtype == np.float16
    np.testing.assert_array_equal(padded.features[n_pad:], original)
    np.testing.assert_array_equal(feats.features, original)  # the input is left alone
    np.testing.assert_allclose(padded.timestamps[n_pad:], feats.timestamps + 10.0)
    np.testing.assert_allclose(padded.timestamps[:n_pad], np.arange(n_pad) / 3.0)  # spread over [0, 10)
    assert padded.duration == 41.0 and padded.fps == 3.0 and padded.encoder == "test"
    noise = padded.features[:n_pad].astype(np.float64)
    assert abs(noise.mean()) < 0.1 and 0.9 < noise.std() < 1.1  # standard normal
    # Odd rates: the frame count is rounded, the noise still covers [0, pad).
    odd = pad_features(_features(50, 20.0), 15.0, video_rng(0, "x"))
    assert len(odd.features) - 50 == round(50 / 20.0 * 15.0) == 38
    assert odd.timestamps[37] < 15.0 <= odd.timestamps[38]
    assert pad_features(feats, 0.0, video_rng(0, "ABC12")) is feats


def test_the_seed_and_the_video_decide_the_noise():
    feats = _features(60, 20.0)
    a = pad_features(feats, 10.0, video_rng(0, "VID1")).features
    np.testing.assert_array_equal(a, pad_features(feats, 10.0, video_rng(0, "VID1")).features)
    assert not np.array_equal(a, pad_features(feats, 10.0, video_rng(1, "VID1")).features)
    assert not np.array_equal(a, pad_features(feats, 10.0, video_rng(0, "VID2")).features)


def test_shift_query_moves_spans_and_duration():
    query = GroundingQuery("v#0", "v", "a person sits", 30.5, ((2.0, 7.5),))
    shifted = shift_query(query, 15.0)
    assert shifted.windows == ((17.0, 22.5),) and shifted.duration == 45.5
    assert shift_query(query, 0.0) is query


@pytest.mark.parametrize(
    ("name", "n_queries", "vid", "duration", "window"),
    [
        ("charades_test_ood.json", 3375, "N14BK", 47.625, (39.3, 45.0)),  # Charades-CD, video_duration
        ("novel_composition.json", 3442, "AO8RW", 33.67, (0.0, 6.9)),  # Charades-CG
        ("novel_word.json", 695, "0QA8P", 51.67, (7.3, 28.1)),
    ],
)
def test_charades_cd_and_cg_files_read_as_they_are(name, n_queries, vid, duration, window):
    path = CHARADES / name
    if not path.exists():
        pytest.skip(f"{path} not available")
    queries = load_dataset("charades-sta", path)
    raw = json.loads(path.read_text())
    assert len(queries) == n_queries == sum(len(r["sentences"]) for r in raw.values())
    first = queries[0]
    assert (first.vid, first.qid, first.duration, first.window) == (vid, f"{vid}#0", duration, window)
    assert first.query == raw[vid]["sentences"][0].strip()


@pytest.fixture(scope="module")
def annotation_file(tmp_path_factory, clip_queries, tiny_features) -> Path:
    records = {
        vid: {
            "duration": round(f.duration, 2),
            "timestamps": [q["spans"][0] for q in clip_queries[vid]],
            "sentences": [q["query"] for q in clip_queries[vid]],
        }
        for vid, f in tiny_features.items()
    }
    path = tmp_path_factory.mktemp("ood") / "clips_test.json"
    path.write_text(json.dumps(records))
    return path


def test_ood_run_grounds_padded_features_and_scores_shifted_spans(
    annotation_file, tiny_blip2_dir, tiny_encoder, tiny_features, tiny_features_dir
):
    def run(**kwargs):
        return evaluate("charades-sta", annotation_file, tiny_features_dir, model=str(tiny_blip2_dir),
                        device="cpu", progress=False, **kwargs)

    report = run(split="ood-2", seed=7)
    assert report.meta["split"] == "ood-2" and report.meta["pad_seconds"] == 15.0 and report.meta["seed"] == 7
    annotations = json.loads(annotation_file.read_text())
    tops, gts = [], []
    for pred in report.predictions:
        vid, index = pred["qid"].split("#")
        assert (pred["split"], pred["pad_seconds"], pred["seed"]) == ("ood-2", 15.0, 7)
        padded = pad_features(tiny_features[vid], 15.0, video_rng(7, vid))
        assert pred["duration"] == pytest.approx(annotations[vid]["duration"] + 15.0)

        def score_fn(text, feats=padded.features):
            return tiny_encoder.similarity(feats, tiny_encoder.encode_texts([text]))[0]

        moments = ground_with_scores(score_fn, padded.duration, pred["query"], None, preset="charades",
                                     mask_threshold=tiny_encoder.config.mask_threshold,
                                     timestamps=padded.timestamps)
        assert pred["pred_relevant_windows"][0][:2] == pytest.approx([moments[0].start, moments[0].end],
                                                                     abs=1e-4)
        tops.append(pred["pred_relevant_windows"][0][:2])
        start, end = annotations[vid]["timestamps"][int(index)]
        gts.append((start + 15.0, end + 15.0))
    assert report.metrics == pytest.approx(grounding_metrics(tops, gts))
    # Reproducible: the same seed gives the same predictions; a limit does not change a video's noise.
    assert run(split="ood-2", seed=7).predictions == report.predictions
    assert run(split="ood-2", seed=7, limit=3).predictions == report.predictions[:3]
    plain = run()
    assert "split" not in plain.predictions[0] and plain.meta["split"] == "default"
    assert "seed" not in plain.meta


def test_metrics_follow_the_shifted_span():
    # A prediction that moves with the padding scores the same against the shifted span; one that does not
    # move scores differently.
    query = GroundingQuery("v#0", "v", "q", 30.0, ((4.0, 9.0),))
    pred = (5.0, 10.0)
    base = grounding_metrics([pred], [query.window])
    shifted = shift_query(query, 10.0).window
    assert grounding_metrics([(pred[0] + 10, pred[1] + 10)], [shifted]) == pytest.approx(base)
    assert grounding_metrics([pred], [shifted])["mIoU"] == 0.0 < base["mIoU"]


def test_cli_split_records_the_seed(annotation_file, tiny_blip2_dir, tiny_features_dir, tmp_path, capsys):
    out = tmp_path / "preds.jsonl"
    args = ["evaluate", "--dataset", "charades-sta", "--annotations", str(annotation_file), "--features",
            str(tiny_features_dir), "--model", str(tiny_blip2_dir), "--device", "cpu", "--limit", "2"]
    assert main([*args, "--split", "ood-1", "--seed", "3", "--json", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["split"], summary["pad_seconds"], summary["seed"]) == ("ood-1", 10.0, 3)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 2 and all((r["split"], r["seed"]) == ("ood-1", 3) for r in lines)
    assert main([*args, "--split", "ood-1"]) == 0
    assert f"split ood-1 (10 s of noise prepended, seed {DEFAULT_SEED})" in capsys.readouterr().out
    qvh = tmp_path / "qvh.jsonl"
    qvh.write_text(json.dumps({"qid": 1, "vid": "cup", "query": "a cup", "duration": 8.0}) + "\n")
    assert main(["evaluate", "--dataset", "qvhighlights", "--annotations", str(qvh), "--features",
                 str(tiny_features_dir), "--split", "ood-1"]) == 1
    assert "error: split ood-1 is defined for charades-sta and activitynet only" in capsys.readouterr().err


def test_padding_leaves_features_of_other_shapes_alone():
    feats = replace(_features(10, 5.0), features=np.zeros((10, 1, 3), np.float32))
    padded = pad_features(feats, 10.0, video_rng(DEFAULT_SEED, "a"))
    assert padded.features.shape == (30, 1, 3) and padded.features.dtype == np.float32
