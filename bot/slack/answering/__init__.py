"""A turn from message to answer: jobs in order per conversation, the LLM run, files shown to the
model, approvals asked and waited on."""
