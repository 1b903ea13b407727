"""Drive a conversation through the console channel the way a person would."""

from __future__ import annotations

from bot.console import parse_line, render
from bot.service import KindredService
from flows.engine import Button
from tests.conftest import unique_user


class Conversation:
    """One person talking to Kindred in the console: `await chat.say("...")` returns the answer."""

    def __init__(self, service: KindredService, user: str | None = None, language: str = "en"):
        self.service = service
        self.user = user or unique_user()
        self.language = language
        self.buttons: list[Button] = []
        self.last = ""

    async def say(self, line: str) -> str:
        """Send one line (text, /command, or a button number or label); return the bot's answer."""
        handled = await self.service.handle(
            parse_line(line, self.buttons, self.user, self.language)
        )
        self.last, buttons = render(handled.replies)
        if handled.replies:
            self.buttons = buttons
        return self.last

    async def followup(self, pseudonym: str, kind: str) -> str:
        """A scheduled follow-up arrives for this person; return what the bot says."""
        self.last, self.buttons = render(await self.service.followup(pseudonym, kind))
        return self.last

    async def press(self, label_start: str) -> str:
        """Press the button whose label starts with the given words."""
        for button in self.buttons:
            if button.label.lower().startswith(label_start.lower()):
                return await self.say(button.label)
        raise AssertionError(f"no button starting with {label_start!r} in {self.labels}")

    @property
    def labels(self) -> list[str]:
        """Labels of the buttons on screen now."""
        return [b.label for b in self.buttons]
