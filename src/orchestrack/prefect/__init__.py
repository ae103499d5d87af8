"""Prefect 3: put :func:`tracked_flow` on a flow and every flow run becomes one tracked run.

Importing this package imports nothing of Prefect's until ``tracked_flow`` is used.

Example::

    from orchestrack.prefect import tracked_flow

    @tracked_flow(purpose="baseline", log_prints=True)   # accepts everything prefect.flow accepts
    def train(lr: float = 3e-4): ...
"""

from __future__ import annotations

from typing import Any

from orchestrack.errors import MissingExtraError

__all__ = ["quality_gate", "reap_lost_runs", "tracked_flow"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        try:
            from orchestrack.prefect import flow
        except ModuleNotFoundError as err:
            if err.name and err.name.split(".")[0] == "prefect":
                raise MissingExtraError(
                    "orchestrack.prefect needs Prefect 3: pip install 'orchestrack[prefect]'") from err
            raise
        return getattr(flow, name)
    raise AttributeError(f"module 'orchestrack.prefect' has no attribute {name!r}")
