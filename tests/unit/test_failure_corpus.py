"""The labelled corpus of real failure texts (tests/corpus/*.jsonl) against the classifier.

Every entry is a log excerpt, traceback or orchestrator message that someone pasted in a public
issue thread, with the label the rubric (docs/failure-reasons.md) gives it. The test prints the
per-label numbers and fails when overall accuracy drops under 95 % or a label under 90 %.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from orchestrack import FailureReason, classify_failure, rules

CORPUS = Path(__file__).resolve().parents[1] / "corpus"


def load_corpus() -> list[dict[str, Any]]:
    entries = []
    for path in sorted(CORPUS.glob("*.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                entry = json.loads(line)
                entry["where"] = f"{path.name}:{number}"
                entries.append(entry)
    return entries


ENTRIES = load_corpus()


def test_corpus_is_well_formed() -> None:
    ids = [e["id"] for e in ENTRIES]
    assert len(ids) == len(set(ids)), "duplicate ids"
    counts = Counter(e["reason"] for e in ENTRIES)
    assert set(counts) == {reason.value for reason in FailureReason}
    assert min(counts.values()) >= 10, counts
    for entry in ENTRIES:
        assert entry["text"].strip() and entry["source"], entry["where"]


def test_corpus_accuracy_per_label(capsys: pytest.CaptureFixture[str]) -> None:
    seen: Counter[str] = Counter()
    right: Counter[str] = Counter()
    misses = []
    for entry in ENTRIES:
        failure = classify_failure(text=entry["text"], exit_code=entry.get("exit_code"), task="task")
        seen[entry["reason"]] += 1
        if failure.reason.value == entry["reason"]:
            right[entry["reason"]] += 1
        else:
            misses.append(f"  {entry['id']}: expected {entry['reason']}, got {failure.reason.value} "
                          f"({failure.summary[:110]})")
        assert len(failure.summary) <= 200 and failure.summary.startswith("Task 'task' ")
    lines = [f"{'label':<18} {'right':>5} / {'all':>3}   accuracy"]
    for label in sorted(seen):
        lines.append(f"{label:<18} {right[label]:>5} / {seen[label]:>3}   {right[label] / seen[label]:7.1%}")
    total = sum(right.values()) / len(ENTRIES)
    lines.append(f"{'all':<18} {sum(right.values()):>5} / {len(ENTRIES):>3}   {total:7.1%}")
    with capsys.disabled():
        report = "\nfailure corpus, per label:\n" + "\n".join(lines)
        print(report + ("\nmisses:\n" + "\n".join(misses) if misses else ""))
    assert total >= 0.95
    assert all(right[label] / seen[label] >= 0.90 for label in seen), lines


def test_literal_prefilter_never_changes_a_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-rule literal prefilter is an optimisation only: without it every entry gets the same label."""
    with_prefilter = [classify_failure(text=e["text"], exit_code=e.get("exit_code")) for e in ENTRIES]
    monkeypatch.setattr(rules, "USE_PREFILTER", False)
    without = [classify_failure(text=e["text"], exit_code=e.get("exit_code")) for e in ENTRIES]
    assert [(f.reason, f.detail) for f in with_prefilter] == [(f.reason, f.detail) for f in without]
