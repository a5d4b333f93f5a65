"""Order in the group: the rules verdict (flooding, links, traffic diversion, banned words, new members, locks;
edited messages too), the warning ladder, manual actions (/warn /unwarn /warns /mute /unmute /kick /ban /unban),
/report with buttons for the admins, /rules and /setrules, /modset, /setlog and /modlog.

The per-message path is cheap: the group's rules are compiled once per process and re-compiled when the group
row changes (its updated_at), flood counters live in memory, and a clean message costs no database write (the
group-message pipeline, bot/pipeline.py, asks check_message first and passes a message that stays on to its
observers). Owners, admins, anonymous admins and bot moderators are exempt; a channel's automatic forward into
its discussion group is never touched.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, ChatPermissions, Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __
from aiogram.utils.keyboard import InlineKeyboardBuilder
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.common import GROUP_ANONYMOUS_BOT, TELEGRAM_SERVICE_USER, CommandInfo, esc
from handlers.kit import DURATION_FORMS, INT64_MAX, MONTH_DAY_TIME, TelegramId, UsageError, local_time, whole_number
from handlers.roles import (
    Target,
    TargetWords,
    find_target,
    is_chat_admin,
    is_chat_owner,
    notify_admins,
    require_moderator,
    split_target,
)
from handlers.switchboard import IN_GROUP, Blueprint
from models import boards, groups, moderation, roles, spam_samples
from models import moderation_policy as policy
from models.db import utcnow
from models.groups import Group, MemberSnapshot
from models.moderation import ModerationRules, Step, format_duration, parse_duration
from models.moderation_policy import CompiledRules, MessageFacts, Pace, Violation
from models.spam_classifier import SpamModel

if TYPE_CHECKING:
    from bot.runtime import Runtime

if TYPE_CHECKING:
    from bot.shared_limits import SharedPaces

log = logging.getLogger("qunbot.moderation")

router = Blueprint("moderation")

COMMANDS = [
    CommandInfo("rules", __("The group's rules"), "member"),
    CommandInfo("report", __("Reply to a message with /report to alert the admins"), "member"),
    CommandInfo("warns", __("Your warnings (moderators: reply, @user or id)"), "member"),
    CommandInfo("warn", __("Warn a member: reply, @user or id, then a reason"), "admin"),
    CommandInfo("unwarn", __("Remove a member's latest warning"), "admin"),
    CommandInfo("mute", __("Mute: /mute (reply, @user or id) [10m|2h|1d] [reason]"), "admin"),
    CommandInfo("unmute", __("Let a muted member speak again"), "admin"),
    CommandInfo("kick", __("Remove a member (they may rejoin)"), "admin"),
    CommandInfo("ban", __("Ban: /ban (reply, @user or id) [duration] [reason]"), "admin"),
    CommandInfo("unban", __("Lift a ban"), "admin"),
    CommandInfo("setrules", __("Set the text /rules shows"), "admin"),
    CommandInfo("modset", __("Moderation rules: /modset, /modset preset strict, /modset knob value"), "admin"),
    CommandInfo("setlog", __("Send moderation alerts to a log chat: /setlog chat_id | off"), "admin"),
    CommandInfo("modlog", __("Recent moderation actions"), "admin"),
    CommandInfo("spam", __("Reply with /spam: remove the ad and learn from it"), "admin"),
    CommandInfo("spamsamples", __("Confirmed spam samples: /spamsamples, /spamsamples clear (owner)"), "admin"),
]

DEFAULT_MUTE = 3600
NOTICES_PER_MINUTE = 6  # bot notices about removed messages per group (Telegram allows 20 posts a minute)
PACE_MEMORY = 50_000  # members whose recent pace is remembered (least recently seen forgotten first)
LEARNED_TTL = 300  # seconds a group's classifier is kept before its samples are read again (other processes)
MODLOG_ROWS = 15
SNIPPET = 300

RULE_LABELS = {
    "flood": __("flooding"),
    "repeat": __("repeating the same message"),
    "links": __("links"),
    "diversion": __("traffic diversion (contacts, other groups)"),
    "banned": __("banned words"),
    "newcomer": __("links or media from a new member"),
    "locks": __("locked content"),
}
KNOB_HELP = {
    "enabled": __("moderation on/off"),
    "dry_run": __("only record what would happen (on/off)"),
    "flood_messages": __("messages allowed in flood_seconds (0: off)"),
    "flood_seconds": __("the flood window in seconds"),
    "flood_repeat": __("identical messages in a row allowed (0: off)"),
    "links": __("block links (on/off)"),
    "allowed_domains": __("domains always allowed: add x.com / remove x.com / clear"),
    "diversion": __("block WeChat/QQ/phone numbers and other groups (on/off)"),
    "banned_words": __("banned words: add word / add *wild*card / add re:regex / remove / clear"),
    "newcomer_hours": __("hours new members may not post links or media (0: off)"),
    "lock_stickers": __("delete stickers (on/off)"),
    "lock_gifs": __("delete GIFs (on/off)"),
    "share_codes": __("remove shop share codes such as 淘口令 (on/off)"),
    "scam_phrases": __("remove job and investment pitches such as 兼职, 日结, 刷单 (on/off)"),
    "lock_forwards": __("delete forwarded messages (on/off)"),
    "lock_media": __("delete photos, videos, files and voice (on/off)"),
    "warn_expiry_days": __("days a warning counts"),
    "evidence_days": __("days the removed text is kept in the log"),
    "ladder": __("escalation, e.g. 3:mute1h,5:ban"),
}


class ModButton(CallbackData, prefix="mod"):
    """A moderator's decision on a reported message: action delete|warn|mute|ban|ignore."""

    action: str
    chat_id: TelegramId
    user_id: TelegramId
    message_id: TelegramId


