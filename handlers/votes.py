"""Votes on group-buy picks (投票选品): /vote new (admins), one button per candidate, a live tally edited in place
(coalesced), /vote close, the winner announced once, and an admin button that opens a group buy for the winner.

A press is answered privately (an alert); the vote's post is the only message that changes, at most once every
EDIT_INTERVAL seconds (a live post, handlers/live_posts.py). The deadline is kept by scheduler/votes.py.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import timedelta

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message, ReplyParameters
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __
from aiogram.utils.keyboard import InlineKeyboardBuilder
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.common import CommandInfo, esc, tier_label
from handlers.kit import (
    ALERT_MAX,
    DURATION_FORMS,
    RowId,
    UsageError,
    clip,
    fold,
    local_time,
    money,
    parse_duration,
    parse_money,
    parse_row_id,
    split_parts,
    whole_number,
)
from handlers.live_posts import LivePost, LivePosts, PostKind, group_post
from handlers.roles import require_admin
from handlers.switchboard import IN_GROUP, IN_PRIVATE, Blueprint, Keywords
from models import points, votes
from models.db import utcnow
from models.groupbuy import format_cents
from models.groups import Group
from models.points import DEFAULT_TIER_NAMES, PointsRules

log = logging.getLogger("qunbot.votes")

router = Blueprint("votes")

COMMANDS = [
    CommandInfo("vote", __("Votes on the next group-buy pick (admins: /vote new …; /vote help)"), "member"),
]

KEYWORDS = {"投票", "选品投票"}
EDIT_INTERVAL = 5.0  # seconds between two edits of one post (Telegram: 20 messages a minute per group)
BAR_WIDTH = 10
# Defaults of the group buy the winner's button opens (the admin may instead send /groupbuy new with any terms).
WINNER_MIN_PEOPLE = 3
WINNER_TOTAL = 100
WINNER_LIMIT = 5
WINNER_HOURS = 48

_OPTION = re.compile(r"^([a-z_]+)=(\S+)$", re.IGNORECASE)


class VotePick(CallbackData, prefix="vp"):
    vote_id: RowId
    option_id: RowId


class VoteGroupBuy(CallbackData, prefix="vgb"):
    vote_id: RowId


# The vote's post is a live post (handlers/live_posts.py), shared in kind with group buys: edits coalesced.
POST = PostKind("vote", EDIT_INTERVAL)


# -- shared small helpers ------------------------------------------------------------------------------------------


def find_tier(raw: str, rules: PointsRules) -> str | None:
    """A tier key from its key, custom name or default name (银卡, Silver …)."""
    value = fold(raw)
    for tier in rules.tiers:
        names = {tier.key, tier.name or "", DEFAULT_TIER_NAMES.get(tier.key, ""), tier_label(rules, tier.key)}
        if value in {fold(name) for name in names if name}:
            return tier.key
    return None


# -- rendering -------------------------------------------------------------------------------------------------


def option_label(option: votes.VoteOption) -> str:
    name = esc(option.name)
    if option.link:
        name = f'<a href="{esc(option.link)}">{name}</a>'
    return _("{name} {price}").format(name=name, price=money(option.price_cents))


def bar(share: float) -> str:
    filled = round(share * BAR_WIDTH)
    return "▓" * filled + "░" * (BAR_WIDTH - filled)


def rules_line(vote: votes.Vote, rules: PointsRules) -> str | None:
    parts = []
    if vote.min_hours:
        parts.append(_("in the group for {hours} h+").format(hours=vote.min_hours))
    if vote.min_tier:
        parts.append(_("{tier} and above").format(tier=esc(tier_label(rules, vote.min_tier))))
    if vote.weights:
        weights = ", ".join(f"{esc(tier_label(rules, key))} ×{weight}" for key, weight in vote.weights.items())
        parts.append(_("weights: {weights}").format(weights=weights))
    if not parts:
        return None
    return _("Who votes: {rules}").format(rules="; ".join(parts))


def render_vote(result: votes.Tally, rules: PointsRules, zone: str) -> tuple[str, InlineKeyboardMarkup | None]:
    """The vote's post: candidates with their tally, and one button per candidate while it is open."""
    vote = result.vote
    closed = vote.status != "open"
    weighted = bool(vote.weights)
    total = sum(entry.total for entry in result.options)
    head = _("🗳 Vote #{id}: <b>{title}</b>").format(id=vote.id, title=esc(vote.title))
    if closed:
        head += " · " + _("closed")
    lines = [head, ""]
    for entry in result.options:
        share = entry.total / total if total else 0.0
        if weighted:
            count = _("score {score} · voters {voters}").format(score=entry.total, voters=entry.voters)
        else:
            count = _("votes: {votes}").format(votes=entry.voters)
        lines.append(f"{entry.option.position}. {option_label(entry.option)} — {count}")
        lines.append(f"    {bar(share)} {share:.0%}")
    lines.append("")
    lines.append(_("Voters: {voters}").format(voters=result.voters))
    extra = rules_line(vote, rules)
    if extra:
        lines.append(extra)
    if closed:
        if result.winner is not None:
            lines.append(_("🏆 Winner: {name}").format(name=option_label(result.winner.option)))
        else:
            lines.append(_("No votes were cast."))
        return "\n".join(lines), None
    lines.append(_("Closes {time}. Tap a candidate to vote; tap another to change your vote.").format(
        time=local_time(vote.closes_at, zone)))
    keyboard = InlineKeyboardBuilder()
    for entry in result.options:
        assert entry.option.id is not None and vote.id is not None
        keyboard.button(
            text=f"{entry.option.position}. {clip(entry.option.name, 24)} · {entry.voters}",
            callback_data=VotePick(vote_id=vote.id, option_id=entry.option.id),
        )
    keyboard.adjust(2 if len(result.options) > 4 else 1)
    return "\n".join(lines), keyboard.as_markup()


