"""Sampling options and output limits (OpenAI's names and ranges): checked once, merged, mapped per provider.

Per-model defaults come from the agents file; a request's own values win; a pipeline step's own values win over
both. OpenAI-compatible upstreams get them as they are; Anthropic's Messages API gets the four it has.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

SAMPLING_KEYS = ("temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed", "presence_penalty",
                 "frequency_penalty")
_TOKEN_LIMITS = ("max_tokens", "max_completion_tokens")
MAX_OUTPUT_TOKENS = 1_000_000
MAX_STOP_SEQUENCES = 4  # OpenAI's limit
MAX_STOP_CHARS = 256
_RANGES = {"temperature": (0.0, 2.0), "top_p": (0.0, 1.0), "presence_penalty": (-2.0, 2.0),
           "frequency_penalty": (-2.0, 2.0)}


class SamplingError(ValueError):
    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field} {why}")
        self.field = field
        self.why = why


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_sampling(values: Mapping[str, Any]) -> dict[str, Any]:
    """The options that are set, each within its documented range; SamplingError names the first that is not."""
    checked: dict[str, Any] = {}
    for key in SAMPLING_KEYS:
        value = values.get(key)
        if value is None:
            continue
        if key in _RANGES:
            low, high = _RANGES[key]
            if not _number(value) or not low <= value <= high:
                raise SamplingError(key, f"must be a number from {low:g} to {high:g}")
        elif key in _TOKEN_LIMITS:
            if not _integer(value) or not 1 <= value <= MAX_OUTPUT_TOKENS:
                raise SamplingError(key, f"must be a whole number from 1 to {MAX_OUTPUT_TOKENS:,}")
        elif key == "seed":
            if not _integer(value) or not -(2**63) <= value < 2**63:
                raise SamplingError(key, "must be a whole number (64-bit)")
        elif key == "stop":
            value = _checked_stop(value)
        checked[key] = value
    if all(key in checked for key in _TOKEN_LIMITS):
        raise SamplingError("max_completion_tokens", "and max_tokens are the same limit: send one of them")
    return checked


def _checked_stop(value: Any) -> str | list[str]:
    sequences = [value] if isinstance(value, str) else value
    if (not isinstance(sequences, list) or not 1 <= len(sequences) <= MAX_STOP_SEQUENCES
            or not all(isinstance(s, str) and 1 <= len(s) <= MAX_STOP_CHARS and "\x00" not in s for s in sequences)):
        raise SamplingError("stop", f"must be a string or a list of 1 to {MAX_STOP_SEQUENCES} strings of 1 to "
                            f"{MAX_STOP_CHARS} characters")
    return value  # type: ignore[no-any-return]


def merged(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Later layers win; a layer that sets one of the two token-limit names replaces the other one too."""
    options: dict[str, Any] = {}
    for layer in layers:
        if any(key in layer for key in _TOKEN_LIMITS):
            for key in _TOKEN_LIMITS:
                options.pop(key, None)
        options.update(layer)
    return options


def token_limit(options: Mapping[str, Any]) -> int | None:
    limit = options.get("max_completion_tokens", options.get("max_tokens"))
    return int(limit) if limit is not None else None


def anthropic_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The Messages API's names: max_tokens, temperature, top_p, stop_sequences (seed and penalties it has not)."""
    mapped: dict[str, Any] = {}
    limit = token_limit(options)
    if limit is not None:
        mapped["max_tokens"] = limit
    for key in ("temperature", "top_p"):
        if key in options:
            mapped[key] = options[key]
    if "stop" in options:
        stop = options["stop"]
        mapped["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    return mapped
