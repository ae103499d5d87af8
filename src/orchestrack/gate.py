"""The quality gate: a run's metrics against bounds, a baseline run and the pipeline's own history.

A gate spec (YAML, TOML, JSON or a mapping) names metric bounds, an optional baseline with the
regression it tolerates, record fields that must be present, and what counts as a suspicious
improvement. :func:`check_gate` decides ``passed``, ``failed`` or ``held`` and records the decision,
with every check and its numbers, on the run (``record.gate``). A failed gate fails the run with
reason ``metric-regression``; a held run is kept from promotion until a person looks.

Example::

    decision = orchestrack.check_gate("nightly-train/2026-11-28", "gate.yaml")
    decision.outcome  # GateOutcome.PASSED / FAILED / HELD
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import statistics
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestrack.errors import InvalidInputError, OrchestrackError
from orchestrack.fingerprint import failure_fingerprint
from orchestrack.record import (
    Failure,
    FailureReason,
    GateCheck,
    GateDecision,
    GateOutcome,
    LeakageStatus,
    Purpose,
    RunRecord,
    RunStatus,
    utcnow,
)

log = logging.getLogger(__name__)

#: ``auc`` or ``auc[country=DE]``: a metric, optionally of one slice.
_METRIC_KEY = re.compile(r"^(?P<metric>[^\[\]]+?)(?:\[(?P<slice>[^\[\]]+)\])?$")
#: Names of metrics where lower is better, when the spec does not say.
_LOWER_IS_BETTER = re.compile(r"(loss|error|err\b|latency|rmse|mse|mae|mape|_ms$|_s$|seconds|time|cost|perplexity)",
                              re.IGNORECASE)
#: The task name a gate step and a gate-failed run carry.
GATE_TASK = "quality-gate"


class GateFailedError(OrchestrackError):
    """A quality gate rejected the run; ``failure`` is the ``metric-regression`` failure it carries."""

    def __init__(self, decision: GateDecision, failure: Failure) -> None:
        super().__init__(decision.summary)
        self.decision = decision
        self.failure = failure


class GateHeldError(OrchestrackError):
    """A quality gate held the run for review and the step was asked to fail on a hold."""

    def __init__(self, decision: GateDecision) -> None:
        super().__init__(decision.summary)
        self.decision = decision


# -- the spec -----------------------------------------------------------------------------------


class _SpecModel(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class MetricBound(_SpecModel):
    """Bounds of one metric; ``better`` says which way is an improvement (default: from the bounds or name)."""

    min: float | None = None
    max: float | None = None
    better: Literal["higher", "lower"] | None = None

    @model_validator(mode="after")
    def _some_bound(self) -> MetricBound:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class Baseline(_SpecModel):
    """The run to compare against and how much worse than it a metric may be.

    ``run``: ``latest-baseline`` (the newest succeeded run of the same pipeline with purpose
    ``baseline``), ``champion`` (the run behind the ``champion`` alias of ``model``, default: the
    pipeline's name), or a run key or id. ``max_regression`` values are absolute (``0.02``) or
    relative to the baseline's value (``"2%"``).
    """

    run: str = "latest-baseline"
    model: str | None = None
    max_regression: dict[str, float | str] = Field(default_factory=dict)

    @field_validator("max_regression")
    @classmethod
    def _amounts(cls, values: dict[str, float | str]) -> dict[str, float | str]:
        for metric, amount in values.items():
            _metric_key(metric)
            _regression_allowance(amount, 1.0, metric)
        return values


class Suspicious(_SpecModel):
    """When an improvement is too good to pass without a person looking.

    A metric more than ``max_sigma`` standard deviations better than the mean of the pipeline's
    last ``history`` gated-or-succeeded runs (at least ``min_history`` of them), or beyond its
    ``ceiling``, holds the run.
    """

    enabled: bool = True
    max_sigma: float = Field(default=4.0, gt=0)
    min_history: int = Field(default=5, ge=2)
    history: int = Field(default=50, ge=2, le=10_000)
    ceiling: dict[str, float] = Field(default_factory=dict)


class GateSpec(_SpecModel):
    """A quality gate: metric bounds, a baseline, required record fields, suspicious improvements.

    Example (YAML)::

        metrics:
          auc: {min: 0.75}
          "auc[country=DE]": {min: 0.70}
        baseline: {run: latest-baseline, max_regression: {auc: 0.02}}
        require: [code.commit, data]
        suspicious: {max_sigma: 4, ceiling: {auc: 0.995}}
    """

    metrics: dict[str, MetricBound] = Field(default_factory=dict)
    baseline: Baseline | None = None
    require: list[str] = Field(default_factory=list)
    suspicious: Suspicious = Field(default_factory=Suspicious)

    @field_validator("metrics")
    @classmethod
    def _metric_keys(cls, metrics: dict[str, MetricBound]) -> dict[str, MetricBound]:
        for key in metrics:
            _metric_key(key)
        return metrics

    @field_validator("require")
    @classmethod
    def _record_paths(cls, paths: list[str]) -> list[str]:
        from orchestrack.policy import record_paths

        return record_paths(paths, "record path")

    def better(self, key: str) -> str:
        """``higher`` or ``lower``: which way ``key`` improves."""
        bound = self.metrics.get(key) or self.metrics.get(_metric_key(key)[0])
        if bound is not None:
            if bound.better:
                return bound.better
            if bound.min is not None and bound.max is None:
                return "higher"
            if bound.max is not None and bound.min is None:
                return "lower"
        return "lower" if _LOWER_IS_BETTER.search(_metric_key(key)[0]) else "higher"


def _metric_key(key: str) -> tuple[str, str | None]:
    """``("auc", "country=DE")`` from ``auc[country=DE]``."""
    found = _METRIC_KEY.match(key.strip()) if isinstance(key, str) else None
    if found is None:
        raise ValueError(f"metric {key!r} must be a name or name[slice], e.g. auc or auc[country=DE]")
    return found["metric"].strip(), (found["slice"].strip() if found["slice"] else None)


def _regression_allowance(amount: float | str, baseline: float, metric: str) -> float:
    """How much worse than ``baseline`` the metric may be: ``0.02``, or ``"2%"`` of the baseline."""
    if isinstance(amount, str):
        text = amount.strip()
        if not text.endswith("%"):
            try:
                return abs(float(text))
            except ValueError:
                raise ValueError(f"max_regression of {metric!r} is {amount!r}: give a number (0.02) or a "
                                 "percentage of the baseline (\"2%\")") from None
        try:
            return abs(baseline) * float(text[:-1]) / 100
        except ValueError:
            raise ValueError(f"max_regression of {metric!r} is {amount!r}: not a percentage") from None
    return abs(float(amount))


# -- loading ------------------------------------------------------------------------------------


def load_gate_spec(source: GateSpec | Mapping[str, Any] | str | Path) -> tuple[GateSpec, str]:
    """The spec from a :class:`GateSpec`, a mapping, a file path (``.yaml``, ``.yml``, ``.toml``,
    ``.json``) or YAML text; returns it with where it came from.

    Raises :class:`~orchestrack.errors.InvalidInputError` naming the bad key, its line and the fix.
    """
    if isinstance(source, GateSpec):
        return source, "inline"
    if isinstance(source, Mapping):
        return _validated(dict(source), "the gate spec (inline)", {}), "inline"
    if not isinstance(source, str | Path):
        raise InvalidInputError(f"a gate spec is a path, YAML text or a mapping, got {type(source).__name__}")
    text_given = isinstance(source, str) and ("\n" in source or source.lstrip().startswith("{"))
    if text_given:
        return _from_yaml(str(source), "the gate spec (inline YAML)"), "inline"
    path = Path(source)
    if not path.is_file():
        raise InvalidInputError(f"gate spec {str(path)!r} does not exist or is not a file; give the path of a "
                                ".yaml, .toml or .json file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidInputError(f"cannot read gate spec {str(path)!r}: {err}") from err
    where = f"gate spec {str(path)!r}"
    if path.suffix.lower() == ".toml":
        import tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise InvalidInputError(f"{where} is not valid TOML: {err}") from err
        return _validated(data, where, _toml_lines(text)), str(path)
    return _from_yaml(text, where), str(path)  # YAML is a superset of JSON


def _from_yaml(text: str, where: str) -> GateSpec:
    import yaml

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise InvalidInputError(f"{where} is not valid YAML: {' '.join(str(err).split())}") from err
    lines: dict[tuple[str, ...], int] = {}
    if node is not None:
        _yaml_lines(node, (), lines)
    return _validated(data if data is not None else {}, where, lines)


def _yaml_lines(node: Any, path: tuple[str, ...], lines: dict[tuple[str, ...], int]) -> None:
    """The 1-based line of every key in a composed YAML node tree, by key path."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = (*path, str(key_node.value))
            lines[child] = key_node.start_mark.line + 1
            _yaml_lines(value_node, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, str(index))] = item.start_mark.line + 1
            _yaml_lines(item, (*path, str(index)), lines)


