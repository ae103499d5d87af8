"""The UI's pages as pure functions: run records in, one HTML string out.

Every value from a record goes through :func:`html.escape` (:func:`cell`); only :class:`Html`
fragments built here are trusted. The same functions make the server's pages (linking
``/assets/ui.css``) and the offline report (CSS inlined, no link to anything outside the file), told
apart by a :class:`Site`.

Example::

    html = run_page(orchestrack.get_run("nightly-train/2026-11-28"), SERVER)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from html import escape
from importlib.resources import files
from typing import Any
from urllib.parse import quote

from orchestrack.history import histories_of
from orchestrack.record import FailureReason, GateDecision, Purpose, RunRecord, RunStatus, TaskAttempt
from orchestrack.registry import ModelVersion
from orchestrack.ui.charts import line_chart
from orchestrack.views import (
    comparison_rows,
    duration_text,
    failure_groups,
    feature_fields,
    filters_text,
    label_date_text,
    leakage_text,
    llm_fields,
    run_seconds,
    size_text,
)

#: The run-list filters, in form order (each is also a ``search_runs`` argument).
FILTERS = ("pipeline", "status", "reason", "purpose", "owner")
CHOICES: dict[str, type[Enum]] = {"status": RunStatus, "reason": FailureReason, "purpose": Purpose}
#: The report's policy: nothing may load, styles only from the file itself.
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"


class Html(str):
    """A fragment of markup built here, safe to insert as is."""


def asset(name: str) -> str:
    """The text of a file shipped in ``orchestrack/ui/assets``."""
    return files("orchestrack.ui").joinpath("assets", name).read_text(encoding="utf-8")


@dataclass(frozen=True)
class Site:
    """How pages link: to the server's routes, or within one offline report file."""

    served: bool
    #: Run ids shown in the same report file (their sections are linked by anchor).
    in_report: frozenset[str] = field(default_factory=frozenset)

    def run_link(self, run_id: str) -> str | None:
        """Where a run's page is, if it can be opened from here."""
        if self.served:
            return f"/runs/{quote(run_id, safe='')}"
        return f"#run-{run_id}" if run_id in self.in_report else None

    def model_link(self, name: str) -> str | None:
        """Where a model's page is (only the server has one)."""
        return f"/models/{quote(name, safe='')}" if self.served else None

    def artifact_link(self, run_id: str, name: str) -> str | None:
        """Where an artifact downloads from (only the server serves bytes)."""
        return f"/artifacts/{quote(run_id, safe='')}/{quote(name, safe='')}" if self.served else None


SERVER = Site(served=True)


# -- small pieces -------------------------------------------------------------------------------


def cell(value: Any) -> Html:
    """A value as escaped text: ``-`` for none, floats to 6 significant digits, enums by value."""
    if isinstance(value, Html):
        return value
    if value is None or value == "":
        return Html('<span class="none">-</span>')
    if isinstance(value, bool):
        return Html("true" if value else "false")
    if isinstance(value, float):
        return Html(f"{value:.6g}")
    if isinstance(value, Enum):
        return Html(escape(str(value.value)))
    return Html(escape(str(value)))


def link(href: str | None, text: Any) -> Html:
    """``text`` linked to ``href`` (plain text when there is no link)."""
    return Html(f'<a href="{escape(href)}">{cell(text)}</a>') if href else cell(text)


def badge(value: Enum | str | None) -> Html:
    """A status, reason or gate outcome as a coloured label."""
    if value is None:
        return cell(None)
    text = str(value.value if isinstance(value, Enum) else value)
    return Html(f'<span class="badge {escape(text)}">{escape(text)}</span>')


