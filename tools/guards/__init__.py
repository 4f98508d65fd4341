"""The one gate every tool call passes (audience, egress, approval, budget), and the SSRF guard for
model-chosen URLs."""
