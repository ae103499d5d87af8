"""The MLflow store passes the same contract as the embedded store, on every MLflow server."""

from __future__ import annotations

from tests.contract.store_contract import StoreContract


class TestMlflowStore(StoreContract):
    """``store`` comes from tests/mlflow/conftest.py, once per MLflow server."""
