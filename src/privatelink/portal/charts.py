"""Line charts as inline SVG, drawn on the server (no script, no chart library): a
series of (time, value) points from Azure Monitor's metrics, scaled into a box, with
axis labels and a text alternative for screen readers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

WIDTH, HEIGHT = 640, 180
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 64, 12, 12, 28


@dataclass(frozen=True)
class Chart:
    """One chart: its title, unit and points (timestamps and values)."""

    title: str
    unit: str
    points: list[tuple[datetime, float]]

    @property
    def total(self) -> float:
        """The sum of the values (for counts) ."""
        return sum(v for _t, v in self.points)

    @property
    def peak(self) -> float:
        """The largest value (0 without points)."""
        return max((v for _t, v in self.points), default=0.0)


def _human(value: float, unit: str) -> str:
    """A value with a short unit (1.2 k, 3.4 M) for an axis or a summary."""
    if unit == "Percent":
        return f"{value:.1f} %"
    for size, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(value) >= size:
            return f"{value / size:.1f}{suffix}"
    return f"{value:.0f}"


def svg(chart: Chart, chart_id: str) -> str:
    """The chart as an SVG element (role img, titled, described by its summary)."""
    title = f"{chart.title}: peak {_human(chart.peak, chart.unit)}"
    head = (
        f'<svg id="{chart_id}" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{chart_id}-t"><title id="{chart_id}-t">{_escape(title)}</title>'
    )
    inner_w = WIDTH - PAD_LEFT - PAD_RIGHT
    inner_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    axes = (
        f'<line x1="{PAD_LEFT}" y1="{PAD_TOP + inner_h}" x2="{WIDTH - PAD_RIGHT}" '
        f'y2="{PAD_TOP + inner_h}" class="axis"/>'
        f'<line x1="{PAD_LEFT}" y1="{PAD_TOP}" x2="{PAD_LEFT}" y2="{PAD_TOP + inner_h}" '
        'class="axis"/>'
        f'<text x="{PAD_LEFT - 6}" y="{PAD_TOP + 10}" text-anchor="end">'
        f"{_escape(_human(chart.peak, chart.unit))}</text>"
        f'<text x="{PAD_LEFT - 6}" y="{PAD_TOP + inner_h}" text-anchor="end">0</text>'
    )
    if len(chart.points) < 2:
        empty = (
            f'<text x="{PAD_LEFT + inner_w / 2}" y="{PAD_TOP + inner_h / 2}" '
            'text-anchor="middle">no data yet</text>'
        )
        return head + axes + empty + "</svg>"
    t0 = chart.points[0][0].timestamp()
    span = max(chart.points[-1][0].timestamp() - t0, 1.0)
    top = chart.peak or 1.0
    coords = " ".join(
        f"{PAD_LEFT + (t.timestamp() - t0) / span * inner_w:.1f},"
        f"{PAD_TOP + inner_h - v / top * inner_h:.1f}"
        for t, v in chart.points
    )
    labels = (
        f'<text x="{PAD_LEFT}" y="{HEIGHT - 8}">{chart.points[0][0]:%H:%M}</text>'
        f'<text x="{WIDTH - PAD_RIGHT}" y="{HEIGHT - 8}" text-anchor="end">'
        f"{chart.points[-1][0]:%H:%M} UTC</text>"
    )
    line = f'<polyline points="{coords}" class="series"/>'
    return head + axes + labels + line + "</svg>"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