def when(moment: datetime | None) -> str | None:
    """A UTC timestamp with seconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else None


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, cls: str = "",
          row_classes: Sequence[str] | None = None) -> Html:
    """A table; ``row_classes`` gives each row a CSS class. Empty when there are no rows."""
    body = []
    for index, row in enumerate(rows):
        attr = f' class="{escape(row_classes[index])}"' if row_classes and row_classes[index] else ""
        body.append(f"<tr{attr}>{''.join(f'<td>{cell(value)}</td>' for value in row)}</tr>")
    if not body:
        return Html("")
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    return Html(f'<table class="{escape(cls)}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>')


def fields(pairs: Iterable[tuple[str, Any]]) -> Html:
    """A ``field: value`` list of the pairs whose value is set."""
    items = [f"<dt>{escape(name)}</dt><dd>{cell(value)}</dd>" for name, value in pairs
             if value is not None and value != "" and value != []]
    return Html(f'<dl class="fields">{"".join(items)}</dl>') if items else Html("")


def section(title: str, content: str, *, anchor: str | None = None) -> Html:
    """A titled section, left out when it has no content."""
    if not content:
        return Html("")
    ident = f' id="{escape(anchor)}"' if anchor else ""
    return Html(f"<section{ident}><h2>{escape(title)}</h2>{content}</section>")


def document(title: str, body: str, site: Site) -> Html:
    """A whole page: the server's links its stylesheet and script; a report inlines its CSS."""
    if site.served:
        head = '<link rel="stylesheet" href="/assets/ui.css"><script src="/assets/ui.js" defer></script>'
        nav = ('<nav><a href="/" class="brand">orchestrack</a><a href="/">Runs</a>'
               '<a href="/failures">Failures</a><a href="/models">Models</a></nav>')
    else:
        head = f'<meta http-equiv="Content-Security-Policy" content="{REPORT_CSP}"><style>{asset("ui.css")}</style>'
        nav = '<nav><span class="brand">orchestrack report</span></nav>'
    return Html(f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
                f'<meta name="viewport" content="width=device-width, initial-scale=1">'
                f"<title>{escape(title)}</title>{head}</head><body>{nav}<main>{body}</main></body></html>")


# -- runs ---------------------------------------------------------------------------------------


def filter_form(filters: Mapping[str, str]) -> Html:
    """The run-list filters as a GET form, showing the values in force."""
    controls = []
    for name in FILTERS:
        value = filters.get(name, "")
        if name in CHOICES:
            options = "".join(
                f'<option value="{escape(m.value)}"{" selected" if m.value == value else ""}>{escape(m.value)}</option>'
                for m in CHOICES[name])
            control = f'<select name="{name}" id="f-{name}"><option value="">any</option>{options}</select>'
        else:
            control = f'<input name="{name}" id="f-{name}" value="{escape(value)}">'
        controls.append(f'<label for="f-{name}">{name}</label>{control}')
    return Html(f'<form class="filters" method="get" action="/">{"".join(controls)}'
                '<button type="submit">Filter</button><a href="/">clear</a></form>')


def runs_page(records: Sequence[RunRecord], filters: Mapping[str, str], site: Site = SERVER, *,
              limit: int | None = None) -> Html:
    """The run list with its filter form; ticked runs open in the compare page. When ``limit`` runs
    came back, the page says there may be more and how to narrow the list."""
    rows = [(Html(f'<input type="checkbox" name="run" value="{escape(r.run_id)}" aria-label="compare">'),
             link(site.run_link(r.run_id), r.run_id[:8]), r.name, r.orchestrator.pipeline, r.purpose,
             badge(r.status), badge(r.failure.reason) if r.failure else None,
             badge(r.gate.outcome) if r.gate else None, when(r.started_at), duration_text(run_seconds(r)), r.owner)
            for r in records]
    listing = table(("", "run", "name", "pipeline", "purpose", "status", "reason", "gate", "started",
                     "duration", "owner"), rows, cls="runs")
    more = (f'<p class="note">The newest {limit} matching runs; older ones exist: narrow the list with the '
            "filters.</p>" if limit is not None and len(records) >= limit else "")
    body = (f"<h1>Runs</h1>{filter_form(filters)}{more}"
            + (f'<form method="get" action="/compare">{listing}'
               '<button type="submit">Compare ticked runs</button></form>'
               if listing else '<p class="empty">No runs match.</p>'))
    return document("Runs - orchestrack", body, site)


# -- one run ------------------------------------------------------------------------------------


def run_header(record: RunRecord, site: Site) -> Html:
    """Identity, status and where the run ran."""
    info = record.orchestrator
    # Only a web address becomes a link (never javascript: or data:), and only on the server.
    web = bool(info.url and info.url.lower().startswith(("http://", "https://")))
    url = link(info.url, info.url) if site.served and web else info.url
    return Html(f'<h1>{escape(record.name)} {badge(record.status)}</h1>' + fields([
        ("key", record.key), ("run id", record.run_id), ("purpose", record.purpose), ("owner", record.owner),
        ("started", when(record.started_at)), ("ended", when(record.ended_at)),
        ("duration", duration_text(run_seconds(record))), ("orchestrator", info.kind), ("pipeline", info.pipeline),
        ("pipeline version", info.pipeline_version), ("orchestrator run", info.run_id), ("orchestrator page", url),
        ("incomplete", ", ".join(record.incomplete) or None)]))


