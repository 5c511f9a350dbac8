"""Frames per second of `numpro.overlay_numbers` against the reference-style overlay, in the same process.

The reference-style overlay re-creates what NumPro's official scripts do per frame (docs/NUMPRO-METHOD.md
§1.3, §8): BGR -> RGB, numpy -> PIL image, load the font again, ``textbbox``, ``draw.text``, PIL -> numpy, RGB
-> BGR. OpenCV is not a dependency, so the two colour conversions are numpy channel flips with a contiguous
copy (what ``cv2.cvtColor`` returns). Ours draws cached glyph masks in place on RGB frames.

Run: ``.venv/bin/python benchmarks/bench_overlay.py [--frames 600] [--repeats 5]``. Prints the median of the
repeats for each case and the ratio ours / reference.
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from timing import median_seconds

from numpro.overlay import find_font, overlay_numbers


def reference_overlay(frame_bgr: np.ndarray, number: int, font_path: str, font_size: int = 40) -> np.ndarray:
    """One frame the way the reference does it: colour round trip, font reloaded, measured, drawn."""
    rgb = np.ascontiguousarray(frame_bgr[..., ::-1])
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(font_path, font_size)
    text = str(number)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    w, h = right - left, bottom - top
    draw.text((image.width - w, image.height - h - h / 3), text, fill="red", font=font)
    return np.ascontiguousarray(np.asarray(image)[..., ::-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=600, help="frames per run (numbered 0..N-1)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per case; the median is reported")
    args = parser.parse_args()
    font_path = str(find_font())
    rng = np.random.default_rng(0)
    print(f"font: {font_path}; {args.frames} frames per run, median of {args.repeats} runs")
    print(f"{'size':>9} | {'reference fps':>13} | {'ours fps':>10} | {'ours (warm) fps':>15} | "
          f"{'ratio':>6} | warm")
    for height, width in ((336, 336), (360, 640)):
        frames = rng.integers(0, 256, (args.frames, height, width, 3), dtype=np.uint8)

        def run_reference(frames: np.ndarray = frames) -> None:
            for i, frame in enumerate(frames):
                reference_overlay(frame, i, font_path)

        def run_ours(frames: np.ndarray = frames) -> None:
            overlay_numbers(frames, size=40)  # the reference keeps 40 px at every size

        # Cold: a new cache for every run (glyphs rendered once per number, as on a first video).
        from numpro import overlay as module

        def run_ours_cold() -> None:
            module._painter.cache_clear()
            run_ours()

        t_ref = median_seconds(run_reference, args.repeats)
        t_cold = median_seconds(run_ours_cold, args.repeats)
        t_warm = median_seconds(run_ours, args.repeats)
        n = args.frames
        print(f"{width:>4}x{height:<4} | {n / t_ref:>13,.0f} | {n / t_cold:>10,.0f} | {n / t_warm:>15,.0f} | "
              f"{t_ref / t_cold:>5.1f}x | {t_ref / t_warm:.1f}x")
    print("ratio = reference time / ours (cold cache: glyphs rendered during the run); "
          "warm = glyph cache already filled (the next video of the same size)")


if __name__ == "__main__":
    main()
