"""The one operator a DAG author adds: it opens the DAG run's run and records its context.

Importing this module imports only what the operators' constructors need (Airflow's BaseOperator and
BaseOperatorLink): the DAG processor imports it with every DAG file that uses the operator, in each
file's own parsing process. Everything the tasks need at run time is imported where it is used
(benchmarks/p3_dag_parse.py lists what a parse imports; tests/airflow/test_benchmark_quick.py checks it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, BaseOperatorLink

if TYPE_CHECKING:
    from orchestrack.lifecycle import Run


class OrchestrackRunLink(BaseOperatorLink):
    """The "orchestrack run" button on the operator's task: opens the run in the configured viewer
    (``ORCHESTRACK_UI_URL``), else on the MLflow UI when the store is MLflow; with neither there is no
    page to open and the link stays empty."""

    name = "orchestrack run"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from orchestrack.airflow.facts import run_key
        from orchestrack.lifecycle import run_id_for, run_url

        key = run_key(ti_key.dag_id, ti_key.run_id)
        return run_url(run_id_for(key), key) or ""


#: The attribute that carries the operator's run facts in Airflow's serialized DAG: one JSON text,
#: since Airflow reads an operator's own fields back only when they are plain values.
RUN_FACTS_FIELD = "orchestrack_run_facts"


class TrackRunOperator(BaseOperator):
    """Track this DAG's runs with orchestrack: put it upstream of the DAG's first task.

    ``purpose`` (baseline, tuning, ablation, recovery), ``run_owner`` (default: the DAG's owner),
    ``datasets`` (input URIs recorded as data snapshots; templated), ``configs`` (config files or
    folders the DAG's tasks read, recorded with :meth:`Run.log_config <orchestrack.lifecycle.Run.log_config>`
    when the operator runs; a relative path is looked up next to the DAG file, then in the working
    directory) and ``run_tags``.

    Without ``configs``, ``datasets`` or Assets in the DAG it has nothing to do at run time, and the
    scheduler marks it succeeded without running it (see :attr:`inherits_from_empty_operator`).

    Example::

        track = TrackRunOperator(task_id="orchestrack", purpose="tuning", datasets=["s3://bucket/train/"],
                                 configs=["train.yaml"])
        track >> first_task
    """

    template_fields: Sequence[str] = ("datasets",)
    ui_color = "#dde7f7"
    operator_extra_links = (OrchestrackRunLink(),)

    def __init__(self, *, purpose: str | None = None, run_owner: str | None = None,
                 datasets: Sequence[str] = (), configs: Sequence[str | os.PathLike[str]] = (),
                 run_tags: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        where = f"TrackRunOperator {self.task_id!r}"
        _check_types(where, purpose=purpose, run_owner=run_owner, run_tags=run_tags)
        self.purpose = purpose
        self.run_owner = run_owner
        # One URI given on its own is one data set, not one per character.
        self.datasets = _path_list(datasets, f"{where} datasets=")
        # Only kept here: the files are read when the operator runs, never while the DAG file is parsed.
        self.configs = _path_list(configs, f"TrackRunOperator {self.task_id!r} configs=")
        self.run_tags = dict(run_tags or {})

    @classmethod
    def get_serialized_fields(cls) -> frozenset[str]:
        """Airflow's serialized DAG carries the run's facts too, so the scheduler opens a DAG run's run
        with them when no task ran (as ``BaseSensorOperator`` adds its own fields)."""
        return frozenset(super().get_serialized_fields() | {RUN_FACTS_FIELD})

    @property
    def orchestrack_run_facts(self) -> str:
        """``purpose``, ``run_owner`` and ``run_tags`` as one JSON text (see :func:`run_facts_of`)."""
        return json.dumps({"purpose": self.purpose, "run_owner": self.run_owner, "run_tags": self.run_tags},
                          sort_keys=True, default=str)

    @property
    def inherits_from_empty_operator(self) -> bool:  # type: ignore[override]
        """Whether Airflow may mark this task succeeded without running it, as it does an
        ``EmptyOperator``: when it has nothing to record that the tasks' own hooks do not (no
        ``configs``, no ``datasets``, no asset on any task of the DAG). The first tracked task to run
        opens the run with the same facts, and the DAG run's end records it even when no task ran;
        so a DAG run waits for no worker slot, pod or process of ours before its first task.
        Read where Airflow serializes the DAG, once the whole DAG is built."""
        return not (self.configs or self.datasets or _dag_assets(self))

    def execute(self, context: Any) -> None:
        """Open (or attach to) the run, record params, conf, configs, datasets and assets. Nothing goes
        to XCom: the scheduler often does not run this task at all, and a task finds the run with
        :func:`orchestrack.active_run` (its key is ``airflow/<dag_id>/<run_id>``)."""
        from orchestrack.errors import InvalidInputError
        from orchestrack.guard import fail_open

        run = open_tracked_run(self, context["ti"], context=context)
        # A config that is missing or does not parse is the DAG author's to fix, never a reason to fail
        # their task: one warning line that says how (raised in strict mode); the other configs are recorded.
        log_config = fail_open(f"TrackRunOperator of DAG {self.dag_id!r}", warn=(InvalidInputError,))(self._log_config)
        for path in self.configs:
            log_config(run, path)
        for uri in self.datasets:
            run.log_dataset(uri.rstrip("/").rsplit("/", 1)[-1] or uri, uri)
        for name, asset_uri in _dag_assets(self):
            run.log_dataset(name, asset_uri)

    def _log_config(self, run: Run, path: str) -> None:
        from orchestrack.configs import find_config

        run.log_config(find_config(path, _dag_folder(self), f"DAG {self.dag_id!r}, TrackRunOperator configs=",
                                   "the DAG file"))


class QualityGateOperator(BaseOperator):
    """The quality gate as a DAG task: put it after the tasks that log the metrics it checks.

    ``spec`` is a gate spec file (a relative path is found next to the DAG file), YAML text or a
    mapping (docs/gate.md). A failed gate fails this task, and so the run, with reason
    ``metric-regression``; a held run passes the task with a warning unless ``fail_on_held``. The
    decision is pushed to XCom and recorded on the run.

    Example::

        gate = QualityGateOperator(task_id="gate", spec="gate.yaml")
        train >> gate
    """

    ui_color = "#f7e8c8"
    operator_extra_links = (OrchestrackRunLink(),)

    def __init__(self, *, spec: Any, fail_on_held: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.fail_on_held = fail_on_held

    def execute(self, context: Any) -> dict[str, Any]:
        """Check the DAG run's run against the spec; raise when the gate failed."""
        from orchestrack.errors import InvalidInputError
        from orchestrack.gate import gate_step

        tracker = tracker_of(self)
        if tracker is None:
            raise InvalidInputError(f"QualityGateOperator {self.task_id!r} is in DAG {self.dag_id!r}, which has no "
                                    "TrackRunOperator: add one upstream of the DAG's first task so runs are tracked")
        run = open_tracked_run(tracker, context["ti"], context=context)
        decision = gate_step(_beside_dag_file(self.spec, self), fail_on_held=self.fail_on_held, run=run)
        return decision.model_dump(mode="json")


