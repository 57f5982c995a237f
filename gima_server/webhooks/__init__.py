"""Outgoing webhooks (Standard Webhooks): operator-registered endpoints, deliveries queued in the store in the same
transaction as the fact they report, sent and retried by a loop in every process (ADR 23)."""
