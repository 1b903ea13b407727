"""Concurrent updates across people, in order for each person."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor

from bot.telegram.updates import person_key


class PerPersonUpdateProcessor(BaseUpdateProcessor):
    """One lock per person: different people run concurrently, one person's updates in order.

    asyncio.Lock wakes waiters first-in first-out, and PTB hands updates over in arrival order,
    so a person's messages are handled in the order Telegram delivered them.
    """

    def __init__(self, max_concurrent_updates: int) -> None:
        super().__init__(max_concurrent_updates)
        self._locks: dict[int, asyncio.Lock] = {}
        self._holders: dict[int, int] = {}

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        """Run the handler under the person's lock; forget the lock when nobody waits."""
        key = person_key(update) if isinstance(update, Update) else None
        if key is None:
            await coroutine
            return
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._holders[key] = self._holders.get(key, 0) + 1
        try:
            async with lock:
                await coroutine
        finally:
            self._holders[key] -= 1
            if not self._holders[key]:
                del self._holders[key]
                del self._locks[key]

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to tear down."""
