"""The Ray engine: decode on CPU tasks, encode on an actor pool (one model per actor), write on the driver.

Pipeline (Ray Data, streaming with back-pressure)::

    video list -> map_batches(decode, CPU task per video) -> map_batches(encoder actors) -> driver
                  chunks of `chunk_frames` kept frames         (N, Q, D) float16 per frame     gathers by
                  + one info row per video (times, dedup       the model loaded once per actor (video, slot),
                    sources, duration, or the error)                                           writes files

Decoding uses `tfvtg.video` (real timestamps, not ``ray.data.read_videos``), so each decode task sees its
whole video in order: dedup decisions (`FrameDedup`), the decoded duration and truncation warnings are per
video exactly as on the local engine. A long video leaves the task in chunks, so no block holds an hour of
frames. Rows finish out of order; the driver puts each video back together by its kept-frame index and writes
it (atomically) as soon as it is complete: outputs only need to be writable from the driver, inputs readable
from every node.

Nothing lost: a video that cannot be decoded becomes an info row carrying its error (never an exception that
would take its block down); a killed encoder actor is restarted by Ray and its batches redone; completed
files are skipped on a rerun by the shared resume check; Ctrl-C stops the driver between atomic writes.
A Ray started here runs from a temporary directory owned by the run and is shut down at the end.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tfvtg.engines.base import ExtractSettings, ExtractSummary, Job, record_result
from tfvtg.errors import InputError, TfvtgError

if TYPE_CHECKING:
    from tfvtg.encoders.base import EncoderConfig

__all__ = ["RayEngine", "DEFAULT_CHUNK_FRAMES"]

logger = logging.getLogger("tfvtg.engines.ray")

# Kept frames per decoded chunk: 64 x 364 x 364 x 3 bytes = 25 MB for BLIP-2 coco.
DEFAULT_CHUNK_FRAMES = 64
# Memory a decode task asks for: a worker process with PyAV and numpy (measured up to ~380 MB; Ray asks for
# 25 % headroom), plus its frame buffers.
_DECODE_BASE_BYTES = 512 * 2**20
# Retries of the config probe task if its worker dies.
_PROBE_RETRIES = 3


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError('--engine ray needs Ray Data: pip install -e ".[ray]"') from None
    return ray


@dataclass(frozen=True)
class _DecodeSpec:
    settings: ExtractSettings
    fps: float
    size: tuple[int, int]
    chunk_frames: int


def _decode_video(batch: dict[str, np.ndarray], spec: _DecodeSpec) -> Iterator[dict[str, np.ndarray]]:
    """One video (a batch of one row) -> chunks of kept frames, then one info row (or an error row)."""
    from tfvtg.engines.local import FrameDedup
    from tfvtg.video import sample_frames

    index = int(batch["video"][0])
    path = str(batch["path"][0])
    settings = spec.settings
    blank = np.zeros((1, *spec.size, 3), dtype=np.uint8)
    times: list[np.ndarray] = []
    sources: list[np.ndarray] = []
    try:
        stream = sample_frames(path, spec.fps, size=spec.size, mode=settings.sampling, strict=settings.strict)
        dedup = FrameDedup(settings.dedup_threshold)
        pending: list[np.ndarray] = []
        held = 0
        for frames, stamps in stream.batches(spec.chunk_frames):
            keep, source = dedup.select(frames)
            times.append(stamps)
            sources.append(source)
            if len(keep):
                pending.append(frames[keep])
                held += len(keep)
            if held >= spec.chunk_frames:
                yield _frame_rows(index, dedup.kept - held, np.concatenate(pending))
                pending, held = [], 0
        if held:
            yield _frame_rows(index, dedup.kept - held, np.concatenate(pending))
        source = np.concatenate(sources)
        info = {"duration": float(stream.duration), "times": np.concatenate(times).tolist(),
                "kept": int(dedup.kept),
                "source": None if settings.dedup_threshold is None else source.tolist()}
    except TfvtgError as exc:  # an error row: the other videos of this block go on
        info = {"error": str(exc)}
    except Exception as exc:  # noqa: BLE001 (a decoder crash on one file must not fail the dataset)
        info = {"error": f"{type(exc).__name__}: {exc}"}
    yield {"video": np.array([index]), "slot": np.array([-1]), "frame": blank,
           "info": np.array([json.dumps(info)], dtype=object), "pid": np.array([os.getpid()])}


def _frame_rows(index: int, first_slot: int, frames: np.ndarray) -> dict[str, np.ndarray]:
    n = len(frames)
    return {"video": np.full(n, index), "slot": np.arange(first_slot, first_slot + n), "frame": frames,
            "info": np.array([""] * n, dtype=object), "pid": np.full(n, os.getpid())}


class _EncodeActor:
    """An encoder actor: the model is loaded once; frames in, float16 (Q, D) features out (info rows pass)."""

    def __init__(self, settings: ExtractSettings) -> None:
        # A model that cannot load (ModelError) is raised by the first batch instead: a task's error reaches
        # the driver as itself (`_tfvtg_error`), an actor's death in its constructor only as Ray's text.
        self.error: TfvtgError | None = None
        try:
            self.encoder = settings.create_encoder()
        except TfvtgError as exc:
            self.error = exc

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from tfvtg.engines.local import encode_frames

        if self.error is not None:
            raise self.error
        frames = batch["slot"] >= 0
        config = self.encoder.config
        features = np.zeros((len(frames), config.num_query_tokens, config.embed_dim), dtype=np.float16)
        if frames.any():
            features[frames] = encode_frames(self.encoder, batch["frame"][frames])
        precision = getattr(config, "precision", None) or ""
        return {"video": batch["video"], "slot": batch["slot"], "features": features, "info": batch["info"],
                "precision": np.array([precision] * len(frames), dtype=object),
                "decode_pid": batch["pid"], "encode_pid": np.full(len(frames), os.getpid())}


# What the driver needs of the encoder: (name, image size, default fps, Q, D, precision).
_Config = tuple[str, tuple[int, int], float, int, int, "str | None"]


def _probe_config(settings: ExtractSettings) -> _Config:
    c = settings.create_encoder().config
    size = (int(c.image_size[0]), int(c.image_size[1]))
    return c.name, size, c.default_fps, c.num_query_tokens, c.embed_dim, getattr(c, "precision", None)


def _checkpoint_config(settings: ExtractSettings, gpus: float) -> _Config | None:
    """The config from the checkpoint's JSON files at hand (no model load), else None.

    The precision is the one an actor with ``gpus`` GPUs will pick: Ray hides CUDA from an actor without
    GPUs. Every registered encoder samples at `DEFAULT_FPS`.
    """
    from tfvtg.device import precision_name
    from tfvtg.encoders import read_checkpoint_shape
    from tfvtg.encoders.base import DEFAULT_FPS
    from tfvtg.errors import ModelError

    if callable(settings.model):
        return None
    try:
        name, size, queries, dim = read_checkpoint_shape(os.fspath(settings.model))
    except ModelError:
        return None  # the probe reports it, as the actors would
    if size is None or queries is None or dim is None:
        return None
    device = (settings.device or "auto").strip().lower().split(":")[0]  # as `tfvtg.device.resolve_device`
    device = ("cuda" if gpus > 0 else "cpu") if device == "auto" else device
    return name, size, DEFAULT_FPS, queries, dim, precision_name(settings.dtype, device)


_CONNECT_TIMEOUT_S = 5.0


def _check_reachable(address: str) -> None:
    """Refuse a ``host:port`` or ``ray://host:port`` address where nothing answers: ``ray.init`` would retry
    for minutes. Other forms (``auto``) are Ray's to resolve."""
    import socket

    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not host or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=_CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise InputError(f"cannot connect to the Ray cluster at {address}: nothing answers at {host}:{port} "
                         f"({reason})") from None


