"""``component`` and ``pipeline``: kfp's decorators with orchestrack's tracking woven in.

No ``from __future__ import annotations`` here: kfp reads the annotations of ``close_run`` and
``finish_run`` at runtime to build their component specs, and strings would not do.
"""

import functools
import hashlib
import inspect
import json
import logging
import os
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from kfp import __version__ as _kfp_version
from kfp import dsl
from kfp.dsl import pipeline_context, tasks_group

from orchestrack.errors import OrchestrackError
from orchestrack.inputs import adapter_args
from orchestrack.kfp.embedded_configs import pack_configs
from orchestrack.kfp.executor import (
    CLOSES_RUN,
    CONFIGS_VARIABLE,
    HIDDEN_INPUTS,
    OPENING_VARIABLE,
    PIPELINE_VARIABLE,
    RUN_ID_INPUT,
    RUN_NAME_INPUT,
    TASK_ID_INPUT,
    TASK_NAME_INPUT,
)
from orchestrack.kfp.local_runs import TrackedPipeline, local_runner_runs_exit_handlers

EXECUTOR = "orchestrack.kfp.executor"
KFP_EXECUTOR = "kfp.dsl.executor_main"
#: Settings that pods need to reach the store (MLflow, S3); never secrets: those come from Kubernetes secrets.
FORWARDED = ("ORCHESTRACK_TRACKING_URI", "ORCHESTRACK_ARTIFACT_URI", "ORCHESTRACK_POLICY__STRICT",
             "ORCHESTRACK_S3__ENDPOINT_URL", "ORCHESTRACK_S3__REGION", "ORCHESTRACK_MLFLOW__EXPERIMENT",
             "ORCHESTRACK_MLFLOW__UI_URL", "ORCHESTRACK_UI_URL")


def kfp_version() -> str:
    """The installed kfp SDK version."""
    return str(_kfp_version)


class UnsupportedKfpError(OrchestrackError, RuntimeError):
    """The installed kfp builds components in a way orchestrack does not know."""


class UnsupportedPipelineError(OrchestrackError, ValueError):
    """A pipeline shape orchestrack cannot track as written; the message says what to change."""


#: What the run is opened with (OPENING_VARIABLE's JSON) while ``otk.pipeline`` traces its body.
_opening: ContextVar[str | None] = ContextVar("orchestrack_kfp_opening", default=None)


@contextmanager
def _opening_facts(text: str) -> Iterator[None]:
    token = _opening.set(text)
    try:
        yield
    finally:
        _opening.reset(token)


class TrackedComponent:
    """A kfp component whose calls also pass the KFP run id and orchestrack's settings."""

    def __init__(self, inner: Any, image: "str | None") -> None:
        self.inner = inner
        self.image = image
        functools.update_wrapper(self, inner.python_func)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        task = self.inner(*args, **kwargs, **{RUN_ID_INPUT: dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                                               RUN_NAME_INPUT: dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                                               TASK_NAME_INPUT: dsl.PIPELINE_TASK_NAME_PLACEHOLDER,
                                               TASK_ID_INPUT: dsl.PIPELINE_TASK_ID_PLACEHOLDER})
        pipeline = pipeline_context.Pipeline.get_default_pipeline()
        if pipeline is None:
            return task  # run on its own (kfp.local): already executed, nothing to configure
        _forward(task)
        # Whichever task runs first opens the run, with the pipeline's name (the name KFP shows; the
        # MLflow store's experiment) and, in an otk.pipeline, its owner, purpose and version.
        task.set_env_variable(PIPELINE_VARIABLE, pipeline.name)
        opening = _opening.get()
        if opening:
            task.set_env_variable(OPENING_VARIABLE, opening)
        if self.image:
            task.set_env_variable("ORCHESTRACK_IMAGE", self.image)  # a container cannot see its own image
        _note_accelerators(task)
        return task

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def component(func: Callable[..., Any] | None = None, **kwargs: Any) -> Any:
    """``dsl.component`` (same arguments) whose runs are tracked task attempts.

    Example::

        @otk.component(base_image="pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime", packages_to_install=["orchestrack"])
        def train(epochs: int = 3) -> float: ...
    """

    def decorate(target: Callable[..., Any]) -> TrackedComponent:
        inner = dsl.component(_with_run_id_input(target), **kwargs)
        container = inner.component_spec.implementation.container
        # Run orchestrack's executor, which wraps kfp's (named in the variable, which also lets
        # kfp.local recognise a lightweight component).
        wrapped = f"ORCHESTRACK_WRAPPED_EXECUTOR={KFP_EXECUTOR} python3 -m {EXECUTOR}"
        container.command = [part.replace(f"python3 -m {KFP_EXECUTOR}", wrapped) for part in container.command]
        if not any(EXECUTOR in part for part in container.command):
            raise UnsupportedKfpError(f"kfp {kfp_version()} builds component commands orchestrack does not know; "
                                      "pin kfp to a tested version (see docs/kfp.md)")
        # The image the compiled spec names: the given base_image, else kfp's own default.
        return TrackedComponent(inner, kwargs.get("base_image") or container.image or None)

    return decorate(func) if func is not None else decorate


