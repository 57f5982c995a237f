"""Choosing the history a reply sends: the newest whole messages that fit, the rule for cut-short replies, the
budget of a request (its own max_tokens kept free) and of a model with fallbacks (the tightest)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gima_server.agents.models import Model, Models
from gima_server.agents.tokens import message_tokens
from gima_server.context.window import INTERRUPTED_NOTE, Budget, ContextPlan, TooLarge, Window, stored_turn


def _turns(n: int) -> list[tuple[str, str]]:
    return [("user" if i % 2 == 0 else "assistant", f"message number {i}") for i in range(n)]


def test_the_newest_whole_messages_that_fit_go_in_order_and_the_count_says_how_many() -> None:
    history = _turns(500)
    cost = message_tokens(history[-1][1])  # every message of the newest hundreds costs the same
    window = Window(Budget(1_000, 0), [], "now")
    room = 1_000 - message_tokens("now")
    window.offer_all(reversed(history))
    turns = window.turns()
    assert turns == tuple(history[-len(turns):])
    assert len(turns) in (room // cost, room // cost - 1)  # minus a leading reply, if the last to fit was one
    assert turns[0][0] == "user" and window.earlier_messages == len(turns)


def test_a_message_that_does_not_fit_stops_the_window_even_if_older_ones_would() -> None:
    window = Window(Budget(200, 0), [], "now")
    assert window.offer(("assistant", "short"))
    assert not window.offer(("user", "long " * 400))
    assert not window.offer(("user", "tiny"))  # whole messages, newest first: no gaps
    assert window.turns() == ()  # the one reply that fitted has no question before it


def test_system_turns_and_the_current_message_always_go_and_alone_may_be_too_large() -> None:
    window = Window(Budget(300, 50, 20), [("system", "be brief")], "hello")
    window.offer_all([("assistant", "hi"), ("user", "hey")])
    assert window.turns() == (("system", "be brief"), ("user", "hey"), ("assistant", "hi"))
    assert window.earlier_messages == 2
    with pytest.raises(TooLarge) as refused:
        Window(Budget(300, 50, 20), [], "word " * 300)
    assert refused.value.available == 300 and refused.value.needed > 300


def test_stored_replies_count_by_the_rule() -> None:
    assert stored_turn("user", "hi", "complete") == ("user", "hi")
    assert stored_turn("assistant", "done", "complete") == ("assistant", "done")
    for status in ("cancelled", "error", "streaming"):
        assert stored_turn("assistant", "Once upon", status) == ("assistant", f"Once upon\n\n{INTERRUPTED_NOTE}")
        assert stored_turn("assistant", "  ", status) is None


def test_a_request_keeps_its_own_output_limit_free_else_the_models_else_an_eighth() -> None:
    plan = ContextPlan.of(8_192, ["You are terse."], 300)
    assert plan.budget({"max_tokens": 1_000}).output_tokens == 1_000
    assert plan.budget({"max_completion_tokens": 700}).output_tokens == 700
    assert plan.budget({"max_tokens": 100_000}).output_tokens == 4_096  # at most half the window
    assert plan.budget({}).output_tokens == 300
    assert ContextPlan(8_192).budget({}).output_tokens == 1_024
    assert ContextPlan(200_000).budget({}).output_tokens == 4_096
    assert plan.budget({}).for_messages == 8_192 - 300 - plan.instructions_tokens > 0


def test_a_model_with_fallbacks_takes_the_tightest_budget_of_its_chain() -> None:
    agent = object()
    models = Models([Model("big", "Big", agent), Model("small", "Small", agent)], "big",  # type: ignore[arg-type]
                    {"big": ("big", "small"), "small": ("small",)},
                    plans={"big": ContextPlan(100_000), "small": ContextPlan(4_000)})
    assert models.budget("big", {}).context_tokens == 4_000
    assert models.budget("small", {}).context_tokens == 4_000
    alone = Models([Model("big", "Big", agent)], "big", plans={"big": ContextPlan(100_000)})  # type: ignore[arg-type]
    assert alone.budget("big", {}).context_tokens == 100_000


def test_a_requests_own_output_limit_neither_takes_nor_changes_the_models_usual_budget() -> None:
    agent = object()
    models = Models([Model("m", "M", agent)], "m", plans={"m": ContextPlan(32_000)})  # type: ignore[arg-type]
    assert models.budget("m", {"max_tokens": 10_000}).output_tokens == 10_000
    assert models.budget("m", {}).output_tokens == 4_000  # an eighth, not the earlier request's limit
    assert models.budget("m", {"max_completion_tokens": 700}).output_tokens == 700
    assert models.budget("m", {"temperature": 0.5}).output_tokens == 4_000


def test_the_agents_file_takes_context_tokens_and_names_a_bad_one() -> None:
    from gima_server.agents.catalog import check_catalog

    problems: list[str] = []
    raw = {"agents": {"a": {"kind": "demo", "context_tokens": 32_000, "default": True},
                      "b": {"kind": "demo", "context_tokens": 10},
                      "c": {"kind": "demo", "context_tokens": "big"}}}
    assert check_catalog(raw, {}, problems) is None
    assert problems == ["agents.b: context_tokens must be a whole number from 256 to 10,000,000",
                        "agents.c: context_tokens must be a whole number from 256 to 10,000,000"]
    fine: list[str] = []
    catalog = check_catalog({"agents": {"a": {"kind": "demo", "context_tokens": 32_000}}}, {}, fine)
    assert fine == [] and catalog is not None and catalog.entries["a"].context_tokens == 32_000


def test_a_pipeline_takes_the_smallest_window_of_the_entries_its_steps_call(tmp_path: Path) -> None:
    from gima_server.agents import make_models
    from gima_server.config import Settings

    agents = tmp_path / "agents.toml"
    agents.write_text("""
[agents.wide]
kind = "demo"
context_tokens = 50000
default = true
[agents.narrow]
kind = "demo"
context_tokens = 3000
max_tokens = 200
[agents.team]
kind = "pipeline"
steps = [{name = "a", agent = "wide", system = "Plan the answer in three short steps."}, {name = "b", agent = "narrow"}]
[agents.anthropicish]
kind = "demo"
""")
    models = make_models(Settings(agents_file=str(agents), data_dir=str(tmp_path)))
    assert models.budget("team", {}).context_tokens == 3_000
    assert models.budget("team", {}).instructions_tokens > 0
    assert models.budget("narrow", {}).output_tokens == 200
    assert models.budget("wide", {}).context_tokens == 50_000
    assert models.budget("anthropicish", {}).context_tokens == 8_192  # the kind's default
    single = make_models(Settings(data_dir=str(tmp_path), context_tokens=1_000))
    assert single.budget(single.default, {}).context_tokens == 1_000


def test_the_next_page_asks_for_about_what_the_room_left_would_hold() -> None:
    window = Window(Budget(1_000, 0), [], "now")
    assert window.rows_to_fill() == 0  # nothing taken yet: no average to go by
    each = ("user", "x " * 40)
    for _ in range(5):
        assert window.offer(each)
    cost = message_tokens(each[1])
    left = 1_000 - message_tokens("now") - 5 * cost
    assert window.rows_to_fill() == left // cost + 1
