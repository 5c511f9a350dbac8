"""Ground several queries in one video with the Python API: encode the video once, then query it many times.

    python examples/ground_video.py VIDEO "first query" "second query" [--model blip2-coco] [--plot out.png]
    python examples/ground_video.py VIDEO "a man opens a door and walks in" --llm gpt-4o-mini

The first run with ``--model blip2-coco`` downloads the 4.8 GB checkpoint (see README: "First run"); a local
directory saved with ``save_pretrained`` works too. Features are cached, so a second run skips the video.
"""

from __future__ import annotations

import argparse
import sys

from tfvtg import Grounder, TfvtgError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video")
    parser.add_argument("queries", nargs="+")
    parser.add_argument("--model", default="blip2-coco", help="encoder name or checkpoint directory")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--llm", default=None, help="LLM for the query decomposition (default: none)")
    parser.add_argument("--llm-base-url", default=None, help="OpenAI-compatible endpoint of a local server")
    parser.add_argument("--plot", default=None, help="save a figure of the first query's curves here")
    args = parser.parse_args(argv)

    try:
        grounder = Grounder(args.model, device=args.device, llm=args.llm, llm_base_url=args.llm_base_url)
        video = grounder.encode_video(args.video)  # decoded and encoded once (and cached on disk)
        print(f"{args.video}: {video.duration:.2f} s, {len(video)} frames at {video.fps:g} fps")
        for query in args.queries:
            result = grounder.ground_details(video, query, top_k=args.top_k)  # text side only from here on
            print(f"\n{query}  [{result.method}, relation {result.decomposition.relation}]")
            for rank, moment in enumerate(result.moments, start=1):
                print(f"  {rank}. {moment.start:6.2f} - {moment.end:6.2f} s   score {moment.score:.3f}")
        if args.plot:
            grounder.plot(video, args.queries[0], top_k=args.top_k).savefig(args.plot, dpi=120)
            print(f"\nwrote {args.plot}")
    except TfvtgError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
