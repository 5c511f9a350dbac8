"""The ``tfvtg`` console script end to end: ground, extract, evaluate, plot on the tiny BLIP-2 and real clips.

The main flows run the installed console script as a subprocess (a fresh interpreter, the real entry point);
the many error paths call ``tfvtg.cli.main(argv)`` in-process, which is the same code minus the interpreter
start. Expected numbers come from the in-process Grounder on the same features.
"""

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
from tfvtg.console import clock
from tfvtg.evaluate import evaluate
from tfvtg.features import VideoFeatures
from tfvtg.grounder import Grounder

QUERY = "a hand tilts a black cup sideways"
OTHER = "the cup is moved away from the camera"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env.update(
        TFVTG_CACHE=str(tmp_path_factory.mktemp("cli_cache")),
        HF_HUB_OFFLINE="1",
        MPLBACKEND="Agg",
        TRANSFORMERS_OFFLINE="1",
    )
    return env


def _command() -> list[str]:
    script = Path(sys.executable).with_name("tfvtg")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tfvtg.cli"]


def run_cli(args: list, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        _command() + [str(a) for a in args], capture_output=True, text=True, env=env, timeout=300
    )


def expected_moments(tiny_blip2_dir, tiny_encoder, features, query, top_k=5):
    g = Grounder(str(tiny_blip2_dir), device="cpu", progress=False, use_cache=False)
    g._encoder = tiny_encoder
    return g.ground(features, query, top_k=top_k)


@pytest.fixture(scope="module")
def annotation_file(tmp_path_factory, clip_queries, tiny_features) -> Path:
    records = charades_records(tiny_features, clip_queries)
    path = tmp_path_factory.mktemp("cli_ann") / "clips_test.json"
    path.write_text(json.dumps(records))
    return path


