"""The scripts in examples/ run end to end on the tiny BLIP-2 and the real clips."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.fixtures.grounding import charades_records
from tfvtg.evaluate import evaluate
from tfvtg.grounder import Grounder

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
QUERIES = ["a hand tilts a black cup sideways", "the cup is moved away from the camera"]


def test_ground_video_and_evaluate_charades_examples(
    tiny_blip2_dir, tiny_encoder, tiny_features, tiny_features_dir, clip_queries, cup_video, tmp_path
) -> None:
    records = charades_records(tiny_features, clip_queries)
    annotations = tmp_path / "clips_test.json"
    annotations.write_text(json.dumps(records))
    outputs = {vid: {**rec, "response": [{} for _ in rec["sentences"]]} for vid, rec in records.items()}
    outputs["cup"]["response"][0] = {
        "relationship": "simultaneously",
        "query_json": [
            {"sub_query_id": 0, "descriptions": ["a hand tips a black cup over"]},
            {"sub_query_id": 1, "descriptions": ["a hand holds a cup"]},
            {"sub_query_id": 2, "descriptions": ["a black cup tilts"]},
        ],
    }
    llm_outputs = tmp_path / "llm_outputs.json"
    llm_outputs.write_text(json.dumps(outputs))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env.update(TFVTG_CACHE=str(tmp_path / "cache"), HF_HUB_OFFLINE="1", MPLBACKEND="Agg")
    runs = {
        "ground": [
            EXAMPLES / "ground_video.py",
            cup_video,
            *QUERIES,
            "--model",
            tiny_blip2_dir,
            "--plot",
            tmp_path / "fig.png",
        ],
        "evaluate": [
            EXAMPLES / "evaluate_charades.py",
            "--annotations",
            annotations,
            "--features",
            tiny_features_dir,
            "--llm-outputs",
            llm_outputs,
            "--model",
            tiny_blip2_dir,
            "--out",
            tmp_path / "preds.jsonl",
        ],
    }
    procs = {
        name: subprocess.Popen(
            [sys.executable, *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for name, args in runs.items()
    }
    # communicate() reads both pipes while waiting: wait() first can deadlock once a pipe fills.
    done = {name: (*proc.communicate(timeout=300), proc.returncode) for name, proc in procs.items()}

    out, err, rc = done["ground"]
    assert rc == 0, err
    assert out.startswith(f"{cup_video}: 8.10 s, 25 frames at 3 fps")
    g = Grounder(str(tiny_blip2_dir), device="cpu", progress=False, use_cache=False)
    g._encoder = tiny_encoder
    for query in QUERIES:
        assert f"{query}  [vlm-only, relation single-query]" in out
        for rank, m in enumerate(g.ground(tiny_features["cup"], query, top_k=3), start=1):
            assert f"  {rank}. {m.start:6.2f} - {m.end:6.2f} s   score {m.score:.3f}" in out
    assert (tmp_path / "fig.png").read_bytes()[:4] == b"\x89PNG"

    out, err, rc = done["evaluate"]
    assert rc == 0, err
    assert out.startswith("11 queries of 3 videos, full, profile default")
    assert "\nsimultaneously:\n" in out and "\nsingle-query:\n" in out
    report = evaluate(
        "charades-sta",
        annotations,
        tiny_features_dir,
        llm_outputs=llm_outputs,
        model=str(tiny_blip2_dir),
        device="cpu",
        progress=False,
    )
    written = [json.loads(line) for line in (tmp_path / "preds.jsonl").read_text().splitlines()]
    assert written == report.predictions
