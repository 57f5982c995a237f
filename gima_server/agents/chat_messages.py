"""Turning a chat's history (and earlier pipeline agents' output) into an upstream's message list."""

from __future__ import annotations

from .base import AgentRequest


def system_text(system_prompt: str, request: AgentRequest) -> str:
    prompt = "\n\n".join(part for part in (system_prompt.strip(), request.instructions.strip()) if part)
    notes = "\n\n".join(f"[{agent}] {text.strip()}" for agent, text in request.earlier_agents if text.strip())
    if not notes:
        return prompt
    return f"{prompt}\n\nWork of the agents before you:\n{notes}".strip()


def alternating_turns(request: AgentRequest) -> list[dict[str, str]]:
    """user/assistant turns, empty ones dropped and neighbours of the same role merged (some APIs require it)."""
    turns: list[dict[str, str]] = []
    for role, content in request.history:
        if not content.strip() or role not in ("user", "assistant"):
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += "\n\n" + content
        else:
            turns.append({"role": role, "content": content})
    if not turns or turns[-1]["role"] != "user":
        turns.append({"role": "user", "content": request.content})
    return turns
