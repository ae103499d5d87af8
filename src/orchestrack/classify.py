"""Failure diagnosis: an error, a log text or an exit code in, one reason label and one sentence out.

Rules are data: an ordered table of :class:`Rule` (the built-ins live in
:mod:`orchestrack.failure_rules`); the first rule that matches wins. Team rules come first: code
rules added with :func:`register_rule`, then table rules from :func:`register_rule` and from the
``failure_rules`` setting. When nothing matches, an exception raised in the user's own code is a
``code-error``; anything else is ``unknown``, and the sentence says what was seen.
"""

from __future__ import annotations

import builtins
import copy
import re
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from orchestrack.record import Failure, FailureReason

SUMMARY_LIMIT = 200
#: Skip a rule's regular expression when the text lacks every literal it needs (an optimisation
#: only; tests switch it off to prove the labels are the same without it).
USE_PREFILTER = True
#: Logs longer than this are cut to their head and tail (the end of a log is where it failed).
_HEAD, _TAIL = 32 * 1024, 224 * 1024

_SECRET = re.compile(
    r"(?i)(\b[\w.-]*?(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|authorization|credentials?)"
    r"[\w-]*\"?\s*[=:]\s*\"?(?:bearer\s+|basic\s+)?)([^\s\"',;]+)"
    r"|\b(AKIA|ASIA)[0-9A-Z]{16}\b"
    r"|(://[^/\s:@]+:)[^@\s/]+@"
    r"|\b(gh[pousr]_[A-Za-z0-9]{20,}|xox[baprs]-[A-Za-z0-9-]{10,}|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]+)"
    r"|(-----BEGIN [A-Z ]*PRIVATE KEY-----)[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----)"
)


def redact(text: str) -> str:
    """``text`` with passwords, tokens, keys and URL credentials replaced by ``***``."""

    def hide(match: re.Match[str]) -> str:
        if match.group(1):
            return match.group(1) + "***"
        if match.group(4):
            return match.group(4) + "***@"
        if match.group(6):
            return match.group(6) + "***" + match.group(7)
        return "***"

    return _SECRET.sub(hide, text)


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
        if self.exit_codes and evidence.exit_code not in self.exit_codes:
            return None
        found: str | None = ""  # an exit code alone: the cause already says it
        if self.types:
            found = evidence.exception_line(self.types)
            if found is None:
                return None
        if self.pattern is not None:
            anchors: tuple[str, ...] | None = getattr(self, "_anchors", None)
            if USE_PREFILTER and anchors is not None and not any(anchor in evidence.lower for anchor in anchors):
                return None
            hit = self.pattern.search(evidence.text)
            if hit is None:
                return None
            found = found if self.types else evidence.line_at(hit)
        if self.unless is not None and self.unless.search(evidence.text):
            return None
        return found


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


# -- evidence -------------------------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07")
_PREFIXES = re.compile(
    r"^\s*(?:"
    r"\[?\d{4}-\d{2}-\d{2}[T ,]+\d{2}:\d{2}:\d{2}(?:[.,]\d+)?\s*(?:Z|UTC|[+-]\d{2}:?\d{2})?\]?[\s|,-]*"  # dates
    r"|\d{2}:\d{2}:\d{2}(?:[.,]\d+)?\s*\|?\s*"  # Prefect's clock
    r"|\{[\w./-]+\.py:\d+\}\s*"  # Airflow's {taskinstance.py:123}
    r"|\[\s*(?:debug|info|warn|warning|error|critical|fatal)\s*\]\s*"  # structlog [error   ]
    r"|(?:DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL)\s*(?:\||-|:)\s*"  # level separators
    r"|[A-Z]\d{4} \d{2}:\d{2}:\d{2}\.\d+\s+\d+\s+[\w.]+:\d+\]\s*"  # glog/absl
    r"|E {2,}|> {2,}"  # pytest's error and source markers
    r"|\[\d+,\d+\]<std(?:err|out)>:\s*"  # MPI ranks
    r"|\(\w+ pid=\d+(?:, ip=[\d.]+)?\)\s*"  # Ray workers
    r"|\[(?:rank|RANK)\s?\d+\]:\s*"  # torchrun ranks
    r")+"
)
# An exception name at the start of a line ("ValueError: x", "pkg.mod.SomeError: x", "KeyError")
# or after a marker that orchestrators put before it ("encountered an exception ValueError: x").
_EXCEPTION_LINE = re.compile(
    r"^(?:.*?\b(?:exception|error|raised)[.:\s]+)?((?:[A-Za-z_]\w*\.)*([A-Z]\w*(?:Error|Exception|Exit|Interrupt|Timeout"
    r"|Warning|Fault|Failure|Exceeded|Denied|NotFound|Expired|Killed|Invalid|Cancelled|Crashed)|KeyboardInterrupt"
    r"|StopIteration))(?::|,\s|$)"
)
# The same name inside a line, for tracebacks flattened onto one line ("... File x ImportError: y").
_EXCEPTION_INSIDE = re.compile(
    r"(?:^|[\s(\[{'\"|>])((?:[A-Za-z_]\w*\.)*([A-Z]\w*(?:Error|Exception|Interrupt|Timeout|Fault|Failure"
    r"|Exceeded|Denied|NotFound|Expired|Killed|Invalid)|KeyboardInterrupt))(?=: \S)"
)
# "exit code 127", "exited with status 137", "returned non-zero exit status 2", "return code -9"
_STATED_EXIT_CODE = re.compile(
    r"(?i)\b(?:exit(?:ed)?(?: with)?(?: bad| non-zero)?(?: code| status(?: code)?)|exit[ _-]?code|exit status"
    r"|return(?:ed)? (?:non-zero )?(?:exit )?(?:code|status)|status code)\W{0,3}[:=( ]\s*\(?(-?\d{1,3})\b"
    r"|\bcode=(-\d{1,2}|13[4-9]|143)\b")
