"""Untrusted bytes to text: HTML and PDF parsed in killed-on-deadline worker processes with fair
slots, and the period grammar."""