def failure_box(record: RunRecord) -> Html:
    """The run's failure label and sentence, prominent."""
    failure = record.failure
    if failure is None:
        return Html("")
    label = failure.reason.value + (f" ({failure.detail})" if failure.detail else "")
    evidence = f"<pre>{escape(failure.evidence)}</pre>" if failure.evidence else ""
    return Html(f'<div class="failure"><strong>Failure: {escape(label)}</strong>'
                f'<p class="sentence">{escape(failure.summary)}</p>'
                + fields([("task", failure.task), ("error type", failure.error_type),
                          ("exit code", failure.exit_code)]) + f"{evidence}</div>")


def gate_section(gate: GateDecision | None, site: Site) -> Html:
    """The quality gate's decision and every check with its numbers."""
    if gate is None:
        return Html("")
    checks = table(("check", "subject", "outcome", "value", "bound", "reference", "sentence"),
                   [(c.kind, c.subject, badge(c.outcome), c.value, c.bound, c.reference,
                     Html(f'<span class="sentence">{escape(c.sentence)}</span>')) for c in gate.checks], cls="gate")
    about = fields([("spec", gate.spec), ("spec sha256", (gate.spec_sha256 or "")[:12] or None),
                    ("baseline run", link(site.run_link(gate.baseline_run), gate.baseline_run)
                     if gate.baseline_run else None), ("decided", when(gate.decided_at))])
    return section("Gate", f'<p>{badge(gate.outcome)} <span class="sentence">{escape(gate.summary)}</span></p>'
                           f"{about}{checks}")


def task_rows(tasks: Sequence[TaskAttempt]) -> list[tuple[Any, ...]]:
    """One row per task attempt, with its failure sentence."""
    return [(t.name if t.task_id == t.name else f"{t.name} ({t.task_id[:12]})", t.attempt,
             badge(t.status), "cached" if t.cached else None, when(t.started_at), duration_text(t.duration_s),
             t.hostname, badge(t.failure.reason) if t.failure else None,
             Html(f'<span class="sentence">{escape(t.failure.summary)}</span>') if t.failure else None)
            for t in tasks]


def environment_fields(record: RunRecord) -> Html:
    """Where the code ran (never environment variables: the record keeps none)."""
    env = record.environment
    gpus = ", ".join(f"{g.index}: {g.name}" + (f" ({g.memory_total_mb} MiB)" if g.memory_total_mb else "")
                     for g in env.gpus) or None
    packages = ", ".join(f"{name} {version}" for name, version in sorted(env.packages.items())) or None
    return fields([("python", env.python), ("image", env.image), ("hostname", env.hostname),
                   ("platform", env.platform), ("gpus", gpus), ("cuda", env.cuda), ("driver", env.driver),
                   ("packages", packages)])


def charts(record: RunRecord) -> Html:
    """One line chart per metric series."""
    return Html("".join(f'<figure class="series"><figcaption>{escape(key)}</figcaption>{line_chart(key, points)}'
                        "</figure>" for key, points in sorted(record.metric_series.items()) if points))


def versions_section(versions: Sequence[ModelVersion], site: Site) -> Html:
    """The model versions promoted from this run."""
    return section("Model versions", table(
        ("model", "version", "aliases", "artifact", "gate", "created"),
        [(link(site.model_link(v.name), v.name), v.version, ", ".join(v.aliases) or None, v.artifact,
          Html(badge(v.gate) + (' <span class="forced">forced</span>' if v.forced else "")), when(v.created_at))
         for v in versions], cls="versions"))


