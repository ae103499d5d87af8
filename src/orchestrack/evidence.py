"""Evidence of a failure: a live exception, a log or state text, an exit code, read once.

:class:`Evidence` normalises what an orchestrator hands over (ANSI codes and logger prefixes
removed, exception lines found, routine lines told apart) so that rules (:mod:`orchestrack.rules`)
match on clean lines. :func:`redact` hides secrets before any text is stored.
"""

from __future__ import annotations

import builtins
import copy
import functools
import os
import re
import site
import sysconfig
import traceback
from collections.abc import Iterable

#: Logs longer than this are cut to their head and tail (the end of a log is where it failed).
_HEAD, _TAIL = 32 * 1024, 224 * 1024

_SECRET = re.compile(
    # name=value / name: value / 'name': 'value' under a secret-looking name (the value, after an
    # optional Bearer/Basic scheme, is hidden; the name stays readable)
    r"(?i)(?P<named>\b[\w.-]*?(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key"
    r"|authorization|credentials?)[\w-]*[\"']?\s*[=:]\s*[\"']?(?:bearer\s+|basic\s+)?)(?P<value>[^\s\"',;]+)"
    r"|(?P<scheme>\bbearer\s+)[A-Za-z0-9._~+/-]{16,}=*"  # a bearer token wherever it is quoted
    r"|(?:\b|(?<=\\[nrt]))(?:AKIA|ASIA)[0-9A-Z]{16}\b"  # AWS access key ids (also just after a repr's \n)
    r"|(?P<userinfo>://[^/\s:@]+:)[^@\s/]+@"  # user:password@ in a URL
    r"|(?:\b|(?<=\\[nrt]))(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|xox[baprs]-[A-Za-z0-9-]{10,}"
    r"|sk-[A-Za-z0-9_-]{20,}|hf_[A-Za-z0-9]{30,}"  # GitHub, Slack, OpenAI-style and Hugging Face tokens
    r"|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]+)"  # JWTs
    # a private key block; one whose end was cut off (a truncated log) is hidden to the end of its body
    r"|(?P<begin>-----BEGIN [A-Z ]*PRIVATE KEY-----)(?:[\s\S]*?(?P<end>-----END [A-Z ]*PRIVATE KEY-----)"
    r"|[A-Za-z0-9+/=\s\\]*)"
)


_PRIVATE_KEY = re.compile(r"(-----BEGIN [A-Z ]*PRIVATE KEY-----)[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----)")


def redact_private_keys(text: str) -> str:
    """``text`` with the body of each private key block replaced by ``***`` (a block spans lines, so
    line-by-line masking, as of config files, cannot see it)."""
    return _PRIVATE_KEY.sub(r"\1***\2", text)


#: Texts up to this length are redacted once and remembered: a run's writes repeat the same short
#: values (names, paths, versions) over and over.
_REMEMBERED_TEXT = 256


def redact(text: str) -> str:
    """``text`` with passwords, tokens, keys and URL credentials replaced by ``***``.

    Example::

        redact("postgresql://app:S3cr3t@db/x password=hunter2")  # 'postgresql://app:***@db/x password=***'
    """
    if len(text) <= _REMEMBERED_TEXT and type(text) is str:
        return _redact_short(text)
    return _redact(text)


@functools.lru_cache(maxsize=8192)
def _redact_short(text: str) -> str:
    return _redact(text)


def _redact(text: str) -> str:
    def hide(match: re.Match[str]) -> str:
        for prefix in ("named", "scheme"):
            if match.group(prefix):
                return match.group(prefix) + "***"
        if match.group("userinfo"):
            return match.group("userinfo") + "***@"
        if match.group("begin"):
            return match.group("begin") + "***" + (match.group("end") or "")
        return "***"

    return _SECRET.sub(hide, text)


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
# A wrapper that names the error it carries: "ray.exceptions.RayTaskError(KeyError): ...".
_WRAPPED = re.compile(r"\b[A-Z]\w*(?:Error|Exception)\(([A-Z]\w*(?:Error|Exception))\)")
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


