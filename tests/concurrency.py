"""32 worker processes that attach to one run at the same moment and each log 1,000 metric points, a
param and an artifact (tests/integration/test_concurrent_processes.py on the embedded store,
tests/mlflow/test_concurrency.py on MLflow servers)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

WORKERS, POINTS = 32, 1000
KEY = "shared/32-workers"

WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import orchestrack

    index, start_at = int(sys.argv[1]), float(sys.argv[2])
    Path(f"artifact-{index}.txt").write_text(f"output of worker {index}")
    while time.time() < start_at:  # every worker hits the store at once
        time.sleep(0.001)
    run = orchestrack.start_run(key=sys.argv[3], owner="ml", purpose="tuning", pipeline="shared")
    with run.task(f"worker-{index}", attempt=1):
        orchestrack.log_params({f"param_{index}": index})
        for step in range(int(sys.argv[4])):
            orchestrack.log_metrics({f"loss_{index}": index * 100_000 + step}, step=step)
        orchestrack.log_artifact(f"artifact-{index}.txt")
    print(run.run_id)
""")


#: What a fail-open worker may log without anything going wrong: a store too busy to answer for a moment,
#: whose writes wait in the journal and are delivered once it answers again.
PASSING_TROUBLE = re.compile(r"orchestrack cannot reach .* writes wait in .* are delivered when it is back"
                             r"|orchestrack: .* is back after")


def run_workers(folder: Path, env: dict[str, str] | None = None, *, quiet: bool = False) -> set[str]:
    """Start :data:`WORKERS` processes together; return the run ids they printed (all must succeed, and
    with ``quiet`` none may log anything but :data:`PASSING_TROUBLE`: in fail-open mode a fault is only
    logged)."""
    script = folder / "worker.py"
    script.write_text(WORKER)
    start_at = time.time() + 8.0  # leaves time for every interpreter to start on two cores
    workers = [subprocess.Popen([sys.executable, str(script), str(i), str(start_at), KEY, str(POINTS)], cwd=folder,
                                env=env or dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i in range(WORKERS)]
    outputs = [w.communicate(timeout=600) for w in workers]
    failures = [(i, err[-2000:]) for i, (w, (_, err)) in enumerate(zip(workers, outputs, strict=True)) if w.returncode]
    assert not failures, failures
    if quiet:
        noisy = [(i, line) for i, (_, err) in enumerate(outputs) for line in err.splitlines()
                 if line.strip() and not PASSING_TROUBLE.search(line)]
        assert not noisy, f"{len(noisy)} unexpected log lines; the first: {[line[:300] for _, line in noisy[:3]]}"
    return {out.strip() for out, _ in outputs}


def expected_points(index: int) -> list[tuple[int, float]]:
    """Every (step, value) worker ``index`` logs (as its own metric ``loss_<index>``), sorted."""
    return [(step, float(index * 100_000 + step)) for step in range(POINTS)]
