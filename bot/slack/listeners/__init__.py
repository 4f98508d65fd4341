"""Bolt listeners, one module per kind of request, each with `register(app, rt)`: ack at once,
hand the slow part to the work engine or a task."""
