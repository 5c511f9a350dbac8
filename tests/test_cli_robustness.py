"""Bad input to the `tfvtg` and `numpro` commands: one `error: ...` line, a non-zero status, no traceback,
and never an input overwritten or finished work lost.

Most checks fail before any model is loaded (outputs, annotations and videos are checked first), so the file
needs no encoder; the numpro evaluation uses the loopback OpenAI server.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest

from numpro.cli import main as numpro_main
from tests.fixtures.openai_server import Reply
from tests.fixtures.videos import make_video
from tfvtg.cli import main as tfvtg_main
from tfvtg.console import run_group
from tfvtg.errors import InputError

NO_MODEL = ["--model", "/nonexistent/model"]  # a model load would fail with another error than the one tested


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A clip, a valid annotation file, a file where a folder is expected, and an empty features folder."""
    root = tmp_path_factory.mktemp("robust")
    make_video(root / "a.mp4", n_frames=30, fps=10)
    (root / "ann.json").write_text(json.dumps(
        {"a": {"duration": 3.0, "timestamps": [[0.5, 1.5], [1.0, 2.0]], "sentences": ["one.", "two."]}}))
    (root / "afile").write_text("not a folder\n")
    (root / "features").mkdir()
    (root / "not-utf8.txt").write_bytes(b"\xff\xfe a dog\n")
    (root / "text.mp4").write_text("hello, I am no video\n")
    return root


