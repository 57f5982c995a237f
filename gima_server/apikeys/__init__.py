"""API keys for programs: made and revoked by their owner, stored only as a hash, sent as a Bearer token."""
