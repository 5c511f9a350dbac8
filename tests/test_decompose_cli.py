"""``tfvtg decompose``: one query, and a dataset into llm_outputs.json (concurrent, saved as it goes,
resumable).

The LLM is the loopback server driven by the real ``openai`` client; the batch is also run as a subprocess and
killed midway.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.openai_server import Reply, Request
from tfvtg.cli import main
from tfvtg.decompose import validate_answer

KEY = "sk-test-SECRET-0123456789abcdef"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("TFVTG_CACHE", str(tmp_path / "cache"))


def query_of(request: Request) -> str:
    return re.fullmatch(r'Query: "(.*)"', request.messages[1]["content"], re.DOTALL).group(1)


def answer_for(query: str) -> dict:
    """A valid single-query answer that depends on the query, so a misplaced answer is noticed."""
    return {"reasoning": "one action", "relationship": "single-query",
            "query_json": [{"sub_query_id": 0, "descriptions": [query.capitalize(), f"Someone: {query}"]}]}


def echo(request: Request) -> Reply:
    query = query_of(request)
    if "FAIL" in query:
        return Reply(content="I'd rather not.")
    return Reply(content=json.dumps(answer_for(query)))


def make_annotations(path: Path, videos: int, per_video: int) -> dict:
    data = {f"V{v:03d}": {"duration": 30.0, "timestamps": [[1.0, 5.0]] * per_video,
                          "sentences": [f"person number {v} does thing {s}." for s in range(per_video)]}
            for v in range(videos)}
    path.write_text(json.dumps(data))
    return data


def check_output(out: Path, annotations: dict, failed: set[str] = frozenset()) -> dict:
    """Same records and key order plus ``response`` aligned with ``sentences``; the expected answer or {}."""
    data = json.loads(out.read_text())
    assert list(data) == list(annotations)
    for vid, record in data.items():
        assert list(record) == [*annotations[vid], "response"]
        assert {k: v for k, v in record.items() if k != "response"} == annotations[vid]
        assert len(record["response"]) == len(record["sentences"])
        for sentence, response in zip(record["sentences"], record["response"], strict=True):
            expected = {} if sentence in failed else validate_answer(answer_for(sentence), sentence)
            assert response == expected
    return data


def run(capsys, *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# --------------------------------------------------------------------------------------------- one query


def test_one_query_readable(openai_server, capsys):
    openai_server.default = echo
    status, out, err = run(capsys, "decompose", "a person sits down.", "--llm", "test-model",
                           "--llm-base-url", openai_server.base_url)
    assert status == 0, err
    assert out.splitlines() == [
        "query: a person sits down.",
        "relationship: single-query (from llm)",
        "  0 (whole query):",
        "      A person sits down.",
        "      Someone: a person sits down.",
        "reasoning: one action",
    ]
    assert openai_server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    status, out, _ = run(capsys, "decompose", "a person sits down.", "--llm", "test-model",
                         "--llm-base-url", openai_server.base_url)
    assert "(from cache)" in out and len(openai_server.requests) == 1
    status, out, _ = run(capsys, "decompose", "a person sits down.", "--llm", "test-model", "--no-cache",
                         "--llm-base-url", openai_server.base_url)
    assert "(from llm)" in out and len(openai_server.requests) == 2


def test_one_query_json(openai_server, capsys):
    openai_server.default = echo
    status, out, _ = run(capsys, "decompose", "a person sits down.", "--json", "--llm", "test-model",
                         "--llm-base-url", openai_server.base_url)
    assert status == 0
    expected = {"query": "a person sits down.", "source": "llm", **answer_for("a person sits down.")}
    assert json.loads(out) == expected


def test_one_query_fallback_json_says_why(openai_server, capsys):
    openai_server.default = echo
    status, out, err = run(capsys, "decompose", "FAIL here", "--json", "--llm", "test-model",
                           "--max-attempts", "2", "--llm-base-url", openai_server.base_url)
    assert status == 0
    result = json.loads(out)
    assert result["source"] == "fallback" and result["note"].startswith("no valid LLM answer in 2 attempts")
    assert result["query_json"] == [{"sub_query_id": 0, "descriptions": ["FAIL here"]}]
    assert "warning: query 'FAIL here' falls back" in err
    assert len(openai_server.requests) == 2 and KEY not in out + err


def test_no_llm_makes_no_request(openai_server, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    for args in (["--llm", "none"], [], ["--llm", "test-model"]):
        status, out, err = run(capsys, "decompose", "a person sits down.", *args)
        assert status == 0 and "fallback: no LLM configured" in out
        assert err.count("info: no LLM configured") == 1
    assert openai_server.requests == []


def test_rejected_key_is_one_error_line(openai_server, capsys):
    openai_server.default = Reply(status=401, body={"error": {"message": f"bad key {KEY}"}})
    status, out, err = run(capsys, "decompose", "a person sits down.", "--llm", "test-model",
                           "--llm-base-url", openai_server.base_url)
    assert status == 1 and out == ""
    assert err.startswith("error: LLM request to model 'test-model'") and err.count("\n") == 1
    assert "check the API key" in err and KEY not in err


@pytest.mark.parametrize(("args", "message"), [
    ([], "give a QUERY"),
    (["q", "--annotations", "a.json", "--out", "o.json"], "not both"),
    (["q", "--resume"], "go with --annotations"),
    (["--annotations", "a.json"], "needs --out"),
])
def test_usage_errors(capsys, args, message):
    status, _, err = run(capsys, "decompose", *args)
    assert status == 1 and message in err


# ------------------------------------------------------------------------------------------------ batch


def test_batch_writes_llm_outputs(openai_server, capsys, tmp_path):
    openai_server.default = echo
    annotations = make_annotations(tmp_path / "ann.json", videos=4, per_video=3)
    out = tmp_path / "out" / "llm_outputs.json"
    status, stdout, err = run(capsys, "decompose", "--annotations", str(tmp_path / "ann.json"),
                              "--out", str(out), "--llm", "test-model", "--llm-base-url",
                              openai_server.base_url, "--concurrency", "3", "--save-every", "2")
    assert status == 0, err
    check_output(out, annotations)
    assert sorted(query_of(r) for r in openai_server.requests) == sorted(
        s for record in annotations.values() for s in record["sentences"])
    assert ("12 queries: 0 kept from the output file, 12 answered by the LLM, 0 from the cache, 0 failed"
            in stdout)
    assert not list(out.parent.glob(".*.tmp"))  # no temporary files left behind

    status, _, err = run(capsys, "decompose", "--annotations", str(tmp_path / "ann.json"), "--out", str(out),
                         "--llm", "test-model", "--llm-base-url", openai_server.base_url)
    assert status == 1 and "exists; pass --resume" in err


def test_batch_failures_then_resume_fills_only_them(openai_server, capsys, tmp_path):
    openai_server.default = echo
    annotations = make_annotations(tmp_path / "ann.json", videos=3, per_video=2)
    annotations["V001"]["sentences"][1] = "FAIL person number 1 does it."
    (tmp_path / "ann.json").write_text(json.dumps(annotations))
    out = tmp_path / "llm_outputs.json"
    args = ["decompose", "--annotations", str(tmp_path / "ann.json"), "--out", str(out),
            "--llm", "test-model",
            "--llm-base-url", openai_server.base_url, "--max-attempts", "1", "--no-cache"]
    status, stdout, _ = run(capsys, *args)
    assert status == 0 and "1 failed (left as {}: run again with --resume)" in stdout
    check_output(out, annotations, failed={"FAIL person number 1 does it."})
    assert len(openai_server.requests) == 6

    openai_server.default = Reply(content=json.dumps(answer_for("FAIL person number 1 does it.")))
    status, stdout, _ = run(capsys, *args, "--resume")
    assert status == 0 and "6 queries: 5 kept from the output file, 1 answered by the LLM" in stdout
    check_output(out, annotations)
    assert len(openai_server.requests) == 7
    assert query_of(openai_server.requests[-1]) == "FAIL person number 1 does it."


def test_batch_limit_then_resume_keeps_other_videos(openai_server, capsys, tmp_path):
    openai_server.default = echo
    annotations = make_annotations(tmp_path / "ann.json", videos=3, per_video=1)
    out = tmp_path / "llm_outputs.json"
    args = ["decompose", "--annotations", str(tmp_path / "ann.json"), "--out", str(out),
            "--llm", "test-model",
            "--llm-base-url", openai_server.base_url]
    assert run(capsys, *args, "--limit", "2")[0] == 0
    assert list(json.loads(out.read_text())) == ["V000", "V001"]
    assert run(capsys, *args, "--resume")[0] == 0
    assert run(capsys, *args, "--resume", "--limit", "1")[0] == 0
    check_output(out, annotations)
    assert len(openai_server.requests) == 3


def test_resume_asks_again_for_a_video_whose_response_list_is_short(openai_server, capsys, tmp_path):
    openai_server.default = echo
    annotations = make_annotations(tmp_path / "ann.json", videos=2, per_video=2)
    out = tmp_path / "llm_outputs.json"
    args = ["decompose", "--annotations", str(tmp_path / "ann.json"), "--out", str(out), "--llm",
            "test-model", "--llm-base-url", openai_server.base_url, "--no-cache"]
    assert run(capsys, *args)[0] == 0
    edited = json.loads(out.read_text())
    edited["V001"]["response"] = edited["V001"]["response"][:1]  # hand-edited: one answer short
    out.write_text(json.dumps(edited))
    assert run(capsys, *args, "--resume")[0] == 0
    check_output(out, annotations)
    assert len(openai_server.requests) == 6  # 4, then both sentences of V001 again


def test_batch_stops_on_rejected_key_and_keeps_the_file(openai_server, capsys, tmp_path):
    openai_server.default = Reply(status=401, body={"error": {"message": "invalid key"}})
    annotations = make_annotations(tmp_path / "ann.json", videos=2, per_video=2)
    out = tmp_path / "llm_outputs.json"
    status, _, err = run(capsys, "decompose", "--annotations", str(tmp_path / "ann.json"), "--out", str(out),
                         "--llm", "test-model", "--llm-base-url", openai_server.base_url,
                         "--concurrency", "1")
    assert status == 1 and "HTTP 401: invalid key; check the API key" in err
    assert len(openai_server.requests) == 1  # not one failed request per query
    check_output(out, annotations, failed={s for record in annotations.values() for s in record["sentences"]})


def test_batch_bad_annotation_file(capsys, tmp_path):
    (tmp_path / "ann.json").write_text(json.dumps({"V1": {"sentences": "not a list"}}))
    status, _, err = run(capsys, "decompose", "--annotations", str(tmp_path / "ann.json"), "--out",
                         str(tmp_path / "o.json"), "--llm", "m", "--llm-base-url", "http://127.0.0.1:9/v1")
    assert status == 1 and "record 'V1' has no \"sentences\" list" in err
    status, _, err = run(capsys, "decompose", "--annotations", str(tmp_path / "missing.json"), "--out",
                         str(tmp_path / "o.json"), "--llm", "m", "--llm-base-url", "http://127.0.0.1:9/v1")
    assert status == 1 and "annotation file not found" in err


def test_batch_needs_an_llm(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    make_annotations(tmp_path / "ann.json", videos=1, per_video=1)
    status, _, err = run(capsys, "decompose", "--annotations", str(tmp_path / "ann.json"), "--out",
                         str(tmp_path / "o.json"), "--llm", "test-model")
    assert status == 1 and "no LLM configured" in err


def start_batch(server, tmp_path: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OPENAI_API_KEY": KEY, "TFVTG_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": str(REPO)}
    env.pop("OPENAI_BASE_URL", None)
    command = [sys.executable, "-m", "tfvtg.cli", "decompose", "--annotations", str(tmp_path / "ann.json"),
               "--out", str(tmp_path / "llm_outputs.json"), "--llm", "test-model", "--llm-base-url",
               server.base_url, "--concurrency", "2", "--save-every", "3", *extra]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def answered(path: Path) -> dict[tuple[str, int], dict]:
    """The non-empty answers in an llm_outputs.json being written (empty while it does not exist yet)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    return {(vid, i): r for vid, rec in data.items() for i, r in enumerate(rec["response"]) if r}


