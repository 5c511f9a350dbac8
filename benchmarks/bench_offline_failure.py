"""How long a model that cannot be had takes to fail on a machine with no network, against the old path.

Each row runs `tfvtg.encoders.create_encoder("blip2-coco")` in a fresh Python process with an empty Hugging
Face cache and no proxy, and times the process to its one-line error:

* baseline: ``local_files_only=False``, the loader's own path (what every load did before `tfvtg.hub`): the
  Hub client retries its requests before giving up;
* ``HF_HUB_OFFLINE=1``: `tfvtg.hub.require_model` fails before torch is imported;
* unreachable Hub (``HF_ENDPOINT`` on a closed local port, the situation of a machine with no network): one
  TCP connection attempt decides it, then the same early failure.

Run: ``.venv/bin/python benchmarks/bench_offline_failure.py`` (about a minute; the baseline dominates).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

CODE = """
import sys
from tfvtg.encoders import create_encoder
from tfvtg.errors import ModelError
try:
    create_encoder("blip2-coco", cache_dir=sys.argv[1], local_files_only={local})
except ModelError as exc:
    print(exc)
"""


def run(env: dict[str, str], local: str, cache: str) -> tuple[float, str]:
    full = {k: v for k, v in os.environ.items() if "PROXY" not in k.upper() and k != "HF_HUB_OFFLINE"} | env
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CODE.format(local=local), cache], capture_output=True,
                          text=True, env=full, timeout=600, check=False)
    return time.perf_counter() - start, (proc.stdout.strip().splitlines() or ["(no error)"])[-1]


def main() -> None:
    with tempfile.TemporaryDirectory() as cache:
        rows = [
            ("baseline: the loader's own path (retries)", {}, "False"),
            ("HF_HUB_OFFLINE=1", {"HF_HUB_OFFLINE": "1"}, "None"),
            ("unreachable Hub, no variable set", {"HF_ENDPOINT": "http://127.0.0.1:9"}, "None"),
        ]
        results = [(name, *run(env, local, cache)) for name, env, local in rows]
    base = results[0][1]
    print("| case | seconds to the error | baseline / case |\n|---|---|---|")
    for name, seconds, _ in results:
        print(f"| {name} | {seconds:.2f} | {base / seconds:.1f}x |")
    for name, _, message in results:
        print(f"{name}: {message[:160]}")
    print(f"load average: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
