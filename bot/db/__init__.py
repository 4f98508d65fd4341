"""Persistence: every table (models), the engine (Database) and one query module per aggregate."""

from bot.db.engine import Database

__all__ = ["Database"]
