"""The /stats images and files: every chart renders in zh_Hans, zh_Hant and en with no missing glyph (the shipped
CJK subset covers every stats string in every catalog), and the exports parse (CSV rows, XLSX via openpyxl)."""

from __future__ import annotations

import csv
import io
import warnings

import openpyxl
import pytest
from fontTools.ttLib import TTFont

from bot.i18n import create_i18n
from handlers.fonts.subset import characters
from handlers.stats_charts import FONT_PATH, render_charts
from handlers.stats_files import export_csv, export_xlsx
from handlers.stats_text import biggest_changes, summary
from tests.stats_sample import sample_kpis

LOCALES = ("zh_Hans", "zh_Hant", "en")


def test_the_shipped_font_holds_every_character_of_the_stats_strings() -> None:
    cmap = TTFont(str(FONT_PATH))["cmap"].getBestCmap()
    missing = sorted({char for char in characters() if ord(char) not in cmap and not char.isspace()})
    # Emoji only ever appear in the text summary (Telegram draws them), never in an image.
    assert [char for char in missing if ord(char) < 0x1F000 and char not in "⏰✅"] == []


@pytest.mark.parametrize("locale", LOCALES)
def test_every_chart_renders_with_no_missing_glyph(locale: str) -> None:
    i18n = create_i18n("en")
    kpis = sample_kpis()
    with i18n.context(), i18n.use_locale(locale), warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*missing from font")
        charts = render_charts(kpis)
    assert [name for name, _png in charts] == ["board", "activity", "retention", "commerce"]
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000 for _name, png in charts)


def test_an_empty_period_still_renders() -> None:
    from dataclasses import replace

    kpis = sample_kpis()
    empty = replace(kpis, retention=replace(kpis.retention, cohorts=[]),
                    activity=replace(kpis.activity, daily=[], heatmap=[], top_hours=[], top_posters=[]))
    i18n = create_i18n("en")
    with i18n.context(), i18n.use_locale("zh_Hans"), warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*missing from font")
        assert len(render_charts(empty)) == 4


def test_summary_shows_changes_and_escapes_names() -> None:
    i18n = create_i18n("en")
    with i18n.context(), i18n.use_locale("en"):
        text = summary(sample_kpis(), "Fans <3", weekly=True)
    assert text.splitlines()[:2] == ["📅 Weekly report: <b>Fans &lt;3</b>", "2026-11, compared with 2026-10"]
    assert "👥 Members: 1,200 (+9%); joined 150 (+25%), left 50 (+25%), net 100 (+25%)" in text
    assert "🛒 Coupons: issued 40 (+100%), used 30 (+200%), use rate 75.0% (+25.0 pts)" in text
    assert "美玲 &lt;b&gt; 300" in text
    assert "<b>What moved most</b>" in text


def test_the_three_biggest_moves_rank_counts_by_relative_and_rates_by_points() -> None:
    i18n = create_i18n("en")
    with i18n.context(), i18n.use_locale("en"):
        moves = [label for label, _figure, _rate in biggest_changes(sample_kpis())]
    # Showcases 3 -> 12 (+300%), coupons used 10 -> 30 (+200%), then +100% (issued 20 -> 40, group-buy joins from 0)
    assert moves[:2] == ["Showcase posts", "Coupons used"]
    assert len(moves) == 3


def test_csv_export_has_one_row_per_figure() -> None:
    i18n = create_i18n("en")
    kpis = sample_kpis()
    with i18n.context(), i18n.use_locale("en"):
        data = export_csv(kpis)
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0] == ["Period", "2026-11", "Previous period", "2026-10"]
    assert rows[1] == ["Section", "KPI", "Label", "Value", "Previous period", "Change"]
    assert ["members", "total", "Members", "1200", "1100", "100"] in rows
    assert ["commerce", "coupon_use_rate", "Coupon use rate", "0.75", "0.5", "0.25"] in rows
    assert ["retention", "day30", "Day-30 retention", "", "0.2", ""] in rows
    assert len(rows) == 2 + len(kpis.rows())


def test_xlsx_export_opens_with_its_sheets() -> None:
    i18n = create_i18n("en")
    kpis = sample_kpis()
    with i18n.context(), i18n.use_locale("en"):
        data = export_xlsx(kpis)
    book = openpyxl.load_workbook(io.BytesIO(data))
    assert book.sheetnames == ["KPIs", "Days", "Hours", "Retention"]
    sheet = book["KPIs"]
    assert [cell.value for cell in sheet[3]] == ["Section", "KPI", "Label", "Value", "Previous period", "Change"]
    found = {(row[0], row[1]): row[3:6] for row in sheet.iter_rows(min_row=4, values_only=True)}
    assert found["members", "total"] == (1200, 1100, 100)
    assert found["commerce", "coupon_use_rate"] == (0.75, 0.5, 0.25)
    assert book["Days"].max_row == 1 + 30
    assert [cell.value for cell in book["Hours"]["A"]][1:] == ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    assert book["Retention"].max_row == 1 + 4


async def test_charts_are_drawn_in_a_worker_process_in_the_callers_language() -> None:
    from handlers.stats_charts import current_catalog, draw_charts

    i18n = create_i18n("en")
    with i18n.context(), i18n.use_locale("zh_Hant"):
        locale, catalog = current_catalog()
        charts = await draw_charts(sample_kpis())
    assert locale == "zh_Hant" and catalog["Mon"] == "週一"
    assert [name for name, _png in charts] == ["board", "activity", "retention", "commerce"]
    assert all(png.startswith(b"\x89PNG") for _name, png in charts)