# -- compiled rules and paces, per process ---------------------------------------------------------------------


@dataclass
class ModerationState:
    """What moderation keeps in memory (the Runtime's `moderation`): compiled rules per group, members' recent
    pace, notices sent."""

    rules: dict[int, CompiledRules] = field(default_factory=dict)
    paces: OrderedDict[tuple[int, int], Pace] = field(default_factory=OrderedDict)
    notices: dict[int, deque[float]] = field(default_factory=dict)
    learned: dict[int, tuple[float, SpamModel]] = field(default_factory=dict)

    async def classifier(self, session: AsyncSession, group_id: int, now: float) -> SpamModel:
        """The group's classifier, learned from its confirmed samples (read again after LEARNED_TTL seconds, or
        at once after /spam or /spamsamples clear in this process)."""
        cached = self.learned.get(group_id)
        if cached is not None and now - cached[0] < LEARNED_TTL:
            return cached[1]
        model = SpamModel(*await spam_samples.samples_of(session, group_id))
        self.learned[group_id] = (now, model)
        return model
    shared: SharedPaces | None = None  # with several workers: flood and repeat counts in Redis

    def compiled(self, group: Group) -> CompiledRules:
        """The group's rules, compiled again only when the group row changed (any process bumps updated_at)."""
        assert group.id is not None
        cached = self.rules.get(group.id)
        if cached is not None and cached.stamp == group.updated_at:
            return cached
        cached = self.rules[group.id] = CompiledRules.of(group)
        return cached

    def pace(self, chat_id: int, user_id: int, text: str | None, rules: ModerationRules, now: float) -> str | None:
        """Count this message toward the member's pace (see Pace.count); "flood" or "repeat" when they went over."""
        key = (chat_id, user_id)
        pace = self.paces.get(key)
        if pace is None:
            pace = self.paces[key] = Pace(deque(maxlen=max(rules.flood_messages, 1)))
            if len(self.paces) > PACE_MEMORY:
                self.paces.popitem(last=False)
        else:
            self.paces.move_to_end(key)
        return pace.count(text, rules, now)

    async def count_pace(self, chat_id: int, user_id: int, text: str | None, rules: ModerationRules,
                         now: float) -> str | None:
        """`pace`, counted with every worker's messages when the Runtime gave this state shared counters (Redis;
        bot/shared_limits.py), else in this process."""
        if self.shared is None:
            return self.pace(chat_id, user_id, text, rules, now)
        return await self.shared.count(chat_id, user_id, text, rules,
                                       lambda: self.pace(chat_id, user_id, text, rules, now))

    def may_notify(self, chat_id: int, now: float) -> bool:
        sent = self.notices.setdefault(chat_id, deque(maxlen=NOTICES_PER_MINUTE))
        if len(sent) == NOTICES_PER_MINUTE and now - sent[0] < 60:
            return False
        sent.append(now)
        return True


# -- what a message is, for the policy --------------------------------------------------------------------------


def message_facts(message: Message, *, edited: bool = False) -> MessageFacts:
    """The plain facts moderation decides on (models/moderation_policy.py), read from the message once."""
    user = message.from_user
    person = user is not None and not user.is_bot and user.id not in (TELEGRAM_SERVICE_USER, GROUP_ANONYMOUS_BOT)
    text = message.text or message.caption or ""
    entities = (message.entities or []) + (message.caption_entities or [])
    urls = [e.url for e in entities if e.url]
    marked: list[tuple[str, str]] = []
    for entity in entities[: policy.MAX_ENTITIES]:
        if entity.type == "text_mention" and entity.user is not None:
            marked.append((entity.type, str(entity.user.id)))
        elif entity.type in policy.ENTITY_TYPES and entity.type != "text_mention":
            marked.append((entity.type, entity.extract_from(text)))
    markup = message.reply_markup
    if markup is not None:
        urls += [b.url for row in markup.inline_keyboard for b in row if b.url]
    return MessageFacts(
        chat_id=message.chat.id,
        sender_id=user.id if person and user is not None else None,
        sender_chat_id=message.sender_chat.id if message.sender_chat is not None else None,
        text=text,
        urls=tuple(urls),
        has_buttons=markup is not None,
        media=any((message.photo, message.video, message.document, message.audio, message.voice,
                   message.video_note, message.animation)),
        sticker=message.sticker is not None,
        animation=message.animation is not None,
        forwarded=message.forward_origin is not None,
        automatic_forward=bool(message.is_automatic_forward),
        service=bool(message.new_chat_members or message.left_chat_member),
        edited=edited,
        entities=tuple(marked),
    )


# -- acting on Telegram ----------------------------------------------------------------------------------------

RIGHT_HELP = {
    "can_delete_messages": __("Delete messages"),
    "can_restrict_members": __("Ban users"),
}


