"""The /stats charts: PNG images of a `models.analytics.Kpis` (the board of main KPIs, activity by weekday and
hour, the retention cohorts, the commerce funnel).

Rendering is synchronous CPU work: the bot awaits `draw_charts`, which runs `render_charts` in a worker process
(see the end of this module) in the caller's locale. Matplotlib's global settings are not thread-safe, so one
lock serializes renders within a process.

Chinese text must render on a fresh install with no missing-glyph boxes, so the package ships its own font: a
subset of Noto Sans CJK (SIL Open Font License, handlers/fonts/OFL.txt) holding every character the stats
strings use (handlers/fonts/subset.py rebuilds it). The charts therefore carry only catalog text and numbers;
names people chose (groups, members, items) appear in the text summary beside them, never in an image.
"""

from __future__ import annotations

import asyncio
import gettext
import io
import multiprocessing
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from matplotlib import font_manager, rc_context
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from handlers.stats_text import board_tiles, format_change, format_value, weekday_names

FONT_PATH = Path(__file__).resolve().parent / "fonts" / "QunbotCJK-Regular.otf"
FONT_FAMILY = "Qunbot CJK"  # the subset's family name (handlers/fonts/subset.py sets it)
DPI = 100
_lock = threading.Lock()
_font_added = False

GREEN, RED, GREY, INK, ACCENT = "#2e7d32", "#c62828", "#757575", "#212121", "#1565c0"
HEAT = LinearSegmentedColormap.from_list("qunbot_heat", ["#f5f7fb", "#90caf9", "#1565c0", "#0d2b5e"])


def _ensure_font() -> None:
    global _font_added
    if not _font_added:
        font_manager.fontManager.addfont(str(FONT_PATH))
        _font_added = True


def _change_colour(figure: Any) -> str:
    change = figure.change
    if not change:
        return GREY
    return GREEN if change > 0 else RED


def _rc() -> dict[str, Any]:
    return {
        "font.family": [FONT_FAMILY, "DejaVu Sans"],
        "axes.unicode_minus": False,  # the subset's hyphen-minus, not U+2212
        "axes.spines.top": False,
        "axes.spines.right": False,
    }


# -- the charts ------------------------------------------------------------------------------------------------


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, pil_kwargs={"compress_level": 1})  # fast; Telegram recompresses
    return buffer.getvalue()


def _period_line(kpis: Any) -> str:
    return _("{period} · compared with {previous}").format(
        period=kpis.period.label(), previous=kpis.previous.label()
    )


def chart_board(kpis: Any) -> bytes:
    tiles = board_tiles(kpis)
    columns = 4
    rows = (len(tiles) + columns - 1) // columns
    figure = Figure(figsize=(9.6, 1.35 * rows + 0.8))
    _heading(figure, _("Key numbers"), kpis)
    # One axes in tile units (x: columns, y: rows from the top): far cheaper to draw than an axes per tile.
    axes = figure.add_axes((0.01, 0.01, 0.98, 1 - 0.8 / (1.35 * rows + 0.8) - 0.01))
    axes.set_xlim(0, columns)
    axes.set_ylim(rows, 0)
    axes.set_axis_off()
    for index, (label, value, rate) in enumerate(tiles):
        row, column = divmod(index, columns)
        axes.add_patch(Rectangle((column + 0.04, row + 0.06), 0.92, 0.88, facecolor="#fafafa", edgecolor="#e0e0e0"))
        axes.text(column + 0.1, row + 0.25, label, fontsize=9.5, color=GREY, va="center")
        axes.text(column + 0.1, row + 0.53, format_value(value.value, rate), fontsize=17, color=INK, va="center")
        axes.text(column + 0.1, row + 0.8, format_change(value, rate), fontsize=9, color=_change_colour(value),
                  va="center")
    return _png(figure)


def _heading(figure: Figure, title: str, kpis: Any) -> None:
    figure.text(0.02, 1 - 0.12 / figure.get_figheight(), title, fontsize=16, color=INK, va="top")
    figure.text(0.98, 1 - 0.16 / figure.get_figheight(), _period_line(kpis), fontsize=9.5, color=GREY, va="top",
                ha="right")