def winner_command(option: votes.VoteOption) -> str:
    """A /groupbuy new command prefilled with the winner, for admins who want other terms than the defaults."""
    price = format_cents(option.price_cents)
    return (f"/groupbuy new {option.name} | {price} | {price} | {WINNER_MIN_PEOPLE} | {WINNER_TOTAL} | "
            f"{WINNER_LIMIT} | {WINNER_HOURS}h")


def render_announcement(result: votes.Tally) -> tuple[str, InlineKeyboardMarkup | None]:
    """The message that announces the result, with the admins' button to open a group buy for the winner."""
    vote = result.vote
    winner = result.winner
    if winner is None:
        return _("🗳 Vote closed: <b>{title}</b>\nNo votes were cast, so there is no winner.").format(
            title=esc(vote.title)), None
    lines = [
        _("🏆 Vote closed: <b>{title}</b>").format(title=esc(vote.title)),
        _("Winner: {name} — votes: {votes}, voters: {voters}.").format(
            name=option_label(winner.option), votes=winner.total, voters=winner.voters),
    ]
    if result.tied:
        lines.append(_("It was a tie on votes: the tie rule (more voters, then the candidate listed first) decided."))
    lines.append(
        _("Admins: the button opens a group buy for the winner ({people} people, {total} units, {limit} per member, "
          "{hours} h). For other terms, send:").format(
            people=WINNER_MIN_PEOPLE, total=WINNER_TOTAL, limit=WINNER_LIMIT, hours=WINNER_HOURS)
    )
    lines.append(f"<code>{esc(winner_command(winner.option))}</code>")
    keyboard = InlineKeyboardBuilder()
    assert vote.id is not None
    keyboard.button(text=_("🛒 Open a group buy for {name}").format(name=clip(winner.option.name, 24)),
                    callback_data=VoteGroupBuy(vote_id=vote.id))
    return "\n".join(lines), keyboard.as_markup()


