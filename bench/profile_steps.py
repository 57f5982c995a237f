"""A py-spy profile (--format raw) split into the steps of a reply's life, as CPU microseconds per reply.

  python -m bench.profile_steps /tmp/prof/turnover.txt 1900      # the profile, the server's CPU µs per reply
  python -m bench.profile_steps /tmp/prof/turnover.txt --frames  # the innermost gima_server frames, by samples

Each sample goes to the first step (in STEPS' order) whose pattern one of its frames matches, so a store call made
while starting a reply counts as "store: begin exchange", not as "start". Idle samples (the event loop waiting in
epoll) are left out: the shares are of the CPU the server used, which the caller measured.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# (step, a regular expression matched against "function (file:line)" frames)
STEPS: list[tuple[str, str]] = [
    ("store: begin exchange", r"begin_exchange"),
    ("store: finish reply", r"finish_reply|_finish_stored"),
    ("store: other", r"gima_server/store/"),
    ("sign-in (token, session lookup)", r"gima_server/auth/"),
    ("rate limit, admission", r"gima_server/limits/|gima_server/admission\.py"),
    ("idempotency record", r"idempotency"),
    ("lock, registry (cancel-previous)", r"gima_server/locks\.py|registry"),
    ("context (history for the model)", r"gima_server/context/"),
    ("agent (demo: composing the text)", r"gima_server/agents/"),
    ("events: log, fan-out, SSE writes", r"gima_server/streams/(log|fanout|sse|subscriber|writer)|aiohttp_sse"),
    ("metrics, logging, tracing", r"gima_server/observability/|prometheus_client|logging/__init__"),
    ("reply lifecycle (other streams/)", r"gima_server/streams/"),
    ("request parsing, validation, routing",
     r"gima_server/(validation|middleware|security|accept)\.py|web_protocol|http_parser|web_app|web_urldispatcher"),
    ("HTTP write, transport", r"web_response|http_writer|StreamResponse|selector_events|uvloop"),
    ("other", r"."),
]
_IDLE = re.compile(r"select \(selectors\.py|_run_once|epoll|run_forever \(")


def _samples(path: Path) -> Counter[str]:
    samples: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            samples[stack] += int(count)
    return samples


def _busy(stack: str) -> bool:
    leaf = stack.rsplit(";", 1)[-1]
    return not _IDLE.search(leaf)


def steps_per_reply(path: Path, cpu_us_per_reply: float) -> list[tuple[str, float]]:
    counts: Counter[str] = Counter()
    for stack, n in _samples(path).items():
        if not _busy(stack):
            continue
        frames = stack.split(";")
        step = next((name for name, pattern in STEPS if any(re.search(pattern, f) for f in frames)), "other")
        counts[step] += n
    total = sum(counts.values()) or 1
    return [(name, cpu_us_per_reply * counts[name] / total) for name, _ in STEPS if counts[name]]


def innermost_frames(path: Path, limit: int = 40) -> list[tuple[str, int]]:
    counts: Counter[str] = Counter()
    for stack, n in _samples(path).items():
        if not _busy(stack):
            continue
        own = [f for f in stack.split(";") if "gima_server/" in f]
        counts[re.sub(r":\d+\)", ")", own[-1]) if own else "(outside gima_server) " + stack.rsplit(";", 1)[-1][:80]] += n
    return counts.most_common(limit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile", type=Path)
    parser.add_argument("cpu_us", type=float, nargs="?", default=1_000_000.0)
    parser.add_argument("--frames", action="store_true")
    args = parser.parse_args()
    if args.frames:
        total = sum(n for _, n in innermost_frames(args.profile, 10**6))
        for frame, n in innermost_frames(args.profile):
            print(f"{n / total:6.1%}  {frame}")
        return
    for step, micros in steps_per_reply(args.profile, args.cpu_us):
        print(f"{step:38} {micros:8.0f}")


if __name__ == "__main__":
    main()
