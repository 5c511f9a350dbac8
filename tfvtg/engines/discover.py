"""Which video files a list of paths names, and the id (output name) of each.

One rule names a video everywhere (``extract``, ``ground``, ``evaluate``, the feature cache): its id is the
file name the user gave, without its suffix (`tfvtg.video.video_id`); symbolic links are never resolved for
naming.
Two inputs with one id would write one output, so they are refused before any work.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tfvtg.errors import InputError
from tfvtg.video import VIDEO_SUFFIXES, video_id

__all__ = ["Found", "find_videos", "assign_ids"]


@dataclass
class Found:
    """The video files found, and what was passed over in the folders scanned.

    Attributes:
        videos: Video files in the order given (folders: sorted by name), each once.
        hidden: Hidden files (``.name``) and macOS resource files (``._name``) with a video suffix, skipped.
        dangling: Symbolic links whose target is missing, skipped.
        folders: Subfolders not entered (no ``recursive``).
    """

    videos: list[Path] = field(default_factory=list)
    hidden: list[Path] = field(default_factory=list)
    dangling: list[Path] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)

    def notes(self) -> list[str]:
        """One line per kind of file passed over, naming a few of them."""

        def some(paths: list[Path]) -> str:
            names = ", ".join(p.name for p in paths[:3])
            return names + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")

        notes = []
        if self.hidden:
            notes.append(f"skipped {len(self.hidden)} hidden or macOS resource file(s): {some(self.hidden)}")
        if self.dangling:
            notes.append(f"skipped {len(self.dangling)} broken symbolic link(s) (target missing): "
                         f"{some(self.dangling)}")
        if self.folders:
            notes.append(f"did not enter {len(self.folders)} subfolder(s): {some(self.folders)} "
                         f"(pass --recursive / recursive=True to include them)")
        return notes


def _is_hidden(path: Path) -> bool:
    return path.name.startswith(".")  # covers macOS AppleDouble "._name" files too


def find_videos(paths: Sequence[str | os.PathLike[str]], *, recursive: bool = False) -> Found:
    """The video files named by ``paths``: files as given, and the video files inside folders.

    Inside a folder, files are taken by suffix (`tfvtg.video.VIDEO_SUFFIXES`) in name order; hidden files and
    macOS ``._name`` resource files are skipped and listed, as are broken links; subfolders are entered only
    with ``recursive``. A file named explicitly is taken whatever its name (a bad one fails when decoded).

    Raises:
        InputError: a path that does not exist, or no video file at all.
    """
    found = Found()
    seen: set[str] = set()

    def take(path: Path) -> None:
        key = os.path.normpath(os.path.abspath(path))  # the same path given twice; links are not followed
        if key not in seen:
            seen.add(key)
            found.videos.append(path)

    def scan(folder: Path) -> None:
        for entry in sorted(folder.iterdir(), key=lambda p: p.name):
            if entry.is_symlink() and not entry.exists():
                if entry.suffix.lower() in VIDEO_SUFFIXES:
                    found.dangling.append(entry)
            elif entry.is_dir():
                if _is_hidden(entry):
                    continue
                if recursive:
                    scan(entry)
                else:
                    found.folders.append(entry)
            elif entry.is_file() and entry.suffix.lower() in VIDEO_SUFFIXES:
                if _is_hidden(entry):
                    found.hidden.append(entry)
                else:
                    take(entry)

    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            scan(path)
        elif path.is_symlink() and not path.exists():
            raise InputError(f"{path} is a broken symbolic link (its target is missing)")
        elif not path.exists():
            raise InputError(f"video not found: {path}")
        elif not path.is_file():
            raise InputError(f"{path} is not a regular file")
        else:
            take(path)
    if not found.videos:
        extra = "; " + "; ".join(found.notes()) if found.notes() else ""
        raise InputError("no video file found in " + ", ".join(str(p) for p in paths) + extra)
    return found


def assign_ids(videos: Sequence[Path]) -> dict[str, Path]:
    """Each video's id (`tfvtg.video.video_id`), sorted by id; two inputs with one id are refused.

    Raises:
        InputError: two different inputs would write the same output, named with both paths.
    """
    ids: dict[str, Path] = {}
    for path in videos:
        vid = video_id(path)
        if vid in ids:
            raise InputError(f"{ids[vid]} and {path} have the same video id {vid!r} and would write the same "
                             f"feature file; rename one or extract them into different folders")
        ids[vid] = path
    return dict(sorted(ids.items()))
