"""The words and numbers of /stats: each KPI's label, values and changes as people read them, the text summary
sent beside the charts, and the weekly report's "changes that moved most"."""

from __future__ import annotations

from typing import Any

from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __
from aiogram.utils.i18n.lazy_proxy import LazyProxy

from handlers.common import esc

# The scalar KPIs ("section.name" as in Kpis.headline()) people see by name. Others are exported by key only.
LABELS: dict[str, LazyProxy] = {
    "members.total": __("Members"),
    "members.joined": __("Joined"),
    "members.left": __("Left"),
    "members.net_growth": __("Net growth"),
    "activity.dau": __("Daily actives"),
    "activity.wau": __("Weekly actives"),
    "activity.mau": __("Monthly actives"),
    "activity.actives": __("Active members"),
    "activity.speakers": __("Speakers"),
    "activity.messages": __("Messages"),
    "retention.day1": __("Day-1 retention"),
    "retention.day7": __("Day-7 retention"),
    "retention.day30": __("Day-30 retention"),
    "retention.still_active_30d": __("Active after 30 days"),
    "engagement.checkins": __("Check-ins"),
    "engagement.checkin_rate": __("Check-in rate"),
    "engagement.topic_replies": __("Topic replies"),
    "engagement.showcases": __("Showcase posts"),
    "economy.issued": __("Points issued"),
    "economy.spent": __("Points spent"),
    "commerce.coupons_issued": __("Coupons issued"),
    "commerce.coupons_used": __("Coupons used"),
    "commerce.coupons_expired": __("Coupons expired"),
    "commerce.coupon_use_rate": __("Coupon use rate"),
    "commerce.vote_participation": __("Vote participation"),
    "commerce.groupbuy_joins": __("Group-buy joins"),
    "commerce.groupbuy_success_rate": __("Group-buy success"),
    "commerce.groupbuy_units": __("Group-buy units"),
    "commerce.flash_sell_through": __("Flash-sale sell-through"),
    "commerce.lottery_entrants": __("Lottery entrants"),
    "invites.joined": __("Invited joins"),
    "invites.vested": __("Invites rewarded"),
    "invites.voided": __("Invites that did not count"),
    "invites.void_rate": __("Share of invites that did not count"),
    "moderation.deleted": __("Messages removed"),
    "moderation.warned": __("Warnings"),
    "moderation.muted": __("Mutes"),
    "moderation.banned": __("Bans"),
    "moderation.reversals": __("Reversed actions"),
}

# Fractions 0..1 (shown as %; their change in percentage points).
RATES = frozenset({
    "retention.day1", "retention.day7", "retention.day30", "retention.still_active_30d", "engagement.checkin_rate",
    "commerce.coupon_use_rate", "commerce.vote_participation", "commerce.groupbuy_success_rate",
    "commerce.flash_sell_through", "invites.void_rate",
})

# Changes too small to call a move (counts below this on both sides say little).
MIN_COUNT_FOR_MOVE = 5


def is_rate(key: str) -> bool:
    return key in RATES


def kpi_label(key: str) -> str | None:
    label = LABELS.get(key)
    return str(label) if label is not None else None


def weekday_names() -> list[str]:
    return [_("Mon"), _("Tue"), _("Wed"), _("Thu"), _("Fri"), _("Sat"), _("Sun")]


# -- numbers ---------------------------------------------------------------------------------------------------


def format_value(value: float | int | None, rate: bool = False) -> str:
    """A KPI value as people read it: 1,234 / 12.5 / 37.5% / — (undefined)."""
    if value is None:
        return "—"
    if rate:
        return f"{value * 100:.1f}%"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def format_change(figure: Any, rate: bool = False) -> str:
    """The change against the previous period: relative for counts (+12%), in percentage points for rates."""
    change = figure.change
    if change is None:
        return "—"
    if rate:
        return _("{change} pts").format(change=f"{change * 100:+.1f}")
    relative = figure.relative
    if relative is not None:
        return f"{relative * 100:+.0f}%" if round(relative * 100) else "±0%"
    if change == 0:
        return "±0"
    return f"{change:+,.0f}" if float(change).is_integer() else f"{change:+,.1f}"


def with_change(figure: Any, rate: bool = False) -> str:
    """"1,234 (+12%)": the value and its change."""
    return _("{value} ({change})").format(value=format_value(figure.value, rate), change=format_change(figure, rate))