async def lacks_right(bot: Bot, session: AsyncSession, group: Group, right: str, error: TelegramAPIError) -> None:
    """Telegram refused an action: if the bot is missing the right, tell the admins (once a day per right)."""
    try:
        me = await bot.get_chat_member(group.chat_id, bot.id)
    except TelegramAPIError:
        return
    if me.status == "creator" or getattr(me, right, False):
        log.info("moderation action in %s failed: %s", group.chat_id, error)
        return
    assert group.id is not None
    day = utcnow().date().isoformat()
    if not await boards.claim_post(session, group.id, "mod_right", f"{right}:{day}"):
        return
    await notify_admins(
        bot, session, group,
        _("⚠️ I can't keep {title} tidy: please make me an admin with the right “{right}”.").format(
            title=esc(group.title), right=RIGHT_HELP[right]
        ),
    )


async def delete_message(bot: Bot, session: AsyncSession, group: Group, message_id: int) -> bool:
    try:
        return bool(await bot.delete_message(group.chat_id, message_id))
    except TelegramBadRequest as error:
        if "not found" not in error.message.lower():  # already gone is fine
            await lacks_right(bot, session, group, "can_delete_messages", error)
        return False
    except TelegramAPIError as error:
        log.info("delete in %s failed: %s", group.chat_id, error)
        return False


def until(seconds: int | None) -> datetime | None:
    return utcnow() + timedelta(seconds=seconds) if seconds else None


async def restrict(
    bot: Bot, session: AsyncSession, group: Group, user_id: int, action: str, seconds: int | None = None
) -> bool:
    """mute / unmute / kick / ban / unban / ban_sender_chat; False (admins told if a right is missing) on refusal."""
    chat_id = group.chat_id
    try:
        if action == "mute":
            await bot.restrict_chat_member(chat_id, user_id, ChatPermissions(can_send_messages=False),
                                           until_date=until(seconds or DEFAULT_MUTE))
        elif action == "unmute":
            # Bot API: pass True for all permissions to lift restrictions from a user.
            everything = {name: True for name in ChatPermissions.model_fields}
            await bot.restrict_chat_member(chat_id, user_id, ChatPermissions(**everything))
        elif action == "ban":
            await bot.ban_chat_member(chat_id, user_id, until_date=until(seconds))
        elif action == "kick":
            await bot.ban_chat_member(chat_id, user_id)
            await bot.unban_chat_member(chat_id, user_id, only_if_banned=True)
        elif action == "unban":
            await bot.unban_chat_member(chat_id, user_id, only_if_banned=True)
        elif action == "ban_sender_chat":
            await bot.ban_chat_sender_chat(chat_id, user_id)
        return True
    except TelegramBadRequest as error:
        await lacks_right(bot, session, group, "can_restrict_members", error)
        return False
    except TelegramAPIError as error:
        log.info("%s of %s in %s failed: %s", action, user_id, chat_id, error)
        return False


def step_text(step: Step) -> str:
    if step.action == "mute":
        return _("muted for {duration}").format(duration=format_duration(step.seconds or DEFAULT_MUTE))
    if step.action == "kick":
        return _("removed from the group")
    if step.seconds:
        return _("banned for {duration}").format(duration=format_duration(step.seconds))
    return _("banned")


async def apply_step(
    bot: Bot, session: AsyncSession, group: Group, user_id: int, step: Step, *, actor_id: int | None, rule: str | None,
    dry_run: bool = False,
) -> bool:
    assert group.id is not None
    done = dry_run or await restrict(bot, session, group, user_id, step.action, step.seconds)
    if done:
        await moderation.record_action(
            session, group_id=group.id, actor_id=actor_id, target_id=user_id, action=step.action, rule=rule,
            reason=_("ladder: {count} warnings").format(count=step.at) + (
                f" ({format_duration(step.seconds)})" if step.seconds else ""
            ), dry_run=dry_run,
        )
    return done


# -- the listener ----------------------------------------------------------------------------------------------


def sender_name(message: Message) -> str:
    if message.sender_chat is not None:
        return message.sender_chat.title or "?"
    user = message.from_user
    if user is None:
        return "?"
    return user.first_name or (f"@{user.username}" if user.username else "?")


async def enforce(
    message: Message, bot: Bot, session: AsyncSession, group: Group, state: ModerationState, compiled: CompiledRules,
    violation: Violation,
) -> bool:
    """Delete, warn and escalate (or, in dry-run mode, only record what would have happened). False when the
    sender is a bot moderator: exempt, nothing done."""
    assert group.id is not None
    rules = compiled.rules
    rule = violation.rule
    text = message.text or message.caption or ""
    evidence = (text or violation.detail or None)
    dry = rules.dry_run
    ladder_rule = "flood" if rule == "repeat" else rule
    if message.sender_chat is not None:  # someone writing as one of their channels
        target = message.sender_chat.id
        if not dry:
            await delete_message(bot, session, group, message.message_id)
        await moderation.record_action(session, group_id=group.id, actor_id=None, target_id=target, action="delete",
                                       rule=rule, reason=violation.detail or None, evidence=evidence, dry_run=dry,
                                       rules=rules)
        if dry or await restrict(bot, session, group, target, "ban_sender_chat"):
            await moderation.record_action(session, group_id=group.id, actor_id=None, target_id=target,
                                           action="ban_sender_chat", rule=rule, dry_run=dry)
        return True
    assert message.from_user is not None
    user_id = message.from_user.id
    warns = rules.action_for(ladder_rule) == "warn"
    label = str(RULE_LABELS[rule])
    # The moderator check, the removal's record and the warning: one transaction, no network call inside.
    removal = await moderation.record_removal(
        session, group.id, user_id, rule=rule, detail=violation.detail or None, evidence=evidence, rules=rules,
        warn=(f"msg:{message.chat.id}:{message.message_id}", ladder_rule, label) if warns else None, dry_run=dry,
    )
    if removal.exempt:
        return False
    result = removal.warning
    if not dry:
        await delete_message(bot, session, group, message.message_id)
        if result is not None and result.added:  # else this message already cost a warning (an earlier edit of it)
            await _escalate(message, bot, session, group, state, user_id, rule, label, result)
        return True
    if warns:  # dry run: record the warning and the step it would have reached, without acting
        count = await moderation.count_warnings(session, group.id, user_id) + 1
        step = moderation.step_for(rules.ladder_for(ladder_rule), count)
        await moderation.record_action(session, group_id=group.id, actor_id=None, target_id=user_id, action="warn",
                                       rule=rule, dry_run=True)
        if step is not None:
            await apply_step(bot, session, group, user_id, step, actor_id=None, rule=rule, dry_run=True)
    return True


