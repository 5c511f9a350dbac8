"""Where extraction runs: `extract_many` writes one feature file per video, on the local engine or on Ray.

Both engines write the same files (``<out>/<video id>.safetensors``, `tfvtg.features.VideoFeatures`) with the
same metadata, so `tfvtg evaluate`, `Grounder` and the feature cache read either. What is shared lives in
`tfvtg.engines.base` (settings, resume check, atomic write, failure report) and `tfvtg.engines.discover`
(which files, which ids); `local` runs in this process, `ray` on a Ray cluster (the ``[ray]`` extra).

Example:
    >>> from tfvtg.engines import extract_many                          # doctest: +SKIP
    >>> summary = extract_many(["videos/"], "features/", engine="ray")    # doctest: +SKIP
    >>> print(summary, summary.failed)                                  # doctest: +SKIP
    extracted 4898, skipped 0, failed 2 of 4900 videos {'v_x': 'cannot decode ...', ...}
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tfvtg.encoders import DEFAULT_ENCODER
from tfvtg.engines.base import (
    FEATURE_SUFFIX,
    Engine,
    ExtractSettings,
    ExtractSummary,
    Job,
    ModelSpec,
    check_complete,
    expected_metadata,
    write_failure_report,
)
from tfvtg.engines.discover import Found, assign_ids, find_videos
from tfvtg.errors import InputError

__all__ = [
    "ENGINES",
    "ExtractSettings",
    "ExtractSummary",
    "Job",
    "extract_many",
    "find_videos",
    "make_engine",
    "plan_jobs",
]

logger = logging.getLogger("tfvtg.engines")

ENGINES = ("local", "ray")


def make_engine(engine: str, **options: Any) -> Engine:
    """The engine named ``engine`` (``"local"`` or ``"ray"``) with its options.

    Raises:
        InputError: an unknown engine, or options the engine does not take.
    """
    if engine == "local":
        given = sorted(k for k, v in options.items() if v is not None)
        if given:
            raise InputError(f"{', '.join(given)} go with engine='ray' (the local engine runs one encoder)")
        from tfvtg.engines.local import LocalEngine

        return LocalEngine()
    if engine == "ray":
        from tfvtg.engines.ray import RayEngine

        return RayEngine(**options)
    raise InputError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")


def plan_jobs(found: Found, out_dir: Path, shard: tuple[int, int] = (0, 1)) -> tuple[list[Job], int]:
    """This shard's jobs (sorted by video id, part I of N) and the number of videos in all shards.

    Raises:
        InputError: two inputs with one id, a bad shard, or a shard with no video.
    """
    index, count = shard
    if not (isinstance(index, int) and isinstance(count, int) and count >= 1 and 0 <= index < count):
        raise InputError(f"shard must be (I, N) with 0 <= I < N, got {shard!r}")
    ids = assign_ids(found.videos)
    mine = list(ids.items())[index::count]
    if not mine:
        raise InputError(f"shard {index}/{count} holds no video: there are only {len(ids)} videos for "
                         f"{count} shards; use at most {len(ids)} shards")
    return [Job(video, vid, out_dir / f"{vid}{FEATURE_SUFFIX}") for vid, video in mine], len(ids)


def _resume(jobs: list[Job], settings: ExtractSettings, engine: Engine, summary: ExtractSummary,
            echo: Callable[[str], None]) -> list[Job]:
    """The jobs to run: a complete file for these settings is skipped; an existing file that is not (another
    model, fps, size, mode, dedup or precision, or damaged) is extracted again, with the reason said."""
    candidates: list[Job] = []
    todo: list[Job] = []

    def stale(job: Job, reason: str) -> None:
        summary.redone[job.vid] = reason
        echo(f"redo {job.video.name}: existing {job.target.name} {reason}")
        todo.append(job)

    known = expected_metadata(settings, None)
    precision = engine.known_precision(settings)
    if precision is not None:
        known["precision"] = precision
    for job in jobs:
        if not job.target.exists():
            todo.append(job)
            continue
        reason = check_complete(job.target, known)
        if reason is None:
            candidates.append(job)
        else:
            stale(job, reason)
    # The encoder's image size (and its name when given as a callable, its default fps when no fps was given,
    # its precision when the engine cannot tell it before) are known once it is loaded: then the files that
    # passed are checked against them too. With work to do the engine loads it anyway. (The Ray engine reads
    # them from the checkpoint's JSON files when it can, without a load, but it starts Ray to learn its GPUs.)
    unknown = settings.fps is None or "encoder" not in known or "precision" not in known
    if candidates and (unknown or todo):
        full = expected_metadata(settings, engine.encoder_config(settings))
        for job in list(candidates):
            reason = check_complete(job.target, full, read_tensors=False)
            if reason is not None:
                candidates.remove(job)
                stale(job, reason)
    for job in candidates:
        summary.skipped[job.vid] = "complete for these settings"
        echo(f"skip {job.video.name}: {job.target.name} exists")
    order = {job.vid: i for i, job in enumerate(jobs)}
    return sorted(todo, key=lambda job: order[job.vid])


def extract_many(
    videos: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    engine: str | Engine = "local",
    model: ModelSpec = DEFAULT_ENCODER,
    device: str = "auto",
    dtype: str | None = None,
    batch_size: int = 32,
    fps: float | None = None,
    sampling: str = "timestamp",
    dedup_threshold: float | None = None,
    strict: bool = False,
    skip_existing: bool = False,
    recursive: bool = False,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
    address: str | None = None,
    workers: int | None = None,
    gpus_per_worker: float | None = None,
    decode_cpus: float | None = None,
    chunk_frames: int | None = None,
) -> ExtractSummary:
    """Write one feature file per video into ``out_dir``, on this machine or on a Ray cluster.

    Args:
        videos: Video files and folders (their video files; hidden and ``._name`` files skipped).
        out_dir: Folder of the ``<video id>.safetensors`` files (created if missing).
        engine: ``"local"`` (one encoder in this process) or ``"ray"`` (Ray Data, the ``[ray]`` extra), or an
            engine object (e.g. a `tfvtg.engines.ray.RayEngine` built with its options).
        model: Encoder name, Hub id or directory, or a picklable callable returning an `Encoder`.
        device: Torch device of the encoder(s); ``"auto"`` picks cuda, then mps, then cpu.
        dtype: Compute dtype; None: `tfvtg.device.resolve_dtype`'s choice for the device.
        batch_size: Frames per encoder call.
        fps: Sampling rate; None: the encoder's default (3 for BLIP-2).
        sampling: ``"timestamp"`` (frames at real times) or ``"reference"`` (the official code's picks).
        dedup_threshold: Reuse the last encoded frame's features below this mean absolute pixel difference.
        strict: Fail a truncated or corrupt video instead of warning.
        skip_existing: Resume: skip a video whose file is complete for these settings; an existing file made
            otherwise (other model, fps, image size, sampling, dedup, precision) or damaged is made again.
        recursive: Enter subfolders of the folders given.
        shard: (I, N): only part I of N of the videos sorted by id (N processes share the list).
        progress: Progress bars on stderr.
        echo: Called with one line per video written or skipped (the CLI prints them); None: logged at debug.
        address: Ray only: an existing cluster (``"auto"``, ``"HEAD_IP:6379"``); None starts a local Ray.
        workers: Ray only: encoder actors (default one per GPU, or one on a CPU-only cluster).
        gpus_per_worker: Ray only: GPUs per encoder actor (default 1 when the cluster has GPUs, else 0).
        decode_cpus: Ray only: CPUs per decode task (default: one task per CPU of the cluster).
        chunk_frames: Ray only: frames per block of a video (long videos are split; default 64).

    Returns:
        The summary: ids extracted, skipped (with why), failed (with the reason), redone (with why). Failures
        are also written to ``extract_failures.json`` in ``out_dir``; a run without failures removes it.

    Raises:
        InputError: bad arguments, no video, two inputs with one id, a shard with no video, an unwritable
            ``out_dir`` (all before any work), or a file that cannot be written.
        ModelError: the encoder cannot be loaded or returns wrong shapes.
    """
    from tfvtg.console import check_output_path

    started = time.perf_counter()
    if isinstance(videos, (str, os.PathLike)):
        videos = [videos]
    say = echo if echo is not None else (lambda line: logger.debug("%s", line))
    settings = ExtractSettings(model=model, device=device, dtype=dtype, batch_size=batch_size, fps=fps,
                               sampling=sampling, dedup_threshold=dedup_threshold, strict=strict)
    if isinstance(engine, str):
        runner = make_engine(engine, address=address, workers=workers, gpus_per_worker=gpus_per_worker,
                             decode_cpus=decode_cpus, chunk_frames=chunk_frames)
    else:
        runner = engine
    found = find_videos(list(videos), recursive=recursive)
    for note in found.notes():
        logger.warning("%s", note)
    out = Path(out_dir).expanduser()
    jobs, total = plan_jobs(found, out, shard)
    check_output_path(out, folder=True, what="output folder")
    summary = ExtractSummary(shard=shard, total=total)
    summary.paths = {job.vid: job.video for job in jobs}
    try:
        with runner:
            todo = _resume(jobs, settings, runner, summary, say) if skip_existing else jobs
            runner.run(todo, settings, summary, progress=progress, echo=say)
    finally:
        summary.seconds = time.perf_counter() - started
    # Only a run that finished reports: one that stopped (a model that does not load, Ctrl-C) leaves an
    # earlier report as it was.
    summary.report = write_failure_report(out, summary, runner.name, settings)
    return summary