def check_gate(spec: str, gate_report: dsl.Output[dsl.Markdown], fail_on_held: bool = False) -> str:
    """Check the pipeline run's run against ``spec`` (YAML or JSON text, or a path in the image);
    return the outcome and show every check in the ``gate_report`` Markdown. A failed gate fails the
    step, and the run, with ``metric-regression``."""
    from pathlib import Path

    import orchestrack
    from orchestrack.report import gate_markdown

    def publish(decision: orchestrack.GateDecision) -> None:  # the KFP UI shows it on the step
        Path(gate_report.path).write_text(gate_markdown(decision))

    return orchestrack.gate_step(spec, fail_on_held=fail_on_held, publish=publish).outcome.value


def quality_gate(**component_kwargs: Any) -> TrackedComponent:
    """The quality gate as a KFP component (``dsl.component`` arguments; ``packages_to_install``
    defaults to ``["orchestrack"]``). Its output is ``passed`` or ``held``, its ``gate_report`` the
    checks as Markdown; a failed gate fails it.

    Example::

        gate = otk.quality_gate(base_image="python:3.11")

        @otk.pipeline(name="nightly-train")
        def nightly():
            trained = train()
            gate(spec=GATE_YAML).after(trained)
    """
    component_kwargs.setdefault("packages_to_install", ["orchestrack"])
    return component(check_gate, **component_kwargs)  # type: ignore[no-any-return]


def _with_run_id_input(func: Callable[..., Any]) -> Callable[..., Any]:
    """A copy of ``func`` whose signature has one more input, the KFP run id (its source is unchanged:
    the executor removes the input before the function is called)."""
    copy = types.FunctionType(func.__code__, func.__globals__, func.__name__, func.__defaults__, func.__closure__)
    copy.__kwdefaults__, copy.__annotations__ = func.__kwdefaults__, dict(func.__annotations__)
    copy.__doc__, copy.__module__, copy.__qualname__ = func.__doc__, func.__module__, func.__qualname__
    signature = inspect.signature(func)
    kind = (inspect.Parameter.KEYWORD_ONLY if any(p.kind is inspect.Parameter.VAR_POSITIONAL
                                                  for p in signature.parameters.values())
            else inspect.Parameter.POSITIONAL_OR_KEYWORD)
    extra = [inspect.Parameter(name, kind, default="", annotation=str) for name in HIDDEN_INPUTS]
    copy.__signature__ = signature.replace(parameters=[*signature.parameters.values(), *extra])  # type: ignore[attr-defined]
    for name in HIDDEN_INPUTS:
        copy.__annotations__[name] = str
    return copy


