"""The agents file (GIMA_AGENTS_FILE, TOML): the models a deployment offers, checked whole before anything starts.

  embeddings = "embed"          # optional: an openai-kind entry that answers /v1/embeddings and semantic search
  audio = "voice"               # optional: an openai-kind entry that answers /v1/audio/*

  [agents.fast]                 # the id clients use
  kind = "openai"               # demo | openai | anthropic | pipeline | webhook
  label = "Fast"
  base_url = "http://localhost:11434/v1"
  model = "llama3"
  api_key_env = "OLLAMA_KEY"    # secrets by variable name, never in the file
  default = true
  fallback = ["backup"]

  [agents.team]
  kind = "pipeline"
  steps = [{name = "planner", agent = "fast", system = "Plan."}, {name = "writer", agent = "backup"}]

Pure: reading and checking only (models.py builds the agents). Every problem is reported, one line each, so that
`check-config` shows them all at once.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .sampling import SAMPLING_KEYS, SamplingError, check_sampling

KINDS = ("demo", "openai", "anthropic", "pipeline", "webhook")
STEP_KINDS = ("demo", "openai", "anthropic")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}$")
_STEP_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,40}$")
_COMMON = {"kind", "label", "default", "fallback", "context_tokens", *SAMPLING_KEYS}
# The history budget of a kind whose entry names none (ADR 22): many self-hosted models take 8k; Claude 200k.
DEFAULT_CONTEXT_TOKENS = {"demo": 8_192, "openai": 8_192, "anthropic": 180_000, "pipeline": 8_192, "webhook": 8_192}
MIN_CONTEXT_TOKENS = 256
MAX_CONTEXT_TOKENS = 10_000_000
_KIND_KEYS: dict[str, set[str]] = {
    "demo": {"tokens_per_s", "first_token_ms", "reply_words"},
    "openai": {"base_url", "model", "api_key_env", "system"},
    "anthropic": {"base_url", "model", "api_key_env", "system"},
    "pipeline": {"steps"},
    "webhook": {"url", "secret_env", "timeout_s", "callback_base_url"},
}


class CatalogError(Exception):
    """The agents file cannot be used; one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    agent: str  # the id of a demo, openai or anthropic entry whose upstream the step calls
    model: str
    system: str
    overrides: Mapping[str, Any] = field(default_factory=dict)  # sampling options that win over the request's


@dataclass(frozen=True, slots=True)
class AgentEntry:
    id: str
    kind: str
    label: str
    default: bool = False
    fallback: tuple[str, ...] = ()
    base_url: str = ""  # a webhook agent's: the backend's URL the turn is POSTed to
    model: str = ""
    api_key: str = field(default="", repr=False)  # resolved from api_key_env (a webhook agent's: its secret_env)
    system: str = ""
    demo_pace: tuple[float | None, float | None, int | None] = (None, None, None)  # tokens/s, first token ms, words
    steps: tuple[Step, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)  # sampling options under the request's own
    context_tokens: int = 0  # the history budget the file gives (0: the kind's default)
    timeout_s: float = 30.0  # a webhook agent's: how long its backend may stay silent before the reply times out
    callback_base_url: str = ""  # a webhook agent's: where its backend reaches this server (else GIMA_PUBLIC_URL)


@dataclass(frozen=True, slots=True)
class Catalog:
    entries: Mapping[str, AgentEntry]  # in the file's order
    default: str
    embeddings: str | None = None
    audio: str | None = None

    def chain(self, model_id: str) -> tuple[str, ...]:
        """The model, then its fallbacks in order, each fallback's own fallbacks after it (checked acyclic)."""
        order: list[str] = []

        def visit(current: str) -> None:
            if current in order:
                return
            order.append(current)
            for nxt in self.entries[current].fallback:
                visit(nxt)

        visit(model_id)
        return tuple(order)


