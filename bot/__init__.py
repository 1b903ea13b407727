"""Kindred's service side: channels, persistence, scheduling and sending."""