def vote_post(bot: Bot, vote_id: int, group_id: int, zone: str, locale: str | None) -> LivePost:
    """The vote's post, its tally kept up to date."""

    async def show(session: AsyncSession) -> tuple[int | None, str, InlineKeyboardMarkup | None] | None:
        result = await votes.tally(session, vote_id)
        if result.vote.status != "open":
            return None  # announce_closing showed the final tally
        return (result.vote.message_id, *render_vote(result, await points.get_rules(session, group_id), zone))

    async def store(session: AsyncSession, message_id: int) -> None:
        await votes.set_message(session, vote_id, message_id)

    return group_post(bot, ("vote", vote_id), POST, group_id, locale, show, store)


async def announce_closing(bot: Bot, session: AsyncSession, chat_id: int, zone: str, result: votes.Tally) -> None:
    """Show the final tally on the vote's post and announce the winner (once: only the closer calls this)."""
    vote = result.vote
    rules = await points.get_rules(session, vote.group_id)
    text, _markup = render_vote(result, rules, zone)
    if vote.message_id is not None:
        try:
            await bot.edit_message_text(text=text, chat_id=chat_id, message_id=vote.message_id, reply_markup=None)
        except TelegramBadRequest as error:
            log.info("vote %s post not edited: %s", vote.id, error)
    announcement, keyboard = render_announcement(result)
    reply = (ReplyParameters(message_id=vote.message_id, allow_sending_without_reply=True)
             if vote.message_id is not None else None)
    await bot.send_message(chat_id, announcement, reply_markup=keyboard, reply_parameters=reply)


# -- /vote -----------------------------------------------------------------------------------------------------


def usage(rules: PointsRules) -> str:
    return _(
        "Usage: /vote new title | duration | candidate | candidate … [| options]\n"
        "A candidate: name price [link], e.g. 面膜 39.9 https://shop.example/1 (2 to 10 candidates)\n"
        "Duration: {forms} (1 minute to 30 days)\n"
        "Options: min_hours=24 (in the group at least 24 hours), min_tier=silver, weights=silver:2,gold:3\n"
        "Tiers: {tiers}. Send the command as a photo's caption to show the photo with the vote.\n"
        "Example: /vote new 下期团购选品 | 2d | 面膜 39.9 | 精华 129 | 口红 89\n"
        "/vote close ID — close now and announce the winner; /vote list — open votes\n"
        "Ties: most votes wins, then most voters, then the candidate listed first."
    ).format(tiers=", ".join(tier.key for tier in rules.tiers), forms=DURATION_FORMS)


@dataclass
class NewVote:
    title: str
    duration: timedelta
    options: list[votes.NewOption]
    min_hours: int = 0
    min_tier: str | None = None
    weights: dict[str, int] | None = None


def parse_candidate(raw: str) -> votes.NewOption:
    words = raw.split()
    link = None
    if words and re.match(r"^https?://\S+$", words[-1], re.IGNORECASE):
        link = words.pop()
    if len(words) < 2:
        raise UsageError(_("“{raw}” needs a name and a price, e.g. 面膜 39.9").format(raw=esc(clip(raw, 40))))
    price = parse_money(words[-1])
    if price is None:
        raise UsageError(_("“{raw}” is not a price (e.g. 39.9).").format(raw=esc(clip(words[-1], 20))))
    name = " ".join(words[:-1])
    if len(name) > votes.NAME_MAX:
        raise UsageError(_("A candidate's name is at most {limit} characters.").format(limit=votes.NAME_MAX))
    return votes.NewOption(name, price, link)


