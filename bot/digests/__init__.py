"""Scheduled digests: the schedule grammar and the scheduler that posts them."""
