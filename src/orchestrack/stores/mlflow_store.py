"""The MLflow store: each run is one MLflow run, each task attempt a nested child run.

``ORCHESTRACK_TRACKING_URI=http://mlflow:5000`` (or ``https://...``, ``databricks``) selects it.
It talks to the tracking server's REST API (:mod:`orchestrack.stores.mlflow_rest`) and lays the
record out as :mod:`orchestrack.stores.mlflow_record` describes.

**Opening by key from many processes at once yields one MLflow run.** MLflow has no unique
constraint on runs, but experiment names are unique: the first process to create the experiment
named ``<claims>/<run id>`` (a "claim") creates the MLflow run, writes its id into the claim's tags
and then deletes the claim, which hides it from the UI but keeps its name taken. Every other opener
finds the claim and reads the MLflow run id from it. A claim left without an id by an opener that
died is taken over after ``claim_wait_s`` by the next generation (``<claims>/<run id>.2``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

from orchestrack.errors import InvalidInputError, RunNotFoundError
from orchestrack.record import (
    Artifact,
    ConfigFile,
    DataSnapshot,
    MetricPoint,
    OrchestratorKind,
    RunRecord,
    RunStatus,
    Scalar,
    SeriesPoint,
    TaskAttempt,
    TaskStatus,
    utcnow,
)
from orchestrack.stores import mlflow_record as layout
from orchestrack.stores.base import RunQuery
from orchestrack.stores.mlflow_rest import MlflowApiError, MlflowRestClient

T = TypeVar("T")
R = TypeVar("R")

#: Fields :meth:`MlflowStore.update_run` may change (the rest have log_* calls of their own).
UPDATABLE = ("key", "name", "owner", "purpose", "status", "started_at", "ended_at", "schema_version",
             "orchestrator", "code", "features", "llm", "metric_units", "environment", "failure", "gate", "incomplete")
#: How long a whole read of a run (or making it) stands for its task runs, status and params: within this
#: time a new attempt's child run is made without another search for a twin (a task's start and end,
#: delivered together, are), a task's start reads its progress, and new params are told from changed ones,
#: from that read and what the instance wrote since.
READ_FRESH_S = 10.0
#: Runs whose task runs an instance remembers (the newest).
REMEMBERED_RUNS = 1000
#: On a claim: ``<MLflow run id> <experiment id>``, in one tag so that no reader sees half of it.
_CLAIM_RUN_TAG = layout.PREFIX + "mlflow_run"
_PARAM_TAG = layout.PREFIX + "param."  # a param's value where MLflow's own cannot hold it
_CLAIMANT_TAG = layout.PREFIX + "claimant"
_FINAL_AT_TAG = layout.PREFIX + "final_at"


def _parallel(function: Callable[[T], R], items: Iterable[T], workers: int = 8) -> list[R]:
    """``function`` over ``items`` on a few threads (a fresh pool per call: stores live across forks)."""
    items = list(items)
    if len(items) <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(function, items))


def _iso(moment: datetime | None) -> str:
    return "" if moment is None else moment.isoformat()


class MlflowStore:
    """Run records in an MLflow tracking server.

    Example::

        store = MlflowStore("http://127.0.0.1:5000")
        store.get_run(orchestrack.run_id_for("nightly/2026-11-28"))
    """

    remote = True  # writes are journaled and delivered in the background (orchestrack.delivery)

    def __init__(self, uri: str, *, experiment: str = "{pipeline}", claims: str = ".orchestrack-run-claims",
                 claim_wait_s: float = 60.0, ui_url: str | None = None, join_injected_run: bool = True,
                 timeout_s: float = 30.0) -> None:
        self.uri = uri
        self.client = MlflowRestClient(uri, timeout_s=timeout_s)
        self.experiment_template = experiment
        self.claims = claims.rstrip("/")
        self.claim_wait_s = claim_wait_s
        self.ui_url = (ui_url or self.client.ui_base_url).rstrip("/")
        self.join_injected_run = join_injected_run
        self._lock = threading.Lock()
        self._located: dict[str, tuple[str, str]] = {}  # our run id -> (MLflow run id, experiment id)
        self._experiments: dict[str, str] = {}  # experiment name -> id
        self._adopted_task_run: str | None = None
        #: Our run id -> (task_id, attempt) -> (child run id, attempt, MLflow status): the task runs this
        #: instance made, wrote or read, so that an attempt's end goes to the child run its start made.
        self._task_runs: dict[str, dict[tuple[str, int], tuple[str, TaskAttempt, str]]] = {}
        #: Our run id -> what this instance's last whole read of it (or making it) found, with its own writes since.
        self._seen: dict[str, _Seen] = {}
        #: Runs per ``runs/search`` page (MLflow allows up to 50,000; every page is read either way).
        self.page_size = 1000

    def close(self) -> None:
        """Nothing to release: HTTP sessions close with their threads."""

    # -- where a run is ---------------------------------------------------------------------

    def _claim_name(self, run_id: str, generation: int) -> str:
        return f"{self.claims}/{run_id}" + (f".{generation}" if generation > 1 else "")

    def _experiment_by_name(self, name: str) -> dict[str, Any] | None:
        try:
            answer = self.client.call("GET", "experiments/get-by-name", experiment_name=name)
            found: dict[str, Any] = answer["experiment"]
            return found
        except MlflowApiError as err:
            if err.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise

    def _claim_state(self, run_id: str) -> tuple[str, int, tuple[str, str] | None, str | None]:
        """``("taken", g, (mlflow run id, experiment id), _)``, ``("pending", g, None, claimant)`` or
        ``("free", g, None, None)`` for the newest generation of the run's claim."""
        generation = 1
        while True:
            claim = self._experiment_by_name(self._claim_name(run_id, generation))
            if claim is None:
                return "free", generation, None, None
            tags = {t["key"]: t["value"] for t in claim.get("tags", [])}
            if tags.get(_CLAIM_RUN_TAG):
                mlflow_run_id, experiment_id = tags[_CLAIM_RUN_TAG].split()
                return "taken", generation, (mlflow_run_id, experiment_id), None
            following = self._experiment_by_name(self._claim_name(run_id, generation + 1))
            if following is None:
                return "pending", generation, None, tags.get(_CLAIMANT_TAG)
            generation += 1

    def _locate(self, run_id: str) -> tuple[str, str] | None:
        """``(MLflow run id, experiment id)`` of one of our runs, or ``None`` when it was never opened."""
        with self._lock:
            known = self._located.get(run_id)
        if known is not None:
            return known
        state, _, ids, _ = self._claim_state(run_id)
        if ids is None:
            ids = self._search_by_run_id(run_id)  # a claim lost to `mlflow gc`, or still pending
        if ids is not None:
            with self._lock:
                self._located[run_id] = ids
        return ids

    def _search_by_run_id(self, run_id: str) -> tuple[str, str] | None:
        experiments = self._orchestrack_experiments()
        if not experiments:
            return None
        found = self.client.call("POST", "runs/search", {
            "experiment_ids": experiments, "max_results": 1, "order_by": ["attributes.start_time ASC"],
            "filter": f"tags.`{layout.RUN_ID_TAG}` = {layout.filter_literal(run_id)} "
                      f"and tags.`{layout.KIND_TAG}` = 'run'"})
        runs = found.get("runs", [])
        return (runs[0]["info"]["run_id"], runs[0]["info"]["experiment_id"]) if runs else None

    def _orchestrack_experiments(self) -> list[str]:
        """The ids of every live experiment orchestrack writes into (their names are remembered, so that
        opening a run into one of them needs no lookup by name)."""
        found = list(self.client.pages(
            "experiments/search", {"max_results": 1000, "filter": f"tags.`{layout.EXPERIMENT_TAG}` = 'true'"},
            "experiments"))
        with self._lock:
            self._experiments.update((e["name"], str(e["experiment_id"])) for e in found
                                     if e.get("name") and e.get("lifecycle_stage", "active") == "active")
        return [e["experiment_id"] for e in found]

    def _experiment_id(self, name: str) -> str:
        """The id of the experiment called ``name``, created (and tagged as orchestrack's) when missing."""
        with self._lock:
            known = self._experiments.get(name)
        if known is not None:
            return known
        experiment = self._experiment_by_name(name)
        if experiment is None:
            try:
                self.client.call("POST", "experiments/create", {
                    "name": name, "tags": [{"key": layout.EXPERIMENT_TAG, "value": "true"}]})
            except MlflowApiError as err:
                if err.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            experiment = self._experiment_by_name(name)
            assert experiment is not None
        if experiment.get("lifecycle_stage") == "deleted":
            raise InvalidInputError(
                f"MLflow experiment {name!r} at {self.client.base_url} is deleted, so no run can be written into it; "
                "restore it (`mlflow experiments restore`) or name another with ORCHESTRACK_MLFLOW__EXPERIMENT")
        tags = {t["key"]: t["value"] for t in experiment.get("tags", [])}
        if tags.get(layout.EXPERIMENT_TAG) != "true":
            self.client.call("POST", "experiments/set-experiment-tag", {
                "experiment_id": experiment["experiment_id"], "key": layout.EXPERIMENT_TAG, "value": "true"})
        with self._lock:
            self._experiments[name] = experiment["experiment_id"]
        return str(experiment["experiment_id"])

    def experiment_name(self, record: RunRecord) -> str:
        """The experiment a run goes into: the ``mlflow.experiment`` template filled in."""
        pipeline = record.orchestrator.pipeline or "orchestrack"
        return self.experiment_template.format(pipeline=pipeline, kind=record.orchestrator.kind.value)

    def run_page_url(self, run_id: str) -> str | None:
        """The run's page in the MLflow UI, or ``None`` when the run is not in MLflow (yet)."""
        ids = self._locate(run_id)
        if ids is None:
            return None
        return f"{self.ui_url}/#/experiments/{ids[1]}/runs/{ids[0]}"

    def mlflow_ids(self, run_id: str) -> tuple[str, str]:
        """``(MLflow run id, experiment id)`` of one of our runs (the model registry links versions to
        it); raises ``RunNotFoundError``.

        Example::

            mlflow_run_id, experiment_id = store.mlflow_ids(record.run_id)
        """
        return self._ids(run_id)

    def _ids(self, run_id: str) -> tuple[str, str]:
        ids = self._locate(run_id)
        if ids is None:
            raise RunNotFoundError(f"no run with id {run_id!r} in the MLflow store at {self.client.base_url}")
        return ids

    # -- runs -------------------------------------------------------------------------------

    def open_run(self, record: RunRecord) -> RunRecord:
        """Create the MLflow run for ``record`` unless any process already did; return the stored run."""
        token = uuid.uuid4().hex
        pending_since: dict[int, float] = {}
        polls = 0
        claim_id: str | None = None  # the claim experiment this process created, from its create's answer
        while True:
            state, generation, ids, claimant = self._claim_state(record.run_id)
            if state == "taken":
                assert ids is not None
                with self._lock:
                    self._located[record.run_id] = ids
                return self.get_run(record.run_id)
            if state == "pending" and claimant != token:
                first_seen = pending_since.setdefault(generation, time.monotonic())
                if time.monotonic() - first_seen < self.claim_wait_s:
                    # The holder publishes within a few requests; waiters back off so as not to slow it.
                    polls += 1
                    time.sleep(min(1.0, 0.05 * 1.5 ** polls) * (0.5 + random.random()))
                    continue
                generation += 1  # its opener died between claiming and publishing: take over
            if state == "free" or (state == "pending" and claimant != token):
                try:
                    created = self.client.call("POST", "experiments/create", {
                        "name": self._claim_name(record.run_id, generation),
                        "tags": [{"key": _CLAIMANT_TAG, "value": token},
                                 {"key": layout.KEY_TAG, "value": record.key[: layout.TAG_VALUE_LIMIT]}]})
                    claim_id = str(created["experiment_id"]) if created.get("experiment_id") else None
                except MlflowApiError as err:
                    claim_id = None
                    if err.error_code != "RESOURCE_ALREADY_EXISTS":
                        raise
                    # Another opener won, or this one's first try went through: look again.
                    state, _, _, claimant = self._claim_state(record.run_id)
                    if claimant != token:
                        continue
            # This process holds the claim of this generation: create (or find) the run, publish it.
            found = self._search_by_run_id(record.run_id)
            ids = found or self._create_run(record)
            if claim_id is None:  # the create that made the claim answered an error (a retried request)
                claim = self._experiment_by_name(self._claim_name(record.run_id, generation))
                assert claim is not None
                claim_id = str(claim["experiment_id"])
            self.client.call("POST", "experiments/set-experiment-tag", {
                "experiment_id": claim_id, "key": _CLAIM_RUN_TAG, "value": f"{ids[0]} {ids[1]}"})
            self.client.call("POST", "experiments/delete", {"experiment_id": claim_id})
            with self._lock:
                self._located[record.run_id] = ids
            if found is None and record.orchestrator.kind is not OrchestratorKind.KFP:
                # Made just now, from this record, with no task run under it yet (unlike one that KFP's
                # MLflow plugin made): stored as given, so there is nothing to read back.
                params, param_tags = layout.param_entries(record.params)
                self._remember_task_runs(record.run_id, {}, _Seen(
                    record.status, params, {key for key in param_tags if key.startswith(_PARAM_TAG)}))
                return _as_opened(record)
            return self._read_run(record.run_id)

    def _injected_run(self) -> dict[str, Any] | None:
        """The MLflow run KFP's MLflow plugin made for this task (``MLFLOW_RUN_ID``), when it has a parent."""
        injected = os.environ.get("MLFLOW_RUN_ID")
        if not (self.join_injected_run and injected):
            return None
        run: dict[str, Any] = self.client.call("GET", "runs/get", run_id=injected)["run"]
        tags = {t["key"]: t["value"] for t in run.get("data", {}).get("tags", [])}
        return run if tags.get(layout.PARENT_TAG) else None

    def _create_run(self, record: RunRecord) -> tuple[str, str]:
        injected = self._injected_run() if record.orchestrator.kind is OrchestratorKind.KFP else None
        at_once = False  # every tag went with runs/create
        if injected is not None:
            # KFP's MLflow plugin already made the pipeline run's MLflow run: write into it.
            tags = {t["key"]: t["value"] for t in injected["data"].get("tags", [])}
            parent = self.client.call("GET", "runs/get", run_id=tags[layout.PARENT_TAG])["run"]["info"]
            ids = (parent["run_id"], parent["experiment_id"])
            self.client.call("POST", "experiments/set-experiment-tag", {
                "experiment_id": ids[1], "key": layout.EXPERIMENT_TAG, "value": "true"})
        else:
            experiment_id = self._experiment_id(self.experiment_name(record))
            identity = {layout.KIND_TAG: "run", layout.RUN_ID_TAG: record.run_id,
                        layout.KEY_TAG: record.key[: layout.TAG_VALUE_LIMIT]}
            every_tag = {**identity, **self._field_tags(record, UPDATABLE), **layout.user_tag_entries(record.tags)}
            # One request makes the run with every tag where MLflow's batch limit allows (the name goes as
            # run_name, never as a tag); params, and tags past the limit, follow in log-batch.
            at_once = len(every_tag) <= layout.BATCH_TAGS and layout.RUN_NAME_TAG not in every_tag
            created = self.client.call("POST", "runs/create", {
                "experiment_id": experiment_id, "run_name": record.name, "start_time": layout.millis(record.started_at),
                "user_id": record.owner or "",
                "tags": [{"key": k, "value": v} for k, v in (every_tag if at_once else identity).items()]})
            ids = (created["run"]["info"]["run_id"], experiment_id)
            if at_once:
                self._write(ids[0], params=record.params)
        if not at_once:
            self._write(ids[0], tags=self._field_tags(record, UPDATABLE), params=record.params,
                        tags_of_user=record.tags)
        if record.finished or injected is not None:
            self._update_info(ids[0], record.status if record.finished else None, record.ended_at,
                              record.name if injected is not None else None)
        return ids

    def _field_tags(self, record: RunRecord, fields: Iterable[str]) -> dict[str, str]:
        """The tags that hold ``fields`` of ``record``."""
        tags: dict[str, str] = {layout.KIND_TAG: "run", layout.RUN_ID_TAG: record.run_id}
        info, code, failure = record.orchestrator, record.code, record.failure
        for field in fields:
            if field == "key":
                tags[layout.KEY_TAG] = record.key[: layout.TAG_VALUE_LIMIT]
            elif field == "owner":
                tags[layout.OWNER_TAG] = record.owner or ""
                if record.owner:
                    tags["mlflow.user"] = record.owner
            elif field == "purpose":
                tags[layout.PURPOSE_TAG] = record.purpose.value if record.purpose else ""
            elif field == "status":
                tags[layout.STATUS_TAG] = record.status.value
            elif field in ("started_at", "ended_at"):
                tags[layout.PREFIX + field] = _iso(getattr(record, field))
            elif field == "failure":
                tags[layout.REASON_TAG] = failure.reason.value if failure else ""
                tags[layout.SENTENCE_TAG] = failure.summary[: layout.TAG_VALUE_LIMIT] if failure else ""
                tags[layout.FINGERPRINT_TAG] = (failure.fingerprint or "") if failure else ""
                tags.update(layout.document_tags("failure", failure.model_dump(mode="json") if failure else None))
            elif field == "orchestrator":
                tags.update({layout.PIPELINE_TAG: info.pipeline or "",
                             layout.PREFIX + "pipeline_version": info.pipeline_version or "",
                             layout.PREFIX + "orchestrator": info.kind.value,
                             layout.PREFIX + "orchestrator_run_id": info.run_id or "",
                             layout.PREFIX + "url": (info.url or "")[: layout.TAG_VALUE_LIMIT]})
                tags.update(layout.document_tags("orchestrator", info.model_dump(mode="json")))
            elif field == "code":
                tags.update({k: v for k, v in (("mlflow.source.git.commit", code.commit),
                                               ("mlflow.source.git.branch", code.branch),
                                               ("mlflow.source.git.repoURL", code.repository)) if v})
                tags.update(layout.document_tags("code", code.model_dump(mode="json")))
            elif field == "environment":
                tags[layout.PREFIX + "image"] = record.environment.image or ""
                tags.update(layout.document_tags("environment", record.environment.model_dump(mode="json")))
            elif field == "gate":
                tags[layout.GATE_TAG] = record.gate.outcome.value if record.gate else ""
                tags.update(layout.document_tags("gate", record.gate.model_dump(mode="json") if record.gate else None))
            elif field == "metric_units":
                tags.update(layout.unit_tags(record.metric_units))
            elif field in ("features", "llm", "incomplete", "schema_version"):
                value = getattr(record, field)
                tags.update(layout.document_tags(field, value.model_dump(mode="json")
                                                 if hasattr(value, "model_dump") else value))
        return tags

    def _write(self, mlflow_run_id: str, *, tags: dict[str, str] | None = None,
               params: dict[str, Scalar] | None = None, tags_of_user: dict[str, str] | None = None,
               metrics: list[dict[str, Any]] | None = None) -> None:
        """One ``log-batch`` per MLflow's batch limits (1,000 metrics, 100 params, 100 tags a request)."""
        all_tags = dict(tags or {})
        mlflow_params: dict[str, str] = {}
        if params:
            mlflow_params, param_tags = layout.param_entries(params)
            all_tags.update(param_tags)
        if tags_of_user:
            all_tags.update(layout.user_tag_entries(tags_of_user))
        tag_items = [{"key": k, "value": v} for k, v in all_tags.items()]
        param_items = [{"key": k, "value": v} for k, v in mlflow_params.items()]
        metric_items = list(metrics or [])
        while tag_items or param_items or metric_items:
            some_tags, some_params = tag_items[: layout.BATCH_TAGS], param_items[: layout.BATCH_PARAMS]
            body = {"run_id": mlflow_run_id, "tags": some_tags, "params": some_params,
                    "metrics": metric_items[: layout.BATCH_ENTITIES - len(some_tags) - len(some_params)]}
            tag_items, param_items = tag_items[len(some_tags):], param_items[len(some_params):]
            metric_items = metric_items[len(body["metrics"]):]
            self.client.call("POST", "runs/log-batch", body)

    def _update_info(self, mlflow_run_id: str, status: RunStatus | TaskStatus | None = None,
                     ended_at: datetime | None = None, name: str | None = None) -> None:
        """Set an MLflow run's status, end time and name in one ``runs/update``.

        The name goes only here, never as an ``mlflow.runName`` tag in ``log-batch``: MLflow's server
        writes that tag by reading the run's status and writing it back, which undoes a status set by
        another writer at the same moment (and deadlocks on PostgreSQL)."""
        body: dict[str, Any] = {"run_id": mlflow_run_id}
        if status is not None:
            statuses = layout.RUN_STATUS if isinstance(status, RunStatus) else layout.TASK_STATUS
            body["status"] = statuses[status]  # type: ignore[index]
            if status not in (RunStatus.RUNNING, TaskStatus.RUNNING):
                body["end_time"] = layout.millis(ended_at or utcnow())
        if name is not None:
            body["run_name"] = name
        self.client.call("POST", "runs/update", body)

    def update_run(self, run_id: str, changes: dict[str, Any]) -> None:
        """Replace top-level run fields (status, ended_at, failure, code, environment, ...); metric
        units merge by metric."""
        patch, tags = self._change_tags(run_id, changes)
        mlflow_run_id, _ = self._ids(run_id)
        self._write(mlflow_run_id, tags=tags)
        if "status" in changes or "name" in changes:
            self._update_info(mlflow_run_id, patch.status if "status" in changes else None, patch.ended_at,
                              patch.name if "name" in changes else None)
        if "status" in changes:
            with self._lock:
                if run_id in self._seen:
                    self._seen[run_id].status = patch.status

    def _change_tags(self, run_id: str, changes: dict[str, Any]) -> tuple[RunRecord, dict[str, str]]:
        """``(the changes as a record, the tags that hold them)``; raises on a field update_run cannot change."""
        unknown = set(changes) - set(UPDATABLE)
        if unknown:
            raise InvalidInputError(f"update_run cannot change {sorted(unknown)}; use the matching log_* call")
        patch = RunRecord.model_validate({"run_id": run_id, "key": "-", "name": "-", **changes})
        return patch, self._field_tags(patch, changes)

    # -- reading ----------------------------------------------------------------------------

    def get_run(self, run_id: str) -> RunRecord:
        """The run with this id."""
        return self._read_run(run_id)

    def get_run_without_series(self, run_id: str) -> RunRecord:
        """The run with its task attempts and latest metric values but no metric series: what closing a
        run needs, in one request (a page per ``page_size`` task runs)."""
        return self._read_run(run_id, with_series=False)

    def _read_run(self, run_id: str, *, with_series: bool = True) -> RunRecord:
        run, children = self._run_with_task_runs(run_id)
        return self._assemble(run, _without_status(children), with_series=with_series)

    def _get_mlflow_run(self, run_id: str, mlflow_run_id: str) -> dict[str, Any]:
        try:
            run: dict[str, Any] = self.client.call("GET", "runs/get", run_id=mlflow_run_id)["run"]
        except MlflowApiError as err:
            if err.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise RunNotFoundError(f"run {run_id!r} was deleted from the MLflow store at "
                                       f"{self.client.base_url} (MLflow run {mlflow_run_id})") from err
            raise
        return run

    def _run_with_task_runs(self, run_id: str
                            ) -> tuple[dict[str, Any], dict[tuple[str, int], tuple[str, TaskAttempt, str]]]:
        """The MLflow run of one of our runs and its task runs (as :meth:`_children_with_status` gives
        them), in one search: both carry the run id's tag."""
        mlflow_run_id, experiment_id = self._ids(run_id)
        run: dict[str, Any] | None = None
        task_runs: list[dict[str, Any]] = []
        for found in self.client.pages("runs/search", {
                "experiment_ids": [experiment_id], "max_results": self.page_size,
                "filter": f"tags.`{layout.RUN_ID_TAG}` = {layout.filter_literal(run_id)}"}, "runs"):
            if found["info"]["run_id"] == mlflow_run_id:
                run = found
            else:
                task_runs.append(found)
        if run is None:  # deleted (the search shows live runs only), or moved: as MLflow says
            run = self._get_mlflow_run(run_id, mlflow_run_id)
        children = _chosen_task_runs(mlflow_run_id, task_runs)
        self._remember_task_runs(run_id, children, _Seen.of(run))
        return run, children

    def _remember_task_runs(self, run_id: str, children: dict[tuple[str, int], tuple[str, TaskAttempt, str]],
                            seen: _Seen | None = None) -> None:
        """Remember task runs this instance made, wrote or read; with ``seen``, they are all of the run's
        task runs, and ``seen`` what a whole read of the run (or making it) found just now."""
        with self._lock:
            if run_id not in self._task_runs and len(self._task_runs) >= REMEMBERED_RUNS:  # a long-lived process
                oldest = next(iter(self._task_runs))
                del self._task_runs[oldest]
                self._seen.pop(oldest, None)
            self._task_runs.setdefault(run_id, {}).update(children)
            if seen is not None:
                self._seen[run_id] = seen

    def _fresh(self, run_id: str) -> _Seen | None:
        """What this instance knows of the run, when its whole read is less than READ_FRESH_S old (hold the lock)."""
        seen = self._seen.get(run_id)
        return seen if seen is not None and time.monotonic() - seen.read_at < READ_FRESH_S else None

    def get_progress(self, run_id: str, task_id: str | None = None) -> tuple[RunStatus, list[TaskAttempt]]:
        """The run's status and task attempts (only ``task_id``'s when given), in one request.

        A task's progress needs no request within :data:`READ_FRESH_S` of this instance reading (or making)
        the whole run: it is what that read found, with what this instance wrote since. A task start reads
        it to number a new attempt and to see a closed run reopened, so a 1,000-task flow reads its run a
        few times, not a thousand."""
        if task_id is not None:
            known = self._known_progress(run_id, task_id)
            if known is not None:
                return known
        run, children = self._run_with_task_runs(run_id)
        attempts = [attempt for (task, _), (_, attempt, _) in children.items() if task_id in (None, task)]
        return _status_of(run), _in_task_order(attempts)

    def _known_progress(self, run_id: str, task_id: str) -> tuple[RunStatus, list[TaskAttempt]] | None:
        with self._lock:
            seen = self._fresh(run_id)
            if seen is None:
                return None
            attempts = [attempt for (task, _), (_, attempt, _) in self._task_runs.get(run_id, {}).items()
                        if task == task_id]
        return seen.status, _in_task_order(attempts)

    def find_run(self, key_or_run_id: str) -> RunRecord | None:
        """The run with this key, orchestrack run id, MLflow run id, or a unique run id prefix (8+)."""
        from orchestrack.lifecycle import run_id_for

        if self._locate(run_id_for(key_or_run_id)) is not None:
            return self.get_run(run_id_for(key_or_run_id))
        if not (len(key_or_run_id) >= 8 and all(c in "0123456789abcdef" for c in key_or_run_id)):
            return None
        if len(key_or_run_id) == 32 and self._locate(key_or_run_id) is not None:
            return self.get_run(key_or_run_id)
        if len(key_or_run_id) == 32:
            try:
                run = self.client.call("GET", "runs/get", run_id=key_or_run_id)["run"]
            except MlflowApiError:
                run = None
            tags = {t["key"]: t["value"] for t in (run or {}).get("data", {}).get("tags", [])}
            if tags.get(layout.KIND_TAG) == "run" and tags.get(layout.RUN_ID_TAG):
                return self.get_run(tags[layout.RUN_ID_TAG])
        experiments = self._orchestrack_experiments()
        if not experiments:
            return None
        found = self.client.call("POST", "runs/search", {
            "experiment_ids": experiments, "max_results": 2,
            "filter": f"tags.`{layout.RUN_ID_TAG}` LIKE {layout.filter_literal(key_or_run_id + '%')} "
                      f"and tags.`{layout.KIND_TAG}` = 'run'"}).get("runs", [])
        if len(found) != 1:
            return None
        tags = {t["key"]: t["value"] for t in found[0]["data"].get("tags", [])}
        return self.get_run(tags[layout.RUN_ID_TAG])

    def search_runs(self, query: RunQuery) -> list[RunRecord]:
        """Runs matching ``query``, newest first (every page MLflow has, up to ``query.limit``)."""
        experiments = self._orchestrack_experiments()
        if not experiments:
            return []
        clauses = [f"tags.`{layout.KIND_TAG}` = 'run'"]
        for tag, value in ((layout.STATUS_TAG, query.status), (layout.PIPELINE_TAG, query.pipeline),
                           (layout.REASON_TAG, query.reason), (layout.PURPOSE_TAG, query.purpose),
                           (layout.OWNER_TAG, query.owner), (layout.FINGERPRINT_TAG, query.fingerprint)):
            if value is not None:
                clauses.append(f"tags.`{tag}` = {layout.filter_literal(str(value))}")
        if query.started_before is not None:
            clauses.append(f"attributes.start_time <= {layout.millis(query.started_before)}")
        runs: list[dict[str, Any]] = []
        body = {"experiment_ids": experiments, "filter": " and ".join(clauses),
                "order_by": ["attributes.start_time DESC"], "max_results": min(query.limit, self.page_size)}
        for run in self.client.pages("runs/search", body, "runs"):
            runs.append(run)
            if len(runs) >= query.limit:
                break
        return self._records(runs, summary=query.summary)

    def _records(self, runs: list[dict[str, Any]], *, summary: bool = False) -> list[RunRecord]:
        """The records of searched MLflow runs, one per run id, newest first. With ``summary`` from the
        searched runs alone; else with their task attempts and metric series (read in parallel)."""
        if summary:
            records = [self._assemble(run, {}, with_series=False) for run in runs]
        else:
            records = _parallel(lambda run: self._assemble(
                run, self._children(run["info"]["run_id"], run["info"]["experiment_id"]), with_series=True), runs)
        unique = {record.run_id: record for record in reversed(records)}  # a retried create made a twin
        return sorted(unique.values(), key=lambda r: r.started_at, reverse=True)

    def _assemble(self, run: dict[str, Any], children: dict[tuple[str, int], tuple[str, TaskAttempt]],
                  *, with_series: bool) -> RunRecord:
        info, data = run["info"], run.get("data", {})
        tags = {t["key"]: t["value"] for t in data.get("tags", [])}
        if tags.get(layout.KIND_TAG) != "run":
            raise RunNotFoundError(f"MLflow run {info['run_id']} at {self.client.base_url} is not an orchestrack run")
        metrics: dict[str, float] = {}
        slices: dict[str, dict[str, float]] = {}
        by_task: dict[str, dict[str, float]] = {}
        series_keys: list[tuple[str, str]] = []
        meanings = layout.metric_meanings(tags)
        for metric in data.get("metrics", []):
            meaning = meanings.get(metric["key"]) or {"key": metric["key"], "slice": None, "task": None}
            if meaning["slice"] is not None:
                slices.setdefault(meaning["slice"], {})[meaning["key"]] = float(metric["value"])
            elif meaning["task"] is not None:
                by_task.setdefault(meaning["task"], {})[meaning["key"]] = float(metric["value"])
            else:
                metrics[meaning["key"]] = float(metric["value"])
                series_keys.append((metric["key"], meaning["key"]))
        series: dict[str, list[SeriesPoint]] = {}
        if with_series:
            histories = _parallel(lambda names: (names[1], self.client.metric_history(info["run_id"], names[0])),
                                  series_keys)
            for key, points in histories:
                if len(points) > 1:
                    series[key] = sorted((SeriesPoint(step=int(p.get("step", 0)), value=float(p["value"]),
                                                      timestamp=layout.from_millis(p["timestamp"])) for p in points),
                                         key=lambda p: (p.step, p.timestamp))
        document: dict[str, Any] = {
            "schema_version": layout.read_document(tags, "schema_version", 2),
            "run_id": tags[layout.RUN_ID_TAG], "key": tags[layout.KEY_TAG],
            "name": tags.get(layout.RUN_NAME_TAG) or info.get("run_name") or tags[layout.KEY_TAG],
            "owner": tags.get(layout.OWNER_TAG) or None, "purpose": tags.get(layout.PURPOSE_TAG) or None,
            "status": tags.get(layout.STATUS_TAG) or "running",
            "started_at": tags.get(layout.PREFIX + "started_at") or layout.from_millis(info["start_time"]),
            "ended_at": tags.get(layout.PREFIX + "ended_at") or None,
            "orchestrator": layout.read_document(tags, "orchestrator", {}),
            "code": layout.read_document(tags, "code", {}),
            "features": layout.read_document(tags, "features", {}),
            "llm": layout.read_document(tags, "llm", {}),
            "metric_units": layout.read_units(tags),
            "environment": layout.read_document(tags, "environment", {}),
            "failure": layout.read_document(tags, "failure"),
            "gate": layout.read_document(tags, "gate"),
            "incomplete": layout.read_document(tags, "incomplete", []),
            "params": layout.read_params(data.get("params", []), tags), "tags": layout.user_tags(tags),
            "data": [d["snapshot"] for d in sorted(layout.documents_under(tags, "data"), key=lambda d: d["order"])],
            "configs": [d["config"] for d in sorted(layout.documents_under(tags, "config"), key=lambda d: d["order"])],
            "artifacts": [d["artifact"] for d in sorted(layout.documents_under(tags, "artifact"),
                                                        key=lambda d: d["order"])],
            "tasks": _in_task_order([attempt for _, attempt in children.values()]),
            "metrics": dict(sorted(metrics.items())), "slice_metrics": slices,
            "task_metrics": dict(sorted(by_task.items())), "metric_series": series,
        }
        return RunRecord.model_validate(document)

    # -- logging ----------------------------------------------------------------------------

    def log_params(self, run_id: str, params: dict[str, Scalar]) -> None:
        """Set params. MLflow never lets a param change value: a key logged again with another value
        keeps its first value as the MLflow param and the new one in tag ``orchestrack.param.<key>``."""
        self._write_params(run_id, params)

    def _write_params(self, run_id: str, params: dict[str, Scalar], *, tags: dict[str, str] | None = None,
                      tags_of_user: dict[str, str] | None = None, metrics: list[dict[str, Any]] | None = None) -> None:
        """Write ``params``, with what else :meth:`_write` takes, in the same ``log-batch``; a param MLflow has
        with another value goes in its tag. What MLflow has is what this instance's whole read of the run less
        than READ_FRESH_S ago found plus its own writes since, else read now; should MLflow refuse a param
        another writer set in between, the run is read and the params written again."""
        mlflow_run_id = self._ids(run_id)[0]
        with self._lock:
            seen = self._fresh(run_id)
            known = (dict(seen.params), set(seen.overridden)) if seen is not None else None

        def write(known: tuple[dict[str, str], set[str]] | None) -> tuple[dict[str, Scalar], dict[str, str]]:
            new, param_tags = self._param_changes(mlflow_run_id, params, known)
            self._write(mlflow_run_id, params=new, tags={**(tags or {}), **param_tags}, tags_of_user=tags_of_user,
                        metrics=metrics)
            return new, param_tags

        try:
            new, param_tags = write(known)
        except MlflowApiError as err:
            if known is None or err.error_code != "INVALID_PARAMETER_VALUE":
                raise
            new, param_tags = write(None)
        written, value_tags = layout.param_entries(new)
        with self._lock:
            if run_id in self._seen:
                self._seen[run_id].params.update(written)
                self._seen[run_id].overridden.update(
                    key for key in {**param_tags, **value_tags} if key.startswith(_PARAM_TAG))

    def _param_changes(self, mlflow_run_id: str, params: dict[str, Scalar],
                       known: tuple[dict[str, str], set[str]] | None) -> tuple[dict[str, Scalar], dict[str, str]]:
        """``(params MLflow does not have yet, tags for the ones it has with another value)``, from ``known``
        (MLflow params by name, names of their ``orchestrack.param.*`` tags) or else one read."""
        if known is None:
            read = _Seen.of(self.client.call("GET", "runs/get", run_id=mlflow_run_id)["run"])
            known = (read.params, read.overridden)
        stored, overridden = known
        fresh: dict[str, Scalar] = {}
        tags: dict[str, str] = {}
        for key, value in params.items():
            name = layout.safe_name(key)
            override = f"{_PARAM_TAG}{name}"
            if name not in stored:
                fresh[key] = value
            elif (stored[name] != layout.param_text(value) or override in overridden
                  or layout.param_value_tags(name, value)):  # the same text, read back as another type
                tags[override] = layout.exact_value(value)
        return fresh, tags

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        """Set tags."""
        self._write(self._ids(run_id)[0], tags_of_user=tags)

    def log_metrics(self, run_id: str, points: list[MetricPoint], write_id: str | None = None) -> None:
        """Append metric points in as few ``log-batch`` requests as MLflow allows. A batch sent again
        (``write_id``: a replay) adds nothing: MLflow keeps one point per key, value, timestamp and step."""
        items, tags = _metric_entries(points)
        self._write(self._ids(run_id)[0], tags=tags, metrics=items)

    def apply_writes(self, writes: list[tuple[str, dict[str, Any], str | None]],
                     apply_one: Callable[[str, dict[str, Any], str | None], None]) -> None:
        """Make journaled writes ``(op, args, write_id)`` in order, consecutive ones of one run together: what
        they set on the run in as few ``log-batch`` requests as MLflow's limits allow, then their task
        attempts in one :meth:`record_tasks`. A status or name change, and every other write, goes on its own
        (``apply_one``), in its place."""
        group: list[tuple[str, dict[str, Any]]] = []
        for op, args, write_id in writes:
            if group and not _joins(group, op, args):
                self._apply_group(group)
                group = []
            if _joinable(op, args):
                group.append((op, args))
            else:
                apply_one(op, args, write_id)
        if group:
            self._apply_group(group)

    def _apply_group(self, group: list[tuple[str, dict[str, Any]]]) -> None:
        run_id = group[0][1]["run_id"]
        params: dict[str, Scalar] = {}
        user_tags: dict[str, str] = {}
        tags: dict[str, str] = {}
        points: list[MetricPoint] = []
        attempts: list[TaskAttempt] = []
        for op, args in group:
            if op == "log_params":
                params.update(args["params"])
            elif op == "log_metrics":
                points.extend(args["points"])
            elif op == "set_tags":
                user_tags.update(args["tags"])
            elif op == "update_run":
                tags.update(self._change_tags(run_id, args["changes"])[1])
            else:
                attempts.extend(args["attempts"])
        if params or user_tags or tags or points:
            items, metric_tags = _metric_entries(points)
            also: dict[str, Any] = {"tags": {**tags, **metric_tags}, "tags_of_user": user_tags, "metrics": items}
            if params:
                self._write_params(run_id, params, **also)
            else:
                self._write(self._ids(run_id)[0], **also)
        if attempts:
            self.record_tasks(run_id, attempts)


    def _keep_order(self, mlflow_run_id: str, group: str, name: str) -> int:
        """The position a document had when first logged (a replaced one keeps its place)."""
        run = self.client.call("GET", "runs/get", run_id=mlflow_run_id)["run"]
        tags = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
        earlier = layout.read_document(tags, f"{group}.{name}")
        return int(earlier["order"]) if earlier else time.time_ns()

    def log_data(self, run_id: str, snapshot: DataSnapshot) -> None:
        """Record a data snapshot (also as an MLflow dataset input, where the server has those)."""
        mlflow_run_id, _ = self._ids(run_id)
        name = layout.short_hash(snapshot.name, snapshot.uri)
        order = self._keep_order(mlflow_run_id, "data", name)
        self._write(mlflow_run_id, tags=layout.document_tags(
            f"data.{name}", {"order": order, "snapshot": snapshot.model_dump(mode="json")}))
        self._log_dataset_input(mlflow_run_id, snapshot)

    def log_config(self, run_id: str, config: ConfigFile) -> None:
        """Record a config file or prompt template (a document tag; its copy is a run artifact)."""
        mlflow_run_id, _ = self._ids(run_id)
        name = layout.short_hash(config.name)
        order = self._keep_order(mlflow_run_id, "config", name)
        self._write(mlflow_run_id, tags=layout.document_tags(
            f"config.{name}", {"order": order, "config": config.model_dump(mode="json")}))

    def _log_dataset_input(self, mlflow_run_id: str, snapshot: DataSnapshot) -> None:
        scheme = snapshot.uri.split("://", 1)[0] if "://" in snapshot.uri else "local"
        profile = {k: v for k, v in (("num_rows", snapshot.rows), ("size_bytes", snapshot.size_bytes)) if v is not None}
        dataset = {"name": snapshot.name[:500], "digest": layout.short_hash(snapshot.version or "", snapshot.uri)[:16],
                   "source_type": scheme, "source": json.dumps({"uri": snapshot.uri}),
                   "profile": json.dumps(profile)}
        try:
            self.client.call("POST", "runs/log-inputs", {"run_id": mlflow_run_id, "datasets": [{
                "dataset": dataset, "tags": [{"key": "mlflow.data.context", "value": snapshot.task or "input"}]}]})
        except MlflowApiError as err:  # servers before MLflow 2.4 have no dataset inputs; the tag has it all
            if err.status not in (400, 404):
                raise

    def log_artifact(self, run_id: str, artifact: Artifact) -> None:
        """Record an artifact already put in the artifact store."""
        mlflow_run_id, _ = self._ids(run_id)
        name = layout.short_hash(artifact.name)
        order = self._keep_order(mlflow_run_id, "artifact", name)
        tags = layout.document_tags(f"artifact.{name}", {"order": order, "artifact": artifact.model_dump(mode="json")})
        if artifact.sha256:  # searchable by content: MLflow can filter runs on a tag, not inside a document
            tags[layout.SHA256_TAG_PREFIX + artifact.sha256] = "true"
        self._write(mlflow_run_id, tags=tags)

    def find_artifacts(self, sha256: str) -> list[tuple[RunRecord, Artifact]]:
        """Every run artifact with this sha256, as ``(run, artifact)``, newest run first (every page)."""
        experiments = self._orchestrack_experiments()
        if not experiments or not sha256:
            return []
        body = {"experiment_ids": experiments, "max_results": self.page_size,
                "order_by": ["attributes.start_time DESC"],
                "filter": f"tags.`{layout.SHA256_TAG_PREFIX}{sha256}` = 'true' and tags.`{layout.KIND_TAG}` = 'run'"}
        records = self._records(list(self.client.pages("runs/search", body, "runs")))
        return [(record, artifact) for record in records for artifact in record.artifacts if artifact.sha256 == sha256]

    # -- task attempts as child runs --------------------------------------------------------

    def _children(self, mlflow_run_id: str, experiment_id: str,
                  task_id: str | None = None) -> dict[tuple[str, int], tuple[str, TaskAttempt]]:
        """``(task_id, attempt) -> (child run id, attempt)`` for the run's task runs, every page."""
        return _without_status(self._children_with_status(mlflow_run_id, experiment_id, task_id))

    def _children_with_status(self, mlflow_run_id: str, experiment_id: str,
                              task_id: str | None = None) -> dict[tuple[str, int], tuple[str, TaskAttempt, str]]:
        """``(task_id, attempt) -> (child run id, attempt, MLflow status)``, every page."""
        clauses = [f"tags.`{layout.PARENT_TAG}` = {layout.filter_literal(mlflow_run_id)}",
                   f"tags.`{layout.KIND_TAG}` = 'task'"]
        if task_id is not None:
            clauses.append(f"tags.`{layout.TASK_ID_TAG}` = {layout.filter_literal(task_id)}")
        return _chosen_task_runs(mlflow_run_id, self.client.pages("runs/search", {
            "experiment_ids": [experiment_id], "max_results": self.page_size, "filter": " and ".join(clauses)}, "runs"),
            task_id)

    def record_tasks(self, run_id: str, attempts: list[TaskAttempt]) -> None:
        """Insert each attempt as a child run, or update the stored one while it is still running; a
        final attempt is never replaced.

        An attempt whose child run this instance made or read is written there without a search; so is a
        new attempt of a task whose child runs it read less than :data:`READ_FRESH_S` ago, and wrote none
        of since."""
        mlflow_run_id, experiment_id = self._ids(run_id)
        only = {a.task_id for a in attempts}
        with self._lock:
            seen = dict(self._task_runs.get(run_id, {}))
            fresh = self._fresh(run_id)
            known = ((fresh is not None and not only & fresh.tasks_written)
                     or all((a.task_id, a.attempt) in seen for a in attempts))
            if fresh is not None:
                fresh.tasks_written.update(only)  # another writer may make a twin of what this writes: search next time
        if known:
            stored = {key: entry for key, entry in seen.items() if key[0] in only}
        else:
            stored = self._children_with_status(mlflow_run_id, experiment_id,
                                                next(iter(only)) if len(only) == 1 else None)
            self._remember_task_runs(run_id, stored)
        wanted: dict[tuple[str, int], tuple[str | None, TaskAttempt]] = {}
        unfinished: dict[str, TaskAttempt] = {}
        for attempt in attempts:
            key = (attempt.task_id, attempt.attempt)
            if key in wanted:
                child_id, current = wanted[key]
            elif key in stored:
                child_id, current, mlflow_status = stored[key]
                if current.status is not TaskStatus.RUNNING and mlflow_status == "RUNNING":
                    unfinished[child_id] = current  # its final word landed, its MLflow status did not
            else:
                child_id, current = None, None
            merged = _merge_attempt(current, attempt)
            if merged is not None:
                wanted[key] = (child_id, merged)
        made = _parallel(lambda item: self._write_attempt(run_id, mlflow_run_id, experiment_id, *item),
                         wanted.values())
        _parallel(lambda item: self._update_info(item[0], item[1].status, item[1].ended_at), unfinished.items())
        self._remember_task_runs(run_id, {
            (attempt.task_id, attempt.attempt): (child_id, attempt, layout.TASK_STATUS[attempt.status])
            for child_id, attempt in made})

    def _write_attempt(self, run_id: str, mlflow_run_id: str, experiment_id: str, child_id: str | None,
                       attempt: TaskAttempt) -> tuple[str, TaskAttempt]:
        """Write one attempt into its child run (made now when ``None``); return ``(child run id, attempt)``."""
        tags = {layout.KIND_TAG: "task", layout.PARENT_TAG: mlflow_run_id, layout.RUN_ID_TAG: run_id,
                layout.TASK_ID_TAG: attempt.task_id[: layout.TAG_VALUE_LIMIT], layout.ATTEMPT_TAG: str(attempt.attempt),
                layout.STATUS_TAG: attempt.status.value,
                **layout.document_tags("task", attempt.model_dump(mode="json"))}
        if attempt.failure is not None:
            tags[layout.REASON_TAG] = attempt.failure.reason.value
            tags[layout.SENTENCE_TAG] = attempt.failure.summary[: layout.TAG_VALUE_LIMIT]
            if attempt.failure.fingerprint:
                tags[layout.FINGERPRINT_TAG] = attempt.failure.fingerprint
        if attempt.status is not TaskStatus.RUNNING:
            tags[_FINAL_AT_TAG] = str(time.time_ns())
        adopted = None
        if child_id is None:
            child_id = adopted = self._adopt_injected_task_run(mlflow_run_id)
        if child_id is None:  # one request makes the child run with every tag; a final one needs one more
            created = self.client.call("POST", "runs/create", {
                "experiment_id": experiment_id, "run_name": f"{attempt.name} #{attempt.attempt}",
                "start_time": layout.millis(attempt.started_at or utcnow()),
                "tags": [{"key": k, "value": v} for k, v in tags.items()]})
            child_id = created["run"]["info"]["run_id"]
        else:
            self._write(child_id, tags=tags)
        final = attempt.status is not TaskStatus.RUNNING
        if final or adopted:  # the adopted run was named by KFP's plugin: give it the task's name
            self._update_info(child_id, attempt.status if final else None, attempt.ended_at,
                              f"{attempt.name} #{attempt.attempt}" if adopted else None)
        return child_id, attempt

    def _adopt_injected_task_run(self, mlflow_run_id: str) -> str | None:
        """KFP's MLflow plugin made this task's run (``MLFLOW_RUN_ID``) under our run: use it, once."""
        with self._lock:
            if self._adopted_task_run is not None:
                return None
            self._adopted_task_run = ""
        injected = self._injected_run()
        if injected is None:
            return None
        tags = {t["key"]: t["value"] for t in injected["data"].get("tags", [])}
        if tags.get(layout.PARENT_TAG) != mlflow_run_id or tags.get(layout.KIND_TAG):
            return None
        self._adopted_task_run = str(injected["info"]["run_id"])
        return self._adopted_task_run


