"""Failure fingerprints: the same failure in different runs gets the same short hash.

A fingerprint hashes three things of a failure, each made independent of one run's particulars:

- the exception type, its last dotted component (``pkg.errors.BadBatch`` -> ``BadBatch``);
- the first line of the message with numbers, hex ids, UUIDs, paths, URLs, timestamps, quoted
  values and secrets masked and whitespace collapsed;
- up to three innermost frames of the user's own code (``file basename:function``, no line
  numbers), when a traceback shows them.

So ``ValueError: bad batch 812 at /tmp/3f2a.../part-0.parquet`` of Monday's run and the same error
with another batch and path on Tuesday share one fingerprint; another exception type or other
wording does not. ``orchestrack failures --group`` and ``orchestrack show`` read runs by it.
"""

from __future__ import annotations

import hashlib
import json
import re
import traceback
from collections.abc import Sequence

from orchestrack.evidence import _LIBRARY_PATH, Evidence, _installed, redact

#: How many innermost user-code frames a fingerprint takes.
FRAMES = 3

# Masks, applied in this order: URLs and paths whole first (a UUID or date inside a path is part of the
# path); placeholders hold no digit, so later patterns leave them alone.
_MASKS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>()\[\]{},;]+"), "<url>"),
    # Paths: absolute, home- or dot-relative, Windows; relative ones with 3+ parts or a file extension.
    (re.compile(r"(?<![\w/.~-])(?:~|\.{1,2})?(?:/[^\s'\"<>()\[\]{},;:]+)+/?|\b[A-Za-z]:\\[^\s'\"<>,;]*"
                r"|(?<![\w/.-])[\w.-]+(?:/[\w.-]+)+\.[A-Za-z]\w{0,7}\b|(?<![\w/.-])[\w.-]+(?:/[\w.-]+){2,}"), "<path>"),
    (re.compile(r"\b[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}\b"), "<uuid>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:\s?(?:Z|UTC|[+-]\d{2}:?\d{2}))?)?\b"),
     "<time>"),
    (re.compile(r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b"), "<time>"),
    # Quoted values: a quote not inside a word ("can't" is no quote), up to its closing twin.
    (re.compile(r"(?<![\w'])'[^'\n]*'(?![\w'])|(?<![\w\"])\"[^\"\n]*\"(?![\w\"])|`[^`\n]*`"), "<value>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b|\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{6,}\b"), "<hex>"),
    # Numbers, with the rest of their word (``part-7f9c`` -> ``part-<n>``, ``float64`` -> ``float<n>``).
    (re.compile(r"\d\w*(?:[.,]\d+)*"), "<n>"),
)
_SPACES = re.compile(r"\s+")
_PATH_PARTS = re.compile(r"[\\/]")
_FRAME_LINE = re.compile(r'^\s*File "([^"]+)", line \d+, in (\S+)')
_TRACEBACK_START = "Traceback (most recent call last)"


def normalised_type(error_type: str | None) -> str | None:
    """The exception type's last dotted component (``None`` when there is none)."""
    name = (error_type or "").strip().rsplit(".", 1)[-1].strip()
    return name or None


def normalised_message(message: str | None) -> str:
    """The message's first non-empty line with run-particular values masked, whitespace collapsed.

    Example::

        normalised_message("bad batch 812 at /tmp/x/part-0.parquet")  # 'bad batch <n> at <path>'
    """
    line = next((line for line in (message or "").splitlines() if line.strip()), "")
    masked = redact(line)
    for pattern, placeholder in _MASKS:
        masked = pattern.sub(placeholder, masked)
    return _SPACES.sub(" ", masked).strip()


def _frame(frame: str) -> str:
    """``file basename:function`` of ``path:function`` (a line number, if any, dropped)."""
    where, _, function = frame.rpartition(":")
    basename = _PATH_PARTS.split(re.sub(r":\d+$", "", where))[-1]
    return f"{basename}:{function}" if basename else function


def failure_fingerprint(error_type: str | None, message: str | None, frames: Sequence[str] = ()) -> str:
    """A short stable hash (16 hex digits) of a failure: its exception type, its message with
    run-particular values masked, and up to three user-code frames (``file:function``, innermost first).

    Example::

        a = failure_fingerprint("ValueError", "bad batch 812 at /tmp/a1/x.csv", ["train.py:load"])
        b = failure_fingerprint("builtins.ValueError", "bad batch 7 at /tmp/b2/x.csv", ["/src/train.py:load"])
        assert a == b
    """
    parts = [normalised_type(error_type), normalised_message(message), [_frame(f) for f in list(frames)[:FRAMES]]]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def fingerprint_parts(evidence: Evidence, line: str | None = None) -> tuple[str | None, str | None, list[str]]:
    """``(error type, message, user frames)`` of what ``evidence`` shows: the raised exception's type,
    message and traceback; without an exception, ``line`` (the line a diagnosis rested on) or the
    evidence's last meaningful line as the message."""
    if evidence.errors:
        error = evidence.errors[0]
        try:
            message = str(error)
        except Exception:  # a broken __str__ must not stop the diagnosis
            message = ""
        frames = [f"{frame.f_code.co_filename}:{frame.f_code.co_name}"
                  for frame, _ in traceback.walk_tb(error.__traceback__) if not _installed(frame.f_code.co_filename)]
        return type(error).__name__, message, frames[::-1][:FRAMES]
    if evidence.exceptions:
        shown = next(iter(evidence.exceptions.values()))  # the raised one: the last in the text
        error_type, _, message = shown.partition(":")
        return normalised_type(error_type), message.strip(), _text_frames(evidence.lines)
    return None, line or evidence.headline(), []


def _text_frames(lines: Sequence[str]) -> list[str]:
    """The user-code frames of the last traceback in ``lines``, innermost first."""
    frames: list[str] = []
    for text in lines:
        if _TRACEBACK_START in text:
            frames = []
            continue
        found = _FRAME_LINE.match(text)
        if found and not _LIBRARY_PATH.search(found.group(1)):
            frames.append(f"{found.group(1)}:{found.group(2)}")
    return frames[::-1][:FRAMES]


def evidence_fingerprint(evidence: Evidence, line: str | None = None) -> str:
    """The :func:`failure_fingerprint` of what ``evidence`` shows (see :func:`fingerprint_parts`)."""
    return failure_fingerprint(*fingerprint_parts(evidence, line))