def _toml_lines(text: str) -> dict[tuple[str, ...], int]:
    """Lines of TOML keys and tables (tomllib keeps none): ``[a.b]`` headers and ``key =`` lines."""
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        header = re.match(r"^\[+\s*([^\]]+?)\s*\]+", stripped)
        if header:
            table = tuple(part.strip().strip('"') for part in re.findall(r'"[^"]*"|[^.]+', header[1]))
            lines.setdefault(table, number)
            continue
        key = re.match(r'^("[^"]*"|[A-Za-z0-9_-]+)\s*=', stripped)
        if key:
            lines.setdefault((*table, key[1].strip('"')), number)
    return lines


def _validated(data: Any, where: str, lines: Mapping[tuple[str, ...], int]) -> GateSpec:
    if not isinstance(data, dict):
        raise InvalidInputError(f"{where} must be a mapping with keys metrics, baseline, require, suspicious; "
                                f"got {type(data).__name__}")
    try:
        return GateSpec.model_validate(data)
    except ValidationError as err:
        problems = []
        for error in err.errors():
            loc = tuple(str(part) for part in error["loc"])
            line = next((lines[loc[:size]] for size in range(len(loc), 0, -1) if loc[:size] in lines), None)
            at = f" (line {line})" if line else ""
            key = ".".join(loc) or "(top level)"
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = f"unknown key; {_known_keys(loc)}"
            problems.append(f"{key}{at}: {message}")
        raise InvalidInputError(f"{where} is not a valid gate spec: " + "; ".join(problems)
                                + " (see docs/gate.md for the spec's keys)") from None


