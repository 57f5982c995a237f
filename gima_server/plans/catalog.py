"""The plans file (GIMA_PLANS_FILE, TOML), checked whole (pure):

  default = "free"              # the plan of users without one (optional: without it they have no plan limits)

  [plans.free]
  tokens_per_day = 20000        # upstream tokens (input + output) a user may spend per UTC day
  chat = "30/min"               # route-class quotas, as GIMA_RATE_LIMITS writes them (class = "N/unit[/burst]")

  [plans.pro]
  tokens_per_day = 1000000
  chat = "120/min/40"

  [stripe.prices]               # Stripe price ids and the plan a subscription to each gives
  price_1Pro = "pro"
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..limits.gcra import Limit
from ..limits.policy import DEFAULTS, PolicyError, parse_rate_limits

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_TOKENS_PER_DAY = 10**12


class PlansError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    tokens_per_day: int | None = None  # None: no daily budget
    limits: Mapping[str, Limit] = field(default_factory=dict)  # route classes this plan sets its own quota for


@dataclass(frozen=True, slots=True)
class PlanCatalog:
    plans: Mapping[str, Plan]
    default: str | None = None
    prices: Mapping[str, str] = field(default_factory=dict)  # Stripe price id -> plan name

    def of(self, plan_name: str | None) -> Plan | None:
        """A user's plan (the default for a user without one, or whose plan left the file)."""
        if plan_name is not None and plan_name in self.plans:
            return self.plans[plan_name]
        return self.plans.get(self.default) if self.default is not None else None


def load_plans(path: Path) -> PlanCatalog:
    where = f"GIMA_PLANS_FILE={str(path)!r}"
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise PlansError([f"{where}: cannot read it ({exc.strerror or exc})"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PlansError([f"{where}: not valid TOML ({exc})"]) from None
    problems: list[str] = []
    catalog = check_plans(raw, problems)
    if problems or catalog is None:
        raise PlansError([f"{where}: {p}" for p in problems])
    return catalog


def check_plans(raw: dict[str, Any], problems: list[str]) -> PlanCatalog | None:
    """The catalog the parsed file describes; every problem appended (None when there are any)."""
    for key in sorted(set(raw) - {"default", "plans", "stripe"}):
        problems.append(f"unknown setting {key!r} (expected default, [plans.NAME] and [stripe.prices])")
    tables = raw.get("plans")
    if not isinstance(tables, dict) or not tables:
        problems.append("[plans.NAME] tables are required (at least one plan)")
        tables = {}
    plans = {name: plan for name, table in tables.items() if (plan := _plan(name, table, problems)) is not None}
    default = raw.get("default")
    if default is not None and (not isinstance(default, str) or default not in tables):
        problems.append(f"default names no plan of this file: {default!r}")
    prices = _prices(raw.get("stripe", {}), tables, problems)
    return None if problems else PlanCatalog(plans, default, prices)


def _plan(name: str, table: object, problems: list[str]) -> Plan | None:
    where = f"plans.{name}"
    if not _NAME.match(name):
        problems.append(f"{where}: the name must be 1-64 of A-Z a-z 0-9 _ . - (starting with a letter or digit)")
        return None
    if not isinstance(table, dict):
        problems.append(f"{where}: must be a table")
        return None
    tokens = table.get("tokens_per_day")
    if tokens is not None and (isinstance(tokens, bool) or not isinstance(tokens, int)
                               or not 0 <= tokens <= MAX_TOKENS_PER_DAY):
        problems.append(f"{where}: tokens_per_day must be a whole number from 0 to {MAX_TOKENS_PER_DAY:,}")
        tokens = None
    limits: dict[str, Limit] = {}
    for key, value in table.items():
        if key == "tokens_per_day":
            continue
        if key not in DEFAULTS or key == "tokens":
            problems.append(f"{where}: unknown setting {key!r} (tokens_per_day, or a route class: "
                            f"{', '.join(k for k in DEFAULTS if k != 'tokens')})")
            continue
        try:
            if not isinstance(value, str):
                raise PolicyError(key)
            limits[key] = parse_rate_limits(f"{key}={value}").limit(key)
        except PolicyError:
            problems.append(f"{where}: {key} must be a quota like \"30/min\" or \"120/min/40\" (N per s, min or h, "
                            f"and an optional burst), got {value!r}")
    return Plan(name, tokens, limits)


def _prices(stripe: object, tables: Mapping[str, Any], problems: list[str]) -> dict[str, str]:
    if not isinstance(stripe, dict) or set(stripe) - {"prices"}:
        problems.append("stripe: expected only a [stripe.prices] table")
        return {}
    prices = stripe.get("prices", {})
    if not isinstance(prices, dict):
        problems.append("stripe.prices: must be a table of price id = plan name")
        return {}
    checked = {}
    for price, plan in prices.items():
        if not isinstance(plan, str) or plan not in tables:
            problems.append(f"stripe.prices.{price}: names no plan of this file: {plan!r}")
        else:
            checked[price] = plan
    return checked