# Lines a logger marked as routine: their words are context, not the failure.
_QUIET = re.compile(r"(?:^|[\s|\[{(-])(?:DEBUG|INFO|TRACE|NOTICE)\b|^[ID]\d{4} \d{2}:|\[(?:info|debug)\s*\]")
_QUIET_FIELD = re.compile(r"\blevel=(?:info|debug|trace)\b")
_FRAME = re.compile(r'^\s*File "([^"]+)", line \d+')
_LIBRARY_PATH = re.compile(
    r"site-packages|dist-packages|/lib/python\d|\\lib\\|<frozen |/usr/lib/|<string>|\.pyenv/"
    r"|[/\\](?:airflow[/\\](?:providers|models|operators|sensors|hooks|utils|executors|jobs|sdk|task|api)|prefect|kfp"
    r"|torch|tensorflow|pandas|numpy|sklearn|pyarrow|botocore|boto3|urllib3|requests|dbt|great_expectations|pandera"
    r"|pydantic|mlflow|ray|dask)[/\\]")


def _builtin_mro(name: str) -> tuple[str, ...]:
    kind = getattr(builtins, name, None)
    if isinstance(kind, type) and issubclass(kind, BaseException):
        return tuple(c.__name__ for c in kind.__mro__)
    return (name,)


