"""The ``orchestrack`` command: list, show, compare and diagnose tracked runs.

Human output goes through rich (plain text when stdout is not a terminal); ``--json`` output is
plain JSON through ``click.echo`` so scripts can parse it. Every :class:`OrchestrackError`
becomes a one-line ``Error: ...`` on stderr with exit code 1, never a traceback.

Example::

    orchestrack runs --status failed --pipeline nightly-train
    orchestrack show nightly-train/2026-11-28
    orchestrack compare 6f1c7f0e 9a2b3c4d --json
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any, TextIO

import click
from rich import box
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

import orchestrack
from orchestrack.errors import OrchestrackError
from orchestrack.history import FailureHistory, failed_runs, histories_of
from orchestrack.inputs import check_artifact_name
from orchestrack.record import (
    FailureReason,
    GateDecision,
    LeakageCheck,
    Purpose,
    RunRecord,
    RunStatus,
    TaskAttempt,
)
from orchestrack.views import (
    comparison_rows,
    duration_text,
    failure_groups,
    feature_fields,
    filters_text,
    label_date_text,
    leakage_text,
    llm_fields,
    reason_of,
    run_seconds,
    size_text,
)

#: Width used when stdout is not a terminal and COLUMNS is unset (CI logs are wide; 80 squashes tables).
PIPE_WIDTH = 160

STATUS_STYLES = {
    "succeeded": "green", "failed": "red", "cancelled": "yellow", "running": "blue",
    "upstream_failed": "red", "skipped": "dim",
}
GATE_STYLES = {"passed": "green", "failed": "bold red", "held": "bold yellow"}
DIFF_STYLE = "bold yellow"
DIFF_MARK = "≠"


class _Group(click.Group):
    """A group that turns orchestrack errors into clean one-line click errors (exit code 1)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OrchestrackError as err:
            raise click.ClickException(" ".join(str(err).split())) from err


# -- formatting helpers -------------------------------------------------------------------------


def _console() -> Console:
    """A console on the current stdout, wide enough for tables when output is piped."""
    console = Console(highlight=False, emoji=False)
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console.width = PIPE_WIDTH
    return console


def _echo_json(data: Any) -> None:
    """Plain, parseable JSON on stdout."""
    click.echo(json.dumps(data, indent=2))


def _choices(enum: type[Enum]) -> click.Choice:
    """A click choice of an enum's values (click lists them when a value is invalid)."""
    return click.Choice([member.value for member in enum], case_sensitive=False)


def _cell(value: Any) -> Text:
    """One table cell; text is never parsed as rich markup, so data cannot inject styles."""
    if isinstance(value, Text):
        return value
    if value is None:
        return Text("-", style="dim")
    if isinstance(value, bool):
        return Text("true" if value else "false")
    if isinstance(value, float):
        return Text(f"{value:.6g}")
    if isinstance(value, Enum):
        return Text(str(value.value))
    return Text(str(value))


def _table(columns: Sequence[str | Column], rows: Iterable[Sequence[Any]], *, title: str | None = None,
           header: bool = True, styles: Sequence[str | None] | None = None) -> Table:
    """A table of ``rows`` (``None`` shows as ``-``); ``styles`` gives each row a style."""
    table = Table(*columns, title=title, title_justify="left", title_style="bold", show_header=header,
                  header_style="bold", box=box.SIMPLE_HEAD if header else None, show_edge=False, pad_edge=False)
    for index, row in enumerate(rows):
        table.add_row(*(_cell(value) for value in row), style=styles[index] if styles else None)
    return table


def _fields(title: str, pairs: Iterable[tuple[str, Any]]) -> Table:
    """A two-column ``field  value`` table without a header."""
    return _table((Column("field", style="bold"), "value"), pairs, title=title, header=False)


def _print_tables(console: Console, tables: Iterable[Table]) -> None:
    """Print the tables that have rows, one blank line apart."""
    for table in tables:
        if table.row_count:
            console.print(table)
            console.print()


def _status(status: Enum | None) -> Text:
    """A run or task status, coloured."""
    if status is None:
        return _cell(None)
    return Text(str(status.value), style=STATUS_STYLES.get(str(status.value), ""))


def _when(moment: datetime | None, *, seconds: bool = False) -> str | None:
    """A UTC timestamp, short (``2026-11-28 14:03``) or with seconds and zone."""
    if moment is None:
        return None
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if seconds else moment.strftime("%Y-%m-%d %H:%M")