def _known_keys(loc: tuple[str, ...]) -> str:
    model: Any = GateSpec
    for part in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            break
        annotation = field.annotation
        model = next((a for a in getattr(annotation, "__args__", (annotation,)) if hasattr(a, "model_fields")),
                     annotation)
        if getattr(annotation, "__origin__", None) is dict:
            model = annotation.__args__[1]
    fields = getattr(model, "model_fields", None)
    return f"expected one of {', '.join(fields)}" if fields else "not expected here"


def spec_digest(spec: GateSpec) -> str:
    """The spec's content hash: the same spec from YAML, TOML or a mapping hashes the same."""
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


# -- deciding -----------------------------------------------------------------------------------


def evaluate_gate(record: RunRecord, spec: GateSpec, *, baseline: RunRecord | None = None,
                  baseline_note: str | None = None, history: list[RunRecord] | None = None,
                  spec_source: str | None = None) -> GateDecision:
    """The decision on ``record`` (pure: nothing is read or written).

    ``baseline`` is the run the baseline checks compare with (``baseline_note`` says why there is
    none); ``history`` the pipeline's earlier runs for the suspicious-jump check.
    """
    checks: list[GateCheck] = []
    for key, bound in spec.metrics.items():
        checks.extend(_bound_checks(record, key, bound))
    if spec.baseline is not None and spec.baseline.max_regression:
        checks.extend(_baseline_checks(record, spec, baseline, baseline_note))
    checks.extend(_require_checks(record, spec.require))
    if spec.suspicious.enabled:
        checks.extend(_suspicious_checks(record, spec, history or []))
    failed = [c for c in checks if c.outcome is GateOutcome.FAILED]
    held = [c for c in checks if c.outcome is GateOutcome.HELD]
    if failed:
        more = f" ({_count(len(failed) - 1, 'more check')} failed)" if len(failed) > 1 else ""
        outcome, summary = GateOutcome.FAILED, f"Quality gate failed: {failed[0].sentence}{more}"
    elif held:
        more = f" ({_count(len(held) - 1, 'more check')} held)" if len(held) > 1 else ""
        outcome, summary = GateOutcome.HELD, f"Quality gate held the run for review: {held[0].sentence}{more}"
    else:
        outcome = GateOutcome.PASSED
        summary = f"Quality gate passed: {_count(len(checks), 'check')} passed."
    return GateDecision(outcome=outcome, summary=summary, checks=checks, spec=spec_source,
                        spec_sha256=spec_digest(spec), baseline_run=baseline.run_id if baseline else None,
                        decided_at=utcnow())


