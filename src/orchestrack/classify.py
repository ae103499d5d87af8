"""Failure diagnosis: an error, a log text or an exit code in, one reason label and one sentence out.

Rules are data: an ordered table of :class:`Rule` (the built-ins live in
:mod:`orchestrack.failure_rules`); the first rule that matches wins. Team rules come first: code
rules added with :func:`register_rule`, then table rules from :func:`register_rule` and from the
``failure_rules`` setting. When nothing matches, an exception raised in the user's own code is a
``code-error``; anything else is ``unknown``, and the sentence says what was seen.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from orchestrack.errors import OrchestrackError
from orchestrack.evidence import Evidence, redact
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


def classify_failure(error: BaseException | None = None, *, text: str | None = None,
                     exit_code: int | None = None, task: str | None = None) -> Failure:
    """Label a failure with one reason and one sentence.

    ``error`` is a live exception (chains and groups are followed), ``text`` a traceback, log or
    orchestrator state message, ``exit_code`` the process's exit code (negative for a signal).

    Example::

        classify_failure(FileNotFoundError("data/train.parquet"), task="train").reason  # data-error
    """
    carried = _carried_failure(error)
    if carried is not None:
        return carried.model_copy(update={"task": task or carried.task})
    evidence = Evidence(error, text, exit_code)
    for code_rule in _registry.code_rules:
        found = code_rule(error, evidence.text, exit_code)
        if found is not None:
            reason, detail, cause = found
            return _failure(evidence, FailureReason(reason), detail, cause, evidence.headline(), task)
    rules = _all_rules()
    # The error lines first; the routine (INFO/DEBUG) lines only when the error lines say nothing.
    for view in filter(None, (evidence.focused(), evidence)):
        for rule in rules:
            if view is not evidence and not (rule.types or rule.pattern is not None):
                continue  # an exit code alone is weaker than what the routine lines may still say
            line = rule.match(view)
            if line is not None:
                return _failure(view, rule.reason, rule.detail, rule.cause, line, task)
    seen = evidence.headline()
    if seen is not None and evidence.exceptions and evidence.raised_in_user_code():
        return _failure(evidence, FailureReason.CODE_ERROR, "user-code", "raised an error in its own code", seen, task)
    if seen is None and exit_code is not None:
        seen = f"exit code {exit_code}, no error text"
    return _failure(evidence, FailureReason.UNKNOWN, None, "failed for a reason orchestrack does not recognise",
                    seen or "no error text, exit code or exception", task)


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


def _all_rules() -> list[Rule]:
    # The built-in table compiles ~70 patterns: imported on the first diagnosis, not with
    # orchestrack (every tracked component and task process imports orchestrack; few classify).
    from orchestrack.failure_rules import BUILTIN_RULES

    return [*_registry.rules, *_configured_rules(), *BUILTIN_RULES]


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
                   exit_code=evidence.exit_code, evidence=redact(_excerpt(evidence, line))[:2000] or None)


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
