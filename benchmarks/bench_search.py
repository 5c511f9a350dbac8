"""`tfvtg search` on synthetic collections: build cost, bytes per token, latency, recall, agreement.

A collection of 120 s videos (360 frames at 3 fps, 32 tokens of 256 dimensions a frame, stored as float16
feature files exactly as `tfvtg extract` writes them) is generated with BLIP-2-like cosine ranges: every
token shares a common direction (background cosine with a query ~0.25-0.3), the tokens of a frame share its
scene, scenes drift slowly and cut every 20-60 s, and each token has its own direction and noise. Each query
is a planted concept: a span of 5-20 s of one known video carries it in a quarter of its tokens (cosine ~0.5
with the query), three other videos carry it at half strength (hard distractors). The text "encoder" returns
the planted query embeddings; everything else is the real code: `Collection.add` builds the index from the
files, `Collection.search` runs the coarse stage and grounds the candidates with the TFVTG pipeline
(VLM-only flow, default profile, preset auto), and the baseline in the same process is
`search(exhaustive=True)`, which grounds every video.

Latencies are wall time on whatever machine load there is, plus the process's CPU time (all its threads),
which shows what the query costs when the cores are not shared.

``--stores`` instead compares the two embedded stores on the same unit tokens (no feature files): FAISS
IVF-PQ (the store `tfvtg.index` uses) and LanceDB IVF-PQ, against an exact flat search: build time, query
latency and recall of the exact 100 best frames (first token hit per frame).

Usage:
  python benchmarks/bench_search.py --frames 100000 [--queries 100] [--exhaustive-queries 30]
  python benchmarks/bench_search.py --frames 1000000 --queries 100 --exhaustive-queries 10
  python benchmarks/bench_search.py --stores --frames 20000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tfvtg.encoders.base import EncoderConfig, max_cosine_similarity
from tfvtg.features import VideoFeatures
from tfvtg.grounder import Grounder
from tfvtg.index import _nlist, _pq_parts

D, Q, T, FPS = 256, 32, 360, 3.0
MODEL = "bench/synthetic-blip2"  # looks like a Hub id: never loaded, the planted encoder stands in
PLANTED_TOKENS = 8  # tokens of a frame that carry a planted concept
STRENGTH, DISTRACTOR = 0.30, 0.15


class PlantedEncoder:
    """The `Encoder` protocol's text side for planted queries: ``"query N"`` -> its embedding."""

    config = EncoderConfig(MODEL, (364, 364), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), Q, D)

    def __init__(self, texts: dict[str, np.ndarray]) -> None:
        self.texts = texts

    def encode_images(self, frames: np.ndarray) -> np.ndarray:
        raise RuntimeError("the benchmark's features are generated, never encoded")

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self.texts[t] for t in texts])

    def similarity(self, video_features: np.ndarray, text_features: np.ndarray) -> np.ndarray:
        return max_cosine_similarity(video_features, text_features)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


