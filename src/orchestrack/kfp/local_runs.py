"""Pipelines run by kfp.local on kfp before 2.17: the run is closed by the calling process.

kfp.local before 2.17 (2.10 through 2.16) cannot run a ``dsl.ExitHandler`` (it raises
``NotImplementedError`` when it reaches the exit task) and stops at the first failed task, so a
task with ``.ignore_upstream_failure()`` never runs after a failure either. Nothing inside such a
local pipeline run can close its run. kfp.local runs the pipeline inside the caller's own
``my_pipeline(...)`` call, though, so on those versions a tracked pipeline called locally runs its
body without a closing task, and the call itself closes the run when kfp.local returns or raises.
Compiled pipelines (every cluster, every kfp version) are unchanged.

What is lost there: the exit task's Markdown summary (there is no exit task), and, with
``kfp.local.DockerRunner``, the run's closing (containers do not see the caller's files).
"""

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kfp.dsl import graph_component, pipeline_context

from orchestrack.guard import fail_open
from orchestrack.kfp.executor import RUN_KEY_NOTE, final_status_end, log_pipeline_configs
from orchestrack.versions import release


def local_runner_runs_exit_handlers(version: str) -> bool:
    """Whether this kfp's local runner runs exit handlers and ``ignore_upstream_failure`` tasks (2.17+)."""
    return release(version) >= (2, 17, 0)


class TrackedPipeline(graph_component.GraphComponent):
    """A tracked pipeline; called under kfp.local before 2.17, it runs ``closed_by_caller`` (the
    body without a closing task) and closes the run itself. Everything else is kfp's."""

    closed_by_caller: "graph_component.GraphComponent | None" = None
    #: What the run is opened with (owner, purpose, the pipeline's name and version) and the packed
    #: configs the closing task would record: kfp.local may stop at a failed task before any task opened it.
    opening: dict[str, Any] = {}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.closed_by_caller is None or not _runs_locally_now():
            return super().__call__(*args, **kwargs)
        return run_and_close(lambda: self.closed_by_caller(*args, **kwargs),  # type: ignore[misc]
                             self.opening)


def _runs_locally_now() -> bool:
    """Called outside a pipeline definition while ``kfp.local.init`` is in effect."""
    from kfp.local import config

    return (pipeline_context.Pipeline.get_default_pipeline() is None
            and config.LocalExecutionConfig.instance is not None)


def run_and_close(call: Callable[[], Any], opening: dict[str, Any]) -> Any:
    """Run a local pipeline call, then close the run its tasks noted: as its tasks say when
    kfp.local returns, as failed (with kfp's message) when it raises. ``opening``: ``start_run``
    arguments (and the packed configs the closing task would have recorded)."""
    with tempfile.TemporaryDirectory(prefix="orchestrack-kfp-") as folder:
        note = Path(folder) / "run-key"
        previous = os.environ.get(RUN_KEY_NOTE)
        os.environ[RUN_KEY_NOTE] = str(note)
        try:
            result = call()
        except BaseException as err:
            _close_noted(note, err, opening)
            raise
        finally:
            if previous is None:
                os.environ.pop(RUN_KEY_NOTE, None)
            else:
                os.environ[RUN_KEY_NOTE] = previous
        _close_noted(note, None, opening)
        return result


@fail_open("kfp.local run")
def _close_noted(note: Path, error: BaseException | None, opening: dict[str, Any]) -> None:
    if not note.is_file():
        return  # no tracked task ran (kfp refused the pipeline first): there is no run to close
    import orchestrack
    from orchestrack.record import OrchestratorInfo, OrchestratorKind

    key = note.read_text().strip()
    run = orchestrack.start_run(key=key, owner=opening.get("owner"), purpose=opening.get("purpose"),
                                orchestrator=OrchestratorInfo(kind=OrchestratorKind.KFP, run_id=key.split("/", 1)[-1],
                                                              pipeline=opening.get("pipeline"),
                                                              pipeline_version=opening.get("pipeline_version")))
    log_pipeline_configs(run, opening.get("configs") or "")
    if error is None:
        run.finish()
    else:
        run.conclude(final_status_end("FAILED", re.sub(r"\x1b\[[0-9;]*m", "", str(error))))  # kfp colours it
