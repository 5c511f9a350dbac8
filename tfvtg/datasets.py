"""Annotation files of the grounding benchmarks, read into one record type.

Three shapes are read:

* TFVTG's JSON (Charades-STA, Charades-CD/CG, ActivityNet Captions, and TFVTG's ``llm_outputs.json``): one
  object mapping a video id to ``{"duration" | "video_duration", "timestamps", "sentences"[, "response"]}``,
  one query per sentence.
* QVHighlights JSON lines: one query per line with ``qid``, ``vid``, ``query``, ``duration`` and, on the
  annotated splits, ``relevant_windows``, ``relevant_clip_ids`` and ``saliency_scores``.
* Plain JSON lines for predictions (``write_jsonl`` / ``read_jsonl``), written atomically.

The file order is kept (video order, then sentence order). Ground truth is kept as annotated: 562 Charades-STA
ends exceed the annotated duration, and the official metrics use them raw, so nothing here clips them; such
spans, spans that start at or after the video's end and spans of zero length are counted and named in one
warning per file (`check_spans`).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tfvtg.errors import InputError

log = logging.getLogger(__name__)

__all__ = [
    "DATASETS",
    "GroundingQuery",
    "load_dataset",
    "load_tfvtg_annotations",
    "load_qvhighlights",
    "load_llm_outputs",
    "attach_llm_answers",
    "check_spans",
    "write_jsonl",
    "read_jsonl",
]

DATASETS = ("charades-sta", "activitynet", "qvhighlights")


@dataclass(frozen=True)
class GroundingQuery:
    """One grounding query with its ground truth.

    Attributes:
        qid: unique id: ``"<vid>#<i>"`` (i = sentence index in the record) for TFVTG-format files, the
            QVHighlights ``qid`` (as a string) otherwise.
        vid: video id (the feature file's stem).
        query: the sentence, stripped of surrounding white space.
        duration: the annotated duration in seconds (``video_duration`` in Charades-CD files).
        windows: ground-truth spans in seconds, as annotated (one for Charades/ActivityNet, one or more for
            QVHighlights, none on its test split).
        llm_answer: the TFVTG ``llm_outputs.json`` answer for this sentence (``{}`` kept as ``{}``), or None
            when the file has no ``response``.
        relevant_clip_ids: QVHighlights only: the 2-second clips inside the relevant windows.
        saliency_scores: QVHighlights only: per relevant clip, the three annotators' scores (0-4).
    """

    qid: str
    vid: str
    query: str
    duration: float
    windows: tuple[tuple[float, float], ...]
    llm_answer: dict | None = None
    relevant_clip_ids: tuple[int, ...] = ()
    saliency_scores: tuple[tuple[int, ...], ...] = ()

    @property
    def window(self) -> tuple[float, float]:
        """The first ground-truth span (the only one for Charades-STA and ActivityNet)."""
        if not self.windows:
            raise InputError(f"query {self.qid} has no ground-truth window (an unannotated test split?)")
        return self.windows[0]


# --------------------------------------------------------------------------------------------------- readers


def load_dataset(name: str, path: str | os.PathLike) -> list[GroundingQuery]:
    """Read the annotation file of a benchmark.

    Args:
        name: one of ``DATASETS``: ``charades-sta`` and ``activitynet`` read TFVTG's JSON (any file of that
            shape: Charades-CD/CG and ``llm_outputs.json`` too), ``qvhighlights`` reads its JSON lines.
        path: the annotation file.

    Returns:
        The queries in file order.

    Raises:
        InputError: unknown dataset name, missing or malformed file.
    """
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    queries = load_qvhighlights(path) if name == "qvhighlights" else load_tfvtg_annotations(path)
    check_spans(queries, _name(path))
    return queries


def check_spans(queries: Sequence[GroundingQuery], source: str) -> dict[str, list[str]]:
    """Warn, naming the first few, about ground-truth spans that cannot be right as annotated.

    Three kinds, each one warning (they are kept: official files hold them and the official metrics score
    them raw): spans ending after the video's annotated duration, spans starting at or after it (no
    prediction can overlap them), and spans of zero length (IoU 0 with any span).

    Returns:
        Kind (``"end after the video"``, ``"start after the video"``, ``"zero length"``) -> the qids.
    """
    found: dict[str, list[str]] = {"end after the video": [], "start after the video": [], "zero length": []}
    for q in queries:
        for start, end in q.windows:
            if start >= q.duration:
                found["start after the video"].append(f"{q.qid} [{start:g}, {end:g}] of {q.duration:g} s")
            elif end > q.duration:
                found["end after the video"].append(f"{q.qid} [{start:g}, {end:g}] of {q.duration:g} s")
            if end <= start:
                found["zero length"].append(f"{q.qid} [{start:g}, {end:g}]")
    total = sum(len(q.windows) for q in queries)
    for kind, items in found.items():
        if items:
            shown = "; ".join(items[:3]) + ("; ..." if len(items) > 3 else "")
            log.warning("%s: %d of %d ground-truth spans %s (%s); kept as annotated", source, len(items),
                        total, _KIND_TEXT[kind], shown)
    return found


_KIND_TEXT = {
    "end after the video": "end after their video's annotated duration",
    "start after the video": "start at or after their video's end, so no prediction can overlap them",
    "zero length": "have zero length, so their IoU with any prediction is 0",
}


def load_tfvtg_annotations(path: str | os.PathLike) -> list[GroundingQuery]:
    """Read a TFVTG-format annotation file (a JSON object: video id -> record), one query per sentence.

    Records carry ``sentences``, ``timestamps`` (one ``[start, end]`` per sentence) and ``duration`` (or
    ``video_duration``, as in Charades-CD). When a record has a ``response`` list (TFVTG's
    ``llm_outputs.json``), entry i becomes ``llm_answer`` of sentence i; ``{}`` (a failed LLM call) is kept as
    ``{}``.

    Raises:
        InputError: missing file, not JSON, not an object of records, a record missing keys or with
            sentences/timestamps/response of different lengths, a non-numeric time.
    """
    return [query for query, _ in _read_tfvtg(path)]


def load_llm_outputs(path: str | os.PathLike) -> dict[tuple[str, int], dict]:
    """Read TFVTG's ``llm_outputs.json`` into ``(vid, sentence index) -> answer``.

    For joining with annotations read from another file (see `attach_llm_answers`). Records without a
    ``response`` list contribute nothing; a file where no record has one is refused.

    Raises:
        InputError: as `load_tfvtg_annotations`, or no record has a ``response``.
    """
    answers: dict[tuple[str, int], dict] = {}
    for query, index in _read_tfvtg(path):
        if query.llm_answer is not None:
            answers[(query.vid, index)] = query.llm_answer
    if not answers:
        raise InputError(f"{_name(path)}: no record has a 'response' list: not a TFVTG llm_outputs.json file")
    return answers


def attach_llm_answers(
    queries: Sequence[GroundingQuery], answers: Mapping[tuple[str, int], dict]
) -> list[GroundingQuery]:
    """Return copies of TFVTG-format ``queries`` with ``llm_answer`` taken from ``answers`` by (vid, index).

    Queries without an answer keep theirs (usually None: the pipeline then grounds the plain sentence), with a
    warning saying how many; answers that fit none of the queries (LLM outputs of another split) are refused.

    Raises:
        InputError: a query whose qid is not of the ``"<vid>#<i>"`` form; no query has an answer.
    """
    out = []
    unanswered: list[str] = []
    for query in queries:
        key = _qid_key(query)
        answer = answers.get(key)
        if answer is None:
            unanswered.append(query.qid)
        out.append(query if answer is None else replace(query, llm_answer=answer))
    if out and len(unanswered) == len(out):
        raise InputError(f"the LLM outputs answer none of the {len(out)} queries (no answer for "
                         f"{unanswered[0]}): they are for another dataset or split")
    if unanswered:
        log.warning("the LLM outputs have no answer for %d of %d queries (e.g. %s); those are grounded from "
                    "their sentence alone", len(unanswered), len(out), unanswered[0])
    return out


def load_qvhighlights(path: str | os.PathLike) -> list[GroundingQuery]:
    """Read a QVHighlights JSON-lines file (``highlight_{val,test}_release.jsonl``).

    ``relevant_windows``, ``relevant_clip_ids`` and ``saliency_scores`` are optional (the test split has
    none).

    Raises:
        InputError: missing file, a line that is not a JSON object, a record missing ``qid``, ``vid``,
            ``query`` or ``duration``, malformed windows, clip ids and saliency scores of different lengths, a
            duplicate qid.
    """
    name = _name(path)
    queries: list[GroundingQuery] = []
    lines: list[int] = []
    seen: set[str] = set()
    for lineno, record in _iter_jsonl(path):
        where = f"{name}: line {lineno}"
        missing = [key for key in ("qid", "vid", "query", "duration") if key not in record]
        if missing:
            raise InputError(f"{where}: record lacks {', '.join(map(repr, missing))}")
        qid = str(record["qid"])
        if qid in seen:
            raise InputError(f"{where}: duplicate qid {qid}")
        seen.add(qid)
        where = f"{name}: line {lineno} (qid {qid})"
        query = record["query"]
        if not isinstance(query, str):
            raise InputError(f"{where}: 'query' must be a string")
        duration = _duration(record["duration"], f"{where}: 'duration'")
        if not query.strip():
            raise InputError(f"{where}: 'query' is empty")
        raw_windows = record.get("relevant_windows") or ()
        windows = tuple(_span(w, f"{where}: relevant_windows[{i}]") for i, w in enumerate(raw_windows))
        clip_ids = record.get("relevant_clip_ids") or []
        saliency = record.get("saliency_scores") or []
        if not isinstance(clip_ids, list) or not all(_is_int(c) and c >= 0 for c in clip_ids):
            raise InputError(f"{where}: 'relevant_clip_ids' must be a list of non-negative integers")
        if not isinstance(saliency, list) or not all(
            isinstance(s, list) and s and all(_is_int(v) for v in s) for s in saliency
        ):
            raise InputError(f"{where}: 'saliency_scores' must be a list of lists of integers")
        if len(clip_ids) != len(saliency):
            raise InputError(
                f"{where}: {len(clip_ids)} relevant_clip_ids but {len(saliency)} saliency_scores entries"
            )
        if len({len(row) for row in saliency}) > 1:
            raise InputError(f"{where}: 'saliency_scores' rows must all have one score per annotator")
        n_clips = int(duration / 2.0)  # QVHighlights' 2-second clips, as its metrics count them
        if clip_ids and max(clip_ids) >= n_clips:
            raise InputError(f"{where}: relevant clip id {max(clip_ids)} is beyond the {n_clips} 2-second "
                             f"clips of a {duration:g} s video")
        lines.append(lineno)
        queries.append(
            GroundingQuery(
                qid=qid,
                vid=str(record["vid"]),
                query=query.strip(),
                duration=duration,
                windows=windows,
                relevant_clip_ids=tuple(int(c) for c in clip_ids),
                saliency_scores=tuple(tuple(int(v) for v in s) for s in saliency),
            )
        )
    # The highlight metrics need saliency for every annotated query: a file that has it for some records
    # must have it for all, found now rather than after every query has been grounded.
    if any(q.relevant_clip_ids for q in queries):
        for lineno, q in zip(lines, queries, strict=True):
            if q.windows and not q.relevant_clip_ids:
                raise InputError(f"{name}: line {lineno} (qid {q.qid}): no 'relevant_clip_ids' / "
                                 "'saliency_scores', which the other records have and the highlight metrics "
                                 "need for every query")
    return queries


# --------------------------------------------------------------------------------------------- JSON lines


def write_jsonl(path: str | os.PathLike, records: Iterable[Mapping[str, Any]]) -> None:
    """Write one JSON object per line, atomically (a temp file in the same folder, then ``os.replace``).

    Readers never see a half-written file, and an interrupted run leaves the previous file intact. numpy
    scalars and arrays are written as plain numbers and lists.

    Raises:
        InputError: a record that is not a mapping or holds a value JSON cannot represent.
    """
    from tfvtg.atomic import write_atomic

    path = Path(path)
    lines = []
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise InputError(f"{path.name}: record {i} is a {type(record).__name__}, not a mapping")
        try:
            line = json.dumps(record, ensure_ascii=False, default=_json_default, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{path.name}: record {i} cannot be written as JSON: {exc}") from None
        lines.append(line + "\n")
    write_atomic(path, "".join(lines).encode("utf-8"))


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSON-lines file of objects (blank lines skipped).

    Raises:
        InputError: missing file, or a line that is not a JSON object (the message gives its number).
    """
    return [record for _, record in _iter_jsonl(path)]


