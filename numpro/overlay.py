"""Draw frame numbers on RGB frames, with the look NumPro's paper chose (red DejaVuSans-Bold, bottom-right).

The default reproduces the reference drawing exactly: ``str(n)`` in DejaVuSans-Bold, 40 px on a 336x336 frame,
pure red, no outline, margin 0, placed at ``x = W - w`` and ``y = H - h - h/3`` where ``(w, h)`` is the size
of the text's ``textbbox`` (the ``-h/3`` lift only for bottom positions). On frames of another size the font
scales with the short side (``round(40 * short / 336)``, about 0.119 x short side), a choice of ours: the
reference keeps 40 px.

Speed: the font is loaded once per (file, size) and each number's antialiased mask is rendered once per (text,
frame size, position) with Pillow, then written into the frame with numpy using Pillow's own blend arithmetic,
so the result is pixel-identical to ``ImageDraw.text`` on the same frame, with no colour conversion or copy.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tfvtg.errors import InputError, TfvtgError

if TYPE_CHECKING:
    from PIL import ImageFont

__all__ = ["overlay_numbers", "NumberPainter", "find_font", "default_font_size", "POSITIONS",
           "REFERENCE_SIZE"]

POSITIONS = ("bottom_right", "bottom_left", "top_right", "top_left", "center")
# The paper's font size (px) for its 336x336 frames.
REFERENCE_SIZE = (40, 336)

_FONT_FILE = "DejaVuSans-Bold.ttf"
_SYSTEM_FONT_PATHS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",  # Debian, Ubuntu (fonts-dejavu-core)
    "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf",  # Fedora, RHEL (dejavu-sans-fonts)
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans-Bold.ttf",  # newer Fedora
    "/usr/share/fonts/TTF/DejaVuSans-Bold.ttf",  # Arch
    "/Library/Fonts/DejaVuSans-Bold.ttf",  # macOS, user-installed
)


def _fontconfig_font() -> Path | None:
    """DejaVuSans-Bold as fontconfig resolves it, or None (no fc-match, or it substitutes another face)."""
    fc_match = shutil.which("fc-match")
    if fc_match is None:
        return None
    try:
        out = subprocess.run([fc_match, "-f", "%{file}", "DejaVu Sans:bold"], capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    path = Path(out.stdout.strip())
    # fc-match always answers with *some* font; accept only the face we asked for.
    return path if out.returncode == 0 and path.name == _FONT_FILE and path.is_file() else None


def _matplotlib_font() -> Path | None:
    try:
        import matplotlib
    except ImportError:
        return None
    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / _FONT_FILE
    return path if path.is_file() else None


@functools.lru_cache(maxsize=1)
def find_font() -> Path:
    """The path of DejaVuSans-Bold.ttf, the paper's font.

    Looked up in order: ``$NUMPRO_FONT``, fontconfig, the usual Debian/Fedora/Arch paths, then the copy
    shipped in matplotlib's wheel (``mpl-data/fonts/ttf``; it draws digits pixel-identically to Debian's at 40
    px).

    Raises:
        TfvtgError: No copy of the font was found (install fonts-dejavu-core or matplotlib, or set
            NUMPRO_FONT).
    """
    env = os.environ.get("NUMPRO_FONT")
    if env:
        if not Path(env).is_file():
            raise InputError(f"NUMPRO_FONT={env} is not a file; point it to a .ttf font or unset it")
        return Path(env)
    found = _fontconfig_font()
    if found is not None:
        return found
    for candidate in _SYSTEM_FONT_PATHS:
        if Path(candidate).is_file():
            return Path(candidate)
    found = _matplotlib_font()
    if found is not None:
        return found
    raise TfvtgError(
        f"cannot find {_FONT_FILE}: install fonts-dejavu-core (Debian/Ubuntu) or dejavu-sans-fonts (Fedora), "
        "or matplotlib, or set NUMPRO_FONT to a .ttf file"
    )


def default_font_size(height: int, width: int) -> int:
    """The font size for a frame: 40 px at 336x336 (the paper), scaled with the short side elsewhere."""
    size, reference_side = REFERENCE_SIZE
    return max(1, round(size * min(height, width) / reference_side))


@functools.lru_cache(maxsize=32)
def _load_font(path: str, size: int) -> ImageFont.FreeTypeFont:
    from PIL import ImageFont

    try:
        return ImageFont.truetype(path, size)
    except OSError as exc:
        raise InputError(f"cannot load font {path}: {exc}") from exc


@dataclass(frozen=True)
class _Glyph:
    """A rendered number: its antialiased coverage mask and where it goes in the frame (already clipped)."""

    y: int
    x: int
    alpha: np.ndarray  # (h, w) uint16, 0..255
    inv_alpha: np.ndarray  # 255 - alpha


class NumberPainter:
    """Draws numbers on frames of any size with one font, colour and position; caches fonts and glyph masks.

    Args:
        position: One of `POSITIONS`.
        color: RGB colour of the digits.
        size: Font size in pixels; None scales with the frame (`default_font_size`).
        font: Path of a TrueType font; None uses `find_font` (DejaVuSans-Bold).
        margin: Pixels between the text box and the frame edges (the paper uses 0).
    """

    def __init__(self, position: str = "bottom_right", color: Sequence[int] = (255, 0, 0),
                 size: int | None = None, font: str | os.PathLike[str] | None = None,
                 margin: int = 0) -> None:
        if position not in POSITIONS:
            raise InputError(f"unknown position {position!r}; use one of {', '.join(POSITIONS)}")
        color = tuple(int(c) for c in color)
        if len(color) != 3 or not all(0 <= c <= 255 for c in color):
            raise InputError(f"color must be three integers in 0..255, got {color!r}")
        if size is not None and size < 1:
            raise InputError(f"font size must be a positive number of pixels, got {size}")
        self.position = position
        self.color = color
        self.size = size
        self.font_path = str(font) if font is not None else str(find_font())
        if not Path(self.font_path).is_file():
            raise InputError(f"font file not found: {self.font_path}")
        self.margin = int(margin)
        self._color = np.array(color, dtype=np.uint32)
        self._glyph = functools.lru_cache(maxsize=8192)(self._render)

    def _anchor(self, text: str, font: ImageFont.FreeTypeFont, height: int,
                width: int) -> tuple[float, float]:
        """Where the reference puts the text origin (PIL's default left-ascender anchor)."""
        from PIL import Image, ImageDraw

        left, top, right, bottom = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=font)
        w, h = right - left, bottom - top
        m = self.margin
        if self.position == "bottom_right":
            return width - w - m, height - h - h / 3 - m
        if self.position == "bottom_left":
            return m, height - h - h / 3 - m
        if self.position == "top_right":
            return width - w - m, m
        if self.position == "top_left":
            return m, m
        return (width - w) / 2, (height - h) / 2

    def _render(self, text: str, height: int, width: int) -> _Glyph | None:
        """Render ``text`` with Pillow on an empty canvas of the frame's size and keep the inked box."""
        from PIL import Image, ImageDraw

        size = self.size if self.size is not None else default_font_size(height, width)
        font = _load_font(self.font_path, size)
        canvas = Image.new("L", (width, height), 0)
        ImageDraw.Draw(canvas).text(self._anchor(text, font, height, width), text, fill=255, font=font)
        box = canvas.getbbox()
        if box is None:  # nothing lands inside the frame
            return None
        left, top, right, bottom = box
        alpha = np.asarray(canvas.crop(box), dtype=np.uint16)
        return _Glyph(top, left, alpha, 255 - alpha)

    def draw(self, frame: np.ndarray, text: str) -> np.ndarray:
        """Draw ``text`` on one RGB uint8 frame (H, W, 3) in place and return it."""
        _check_frame(frame)
        glyph = self._glyph(text, frame.shape[0], frame.shape[1])
        if glyph is None:
            return frame
        h, w = glyph.alpha.shape
        region = frame[glyph.y:glyph.y + h, glyph.x:glyph.x + w]
        # Pillow's blend for an "L" coverage mask: DIV255(dst * (255 - a) + ink * a), DIV255(v) = round(v /
        # 255).
        v = region.astype(np.uint32) * glyph.inv_alpha[..., None] + glyph.alpha[..., None] * self._color + 128
        region[...] = ((v >> 8) + v) >> 8
        return frame