async def _escalate(
    message: Message, bot: Bot, session: AsyncSession, group: Group, state: ModerationState, user_id: int,
    rule: str, label: str, result: moderation.WarnResult,
) -> None:
    """The ladder's step for a new automatic warning (mute, ban...), and a notice in the group (rate-limited)."""
    name = esc(sender_name(message))
    if result.step is not None and await apply_step(bot, session, group, user_id, result.step, actor_id=None,
                                                    rule=rule):
        notice = _("🚫 {name}: message removed ({rule}). {count} warnings: {outcome}.").format(
            name=name, rule=label, count=result.count, outcome=step_text(result.step)
        )
    else:
        notice = _("⚠️ {name}: message removed ({rule}). Warning {count}.").format(
            name=name, rule=label, count=result.count
        )
    if state.may_notify(message.chat.id, time.monotonic()):
        try:
            await bot.send_message(message.chat.id, notice)
        except TelegramAPIError as error:
            log.info("notice in %s failed: %s", message.chat.id, error)


async def check_message(
    message: Message, bot: Bot, session: AsyncSession, group: Group | None, member: MemberSnapshot | None,
    state: ModerationState, *, edited: bool,
) -> bool:
    """The moderation verdict, and its enforcement: True when the message broke a rule and was handled (the
    group-message pipeline, bot/pipeline.py, then stops it: it earns and counts for nothing)."""
    if group is None or group.id is None:
        return False
    facts = message_facts(message, edited=edited)
    if not policy.is_subject_to_rules(facts):
        return False
    compiled = state.compiled(group)
    rules = compiled.rules
    if not rules.enabled:
        return False
    pace = None
    sender_id = policy.paced_sender(facts)
    if sender_id is not None:
        pace = await state.count_pace(facts.chat_id, sender_id, facts.text, rules, time.monotonic())
    joined_at = member.joined_at if member is not None else None
    new_member = policy.is_new_member(joined_at, group.created_at, rules.newcomer_hours, utcnow())
    learned = await state.classifier(session, group.id, time.monotonic()) if new_member and facts.text else None
    violation = policy.find_violation(facts, compiled, new_member=new_member, pace=pace, learned=learned)
    if violation is None:
        return False
    if facts.sender_chat_id is None and facts.sender_id is not None and await is_chat_admin(
        bot, facts.chat_id, facts.sender_id
    ):
        return False  # admins are exempt (bot moderators too: enforce checks them in its transaction)
    return await enforce(message, bot, session, group, state, compiled, violation) and not rules.dry_run


# -- commands: parsing -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActionArgs:
    """A moderation command's arguments: who (unless by reply), an optional duration, a reason."""

    who: TargetWords
    seconds: int | None
    reason: str


def parse_action_args(args: str | None, *, with_duration: bool) -> ActionArgs:
    """`[@user|id] [duration] [reason]`. A word that starts like a duration but is not one is a usage error
    (so "/mute @bob 10x" is refused rather than muting for the default)."""
    words = split_target((args or "")[:1000])
    rest = words.rest
    seconds = None
    if with_duration and rest:
        first, _sep, after = rest.partition(" ")
        seconds = parse_duration(first)
        if seconds is None and first.lstrip("+-")[:1].isdigit():  # "10x", "-5m": a duration gone wrong
            raise UsageError(_("“{value}” is not a duration. Use {forms} (30 s to 366 days).").format(
                value=esc(first[:32]), forms=DURATION_FORMS))
        if seconds is not None:
            rest = after.strip()
    reason = " ".join(rest.split())
    if len(reason) > moderation.REASON_MAX:
        raise UsageError(_("The reason is at most {most} characters.").format(most=moderation.REASON_MAX))
    return ActionArgs(TargetWords(words.user_id, words.username, ""), seconds, reason)


def action_usage(command: str) -> str:
    if command in ("mute", "ban"):
        return _("Usage: /{command} (reply to a message, or @username, or id) [duration] [reason]\n"
                 "Durations: {forms}. Example: /{command} @bob 2h flooding").format(
                     command=command, forms=DURATION_FORMS)
    return _("Usage: /{command} (reply to a message, or @username, or id) [reason]\n"
             "Example: /{command} @bob spam links").format(command=command)


