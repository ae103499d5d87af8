"""The model registry: named models whose numbered versions are artifacts of runs that passed their gate.

:func:`promote` picks a run's model artifact, refuses a run its quality gate did not pass (unless
forced), and registers the artifact as the next version of a named model, in the registry that
belongs to the run store: tables in the embedded store's own SQLite file, or the MLflow Model
Registry of the MLflow tracking server. An alias (``champion``) names one version and moves when set
again. :func:`which` answers the other way round: which runs (and model versions) produced this file.

Example::

    version = orchestrack.promote("nightly-train/2026-11-28", "churn", alias="champion")
    open_registry().alias("churn", "champion").run_key
"""

from __future__ import annotations

import logging
import os
import re
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from orchestrack import inputs
from orchestrack.errors import InvalidInputError, ModelNotFoundError, PromotionRefusedError
from orchestrack.evidence import redact
from orchestrack.record import Artifact, GateOutcome, RunRecord, RunStatus, utcnow
from orchestrack.stores import mlflow_record as layout

if TYPE_CHECKING:
    from orchestrack.stores.base import Store
    from orchestrack.stores.mlflow_store import MlflowStore
    from orchestrack.stores.sqlite import SQLiteStore

log = logging.getLogger(__name__)

#: The kind of artifact :func:`promote` picks when no artifact is named.
MODEL_KIND = "model"
# MLflow's rules for aliases and model names, kept by every registry so a model moves between them.
_ALIAS = re.compile(r"^[\w\-]+$")
_VERSION_ALIAS = re.compile(r"^[vV]\d+$")


class ModelVersion(BaseModel):
    """One version of a registered model: which run's artifact it is, and what its gate said.

    Example::

        version = orchestrack.promote("nightly/2026-11-28", "churn")
        version.version, version.sha256, version.gate
    """

    model_config = ConfigDict(extra="ignore", defer_build=True)

    name: str
    version: int = Field(ge=1, description="1, 2, 3 ... per model, in the order versions were registered.")
    run_id: str
    run_key: str
    run_name: str
    artifact: str = Field(description="The name of the run artifact this version is.")
    uri: str
    sha256: str
    size_bytes: int | None = None
    gate: GateOutcome | None = Field(default=None, description="The run's gate outcome when it was promoted.")
    gate_summary: str | None = None
    code_commit: str | None = None
    data_versions: dict[str, str | None] = Field(default_factory=dict)
    aliases: list[str] = Field(default_factory=list)
    forced: bool = Field(default=False, description="Promoted with force past a refusal (no, a failed or a held gate).")
    note: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    registry_url: str | None = Field(default=None, description="The version's page in the MLflow UI, when known.")


@runtime_checkable
class ModelRegistry(Protocol):
    """Where model versions live; :func:`open_registry` gives the one of a tracking URI."""

    def register(self, record: RunRecord, artifact: Artifact, name: str, *, forced: bool = False,
                 note: str | None = None) -> ModelVersion:
        """Make ``artifact`` of ``record`` the next version of model ``name`` (created when new)."""

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``alias`` of model ``name`` at ``version`` (moving it from another version)."""

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of model ``name``, newest first, with their aliases; ``[]`` for an unknown model."""

    def alias(self, name: str, alias: str) -> ModelVersion | None:
        """The version ``alias`` points at, or ``None``."""

    def models(self) -> list[str]:
        """The names of the registered models, sorted."""

    def find_versions(self, sha256: str) -> list[ModelVersion]:
        """Every version, of any model, whose artifact has this sha256."""


# -- checks -----------------------------------------------------------------------------------


def check_model_name(name: object, where: str) -> str:
    """A model name every registry accepts (MLflow refuses ``/`` and ``:`` in one)."""
    checked = inputs.check_name(name, "model name", where)
    if "/" in checked or ":" in checked:
        raise InvalidInputError(f"model name {checked!r} ({where}) contains '/' or ':', which MLflow's registry "
                                "refuses; use letters, digits, '-', '_' or '.'")
    return checked


def check_alias(alias: object, where: str) -> str:
    """An alias every registry accepts: letters, digits, ``_`` and ``-``; not ``latest`` nor ``v<N>``."""
    checked = inputs.check_name(alias, "alias", where, limit=255)
    if not _ALIAS.match(checked):
        raise InvalidInputError(f"alias {checked!r} ({where}) may only hold letters, digits, '_' and '-', "
                                "e.g. champion or challenger")
    if checked.lower() == "latest" or _VERSION_ALIAS.match(checked):
        raise InvalidInputError(f"alias {checked!r} ({where}) is reserved ('latest' and v<number> name versions "
                                "already); choose another, e.g. champion")
    return checked