def _check_frame(frame: np.ndarray) -> None:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        got = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise InputError(f"frames must be RGB uint8 arrays of shape (H, W, 3), got {got}")
    if not frame.flags.writeable:
        raise InputError("frames are read-only; pass a writable copy (np.array(frame)) to draw on it")


@functools.lru_cache(maxsize=16)
def _painter(position: str, color: tuple[int, ...], size: int | None, font: str | None,
             margin: int) -> NumberPainter:
    return NumberPainter(position=position, color=color, size=size, font=font, margin=margin)


def overlay_numbers(
    frames: Sequence[np.ndarray] | np.ndarray,
    numbers: Sequence[int | str | None] | None = None,
    *,
    position: str = "bottom_right",
    color: Sequence[int] = (255, 0, 0),
    size: int | None = None,
    font: str | os.PathLike[str] | None = None,
    margin: int = 0,
) -> Sequence[np.ndarray] | np.ndarray:
    """Draw a number on each frame, in place, as NumPro does (``str(i)`` on frame i, from 0).

    Args:
        frames: RGB uint8 frames, a list of (H, W, 3) arrays or one (N, H, W, 3) array; modified in place.
        numbers: What to write on each frame (``len(frames)`` items); None writes 0..N-1. An item None leaves
            that frame unnumbered (the paper's partial-numbering ablation).
        position: ``"bottom_right"`` (paper), ``"bottom_left"``, ``"top_right"``, ``"top_left"`` or
            ``"center"``.
        color: RGB colour of the digits; the paper's is pure red.
        size: Font size in pixels; None gives 40 px at 336x336, scaled with the frame's short side elsewhere.
        font: TrueType font file; None finds DejaVuSans-Bold (see `find_font`).
        margin: Pixels between the text and the frame edges (paper: 0).

    Returns:
        The same ``frames`` object, drawn on.

    Raises:
        InputError: Frames are not writable RGB uint8 arrays, ``numbers`` has the wrong length, or an option
            is invalid.
    """
    count = len(frames)
    if numbers is None:
        numbers = range(count)
    elif len(numbers) != count:
        raise InputError(f"got {len(numbers)} numbers for {count} frames; give one per frame (None to skip)")
    font_path = None if font is None else str(font)
    painter = _painter(position, tuple(int(c) for c in color), size, font_path, margin)
    for frame, number in zip(frames, numbers, strict=True):
        if number is not None:
            painter.draw(frame, str(number))
    return frames
