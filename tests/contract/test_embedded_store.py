"""The embedded store (SQLite + local artifact folder) passes the store contracts."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrack.stores.local_artifacts import LocalArtifactStore
from orchestrack.stores.sqlite import SQLiteStore
from tests.contract.store_contract import ArtifactStoreContract, StoreContract


class TestSQLiteStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> SQLiteStore:
        store = SQLiteStore(f"sqlite:///{tmp_path / 'contract.db'}")
        yield store
        store.close()


class TestLocalArtifactStore(ArtifactStoreContract):
    @pytest.fixture
    def artifact_store(self, tmp_path: Path) -> LocalArtifactStore:
        return LocalArtifactStore(str(tmp_path / "artifacts"))
