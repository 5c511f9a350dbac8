"""Evaluate TFVTG on Charades-STA from feature files, with the LLM's decompositions (the full method).

    # features made by the official code (<vid>.npy) and its llm_outputs.json, official decisions:
    python examples/evaluate_charades.py --features DIR --feature-format tfvtg-npy --profile reference \\
        --annotations ../shared/data/charades-sta/charades_test.json \\
        --llm-outputs ../shared/data/charades-sta/llm_outputs.json --out preds.jsonl

    # features written by `tfvtg extract videos/ --out DIR`, the default profile:
    python examples/evaluate_charades.py --features DIR --annotations charades_test.json \\
        --llm-outputs llm_outputs.json

Without ``--llm-outputs`` the VLM-only flow runs (the sentence alone). This is `tfvtg evaluate` as a script
to adapt (other splits, other metrics); it adds the metrics per relation of the decomposition.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

from tfvtg import TfvtgError
from tfvtg.datasets import write_jsonl
from tfvtg.evaluate import evaluate
from tfvtg.metrics import format_metrics, grounding_metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotations", required=True, help="charades_test.json (or a TFVTG-format split)")
    parser.add_argument("--features", required=True, help="directory of <vid>.safetensors or <vid>.npy files")
    parser.add_argument("--feature-format", default="tfvtg", choices=["tfvtg", "tfvtg-npy"])
    parser.add_argument("--llm-outputs", default=None, help="TFVTG llm_outputs.json (the full method)")
    parser.add_argument("--profile", default="default", choices=["default", "reference"])
    parser.add_argument("--model", default="blip2-coco", help="text encoder (the one that made the features)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--limit", type=int, default=None, help="only the first N queries")
    parser.add_argument("--out", default=None, help="write the predictions here (JSON lines)")
    args = parser.parse_args(argv)

    try:
        report = evaluate("charades-sta", args.annotations, args.features, feature_format=args.feature_format,
                          llm_outputs=args.llm_outputs, profile=args.profile, model=args.model,
                          device=args.device, limit=args.limit)
        if args.out:
            write_jsonl(args.out, report.predictions)
    except TfvtgError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{report.n_queries} queries of {report.n_videos} videos, {report.method}, profile {args.profile}, "
          f"{report.seconds:.1f} s")
    print(format_metrics(report.metrics))

    if report.method == "full":
        # The metrics per relation of the LLM's decomposition (single-query, sequentially, simultaneously).
        from tfvtg.datasets import load_dataset

        truth = {q.qid: q.window for q in load_dataset("charades-sta", args.annotations)}
        groups: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
        for pred in report.predictions:
            top = pred["pred_relevant_windows"][0][:2] if pred["pred_relevant_windows"] else None
            groups[pred["relationship"]][0].append(top)
            groups[pred["relationship"]][1].append(truth[pred["qid"]])
        for relation, (preds, gts) in sorted(groups.items()):
            print(f"\n{relation}:")
            print(format_metrics(grounding_metrics(preds, gts)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