class Synthetic:
    """The collection's generator: a common direction, per-query concepts, plants and distractors."""

    def __init__(self, n_videos: int, n_queries: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.seed = seed
        self.noise = rng.standard_normal((4 * T, Q, D), dtype=np.float32) * np.float32(0.35 / np.sqrt(D))
        self.n_videos = n_videos
        self.common = _unit(rng.standard_normal(D))
        self.concepts = _unit(rng.standard_normal((n_queries, D)))
        self.queries = {f"query {q}": _unit(0.45 * self.common + 0.89 * self.concepts[q]).astype(np.float32)
                        for q in range(n_queries)}
        # plants[video] = [(concept, first frame, end frame, strength)]
        self.plants: dict[int, list[tuple[int, int, int, float]]] = {}
        self.truth: dict[str, tuple[str, float, float]] = {}
        for q in range(n_queries):
            videos = rng.choice(n_videos, 4, replace=False)
            for rank, video in enumerate(videos):
                length = int(rng.integers(15, 61))
                first = int(rng.integers(0, T - length))
                strength = STRENGTH if rank == 0 else DISTRACTOR
                self.plants.setdefault(int(video), []).append((q, first, first + length, strength))
                if rank == 0:
                    self.truth[f"query {q}"] = (self.name(int(video)), first / FPS, (first + length) / FPS)

    @staticmethod
    def name(video: int) -> str:
        return f"v{video:06d}"

    def tokens(self, video: int) -> np.ndarray:
        """(T, Q, D) float32 token features of one video (not normalised)."""
        rng = np.random.default_rng((self.seed, video))
        cuts = np.sort(rng.choice(np.arange(60, T - 30), int(rng.integers(2, 6)), replace=False))
        scene_of = np.searchsorted(cuts, np.arange(T), side="right")
        scenes = _unit(rng.standard_normal((len(cuts) + 1, D)))
        knots = rng.standard_normal((T // 30 + 2, D)) * 0.35 / np.sqrt(D)
        pos = np.arange(T) / 30
        lo = pos.astype(int)
        drift = knots[lo] * (1 - (pos - lo))[:, None] + knots[lo + 1] * (pos - lo)[:, None]
        scene = _unit(scenes[scene_of] + drift * np.sqrt(D))
        own = _unit(rng.standard_normal((Q, D)))
        # Noise from a shared pool at a random offset (drawing 3 M normals a video dominated the generation).
        offset = int(rng.integers(0, len(self.noise) - T))
        feats = self.noise[offset : offset + T].copy()
        feats += (0.55 * self.common + 0.55 * scene)[:, None, :].astype(np.float32)
        feats += (0.45 * own)[None].astype(np.float32)
        for concept, first, end, strength in self.plants.get(video, []):
            feats[first:end, :PLANTED_TOKENS] += (strength * self.concepts[concept]).astype(np.float32)
        return feats

    def write(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        times = np.arange(T) / FPS
        for video in range(self.n_videos):
            VideoFeatures(self.tokens(video).astype(np.float16), times, T / FPS, FPS, MODEL, (364, 364),
                          video=None).save(folder / f"{self.name(video)}.safetensors")


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def run_search(frames: int, n_queries: int, n_exhaustive: int, workdir: Path, seed: int) -> dict:
    from tfvtg.index import Collection

    n_videos = max(frames // T, 4)
    synth = Synthetic(n_videos, n_queries, seed)
    feature_dir, index_dir = workdir / "features", workdir / "index"
    start = time.perf_counter()
    synth.write(feature_dir)
    generate_s = time.perf_counter() - start
    feature_bytes = sum(p.stat().st_size for p in feature_dir.iterdir())
    print(f"generated {n_videos} videos ({n_videos * T} frames, {feature_bytes / 2**30:.2f} GiB of feature "
          f"files) in {generate_s:.0f} s", file=sys.stderr)

    collection = Collection.open(index_dir)
    rss0 = _rss_mb()
    start = time.perf_counter()
    collection.add([feature_dir], progress=True)
    build_s = time.perf_counter() - start
    build_peak = _peak_rss_mb()
    info = collection.info()
    print(f"built {info['index']} index of {info['tokens']} tokens in {build_s:.0f} s, "
          f"{info['index_bytes'] / info['tokens']:.1f} B/token on disk, peak RSS {build_peak:.0f} MB",
          file=sys.stderr)

    grounder = Grounder(MODEL, progress=False, use_cache=False)
    grounder._encoder = PlantedEncoder(synth.queries)
    collection = Collection.open(index_dir)  # a fresh open, as a new process would
    rss_open = _rss_mb()
    texts = list(synth.queries)
    collection.search(texts[0], top_k=10, grounder=grounder)  # warm-up (index mapped, caches)
    fast: list[dict] = []
    for text in texts:
        begin, cpu = time.perf_counter(), time.process_time()
        hits = collection.search(text, top_k=10, grounder=grounder)
        total, cpu = time.perf_counter() - begin, time.process_time() - cpu
        fast.append({"hits": hits, "total": total, "cpu": cpu, **collection.last_timings})
    planted = [synth.truth[t][0] for t in texts]
    found = np.mean([v in {h.video for h in r["hits"]} for v, r in zip(planted, fast, strict=True)])
    print(f"{len(fast)} queries: total p50 {_pct([r['total'] for r in fast], 50):.0f} ms, p95 "
          f"{_pct([r['total'] for r in fast], 95):.0f} ms; planted recall@10 {found:.2f}", file=sys.stderr)
    rss_search = _rss_mb()
    slow: list[dict] = []
    for text in texts[:n_exhaustive]:
        begin, cpu = time.perf_counter(), time.process_time()
        hits = collection.search(text, top_k=10, grounder=grounder, exhaustive=True)
        slow.append({"hits": hits, "total": time.perf_counter() - begin, "cpu": time.process_time() - cpu})
        print(f"exhaustive {len(slow)}/{n_exhaustive}: {slow[-1]['total']:.1f} s", file=sys.stderr)

    recall = np.mean([v in {h.video for h in r["hits"]} for v, r in zip(planted, fast, strict=True)])
    planted_top1 = np.mean([r["hits"][0].video == v for v, r in zip(planted, fast, strict=True)])

    def key(hit: object) -> tuple:
        return (hit.video, round(hit.start, 6), round(hit.end, 6))

    agree = [key(f["hits"][0]) == key(s["hits"][0]) for f, s in zip(fast, slow, strict=False)]  # slow: fewer
    fast_mean = statistics.mean(r["total"] for r in fast[: len(slow)]) if slow else float("nan")
    slow_mean = statistics.mean(r["total"] for r in slow) if slow else float("nan")
    return {
        "frames": n_videos * T, "videos": n_videos, "tokens": info["tokens"], "index": info["index"],
        "feature_gib": feature_bytes / 2**30, "generate_s": generate_s, "build_s": build_s,
        "index_bytes_per_token": info["index_bytes"] / info["tokens"],
        "peak_rss_build_mb": build_peak, "rss_before_build_mb": rss0,
        "rss_after_open_mb": rss_open, "rss_after_queries_mb": rss_search,
        "queries": len(fast), "exhaustive_queries": len(slow),
        "coarse_p50_ms": _pct([r["coarse_s"] for r in fast], 50),
        "coarse_p95_ms": _pct([r["coarse_s"] for r in fast], 95),
        "exact_p50_ms": _pct([r["exact_s"] for r in fast], 50),
        "exact_p95_ms": _pct([r["exact_s"] for r in fast], 95),
        "total_p50_ms": _pct([r["total"] for r in fast], 50),
        "total_p95_ms": _pct([r["total"] for r in fast], 95),
        "cpu_p50_ms": _pct([r["cpu"] for r in fast], 50), "cpu_p95_ms": _pct([r["cpu"] for r in fast], 95),
        "exhaustive_cpu_mean_s": statistics.mean(r["cpu"] for r in slow) if slow else float("nan"),
        "exhaustive_mean_s": slow_mean, "speedup_vs_exhaustive": slow_mean / fast_mean,
        "planted_recall_at_10": float(recall), "planted_top1": float(planted_top1),
        "top1_equals_exhaustive": float(np.mean(agree)) if agree else float("nan"),
    }


def _frame_ranking(ids: np.ndarray, n: int) -> list[int]:
    """The first ``n`` distinct frame ids of a token hit list (the first hit of a frame is its score)."""
    _, first = np.unique(ids[ids >= 0], return_index=True)
    return [int(i) for i in ids[ids >= 0][np.sort(first)][:n]]


def run_stores(frames: int, n_queries: int, workdir: Path, seed: int, top_frames: int = 100) -> list[dict]:
    """FAISS IVF-PQ and LanceDB IVF-PQ against exact search on the same unit tokens."""
    import faiss
    import lancedb
    import pyarrow as pa

    n_videos = max(frames // T, 4)
    synth = Synthetic(n_videos, n_queries, seed)
    tokens = np.concatenate([_unit(synth.tokens(v).reshape(-1, D)).astype(np.float32)
                             for v in range(n_videos)])
    ids = np.repeat(np.arange(n_videos * T, dtype=np.int64), Q)
    queries = np.stack(list(synth.queries.values()))
    k = top_frames * Q
    nlist, parts = _nlist(len(tokens)), _pq_parts(D)
    exact = faiss.IndexIDMap2(faiss.IndexFlatIP(D))
    exact.add_with_ids(tokens, ids)
    truth = [set(_frame_ranking(row, top_frames)) for row in exact.search(queries, k)[1]]
    rows = []

    def measure(name: str, build_s: float, search) -> None:  # noqa: ANN001
        times, recalls = [], []
        search(queries[0])
        for q, want in zip(queries, truth, strict=True):
            begin = time.perf_counter()
            got = search(q)
            times.append(time.perf_counter() - begin)
            recalls.append(len(want & set(_frame_ranking(got, top_frames))) / top_frames)
        rows.append({"store": name, "build_s": build_s, "p50_ms": _pct(times, 50), "p95_ms": _pct(times, 95),
                     "recall_top100_frames": float(np.mean(recalls))})
        print(rows[-1], file=sys.stderr)

    begin = time.perf_counter()
    ivf = faiss.IndexIVFPQ(faiss.IndexFlatIP(D), D, nlist, parts, 8, faiss.METRIC_INNER_PRODUCT)
    ivf.train(tokens[np.random.default_rng(0).choice(len(tokens), 64 * max(nlist, 256), replace=False)])
    ivf.add_with_ids(tokens, ids)
    build = time.perf_counter() - begin
    for nprobe in (16, 32, 64):
        ivf.nprobe = nprobe
        measure(f"faiss IVF{nlist},PQ{parts} nprobe {nprobe}", build,
                lambda q: ivf.search(q[None], k)[1][0])

    db = lancedb.connect(str(workdir / "lancedb"))
    begin = time.perf_counter()
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(tokens.reshape(-1)), D)
    table = db.create_table("tokens", pa.table({"frame": ids, "vector": vectors}))
    # The deprecated keyword form: lancedb 0.40's sync create_index takes the column as its first argument
    # (named metric), so create_index(config=IvfPq(...), vector_column_name=...) looked for a column "l2".
    table.create_index(metric="dot", num_partitions=nlist, num_sub_vectors=parts, vector_column_name="vector")
    build = time.perf_counter() - begin

    def lance(q: np.ndarray, nprobes: int, refine: int | None) -> np.ndarray:
        query = table.search(q, vector_column_name="vector").distance_type("dot").nprobes(nprobes).limit(k)
        if refine:
            query = query.refine_factor(refine)
        return query.select(["frame"]).to_arrow()["frame"].to_numpy()

    for nprobes, refine in ((32, None), (64, None), (32, 2)):
        measure(f"lancedb IVF{nlist},PQ{parts} nprobes {nprobes}" + (f" refine {refine}" if refine else ""),
                build, lambda q, n=nprobes, r=refine: lance(q, n, r))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--exhaustive-queries", type=int, default=30)
    parser.add_argument("--stores", action="store_true", help="Compare FAISS and LanceDB IVF-PQ instead.")
    parser.add_argument("--workdir", type=Path, default=None, help="Scratch folder (default: a temp dir).")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench_search-", dir=args.workdir))
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.1f}; scratch {workdir}", file=sys.stderr)
    try:
        if args.stores:
            for row in run_stores(args.frames, args.queries, workdir, args.seed):
                print(json.dumps(row))
            return
        result = run_search(args.frames, args.queries, args.exhaustive_queries, workdir, args.seed)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result))
    r = result
    print(f"\n{r['frames']:,} frames ({r['videos']} videos, {r['tokens']:,} tokens, {r['index']}); load "
          f"{os.getloadavg()[0]:.1f}")
    print("| stage | p50 ms | p95 ms |\n|---|---|---|")
    for stage in ("coarse", "exact", "total"):
        print(f"| {stage} | {r[stage + '_p50_ms']:.0f} | {r[stage + '_p95_ms']:.0f} |")
    print(f"| total, CPU time (all threads) | {r['cpu_p50_ms']:.0f} | {r['cpu_p95_ms']:.0f} |")
    print(f"| exhaustive (baseline, mean; CPU time) | {r['exhaustive_mean_s'] * 1000:.0f} "
          f"({r['exhaustive_cpu_mean_s'] * 1000:.0f}) | |")
    print(f"\nspeed-up vs exhaustive {r['speedup_vs_exhaustive']:.0f}x; planted recall@10 "
          f"{r['planted_recall_at_10']:.2f}; top-1 = exhaustive {r['top1_equals_exhaustive']:.2f} of "
          f"{r['exhaustive_queries']}; build {r['build_s']:.0f} s, {r['index_bytes_per_token']:.1f} B/token "
          f"on disk, peak RSS {r['peak_rss_build_mb']:.0f} MB")


if __name__ == "__main__":
    main()