# Words that say something went wrong, and "status: X"-like fields: what the evidence picker looks for.
_ERROR_WORDS = re.compile(
    r"(?i)\b(?:error|errors|fail\w*|fatal|exception|traceback|killed|kill|denied|refused|timeout|timed out|cancel\w*"
    r"|abort\w*|terminat\w*|exceed\w*|invalid|cannot|can't|could not|couldn't|unable|not found|no such|missing"
    r"|oom\w*|evict\w*|preempt\w*|crash\w*|panic|lost|rejected|violat\w*|mismatch|unexpected|expired|forbidden"
    r"|unauthori[sz]ed|exhausted|insufficient|interrupt\w*|segmentation fault|core dumped)\b")
_STATUS_FIELD = re.compile(r"(?i)\b(?:status|state|reason|statusReason|message|exit ?code|error_?code)\W{0,3}[:=]\s*\S")
# A line with fewer than 3 letters in a row (a brace, a separator, a table border) says nothing.
_NO_WORDS = re.compile(r"^[^A-Za-z]*(?:[A-Za-z]{1,2}[^A-Za-z]+)*[A-Za-z]{0,2}$")
_TABLE_BORDER = re.compile(r"^[\s|+:=\-─━│┃┆┊╭╮╰╯┌┐└┘├┤┬┴┼═║╔╗╚╝╠╣╦╩╬*#~_.]*$")


def informative(line: str) -> bool:
    """Whether a log line can say what went wrong (not a brace, a separator, a table border or a frame)."""
    return bool(line) and not _NO_WORDS.match(line) and not _TABLE_BORDER.match(line) \
        and not line.startswith(("File ", "at ", "Traceback (most recent call last)")) \
        and not (line.startswith("|") and line.endswith("|") and not _ERROR_WORDS.search(line))


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
        # Secrets go before the text is cut into lines: a private key spans lines, and every excerpt,
        # headline and summary is made from these lines (rules never need a secret to match).
        raw = redact(raw)
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
        for inner in _WRAPPED.findall(self.text):  # RayTaskError(KeyError): the wrapped error is the failure
            for name in _builtin_mro(inner):
                self.exceptions.setdefault(name, f"{inner} (wrapped)")
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
                return not _installed(tb.tb_frame.f_code.co_filename)
        if self.frames:
            return not _LIBRARY_PATH.search(self.frames[-1])
        return None

    def headline(self) -> str | None:
        """The raised exception's line, else the most informative log line (:meth:`pick_line`)."""
        if self.exceptions:
            return next(iter(self.exceptions.values()))
        return self.pick_line()

    def pick_line(self) -> str | None:
        """The line that best says what went wrong: error words, exception names and status fields
        score; braces, separators, table borders and traceback frames never qualify. Ties go to the
        later line (the end of a log is where it failed)."""
        best, best_score = None, 0
        for line in self.lines:
            stripped = line.strip()
            if not informative(stripped):
                continue
            score = 1 + 3 * bool(_ERROR_WORDS.search(stripped)) + 2 * bool(_STATUS_FIELD.search(stripped)) \
                + 2 * bool(_EXCEPTION_INSIDE.search(stripped) or _EXCEPTION_LINE.match(stripped))
            if score >= best_score:
                best, best_score = stripped, score
        if best is not None and len(best) > 200:
            hit = _ERROR_WORDS.search(best)
            left = max(0, (hit.start() if hit else 0) - 60)
            best = ("…" if left else "") + best[left: left + 180] + "…"
        return best


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
    lines = [line.strip() for line in redact(message).strip().splitlines() if line.strip()]
    message = lines[0] if lines else ""
    if message.endswith(":") and len(lines) > 1:  # "received invalid parameters:" says what follows
        message = f"{message} {lines[1]}"
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


@functools.cache
def _install_roots() -> tuple[str, ...]:
    """Folders of this interpreter's standard library and installed packages."""
    paths = sysconfig.get_paths()
    roots = {paths[name] for name in ("stdlib", "platstdlib", "purelib", "platlib") if paths.get(name)}
    roots.update(site.getsitepackages() if hasattr(site, "getsitepackages") else [])
    return tuple(sorted(os.path.realpath(root) + os.sep for root in roots))


def _installed(filename: str) -> bool:
    """Whether a live frame's file belongs to the standard library or an installed package (a fact of
    this interpreter, unlike a path in a log, which only a pattern can judge)."""
    if filename.startswith("<"):
        return True  # <frozen ...>, <string>: not the user's file
    return os.path.realpath(filename).startswith(_install_roots())
