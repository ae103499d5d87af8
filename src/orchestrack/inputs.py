"""Checks and documented coercions of what users pass to orchestrack.

Every check raises :class:`InvalidInputError` naming the bad value, the call and argument it came
from, and the fix. Coercions (listed in docs/configuration.md, "Input rules") keep common values
usable instead of refusing them.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from enum import Enum
from pathlib import PurePath, PurePosixPath, PureWindowsPath
from typing import Any, TypeVar

from pydantic import BaseModel

from orchestrack.errors import InvalidInputError
from orchestrack.evidence import redact
from orchestrack.record import LeakageCheck, LeakageStatus, MetricPoint, Scalar

log = logging.getLogger(__name__)

MAX_NAME = 250
MAX_KEY = 500
MAX_PARAM_VALUE = 6000  # the MLflow store's limit, so every store accepts the same params

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: Lone UTF-16 surrogates (``os.fsdecode`` of a non-UTF-8 file name, a bad decode): no store can encode them.
_SURROGATE = re.compile("[\ud800-\udfff]")
#: Largest integer a store keeps exactly (SQLite INTEGER, MLflow's int64 steps).
MAX_INT = 2**63 - 1
#: Deepest list/dict nesting a param may have (deeper ones exhaust the JSON encoder's recursion).
MAX_DEPTH = 100
E = TypeVar("E", bound=Enum)


def check_name(value: object, what: str, where: str, limit: int = MAX_NAME) -> str:
    """A non-empty single-line name of at most ``limit`` characters."""
    if type(value) is str and limit == MAX_NAME and value in _GOOD_NAMES:
        return value  # a metric or param name of a training loop: checked on its first call
    name = _check_name(value, what, where, limit)
    if limit == MAX_NAME and len(_GOOD_NAMES) < 8192:
        _GOOD_NAMES.add(name)
    return name


#: Names that passed :func:`check_name` (bounded): a loop logging the same names skips the checks.
_GOOD_NAMES: set[str] = set()


def _check_name(value: object, what: str, where: str, limit: int) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string, got {type(value).__name__} {value!r} ({where})")
    if not value.strip():
        raise InvalidInputError(f"{what} is empty ({where}); give it a name")
    if len(value) > limit:
        raise InvalidInputError(
            f"{what} is {len(value)} characters long, the limit is {limit} ({where}): {value[:60]!r}...; "
            "use a shorter name and put the long text in a tag or param")
    if _CONTROL.search(value):
        raise InvalidInputError(f"{what} {value!r} contains control characters or line breaks ({where}); remove them")
    if _SURROGATE.search(value):
        raise InvalidInputError(
            f"{what} {value!r} is not valid Unicode text: it holds a lone surrogate ({where}), as a name decoded "
            "from non-UTF-8 bytes does; decode it with errors='replace' or rename it")
    return value


def check_count(value: object, what: str, where: str, minimum: int = 0) -> int:
    """An integer from ``minimum`` to 2**63-1 (not a bool): a step, an attempt, a row count, a size."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_INT:
        raise InvalidInputError(f"{what} {value!r} ({where}) must be an integer from {minimum} to 2**63-1")
    return value


def clean_text(value: str) -> str:
    """Text as every store can keep it: lone surrogates and NUL characters become U+FFFD."""
    if "\x00" in value or _SURROGATE.search(value):
        return _SURROGATE.sub("\ufffd", value.replace("\x00", "\ufffd"))
    return value


def _depth(value: Any, limit: int) -> int:
    """How deeply lists, tuples and dicts nest in ``value`` (stops counting past ``limit``)."""
    deepest, level, todo = 0, 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, (list, tuple, dict)):
            deepest = max(deepest, level)
            if deepest > limit:
                return deepest
            todo.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def check_key(value: object, where: str) -> str:
    """A run key: the orchestrator's identity of one execution."""
    return check_name(value, "run key", where, limit=MAX_KEY)