def chart_activity(kpis: Any) -> bytes:
    activity = kpis.activity
    figure = Figure(figsize=(9.6, 6.4))
    grid = figure.add_gridspec(2, 1, height_ratios=(3, 2), hspace=0.45, left=0.08, right=0.97, top=0.9, bottom=0.08)
    _heading(figure, _("Activity"), kpis)
    heat = figure.add_subplot(grid[0])
    matrix = activity.heatmap or [[0] * 24 for _day in range(7)]
    heat.imshow(matrix, aspect="auto", cmap=HEAT, interpolation="nearest")  # darker: busier
    heat.set_title(_("Messages by weekday and hour"), fontsize=11, loc="left")
    heat.set_yticks(range(7), weekday_names())
    heat.set_xticks(range(0, 24, 2), [f"{hour:02d}" for hour in range(0, 24, 2)])
    heat.set_xlabel(_("Hour (group time)"), fontsize=9)
    for spine in heat.spines.values():
        spine.set_visible(False)

    daily = figure.add_subplot(grid[1])
    days = [row[0] for row in activity.daily]
    daily.set_title(_("Per day"), fontsize=11, loc="left")
    if days:
        positions = range(len(days))
        daily.bar(positions, [row[2] for row in activity.daily], color="#bbdefb", label=_("Messages"))
        twin = daily.twinx()
        twin.plot(positions, [row[1] for row in activity.daily], color=ACCENT, marker="o", markersize=3,
                  label=_("Active members"))
        twin.set_ylim(bottom=0)
        twin.spines["top"].set_visible(False)
        step = max(1, len(days) // 10)
        daily.set_xticks(list(positions)[::step], [f"{day:%m-%d}" for day in days][::step], fontsize=8)
        handles = daily.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        daily.legend(handles, [handle.get_label() for handle in handles], fontsize=8, loc="lower right",
                     bbox_to_anchor=(1, 1), ncol=2, frameon=False)
    else:
        _empty(daily)
    return _png(figure)


def chart_retention(kpis: Any) -> bytes:
    retention = kpis.retention
    cohorts = retention.cohorts
    figure = Figure(figsize=(9.6, max(3.2, 1.6 + 0.42 * len(cohorts))))
    _heading(figure, _("Retention by join week"), kpis)
    axes = figure.add_axes((0.28, 0.12, 0.68, 0.9 - 0.12 - 0.9 / figure.get_figheight()))
    days = (1, 7, 30)
    if not cohorts:
        _empty(axes, _("No one joined in this period."))
        return _png(figure)
    values = [[cohort.retained.get(day) for day in days] for cohort in cohorts]
    shown = [[value if value is not None else float("nan") for value in row] for row in values]
    axes.imshow(shown, aspect="auto", cmap=HEAT, vmin=0, vmax=1, interpolation="nearest")
    axes.set_xticks(range(len(days)), [_("Day 1"), _("Day 7"), _("Day 30")])
    axes.xaxis.tick_top()
    axes.set_yticks(range(len(cohorts)), [
        _("Week of {day} · {count} joined").format(day=f"{cohort.week_start:%m-%d}", count=cohort.joined)
        for cohort in cohorts
    ], fontsize=9)
    for spine in axes.spines.values():
        spine.set_visible(False)
    for row, line in enumerate(values):
        for column, value in enumerate(line):
            text = format_value(value, rate=True) if value is not None else _("still to come")
            colour = "white" if value is not None and value > 0.55 else INK
            axes.text(column, row, text, ha="center", va="center", fontsize=10, color=colour)
    pooled = "  ".join(
        f"{label} {format_value(figure_.value, True)}"
        for label, figure_ in ((_("Day 1"), retention.day1), (_("Day 7"), retention.day7),
                               (_("Day 30"), retention.day30))
    )
    figure.text(0.02, 0.03, _("All joins in the period: {figures}").format(figures=pooled), fontsize=9, color=GREY)
    return _png(figure)


def chart_commerce(kpis: Any) -> bytes:
    commerce = kpis.commerce
    figure = Figure(figsize=(9.6, 5.6))
    _heading(figure, _("Commerce"), kpis)
    funnel = figure.add_axes((0.24, 0.55, 0.7, 0.3))
    steps = [(_("Coupons issued"), commerce.coupons_issued), (_("Coupons used"), commerce.coupons_used),
             (_("Coupons expired"), commerce.coupons_expired)]
    counts = [step[1].value or 0 for step in steps]
    funnel.set_title(_("Coupons"), fontsize=11, loc="left")
    bars = funnel.barh(range(len(steps)), counts, color=[ACCENT, GREEN, "#bdbdbd"])
    funnel.set_yticks(range(len(steps)), [step[0] for step in steps])
    funnel.invert_yaxis()
    funnel.set_xlim(0, max(max(counts), 1) * 1.25)
    for bar, (_label, value) in zip(bars, steps, strict=True):
        funnel.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                    f"  {format_value(value.value)}  ({format_change(value)})", va="center", fontsize=9)
    funnel.set_xticks([])

    rates = figure.add_axes((0.24, 0.08, 0.7, 0.33))
    shares = [
        (_("Coupon use rate"), commerce.coupon_use_rate),
        (_("Vote participation"), commerce.vote_participation),
        (_("Group-buy success"), commerce.groupbuy_success_rate),
        (_("Flash-sale sell-through"), commerce.flash_sell_through),
    ]
    rates.set_title(_("Rates"), fontsize=11, loc="left")
    values = [share[1].value for share in shares]
    rates.barh(range(len(shares)), [1.0] * len(shares), color="#eeeeee")
    rates.barh(range(len(shares)), [value or 0 for value in values], color=ACCENT)
    rates.set_yticks(range(len(shares)), [share[0] for share in shares])
    rates.invert_yaxis()
    rates.set_xlim(0, 1.35)
    rates.set_xticks([])
    for row, (_label, value) in enumerate(shares):
        rates.text(1.02, row, f"{format_value(value.value, True)}  ({format_change(value, True)})", va="center",
                   fontsize=9)
    return _png(figure)