def parse_options(raw: str, rules: PointsRules, new: NewVote) -> None:
    for word in raw.split():
        match = _OPTION.match(word)
        assert match is not None
        key, value = match[1].lower(), match[2]
        if key == "min_hours":
            hours = whole_number(value)
            if hours is None or hours > 24 * 365:
                raise UsageError(_("min_hours must be a whole number of hours."))
            new.min_hours = hours
        elif key == "min_tier":
            tier = find_tier(value, rules)
            if tier is None:
                raise UsageError(_("“{raw}” is not a tier of this group.").format(raw=esc(clip(value, 20))))
            new.min_tier = tier
        elif key == "weights":
            weights: dict[str, int] = {}
            for pair in value.replace("，", ",").split(","):
                tier_raw, _sep, weight = pair.partition(":")
                tier = find_tier(tier_raw, rules)
                amount = whole_number(weight)
                if tier is None or amount is None or not 1 <= amount <= votes.MAX_WEIGHT:
                    raise UsageError(_("Weights look like silver:2,gold:3 (tiers of this group, 1 to 100)."))
                weights[tier] = amount
            new.weights = weights
        else:
            raise UsageError(_("I don't know the option “{option}”.").format(option=esc(clip(key, 20))))


def parse_new_vote(args: str, rules: PointsRules) -> NewVote:
    parts = split_parts(args)
    if len(parts) < 2 or not parts[0]:
        raise UsageError(_("Give a title, a duration and at least two candidates."))
    title = " ".join(parts[0].split())
    if len(title) > votes.TITLE_MAX:
        raise UsageError(_("The title is at most {limit} characters.").format(limit=votes.TITLE_MAX))
    seconds = parse_duration(parts[1])
    if seconds is None:
        raise UsageError(_("“{raw}” is not a duration (e.g. {forms}).").format(
            raw=esc(clip(parts[1], 20)), forms=DURATION_FORMS))
    duration = timedelta(seconds=seconds)
    if not votes.MIN_DURATION <= duration <= votes.MAX_DURATION:
        raise UsageError(_("A vote lasts from 1 minute to 30 days."))
    new = NewVote(title, duration, [])
    for part in parts[2:]:
        if not part:
            continue
        if all(_OPTION.match(word) for word in part.split()):
            parse_options(part, rules, new)
        else:
            new.options.append(parse_candidate(part))
    if not votes.MIN_OPTIONS <= len(new.options) <= votes.MAX_OPTIONS:
        raise UsageError(_("A vote has 2 to 10 candidates; you gave {count}.").format(count=len(new.options)))
    return new


def group_id(group: Group) -> int:
    assert group.id is not None
    return group.id


@router.message(Command("vote"), IN_PRIVATE)
async def vote_in_private(message: Message) -> None:
    await message.answer(_("Votes belong to a group: send /vote in your group."))


@router.message(IN_GROUP, Keywords(KEYWORDS))
async def vote_keyword(message: Message, session: AsyncSession, group: Group) -> None:
    await list_votes(message, session, group)


@router.message(Command("vote"), IN_GROUP)
async def vote_command(message: Message, command: CommandObject, bot: Bot, session: AsyncSession,
                       group: Group) -> None:
    args = (command.args or "").strip()
    sub, _sep, rest = args.partition(" ")
    sub = sub.lower()
    gid = group_id(group)
    zone = group.timezone
    rules = await points.get_rules(session, gid)
    if sub == "new":
        if not await require_admin(bot, message):
            return
        try:
            await new_vote(message, rest, bot, session, gid, zone, rules)
        except UsageError as error:
            await message.reply(f"{error}\n\n{esc(usage(rules))}")
    elif sub == "close":
        if not await require_admin(bot, message):
            return
        await close_command(message, rest, bot, session, gid, zone, rules)
    elif sub == "list":
        await list_votes(message, session, group)
    else:
        await message.reply(esc(usage(rules)))