def actor_of(message: Message) -> int | None:
    if message.sender_chat is not None:
        return message.sender_chat.id
    return message.from_user.id if message.from_user else None


async def resolve(
    message: Message, command: CommandObject, bot: Bot, session: AsyncSession, group: Group, *, with_duration: bool,
) -> tuple[Target, ActionArgs] | None:
    """Check the actor now, parse the arguments and find the member; reply with the usage on bad input."""
    if not await require_moderator(bot, session, message):
        return None
    name = command.command.lower()
    try:
        args = parse_action_args(command.args, with_duration=with_duration)
    except UsageError as error:
        await message.reply(str(error) + "\n" + esc(action_usage(name)))
        return None
    target = await find_target(session, message, group, args.who)
    if target is None:
        await message.reply(esc(action_usage(name)))
        return None
    if target.user_id in (bot.id, actor_of(message)) or (
        not target.is_sender_chat and await is_chat_admin(bot, message.chat.id, target.user_id)
    ):
        await message.reply(_("I won't do that to an admin, to myself or to you."))
        return None
    return target, args


# -- commands: acting ------------------------------------------------------------------------------------------


@router.message(Command("warn"), IN_GROUP)
async def warn_command(message: Message, command: CommandObject, bot: Bot, session: AsyncSession, group: Group) -> None:
    assert group.id is not None
    found = await resolve(message, command, bot, session, group, with_duration=False)
    if found is None:
        return
    target, args = found
    result = await moderation.add_warning(
        session, group.id, target.user_id, key=f"cmd:{message.chat.id}:{message.message_id}",
        issued_by=actor_of(message), reason=args.reason or None,
    )
    evidence = None
    if message.reply_to_message is not None:
        evidence = message.reply_to_message.text or message.reply_to_message.caption
    await moderation.record_action(session, group_id=group.id, actor_id=actor_of(message), target_id=target.user_id,
                                   action="warn", reason=args.reason or None, evidence=evidence)
    reason = f" ({esc(args.reason)})" if args.reason else ""
    text = _("⚠️ {name} is warned{reason}. Warnings: {count}.").format(
        name=esc(target.name), reason=reason, count=result.count
    )
    if result.step is not None and await apply_step(bot, session, group, target.user_id, result.step,
                                                    actor_id=actor_of(message), rule=None):
        text += " " + _("Outcome: {outcome}.").format(outcome=step_text(result.step))
    await message.reply(text)


@router.message(Command("unwarn"), IN_GROUP)
async def unwarn_command(
    message: Message, command: CommandObject, bot: Bot, session: AsyncSession, group: Group
) -> None:
    assert group.id is not None
    found = await resolve(message, command, bot, session, group, with_duration=False)
    if found is None:
        return
    target, args = found
    left = await moderation.revoke_warning(session, group.id, target.user_id, by=actor_of(message))
    if left is None:
        await message.reply(_("{name} has no active warnings.").format(name=esc(target.name)))
        return
    await moderation.record_action(session, group_id=group.id, actor_id=actor_of(message), target_id=target.user_id,
                                   action="unwarn", reason=args.reason or None)
    await message.reply(_("✅ Removed a warning of {name}. Warnings left: {count}.").format(
        name=esc(target.name), count=left))


@router.message(Command("warns"), IN_GROUP)
async def warns_command(
    message: Message, command: CommandObject, bot: Bot, session: AsyncSession, group: Group
) -> None:
    assert group.id is not None
    asks_about_other = bool((command.args or "").strip()) or message.reply_to_message is not None
    if asks_about_other:
        if not await require_moderator(bot, session, message):
            return
        target = await find_target(session, message, group, split_target(command.args or ""))
        if target is None:
            await message.reply(esc(_("Usage: /warns (yourself), or reply / @username / id (moderators)")))
            return
    else:
        if message.from_user is None or message.sender_chat is not None:
            return
        target = Target(message.from_user.id, message.from_user.first_name)
    rows = await moderation.active_warnings(session, group.id, target.user_id)
    rules = moderation.rules_of(group)
    if not rows:
        await message.reply(_("{name} has no active warnings.").format(name=esc(target.name)))
        return
    lines = [_("⚠️ {name}: {count} active warnings (each counts for {days} days).").format(
        name=esc(target.name), count=len(rows), days=rules.warn_expiry_days)]
    for row in rows[-10:]:
        when = local_time(row.created_at, group.timezone, MONTH_DAY_TIME)
        lines.append(f"• {when} — {esc(row.reason or row.rule or '-')}")
    upcoming = next((step for step in rules.ladder if step.at > len(rows)), None)
    if upcoming is not None:
        lines.append(_("At {count}: {outcome}.").format(count=upcoming.at, outcome=step_text(upcoming)))
    await message.reply("\n".join(lines))


