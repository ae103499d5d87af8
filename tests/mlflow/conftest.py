"""The MLflow store against real `mlflow server` processes (tests/servers.py): MLflow 3 on PostgreSQL and
MLflow 2 on SQLite (MLflow 3 on SQLite is what the adapter suites track into). Runs are read back with
MLflow's own ``MlflowClient``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from orchestrack.stores.mlflow_store import MlflowStore
from tests.servers import STORE_TEST_SERVERS, MlflowServer


def delete_orchestrack_experiments(url: str) -> None:
    """Leave the server with no active orchestrack experiment, so each test starts from an empty store."""
    from orchestrack.stores.mlflow_rest import MlflowRestClient

    client = MlflowRestClient(url)
    for experiment in list(client.pages("experiments/search", {
            "max_results": 1000, "filter": "tags.`orchestrack.experiment` = 'true'"}, "experiments")):
        client.call("POST", "experiments/delete", {"experiment_id": experiment["experiment_id"]})


@pytest.fixture(params=STORE_TEST_SERVERS)
def server(request: pytest.FixtureRequest, mlflow_servers: dict[str, MlflowServer]) -> MlflowServer:
    """Each MLflow server in turn."""
    return mlflow_servers[request.param]


@pytest.fixture
def store(server: MlflowServer) -> Iterator[MlflowStore]:
    """An empty MLflow store: no active orchestrack experiment, and claims of this test's own."""
    delete_orchestrack_experiments(server.url)
    unique = uuid.uuid4().hex[:8]
    store = MlflowStore(server.url, experiment=f"t{unique}-{{pipeline}}", claims=f".claims-{unique}")
    yield store
    delete_orchestrack_experiments(server.url)


@pytest.fixture
def mlflow_client(server: MlflowServer) -> Any:
    """MLflow's own client, to read back what orchestrack wrote."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=server.url)
