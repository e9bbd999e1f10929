"""Report charts as PNG images, drawn with matplotlib's object API (no pyplot, no global figure
state, so threads may draw at once). Drawing takes about 0.1-0.2 s: run it in a thread."""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING

from desk.config.texts import Texts

if TYPE_CHECKING:
    from desk.reports.appeal_report import Bucket
    from desk.reports.rating_report import RatingReport

WIDTH_IN, HEIGHT_IN, DPI = 10.0, 6.0, 110  # 1100 x 660 px: sharp on a phone, small to send
FONT = 15
TITLE_FONT = 19
MAX_TICKS = 10
DENSE_DAYS = 45  # longer periods: no markers, thinner line, wider bars
BAR_COLOR = "#9cc3e6"
LINE_COLOR = "#d9480f"
DONE_COLOR = "#2b8a3e"


def rating_chart(
    report: RatingReport, lang: str, title: str, *, texts: Texts | None = None
) -> bytes:
    """A PNG of the period: bars for the ratings per day, a line for the day's average
    score (a second axis from 1 to 5); days without ratings leave a gap in the line."""
    # matplotlib costs ~0.3 s to import: only processes that draw a chart pay for it.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    texts = texts or Texts()
    days = report.daily
    x = list(range(len(days)))
    counts = [d.count for d in days]
    averages = [d.average if d.average is not None else math.nan for d in days]

    figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    volume = figure.add_subplot()
    dense = len(days) > DENSE_DAYS
    volume_label = texts.string("report.chart.volume", lang)
    average_label = texts.string("report.chart.average", lang)
    volume.bar(
        x, counts, color=BAR_COLOR, width=0.9 if dense else 0.7, zorder=2, label=volume_label
    )
    volume.set_ylabel(volume_label, fontsize=FONT)
    volume.set_ylim(0, max(max(counts, default=0), 1) * 1.15)
    volume.yaxis.set_major_locator(MaxNLocator(integer=True))
    volume.grid(axis="y", alpha=0.3, zorder=0)
    volume.tick_params(labelsize=FONT - 2)
    figure.suptitle(title, fontsize=TITLE_FONT)

    step = max(1, math.ceil(len(days) / MAX_TICKS))
    volume.set_xticks(x[::step], [d.day.strftime("%d.%m") for d in days[::step]])
    volume.set_xlim(-0.6, len(days) - 0.4)

    score = volume.twinx()
    score.plot(
        x,
        averages,
        label=average_label,
        color=LINE_COLOR,
        linewidth=1.5 if dense else 3,
        marker="" if dense else "o",
        markersize=7,
    )
    score.set_ylim(0.8, 5.2)
    score.set_yticks([1, 2, 3, 4, 5])
    score.set_ylabel(average_label, fontsize=FONT)
    score.tick_params(labelsize=FONT - 2)

    if report.count == 0:
        volume.text(
            0.5,
            0.5,
            texts.string("report.chart.empty", lang),
            transform=volume.transAxes,
            ha="center",
            va="center",
            fontsize=FONT + 2,
            color="#666666",
        )
    figure.legend(  # below the plot: inside it, the line would cross the legend
        loc="outside lower center",
        ncols=2,
        fontsize=FONT - 2,
        frameon=False,
    )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def volume_chart(
    buckets: list[Bucket], lang: str, title: str, *, texts: Texts | None = None
) -> bytes:
    """A PNG of appeals per day (or week): bars for the new ones, a line for those resolved."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    texts = texts or Texts()
    x = list(range(len(buckets)))
    created = [b.created for b in buckets]
    done = [b.done for b in buckets]
    dense = len(buckets) > DENSE_DAYS

    figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.bar(
        x,
        created,
        color=BAR_COLOR,
        width=0.9 if dense else 0.7,
        zorder=2,
        label=texts.string("stats.chart.created", lang),
    )
    axes.plot(
        x,
        done,
        color=DONE_COLOR,
        linewidth=1.5 if dense else 3,
        marker="" if dense else "o",
        markersize=7,
        zorder=3,
        label=texts.string("stats.chart.done", lang),
    )
    axes.set_ylim(0, max(max(created, default=0), max(done, default=0), 1) * 1.15)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(axis="y", alpha=0.3, zorder=0)
    axes.tick_params(labelsize=FONT - 2)
    step = max(1, math.ceil(len(buckets) / MAX_TICKS))
    labels = [b.label[8:10] + "." + b.label[5:7] for b in buckets[::step]]
    axes.set_xticks(x[::step], labels)
    axes.set_xlim(-0.6, len(buckets) - 0.4)
    figure.suptitle(title, fontsize=TITLE_FONT)
    if not any(created) and not any(done):
        axes.text(
            0.5,
            0.5,
            texts.string("stats.chart.empty", lang),
            transform=axes.transAxes,
            ha="center",
            va="center",
            fontsize=FONT + 2,
            color="#666666",
        )
    figure.legend(loc="outside lower center", ncols=2, fontsize=FONT - 2, frameon=False)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
