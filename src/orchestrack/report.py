"""A run, and a quality gate decision, summarised for an orchestrator's UI (Prefect artifacts, KFP
Markdown outputs)."""

from __future__ import annotations

from orchestrack.record import GateDecision, RunRecord


def markdown_summary(record: RunRecord, url: str | None = None) -> str:
    """Status, key, failure, metrics and a link, as a few lines of Markdown.

    Example::

        markdown_summary(orchestrack.get_run("kfp/4f1c"), run.url)
    """
    lines = [f"### orchestrack run `{record.name}`", "", f"- status: **{record.status.value}**",
             f"- key: `{record.key}` (`orchestrack show {record.run_id[:12]}`)"]
    if record.failure is not None:
        lines.append(f"- failure: **{record.failure.reason.value}**: {record.failure.summary}")
    if record.metrics:
        lines.append("- metrics: " + ", ".join(f"{key} = {value:g}" for key, value in sorted(record.metrics.items())))
    if url:
        lines.append(f"- [open the run]({url})")
    return "\n".join(lines) + "\n"


def gate_markdown(decision: GateDecision, url: str | None = None) -> str:
    """A quality gate decision as Markdown: the outcome, its sentence and every check with its numbers.

    Example::

        gate_markdown(orchestrack.gate_step("gate.yaml"), run.url)
    """
    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.6g}"

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [f"### Quality gate: **{decision.outcome.value}**", "", cell(decision.summary), "",
             "| check | subject | value | bound | outcome | sentence |", "|---|---|---|---|---|---|"]
    lines += [f"| {c.kind} | {cell(c.subject)} | {number(c.value)} | {number(c.bound)} | {c.outcome.value} "
              f"| {cell(c.sentence)} |" for c in decision.checks]
    if url:
        lines += ["", f"[open the run]({url})"]
    return "\n".join(lines) + "\n"
