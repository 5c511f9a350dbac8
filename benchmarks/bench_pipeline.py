"""All 3,720 Charades-STA queries with TFVTG's shipped LLM outputs, end to end on synthetic curves.

Times tfvtg.pipeline.ground_with_scores (reference and default profiles) against the transcription of the
official flow (benchmarks/official_tfvtg.py: section 5.2 on top of the section 3 baseline) in one process, and
checks that the reference profile's top-1 equals the transcription's on every query. Each run is given in
wall seconds and in CPU seconds of this process (on a shared machine the latter leaves out the time spent
waiting for a core); the ratios use CPU seconds.

Usage: python benchmarks/bench_pipeline.py [--data ../shared/data/charades-sta/llm_outputs.json] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import official_tfvtg as official  # noqa: E402

from tfvtg.decompose import Decomposition  # noqa: E402
from tfvtg.localize import PRESETS  # noqa: E402
from tfvtg.pipeline import ground_with_scores  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "charades-sta" / "llm_outputs.json"


def synthetic_curve(text: str, n: int) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(text.encode()))
    base = np.convolve(rng.normal(0.18, 0.08, n + 8), np.ones(9) / 9, "valid")[:n]
    centre, half = rng.integers(0, n), rng.integers(3, max(4, n // 5))
    base[max(0, centre - half) : centre + half] += rng.uniform(0.05, 0.2)
    return base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    records = json.loads(args.data.read_text())
    jobs = []
    for vid, rec in records.items():
        n = round(rec["duration"] * 3)
        curves: dict[str, np.ndarray] = {}
        for sentence, answer in zip(rec["sentences"], rec["response"], strict=True):
            for text in {sentence, *(t for e in answer.get("query_json", []) for t in e["descriptions"])}:
                curves.setdefault(text, synthetic_curve(vid + text, n))
            jobs.append((rec["duration"], n, sentence, answer, curves))
    jobs = jobs[: args.limit]

    def timed(fn):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        return time.perf_counter() - wall, time.process_time() - cpu, out

    def run_ours(profile: str) -> list:
        tops = []
        for duration, _, sentence, answer, curves in jobs:
            d = Decomposition.from_tfvtg(answer, sentence)
            tops.append(ground_with_scores(curves.__getitem__, duration, sentence, d, profile=profile)[0])
        return tops

    def run_baseline() -> list:
        expected = []
        for duration, n, sentence, answer, curves in jobs:
            stride, max_stride = PRESETS["charades"].windows(n)
            expected.append(official.eval_with_llm(curves, duration, sentence, answer, stride, max_stride))
        return expected

    base_wall, base_cpu, expected = timed(run_baseline)
    ref_wall, ref_cpu, ref_tops = timed(lambda: run_ours("reference"))
    default_wall, default_cpu, _ = timed(lambda: run_ours("default"))
    same = sum(np.allclose((m.start, m.end), e) for m, e in zip(ref_tops, expected, strict=True))
    print(f"# {len(jobs)} Charades-STA queries, shipped LLM decompositions, synthetic curves at 3 fps")
    print(f"{'run':<28} {'wall s':>8} {'CPU s':>8} {'CPU ms/query':>13} {'ratio':>7}")
    for name, wall, cpu in (
        ("transcription (baseline)", base_wall, base_cpu),
        ("tfvtg reference", ref_wall, ref_cpu),
        ("tfvtg default", default_wall, default_cpu),
    ):
        print(f"{name:<28} {wall:>8.2f} {cpu:>8.2f} {cpu / len(jobs) * 1e3:>13.3f} {base_cpu / cpu:>6.1f}x")
    print(f"reference top-1 equal to the transcription's: {same}/{len(jobs)}")


if __name__ == "__main__":
    main()
