"""What every extraction engine shares: the settings, the jobs, the resume check, the write and the summary.

An engine turns a list of `Job`s into feature files with the same names, contents and metadata as any other
engine; only where the decoding and encoding run differs. Everything that decides *what* is written (the
resume check, the refusal of non-finite features, the atomic write, the failure report) lives here, once.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Union

import numpy as np

from tfvtg.encoders import DEFAULT_ENCODER
from tfvtg.errors import InputError, ModelError, TfvtgError, one_line
from tfvtg.video import SAMPLING_MODES, check_fps

if TYPE_CHECKING:
    from tfvtg.encoders.base import Encoder, EncoderConfig
    from tfvtg.features import VideoFeatures

__all__ = [
    "FEATURE_SUFFIX",
    "Engine",
    "ExtractSettings",
    "ExtractSummary",
    "Job",
    "check_complete",
    "expected_metadata",
    "write_features",
]

logger = logging.getLogger("tfvtg.engines")

FEATURE_SUFFIX = ".safetensors"
# A picklable callable returning an Encoder (for Ray workers it is called once per actor).
EncoderFactory = Callable[[], "Encoder"]
ModelSpec = Union[str, os.PathLike, EncoderFactory]  # noqa: UP007 (a runtime alias)


@dataclass(frozen=True)
class ExtractSettings:
    """What decides the content of a feature file, plus how the encoder is built; picklable (Ray ships it).

    Attributes:
        model: Encoder name, Hub id or directory (`tfvtg.encoders.create_encoder`), or a picklable callable
            returning an `Encoder` (custom encoders, tests).
        device: Torch device for the encoder (``"auto"``: cuda, mps, cpu).
        dtype: Compute dtype; None: `tfvtg.device.resolve_dtype`'s choice for the device.
        batch_size: Frames per encoder call.
        fps: Sampling rate; None: the encoder's default.
        sampling: ``"timestamp"`` or ``"reference"`` (`tfvtg.video.sample_frames`).
        dedup_threshold: Reuse the last encoded frame's features below this mean absolute pixel difference.
        strict: Fail a truncated or corrupt video instead of warning.
    """

    model: ModelSpec = DEFAULT_ENCODER
    device: str = "auto"
    dtype: str | None = None
    batch_size: int = 32
    fps: float | None = None
    sampling: str = "timestamp"
    dedup_threshold: float | None = None
    strict: bool = False

    def __post_init__(self) -> None:
        named = isinstance(self.model, (str, os.PathLike)) and str(self.model).strip()
        if not (callable(self.model) or named):
            raise InputError(f"model must be an encoder name, a directory or a callable returning an "
                             f"encoder, got {self.model!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise InputError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if self.fps is not None:
            object.__setattr__(self, "fps", check_fps(self.fps))
        if self.sampling not in SAMPLING_MODES:
            raise InputError(f"sampling mode must be one of {', '.join(SAMPLING_MODES)}, "
                             f"got {self.sampling!r}")
        t = self.dedup_threshold
        if t is not None:
            ok = isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) and t >= 0
            if not ok:
                raise InputError(f"dedup_threshold must be a number >= 0 (0-255 scale), got {t!r}")
            object.__setattr__(self, "dedup_threshold", float(t))

    def create_encoder(self) -> Encoder:
        """Build the encoder (loads the checkpoint)."""
        if callable(self.model):
            return self.model()
        from tfvtg.encoders import create_encoder

        return create_encoder(os.fspath(self.model), device=self.device, dtype=self.dtype,
                              batch_size=self.batch_size)

    def encoder_name(self) -> str | None:
        """The encoder id its feature files record, when known without loading it (a name or directory)."""
        if callable(self.model):
            return None
        from tfvtg.encoders import resolve_name

        return resolve_name(os.fspath(self.model))[0]

    def describe(self) -> dict[str, Any]:
        """The settings as JSON-able values (for the failure report)."""
        model = getattr(self.model, "__name__", repr(self.model)) if callable(self.model) else os.fspath(
            self.model)
        return {"model": model, "device": self.device, "dtype": self.dtype, "batch_size": self.batch_size,
                "fps": self.fps, "sampling": self.sampling, "dedup_threshold": self.dedup_threshold,
                "strict": self.strict}


@dataclass(frozen=True)
class Job:
    """One video to extract: its path as given, its id and the feature file it becomes."""

    video: Path
    vid: str
    target: Path


@dataclass
class ExtractSummary:
    """What a run did, per video id.

    Attributes:
        extracted: Ids written by this run.
        skipped: Id -> why it was skipped (its file is complete for these settings).
        failed: Id -> the reason it failed (the others went on).
        redone: Id -> why an existing file was not trusted and extracted again (also in ``extracted`` when
            that succeeded).
        frames: Frames written in all.
        seconds: Wall time of the run.
        report: The JSON failure report written beside the outputs, or None when nothing failed.
        shard: (index, count) of the part this run did.
        total: Videos in all shards together.
        paths: Id -> the video file as given, for this shard's videos.
    """

    extracted: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    redone: dict[str, str] = field(default_factory=dict)
    frames: int = 0
    seconds: float = 0.0
    report: Path | None = None
    shard: tuple[int, int] = (0, 1)
    total: int = 0
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def videos(self) -> int:
        """Videos of this run's shard."""
        return len(self.extracted) + len(self.skipped) + len(self.failed)

    @property
    def ok(self) -> bool:
        return not self.failed

    def __str__(self) -> str:
        part = f" (shard {self.shard[0]}/{self.shard[1]} of {self.total})" if self.shard[1] > 1 else ""
        return (f"extracted {len(self.extracted)}, skipped {len(self.skipped)}, failed {len(self.failed)} of "
                f"{self.videos} video{'' if self.videos == 1 else 's'}{part}")


class Engine(Protocol):
    """Where extraction runs. `run` writes every job's file (or records its failure) into ``summary``."""

    name: str

    def encoder_config(self, settings: ExtractSettings) -> EncoderConfig:
        """The encoder's config (image size, default fps), for the resume check."""
        ...

    def known_precision(self, settings: ExtractSettings) -> str | None:
        """The precision its files will record, when known without loading the encoder (else None)."""
        ...

    def run(self, jobs: list[Job], settings: ExtractSettings, summary: ExtractSummary, *,
            progress: bool, echo: Callable[[str], None]) -> None:
        """Extract ``jobs``; per video: write the file (`write_features`) or record why it failed."""
        ...

    def __enter__(self) -> Engine:
        ...

    def __exit__(self, *exc: object) -> None:
        """Release what the engine holds (the encoder; a Ray it started is shut down)."""
        ...


def expected_metadata(settings: ExtractSettings, config: EncoderConfig | None) -> dict[str, Any]:
    """The metadata fields these settings would write (without the encoder's ``config``: those known)."""
    expected: dict[str, Any] = {"sampling": settings.sampling, "dedup_threshold": settings.dedup_threshold,
                                "dtype": "float16"}
    name = config.name if config is not None else settings.encoder_name()
    if name is not None:
        expected["encoder"] = name
    fps = settings.fps if settings.fps is not None else (config.default_fps if config is not None else None)
    if fps is not None:
        expected["fps"] = float(fps)
    if config is not None:
        expected["image_size"] = [int(v) for v in config.image_size]
        if getattr(config, "precision", None) is not None:
            expected["precision"] = config.precision
    return expected


def _differs(field_name: str, stored: Any, wanted: Any) -> bool:
    if field_name == "fps":
        return not (isinstance(stored, (int, float)) and math.isclose(stored, wanted, rel_tol=1e-9))
    if field_name == "dedup_threshold" and stored is not None and wanted is not None:
        return not math.isclose(float(stored), float(wanted), rel_tol=1e-9)
    return stored != wanted


def check_complete(target: Path, expected: dict[str, Any], *, read_tensors: bool = True) -> str | None:
    """Why the existing ``target`` is not what these settings would write, or None when it is.

    The file must read back whole (a tfvtg feature file, as long as its header says, finite values) and its
    metadata must match every field of ``expected`` (encoder, fps, image size, sampling mode, dedup threshold,
    dtype, and the precision when the file records one). A file from before the dedup field was stored
    counts as made without dedup when it reused no frame.
    """
    from tfvtg.features import VideoFeatures, read_metadata

    try:
        meta = read_metadata(target)
    except InputError as exc:
        return f"unreadable ({exc})"
    if "dedup_threshold" not in meta:
        meta["dedup_threshold"] = None if not meta.get("skipped_frames") else "unknown"
    for name, wanted in expected.items():
        if name == "precision" and meta.get("precision") is None:
            continue  # written before tfvtg recorded its precision: accepted
        if name not in meta:
            return f"made without {name} in its metadata"
        if _differs(name, meta[name], wanted):
            return f"made with {name} {meta[name]!r}, not {wanted!r}"
    if read_tensors:
        try:
            VideoFeatures.load(target)  # reads every tensor; refuses NaN and inf (features.check_finite)
        except InputError as exc:
            return f"unreadable ({exc})"
    return None


