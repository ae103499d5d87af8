"""What every orchestrator's gate test checks after a pipeline with a gate step ran: the run ended as
the gate decided, and promotion follows the decision."""

from __future__ import annotations

import pytest

import orchestrack
from orchestrack import FailureReason, RunStatus, TaskStatus


def assert_gated_run(record: orchestrack.RunRecord, outcome: str, gate_task: str, artifact: str = "model.json"
                     ) -> None:
    """``record`` (auc 0.82 passed, 0.6 failed, 0.999 held against min 0.75 and ceiling 0.99) ended
    as its gate step (the task whose name starts with ``gate_task``) decided; a passed run is
    promoted and listed with its run, a failed or held one is refused, saying why."""
    assert record.gate is not None and record.gate.outcome.value == outcome, record.gate
    task = next(t for t in record.tasks if t.name.startswith(gate_task))
    if outcome == "failed":
        assert record.status is RunStatus.FAILED and record.failure is not None
        assert record.failure.reason is FailureReason.METRIC_REGRESSION
        assert record.failure.task is not None and record.failure.task.startswith(gate_task)
        assert "auc = 0.6 is below its minimum 0.75" in record.failure.summary
        assert task.status is TaskStatus.FAILED
    else:
        assert record.status is RunStatus.SUCCEEDED and task.status is TaskStatus.SUCCEEDED
    if outcome == "held":
        assert "auc = 0.999 is beyond its ceiling 0.99" in record.gate.summary
    if outcome != "passed":
        with pytest.raises(orchestrack.PromotionRefusedError, match=outcome):
            orchestrack.promote(record.key, "churn")
        return
    version = orchestrack.promote(record.key, "churn", alias="champion")
    listed = orchestrack.open_registry().versions("churn")
    assert [(v.version, v.run_id, v.aliases, v.artifact) for v in listed] == [
        (version.version, record.run_id, ["champion"], artifact)]