def _iso(moment: datetime | None) -> str | None:
    """A UTC ISO-8601 timestamp for JSON output."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


def _task_label(task: TaskAttempt) -> str:
    """The task's name, with the orchestrator's id when the name alone does not identify it."""
    return task.name if task.task_id == task.name else f"{task.name} ({task.task_id[:12]})"


def _short(text: str | None, length: int = 12) -> str | None:
    """The first ``length`` characters of an id, hash or version."""
    return text[:length] if text else text


def _leakage_text(check: LeakageCheck | None) -> Text | None:
    """The leakage screening result, coloured (failed red, not-run yellow), with its note."""
    if check is None:
        return None
    style = {"passed": "green", "failed": "bold red", "not-run": "yellow"}[check.status.value]
    return Text(leakage_text(check) or "", style=style)


def _plural(count: int, word: str) -> str:
    """``1 run``, ``2 runs``."""
    return f"{count} {word}{'' if count == 1 else 's'}"


# -- commands -----------------------------------------------------------------------------------


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--tracking-uri", metavar="URI",
              help="Store to read (default: ORCHESTRACK_TRACKING_URI, else the embedded store in ORCHESTRACK_HOME).")
@click.version_option(orchestrack.__version__, prog_name="orchestrack")
@click.pass_context
def main(ctx: click.Context, tracking_uri: str | None) -> None:
    """Every pipeline execution as one tracked run: list, inspect, compare and diagnose them."""
    ctx.obj = tracking_uri


@main.command()
@click.option("--status", type=_choices(RunStatus), help="Only runs with this status.")
@click.option("--pipeline", help="Only runs of this pipeline.")
@click.option("--reason", type=_choices(FailureReason), help="Only runs that failed for this reason.")
@click.option("--purpose", type=_choices(Purpose), help="Only runs made for this purpose.")
@click.option("--owner", help="Only runs of this owner.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True, help="At most this many runs.")
@click.option("--json", "as_json", is_flag=True, help="Print the run records as a JSON list.")
@click.pass_obj
def runs(tracking_uri: str | None, status: str | None, pipeline: str | None, reason: str | None,
         purpose: str | None, owner: str | None, limit: int, as_json: bool) -> None:
    """List runs, newest first (first ending attempts whose process died: see `orchestrack reap`)."""
    _reap_on_the_way(tracking_uri)
    found = orchestrack.search_runs(status=status, pipeline=pipeline, reason=reason, purpose=purpose, owner=owner,
                                    limit=limit, tracking_uri=tracking_uri)
    if as_json:
        _echo_json([record.model_dump(mode="json") for record in found])
        return
    console = _console()
    if not found:
        console.print("No runs match.", style="dim")
        return
    columns = ("run id", "name", "pipeline", "purpose", "status", "reason", "gate", "started (UTC)", "duration",
               "owner")
    waiting = orchestrack.waiting_writes()
    console.print(_table(columns, [
        (r.run_id[:8] + ("*" if r.run_id in waiting else ""), r.name, r.orchestrator.pipeline, r.purpose,
         _status(r.status), reason_of(r),
         Text(r.gate.outcome.value, style=GATE_STYLES[r.gate.outcome.value]) if r.gate else None,
         _when(r.started_at), duration_text(run_seconds(r)), r.owner) for r in found]))
    shown = {r.run_id for r in found}
    for line in _waiting_lines({run_id: files for run_id, files in waiting.items() if run_id in shown}):
        console.print(Text("* " + line, style="yellow"), soft_wrap=True)


@main.command()
@click.argument("run")
@click.option("--json", "as_json", is_flag=True, help="Print the full run record as JSON.")
@click.pass_obj
def show(tracking_uri: str | None, run: str, as_json: bool) -> None:
    """Show one run in full. RUN is a key, a run id or a run-id prefix of 8+ characters."""
    record = orchestrack.get_run(run, tracking_uri=tracking_uri)
    history = _failure_history(record, tracking_uri)
    if as_json:
        _echo_json({**record.model_dump(mode="json"),
                    "failure_history": history.model_dump(mode="json") if history else None})
        return
    console = _console()
    info = record.orchestrator
    _print_tables(console, [_fields(f"Run {record.name}", [
        ("key", record.key), ("run id", record.run_id), ("status", _status(record.status)),
        ("purpose", record.purpose), ("owner", record.owner), ("started", _when(record.started_at, seconds=True)),
        ("ended", _when(record.ended_at, seconds=True)), ("duration", duration_text(run_seconds(record))),
        ("orchestrator", info.kind), ("pipeline", info.pipeline), ("pipeline version", info.pipeline_version),
        ("orchestrator run", info.run_id), ("url", info.url),
    ])])
    if record.failure is not None:
        failure = record.failure
        label = failure.reason.value + (f" ({failure.detail})" if failure.detail else "")
        console.print(Text.assemble(("Failure: ", "bold"), (label, "bold red")), soft_wrap=True)
        console.print(Text(failure.summary), soft_wrap=True)
        if history is not None:
            console.print(Text(_seen_text(history), style="dim"), soft_wrap=True)
        console.print()
    if record.gate is not None:
        gate = record.gate
        console.print(Text.assemble(("Quality gate: ", "bold"), (gate.outcome.value, GATE_STYLES[gate.outcome.value])),
                      soft_wrap=True)
        console.print(Text(gate.summary), soft_wrap=True)
        console.print()
    _print_tables(console, [*_record_tables(record), _gate_table(record.gate), _versions_table(record, tracking_uri)])
    if record.incomplete:
        console.print(Text("incomplete: " + ", ".join(record.incomplete), style="yellow"), soft_wrap=True)
    for line in _waiting_lines(orchestrack.waiting_writes(record.run_id)):
        console.print(Text(line, style="yellow"), soft_wrap=True)


def _waiting_lines(waiting: dict[str, list[tuple[Path, int]]]) -> list[str]:
    """What ``show`` and ``runs`` say about writes still waiting in a journal on this host."""
    lines = []
    for run_id, files in waiting.items():
        for path, count in files:
            lines.append(f"{run_id[:8]}: {_plural(count, 'write')} waiting in the journal {path} "
                         "(the store was unreachable; `orchestrack replay` delivers them)")
    return lines


def _failure_history(record: RunRecord, tracking_uri: str | None) -> FailureHistory | None:
    """The history of the run's failure fingerprint (``None`` without one, or when it cannot be read)."""
    fingerprint = record.failure.fingerprint if record.failure else None
    if fingerprint is None:
        return None
    try:
        return orchestrack.failure_history(fingerprint, tracking_uri=tracking_uri)
    except Exception as err:  # the run is still worth showing
        click.echo(f"(failure history not shown: {' '.join(str(err).split())})", err=True)
        return None


