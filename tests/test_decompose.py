"""tfvtg.decompose: parsing and validating untrusted answers, the LLM round trip, cache and fallbacks.

The LLM is the loopback server of tests/fixtures/openai_server.py, driven by the real ``openai`` client.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pytest
from tfvtg.prompts import load_prompt

from tests.fixtures.openai_server import Reply
from tfvtg.decompose import (
    MAX_DESCRIPTION_CHARS,
    Decomposer,
    Decomposition,
    InvalidAnswerError,
    decompose,
    default_cache_dir,
    parse_answer,
    validate_answer,
)
from tfvtg.errors import InputError, LLMError

KEY = "sk-test-SECRET-0123456789abcdef"
QUERY = "a person opens the door and walks out."
GOOD = {
    "reasoning": "Two actions, one after the other.",
    "relationship": "sequentially",
    "query_json": [
        {"sub_query_id": 0, "descriptions": ["A person opens the door and walks out.",
                                             "Someone opens a door and leaves."]},
        {"sub_query_id": 1, "descriptions": ["A person opens the door.", "Someone pulls a door open."]},
        {"sub_query_id": 2, "descriptions": ["A person walks out.", "Someone leaves the room."]},
    ],
}
GOOD_TEXT = json.dumps(GOOD)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    # The CLI's setup_logging (run in-process by other tests) stops "tfvtg" records from reaching caplog.
    monkeypatch.setattr(logging.getLogger("tfvtg"), "propagate", True)
    monkeypatch.setattr(logging.getLogger("tfvtg"), "handlers", [])
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("TFVTG_CACHE", str(tmp_path / "default-cache"))


def ask(server, tmp_path: Path, query: str = QUERY, **kw) -> Decomposition:
    kw.setdefault("timeout", 5.0)
    kw.setdefault("max_retries", 0)
    kw.setdefault("cache_dir", tmp_path / "cache")
    return decompose(query, "test-model", base_url=server.base_url, api_key=KEY, **kw)


def check_good(result: Decomposition, source: str = "llm") -> None:
    assert result.source == source and result.note is None
    assert result.query == QUERY
    assert result.relation == "sequentially"
    assert result.paraphrases == ("A person opens the door and walks out.",
                                  "Someone opens a door and leaves.")
    assert result.sub_events == (("A person opens the door.", "Someone pulls a door open."),
                                 ("A person walks out.", "Someone leaves the room."))


def cache_files(tmp_path: Path) -> list[Path]:
    return sorted(p for p in tmp_path.rglob("*") if p.is_file())


# ----------------------------------------------------------------------------------- parse_answer


@pytest.mark.parametrize("text", [
    GOOD_TEXT,
    f"```json\n{GOOD_TEXT}\n```",
    f"Here is the decomposition:\n```\n{json.dumps(GOOD, indent=2)}\n```\nHope this helps!",
    f"Sure. {GOOD_TEXT} Let me know.",
    f"```json\n{GOOD_TEXT}",  # unclosed fence
])
def test_parse_strips_fences_and_prose(text):
    assert parse_answer(text) == GOOD


def test_parse_repairs_json5_slips():
    text = """{
      'reasoning': 'it\\'s one "action"',  // a comment
      'relationship': 'single-query', /* another */
      'flag': True, 'none': None,
      'query_json': [{'sub_query_id': 0, 'descriptions': ['A person sits down.', 'Someone sits.',],},],
    }"""
    assert parse_answer(text) == {
        "reasoning": 'it\'s one "action"', "relationship": "single-query", "flag": True, "none": None,
        "query_json": [{"sub_query_id": 0, "descriptions": ["A person sits down.", "Someone sits."]}],
    }


def test_parse_keeps_commas_and_quotes_inside_strings():
    assert parse_answer('{"a": "x, ]", "b": "person\'s cup",}') == {"a": "x, ]", "b": "person's cup"}


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty"),
    ("   \n", "empty"),
    ("I cannot help with that.", "not valid JSON"),
    ('{"relationship": }', "not valid JSON"),
    ("[" * 100_001, "characters long"),
    ("[" * 20_000 + "]" * 20_000, "nested too deeply"),
])
def test_parse_rejects(text, message):
    with pytest.raises(InvalidAnswerError, match=message):
        parse_answer(text)


# -------------------------------------------------------------------------------- validate_answer


def test_validate_normalises():
    answer = {
        "relationship": " Sequential ", "extra": 1,
        "query_json": [{"sub_query_id": "0", "descriptions": "  A person opens the   door and walks out. "},
                       {"sub_query_id": 1, "descriptions": ["A person opens the door."]}],
    }
    assert validate_answer(answer, QUERY) == {
        "relationship": "sequentially",
        "query_json": [{"sub_query_id": 0, "descriptions": ["A person opens the door and walks out."]},
                       {"sub_query_id": 1, "descriptions": ["A person opens the door."]}],
    }


def with_entries(*entries, relation="sequentially"):
    return {"relationship": relation, "query_json": list(entries)}


E0 = {"sub_query_id": 0, "descriptions": ["A person opens the door and walks out."]}


@pytest.mark.parametrize(("answer", "message"), [
    ([GOOD], "must be a JSON object, not a list"),
    ({"query_json": GOOD["query_json"]}, 'no "relationship"'),
    ({**GOOD, "relationship": "parallel"},
     "must be one of single-query, sequentially, simultaneously; got 'parallel'"),
    ({**GOOD, "query_json": []}, "non-empty list"),
    ({**GOOD, "query_json": {"0": E0}}, "non-empty list"),
    (with_entries(E0, {"sub_query_id": 2, "descriptions": ["x y"]}), "entry 1 must have \"sub_query_id\": 1"),
    (with_entries({"sub_query_id": 1, "descriptions": ["A person opens the door."]}), "entry 0 must have"),
    (with_entries(E0, {"sub_query_id": True, "descriptions": ["x"]}), 'entry 1 must have "sub_query_id": 1'),
    (with_entries(E0, {"sub_query_id": 1, "descriptions": []}), "non-empty list of sentences"),
    (with_entries(E0, {"sub_query_id": 1, "descriptions": ["ok", "  "]}), "not a non-empty string"),
    (with_entries(E0, {"sub_query_id": 1, "descriptions": ["ok", 3]}), "not a non-empty string: 3"),
    (with_entries(E0, {"sub_query_id": 1, "descriptions": ["x" * (MAX_DESCRIPTION_CHARS + 1)]}),
     "the limit is 300"),
    (with_entries(E0, {"sub_query_id": 1, "descriptions": ["a person opens"] * 9}),
     "9 descriptions; at most 8"),
    (with_entries(*[E0] + [{"sub_query_id": i, "descriptions": ["x"]} for i in range(1, 10)]), "10 entries"),
    (with_entries(E0, "open the door"), "entry 1 must be an object, not a string"),
    (with_entries(E0), "'sequentially' but \"query_json\" has no sub-events"),
    (with_entries({"sub_query_id": 0, "descriptions": ["Someone plays a guitar."]}, relation="single-query"),
     "share no word"),
])
def test_validate_rejects(answer, message):
    with pytest.raises(InvalidAnswerError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_answer(answer, QUERY)


@pytest.mark.parametrize(("query", "rewrite"), [
    ("someone eats it.", "A person is eating."),
    ("person sits down.", "An individual is sitting."),
    ("person opens a window.", "Someone opened the window."),
])
def test_rewrite_check_sees_inflections(query, rewrite):
    answer = {"relationship": "single-query", "query_json": [{"sub_query_id": 0, "descriptions": [rewrite]}]}
    assert validate_answer(answer, query)["query_json"][0]["descriptions"] == [rewrite]


def test_invalid_answer_is_an_input_error():
    assert issubclass(InvalidAnswerError, InputError)


def test_shipped_charades_answers(shared_data):
    """All 3,720 official answers load with from_tfvtg, with the documented relation counts, and validate."""
    data = json.loads((shared_data / "charades-sta" / "llm_outputs.json").read_text())
    relations: Counter[str] = Counter()
    shapes: Counter[tuple[str, int]] = Counter()
    rejected: Counter[str] = Counter()
    total = 0
    for record in data.values():
        assert len(record["response"]) == len(record["sentences"])
        for sentence, answer in zip(record["sentences"], record["response"], strict=True):
            total += 1
            loaded = Decomposition.from_tfvtg(answer, sentence)
            assert loaded.source == "file" and loaded.note is None and loaded.paraphrases
            relations[loaded.relation] += 1
            shapes[(loaded.relation, 1 + len(loaded.sub_events))] += 1
            try:
                checked = validate_answer(answer, sentence)
            except InvalidAnswerError as exc:
                rejected[str(exc)] += 1
                continue
            assert Decomposition.from_tfvtg(checked, sentence) == loaded  # validation changes nothing here
    assert total == 3720
    assert relations == {"single-query": 3150, "sequentially": 389, "simultaneously": 181}
    assert shapes[("sequentially", 3)] == 374 and shapes[("simultaneously", 3)] == 172
    assert shapes[("single-query", 1)] == 3149
    assert not rejected, rejected


# ------------------------------------------------------------------------------ the LLM round trip


def test_good_answer(openai_server, tmp_path):
    openai_server.queue(GOOD_TEXT)
    check_good(ask(openai_server, tmp_path))
    (request,) = openai_server.requests
    assert request.json["model"] == "test-model" and request.json["temperature"] == 0
    system, user = request.messages
    assert system == {"role": "system", "content": load_prompt("tfvtg/decompose")}
    assert user == {"role": "user", "content": f'Query: "{QUERY}"'}


def test_prompt_asks_for_the_schema():
    prompt = load_prompt("tfvtg/decompose")
    for word in ('"relationship"', '"query_json"', '"sub_query_id"', '"descriptions"', '"reasoning"',
                 '"single-query"', '"sequentially"', '"simultaneously"'):
        assert word in prompt
    example = prompt[prompt.index("Reply:\n") + len("Reply:\n"):]
    assert validate_answer(parse_answer(example), "a person opens the fridge and takes out a bottle of milk.")


def test_fenced_answer(openai_server, tmp_path):
    openai_server.queue(f"```json\n{json.dumps(GOOD, indent=2)}\n```")
    check_good(ask(openai_server, tmp_path))


def test_trailing_commas_and_single_quotes(openai_server, tmp_path):
    openai_server.queue(GOOD_TEXT.replace('"', "'").replace("]", ",]").replace("}", ",}"))
    check_good(ask(openai_server, tmp_path))
    assert len(openai_server.requests) == 1


def test_malformed_answer_repaired_on_retry(openai_server, tmp_path):
    openai_server.queue('{"relationship": "sequentially", "query_json": [', GOOD_TEXT)
    check_good(ask(openai_server, tmp_path))
    first, second = openai_server.requests
    assert len(first.messages) == 2
    assert second.messages[:2] == first.messages
    assistant, follow_up = second.messages[2:]
    assert assistant == {"role": "assistant", "content": '{"relationship": "sequentially", "query_json": ['}
    assert follow_up["role"] == "user"
    assert "not valid JSON" in follow_up["content"] and "only the JSON object" in follow_up["content"]


def test_wrong_schema_falls_back_with_note(openai_server, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="tfvtg.decompose")
    openai_server.default = Reply(content=json.dumps({**GOOD, "relationship": "parallel"}))
    result = ask(openai_server, tmp_path, max_attempts=3)
    assert result == Decomposition.single(QUERY)
    assert result.is_fallback and result.paraphrases == () and result.main_descriptions == (QUERY,)
    assert result.note.startswith("no valid LLM answer in 3 attempts: \"relationship\" must be one of")
    assert len(openai_server.requests) == 3
    assert "got 'parallel'" in openai_server.requests[2].messages[-1]["content"]
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "falls back" in caplog.records[0].getMessage()
    assert result.to_dict()["note"] == result.note and result.to_tfvtg() == {}
    assert cache_files(tmp_path / "cache") == []  # only validated answers are cached


def test_500_then_success(openai_server, tmp_path):
    openai_server.queue(Reply(status=500), GOOD_TEXT)
    check_good(ask(openai_server, tmp_path, max_retries=1))
    assert len(openai_server.requests) == 2


def test_429_with_retry_after_then_success(openai_server, tmp_path):
    openai_server.queue(Reply(status=429, headers={"Retry-After": "1"}), GOOD_TEXT)
    check_good(ask(openai_server, tmp_path, max_retries=1))
    first, second = openai_server.requests
    assert second.received - first.received >= 0.95  # the header's second, not the 0.5 s backoff


def test_rate_limit_beyond_the_bound_falls_back_at_once(openai_server, tmp_path):
    openai_server.default = Reply(status=429, headers={"Retry-After": "3600"})
    result = ask(openai_server, tmp_path, max_retries=3)
    assert result.is_fallback and "wait 3600 s" in result.note
    assert len(openai_server.requests) == 1


def test_hanging_server_times_out_and_falls_back(openai_server, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="tfvtg.decompose")
    openai_server.default = Reply(content=GOOD_TEXT, delay=30)
    result = ask(openai_server, tmp_path, timeout=0.3, max_retries=1)
    assert result.is_fallback and result.query == QUERY
    assert result.note.startswith("LLM unavailable: LLM request to model 'test-model' at http://127.0.0.1:")
    assert result.note.endswith("failed after 2 attempts: no answer within 0.3 s")
    assert len(openai_server.requests) == 2
    assert "falls back" in caplog.text


def test_rejected_key_raises(openai_server, tmp_path):
    body = {"error": {"message": f"Incorrect API key provided: {KEY}"}}
    openai_server.default = Reply(status=401, body=body)
    with pytest.raises(LLMError, match="HTTP 401") as info:
        ask(openai_server, tmp_path)
    assert KEY not in str(info.value)


def test_cache_hit_makes_no_request(openai_server, tmp_path):
    openai_server.queue(GOOD_TEXT)
    check_good(ask(openai_server, tmp_path))
    (path,) = cache_files(tmp_path / "cache")
    record = json.loads(path.read_text())
    assert record["query"] == QUERY and record["model"] == "test-model"
    assert record["answer"] == validate_answer(GOOD, QUERY)
    check_good(ask(openai_server, tmp_path), source="cache")
    check_good(ask(openai_server, tmp_path, query=f"  {QUERY} "), source="cache")
    assert len(openai_server.requests) == 1
    openai_server.queue(GOOD_TEXT)  # another model is another key
    assert decompose(QUERY, "other-model", base_url=openai_server.base_url, cache_dir=tmp_path / "cache",
                     max_retries=0).source == "llm"
    assert len(openai_server.requests) == 2 and len(cache_files(tmp_path / "cache")) == 2


def test_no_cache_neither_reads_nor_writes(openai_server, tmp_path):
    openai_server.default = Reply(content=GOOD_TEXT)
    ask(openai_server, tmp_path)
    check_good(ask(openai_server, tmp_path, use_cache=False))
    assert len(openai_server.requests) == 2
    (tmp_path / "cache").rename(tmp_path / "moved")
    check_good(ask(openai_server, tmp_path, use_cache=False))
    assert not (tmp_path / "cache").exists()


def test_bad_cache_file_is_ignored(openai_server, tmp_path):
    openai_server.default = Reply(content=GOOD_TEXT)
    ask(openai_server, tmp_path)
    (path,) = cache_files(tmp_path / "cache")
    path.write_text('{"model": "test-model", "prompt_sha256": "x", "query": "trunc')
    check_good(ask(openai_server, tmp_path))
    record = json.loads(path.read_text())  # rewritten with a good answer
    record["answer"]["relationship"] = "parallel"
    path.write_text(json.dumps(record))
    check_good(ask(openai_server, tmp_path))
    assert len(openai_server.requests) == 3


def test_default_cache_dir(monkeypatch, tmp_path, openai_server):
    assert default_cache_dir() == tmp_path / "default-cache" / "llm"
    monkeypatch.delenv("TFVTG_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "tfvtg" / "llm"
    monkeypatch.setenv("TFVTG_CACHE", str(tmp_path / "default-cache"))
    openai_server.queue(GOOD_TEXT)
    decompose(QUERY, "test-model", base_url=openai_server.base_url, max_retries=0)
    assert len(cache_files(tmp_path / "default-cache" / "llm")) == 1


def test_no_llm_configured_makes_no_request(openai_server, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="tfvtg")
    for llm in (None, "none", "test-model"):  # the last: neither key nor base URL anywhere
        result = decompose(QUERY, llm, cache_dir=tmp_path / "cache")
        assert result == Decomposition.single(QUERY) and result.note == "no LLM configured"
    assert openai_server.requests == []
    assert not (tmp_path / "cache").exists()
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 3 and "no LLM configured" in infos[0].getMessage()
    decomposer = Decomposer(None)
    caplog.clear()
    decomposer("first query")
    decomposer("second query")
    assert len(caplog.records) == 1  # one info line per decomposer, not per query


def test_local_server_needs_no_key(openai_server, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    openai_server.queue(GOOD_TEXT)
    check_good(decompose(QUERY, "test-model", cache_dir=tmp_path / "cache", max_retries=0))
    assert openai_server.requests[0].headers["authorization"] == "Bearer EMPTY"


def test_empty_query_is_an_error():
    with pytest.raises(InputError, match="query is empty"):
        decompose("  ", None)


def test_key_never_in_cache_logs_or_notes(openai_server, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    notes = []
    openai_server.queue("not json at all", GOOD_TEXT)
    check_good(ask(openai_server, tmp_path))
    openai_server.queue(Reply(status=503, body={"error": {"message": f"overloaded ({KEY})"}}))
    notes.append(ask(openai_server, tmp_path, query="a person sits down.").note)
    openai_server.queue("{}", "[]", "nope")
    notes.append(ask(openai_server, tmp_path, query="a person stands up.").to_dict()["note"])
    assert all(notes) and "overloaded (***)" in notes[0]
    assert len(openai_server.requests) == 6
    assert KEY not in caplog.text and not any(KEY in note for note in notes)
    for path in cache_files(tmp_path):
        assert KEY not in path.read_text()