async def manual_action(
    message: Message, command: CommandObject, bot: Bot, session: AsyncSession, group: Group, action: str,
) -> None:
    assert group.id is not None
    found = await resolve(message, command, bot, session, group, with_duration=action in ("mute", "ban"))
    if found is None:
        return
    target, args = found
    if target.is_sender_chat and action not in ("ban",):
        await message.reply(esc(action_usage(action)))
        return
    kind = "ban_sender_chat" if target.is_sender_chat else action
    seconds = args.seconds if action in ("mute", "ban") else None
    if action == "mute" and seconds is None:
        seconds = DEFAULT_MUTE
    if not await restrict(bot, session, group, target.user_id, kind, seconds):
        await message.reply(_("Telegram refused that. Check that I am an admin with the right to ban users."))
        return
    evidence = None
    if message.reply_to_message is not None and action in ("mute", "kick", "ban"):
        evidence = message.reply_to_message.text or message.reply_to_message.caption
    await moderation.record_action(
        session, group_id=group.id, actor_id=actor_of(message), target_id=target.user_id, action=kind,
        reason=" ".join(filter(None, [format_duration(seconds) if seconds else "", args.reason])) or None,
        evidence=evidence,
    )
    name = esc(target.name)
    duration = format_duration(seconds) if seconds else ""
    texts = {
        "mute": _("🔇 {name} is muted for {duration}."),
        "unmute": _("🔊 {name} may speak again."),
        "kick": _("👋 {name} was removed from the group."),
        "ban": _("⛔ {name} is banned for {duration}.") if seconds else _("⛔ {name} is banned."),
        "unban": _("✅ {name} is no longer banned."),
    }
    text = texts[action].format(name=name, duration=duration)
    if args.reason:
        text += " " + _("Reason: {reason}").format(reason=esc(args.reason))
    await message.reply(text)


@router.message(Command("mute", "unmute", "kick", "ban", "unban"), IN_GROUP)
async def restrict_command(
    message: Message, command: CommandObject, bot: Bot, session: AsyncSession, group: Group
) -> None:
    await manual_action(message, command, bot, session, group, command.command.lower())


# -- /report and its buttons -----------------------------------------------------------------------------------


def report_keyboard(chat_id: int, user_id: int, message_id: int) -> Any:
    keyboard = InlineKeyboardBuilder()
    for action, label in (("delete", _("🗑 Delete")), ("warn", _("⚠️ Warn")), ("mute", _("🔇 Mute 1h")),
                          ("ban", _("⛔ Ban")), ("ignore", _("✖️ Ignore"))):
        keyboard.button(text=label, callback_data=ModButton(action=action, chat_id=chat_id, user_id=user_id,
                                                            message_id=message_id))
    keyboard.adjust(3, 2)
    return keyboard.as_markup()


@router.message(Command("report"), IN_GROUP)
async def report_command(message: Message, bot: Bot, session: AsyncSession, group: Group) -> None:
    assert group.id is not None
    reported = message.reply_to_message
    if reported is None or reported.from_user is None or reported.from_user.id == bot.id:
        await message.reply(_("Reply to the message you want to report with /report."))
        return
    reporter = message.from_user
    reporter_id = reporter.id if reporter else None
    target_id = reported.sender_chat.id if reported.sender_chat is not None else reported.from_user.id
    snippet = (reported.text or reported.caption or "")[:SNIPPET]
    await moderation.record_action(session, group_id=group.id, actor_id=reporter_id, target_id=target_id,
                                   action="report", evidence=snippet or None)
    link = ""
    if str(message.chat.id).startswith("-100"):
        link = f"https://t.me/c/{str(message.chat.id)[4:]}/{reported.message_id}"
    text = _("🚩 Report in {title} by {reporter} about {name}:\n<blockquote>{snippet}</blockquote>{link}").format(
        title=esc(group.title), reporter=esc(reporter.first_name if reporter else "?"),
        name=esc(sender_name(reported)), snippet=esc(snippet or "…"), link=f"\n{link}" if link else "",
    )
    await notify_admins(bot, session, group, text, report_keyboard(message.chat.id, target_id, reported.message_id))
    await message.reply(_("Thanks, the admins have been told."))


@router.message(Command("spam"), IN_GROUP)
async def spam_command(message: Message, bot: Bot, session: AsyncSession, group: Group, runtime: Runtime) -> None:
    """A moderator's reply: remove the ad and keep its text as one of the group's confirmed spam samples."""
    assert group.id is not None
    if not await require_moderator(bot, session, message):
        return
    ad = message.reply_to_message
    text = (ad.text or ad.caption or "") if ad is not None else ""
    if ad is None or not text.strip():
        await message.reply(_("Reply to the ad with /spam."))
        return
    await spam_samples.add_sample(session, group.id, text)
    target = ad.sender_chat.id if ad.sender_chat is not None else ad.from_user.id if ad.from_user else None
    await moderation.record_action(session, group_id=group.id, actor_id=actor_of(message), target_id=target,
                                   action="delete", rule="newcomer", reason="spam sample", evidence=text)
    runtime.moderation.learned.pop(group.id, None)
    await delete_message(bot, session, group, ad.message_id)
    count = await spam_samples.count_samples(session, group.id)
    await message.reply(_("🧹 Removed. The group has {count} confirmed spam samples; newcomers' messages like it "
                          "will be removed.").format(count=count))


@router.message(Command("spamsamples"), IN_GROUP)
async def spamsamples_command(
    message: Message, command: CommandObject, bot: Bot, session: AsyncSession, group: Group, runtime: Runtime
) -> None:
    """Count the group's confirmed samples; the owner clears them with `/spamsamples clear`."""
    assert group.id is not None
    if (command.args or "").strip().lower() != "clear":
        if not await require_moderator(bot, session, message):
            return
        count = await spam_samples.count_samples(session, group.id)
        await message.reply(_("This group has {count} confirmed spam samples (ads removed with /spam). The owner "
                              "deletes them all with /spamsamples clear.").format(count=count))
        return
    actor = message.from_user
    if message.sender_chat is not None or actor is None or not await is_chat_owner(bot, message.chat.id, actor.id):
        await message.reply(_("Only the group's owner can delete the spam samples."))
        return
    removed = await spam_samples.clear_samples(session, group.id)
    runtime.moderation.learned.pop(group.id, None)
    await message.reply(_("Deleted {count} spam samples.").format(count=removed))


