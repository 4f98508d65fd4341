"""Queries per aggregate on the answer path: conversations, runs and their steps, feedback, usage,
approvals."""