def _seen_text(history: FailureHistory) -> str:
    """``Seen 12 times since 2026-11-03 (fingerprint 1a2b3c4d…)``."""
    mark = f"(fingerprint {history.fingerprint[:8]}…)"
    if history.count <= 1 or history.first_seen is None:
        return f"Seen only in this run {mark}."
    return f"Seen {history.count} times since {history.first_seen.astimezone(UTC):%Y-%m-%d} {mark}."


def _gate_table(decision: GateDecision | None, title: str = "Quality gate checks") -> Table:
    """Every check of a quality gate decision, with its numbers."""
    checks = decision.checks if decision else []
    return _table(("check", "subject", "value", "bound", "outcome", "sentence"),
                  [(c.kind, c.subject, c.value, c.bound, Text(c.outcome.value, style=GATE_STYLES[c.outcome.value]),
                    c.sentence) for c in checks], title=title)


def _versions_table(record: RunRecord, tracking_uri: str | None) -> Table:
    """The model versions promoted from the run (none shown when the registry cannot be read)."""
    from orchestrack.registry import open_registry, versions_of_run

    try:
        versions = versions_of_run(record, open_registry(tracking_uri)) if record.artifacts else []
    except Exception as err:  # the run is still worth showing
        click.echo(f"(model versions not shown: {' '.join(str(err).split())})", err=True)
        versions = []
    return _table(("model", "version", "aliases", "artifact", "created (UTC)"),
                  [(v.name, v.version, ", ".join(v.aliases) or None, v.artifact, _when(v.created_at))
                   for v in versions], title="Model versions")


def _record_tables(record: RunRecord) -> list[Table]:
    """The sections of ``show`` below the header, in display order."""
    code, env = record.code, record.environment
    gpus = ", ".join(f"{g.index}: {g.name}" + (f" ({g.memory_total_mb} MiB)" if g.memory_total_mb else "")
                     for g in env.gpus) or None
    cuda = " / driver ".join(part for part in (env.cuda, env.driver) if part) or None
    packages = ", ".join(f"{name} {version}" for name, version in env.packages.items()) or None
    metric_rows: list[tuple[Any, ...]] = []
    for key in sorted(set(record.metrics) | set(record.metric_series)):
        series = record.metric_series.get(key)
        note = f"series: {len(series)} points, last {series[-1].value:.6g}" if series else None
        metric_rows.append((key, None, record.metrics.get(key), record.metric_units.get(key), note))
    for slice_label, values in sorted(record.slice_metrics.items()):
        metric_rows.extend((key, slice_label, value, record.metric_units.get(key), None)
                           for key, value in sorted(values.items()))
    features = feature_fields(record.features)
    return [
        _fields("Code", [("commit", _short(code.commit, 10)), ("branch", code.branch),
                         ("dirty", code.dirty), ("repository", code.repository)]),
        _fields("Environment", [("python", env.python), ("image", env.image), ("hostname", env.hostname),
                                ("platform", env.platform), ("gpus", gpus), ("cuda", cuda), ("packages", packages)]),
        _table(("name", "uri", "version", "rows", "size", "filters", "labels as of", "leakage check"),
               [(d.name, d.uri, _short(d.version), d.rows, size_text(d.size_bytes), filters_text(d.filters),
                 label_date_text(d.labels_as_of), _leakage_text(d.leakage_check))
                for d in record.data], title="Data"),
        _fields("Features", [("columns", ", ".join(record.features.columns)), ("target", record.features.target),
                             *features] if record.features.columns or features else []),
        _table(("name", "kind", "format", "sha256", "keys", "artifact", "source"),
               [(c.name, c.kind, c.format, _short(c.sha256), len(c.values) or None, c.artifact, c.source)
                for c in record.configs], title="Configs and prompts"),
        _fields("LLM", llm_fields(record.llm)),
        _table(("param", "value"), sorted(record.params.items()), title="Params"),
        _table(("metric", "slice", "value", "unit", "series"), metric_rows, title="Metrics"),
        _table(("name", "kind", "size", "sha256", "uri"),
               [(a.name, a.kind, size_text(a.size_bytes), _short(a.sha256) or None, a.uri) for a in record.artifacts],
               title="Artifacts"),
        _table(("task", "attempt", "status", "duration", "hostname", "reason", "summary"),
               [(_task_label(t), t.attempt, _status(t.status).append(" (cached)" if t.cached else ""),
                 duration_text(t.duration_s), t.hostname, t.failure.reason.value if t.failure else None,
                 t.failure.summary if t.failure else None)
                for t in record.tasks], title="Tasks"),
        _table(("tag", "value"), sorted(record.tags.items()), title="Tags"),
    ]


