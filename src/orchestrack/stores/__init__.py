"""Stores, registered by URI scheme, all behind one protocol (:mod:`orchestrack.stores.base`).

``ORCHESTRACK_TRACKING_URI`` picks the run store (default: the embedded SQLite store);
``ORCHESTRACK_ARTIFACT_URI`` picks the artifact store (default: a local folder). Backends with
extra dependencies (MLflow, S3) register here and import their library only when opened.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from importlib.metadata import entry_points

from orchestrack.errors import InvalidInputError
from orchestrack.stores.base import ArtifactStore, RunQuery, Store

StoreFactory = Callable[[str, float], Store]
ArtifactStoreFactory = Callable[[str], ArtifactStore]

_stores: dict[str, StoreFactory] = {}
_artifact_stores: dict[str, ArtifactStoreFactory] = {}
_open: dict[tuple[str, str], object] = {}
_lock = threading.Lock()


def register_store(scheme: str, factory: StoreFactory) -> None:
    """Make ``scheme://...`` tracking URIs open with ``factory(uri, busy_timeout_s)``."""
    _stores[scheme] = factory


def register_artifact_store(scheme: str, factory: ArtifactStoreFactory) -> None:
    """Make ``scheme://...`` artifact URIs open with ``factory(uri)``."""
    _artifact_stores[scheme] = factory


def _scheme(uri: str) -> str:
    if uri == "databricks":  # MLflow's name for the workspace's own tracking server
        return "databricks"
    return uri.split("://", 1)[0].lower() if "://" in uri else ""


def _plugin(group: str, scheme: str) -> Callable[..., object] | None:
    """A factory another package registered under the entry point ``group`` for ``scheme``."""
    for entry_point in entry_points(group=group, name=scheme):
        factory: Callable[..., object] = entry_point.load()
        return factory
    return None


def open_store(uri: str, *, busy_timeout_s: float = 30.0) -> Store:
    """The store for ``uri`` (one instance per URI per process).

    Other packages add schemes through the ``orchestrack.stores`` entry point group
    (name: the scheme, value: a ``factory(uri, busy_timeout_s)``).
    """
    scheme = _scheme(uri)
    factory = _stores.get(scheme) or _plugin("orchestrack.stores", scheme)
    if factory is None:
        raise InvalidInputError(
            f"no store for tracking URI {uri!r} (ORCHESTRACK_TRACKING_URI or tracking_uri=); "
            f"known schemes: {', '.join(sorted(s + '://' for s in _stores if s))} or a plain .db path")
    with _lock:
        store = _open.get(("run", uri))
        if store is None:
            store = _open[("run", uri)] = factory(uri, busy_timeout_s)  # type: ignore[call-arg]
    return store  # type: ignore[return-value]


def open_artifact_store(uri: str) -> ArtifactStore:
    """The artifact store for ``uri`` (a folder path or ``scheme://...``; more schemes through the
    ``orchestrack.artifact_stores`` entry point group)."""
    scheme = _scheme(uri)
    factory = _artifact_stores.get(scheme) or _plugin("orchestrack.artifact_stores", scheme)
    if factory is None:
        raise InvalidInputError(
            f"no artifact store for {uri!r} (ORCHESTRACK_ARTIFACT_URI or artifact_uri=); "
            f"known: a folder path, {', '.join(sorted(s + '://' for s in _artifact_stores if s))}")
    with _lock:
        store = _open.get(("artifact", uri))
        if store is None:
            store = _open[("artifact", uri)] = factory(uri)  # type: ignore[call-arg]
    return store  # type: ignore[return-value]


def close_all() -> None:
    """Close every open store (tests and forked workers use this)."""
    with _lock:
        for store in _open.values():
            close = getattr(store, "close", None)
            if close is not None:
                close()
        _open.clear()


def _sqlite(uri: str, busy_timeout_s: float) -> Store:
    from orchestrack.stores.sqlite import SQLiteStore

    return SQLiteStore(uri if uri.startswith("sqlite:") else f"sqlite:///{uri}", busy_timeout_s=busy_timeout_s)


def _local(uri: str) -> ArtifactStore:
    from orchestrack.stores.local_artifacts import LocalArtifactStore

    return LocalArtifactStore(uri)


def _s3(uri: str) -> ArtifactStore:
    from orchestrack.settings import load_settings
    from orchestrack.stores.s3_artifacts import S3ArtifactStore

    s3 = load_settings().s3
    return S3ArtifactStore(uri, endpoint_url=s3.endpoint_url, region=s3.region, profile=s3.profile)


def _mlflow(uri: str, busy_timeout_s: float) -> Store:
    from orchestrack.settings import load_settings
    from orchestrack.stores.mlflow_store import MlflowStore

    mlflow = load_settings().mlflow
    return MlflowStore(uri, experiment=mlflow.experiment, claims=mlflow.claims, ui_url=mlflow.ui_url,
                       join_injected_run=mlflow.join_injected_run, timeout_s=mlflow.timeout_s)


register_store("sqlite", _sqlite)
for _scheme_name in ("http", "https", "databricks"):
    register_store(_scheme_name, _mlflow)
register_store("", _sqlite)
register_artifact_store("", _local)
register_artifact_store("file", _local)
register_artifact_store("s3", _s3)

__all__ = ["ArtifactStore", "RunQuery", "Store", "close_all", "open_artifact_store", "open_store",
           "register_artifact_store", "register_store"]