def _draft(record: RunRecord, artifact: Artifact, name: str, forced: bool, note: str | None) -> ModelVersion:
    """What a registry stores of a new version; the registry fills in ``version``."""
    gate = record.gate
    return ModelVersion(
        name=name, version=1, run_id=record.run_id, run_key=record.key, run_name=record.name,
        artifact=artifact.name, uri=artifact.uri, sha256=artifact.sha256, size_bytes=artifact.size_bytes,
        gate=gate.outcome if gate else None, gate_summary=gate.summary if gate else None,
        code_commit=record.code.commit, data_versions={d.name: d.version for d in record.data},
        forced=forced, note=redact(note) if note else note)  # the record is masked; a note is new text


# -- the embedded registry ----------------------------------------------------------------------

_EMBEDDED_SCHEMA = """
CREATE TABLE IF NOT EXISTS registered_models (name TEXT PRIMARY KEY, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS model_versions (name TEXT NOT NULL, version INTEGER NOT NULL, run_id TEXT NOT NULL,
    sha256 TEXT NOT NULL, created_at TEXT NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (name, version));
CREATE INDEX IF NOT EXISTS model_versions_sha256 ON model_versions (sha256);
CREATE TABLE IF NOT EXISTS model_aliases (name TEXT NOT NULL, alias TEXT NOT NULL, version INTEGER NOT NULL,
    set_at TEXT NOT NULL, PRIMARY KEY (name, alias));
"""


class EmbeddedRegistry:
    """Model versions in three tables of the embedded store's SQLite file, made on first use.

    A version number is the model's highest plus one, taken inside the ``BEGIN IMMEDIATE``
    transaction that inserts it, so processes promoting at once get distinct, consecutive numbers.

    Example::

        registry = EmbeddedRegistry(SQLiteStore("sqlite:////tmp/orchestrack.db"))
    """

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self._ready = False

    def _ensure_tables(self) -> None:
        if self._ready:
            return
        present = {name for (name,) in self.store.query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN "
            "('registered_models', 'model_versions', 'model_aliases')")}
        if len(present) < 3:
            with self.store.transaction("create the model registry tables in") as connection:
                for statement in filter(str.strip, _EMBEDDED_SCHEMA.split(";")):
                    connection.execute(statement)
        self._ready = True

    def register(self, record: RunRecord, artifact: Artifact, name: str, *, forced: bool = False,
                 note: str | None = None) -> ModelVersion:
        """Insert the next version of ``name``."""
        self._ensure_tables()
        draft = _draft(record, artifact, name, forced, note)
        with self.store.transaction("register a model version in") as connection:
            connection.execute("INSERT INTO registered_models (name, created_at) VALUES (?, ?) "
                               "ON CONFLICT (name) DO NOTHING", (name, draft.created_at.isoformat()))
            (number,) = connection.execute("SELECT coalesce(max(version), 0) + 1 FROM model_versions WHERE name = ?",
                                           (name,)).fetchone()
            version = draft.model_copy(update={"version": int(number)})
            connection.execute(
                "INSERT INTO model_versions (name, version, run_id, sha256, created_at, doc) VALUES (?,?,?,?,?,?)",
                (name, version.version, record.run_id, artifact.sha256, version.created_at.isoformat(),
                 version.model_dump_json(exclude={"aliases", "registry_url"})))
        return version

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``alias`` at ``version``."""
        self._ensure_tables()
        with self.store.transaction("set a model alias in") as connection:
            found = connection.execute("SELECT 1 FROM model_versions WHERE name = ? AND version = ?",
                                       (name, version)).fetchone()
            if found is None:
                raise ModelNotFoundError(f"model {name!r} has no version {version} in {self.store.uri}; "
                                         f"list its versions with `orchestrack models {name}`")
            connection.execute(
                "INSERT INTO model_aliases (name, alias, version, set_at) VALUES (?,?,?,?) "
                "ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version, set_at = excluded.set_at",
                (name, alias, version, utcnow().isoformat()))

    def _aliases(self, name: str) -> dict[int, list[str]]:
        by_version: dict[int, list[str]] = {}
        for alias, version in self.store.query("SELECT alias, version FROM model_aliases WHERE name = ? ORDER BY alias",
                                               (name,)):
            by_version.setdefault(int(version), []).append(str(alias))
        return by_version

    def _read(self, rows: list[tuple[Any, ...]]) -> list[ModelVersion]:
        aliases: dict[str, dict[int, list[str]]] = {}
        versions = []
        for (doc,) in rows:
            version = ModelVersion.model_validate_json(doc)
            if version.name not in aliases:
                aliases[version.name] = self._aliases(version.name)
            versions.append(version.model_copy(update={"aliases": aliases[version.name].get(version.version, [])}))
        return versions

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, newest first."""
        self._ensure_tables()
        return self._read(self.store.query("SELECT doc FROM model_versions WHERE name = ? ORDER BY version DESC",
                                           (name,)))

    def alias(self, name: str, alias: str) -> ModelVersion | None:
        """The version ``alias`` points at, or ``None``."""
        self._ensure_tables()
        found = self._read(self.store.query(
            "SELECT v.doc FROM model_aliases a JOIN model_versions v ON v.name = a.name AND v.version = a.version "
            "WHERE a.name = ? AND a.alias = ?", (name, alias)))
        return found[0] if found else None

    def models(self) -> list[str]:
        """The registered model names."""
        self._ensure_tables()
        return [str(name) for (name,) in self.store.query("SELECT name FROM registered_models ORDER BY name")]

    def find_versions(self, sha256: str) -> list[ModelVersion]:
        """Every version whose artifact has this sha256."""
        self._ensure_tables()
        return self._read(self.store.query(
            "SELECT doc FROM model_versions WHERE sha256 = ? ORDER BY name, version DESC", (sha256,)))


