"""A hand-built `Kpis` for the /stats rendering tests: every section filled, some figures undefined (None), so
charts, summaries and exports are exercised without the analytics queries."""

from __future__ import annotations

from datetime import timedelta

from models.analytics import (
    ActivityKpis,
    Cohort,
    CommerceKpis,
    EconomyKpis,
    EngagementKpis,
    Figure,
    InviteKpis,
    Kpis,
    MembersKpis,
    ModerationKpis,
    Period,
    Poster,
    RetentionKpis,
)


def sample_kpis(period: Period | None = None) -> Kpis:
    period = period or Period.of_month(2026, 11, "Asia/Shanghai")
    days = period.each_day()
    heatmap = [[(weekday + 1) * (hour % 12 + 1) for hour in range(24)] for weekday in range(7)]
    first_monday = period.start - timedelta(days=period.start.weekday())
    cohorts = [
        Cohort(first_monday + timedelta(weeks=week), 10 + week, {1: 0.5 - week / 20, 7: 0.3, 30: None if week else 0.3})
        for week in range(4)
    ]
    return Kpis(
        period=period, previous=period.previous(), group_ids=(1,),
        members=MembersKpis(
            total=Figure(1200, 1100), joined=Figure(150, 120), left=Figure(50, 40), net_growth=Figure(100, 80),
            joined_by_source={"member_link": Figure(90, 60), "public": Figure(60, 60)},
            languages={"zh-hans": Figure(800, 700), "": Figure(10, 12)},
        ),
        activity=ActivityKpis(
            dau=Figure(85.5, 80.0), wau=Figure(300, 280), mau=Figure(600, 650), actives=Figure(610, 640),
            speakers=Figure(240, 200), messages=Figure(9000, 6000),
            messages_by_kind={"text": Figure(8000, 5000), "photo": Figure(1000, 1000)},
            heatmap=heatmap, heatmap_speakers=heatmap, top_hours=[(21, 900), (20, 800), (12, 500)],
            top_weekdays=[(5, 2000), (6, 1800)],
            daily=[(day, 80 + index % 7, 300 + 10 * index) for index, day in enumerate(days)],
            top_posters=[Poster(1, "美玲 <b>", 300), Poster(2, "Bob", 250), Poster(3, "", 100)],
        ),
        retention=RetentionKpis(cohorts=cohorts, day1=Figure(0.4, 0.35), day7=Figure(0.3, 0.32),
                                day30=Figure(None, 0.2), still_active_30d=Figure(0.55, 0.5)),
        engagement=EngagementKpis(checkins=Figure(1500, 1400), checkin_rate=Figure(0.25, 0.2),
                                  streaks={"1": 50, "2-6": 30, "7-29": 10, "30+": 2},
                                  topic_replies=Figure(120, 90), showcases=Figure(12, 3)),
        economy=EconomyKpis(issued=Figure(30000, 25000), spent=Figure(8000, 9000),
                            issued_by_rule={"checkin": Figure(15000, 14000)}, tiers={"normal": 1000, "gold": 20}),
        commerce=CommerceKpis(
            coupons_issued=Figure(40, 20), coupons_used=Figure(30, 10), coupons_expired=Figure(2, 1),
            coupon_use_rate=Figure(0.75, 0.5), coupons_by_item={"满100减20优惠券": (40, 30)},
            vote_participation=Figure(0.4, None), groupbuy_joins=Figure(25, 0), groupbuy_success_rate=Figure(1.0, None),
            groupbuy_units=Figure(60, 0), flash_sell_through=Figure(0.9, 0.8), flash_seconds_to_sell_out=Figure(42, 60),
            flash_presses_per_order=Figure(None, None), lottery_entrants=Figure(80, 70),
        ),
        invites=InviteKpis(joined=Figure(90, 60), vested=Figure(70, 50), voided=Figure(5, 4),
                           void_rate=Figure(5 / 75, 4 / 54), top_inviters=[Poster(1, "美玲", 12)]),
        moderation=ModerationKpis(deleted=Figure(20, 30), warned=Figure(5, 4), muted=Figure(2, 2),
                                  banned=Figure(1, 0), reversals=Figure(0, 0),
                                  by_rule={"links": Figure(12, 20)}, by_admin={"auto": Figure(18, 25)}),
    )