def _check_types(where: str, **arguments: Any) -> None:
    """Text where text is due and a mapping for ``run_tags``, checked when the DAG file is parsed (the
    values themselves are checked when the run opens, by code a parse must not import)."""
    for name, value in arguments.items():
        wanted = dict if name == "run_tags" else str
        if value is not None and not isinstance(value, wanted):
            from orchestrack.errors import InvalidInputError

            raise InvalidInputError(f"{where} {name}= must be {'a dict' if wanted is dict else 'text'}, "
                                    f"got {type(value).__name__} {value!r}")


def _path_list(paths: Sequence[str | os.PathLike[str]], where: str) -> list[str]:
    """``paths`` as a list of path texts; one path given on its own is a list of one, not of its letters.
    (Not :func:`orchestrack.configs.config_paths`: a DAG-file parse imports nothing of ours but this module.)"""
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    bad = [item for item in items if not isinstance(item, (str, os.PathLike))]
    if bad:
        from orchestrack.errors import InvalidInputError

        raise InvalidInputError(f"{where} takes file or folder paths (text or pathlib.Path), got {bad[0]!r}")
    return [os.fspath(item) for item in items]


def _dag_assets(task: Any) -> list[tuple[str, str]]:
    """(name, URI) of every asset that a task of ``task``'s DAG reads or writes (inlets, outlets)."""
    found = []
    for each in getattr(getattr(task, "dag", None), "tasks", ()):
        for asset in [*getattr(each, "inlets", ()), *getattr(each, "outlets", ())]:
            asset_uri = getattr(asset, "uri", None)
            if asset_uri:
                found.append((getattr(asset, "name", None) or asset_uri, asset_uri))
    return found


def _dag_folder(task: Any) -> Path | None:
    """The folder of the file that defines ``task``'s DAG, where it is known."""
    fileloc = getattr(getattr(task, "dag", None), "fileloc", None)
    return Path(fileloc).parent if fileloc else None


def _beside_dag_file(spec: Any, task: Any) -> Any:
    """A relative spec path that is not found from the working directory, looked up next to the DAG file."""
    if not isinstance(spec, str) or "\n" in spec or Path(spec).is_absolute() or Path(spec).exists():
        return spec
    folder = _dag_folder(task)
    beside = folder / spec if folder is not None else None
    return str(beside) if beside is not None and beside.exists() else spec


def tracker_of(task: Any) -> TrackRunOperator | None:
    """The DAG's TrackRunOperator as parsed (what a task process holds), if the DAG of ``task`` has one."""
    tracker = tracker_in(getattr(task, "dag", None))
    return tracker if isinstance(tracker, TrackRunOperator) else None


