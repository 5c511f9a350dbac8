"""The ``numpro`` command: overlay (numbered frames to files), ground (one query), evaluate (a benchmark)."""

from __future__ import annotations

import json
import logging
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import click

from numpro.mllm import DETAILS, IMAGE_FORMATS
from numpro.overlay import POSITIONS
from numpro.parse import FrameIndex
from tfvtg import __version__
from tfvtg.console import (
    MAX_FPS,
    OutputSet,
    check_output_path,
    counted,
    moments_table,
    option_group,
    run_group,
    save_partial,
    verbose_option,
    write_predictions,
    writing,
)
from tfvtg.datasets import DATASETS
from tfvtg.errors import InputError, TfvtgError
from tfvtg.video import VIDEO_SUFFIXES

log = logging.getLogger("numpro.cli")

_MAX_SIDE = 8192  # pixels a side: more than 8K video, and decoding fails far beyond it


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="numpro")
@verbose_option
def cli() -> None:
    """NumPro: number the sampled frames, ask a multimodal LLM which frames match, map them to seconds."""


def _parse_size(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    """``336`` or ``336x336`` (width x height) -> (height, width); ``native`` -> None."""
    if value is None or value.strip().lower() == "native":
        return None
    text = value.strip().lower()
    try:
        if "x" in text:
            width, height = (int(v) for v in text.split("x", 1))
        else:
            width = height = int(text)
    except ValueError:
        raise click.BadParameter(f"{value!r}: use WIDTHxHEIGHT (e.g. 336x336), one number, or native") \
            from None
    if width < 1 or height < 1:
        raise click.BadParameter(f"{value!r}: width and height must be positive")
    if width > _MAX_SIDE or height > _MAX_SIDE:
        raise click.BadParameter(f"{value!r}: width and height must be at most {_MAX_SIDE}")
    return height, width


_sampling_options = option_group(
    click.option("--fps", type=click.FloatRange(min=0, min_open=True, max=MAX_FPS), default=1.0,
                 show_default=True,
                 help="Frames sampled per second (the paper: 1 for moments, 0.5 for highlights)."),
    click.option("--size", default="336x336", show_default=True, callback=_parse_size,
                 help="Frame size WIDTHxHEIGHT the frames are resized to, or native."),
)

_mllm_options = option_group(
    click.option("--mllm", default="gpt-4o", show_default=True, metavar="MODEL",
                 help="An OpenAI-compatible vision model name, or qwen2-vl:PATH_OR_ID for a local Qwen2-VL."),
    click.option("--mllm-base-url", default=None, metavar="URL",
                 help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 "
                      "[default: OPENAI_BASE_URL]."),
    click.option("--detail", type=click.Choice(DETAILS), default="low",
                 show_default=True, help="Image detail for OpenAI models (none: leave the field out)."),
    click.option("--image-format", type=click.Choice(IMAGE_FORMATS), default="jpeg", show_default=True,
                 help="How frames are sent to an endpoint."),
    click.option("--max-frames", type=click.IntRange(min=1), default=None,
                 help="Most frames per question; more are subsampled uniformly before numbering."),
    click.option("--refine", is_flag=True,
                 help="Ask again about the first span (plus a margin) sampled at --refine-fps, renumbered."),
    click.option("--refine-fps", type=click.FloatRange(min=0, min_open=True, max=MAX_FPS), default=None,
                 help="Sampling rate of the refinement pass [default: 4 x --fps]."),
    click.option("--refine-margin", type=click.FloatRange(min=0), default=None,
                 help="Seconds added around the first span [default: max(2 / fps, a quarter of the span)]."),
    click.option("--timestamps-as-text", is_flag=True,
                 help="Interleave 'Second t' labels with the frames instead of drawing numbers."),
    click.option("--end", type=click.Choice(FrameIndex.ENDS), default="next_frame",
                 show_default=True,
                 help="A span ends where its last frame's interval ends, or (reference) at that "
                      "frame's time."),
    click.option("--device", default="auto", show_default=True,
                 help="Local models: auto, cpu, cuda, cuda:N."),
    click.option("--dtype", default=None,
                 help="Local models: float32, float16 or bfloat16 [default: bfloat16 on CUDA from compute "
                      "capability 8.0, float16 on older GPUs, else float32]."),
    click.option("--max-pixels", type=click.IntRange(min=28 * 28), default=None,
                 help="Local models: pixel budget per frame (fewer visual tokens) [default: the "
                      "checkpoint's]."),
    click.option("--attn-implementation", type=click.Choice(["sdpa", "eager", "flash_attention_2"]),
                 default=None,
                 help="Local models: attention kernels [default: transformers' choice]; flash_attention_2 "
                      "needs flash-attn."),
    click.option("--max-new-tokens", type=click.IntRange(min=1), default=256, show_default=True,
                 help="Longest answer."),
    click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=120.0, show_default=True,
                 help="Seconds per endpoint request."),
    click.option("--max-retries", type=click.IntRange(min=0, max=10), default=3, show_default=True,
                 help="Extra attempts after a timeout, 429 or 5xx."),
)