def pipeline(func: Callable[..., Any] | None = None, *, purpose: str | None = None, run_owner: str | None = None,
             packages_to_install: list[str] | None = None, configure_task: Callable[[Any], Any] | None = None,
             configs: Sequence[str | os.PathLike[str]] | None = None, **kwargs: Any) -> Any:
    """``dsl.pipeline`` (same arguments) whose run is opened by whichever tracked task runs first and
    closed however the pipeline ends. ``packages_to_install`` is for the closing task (default
    ``["orchestrack"]``); ``configure_task`` is called with each task orchestrack adds (the closing
    task), e.g. to give it the MLflow token from a Kubernetes secret as the user's own tasks get it.

    ``configs`` are config files or folders every run records (``Run.log_config``): read when the
    pipeline is defined (a relative path next to the pipeline's source file, else in the working
    directory), embedded with secrets masked in the closing task, and logged by that task.

    The run is closed by an exit handler wrapped around the pipeline's body. kfp allows neither an
    exit handler inside another nor outputs returned from inside one, and fails a loop over dicts
    inside one, so a pipeline that returns an output or loops over dicts is closed by a last task that
    runs whatever its upstream tasks did, and a pipeline with an exit handler of its own is closed by
    that handler's exit task, which must then be an ``otk.component``.

    Example::

        @otk.pipeline(name="nightly-train", purpose="tuning", configs=["conf/train.yaml"])
        def nightly(epochs: int = 3): ...
    """

    adapter_args("otk.pipeline", purpose=purpose, run_owner=run_owner)

    def decorate(target: Callable[..., Any]) -> Any:
        name = kwargs.get("name") or target.__name__  # replaced below by the name KFP shows
        # Read now, on the machine that defines the pipeline: its containers do not have the files.
        packed = pack_configs(configs or [], pipeline=name, func=target)
        packages = ["orchestrack"] if packages_to_install is None else packages_to_install
        closer = dsl.component(close_run, packages_to_install=packages)
        finisher = dsl.component(finish_run, packages_to_install=packages)

        def opening(version: str) -> str:
            return json.dumps({"owner": run_owner, "purpose": purpose, "pipeline_version": version or None})

        def closing(task: Any, version: str) -> Any:
            """The task that closes the run: it may also be the first to open it, and records the configs."""
            task.set_env_variable(OPENING_VARIABLE, opening(version))
            if packed:
                task.set_env_variable(CONFIGS_VARIABLE, packed)
            return task

        def added(task: Any, version: str) -> Any:
            """A task orchestrack adds: the settings forwarded, then the user's own configuration."""
            _forward(task)
            task.set_env_variable(PIPELINE_VARIABLE, pipeline_context.Pipeline.get_default_pipeline().name)
            closing(task, version)
            if configure_task is not None:
                configure_task(task)
            return task

        def in_exit_handler(version: str) -> Any:
            @functools.wraps(target)
            def body(*args: Any, **call_kwargs: Any) -> Any:
                exit_task = added(closer(**_CLOSING_INPUTS), version)
                with dsl.ExitHandler(exit_task, name="orchestrack-run"), _opening_facts(opening(version)):
                    return target(*args, **call_kwargs)

            return dsl.pipeline(body, **kwargs)

        def closed_at_the_end(version: str) -> Any:
            @functools.wraps(target)
            def body(*args: Any, **call_kwargs: Any) -> Any:
                with _opening_facts(opening(version)):
                    result = target(*args, **call_kwargs)
                root = pipeline_context.Pipeline.get_default_pipeline().groups[0]
                own_exits = [group.exit_task for group in root.groups if isinstance(group, tasks_group.ExitHandler)]
                if own_exits:
                    for exit_task in own_exits:
                        closing(_close_from(exit_task), version)
                else:
                    upstream = _top_level_tasks(root)
                    finishing = added(finisher(**_CLOSING_INPUTS), version)
                    finishing.after(*upstream).ignore_upstream_failure()
                return result

            return dsl.pipeline(body, **kwargs)

        def closed_by_caller(version: str) -> Any:
            @functools.wraps(target)
            def body(*args: Any, **call_kwargs: Any) -> Any:
                with _opening_facts(opening(version)):
                    return target(*args, **call_kwargs)

            return dsl.pipeline(body, **kwargs)

        own_exit_handler, returns, dict_loops = _shape_of(target, kwargs)
        # kfp cannot compile a loop over dicts inside an exit handler (the loop's variables leak out of
        # it and the run fails: kubeflow/pipelines#13273), so such a pipeline closes with a last task too.
        build = closed_at_the_end if own_exit_handler or returns or dict_loops else in_exit_handler
        draft = build("")
        # The pipeline version is a hash of the compiled spec (traced once without it), and the
        # pipeline's name is the one the spec gives KFP (a function name becomes e.g. "my-pipeline").
        name = draft.pipeline_spec.pipeline_info.name or name
        version = spec_hash(draft)
        tracked = build(version)
        if not local_runner_runs_exit_handlers(kfp_version()):
            # kfp.local before 2.17 runs no closing task: a local call closes the run itself.
            tracked.__class__ = TrackedPipeline
            tracked.closed_by_caller = closed_by_caller(version)
            tracked.opening = {"owner": run_owner, "purpose": purpose, "pipeline": name, "pipeline_version": version,
                               "configs": packed}
        return tracked

    return decorate(func) if func is not None else decorate