# ------------------------------------------------------------------------------------------------ helpers


def _name(path: str | os.PathLike) -> str:
    return Path(path).name


def _read_text(path: str | os.PathLike) -> str:
    p = Path(path)
    if not p.exists():
        raise InputError(f"annotation file not found: {p}")
    if p.is_dir():
        raise InputError(f"{p} is a directory, not an annotation file")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{p.name}: not a UTF-8 text file") from None
    except OSError as exc:
        raise InputError(f"cannot read {p}: {exc.strerror or exc}") from None


def _iter_jsonl(path: str | os.PathLike) -> Iterable[tuple[int, dict]]:
    name = _name(path)
    text = _read_text(path)
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{name}: line {lineno} is not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise InputError(f"{name}: line {lineno} is a JSON {type(record).__name__}, expected an object")
        yield lineno, record


def _read_tfvtg(path: str | os.PathLike) -> list[tuple[GroundingQuery, int]]:
    """Queries of a TFVTG-format file with each one's sentence index."""
    name = _name(path)
    text = _read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        hint = ""
        if exc.msg == "Extra data":
            hint = " (it looks like JSON lines: use the qvhighlights reader for those)"
        raise InputError(f"{name}: not valid JSON ({exc.msg} at line {exc.lineno}){hint}") from None
    if not isinstance(data, dict):
        raise InputError(
            f"{name}: expected a JSON object mapping video id to record, found a {type(data).__name__}"
        )
    out: list[tuple[GroundingQuery, int]] = []
    for vid, record in data.items():
        where = f"{name}: record {vid}"
        if not isinstance(record, dict):
            raise InputError(f"{where} is a {type(record).__name__}, expected an object")
        missing = [key for key in ("sentences", "timestamps") if key not in record]
        if "duration" not in record and "video_duration" not in record:
            missing.append("duration")
        if missing:
            raise InputError(f"{where} lacks {', '.join(map(repr, missing))}")
        sentences, timestamps = record["sentences"], record["timestamps"]
        if not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
            raise InputError(f"{where}: 'sentences' must be a list of strings")
        if not isinstance(timestamps, list):
            raise InputError(f"{where}: 'timestamps' must be a list of [start, end] pairs")
        if len(sentences) != len(timestamps):
            raise InputError(f"{where} has {len(sentences)} sentences but {len(timestamps)} timestamps")
        key = "duration" if "duration" in record else "video_duration"
        duration = _duration(record[key], f"{where}: {key!r}")
        for i, sentence in enumerate(sentences):
            if not sentence.strip():
                raise InputError(f"{where}: sentences[{i}] is empty")
        responses = record.get("response")
        if responses is not None:
            if not isinstance(responses, list):
                raise InputError(f"{where}: 'response' must be a list (one LLM answer per sentence)")
            if len(responses) != len(sentences):
                raise InputError(f"{where} has {len(sentences)} sentences but {len(responses)} responses")
            for i, answer in enumerate(responses):
                if not isinstance(answer, dict):
                    kind = type(answer).__name__
                    raise InputError(f"{where}: response[{i}] is a {kind}, expected an object")
        for i, (sentence, span) in enumerate(zip(sentences, timestamps, strict=True)):
            query = GroundingQuery(
                qid=f"{vid}#{i}",
                vid=str(vid),
                query=sentence.strip(),
                duration=duration,
                windows=(_span(span, f"{where}: timestamps[{i}]"),),
                llm_answer=None if responses is None else responses[i],
            )
            out.append((query, i))
    return out


def _qid_key(query: GroundingQuery) -> tuple[str, int]:
    vid, sep, index = query.qid.rpartition("#")
    if not sep or not index.isdigit():
        raise InputError(f"query {query.qid}: expected a qid of the form '<vid>#<sentence index>'")
    return vid, int(index)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _duration(value: Any, what: str) -> float:
    duration = _number(value, what)
    if duration <= 0:
        raise InputError(f"{what} must be positive, got {value!r}")
    return duration


def _span(value: Any, what: str) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise InputError(f"{what} must be a [start, end] pair, got {value!r}")
    start, end = _number(value[0], what), _number(value[1], what)
    if not 0 <= start <= end:
        raise InputError(f"{what} must be a [start, end] pair with 0 <= start <= end, got {value!r}")
    return start, end


def _json_default(value: Any) -> Any:
    # numpy values reach the writer from the metrics and the localizer; numpy is imported only if one does.
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