# -- the MLflow Model Registry ----------------------------------------------------------------

#: On registered models orchestrack promoted into, so ``models()`` lists them and no other team's.
MODEL_TAG = layout.PREFIX + "model"
#: The longest note a version keeps (MLflow's tag and description limit, the same in the embedded registry).
NOTE_LIMIT = 5000


def _local_uri(uri: str) -> bool:
    return uri.startswith("file:") or "://" not in uri


class MlflowRegistry:
    """Model versions in the MLflow Model Registry of the tracking server, over its REST API.

    A version's ``run_id`` is the run's MLflow run id (so MLflow's UI links the two), its ``source``
    the artifact's URI; artifacts in a local folder, which an MLflow server refuses as a source, get
    ``runs:/<MLflow run id>/<artifact name>`` and keep their real URI in tag ``orchestrack.uri``. Tags
    ``orchestrack.*`` carry the orchestrack run, the sha256, the gate outcome, the commit and the data
    versions; the note is the version's description.

    Example::

        registry = MlflowRegistry(MlflowStore("http://127.0.0.1:5000"))
    """

    def __init__(self, store: MlflowStore) -> None:
        self.store = store
        self.client = store.client
        #: Versions per ``model-versions/search`` page (every page is read).
        self.page_size = 1000

    def _url(self, name: str, version: int) -> str:
        return f"{self.store.ui_url}/#/models/{quote(name, safe='')}/versions/{version}"

    def _ensure_model(self, name: str) -> None:
        from orchestrack.stores.mlflow_rest import MlflowApiError

        try:
            self.client.call("POST", "registered-models/create",
                             {"name": name, "tags": [{"key": MODEL_TAG, "value": "true"}]})
        except MlflowApiError as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            # Made by another process just now, or by hand before: mark it as one of ours.
            self.client.call("POST", "registered-models/set-tag", {"name": name, "key": MODEL_TAG, "value": "true"})

    def register(self, record: RunRecord, artifact: Artifact, name: str, *, forced: bool = False,
                 note: str | None = None) -> ModelVersion:
        """Create the next MLflow model version of ``name`` from ``artifact``."""
        mlflow_run_id, _ = self.store.mlflow_ids(record.run_id)
        draft = _draft(record, artifact, name, forced, note)
        self._ensure_model(name)
        source = f"runs:/{mlflow_run_id}/{artifact.name}" if _local_uri(artifact.uri) else artifact.uri
        ours = {"run_name": record.name, "artifact": artifact.name, "uri": artifact.uri, "sha256": artifact.sha256,
                "size_bytes": str(artifact.size_bytes), "gate_summary": draft.gate_summary or "",
                "commit": draft.code_commit or "", "forced": "true" if forced else "false"}
        tags = {layout.RUN_ID_TAG: record.run_id, layout.KEY_TAG: record.key,
                layout.GATE_TAG: draft.gate.value if draft.gate else "",
                **{layout.PREFIX + key: value for key, value in ours.items()},
                **layout.document_tags("data_versions", draft.data_versions)}
        created = self.client.call("POST", "model-versions/create", {
            "name": name, "source": source, "run_id": mlflow_run_id, "description": (note or "")[:NOTE_LIMIT],
            "tags": [{"key": k, "value": v[:NOTE_LIMIT]} for k, v in tags.items()]})["model_version"]
        return self._version(created, [])

    def _version(self, found: dict[str, Any], aliases: list[str]) -> ModelVersion:
        tags = {t["key"]: t.get("value", "") for t in found.get("tags", [])}

        def tag(name: str) -> str | None:
            return tags.get(layout.PREFIX + name) or None

        gate, size = tags.get(layout.GATE_TAG), tag("size_bytes")
        return ModelVersion(
            name=found["name"], version=int(found["version"]), run_id=tags.get(layout.RUN_ID_TAG, ""),
            run_key=tags.get(layout.KEY_TAG, ""), run_name=tag("run_name") or "", artifact=tag("artifact") or "",
            uri=tag("uri") or found.get("source", ""), sha256=tag("sha256") or "",
            size_bytes=int(size) if size and size.isdigit() else None,
            gate=GateOutcome(gate) if gate else None, gate_summary=tag("gate_summary"), code_commit=tag("commit"),
            data_versions=layout.read_document(tags, "data_versions", {}), aliases=sorted(aliases),
            forced=tags.get(layout.PREFIX + "forced") == "true", note=found.get("description") or None,
            created_at=layout.from_millis(found.get("creation_timestamp") or 0),
            registry_url=self._url(found["name"], int(found["version"])))

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``alias`` at ``version`` (MLflow moves it from any other version)."""
        from orchestrack.stores.mlflow_rest import MlflowApiError

        try:
            self.client.call("POST", "registered-models/alias", {"name": name, "alias": alias, "version": str(version)})
        except MlflowApiError as err:
            if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise ModelNotFoundError(f"model {name!r} has no version {version} in the MLflow registry at "
                                         f"{self.client.base_url}: {err}") from err
            raise

    def _aliases(self, name: str) -> dict[int, list[str]] | None:
        """Version -> aliases of model ``name``, or ``None`` when there is no such model."""
        from orchestrack.stores.mlflow_rest import MlflowApiError

        try:
            model = self.client.call("GET", "registered-models/get", name=name)["registered_model"]
        except MlflowApiError as err:
            if err.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        by_version: dict[int, list[str]] = {}
        for entry in model.get("aliases", []):
            by_version.setdefault(int(entry["version"]), []).append(entry["alias"])
        return by_version

    def _search(self, filter_string: str) -> list[dict[str, Any]]:
        return list(self.client.pages("model-versions/search", {
            "filter": filter_string, "max_results": self.page_size, "order_by": ["version_number DESC"]},
            "model_versions", method="GET"))

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, newest first (every page)."""
        aliases = self._aliases(name)
        if aliases is None:
            return []
        found = self._search(f"name = {layout.filter_literal(name)}")
        versions = [self._version(v, aliases.get(int(v["version"]), [])) for v in found]
        return sorted(versions, key=lambda v: v.version, reverse=True)

    def alias(self, name: str, alias: str) -> ModelVersion | None:
        """The version ``alias`` points at, or ``None``."""
        from orchestrack.stores.mlflow_rest import MlflowApiError

        try:
            found = self.client.call("GET", "registered-models/alias", name=name, alias=alias)["model_version"]
        except MlflowApiError as err:
            if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise
        aliases = self._aliases(name) or {}
        return self._version(found, aliases.get(int(found["version"]), [alias]))

    def models(self) -> list[str]:
        """The registered models orchestrack promoted into (tag ``orchestrack.model``), every page."""
        found = self.client.pages("registered-models/search", {
            "filter": f"tags.`{MODEL_TAG}` = 'true'", "max_results": 1000}, "registered_models", method="GET")
        return sorted(model["name"] for model in found)

    def find_versions(self, sha256: str) -> list[ModelVersion]:
        """Every version whose artifact has this sha256 (tag ``orchestrack.sha256``)."""
        if not sha256:
            return []
        found = self._search(f"tags.`{layout.PREFIX}sha256` = {layout.filter_literal(sha256)}")
        aliases: dict[str, dict[int, list[str]]] = {}
        versions = []
        for entry in found:
            if entry["name"] not in aliases:
                aliases[entry["name"]] = self._aliases(entry["name"]) or {}
            versions.append(self._version(entry, aliases[entry["name"]].get(int(entry["version"]), [])))
        return sorted(versions, key=lambda v: (v.name, -v.version))


