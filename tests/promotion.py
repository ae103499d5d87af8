"""What every orchestrator's gate test checks after the gate step: promotion follows the decision."""

from __future__ import annotations

import pytest

import orchestrack


def assert_promotion(record: orchestrack.RunRecord, outcome: str, artifact: str = "model.json") -> None:
    """A passed run is promoted and listed with its run; a failed or held one is refused, saying why."""
    if outcome != "passed":
        with pytest.raises(orchestrack.PromotionRefusedError, match=outcome):
            orchestrack.promote(record.key, "churn")
        return
    version = orchestrack.promote(record.key, "churn", alias="champion")
    listed = orchestrack.open_registry().versions("churn")
    assert [(v.version, v.run_id, v.aliases, v.artifact) for v in listed] == [
        (version.version, record.run_id, ["champion"], artifact)]
