"""A bot whose polling survives an update it cannot parse.

python-telegram-bot parses a getUpdates batch all at once: one update it cannot read (a field
newer than the library, a malformed payload from a Bot API stand-in) raises, the offset never
moves past it, and the same batch is fetched and fails forever, so nobody is answered. It also
logs the raw batch, people's messages included, at CRITICAL.

Here a batch that fails is parsed one update at a time; an unreadable update is replaced by a
bare `Update(update_id)`, which no handler acts on and which moves the offset past it. Only its
id and the reason are logged. The fast path (a batch that parses) is PTB's own, unchanged.
"""

from __future__ import annotations

import datetime as dtm
import logging
from collections.abc import Sequence
from typing import Any, cast

from telegram import Update
from telegram._utils.defaultvalue import DEFAULT_NONE, DefaultValue
from telegram._utils.types import JSONDict, ODVInput
from telegram.ext import ExtBot

from bot.inbox import Inbox

__all__ = ["TolerantBot", "parse_updates"]

log = logging.getLogger(__name__)


def parse_updates(raw: Sequence[JSONDict], bot: Any) -> tuple[Update, ...]:
    """The batch as Updates; any that cannot be read become a bare Update with its id."""
    try:
        return Update.de_list(list(raw), bot)
    except Exception:
        pass
    parsed: list[Update] = []
    for item in raw:
        try:
            update = Update.de_json(item, bot)
        except Exception as exc:
            update = None
            reason = type(exc).__name__
        else:
            reason = "empty"
        if update is not None:
            parsed.append(update)
            continue
        update_id = item.get("update_id") if isinstance(item, dict) else None
        if not isinstance(update_id, int) or isinstance(update_id, bool):
            log.warning("skipped an update without a usable update_id (%s)", reason)
            continue
        log.warning("skipped update %d: it could not be parsed (%s)", update_id, reason)
        parsed.append(Update(update_id=update_id))
    return tuple(parsed)


class TolerantBot(ExtBot[Any]):
    """ExtBot whose get_updates skips (and logs without content) updates it cannot parse, and
    keeps each batch in the inbox before the next getUpdates acknowledges it."""

    _inbox: Inbox | None = None

    def keep_updates_in(self, inbox: Inbox | None) -> None:
        """Write every fetched batch to `inbox` before returning it (None: don't)."""
        self._inbox = inbox

    async def get_updates(
        self,
        offset: int | None = None,
        limit: int | None = None,
        timeout: int | dtm.timedelta | None = None,  # noqa: ASYNC109 - PTB's signature
        allowed_updates: Sequence[str] | None = None,
        *,
        read_timeout: ODVInput[float] = DEFAULT_NONE,
        write_timeout: ODVInput[float] = DEFAULT_NONE,
        connect_timeout: ODVInput[float] = DEFAULT_NONE,
        pool_timeout: ODVInput[float] = DEFAULT_NONE,
        api_kwargs: JSONDict | None = None,
    ) -> tuple[Update, ...]:
        """PTB's getUpdates, with the batch parsed by parse_updates."""
        data: JSONDict = {
            "timeout": timeout,
            "offset": offset,
            "limit": limit,
            "allowed_updates": allowed_updates,
        }
        # As in PTB: the long poll's own timeout is added to the read timeout.
        if isinstance(read_timeout, DefaultValue):
            base_read: float = self._request[0].read_timeout or 0
        else:
            base_read = read_timeout or 0
        seconds = timeout.total_seconds() if isinstance(timeout, dtm.timedelta) else timeout or 0
        result = cast(
            "list[JSONDict]",
            await self._post(
                "getUpdates",
                data,
                read_timeout=base_read + seconds,
                write_timeout=write_timeout,
                connect_timeout=connect_timeout,
                pool_timeout=pool_timeout,
                api_kwargs=api_kwargs,
            ),
        )
        if result and self._inbox is not None:
            # Durable before acknowledged: the next getUpdates confirms these to Telegram.
            await self._inbox.keep(self.id, result)
        return self.updates_from(result or [])

    def updates_from(self, raw: Sequence[JSONDict]) -> tuple[Update, ...]:
        """Raw updates (a getUpdates batch, or the inbox's) as PTB reads them from Telegram."""
        updates = parse_updates(raw, self)
        for update in updates:
            self.insert_callback_data(update)
        return updates
