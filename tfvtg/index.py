"""A video collection's moment index: find where, in any of many videos, a query happens.

`Collection` is a folder on disk: ``manifest.json`` (the indexed videos, their feature files and the
encoder) and one FAISS file holding every frame token of every video, unit-normalised. A search runs two
stages:

1. **Coarse**: the query's text embedding searches the token index. BLIP-2's frame score is the max cosine
   over the frame's query tokens, so the first hit of each frame is that frame's score (exactly so on a flat
   index); the videos of the best frames, in order, are the candidates.
2. **Exact**: each candidate's feature file is read and grounded by the same TFVTG pipeline as ``ground``
   (`Grounder.ground_details`: curves by `max_cosine_similarity`, decomposition, profile, preset); the
   spans of all candidates are ranked by a score that means the same in every video (`span_score`).

``exhaustive=True`` skips the first stage and grounds every video: the reference the fast path is measured
against, and all a tiny collection needs.

The store: small collections (under `FLAT_LIMIT` tokens) keep exact float vectors (``IndexFlatIP``); larger
ones an IVF-PQ index (`MAX_NLIST` lists at most, 8-byte codes per 8 dimensions: ~40 bytes a token with its
id) trained on a sample, retrained from the feature files when the collection has grown `REGROW` times since
it was trained. Every change writes a new index file and then replaces the manifest atomically, so readers
and an interrupted change always see one complete state; changes take an exclusive lock on the folder.
FAISS is the ``[search]`` extra, imported only here.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tfvtg.atomic import write_atomic
from tfvtg.errors import InputError, check_count, one_line

if TYPE_CHECKING:
    from tfvtg.features import VideoFeatures
    from tfvtg.grounder import Grounder

__all__ = ["Collection", "SearchHit", "span_score"]

log = logging.getLogger("tfvtg.index")

FORMAT = "tfvtg.index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
LOCK = ".lock"
FEATURES_DIR = "features"  # feature files the index extracted itself from videos given to `add`
STAGING_DIR = ".staging"  # where `add` extracts videos, until their files are known to fit the index

FRAME_BITS = 20  # a token's id is video_number << FRAME_BITS | frame
FLAT_LIMIT = 200_000  # tokens up to which the index keeps exact vectors
MAX_NLIST = 256  # IVF lists at most: adding a token costs nlist dot products (plus D * 256 to PQ-encode it)
TRAIN_PER_LIST = 64  # training sample: tokens per IVF list (at least 256 * 40 for the PQ codebooks)
TRAIN_VIDEOS = 64  # videos the training sample is drawn from (each one's feature file is read)
REGROW = 8  # retrain when the collection holds this many times the tokens it was trained for
# Share of the IVF lists a query searches. The lists partition image tokens; a text embedding sits apart from
# them (the modality gap), so its nearest lists are a weak guide: measured on planted collections, probing 1/8
# of the lists missed the planted video in 20% of queries, 1/2 in 3%.
NPROBE_FRACTION = 0.5
VIDEO_FRAMES = 3  # best frames a video's coarse score averages
ADD_CHUNK = 1 << 18  # tokens added to the index per call
CANDIDATE_FRAMES = 64  # distinct best frames the coarse stage reads per candidate video asked for
READ_THREADS = 2  # threads reading the exact stage's feature files
READ_AHEAD = 4  # files read ahead of the one being grounded, at most (2 minutes of BLIP-2: 12 MB of float32)
READ_AHEAD_BYTES = 64 << 20  # and at most this much float32 between them (but always the next file)


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise InputError('the video collection index needs FAISS: pip install -e ".[search]"') from None
    return faiss


@dataclass(frozen=True)
class SearchHit:
    """One moment found in a collection.

    Attributes:
        rank: 1 for the best hit.
        video: The video's id in the index (its feature file's name without suffix).
        start: Span start in seconds.
        end: Span end in seconds.
        score: `span_score`: the query's mean cosine similarity with the better half of the span's frames
            (comparable across videos).
        confidence: The grounding method's own score, relative within its video (TFVTG: 1.0 for its best).
        source: The video file recorded in the feature file (None when it recorded none).
        features: The feature file the span was grounded on.
    """

    rank: int
    video: str
    start: float
    end: float
    score: float
    confidence: float
    source: str | None
    features: str

    def to_dict(self, ndigits: int = 4) -> dict[str, Any]:
        """A JSON-ready dict (times and scores rounded)."""
        out = asdict(self)
        for key in ("start", "end", "score", "confidence"):
            out[key] = round(float(out[key]), ndigits)
        return out


def span_score(curve: np.ndarray, timestamps: np.ndarray, start: float, end: float) -> float:
    """The cross-video score of a span: the mean of the better half of its frames' query similarities.

    TFVTG's confidences are normalised within a video (its best span scores 1.0 in every video), so they
    cannot rank spans of different videos. The raw cosine of the same query text with a span's frames can: it
    is on the encoder's fixed scale. Its plain mean dilutes a short moment inside the method's quantised
    windows (which extend past it), so the better half of the frames counts: a window around a moment keeps
    the moment's score, while a window mostly outside it (the whole video, say) is still pulled down. A frame
    counts when its time lies in [start, end); a span shorter than a frame gets the frame shown at its start.
    """
    curve = np.asarray(curve, dtype=np.float64)
    times = np.asarray(timestamps, dtype=np.float64)
    inside = curve[(times >= start - 1e-9) & (times < end - 1e-9)]
    if not len(inside):
        inside = curve[max(int(np.searchsorted(times, start, side="right")) - 1, 0)][None]
    better_half = np.sort(inside)[len(inside) // 2 :]  # the ceil(n / 2) highest
    return float(better_half.mean())


@dataclass
class _Entry:
    """A video of the index: its feature file and the file's identity when it was indexed."""

    number: int
    features: str
    size: int
    mtime_ns: int
    frames: int
    duration: float
    source: str | None
    owned: bool = False  # extracted by the index into its features/ folder (deleted with the video)