def _count(number: int, word: str) -> str:
    return f"{number} {word}{'' if number == 1 else 's'}"


def metric_value(record: RunRecord, key: str) -> float | None:
    """The run's value of ``auc`` or ``auc[country=DE]`` (the latest logged), or ``None``."""
    metric, slice_label = _metric_key(key)
    if slice_label is None:
        return record.metrics.get(metric)
    values = record.slice_metrics.get(slice_label)
    if values is None:  # the same slice written with its parts in another order
        wanted = sorted(part.strip() for part in slice_label.split(","))
        values = next((v for label, v in record.slice_metrics.items()
                       if sorted(part.strip() for part in label.split(",")) == wanted), None)
    return values.get(metric) if values else None


def _bound_checks(record: RunRecord, key: str, bound: MetricBound) -> list[GateCheck]:
    value = metric_value(record, key)
    if value is None:
        return [GateCheck(kind="min" if bound.min is not None else "max", subject=key, outcome=GateOutcome.FAILED,
                          bound=bound.min if bound.min is not None else bound.max,
                          sentence=f"metric {key} was not logged by the run, so its bound cannot be checked.")]
    checks = []
    if bound.min is not None:
        ok = value >= bound.min
        checks.append(GateCheck(kind="min", subject=key, value=value, bound=bound.min,
                                outcome=GateOutcome.PASSED if ok else GateOutcome.FAILED,
                                sentence=f"{key} = {value:.6g} is {'at or above' if ok else 'below'} its minimum "
                                         f"{bound.min:g}."))
    if bound.max is not None:
        ok = value <= bound.max
        checks.append(GateCheck(kind="max", subject=key, value=value, bound=bound.max,
                                outcome=GateOutcome.PASSED if ok else GateOutcome.FAILED,
                                sentence=f"{key} = {value:.6g} is {'at or below' if ok else 'above'} its maximum "
                                         f"{bound.max:g}."))
    return checks