def check_choice(value: E | str, enum: type[E], what: str, where: str) -> E:
    """``value`` as a member of ``enum``, or an error listing the valid choices."""
    if isinstance(value, enum):
        return value
    try:
        return enum(str(value).strip().lower())
    except ValueError:
        choices = ", ".join(member.value for member in enum)
        raise InvalidInputError(f"{what} {value!r} ({where}) is not one of: {choices}") from None


def coerce_param(key: str, value: Any, where: str) -> Scalar:
    """A param value as a scalar.

    Coercions: enums to their value, paths to str, numpy scalars to Python, lists/tuples/dicts to
    compact JSON, NaN/inf to ``"nan"``/``"inf"``/``"-inf"``, text over 6000 characters truncated.
    """
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, PurePath):
        value = str(value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 1000:
        raise InvalidInputError(
            f"param {key!r} ({where}) is an integer of {value.bit_length()} bits, too large to keep; "
            "log it as str(value) or log its logarithm")
    if isinstance(value, (list, tuple, dict)):
        if _depth(value, MAX_DEPTH) > MAX_DEPTH:
            raise InvalidInputError(
                f"param {key!r} ({where}) nests lists/dicts more than {MAX_DEPTH} levels deep; "
                "flatten it into separate params or log it as a file with log_config/log_artifact")
        try:
            value = json.dumps(value, separators=(",", ":"), sort_keys=isinstance(value, dict), allow_nan=False)
        except (TypeError, ValueError) as err:
            raise InvalidInputError(
                f"param {key!r} ({where}) holds a {type(value).__name__} that is not JSON-serialisable ({err}); "
                "log its parts as separate params or pass str(value)") from err
    if value is not None and not isinstance(value, (str, int, float, bool)):
        raise InvalidInputError(
            f"param {key!r} ({where}) has type {type(value).__name__}, which cannot be stored; "
            "params are str, int, float, bool or None (lists and dicts become JSON): pass str(value)")
    if isinstance(value, str):
        value = clean_text(value)
    if isinstance(value, str) and len(value) > MAX_PARAM_VALUE:
        log.warning("param %r (%s) is %d characters long; truncated to %d", key, where, len(value), MAX_PARAM_VALUE)
        value = value[: MAX_PARAM_VALUE - 1] + "…"
    return value


def coerce_params(params: Mapping[str, Any], where: str) -> dict[str, Scalar]:
    """Check keys and coerce values of a params mapping."""
    if not isinstance(params, Mapping):
        raise InvalidInputError(f"params must be a mapping of name to value, got {type(params).__name__} ({where})")
    return {check_name(k, "param name", where): masked(k, coerce_param(k, v, where)) for k, v in params.items()}


def check_metric(key: str, value: Any, where: str) -> float:
    """A finite real metric value."""
    check_name(key, "metric name", where)
    if type(value) is float and math.isfinite(value):
        return value  # what a training loop logs: none of the conversions below apply
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(
            f"metric {key!r} ({where}) must be a number, got {type(value).__name__} {value!r}; "
            "log text as a tag or param instead")
    try:
        value = float(value)
    except OverflowError:
        raise InvalidInputError(
            f"metric {key!r} ({where}) is an integer too large for a float ({value.bit_length()} bits); "
            "log a scaled or logarithmic value") from None
    if not math.isfinite(value):
        raise InvalidInputError(
            f"metric {key!r} ({where}) is {value!r}; non-finite values cannot be compared by a quality gate. "
            "Log a finite value, or record the event with set_tags({'" + key + "': 'nan'})")
    return float(value)


def slice_label(slice_: str | Mapping[str, Any] | None, where: str) -> str | None:
    """A metric slice label; a mapping ``{"country": "DE"}`` becomes ``"country=DE"``."""
    if slice_ is None:
        return None
    if isinstance(slice_, Mapping):
        slice_ = ",".join(f"{k}={masked(k, v)}" for k, v in sorted(slice_.items()))
    return redact(check_name(slice_, "metric slice", where))  # metric points skip the core's scrub


#: Words that make a param or tag name secret-looking (matched as whole words of the name, so
#: ``tokenizer``, ``max_tokens`` and ``author`` stay readable while ``hf_token`` and ``apiKey`` do not).
_SECRET_WORDS = frozenset({"password", "passwd", "pwd", "passphrase", "secret", "token", "apikey", "accesskey",
                           "privatekey", "secretkey", "sessionkey", "credential", "credentials", "authorization",
                           "auth", "cookie"})
MASK = "***"


def is_secret_name(name: object) -> bool:
    """True when ``name`` (a param, tag or variable name) says its value is a secret."""
    text = name if type(name) is str else str(name)
    return _is_secret_short_name(text) if len(text) <= 256 else _is_secret_text(text)


@functools.lru_cache(maxsize=8192)
def _is_secret_short_name(name: str) -> bool:  # names repeat on every write of a run: decided once
    return _is_secret_text(name)


def _is_secret_text(name: str) -> bool:
    words = re.findall(r"[a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower())
    pairs = {a + b for a, b in zip(words, words[1:], strict=False)}
    return not _SECRET_WORDS.isdisjoint({*words, *pairs})


def masked(name: object, value: Any) -> Any:
    """A value as it may be stored or shown: ``***`` under a secret-looking name; secrets inside text
    (cloud access keys, bearer tokens, JWTs, private keys, ``user:password@`` in URLs) replaced by ``***``."""
    if is_secret_name(name):
        return MASK
    return redact(value) if isinstance(value, str) else value


def mask_sensitive(values: Mapping[str, Any] | None) -> dict[str, Any]:
    """Params or conf with secrets masked (:func:`masked`); the core masks every param and tag this
    way, adapters also pass orchestrator params (Airflow params and conf, Prefect flow parameters)
    through it before they are coerced."""
    return {str(key): masked(key, value) for key, value in (values or {}).items()}


#: Fields that identify a run, a task or content: kept as given, or the run could not be found again.
_IDENTITY = frozenset({"run_id", "key", "task_id", "sha256"})
#: Mappings keyed by metric or package names, not by setting names: their values are never secrets.
_NAMED_BY_METRIC = frozenset({"packages", "metrics", "metric_units", "slice_metrics", "task_metrics",
                              "metric_series"})


#: Types :func:`scrub` returns as they are: no text inside (``MetricPoint``: checked names and a float,
#: thousands per write).
_KEPT_TYPES = frozenset({type(None), bool, int, float, datetime, date, MetricPoint})


def scrub(value: Any, *, names: bool = True) -> Any:
    """``value`` (a record, a store write's arguments, any JSON-like data) as it may be stored: every
    text passed through :func:`~orchestrack.evidence.redact`, and the value of every mapping entry
    whose name looks secret (:func:`is_secret_name`) replaced by ``***``. Unchanged parts are the
    same objects, so a clean record costs one pass and no copy. The core calls this on every store
    write, whatever path the value came by (an adapter, a failure, an orchestrator's details).

    Example::

        scrub({"db_password": "hunter2", "dsn": "postgresql://u:pw@db/x"})
        # {'db_password': '***', 'dsn': 'postgresql://u:***@db/x'}
    """
    kind = type(value)
    if kind in _KEPT_TYPES:  # the common exact types first: a task attempt holds a dozen fields
        return value
    if kind is not str and isinstance(value, (Enum, bool, int, float, date)):
        return value
    if isinstance(value, str):
        cleaned = redact(value)
        return value if cleaned == value else cleaned
    if isinstance(value, BaseModel):
        extra = value.model_extra or {}
        changes: dict[str, Any] = {}
        for field, item in value.__dict__.items() if not extra else value:
            if field in _IDENTITY:
                continue
            if field in extra and is_secret_name(field) and item not in (None, ""):
                cleaned_item: Any = MASK
            else:
                cleaned_item = scrub(item, names=field not in _NAMED_BY_METRIC)
            if cleaned_item is not item:
                changes[field] = cleaned_item
        return value.model_copy(update=changes) if changes else value
    if isinstance(value, Mapping):
        result = {key: MASK if names and is_secret_name(key) and item not in (None, "")
                  else scrub(item, names=key not in _NAMED_BY_METRIC)
                  for key, item in value.items()}
        return value if all(result[key] is item for key, item in value.items()) else result
    if isinstance(value, (list, tuple)):
        if all(type(item) is MetricPoint for item in value):  # a batch of checked points
            return value
        items = [scrub(item, names=names) for item in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else type(value)(items)
    return value


def adapter_args(where: str, *, purpose: object = None, run_owner: object = None, datasets: object = (),
                 run_tags: object = None) -> list[str]:
    """Check an adapter's decorator or operator arguments when the flow, DAG or pipeline is defined, so
    a typo fails there with a clear error instead of every run going untracked. Returns ``datasets``
    as a list (a single string is one dataset, not its characters)."""
    from orchestrack.record import Purpose

    if purpose is not None:
        check_choice(purpose if isinstance(purpose, (str, Purpose)) else repr(purpose), Purpose, "purpose",
                     f"{where} purpose=")
    if run_owner is not None:
        check_name(run_owner, "run_owner", f"{where} run_owner=")
    items = [datasets] if isinstance(datasets, (str, os.PathLike)) else datasets
    if items is None or isinstance(items, (bytes, Mapping)) or not isinstance(items, (list, tuple, set, frozenset)):
        raise InvalidInputError(f"datasets ({where} datasets=) must be a list of URIs such as "
                                f"['s3://bucket/train/'], got {type(datasets).__name__} {datasets!r}")
    uris = [os.fspath(check_path(uri, "dataset URI", f"{where} datasets=")) for uri in items]
    if run_tags is not None and not isinstance(run_tags, Mapping):
        raise InvalidInputError(f"run_tags ({where} run_tags=) must be a mapping of name to value, "
                                f"got {type(run_tags).__name__} {run_tags!r}")
    if run_tags:
        coerce_tags(run_tags, f"{where} run_tags=")
    return [str(uri) for uri in uris]


def check_artifact_name(name: str, where: str) -> str:
    """A relative artifact name that cannot escape the run's artifact folder."""
    check_name(name, "artifact name", where)
    path = PurePosixPath(name.replace("\\", "/"))
    # A drive ("C:/x", "C:x") is absolute where the artifact is fetched on Windows.
    if path.is_absolute() or ".." in path.parts or PureWindowsPath(name).drive:
        raise InvalidInputError(
            f"artifact name {name!r} ({where}) would escape the run's artifact folder; "
            "use a relative name without '..', e.g. name='model.pt'")
    if not path.parts:
        raise InvalidInputError(f"artifact name {name!r} ({where}) names no file; give it a name, e.g. name='model.pt'")
    return path.as_posix()


def check_path(value: object, what: str, where: str) -> str | os.PathLike[str]:
    """A local path or URI given as ``str`` or ``os.PathLike``: not empty, without NUL characters."""
    if isinstance(value, bytes) or not isinstance(value, (str, os.PathLike)):
        hint = " (decode bytes with os.fsdecode)" if isinstance(value, bytes) else ""
        raise InvalidInputError(f"{what} must be a path or URI string, got {type(value).__name__} {value!r} "
                                f"({where}){hint}")
    text = os.fspath(value)
    if not isinstance(text, str):
        raise InvalidInputError(f"{what} {value!r} ({where}) is a bytes path; pass os.fsdecode(path)")
    if not text.strip():
        raise InvalidInputError(f"{what} is empty ({where}); give the path or URI it refers to")
    if "\x00" in text:
        raise InvalidInputError(
            f"{what} {text!r} contains a NUL character ({where}); no file has such a name: remove it")
    return value


def coerce_tags(tags: Mapping[str, Any], where: str) -> dict[str, str]:
    """Tags as text (scalars are converted with ``str``)."""
    if not isinstance(tags, Mapping):
        raise InvalidInputError(f"tags must be a mapping of name to value, got {type(tags).__name__} ({where})")
    result = {}
    for key, value in tags.items():
        check_name(key, "tag name", where)
        text = coerce_param(key, value, where)
        result[key] = "" if text is None else masked(key, str(text))
    return result


def leakage_check(value: LeakageCheck | Mapping[str, Any] | str | None, where: str) -> LeakageCheck | None:
    """A leakage screening result from ``"passed"``/``"failed"``/``"not-run"`` or ``{"status", "note"}``."""
    if value is None or isinstance(value, LeakageCheck):
        return value
    if isinstance(value, str):
        return LeakageCheck(status=check_choice(value, LeakageStatus, "leakage check", where))
    if isinstance(value, Mapping) and set(value) <= {"status", "note"} and "status" in value:
        note = value.get("note")
        if note is not None and not isinstance(note, str):
            raise InvalidInputError(f"leakage check note ({where}) must be text, got {type(note).__name__}")
        return LeakageCheck(status=check_choice(value["status"], LeakageStatus, "leakage check", where),
                            note=redact(note) if note else None)
    raise InvalidInputError(
        f"leakage check {value!r} ({where}) must be 'passed', 'failed' or 'not-run', or a mapping "
        "{'status': ..., 'note': ...}")


def data_filters(value: Mapping[str, Any] | str | None, where: str) -> dict[str, Any] | str | None:
    """What selected a data snapshot: a mapping of column to value(s), or an expression, as JSON-safe values."""
    if value is None:
        return None
    if isinstance(value, str):
        if not value.strip():
            raise InvalidInputError(f"filters ({where}) is empty; pass None, an expression or a mapping")
        return str(masked("filters", coerce_param("filters", value, where)))
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"filters ({where}) must be a mapping such as {{'country': ['DE', 'FR']}} or an "
                                f"expression string, got {type(value).__name__}")
    result: dict[str, Any] = {}
    for key, item in value.items():
        check_name(key, "filter name", where)
        if isinstance(item, (set, frozenset)):
            item = sorted(item, key=str)
        result[key] = json.loads(json.dumps(masked(key, item), default=str))
    return result


def moment(value: date | datetime | str | None, where: str) -> date | datetime | None:
    """A date or a UTC datetime (a naive datetime is taken as UTC) from a value or ISO 8601 text."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            value = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInputError(f"{value!r} ({where}) is not an ISO 8601 date or datetime; "
                                    "write e.g. '2026-10-01' or '2026-10-01T06:00:00Z'") from None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return value
    raise InvalidInputError(f"{value!r} ({where}) must be a date, a datetime or ISO 8601 text, "
                            f"got {type(value).__name__}")


def text_list(value: Sequence[str] | None, where: str) -> list[str]:
    """A list of one-line descriptions (joins, transformations); a single string is a list of one."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, Sequence):
        raise InvalidInputError(f"{where} must be a list of strings, got {type(value).__name__}")
    return [check_name(item, "entry", where, limit=MAX_PARAM_VALUE) for item in items]


def metric_units(unit: str | Mapping[str, str], keys: list[str], where: str) -> dict[str, str]:
    """The unit of each metric: one ``unit`` for all of ``keys``, or a mapping for some of them."""
    units = dict.fromkeys(keys, unit) if isinstance(unit, str) else unit
    if not isinstance(units, Mapping):
        raise InvalidInputError(f"unit ({where}) must be text such as 'ms' or a mapping of metric to unit, "
                                f"got {type(unit).__name__}")
    for key, text in units.items():
        check_name(text, f"unit of metric {key!r}", where, limit=40)
    return dict(units)
