"""Every Redis key the server writes, in one place. Braces are Redis Cluster hash tags."""

from __future__ import annotations

PREFIX = "gima:"


def rate_limit(limit_name: str, key: str) -> str:
    return f"{PREFIX}rl:{{{limit_name}:{key}}}"


def rate_limit_call(limit_name: str, key: str, call_id: str) -> str:
    """One charge's answer, kept briefly so that the charge run twice takes its units once (ADR 29)."""
    return f"{PREFIX}rl:{{{limit_name}:{key}}}:call:{call_id}"


def idempotency(user_id: str, key: str) -> str:
    return f"{PREFIX}idem:{{{user_id}}}:{key}"


def lock(name: str) -> str:
    return f"{PREFIX}lock:{{{name}}}"


def fence(name: str) -> str:
    return f"{PREFIX}fence:{{{name}}}"


# A reply's keys share the {messageId} hash tag, so one script can touch them all on Redis Cluster.
def reply_log(message_id: str) -> str:
    """The reply's events, a Redis Stream whose entry ids are 0-<event id>."""
    return f"{PREFIX}log:{{{message_id}}}"


def reply_info(message_id: str) -> str:
    """Hash: user, chat, upto (newest id the text covers), sections, status, ended, closed."""
    return f"{PREFIX}reply:{{{message_id}}}"


def reply_text(message_id: str) -> str:
    """The reply's text so far, appended with the events that carry it (what a snapshot is made of)."""
    return f"{PREFIX}text:{{{message_id}}}"


def reply_owner(message_id: str) -> str:
    """The producing process's lease: it lapses when that process dies."""
    return f"{PREFIX}owner:{{{message_id}}}"


def reply_keys(message_id: str) -> list[str]:
    return [reply_log(message_id), reply_info(message_id), reply_text(message_id), reply_owner(message_id)]


def coalesce(session_id: str, content_key: str) -> str:
    return f"{PREFIX}coalesce:{{{session_id}}}:{content_key}"


def wake(process_id: str) -> str:
    """A stream only this process reads: a write to it ends its blocking read early (a new follower)."""
    return f"{PREFIX}wake:{{{process_id}}}"


CANCEL_CHANNEL = f"{PREFIX}cancel"


def token_budget(user_id: str, day: str) -> str:
    """A user's upstream tokens spent on one UTC day (YYYYMMDD); expires after the next day."""
    return f"{PREFIX}budget:{{{user_id}}}:{day}"


def hook_inbox(reply_id: str) -> str:
    """Events a webhook agent's backend posted for a reply, in order (a Redis Stream read by the producing process)."""
    return f"{PREFIX}hook:{{{reply_id}}}:events"


def hook_reply(reply_id: str) -> str:
    """Which webhook agent a reply awaits events from, while it does."""
    return f"{PREFIX}hook:{{{reply_id}}}:agent"


def hook_delivery(reply_id: str, delivery_id: str) -> str:
    """A callback delivery already taken (the backend's retries of it change nothing)."""
    return f"{PREFIX}hook:{{{reply_id}}}:seen:{delivery_id}"
