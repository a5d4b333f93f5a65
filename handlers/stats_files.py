"""/stats export: the KPIs as a CSV (every figure, one per row) and an XLSX workbook (the same figures, the days,
the weekday x hour grid and the retention cohorts, one sheet each). Both are built in memory."""

from __future__ import annotations

import csv
import io
from typing import Any

import xlsxwriter
from aiogram.utils.i18n import gettext as _

from handlers.stats_text import is_rate, kpi_label, weekday_names


def kpi_rows(kpis: Any) -> list[list[Any]]:
    """(section, KPI, name, value, previous, change) per figure; rates as fractions, as the KPIs define them."""
    rows: list[list[Any]] = []
    for section, name, value, previous in kpis.rows():
        key = f"{section}.{name}"
        change = value - previous if isinstance(value, int | float) and isinstance(previous, int | float) else None
        rows.append([section, name, kpi_label(key) or "", value, previous, change])
    return rows


def header() -> list[str]:
    return [_("Section"), _("KPI"), _("Label"), _("Value"), _("Previous period"), _("Change")]


def export_csv(kpis: Any) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([_("Period"), kpis.period.label(), _("Previous period"), kpis.previous.label()])
    writer.writerow(header())
    for row in kpi_rows(kpis):
        writer.writerow(["" if cell is None else cell for cell in row])
    # UTF-8 with a byte-order mark, so spreadsheet programs show Chinese correctly.
    return buffer.getvalue().encode("utf-8-sig")


def export_xlsx(kpis: Any) -> bytes:
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True})
    bold = book.add_format({"bold": True})
    percent = book.add_format({"num_format": "0.0%"})
    number = book.add_format({"num_format": "#,##0.##"})

    sheet = book.add_worksheet(_("KPIs")[:31])
    sheet.write_row(0, 0, [_("Period"), kpis.period.label(), _("Previous period"), kpis.previous.label()], bold)
    sheet.write_row(2, 0, header(), bold)
    for index, row in enumerate(kpi_rows(kpis), start=3):
        section, name, label, value, previous, change = row
        style = percent if is_rate(f"{section}.{name}") else number
        sheet.write_row(index, 0, [section, name, label])
        for column, cell in enumerate((value, previous, change), start=3):
            if cell is None:
                sheet.write_blank(index, column, None)
            elif isinstance(cell, int | float):
                sheet.write_number(index, column, cell, style)
            else:
                sheet.write_string(index, column, str(cell))
    sheet.set_column(0, 1, 18)
    sheet.set_column(2, 2, 24)
    sheet.set_column(3, 5, 14)

    days = book.add_worksheet(_("Days")[:31])
    days.write_row(0, 0, [_("Day"), _("Active members"), _("Messages")], bold)
    for index, (day, actives, messages) in enumerate(kpis.activity.daily, start=1):
        days.write_row(index, 0, [day.isoformat(), actives, messages])
    days.set_column(0, 2, 16)

    hours = book.add_worksheet(_("Hours")[:31])
    hours.write_row(0, 0, ["", *[f"{hour:02d}" for hour in range(24)]], bold)
    for index, (name, line) in enumerate(zip(weekday_names(), kpis.activity.heatmap, strict=False), start=1):
        hours.write(index, 0, name, bold)
        hours.write_row(index, 1, list(line))

    cohorts = book.add_worksheet(_("Retention")[:31])
    cohorts.write_row(0, 0, [_("Join week"), _("Joined"), _("Day 1"), _("Day 7"), _("Day 30")], bold)
    for index, cohort in enumerate(kpis.retention.cohorts, start=1):
        cohorts.write_row(index, 0, [cohort.week_start.isoformat(), cohort.joined])
        for column, day in enumerate((1, 7, 30), start=2):
            value = cohort.retained.get(day)
            if value is None:
                cohorts.write_blank(index, column, None)
            else:
                cohorts.write_number(index, column, value, percent)
    cohorts.set_column(0, 4, 14)
    book.close()
    return buffer.getvalue()
