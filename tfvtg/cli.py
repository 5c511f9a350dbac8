"""The ``tfvtg`` command: ground, extract, decompose, evaluate, plot, encoders, index, search, app."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tfvtg import __version__
from tfvtg.console import (
    MAX_FPS,
    OutputSet,
    check_output_path,
    counted,
    describe_decomposition,
    moments_table,
    option_group,
    run_group,
    verbose_option,
    writing,
)
from tfvtg.datasets import DATASETS
from tfvtg.encoders import DEFAULT_ENCODER
from tfvtg.engines import ENGINES
from tfvtg.errors import InputError, VideoError
from tfvtg.evaluate import FEATURE_FORMATS
from tfvtg.localize import PRESETS, PROFILES
from tfvtg.pipeline import GROUNDING_METHODS
from tfvtg.search_cli import add_search_commands
from tfvtg.splits import DEFAULT_SEED, SPLITS
from tfvtg.video import SAMPLING_MODES, video_id

if TYPE_CHECKING:
    from tfvtg.grounder import Grounder


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="tfvtg")
@verbose_option
def cli() -> None:
    """Training-free video temporal grounding (TFVTG: BLIP-2 + an LLM's query decomposition)."""


# ------------------------------------------------------------------------------------ ground / extract / plot
# The commands below build a Grounder from shared options; its components raise TfvtgError subclasses, which
# run_group turns into one "error: ..." line.



_encoder_options = option_group(
    click.option("--model", default=DEFAULT_ENCODER, show_default=True,
                 help="Encoder: blip2-coco (the paper's), blip2, clip-b32, clip-b16, clip-l14, siglip2-b16 "
                      "(tfvtg encoders), a Hugging Face id or a model directory."),
    click.option("--device", default="auto", show_default=True,
                 help="auto (cuda, mps, cpu), cpu, cuda, cuda:N, mps."),
    click.option("--dtype", default=None,
                 help="Encoder precision: autocast-float16 (fp32 weights, fp16 autocast: the official "
                      "numerics), float32, float16 or bfloat16 [default: autocast-float16 on CUDA, else "
                      "float32]."),
    click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
                 help="Frames per encoder batch."),
    click.option("--fps", type=click.FloatRange(min=0, min_open=True, max=MAX_FPS), default=None,
                 help="Frame sampling rate [default: the encoder's, 3]."),
    click.option("--dedup-threshold", type=click.FloatRange(min=0), default=None,
                 help="Reuse the last frame's features below this mean absolute pixel difference (0-255)."),
)

_method_option = click.option(
    "--method", type=click.Choice(GROUNDING_METHODS), default="tfvtg", show_default=True,
    help="tfvtg: TFVTG's windows; tag: TAG's scene clustering (no LLM needed; with LLM decompositions, "
         "TFVTG's LLM flow around it).")

_method_options = option_group(  # how a video is grounded (ground, plot, search)
    _method_option,
    click.option("--profile", type=click.Choice(PROFILES), default="default",
                 show_default=True,
                 help="default: the paper's method, bugs fixed; reference: the official code's decisions."),
    click.option("--preset", type=click.Choice(["auto", *PRESETS]),
                 default="auto", show_default=True,
                 help="Proposal lengths of a dataset; auto: charades up to 60 s, else activitynet."),
    click.option("--stride-seconds", type=click.FloatRange(min=0, min_open=True), default=None,
                 help="Proposal length quantum in seconds (overrides the preset)."),
    click.option("--max-length-seconds", type=click.FloatRange(min=0, min_open=True), default=None,
                 help="Longest proposal in seconds (overrides the preset)."),
    click.option("--llm", default=None, metavar="MODEL",
                 help="LLM for the query decomposition (any OpenAI-compatible model); none: VLM only."),
    click.option("--llm-base-url", default=None, metavar="URL",
                 help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 [default: OPENAI_BASE_URL]"),
    click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
                 help="Cache root, features/ and llm/ inside [default: $TFVTG_CACHE, else "
                      "$XDG_CACHE_HOME/tfvtg or ~/.cache/tfvtg]."),
    click.option("--no-cache", is_flag=True, help="Neither read nor write the caches."),
)
_grounding_options = option_group(
    click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True,
                 help="At most this many spans per query (fewer when fewer distinct spans are found)."),
    _method_options,
)