# -- choosing the registry ----------------------------------------------------------------------


def registry_for(store: Store) -> ModelRegistry:
    """The model registry that belongs to ``store``."""
    from orchestrack.stores.mlflow_store import MlflowStore
    from orchestrack.stores.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):
        return EmbeddedRegistry(store)
    if isinstance(store, MlflowStore):
        return MlflowRegistry(store)
    raise InvalidInputError(
        f"the store at {store.uri} ({type(store).__name__}) has no model registry; orchestrack keeps models in the "
        "embedded store and in MLflow: set ORCHESTRACK_TRACKING_URI (or --tracking-uri) to one of them")


def open_registry(tracking_uri: str | None = None) -> ModelRegistry:
    """The model registry of the store behind ``tracking_uri`` (default: the configured one).

    Example::

        champion = orchestrack.registry.open_registry().alias("churn", "champion")
    """
    from orchestrack.lifecycle import store_for

    return registry_for(store_for(tracking_uri))


def versions_of_run(record: RunRecord, registry: ModelRegistry) -> list[ModelVersion]:
    """The model versions registered from ``record``'s artifacts, newest first."""
    found: dict[tuple[str, int], ModelVersion] = {}
    for sha256 in {a.sha256 for a in record.artifacts if a.sha256}:
        for version in registry.find_versions(sha256):
            if version.run_id == record.run_id:
                found[(version.name, version.version)] = version
    return sorted(found.values(), key=lambda v: v.created_at, reverse=True)