def run_sections(record: RunRecord, site: Site, versions: Sequence[ModelVersion] = ()) -> Html:
    """Everything about one run, as the body of its page or one part of a report."""
    code = record.code
    slices = [(label, key, value) for label, values in sorted(record.slice_metrics.items())
              for key, value in sorted(values.items())]
    by_task = [(task, key, value) for task, values in sorted(record.task_metrics.items())
               for key, value in sorted(values.items())]
    parts = [
        run_header(record, site), failure_box(record), gate_section(record.gate, site),
        versions_section(versions, site),
        section("Code", fields([("commit", code.commit), ("branch", code.branch), ("dirty", code.dirty),
                                ("repository", code.repository)])),
        section("Data", table(("name", "uri", "version", "rows", "size", "filters", "labels as of", "leakage check",
                               "task"),
                              [(d.name, d.uri, d.version, d.rows, size_text(d.size_bytes),
                                filters_text(d.filters), label_date_text(d.labels_as_of),
                                leakage_text(d.leakage_check), d.task)
                               for d in record.data], cls="data")),
        section("Features", fields([("columns", ", ".join(record.features.columns) or None),
                                    ("target", record.features.target), *feature_fields(record.features)])),
        section("Configs and prompts", table(
            ("name", "kind", "format", "sha256", "keys", "source"),
            [(link(site.artifact_link(record.run_id, c.artifact), c.name) if c.artifact else c.name, c.kind,
              c.format, c.sha256[:12], len(c.values) or None, c.source) for c in record.configs], cls="configs")),
        section("LLM", fields(llm_fields(record.llm))),
        section("Environment", environment_fields(record)),
        section("Params", table(("param", "value"), sorted(record.params.items()), cls="params")),
        section("Metrics", table(("metric", "value", "unit"),
                                 [(k, v, record.metric_units.get(k)) for k, v in sorted(record.metrics.items())],
                                 cls="metrics")),
        section("Metrics over steps", charts(record)),
        section("Slice metrics", table(("slice", "metric", "value"), slices)),
        section("Task metrics", table(("task", "metric", "value"), by_task)),
        section("Tasks", table(("task", "attempt", "status", "", "started", "duration", "host", "reason",
                                "failure"), task_rows(record.tasks), cls="tasks")),
        section("Artifacts", table(("name", "kind", "size", "sha256", "task"),
                                   [(link(site.artifact_link(record.run_id, a.name), a.name), a.kind,
                                     size_text(a.size_bytes), a.sha256[:12], a.task) for a in record.artifacts])),
        section("Tags", table(("tag", "value"), sorted(record.tags.items()))),
    ]
    return Html("".join(parts))


def run_page(record: RunRecord, site: Site = SERVER, versions: Sequence[ModelVersion] = ()) -> Html:
    """The page of one run (``versions``: the model versions promoted from it)."""
    return document(f"{record.name} - orchestrack",
                    f'<article class="run">{run_sections(record, site, versions)}</article>', site)


# -- models -------------------------------------------------------------------------------------


def models_page(latest: Sequence[ModelVersion], site: Site = SERVER) -> Html:
    """Every registered model with its newest version."""
    if not latest:
        return document("Models - orchestrack", '<h1>Models</h1><p class="empty">No model has been promoted yet '
                        "(<code>orchestrack promote RUN --model NAME</code>).</p>", site)
    return document("Models - orchestrack", "<h1>Models</h1>" + table(
        ("model", "latest version", "aliases", "run", "gate", "created"),
        [(link(site.model_link(v.name), v.name), v.version, ", ".join(v.aliases) or None,
          link(site.run_link(v.run_id), v.run_name or v.run_id[:8]), badge(v.gate), when(v.created_at))
         for v in latest], cls="models"), site)


def model_page(name: str, versions: Sequence[ModelVersion], site: Site = SERVER) -> Html:
    """One model's versions, each with the run that justifies it."""
    rows = [(v.version, ", ".join(v.aliases) or None, link(site.run_link(v.run_id), v.run_name or v.run_id[:8]),
             Html(badge(v.gate) + (' <span class="forced">forced</span>' if v.forced else "")),
             Html(f'<span class="sentence">{escape(v.gate_summary)}</span>') if v.gate_summary else None,
             (v.code_commit or "")[:10] or None, v.artifact, when(v.created_at)) for v in versions]
    return document(f"{name} - orchestrack", f"<h1>Model {escape(name)}</h1>" + table(
        ("version", "aliases", "run", "gate", "gate decision", "commit", "artifact", "created"), rows,
        cls="versions"), site)


# -- compare ------------------------------------------------------------------------------------