#: Writes :meth:`MlflowStore.apply_writes` makes together with the ones of the same run next to them.
_JOINABLE = ("log_params", "log_metrics", "set_tags", "update_run", "record_tasks")


def _joinable(op: str, args: dict[str, Any]) -> bool:
    """Whether a journaled write can go with others: not a status or name change (``runs/update``)."""
    return op in _JOINABLE and not (op == "update_run" and {"status", "name"} & set(args["changes"]))


def _joins(group: list[tuple[str, dict[str, Any]]], op: str, args: dict[str, Any]) -> bool:
    """Whether a write can join ``group``: the same run, and no param given another value in it."""
    if not _joinable(op, args) or args["run_id"] != group[0][1]["run_id"]:
        return False
    if op != "log_params":
        return True
    given = {k: v for o, a in group if o == "log_params" for k, v in a["params"].items()}
    return all(given.get(key, value) == value for key, value in args["params"].items())


def _metric_entries(points: list[MetricPoint]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """``(log-batch metrics, tags saying what each name means)`` for metric points."""
    items: list[dict[str, Any]] = []
    tags: dict[str, str] = {}
    for point in points:
        entry = {"value": point.value, "timestamp": layout.millis(point.timestamp), "step": point.step or 0}
        items.append({"key": layout.metric_name(point), **entry})
        tags.update(layout.metric_meaning_tag(point))
        if point.task is not None and point.slice is None:  # also the run's own value, as in every store
            items.append({"key": layout.safe_name(point.key), **entry})
            plain = point.model_copy(update={"task": None})
            tags.update(layout.metric_meaning_tag(plain))
    return items, tags


def _chosen_task_runs(mlflow_run_id: str, runs: Iterable[dict[str, Any]], task_id: str | None = None
                      ) -> dict[tuple[str, int], tuple[str, TaskAttempt, str]]:
    """``(task_id, attempt) -> (child run id, attempt, MLflow status)`` of the task runs under one MLflow
    run among ``runs`` (only ``task_id``'s when given)."""
    found: dict[tuple[str, int], tuple[str, TaskAttempt, str, str]] = {}
    for child in runs:
        tags = {t["key"]: t["value"] for t in child["data"].get("tags", [])}
        if tags.get(layout.KIND_TAG) != "task" or tags.get(layout.PARENT_TAG) != mlflow_run_id:
            continue
        attempt = TaskAttempt.model_validate(layout.read_document(tags, "task"))
        if task_id is not None and attempt.task_id != task_id:
            continue
        key = (attempt.task_id, attempt.attempt)
        final_at = tags.get(_FINAL_AT_TAG) or "~"  # "~" sorts after every number: running
        current = found.get(key)
        # Two processes may have made the same attempt's child run at once: the first final word
        # stands, as in every store.
        if current is None or (final_at, child["info"]["run_id"]) < (current[2], current[0]):
            found[key] = (child["info"]["run_id"], attempt, final_at, child["info"].get("status", "RUNNING"))
    return {key: (child_id, attempt, status) for key, (child_id, attempt, _, status) in found.items()}


def _without_status(children: dict[tuple[str, int], tuple[str, TaskAttempt, str]]
                    ) -> dict[tuple[str, int], tuple[str, TaskAttempt]]:
    """Task runs as :meth:`MlflowStore._assemble` takes them: ``(child run id, attempt)`` by attempt."""
    return {key: (child_id, attempt) for key, (child_id, attempt, _) in children.items()}


def _status_of(run: dict[str, Any]) -> RunStatus:
    """orchestrack's status of an MLflow run of ours (its tag; MLflow's own status has fewer values)."""
    tags = {t["key"]: t["value"] for t in run.get("data", {}).get("tags", [])}
    return RunStatus(tags.get(layout.STATUS_TAG, "running"))


@dataclasses.dataclass
class _Seen:
    """What one store instance knows of one of our runs: what a whole read of it (or making it) found, and
    what the instance wrote since. It stands for MLflow's copy for READ_FRESH_S after ``read_at``."""

    status: RunStatus
    params: dict[str, str]  # MLflow params: name -> text
    overridden: set[str] = dataclasses.field(default_factory=set)  # its orchestrack.param.* tags
    tasks_written: set[str] = dataclasses.field(default_factory=set)  # task ids it wrote attempts of since
    read_at: float = dataclasses.field(default_factory=time.monotonic)

    @classmethod
    def of(cls, run: dict[str, Any]) -> _Seen:
        """What a searched or fetched MLflow run of ours says."""
        data = run.get("data", {})
        return cls(_status_of(run), {p["key"]: p["value"] for p in data.get("params", [])},
                   {t["key"] for t in data.get("tags", []) if t["key"].startswith(_PARAM_TAG)})


def _as_opened(record: RunRecord) -> RunRecord:
    """What a run made from ``record`` holds: its fields, tags and params (``open_run`` writes nothing else)."""
    return record.model_copy(deep=True, update={
        "data": [], "configs": [], "artifacts": [], "tasks": [], "metrics": {}, "slice_metrics": {},
        "task_metrics": {}, "metric_series": {}})


def _merge_attempt(current: TaskAttempt | None, new: TaskAttempt) -> TaskAttempt | None:
    """What to store for an attempt given the stored one (``None``: leave it), as the embedded store does."""
    if current is None:
        return new
    if current.status is not TaskStatus.RUNNING:
        return None
    if new.started_at is None and current.started_at is not None:
        return new.model_copy(update={"started_at": current.started_at})
    return new


def _in_task_order(attempts: list[TaskAttempt]) -> list[TaskAttempt]:
    """The embedded store's order: by start (unstarted last), then task id and attempt."""
    return sorted(attempts, key=lambda a: (a.started_at is None, a.started_at or utcnow(), a.task_id, a.attempt))
