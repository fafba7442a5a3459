"""Test helpers, not tests: a chat-completions server on 127.0.0.1 (the LLM's wire format), a
webhook receiver, and the deployed-stack harness (real Prefect server, workers, S3)."""