def kill_after(process: subprocess.Popen, out: Path, answers: int, sig: int) -> dict[tuple[str, int], dict]:
    deadline = time.monotonic() + 60
    while len(answered(out)) < answers:
        assert process.poll() is None, "the batch ended before it could be interrupted"
        assert time.monotonic() < deadline, "the batch saved nothing in 60 s"
        time.sleep(0.02)
    process.send_signal(sig)
    process.wait(timeout=30)
    return answered(out)


@pytest.mark.parametrize("cache", [False, True])
def test_batch_killed_midway_loses_nothing_saved(openai_server, capsys, tmp_path, cache):
    """SIGKILL after some saves: --resume keeps every saved answer and asks only for the others.

    With the cache on, answers received but not yet saved when the process died are not asked again either.
    """
    openai_server.default = lambda request: Reply(content=echo(request).content, delay=0.05)
    annotations = make_annotations(tmp_path / "ann.json", videos=10, per_video=4)
    out = tmp_path / "llm_outputs.json"
    process = start_batch(openai_server, tmp_path, *([] if cache else ["--no-cache"]))
    saved = kill_after(process, out, answers=6, sig=signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL
    assert 6 <= len(saved) < 40
    asked_before = len(openai_server.requests)

    args = ["decompose", "--annotations", str(tmp_path / "ann.json"), "--out", str(out),
            "--llm", "test-model",
            "--llm-base-url", openai_server.base_url, "--resume", *([] if cache else ["--no-cache"])]
    status, stdout, err = run(capsys, *args)
    assert status == 0, err
    final = check_output(out, annotations)
    assert all(final[vid]["response"][i] == answer for (vid, i), answer in saved.items())
    asked_again = [query_of(r) for r in openai_server.requests[asked_before:]]
    assert not {annotations[vid]["sentences"][i] for vid, i in saved} & set(asked_again)
    if cache:
        # Only answers still in flight at the kill (at most --concurrency) are asked twice in all.
        assert len(openai_server.requests) <= 40 + 2
    else:
        assert len(asked_again) == 40 - len(saved)
    assert f"{len(saved)} kept from the output file" in stdout


def test_batch_terminated_saves_what_it_has(openai_server, tmp_path):
    """SIGTERM (a polite kill) saves every answer received so far before the process ends."""
    openai_server.default = lambda request: Reply(content=echo(request).content, delay=0.05)
    make_annotations(tmp_path / "ann.json", videos=10, per_video=4)
    out = tmp_path / "llm_outputs.json"
    process = start_batch(openai_server, tmp_path, "--no-cache", "--save-every", "1000")
    # Nothing is saved periodically with --save-every 1000: wait for a few answers, then terminate.
    deadline = time.monotonic() + 60
    while len(openai_server.requests) < 6:
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) != 0
    saved = answered(out)
    assert len(saved) >= 4  # of 6+ asked, at most --concurrency (2) were in flight
    assert len(saved) <= len(openai_server.requests) < 40
