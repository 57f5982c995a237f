"""What a failing shared backend (Redis) raises: callers catch these and carry on in-process."""

from __future__ import annotations

try:  # redis is an optional extra
    from redis.exceptions import NoScriptError, RedisError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    SHARED_FAILURES: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
    SCRIPT_MISSING: tuple[type[BaseException], ...] = (NoScriptError,)
    # Sent, maybe run, never answered in time: unlike a refused connection, the command may still have taken effect.
    UNANSWERED: tuple[type[BaseException], ...] = (RedisTimeoutError, TimeoutError)
except ImportError:  # pragma: no cover - only without the redis extra
    SHARED_FAILURES = (OSError, TimeoutError)
    SCRIPT_MISSING = ()
    UNANSWERED = (TimeoutError,)
