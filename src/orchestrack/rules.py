"""A failure rule: the conditions that label a failure, matched against :class:`Evidence`.

The built-in table is data (:mod:`orchestrack.failure_rules`); teams add their own through
:func:`orchestrack.register_rule` or the ``failure_rules`` setting.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrack.evidence import Evidence
from orchestrack.record import FailureReason

#: Skip a rule's regular expression when the text lacks every literal it needs (an optimisation
#: only; tests switch it off to prove the labels are the same without it).
USE_PREFILTER = True


@dataclass(frozen=True)
class Rule:
    """One matcher. Every condition given must hold; the first rule that holds decides.

    ``types``: exception class names, matched along the MRO of live errors and against the
    exception names a text shows. ``pattern``: a regular expression searched in the text
    (messages, traceback, log). ``exit_codes``: the process exit code. ``unless``: a pattern that
    vetoes the rule. ``cause``: the words after the subject in the sentence ("ran out of GPU memory").

    Example::

        Rule(FailureReason.DATA_ERROR, "late-partition", pattern=re.compile("partition .* not ready"),
             cause="found its input partition missing")
    """

    reason: FailureReason
    detail: str | None = None
    cause: str = "failed"
    types: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None
    exit_codes: tuple[int, ...] = ()
    unless: re.Pattern[str] | None = None

    def __post_init__(self) -> None:
        if not (self.types or self.pattern is not None or self.exit_codes):
            raise ValueError("a Rule needs types, a pattern or exit codes to match on")
        # Literal words the pattern cannot match without: a cheap substring test skips most rules
        # before the regular expression runs (that keeps a typical diagnosis well under 1 ms).
        anchors = _anchors(self.pattern.pattern) if self.pattern is not None else None
        object.__setattr__(self, "_anchors", anchors)

    def match(self, evidence: Evidence) -> str | None:
        """The evidence line this rule rests on, or ``None`` when it does not match."""
        hit = self.hit(evidence)
        return hit[0] if hit is not None else None

    def hit(self, evidence: Evidence) -> tuple[str, str] | None:
        """``(line, what matched)`` when the rule matches: the evidence line and the exception name,
        the text or the exit code that decided; ``None`` when it does not match."""
        if self.exit_codes and evidence.exit_code not in self.exit_codes:
            return None
        found: str | None = ""  # an exit code alone: the cause already says it
        matched = f"exit code {evidence.exit_code}" if self.exit_codes else ""
        if self.types:
            found = evidence.exception_line(self.types)
            if found is None:
                return None
            matched = "exception " + next(name for name in self.types if name in evidence.exceptions)
        if self.pattern is not None:
            anchors: tuple[str, ...] | None = getattr(self, "_anchors", None)
            if USE_PREFILTER and anchors is not None and not any(anchor in evidence.lower for anchor in anchors):
                return None
            found_text = self.pattern.search(evidence.text)
            if found_text is None:
                return None
            if not self.types:
                found, matched = evidence.line_at(found_text), f"text {found_text.group(0).strip()[:80]!r}"
        if self.unless is not None and self.unless.search(evidence.text):
            return None
        return found or "", matched


_COMMON_WORDS = frozenset({"error", "errors", "failed", "fail", "failure", "exception", "task", "run", "the", "file",
                           "line", "in", "to", "of", "is", "was"})


def _anchors(pattern: str) -> tuple[str, ...] | None:
    """Literal strings of which every match of ``pattern`` contains at least one (lower case), or
    ``None`` when no such set of 2+ character strings can be read off the pattern."""
    try:
        from re import _parser as parser  # type: ignore[attr-defined]
        from re._constants import AT, BRANCH, LITERAL, MAX_REPEAT, MIN_REPEAT, SUBPATTERN  # type: ignore[import-not-found]
    except ImportError:  # another Python: no prefilter, the pattern alone decides (same results)
        return None
    repeats = {MAX_REPEAT, MIN_REPEAT} | ({parser.POSSESSIVE_REPEAT} if hasattr(parser, "POSSESSIVE_REPEAT") else set())

    def required(items: Any) -> set[str] | None:
        candidates: list[set[str]] = []
        run = ""
        for op, value in items:
            if op is LITERAL:
                run += chr(value)
                continue
            if op is AT:  # \b, ^, $ consume nothing: the literal run goes on
                continue
            if run:
                candidates.append({run})
                run = ""
            inner: set[str] | None = None
            if op is SUBPATTERN:
                inner = required(value[-1].data)
            elif op is BRANCH:
                branches = [required(branch.data) for branch in value[1]]
                inner = None if any(b is None for b in branches) else set().union(*branches)  # type: ignore[arg-type]
            elif op in repeats and value[0] >= 1:
                inner = required(value[2].data)
            if inner:
                candidates.append(inner)
        if run:
            candidates.append({run})
        usable = [c for c in candidates if all(len(text.strip()) >= 2 for text in c)]
        # Prefer literals that are rare in failure texts: "error" would let the rule run every time.
        return max(usable, key=lambda c: (not {t.strip().lower() for t in c} & _COMMON_WORDS,
                                          min(len(text) for text in c))) if usable else None

    try:
        found = required(parser.parse(pattern).data)
    except Exception:
        return None
    return tuple(sorted(text.lower() for text in found)) if found else None


#: A code rule: ``f(error, text, exit_code) -> (reason, detail, cause) | None``.
CodeRule = Callable[[BaseException | None, str, int | None], "tuple[FailureReason, str | None, str] | None"]