@main.command()
@click.argument("run_refs", metavar="RUN RUN...", nargs=-1, required=True)
@click.option("--differences", "only_differences", is_flag=True,
              help="Only the rows whose values differ (a config's hundreds of keys shrink to the changed ones).")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.pass_obj
def compare(tracking_uri: str | None, run_refs: tuple[str, ...], only_differences: bool, as_json: bool) -> None:
    """Compare runs side by side; rows whose values differ are marked."""
    if len(run_refs) < 2:
        raise click.UsageError("compare needs at least two runs")
    records = [orchestrack.get_run(ref, tracking_uri=tracking_uri) for ref in run_refs]
    rows = [row for row in comparison_rows(records) if row["differs"] or not only_differences]
    if as_json:
        _echo_json({"runs": [r.run_id for r in records], "rows": rows})
        return
    columns = [DIFF_MARK, "section", "field", *(f"{r.name}\n{r.run_id[:8]}" for r in records)]
    cells, styles, previous = [], [], None
    for row in rows:
        section = row["section"] if row["section"] != previous else ""
        previous = row["section"]
        cells.append((DIFF_MARK if row["differs"] else "", section, row["field"], *row["values"]))
        styles.append(DIFF_STYLE if row["differs"] else None)
    _console().print(_table(columns, cells, styles=styles))


@main.command()
@click.option("--pipeline", help="Only runs of this pipeline.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=200, show_default=True,
              help="Look at this many of the newest failed or cancelled runs.")
@click.option("--examples", type=click.IntRange(0, 100), default=3, show_default=True,
              help="Newest examples shown per reason (with --group: newest runs per fingerprint).")
@click.option("--group", "by_fingerprint", is_flag=True,
              help="Group the same failure across runs by its fingerprint: reason, first and last seen, how often, "
                   "pipelines, tasks and the newest runs.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts and examples (or groups) as JSON.")
@click.pass_obj
def failures(tracking_uri: str | None, pipeline: str | None, limit: int, examples: int, by_fingerprint: bool,
             as_json: bool) -> None:
    """Why runs fail: failed and cancelled runs counted by failure reason, with recent examples;
    with --group, the same failure across runs (one fingerprint) counted, with when it was first
    and last seen."""
    found = failed_runs(pipeline=pipeline, limit=limit, tracking_uri=tracking_uri)
    if by_fingerprint:
        _fingerprint_groups(found, pipeline, limit, examples, as_json)
        return
    groups = failure_groups(found, examples)
    by_reason = {reason: count for reason, count, _ in groups}
    picked = {reason: records for reason, _, records in groups}
    if as_json:
        _echo_json({"total": len(found), "by_reason": by_reason, "examples": {
            reason: [{"run_id": r.run_id, "name": r.name, "task": r.failure.task if r.failure else None,
                      "summary": r.failure.summary if r.failure else None, "ended_at": _iso(r.ended_at)}
                     for r in records]
            for reason, records in picked.items()}})
        return
    console = _failures_heading(found, pipeline, limit)
    if console is None:
        return
    _print_tables(console, [
        _table(("reason", "count", "share"),
               [(reason, count, f"{100 * count / len(found):.0f}%") for reason, count in by_reason.items()],
               title="By reason"),
        _table(("reason", "run", "task", "summary", "ended (UTC)"),
               [(reason, r.name, r.failure.task if r.failure else None, r.failure.summary if r.failure else None,
                 _when(r.ended_at)) for reason, records in picked.items() for r in records],
               title="Examples"),
    ])


def _failures_heading(found: list[RunRecord], pipeline: str | None, limit: int, note: str = "") -> Console | None:
    """Print how many failed runs ``failures`` looked at; ``None`` (after saying so) when there are none."""
    console = _console()
    scope = f" of pipeline {pipeline!r}" if pipeline else ""
    if not found:
        console.print(f"No failed or cancelled runs{scope}.", style="dim")
        return None
    console.print(f"{_plural(len(found), 'failed or cancelled run')}{scope} (the newest {limit} at most){note}.",
                  soft_wrap=True)
    return console


