"""numpro.overlay: the paper's number look, pixel for pixel, and the font lookup."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from numpro import overlay as overlay_module
from numpro.overlay import NumberPainter, default_font_size, find_font, overlay_numbers
from tfvtg.errors import InputError, TfvtgError


def _pil_reference(frame: np.ndarray, text: str, size: int = 40) -> np.ndarray:
    """The reference drawing: textbbox, then draw.text at (W - w, H - h - h/3) in red, default anchor."""
    image = Image.fromarray(frame.copy())
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(find_font()), size)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    w, h = right - left, bottom - top
    draw.text((image.width - w, image.height - h - h / 3), text, fill="red", font=font)
    return np.asarray(image)


@pytest.mark.parametrize(("height", "width"), [(336, 336), (360, 640), (90, 160)])
def test_matches_pil_imagedraw_exactly(height, width):
    rng = np.random.default_rng(height)
    frames = rng.integers(0, 256, (6, height, width, 3), dtype=np.uint8)
    numbers = [0, 7, 12, 99, 123, 980]
    size = default_font_size(height, width)
    expected = np.stack([_pil_reference(f, str(n), size) for f, n in zip(frames, numbers, strict=True)])
    out = overlay_numbers(frames, numbers)
    assert out is frames  # drawn in place
    np.testing.assert_array_equal(frames, expected)  # identical, no antialias rounding difference


def test_default_size_is_40_px_at_336_and_scales_with_short_side():
    assert default_font_size(336, 336) == 40
    assert default_font_size(360, 640) == 43
    assert default_font_size(672, 1000) == 80
    assert default_font_size(20, 20) == 2


def _ink_box(before: np.ndarray, after: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(np.any(before != after, axis=-1))
    return int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())


def test_digits_are_red_in_the_bottom_right_corner():
    frame = np.zeros((336, 336, 3), np.uint8)
    overlay_numbers([frame], [12])
    top, bottom, left, right = _ink_box(np.zeros_like(frame), frame)
    # DejaVuSans-Bold 40 (docs/NUMPRO-METHOD.md): the ink ends 2-3 px from the right and bottom edges.
    assert 331 <= right <= 335 and 331 <= bottom <= 335
    assert 25 <= bottom - top + 1 <= 32  # digit ink about 30 px tall
    assert 45 <= right - left + 1 <= 60  # two digits of about 25 px each
    ink = frame[top:bottom + 1, left:right + 1].reshape(-1, 3)
    drawn = ink[ink.any(axis=1)]
    assert np.all(drawn[:, 1:] == 0) and drawn[:, 0].max() == 255  # pure red on black, antialiased edges


def test_digits_scale_with_the_frame():
    small = np.zeros((168, 168, 3), np.uint8)
    large = np.zeros((672, 672, 3), np.uint8)
    overlay_numbers([small, large], [5, 5])
    s = _ink_box(np.zeros_like(small), small)
    g = _ink_box(np.zeros_like(large), large)
    height_small, height_large = s[1] - s[0] + 1, g[1] - g[0] + 1
    assert height_large == pytest.approx(4 * height_small, rel=0.1)
    assert g[3] >= 672 - 8 and s[3] >= 168 - 3  # still at the right edge


@pytest.mark.parametrize(("position", "corner"), [
    ("top_left", (0, 0)), ("top_right", (0, 1)), ("bottom_left", (1, 0)), ("bottom_right", (1, 1)),
])
def test_positions(position, corner):
    frame = np.zeros((200, 300, 3), np.uint8)
    overlay_numbers([frame], [3], position=position, color=(0, 255, 0))
    top, bottom, left, right = _ink_box(np.zeros_like(frame), frame)
    cy, cx = (top + bottom) / 2, (left + right) / 2
    assert (cy > 100) == bool(corner[0]) and (cx > 150) == bool(corner[1])
    assert frame[..., 0].max() == 0 and frame[..., 1].max() == 255


def test_center_and_explicit_size():
    frame = np.zeros((200, 200, 3), np.uint8)
    overlay_numbers([frame], [8], position="center", size=60)
    top, bottom, left, right = _ink_box(np.zeros_like(frame), frame)
    assert abs((left + right) / 2 - 100) < 6 and abs((top + bottom) / 2 - 100) < 15
    assert bottom - top + 1 > 40


def test_numbers_default_to_0_to_n_minus_1_and_none_skips():
    frames = np.zeros((3, 336, 336, 3), np.uint8)
    overlay_numbers(frames, [None, "4", 4])
    assert frames[0].max() == 0
    np.testing.assert_array_equal(frames[1], frames[2])
    default = np.zeros((2, 336, 336, 3), np.uint8)
    overlay_numbers(default)
    np.testing.assert_array_equal(default[1], _pil_reference(np.zeros((336, 336, 3), np.uint8), "1"))


def test_bad_input_is_rejected():
    with pytest.raises(InputError, match="RGB uint8"):
        overlay_numbers([np.zeros((10, 10, 3), np.float32)])
    with pytest.raises(InputError, match="numbers"):
        overlay_numbers([np.zeros((10, 10, 3), np.uint8)], [1, 2])
    read_only = np.zeros((10, 10, 3), np.uint8)
    read_only.flags.writeable = False
    with pytest.raises(InputError, match="read-only"):
        overlay_numbers([read_only])
    with pytest.raises(InputError, match="position"):
        NumberPainter(position="middle")


def test_font_lookup_falls_back_to_matplotlib_then_fails_loudly(monkeypatch):
    monkeypatch.delenv("NUMPRO_FONT", raising=False)
    monkeypatch.setattr(overlay_module, "_fontconfig_font", lambda: None)
    monkeypatch.setattr(overlay_module, "_SYSTEM_FONT_PATHS", ())
    overlay_module.find_font.cache_clear()
    try:
        path = find_font()
        assert path.name == "DejaVuSans-Bold.ttf" and "mpl-data" in str(path)
        monkeypatch.setattr(overlay_module, "_matplotlib_font", lambda: None)
        overlay_module.find_font.cache_clear()
        with pytest.raises(TfvtgError, match="cannot find DejaVuSans-Bold.ttf"):
            find_font()
        monkeypatch.setenv("NUMPRO_FONT", "/nonexistent/font.ttf")
        overlay_module.find_font.cache_clear()
        with pytest.raises(InputError, match="NUMPRO_FONT"):
            find_font()
    finally:
        overlay_module.find_font.cache_clear()


def test_matplotlib_font_draws_digits_like_the_system_font():
    mpl = overlay_module._matplotlib_font()
    if mpl is None:
        pytest.skip("matplotlib's bundled font not found")
    a = np.zeros((4, 336, 336, 3), np.uint8)
    b = np.zeros_like(a)
    overlay_numbers(a, [0, 7, 42, 987])
    overlay_numbers(b, [0, 7, 42, 987], font=mpl)
    np.testing.assert_array_equal(a, b)
