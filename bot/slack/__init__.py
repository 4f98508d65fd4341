"""Slack: the Bolt app and its server (HTTP or Socket Mode), OAuth installation; the front door
(door/), the listeners, a turn from message to answer (answering/) and the one place that
posts (output/)."""