def _make_grounder(options: dict[str, Any]) -> Any:
    from numpro.ground import NumProGrounder
    from numpro.mllm import create_mllm

    mllm = create_mllm(options["mllm"], base_url=options["mllm_base_url"], detail=options["detail"],
                       max_frames=options["max_frames"], image_format=options["image_format"],
                       device=options["device"], dtype=options["dtype"],
                       max_new_tokens=options["max_new_tokens"], max_pixels=options["max_pixels"],
                       attn_implementation=options["attn_implementation"],
                       timeout=options["timeout"], max_retries=options["max_retries"])
    return NumProGrounder(mllm, fps=options["fps"], size=options["size"], max_frames=options["max_frames"],
                          refine=options["refine"], refine_fps=options["refine_fps"],
                          refine_margin=options["refine_margin"],
                          timestamps_as_text=options["timestamps_as_text"], end=options["end"])


# ----------------------------------------------------------------------------------------------- overlay


@cli.command()
@verbose_option
@click.argument("video", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@_sampling_options
@click.option("--format", "out_format", type=click.Choice(["png", "mp4"]), default="png",
              show_default=True,
              help="png: a folder of numbered frames; mp4: one video encoded at the sampling rate.")
@click.option("--position", type=click.Choice(list(POSITIONS)), default="bottom_right", show_default=True,
              help="Where the number goes (the paper's: bottom_right).")
@click.option("--font-size", type=click.IntRange(min=1), default=None,
              help="Font size in pixels [default: 40 at 336x336, scaled with the short side].")
def overlay(video: Path, out: Path, fps: float, size: tuple[int, int] | None, out_format: str, position: str,
            font_size: int | None) -> None:
    """Sample VIDEO, draw each frame's number, write them to OUT.

    With --format png, OUT is a folder of frame_00000.png ... plus frames.json; with --format mp4, OUT is a
    video encoded at the sampling rate (frame i shown at i / fps) plus OUT.frames.json. The JSON lists each
    frame's number and its real timestamp in the source video.

    \b
    Examples:
      numpro overlay video.mp4 frames/
      numpro overlay video.mp4 numbered.mp4 --format mp4 --fps 0.5
    """
    from numpro.overlay import NumberPainter
    from tfvtg.grounder import check_video_path
    from tfvtg.video import sample_frames

    check_video_path(video)
    if out_format == "png":
        if out.exists() and not out.is_dir():
            raise InputError(f"{out} exists and is not a folder; give a folder for --format png")
        check_output_path(out, folder=True, what="OUT")
        json_path = out / "frames.json"
    else:
        if out.is_dir():
            raise InputError(f"{out} is a folder; give a file name such as numbered.mp4 for --format mp4")
        json_path = out.with_name(out.name + ".frames.json")
        for path in (out, json_path):
            check_output_path(path, inputs=[video], what="OUT")
    painter = NumberPainter(position=position, size=font_size)
    stream = sample_frames(video, fps, size)
    if out_format == "png":  # an earlier run's frames must not stay beside this one's
        OutputSet(out, _PngWriter.NAMES, "numbered frames").clear()
    started = time.perf_counter()
    writer: _FrameWriter = _PngWriter(out) if out_format == "png" else _Mp4Writer(out, fps)
    records = []
    try:
        for number, (frame, t) in enumerate(stream):
            painter.draw(frame, str(number))
            with writing(out, "OUT"):
                written = writer.write(frame)
            records.append({"number": number, "time": round(float(t), 6), **written})
    finally:
        with writing(out, "OUT"):
            writer.close()
    info = {"video": str(video), "fps": fps, "size": None if size is None else [size[1], size[0]],
            "duration": stream.duration, "output": str(out), "format": out_format, "frames": records}
    with writing(json_path, "frames.json"):
        json_path.write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    click.echo(f"{counted(len(records), 'numbered frame')} of {video.name} ({stream.duration:.2f} s at "
               f"{fps:g} fps) -> {out}; numbers and timestamps in {json_path} "
               f"({time.perf_counter() - started:.1f} s)")


class _FrameWriter(ABC):
    """Where `numpro overlay` puts numbered frames: a folder of PNGs or a video file."""

    @abstractmethod
    def write(self, frame: Any) -> dict[str, Any]:
        """Store one frame; return what frames.json records about it."""

    @abstractmethod
    def close(self) -> None:
        """Flush and close the output."""


class _PngWriter(_FrameWriter):
    NAMES = r"frame_\d{5,}\.png|frames\.json"  # the files an overlay run owns in its folder

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0

    def write(self, frame: Any) -> dict[str, Any]:
        from PIL import Image

        name = f"frame_{self.count:05d}.png"
        Image.fromarray(frame).save(self.folder / name)
        self.count += 1
        return {"file": name}

    def close(self) -> None:
        """Nothing to flush: each PNG is complete once written."""


class _Mp4Writer(_FrameWriter):
    """H.264 at the sampling rate (never the source rate): frame i has presentation time i / fps."""

    def __init__(self, path: Path, fps: float) -> None:
        import av

        self.path = path
        self.rate = Fraction(fps).limit_denominator(1001)
        if self.rate <= 0:
            raise InputError(f"--fps {fps:g} is too low for a video file (at least 1/1001 frame per second); "
                             "use --format png")
        self.container = av.open(str(path), "w", format="mp4")  # whatever the file name ends with
        self.stream: Any = None
        self.count = 0

    def write(self, frame: Any) -> dict[str, Any]:
        import av

        if self.stream is None:
            height, width = frame.shape[:2]
            self.stream = self.container.add_stream("libx264", rate=self.rate, options={"crf": "18"})
            self.stream.width, self.stream.height = width, height
            # 4:2:0 needs even dimensions.
            self.stream.pix_fmt = "yuv420p" if height % 2 == 0 and width % 2 == 0 else "yuv444p"
        video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
        video_frame.pts, video_frame.time_base = self.count, 1 / self.rate
        for packet in self.stream.encode(video_frame):
            self.container.mux(packet)
        self.count += 1
        return {"output_time": round(float((self.count - 1) / self.rate), 6)}

    def close(self) -> None:
        if self.stream is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
        self.container.close()


# ------------------------------------------------------------------------------------------------ ground


@cli.command()
@verbose_option
@click.argument("video", type=click.Path(path_type=Path))
@click.argument("query")
@click.option("--json", "as_json", is_flag=True, help="One QVHighlights-style JSON line.")
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True,
              help="Most spans (an answer may give several; the first ranks first).")
