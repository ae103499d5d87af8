"""The one place where runs and task attempts are opened, changed and closed.

Adapters (Airflow, Prefect, KFP) and user code both come through here. Opening is idempotent by
key; closing is idempotent; every store write goes through :meth:`Run._write`, which logs and
spools a failing write instead of raising it (unless ``ORCHESTRACK_STRICT`` is set), so tracking
never changes the outcome of the task it tracks.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from orchestrack import inputs
from orchestrack.capture import capture_code, capture_environment, snapshot_data
from orchestrack.delivery import (
    apply_write,
    configured_uri,
    courier_for,
    is_transient,
    settle,
    stage_artifact,
    store_down,
)
from orchestrack.errors import InvalidInputError, NoActiveRunError, RunNotFoundError, StoreError
from orchestrack.evidence import redact
from orchestrack.lease import leased, leases, lost_because
from orchestrack.metric_buffer import MetricBuffer, flush_all
from orchestrack.outcome import Outcome, RunEnd, TaskReport, classify, conclusion, left_running, task_failure
from orchestrack.record import (
    Artifact,
    CodeInfo,
    ConfigFile,
    DataSnapshot,
    Failure,
    FailureReason,
    Features,
    LeakageCheck,
    LlmSettings,
    MetricPoint,
    OrchestratorInfo,
    Purpose,
    RunRecord,
    RunStatus,
    TaskAttempt,
    TaskStatus,
    last_attempts,
    utcnow,
)
from orchestrack.settings import Settings, load_settings
from orchestrack.spool import Spool, fallback_dir, pending_writes, replay
from orchestrack.stores import RunQuery, Store, open_artifact_store, open_store

log = logging.getLogger(__name__)

#: Run ids are a uuid5 of the key in this namespace, so every process derives the same id.
RUN_NAMESPACE = uuid.UUID("6f1c7f0e-2d4b-5a8e-9c3e-0b7d4e5a1c2f")

_active_run: ContextVar[Run | None] = ContextVar("orchestrack_run", default=None)
_active_task: ContextVar[TaskAttempt | None] = ContextVar("orchestrack_task", default=None)
_process_run: Run | None = None  # fallback for threads that do not inherit the context
_spools: dict[Path, Spool] = {}
_replayed: set[str] = set()
_lock = threading.Lock()


def run_url(run_id: str, key: str, settings: Settings | None = None) -> str | None:
    """Where a person opens one run: the ``ui_url`` setting filled in, else the store's own page for
    it (the MLflow UI's run page), else ``None``. A ``ui_url`` without a ``{`` placeholder is the
    address of ``orchestrack ui``: ``http://127.0.0.1:8765`` links to ``http://127.0.0.1:8765/runs/<run_id>``."""
    settings = settings or load_settings()
    if settings.ui_url and "{" not in settings.ui_url:
        return f"{settings.ui_url.rstrip('/')}/runs/{quote(run_id, safe='')}"
    if settings.ui_url:
        return settings.ui_url.format(run_id=run_id, key=quote(key, safe=""))
    try:
        store = open_store(settings.resolved_tracking_uri, busy_timeout_s=settings.busy_timeout_s)
        page = getattr(store, "run_page_url", None)
        return page(run_id) if page is not None else None
    except Exception as err:  # a link is never worth failing a task or a UI page for
        log.debug("no run page for %s: %s", key, err)
        return None


def run_id_for(key: str) -> str:
    """The run id of ``key``: the same on every machine, so retries and workers agree without a lookup."""
    return uuid.uuid5(RUN_NAMESPACE, key).hex


def _spool_for(settings: Settings) -> Spool:
    directory = settings.resolved_spool_dir
    with _lock:
        spool = _spools.get(directory)
        if spool is None:
            spool = _spools[directory] = Spool(directory)
    return spool


class Run:
    """A handle on one run. Get one from :func:`start_run`; it is cheap and holds no record.

    Example::

        run = orchestrack.start_run(key="nightly/2026-11-28", owner="ml", purpose="tuning")
        with run.task("train"):
            orchestrack.log_metrics({"auc": 0.91})
        run.finish()
    """

    def __init__(self, record: RunRecord, store: Store, settings: Settings) -> None:
        self.run_id = record.run_id
        self.key = record.key
        self.store = store
        self.settings = settings
        self._ended_here: dict[str, TaskAttempt] = {}
        self._faults = 0
        self._units: dict[str, str] = {}
        self._metrics = MetricBuffer(lambda points: self._write("log_metrics", run_id=self.run_id, points=points),
                                     flush_s=0 if settings.strict else settings.metric_flush_s)

    def __repr__(self) -> str:
        return f"Run(key={self.key!r}, run_id={self.run_id!r})"

    # -- store writes and reads, fail-open ----------------------------------------------------

    def _fault(self, doing: str, err: Exception) -> None:
        """A store fault: raise in strict mode, else log it (the first of a run as a warning)."""
        if self.settings.strict:
            raise err
        level = logging.DEBUG if self._faults else logging.WARNING
        self._faults += 1
        log.log(level, "orchestrack could not %s for run %r (%s); no impact on the task", doing, self.key,
                redact(str(err)))

    def _write(self, op: str, **args: Any) -> bool:
        """Make one store write; on failure spool it (or raise in strict mode).

        A remote store's writes go to this process's journal and reach the store in the background
        (:mod:`orchestrack.delivery`); strict mode writes them at once, so that a fault raises.
        """
        args = inputs.scrub(args)  # nothing secret-looking reaches a store or the spool, by any path
        if getattr(self.store, "remote", False) and not self.settings.strict:
            try:
                self._journal(op, args)
                return True
            except Exception as err:
                log.error("orchestrack could not journal %s for run %r (%s); this write is lost",
                          op, self.key, redact(str(err)))
                return False
        try:
            getattr(self.store, op)(**args)
            return True
        except Exception as err:
            if self.settings.strict:
                raise
            try:
                where = _spool_for(self.settings).write(self.store.uri, op, **args)
            except Exception as spool_err:
                log.error("orchestrack could not %s for run %r (%s) nor spool it (%s); this write is lost",
                          op, self.key, redact(str(err)), redact(str(spool_err)))
                return False
            self._fault(f"{op} (spooled to {where}; run `orchestrack replay` once the store is back)", err)
            return False

    def _settle(self) -> None:
        """Let what this process logged reach the store before a read or an end (bounded in time)."""
        settle(self.settings.delivery_timeout_s)

    def _store_down(self) -> bool:
        """Whether this process's courier found the store down: reads then fail at once instead of waiting."""
        return store_down(self.store.uri)

    def _read_progress(self, task_id: str | None = None) -> tuple[RunStatus | None, list[TaskAttempt]]:
        """The stored status and attempts, or ``(None, [])`` when the store cannot be read."""
        self._settle()
        if self._store_down():
            self._fault("read its progress", StoreError(f"{self.store.uri} is down; writes wait in the journal"))
            return None, []
        try:
            return self.store.get_progress(self.run_id, task_id)
        except Exception as err:
            self._fault("read its progress", err)
            return None, []

    @property
    def record(self) -> RunRecord:
        """The run as stored now."""
        self._settle()
        return self.store.get_run(self.run_id)

    @property
    def url(self) -> str | None:
        """Where a person opens this run (``ORCHESTRACK_UI_URL`` filled in), or ``None`` when unset."""
        return run_url(self.run_id, self.key, self.settings)

    def env(self) -> dict[str, str]:
        """Environment variables that attach a subprocess's fluent calls to this run."""
        return {"ORCHESTRACK_RUN_KEY": self.key, "ORCHESTRACK_TRACKING_URI": self.store.uri,
                "ORCHESTRACK_ARTIFACT_URI": self.settings.resolved_artifact_uri}

    # -- tasks ------------------------------------------------------------------------------

    @contextmanager
    def task(self, name: str, attempt: int | None = None, *, task_id: str | None = None,
             details: Mapping[str, Any] | None = None) -> Iterator[TaskAttempt]:
        """Record one task attempt around a block; an exception is classified, recorded and re-raised.

        ``attempt`` defaults to one more than the task's latest recorded attempt; ``task_id`` (the
        orchestrator's identity of the task) defaults to ``name``.
        """
        started = self.start_task(name, attempt, task_id=task_id, details=details)
        run_token = _active_run.set(self)
        task_token = _active_task.set(started)
        try:
            yield started
        except BaseException as error:
            status = _status_of(error)
            if status is TaskStatus.SUCCEEDED:
                self.end_task(started, TaskStatus.SUCCEEDED)
            else:
                code = error.code if isinstance(error, SystemExit) and isinstance(error.code, int) else None
                self.end_task(started, status, error=error, exit_code=code)
            raise
        else:
            self.end_task(started, TaskStatus.SUCCEEDED)
        finally:
            _active_task.reset(task_token)
            _active_run.reset(run_token)

    def start_task(self, name: str, attempt: int | None = None, *, task_id: str | None = None,
                   started_at: datetime | None = None, hostname: str | None = None,
                   details: Mapping[str, Any] | None = None) -> TaskAttempt:
        """Record that a task attempt started (adapters call this from their "task running" hook)."""
        inputs.check_name(name, "task name", "run.task()")
        task_id = task_id or name
        if attempt is not None and (not isinstance(attempt, int) or isinstance(attempt, bool)
                                    or not 1 <= attempt <= inputs.MAX_INT):
            raise InvalidInputError(f"attempt {attempt!r} of task {name!r} (run.task()) must be an integer >= 1")
        # Read the run as stored, not as this handle last saw it: another process may have closed it.
        status, tasks = self._read_progress(task_id)
        if attempt is None:
            attempt = 1 + max((a.attempt for a in tasks), default=0)
        if status is not None and status is not RunStatus.RUNNING and not any(a.attempt == attempt for a in tasks):
            # A new attempt on a closed run means the orchestrator re-ran part of it (e.g. an
            # Airflow "clear"): the run is open again until it is finished anew.
            self._write("update_run", run_id=self.run_id,
                        changes={"status": RunStatus.RUNNING, "ended_at": None, "failure": None})
        started = leased(TaskAttempt(task_id=task_id, name=name, attempt=attempt, status=TaskStatus.RUNNING,
                                     started_at=started_at or utcnow(), hostname=hostname or socket.gethostname(),
                                     details=dict(details or {})), self.settings.lease_s)
        self._write("record_tasks", run_id=self.run_id, attempts=[started])
        leases.hold(self, [started])  # renewed by this process until the attempt ends
        return started

    def end_task(self, attempt: TaskAttempt | tuple[str, int], status: TaskStatus | str = TaskStatus.SUCCEEDED, *,
                 error: BaseException | None = None, failure: Failure | None = None,
                 text: str | None = None, exit_code: int | None = None,
                 ended_at: datetime | None = None) -> TaskAttempt:
        """Record how a task attempt ended; a failure is classified from ``error``/``text``/``exit_code``.

        ``attempt`` is what :meth:`start_task` returned, or ``(task_id, attempt)`` from another
        process. An attempt already recorded as ended keeps its first ending.
        """
        status = inputs.check_choice(status, TaskStatus, "task status", "run.end_task()")
        if isinstance(attempt, tuple):
            task_id, number = attempt
            known = next((a for a in self._read_progress(task_id)[1] if a.attempt == number), None)
            attempt = known or TaskAttempt(task_id=task_id, name=task_id, attempt=number, status=TaskStatus.RUNNING)
        if failure is None and status in (TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.UPSTREAM_FAILED):
            outcome = {TaskStatus.CANCELLED: Outcome.CANCELLED,
                       TaskStatus.UPSTREAM_FAILED: Outcome.UPSTREAM_FAILED}.get(status, Outcome.FAILED)
            failure = task_failure(TaskReport(task_id=attempt.task_id, name=attempt.name, attempt=attempt.attempt,
                                              outcome=outcome, message=text, error=error, exit_code=exit_code))
        if failure is not None and failure.task is None:
            failure = failure.model_copy(update={"task": attempt.name})
        ended = attempt.model_copy(update={"status": status, "ended_at": ended_at or utcnow(), "failure": failure,
                                           "lease_expires_at": None, "lease_holder": None})
        leases.release(self.run_id, [(ended.task_id, ended.attempt)])
        flush_all()  # what the attempt logged is written before its end,
        self._write("record_tasks", run_id=self.run_id, attempts=[ended])
        self._settle()  # and both reach the store before the task goes on (bounded in time)
        self._ended_here[ended.task_id] = ended
        return ended

    def last_attempts(self) -> dict[str, TaskAttempt]:
        """The latest stored attempt of every task, by ``task_id`` (read without metrics or artifacts)."""
        return last_attempts(self._read_progress()[1])

    def report_tasks(self, reports: Iterable[TaskReport], *, hold: bool = False) -> list[TaskAttempt]:
        """Record task attempts as the orchestrator reports them, in one store write.

        Adapters call this with what they observed (see :class:`~orchestrack.outcome.TaskReport`);
        status and failure are decided here. An attempt already recorded as ended keeps its ending.
        ``hold=True``: the attempts reported running run in this process, which holds their leases
        (renewed until they are reported ended); leave it off for attempts seen from elsewhere.
        """
        attempts = [report.attempt_record() for report in reports]
        if hold:
            attempts = [leased(a, self.settings.lease_s) for a in attempts]
        newest = {(a.task_id, a.attempt): a for a in attempts}  # a batch may hold an attempt's start and end
        leases.release(self.run_id, [key for key, a in newest.items() if a.status is not TaskStatus.RUNNING])
        if any(a.status is not TaskStatus.RUNNING for a in attempts):
            flush_all()
        if attempts:
            self._write("record_tasks", run_id=self.run_id, attempts=attempts)
            self._ended_here.update((a.task_id, a) for a in attempts if a.status is not TaskStatus.RUNNING)
        if hold:
            leases.hold(self, [a for a in newest.values() if a.status is TaskStatus.RUNNING])
        return attempts

    # -- logging ----------------------------------------------------------------------------

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Set params (scalars; lists and dicts become JSON, see docs/configuration.md)."""
        self._write("log_params", run_id=self.run_id, params=inputs.coerce_params(params, "log_params"))

    def log_metrics(self, metrics: Mapping[str, Any], *, step: int | None = None,
                    slice: str | Mapping[str, Any] | None = None, unit: str | Mapping[str, str] | None = None) -> None:
        """Log metric values, optionally at a ``step``, for a ``slice`` such as ``"country=DE"``, and
        with a ``unit`` (one for all of them, or one per metric: ``{"latency": "ms"}``)."""
        if type(metrics) is not dict and not isinstance(metrics, Mapping):  # a dict skips the ABC check
            raise InvalidInputError(f"metrics (log_metrics) must be a mapping of name to number such as "
                                    f"{{'auc': 0.91}}, got {type(metrics).__name__}")
        if step is not None:
            inputs.check_count(step, "step", "log_metrics step=")
        label = None if slice is None else inputs.slice_label(slice, "log_metrics slice=")
        now = utcnow()
        current = _active_task.get()
        task = current.task_id if current is not None else None
        points = []
        for k, v in metrics.items():
            points.append(MetricPoint.checked(k, inputs.check_metric(k, v, "log_metrics"), step, label, task, now))
        if unit is not None:
            self._set_units(inputs.metric_units(unit, list(metrics), "log_metrics unit="))
        if points:
            self._metrics.add(points)

    def log_dataset(self, name: str, uri: str | os.PathLike[str], *, version: str | None = None,
                    rows: int | None = None, size_bytes: int | None = None,
                    filters: Mapping[str, Any] | str | None = None, labels_as_of: date | datetime | str | None = None,
                    leakage_check: LeakageCheck | Mapping[str, Any] | str | None = None) -> DataSnapshot:
        """Record an input data snapshot; local files get a content version (see :func:`snapshot_data`).

        ``filters`` is what selected the rows (a mapping such as ``{"country": ["DE", "FR"]}`` or an
        expression), ``labels_as_of`` when the labels were refreshed, and ``leakage_check`` whether
        leakage screening ran: ``"passed"``, ``"failed"``, ``"not-run"``, or
        ``{"status": "failed", "note": "customer_id predicts the label"}``.
        """
        inputs.check_name(name, "dataset name", "log_dataset")
        inputs.check_path(uri, f"uri of dataset {name!r}", "log_dataset uri=")
        if version is not None:
            inputs.check_name(version, f"version of dataset {name!r}", "log_dataset version=", limit=1000)
        if size_bytes is not None:
            inputs.check_count(size_bytes, f"size_bytes of dataset {name!r}", "log_dataset size_bytes=")
        if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int)
                                 or not 0 <= rows <= inputs.MAX_INT):
            raise InvalidInputError(f"rows {rows!r} of dataset {name!r} (log_dataset rows=) must be an integer >= 0")
        screening = inputs.leakage_check(leakage_check, f"log_dataset {name!r} leakage_check=")
        snapshot = snapshot_data(name, uri, version=version, rows=rows, size_bytes=size_bytes,
                                 hash_limit_bytes=self.settings.data_hash_limit_mb << 20)
        snapshot.filters = inputs.data_filters(filters, f"log_dataset {name!r} filters=")
        snapshot.labels_as_of = inputs.moment(labels_as_of, f"log_dataset {name!r} labels_as_of=")
        snapshot.leakage_check = screening
        snapshot.task = _task_name()
        self._write("log_data", run_id=self.run_id, snapshot=snapshot)
        return snapshot

    def log_config(self, path: str | os.PathLike[str], *, name: str | None = None,
                   source: str | None = None) -> ConfigFile:
        """Record a config file or folder (training YAML, a Hydra output folder, a feature config):
        its hash and parsed keys in the record, the file itself as an artifact (``configs/NAME``), so
        that ``compare`` shows which keys changed between runs. Secrets in it are masked in both.
        ``source`` says where the file came from when ``path`` is a copy (adapters that carry a
        config to a container).

        Example::

            orchestrack.log_config("conf/train.yaml")
        """
        from orchestrack.configs import read_config

        inputs.check_path(path, "config path", "log_config path=")
        config, files = read_config(path, name=name, where="log_config")
        if source is not None:
            config = config.model_copy(update={"source": inputs.check_name(source, "config source",
                                                                           "log_config source=", limit=4096)})
        return self._store_config(config, files, Path(path))

    def log_prompt(self, name: str, template: str | None = None, *, path: str | os.PathLike[str] | None = None
                   ) -> ConfigFile:
        """Record an LLM prompt template, given as text or as a file: hashed and stored like a config.

        Example::

            orchestrack.log_prompt("answer", "Answer from the context only.\n{context}\nQ: {question}")
        """
        from orchestrack.configs import read_config

        inputs.check_name(name, "prompt name", "log_prompt")
        if (template is None) == (path is None):
            raise InvalidInputError(f"log_prompt {name!r} takes the template as text or as path=, exactly one of them")
        if path is not None:
            config, files = read_config(path, name=name, kind="prompt", where="log_prompt path=")
            return self._store_config(config, files, Path(path))
        if not isinstance(template, str):
            raise InvalidInputError(
                f"prompt {name!r} (log_prompt template=) must be text, got {type(template).__name__}")
        with tempfile.TemporaryDirectory(prefix="orchestrack-prompt-") as folder:
            file = Path(folder) / "prompt.txt"
            file.write_text(template, encoding="utf-8")
            config, files = read_config(file, name=name, kind="prompt", where="log_prompt")
            config = config.model_copy(update={"source": "inline"})
            return self._store_config(config, files, file)

    def _store_config(self, config: ConfigFile, files: dict[str, bytes], source: Path) -> ConfigFile:
        """Keep the copy of a config as the artifact ``configs/NAME`` (a masked copy when it held
        secrets) and record the config."""
        artifact_name = f"{config.kind}s/{config.name}"
        if not config.redacted:
            stored = self.log_artifact(source, name=artifact_name, kind=config.kind)
        else:
            with tempfile.TemporaryDirectory(prefix="orchestrack-config-") as folder:
                copy = Path(folder) / source.name
                if source.is_dir():
                    for relative, content in files.items():
                        (copy / relative).parent.mkdir(parents=True, exist_ok=True)
                        (copy / relative).write_bytes(content)
                else:
                    copy.write_bytes(next(iter(files.values())))
                stored = self.log_artifact(copy, name=artifact_name, kind=config.kind)
        config = config.model_copy(update={"artifact": stored.name if stored else None, "task": _task_name()})
        self._write("log_config", run_id=self.run_id, config=config)
        return config

    def log_artifact(self, path: str | os.PathLike[str], *, name: str | None = None, kind: str | None = None
                     ) -> Artifact | None:
        """Store a file or folder content-addressed and record it.

        ``kind`` (``model``, ``dataset``, ``report`` ...) defaults to ``file`` or ``folder``.
        """
        source = Path(inputs.check_path(path, "artifact path", "log_artifact path="))
        kind = kind or ("folder" if source.is_dir() else "file")
        name = inputs.check_artifact_name(name or source.name, "log_artifact name=")
        inputs.check_name(kind, "artifact kind", "log_artifact kind=")
        if not source.exists():
            raise InvalidInputError(
                f"artifact {name!r}: {str(source)!r} does not exist (log_artifact path=, working directory "
                f"{os.getcwd()}); write it before logging it")
        artifact_uri = self.settings.resolved_artifact_uri
        try:
            uri, sha256, size = open_artifact_store(artifact_uri).put(source, name)
        except InvalidInputError:
            raise
        except Exception as err:
            if self.settings.strict:
                raise
            return self._defer_artifact(source, name, kind, artifact_uri, err)
        artifact = Artifact(name=name, kind=kind, uri=uri, sha256=sha256, size_bytes=size, task=_task_name())
        self._write("log_artifact", run_id=self.run_id, artifact=artifact)
        return artifact

    def _defer_artifact(self, source: Path, name: str, kind: str, artifact_uri: str, err: Exception) -> Artifact:
        """The artifact store cannot take ``source`` now: record it pointing at a copy kept in the spool
        folder, and journal its upload (delivered with the other writes, or by ``orchestrack replay``).
        When not even a copy can be kept, record it pointing at ``source``."""
        try:
            staged: Path | None = stage_artifact(source, self.settings.resolved_spool_dir)
            log.warning("orchestrack could not store artifact %r of run %r (%s); a copy waits in %s and is "
                        "uploaded when the artifact store is back (no impact on the task)",
                        name, self.key, redact(str(err)), staged)
        except OSError as copy_err:
            staged = None
            log.warning("orchestrack could not store artifact %r of run %r (%s) nor keep a copy (%s); recorded "
                        "pointing at %s", name, self.key, redact(str(err)), copy_err, source.resolve())
        artifact = Artifact(name=name, kind=kind, uri=(staged or source.resolve()).as_uri(), sha256="",
                            size_bytes=source.stat().st_size if source.is_file() else 0, task=_task_name())
        self._write("log_artifact", run_id=self.run_id, artifact=artifact)
        if staged is not None:
            self._journal("put_artifact", inputs.scrub({"run_id": self.run_id, "artifact": artifact,
                                                        "staged": str(staged), "artifact_uri": artifact_uri}))
        return artifact

    def _journal(self, op: str, args: dict[str, Any]) -> None:
        """Leave a write for later delivery: a remote store's courier takes it, else the spool file."""
        if getattr(self.store, "remote", False):
            courier_for(self.store, self.settings.resolved_spool_dir,
                        linger_s=self.settings.metric_flush_s).send(op, args)
        else:
            _spool_for(self.settings).write(self.store.uri, op, **args)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set tags (values become text)."""
        self._write("set_tags", run_id=self.run_id, tags=inputs.coerce_tags(tags, "set_tags"))

    def log_features(self, columns: list[str], *, target: str | None = None, joins: list[str] | None = None,
                     transformations: list[str] | None = None, feature_store: str | None = None,
                     feature_store_version: str | None = None, **extra: Any) -> None:
        """Record the feature set: columns, target, how they were made (``joins``,
        ``transformations``), the feature store's view and version, and any extra facts.

        Example::

            orchestrack.log_features(["age", "spend_30d"], target="churned",
                                     joins=["orders LEFT JOIN customers ON customer_id"],
                                     transformations=["log1p(spend_30d)"],
                                     feature_store="feast:churn_features", feature_store_version="7")
        """
        if isinstance(columns, str):  # one column, not its letters
            columns = [columns]
        if not isinstance(columns, (list, tuple)):
            raise InvalidInputError(f"feature columns (log_features columns=) must be a list of names, "
                                    f"got {type(columns).__name__} {columns!r}")
        for column in columns:
            inputs.check_name(column, "feature column", "log_features")
        lists = {label: inputs.text_list(value, f"log_features {label}=")
                 for label, value in (("joins", joins), ("transformations", transformations))}
        for label, value in (("feature_store", feature_store), ("feature_store_version", feature_store_version)):
            if value is not None:
                inputs.check_name(value, label.replace("_", " "), f"log_features {label}=")
        features = Features(columns=list(columns), target=target, feature_store=feature_store,
                            feature_store_version=feature_store_version, **lists, **extra)
        self._write("update_run", run_id=self.run_id, changes={"features": features})

    def log_llm(self, *, provider: str | None = None, model: str | None = None,
                retrieval: Mapping[str, Any] | None = None, **extra: Any) -> None:
        """Record how an LLM run called its model: provider, model, retrieval settings (index,
        ``top_k``, embedding model ...) and extra facts. Prompts go in :meth:`log_prompt`, latency and
        cost in :meth:`log_llm_usage`.

        Example::

            orchestrack.log_llm(provider="openai", model="gpt-4o-mini-2024-07-18",
                                retrieval={"index": "docs-2026-11", "top_k": 8, "embedding": "bge-m3"})
        """
        settings = LlmSettings(provider=provider, model=model,
                               retrieval=inputs.coerce_params(retrieval or {}, "log_llm retrieval="),
                               **inputs.coerce_params(extra, "log_llm"))
        self._write("update_run", run_id=self.run_id, changes={"llm": settings})

    def log_llm_usage(self, *, latency_s: float | None = None, cost: float | None = None, currency: str = "USD",
                      input_tokens: int | None = None, output_tokens: int | None = None,
                      step: int | None = None, slice: str | Mapping[str, Any] | None = None) -> None:
        """Log one request's or batch's latency, cost and tokens as metrics with units (``llm.latency``
        in s, ``llm.cost`` in ``currency``, ``llm.input_tokens`` and ``llm.output_tokens`` in tokens);
        ``step`` numbers the request or batch, so each becomes a series.

        Example::

            run.log_llm_usage(latency_s=0.84, cost=0.0021, input_tokens=812, output_tokens=95, step=i)
        """
        inputs.check_name(currency, "currency", "log_llm_usage currency=")
        values = {"llm.latency": (latency_s, "s"), "llm.cost": (cost, currency),
                  "llm.input_tokens": (input_tokens, "tokens"), "llm.output_tokens": (output_tokens, "tokens")}
        given = {key: value for key, (value, _) in values.items() if value is not None}
        if not given:
            raise InvalidInputError("log_llm_usage was given nothing to log; pass latency_s=, cost=, "
                                    "input_tokens= or output_tokens=")
        self.log_metrics(given, step=step, slice=slice, unit={key: values[key][1] for key in given})

    def _set_units(self, units: Mapping[str, str]) -> None:
        """Record metric units, once per process and metric (the store merges them by metric)."""
        new = {key: unit for key, unit in units.items() if self._units.get(key) != unit}
        if new:
            self._units.update(new)
            self._write("update_run", run_id=self.run_id, changes={"metric_units": new})

    # -- closing ----------------------------------------------------------------------------

    def finish(self, status: RunStatus | str | None = None, *, failure: Failure | None = None) -> RunRecord | None:
        """Close the run; harmless on a closed run.

        Without ``status`` the run is ``failed`` when a task's last attempt failed, else
        ``succeeded``. The run's failure is the given one, else the first failed task's. Attempts
        still running are closed as cancelled, except those whose holder died (lease expired, process
        gone): they end failed / ``infra-error``. Returns the closed record without its metric series
        (``run.record`` reads them; ``None`` if the store could not be read: the close is then spooled).
        """
        if status is not None:
            status = inputs.check_choice(status, RunStatus, "run status", "run.finish()")
            if status is RunStatus.RUNNING:
                raise InvalidInputError("run.finish(status='running') is not a final status; "
                                        "use succeeded, failed or cancelled")
        if status is None:
            return self._close(None, failure=failure)
        return self._close(RunEnd(Outcome(status.value)), failure=failure)

    def conclude(self, end: RunEnd) -> RunRecord | None:
        """Close the run as the orchestrator says it ended (adapters call this; see :mod:`orchestrack.outcome`).

        Harmless on a closed run: a run, once closed, only gains what it was missing.
        """
        return self._close(end, failure=None)

    def _close(self, end: RunEnd | None, *, failure: Failure | None) -> RunRecord | None:
        """Close the run as ``end`` says (``None``: as its tasks say), ``failure`` overriding the decided one."""
        now = (end.ended_at if end is not None else None) or utcnow()
        self._settle()
        try:
            if self._store_down():
                raise StoreError(f"{self.store.uri} is down; writes wait in the journal")
            record = self.store.get_run_without_series(self.run_id)  # closing needs no metric series
        except Exception as err:
            self._fault("read the run to close it (closing from what this process saw)", err)
            seen = self._ended_here
            status, decided = conclusion(end or RunEnd(_derived_outcome(seen)), seen)
            self._write("update_run", run_id=self.run_id,
                        changes={"status": status, "ended_at": now, "failure": failure or decided})
            self._release()
            return None
        if record.finished:
            self._release()
            return record
        # Attempts whose holder died (lease expired, process gone) were lost, not stopped with the run:
        # end them infra-error first, so the run's failure can be theirs.
        found = [(a, why) for a in record.tasks if (why := lost_because(a)) is not None]
        lost = {(a.task_id, a.attempt): a for a in self.report_tasks(
            TaskReport(task_id=a.task_id, name=a.name, attempt=a.attempt, outcome=Outcome.LOST, message=why,
                       started_at=a.started_at, ended_at=now, hostname=a.hostname, cached=a.cached,
                       details=a.details) for a, why in found)}
        if lost:
            record = record.model_copy(update={"tasks": [lost.get((a.task_id, a.attempt), a) for a in record.tasks]})
        # Decide from the attempts as the orchestrator reported them, then close those left running.
        latest = {task_id: a for task_id, a in record.last_attempts().items() if a.status is not TaskStatus.RUNNING}
        end = end or RunEnd(_derived_outcome(latest))
        status, decided = conclusion(end, latest)
        still_running = [a for a in record.tasks if a.status is TaskStatus.RUNNING]
        if still_running:
            closing = RunEnd(end.outcome, end.message, ended_at=now, by_person=end.by_person)
            closed_tasks = {(a.task_id, a.attempt): a
                            for a in self.report_tasks(left_running(closing, a) for a in still_running)}
            record = record.model_copy(update={"tasks": [closed_tasks.get((a.task_id, a.attempt), a)
                                                         for a in record.tasks]})
        decided = failure or decided
        closed = record.model_copy(update={"status": status, "ended_at": now, "failure": decided})
        incomplete = self.settings.policy.missing(closed)
        self._write("update_run", run_id=self.run_id, changes={
            "status": status, "ended_at": now, "failure": decided, "incomplete": incomplete})
        self._settle()  # the close reaches the store before finish() returns (bounded in time)
        self._release()
        closed = closed.model_copy(update={"incomplete": incomplete})
        self.settings.policy.enforce(closed, at_finish=True)
        return closed

    def _release(self) -> None:
        global _process_run
        leases.release(self.run_id)  # closed: nothing of it is renewed any more
        if _process_run is self:
            _process_run = None

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: Any) -> None:
        if error is None:
            self.finish()
            return
        status = _status_of(error)
        if status is TaskStatus.SUCCEEDED:
            self.finish()
        elif status is TaskStatus.CANCELLED:
            self.finish(RunStatus.CANCELLED, failure=classify(error))
        else:
            has_failed_task = any(a.status is TaskStatus.FAILED for a in self._read_progress()[1])
            self.finish(RunStatus.FAILED, failure=None if has_failed_task else classify(error))


def _derived_outcome(latest: Mapping[str, TaskAttempt]) -> Outcome:
    """``finish()`` without a status: failed when a task's last attempt failed, else succeeded."""
    return Outcome.FAILED if any(a.status is TaskStatus.FAILED for a in latest.values()) else Outcome.SUCCEEDED


def _status_of(error: BaseException) -> TaskStatus:
    if isinstance(error, SystemExit) and error.code in (None, 0):
        return TaskStatus.SUCCEEDED
    if isinstance(error, (KeyboardInterrupt, GeneratorExit)):
        return TaskStatus.CANCELLED
    return TaskStatus.FAILED


def enter_task(run: Run, attempt: TaskAttempt | None) -> None:
    """Make ``attempt`` of ``run`` the current task of this context (``None``: no current task), so that
    fluent calls made by the task's own code attach to it. For adapters whose orchestrator runs the
    task's code itself (Prefect's task engine) instead of inside :meth:`Run.task`. A task entered
    makes ``run`` the process's run for threads that do not inherit the context, as opening it does."""
    global _process_run
    _active_run.set(run)
    _active_task.set(attempt)
    if attempt is not None:
        _process_run = run


def _task_name() -> str | None:
    current = _active_task.get()
    return current.name if current is not None else None


def start_run(key: str | None = None, *, name: str | None = None, owner: str | None = None,
              purpose: Purpose | str | None = None, pipeline: str | None = None,
              pipeline_version: str | None = None, orchestrator: OrchestratorInfo | None = None,
              code: CodeInfo | None = None, image: str | None = None, params: Mapping[str, Any] | None = None,
              tags: Mapping[str, Any] | None = None, tracking_uri: str | None = None,
              artifact_uri: str | None = None, started_at: datetime | None = None) -> Run:
    """Open the run for ``key``, or attach to it when any process already opened it.

    ``key`` is the orchestrator's identity of the execution (default: ``ORCHESTRACK_RUN_KEY``, else
    a fresh key). Arguments given here fill fields the stored run still lacks; they never overwrite.
    ``started_at`` is when the orchestrator started the execution (default: now), used by the first opener.

    Example::

        run = orchestrack.start_run(key="nightly-train/2026-11-28", owner="ml-platform", purpose="tuning",
                                    pipeline="nightly-train", pipeline_version="41")
    """
    global _process_run
    overrides = {k: v for k, v in (("tracking_uri", tracking_uri), ("artifact_uri", artifact_uri)) if v}
    settings = load_settings(**overrides)
    if key is None:
        key = settings.run_key or f"run-{uuid.uuid4().hex}"
    key = inputs.check_key(key, "start_run key=")
    _check_start_args(name=name, image=image, pipeline_version=pipeline_version, started_at=started_at)
    if owner is not None:
        inputs.check_name(owner, "owner", "start_run owner=")
    purpose = inputs.check_choice(purpose, Purpose, "purpose", "start_run purpose=") if purpose is not None else None
    info = (orchestrator or OrchestratorInfo()).model_copy()
    info.pipeline = pipeline or info.pipeline
    info.pipeline_version = pipeline_version or info.pipeline_version
    if info.pipeline is not None:
        inputs.check_name(info.pipeline, "pipeline", "start_run pipeline=")
    run_id = run_id_for(key)
    started_at = started_at or utcnow()
    record = RunRecord(
        run_id=run_id, key=key, owner=owner, purpose=purpose, started_at=started_at, orchestrator=info,
        name=settings.policy.run_name(explicit=name, key=key, pipeline=info.pipeline,
                                      purpose=purpose.value if purpose else None, owner=owner,
                                      started_at=started_at, run_id=run_id),
        code=_merge(code, capture_code(settings.code_dir)),
        environment=capture_environment(image or settings.image, tuple(settings.packages)),
        params=inputs.coerce_params(params or {}, "start_run params="),
        tags=inputs.coerce_tags(tags or {}, "start_run tags="),
    )
    store = open_store(settings.resolved_tracking_uri, busy_timeout_s=settings.busy_timeout_s)
    _replay_spool_once(settings, store)
    run = Run(record, store, settings)
    record.incomplete = settings.policy.missing(record)
    if settings.policy.strict and _exists(store, key, settings) is not True:
        # A strict policy judges a new run by what its opener gives; a process attaching to an
        # existing run is judged by the stored run, which already passed (or was recorded) at open.
        settings.policy.enforce(record, at_finish=False)
    record = inputs.scrub(record)
    try:
        if getattr(store, "remote", False) and not settings.strict and store_down(store.uri):
            raise StoreError(f"{store.uri} is down; the run opens from the journal when it is back")
        stored = store.open_run(record)
    except Exception as err:
        if settings.strict:
            raise
        run._write("open_run", record=record)  # logs and spools
        log.debug("open failed: %s", err)
    else:
        _fill_missing(run, stored, record)
    _active_run.set(run)
    _process_run = run
    return run


def _exists(store: Store, key: str, settings: Settings) -> bool | None:
    try:
        return store.find_run(key) is not None
    except Exception:
        if settings.strict:
            raise
        return None


def _merge(given: CodeInfo | None, captured: CodeInfo) -> CodeInfo:
    if given is None:
        return captured
    values = captured.model_dump()
    values.update({k: v for k, v in given.model_dump().items() if v is not None})
    return CodeInfo(**values)


def _fill_missing(run: Run, stored: RunRecord, wanted: RunRecord) -> None:
    """Fill fields an earlier opener left empty (e.g. a worker knows the image the opener did not)."""
    changes: dict[str, Any] = {}
    for field in ("owner", "purpose"):
        if getattr(stored, field) is None and getattr(wanted, field) is not None:
            changes[field] = getattr(wanted, field)
    for field in ("orchestrator", "code", "environment"):
        current, new = getattr(stored, field), getattr(wanted, field)
        filled: dict[str, Any] = {}
        for name, value in new.model_dump().items():
            present = getattr(current, name)
            if present in (None, "", [], {}) and value not in (None, "", [], {}):
                filled[name] = value
            elif isinstance(value, dict) and present and set(value) - set(present):
                filled[name] = {**value, **present}  # dicts (orchestrator details, packages) gain missing keys
        if filled:
            changes[field] = current.model_copy(update=filled)
    if changes:
        merged = stored.model_copy(update=changes)
        changes["incomplete"] = run.settings.policy.missing(merged)
        run._write("update_run", run_id=run.run_id, changes=changes)
    new_params = {k: v for k, v in wanted.params.items() if k not in stored.params}
    if new_params:
        run._write("log_params", run_id=run.run_id, params=new_params)
    new_tags = {k: v for k, v in wanted.tags.items() if k not in stored.tags}
    if new_tags:
        run._write("set_tags", run_id=run.run_id, tags=new_tags)


def _replay_spool_once(settings: Settings, store: Store) -> None:
    """Replay what earlier processes journaled, once per process and spool folder: at once into a
    local store, in the background when the run's store is remote (a store that is down, or a long
    journal, must not hold up the task; a replay cut short resumes where it stopped)."""
    directory = settings.resolved_spool_dir
    marker = str(directory)
    if marker in _replayed:
        return
    _replayed.add(marker)

    def run() -> None:
        try:
            applied, problems = replay_spool(settings)
            if applied:
                log.info("orchestrack replayed %d journaled writes from %s", applied, directory)
            for problem in problems[:5]:
                log.warning("orchestrack journal replay: %s", redact(problem))
        except Exception as err:
            if settings.strict:
                raise
            log.warning("orchestrack could not replay its journal in %s: %s", directory, redact(str(err)))

    if settings.strict or not getattr(store, "remote", False):
        run()
    else:
        threading.Thread(target=run, name="orchestrack-replay", daemon=True).start()


def _journal_dirs(settings: Settings) -> list[Path]:
    return [d for d in (settings.resolved_spool_dir, fallback_dir()) if d.is_dir()]


def replay_spool(settings: Settings | None = None) -> tuple[int, list[str]]:
    """Send journaled writes (from the spool folder and the fallback folder) to their stores; return
    ``(writes delivered, problems)``. Writes delivered before are skipped, so running it twice, or
    again after a replay that died half-way, stores nothing twice."""
    settings = settings or load_settings()
    def deliver(uri: str, op: str, args: dict[str, Any], write_id: str) -> None:
        store = open_store(configured_uri(uri, settings.resolved_tracking_uri), busy_timeout_s=settings.busy_timeout_s)
        apply_write(store, op, args, write_id)

    return replay(_journal_dirs(settings), deliver, transient=is_transient)


def waiting_writes(run_id: str | None = None, settings: Settings | None = None
                   ) -> dict[str, list[tuple[Path, int]]]:
    """By run id (only ``run_id``'s when given): the journal files on this host holding writes that have
    not reached the store yet, with how many each holds (``orchestrack show`` and ``runs`` say so)."""
    found = pending_writes(_journal_dirs(settings or load_settings()))
    return found if run_id is None else {run_id: found[run_id]} if run_id in found else {}


def active_run() -> Run | None:
    """The run fluent calls act on: this context's, else this process's, else ``ORCHESTRACK_RUN_KEY``'s."""
    run = _active_run.get() or _process_run
    if run is not None:
        return run
    settings = load_settings()
    if settings.run_key:
        return start_run(key=settings.run_key)
    return None


def _require_run(call: str) -> Run:
    run = active_run()
    if run is None:
        raise NoActiveRunError(
            f"orchestrack.{call}() found no active run: call orchestrack.start_run() first, run inside "
            "run.task(...), or set ORCHESTRACK_RUN_KEY to attach this process to a run")
    return run


def _fluent(method: Callable[..., Any]) -> Callable[..., Any]:
    name = method.__name__

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(_require_run(name), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"``{name}`` on the active run (see :meth:`Run.{name}`)."
    return call


log_params = _fluent(Run.log_params)
log_metrics = _fluent(Run.log_metrics)
log_dataset = _fluent(Run.log_dataset)
log_artifact = _fluent(Run.log_artifact)
log_features = _fluent(Run.log_features)
log_config = _fluent(Run.log_config)
log_prompt = _fluent(Run.log_prompt)
log_llm = _fluent(Run.log_llm)
log_llm_usage = _fluent(Run.log_llm_usage)
set_tags = _fluent(Run.set_tags)


def store_for(tracking_uri: str | None) -> Store:
    """The store behind ``tracking_uri`` (default: the configured one)."""
    settings = load_settings(**({"tracking_uri": tracking_uri} if tracking_uri else {}))
    return open_store(settings.resolved_tracking_uri, busy_timeout_s=settings.busy_timeout_s)


def _check_start_args(*, name: object, image: object, pipeline_version: object, started_at: object) -> None:
    """The ``start_run`` arguments no model checks before it is built (a bad type would surface as a
    pydantic or regex error naming none of them)."""
    for label, value in (("name", name), ("image", image), ("pipeline_version", pipeline_version)):
        if value is not None:
            inputs.check_name(value, label, f"start_run {label}=", limit=1000)
    if started_at is not None and not isinstance(started_at, datetime):
        raise InvalidInputError(f"started_at {started_at!r} (start_run started_at=) must be a datetime, got "
                                f"{type(started_at).__name__}; pass e.g. datetime.fromisoformat(text)")


def get_run(key_or_run_id: str, *, tracking_uri: str | None = None) -> RunRecord:
    """The run with this key or run id (or a unique run-id prefix of 8+ characters).

    Example::

        orchestrack.get_run("nightly-train/2026-11-28").status
    """
    inputs.check_key(key_or_run_id, "get_run")
    store = store_for(tracking_uri)
    settle(load_settings().delivery_timeout_s)
    record = store.find_run(key_or_run_id)
    if record is None:
        raise RunNotFoundError(
            f"no run with key or id {key_or_run_id!r} in {store.uri}; list runs with `orchestrack runs` "
            "or check ORCHESTRACK_TRACKING_URI / ORCHESTRACK_HOME")
    return record


def search_runs(*, status: RunStatus | str | None = None, pipeline: str | None = None,
                reason: FailureReason | str | None = None, purpose: Purpose | str | None = None,
                owner: str | None = None, fingerprint: str | None = None, limit: int = 50,
                summary: bool = False, tracking_uri: str | None = None) -> list[RunRecord]:
    """Runs matching all given filters, newest first (``fingerprint``: runs whose failure has it).
    ``summary=True``: only what each run itself holds is needed, so a store may leave out task
    attempts and metric series (on MLflow one request a page instead of several a run).

    Example::

        orchestrack.search_runs(pipeline="nightly-train", status="failed", limit=10)
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
        raise InvalidInputError(f"limit {limit!r} (search_runs limit=) must be an integer from 1 to 10000")
    query = RunQuery(
        status=inputs.check_choice(status, RunStatus, "status", "search_runs") if status else None,
        reason=inputs.check_choice(reason, FailureReason, "failure reason", "search_runs") if reason else None,
        purpose=inputs.check_choice(purpose, Purpose, "purpose", "search_runs") if purpose else None,
        pipeline=pipeline and inputs.check_name(pipeline, "pipeline", "search_runs pipeline="),
        owner=owner and inputs.check_name(owner, "owner", "search_runs owner="),
        fingerprint=fingerprint and inputs.check_name(fingerprint, "fingerprint", "search_runs fingerprint="),
        limit=limit, summary=summary)
    settle(load_settings().delivery_timeout_s)
    return store_for(tracking_uri).search_runs(query)


__all__ = ["Run", "active_run", "get_run", "log_artifact", "log_config", "log_dataset", "log_features", "log_llm",
           "log_llm_usage", "log_metrics", "log_params", "log_prompt", "replay_spool", "run_id_for", "search_runs",
           "set_tags", "start_run", "waiting_writes"]