def _one_error_line(err: str, *needles: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert lines and lines[-1].startswith("error: "), err
    for needle in needles:
        assert needle in lines[-1], lines[-1]
    return lines[-1]


def _argv(args: list[str], work: Path) -> list[str]:
    return [a.format(w=work) for a in args]


@pytest.mark.parametrize(("args", "needles"), [
    # An output that cannot be written fails before the work, not after it (a path under a file is portable
    # where /proc is not, and root can write almost anywhere).
    (["ground", "{w}/a.mp4", "a dog", "--plot", "{w}/afile/curves.png", *NO_MODEL],
     ["cannot write --plot", "cannot create folder"]),
    (["plot", "{w}/a.mp4", "a dog", "--out", "{w}/afile/fig.png", *NO_MODEL], ["cannot write --out"]),
    (["plot", "{w}/a.mp4", "a dog", "--out", "{w}/a.mp4", *NO_MODEL], ["is also an input"]),
    (["plot", "{w}/a.mp4", "a dog", "--out", "{w}/fig.png", "--gt", "5", "1", *NO_MODEL],
     ["--gt 5 1", "START <= END"]),
    (["plot", "{w}/a.mp4", "a dog", "--out", "{w}/fig.png", "--gt", "nan", "inf", *NO_MODEL],
     ["--gt nan inf"]),
    (["extract", "{w}/a.mp4", "--out", "{w}/afile/features", *NO_MODEL], ["cannot write --out"]),
    (["evaluate", "--dataset", "charades-sta", "--annotations", "{w}/ann.json", "--features", "{w}/features",
      "--out", "{w}/afile/preds.jsonl"], ["cannot write --out"]),
    (["decompose", "--annotations", "{w}/ann.json", "--out", "{w}/afile/llm.json"], ["cannot write --out"]),
    (["decompose", "--annotations", "{w}/ann.json", "--out", "{w}/ann.json"], ["is also an input"]),
    (["ground", "{w}/a.mp4", "a dog", "--cache-dir", "{w}/afile/cache", *NO_MODEL],
     ["cannot write cache folder", "--no-cache"]),
    # Input files.
    (["ground", "{w}/a.mp4", "--queries-file", "{w}/not-utf8.txt", *NO_MODEL], ["not a UTF-8 text file"]),
    (["ground", "{w}/text.mp4", "a dog", *NO_MODEL], ["cannot open", "not a media file"]),  # before the model
    (["decompose", "a dog", "--llm", "m", "--llm-base-url", "localhost:8000/v1"], ["is not an http(s) URL"]),
])
def test_tfvtg_bad_input_is_one_line(args, needles, work, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TFVTG_CACHE", str(tmp_path / "cache"))
    assert tfvtg_main(_argv(args, work)) == 1
    captured = capsys.readouterr()
    _one_error_line(captured.err, *needles)
    assert captured.out == ""


def test_evaluate_out_never_replaces_the_annotations(work, capsys):
    before = (work / "ann.json").read_bytes()
    argv = ["evaluate", "--dataset", "charades-sta", "--annotations", "{w}/ann.json", "--features",
            "{w}/features", "--out", "{w}/ann.json", "--json"]
    assert tfvtg_main(_argv(argv, work)) == 1
    captured = capsys.readouterr()
    _one_error_line(captured.err, "--out", "is also an input")
    assert captured.out == ""  # --json: stdout stays empty on an error, the message is on stderr
    assert (work / "ann.json").read_bytes() == before


@pytest.mark.parametrize(("record", "needles"), [
    ({"duration": 3.0, "timestamps": [[2.0, 1.0]], "sentences": ["x"]}, ["timestamps[0]", "start <= end"]),
    ({"duration": -3.0, "timestamps": [[0.0, 1.0]], "sentences": ["x"]}, ["'duration' must be positive"]),
    ({"duration": 3.0, "timestamps": [[0.0, 1.0]], "sentences": ["  "]}, ["sentences[0] is empty"]),
])
def test_evaluate_refuses_impossible_annotations(record, needles, work, tmp_path, capsys):
    ann = tmp_path / "bad.json"
    ann.write_text(json.dumps({"a": record}))
    argv = ["evaluate", "--dataset", "charades-sta", "--annotations", str(ann),
            "--features", f"{work}/features"]
    assert tfvtg_main(argv) == 1
    _one_error_line(capsys.readouterr().err, "bad.json: record a", *needles)


def test_evaluate_refuses_llm_outputs_of_another_split(work, tmp_path, capsys):
    other = tmp_path / "llm_outputs.json"
    other.write_text(json.dumps({"zzz": {"duration": 5.0, "timestamps": [[0, 1]], "sentences": ["x"],
                                         "response": [{"relationship": "single-query"}]}}))
    argv = ["evaluate", "--dataset", "charades-sta", "--annotations", f"{work}/ann.json", "--features",
            f"{work}/features", "--llm-outputs", str(other)]
    assert tfvtg_main(argv) == 1  # before: silently ran VLM-only although the full method was asked for
    _one_error_line(capsys.readouterr().err, "answer none of the 2 queries", "another dataset or split")


def test_cache_folder_from_the_environment_is_checked(work, capsys, monkeypatch):
    monkeypatch.setenv("TFVTG_CACHE", str(work / "afile"))
    assert tfvtg_main(["ground", f"{work}/a.mp4", "a dog", *NO_MODEL]) == 1
    _one_error_line(capsys.readouterr().err, f"cache folder {work}/afile is a file")


def test_damaged_weights_are_a_model_error(work, tiny_blip2_dir, tiny_qwen2vl_dir, tmp_path, capsys):
    import shutil

    for name, source in (("blip2", tiny_blip2_dir), ("qwen", tiny_qwen2vl_dir)):
        shutil.copytree(source, tmp_path / name)
        (tmp_path / name / "model.safetensors").write_bytes(b"garbage, not safetensors")
    assert tfvtg_main(["ground", f"{work}/a.mp4", "a dog", "--no-cache", "--model", f"{tmp_path}/blip2"]) == 1
    _one_error_line(capsys.readouterr().err, "broken or incompatible checkpoint")  # was a SafetensorError
    assert numpro_main(["ground", f"{work}/a.mp4", "a dog", "--mllm", f"qwen2-vl:{tmp_path}/qwen"]) == 1
    _one_error_line(capsys.readouterr().err, "damaged weights file")


def test_absurd_fps_is_a_usage_error(work, capsys):
    # 1e308 used to overflow in the encoder loop, and 1e6 ran for minutes on a 3 s clip (frames are repeated).
    assert tfvtg_main(["ground", f"{work}/a.mp4", "a dog", "--fps", "1e308", *NO_MODEL]) == 2
    assert "'--fps': 1e+308 is not in the range 0<x<=1000" in capsys.readouterr().err
    assert numpro_main(["overlay", f"{work}/a.mp4", f"{work}/o", "--fps", "1e6"]) == 2
    assert "not in the range" in capsys.readouterr().err


def test_verbose_is_accepted_after_the_command(work, capsys):
    assert tfvtg_main(["ground", f"{work}/missing.mp4", "a dog", "--verbose"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: video not found: {work}/missing.mp4"


# ------------------------------------------------------------------------------------------------- numpro


def test_overlay_never_writes_over_its_video(work, capsys):
    video = work / "a.mp4"
    before = video.read_bytes()
    assert numpro_main(["overlay", str(video), str(video), "--format", "mp4"]) == 1  # before: overwrote it
    _one_error_line(capsys.readouterr().err, "is also an input")
    assert video.read_bytes() == before


@pytest.mark.parametrize(("extra", "code", "needle"), [
    (["{w}/afile/frames"], 1, "cannot write OUT"),
    (["{w}/low.mp4", "--format", "mp4", "--fps", "1e-9"], 1, "too low for a video file"),  # ZeroDivisionError
    (["{w}/big", "--size", "100000x100000"], 2, "at most 8192"),  # an av traceback from the resize
])
def test_overlay_bad_output_settings(extra, code, needle, work, capsys):
    assert numpro_main(["overlay", f"{work}/a.mp4", *_argv(extra, work)]) == code
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_overlay_mp4_whatever_the_name(work, tmp_path):
    import av

    out = tmp_path / "numbered.png"  # --format mp4 decides the container, not the suffix (was a ValueError)
    assert numpro_main(["overlay", f"{work}/a.mp4", str(out), "--format", "mp4", "--size", "64x48"]) == 0
    with av.open(str(out)) as container:
        assert "mp4" in container.format.name and container.streams.video[0].frames == 3
    assert stat.S_IMODE(out.stat().st_mode) & 0o044  # readable by others, like any file the user writes


def test_numpro_evaluate_keeps_the_answers_paid_for(openai_server, work, tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    for vid in ("a", "b"):
        (videos / f"{vid}.mp4").symlink_to(work / "a.mp4")
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({vid: {"duration": 3.0, "timestamps": [[0.0, 1.0]], "sentences": [f"{vid}."]}
                               for vid in ("a", "b")}))
    openai_server.queue("From frame 0 to frame 1")
    openai_server.default = Reply(status=500, body={"error": {"message": "model crashed"}})
    out = tmp_path / "preds.jsonl"
    argv = ["evaluate", "--dataset", "charades-sta", "--annotations", str(ann), "--videos", str(videos),
            "--out", str(out), "--mllm", "m", "--mllm-base-url", openai_server.base_url, "--max-retries", "0",
            "--size", "64x48"]
    assert numpro_main(argv) == 1
    err = capsys.readouterr().err
    _one_error_line(err, "HTTP 500")
    partial = tmp_path / "preds.partial.jsonl"
    assert "stopped after 1 of 2 queries" in err and str(partial) in err
    lines = [json.loads(line) for line in partial.read_text().splitlines()]
    assert [(p["qid"], p["pred_relevant_windows"]) for p in lines] == [("a#0", [[0.0, 2.0, 1.0]])]
    assert not out.exists()  # --out is only ever the complete run


# ------------------------------------------------------------------------------------------ run_group itself


def _group(exc: BaseException) -> click.Group:
    @click.group()
    def group() -> None:
        """Test group."""

    @group.command()
    def boom() -> None:
        raise exc

    return group


def test_unexpected_exception_keeps_its_traceback_and_asks_for_a_report(capsys):
    assert run_group(_group(KeyError("internal")), ["boom"], "tfvtg") == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "KeyError: 'internal'" in err
    assert err.strip().splitlines()[-1].startswith("error: unexpected KeyError; this is a bug in tfvtg")


@pytest.mark.parametrize(("exc", "code", "last"), [
    (InputError("bad thing"), 1, "error: bad thing"),
    (MemoryError(), 1, "error: out of memory (MemoryError); try a smaller --batch-size"),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"), 1,
     "error: out of memory (RuntimeError)"),
    (KeyboardInterrupt(), 130, "interrupted"),
])
def test_user_side_failures_are_one_line(exc, code, last, capsys):
    assert run_group(_group(exc), ["boom"], "tfvtg") == code
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith(last)


def test_ctrl_c_during_a_run_exits_130_without_traceback(tmp_path):
    clip = make_video(tmp_path / "long.mp4", n_frames=200, fps=10)  # 20 s: 20,000 numbered PNGs at 1000 fps
    out = tmp_path / "frames"
    process = subprocess.Popen(
        [sys.executable, "-m", "numpro.cli", "overlay", str(clip), str(out), "--fps", "1000",
         "--size", "32x32"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a background shell ignores it
    )
    deadline = time.monotonic() + 60
    while not (out.is_dir() and any(out.iterdir())) and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.1)
    os.kill(process.pid, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "interrupted" and "Traceback" not in stderr
    assert stdout == ""


def test_library_messages_quoted_on_one_line_even_when_empty():
    from tfvtg.errors import first_line, one_line

    assert one_line(ValueError("bad\n  header\tbytes")) == "bad header bytes"
    assert first_line(RuntimeError("  out of memory\ntraceback details\n")) == "out of memory"
    # An exception with no message is named by its type (Qwen2-VL's loader used to raise IndexError here).
    assert one_line(OSError()) == "OSError" and first_line(ValueError()) == "ValueError"


def test_console_lowercases_levels_without_touching_the_shared_record():
    import logging

    from tfvtg.console import _LowercaseLevel

    record = logging.LogRecord("tfvtg", logging.WARNING, __file__, 1, "careful", None, None)
    assert _LowercaseLevel("%(levelname)s: %(message)s").format(record) == "warning: careful"
    assert record.levelname == "WARNING"