def _make_grounder(options: dict[str, Any]) -> Grounder:
    from tfvtg.cache import cache_root
    from tfvtg.grounder import Grounder

    if not options["no_cache"]:  # an unusable cache folder is reported now, not as a crash after the encoding
        try:
            check_output_path(options["cache_dir"] or cache_root(), folder=True, what="cache folder")
        except InputError as exc:
            raise InputError(f"{exc}; pass --cache-dir DIR or --no-cache") from None
    return Grounder(
        options["model"], device=options["device"], dtype=options["dtype"], fps=options["fps"],
        profile=options["profile"], method=options["method"], preset=options["preset"],
        stride_seconds=options["stride_seconds"],
        max_length_seconds=options["max_length_seconds"], llm=options["llm"],
        llm_base_url=options["llm_base_url"], cache_dir=options["cache_dir"],
        use_cache=not options["no_cache"], batch_size=options["batch_size"],
        dedup_threshold=options["dedup_threshold"], progress=True,
    )


def _read_queries(query: str | None, queries: Sequence[str], queries_file: Path | None) -> list[str]:
    from tfvtg.grounder import check_query

    texts = ([query] if query is not None else []) + list(queries)
    if queries_file is not None:
        if queries_file.is_dir():
            raise InputError(f"--queries-file {queries_file} is a folder; give a text file")
        if not queries_file.is_file():
            raise InputError(f"queries file not found: {queries_file}")
        try:  # utf-8-sig: a byte-order mark (Windows editors write one) is not part of the first query
            lines = queries_file.read_text(encoding="utf-8-sig").splitlines()
        except UnicodeDecodeError:
            raise InputError(f"{queries_file}: not a UTF-8 text file") from None
        except OSError as exc:
            raise InputError(f"cannot read queries file {queries_file}: {exc.strerror or exc}") from None
        found = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
        if not found:
            raise InputError(f"queries file {queries_file} holds no query (only blank lines and # comments): "
                             "write one query per line")
        texts += found
    if not texts:
        raise InputError("no query given: pass QUERY, --query TEXT or --queries-file FILE")
    return [check_query(text) for text in texts]


def _numbered(path: Path, index: int, count: int) -> Path:
    return path if count == 1 else path.with_name(f"{path.stem}-{index}{path.suffix}")


@cli.command()
@verbose_option
@click.argument("video", type=click.Path(path_type=Path))
@click.argument("query", required=False)
@click.option("--query", "-q", "queries", multiple=True,
              help="A query (repeat for several; the video is encoded once).")
@click.option("--queries-file", type=click.Path(path_type=Path), default=None,
              help="A text file with one query per line (blank lines and # comments skipped).")
@click.option("--json", "as_json", is_flag=True, help="One QVHighlights-style JSON line per query.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path), default=None,
              help="Also save a figure of the curves and spans (numbered -1, -2, ... for several queries).")
@_grounding_options
@_encoder_options
def ground(video: Path, query: str | None, queries: tuple[str, ...], queries_file: Path | None, as_json: bool,
           plot_path: Path | None, **options: Any) -> None:
    """Find when QUERY happens in VIDEO: spans in seconds, best first.

    Prints a table per query (start and end as mm:ss.s and in seconds, score) and the decomposition used;
    with --json, one line per query with pred_relevant_windows, the decomposition and timings.

    \b
    Examples:
      tfvtg ground video.mp4 "the person turns on the light"
      tfvtg ground video.mp4 -q "a dog runs" -q "a dog sleeps" --json
      tfvtg ground video.mp4 "a man opens a door" --llm gpt-4o-mini --plot door.png
    """
    from tfvtg.grounder import check_video_path
    from tfvtg.video import probe_video

    texts = _read_queries(query, queries, queries_file)
    probe_video(check_video_path(video))  # a file that is no video fails before the model loads
    figures = None
    if plot_path is not None:
        from tfvtg.plot import check_figure_path

        check_output_path(plot_path, inputs=[video, queries_file], what="--plot")
        check_figure_path(plot_path, what="--plot")
        figures = OutputSet(plot_path.parent, _figure_names(plot_path), "figures")
    grounder = _make_grounder(options)
    start = time.perf_counter()
    grounder.encoder  # noqa: B018 (load the model first, so that its time is reported on its own)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    features = grounder.encode_video(video)
    encode_s = time.perf_counter() - start
    if not as_json:
        frames = counted(len(features.timestamps), "frame")
        click.echo(f"video: {video.name} ({features.duration:.2f} s, {frames} at {features.fps:g} fps; "
                   f"model {grounder.model}, method {grounder.method}, profile {grounder.profile})")
    if figures is not None:
        figures.clear()  # figures of an earlier run with more queries must not stay beside this run's
    for index, text in enumerate(texts, start=1):
        result = grounder.ground_details(features, text, top_k=options["top_k"])
        first = index == 1  # the model load and the video's features are paid by the first query only
        result.meta["timings"].update(load_s=round(load_s if first else 0.0, 4),
                                      encode_s=round(encode_s if first else 0.0, 4))
        figure_path = None
        if plot_path is not None:
            from tfvtg.plot import plot_result, save_figure

            figure_path = _numbered(plot_path, index, len(texts))
            with writing(figure_path, "figure"):
                save_figure(plot_result(result), figure_path)
        if as_json:
            prediction = result.to_prediction(qid=index - 1, vid=video_id(video))
            click.echo(json.dumps(prediction, ensure_ascii=False))
        else:
            click.echo("")
            click.echo(f"query: {text}")
            for line in describe_decomposition(result) + moments_table(result):
                click.echo(line)
        if figure_path is not None:  # on stderr under --json, whose stdout is JSON lines only
            click.echo(f"wrote {figure_path}", err=as_json)


