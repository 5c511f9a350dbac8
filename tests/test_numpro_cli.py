"""The numpro command: overlay, ground and evaluate, as subprocesses and through main(argv)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from numpro.cli import main
from tests.fixtures.openai_server import Reply
from tests.fixtures.videos import make_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """12 s at 10 fps, 64x48."""
    return make_video(tmp_path_factory.mktemp("numpro_cli") / "clip.mp4", n_frames=120, fps=10, size=(48, 64))


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    return subprocess.run([sys.executable, "-m", "numpro.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)


def test_overlay_png_folder_and_frames_json(tmp_path, clip):
    out = tmp_path / "frames"
    done = _run("overlay", str(clip), str(out), "--fps", "0.5")
    assert done.returncode == 0, done.stderr
    info = json.loads((out / "frames.json").read_text())
    assert [f["number"] for f in info["frames"]] == list(range(6))
    np.testing.assert_allclose([f["time"] for f in info["frames"]], [0, 2, 4, 6, 8, 10], atol=1e-6)
    assert info["size"] == [336, 336] and info["fps"] == 0.5
    image = np.asarray(Image.open(out / info["frames"][5]["file"])).astype(int)
    assert image.shape == (336, 336, 3)
    red = (image[..., 0] > 200) & (image[..., 1] < 60)
    ys, xs = np.nonzero(red[:, 168:])  # the clip's own red marker is bottom-left; the number bottom-right
    assert ys.min() > 290 and xs.max() + 168 > 325


def test_overlay_mp4_is_encoded_at_the_sampling_rate(tmp_path, clip):
    import av

    out = tmp_path / "numbered.mp4"
    assert main(["overlay", str(clip), str(out), "--format", "mp4", "--fps", "2", "--size", "96x64"]) == 0
    info = json.loads((tmp_path / "numbered.mp4.frames.json").read_text())
    assert len(info["frames"]) == 24
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == 2  # never the source's 10 fps
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(frames) == 24 and frames[0].shape == (64, 96, 3)


def test_ground_json_subprocess(openai_server, clip):
    openai_server.queue("From Frame 3 to Frame 10")
    done = _run("ground", str(clip), "a person opens a door", "--json", "--mllm", "test-vlm",
                "--mllm-base-url", openai_server.base_url, "--size", "64x48")
    assert done.returncode == 0, done.stderr
    line = json.loads(done.stdout)
    assert line["pred_relevant_windows"] == [[3.0, 11.0, 1.0]]
    assert line["vid"] == "clip" and line["qid"] == 0 and line["duration"] == 12.0
    assert line["meta"]["coarse"]["answer"] == "From Frame 3 to Frame 10"
    assert line["meta"]["coarse"]["n_frames"] == 12 and line["meta"]["mllm"] == "test-vlm"
    assert len(openai_server.requests[0].images()) == 12


def test_ground_table(openai_server, clip, capsys):
    openai_server.queue("The person opens the door from frame 3 to frame 10.")
    assert main(["ground", str(clip), "a person opens a door", "--mllm", "m", "--mllm-base-url",
                 openai_server.base_url, "--size", "64x48"]) == 0
    out = capsys.readouterr().out
    assert "answer: The person opens the door from frame 3 to frame 10." in out
    assert "00:03.0" in out and "00:11.0" in out and "3.00" in out and "11.00" in out


def test_ground_refine_and_timestamps_as_text(openai_server, clip, capsys):
    openai_server.queue("From second 3 to second 5", "From second 2.5 to second 4.75")
    assert main(["ground", str(clip), "x", "--json", "--mllm", "m", "--mllm-base-url", openai_server.base_url,
                 "--size", "64x48", "--refine", "--timestamps-as-text"]) == 0
    line = json.loads(capsys.readouterr().out)
    # Coarse (3, 6); window [1, 8) at 4 fps; "4.75" names the frame shown from 4.7 s, ending at 5.0 s.
    assert line["meta"]["used"] == "refined"
    assert line["pred_relevant_windows"] == [[2.5, 5.0, 1.0]]
    second = openai_server.requests[1].messages[0]["content"]
    assert second[0] == {"type": "text", "text": "Second 1.0"} and len(second) == 2 * 28 + 1


def test_ground_unreadable_answer(openai_server, clip, capsys):
    openai_server.queue("No such moment.")
    assert main(["ground", str(clip), "x", "--mllm", "m", "--mllm-base-url", openai_server.base_url,
                 "--size", "64x48"]) == 0
    assert "no span: no frame span found in the answer" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "message"), [
    (["ground", "/nonexistent/clip.mp4", "a dog"], "error: video not found: /nonexistent/clip.mp4"),
    (["ground", "{clip}", "   "], "error: empty query"),
    (["overlay", "/nonexistent/clip.mp4", "{tmp}/out"], "error: video not found"),
    (["evaluate", "--dataset", "charades-sta", "--annotations", "{tmp}/none.json", "--videos", "{tmp}"],
     "error: "),
])
def test_errors_are_one_line(args, message, clip, tmp_path, capsys):
    argv = [a.format(clip=clip, tmp=tmp_path) for a in args] + ["--mllm", "m", "--mllm-base-url", "http://x/v1"]
    if argv[0] == "overlay":
        argv = argv[:3]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(message.format(tmp=tmp_path)) and "Traceback" not in err


def test_server_500_is_an_error_line_subprocess(openai_server, clip):
    openai_server.default = Reply(status=500, body={"error": {"message": "model crashed"}})
    done = _run("ground", str(clip), "x", "--mllm", "m", "--mllm-base-url", openai_server.base_url,
                "--size", "64x48", "--max-retries", "0")
    assert done.returncode == 1
    assert done.stderr.startswith("error: LLM request to model 'm'")
    assert "HTTP 500: model crashed" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_no_api_key_is_an_error_line():
    done = _run("ground", os.fspath(__file__), "x", "--mllm", "gpt-4o")
    assert done.returncode == 1 and done.stderr.startswith("error: no API key for model 'gpt-4o'")


def test_evaluate_reports_metrics_and_parse_failures(openai_server, clip, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a.mp4").symlink_to(clip)
    (videos / "b.mp4").symlink_to(clip)
    annotations = tmp_path / "charades_test.json"
    annotations.write_text(json.dumps({
        "a": {"duration": 12.0, "timestamps": [[2.0, 5.0], [3.0, 4.0]], "sentences": ["one.", "two."]},
        "b": {"duration": 12.0, "timestamps": [[0.0, 4.0]], "sentences": ["three."]},
    }))
    # Queries go video by video, in file order: one (2, 5) IoU 1; two unreadable, IoU 0; three (0, 2) IoU 0.5.
    openai_server.queue("From Frame 2 to Frame 4", "No such moment.", "frames 0-1")
    preds = tmp_path / "preds.jsonl"
    done = _run("evaluate", "--dataset", "charades-sta", "--annotations", str(annotations), "--videos",
                str(videos), "--mllm", "m", "--mllm-base-url", openai_server.base_url, "--size", "64x48",
                "--out", str(preds), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    metrics = result["metrics"]
    assert metrics["R1@0.3"] == pytest.approx(200 / 3) and metrics["R1@0.5"] == pytest.approx(200 / 3)
    assert metrics["R1@0.7"] == pytest.approx(100 / 3) and metrics["mIoU"] == pytest.approx(50.0)
    assert metrics["parse_failure_rate"] == pytest.approx(100 / 3) and result["parse_failures"] == 1
    lines = [json.loads(x) for x in preds.read_text().splitlines()]
    assert [p["qid"] for p in lines] == ["a#0", "a#1", "b#0"]
    assert lines[1]["pred_relevant_windows"] == [] and lines[1]["meta"]["ok"] is False
    assert lines[2]["pred_relevant_windows"] == [[0.0, 2.0, 1.0]]


def test_evaluate_qvhighlights_full_and_length_buckets(openai_server, clip, tmp_path, capsys):
    (tmp_path / "v.mp4").symlink_to(clip)
    annotations = tmp_path / "highlight_val_release.jsonl"
    records = [{"qid": 7, "vid": "v", "query": "short", "duration": 12.0, "relevant_windows": [[2, 5]]},
               {"qid": 8, "vid": "v", "query": "long", "duration": 12.0, "relevant_windows": [[0, 12]]}]
    annotations.write_text("".join(json.dumps(r) + "\n" for r in records))
    # 1 fps: frames 2-4 end where frame 4's second ends, (2, 5), IoU 1; frames 0-5 give (0, 6), IoU 0.5.
    openai_server.queue("From Frame 2 to Frame 4", "From Frame 0 to Frame 5")
    assert main(["evaluate", "--dataset", "qvhighlights", "--annotations", str(annotations), "--videos",
                 str(tmp_path), "--mllm", "m", "--mllm-base-url", openai_server.base_url, "--size", "64x48",
                 "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)["metrics"]
    assert (metrics["R1@0.5"], metrics["R1@0.7"], metrics["n"]) == (100.0, 50.0, 2)
    # The 3 s window is short (0, 10], the 12 s one middle (10, 30]; no long one.
    assert (metrics["MR-short-n"], metrics["MR-short-R1@0.7"]) == (1, 100.0)
    middle = (metrics["MR-middle-n"], metrics["MR-middle-R1@0.5"], metrics["MR-middle-R1@0.7"])
    assert middle == (1, 100.0, 0.0)
    assert metrics["MR-long-n"] == 0 and "MR-long-mAP" not in metrics
    # The test split has no windows: predictions only, no metrics but the parse-failure rate.
    test_split = tmp_path / "highlight_test_release.jsonl"
    test_split.write_text(json.dumps({"qid": 9, "vid": "v", "query": "q", "duration": 12.0}) + "\n")
    openai_server.queue("From Frame 2 to Frame 4")
    preds = tmp_path / "test_preds.jsonl"
    assert main(["evaluate", "--dataset", "qvhighlights", "--annotations", str(test_split), "--videos",
                 str(tmp_path), "--mllm", "m", "--mllm-base-url", openai_server.base_url, "--size", "64x48",
                 "--out", str(preds), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"] == {"parse_failure_rate": 0.0}
    assert json.loads(preds.read_text())["qid"] == 9


def test_evaluate_missing_videos(openai_server, clip, tmp_path, capsys):
    annotations = tmp_path / "a.json"
    annotations.write_text(json.dumps({
        "gone": {"duration": 5.0, "timestamps": [[0.0, 1.0]], "sentences": ["x"]},
        "clip": {"duration": 12.0, "timestamps": [[3.0, 6.0]], "sentences": ["y"]},
    }))
    base = ["evaluate", "--dataset", "charades-sta", "--annotations", str(annotations), "--videos",
            str(clip.path.parent), "--mllm", "m", "--mllm-base-url", openai_server.base_url,
            "--size", "64x48"]
    assert main(base) == 1
    assert "1 of 2 videos not found" in capsys.readouterr().err
    openai_server.queue("From Frame 3 to Frame 5")
    assert main([*base, "--skip-missing"]) == 0
    out = capsys.readouterr().out
    assert "skipped 1 queries" in out and "parse failures: 0 of 1" in out and "100.00" in out