@dataclass
class _Manifest:
    encoder: str | None = None
    image_size: list[int] | None = None
    tokens_per_frame: int | None = None
    dim: int | None = None
    index_file: str | None = None
    generation: int = 0
    kind: str = "empty"  # empty, flat, ivfpq
    trained_for: int = 0  # tokens the index was built for (retrain past REGROW times this)
    next_number: int = 0
    videos: dict[str, _Entry] = field(default_factory=dict)

    def to_json(self) -> bytes:
        body = {"format": FORMAT, "format_version": FORMAT_VERSION, **asdict(self)}
        return (json.dumps(body, indent=1) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, path: Path) -> _Manifest:
        try:
            body = json.loads(data)
            if body.pop("format") != FORMAT:
                raise ValueError("not a tfvtg index")
            if body.pop("format_version") != FORMAT_VERSION:
                raise InputError(f"{path} is an index of another tfvtg version; build it again")
            videos = {name: _Entry(**entry) for name, entry in body.pop("videos").items()}
            return cls(**body, videos=videos)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(f"{path} is not a readable tfvtg index manifest ({one_line(exc)})") from None

    @property
    def tokens(self) -> int:
        return sum(e.frames for e in self.videos.values()) * (self.tokens_per_frame or 0)


def _ours(name: str) -> bool:
    """Whether a file name in an index folder is one the index writes (an interrupted first `add` leaves
    some of them, and no manifest, behind)."""
    return name in (LOCK, FEATURES_DIR, STAGING_DIR) or name.startswith(("tokens-", ".tokens-",
                                                                          f".{MANIFEST}."))


def _file_identity(path: str | os.PathLike[str]) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def _unit_tokens(features: np.ndarray) -> np.ndarray:
    """(T, Q, D) -> (T * Q, D) float32 unit vectors (the inner product is then the cosine)."""
    tokens = np.ascontiguousarray(features.reshape(-1, features.shape[-1]), dtype=np.float32)
    tokens /= np.maximum(np.linalg.norm(tokens, axis=1, keepdims=True), 1e-12)
    return tokens


def _video_selector(faiss: Any, number: int) -> Any:
    """The ids of every token of video ``number``."""
    return faiss.IDSelectorRange(number << FRAME_BITS, (number + 1) << FRAME_BITS)


def _frame_ids(number: int, frames: int) -> np.ndarray:
    return (np.int64(number) << FRAME_BITS) + np.arange(frames, dtype=np.int64)


class _Lock:
    """An exclusive, non-blocking lock on the index folder, held while the index changes (released on exit,
    also when the process dies)."""

    def __init__(self, root: Path) -> None:
        self.path = root / LOCK
        self.fd: int | None = None

    def __enter__(self) -> _Lock:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise InputError(f"index {self.path.parent} is being changed by another process (pid "
                                 f"{holder}); wait for it to finish and try again") from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)  # closing releases the flock
            self.fd = None


