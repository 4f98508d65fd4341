"""The host, the only package that knows Slack and the database: the CLI, settings, the
process's shared parts (runtime), the console, logging; the rooms below hold the rest."""
