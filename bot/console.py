"""The console channel: the whole service without Telegram (`kindred chat`)."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TextIO

from bot.inbound import Inbound
from bot.rendering import plain_text
from bot.service import KindredService
from flows.engine import Button, EventKind, Reply

CHANNEL = "console"


def parse_line(line: str, buttons: list[Button], user: str, language: str | None) -> Inbound:
    """A typed line as an event: a button number or label, a /command, or free text."""
    stripped = line.strip()
    base = Inbound(
        channel=CHANNEL,
        external_user=user,
        chat_id=None,
        kind=EventKind.TEXT,
        text=line.rstrip("\n"),
        language_code=language,
    )
    # A label wins over a position: with buttons "0".."10", typing "7" means the 7 button.
    for button in buttons:
        if stripped.casefold() == button.label.casefold():
            return replace(base, kind=EventKind.BUTTON, payload=button.payload)
    if stripped.isdigit() and 1 <= int(stripped) <= len(buttons):
        return replace(base, kind=EventKind.BUTTON, payload=buttons[int(stripped) - 1].payload)
    if stripped.startswith("/") and len(stripped) > 1:
        command, _, args = stripped[1:].partition(" ")
        return replace(base, kind=EventKind.COMMAND, command=command.lower(), args=args.strip())
    return base


def save_file(content: bytes, suffix: str) -> str:
    """Write a chart or an export where the person can open it (owner-only permissions)."""
    fd, path = tempfile.mkstemp(prefix="kindred-", suffix=suffix)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
    return path


def render(
    replies: Iterable[Reply], keep_file: Callable[[bytes, str], str] = save_file
) -> tuple[str, list[Button]]:
    """Replies as console text; buttons numbered across all replies as `[n] label`."""
    chunks: list[str] = []
    buttons: list[Button] = []
    for reply in replies:
        lines = [plain_text(reply.text)]
        if reply.image is not None:
            lines.append(f"[chart saved to {keep_file(reply.image, '.png')}]")
        if reply.document is not None:
            name, content = reply.document
            lines.append(f"[{name} saved to {keep_file(content, '-' + name)}]")
        for row in reply.buttons:
            for button in row:
                buttons.append(button)
                lines.append(f"[{len(buttons)}] {button.label}")
        chunks.append("\n".join(lines))
    return "\n\n".join(chunks), buttons


async def run_console(
    service: KindredService,
    user: str = "console",
    language: str | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
) -> int:
    """Read one message per line, print the bot's replies; prompt only on a terminal."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    interactive = stdin.isatty()
    buttons: list[Button] = []
    while True:
        if interactive:
            stdout.write("> ")
            stdout.flush()
        line = stdin.readline()
        if not line:
            return 0
        if not line.strip():
            continue
        handled = await service.handle(parse_line(line, buttons, user, language))
        shown, new_buttons = render(handled.replies)
        if new_buttons or handled.replies:
            buttons = new_buttons
        if shown:
            stdout.write(shown + "\n\n")
            stdout.flush()