class Collection:
    """An on-disk index of many videos' frame features, searched for moments across all of them.

    Open with `Collection.open`; grow with `add`, shrink with `remove`, query with `search`. Nothing is held
    in memory between calls but the manifest; the token index is memory-mapped when searched.
    """

    def __init__(self, root: Path, manifest: _Manifest) -> None:
        self.root = root
        self._manifest = manifest
        self._stamp: tuple[int, int] | None = None  # (mtime_ns, size) of the manifest file last read
        self._index: Any = None
        self._index_file: str | None = None
        self.last_timings: dict[str, float] = {}  # seconds of the last search's stages (coarse_s, exact_s)

    # ------------------------------------------------------------------------------------------ open / info
    @classmethod
    def open(cls, path: str | os.PathLike[str], *, create: bool = True) -> Collection:
        """The collection in folder ``path``.

        A missing folder (or an empty one) is an empty collection when ``create`` (the folder is made by the
        first `add`); otherwise, as for a folder that holds something else, an `InputError`.
        """
        root = Path(path).expanduser()
        manifest_path = root / MANIFEST
        if root.exists() and not root.is_dir():
            raise InputError(f"{root} is a file, not an index folder")
        if manifest_path.is_file():
            collection = cls(root, _Manifest())
            collection._reload()
            return collection
        if root.is_dir() and not all(_ours(p.name) for p in root.iterdir()):
            advice = "; give a new or empty folder" if create else ""
            raise InputError(f"{root} is not a tfvtg index (no {MANIFEST}){advice}")
        if not create:
            raise InputError(f"no index at {root}; create one with: tfvtg index add {root} FEATURES...")
        return cls(root, _Manifest())

    def _load_manifest(self) -> None:
        """The manifest on disk, or an empty one before the first `add` has written it."""
        if (self.root / MANIFEST).is_file():
            self._reload()
        else:
            self._manifest = _Manifest()

    def _reload(self, *, if_changed: bool = False) -> None:
        """Read the manifest (``if_changed``: only when another process has replaced it since the last read;
        a long-lived Collection then follows the adds and removes of others)."""
        path = self.root / MANIFEST
        try:
            st = path.stat()
            if if_changed and (st.st_mtime_ns, st.st_size) == self._stamp:
                return
            data = path.read_bytes()
        except FileNotFoundError:
            if if_changed:
                return
            raise InputError(f"no index at {self.root}") from None
        except OSError as exc:
            raise InputError(f"cannot read index {self.root}: {exc.strerror or exc}") from None
        self._manifest = _Manifest.from_json(data, path)
        self._stamp = (st.st_mtime_ns, st.st_size)

    def __repr__(self) -> str:
        return f"Collection({str(self.root)!r}, videos={len(self._manifest.videos)})"

    def __len__(self) -> int:
        self._reload(if_changed=True)
        return len(self._manifest.videos)

    def searched_encoder(self) -> str:
        """The encoder of the indexed features: the text side a search must use.

        Raises:
            InputError: The index holds no video (nothing to search).
        """
        self._reload(if_changed=True)
        m = self._manifest
        if not m.videos or m.encoder is None:
            raise InputError(f"index {self.root} holds no video; add some with tfvtg index add")
        return m.encoder

    @property
    def videos(self) -> list[str]:
        """The ids of the indexed videos, sorted."""
        self._reload(if_changed=True)
        return sorted(self._manifest.videos)

    def info(self) -> dict[str, Any]:
        """Videos, frames, tokens, encoder, index kind, bytes on disk (index; feature files apart), and the
        ``stale`` videos: those whose feature file is gone or has changed since it was indexed (a search skips
        them)."""
        self._reload(if_changed=True)
        m = self._manifest
        files = [self.root / name for name in (MANIFEST, m.index_file) if name]
        index_bytes = sum(p.stat().st_size for p in files if p.exists())
        feature_bytes = 0
        stale: list[str] = []
        for name, entry in m.videos.items():
            try:
                identity = _file_identity(entry.features)
            except OSError:
                stale.append(name)
                continue
            feature_bytes += identity[0]
            if identity != (entry.size, entry.mtime_ns):
                stale.append(name)
        return {
            "path": str(self.root),
            "videos": len(m.videos),
            "frames": sum(e.frames for e in m.videos.values()),
            "tokens": m.tokens,
            "encoder": m.encoder,
            "image_size": m.image_size,
            "index": m.kind,
            "index_bytes": index_bytes,
            "feature_bytes": feature_bytes,
            "stale": stale,
        }

    # ------------------------------------------------------------------------------------------- changing
    def add(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        model: str | None = None,
        device: str = "auto",
        dtype: str | None = None,
        batch_size: int = 32,
        fps: float | None = None,
        dedup_threshold: float | None = None,
        engine: str = "local",
        progress: bool = False,
    ) -> dict[str, list[str]]:
        """Index feature files (``.safetensors`` from ``tfvtg extract``), folders of them, or videos.

        Videos are extracted first through `tfvtg.extract_many` (``engine`` ``"local"`` or ``"ray"``;
        with ``model``, default the index's encoder or ``blip2-coco``) into the index's ``features/``
        folder, resuming from the files already there; a video that fails is named in a warning and left
        out. A video id is its file name without suffix (the name given, not a link's target); a feature
        file already indexed and unchanged is skipped, a changed one (or another file of the same id) is
        indexed again.

        A video that cannot be extracted, or a feature file that cannot be read, is left out and named in
        ``failed``; the others are indexed. ``model``, ``fps`` and the other extraction options apply to
        videos only (feature files are indexed as they were made).

        Returns:
            ``{"added": [...], "updated": [...], "unchanged": [...]}`` video ids, and ``"failed"``: ``{id:
            reason}`` of the inputs left out.

        Raises:
            InputError: a file that is not a feature file or video, features of another encoder or image size
                than the index's (nothing is changed, not even the index's own feature files), two inputs of
                the same id, or another process changing the index.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with _Lock(self.root):
            self._load_manifest()
            try:
                files, videos = self._expand(paths)
                if not videos and (model is not None or fps is not None or dedup_threshold is not None):
                    log.warning("the extraction options (model, fps, dedup) apply to videos; the feature "
                                "files given are indexed as they were made")
                failed: dict[str, str] = {}
                extracted = self._extract(videos, failed, model=model, device=device, dtype=dtype,
                                          batch_size=batch_size, fps=fps, dedup_threshold=dedup_threshold,
                                          engine=engine, progress=progress) if videos else []
                report = self._add_files(files + extracted, failed, owned={str(p) for p in extracted},
                                         progress=progress)
            except BaseException:
                self._load_manifest()  # the manifest in memory may hold half of the change
                raise
            return {**report, "failed": failed}

    def remove(self, videos: Iterable[str]) -> list[str]:
        """Remove videos by id (deleting the feature files the index extracted itself); returns the ids.

        Raises:
            InputError: an id not in the index (nothing is removed then), or another process changing it.
        """
        names = list(dict.fromkeys(videos))
        if not (self.root / MANIFEST).is_file():
            raise InputError(f"no index at {self.root}")
        with _Lock(self.root):
            self._reload()
            m = self._manifest
            unknown = [n for n in names if n not in m.videos]
            if unknown:
                raise InputError(f"not in index {self.root}: {', '.join(unknown)}")
            if not names:
                return []
            index = self._load_index(writable=True)
            faiss = _faiss()
            for name in names:
                index.remove_ids(_video_selector(faiss, m.videos[name].number))
            owned = [m.videos.pop(name) for name in names]
            self._commit(index)
            for entry in owned:
                if entry.owned:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.features)
            return names

    def _expand(self, paths: Iterable[str | os.PathLike[str]]) -> tuple[list[Path], list[Path]]:
        """Feature files and video files named by ``paths`` (folders: the ones directly inside)."""
        from tfvtg.video import VIDEO_SUFFIXES

        files: list[Path] = []
        videos: list[Path] = []
        given = [Path(p).expanduser() for p in paths]
        if not given:
            raise InputError("nothing to add: give feature files (.safetensors), folders of them or videos")
        for path in given:
            if path.is_dir():
                inside = sorted(p for p in path.iterdir() if p.is_file())
                found = [p for p in inside if p.name.endswith(".safetensors")]
                clips = [p for p in inside if p.suffix.lower() in VIDEO_SUFFIXES]
                if not found and not clips:
                    raise InputError(f"no feature file (.safetensors) or video in {path}")
                files += found
                videos += clips
            elif not path.exists():
                raise InputError(f"not found: {path}")
            elif path.name.endswith(".safetensors"):
                files.append(path)
            elif path.suffix.lower() in VIDEO_SUFFIXES:
                videos.append(path)
            else:
                raise InputError(f"{path} is neither a feature file (.safetensors) nor a video")
        # absolute, not resolved: a link is indexed under its own name (one id rule: the name the user gave)
        return [p.absolute() for p in files], [p.absolute() for p in videos]

    def _extract(self, videos: list[Path], failed: dict[str, str], *, model: str | None, device: str,
                 dtype: str | None, batch_size: int, fps: float | None, dedup_threshold: float | None,
                 engine: str, progress: bool) -> list[Path]:
        """Extract ``videos`` with the index's encoder (or ``model``) into ``features/``; the files to index.

        Extraction writes into a staging folder (resuming from the files ``features/`` holds, linked there),
        and its files replace those of ``features/`` only once they are known to fit the index: a refused
        model never overwrites an indexed video's file. Videos that fail go into ``failed``.
        """
        import shutil

        from tfvtg.encoders import DEFAULT_ENCODER
        from tfvtg.engines import extract_many
        from tfvtg.features import read_metadata
        from tfvtg.grounder import check_feature_model
        from tfvtg.video import video_id

        m = self._manifest
        name = model or m.encoder or DEFAULT_ENCODER
        if m.encoder is not None and model is not None:
            check_feature_model(m.encoder, None, model, None)  # another Hub model: refused before any work
        out = self.root / FEATURES_DIR
        staging = self.root / STAGING_DIR
        shutil.rmtree(staging, ignore_errors=True)  # an interrupted add's
        staging.mkdir()
        try:
            for video in videos:
                kept = out / f"{video_id(video)}.safetensors"
                if kept.is_file():
                    try:
                        os.link(kept, staging / kept.name)
                    except OSError:  # a file system without hard links
                        shutil.copy2(kept, staging / kept.name)
            summary = extract_many(videos, staging, engine=engine, model=name, device=device, dtype=dtype,
                                   batch_size=batch_size, fps=fps, dedup_threshold=dedup_threshold,
                                   skip_existing=True, progress=progress)
            failed.update(summary.failed)
            made = [staging / f"{vid}.safetensors" for vid in summary.paths if vid not in summary.failed]
            for path in made:
                meta = read_metadata(path)
                self._check_model(meta["encoder"], meta["image_size"],
                                  what=f"video {video_id(path)!r} extracted with model {name!r}")
            out.mkdir(exist_ok=True)
            for path in made:
                os.replace(path, out / path.name)  # a linked, unchanged file: the same file, left as it is
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return [(out / path.name).absolute() for path in made]

    def _check_model(self, encoder: str, image_size: list[int], what: str) -> None:
        m = self._manifest
        if m.encoder is not None and (encoder, list(image_size)) != (m.encoder, m.image_size):
            raise InputError(
                f"{what} holds features of encoder {encoder!r} at image size {tuple(image_size)}, but index "
                f"{self.root} holds {m.encoder!r} at {tuple(m.image_size or ())}: extract it with that "
                "encoder or use another index")

    def _add_files(self, files: list[Path], failed: dict[str, str], owned: set[str],
                   progress: bool) -> dict[str, list[str]]:
        from tfvtg.features import read_metadata
        from tfvtg.video import video_id

        m = self._manifest
        report: dict[str, list[str]] = {"added": [], "updated": [], "unchanged": []}
        chosen: dict[str, tuple[Path, dict[str, Any]]] = {}
        for path in files:
            name = video_id(path)
            if name in chosen:
                raise InputError(f"{chosen[name][0]} and {path} are both video {name!r}; rename one")
            try:
                meta = read_metadata(path)
            except InputError as exc:  # a damaged file: the others are indexed
                failed[name] = str(exc)
                log.error("not indexed: %s", exc)
                continue
            if m.encoder is None:
                m.encoder, m.image_size = meta["encoder"], list(meta["image_size"])
                m.tokens_per_frame, m.dim = meta["shape"][1], meta["shape"][2]
            self._check_model(meta["encoder"], meta["image_size"], what=str(path))
            if meta["shape"][1:] != [m.tokens_per_frame, m.dim]:
                raise InputError(f"{path} holds {meta['shape'][1]} tokens of {meta['shape'][2]} dimensions a "
                                 f"frame, the index {m.tokens_per_frame} of {m.dim}: another encoder")
            if meta["shape"][0] >= 1 << FRAME_BITS:
                raise InputError(f"{path} has {meta['shape'][0]} frames; the index takes {1 << FRAME_BITS} "
                                 "a video at most")
            chosen[name] = (path, meta)
        new: dict[str, tuple[Path, dict[str, Any]]] = {}
        for name, (path, meta) in chosen.items():
            old = m.videos.get(name)
            same_file = old is not None and old.features == str(path)
            if same_file and (old.size, old.mtime_ns) == _file_identity(path):
                report["unchanged"].append(name)
            else:
                report["updated" if old is not None else "added"].append(name)
                new[name] = (path, meta)
        if not new:
            return report

        faiss = _faiss()
        replaced = [m.videos.pop(name) for name in new if name in m.videos]
        for name, (path, meta) in new.items():
            size, mtime_ns = _file_identity(path)
            m.videos[name] = _Entry(m.next_number, str(path), size, mtime_ns, meta["shape"][0],
                                    float(meta["duration"]), meta.get("video"), str(path) in owned)
            m.next_number += 1
        total = m.tokens
        kind = "flat" if total <= FLAT_LIMIT else "ivfpq"
        if m.kind == "empty" or kind != m.kind or (kind == "ivfpq" and _nlist(total) > _nlist(m.trained_for)
                                                   and total > REGROW * m.trained_for):
            log.info("building the index of %s for %d tokens (%s)", self.root, total, kind)
            index = self._build(kind, list(m.videos), progress)
        else:  # only a change in place reads the current index (a rebuild does not need it)
            index = self._load_index(writable=True)
            for entry in replaced:
                index.remove_ids(_video_selector(faiss, entry.number))
            self._add_to(index, list(new), progress)
        self._commit(index)
        for entry in replaced:
            if entry.owned and entry.features not in {e.features for e in m.videos.values()}:
                with contextlib.suppress(OSError):
                    os.unlink(entry.features)
        return report

    def _build(self, kind: str, names: list[str], progress: bool) -> Any:
        """A new index of ``kind`` over the videos ``names`` (IVF-PQ: trained on a sample of their tokens)."""
        faiss = _faiss()
        m = self._manifest
        total = m.tokens
        if kind == "flat":
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(m.dim))
        else:
            nlist = _nlist(total)
            sample = _training_sample(self, names, TRAIN_PER_LIST * max(nlist, 256))
            index = faiss.IndexIVFPQ(faiss.IndexFlatIP(m.dim), m.dim, nlist, _pq_parts(m.dim), 8,
                                     faiss.METRIC_INNER_PRODUCT)
            index.train(sample)
        m.kind, m.trained_for = kind, total
        self._add_to(index, names, progress)
        return index

    def _add_to(self, index: Any, names: list[str], progress: bool) -> None:
        """Add the tokens of videos ``names`` from their feature files, `ADD_CHUNK` tokens at a time."""
        from tqdm import tqdm

        m = self._manifest
        vectors: list[np.ndarray] = []
        ids: list[np.ndarray] = []
        held = 0

        def flush() -> None:
            nonlocal held
            if vectors:
                index.add_with_ids(np.concatenate(vectors), np.concatenate(ids))
                vectors.clear()
                ids.clear()
                held = 0

        for name in tqdm(names, desc="indexing", unit="video", disable=not progress):
            entry = m.videos[name]
            features = self._load_entry(name, entry, strict=True)
            tokens = _unit_tokens(features.features)
            vectors.append(tokens)
            ids.append(np.repeat(_frame_ids(entry.number, entry.frames), m.tokens_per_frame))
            held += len(tokens)
            if held >= ADD_CHUNK:
                flush()
        flush()

    def _commit(self, index: Any) -> None:
        """Write ``index`` as the next generation's file, then point the manifest at it (atomic replace)."""
        faiss = _faiss()
        m = self._manifest
        previous = m.index_file
        m.generation += 1
        name = f"tokens-{m.generation}.faiss"
        tmp = self.root / f".{name}.tmp"
        faiss.write_index(index, str(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.root / name)
        if not m.videos:
            m.kind, m.trained_for, m.encoder, m.image_size = "empty", 0, None, None
            m.tokens_per_frame = m.dim = None
        m.index_file = name
        write_atomic(self.root / MANIFEST, m.to_json())
        st = (self.root / MANIFEST).stat()
        self._stamp = (st.st_mtime_ns, st.st_size)
        # Older generations and files an interrupted change left behind; a reader that opened one keeps it.
        for path in self.root.iterdir():
            stale = path.name.startswith(("tokens-", ".tokens-")) and path.name != name
            if stale or (previous and path.name == previous):
                with contextlib.suppress(OSError):
                    path.unlink()
        self._index, self._index_file = None, None

    # -------------------------------------------------------------------------------------------- reading
    def _load_index(self, writable: bool = False) -> Any:
        """The token index: a private copy to change (under the lock), else the memory-mapped file."""
        faiss = _faiss()
        if writable:
            return faiss.read_index(str(self.root / str(self._manifest.index_file)))
        for attempt in range(2):
            name = self._manifest.index_file
            if self._index is not None and self._index_file == name:
                break
            if not (self.root / str(name)).is_file() and attempt == 0:
                self._reload()  # another process replaced it since the manifest was read
                continue
            try:
                self._index = faiss.read_index(str(self.root / str(name)),
                                               faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
            except RuntimeError as exc:  # FAISS's own error for a missing or damaged file
                raise InputError(f"cannot read index {self.root}: {one_line(exc)}; build it again with "
                                 f"tfvtg index add") from None
            self._index_file = name
        return self._index

    def _load_entry(self, name: str, entry: _Entry, *, strict: bool = False) -> VideoFeatures | None:
        """The features of an indexed video, or None (with a warning naming it) when its file is gone or has
        changed since it was indexed; ``strict`` raises instead."""
        from tfvtg.features import VideoFeatures

        try:
            same = _file_identity(entry.features) == (entry.size, entry.mtime_ns)
        except OSError:
            problem = "is gone"
        else:
            problem = None if same else "has changed since it was indexed"
        if problem is None:
            try:
                return VideoFeatures.load(entry.features)
            except InputError as exc:
                problem = f"is unreadable ({exc})"
        remedy = (f"remove it with `tfvtg index remove {self.root} {name}`" if problem == "is gone" else
                  f"index it again with `tfvtg index add {self.root} {entry.features}` or remove it")
        message = f"video {name!r}: its feature file {entry.features} {problem}; {remedy}"
        if strict:
            raise InputError(message)
        log.warning("skipped %s", message)
        return None

    def _read_ahead(self, entries: Sequence[tuple[str, _Entry]]
                    ) -> Iterator[tuple[str, VideoFeatures | None]]:
        """Each video's features (None: skipped, with its warning), in order, read by `READ_THREADS` threads
        and converted to float32 there while the caller grounds: at most `READ_AHEAD` files and
        `READ_AHEAD_BYTES` of float32 ahead (always the next file, so an hour-long video is read beside one
        more, not four). Stopping early cancels the reads not yet started.

        Reading a file, checking it and converting its float16 tokens release the GIL: on two cores the exact
        stage's own work overlaps the next files' (measured in benchmarks/RESULTS.md).
        """
        def read(name: str, entry: _Entry) -> VideoFeatures | None:
            features = self._load_entry(name, entry)
            if features is not None:
                features.features = features.features.astype(np.float32, copy=False)
            return features

        def cost(entry: _Entry) -> int:  # float32 bytes: a float16 file's tokens double in size
            return 2 * entry.size

        queue = iter(entries)
        following = next(queue, None)
        pending: deque[tuple[str, Future[VideoFeatures | None], int]] = deque()
        ahead = 0
        with ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="tfvtg-read") as pool:

            def fill() -> None:
                nonlocal following, ahead
                while following is not None and (not pending or (
                        len(pending) < READ_AHEAD and ahead + cost(following[1]) <= READ_AHEAD_BYTES)):
                    name, entry = following
                    pending.append((name, pool.submit(read, name, entry), cost(entry)))
                    ahead += cost(entry)
                    following = next(queue, None)

            try:
                fill()
                while pending:
                    name, future, size = pending.popleft()
                    ahead -= size
                    fill()
                    yield name, future.result()
            finally:
                for _, future, _ in pending:
                    future.cancel()

    def candidates(self, text_features: np.ndarray, count: int) -> list[str]:
        """Coarse stage: the ids of up to ``count`` videos holding the frames most similar to any text.

        Each text searches the token index for ``CANDIDATE_FRAMES * count`` frames' worth of tokens; a frame
        counts at its first (best) token hit. A video scores the mean of its `VIDEO_FRAMES` best frames
        (frames not retrieved count at the text's lowest retrieved score): a moment spans several frames, so
        this follows the exact stage's span score better than one frame, and a lone noisy frame counts less.
        Videos come best first, by their best score over the texts.
        """
        m = self._manifest
        if m.kind == "empty":
            return []
        index = self._load_index()
        if m.kind == "ivfpq":
            index.nprobe = max(1, int(index.nlist * NPROBE_FRACTION))
        queries = _unit_tokens(np.asarray(text_features, dtype=np.float32)[:, None, :])
        k = min(index.ntotal, CANDIDATE_FRAMES * count * int(m.tokens_per_frame))
        scores, ids = index.search(queries, k)
        numbers = {e.number: name for name, e in m.videos.items()}
        best: dict[str, float] = {}
        for row_scores, row_ids in zip(scores, ids, strict=True):
            valid = row_ids >= 0
            if not valid.any():
                continue
            frames, first = np.unique(row_ids[valid], return_index=True)  # first hit of each frame
            frame_scores = row_scores[valid][first]
            floor = float(frame_scores.min())
            per_video: dict[int, list[float]] = {}
            for number, score in zip((frames >> FRAME_BITS).tolist(), frame_scores.tolist(), strict=True):
                per_video.setdefault(number, []).append(score)
            for number, video_scores in per_video.items():
                name = numbers.get(number)
                top = sorted(video_scores, reverse=True)[:VIDEO_FRAMES]
                score = (sum(top) + floor * (VIDEO_FRAMES - len(top))) / VIDEO_FRAMES
                if name is not None and score > best.get(name, -math.inf):
                    best[name] = score
        return sorted(best, key=lambda n: (-best[n], n))[:count]

    # ------------------------------------------------------------------------------------------- search
    def search(
        self,
        query: str,
        top_k: int = 10,
        exhaustive: bool = False,
        *,
        grounder: Grounder | None = None,
        candidates: int | None = None,
        per_video: int = 3,
        **grounder_options: Any,
    ) -> list[SearchHit]:
        """The ``top_k`` moments of the collection that best match ``query``, best first.

        Args:
            query: The sentence describing the moment.
            top_k: Hits to return.
            exhaustive: Ground every video instead of the coarse stage's candidates.
            grounder: The `Grounder` that grounds each candidate (its model, method, profile, preset, LLM);
                default: one built from ``grounder_options``, with the index's encoder as ``model``.
            candidates: Videos the exact stage grounds (default ``max(top_k, 10)``).
            per_video: Spans each grounded video contributes at most.
            **grounder_options: `Grounder` arguments (``model``, ``method`` (``"tfvtg"`` or ``"tag"``),
                ``profile``, ``preset``, ``llm``, ...).

        Raises:
            InputError: empty query, bad counts, an empty collection, bad Grounder options, or another Hub
                model or image size than the index's encoder's (a local checkpoint directory other than the
                index's may hold the same weights: a warning; `tfvtg.grounder.check_feature_model` decides).
        """
        from tfvtg.encoders import resolve_name
        from tfvtg.grounder import Grounder, check_feature_model, check_query
        from tfvtg.pipeline import descriptions_for

        query = check_query(query)
        self._reload(if_changed=True)
        check_count(top_k, "top_k")
        check_count(per_video, "per_video")
        if candidates is not None:
            check_count(candidates, "candidates")
        encoder = self.searched_encoder()
        m = self._manifest
        if grounder is None:
            grounder_options.setdefault("model", encoder)
            grounder_options.setdefault("progress", False)
            grounder = Grounder(**grounder_options)
        elif grounder_options:
            raise InputError("give either a grounder or Grounder options, not both")
        # Another model is refused before it loads; the image size is known once it has.
        check_feature_model(m.encoder, m.image_size, resolve_name(grounder.model)[0], None)
        config = grounder.encoder.config
        check_feature_model(m.encoder, m.image_size, config.name, config.image_size)

        timings: dict[str, float] = {}
        start = time.perf_counter()
        if exhaustive:
            names = self.videos
        else:
            decomposition = grounder.decompose(query) if grounder.llm_configured else None
            texts = descriptions_for(query, decomposition)
            count = max(top_k, 10) if candidates is None else candidates
            names = self.candidates(grounder.text_features(texts), count)
        timings["coarse_s"] = time.perf_counter() - start
        start = time.perf_counter()
        found: list[tuple[float, str, float, float, float, _Entry]] = []
        # The entries of the manifest the search started with (`candidates` may reload a newer one).
        for name, features in self._read_ahead([(name, m.videos[name]) for name in names]):
            if features is None:
                continue
            entry = m.videos[name]
            result = grounder.ground_details(features, query, top_k=per_video)
            curve = result.query_curve
            for moment in result.moments:
                score = span_score(curve, result.timestamps, moment.start, moment.end)
                found.append((score, name, moment.start, moment.end, moment.score, entry))
        timings["exact_s"] = time.perf_counter() - start
        self.last_timings = timings
        found.sort(key=lambda hit: (-hit[0], hit[1], hit[2]))
        return [SearchHit(rank, name, start, end, score, confidence, entry.source, entry.features)
                for rank, (score, name, start, end, confidence, entry) in enumerate(found[:top_k], start=1)]


def _nlist(tokens: int) -> int:
    """IVF lists for ``tokens`` tokens: the power of two at or below sqrt(tokens), 64 to `MAX_NLIST`."""
    return int(min(MAX_NLIST, max(64, 2 ** int(math.log2(max(math.sqrt(tokens), 1))))))


def _pq_parts(dim: int) -> int:
    """PQ sub-vectors: one byte per 8 dimensions (the largest divisor of ``dim`` at or below dim / 8)."""
    parts = max(1, dim // 8)
    while dim % parts:
        parts -= 1
    return parts


def _training_sample(collection: Collection, names: Sequence[str], size: int) -> np.ndarray:
    """``size`` unit tokens drawn evenly from `TRAIN_VIDEOS` of the videos ``names`` (all, if fewer)."""
    rng = np.random.default_rng(0)
    m = collection._manifest
    picked = list(names)
    if len(picked) > TRAIN_VIDEOS:
        picked = [picked[i] for i in rng.choice(len(picked), TRAIN_VIDEOS, replace=False)]
    per_video = math.ceil(size / len(picked))
    parts = []
    for name in picked:
        features = collection._load_entry(name, m.videos[name], strict=True).features
        flat = features.reshape(-1, features.shape[-1])
        rows = rng.choice(len(flat), min(per_video, len(flat)), replace=False)
        parts.append(_unit_tokens(flat[rows][:, None, :]))
    return np.concatenate(parts)
