"""Configuration: explicit argument > ``ORCHESTRACK_*`` environment > config file > default.

The config file is TOML: ``$ORCHESTRACK_CONFIG`` when set, else ``./orchestrack.toml`` when it
exists, else ``$ORCHESTRACK_HOME/config.toml``. Nested fields use ``__`` in the environment
(``ORCHESTRACK_POLICY__STRICT=true``) and tables in the file (``[policy]``). Unknown keys in the
file are errors, so a typo never becomes a silent default. docs/configuration.md lists every field.
"""

from __future__ import annotations

import json
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orchestrack.errors import InvalidInputError
from orchestrack.policy import SchemaPolicy
from orchestrack.record import FailureReason

ENV_PREFIX = "ORCHESTRACK_"


class FailureRuleSetting(BaseModel):
    """A team failure rule from configuration: a pattern and the label it means.

    In the config file::

        [[failure_rules]]
        pattern = "partition \\S+ is not ready"
        reason = "data-error"
        detail = "late-partition"
        cause = "found its input partition missing"
    """

    model_config = ConfigDict(extra="forbid", defer_build=True)

    pattern: str = Field(description="Regular expression searched (case-insensitive) in the failure text.")
    reason: FailureReason
    detail: str | None = None
    cause: str = Field(default="failed", description="Words after the task in the sentence.")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(f"failure rule pattern {pattern!r} is not a valid regular expression: {err}") from err
        return pattern


def default_home() -> Path:
    """``~/.orchestrack``: where the embedded store lives unless ``ORCHESTRACK_HOME`` says otherwise."""
    return Path("~/.orchestrack").expanduser()


