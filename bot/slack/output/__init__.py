"""The one place that posts: the answer surface, rendering and splitting, quiet text, refusals
worded for people, retried Web API calls, the steps view."""
