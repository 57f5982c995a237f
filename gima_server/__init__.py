"""gima-server: a self-hosted streaming chat server (aiohttp, SSE, multi-agent backends)."""

__version__ = "0.1.0"
