"""The MLflow store passes the same contract as the embedded store, on every MLflow server."""

from __future__ import annotations

import pytest

from orchestrack.stores.mlflow_store import MlflowStore
from tests.contract.store_contract import StoreContract
from tests.servers import MlflowServer


class TestMlflowStore(StoreContract):
    """``store`` comes from tests/mlflow/conftest.py, once per MLflow server."""

    def test_many_attempts_in_one_write(self, store: MlflowStore, server: MlflowServer,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
        # An MLflow server writes about 20 child runs a second (two requests each on its own
        # SQLAlchemy transaction), so the contract's 1,000 attempts take about a minute: they run
        # against the PostgreSQL-backed server, and the MLflow 2 server takes the same test at a
        # tenth of the width with pages of 25, so that paging is what it proves.
        if server.name != "mlflow3-postgresql":
            store.page_size = 25
            monkeypatch.setattr("tests.contract.store_contract.WIDE_WRITE", 100)
        super().test_many_attempts_in_one_write(store)
