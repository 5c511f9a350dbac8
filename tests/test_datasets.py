"""tfvtg.datasets on the real annotation files in ../shared/data and on small synthetic files per error."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tfvtg.datasets import (
    DATASETS,
    GroundingQuery,
    attach_llm_answers,
    load_dataset,
    load_llm_outputs,
    load_qvhighlights,
    load_tfvtg_annotations,
    read_jsonl,
    write_jsonl,
)
from tfvtg.errors import InputError

# ------------------------------------------------------------------------------------------ real files


@pytest.fixture(scope="module")
def charades(shared_data: Path) -> list[GroundingQuery]:
    return load_dataset("charades-sta", shared_data / "charades-sta" / "charades_test.json")


def test_charades_test(charades):
    assert len(charades) == 3720
    assert len({q.vid for q in charades}) == 1334
    assert len({q.qid for q in charades}) == 3720
    first = charades[0]
    assert first == GroundingQuery(
        qid="3MSZA#0", vid="3MSZA", query="person turn a light on.", duration=30.96, windows=((24.3, 30.4),)
    )
    # File order: the 4 sentences of 3MSZA, then AMT7R.
    assert [q.qid for q in charades[:5]] == ["3MSZA#0", "3MSZA#1", "3MSZA#2", "3MSZA#3", "AMT7R#0"]
    assert charades[4].query == "a person is putting a picture onto the wall."
    assert charades[4].window == (4.3, 12.5)
    # Ground-truth ends past the annotated duration are kept as they are (a known Charades-STA quirk).
    assert sum(q.window[1] > q.duration for q in charades) == 562
    assert all(q.llm_answer is None for q in charades)


def test_activitynet_test(shared_data):
    queries = load_dataset("activitynet", shared_data / "activitynet" / "test.json")
    assert len(queries) == 17031
    assert len({q.vid for q in queries}) == 4885
    assert queries[0].qid == "v_uqiMw7tQ1Cc#0"
    assert queries[0].duration == 55.15
    assert [q.window for q in queries[:3]] == [(0.0, 4.14), (4.14, 33.36), (33.36, 55.15)]
    # The file's sentences start with a space; the query is stripped.
    assert queries[1].query.startswith("One man is holding onto a rope")
    assert all(q.query == q.query.strip() and q.query for q in queries)


def test_qvhighlights_val(shared_data):
    queries = load_dataset("qvhighlights", shared_data / "qvhighlights" / "highlight_val_release.jsonl")
    assert len(queries) == 1550
    first = queries[0]
    assert first.qid == "2579"
    assert first.vid == "NUsG9BgSes0_210.0_360.0"
    assert first.query == "A girl and her mother cooked while talking with each other on facetime."
    assert first.duration == 150.0
    assert first.windows == ((82.0, 150.0),)
    assert first.relevant_clip_ids[:3] == (41, 42, 43)
    assert first.saliency_scores[:2] == ((1, 1, 2), (1, 1, 3))
    assert len(first.relevant_clip_ids) == len(first.saliency_scores)
    assert Counter(len(q.windows) for q in queries)[1] == 1020
    assert all(len(row) == 3 for q in queries for row in q.saliency_scores)


def test_llm_outputs_join(shared_data, charades):
    path = shared_data / "charades-sta" / "llm_outputs.json"
    answers = load_llm_outputs(path)
    assert len(answers) == 3720
    relations = Counter(a.get("relationship") for a in answers.values())
    assert relations == {"single-query": 3150, "sequentially": 389, "simultaneously": 181}
    assert answers[("AMT7R", 0)]["relationship"] == "single-query"
    e6dlk = answers[("E6DLK", 0)]
    assert e6dlk["relationship"] == "sequentially"
    assert [part["sub_query_id"] for part in e6dlk["query_json"]] == [0, 1, 2]
    assert e6dlk["query_json"][1]["descriptions"][0] == "A person runs to the window."

    joined = attach_llm_answers(charades, answers)
    direct = load_tfvtg_annotations(path)
    assert joined == direct  # the llm_outputs file carries the same annotations, in the same order
    assert all(q.llm_answer is not None for q in joined)
    e6 = next(q for q in joined if q.vid == "E6DLK")
    assert e6.window == (9.3, 14.4) and e6.duration == 27.25
    assert e6.llm_answer is e6dlk or e6.llm_answer == e6dlk


# ------------------------------------------------------------------------------------- synthetic files


def _write(tmp_path: Path, name: str, content) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


def test_tfvtg_shapes_duration_keys_and_responses(tmp_path):
    data = {
        "A": {"duration": 10, "timestamps": [[1, 2], [3, 12.5]], "sentences": [" first.", "second "]},
        "B": {"video_duration": 20.5, "timestamps": [[0, 5]], "sentences": ["cd split."], "novels": ["x"]},
    }
    queries = load_tfvtg_annotations(_write(tmp_path, "a.json", data))
    assert [(q.qid, q.query, q.duration, q.windows) for q in queries] == [
        ("A#0", "first.", 10.0, ((1.0, 2.0),)),
        ("A#1", "second", 10.0, ((3.0, 12.5),)),  # end past the duration: kept
        ("B#0", "cd split.", 20.5, ((0.0, 5.0),)),
    ]
    data["A"]["response"] = [{}, {"relationship": "single-query", "query_json": []}]
    data["B"]["response"] = [{"relationship": "sequentially"}]
    path = _write(tmp_path, "llm.json", data)
    queries = load_tfvtg_annotations(path)
    assert [q.llm_answer for q in queries] == [
        {},
        {"relationship": "single-query", "query_json": []},
        {"relationship": "sequentially"},
    ]
    assert load_llm_outputs(path) == {
        ("A", 0): {},
        ("A", 1): {"relationship": "single-query", "query_json": []},
        ("B", 0): {"relationship": "sequentially"},
    }


def test_attach_llm_answers_partial(tmp_path):
    queries = load_tfvtg_annotations(
        _write(
            tmp_path, "a.json", {"A": {"duration": 9, "timestamps": [[1, 2]] * 2, "sentences": ["x", "y"]}}
        )
    )
    out = attach_llm_answers(queries, {("A", 1): {"relationship": "single-query"}})
    assert [q.llm_answer for q in out] == [None, {"relationship": "single-query"}]
    with pytest.raises(InputError, match="form '<vid>#<sentence index>'"):
        attach_llm_answers([GroundingQuery("12", "v", "q", 1.0, ((0.0, 1.0),))], {})


@pytest.mark.parametrize(
    "content, match",
    [
        ("{not json", r"bad\.json: not valid JSON"),
        ('{"a": 1}\n{"b": 2}\n', "looks like JSON lines"),
        ([1, 2], "expected a JSON object mapping video id to record, found a list"),
        ({"V1": [1]}, "record V1 is a list"),
        ({"V1": {"duration": 3, "sentences": ["x"]}}, "record V1 lacks 'timestamps'"),
        ({"V1": {"timestamps": [[0, 1]], "sentences": ["x"]}}, "record V1 lacks 'duration'"),
        (
            {"3MSZA": {"duration": 30, "timestamps": [[0, 1]] * 3, "sentences": ["a"] * 4}},
            r"^bad\.json: record 3MSZA has 4 sentences but 3 timestamps$",
        ),
        ({"V1": {"duration": 3, "timestamps": [[0, 1, 2]], "sentences": ["x"]}}, r"timestamps\[0\] must be"),
        ({"V1": {"duration": 3, "timestamps": [[0, "1"]], "sentences": ["x"]}}, "finite number"),
        (
            {"V1": {"duration": "3", "timestamps": [[0, 1]], "sentences": ["x"]}},
            "'duration' must be a finite",
        ),
        ({"V1": {"duration": 3, "timestamps": [[0, 1]], "sentences": [5]}}, "list of strings"),
        (
            {"V1": {"duration": 3, "timestamps": [[0, 1]], "sentences": ["x"], "response": []}},
            "1 sentences but 0",
        ),
        (
            {"V1": {"duration": 3, "timestamps": [[0, 1]], "sentences": ["x"], "response": [None]}},
            r"response\[0\]",
        ),
    ],
)
def test_tfvtg_errors(tmp_path, content, match):
    path = _write(tmp_path, "bad.json", content)
    with pytest.raises(InputError, match=match):
        load_tfvtg_annotations(path)


def test_missing_files_and_directories(tmp_path):
    with pytest.raises(InputError, match="annotation file not found"):
        load_tfvtg_annotations(tmp_path / "nope.json")
    with pytest.raises(InputError, match="annotation file not found"):
        load_qvhighlights(tmp_path / "nope.jsonl")
    with pytest.raises(InputError, match="is a directory"):
        load_dataset("charades-sta", tmp_path)
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InputError, match="not a UTF-8 text file"):
        load_tfvtg_annotations(tmp_path / "bin.json")


def test_load_dataset_names(tmp_path):
    assert DATASETS == ("charades-sta", "activitynet", "qvhighlights")
    with pytest.raises(InputError, match="unknown dataset 'charades'"):
        load_dataset("charades", tmp_path / "x.json")


def test_llm_outputs_needs_responses(tmp_path):
    path = _write(tmp_path, "ann.json", {"A": {"duration": 9, "timestamps": [[1, 2]], "sentences": ["x"]}})
    with pytest.raises(InputError, match="not a TFVTG llm_outputs.json"):
        load_llm_outputs(path)


def test_qvhighlights_test_split_without_labels(tmp_path):
    lines = [
        {"qid": 5, "query": " a query ", "duration": 150, "vid": "v1"},
        {
            "qid": 6,
            "query": "b",
            "duration": 126,
            "vid": "v2",
            "relevant_windows": [[0, 2], [4, 8]],
            "relevant_clip_ids": [0, 2, 3],
            "saliency_scores": [[1, 2, 3], [4, 4, 4], [0, 0, 1]],
        },
    ]
    path = _write(tmp_path, "q.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n\n")
    a, b = load_qvhighlights(path)
    assert a == GroundingQuery(qid="5", vid="v1", query="a query", duration=150.0, windows=())
    with pytest.raises(InputError, match="no ground-truth window"):
        _ = a.window
    assert b.windows == ((0.0, 2.0), (4.0, 8.0))
    assert b.relevant_clip_ids == (0, 2, 3)
    assert b.saliency_scores == ((1, 2, 3), (4, 4, 4), (0, 0, 1))


@pytest.mark.parametrize(
    "lines, match",
    [
        (
            ['{"qid": 1, "query": "a", "duration": 4, "vid": "v"}', "{oops"],
            r"q\.jsonl: line 2 is not valid JSON",
        ),
        (["[1, 2]"], "line 1 is a JSON list, expected an object"),
        (['{"qid": 1, "query": "a", "vid": "v"}'], "line 1: record lacks 'duration'"),
        (['{"qid": 1, "query": "a", "duration": 4, "vid": "v"}'] * 2, "line 2: duplicate qid 1"),
        (['{"qid": 1, "query": 3, "duration": 4, "vid": "v"}'], "'query' must be a string"),
        (
            ['{"qid": 1, "query": "a", "duration": 4, "vid": "v", "relevant_windows": [[0]]}'],
            r"line 1 \(qid 1\): relevant_windows\[0\] must be",
        ),
        (
            [
                '{"qid": 1, "query": "a", "duration": 4, "vid": "v", "relevant_clip_ids": [0, 1],'
                ' "saliency_scores": [[1, 2, 3]]}'
            ],
            "2 relevant_clip_ids but 1 saliency_scores",
        ),
        (
            [
                '{"qid": 1, "query": "a", "duration": 4, "vid": "v", "relevant_clip_ids": [-1],'
                ' "saliency_scores": [[1, 2, 3]]}'
            ],
            "non-negative integers",
        ),
        (
            [
                '{"qid": 1, "query": "a", "duration": 4, "vid": "v", "relevant_clip_ids": [0],'
                ' "saliency_scores": [[1, "2", 3]]}'
            ],
            "lists of integers",
        ),
    ],
)
def test_qvhighlights_errors(tmp_path, lines, match):
    path = _write(tmp_path, "q.jsonl", "\n".join(lines) + "\n")
    with pytest.raises(InputError, match=match):
        load_qvhighlights(path)


# ----------------------------------------------------------------------------------------- JSON lines


def test_jsonl_round_trip_with_numpy_values(tmp_path):
    path = tmp_path / "out" / "preds.jsonl"
    records = [
        {
            "qid": "a#0",
            "pred_relevant_windows": np.array([[1.5, 3.0, 0.9]], dtype=np.float32),
            "n": np.int64(3),
        },
        {"qid": 7, "query": "é ü", "score": np.float64(0.25)},
    ]
    write_jsonl(path, records)
    assert read_jsonl(path) == [
        {"qid": "a#0", "pred_relevant_windows": [[1.5, 3.0, pytest.approx(0.9)]], "n": 3},
        {"qid": 7, "query": "é ü", "score": 0.25},
    ]
    assert "é ü" in path.read_text(encoding="utf-8")
    assert sorted(p.name for p in path.parent.iterdir()) == ["preds.jsonl"]


def test_jsonl_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "preds.jsonl"
    write_jsonl(path, [{"a": 1}])
    with pytest.raises(InputError, match="record 1 cannot be written as JSON"):
        write_jsonl(path, [{"a": 2}, {"b": object()}])
    with pytest.raises(InputError, match="record 0 cannot be written"):
        write_jsonl(path, [{"a": float("nan")}])
    with pytest.raises(InputError, match="record 0 is a list, not a mapping"):
        write_jsonl(path, [[1]])
    assert read_jsonl(path) == [{"a": 1}]
    assert [p.name for p in tmp_path.iterdir()] == ["preds.jsonl"]


def test_read_jsonl_errors(tmp_path):
    with pytest.raises(InputError, match=r"p\.jsonl: line 2 is a JSON int"):
        read_jsonl(_write(tmp_path, "p.jsonl", '{"a": 1}\n3\n'))
