.PHONY: install test test-latest lock bench bench-full vendor

# uv only resolves the lock; installs use pip from the lock's hashes. Pinned so a refresh is repeatable.
UV_VERSION = 0.13.9
LOCK_FLAGS = --universal --python-version 3.11 --generate-hashes --custom-compile-command 'make lock' -q

# The server at the locked versions (what README's run command and deploy/Containerfile install).
install:
	python3 -m venv .venv && . .venv/bin/activate && pip install --require-hashes -r requirements/server.txt && pip install --no-deps --no-build-isolation -e .

test:
	python3 -m venv .venv && . .venv/bin/activate && pip install --require-hashes -r requirements/test.txt && pip install --no-deps --no-build-isolation -e . && ruff check gima_server tests && mypy && pytest

# The suite against the newest release of every dependency, in its own venv: drift found on purpose.
test-latest:
	rm -rf .venv-latest && python3 -m venv .venv-latest && . .venv-latest/bin/activate && pip install -q --upgrade pip && pip install -q --upgrade -e '.[test,bench]' && pip list --format=freeze > .venv-latest/versions.txt && ruff check gima_server tests && mypy && pytest --deselect tests/unit/test_lock.py::test_the_installed_packages_are_the_locked_ones

# Refresh the locks from setup.cfg's ranges (newest releases that satisfy them), hashes included.
lock:
	python3 -m venv .venv-lock && .venv-lock/bin/pip install -q 'uv==$(UV_VERSION)'
	.venv-lock/bin/uv pip compile setup.cfg requirements/build.in --extra redis --extra mongo --extra postgres --extra oidc --extra stripe --extra sentry --extra otel $(LOCK_FLAGS) -o requirements/server.txt
	.venv-lock/bin/uv pip compile setup.cfg requirements/build.in --extra redis --extra mongo --extra postgres --extra oidc --extra stripe --extra sentry --extra otel --extra test --extra bench $(LOCK_FLAGS) -o requirements/test.txt

# The short load benchmark against the bare aiohttp baseline (about one minute; it prints how long it took).
bench:
	. .venv/bin/activate && pip install -q --require-hashes -r requirements/test.txt && python -m bench.load

bench-full:
	. .venv/bin/activate && pip install -q --require-hashes -r requirements/test.txt && python -m bench.load --full

# The page's Markdown renderer, copied from the npm packages tests/js/package-lock.json pins (static/vendor/README.md).
vendor:
	cd tests/js && npm ci --no-audit --no-fund
	cp tests/js/node_modules/marked/lib/marked.esm.js tests/js/node_modules/dompurify/dist/purify.es.mjs static/vendor/
	cp tests/js/node_modules/marked/LICENSE static/vendor/LICENSE.marked
	cp tests/js/node_modules/dompurify/LICENSE static/vendor/LICENSE.dompurify
