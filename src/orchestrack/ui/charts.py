"""Metric series as inline SVG line charts, drawn on the server so the offline report has them too.

One chart per metric: a line through every step, a visible circle on each point (its value in a
tooltip), and the first/last step and the lowest/highest value as axis labels. No script, no remote
font: the SVG is plain markup inside the page, styled by ui.css classes.

Example::

    svg = line_chart("loss", record.metric_series["loss"])
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from orchestrack.record import SeriesPoint

WIDTH, HEIGHT = 420, 200
#: Room for the axis labels: left, right, top, bottom.
MARGIN = (56, 14, 12, 28)


def _scale(value: float, low: float, high: float, start: float, end: float) -> float:
    """``value`` in ``[low, high]`` mapped onto ``[start, end]`` (the middle when the range is empty)."""
    if high == low:
        return (start + end) / 2
    return start + (value - low) * (end - start) / (high - low)


def _number(value: float) -> str:
    """A value as an axis label or tooltip (six significant digits)."""
    return f"{value:.6g}"


def chart_points(points: Sequence[SeriesPoint]) -> list[tuple[float, float]]:
    """The (x, y) pixel position of each point, in step order."""
    left, right, top, bottom = MARGIN
    ordered = sorted(points, key=lambda point: point.step)
    steps = [point.step for point in ordered]
    values = [point.value for point in ordered]
    return [(round(_scale(point.step, min(steps), max(steps), left, WIDTH - right), 2),
             round(_scale(point.value, min(values), max(values), HEIGHT - bottom, top), 2)) for point in ordered]


def line_chart(key: str, points: Sequence[SeriesPoint]) -> str:
    """An SVG line chart of one metric series, one ``<circle>`` per point."""
    if not points:
        return ""
    left, right, top, bottom = MARGIN
    ordered = sorted(points, key=lambda point: point.step)
    positions = chart_points(ordered)
    values = [point.value for point in ordered]
    path = " ".join(f"{x},{y}" for x, y in positions)
    circles = "".join(
        f'<circle class="point" cx="{x}" cy="{y}" r="3.5"><title>step {point.step}: {_number(point.value)}'
        f"</title></circle>" for (x, y), point in zip(positions, ordered, strict=True))
    label = escape(key)
    return (
        f'<svg class="chart" role="img" aria-label="{label} over steps" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" data-metric="{label}">'
        f"<title>{label} over {len(ordered)} steps</title>"
        f'<line class="axis" x1="{left}" y1="{HEIGHT - bottom}" x2="{WIDTH - right}" y2="{HEIGHT - bottom}"/>'
        f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{HEIGHT - bottom}"/>'
        f'<text class="tick" x="{left - 6}" y="{top + 4}" text-anchor="end">{_number(max(values))}</text>'
        f'<text class="tick" x="{left - 6}" y="{HEIGHT - bottom}" text-anchor="end">{_number(min(values))}</text>'
        f'<text class="tick" x="{left}" y="{HEIGHT - 8}" text-anchor="start">step {ordered[0].step}</text>'
        f'<text class="tick" x="{WIDTH - right}" y="{HEIGHT - 8}" text-anchor="end">step {ordered[-1].step}</text>'
        f'<polyline class="line" points="{path}"/>{circles}</svg>')
