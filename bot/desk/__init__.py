"""The volunteer desk: anonymous peer connection through Telegram forum topics (issue 6)."""
