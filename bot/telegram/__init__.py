"""The Telegram channel on python-telegram-bot 22."""
