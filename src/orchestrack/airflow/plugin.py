"""The Airflow plugin (entry point ``airflow.plugins``) that registers orchestrack's listener."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from orchestrack.airflow.listener import OrchestrackListener
from orchestrack.airflow.operator import OrchestrackRunLink


class OrchestrackPlugin(AirflowPlugin):
    """Registers :class:`OrchestrackListener` in every Airflow process that loads plugins."""

    name = "orchestrack"
    listeners = [OrchestrackListener()]
    operator_extra_links = [OrchestrackRunLink()]