async def can_moderate_chat(bot: Bot, session: AsyncSession, chat_id: int, user_id: int) -> Group | None:
    """The group, if this person may moderate it right now (for presses made outside the group)."""
    group = await groups.get_group(session, chat_id)
    if group is None or group.id is None:
        return None
    if await is_chat_admin(bot, chat_id, user_id) or await roles.is_bot_moderator(session, group.id, user_id):
        return group
    return None


@router.callback_query(ModButton.filter())
async def report_pressed(query: CallbackQuery, callback_data: ModButton, bot: Bot, session: AsyncSession) -> None:
    data = callback_data
    if data.action not in ("delete", "warn", "mute", "ban", "ignore"):
        await query.answer()
        return
    group = await can_moderate_chat(bot, session, data.chat_id, query.from_user.id)
    if group is None or group.id is None:
        await query.answer(_("Only group admins and moderators can do that."), show_alert=True)
        return
    actor = query.from_user.id
    if data.action != "ignore" and await is_chat_admin(bot, data.chat_id, data.user_id):
        await query.answer(_("I won't do that to an admin, to myself or to you."), show_alert=True)
        return
    outcome = {"delete": _("deleted"), "warn": _("warned"), "mute": _("muted for 1h"), "ban": _("banned"),
               "ignore": _("ignored")}[data.action]
    if data.action in ("delete", "warn", "mute", "ban"):
        await delete_message(bot, session, group, data.message_id)
    if data.action == "warn":
        result = await moderation.add_warning(session, group.id, data.user_id, key=f"report:{data.chat_id}:"
                                              f"{data.message_id}", issued_by=actor, reason=_("reported"))
        if result.step is not None:
            await apply_step(bot, session, group, data.user_id, result.step, actor_id=actor, rule=None)
    elif data.action in ("mute", "ban"):
        kind = "ban_sender_chat" if data.user_id < 0 and data.action == "ban" else data.action
        if not await restrict(bot, session, group, data.user_id, kind, DEFAULT_MUTE if data.action == "mute" else None):
            await query.answer(_("Telegram refused that. Check that I am an admin with the right to ban users."),
                               show_alert=True)
            return
    await moderation.record_action(session, group_id=group.id, actor_id=actor, target_id=data.user_id,
                                   action="ignore_report" if data.action == "ignore" else data.action,
                                   reason=_("reported"))
    await query.answer(_("Done: {outcome}.").format(outcome=outcome))
    if isinstance(query.message, Message):
        text = (query.message.html_text or "") + "\n" + _("➡️ {outcome} by {name}").format(
            outcome=outcome, name=esc(query.from_user.first_name))
        try:
            await query.message.edit_text(text[:4096], reply_markup=None)
        except TelegramAPIError as error:
            log.info("could not edit the report: %s", error)


# -- /rules and /setrules --------------------------------------------------------------------------------------


@router.message(Command("rules"), IN_GROUP)
async def rules_command(message: Message, group: Group) -> None:
    text = moderation.rules_of(group).rules_text
    if not text:
        await message.reply(_("This group has no written rules yet. Admins set them with /setrules."))
        return
    await message.reply(_("📜 <b>Group rules</b>") + "\n" + esc(text))


@router.message(Command("setrules"), IN_GROUP)
async def setrules_command(
    message: Message, command: CommandObject, bot: Bot, session: AsyncSession, group: Group
) -> None:
    assert group.id is not None
    if not await require_moderator(bot, session, message):
        return
    text = (command.args or "").strip()
    if not text:
        await message.reply(esc(_("Usage: /setrules your rules text (several lines are fine)")))
        return
    try:
        await moderation.set_rules_text(session, group.id, text)
    except moderation.InvalidKnob:
        await message.reply(_("The rules may be at most {count} characters.").format(count=moderation.RULES_TEXT_MAX))
        return
    await message.reply(_("✅ Rules saved. Members read them with /rules."))


# -- /modset ---------------------------------------------------------------------------------------------------


def knob_value(rules: ModerationRules, name: str) -> str:
    value = getattr(rules, name)
    if isinstance(value, bool):
        return "on" if value else "off"
    if name == "ladder":
        return moderation.format_ladder(value)
    if isinstance(value, list):
        return ", ".join(value) if value else "-"
    return str(value)


def render_rules(rules: ModerationRules) -> str:
    lines = [_("<b>Moderation rules</b>")]
    for name in moderation.KNOBS:
        lines.append(f"<code>{name}</code> = {esc(knob_value(rules, name)[:300])} — {esc(KNOB_HELP[name])}")
    for rule, steps in rules.rule_ladders.items():
        lines.append(f"<code>ladder.{rule}</code> = {esc(moderation.format_ladder(steps))}")
    for rule, action in rules.rule_actions.items():
        lines.append(f"<code>action.{rule}</code> = {action}")
    log_chat = str(rules.log_chat_id) if rules.log_chat_id else _("none (alerts go to admins privately)")
    lines.append(_("Log chat: {chat}").format(chat=esc(log_chat)))
    lines += ["", esc(modset_usage())]
    return "\n".join(lines)