@_sampling_options
@_mllm_options
def ground(video: Path, query: str, as_json: bool, top_k: int, **options: Any) -> None:
    """Find when QUERY happens in VIDEO by asking a multimodal LLM about numbered frames.

    Prints the model's answer and a table of spans (mm:ss.s and seconds, score); with --json, one line with
    pred_relevant_windows and the answer, its parse and the frame times under meta. An answer with no usable
    span prints no span (and "pred_relevant_windows": [] with --json).

    \b
    Examples:
      numpro ground video.mp4 "a person opens the door" --mllm gpt-4o
      numpro ground video.mp4 "a dog jumps" --mllm Qwen/Qwen2-VL-7B-Instruct \\
          --mllm-base-url http://localhost:8000/v1
      numpro ground video.mp4 "a dog jumps" --mllm qwen2-vl:Qwen/Qwen2-VL-7B-Instruct --refine --json
    """
    from tfvtg.grounder import check_query, check_video_path
    from tfvtg.video import probe_video, video_id

    check_query(query)
    check_video_path(video)
    grounder = _make_grounder(options)  # checks the settings; a local model loads on first use
    probe_video(video)  # a file that is no video fails before the model loads
    started = time.perf_counter()
    details = grounder.ground_with_details(video, query, top_k=top_k)
    meta_seconds = round(time.perf_counter() - started, 3)
    if as_json:
        line = details.to_prediction(qid=0, vid=video_id(video))
        line["meta"]["seconds"] = meta_seconds
        click.echo(json.dumps(line, ensure_ascii=False))
        return
    coarse = details.coarse
    click.echo(f"video: {video.name} ({details.duration:.2f} s, {counted(len(coarse.times), 'frame')} at "
               f"{grounder.fps:g} fps; mllm {grounder.mllm.name})")
    click.echo(f"query: {details.query}")
    click.echo(f"answer: {_one_line(coarse.answer)}")
    if details.refined is not None:
        lo, hi = details.refined.window
        click.echo(f"refined answer ({lo:.1f}-{hi:.1f} s, {len(details.refined.times)} frames): "
                   f"{_one_line(details.refined.answer)}"
                   + ("" if details.used == "refined" else " (unreadable, first answer kept)"))
    if not details.ok:
        click.echo(f"no span: {coarse.parsed.reason}")
        return
    for line in moments_table(details):
        click.echo(line)


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit - 3] + "..."