@pytest.fixture(scope="module")
def runs(
    cli_env, tiny_blip2_dir, tiny_features, cup_video, shared_videos, annotation_file, tmp_path_factory
) -> dict:
    """The independent console-script runs, started together (each pays the interpreter + torch start)."""
    work = tmp_path_factory.mktemp("cli_runs")
    (work / "queries.txt").write_text(f"# cup clip\n{QUERY}\n\n{OTHER}\n")
    (work / "npy").mkdir()
    for vid, feats in tiny_features.items():
        np.save(work / "npy" / f"{vid}.npy", feats.features)
    records = json.loads(annotation_file.read_text())
    outputs = {vid: {**rec, "response": [{} for _ in rec["sentences"]]} for vid, rec in records.items()}
    (work / "llm_outputs.json").write_text(json.dumps(outputs))
    model = ["--model", tiny_blip2_dir]
    commands = {
        "table": ["ground", cup_video, QUERY, "-q", OTHER, "--plot", work / "curves.png", *model],
        "json": [
            "ground",
            cup_video,
            "--queries-file",
            work / "queries.txt",
            "--json",
            "--top-k",
            "3",
            *model,
        ],
        "plot": ["plot", cup_video, QUERY, "--out", work / "fig.png", "--gt", "1.7", "2.9", *model],
        "npy": [
            "evaluate",
            "--dataset",
            "charades-sta",
            "--annotations",
            annotation_file,
            "--features",
            work / "npy",
            "--feature-format",
            "tfvtg-npy",
            "--llm-outputs",
            work / "llm_outputs.json",
            "--profile",
            "reference",
            "--json",
            *model,
        ],
        **{
            f"shard{i}": ["extract", shared_videos, "--out", work / "features", "--shard", f"{i}/2", *model]
            for i in range(2)
        },
    }
    procs = {
        name: subprocess.Popen(
            _command() + [str(a) for a in args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env,
        )
        for name, args in commands.items()
    }
    results = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        results[name] = subprocess.CompletedProcess(commands[name], proc.returncode, stdout, stderr)
    return {"work": work, **results}


def test_clock_format() -> None:
    assert clock(0.0) == "00:00.0"
    assert clock(83.26) == "01:23.3"
    assert clock(599.96) == "10:00.0"
    assert clock(3725.04) == "1:02:05.0"


def test_ground_table_and_plot(runs, tiny_blip2_dir, tiny_encoder, tiny_features) -> None:
    proc = runs["table"]
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("video: cup.mp4 (8.10 s, 25 frames at 3 fps")
    assert "Traceback" not in proc.stderr
    blocks = out.split("\nquery: ")[1:]
    assert [b.splitlines()[0] for b in blocks] == [QUERY, OTHER]
    for block, query in zip(blocks, (QUERY, OTHER), strict=True):
        lines = block.splitlines()
        assert lines[1].startswith("decomposition: none, VLM-only")
        assert lines[2].split() == ["#", "start", "end", "start", "s", "end", "s", "score"]
        rows = [line.split() for line in lines[3:] if line.strip() and not line.startswith("wrote ")]
        moments = expected_moments(tiny_blip2_dir, tiny_encoder, tiny_features["cup"], query)
        assert rows == [
            [str(i), clock(m.start), clock(m.end), f"{m.start:.2f}", f"{m.end:.2f}", f"{m.score:.3f}"]
            for i, m in enumerate(moments, start=1)
        ]
    for index in (1, 2):
        assert (runs["work"] / f"curves-{index}.png").read_bytes()[:8] == PNG
        assert f"wrote {runs['work'] / f'curves-{index}.png'}" in out.splitlines()


def test_ground_json_from_a_queries_file(runs, tiny_blip2_dir, tiny_encoder, tiny_features) -> None:
    proc = runs["json"]
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(p["qid"], p["query"], p["vid"]) for p in lines] == [(0, QUERY, "cup"), (1, OTHER, "cup")]
    for pred in lines:
        moments = expected_moments(tiny_blip2_dir, tiny_encoder, tiny_features["cup"], pred["query"], top_k=3)
        np.testing.assert_allclose(pred["pred_relevant_windows"], [m.to_list() for m in moments], atol=1e-4)
        assert pred["duration"] == pytest.approx(8.1, abs=0.01)
        assert pred["decomposition"]["source"] == "fallback" and pred["decomposition"]["sub_events"] == []
        meta = pred["meta"]
        assert meta["method"] == "vlm-only" and meta["profile"] == "default" and meta["preset"] == "charades"
        assert meta["model"] == str(tiny_blip2_dir) and meta["frames"] == 25
        assert set(meta["timings"]) >= {"load_s", "encode_s", "decompose_s", "text_s", "ground_s"}


