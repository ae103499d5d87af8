"""A run summarised for an orchestrator's UI (the Prefect artifact, the KFP Markdown output)."""

from __future__ import annotations

from orchestrack.record import RunRecord


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
