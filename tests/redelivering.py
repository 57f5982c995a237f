"""A Redis client that sends every script and every pipeline twice and loses the first answer: what a client does
when it retries a command Redis ran but whose answer it did not get (redis-py's cluster client on a timeout)."""

from __future__ import annotations

from typing import Any

from redis.commands.core import AsyncScript


class Redelivering:
    """The real client (one server or a cluster), except for scripts and pipelines, each run twice."""

    def __init__(self, redis: Any) -> None:
        self._redis = redis

    def __getattr__(self, name: str) -> Any:
        return getattr(self._redis, name)

    def register_script(self, script: str) -> AsyncScript:
        return AsyncScript(self, script)  # type: ignore[arg-type]

    async def evalsha(self, *args: Any) -> Any:
        await self._redis.evalsha(*args)
        return await self._redis.evalsha(*args)

    def pipeline(self, transaction: bool = True) -> Any:
        pipe = self._redis.pipeline(transaction=transaction)
        send = pipe.execute

        async def execute(raise_on_error: bool = True) -> list[Any]:
            stack = list(pipe.command_stack)
            await send(raise_on_error=raise_on_error)  # ran, but its answer never reached the caller
            pipe.command_stack.extend(stack)
            return await send(raise_on_error=raise_on_error)

        pipe.execute = execute
        return pipe