class Evidence:
    """What a failure shows, normalised once: cleaned text, exception names, exit code."""

    def __init__(self, error: BaseException | None, text: str | None, exit_code: int | None) -> None:
        self.exit_code = exit_code
        self.errors = _chain(error) if error is not None else []
        parts = [_format(e) for e in reversed(self.errors)]  # root cause first, as Python prints it
        if text:
            parts.append(text if len(text) <= _HEAD + _TAIL else text[:_HEAD] + "\n…\n" + text[-_TAIL:])
        raw = _ANSI.sub("", "\n".join(parts)).replace("\r\n", "\n").replace("\r", "\n")
        if raw.count("\\n") > raw.count("\n"):  # a JSON-escaped log: its lines are inside one string
            raw = raw.replace("\\n", "\n").replace('\\"', '"').replace("\\t", "\t")
        lines, self.quiet = [], []
        for line in raw.split("\n"):
            # Very long lines (JSON blobs, progress bars) are cut to their ends to keep matching bounded.
            line = line if len(line) <= 4096 else line[:2048] + "…" + line[-2048:]
            cleaned = _PREFIXES.sub("", line).rstrip()
            lines.append(cleaned)
            self.quiet.append(bool(_QUIET.search(line[:60]) or _QUIET_FIELD.search(line)))
        self._read(lines)

    def focused(self) -> Evidence | None:
        """The same evidence without its INFO/DEBUG lines (the error lines are the better witnesses),
        or ``None`` when there is no such line to leave out."""
        if not any(self.quiet) or all(self.quiet):
            return None
        view = copy.copy(self)
        view._read([line for line, quiet in zip(self.lines, self.quiet, strict=True) if not quiet])
        return view

    def _read(self, lines: list[str]) -> None:
        self.lines = lines
        self.text = "\n".join(lines)
        self.lower = self.text.lower()
        # exception name -> the line that shows it, raised (last) first
        self.exceptions: dict[str, str] = {}
        for error_object in self.errors:
            line = _exception_text(error_object)
            for cls in type(error_object).__mro__:
                self.exceptions.setdefault(cls.__name__, line)
        for line in reversed(self.lines):
            stripped = line.strip()
            found = _EXCEPTION_LINE.match(stripped)
            if found is None and ": " in stripped:
                found = next(reversed(list(_EXCEPTION_INSIDE.finditer(stripped))), None)
            if found and not stripped.startswith("raise "):
                shown = stripped[found.start(1):]
                for name in _builtin_mro(found.group(2)):
                    self.exceptions.setdefault(name, shown)
                self.exceptions.setdefault(found.group(1), shown)
        self.frames = [m.group(1) for m in map(_FRAME.match, self.lines) if m]
        if self.exit_code is None and self.text:
            stated = _STATED_EXIT_CODE.findall(self.text[-_HEAD:])
            self.exit_code = int(next(code for code in stated[-1] if code)) if stated else None

    def exception_line(self, names: Iterable[str]) -> str | None:
        for name in names:
            if name in self.exceptions:
                return self.exceptions[name]
        return None

    def line_at(self, hit: re.Match[str]) -> str:
        start = self.text.rfind("\n", 0, hit.start()) + 1
        end = self.text.find("\n", hit.end())
        line = self.text[start: end if end != -1 else len(self.text)].strip()
        if len(line) > 160:  # centre long lines on what matched
            left = max(0, hit.start() - start - 60)
            line = ("…" if left else "") + line[left: left + 160] + "…"
        return line

    def raised_in_user_code(self) -> bool | None:
        """Whether the innermost frame of the raised exception is outside the standard library and
        installed packages; ``None`` when no traceback says."""
        for error in self.errors:
            tb = error.__traceback__
            if tb is not None:
                while tb.tb_next is not None:
                    tb = tb.tb_next
                return not _LIBRARY_PATH.search(tb.tb_frame.f_code.co_filename)
        if self.frames:
            return not _LIBRARY_PATH.search(self.frames[-1])
        return None

    def headline(self) -> str | None:
        """The raised exception's line, else the last meaningful log line."""
        if self.exceptions:
            return next(iter(self.exceptions.values()))
        meaningful = [line.strip() for line in self.lines if line.strip() and not line.strip().startswith("File ")]
        return meaningful[-1] if meaningful else None


def _chain(error: BaseException) -> list[BaseException]:
    """The error, then its causes, contexts and (for groups) members, breadth first."""
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


def _format(error: BaseException) -> str:
    """The traceback of one error as Python prints it, without source lines (reading source files
    would cost more than the whole diagnosis)."""
    frames = [f'  File "{frame.f_code.co_filename}", line {line}, in {frame.f_code.co_name}'
              for frame, line in traceback.walk_tb(error.__traceback__)][-30:]
    try:
        full = str(error)
    except Exception:  # a broken __str__ must not stop the diagnosis
        full = "<unprintable>"
    shown = f"{type(error).__module__}.{type(error).__qualname__}" if type(error).__module__ not in (
        "builtins", "__main__") else type(error).__qualname__
    return "\n".join(["Traceback (most recent call last):", *frames, f"{shown}: {full}" if full else shown])


def _exception_text(error: BaseException) -> str:
    try:
        message = str(error)
    except Exception:
        message = "<unprintable>"
    message = message.strip().splitlines()[0] if message.strip() else ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


# -- classification --------------------------------------------------------------------------------


def classify_failure(error: BaseException | None = None, *, text: str | None = None,
                     exit_code: int | None = None, task: str | None = None) -> Failure:
    """Label a failure with one reason and one sentence.

    ``error`` is a live exception (chains and groups are followed), ``text`` a traceback, log or
    orchestrator state message, ``exit_code`` the process's exit code (negative for a signal).

    Example::

        classify_failure(FileNotFoundError("data/train.parquet"), task="train").reason  # data-error
    """
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


def _all_rules() -> list[Rule]:
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