def _figure_names(plot_path: Path) -> str:
    """The file names `tfvtg ground --plot PATH` writes: PATH, or PATH numbered -1, -2, ... for several."""
    import re

    return re.escape(plot_path.stem) + r"(-\d+)?" + re.escape(plot_path.suffix)


@cli.command()
@verbose_option
@click.argument("video", type=click.Path(path_type=Path))
@click.argument("query")
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path),
              help="Image file to write (.png, .pdf, .svg).")
@click.option("--gt", "gt", type=(float, float), multiple=True, metavar="START END",
              help="A true span in seconds to draw (repeatable).")
@_grounding_options
@_encoder_options
def plot(video: Path, query: str, out_path: Path, gt: tuple[tuple[float, float], ...],
         **options: Any) -> None:
    """Save a figure of QUERY's similarity curves over VIDEO with the predicted spans."""
    from tfvtg.grounder import check_query, check_video_path
    from tfvtg.plot import check_figure_path, plot_result, save_figure
    from tfvtg.video import probe_video

    query = check_query(query)
    info = probe_video(check_video_path(video))
    for start, end in gt:
        if not (math.isfinite(start) and math.isfinite(end) and 0 <= start <= end):
            raise InputError(f"--gt {start:g} {end:g}: give START END in seconds with 0 <= START <= END")
        if info.duration is not None and start >= info.duration:  # it could not be drawn
            raise InputError(f"--gt {start:g} {end:g} starts after the end of {video.name} "
                             f"({info.duration:.2f} s)")
    check_output_path(out_path, inputs=[video], what="--out")
    check_figure_path(out_path, what="--out")
    grounder = _make_grounder(options)
    result = grounder.ground_details(video, query, top_k=options["top_k"])
    for start, end in gt:  # the decoded length is known now; a span past it is drawn up to the end
        if end > result.duration + 0.5:
            logging.getLogger("tfvtg").warning("--gt %g %g ends after the end of %s (%.2f s); drawn up to "
                                               "the end", start, end, video.name, result.duration)
    with writing(out_path, "figure"):
        save_figure(plot_result(result, gt=list(gt) or None), out_path)
    click.echo(f"wrote {out_path}")


def _parse_shard(shard: str | None) -> tuple[int, int]:
    if shard is None:
        return 0, 1
    index, sep, count = shard.partition("/")
    if not sep or not index.strip().isdigit() or not count.strip().isdigit() or int(count) < 1:
        raise InputError(f"--shard must be I/N with 0 <= I < N (e.g. 0/4), got {shard!r}")
    if int(index) >= int(count):
        raise InputError(f"--shard {shard}: I counts from 0 and must be below N")
    return int(index), int(count)


