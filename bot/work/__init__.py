"""Durable work: one engine (leases, attempts, take-over, order, slots) for every kind of job."""

from bot.work.engine import MAX_ATTEMPTS, Job, JobLost, WorkEngine, current_job

__all__ = ["MAX_ATTEMPTS", "Job", "JobLost", "WorkEngine", "current_job"]
