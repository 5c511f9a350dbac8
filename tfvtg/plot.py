"""Figures of a grounding: the similarity curves over time with the predicted (and true) spans.

matplotlib is imported only here, and figures are built without pyplot (``matplotlib.figure.Figure``), so
plotting works headless, opens no GUI window and leaks no global figure state; a notebook displays the
returned figure.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from tfvtg.errors import InputError
from tfvtg.moment import Moment

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from tfvtg.grounder import GroundingResult

__all__ = ["check_figure_path", "plot_curves", "plot_result", "save_figure"]

_LABEL_CHARS = 48


def _short(text: str, limit: int = _LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def plot_curves(
    timestamps: np.ndarray,
    curves: Mapping[str, np.ndarray],
    moments: Sequence[Moment] = (),
    *,
    groups: Mapping[str, int] | None = None,
    gt: Sequence[Sequence[float]] | None = None,
    mask_threshold: float | None = None,
    duration: float | None = None,
    title: str | None = None,
    ax: Axes | None = None,
    figsize: tuple[float, float] = (10.0, 4.0),
) -> Figure:
    """Draw similarity curves against time with the predicted spans shaded, best first.

    Args:
        timestamps: (T,) frame times in seconds.
        curves: (T,) similarity curve per description; the first is drawn as the main curve.
        moments: Predicted spans, best first: the top-1 is shaded, the others are numbered bars at the bottom.
        groups: Description -> group index (0 = the query and its paraphrases, k = sub-event k); curves of a
            group share a colour. ``None``: every curve its own colour.
        gt: True spans ``[[start, end], ...]`` in seconds, drawn as a red band along the top.
        mask_threshold: Draw the activity mask threshold as a dashed line.
        duration: Right end of the time axis (``None``: the last timestamp).
        title: Axes title.
        ax: Draw into these axes instead of a new figure.
        figsize: Size of a new figure in inches.

    Returns:
        The figure holding the axes.
    """
    times = np.asarray(timestamps, dtype=np.float64)
    if times.ndim != 1 or len(times) == 0:
        raise InputError("cannot plot: timestamps must be a non-empty 1-D array")
    if not curves:
        raise InputError("cannot plot: no similarity curve given")
    fig, ax = _axes(ax, figsize)
    palette = [f"C{i}" for i in range(10)]
    first = True
    for index, (text, curve) in enumerate(curves.items()):
        values = np.asarray(curve, dtype=np.float64)
        if values.shape != times.shape:
            raise InputError(f"cannot plot: curve of {text!r} has shape {values.shape}, "
                             f"timestamps {times.shape}")
        group = groups.get(text, index) if groups is not None else index
        style = {"color": palette[group % len(palette)], "linewidth": 2.2 if first else 1.0,
                 "alpha": 1.0 if first else 0.75, "linestyle": "-" if group == 0 else "--"}
        ax.plot(times, values, label=_short(text), **style)
        first = False
    end = float(duration) if duration else float(times[-1])
    strip = ax.get_xaxis_transform()  # x in data units, y in axes fractions
    for rank, moment in enumerate(moments, start=1):
        if rank == 1:
            ax.axvspan(moment.start, moment.end, color="tab:green", alpha=0.3, linewidth=0,
                       label=f"top-1 {moment.start:.1f}-{moment.end:.1f} s")
            continue
        # Lower ranks as numbered bars along the bottom, so overlapping spans stay readable.
        y = 0.03 + 0.04 * (rank - 2)
        ax.plot([moment.start, moment.end], [y, y], transform=strip, color="darkgreen", alpha=0.6,
                linewidth=3, solid_capstyle="butt", label="ranks 2+" if rank == 2 else None)
        ax.text(moment.start, y + 0.005, str(rank), transform=strip, fontsize=7, color="darkgreen",
                va="bottom")
    for i, span in enumerate(gt or ()):
        if len(span) < 2:
            raise InputError(f"cannot plot: a true span needs a start and an end, got {span!r}")
        ax.axvspan(float(span[0]), float(span[1]), ymin=0.96, ymax=1.0, color="tab:red", alpha=0.9,
                   linewidth=0, label="ground truth" if i == 0 else None)
    if mask_threshold is not None:
        ax.axhline(mask_threshold, color="0.4", linestyle=":", linewidth=1.0,
                   label=f"mask {mask_threshold:g}")
    ax.set_xlim(0.0, max(end, float(times[-1])))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("similarity (cosine)")
    if title:
        ax.set_title(_short(title, 90))
    ax.legend(loc="best", fontsize=7, framealpha=0.8)
    ax.grid(alpha=0.25)
    return fig


def plot_result(
    result: GroundingResult,
    ax: Axes | None = None,
    gt: Sequence[Sequence[float]] | None = None,
    figsize: tuple[float, float] = (10.0, 4.0),
) -> Figure:
    """Plot a `GroundingResult`: the curves of the query and its descriptions, the spans, ``gt`` if given."""
    decomposition = result.decomposition
    groups = {text: 0 for text in decomposition.main_descriptions}
    for k, event in enumerate(decomposition.sub_events, start=1):
        for text in event:
            groups.setdefault(text, k)
    groups[result.query] = 0
    ordered = {result.query: result.curves[result.query]}
    ordered.update((t, c) for t, c in result.curves.items() if t != result.query)
    facts = (result.meta.get(key) for key in ("localizer", "method", "profile"))
    title = f"{result.query}  ({', '.join(str(fact) for fact in facts if fact)})"
    return plot_curves(result.timestamps, ordered, result.moments, groups=groups, gt=gt,
                       mask_threshold=result.mask_threshold, duration=result.duration, title=title, ax=ax,
                       figsize=figsize)


def check_figure_path(path: str | os.PathLike[str], what: str = "figure") -> None:
    """Refuse, before any work, a figure file name whose extension matplotlib cannot write (``out.xyz``).

    A name without an extension is written as PNG (matplotlib's default).

    Raises:
        InputError: The extension is not an image format matplotlib supports; the message lists them.
    """
    from pathlib import Path

    from matplotlib.backend_bases import FigureCanvasBase

    suffix = Path(path).suffix.lower().lstrip(".")
    formats = FigureCanvasBase.get_supported_filetypes()
    if suffix and suffix not in formats:
        raise InputError(f"{what} {path}: cannot write a .{suffix} figure; use one of "
                         + ", ".join(f".{f}" for f in sorted(formats)))


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 120) -> None:
    """Write ``fig`` to ``path`` (format from the extension), creating the parent directory.

    Raises:
        InputError: Unknown image format, or the file cannot be written (one line saying why).
    """
    from pathlib import Path

    out = Path(path).expanduser()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=dpi)
    except ValueError as exc:  # matplotlib's message for an unknown extension
        raise InputError(f"cannot write figure {out}: {exc}") from exc
    except OSError as exc:  # no such directory, not a directory, permission, disk full
        raise InputError(f"cannot write figure {out}: {exc.strerror or exc}") from exc
