"""The agent loop: the model picks tools until it answers or a limit ends the run; its state, the
history it is shown and its sources."""