# -- promote ----------------------------------------------------------------------------------


def pick_artifact(record: RunRecord, artifact: str | None) -> Artifact:
    """The artifact named ``artifact``, else the run's only artifact of kind ``model``."""
    listing = ", ".join(f"{a.name} ({a.kind})" for a in record.artifacts) or "none"
    if artifact is not None:
        matches = [a for a in record.artifacts if a.name == artifact]
        if not matches:
            raise InvalidInputError(f"run {record.key!r} has no artifact named {artifact!r} (promote artifact= / "
                                    f"--artifact); its artifacts: {listing}")
        return matches[-1]
    models = [a for a in record.artifacts if a.kind == MODEL_KIND]
    if len(models) == 1:
        return models[0]
    if not models:
        raise InvalidInputError(
            f"run {record.key!r} has no artifact of kind {MODEL_KIND!r} to promote (its artifacts: {listing}); "
            f"name one with --artifact NAME (artifact=), or log the model with log_artifact(path, kind={MODEL_KIND!r})")
    raise InvalidInputError(f"run {record.key!r} has {len(models)} artifacts of kind {MODEL_KIND!r} "
                            f"({', '.join(a.name for a in models)}); name the one to promote with --artifact NAME "
                            "(artifact=)")


def refusal(record: RunRecord, artifact: Artifact | None = None) -> list[str]:
    """Why ``record`` may not be promoted without force; ``[]`` when it may."""
    reasons = []
    if record.status is not RunStatus.SUCCEEDED:
        reasons.append(f"its status is {record.status.value}, not succeeded")
    gate = record.gate
    if gate is None:
        reasons.append("it has no quality gate decision")
    elif gate.outcome is GateOutcome.FAILED:
        reasons.append(f"it failed its quality gate: {gate.summary!r}")
    elif gate.outcome is GateOutcome.HELD:
        reasons.append(f"its quality gate held it for a person to look at: {gate.summary!r}")
    if artifact is not None and not artifact.sha256:
        reasons.append(f"artifact {artifact.name!r} was never stored (no sha256; it points at {artifact.uri})")
    return reasons


