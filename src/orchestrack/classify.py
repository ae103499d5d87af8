"""Failure diagnosis: an error, a log text or an exit code in, one reason label and one sentence out.

Rules are data: an ordered table of :class:`Rule` (the built-ins live in
:mod:`orchestrack.failure_rules`); the first rule that matches wins. Team rules come first: code
rules added with :func:`register_rule`, then table rules from :func:`register_rule` and from the
``failure_rules`` setting. When nothing matches, an exception raised in the user's own code is a
``code-error``; anything else is ``unknown``, and the sentence says what was seen.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrack.errors import OrchestrackError
from orchestrack.evidence import Evidence, informative, redact
from orchestrack.failure_model import Prediction, shipped_model
from orchestrack.fingerprint import evidence_fingerprint
from orchestrack.record import Failure, FailureReason
from orchestrack.rules import CodeRule, Rule

SUMMARY_LIMIT = 200


@dataclass
class _Registry:
    rules: list[Rule] = field(default_factory=list)
    code_rules: list[CodeRule] = field(default_factory=list)


_registry = _Registry()


def register_rule(rule: Rule | CodeRule) -> Rule | CodeRule:
    """Add a team rule, tried before the built-ins (the latest registered first); returns it.

    Example::

        register_rule(Rule(FailureReason.DATA_ERROR, "late-partition",
                           pattern=re.compile(r"partition \\S+ is not ready"), cause="found its partition missing"))
    """
    if isinstance(rule, Rule):
        _registry.rules.insert(0, rule)
    else:
        _registry.code_rules.insert(0, rule)
    return rule


def unregister_rule(rule: Rule | CodeRule) -> None:
    """Remove a rule added with :func:`register_rule` (no error if it is not there)."""
    for rules in (_registry.rules, _registry.code_rules):
        if rule in rules:
            rules.remove(rule)  # type: ignore[arg-type]


# -- classification --------------------------------------------------------------------------------

#: The sentence's cause when the learned tier decides (it knows the label, not a specific mechanism).
_MODEL_CAUSES = {
    FailureReason.TIMEOUT: "ran past a time limit",
    FailureReason.INFRA_ERROR: "failed because of the platform it ran on",
    FailureReason.DATA_ERROR: "found a problem with its input data",
    FailureReason.BAD_SCHEMA: "found data shaped differently from what its code expects",
    FailureReason.METRIC_REGRESSION: "was rejected by a quality check on its metrics",
    FailureReason.CODE_ERROR: "failed in its own code",
    FailureReason.CANCELLED: "was stopped on purpose",
}


@dataclass(frozen=True)
class Diagnosis:
    """A failure label with what decided it: the answer to ``orchestrack classify --explain``.

    ``decided_by`` is one of ``carried`` (an orchestrack error such as a failed quality gate),
    ``team-rule``, ``rule`` (``basis`` names the rule's number in docs/failure-reasons.md and what it
    matched), ``signal`` (what the orchestrator reported apart from the text), ``user-code`` (an
    exception raised in the user's own code), ``model`` (the learned tier) or ``nothing``.
    ``model`` holds the learned tier's opinion whenever it was asked, even below its threshold.
    """

    failure: Failure
    decided_by: str
    basis: str
    confidence: float
    model: Prediction | None = None

    def explanation(self) -> list[str]:
        """The decision as lines a person reads."""
        lines = [f"{self.failure.reason.value}: {self.failure.summary}",
                 f"decided by: {self.decided_by}: {self.basis}", f"confidence: {self.confidence:.2f}"]
        shown = [line.strip() for line in (self.failure.evidence or "").splitlines() if informative(line.strip())]
        if shown:
            lines.append("evidence: " + shown[0][:160])
        if self.model is not None:
            weights = ", ".join(f"{name!r} {weight:+.2f}" for name, weight in self.model.top_features) or "none"
            lines.append(f"model: {self.model.label} at {self.model.confidence:.2f} (threshold "
                         f"{self.model.threshold:.2f}); strongest features: {weights}")
        return lines

    def as_json(self) -> dict[str, Any]:
        """The decision as JSON-ready data."""
        model = None if self.model is None else {
            "label": self.model.label, "confidence": round(self.model.confidence, 4),
            "threshold": self.model.threshold, "features": [list(item) for item in self.model.top_features]}
        return {"reason": self.failure.reason.value, "summary": self.failure.summary, "detail": self.failure.detail,
                "decided_by": self.decided_by, "basis": self.basis, "confidence": round(self.confidence, 4),
                "evidence": self.failure.evidence, "model": model}


def classify_failure(error: BaseException | None = None, *, text: str | None = None,
                     exit_code: int | None = None, task: str | None = None,
                     signals: Mapping[str, Any] | None = None) -> Failure:
    """Label a failure with one reason and one sentence.

    ``error`` is a live exception (chains and groups are followed), ``text`` a traceback, log or
    orchestrator state message, ``exit_code`` the process's exit code (negative for a signal),
    ``signals`` what the orchestrator reported apart from the text: ``state`` (its state type:
    ``crashed``, ``cancelled``, ``timed_out``, ...), ``termination_reason`` (Kubernetes:
    ``OOMKilled``, ``Evicted``, ...), ``signal`` (the number or name that ended the process).

    Example::

        classify_failure(FileNotFoundError("data/train.parquet"), task="train").reason  # data-error
    """
    return _diagnose(error, text, exit_code, task, signals, explain=False).failure


def explain_failure(error: BaseException | None = None, *, text: str | None = None, exit_code: int | None = None,
                    task: str | None = None, signals: Mapping[str, Any] | None = None) -> Diagnosis:
    """:func:`classify_failure` with what decided: the rule, signal or model features, and the confidence.

    The tiers, in order: a failure an orchestrack error carries; team code rules; strong signals;
    text rules (team rules, then the configured ones, then the built-ins), on the error lines first;
    an exception raised in the user's own code; weak signals; the learned model above its threshold.
    """
    return _diagnose(error, text, exit_code, task, signals, explain=True)


def _diagnose(error: BaseException | None, text: str | None, exit_code: int | None, task: str | None,
              signals: Mapping[str, Any] | None, *, explain: bool) -> Diagnosis:
    """The tiers of :func:`explain_failure`; without ``explain`` the model is asked only when it may decide."""
    carried = _carried_failure(error)
    if carried is not None:
        return Diagnosis(carried.model_copy(update={"task": task or carried.task}), "carried",
                         "the orchestrack error that ended the task already says why", 1.0)
    evidence = Evidence(error, text, exit_code)
    for code_rule in _registry.code_rules:
        found = code_rule(error, evidence.text, exit_code)
        if found is not None:
            reason, detail, cause = found
            name = getattr(code_rule, "__qualname__", repr(code_rule))
            return Diagnosis(_failure(evidence, FailureReason(reason), detail, cause, evidence.headline(), task),
                             "team-rule", f"code rule {name}", 1.0)
    reported = _signals(signals)
    for key, value, reason, detail, cause, strong in reported:
        if strong:
            # The signal decides the label; a text rule of the same label may still say it more precisely
            # (TimedOut + "dagrun timed out": the DAG run's timeout, not the task's).
            refined = _text_rules(evidence, task, only=reason)
            if refined is not None:
                return Diagnosis(refined.failure, "signal", f"the orchestrator reported {key}={value}; "
                                 f"{refined.basis}", 1.0)
            return Diagnosis(_failure(evidence, reason, detail, cause, evidence.headline(), task), "signal",
                             f"the orchestrator reported {key}={value}", 1.0)
    by_rule = _text_rules(evidence, task)
    if by_rule is not None:
        return by_rule
    seen = evidence.headline()
    if seen is not None and evidence.exceptions and evidence.raised_in_user_code():
        return Diagnosis(_failure(evidence, FailureReason.CODE_ERROR, "user-code", "raised an error in its own code",
                                  seen, task), "user-code",
                         "an exception no rule knows, raised in the user's own code (innermost frame)", 0.9)
    for key, value, reason, detail, cause, _ in reported:
        return Diagnosis(_failure(evidence, reason, detail, cause, evidence.pick_line(), task), "signal",
                         f"the orchestrator reported {key}={value} and no text rule matched", 0.9)
    opinion = _model_opinion(evidence, explain)
    if opinion is not None and opinion.confident and opinion.label != FailureReason.UNKNOWN.value:
        reason = FailureReason(opinion.label)
        return Diagnosis(_failure(evidence, reason, "model", _MODEL_CAUSES[reason], evidence.pick_line(), task),
                         "model", f"the learned model (failure_model.json) at {opinion.confidence:.2f}, at or above "
                         f"its threshold {opinion.threshold:.2f}", opinion.confidence, opinion)
    seen = evidence.pick_line() if not evidence.exceptions else seen
    if seen is None and exit_code is not None:
        seen = f"exit code {exit_code}, no error text"
    basis = "no rule or signal matched" + (
        f", and the learned model was not sure enough ({opinion.label} at {opinion.confidence:.2f}, below "
        f"{opinion.threshold:.2f})" if opinion is not None and opinion.label != "unknown" else "")
    return Diagnosis(_failure(evidence, FailureReason.UNKNOWN, None,
                              "failed for a reason orchestrack does not recognise",
                              seen or "no error text, exit code or exception", task), "nothing", basis,
                     opinion.confidence if opinion is not None else 0.0, opinion)


def _text_rules(evidence: Evidence, task: str | None, only: FailureReason | None = None) -> Diagnosis | None:
    """The first text rule that matches (of label ``only`` when given): team rules, the configured ones,
    the built-ins; on the error lines first, the routine (INFO/DEBUG) lines only when those say nothing."""
    configured_rules = _configured_rules()
    rules = _all_rules(configured_rules)
    team = len(_registry.rules)
    configured = team + len(configured_rules)
    for view in filter(None, (evidence.focused(), evidence)):
        for number, rule in enumerate(rules):
            if only is not None and rule.reason is not only:
                continue
            if view is not evidence and not (rule.types or rule.pattern is not None):
                continue  # an exit code alone is weaker than what the routine lines may still say
            hit = rule.hit(view)
            if hit is None:
                continue
            line, matched = hit
            if number < team:
                basis, kind = f"team rule {rule.reason.value}/{rule.detail} matched {matched}", "team-rule"
            elif number < configured:
                basis, kind = (f"configured rule {rule.reason.value}/{rule.detail} (failure_rules setting) "
                               f"matched {matched}", "team-rule")
            else:
                basis, kind = (f"built-in rule #{number - configured + 1} ({rule.reason.value}"
                               f"{'/' + rule.detail if rule.detail else ''}, docs/failure-reasons.md) matched "
                               f"{matched}"), "rule"
            return Diagnosis(_failure(view, rule.reason, rule.detail, rule.cause, line, task), kind, basis, 1.0)
    return None


def _signals(signals: Mapping[str, Any] | None) -> list[tuple[str, str, FailureReason, str, str, bool]]:
    """The known signals among those reported, in the table's order."""
    if not signals:
        return []
    from orchestrack.failure_rules import SIGNALS

    given = {key: str(value).strip().lower().replace(" ", "") for key, value in signals.items() if value is not None}
    return [(key, str(signals[key]), reason, detail, cause, strong)
            for key, value, reason, detail, cause, strong in SIGNALS if given.get(key) == value]


def _model_opinion(evidence: Evidence, explain: bool) -> Prediction | None:
    """The learned model's opinion; ``None`` without text, or when it could not decide and nobody asked."""
    if not evidence.text.strip() and evidence.exit_code is None:
        return None
    model = shipped_model()
    if model is None or not (explain or model.threshold < 1.0):
        return None
    return model.predict(evidence.text, evidence.exit_code)


def _carried_failure(error: BaseException | None) -> Failure | None:
    """The failure an orchestrack error already decided (a failed quality gate), in the error or its chain."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        failure = getattr(error, "failure", None)
        if isinstance(failure, Failure) and isinstance(error, OrchestrackError):
            return failure
        error = error.__cause__ or error.__context__
    return None


def _all_rules(configured: list[Rule] | None = None) -> list[Rule]:
    # The built-in table compiles ~70 patterns: imported on the first diagnosis, not with
    # orchestrack (every tracked component and task process imports orchestrack; few classify).
    from orchestrack.failure_rules import BUILTIN_RULES

    return [*_registry.rules, *(_configured_rules() if configured is None else configured), *BUILTIN_RULES]


def _configured_rules() -> list[Rule]:
    """Rules from the ``failure_rules`` setting (config file or ``ORCHESTRACK_FAILURE_RULES``)."""
    from orchestrack.settings import load_settings

    return _compiled(tuple(load_settings().failure_rules))


_compiled_cache: dict[tuple[Any, ...], list[Rule]] = {}


def _compiled(configured: tuple[Any, ...]) -> list[Rule]:
    key = tuple((c.pattern, c.reason, c.detail, c.cause) for c in configured)
    if key not in _compiled_cache:
        _compiled_cache[key] = [
            Rule(FailureReason(c.reason), c.detail, c.cause,
                 pattern=re.compile(c.pattern, re.IGNORECASE | re.MULTILINE))
            for c in configured]
    return _compiled_cache[key]


def _failure(evidence: Evidence, reason: FailureReason, detail: str | None, cause: str, line: str | None,
             task: str | None) -> Failure:
    clue = re.sub(r"\s{2,}", " ", redact(line)) if line else None
    subject = f"Task '{task}'" if task else "The run"
    head = f"{subject} {cause}"
    if clue:
        room = SUMMARY_LIMIT - len(head) - 4
        shown = clue if len(clue) <= room else clue[: max(room - 1, 10)].rstrip() + "…"
        summary = f"{head} ({shown})."
    else:
        summary = f"{head}."
    errors = evidence.errors
    return Failure(reason=reason, summary=summary, task=task, detail=detail,
                   error_type=type(errors[0]).__name__ if errors else _text_error_type(evidence),
                   exit_code=evidence.exit_code, evidence=redact(_excerpt(evidence, line))[:2000] or None,
                   fingerprint=evidence_fingerprint(evidence, line))


def _text_error_type(evidence: Evidence) -> str | None:
    if not evidence.exceptions:
        return None
    shown = next(iter(evidence.exceptions.values()))
    return shown.split(":", 1)[0].rsplit(".", 1)[-1].strip() or None


def _excerpt(evidence: Evidence, line: str | None) -> str:
    """The matched line with a little context: what a person needs to check the label."""
    if line is None:
        return "\n".join(evidence.lines[-5:]).strip()
    needle = line.strip("…")[:60]
    for index, candidate in enumerate(evidence.lines):
        if needle and needle in candidate:
            return "\n".join(evidence.lines[max(0, index - 2): index + 3]).strip()
    return line