def _shape_of(target: Callable[..., Any], kwargs: dict[str, Any]) -> tuple[bool, bool, bool]:
    """Whether the pipeline body has an exit handler of its own, whether it returns an output, and
    whether it loops over dicts (``dsl.ParallelFor`` items whose keys are read as ``item.key``), from
    one trace of the body as written (a failed trace would leave kfp's pipeline context broken)."""
    seen: dict[str, bool] = {}

    @functools.wraps(target)
    def probe(*args: Any, **call_kwargs: Any) -> Any:
        result = target(*args, **call_kwargs)
        root = pipeline_context.Pipeline.get_default_pipeline().groups[0]
        seen["exit"] = any(isinstance(group, tasks_group.ExitHandler) for group in root.groups)
        seen["returns"] = result is not None
        seen["dict_loops"] = any(getattr(group.loop_argument, "_referenced_subvars", None)
                                 for group in _groups_within(root) if isinstance(group, tasks_group.ParallelFor))
        return result

    dsl.pipeline(probe, **kwargs)
    return seen["exit"], seen["returns"], seen["dict_loops"]


def _groups_within(group: Any) -> Iterator[Any]:
    for inner in group.groups:
        yield inner
        yield from _groups_within(inner)


def _top_level_tasks(root: Any) -> list[Any]:
    """The tasks a closing task can wait for: those at the pipeline's outermost scope and in its
    ``ParallelFor`` loops there (kfp allows no dependency into conditions or exit handlers)."""
    tasks = list(root.tasks)
    for group in root.groups:
        if isinstance(group, tasks_group.ParallelFor):
            tasks.extend(group.tasks)
    return tasks


def _close_from(exit_task: Any) -> Any:
    """Make the pipeline's own exit task close the run after it ran (its executor does)."""
    command = " ".join(exit_task.component_spec.implementation.container.command or [])
    if EXECUTOR not in command:
        raise UnsupportedPipelineError(
            f"the pipeline's own dsl.ExitHandler has exit task {exit_task.name!r}, a plain kfp component; "
            "orchestrack closes the run from that exit task (kfp allows no second exit handler), so "
            "decorate its component with @otk.component instead of @dsl.component")
    exit_task.set_env_variable(CLOSES_RUN, "1")
    return exit_task