def test_extract_in_two_shards_then_evaluate(
    runs, cli_env, tiny_blip2_dir, tiny_features, tiny_features_dir, shared_videos, annotation_file, capsys,
    monkeypatch,
) -> None:
    shard0, shard1 = runs["shard0"], runs["shard1"]
    assert shard0.returncode == 0, shard0.stderr
    assert shard1.returncode == 0, shard1.stderr
    # Sorted list [bigbuckbunny, bikes, cup]: shard 0 takes items 0 and 2, shard 1 item 1.
    assert "bigbuckbunny.safetensors" in shard0.stdout and "cup.safetensors" in shard0.stdout
    assert "extracted 2, skipped 0, failed 0 of 2 videos (shard 0/2 of 3)" in shard0.stdout
    assert "bikes.safetensors" in shard1.stdout
    assert "extracted 1, skipped 0, failed 0 of 1 video (shard 1/2 of 3)" in shard1.stdout
    out = runs["work"] / "features"
    assert sorted(p.name for p in out.iterdir()) == [
        "bigbuckbunny.safetensors",
        "bikes.safetensors",
        "cup.safetensors",
    ]
    for vid, expected in tiny_features.items():
        written = VideoFeatures.load(out / f"{vid}.safetensors")
        np.testing.assert_array_equal(written.features, expected.features)
        np.testing.assert_array_equal(written.timestamps, expected.timestamps)
    # Resuming with the same settings skips everything, and with --fps given never loads the model.
    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded for a complete resume")

    monkeypatch.setattr("tfvtg.encoders.create_encoder", no_model)
    resume = ["extract", str(shared_videos), "--out", str(out), "--skip-existing", "--fps", "3"]
    assert main([*resume, "--model", str(tiny_blip2_dir)]) == 0
    assert "extracted 0, skipped 3, failed 0 of 3 videos" in capsys.readouterr().out
    monkeypatch.undo()

    preds = runs["work"] / "preds.jsonl"
    proc = run_cli(
        [
            "evaluate",
            "--dataset",
            "charades-sta",
            "--annotations",
            annotation_file,
            "--features",
            out,
            "--model",
            tiny_blip2_dir,
            "--out",
            preds,
        ],
        cli_env,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(
        "charades-sta: 11 queries of 3 videos, vlm-only (no LLM outputs), profile default"
    )
    assert "R1@0.3" in proc.stdout and "mIoU" in proc.stdout and "took" in proc.stdout
    written = [json.loads(line) for line in preds.read_text().splitlines()]
    report = evaluate(
        "charades-sta",
        annotation_file,
        tiny_features_dir,
        model=str(tiny_blip2_dir),
        device="cpu",
        progress=False,
    )
    assert written == report.predictions
    header, values = proc.stdout.splitlines()[1:3]
    table = dict(zip(header.split(), values.split(), strict=True))
    assert (
        table["R1@0.5"] == f"{report.metrics['R1@0.5']:.2f}"
        and table["mIoU"] == f"{report.metrics['mIoU']:.2f}"
    )


def test_evaluate_official_npy_features_with_llm_outputs(runs) -> None:
    proc = runs["npy"]
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["method"] == "full" and summary["profile"] == "reference"
    assert (summary["queries"], summary["videos"], summary["missing_videos"]) == (11, 3, 0)
    assert set(summary["metrics"]) >= {"R1@0.3", "R1@0.5", "R1@0.7", "mIoU"}


def test_plot_command_writes_a_png(runs) -> None:
    proc = runs["plot"]
    assert proc.returncode == 0, proc.stderr
    out = runs["work"] / "fig.png"
    assert proc.stdout.strip() == f"wrote {out}"
    assert out.read_bytes()[:8] == PNG


def test_errors_are_one_line_without_traceback(cli_env, tmp_path) -> None:
    proc = run_cli(["ground", tmp_path / "missing.mp4", "a query"], cli_env)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: video not found: {tmp_path / 'missing.mp4'}"
    assert proc.stdout == ""
    verbose = run_cli(["--verbose", "ground", tmp_path / "missing.mp4", "a query"], cli_env)
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr and "VideoError" in verbose.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ground", "{tmp}/missing.mp4", "q"], "error: video not found"),
        (["ground", "{tmp}", "q"], "is a directory, not a video file"),
        (["ground", "{cup}", ""], "error: empty query"),
        (["ground", "{cup}", "-q", "   "], "error: empty query"),
        (["ground", "{cup}"], "error: no query given"),
        (["ground", "{cup}", "q", "--queries-file", "{tmp}/none.txt"], "error: queries file not found"),
        (["ground", "{cup}", "q", "--model", "no-such-model"], "error: unknown encoder 'no-such-model'"),
        (["ground", "{cup}", "q", "--model", "{tmp}/no/model/dir"], "does not exist"),
        (["plot", "{cup}", "", "--out", "{tmp}/f.png"], "error: empty query"),
        (["extract", "{cup}", "--out", "{tmp}/f", "--shard", "2/2"], "error: --shard 2/2"),
        (["extract", "{cup}", "--out", "{tmp}/f", "--shard", "x"], "error: --shard must be I/N"),
        (["extract", "{tmp}/missing.mp4", "--out", "{tmp}/f"], "error: video not found"),
        (
            [
                "evaluate",
                "--dataset",
                "charades-sta",
                "--annotations",
                "{tmp}/none.json",
                "--features",
                "{tmp}",
            ],
            "error: annotation file not found",
        ),
        (
            [
                "evaluate",
                "--dataset",
                "charades-sta",
                "--annotations",
                "{ann}",
                "--features",
                "{tmp}/nowhere",
            ],
            "error: features directory not found",
        ),
        (
            [
                "evaluate",
                "--dataset",
                "charades-sta",
                "--annotations",
                "{ann}",
                "--features",
                "{bad}",
                "--model",
                "{model}",
            ],
            "error: cannot read feature file",
        ),
        (
            ["evaluate", "--dataset", "charades-sta", "--annotations", "{ann}", "--features", "{tmp}"],
            "error: no feature file for 3 of 3 videos",
        ),
    ],
)
def test_bad_inputs(
    args, message, cup_video, annotation_file, tiny_blip2_dir, tmp_path, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("TFVTG_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "bad"
    bad.mkdir()
    for vid in ("bigbuckbunny", "bikes", "cup"):
        (bad / f"{vid}.safetensors").write_bytes(b"\x00garbage, not safetensors")
    values = {"tmp": tmp_path, "cup": cup_video, "ann": annotation_file, "bad": bad, "model": tiny_blip2_dir}
    assert main([a.format(**values) for a in args]) == 1
    captured = capsys.readouterr()
    assert message in captured.err and "Traceback" not in captured.err
    assert captured.err.strip().splitlines()[-1].startswith("error: ")


def test_extract_goes_on_past_a_bad_video_and_fails_at_the_end(
    tiny_blip2_dir, cup_video, tmp_path, capsys
) -> None:
    from tests.fixtures.videos import make_non_media

    bad = make_non_media(tmp_path / "broken.mp4")
    out = tmp_path / "features"
    assert main(["extract", str(bad), str(cup_video), "--out", str(out), "--model", str(tiny_blip2_dir)]) == 1
    captured = capsys.readouterr()
    assert "wrote " in captured.out and "extracted 1, skipped 0, failed 1 of 2 videos" in captured.out
    assert captured.err.strip().splitlines()[-1].startswith("error: 1 of 2 videos failed: broken.mp4 (")
    assert "Traceback" not in captured.err
    # No partial file for the bad one; the failure report beside the outputs names it.
    assert sorted(p.name for p in out.iterdir()) == ["cup.safetensors", "extract_failures.json"]
    assert f"failures listed in {out / 'extract_failures.json'}" in captured.out


def test_ground_with_an_llm_prints_the_decomposition(
    tiny_blip2_dir, cup_video, tmp_path, capsys, openai_server
) -> None:
    answer = {
        "reasoning": "two steps",
        "relationship": "sequentially",
        "query_json": [
            {"sub_query_id": 0, "descriptions": ["a hand tilts the cup and moves it away"]},
            {"sub_query_id": 1, "descriptions": ["a hand tilts a black cup", "the cup is tipped"]},
            {"sub_query_id": 2, "descriptions": ["the cup is moved away"]},
        ],
    }
    openai_server.queue(json.dumps(answer))
    query = "a hand tilts the cup, then moves it away"
    args = [
        "ground",
        str(cup_video),
        query,
        "--llm",
        "test-llm",
        "--llm-base-url",
        openai_server.base_url,
        "--model",
        str(tiny_blip2_dir),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    at = lines.index(f"query: {query}")
    assert lines[at + 1 : at + 5] == [
        "decomposition: sequentially (llm)",
        "  paraphrases: a hand tilts the cup and moves it away",
        "  sub-event 1: a hand tilts a black cup | the cup is tipped",
        "  sub-event 2: the cup is moved away",
    ]
    assert lines[at + 5].split()[0] == "#" and lines[at + 6].split()[0] == "1"
    assert len(openai_server.requests) == 1
    assert main([*args, "--json"]) == 0  # the answer now comes from the cache
    line = json.loads(capsys.readouterr().out)
    assert line["decomposition"]["source"] == "cache" and line["meta"]["method"] == "full"
    assert line["decomposition"]["sub_events"] == [
        ["a hand tilts a black cup", "the cup is tipped"],
        ["the cup is moved away"],
    ]
    assert len(openai_server.requests) == 1