def board_tiles(kpis: Any) -> list[tuple[str, Any, bool]]:
    """(label, Figure, is_rate) for the board image, in reading order."""
    keys = (
        "members.total", "members.joined", "members.net_growth", "activity.dau",
        "activity.wau", "activity.mau", "activity.speakers", "activity.messages",
        "engagement.checkin_rate", "retention.day7", "retention.still_active_30d", "commerce.coupon_use_rate",
        "economy.issued", "commerce.coupons_used", "invites.vested", "moderation.deleted",
    )
    headline = kpis.headline()
    return [(str(LABELS[key]), headline[key], is_rate(key)) for key in keys if key in headline]


# -- the weekly report's biggest moves -------------------------------------------------------------------------


def biggest_changes(kpis: Any, count: int = 3) -> list[tuple[str, Any, bool]]:
    """The `count` named KPIs that moved most against the previous period: counts by their relative change (a
    count rising from zero counts as +100%), rates by their change in percentage points. Tiny counts are left
    out (5 -> 10 is not news)."""
    moves: list[tuple[float, str]] = []
    for key, figure in kpis.headline().items():
        if key not in LABELS or figure.value is None or figure.previous is None or not figure.change:
            continue
        if is_rate(key):
            score = abs(figure.change)
        elif max(abs(figure.value), abs(figure.previous)) < MIN_COUNT_FOR_MOVE:
            continue
        else:
            score = abs(figure.relative) if figure.relative is not None else 1.0
        moves.append((score, key))
    moves.sort(key=lambda move: (-move[0], move[1]))
    headline = kpis.headline()
    return [(str(LABELS[key]), headline[key], is_rate(key)) for _score, key in moves[:count]]


# -- the summary -----------------------------------------------------------------------------------------------


def summary(kpis: Any, title: str, *, weekly: bool = False) -> str:
    """The text sent after the charts (HTML): the main figures with their changes, the busiest hours, the top
    posters, and for the weekly report the three changes that moved most. `title` is escaped here."""
    h = kpis.headline()

    def show(key: str) -> str:
        return with_change(h[key], is_rate(key)) if key in h else "—"

    first = _("📅 Weekly report: <b>{title}</b>") if weekly else _("📊 <b>{title}</b>")
    lines = [
        first.format(title=esc(title)),
        _("{period}, compared with {previous}").format(period=kpis.period.label(), previous=kpis.previous.label()),
        "",
    ]
    if weekly:
        moves = biggest_changes(kpis)
        if moves:
            lines.append(_("<b>What moved most</b>"))
            lines += ["• " + _("{label}: {value}").format(label=esc(label), value=with_change(figure, rate))
                      for label, figure, rate in moves]
            lines.append("")
    lines += [
        _("👥 Members: {total}; joined {joined}, left {left}, net {net}").format(
            total=show("members.total"), joined=show("members.joined"), left=show("members.left"),
            net=show("members.net_growth")),
        _("🔥 Actives: daily {dau}, weekly {wau}, monthly {mau}").format(
            dau=show("activity.dau"), wau=show("activity.wau"), mau=show("activity.mau")),
        _("💬 Speakers: {speakers}; messages: {messages}").format(
            speakers=show("activity.speakers"), messages=show("activity.messages")),
        _("🔁 Retention: day 1 {day1}, day 7 {day7}, day 30 {day30}; active after 30 days: {still}").format(
            day1=show("retention.day1"), day7=show("retention.day7"), day30=show("retention.day30"),
            still=show("retention.still_active_30d")),
        _("✅ Check-ins: {checkins}; check-in rate: {rate}").format(
            checkins=show("engagement.checkins"), rate=show("engagement.checkin_rate")),
        _("🎁 Points: issued {issued}, spent {spent}").format(
            issued=show("economy.issued"), spent=show("economy.spent")),
        _("🛒 Coupons: issued {issued}, used {used}, use rate {rate}").format(
            issued=show("commerce.coupons_issued"), used=show("commerce.coupons_used"),
            rate=show("commerce.coupon_use_rate")),
        _("🤝 Invites: rewarded {vested}, did not count {voided}").format(
            vested=show("invites.vested"), voided=show("invites.voided")),
        _("🛡 Moderation: removed {deleted}, warned {warned}, muted {muted}, banned {banned}").format(
            deleted=show("moderation.deleted"), warned=show("moderation.warned"), muted=show("moderation.muted"),
            banned=show("moderation.banned")),
    ]
    activity = kpis.activity
    if activity.top_hours:
        hours = " · ".join(f"{hour:02d}:00" for hour, _messages in activity.top_hours[:3])
        lines.append(_("⏰ Busiest hours: {hours}").format(hours=hours))
    if activity.top_posters:
        posters = " · ".join(
            f"{esc(poster.name or '#' + str(poster.user_id))} {poster.messages}" for poster in activity.top_posters[:3]
        )
        lines.append(_("🏆 Top posters: {posters}").format(posters=posters))
    return "\n".join(lines)