def load_catalog(path: Path, environ: Mapping[str, str]) -> Catalog:
    where = f"GIMA_AGENTS_FILE={str(path)!r}"
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise CatalogError([f"{where}: cannot read it ({exc.strerror or exc})"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CatalogError([f"{where}: not valid TOML ({exc})"]) from None
    problems: list[str] = []
    catalog = check_catalog(raw, environ, problems)
    if problems or catalog is None:
        raise CatalogError([f"{where}: {p}" for p in problems])
    return catalog


def check_catalog(raw: dict[str, Any], environ: Mapping[str, str], problems: list[str]) -> Catalog | None:
    """The catalog the parsed file describes; every problem appended to problems (None when there are any)."""
    for key in sorted(set(raw) - {"agents", "embeddings", "audio"}):
        problems.append(f"unknown setting {key!r} (expected agents, embeddings, audio)")
    agents = raw.get("agents")
    if not isinstance(agents, dict) or not agents:
        problems.append("needs at least one [agents.ID] table")
        return None
    entries: dict[str, AgentEntry] = {}
    for agent_id, table in agents.items():
        entry = _entry(agent_id, table, environ, problems)
        if entry is not None:
            entries[agent_id] = entry
    _check_references(agents, entries, problems)
    defaults = [e.id for e in entries.values() if e.default]
    if len(defaults) > 1:
        problems.append(f"only one agent may be the default, got {', '.join(defaults)}")
    purposes = {name: raw.get(name) for name in ("embeddings", "audio")}
    for name, target in purposes.items():
        if target is None:
            continue
        if not isinstance(target, str) or target not in agents:
            problems.append(f"{name} = {target!r} names no agent (ids: {', '.join(agents)})")
        elif target in entries and entries[target].kind != "openai":
            problems.append(f"{name} = {target!r} must name an agent of kind openai")
    if problems:
        return None
    default = defaults[0] if defaults else next(iter(entries))
    return Catalog(entries, default, purposes["embeddings"], purposes["audio"])


def _entry(agent_id: str, table: object, environ: Mapping[str, str], problems: list[str]) -> AgentEntry | None:
    where = f"agents.{agent_id}"
    if not _ID.match(agent_id):
        problems.append(f"{where}: the id must be 1-64 of A-Z a-z 0-9 . _ : - (starting with a letter or digit)")
        return None
    if not isinstance(table, dict):
        problems.append(f"{where}: must be a table")
        return None
    kind = table.get("kind")
    if kind not in KINDS:
        problems.append(f"{where}: unknown kind {kind!r} (expected one of {', '.join(KINDS)})")
        return None
    for key in sorted(set(table) - _COMMON - _KIND_KEYS[kind]):
        problems.append(f"{where}: unknown setting {key!r} for kind {kind}")
    label = _text(table, "label", where, problems) or agent_id
    default = table.get("default", False)
    if not isinstance(default, bool):
        problems.append(f"{where}: default must be true or false")
    fallback = table.get("fallback", [])
    if not isinstance(fallback, list) or not all(isinstance(f, str) for f in fallback):
        problems.append(f"{where}: fallback must be a list of agent ids")
        fallback = []
    entry = AgentEntry(agent_id, kind, label, default is True, tuple(fallback))
    if kind in ("openai", "anthropic"):
        entry = _upstream_entry(entry, table, environ, where, problems)
    elif kind == "demo":
        entry = _demo_entry(entry, table, where, problems)
    elif kind == "pipeline":
        entry = _pipeline_entry(entry, table, where, problems)
    else:
        entry = _webhook_entry(entry, table, environ, where, problems)
    # Kept even with problems, so that its references are checked too (the catalog is then refused).
    return dataclasses.replace(entry, defaults=_sampling(table, where, problems),
                               context_tokens=_context_tokens(table, where, problems))


def _context_tokens(table: Mapping[str, Any], where: str, problems: list[str]) -> int:
    value = table.get("context_tokens", 0)
    if value == 0 and "context_tokens" not in table:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_CONTEXT_TOKENS <= value <= MAX_CONTEXT_TOKENS:
        problems.append(f"{where}: context_tokens must be a whole number from {MIN_CONTEXT_TOKENS} to "
                        f"{MAX_CONTEXT_TOKENS:,}")
        return 0
    return value


def _sampling(table: Mapping[str, Any], where: str, problems: list[str]) -> dict[str, Any]:
    try:
        return check_sampling(table)
    except SamplingError as exc:
        problems.append(f"{where}: {exc.field} {exc.why}")
        return {}


def _text(table: Mapping[str, Any], key: str, where: str, problems: list[str]) -> str:
    value = table.get(key, "")
    if not isinstance(value, str):
        problems.append(f"{where}: {key} must be text")
        return ""
    return value


def _upstream_entry(entry: AgentEntry, table: Mapping[str, Any], environ: Mapping[str, str], where: str,
                    problems: list[str]) -> AgentEntry:
    base_url = _text(table, "base_url", where, problems)
    if not base_url.startswith(("http://", "https://")):
        problems.append(f"{where}: base_url must start with http:// or https://")
    model = _text(table, "model", where, problems)
    if not model:
        problems.append(f"{where}: model is required (the name the upstream knows the model by)")
    key_env = _text(table, "api_key_env", where, problems)
    api_key = ""
    if key_env:
        api_key = environ.get(key_env, "")
        if not api_key:
            problems.append(f"{where}: api_key_env names {key_env}, which is not set")
    return AgentEntry(entry.id, entry.kind, entry.label, entry.default, entry.fallback, base_url, model, api_key,
                      _text(table, "system", where, problems))


def _webhook_entry(entry: AgentEntry, table: Mapping[str, Any], environ: Mapping[str, str], where: str,
                   problems: list[str]) -> AgentEntry:
    from ..webhooks.model import WebhookError, checked_secret

    url = _text(table, "url", where, problems)
    if not url.startswith(("http://", "https://")):
        problems.append(f"{where}: url must start with http:// or https://")
    callback = _text(table, "callback_base_url", where, problems)
    if callback and not callback.startswith(("http://", "https://")):
        problems.append(f"{where}: callback_base_url must start with http:// or https://")
    secret_env = _text(table, "secret_env", where, problems)
    secret = environ.get(secret_env, "") if secret_env else ""
    if not secret_env:
        problems.append(f"{where}: secret_env is required (the variable holding the whsec_ secret both sides sign with)")
    elif not secret:
        problems.append(f"{where}: secret_env names {secret_env}, which is not set")
    else:
        try:
            checked_secret(secret)
        except WebhookError as exc:
            problems.append(f"{where}: {secret_env}: {exc}")
    timeout = table.get("timeout_s", 30.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 3600:
        problems.append(f"{where}: timeout_s must be a number of seconds from 0 to 3600")
        timeout = 30.0
    return dataclasses.replace(entry, base_url=url, api_key=secret, timeout_s=float(timeout),
                               callback_base_url=callback)


def _demo_entry(entry: AgentEntry, table: Mapping[str, Any], where: str, problems: list[str]) -> AgentEntry:
    pace: list[Any] = []
    for key, kind in (("tokens_per_s", (int, float)), ("first_token_ms", (int, float)), ("reply_words", int)):
        value = table.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kind) or value < 0):
            problems.append(f"{where}: {key} must be a number >= 0")
            value = None
        pace.append(value)
    return AgentEntry(entry.id, entry.kind, entry.label, entry.default, entry.fallback,
                      demo_pace=(pace[0], pace[1], pace[2]))


def _pipeline_entry(entry: AgentEntry, table: Mapping[str, Any], where: str, problems: list[str]) -> AgentEntry:
    raw_steps = table.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        problems.append(f"{where}: steps must be a non-empty list of {{name, agent, system?, model?}}")
        return entry
    steps = []
    for n, raw in enumerate(raw_steps):
        at = f"{where}.steps[{n}]"
        if not isinstance(raw, dict) or set(raw) - {"name", "agent", "system", "model", *SAMPLING_KEYS}:
            problems.append(f"{at}: expected only name, agent, system, model and sampling options")
            continue
        name, agent = raw.get("name"), raw.get("agent")
        if not isinstance(name, str) or not _STEP_NAME.match(name):
            problems.append(f"{at}: name must be 1-40 of A-Z a-z 0-9 _ -")
            continue
        if not isinstance(agent, str):
            problems.append(f"{at}: agent must name an agent of kind {', '.join(STEP_KINDS)}")
            continue
        steps.append(Step(name, agent, _text(raw, "model", at, problems), _text(raw, "system", at, problems),
                          _sampling(raw, at, problems)))
    if len({s.name for s in steps}) != len(steps):
        problems.append(f"{where}: step names must be unique")
    return AgentEntry(entry.id, entry.kind, entry.label, entry.default, entry.fallback, steps=tuple(steps))


def _check_references(agents: Mapping[str, Any], entries: Mapping[str, AgentEntry], problems: list[str]) -> None:
    for entry in entries.values():
        for target in entry.fallback:
            if target not in agents:
                problems.append(f"agents.{entry.id}: fallback names unknown agent {target!r} (ids: {', '.join(agents)})")
            elif target == entry.id:
                problems.append(f"agents.{entry.id}: fallback names the agent itself")
        for step in entry.steps:
            if step.agent not in agents:
                problems.append(f"agents.{entry.id}: step {step.name} names unknown agent {step.agent!r}")
            elif step.agent in entries and entries[step.agent].kind not in STEP_KINDS:
                problems.append(f"agents.{entry.id}: step {step.name} must name an agent of kind "
                                f"{', '.join(STEP_KINDS)}, not {entries[step.agent].kind}")
    cycle = _fallback_cycle(entries)
    if cycle:
        problems.append(f"fallbacks form a cycle: {' -> '.join(cycle)}")


def _fallback_cycle(entries: Mapping[str, AgentEntry]) -> list[str]:
    """One cycle among the fallback lists (a depth-first search's back edge), or [] when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in entries[node].fallback:
            if nxt not in entries or nxt == node:
                continue
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return []

    for node in entries:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []
