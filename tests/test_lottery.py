"""Lotteries: a draw anyone can recompute, uniform picks, rerolls that never repeat a winner, entries that count
once, requirements, entry costs and refunds, prizes, claims, and erasure."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import checkin, lottery, points, shop
from models.groups import ChatSeen, UserSeen, upsert_group, upsert_member
from models.lottery import LotteryClosed, LotteryEntry, LotterySpec, LotteryWinner, NotEligible, RerollRefused

CHAT_IDS = itertools.count(-1004000000000, -1)
NOW = datetime(2026, 6, 1, 4, 0, tzinfo=UTC)


async def make_group(session: AsyncSession) -> int:
    chat = ChatSeen(next(CHAT_IDS), "Fans", "supergroup")
    group = await upsert_group(session, chat, default_timezone="Asia/Shanghai")
    assert group.id is not None
    return group.id


async def open_lottery(session: AsyncSession, group_id: int, **fields) -> lottery.Lottery:  # type: ignore[no-untyped-def]
    spec = LotterySpec(prize_text="免单一份", ends_at=NOW + timedelta(hours=1))
    for name, value in fields.items():
        setattr(spec, name, value)
    return await lottery.create_lottery(session, group_id, 900, spec, now=NOW)


def recompute(seed: str, ids_text: str, winners: int) -> list[int]:
    """The README's algorithm, written again from its description (not calling our code)."""
    ids = [int(line) for line in ids_text.split("\n")]
    assert ids == sorted(ids)
    list_hash = hashlib.sha256("\n".join(str(i) for i in ids).encode()).hexdigest()
    n, out, taken, counter = len(ids), [], set(), 0
    while len(out) < min(winners, n):
        h = int.from_bytes(hashlib.sha256(f"{seed}:{list_hash}:{counter}".encode()).digest(), "big")
        counter += 1
        if h >= 2**256 - 2**256 % n:
            continue
        if h % n not in taken:
            taken.add(h % n)
            out.append(ids[h % n])
    return out


async def test_a_draw_is_recomputed_from_its_published_values_alone(session: AsyncSession) -> None:
    group_id = await make_group(session)
    lot = await open_lottery(session, group_id, winners=3)
    assert lot.id is not None and lot.commitment == hashlib.sha256(lot.seed.encode()).hexdigest()
    entrants = [7_000_000_000 + 37 * i for i in (5, 1, 9, 3, 12, 8, 2, 11)]
    for user_id in entrants:
        await lottery.enter_lottery(session, lot.id, user_id, now=NOW)
    assert await lottery.draw_lottery(session, lot.id, now=NOW) is None  # not due yet
    result = await lottery.draw_lottery(session, lot.id, now=NOW + timedelta(hours=1))
    assert result is not None
    published = {"seed": result.lottery.seed, "commitment": result.lottery.commitment,
                 "list_hash": result.lottery.list_hash, "entrants": result.list_text}
    assert hashlib.sha256(published["seed"].encode()).hexdigest() == published["commitment"] == lot.commitment
    assert hashlib.sha256(published["entrants"].encode()).hexdigest() == published["list_hash"]
    assert [w.user_id for w in result.winners] == recompute(published["seed"], published["entrants"], 3)
    assert len({w.user_id for w in result.winners}) == 3


def test_first_picks_are_uniform_over_entrants() -> None:
    """Chi-square over 6,000 seeded draws among 12 entrants (df = 11; 31.26 is the 0.1 % critical value)."""
    ids = [1000 + 13 * i for i in range(12)]
    counts = dict.fromkeys(ids, 0)
    for i in range(6000):
        seed = hashlib.sha256(f"chi:{i}".encode()).hexdigest()
        counts[lottery.pick_winners(seed, ids, 1)[0]] += 1
    expected = 6000 / len(ids)
    chi_square = sum((count - expected) ** 2 / expected for count in counts.values())
    assert chi_square < 31.26, counts
    # Every pick position, not just the first, is uniform too: the 3rd of 3 winners among 6.
    third = dict.fromkeys(range(6), 0)
    for i in range(3000):
        seed = hashlib.sha256(f"third:{i}".encode()).hexdigest()
        third[lottery.pick_winners(seed, range(6), 3)[2]] += 1
    assert sum((c - 500) ** 2 / 500 for c in third.values()) < 20.52  # df = 5


def test_small_lists_and_the_pure_function() -> None:
    seed = "ab" * 32
    assert lottery.pick_winners(seed, [], 3) == []
    assert lottery.pick_winners(seed, [5], 3) == [5]
    assert sorted(lottery.pick_winners(seed, [3, 1, 2], 5)) == [1, 2, 3]
    assert lottery.pick_winners(seed.upper(), [3, 1, 2], 2) == lottery.pick_winners(seed, [2, 3, 1, 1], 2)
    assert lottery.parse_entrant_ids("1\n2, 3 4\n") == [1, 2, 3, 4]


async def test_rerolls_continue_the_sequence_and_never_repeat_a_winner(session: AsyncSession) -> None:
    group_id = await make_group(session)
    lot = await open_lottery(session, group_id, winners=2)
    assert lot.id is not None
    ids = list(range(501, 507))
    for user_id in ids:
        await lottery.enter_lottery(session, lot.id, user_id, now=NOW)
    result = await lottery.draw_lottery(session, lot.id, now=NOW, force=True)
    assert result is not None and [w.status for w in result.winners] == ["pending", "pending"]
    seen = [w.user_id for w in result.winners]
    rerolled = await lottery.reroll(session, group_id, lot.id, 1, actor_id=900, now=NOW)
    assert rerolled.replaced.status == "rerolled" and rerolled.new is not None
    seen.append(rerolled.new.user_id)
    with pytest.raises(RerollRefused):
        await lottery.reroll(session, group_id, lot.id, 1, now=NOW)  # pick 1 was already replaced
    expired = await lottery.expire_claims(session, now=NOW + timedelta(hours=25))
    assert len(expired) == 2  # picks 2 and 3 did not claim within 24 h
    seen += [r.new.user_id for r in expired if r.new is not None]
    while True:
        views = await lottery.winners_of(session, lot.id)
        active = [v for v in views if v.status == "pending"]
        if not active:
            break
        again = await lottery.reroll(session, group_id, lot.id, active[0].pick, now=NOW + timedelta(hours=25))
        if again.new is None:
            break
        seen.append(again.new.user_id)
    assert sorted(seen) == ids and len(set(seen)) == len(seen)  # everyone once, nobody twice
    assert seen == recompute(result.lottery.seed, result.list_text, len(ids))  # the documented order


async def test_a_redelivered_entry_counts_once(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session:
        group_id = await make_group(session)
        lot = await open_lottery(session, group_id, entry_cost=5)
        await points.award(session, group_id, 77, 50, "admin_give", "fund-77")
    assert lot.id is not None

    async def enter() -> lottery.EntryResult:
        async with sessionmaker() as own:
            return await lottery.enter_lottery(own, lot.id, 77, now=NOW)  # type: ignore[arg-type]

    results = await asyncio.gather(enter(), enter(), enter())
    assert sorted(r.entered for r in results) == [False, False, True]
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(LotteryEntry)) == 1
        assert (await lottery.get_lottery(session, group_id, lot.id)).entrant_count == 1
        assert (await points.get_balance(session, group_id, 77)).balance == 45


async def test_the_nth_entry_closes_it_and_the_draw_happens_once(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session:
        group_id = await make_group(session)
        lid = (await open_lottery(session, group_id, ends_at=None, max_entrants=3)).id
        assert lid is not None
        results = [await lottery.enter_lottery(session, lid, uid, now=NOW) for uid in (11, 12, 13)]
        assert [r.full for r in results] == [False, False, True]
        with pytest.raises(LotteryClosed):
            await lottery.enter_lottery(session, lid, 14, now=NOW)

    async def draw() -> lottery.DrawResult | None:
        async with sessionmaker() as own:
            return await lottery.draw_lottery(own, lid, now=NOW)

    drawn = [r for r in await asyncio.gather(draw(), draw()) if r is not None]
    assert len(drawn) == 1 and drawn[0].lottery.status == "drawn" and len(drawn[0].winners) == 1
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(LotteryWinner)) == 1
        with pytest.raises(LotteryClosed):
            await lottery.enter_lottery(session, lid, 15, now=NOW)


async def test_requirements_say_why_a_member_cannot_enter(session: AsyncSession) -> None:
    group_id = await make_group(session)
    tiered = (await open_lottery(session, group_id, min_tier="silver")).id
    aged = (await open_lottery(session, group_id, min_member_hours=24, ends_at=utcnow_plus(48))).id
    daily = (await open_lottery(session, group_id, require_checkin=True, min_streak=2)).id
    assert tiered is not None and aged is not None and daily is not None
    with pytest.raises(NotEligible) as refused:
        await lottery.enter_lottery(session, tiered, 21, now=NOW)
    assert (refused.value.reason, refused.value.required, refused.value.have) == ("tier", "silver", "normal")
    await points.award(session, group_id, 21, 600, "admin_give", "fund-21")
    assert (await lottery.enter_lottery(session, tiered, 21, now=NOW)).entered

    group_row = await points.load_group(session, group_id)
    await upsert_member(session, group_row, UserSeen(22, "New"))
    with pytest.raises(NotEligible) as young:
        await lottery.enter_lottery(session, aged, 22, now=utcnow_plus(1))
    assert young.value.reason == "member_hours" and young.value.have == 1
    assert (await lottery.enter_lottery(session, aged, 22, now=utcnow_plus(25))).entered

    with pytest.raises(NotEligible) as not_today:
        await lottery.enter_lottery(session, daily, 23, now=NOW)
    assert not_today.value.reason == "checkin"
    await checkin.check_in(session, group_id, 23, now=NOW)
    with pytest.raises(NotEligible) as short:
        await lottery.enter_lottery(session, daily, 23, now=NOW)
    assert (short.value.reason, short.value.required, short.value.have) == ("streak", 2, 1)
    assert await session.scalar(select(func.count()).select_from(LotteryEntry)) == 2


def utcnow_plus(hours: int) -> datetime:
    return datetime.now(UTC) + timedelta(hours=hours)


async def test_entry_costs_are_spent_and_refunded_on_cancel(session: AsyncSession) -> None:
    group_id = await make_group(session)
    lid = (await open_lottery(session, group_id, entry_cost=10)).id
    assert lid is not None
    with pytest.raises(points.InsufficientPoints):
        await lottery.enter_lottery(session, lid, 31, now=NOW)
    assert await session.scalar(select(func.count()).select_from(LotteryEntry)) == 0
    for uid in (31, 32):
        await points.award(session, group_id, uid, 25, "admin_give", f"fund-{uid}")
        await lottery.enter_lottery(session, lid, uid, now=NOW)
    assert (await points.get_balance(session, group_id, 31)).balance == 15
    cancelled, refunded = await lottery.cancel_lottery(session, group_id, lid, 900, now=NOW)
    assert cancelled.status == "cancelled" and refunded == 2
    assert (await points.get_balance(session, group_id, 31)).balance == 25
    with pytest.raises(LotteryClosed):
        await lottery.cancel_lottery(session, group_id, lid, 900, now=NOW)
    with pytest.raises(LotteryClosed):
        await lottery.enter_lottery(session, lid, 33, now=NOW)
    assert await lottery.draw_lottery(session, lid, now=NOW, force=True) is None


async def test_points_and_coupon_prizes_are_delivered_text_prizes_are_claimed(session: AsyncSession) -> None:
    group_id = await make_group(session)
    pts = await open_lottery(session, group_id, prize_kind="points", prize_points=88, prize_text="", winners=2)
    item = await shop.add_item(session, group_id, "免单券", 500, 1)
    cpn = await open_lottery(session, group_id, prize_kind="coupon", prize_item_id=item.id, prize_text="", winners=2)
    txt = await open_lottery(session, group_id, claim_hours=2)
    for lot in (pts, cpn, txt):
        assert lot.id is not None
        for uid in (41, 42, 43):
            await lottery.enter_lottery(session, lot.id, uid, now=NOW)
    drawn = await lottery.draw_lottery(session, pts.id, now=NOW, force=True)  # type: ignore[arg-type]
    assert drawn is not None and {w.status for w in drawn.winners} == {"delivered"}
    assert sorted([(await points.get_balance(session, group_id, u)).balance for u in (41, 42, 43)]) == [0, 88, 88]

    drawn = await lottery.draw_lottery(session, cpn.id, now=NOW, force=True)  # type: ignore[arg-type]
    assert drawn is not None and [w.status for w in drawn.winners] == ["delivered", "undelivered"]  # stock was 1
    coupons = await shop.my_coupons(session, group_id, drawn.winners[0].user_id)
    assert len(coupons) == 1 and coupons[0].cost == 0 and drawn.winners[0].coupon_code == coupons[0].code
    assert (await shop.get_item(session, group_id, item.id)).stock == 0  # type: ignore[arg-type]

    drawn = await lottery.draw_lottery(session, txt.id, now=NOW, force=True)  # type: ignore[arg-type]
    assert drawn is not None
    winner = drawn.winners[0].user_id
    loser = next(u for u in (41, 42, 43) if u != winner)
    assert await lottery.claim_prize(session, txt.id, loser, now=NOW) == "not_winner"  # type: ignore[arg-type]
    assert await lottery.claim_prize(session, txt.id, winner, now=NOW) == "claimed"  # type: ignore[arg-type]
    assert await lottery.claim_prize(session, txt.id, winner, now=NOW) == "already"  # type: ignore[arg-type]
    assert await lottery.expire_claims(session, now=NOW + timedelta(hours=3)) == []


async def test_admin_reroll_of_a_points_prize_takes_the_points_back(session: AsyncSession) -> None:
    group_id = await make_group(session)
    lot = await open_lottery(session, group_id, prize_kind="points", prize_points=50, prize_text="")
    assert lot.id is not None
    for uid in (51, 52):
        await lottery.enter_lottery(session, lot.id, uid, now=NOW)
    drawn = await lottery.draw_lottery(session, lot.id, now=NOW, force=True)
    assert drawn is not None
    first = drawn.winners[0].user_id
    result = await lottery.reroll(session, group_id, lot.id, 1, actor_id=900, now=NOW)
    assert result.new is not None and result.new.user_id != first
    assert (await points.get_balance(session, group_id, first)).balance == 0
    assert (await points.get_balance(session, group_id, result.new.user_id)).balance == 50
    last = await lottery.reroll(session, group_id, lot.id, 2, actor_id=900, now=NOW)
    assert last.new is None  # nobody left who has not won


async def test_erasing_a_member_keeps_positions_and_counts(session: AsyncSession) -> None:
    group_id = await make_group(session)
    done = await open_lottery(session, group_id, winners=3)
    running = await open_lottery(session, group_id)
    for uid in (61, 62, 63):
        await lottery.enter_lottery(session, done.id, uid, now=NOW)  # type: ignore[arg-type]
        await lottery.enter_lottery(session, running.id, uid, now=NOW)  # type: ignore[arg-type]
    drawn = await lottery.draw_lottery(session, done.id, now=NOW, force=True)  # type: ignore[arg-type]
    assert drawn is not None
    exported = await lottery.export_user_data(session, 62)
    assert len(exported["entries"]) == 2 and len(exported["wins"]) == 1
    await lottery.erase_user_data(session, 62, pseudonym=-(2**62) - 5)
    assert await lottery.export_user_data(session, 62) == {"entries": [], "wins": [], "created": []}
    text = await lottery.entrant_list(session, done.id)  # type: ignore[arg-type]
    assert text is not None and text.split("\n") == ["61", str(-(2**62) - 5), "63"]
    assert (await lottery.get_lottery(session, group_id, running.id)).entrant_count == 2  # type: ignore[arg-type]
    assert (await lottery.get_lottery(session, group_id, done.id)).entrant_count == 3  # type: ignore[arg-type]


def test_verify_lottery_command_recomputes_and_checks_the_commitment(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from bot.cli import main

    seed = hashlib.sha256(b"published").hexdigest()
    ids = [40, 10, 30, 20, 50]
    listing = tmp_path / "entrants.txt"
    listing.write_text("\n".join(map(str, sorted(ids))))
    commitment = hashlib.sha256(seed.encode()).hexdigest()
    assert main(["verify-lottery", "--seed", seed, "--entrants", str(listing), "--winners", "2",
                 "--commitment", commitment, "--picks", "3"]) == 0
    out = capsys.readouterr().out
    expected = recompute(seed, "\n".join(map(str, sorted(ids))), 3)
    assert "commitment check: OK" in out
    assert [int(line.split()[1]) for line in out.splitlines() if line[:2] in ("1.", "2.", "3.")] == expected
    assert main(["verify-lottery", "--seed", seed, "--ids", "1,2", "--winners", "1", "--commitment", "0" * 64]) == 1
    assert main(["verify-lottery", "--seed", "xyz", "--ids", "1", "--winners", "1"]) == 2
