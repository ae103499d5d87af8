"""How long failure diagnosis takes: a typical traceback (text and live exception), every corpus
entry, and a 10 MB log. The goal: under 1 ms for a typical traceback, bounded on huge logs.

    python benchmarks/classify.py        (or: scripts/test -s benchmarks-core)
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from orchestrack import classify_failure

TRACEBACK = """Traceback (most recent call last):
  File "/opt/pipeline/train.py", line 41, in <module>
    main()
  File "/opt/pipeline/train.py", line 33, in main
    model.fit(features, labels)
  File "/opt/pipeline/model.py", line 12, in fit
    raise ValueError(f"learning rate must be positive, got {lr}")
ValueError: learning rate must be positive, got -0.1
"""


def timed(name: str, call: Callable[[], object], repeat: int) -> None:
    call()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    p95 = samples[int(len(samples) * 0.95) - 1]
    print(f"{name:<34} median {statistics.median(samples):8.3f} ms   p95 {p95:8.3f} ms")


def live_error() -> None:
    try:
        json.loads("{not json")
    except ValueError as error:
        classify_failure(error, task="parse")


def main() -> None:
    timed("typical traceback (text)", lambda: classify_failure(text=TRACEBACK, task="train"), 2000)
    timed("typical exception (live, chained)", live_error, 2000)
    corpus = [json.loads(line) for path in sorted(Path("tests/corpus").glob("*.jsonl"))
              for line in path.read_text().splitlines() if line.strip()]
    start = time.perf_counter()
    for entry in corpus:
        classify_failure(text=entry["text"], exit_code=entry.get("exit_code"))
    print(f"{'corpus, mean per entry':<34} {(time.perf_counter() - start) * 1000 / len(corpus):8.3f} ms   "
          f"({len(corpus)} entries)")
    huge = "2026-11-28 10:00:00 INFO step 1 loss=0.1234 lr=0.0003 throughput=1234 samples/s\n" * 130_000
    timed("10 MB log", lambda: classify_failure(text=huge + "CUDA out of memory\n"), 5)


if __name__ == "__main__":
    main()