def config_file_path() -> Path | None:
    """The config file in force, or ``None`` when there is none."""
    explicit = os.environ.get(ENV_PREFIX + "CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    local = Path("orchestrack.toml")
    if local.is_file():
        return local.resolve()
    home = Path(os.environ.get(ENV_PREFIX + "HOME") or default_home()).expanduser()
    candidate = home / "config.toml"
    return candidate if candidate.is_file() else None


class S3Settings(BaseModel):
    """Where S3 is, when boto3's own chain (``AWS_ENDPOINT_URL_S3``, ``AWS_DEFAULT_REGION``,
    ``AWS_PROFILE``, instance roles) should not decide. Credentials always come from boto3's chain."""

    model_config = ConfigDict(extra="forbid")

    endpoint_url: str | None = Field(default=None, description="An S3-compatible server, e.g. http://minio:9000.")
    region: str | None = Field(default=None, description="The bucket's region.")
    profile: str | None = Field(default=None, description="A named profile of ~/.aws/config.")


class MlflowSettings(BaseModel):
    """How runs are laid out in an MLflow tracking server (``ORCHESTRACK_TRACKING_URI=http://...``)."""

    model_config = ConfigDict(extra="forbid")

    experiment: str = Field(
        default="{pipeline}",
        description="The experiment a run goes into: a template with {pipeline} (the DAG, flow or pipeline "
                    "name; 'orchestrack' when there is none) and {kind} (airflow, prefect, kfp, python). "
                    "On Databricks, a workspace path such as /Shared/{pipeline}.")
    claims: str = Field(
        default=".orchestrack-run-claims",
        description="Name prefix of the hidden (deleted) experiments that make opening a run by key race-free. "
                    "On Databricks, a workspace folder such as /Shared/.orchestrack-run-claims.")
    ui_url: str | None = Field(
        default=None, description="The MLflow UI's address when it is not the tracking URI (e.g. behind a proxy).")
    timeout_s: float = Field(
        default=30.0, gt=0, le=3600, allow_inf_nan=False,
        description="The longest one request to the tracking server may take, its retries included: a server "
                    "that accepts and never answers fails the write after this long (spooled unless strict).")
    join_injected_run: bool = Field(
        default=True,
        description="In a KFP component whose MLflow plugin injected MLFLOW_RUN_ID, write into that run and its "
                    "parent instead of making runs of our own.")

    @field_validator("experiment")
    @classmethod
    def _template(cls, template: str) -> str:
        try:
            template.format(pipeline="p", kind="k")
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(f"experiment template {template!r} may use only {{pipeline}} and {{kind}} ({err!r})") \
                from err
        return template


class Settings(BaseModel):
    """Every orchestrack setting. Build it with :func:`load_settings` (which reads the environment and
    the config file; the constructor takes only what it is given).

    Example::

        settings = load_settings(tracking_uri="sqlite:////tmp/runs.db")
    """

    model_config = ConfigDict(extra="forbid", validate_default=True)

    home: Path = Field(default_factory=default_home,
                       description="Folder of the embedded store, spool and artifacts.")
    tracking_uri: str | None = Field(
        default=None, description="Store URI; default: sqlite:///$ORCHESTRACK_HOME/orchestrack.db.")
    artifact_uri: str | None = Field(
        default=None, description="Where artifacts go; default: $ORCHESTRACK_HOME/artifacts.")
    strict: bool = Field(default=False, description="Raise tracking faults instead of logging and spooling them.")
    ui_url: str | None = Field(
        default=None,
        description="Where a person opens a run: a URL template with {run_id} and/or {key} (e.g. a dashboard).")
    run_key: str | None = Field(default=None,
                                description="Attach fluent calls in this process to the run with this key.")
    image: str | None = Field(default=None,
                              description="Container image to record when no adapter knows it.")
    packages: list[str] = Field(default_factory=list,
                                description="Extra distributions whose versions are recorded.")
    code_dir: Path | None = Field(default=None, description="Checkout to read the code commit from; default: cwd.")
    spool_dir: Path | None = Field(default=None,
                                   description="Where faulted writes wait; default: $ORCHESTRACK_HOME/spool.")
    busy_timeout_s: float = Field(default=30.0, gt=0, le=86_400, allow_inf_nan=False,
                                  description="How long SQLite waits for a lock.")
    lease_s: float = Field(
        default=120.0, ge=0, allow_inf_nan=False,
        description="How long a running task attempt's lease lasts (renewed every lease_s/3 while it runs); "
                    "`orchestrack reap` ends attempts whose lease expired. 0: no leases.")
    metric_flush_s: float = Field(
        default=1.0, ge=0, allow_inf_nan=False,
        description="Metric points are written in batches at least this often (0: every call at once).")
    delivery_timeout_s: float = Field(
        default=10.0, ge=0, allow_inf_nan=False,
        description="How long a task's end, a run's close and the process's exit wait for journaled writes to reach "
                    "a remote store (not at all while it is down); what is left waits in the journal.")
    data_hash_limit_mb: int = Field(
        default=256, ge=0,
        description="Local data files up to this size get a sha256 version; larger get a stat fingerprint.")
    s3: S3Settings = Field(default_factory=S3Settings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    policy: SchemaPolicy = Field(default_factory=SchemaPolicy)
    failure_rules: list[FailureRuleSetting] = Field(
        default_factory=list,
        description="Team failure rules, tried before the built-in ones (docs/failure-reasons.md).")

    @field_validator("tracking_uri", "artifact_uri")
    @classmethod
    def _uri(cls, uri: str | None) -> str | None:
        # "" means unset (ORCHESTRACK_TRACKING_URI= in a shell); blank or control characters would name
        # a file such as "   " in the working directory instead of failing.
        if uri is None or uri == "":
            return None
        if not uri.strip() or re.search(r"[\x00-\x1f\x7f]", uri):
            raise ValueError(f"URI {uri!r} is blank or contains control characters; write a path or scheme://... "
                             "without spaces around it")
        if uri.removeprefix("sqlite:///").strip() in (":memory:", ""):
            raise ValueError("an in-memory SQLite store is not shared between processes and loses every run at "
                             "exit; give a file, e.g. sqlite:////srv/orchestrack/runs.db")
        return uri

    @property
    def resolved_tracking_uri(self) -> str:
        """The store URI in force."""
        return self.tracking_uri or f"sqlite:///{self.home.expanduser() / 'orchestrack.db'}"

    @property
    def resolved_artifact_uri(self) -> str:
        """The artifact location in force."""
        return self.artifact_uri or str(self.home.expanduser() / "artifacts")

    @property
    def resolved_spool_dir(self) -> Path:
        """The spool folder in force."""
        return (self.spool_dir or self.home / "spool").expanduser()


_cache: dict[tuple[Any, ...], Settings] = {}


def load_settings(**overrides: Any) -> Settings:
    """Settings from arguments, environment and config file, cached until any of them change."""
    path = config_file_path()
    try:
        stamp = path.stat().st_mtime_ns if path is not None else None
    except OSError:
        stamp = None
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.upper().startswith(ENV_PREFIX)))
    cache_key = (env, str(path), stamp, tuple(sorted((k, repr(v)) for k, v in overrides.items())))
    cached = _cache.get(cache_key)
    if cached is not None:
        return cached
    if path is not None and not path.is_file():
        raise InvalidInputError(
            f"config file {str(path)!r} (from ORCHESTRACK_CONFIG) does not exist; "
            "create it or unset ORCHESTRACK_CONFIG")
    from_file = _file_values(path) if path is not None else {}
    try:
        settings = Settings.model_validate(_layered(from_file, _environment_values(), overrides))
    except ValidationError as err:
        raise InvalidInputError(_explain(err, overrides, path)) from err
    if len(_cache) > 32:
        _cache.clear()
    _cache[cache_key] = settings
    return settings


