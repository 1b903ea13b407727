"""What a channel hands to the service: one thing a person did, with no identity beyond a key."""

from __future__ import annotations

from dataclasses import dataclass

from flows.engine import EventKind


@dataclass(frozen=True)
class Inbound:
    """One incoming event from a channel (console or Telegram)."""

    channel: str  # "telegram" or "console"
    external_user: str  # the channel's user id: hashed at once, never stored or logged
    chat_id: str | None  # where replies go: encrypted at rest
    kind: EventKind
    text: str = ""
    command: str | None = None
    args: str = ""
    payload: str | None = None
    media: str | None = None
    language_code: str | None = None
    update_id: int | None = None  # for idempotency: handled once even when delivered twice
    bot_id: int = 0
