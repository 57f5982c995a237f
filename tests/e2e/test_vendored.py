"""The Markdown renderer's vendored files are exactly the npm packages the lock pins (npm ci checks the tarballs'
integrity against tests/js/package-lock.json), with their licences; every string has both languages."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.js_clients import JS_DIR, install_js_clients

STATIC = Path(__file__).resolve().parents[2] / "static"
VENDORED = {  # file under static/vendor -> (package, file in the package)
    "marked.esm.js": ("marked", "lib/marked.esm.js"),
    "purify.es.mjs": ("dompurify", "dist/purify.es.mjs"),
    "LICENSE.marked": ("marked", "LICENSE"),
    "LICENSE.dompurify": ("dompurify", "LICENSE"),
}


def test_vendored_files_match_the_locked_packages() -> None:
    install_js_clients()
    lock = json.loads((JS_DIR / "package-lock.json").read_text())["packages"]
    declared = json.loads((JS_DIR / "package.json").read_text())["dependencies"]
    for name, (package, inner) in VENDORED.items():
        locked = lock[f"node_modules/{package}"]
        assert declared[package] == locked["version"], f"{package} is pinned exactly in package.json"
        installed = json.loads((JS_DIR / "node_modules" / package / "package.json").read_text())["version"]
        assert installed == locked["version"]
        assert (STATIC / "vendor" / name).read_bytes() == (JS_DIR / "node_modules" / package / inner).read_bytes(), (
            f"static/vendor/{name} differs from {package}@{locked['version']}/{inner}: copy it again (make vendor)")
    readme = (STATIC / "vendor" / "README.md").read_text()
    for package in {p for p, _ in VENDORED.values()}:
        assert f"{package}@{lock[f'node_modules/{package}']['version']}" in readme


def _strings(language: str) -> set[str]:
    source = (STATIC / "lib" / "i18n.js").read_text()
    block = source.split(f"\n  {language}: {{", 1)[1].split("\n  },", 1)[0]
    return set(re.findall(r"(\w+): \"", block))


def test_every_string_exists_in_english_and_spanish() -> None:
    english, spanish = _strings("en"), _strings("es")
    assert english and english == spanish, f"only English: {english - spanish}; only Spanish: {spanish - english}"
    used: set[str] = set()
    for path in [*STATIC.glob("*.html"), *STATIC.glob("*.js"), *STATIC.glob("lib/*.js")]:
        text = path.read_text()
        used |= set(re.findall(r'data-i18n(?:-label|-placeholder)?="(\w+)"', text))
        used |= set(re.findall(r'\bt\("(\w+)"', text))
    assert used and used <= english, f"strings used but not defined: {used - english}"
