"""The zoo end to end on the shared clips: ``tfvtg ground --model DIR`` (console script) with a tiny CLIP, and
``extract`` / ``evaluate`` with a tiny SigLIP 2; features of one encoder are refused by another."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.grounding import charades_records
from tfvtg.cli import main
from tfvtg.errors import InputError
from tfvtg.features import VideoFeatures
from tfvtg.grounder import Grounder

pytest.importorskip("torch")
pytest.importorskip("transformers")

QUERY = "a hand tilts a black cup sideways"


def _command() -> list[str]:
    script = Path(sys.executable).with_name("tfvtg")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tfvtg.cli"]


def test_ground_with_a_clip_directory(tiny_clip_dir, cup_video, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env.update(TFVTG_CACHE=str(tmp_path / "cache"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run(
        [
            *_command(),
            "ground",
            str(cup_video),
            QUERY,
            "--model",
            str(tiny_clip_dir),
            "--json",
            "--top-k",
            "3",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    line = json.loads(proc.stdout.splitlines()[0])
    windows = line["pred_relevant_windows"]
    assert 1 <= len(windows) <= 3 and all(0 <= s < e <= 8.2 for s, e, _ in windows)
    assert line["meta"]["encoder"] == str(tiny_clip_dir.resolve())
    # The same answer as the Python API on the same model (mask threshold 0 from the CLIP encoder's config).
    grounder = Grounder(str(tiny_clip_dir), device="cpu", progress=False, use_cache=False)
    result = grounder.ground_details(str(cup_video), QUERY, top_k=3)
    assert result.mask_threshold == 0.0
    # TAG takes its CLIP settings from the encoder: mask at 0, plain k-means.
    tag = Grounder(str(tiny_clip_dir), device="cpu", progress=False, use_cache=False, method="tag")
    tag_result = tag.ground_details(grounder.encode_video(str(cup_video)), QUERY, top_k=3)
    assert tag_result.mask_threshold == 0.0 and 1 <= len(tag_result.moments) <= 3
    # BLIP-2 stays the only encoder of the reference profile.
    reference = Grounder(
        str(tiny_clip_dir), device="cpu", progress=False, use_cache=False, profile="reference"
    )
    with pytest.raises(InputError, match="reference profile .* clip encoder"):
        reference.ground(str(cup_video), QUERY)
    np.testing.assert_allclose(windows, [m.to_list(4) for m in result.moments], atol=1e-4)


def test_extract_then_evaluate_with_siglip2(
    tiny_siglip2_dir, tiny_blip2_dir, shared_videos, clip_queries, tmp_path, capsys
):
    out = tmp_path / "features"
    assert main(["extract", str(shared_videos), "--out", str(out), "--model", str(tiny_siglip2_dir)]) == 0
    assert "extracted 3, skipped 0, failed 0 of 3 videos" in capsys.readouterr().out
    features = {p.stem: VideoFeatures.load(p) for p in sorted(out.glob("*.safetensors"))}
    assert set(features) == set(clip_queries)
    for feats in features.values():
        assert feats.features.shape[1:] == (1, 24) and feats.encoder == str(tiny_siglip2_dir.resolve())
        assert feats.image_size == (32, 32) and feats.fps == 3.0
    records = charades_records(features, clip_queries)
    annotations = tmp_path / "clips_test.json"
    annotations.write_text(json.dumps(records))
    preds = tmp_path / "preds.jsonl"
    args = [
        "evaluate",
        "--dataset",
        "charades-sta",
        "--annotations",
        str(annotations),
        "--features",
        str(out),
    ]
    assert main([*args, "--model", str(tiny_siglip2_dir), "--out", str(preds)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("charades-sta: 11 queries of 3 videos") and "mIoU" in printed
    assert len(preds.read_text().splitlines()) == 11
    # BLIP-2's text side on SigLIP features: refused before the model loads (8 tokens per frame, not 1).
    assert main([*args, "--model", str(tiny_blip2_dir)]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "another encoder" in err and "Traceback" not in err
