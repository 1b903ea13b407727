"""The Telegram channel on python-telegram-bot 22."""

import os

# Opt in to PTB's future behaviour (durations as timedelta), which also silences the
# deprecation warning it raises every time it builds a RetryAfter.
os.environ.setdefault("PTB_TIMEDELTA", "1")
