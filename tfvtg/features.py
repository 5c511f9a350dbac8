"""Per-frame encoder features of a video: extraction, feature files and an on-disk cache.

A `VideoFeatures` holds the (T, Q, D) float16 token features of T sampled frames with each frame's real
time. Files are safetensors (tensors ``features`` and ``timestamps``) with the metadata as JSON in the
safetensors header; they are written atomically (a unique temp file in the same directory, then
``os.replace``) so a reader or a concurrent writer never sees a half-written file. Nothing is ever unpickled.
The official TFVTG (T, 32, 256) ``.npy`` files load with `VideoFeatures.from_tfvtg_npy`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty, Full, Queue
from typing import Any, TypeVar

import numpy as np

import tfvtg
from tfvtg.atomic import write_atomic
from tfvtg.device import OFFICIAL_PRECISION
from tfvtg.encoders import DEFAULT_ENCODER
from tfvtg.encoders.base import Encoder
from tfvtg.errors import InputError, check_path, one_line
from tfvtg.video import check_fps, video_id

T = TypeVar("T")

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "FeatureCache",
    "VideoFeatures",
    "check_finite",
    "count_non_finite",
    "extract_features",
    "load_features",
    "prefetch",
    "read_metadata",
]

logger = logging.getLogger("tfvtg.features")

FORMAT = "tfvtg.features"
FORMAT_VERSION = 1
_META_KEY = "tfvtg"
# Encoder and image size of the official feature files (LAVIS BLIP-2 ITM "coco").
_TFVTG_NPY_ENCODER = DEFAULT_ENCODER
_TFVTG_NPY_IMAGE_SIZE = (364, 364)


def _same_fps(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


@dataclass(eq=False)  # == compares the arrays' values (tfvtg.compare), not the ambiguous array ==
class VideoFeatures:
    """Encoder features of a video's sampled frames, with the metadata needed to use them correctly.

    Attributes:
        features: (T, Q, D) float16 token features, not normalised.
        timestamps: (T,) float64 time in seconds of each sampled frame.
        duration: Video duration in seconds (the decoded span, or the annotation's for .npy files).
        fps: Sampling rate asked for.
        encoder: `EncoderConfig.name` of the encoder that made them.
        image_size: (height, width) frames were resized to.
        sampling: ``"timestamp"``, ``"reference"`` or ``"tfvtg-npy"`` (official file, times k * duration / T).
        video: Source path or id.
        skipped_frames: Frames whose features were reused from the previous encoded frame (dedup).
        dedup_threshold: The dedup threshold they were made with (None: every frame encoded).
        version: tfvtg version that wrote them.
        precision: How the encoder computed them (`tfvtg.device`, the encoder's ``config.precision``):
            ``"autocast-float16"`` (float32 weights under fp16 autocast: the official TFVTG numerics, the CUDA
            default, and what ``tfvtg-npy`` files are taken to be), ``"float32"`` (the CPU default),
            ``"float16"`` or ``"bfloat16"`` (weights cast; asked for with ``--dtype``). None: not recorded
            (files written before tfvtg recorded it, or an encoder that does not say). Stored as
            ``precision`` in the file's metadata; features of different precisions differ slightly, so
            ``--profile reference`` warns about any but ``autocast-float16``.
    """

    features: np.ndarray
    timestamps: np.ndarray
    duration: float
    fps: float
    encoder: str
    image_size: tuple[int, int]
    sampling: str = "timestamp"
    video: str | None = None
    skipped_frames: int = 0
    dedup_threshold: float | None = None
    version: str = field(default=tfvtg.__version__)
    precision: str | None = None

    def __post_init__(self) -> None:
        self.features = np.asarray(self.features)
        self.timestamps = np.asarray(self.timestamps, dtype=np.float64)
        if self.features.ndim != 3 or not np.issubdtype(self.features.dtype, np.floating):
            raise InputError(
                f"features must be a (T, Q, D) float array, got {self.features.dtype} {self.features.shape}"
            )
        if self.timestamps.shape != (len(self.features),):
            raise InputError(
                f"timestamps must have shape ({len(self.features)},) to match the features, "
                f"got {self.timestamps.shape}"
            )
        self.duration = float(self.duration)
        self.fps = float(self.fps)
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        self.skipped_frames = int(self.skipped_frames)
        self.dedup_threshold = None if self.dedup_threshold is None else float(self.dedup_threshold)
        if self.precision is not None and not isinstance(self.precision, str):
            raise InputError(f"precision must be a name such as 'autocast-float16' or None, "
                             f"got {self.precision!r}")

    def __len__(self) -> int:
        return len(self.features)

    def __eq__(self, other: object) -> bool:
        from tfvtg.compare import fields_equal

        return fields_equal(self, other)

    __hash__ = None  # type: ignore[assignment]  (mutable arrays inside)

    def __repr__(self) -> str:
        # The arrays as shape and dtype: a full repr prints every value (kilobytes for a short clip).
        t, q, d = self.features.shape
        return (f"VideoFeatures(video={self.video!r}, frames={t}, features=({t}, {q}, {d}) "
                f"{self.features.dtype}, duration={self.duration:.2f}, fps={self.fps:g}, "
                f"encoder={self.encoder!r}, sampling={self.sampling!r})")

    @property
    def num_frames(self) -> int:
        return len(self.features)

    def metadata(self) -> dict[str, Any]:
        """The JSON metadata stored with the tensors."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "duration": self.duration,
            "fps": self.fps,
            "encoder": self.encoder,
            "image_size": list(self.image_size),
            "sampling": self.sampling,
            "video": self.video,
            "skipped_frames": self.skipped_frames,
            "dedup_threshold": self.dedup_threshold,
            "version": self.version,
            "dtype": str(self.features.dtype),
            "shape": list(self.features.shape),
            "precision": self.precision,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write a ``.safetensors`` file atomically; returns its path."""
        from safetensors.numpy import save

        tensors = {
            "features": np.ascontiguousarray(self.features),
            "timestamps": np.ascontiguousarray(self.timestamps),
        }
        data = save(tensors, metadata={_META_KEY: json.dumps(self.metadata())})
        return write_atomic(path, data)

    @classmethod
    def load(
        cls, path: str | os.PathLike, *, encoder: str | None = None, fps: float | None = None
    ) -> VideoFeatures:
        """Read a file written by `save`.

        Args:
            path: The ``.safetensors`` file.
            encoder: Expected encoder name; a file made by another encoder is refused. None accepts any.
            fps: Expected sampling rate; None accepts any.

        Raises:
            InputError: unreadable or not a tfvtg feature file, or metadata that does not match.
        """
        from safetensors.numpy import load

        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read feature file {path}: {exc.strerror or exc}") from None
        meta = _read_metadata(data, path)
        try:
            tensors = load(data)
        except Exception as exc:  # safetensors raises its own SafetensorError on damaged data
            raise InputError(f"cannot read feature file {path}: {one_line(exc)}") from None
        if set(tensors) != {"features", "timestamps"}:
            raise InputError(f"cannot read feature file {path}: expected tensors features and timestamps")
        try:
            result = cls(
                features=tensors["features"],
                timestamps=tensors["timestamps"],
                duration=meta["duration"],
                fps=meta["fps"],
                encoder=meta["encoder"],
                image_size=tuple(meta["image_size"]),
                sampling=meta["sampling"],
                video=meta.get("video"),
                skipped_frames=meta.get("skipped_frames", 0),
                dedup_threshold=meta.get("dedup_threshold"),
                version=meta.get("version", "unknown"),
                precision=meta.get("precision"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"cannot read feature file {path}: bad metadata ({exc})") from None
        check_finite(result, path)
        if encoder is not None and result.encoder != encoder:
            raise InputError(
                f"{path} holds features of encoder {result.encoder!r}, not {encoder!r}; "
                f"re-extract with {encoder!r} or load without an encoder check"
            )
        if fps is not None and not _same_fps(result.fps, float(fps)):
            raise InputError(
                f"{path} holds features sampled at {result.fps:g} fps, not {float(fps):g}; "
                f"re-extract at {float(fps):g} fps or load without an fps check"
            )
        return result

    @classmethod
    def from_tfvtg_npy(
        cls,
        path: str | os.PathLike,
        duration: float,
        fps: float = 3.0,
        *,
        encoder: str = _TFVTG_NPY_ENCODER,
    ) -> VideoFeatures:
        """Load an official TFVTG feature file: (T, 32, 256) float16 ``.npy`` (never unpickled).

        Frame k gets time k * duration / T, the official code's mapping (its frames were really sampled at
        k * (len - 1) / (n - 1) / avg_fps; the difference is under one frame).

        Args:
            path: The ``<vid>.npy`` file.
            duration: The video's duration in seconds (from the annotation).
            fps: Rate the features were extracted at (3 in the official code).
            encoder: Encoder name to record (the official files come from BLIP-2 ITM coco).

        Raises:
            InputError: unreadable file, pickled/object array, wrong shape, or a bad duration.
        """
        path = Path(path)
        if not (isinstance(duration, (int, float)) and math.isfinite(duration) and duration > 0):
            raise InputError(f"duration must be a positive number of seconds, got {duration!r}")
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as exc:  # object arrays need pickle: refused
            raise InputError(f"cannot read {path}: {one_line(exc)}") from None
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
        if not isinstance(array, np.ndarray):
            raise InputError(f"cannot read {path}: expected one array in a .npy file")
        if array.ndim != 3 or not np.issubdtype(array.dtype, np.floating) or len(array) == 0:
            raise InputError(
                f"{path} is not a TFVTG feature file: expected a (T, 32, 256) float array, "
                f"got {array.dtype} {array.shape}"
            )
        t = len(array)
        return cls(
            features=array.astype(np.float16, copy=False),
            timestamps=np.arange(t, dtype=np.float64) * float(duration) / t,
            duration=float(duration),
            fps=fps,
            encoder=encoder,
            image_size=_TFVTG_NPY_IMAGE_SIZE,
            sampling="tfvtg-npy",
            video=path.name.split(".")[0],
            precision=OFFICIAL_PRECISION,
        )


def check_finite(features: VideoFeatures, path: str | os.PathLike) -> None:
    """Refuse features read from ``path`` that hold NaN or infinite values (a damaged extraction).

    Such values make every similarity curve of the video non-finite, so the file is named here, where it is
    read, rather than a query later.

    Raises:
        InputError: Naming the file, how many values are bad, and what to do.
    """
    bad = count_non_finite(features.features)
    if bad:
        raise InputError(f"feature file {path}: {bad} of its {features.features.size} values are not finite "
                         "(NaN or inf); extract it again")
    if not np.all(np.isfinite(features.timestamps)):
        raise InputError(f"feature file {path}: its frame timestamps are not all finite; extract it again")


def count_non_finite(values: np.ndarray) -> int:
    """How many of ``values`` are NaN or infinite.

    IEEE floats of 16 and 32 bits are counted by their exponent bits (all ones: inf or NaN), an integer test
    about 10x faster than ``np.isfinite`` on float16, which is how feature files store features.
    """
    if values.size == 0:
        return 0
    exponent = {np.dtype(np.float16): (np.uint16, 0x7C00), np.dtype(np.float32): (np.uint32, 0x7F800000)}
    found = exponent.get(values.dtype)
    if found is None or not values.flags.c_contiguous:
        return int(values.size - np.count_nonzero(np.isfinite(values)))
    bits, mask = found[0], found[0](found[1])
    flat = values.reshape(-1).view(bits)
    # In blocks through two small buffers: temporaries the size of the array would cost more in fresh pages
    # than the test itself.
    block = min(len(flat), _FINITE_BLOCK)
    masked, equal = np.empty(block, dtype=bits), np.empty(block, dtype=bool)
    bad = 0
    for start in range(0, len(flat), block):
        part = flat[start : start + block]
        n = len(part)
        np.bitwise_and(part, mask, out=masked[:n])
        bad += int(np.count_nonzero(np.equal(masked[:n], mask, out=equal[:n])))
    return bad


_FINITE_BLOCK = 1 << 16  # values per block of `count_non_finite`


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of a feature file written by `VideoFeatures.save`, from its header alone.

    Only the safetensors header is read (not the tensors), so a whole directory can be checked in
    milliseconds before anything expensive starts. It must parse as a tfvtg feature file of this format
    version with its metadata fields (an ``encoder`` name, an ``image_size`` of two positive ints ...),
    declare tensors ``features`` (T, Q, D) floats and ``timestamps`` (T,), and the file must be as long as the
    header says (a truncated copy is refused). Corrupt tensor bytes are found only by `load`.

    Returns:
        The stored metadata (``encoder``, ``image_size``, ``fps``, ``duration`` ...), with ``"shape"`` taken
        from the features tensor's header entry.

    Raises:
        InputError: unreadable, not a tfvtg feature file, another format version, or truncated.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else 0
            if 0 < n <= size - 8:
                head += f.read(n)
    except OSError as exc:
        raise InputError(f"cannot read feature file {path}: {exc.strerror or exc}") from None
    return _read_metadata(head, path, size)


def _read_metadata(data: bytes, path: Path, file_size: int | None = None) -> dict[str, Any]:
    """Parse and check the tfvtg JSON and tensor entries of a safetensors header.

    ``data`` starts with the 8-byte little-endian header length and holds at least the header; ``file_size``
    is the whole file's length (default ``len(data)``: the whole file is in ``data``).
    """
    bad = f"cannot read feature file {path}: not a tfvtg safetensors feature file"
    if len(data) < 8:
        raise InputError(bad + " (too short)")
    n = int.from_bytes(data[:8], "little")
    if n <= 0 or 8 + n > len(data):
        raise InputError(bad + " (bad header)")
    try:
        header = json.loads(data[8 : 8 + n])
        meta = json.loads(header["__metadata__"][_META_KEY])
    except (ValueError, KeyError, TypeError):
        raise InputError(bad) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(bad)
    if meta.get("format_version") != FORMAT_VERSION:
        raise InputError(
            f"{path} uses feature format version {meta.get('format_version')}, this tfvtg reads "
            f"{FORMAT_VERSION}; re-extract the features"
        )
    missing = [k for k in ("duration", "fps", "encoder", "image_size", "sampling") if k not in meta]
    if missing:
        raise InputError(f"cannot read feature file {path}: bad metadata (no {', '.join(missing)})")
    size = meta["image_size"]
    size_ok = isinstance(size, list) and len(size) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
    if not (isinstance(meta["encoder"], str) and size_ok):
        raise InputError(f"cannot read feature file {path}: bad metadata (encoder {meta['encoder']!r}, "
                         f"image_size {size!r})")
    try:
        shape = [int(v) for v in header["features"]["shape"]]
        ok = len(shape) == 3 and header["timestamps"]["shape"] == shape[:1]
        ok = ok and header["features"]["dtype"] in ("F16", "F32", "F64")
        data_end = max(int(header[k]["data_offsets"][1]) for k in ("features", "timestamps"))
    except (KeyError, TypeError, ValueError, IndexError):
        raise InputError(
            f"cannot read feature file {path}: expected tensors features and timestamps"
        ) from None
    if not ok:
        raise InputError(
            f"cannot read feature file {path}: features {header['features']['dtype']} {shape} and "
            f"timestamps {header['timestamps']['shape']} are not (T, Q, D) floats and (T,)"
        )
    expected = 8 + n + data_end
    size = len(data) if file_size is None else file_size
    if size != expected:
        raise InputError(
            f"cannot read feature file {path}: {size} bytes but its header describes {expected} "
            f"({'truncated' if size < expected else 'trailing data'}); extract it again"
        )
    return {**meta, "shape": shape}


def load_features(path: str | os.PathLike, **kwargs: Any) -> VideoFeatures:
    """Load a feature file by suffix: ``.safetensors`` (`VideoFeatures.load`: encoder=, fps= checks) or an
    official ``.npy`` (`VideoFeatures.from_tfvtg_npy`: needs duration=)."""
    check_path(path, "path", "feature file")
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if kwargs.get("duration") is None:
            raise InputError(f"loading {path} (an official TFVTG .npy) needs duration= (seconds)")
        allowed = {"duration", "fps", "encoder"}
        extra = set(kwargs) - allowed
        if extra:
            raise InputError(f"unexpected arguments for a .npy feature file: {', '.join(sorted(extra))}")
        if kwargs.get("fps") is None:
            kwargs.pop("fps", None)
        if kwargs.get("encoder") is None:
            kwargs.pop("encoder", None)
        return VideoFeatures.from_tfvtg_npy(path, **kwargs)
    if suffix == ".safetensors":
        extra = set(kwargs) - {"encoder", "fps"}
        if extra:
            raise InputError(f"unexpected arguments for a .safetensors file: {', '.join(sorted(extra))}")
        return VideoFeatures.load(path, **kwargs)
    raise InputError(f"unknown feature file type {path.name!r}: expected .safetensors or .npy")


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Yield ``items`` while a background thread produces up to ``depth`` ahead (decode overlaps encode).

    Memory stays bounded by ``depth`` items. An exception in the producer is re-raised here; if the consumer
    stops early (an encoder error, a break), the producer is told to stop and is joined.
    """
    queue: Queue = Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        queue.put((item, None), timeout=0.1)
                        break
                    except Full:
                        continue
                if stop.is_set():
                    return
            queue.put((done, None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            queue.put((done, exc))

    worker = threading.Thread(target=produce, name="tfvtg-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item, error = queue.get()
            if item is done:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue, then let it finish
            try:
                queue.get_nowait()
            except Empty:
                worker.join(timeout=0.05)


def extract_features(
    video: str | os.PathLike,
    encoder: Encoder,
    *,
    fps: float | None = None,
    mode: str = "timestamp",
    batch_size: int = 32,
    dedup_threshold: float | None = None,
    progress: bool = True,
    strict: bool = False,
) -> VideoFeatures:
    """Sample a video's frames and encode them in batches into (T, Q, D) float16 features.

    Args:
        video: Video file.
        encoder: Any `Encoder`; frames are resized to its ``config.image_size`` by the decoder.
        fps: Sampling rate; None uses ``encoder.config.default_fps``.
        mode: ``"timestamp"`` or ``"reference"`` (see `tfvtg.video.sample_frames`).
        batch_size: Frames per encoder call.
        dedup_threshold: When a frame's mean absolute pixel difference (0-255) to the last encoded frame is
            below this, reuse that frame's features instead of encoding (off when None).
        progress: Show a progress bar on stderr.
        strict: Fail on truncated/corrupt video instead of warning.

    Raises:
        InputError: bad arguments. VideoError: the video cannot be decoded. ModelError: bad encoder output.
    """
    from tfvtg.engines.base import ExtractSettings
    from tfvtg.engines.local import encode_videos

    # ExtractSettings checks fps; encode_videos resolves None to the encoder's default and checks that.
    settings = ExtractSettings(model=lambda: encoder, batch_size=batch_size, fps=fps, sampling=mode,
                               dedup_threshold=dedup_threshold, strict=strict)
    ((_, result),) = encode_videos([video], encoder, settings, progress=progress)
    if isinstance(result, BaseException):
        raise result
    return result


class FeatureCache:
    """A directory of feature files keyed by video (path, size, mtime), encoder, fps, mode and dedup.

    A second request for the same video and settings loads the file instead of decoding and encoding. Writes
    are atomic, so concurrent extractions of one video leave one complete file; a damaged file is a miss.

    Args:
        root: Cache root; default `tfvtg.cache.cache_root` (``$TFVTG_CACHE``, else ``$XDG_CACHE_HOME/tfvtg``,
            else ``~/.cache/tfvtg``). Files go in ``<root>/features/``.
    """

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        if root is None:
            from tfvtg.cache import cache_root

            root = cache_root()
        self.root = Path(root).expanduser()
        self.dir = self.root / "features"

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.root)!r})"

    def key(
        self,
        video: str | os.PathLike,
        encoder_name: str,
        fps: float,
        mode: str = "timestamp",
        dedup_threshold: float | None = None,
    ) -> str:
        """Hex digest of (resolved path, size, mtime_ns, encoder, fps, mode, dedup threshold)."""
        from tfvtg.errors import VideoError

        path = Path(video).expanduser().resolve()
        try:
            st = path.stat()
        except FileNotFoundError:
            raise VideoError(f"cannot open {video}: file not found") from None
        parts = [
            FORMAT_VERSION,
            str(path),
            st.st_size,
            st.st_mtime_ns,
            encoder_name,
            repr(float(fps)),
            mode,
            None if dedup_threshold is None else repr(float(dedup_threshold)),
        ]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]

    def path_for(
        self,
        video: str | os.PathLike,
        encoder_name: str,
        fps: float,
        mode: str = "timestamp",
        dedup_threshold: float | None = None,
    ) -> Path:
        """Where the features for these settings live (whether or not they exist yet)."""
        stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in video_id(video))[:60]
        return self.dir / f"{stem}-{self.key(video, encoder_name, fps, mode, dedup_threshold)}.safetensors"

    def get(
        self,
        video: str | os.PathLike,
        encoder_name: str,
        fps: float,
        mode: str = "timestamp",
        dedup_threshold: float | None = None,
        precision: str | None = None,
    ) -> VideoFeatures | None:
        """Cached features, or None when absent or unreadable (logged as a warning) or made at another
        ``precision`` (a file that does not record one matches any)."""
        path = self.path_for(video, encoder_name, fps, mode, dedup_threshold)
        return self._load(path, encoder_name, fps, precision)

    @staticmethod
    def _load(path: Path, encoder_name: str, fps: float, precision: str | None) -> VideoFeatures | None:
        if not path.is_file():
            return None
        try:
            cached = VideoFeatures.load(path, encoder=encoder_name, fps=fps)
        except InputError as exc:
            logger.warning("ignoring damaged cache file (%s); extracting again", exc)
            return None
        if None not in (precision, cached.precision) and cached.precision != precision:
            logger.info("cached features of %s were made in %s, not %s; extracting again", cached.video,
                        cached.precision, precision)
            return None
        return cached

    def get_or_extract(
        self,
        video: str | os.PathLike,
        encoder: Encoder,
        *,
        fps: float | None = None,
        mode: str = "timestamp",
        batch_size: int = 32,
        dedup_threshold: float | None = None,
        progress: bool = True,
    ) -> VideoFeatures:
        """Cached features of ``video``, extracting and storing them on a miss.

        A cache directory that cannot be written is logged as a warning; the features are returned uncached.
        """
        fps = check_fps(encoder.config.default_fps if fps is None else fps)
        name = encoder.config.name
        # The key (path, size, mtime) is taken once, before the extraction: a file rewritten meanwhile must
        # not get the old content's features under its new key.
        target = self.path_for(video, name, fps, mode, dedup_threshold)
        cached = self._load(target, name, fps, getattr(encoder.config, "precision", None))
        if cached is not None:
            logger.debug("feature cache hit for %s", video)
            return cached
        features = extract_features(
            video,
            encoder,
            fps=fps,
            mode=mode,
            batch_size=batch_size,
            dedup_threshold=dedup_threshold,
            progress=progress,
        )
        try:
            features.save(target)
        except OSError as exc:  # the features are in hand: a cache that cannot be written only costs speed
            logger.warning("cannot write the feature cache %s (%s); these features are not cached: set "
                           "TFVTG_CACHE to a writable directory or turn the cache off", target.parent,
                           exc.strerror or exc)
        return features
