"""Embeddings and voice: OpenAI's /v1/embeddings and /v1/audio/* passed to a configured upstream."""