def _tfvtg_error(exc: BaseException) -> BaseException:
    """The `TfvtgError` a Ray error wraps (an encoder's `ModelError` raised in an actor), else ``exc``.

    Its message loses the retry note Ray Data appends to a failed task's error ("Failed to apply UDF ...").
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        cause = getattr(current, "cause", None)
        if isinstance(current, TfvtgError) and not isinstance(cause, TfvtgError):
            # (Ray's RayTaskError(ModelError) is a ModelError too: its cause is the one raised.)
            if current.args and isinstance(current.args[0], str) and _RAY_RETRY_NOTE in current.args[0]:
                current.args = (current.args[0].split(_RAY_RETRY_NOTE)[0], *current.args[1:])
            return current
        seen.add(id(current))
        current = cause or current.__cause__ or current.__context__
    return exc


# How Ray Data's note on a failed task's error begins (ray.data._internal.util).
_RAY_RETRY_NOTE = "\nFailed to "


# Ray's console lines that say nothing to a tfvtg user: its token-auth notice, the start and finish of a local
# Ray and of a dataset, and the progress-bar note that tfvtg's own setting causes (its one bar replaces them).
_RAY_CHATTER = re.compile(r"^(Token authentication is enabled|Started a local Ray instance|Connected to Ray "
                          r"cluster|Progress bars disabled|.*Dataset \S+ execution finished)")


class _QuietRay(logging.Filter):
    """Keeps Ray's chatter off the console during a tfvtg run, and with ``errors`` Ray Data's error reports of
    a failed run too (the run raises the error itself, as one line)."""

    def __init__(self, errors: bool) -> None:
        super().__init__()
        self.errors = errors

    def filter(self, record: logging.LogRecord) -> bool:
        if self.errors and record.levelno >= logging.ERROR:
            return False
        return not _RAY_CHATTER.match(record.getMessage())


@contextlib.contextmanager
def _quiet_ray(*, errors: bool = False) -> Iterator[None]:
    """`_QuietRay` on the console handlers of Ray's loggers while the block runs (not with --verbose)."""
    if logging.getLogger("tfvtg").isEnabledFor(logging.DEBUG):  # --verbose shows them
        yield
        return
    quiet = _QuietRay(errors)
    handlers = [h for name in ("ray", "ray.data") for h in logging.getLogger(name).handlers
                if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)


