"""tfvtg.decompose.Decomposition: reading TFVTG's answer schema, including the broken answers LLMs give."""

from __future__ import annotations

import json

import pytest

from tfvtg.decompose import Decomposition
from tfvtg.pipeline import descriptions_for

ANSWER = {
    "reasoning": "two actions, one after the other",
    "relationship": "sequentially",
    "query_json": [
        {
            "sub_query_id": 0,
            "descriptions": ["A person runs to the window to look out.", "Someone rushes over."],
        },
        {"sub_query_id": 1, "descriptions": ["A person runs to the window."]},
        {"sub_query_id": 2, "descriptions": ["A person looks out the window.", "  ", 7]},
    ],
}


def test_reads_paraphrases_sub_events_and_relation():
    d = Decomposition.from_tfvtg(ANSWER, "person runs to the window to look out.")
    assert d.paraphrases == ("A person runs to the window to look out.", "Someone rushes over.")
    assert d.sub_events == (("A person runs to the window.",), ("A person looks out the window.",))
    assert d.relation == "sequentially" and d.source == "file" and not d.is_fallback
    assert d.main_descriptions[0] == "person runs to the window to look out."
    assert len(descriptions_for(d.query, d)) == 5


@pytest.mark.parametrize(
    "answer, note",
    [
        (None, "no LLM answer"),
        ({}, "no LLM answer"),
        ({"relationship": "single-query"}, "no query_json"),
        ({"relationship": "single-query", "query_json": []}, "no usable descriptions"),
        ({"relationship": "sequentially", "query_json": [{"descriptions": [None, ""]}, "junk"]}, "no usable"),
        ("not a dict", "no LLM answer"),
    ],
)
def test_broken_answers_fall_back_to_the_plain_query(answer, note):
    d = Decomposition.from_tfvtg(answer, " a person sneezes. ")
    assert d.is_fallback and d.query == "a person sneezes." and note in d.note
    assert d.main_descriptions == ("a person sneezes.",) and d.sub_events == ()
    assert d.to_tfvtg() == {}


def test_missing_relationship_means_unconstrained_with_a_note():
    answer = {"query_json": ANSWER["query_json"]}
    d = Decomposition.from_tfvtg(answer, "q")
    assert d.relation == "single-query" and "no relationship" in d.note and len(d.sub_events) == 2


def test_round_trip_through_the_tfvtg_schema():
    d = Decomposition.from_tfvtg(ANSWER, "q")
    again = Decomposition.from_tfvtg(json.loads(json.dumps(d.to_tfvtg())), "q")
    assert again == d
    assert d.to_dict()["sub_events"] == [["A person runs to the window."], ["A person looks out the window."]]
