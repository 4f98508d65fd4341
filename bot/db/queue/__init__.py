"""The work engine's tables: jobs claimed under one lock, and SQLite's inbox file."""