@dataclass
class _Partial:
    slots: dict[int, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] | None = None
    precision: str | None = None  # as the actors that encoded the frames report it


class RayEngine:
    """Extract on a Ray cluster with Ray Data (see the module docstring).

    Args:
        address: An existing cluster (``"auto"``, ``"HEAD_IP:6379"``); None connects to the Ray already
            initialised in this process, else starts a local one for the run.
        workers: Encoder actors (default: one per GPU of the cluster, or one without GPUs).
        gpus_per_worker: GPUs per actor (default 1 when the cluster has GPUs, else 0).
        decode_cpus: CPUs per decode task (default: the share that runs one decode task per CPU of the
            cluster, the encoder actors' CPUs included: an actor mostly waits, on its GPU or for frames).
        chunk_frames: Kept frames per chunk of a video (default `DEFAULT_CHUNK_FRAMES`).
        object_store_bytes: Object store size of a Ray started here (default: Ray's).
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None,
                 gpus_per_worker: float | None = None, decode_cpus: float | None = None,
                 chunk_frames: int | None = None, object_store_bytes: int | None = None) -> None:
        _import_ray()
        for label, value in (("workers", workers), ("chunk_frames", chunk_frames)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InputError(f"{label} must be a positive integer, got {value!r}")
        for label, value in (("gpus_per_worker", gpus_per_worker), ("decode_cpus", decode_cpus)):
            if value is not None and not (isinstance(value, (int, float)) and value >= 0):
                raise InputError(f"{label} must be a number >= 0, got {value!r}")
        if decode_cpus is not None and decode_cpus <= 0:
            raise InputError(f"decode_cpus must be above 0, got {decode_cpus!r}")
        self.address = address
        self.workers = workers
        self.gpus_per_worker = gpus_per_worker
        self.decode_cpus = None if decode_cpus is None else float(decode_cpus)
        self.chunk_frames = chunk_frames or DEFAULT_CHUNK_FRAMES
        self.object_store_bytes = object_store_bytes
        self._config: _Config | None = None
        self._config_for: ExtractSettings | None = None  # the settings `_config` is for
        self._session: contextlib.ExitStack | None = None
        self._ray_module: Any = None
        self.last_pids: tuple[set[int], set[int]] = (set(), set())  # (decode, encode) processes of the run

    # -- cluster ---------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connected(self) -> Iterator[Any]:
        """Ray for the run: the one already initialised, a cluster at ``address``, or a local one we own."""
        ray = _import_ray()
        if ray.is_initialized():
            yield ray
            return
        if self.address is not None:
            _check_reachable(self.address)
            try:
                with _quiet_ray():
                    ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise InputError(f"cannot connect to the Ray cluster at {self.address}: {exc}") from None
            try:
                yield ray
            finally:
                ray.shutdown()  # disconnects this driver; the cluster stays up
            return
        root = tempfile.mkdtemp(prefix="tfvtg-ray-")
        # Ray's session files and logs go under the run's folder (only its user-wide auth token stays in
        # ~/.ray: a token changed within one process is not picked up by Ray's cached loader).
        env = {"RAY_TMPDIR": root}
        previous = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        try:
            with _quiet_ray():
                ray.init(include_dashboard=False, log_to_driver=False, _temp_dir=root,
                         object_store_memory=self.object_store_bytes)
            try:
                yield ray
            finally:
                ray.shutdown()
        finally:
            for key, value in previous.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            shutil.rmtree(root, ignore_errors=True)

    def _resources(self, ray: Any) -> tuple[float, int]:
        """(GPUs per actor, actors) from the options and the cluster's GPUs."""
        gpus = float(ray.cluster_resources().get("GPU", 0))
        per = self.gpus_per_worker if self.gpus_per_worker is not None else (1.0 if gpus else 0.0)
        if per > gpus:
            raise InputError(f"--gpus-per-worker {per:g} but the Ray cluster has {gpus:g} GPUs")
        workers = self.workers or (max(1, int(gpus // per)) if per > 0 else 1)
        return per, workers

    def _decode_cpus(self, ray: Any, workers: int) -> float:
        """CPUs per decode task: the option, else the share that runs one decode task per cluster CPU.

        Measured on 2 CPUs with a tiny model (benchmarks/RESULTS.md): 1 CPU per task (one decoder beside the
        actor) ran at 0.77x the local engine, 0.5 (two decoders) at 0.96x.
        """
        cpus = float(ray.cluster_resources().get("CPU", 0))
        if cpus == 0:  # an autoscaling cluster before its workers join: Ray schedules as they come
            return self.decode_cpus or 1.0
        free = cpus - workers  # each encoder actor holds one CPU
        if free <= 0:
            actors = "its encoder actor takes" if workers == 1 else f"its {workers} encoder actors take"
            raise InputError(f"the Ray cluster has {cpus:g} CPUs and {actors} one each, leaving none to "
                             f"decode with; use fewer --workers or a cluster with more CPUs")
        if self.decode_cpus is None:
            return free / cpus
        if self.decode_cpus > free:
            actors = "encoder actor" if workers == 1 else f"{workers} encoder actors"
            raise InputError(f"--decode-cpus {self.decode_cpus:g} but only {free:g} of the Ray cluster's "
                             f"{cpus:g} CPUs are left beside its {actors}")
        return self.decode_cpus

    def _ray(self) -> Any:
        """Ray, connected (or started) on first use and kept until `close`."""
        if self._session is None:
            self._session = contextlib.ExitStack()
            try:
                self._ray_module = self._session.enter_context(self._connected())
            except BaseException:
                self.close()
                raise
        return self._ray_module

    def close(self) -> None:
        """Disconnect from Ray; a Ray started by this engine is shut down and its files removed."""
        session, self._session = self._session, None
        if session is not None:
            session.close()

    def __enter__(self) -> RayEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _encoder_config(self, ray: Any, settings: ExtractSettings) -> _Config:
        if self._config_for != settings:  # one engine may run several extractions with other settings
            gpus, _ = self._resources(ray)
            self._config, self._config_for = _checkpoint_config(settings, gpus), settings
        if self._config is None:
            # Without the checkpoint's files at hand (a callable, a Hub id not cached here): one model load
            # where an encoder actor would run; the worker exits after it (max_calls=1), so it holds no GPU
            # memory while the actors load.
            probe = ray.remote(max_calls=1)(_probe_config).options(num_cpus=1, num_gpus=gpus,
                                                                   max_retries=_PROBE_RETRIES)
            try:
                self._config = ray.get(probe.remote(settings))
            except Exception as exc:
                raise _tfvtg_error(exc) from None
        return self._config

    def known_precision(self, settings: ExtractSettings) -> str | None:
        """An explicit dtype's precision (the same on every device); None for ``auto``, which depends on the
        GPUs of the cluster's workers (known once connected: `encoder_config`), and for a callable model."""
        from tfvtg.device import precision_name

        if callable(settings.model):
            return None
        on_cpu, on_gpu = precision_name(settings.dtype, "cpu"), precision_name(settings.dtype, "cuda")
        return on_cpu if on_cpu == on_gpu else None

    def encoder_config(self, settings: ExtractSettings) -> EncoderConfig:
        from tfvtg.encoders.base import EncoderConfig

        name, size, fps, q, d, precision = self._encoder_config(self._ray(), settings)
        return EncoderConfig(name=name, image_size=size, mean=(0.0,) * 3, std=(1.0,) * 3, num_query_tokens=q,
                             embed_dim=d, default_fps=fps, precision=precision)

    # -- run -------------------------------------------------------------------------------------------------

    def run(self, jobs: list[Job], settings: ExtractSettings, summary: ExtractSummary, *,
            progress: bool, echo: Callable[[str], None]) -> None:
        if not jobs:
            return
        self._run(self._ray(), jobs, settings, summary, progress, echo)

    def _run(self, ray: Any, jobs: list[Job], settings: ExtractSettings, summary: ExtractSummary,
             progress: bool, echo: Callable[[str], None]) -> None:
        from tqdm import tqdm

        from tfvtg.video import check_fps

        gpus, workers = self._resources(ray)
        decode_cpus = self._decode_cpus(ray, workers)
        name, size, default_fps, _, _, _ = self._encoder_config(ray, settings)
        fps = check_fps(default_fps if settings.fps is None else settings.fps)
        spec = _DecodeSpec(settings, fps, size, self.chunk_frames)
        context = ray.data.DataContext.get_current()
        saved = {key: getattr(context, key) for key in ("enable_progress_bars", "print_on_execution_start",
                                                        "raise_original_map_exception")}
        partial: dict[int, _Partial] = {}
        done: set[int] = set()
        decode_pids: set[int] = set()
        encode_pids: set[int] = set()
        bar = tqdm(total=len(jobs), unit="video", desc="extracting", file=sys.stderr, disable=not progress)
        try:
            context.enable_progress_bars = False  # the driver shows one bar of videos instead
            context.print_on_execution_start = False
            context.raise_original_map_exception = True  # an encoder's ModelError reaches the driver as is
            items = [{"video": i, "path": os.fspath(job.video)} for i, job in enumerate(jobs)]
            dataset = ray.data.from_items(items, override_num_blocks=len(items))
            # Decode and encode stay separate operators: the decode task's memory request (its frame
            # buffers) makes their resources differ, which keeps Ray from fusing decoding into the actor
            # (which would then decode one video at a time).
            decode_bytes = _DECODE_BASE_BYTES + 4 * self.chunk_frames * size[0] * size[1] * 3
            dataset = dataset.map_batches(_decode_video, fn_kwargs={"spec": spec}, batch_size=1,
                                          num_cpus=decode_cpus, memory=decode_bytes)
            dataset = dataset.map_batches(_EncodeActor, fn_constructor_kwargs={"settings": settings},
                                          batch_size=settings.batch_size, num_cpus=1, num_gpus=gpus,
                                          compute=ray.data.ActorPoolStrategy(size=workers))
            with _quiet_ray(errors=True):
                for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                    decode_pids.update(int(p) for p in batch["decode_pid"])
                    encode_pids.update(int(p) for p in batch["encode_pid"])
                    for row in range(len(batch["video"])):
                        index = int(batch["video"][row])
                        if index in done:
                            continue
                        state = partial.setdefault(index, _Partial())
                        slot = int(batch["slot"][row])
                        if slot >= 0:
                            state.slots[slot] = batch["features"][row]
                            state.precision = str(batch["precision"][row]) or None
                        else:
                            state.info = json.loads(str(batch["info"][row]))
                        result = self._complete(state, jobs[index], name, size, fps, settings)
                        if result is None:
                            continue
                        record_result(jobs[index], result, summary, echo, None)  # videos overlap here
                        done.add(index)
                        del partial[index]
                        bar.update(1)
        except Exception as exc:
            raise _tfvtg_error(exc) from None
        finally:
            bar.close()
            self.last_pids = (decode_pids, encode_pids)
            for key, value in saved.items():
                setattr(context, key, value)
        lost = [jobs[i] for i in range(len(jobs)) if i not in done]
        for job in lost:  # cannot happen unless Ray dropped rows; never report such a video as done
            summary.failed[job.vid] = "lost by the Ray pipeline (no result came back); run again to redo it"

    @staticmethod
    def _complete(state: _Partial, job: Job, encoder: str, size: tuple[int, int], fps: float,
                  settings: ExtractSettings) -> Any:
        """The video's features (or its error) once its info row and every kept frame are in; else None."""
        from tfvtg.engines.local import assemble
        from tfvtg.errors import VideoError
        from tfvtg.features import VideoFeatures

        info = state.info
        if info is None:
            return None
        if "error" in info:
            return VideoError(info["error"])
        if len(state.slots) < info["kept"]:
            return None
        kept = [state.slots[i][None] for i in range(info["kept"])]
        times = np.asarray(info["times"], dtype=np.float64)
        source = np.arange(len(times)) if info["source"] is None else np.asarray(info["source"], np.int64)
        return VideoFeatures(features=assemble([np.concatenate(kept)], source), timestamps=times,
                             duration=info["duration"], fps=fps, encoder=encoder, image_size=size,
                             sampling=settings.sampling, video=os.path.abspath(job.video),
                             skipped_frames=len(times) - info["kept"],
                             dedup_threshold=settings.dedup_threshold, precision=state.precision)