def _fingerprint_groups(found: list[RunRecord], pipeline: str | None, limit: int, examples: int,
                        as_json: bool) -> None:
    """``failures --group``: one row per failure fingerprint among ``found``."""
    histories = histories_of(found, examples)
    grouped = sum(h.count for h in histories)
    if as_json:
        _echo_json({"total": len(found), "grouped": grouped,
                    "groups": [h.model_dump(mode="json") for h in histories]})
        return
    note = f"; {grouped} of them in {_plural(len(histories), 'group')}"
    if grouped < len(found):
        note += f", {len(found) - grouped} without a fingerprint (no error text, or recorded before fingerprints)"
    console = _failures_heading(found, pipeline, limit, note)
    if console is None:
        return
    console.print()
    _print_tables(console, [_table(
        ("fingerprint", "reason", "count", "first seen (UTC)", "last seen (UTC)", "pipelines", "tasks", "newest runs",
         "summary"),
        [(h.fingerprint, h.reason, h.count, _when(h.first_seen), _when(h.last_seen), ", ".join(h.pipelines) or None,
          ", ".join(h.tasks) or None, ", ".join(run_id[:8] for run_id in h.runs) or None, h.summary)
         for h in histories], title="By fingerprint")])


@main.command()
@click.argument("run")
@click.argument("artifact")
@click.option("--to", "destination", type=click.Path(path_type=Path), help="Where to write it (default: ./NAME).")
@click.pass_obj
def fetch(tracking_uri: str | None, run: str, artifact: str, destination: Path | None) -> None:
    """Download ARTIFACT (its name) of RUN from wherever it is stored, with a progress bar for big ones."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from orchestrack.stores import open_artifact_store

    record = orchestrack.get_run(run, tracking_uri=tracking_uri)
    matches = [a for a in record.artifacts if a.name == artifact]
    if not matches:
        names = ", ".join(sorted(a.name for a in record.artifacts)) or "none"
        raise click.UsageError(f"run {record.key!r} has no artifact named {artifact!r} (it has: {names})")
    found = matches[-1]
    # A stored name is checked again: a record written by something else could say "../x" or "/etc/x".
    target = destination or Path.cwd() / check_artifact_name(found.name, "the stored artifact name; use --to")
    if found.uri.startswith("s3://"):
        store = open_artifact_store("s3://" + found.uri[5:].split("/", 1)[0])
    else:
        # A local artifact lives at ROOT/sha256/ab/<sha256>: its store is ROOT.
        store = open_artifact_store(str(Path(found.uri.removeprefix("file://")).parents[2]))
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=Console(stderr=True), transient=True, disable=(found.size_bytes or 0) < 8 << 20) as bar:
        task = bar.add_task(found.name, total=found.size_bytes)
        written = store.fetch(found.uri, target, progress=lambda moved: bar.advance(task, moved))
    click.echo(f"{found.name} -> {written}")


@main.command()
def replay() -> None:
    """Send writes spooled while the store was unreachable to their stores."""
    applied, problems = orchestrack.replay_spool()
    click.echo(f"Replayed {_plural(applied, 'spooled write')}.")
    if problems:
        click.echo(f"{_plural(len(problems), 'write')} could not be replayed "
                   "and stay spooled for a later `orchestrack replay`:", err=True)
        for problem in problems:
            click.echo(f"  {problem}", err=True)
        raise click.exceptions.Exit(1)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print what was reaped as a JSON list.")
@click.pass_obj
def reap(tracking_uri: str | None, as_json: bool) -> None:
    """End task attempts whose process died without a word (lease expired on any host, or the holding
    process on this host gone) as failed / infra-error, and close their runs. Safe to run often."""
    reaped = orchestrack.reap(tracking_uri)
    if as_json:
        _echo_json([{"key": r.key, "run_id": r.run_id, "closed": r.closed,
                     "attempts": [{"task_id": t, "attempt": n, "found": why} for t, n, why in r.attempts]}
                    for r in reaped])
        return
    for r in reaped:
        for task_id, number, why in r.attempts:
            click.echo(f"{r.key}: task {task_id} attempt {number} ended infra-error ({why})")
        state = "closed failed (infra-error)" if r.closed else "still running (another attempt is alive)"
        click.echo(f"{r.key}: run {state}")
    click.echo(f"Reaped {_plural(len(reaped), 'run')}.")


#: Seconds `orchestrack runs` spends reaping before it lists.
RUNS_REAP_BUDGET_S = 2.0


def _reap_on_the_way(tracking_uri: str | None) -> None:
    """Reap before listing, bounded in time; a failure to reap never stops the listing."""
    try:
        orchestrack.reap(tracking_uri, budget_s=RUNS_REAP_BUDGET_S)
    except OrchestrackError as err:  # a store or setting fault: the listing reports it, once
        logging.getLogger(__name__).info("could not reap before listing: %s", err)
    except Exception as err:
        click.echo(f"orchestrack could not reap before listing ({err}); run `orchestrack reap`", err=True)


@main.command()
@click.argument("log", type=click.File("r", encoding="utf-8", errors="replace"), default="-")
@click.option("--exit-code", type=int, help="The failed process's exit code.")
@click.option("--task", help="The task that failed (named in the summary).")
@click.option("--signal", "signals", multiple=True, metavar="KEY=VALUE",
              help="What the orchestrator reported apart from the text: state=crashed, "
                   "termination_reason=OOMKilled, signal=9 (repeatable).")
@click.option("--explain", is_flag=True, help="Also say which rule, signal or model features decided, and how sure.")
@click.option("--json", "as_json", is_flag=True, help="Print reason, summary and detail (and the explanation) as JSON.")
def classify(log: TextIO, exit_code: int | None, task: str | None, signals: tuple[str, ...], explain: bool,
             as_json: bool) -> None:
    """Label a failure from its log text (file LOG, default stdin) and/or an exit code."""
    reported = {}
    for given in signals:
        key, sep, value = given.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{given!r} is not KEY=VALUE (e.g. state=crashed)", param_hint="--signal")
        reported[key.strip()] = value.strip()
    text = log.read()
    diagnosis = orchestrack.explain_failure(text=text if text.strip() else None, exit_code=exit_code, task=task,
                                            signals=reported)
    failure = diagnosis.failure
    if as_json:
        _echo_json(diagnosis.as_json() if explain else
                   {"reason": failure.reason.value, "summary": failure.summary, "detail": failure.detail})
    elif explain:
        click.echo("\n".join(diagnosis.explanation()))
    else:
        click.echo(f"{failure.reason.value}: {failure.summary}")


# -- quality gate (orchestrack gate) ------------------------------------------------------------

#: ``orchestrack gate`` exit codes a CI job branches on (1 is any orchestrack error, 2 a usage error).
GATE_EXIT_CODES = {"passed": 0, "failed": 3, "held": 4}


@main.command()
@click.argument("run")
@click.option("--spec", "spec_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The gate spec: a .yaml, .toml or .json file (docs/gate.md).")
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
@click.pass_obj
def gate(tracking_uri: str | None, run: str, spec_path: Path, as_json: bool) -> None:
    """Check RUN against a quality gate and record the decision on it.

    Exit code 0: passed; 3: failed (the run is marked failed, reason metric-regression); 4: held for
    review (a suspiciously good metric); 1: an error (bad spec, unknown run).
    """
    from orchestrack.gate import check_gate

    decision = check_gate(run, spec_path, tracking_uri=tracking_uri)
    if as_json:
        _echo_json(decision.model_dump(mode="json"))
    else:
        console = _console()
        _print_tables(console, [_gate_table(decision, "Quality gate")])
        console.print(Text(decision.summary, style=GATE_STYLES[decision.outcome.value]), soft_wrap=True)
    raise click.exceptions.Exit(GATE_EXIT_CODES[decision.outcome.value])


# -- model registry (orchestrack promote, models, which) ----------------------------------------

def _outcome(version: orchestrack.ModelVersion) -> Text:
    """A version's gate outcome, coloured, ``forced`` appended when it was promoted past a refusal."""
    text = Text(version.gate.value, style=GATE_STYLES[version.gate.value]) if version.gate else _cell(None)
    return text.append(" (forced)", style="bold red") if version.forced else text


