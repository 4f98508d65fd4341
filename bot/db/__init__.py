"""Persistence: every table (models), the engine (Database) and one query module per aggregate."""

from bot.db.database import Database

__all__ = ["Database"]
