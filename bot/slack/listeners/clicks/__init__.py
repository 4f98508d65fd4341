"""Clicks on the buttons under answers: approve / deny, thumbs up / down, show steps."""