def _version_fields(version: orchestrack.ModelVersion) -> Table:
    data = ", ".join(f"{name}={value or '?'}" for name, value in version.data_versions.items()) or None
    return _fields(f"Model {version.name} version {version.version}", [
        ("aliases", ", ".join(version.aliases) or None), ("run", version.run_name), ("run key", version.run_key),
        ("run id", version.run_id), ("artifact", version.artifact), ("sha256", version.sha256),
        ("size", size_text(version.size_bytes)), ("uri", version.uri), ("gate", _outcome(version)),
        ("gate summary", version.gate_summary), ("commit", _short(version.code_commit, 10)), ("data", data),
        ("note", version.note), ("created", _when(version.created_at, seconds=True)),
        ("registry", version.registry_url)])


@main.command("promote")
@click.argument("run")
@click.option("--model", required=True, help="The registered model's name (made on its first promotion).")
@click.option("--alias", help="Point this alias (e.g. champion) at the new version, moving it off the old one.")
@click.option("--artifact", help="The artifact to promote (default: the run's only artifact of kind 'model').")
@click.option("--force", is_flag=True,
              help="Promote although the run's gate failed, held it or never ran, or the run did not succeed; "
                   "the version records that it was forced.")
@click.option("--note", help="Why this version is promoted; kept with the version.")
@click.option("--json", "as_json", is_flag=True, help="Print the new version as JSON.")
@click.pass_obj
def promote_command(tracking_uri: str | None, run: str, model: str, alias: str | None, artifact: str | None,
                    force: bool, note: str | None, as_json: bool) -> None:
    """Register RUN's model artifact as the next version of a model, if its quality gate passed.

    RUN is a key, a run id or a run-id prefix of 8+ characters. A run that was never gated, failed
    or was held by its gate, or did not succeed, is refused (exit code 1) unless --force.
    """
    version = orchestrack.promote(run, model, alias=alias, artifact=artifact, force=force, note=note,
                                  tracking_uri=tracking_uri)
    if as_json:
        _echo_json(version.model_dump(mode="json"))
        return
    console = _console()
    _print_tables(console, [_version_fields(version)])
    aliases = f" ({', '.join(version.aliases)})" if version.aliases else ""
    console.print(Text(f"Promoted run {version.run_key} to {version.name} version {version.version}{aliases}.",
                       style="bold"), soft_wrap=True)