def tracker_in(dag: Any) -> Any:
    """The TrackRunOperator of ``dag`` as parsed, or its serialized form where the scheduler holds the
    DAG serialized; ``None`` when the DAG has none (it is not tracked)."""
    return next((t for t in getattr(dag, "tasks", ())
                 if isinstance(t, TrackRunOperator) or getattr(t, "task_type", None) == TrackRunOperator.__name__),
                None)


def run_facts_of(tracker: Any) -> dict[str, Any]:
    """What the operator says of the run: ``owner`` (its ``run_owner``, else the task's owner),
    ``purpose`` and ``tags``; read the same from the operator and from its serialized form (a DAG
    serialized before orchestrack carried them gives the task's owner only)."""
    try:  # the operator's own property, or the text Airflow deserialized into the same attribute
        facts = json.loads(getattr(tracker, RUN_FACTS_FIELD, None) or "{}")
    except ValueError:
        facts = {}
    return {"owner": facts.get("run_owner") or getattr(tracker, "owner", None) or None,
            "purpose": facts.get("purpose"), "tags": dict(facts.get("run_tags") or {})}


def airflow_masked(values: Any) -> dict[str, Any]:
    """``values`` through Airflow's own secrets masker (connection passwords, masked variables ...)."""
    plain = dict(values or {})
    redact = airflow_redact()
    if redact is None:  # the masker moved again: orchestrack's own key-based masking still applies
        return plain
    return {key: redact(value, name=key) for key, value in plain.items()}


def airflow_redact() -> Any:
    """Airflow's secrets masker's ``redact``: it has no public home, and it moved between minors
    (``airflow.sdk._shared.secrets_masker`` from 3.1, ``airflow.sdk.execution_time.secrets_masker``
    in 3.0). ``None`` where neither exists; tests/airflow checks it on every supported minor."""
    try:
        from airflow.sdk._shared.secrets_masker import redact
    except ImportError:
        try:
            from airflow.sdk.execution_time.secrets_masker import redact  # Airflow 3.0
        except ImportError:
            return None
    return redact


def airflow_base_url() -> str | None:
    """The Airflow UI's base URL ([api] base_url), with the fallback Airflow's own task log links use."""
    try:
        from airflow.configuration import conf
    except ImportError:  # a task-SDK-only worker
        return None
    return conf.get("api", "base_url", fallback=None) or "http://localhost:8080/"


def _context_of(ti: Any) -> Any:
    """The task's template context (params, the DAG run), in a task process; ``{}`` elsewhere."""
    try:
        return ti.get_template_context() or {}
    except Exception:  # an ORM TaskInstance in the scheduler, or a stand-in
        return {}


#: The run this process last opened, with the ``start_run`` arguments it was opened with. A process
#: that runs many tasks of one DAG run (``dag.test()``) would otherwise open the same run again for
#: each task's hook (code capture, a store write and a whole record read back) only to change
#: nothing: the stored run already holds every fact given. Other facts (another DAG run, another
#: image) or other settings (another store) open again.
_last_opened: tuple[dict[str, Any], Run] | None = None


def open_tracked_run(tracker: TrackRunOperator, ti: Any, context: Any = None) -> Run:
    """Open the run of ``ti``'s DAG run, or attach to it (idempotent by key), whichever task's hook
    comes first: the DAG's params and conf, the DAG run's facts and start time come with it."""
    global _last_opened
    import orchestrack
    from orchestrack.airflow.facts import code_from_bundle, image_of, orchestrator_info, run_key
    from orchestrack.inputs import mask_sensitive as redacted
    from orchestrack.settings import load_settings

    context = context if context is not None else _context_of(ti)
    dag_run = context.get("dag_run")
    params = redacted(airflow_masked(context.get("params")))
    conf = redacted(airflow_masked(getattr(dag_run, "conf", None)))
    opening = dict(
        key=run_key(ti.dag_id, ti.run_id), **run_facts_of(tracker), pipeline=ti.dag_id,
        started_at=getattr(dag_run, "start_date", None),
        orchestrator=orchestrator_info(ti.dag_id, ti.run_id, ti=ti, dag_run=dag_run, base_url=airflow_base_url()),
        code=code_from_bundle(ti), image=image_of(getattr(ti, "task", None)),
        params={**params, **{f"conf.{key}": value for key, value in conf.items()}})
    if _last_opened is not None and _last_opened[0] == opening and _last_opened[1].settings is load_settings():
        return _last_opened[1]
    run = orchestrack.start_run(**opening)
    _last_opened = (opening, run)
    return run


def forget_opened_run(key: str) -> None:
    """Open the run for ``key`` afresh next time (its DAG run ended, and the run was closed)."""
    global _last_opened
    if _last_opened is not None and _last_opened[0]["key"] == key:
        _last_opened = None
