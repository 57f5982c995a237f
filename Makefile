.PHONY: install test bench bench-full

install:
	python3 -m venv .venv && . .venv/bin/activate && pip install -e .

test:
	python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' && ruff check gima_server tests && mypy && pytest

# The short load benchmark against the bare aiohttp baseline (about one minute; it prints how long it took).
bench:
	. .venv/bin/activate && pip install -q -e '.[bench,redis]' && python -m bench.load

bench-full:
	. .venv/bin/activate && pip install -q -e '.[bench,redis]' && python -m bench.load --full