def _empty(axes: Any, text: str | None = None) -> None:
    axes.set_xticks([])
    axes.set_yticks([])
    axes.text(0.5, 0.5, text or _("Nothing recorded in this period."), ha="center", va="center", color=GREY,
              transform=axes.transAxes)


CHARTS: list[tuple[str, Callable[[Any], bytes]]] = [
    ("board", chart_board), ("activity", chart_activity), ("retention", chart_retention),
    ("commerce", chart_commerce),
]


@contextmanager
def drawing() -> Iterator[None]:
    """Matplotlib set up for the charts (the shipped font first), one thread at a time."""
    with _lock:
        _ensure_font()
        with rc_context(_rc()):
            yield


def render_charts(kpis: Any) -> list[tuple[str, bytes]]:
    """Every chart as (name, PNG bytes), in the order they are sent. Blocking: call through asyncio.to_thread."""
    with drawing():
        return [(name, draw(kpis)) for name, draw in CHARTS]


# -- off the event loop ----------------------------------------------------------------------------------------
# Matplotlib holds the GIL through long stretches of drawing and PNG encoding: drawn on a thread of the bot's
# process, a month's charts stalled the event loop for tens to hundreds of milliseconds on a busy machine. So the
# charts are drawn in one worker process (spawned on the first /stats, kept for the next), which is handed the
# KPIs and the current locale's catalog; gettext there answers from that catalog.

_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ProcessPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        return _pool


class _CatalogOf(I18n):
    """An aiogram I18n holding one locale's catalog as handed over by the bot's process (nothing read from disk)."""

    def __init__(self, locale: str, catalog: dict[Any, str]) -> None:
        self.path = FONT_PATH.parent
        self.default_locale = locale
        self.domain = "messages"
        self.ctx_locale = ContextVar("qunbot_chart_locale", default=locale)
        translations = gettext.GNUTranslations()
        translations._catalog = catalog  # type: ignore[attr-defined]
        translations.plural = lambda n: int(n != 1)  # type: ignore[attr-defined]
        self.locales = {locale: translations}


def _render_with_catalog(kpis: Any, locale: str, catalog: dict[Any, str]) -> list[tuple[str, bytes]]:
    """The worker's entry: render_charts with gettext answering from `catalog`."""
    i18n = _CatalogOf(locale, catalog)
    token = I18n.set_current(i18n)  # aiogram's gettext looks up I18n's own context slot
    try:
        return render_charts(kpis)
    finally:
        I18n.reset_current(token)


def current_catalog() -> tuple[str, dict[Any, str]]:
    """The locale gettext speaks now, and its catalog (empty for the source language)."""
    i18n = I18n.get_current(no_error=True)
    if i18n is None:
        return "en", {}
    locale = i18n.current_locale
    translations = i18n.locales.get(locale)
    return locale, dict(getattr(translations, "_catalog", {}) or {})


async def draw_charts(kpis: Any) -> list[tuple[str, bytes]]:
    """render_charts in the worker process, in the caller's locale; the event loop only waits."""
    global _pool
    locale, catalog = current_catalog()
    try:
        return await asyncio.get_running_loop().run_in_executor(
            _executor(), _render_with_catalog, kpis, locale, catalog
        )
    except BrokenProcessPool:  # the worker died (killed, out of memory): start a new one next time
        with _pool_lock:
            _pool = None
        return await asyncio.to_thread(render_charts, kpis)
