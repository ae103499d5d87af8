"""The schema policy: which run fields are mandatory and how runs are named.

A run that misses a mandatory field is still recorded (we never lose a run); the missing fields
are listed in ``RunRecord.incomplete``. A strict policy refuses such a run instead.
"""

from __future__ import annotations

import fnmatch
import re
from datetime import datetime
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrack.errors import InvalidInputError, PolicyError
from orchestrack.record import RunRecord

#: Fields that can only be filled while the run goes on, so a strict policy checks them at finish.
LATE_FIELDS = frozenset({"data", "metrics", "artifacts", "features", "params", "slice_metrics", "task_metrics",
                         "metric_series", "metric_units", "configs", "llm"})

_NAME_VARIABLES = ("key", "pipeline", "purpose", "owner", "date", "run_id")


class SchemaPolicy(BaseModel):
    """What a complete run needs, and the naming rule for runs.

    Set it in the config file (``[policy]``) or the environment, e.g.
    ``ORCHESTRACK_POLICY__STRICT=true`` or
    ``ORCHESTRACK_POLICY__MANDATORY='["owner","purpose","code.commit"]'``.
    """

    model_config = ConfigDict(extra="forbid", defer_build=True)

    mandatory: list[str] = Field(
        default_factory=lambda: ["owner", "purpose", "code.commit", "data.version"],
        description="Dotted record paths that must be set; a list path is satisfied by any item.",
    )
    pipelines: dict[str, list[str]] = Field(
        default_factory=dict,
        description="More mandatory paths for the runs of some pipelines: pipeline name (or a glob such as "
                    "``llm-*``) -> dotted record paths, e.g. ``{'churn-train': ['data.leakage_check', 'configs']}``.",
    )
    strict: bool = Field(default=False, description="Refuse runs that miss a mandatory field.")
    name_template: str = Field(
        default="{key}",
        description="Default run name; variables: " + ", ".join(_NAME_VARIABLES) + ".",
    )
    name_pattern: str = Field(
        default=r"^[A-Za-z0-9][A-Za-z0-9 ._:/@+=,-]{0,199}$",
        description="Regular expression every run name must match.",
    )

    @field_validator("mandatory")
    @classmethod
    def _known_paths(cls, paths: list[str]) -> list[str]:
        return record_paths(paths, "policy.mandatory path")

    @field_validator("pipelines")
    @classmethod
    def _known_pipeline_paths(cls, pipelines: dict[str, list[str]]) -> dict[str, list[str]]:
        for pipeline, paths in pipelines.items():
            record_paths(paths, f"policy.pipelines[{pipeline!r}] path")
        return pipelines

    @field_validator("name_pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(f"policy.name_pattern {pattern!r} is not a valid regular expression: {err}") from err
        return pattern

    @field_validator("name_template")
    @classmethod
    def _known_variables(cls, template: str) -> str:
        for variable in re.findall(r"{(\w+)", template):
            if variable not in _NAME_VARIABLES:
                raise ValueError(
                    f"policy.name_template uses unknown variable {{{variable}}}; "
                    f"available: {', '.join(_NAME_VARIABLES)}"
                )
        return template

    def mandatory_for(self, pipeline: str | None) -> list[str]:
        """The mandatory paths for the runs of ``pipeline``: ``mandatory``, then those of every
        ``pipelines`` entry whose name or glob matches it."""
        paths = list(self.mandatory)
        for pattern, extra in self.pipelines.items():
            if pipeline is not None and fnmatch.fnmatchcase(pipeline, pattern):
                paths.extend(p for p in extra if p not in paths)
        return paths

    def missing(self, record: RunRecord) -> list[str]:
        """The mandatory paths that ``record`` leaves empty, in policy order."""
        document = record.model_dump(mode="python")
        return [path for path in self.mandatory_for(record.orchestrator.pipeline)
                if not has_value(document, path.split("."))]

    def enforce(self, record: RunRecord, *, at_finish: bool) -> list[str]:
        """Return the missing paths; raise :class:`PolicyError` for them when strict.

        At open a strict policy checks only what can be known then (owner, purpose, code ...);
        fields logged during the run (data, metrics ...) are checked at finish.
        """
        missing = self.missing(record)
        if self.strict:
            relevant = missing if at_finish else [p for p in missing if p.split(".")[0] not in LATE_FIELDS]
            if relevant:
                when = "finish" if at_finish else "start"
                raise PolicyError(
                    f"run {record.key!r} misses mandatory fields {relevant} at {when} "
                    "(policy.strict is on). Pass them to start_run()/log them during the run, "
                    "or relax ORCHESTRACK_POLICY__MANDATORY / ORCHESTRACK_POLICY__STRICT."
                )
        return missing

    def run_name(self, *, explicit: str | None, key: str, pipeline: str | None, purpose: str | None,
                 owner: str | None, started_at: datetime, run_id: str) -> str:
        """The run's name: ``explicit`` checked against the naming rule, else the template's."""
        if explicit is not None:
            if not re.match(self.name_pattern, explicit):
                raise InvalidInputError(
                    f"run name {explicit!r} (argument name=) does not match the naming rule "
                    f"{self.name_pattern!r}; choose another name or change ORCHESTRACK_POLICY__NAME_PATTERN"
                )
            return explicit
        values: dict[str, Any] = {
            "key": key, "pipeline": pipeline or "run", "purpose": purpose or "run",
            "owner": owner or "unknown", "date": started_at.strftime("%Y%m%d-%H%M%S"), "run_id": run_id[:8],
        }
        name = self.name_template.format(**values)
        if re.match(self.name_pattern, name):
            return name
        # A generated name is ours to fix: keep the allowed characters rather than refuse the run.
        cleaned = re.sub(r"[^A-Za-z0-9 ._:/@+=,-]", "-", name).lstrip(" ._:/@+=,-")[:200]
        return cleaned if re.match(self.name_pattern, cleaned) else f"run-{run_id[:8]}"


def record_paths(paths: list[str], label: str) -> list[str]:
    """``paths`` when each is a dotted path into a run record; else a ``ValueError`` naming the first bad one."""
    for path in paths:
        problem = path_problem(path.split("."))
        if problem:
            raise ValueError(f"{label} {path!r}: {problem} (dotted record paths, e.g. code.commit or data.version)")
    return paths


def path_problem(parts: list[str]) -> str | None:
    """Why ``parts`` is not a path into a run record, or ``None`` when it is."""
    model: Any = RunRecord
    for depth, part in enumerate(parts):
        fields = getattr(model, "model_fields", None)
        if fields is None:
            # Inside a dict (params.lr, metrics.auc, tags.team) any key may be required.
            return None if depth > 0 and get_origin(model) is dict else f"{'.'.join(parts[:depth])} has no fields"
        if part not in fields:
            if model.model_config.get("extra") == "allow":
                return None  # features.* may hold any extra key
            return f"unknown field {part!r}; choose from {', '.join(sorted(fields))}"
        model = fields[part].annotation
        origin = get_origin(model)
        if origin is list:
            model = get_args(model)[0]
        elif origin not in (None, dict):  # X | None
            model = next(a for a in get_args(model) if a is not type(None))
    return None


def has_value(node: Any, parts: list[str]) -> bool:
    if not parts:
        return node not in (None, "", [], {})
    if isinstance(node, list):
        return any(has_value(item, parts) for item in node)
    if isinstance(node, dict):
        return has_value(node.get(parts[0]), parts[1:])
    return False
