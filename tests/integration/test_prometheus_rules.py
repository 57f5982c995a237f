"""deploy/prometheus: the rules pass `promtool check rules` and their own `promtool test rules` (Debian's prometheus
package; .ci/run installs it), and every metric the rules and deploy/grafana's dashboard name is one the server
exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml
from aiohttp.test_utils import TestClient

from ..conftest import Api

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "gima.rules.yml"
_METRIC = re.compile(r"\bgima_[a-z0-9_]+")
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is missing: apt-get install prometheus (.ci/run does)"
    return subprocess.run([promtool, *args], cwd=RULES.parent, capture_output=True, text=True, timeout=120)


def test_promtool_checks_the_rules_and_runs_their_unit_tests() -> None:
    checked = _promtool("check", "rules", RULES.name)
    assert checked.returncode == 0 and "SUCCESS" in checked.stdout, checked.stdout + checked.stderr
    tested = _promtool("test", "rules", "gima.rules.test.yml")
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def _named_in_rules() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {name for group in groups for rule in group["rules"] for name in _METRIC.findall(rule["expr"])}


def _named_in_dashboard() -> set[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "gima-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(exprs) >= 12
    return {name for expr in exprs for name in _METRIC.findall(expr)}


def _recorded() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


async def test_every_metric_the_rules_and_the_dashboard_name_is_exported(client: TestClient, alice: Api) -> None:
    events, _ = await alice.stream("fill the histograms")
    assert events[-1].name == "done"
    text = await (await client.get("/metrics")).text()
    exported = set()  # every family the server declares (a labelled one shows before its first sample, by TYPE)
    for family, kind in re.findall(r"(?m)^# TYPE (\S+) (\S+)$", text):
        exported |= {family, *(family + suffix for suffix in _SUFFIXES.get(kind, ()))}
    named = _named_in_rules() | _named_in_dashboard()
    assert named - exported == set(), "named by deploy/ but not exported"
    assert 'gima_sse_time_to_first_event_seconds_bucket{le="2.0"}' in text  # the SLO's threshold is a bucket
    dashboard = (DEPLOY / "grafana" / "gima-dashboard.json").read_text()
    for recording in re.findall(r"gima:[a-z0-9_:]+", dashboard):
        assert recording in _recorded(), f"the dashboard uses {recording}, which no rule records"