# ---------------------------------------------------------------------------------------------- evaluate


def _find_video(videos_dir: Path, vid: str) -> Path | None:
    for suffix in VIDEO_SUFFIXES:
        candidate = videos_dir / f"{vid}{suffix}"
        if candidate.is_file():
            return candidate
    return None


@cli.command()
@verbose_option
@click.option("--dataset", required=True, type=click.Choice(DATASETS),
              help="Benchmark the annotations belong to.")
@click.option("--annotations", required=True, type=click.Path(path_type=Path),
              help="Annotation file (TFVTG json for Charades-STA/ActivityNet, QVHighlights jsonl).")
@click.option("--videos", "videos_dir", required=True, type=click.Path(path_type=Path),
              help="Folder of the videos, named <vid>.mp4 (or .mkv, .webm, .avi, .mov ...).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the predictions (one JSON line per query) here.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N queries.")
@click.option("--skip-missing", is_flag=True, help="Skip queries whose video is missing instead of failing.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object.")
@_sampling_options
@_mllm_options
def evaluate(dataset: str, annotations: Path, videos_dir: Path, out_path: Path | None, limit: int | None,
             skip_missing: bool, as_json: bool, **options: Any) -> None:
    """Ground every query of a benchmark split with NumPro and print its metrics.

    Charades-STA and ActivityNet: R1@0.3/0.5/0.7 and mIoU; QVHighlights: R1@0.5/0.7 and mAP. An answer with no
    usable span counts as IoU 0; the share of such answers is reported as the parse-failure rate. Each video
    is decoded once for all its queries.
    """
    from numpro.ground import SampledVideo
    from tfvtg.datasets import load_dataset
    from tfvtg.evaluate import prediction_qid, score_predictions
    from tfvtg.metrics import format_metrics

    if not videos_dir.is_dir():
        raise InputError(f"videos folder not found: {videos_dir}")
    if out_path is not None:
        check_output_path(out_path, inputs=[annotations], what="--out")
    queries = load_dataset(dataset, annotations)[:limit]
    if not queries:
        raise InputError(f"{annotations} holds no queries")
    vids = dict.fromkeys(q.vid for q in queries)
    paths: dict[str, Path | None] = {vid: _find_video(videos_dir, vid) for vid in vids}
    missing = sorted(vid for vid, path in paths.items() if path is None)
    if missing and not skip_missing:
        raise InputError(f"{len(missing)} of {len(paths)} videos not found in {videos_dir} "
                         f"(e.g. {missing[0]}); "
                         "pass --skip-missing to leave their queries out")
    kept = [q for q in queries if paths[q.vid] is not None]
    if not kept:
        raise InputError(f"none of the videos were found in {videos_dir}")
    grounder = _make_grounder(options)
    load_started = time.perf_counter()
    load = getattr(grounder.mllm, "load", None)  # a local model loads now, so its time is reported apart
    if callable(load):
        load()
    load_seconds = time.perf_counter() - load_started
    started = time.perf_counter()
    by_video: dict[str, list[int]] = {}
    for i, query in enumerate(kept):
        by_video.setdefault(query.vid, []).append(i)
    predictions: list[dict[str, Any]] = [{} for _ in kept]
    failures = 0
    try:
        from tqdm import tqdm  # a tqdm bar: the log handler prints warnings above it (tfvtg.console)

        with tqdm(total=len(kept), desc="grounding", unit="query", leave=False, file=sys.stderr) as bar:
            for vid, indices in by_video.items():
                sampled: SampledVideo = grounder.sample(paths[vid])  # decoded once for all its queries
                for i in indices:
                    query = kept[i]
                    details = grounder.ground_with_details(sampled, query.query, top_k=5)
                    failures += not details.ok
                    predictions[i] = details.to_prediction(qid=prediction_qid(query.qid, dataset), vid=vid)
                    bar.update(1)
    except (TfvtgError, KeyboardInterrupt):
        save_partial(out_path, [p for p in predictions if p], len(kept))
        raise
    if out_path is not None:
        write_predictions(out_path, predictions)
    # Moment retrieval only for QVHighlights: NumPro's answers carry no per-clip saliency.
    metrics = score_predictions(dataset, predictions, kept)
    metrics["parse_failure_rate"] = 100.0 * failures / len(kept)
    seconds = time.perf_counter() - started
    summary = {"dataset": dataset, "queries": len(kept), "videos": len(paths) - len(missing),
               "skipped_queries": len(queries) - len(kept), "mllm": grounder.mllm.name,
               "parse_failures": failures, "seconds": round(seconds, 2),
               "load_seconds": round(load_seconds, 2)}
    if as_json:
        click.echo(json.dumps({**summary, "metrics": metrics}))
        return
    click.echo(f"{dataset}: {len(kept)} queries of {summary['videos']} videos, NumPro with "
               f"{grounder.mllm.name}"
               f" ({grounder.fps:g} fps{', refined' if grounder.refine else ''}"
               f"{', timestamps as text' if grounder.timestamps_as_text else ''})")
    if summary["skipped_queries"]:
        click.echo(f"skipped {summary['skipped_queries']} queries of {len(missing)} missing videos")
    click.echo(format_metrics(metrics))
    click.echo(f"parse failures: {failures} of {len(kept)} answers ({metrics['parse_failure_rate']:.1f}%, "
               f"scored IoU 0); took {seconds:.1f} s"
               + (f", plus {load_seconds:.1f} s loading the model" if callable(load) else "")
               + (f"; predictions in {out_path}" if out_path else ""))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``numpro`` console script; returns the exit status."""
    return run_group(cli, argv, "numpro")


if __name__ == "__main__":
    raise SystemExit(main())
