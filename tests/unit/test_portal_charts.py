"""The portal's SVG charts: points scaled into the box, a title for screen readers, an
empty chart said so, text escaped."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from privatelink.portal.charts import HEIGHT, PAD_BOTTOM, PAD_LEFT, PAD_TOP, WIDTH, Chart, svg


def _points(values: list[float]) -> list[tuple[datetime, float]]:
    start = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    return [(start + timedelta(minutes=i), v) for i, v in enumerate(values)]


def test_points_span_the_box_and_the_peak_is_at_the_top() -> None:
    drawn = svg(Chart("Bytes in", "Count", _points([0, 500, 1000, 250])), "c1")
    coords = re.search(r'points="([^"]+)"', drawn)
    assert coords is not None
    pairs = [tuple(map(float, p.split(","))) for p in coords.group(1).split()]
    xs, ys = [x for x, _ in pairs], [y for _, y in pairs]
    assert xs[0] == PAD_LEFT and xs[-1] == WIDTH - 12  # first and last minute at the edges
    assert min(ys) == PAD_TOP and max(ys) == HEIGHT - PAD_BOTTOM  # peak on top, 0 at the axis
    assert 'role="img"' in drawn and '<title id="c1-t">Bytes in: peak 1.0 k</title>' in drawn
    assert "10:00" in drawn and "10:03 UTC" in drawn


def test_no_points_say_so_and_text_is_escaped() -> None:
    drawn = svg(Chart("a <b> & c", "Percent", []), "c2")
    assert "no data yet" in drawn and "polyline" not in drawn
    assert "a &lt;b&gt; &amp; c: peak 0.0 %" in drawn
    assert Chart("x", "Count", _points([1, 2, 3])).total == 6
