"""`tfvtg app`: a local web page to ground videos by looking (Gradio Blocks, the ``[app]`` extra).

One player on top (upload a video, or pick one under ``--videos``) and tabs below:

* **Ground**: one query per line; for each, the top-k spans as a clickable list and a timeline (a click seeks
  the player to the span and plays it, stopping at its end), the decomposition used, the similarity curves
  (`tfvtg.plot`), and the predictions as JSON lines (the ``tfvtg ground --json`` format) to download. A
  video is encoded once (`Grounder.encode_video`, with a progress bar); later queries run on the text side
  alone and the page says so.
* **NumPro**: the numbered frames (`numpro.overlay`) as a gallery, and, when an MLLM is configured, its
  answer and the spans it names (`numpro.ground.NumProGrounder`), clickable like the Ground tab's.

Errors a user can cause or fix (`tfvtg.errors.TfvtgError`: a bad file, a model that does not load, an LLM
that is down) become a message in the page; anything else is logged with its traceback and shown as one line;
the server keeps serving either way.

Safety: the server binds 127.0.0.1 unless told otherwise (`host_warning` for other addresses); no public
share link unless ``share=True``; uploads are size-capped and live, with everything else the page creates,
in a temporary folder the app owns and removes on `GroundingApp.close`; only video files under ``videos``
can be picked (and only those are served); encodings are serialised per video, so two tabs asking for the
same video encode it once.

Nothing in tfvtg imports this module; ``tfvtg app`` (cli.py) imports it when run.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import html
import ipaddress
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tfvtg.errors import InputError, TfvtgError, one_line
from tfvtg.moment import Moment

if TYPE_CHECKING:
    import gradio as gr

    from numpro.mllm import MLLM
    from tfvtg.features import VideoFeatures
    from tfvtg.grounder import Grounder, GroundingResult
    from tfvtg.index import Collection, SearchHit

__all__ = ["GroundingApp", "import_gradio", "host_warning", "list_videos", "spans_html", "APP_EXTRA",
           "PLAYER_ID"]

log = logging.getLogger("tfvtg.app")

APP_EXTRA = 'pip install -e ".[app]"'
PLAYER_ID = "tfvtg-player"
DEFAULT_MAX_UPLOAD_MB = 1024.0
_MEMO_VIDEOS = 4  # encoded videos the app answers from memory without asking the Grounder again
_DIGESTS = 256  # uploads whose content hash the app remembers
_NUMPRO_SIZE = (336, 336)  # NumPro's frame size (height, width)
_MAX_LISTED_VIDEOS = 10_000

# Runs once when the page loads: tfvtgPlaySpan(start, end, token) waits (up to 10 s) for the player to hold
# a video (whose URL contains ``token``, when given: a video just put there), seeks it to ``start``, plays
# it and pauses at ``end`` (the timeupdate listener is attached once per <video> element).
_PAGE_JS = """
() => {
  window.tfvtgPlaySpan = async (start, end, token) => {
    for (let tries = 0; tries < 200; tries++) {
      const video = document.querySelector('#PLAYER_ID video');
      if (video && video.readyState >= 1 && (!token || (video.currentSrc || '').includes(token))) {
        video.dataset.spanEnd = String(end);
        if (!video.dataset.spanWatch) {
          video.dataset.spanWatch = '1';
          video.addEventListener('timeupdate', () => {
            const stop = parseFloat(video.dataset.spanEnd);
            if (!isNaN(stop) && video.currentTime >= stop) {
              video.pause();
              video.currentTime = stop;
              delete video.dataset.spanEnd;
            }
          });
        }
        video.currentTime = start;
        video.play().catch(() => {});
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
}
""".replace("PLAYER_ID", PLAYER_ID)

# Runs when a span list loads: a click on anything carrying data-start/data-end plays that span.
_SPANS_JS = """
element.addEventListener('click', (event) => {
  const target = event.target.closest('[data-start]');
  if (target && window.tfvtgPlaySpan) {
    window.tfvtgPlaySpan(parseFloat(target.dataset.start), parseFloat(target.dataset.end));
  }
});
"""

# After a search hit was put in the player: play its span once the new video has loaded.
_HIT_JS = """
(span) => { if (span && window.tfvtgPlaySpan) window.tfvtgPlaySpan(span.start, span.end, span.token); }
"""

_SPANS_CSS = """
.tfvtg-result { margin-bottom: 1.2em; }
.tfvtg-result h4 { margin: 0.2em 0; }
.tfvtg-note { font-size: 0.85em; opacity: 0.8; white-space: pre-wrap; }
.tfvtg-timeline { position: relative; height: 22px; margin: 0.4em 0; border-radius: 4px;
                  background: rgba(128, 128, 128, 0.18); }
.tfvtg-bar { position: absolute; top: 2px; bottom: 2px; min-width: 3px; border: none; border-radius: 3px;
             background: #2563eb; cursor: pointer; padding: 0; }
.tfvtg-spans { margin: 0.2em 0; padding-left: 0; list-style: none; }
.tfvtg-span { margin: 2px 0; padding: 2px 8px; border: 1px solid rgba(128, 128, 128, 0.4);
              border-radius: 4px; background: transparent; cursor: pointer; color: inherit;
              font-family: ui-monospace, monospace; }
.tfvtg-span:hover, .tfvtg-bar:hover { outline: 2px solid #f59e0b; }
"""


def import_gradio() -> Any:
    """The gradio module, or one `TfvtgError` line naming the extra that provides it."""
    try:
        import gradio
    except ImportError:
        raise TfvtgError(f"the app needs gradio, the [app] extra: {APP_EXTRA}") from None
    return gradio


def host_warning(host: str) -> str | None:
    """What to tell the user when ``host`` is not a loopback address (None when it is)."""
    name = host.strip().lower()
    if name == "localhost":
        return None
    try:
        if ipaddress.ip_address(name.strip("[]")).is_loopback:
            return None
    except ValueError:
        pass
    return (f"--host {host} is not a loopback address: anyone who can reach this machine on that interface "
            "can use the page, upload files and watch the videos it lists")


def list_videos(folder: str | os.PathLike[str]) -> list[str]:
    """The video files under ``folder`` (recursively, by suffix), as sorted POSIX paths relative to it."""
    from tfvtg.video import VIDEO_SUFFIXES

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise InputError(f"--videos {root} is not a folder")
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                   if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    if len(names) > _MAX_LISTED_VIDEOS:
        log.warning("%s holds %d videos; listing the first %d", root, len(names), _MAX_LISTED_VIDEOS)
    return names[:_MAX_LISTED_VIDEOS]


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


@dataclass
class SpanSection:
    """A block of clickable spans: a title, a note under it, the moments on a timeline of ``duration``."""

    title: str
    note: str
    duration: float
    moments: Sequence[Moment]


def spans_html(sections: Sequence[SpanSection]) -> str:
    """HTML of each section: title, note, a timeline of bars and a numbered list, both carrying
    ``data-start``/``data-end`` (seconds) for the page's click-to-play script."""
    from tfvtg.console import clock

    parts = []
    for section in sections:
        duration = max(float(section.duration), 1e-9)
        best = max((m.score for m in section.moments), default=0.0)
        worst = min((m.score for m in section.moments), default=0.0)
        bars, items = [], []
        for rank, m in enumerate(section.moments, start=1):
            span = f'data-start="{m.start:.3f}" data-end="{m.end:.3f}"'
            label = f"#{rank} {clock(m.start)} \u2013 {clock(m.end)} \u00b7 score {m.score:.3f}"
            left = 100.0 * min(max(m.start / duration, 0.0), 1.0)
            width = 100.0 * min(max((m.end - m.start) / duration, 0.0), 1.0 - left / 100.0)
            strength = 1.0 if best == worst else (m.score - worst) / (best - worst)
            bars.append(f'<button class="tfvtg-bar" {span} title="{html.escape(label)}" '
                        f'style="left:{left:.2f}%;width:{width:.2f}%;opacity:{0.35 + 0.65 * strength:.2f}">'
                        "</button>")
            items.append(f'<li><button class="tfvtg-span" {span}>{html.escape(label)}</button></li>')
        body = "".join(items) if items else "<li>no span</li>"
        parts.append(f'<div class="tfvtg-result"><h4>{html.escape(section.title)}</h4>'
                     f'<div class="tfvtg-note">{html.escape(section.note)}</div>'
                     f'<div class="tfvtg-timeline">{"".join(bars)}</div>'
                     f'<ol class="tfvtg-spans">{body}</ol></div>')
    return "".join(parts)


def _split_queries(text: str | None) -> list[str]:
    from tfvtg.grounder import check_query

    queries = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not queries:
        raise InputError("no query given: type what to find, one query per line")
    return [check_query(query) for query in queries]


@dataclass
class GroundReport:
    """What one press of Ground produced: the video, its features, one result per query, and whether the
    features were made by this request (``encode_s``, seconds) or answered from memory (None)."""

    video: Path
    features: VideoFeatures
    results: list[GroundingResult]
    encode_s: float | None


@dataclass
class NumProReport:
    """What the NumPro tab shows: the numbered frames with their times, and the MLLM's answer if asked."""

    video: Path
    frames: np.ndarray
    times: np.ndarray
    duration: float
    details: Any = None  # numpro.ground.GroundingDetails when an MLLM answered


class _VideoLocks:
    """One lock per video key: requests for the same video queue, different videos do not wait on it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            yield


class GroundingApp:
    """The page's work, over one `Grounder` (and optionally an MLLM), plus the Gradio page that shows it.

    Args:
        grounder: Encodes videos and grounds queries (its ``top_k``-independent settings apply to the page).
        videos: A folder whose video files (recursively) the page may pick; None: uploads only.
        index: A collection index folder (`tfvtg.index.Collection`) for the Search tab; None: no Search tab.
        mllm: The NumPro tab's MLLM, a back-end or a `numpro.mllm.create_mllm` spec; None: numbered frames
            only. ``mllm_base_url`` goes with a spec.
        top_k: Spans per query the page starts with.
        max_upload_mb: Largest upload accepted (megabytes).
        numpro_fps: The NumPro tab's starting sampling rate (the paper's 1 fps).

    Use as a context manager, or call `close` (it removes the app's temporary folder).
    """

    def __init__(self, grounder: Grounder, *, videos: str | os.PathLike[str] | None = None,
                 index: str | os.PathLike[str] | None = None, mllm: MLLM | str | None = None,
                 mllm_base_url: str | None = None, top_k: int = 5,
                 max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, numpro_fps: float = 1.0) -> None:
        if not max_upload_mb > 0:
            raise InputError(f"the upload cap must be a positive number of megabytes, got {max_upload_mb}")
        if int(top_k) < 1:
            raise InputError(f"top_k must be at least 1, got {top_k}")
        self.grounder = grounder
        self.videos = None if videos is None else Path(videos).expanduser().resolve()
        self.video_names = list_videos(self.videos) if self.videos is not None else []
        self.collection: Collection | None = None
        if index is not None:
            from tfvtg.index import Collection

            self.collection = Collection.open(index, create=False)
        if isinstance(mllm, str):
            from numpro.mllm import create_mllm

            mllm = create_mllm(mllm, base_url=mllm_base_url)
        self.mllm = mllm
        self.top_k = int(top_k)
        self.max_upload_mb = float(max_upload_mb)
        self.numpro_fps = float(numpro_fps)
        self.workdir = Path(tempfile.mkdtemp(prefix="tfvtg-app-"))
        self.encodings = 0  # videos this app has encoded (or loaded from the feature cache)
        self.demo: gr.Blocks | None = None
        self._model_lock = threading.Lock()  # one request at a time uses the Grounder's model and memos
        self._video_locks = _VideoLocks()
        self._memo: OrderedDict[str, VideoFeatures] = OrderedDict()
        self._memo_lock = threading.Lock()
        self._digests: OrderedDict[str, str] = OrderedDict()  # an upload's content hash by its version
        self._previous_temp_dir: str | None = None
        self._count = 0
        self._count_lock = threading.Lock()

    def __enter__(self) -> GroundingApp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the server if it runs and remove the app's temporary folder (uploads, figures, downloads)."""
        if self.demo is not None:
            self.demo.close()
            self.demo = None
        if self._previous_temp_dir is not None:
            _restore_env("GRADIO_TEMP_DIR", self._previous_temp_dir)
            self._previous_temp_dir = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    # ------------------------------------------------------------------------------------------ videos
    def source_video(self, uploaded: str | None, picked: str | None) -> Path:
        """The video a request is about: ``picked`` (a name under ``videos``) if given, else the upload.

        Raises:
            InputError: Nothing given, a pick outside ``videos`` (or with no ``videos`` folder), or an upload
                that is not in the app's upload folder.
        """
        from tfvtg.grounder import check_video_path

        if picked:
            if self.videos is None:
                raise InputError("this app was started without --videos: upload a video instead")
            path = (self.videos / picked).resolve()
            if not _inside(path, self.videos) or picked not in self.video_names:
                raise InputError(f"{picked!r} is not one of the videos under --videos {self.videos}")
            return check_video_path(path)
        if uploaded:
            path = Path(uploaded)
            if not self._is_upload(path):
                raise InputError("only uploaded videos or videos under --videos can be used")
            return check_video_path(path)
        raise InputError("no video: upload one" + (" or pick one under --videos" if self.videos else ""))

    def served_copy(self, video: Path) -> Path:
        """``video`` inside the app's folder, where the page may serve it: a hard link when the file system
        allows one, else a copy; made once per file version, removed with the folder.

        Only the videos a request asked for get there, so nothing else under ``videos`` is ever served.
        """
        stat = video.stat()
        name = hashlib.sha256(f"{video.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
        target = self.workdir / "served" / name[:24] / video.name
        with self._video_locks.hold(f"serve:{target}"):
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(target.name + ".partial")
                try:
                    os.link(video, partial)
                except OSError:  # another file system, or a file this user may not link (protected_hardlinks)
                    try:
                        shutil.copyfile(video, partial)
                    except OSError as exc:
                        partial.unlink(missing_ok=True)
                        raise InputError(f"cannot serve {video.name}: {exc.strerror or exc}") from None
                os.replace(partial, target)
        return target

    def _is_upload(self, path: Path) -> bool:
        return _inside(path, self.workdir)

    def _video_key(self, video: Path) -> str:
        """What identifies a video: its content for an upload (two tabs uploading one file get two paths),
        its path, size and modification time for a video under ``videos``. An upload is hashed once per
        version: the later questions about it do not read it again."""
        stat = video.stat()
        if not self._is_upload(video):
            return f"{video.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        version = f"{video.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ino}|{stat.st_ctime_ns}"
        with self._memo_lock:
            known = self._digests.get(version)
        if known is None:
            digest = hashlib.sha256()
            with video.open("rb") as stream:
                while chunk := stream.read(2**20):
                    digest.update(chunk)
            known = f"sha256:{digest.hexdigest()}"
            with self._memo_lock:
                self._digests[version] = known
                while len(self._digests) > _DIGESTS:
                    self._digests.popitem(last=False)
        return known

    def features(self, video: Path) -> tuple[VideoFeatures, float | None]:
        """The video's features and the seconds this call spent making them (None: from the app's memory).

        One request per video at a time: a second request for a video being encoded waits for it and then
        answers from memory, so the video is encoded once.
        """
        key = self._video_key(video)
        with self._video_locks.hold(key):
            with self._memo_lock:
                cached = self._memo.get(key)
                if cached is not None:
                    self._memo.move_to_end(key)
                    return cached, None
            start = time.perf_counter()
            use_cache = False if self._is_upload(video) else None  # uploads are temporary: not on disk
            with self._model_lock:
                features = self.grounder.encode_video(video, use_cache=use_cache)
            seconds = time.perf_counter() - start
            with self._memo_lock:
                self.encodings += 1
                self._memo[key] = features
                while len(self._memo) > _MEMO_VIDEOS:
                    self._memo.popitem(last=False)
            return features, seconds

    # ------------------------------------------------------------------------------------------ work
    def ground(self, video: Path, queries: Sequence[str], top_k: int) -> GroundReport:
        """Ground each query in ``video`` (encoded once) with the app's `Grounder`."""
        if int(top_k) < 1:
            raise InputError(f"top_k must be at least 1, got {top_k}")
        features, encode_s = self.features(video)
        with self._model_lock:
            results = [self.grounder.ground_details(features, query, top_k=int(top_k)) for query in queries]
        return GroundReport(video, features, results, encode_s)

    def numpro(self, video: Path, query: str | None, fps: float, max_frames: int | None,
               top_k: int) -> NumProReport:
        """NumPro's numbered frames of ``video``, and the MLLM's answer when one is configured and asked.

        The gallery shows exactly the frames the MLLM is shown: sampled at ``fps``, resized to 336x336, at
        most ``max_frames`` spread over the video (before numbering), numbered 0..N-1.
        """
        from numpro.mllm import cap_indices
        from numpro.overlay import overlay_numbers
        from tfvtg.video import check_fps

        fps = check_fps(fps)
        if max_frames is not None and int(max_frames) < 1:
            raise InputError(f"max frames must be at least 1, got {max_frames}")
        if self.mllm is not None and query and query.strip():
            from numpro.ground import NumProGrounder

            grounder = NumProGrounder(self.mllm, fps=fps, size=_NUMPRO_SIZE, max_frames=max_frames)
            sampled = grounder.sample(video)
            details = grounder.ground_with_details(sampled, query, top_k=int(top_k))
            frames, times, duration = sampled.frames.copy(), sampled.times, sampled.duration
        else:
            from tfvtg.video import read_frames

            details = None
            frames, times, duration = read_frames(video, fps, _NUMPRO_SIZE)
            keep = cap_indices(len(frames), None if max_frames is None else int(max_frames))
            frames, times = frames[keep], times[keep]
        overlay_numbers(frames)
        return NumProReport(video, frames, times, float(duration), details)

    def search(self, query: str, top_k: int) -> list[SearchHit]:
        """The ``top_k`` best moments of the index for ``query``, grounded by the app's `Grounder`."""
        if self.collection is None:
            raise InputError("this app was started without --index: there is no collection to search")
        with self._model_lock:
            return self.collection.search(query, top_k=int(top_k), grounder=self.grounder)

    def hit_video(self, hit: SearchHit) -> Path:
        """The video file of a search hit (the one its index recorded), ready to be served."""
        from tfvtg.grounder import check_video_path

        if not hit.source:
            raise InputError(f"the index records no video file for {hit.video!r}, so it cannot be played")
        return self.served_copy(check_video_path(hit.source))

    def _result_path(self, suffix: str) -> Path:
        with self._count_lock:
            self._count += 1
            count = self._count
        folder = self.workdir / "results"
        folder.mkdir(exist_ok=True)
        return folder / f"{count:05d}{suffix}"

    # ------------------------------------------------------------------------------------------ page
    def _ground_outputs(self, report: GroundReport) -> tuple[str, str, list[tuple[str, str]], list[dict],
                                                                 str]:
        """Status line, spans HTML, curve figures, predictions and the JSON-lines download of a report."""
        from tfvtg.console import counted, describe_decomposition
        from tfvtg.datasets import write_jsonl
        from tfvtg.plot import plot_result, save_figure
        from tfvtg.video import video_id

        features, name = report.features, report.video.name
        facts = (f"**{name}**: {features.duration:.2f} s, {len(features.timestamps)} frames at "
                 f"{features.fps:g} fps; model {self.grounder.model}, method {self.grounder.method}, profile "
                 f"{self.grounder.profile}.")
        text_s = sum(r.meta["timings"].get("text_s", 0.0) + r.meta["timings"].get("ground_s", 0.0)
                     for r in report.results)
        count = counted(len(report.results), "query", "queries")
        if report.encode_s is None:
            status = f"{facts} Already encoded: {count} ran on the text side alone ({text_s:.2f} s)."
        else:
            status = (f"{facts} Video features ready in {report.encode_s:.1f} s; {count} in {text_s:.2f} s. "
                      "Later queries on this video run on the text side alone.")
        sections, figures, predictions = [], [], []
        for index, result in enumerate(report.results):
            note = "\n".join(describe_decomposition(result))
            sections.append(SpanSection(result.query, note, result.duration, result.moments))
            figure_path = self._result_path(".png")
            save_figure(plot_result(result), figure_path)
            figures.append((str(figure_path), result.query))
            predictions.append(result.to_prediction(qid=index, vid=video_id(report.video)))
        download = self._result_path(".jsonl")
        write_jsonl(download, predictions)
        return status, spans_html(sections), figures, predictions, str(download)

    def _numpro_outputs(self, report: NumProReport) -> tuple[str, list[tuple[np.ndarray, str]], str, str,
                                                             dict]:
        """Status line, numbered-frame gallery, answer, spans HTML and prediction line of a NumPro report."""
        from tfvtg.video import video_id

        gallery = [(frame, f"{i} \u00b7 {t:.1f} s") for i, (frame, t) in enumerate(zip(report.frames,
                                                                                      report.times,
                                                                                      strict=True))]
        status = (f"{len(report.frames)} numbered frames over {report.duration:.2f} s (frame n is shown "
                  "with its number in red, bottom right).")
        details = report.details
        if details is None:
            answer = ("No MLLM configured: start the app with `--mllm MODEL` (and `--mllm-base-url URL`) to "
                      "ask one which frames match." if self.mllm is None else
                      "Type a query to ask the MLLM which frames match.")
            return status, gallery, answer, "", {}
        answer = f"**{self.mllm.name}** answered: {details.answer}"
        if not details.ok:
            answer += f"\n\nNo usable span in the answer ({details.coarse.parsed.reason})."
        section = SpanSection(f"NumPro: {details.query}", f"answer: {details.answer}", details.duration,
                              details.moments)
        prediction = details.to_prediction(qid=0, vid=video_id(report.video))
        return status, gallery, answer, spans_html([section]), prediction

    def _search_outputs(self, hits: list[SearchHit]) -> tuple[str, list[tuple[np.ndarray, str]], list[dict]]:
        """Status line, thumbnail gallery and JSON of search hits."""
        from tfvtg.console import clock

        timings = ", ".join(f"{k} {v:.2f} s" for k, v in self.collection.last_timings.items())
        status = (f"{len(hits)} moments from {len(self.collection)} indexed videos ({timings}). Click one to "
                  "play it." if hits else "No moment found.")
        gallery = [(_thumbnail(hit.source, (hit.start + hit.end) / 2),
                    f"#{hit.rank} {hit.video} {clock(hit.start)} \u2013 {clock(hit.end)} \u00b7 "
                    f"{hit.score:.3f}") for hit in hits]
        return status, gallery, [hit.to_dict() for hit in hits]

    def blocks(self) -> gr.Blocks:
        """The Gradio page; `launch` builds it once GRADIO_TEMP_DIR names the app's folder."""
        gr = import_gradio()

        def on_page(work: Callable[..., Any]) -> Callable[..., Any]:
            """Run ``work`` for a page event: a user's error becomes the page's message; serving goes on."""

            @functools.wraps(work)  # gradio reads the signature (the Progress argument, the API's names)
            def handler(*args: Any, **kwargs: Any) -> Any:
                try:
                    return work(*args, **kwargs)
                except TfvtgError as exc:
                    raise gr.Error(one_line(exc), print_exception=False) from None
                except Exception as exc:
                    log.exception("the page's request failed")
                    raise gr.Error(f"unexpected {type(exc).__name__}: {one_line(exc)} (a bug in tfvtg; the "
                                   "traceback is in the server's log)", print_exception=False) from None

            return handler

        def ground(video: str | None, picked: str | None, queries: str, top_k: float,
                   progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple:  # noqa: B008 (gradio's API)
            """Ground each query (one per line) in the video; spans, curves and predictions."""
            texts = _split_queries(queries)
            path = self.source_video(video, picked)
            progress(0.0, desc=f"preparing {path.name}")
            report = self.ground(path, texts, int(top_k))
            for result in report.results:
                if self.grounder.llm_configured and result.decomposition.source == "fallback":
                    gr.Warning(f"{result.query!r}: {result.decomposition.note}; the query was used as is")
            return self._ground_outputs(report)

        def numpro(video: str | None, picked: str | None, query: str, fps: float, max_frames: float,
                   top_k: float) -> tuple:
            """NumPro's numbered frames and, with an MLLM, its answer and spans."""
            path = self.source_video(video, picked)
            cap = int(max_frames) if max_frames else None
            return self._numpro_outputs(self.numpro(path, query, fps, cap, int(top_k)))

        def search(query: str, top_k: float) -> tuple:
            """Search the index for the query's best moments across its videos."""
            from tfvtg.grounder import check_query

            hits = self.search(check_query(query), int(top_k))
            return (*self._search_outputs(hits), hits)

        def play_hit(hits: list, evt: Any) -> tuple:
            """Put the clicked hit's video in the player and hand its span to the page's player script."""
            if not hits or evt.index is None or not 0 <= int(evt.index) < len(hits):
                raise InputError("that search result is gone: search again")
            hit = hits[int(evt.index)]
            video = self.hit_video(hit)
            return str(video), {"start": hit.start, "end": hit.end, "token": video.parent.name}

        play_hit.__annotations__ = {"hits": list, "evt": gr.SelectData}  # gradio passes the click by type

        def pick(name: str | None) -> Any:
            """Show a video picked under --videos in the player."""
            return str(self.served_copy(self.source_video(None, name))) if name else None

        theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                                  font_mono=["ui-monospace", "monospace"])  # no web fonts: nothing fetched
        with gr.Blocks(title="tfvtg", analytics_enabled=False) as demo:
            gr.Markdown("## tfvtg: find when something happens in a video")
            with gr.Row():
                with gr.Column(scale=3):
                    player = gr.Video(label="Video", sources=["upload"], elem_id=PLAYER_ID, height=360)
                with gr.Column(scale=2):
                    picker = gr.Dropdown(choices=self.video_names, value=None, label="or pick a video under "
                                         "--videos", visible=self.videos is not None, elem_id="tfvtg-picker")
                    gr.Markdown(f"Uploads up to {self.max_upload_mb:g} MB; they are kept in a temporary "
                                "folder until the app stops. Click a span to play it.")
            with gr.Tabs():
                with gr.Tab("Ground", id="ground"):
                    with gr.Row():
                        queries = gr.Textbox(label="Queries (one per line)", lines=3, scale=4,
                                             elem_id="tfvtg-queries",
                                             placeholder="the person turns on the light")
                        with gr.Column(scale=1):
                            top_k = gr.Slider(1, 20, value=self.top_k, step=1, label="Spans per query")
                            ground_button = gr.Button("Ground", variant="primary", elem_id="tfvtg-ground")
                    status = gr.Markdown(elem_id="tfvtg-status")
                    spans = gr.HTML("", js_on_load=_SPANS_JS, css_template=_SPANS_CSS, elem_id="tfvtg-spans")
                    with gr.Accordion("Similarity curves", open=False):
                        curves = gr.Gallery(label="Curves", columns=1, height="auto", object_fit="contain")
                    with gr.Accordion("Predictions (tfvtg ground --json)", open=False):
                        predictions = gr.JSON(label="Predictions")
                        download = gr.File(label="Download (JSON lines)")
                with gr.Tab("NumPro", id="numpro"):
                    with gr.Row():
                        numpro_query = gr.Textbox(label="Query for the MLLM", scale=4,
                                                  placeholder="the person turns on the light",
                                                  interactive=self.mllm is not None)
                        with gr.Column(scale=1):
                            numpro_fps = gr.Number(value=self.numpro_fps, label="Frames per second",
                                                   minimum=0.01)
                            numpro_cap = gr.Number(value=100, precision=0, minimum=1, label="Most frames")
                            numpro_button = gr.Button("Number frames" if self.mllm is None else "Ask",
                                                      variant="primary", elem_id="tfvtg-numpro")
                    numpro_status = gr.Markdown()
                    numpro_answer = gr.Markdown()
                    numpro_spans = gr.HTML("", js_on_load=_SPANS_JS, css_template=_SPANS_CSS,
                                           elem_id="tfvtg-numpro-spans")
                    gallery = gr.Gallery(label="Numbered frames", columns=6, height="auto")
                    numpro_details = gr.JSON(label="Answer details", visible=self.mllm is not None)
                with gr.Tab("Search", id="search", visible=self.collection is not None):
                    with gr.Row():
                        search_query = gr.Textbox(label="Find a moment in the indexed videos", scale=4,
                                                  elem_id="tfvtg-search-query",
                                                  placeholder="the person turns on the light")
                        with gr.Column(scale=1):
                            search_k = gr.Slider(1, 50, value=10, step=1, label="Moments",
                                                 elem_id="tfvtg-search-k")
                            search_button = gr.Button("Search", variant="primary", elem_id="tfvtg-search")
                    search_status = gr.Markdown(elem_id="tfvtg-search-status")
                    hits_gallery = gr.Gallery(label="Moments (click to play)", columns=4, height="auto",
                                              allow_preview=False, elem_id="tfvtg-hits")
                    with gr.Accordion("Results as JSON", open=False):
                        hits_json = gr.JSON(label="Hits")
                    hits_state = gr.State([])
                    hit_span = gr.JSON(visible=False)
            search_button.click(on_page(search), [search_query, search_k],
                                [search_status, hits_gallery, hits_json, hits_state], api_name="search")
            hits_gallery.select(on_page(play_hit), hits_state, [player, hit_span], api_name=False).then(
                None, hit_span, None, js=_HIT_JS)
            picker.input(on_page(pick), picker, player, api_name="pick")
            player.upload(lambda: None, None, picker, api_name=False)
            ground_button.click(on_page(ground), [player, picker, queries, top_k],
                                [status, spans, curves, predictions, download], api_name="ground")
            numpro_inputs = [player, picker, numpro_query, numpro_fps, numpro_cap, top_k]
            numpro_button.click(on_page(numpro), numpro_inputs,
                                [numpro_status, gallery, numpro_answer, numpro_spans, numpro_details],
                                api_name="numpro")
        self._theme = theme
        return demo

    def launch(self, host: str = "127.0.0.1", port: int | None = 7860, *, share: bool = False,
               block: bool = True, quiet: bool = False) -> str:
        """Serve the page; returns its local URL (with ``block``, only after the server stops).

        Raises:
            TfvtgError: gradio is not installed (the ``[app]`` extra).
            InputError: The port is taken or the host cannot be bound.
        """
        import_gradio()
        warning = host_warning(host)
        if warning:
            log.warning("%s", warning)
        self._previous_temp_dir = os.environ.get("GRADIO_TEMP_DIR", "")
        # Gradio keeps uploads and every file it serves in GRADIO_TEMP_DIR: the app's own folder.
        os.environ["GRADIO_TEMP_DIR"] = str(self.workdir)
        log.info("uploads and results go to %s until the app stops", self.workdir)
        previous = None
        if block and threading.current_thread() is threading.main_thread():  # a kill cleans up as Ctrl-C does
            previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            demo = self.blocks()
            demo.queue(default_concurrency_limit=4)
            try:
                _, url, _ = demo.launch(server_name=host, server_port=port, share=share,
                                        prevent_thread_lock=True, quiet=quiet,
                                        max_file_size=int(self.max_upload_mb * 2**20), show_error=False,
                                        enable_monitoring=False, mcp_server=False, ssr_mode=False,
                                        footer_links=["api"], theme=self._theme, js=_PAGE_JS)
            except OSError as exc:
                demo.close()
                raise InputError(f"cannot serve on {host}:{port}: {one_line(exc)}; try another --port") \
                    from None
            self.demo = demo
            log.info("serving %s", url)
            if block:
                demo.block_thread()
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            if block:
                self.close()
        return url


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def _thumbnail(source: str | None, seconds: float, width: int = 320) -> np.ndarray:
    """A frame of ``source`` near ``seconds``, at most ``width`` pixels wide; a gray frame when the file is
    missing or cannot be decoded there (the hit is still listed)."""
    from PIL import Image

    from tfvtg.errors import VideoError
    from tfvtg.video import sample_frames

    if source and Path(source).is_file():
        try:
            for frame, _ in sample_frames(source, 10.0, start=max(float(seconds), 0.0)):
                image = Image.fromarray(frame)
                image.thumbnail((width, width))
                return np.asarray(image)
        except (VideoError, InputError) as exc:
            log.warning("no thumbnail of %s at %.1f s: %s", source, seconds, one_line(exc))
    return np.full((width * 9 // 16, width, 3), 128, dtype=np.uint8)


def _restore_env(name: str, previous: str) -> None:
    if previous:
        os.environ[name] = previous
    else:
        os.environ.pop(name, None)
