"""Airflow 3: add :class:`TrackRunOperator` to a DAG and every DAG run becomes one tracked run.

The listener plugin (entry point ``airflow.plugins``) records every task attempt and closes the
run when the DAG run ends, in whatever process Airflow fires the hooks. Importing this package
imports nothing of Airflow's until the operator is used, so DAG parsing stays cheap.

Example::

    from orchestrack.airflow import TrackRunOperator
    track = TrackRunOperator(task_id="orchestrack", purpose="tuning", datasets=["s3://bucket/train/"])
    track >> first_task
"""

from __future__ import annotations

from typing import Any

from orchestrack.errors import MissingExtraError

__all__ = ["QualityGateOperator", "TrackRunOperator"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        try:
            from orchestrack.airflow import operator
        except ModuleNotFoundError as err:
            if err.name and err.name.split(".")[0] == "airflow":
                raise MissingExtraError(
                    "orchestrack.airflow needs Apache Airflow 3: pip install 'orchestrack[airflow]'") from err
            raise
        return getattr(operator, name)
    raise AttributeError(f"module 'orchestrack.airflow' has no attribute {name!r}")