async def new_vote(message: Message, rest: str, bot: Bot, session: AsyncSession, gid: int, zone: str,
                   rules: PointsRules) -> None:
    if not rest.strip():
        raise UsageError(_("Describe the vote."))
    new = parse_new_vote(rest, rules)
    now = utcnow()
    photo_message_id = message.message_id if message.photo else None
    creator = message.from_user.id if message.from_user is not None and message.sender_chat is None else None
    vote = await votes.create_vote(
        session, gid, new.title, new.options, now + new.duration, created_by=creator, min_hours=new.min_hours,
        min_tier=new.min_tier, weights=new.weights, photo_message_id=photo_message_id, now=now,
    )  # fmt: skip
    assert vote.id is not None
    text, keyboard = render_vote(await votes.tally(session, vote.id), rules, zone)
    # With a photo, the vote replies to it, so the photo shows right above the candidates.
    reply = ReplyParameters(message_id=message.message_id, allow_sending_without_reply=True) if message.photo else None
    sent = await bot.send_message(message.chat.id, text, reply_markup=keyboard, reply_parameters=reply)
    await votes.set_message(session, vote.id, sent.message_id)


async def close_command(message: Message, rest: str, bot: Bot, session: AsyncSession, gid: int, zone: str,
                        rules: PointsRules) -> None:
    vote_id = parse_row_id(rest)
    if vote_id is None:
        await message.reply(_("Usage: /vote close ID (the # number on the vote; /vote list shows them)"))
        return
    raw = str(vote_id)
    closer = message.from_user.id if message.from_user is not None and message.sender_chat is None else None
    try:
        result = await votes.close_vote(session, vote_id, group_id=gid, closed_by=closer)
    except votes.VoteNotFound:
        await message.reply(_("There is no vote #{id} in this group.").format(id=raw))
        return
    if result is None:
        await message.reply(_("Vote #{id} is already closed.").format(id=raw))
        return
    await announce_closing(bot, session, message.chat.id, zone, result)


async def list_votes(message: Message, session: AsyncSession, group: Group) -> None:
    gid, zone = group_id(group), group.timezone
    open_votes = await votes.open_votes(session, gid)
    if not open_votes:
        await message.reply(_("No vote is open. Admins start one with /vote new (see /vote help)."))
        return
    lines = [_("<b>Open votes</b>")]
    for vote in open_votes[:20]:
        assert vote.id is not None
        result = await votes.tally(session, vote.id)
        lines.append(_("#{id} {title} — {voters} voted, closes {time}").format(
            id=vote.id, title=esc(vote.title), voters=result.voters, time=local_time(vote.closes_at, zone)))
    lines.append(_("Vote with the buttons on each vote's post."))
    await message.reply("\n".join(lines))


# -- presses ---------------------------------------------------------------------------------------------------


@router.callback_query(VotePick.filter(), IN_GROUP)
async def pick(query: CallbackQuery, callback_data: VotePick, bot: Bot, session: AsyncSession, group: Group,
               live_posts: LivePosts, i18n: I18n) -> None:
    gid, zone = group_id(group), group.timezone
    try:
        ballot = await votes.cast_ballot(session, gid, callback_data.vote_id, query.from_user.id,
                                         callback_data.option_id)
    except (votes.VoteClosed, votes.VoteNotFound, votes.OptionNotFound):
        await query.answer(_("This vote is closed."), show_alert=True)
        return
    except votes.NotEligible as error:
        if error.reason == "too_new":
            text = _("Only members who have been in the group for {hours} hours can vote here.").format(
                hours=error.hours_needed)
        else:
            rules = await points.get_rules(session, gid)
            text = _("This vote is for {required} members and above; your tier is {tier}.").format(
                required=tier_label(rules, error.required), tier=tier_label(rules, error.tier))
        await query.answer(text, show_alert=True)
        return
    name = clip(ballot.option.name, 40)
    if ballot.status == "cast":
        text = _("✅ You voted for {name}. Tap another candidate to change your vote.").format(name=name)
    elif ballot.status == "changed":
        text = _("🔁 Your vote is now for {name}.").format(name=name)
    else:
        text = _("You already voted for {name}.").format(name=name)
    if ballot.weight > 1:
        text += "\n" + _("Your vote counts ×{weight}.").format(weight=ballot.weight)
    await query.answer(clip(text, ALERT_MAX), show_alert=True)
    if ballot.status != "same":
        live_posts.request(bot, vote_post(bot, callback_data.vote_id, gid, zone, i18n.current_locale))