def _baseline_checks(record: RunRecord, spec: GateSpec, baseline: RunRecord | None,
                     note: str | None) -> list[GateCheck]:
    assert spec.baseline is not None
    if baseline is None:
        return [GateCheck(kind="baseline", subject=key, outcome=GateOutcome.PASSED,
                          sentence=f"{key} has no baseline to compare with ({note or 'none found'}).")
                for key in spec.baseline.max_regression]
    reference = f"{baseline.name} ({baseline.run_id[:8]})"
    checks = []
    for key, amount in spec.baseline.max_regression.items():
        value, before = metric_value(record, key), metric_value(baseline, key)
        if value is None or before is None:
            missing = "the run" if value is None else f"baseline {reference}"
            checks.append(GateCheck(kind="baseline", subject=key, value=value, reference=reference,
                                    outcome=GateOutcome.FAILED if value is None else GateOutcome.PASSED,
                                    sentence=f"{key} was not logged by {missing}, so the regression against "
                                             "the baseline cannot be checked."))
            continue
        allowed = _regression_allowance(amount, before, key)
        higher = spec.better(key) == "higher"
        bound = before - allowed if higher else before + allowed
        ok = value >= bound if higher else value <= bound
        change = value - before
        checks.append(GateCheck(
            kind="baseline", subject=key, value=value, bound=bound, reference=reference,
            outcome=GateOutcome.PASSED if ok else GateOutcome.FAILED,
            sentence=f"{key} = {value:.6g} {'is within' if ok else 'regressed beyond'} {allowed:.4g} of baseline "
                     f"{reference} ({before:.6g}, change {change:+.4g})."))
    return checks


def _require_checks(record: RunRecord, paths: list[str]) -> list[GateCheck]:
    from orchestrack.policy import has_value

    document = record.model_dump(mode="python")
    checks = []
    for path in paths:
        if path.split(".")[:2] == ["data", "leakage_check"]:
            checks.append(_leakage_check(record, path))
            continue
        present = has_value(document, path.split("."))
        checks.append(GateCheck(kind="require", subject=path,
                                outcome=GateOutcome.PASSED if present else GateOutcome.FAILED,
                                sentence=f"the run records {path}." if present
                                else f"the run has no {path}, which the gate requires."))
    return checks


def _leakage_check(record: RunRecord, path: str) -> GateCheck:
    """``require: [data.leakage_check]``: leakage screening ran on the run's data and found nothing.

    Fails when no data snapshot records a screening, when one says ``failed`` (the note is quoted),
    or when one says ``not-run``.
    """
    screened = [(d.name, d.leakage_check) for d in record.data if d.leakage_check is not None]
    failed = [(name, check) for name, check in screened if check.status is LeakageStatus.FAILED]
    not_run = [name for name, check in screened if check.status is LeakageStatus.NOT_RUN]
    if failed:
        name, check = failed[0]
        sentence = f"leakage screening of data set {name!r} failed" + (f": {check.note}" if check.note else ".")
    elif not_run:
        sentence = f"leakage screening did not run on data set {not_run[0]!r}, which the gate requires."
    elif not screened:
        sentence = "the run records no leakage screening of its data, which the gate requires."
    else:
        return GateCheck(kind="require", subject=path, outcome=GateOutcome.PASSED,
                         sentence=f"leakage screening passed on {', '.join(repr(n) for n, _ in screened)}.")
    return GateCheck(kind="require", subject=path, outcome=GateOutcome.FAILED,
                     sentence=sentence if sentence.endswith(".") else sentence + ".")