@main.command("models")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the models (or the model's versions) as JSON.")
@click.pass_obj
def models_command(tracking_uri: str | None, name: str | None, as_json: bool) -> None:
    """List registered models with their latest version and aliases; with NAME, that model's versions."""
    from orchestrack.errors import ModelNotFoundError
    from orchestrack.registry import open_registry

    registry = open_registry(tracking_uri)
    if name is not None:
        versions = registry.versions(name)
        if not versions:
            known = ", ".join(registry.models()) or "none yet"
            raise ModelNotFoundError(f"no model named {name!r} in {orchestrack.lifecycle.store_for(tracking_uri).uri} "
                                     f"(registered models: {known}); promote a run with `orchestrack promote RUN "
                                     f"--model {name}`")
        if as_json:
            _echo_json([version.model_dump(mode="json") for version in versions])
            return
        _console().print(_table(
            ("version", "aliases", "run", "run id", "gate", "commit", "artifact", "sha256", "created (UTC)"),
            [(v.version, ", ".join(v.aliases) or None, v.run_name, v.run_id[:8], _outcome(v),
              _short(v.code_commit, 10), v.artifact, _short(v.sha256), _when(v.created_at)) for v in versions],
            title=f"Model {name}"))
        return
    listing = [(model, registry.versions(model)) for model in registry.models()]
    if as_json:
        _echo_json([{"name": model, "versions": len(versions),
                     "latest": versions[0].model_dump(mode="json") if versions else None,
                     "aliases": {alias: v.version for v in versions for alias in v.aliases}}
                    for model, versions in listing])
        return
    console = _console()
    if not listing:
        console.print("No models registered yet; promote a run with `orchestrack promote RUN --model NAME`.",
                      style="dim")
        return
    console.print(_table(
        ("model", "latest", "versions", "aliases", "latest run", "gate", "created (UTC)"),
        [(model, versions[0].version if versions else None, len(versions),
          ", ".join(f"{alias}: v{v.version}" for v in versions for alias in v.aliases) or None,
          versions[0].run_name if versions else None, _outcome(versions[0]) if versions else None,
          _when(versions[0].created_at) if versions else None) for model, versions in listing]))


@main.command("which")
@click.argument("target", metavar="FILE|MODEL")
@click.option("--json", "as_json", is_flag=True, help="Print the runs and model versions as JSON.")
@click.pass_obj
def which_command(tracking_uri: str | None, target: str, as_json: bool) -> None:
    """Which run produced FILE (a file or folder, matched by content) or a model version
    (models:/NAME/VERSION, models:/NAME@ALIAS), and which model versions it is."""
    from orchestrack.errors import RunNotFoundError
    from orchestrack.registry import MODEL_URI, file_sha256, model_version, open_registry, runs_with_sha256

    if MODEL_URI.match(target.strip()):
        version = model_version(target, tracking_uri=tracking_uri)
        record = orchestrack.get_run(version.run_id, tracking_uri=tracking_uri)
        sha256 = version.sha256
        found = [(record, a) for a in record.artifacts if a.name == version.artifact]
        versions = [version]
    else:
        path = Path(target)
        if not path.exists():
            raise click.BadParameter(f"{target!r} is neither an existing file or folder nor a model version "
                                     "(models:/NAME/VERSION or models:/NAME@ALIAS)", param_hint="FILE|MODEL")
        sha256 = file_sha256(path)
        found = runs_with_sha256(sha256, tracking_uri=tracking_uri)
        versions = open_registry(tracking_uri).find_versions(sha256)
    if not found and not versions:
        raise RunNotFoundError(
            f"no run in {orchestrack.lifecycle.store_for(tracking_uri).uri} has an artifact with the content of "
            f"{target!r} "
            f"(sha256 {sha256}); it was not logged with log_artifact, was changed since, or lives in another "
            "store (--tracking-uri, ORCHESTRACK_TRACKING_URI)")
    if as_json:
        _echo_json({"path": target, "sha256": sha256, "runs": [
            {"run_id": r.run_id, "key": r.key, "name": r.name, "status": r.status.value,
             "started_at": _iso(r.started_at), "url": orchestrack.lifecycle.run_url(r.run_id, r.key),
             "artifact": a.model_dump(mode="json")} for r, a in found],
            "model_versions": [v.model_dump(mode="json") for v in versions]})
        return
    console = _console()
    console.print(f"{target} (sha256 {sha256[:12]}): {_plural(len(found), 'run artifact')}, "
                  f"{_plural(len(versions), 'model version')}.", soft_wrap=True)
    console.print()
    _print_tables(console, [
        _table(("run id", "name", "key", "status", "artifact", "kind", "started (UTC)"),
               [(r.run_id[:8], r.name, r.key, _status(r.status), a.name, a.kind, _when(r.started_at))
                for r, a in found], title="Runs"),
        _table(("model", "version", "aliases", "run", "gate", "created (UTC)"),
               [(v.name, v.version, ", ".join(v.aliases) or None, v.run_name, _outcome(v), _when(v.created_at))
                for v in versions], title="Model versions"),
    ])
    for record, _ in found[:1]:
        url = orchestrack.lifecycle.run_url(record.run_id, record.key)
        console.print(f"source run: {url or record.run_id}", soft_wrap=True)


@main.command("link")
@click.argument("run")
@click.option("--markdown", is_flag=True, help="Print a Markdown link ([name](url)) for a pull request or model card.")
@click.option("--json", "as_json", is_flag=True, help="Print run id, key, name and URL as JSON.")
@click.pass_obj
def link_command(tracking_uri: str | None, run: str, markdown: bool, as_json: bool) -> None:
    """Print the stable URL of RUN to paste into a code or model review.

    The URL is built from the run id (the same on every machine for one orchestrator run), with
    ORCHESTRACK_UI_URL (the address of `orchestrack ui`, or a template with {run_id} / {key}), else
    the tracking server's own run page (MLflow).
    """
    from orchestrack.errors import InvalidInputError
    from orchestrack.lifecycle import run_url
    from orchestrack.settings import load_settings

    record = orchestrack.get_run(run, tracking_uri=tracking_uri)
    url = run_url(record.run_id, record.key, load_settings(**({"tracking_uri": tracking_uri} if tracking_uri else {})))
    if url is None:
        raise InvalidInputError(
            f"run {record.key!r} (run id {record.run_id}) has no URL: the embedded store has no web page of its own. "
            "Set ORCHESTRACK_UI_URL to where `orchestrack ui` is served for your team "
            "(e.g. https://orchestrack.example.com), or use an MLflow tracking server")
    if as_json:
        _echo_json({"run_id": record.run_id, "key": record.key, "name": record.name, "url": url})
    elif markdown:
        click.echo(f"[{record.name} ({record.run_id[:8]})]({url})")
    else:
        click.echo(url)


# -- run pages (orchestrack ui, report) ---------------------------------------------------------


@main.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; any but a loopback one requires the access token.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port to listen on (0: any free one).")
@click.option("--token", envvar="ORCHESTRACK_UI_TOKEN", show_envvar=True,
              help="Access token every request must carry (off the loopback, default: a new one, printed once).")
@click.pass_obj
def ui_command(tracking_uri: str | None, host: str, port: int, token: str | None) -> None:
    """Serve read-only pages of the runs (list, run, compare, failures, artifacts) at http://HOST:PORT/."""
    import logging
    import secrets
    import socket

    from orchestrack.settings import load_settings
    from orchestrack.ui.server import UiConfig, is_loopback, make_server

    orchestrack.search_runs(limit=1, tracking_uri=tracking_uri)  # a bad store fails here, not on every page
    generated = not token and not is_loopback(host)
    token = secrets.token_urlsafe(24) if generated else (token or None)
    try:
        server = make_server(host, port, UiConfig(tracking_uri, load_settings().resolved_artifact_uri, token))
    except OSError as err:
        raise click.ClickException(f"cannot listen on {host}:{port}: {err.strerror or err}; "
                                   "choose another --port or --host") from err
    shown = socket.gethostname() if host in ("0.0.0.0", "::") else host
    address = f"http://{f'[{shown}]' if ':' in shown else shown}:{server.server_address[1]}/"
    if generated:
        click.echo(f"orchestrack ui: {address}?token={token}")
    else:
        click.echo(f"orchestrack ui: {address}" + (" (the access token of --token / ORCHESTRACK_UI_TOKEN "
                                                   "is required)" if token else ""))
    access = logging.getLogger("orchestrack.ui")
    access.setLevel(logging.INFO)
    access.addHandler(logging.StreamHandler())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@main.command("report")
@click.argument("run_refs", metavar="RUN [RUN...]", nargs=-1, required=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("report.html"),
              show_default=True, help="The HTML file to write.")
@click.pass_obj
def report_command(tracking_uri: str | None, run_refs: tuple[str, ...], output: Path) -> None:
    """Write the page of RUN, or the pages of several runs after their comparison, to one self-contained
    HTML file (styles inlined, nothing loaded from elsewhere: it opens offline)."""
    from orchestrack.registry import open_registry, versions_of_run
    from orchestrack.ui.pages import report

    records = [orchestrack.get_run(ref, tracking_uri=tracking_uri) for ref in dict.fromkeys(run_refs)]
    registry = open_registry(tracking_uri)
    try:
        output.write_text(report(records, {r.run_id: versions_of_run(r, registry) for r in records}), encoding="utf-8")
    except OSError as err:
        raise click.ClickException(f"cannot write the report to {str(output)!r}: {err.strerror or err}; "
                                   "choose another file with -o/--output") from err
    click.echo(f"{_plural(len(records), 'run')} -> {output}")
