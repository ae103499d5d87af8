"""Provider metadata (entry point ``apache_airflow_provider``). Airflow reads it while it loads
its own configuration, so this module must not import Airflow."""

from __future__ import annotations


def get_provider_info() -> dict[str, object]:
    """What ``airflow providers list`` shows for orchestrack, and where its plugin lives."""
    from orchestrack import __version__

    return {"package-name": "orchestrack", "name": "orchestrack",
            "description": "Every DAG run becomes one tracked ML run, failures labelled.",
            "versions": [__version__],
            "plugins": [{"name": "orchestrack", "plugin-class": "orchestrack.airflow.plugin.OrchestrackPlugin"}]}
