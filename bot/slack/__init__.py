"""The Slack front door: the Bolt app, its server, listeners, the answer surface and rendering."""