def promote(run_ref: str, model: str, *, alias: str | None = None, artifact: str | None = None,
            force: bool = False, note: str | None = None, tracking_uri: str | None = None) -> ModelVersion:
    """Register a run's model artifact as the next version of ``model``; refuse a run whose quality gate
    did not pass, or that did not succeed, unless ``force``.

    ``run_ref`` is a key, run id or 8+ character run id prefix; ``artifact`` names the artifact (default:
    the run's only artifact of kind ``model``); ``alias`` (``champion``) is moved to the new version.
    Raises :class:`PromotionRefusedError` with the reason and the way on.

    Example::

        orchestrack.promote("nightly-train/2026-11-28", "churn", alias="champion")
    """
    from orchestrack.lifecycle import get_run

    name = check_model_name(model, "promote model=")
    if alias is not None:
        check_alias(alias, "promote alias=")
    if note is not None:
        inputs.check_name(note, "note", "promote note=", limit=NOTE_LIMIT)
    record = get_run(run_ref, tracking_uri=tracking_uri)
    chosen = pick_artifact(record, artifact)
    reasons = refusal(record, chosen)
    if reasons and not force:
        raise PromotionRefusedError(
            f"run {record.key!r} ({record.run_id[:8]}) is not promoted to model {name!r}: {'; '.join(reasons)}. "
            f"Gate it with `orchestrack gate {record.key} --spec GATE.yaml` (orchestrack.gate), or promote it "
            "anyway with --force (force=True), which the version records")
    registry = open_registry(tracking_uri)
    version = registry.register(record, chosen, name, forced=bool(reasons), note=note)
    if reasons:
        log.warning("run %r promoted to model %r version %d by force although %s", record.key, name,
                    version.version, "; ".join(reasons))
    if alias is not None:
        registry.set_alias(name, alias, version.version)
        version = version.model_copy(update={"aliases": sorted({*version.aliases, alias})})
    return version


# -- which ------------------------------------------------------------------------------------


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 an artifact of ``path`` is recorded with (a folder's: its manifest's, as the artifact
    stores hash folders)."""
    from orchestrack.stores.local_artifacts import content_sha256

    source = Path(path)
    if not source.exists():
        raise InvalidInputError(f"{str(source)!r} does not exist (which path=); give a file or folder a run produced")
    return content_sha256(source)[0]


def runs_with_sha256(sha256: str, *, tracking_uri: str | None = None) -> list[tuple[RunRecord, Artifact]]:
    """Every run artifact whose content has this sha256, newest run first."""
    from orchestrack.lifecycle import store_for

    return store_for(tracking_uri).find_artifacts(sha256)


#: ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``, MLflow's way of naming a model version.
MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[^/@]+))$")


def model_version(ref: str, *, tracking_uri: str | None = None) -> ModelVersion:
    """The model version ``ref`` names: ``models:/churn/3`` or ``models:/churn@champion``.

    Example::

        orchestrack.model_version("models:/churn@champion").run_key
    """
    match = MODEL_URI.match(ref.strip())
    if match is None:
        raise InvalidInputError(f"{ref!r} is not a model version; write models:/NAME/VERSION or models:/NAME@ALIAS, "
                                "e.g. models:/churn/3 or models:/churn@champion")
    name, version, alias = match["name"], match["version"], match["alias"]
    registry = open_registry(tracking_uri)
    if alias is not None:
        found = registry.alias(name, alias)
        if found is None:
            raise ModelNotFoundError(f"model {name!r} has no alias {alias!r}; list its versions and aliases with "
                                     f"`orchestrack models {name}`")
        return found
    found = next((v for v in registry.versions(name) if v.version == int(version)), None)
    if found is None:
        raise ModelNotFoundError(f"model {name!r} has no version {version}; list its versions with "
                                 f"`orchestrack models {name}`")
    return found


def which(path: str | os.PathLike[str], *, tracking_uri: str | None = None) -> list[tuple[RunRecord, Artifact]]:
    """The runs that produced the file or folder at ``path`` (by content), with the matching artifact,
    newest run first. Model versions of it: ``open_registry().find_versions(file_sha256(path))``.

    Example::

        for record, artifact in orchestrack.which("model.pt"):
            print(record.key, artifact.name)
    """
    return runs_with_sha256(file_sha256(path), tracking_uri=tracking_uri)


__all__ = ["EmbeddedRegistry", "MlflowRegistry", "ModelRegistry", "ModelVersion", "check_alias", "check_model_name",
           "file_sha256", "model_version", "open_registry", "pick_artifact", "promote", "refusal", "registry_for",
           "runs_with_sha256", "versions_of_run", "which"]
