"""Programmes: a school, campus, workplace or community group that refers people to Kindred.

A coordinator creates one (`kindred programme create NAME`) and shares its deep link,
`https://t.me/<bot>?start=<code>`. Telegram sends `/start <code>` when someone opens it, and the
person's row remembers the programme's code, so `kindred stats` can report on the programme as
a whole. The code says nothing about the person; it is the same for everyone the link reached.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime

from sqlalchemy import String, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from bot.config import Settings
from bot.db.models import Base, User

__all__ = [
    "KINDS",
    "Programme",
    "create_programme",
    "deep_link",
    "join_programme",
    "list_programmes",
    "resolve_bot_username",
]

KINDS = ("school", "campus", "workplace", "community")
CODE_PREFIX = "p-"
# Telegram's start parameter: up to 64 characters from A-Z, a-z, 0-9, "_" and "-".
_CODE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class Programme(Base):
    """A referring programme and the code its deep link carries."""

    __tablename__ = "programmes"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(16), default="community")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


def new_code() -> str:
    """A fresh, unguessable programme code (so nobody joins a programme by guessing)."""
    return CODE_PREFIX + secrets.token_urlsafe(9)


def deep_link(bot_username: str, code: str) -> str:
    """The link that opens the bot with `/start <code>`."""
    return f"https://t.me/{bot_username.lstrip('@')}?start={code}"


async def create_programme(session: AsyncSession, name: str, kind: str = "community") -> Programme:
    """A new programme with a new code."""
    name = name.strip()
    if not name:
        raise ValueError("a programme needs a name")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    programme = Programme(code=new_code(), name=name[:120], kind=kind)
    session.add(programme)
    await session.flush()
    return programme


async def list_programmes(session: AsyncSession) -> list[Programme]:
    """Every programme, oldest first."""
    return list(await session.scalars(select(Programme).order_by(Programme.created_at)))


async def join_programme(session: AsyncSession, user: User, code: str) -> bool:
    """Put the person in the programme whose code their deep link carried; False if unknown."""
    code = code.strip()
    if not _CODE.match(code):
        return False
    if await session.get(Programme, code) is None:
        return False  # a stale or forged link: the person is still welcome, just not counted
    user.programme = code
    return True


async def resolve_bot_username(settings: Settings) -> str:
    """The bot's @username, asked of Telegram (getMe) with the configured token."""
    from telegram import Bot

    if settings.telegram_bot_token is None:
        raise ValueError("TELEGRAM_BOT_TOKEN is not set: pass --bot-username instead")
    base = settings.telegram_api_base.rstrip("/")
    bot = Bot(settings.telegram_bot_token.get_secret_value(), base_url=f"{base}/bot")
    async with bot:
        me = await bot.get_me()
    if not me.username:
        raise ValueError("the bot has no username")
    return me.username