def compare_table(records: Sequence[RunRecord], site: Site) -> Html:
    """The comparison (:func:`orchestrack.views.comparison_rows`); differing rows get class ``differs``."""
    rows = comparison_rows(records)
    heads = "".join(f"<th>{link(site.run_link(r.run_id), r.name)}<br><code>{escape(r.run_id[:8])}</code></th>"
                    for r in records)
    body = "".join(
        f'<tr class="{"differs" if row["differs"] else "same"}"><td>{"≠" if row["differs"] else ""}</td>'
        f'<td>{escape(row["section"])}</td><td>{escape(row["field"])}</td>'
        + "".join(f"<td>{cell(value)}</td>" for value in row["values"]) + "</tr>" for row in rows)
    differing = sum(1 for row in rows if row["differs"])
    return Html(f'<p>{differing} of {len(rows)} fields differ.</p>'
                f'<table class="compare"><thead><tr><th></th><th>section</th><th>field</th>{heads}</tr></thead>'
                f"<tbody>{body}</tbody></table>")


def compare_page(records: Sequence[RunRecord], site: Site = SERVER) -> Html:
    """Runs side by side, differences highlighted."""
    toggle = ('<label class="toggle"><input type="checkbox" id="only-differences"> only differences</label>'
              if site.served else "")
    return document("Compare - orchestrack", f"<h1>Compare {len(records)} runs</h1>{toggle}"
                    f"{compare_table(records, site)}", site)


# -- failures -----------------------------------------------------------------------------------


def failures_page(records: Sequence[RunRecord], site: Site = SERVER, *, examples: int = 3,
                  pipeline: str | None = None) -> Html:
    """Failed and cancelled runs counted by reason, then by fingerprint (the same failure across runs),
    with the newest examples of each reason."""
    groups = failure_groups(records, examples)
    scope = f" of pipeline {escape(pipeline)}" if pipeline else ""
    if not groups:
        return document("Failures - orchestrack", f'<h1>Failures</h1><p class="empty">No failed or cancelled runs'
                        f"{scope}.</p>", site)
    total = len(records)
    parts = [f"<h1>Failures</h1><p>{total} failed or cancelled run{'' if total == 1 else 's'}{scope}.</p>",
             table(("reason", "count", "share"),
                   [(badge(reason), count, f"{100 * count / total:.0f}%") for reason, count, _ in groups])]
    recurring = histories_of(records, examples)
    if recurring:
        parts.append(section("By fingerprint", table(
            ("fingerprint", "reason", "count", "first seen", "last seen", "pipelines", "tasks", "newest runs",
             "failure"),
            [(h.fingerprint, badge(h.reason), h.count, when(h.first_seen), when(h.last_seen),
              ", ".join(h.pipelines) or None, ", ".join(h.tasks) or None,
              Html(", ".join(link(site.run_link(run_id), run_id[:8]) for run_id in h.runs)),
              Html(f'<span class="sentence">{escape(h.summary)}</span>') if h.summary else None)
             for h in recurring], cls="fingerprints"), anchor="fingerprints"))
    for reason, count, picked in groups:
        parts.append(section(f"{reason} ({count})", table(("run", "name", "task", "failure", "ended"), [
            (link(site.run_link(r.run_id), r.run_id[:8]), r.name, r.failure.task if r.failure else None,
             Html(f'<span class="sentence">{escape(r.failure.summary)}</span>') if r.failure else None,
             when(r.ended_at)) for r in picked], cls="failures"), anchor=f"reason-{reason}"))
    return document("Failures - orchestrack", "".join(parts), site)


# -- errors and the offline report --------------------------------------------------------------


def error_page(status: int, message: str, site: Site = SERVER) -> Html:
    """A short page for a 4xx/5xx answer."""
    return document(f"{status} - orchestrack", f'<h1>{status}</h1><p class="error">{escape(message)}</p>', site)


def report(records: Sequence[RunRecord], versions: Mapping[str, Sequence[ModelVersion]] | None = None) -> Html:
    """One self-contained HTML file: a run's page, or several runs' pages after their comparison
    (``versions``: the model versions promoted from each run, by run id)."""
    site = Site(served=False, in_report=frozenset(r.run_id for r in records))
    promoted = versions or {}
    if len(records) == 1:
        return run_page(records[0], site, promoted.get(records[0].run_id, ()))
    runs = "".join(f'<article class="run" id="run-{escape(r.run_id)}">'
                   f"{run_sections(r, site, promoted.get(r.run_id, ()))}</article>" for r in records)
    return document(f"Report of {len(records)} runs - orchestrack",
                    f"<h1>Compare {len(records)} runs</h1>{compare_table(records, site)}{runs}", site)
