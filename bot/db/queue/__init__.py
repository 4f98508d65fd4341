"""The work engine's tables: jobs claimed under one lock, SQLite's inbox file, the delivery
dedupe."""
