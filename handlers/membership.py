"""Who is in the group: the bot's own status (added, promoted, removed, blocked in private), members joining,
leaving and being promoted, and a group's upgrade to a supergroup (its id changes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiogram.types import ChatMemberUpdated, Message
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.common import esc, person_seen
from handlers.switchboard import IN_GROUP, IN_PRIVATE, Blueprint, Service
from models import analytics, boards, groups, invites
from models.groups import Group

if TYPE_CHECKING:
    from bot.settings import Settings

router = Blueprint("membership")

# The admin rights qunbot uses, and what each is for (shown to the group's admins when one is missing).
NEEDED_RIGHTS = {
    "can_delete_messages": lambda: _("Delete messages — to remove spam and clean up"),
    "can_restrict_members": lambda: _("Ban users — to mute, kick and ban rule breakers"),
    "can_invite_users": lambda: _("Invite users via link — for members' personal invite links"),
    "can_pin_messages": lambda: _("Pin messages — to pin the check-in board and sales"),
}


def bot_rights(update: ChatMemberUpdated) -> dict[str, bool]:
    member = update.new_chat_member
    return {right: bool(getattr(member, right, False)) for right in NEEDED_RIGHTS}


def missing_rights_text(rights: dict[str, bool]) -> str:
    return "\n".join(f"• {describe()}" for right, describe in NEEDED_RIGHTS.items() if not rights.get(right))


@router.my_chat_member(IN_GROUP)
async def bot_status_changed(update: ChatMemberUpdated, session: AsyncSession, settings: Settings) -> None:
    old, new = update.old_chat_member.status, update.new_chat_member.status
    rights = bot_rights(update)
    chat = groups.ChatSeen(update.chat.id, update.chat.title or "", update.chat.type)
    await groups.set_bot_status(session, chat, new, rights, default_timezone=settings.default_timezone)
    if new in ("left", "kicked"):
        return  # nothing can be said in a group the bot has left
    joined = old in ("left", "kicked")
    if new == "administrator":
        missing = missing_rights_text(rights)
        if missing:
            await update.answer(
                _("Thanks for making me an admin. To do everything, I still need these rights:\n{missing}").format(
                    missing=missing
                )
            )
        elif joined or old != "administrator":
            await update.answer(_("I'm ready. Members can type /help to see what I do."))
    elif joined:
        await update.answer(
            _("Hello, {title}! Make me an admin so I can see the chat and keep it tidy. I need:\n{missing}").format(
                title=esc(update.chat.title or ""), missing=missing_rights_text({})
            )
        )


@router.my_chat_member(IN_PRIVATE)
async def private_chat_status_changed(update: ChatMemberUpdated, session: AsyncSession) -> None:
    await groups.set_user_blocked(session, update.chat.id, update.new_chat_member.status == "kicked")


@router.chat_member(IN_GROUP)
async def member_status_changed(update: ChatMemberUpdated, session: AsyncSession, group: Group) -> None:
    who = update.new_chat_member.user
    if who.is_bot:
        return
    old, new = update.old_chat_member.status, update.new_chat_member.status
    joined = old in ("left", "kicked") and new in ("member", "restricted", "administrator", "creator")
    await groups.set_member_role(session, group, person_seen(who), new, joined=joined)
    await record_membership_fact(update, session, group, joined=joined)


async def record_membership_fact(update: ChatMemberUpdated, session: AsyncSession, group: Group, *,
                                 joined: bool) -> None:
    """The activity facts' join (with how the person came), leave or removal."""
    who, old, new = update.new_chat_member.user, update.old_chat_member.status, update.new_chat_member.status
    if joined:
        source, actor = await join_source(update, session, group)
        await analytics.record_membership(session, group, who.id, "join", source=source, actor_id=actor,
                                          at=update.date)
    elif old in ("member", "restricted", "administrator", "creator") and new in ("left", "kicked"):
        removed = new == "kicked" or (update.from_user is not None and update.from_user.id != who.id)
        await analytics.record_membership(session, group, who.id, "removed" if removed else "leave",
                                          actor_id=update.from_user.id if removed and update.from_user else None,
                                          at=update.date)


async def join_source(update: ChatMemberUpdated, session: AsyncSession, group: Group) -> tuple[str, int | None]:
    """How a person came in: (one of models.analytics.JOIN_SOURCES, who brought them if anyone)."""
    assert group.id is not None
    who, link = update.new_chat_member.user, update.invite_link
    if update.via_join_request or (link is not None and link.creates_join_request):
        return "join_request", None
    if link is not None:
        inviter = await invites.inviter_of_link(session, group.id, link.invite_link)
        if inviter is not None:
            return "member_link", inviter
        return "admin_link", None if link.creator.is_bot else link.creator.id
    if update.from_user is not None and update.from_user.id != who.id:
        return "added", update.from_user.id
    return "public", None


@router.message(Service("migrate_to_chat_id"))
async def group_upgraded(message: Message, session: AsyncSession) -> None:
    assert message.migrate_to_chat_id is not None
    await move_group(session, message.chat.id, message.migrate_to_chat_id)


@router.message(Service("migrate_from_chat_id"))
async def supergroup_created(message: Message, session: AsyncSession) -> None:
    assert message.migrate_from_chat_id is not None
    await move_group(session, message.migrate_from_chat_id, message.chat.id)


async def move_group(session: AsyncSession, old_chat_id: int, new_chat_id: int) -> None:
    """The group became a supergroup: its rows move, and the check-in board is posted anew in the new chat at the
    next check-in (its old message id names a message of the old chat)."""
    if await groups.migrate_group(session, old_chat_id, new_chat_id):
        await boards.forget_post_messages(session, new_chat_id, boards.CHECKIN_BOARD)
