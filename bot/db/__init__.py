"""Persistence: every table (models), the handle (database.Database), migrations (schema), and one
query module per aggregate in queries/, workspaces/ and queue/."""

from bot.db.database import Database

__all__ = ["Database"]