def _suspicious_checks(record: RunRecord, spec: GateSpec, history: list[RunRecord]) -> list[GateCheck]:
    keys = list(dict.fromkeys([*spec.metrics, *(spec.baseline.max_regression if spec.baseline else {}),
                               *spec.suspicious.ceiling]))
    checks = []
    for key in keys:
        value = metric_value(record, key)
        if value is None:
            continue
        higher = spec.better(key) == "higher"
        ceiling = spec.suspicious.ceiling.get(key)
        if ceiling is not None:
            beyond = value > ceiling if higher else value < ceiling
            checks.append(GateCheck(
                kind="ceiling", subject=key, value=value, bound=ceiling,
                outcome=GateOutcome.HELD if beyond else GateOutcome.PASSED,
                sentence=f"{key} = {value:.6g} is {'beyond' if beyond else 'within'} its ceiling {ceiling:g}"
                         + (" (too good to be true: check for leakage or a broken evaluation)." if beyond else ".")))
        past = [v for v in (metric_value(r, key) for r in history) if v is not None]
        if len(past) < spec.suspicious.min_history:
            continue
        mean = statistics.fmean(past)
        spread = max(statistics.stdev(past), 1e-3 * max(abs(mean), 1e-3))  # identical history: 0.1 % of its mean
        sigma = (value - mean) / spread * (1 if higher else -1)
        jumped = sigma > spec.suspicious.max_sigma
        checks.append(GateCheck(
            kind="sigma", subject=key, value=value, bound=spec.suspicious.max_sigma,
            reference=f"{len(past)} earlier runs of {record.orchestrator.pipeline or 'this pipeline'}: "
                      f"mean {mean:.6g}, sd {statistics.stdev(past):.3g}",
            outcome=GateOutcome.HELD if jumped else GateOutcome.PASSED,
            sentence=f"{key} = {value:.6g} is {abs(sigma):.1f} sd {'better' if sigma > 0 else 'worse'} than the "
                     f"mean {mean:.6g} of {len(past)} earlier runs of "
                     f"{record.orchestrator.pipeline or 'this pipeline'}"
                     + (f", beyond {spec.suspicious.max_sigma:g} sd: check for leakage or a broken evaluation."
                        if jumped else ".")))
    return checks


# -- reading what the decision needs, and recording it -------------------------------------------


def _find_baseline(record: RunRecord, spec: GateSpec, tracking_uri: str | None) -> tuple[RunRecord | None, str]:
    """The baseline run the spec names, or ``None`` with why."""
    import orchestrack

    assert spec.baseline is not None
    wanted, pipeline = spec.baseline.run, record.orchestrator.pipeline
    if wanted == "latest-baseline":
        if pipeline is None:
            return None, "the run has no pipeline, so it has no latest baseline"
        for candidate in orchestrack.search_runs(pipeline=pipeline, purpose=Purpose.BASELINE,
                                                 status=RunStatus.SUCCEEDED, limit=20, tracking_uri=tracking_uri):
            if candidate.run_id != record.run_id and candidate.started_at <= record.started_at:
                return candidate, "latest baseline"
        return None, f"no earlier succeeded baseline run of pipeline {pipeline!r}"
    if wanted == "champion":
        from orchestrack.registry import open_registry

        model = spec.baseline.model or pipeline
        if model is None:
            return None, "no model named for the champion (baseline.model) and the run has no pipeline"
        version = open_registry(tracking_uri).alias(model, "champion")
        if version is None:
            return None, f"model {model!r} has no champion yet"
        if version.run_id == record.run_id:
            return None, "the run is the champion itself"
        return orchestrack.get_run(version.run_id, tracking_uri=tracking_uri), f"champion of {model!r}"
    try:
        return orchestrack.get_run(wanted, tracking_uri=tracking_uri), "named baseline"
    except OrchestrackError as err:
        raise InvalidInputError(f"gate spec baseline.run {wanted!r} names no run ({err}); give a run key or id, "
                                "latest-baseline or champion") from err


def _history(record: RunRecord, spec: GateSpec, tracking_uri: str | None) -> list[RunRecord]:
    """The pipeline's earlier succeeded runs whose gate (if any) passed: the normal to compare with."""
    import orchestrack

    pipeline = record.orchestrator.pipeline
    if pipeline is None or not spec.suspicious.enabled:
        return []
    earlier = orchestrack.search_runs(pipeline=pipeline, status=RunStatus.SUCCEEDED,
                                      limit=min(spec.suspicious.history + 1, 10_000), tracking_uri=tracking_uri)
    return [r for r in earlier if r.run_id != record.run_id and r.started_at <= record.started_at
            and (r.gate is None or r.gate.outcome is GateOutcome.PASSED)][: spec.suspicious.history]


