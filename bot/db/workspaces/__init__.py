"""Queries per aggregate that belong to a workspace: its installation, its settings, its digest
schedules."""