@cli.command()
@verbose_option
@click.argument("videos", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for the feature files (<video name>.<suffix>; created if missing).")
@click.option("--shard", default=None, metavar="I/N",
              help="Process only part I of N (I from 0) of the video list sorted by name; N processes share "
                   "it. A shard with no video is an error (exit status 1).")
@click.option("--skip-existing", is_flag=True,
              help="Resume: skip videos whose feature file is complete for these settings; a file made with "
                   "another model, fps, size, sampling, dedup or precision, or damaged, is made again.")
@click.option("--recursive", is_flag=True, help="Also take the videos in subfolders of the folders given.")
@click.option("--sampling", type=click.Choice(SAMPLING_MODES), default="timestamp",
              show_default=True,
              help="timestamp: frames at real times; reference: the official code's frame picks.")
@click.option("--engine", type=click.Choice(ENGINES), default="local", show_default=True,
              help="local: one encoder in this process; ray: Ray Data over all GPUs of a machine or cluster "
                   '(pip install -e ".[ray]").')
@click.option("--address", default=None, metavar="ADDR",
              help="Ray: an existing cluster (auto, or HEAD_IP:6379), from one of its nodes [default: "
                   "start a local Ray].")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Ray: encoder actors [default: one per GPU, one on a CPU-only cluster].")
@click.option("--gpus-per-worker", type=click.FloatRange(min=0), default=None,
              help="Ray: GPUs per encoder actor [default: 1 when the cluster has GPUs, else 0].")
@click.option("--decode-cpus", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Ray: CPUs per decoding task [default: one task per CPU of the cluster].")
@_encoder_options
def extract(videos: tuple[Path, ...], out_dir: Path, shard: str | None, skip_existing: bool, recursive: bool,
            sampling: str, engine: str, address: str | None, workers: int | None,
            gpus_per_worker: float | None, decode_cpus: float | None, **options: Any) -> None:
    """Write one feature file per video into --out, for `tfvtg evaluate` or later grounding.

    VIDEOS are files or directories (their video files; hidden and macOS ._ files are skipped and named;
    subfolders with --recursive). A video's file is named by the name given (a link by the link). Files are
    written atomically, so several processes can share one --out directory; --shard I/N splits the sorted list
    between them and --skip-existing resumes. A video that cannot be decoded is reported (and listed in
    extract_failures.json in --out) and the others go on; the exit status is then 1.
    """
    from tfvtg.engines import extract_many

    check_output_path(out_dir, folder=True, what="--out")
    if engine == "local":
        ray_only = {"--address": address, "--workers": workers, "--gpus-per-worker": gpus_per_worker,
                    "--decode-cpus": decode_cpus}
        given = [name for name, value in ray_only.items() if value is not None]
        if given:
            raise InputError(f"{', '.join(given)} go with --engine ray")
    summary = extract_many(
        list(videos), out_dir, engine=engine, model=options["model"], device=options["device"],
        dtype=options["dtype"], batch_size=options["batch_size"], fps=options["fps"], sampling=sampling,
        dedup_threshold=options["dedup_threshold"], skip_existing=skip_existing, recursive=recursive,
        shard=_parse_shard(shard), progress=True, echo=click.echo, address=address, workers=workers,
        gpus_per_worker=gpus_per_worker, decode_cpus=decode_cpus)
    click.echo(str(summary))
    if summary.failed:
        if summary.report is not None:
            click.echo(f"failures listed in {summary.report}")
        raise VideoError(f"{len(summary.failed)} of {summary.videos} videos failed: " + "; ".join(
            f"{summary.paths[vid].name} ({reason})" for vid, reason in summary.failed.items()))


@cli.command()
@verbose_option
@click.option("--dataset", required=True, type=click.Choice(DATASETS),
              help="Benchmark (sets the annotation reader, the preset and the metrics).")
@click.option("--annotations", required=True, type=click.Path(path_type=Path),
              help="The split's annotation file (TFVTG JSON or QVHighlights JSON lines).")
@click.option("--features", "features_dir", required=True, type=click.Path(path_type=Path),
              help="Directory of one feature file per video, named by the video id.")
@click.option("--feature-format", type=click.Choice(FEATURE_FORMATS), default="tfvtg",
              show_default=True,
              help="tfvtg: written by `tfvtg extract`; tfvtg-npy: the official code's <vid>.npy arrays.")
@click.option("--llm-outputs", type=click.Path(path_type=Path), default=None,
              help="TFVTG llm_outputs.json: run the full method with these decompositions (else VLM only).")
@click.option("--profile", type=click.Choice(PROFILES), default="default", show_default=True,
              help="reference: the official code's decisions (reproduces its numbers on its features).")
@_method_option
@click.option("--out", "out_path", type=click.Path(path_type=Path), default=None,
              help="Write the predictions here (JSON lines, QVHighlights style).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N queries.")
@click.option("--skip-missing", is_flag=True, help="Skip videos without a feature file instead of failing.")
@click.option("--skip-bad", is_flag=True,
              help="Skip videos whose feature file cannot be used (damaged, non-finite values, another "
                   "model's or another video's) instead of failing; they are named and counted.")
@click.option("--top-k", type=click.IntRange(min=1), default=None,
              help="At most this many windows per prediction [default: 5; 7 for qvhighlights].")
@click.option("--split", type=click.Choice(SPLITS), default="default", show_default=True,
              help="ood-1 / ood-2: noise features prepended to every video (Charades-STA 10 / 15 s, "
                   "ActivityNet 30 / 60 s) and the spans shifted.")
@click.option("--seed", type=int, default=DEFAULT_SEED, show_default=True,
              help="Seed of the ood-1 / ood-2 noise (recorded in the output).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object.")
@click.option("--model", default=DEFAULT_ENCODER, show_default=True,
              help="Text encoder (the one that made the features).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N, mps.")
@click.option("--dtype", default=None,
              help="Text encoder precision: autocast-float16, float32, float16 or bfloat16 [default: "
                   "autocast-float16 on CUDA, else float32].")
def evaluate(dataset: str, annotations: Path, features_dir: Path, feature_format: str,
             llm_outputs: Path | None, profile: str, method: str, out_path: Path | None, limit: int | None,
             skip_missing: bool, skip_bad: bool, top_k: int | None, split: str, seed: int, as_json: bool,
             model: str, device: str, dtype: str | None) -> None:
    """Ground every query of a benchmark split from feature files and print its metrics.

    Charades-STA and ActivityNet: R1@0.3/0.5/0.7 and mIoU; QVHighlights: R1@0.5/0.7 and mAP, plus the
    highlight metrics (HL-min-VeryGood mAP, HIT@1) from per-2-s-clip saliency, and R1/mAP per ground-truth
    length bucket (short/middle/long, as Moment-DETR reports). A video without a feature file is an error
    unless --skip-missing, one with an unusable file unless --skip-bad (the skipped queries are counted and
    left out of the metrics). If the run stops early (an error, Ctrl-C), the predictions made so far are kept
    in OUT.partial.jsonl beside --out.
    """
    from tfvtg.console import save_partial, write_predictions
    from tfvtg.errors import TfvtgError
    from tfvtg.evaluate import evaluate as run_evaluation
    from tfvtg.metrics import format_metrics

    if out_path is not None:
        check_output_path(out_path, inputs=[annotations, llm_outputs], what="--out")
        if out_path.suffix.lower() in {".safetensors", ".npy"} and out_path.exists():
            raise InputError(f"--out {out_path} is a feature file; write the predictions to a .jsonl file")
    made: list[dict[str, Any]] = []
    try:
        report = run_evaluation(dataset, annotations, features_dir, feature_format=feature_format,
                                llm_outputs=llm_outputs, profile=profile, method=method, model=model,
                                device=device, dtype=dtype, limit=limit, skip_missing=skip_missing,
                                skip_bad=skip_bad, top_k=top_k, split=split, seed=seed, progress=True,
                                on_prediction=made.append)
    except (TfvtgError, KeyboardInterrupt):
        save_partial(out_path, made, None)
        raise
    if out_path is not None:
        write_predictions(out_path, report.predictions)
    rate = report.n_queries / report.seconds if report.seconds > 0 else float("inf")
    summary = {"dataset": dataset, "queries": report.n_queries, "videos": report.n_videos,
               "method": report.method, "localizer": method, "profile": profile,
               "seconds": round(report.seconds, 2),
               "skipped_queries": report.skipped_queries, "missing_videos": len(report.missing_videos),
               "bad_videos": len(report.bad_videos), "load_seconds": round(report.load_seconds, 2),
               "split": split}
    if split != "default":
        summary.update(pad_seconds=report.meta["pad_seconds"], seed=seed)
    if as_json:
        click.echo(json.dumps({**summary, "metrics": report.metrics}))
        return
    source = "LLM decompositions" if report.method == "full" else "no LLM outputs"
    padded = (f", split {split} ({report.meta['pad_seconds']:g} s of noise prepended, seed {seed})"
              if split != "default" else "")
    click.echo(f"{dataset}: {report.n_queries} queries of {report.n_videos} videos, {report.method} "
               f"({source}), profile {profile}, method {method}{padded}")
    if report.skipped_queries:
        why = []
        if report.missing_videos:
            why.append(counted(len(report.missing_videos), "video") + " with no feature file")
        if report.bad_videos:
            why.append(counted(len(report.bad_videos), "video") + " with an unusable one")
        click.echo(f"skipped {counted(report.skipped_queries, 'query', 'queries')} of {' and '.join(why)} "
                   "(not in the metrics)")
    click.echo(format_metrics(report.metrics))
    click.echo(f"took {report.seconds:.1f} s ({rate:.1f} queries/s), plus {report.load_seconds:.1f} s "
               "loading the model" + (f"; predictions in {out_path}" if out_path is not None else ""))


# ------------------------------------------------------------------------------------------------- decompose
# One query printed, or a dataset's sentences written to TFVTG's llm_outputs.json (tfvtg.decompose).


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of the table.")
def encoders(as_json: bool) -> None:
    """List the registered encoders (--model NAME): checkpoint, input, features, cost, recorded CPU speed."""
    from tfvtg.encoders.zoo import format_specs, spec_rows

    click.echo(json.dumps(spec_rows(), indent=1) if as_json else "\n".join(format_specs()))


def _print_decomposition(query: str, answer: dict[str, Any] | None, source: str, note: str | None) -> None:
    click.echo(f"query: {query}")
    if answer is None:
        click.echo(f"relationship: single-query (fallback: {note})")
        click.echo(f"  0 (whole query): {query}")
        return
    click.echo(f"relationship: {answer['relationship']} (from {source})")
    for entry in answer["query_json"]:
        label = "whole query" if entry["sub_query_id"] == 0 else f"sub-event {entry['sub_query_id']}"
        click.echo(f"  {entry['sub_query_id']} ({label}):")
        for text in entry["descriptions"]:
            click.echo(f"      {text}")
    if answer.get("reasoning"):
        click.echo(f"reasoning: {answer['reasoning']}")


@cli.command()
@verbose_option
@click.argument("query", required=False)
@click.option("--llm", default=None, metavar="MODEL",
              help="Model of an OpenAI-compatible endpoint (e.g. gpt-4o-mini); none: no LLM.")
@click.option("--llm-base-url", default=None, metavar="URL",
              help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 [default: $OPENAI_BASE_URL; "
                   "the key comes from $OPENAI_API_KEY].")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the LLM answer cache.")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
              help="LLM answer cache [default: llm/ in $TFVTG_CACHE, else $XDG_CACHE_HOME/tfvtg or "
                   "~/.cache/tfvtg].")
@click.option("--json", "as_json", is_flag=True,
              help="Print the answer as TFVTG JSON (plus query, source, note).")
@click.option("--annotations", type=click.Path(path_type=Path), default=None,
              help="Decompose every sentence of this TFVTG annotation file (vid -> {sentences, ...}).")
@click.option("--out", "out_path", type=click.Path(path_type=Path), default=None,
              help="With --annotations: the llm_outputs.json to write.")
@click.option("--concurrency", type=click.IntRange(min=1, max=64), default=4, show_default=True,
              help="With --annotations: requests in flight.")
@click.option("--resume", is_flag=True,
              help="With --annotations: keep the answers in --out, ask only the rest.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="With --annotations: the first N videos.")
@click.option("--save-every", type=click.IntRange(min=1), default=20, show_default=True,
              help="With --annotations: answers between two saves of --out.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              help="Seconds to wait for each LLM request.")
@click.option("--max-attempts", type=click.IntRange(min=1, max=10), default=3, show_default=True,
              help="LLM answers asked for per query when they do not validate.")
def decompose(query: str | None, llm: str | None, llm_base_url: str | None, no_cache: bool,
              cache_dir: Path | None, as_json: bool, annotations: Path | None, out_path: Path | None,
              concurrency: int, resume: bool, limit: int | None, save_every: int, timeout: float,
              max_attempts: int) -> None:
    """Split QUERY into paraphrases and ordered sub-events with an LLM (TFVTG's first step).

    Without an LLM (no --llm, or neither a key nor a URL) the query stays as it is. With --annotations, every
    sentence of a dataset is decomposed into --out, TFVTG's llm_outputs.json format ({} where no valid answer
    came); the file is saved as it goes and --resume completes an interrupted or partly failed run.

    \b
    Examples:
      tfvtg decompose "a person opens the fridge and takes out the milk" --llm gpt-4o-mini
      tfvtg decompose "person sits down" --llm qwen2.5 --llm-base-url http://localhost:8000/v1 --json
      tfvtg decompose --annotations charades_test.json --out llm_outputs.json --llm gpt-4o-mini --resume
    """
    from tfvtg.decompose import Decomposer, decompose_annotations, read_annotations

    decomposer = Decomposer(llm, base_url=llm_base_url, cache_dir=cache_dir, use_cache=not no_cache,
                            max_attempts=max_attempts, timeout=timeout)
    if annotations is None:
        if query is None:
            raise InputError("give a QUERY, or --annotations FILE --out FILE for a whole dataset")
        if out_path is not None or resume or limit is not None:
            raise InputError("--out, --resume and --limit go with --annotations")
        result = decomposer.answer(query)
        if as_json:
            body = result.answer or {"relationship": "single-query",
                                     "query_json": [{"sub_query_id": 0, "descriptions": [query.strip()]}]}
            extra = {"query": query.strip(), "source": result.source}
            if result.note:
                extra["note"] = result.note
            click.echo(json.dumps({**extra, **body}, ensure_ascii=False))
        else:
            _print_decomposition(query.strip(), result.answer, result.source, result.note)
        return
    if query is not None:
        raise InputError("give either a QUERY or --annotations, not both")
    if out_path is None:
        raise InputError("--annotations needs --out FILE (the llm_outputs.json to write)")
    check_output_path(out_path, inputs=[annotations], what="--out")
    import signal

    from tqdm.contrib.logging import logging_redirect_tqdm

    def _terminate(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt  # so a kill saves the answers so far, as Ctrl-C does

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        with logging_redirect_tqdm(loggers=[logging.getLogger("tfvtg")]):
            summary = decompose_annotations(read_annotations(annotations), out_path, decomposer,
                                            concurrency=concurrency, resume=resume, limit=limit,
                                            save_every=save_every)
    finally:
        signal.signal(signal.SIGTERM, previous)
    click.echo(f"wrote {out_path}: {summary}")


add_search_commands(cli, _method_options, _encoder_options, _make_grounder)


@cli.command()
@verbose_option
@click.option("--videos", "videos_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="A folder whose videos (recursively) the page can pick; only those.")
@click.option("--index", "index_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="A collection index (tfvtg index add) to search in the Search tab.")
@click.option("--mllm", default=None, metavar="MODEL",
              help="The NumPro tab's multimodal LLM (OpenAI-compatible name, or qwen2-vl:PATH).")
@click.option("--mllm-base-url", default=None, metavar="URL", help="The MLLM's OpenAI-compatible endpoint.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to serve on; anything but loopback prints a warning.")
@click.option("--port", type=click.IntRange(0, 65535), default=7860, show_default=True, help="Port.")
@click.option("--share", is_flag=True, help="Also open a public gradio.live link (off by default).")
@click.option("--max-upload-mb", type=click.FloatRange(min=0, min_open=True), default=1024.0,
              show_default=True, help="Largest upload accepted, in megabytes.")
@_grounding_options
@_encoder_options
def app(videos_dir: Path | None, index_dir: Path | None, mllm: str | None, mllm_base_url: str | None,
        host: str, port: int, share: bool, max_upload_mb: float, **options: Any) -> None:
    """Serve a local web page to ground videos: upload or pick one, type queries, click a span to watch it.

    Needs the [app] extra (pip install -e ".[app]"). Stop it with Ctrl-C; its uploads and temporary files
    are removed then.

    \b
    Example:
      tfvtg app --videos ~/videos --llm gpt-4o-mini --mllm gpt-4o
      tfvtg app --index my-index/ --videos ~/videos
    """
    from tfvtg.app import GroundingApp, import_gradio

    import_gradio()  # a missing extra is reported before the model loads
    grounder = _make_grounder(options)
    with GroundingApp(grounder, videos=videos_dir, index=index_dir, mllm=mllm, mllm_base_url=mllm_base_url,
                      top_k=options["top_k"], max_upload_mb=max_upload_mb) as page:
        page.launch(host, port, share=share)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tfvtg`` console script; returns the exit status."""
    return run_group(cli, argv, "tfvtg")


if __name__ == "__main__":
    raise SystemExit(main())