def gate_failure(decision: GateDecision) -> Failure:
    """The ``metric-regression`` failure of a failed gate: the decision's sentence, naming the check.

    Its fingerprint is that of the first failed check's kind and subject (``min auc``), so the same
    check failing again groups, whatever the numbers."""
    first = next((c for c in decision.checks if c.outcome is GateOutcome.FAILED), None)
    detail = "gate-require" if first is not None and first.kind == "require" else "quality-gate"
    return Failure(reason=FailureReason.METRIC_REGRESSION, summary=decision.summary[:300], task=GATE_TASK,
                   detail=detail, error_type="GateFailedError",
                   fingerprint=failure_fingerprint("GateFailedError", f"{first.kind} {first.subject}"
                                                   if first is not None else decision.summary))


def check_gate(run: Any, spec: GateSpec | Mapping[str, Any] | str | Path, *,
               tracking_uri: str | None = None) -> GateDecision:
    """Decide ``passed``, ``failed`` or ``held`` for ``run`` (a key, run id, :class:`RunRecord` or
    :class:`~orchestrack.lifecycle.Run`) and record the decision on it.

    A finished run whose gate fails is marked failed with reason ``metric-regression``; a run still
    going on keeps its status (the gate step's own failure fails it when it ends, see
    :func:`gate_step`).
    """
    import orchestrack
    from orchestrack.lifecycle import Run, store_for

    gate_spec, source = load_gate_spec(spec)
    if isinstance(run, Run):
        tracking_uri = tracking_uri or run.store.uri
        record = run.record
    elif isinstance(run, RunRecord):
        record = run
    elif isinstance(run, str):
        record = orchestrack.get_run(run, tracking_uri=tracking_uri)
    else:
        raise InvalidInputError(f"check_gate takes a run key, run id, RunRecord or Run, got {type(run).__name__}")
    baseline, note = (None, None)
    if gate_spec.baseline is not None:
        baseline, note = _find_baseline(record, gate_spec, tracking_uri)
    decision = evaluate_gate(record, gate_spec, baseline=baseline, baseline_note=note,
                             history=_history(record, gate_spec, tracking_uri), spec_source=source)
    changes: dict[str, Any] = {"gate": decision}
    if decision.outcome is GateOutcome.FAILED and record.status is RunStatus.SUCCEEDED:
        changes.update(status=RunStatus.FAILED, failure=gate_failure(decision))
    elif decision.outcome is not GateOutcome.FAILED and record.failure is not None \
            and record.failure.task == GATE_TASK and record.status is RunStatus.FAILED:
        changes.update(status=RunStatus.SUCCEEDED, failure=None)  # gated anew (e.g. a fixed spec) and passed
    if isinstance(run, Run):
        run._write("update_run", run_id=record.run_id, changes=changes)  # fail-open, spooled like any write
    else:
        store_for(tracking_uri).update_run(record.run_id, changes)
    log.info("orchestrack gate on run %r: %s", record.key, decision.summary)
    return decision


def gate_step(spec: GateSpec | Mapping[str, Any] | str | Path, *, fail_on_held: bool = False,
              run: Any = None, publish: Callable[[GateDecision], None] | None = None) -> GateDecision:
    """The gate as a pipeline step: check the active run (or ``run``), record the decision, and raise
    :class:`GateFailedError` when it failed (so the step, and the run, fail with ``metric-regression``),
    or :class:`GateHeldError` when it held the run and ``fail_on_held`` is set. ``publish`` is called
    with the decision first, whatever it is (an adapter shows it in the orchestrator's UI).

    Example::

        orchestrack.gate_step("gate.yaml")   # inside a tracked task
    """
    from orchestrack.lifecycle import active_run

    target = run if run is not None else active_run()
    if target is None:
        raise InvalidInputError("the quality gate step found no active run: run it inside a tracked pipeline "
                                "(a DAG with TrackRunOperator, a tracked_flow, an otk.pipeline) or pass run=")
    decision = check_gate(target, spec)
    if publish is not None:
        publish(decision)
    if decision.outcome is GateOutcome.FAILED:
        raise GateFailedError(decision, gate_failure(decision))
    if decision.outcome is GateOutcome.HELD:
        if fail_on_held:
            raise GateHeldError(decision)
        log.warning("orchestrack: %s", decision.summary)
    return decision

