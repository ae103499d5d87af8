"""The labelled failure corpus (tests/corpus/*.jsonl), read for the corpus tests and for training.

Each entry belongs to one part: ``tuning`` (rules and the learned model may be written from it) or
``eval`` (the frozen evaluation part: nothing is ever written from it). All texts of one source
thread are in the same part.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).resolve().parent / "corpus"
PARTS = ("tuning", "eval")


def thread_of(source: str) -> str:
    """The source thread a text came from: its URL without comment anchor, query or trailing slash."""
    url = re.sub(r"[#?].*$", "", source.strip()).rstrip("/")
    url = re.sub(r"^https?://(www\.)?", "", url)
    # One GitHub issue or pull request, whichever of its pages a text came from.
    return re.sub(r"^(github\.com/[^/]+/[^/]+/(?:issues|pull|discussions)/\d+).*$", r"\1", url).lower()


def assigned_part(source: str, eval_share: int = 50) -> str:
    """The part a NEW text's thread falls in: a stable hash of the thread, so nobody picks."""
    digest = int(hashlib.sha256(thread_of(source).encode()).hexdigest()[:8], 16)
    return "eval" if digest % 100 < eval_share else "tuning"


def load_corpus(part: str | None = None) -> list[dict[str, Any]]:
    """Every entry (or one part's), with ``where`` (file:line) added."""
    entries = []
    for path in sorted(CORPUS.glob("*.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                entry = json.loads(line)
                entry["where"] = f"{path.name}:{number}"
                if part is None or entry.get("part") == part:
                    entries.append(entry)
    return entries