def _note_accelerators(task: Any) -> None:
    """Make set_accelerator_type/limit also tell the container what was requested."""
    set_type, set_limit = task.set_accelerator_type, task.set_accelerator_limit

    def accelerator_type(accelerator: str) -> Any:
        task.set_env_variable("ORCHESTRACK_ACCELERATOR_TYPE", str(accelerator))
        return set_type(accelerator)

    def accelerator_limit(limit: Any) -> Any:
        task.set_env_variable("ORCHESTRACK_ACCELERATOR_COUNT", str(limit))
        return set_limit(limit)

    task.set_accelerator_type, task.set_accelerator_limit = accelerator_type, accelerator_limit


def spec_hash(graph: Any) -> str:
    """A short sha256 of a pipeline's compiled spec: the same pipeline, the same version."""
    from google.protobuf import json_format

    document = json.dumps(json_format.MessageToDict(graph.pipeline_spec), sort_keys=True)
    return hashlib.sha256(document.encode()).hexdigest()[:16]


def _forward(task: Any) -> None:
    for variable in FORWARDED:
        if os.environ.get(variable):
            task.set_env_variable(variable, _without_credentials(variable, os.environ[variable]))


def _without_credentials(variable: str, value: str) -> str:
    """A forwarded setting as the compiled pipeline may hold it: a URL's ``user:password@`` left out
    (whoever reads the pipeline would read it), with one warning saying how pods get credentials."""
    from orchestrack.capture import strip_credentials

    cleaned = strip_credentials(value)
    if cleaned != value and variable not in _warned:
        _warned.add(variable)
        logging.getLogger(__name__).warning(
            "%s holds credentials (user:password@ in %s); they are left out of the compiled pipeline, which "
            "anyone who can read the pipeline sees. Give the pods credentials from a Kubernetes secret "
            "(MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN; docs/kfp.md)",
            variable, cleaned)
    return cleaned


_warned: set[str] = set()
#: What the closing task (``close_run`` or ``finish_run``) is called with: the KFP run's id and name.
_CLOSING_INPUTS = {"run_id": dsl.PIPELINE_JOB_ID_PLACEHOLDER, "run_name": dsl.PIPELINE_JOB_NAME_PLACEHOLDER}


def close_run(run_id: str, status: dsl.PipelineTaskFinalStatus, summary: dsl.Output[dsl.Markdown],
              run_name: str = "") -> None:
    """The exit task: close the run however the pipeline ended. On a cluster the final status has no
    error message, so the reason comes from what the failed tasks recorded. ``run_name``: the KFP run's
    name, for a run no tracked task opened (plain components only, or none started)."""
    from orchestrack.kfp.executor import (
        end_lost_attempts,
        final_status_end,
        log_pipeline_configs,
        open_pipeline_run,
        track_into_plugin_mlflow,
    )

    track_into_plugin_mlflow()
    run = open_pipeline_run(run_id, run_name)  # opened here if no task opened it (none tracked, or started)
    log_pipeline_configs(run)
    end_lost_attempts(run)  # every task ended before the exit task: one still running lost its pod
    closed = run.conclude(final_status_end(status.state, status.error_message))
    from orchestrack.report import markdown_summary

    with open(summary.path, "w") as handle:  # the KFP UI shows this Markdown on the exit task
        handle.write(markdown_summary(closed or run.record, run.url))  # read again only if the store was down


def finish_run(run_id: str, run_name: str = "") -> None:
    """The last task of a pipeline that returns outputs: it runs once every task upstream ended, however
    they ended, and closes the run as its tasks say (kfp gives such a task no final status)."""
    from orchestrack.kfp.executor import (
        end_lost_attempts,
        log_pipeline_configs,
        open_pipeline_run,
        track_into_plugin_mlflow,
    )

    track_into_plugin_mlflow()
    run = open_pipeline_run(run_id, run_name)
    log_pipeline_configs(run)
    end_lost_attempts(run)  # every task ended before this one: one still running lost its pod
    run.finish()
