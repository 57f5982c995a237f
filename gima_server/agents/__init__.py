"""Agents produce a reply as a stream of events; the server does not care which backend is behind one."""

from __future__ import annotations

from ..config import ConfigError, Settings
from .base import Agent
from .demo import DemoAgent


def make_agent(settings: Settings) -> Agent:
    if settings.agent == "demo":
        return DemoAgent(
            tokens_per_s=settings.demo_tokens_per_s,
            first_token_ms=settings.demo_first_token_ms,
            reply_words=settings.demo_reply_words,
        )
    raise ConfigError(f"GIMA_AGENT={settings.agent!r}: this agent is not available in this version (use demo)")