def _file_values(path: Path) -> dict[str, Any]:
    """The config file's tables, as written (its keys are checked when the settings are validated)."""
    import tomllib  # only where there is a file

    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except OSError as err:
        raise InvalidInputError(f"cannot read orchestrack settings from config file {path}: {err.strerror or err}; "
                                "make it readable or point ORCHESTRACK_CONFIG elsewhere") from err
    except (ValueError, RecursionError) as err:  # not TOML, not UTF-8, or nested past the parser's depth
        problem = "it nests too deeply" if isinstance(err, RecursionError) else str(err)
        raise InvalidInputError(
            f"cannot read orchestrack settings from config file {path} (ORCHESTRACK_CONFIG, ./orchestrack.toml "
            f"or $ORCHESTRACK_HOME/config.toml): not valid UTF-8 TOML: {problem}; fix the file "
            "(docs/configuration.md shows an example) or point ORCHESTRACK_CONFIG elsewhere") from err


def _environment_values() -> dict[str, Any]:
    """Settings from ``ORCHESTRACK_*`` variables (names in any case): ``ORCHESTRACK_<FIELD>``, JSON for a
    list or table, and ``ORCHESTRACK_<FIELD>__<KEY>...`` for one key inside a table, laid over it.
    Variables that name no setting (``ORCHESTRACK_CONFIG``) are not settings and are left alone."""
    variables = {name.lower(): (name, value) for name, value in os.environ.items()
                 if name.upper().startswith(ENV_PREFIX)}
    ordered = sorted(variables)  # a table's own variable before those of keys inside it
    values: dict[str, Any] = {}
    for field_name, field in Settings.model_fields.items():
        variable = ENV_PREFIX.lower() + field_name
        if variable in variables:
            name, value = variables[variable]
            values[field_name] = _decoded(name, value) if _is_table_or_list(field.annotation) else value
        nested: dict[str, Any] = {}
        for lowered in ordered:
            if lowered.startswith(variable + "__"):
                name, value = variables[lowered]
                _put(nested, field.annotation, lowered[len(variable) + 2:].split("__"), name, value)
        if nested and field_name not in values:
            values[field_name] = nested
        elif nested and isinstance(values[field_name], dict):
            values[field_name] = _layered(values[field_name], nested)
    return values


def _put(into: dict[str, Any], annotation: Any, keys: list[str], name: str, value: str) -> None:
    """Set one nested key's value from the variable ``name``, decoding JSON where the key holds a list or table."""
    for key in keys[:-1]:
        annotation = _inner(annotation, key)
        into = into.setdefault(key, {})
        if not isinstance(into, dict):  # a key given both a value and keys inside it: the value stands
            return
    inner = _inner(annotation, keys[-1])
    into[keys[-1]] = _decoded(name, value) if value and inner is not None and _is_table_or_list(inner) else value


def _inner(annotation: Any, key: str) -> Any:
    """The annotation of ``key`` inside a model or table annotation (``None`` when it has no such key)."""
    for option in _options(annotation):
        if isinstance(option, type) and issubclass(option, BaseModel):
            field = option.model_fields.get(key)
            return field.annotation if field is not None else None
        if typing.get_origin(option) is dict:
            return typing.get_args(option)[1] if typing.get_args(option) else Any
    return None


def _options(annotation: Any) -> tuple[Any, ...]:
    """The types an annotation allows: each member of a union (``X | None``), else itself."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _is_table_or_list(annotation: Any) -> bool:
    """Whether a setting of this type is written as JSON in the environment: a model, list or table."""
    for option in _options(annotation):
        kind = typing.get_origin(option) or option
        if isinstance(kind, type) and issubclass(kind, (BaseModel, list, dict, tuple, set, frozenset)):
            return True
    return False


def _decoded(name: str, value: str) -> Any:
    """The JSON value of the environment variable ``name``, or an error that shows how to write it."""
    try:
        return json.loads(value)
    except (ValueError, RecursionError) as err:
        raise InvalidInputError(
            f"cannot read orchestrack settings: environment variable {name} is not valid JSON "
            f"({value[:80]!r}: {err}); lists and tables are JSON in the environment, "
            f"e.g. {name}='[\"a\", \"b\"]' or '{{\"strict\": true}}', or set one field with {name}__FIELD") from err


def _layered(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """The layers merged, a later one over an earlier one, tables key by key."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            below = merged.get(key)
            merged[key] = _layered(below, value) if isinstance(below, dict) and isinstance(value, Mapping) else value
    return merged


def _explain(err: ValidationError, overrides: dict[str, Any], path: Path | None) -> str:
    lines = []
    for problem in err.errors():
        location = [str(part) for part in problem["loc"]]
        dotted = ".".join(location)
        env_name = ENV_PREFIX + "__".join(location).upper()
        if location and location[0] in overrides:
            source = f"argument {location[0]}="
        elif env_name in {k.upper() for k in os.environ} or (ENV_PREFIX + location[0].upper()) in os.environ:
            source = f"environment variable {env_name}"
        elif path is not None:
            source = f"config file {path}"
        else:
            source = "defaults"
        lines.append(f"setting {dotted!r} from {source}: {problem['msg']} (got {problem.get('input')!r})")
    return "invalid orchestrack settings: " + "; ".join(lines) + ". See docs/configuration.md for the valid values."