def modset_usage() -> str:
    return _("Usage: /modset preset relaxed|standard|strict\n"
             "/modset knob value, e.g. /modset flood_messages 8, /modset links off, "
             "/modset banned add 代购, /modset ladder 3:mute1h,5:ban\n"
             "Per rule: /modset ladder.flood 2:mute10m,4:ban, /modset action.links delete|warn")


@router.message(Command("modset"), IN_GROUP)
async def modset_command(
    message: Message, command: CommandObject, bot: Bot, session: AsyncSession, group: Group
) -> None:
    assert group.id is not None
    if not await require_moderator(bot, session, message):
        return
    args = (command.args or "").strip()
    if not args:
        await message.reply(render_rules(moderation.rules_of(group)))
        return
    name, _sep, value = args.partition(" ")
    value = value.strip()
    if not value:
        await message.reply(esc(modset_usage()))
        return
    try:
        if name.lower() == "preset":
            rules = await moderation.apply_preset(session, group.id, value.lower())
            answer = _("✅ Preset {preset} applied.").format(preset=esc(value.lower()))
        else:
            rules = await moderation.set_knob(session, group.id, name, value)
            knob = moderation.knob_name(name)
            shown = knob_value(rules, knob) if knob in moderation.KNOBS else value
            answer = _("✅ {knob} is now {value}.").format(knob=esc(knob[:40]), value=esc(shown[:300]))
    except moderation.InvalidKnob as error:
        await message.reply(_("Cannot set {knob}: {reason}").format(knob=esc(error.name[:40]), reason=esc(
            error.reason[:200])) + "\n" + esc(modset_usage()))
        return
    await message.reply(answer)


# -- /setlog and /modlog ---------------------------------------------------------------------------------------


@router.message(Command("setlog"), IN_GROUP)
async def setlog_command(
    message: Message, command: CommandObject, bot: Bot, session: AsyncSession, group: Group
) -> None:
    assert group.id is not None
    if not await require_moderator(bot, session, message):
        return
    raw = (command.args or "").strip().lower()
    if raw in ("off", "none", "-"):
        await moderation.set_log_chat(session, group.id, None)
        await message.reply(_("✅ No log chat: alerts go to the admins privately."))
        return
    number = whole_number(raw[1:]) if raw.startswith("-") else None
    if number is None or not 0 < number <= INT64_MAX:
        await message.reply(esc(_("Usage: /setlog chat_id (a group or channel where I am an admin, e.g. "
                                  "-1001234567890), or /setlog off")))
        return
    chat_id = -number
    actor = message.from_user.id if message.from_user and message.sender_chat is None else None
    if actor is not None and not await is_chat_admin(bot, chat_id, actor):
        await message.reply(_("You must be an admin of that chat too."))
        return
    try:
        await bot.send_message(chat_id, _("📋 This chat now receives the moderation log of {title}.").format(
            title=esc(group.title)))
    except TelegramAPIError:
        await message.reply(_("I can't post in that chat. Add me there as an admin first."))
        return
    await moderation.set_log_chat(session, group.id, chat_id)
    await message.reply(_("✅ Moderation alerts now go to the log chat."))


ACTION_LABELS = {
    "delete": __("deleted"), "warn": __("warned"), "unwarn": __("unwarned"), "mute": __("muted"),
    "unmute": __("unmuted"), "kick": __("kicked"), "ban": __("banned"), "unban": __("unbanned"),
    "report": __("reported"), "ban_sender_chat": __("banned channel"), "ignore_report": __("ignored a report"),
    "mod_add": __("made moderator"), "mod_remove": __("dismissed moderator"),
}


def names_needed(rows: Iterable[moderation.ModAction]) -> list[int]:
    return [i for row in rows for i in (row.actor_id, row.target_id) if i is not None and i > 0]


@router.message(Command("modlog"), IN_GROUP)
async def modlog_command(message: Message, bot: Bot, session: AsyncSession, group: Group) -> None:
    assert group.id is not None
    if not await require_moderator(bot, session, message):
        return
    rows = await moderation.recent_actions(session, group.id, MODLOG_ROWS)
    if not rows:
        await message.reply(_("No moderation actions yet."))
        return
    names = await roles.member_names(session, names_needed(rows))
    lines = [_("<b>Recent moderation</b>")]
    for row in rows:
        actor = _("bot") if row.actor_id is None else names.get(row.actor_id, f"#{row.actor_id}")
        target = names.get(row.target_id, f"#{row.target_id}") if row.target_id is not None else "-"
        label = ACTION_LABELS.get(row.action)
        rule = RULE_LABELS.get(row.rule or "")
        line = f"{local_time(row.created_at, group.timezone, MONTH_DAY_TIME)} · {esc(actor)} → {esc(target)}: " \
               f"{label if label is not None else esc(row.action)}"
        if rule is not None:
            line += f" ({rule})"
        elif row.reason:
            line += f" ({esc(row.reason[:60])})"
        if row.dry_run:
            line += " " + _("[dry run]")
        if row.evidence:
            line += f"\n    <i>{esc(row.evidence[:80])}</i>"
        lines.append(line)
    await message.reply("\n".join(lines))
