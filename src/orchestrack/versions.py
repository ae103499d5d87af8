"""Release numbers of installed packages, for the adapters' named compatibility checks.

Each adapter keeps its version differences in small functions next to the facts they concern
(``prefect_crashes_runs_on_sigterm``, ``airflow_fires_task_skipped_hook`` ...); this module only
turns a version string into something those functions can compare.
"""

from __future__ import annotations

import functools
import re
from importlib import metadata


def release(version: str) -> tuple[int, int, int]:
    """``"3.8.4"`` -> ``(3, 8, 4)``; pre-release and local parts are ignored (``"3.9.1.dev2"`` -> ``(3, 9, 1)``)."""
    match = re.match(r"\s*v?(\d+)(?:\.(\d+))?(?:\.(\d+))?", version)
    if match is None:
        raise ValueError(f"not a release number: {version!r}")
    major, minor, patch = (int(part or 0) for part in match.groups())
    return major, minor, patch


@functools.cache
def installed_release(distribution: str) -> tuple[int, int, int] | None:
    """The installed release of a distribution (``"prefect"``, ``"apache-airflow-core"``), ``None`` if absent;
    read once per process (every tracked flow run asks)."""
    try:
        return release(metadata.version(distribution))
    except (metadata.PackageNotFoundError, ValueError):
        return None
