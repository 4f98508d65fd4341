"""The same cases through both orchestrators, measured; and what stored runs say (insights).

Knows neither Slack nor the tables: `bot/ops/eval_suite.py` runs the attempts and reads their traces.
"""