def write_features(features: VideoFeatures, target: Path) -> None:
    """Write one video's features atomically; refuse non-finite values (`ModelError`, naming the video).

    Raises:
        ModelError: NaN or inf in the features (nothing is written).
        InputError: the file cannot be written (disk full, permissions), naming it.
    """
    bad = ~np.isfinite(features.features).reshape(len(features.features), -1).all(axis=1)
    if bad.any():
        raise ModelError(f"non-finite features for {features.video} in {int(bad.sum())} of {len(bad)} frames "
                         f"(first at {features.timestamps[np.argmax(bad)]:.2f} s); nothing written")
    try:
        features.save(target)
    except OSError as exc:
        raise InputError(f"cannot write feature file {target}: {exc.strerror or exc}") from exc


def failure_report_path(out_dir: Path, shard: tuple[int, int]) -> Path:
    """``extract_failures.json`` (``extract_failures-shard-I-of-N.json`` for a shard) in ``out_dir``."""
    suffix = f"-shard-{shard[0]}-of-{shard[1]}" if shard[1] > 1 else ""
    return out_dir / f"extract_failures{suffix}.json"


def write_failure_report(out_dir: Path, summary: ExtractSummary, engine: str,
                         settings: ExtractSettings) -> Path | None:
    """Write the failed videos and their reasons beside the outputs, after a run that finished.

    The videos an earlier report lists and this run did not take up stay listed (a run over some of the
    videos says nothing of the others); the report is removed once it lists none.
    """
    from tfvtg.atomic import write_atomic

    path = failure_report_path(out_dir, summary.shard)
    failed = [entry for entry in _earlier_failures(path) if entry["id"] not in summary.paths]
    failed += [{"id": vid, "video": os.fspath(summary.paths[vid]), "reason": reason}
               for vid, reason in summary.failed.items()]
    if not failed:
        if path.exists():
            path.unlink()
        return None
    body = {
        "engine": engine,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": settings.describe(),
        "summary": str(summary),
        "failed": failed,
    }
    try:
        write_atomic(path, (json.dumps(body, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
    except OSError as exc:
        logger.warning("cannot write the failure report %s: %s", path, exc.strerror or exc)
        return None
    return path


def _earlier_failures(path: Path) -> list[dict[str, Any]]:
    """The entries of an earlier failure report at ``path`` (none when it is missing or unreadable)."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8")).get("failed", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [e for e in entries if isinstance(e, dict) and isinstance(e.get("id"), str)] \
        if isinstance(entries, list) else []


def failure_reason(exc: BaseException) -> str:
    """One line for a video's failure: a `TfvtgError`'s message, else the exception's type and message."""
    return str(exc) if isinstance(exc, TfvtgError) else f"{type(exc).__name__}: {one_line(exc)}"


def record_result(job: Job, result: VideoFeatures | BaseException, summary: ExtractSummary,
                  echo: Callable[[str], None], seconds: float | None) -> None:
    """Write one video's file, or record its failure (a decode error, or features that cannot be written).

    ``seconds``: what the video took, said in the line echoed (None where videos overlap, as on Ray).
    """
    if not isinstance(result, BaseException):
        try:
            write_features(result, job.target)
        except ModelError as exc:
            result = exc
    if isinstance(result, BaseException):
        summary.failed[job.vid] = failure_reason(result)
        logger.error("%s: %s", job.video.name, summary.failed[job.vid])
        return
    summary.extracted.append(job.vid)
    summary.frames += len(result)
    took = "" if seconds is None else f" in {seconds:.1f} s"
    echo(f"wrote {job.target} ({len(result)} frames, {result.duration:.2f} s){took}")
