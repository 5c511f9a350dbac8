"""The ``tfvtg index add|info|remove`` and ``tfvtg search`` commands: faces over `tfvtg.index.Collection`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from tfvtg.console import counted, verbose_option
from tfvtg.engines import ENGINES

__all__ = ["add_search_commands"]


def _hits_table(hits: list[Any]) -> list[str]:
    rows = [("rank", "video", "start", "end", "score")]
    rows += [(str(h.rank), h.video, f"{h.start:.2f}", f"{h.end:.2f}", f"{h.score:.4f}") for h in hits]
    widths = [max(len(row[c]) for row in rows) for c in range(5)]
    return ["  ".join(cell.ljust(w) if c == 1 else cell.rjust(w) for c, (cell, w) in
                      enumerate(zip(row, widths, strict=True))) for row in rows]


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def add_search_commands(group: click.Group, method_options: Callable, encoder_options: Callable,
                        make_grounder: Callable[[dict[str, Any]], Any]) -> None:
    """Add ``index`` (add, info, remove) and ``search`` to the ``tfvtg`` group.

    ``method_options`` and ``encoder_options`` are the option groups ``ground`` uses (profile, preset, LLM,
    caches; model, device ...), ``make_grounder`` its `Grounder` factory, so a search grounds as ``ground``.
    """

    @group.group("index")
    def index() -> None:
        """Build and inspect a video collection's index for `tfvtg search` (needs the [search] extra)."""

    @index.command("add")
    @verbose_option
    @click.argument("index_path", metavar="INDEX", type=click.Path(path_type=Path))
    @click.argument("paths", metavar="FEATURES...", nargs=-1, required=True, type=click.Path(path_type=Path))
    @click.option("--engine", type=click.Choice(ENGINES), default="local", show_default=True,
                  help="Where videos given instead of feature files are extracted (as tfvtg extract).")
    @encoder_options
    def index_add(index_path: Path, paths: tuple[Path, ...], engine: str, **options: Any) -> None:
        """Create or grow INDEX from feature files (tfvtg extract), folders of them, or videos.

        A video id is its file name without suffix. Videos are extracted first, with --model (the index's
        encoder when not given; blip2-coco for a new index) and the other extraction options, into
        INDEX/features/; feature files are indexed as they were made. An indexed file that has not changed is
        skipped; a changed one is indexed again. A video that cannot be extracted or a damaged feature file is
        named and left out, the others are indexed, and the exit status is then 1. One process changes an
        index at a time; another one gets an error.
        """
        from tfvtg.errors import VideoError
        from tfvtg.index import Collection

        source = click.get_current_context().get_parameter_source("model")
        model = None if source is click.core.ParameterSource.DEFAULT else options["model"]
        collection = Collection.open(index_path)
        report = collection.add(paths, model=model, engine=engine, progress=True, **_extract_args(options))
        click.echo(f"{index_path}: added {len(report['added'])}, updated {len(report['updated'])}, "
                   f"unchanged {len(report['unchanged'])}, not indexed {len(report['failed'])}; "
                   f"{counted(len(collection), 'video')}")
        if report["failed"]:
            raise VideoError(f"not indexed: {', '.join(report['failed'])} (reasons above)")

    @index.command("info")
    @verbose_option
    @click.argument("index_path", metavar="INDEX", type=click.Path(path_type=Path))
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
    def index_info(index_path: Path, as_json: bool) -> None:
        """Videos, frames, encoder and size on disk of INDEX."""
        from tfvtg.index import Collection

        info = Collection.open(index_path, create=False).info()
        if as_json:
            click.echo(json.dumps(info))
            return
        click.echo(f"index:    {info['path']}")
        click.echo(f"videos:   {info['videos']}")
        click.echo(f"frames:   {info['frames']} ({info['tokens']} tokens)")
        if info["encoder"] is None:
            click.echo("encoder:  none yet (the first index add sets it)")
        else:
            click.echo(f"encoder:  {info['encoder']} ({'x'.join(map(str, info['image_size']))})")
        click.echo(f"store:    {info['index']}, {_size(info['index_bytes'])} on disk "
                   f"(feature files {_size(info['feature_bytes'])})")
        if info["stale"]:
            click.echo(f"stale:    {', '.join(info['stale'])} (feature file gone or changed since indexed: "
                       "a search skips them)")

    @index.command("remove")
    @verbose_option
    @click.argument("index_path", metavar="INDEX", type=click.Path(path_type=Path))
    @click.argument("videos", metavar="VIDEO...", nargs=-1, required=True)
    def index_remove(index_path: Path, videos: tuple[str, ...]) -> None:
        """Remove videos (by id, as `index info` and `search` show them) from INDEX."""
        from tfvtg.index import Collection

        collection = Collection.open(index_path, create=False)
        removed = collection.remove(videos)
        click.echo(f"{index_path}: removed {len(removed)}; {len(collection)} videos")

    @group.command("search")
    @verbose_option
    @click.argument("index_path", metavar="INDEX", type=click.Path(path_type=Path))
    @click.argument("query")
    @click.option("--top-k", type=click.IntRange(min=1), default=10, show_default=True,
                  help="Moments to list.")
    @click.option("--json", "as_json", is_flag=True, help="One JSON line per moment.")
    @click.option("--exhaustive", is_flag=True,
                  help="Ground every video instead of the index's candidates (slow; the reference).")
    @click.option("--candidates", type=click.IntRange(min=1), default=None,
                  help="Videos grounded exactly [default: max(top-k, 10)].")
    @click.option("--model", default=None, help="Text encoder [default: the index's encoder].")
    @click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N, mps.")
    @click.option("--dtype", default=None,
                  help="Text encoder precision: autocast-float16, float32, float16 or bfloat16 [default: "
                       "autocast-float16 on CUDA, else float32].")
    @method_options
    def search(index_path: Path, query: str, top_k: int, as_json: bool, exhaustive: bool,
               candidates: int | None, **options: Any) -> None:
        """Find QUERY in every video of INDEX: rank, video, start, end (seconds) and score.

        The index proposes candidate videos from their best-matching frames; each candidate is grounded as
        `tfvtg ground` does (--method, --profile, --llm ...); the score is the query's mean cosine similarity
        with the better half of the span's frames, comparable across videos.

        \b
        Examples:
          tfvtg search my-index "a dog jumps into the pool"
          tfvtg search my-index "a man opens a door" --top-k 5 --json --llm gpt-4o-mini
        """
        from tfvtg.grounder import check_query
        from tfvtg.index import Collection

        check_query(query)
        collection = Collection.open(index_path, create=False)
        model = options["model"] or collection.searched_encoder()
        grounder = make_grounder({**options, "model": model, "fps": None, "batch_size": 32,
                                  "dedup_threshold": None})
        grounder.progress = False
        hits = collection.search(query, top_k=top_k, exhaustive=exhaustive, grounder=grounder,
                                 candidates=candidates)
        if as_json:
            for hit in hits:
                click.echo(json.dumps(hit.to_dict(), ensure_ascii=False))
            return
        if not hits:
            click.echo("no moment found")
            return
        for line in _hits_table(hits):
            click.echo(line)


def _extract_args(options: dict[str, Any]) -> dict[str, Any]:
    return {key: options[key] for key in ("device", "dtype", "batch_size", "fps", "dedup_threshold")}
