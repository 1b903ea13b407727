"""Kindred's conversations: pure state machines, no I/O (no telegram, SQLAlchemy or httpx)."""
