"""Failure diagnosis: an error, a log text or an exit code in, one reason label and one sentence out.

Rules are data: an ordered table of :class:`Rule`; the first that matches wins. Rules added with
:func:`register_rule` are tried before the built-ins. This module holds the lifecycle's plug-in
point and a first, deliberately small rule table; the full rubric (docs/failure-reasons.md) is
filled in by the failure-diagnosis work.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from orchestrack.record import Failure, FailureReason

SUMMARY_LIMIT = 200

_SECRET = re.compile(
    r"(?i)((?:password|passwd|secret|token|api[_-]?key|access[_-]?key|authorization)\s*[=:]\s*)(\S+)"
    r"|(AKIA[0-9A-Z]{16})|(://[^/\s:@]+:)[^@\s/]+@"
)


def redact(text: str) -> str:
    """``text`` with passwords, tokens, keys and URL credentials replaced by ``***``."""
    def _hide(match: re.Match[str]) -> str:
        if match.group(1):
            return match.group(1) + "***"
        if match.group(3):
            return "***"
        return match.group(4) + "***@"
    return _SECRET.sub(_hide, text)


@dataclass(frozen=True)
class Rule:
    """One matcher: exception class names (along the MRO), a text pattern and/or exit codes."""

    reason: FailureReason
    detail: str | None = None
    types: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None
    exit_codes: tuple[int, ...] = ()
    cause: str = "failed"

    def matches(self, type_names: tuple[str, ...], text: str, exit_code: int | None) -> bool:
        if self.types and not set(self.types) & set(type_names):
            return False
        if self.pattern is not None and not self.pattern.search(text):
            return False
        if self.exit_codes and exit_code not in self.exit_codes:
            return False
        return bool(self.types or self.pattern is not None or self.exit_codes)


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


BUILTIN_RULES: tuple[Rule, ...] = (
    Rule(FailureReason.CANCELLED, "interrupted", types=("KeyboardInterrupt",), cause="was interrupted"),
    Rule(FailureReason.TIMEOUT, None, types=("AirflowTaskTimeout", "TaskRunTimeoutError"),
         cause="ran past its time limit"),
    Rule(FailureReason.INFRA_ERROR, "gpu-oom", pattern=_rx(r"CUDA out of memory"), cause="ran out of GPU memory"),
    Rule(FailureReason.INFRA_ERROR, "oom", types=("MemoryError",), cause="ran out of memory"),
    Rule(FailureReason.INFRA_ERROR, "network", types=("ConnectionError", "socket.timeout"), cause="lost a connection"),
    Rule(FailureReason.TIMEOUT, None, types=("TimeoutError",), cause="ran past a time limit"),
    Rule(FailureReason.DATA_ERROR, "missing-input", types=("FileNotFoundError",), cause="could not find its input"),
    Rule(FailureReason.BAD_SCHEMA, None, types=("ValidationError", "SchemaError"), cause="got data of the wrong shape"),
    Rule(FailureReason.CODE_ERROR, None,
         types=("TypeError", "NameError", "AttributeError", "ImportError", "SyntaxError", "NotImplementedError",
                "AssertionError", "ZeroDivisionError", "IndexError", "KeyError", "ValueError"),
         cause="raised an error in its code"),
    Rule(FailureReason.INFRA_ERROR, "killed", exit_codes=(137, -9),
         cause="was killed (exit 137, usually out of memory)"),
    Rule(FailureReason.CANCELLED, "terminated", exit_codes=(143, -15), cause="was terminated"),
    Rule(FailureReason.TIMEOUT, None, exit_codes=(124,), cause="ran past its time limit (exit 124)"),
)

CodeRule = Callable[[BaseException | None, str, int | None], "tuple[FailureReason, str | None, str] | None"]


@dataclass
class _Registry:
    rules: list[Rule] = field(default_factory=list)
    code_rules: list[CodeRule] = field(default_factory=list)


_registry = _Registry()


def register_rule(rule: Rule | CodeRule) -> None:
    """Add a team rule, tried before the built-ins (latest registered first).

    A code rule is ``f(error, text, exit_code) -> (reason, detail, cause) | None``.
    Example::

        register_rule(Rule(FailureReason.DATA_ERROR, "late-partition", pattern=re.compile("partition .* not ready")))
    """
    if isinstance(rule, Rule):
        _registry.rules.insert(0, rule)
    else:
        _registry.code_rules.insert(0, rule)


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    pending = [error]
    while pending and len(seen) < 20:
        current = pending.pop(0)
        if any(current is s for s in seen):
            continue
        seen.append(current)
        pending.extend(getattr(current, "exceptions", ()) or ())
        if current.__cause__ is not None:
            pending.append(current.__cause__)
        elif current.__context__ is not None and not current.__suppress_context__:
            pending.append(current.__context__)
    return seen


def classify_failure(error: BaseException | None = None, *, text: str | None = None,
                     exit_code: int | None = None, task: str | None = None) -> Failure:
    """Label a failure with one reason and one sentence.

    Example::

        classify_failure(FileNotFoundError("data/train.parquet"), task="train").reason  # data-error
    """
    errors = _chain(error) if error is not None else []
    message = " ".join(f"{type(e).__name__}: {e}" for e in errors)
    full_text = "\n".join(part for part in (message, text or "") if part)
    candidates: list[BaseException | None] = [*errors] or [None]
    for candidate in candidates:
        names = (tuple(cls.__name__ for cls in type(candidate).__mro__) if candidate is not None
                 else _names_in_text(full_text))
        for code_rule in _registry.code_rules:
            found = code_rule(candidate, full_text, exit_code)
            if found is not None:
                reason, detail, cause = found
                return _failure(reason, detail, cause, candidate, full_text, exit_code, task)
        for rule in (*_registry.rules, *BUILTIN_RULES):
            if rule.matches(names, full_text, exit_code):
                return _failure(rule.reason, rule.detail, rule.cause, candidate, full_text, exit_code, task)
    return _failure(FailureReason.UNKNOWN, None, "failed for a reason orchestrack does not recognise",
                    errors[0] if errors else None, full_text, exit_code, task)


def _failure(reason: FailureReason, detail: str | None, cause: str, error: BaseException | None,
             text: str, exit_code: int | None, task: str | None) -> Failure:
    evidence = redact(_headline(text))[:500] if text else None
    subject = f"Task '{task}'" if task else "The run"
    clue = evidence or (f"exit code {exit_code}" if exit_code is not None else "no error text")
    summary = f"{subject} {cause} ({clue})."
    if len(summary) > SUMMARY_LIMIT:
        summary = summary[: SUMMARY_LIMIT - 2].rstrip() + "…)."
    return Failure(reason=reason, summary=summary, task=task, detail=detail,
                   error_type=type(error).__name__ if error is not None else None,
                   exit_code=exit_code, evidence=evidence)


_EXCEPTION_NAME = re.compile(r"\b(?:[A-Za-z_]\w*\.)*([A-Z]\w*(?:Error|Exception|Exit|Interrupt|Timeout))\b")


def _names_in_text(text: str) -> tuple[str, ...]:
    """Exception class names mentioned in a log or traceback, last (the raised one) first."""
    return tuple(dict.fromkeys(reversed(_EXCEPTION_NAME.findall(text))))


def _headline(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if len(lines) == 1 else " | ".join(lines[:2])
