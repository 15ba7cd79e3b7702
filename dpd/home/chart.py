"""The products-per-month chart, drawn on the server as SVG geometry.

The page must read without JavaScript and fetch nothing from elsewhere, so
the chart is plain SVG whose rectangles are computed here and written by the
template (which escapes every label).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

WIDTH = 1000
HEIGHT = 220
LEFT = 44  # room for the count labels
BOTTOM = 24  # room for the year labels
TOP = 8
# Past this many months one bar a month gets too thin to see: one a year.
MAX_MONTHS = 120


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    count: int


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    baseline: float
    period: str  # "month" or "year"
    bars: list[Bar]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    total: int

    @property
    def empty(self) -> bool:
        return not self.bars


def _months(first: dt.date, last: dt.date) -> list[dt.date]:
    months, current = [], first.replace(day=1)
    while current <= last:
        months.append(current)
        current = (current + dt.timedelta(days=32)).replace(day=1)
    return months


def _buckets(series: list[tuple[dt.date, int]]) -> tuple[str, list[tuple[dt.date, int]]]:
    """Every month from the first to the last, empty months included (a gap
    in the data is a gap in the chart), or every year past MAX_MONTHS."""
    counts = {month.replace(day=1): count for month, count in series}
    months = _months(min(counts), max(counts))
    if len(months) <= MAX_MONTHS:
        return "month", [(month, counts.get(month, 0)) for month in months]
    years: dict[int, int] = {}
    for month, count in counts.items():
        years[month.year] = years.get(month.year, 0) + count
    span = range(min(years), max(years) + 1)
    return "year", [(dt.date(year, 1, 1), years.get(year, 0)) for year in span]


def _nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5 x 10^n at or above value: round axis labels."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def products_chart(series: list[tuple[dt.date, int]]) -> Chart:
    """Bars of products per period; `series` is (month, count), oldest first."""
    baseline = HEIGHT - BOTTOM
    if not series:
        return Chart(WIDTH, HEIGHT, LEFT, baseline, "month", [], [], [], 0)
    period, buckets = _buckets(series)
    top = _nice_ceiling(max(count for _, count in buckets))
    plot_height = baseline - TOP
    slot = (WIDTH - LEFT) / len(buckets)
    gap = min(2.0, slot * 0.2)
    bars, x_ticks = [], []
    for index, (start, count) in enumerate(buckets):
        height = plot_height * count / top
        x = LEFT + index * slot
        label = f"{start:%Y-%m}" if period == "month" else f"{start:%Y}"
        bars.append(
            Bar(
                round(x + gap / 2, 2),
                round(baseline - height, 2),
                round(slot - gap, 2),
                round(height, 2),
                label,
                count,
            )
        )
        # The first bar names its year unless a January follows too closely.
        if period == "year" or start.month == 1 or (index == 0 and start.month <= 9):
            x_ticks.append(Tick(round(x, 2), f"{start:%Y}"))
    y_ticks = [
        Tick(round(baseline - plot_height * share, 2), f"{float(top * share):g}")
        for share in (0, 0.25, 0.5, 0.75, 1)
        if float(top * share).is_integer()
    ]
    return Chart(
        WIDTH,
        HEIGHT,
        LEFT,
        baseline,
        period,
        bars,
        x_ticks,
        y_ticks,
        sum(count for _, count in buckets),
    )
